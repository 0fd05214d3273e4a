"""The base of the statement mixins: what they need of a store's transaction class.

Each domain module (:mod:`.records`, :mod:`.jobs`, :mod:`.uploads`, :mod:`.webhooks`,
:mod:`.keys`, :mod:`.idempotency`) holds the methods of its domain's Tx protocol, written once, over
statements rendered for the transaction class's dialect. The SQLite and PostgreSQL
transaction classes mix them in and provide ``_execute``/``_executemany`` (each maps its
driver's errors, see their store).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from batchops.store._beside import Lanes, read_beside
from batchops.store.sql.dialect import SqlDialect

if TYPE_CHECKING:
    from batchops.store.base import Tx

T = TypeVar("T")

__all__ = ["SqlTx"]


class SqlTx:
    """Declares the calls the mixins make; the store's transaction class defines them."""

    #: The transaction class's dialect (its statement sets are rendered with it).
    sql_dialect: ClassVar[SqlDialect]
    #: Where :meth:`read_beside` finds other connections (None: it runs every read here).
    _lanes: Lanes | None = None

    def _run(self, template: str, params: Sequence[Any] = ()) -> Any:
        """Run a one-off statement template (``?`` placeholders, see
        :mod:`batchops.store.sql.dialect`) in this dialect: rendered per call, so for
        tests and rare statements only, never for the store's own statements."""
        return self._execute(self.sql_dialect.render(template), params)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; returns the driver's cursor."""
        raise NotImplementedError

    def _executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        """Run one statement over many parameter rows; returns the driver's cursor."""
        raise NotImplementedError

    def set_statement_timeout(self, seconds: float | None) -> None:
        """See :meth:`batchops.store.base.TxBase.set_statement_timeout`."""
        raise NotImplementedError

    def database_now(self) -> float:
        """See :meth:`batchops.store.base.TxBase.database_now`."""
        return float(self._execute(f"SELECT {self.sql_dialect.now}").fetchone()[0])

    def lock(self, name: str) -> None:
        """See :meth:`batchops.store.base.TxBase.lock`."""
        raise NotImplementedError

    def applied_migrations(self) -> list[str]:
        """See :meth:`batchops.store.base.TxBase.applied_migrations`."""
        rows = self._execute(
            "SELECT migration_id FROM _yoyo_migration ORDER BY applied_at_utc, migration_id"
        ).fetchall()
        return [str(row[0]) for row in rows]

    def read_beside(
        self,
        reads: Sequence[Callable[[Tx], T]],
        *,
        width: int,
        deadline: float | None = None,
    ) -> list[T]:
        """See :meth:`batchops.store.base.TxBase.read_beside`."""
        return read_beside(
            cast("Tx", self), reads, width=width, deadline=deadline, lanes=self._lanes
        )
