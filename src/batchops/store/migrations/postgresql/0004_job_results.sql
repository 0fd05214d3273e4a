-- Inputs and results of bulk update/delete jobs and async batches, in the database so they
-- commit in the same transaction as the records they describe.
-- seq 0 is the job's input (an async batch's request body, a bulk delete's id list);
-- seq 1..n are its results in order (one row per committed chunk; the whole response of
-- an async batch). A bulk job's checkpoint is the seq of its last committed chunk.

CREATE TABLE job_results (
    job_id TEXT    NOT NULL,
    seq    BIGINT  NOT NULL,
    body   BYTEA   NOT NULL,
    PRIMARY KEY (job_id, seq)
);
