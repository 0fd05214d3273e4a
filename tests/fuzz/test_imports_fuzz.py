"""Fuzzing the import parsers: hostile CSV, NDJSON and JSON-array files, and hostile
option values, in strict and lenient mode.

An upload is refused with a 4xx envelope, or its job ends ``succeeded`` or ``failed`` with
a specific code — never ``INTERNAL_ERROR`` — and its failures are readable as NDJSON and
CSV. The server keeps answering ``/healthz`` within 1 s (the imports run in the same
process, the plain ones in a worker process beside it).
"""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import quote

import orjson
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import examples
from tests.fuzz.harness import Answer, Fuzzer
from tests.fuzz.strategies import (
    RAW_NUMBERS,
    RAW_STRINGS,
    Raw,
    deep_text,
    dumps,
    hostile_body,
    hostile_query_values,
    hostile_values,
    mutated,
)

COLUMNS = ("name", "age", "email", "tags", "active", "score")
MAPPING = {
    "name": {"field": "name", "type": "string"},
    "age": {"field": "age", "type": "int"},
    "email": "contact.email",
    "tags": {"field": "meta.tags", "type": "json"},
    "active": {"field": "active", "type": "bool"},
    "score": {"field": "score", "type": "float"},
}
CSV_TYPES = ("text/csv", "application/csv", "text/csv; charset=utf-8")


def check_import(fuzzer: Fuzzer, answer: Answer) -> None:
    """A refusal is the envelope; a job ends ``succeeded`` or ``failed`` with a specific
    code, and its failures stream as NDJSON and CSV."""
    body = fuzzer.check(answer)
    if answer.status != 202:
        return
    assert isinstance(body, dict), str(answer)
    job = fuzzer.wait_job(body["id"])
    fuzzer.check_job_end(job)
    failures = fuzzer.send("GET", f"/v1/jobs/{job['id']}/failures")
    assert failures.status == 200, str(failures)
    for line in failures.content.splitlines():
        failure = orjson.loads(line)
        assert failure["code"], f"{failure} {job}"
        assert failure["code"] != "INTERNAL_ERROR", f"{failure} {job}"
    as_csv = fuzzer.send("GET", f"/v1/jobs/{job['id']}/failures?format=csv")
    assert as_csv.status == 200, str(as_csv)
    # Not parsed with the csv module: an ``input`` may pass its 128 KiB field limit, and
    # raising that limit would change the limit of the server's own CSV parser (the same
    # process, the same module-wide setting).
    text = as_csv.content.decode("utf-8")
    assert text.startswith("row,code,message,input\r\n"), text[:100]
    assert text.count("\n") >= len(failures.content.splitlines()), str(as_csv)


def upload(fuzzer: Fuzzer, body: bytes, content_type: str, query: dict[str, str] | str) -> Answer:
    if isinstance(query, dict):
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    return fuzzer.send(
        "POST", f"/v1/imports?{query}", content=body, headers={"Content-Type": content_type}
    )


def modes() -> st.SearchStrategy[dict[str, str]]:
    """Strict or lenient, sometimes a dry run or an upsert on ``email``, a small chunk
    size so that files span chunks."""
    return st.fixed_dictionaries(
        {
            "collection": st.just("people"),
            "validation": st.sampled_from(("strict", "lenient")),
            "chunk_size": st.sampled_from(("1", "2", "7", "2500")),
        },
        optional={
            "dry_run": st.just("true"),
            "upsert_key": st.sampled_from(("email", "contact.email", "name")),
        },
    )


# -- CSV ---------------------------------------------------------------------------------------

CELLS = (
    "",
    "1",
    "-0",
    "1e400",
    "9" * 5000,
    "18446744073709551616",
    "-9223372036854775809",
    "NaN",
    "true",
    "yes",
    "[1, 2]",
    '{"a": 1}',
    "[" * 3000,
    "\x00",
    "a\x00b",
    '"',
    'a"b',
    "a,b",
    "line\nbreak",
    "\r",
    "\ufeff",
    "é",
    "\u202e",
    "😀",
    "x" * 70_000,
    "=cmd|' /C calc'!A0",
)


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """A CSV file from a real header and rows of hostile cells, written by the csv module,
    then damaged: an unterminated quote, ragged rows, a BOM, NUL or non-UTF-8 bytes, a
    line of 200 KB, other line endings, blank lines, trailing garbage."""
    header = list(draw(st.permutations(COLUMNS)))
    if draw(st.integers(0, 4)) == 0:
        header.append(draw(st.sampled_from(("", "name", "a,b", "\ufeffx", "k" * 300, "\x00"))))
    cell = st.sampled_from(CELLS) | st.text(max_size=8)
    rows = draw(st.lists(st.lists(cell, min_size=len(header), max_size=len(header)), max_size=8))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(("\r\n", "\n"))))
    writer.writerow(header)
    writer.writerows(rows)
    text = out.getvalue().encode("utf-8")
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(0, 2))):
        damage = draw(
            st.sampled_from(
                (
                    "unterminated",
                    "ragged",
                    "bom",
                    "nul",
                    "bad_utf8",
                    "long_line",
                    "cr_only",
                    "blank",
                    "trailing",
                    "empty",
                )
            )
        )
        at = draw(st.integers(0, max(len(lines) - 1, 0)))
        if damage == "unterminated":
            lines.insert(at + 1, b'"never closed,' + b"x\n" * draw(st.integers(1, 3)))
        elif damage == "ragged":
            lines.insert(at + 1, draw(st.sampled_from((b"1\n", b"1,2,3,4,5,6,7,8,9\n", b",\n"))))
        elif damage == "bom":
            lines.insert(0, b"\xef\xbb\xbf")
        elif damage == "nul":
            lines.insert(at, b"\x00,\x00\n")
        elif damage == "bad_utf8":
            lines.insert(at + 1, b"\xff\xfe,\xc3(\n")
        elif damage == "long_line":
            size = draw(st.sampled_from((131_073, 200_000)))
            quoted = draw(st.booleans())
            lines.insert(at + 1, (b'"' + b"y" * size + b'"\n') if quoted else b"y" * size + b"\n")
        elif damage == "cr_only":
            lines = [line.replace(b"\r\n", b"\r").replace(b"\n", b"\r") for line in lines]
        elif damage == "blank":
            lines.insert(at + 1, b"\n\n")
        elif damage == "trailing":
            lines.append(b'\x1a"')
        else:
            lines = []
    return b"".join(lines)


async def test_hostile_csv_files_end_succeeded_or_failed_with_a_specific_code(
    fuzzer: Fuzzer,
) -> None:
    @examples(60)
    @given(
        body=csv_files(),
        query=modes(),
        mapped=st.booleans(),
        content_type=st.sampled_from(CSV_TYPES),
    )
    def example(body: bytes, query: dict[str, str], mapped: bool, content_type: str) -> None:
        if mapped:
            query = {**query, "mapping": dumps(MAPPING).decode()}
        check_import(fuzzer, upload(fuzzer, body, content_type, query))

    await fuzzer.run(example)


# -- NDJSON and JSON arrays --------------------------------------------------------------------

ROW = {
    "name": "Ada",
    "age": 36,
    "email": "ada@example.com",
    "contact": {"email": "ada@example.com"},
    "tags": ["math"],
    "active": True,
}


def json_rows() -> st.SearchStrategy[Any]:
    """A valid row mutated, or any hostile value (not an object, deep, raw numbers and
    strings no decoder holds)."""
    return st.one_of(
        mutated(ROW),
        mutated(ROW),
        st.just(ROW),
        hostile_values(),
        deep_text(),
        st.sampled_from(RAW_NUMBERS + RAW_STRINGS).map(Raw),
    )


@st.composite
def ndjson_files(draw: st.DrawFn) -> bytes:
    """Rows of hostile JSON, one per line, some lines damaged (not JSON, not UTF-8, a
    BOM, blank, very long), other line endings."""
    lines = [dumps(row) for row in draw(st.lists(json_rows(), max_size=8))]
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(lines)))
        lines.insert(
            at,
            draw(
                st.sampled_from(
                    (
                        b"",
                        b"   ",
                        b"\xef\xbb\xbf" + dumps(ROW),
                        b"{",
                        b'{"a": 1} {"b": 2}',
                        b"\xff\xfe",
                        b'{"a": "\xc3("}',
                        b'{"a": "' + b"z" * 200_000 + b'"}',
                        b"\x00",
                        b"[1, 2]",
                        b'{"a": 1, "a": 2}',
                    )
                )
            ),
        )
    ending = draw(st.sampled_from((b"\n", b"\r\n", b"\r")))
    return ending.join(lines) + draw(st.sampled_from((b"", ending)))


@st.composite
def json_array_files(draw: st.DrawFn) -> bytes:
    """A top-level array of hostile rows, sometimes broken: cut short, a missing or
    extra comma, data after the ``]``, not an array at all."""
    items = [dumps(row) for row in draw(st.lists(json_rows(), max_size=8))]
    text = b"[" + b",".join(items) + b"]"
    damage = draw(st.sampled_from(("none", "none", "cut", "comma", "extra", "after", "whole")))
    if damage == "cut":
        return text[: draw(st.integers(1, len(text) - 1))]
    if damage == "comma" and len(items) > 1:
        return b"[" + b" ".join(items) + b"]"
    if damage == "extra":
        return b"[" + b",,".join(items) + b",]"
    if damage == "after":
        return text + draw(st.sampled_from((b"[]", b"x", b"\x00", b"\n\n", b"]")))
    if damage == "whole":
        return draw(st.sampled_from((b"{}", b"  [", b"\xef\xbb\xbf[]", b"[" * 5000, b"]")))
    return text


async def test_hostile_ndjson_files_end_succeeded_or_failed_with_a_specific_code(
    fuzzer: Fuzzer,
) -> None:
    @examples(60)
    @given(
        body=ndjson_files(),
        query=modes(),
        content_type=st.sampled_from(("application/x-ndjson", "application/jsonl")),
    )
    def example(body: bytes, query: dict[str, str], content_type: str) -> None:
        check_import(fuzzer, upload(fuzzer, body, content_type, query))

    await fuzzer.run(example)


async def test_hostile_json_array_files_end_succeeded_or_failed_with_a_specific_code(
    fuzzer: Fuzzer,
) -> None:
    @examples(60)
    @given(body=json_array_files(), query=modes())
    def example(body: bytes, query: dict[str, str]) -> None:
        check_import(fuzzer, upload(fuzzer, body, "application/json", query))

    await fuzzer.run(example)


# -- options -----------------------------------------------------------------------------------

MAX_QUERY_VALUE = 16 * 1024
GOOD_CSV = b"name,age,email,tags,active,score\nAda,36,ada@example.com,[],true,1.5\n"


@st.composite
def option_queries(draw: st.DrawFn) -> str:
    """The query string of an import with hostile values: ``mapping`` (a valid mapping
    mutated, or not JSON), ``chunk_size``, ``upsert_key``, ``validation``, ``dry_run``,
    ``format``, ``collection``, ``notification_webhook``; parameters repeated or
    unknown."""
    values: dict[str, str] = {"collection": "people"}
    hostile = st.sampled_from(
        (
            "mapping",
            "mapping",
            "chunk_size",
            "upsert_key",
            "validation",
            "dry_run",
            "format",
            "collection",
            "notification_webhook",
        )
    )
    for name in draw(st.lists(hostile, min_size=1, max_size=3, unique=True)):
        if name == "mapping":
            values[name] = quote(draw(hostile_body(MAPPING)), safe="")
        elif name == "notification_webhook":
            hook = {"url": "https://hooks.example.com/x", "secret": "0123456789abcdef"}
            values[name] = quote(draw(hostile_body(hook)), safe="")
        else:
            values[name] = draw(hostile_query_values())
    # A real server's HTTP parser refuses a request line past a few tens of KiB before
    # the app sees it (and httpx refuses to build one past 64 KiB): longer values are cut.
    parts = [f"{k}={v[:MAX_QUERY_VALUE]}" for k, v in values.items()]
    extra = draw(st.sampled_from(("", "&chunk_size=1&chunk_size=2", "&unknown=1", "&mapping")))
    return "&".join(parts) + extra


async def test_hostile_import_options_are_refused_or_make_a_sound_job(fuzzer: Fuzzer) -> None:
    @examples(120)
    @given(query=option_queries(), content_type=st.sampled_from(CSV_TYPES))
    def example(query: str, content_type: str) -> None:
        check_import(fuzzer, upload(fuzzer, GOOD_CSV, content_type, query))

    await fuzzer.run(example)


async def test_a_hostile_content_type_or_encoding_on_an_upload_is_never_a_5xx(
    fuzzer: Fuzzer,
) -> None:
    headers = st.fixed_dictionaries(
        {
            "Content-Type": st.sampled_from(
                (
                    "text/csv",
                    "",
                    "text/plain",
                    "multipart/form-data",
                    "multipart/form-data; boundary=",
                    "multipart/form-data; boundary=x",
                    "application/json; charset=utf-16",
                    "text/csv; charset=latin-1",
                    "*/*",
                )
            )
        },
        optional={"Content-Encoding": st.sampled_from(("gzip", "br", "identity", "x"))},
    )
    bodies = st.sampled_from(
        (
            GOOD_CSV,
            b"",
            b'--x\r\nContent-Disposition: form-data; name="file"\r\n\r\na\n1\n--x--\r\n',
            b"--x\r\n\r\n",
            b"\x1f\x8b\x08\x00\x00\x00",
        )
    )

    @examples(60)
    @given(headers=headers, body=bodies, fmt=st.sampled_from(("", "&format=csv", "&format=x")))
    def example(headers: dict[str, str], body: bytes, fmt: str) -> None:
        answer = fuzzer.send(
            "POST", f"/v1/imports?collection=people{fmt}", content=body, headers=headers
        )
        check_import(fuzzer, answer)

    await fuzzer.run(example)


# -- multipart ---------------------------------------------------------------------------------

PART_NAMES = (
    "file",
    "file",
    "collection",
    "format",
    "mapping",
    "validation",
    "chunk_size",
    "upsert_key",
    "",
    "x",
    "fi\x00le",
    "é",
)


@st.composite
def multipart_uploads(draw: st.DrawFn) -> tuple[str, bytes]:
    """``(Content-Type, body)`` of a multipart upload. Three in four are well formed, with
    hostile content: file names with paths and odd bytes, odd part types, unknown or
    repeated fields, field values past 64 KiB or not UTF-8. The rest carry one structural
    fault: no or another boundary, a part without a usable ``Content-Disposition``, no
    ``file`` part, the body cut short, closed with the wrong boundary, or in bare LFs."""
    fault = draw(
        st.sampled_from(
            (None,) * 9 + ("declared", "head", "no_file", "cut", "no_close", "wrong_close", "lf")
        )
    )
    boundary = draw(st.sampled_from(("b0undary", "x", "a" * 70, "with space", "é")))
    extra = draw(st.lists(st.sampled_from(PART_NAMES), max_size=2, unique=True))
    names = ["collection", *[n for n in extra if n not in ("collection", "file")]]
    if fault != "no_file":
        names.append("file")
    parts: list[bytes] = []
    for name in names:
        if name == "file":
            filename = draw(
                st.sampled_from(
                    ("people.csv", "../../etc/passwd", "a.ndjson", "noext", "", '"q".csv', "é.json")
                )
            )
            part_type = draw(
                st.sampled_from(("text/csv", "", "application/octet-stream", "application/json"))
            )
            content = draw(st.sampled_from((GOOD_CSV, b"", b"\xff\xfe", b"[1,", b'{"a": 1}\n')))
            head = f'Content-Disposition: form-data; name="file"; filename="{filename}"'
            if part_type:
                head += f"\r\nContent-Type: {part_type}"
        else:
            values = {"collection": b"people", "format": b"csv", "validation": b"lenient"}
            content = draw(
                st.sampled_from(
                    (values.get(name, b"2"),) * 3
                    + (b"people", b"", b"\xff", b"x" * 70_000, b"{", b"csv")
                )
            )
            head = f'Content-Disposition: form-data; name="{name}"'
            if fault == "head":
                head = draw(
                    st.sampled_from(
                        (
                            f"Content-Disposition: form-data; name={name}",
                            "Content-Disposition: form-data",
                            "Content-Disposition: attachment",
                            "X-Other: 1",
                            f"{head}\r\nContent-Type: x/y",
                        )
                    )
                )
        parts.append(b"--" + boundary.encode() + b"\r\n" + head.encode() + b"\r\n\r\n" + content)
    body = b"\r\n".join(parts) + b"\r\n--" + boundary.encode() + b"--\r\n"
    if fault == "cut":
        body = body[: draw(st.integers(1, len(body) - 1))]
    elif fault == "no_close":
        body = b"\r\n".join(parts)
    elif fault == "wrong_close":
        body = b"\r\n".join(parts) + b"\r\n--other--\r\n"
    elif fault == "lf":
        body = body.replace(b"\r\n", b"\n")
    declared = draw(
        st.sampled_from(
            (
                f"multipart/form-data; boundary={boundary}",
                f'multipart/form-data; boundary="{boundary}"',
            )
        )
    )
    if fault == "declared":
        declared = draw(
            st.sampled_from(
                (
                    "multipart/form-data",
                    "multipart/form-data; boundary=",
                    "multipart/form-data; boundary=other",
                    f"multipart/mixed; boundary={boundary}",
                )
            )
        )
    return declared, body


async def test_hostile_multipart_uploads_are_refused_or_make_a_sound_job(fuzzer: Fuzzer) -> None:
    @examples(100)
    @given(upload_=multipart_uploads(), query=st.sampled_from(("", "?validation=lenient")))
    def example(upload_: tuple[str, bytes], query: str) -> None:
        content_type, body = upload_
        answer = fuzzer.send(
            "POST", f"/v1/imports{query}", content=body, headers={"Content-Type": content_type}
        )
        check_import(fuzzer, answer)

    await fuzzer.run(example)
