"""The Tx protocol is split by domain, and the store SQL is written once over a dialect."""

from __future__ import annotations

import inspect
from typing import Any, Protocol

import pytest

from batchops.store.base import Tx
from batchops.store.postgres import PostgresTx
from batchops.store.sql.dialect import POSTGRES, SQLITE, SqlDialect
from batchops.store.sqlite import SQLiteTx


def _own_members(cls: type) -> set[str]:
    """The public names a protocol class declares itself: methods and annotated fields."""
    names = {name for name in vars(cls) if not name.startswith("_")}
    return names | {name for name in vars(cls).get("__annotations__", {}) if name[0] != "_"}


def _domains() -> list[type]:
    return [base for base in Tx.__bases__ if base is not Protocol]


def _parts() -> list[type]:
    """The domain protocols of Tx and the protocols they share (their own bases)."""
    parts: list[type] = []
    for domain in _domains():
        for cls in inspect.getmro(domain):
            if cls not in parts and cls not in (Protocol, object) and _own_members(cls):
                parts.append(cls)
    return parts


def _owners() -> dict[str, list[str]]:
    owners: dict[str, list[str]] = {}
    for cls in _parts():
        for name in _own_members(cls):
            owners.setdefault(name, []).append(cls.__name__)
    return owners


def test_tx_declares_nothing_of_its_own_but_combines_the_domain_protocols() -> None:
    assert _own_members(Tx) == set()
    assert len(_domains()) >= 6


def test_every_tx_method_appears_in_exactly_one_domain_protocol() -> None:
    owners = _owners()
    assert {name: classes for name, classes in owners.items() if len(classes) != 1} == {}
    assert len(owners) > 40  # the whole interface, not an empty split


@pytest.mark.parametrize("tx_class", [SQLiteTx, PostgresTx], ids=["sqlite", "postgresql"])
def test_both_transaction_classes_implement_every_method_of_every_domain(
    tx_class: type,
) -> None:
    missing = [name for name in _owners() if not hasattr(tx_class, name)]
    assert missing == []


def _statements(tx_class: type) -> list[str]:
    """Every statement the shared domain modules rendered for a transaction class."""
    sets = [value for name, value in vars(tx_class).items() if name.endswith("_sql")]
    assert len(sets) == 6  # records, jobs, uploads, webhooks, keys, idempotency
    return [s for stmts in sets for s in vars(stmts).values() if isinstance(s, str)]


@pytest.mark.parametrize(
    ("tx_class", "foreign"),
    [(SQLiteTx, ["%s", "::"]), (PostgresTx, ["?"])],
    ids=["sqlite", "postgresql"],
)
def test_each_transaction_class_renders_the_shared_statements_in_its_own_dialect(
    tx_class: type, foreign: list[str]
) -> None:
    statements = _statements(tx_class)
    assert len(statements) > 40
    assert [s for s in statements if any(f in s for f in foreign)] == []


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        (SQLITE, "UPDATE t SET a = ?, b = ? WHERE c = ? AND d IS NULL"),
        (POSTGRES, "UPDATE t SET a = %s, b = %s::jsonb WHERE c = %s::text[] AND d IS NULL"),
    ],
    ids=["sqlite", "postgresql"],
)
def test_a_template_renders_placeholders_and_keeps_type_casts_only_for_postgresql(
    dialect: SqlDialect, expected: str
) -> None:
    template = "UPDATE t SET a = ?, b = ?::jsonb WHERE c = ?::text[] AND d IS NULL"
    assert dialect.render(template) == expected


def test_a_template_may_not_hold_a_percent_sign() -> None:
    with pytest.raises(ValueError, match="'%'"):
        POSTGRES.render("SELECT 1 WHERE a LIKE 'x%'")


def test_row_locks_are_spelled_on_postgresql_and_nothing_on_sqlite() -> None:
    kwargs: dict[str, Any] = {"of": "d", "skip_locked": True}
    assert POSTGRES.for_update(**kwargs) == " FOR UPDATE OF d SKIP LOCKED"
    assert POSTGRES.for_update(order_by="id") == " ORDER BY id FOR UPDATE"
    assert SQLITE.for_update(**kwargs) == ""
