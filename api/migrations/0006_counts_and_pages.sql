-- Inbox counts that cost the same whatever the inbox holds, and pages read from one index
-- (ARCHITECTURE.md, "Counts and pages").

-- The notification's position on a personal recipient's entry, so a page of someone's personal
-- notifications is one range of one index. NULL on the entries that hold a user's marks (read,
-- deleted, seen) on a role or broadcast notification.
ALTER TABLE inbox_entries ADD COLUMN personal_seq bigint;
UPDATE inbox_entries e SET personal_seq = n.seq
  FROM notifications n
 WHERE n.id = e.notification_id AND n.audience = 'users';
CREATE INDEX inbox_entries_page ON inbox_entries (user_id, personal_seq)
 WHERE deleted_at IS NULL AND personal_seq IS NOT NULL;
-- The same for unread ones only: the seeds' bell asks for `unread_only=true`.
CREATE INDEX inbox_entries_unread_page ON inbox_entries (user_id, personal_seq)
 WHERE deleted_at IS NULL AND personal_seq IS NOT NULL AND NOT is_read;

-- Per user, their personal notifications they have not deleted, by type and priority.
CREATE TABLE personal_counts (
    user_id  text NOT NULL,
    type     text NOT NULL,
    priority text NOT NULL,
    total    bigint NOT NULL,
    unread   bigint NOT NULL,
    PRIMARY KEY (user_id, type, priority)
);
INSERT INTO personal_counts (user_id, type, priority, total, unread)
SELECT e.user_id, n.type, n.priority, count(*), count(*) FILTER (WHERE NOT e.is_read)
  FROM inbox_entries e JOIN notifications n ON n.id = e.notification_id
 WHERE n.audience = 'users' AND e.deleted_at IS NULL
 GROUP BY 1, 2, 3;

-- Role and broadcast notifications by audience (`roles` as stored: '{}' is a broadcast), type
-- and priority. A user sees the rows whose roles meet theirs, and the broadcast row.
CREATE TABLE shared_counts (
    roles    text[] NOT NULL,
    type     text NOT NULL,
    priority text NOT NULL,
    total    bigint NOT NULL,
    PRIMARY KEY (roles, type, priority)
);
INSERT INTO shared_counts (roles, type, priority, total)
SELECT roles, type, priority, count(*) FROM notifications WHERE audience <> 'users'
 GROUP BY 1, 2, 3;

-- A user's marks on role and broadcast notifications, by the same key: how many they have read
-- (and not deleted) and how many they have deleted.
CREATE TABLE shared_marks (
    user_id  text NOT NULL,
    roles    text[] NOT NULL,
    type     text NOT NULL,
    priority text NOT NULL,
    read     bigint NOT NULL,
    deleted  bigint NOT NULL,
    PRIMARY KEY (user_id, roles, type, priority)
);
INSERT INTO shared_marks (user_id, roles, type, priority, read, deleted)
SELECT e.user_id, n.roles, n.type, n.priority,
       count(*) FILTER (WHERE e.is_read AND e.deleted_at IS NULL),
       count(*) FILTER (WHERE e.deleted_at IS NOT NULL)
  FROM inbox_entries e JOIN notifications n ON n.id = e.notification_id
 WHERE n.audience <> 'users'
 GROUP BY 1, 2, 3, 4;
