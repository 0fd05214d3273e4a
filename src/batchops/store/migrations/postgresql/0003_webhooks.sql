-- Webhooks of bulk jobs (docs/jobs.md, "Webhooks").
-- webhooks: a tenant's subscriptions (job_id NULL) and jobs' own notification_webhook.
-- webhook_deliveries is an outbox: a job's deliveries are inserted in the transaction that
-- finishes the job, and the sender inside `batchops serve` sends the pending ones, so an
-- event is never lost to a crash. worker + next_attempt_at form a claim while an attempt
-- is in flight. webhook_attempts keeps every attempt (status or error, duration).

CREATE TABLE webhooks (
    id         TEXT NOT NULL PRIMARY KEY,
    tenant     TEXT NOT NULL,
    job_id     TEXT,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE INDEX webhooks_tenant ON webhooks (tenant, job_id);

CREATE TABLE webhook_deliveries (
    id               TEXT    NOT NULL PRIMARY KEY,
    tenant           TEXT    NOT NULL,
    webhook_id       TEXT    NOT NULL,
    job_id           TEXT,
    event            TEXT    NOT NULL,
    url              TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    state            TEXT    NOT NULL
                     CHECK (state IN ('pending', 'succeeded', 'failed', 'cancelled')),
    created_at       TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  DOUBLE PRECISION,
    last_status_code INTEGER,
    last_error       TEXT,
    finished_at      TEXT,
    worker           TEXT
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';

CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook_id, id);

CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id, id);

CREATE TABLE webhook_attempts (
    delivery_id   TEXT    NOT NULL,
    attempt       INTEGER NOT NULL,
    at            TEXT    NOT NULL,
    duration_ms   DOUBLE PRECISION NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    next_retry_at TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
