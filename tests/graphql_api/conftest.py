"""The GraphQL tests run on the service fixtures of tests/server: the real app with its
lifespan on both backends (``db_url`` is parametrised ``sqlite`` / ``postgresql``), a
fresh tenant per test."""

from tests.server.conftest import db_url, service, settings

__all__ = ["db_url", "service", "settings"]
