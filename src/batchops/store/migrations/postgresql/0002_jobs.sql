-- Bulk jobs (imports today; bulk update/delete later) and their per-row failures.
-- A job's counters, checkpoint and revision change in the same transaction as the records
-- of the chunk they describe, which is what makes a resumed job lose and double nothing.
-- worker + heartbeat_at form a lease: a running job whose heartbeat is older than the lease
-- belongs to a dead process and may be claimed by another runner.

CREATE TABLE jobs (
    id               TEXT             PRIMARY KEY,
    tenant           TEXT             NOT NULL,
    type             TEXT             NOT NULL,
    state            TEXT             NOT NULL
                     CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    collection       TEXT,
    options          JSONB            NOT NULL,
    total            BIGINT,
    processed        BIGINT           NOT NULL DEFAULT 0,
    succeeded        BIGINT           NOT NULL DEFAULT 0,
    failed           BIGINT           NOT NULL DEFAULT 0,
    checkpoint       BIGINT           NOT NULL DEFAULT 0,
    revision         BIGINT           NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN          NOT NULL DEFAULT FALSE,
    worker           TEXT,
    heartbeat_at     DOUBLE PRECISION,
    created_at       TEXT             NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    error            JSONB
);

CREATE INDEX jobs_tenant ON jobs (tenant, created_at);

CREATE INDEX jobs_state ON jobs (state, created_at);

CREATE TABLE job_failures (
    job_id     TEXT   NOT NULL,
    row_number BIGINT NOT NULL,
    input      TEXT   NOT NULL,
    code       TEXT   NOT NULL,
    message    TEXT   NOT NULL,
    PRIMARY KEY (job_id, row_number)
);
