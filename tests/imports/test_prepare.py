"""The import worker's side of the pipe (imports/prepare.py), run in this process: what it
sends for a file, chunk by chunk."""

from __future__ import annotations

import multiprocessing
import platform
import resource
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchops.server.imports.options import ImportOptions
from batchops.server.imports.prepare import ChunkPreparer, PreparedChunk, _keep_heap, _produce
from batchops.server.imports.rows import FieldSpec


def _messages(
    path: Path, options: ImportOptions, header: list[str], *, skip_to: int = 0, search: bool
) -> list[Any]:
    receiver, sender = multiprocessing.Pipe(duplex=False)
    worker = threading.Thread(
        target=_produce, args=(sender, str(path), options.to_dict(), header, skip_to, search)
    )
    worker.start()
    out: list[Any] = []
    while True:
        message = receiver.recv()
        out.append(message)
        if not isinstance(message, PreparedChunk):
            break
    worker.join(5)
    return out


def _json(chunk: PreparedChunk) -> list[str]:
    records = chunk.records()
    assert records is not None
    return records.json


CSV = "email,age\na@x.org,1\nb@x.org,old\n\nc@x.org,3\nd@x.org,4\ne@x.org,5\n"
MAPPING = {"email": FieldSpec("email", "string"), "age": FieldSpec("age", "int")}


def test_a_csv_is_sent_in_chunks_of_encoded_good_rows_and_described_bad_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    options = ImportOptions(format="csv", chunk_size=2, mapping=MAPPING)
    first, second, third, end = _messages(path, options, ["email", "age"], search=False)
    assert (first.count, first.last_number, first.search) == (2, 2, None)
    assert [orjson.loads(t) for t in _json(first)] == [{"email": "a@x.org", "age": 1}]
    assert first.failures == [(2, "b@x.org,old", "BAD_VALUE", first.failures[0][3])]
    assert "age" in first.failures[0][3]
    assert (second.count, second.last_number, second.failures) == (2, 4, [])
    assert [orjson.loads(t)["email"] for t in _json(second)] == ["c@x.org", "d@x.org"]
    assert (third.count, third.last_number) == (1, 5)
    assert end is None


def test_search_texts_travel_with_the_rows_when_the_store_wants_them(tmp_path: Path) -> None:
    path = tmp_path / "notes.ndjson"
    path.write_text('{"title": "two\\nlines", "n": 1}\n{"title": "x"}\n')
    options = ImportOptions(format="ndjson", chunk_size=10)
    chunk, end = _messages(path, options, [], search=True)
    records = chunk.records()
    assert records is not None
    assert records.search == ["two lines", "x"]  # a newline in a value becomes a space
    assert [orjson.loads(t) for t in records.json] == [
        {"title": "two\nlines", "n": 1},
        {"title": "x"},
    ]
    assert end is None


def test_a_resumed_worker_starts_after_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(CSV)
    options = ImportOptions(format="csv", chunk_size=10, mapping=MAPPING)
    chunk, end = _messages(path, options, ["email", "age"], skip_to=3, search=False)
    assert (chunk.count, chunk.last_number) == (2, 5)
    assert [orjson.loads(t)["email"] for t in _json(chunk)] == ["d@x.org", "e@x.org"]
    assert end is None


def test_an_unreadable_file_ends_the_stream_with_its_row_and_drops_the_partial_chunk(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rows.json"
    path.write_text('[{"n": 1}, {"n": 2}, {"n": ')
    options = ImportOptions(format="json", chunk_size=10)
    (message,) = _messages(path, options, [], search=False)
    assert message[0] == "input_error"
    assert message[1] == "INVALID_JSON"
    assert message[3] == 3


def _write_people(path: Path, rows: int) -> None:
    with path.open("w") as f:
        f.write("name,email,age,score,city,note\n")
        for i in range(rows):
            f.write(f"Person {i},p{i}@example.org,{20 + i % 50},{i / 7:.3f},City {i % 9},")
            f.write("likes bulk APIs and fast batches " * (1 + i % 3) + "\n")


@pytest.mark.slow
async def test_the_worker_process_keeps_its_heap_instead_of_faulting_it_back_in_every_chunk(
    tmp_path: Path,
) -> None:
    # glibc gave the top of the worker's heap back to the system after each chunk and the
    # next chunk faulted every page in again: ~1 page fault a row, ~2 µs a row of the
    # worker's CPU, and the worker was the import's bottleneck (docs/benchmarks.md,
    # Imports). Counted, not timed: the minor page faults of the real worker process.
    path = tmp_path / "people.csv"
    rows = 60_000
    _write_people(path, rows)
    header = ["name", "email", "age", "score", "city", "note"]
    mapping = {
        "name": FieldSpec("name", "string"),
        "email": FieldSpec("email", "string"),
        "age": FieldSpec("age", "int"),
        "score": FieldSpec("score", "float"),
        "city": FieldSpec("address.city", "string"),
        "note": FieldSpec("note", "string"),
    }
    options = ImportOptions(format="csv", chunk_size=2500, mapping=mapping)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt
    preparer = ChunkPreparer(path, options, header, skip_to=0, with_search=False)
    count = 0
    while (chunk := await preparer.next()) is not None:
        count += chunk.count
    await preparer.aclose()
    faults = resource.getrusage(resource.RUSAGE_CHILDREN).ru_minflt - before
    assert count == rows
    # Start-up (the interpreter and its imports) costs ~10-20k faults; ~1 a row is the bug.
    assert faults < 30_000 + rows // 10, f"{faults} minor page faults for {rows} rows"


def test_the_worker_heap_policy_applies_wherever_glibc_is_the_c_library() -> None:
    assert _keep_heap() is (platform.libc_ver()[0] == "glibc")
