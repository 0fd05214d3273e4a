"""PostgreSQL's full-text search, with its index kept off the write path.

Migration 0007 (``0007_search_index_off_the_write_path.sql``) has the why and the
measurements; in short, a write only stamps ``records.txid`` (the top-level transaction
that wrote the row, a column default / set by updates), and:

- **the indexer** (:func:`index_step`, run by the store in the background) copies the
  tsvector of every live row whose writer has *finished* into ``record_search`` (GIN),
  removes the entries of rows soft-deleted since, and moves ``search_watermark.done`` to
  the oldest transaction that may still commit (``_HORIZON``). Every transaction older
  than that has committed or rolled back, so after a step every row with
  ``txid < done`` has an exact entry if it is live and none if it is not, whatever order
  the writers committed in (a delete, by any path, removes its rows' entries through a
  trigger that first waits for a running step: migration 0008). Rows written later get a
  larger ``txid`` (a transaction's id is assigned at its first write, and a running one's
  is never below the horizon).
- **search** (:class:`SearchSQL`, ``_HITS``) ranks the collection's entries through the
  GIN index, minus those of *pending* rows (``txid >= done``: written since the last
  step, or by this very transaction), and evaluates the pending rows on the fly. The two
  halves are disjoint and together are every live row, so a search sees every write at
  once, exactly as when the tsvector was a generated column: there is no refresh delay to
  wait for (an Elasticsearch-style ``refresh: wait_for`` would have nothing to wait on);
  the indexer's lag only decides how many rows are evaluated on the fly. Both halves rank
  with ``ts_rank`` over the same tsvector, so scores are the same. Only the page's records
  are read from ``records`` (with filters: every candidate's, to test its data).

One indexer works at a time across every process on the database (a session advisory
lock taken without waiting, before the step's snapshot: see ``_INDEXER_LOCK``); a step
indexes at most ``INDEX_CHUNK`` rows (cut at a transaction boundary), and the store runs
steps when its process pauses (see ``PostgresStore``).
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


def _tsvector(row: str) -> str:
    """The words of the text of the records row aliased ``row``, as PostgreSQL indexes
    them (migration 0005's word split)."""
    return f"to_tsvector('simple'::regconfig, batchops_search_words({row}.search_text))"


_RECORD = ", ".join(f"r.{c.strip()}" for c in COLS.split(","))
_WATERMARK = "SELECT done FROM search_watermark WHERE id = 1"
# One indexer at a time, database-wide: a *session* lock on a constant key, taken before
# the step's transaction begins. Its snapshot must be taken after the lock: a delete's
# trigger (migration 0008) holds the same key shared until it commits, so a delete either
# committed before the step's snapshot (the step does not see the row) or waits for the
# step (and then removes the entry the step wrote). With a transaction-level lock the
# snapshot came first — the lock is taken by a statement of the transaction — and a step
# could index a row whose delete committed in between: an entry without a record
# (caught by test_concurrent_deletes_restores_and_the_indexer_leave_search_exact).
_INDEXER_KEY = "hashtextextended('batchops:search-indexer', 0)"
_INDEXER_LOCK = f"SELECT pg_try_advisory_lock({_INDEXER_KEY})"
_INDEXER_UNLOCK = f"SELECT pg_advisory_unlock({_INDEXER_KEY})"
# The oldest transaction that may still commit rows this step cannot see: the snapshot's
# running ones (its xip list, cluster-wide), except those pg_stat_activity shows running in
# *another* database (they cannot write this records table), else the snapshot's xmax.
# Without that exception a long transaction in any database of the cluster would hold the
# indexer back, as it holds VACUUM back. Conservative where it must be: a running
# transaction that ended before pg_stat_activity was read is not listed, so it still holds
# the horizon; so does one whose database a role without pg_read_all_stats cannot see.
_HORIZON = (
    "SELECT coalesce(min(x), pg_snapshot_xmax(pg_current_snapshot())) "
    "FROM pg_snapshot_xip(pg_current_snapshot()) AS x "
    "WHERE x::xid NOT IN (SELECT backend_xid FROM pg_stat_activity "
    "WHERE backend_xid IS NOT NULL AND datname IS NOT NULL "
    "AND datname <> current_database())"
)
# Where a step stops: the txid INDEX_CHUNK rows on (an index-only scan of records_txid);
# when one transaction wrote more than that, the step takes that transaction whole.
_CUT = (
    "SELECT txid FROM records WHERE txid >= %s::xid8 AND txid < %s::xid8 "
    "ORDER BY txid OFFSET %s LIMIT 1"
)
_NEXT = "SELECT min(txid) FROM records WHERE txid > %s::xid8 AND txid < %s::xid8"
_INDEX = (
    "INSERT INTO record_search (tenant, collection, id, txid, tsv) "
    f"SELECT r.tenant, r.collection, r.id, r.txid, {_tsvector('r')} FROM records r "
    "WHERE r.txid >= %s::xid8 AND r.txid < %s::xid8 AND r.deleted_at IS NULL "
    "ON CONFLICT (tenant, collection, id) DO UPDATE SET txid = excluded.txid, tsv = excluded.tsv"
)
# Soft-deleted rows of the step lose their entries (an entry exists only for a live row
# below the watermark: search trusts that, see _HITS).
_UNLIST = (
    "DELETE FROM record_search s USING records r "
    "WHERE r.txid >= %s::xid8 AND r.txid < %s::xid8 AND r.deleted_at IS NOT NULL "
    "AND s.tenant = r.tenant AND s.collection = r.collection AND s.id = r.id"
)
_ADVANCE = "UPDATE search_watermark SET done = %s::xid8 WHERE id = 1"

# The matches of a search, as (id, score): the index's entries for this collection whose
# record is not pending, and the pending records (txid at or above the watermark: written
# since the indexer's last step, or by this transaction) evaluated on the fly. Entries are
# exact for every record below the watermark (the indexer writes an entry for each live row
# it passes and removes a soft-deleted row's; a delete's trigger removes its rows'), so only
# the pending rows must be checked against them — a handful, found through records_txid.
# The shape is fixed on purpose (materialized CTEs, lateral key lookups): right after a
# bulk load, before autovacuum has analyzed the table, the planner believed a collection
# of 40k rows held 2 and computed the tsvector of all of them to find the pending ones
# (170 ms instead of 15). ``pending`` reads the txid index alone (no tenant in its
# WHERE); ``here`` and the page fetch their records by key, one lookup per row (a
# lateral subquery with OFFSET 0 is never flattened into a scan of the collection).
_HITS = (
    "WITH q AS MATERIALIZED (SELECT plainto_tsquery('simple', %(words)s) AS q), "
    "pending AS MATERIALIZED (SELECT tenant, collection, id FROM records "
    "WHERE txid >= %(mark)s::xid8), "
    "mine AS MATERIALIZED (SELECT id FROM pending "
    "WHERE tenant = %(tenant)s AND collection = %(collection)s), "
    "here AS MATERIALIZED (SELECT p.id, p.data, p.deleted_at, p.search_text "
    "FROM mine CROSS JOIN LATERAL (SELECT * FROM records r WHERE r.tenant = %(tenant)s "
    "AND r.collection = %(collection)s AND r.id = mine.id OFFSET 0) AS p), "
    "hits AS ("
    "SELECT s.id, ts_rank(s.tsv, q.q) AS score FROM q, record_search s{entry_join} "
    "WHERE s.tenant = %(tenant)s AND s.collection = %(collection)s AND s.tsv @@ q.q "
    "AND NOT EXISTS (SELECT 1 FROM here WHERE here.id = s.id){entry_filters} "
    "UNION ALL "
    "SELECT p.id, ts_rank(v, q.q) FROM q, here AS p, "
    f"{_tsvector('p')} AS v "
    "WHERE p.deleted_at IS NULL AND v @@ q.q{pending_filters})"
)
_ENTRY_JOIN = (
    " JOIN records r ON r.tenant = s.tenant AND r.collection = s.collection AND r.id = s.id"
)
# The page: the best ``limit`` matches, then their records (a handful of key lookups).
_PAGE = (
    f"SELECT {_RECORD}, h.score, h.total FROM "
    "(SELECT id, score, count(*) OVER () AS total FROM hits "
    "ORDER BY score DESC, id LIMIT %(limit)s) AS h "
    "CROSS JOIN LATERAL (SELECT * FROM records r WHERE r.tenant = %(tenant)s "
    "AND r.collection = %(collection)s AND r.id = h.id OFFSET 0) AS r "
    "ORDER BY h.score DESC, h.id"
)


def index_step(conn: psycopg.Connection[Any], chunk: int = INDEX_CHUNK) -> int | None:
    """One indexer step on ``conn`` (autocommit: the step opens its own transaction),
    REPEATABLE READ (one snapshot for the horizon and the rows), under the indexer's lock.
    Returns how many rows it indexed, or None when another indexer holds the lock. Not
    bound by the statement limit (a backlog after downtime is long)."""
    locked = conn.execute(_INDEXER_LOCK).fetchone()
    if not locked or not locked[0]:
        return None
    try:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SET LOCAL statement_timeout = 0")
            # xid8 values as text (psycopg has no loader for them), compared as integers.
            done = str(_one(conn, _WATERMARK))
            horizon = str(_one(conn, _HORIZON))
            if int(horizon) <= int(done):
                return 0
            cut = str(_one(conn, _CUT, (done, horizon, chunk)) or horizon)
            if cut == done:  # one transaction holds more than a chunk: take it whole
                cut = str(_one(conn, _NEXT, (done, horizon)) or horizon)
            indexed = conn.execute(_INDEX, (done, cut)).rowcount
            conn.execute(_UNLIST, (done, cut))
            conn.execute(_ADVANCE, (cut,))
            return max(indexed, 0)
    finally:
        # A pooled connection outlives the step; a broken one takes the lock with it.
        if not conn.closed:
            conn.execute(_INDEXER_UNLOCK)


def _named(clause: str, n: int, values: Sequence[Any], params: dict[str, Any]) -> str:
    """``clause`` with its ``%s`` placeholders named ``f<n>_<i>`` (their values put in
    ``params``): the statement binds by name, for filters used in two places."""
    parts = clause.split("%s")
    out = [parts[0]]
    for i, (value, part) in enumerate(zip(values, parts[1:], strict=True)):
        params[f"f{n}_{i}"] = value
        out.append(f"%(f{n}_{i})s{part}")
    return "".join(out)


def _one(conn: psycopg.Connection[Any], sql: str, params: Sequence[Any] = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


class SearchSQL:
    """The search methods of the PostgreSQL transaction (see the module docstring)."""

    if TYPE_CHECKING:  # the PostgreSQL transaction's

        def _execute(
            self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
        ) -> psycopg.Cursor[Any]: ...

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
        params: dict[str, Any] = {
            "words": " ".join(tokens),
            "mark": str(done[0]) if done else "0",
            "tenant": tenant,
            "collection": collection,
        }
        entry_filters, pending_filters = [], []
        for n, f in enumerate(parsed):
            entry, values = POSTGRES.filter_sql(f, "r.")
            entry_filters.append(f" AND {_named(entry, n, values, params)}")
            pending, _ = POSTGRES.filter_sql(f, "p.")
            pending_filters.append(f" AND {_named(pending, n, values, params)}")
        hits = _HITS.format(
            # Filters need each entry's record; without them the entries answer alone.
            entry_join=_ENTRY_JOIN if parsed else "",
            entry_filters="".join(entry_filters),
            pending_filters="".join(pending_filters),
        )
        if limit <= 0:
            total = self._execute(f"{hits} SELECT count(*) FROM hits", params).fetchone()
            return [], int(total[0]) if total else 0
        params["limit"] = limit
        rows = self._execute(f"{hits} {_PAGE}", params).fetchall()
        total = rows[0][9] if rows else 0
        record = self._records_sql.record
        return [(record(row), float(row[8])) for row in rows], int(total)
