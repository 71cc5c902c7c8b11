"""Side effects, exactly once (docs/concepts.md): a side-effecting tool's call runs at most once
per idempotency key, across retries, fallbacks and resumes; a call in doubt is settled by the
tool's reconcile function or escalates its item, and is never silently run twice.

Charges are counted by a card processor outside the journal (`tests.workflows.charges`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from hubspoke import (
    Context,
    EventKind,
    Foreman,
    InDoubt,
    Phase,
    Retry,
    Role,
    RunState,
    SQLiteStore,
    Tool,
    Workflow,
)
from hubspoke.events import Event
from hubspoke.models.offline import Move, Turn, answer, call
from hubspoke.testing import payload_errors, scripted, stream
from hubspoke.threads import in_thread
from hubspoke.tools import DID_NOT_RUN
from hubspoke.work import Brief, WorkItem
from tests.helpers import Killed
from tests.workflows import charges as till
from tests.workflows.charges import Charges, Order, Receipt

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
ORDER = {"card": "4242", "amount": 10}
HOLD = 30.0
"""A failsafe only: how long a blocked thread waits before giving up if the runtime is broken."""


@pytest.fixture
def charges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Charges]:
    monkeypatch.setenv("CHARGES_DB", str(tmp_path / "charges.db"))
    yield Charges(tmp_path / "charges.db")


def cashier_workflow(tool: Tool, **card: Any) -> Workflow:
    """Workflow `till`: the `cashier` (an agent unless `card` gives it a `function`) charges
    with `tool` in its one phase, `pay`."""
    fields: dict[str, Any] = dict(
        name="cashier", purpose="Charge the order.", input=Order, output=Receipt, tools=[tool]
    )
    workflow: dict[str, Any] = {"players": card.pop("players", {})}
    return Workflow(
        name="till",
        input=Order,
        roles=[Role(**(fields | card))],
        phases=[Phase(name="pay", role="cashier", input=lambda run: run.input)],
        result=lambda run: run.output("pay"),
        **workflow,
    )


def charging(ran: list[str]) -> Tool:
    """The side-effecting ``charge`` tool, appending each key it runs with to `ran`."""

    def charge(card: str, amount: int, idempotency_key: str) -> str:
        """Charge a card; returns the charge's id."""
        ran.append(idempotency_key)
        return Charges(os.environ["CHARGES_DB"]).charge(card, amount, idempotency_key)

    return Tool.from_function(charge, side_effect=True)


class _Any:
    """Equal to anything: a duration in an expected payload."""

    def __eq__(self, other: object) -> bool:
        return True


ANY: Any = _Any()


def tool_events(events: list[Event]) -> list[tuple[str, dict[str, Any]]]:
    return [(e.kind.value, e.data) for e in events if e.kind.value.startswith("tool.")]


# 1. a retry makes the same call ------------------------------------------------------------------


async def test_an_agents_retry_that_makes_the_same_call_charges_once(
    store: SQLiteStore, charges: Charges
) -> None:
    """The agent charges, then answers invalid; its retry makes the same call (the arguments
    in another order): it gets the recorded charge, and the tool does not run again."""
    ran: list[str] = []
    wf = cashier_workflow(
        charging(ran),
        players={
            "cashier": scripted(
                [call("charge", card="4242", amount=10), answer(card="4242")],
                [call("charge", amount=10, card="4242"), answer(card="4242", charge_id="ch_1")],
            )
        },
    )
    result = await Foreman(wf, store).run(ORDER)
    assert result.status == "completed"
    assert result.result == Receipt(card="4242", charge_id="ch_1")
    assert charges.count() == 1 and len(ran) == 1
    events = store.events(result.run_id)
    assert stream(events) == [
        "run.started",
        "phase.started pay items=1",
        "dispatch.started pay cashier pay #1",
        "tool.started pay cashier pay #1 charge",
        "tool.finished pay cashier pay #1 charge",
        "model.exchange pay cashier pay #1 charge",
        "model.exchange pay cashier pay #1 final_result",
        "dispatch.finished pay cashier pay #1 invalid",
        "output.invalid pay cashier pay #1",
        "item.retry pay cashier pay #2",
        "dispatch.started pay cashier pay #2",
        "model.exchange pay cashier pay #2 charge",
        "tool.called pay cashier pay #2 charge replayed",
        "model.exchange pay cashier pay #2 final_result",
        "dispatch.finished pay cashier pay #2 output",
        "item.accepted pay cashier pay",
        "phase.finished pay completed",
        "run.finished completed",
    ]
    [key] = ran
    assert tool_events(events) == [
        ("tool.started", {"key": key, "tool": "charge", "arguments": ORDER}),
        ("tool.finished", {"key": key, "tool": "charge", "result": "ch_1", "seconds": ANY}),
        (
            "tool.called",
            {
                "kind": "tool.called",
                "tool": "charge",
                "arguments": ORDER,
                "replayed": True,
                "key": key,
            },
        ),
    ]
    assert payload_errors(events) == []


async def test_a_function_keyed_by_its_idempotency_key_charges_once_over_retries(
    store: SQLiteStore, charges: Charges
) -> None:
    """`ctx.idempotency_key` is the item's, the same on every attempt: a function that charges
    through an API deduplicating by it, then asks for a retry, charges once."""
    keys: list[tuple[str, str]] = []

    async def pay(order: Order, ctx: Context) -> Receipt:
        keys.append((ctx.idempotency_key, ctx.attempt_key))
        charge_id = charges.charge_once(ctx.idempotency_key, order.card, order.amount)
        if ctx.attempt == 1:
            raise Retry("the receipt printer jammed; try again")
        return Receipt(card=order.card, charge_id=charge_id)

    wf = cashier_workflow(charging([]), function=pay)
    result = await Foreman(wf, store).run(ORDER)
    assert result.status == "completed"
    assert result.result == Receipt(card="4242", charge_id="ch_1")
    assert charges.count() == 1
    run = result.run_id
    assert keys == [(f"{run}:pay", f"{run}:pay:cashier:{n}") for n in (1, 2)]
    assert stream(store.events(run)) == [
        "run.started",
        "phase.started pay items=1",
        "dispatch.started pay cashier pay #1",
        "dispatch.finished pay cashier pay #1 invalid",
        "item.retry pay cashier pay #2",
        "dispatch.started pay cashier pay #2",
        "dispatch.finished pay cashier pay #2 output",
        "item.accepted pay cashier pay",
        "phase.finished pay completed",
        "run.finished completed",
    ]


async def test_a_fallback_role_making_the_same_call_gets_the_recorded_result(
    store: SQLiteStore, charges: Charges
) -> None:
    """The key is the item's and the call's, not the role's: the fallback that makes the call
    the first role made (and then refused the item) does not charge again."""
    ran: list[str] = []
    tool = charging(ran)

    async def first(order: Order, ctx: Context) -> Receipt:
        await ctx.call_tool("charge", card=order.card, amount=order.amount)
        raise RuntimeError("the till crashed after charging")

    async def second(order: Order, ctx: Context) -> Receipt:
        charge_id = await ctx.call_tool("charge", card=order.card, amount=order.amount)
        return Receipt(card=order.card, charge_id=charge_id)

    card: dict[str, Any] = dict(input=Order, output=Receipt, tools=[tool], purpose="Charge.")
    wf = Workflow(
        name="till",
        input=Order,
        roles=[
            Role(name="cashier", function=first, max_attempts=1, fallback="manager", **card),
            Role(name="manager", function=second, **card),
        ],
        phases=[Phase(name="pay", role="cashier", input=lambda run: run.input)],
        result=lambda run: run.output("pay"),
    )
    result = await Foreman(wf, store).run(ORDER)
    assert result.status == "completed"
    assert result.result.charge_id == "ch_1"
    assert charges.count() == 1 and len(ran) == 1
    lines = stream(store.events(result.run_id))
    assert "tool.called pay manager pay #2 charge replayed" in lines


async def test_a_call_that_raised_runs_again_with_the_same_key(
    store: SQLiteStore, charges: Charges
) -> None:
    """A tool that raises says its effect did not happen: its error is recorded, and the same
    call made again runs again, with the same key (which the tool passes to its service)."""
    keys: list[str] = []

    def charge(card: str, amount: int, idempotency_key: str) -> str:
        """Charge a card."""
        keys.append(idempotency_key)
        if len(keys) == 1:
            raise ConnectionError("the processor did not answer")
        return Charges(os.environ["CHARGES_DB"]).charge_once(idempotency_key, card, amount)

    async def pay(order: Order, ctx: Context) -> Receipt:
        try:
            charge_id = await ctx.call_tool("charge", card=order.card, amount=order.amount)
        except ConnectionError as e:
            raise Retry(f"charging failed: {e}") from None
        return Receipt(card=order.card, charge_id=charge_id)

    wf = cashier_workflow(Tool.from_function(charge, side_effect=True), function=pay)
    result = await Foreman(wf, store).run(ORDER)
    assert result.status == "completed"
    assert charges.count() == 1
    assert len(keys) == 2 and keys[0] == keys[1]
    ends = [d for kind, d in tool_events(store.events(result.run_id)) if kind == "tool.finished"]
    assert [("error" in d, d.get("result")) for d in ends] == [(True, None), (False, "ch_1")]
    assert "ConnectionError" in ends[0]["error"]


async def test_the_same_call_made_twice_at_once_runs_once(
    store: SQLiteStore, charges: Charges
) -> None:
    """Two identical calls in one response run one after the other: the second gets the
    first's recorded result."""
    ran: list[str] = []

    def twice(turn: Turn) -> Move | list[Move]:
        if turn.turn == 0:  # one response, two calls
            return [call("charge", card="4242", amount=10), call("charge", card="4242", amount=10)]
        return answer(card="4242", charge_id=turn.result("charge"))

    wf = cashier_workflow(charging(ran), players={"cashier": twice})
    result = await Foreman(wf, store).run(ORDER)
    assert result.status == "completed"
    assert charges.count() == 1 and len(ran) == 1
    assert [k for k, _ in tool_events(store.events(result.run_id))] == [
        "tool.started",
        "tool.finished",
        "tool.called",
    ]


async def test_different_arguments_are_different_calls(
    store: SQLiteStore, charges: Charges
) -> None:
    ran: list[str] = []

    async def pay(order: Order, ctx: Context) -> Receipt:
        await ctx.call_tool("charge", card=order.card, amount=order.amount)
        charge_id = await ctx.call_tool("charge", card=order.card, amount=order.amount + 1)
        return Receipt(card=order.card, charge_id=charge_id)

    result = await Foreman(cashier_workflow(charging(ran), function=pay), store).run(ORDER)
    assert result.status == "completed"
    assert charges.count() == 2 and len(set(ran)) == 2


# 2. a kill inside the tool, then resume ----------------------------------------------------------


def dying_charge(charges: Charges, ran: list[str]) -> Any:
    """A ``charge`` that charges, then dies before it returns (the process is gone: nothing
    after the charge is journaled): the first time only."""

    async def charge(card: str, amount: int, idempotency_key: str) -> str:
        """Charge a card."""
        ran.append(idempotency_key)
        charge_id = charges.charge(card, amount, idempotency_key)
        if len(ran) == 1:
            raise Killed
        return charge_id

    return charge


async def _killed_inside_the_tool(store: SQLiteStore, tool: Tool) -> str:
    with pytest.raises(Killed):
        await Foreman(till.cashier(tool), store).run(ORDER, run_id="r_kill")
    kinds = [e.kind for e in store.events("r_kill")]
    assert EventKind.TOOL_STARTED in kinds and EventKind.TOOL_FINISHED not in kinds
    return "r_kill"


async def test_a_call_in_doubt_after_a_kill_is_settled_by_reconcile(
    store: SQLiteStore, charges: Charges
) -> None:
    """Killed inside the tool, after the charge: on resume the call is in doubt, its reconcile
    function finds the charge by the key, and the tool does not run again."""
    ran: list[str] = []
    tool = Tool.from_function(
        dying_charge(charges, ran), name="charge", side_effect=True, reconcile=till.find_charge
    )
    run_id = await _killed_inside_the_tool(store, tool)
    [doubt] = RunState.fold(run_id, store.events(run_id)).calls_in_doubt("pay")
    assert (doubt.tool, doubt.arguments, doubt.finished) == ("charge", ORDER, False)
    result = await Foreman(till.cashier(tool), store).resume(run_id)
    assert result.status == "completed"
    assert result.result == Receipt(card="4242", charge_id="ch_1")
    assert result.state.calls_in_doubt("pay") == []
    assert result.state.tool_calls[doubt.key].result == "ch_1"
    assert charges.count() == 1 and len(ran) == 1
    events = store.events(run_id)
    assert stream(events) == [
        "run.started",
        "phase.started pay items=1",
        "dispatch.started pay cashier pay #1",
        "tool.started pay cashier pay #1 charge",
        "run.resumed",
        "phase.started pay items=1",
        "dispatch.started pay cashier pay #1",
        "tool.finished pay cashier pay #1 charge reconciled",
        "dispatch.finished pay cashier pay #1 output",
        "item.accepted pay cashier pay",
        "phase.finished pay completed",
        "run.finished completed",
    ]
    [key] = ran
    assert tool_events(events)[1] == (
        "tool.finished",
        {"key": key, "tool": "charge", "result": "ch_1", "reconciled": True},
    )
    assert payload_errors(events) == []


async def test_a_call_in_doubt_that_did_not_happen_runs_once(
    store: SQLiteStore, charges: Charges
) -> None:
    """Killed inside the tool before it charged: reconcile finds nothing, and the tool runs,
    once, its start journaled as reconciled."""
    entered = []

    async def charge(card: str, amount: int, idempotency_key: str) -> str:
        """Charge a card."""
        entered.append(idempotency_key)
        if len(entered) == 1:
            raise Killed  # died before reaching the processor
        return charges.charge(card, amount, idempotency_key)

    tool = Tool.from_function(charge, side_effect=True, reconcile=till.find_charge)
    run_id = await _killed_inside_the_tool(store, tool)
    result = await Foreman(till.cashier(tool), store).resume(run_id)
    assert result.status == "completed"
    assert charges.count() == 1 and len(entered) == 2
    lines = stream(store.events(run_id))
    assert lines[lines.index("run.resumed") :] == [
        "run.resumed",
        "phase.started pay items=1",
        "dispatch.started pay cashier pay #1",
        "tool.started pay cashier pay #1 charge reconciled",
        "tool.finished pay cashier pay #1 charge",
        "dispatch.finished pay cashier pay #1 output",
        "item.accepted pay cashier pay",
        "phase.finished pay completed",
        "run.finished completed",
    ]


def _cannot_tell(key: str, arguments: dict[str, Any]) -> Any:
    raise InDoubt("the processor's search is down")


def _broken(key: str, arguments: dict[str, Any]) -> Any:
    raise ValueError("no such table")


@pytest.mark.parametrize(
    ("reconcile", "why"),
    [
        (
            None,
            "started but its result was never recorded, so it may have run; it has no "
            "reconcile function",
        ),
        (
            _cannot_tell,
            "may have run, and its reconcile function cannot tell (the processor's search is down)",
        ),
        (_broken, "may have run, and its reconcile function raised ValueError: no such table"),
    ],
)
async def test_a_call_in_doubt_that_nothing_settles_escalates_and_never_runs_again(
    store: SQLiteStore, charges: Charges, reconcile: Any, why: str
) -> None:
    """Without a reconcile function, or with one that cannot tell, the call in doubt is not
    run again: the item escalates, saying which call a person must check."""
    ran: list[str] = []
    tool = Tool.from_function(
        dying_charge(charges, ran), name="charge", side_effect=True, reconcile=reconcile
    )
    run_id = await _killed_inside_the_tool(store, tool)
    result = await Foreman(till.cashier(tool), store).resume(run_id)
    assert result.status == "waiting"
    assert charges.count() == 1 and len(ran) == 1  # zero extra charges
    events = store.events(run_id)
    lines = stream(events)
    assert lines[lines.index("run.resumed") :] == [
        "run.resumed",
        "phase.started pay items=1",
        "dispatch.started pay cashier pay #1",
        "dispatch.finished pay cashier pay #1 needs_human",
        "item.escalated pay cashier pay",
        "card.created pay cashier pay escalated",
        "phase.finished pay waiting",
        "run.finished waiting",
    ]
    [key] = ran
    [card] = store.cards(run_id)
    assert card.note == (
        f"in doubt: tool 'charge' (key {key}) {why}. A person must check whether it took effect"
    )


async def test_a_specialist_that_swallows_in_doubt_still_escalates(
    store: SQLiteStore, charges: Charges
) -> None:
    """`InDoubt` is raised to the specialist; whatever it makes of it, the dispatch ends
    needs_human: a call in doubt always reaches a person."""
    ran: list[str] = []
    tool = Tool.from_function(dying_charge(charges, ran), name="charge", side_effect=True)
    run_id = await _killed_inside_the_tool(store, tool)

    async def stubborn(order: Order, ctx: Context) -> Receipt:
        with contextlib.suppress(Exception):
            await ctx.call_tool("charge", card=order.card, amount=order.amount)
        return Receipt(card=order.card, charge_id="ch_made_up")

    result = await Foreman(cashier_workflow(tool, function=stubborn), store).resume(run_id)
    assert result.status == "waiting"
    assert charges.count() == 1 and len(ran) == 1
    assert store.artifacts(run_id) == []


async def test_a_time_out_inside_the_tool_leaves_the_call_in_doubt(
    store: SQLiteStore, charges: Charges
) -> None:
    """A dispatch that times out while its tool runs cannot know whether the tool took effect
    (a thread runs on): the retry's same call is in doubt, and without a reconcile function
    the item escalates; the tool does not run a second time."""
    release, returned = threading.Event(), threading.Event()
    ran: list[str] = []

    def charge(card: str, amount: int, idempotency_key: str) -> str:
        """Charge a card, then wait for the processor's answer."""
        ran.append(idempotency_key)
        charge_id = charges.charge(card, amount, idempotency_key)
        release.wait(HOLD)
        returned.set()
        return charge_id

    wf = cashier_workflow(
        Tool.from_function(charge, side_effect=True), function=till.pay, timeout=0.2
    )
    try:
        result = await Foreman(wf, store).run(ORDER)
    finally:
        release.set()
    assert result.status == "waiting"
    assert await in_thread(returned.wait, HOLD)  # the first call's thread, which ran on, is done
    assert charges.count() == 1 and len(ran) == 1
    assert stream(store.events(result.run_id)) == [
        "run.started",
        "phase.started pay items=1",
        "dispatch.started pay cashier pay #1",
        "tool.started pay cashier pay #1 charge",
        "dispatch.finished pay cashier pay #1 timed_out",
        "item.retry pay cashier pay #2",
        "dispatch.started pay cashier pay #2",
        "dispatch.finished pay cashier pay #2 needs_human",
        "item.escalated pay cashier pay",
        "card.created pay cashier pay escalated",
        "phase.finished pay waiting",
        "run.finished waiting",
    ]


# 3. a real kill: SIGKILL inside the tool, resumed from another process ---------------------------


def _charge_rows(db: Path) -> int:
    try:
        return Charges(db).count()
    except sqlite3.OperationalError:
        return 0


def _started(db: Path, run_id: str) -> bool:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM events WHERE run_id=? AND kind='tool.started'", (run_id,)
            ).fetchone()
            return int(row[0]) > 0
    except sqlite3.OperationalError:  # the journal is not there yet
        return False


def kill_inside_the_tool(tmp_path: Path, run_id: str) -> tuple[Path, Path]:
    """Run `tests.workflows.charges:workflow` in a subprocess whose tool charges, then blocks;
    SIGKILL it once the charge is made (and its start journaled)."""
    db, effects = tmp_path / "journal.db", tmp_path / "charges.db"
    log = tmp_path / "run.log"
    env = {**os.environ, "CHARGES_DB": str(effects), "CHARGES_HOLD": str(tmp_path / "never")}
    ref = "tests.workflows.charges:workflow"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.workflows.run", str(db), ref, run_id, json.dumps(ORDER)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
        deadline = time.monotonic() + 60
        while not (_charge_rows(effects) == 1 and _started(db, run_id)):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError(f"the tool was never reached: {log.read_text()}")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return db, effects


@pytest.mark.parametrize("reconciled", [True, False])
async def test_sigkilled_inside_the_tool_then_resumed_charges_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reconciled: bool
) -> None:
    """The process is SIGKILLed inside the tool, after the charge; another process resumes
    the run. With a reconcile function the charge is found and the run completes with it;
    without one the item escalates as in doubt. Either way: one charge."""
    db, effects = kill_inside_the_tool(tmp_path, "r_sigkill")
    monkeypatch.setenv("CHARGES_DB", str(effects))
    store = SQLiteStore(db)
    wf = till.workflow if reconciled else till.unreconciled
    result = await Foreman(wf, store).resume("r_sigkill")
    assert Charges(effects).count() == 1
    lines = stream(store.events("r_sigkill"))
    resumed = lines[lines.index("run.resumed") :]
    if reconciled:
        assert result.status == "completed"
        assert result.result == Receipt(card="4242", charge_id="ch_1")
        assert "tool.finished pay cashier pay #1 charge reconciled" in resumed
    else:
        assert result.status == "waiting"
        assert "item.escalated pay cashier pay" in resumed
        [card] = store.cards("r_sigkill")
        assert card.note.startswith("in doubt: tool 'charge' (key ")
    assert not any(line.startswith("tool.started") for line in resumed)
    store.close()


# declaring side-effecting tools ------------------------------------------------------------------


def test_the_key_parameter_is_filled_in_not_asked_for() -> None:
    def charge(card: str, amount: int, idempotency_key: str) -> str:
        """Charge a card."""
        return idempotency_key

    tool = Tool.from_function(charge, side_effect=True)
    assert tool.side_effect and tool.takes_key and tool.reconcile is None
    assert set(tool.json_schema()["properties"]) == {"card", "amount"}


def test_declaring_a_side_effecting_tool_wrongly_is_refused() -> None:
    def charge(card: str, idempotency_key: str) -> str:
        """Charge a card."""
        return card

    def lookup(key: str, arguments: dict[str, Any]) -> Any:
        return DID_NOT_RUN

    with pytest.raises(TypeError, match=r"filled in by the runtime.*side_effect=True"):
        Tool.from_function(charge)
    with pytest.raises(TypeError, match="pass side_effect=True too"):
        Tool.from_function(charge, reconcile=lookup)
    with pytest.raises(TypeError, match="is not callable"):
        Tool.from_function(charge, side_effect=True, reconcile="lookup")  # type: ignore[arg-type]


def test_a_calls_key_is_the_item_the_tool_and_the_arguments_in_any_order() -> None:
    class Args(BaseModel):
        card: str
        amount: int

    def charge(card: str, amount: int) -> str:
        """Charge a card."""
        return card

    tool = Tool.from_function(charge, side_effect=True)
    key = tool.key("run_1:pay", tool.validate({"card": "4242", "amount": 10}))
    assert key == tool.key("run_1:pay", tool.validate('{"amount": 10, "card": "4242"}'))
    assert len(key) == 32 and int(key, 16) >= 0
    others = {
        tool.key("run_1:pay", tool.validate({"card": "4242", "amount": 11})),
        tool.key("run_1:pay[1]", tool.validate({"card": "4242", "amount": 10})),
        tool.key("run_2:pay", tool.validate({"card": "4242", "amount": 10})),
        Tool.from_function(charge, name="refund", side_effect=True).key(
            "run_1:pay", tool.validate({"card": "4242", "amount": 10})
        ),
    }
    assert key not in others and len(others) == 4


async def test_a_replayed_result_comes_back_as_the_tools_return_type(
    store: SQLiteStore, charges: Charges
) -> None:
    """The journal holds JSON; a replay reads it back through the tool's return annotation."""
    got: list[Any] = []

    def charge(card: str, amount: int) -> Receipt:
        """Charge a card."""
        return Receipt(card=card, charge_id=charges.charge(card, amount))

    async def pay(order: Order, ctx: Context) -> Receipt:
        receipt = await ctx.call_tool("charge", card=order.card, amount=order.amount)
        got.append(receipt)
        if ctx.attempt == 1:
            raise Retry("again")
        assert isinstance(receipt, Receipt)
        return receipt

    wf = cashier_workflow(Tool.from_function(charge, side_effect=True), function=pay)
    result = await Foreman(wf, store).run(ORDER)
    assert result.status == "completed"
    assert got == [Receipt(card="4242", charge_id="ch_1")] * 2
    assert charges.count() == 1


def test_work_item_keys() -> None:
    item = WorkItem(
        run_id="r",
        phase="p",
        key="p[3]",
        role="w",
        input=Order(card="1", amount=1),
        brief=Brief(objective="o"),
        attempt=2,
    )
    assert (item.idempotency_key, item.attempt_key) == ("r:p[3]", "r:p[3]:w:2")
