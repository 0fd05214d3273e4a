"""Ids: time-ordered, unique across calls, threads and forks."""

from __future__ import annotations

from batchops.server._ids import new_record_id, new_record_ids


def test_generated_ids_sort_in_creation_order() -> None:
    ids = [new_record_id() for _ in range(200)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 200


def test_generated_ids_are_valid_uuid7_strings() -> None:
    import uuid

    for text in new_record_ids(50):
        parsed = uuid.UUID(text)
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_ids_generated_in_one_call_and_across_calls_strictly_increase() -> None:
    ids = new_record_ids(5000) + new_record_ids(5000) + [new_record_id() for _ in range(100)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_built_by_columns_are_the_ids_built_one_by_one() -> None:
    import os

    from batchops.server._ids import _VARIANT, _id_columns, _time_prefix

    prefix = _time_prefix(1_733_400_000_123)
    for first, count in ((0, 32), (1000, 2500), (0x1000 - 40, 40)):
        digits = os.urandom(8 * count).hex()
        one_by_one = [
            f"{prefix}{first + i:03x}-{_VARIANT[digits[16 * i]]}{digits[16 * i + 1 : 16 * i + 4]}"
            f"-{digits[16 * i + 4 : 16 * i + 16]}"
            for i in range(count)
        ]
        assert _id_columns(prefix, first, digits) == one_by_one


def test_large_calls_cross_milliseconds_in_order() -> None:
    import uuid

    ids = new_record_ids(9000)  # more than one millisecond's 4,096 counter values
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert {uuid.UUID(text).version for text in ids} == {7}


def test_a_forked_process_draws_its_own_random_bits_for_ids() -> None:
    import os

    new_record_ids(1)  # leaves random digits in the pool, which a fork would copy
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the random part of its next id, then leave at once
        os.close(read_end)
        os.write(write_end, new_record_ids(1)[0][-17:].encode())
        os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 64).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    parent = new_record_ids(1)[0][-17:]
    assert len(child) == 17
    assert child != parent
