"""Store URLs: which backend a URL names and what to hand its driver."""

from __future__ import annotations

import os

from batchops.store.base import Dialect

__all__ = ["DEFAULT_SQLITE_PATH", "parse_store_url", "sqlite_url"]

#: The embedded default: a SQLite file in the working directory.
DEFAULT_SQLITE_PATH = "batchops.db"


def parse_store_url(url: str | None) -> tuple[Dialect, str]:
    """Split a store URL into its dialect and the driver's target.

    - ``None`` → SQLite file ``batchops.db`` in the working directory
    - ``sqlite:///relative.db``, ``sqlite:////abs/path.db`` or a bare path → SQLite file
    - ``postgresql://…`` / ``postgres://…`` / ``postgresql+psycopg://…`` → PostgreSQL
      (the target is a libpq URL for psycopg)

    >>> parse_store_url("sqlite:////tmp/x.db")
    ('sqlite', '/tmp/x.db')
    """
    if url is None or not url.strip():
        return "sqlite", DEFAULT_SQLITE_PATH
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql", "postgresql://" + url[len(prefix) :]
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
    elif url.startswith("sqlite://"):
        raise ValueError(f"SQLite URL {url!r} needs three slashes: sqlite:///path/to/file.db")
    elif "://" in url:
        raise ValueError(
            f"unsupported store URL {url!r}: use sqlite:///path.db, a file path, "
            "or postgresql://user@host/db"
        )
    else:
        path = url
    if not path or path == ":memory:":
        # Every run() uses one connection in one thread, but migrations open another:
        # an in-memory database would be a different, empty database for each.
        raise ValueError("the SQLite store needs a file path, not an in-memory database")
    return "sqlite", path


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The store URL of a SQLite file (absolute), e.g. for tests and server settings."""
    return "sqlite:///" + os.path.abspath(os.fspath(path))
