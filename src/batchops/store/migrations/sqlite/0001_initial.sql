-- batchops schema v1 for SQLite.
-- records is a rowid table (not WITHOUT ROWID) because the FTS5 index below is an
-- external-content table keyed by records.rowid. The store keeps records_fts in sync with
-- explicit statements in the same transaction, not triggers: on a 100k-row insert in groups
-- of 100, triggers ran at ~40k rows/s and one INSERT ... SELECT per group at ~144k rows/s
-- (see docs/benchmarks.md).

CREATE TABLE records (
    tenant      TEXT    NOT NULL,
    collection  TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    data        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    deleted_at  TEXT,
    search_text TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (tenant, collection, id)
);

CREATE VIRTUAL TABLE records_fts USING fts5(
    search_text,
    content = 'records',
    content_rowid = 'rowid'
);

CREATE TABLE api_keys (
    key_id     TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    name       TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

CREATE INDEX api_keys_tenant ON api_keys (tenant);

CREATE TABLE idempotency_keys (
    tenant      TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('in_flight', 'done')),
    created_at  REAL    NOT NULL,
    status_code INTEGER,
    response    BLOB,
    PRIMARY KEY (tenant, key)
);
