"""The GraphQL schema (Strawberry): records, searches, jobs, bulk changes and batches.

Every resolver is a thin adapter: it calls the records service, the batch service, the
bulk service or the jobs' store methods that REST and ``/v1/batch`` call, so each value
is judged by the one rule that judges it everywhere (tests/parity proves the answers
alike). Root fields are nullable on purpose: a field that fails is null with its own
entry in ``errors``, and its neighbours keep their data.

- ``record``/``records`` read through the operation's loader
  (:func:`~batchops.server.graphql.context.record_loader`): any number of aliased reads
  of one tick is one store call. A missing record is null.
- Record mutations run as batches (:mod:`batchops.server.graphql.mutations`).
- ``batch`` runs exactly the ``POST /v1/batch`` contract and answers its body.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Annotated, Any, Final

import orjson
import strawberry
from graphql import (
    DirectiveLocation,
    GraphQLDirective,
    GraphQLError,
    GraphQLResolveInfo,
    NoUndefinedVariablesRule,
    NoUnusedVariablesRule,
    VariablesInAllowedPositionRule,
    print_schema,
)
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.scalars import JSON
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext, Info

from batchops._exceptions import APIError, ValidationError
from batchops.server.batch import job as batch_job
from batchops.server.batch import service as batches
from batchops.server.batch.executor import options_deadline
from batchops.server.batch.planner import plan_batch
from batchops.server.bulk.service import parse_request, submit_bulk
from batchops.server.graphql.context import OperationContext
from batchops.server.graphql.documents import CACHED_DOCUMENT_CHARS, parse_document
from batchops.server.graphql.errors import coded_rule, renamed_for_graphql
from batchops.server.graphql.mutations import ATOMIC, record_mutation, refuse_if_atomic
from batchops.server.jobs.runner import queued
from batchops.server.jobs.schemas import job_body
from batchops.server.jobs.service import jobs_page
from batchops.server.records import service
from batchops.server.settings import Settings
from batchops.server.webhooks.schemas import check_notification_target

__all__ = ["ATOMIC_DIRECTIVE", "Mutation", "Query", "build_schema", "schema_sdl"]


def _raw(info: Info[OperationContext, None]) -> GraphQLResolveInfo[Any]:
    # Strawberry's Info wraps graphql-core's; the mutation runs read the operation's
    # root fields and their argument values from it (tests/graphql_api pins both).
    return info._raw_info


def _context(info: Info[OperationContext, None]) -> OperationContext:
    return info.context


# -- types -----------------------------------------------------------------------------------


@strawberry.type(description="A record: its data and its version (bumped by every write).")
class Record:
    id: strawberry.ID
    collection: str
    data: JSON
    version: int
    created_at: str
    updated_at: str
    deleted_at: str | None = strawberry.field(
        default=None, description="Set on a soft-deleted record (read with includeDeleted)."
    )

    @classmethod
    def of(cls, body: dict[str, Any]) -> Record:
        """The record the records service answered, as its wire body."""
        return cls(
            id=strawberry.ID(body["id"]),
            collection=body["collection"],
            data=body["data"],
            version=body["version"],
            created_at=body["created_at"],
            updated_at=body["updated_at"],
            deleted_at=body.get("deleted_at"),
        )


def _record(body: Any) -> Record | None:
    return None if body is None else Record.of(body)


@strawberry.type(description="A page of live records in id order.")
class RecordPage:
    records: list[Record]
    next_cursor: str | None = strawberry.field(
        description="Pass as `cursor` for the next page; null on the last."
    )


@strawberry.type
class SearchHit:
    record: Record
    score: float


@strawberry.type(description="The best matches first, and how many records match in all.")
class SearchPage:
    results: list[SearchHit]
    total: int


@strawberry.type(description="What a deleteRecord did.")
class DeletedRecord:
    id: strawberry.ID
    collection: str
    deleted: bool
    hard: bool
    version: int


@strawberry.type(description="A job (an import, a bulk change, an async batch) and its progress.")
class Job:
    id: strawberry.ID
    type: str
    state: str
    collection: str | None
    total: int | None
    processed: int
    succeeded: int
    failed: int
    percentage: float
    eta_seconds: float | None
    attempts: int
    cancel_requested: bool
    created_at: str
    started_at: str | None
    finished_at: str | None
    error: JSON | None
    options: JSON

    @classmethod
    def of(cls, body: dict[str, Any]) -> Job:
        """The job as ``GET /v1/jobs/{id}`` shows it."""
        return cls(
            id=strawberry.ID(body["id"]),
            type=body["type"],
            state=body["state"],
            collection=body["collection"],
            total=body["total"],
            processed=body["processed"],
            succeeded=body["succeeded"],
            failed=body["failed"],
            percentage=body["percentage"],
            eta_seconds=body["eta_s"],
            attempts=body["attempts"],
            cancel_requested=bool(body["cancel_requested"]),
            created_at=body["created_at"],
            started_at=body["started_at"],
            finished_at=body["finished_at"],
            error=body["error"],
            options=body["options"],
        )


@strawberry.type(description="A page of jobs, newest first.")
class JobPage:
    jobs: list[Job]
    next_cursor: str | None = strawberry.field(
        description="Pass as `after` for the next page; null on the last."
    )


@strawberry.type(description="A bulk update: done at once (counts and ids), or queued (job).")
class BulkUpdateResult:
    dry_run: bool
    matched: int | None
    updated_count: int | None
    ids: list[strawberry.ID] | None
    job: Job | None


@strawberry.type
class BulkError:
    id: strawberry.ID
    code: str
    message: str


@strawberry.type(description="A bulk delete: done at once (counts and ids), or queued (job).")
class BulkDeleteResult:
    dry_run: bool
    soft: bool
    matched: int | None
    deleted_count: int | None
    deleted_ids: list[strawberry.ID] | None
    errors: list[BulkError]
    job: Job | None


@strawberry.type(description="The answer of POST /v1/batch, as it would be sent.")
class BatchResult:
    batch_id: str
    status: int = strawberry.field(description="200, or 207 when some operations failed.")
    committed: bool
    results: list[JSON]
    meta: JSON


# -- queries --------------------------------------------------------------------------------


@strawberry.type
class Query:
    @strawberry.field(
        description="A live record; null when there is none "
        "(`includeDeleted`: a soft-deleted one too)."
    )
    async def record(
        self,
        info: Info[OperationContext, None],
        collection: str,
        id: strawberry.ID,
        include_deleted: bool | None = None,
    ) -> Record | None:
        context = _context(info)
        if include_deleted:
            tenant = context.tenant
            try:
                body = await context.services.store.run(
                    lambda tx: service.read(tx, tenant, collection, id, include_deleted=True)
                )
            except APIError as exc:
                if exc.status_code == 404:
                    return None
                raise renamed_for_graphql(exc) from None
            return Record.of(body)
        return _record(await context.loader.load((context.tenant, collection, str(id))))

    @strawberry.field(description="Records by id, in the order asked; null for each missing one.")
    async def records(
        self, info: Info[OperationContext, None], collection: str, ids: list[strawberry.ID]
    ) -> list[Record | None] | None:
        context = _context(info)
        keys = [(context.tenant, collection, str(record_id)) for record_id in ids]
        return [_record(body) for body in await context.loader.load_many(keys)]

    @strawberry.field(
        name="list", description="A page of live records in id order, filtered on equality."
    )
    async def list_records(
        self,
        info: Info[OperationContext, None],
        collection: str,
        filters: JSON | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> RecordPage | None:
        context = _context(info)
        tenant = context.tenant
        page = await _run(
            context,
            lambda tx: service.list_records(
                tx, tenant, collection, filters=filters, limit=limit, cursor=cursor
            ),
        )
        return RecordPage(
            records=[Record.of(body) for body in page["records"]],
            next_cursor=page["next_cursor"],
        )

    @strawberry.field(description="Ranked full-text search over the string values of live records.")
    async def search(
        self,
        info: Info[OperationContext, None],
        collection: str,
        query: str,
        filters: JSON | None = None,
        limit: int | None = None,
    ) -> SearchPage | None:
        context = _context(info)
        tenant = context.tenant
        found = await _run(
            context,
            lambda tx: service.search(
                tx, tenant, collection, query=query, filters=filters, limit=limit
            ),
        )
        return SearchPage(
            results=[
                SearchHit(record=Record.of(hit["record"]), score=hit["score"])
                for hit in found["results"]
            ],
            total=found["total"],
        )

    @strawberry.field(description="One of your jobs; null when there is none.")
    async def job(self, info: Info[OperationContext, None], id: strawberry.ID) -> Job | None:
        context = _context(info)
        tenant = context.tenant
        row = await _run(context, lambda tx: tx.get_job(str(id), tenant=tenant))
        return None if row is None else Job.of(job_body(row))

    @strawberry.field(
        description="Your jobs, newest first: filter by state and type, page with `after`."
    )
    async def jobs(
        self,
        info: Info[OperationContext, None],
        state: str | None = None,
        type: str | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> JobPage | None:
        context = _context(info)
        try:  # REST's page of jobs, its errors naming the GraphQL arguments
            rows, next_cursor = await jobs_page(
                context.services,
                context.tenant,
                state=state,
                type=type,
                limit=first,
                cursor=after,
                limit_path="first",
                cursor_path="after",
            )
        except APIError as exc:
            raise renamed_for_graphql(exc) from None
        return JobPage(jobs=[Job.of(job_body(row)) for row in rows], next_cursor=next_cursor)


async def _run(context: OperationContext, fn: Any) -> Any:
    """One store call for a resolver; its APIError names the GraphQL argument."""
    try:
        return await context.services.store.run(fn)
    except APIError as exc:
        raise renamed_for_graphql(exc) from None


# -- mutations ------------------------------------------------------------------------------

_IfVersion = Annotated[
    int | None,
    strawberry.argument(
        description="Apply only if the record is at this version (else VERSION_MISMATCH)."
    ),
]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create a record (with your id, or a generated one).")
    async def create_record(
        self,
        info: Info[OperationContext, None],
        collection: str,
        data: JSON,
        id: strawberry.ID | None = None,
    ) -> Record | None:
        return Record.of(await record_mutation(_raw(info)))

    @strawberry.mutation(description="Merge-patch a record's data (RFC 7386).")
    async def update_record(
        self,
        info: Info[OperationContext, None],
        collection: str,
        id: strawberry.ID,
        data: JSON,
        if_version: _IfVersion = None,
    ) -> Record | None:
        return Record.of(await record_mutation(_raw(info)))

    @strawberry.mutation(description="Replace a record's data whole.")
    async def replace_record(
        self,
        info: Info[OperationContext, None],
        collection: str,
        id: strawberry.ID,
        data: JSON,
        if_version: _IfVersion = None,
    ) -> Record | None:
        return Record.of(await record_mutation(_raw(info)))

    @strawberry.mutation(description="Delete a record: soft unless `hard`.")
    async def delete_record(
        self,
        info: Info[OperationContext, None],
        collection: str,
        id: strawberry.ID,
        hard: bool | None = None,
        if_version: _IfVersion = None,
    ) -> DeletedRecord | None:
        body = await record_mutation(_raw(info))
        return DeletedRecord(
            id=strawberry.ID(body["id"]),
            collection=body["collection"],
            deleted=body["deleted"],
            hard=body["hard"],
            version=body["version"],
        )

    @strawberry.mutation(description="Bring a soft-deleted record back.")
    async def restore_record(
        self,
        info: Info[OperationContext, None],
        collection: str,
        id: strawberry.ID,
        if_version: _IfVersion = None,
    ) -> Record | None:
        return Record.of(await record_mutation(_raw(info)))

    @strawberry.mutation(
        description="Merge-patch every live record matching `filter`: at once when few "
        "enough match (the server's inline limit), else as a job."
    )
    async def bulk_update(
        self,
        info: Info[OperationContext, None],
        collection: str,
        filter: JSON,
        update: JSON,
        dry_run: bool | None = None,
        limit: int | None = None,
    ) -> BulkUpdateResult | None:
        refuse_if_atomic(_raw(info))
        body = _present(
            collection=collection, filter=filter, update=update, dry_run=dry_run, limit=limit
        )
        answer, job = await _bulk(_context(info), "update", body)
        if job is not None:
            return BulkUpdateResult(
                dry_run=bool(dry_run), matched=None, updated_count=None, ids=None, job=job
            )
        return BulkUpdateResult(
            dry_run=answer["dry_run"],
            matched=answer["matched"],
            updated_count=answer["updated"],
            ids=[strawberry.ID(i) for i in answer["ids"]],
            job=None,
        )

    @strawberry.mutation(
        description="Delete the live records matching `filter`, or those of `ids`: at once "
        "when few enough, else as a job. Soft unless `soft: false`."
    )
    async def bulk_delete(
        self,
        info: Info[OperationContext, None],
        collection: str,
        filter: JSON | None = None,
        ids: list[strawberry.ID] | None = None,
        soft: bool | None = None,
        dry_run: bool | None = None,
        limit: int | None = None,
    ) -> BulkDeleteResult | None:
        refuse_if_atomic(_raw(info))
        body = _present(
            collection=collection,
            filter=filter,
            ids=None if ids is None else [str(i) for i in ids],
            soft=soft,
            dry_run=dry_run,
            limit=limit,
        )
        answer, job = await _bulk(_context(info), "delete", body)
        if job is not None:
            return BulkDeleteResult(
                dry_run=bool(dry_run),
                soft=soft is not False,
                matched=None,
                deleted_count=None,
                deleted_ids=None,
                errors=[],
                job=job,
            )
        return BulkDeleteResult(
            dry_run=answer["dry_run"],
            soft=answer["soft"],
            matched=answer["matched"],
            deleted_count=answer["deleted"],
            deleted_ids=[strawberry.ID(i) for i in answer["ids"]],
            errors=[
                BulkError(
                    id=strawberry.ID(i),
                    code="NOT_FOUND",
                    message=f"no live record {i!r} in collection {collection!r}",
                )
                for i in answer["not_found"]
            ],
            job=None,
        )

    @strawberry.mutation(
        description="Run a batch exactly as POST /v1/batch does (both dialects, references, "
        "depends_on, atomic and atomicity groups, validate_only) and answer its body. "
        "`atomic: true` is `options.atomic`."
    )
    async def batch(
        self,
        info: Info[OperationContext, None],
        operations: list[JSON],
        options: JSON | None = None,
        atomic: bool | None = None,
    ) -> BatchResult | None:
        refuse_if_atomic(_raw(info))
        context = _context(info)
        request: dict[str, Any] = {"operations": operations}
        if options is not None:
            request["options"] = options
        if atomic is not None:
            if options is not None and not isinstance(options, dict):
                raise ValidationError("options must be an object", details={"path": "options"})
            request["options"] = {**(options or {}), "atomic": atomic}
        answer = await _run_batch(context, json.dumps(request).encode())
        # The JSON /v1/batch would send (a run of creates is spliced from stored texts).
        body = orjson.loads(answer.data)
        return BatchResult(
            batch_id=body["batch_id"],
            status=answer.status,
            committed=body["committed"],
            results=body["results"],
            meta=body["meta"],
        )


def _present(**fields: Any) -> dict[str, Any]:
    """A REST body of the arguments given (null is not given)."""
    return {name: value for name, value in fields.items() if value is not None}


async def _bulk(
    context: OperationContext, operation: str, body: dict[str, Any]
) -> tuple[dict[str, Any], Job | None]:
    """``POST /v1/bulk/{operation}`` with ``body``: the bulk service's answer, or its job."""
    svc = context.services
    collection, options, ids, hook = parse_request(operation, body)  # type: ignore[arg-type]
    if hook is not None:
        await check_notification_target(hook, allow_private=svc.settings.allow_private_webhooks)
    tenant = context.tenant
    inline_max = svc.settings.bulk_inline_max
    answer, row = await svc.store.run(
        lambda tx: submit_bulk(
            tx, tenant, collection, options, ids, inline_max=inline_max, hook=hook
        ),
        retries=3,
    )
    if row is None:
        return answer, None
    queued(svc.jobs, row)
    return answer, Job.of(job_body(row))


async def _run_batch(context: OperationContext, body: bytes) -> batches.Answer:
    """The synchronous ``POST /v1/batch`` for ``body``: planned, charged to the key's
    operations budget, checked or run (no Idempotency-Key, no stream, no job)."""
    svc = context.services
    settings = svc.settings
    started = time.perf_counter()
    plan = plan_batch(body, max_operations=settings.max_batch_operations)
    if plan.notification_webhook is not None:
        # A batch answered at once makes no job: the webhook's own 400 says so.
        await batch_job.notification_webhook(svc, plan, run_async=False)
    await svc.limiter.hit_operations(context.caller.key_id, plan.count)
    if plan.options.validate_only:
        return batches.validated(context.batch_id, plan, started)
    return await batches.run_whole(
        svc.store,
        context.tenant,
        plan,
        batch_id=context.batch_id,
        started=started,
        deadline=options_deadline(plan.options, settings.batch_timeout_ms),
    )


# -- the schema -----------------------------------------------------------------------------


ATOMIC_DIRECTIVE = GraphQLDirective(
    ATOMIC,
    locations=[DirectiveLocation.MUTATION],
    description="All or nothing: every record mutation of the operation is applied, or none.",
)
"""``mutation @atomic { … }`` (read by :mod:`batchops.server.graphql.mutations`). Declared
on graphql-core's schema, not as a Strawberry directive: Strawberry runs every field of
every operation through an async middleware once the schema has a directive of its own,
which measured ~40% of a 100-field query's execution."""


class _ParsedOnce(SchemaExtension):
    """The document the endpoint parsed (:func:`~batchops.server.graphql.documents.
    parse_document`, with its cache), never parsed again; parsed here only when the
    endpoint could not (its syntax error is then the answer) or for a caller without one."""

    def on_parse(self) -> Iterator[None]:
        context: ExecutionContext = self.execution_context
        assert context.query is not None
        operation = context.context
        parsed = operation.document if isinstance(operation, OperationContext) else None
        context.graphql_document = (
            parsed
            if parsed is not None
            else parse_document(context.query, context.parse_options.get("max_tokens"))
        )
        yield


_VARIABLE_RULES: Final = frozenset(
    {NoUndefinedVariablesRule, NoUnusedVariablesRule, VariablesInAllowedPositionRule}
)
"""Rules about variables: each walks the whole document again per operation (a third of
the validation of a 100-field document, measured), and none can fail a document with no
``$`` in it."""


class _CachedValidation(SchemaExtension):
    """Validation (the spec's rules and the limits' rules, which the extensions before this
    one added) once per document text: a client sending the same document with other
    variables — or the same 100 aliased reads again — is not validated again.

    graphql-core validates at ~20 µs per node of the document (every rule walks it), ~50 ms
    for 100 aliased ``record`` fields, against ~1 ms to run them; without this the aliased
    document would be far slower than ``/v1/batch``. Documents past
    :data:`~batchops.server.graphql.documents.CACHED_DOCUMENT_CHARS` are never cached
    (the cache's memory stays bounded); nor is a document that failed validation."""

    def on_validate(self) -> Iterator[None]:
        context: ExecutionContext = self.execution_context
        query, document = context.query, context.graphql_document
        assert query is not None
        assert document is not None
        schema = context.schema
        cache: dict[str, list[GraphQLError]] = getattr(schema, "_validated", {})
        errors = cache.get(query)
        if errors is None:
            rules = context.validation_rules
            if "$" not in query:
                rules = tuple(rule for rule in rules if rule not in _VARIABLE_RULES)
            errors = validate_document(schema._schema, document, rules)
            if not errors and len(query) <= CACHED_DOCUMENT_CHARS:
                if len(cache) >= _VALIDATED_MAX:
                    cache.pop(next(iter(cache)))  # the oldest: a bounded FIFO
                cache[query] = errors
        context.pre_execution_errors = errors
        yield


_VALIDATED_MAX: Final = 256


class _Schema(strawberry.Schema):
    _validated: dict[str, list[GraphQLError]]

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # A client's mistake (an APIError, a GraphQL error of its document) is its answer,
        # not a log line; the faults of ours are logged where they are answered
        # (batchops.server.graphql.errors.error_entry).
        del errors, execution_context


def build_schema(settings: Settings) -> strawberry.Schema:
    """The schema with the server's GraphQL limits (depth, aliases, tokens) and, unless
    turned off, introspection."""
    depth, aliases = settings.graphql_max_depth, settings.graphql_max_aliases
    tokens = settings.graphql_max_tokens
    # Factories, not instances: Strawberry builds each extension anew for every operation.
    extensions: list[Any] = [
        lambda: MaxTokensLimiter(max_token_count=tokens),
        _ParsedOnce,
        lambda: _coded(QueryDepthLimiter(max_depth=depth), "QUERY_TOO_DEEP", {"limit": depth}),
        lambda: _coded(
            MaxAliasesLimiter(max_alias_count=aliases), "TOO_MANY_ALIASES", {"limit": aliases}
        ),
    ]
    if not settings.graphql_introspection:
        extensions.append(lambda: _coded(DisableIntrospection(), "INTROSPECTION_DISABLED", {}))
    extensions.append(_CachedValidation)  # last: after every limit added its rules
    schema = _Schema(query=Query, mutation=Mutation, extensions=extensions)
    schema._validated = {}
    core = schema._schema
    core.directives = (*core.directives, ATOMIC_DIRECTIVE)
    return schema


def _coded(limit: Any, code: str, details: dict[str, Any]) -> Any:
    """A Strawberry limit (an AddValidationRules) whose errors carry ``code``."""
    limit.validation_rules = [
        coded_rule(rule, code, lambda: dict(details)) for rule in limit.validation_rules
    ]
    return limit


def schema_sdl() -> str:
    """The schema in SDL, as docs/schema.graphql holds it (a test keeps them equal)::

        python -c "from batchops.server.graphql.schema import schema_sdl; \\
            print(schema_sdl(), end='')" > docs/schema.graphql
    """
    return print_schema(build_schema(Settings())._schema) + "\n"
