"""Retrying an import's failed rows: a finished import's failures become the upload of a
NEW import job, same collection and options (what Salesforce Bulk API users do by hand:
download the failures, fix or not, upload them again).

The rule lives here, once: the REST route (``POST /v1/jobs/{id}/retry-failures``, in
:mod:`batchops.server.imports.router`), the web console and any other front end call
:func:`retry_failures`.

A failure's ``input`` is its row as text (:func:`batchops.server.imports.rows.input_text`):
a CSV data line without the header, or the JSON text of an NDJSON line or a JSON-array
item. The new upload is that text again, in the source's format: for CSV the header kept
with the job's options at upload (``ImportOptions.header``) and then the failed lines; for
NDJSON one line each; for a JSON array an array of them. It is stored through the same
:class:`~batchops.server.jobs.inputs.InputWriter` as an upload, so it works with either
upload storage, and the job's row commits with it or not at all.

Some failures do not hold the row as it was, and are **skipped** rather than retried with
other data than the file had (:func:`retryable` says which; their number is in the new
job's ``options.retry_skipped``). When nothing is left to retry the answer is
``409 NO_FAILURES``.
"""

from __future__ import annotations

import re

from batchops._exceptions import ConflictError
from batchops.server import _ids
from batchops.server._ids import is_id
from batchops.server.deps import Services
from batchops.server.imports.options import ImportOptions
from batchops.server.imports.rows import Format, csv_line
from batchops.server.jobs.inputs import InputWriter
from batchops.server.jobs.runner import queued
from batchops.server.jobs.schemas import TERMINAL_STATES, job_not_found
from batchops.store.base import JobFailureRow, JobRow, Tx

__all__ = ["retry_failures", "retryable"]

_BLOCK = 1 << 20  # bytes handed to the writer at a time, as an upload's (~1 MiB)
_PAGE = 1000  # failures read per store call
# What input_text writes for a JSON value that cannot be shown as JSON.
_NOT_JSON = re.compile(r"\(an? [A-Za-z_][A-Za-z0-9_]* that cannot be shown as JSON\)")


def retryable(failure: JobFailureRow, fmt: Format) -> bool:
    """Whether ``failure``'s input is its row as the file had it, so that uploading it
    again retries that row. Not so, and skipped:

    - ``UNTERMINATED_QUOTE``: its input is the rest of the file from the broken row, cut
      to 1,024 characters;
    - CSV: an input holding ``\\u0000``: the row held a NUL, written as those six
      characters (a NUL cannot be stored), which retrying would import as text;
    - JSON: a value that could not be shown as JSON (``input`` is a placeholder), and an
      ``INVALID_JSON`` line holding U+FFFD: its bytes that were not UTF-8 were replaced.
    """
    if failure.code == "UNTERMINATED_QUOTE":
        return False
    if fmt == "csv":
        return "\\u0000" not in failure.input
    if _NOT_JSON.fullmatch(failure.input):
        return False
    return not (failure.code == "INVALID_JSON" and "\ufffd" in failure.input)


def _source_error(job: JobRow) -> ConflictError | None:
    """Why ``job``'s failures cannot be retried (409), or None."""
    if job.type != "import":
        return ConflictError(
            f"job {job.id!r} is a {job.type} job; only an import's failed rows can be retried",
            code="NOT_AN_IMPORT",
            details={"id": job.id, "type": job.type},
        )
    if job.state not in TERMINAL_STATES:
        return ConflictError(
            f"job {job.id!r} has not finished ({job.state}); retry its failures when it ends",
            code="JOB_NOT_FINISHED",
            details={"id": job.id, "state": job.state},
            retry_after=1.0,
        )
    options = ImportOptions.from_dict(job.options)
    if options.format == "csv" and options.header is None:
        return ConflictError(
            f"job {job.id!r} was uploaded before the server kept a CSV import's header, "
            "so its failed lines cannot be uploaded again; download them "
            f"(GET /v1/jobs/{job.id}/failures?format=csv) and upload them under the header",
            code="CSV_HEADER_UNKNOWN",
            details={"id": job.id},
        )
    return None


class _Upload:
    """The new upload, written to ``writer`` in blocks of ~1 MiB."""

    def __init__(self, writer: InputWriter) -> None:
        self.writer = writer
        self.buffer = bytearray()

    async def add(self, text: str) -> None:
        self.buffer += text.encode()
        if len(self.buffer) >= _BLOCK:
            await self.flush()

    async def flush(self) -> None:
        if self.buffer:
            block, self.buffer = self.buffer, bytearray()  # (the writer keeps the block)
            await self.writer.write(block)


async def _write_rows(
    svc: Services, job: JobRow, options: ImportOptions, upload: _Upload
) -> tuple[int, int]:
    """The source's retryable failures, in row order, as the new upload's rows: how many
    were written and how many skipped."""
    written = skipped = 0
    after = 0
    if options.format == "csv":
        assert options.header is not None
        await upload.add(csv_line(options.header) + "\n")
    elif options.format == "json":
        await upload.add("[\n")
    while True:
        page = await svc.store.run(
            lambda tx, a=after: tx.list_job_failures(job.id, after_row=a, limit=_PAGE)  # type: ignore[misc]
        )
        if not page:
            break
        for failure in page:
            if not retryable(failure, options.format):
                skipped += 1
                continue
            separator = ",\n" if options.format == "json" and written else ""
            end = "" if options.format == "json" else "\n"
            await upload.add(separator + failure.input + end)
            written += 1
        after = page[-1].row_number
    if options.format == "json":
        await upload.add("\n]\n")
    await upload.flush()
    return written, skipped


async def retry_failures(svc: Services, tenant: str, job_id: str) -> JobRow:
    """Queue a new import of the failed rows of the finished import ``job_id`` of
    ``tenant``: the same collection and options (format, validation, dry_run, upsert_key,
    chunk_size, mapping; the source's own ``notification_webhook`` is not carried over),
    its upload the failures' inputs in row order (see the module docstring). The new job,
    queued, with ``options.retry_of`` = ``job_id`` and ``options.retry_skipped`` = the
    failures skipped (:func:`retryable`).

    404 ``JOB_NOT_FOUND`` (unknown, or another tenant's); 409 ``NOT_AN_IMPORT``,
    ``JOB_NOT_FINISHED`` (with Retry-After), ``CSV_HEADER_UNKNOWN`` (a CSV job uploaded
    before the header was kept), ``NO_FAILURES`` (none, or none retryable).
    """
    if not is_id(job_id):
        raise job_not_found(job_id)
    source = await svc.store.run(lambda tx: tx.get_job(job_id, tenant=tenant))
    if source is None:
        raise job_not_found(job_id)
    problem = _source_error(source)
    if problem is not None:
        raise problem
    options = ImportOptions.from_dict(source.options)
    new_id = _ids.new_record_id()
    writer = svc.inputs.receive(new_id)
    try:
        written, skipped = await _write_rows(svc, source, options, _Upload(writer))
        await writer.finish()
        if not written:
            raise ConflictError(
                f"job {job_id!r} has no failed rows to retry"
                + (
                    f" ({skipped} cannot be retried: their input is not the row)" if skipped else ""
                ),
                code="NO_FAILURES",
                details={"id": job_id, "failed": source.failed, "skipped": skipped},
            )
        stored = ImportOptions(
            format=options.format,
            validation=options.validation,
            dry_run=options.dry_run,
            upsert_key=options.upsert_key,
            chunk_size=options.chunk_size,
            mapping=options.mapping,
            bytes=writer.size,
            header=options.header,
        )
        job = JobRow(
            id=new_id,
            tenant=tenant,
            type="import",
            state="queued",
            collection=source.collection,
            options={**stored.to_dict(), "retry_of": job_id, "retry_skipped": skipped},
            created_at=_ids.now_iso(),
            revision=1,
        )

        def insert(tx: Tx) -> None:
            tx.insert_job(job)

        # The job's row commits with its upload made whole and visible, or not at all.
        await writer.publish(insert)
    except BaseException:
        await writer.abort()
        raise
    queued(svc.jobs, job)
    return job
