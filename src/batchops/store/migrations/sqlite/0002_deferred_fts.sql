-- Deferred full-text indexing. Rows with rowid > fts_watermark.indexed_rowid are not in
-- records_fts yet: inserts skip the FTS statements (which cost ~40 µs of a ~64 µs create,
-- measured on 100-op batches), search catches the index up first (read-your-writes), and the
-- store indexes pending rows in the background while it is idle. See store/sqlite.py.
CREATE TABLE fts_watermark (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_rowid INTEGER NOT NULL
);

INSERT INTO fts_watermark (id, indexed_rowid)
SELECT 1, coalesce(max(rowid), 0) FROM records;
