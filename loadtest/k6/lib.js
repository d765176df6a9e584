// Shared by Herald's k6 scripts: HS256 tokens minted in the script (k6 has HMAC in k6/crypto),
// so a run needs only the stack's HERALD_JWT_SECRET.
import crypto from "k6/crypto";
import encoding from "k6/encoding";

export const BASE = __ENV.HERALD_URL || "http://127.0.0.1:8000";
export const WS_BASE = BASE.replace(/^http/, "ws");
const SECRET = __ENV.HERALD_JWT_SECRET || "herald-dev-secret-change-me";

const b64 = (obj) => encoding.b64encode(JSON.stringify(obj), "rawurl");

/** A token for `sub`, valid one hour. */
export function token(sub, { roles = [], scope } = {}) {
  const claims = { sub, roles, exp: Math.floor(Date.now() / 1000) + 3600 };
  if (scope) claims.scope = scope;
  const unsigned = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  return `${unsigned}.${crypto.hmac("sha256", SECRET, unsigned, "base64rawurl")}`;
}
