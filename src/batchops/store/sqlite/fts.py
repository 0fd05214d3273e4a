"""The deferred full-text index of the SQLite store: the SQL that keeps ``records_fts`` right.

The FTS5 index ``records_fts`` (external content over ``records.search_text``) is
maintained by explicit statements rather than triggers (measured on a 100k-row insert in
groups of 100: ~144k rows/s vs ~40k rows/s with an AFTER INSERT trigger), and *deferred*:
indexing cost ~40 µs of a ~64 µs create in a 100-op batch, so inserts do not index at all.
``fts_watermark.indexed_rowid`` says how far the index goes; every row above it is pending.

- insert: no FTS work and no search text (new rows get rowids above the watermark; their
  ``search_text`` is computed from ``data`` when they are indexed);
- update / hard delete: index maintenance only for rows at or below the watermark;
  a hard delete lowers the watermark when it removes the highest rowids, so a reused rowid
  can never hide below it;
- search: first indexes every pending row, in the same transaction (read-your-writes);
  a search on a read connection (:mod:`.lanes`), which cannot write, raises
  :class:`IndexBehind` instead when its snapshot has pending rows, and is run again in
  the writer (a search answers the same wherever it runs);
- idle: the store indexes pending rows in chunks when no work has come for a moment (see
  :class:`batchops.store.sqlite.SQLiteStore`), so a search after a big import rarely pays
  for the whole catch-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from batchops._exceptions import StoreError
from batchops.store.sql.dialect import SQLITE
from batchops.store.sqlite.watch import StatementWatch

if TYPE_CHECKING:
    from batchops.store.sqlite.tx import Rows

__all__ = ["DeferredIndex", "IndexBehind"]

_FTS_ADD = "INSERT INTO records_fts (rowid, search_text) VALUES"
_FTS_REMOVE = "INSERT INTO records_fts (records_fts, rowid, search_text) VALUES"
_ROW_ADD = "(?, ?)"
_ROW_REMOVE = "('delete', ?, ?)"
_WATERMARK = "SELECT indexed_rowid FROM fts_watermark WHERE id = 1"
_TOP = "SELECT coalesce(max(rowid), 0) FROM records"
_TEXT_CATCH_UP = (
    "UPDATE records SET search_text = batchops_search_text(data) WHERE rowid > ? AND rowid <= ?"
)
_FTS_CATCH_UP = (
    "INSERT INTO records_fts (rowid, search_text) SELECT rowid, search_text FROM records "
    "WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
)
_ENTRIES = SQLITE.render(
    f"SELECT id, rowid, search_text FROM records "
    f"WHERE tenant = ? AND collection = ? AND id {SQLITE.in_list}"
)
_SET_WATERMARK = "UPDATE fts_watermark SET indexed_rowid = ? WHERE id = 1"
# SQLite hands out max(rowid)+1: once the highest rows are gone, their rowids may be
# reused, and a reused rowid must land above the watermark to be indexed.
_LOWER_WATERMARK = (
    "UPDATE fts_watermark SET indexed_rowid = "
    "min(indexed_rowid, (SELECT coalesce(max(rowid), 0) FROM records)) WHERE id = 1"
)


class IndexBehind(StoreError):
    """A read-only transaction was asked to search while committed rows wait to be
    indexed: it cannot catch the index up, and a search of the index alone would miss
    them. The search must run in the writer's transaction."""


class DeferredIndex:
    """The index maintenance methods of the SQLite transaction."""

    _watch: StatementWatch | None
    #: A read connection's transaction: it may read the index, never catch it up.
    _read_only: bool

    if TYPE_CHECKING:  # the SQLite transaction's

        def _execute(self, sql: str, params: Sequence[Any] = ()) -> Rows: ...

        def _execute_rows(
            self, head: str, row: str, rows: Sequence[Sequence[Any]], tail: str = ""
        ) -> int: ...

    def fts_watermark(self) -> int:
        """The highest rowid the full-text index covers."""
        row = self._execute(_WATERMARK).fetchone()
        return int(row[0]) if row else 0

    def index_pending(self, limit: int | None = None) -> int:
        """Index up to ``limit`` pending rows (all when None); returns how many.

        Not bound by the statement limit: after a big import the catch-up is long, and a
        catch-up cut short would be rolled back and started again by every search."""
        watermark = self.fts_watermark()
        top = self._execute(_TOP).fetchone()[0]
        if top <= watermark:
            return 0
        if self._read_only:
            raise IndexBehind(f"rows {watermark + 1}..{top} are not indexed yet")
        if limit is not None:
            top = min(top, watermark + limit)
        with self._watch.suspended() if self._watch is not None else nullcontext():
            self._execute(_TEXT_CATCH_UP, (watermark, top))
            cur = self._execute(_FTS_CATCH_UP, (watermark, top))
        self._execute(_SET_WATERMARK, (top,))
        return max(cur.rowcount, 0)

    def _fts_entries(
        self, tenant: str, collection: str, ids: Sequence[str]
    ) -> dict[str, tuple[int, str]]:
        """id -> (rowid, indexed search text) of the rows found."""
        cur = self._execute(_ENTRIES, (tenant, collection, SQLITE.bind_list(ids)))
        return {row[0]: (row[1], row[2]) for row in cur}

    def _fts_change(
        self, removed: Sequence[tuple[int, str]], added: Sequence[tuple[int, str]]
    ) -> None:
        """Take ``removed`` (rowid, text) entries out of the index and put ``added`` in
        (errors untranslated: the caller translates)."""
        self._execute_rows(_FTS_REMOVE, _ROW_REMOVE, removed)
        self._execute_rows(_FTS_ADD, _ROW_ADD, added)

    def _fts_lower_watermark(self) -> None:
        """After a hard delete (see ``_LOWER_WATERMARK``)."""
        self._execute(_LOWER_WATERMARK)
