"""Receiving an import's file: the raw request body, or the ``file`` part of a
``multipart/form-data`` body, streamed to where the job's inputs are kept as it arrives
(never held whole in memory).

Both shapes go through :func:`receive_upload`: one loop over
:func:`batchops.server.http.iter_body` (so one byte limit and one gzip path), one buffer
that hands ~1 MiB blocks to an :class:`UploadSink` (a
:class:`~batchops.server.jobs.inputs.InputWriter`: chunk rows in the database, or a file).
A multipart body is parsed as it streams by python-multipart's push parser; its text parts
(the import's options) are kept, small and bounded, for the caller.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request

from batchops._exceptions import InvalidRequestError
from batchops.server.http import iter_body

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = [
    "FILE_FIELD",
    "MAX_FIELD_BYTES",
    "Upload",
    "UploadSink",
    "is_multipart",
    "receive_upload",
]

FILE_FIELD = "file"
"""The name of the multipart part that carries the file."""
MAX_FIELD_BYTES = 64 * 1024
"""The largest multipart text field: fields are held in memory, unlike the file."""
_WRITE_BUFFER = 1 << 20  # (CHUNK_BYTES of batchops.server.jobs.inputs)
_MULTIPART_CODE = "INVALID_MULTIPART"


class UploadSink(Protocol):
    """Where the file's bytes go (a :class:`~batchops.server.jobs.inputs.InputWriter`)."""

    async def write(self, block: bytes | bytearray) -> None:
        """Store the next block (the sink keeps it: it is not changed afterwards)."""
        ...


@dataclass(frozen=True, slots=True)
class Upload:
    """What arrived with the stored file.

    ``content_type`` is the file's own media type: the request's for a raw body, the file
    part's for a multipart one (``""`` when the part has none). ``fields`` are the
    multipart text fields, decoded as UTF-8 (empty for a raw body).
    """

    size: int
    content_type: str
    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


def is_multipart(content_type: str) -> bool:
    """Whether a ``Content-Type`` announces ``multipart/form-data``."""
    return content_type.split(";", 1)[0].strip().lower() == "multipart/form-data"


async def receive_upload(
    request: Request, sink: UploadSink, *, max_bytes: int, fields: Collection[str] = ()
) -> Upload:
    """Stream the request's file to ``sink`` and tell what came with it.

    A ``multipart/form-data`` body must hold exactly one part named ``file`` and, besides
    it, only text parts named in ``fields`` (each at most once); anything else, or a
    malformed body, is a 400 ``INVALID_MULTIPART`` naming the part in ``details.path``.
    ``max_bytes`` bounds the whole body (413 ``UPLOAD_TOO_LARGE``), gunzipped if it is
    gzip. ``sink`` may be left half written on error: the caller aborts it.
    """
    content_type = request.headers.get("content-type", "")
    spool = _Spool(sink)
    form = _Form(content_type, spool, fields) if is_multipart(content_type) else None
    async for chunk in iter_body(
        request, max_bytes=max_bytes, what="upload", code="UPLOAD_TOO_LARGE"
    ):
        if form is None:
            spool.add(chunk)
        else:
            form.feed(chunk)
        await spool.flush()
    if form is not None:
        form.finish()
    await spool.flush(force=True)
    if form is None:
        return Upload(size=spool.size, content_type=content_type)
    return Upload(
        size=spool.size,
        content_type=form.file_content_type,
        filename=form.filename,
        fields=form.fields,
    )


class _Spool:
    """File bytes on their way to the sink, handed over in blocks of 1 MiB (the last one
    smaller; the sink stores one while the next one fills here), so memory stays bounded
    and a stored upload is made of chunks of one size, however the body arrived."""

    def __init__(self, sink: UploadSink) -> None:
        self.sink = sink
        self.buffer = bytearray()
        self.size = 0

    def add(self, data: bytes | memoryview) -> None:
        self.buffer += data
        self.size += len(data)

    async def flush(self, *, force: bool = False) -> None:
        while len(self.buffer) >= _WRITE_BUFFER:
            block = self.buffer[:_WRITE_BUFFER]
            del self.buffer[:_WRITE_BUFFER]  # (O(1): a bytearray drops its head in place)
            await self.sink.write(block)
        if force and self.buffer:
            # The last block: hand the buffer itself over (no copy).
            block, self.buffer = self.buffer, bytearray()
            await self.sink.write(block)


def _invalid(message: str, path: str, **details: str) -> InvalidRequestError:
    return InvalidRequestError(message, code=_MULTIPART_CODE, details={"path": path, **details})


class _Form:
    """A push-parsed ``multipart/form-data`` body: the file part's bytes go to the spool
    as they are parsed, text parts are collected (bounded by :data:`MAX_FIELD_BYTES`)."""

    def __init__(self, content_type: str, spool: _Spool, names: Collection[str]) -> None:
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise _invalid(
                "a multipart/form-data body needs a boundary in its Content-Type",
                "",
                content_type=content_type,
            )
        self.spool = spool
        self.names = frozenset(names)
        self.fields: dict[str, str] = {}
        self.file_content_type = ""
        self.filename: str | None = None
        self.ended = False
        self._file_seen = False
        self._in_file = False
        self._name = ""
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        callbacks: MultipartCallbacks = {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }
        try:
            self.parser = MultipartParser(boundary, callbacks)
        except FormParserError as exc:
            raise _invalid(f"the multipart boundary is not usable: {exc}", "") from exc

    def feed(self, chunk: bytes) -> None:
        """Parse the next piece of the body (the callbacks below run inside)."""
        if self.ended:
            return  # an epilogue after the closing boundary carries nothing
        try:
            self.parser.write(chunk)
        except FormParserError as exc:
            raise _invalid(f"the multipart body is malformed: {exc}", "") from exc

    def finish(self) -> None:
        """At the end of the body: 400 unless it was complete and held the file."""
        if not self.ended:
            raise _invalid("the multipart body ends before its closing boundary", "")
        if not self._file_seen:
            raise _invalid(
                f"the multipart body has no part named {FILE_FIELD!r} (the file to import)",
                FILE_FIELD,
            )

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[bytes(self._header_name).strip().lower()] = bytes(self._header_value)
        self._header_name, self._header_value = bytearray(), bytearray()

    def _on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self._headers.get(b"content-disposition"))
        raw_name = params.get(b"name")
        if disposition != b"form-data" or raw_name is None:
            raise _invalid(
                "every multipart part needs 'Content-Disposition: form-data; name=\"…\"'", ""
            )
        # RFC 7578 names are UTF-8; a name that is not will match nothing and be refused.
        name = raw_name.decode("utf-8", "replace")
        raw_filename = params.get(b"filename")
        if name == FILE_FIELD:
            if self._file_seen:
                raise _invalid(f"more than one part is named {FILE_FIELD!r}", FILE_FIELD)
            self._file_seen = self._in_file = True
            self.file_content_type = self._headers.get(b"content-type", b"").decode("latin-1")
            if raw_filename is not None:
                self.filename = raw_filename.decode("utf-8", "replace")
            return
        if raw_filename is not None:
            raise _invalid(
                f"the file goes in the part named {FILE_FIELD!r}, not {name!r}; "
                "only one file can be imported at a time",
                name,
            )
        if name not in self.names:
            raise _invalid(
                f"unknown form field {name!r}; the fields are {FILE_FIELD}, "
                + ", ".join(sorted(self.names)),
                name,
            )
        if name in self.fields:
            raise _invalid(f"the form field {name!r} is given more than once", name)
        self._in_file = False
        self._name = name
        self._value = bytearray()

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.spool.add(memoryview(data)[start:end])
            return
        if len(self._value) + end - start > MAX_FIELD_BYTES:
            raise _invalid(
                f"the form field {self._name!r} is longer than {MAX_FIELD_BYTES} bytes",
                self._name,
            )
        self._value += data[start:end]

    def _on_part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            return
        try:
            self.fields[self._name] = self._value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _invalid(f"the form field {self._name!r} is not UTF-8", self._name) from exc

    def _on_end(self) -> None:
        self.ended = True
