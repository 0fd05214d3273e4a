"""Webhooks of jobs: a tenant's subscriptions and a job's own ``notification_webhook``.

``schemas`` (what a webhook is, how requests name one, how the API shows them),
``targets`` (the SSRF guard: public addresses only), ``signing`` (HMAC signature, retry
backoff), ``outbox`` (deliveries queued in the job's terminal transaction), ``delivery``
(the sender inside ``batchops serve``), ``router`` (``/v1/webhooks…`` and a job's
deliveries).
"""
