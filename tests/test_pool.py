"""The worker pool (`PoolExecutor`), end to end: worker processes started for each run.

Workflows come from tests/ray_flows.py and tests/pool_flows.py, loaded as ``FILE.py:NAME`` as
the CLI loads them, so that every worker process loads the file too. The files a flow writes go
to ``$HUBSPOKE_TEST_RAY_DIR``, which each test points at its own folder before the pool starts
(the workers inherit the environment). Nothing waits for time: a test waits for a file a worker
writes, or for a process to end.
"""

from __future__ import annotations

import os
import sys
import threading
import time
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
from hubspoke.foreman import RunResult
from hubspoke.loader import load_workflow
from hubspoke.workflow import Workflow
from tests import executor_checks as checks

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


class _Pids:
    """A listener that notes the pool's worker processes at every event of the run."""

    def __init__(self, pool: PoolExecutor) -> None:
        self.pool = pool
        self.seen: set[int] = set()

    def __call__(self, event: Event) -> None:
        self.seen.update(self.pool.pids)


async def _killable_on_one_worker(
    store: SQLiteStore,
) -> tuple[RunResult, Workflow, PoolExecutor, _Pids]:
    """A local run of the sales demo, the demo whose first `list_people` call blocks its worker,
    a pool of one process, and a listener noting its processes."""
    local = await Foreman(sales, store).run(DEMO_INPUT)
    pool = PoolExecutor(workers=1)
    return local, load_workflow(f"{RAY_FLOWS}:killable_sales"), pool, _Pids(pool)


async def test_sales_demo_on_the_pool_has_the_events_and_cards_of_a_local_run(
    store: SQLiteStore,
) -> None:
    pool = PoolExecutor(workers=2)
    pids = _Pids(pool)
    local = await Foreman(sales, store).run(DEMO_INPUT)
    pooled = await Foreman(sales, store, executor=pool, listeners=[pids]).run(DEMO_INPUT)

    assert pooled.status == local.status == "waiting"
    assert checks.cards(store, pooled.run_id) == checks.cards(store, local.run_id)
    assert len(checks.cards(store, pooled.run_id)) == 10
    # Every item went the same way, event by event: model exchanges and tool calls came back
    # from the workers and were journaled as after a local dispatch.
    assert checks.per_item(store, pooled.run_id) == checks.per_item(store, local.run_id)
    assert checks.tokens(pooled.summary()) == checks.tokens(local.summary())
    # Its two processes ran for the run and ended with it.
    assert len(pids.seen) == 2 and os.getpid() not in pids.seen
    assert pool.pids == []
    assert not any(checks.alive(pid) for pid in pids.seen)


async def test_a_worker_killed_mid_dispatch_fails_its_dispatches_and_another_takes_over(
    shared: Path, store: SQLiteStore
) -> None:
    local, killable, pool, pids = await _killable_on_one_worker(store)
    foreman = Foreman(killable, store, executor=pool, listeners=[pids])
    # The one worker, a dispatch blocked in it.
    result, killed = await checks.run_killing(foreman, DEMO_INPUT, shared / "list_people.pid")

    # Every dispatch the process had in flight failed and was retried, by the one that took
    # its place.
    died = f"the worker process running the dispatch died (pid {killed}, killed by signal 9)"
    checks.check_killed_sales(store, result, local, died)
    assert killed in pids.seen and len(pids.seen) == 2  # the replacement
    assert not any(checks.alive(pid) for pid in pids.seen)


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
    assert not checks.alive(int((shared / "sleeper.pid").read_text()))


async def test_a_time_out_cancels_the_dispatch_in_its_worker(
    shared: Path, store: SQLiteStore
) -> None:
    napping = load_workflow(f"{POOL_FLOWS}:cancelling")
    pool = PoolExecutor(workers=1)
    result = await Foreman(napping, store, executor=pool).run({"n": 2, "block": 300})

    outcomes = [
        (e.item, e.data["outcome"])
        for e in store.events(result.run_id)
        if e.kind is EventKind.DISPATCH_FINISHED
    ]
    # The napper's task was cancelled in the worker at its time-out (it wrote so), which the
    # watcher, after it in the same process, saw.
    assert outcomes == [("sleep[0]", "timed_out"), ("sleep[1]", "output")]
    assert (shared / "cancelled").exists()


async def test_a_budget_limited_fan_out_reserves_before_it_sends_and_never_overruns(
    store: SQLiteStore,
) -> None:
    await checks.check_budgeted(store, PoolExecutor(workers=2))


async def test_messages_go_in_batches_not_one_write_per_dispatch(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubspoke.executors import pool as pool_module

    writes: list[int] = []  # messages per write, foreman to worker
    reads = 0  # batches the foreman read from the worker
    flush, readable = pool_module._Process._flush, pool_module.PoolExecutor._readable

    def counted_flush(self: Any) -> None:
        if self.out and not self.dead:
            writes.append(len(self.out))
        flush(self)

    def counted_readable(self: Any, p: Any) -> None:
        nonlocal reads
        reads += 1
        readable(self, p)

    monkeypatch.setattr(pool_module._Process, "_flush", counted_flush)
    monkeypatch.setattr(pool_module.PoolExecutor, "_readable", counted_readable)
    echoing = load_workflow(f"{POOL_FLOWS}:echoing")
    result = await Foreman(echoing, store, executor=PoolExecutor(workers=1)).run({"n": 500})

    assert result.status == "completed", result.reason
    assert sum(writes) == 500 + 1  # every dispatch, and the stop
    # A fan-out's dispatches go in the writes of a few loop ticks, their results likewise.
    assert len(writes) <= 10, writes
    assert reads <= 20


async def test_what_a_worker_journals_is_durable_before_it_goes_on(
    shared: Path, store: SQLiteStore
) -> None:
    announcing = load_workflow(f"{RAY_FLOWS}:announcing")
    pool = PoolExecutor(workers=1)
    result = await Foreman(announcing, store, executor=pool).run({"db": str(store.path)})

    checks.check_announced(store, result)


async def test_an_agent_on_a_provider_runs_in_a_worker_its_requests_announced_first(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests import wire

    researching = load_workflow(f"{RAY_FLOWS}:researching")
    with wire.serve("chat", checks.final_points(["tea is old"])) as server:
        server.connect(monkeypatch)
        pool = PoolExecutor(workers=1)
        foreman = Foreman(researching, store, model=server.binding("m"), executor=pool)
        result = await foreman.run({"topic": "tea"})

    checks.check_researched(store, result, server.requests)


class _SlowStore(SQLiteStore):
    """A store whose writes take a while: a request that left before its announcement was
    written would reach the server first."""

    def append(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)  # not waiting for anything: widening the window a bug would use
        return super().append(*args, **kwargs)


def _announced(path: str) -> int:
    """How many ``model.requested`` the database at `path` holds, read as another process would."""
    reader = SQLiteStore(path, read_only=True)
    try:
        return sum(
            1
            for run in reader.runs()
            for e in reader.events(run.run_id)
            if e.kind is EventKind.MODEL_REQUESTED
        )
    finally:
        reader.close()


async def test_agents_requests_leave_a_worker_only_once_journaled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests import wire

    store = _SlowStore(tmp_path / "slow.db")
    many = load_workflow(f"{POOL_FLOWS}:researching_many")
    topics = [f"topic {i}" for i in range(12)]
    seen: list[tuple[int, int]] = []  # (requests received, model.requested in the journal)
    lock = threading.Lock()

    def answer(request: Any) -> Any:
        # The server's thread, as each request arrives: read the journal as another process
        # would. Every request that has left must be announced there already.
        announced = _announced(store.path)
        with lock:
            seen.append((len(seen) + 1, announced))
        return final(request)

    final = checks.final_points(["noted"])
    with wire.serve("chat", answer) as server:
        server.connect(monkeypatch)
        pool = PoolExecutor(workers=1)
        foreman = Foreman(many, store, model=server.binding("m"), executor=pool)
        result = await foreman.run({"topics": topics})

    store.close()
    assert result.status == "completed", result.reason
    assert sorted(map(checks.topic_asked, server.requests)) == sorted(topics)
    assert len(seen) == len(topics)
    assert all(announced >= received for received, announced in seen), seen


async def test_a_side_effect_whose_worker_died_is_in_doubt_not_run_again(
    shared: Path, store: SQLiteStore
) -> None:
    paying = load_workflow(f"{RAY_FLOWS}:paying")
    foreman = Foreman(paying, store, executor=PoolExecutor(workers=1))
    result, _ = await checks.run_killing(foreman, {"i": 42}, shared / "charge.pid")
    checks.check_in_doubt(store, result)


async def test_a_run_stopped_on_the_pool_resumes_on_a_new_one_with_a_local_runs_cards(
    shared: Path, store: SQLiteStore
) -> None:
    local, killable, pool, pids = await _killable_on_one_worker(store)
    started: dict[str, str] = {}

    def note(event: Event) -> None:
        started.setdefault("run_id", event.run_id)
        pids(event)

    foreman = Foreman(killable, store, executor=pool, listeners=[note])
    async with anyio.create_task_group() as tg:
        tg.start_soon(foreman.run, DEMO_INPUT)
        blocked = await checks.wait_for_file(shared / "list_people.pid")
        tg.cancel_scope.cancel()  # as Ctrl-C stops a run, a dispatch blocked in a worker
    # The run's end stopped its processes, the blocked one too.
    assert not checks.alive(blocked) and not any(checks.alive(pid) for pid in pids.seen)
    run_id = started["run_id"]
    assert store.run(run_id) is not None

    again = PoolExecutor(workers=1)
    result = await Foreman(killable, store, executor=again).resume(run_id)

    assert result.status == "waiting", result.reason
    assert checks.cards(store, run_id) == checks.cards(store, local.run_id)
    assert again.pids == []


def test_what_cannot_run_in_a_worker_is_refused_when_the_foreman_is_built(
    store: SQLiteStore,
) -> None:
    def inner(value: checks.Empty, ctx: object) -> checks.Empty:  # pickled by reference: no
        return value

    checks.check_refused(
        store, lambda: PoolExecutor(workers=1), inner, r"role 'locked'.*does not pickle.*top level"
    )


def test_a_sub_workflow_runs_its_foreman_here_and_its_specialists_in_the_pool(
    store: SQLiteStore,
) -> None:
    nested = load_workflow(f"{RAY_FLOWS}:nested")
    result = anyio.run(
        Foreman(nested, store, executor=PoolExecutor(workers=1)).run, {"topic": "tea"}
    )

    checks.check_nested(store, result)


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
    cpus = os.cpu_count() or 1
    assert PoolExecutor(workers=8 * cpus).workers == 8 * cpus
    with pytest.raises(ExecutorError, match=rf"workers=999\) asks for .* at most {8 * cpus}"):
        PoolExecutor(workers=999)


runner = CliRunner()


def test_the_cli_runs_the_demo_on_the_pool(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    checks.check_cli_demo(db, "pool:2")
    too_many = 8 * (os.cpu_count() or 1) + 1
    for bad, said in [
        ("pool:0", "whole number of worker processes"),
        ("pool:x", "whole number of worker processes"),
        ("pool:-1", "whole number of worker processes"),
        # Each worker is an interpreter of its own: hundreds of them on a few CPUs would take
        # the machine's memory and minutes to start, and then time out.
        (f"pool:{too_many}", "at most 8 worker processes per CPU"),
    ]:
        done = runner.invoke(
            app, ["demo", "sales", "--executor", bad, "--db", str(tmp_path / "x.db")]
        )
        assert done.exit_code == 2, done.output
        assert said in " ".join(done.output.split())
        assert not (tmp_path / "x.db").exists()  # nothing was written


def test_what_travels_over_the_pipes_comes_back_whole() -> None:
    import dataclasses
    import pickle

    from hubspoke.executors._remote import _SHIPMENT, Returned, Shipment
    from hubspoke.outcomes import Outcome, OutcomeKind
    from hubspoke.work import Brief

    assert tuple(f.name for f in dataclasses.fields(Shipment)) == _SHIPMENT
    shipment = Shipment(
        digest="d",
        dispatch=3,
        run_id="r",
        phase="p",
        key="p[0]",
        role="x",
        attempt=2,
        correction="fix it",
        brief=Brief(objective="o", scope="s", output_format="f", siblings="b"),
        input_json=b"{}",
        tokens=10,
        usd=0.5,
        tool_calls=None,
        roles=frozenset({"x", "y"}),
        announce=True,
        journal_tools=False,
    )
    assert pickle.loads(pickle.dumps(shipment)) == shipment
    outcome = Outcome(
        OutcomeKind.THROTTLED, {"a": 1}, errors=[{"loc": ["a"]}], message="m", wait=1.5
    )
    returned = Returned(outcome, [{"kind": "tool.refused"}], (1, 2, 3, 4, 0.5), "in doubt")
    assert pickle.loads(pickle.dumps(returned)) == returned


async def test_a_pool_whose_processes_cannot_start_stops_the_run_before_it_is_written(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubspoke.executors import pool as pool_module

    monkeypatch.setattr(pool_module, "_BOOT", "import sys; sys.exit(3)")
    pool = PoolExecutor(workers=2)
    with pytest.raises(ExecutorError, match=r"died starting \(exit code 3\)"):
        await Foreman(sales, store, executor=pool).run(DEMO_INPUT)
    assert store.runs() == []  # nothing was written
    assert pool.pids == []


async def test_workers_end_when_their_foremans_process_is_killed(
    shared: Path, tmp_path: Path
) -> None:
    import subprocess

    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    args = ["run", f"{RAY_FLOWS}:slow", "--input", '{"seconds": 300}', "--executor", "pool:1"]
    args += ["--db", str(tmp_path / "cli.db")]
    foreman = subprocess.Popen(
        [sys.executable, "-m", "hubspoke.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        worker = await checks.wait_for_file(shared / "sleeper.pid")  # blocked in its thread
        foreman.kill()  # SIGKILL: no `finally` runs in the foreman
        foreman.wait(30)
        with anyio.fail_after(30):  # its pipe closed: the worker ends
            while checks.alive(worker):
                await anyio.sleep(0.05)
    finally:
        foreman.kill()


_SCRIPT = """
import anyio
from pydantic import BaseModel
from hubspoke import ExecutorError, Foreman, SQLiteStore
from hubspoke.executors import PoolExecutor
from hubspoke.roles import Role
from hubspoke.workflow import Phase, Workflow


class X(BaseModel):
    i: int


def double(x: X, ctx: object) -> X:
    return X(i=x.i * 2)


workflow = Workflow(
    name="script",
    input=X,
    roles=[Role(name="doubler", purpose="Double.", input=X, output=X, function=double)],
    phases=[Phase(name="p", role="doubler", input=lambda run: run.input)],
)

if __name__ == "__main__":
    store = SQLiteStore(__import__("sys").argv[1])
    try:
        foreman = Foreman(workflow, store, executor=PoolExecutor(workers=1))
    except ExecutorError as e:
        print("refused:", e)
    else:
        print("ran:", anyio.run(foreman.run, {"i": 2}).status)
"""


def test_a_function_defined_in_the_script_being_run_is_refused_when_the_foreman_is_built(
    tmp_path: Path,
) -> None:
    # `python flow.py`: its functions are `__main__`'s, which a worker (a fresh interpreter that
    # never runs the script) cannot find by name: refused before anything runs, not failed at
    # every dispatch.
    import subprocess

    script = tmp_path / "flow.py"
    script.write_text(_SCRIPT)
    src = str(Path(__file__).parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    db = tmp_path / "script.db"
    done = subprocess.run(
        [sys.executable, str(script), str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    said = " ".join(done.stdout.split())
    assert said.startswith("refused: role 'doubler'"), said
    assert "double" in said and "__main__" in said and "module" in said
    store = SQLiteStore(db, read_only=True)
    try:
        assert store.runs() == []
    finally:
        store.close()


@pytest.mark.parametrize(
    ("flow_name", "said"),
    [
        # Its result pickles in its worker but does not load here.
        ("unreadable", ["could not be read in the foreman's process", "TypeError", "Unreadable"]),
        # It calls `sys.exit` (an async specialist: no worker thread turns it into an error).
        ("exiting", ["the specialist raised SystemExit: 3"]),
    ],
)
async def test_a_specialist_gone_wrong_fails_its_dispatch_alone(
    store: SQLiteStore, flow_name: str, said: list[str]
) -> None:
    # The first item's dispatch fails with the reason. Its siblings, in flight in the same
    # process (their results in the same batches), come back, and the process lives on:
    # nothing died, nothing was started in its place.
    flow = load_workflow(f"{POOL_FLOWS}:{flow_name}")
    pool = PoolExecutor(workers=1)
    pids = _Pids(pool)
    result = await Foreman(flow, store, executor=pool, listeners=[pids]).run({"n": 8})

    finished = [
        (e.item, e.data["outcome"], e.data.get("message", ""))
        for e in store.events(result.run_id)
        if e.kind is EventKind.DISPATCH_FINISHED
    ]
    first = [f for f in finished if f[0] == "echo[0]"]
    assert first and all(outcome == "failed" for _, outcome, _ in first), first
    assert all(part in m for part in said for _, _, m in first), first
    others = sorted((item, outcome) for item, outcome, _ in finished if item != "echo[0]")
    assert others == [(f"echo[{i}]", "output") for i in range(1, 8)]
    assert len(pids.seen) == 1  # no process died, none was started in its place


async def test_a_worker_whose_specialist_forked_is_seen_dying_and_its_children_end_with_it(
    shared: Path, store: SQLiteStore
) -> None:
    # A child forked in a worker holds a copy of everything the worker had open, its pipe to
    # the foreman too: the worker's death must still be seen at once (not at the dispatch's
    # time-out), and the run must leave no process behind, the forked one included.
    flow = load_workflow(f"{POOL_FLOWS}:forking")
    foreman = Foreman(flow, store, executor=PoolExecutor(workers=1))
    result, killed = await checks.run_killing(foreman, {"n": 2}, shared / "blocker.pid")

    finished = {
        e.item: (e.data["outcome"], e.data.get("message", ""))
        for e in store.events(result.run_id)
        if e.kind is EventKind.DISPATCH_FINISHED
    }
    assert finished["echo[0]"] == ("output", "")
    assert finished["echo[1]"] == (
        "failed",
        f"the worker process running the dispatch died (pid {killed}, killed by signal 9)",
    )
    assert not checks.alive(int((shared / "forked.pid").read_text()))


async def test_a_workflow_file_named_from_another_directory_loads_in_the_workers(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file is named relative to the directory it was loaded from; the run starts (and its
    # workers with it) after the process moved elsewhere. The workers still find the file.
    monkeypatch.chdir(HERE)
    echoing = load_workflow("pool_flows.py:echoing")
    foreman = Foreman(echoing, store, executor=PoolExecutor(workers=1))
    monkeypatch.chdir(tmp_path)
    result = await foreman.run({"n": 3})

    assert result.status == "completed", result.reason
    assert result.state.phases["echo"].accepted == 3


_ARGV_FLOW = """
import sys
from pydantic import BaseModel
from hubspoke.roles import Role
from hubspoke.workflow import Phase, Workflow

ARGV = list(sys.argv)  # read at import, as a script's settings often are
if "--refuse-import" in ARGV:
    sys.exit("not here")


class Seen(BaseModel):
    argv: list[str]


def seen(value: Seen, ctx: object) -> Seen:
    return Seen(argv=ARGV)


workflow = Workflow(
    name="argv",
    input=Seen,
    roles=[Role(name="reader", purpose="Read.", input=Seen, output=Seen, function=seen,
                max_attempts=1)],
    phases=[Phase(name="p", role="reader", input=lambda run: run.input)],
    result=lambda run: run.output("p"),
)
"""


async def test_a_workflow_file_imports_in_a_worker_as_in_the_foreman(
    store: SQLiteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A workflow file runs again in each worker: what it reads at import (the command line)
    # is the foreman's, and one that exits at import fails its dispatches, not its process.
    flow_file = tmp_path / "argv_flow.py"
    flow_file.write_text(_ARGV_FLOW)
    monkeypatch.setattr(sys, "argv", ["hubspoke", "run", f"{flow_file}:workflow"])
    flow = load_workflow(f"{flow_file}:workflow")
    result = await Foreman(flow, store, executor=PoolExecutor(workers=1)).run({"argv": []})
    assert result.status == "completed", result.reason
    assert result.result.argv == ["hubspoke", "run", f"{flow_file}:workflow"]

    monkeypatch.setattr(sys, "argv", ["hubspoke", "--refuse-import"])
    pool = PoolExecutor(workers=1)
    pids = _Pids(pool)
    result = await Foreman(flow, store, executor=pool, listeners=[pids]).run({"argv": []})
    finished = [
        (e.data["outcome"], e.data.get("message", ""))
        for e in store.events(result.run_id)
        if e.kind is EventKind.DISPATCH_FINISHED
    ]
    assert finished == [
        ("failed", "the worker could not load the specialist: SystemExit: not here")
    ]
    assert len(pids.seen) == 1


class _CountingStore(SQLiteStore):
    """A store that notes, for each append, how many ``model.requested`` it writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requested_per_append: list[int] = []

    def append(self, events: Any, *args: Any, **kwargs: Any) -> Any:
        done = super().append(events, *args, **kwargs)
        n = sum(1 for e in events if e.kind is EventKind.MODEL_REQUESTED)
        if n:
            self.requested_per_append.append(n)
        return done


async def test_a_workers_announcements_are_written_in_one_transaction_before_any_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubspoke.executors import pool as pool_module
    from tests import wire

    store = _CountingStore(tmp_path / "counted.db")
    answered: list[tuple[int, int]] = []  # (requests answered "ok", model.requested written)
    send_all = pool_module._Process.send_all

    def checked_send_all(self: Any, messages: list[tuple[Any, ...]]) -> None:
        # As the answers leave for the worker: is every announcement they clear written?
        ok = sum(1 for m in messages if m[0] == "answer" and m[2][0] == "ok")
        written = _announced(store.path)
        answered.append((ok, written))
        send_all(self, messages)

    monkeypatch.setattr(pool_module._Process, "send_all", checked_send_all)
    many = load_workflow(f"{POOL_FLOWS}:researching_many")
    topics = [f"topic {i}" for i in range(12)]
    with wire.serve("chat", checks.final_points(["noted"])) as s:
        s.connect(monkeypatch)
        foreman = Foreman(many, store, model=s.binding("m"), executor=PoolExecutor(workers=1))
        result = await foreman.run({"topics": topics})
    store.close()

    assert result.status == "completed", result.reason
    assert sorted(map(checks.topic_asked, s.requests)) == sorted(topics)
    # Twelve announcements; each batch of them one store transaction, not one each.
    assert sum(store.requested_per_append) == 12
    assert len(store.requested_per_append) < 12, store.requested_per_append
    # No answer left before what it answers was written.
    total = 0
    for ok, written in answered:
        total += ok
        assert written >= total, answered
    assert total == 12


class _RefusingStore(SQLiteStore):
    """A store that refuses every batch holding a ``model.requested``."""

    def append(self, events: Any, *args: Any, **kwargs: Any) -> Any:
        if any(e.kind is EventKind.MODEL_REQUESTED for e in events):
            raise OSError("disk full")
        return super().append(events, *args, **kwargs)


async def test_announcements_the_store_refuses_let_no_request_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubspoke.errors import JournalWriteError
    from tests import wire

    store = _RefusingStore(tmp_path / "refusing.db")
    many = load_workflow(f"{POOL_FLOWS}:researching_many")
    with wire.serve("chat", checks.final_points(["x"])) as s:
        s.connect(monkeypatch)
        foreman = Foreman(many, store, model=s.binding("m"), executor=PoolExecutor(workers=1))
        # The run stops on what it cannot journal (the store's own error, raised again as the
        # journal closes, or the journal's).
        with pytest.raises(JournalWriteError, match="disk full"):
            await foreman.run({"topics": [f"topic {i}" for i in range(6)]})
        assert s.requests == []  # none left: their announcements were never written
    store.close()


async def test_a_worker_that_holds_the_gil_does_not_hold_up_the_foreman(
    shared: Path, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its process reads nothing while C code keeps the GIL, so its pipe fills with what the
    # foreman sends it (a 4 MB input). The foreman must not wait on that pipe: its clock goes
    # on, every dispatch sent to the held worker times out, and the run ends (the worker,
    # which cannot hear that it must stop, is killed).
    from hubspoke.executors import pool as pool_module

    monkeypatch.setattr(pool_module, "_STOP_SECONDS", 0.2)
    flow = load_workflow(f"{POOL_FLOWS}:holding")
    result = await Foreman(flow, store, executor=PoolExecutor(workers=1)).run({"n": 3})

    outcomes = [
        (e.item, e.data["outcome"])
        for e in store.events(result.run_id)
        if e.kind is EventKind.DISPATCH_FINISHED
    ]
    assert outcomes == [(f"hold[{i}]", "timed_out") for i in range(3)]
    assert not checks.alive(int((shared / "gil.pid").read_text()))
