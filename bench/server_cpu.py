"""Server CPU per batch, in one process: a quieter A/B measure than bench/server.py.

``create_app`` driven straight through ASGI (no sockets, no HTTP client), on a fresh
SQLite file: 100 warm-up batches of 100 plain creates, then ``--batches`` more, timed with
``time.process_time()`` (so the database thread's CPU counts too). Interleave two builds
with ``PYTHONPATH=<tree>/src`` and compare medians of several runs: on the 2-core box the
whole-server bench swings ±15% between runs, this one ±5%.

    .venv/bin/python bench/server_cpu.py [--batches 400] [--label D]
    PYTHONPATH=/tmp/treeB/src .venv/bin/python bench/server_cpu.py --label B
"""

from __future__ import annotations

import argparse
import asyncio
import time

import orjson

from _serve import asgi_request, in_process_app


def body(k: int) -> bytes:
    return orjson.dumps(
        {
            "operations": [
                {
                    "type": "create",
                    "collection": "people",
                    "data": {"name": f"n{k}-{i}", "email": f"u{i}@x.io", "age": i % 90},
                }
                for i in range(100)
            ]
        }
    )


async def main(batches: int, label: str) -> None:
    async with in_process_app() as (app, headers):

        async def post(data: bytes) -> None:
            statuses, _ = await asgi_request(app, "POST", "/v1/batch", headers, data)
            assert statuses == [200], statuses

        bodies = [body(k) for k in range(100 + batches)]
        for data in bodies[:100]:
            await post(data)
        cpu, wall = time.process_time(), time.perf_counter()
        for data in bodies[100:]:
            await post(data)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(
            f"{label}: {cpu / batches * 1e6:.0f} µs of CPU per 100-create batch "
            f"({wall / batches * 1e6:.0f} µs wall)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--label", default="this build")
    args = parser.parse_args()
    asyncio.run(main(args.batches, args.label))
