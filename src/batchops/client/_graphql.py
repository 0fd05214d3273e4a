"""``client.graphql()``: GraphQL over ``POST /graphql``, one document or an array of them.

The wire (the server's contract): the body is ``{"query", "variables"?, "operationName"?}``
or a JSON array of such objects (array batching), answered 200 with one
``{"data", "errors"?}`` per request, in order. A failure of the HTTP request as a whole
(401, 413 ``BATCH_TOO_LARGE``, 429, 503…) is the project's error envelope, raised as its
:class:`~batchops.APIError` like every other route; errors *inside* a 200 are data
(:class:`GraphQLResponse.errors`), because partial results are normal in GraphQL.

Retries (:func:`may_send_again`): unlike ``/v1/batch``, ``/graphql`` takes no
``Idempotency-Key``, so the server cannot replay a request it already ran. A document of
queries only is retried like a GET (the client's retry policy, unchanged). A document
that holds a mutation is sent again only when the failure proves nothing of it ran; after
the request may have reached the server (a timeout, a dropped connection, a 502/504 from a
proxy), it is never re-sent: the error is raised and the caller decides.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from batchops._exceptions import APIError, ConnectionFailedError, GraphQLResponseError
from batchops.client._transport import Reply, Transport
from batchops.engine import RetryPolicy

__all__ = [
    "GraphQLError",
    "GraphQLRequest",
    "GraphQLResponse",
    "is_query_only",
    "may_send_again",
    "send_graphql",
]

#: Statuses of an answer to the whole request that mean the server ran none of it: 408
#: (it gave up reading the body: nothing was applied, RFC 9110 §15.5.9), 429 and 503 (the
#: request was refused before its document ran; field-level failures are 200 + errors).
NOTHING_RAN_STATUSES = frozenset({408, 429, 503})


@dataclass(frozen=True, slots=True)
class GraphQLRequest:
    """One GraphQL request: a document, its variables, and which of its operations to run.

    An item of :meth:`AsyncClient.graphql_batch` (a plain ``str`` there is the query
    alone). ``variables`` is copied when the request is made; ``None`` leaves
    ``"variables"`` (and ``operation_name=None`` ``"operationName"``) out of the body.

    >>> GraphQLRequest("query P($id: ID!) { person(id: $id) { name } }", {"id": "ada"}).to_json()
    {'query': 'query P($id: ID!) { person(id: $id) { name } }', 'variables': {'id': 'ada'}}
    """

    query: str
    variables: Mapping[str, Any] | None = None
    operation_name: str | None = None

    def __post_init__(self) -> None:
        # Checked here, so that a wrong argument fails before anything is sent.
        if not isinstance(self.query, str):
            raise TypeError(f"query must be a str (a GraphQL document), got {self.query!r}")
        if not self.query.strip():
            raise ValueError("query is empty: it must be a GraphQL document")
        if self.variables is not None:
            if not isinstance(self.variables, Mapping):
                raise TypeError(f"variables must be a mapping or None, got {self.variables!r}")
            object.__setattr__(self, "variables", dict(self.variables))  # frozen: our own copy
        if self.operation_name is not None and not isinstance(self.operation_name, str):
            raise TypeError(f"operation_name must be a str or None, got {self.operation_name!r}")

    def to_json(self) -> dict[str, Any]:
        """The request's wire form: ``{"query", "variables"?, "operationName"?}``."""
        out: dict[str, Any] = {"query": self.query}
        if self.variables is not None:
            out["variables"] = self.variables
        if self.operation_name is not None:
            out["operationName"] = self.operation_name
        return out


@dataclass(frozen=True, slots=True)
class GraphQLError:
    """One entry of a GraphQL answer's ``errors``, with batchops' ``extensions`` read out.

    - ``message``: what went wrong, for a person;
    - ``path``: where in ``data`` (``["createPerson", "name"]``; ``None`` when the error is
      not tied to a field, e.g. the document does not validate);
    - ``locations``: ``[{"line": 1, "column": 3}, …]`` in the document, or ``None``;
    - ``code``: ``extensions.code`` (``NOT_FOUND``, ``VERSION_MISMATCH``,
      ``VALIDATION_ERROR``, ``GRAPHQL_VALIDATION_FAILED``…), or ``None``;
    - ``status``: ``extensions.status``, the HTTP status the REST route would answer for
      the same failure (404…); ``None`` for GraphQL-level errors;
    - ``details``: ``extensions.details`` (``{}`` when absent), as in an error envelope;
    - ``extensions``: every extension as the server sent it.

    >>> e = GraphQLError.from_json({"message": "gone", "path": ["person"],
    ...                             "extensions": {"code": "NOT_FOUND", "status": 404}})
    >>> e.code, e.status, str(e)
    ('NOT_FOUND', 404, 'NOT_FOUND (404) at person: gone')
    """

    message: str
    path: list[str | int] | None = None
    locations: list[dict[str, int]] | None = None
    code: str | None = None
    status: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    extensions: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> GraphQLError:
        """Read one ``errors`` entry; fields of the wrong type are treated as absent."""
        extensions = entry.get("extensions")
        ext: dict[str, Any] = dict(extensions) if isinstance(extensions, Mapping) else {}
        path = entry.get("path")
        locations = entry.get("locations")
        code = ext.get("code")
        status = ext.get("status")
        details = ext.get("details")
        return cls(
            message=str(entry.get("message", "")),
            path=list(path) if isinstance(path, list) else None,
            locations=list(locations) if isinstance(locations, list) else None,
            code=code if isinstance(code, str) else None,
            status=status if isinstance(status, int) and not isinstance(status, bool) else None,
            details=dict(details) if isinstance(details, Mapping) else {},
            extensions=ext,
        )

    def __str__(self) -> str:
        head = " ".join(
            part
            for part in (self.code, f"({self.status})" if self.status is not None else None)
            if part
        )
        where = ".".join(str(p) for p in self.path) if self.path else ""
        prefix = head + (f" at {where}" if where else "")
        return f"{prefix}: {self.message}" if prefix else self.message


@dataclass(frozen=True, slots=True)
class GraphQLResponse:
    """One GraphQL answer: ``data`` and ``errors``, both possibly present (partial results).

    ``data`` is ``None`` when nothing resolved (the document did not validate, or a
    non-null field failed up to the root); ``errors`` is empty when all went well;
    ``extensions`` is the answer's own top-level ``extensions`` (``{}`` when absent).

    ::

        answer = await client.graphql("query P($id: ID!) { person(id: $id) { name } }",
                                      {"id": "ada"})
        if answer.ok:
            print(answer.data["person"]["name"])
        for error in answer.errors:
            print(error.code, error.status, error.path, error.message)
        data = answer.raise_for_errors().data  # or: one GraphQLResponseError, all errors
    """

    data: dict[str, Any] | None
    errors: list[GraphQLError] = field(default_factory=list)
    extensions: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the answer carries no error."""
        return not self.errors

    def raise_for_errors(self) -> GraphQLResponse:
        """Raise one :class:`~batchops.GraphQLResponseError` carrying every error (and the
        partial ``data``); return self when there is none.

        One error for all of them, not the first one's class: a GraphQL answer may fail
        several fields for different reasons, and the partial data belongs with them.

        >>> GraphQLResponse({"n": 1}).raise_for_errors().data
        {'n': 1}
        """
        if not self.errors:
            return self
        shown = self.errors[:20]
        lines = [f"  {error}" for error in shown]
        if len(self.errors) > len(shown):
            lines.append(f"  … and {len(self.errors) - len(shown)} more")
        count = len(self.errors)
        message = f"the GraphQL answer has {count} error{'s' if count > 1 else ''}:\n"
        raise GraphQLResponseError(
            message + "\n".join(lines), errors=list(self.errors), data=self.data
        )

    @classmethod
    def from_json(cls, answer: Any) -> GraphQLResponse:
        """Read one answer object; :class:`~batchops.APIError` (502) if it is not one."""
        if not isinstance(answer, Mapping):
            raise _bad_answer(f"expected a GraphQL response object, got {_short(answer)}")
        data = answer.get("data")
        errors = answer.get("errors")
        extensions = answer.get("extensions")
        if data is not None and not isinstance(data, dict):
            raise _bad_answer(f"'data' must be an object or null, got {_short(data)}")
        if errors is not None and not (
            isinstance(errors, list) and all(isinstance(e, Mapping) for e in errors)
        ):
            raise _bad_answer(f"'errors' must be a list of objects, got {_short(errors)}")
        if data is None and not errors:
            # The spec: no errors means data is there. Nothing to show the caller.
            raise _bad_answer(f"neither data nor errors in {_short(answer)}")
        return cls(
            data,
            [GraphQLError.from_json(e) for e in errors or ()],
            dict(extensions) if isinstance(extensions, Mapping) else {},
        )


# -- which documents may be sent again -----------------------------------------------------

# GraphQL's lexical tokens, as far as finding where each definition starts needs them:
# what is ignored, strings (whose content must not count), names, and brackets.
_TOKEN = re.compile(
    r"""
      (?P<ignored>[\s,\ufeff]+|\#[^\n\r]*)
    | (?P<block>\"\"\"(?:\\\"\"\"|\\(?!\"\"\")|[^"\\]|"(?!""))*\"\"\")
    | (?P<string>"(?:\\.|[^"\\\n\r])*")
    | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
    | (?P<open>[{(\[])
    | (?P<close>[})\]])
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def is_query_only(document: str) -> bool:
    """True when every operation of ``document`` is a query (fragments aside).

    Each top-level definition starts with ``query``, ``mutation``, ``subscription``,
    ``fragment`` or ``{`` (a shorthand query); those first tokens are read outside every
    bracket, string and comment, so a field or a string named "mutation" does not count.
    Anything this cannot read (an unterminated string, unbalanced brackets, a type
    definition) is not "query only": the answer errs on the side of not re-sending.

    >>> is_query_only('{ people { name } }'), is_query_only('mutation { delete(id: "a") }')
    (True, False)
    """
    depth = 0
    starts: list[str] = []
    at_definition = True
    for match in _TOKEN.finditer(document):
        kind = match.lastgroup
        token = match.group()
        if kind == "ignored":
            continue
        if kind == "other" and token == '"':
            return False  # a string that never ends: unreadable
        if depth == 0 and at_definition:
            starts.append("query" if token == "{" else token)
            at_definition = False
        if kind == "open":
            depth += 1
        elif kind == "close":
            depth -= 1
            if depth < 0:
                return False
            at_definition = depth == 0 and token == "}"
    return depth == 0 and "query" in starts and set(starts) <= {"query", "fragment"}


def may_send_again(exc: BaseException, *, query_only: bool) -> bool:
    """Whether a ``/graphql`` request that failed with ``exc`` is safe to send again.

    The client's retry policy still decides whether ``exc`` is worth a retry at all (and
    how long to wait); this only forbids the retries that could run a mutation twice:

    - documents of queries only (``query_only``): always safe, as a GET is;
    - with a mutation: only when nothing can have run — a 408/429/503 answer to the
      whole request, or a connection that failed before the request was sent. A timeout
      or a connection lost after sending may have run it: not sent again.

    >>> from batchops import RateLimitedError, ConnectionFailedError
    >>> may_send_again(RateLimitedError("slow down"), query_only=False)
    True
    >>> may_send_again(ConnectionFailedError("dropped"), query_only=False)
    False
    """
    if query_only:
        return True
    if isinstance(exc, ConnectionFailedError):
        return exc.before_sending
    return isinstance(exc, APIError) and exc.status_code in NOTHING_RAN_STATUSES


# -- sending -------------------------------------------------------------------------------


async def send_graphql(
    transport: Transport,
    retry: RetryPolicy,
    requests: Sequence[GraphQLRequest],
    *,
    array: bool,
) -> list[GraphQLResponse]:
    """POST ``requests`` to ``/graphql`` (one object, or an ``array`` of them); one
    response per request, in order. Retried under ``retry`` as far as
    :func:`may_send_again` allows."""
    payload: Any = [r.to_json() for r in requests] if array else requests[0].to_json()
    body = orjson.dumps(payload)
    query_only = all(is_query_only(r.query) for r in requests)
    policy = dataclasses.replace(
        retry,
        retry_on=lambda exc: retry.should_retry(exc) and may_send_again(exc, query_only=query_only),
    )

    async def attempt() -> list[GraphQLResponse]:
        reply = await transport.request("POST", "/graphql", body=body)
        if reply.status >= 400:
            raise reply.error()
        return _responses_of(reply, len(requests) if array else None)

    return await policy.call(attempt)


def _responses_of(reply: Reply, expected: int | None) -> list[GraphQLResponse]:
    """The answers of a 2xx reply: one object, or (``expected`` set) an array of that many."""
    answer = reply.json()
    if expected is None:
        return [GraphQLResponse.from_json(answer)]
    if not isinstance(answer, list) or len(answer) != expected:
        raise _bad_answer(f"expected an array of {expected} responses, got {_short(answer)}")
    return [GraphQLResponse.from_json(item) for item in answer]


def _bad_answer(why: str) -> APIError:
    # A 502, as for a /v1/batch answer without one result per operation: the server (or
    # something in front of it) answered, but not in the protocol.
    return APIError(f"POST /graphql: {why}", code="INVALID_GRAPHQL_RESPONSE", status=502)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
