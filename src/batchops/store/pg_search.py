"""PostgreSQL's full-text search, with its index kept off the write path.

Migration 0007 (``0007_search_index_off_the_write_path.sql``) has the why and the
measurements; in short, a write only stamps ``records.txid`` (the top-level transaction
that wrote the row, a column default / set by updates), and:

- **the indexer** (:func:`index_step`, run by the store in the background) copies the
  tsvector of every row whose writer has *finished* into ``record_search`` (GIN) and moves
  ``search_watermark.done`` to the oldest transaction still running. Every transaction
  older than that has committed or rolled back, so after a step every row with
  ``txid < done`` has its current tsvector in ``record_search`` — whatever order the
  writers committed in. Rows written later get a larger ``txid`` (a transaction's id is
  assigned at its first write, and a running one's is never below the oldest running).
- **search** (:class:`SearchSQL`) takes the rows below the watermark from the GIN index
  (their ``record_search.txid`` must equal the row's, or the entry is stale) and evaluates
  the rows at or above it on the fly — the batch's own earlier writes, the last moments'
  commits. The two halves are disjoint and together are every live row, so a search sees
  every write at once, exactly as when the tsvector was a generated column: there is no
  refresh delay to wait for (an Elasticsearch-style ``refresh: wait_for`` would have
  nothing to wait on); the indexer's lag only decides how many rows are evaluated on the
  fly. Both halves rank with ``ts_rank`` over the same tsvector, so scores are the same.

One indexer works at a time across every process on the database (a transaction-level
advisory lock, taken without waiting); a step indexes at most ``INDEX_CHUNK`` rows (cut at
a transaction boundary), and the store runs steps back to back while rows are pending.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from batchops.store._query import parse_filters, search_tokens
from batchops.store.base import RecordRow
from batchops.store.sql.dialect import POSTGRES
from batchops.store.sql.records import COLS, RecordStatements

if TYPE_CHECKING:
    import psycopg

__all__ = ["INDEX_CHUNK", "SearchSQL", "index_step"]

#: Most rows one indexer step indexes (a step never splits one transaction's rows).
INDEX_CHUNK = 20_000

# The words of a record's text, as PostgreSQL indexes them (migration 0005's word split).
_TSVECTOR = "to_tsvector('simple'::regconfig, batchops_search_words(r.search_text))"
_RECORD = ", ".join(f"r.{c.strip()}" for c in COLS.split(","))
_WATERMARK = "SELECT done FROM search_watermark WHERE id = 1"
# A constant key for pg_try_advisory_xact_lock: one indexer at a time, database-wide.
_INDEXER_LOCK = "SELECT pg_try_advisory_xact_lock(hashtextextended('batchops:search-indexer', 0))"
_HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot())"
# Where a step stops: the txid INDEX_CHUNK rows on (an index-only scan of records_txid);
# when one transaction wrote more than that, the step takes that transaction whole.
_CUT = (
    "SELECT txid FROM records WHERE txid >= %s::xid8 AND txid < %s::xid8 "
    "ORDER BY txid OFFSET %s LIMIT 1"
)
_NEXT = "SELECT min(txid) FROM records WHERE txid > %s::xid8 AND txid < %s::xid8"
_INDEX = (
    "INSERT INTO record_search (tenant, collection, id, txid, tsv) "
    f"SELECT r.tenant, r.collection, r.id, r.txid, {_TSVECTOR} FROM records r "
    "WHERE r.txid >= %s::xid8 AND r.txid < %s::xid8 AND r.deleted_at IS NULL "
    "ON CONFLICT (tenant, collection, id) DO UPDATE SET txid = excluded.txid, tsv = excluded.tsv"
)
_ADVANCE = "UPDATE search_watermark SET done = %s::xid8 WHERE id = 1"
_FORGET = (
    "DELETE FROM record_search s USING unnest(%s::text[]) AS k(id) "
    "WHERE s.tenant = %s AND s.collection = %s AND s.id = k.id"
)


def index_step(conn: psycopg.Connection[Any], chunk: int = INDEX_CHUNK) -> int | None:
    """One indexer step in its own REPEATABLE READ transaction (one snapshot for the
    horizon and the rows). Returns how many rows it indexed, or None when another indexer
    holds the lock. Not bound by the statement limit (a backlog after downtime is long)."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        conn.execute("SET LOCAL statement_timeout = 0")
        locked = conn.execute(_INDEXER_LOCK).fetchone()
        if not locked or not locked[0]:
            return None
        # xid8 values as text (psycopg has no loader for them), compared as integers.
        done = str(_one(conn, _WATERMARK))
        horizon = str(_one(conn, _HORIZON))
        if int(horizon) <= int(done):
            return 0
        cut = str(_one(conn, _CUT, (done, horizon, chunk)) or horizon)
        if cut == done:  # one transaction holds more than a chunk: take it whole
            cut = str(_one(conn, _NEXT, (done, horizon)) or horizon)
        indexed = conn.execute(_INDEX, (done, cut)).rowcount
        conn.execute(_ADVANCE, (cut,))
        return max(indexed, 0)


def _one(conn: psycopg.Connection[Any], sql: str, params: Sequence[Any] = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


class SearchSQL:
    """The search methods of the PostgreSQL transaction (see the module docstring)."""

    if TYPE_CHECKING:  # the PostgreSQL transaction's

        def _execute(self, sql: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]: ...

        _records_sql: ClassVar[RecordStatements]

    def search_records(
        self,
        tenant: str,
        collection: str,
        *,
        query: str,
        filters: Mapping[str, Any],
        limit: int,
    ) -> tuple[list[tuple[RecordRow, float]], int]:
        """tsvector search ranked by ts_rank (higher is better).

        Every word of ``query`` must match (the same word split as SQLite's, handed to
        ``plainto_tsquery('simple', …)``). The tsvector holds the same words of the record's
        text: it parses ``batchops_search_words(search_text)`` (migration 0005), not the raw
        text, which the parser would keep as one ``u7@x.org`` token. A query without words
        matches nothing.
        """
        tokens = search_tokens(query)
        parsed = parse_filters(filters)
        if not tokens:
            return [], 0
        # Read first, in its own statement: a watermark read before the search's snapshot
        # can only be lower than the one in it, which moves rows to the on-the-fly half —
        # never the other way.
        done = self._execute(_WATERMARK).fetchone()
        clauses, values = [], []
        for f in parsed:
            clause, params = POSTGRES.filter_sql(f, "r.")
            clauses.append(f" AND {clause}")
            values.extend(params)
        where = "".join(clauses)
        scope = "r.tenant = %s AND r.collection = %s AND r.deleted_at IS NULL"
        hits = (
            f"SELECT {_RECORD}, ts_rank(s.tsv, q) AS score "
            "FROM record_search s JOIN records r ON r.tenant = s.tenant "
            "AND r.collection = s.collection AND r.id = s.id AND r.txid = s.txid, "
            "plainto_tsquery('simple', %s) AS q "
            f"WHERE s.tenant = %s AND s.collection = %s AND s.tsv @@ q AND {scope} "
            f"AND r.txid < %s::xid8{where} "
            "UNION ALL "
            f"SELECT {_RECORD}, ts_rank(v, q) AS score "
            f"FROM records r, {_TSVECTOR} AS v, plainto_tsquery('simple', %s) AS q "
            f"WHERE r.txid >= %s::xid8 AND {scope} AND v @@ q{where}"
        )
        words = " ".join(tokens)
        mark = str(done[0]) if done else "0"
        params = [
            *(words, tenant, collection, tenant, collection, mark, *values),
            *(words, mark, tenant, collection, *values),
        ]
        if limit <= 0:
            total = self._execute(f"SELECT count(*) FROM ({hits}) AS h", params).fetchone()
            return [], int(total[0]) if total else 0
        rows = self._execute(
            f"SELECT *, count(*) OVER () FROM ({hits}) AS h ORDER BY score DESC, id LIMIT %s",
            [*params, limit],
        ).fetchall()
        total = rows[0][9] if rows else 0
        record = self._records_sql.record
        return [(record(row), float(row[8])) for row in rows], int(total)

    def _forget_search(self, tenant: str, collection: str, ids: Sequence[str]) -> None:
        """Drop the index entries of hard-deleted rows (a stale entry is never returned —
        its txid no longer matches — but it would be kept and read forever)."""
        self._execute(_FORGET, (list(ids), tenant, collection))
