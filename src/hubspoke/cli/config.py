"""Which journal the CLI reads and writes: `--db`, else `HUBSPOKE_DB`, else `./hubspoke.db`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DB_ENV", "DEFAULT_DB", "DbPath", "resolve_db"]

DB_ENV = "HUBSPOKE_DB"
"""Environment variable naming the journal when `--db` is not given."""
DEFAULT_DB = Path("hubspoke.db")
"""The journal used when neither `--db` nor `HUBSPOKE_DB` says otherwise (relative to cwd)."""


@dataclass(frozen=True, slots=True)
class DbPath:
    """A journal's path and where the choice came from (for messages and hints)."""

    path: Path
    source: str
    """``"--db"``, ``"HUBSPOKE_DB"`` or ``"default"``."""

    def describe(self) -> str:
        """Say which file and why, e.g. ``hubspoke.db (the default)``."""
        why = {"--db": "from --db", DB_ENV: f"from ${DB_ENV}"}.get(self.source, "the default")
        return f"{self.path} ({why})"

    def flag(self) -> str:
        """The `--db` option to repeat in hints, when the path came from the flag."""
        return f" --db {self.path}" if self.source == "--db" else ""


def resolve_db(flag: Path | None, environ: Mapping[str, str] | None = None) -> DbPath:
    """Pick the journal: the flag wins, then the environment, then the default.

    Args:
        flag: the value of `--db`, if given.
        environ: the environment to read (the process's by default).
    """
    if flag is not None:
        return DbPath(flag, "--db")
    env = (os.environ if environ is None else environ).get(DB_ENV, "").strip()
    if env:
        return DbPath(Path(env), DB_ENV)
    return DbPath(DEFAULT_DB, "default")
