"""The command line and models: `--model`, `hubspoke models`, a model that cannot be used (exit 2
naming what to fix, nothing run), resume with the bindings the run recorded, and cost in
`hubspoke show` where a model has no price."""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hubspoke import EventKind, Foreman, SQLiteStore
from hubspoke.cli import app
from hubspoke.loader import load_workflow
from hubspoke.models import Config
from tests.helpers import Killed, kill_when

FLOW = textwrap.dedent(
    '''
    """A note, checked: two agent roles on the offline model, and a function role."""
    from pydantic import BaseModel
    from pydantic_ai.messages import ModelResponse, ToolCallPart
    from pydantic_ai.models.function import FunctionModel

    from hubspoke import Budget, Context, Phase, Role, Workflow
    from hubspoke.models.offline import answer


    class Topic(BaseModel):
        topic: str


    class Note(BaseModel):
        text: str


    async def shout(item: Note, ctx: Context) -> Note:
        return Note(text=item.text.upper())


    def unpriced(messages, info):
        return ModelResponse(parts=[ToolCallPart("final_result", {"text": "from a local model"})])


    ROLES = [
        Role(name="noter", purpose="Notes a topic.", input=Topic, output=Note),
        Role(name="checker", purpose="Checks a note.", input=Note, output=Note),
        Role(name="shouter", purpose="Shouts a note.", input=Note, output=Note, function=shout),
    ]
    PHASES = [
        Phase(name="note", role="noter", input=lambda run: run.input),
        Phase(name="check", role="checker", input=lambda run: run.output("note")),
        Phase(name="shout", role="shouter", input=lambda run: run.output("check")),
    ]
    PLAYERS = {
        "noter": lambda turn: answer(text=f"{turn.input['topic']} is old"),
        "checker": lambda turn: answer(text=turn.input["text"]),
    }

    workflow = Workflow(name="notes", input=Topic, roles=ROLES, phases=PHASES, players=PLAYERS)

    budgeted = Workflow(
        name="budgeted", input=Topic, roles=ROLES, phases=PHASES, players=PLAYERS,
        budget=Budget(usd=0.5),
    )

    team = Workflow(
        name="team", input=Topic, roles=ROLES[:2], phases=PHASES[:2], players=PLAYERS,
        result=lambda run: run.output("check"),
    )
    nested = Workflow(
        name="nested", input=Topic, roles=[
            team.as_role(name="team", purpose="Notes and checks.", output=Note),
            ROLES[1],
        ],
        phases=[Phase(name="team", role="team", input=lambda run: run.input),
                Phase(name="check", role="checker", input=lambda run: run.output("team"))],
        players={"checker": PLAYERS["checker"]}, result=lambda run: run.output("check"),
    )

    local = Workflow(
        name="local", input=Topic, phases=PHASES, players={"noter": PLAYERS["noter"]},
        roles=[
            ROLES[0],
            Role(name="checker", purpose="Checks a note.", input=Note, output=Note,
                 model=FunctionModel(unpriced, model_name="local-model")),
            ROLES[2],
        ],
    )
    '''
)

INPUT = '{"topic": "tea"}'
runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No journal, model or price variables from the outside; a directory without
    hubspoke.toml."""
    for name in ("HUBSPOKE_DB", "HUBSPOKE_MODEL", "HUBSPOKE_PRICES", "HUBSPOKE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def flow(tmp_path: Path) -> str:
    path = tmp_path / "flow.py"
    path.write_text(FLOW, encoding="utf-8")
    return f"{path}:workflow"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


def invoke(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def runs_in(db: Path) -> int:
    if not db.exists():
        return 0
    store = SQLiteStore(db)
    try:
        return len(store.runs(100))
    finally:
        store.close()


# hubspoke models --------------------------------------------------------------------------------


def test_models_lists_each_agent_role_its_binding_and_where_it_came_from(
    flow: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hubspoke.toml").write_text(
        '[models]\ndefault = "anthropic:claude-haiku-4-5"\n[models.settings.checker]\nseed = 7\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("HUBSPOKE_MODEL_NOTER", "openai:gpt-6-luna")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)

    machine = invoke("models", flow, "--json")
    human = invoke("models", flow)

    assert machine.exit_code == 1, machine.output  # a key is not set: a problem
    report = json.loads(machine.stdout)
    rows = {row["role"]: row for row in report["roles"]}
    assert list(rows) == ["noter", "checker"]  # agent roles only
    assert rows["noter"] == {
        "role": "noter",
        "binding": "openai:gpt-6-luna",
        "instance": False,
        "source": "env HUBSPOKE_MODEL_NOTER",
        "price": {"input": 0.1, "output": 0.5, "cached_input": 0.01},
        "price_source": report["prices"],
        "usd_limited": None,
        "key": {"variable": "OPENAI_API_KEY", "set": True},
        "endpoint": {"url": None, "from": "default"},
        "reachable": None,
        "settings": {"max_tokens": 1024},
    }
    assert rows["checker"]["source"] == "hubspoke.toml [models] default"
    assert rows["checker"]["key"] == {"variable": "ANTHROPIC_API_KEY", "set": False}
    assert rows["checker"]["settings"] == {"seed": 7, "max_tokens": 1024}
    assert report["config"] == str(tmp_path / "hubspoke.toml")
    assert report["problems"] == [
        "ANTHROPIC_API_KEY is not set (role 'checker': anthropic:claude-haiku-4-5 (from "
        "hubspoke.toml [models] default)): export ANTHROPIC_API_KEY=... or bind the role(s) to "
        "another model"
    ]
    assert human.exit_code == 1
    for fragment in (
        "env HUBSPOKE_MODEL_NOTER",
        "hubspoke.toml [models] default",
        "ANTHROPIC_API_KEY NOT SET",
        "OPENAI_API_KEY set",
        "$0.1 / $0.5 (cached $0.01)",
        "problem: ANTHROPIC_API_KEY is not set",
    ):
        assert fragment in human.stdout


def test_models_binds_and_sets_a_sub_workflows_role_by_its_path_in_hubspoke_toml(
    flow: str, tmp_path: Path
) -> None:
    (tmp_path / "hubspoke.toml").write_text(
        '[models.roles]\n"team/checker" = "openai-compatible:m@http://127.0.0.1:1/v1"\n'
        "[models.settings.checker]\nseed = 7\n"
        '[models.settings."team/checker"]\ntemperature = 0.3\n',
        encoding="utf-8",
    )
    result = invoke("models", flow.replace(":workflow", ":nested"), "--json")
    assert result.exit_code == 0, result.output
    rows = {row["role"]: row for row in json.loads(result.stdout)["roles"]}
    assert list(rows) == ["checker", "team/noter", "team/checker"]
    assert rows["team/checker"]["binding"] == "openai-compatible:m@http://127.0.0.1:1/v1"
    assert rows["team/checker"]["settings"] == {"seed": 7, "temperature": 0.3, "max_tokens": 1024}
    assert rows["checker"]["binding"] == "offline"
    assert rows["checker"]["settings"] == {"seed": 7, "max_tokens": 1024}


@pytest.mark.parametrize("command", ["run", "models"])
@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[models.roles]\nchekcer = "offline"', "[models.roles] chekcer"),
        ("[models.settings.shouter]\nseed = 7", "[models.settings.shouter]"),
    ],
)
def test_a_role_key_in_hubspoke_toml_for_no_agent_role_exits_2_naming_it(
    flow: str, db: Path, tmp_path: Path, command: str, text: str, where: str
) -> None:
    (tmp_path / "hubspoke.toml").write_text(text, encoding="utf-8")
    args = [command, flow] + (["--input", INPUT, "--db", str(db)] if command == "run" else [])
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert f"{where}: workflow 'notes' has no agent role" in message
    assert "(agent roles, by name or path: noter, checker)" in message
    assert runs_in(db) == 0


def test_models_with_a_role_override_says_it_came_from_the_cli(flow: str) -> None:
    result = invoke("models", flow, "--model", "checker=offline", "--json")
    assert result.exit_code == 0, result.output
    rows = {row["role"]: row for row in json.loads(result.stdout)["roles"]}
    assert (rows["noter"]["source"], rows["checker"]["source"]) == ("workflow default", "cli")


def test_models_check_probes_each_server(flow: str) -> None:
    url = refused_url()
    result = invoke("models", flow, "--model", f"openai-compatible:m@{url}", "--check", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [row["reachable"] for row in report["roles"]] == [False, False]
    assert report["problems"] == [
        f"cannot reach {url} (connection refused) for role 'noter'",
        f"cannot reach {url} (connection refused) for role 'checker'",
    ]


def test_models_flags_a_usd_budget_over_a_model_without_a_price(flow: str) -> None:
    budgeted = flow.replace(":workflow", ":budgeted")
    result = invoke("models", budgeted, "--model", "noter=openai-compatible:m@http://h:1/v1")
    assert result.exit_code == 1
    assert "unknown under a USD budget" in result.stdout
    assert "openai-compatible:m@http://h:1/v1 has no known price" in result.stdout


def test_models_without_a_workflow_shows_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hubspoke.toml").write_text(
        '[models]\ndefault = "offline"\n[endpoints.local]\nbase_url = "http://127.0.0.1:8080/v1"\n'
        'api_key_env = "LOCAL_KEY"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("HUBSPOKE_MODEL", "openai:gpt-6-luna")
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["default"] == "offline"
    assert report["environment"] == {"HUBSPOKE_MODEL": "openai:gpt-6-luna"}
    assert report["endpoints"] == [
        {
            "name": "local",
            "base_url": "http://127.0.0.1:8080/v1",
            "key": {"variable": "LOCAL_KEY", "set": False},
        }
    ]


@pytest.mark.parametrize(
    ("option", "problem"),
    [
        ("nobody=offline", "--model 'nobody=offline': workflow 'notes' has no role 'nobody'"),
        ("shouter=offline", "--model 'shouter=offline': role 'shouter' runs a function"),
        ("checker=groq:llama", "names an unknown provider 'groq'"),
        ("openai-compatible:m@127.0.0.1:1/v1", "write openai-compatible:m@http://127.0.0.1:1/v1"),
        ("openai-compatible:m@http://[::1/v1", "'http://[::1/v1' is not a valid URL"),
        ("openai-compatible:m@http://h:99999/v1", "not a valid URL (Port out of range"),
    ],
)
@pytest.mark.parametrize("command", ["run", "models"])
def test_a_wrong_model_option_exits_2_saying_what_to_write(
    flow: str, db: Path, command: str, option: str, problem: str
) -> None:
    args = [command, flow, "--model", option] + (["--db", str(db)] if command == "run" else [])
    result = invoke(*args)
    assert result.exit_code == 2
    assert problem in " ".join(result.stderr.split())
    assert runs_in(db) == 0


@pytest.mark.parametrize("command", ["demo", "models"])
@pytest.mark.parametrize(
    ("where", "problem"),
    [
        ("option", "the server 'http://[::1/v1' is not a valid URL (Invalid IPv6 URL)"),
        ("file", "[endpoints.local] base_url: 'http://[::1/v1' is not a valid URL"),
        ("variable", "OPENAI_BASE_URL: 'http://[::1/v1' is not a valid URL"),
    ],
)
def test_a_server_url_that_does_not_parse_exits_2_naming_it(
    db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    where: str,
    problem: str,
) -> None:
    # An unclosed IPv6 bracket makes the standard library raise ValueError: a usage error with
    # what to fix, wherever the URL was written, never a traceback.
    args = [command, "sales"] + (["--db", str(db)] if command == "demo" else [])
    if where == "option":
        args += ["--model", "openai-compatible:m@http://[::1/v1"]
    elif where == "file":
        (tmp_path / "hubspoke.toml").write_text(
            '[endpoints.local]\nbase_url = "http://[::1/v1"\n', encoding="utf-8"
        )
    else:
        monkeypatch.setenv("OPENAI_BASE_URL", "http://[::1/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        args += ["--model", "openai:gpt-6-luna"]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert problem in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert runs_in(db) == 0


def test_model_for_every_role_given_twice_exits_2(flow: str, db: Path) -> None:
    result = invoke("run", flow, "--db", db, "--model", "offline", "--model", "openai:x")
    assert result.exit_code == 2
    assert "give --model NAME once" in result.stderr


# a model that cannot be used stops the run before it starts -------------------------------------


@pytest.mark.parametrize("command", ["run", "demo"])
def test_an_unreachable_server_exits_2_naming_the_url_and_runs_nothing(
    flow: str, db: Path, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HUBSPOKE_PRICES", "openai-compatible=0/0")  # the demo has a USD budget
    url = refused_url()
    binding = f"openai-compatible:m@{url}"
    if command == "run":
        result = invoke("run", flow, "--input", INPUT, "--db", db, "--model", binding)
    else:
        result = invoke("demo", "sales", "--db", db, "--model", binding)

    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == "error: the run cannot start, nothing was run:"
    assert lines[1].startswith(f"- cannot reach {url} (connection refused: GET {url}/models; ")
    assert lines[1].endswith(f"{binding} (from cli)): start the server, or fix the URL")
    assert len(lines) == 3
    assert runs_in(db) == 0


def test_a_missing_key_exits_2_naming_the_variable(
    flow: str, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = invoke(
        "run", flow, "--input", INPUT, "--db", db, "--model", "checker=openai:gpt-6-luna"
    )
    assert result.exit_code == 2
    assert "OPENAI_API_KEY is not set (role 'checker': openai:gpt-6-luna (from cli))" in " ".join(
        result.stderr.split()
    )
    assert runs_in(db) == 0


def test_the_sales_demo_on_an_unpriced_model_exits_2_saying_how_to_price_it(db: Path) -> None:
    result = invoke("demo", "sales", "--db", db, "--model", "noter=offline")
    assert result.exit_code == 2  # no such role in the demo
    result = invoke(
        "demo", "sales", "--db", db, "--model", "openai-compatible:m@http://127.0.0.1:1/v1"
    )
    message = " ".join(result.stderr.split())
    assert result.exit_code == 2
    assert "has no known price, and a USD limit covers it (the run's budget (usd=1)" in message
    assert "HUBSPOKE_PRICES='openai-compatible:m@http://127.0.0.1:1/v1=INPUT/OUTPUT'" in message


# resume plays the roles with the bindings the run recorded --------------------------------------


def test_resume_uses_the_bindings_the_run_recorded(
    flow: str, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow = load_workflow(flow)
    store = SQLiteStore(db)
    try:
        foreman = Foreman(
            workflow,
            store,
            model={"checker": "offline"},
            config=Config(),
            listeners=[
                kill_when(lambda e: e.kind is EventKind.DISPATCH_STARTED and e.role == "checker")
            ],
        )
        with pytest.raises(Killed):
            asyncio.run(foreman.run({"topic": "tea"}, run_id="run_recorded01", ref=flow))
    finally:
        store.close()
    # Were the environment read again, every role would need an OpenAI key that is not set.
    monkeypatch.setenv("HUBSPOKE_MODEL", "openai:gpt-6-luna")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    result = invoke("resume", "run_recorded01", "--db", db, "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "completed"
    assert invoke("run", flow, "--input", INPUT, "--db", db).exit_code == 2  # a new run reads it


# cost in hubspoke show ----------------------------------------------------------------------------


def test_show_says_the_cost_of_a_model_without_a_price_is_unknown(flow: str, db: Path) -> None:
    local = flow.replace(":workflow", ":local")
    started = invoke("run", local, "--input", INPUT, "--db", db, "--json")
    assert started.exit_code == 0, started.output
    run_id = json.loads(started.stdout)["run_id"]
    assert json.loads(started.stdout)["unpriced"] == {
        "run": True,
        "roles": ["checker"],
        "phases": ["check"],
        "items": ["check"],
    }

    machine = invoke("show", run_id, "--db", db, "--json")
    human = invoke("show", run_id, "--db", db)

    report: dict[str, Any] = json.loads(machine.stdout)
    assert report["models"]["checker"]["binding"] == "local-model"
    assert report["models"]["checker"]["price"] is None
    assert report["models"]["noter"]["price"] == {
        "input": 0.15,
        "output": 0.6,
        "cached_input": None,
    }
    assert report["unpriced"]["roles"] == ["checker"]
    items = report["items"]
    assert list(items) == ["note", "check", "shout"]
    assert items["note"]["usage"]["usd"] > 0
    assert items["check"]["usage"]["usd"] == 0
    assert items["check"]["usage"]["requests"] == 1
    lines = {line.split()[0]: line for line in human.stdout.splitlines() if line.strip()}
    assert "unknown" in lines["checker"]  # usage by role: its USD
    assert "$0.0" in lines["noter"]
    assert "≥ $" in lines["total"]  # the run's total is a lower bound
    assert "USD unknown for checker" in human.stdout


def test_resume_refuses_with_exit_2_when_a_recorded_models_key_is_gone(
    flow: str, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow = load_workflow(flow)
    store = SQLiteStore(db)
    try:
        foreman = Foreman(
            workflow,
            store,
            model={"noter": "openai:gpt-6-luna"},
            config=Config(environ={"OPENAI_API_KEY": "sk-then"}),
            listeners=[kill_when(lambda e: e.kind is EventKind.DISPATCH_STARTED)],
        )
        with pytest.raises(Killed):
            asyncio.run(foreman.run({"topic": "tea"}, run_id="run_recorded02", ref=flow))
        before = len(store.events("run_recorded02"))
    finally:
        store.close()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    result = invoke("resume", "run_recorded02", "--db", db)

    assert result.exit_code == 2
    assert "OPENAI_API_KEY is not set (role 'noter': openai:gpt-6-luna (from run))" in " ".join(
        result.stderr.split()
    )
    store = SQLiteStore(db)
    try:
        assert len(store.events("run_recorded02")) == before  # nothing written, not even resumed
        assert store.holder("run_recorded02") is None  # and the lease let go
    finally:
        store.close()
