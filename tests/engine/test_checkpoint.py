"""Checkpoint journal: resume after failures, after a torn write, after kill -9."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from batchops import CheckpointError, Failure, Success
from batchops.engine import batch_execute


async def test_a_rerun_after_failures_runs_only_the_failed_items(tmp_path: Path) -> None:
    journal = tmp_path / "run.jsonl"
    calls: list[int] = []

    async def flaky(i: int) -> dict[str, int]:
        calls.append(i)
        if i in (3, 5):
            raise ConnectionError("down")
        return {"id": i}

    first = await batch_execute(range(8), flaky, checkpoint=journal, key=str)
    assert [f.index for f in first.failures()] == [3, 5]

    calls.clear()

    async def healthy(i: int) -> dict[str, int]:
        calls.append(i)
        return {"id": i}

    second = await batch_execute(range(8), healthy, checkpoint=journal, key=str)

    assert sorted(calls) == [3, 5]
    assert second.ok
    assert second.values() == [{"id": i} for i in range(8)]
    # Restored items say so with attempts=0.
    assert [r.attempts for r in second] == [0, 0, 0, 1, 0, 1, 0, 0]


async def test_a_value_that_is_not_json_fails_its_item_with_checkpoint_error(
    tmp_path: Path,
) -> None:
    async def op(i: int) -> object:
        return object() if i == 1 else i

    result = await batch_execute(
        [0, 1, 2], op, checkpoint=tmp_path / "j.jsonl", key=lambda i: f"item-{i}"
    )

    failure = result[1]
    assert isinstance(failure, Failure)
    assert isinstance(failure.error, CheckpointError)
    assert "'item-1'" in str(failure.error)
    assert "object" in str(failure.error)
    assert result.values() == [0, 2]


async def test_a_torn_last_line_is_ignored_and_cut_off(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b'{"k":"0","v":"zero"}\n{"k":"1","v":"o')
    calls: list[int] = []

    async def op(i: int) -> str:
        calls.append(i)
        return f"new-{i}"

    result = await batch_execute(range(3), op, checkpoint=journal, key=str)

    assert calls == [1, 2]
    assert result.values() == ["zero", "new-1", "new-2"]
    lines = journal.read_bytes().splitlines()
    assert [json.loads(line)["k"] for line in lines] == ["0", "1", "2"]


async def test_a_corrupt_middle_line_raises_checkpoint_error(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b"not json\n" + b'{"k":"0","v":0}\n')

    async def op(i: int) -> int:
        return i

    with pytest.raises(CheckpointError, match="line 1"):
        await batch_execute(range(2), op, checkpoint=journal, key=str)


_WORKER = textwrap.dedent(
    """
    import asyncio, json, sys
    from batchops.engine import batch_execute

    journal, side_log = sys.argv[1], sys.argv[2]

    async def op(i):
        with open(side_log, "a") as f:
            f.write(f"{i}\\n")
            f.flush()
        await asyncio.sleep(0.004)
        return {"n": i}

    async def main():
        result = await batch_execute(range(1000), op, max_concurrent=4,
                                     checkpoint=journal, key=str)
        print(json.dumps({"ok": result.ok, "n": len(result),
                          "restored": sum(r.attempts == 0 for r in result)}))

    asyncio.run(main())
    """
)


@pytest.mark.slow
def test_resume_after_kill_9_never_reruns_a_journaled_item(tmp_path: Path) -> None:
    journal, side_log, script = tmp_path / "j.jsonl", tmp_path / "side.log", tmp_path / "w.py"
    script.write_text(_WORKER)
    args = [sys.executable, str(script), str(journal), str(side_log)]

    proc = subprocess.Popen(args)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if side_log.exists() and len(side_log.read_text().splitlines()) >= 60:
            break
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    journaled_at_kill = {
        json.loads(line)["k"] for line in journal.read_bytes().splitlines() if line.endswith(b"}")
    }
    assert 0 < len(journaled_at_kill) < 1000

    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)

    summary = json.loads(done.stdout)
    assert summary == {"ok": True, "n": 1000, "restored": len(journaled_at_kill)}
    runs: dict[str, int] = {}
    for line in side_log.read_text().splitlines():
        runs[line] = runs.get(line, 0) + 1
    assert set(runs) == {str(i) for i in range(1000)}
    assert {k: runs[k] for k in journaled_at_kill} == dict.fromkeys(journaled_at_kill, 1)


async def test_checkpointed_successes_are_returned_as_success_objects(tmp_path: Path) -> None:
    async def op(i: int) -> list[int]:
        return [i, i]

    journal = tmp_path / "j.jsonl"
    await batch_execute([4], op, checkpoint=journal, key=str)
    again = await batch_execute([4], op, checkpoint=journal, key=str)

    assert again[0] == Success(0, [4, 4], attempts=0)
