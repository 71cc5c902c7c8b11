"""The Ray executor, end to end on one local Ray cluster per session (2 CPUs, no dashboard).

Workflows come from tests/ray_flows.py, loaded as ``FILE.py:NAME`` as the CLI loads them, so
that they reach the workers by value. Nothing waits for time: a test waits for a file a worker
writes, or for a process to end.
"""

from __future__ import annotations

import asyncio
import json
import os
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
from tests import executor_checks as checks

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


async def test_sales_demo_on_ray_has_the_events_and_cards_of_a_local_run(
    cluster: Path, store: SQLiteStore
) -> None:
    local = await Foreman(sales, store).run(DEMO_INPUT)
    remote = await Foreman(sales, store, executor=RayExecutor()).run(DEMO_INPUT)

    assert remote.status == local.status == "waiting"
    assert checks.cards(store, remote.run_id) == checks.cards(store, local.run_id)
    assert len(checks.cards(store, remote.run_id)) == 10
    # Every item went the same way, event by event: model exchanges and tool calls came back
    # from the workers and were journaled as after a local dispatch.
    assert checks.per_item(store, remote.run_id) == checks.per_item(store, local.run_id)
    assert checks.tokens(remote.summary()) == checks.tokens(local.summary())


async def test_a_worker_killed_mid_dispatch_fails_it_and_the_run_ends_with_the_same_cards(
    cluster: Path, store: SQLiteStore
) -> None:
    killable = load_workflow(f"{FLOWS}:killable_sales")
    local = await Foreman(sales, store).run(DEMO_INPUT)
    foreman = Foreman(killable, store, executor=RayExecutor())
    # The worker of a running dispatch.
    result, _ = await checks.run_killing(foreman, DEMO_INPUT, cluster / "list_people.pid")

    failed = checks.check_killed_sales(store, result, local, "Ray worker running the dispatch died")
    assert len(failed) == 1  # a Ray worker runs one dispatch


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
        while checks.alive(pid):
            await anyio.sleep(0.05)


async def test_a_budget_limited_fan_out_never_overruns(cluster: Path, store: SQLiteStore) -> None:
    await checks.check_budgeted(store, RayExecutor())


async def test_what_a_worker_journals_is_durable_before_it_goes_on(
    cluster: Path, store: SQLiteStore
) -> None:
    announcing = load_workflow(f"{FLOWS}:announcing")
    result = await Foreman(announcing, store, executor=RayExecutor()).run({"db": store.path})

    checks.check_announced(store, result)


def test_what_cannot_run_in_a_worker_is_refused_when_the_foreman_is_built(
    cluster: Path, store: SQLiteStore
) -> None:
    import threading

    lock = threading.Lock()

    def holds_a_lock(value: checks.Empty, ctx: object) -> checks.Empty:
        with lock:
            return value

    checks.check_refused(store, RayExecutor, holds_a_lock, r"role 'locked'.*does not pickle")


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
        ("spark", "give local, pool"),
    ]:
        done = runner.invoke(app, ["demo", "sales", "--executor", executor, "--db", str(db)])
        assert done.exit_code == 2, done.output
        assert said in " ".join(done.output.split())
        assert not db.exists()


def test_the_cli_runs_the_demo_on_ray(cluster: Path, tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    checks.check_cli_demo(db, "ray")


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

    checks.check_researched(store, result, server.requests)
    requested = next(e for e in store.events(result.run_id) if e.kind is EventKind.MODEL_REQUESTED)
    assert requested.data["endpoint"].rstrip("/") == server.url
    assert result.summary()["usage"]["requests"] == 1


async def test_a_sub_workflow_runs_its_foreman_here_and_its_specialists_on_ray(
    cluster: Path, store: SQLiteStore
) -> None:
    nested = load_workflow(f"{FLOWS}:nested")
    result = await Foreman(nested, store, executor=RayExecutor()).run({"topic": "tea"})

    checks.check_nested(store, result)


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
    result, _ = await checks.run_killing(foreman, {"i": 42}, cluster / "charge.pid")
    checks.check_in_doubt(store, result)
