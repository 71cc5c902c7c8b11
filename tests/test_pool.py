"""The worker pool (`PoolExecutor`), end to end: worker processes started for each run.

Workflows come from tests/ray_flows.py and tests/pool_flows.py, loaded as ``FILE.py:NAME`` as
the CLI loads them, so that every worker process loads the file too. The files a flow writes go
to ``$HUBSPOKE_TEST_RAY_DIR``, which each test points at its own folder before the pool starts
(the workers inherit the environment). Nothing waits for time: a test waits for a file a worker
writes, or for a process to end.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner

from hubspoke import EventKind, ExecutorError, Foreman, SQLiteStore
from hubspoke.cli import app
from hubspoke.events import Event
from hubspoke.examples.sales import DEMO_INPUT
from hubspoke.examples.sales import workflow as sales
from hubspoke.executors import PoolExecutor
from hubspoke.executors.named import executor_for
from hubspoke.loader import load_workflow
from hubspoke.mcp import MCPServer
from hubspoke.roles import Role
from hubspoke.workflow import Phase, Workflow

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent
RAY_FLOWS = HERE / "ray_flows.py"
POOL_FLOWS = HERE / "pool_flows.py"


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder the flows' workers write to."""
    folder = tmp_path / "shared"
    folder.mkdir()
    monkeypatch.setenv("HUBSPOKE_TEST_RAY_DIR", str(folder))
    return folder


def _cards(store: SQLiteStore, run_id: str) -> list[tuple[Any, ...]]:
    """A run's cards as what a person sees: phase, column, title, risk, note, the draft."""
    found = []
    for card in store.cards(run_id):
        artifact = store.artifact(card.artifact_id) if card.artifact_id else None
        content = None if artifact is None else artifact.content
        found.append((card.phase, card.column.value, card.title, card.risk, card.note, content))
    return sorted(found, key=repr)


def _per_item(store: SQLiteStore, run_id: str) -> dict[str, list[tuple[str, int | None]]]:
    """Each item's events in order (kind, attempt): the same whatever the concurrency did."""
    found: dict[str, list[tuple[str, int | None]]] = {}
    for e in store.events(run_id):
        if e.item is not None:
            found.setdefault(e.item, []).append((e.kind.value, e.attempt))
    return found


def _tokens(summary: dict[str, Any]) -> int:
    usage = summary["usage"]
    return int(usage["input_tokens"] + usage["output_tokens"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone too: it only waits for its parent to read its status
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


class _Pids:
    """A listener that notes the pool's worker processes at every event of the run."""

    def __init__(self, pool: PoolExecutor) -> None:
        self.pool = pool
        self.seen: set[int] = set()

    def __call__(self, event: Event) -> None:
        self.seen.update(self.pool.pids)


async def _wait_for_file(path: Path) -> int:
    with anyio.fail_after(60):
        while not path.exists():
            await anyio.sleep(0.05)
    return int(path.read_text())


async def test_sales_demo_on_the_pool_has_the_events_and_cards_of_a_local_run(
    store: SQLiteStore,
) -> None:
    pool = PoolExecutor(workers=2)
    pids = _Pids(pool)
    local = await Foreman(sales, store).run(DEMO_INPUT)
    pooled = await Foreman(sales, store, executor=pool, listeners=[pids]).run(DEMO_INPUT)

    assert pooled.status == local.status == "waiting"
    assert _cards(store, pooled.run_id) == _cards(store, local.run_id)
    assert len(_cards(store, pooled.run_id)) == 10
    # Every item went the same way, event by event: model exchanges and tool calls came back
    # from the workers and were journaled as after a local dispatch.
    assert _per_item(store, pooled.run_id) == _per_item(store, local.run_id)
    assert _tokens(pooled.summary()) == _tokens(local.summary())
    # Its two processes ran for the run and ended with it.
    assert len(pids.seen) == 2 and os.getpid() not in pids.seen
    assert pool.pids == []
    assert not any(_alive(pid) for pid in pids.seen)


async def test_a_worker_killed_mid_dispatch_fails_its_dispatches_and_another_takes_over(
    shared: Path, store: SQLiteStore
) -> None:
    killable = load_workflow(f"{RAY_FLOWS}:killable_sales")
    local = await Foreman(sales, store).run(DEMO_INPUT)
    pool = PoolExecutor(workers=1)
    pids = _Pids(pool)
    foreman = Foreman(killable, store, executor=pool, listeners=[pids])
    outcome: dict[str, Any] = {}

    async def run() -> None:
        outcome["result"] = await foreman.run(DEMO_INPUT)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        killed = await _wait_for_file(shared / "list_people.pid")
        os.kill(killed, signal.SIGKILL)  # the one worker, a dispatch blocked in it
    result = outcome["result"]

    assert result.status == "waiting"
    assert _cards(store, result.run_id) == _cards(store, local.run_id)
    events = store.events(result.run_id)
    failed = [
        e for e in events if e.kind is EventKind.DISPATCH_FINISHED and e.data["outcome"] == "failed"
    ]
    # Every dispatch the process had in flight failed, saying why, and went down its ladder:
    # retried with a correction (by the process that took its place), never lost.
    assert failed
    for finished in failed:
        assert f"worker process running the dispatch died (pid {killed}" in finished.data["message"]
        retried = [
            e
            for e in events
            if e.kind is EventKind.DISPATCH_STARTED and e.item == finished.item and e.attempt == 2
        ]
        assert retried and "died" in retried[0].data["correction"]
    assert result.summary()["phases"]["contacts"]["retried"] == len(failed)
    assert killed in pids.seen and len(pids.seen) == 2  # the replacement
    assert not any(_alive(pid) for pid in pids.seen)


async def test_a_blocked_sync_specialist_times_out_and_does_not_hold_up_its_process(
    shared: Path, store: SQLiteStore
) -> None:
    fan = load_workflow(f"{POOL_FLOWS}:blocking_fan")
    result = await Foreman(fan, store, executor=PoolExecutor(workers=1)).run({"n": 6, "block": 300})

    events = store.events(result.run_id)
    outcomes = {e.item: e.data["outcome"] for e in events if e.kind is EventKind.DISPATCH_FINISHED}
    # The first item's thread sleeps on in its worker; the foreman's clock ended the dispatch.
    # The five others ran in the same process meanwhile.
    assert outcomes == {"sleep[0]": "timed_out", **{f"sleep[{i}]": "output" for i in range(1, 6)}}
    assert result.state.phases["sleep"].accepted == 5
    # The run over, its process is gone, blocked thread and all.
    assert not _alive(int((shared / "sleeper.pid").read_text()))


async def test_what_a_worker_journals_is_durable_before_it_goes_on(
    shared: Path, store: SQLiteStore
) -> None:
    announcing = load_workflow(f"{RAY_FLOWS}:announcing")
    pool = PoolExecutor(workers=1)
    result = await Foreman(announcing, store, executor=pool).run({"db": str(store.path)})

    assert result.status == "completed", result.reason
    events = store.events(result.run_id)
    (accepted,) = [e for e in events if e.kind is EventKind.ITEM_ACCEPTED]
    artifact = store.artifact(accepted.data["artifact_id"])
    assert artifact is not None
    # The worker read its announcement from the journal, with what it had spent before it;
    # the side-effecting tool ran once, the second call replayed from the journal.
    assert artifact.content == {"requested": 1, "spent": 7, "stamps": 1}
    kinds = [e.kind for e in events if e.item is not None]
    assert kinds.index(EventKind.MODEL_REQUESTED) < kinds.index(EventKind.DISPATCH_FINISHED)
    assert kinds.count(EventKind.TOOL_STARTED) == kinds.count(EventKind.TOOL_FINISHED) == 1
    replayed = [e.data for e in events if e.kind is EventKind.TOOL_CALLED]
    assert [d.get("replayed", False) for d in replayed] == [True]


async def test_an_agent_on_a_provider_runs_in_a_worker_its_requests_announced_first(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests import wire

    researching = load_workflow(f"{RAY_FLOWS}:researching")
    with wire.serve("chat", [wire.call("final_result", {"points": ["tea is old"]})]) as server:
        server.connect(monkeypatch)
        pool = PoolExecutor(workers=1)
        foreman = Foreman(researching, store, model=server.binding("m"), executor=pool)
        result = await foreman.run({"topic": "tea"})

    assert result.status == "completed", result.reason
    assert store.artifacts(result.run_id)[0].content == {"points": ["tea is old"]}
    [request] = server.requests  # sent by the worker, with a client it built itself
    assert request.model == "m"
    kinds = [e.kind for e in store.events(result.run_id) if e.item is not None]
    assert kinds == [
        EventKind.DISPATCH_STARTED,
        EventKind.MODEL_REQUESTED,  # journaled by the foreman before the request left
        EventKind.MODEL_EXCHANGE,
        EventKind.DISPATCH_FINISHED,
        EventKind.ITEM_ACCEPTED,
    ]


async def test_a_side_effect_whose_worker_died_is_in_doubt_not_run_again(
    shared: Path, store: SQLiteStore
) -> None:
    paying = load_workflow(f"{RAY_FLOWS}:paying")
    foreman = Foreman(paying, store, executor=PoolExecutor(workers=1))
    outcome: dict[str, Any] = {}

    async def run() -> None:
        outcome["result"] = await foreman.run({"i": 42})

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        os.kill(await _wait_for_file(shared / "charge.pid"), signal.SIGKILL)
    result = outcome["result"]

    events = store.events(result.run_id)
    outcomes = [e.data["outcome"] for e in events if e.kind is EventKind.DISPATCH_FINISHED]
    assert outcomes == ["failed", "needs_human"]
    assert [e.kind for e in events].count(EventKind.TOOL_STARTED) == 1
    assert not [e for e in events if e.kind is EventKind.TOOL_FINISHED]
    assert result.status == "waiting"


async def test_a_run_stopped_on_the_pool_resumes_on_a_new_one_with_a_local_runs_cards(
    shared: Path, store: SQLiteStore
) -> None:
    killable = load_workflow(f"{RAY_FLOWS}:killable_sales")
    local = await Foreman(sales, store).run(DEMO_INPUT)
    pool = PoolExecutor(workers=1)
    pids = _Pids(pool)
    started: dict[str, str] = {}

    def note(event: Event) -> None:
        started.setdefault("run_id", event.run_id)
        pids(event)

    foreman = Foreman(killable, store, executor=pool, listeners=[note])
    async with anyio.create_task_group() as tg:
        tg.start_soon(foreman.run, DEMO_INPUT)
        blocked = await _wait_for_file(shared / "list_people.pid")
        tg.cancel_scope.cancel()  # as Ctrl-C stops a run, a dispatch blocked in a worker
    # The run's end stopped its processes, the blocked one too.
    assert not _alive(blocked) and not any(_alive(pid) for pid in pids.seen)
    run_id = started["run_id"]
    assert store.run(run_id) is not None

    again = PoolExecutor(workers=1)
    result = await Foreman(killable, store, executor=again).resume(run_id)

    assert result.status == "waiting", result.reason
    assert _cards(store, run_id) == _cards(store, local.run_id)
    assert again.pids == []


def test_what_cannot_run_in_a_worker_is_refused_when_the_foreman_is_built(
    store: SQLiteStore,
) -> None:
    from pydantic import BaseModel

    class Empty(BaseModel):
        pass

    def inner(value: Empty, ctx: object) -> Empty:  # not importable: pickled by reference
        return value

    def flow(role: Role) -> Workflow:
        phase = Phase(name="p", role=role.name, input=lambda run: run.input)
        return Workflow(name="w", input=Empty, roles=[role], phases=[phase])

    local_function = Role(name="nested", purpose="x", input=Empty, output=Empty, function=inner)
    with pytest.raises(ExecutorError, match=r"role 'nested'.*does not pickle.*top level"):
        Foreman(flow(local_function), store, executor=PoolExecutor(workers=1))

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
        Foreman(flow(served), store, executor=PoolExecutor(workers=1))


def test_a_sub_workflow_runs_its_foreman_here_and_its_specialists_in_the_pool(
    store: SQLiteStore,
) -> None:
    nested = load_workflow(f"{RAY_FLOWS}:nested")
    result = anyio.run(
        Foreman(nested, store, executor=PoolExecutor(workers=1)).run, {"topic": "tea"}
    )

    assert result.status == "completed", result.reason
    [child] = result.state.children
    assert store.run(child) is not None  # the child's journal, written by this process
    [notes] = store.artifacts(result.run_id)
    [point] = notes.content["points"]
    assert point.startswith("tea in process ")
    assert int(point.rsplit(" ", 1)[1]) != os.getpid()  # the child's specialist ran in a worker


def test_executors_are_named_as_the_cli_names_them() -> None:
    pool = executor_for("pool:3")
    assert isinstance(pool, PoolExecutor) and pool.workers == 3
    assert executor_for("pool").workers == (os.cpu_count() or 1)  # type: ignore[attr-defined]
    for bad, said in [
        ("pool:0", "whole number of worker processes >= 1"),
        ("pool:two", "whole number of worker processes >= 1"),
        ("pool:", "whole number of worker processes >= 1"),
        ("local:2", "give local, pool"),
        ("spark", "give local, pool"),
    ]:
        with pytest.raises(ExecutorError, match=said):
            executor_for(bad)
    with pytest.raises(ExecutorError, match=r"workers=\.\.\.\) must be a whole number >= 1"):
        PoolExecutor(workers=0)


runner = CliRunner()


def test_the_cli_runs_the_demo_on_the_pool(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    local = runner.invoke(app, ["demo", "sales", "--json", "--db", str(db)])
    pooled = runner.invoke(
        app, ["demo", "sales", "--json", "--executor", "pool:2", "--db", str(db)]
    )

    assert local.exit_code == pooled.exit_code == 0, pooled.output
    ran = [json.loads(done.output.strip().splitlines()[-1]) for done in (local, pooled)]
    assert ran[0]["status"] == ran[1]["status"] == "waiting"
    store = SQLiteStore(db, read_only=True)
    try:
        assert _cards(store, ran[1]["run_id"]) == _cards(store, ran[0]["run_id"])
    finally:
        store.close()
    for bad in ("pool:0", "pool:x"):
        done = runner.invoke(
            app, ["demo", "sales", "--executor", bad, "--db", str(tmp_path / "x.db")]
        )
        assert done.exit_code == 2, done.output
        assert "whole number of worker processes" in " ".join(done.output.split())
        assert not (tmp_path / "x.db").exists()  # nothing was written
