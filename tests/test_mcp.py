"""MCP tools (docs/mcp.md): a role's tools served by an MCP server the tests start, over stdio
and over streamable HTTP on 127.0.0.1.

The server is the bundled example (`hubspoke.examples.mcp_notes`: ``lookup``, ``append_note``,
``clear_notes``), or `tests.workflows.mcp_till` (a ``charge`` tool that logs its starts and
listings, and can SIGKILL the run inside a call) for sessions and crashes.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai.messages import ModelMessage, ModelResponse
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.settings import ModelSettings
from typer.testing import CliRunner

from hubspoke import (
    Context,
    DefinitionError,
    Foreman,
    OfflineModel,
    Phase,
    Role,
    SQLiteStore,
    ToolServerError,
    Workflow,
)
from hubspoke.cli import app
from hubspoke.events import Event, EventKind
from hubspoke.mcp import MCPServer, MCPTool
from hubspoke.models.offline import Move, Player, Turn, answer, call
from hubspoke.testing import payload_errors, stream
from tests.workflows import mcp_till
from tests.workflows.charges import Charges, Order, Receipt

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
NOTES = [sys.executable, "-m", "hubspoke.examples.mcp_notes"]


class Topic(BaseModel):
    topic: str


class Noted(BaseModel):
    facts: list[str]
    note: int


class _Any:
    """Equal to anything: a duration or a key in an expected payload."""

    def __eq__(self, other: object) -> bool:
        return True


ANY: Any = _Any()


@pytest.fixture
def notes_file(tmp_path: Path) -> Path:
    return tmp_path / "notes.jsonl"


@pytest.fixture
def http_notes(notes_file: Path) -> Iterator[str]:
    """The example server over streamable HTTP on 127.0.0.1 (any free port): its URL."""
    env = {**os.environ, "NOTES_FILE": str(notes_file), "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [*NOTES, "--http", "0"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()  # printed once it listens
    try:
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        yield url
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.fixture(params=["stdio", "http"])
def notes_server(request: pytest.FixtureRequest, notes_file: Path) -> MCPServer:
    if request.param == "stdio":
        return MCPServer.stdio(NOTES, env={"NOTES_FILE": str(notes_file)}, name="notes")
    url: str = request.getfixturevalue("http_notes")
    return MCPServer.http(url, name="notes", headers={"Authorization": "Bearer test"})


def clerk(turn: Turn) -> Move | list[Move]:
    """Looks the topic up, tries a tool its card does not list and a call with bad arguments,
    writes a note, and answers with what it read and the note's number."""
    if turn.turn == 0:
        return [
            call("lookup", topic=turn.input["topic"]),
            call("clear_notes"),
            call("lookup", topic=5),
        ]
    if turn.result("append_note") is None:
        return call("append_note", text=f"read about {turn.input['topic']}")
    [looked_up, *_] = [content for tool, content in turn.results if tool == "lookup"]
    return answer(facts=looked_up["result"], note=turn.result("append_note")["note"])


def notes_workflow(server: MCPServer, player: Player = clerk, **card: Any) -> Workflow:
    """Workflow ``notes``: the agent ``clerk`` may call the server's ``lookup`` and, as a side
    effect, ``append_note``; never ``clear_notes``."""
    tools = [server.tool("lookup"), server.tool("append_note", side_effect=True)]
    fields: dict[str, Any] = dict(
        name="clerk", purpose="Notes what is known of a topic.", input=Topic, output=Noted
    )
    return Workflow(
        name="notes",
        input=Topic,
        roles=[Role(**({**fields, "tools": tools} | card))],
        phases=[Phase(name="note", role="clerk", input=lambda run: run.input)],
        result=lambda run: run.output("note"),
        players={"clerk": player},
    )


class Recording(OfflineModel):
    """The offline model, keeping the tools each request offered."""

    def __init__(self, players: dict[str, Player]) -> None:
        super().__init__(players)
        self.offered: list[list[tuple[str, str, dict[str, Any]]]] = []

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        self.offered.append(
            [
                (t.name, t.description or "", t.parameters_json_schema)
                for t in model_request_parameters.function_tools
            ]
        )
        return await super().request(messages, model_settings, model_request_parameters)


def tool_events(events: list[Event]) -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind.value, e.data) for e in events if e.kind.value.startswith("tool.")]


# end to end ----------------------------------------------------------------------------------


async def test_a_role_whose_tools_come_from_an_mcp_server_runs_end_to_end(
    store: SQLiteStore, notes_server: MCPServer, notes_file: Path
) -> None:
    """Over stdio and over HTTP: the server's tools are offered with its descriptions and
    schemas (``clear_notes``, not on the card, never; ``idempotency_key``, the runtime's, not
    either); a call to ``clear_notes`` is refused, one with bad arguments is corrected, the
    side-effecting ``append_note`` runs once between its durable start and end with the call's
    key, and every call is journaled."""
    model = Recording({"clerk": clerk})
    result = await Foreman(notes_workflow(notes_server), store, models={"offline": model}).run(
        {"topic": "tea"}
    )
    assert result.status == "completed", result.reason
    facts = ["Tea is brewed from Camellia sinensis.", "Green and black tea share a plant."]
    assert result.result == Noted(facts=facts, note=1)
    events = store.events(result.run_id)
    assert stream(events) == [
        "run.started",
        "phase.started note items=1",
        "dispatch.started note clerk note #1",
        "tool.started note clerk note #1 append_note",
        "tool.finished note clerk note #1 append_note",
        "model.exchange note clerk note #1 lookup,clear_notes,lookup",
        "tool.called note clerk note #1 lookup",
        "tool.refused note clerk note #1 clear_notes",
        "tool.called note clerk note #1 lookup",
        "model.exchange note clerk note #1 append_note",
        "model.exchange note clerk note #1 final_result",
        "dispatch.finished note clerk note #1 output",
        "item.accepted note clerk note",
        "phase.finished note completed",
        "run.finished completed",
    ]
    [(_, started), *_] = tool_events(events)
    key = started["key"]
    assert tool_events(events) == [
        (
            "tool.started",
            {"key": key, "tool": "append_note", "arguments": {"text": "read about tea"}},
        ),
        (
            "tool.finished",
            {
                "key": key,
                "tool": "append_note",
                "result": {"note": 1, "text": "read about tea", "duplicate": False},
                "seconds": ANY,
            },
        ),
        (
            "tool.called",
            {
                "kind": "tool.called",
                "tool": "lookup",
                "arguments": {"topic": "tea"},
                "seconds": ANY,
            },
        ),
        (
            "tool.refused",
            {
                "kind": "tool.refused",
                "tool": "clear_notes",
                "reason": "tool 'clear_notes' is not on this role's card (allowed: append_note, "
                "lookup)",
            },
        ),
        (
            "tool.called",
            {
                "kind": "tool.called",
                "tool": "lookup",
                "arguments": {"topic": 5},
                "error": "invalid arguments for tool 'lookup': [{'type': 'type', 'loc': "
                "('topic',), 'msg': \"5 is not of type 'string'\", 'input': 5}]",
            },
        ),
    ]
    assert payload_errors(events) == []
    # The server got the call's key, and wrote the note once.
    lines = notes_file.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"text": "read about tea", "key": key}]
    # What the model was offered: the card's tools as the server describes them, every turn.
    lookup = (
        "lookup",
        "What is known of a topic: up to `limit` facts.",
        {
            "type": "object",
            "properties": {
                "topic": {"title": "Topic", "type": "string"},
                "limit": {"default": 3, "title": "Limit", "type": "integer"},
            },
            "required": ["topic"],
            "title": "lookupArguments",
        },
    )
    append = (
        "append_note",
        "Write a note; returns its number. A key already used writes nothing.",
        {
            "type": "object",
            "properties": {"text": {"title": "Text", "type": "string"}},
            "required": ["text"],
            "title": "append_noteArguments",
        },
    )
    assert model.offered == [[lookup, append]] * 3


async def test_the_model_gets_the_refusal_and_the_correction_back(
    store: SQLiteStore, notes_file: Path
) -> None:
    """A refused call and one with invalid arguments come back to the model as any tool's do:
    the refusal's reason, the schema's errors (so it can correct the call)."""
    seen: list[list[tuple[str, Any]]] = []

    def player(turn: Turn) -> Move | list[Move]:
        seen.append(list(turn.results))
        return clerk(turn)

    server = MCPServer.stdio(NOTES, env={"NOTES_FILE": str(notes_file)}, name="notes")
    result = await Foreman(notes_workflow(server, player), store).run({"topic": "tea"})
    assert result.status == "completed", result.reason
    assert seen[1][1:] == [
        (
            "clear_notes",
            {
                "refused": "tool 'clear_notes' is not on this role's card (allowed: append_note, "
                "lookup)"
            },
        ),
        (
            "lookup",
            {
                "invalid_arguments": [
                    {
                        "type": "type",
                        "loc": ("topic",),
                        "msg": "5 is not of type 'string'",
                        "input": 5,
                    }
                ]
            },
        ),
    ]


# one session per server per run -----------------------------------------------------------------


def _log(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Orders(BaseModel):
    orders: list[Order]


async def test_a_run_lists_each_servers_tools_once_and_closes_its_session_at_the_end(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three dispatches (a fan-out) over one server: it is started once and listed once for the
    run, and its process is gone when the run returns. A second run starts its own."""
    log = tmp_path / "mcp.log"
    monkeypatch.setenv("CHARGES_DB", str(tmp_path / "charges.db"))
    monkeypatch.setenv("MCP_LOG", str(log))
    till = mcp_till.make(reconciled=True)
    [cashier] = till.roles
    wf = Workflow(
        name="tills",
        input=Orders,
        roles=[cashier],
        phases=[
            Phase(
                name="pay",
                role="cashier",
                over=lambda run: run.input.orders,
                input=lambda run, order: order,
            )
        ],
        players=till.players,
    )
    orders = {"orders": [{"card": c, "amount": 5} for c in ("1111", "2222", "3333")]}
    foreman = Foreman(wf, store)
    result = await foreman.run(orders)
    assert result.status == "completed", result.reason
    assert Charges(tmp_path / "charges.db").count() == 3
    started, *listed = _log(log)
    assert started.startswith("start ") and listed == ["list"]
    assert not _alive(int(started.split()[1]))
    await foreman.run(orders)
    assert [line.split()[0] for line in _log(log)] == ["start", "list", "start", "list"]


async def test_a_sub_workflow_opens_its_servers_in_its_own_run(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent's card lists the sub-workflow's MCP tool as a permission (another `tool(...)`
    of the same server): the parent's run opens nothing, the sub-run opens the server once."""
    log = tmp_path / "mcp.log"
    monkeypatch.setenv("CHARGES_DB", str(tmp_path / "charges.db"))
    monkeypatch.setenv("MCP_LOG", str(log))
    till = mcp_till.make(reconciled=True)
    [charge] = till.roles[0].compiled_tools
    assert isinstance(charge, MCPTool) and charge.server is not None
    checkout = till.as_role(
        name="checkout",
        purpose="Check the order out.",
        output=Receipt,
        tools=[charge.server.tool("charge", side_effect=True)],
    )
    wf = Workflow(
        name="shop",
        input=Order,
        roles=[checkout],
        phases=[Phase(name="checkout", role="checkout", input=lambda run: run.input)],
        result=lambda run: run.output("checkout"),
    )
    result = await Foreman(wf, store).run({"card": "4242", "amount": 10})
    assert result.status == "completed", result.reason
    assert result.result == Receipt(card="4242", charge_id="ch_1")
    assert [line.split()[0] for line in _log(log)] == ["start", "list"]
    other = MCPServer.stdio(NOTES, name="notes")
    with pytest.raises(DefinitionError, match="uses tool 'charge', which this card does not allow"):
        Workflow(
            name="shop",
            input=Order,
            roles=[replace(checkout, tools=[other.tool("charge", side_effect=True)])],
            phases=wf.phases,
        ).check()


async def test_a_cancelled_run_closes_its_sessions(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run cancelled while a dispatch waits (Ctrl-C, a task cancelled) still ends its
    servers' processes."""
    log = tmp_path / "mcp.log"
    monkeypatch.setenv("CHARGES_DB", str(tmp_path / "charges.db"))
    monkeypatch.setenv("MCP_LOG", str(log))
    [cashier] = mcp_till.make(reconciled=True).roles
    waiting = asyncio.Event()

    async def pay(order: Order, ctx: Context) -> Receipt:
        waiting.set()
        await asyncio.Event().wait()  # never set: the run is cancelled here
        raise AssertionError("unreachable")

    role = Role(
        name="cashier",
        purpose="Charge the order.",
        input=Order,
        output=Receipt,
        tools=cashier.tools,
        function=pay,
    )
    wf = Workflow(
        name="till",
        input=Order,
        roles=[role],
        phases=[Phase(name="pay", role="cashier", input=lambda run: run.input)],
    )
    run = asyncio.create_task(Foreman(wf, store).run({"card": "4242", "amount": 10}))
    await waiting.wait()
    [started, _] = _log(log)
    assert _alive(int(started.split()[1]))
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert not _alive(int(started.split()[1]))


async def test_a_function_specialist_calls_mcp_tools_through_its_context(
    store: SQLiteStore, notes_file: Path
) -> None:
    """`ctx.call_tool` reaches an MCP tool as any tool; a tool the server annotates as
    destructive, listed without saying, is treated as side-effecting (started, finished)."""
    server = MCPServer.stdio(NOTES, env={"NOTES_FILE": str(notes_file)}, name="notes")
    notes_file.write_text('{"text": "old", "key": ""}\n', encoding="utf-8")

    async def tidy(topic: Topic, ctx: Context) -> Noted:
        facts = await ctx.call_tool("lookup", topic=topic.topic, limit=1)
        cleared = await ctx.call_tool("clear_notes")
        assert cleared == {"result": "cleared"}
        return Noted(facts=facts["result"], note=0)

    wf = Workflow(
        name="tidy",
        input=Topic,
        roles=[
            Role(
                name="tidier",
                purpose="Tidies the notes.",
                input=Topic,
                output=Noted,
                tools=[server.tool("lookup"), server.tool("clear_notes")],
                function=tidy,
            )
        ],
        phases=[Phase(name="tidy", role="tidier", input=lambda run: run.input)],
        result=lambda run: run.output("tidy"),
    )
    result = await Foreman(wf, store).run({"topic": "mcp"})
    assert result.status == "completed", result.reason
    assert result.result == Noted(facts=["MCP servers offer tools, resources and prompts."], note=0)
    assert not notes_file.exists()
    assert stream(store.events(result.run_id)) == [
        "run.started",
        "phase.started tidy items=1",
        "dispatch.started tidy tidier tidy #1",
        "tool.started tidy tidier tidy #1 clear_notes",
        "tool.finished tidy tidier tidy #1 clear_notes",
        "tool.called tidy tidier tidy #1 lookup",
        "dispatch.finished tidy tidier tidy #1 output",
        "item.accepted tidy tidier tidy",
        "phase.finished tidy completed",
        "run.finished completed",
    ]


# exactly once under a crash ----------------------------------------------------------------------


@pytest.mark.parametrize("reconciled", [True, False])
async def test_sigkilled_inside_an_mcp_call_then_resumed_charges_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reconciled: bool
) -> None:
    """The server charges, then SIGKILLs the run before the result reaches it; another process
    resumes. With a reconcile function the charge is found by its key and the run completes with
    it; without one the item escalates as in doubt. Either way: one charge, and the tool is not
    called again."""
    db, effects = tmp_path / "journal.db", tmp_path / "charges.db"
    env = {
        **os.environ,
        "CHARGES_DB": str(effects),
        "KILL_CLIENT": str(tmp_path / "killed"),
        "PYTHONPATH": os.pathsep.join([str(SRC), str(ROOT)]),
    }
    order = {"card": "4242", "amount": 10}
    ref = "tests.workflows.mcp_till:workflow"
    done = subprocess.run(
        [sys.executable, "-m", "tests.workflows.run", str(db), ref, "r_kill", json.dumps(order)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -9, done.stderr  # SIGKILLed by the server, inside the call
    assert Charges(effects).count() == 1
    monkeypatch.setenv("CHARGES_DB", str(effects))
    store = SQLiteStore(db)
    try:
        before = stream(store.events("r_kill"))
        assert before[-1] == "tool.started pay cashier pay #1 charge"
        result = await Foreman(mcp_till.make(reconciled), store).resume("r_kill")
        assert Charges(effects).count() == 1
        lines = stream(store.events("r_kill"))
        resumed = lines[lines.index("run.resumed") :]
        if reconciled:
            assert result.status == "completed", result.reason
            assert result.result == Receipt(card="4242", charge_id="ch_1")
            assert resumed == [
                "run.resumed",
                "phase.started pay items=1",
                "dispatch.started pay cashier pay #1",
                "tool.finished pay cashier pay #1 charge reconciled",
                "model.exchange pay cashier pay #1 charge",
                "model.exchange pay cashier pay #1 final_result",
                "dispatch.finished pay cashier pay #1 output",
                "item.accepted pay cashier pay",
                "phase.finished pay completed",
                "run.finished completed",
            ]
        else:
            assert result.status == "waiting"
            assert "item.escalated pay cashier pay" in resumed
            [card] = store.cards("r_kill")
            assert card.note.startswith("in doubt: tool 'charge' (key ")
            assert not any(line.startswith("tool.started") for line in resumed)
    finally:
        store.close()


# refused before the run starts -------------------------------------------------------------------


async def _refused(store: SQLiteStore, wf: Workflow) -> ToolServerError:
    with pytest.raises(ToolServerError) as raised:
        await Foreman(wf, store).run({"topic": "tea"})
    assert store.runs() == []  # nothing was written
    return raised.value


async def test_a_server_that_cannot_start_refuses_the_run_quoting_its_error(
    store: SQLiteStore,
) -> None:
    script = "import sys; sys.stderr.write('notes: no database configured'); sys.exit(3)"
    server = MCPServer.stdio([sys.executable, "-c", script], name="broken")
    error = await _refused(store, notes_workflow(server))
    [problem] = error.problems
    assert problem.startswith(f"MCP server 'broken' ({sys.executable} -c {script}) did not start: ")
    assert "its error output ends: 'notes: no database configured'" in problem
    assert problem.endswith(
        "Check the command and run it by hand, or remove its tools from the cards"
    )


def _silent(pid_file: Path) -> MCPServer:
    """A stdio server that starts, writes its pid to `pid_file` and never answers."""
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    )
    return MCPServer.stdio([sys.executable, "-c", script], name="silent", timeout=1)


async def test_a_server_that_never_answers_refuses_the_run_and_is_ended(
    store: SQLiteStore, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    error = await _refused(store, notes_workflow(_silent(pid_file)))
    [problem] = error.problems
    assert problem.startswith("MCP server 'silent' (")
    assert ") did not start: no answer within 1s. Check the command" in problem
    assert not _alive(int(pid_file.read_text()))


async def test_a_run_cancelled_while_its_servers_start_ends_them(
    store: SQLiteStore, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    server = replace(_silent(pid_file), timeout=60)
    run = asyncio.create_task(Foreman(notes_workflow(server), store).run({"topic": "tea"}))
    while not (pid_file.exists() and pid_file.read_text()):  # the server has started
        await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert not _alive(int(pid_file.read_text()))
    assert store.runs() == []


async def test_a_server_command_that_does_not_exist_refuses_the_run(store: SQLiteStore) -> None:
    server = MCPServer.stdio(["no-such-mcp-server-anywhere", "--stdio"])
    error = await _refused(store, notes_workflow(server))
    assert error.problems == [
        "MCP server 'no-such-mcp-server-anywhere' (no-such-mcp-server-anywhere --stdio) did not "
        "start: 'no-such-mcp-server-anywhere' was not found. Check the command and run it by "
        "hand, or remove its tools from the cards"
    ]


async def test_an_http_server_that_does_not_answer_refuses_the_run(store: SQLiteStore) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/mcp"
    error = await _refused(store, notes_workflow(MCPServer.http(url, name="notes", timeout=5)))
    [problem] = error.problems
    assert problem.startswith(f"MCP server 'notes' ({url}) did not answer: ")
    assert problem.endswith("Check the URL, or remove its tools from the cards")


async def test_a_card_naming_a_tool_the_server_lacks_refuses_the_run(
    store: SQLiteStore, notes_file: Path
) -> None:
    server = MCPServer.stdio(NOTES, env={"NOTES_FILE": str(notes_file)}, name="notes")
    wf = notes_workflow(server, tools=[server.tool("lookup"), server.tool("look_up")])
    error = await _refused(store, wf)
    assert error.problems == [
        "role 'clerk' lists tool 'look_up', which MCP server 'notes' does not have (it has: "
        "append_note, clear_notes, lookup); fix the card's .tool('look_up')"
    ]


async def test_a_tool_that_requires_a_key_must_be_declared_side_effecting(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The till's ``charge`` requires ``idempotency_key``, which the runtime fills in only for a
    side-effecting tool: listed as an ordinary one, the run is refused saying what to write."""
    monkeypatch.setenv("CHARGES_DB", str(tmp_path / "charges.db"))
    [cashier] = mcp_till.make(reconciled=False).roles
    [charge] = cashier.compiled_tools
    assert isinstance(charge, MCPTool) and charge.server is not None
    ordinary = charge.server.tool("charge", side_effect=False)
    wf = mcp_till.make(reconciled=False)
    wf = Workflow(
        name="till",
        input=Order,
        roles=[replace(cashier, tools=[ordinary])],
        phases=wf.phases,
        players=wf.players,
    )
    with pytest.raises(ToolServerError) as raised:
        await Foreman(wf, store).run({"card": "4242", "amount": 10})
    assert raised.value.problems == [
        "role 'cashier': MCP server 'tests.workflows.mcp_till': tool 'charge' requires "
        "'idempotency_key', which the runtime fills in for side-effecting tools: declare it "
        "on the card with .tool('charge', side_effect=True)"
    ]
    assert store.runs() == []


async def test_a_tool_whose_schema_is_not_json_schema_refuses_the_run(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHARGES_DB", str(tmp_path / "charges.db"))
    monkeypatch.setenv("BROKEN_SCHEMA", "1")
    till = mcp_till.make(reconciled=True)
    [cashier] = till.roles
    [charge] = cashier.compiled_tools
    assert isinstance(charge, MCPTool) and charge.server is not None
    wf = Workflow(
        name="till",
        input=Order,
        roles=[replace(cashier, tools=[charge, charge.server.tool("broken")])],
        phases=till.phases,
        players=till.players,
    )
    with pytest.raises(ToolServerError) as raised:
        await Foreman(wf, store).run({"card": "4242", "amount": 10})
    assert raised.value.problems == [
        "role 'cashier': MCP server 'tests.workflows.mcp_till': tool 'broken' lists an argument "
        "schema that is not valid JSON Schema ('nonsense' is not valid under any of the given "
        "schemas); fix the server's tool"
    ]
    assert store.runs() == []


def test_the_cli_exits_2_naming_what_to_fix(tmp_path: Path, notes_file: Path) -> None:
    flow = tmp_path / "flow.py"
    flow.write_text(
        textwrap.dedent(
            f"""
            import sys
            from tests.test_mcp import MCPServer, NOTES, notes_workflow

            server = MCPServer.stdio(NOTES, env={{"NOTES_FILE": {str(notes_file)!r}}}, name="notes")
            workflow = notes_workflow(server, tools=[server.tool("look_up")])
            """
        ),
        encoding="utf-8",
    )
    db = tmp_path / "journal.db"
    result = CliRunner().invoke(
        app, ["run", f"{flow}:workflow", "--input", '{"topic": "tea"}', "--db", str(db)]
    )
    assert result.exit_code == 2, result.output
    assert "the run cannot start, nothing was run: an MCP server" in result.output
    assert "role 'clerk' lists tool 'look_up', which MCP server 'notes' does not have" in (
        result.output.replace("\n", " ")
    )


# the card ----------------------------------------------------------------------------------------


def test_cards_with_mcp_tools_are_checked_like_any(notes_file: Path) -> None:
    server = MCPServer.stdio(NOTES, name="notes")
    other = MCPServer.stdio(NOTES, name="other")
    card: dict[str, Any] = dict(name="clerk", purpose="Notes.", input=Topic, output=Noted)
    with pytest.raises(DefinitionError, match="tool 'lookup' is listed twice"):
        Role(**card, tools=[server.tool("lookup"), other.tool("lookup")])
    Role(**card, tools=[server.tool("lookup"), other.tool("lookup", rename="other_lookup")]).check()
    with pytest.raises(DefinitionError, match="'final_result' has the name of one of the agent"):
        Role(**card, tools=[server.tool("lookup", rename="final_result")]).check()
    with pytest.raises(DefinitionError, match="model providers take tool names of 1 to 64"):
        Role(**card, tools=[server.tool("look up")]).check()


def test_bad_declarations_are_refused_saying_what_to_write() -> None:
    with pytest.raises(TypeError, match="takes the command as a list of strings"):
        MCPServer.stdio("python -m notes")
    with pytest.raises(TypeError, match="takes an http:// or https:// URL"):
        MCPServer.http("127.0.0.1:8000/mcp")
    with pytest.raises(TypeError, match="timeout must be a positive number of seconds"):
        MCPServer.stdio(NOTES, timeout=0)
    server = MCPServer.stdio(NOTES)
    with pytest.raises(TypeError, match="reconcile= settles calls of a side-effecting tool"):
        server.tool("append_note", side_effect=False, reconcile=lambda key, arguments: None)
    with pytest.raises(TypeError, match="named by a non-empty string"):
        server.tool("")


def test_without_the_mcp_package_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # as if not installed
    with pytest.raises(ToolServerError) as raised:
        MCPServer.stdio(NOTES, name="notes")
    assert raised.value.problems == [
        "MCP server 'notes': MCP tools need the mcp package: pip install 'hubspoke[mcp]'"
    ]


def test_declaring_servers_and_cards_imports_no_mcp(tmp_path: Path) -> None:
    """`import hubspoke`, `hubspoke.mcp` and cards listing MCP tools load neither the mcp
    package nor the model layer: only a run that opens a server imports mcp."""
    body = textwrap.dedent(
        """
        import sys
        import hubspoke
        from hubspoke.mcp import MCPServer, MCPTool
        from pydantic import BaseModel

        class T(BaseModel):
            t: str

        server = MCPServer.stdio([sys.executable, "-m", "hubspoke.examples.mcp_notes"])
        hubspoke.Role(name="r", purpose="p.", input=T, output=T, tools=[server.tool("lookup")])
        heavy = ("mcp", "mcp_types", "jsonschema", "pydantic_ai", "hubspoke.foreman")
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy or m in heavy))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", body],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]", done.stderr


def test_events_of_mcp_tools_are_the_tools_events() -> None:
    """No new journal event kind: MCP calls are journaled as Python tools' are."""
    assert {k.value for k in EventKind if k.value.startswith("tool.")} == {
        "tool.called",
        "tool.refused",
        "tool.started",
        "tool.finished",
    }


# a server that dies while the run goes on ---------------------------------------------------------

_DYING = """
import os, sys
from mcp.server.mcpserver import MCPServer

server = MCPServer("till", log_level="WARNING")

@server.tool()
def crash() -> str:
    sys.stderr.write("till: out of memory")
    sys.stderr.flush()
    os._exit(3)

@server.tool()
def pay(n: int, idempotency_key: str = "") -> str:
    with open(os.environ["PAID"], "a") as f:
        f.write(f"{n}\\n")
    return f"paid {n}"

server.run("stdio")
"""


class Op(BaseModel):
    op: str


class Ops(BaseModel):
    ops: list[str]


class Paid(BaseModel):
    paid: str


async def test_calls_after_a_stdio_server_died_are_not_sent_so_not_in_doubt(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """A stdio server that exits in the middle of a run takes no more calls: a later call of a
    side-effecting tool is refused unsent (an error the ladder retries, then escalates), not
    "in doubt" as if it might have run; and every error names the server, says its connection
    closed, and quotes its error output."""
    from hubspoke.phases import Strategy

    script = tmp_path / "till.py"
    script.write_text(_DYING, encoding="utf-8")
    paid = tmp_path / "paid.log"
    server = MCPServer.stdio([sys.executable, str(script)], name="till", env={"PAID": str(paid)})

    async def cashier(op: Op, ctx: Context) -> Paid:
        if op.op == "crash":
            await ctx.call_tool("crash")
        return Paid(paid=await ctx.call_tool("pay", n=int(op.op)))

    wf = Workflow(
        name="dying",
        input=Ops,
        roles=[
            Role(
                name="cashier",
                purpose="Pays.",
                input=Op,
                output=Paid,
                tools=[server.tool("crash"), server.tool("pay", side_effect=True)],
                function=cashier,
            )
        ],
        phases=[
            Phase(
                name="pay",
                role="cashier",
                over=lambda run: run.input.ops,
                input=lambda run, op: Op(op=op),
                concurrency=1,
                strategy=Strategy.BEST_EFFORT,
            )
        ],
        result=lambda run: None,
    )
    result = await Foreman(wf, store).run({"ops": ["crash", "1", "2"]})
    assert not paid.exists()  # nothing reached a server
    events = store.events(result.run_id)
    escalated = {e.item: e.data["reason"] for e in events if e.kind is EventKind.ITEM_ESCALATED}
    gone = "MCP server 'till' closed the connection"  # journaled: the name, not the command
    quoted = "its error output ends: 'till: out of memory'"
    assert escalated["pay[0]"].startswith(
        f"failure ladder exhausted (failed: ConnectionError: {gone}"
    )
    for item in ("pay[1]", "pay[2]"):
        reason = escalated[item]
        assert "in doubt" not in reason
        assert reason.startswith(f"failure ladder exhausted (failed: ConnectionError: {gone}")
        assert "tool 'pay' was not sent" in reason and quoted in reason
    calls = [e for e in events if e.kind in (EventKind.TOOL_CALLED, EventKind.TOOL_FINISHED)]
    errors = [e.data["error"] for e in calls]
    assert [error.startswith(f'ConnectionError("{gone}') for error in errors] == [True] * 9
    # The call the server died in was sent; the eight after it were not.
    assert ["was not sent" in error for error in errors] == [False] + [True] * 8
    assert "during this call" in errors[0] and quoted in errors[0]
    assert stream(events, skip=[EventKind.CARD_CREATED])[-4:] == [
        "dispatch.finished pay cashier pay[2] #3 failed",
        "item.escalated pay cashier pay[2]",
        "phase.finished pay completed",
        "run.finished waiting",
    ]


@pytest.mark.parametrize(
    ("status", "fix"),
    [
        (401, "Check the credentials in its headers (MCPServer.http(..., headers=...))"),
        (403, "Check the credentials in its headers (MCPServer.http(..., headers=...))"),
        (503, "Check the server"),
    ],
)
async def test_an_http_server_answering_an_error_status_refuses_the_run_naming_it(
    store: SQLiteStore, status: int, fix: str
) -> None:
    """An HTTP server that answers the handshake with an error status (a gateway asking for
    credentials, a server down for maintenance) is named with that status and what to check,
    not a bare "Server returned an error response" and "check the URL"."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Refusing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"no")

        def log_message(self, *args: object) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{http.server_address[1]}/mcp"
    try:
        server = MCPServer.http(url, name="wiki", headers={"Authorization": "Bearer old"})
        error = await _refused(store, notes_workflow(server, timeout=5))
    finally:
        http.shutdown()
        http.server_close()
    from http import HTTPStatus

    assert error.problems == [
        f"MCP server 'wiki' ({url}) did not answer: it answered HTTP {status} "
        f"{HTTPStatus(status).phrase}. {fix}, or remove its tools from the cards"
    ]


def test_a_card_refusing_an_mcp_tools_name_says_to_rename_it_on_the_card() -> None:
    """An MCP tool's name is the server's: the fix for one a provider refuses (or one named like
    an agent's answer) is ``rename=`` on the card, not `Tool.from_function`, which it is not;
    a Python tool's message still says `Tool.from_function`."""
    server = MCPServer.stdio(NOTES, name="notes")
    card: dict[str, Any] = dict(name="clerk", purpose="Notes.", input=Topic, output=Noted)
    for name, fix in [("files.read", "files_read"), ("final_result", "final_result_")]:
        with pytest.raises(DefinitionError) as raised:
            Role(**card, tools=[server.tool(name)]).check()
        message = str(raised.value)
        assert message.endswith(f"rename it on the card: .tool({name!r}, rename={fix!r})")
        assert "from_function" not in message

    def lookup(topic: str) -> str:
        """Look a topic up."""
        return topic

    from hubspoke import Tool

    with pytest.raises(DefinitionError, match=r"rename it with Tool.from_function\(fn, name="):
        Role(**card, tools=[Tool.from_function(lookup, name="look.up")]).check()


async def test_one_dropped_http_response_stream_does_not_end_the_session() -> None:
    """Over streamable HTTP the ``mcp`` client reports a call whose response stream was cut
    short with the same "Connection closed" as a closed transport, while the session goes on:
    that call fails (naming the server and the tool) and the next one is sent, not refused."""
    from types import SimpleNamespace

    from mcp import MCPError
    from mcp.types import CONNECTION_CLOSED, CallToolResult, TextContent

    from hubspoke.mcp import _Session

    class Client:
        def __init__(self) -> None:
            self.calls = 0
            self.session = SimpleNamespace(_dispatcher=SimpleNamespace(_closed=False))

        async def call_tool(self, name: str, arguments: dict[str, Any]) -> CallToolResult:
            self.calls += 1
            if self.calls == 1:
                raise MCPError(CONNECTION_CLOSED, "SSE stream ended without a response")
            return CallToolResult(content=[TextContent(type="text", text="found")])

    server = MCPServer.http("http://127.0.0.1:9/mcp", name="wiki")
    session = _Session(server)
    session.client = Client()
    tool = server.tool("search")
    with pytest.raises(ConnectionError) as raised:
        await session.call(tool, {})
    assert str(raised.value) == (
        "MCP server 'wiki' dropped the call of tool 'search' before answering "
        "(SSE stream ended without a response)"
    )
    assert await session.call(tool, {}) == "found"
