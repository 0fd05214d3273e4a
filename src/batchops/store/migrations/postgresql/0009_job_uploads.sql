-- An import's uploaded file, stored in the database so that whichever process runs the job
-- (or takes it over after a crash) can read it: no disk needs to be shared between servers.
-- The file is cut into chunks of ~1 MiB, seq 0, 1, … in file order. The request writes
-- them as the body streams in, committing each chunk separately, so a 1 GiB upload is
-- ~1,000 small transactions and not one huge one. No job sees a partial upload: the job's
-- row is inserted only after the last chunk committed, in a transaction that first checks
-- the chunks are all there (seal_upload). The rows are deleted in the transaction that ends
-- the job. A request that died mid-upload leaves rows that belong to no job;
-- purge_uploads removes them once their newest chunk is old enough
-- (see batchops.server.jobs.inputs).
-- created_at: epoch seconds when the chunk was written.
-- STORAGE EXTERNAL: stored out of line and uncompressed. Measured with a 100 MB CSV in
-- 1 MiB chunks, one transaction each: 230 MB/s, against 52 MB/s with the default pglz
-- compression (docs/benchmarks.md, "Uploads").

CREATE TABLE job_uploads (
    job_id     TEXT             NOT NULL,
    seq        INTEGER          NOT NULL,
    chunk      BYTEA            NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (job_id, seq)
);

ALTER TABLE job_uploads ALTER COLUMN chunk SET STORAGE EXTERNAL;
