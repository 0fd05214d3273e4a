-- An import's uploaded file, stored in the database as chunks of ~1 MiB
-- (seq 0, 1, … in file order), so that any process of the database can read it
-- (upload_storage "database"; on SQLite the default is "directory", files in the data
-- directory). Each chunk is committed separately as the body streams in. The job's row is
-- inserted only after the last chunk, in a transaction that first checks the chunks
-- are all there (seal_upload). The rows are deleted in the transaction that ends the
-- job. purge_uploads removes what a request that died mid-upload left behind
-- (see batchops.server.jobs.inputs).
-- created_at: epoch seconds when the chunk was written.

CREATE TABLE job_uploads (
    job_id     TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    chunk      BLOB    NOT NULL,
    created_at REAL    NOT NULL,
    PRIMARY KEY (job_id, seq)
);
