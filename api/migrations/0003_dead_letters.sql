-- Dead letters: why the worker gave up on an email job (status 'failed'), with the same words as
-- its metric herald_worker_emails_failed_total{reason}. Rows that failed before this column
-- existed keep NULL (their last_error still says why). Listing them: docs/email.md.
ALTER TABLE email_jobs ADD COLUMN failure_reason text
    CHECK (failure_reason IN ('permanent', 'attempts_exhausted', 'bad_address', 'unrenderable', 'panic'));
CREATE INDEX email_jobs_failed ON email_jobs (id) WHERE status = 'failed';
