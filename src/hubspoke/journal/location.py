"""Where a store lives: an SQLite file, or a PostgreSQL database named by a URL.

`open_store` opens either from one string, as ``--db`` and ``HUBSPOKE_DB`` name them;
`redact_url` is the URL as it may be printed or journaled (its password never is). Nothing
here imports psycopg: the Postgres store is loaded only when a URL is opened.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from hubspoke.journal.urls import POSTGRES_SCHEMES, is_postgres_url, redact_url

if TYPE_CHECKING:
    from hubspoke.journal.postgres import PostgresStore
    from hubspoke.journal.sqlite import SQLiteStore

__all__ = [
    "POSTGRES_SCHEMES",
    "AnyStore",
    "backend_errors",
    "is_postgres_url",
    "open_store",
    "redact_url",
]

AnyStore: TypeAlias = "SQLiteStore | PostgresStore"
"""A store `open_store` opens: both offer, beyond `Store`, `path` (for messages),
`events(run_id, after=)` and `artifact(id)`."""


def open_store(
    location: str | os.PathLike[str], *, read_only: bool = False
) -> SQLiteStore | PostgresStore:
    """Open the store at `location`: a PostgreSQL URL, or else an SQLite file path.

    Args:
        location: ``postgresql://user:password@host:port/database`` (or ``postgres://``), or
            the path of an SQLite journal (``":memory:"`` too).
        read_only: open for reading only (see `SQLiteStore` and `PostgresStore`).

    Returns:
        A `PostgresStore` for a URL, an `SQLiteStore` otherwise.

    Raises:
        ImportError: a URL, and the ``hubspoke[postgres]`` extra (psycopg) is not installed.
        StoreUnavailable: the PostgreSQL server cannot be reached or refused the login.
        JournalTooNew: the store was written by a newer hubspoke.
    """
    if is_postgres_url(location):
        from hubspoke.journal.postgres import PostgresStore

        return PostgresStore(str(location).strip(), read_only=read_only)
    from hubspoke.journal.sqlite import SQLiteStore

    return SQLiteStore(Path(location), read_only=read_only)


def refusal_reason(error: BaseException) -> str:
    """What a refused write says, for a message: a `JournalWriteError`'s cause (the store's
    own error, e.g. ``disk I/O error``) when it has one, else the error itself."""
    from hubspoke.errors import JournalWriteError

    if isinstance(error, JournalWriteError) and error.__cause__ is not None:
        return str(error.__cause__)
    return str(error)


def backend_errors() -> tuple[type[Exception], ...]:
    """The exception classes of the storage engines in use (``sqlite3.Error``, and
    ``psycopg.Error`` once psycopg is loaded), for callers that turn them into messages."""
    import sqlite3

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None:
        errors += (psycopg.Error,)
    return errors
