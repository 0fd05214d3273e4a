"""Bulk update and delete by filter (or ids): ``service`` (the request, the inline answer in
one transaction), ``job`` (the ``bulk_update`` / ``bulk_delete`` job kind for larger
selections, and its results), ``router`` (``POST /v1/bulk/update``, ``/v1/bulk/delete``).
"""
