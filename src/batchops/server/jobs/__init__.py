"""The job scheduler: durable chunked background jobs with live progress (see docs/jobs.md).

``runner`` (claim, lease, heartbeat, fencing, take-over of a dead process's jobs, the
worker loop; the public :class:`~batchops.server.jobs.runner.JobContext` a job kind's
handler gets, and the :class:`~batchops.server.jobs.runner.JobKinds` registry the app
builds at start), ``inputs`` (where a job's input file waits — chunk rows in the database
or files in the uploads directory — and the local copy the process running the job reads),
``schemas`` (a job's wire shape and states), ``router`` (``/v1/jobs…``: list, state,
cancel, failures, results), ``sse`` (the events stream), ``cleanup`` (the periodic deletion
of what outlived its retention, run by the processes that run jobs).

The kinds live with their capability and register themselves through the app:
``import`` (:mod:`batchops.server.imports`), ``bulk_update`` / ``bulk_delete``
(:mod:`batchops.server.bulk`), ``batch`` (:mod:`batchops.server.batch.job`). Nothing here
imports them; a job's end notifies its webhooks (:mod:`batchops.server.webhooks`) through
the registry's end hook.
"""
