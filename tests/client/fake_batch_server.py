"""A fake ``/v1/batch`` server for the SDK's unit tests: a :class:`Transport` that records
the operations of every request it is sent and answers with a function of them."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from batchops.client._transport import Reply, Transport

__all__ = ["Answer", "FakeServer"]

Answer = Callable[[list[dict[str, Any]]], Reply | Awaitable[Reply]]


class FakeServer(Transport):
    """Records each /v1/batch's operations (:attr:`sent`) and answers with
    ``answer(operations)`` (a reply, or an awaitable one: a test's clock may run first)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__("http://fake.invalid", "key", timeout=10, max_connections=10)
        self.answer = answer
        self.sent: list[list[dict[str, Any]]] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        assert body is not None
        ops: list[dict[str, Any]] = orjson.loads(body)["operations"]
        self.sent.append(ops)
        reply = self.answer(ops)
        return await reply if inspect.isawaitable(reply) else reply

    @property
    def sizes(self) -> list[int]:
        """How many operations each request held, in the order they were sent."""
        return [len(ops) for ops in self.sent]
