-- Job attempts and retention (docs/jobs.md, "Attempts" and "Retention").
-- attempts: how many times a runner claimed the job (a clean hand-back on shutdown does not
-- count). A job claimed past BATCHOPS_JOB_MAX_ATTEMPTS ends failed ATTEMPTS_EXHAUSTED
-- instead of running again: one that kills its process every time (out of memory, a poison
-- input) no longer hops from machine to machine forever.
-- The indexes serve the periodic cleanup: finished jobs by age, a job's own webhooks, and
-- idempotency keys by age (abs(created_at): a key released with progress stores minus the
-- time it was released); each delete is bounded, and none of them scans a table.

ALTER TABLE jobs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;

CREATE INDEX jobs_finished ON jobs (finished_at);

CREATE INDEX webhooks_job ON webhooks (job_id);

CREATE INDEX idempotency_keys_age ON idempotency_keys (abs(created_at));
