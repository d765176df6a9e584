-- Herald's inbox: notifications stored once, per-user state beside them.
--
-- Position: `notifications.seq` is assigned at the very end of the creating transaction while it
-- holds a transaction-level advisory lock, so positions are handed out in commit order: a reader
-- that has seen position P and later asks for "seq > P" can never miss a row that commits
-- afterwards with a smaller position. See ARCHITECTURE.md, "Ordering".

CREATE SEQUENCE notification_position AS bigint;

CREATE TABLE notifications (
    id                uuid PRIMARY KEY,
    -- NULL only inside the creating transaction; never visible to anyone else as NULL.
    seq               bigint UNIQUE,
    audience          text NOT NULL CHECK (audience IN ('users', 'roles', 'broadcast')),
    roles             text[] NOT NULL DEFAULT '{}',
    type              text NOT NULL,
    priority          text NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    title             text NOT NULL,
    message           text NOT NULL,
    action_url        text,
    data              jsonb NOT NULL DEFAULT '{}'::jsonb,
    triggered_by_name text,
    channels          text[] NOT NULL DEFAULT '{in_app}',
    publisher         text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now()
);

-- Role and broadcast notifications are read by scanning positions; personal ones through
-- inbox_entries.
CREATE INDEX notifications_shared_by_seq ON notifications (seq) WHERE audience <> 'users';
CREATE INDEX notifications_created_at ON notifications (created_at);

-- One row per recipient of a personal notification (created with it), and per user who read or
-- deleted a role/broadcast notification (created on first change).
CREATE TABLE inbox_entries (
    user_id         text NOT NULL,
    notification_id uuid NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
    is_read         boolean NOT NULL DEFAULT false,
    read_at         timestamptz,
    deleted_at      timestamptz,
    email           text,
    name            text,
    PRIMARY KEY (user_id, notification_id)
);
CREATE INDEX inbox_entries_by_notification ON inbox_entries (notification_id);

-- Publish retries: the same (publisher, key) returns the first answer and creates nothing.
CREATE TABLE publish_requests (
    publisher       text NOT NULL,
    idempotency_key text NOT NULL,
    request         jsonb NOT NULL,
    response        jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (publisher, idempotency_key)
);

CREATE TABLE preferences (
    user_id       text PRIMARY KEY,
    email_enabled boolean NOT NULL DEFAULT true,
    digest        text NOT NULL DEFAULT 'off' CHECK (digest IN ('off', 'hourly', 'daily')),
    muted_types   text[] NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- The relay's progress: every notification with seq <= last_seq has been published to Redis.
CREATE TABLE relay_cursor (
    id       smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    last_seq bigint NOT NULL
);
INSERT INTO relay_cursor (id, last_seq) VALUES (1, 0);
