"""The journal: contiguous, durable, the only source of run state, free of secrets."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from hubspoke import SCHEMA_VERSION, Foreman, RunState, SQLiteStore
from hubspoke.errors import JournalTooNew
from hubspoke.examples.sales import DEMO_INPUT, workflow
from hubspoke.journal import Redactor
from hubspoke.testing import stream
from tests.helpers import Topic

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures"


async def test_state_is_the_fold_of_the_journal(store: SQLiteStore) -> None:
    result = await Foreman(workflow, store).run(DEMO_INPUT)
    folded = RunState.fold(result.run_id, store.events(result.run_id))
    assert folded.summary() == result.state.summary()
    summary = folded.summary()
    assert summary["status"] == "completed"
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


async def test_planted_secret_reaches_no_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-PLANTED-0123456789abcdef"
    monkeypatch.setenv("ACME_API_KEY", secret)
    from hubspoke import Context, Phase, Role, Workflow
    from tests.helpers import Notes, Summary

    async def leaky(inp: Topic, ctx: Context) -> Notes:
        return Notes(points=[f"the key is {secret}"])

    async def echo(inp: Notes, ctx: Context) -> Summary:
        return Summary(text=" ".join(inp.points))

    wf = Workflow(
        name="leaky",
        input=Topic,
        roles=[
            Role(name="leaker", purpose="Leak.", input=Topic, output=Notes, function=leaky),
            Role(name="echo", purpose="Echo.", input=Notes, output=Summary, function=echo),
        ],
        phases=[
            Phase(name="leak", role="leaker", input=lambda run: run.input),
            Phase(name="echo", role="echo", input=lambda run: run.output("leak")),
        ],
    )
    db = tmp_path / "j.db"
    store = SQLiteStore(db)
    result = await Foreman(wf, store).run({"topic": secret})
    assert result.status == "completed"
    store.close()
    for path in tmp_path.iterdir():
        assert secret.encode() not in path.read_bytes(), path
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert secret not in dump
    assert "[REDACTED]" in dump


def test_redactor_only_takes_secret_looking_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_TOKEN", "tok-123456789")
    monkeypatch.setenv("HOME_DIR_NAME", "not-a-secret-value")
    redactor = Redactor()
    assert redactor.scrub("a tok-123456789 b") == "a [REDACTED] b"
    assert "not-a-secret-value" not in redactor.secrets


def test_journal_written_by_version_1_still_loads(tmp_path: Path) -> None:
    """A journal from schema version 1 is kept as a fixture; every later version must read it."""
    db = tmp_path / "v1.db"
    shutil.copy(FIXTURES / "journal-v1.db", db)
    store = SQLiteStore(db)
    (run,) = store.runs()
    state = RunState.fold(run.run_id, store.events(run.run_id))
    expected = json.loads((FIXTURES / "journal-v1.summary.json").read_text())
    assert state.summary() == expected
    assert run.schema_version == 1 <= SCHEMA_VERSION


def test_a_journal_from_a_newer_version_is_refused_clearly(tmp_path: Path) -> None:
    db = tmp_path / "future.db"
    SQLiteStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    with pytest.raises(JournalTooNew, match="newer hubspoke"):
        SQLiteStore(db)
