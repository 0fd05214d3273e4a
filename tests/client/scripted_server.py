"""A scripted HTTP/1.1 server for SDK tests of routes the test server does not have.

Each request gets the next :class:`Answer` of the script (the last one repeats), and is
recorded as the fault proxy records them (:class:`~tests.client.fault_proxy.Seen`). An
answer can also drop the connection after reading the request (the server got it, the
client gets nothing) or hold it longer than the client waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.client.fault_proxy import Seen, read_request

__all__ = ["Answer", "ScriptedServer"]


@dataclass(frozen=True)
class Answer:
    """What the server does with one request."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: Read the request, then close the connection without a word.
    drop: bool = False
    #: Seconds to wait before answering.
    delay: float = 0.0


@dataclass
class ScriptedServer:
    """Listen on ``port`` (0: a free one) and answer with ``script``, in order."""

    script: list[Answer]
    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    url: str = ""
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def start(self) -> None:
        """Start listening; ``self.url`` is the base URL (the port is kept for a restart)."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        """Stop listening and end the connections still open (a held answer included)."""
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def bodies(self) -> list[Any]:
        """The JSON body of every request received, in order."""
        return [orjson.loads(s.body) for s in self.seen]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                self.seen.append(await read_request(reader))
                answer = self.script[min(len(self.seen), len(self.script)) - 1]
                if answer.delay:
                    await asyncio.sleep(answer.delay)
                if answer.drop:
                    return
                data = b"" if answer.body is None else orjson.dumps(answer.body)
                head_lines = [f"HTTP/1.1 {answer.status} X", "content-type: application/json"]
                head_lines += [f"{k}: {v}" for k, v in answer.headers.items()]
                head_lines.append(f"content-length: {len(data)}")
                writer.write(("\r\n".join(head_lines) + "\r\n\r\n").encode("latin-1") + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()
            self._tasks.discard(task)
