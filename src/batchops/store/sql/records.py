"""The records reads written once: existence, reads by id, listing, counting and lookups by a
field (:class:`batchops.store.base.RecordsTx`).

Writes (inserts, updates, hard deletes) and search stay in each store, because they differ
in behaviour, not syntax: SQLite writes multi-row statements and keeps a deferred FTS5
index; PostgreSQL pipelines executemany, COPYs big groups and searches a tsvector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import orjson

from batchops.store._query import field_index_name, parse_filters, sql_literal
from batchops.store.base import RecordRow
from batchops.store.sql.dialect import SqlDialect
from batchops.store.sql.tx import SqlTx

__all__ = ["COLS", "RecordStatements", "RecordsSQL", "field_sql"]

COLS = "tenant, collection, id, data, version, created_at, updated_at, deleted_at"


def _record_from_text(row: Sequence[Any]) -> RecordRow:
    return RecordRow(row[0], row[1], row[2], orjson.loads(row[3]), row[4], row[5], row[6], row[7])


def _record(row: Sequence[Any]) -> RecordRow:
    return RecordRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7])


def field_sql(d: SqlDialect, tenant: str, collection: str, path: str) -> tuple[str, str]:
    """(the text of the field at ``path``, the collection's live records) with literals
    only: a partial expression index serves a query only if it has the same expression and
    predicate (a bound parameter does not prove the predicate)."""
    scope = (
        f"tenant = {sql_literal(tenant)} AND collection = {sql_literal(collection)} "
        "AND deleted_at IS NULL"
    )
    return d.field_text(path), scope


class RecordStatements:
    """The records statements of one dialect, rendered once."""

    def __init__(self, d: SqlDialect) -> None:
        self.dialect = d
        ids = f"tenant = ? AND collection = ? AND id {d.in_list}"
        self.ids = d.render(ids)
        self.existing = d.render(f"SELECT id FROM records WHERE {ids}")
        get = f"SELECT {COLS} FROM records WHERE {ids} AND (? OR deleted_at IS NULL)"
        self.get = d.render(get)
        self.get_locked = d.render(get + d.for_update(order_by="id"))
        self.delete = d.render(f"DELETE FROM records WHERE {ids}")
        live = "FROM records WHERE tenant = ? AND collection = ? AND deleted_at IS NULL"
        self.list = d.render(f"SELECT {COLS} {live}")
        self.count = d.render(f"SELECT count(*) {live}")
        self.collection_counts = d.render(
            "SELECT collection, count(*) FROM records WHERE tenant = ? AND deleted_at IS NULL "
            "GROUP BY collection ORDER BY collection"
        )
        self.after_id = d.render("AND id > ?")
        self.page = d.render("ORDER BY id LIMIT ?")
        self.page_locked = d.render("ORDER BY id LIMIT ?" + d.for_update())
        self.in_list = d.render(d.in_list)
        self.bind_ids = d.bind_list
        self.filter_sql = d.filter_sql
        self.record = _record_from_text if d.json_as_text else _record


class RecordsSQL(SqlTx):
    """The records reads of the transaction (see :class:`batchops.store.base.RecordsTx`)."""

    _records_sql: ClassVar[RecordStatements]

    def existing_ids(self, tenant: str, collection: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` exist (soft-deleted included)."""
        if not ids:
            return set()
        s = self._records_sql
        cur = self._execute(s.existing, (tenant, collection, s.bind_ids(ids)))
        return {row[0] for row in cur}

    def get_records(
        self,
        tenant: str,
        collection: str,
        ids: Sequence[str],
        *,
        include_deleted: bool = False,
        for_update: bool = False,
    ) -> dict[str, RecordRow]:
        """The rows found, by id; ``for_update`` locks them in id order (PostgreSQL's READ
        COMMITTED then reads each row as its last writer committed it, and re-checks
        ``deleted_at``; SQLite's transaction holds the write lock already)."""
        if not ids:
            return {}
        s = self._records_sql
        cur = self._execute(
            s.get_locked if for_update else s.get,
            (tenant, collection, s.bind_ids(ids), include_deleted),
        )
        record = s.record
        return {row[2]: record(row) for row in cur}

    def delete_records(self, tenant: str, collection: str, ids: Sequence[str]) -> int:
        """Remove rows for good; returns how many were removed."""
        if not ids:
            return 0
        s = self._records_sql
        return int(self._execute(s.delete, (tenant, collection, s.bind_ids(ids))).rowcount)

    def list_records(
        self,
        tenant: str,
        collection: str,
        *,
        filters: Mapping[str, Any],
        after_id: str | None,
        limit: int,
        for_update: bool = False,
    ) -> list[RecordRow]:
        """Live records ordered by id, after ``after_id``, matching every filter;
        ``for_update`` locks them (see :meth:`get_records`)."""
        s = self._records_sql
        sql = [s.list]
        params: list[Any] = [tenant, collection]
        if after_id is not None:
            sql.append(s.after_id)
            params.append(after_id)
        for f in parse_filters(filters):
            clause, values = s.filter_sql(f, "")
            sql.append(f"AND {clause}")
            params.extend(values)
        sql.append(s.page_locked if for_update else s.page)
        params.append(max(limit, 0))
        record = s.record
        return [record(row) for row in self._execute(" ".join(sql), params)]

    def count_records(self, tenant: str, collection: str, *, filters: Mapping[str, Any]) -> int:
        """How many live records match every filter (the filters of list_records)."""
        s = self._records_sql
        sql = [s.count]
        params: list[Any] = [tenant, collection]
        for f in parse_filters(filters):
            clause, values = s.filter_sql(f, "")
            sql.append(f"AND {clause}")
            params.extend(values)
        row = self._execute(" ".join(sql), params).fetchone()
        return int(row[0])

    def collection_counts(self, tenant: str) -> list[tuple[str, int]]:
        """The tenant's collections with live records, by name, and how many each holds."""
        cur = self._execute(self._records_sql.collection_counts, (tenant,))
        return [(row[0], int(row[1])) for row in cur]

    def find_ids_by_field(
        self, tenant: str, collection: str, path: str, values: Sequence[str]
    ) -> dict[str, str]:
        """Live records whose field at ``path`` has one of ``values`` (as text)."""
        if not values:
            return {}
        s = self._records_sql
        expr, scope = field_sql(s.dialect, tenant, collection, path)
        hint = self._index_hint(field_index_name(tenant, collection, path))
        cur = self._execute(
            f"SELECT id, {expr} FROM records {hint}WHERE {scope} AND {expr} {s.in_list} "
            "ORDER BY id",
            (s.bind_ids(values),),
        )
        return {row[1]: row[0] for row in cur}

    def _index_hint(self, name: str) -> str:
        """What to say between the table and WHERE so that the field index ``name`` is
        used (nothing: the planner finds it; SQLite's store overrides this)."""
        return ""
