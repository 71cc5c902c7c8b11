"""What only the Postgres store adds to the conformance suite (tests/test_store.py): selecting it
from the CLI and the Python API, its errors, leases across machines, and the sales demo and
the chaos harness run on it. Each test gets a fresh database on a server the tests start
(tests/pgserver.py); without PostgreSQL they skip (fail in CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from typer.testing import CliRunner, Result

import hubspoke
from hubspoke import (
    Event,
    EventKind,
    Foreman,
    JournalReadOnly,
    JournalTooNew,
    JournalWriteError,
    PostgresStore,
    StoreUnavailable,
    open_store,
)
from hubspoke.cli import app
from hubspoke.cli.config import resolve_db
from hubspoke.journal.location import redact_url
from tests.chaos.harness import RUN_ID, race_resumers, run_chaos, take_over
from tests.chaos.runner import EXIT_LOCKED
from tests.helpers import fan_out
from tests.pgserver import PASSWORD, PASSWORD_USER, PostgresServer, free_port, missing
from tests.test_store import event, record

pytestmark = pytest.mark.anyio

SOURCE = str(Path(hubspoke.__file__).parents[1])
runner = CliRunner()


def invoke(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def _no_db_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUBSPOKE_DB", raising=False)


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    paths = [SOURCE, str(Path(SOURCE).parent), os.environ.get("PYTHONPATH", "")]
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(paths), **env},
        check=False,
        timeout=120,
    )


# choosing the store ------------------------------------------------------------------------------


def test_a_url_selects_postgres_and_keeps_every_character() -> None:
    """`--db` and `HUBSPOKE_DB` take URLs whole (a path would fold their `//`)."""
    url = "postgresql://ann:pw@db.example:5432/runs?sslmode=require"
    assert resolve_db(url).url == url
    assert resolve_db(None, {"HUBSPOKE_DB": f" {url} "}).url == url
    assert resolve_db(None, {"HUBSPOKE_DB": "postgres:///local"}).url == "postgres:///local"
    assert resolve_db("journal.db").url is None
    shown = resolve_db(url)
    assert (
        shown.describe() == "postgresql://ann:***@db.example:5432/runs?sslmode=require (from --db)"
    )
    assert shown.flag() == " --db postgresql://ann:***@db.example:5432/runs?sslmode=require"


def test_a_password_is_never_shown() -> None:
    assert redact_url("postgresql://ann:s3cret@h/db") == "postgresql://ann:***@h/db"
    assert redact_url("postgres://ann@h:5/db") == "postgres://ann@h:5/db"
    assert redact_url("postgresql://h/db?user=ann&password=s3cret") == (
        "postgresql://h/db?user=ann&password=***"
    )
    assert redact_url("postgresql://ann:p%40ss@h/db") == "postgresql://ann:***@h/db"


def test_open_store_opens_postgres_for_a_url_and_sqlite_for_a_path(
    postgres_url: str, tmp_path: Path
) -> None:
    store = open_store(postgres_url)
    try:
        assert isinstance(store, PostgresStore)
        store.create_run(record("run_a"))
    finally:
        store.close()
    reader = open_store(postgres_url, read_only=True)
    try:
        assert [r.run_id for r in reader.runs()] == ["run_a"]
    finally:
        reader.close()
    assert type(open_store(tmp_path / "j.db")).__name__ == "SQLiteStore"


def test_hubspoke_db_names_the_database_for_every_command(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`HUBSPOKE_DB` with the short ``postgres://`` scheme: runs and reads go to the database."""
    monkeypatch.setenv("HUBSPOKE_DB", postgres_url.replace("postgresql://", "postgres://", 1))
    started = invoke("demo", "sales", "--json")
    assert started.exit_code == 0, started.output
    run_id = json.loads(started.stdout)["run_id"]
    assert [r["run_id"] for r in json.loads(invoke("runs", "--json").stdout)] == [run_id]
    reader = PostgresStore(postgres_url, read_only=True)
    try:
        assert [r.run_id for r in reader.runs()] == [run_id]
    finally:
        reader.close()


def test_without_the_extra_a_url_names_the_extra_to_install() -> None:
    """psycopg missing: `open_store` raises ImportError, the CLI exits 2; both name the extra."""
    done = _python(
        """
        import sys
        sys.modules["psycopg"] = None  # as if the extra were not installed
        import hubspoke
        try:
            hubspoke.open_store("postgresql://ann@127.0.0.1:1/db")
        except ImportError as e:
            print(e)
        from hubspoke.cli import app
        sys.argv = ["hubspoke", "runs", "--db", "postgresql://ann:s3cret@127.0.0.1:1/db"]
        app()
        """
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'hubspoke[postgres]'" in done.stdout
    said = " ".join(done.stderr.split())
    assert "hubspoke[postgres]" in said and "postgresql://ann:***@127.0.0.1:1/db" in said
    assert "s3cret" not in done.stderr + done.stdout


def test_without_postgresql_the_tests_skip_here_and_fail_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HUBSPOKE_TEST_POSTGRES", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL binaries"):
        missing("no PostgreSQL binaries")
    monkeypatch.setenv("HUBSPOKE_TEST_POSTGRES", "required")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y postgresql"):
        missing("no PostgreSQL binaries")


# errors ------------------------------------------------------------------------------------------


def assert_refused(result: Result, *fragments: str) -> None:
    """Exit 2, a message on stderr, no traceback, and the password nowhere."""
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr and "Traceback" not in result.output
    said = " ".join(result.stderr.split())
    for fragment in fragments:
        assert fragment in said, said
    assert "s3cret" not in result.output and PASSWORD not in result.output


def test_an_unreachable_server_is_exit_2_naming_the_url_without_its_password() -> None:
    url = f"postgresql://ann:s3cret@127.0.0.1:{free_port()}/runs"
    shown = url.replace("s3cret", "***")
    for args in (["runs"], ["demo", "sales"], ["show", "run_x"], ["board"]):
        assert_refused(invoke(*args, "--db", url), f"cannot open the Postgres store {shown}")
    with pytest.raises(StoreUnavailable, match="Check that the server is running") as raised:
        PostgresStore(url)
    assert "s3cret" not in str(raised.value)


def test_bad_credentials_and_a_missing_database_are_exit_2(postgres: PostgresServer | str) -> None:
    if isinstance(postgres, str):
        pytest.skip(postgres)
    wrong = f"postgresql://{PASSWORD_USER}:s3cret@127.0.0.1:{postgres.port}/postgres"
    assert_refused(
        invoke("runs", "--db", wrong),
        "password authentication failed",
        f"postgresql://{PASSWORD_USER}:***@127.0.0.1:{postgres.port}/postgres",
    )
    right = f"postgresql://{PASSWORD_USER}:{PASSWORD}@127.0.0.1:{postgres.port}/postgres"
    # The login works; a reading command finds no journal there and writes nothing.
    assert_refused(invoke("runs", "--db", right), "holds no hubspoke journal")
    assert_refused(
        invoke("runs", "--db", postgres.url("no_such_db")), 'database "no_such_db" does not exist'
    )


def test_a_user_who_may_not_create_tables_writes_a_store_made_by_its_owner(
    postgres_url: str,
) -> None:
    """Opening a database whose tables are current runs no DDL: a role with only the rights
    on the tables (the usual production set-up) can drive runs."""
    owner = PostgresStore(postgres_url)
    owner._db.execute(
        f"GRANT USAGE ON SCHEMA hubspoke TO {PASSWORD_USER}; GRANT SELECT, INSERT, UPDATE, "
        f"DELETE ON ALL TABLES IN SCHEMA hubspoke TO {PASSWORD_USER}"
    )
    owner.close()
    user_url = postgres_url.replace("postgres@", f"{PASSWORD_USER}:{PASSWORD}@", 1)
    store = PostgresStore(user_url)
    try:
        store.create_run(record("run_a"))
        assert store.acquire("run_a", "me") is None
        store.append([event("run_a", 1)])
        assert [e.seq for e in store.events("run_a")] == [1]
    finally:
        store.close()


def test_a_read_only_store_refuses_every_write(postgres_url: str) -> None:
    writer = PostgresStore(postgres_url)
    writer.create_run(record("run_a"))
    reader = PostgresStore(postgres_url, read_only=True)
    try:
        writes: list[Callable[[], object]] = [
            lambda: reader.create_run(record("run_b")),
            lambda: reader.acquire("run_a", "me"),
            lambda: reader.release("run_a", "me"),
        ]
        for write in writes:
            with pytest.raises(JournalReadOnly, match="opened read-only"):
                write()
        # Past the guard, the server refuses too: the session is read-only.
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction, match="read-only transaction"):
            reader._db.execute("DELETE FROM runs")
        assert [r.run_id for r in reader.runs()] == ["run_a"]
    finally:
        reader.close()
        writer.close()


def test_a_database_written_by_a_newer_hubspoke_is_refused(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    store._db.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    store.close()
    with pytest.raises(JournalTooNew, match="journal schema 999"):
        PostgresStore(postgres_url)
    assert_refused(invoke("runs", "--db", postgres_url), "newer hubspoke")


# leases across machines --------------------------------------------------------------------------

ELSEWHERE = """
import socket, sys
socket.gethostname = lambda: "build-7"  # a foreman on another machine
from hubspoke import PostgresStore
store = PostgresStore({url!r})
print(store.acquire("run_a", "owner-elsewhere"), store._backend_pid, flush=True)
sys.stdin.readline()
"""


def test_a_lease_held_on_another_machine_lasts_as_long_as_its_session(postgres_url: str) -> None:
    """A holder on another host is never presumed dead by its pid: its lease ends when the
    server ends its session (here: the process exits; on a vanished machine: TCP keep-alive)."""
    store = PostgresStore(postgres_url)
    store.create_run(record("run_a"))
    paths = os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")])
    with subprocess.Popen(
        [sys.executable, "-c", ELSEWHERE.format(url=postgres_url)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": paths},
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        taken, backend = child.stdout.readline().split()
        assert taken == "None"
        held = f"process {child.pid} on build-7"
        assert store.holder("run_a") == held
        assert store.acquire("run_a", "owner-here") == held
        child.stdin.write("\n")
        child.stdin.flush()
    # Wait for what the server observes (the session gone), not for time.
    while store._db.execute(
        "SELECT 1 FROM pg_stat_activity WHERE pid=%s", (int(backend),)
    ).fetchone():
        pass
    assert store.holder("run_a") is None
    assert store.acquire("run_a", "owner-here") is None
    assert store.holder("run_a") == f"process {os.getpid()} on {store.host}"
    store.close()


def test_closing_the_store_ends_its_leases(postgres_url: str) -> None:
    first = PostgresStore(postgres_url)
    first.create_run(record("run_a"))
    assert first.acquire("run_a", "owner-1") is None
    second = PostgresStore(postgres_url)
    try:
        assert second.acquire("run_a", "owner-2") is not None  # the same process, another session
        first.close()
        assert second.acquire("run_a", "owner-2") is None
    finally:
        second.close()


async def test_a_foreman_whose_session_ended_stops_and_another_resumes_the_run(
    postgres_url: str,
) -> None:
    """The server ends the driving foreman's session mid-run (as it does for a vanished
    machine): that foreman can write nothing more and says why; the run is free for another."""
    admin = PostgresStore(postgres_url)
    store = PostgresStore(postgres_url)

    def cut(event: Event) -> None:
        if event.kind is EventKind.ITEM_ACCEPTED and event.item == "squares[1]":
            admin._db.execute("SELECT pg_terminate_backend(%s)", (store._backend_pid,))

    workflow = fan_out(n=4)
    # The run stops at its next write, with the store's error as the cause; it never goes on
    # deciding.
    with pytest.raises(JournalWriteError):
        await Foreman(workflow, store, listeners=[cut]).run({"topic": "x"}, run_id="run_cut")
    store.close()
    gone = "SELECT 1 FROM pg_stat_activity WHERE pid=%s"
    while admin._db.execute(gone, (store._backend_pid,)).fetchone():
        pass  # the server is still ending the session (observable state, not time)

    assert admin.holder("run_cut") is None
    resumed = await Foreman(workflow, admin).resume("run_cut")
    assert resumed.status == "completed"
    assert [e.seq for e in admin.events("run_cut")] == list(range(1, resumed.state.last_seq + 1))
    assert sorted(a.item for a in admin.artifacts("run_cut")) == [f"squares[{i}]" for i in range(4)]
    admin.close()


# the demo and the chaos harness on Postgres -----------------------------------------------------


def _cards(db: str | Path, run_id: str) -> list[tuple[Any, ...]]:
    result = invoke("cards", run_id, "--db", db, "--json")
    assert result.exit_code == 0, result.output
    return sorted(
        (column, c["phase"], c["item"], c["title"], c["risk"], c["note"])
        for column, cards in json.loads(result.stdout).items()
        for c in cards
    )


def test_the_sales_demo_runs_end_to_end_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    """Run, read, decide on the board and resume through the CLI: the same cards as SQLite."""
    outcome: dict[str, dict[str, Any]] = {}
    for name, db in (("sqlite", str(tmp_path / "journal.db")), ("postgres", postgres_url)):
        started = invoke("demo", "sales", "--db", db, "--json")
        assert started.exit_code == 0, started.output
        summary = json.loads(started.stdout)
        run_id = summary["run_id"]
        listed = json.loads(invoke("runs", "--db", db, "--json").stdout)
        assert [r["run_id"] for r in listed] == [run_id]
        assert invoke("show", run_id[:10], "--db", db).exit_code == 0
        waiting = _cards(db, run_id)
        board = json.loads(invoke("board", "--db", db, "--json", "--run", run_id).stdout)
        for card in board["review"]:
            decided = invoke("card", "approve", card["id"], "--db", db, "--by", "ana")
            assert decided.exit_code == 0, decided.output
        resumed = invoke("resume", run_id, "--db", db, "--json")
        assert resumed.exit_code == 0, resumed.output
        final = json.loads(resumed.stdout)
        outbox = json.loads(invoke("outbox", "--db", db, "--json").stdout)
        outcome[name] = {
            "waiting": (summary["status"], summary["cards_in_review"], waiting),
            "final": (final["status"], _cards(db, run_id)),
            "outbox": len(outbox),
        }
    assert outcome["postgres"]["waiting"][0] == "waiting"
    assert outcome["postgres"]["waiting"][1] > 0
    assert outcome["postgres"] == outcome["sqlite"]


def test_a_short_chaos_run_on_postgres_loses_nothing(postgres_url: str, tmp_path: Path) -> None:
    report = run_chaos(tmp_path, items=80, kills=6, seed=11, db=postgres_url)
    assert report.problems == [], report.summary()
    assert report.kills == 6, report.summary()


def test_two_foremen_on_one_postgres_store_one_drives_the_other_takes_over(
    postgres_url: str, tmp_path: Path
) -> None:
    result = take_over(tmp_path, postgres_url, items=200, seed=3)
    refused = result["refused"]
    assert refused["code"] == EXIT_LOCKED, refused
    assert f"is held by process {result['first_pid']} on" in refused["output"]
    assert result["resumed"]["code"] == 0, result["resumed"]
    assert '"status": "completed"' in result["resumed"]["output"]
    assert result["problems"] == []
    kinds = [kind for run_id, _, kind, *_ in result["events"] if run_id == RUN_ID]
    assert (
        kinds.count("run.resumed") == 1
    )  # only the take-over resumed it; the refusal wrote nothing


def test_two_resumers_racing_on_postgres_one_proceeds(postgres_url: str, tmp_path: Path) -> None:
    race = race_resumers(tmp_path, items=200, seed=3, db=postgres_url)
    assert sorted(r["code"] for r in race["resumers"]) == [0, EXIT_LOCKED], race
    assert race["status"] == "completed"
    assert race["problems"] == []
    assert race["shipped"] == 200
