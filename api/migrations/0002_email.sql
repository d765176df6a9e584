-- Email delivery (the worker's outbox) and "seen" state for email-if-unseen.

-- When a user's tab acknowledged (displayed) the notification: `ack:<id>` over the WebSocket or
-- PUT /api/notifications/{id}/seen. Reading it counts as seen too.
ALTER TABLE inbox_entries ADD COLUMN seen_at timestamptz;

-- One row per (notification, recipient with an address), written in the notification's own
-- transaction. Workers claim due rows with FOR UPDATE SKIP LOCKED and a lease (locked_until).
CREATE TABLE email_jobs (
    id              bigserial PRIMARY KEY,
    notification_id uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    user_id         text NOT NULL,
    email           text NOT NULL,
    name            text,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
    -- Not before this time: email-if-unseen delay, retry backoff, digest period end.
    not_before      timestamptz NOT NULL DEFAULT now(),
    -- Send only if the user has not seen or read the notification by not_before.
    require_unseen  boolean NOT NULL DEFAULT false,
    -- Part of the user's next digest rather than a message of its own.
    digest          boolean NOT NULL DEFAULT false,
    attempts        integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    locked_by       text,
    last_error      text,
    sent_at         timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_jobs_due ON email_jobs (not_before) WHERE status = 'pending';
CREATE INDEX email_jobs_by_notification ON email_jobs (notification_id);
