"""What tests/test_ray.py and tests/test_pool.py check alike of an executor that runs
specialists in other processes: a run's cards and per-item events (to compare with a local
run's), processes that are gone, files a worker writes, and the end of the flows of
tests/ray_flows.py that both run.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from hubspoke import EventKind, ExecutorError, Foreman, SQLiteStore
from hubspoke.executors import Executor
from hubspoke.foreman import RunResult
from hubspoke.loader import load_workflow
from hubspoke.mcp import MCPServer
from hubspoke.roles import Role
from hubspoke.workflow import Phase, Workflow


def cards(store: SQLiteStore, run_id: str) -> list[tuple[Any, ...]]:
    """A run's cards as what a person sees: phase, column, title, risk, note, the draft."""
    found = []
    for card in store.cards(run_id):
        artifact = store.artifact(card.artifact_id) if card.artifact_id else None
        content = None if artifact is None else artifact.content
        found.append((card.phase, card.column.value, card.title, card.risk, card.note, content))
    return sorted(found, key=repr)


def per_item(store: SQLiteStore, run_id: str) -> dict[str, list[tuple[str, int | None]]]:
    """Each item's events in order (kind, attempt): the same whatever the concurrency did."""
    found: dict[str, list[tuple[str, int | None]]] = {}
    for e in store.events(run_id):
        if e.item is not None:
            found.setdefault(e.item, []).append((e.kind.value, e.attempt))
    return found


def tokens(summary: dict[str, Any]) -> int:
    usage = summary["usage"]
    return int(usage["input_tokens"] + usage["output_tokens"])


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie, which only waits for its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


async def wait_for_file(path: Path) -> int:
    """The process id a worker wrote to `path`, once it is there."""
    with anyio.fail_after(60):
        while not path.exists():
            await anyio.sleep(0.05)
    return int(path.read_text())


async def run_killing(
    foreman: Foreman, given: dict[str, Any], pid_file: Path
) -> tuple[RunResult, int]:
    """Run `foreman` on `given`, killing (SIGKILL) the worker that writes its process id to
    `pid_file` mid-dispatch; the run's result and the process killed."""
    outcome: dict[str, Any] = {}

    async def run() -> None:
        outcome["result"] = await foreman.run(given)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        killed = await wait_for_file(pid_file)
        os.kill(killed, signal.SIGKILL)
    result: RunResult = outcome["result"]
    return result, killed


def check_killed_sales(
    store: SQLiteStore, result: RunResult, local: RunResult, died: str
) -> list[str]:
    """The ``killable_sales`` flow's end after a worker was killed mid-dispatch: the cards of
    the `local` run; every dispatch the worker had in flight ``failed``, its message holding
    `died`, and went down its ladder, retried with a correction (never lost). Returns the items
    that failed."""
    assert result.status == "waiting"
    assert cards(store, result.run_id) == cards(store, local.run_id)
    events = store.events(result.run_id)
    failed = [
        e for e in events if e.kind is EventKind.DISPATCH_FINISHED and e.data["outcome"] == "failed"
    ]
    assert failed
    for finished in failed:
        assert died in finished.data["message"]
        again = [
            e.data["correction"]
            for e in events
            if e.kind is EventKind.DISPATCH_STARTED and e.item == finished.item and e.attempt == 2
        ]
        assert again and "died" in again[0]
    assert result.summary()["phases"]["contacts"]["retried"] == len(failed)
    return [str(e.item) for e in failed]


async def check_budgeted(store: SQLiteStore, executor: Executor) -> None:
    """The ``spending`` flow (a fan-out of 8 whose dispatches spend their whole 100 tokens, the
    run's budget 450) on `executor`: each dispatch reserved before it was sent, the fifth
    never was, and the run went as a local one does."""
    spending = load_workflow(f"{Path(__file__).with_name('ray_flows.py')}:spending")
    result = await Foreman(spending, store, executor=executor).run({"n": 8})
    local = await Foreman(spending, store).run({"n": 8})

    events = store.events(result.run_id)
    started = [e for e in events if e.kind is EventKind.DISPATCH_STARTED]
    assert [e.data["reserved"]["tokens"] for e in started] == [100] * 4
    assert tokens(result.summary()) == 400 <= 450
    assert any(e.kind is EventKind.BUDGET_REFUSED for e in events)
    assert result.status == local.status
    assert per_item(store, result.run_id) == per_item(store, local.run_id)


def check_announced(store: SQLiteStore, result: RunResult) -> None:
    """The ``announcing`` flow's end: the worker read its ``model.requested`` from the journal
    (with what it had spent before it) before going on, and its side-effecting tool, called
    twice, ran once, the second call replayed from the journal."""
    assert result.status == "completed", result.reason
    events = store.events(result.run_id)
    (accepted,) = [e for e in events if e.kind is EventKind.ITEM_ACCEPTED]
    artifact = store.artifact(accepted.data["artifact_id"])
    assert artifact is not None
    assert artifact.content == {"requested": 1, "spent": 7, "stamps": 1}
    kinds = [e.kind for e in events if e.item is not None]
    assert kinds.index(EventKind.MODEL_REQUESTED) < kinds.index(EventKind.DISPATCH_FINISHED)
    assert kinds.count(EventKind.TOOL_STARTED) == kinds.count(EventKind.TOOL_FINISHED) == 1
    replayed = [e.data for e in events if e.kind is EventKind.TOOL_CALLED]
    assert [d.get("replayed", False) for d in replayed] == [True]


def check_in_doubt(store: SQLiteStore, result: RunResult) -> None:
    """The ``paying`` flow's end after its worker was killed inside the charge: the retry
    finds the call started and never finished, and a person decides; it does not run again."""
    events = store.events(result.run_id)
    outcomes = [e.data["outcome"] for e in events if e.kind is EventKind.DISPATCH_FINISHED]
    assert outcomes == ["failed", "needs_human"]
    assert [e.kind for e in events].count(EventKind.TOOL_STARTED) == 1
    assert not [e for e in events if e.kind is EventKind.TOOL_FINISHED]
    assert result.status == "waiting"


def final_points(points: list[str]) -> Callable[[Any], Any]:
    """A scripted model's answer for `tests.wire.serve`: a ``final_result`` call giving
    `points`, made only as a real model could make it, to a request that offers a
    ``final_result`` tool taking ``points`` and a tool choice that lets it be called (the
    double fails its block otherwise)."""
    from tests import wire

    def answer(request: wire.Request) -> wire.Reply:
        schema = request.tool_schemas.get("final_result")
        if schema is None or "points" not in schema.get("properties", {}):
            raise AssertionError(f"no final_result(points) among the tools {request.tools}")
        choice = request.tool_choice
        if choice == "none" or (isinstance(choice, dict) and choice["name"] != "final_result"):
            raise AssertionError(f"the tool choice {choice!r} lets no final_result be called")
        if request.max_tokens is not None and request.max_tokens < 1:
            raise AssertionError(f"max_tokens {request.max_tokens} leaves no room to answer")
        return wire.call("final_result", {"points": points})

    return answer


def topic_asked(request: Any) -> str:
    """The topic a ``researching`` agent's request (a `tests.wire.Request`) asks about: the
    item's input, as its one user message carries it."""
    [user] = [m.content for m in request.messages if m.role == "user"]
    assert isinstance(user, str), user
    topic: str = json.loads(user)["input"]["topic"]
    return topic


def check_researched(store: SQLiteStore, result: RunResult, requests: list[Any]) -> None:
    """The ``researching`` flow's end, its agent's model a scripted provider's server that got
    `requests`: one request, sent by the worker, announced to the journal before it left."""
    assert result.status == "completed", result.reason
    assert store.artifacts(result.run_id)[0].content == {"points": ["tea is old"]}
    [request] = requests  # sent by the worker, with a client it built itself
    assert request.model == "m"
    assert topic_asked(request) == "tea"
    kinds = [e.kind for e in store.events(result.run_id) if e.item is not None]
    assert kinds == [
        EventKind.DISPATCH_STARTED,
        EventKind.MODEL_REQUESTED,  # journaled by the foreman before the request left
        EventKind.MODEL_EXCHANGE,
        EventKind.DISPATCH_FINISHED,
        EventKind.ITEM_ACCEPTED,
    ]


def check_nested(store: SQLiteStore, result: RunResult) -> None:
    """The ``nested`` flow's end: the child foreman ran (and journaled) in this process, the
    child's specialist in a worker (its note names another process)."""
    assert result.status == "completed", result.reason
    [child] = result.state.children
    assert store.run(child) is not None
    [notes] = store.artifacts(result.run_id)
    [point] = notes.content["points"]
    assert point.startswith("tea in process ")
    assert int(point.rsplit(" ", 1)[1]) != os.getpid()


class Empty(BaseModel):
    pass


def check_refused(
    store: SQLiteStore,
    executor: Callable[[], Executor],
    unpicklable: Callable[[Empty, Any], Empty],
    said: str,
) -> None:
    """A foreman on the `executor` refuses, when it is built, a role whose function is
    `unpicklable` (the error matching `said`) and a role whose tools are an MCP server's."""

    def flow(role: Role) -> Workflow:
        phase = Phase(name="p", role=role.name, input=lambda run: run.input)
        return Workflow(name="w", input=Empty, roles=[role], phases=[phase])

    locked = Role(name="locked", purpose="x", input=Empty, output=Empty, function=unpicklable)
    with pytest.raises(ExecutorError, match=said):
        Foreman(flow(locked), store, executor=executor())

    server = MCPServer.stdio([sys.executable, "-c", "pass"], name="notes")
    served = Role(
        name="reader",
        purpose="x",
        input=Empty,
        output=Empty,
        function=lambda value, ctx: value,
        tools=[server.tool("read_note")],
    )
    with pytest.raises(ExecutorError, match="role 'reader' calls tools of an MCP server"):
        Foreman(flow(served), store, executor=executor())


def check_cli_demo(db: Path, executor: str) -> None:
    """``hubspoke demo sales --executor EXECUTOR`` gives the cards of a local run."""
    from typer.testing import CliRunner

    from hubspoke.cli import app

    runner = CliRunner()
    local = runner.invoke(app, ["demo", "sales", "--json", "--db", str(db)])
    other = runner.invoke(app, ["demo", "sales", "--json", "--executor", executor, "--db", str(db)])
    assert local.exit_code == other.exit_code == 0, other.output
    ran = [json.loads(done.output.strip().splitlines()[-1]) for done in (local, other)]
    assert ran[0]["status"] == ran[1]["status"] == "waiting"
    store = SQLiteStore(db, read_only=True)
    try:
        assert cards(store, ran[1]["run_id"]) == cards(store, ran[0]["run_id"])
    finally:
        store.close()
