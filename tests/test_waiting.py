"""Waiting runs: items that need a person wait durably, and the run goes on from the decisions.

A run whose items need a person ends its session `waiting`; the process may exit. Decisions are
recorded from any process (`hubspoke card answer`, `Board`), in any order; `hubspoke resume`
(or `Foreman.resume`) then goes on from them, and each item's next attempt reads its answer.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hubspoke import Board, EventKind, Foreman, SQLiteStore
from hubspoke.loader import load_workflow
from hubspoke.testing import stream

pytestmark = pytest.mark.anyio

FLOW = '''
import asyncio

from pydantic import BaseModel
from hubspoke import Context, NeedsHuman, Phase, Role, Workflow


class Topic(BaseModel):
    topic: str


class Number(BaseModel):
    n: int


class Reply(BaseModel):
    n: int
    text: str


async def reply(inp: Number, ctx: Context) -> Reply:
    """Needs a person on its first attempt; then answers with what the person said."""
    await asyncio.sleep(0.01)  # both items are in flight at once, as a model's would be
    if ctx.correction is None:
        raise NeedsHuman(f"what should I say about {inp.n}?")
    return Reply(n=inp.n, text=ctx.correction)


workflow = Workflow(
    name="asking",
    input=Topic,
    roles=[Role(name="replier", purpose="Reply.", input=Number, output=Reply, function=reply)],
    phases=[
        Phase(
            name="reply",
            role="replier",
            over=lambda run: [1, 2],
            input=lambda run, n: Number(n=n),
            concurrency=2,
        )
    ],
    result=lambda run: [r.text for r in run.outputs("reply")],
)
'''


def hubspoke(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = str(Path(sys.executable).with_name("hubspoke"))
    return subprocess.run(
        [command, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


async def test_two_items_that_need_a_person_wait_and_go_on_from_answers_given_in_reverse(
    tmp_path: Path,
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    workflow = load_workflow(str(tmp_path / "flow.py") + ":workflow")
    first = await Foreman(workflow, store).run(
        {"topic": "t"}, run_id="run_ask", ref="flow.py:workflow"
    )
    store.close()
    # Both items asked; the run waits for people, it did not fail or end.
    assert first.status == "waiting"
    assert first.state.phases["reply"].status == "waiting"

    # Another process answers, the second item first.
    board = hubspoke("board", "--run", "run_ask", "--db", str(db), "--json", cwd=tmp_path)
    assert board.returncode == 0, board.stderr
    cards = {c["item"]: c["id"] for c in json.loads(board.stdout)["escalated"]}
    assert set(cards) == {"reply[0]", "reply[1]"}
    for item, text in (("reply[1]", "two is fine"), ("reply[0]", "one is lonely")):
        answered = hubspoke(
            "card", "answer", cards[item], text, "--by", "ada", "--db", str(db), cwd=tmp_path
        )
        assert answered.returncode == 0, answered.stderr

    store = SQLiteStore(db)
    done = await Foreman(workflow, store).resume("run_ask")
    assert done.status == "completed"
    assert done.result == ["A person answered: one is lonely", "A person answered: two is fine"]
    lines = stream(store.events("run_ask"), skip=(EventKind.CARD_CREATED,))
    # The whole story: both ask, the run waits, two decisions in reverse order, each item's
    # next attempt runs with its answer, the run completes.
    assert lines[-14:] == [
        "phase.finished reply waiting",
        "run.finished waiting",
        "card.decided reply replier reply[1] answer",
        "card.decided reply replier reply[0] answer",
        "run.resumed",
        "phase.started reply items=2",
        "dispatch.started reply replier reply[0] #2",
        "dispatch.started reply replier reply[1] #2",
        "dispatch.finished reply replier reply[0] #2 output",
        "item.accepted reply replier reply[0]",
        "dispatch.finished reply replier reply[1] #2 output",
        "item.accepted reply replier reply[1]",
        "phase.finished reply completed",
        "run.finished completed",
    ]
    store.close()


async def test_a_waiting_run_with_nothing_decided_is_left_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    store = SQLiteStore(tmp_path / "journal.db")
    workflow = load_workflow(str(tmp_path / "flow.py") + ":workflow")
    first = await Foreman(workflow, store).run({"topic": "t"}, run_id="run_ask")
    n = len(store.events("run_ask"))
    again = await Foreman(workflow, store).resume("run_ask")
    assert (first.status, again.status) == ("waiting", "waiting")
    assert len(store.events("run_ask")) == n


async def test_a_skipped_item_is_no_longer_needed_and_an_abort_ends_the_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    store = SQLiteStore(tmp_path / "journal.db")
    workflow = load_workflow(str(tmp_path / "flow.py") + ":workflow")
    await Foreman(workflow, store).run({"topic": "t"}, run_id="run_ask")
    board = Board(store, workflow=workflow)
    cards = {c.item: c.id for c in board.cards("run_ask", "escalated")}
    board.skip(cards["reply[0]"], by="ada")
    board.answer(cards["reply[1]"], "only two", by="ada")
    done = await Foreman(workflow, store).resume("run_ask")
    # The fail-fast phase no longer needs the skipped item: it completes with the other.
    assert done.status == "completed"
    assert done.result == ["A person answered: only two"]
    assert done.state.items["reply[0]"].status == "skipped"

    await Foreman(workflow, store).run({"topic": "t"}, run_id="run_two")
    [card, _] = board.cards("run_two", "escalated")
    board.abort(card.id, by="ada", reason="not worth it")
    assert store.run("run_two").status == "aborted"  # type: ignore[union-attr]


# human gates ----------------------------------------------------------------------------------


def gated_flow(**gate: Any) -> Any:
    from pydantic import BaseModel

    from hubspoke import Context, Phase, Risk, Role, Workflow

    class Order(BaseModel):
        amount: int

    class Paid(BaseModel):
        amount: int

    async def pay(order: Order, ctx: Context) -> Paid:
        PAID.append(order.amount)
        return Paid(amount=order.amount)

    return Workflow(
        name="paying",
        input=Order,
        roles=[
            Role(name="payer", purpose="Pay.", input=Order, output=Paid, function=pay,
                 risk=Risk.HIGH, approve_before_dispatch=True, **gate),
        ],
        phases=[Phase(name="pay", role="payer", over=lambda run: [run.input.amount, 7],
                      input=lambda run, n: Order(amount=n))],
        result=lambda run: [p.amount for p in run.outputs("pay")],
    )  # fmt: skip


PAID: list[int] = []


async def test_a_human_gate_holds_each_item_before_dispatch_until_a_person_approves(
    store: SQLiteStore,
) -> None:
    PAID.clear()
    wf = gated_flow()
    first = await Foreman(wf, store).run({"amount": 120}, run_id="run_pay")
    assert first.status == "waiting" and PAID == []  # nothing ran before a person decided
    assert stream(store.events("run_pay")) == [
        "run.started",
        "phase.started pay items=2",
        "card.created pay payer pay[0] review",
        "item.waiting pay payer pay[0] #1 approval",
        "card.created pay payer pay[1] review",
        "item.waiting pay payer pay[1] #1 approval",
        "phase.finished pay waiting",
        "run.finished waiting",
    ]
    board = Board(store, workflow=wf)
    gates = {c.item: c.id for c in board.cards("run_pay", "review")}
    board.approve(gates["pay[0]"], by="ana")
    board.skip(gates["pay[1]"], by="ana")  # not this one
    done = await Foreman(wf, store).resume("run_pay")
    assert done.status == "completed"
    assert PAID == [120] and done.result == [120]


async def test_a_gate_left_undecided_past_its_time_out_escalates_or_aborts(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    PAID.clear()
    cases = (
        ("escalate", "waiting"),
        ("abort", "aborted"),
        ("skip", "completed"),
        ("park", "completed"),
    )
    for action, status in cases:
        wf = gated_flow(gate_timeout=60.0, on_gate_timeout=action)
        run_id = f"run_{action}"
        await Foreman(wf, store).run({"amount": 5}, run_id=run_id)
        later = time.time() + 61
        monkeypatch.setattr(time, "time", lambda later=later: later)
        # A decision elsewhere on the run lets the resume go on (a waiting run with nothing
        # decided is left as it is): the other item's gate is approved.
        board = Board(store, workflow=wf)
        other = next(c for c in board.cards(run_id, "review") if c.item == "pay[1]")
        board.approve(other.id, by="ana")
        done = await Foreman(wf, store).resume(run_id)
        monkeypatch.undo()
        assert done.status == status, action
        items = done.state.items
        if action == "escalate":
            assert items["pay[0]"].status == "escalated"
            assert [c.item for c in board.cards(run_id, "escalated")] == ["pay[0]"]
        elif action == "skip":
            assert items["pay[0]"].status == "skipped"
        elif action == "park":  # set aside: nothing waits for it, a person may still let it go
            assert items["pay[0]"].status == "parked"
            assert [c.item for c in board.cards(run_id, "parked")] == ["pay[0]"]
    assert PAID == [7, 7, 7]  # pay[0] never ran; pay[1] ran in the escalate, skip and park runs


async def test_a_run_goes_on_by_itself_when_decided_from_the_same_process(
    tmp_path: Path,
) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    store = SQLiteStore(tmp_path / "journal.db")
    workflow = load_workflow(str(tmp_path / "flow.py") + ":workflow")
    foreman = Foreman(workflow, store)
    first = await foreman.run({"topic": "t"}, run_id="run_ask")
    assert first.status == "waiting"
    watching = asyncio.create_task(foreman.wait_for_people("run_ask", timeout=30, poll=0.01))
    board = Board(store, workflow=workflow)
    for card in sorted(board.cards("run_ask", "escalated"), key=lambda c: c.item):
        await asyncio.sleep(0.02)  # the foreman is watching, holding no lease
        board.answer(card.id, f"about {card.item}", by="ana")
    done = await watching
    assert done.status == "completed"
    assert done.result == [
        "A person answered: about reply[0]",
        "A person answered: about reply[1]",
    ]


async def test_waiting_for_people_gives_up_after_its_time_out(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(FLOW)
    store = SQLiteStore(tmp_path / "journal.db")
    workflow = load_workflow(str(tmp_path / "flow.py") + ":workflow")
    foreman = Foreman(workflow, store)
    await foreman.run({"topic": "t"}, run_id="run_ask")
    still = await foreman.wait_for_people("run_ask", timeout=0.05, poll=0.01)
    assert still.status == "waiting"


async def test_a_gate_time_out_applies_on_resume_though_nobody_decided_anything(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    wf = gated_flow(gate_timeout=60.0, on_gate_timeout="escalate")
    await Foreman(wf, store).run({"amount": 5}, run_id="run_t")
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    done = await Foreman(wf, store).resume("run_t")
    assert done.status == "waiting"
    assert {i.status for i in done.state.items.values()} == {"escalated"}


async def test_answering_an_escalation_does_not_open_a_human_gate(store: SQLiteStore) -> None:
    """A fallback behind a human gate still waits for its own approval after a person answers
    the first role's question."""
    from pydantic import BaseModel

    from hubspoke import Context, NeedsHuman, Phase, Risk, Role, Workflow

    class Order(BaseModel):
        amount: int

    async def ask(order: Order, ctx: Context) -> Order:
        raise NeedsHuman("which card?")

    async def pay(order: Order, ctx: Context) -> Order:
        PAID.append(order.amount)
        return order

    PAID.clear()
    wf = Workflow(
        name="w",
        input=Order,
        roles=[
            Role(name="asker", purpose="Ask.", input=Order, output=Order, function=ask,
                 fallback="payer", max_attempts=1),
            Role(name="payer", purpose="Pay.", input=Order, output=Order, function=pay,
                 risk=Risk.HIGH, approve_before_dispatch=True),
        ],
        phases=[Phase(name="pay", role="asker", input=lambda run: run.input)],
    )  # fmt: skip
    await Foreman(wf, store).run({"amount": 5}, run_id="run_f")
    board = Board(store, workflow=wf)
    [card] = board.cards("run_f", "escalated")
    board.answer(card.id, "the company card", by="ana")
    again = await Foreman(wf, store).resume("run_f")
    # The asker asks again and falls back to the payer, which stops at its gate: not paid.
    assert PAID == []
    assert again.status == "waiting"


def test_a_review_gated_phase_cannot_write_to_the_outbox() -> None:
    from hubspoke import DefinitionError

    wf = gated_flow()
    phase = wf.phases[0]
    bad = type(phase)(**{**phase.__dict__, "review": True, "outbox": True})
    with pytest.raises(DefinitionError, match="must not leave before a person approves"):
        type(wf)(**{**wf.__dict__, "phases": [bad]}).check()


async def test_a_waiting_run_makes_its_result_only_once_nothing_waits(tmp_path: Path) -> None:
    """The result reads outputs a person has yet to let through: it is not made (and cannot
    fail the run) while the run waits."""
    (tmp_path / "flow.py").write_text(
        FLOW.replace(
            "concurrency=2,", "concurrency=2, strategy=__import__('hubspoke').Strategy.BEST_EFFORT,"
        )
    )
    store = SQLiteStore(tmp_path / "journal.db")
    workflow = load_workflow(str(tmp_path / "flow.py") + ":workflow")
    first = await Foreman(workflow, store).run({"topic": "t"}, run_id="run_r")
    assert (first.status, first.result) == ("waiting", None)
