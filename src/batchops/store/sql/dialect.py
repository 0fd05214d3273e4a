"""What differs between SQLite and PostgreSQL in the *syntax* of a statement, in one object.

The statements of :mod:`batchops.store.sql` are written once, as templates, and rendered for
each dialect when a statement set is built — once per transaction class, at import time,
never per call: the store is on the hot path of every write, and the SQLite writer thread is
the serial section of all of them.

Template rules (:meth:`SqlDialect.render`):

- ``?`` is a parameter: ``?`` for sqlite3, ``%s`` for psycopg.
- ``?::type`` also tells PostgreSQL the parameter's type where it cannot infer it
  (``?::jsonb`` for JSON text written into a jsonb column, ``?::text`` for a parameter that
  may be NULL); SQLite has no parameter types, so the cast is dropped there.
- No ``%`` in a template (psycopg would read it as a placeholder).
- Other differences are spelled by the dialect's fields: a list of ids bound as one
  parameter (:attr:`SqlDialect.in_list`), row locks (:meth:`SqlDialect.for_update`), the
  text of a JSON field (:attr:`SqlDialect.field_text`), an equality filter on JSON
  (:attr:`SqlDialect.filter_sql`), how JSON columns come back (:attr:`SqlDialect.json_as_text`),
  and the database's clock (:attr:`SqlDialect.now`).

What differs in *behaviour* is not here: each store keeps its own code for it (multi-row
statements vs pipelined executemany and COPY, FTS5 vs tsvector, BEGIN IMMEDIATE vs row
locks), with a line saying why.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from batchops.store._query import FilterPath, sql_literal
from batchops.store.base import Dialect

__all__ = ["POSTGRES", "SQLITE", "SqlDialect"]

_PARAM = re.compile(r"\?(::[a-z_]+(?:\[\])?)?")


@dataclass(frozen=True, slots=True)
class SqlDialect:
    """One SQL dialect: the syntax the shared statement templates are rendered with."""

    name: Dialect
    #: The driver's placeholder.
    param: str
    #: PostgreSQL needs some parameters' types spelled (``?::jsonb``); SQLite has none.
    casts: bool
    #: PostgreSQL locks rows; on SQLite every transaction holds the database's write lock
    #: (``BEGIN IMMEDIATE``), so there is no row to lock and nothing to skip.
    row_locks: bool
    #: ``column <in_list>`` tests membership in a list bound as ONE parameter, so that the
    #: statement text is constant whatever the list's length (statement caches hit, and no
    #: limit on host parameters applies): ``json_each`` on SQLite, ``ANY`` on PostgreSQL.
    in_list: str
    #: The value to bind for :attr:`in_list`: JSON text on SQLite, a list on PostgreSQL.
    bind_list: Callable[[Sequence[str]], Any]
    #: The text of ``data``'s field at a dot path, as an SQL expression made of literals
    #: only (a partial expression index serves a query only if it has the same expression).
    field_text: Callable[[str], str]
    #: SQL and parameters for one equality filter on ``data`` (column prefix given).
    filter_sql: Callable[[FilterPath, str], tuple[str, list[Any]]]
    #: SQLite stores JSON as text and reads it back as text (and booleans as 0/1);
    #: PostgreSQL's jsonb comes back decoded (by orjson, see the PostgreSQL store).
    json_as_text: bool
    #: The database's clock as epoch seconds (a float): what every lease, heartbeat and
    #: claim cutoff of a job is measured with, so that processes on machines whose clocks
    #: disagree still agree on who owns a job (docs/jobs.md, "How it stays correct").
    now: str

    def render(self, template: str) -> str:
        """The template (see the module docstring) in this dialect."""
        if "%" in template:
            raise ValueError(f"a statement template may not contain '%': {template!r}")
        if self.casts:
            return _PARAM.sub(lambda m: self.param + (m.group(1) or ""), template)
        return _PARAM.sub(self.param, template)

    def for_update(self, *, of: str = "", skip_locked: bool = False, order_by: str = "") -> str:
        """The tail that row-locks what a SELECT reads (``order_by``: lock in that order, so
        that two transactions never wait on each other); nothing on SQLite."""
        if not self.row_locks:
            return ""
        order = f" ORDER BY {order_by}" if order_by else ""
        target = f" OF {of}" if of else ""
        return f"{order} FOR UPDATE{target}{' SKIP LOCKED' if skip_locked else ''}"


def _json_list(values: Sequence[str]) -> str:
    return orjson.dumps(list(values)).decode()


def _sqlite_field_text(path: str) -> str:
    json_path = "$" + "".join(f'."{segment}"' for segment in path.split("."))
    return f"CAST(json_extract(data, {sql_literal(json_path)}) AS TEXT)"


def _postgres_field_text(path: str) -> str:
    # Path segments are validated names: no quoting is needed inside the array literal.
    array = sql_literal("{" + ",".join(path.split(".")) + "}")
    # Booleans as SQLite's CAST gives them ('1' / '0'), the text callers compare with.
    return (
        f"CASE jsonb_typeof(data #> {array}) WHEN 'boolean' "
        f"THEN CASE WHEN (data #> {array})::boolean THEN '1' ELSE '0' END "
        f"ELSE data #>> {array} END"
    )


def _sqlite_filter(f: FilterPath, prefix: str = "") -> tuple[str, list[Any]]:
    """``json_type`` keeps JSON types apart: ``true`` matches JSON true only (not 1), ``"1"``
    matches the string only, numbers compare as numbers (1 equals 1.0), and ``None``
    matches an explicit null (not a missing key)."""
    path = f.sqlite_path()
    data = f"{prefix}data"
    value = f.value
    if value is None:
        return f"json_type({data}, ?) = 'null'", [path]
    if isinstance(value, bool):
        return f"json_type({data}, ?) = ?", [path, "true" if value else "false"]
    kinds = "'integer', 'real'" if isinstance(value, int | float) else "'text'"
    return (
        f"json_type({data}, ?) IN ({kinds}) AND json_extract({data}, ?) = ?",
        [path, path, value],
    )


def _postgres_filter(f: FilterPath, prefix: str = "") -> tuple[str, list[Any]]:
    """Plain paths use containment (``data @> {"a":{"b":v}}``), which keeps JSON types
    apart (true is not 1; 1 equals 1.0); paths with array indexes use ``#>`` equality.
    Neither has an index since migration 0007 (docs/benchmarks.md, "filters without the
    GIN on data")."""
    data = f"{prefix}data"
    if f.indexes_array:
        return f"{data} #> %s::text[] = %s::jsonb", [f.segments, orjson.dumps(f.value).decode()]
    return f"{data} @> %s::jsonb", [orjson.dumps(f.containment()).decode()]


# unixepoch('subsec') arrived in SQLite 3.42; julianday('now') (millisecond precision, as
# 'subsec') gives the same number on any version.
_SQLITE_NOW = (
    "unixepoch('subsec')"
    if sqlite3.sqlite_version_info >= (3, 42, 0)
    else "((julianday('now') - 2440587.5) * 86400.0)"
)

SQLITE = SqlDialect(
    name="sqlite",
    param="?",
    casts=False,
    row_locks=False,
    in_list="IN (SELECT value FROM json_each(?))",
    bind_list=_json_list,
    field_text=_sqlite_field_text,
    filter_sql=_sqlite_filter,
    json_as_text=True,
    now=_SQLITE_NOW,
)

POSTGRES = SqlDialect(
    name="postgresql",
    param="%s",
    casts=True,
    row_locks=True,
    in_list="= ANY(?)",
    bind_list=list,
    field_text=_postgres_field_text,
    filter_sql=_postgres_filter,
    json_as_text=False,
    # clock_timestamp(), not now(): the time of the statement, not of the transaction's
    # start (a lease renewed late in a long transaction must not look older than it is).
    now="extract(epoch from clock_timestamp())::float8",
)
