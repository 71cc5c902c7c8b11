"""Several foremen on one run (issue 14): an owner shares a fan-out phase's items through the
store, joiners lease them and run each item's ladder in a shard run of their own, and the owner
validates and journals every result in the run's journal (`hubspoke.foreman._shared`).

Every test runs on SQLite and on Postgres (tests/pgserver.py); tests/chaos kills the processes.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from hubspoke import (
    Budget,
    Context,
    Event,
    EventKind,
    Foreman,
    NeedsHuman,
    OutOfScope,
    Phase,
    Role,
    Strategy,
    Workflow,
)
from hubspoke.foreman import Sharing
from hubspoke.journal import PostgresStore, SQLiteStore, Store
from hubspoke.tools import Tool

pytestmark = pytest.mark.anyio


class Topic(BaseModel):
    topic: str


class Number(BaseModel):
    n: int


class Square(BaseModel):
    n: int
    square: int


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Opens a new handle on one empty store (one per process in real life)."""
    if request.param == "sqlite":
        path = request.getfixturevalue("tmp_path") / "journal.db"
        yield lambda: SQLiteStore(path)
    else:
        url = request.getfixturevalue("postgres_url")
        yield lambda: PostgresStore(url)


def squares_flow(
    square: Any, n: int = 12, *, fallback: Any = None, tools: list[Tool] | None = None, **wf: Any
) -> Workflow:
    roles = [
        Role(
            name="squarer",
            purpose="Square a number.",
            input=Number,
            output=Square,
            function=square,
            max_attempts=2,
            fallback="helper" if fallback else None,
            tools=tools or [],
        )
    ]
    if fallback:
        roles.append(
            Role(
                name="helper",
                purpose="Square any number.",
                input=Number,
                output=Square,
                function=fallback,
            )
        )
    return Workflow(
        name="squares",
        input=Topic,
        roles=roles,
        phases=[
            Phase(
                name="sq",
                role="squarer",
                over=lambda run: list(range(n)),
                input=lambda run, i: Number(n=i),
                concurrency=4,
                strategy=Strategy.BEST_EFFORT,
            )
        ],
        **wf,
    )


async def squared(x: Number, ctx: Context) -> Square:
    """The squarer's specialist when the test needs nothing else of it."""
    return Square(n=x.n, square=x.n * x.n)


async def run_with_joiner(
    wf: Workflow, opener: Any, *, run_id: str = "run_shared", **sharing: Any
) -> tuple[Any, list[int], Store]:
    """Run `wf` shared, a joiner (its own store handle) starting once the phase has started."""
    owner_store, joiner_store = opener(), opener()
    joined: list[int] = []
    tasks: list[asyncio.Task[None]] = []

    async def join() -> None:
        joined.append(await Foreman(wf, joiner_store).join(run_id, poll=0.01))

    def on_event(event: Event) -> None:
        if event.kind is EventKind.PHASE_STARTED and not tasks:
            tasks.append(asyncio.get_running_loop().create_task(join()))

    owner = Foreman(wf, owner_store, share=Sharing(poll=0.01, **sharing), listeners=[on_event])
    result = await owner.run({"topic": "t"}, run_id=run_id)
    await asyncio.gather(*tasks)
    joiner_store.close()
    return result, joined, owner_store


def accepted(events: list[Event]) -> Counter[str]:
    return Counter(e.item or "" for e in events if e.kind is EventKind.ITEM_ACCEPTED)


async def test_a_joiner_runs_every_item_and_the_owner_journals_each_once(opener: Any) -> None:
    async def square(x: Number, ctx: Context) -> Square:
        await asyncio.sleep(0)
        return Square(n=x.n, square=x.n * x.n)

    result, joined, store = await run_with_joiner(squares_flow(square), opener, local=False)
    assert result.status == "completed", result.reason
    assert joined == [12]  # the owner ran none itself (local=False)
    events = store.events("run_shared")
    assert accepted(events) == Counter(f"sq[{i}]" for i in range(12))
    outputs = {a.item: a.content for a in store.artifacts("run_shared")}
    assert outputs == {f"sq[{i}]": {"n": i, "square": i * i} for i in range(12)}
    [shard] = [r for r in store.runs() if r.parent_run == "run_shared"]
    assert shard.run_id.startswith("run_shared.joiner-") and shard.status == "completed"
    # Each item's ladder is in the shard's journal, its end and artifact in the run's.
    shard_events = store.events(shard.run_id)
    started = Counter(e.item for e in shard_events if e.kind is EventKind.DISPATCH_STARTED)
    assert started == Counter(f"sq[{i}]" for i in range(12))
    assert not any(e.kind is EventKind.ITEM_ACCEPTED for e in shard_events)
    finished = [e for e in events if e.kind is EventKind.DISPATCH_FINISHED]
    assert all(e.data["message"] == f"run by shard {shard.run_id}" for e in finished)
    assert store.done_items("run_shared", [f"sq[{i}]" for i in range(12)]) == {}  # cleared
    store.close()


async def test_fallbacks_retries_and_people_stay_where_they_were(opener: Any) -> None:
    """A shard walks the whole ladder; the owner accepts a fallback's output in the fallback's
    name and escalates to people on the run's board, as a run that is not shared does."""

    async def square(x: Number, ctx: Context) -> Any:
        if x.n % 4 == 1 and ctx.attempt == 1:
            return {"n": x.n, "square": "many"}  # invalid once: retried in the shard
        if x.n % 4 == 2:
            raise OutOfScope("too even")
        if x.n % 4 == 3:
            raise NeedsHuman(f"is {x.n} odd enough?")
        return Square(n=x.n, square=x.n * x.n)

    wf = squares_flow(square, 8, fallback=squared, max_escalations=10)
    alone = opener()
    plain = await Foreman(wf, alone).run({"topic": "t"}, run_id="run_plain")
    alone.close()
    result, _, store = await run_with_joiner(wf, opener)
    assert (result.status, result.reason) == (plain.status, plain.reason)
    want = sorted((a.item, a.role, str(a.content)) for a in store.artifacts("run_plain"))
    got = sorted((a.item, a.role, str(a.content)) for a in store.artifacts("run_shared"))
    assert got == want and ("sq[2]", "helper", "{'n': 2, 'square': 4}") in got
    cards = sorted((c.item, c.column.value) for c in store.cards("run_shared"))
    assert cards == sorted((c.item, c.column.value) for c in store.cards("run_plain"))
    assert ("sq[3]", "escalated") in cards
    store.close()


async def test_the_run_budget_is_never_overrun_however_many_foremen_spend(opener: Any) -> None:
    """Each item's whole-ladder allowance is reserved in the owner's ledger before it can be
    leased; what a shard spent is charged when its result is journaled."""

    async def square(x: Number, ctx: Context) -> Square:
        ctx.allowance.used.add(input_tokens=7, output_tokens=3)
        return Square(n=x.n, square=x.n * x.n)

    wf = squares_flow(square, 20, budget=Budget(tokens=100), dispatch_budget=Budget(tokens=10))
    result, _, store = await run_with_joiner(wf, opener)
    assert result.status == "exhausted", result.reason
    assert result.state.usage.tokens <= 100
    assert 0 < sum(accepted(store.events("run_shared")).values()) <= 5  # 2 attempts x 10 each
    store.close()


async def test_sharing_is_refused_when_no_item_allowance_bounds_the_budget(opener: Any) -> None:
    wf = squares_flow(
        squared, 3, budget=Budget(tokens=100), dispatch_budget=Budget(usd=0.05, tool_calls=25)
    )
    store = opener()
    result = await Foreman(wf, store, share=True).run({"topic": "t"})
    assert result.status == "failed"
    assert result.reason == (
        "phase 'sq' cannot be shared: the run's budget limits tokens, and no per-dispatch cap "
        "bounds what an item may spend on it (set Role.budget on its roles or the workflow's "
        "dispatch_budget, or run without share)"
    )
    store.close()


async def test_an_item_taken_from_a_joiner_that_stopped_replays_its_side_effect(
    opener: Any,
) -> None:
    """The joiner that held the item called a side-effecting tool, then stopped mid-item; the
    next holder finds the call in the earlier shard's journal and does not make it again."""
    charged: list[str] = []

    def charge(n: int, idempotency_key: str) -> str:
        """Charge for a number."""
        charged.append(idempotency_key)
        return f"charge-{n}"

    inside = asyncio.Event()
    hang = [True]

    async def square(x: Number, ctx: Context) -> Square:
        await ctx.call_tool("charge", n=x.n)
        if hang[0]:
            hang[0] = False
            inside.set()
            await asyncio.Event().wait()  # stopped here, never to finish
        return Square(n=x.n, square=x.n * x.n)

    wf = squares_flow(square, 1, tools=[Tool.from_function(charge, side_effect=True)])
    first, second, owner_store = opener(), opener(), opener()
    joiners: list[asyncio.Task[int]] = []

    def on_event(event: Event) -> None:  # the run is recorded: the first joiner joins
        if event.kind is EventKind.PHASE_STARTED:
            joiner = Foreman(wf, first).join("run_shared", poll=0.01)
            joiners.append(asyncio.get_running_loop().create_task(joiner))

    share = Sharing(poll=0.01, local=False)
    owner = Foreman(wf, owner_store, share=share, listeners=[on_event])
    running = asyncio.create_task(owner.run({"topic": "t"}, run_id="run_shared"))
    await inside.wait()
    [stopped] = joiners
    stopped.cancel()  # its lease is given back (a killed joiner's expires: tests/chaos)
    with pytest.raises(asyncio.CancelledError):
        await stopped
    assert await Foreman(wf, second).join("run_shared", poll=0.01) == 1
    result = await running
    assert result.status == "completed" and len(charged) == 1
    shards = [r.run_id for r in owner_store.runs() if r.parent_run == "run_shared"]
    kinds = Counter(
        (e.kind.value, e.data.get("replayed", False))
        for s in shards
        for e in owner_store.events(s)
        if e.kind.value.startswith("tool.")
    )
    assert kinds[("tool.finished", False)] == 1 and kinds[("tool.called", True)] == 1, kinds
    for store in (first, second, owner_store):
        store.close()


FLOW = """
from pydantic import BaseModel
from hubspoke import Phase, Role, Strategy, Workflow

class Topic(BaseModel):
    topic: str

class Number(BaseModel):
    n: int

def square(x: Number, ctx: object) -> Number:
    return Number(n=x.n * x.n)

workflow = Workflow(
    name="cli_squares",
    input=Topic,
    roles=[Role(name="sq", purpose="Square.", input=Number, output=Number, function=square)],
    phases=[Phase(name="sq", role="sq", over=lambda run: list(range(6)),
                  input=lambda run, i: Number(n=i), strategy=Strategy.BEST_EFFORT)],
)
"""


def test_the_cli_shares_a_run_and_joins_it(tmp_path: Path) -> None:
    """`hubspoke run --share` keeps the switch with the run (a resume shares too) and runs its
    items in its own shard; `hubspoke join` works a shared run until it ends."""
    from typer.testing import CliRunner

    from hubspoke.cli import app

    (tmp_path / "flow.py").write_text(FLOW, encoding="utf-8")
    db = tmp_path / "journal.db"
    runner = CliRunner()
    ran = runner.invoke(
        app,
        [
            "run",
            f"{tmp_path / 'flow.py'}:workflow",
            "--input",
            '{"topic": "t"}',
            "--share",
            "--db",
            str(db),
            "--json",
        ],
    )
    assert ran.exit_code == 0, ran.output
    run_id = json.loads(ran.stdout.strip().splitlines()[-1])["run_id"]
    store = SQLiteStore(db)
    assert store.run(run_id).options["share"] is True  # type: ignore[union-attr]
    [shard] = [r for r in store.runs() if r.parent_run == run_id]
    assert shard.run_id.startswith(f"{run_id}.owner-") and shard.status == "completed"
    assert accepted(store.events(run_id)) == Counter(f"sq[{i}]" for i in range(6))
    store.close()
    joined = runner.invoke(app, ["join", run_id, "--db", str(db), "--json"])
    assert joined.exit_code == 0, joined.output
    assert json.loads(joined.stdout.strip().splitlines()[-1]) == {
        "run_id": run_id,
        "items": 0,
    }  # it had ended
    missing = runner.invoke(app, ["join", "run_nope", "--db", str(db)])
    assert missing.exit_code == 2 and "run_nope" in missing.output
    shown = runner.invoke(app, ["show", shard.run_id, "--db", str(db)])
    assert f"shard of shared run {run_id} · " in shown.stdout and "(None)" not in shown.stdout
    ended = runner.invoke(app, ["join", run_id, "--db", str(db)])
    assert ended.exit_code == 0 and f"run {run_id} is completed: nothing to join" in ended.stdout
    # A moved file given without ":NAME" takes the run's recorded name, as for `resume`.
    moved = runner.invoke(
        app, ["join", run_id, "--db", str(db), "--workflow", str(tmp_path / "flow.py")]
    )
    assert moved.exit_code == 0 and "nothing to join" in moved.stdout, moved.output
    pooled = runner.invoke(app, ["join", run_id, "--db", str(db), "--executor", "pool:1"])
    assert pooled.exit_code == 0 and "nothing to join" in pooled.stdout  # started, stopped
    bad = runner.invoke(app, ["join", run_id, "--db", str(db), "--executor", "pool:x"])
    assert bad.exit_code == 2 and "the pool's size must be a whole number" in bad.output
    flow = f"{tmp_path / 'flow.py'}:workflow"
    ran = runner.invoke(app, ["run", flow, "-i", '{"topic": "t"}', "--db", str(db), "--json"])
    alone = json.loads(ran.stdout.strip().splitlines()[-1])["run_id"]
    refused = runner.invoke(app, ["join", alone, "--db", str(db)])
    assert refused.exit_code == 2 and f"run {alone} is not shared" in refused.output
    store = SQLiteStore(db)
    assert [r.run_id for r in store.runs() if r.parent_run is not None] == [shard.run_id]
    store.close()


async def test_an_invalid_output_from_a_shard_is_never_accepted(opener: Any) -> None:
    """The owner validates every result again against the role's schema: a shard that reports
    a wrong output (a joiner of another version, a bug, a forged row) gets the item escalated,
    never accepted."""

    wf = squares_flow(squared, 3, max_escalations=10)
    rogue = opener()
    forged: list[str] = []

    async def forge() -> None:  # a joiner that reports without running anything
        while len(forged) < 3:
            leased = rogue.lease_items("run_shared", "rogue", 3, 30)
            results = [
                (i.key, json.dumps({"outcome": "output", "output": {"n": "x"}})) for i in leased
            ]
            forged.extend(rogue.finish_items("run_shared", "rogue", results))
            await asyncio.sleep(0.01)  # as a joiner polls

    tasks: list[asyncio.Task[None]] = []

    def on_event(event: Event) -> None:
        if event.kind is EventKind.PHASE_STARTED:
            tasks.append(asyncio.get_running_loop().create_task(forge()))

    store = opener()
    owner = Foreman(wf, store, share=Sharing(poll=0.01, local=False), listeners=[on_event])
    result = await owner.run({"topic": "t"}, run_id="run_shared")
    await asyncio.gather(*tasks)
    assert result.state.phases["sq"].accepted == 0 and result.state.phases["sq"].escalated == 3
    assert store.artifacts("run_shared") == []
    invalid = [e for e in store.events("run_shared") if e.kind is EventKind.OUTPUT_INVALID]
    assert len(invalid) == 3
    rogue.close()
    store.close()


async def test_a_persons_answer_reaches_the_shard_that_runs_the_item_again(opener: Any) -> None:
    """An item of a shared phase escalated to a person and answered runs again, with the
    answer as its correction, as in a run that is not shared (it was lost on the way to the
    shard, which escalated the item again: the run waited for people forever)."""
    seen: list[str | None] = []

    async def square(x: Number, ctx: Context) -> Square:
        if x.n == 1:
            seen.append(ctx.correction)
            if ctx.correction is None:
                raise NeedsHuman("what is one squared?")
        return Square(n=x.n, square=x.n * x.n)

    from hubspoke import Board

    wf = squares_flow(square, 3, max_escalations=5)
    store = opener()
    first = await Foreman(wf, store, share=Sharing(poll=0.01)).run({"topic": "t"}, run_id="r")
    assert first.status == "waiting"
    board = Board(store)
    [card] = board.cards("r")
    board.answer(card.id, "one", by="ann")
    result = await Foreman(wf, store, share=Sharing(poll=0.01)).resume("r")
    assert result.status == "completed", result.reason
    assert seen == [None, "A person answered: one"]
    assert {a.item for a in store.artifacts("r")} == {"sq[0]", "sq[1]", "sq[2]"}
    store.close()


async def test_a_joiner_stops_when_the_run_ends_under_it(opener: Any) -> None:
    """The run's deadline is the owner's: once the run has ended, a joiner gives its items
    back and leaves, rather than run them (and lease the rest) for a run that is over."""
    holding = asyncio.Event()

    async def square(x: Number, ctx: Context) -> Square:
        holding.set()
        await asyncio.Event().wait()  # never done: only the run's end stops it
        raise AssertionError("unreachable")

    wf = squares_flow(square, 6, budget=Budget(seconds=0.5))
    store, joining = opener(), opener()
    owner = Foreman(wf, store, share=Sharing(poll=0.01, local=False))
    running = asyncio.create_task(owner.run({"topic": "t"}, run_id="run_shared"))
    while joining.run("run_shared") is None:
        await asyncio.sleep(0.01)
    joined = asyncio.create_task(Foreman(wf, joining).join("run_shared", concurrency=2, poll=0.01))
    await holding.wait()
    result = await running
    assert result.status == "exhausted", result.reason
    assert await joined == 0
    [shard] = [r for r in store.runs() if r.parent_run == "run_shared"]
    assert shard.status == "aborted"
    # Its leases were given back: a resumed run finds them open, not held for `ttl`.
    assert joining.lease_items("run_shared", "probe", 10, 30.0) != []
    joining.close()
    store.close()


async def test_a_joiner_of_an_ended_run_runs_none_of_its_items(opener: Any) -> None:
    """Items a stopped run had published stay in the store (a resume publishes them again);
    a joiner that comes after the run ended leases none of them."""

    wf = squares_flow(squared, 6, budget=Budget(seconds=0.2))
    store = opener()
    owner = Foreman(wf, store, share=Sharing(poll=0.01, local=False))  # and no joiner
    result = await owner.run({"topic": "t"}, run_id="run_shared")
    assert result.status == "exhausted", result.reason
    assert await Foreman(wf, store).join("run_shared", poll=0.01) == 0
    shards = [r.run_id for r in store.runs() if r.parent_run == "run_shared"]
    assert not any(e.kind is EventKind.DISPATCH_STARTED for s in shards for e in store.events(s))
    store.close()


async def test_join_refuses_a_run_that_is_not_shared_and_leaves_no_trace(opener: Any) -> None:
    """A run started without `share` publishes no item: a joiner would wait for nothing (until
    the run's end) and leave an empty shard run behind. A shared run that has ended is left
    as it is: nothing to join, no shard recorded. A workflow that is not the run's is refused
    in the words of joining, not resuming."""
    from hubspoke import RunNotShared, WorkflowChanged

    wf = squares_flow(squared, 2)
    store = opener()
    await Foreman(wf, store).run({"topic": "t"}, run_id="run_alone")
    with pytest.raises(RunNotShared, match="run_alone is not shared"):
        await Foreman(wf, store).join("run_alone")
    await Foreman(wf, store, share=Sharing(poll=0.01)).run({"topic": "t"}, run_id="run_shared")
    assert store.run("run_shared").options["share"] is True
    assert await Foreman(wf, store).join("run_shared") == 0
    other = Workflow(name="other", input=Topic, roles=wf.roles, phases=wf.phases)
    with pytest.raises(WorkflowChanged, match=r"cannot join run run_shared: .*'other'"):
        await Foreman(other, store).join("run_shared")
    shards = [r.run_id for r in store.runs() if r.parent_run is not None]
    assert [s.rpartition(".")[2].split("-")[0] for s in shards] == ["owner"]
    store.close()


SLOW_FLOW = """
import asyncio
from pydantic import BaseModel
from hubspoke import Phase, Role, Strategy, Workflow

class Topic(BaseModel):
    topic: str

class Number(BaseModel):
    n: int

async def square(x: Number, ctx: object) -> Number:
    await asyncio.sleep(3600)  # held until its process stops
    return Number(n=x.n * x.n)

workflow = Workflow(
    name="slow_squares",
    input=Topic,
    roles=[Role(name="sq", purpose="Square.", input=Number, output=Number, function=square)],
    phases=[Phase(name="sq", role="sq", over=lambda run: list(range(4)),
                  input=lambda run, i: Number(n=i), strategy=Strategy.BEST_EFFORT)],
)
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
async def test_a_stopped_joiner_gives_its_items_back_and_its_shard_is_never_resumed(
    tmp_path: Path, signal_name: str
) -> None:
    """`kill PID` of `hubspoke join` (a container stopped) ends it as Ctrl-C does: exit 130,
    its shard `aborted`, its leases released at once rather than held for `ttl` by a process
    that is gone (it was killed outright, its shard left `running` for ever). A joiner killed
    outright leaves its shard `running`; resuming that shard is refused (it drove the whole
    workflow inside the shard: every item dispatched again, outside the run's budget)."""
    import signal
    import sys

    from hubspoke import HubspokeError
    from hubspoke.cli.report import run_row
    from hubspoke.loader import load_workflow

    (tmp_path / "slow.py").write_text(SLOW_FLOW, encoding="utf-8")
    ref = f"{tmp_path / 'slow.py'}:workflow"
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    wf = load_workflow(ref)
    owner = Foreman(wf, store, share=Sharing(poll=0.01, local=False))
    running = asyncio.create_task(owner.run({"topic": "t"}, run_id="run_slow", ref=ref))
    while store.run("run_slow") is None:
        await asyncio.sleep(0.01)
    joiner = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "hubspoke.cli", "join", "run_slow", "--db", str(db), "--ttl", "1"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )

    def held() -> list[str]:
        rows = store._db.execute(  # the joiner's leases, straight from the table
            "SELECT key FROM items WHERE state='leased' AND owner LIKE 'run_slow.joiner-%'"
        ).fetchall()
        return [key for (key,) in rows]

    while len(held()) < 4:  # the joiner runs every item
        assert joiner.returncode is None
        await asyncio.sleep(0.01)
    [shard] = [r for r in store.runs() if r.parent_run == "run_slow"]
    # `hubspoke runs` shows a live joiner's shard running (it showed it `stopped`: no lease).
    assert run_row(shard, store.holder(shard.run_id))["status"] == "running"
    joiner.send_signal(getattr(signal, signal_name))
    _, err = await joiner.communicate()
    [shard] = [r for r in store.runs() if r.parent_run == "run_slow"]
    if signal_name == "SIGTERM":
        assert joiner.returncode == 130, err
        assert "interrupted; its items go back to run run_slow" in err.decode()
        assert held() == []
        assert shard.status == "aborted"
    else:
        assert shard.status == "running" and len(held()) == 4  # until their ttl
        assert run_row(shard, store.holder(shard.run_id))["status"] == "stopped"
        events = len(store.events(shard.run_id))
        with pytest.raises(HubspokeError, match="is a shard of shared run run_slow"):
            await Foreman(wf, store).resume(shard.run_id)
        assert len(store.events(shard.run_id)) == events
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    if signal_name == "SIGKILL":
        # The owner, resumed (its items now quick), ends the dead joiner's shard `aborted`.
        (tmp_path / "quick.py").write_text(SLOW_FLOW.replace("3600", "0"), encoding="utf-8")
        quick = load_workflow(f"{tmp_path / 'quick.py'}:workflow")
        result = await Foreman(quick, store, share=Sharing(poll=0.01)).resume("run_slow")
        assert result.status == "completed", result.reason
        ended = store.run(shard.run_id)
        assert ended is not None and ended.status == "aborted", ended
    store.close()


@pytest.mark.parametrize("share", [False, True])
async def test_a_side_effect_before_an_escalation_is_not_made_again_after_the_answer(
    opener: Any, share: bool
) -> None:
    """A call's key is the same in every attempt and session of an item: after a person's
    answer the item runs again and its call is replayed, not made again, whichever shard ran
    the item before (a new publication of the item forgot its earlier shards: charged twice)."""
    charged: list[str] = []

    def charge(n: int, idempotency_key: str) -> str:
        """Charge for a number."""
        charged.append(idempotency_key)
        return f"charge-{n}"

    async def square(x: Number, ctx: Context) -> Square:
        await ctx.call_tool("charge", n=x.n)
        if ctx.correction is None:
            raise NeedsHuman("charge made: ship it?")
        return Square(n=x.n, square=x.n * x.n)

    from hubspoke import Board

    wf = squares_flow(square, 1, tools=[Tool.from_function(charge, side_effect=True)])
    store = opener()
    sharing = Sharing(poll=0.01) if share else False
    first = await Foreman(wf, store, share=sharing).run({"topic": "t"}, run_id="r")
    assert first.status == "waiting"
    board = Board(store)
    [card] = board.cards("r")
    board.answer(card.id, "yes", by="ann")
    result = await Foreman(wf, store, share=sharing).resume("r")
    assert result.status == "completed", result.reason
    assert len(charged) == 1, charged
    store.close()


async def test_a_shared_run_replays_as_the_run_it_would_be_unshared(opener: Any) -> None:
    """`hubspoke replay` reads a shared item's dispatches, model exchanges and tool calls in
    the shard that ran it (they were not in the run's journal: it diverged at the first)."""
    from dataclasses import replace

    from hubspoke.examples.sales import DEMO_INPUT, workflow
    from hubspoke.replay import replay

    sales = replace(workflow, budget=Budget(tokens=2_000_000))  # whole ladders are reserved
    store = opener()
    result = await Foreman(sales, store, share=Sharing(poll=0.01)).run(DEMO_INPUT)
    shards = [r.run_id for r in store.runs() if r.parent_run == result.run_id]
    assert shards
    report = await replay(store, result.run_id, sales)
    assert report.identical, report.describe()
    exchanges = sum(
        1
        for run in (result.run_id, *shards)
        for e in store.events(run)
        if e.kind is EventKind.MODEL_EXCHANGE
    )
    assert report.requests == exchanges
    store.close()


async def test_a_lease_shorter_than_its_renewal_is_refused(tmp_path: Path) -> None:
    """A lease is renewed every third of `ttl`, at a loop turn (every `poll`): a `ttl` not well
    above `poll` lets leases expire under live holders, so that one item ran in several shards
    at once (an item leased to two live owners). Refused where it is given, with what to do."""
    from typer.testing import CliRunner

    from hubspoke.cli import app

    with pytest.raises(ValueError, match=r"ttl \(0.1\) must be at least 4 times poll \(0.05\)"):
        Sharing(ttl=0.1, poll=0.05)

    wf = squares_flow(squared, 1)
    store = SQLiteStore(tmp_path / "journal.db")
    await Foreman(wf, store, share=True).run({"topic": "t"}, run_id="run_shared")
    with pytest.raises(ValueError, match=r"ttl \(0.03\) must be at least 4 times poll"):
        await Foreman(wf, store).join("run_shared", ttl=0.03, poll=0.05)
    store.close()
    db = str(tmp_path / "journal.db")
    refused = CliRunner().invoke(app, ["join", "run_shared", "--db", db, "--ttl", "0.1"])
    assert refused.exit_code == 2 and "--ttl must be at least 0.2 seconds" in refused.output


async def test_sharing_phases_must_name_phases_of_the_workflow(tmp_path: Path) -> None:
    """A phase name in `Sharing(phases=...)` that the workflow lacks (a typo) shared nothing,
    silently; a string matched its substrings. Both are refused when the foreman is built."""

    wf = squares_flow(squared, 1)
    store = SQLiteStore(tmp_path / "journal.db")
    with pytest.raises(ValueError, match=r"Sharing phases name no phase of workflow 'squares': "):
        Foreman(wf, store, share=Sharing(phases=frozenset({"sqs"})))
    with pytest.raises(ValueError, match="a set of phase names, not a string"):
        Sharing(phases="sq")  # type: ignore[arg-type]
    store.close()


async def test_the_web_inspector_opens_a_shard(tmp_path: Path) -> None:
    """A shard's id is a path segment: `hubspoke ui` lists the shards of a shared run and opens
    each (with ``RUN/owner-…``, its id before, its link was a 404)."""
    from urllib.parse import quote

    from fastapi.testclient import TestClient

    from hubspoke.web.app import create_app

    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    await Foreman(squares_flow(squared, 2), store, share=True).run({"topic": "t"}, run_id="r")
    [shard] = [r.run_id for r in store.runs() if r.parent_run == "r"]
    store.close()
    token = "t" * 32
    client = TestClient(create_app(db, token, by="ana"), base_url="http://127.0.0.1")
    assert client.get(f"/?token={token}", follow_redirects=False).status_code == 303
    assert f'href="/runs/{quote(shard, safe="")}"' in client.get("/runs").text
    page = client.get(f"/runs/{quote(shard, safe='')}")
    assert page.status_code == 200 and "sq[0]" in page.text


async def test_a_phase_whose_role_runs_a_sub_workflow_is_not_shared(opener: Any) -> None:
    """A sub-workflow's run is a child of the run whose dispatch started it: run in a shard,
    its `child.started` was in the shard's journal, so the run's fold knew no children and
    replay diverged. Such a phase runs in the owner, as the other phases that cannot be."""
    from hubspoke.replay import replay

    async def square(x: Number, ctx: Context) -> Number:
        return Number(n=x.n * x.n)

    child = Workflow(
        name="child",
        input=Number,
        roles=[Role(name="sq", purpose="Square.", input=Number, output=Number, function=square)],
        phases=[Phase(name="one", role="sq", input=lambda run: run.input)],
        result=lambda run: run.output("one"),
    )
    team = child.as_role(name="team", purpose="Square as a team.", output=Number)
    wf = Workflow(
        name="parent",
        input=Topic,
        roles=[team],
        phases=[
            Phase(
                name="sq",
                role="team",
                over=lambda run: list(range(3)),
                input=lambda run, i: Number(n=i),
                strategy=Strategy.BEST_EFFORT,
            )
        ],
    )
    store = opener()
    result = await Foreman(wf, store, share=Sharing(poll=0.01)).run({"topic": "t"}, run_id="r")
    assert result.status == "completed" and len(result.state.children) == 3
    assert (await replay(store, "r", wf)).identical
    named = await Foreman(wf, store, share=Sharing(phases=frozenset({"sq"}))).run({"topic": "t"})
    assert named.status == "failed"
    assert named.reason == "phase 'sq' cannot be shared: role 'team' runs a sub-workflow"
    store.close()
