"""A throw-away PostgreSQL server for the tests: `initdb` into a temporary folder, `pg_ctl start`
on a free port of 127.0.0.1, a fresh database per test, `pg_ctl stop` at the end.

The server trusts connections from 127.0.0.1 only and runs without fsync (the tests kill
processes, never the machine). PostgreSQL refuses to run as root: as root, the server runs as
the ``postgres`` OS user (``runuser``), in a folder it owns.

Where no PostgreSQL binaries are found (``/usr/lib/postgresql/*/bin``, or ``initdb`` on the
PATH) the Postgres tests skip with the reason; with ``HUBSPOKE_TEST_POSTGRES=required`` (CI) they
fail instead, saying what to install.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PASSWORD_USER, PASSWORD = "hubspoke_pw", "right-horse-battery"
"""The one role that must log in with a password (scram-sha-256), for the tests of bad
credentials; every other connection from 127.0.0.1 is trusted."""

REQUIRED_ENV = "HUBSPOKE_TEST_POSTGRES"
"""Set to ``required`` (as .ci/run does) to fail, not skip, when PostgreSQL is missing."""


def find_bindir() -> Path | None:
    """The folder with PostgreSQL's ``initdb``, ``pg_ctl`` and ``postgres``, newest first."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def missing(reason: str) -> None:
    """Skip the test, or fail it when PostgreSQL is required."""
    if os.environ.get(REQUIRED_ENV, "").strip().lower() == "required":
        pytest.fail(
            f"{reason}, and {REQUIRED_ENV}=required: install PostgreSQL "
            "(apt-get install -y postgresql, as .ci/run does)",
            pytrace=False,
        )
    pytest.skip(f"{reason} (apt-get install postgresql to run the Postgres tests)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """A running server; `database()` makes a fresh, empty database on it."""

    def __init__(
        self, bindir: Path, folder: Path, port: int, as_postgres: bool, *, durable: bool = False
    ) -> None:
        self.bindir = bindir
        self.folder = folder
        self.data = folder / "data"
        self.port = port
        self.as_postgres = as_postgres
        self.durable = durable
        """fsync on, as a real server (benchmarks); off for the tests."""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = self.folder / "server.log"
            text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}\n{text}"
            )

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        hba = self.data / "pg_hba.conf"
        # Only 127.0.0.1 over TCP: the password role first (the first matching line wins).
        hba.write_text(
            f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
            "local all all trust\n"
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} "
            f"-c fsync={'on' if self.durable else 'off'} -c max_connections=200"
        )
        self._run(
            "pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.folder / "server.log"),
            "-o", options,
        )  # fmt: skip
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'")

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")

    @contextmanager
    def database(self, template: str | None = None) -> Iterator[str]:
        """A new empty database for the duration (a copy of the database at URL `template`,
        which nobody may be connected to, when given); yields its URL, drops it afterwards."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        copy = f" TEMPLATE {template.rsplit('/', 1)[1]}" if template else ""
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}{copy}")
        try:
            yield self.url(name)
        finally:
            with psycopg.connect(self.url(), autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def postgres_server(*, durable: bool = False) -> Iterator[PostgresServer | str]:
    """A started server, or why there is none (a sentence). `durable`: fsync on."""
    bindir = find_bindir()
    if bindir is None:
        yield "no PostgreSQL binaries (initdb) in /usr/lib/postgresql/*/bin or on the PATH"
        return
    try:
        import psycopg  # noqa: F401
    except ImportError:
        yield "psycopg is not installed (pip install 'hubspoke[postgres]')"
        return
    as_postgres = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="hubspoke-pg-"))
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    server = PostgresServer(bindir, folder, free_port(), as_postgres, durable=durable)
    try:
        server.start()
    except (RuntimeError, OSError) as e:
        shutil.rmtree(folder, ignore_errors=True)
        yield f"the test PostgreSQL server did not start: {e}"
        return
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
