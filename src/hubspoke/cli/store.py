"""Opening the journal and finding a run in it by id or unique prefix."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from hubspoke.cli.config import DbPath
from hubspoke.cli.failures import UsageError
from hubspoke.errors import JournalTooNew, RunNotFound, StoreUnavailable
from hubspoke.journal import RunRecord, SQLiteStore
from hubspoke.journal.location import AnyStore

__all__ = ["find_run", "open_store"]


@contextmanager
def open_store(db: DbPath, *, create: bool = False, read_only: bool = False) -> Iterator[AnyStore]:
    """Open the journal at `db` (an SQLite file or a PostgreSQL database); close it on the way
    out.

    Args:
        db: the resolved location.
        create: make the file if it is missing (commands that start runs). Commands that only
            read refuse a missing file rather than leave an empty journal behind.
        read_only: open it for reading only (commands that only read): nothing is written, so a
            journal the user cannot write can still be read.

    Raises:
        UsageError: the file is missing (when reading) or is not a hubspoke journal; the
            PostgreSQL server is unreachable, refused the login, or (when reading) holds no
            journal; the postgres extra is not installed.
    """
    if create and read_only:
        raise ValueError("a journal opened read-only cannot be created")
    if db.url is not None:
        yield from _open_postgres(db, read_only=read_only)
        return
    if not create and not db.path.exists():
        raise UsageError(
            f"no journal at {db.describe()}. Start a run first (e.g. `hubspoke demo sales`), "
            "or point --db or $HUBSPOKE_DB at the journal file."
        )
    try:
        store = SQLiteStore(db.path, read_only=read_only)
    except sqlite3.Error as e:
        raise UsageError(
            f"cannot open the journal {db.describe()}: {e}. Check that --db names a hubspoke "
            "journal (an SQLite file written by hubspoke)."
        ) from None
    except (OSError, JournalTooNew) as e:
        raise UsageError(f"cannot open the journal {db.describe()}: {e}") from None
    try:
        yield store
    finally:
        store.close()


def _open_postgres(db: DbPath, *, read_only: bool) -> Iterator[AnyStore]:
    assert db.url is not None
    try:
        from hubspoke.journal.postgres import PostgresStore
    except ImportError as e:
        raise UsageError(f"cannot open the journal {db.describe()}: {e}") from None
    try:
        store = PostgresStore(db.url, read_only=read_only)
    except (StoreUnavailable, JournalTooNew) as e:
        raise UsageError(f"{e} ({db.describe()})") from None
    try:
        yield store
    finally:
        store.close()


def find_run(store: AnyStore, text: str) -> RunRecord:
    """The run whose id is `text`, or the only run whose id starts with it.

    Raises:
        RunNotFound: no run matches.
        UsageError: the prefix matches several runs.
    """
    record = store.run(text)
    if record is not None:
        return record
    matches = store.find_runs(text)  # a literal prefix: '_' and '%' are no wildcards
    if not matches:
        raise RunNotFound(f"no run {text!r} in the journal at {store.path}")
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise UsageError(
            f"{text!r} matches {len(matches)} runs ({shown}); give more of the run id."
        )
    found = store.run(matches[0])
    if found is None:  # deleted between the two reads
        raise RunNotFound(f"no run {text!r} in the journal at {store.path}")
    return found
