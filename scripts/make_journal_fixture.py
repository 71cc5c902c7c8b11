"""Write tests/fixtures/journal-v{SCHEMA_VERSION}.db and its summary: a journal of this version.

Run once per schema version (``PYTHONPATH=src .venv/bin/python scripts/make_journal_fixture.py``);
the fixtures are then kept forever, so that later versions are tested against journals written
by earlier ones (`tests/test_journal.py`). The v1 fixture holds one run of the sales demo, made
by this script's first version (git history); from v2 on, the journal holds runs that between
them write every `EventKind`:

- ``run_sales``: the sales demo (model exchanges, tool calls, invalid outputs, retries, review
  and escalation cards).
- ``run_features``: a function-specialist workflow killed in its first session and resumed:
  an item stuck on the same invalid output and moved to its fallback; a role's run budget
  refusing dispatches, whose items go to their fallback; an item that needed a person requeued
  by a `Strategy.RETRY` round; a refused tool; a `TopK` selection; an evaluator rejecting the
  first draft; and a sub-foreman's child run.
- ``run_capped``: the escalation cap failing an item and stopping the run, its phase
  ``stopped``.
- ``run_exhausted``: the run's step budget refusing a dispatch, the run ``exhausted``.
- ``run_provider`` (from v3): an agent whose model is reached over the network (each request
  journaled before it is sent) and is rate-limited once: the item waits, then is accepted.
- ``run_sales`` (from v4) also holds people's decisions: a draft approved, one amended, one
  parked and one skipped; the escalated contact answered, and the run resumed from it.
- ``run_tools`` (from v4): a side-effecting tool killed inside its first call; on resume the
  call is in doubt and its reconcile function finds the charge, the retry's same call is
  replayed, and the next item's call runs and is journaled before and after.
- ``run_plans`` (from v5): a planned phase whose planner's first plan is rejected (an unknown
  role), whose second stalls (a step fails) and is replanned keeping the accepted step.
- ``run_routed`` (from v5): a routed phase whose router first dispatches a role that does not
  exist (rejected, corrected), then a note, then finishes with a field of it.

The summary file maps every run id (child runs included) to its `RunState.summary()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_ai.exceptions import ModelRateLimitError
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from hubspoke import (
    SCHEMA_VERSION,
    Board,
    Budget,
    Context,
    EvaluationRequest,
    Event,
    EventKind,
    Foreman,
    NeedsHuman,
    Phase,
    Plan,
    PlanStep,
    Retry,
    Role,
    Route,
    RouterView,
    RunState,
    SQLiteStore,
    Strategy,
    TopK,
    Verdict,
    Workflow,
)
from hubspoke.examples.sales import DEMO_INPUT
from hubspoke.examples.sales import workflow as sales
from hubspoke.specialists.context import ToolRefused
from hubspoke.tools import DID_NOT_RUN, Tool

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures"


class Topic(BaseModel):
    topic: str


class Idea(BaseModel):
    n: int


class Note(BaseModel):
    text: str
    score: float


class Notes(BaseModel):
    notes: list[Note]


class Draft(BaseModel):
    text: str


class Killed(BaseException):
    """Stops the first session of ``run_features`` at a chosen event, as a kill would."""


def lookup(n: int) -> str:
    """Look an idea up."""
    return f"idea {n}"


async def collect(idea: Idea, ctx: Context) -> Note | dict[str, Any]:
    """Per idea: 0 answers the same invalid output every time (stuck, then its fallback takes
    it); 1 needs a person on its first attempt (requeued, then answered); 2 calls a tool and
    one it may not, spending the role's run budget; 3 is refused by that budget (its fallback
    takes it)."""
    if idea.n == 0:
        return {"text": 0, "score": 0}
    if idea.n == 1 and ctx.attempt == 1:
        raise NeedsHuman("is idea 1 worth a second look?")
    if idea.n == 2:
        found = await ctx.call_tool("lookup", n=idea.n)
        with contextlib.suppress(ToolRefused):
            await ctx.call_tool("send_email", to="someone")
        return Note(text=str(found), score=2.0)
    return Note(text=f"note {idea.n}", score=3.0)


async def backup(idea: Idea, ctx: Context) -> Note:
    return Note(text=f"backup note {idea.n}", score=0.5)


async def write(notes: Notes, ctx: Context) -> Draft:
    text = " / ".join(n.text for n in notes.notes)
    return Draft(text=text if ctx.correction is None else f"{text}, at length")


async def judge(request: EvaluationRequest, ctx: Context) -> Verdict:
    long_enough = "at length" in request.output["text"]
    return Verdict(accept=long_enough, critique="" if long_enough else "say more")


async def deepen(draft: Draft, ctx: Context) -> Draft:
    return Draft(text=f"{draft.text}, deepened")


DEEP = Workflow(
    name="deep",
    input=Draft,
    roles=[Role(name="deepener", purpose="Deepen.", input=Draft, output=Draft, function=deepen)],
    phases=[Phase(name="deepen", role="deepener", input=lambda run: run.input)],
    result=lambda run: run.output("deepen"),
)

FEATURES = Workflow(
    name="features",
    input=Topic,
    roles=[
        Role(
            name="collector",
            purpose="Collect a note on an idea.",
            input=Idea,
            output=Note,
            function=collect,
            tools=[lookup],
            budget=Budget(tool_calls=1),
            run_budget=Budget(tool_calls=1),
            fallback="backup",
        ),
        Role(name="backup", purpose="Collect a note.", input=Idea, output=Note, function=backup),
        Role(name="writer", purpose="Write.", input=Notes, output=Draft, function=write),
        Role(
            name="judge",
            purpose="Judge drafts.",
            input=EvaluationRequest,
            output=Verdict,
            function=judge,
        ),
        DEEP.as_role(name="deep", purpose="Deepen a draft.", output=Draft),
    ],
    phases=[
        Phase(
            name="gather",
            role="collector",
            over=lambda run: list(range(4)),
            input=lambda run, n: {"n": n},
            concurrency=1,
            strategy=Strategy.RETRY,
            retries=1,
            select=TopK(k=2, key=lambda note: note.score),
        ),
        Phase(
            name="write",
            role="writer",
            input=lambda run: {"notes": [n.model_dump() for n in run.outputs("gather")]},
            evaluator="judge",
            review=True,
            review_waits=True,  # the gate holds the draft from `deepen` until it is approved
        ),
        Phase(name="deepen", role="deep", input=lambda run: run.output("write")),
    ],
)


async def capped_work(idea: Idea, ctx: Context) -> Note:
    raise NeedsHuman(f"idea {idea.n} needs a person")


CAPPED = Workflow(
    name="capped",
    input=Topic,
    roles=[Role(name="asker", purpose="Ask.", input=Idea, output=Note, function=capped_work)],
    phases=[
        Phase(
            name="ask",
            role="asker",
            over=lambda run: [0, 1],
            input=lambda run, n: {"n": n},
            concurrency=1,
            strategy=Strategy.BEST_EFFORT,
        )
    ],
    max_escalations=1,
)

EXHAUSTED = Workflow(
    name="exhausted",
    input=Topic,
    roles=[Role(name="backup", purpose="Collect.", input=Idea, output=Note, function=backup)],
    phases=[
        Phase(
            name="collect",
            role="backup",
            over=lambda run: [0, 1, 2],
            input=lambda run, n: {"n": n},
            concurrency=1,
        )
    ],
    budget=Budget(steps=2),
)


class RemoteModel(FunctionModel):
    """A function model that says it is reached over the network, as a provider's is."""

    @property
    def base_url(self) -> str:
        return "http://provider.invalid/v1"


def rate_limited_once() -> RemoteModel:
    calls: list[int] = []

    def answer(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        calls.append(1)
        if len(calls) == 1:
            raise ModelRateLimitError("fixture", "rate limited", retry_after=0.01)
        return ModelResponse(parts=[ToolCallPart("final_result", {"text": "tea is old"})])

    return RemoteModel(answer, model_name="fixture")


PROVIDER = Workflow(
    name="provider",
    input=Topic,
    roles=[Role(name="writer", purpose="Write.", input=Topic, output=Draft)],
    phases=[Phase(name="write", role="writer", input=lambda run: run.input)],
)


class Order(BaseModel):
    n: int


class Receipt(BaseModel):
    n: int
    charge: str


CHARGED: list[str] = []
"""The fixture's card processor: the idempotency key of every charge made."""


async def charge(n: int, idempotency_key: str) -> str:
    """Charge order `n`; the first charge dies inside the tool, after charging."""
    CHARGED.append(idempotency_key)
    if len(CHARGED) == 1:
        raise Killed
    return f"ch_{len(CHARGED)}"


def find_charge(key: str, arguments: dict[str, Any]) -> Any:
    return f"ch_{CHARGED.index(key) + 1}" if key in CHARGED else DID_NOT_RUN


async def pay(order: Order, ctx: Context) -> Receipt:
    found = await ctx.call_tool("charge", n=order.n)
    if order.n == 0 and ctx.attempt == 1:
        raise Retry("print the receipt again")
    return Receipt(n=order.n, charge=found)


TOOLS = Workflow(
    name="tools",
    input=Topic,
    roles=[
        Role(
            name="cashier",
            purpose="Charge.",
            input=Order,
            output=Receipt,
            function=pay,
            tools=[Tool.from_function(charge, side_effect=True, reconcile=find_charge)],
        )
    ],
    phases=[
        Phase(
            name="pay",
            role="cashier",
            over=lambda run: [0, 1],
            input=lambda run, n: {"n": n},
            concurrency=1,
        )
    ],
)


async def lead(topic: Topic, ctx: Context) -> Plan:
    """1st dispatch: a plan naming a role that does not exist; 2nd: a plan whose step ``bad``
    fails; after the stall: a plan keeping ``a``."""
    if ctx.correction is None:
        return Plan(steps=[PlanStep(id="a", role="oracle", objective="ask")])
    if "stalled" not in ctx.correction:
        steps = [
            PlanStep(id="a", role="noter", input={"n": 1}, objective="note 1"),
            PlanStep(id="bad", role="noter", input={"n": 0}, objective="note 0"),
        ]
    else:
        steps = [PlanStep(id="b", role="noter", input={"n": 2}, after=["a"], objective="note 2")]
    return Plan(steps=steps, rationale="one note each")


async def note(idea: Idea, ctx: Context) -> Note:
    if idea.n == 0:
        raise RuntimeError("no note for 0")
    return Note(text=f"note {idea.n}", score=float(idea.n))


PLANS = Workflow(
    name="plans",
    input=Topic,
    roles=[
        Role(name="lead", purpose="Plan notes.", input=Topic, output=Plan, function=lead),
        Role(name="noter", purpose="Note.", input=Idea, output=Note, function=note, max_attempts=1),
    ],
    phases=[Phase(name="notes", plan_by="lead", input=lambda run: run.input, roles=["noter"])],
)


async def route(view: RouterView, ctx: Context) -> Route:
    """1st dispatch: a role that does not exist; then a note, then finish with its text."""
    if not view.steps:
        role = "oracle" if ctx.correction is None else "noter"
        return Route(action="dispatch", role=role, input={"n": 1})
    result = {"text": {"$from": view.steps[-1].id, "field": "text"}, "score": 1.0}
    return Route(action="finish", result=result)


ROUTED = Workflow(
    name="routed",
    input=Topic,
    roles=[
        Role(name="router", purpose="Route.", input=RouterView, output=Route, function=route),
        Role(name="noter", purpose="Note.", input=Idea, output=Note, function=note),
    ],
    phases=[
        Phase(
            name="notes",
            route_by="router",
            input=lambda run: run.input,
            roles=["noter"],
            returns=Note,
        )
    ],
    result=lambda run: run.output("notes"),
)


def kill_after_selection(event: Event) -> None:
    if event.kind is EventKind.PHASE_SELECTED:
        raise Killed


async def write_runs(store: SQLiteStore) -> None:
    await Foreman(sales, store).run(DEMO_INPUT, run_id="run_sales")
    board = Board(store, workflow=sales)
    review = board.cards("run_sales", "review")
    board.approve(review[0].id, by="ada")
    board.amend(review[1].id, set={"subject": "A shorter subject"}, by="ada")
    board.park(review[2].id, by="ada", note="next week")
    board.skip(review[3].id, by="ada")
    [escalated] = board.cards("run_sales", "escalated")
    board.answer(escalated.id, "Write to the operations analyst", by="ada")
    await Foreman(sales, store).resume("run_sales")
    with contextlib.suppress(Killed):
        await Foreman(FEATURES, store, listeners=(kill_after_selection,)).run(
            {"topic": "tea"}, run_id="run_features"
        )
    await Foreman(FEATURES, store).resume("run_features")
    features = Board(store, workflow=FEATURES)
    [draft] = features.cards("run_features", "review")
    features.approve(draft.id, by="ada")
    await Foreman(FEATURES, store).resume("run_features")
    await Foreman(CAPPED, store).run({"topic": "tea"}, run_id="run_capped")
    await Foreman(EXHAUSTED, store).run({"topic": "tea"}, run_id="run_exhausted")
    await Foreman(PROVIDER, store, model=rate_limited_once()).run(
        {"topic": "tea"}, run_id="run_provider"
    )
    with contextlib.suppress(Killed):
        await Foreman(TOOLS, store).run({"topic": "tea"}, run_id="run_tools")
    await Foreman(TOOLS, store).resume("run_tools")
    await Foreman(PLANS, store).run({"topic": "tea"}, run_id="run_plans")
    await Foreman(ROUTED, store).run({"topic": "tea"}, run_id="run_routed")


def main() -> None:
    db = OUT / f"journal-v{SCHEMA_VERSION}.db"
    if db.exists() and "--force" not in sys.argv:
        raise SystemExit(
            f"{db} exists: a fixture is kept as written by its version. Bump SCHEMA_VERSION for "
            "a new one, or pass --force to write this version's again (before it is released)"
        )
    db.unlink(missing_ok=True)
    store = SQLiteStore(db)
    asyncio.run(write_runs(store))
    summaries = {
        run.run_id: RunState.fold(run.run_id, store.events(run.run_id)).summary()
        for run in sorted(store.runs(limit=100), key=lambda r: r.created)
    }
    kinds = {e.kind for run_id in summaries for e in store.events(run_id)}
    missing = sorted(k.value for k in EventKind if k not in kinds)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store._db.execute("PRAGMA journal_mode=DELETE")
    store.close()
    if missing:
        raise SystemExit(f"the fixture lacks events of kind {', '.join(missing)}: add runs")
    summary = OUT / f"journal-v{SCHEMA_VERSION}.summary.json"
    summary.write_text(json.dumps(summaries, indent=1) + "\n")
    print(f"wrote {db} ({len(summaries)} runs) and {summary}")


if __name__ == "__main__":
    main()
