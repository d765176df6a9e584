// Unit tests of herald.js: backoff (bounded, jittered), resume bookkeeping, de-duplication.
import { test } from "node:test";
import assert from "node:assert/strict";
import { HeraldClient, ResumePoint, SeenIds, backoffDelay, tokenClaims } from "../herald.js";

test("backoff grows exponentially, is capped, and is fully jittered", () => {
  const top = (attempt) => backoffDelay(attempt, { base: 500, cap: 30_000, random: () => 0.999999 });
  assert.deepEqual([0, 1, 2, 3].map(top), [499, 999, 1999, 3999]);
  assert.equal(top(10), 29_999, "capped");
  assert.equal(top(1000), 29_999, "no overflow for huge attempts");
  assert.equal(backoffDelay(5, { random: () => 0 }), 0, "full jitter reaches zero");
  const samples = new Set(Array.from({ length: 50 }, () => backoffDelay(6)));
  assert.ok(samples.size > 40, "real randomness spreads reconnects");
  for (const s of samples) assert.ok(s >= 0 && s < 30_000);
});

test("seen ids drop duplicates and forget the oldest past the limit", () => {
  const seen = new SeenIds(3);
  assert.equal(seen.add("a"), true);
  assert.equal(seen.add("a"), false);
  seen.add("b");
  seen.add("c");
  seen.add("d");
  assert.equal(seen.has("a"), false, "the oldest is forgotten");
  assert.equal(seen.has("d"), true);
});

test("the resume point keeps the highest position and survives a reload", () => {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v), removeItem: (k) => store.delete(k) };
  const r = new ResumePoint(storage, "k");
  assert.equal(r.since(), null);
  assert.equal(r.see({ id: "n5", seq: 5 }), true);
  assert.equal(r.see({ id: "n3", seq: 3 }), false, "an older one does not move it back");
  assert.equal(r.see({ id: "n5", seq: 5 }), false);
  assert.equal(r.since(), "n5");
  assert.equal(new ResumePoint(storage, "k").since(), "n5", "a new tab resumes from the same point");
  store.set("k", "{not json");
  assert.equal(new ResumePoint(storage, "k").since(), null, "a corrupt entry is ignored");
});

test("frames become events once, duplicates dropped, resume point advanced", () => {
  const client = new HeraldClient({ token: "x.eyJzdWIiOiJhIn0.y", shareAcrossTabs: false });
  client.resume = new ResumePoint(null);
  const got = [];
  for (const t of ["notification", "read", "deleted", "event", "refetch"]) client.addEventListener(t, (e) => got.push([t, e.detail]));
  const n = { id: "n1", seq: 7, title: "t" };
  client.handle({ type: "new_notification", notification: n }, client.tabId);
  client.handle({ type: "new_notification", notification: n }, client.tabId);
  client.handle({ type: "marked_read", notification_id: "n1" });
  client.handle({ type: "marked_all_read", count: 3 });
  client.handle({ type: "notification_deleted", notification_id: "n1" });
  client.handle({ type: "event", event: "new_ticket", data: { id: 1 } });
  client.handle({ type: "refetch", reason: "gap" });
  assert.deepEqual(got, [
    ["notification", { notification: n, toast: true }],
    ["read", { id: "n1" }],
    ["read", { all: true, count: 3 }],
    ["deleted", { id: "n1" }],
    ["event", { event: "new_ticket", data: { id: 1 } }],
    ["refetch", { reason: "gap" }],
  ]);
  assert.equal(client.resume.since(), "n1");
});

test("token claims are read without verification", () => {
  const payload = Buffer.from(JSON.stringify({ sub: "alice", exp: 123 })).toString("base64url");
  assert.deepEqual(tokenClaims(`h.${payload}.s`), { sub: "alice", exp: 123 });
  assert.deepEqual(tokenClaims("garbage"), {});
});
