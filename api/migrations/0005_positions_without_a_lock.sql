-- Positions without a global lock (ARCHITECTURE.md, "Ordering").
--
-- A notification's position is now taken from the id of the transaction that creates it:
--
--     seq = xid × 65,536 + origin + its index in that transaction's one INSERT of notifications
--
-- and a reader of "everything after" takes only positions below the horizon
--
--     herald_position_horizon() = (oldest transaction id still running) × 65,536 + origin
--
-- Every transaction with an id below that horizon has ended, so no position below it can still
-- appear: a reader that has seen position P can never be overtaken by a smaller one. Writers no
-- longer take turns; a slow writer only holds back what readers see, never other commits.
--
-- `origin` is 0 unless the api found positions already above the scheme's (a logical restore
-- into a younger cluster, whose transaction ids start low again) and moved the scheme past them.
-- Positions given by the sequence before this migration are all below the first new one: a
-- transaction gave out at most 128 of them, far fewer than 65,536 per transaction id.

CREATE TABLE position_origin (
    id     smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    origin bigint NOT NULL
);
INSERT INTO position_origin (id, origin) VALUES (1, 0);

CREATE FUNCTION herald_position_horizon() RETURNS bigint
    LANGUAGE sql STABLE
    AS $$ SELECT (pg_snapshot_xmin(pg_current_snapshot())::text::bigint << 16) + origin
            FROM position_origin $$;

DROP SEQUENCE notification_position;
