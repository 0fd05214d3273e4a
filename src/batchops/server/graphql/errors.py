"""GraphQL errors as batchops answers them: every entry of ``errors`` carries
``extensions.code`` (and ``status``, the HTTP status REST would answer, and ``details``).

- A record, batch or job operation that fails raises the :class:`APIError` REST would
  answer; its entry carries that error's code, status and details (``NOT_FOUND``,
  ``VERSION_MISMATCH``, ``VALIDATION_ERROR``…), so a client handles one set of codes.
- A variable GraphQL cannot coerce to its type (``limit: "ten"``) is the
  ``VALIDATION_ERROR`` REST answers for the same value, naming the argument it feeds.
- A document that does not parse is ``GRAPHQL_PARSE_FAILED`` (``TOO_MANY_TOKENS`` past
  the token limit); one the schema or a limit refuses, ``GRAPHQL_VALIDATION_FAILED`` or
  the limit's own code (``QUERY_TOO_DEEP``, ``TOO_MANY_ALIASES``,
  ``INTROSPECTION_DISABLED``), each 400.
- Anything else is a fault of ours: ``INTERNAL_ERROR`` (500), logged, its message masked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any, Final

from graphql import (
    ArgumentNode,
    DocumentNode,
    GraphQLError,
    GraphQLSyntaxError,
    ValidationContext,
    ValidationRule,
    VariableNode,
    visit,
)
from graphql.language import Visitor

from batchops._exceptions import APIError, StoreError

__all__ = [
    "GRAPHQL_PARSE_FAILED",
    "GRAPHQL_VALIDATION_FAILED",
    "api_error_of",
    "coded_rule",
    "error_entry",
    "renamed_for_graphql",
]

log = logging.getLogger("batchops.server.graphql")

GRAPHQL_PARSE_FAILED: Final = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED: Final = "GRAPHQL_VALIDATION_FAILED"

_TOO_MANY_TOKENS: Final = "TOO_MANY_TOKENS"
_VARIABLE_RE: Final = re.compile(r"""^Variable ['"]\$(?P<name>[_A-Za-z][_0-9A-Za-z]*)['"]""")

# What the records service calls a value, as the GraphQL argument that carries it.
_ARGUMENT_NAMES: Final = {
    "include_deleted": "includeDeleted",
    "if_match": "ifVersion",
    "dry_run": "dryRun",
}
_BATCH_PREFIX_RE: Final = re.compile(r"^operations\[\d+\]\.?(?:options\.)?")


def api_error_of(error: GraphQLError) -> APIError | None:
    """The :class:`APIError` a resolver raised (a store fault as the API error it stands
    for), or None for an error of GraphQL itself or a fault of ours."""
    original = error.original_error
    if isinstance(original, StoreError):
        return original.to_api_error()
    return original if isinstance(original, APIError) else None


def renamed_for_graphql(error: APIError) -> APIError:
    """``error`` with its ``details.path`` naming the GraphQL argument (``ifVersion``, not
    ``if_match``; no ``operations[0].`` of the batch the mutation ran in)."""
    path = error.details.get("path")
    if not isinstance(path, str) or not path:
        return error
    trimmed = _BATCH_PREFIX_RE.sub("", path)
    head, sep, rest = _split_head(trimmed)
    renamed = _ARGUMENT_NAMES.get(head, head) + sep + rest
    if renamed != path:
        error.details["path"] = renamed
    return error


def _split_head(path: str) -> tuple[str, str, str]:
    """``"data.n"`` → ``("data", ".", "n")``; ``"ids[2]"`` → ``("ids", "[", "2]")``."""
    match = re.search(r"[.\[]", path)
    if match is None:
        return path, "", ""
    return path[: match.start()], match.group(), path[match.end() :]


def error_entry(error: GraphQLError, document: DocumentNode | None) -> dict[str, Any]:
    """One entry of a response's ``errors`` (see the module docstring); ``document`` is the
    operation's parsed document, if it parsed (to name the argument a variable feeds)."""
    entry: dict[str, Any] = {"message": error.message}
    if error.locations:
        entry["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    if error.path:
        entry["path"] = list(error.path)
    api = api_error_of(error)
    if api is not None:
        envelope = api.to_envelope()["error"]  # always writable JSON (see to_envelope)
        entry["message"] = envelope["message"]
        extensions: dict[str, Any] = {
            "code": envelope["code"],
            "status": api.status_code,
            "details": envelope["details"],
        }
        if api.retry_after is not None:
            extensions["retryAfter"] = api.retry_after
    elif error.original_error is not None and not isinstance(error.original_error, GraphQLError):
        # A fault of ours: said once in the log, never in the answer.
        log.error("a GraphQL resolver failed", exc_info=error.original_error)
        entry["message"] = "internal server error"
        extensions = {"code": "INTERNAL_ERROR", "status": 500, "details": {}}
    else:
        extensions = _graphql_extensions(error, document)
    entry["extensions"] = extensions
    return entry


def _graphql_extensions(error: GraphQLError, document: DocumentNode | None) -> dict[str, Any]:
    """The code of an error of GraphQL itself (parse, validation, variables, limits)."""
    own = error.extensions or {}
    if "code" in own:
        return {"code": own["code"], "status": 400, "details": dict(own.get("details", {}))}
    if isinstance(error, GraphQLSyntaxError):
        code = _TOO_MANY_TOKENS if "tokens. Parsing aborted" in error.message else None
        return {"code": code or GRAPHQL_PARSE_FAILED, "status": 400, "details": {}}
    variable = _VARIABLE_RE.match(error.message)
    if variable is not None and not error.path:
        # A value of the wrong type, or a required one missing: what REST answers 422
        # for the same value, naming the argument it was meant for.
        name = variable["name"]
        argument = _argument_of(document, name) if document is not None else None
        return {
            "code": "VALIDATION_ERROR",
            "status": 422,
            "details": {"path": argument or f"${name}", "variable": name},
        }
    return {"code": GRAPHQL_VALIDATION_FAILED, "status": 400, "details": {}}


def _argument_of(document: DocumentNode, variable: str) -> str | None:
    """The name of the one argument ``$variable`` is passed to (None: none, or several
    of different names)."""
    names: set[str] = set()

    class _Find(Visitor):
        def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
            value = node.value
            if isinstance(value, VariableNode) and value.name.value == variable:
                names.add(node.name.value)

    visit(document, _Find())
    return names.pop() if len(names) == 1 else None


def coded_rule(
    rule: type[ValidationRule], code: str, details: Callable[[], dict[str, Any]] | None = None
) -> type[ValidationRule]:
    """``rule`` (a limit of Strawberry's, which reports a bare message), whose errors carry
    ``extensions.code`` = ``code`` (and ``details``), so a client can tell a refused
    document by its code as it tells every other error."""

    def coded(error: GraphQLError) -> GraphQLError:
        extra = {"details": details()} if details is not None else {}
        error.extensions = {**(error.extensions or {}), "code": code, **extra}
        return error

    class Coded(rule):  # type: ignore[valid-type,misc]
        def __init__(self, context: ValidationContext) -> None:
            report = context.report_error
            # The limits report while they are built (to the context); others while
            # they visit (report_error below): only this rule's reports are coded.
            context.report_error = lambda error: report(coded(error))  # type: ignore[method-assign]
            try:
                super().__init__(context)
            finally:
                del context.report_error

        def report_error(self, error: GraphQLError) -> None:
            super().report_error(coded(error))

    Coded.__name__ = f"Coded{rule.__name__}"
    return Coded
