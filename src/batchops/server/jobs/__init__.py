"""Bulk jobs: durable imports with live progress (see docs/jobs.md).

``router`` (HTTP), ``schemas`` (options and the job's wire shape), ``imports`` (streaming
parsers and row conversion), ``runner`` (the worker inside ``batchops serve``), ``sse``
(the events stream), ``webhooks`` (payload, signature, the outbox), ``delivery`` (the
webhook sender), ``targets`` (the SSRF guard), ``webhook_router`` (``/v1/webhooks``).
Bulk update/delete are future job types on the same table, runner and events.
"""
