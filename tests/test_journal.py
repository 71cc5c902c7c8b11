"""The journal: contiguous, durable, the only source of run state, free of secrets."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import shutil
import sqlite3
import typing
from pathlib import Path
from typing import Any

import pydantic_ai.models
import pytest

from hubspoke import (
    SCHEMA_VERSION,
    Context,
    Event,
    EventKind,
    Foreman,
    NeedsHuman,
    Phase,
    Role,
    RunState,
    RunView,
    SQLiteStore,
    Strategy,
    Workflow,
)
from hubspoke.errors import JournalTooNew
from hubspoke.events import PAYLOADS
from hubspoke.examples.sales import DEMO_INPUT, workflow
from hubspoke.journal import Redactor
from hubspoke.journal.state import _FOLDS
from hubspoke.models import Config
from hubspoke.testing import payload_errors, stream
from tests import wire
from tests.helpers import Notes, Summary, Topic

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures"


async def test_state_is_the_fold_of_the_journal(store: SQLiteStore) -> None:
    result = await Foreman(workflow, store).run(DEMO_INPUT)
    folded = RunState.fold(result.run_id, store.events(result.run_id))
    assert folded.summary() == result.state.summary()
    summary = folded.summary()
    assert summary["status"] == "waiting"  # its escalated contact waits for a person
    assert summary["cards_in_review"] == 9
    assert summary["phases"]["contacts"]["escalated"] == 1
    assert summary["phases"]["drafts"]["retried"] == 2
    assert set(summary["usage_by_role"]) == {
        "discovery",
        "qualification",
        "contact_selection",
        "personalization",
    }


async def test_same_input_gives_the_same_stream(store: SQLiteStore) -> None:
    a = await Foreman(workflow, store).run(DEMO_INPUT)
    b = await Foreman(workflow, store).run(DEMO_INPUT)
    assert stream(store.events(a.run_id)) == stream(store.events(b.run_id))


SECRET = "sk-live-PLANTED-0123456789abcdef"
"""Planted in the environment as a generic API key."""
PROVIDER_KEY = "sk-proj-PROVIDERKEY-9876543210fedcba"
"""Planted as the provider's API key (OPENAI_API_KEY): the agent's requests really use it."""


def secret_workflow(server: str) -> Workflow:
    """Every way a secret can travel: input, output, a card title, a tool argument, a question
    for a person, an exception, a provider error that echoes the key, and the run's result."""

    def lookup(topic: str) -> str:
        """Look a topic up."""
        return "known"

    async def leaky(inp: Topic, ctx: Context) -> Notes:
        await ctx.call_tool("lookup", topic=f"key {SECRET}")
        return Notes(points=[f"the key is {SECRET}", inp.topic])

    async def echo(inp: Notes, ctx: Context) -> Summary:
        if ctx.attempt == 1:
            raise RuntimeError(f"cannot use {SECRET}")
        return Summary(text=" ".join(inp.points))

    async def asks(inp: Summary, ctx: Context) -> Summary:
        raise NeedsHuman(f"may I publish {SECRET}?")

    def result(run: RunView) -> Summary:
        raise ValueError(f"result leaks {SECRET}")

    return Workflow(
        name="leaky",
        input=Topic,
        roles=[
            Role(
                name="leaker",
                purpose="Leak.",
                input=Topic,
                output=Notes,
                function=leaky,
                tools=[lookup],
            ),
            Role(name="echo", purpose="Echo.", input=Notes, output=Summary, function=echo),
            Role(
                name="agent",
                purpose="Summarise with a provider.",
                input=Notes,
                output=Summary,
                model=f"openai-compatible:m@{server}",
            ),
            Role(name="asker", purpose="Ask.", input=Summary, output=Summary, function=asks),
        ],
        phases=[
            Phase(name="leak", role="leaker", input=lambda run: run.input),
            Phase(
                name="echo",
                role="echo",
                input=lambda run: run.output("leak"),
                review=True,
                card_title=lambda out: f"publish {out.text}",
            ),
            Phase(name="agent", role="agent", input=lambda run: run.output("leak")),
            Phase(
                name="ask",
                role="asker",
                input=lambda run: run.output("echo"),
                strategy=Strategy.BEST_EFFORT,
            ),
        ],
        result=result,
    )


def answer_with_the_key(request: wire.Request) -> wire.Reply:
    """A provider that checks the key, echoes it in a 401 once (as some do), then answers."""
    assert request.headers["authorization"] == f"Bearer {PROVIDER_KEY}"  # the key really was used
    work = request.work
    if work["attempt"] == 1:
        return wire.fault(
            401, body={"error": {"message": f"Incorrect API key provided: {PROVIDER_KEY}"}}
        )
    text = " ".join(work["input"]["points"]) + f" (key {PROVIDER_KEY})"
    return wire.call("final_result", {"text": text})


async def test_planted_secrets_reach_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Secrets from the environment and the provider configuration reach no output: not the
    database, its WAL, exported JSON (summaries, events), artifacts, cards, the live listeners,
    the run's result, or the CLI's JSON."""
    monkeypatch.setenv("ACME_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", PROVIDER_KEY)
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)  # 127.0.0.1 only
    db = tmp_path / "j.db"
    store = SQLiteStore(db)
    heard: list[Event] = []
    with wire.serve("chat", answer_with_the_key) as server:
        # A compatible server gets a key only from the variable its endpoint names.
        config = Config.from_toml(
            f'[endpoints.test]\nbase_url = "{server.url}"\napi_key_env = "OPENAI_API_KEY"',
            environ={"OPENAI_API_KEY": PROVIDER_KEY},
        )
        foreman = Foreman(
            secret_workflow(server.url), store, listeners=[heard.append], config=config
        )
        result = await foreman.run(
            {"topic": SECRET}, options={"api_key": SECRET, "provider_key": PROVIDER_KEY}
        )
    assert result.status == "failed"  # result() raised, with the secret in its message

    def clean(text: str, where: str) -> None:
        for secret in (SECRET, PROVIDER_KEY):
            assert secret not in text, f"{where} holds a secret"

    # The files, while the store is open (the WAL holds the latest writes) and after.
    files = [db, db.with_name("j.db-wal"), db.with_name("j.db-shm")]
    assert files[1].exists()
    for path in files:
        if path.exists():
            clean(path.read_bytes().decode("latin-1"), path.name)
    run_id = result.run_id
    events = store.events(run_id)
    clean(json.dumps([e.to_dict() for e in events]), "Event.to_dict()")
    clean(json.dumps([e.to_dict() for e in heard]), "events seen by listeners")
    clean(json.dumps(result.summary()), "RunResult.summary()")
    clean(json.dumps(RunState.fold(run_id, events).summary()), "RunState.summary()")
    clean(result.reason + result.state.reason, "RunResult.reason")
    clean(json.dumps([a.content for a in store.artifacts(run_id)]), "artifacts")
    clean(json.dumps([(c.title, c.note) for c in store.cards(run_id)]), "cards")
    record = store.run(run_id)
    assert record is not None
    clean(json.dumps([record.input, record.options]), "the run record")
    # The secrets were there to leak: every surface shows where they were scrubbed.
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert dump.count("[REDACTED]") >= 8
    kinds = {e.kind for e in events if "[REDACTED]" in json.dumps(e.data)}
    assert {EventKind.TOOL_CALLED, EventKind.DISPATCH_FINISHED, EventKind.RUN_FINISHED} <= kinds
    store.close()
    for path in files:
        if path.exists():
            clean(path.read_bytes().decode("latin-1"), f"{path.name} after close")

    cli = pytest.importorskip("hubspoke.cli", reason="the CLI (hubspoke.cli) is not built yet")
    from typer.testing import CliRunner

    runner = CliRunner()
    for command in (
        ["events", run_id, "--json"],
        ["show", run_id, "--json"],
        ["artifacts", run_id, "--json"],
        ["cards", run_id, "--json"],
        ["runs", "--json"],
    ):
        out = runner.invoke(cli.app, [*command, "--db", str(db)])
        assert out.exit_code == 0, out.output
        clean(out.output, f"hubspoke {' '.join(command)}")
    assert (
        "[REDACTED]" in runner.invoke(cli.app, ["events", run_id, "--json", "--db", str(db)]).output
    )


def test_redactor_only_takes_secret_looking_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TOKEN", "tok-123456789")
    monkeypatch.setenv("HOME_DIR_NAME", "not-a-secret-value")
    redactor = Redactor()
    assert redactor.scrub("a tok-123456789 b") == "a [REDACTED] b"
    assert "not-a-secret-value" not in redactor.secrets


_ITEM_KINDS = {
    EventKind.DISPATCH_STARTED,
    EventKind.ITEM_ACCEPTED,
    EventKind.ITEM_ESCALATED,
    EventKind.ITEM_FAILED,
}
"""The kinds that name an item of their phase (a router's own events name its turn's item)."""


def _expected_summaries(version: int, store: SQLiteStore) -> dict[str, Any]:
    """The fixture's summaries by run id (the v1 file holds one run's summary alone), with the
    counters later versions added at the value an older journal folds to, and a routed
    phase's items counted as they appear (the fold did not count them when the v5 fixture was
    written: "4/0" in `hubspoke show`)."""
    expected = json.loads((FIXTURES / f"journal-v{version}.summary.json").read_text())
    summaries = {expected["run_id"]: expected} if "run_id" in expected else expected
    for run_id, summary in summaries.items():
        named: dict[str, set[str]] = {}
        for event in store.events(run_id):
            if event.kind in _ITEM_KINDS and event.item is not None and "#" not in event.item:
                named.setdefault(event.phase or "", set()).add(event.item)
        for name, phase in summary["phases"].items():
            if version < 3:  # schema 3 counts waits for a throttled or unavailable provider
                phase.setdefault("waits", 0)
            phase["items"] = max(phase["items"], len(named.get(name, ())))
    return summaries


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_journal_written_by_every_version_still_loads(version: int, tmp_path: Path) -> None:
    """A journal written by each schema version is kept as a fixture; this version reads every
    one: each run folds to the summary it had, and every event fits its kind's payload type
    (keys a later version added are optional)."""
    db = tmp_path / f"v{version}.db"
    shutil.copy(FIXTURES / f"journal-v{version}.db", db)
    store = SQLiteStore(db, read_only=True)
    runs = store.runs(limit=100)
    assert {r.schema_version for r in runs} == {version}
    assert store.schema_version == version
    folded = {r.run_id: RunState.fold(r.run_id, store.events(r.run_id)).summary() for r in runs}
    assert folded == _expected_summaries(version, store)
    assert [e for r in runs for e in payload_errors(store.events(r.run_id))] == []


def test_the_latest_fixture_holds_every_kind_of_event(tmp_path: Path) -> None:
    """So that the next version is tested on a journal where every payload of this one occurs."""
    store = SQLiteStore(FIXTURES / f"journal-v{SCHEMA_VERSION}.db", read_only=True)
    kinds = {e.kind for r in store.runs(limit=100) for e in store.events(r.run_id)}
    assert kinds == set(EventKind)


def test_each_fold_of_the_run_state_reads_its_kinds_payload_type() -> None:
    """`RunState.apply` folds by a table of kinds, each fold typed by its payload in its
    signature: the type checker sees the fold's reads only if that type is the kind's."""
    for kind, fold in _FOLDS.items():
        method = inspect.unwrap(fold)
        data = list(inspect.signature(method).parameters)[2]  # (state, event, data)
        assert typing.get_type_hints(method)[data] is PAYLOADS[kind], (kind, method)
    unfolded = set(EventKind) - set(_FOLDS)
    assert unfolded == {
        EventKind.MODEL_EXCHANGE,
        EventKind.TOOL_CALLED,
        EventKind.TOOL_REFUSED,
        EventKind.OUTPUT_INVALID,
    }


def test_a_journal_of_an_older_version_is_written_at_this_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading an older journal leaves its recorded version; the first run this version writes
    into it moves it up, so that the older hubspoke refuses the file rather than misread it."""
    db = tmp_path / "v1.db"
    shutil.copy(FIXTURES / "journal-v1.db", db)

    def recorded() -> str:
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return str(
                conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
            )

    store = SQLiteStore(db)
    (old,) = store.runs()
    store.events(old.run_id)
    assert store.acquire(old.run_id, "reader") is None  # leases are not journal writes
    store.release(old.run_id, "reader")
    assert (store.schema_version, recorded()) == (1, "1")

    result = asyncio.run(Foreman(workflow, store).run(DEMO_INPUT, run_id="run_new"))
    assert result.status == "waiting"
    assert (store.schema_version, recorded()) == (SCHEMA_VERSION, str(SCHEMA_VERSION))
    versions = {r.run_id: r.schema_version for r in store.runs()}
    assert versions == {old.run_id: 1, "run_new": SCHEMA_VERSION}
    expected = _expected_summaries(1, store)
    assert RunState.fold(old.run_id, store.events(old.run_id)).summary() == expected[old.run_id]
    store.close()

    # The hubspoke of version 1, opening the file again:
    monkeypatch.setattr("hubspoke.journal.sqlite.SCHEMA_VERSION", 1)
    with pytest.raises(JournalTooNew, match=f"journal schema {SCHEMA_VERSION}"):
        SQLiteStore(db)


@pytest.mark.parametrize("cut", [40, 90, 160])
async def test_a_run_cut_short_at_version_1_resumes_at_this_one(cut: int, tmp_path: Path) -> None:
    """A v1 run killed after its event `cut` resumes under this version: the fold reads its v1
    payloads (no `reserved`, no `shape`, no `informative`), and the run ends as the uncut one
    did (the same items accepted and escalated), its old and new events each fitting their
    payload type."""
    db = tmp_path / "v1.db"
    shutil.copy(FIXTURES / "journal-v1.db", db)
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        conn.execute("DELETE FROM events WHERE seq > ?", (cut,))
        conn.execute(
            "DELETE FROM artifacts WHERE artifact_id NOT IN (SELECT json_extract(data, "
            "'$.artifact_id') FROM events WHERE kind = 'item.accepted')"
        )
        conn.execute(
            "DELETE FROM cards WHERE item NOT IN (SELECT item FROM events WHERE kind = "
            "'card.created')"
        )
        conn.execute("UPDATE runs SET status = 'running', finished = NULL")
    store = SQLiteStore(db)
    result = await Foreman(workflow, store).resume("run_fixture")

    def outcome(summary: dict[str, Any]) -> dict[str, Any]:
        counts = ("status", "items", "accepted", "escalated", "failed")
        return {
            "status": summary["status"],
            "cards": (summary["cards"], summary["cards_in_review"]),
            "phases": {
                name: {k: v for k, v in phase.items() if k in counts}
                for name, phase in summary["phases"].items()
            },
        }

    uncut = SQLiteStore(FIXTURES / "journal-v1.db", read_only=True)
    # Version 1 ended a run with an escalated item `completed`; since version 4 the run waits
    # for the person's decision. Everything else ends the same.
    expected = outcome(_expected_summaries(1, uncut)["run_fixture"])
    assert expected["status"] == "completed"
    assert outcome(result.summary()) == {**expected, "status": "waiting"}
    # The demo's data changed since version 1: the same items are accepted, not the same text.
    accepted = sorted(a.item for a in store.artifacts("run_fixture"))
    assert accepted == sorted(a.item for a in uncut.artifacts("run_fixture"))
    assert payload_errors(store.events("run_fixture")) == []


def test_a_journal_from_a_newer_version_is_refused_clearly(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    SQLiteStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    with pytest.raises(JournalTooNew, match="newer hubspoke"):
        SQLiteStore(db)


class FlakyStore(SQLiteStore):
    """Refuses appends while `failing` (a full disk, a long lock), or just the next one when
    `refuse_next` is set; counts the refusals."""

    failing = False
    refuse_next = False
    refused = 0

    def append(self, *args: Any, **kwargs: Any) -> None:
        if self.failing or self.refuse_next:
            self.refuse_next = False
            self.refused += 1
            raise sqlite3.OperationalError("database is locked")
        super().append(*args, **kwargs)


async def test_a_store_that_refuses_writes_stops_the_run_and_loses_no_event(
    tmp_path: Path,
) -> None:
    from hubspoke.journal.writer import JournalWriteError

    store = FlakyStore(tmp_path / "j.db")

    def refuse_from_the_first_phase(event: Event) -> None:
        if event.kind is EventKind.PHASE_STARTED:
            store.failing = True

    with pytest.raises(JournalWriteError, match="could not be written: database is locked") as e:
        await Foreman(workflow, store, listeners=[refuse_from_the_first_phase]).run(
            DEMO_INPUT, run_id="run_flaky"
        )
    assert isinstance(e.value.__cause__, sqlite3.OperationalError)  # the store's own error
    assert store.refused >= 1
    store.failing = False
    events = store.events("run_flaky")
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # no hole
    assert all(e.kind is not EventKind.RUN_FINISHED for e in events)
    result = await Foreman(workflow, store).resume("run_flaky")
    assert result.status == "waiting"
    assert result.state.cards_in_review == 9


async def test_one_refused_write_is_retried_and_the_journal_keeps_every_event(
    tmp_path: Path,
) -> None:
    """Whether the run notices the refusal before it ends (and stops) or its last flush writes
    the batch again (and it completes), the journal holds exactly what the foreman decided."""
    from hubspoke.journal.writer import JournalWriteError

    store = FlakyStore(tmp_path / "j.db")
    decided: list[Event] = []

    def refuse_once(event: Event) -> None:
        decided.append(event)
        if event.kind is EventKind.PHASE_STARTED and len(decided) < 3:
            store.refuse_next = True

    try:
        result = await Foreman(workflow, store, listeners=[refuse_once]).run(
            DEMO_INPUT, run_id="run_once"
        )
        assert result.status == "completed"
    except JournalWriteError:
        result = await Foreman(workflow, store).resume("run_once")
        assert result.status == "waiting"
    assert store.refused == 1
    written = store.events("run_once")
    assert [e.seq for e in written] == list(range(1, len(written) + 1))
    assert [(e.seq, e.kind, e.data) for e in written[: len(decided)]] == [
        (e.seq, e.kind, e.data) for e in decided
    ]


async def test_a_broken_listener_does_not_stop_the_run(store: SQLiteStore) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("the terminal went away")

    result = await Foreman(workflow, store, listeners=[broken]).run(DEMO_INPUT)
    assert result.status == "waiting"


async def test_a_long_loop_tick_is_written_in_slices(store: SQLiteStore) -> None:
    """600 items that never wait are decided in one loop tick (1,800 events): the journal
    does not hold them all until the tick ends."""
    from hubspoke.journal.writer import FLUSH_EVENTS
    from tests.helpers import Number, squares

    wf = squares(
        Phase(
            name="squares",
            role="squarer",
            over=lambda run: list(range(600)),
            input=lambda run, i: Number(n=i),
            concurrency=600,
        )
    )
    durable_at: dict[int, int] = {}

    def watch(event: Event) -> None:
        if event.seq == 1500:  # in the fan-out's one long tick
            durable_at[event.seq] = len(store.events(event.run_id))

    result = await Foreman(wf, store, listeners=[watch]).run({"topic": "x"})
    assert result.status == "completed"
    # Slices are cut where a dispatch is about to wait: at most a slice and one item's events
    # (started, finished, accepted) are ever buffered.
    assert durable_at[1500] >= 1500 - FLUSH_EVENTS - 3
    assert [e.seq for e in store.events(result.run_id)] == list(range(1, result.state.last_seq + 1))
