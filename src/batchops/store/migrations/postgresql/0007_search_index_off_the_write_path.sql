-- The search index leaves the write path (issue 12; store/pg_search.py; measured in
-- bench/pg_indexes.py and docs/benchmarks.md, "PostgreSQL: what each index costs a write").
--
-- Before: every insert or update computed the generated tsv (~12 µs a row of PostgreSQL
-- CPU), added it to a GIN index (~9 µs) and added data to a jsonb_path_ops GIN index
-- (~8 µs): ~30 of the ~36 µs a COPYed row cost. Now:
-- - records.txid: the top-level transaction that last wrote the row (the column default;
--   updates set it), with a btree: ~0-2 µs a row;
-- - record_search holds each live record's tsvector (GIN). A background indexer fills it
--   for every row whose writer finished, and moves search_watermark.done forward: every
--   row with txid < done has its current tsvector in record_search;
-- - search reads rows below the watermark through the GIN index and evaluates the rows at
--   or above it (the batch's own writes, the last moments' commits) on the fly, so a
--   search sees exactly what it saw before, at once: the indexer only decides how fast.
-- - records_data (GIN over data) is dropped: filters compare values of the collection's
--   rows, as on SQLite; the expression indexes of upsert keys stay.
--
-- The table is locked for the migration, so no write lands between the copy of the
-- existing tsvectors and the new column. Existing rows get txid '1' (before any real
-- transaction id) with a constant default, which rewrites nothing; the real default is set
-- after. The watermark starts at the oldest transaction still running: everything older has
-- finished, and every row it wrote is in the copy.

LOCK TABLE records IN ACCESS EXCLUSIVE MODE;

CREATE TABLE record_search (
    tenant     TEXT     NOT NULL,
    collection TEXT     NOT NULL,
    id         TEXT     NOT NULL,
    txid       xid8     NOT NULL,
    tsv        TSVECTOR NOT NULL,
    PRIMARY KEY (tenant, collection, id)
);

INSERT INTO record_search (tenant, collection, id, txid, tsv)
SELECT tenant, collection, id, '1', tsv FROM records WHERE deleted_at IS NULL;

ALTER TABLE records DROP COLUMN tsv;

DROP INDEX records_data;

ALTER TABLE records ADD COLUMN txid xid8 NOT NULL DEFAULT '1';

ALTER TABLE records ALTER COLUMN txid SET DEFAULT pg_current_xact_id();

CREATE INDEX records_txid ON records (txid);

CREATE INDEX record_search_tsv ON record_search USING gin (tsv);

CREATE TABLE search_watermark (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    done xid8    NOT NULL
);

INSERT INTO search_watermark (id, done) VALUES (1, pg_snapshot_xmin(pg_current_snapshot()));
