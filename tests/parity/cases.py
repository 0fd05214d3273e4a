"""The parity contract as data: each record operation once, in no dialect (:class:`Op`),
with the one outcome every way in must give it (:class:`Case`). Matchers stand for what the
server makes up (times, generated ids, scores, cursors).

(One table on purpose, past 500 lines: the contract reads top to bottom, operation by
operation, and a case is added where its operation's others are.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["ABSENT", "BIG", "CASES", "Case", "Op"]

ABSENT: Final[Any] = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
"""A field the operation does not send (as opposed to one sent as null)."""

BIG: Final = 2**70
"""An integer beyond 64 bits."""


class _Matches:
    """Equal to any value ``accept`` accepts (for what the server makes up: times, ids,
    search scores)."""

    def __init__(self, what: str, accept: Callable[[Any], bool]) -> None:
        self.what, self.accept = what, accept

    def __eq__(self, other: object) -> bool:
        return self.accept(other)

    def __hash__(self) -> int:
        return hash(self.what)

    def __repr__(self) -> str:
        return f"<{self.what}>"


_TIME_RE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
_UUID7_RE: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
TIME: Final = _Matches("time", lambda v: isinstance(v, str) and bool(_TIME_RE.fullmatch(v)))
NEW_ID: Final = _Matches("uuid7", lambda v: isinstance(v, str) and bool(_UUID7_RE.fullmatch(v)))
SCORE: Final = _Matches("score", lambda v: isinstance(v, int | float) and not isinstance(v, bool))
CURSOR: Final = _Matches("cursor", lambda v: isinstance(v, str) and v != "")


@dataclass(frozen=True)
class Op:
    """One record operation, in no dialect. ``ABSENT`` fields are not sent."""

    type: str
    collection: str = "people"
    id: Any = ABSENT
    data: Any = ABSENT
    query: Any = ABSENT
    filters: Any = ABSENT
    limit: Any = ABSENT
    cursor: Any = ABSENT
    if_match: Any = ABSENT  # the expected version (If-Match over REST)
    hard: Any = ABSENT
    include_deleted: Any = ABSENT


@dataclass(frozen=True)
class Case:
    """An operation after ``setup`` (typed batch operations, all of which must succeed),
    and the one outcome every path must give it."""

    sentence: str
    op: Op
    status: int
    code: str | None = None  # an error's code
    path: str | None = None  # an error's details.path (None: it has none)
    details: dict[str, Any] | None = None  # an error's whole details, where they matter
    body: Any = ABSENT  # a success's body (with matchers); ABSENT: not compared
    setup: tuple[dict[str, Any], ...] = ()
    check: Callable[[Any], None] | None = None  # more about a success's body


# -- seeds ---------------------------------------------------------------------------------


def _create(record_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "create", "collection": "people", "id": record_id, "data": data}


def _delete(record_id: str) -> dict[str, Any]:
    return {"type": "delete", "collection": "people", "id": record_id}


def record(record_id: Any, data: dict[str, Any], version: int = 1, **extra: Any) -> dict[str, Any]:
    """A record body as the wire carries it."""
    return {
        "id": record_id,
        "collection": "people",
        "data": data,
        "version": version,
        "created_at": TIME,
        "updated_at": TIME,
        **extra,
    }


ADA = _create("p1", {"name": "Ada", "team": "core"})
SOFT_DELETED = (ADA, _delete("p1"))
THREE = (
    _create("p1", {"name": "Ada", "team": "core"}),
    _create("p2", {"name": "Grace", "team": "web"}),
    _create("p3", {"name": "Edsger", "team": "core"}),
)
MANY = tuple(_create(f"p{i:03d}", {"i": i}) for i in range(101))
"""One more record than a list's default page."""
ADAS = tuple(_create(f"a{i:02d}", {"name": f"ada number {i}"}) for i in range(25))
"""More matches than a search's default page."""


def _results_of(size: int, total: int) -> Callable[[Any], None]:
    def check(body: Any) -> None:
        assert len(body["results"]) == size, body
        assert body["total"] == total

    return check


BAD_LIMITS: Final = [
    ("zero", 0),
    ("negative", -1),
    ("past the maximum page", 1001),
    ("an integer beyond 64 bits", BIG),
    ("not a whole number", 2.5),
    ("not a number", "ten"),
]

BAD_FLAGS: Final = [
    ("1", 1),
    ("yes", "yes"),
    ("TRUE (flags are lowercase)", "TRUE"),
    ("maybe", "maybe"),
    ("empty", ""),
]
"""Values a flag (``hard``, ``include_deleted``) may not take: in a query string a flag is
exactly ``true`` or ``false``, in a typed operation a JSON boolean. (Each is sent as query
text over REST and the REST dialect, and as the JSON value itself in a typed operation:
``1`` is the number there.)"""

# -- the cases -----------------------------------------------------------------------------

CASES: list[Case] = [
    # create
    Case(
        "a create with an id answers 201 and the record at version 1",
        Op("create", id="p1", data={"name": "Ada"}),
        201,
        body=record("p1", {"name": "Ada"}),
    ),
    Case(
        "a create without an id answers 201 with a generated time-ordered id",
        Op("create", data={"name": "Ada"}),
        201,
        body=record(NEW_ID, {"name": "Ada"}),
    ),
    Case(
        "a create whose data is not an object is a 422 naming data",
        Op("create", id="p1", data=[1]),
        422,
        "VALIDATION_ERROR",
        "data",
    ),
    Case(
        "a create with an integer beyond 64 bits in its data is a 422 naming it",
        Op("create", id="p1", data={"n": BIG}),
        422,
        "VALIDATION_ERROR",
        "data.n",
    ),
    Case(
        "a create with a bad record id is a 422 naming the id",
        Op("create", id="bad!id", data={}),
        422,
        "VALIDATION_ERROR",
        "id",
    ),
    Case(
        "a create in a badly named collection is a 422 naming the collection",
        Op("create", collection="-people", id="p1", data={}),
        422,
        "VALIDATION_ERROR",
        "collection",
    ),
    Case(
        "a create with the id of an existing record is a 409",
        Op("create", id="p1", data={}),
        409,
        "ALREADY_EXISTS",
        details={"collection": "people", "id": "p1"},
        setup=(ADA,),
    ),
    Case(
        "a create with the id of a soft-deleted record is a 409 that says it is deleted",
        Op("create", id="p1", data={}),
        409,
        "ALREADY_EXISTS",
        details={"collection": "people", "id": "p1", "deleted": True},
        setup=SOFT_DELETED,
    ),
    # read
    Case(
        "a read answers the record",
        Op("read", id="p1"),
        200,
        body=record("p1", {"name": "Ada", "team": "core"}),
        setup=(ADA,),
    ),
    Case(
        "a read of a missing record is a 404 naming it",
        Op("read", id="nope"),
        404,
        "NOT_FOUND",
        details={"collection": "people", "id": "nope"},
    ),
    Case(
        "a read with a bad record id is a 422 naming the id",
        Op("read", id="bad!id"),
        422,
        "VALIDATION_ERROR",
        "id",
    ),
    Case(
        "a read of a record id of 129 characters is a 422 naming the id",
        Op("read", id="x" * 129),
        422,
        "VALIDATION_ERROR",
        "id",
    ),
    Case(
        "a read in a badly named collection is a 422 naming the collection",
        Op("read", collection="-people", id="p1"),
        422,
        "VALIDATION_ERROR",
        "collection",
    ),
    Case(
        "a read of a soft-deleted record is a 404",
        Op("read", id="p1"),
        404,
        "NOT_FOUND",
        details={"collection": "people", "id": "p1"},
        setup=SOFT_DELETED,
    ),
    Case(
        "a read that includes deleted records answers a soft-deleted one with deleted_at",
        Op("read", id="p1", include_deleted=True),
        200,
        body=record("p1", {"name": "Ada", "team": "core"}, 2, deleted_at=TIME),
        setup=SOFT_DELETED,
    ),
    Case(
        "a read that does not include deleted records answers a soft-deleted one 404",
        Op("read", id="p1", include_deleted=False),
        404,
        "NOT_FOUND",
        details={"collection": "people", "id": "p1"},
        setup=SOFT_DELETED,
    ),
    *(
        Case(
            f"a read whose include_deleted is {what} is a 422 naming include_deleted",
            Op("read", id="p1", include_deleted=flag),
            422,
            "VALIDATION_ERROR",
            "include_deleted",
            setup=SOFT_DELETED,
        )
        for what, flag in BAD_FLAGS
    ),
    # update (merge patch)
    Case(
        "an update merge-patches the data and bumps the version",
        Op("update", id="p1", data={"team": None, "lang": "en"}),
        200,
        body=record("p1", {"name": "Ada", "lang": "en"}, 2),
        setup=(ADA,),
    ),
    Case(
        "an update at the expected version succeeds",
        Op("update", id="p1", data={"team": "web"}, if_match=1),
        200,
        body=record("p1", {"name": "Ada", "team": "web"}, 2),
        setup=(ADA,),
    ),
    Case(
        "an update at another version than expected is a 409 with both versions",
        Op("update", id="p1", data={"team": "web"}, if_match=5),
        409,
        "VERSION_MISMATCH",
        details={"id": "p1", "expected": 5, "actual": 1},
        setup=(ADA,),
    ),
    Case(
        "an update of a missing record is a 404",
        Op("update", id="nope", data={}),
        404,
        "NOT_FOUND",
        details={"collection": "people", "id": "nope"},
    ),
    Case(
        "an update of a soft-deleted record is a 404",
        Op("update", id="p1", data={"team": "web"}),
        404,
        "NOT_FOUND",
        setup=SOFT_DELETED,
    ),
    Case(
        "an update with an integer beyond 64 bits in its patch is a 422 naming it",
        Op("update", id="p1", data={"n": -BIG}),
        422,
        "VALIDATION_ERROR",
        "data.n",
        setup=(ADA,),
    ),
    Case(
        "an update with a bad record id is a 422 naming the id",
        Op("update", id="bad!id", data={}),
        422,
        "VALIDATION_ERROR",
        "id",
    ),
    # replace
    Case(
        "a replace replaces the data whole and bumps the version",
        Op("replace", id="p1", data={"name": "Ada L."}),
        200,
        body=record("p1", {"name": "Ada L."}, 2),
        setup=(ADA,),
    ),
    Case(
        "a replace at another version than expected is a 409",
        Op("replace", id="p1", data={}, if_match=2),
        409,
        "VERSION_MISMATCH",
        details={"id": "p1", "expected": 2, "actual": 1},
        setup=(ADA,),
    ),
    Case(
        "a replace of a missing record is a 404",
        Op("replace", id="nope", data={}),
        404,
        "NOT_FOUND",
    ),
    Case(
        "a replace whose data is not an object is a 422 naming data",
        Op("replace", id="p1", data="Ada"),
        422,
        "VALIDATION_ERROR",
        "data",
        setup=(ADA,),
    ),
    # delete
    Case(
        "a delete is soft by default and bumps the version",
        Op("delete", id="p1"),
        200,
        body={"id": "p1", "collection": "people", "deleted": True, "hard": False, "version": 2},
        setup=(ADA,),
    ),
    Case(
        "a hard delete removes the record",
        Op("delete", id="p1", hard=True),
        200,
        body={"id": "p1", "collection": "people", "deleted": True, "hard": True, "version": 1},
        setup=(ADA,),
    ),
    Case(
        "a delete whose hard flag is false is soft",
        Op("delete", id="p1", hard=False),
        200,
        body={"id": "p1", "collection": "people", "deleted": True, "hard": False, "version": 2},
        setup=(ADA,),
    ),
    *(
        Case(
            f"a delete whose hard flag is {what} is a 422 naming hard",
            Op("delete", id="p1", hard=flag),
            422,
            "VALIDATION_ERROR",
            "hard",
            setup=(ADA,),
        )
        for what, flag in BAD_FLAGS
    ),
    Case(
        "a hard delete removes a soft-deleted record too",
        Op("delete", id="p1", hard=True),
        200,
        body={"id": "p1", "collection": "people", "deleted": True, "hard": True, "version": 2},
        setup=SOFT_DELETED,
    ),
    Case(
        "a delete of a missing record is a 404",
        Op("delete", id="nope"),
        404,
        "NOT_FOUND",
    ),
    Case(
        "a soft delete of a soft-deleted record is a 404",
        Op("delete", id="p1"),
        404,
        "NOT_FOUND",
        setup=SOFT_DELETED,
    ),
    Case(
        "a delete at another version than expected is a 409",
        Op("delete", id="p1", if_match=7),
        409,
        "VERSION_MISMATCH",
        details={"id": "p1", "expected": 7, "actual": 1},
        setup=(ADA,),
    ),
    Case(
        "a delete in a badly named collection is a 422 naming the collection",
        Op("delete", collection="people!", id="p1"),
        422,
        "VALIDATION_ERROR",
        "collection",
    ),
    # restore
    Case(
        "a restore brings a soft-deleted record back with its version bumped",
        Op("restore", id="p1"),
        200,
        body=record("p1", {"name": "Ada", "team": "core"}, 3),
        setup=SOFT_DELETED,
    ),
    Case(
        "a restore of a live record is a 409 NOT_DELETED",
        Op("restore", id="p1"),
        409,
        "NOT_DELETED",
        details={"collection": "people", "id": "p1"},
        setup=(ADA,),
    ),
    Case(
        "a restore of a missing record is a 404",
        Op("restore", id="nope"),
        404,
        "NOT_FOUND",
    ),
    Case(
        "a restore at another version than expected is a 409",
        Op("restore", id="p1", if_match=1),
        409,
        "VERSION_MISMATCH",
        details={"id": "p1", "expected": 1, "actual": 2},
        setup=SOFT_DELETED,
    ),
    # list
    Case(
        "a list answers a page of live records by id with a cursor to the next",
        Op("list", limit=2),
        200,
        body={
            "records": [
                record("p1", {"name": "Ada", "team": "core"}),
                record("p2", {"name": "Grace", "team": "web"}),
            ],
            "next_cursor": CURSOR,
        },
        setup=THREE,
    ),
    Case(
        "a list filters on equality",
        Op("list", filters={"team": "core"}),
        200,
        body={
            "records": [
                record("p1", {"name": "Ada", "team": "core"}),
                record("p3", {"name": "Edsger", "team": "core"}),
            ],
            "next_cursor": None,
        },
        setup=THREE,
    ),
    Case(
        "a list leaves soft-deleted records out",
        Op("list"),
        200,
        body={"records": [], "next_cursor": None},
        setup=SOFT_DELETED,
    ),
    Case(
        "a list without a limit answers a page of 100",
        Op("list"),
        200,
        body={
            "records": [record(f"p{i:03d}", {"i": i}) for i in range(100)],
            "next_cursor": CURSOR,
        },
        setup=MANY,
    ),
    *(
        Case(
            f"a list whose limit is {what} is a 422 naming the limit",
            Op("list", limit=limit),
            422,
            "VALIDATION_ERROR",
            "limit",
        )
        for what, limit in BAD_LIMITS
    ),
    Case(
        "a list filter on an integer beyond 64 bits is a 422 naming it",
        Op("list", filters={"n": BIG}),
        422,
        "VALIDATION_ERROR",
        "filters.n",
    ),
    Case(
        "a list filter on a field that is not a dot path is a 422 naming it",
        Op("list", filters={"a..b": 1}),
        422,
        "VALIDATION_ERROR",
        "filters.a..b",
    ),
    Case(
        "a list with a cursor this API did not hand out is a 400 naming the cursor",
        Op("list", cursor="not a cursor!"),
        400,
        "INVALID_REQUEST",
        "cursor",
    ),
    Case(
        "a list in a badly named collection is a 422 naming the collection",
        Op("list", collection="-people"),
        422,
        "VALIDATION_ERROR",
        "collection",
    ),
    # search
    Case(
        "a search answers the matching records with a score and the total",
        Op("search", query="ada", limit=5),
        200,
        body={
            "results": [{"record": record("p1", {"name": "Ada", "team": "core"}), "score": SCORE}],
            "total": 1,
        },
        setup=THREE,
    ),
    Case(
        "a search filters on equality",
        Op("search", query="ada", filters={"team": "web"}),
        200,
        body={"results": [], "total": 0},
        setup=THREE,
    ),
    Case(
        "a search leaves soft-deleted records out",
        Op("search", query="ada"),
        200,
        body={"results": [], "total": 0},
        setup=SOFT_DELETED,
    ),
    Case(
        "a search without a limit answers the best 20 matches and the total",
        Op("search", query="ada"),
        200,
        setup=ADAS,
        check=_results_of(20, 25),
    ),
    *(
        Case(
            f"a search whose limit is {what} is a 422 naming the limit",
            Op("search", query="ada", limit=limit),
            422,
            "VALIDATION_ERROR",
            "limit",
        )
        for what, limit in BAD_LIMITS
    ),
    Case(
        "a search whose filters are not an object is a 422 naming the filters",
        Op("search", query="ada", filters="team=core"),
        422,
        "VALIDATION_ERROR",
        "filters",
    ),
    Case(
        "a search filter whose value is not a scalar is a 422 naming it",
        Op("search", query="ada", filters={"team": ["core"]}),
        422,
        "VALIDATION_ERROR",
        "filters.team",
    ),
    Case(
        "a search filter on an integer beyond 64 bits is a 422 naming it",
        Op("search", query="ada", filters={"n": -BIG}),
        422,
        "VALIDATION_ERROR",
        "filters.n",
    ),
    Case(
        "a search for blank text is a 422 naming the query",
        Op("search", query="   "),
        422,
        "VALIDATION_ERROR",
        "query",
    ),
    Case(
        "a search in a badly named collection is a 422 naming the collection",
        Op("search", collection="-people", query="ada"),
        422,
        "VALIDATION_ERROR",
        "collection",
    ),
]
