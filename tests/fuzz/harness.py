"""Driving the in-process app from Hypothesis, and the rule every answer is held to.

Why a thread: the ``service`` fixture runs the app on the test's event loop, while
Hypothesis calls a test function synchronously and wants to shrink a failure by calling it
again. So each fuzz test is an ``async`` test that runs an ``@given`` function in a worker
thread (``Fuzzer.run``), and that function sends each request to the loop with
``run_coroutine_threadsafe`` and waits for the answer with a time bound — a hang is a
failure like a 500. The ``@given`` function takes no fixture, so Hypothesis's
function-scoped-fixture health check does not apply: one app, one tenant for all the
examples of a test (and the shrinking), which is what a real server sees too.

The rule (:meth:`Fuzzer.check`): a status under 500 (a 503 ``STORE_BUSY`` with
``Retry-After`` is the one 5xx tolerated), and every 4xx the JSON envelope
``{"error": {"code", "message", "details"}}`` with a non-empty code and a JSON
``Content-Type``. An exception that escapes the app (the ASGI transport re-raises it) fails
the example with its traceback.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx
import orjson

from tests.server.conftest import Service

__all__ = [
    "HANG_S",
    "HEALTHZ_EVERY",
    "HEALTHZ_S",
    "JSON",
    "Answer",
    "Fuzzer",
    "check_answer",
    "check_envelope",
    "check_job_end",
]

HANG_S = 15.0
"""An answer slower than this is a hang: a failure. Every request the fuzzer sends is
answered in milliseconds (the slowest, an import's upload, in well under a second); 15 s
leaves room for a loaded 2-core machine and stays far below the 30 s statement bound, so
a request stuck on the database is caught here rather than by that bound."""

HEALTHZ_S = 1.0
"""``GET /healthz`` must answer within this, after every :data:`HEALTHZ_EVERY` examples
and at the end of each test."""

HEALTHZ_EVERY = 25

JSON = {"Content-Type": "application/json"}


@dataclass
class Answer:
    """What one request got."""

    method: str
    url: str
    status: int
    headers: httpx.Headers
    content: bytes
    elapsed_s: float
    request_body: bytes = b""
    request_headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return orjson.loads(self.content)

    def __str__(self) -> str:
        body = self.request_body
        shown = body if len(body) <= 300 else body[:200] + b"..." + body[-60:]
        answer = self.content if len(self.content) <= 600 else self.content[:600] + b"..."
        return (
            f"{self.method} {self.url[:300]} {dict(self.request_headers)} "
            f"body ({len(body)} bytes) {shown!r}\n-> {self.status} "
            f"{self.headers.get('content-type')} {answer!r}"
        )


def check_envelope(answer: Answer) -> dict[str, Any]:
    """The error of an error answer, after checking it is exactly the envelope."""
    content_type = answer.headers.get("content-type", "")
    assert content_type.startswith("application/json"), f"error not JSON: {answer}"
    try:
        body = answer.json()
    except orjson.JSONDecodeError as exc:
        raise AssertionError(f"error body is not JSON ({exc}): {answer}") from None
    assert isinstance(body, dict), f"not the envelope: {answer}"
    assert set(body) == {"error"}, f"not the envelope: {answer}"
    error = body["error"]
    assert isinstance(error, dict), f"not the envelope: {answer}"
    assert set(error) == {"code", "message", "details"}, f"envelope keys: {answer}"
    assert isinstance(error["code"], str), f"code not a string: {answer}"
    assert error["code"], f"empty code: {answer}"
    assert isinstance(error["message"], str), f"message not a string: {answer}"
    assert isinstance(error["details"], dict), f"details not an object: {answer}"
    return error


def check_status(status: int, error: Mapping[str, Any] | None, answer: Answer) -> None:
    """Under 500, or a 503 ``STORE_BUSY`` (the caller checks ``Retry-After``)."""
    if status < 500:
        return
    code = error.get("code") if error is not None else None
    assert (status, code) == (503, "STORE_BUSY"), f"a {status} ({code}): {answer}"


def check_answer(answer: Answer) -> Any:
    """The rule for a plain JSON route: a 2xx (its body, decoded, or None when empty)
    or the error envelope with a 4xx."""
    if answer.status >= 400:
        error = check_envelope(answer)
        check_status(answer.status, error, answer)
        if answer.status == 503:
            assert "retry-after" in answer.headers, f"503 without Retry-After: {answer}"
        return None
    if answer.status == 307 and unquote(answer.url.split("?", 1)[0]).endswith("/"):
        # Starlette's redirect_slashes: ``…/records/`` (an empty id) is sent to
        # ``…/records``. Not an error; a client following it gets the route's answer.
        assert "location" in answer.headers, f"307 without Location: {answer}"
        return None
    assert answer.status < 300, f"unexpected {answer.status}: {answer}"
    if not answer.content:
        return None
    if answer.headers.get("content-type", "").startswith("application/json"):
        return answer.json()
    return None


def check_job_end(job: Mapping[str, Any]) -> None:
    """A job ends ``succeeded`` or ``failed`` with a specific code — never
    ``INTERNAL_ERROR`` (a crash of the runner) nor ``cancelled`` (nobody asked)."""
    assert job["state"] in ("succeeded", "failed"), f"job ended {job['state']}: {job}"
    if job["state"] == "failed":
        error = job["error"]
        assert isinstance(error, dict), f"a failed job without an error: {job}"
        assert error.get("code"), f"a failed job without a code: {job}"
        assert error["code"] != "INTERNAL_ERROR", f"the job crashed: {job}"


def _summary(response: httpx.Response) -> str:
    if response.status_code < 400:
        return str(response.status_code)
    try:
        return f"{response.status_code} {response.json()['error']['code']}"
    except (ValueError, KeyError, TypeError):
        return str(response.status_code)


class Fuzzer:
    """One test's connection to the app, usable from Hypothesis's thread."""

    def __init__(self, service: Service, loop: asyncio.AbstractEventLoop) -> None:
        self.service = service
        self.client = service.client
        self.loop = loop
        self.sent = 0
        self.slowest = 0.0
        self.answers: Counter[str] = Counter()

    async def run(self, test: Callable[[], None]) -> None:
        """Run the ``@given`` function ``test`` in a worker thread (see the module
        docstring), then check the server is healthy."""
        await asyncio.to_thread(test)
        await self._healthz()
        # Shown with ``pytest -s``: how far the examples got (most should pass the first
        # check, so most answers should not be the same 400). The same on every run (the
        # examples are derandomized; polls of a job's state are not counted).
        common = ", ".join(f"{k} x{n}" for k, n in sorted(self.answers.items()))
        print(f"\n{self.sent} requests: {common}")
        print(f"slowest answer: {self.slowest * 1000:.0f} ms")

    # -- sending ---------------------------------------------------------------------------

    def send(
        self,
        method: str,
        url: str,
        *,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
        probe: bool = True,
    ) -> Answer:
        """Send one request from the Hypothesis thread; fail if the app raised or did not
        answer within :data:`HANG_S`. ``probe=False`` for a request that only observes
        (a poll of a job's state): it is not counted."""
        if probe:
            self.sent += 1
            if self.sent % HEALTHZ_EVERY == 0:
                self.wait(self._healthz())
        headers = dict(headers or {})
        coro = self._send(client or self.client, method, url, content, headers, count=probe)
        answer: Answer = self.wait(coro, what=f"{method} {url[:200]}")
        return answer

    async def asend(
        self,
        method: str,
        url: str,
        *,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """:meth:`send` from the test's own coroutine (the app's loop), for a pinned
        example outside Hypothesis."""
        return await self._send(self.client, method, url, content, dict(headers or {}))

    def wait(self, coro: Any, what: str = "") -> Any:
        """Run ``coro`` on the app's loop and wait for it (at most :data:`HANG_S`)."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(HANG_S)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise AssertionError(f"no answer within {HANG_S} s: {what}") from None

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        url: str,
        content: bytes,
        headers: dict[str, str],
        *,
        count: bool = True,
    ) -> Answer:
        started = time.monotonic()
        try:
            # Header values as UTF-8 bytes: httpx would refuse non-ASCII text client-side.
            raw = [(k.encode(), v.encode()) for k, v in headers.items()]
            response = await client.request(method, url, content=content, headers=raw)
        except Exception:
            shown = content if len(content) <= 300 else content[:200] + b"..."
            raise AssertionError(
                f"the app raised on {method} {url[:300]} {headers} body {shown!r}:\n"
                + traceback.format_exc()
            ) from None
        elapsed = time.monotonic() - started
        self.slowest = max(self.slowest, elapsed)
        if count:
            self.answers[_summary(response)] += 1
        return Answer(
            method,
            url,
            response.status_code,
            response.headers,
            response.content,
            elapsed,
            content,
            headers,
        )

    async def _healthz(self) -> None:
        started = time.monotonic()
        response = await self.client.get("/healthz")
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert elapsed < HEALTHZ_S, f"/healthz took {elapsed:.2f} s"

    # -- checking --------------------------------------------------------------------------

    def check(self, answer: Answer) -> Any:
        """:func:`check_answer`."""
        return check_answer(answer)

    def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        """:meth:`send`, then :meth:`check`."""
        answer = self.send(method, url, content=content, headers=headers)
        self.check(answer)
        return answer

    # -- jobs ------------------------------------------------------------------------------

    def wait_job(self, job_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """Poll ``GET /v1/jobs/{id}`` until the job has ended; its final body."""
        deadline = time.monotonic() + timeout_s
        while True:
            answer = self.send("GET", f"/v1/jobs/{job_id}", probe=False)
            assert answer.status == 200, str(answer)
            job: dict[str, Any] = answer.json()
            if job["state"] not in ("queued", "running"):
                return job
            assert time.monotonic() < deadline, f"job still {job['state']}: {job}"
            time.sleep(0.02)

    def check_job_end(self, job: Mapping[str, Any]) -> None:
        """:func:`check_job_end`, counting how the job ended."""
        code = (job.get("error") or {}).get("code", "") if job["state"] == "failed" else ""
        self.answers[f"job {job['state']} {code}".rstrip()] += 1
        check_job_end(job)
