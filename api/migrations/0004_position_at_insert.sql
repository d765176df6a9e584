-- A notification now takes its position in the INSERT that creates it (one row version and one
-- set of index entries, instead of an INSERT and then an UPDATE of `seq`), still under the
-- transaction-level advisory lock held through the commit, so positions are still handed out in
-- commit order. Its inbox entries and email jobs are inserted before it, in the same transaction,
-- so their foreign keys are checked at the commit. From this migration on `seq` is never NULL;
-- the column stays nullable only so that this migration does not rewrite the table.

ALTER TABLE inbox_entries
    ALTER CONSTRAINT inbox_entries_notification_id_fkey DEFERRABLE INITIALLY DEFERRED;
ALTER TABLE email_jobs
    ALTER CONSTRAINT email_jobs_notification_id_fkey DEFERRABLE INITIALLY DEFERRED;
