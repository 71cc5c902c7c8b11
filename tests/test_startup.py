"""Start-up stays light: what `import hubspoke` and the reading commands load, in a fresh process.

pydantic-ai (the model layer) is needed only when a model or an agent specialist is built, and
the foreman only by the commands that run a workflow. Each test runs its code in a new
interpreter and asserts on the modules loaded at the end (`sys.modules`), never on time; the
timings are in `benchmarks/startup.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import hubspoke
from hubspoke import Foreman, SQLiteStore
from hubspoke.loader import load_workflow

SRC = Path(hubspoke.__file__).resolve().parents[1]

HEAVY = (
    "pydantic_ai",
    "hubspoke.foreman",
    "hubspoke.subforeman",
    "opentelemetry",
    "psycopg",
    "ray",
)
"""Modules (and their submodules) that a light start must not load. OpenTelemetry is loaded
only when a run is traced, or by pydantic-ai (which imports its API); psycopg only when a
``postgresql://`` store is opened; Ray only when a `RayExecutor` is made."""

PROBE = textwrap.dedent(
    """
    import json, sys

    report, body, heavy = sys.argv[1], sys.argv[2], tuple(json.loads(sys.argv[3]))
    code = 0
    try:
        exec(compile(body, "<probe>", "exec"), {"__name__": "__probe__"})
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    below = tuple(name + "." for name in heavy)
    loaded = sorted(m for m in sys.modules if m in heavy or m.startswith(below))
    with open(report, "w", encoding="utf-8") as f:
        json.dump({"code": code, "loaded": loaded}, f)
    """
)

FLOW = textwrap.dedent(
    '''
    """A workflow of function roles only: it needs no model."""
    from pydantic import BaseModel

    from hubspoke import Context, Phase, Role, Workflow


    class Topic(BaseModel):
        topic: str


    class Note(BaseModel):
        text: str


    async def note(item: Topic, ctx: Context) -> Note:
        return Note(text=f"{item.topic} is old")


    workflow = Workflow(
        name="notes",
        input=Topic,
        roles=[Role(name="noter", purpose="Notes a topic.", input=Topic, output=Note,
                    function=note)],
        phases=[Phase(name="note", role="noter", input=lambda run: run.input)],
        result=lambda run: run.output("note"),
    )
    '''
)


def probe(tmp_path: Path, body: str, heavy: tuple[str, ...] = HEAVY) -> dict[str, Any]:
    """Run `body` in a fresh interpreter (cwd `tmp_path`); its exit code and the modules of
    `heavy` it had loaded at the end."""
    script, report = tmp_path / "probe.py", tmp_path / "probe.json"
    script.write_text(PROBE, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(script), str(report), textwrap.dedent(body), json.dumps(heavy)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert report.exists(), done.stderr
    result: dict[str, Any] = json.loads(report.read_text(encoding="utf-8"))
    result["stdout"], result["stderr"] = done.stdout, done.stderr
    return result


@pytest.fixture
def flow(tmp_path: Path) -> str:
    (tmp_path / "flow.py").write_text(FLOW, encoding="utf-8")
    return f"{tmp_path / 'flow.py'}:workflow"


def test_import_hubspoke_loads_neither_the_model_layer_nor_the_foreman(tmp_path: Path) -> None:
    result = probe(tmp_path, "import hubspoke")

    assert result["code"] == 0, result["stderr"]
    assert result["loaded"] == []


def test_the_executors_load_no_ray_until_a_ray_executor_is_made(tmp_path: Path) -> None:
    body = """
    from hubspoke.executors import Executor, LocalExecutor, Preparing, RayExecutor
    import hubspoke.executors.ray
    """
    result = probe(tmp_path, body, heavy=("ray",))

    assert result["code"] == 0, result["stderr"]
    assert result["loaded"] == []


def test_the_contracts_load_no_model_layer(tmp_path: Path) -> None:
    # Everything a function-only workflow is written with; only the foreman (below), the
    # offline model (which is a pydantic-ai model) and the Postgres store (psycopg) are left out.
    names = sorted(
        set(hubspoke.__all__) - {"Foreman", "RunResult", "OfflineModel", "PostgresStore"}
    )

    result = probe(tmp_path, f"from hubspoke import {', '.join(names)}")

    assert result["code"] == 0, result["stderr"]
    assert result["loaded"] == []


def test_a_function_only_run_loads_no_model_layer(tmp_path: Path, flow: str) -> None:
    body = f"""
    import asyncio

    from hubspoke import Foreman, SQLiteStore
    from hubspoke.loader import load_workflow

    store = SQLiteStore("journal.db")
    result = asyncio.run(Foreman(load_workflow({flow!r}), store).run({{"topic": "tea"}}))
    store.close()
    assert result.status == "completed", result.reason
    assert result.result.text == "tea is old"
    """

    result = probe(tmp_path, body)

    assert result["code"] == 0, result["stderr"]
    assert "hubspoke.foreman" in result["loaded"]
    assert [m for m in result["loaded"] if m.split(".")[0] == "pydantic_ai"] == []
    # Not traced (no OTEL_* variable asks for it): nothing of OpenTelemetry is loaded.
    assert [m for m in result["loaded"] if m.split(".")[0] == "opentelemetry"] == []


@pytest.fixture
def journal(tmp_path: Path, flow: str) -> tuple[Path, str]:
    """A journal holding one finished run of the function-only workflow, and the run's id."""
    import asyncio

    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    try:
        run = asyncio.run(Foreman(load_workflow(flow), store).run({"topic": "tea"}))
    finally:
        store.close()
    assert run.status == "completed"
    return db, run.run_id


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["run", "--help"],
        ["--version"],
        ["runs", "--db", "{db}"],
        ["runs", "--db", "{db}", "--json"],
        ["show", "{run}", "--db", "{db}"],
        ["show", "{run}", "--db", "{db}", "--json"],
        ["events", "{run}", "--db", "{db}"],
        ["artifacts", "{run}", "--db", "{db}"],
        ["cards", "--db", "{db}"],
        ["board", "--db", "{db}"],
        ["board", "--run", "{run}", "--column", "review", "--json", "--db", "{db}"],
        ["outbox", "--db", "{db}"],
        ["outbox", "--run", "{run}", "--json", "--db", "{db}"],
        ["card", "--help"],
        ["card", "show", "card_missing", "--db", "{db}"],
        ["show", "run_missing", "--db", "{db}"],
    ],
    ids=lambda args: " ".join(a for a in args if not a.startswith("{")),
)
def test_help_and_the_reading_commands_load_no_foreman(
    tmp_path: Path, journal: tuple[Path, str], args: list[str]
) -> None:
    db, run_id = journal
    argv = ["hubspoke", *(a.format(db=db, run=run_id) for a in args)]
    body = f"""
    import sys

    from hubspoke.cli import main

    sys.argv = {argv!r}
    main()
    """

    result = probe(tmp_path, body)

    expected_code = 2 if any(a.endswith("_missing") for a in args) else 0
    assert result["code"] == expected_code, result["stderr"]
    assert result["loaded"] == []


WEB = ("fastapi", "starlette", "uvicorn", "jinja2", "python_multipart", "hubspoke.web")
"""The web extra and the web app: only `hubspoke ui` itself loads them."""


@pytest.mark.parametrize("args", [["--help"], ["ui", "--help"], ["card", "--help"]])
def test_help_loads_no_web_framework(tmp_path: Path, args: list[str]) -> None:
    body = f"""
    import sys

    from hubspoke.cli import main

    sys.argv = {["hubspoke", *args]!r}
    main()
    """

    result = probe(tmp_path, body, heavy=(*HEAVY, *WEB))

    assert result["code"] == 0, result["stderr"]
    assert result["loaded"] == []


def test_ui_without_the_web_extra_says_how_to_install_it(tmp_path: Path) -> None:
    """With FastAPI not importable, `hubspoke ui` exits 2 naming the package and the extra."""
    (tmp_path / "journal.db").write_bytes(b"")
    body = """
    import sys

    sys.modules["fastapi"] = None  # as if the web extra were not installed
    from hubspoke.cli import main

    sys.argv = ["hubspoke", "ui", "--db", "journal.db"]
    main()
    """

    result = probe(tmp_path, body)

    assert result["code"] == 2, result["stderr"]
    said = " ".join(result["stderr"].split())
    assert "needs the web extra" in said and "fastapi is not installed" in said, said
    assert "pip install 'hubspoke[web]'" in said, said
    assert "Traceback" not in result["stderr"]


def test_card_show_loads_no_foreman(tmp_path: Path) -> None:
    """`hubspoke card show` on a real card (a sales demo draft) only reads the journal."""
    import asyncio

    from hubspoke.examples.sales import DEMO_INPUT, workflow

    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    try:
        run = asyncio.run(Foreman(workflow, store).run(DEMO_INPUT))
        card = store.cards(run.run_id)[-1].id
    finally:
        store.close()
    body = f"""
    import sys

    from hubspoke.cli import main

    sys.argv = ["hubspoke", "card", "show", {card[:12]!r}, "--db", {str(db)!r}]
    main()
    """

    result = probe(tmp_path, body)

    assert result["code"] == 0, result["stderr"]
    assert result["loaded"] == []
    assert card in result["stdout"] and "decide it: hubspoke card" in result["stdout"]


AGENT_FLOW = textwrap.dedent(
    """
    from pydantic import BaseModel

    from hubspoke import Phase, Role, Workflow


    class Topic(BaseModel):
        topic: str


    workflow = Workflow(
        name="agent",
        input=Topic,
        roles=[Role(name="writer", purpose="Writes.", input=Topic, output=Topic,
                    model="openai:gpt-6-luna")],
        phases=[Phase(name="write", role="writer", input=lambda run: run.input)],
    )
    """
)


@pytest.mark.parametrize("args", [["models", "{flow}"], ["models", "{flow}", "--json"], ["models"]])
def test_hubspoke_models_loads_no_foreman_and_no_model_layer(
    tmp_path: Path, args: list[str]
) -> None:
    (tmp_path / "agent.py").write_text(AGENT_FLOW, encoding="utf-8")
    argv = ["hubspoke", *(a.format(flow=f"{tmp_path / 'agent.py'}:workflow") for a in args)]
    body = f"""
    import os, sys

    from hubspoke.cli import main

    os.environ["OPENAI_API_KEY"] = "sk-test"
    sys.argv = {argv!r}
    main()
    """

    result = probe(tmp_path, body)

    assert result["code"] == 0, result["stderr"]
    assert result["loaded"] == []
    if "--json" in args:
        assert '"binding": "openai:gpt-6-luna"' in result["stdout"]


def test_the_benchmarks_bare_cli_has_every_command_and_runs(tmp_path: Path) -> None:
    """`make bench` times `hubspoke --help` against a bare Typer app built from the CLI's
    commands: it must build and run whatever the commands are named (e.g. `follow-ups`)."""
    import importlib.util

    from hubspoke.cli import app

    where = Path(__file__).resolve().parents[1] / "benchmarks" / "startup.py"
    spec = importlib.util.spec_from_file_location("bench_startup", where)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    source = tmp_path / "bare.py"
    source.write_text(bench.baseline_cli_source(app), encoding="utf-8")
    shown = subprocess.run(
        [sys.executable, str(source), "--help"], capture_output=True, text=True, check=False
    )
    assert shown.returncode == 0, shown.stderr
    for command in ("run", "resume", "board", "follow-ups", "outbox", "models"):
        assert command in shown.stdout


JOURNAL = (
    "hubspoke.journal.writer",
    "hubspoke.journal.sqlite",
    "hubspoke.journal.state",
    "asyncio",
)
"""What `--help` needs none of: the journal's writer, its stores and fold (and the event loop
they bring), which only a command that opens a journal loads."""


@pytest.mark.parametrize("args", [["--help"], ["card", "--help"], ["join", "--help"]])
def test_help_loads_no_journal(tmp_path: Path, args: list[str]) -> None:
    body = f"""
    import sys

    from hubspoke.cli import main

    sys.argv = {["hubspoke", *args]!r}
    main()
    """

    result = probe(tmp_path, body, heavy=JOURNAL)

    assert result["code"] == 0, result["stderr"]
    assert result["loaded"] == []
