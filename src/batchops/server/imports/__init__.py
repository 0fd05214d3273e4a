"""Imports: a CSV, NDJSON or JSON file uploaded to ``POST /v1/imports`` becomes an
``import`` job that writes its rows into a collection, chunk by chunk (see docs/jobs.md).

Reading, the file never whole: ``rows`` (a row as read, its errors), ``csv_rows`` and
``json_rows`` (the parsers), ``read`` (a file as rows and chunks). Judging:
``convert`` (a row into record data), ``check`` (what the import would still refuse; the
strict first pass). Running: ``options`` (checked at upload), ``uploads`` (the body
streamed to the job's inputs, :mod:`batchops.server.jobs.inputs`), ``router`` (the route;
``openapi``, what the OpenAPI document says of it), ``job`` (the job kind), ``prepare``
(the worker process that prepares plain creates ahead of the writer).
"""
