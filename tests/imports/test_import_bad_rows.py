"""Bad rows in an import file, on both backends and along both import paths.

Every file here holds three data rows: row 1 and row 3 are good, row 2 is bad in one way.
``lenient`` imports rows 1 and 3 and lists row 2 as a failure with its code; ``strict``
fails the job (``VALIDATION_FAILED``) before anything is written. Plain creates are prepared
in the worker process (imports/prepare.py); upserts and dry runs are converted in the server's
process (``imports/job.py``, ``_import_rows``): a bad row is handled alike on each path.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from batchops.server.imports import json_rows
from batchops.server.imports.check import check_rows, checked_rows, scan_rows
from batchops.server.imports.options import ImportOptions
from batchops.server.imports.read import read_rows
from batchops.server.imports.rows import FieldSpec, InputError, RowError, SourceRow
from batchops.server.limits import MAX_JSON_DEPTH
from tests.imports.test_prepare import _messages
from tests.jobs.conftest import Service, records, upload, wait_done

CONTENT_TYPES = {"csv": "text/csv", "ndjson": "application/x-ndjson", "json": "application/json"}
GOOD = {
    "csv": (b"1,a", b"3,c"),
    "ndjson": (b'{"n": 1, "s": "a"}', b'{"n": 3, "s": "c"}'),
    "json": (b'{"n": 1, "s": "a"}', b'{"n": 3, "s": "c"}'),
}
TYPED = {"n": {"field": "n", "type": "int"}, "s": {"field": "s", "type": "string"}}
AS_JSON = {"n": {"field": "n", "type": "int"}, "s": {"field": "s", "type": "json"}}
GOOD_AS_JSON = {  # "s" holds JSON text
    "csv": (b"1,[1]", b"3,[3]"),
    "ndjson": (b'{"n": 1, "s": "[1]"}', b'{"n": 3, "s": "[3]"}'),
    "json": (b'{"n": 1, "s": "[1]"}', b'{"n": 3, "s": "[3]"}'),
}
BIG = b"123456789012345678901234567890"  # > 2**64


def _deep(levels: int, *, closed: bool = True) -> bytes:
    """A JSON array nested ``levels`` deep."""
    return b"[" * levels + (b"]" * levels if closed else b"")


def _file(fmt: str, rows: list[bytes]) -> bytes:
    """The rows (CSV lines, NDJSON lines or JSON array items) as one file of ``fmt``."""
    if fmt == "csv":
        return b"n,s\n" + b"".join(row + b"\n" for row in rows)
    if fmt == "ndjson":
        return b"".join(row + b"\n" for row in rows)
    return b"[" + b",\n".join(rows) + b"]"


@dataclass(frozen=True)
class Bad:
    """One kind of bad row: its text per format, the mapping it is imported with, and the
    failure code it must give."""

    name: str
    code: str
    rows: dict[str, bytes]
    mapping: dict[str, Any] | None = None
    good: dict[str, tuple[bytes, bytes]] = field(default_factory=lambda: GOOD)

    @property
    def formats(self) -> tuple[str, ...]:
        return tuple(self.rows)

    def file(self, fmt: str) -> bytes:
        """Row 1 good, row 2 bad, row 3 good."""
        first, third = self.good[fmt]
        return _file(fmt, [first, self.rows[fmt], third])


DEEP_DATA = b'{"n": 2, "s": ' + _deep(MAX_JSON_DEPTH) + b"}"  # data object + 128 = 129 levels
BAD_ROWS = [
    Bad(
        "a broken JSON text",
        "INVALID_JSON",
        {"ndjson": b'{"n": 2, "s": tru}', "json": b'{"n": 2, "s": tru}'},
    ),
    Bad("a scalar where an object belongs", "NOT_AN_OBJECT", {"ndjson": b"7", "json": b"7"}),
    Bad(
        "an array where an object belongs",
        "NOT_AN_OBJECT",
        {"ndjson": b"[1, 2]", "json": b"[1, 2]"},
    ),
    Bad(
        "a scalar where an object belongs, with a mapping",
        "NOT_AN_OBJECT",
        {"ndjson": b'"x"', "json": b'"x"'},
        TYPED,
    ),
    Bad("data nested too deep", "JSON_TOO_DEEP", {"ndjson": DEEP_DATA, "json": DEEP_DATA}),
    Bad(
        "data nested too deep in a json column",
        "JSON_TOO_DEEP",
        {
            "csv": b'2,"' + _deep(MAX_JSON_DEPTH) + b'"',
            "ndjson": DEEP_DATA,
            "json": DEEP_DATA,
        },
        AS_JSON,
        GOOD_AS_JSON,
    ),
    Bad(
        "a row nested deeper than the JSON parser goes",
        "JSON_TOO_DEEP",
        {
            "ndjson": b'{"n": 2, "s": ' + _deep(100_000, closed=False),
            "json": b'{"n": 2, "s": ' + _deep(100_000) + b"}",
        },
    ),
    Bad(
        "an integer beyond 64 bits in plain data",
        "VALIDATION_ERROR",
        {"ndjson": b'{"n": 2, "s": ' + BIG + b"}", "json": b'{"n": 2, "s": ' + BIG + b"}"},
    ),
    Bad(
        "an integer beyond 64 bits in an int column",
        "BAD_VALUE",
        {
            "csv": BIG + b",b",
            "ndjson": b'{"n": ' + BIG + b', "s": "b"}',
            "json": b'{"n": ' + BIG + b', "s": "b"}',
        },
        TYPED,
    ),
    Bad(
        "an integer beyond 64 bits in a json column",
        "VALIDATION_ERROR",
        {"csv": b'2,"{""k"": ' + BIG + b'}"'},
        AS_JSON,
        GOOD_AS_JSON,
    ),
    Bad("an int cell of 5000 digits", "BAD_VALUE", {"csv": b"1" * 5000 + b",b"}, TYPED),
    Bad(
        "a NUL in a string value",
        "VALIDATION_ERROR",
        {
            "csv": b"2,b\x00c",
            "ndjson": b'{"n": 2, "s": "b\\u0000c"}',
            "json": b'{"n": 2, "s": "b\\u0000c"}',
        },
    ),
    Bad(
        "a NUL in a string value, with a mapping",
        "VALIDATION_ERROR",
        {
            "csv": b"2,b\x00c",
            "ndjson": b'{"n": 2, "s": "b\\u0000c"}',
            "json": b'{"n": 2, "s": "b\\u0000c"}',
        },
        TYPED,
    ),
    Bad(
        "a NUL in a key",
        "VALIDATION_ERROR",
        {"ndjson": b'{"n": 2, "s\\u0000": "b"}', "json": b'{"n": 2, "s\\u0000": "b"}'},
    ),
    Bad(
        "a lone surrogate",
        "INVALID_JSON",
        {"ndjson": b'{"n": 2, "s": "\\ud800"}', "json": b'{"n": 2, "s": "\\ud800"}'},
    ),
]
CASES = [
    pytest.param(bad, fmt, id=f"{bad.name.replace(' ', '-')}-{fmt}")
    for bad in BAD_ROWS
    for fmt in bad.formats
]


async def _failures(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/jobs/{job_id}/failures")
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


async def _import(service: Service, fmt: str, body: bytes, **params: Any) -> dict[str, Any]:
    response = await upload(
        service.client, body, content_type=CONTENT_TYPES[fmt], collection="people", **params
    )
    assert response.status_code == 202, response.text
    return await wait_done(service.client, response.json()["id"])


def _mapping(bad: Bad) -> dict[str, str]:
    return {"mapping": json.dumps(bad.mapping)} if bad.mapping is not None else {}


async def _ns(service: Service) -> list[str]:
    return sorted(str(r["data"]["n"]) for r in await records(service.client, "people"))


# -- each kind of bad row ------------------------------------------------------------------


@pytest.mark.parametrize(("bad", "fmt"), CASES)
async def test_strict_validation_fails_the_job_on_the_bad_row_before_writing_anything(
    service: Service, bad: Bad, fmt: str
) -> None:
    body = bad.file(fmt)
    job = await _import(service, fmt, body, **_mapping(bad))
    assert (job["state"], job["error"]["code"]) == ("failed", "VALIDATION_FAILED"), job
    assert (job["total"], job["processed"], job["failed"]) == (3, 0, 1)
    assert [(f["row"], f["code"]) for f in await _failures(service.client, job["id"])] == [
        (2, bad.code)
    ]
    assert await records(service.client, "people") == []


@pytest.mark.parametrize("path", ["create", "upsert"])
@pytest.mark.parametrize(("bad", "fmt"), CASES)
async def test_lenient_validation_lists_the_bad_row_and_imports_the_others(
    service: Service, bad: Bad, fmt: str, path: str
) -> None:
    body = bad.file(fmt)
    extra = {"upsert_key": "n"} if path == "upsert" else {}
    job = await _import(service, fmt, body, validation="lenient", **_mapping(bad), **extra)
    assert job["state"] == "succeeded", job
    assert (job["total"], job["processed"], job["succeeded"], job["failed"]) == (3, 3, 2, 1)
    failures = await _failures(service.client, job["id"])
    assert [(f["row"], f["code"]) for f in failures] == [(2, bad.code)]
    assert "\x00" not in failures[0]["input"] + failures[0]["message"]
    assert await _ns(service) == ["1", "3"]


@pytest.mark.parametrize(("bad", "fmt"), CASES)
async def test_a_lenient_dry_run_counts_the_bad_row_as_a_failure_and_writes_nothing(
    service: Service, bad: Bad, fmt: str
) -> None:
    body = bad.file(fmt)
    job = await _import(service, fmt, body, validation="lenient", dry_run=True, **_mapping(bad))
    assert (job["state"], job["succeeded"], job["failed"]) == ("succeeded", 2, 1), job
    failures = await _failures(service.client, job["id"])
    assert [(f["row"], f["code"]) for f in failures] == [(2, bad.code)]
    assert await records(service.client, "people") == []


# -- what stays good -----------------------------------------------------------------------


@pytest.mark.parametrize("validation", ["strict", "lenient"])
@pytest.mark.parametrize("fmt", ["ndjson", "json"])
async def test_a_clean_json_file_imports_every_row_in_either_validation_mode(
    service: Service, fmt: str, validation: str
) -> None:
    job = await _import(service, fmt, _file(fmt, list(GOOD[fmt])), validation=validation)
    assert (job["state"], job["succeeded"], job["failed"]) == ("succeeded", 2, 0), job
    assert await _ns(service) == ["1", "3"]


@pytest.mark.parametrize("path", ["create", "upsert"])
@pytest.mark.parametrize("fmt", ["ndjson", "json"])
async def test_data_at_the_limits_is_imported_exactly(
    service: Service, fmt: str, path: str
) -> None:
    """128 levels of nesting, the 64-bit integer bounds and an escaped emoji are allowed."""
    rows = [
        b'{"n": 1, "s": ' + _deep(MAX_JSON_DEPTH - 1) + b"}",
        b'{"n": 2, "s": 18446744073709551615, "t": -9223372036854775808}',
        b'{"n": 3, "s": "\\ud83d\\ude00"}',
    ]
    extra = {"upsert_key": "n"} if path == "upsert" else {}
    job = await _import(service, fmt, _file(fmt, rows), **extra)
    assert (job["state"], job["succeeded"], job["failed"]) == ("succeeded", 3, 0), job
    data = {r["data"]["n"]: r["data"] for r in await records(service.client, "people")}
    assert data[2] == {"n": 2, "s": 2**64 - 1, "t": -(2**63)}
    assert data[3] == {"n": 3, "s": "\U0001f600"}
    levels, value = 1, data[1]["s"]  # the data object is level 1
    while isinstance(value, list):
        levels, value = levels + 1, value[0] if value else None
    assert levels == MAX_JSON_DEPTH


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
async def test_int_columns_take_every_64_bit_integer(service: Service, fmt: str) -> None:
    rows = {
        "csv": [b"18446744073709551615,a", b"-9223372036854775808,b"],
        "ndjson": [b'{"n": 18446744073709551615}', b'{"n": -9223372036854775808}'],
        "json": [b'{"n": 18446744073709551615}', b'{"n": -9223372036854775808}'],
    }[fmt]
    job = await _import(service, fmt, _file(fmt, rows), mapping=json.dumps(TYPED))
    assert (job["state"], job["succeeded"]) == ("succeeded", 2), job
    assert await _ns(service) == ["-9223372036854775808", "18446744073709551615"]


# -- the upsert key ------------------------------------------------------------------------

NO_KEY = {
    "csv": b",b",  # an empty int cell is null
    "ndjson": b'{"s": "b"}',
    "json": b'{"n": {"nested": 1}, "s": "b"}',  # not a scalar
}
KEY_AS_JSON = {"n": {"field": "n", "type": "json"}, "s": {"field": "s", "type": "string"}}
KEY_MAPPING = {"csv": TYPED, "ndjson": TYPED, "json": KEY_AS_JSON}


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
async def test_strict_upsert_fails_before_writing_when_a_row_lacks_the_key(
    service: Service, fmt: str
) -> None:
    body = _file(fmt, [GOOD[fmt][0], NO_KEY[fmt], GOOD[fmt][1]])
    job = await _import(service, fmt, body, upsert_key="n", mapping=json.dumps(KEY_MAPPING[fmt]))
    assert (job["state"], job["error"]["code"]) == ("failed", "VALIDATION_FAILED"), job
    assert (job["total"], job["processed"], job["failed"]) == (3, 0, 1)
    assert [(f["row"], f["code"]) for f in await _failures(service.client, job["id"])] == [
        (2, "MISSING_UPSERT_KEY")
    ]
    assert await records(service.client, "people") == []


@pytest.mark.parametrize("dry_run", [False, True])
@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
async def test_lenient_upsert_lists_a_row_without_the_key_and_imports_the_others(
    service: Service, fmt: str, dry_run: bool
) -> None:
    body = _file(fmt, [GOOD[fmt][0], NO_KEY[fmt], GOOD[fmt][1]])
    job = await _import(
        service,
        fmt,
        body,
        upsert_key="n",
        validation="lenient",
        dry_run=dry_run,
        mapping=json.dumps(KEY_MAPPING[fmt]),
    )
    assert (job["state"], job["succeeded"], job["failed"]) == ("succeeded", 2, 1), job
    assert [(f["row"], f["code"]) for f in await _failures(service.client, job["id"])] == [
        (2, "MISSING_UPSERT_KEY")
    ]
    assert await _ns(service) == ([] if dry_run else ["1", "3"])


# -- CSV: an unterminated quote ------------------------------------------------------------

UNTERMINATED = b'n,s\n1,a\n2,"b\n3,c\n4,d\n'  # row 2's quoted field runs to the end of the file


async def test_strict_validation_fails_on_an_unterminated_quote_before_writing(
    service: Service,
) -> None:
    job = await _import(service, "csv", UNTERMINATED)
    assert (job["state"], job["error"]["code"]) == ("failed", "VALIDATION_FAILED"), job
    assert (job["total"], job["processed"], job["failed"]) == (2, 0, 1)
    failures = await _failures(service.client, job["id"])
    assert [(f["row"], f["code"]) for f in failures] == [(2, "UNTERMINATED_QUOTE")]
    assert await records(service.client, "people") == []


@pytest.mark.parametrize("path", ["create", "upsert", "dry_run"])
async def test_lenient_validation_imports_the_rows_before_an_unterminated_quote(
    service: Service, path: str
) -> None:
    extra: dict[str, Any] = {"create": {}, "upsert": {"upsert_key": "n"}, "dry_run": {}}[path]
    job = await _import(
        service, "csv", UNTERMINATED, validation="lenient", dry_run=path == "dry_run", **extra
    )
    assert job["state"] == "succeeded", job
    assert (job["total"], job["processed"], job["succeeded"], job["failed"]) == (2, 2, 1, 1)
    (failure,) = await _failures(service.client, job["id"])
    assert (failure["row"], failure["code"]) == (2, "UNTERMINATED_QUOTE")
    assert "line 3" in failure["message"]
    assert await _ns(service) == ([] if path == "dry_run" else ["1"])


async def test_a_csv_whose_header_never_closes_its_quote_is_refused_at_upload(
    service: Service,
) -> None:
    response = await upload(service.client, b'n,"s\n1,a\n', collection="people")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "INVALID_CSV"


# -- the failures report -------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
async def test_a_failure_shows_the_row_with_its_nul_escaped(service: Service, fmt: str) -> None:
    bad = {"csv": b"2,b\x00c,extra", "ndjson": b'{"n": 2, "s": "b\x00c"}'}[fmt]
    body = _file(fmt, [GOOD[fmt][0], bad, GOOD[fmt][1]])
    job = await _import(service, fmt, body, validation="lenient")
    assert (job["state"], job["failed"]) == ("succeeded", 1), job
    (failure,) = await _failures(service.client, job["id"])
    assert failure["code"] == ("COLUMN_COUNT" if fmt == "csv" else "INVALID_JSON")
    assert failure["input"] == bad.decode().replace("\x00", "\\u0000")


async def test_a_truncated_json_array_still_fails_the_job_at_its_row(service: Service) -> None:
    body = b'[{"n": 1}, {"n": 2}, {"n": '
    job = await _import(service, "json", body, validation="lenient")
    assert job["state"] == "failed", job
    assert (job["error"]["code"], job["error"]["row"]) == ("INVALID_JSON", 3)
    assert await records(service.client, "people") == []


def test_the_cases_cover_each_format() -> None:
    covered = {fmt for bad in BAD_ROWS for fmt in bad.formats}
    assert covered == {"csv", "ndjson", "json"}


# -- the parsers and checks underneath ------------------------------------------------------

ROWS_FILE = [
    b'{"n": 1}',
    b'{"n": ' + BIG + b"}",  # plain data: refused by the record rule
    b'{"n": 3, "s": "b\\u0000c"}',
    b'{"n": 4, "s": ' + _deep(MAX_JSON_DEPTH) + b"}",  # found by check_encoded
    b'{"n": 5, "s": ' + _deep(300) + b"}",  # past orjson's 254 levels: a TypeError
    b'{"n": 6, "s": "\\ud800"}',
    b"[6]",
    b'{"n": 8}',
]


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_json_rows_keep_integers_beyond_64_bits_exact(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"rows.{fmt}"
    path.write_bytes(_file(fmt, [b'{"n": ' + BIG + b', "f": 1.5}']))
    (row,) = read_rows(path, fmt)  # type: ignore[arg-type]
    assert row.value == {"n": int(BIG), "f": 1.5}


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_scan_rows_counts_json_rows_without_checking_them(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"rows.{fmt}"
    path.write_bytes(_file(fmt, ROWS_FILE))
    chunks = list(scan_rows(path, fmt, [], None, size=3, check=False))  # type: ignore[arg-type]
    assert chunks == [(3, []), (3, []), (2, [])]


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_the_worker_and_the_server_fail_the_same_rows_with_the_same_messages(
    tmp_path: Path, fmt: str
) -> None:
    path = tmp_path / f"rows.{fmt}"
    path.write_bytes(_file(fmt, ROWS_FILE))
    options = ImportOptions(format=fmt, chunk_size=100)  # type: ignore[arg-type]
    chunk, end = _messages(path, options, [], search=True)
    assert end is None
    in_process = checked_rows(list(read_rows(path, fmt)), fmt, [], None)  # type: ignore[arg-type]
    expected = [
        (number, error.code, error.message)
        for number, error in enumerate(in_process, 1)
        if isinstance(error, RowError)
    ]
    assert [(n, code, message) for n, _, code, message in chunk.failures] == expected
    assert [code for _, code, _ in expected] == [
        "VALIDATION_ERROR",
        "VALIDATION_ERROR",
        "JSON_TOO_DEEP",
        "JSON_TOO_DEEP",
        "INVALID_JSON",
        "NOT_AN_OBJECT",
    ]
    assert (chunk.count, [orjson.loads(t)["n"] for t in chunk.records().json]) == (8, [1, 8])


CSV_CELLS = [
    ["1", "plain", "[1]"],
    ["2", "b\x00c", "[2]"],  # NUL in a mapped text cell
    ["3", "x", '{"k": ' + BIG.decode() + "}"],  # big integer in a json cell
    ["4", "x", "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH],  # too deep in a json cell
    ["", "x", "[5]"],  # no upsert key
    ["1" * 5000, "x", "[6]"],  # an int cell of 5000 digits
    ["18446744073709551616", "x", "[7]"],  # 2**64
]
CSV_MAPPINGS: dict[str, dict[str, FieldSpec] | None] = {
    "none": None,
    "typed": {"n": FieldSpec("n", "int"), "s": FieldSpec("s", "string")},
    "json": {"n": FieldSpec("n", "int"), "j": FieldSpec("deep.j", "json")},
}


@pytest.mark.parametrize("upsert_key", [None, "n"])
@pytest.mark.parametrize("name", list(CSV_MAPPINGS))
def test_the_csv_first_pass_finds_what_building_each_row_finds(
    name: str, upsert_key: str | None
) -> None:
    header = ["n", "s", "j"]
    rows = [SourceRow(i, cells) for i, cells in enumerate(CSV_CELLS, 1)]
    mapping = CSV_MAPPINGS[name]
    quick = check_rows(rows, "csv", header, mapping, upsert_key)
    built = checked_rows(rows, "csv", header, mapping, upsert_key)
    assert [(e.code, e.message) if e else None for e in quick] == [
        (o.code, o.message) if isinstance(o, RowError) else None for o in built
    ]
    assert any(e is not None for e in quick)


def test_a_header_with_a_nul_makes_every_row_fail_the_record_rule(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_bytes(b"n,s\x00\n1,a\n2,b\n")
    (chunk,) = scan_rows(path, "csv", ["n", "s\x00"], None, size=10, check=True)
    assert [(row.number, error.code) for row, error in chunk[1]] == [
        (1, "VALIDATION_ERROR"),
        (2, "VALIDATION_ERROR"),
    ]


def _random_value(rnd: random.Random, depth: int = 0) -> Any:
    roll = rnd.random()
    if depth > 4 or roll < 0.3:
        return rnd.choice([1, -2.5, "s}, {x", 'q"', None, True, "\\", 10**25, "]}"])
    if roll < 0.65:
        return {f"k{i}": _random_value(rnd, depth + 1) for i in range(rnd.randint(0, 4))}
    return [_random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]


@pytest.mark.parametrize(("block", "tries"), [(1, 3), (7, 3), (100, 1), (4096, 3), (1 << 16, 0)])
def test_a_json_array_reads_the_same_rows_whatever_its_blocks_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int, tries: int
) -> None:
    """The fast path (many rows decoded at once) and the slow one (row by row) agree, and
    so do all buffer sizes, on random rows with brackets and '}, {' inside strings, nested
    rows, bad rows and rows that are not objects, compact or indented."""
    rnd = random.Random(block)
    items = [
        json.dumps({"x": _random_value(rnd)}, indent=rnd.choice([None, 2])) for _ in range(300)
    ]
    items[50] = '{"bad": tru}'
    items[170] = '{"s": "\\udc00"}'
    items[220] = "[" * 2000 + "]" * 2000
    items[250] = json.dumps(_random_value(rnd))
    path = tmp_path / "rows.json"
    path.write_text("[" + ",".join(items) + "]")

    def rows() -> list[tuple[int, Any, str | None, str | None]]:
        return [
            (r.number, r.value, r.raw, r.error.code if r.error else None)
            for r in read_rows(path, "json")
        ]

    expected = rows()
    assert len(expected) == 300
    assert [(n, code) for n, _, _, code in expected if code] == [
        (51, "INVALID_JSON"),
        (171, "INVALID_JSON"),
        (221, "JSON_TOO_DEEP"),
    ]
    monkeypatch.setattr(json_rows, "_BLOCK", block)
    monkeypatch.setattr(json_rows, "_CUT_TRIES", tries)
    assert rows() == expected


@pytest.mark.parametrize(
    ("body", "row", "why"),
    [
        (b'[{"n": 1}, {"n": 2}, {"n": ', 3, "the file ends inside row 3"),
        (b'[{"n": 1}, {"n": 2}', 3, "closing ']'"),
        (b'[{"n": 1} {"n": 2}]', 2, "',' or ']' expected"),
        (b'[{"n": 1},]', 2, "a row is missing"),
        (b'[{"n": 1}] {"n": 2}', 2, "data after the array"),
    ],
)
def test_a_json_array_that_is_itself_broken_is_an_input_error_at_its_row(
    tmp_path: Path, body: bytes, row: int, why: str
) -> None:
    path = tmp_path / "rows.json"
    path.write_bytes(body)
    with pytest.raises(InputError) as caught:
        list(read_rows(path, "json"))
    assert (caught.value.code, caught.value.row_number) == ("INVALID_JSON", row)
    assert why in caught.value.message
