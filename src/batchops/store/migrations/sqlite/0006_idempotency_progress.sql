-- Idempotency keys that survive an interrupted NDJSON stream (docs/batch.md, "Idempotent
-- retries"). A streamed batch commits slice by slice; each slice's transaction also
-- stores that slice's results here, so a retry with the same key resumes after the last
-- committed slice instead of running the batch again.
-- owner: the request holding an in-flight claim; every transaction that writes for the
-- key checks it still holds it (fencing), so a request whose claim was taken over (it
-- looked dead) can never apply an operation the new owner applies too.

ALTER TABLE idempotency_keys ADD COLUMN owner TEXT;

CREATE TABLE idempotency_progress (
    tenant TEXT    NOT NULL,
    key    TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    body   BLOB    NOT NULL,
    PRIMARY KEY (tenant, key, seq)
);
