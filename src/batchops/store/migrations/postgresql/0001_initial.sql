-- batchops schema v1 for PostgreSQL.
-- tsv is generated from search_text (all string values of data) so it can never drift;
-- data gets a jsonb_path_ops GIN index so equality filters written as data @> '{...}' can
-- use it.

CREATE TABLE records (
    tenant      TEXT    NOT NULL,
    collection  TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    data        JSONB   NOT NULL,
    version     INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    deleted_at  TEXT,
    search_text TEXT    NOT NULL DEFAULT '',
    tsv         TSVECTOR GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, search_text)) STORED,
    PRIMARY KEY (tenant, collection, id)
);

CREATE INDEX records_tsv ON records USING gin (tsv);

CREATE INDEX records_data ON records USING gin (data jsonb_path_ops);

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
    tenant      TEXT             NOT NULL,
    key         TEXT             NOT NULL,
    fingerprint TEXT             NOT NULL,
    state       TEXT             NOT NULL CHECK (state IN ('in_flight', 'done')),
    created_at  DOUBLE PRECISION NOT NULL,
    status_code INTEGER,
    response    BYTEA,
    PRIMARY KEY (tenant, key)
);
