"""Which journal the CLI reads and writes: `--db`, else `HUBSPOKE_DB`, else `./hubspoke.db`.

Either names an SQLite file or a PostgreSQL database (``postgresql://...``, ``postgres://...``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hubspoke.journal.location import is_postgres_url, redact_url

__all__ = ["DB_ENV", "DEFAULT_DB", "DbPath", "resolve_db"]

DB_ENV = "HUBSPOKE_DB"
"""Environment variable naming the journal when `--db` is not given."""
DEFAULT_DB = Path("hubspoke.db")
"""The journal used when neither `--db` nor `HUBSPOKE_DB` says otherwise (relative to cwd)."""


@dataclass(frozen=True, slots=True)
class DbPath:
    """A journal's path and where the choice came from (for messages and hints)."""

    path: Path
    """The SQLite file (unused when `url` is set)."""
    source: str
    """``"--db"``, ``"HUBSPOKE_DB"`` or ``"default"``."""
    url: str | None = None
    """A PostgreSQL URL, password included: open it, never print it (`shown` is for that)."""

    @property
    def shown(self) -> str:
        """The location as it may be printed: the file, or the URL without its password."""
        return redact_url(self.url) if self.url is not None else str(self.path)

    @property
    def location(self) -> str | Path:
        """What to open: the URL, or the file."""
        return self.url if self.url is not None else self.path

    def describe(self) -> str:
        """Say which journal and why, e.g. ``hubspoke.db (the default)``."""
        why = {"--db": "from --db", DB_ENV: f"from ${DB_ENV}"}.get(self.source, "the default")
        return f"{self.shown} ({why})"

    def flag(self) -> str:
        """The `--db` option to repeat in hints, when the journal came from the flag (a URL
        without its password: give it again, or set it in $PGPASSWORD or ~/.pgpass)."""
        return f" --db {self.shown}" if self.source == "--db" else ""


def _db(text: str | Path, source: str) -> DbPath:
    if is_postgres_url(str(text)):
        return DbPath(Path(), source, url=str(text).strip())
    return DbPath(Path(text), source)


def resolve_db(flag: str | Path | None, environ: Mapping[str, str] | None = None) -> DbPath:
    """Pick the journal: the flag wins, then the environment, then the default.

    Args:
        flag: the value of `--db`, if given: a file, or a ``postgresql://`` URL.
        environ: the environment to read (the process's by default).
    """
    if flag is not None and str(flag).strip():
        return _db(flag, "--db")
    env = (os.environ if environ is None else environ).get(DB_ENV, "").strip()
    if env:
        return _db(env, DB_ENV)
    return DbPath(DEFAULT_DB, "default")
