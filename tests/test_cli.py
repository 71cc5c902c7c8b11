"""The `hubspoke` command line: each command on a small workflow of two function roles."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType
from typer.testing import CliRunner, Result

import hubspoke
from hubspoke import Foreman, WorkflowChanged
from hubspoke.cli import app
from hubspoke.cli.config import DEFAULT_DB, resolve_db
from hubspoke.cli.demos import DEMOS, Demo
from hubspoke.cli.live import LiveProgress
from hubspoke.cli.render import PIPED_WIDTH
from hubspoke.events import Event, EventKind
from hubspoke.journal import SQLiteStore
from hubspoke.loader import load_workflow
from tests.helpers import running_record

FLOW = textwrap.dedent(
    '''
    """Notes on companies: one drafter per company, then one digest of the notes."""
    from __future__ import annotations

    import asyncio
    from pathlib import Path
    from typing import Any

    from pydantic import BaseModel

    from hubspoke import Context, NeedsHuman, Phase, Role, RunView, Strategy, Workflow

    GATE = Path(__file__).with_name("gate")


    class Prospects(BaseModel):
        companies: list[str]


    class Company(BaseModel):
        name: str


    class Note(BaseModel):
        company: str
        text: str


    class Notes(BaseModel):
        notes: list[Note]


    class Digest(BaseModel):
        count: int
        companies: list[str]


    async def draft(item: Company, ctx: Context) -> dict[str, Any]:
        if item.name == "Hold":
            raise NeedsHuman(f"is {item.name} a real company?")
        if item.name == "Flaky" and ctx.attempt == 1:
            return {"company": item.name}  # no text: invalid, so retried with the correction
        if item.name == "Slow" and GATE.exists():
            await asyncio.Event().wait()  # until the process is interrupted
        return {"company": item.name, "text": f"a note on {item.name}"}


    async def digest(item: Notes, ctx: Context) -> dict[str, Any]:
        return {"count": len(item.notes), "companies": [n.company for n in item.notes]}


    def digest_input(run: RunView) -> dict[str, Any]:
        if "Boom" in run.input.companies:
            raise ValueError("Boom cannot be digested")
        return {"notes": [n.model_dump() for n in run.outputs("draft")]}


    workflow = Workflow(
        name="notes",
        input=Prospects,
        roles=[
            Role(name="drafter", purpose="Drafts a note on one company.", input=Company,
                 output=Note, function=draft),
            Role(name="digester", purpose="Sums up the notes.", input=Notes, output=Digest,
                 function=digest),
        ],
        phases=[
            Phase(name="draft", role="drafter", over=lambda run: run.input.companies,
                  input=lambda run, name: {"name": name}, strategy=Strategy.BEST_EFFORT,
                  review=True, card_title=lambda note: f"note on {note.company}"),
            Phase(name="digest", role="digester", input=digest_input),
        ],
        result=lambda run: run.output("digest"),
    )

    DEMO_INPUT = {"companies": ["Acme", "Zeta"]}
    '''
)

INPUT = '{"companies": ["Acme", "Flaky", "Hold", "Zeta"]}'
EVENT_KEYS = {"seq", "ts", "run_id", "kind", "phase", "role", "item", "attempt", "data"}

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_db_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUBSPOKE_DB", raising=False)


@pytest.fixture
def flow(tmp_path: Path) -> str:
    """The workflow reference of the notes workflow, written to a temporary file."""
    path = tmp_path / "flow.py"
    path.write_text(FLOW, encoding="utf-8")
    return f"{path}:workflow"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


def invoke(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def start(flow: str, db: Path, input: str = INPUT) -> dict[str, Any]:
    """Run the notes workflow with --json and return its summary."""
    result = invoke("run", flow, "--input", input, "--db", db, "--json")
    assert result.exit_code in (0, 1), result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def assert_usage_error(result: Result, *fragments: str) -> None:
    """Exit 2, a message on stderr naming what to fix, and no traceback anywhere."""
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def crashed_run(db: Path, flow: str | None, *, shape: dict[str, Any] | None = None) -> str:
    """A run that started and stopped before its first phase (as after a kill -9); `flow` is
    the workflow reference kept with it (`None` for a run started from Python), `shape` the
    workflow's shape recorded with `run.started`."""
    run_id = "run_crashed0001"
    data: dict[str, Any] = {"workflow": "notes", "ref": flow, "input": {"companies": ["Acme"]}}
    if shape is not None:
        data["shape"] = shape
    store = SQLiteStore(db)
    try:
        store.create_run(
            running_record(
                run_id,
                "notes",
                {"companies": ["Acme"]},
                ref=flow,
                options={"latency": 0.0, "model": None},
            )
        )
        started = Event(run_id, 1, time.time(), EventKind.RUN_STARTED, data=data)
        store.append([started])
    finally:
        store.close()
    return run_id


# run ---------------------------------------------------------------------------------------------


def test_run_prints_one_json_summary(flow: str, db: Path) -> None:
    result = invoke("run", flow, "--input", INPUT, "--db", db, "--json")

    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "waiting"
    assert summary["run_id"].startswith("run_")
    draft = summary["phases"]["draft"]
    assert {k: draft[k] for k in ("dispatched", "accepted", "retried", "escalated", "failed")} == {
        "dispatched": 5,
        "accepted": 3,
        "retried": 1,
        "escalated": 1,
        "failed": 0,
    }
    assert summary["phases"]["digest"]["accepted"] == 1
    assert "usd" in draft["usage"]
    assert set(summary["usage_by_role"]) == {"drafter", "digester"}
    assert summary["usage_by_role"]["drafter"]["steps"] == 5
    assert "usd" in summary["usage_by_role"]["digester"]
    assert summary["cards_in_review"] == 3
    # The digest sees only approved notes (the review gate holds): none yet.
    # The run waits for a person (Hold's note escalated): its result is made once nothing
    # waits, so there is none yet.
    assert "result" not in summary


def test_run_prints_progress_lines_and_a_human_summary(flow: str, db: Path) -> None:
    result = invoke("run", flow, "--input", INPUT, "--db", db)

    assert result.exit_code == 0, result.output
    run_id = result.stdout.split()[1]
    assert run_id.startswith("run_")
    # Progress goes to stderr, a few lines, never one per event.
    assert "phase draft: started, 4 item(s)" in result.stderr
    assert "escalated draft[2] (drafter): is Hold a real company?" in result.stderr
    assert f"run {run_id} waiting" in result.stderr
    assert len(result.stderr.splitlines()) == 7
    # The summary: status, phases, roles, board, hints.
    assert "completed" in result.stdout
    for word in ("draft", "digest", "drafter", "digester", "retried", "escalated", "USD"):
        assert word in result.stdout
    assert "3 card(s) waiting for review" in result.stdout
    assert f"hubspoke board --run {run_id} --db {db}" in result.stdout


def test_run_reads_input_from_a_file(flow: str, db: Path, tmp_path: Path) -> None:
    (tmp_path / "input.json").write_text(INPUT, encoding="utf-8")

    result = invoke("run", flow, "--input", f"@{tmp_path / 'input.json'}", "--db", db, "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["phases"]["draft"]["items"] == 4


def test_run_prints_the_workflows_result_in_text_mode(flow: str, db: Path) -> None:
    # No company that needs a person: the run completes, and its result is printed.
    result = invoke("run", flow, "--input", '{"companies": ["Acme", "Zeta"]}', "--db", db)

    assert result.exit_code == 0, result.output
    after = result.stdout.split("result:\n", 1)[1]
    shown = json.loads(after[: after.index("}") + 1])
    assert shown == {"count": 0, "companies": []}  # no note approved yet
    assert after.index("}") < after.index("next: hubspoke")


def test_run_finds_a_module_in_the_current_directory(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = f"cli_cwd_flow_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(FLOW, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    # As under the `hubspoke` script: the current directory is not on sys.path by itself.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    try:
        plain = '{"companies": ["Acme", "Zeta"]}'  # nobody to ask: it completes
        ran = invoke("run", f"{module}:workflow", "--input", plain, "--db", db, "--json")
        missing = invoke("run", f"{module}_missing:workflow", "--input", INPUT, "--db", db)
    finally:
        sys.modules.pop(module, None)

    assert ran.exit_code == 0, ran.output
    summary = json.loads(ran.stdout)
    assert summary["status"] == "completed"
    assert summary["result"]["count"] == 0  # no note approved yet: the review gate holds
    assert_usage_error(
        missing, f"cannot import module '{module}_missing'", f"the current directory, {tmp_path}"
    )


def test_a_failed_run_exits_1(flow: str, db: Path) -> None:
    result = invoke("run", flow, "--input", '{"companies": ["Acme", "Boom"]}', "--db", db, "--json")

    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "failed"
    assert summary["phases"]["digest"]["failed"] == 1


def test_run_keeps_its_reference_and_options_for_resume(flow: str, db: Path) -> None:
    run_id = start(flow, db)["run_id"]
    invoke("run", flow, "--input", INPUT, "--db", db, "--latency", "5", "--json")

    store = SQLiteStore(db)
    try:
        record = store.run(run_id)
        latest = store.runs(1)[0]
    finally:
        store.close()
    assert record is not None
    assert record.ref == flow
    assert record.options["latency"] == 0.0
    assert record.options["models"] == {}  # a workflow of function roles binds no model
    assert latest.options["latency"] == 5.0


def test_a_relative_file_reference_is_kept_absolute(
    flow: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    run_id = start("flow.py:workflow", tmp_path / "j.db")["run_id"]

    runs = json.loads(invoke("runs", "--db", tmp_path / "j.db", "--json").stdout)
    assert runs[0]["run_id"] == run_id
    assert runs[0]["ref"] == flow


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--input", "{bad"], ["--input is not valid JSON", "line 1, column 2"]),
        (["--input", "@missing.json"], ["input file 'missing.json' does not exist"]),
        (["--input", "[1, 2]"], ["JSON list", "JSON object"]),
        (["--input", '{"companies": "Acme"}'], ["input does not match Prospects", "companies"]),
        ([], ["input does not match Prospects", "--input"]),
        (["--latency", "-1"], ["--latency"]),
    ],
)
def test_bad_input_exits_2_with_a_message(
    flow: str, db: Path, args: list[str], fragments: list[str]
) -> None:
    result = invoke("run", flow, "--db", db, *args)

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
    assert not db.exists() or not json.loads(invoke("runs", "--db", db, "--json").stdout)


def nested(levels: int) -> str:
    """An input object whose `deep` field makes it nest `levels` levels, the object included."""
    return '{"companies": ["Acme"], "deep": ' + "[" * (levels - 1) + "]" * (levels - 1) + "}"


@pytest.mark.parametrize(
    ("input", "fragments"),
    [
        ('{"companies": ["Acme"], "weight": NaN}', ["the number at weight is NaN"]),
        (
            '{"companies": ["Acme"], "meta": {"scores": [1, -Infinity]}}',
            ["the number at meta.scores[1] is -Infinity"],
        ),
        ('{"companies": ["Acme"], "weight": Infinity}', ["the number at weight is Infinity"]),
        ('{"companies": ["Acme"], "weight": 1e400}', ["too large for a float"]),
        (nested(201), ["nests more than 200 levels deep"]),
        (nested(250), ["nests more than 200 levels deep"]),
        (nested(10_000), ["nests more than 200 levels deep"]),
        ("[" * 10_000 + "]" * 10_000, ["nests more than 200 levels deep"]),
        ('{"companies": ["Acme"], "weight": ' + "9" * 5000 + "}", ["digits"]),
    ],
    ids=["nan", "nested-inf", "inf", "overflow", "201", "250", "10000", "10000-list", "digits"],
)
@pytest.mark.parametrize("from_file", [False, True])
def test_input_json_cannot_hold_or_nested_too_deep_exits_2(
    flow: str, db: Path, tmp_path: Path, input: str, fragments: list[str], from_file: bool
) -> None:
    where = "--input"
    if from_file:
        (tmp_path / "input.json").write_text(input, encoding="utf-8")
        input, where = f"@{tmp_path / 'input.json'}", "input file"

    result = invoke("run", flow, "--input", input, "--db", db)

    assert_usage_error(result, f"{where}", "is refused: ", *fragments)
    assert not db.exists() or not json.loads(invoke("runs", "--db", db, "--json").stdout)


@pytest.mark.parametrize("levels", [199, 200])
def test_input_nested_up_to_the_limit_runs(flow: str, db: Path, levels: int) -> None:
    assert start(flow, db, nested(levels))["status"] == "completed"


@pytest.mark.parametrize(
    ("ref", "fragment"),
    [
        ("nowhere/flow.py:workflow", "does not exist"),
        ("{dir}/flow.py:missing", "has no attribute 'missing'"),
        ("flow", "is not a workflow reference"),
        ("hubspoke_no_such_module:workflow", "cannot import module"),
        ("{dir}/flow.py:Prospects", "is a class"),
        ("{dir}/flow.py:GATE", "not a hubspoke.Workflow"),
    ],
)
def test_bad_workflow_reference_exits_2(flow: str, db: Path, ref: str, fragment: str) -> None:
    ref = ref.format(dir=Path(flow.rpartition(":")[0]).parent)

    result = invoke("run", ref, "--input", INPUT, "--db", db)

    assert_usage_error(result, fragment)


def test_a_wrong_workflow_definition_exits_2(tmp_path: Path, db: Path) -> None:
    source = FLOW.replace(
        'Phase(name="digest", role="digester"', 'Phase(name="digest", role="nobody"'
    )
    (tmp_path / "broken.py").write_text(source, encoding="utf-8")

    result = invoke("run", f"{tmp_path / 'broken.py'}:workflow", "--input", INPUT, "--db", db)

    assert_usage_error(result, "the workflow is not valid", "phase 'digest'", "no role named")


# demo --------------------------------------------------------------------------------------------


def test_an_unknown_demo_exits_2_and_lists_the_demos() -> None:
    result = invoke("demo", "nope")

    assert_usage_error(result, "unknown demo 'nope'", "sales")


def test_demo_runs_a_bundled_workflow_on_its_input(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cli_test_demo_flow.py").write_text(FLOW, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    demo = Demo("notes", "cli_test_demo_flow:workflow", "DEMO_INPUT", "notes on companies")
    monkeypatch.setitem(DEMOS, "notes", demo)

    result = invoke("demo", "notes", "--db", db, "--json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed"
    assert summary["phases"]["draft"]["items"] == 2


def test_the_sales_demo_runs_offline(db: Path) -> None:
    result = invoke("demo", "sales", "--db", db, "--json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "waiting"
    assert summary["cards_in_review"] > 0
    assert all(role["usd"] > 0 for role in summary["usage_by_role"].values())
    assert invoke("cards", summary["run_id"][:12], "--db", db).exit_code == 0


# reading the journal -----------------------------------------------------------------------------


def test_runs_lists_runs_newest_first(flow: str, db: Path) -> None:
    first = start(flow, db)["run_id"]
    second = start(flow, db)["run_id"]

    rows = json.loads(invoke("runs", "--db", db, "--json").stdout)
    table = invoke("runs", "--db", db)

    assert [r["run_id"] for r in rows] == [second, first]
    assert set(rows[0]) >= {"run_id", "workflow", "status", "created", "parent_run"}
    assert rows[0]["workflow"] == "notes"
    assert rows[0]["status"] == "waiting"
    assert table.exit_code == 0
    assert first in table.stdout and second in table.stdout


LONG_NAME = "notes-on-companies-and-the-people-who-run-them-for-outreach-drafts"


def test_tables_keep_whole_ids_when_not_on_a_terminal(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    path = tmp_path / "long.py"
    path.write_text(FLOW.replace('name="notes",', f'name="{LONG_NAME}",'), encoding="utf-8")
    run_id = start(f"{path}:workflow", db, '{"companies": ["Acme", "Hold"]}')["run_id"]
    cards = json.loads(invoke("cards", "--db", db, "--json").stdout)
    card_ids = [card["id"] for column in cards.values() for card in column]
    artifacts = json.loads(invoke("artifacts", run_id, "--db", db, "--json").stdout)

    for args, whole in [
        (("runs",), [run_id, LONG_NAME, "waiting"]),
        (("cards",), [run_id, *card_ids, "is Hold a real company?"]),
        (("artifacts", run_id), [a["id"] for a in artifacts]),
        (("show", run_id), [run_id, LONG_NAME]),
    ]:
        result = invoke(*args, "--db", db)
        assert result.exit_code == 0, result.output
        assert "…" not in result.stdout, result.stdout
        for text in whole:
            assert text in result.stdout, (args, text, result.stdout)


def test_runs_written_to_a_file_keeps_whole_ids(flow: str, db: Path, tmp_path: Path) -> None:
    path = tmp_path / "long.py"
    path.write_text(FLOW.replace('name="notes",', f'name="{LONG_NAME}",'), encoding="utf-8")
    run_id = start(f"{path}:workflow", db)["run_id"]
    listing = tmp_path / "runs.txt"

    with listing.open("w", encoding="utf-8") as out:
        done = subprocess.run(
            [sys.executable, "-m", "hubspoke.cli", "runs", "--db", str(db)],
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "80"},
            timeout=60,
            check=False,
        )

    assert done.returncode == 0, done.stderr
    text = listing.read_text(encoding="utf-8")
    assert "…" not in text
    (row,) = [line for line in text.splitlines() if run_id in line]
    assert row.split()[:3] == [run_id, LONG_NAME, "waiting"]
    assert max(len(line) for line in text.splitlines()) < PIPED_WIDTH


def test_show_reports_timeline_outcomes_and_usage(flow: str, db: Path) -> None:
    run_id = start(flow, db)["run_id"]

    report = json.loads(invoke("show", run_id, "--db", db, "--json").stdout)
    human = invoke("show", run_id, "--db", db)

    assert report["run_id"] == run_id
    assert report["status"] == "waiting"
    assert report["outcomes"] == {"invalid": 1, "needs_human": 1, "output": 4}
    assert [span["phase"] for span in report["timeline"]] == ["draft", "digest"]
    assert all(span["status"] == "completed" for span in report["timeline"])
    assert report["phases"]["draft"]["retried"] == 1
    assert set(report["usage_by_role"]) == {"drafter", "digester"}
    assert report["ref"] == flow
    assert human.exit_code == 0
    for word in ("timeline", "outcomes", "needs_human", "usage by role", "drafter", "USD"):
        assert word in human.stdout


def test_events_json_is_one_event_per_line(flow: str, db: Path) -> None:
    run_id = start(flow, db)["run_id"]

    result = invoke("events", run_id, "--db", db, "--json")

    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(set(e) == EVENT_KEYS for e in events)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["run_id"] for e in events} == {run_id}
    assert events[0]["kind"] == "run.started"
    assert events[-1]["kind"] == "run.finished"
    assert events[-1]["data"] == {
        "status": "waiting",
        "reason": "1 item(s) wait for a person's decision: draft[2]",
    }


def test_events_filter_by_kind_and_family(flow: str, db: Path) -> None:
    run_id = start(flow, db)["run_id"]

    escalated = invoke("events", run_id, "--db", db, "--json", "--kind", "item.escalated")
    items = invoke("events", run_id, "--db", db, "--json", "-k", "item", "-k", "phase.started")
    human = invoke("events", run_id, "--db", db, "--kind", "item.retry")

    lines = [json.loads(line) for line in escalated.stdout.splitlines()]
    assert [(e["kind"], e["item"]) for e in lines] == [("item.escalated", "draft[2]")]
    kinds = {json.loads(line)["kind"] for line in items.stdout.splitlines()}
    assert kinds == {"item.accepted", "item.retry", "item.escalated", "phase.started"}
    assert human.exit_code == 0
    assert "item.retry" in human.stdout and "draft[1]" in human.stdout


def test_events_with_an_unknown_kind_exits_2(flow: str, db: Path) -> None:
    run_id = start(flow, db)["run_id"]

    result = invoke("events", run_id, "--db", db, "--kind", "item.exploded")

    assert_usage_error(result, "unknown event kind 'item.exploded'", "item.escalated")


def test_artifacts_lists_accepted_outputs(flow: str, db: Path) -> None:
    run_id = start(flow, db)["run_id"]

    everything = json.loads(invoke("artifacts", run_id, "--db", db, "--json").stdout)
    drafts = json.loads(
        invoke("artifacts", run_id, "--db", db, "--phase", "draft", "--json").stdout
    )
    human = invoke("artifacts", run_id, "--db", db)

    assert len(everything) == 4
    assert sorted(a["item"] for a in drafts) == ["draft[0]", "draft[1]", "draft[3]"]
    assert drafts[0]["content"] == {"company": "Acme", "text": "a note on Acme"}
    assert set(drafts[0]) >= {"id", "run_id", "phase", "role", "item", "schema", "content"}
    assert human.exit_code == 0 and "art_" in human.stdout


def test_artifacts_of_an_unknown_phase_exits_2(flow: str, db: Path) -> None:
    run_id = start(flow, db)["run_id"]

    result = invoke("artifacts", run_id, "--db", db, "--phase", "nope")

    assert_usage_error(result, "no phase 'nope'", "draft, digest")


def test_cards_are_grouped_by_column(flow: str, db: Path) -> None:
    run_id = start(flow, db)["run_id"]
    start(flow, db)

    board = json.loads(invoke("cards", run_id, "--db", db, "--json").stdout)
    every_run = json.loads(invoke("cards", "--db", db, "--json").stdout)
    human = invoke("cards", run_id, "--db", db)

    assert list(board)[:2] == ["review", "escalated"]
    assert set(board) >= {"review", "escalated", "approved", "parked", "skipped"}
    assert sorted(c["title"] for c in board["review"]) == [
        "note on Acme",
        "note on Flaky",
        "note on Zeta",
    ]
    assert [c["item"] for c in board["escalated"]] == ["draft[2]"]
    assert board["escalated"][0]["note"] == "is Hold a real company?"
    assert len(every_run["review"]) == 6
    assert human.exit_code == 0
    assert "review (3)" in human.stdout and "escalated (1)" in human.stdout


def test_a_unique_prefix_names_a_run_and_an_ambiguous_one_exits_2(flow: str, db: Path) -> None:
    run_id = start(flow, db)["run_id"]
    start(flow, db)

    shown = invoke("show", run_id[:10], "--db", db, "--json")
    ambiguous = invoke("show", "run_", "--db", db)
    unknown = invoke("show", "run_nothing", "--db", db)

    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["run_id"] == run_id
    assert_usage_error(ambiguous, "matches 2 runs", "give more of the run id")
    assert_usage_error(unknown, "no run 'run_nothing'", "hubspoke runs")


def test_reading_a_missing_journal_exits_2(tmp_path: Path) -> None:
    result = invoke("runs", "--db", tmp_path / "none.db")

    assert_usage_error(result, "no journal at", "none.db (from --db)")
    assert not (tmp_path / "none.db").exists()


def test_a_file_that_is_not_a_journal_exits_2(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a database, just text\n" * 100, encoding="utf-8")

    result = invoke("runs", "--db", tmp_path / "notes.txt")

    assert_usage_error(result, "cannot open the journal")


# a journal the user cannot write ----------------------------------------------------------------

READERS = [
    ["runs", "--json"],
    ["show", "RUN", "--json"],
    ["events", "RUN", "--json"],
    ["artifacts", "RUN", "--json"],
    ["cards", "RUN", "--json"],
]
"""Every command that only reads the journal; RUN stands for the run's id."""


def files_of(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of the folder: its bytes and modification time (ns)."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A folder for a frozen journal; made writable again at the end, so it can be removed."""
    folder = tmp_path / "frozen"
    folder.mkdir()
    yield folder
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def frozen_copy(db: Path, folder: Path, *extra: str) -> Path:
    """Copy the journal (and the named side files, e.g. ``-wal``) into `folder`, then take
    away every write permission on the files and the folder."""
    copy = folder / db.name
    for suffix in ("", *extra):
        shutil.copy(db.with_name(db.name + suffix), folder / (db.name + suffix))
        (folder / (db.name + suffix)).chmod(0o444)
    folder.chmod(0o555)
    return copy


def _obey_file_permissions() -> None:
    """Run in the child before it execs: take from root's capability bounding set what lets it
    write (and read) files and folders whose permissions say no, so chmod holds for it too."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def as_reader(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `hubspoke ARGS` in a process that may not write `cwd` (a frozen folder): as this
    user, or for root (whom chmod does not stop) without its power to override permissions.
    Skips the test where that cannot be arranged, after checking that a write really fails."""
    # This checkout's hubspoke, whatever the working folder (PYTHONPATH may be relative).
    source = str(Path(hubspoke.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    drop: dict[str, Any] = {"env": env}
    if os.geteuid() == 0:
        if not sys.platform.startswith("linux"):
            pytest.skip("running as root, and root's write privilege can only be dropped on Linux")
        drop["preexec_fn"] = _obey_file_permissions
    probe = [sys.executable, "-c", "open('probe', 'w')"]
    try:
        tried = subprocess.run(probe, cwd=cwd, capture_output=True, text=True, **drop)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"cannot start a process without write access here: {e}")
    if tried.returncode == 0 or "PermissionError" not in tried.stderr:
        (cwd / "probe").unlink(missing_ok=True)
        pytest.skip(f"a process here can still write {cwd}: {tried.stderr[-300:]}")
    command = [sys.executable, "-m", "hubspoke.cli", *(str(a) for a in args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, **drop)


def test_every_reading_command_opens_the_journal_read_only(
    flow: str, db: Path, shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """runs, show, events, artifacts and cards on a chmod a-w journal in a chmod a-w folder:
    they answer, ask for a read-only store, and leave the file's bytes and time as they were
    (root may write anything, so the store's own mode is what is checked here)."""
    run_id = start(flow, db)["run_id"]
    copy = frozen_copy(db, shared)
    before = files_of(shared)[copy.name]
    modes: list[bool] = []

    class Spy(SQLiteStore):
        def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
            modes.append(read_only)
            super().__init__(path, read_only=read_only)

    monkeypatch.setattr("hubspoke.cli.store.SQLiteStore", Spy)
    outputs = {}
    for command in READERS:
        result = invoke(*[run_id if a == "RUN" else a for a in command], "--db", copy)
        assert result.exit_code == 0, (command, result.output)
        outputs[command[0]] = result.stdout

    assert modes == [True] * len(READERS)
    assert files_of(shared)[copy.name] == before
    assert [r["run_id"] for r in json.loads(outputs["runs"])] == [run_id]
    assert json.loads(outputs["show"])["status"] == "waiting"
    assert len(json.loads(outputs["artifacts"])) == 4
    assert [c["item"] for c in json.loads(outputs["cards"])["escalated"]] == ["draft[2]"]


def test_a_user_who_cannot_write_the_journal_can_read_it(flow: str, db: Path, shared: Path) -> None:
    """End to end, in a process that really cannot write: `runs` and `show` answer, nothing is
    created next to the journal (no -shm, no -wal) and its bytes and time are unchanged."""
    run_id = start(flow, db)["run_id"]
    copy = frozen_copy(db, shared)
    before = files_of(shared)

    listed = as_reader("runs", "--json", "--db", copy, cwd=shared)
    shown = as_reader("show", run_id[:10], "--db", copy, cwd=shared)

    assert listed.returncode == 0, listed.stderr
    assert [(r["run_id"], r["status"]) for r in json.loads(listed.stdout)] == [(run_id, "waiting")]
    assert shown.returncode == 0, shown.stderr
    assert run_id in shown.stdout and "timeline" in shown.stdout
    assert files_of(shared) == before


def writes_in_the_wal(db: Path, flow: str) -> tuple[str, SQLiteStore]:
    """A finished run, then one more event that is only in the -wal file while the returned
    store stays open (as when its writer is killed)."""
    run_id = start(flow, db)["run_id"]
    writer = SQLiteStore(db)
    extra = Event(run_id, 999, time.time(), EventKind.RUN_RESUMED, data={"in_flight": []})
    writer.append([extra])
    assert db.with_name(db.name + "-wal").stat().st_size > 0
    return run_id, writer


def test_a_crashed_writers_wal_is_read_from_a_frozen_folder(
    flow: str, db: Path, shared: Path
) -> None:
    """A killed writer left its -wal and -shm files: a reader that cannot write still reads
    the writes they hold."""
    run_id, writer = writes_in_the_wal(db, flow)
    try:
        copy = frozen_copy(db, shared, "-wal", "-shm")
    finally:
        writer.close()
    before = files_of(shared)

    result = as_reader("events", run_id, "--json", "--db", copy, cwd=shared)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["seq"] == 999
    assert files_of(shared) == before


def test_a_wal_that_cannot_be_read_without_writing_exits_2(
    flow: str, db: Path, shared: Path
) -> None:
    """The -wal file holds writes and the folder refuses the -shm file a reader needs to read
    them: reading the database file alone would miss them, so the command says so."""
    _, writer = writes_in_the_wal(db, flow)
    try:
        copy = frozen_copy(db, shared, "-wal")
    finally:
        writer.close()

    result = as_reader("runs", "--db", copy, cwd=shared)

    assert result.returncode == 2, result.stderr
    assert "journal.db-wal holds writes not yet in the database" in result.stderr
    assert "Copy the journal with its -wal file to a folder you can write" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in shared.iterdir()) == ["journal.db", "journal.db-wal"]


# resume ------------------------------------------------------------------------------------------


def test_resume_of_an_unknown_run_exits_2(flow: str, db: Path) -> None:
    start(flow, db)

    result = invoke("resume", "run_unknown", "--db", db)

    assert_usage_error(result, "no run 'run_unknown'")


def test_resume_of_a_finished_run_exits_0(flow: str, db: Path) -> None:
    run_id = start(flow, db)["run_id"]

    human = invoke("resume", run_id, "--db", db)
    machine = invoke("resume", run_id, "--db", db, "--json")

    assert human.exit_code == 0
    assert f"run {run_id} is waiting" in human.stdout
    assert machine.exit_code == 0
    assert json.loads(machine.stdout)["status"] == "waiting"


def test_resume_finishes_a_crashed_run(flow: str, db: Path) -> None:
    run_id = crashed_run(db, flow)

    result = invoke("resume", run_id[:12], "--db", db, "--json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["run_id"] == run_id
    assert summary["status"] == "completed"
    assert summary["phases"]["draft"]["accepted"] == 1
    assert "run_crashed0001 resumed" in result.stderr


def moved(flow: str, tmp_path: Path) -> Path:
    """Move the notes workflow's file elsewhere; return its new path."""
    old = Path(flow.rpartition(":")[0])
    (tmp_path / "moved").mkdir()
    return old.rename(tmp_path / "moved" / "flow.py")


def test_resume_loads_a_moved_workflow_from_the_workflow_option(
    flow: str, db: Path, tmp_path: Path
) -> None:
    run_id = crashed_run(db, flow)
    new = moved(flow, tmp_path)

    lost = invoke("resume", run_id, "--db", db)
    assert_usage_error(lost, "does not exist", "resume with --workflow FILE.py:NAME")

    result = invoke("resume", run_id, "--db", db, "--json", "--workflow", new)  # NAME as kept

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "completed"


def test_resume_of_a_run_started_from_python_takes_the_workflow_option(flow: str, db: Path) -> None:
    run_id = crashed_run(db, None)

    lost = invoke("resume", run_id, "--db", db)
    assert_usage_error(lost, "started from Python", "--workflow FILE.py:NAME")

    result = invoke("resume", run_id, "--db", db, "--json", "-w", flow)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "completed"


def test_resume_with_a_changed_workflow_exits_2_saying_what_changed(
    flow: str, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = crashed_run(db, flow)

    async def refuse(self: Foreman, run_id: str, **_: Any) -> Any:
        raise WorkflowChanged(run_id, ["role 'drafter': output schema changed"])

    monkeypatch.setattr(Foreman, "resume", refuse)
    result = invoke("resume", run_id, "--db", db)

    assert_usage_error(
        result,
        f"run {run_id} cannot resume: its workflow changed since it started (role 'drafter': "
        "output schema changed)",
        "--workflow FILE.py:NAME",
    )


def test_resume_refuses_a_workflow_whose_schemas_changed(flow: str, db: Path) -> None:
    run_id = crashed_run(db, flow, shape=load_workflow(flow).shape())
    path = Path(flow.rpartition(":")[0])
    source = path.read_text(encoding="utf-8")
    path.write_text(source.replace("    text: str\n", "    text: str\n    stars: int\n"), "utf-8")

    result = invoke("resume", run_id, "--db", db)

    assert_usage_error(
        result,
        "its workflow changed since it started",
        "role 'drafter': output schema changed",
        "role 'digester': input schema changed",
    )


def test_runs_shows_a_crashed_run_as_stopped_and_a_held_one_as_running(flow: str, db: Path) -> None:
    run_id = crashed_run(db, flow)
    rows = json.loads(invoke("runs", "--db", db, "--json").stdout)
    assert [r["status"] for r in rows if r["run_id"] == run_id] == ["stopped"]
    store = SQLiteStore(db)
    try:
        assert store.acquire(run_id, "another-foreman") is None
        rows = json.loads(invoke("runs", "--db", db, "--json").stdout)
    finally:
        store.close()
    assert [r["status"] for r in rows if r["run_id"] == run_id] == ["running"]


def test_resume_of_a_run_held_by_another_process_exits_2(flow: str, db: Path) -> None:
    run_id = crashed_run(db, flow)
    store = SQLiteStore(db)
    try:
        assert store.acquire(run_id, "another-foreman") is None  # held by this (live) process
        result = invoke("resume", run_id, "--db", db)
    finally:
        store.close()

    assert_usage_error(result, "another process holds the run", f"process {os.getpid()}")


def interrupted_run(returncode: int, err: str) -> str:
    """The id of the run a CLI process stopped as Ctrl-C does: it exits 130 with no traceback
    and says how to resume, naming the run (`err` is what it wrote to stderr)."""
    assert returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted; resume with: hubspoke resume run_" in err
    return err.split("hubspoke resume ")[1].split()[0]


def test_ctrl_c_stops_the_run_and_resume_finishes_it(flow: str, db: Path, tmp_path: Path) -> None:
    (tmp_path / "gate").touch()  # the "Slow" item waits until the process is interrupted
    command = [
        sys.executable,
        "-m",
        "hubspoke.cli",
        "run",
        flow,
        "--db",
        str(db),
        "--input",
        '{"companies": ["Acme", "Slow"]}',
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        seen = ""
        while "phase draft: started" not in seen:
            line = process.stderr.readline()
            assert line, f"the run ended before its first phase: {seen}"
            seen += line
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)

    run_id = interrupted_run(process.returncode, err)
    (tmp_path / "gate").unlink()

    result = invoke("resume", run_id, "--db", db, "--json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed"
    assert summary["phases"]["draft"]["accepted"] == 2


def _dispatch_started(db: Path) -> bool:
    """Whether the journal at `db` holds a `dispatch.started` event yet (read-only)."""
    if not db.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            found = conn.execute(
                "SELECT 1 FROM events WHERE kind = 'dispatch.started' LIMIT 1"
            ).fetchone()
    except sqlite3.OperationalError:  # the file or its tables are not there yet
        return False
    return found is not None


def test_sigterm_stops_the_run_like_ctrl_c_and_resume_finishes_it(db: Path) -> None:
    command = [sys.executable, "-m", "hubspoke.cli", "demo", "sales", "--latency", "200"]
    with subprocess.Popen(
        [*command, "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        deadline = time.monotonic() + 60
        while not _dispatch_started(db):  # poll the journal: the run is dispatching
            assert process.poll() is None, "the run ended before its first dispatch"
            assert time.monotonic() < deadline, "no dispatch started within 60 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)

    run_id = interrupted_run(process.returncode, err)
    assert json.loads(invoke("runs", "--db", db, "--json").stdout)[0]["status"] == "stopped"

    result = invoke("resume", run_id, "--db", db, "--json")

    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["run_id"] == run_id
    assert summary["status"] == "waiting"
    assert summary["phases"]["drafts"]["accepted"] == 9
    assert summary["cards_in_review"] == 9


# the live view -----------------------------------------------------------------------------------


class CountingLiveProgress(LiveProgress):
    """Counts the frames drawn."""

    frames = 0

    def render(self) -> RenderableType:
        self.frames += 1
        return super().render()


def test_the_live_view_folds_every_event_but_redraws_on_a_timer(flow: str, db: Path) -> None:
    workflow = load_workflow(flow)
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    live = CountingLiveProgress(console, "run_live", [p.name for p in workflow.phases])
    companies = [f"Company {i}" for i in range(300)] + ["Flaky", "Hold"]
    store = SQLiteStore(db)

    async def main() -> None:
        foreman = Foreman(workflow, store, listeners=[live])
        async with live.showing():
            await foreman.run({"companies": companies}, run_id="run_live")

    try:
        asyncio.run(main())
    finally:
        store.close()

    assert live.events > 1000
    assert live.state.phases["draft"].accepted == 301
    assert live.state.status == "waiting"
    assert live.frames < live.events / 20  # a few frames, not one per event
    text = screen.getvalue()
    for fragment in ("run_live", "waiting", "draft", "digest", "302/302", "1 escalated"):
        assert fragment in text


def test_the_live_view_shows_pending_phases_and_ladder_events() -> None:
    screen = io.StringIO()
    console = Console(file=screen, width=120)
    live = LiveProgress(console, "run_x", ["draft", "digest"])
    live(Event("run_x", 1, 1.0, EventKind.RUN_STARTED, data={"workflow": "notes"}))
    live(Event("run_x", 2, 1.0, EventKind.PHASE_STARTED, phase="draft", data={"items": 2}))
    live(
        Event(
            "run_x",
            3,
            1.0,
            EventKind.ITEM_ESCALATED,
            phase="draft",
            role="drafter",
            item="draft[1]",
            data={"reason": "who is this?"},
        )
    )
    live(Event("run_other", 1, 1.0, EventKind.RUN_STARTED, data={"workflow": "other"}))

    console.print(live.render())

    text = screen.getvalue()
    assert "pending" in text and "digest" in text
    assert "1/2" in text
    assert "escalated draft[1] (drafter) who is this?" in text
    assert "other" not in text


# which journal -----------------------------------------------------------------------------------


def test_db_flag_wins_over_the_environment_which_wins_over_the_default(
    flow: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    flag, env = tmp_path / "flag.db", tmp_path / "env.db"

    monkeypatch.setenv("HUBSPOKE_DB", str(env))
    by_flag = invoke("run", flow, "--input", INPUT, "--db", flag, "--json")
    by_env = invoke("run", flow, "--input", INPUT, "--json")
    monkeypatch.delenv("HUBSPOKE_DB")
    by_default = invoke("run", flow, "--input", INPUT, "--json")

    def listed(*args: str | Path) -> list[str]:
        return [r["run_id"] for r in json.loads(invoke("runs", "--json", *args).stdout)]

    assert listed("--db", flag) == [json.loads(by_flag.stdout)["run_id"]]
    assert listed("--db", env) == [json.loads(by_env.stdout)["run_id"]]
    assert listed() == [json.loads(by_default.stdout)["run_id"]]
    assert (tmp_path / "hubspoke.db").exists()


def test_resolve_db_order() -> None:
    assert resolve_db(Path("a.db"), {"HUBSPOKE_DB": "b.db"}).path == Path("a.db")
    assert resolve_db(None, {"HUBSPOKE_DB": "b.db"}).source == "HUBSPOKE_DB"
    assert resolve_db(None, {"HUBSPOKE_DB": "b.db"}).path == Path("b.db")
    assert resolve_db(None, {}).path == DEFAULT_DB == Path("hubspoke.db")
    assert resolve_db(None, {"HUBSPOKE_DB": " "}).source == "default"


# help --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["demo", "run", "resume", "runs", "show", "events", "artifacts", "cards"]
)
def test_every_command_has_help_with_an_example(command: str) -> None:
    result = invoke(command, "--help")

    assert result.exit_code == 0
    assert "Example" in result.stdout
    assert "--db" in result.stdout


def test_top_level_help_documents_the_journal_and_exit_codes() -> None:
    result = invoke("--help")

    assert result.exit_code == 0
    for fragment in ("HUBSPOKE_DB", "hubspoke.db", "Exit codes", "130", "demo", "resume"):
        assert fragment in result.stdout


def test_version() -> None:
    result = invoke("--version")

    assert result.exit_code == 0
    assert result.stdout.startswith("hubspoke ")


SECRET_FLOW = """
import os
from pydantic import BaseModel
from hubspoke import Phase, Role, Workflow

class Q(BaseModel):
    text: str

async def leak(q, ctx):
    return Q(text="key=" + os.environ["ACME_API_KEY"])

workflow = Workflow(
    name="leak", input=Q,
    roles=[Role(name="leaker", purpose="Leak.", input=Q, output=Q, function=leak)],
    phases=[Phase(name="p", role="leaker", input=lambda run: run.input)],
    result=lambda run: run.output("p"),
)
"""


def test_run_json_result_is_scrubbed(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-CLI-PLANTED-987654321"
    monkeypatch.setenv("ACME_API_KEY", secret)
    path = tmp_path / "leak.py"
    path.write_text(SECRET_FLOW, encoding="utf-8")
    result = invoke("run", f"{path}:workflow", "--input", '{"text": "hi"}', "--db", db, "--json")
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    assert json.loads(result.stdout)["result"] == {"text": "key=[REDACTED]"}


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("raise RuntimeError('the module fell over')\n", "RuntimeError: the module fell over"),
        ("def broken(:\n", "SyntaxError"),
    ],
    ids=["raises", "syntax"],
)
def test_a_module_that_fails_to_import_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: Path, source: str, words: str
) -> None:
    (tmp_path / "badflow.py").write_text(source, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "badflow:workflow", "--db", db)
    assert_usage_error(result, "importing 'badflow' failed", words)


def test_item_keys_are_text_in_every_table_not_rich_markup() -> None:
    """A planned step's key (``search[s1]``) reads as Rich markup; every table prints it as is."""
    from hubspoke.cli.render import board, items_table, outbox_table

    usage = {"usd": 0.001, "steps": 1, "requests": 1, "input_tokens": 5, "output_tokens": 5}
    items = {
        k: {"phase": "search", "role": "searcher", "usage": usage}
        for k in ("search[s1]", "search[b]")
    }
    card = {
        "id": "card_1",
        "run_id": "run_1",
        "item": "search[s2-2]",
        "title": "t",
        "risk": "low",
        "note": "",
    }
    entry = {"key": "k1", "run_id": "run_1", "item": "send[s1]", "created": 0.0, "content": {}}
    screen = io.StringIO()
    console = Console(file=screen, width=200)

    table = items_table(items)
    assert table is not None
    console.print(table)
    board(console, {"escalated": [card]}, one_run=True)
    console.print(outbox_table([entry]))

    shown = screen.getvalue()
    for key in ("search[s1]", "search[b]", "search[s2-2]", "send[s1]"):
        assert key in shown
