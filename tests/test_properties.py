"""Property-based invariants (docs/reliability.md), over generated workflows and specialist scripts.

Hypothesis generates workflows of 1-4 phases (fan-outs of 0-8 items or single dispatches,
every strategy, fallbacks, evaluators, sub-foremen made with `Workflow.as_role`,
run/role/dispatch budgets, escalation caps) and a script of what every specialist does on each
item and attempt: a valid output, an invalid one, an exception, a scope violation, a request
for a person, a tool call (that draws on the tool-call budgets) or a call to another role; an
evaluator rejects where the script gives it anything but a valid move. For every example:

- the run terminates in a terminal status, within its steps;
- no budget is exceeded (run, role and dispatch; sub-runs within their carve);
- no invalid output was accepted: every artifact validates strictly against its role's schema;
- no specialist reached another: only the foreman dispatches, calls to roles are refused;
- escalations never pass `max_escalations`;
- a kill at any event, then `Foreman.resume`, gives the same final status, artifacts and cards,
  and dispatches nothing again whose end was durable.

`PROPERTY_EXAMPLES` sets how many examples to try (600 by default, about 20 s).

The kill is simulated in-process. The uncrashed run's store records every write in order, one
entry per run record or event, grouped by transaction. A kill at global event `k` leaves a
fresh store holding what was committed before it: each run's events with the artifacts and
cards they announced, and `runs.status` still `running` for every run whose `run.finished` came
later. For a single run that is "copy the journal, delete the events with seq > k and what they
announced, set the status back to running"; the global order also places the cut consistently
across a run and its sub-runs. A kill that lands inside a transaction (a batch of events written
together) loses the whole batch, as SQLite rolls it back: the cut moves back to the batch's start.
The specialists yield to the event loop once per dispatch, so the journal commits often and
there are many distinct cut points.

Sub-foremen and evaluators are generated in phases that dispatch one item at a time. With
several such items in flight, which one the foreman hears from first depends on how many loop
steps each takes, and a resume takes fewer (a finished sub-run takes none; an output that was
being judged is judged again without redoing the work): when those ends race a decision to stop
the run (the escalation cap, a budget refusal), the resumed run may decide the race the other
way, an end the uncrashed run could equally have reached with other timings
(docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from hubspoke import (
    Budget,
    Context,
    EvaluationRequest,
    EventKind,
    Foreman,
    NeedsHuman,
    OutOfScope,
    Phase,
    Role,
    RunView,
    SQLiteStore,
    Strategy,
    Verdict,
    Workflow,
)
from hubspoke.artifacts import Artifact
from hubspoke.board import Card
from hubspoke.events import Event
from hubspoke.journal import RunRecord, writer
from hubspoke.outbox import OutboxEntry
from hubspoke.testing import payload_errors

TERMINAL = {"completed", "failed", "waiting", "exhausted", "aborted"}
MOVES = ("valid", "invalid", "raise", "scope", "human", "tool", "call_role")
MAX_STEPS = 60
RUN_ID = "run_prop"


class Item(BaseModel):
    n: int


class Out(BaseModel):
    n: int
    tag: str


async def stamp(n: int) -> int:
    """Stamp a number: a tool, so that moves can spend tool-call budgets. Async: a sync tool
    runs in a worker thread, whose timing would make the uncrashed run itself vary (budgets
    reserved by dispatches in flight at once), and the property compares runs exactly."""
    return n


# plans --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleSpec:
    name: str
    max_attempts: int
    dispatch_calls: int | None
    """Per-dispatch tool-call cap (`Role.budget`)."""
    run_calls: int | None
    """This role's tool calls over the run (`Role.run_budget`)."""


@dataclass(frozen=True)
class ChildSpec:
    """The phase's role is a sub-foreman running a one-phase workflow of role `c{i}`."""

    items: int | None
    carve_calls: int | None
    """The team card's per-dispatch tool calls: the sub-run's budget is carved from it."""
    max_attempts: int


@dataclass(frozen=True)
class PhaseSpec:
    index: int
    items: int | None
    """None: one dispatch; else a fan-out over that many elements."""
    over_previous: bool
    strategy: Strategy
    retries: int
    quorum: int
    concurrency: int
    role: RoleSpec
    fallback: RoleSpec | None
    child: ChildSpec | None
    evaluated: bool = False
    """The phase has an evaluator, `e{index}`, that judges every output."""

    @property
    def name(self) -> str:
        return f"p{self.index}"


@dataclass(frozen=True)
class Plan:
    phases: tuple[PhaseSpec, ...]
    steps: int | None
    tool_calls: int | None
    max_escalations: int
    on_exhausted: str
    script: dict[tuple[str, int, int], str]


def role_specs(draw: Any, name: str) -> RoleSpec:
    return RoleSpec(
        name=name,
        max_attempts=draw(st.integers(1, 3)),
        dispatch_calls=draw(st.one_of(st.none(), st.integers(0, 2))),
        run_calls=draw(st.one_of(st.none(), st.integers(0, 4))),
    )


@st.composite
def plans(draw: Any) -> Plan:
    phases = []
    for i in range(draw(st.integers(1, 4))):
        items = draw(st.one_of(st.none(), st.integers(0, 8)))
        strategy = draw(st.sampled_from(list(Strategy)))
        nested = draw(st.integers(0, 3)) == 0
        evaluated = not nested and draw(st.integers(0, 3)) == 0
        child = None
        if nested:
            child = ChildSpec(
                items=draw(st.one_of(st.none(), st.integers(0, 3))),
                carve_calls=draw(st.one_of(st.none(), st.integers(0, 3))),
                max_attempts=draw(st.integers(1, 2)),
            )
        phases.append(
            PhaseSpec(
                index=i,
                items=items,
                over_previous=i > 0 and items is not None and draw(st.booleans()),
                strategy=strategy,
                retries=draw(st.integers(1, 2)),
                quorum=draw(st.integers(1, max(1, items or 1))),
                # Sub-runs and evaluated items run one at a time here: see the module's docstring.
                concurrency=1 if nested or evaluated else draw(st.integers(1, 4)),
                role=role_specs(draw, f"r{i}"),
                fallback=None if nested or draw(st.booleans()) else role_specs(draw, f"f{i}"),
                child=child,
                evaluated=evaluated,
            )
        )
    names = [
        n
        for p in phases
        for n in (
            p.role.name if p.child is None else f"c{p.index}",
            p.fallback.name if p.fallback else None,
            f"e{p.index}" if p.evaluated else None,
        )
        if n is not None
    ]
    script = draw(
        st.dictionaries(
            st.tuples(st.sampled_from(names), st.integers(0, 7), st.integers(1, 4)),
            st.sampled_from(MOVES),
            max_size=24,
        )
    )
    return Plan(
        phases=tuple(phases),
        steps=draw(st.one_of(st.none(), st.integers(1, 30))),
        tool_calls=draw(st.one_of(st.none(), st.integers(0, 6))),
        max_escalations=draw(st.integers(0, 4)),
        on_exhausted=draw(st.sampled_from(["finalize", "abort"])),
        script=script,
    )


# specialists that follow the script -----------------------------------------------------------


def _index(key: str) -> int:
    start = key.rfind("[")
    return int(key[start + 1 : -1]) if start != -1 else 0


def scripted_function(
    name: str, script: dict[tuple[str, int, int], str], others: Sequence[str]
) -> Callable[[Item, Context], Awaitable[Any]]:
    target = next((o for o in others if o != name), name)

    async def play(inp: Item, ctx: Context) -> Any:
        await asyncio.sleep(0)  # let the journal commit what was decided so far
        _, key, _, _ = ctx.attempt_key.split(":")
        move = script.get((name, _index(key), ctx.attempt), "valid")
        if move == "invalid":
            return {"n": f"{inp.n}?", "tag": name}
        if move == "raise":
            raise RuntimeError(f"{name} fell over on {key}")
        if move == "scope":
            raise OutOfScope(f"{key} is not for {name}")
        if move == "human":
            raise NeedsHuman(f"what should {name} do with {key}?")
        if move == "tool":
            await ctx.call_tool("stamp", n=inp.n)
        if move == "call_role":
            await ctx.call_tool(target, n=inp.n)  # refused: specialists never reach each other
        return Out(n=inp.n, tag=f"{name}:{key}")

    return play


def scripted_judge(name: str, script: dict[tuple[str, int, int], str]) -> Any:
    """An evaluator that rejects where the script gives it anything but a valid move."""

    async def judge(inp: EvaluationRequest, ctx: Context) -> Verdict:
        await asyncio.sleep(0)
        _, key, _, _ = ctx.attempt_key.split(":")
        item = key.split("#")[0]
        if script.get((name, _index(item), ctx.attempt), "valid") == "valid":
            return Verdict(accept=True)
        return Verdict(accept=False, critique=f"{name} rejects {item}")

    return judge


def _card(spec: RoleSpec, function: Any, fallback: str | None = None) -> Role:
    return Role(
        name=spec.name,
        purpose="Do the scripted thing.",
        input=Item,
        output=Out,
        function=function,
        tools=[stamp],
        max_attempts=spec.max_attempts,
        budget=None if spec.dispatch_calls is None else Budget(tool_calls=spec.dispatch_calls),
        run_budget=None if spec.run_calls is None else Budget(tool_calls=spec.run_calls),
        fallback=fallback,
    )


def _elements(phase: PhaseSpec, previous: str | None) -> Any:
    count = phase.items or 0
    if phase.over_previous and previous is not None:
        return lambda run: [o.n for o in run.outputs(previous)][:count]
    return lambda run: list(range(count))


def _single_input(previous: str | None) -> Any:
    if previous is None:
        return lambda run: Item(n=run.input.n)
    return lambda run: Item(n=len(run.outputs(previous)))


def child_workflow(
    index: int, spec: ChildSpec, script: dict[tuple[str, int, int], str]
) -> Workflow:
    name = f"c{index}"
    role = _card(
        RoleSpec(name, spec.max_attempts, None, None), scripted_function(name, script, [name])
    )

    def result(run: RunView) -> Out:
        return Out(n=run.input.n, tag=",".join(o.tag for o in run.outputs("q")))

    phase = Phase(
        name="q",
        role=name,
        input=(lambda run, n: Item(n=n)) if spec.items is not None else (lambda run: run.input),
        over=None if spec.items is None else (lambda run: list(range(spec.items or 0))),
        strategy=Strategy.BEST_EFFORT,
    )
    return Workflow(name=f"child{index}", input=Item, roles=[role], phases=[phase], result=result)


def build(plan: Plan) -> Workflow:
    parent_names = [p.role.name if p.child is None else f"t{p.index}" for p in plan.phases]
    parent_names += [p.fallback.name for p in plan.phases if p.fallback]
    roles: list[Role] = []
    phases: list[Phase] = []
    previous: str | None = None
    for p in plan.phases:
        if p.child is not None:
            team = child_workflow(p.index, p.child, plan.script).as_role(
                name=f"t{p.index}",
                purpose="Do it as a team.",
                output=Out,
                tools=[stamp],
                budget=None
                if p.child.carve_calls is None
                else Budget(tool_calls=p.child.carve_calls),
                max_attempts=p.child.max_attempts,
            )
            roles.append(team)
            role_name = team.name
        else:
            fallback = p.fallback.name if p.fallback else None
            play = scripted_function(p.role.name, plan.script, parent_names)
            roles.append(_card(p.role, play, fallback))
            if p.fallback is not None:
                roles.append(
                    _card(p.fallback, scripted_function(p.fallback.name, plan.script, parent_names))
                )
            role_name = p.role.name
        extra: dict[str, Any] = {}
        if p.evaluated:
            judge = f"e{p.index}"
            roles.append(
                Role(
                    name=judge,
                    purpose="Judge the scripted thing.",
                    input=EvaluationRequest,
                    output=Verdict,
                    function=scripted_judge(judge, plan.script),
                )
            )
            extra["evaluator"] = judge
        if p.strategy is Strategy.RETRY:
            extra["retries"] = p.retries
        if p.strategy is Strategy.QUORUM:
            extra["quorum"] = p.quorum
        phases.append(
            Phase(
                name=p.name,
                role=role_name,
                over=None if p.items is None else _elements(p, previous),
                input=(lambda run, n: Item(n=n))
                if p.items is not None
                else _single_input(previous),
                strategy=p.strategy,
                concurrency=p.concurrency,
                **extra,
            )
        )
        previous = p.name
    return Workflow(
        name="generated",
        input=Item,
        roles=roles,
        phases=phases,
        budget=Budget(steps=plan.steps, tool_calls=plan.tool_calls),
        max_steps=MAX_STEPS,
        max_escalations=plan.max_escalations,
        on_budget_exhausted=plan.on_exhausted,  # type: ignore[arg-type]
    )


# a store that remembers the order of everything written ------------------------------------------


Write = tuple[RunRecord | None, Event | None, Artifact | None, Card | None, str | None]


class RecordingStore(SQLiteStore):
    """An in-memory store that also logs every write, one entry per run record or event."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.writes: list[Write] = []
        self.commits: list[int] = [0]
        """Where each transaction ended, in `writes` (a cut can only fall between them)."""

    def create_run(self, run: RunRecord) -> None:
        super().create_run(run)
        self.writes.append((run, None, None, None, None))
        self.commits.append(len(self.writes))

    def append(
        self,
        events: Sequence[Event],
        artifacts: Sequence[Artifact] = (),
        cards: Sequence[Card] = (),
        status: tuple[str, str] | None = None,
        *,
        encoded: Sequence[str] | None = None,
        outbox: Sequence[OutboxEntry] = (),
    ) -> None:
        super().append(events, artifacts, cards, status, encoded=encoded, outbox=outbox)
        by_artifact = {a.id: a for a in artifacts}
        by_card = {c.id: c for c in cards}
        for event in events:
            self.writes.append(
                (
                    None,
                    event,
                    by_artifact.get(event.data.get("artifact_id", ""))
                    if event.kind is EventKind.ITEM_ACCEPTED
                    else None,
                    by_card.get(event.data.get("card_id", ""))
                    if event.kind is EventKind.CARD_CREATED
                    else None,
                    event.data["status"] if event.kind is EventKind.RUN_FINISHED else None,
                )
            )
        self.commits.append(len(self.writes))

    def committed_before(self, k: int) -> int:
        """Writes durable after a kill at write `k`: the transactions that ended by then."""
        return max(c for c in self.commits if c <= k)


def killed_at(writes: list[Write], k: int) -> SQLiteStore:
    """A store as a process killed right after write `k` would have left it."""
    store = SQLiteStore(":memory:")
    for record, event, artifact, card, status in writes[:k]:
        if record is not None:
            store.create_run(record)
        elif event is not None:
            store.append(
                [event],
                [artifact] if artifact else [],
                [card] if card else [],
                (event.run_id, status) if status else None,
            )
    return store


Entries = list[tuple[str, ...]]


def final_state(store: SQLiteStore) -> tuple[str, Entries, Entries]:
    record = store.run(RUN_ID)
    assert record is not None
    runs = [RUN_ID, *(r.run_id for r in store.runs(1000) if r.run_id != RUN_ID)]
    artifacts: Entries = sorted(
        (a.run_id, a.phase, a.item, a.role, json.dumps(a.content, sort_keys=True))
        for run in runs
        for a in store.artifacts(run)
    )
    # A card's note (why an item escalated) may word the reason differently after a restart;
    # it must still be there.
    cards: Entries = sorted(
        (c.run_id, c.phase, c.item, c.column.value, c.title, str(bool(c.note)))
        for c in store.cards()
    )
    return record.status, artifacts, cards


# invariants -------------------------------------------------------------------------------------


def check_invariants(plan: Plan, wf: Workflow, store: SQLiteStore) -> None:
    parent_roles = {r.name: r for r in wf.roles}
    for record in store.runs(1000):
        events = store.events(record.run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert payload_errors(events) == []  # every payload has its kind's keys
        assert record.status in TERMINAL
        assert events[-1].kind is EventKind.RUN_FINISHED
        top = record.run_id == RUN_ID
        workflow = (
            wf
            if top
            else next(
                r.delegate for r in wf.roles if r.delegate and r.delegate.name == record.workflow
            )
        )
        assert isinstance(workflow, Workflow)  # a card's delegate is typed by a protocol
        roles = parent_roles if top else {r.name: r for r in workflow.roles}
        limits = events[0].data["budget"]
        finished = [e for e in events if e.kind is EventKind.DISPATCH_FINISHED]
        # Budgets hold: the run's, each role's over the run, each dispatch's.
        steps = sum(e.data["usage"]["steps"] for e in finished)
        calls = sum(e.data["usage"]["tool_calls"] for e in finished)
        assert steps <= min(limits["steps"] or MAX_STEPS, workflow.max_steps)
        if limits["tool_calls"] is not None:
            assert calls <= limits["tool_calls"]
        for name, role in roles.items():
            mine = [e for e in finished if e.role == name]
            if role.run_budget is not None and role.run_budget.tool_calls is not None:
                assert (
                    sum(e.data["usage"]["tool_calls"] for e in mine) <= role.run_budget.tool_calls
                )
            if role.budget is not None and role.budget.tool_calls is not None:
                assert all(e.data["usage"]["tool_calls"] <= role.budget.tool_calls for e in mine)
        # Hub and spoke: only the foreman dispatches, and only roles of this workflow.
        assert {e.role for e in events if e.kind is EventKind.DISPATCH_STARTED} <= set(roles)
        for e in events:
            if e.kind is EventKind.TOOL_CALLED:
                assert e.data["tool"] == "stamp"
            if e.kind is EventKind.TOOL_REFUSED:
                assert e.data["tool"] in roles and "another role" in e.data["reason"]
        # Escalations stay under the cap.
        escalated = sum(e.kind is EventKind.ITEM_ESCALATED for e in events)
        assert escalated <= workflow.max_escalations
        # Nothing invalid was accepted.
        for artifact in store.artifacts(record.run_id):
            Out.model_validate_json(json.dumps(artifact.content), strict=True)
            assert artifact.role in roles


def check_sub_runs_are_recorded_after_their_dispatch(writes: list[Write]) -> None:
    """No kill can leave a sub-run that no parent journal knows about: the parent's
    `dispatch.started` for the item is written before the sub-run's record."""
    started: set[tuple[str, str | None, int | None]] = set()
    for record, event, *_ in writes:
        if event is not None and event.kind is EventKind.DISPATCH_STARTED:
            started.add((event.run_id, event.item, event.attempt))
        if record is not None and record.parent_run is not None:
            attempt = int(record.run_id.rsplit(".", 1)[1])
            assert (record.parent_run, record.parent_item, attempt) in started, record.run_id


def check_no_finished_dispatch_runs_again(store: SQLiteStore) -> None:
    """A dispatch whose end was durable before the kill is not dispatched again by a resume:
    its outcome (and what it spent) stands."""
    for record in store.runs(1000):
        events = store.events(record.run_id)
        resumed = [n for n, e in enumerate(events) if e.kind is EventKind.RUN_RESUMED]
        if not resumed:
            continue
        before, after = events[: resumed[0]], events[resumed[0] :]
        ended = {(e.item, e.attempt) for e in before if e.kind is EventKind.DISPATCH_FINISHED}
        again = {(e.item, e.attempt) for e in after if e.kind is EventKind.DISPATCH_STARTED}
        assert not ended & again, (record.run_id, ended & again)


def run_plan(plan: Plan) -> tuple[Workflow, RecordingStore]:
    wf = build(plan)
    store = RecordingStore()
    result = asyncio.run(Foreman(wf, store).run({"n": 5}, run_id=RUN_ID))
    assert result.status in TERMINAL
    assert result.state.usage.steps <= MAX_STEPS
    return wf, store


EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "600"))


# The per-test time-out grows with the number of examples (~40 ms each here, 0.2 s allowed).
@pytest.mark.timeout(60 + EXAMPLES // 5)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    plan=plans(),
    cuts=st.lists(st.floats(0, 1), min_size=1, max_size=3),
    # Small slices make the journal write at (nearly) every checkpoint inside a loop tick, so
    # kills also land there; 1,024 is the default.
    flush_events=st.sampled_from([1, 2, 5, 1024]),
)
def test_invariants_hold_and_resume_after_any_kill_gives_the_same_end(
    plan: Plan, cuts: list[float], flush_events: int
) -> None:
    default = writer.FLUSH_EVENTS
    writer.FLUSH_EVENTS = flush_events
    try:
        check_plan(plan, cuts)
    finally:
        writer.FLUSH_EVENTS = default


def check_plan(plan: Plan, cuts: list[float]) -> None:
    wf, store = run_plan(plan)
    check_invariants(plan, wf, store)
    check_sub_runs_are_recorded_after_their_dispatch(store.writes)
    want = final_state(store)
    total = len(store.writes)
    for cut in cuts:
        k = max(1, store.committed_before(round(cut * total)))  # write 1 records the run
        crashed = killed_at(store.writes, k)
        resumed = asyncio.run(Foreman(build(plan), crashed).resume(RUN_ID))
        assert resumed.status in TERMINAL
        assert final_state(crashed) == want, f"killed after write {k} of {total}"
        check_invariants(plan, wf, crashed)
        check_no_finished_dispatch_runs_again(crashed)
        crashed.close()
    store.close()
