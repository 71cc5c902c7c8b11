"""The Ray executor, end to end on one local Ray cluster per session (2 CPUs, no dashboard).

Workflows come from tests/ray_flows.py, loaded as ``FILE.py:NAME`` as the CLI loads them, so
that they reach the workers by value. Nothing waits for time: a test waits for a file a worker
writes, or for a process to end.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner

from hubspoke import EventKind, ExecutorError, Foreman, SQLiteStore
from hubspoke.cli import app
from hubspoke.examples.sales import DEMO_INPUT
from hubspoke.examples.sales import workflow as sales
from hubspoke.executors.ray import RayExecutor
from hubspoke.loader import load_workflow
from hubspoke.mcp import MCPServer
from hubspoke.roles import Role
from hubspoke.workflow import Phase, Workflow

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.anyio

FLOWS = Path(__file__).with_name("ray_flows.py")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One local Ray cluster for the session; its workers write to the directory yielded."""
    shared = tmp_path_factory.mktemp("ray-shared")
    # The workers inherit the environment the cluster starts with.
    os.environ["HUBSPOKE_TEST_RAY_DIR"] = str(shared)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=str(tmp_path_factory.mktemp("ray")),
    )
    try:
        yield shared
    finally:
        ray.shutdown()


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


async def test_sales_demo_on_ray_has_the_events_and_cards_of_a_local_run(
    cluster: Path, store: SQLiteStore
) -> None:
    local = await Foreman(sales, store).run(DEMO_INPUT)
    remote = await Foreman(sales, store, executor=RayExecutor()).run(DEMO_INPUT)

    assert remote.status == local.status == "waiting"
    assert _cards(store, remote.run_id) == _cards(store, local.run_id)
    assert len(_cards(store, remote.run_id)) == 10
    # Every item went the same way, event by event: model exchanges and tool calls came back
    # from the workers and were journaled as after a local dispatch.
    assert _per_item(store, remote.run_id) == _per_item(store, local.run_id)
    assert _tokens(remote.summary()) == _tokens(local.summary())


async def _wait_for_file(path: Path) -> int:
    with anyio.fail_after(60):
        while not path.exists():
            await anyio.sleep(0.05)
    return int(path.read_text())


async def test_a_worker_killed_mid_dispatch_fails_it_and_the_run_ends_with_the_same_cards(
    cluster: Path, store: SQLiteStore
) -> None:
    killable = load_workflow(f"{FLOWS}:killable_sales")
    local = await Foreman(sales, store).run(DEMO_INPUT)
    foreman = Foreman(killable, store, executor=RayExecutor())
    outcome: dict[str, Any] = {}

    async def run() -> None:
        outcome["result"] = await foreman.run(DEMO_INPUT)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        pid = await _wait_for_file(cluster / "list_people.pid")
        os.kill(pid, signal.SIGKILL)  # the worker of a running dispatch
    result = outcome["result"]

    assert result.status == "waiting"
    assert _cards(store, result.run_id) == _cards(store, local.run_id)
    events = store.events(result.run_id)
    failed = [
        e for e in events if e.kind is EventKind.DISPATCH_FINISHED and e.data["outcome"] == "failed"
    ]
    assert len(failed) == 1
    assert "Ray worker running the dispatch died" in failed[0].data["message"]
    # The item went down its ladder: retried with a correction, never lost.
    again = [
        e.data["correction"]
        for e in events
        if e.kind is EventKind.DISPATCH_STARTED and e.item == failed[0].item and e.attempt == 2
    ]
    assert again and "died" in again[0]
    assert result.summary()["phases"]["contacts"]["retried"] == 1


async def test_a_time_out_cancels_the_task_and_kills_its_worker(
    cluster: Path, store: SQLiteStore
) -> None:
    slow = load_workflow(f"{FLOWS}:slow")
    result = await Foreman(slow, store, executor=RayExecutor()).run({"seconds": 300})

    (finished,) = [e for e in store.events(result.run_id) if e.kind is EventKind.DISPATCH_FINISHED]
    assert finished.data["outcome"] == "timed_out"
    assert result.status != "completed"
    pid = int((cluster / "sleeper.pid").read_text())
    with anyio.fail_after(30):  # cancelled with force: its worker process is gone
        while _alive(pid):
            await anyio.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone too: it only waits for its parent to read its status.
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


async def test_a_budget_limited_fan_out_never_overruns(cluster: Path, store: SQLiteStore) -> None:
    spending = load_workflow(f"{FLOWS}:spending")
    result = await Foreman(spending, store, executor=RayExecutor()).run({"n": 8})
    local = await Foreman(spending, store).run({"n": 8})

    events = store.events(result.run_id)
    started = [e for e in events if e.kind is EventKind.DISPATCH_STARTED]
    # Every dispatch reserved its 100 tokens before it was submitted; the fifth never was.
    assert [e.data["reserved"]["tokens"] for e in started] == [100] * 4
    assert _tokens(result.summary()) == 400 <= 450
    assert any(e.kind is EventKind.BUDGET_REFUSED for e in events)
    assert result.status == local.status
    assert _per_item(store, result.run_id) == _per_item(store, local.run_id)


async def test_what_a_worker_journals_is_durable_before_it_goes_on(
    cluster: Path, store: SQLiteStore
) -> None:
    announcing = load_workflow(f"{FLOWS}:announcing")
    result = await Foreman(announcing, store, executor=RayExecutor()).run({"db": store.path})

    assert result.status == "completed"
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


def test_what_cannot_run_in_a_worker_is_refused_when_the_foreman_is_built(
    cluster: Path, store: SQLiteStore
) -> None:
    import threading

    from pydantic import BaseModel

    class Empty(BaseModel):
        pass

    lock = threading.Lock()

    def holds_a_lock(value: Empty, ctx: object) -> Empty:
        with lock:
            return value

    def flow(role: Role) -> Workflow:
        phase = Phase(name="p", role=role.name, input=lambda run: run.input)
        return Workflow(name="w", input=Empty, roles=[role], phases=[phase])

    unpicklable = Role(name="locked", purpose="x", input=Empty, output=Empty, function=holds_a_lock)
    with pytest.raises(ExecutorError, match=r"role 'locked'.*does not pickle"):
        Foreman(flow(unpicklable), store, executor=RayExecutor())

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
        Foreman(flow(served), store, executor=RayExecutor())


runner = CliRunner()


def test_missing_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ExecutorError, match=r"pip install 'hubspoke\[ray\]'"):
        RayExecutor()
    done = runner.invoke(
        app, ["demo", "sales", "--executor", "ray", "--db", str(tmp_path / "x.db")]
    )
    assert done.exit_code == 2
    assert "pip install 'hubspoke[ray]'" in done.output
    assert not (tmp_path / "x.db").exists()  # nothing was written


def test_a_bad_address_exits_2_before_the_run_starts(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "x.db"
    for executor, said in [
        (f"ray:127.0.0.1:{port}", f"no Ray cluster answers at 127.0.0.1:{port}"),
        ("ray:nowhere", "is not a Ray cluster's address"),
        ("spark", "give local, ray"),
    ]:
        done = runner.invoke(app, ["demo", "sales", "--executor", executor, "--db", str(db)])
        assert done.exit_code == 2, done.output
        assert said in " ".join(done.output.split())
        assert not db.exists()


def test_the_cli_runs_the_demo_on_ray(cluster: Path, tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    local = runner.invoke(app, ["demo", "sales", "--json", "--db", str(db)])
    remote = runner.invoke(app, ["demo", "sales", "--json", "--executor", "ray", "--db", str(db)])

    assert local.exit_code == remote.exit_code == 0, remote.output
    ran = [json.loads(done.output.strip().splitlines()[-1]) for done in (local, remote)]
    assert ran[0]["status"] == ran[1]["status"] == "waiting"
    store = SQLiteStore(db, read_only=True)
    try:
        assert _cards(store, ran[1]["run_id"]) == _cards(store, ran[0]["run_id"])
    finally:
        store.close()


async def test_a_question_the_foreman_never_received_is_asked_again() -> None:
    from hubspoke.executors._ray_worker import Hub

    hub = Hub()
    asked = asyncio.ensure_future(hub.ask(7, "tool.recorded", "key"))
    lost = asyncio.ensure_future(hub.questions(-1))
    assert await lost == [(0, 7, "tool.recorded", "key")]  # taken, then its result lost
    # The next poll (after the last question the foreman answered) gets it again...
    assert await hub.questions(-1) == [(0, 7, "tool.recorded", "key")]
    await hub.answer([(0, ("ok", None))])
    assert await asked == ("ok", None)
    # ...and an answered one never.
    waiting = asyncio.ensure_future(hub.questions(-1))
    await asyncio.sleep(0)
    assert not waiting.done()
    waiting.cancel()


def test_an_agent_on_a_provider_travels_without_its_client_or_the_foremans_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cloudpickle: Any = ray.cloudpickle  # as RayExecutor sends specialists

    from hubspoke.models import Config, resolve_model
    from hubspoke.specialists.agent import AgentSpecialist, ModelRecipe

    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-foremans-own")
    config = Config.load()
    role = sales.roles[0]
    model = resolve_model("openai:gpt-4o-mini", None, config)
    agent = AgentSpecialist(role, model, None, recipe=ModelRecipe.of("openai:gpt-4o-mini", config))
    sent = cloudpickle.dumps(agent)  # a provider's client (connections, locks) would not pickle
    assert b"sk-the-foremans-own" not in sent

    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-workers-own")  # where it is unpickled
    received: Any = cloudpickle.loads(sent)
    assert type(received) is AgentSpecialist
    built: Any = received.model
    assert built.client.api_key == "sk-the-workers-own"
    assert type(built) is type(model) and built.model_name == "gpt-4o-mini"


async def test_an_agent_on_a_provider_runs_in_a_worker_its_requests_announced_first(
    cluster: Path, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests import wire

    researching = load_workflow(f"{FLOWS}:researching")
    with wire.serve("chat", [wire.call("final_result", {"points": ["tea is old"]})]) as server:
        server.connect(monkeypatch)
        foreman = Foreman(researching, store, model=server.binding("m"), executor=RayExecutor())
        result = await foreman.run({"topic": "tea"})

    assert result.status == "completed", result.reason
    assert store.artifacts(result.run_id)[0].content == {"points": ["tea is old"]}
    [request] = server.requests  # sent by the worker, with a client it built itself
    assert request.model == "m"
    kinds = [e.kind for e in store.events(result.run_id) if e.item is not None]
    assert kinds == [
        EventKind.DISPATCH_STARTED,
        EventKind.MODEL_REQUESTED,  # journaled through the hub before the request left
        EventKind.MODEL_EXCHANGE,
        EventKind.DISPATCH_FINISHED,
        EventKind.ITEM_ACCEPTED,
    ]
    requested = next(e for e in store.events(result.run_id) if e.kind is EventKind.MODEL_REQUESTED)
    assert requested.data["endpoint"].rstrip("/") == server.url
    assert result.summary()["usage"]["requests"] == 1


async def test_a_sub_workflow_runs_its_foreman_here_and_its_specialists_on_ray(
    cluster: Path, store: SQLiteStore
) -> None:
    nested = load_workflow(f"{FLOWS}:nested")
    result = await Foreman(nested, store, executor=RayExecutor()).run({"topic": "tea"})

    assert result.status == "completed", result.reason
    [child] = result.state.children
    assert store.run(child) is not None  # the child's journal, written by this process
    [notes] = store.artifacts(result.run_id)
    [point] = notes.content["points"]
    assert point.startswith("tea in process ")
    assert int(point.rsplit(" ", 1)[1]) != os.getpid()  # the child's specialist ran in a worker


def test_another_process_runs_on_the_cluster_by_its_address(cluster: Path, tmp_path: Path) -> None:
    import subprocess

    address = ray.get_runtime_context().gcs_address  # HOST:PORT, as `ray start` prints it
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    db = tmp_path / "cli.db"
    args = ["demo", "sales", "--json", "--executor", f"ray:{address}", "--db", str(db)]
    done = subprocess.run(
        [sys.executable, "-m", "hubspoke.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert (summary["status"], summary["cards"]) == ("waiting", 10)


async def test_a_side_effect_whose_worker_died_is_in_doubt_not_run_again(
    cluster: Path, store: SQLiteStore
) -> None:
    paying = load_workflow(f"{FLOWS}:paying")
    foreman = Foreman(paying, store, executor=RayExecutor())
    outcome: dict[str, Any] = {}

    async def run() -> None:
        outcome["result"] = await foreman.run({"i": 42})

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        os.kill(await _wait_for_file(cluster / "charge.pid"), signal.SIGKILL)
    result = outcome["result"]

    events = store.events(result.run_id)
    outcomes = [e.data["outcome"] for e in events if e.kind is EventKind.DISPATCH_FINISHED]
    # The worker died inside the charge: the retry finds it started and never finished, and a
    # person decides; the charge does not run a second time.
    assert outcomes == ["failed", "needs_human"]
    assert [e.kind for e in events].count(EventKind.TOOL_STARTED) == 1
    assert not [e for e in events if e.kind is EventKind.TOOL_FINISHED]
    assert result.status == "waiting"
