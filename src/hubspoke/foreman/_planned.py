"""A planned phase: ask its planner for a plan, check it, run its steps, replan on a stall.

Everything is decided from the fold: the phase's accepted plans and stalls (`PlanState`) and
its items say whether a plan is due (and which revision), which steps can start (`_plans.
next_steps`) and what a replanning planner is told. A resumed run therefore runs this same code:
a plan accepted before a crash is not asked for again, and accepted steps do not run again.

The planner is an item of the phase ``PHASE:plan`` keyed ``PHASE:plan[REVISION]``; its output is
checked (`_plans.check_plan`) as part of its ladder, so an invalid plan is retried with every
error as the correction. Each step is an item ``PHASE[ID]`` of the phase itself, on the same
ladder, ledger and journal as any item.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from hubspoke.events import EventKind, PhaseFinished
from hubspoke.journal.state import WAITING_FOR_PEOPLE, PlanState
from hubspoke.phases import Phase, Strategy
from hubspoke.plans import Plan, PlanStep
from hubspoke.runview import RunView
from hubspoke.work import Brief

from ._ladder import Halt, OutputCheck, run_item
from ._plan_next import Done, Ready, Stalled, Waiting, next_steps, resolve_input, stall_account
from ._plans import check_plan, dependencies, planner_brief
from ._reviewed import IN_REVIEW, SKIPPED_AT_REVIEW, chooser_phase, reviewed_status, step_key
from ._run import Run, Wiring
from ._start import FRESH, Start, start_of
from ._steps import PhaseCounts, Position, phase_verdict

__all__ = ["plan_order", "planner_phase", "run_planned"]


def planner_phase(name: str) -> str:
    """The phase the planner's items of planned phase `name` belong to."""
    return f"{name}:plan"


def plan_order(view: RunView, phase: str, plans: PlanState) -> None:
    """Let the run view give the planned phase's outputs in plan order (a step planned again
    once, where it was first planned)."""
    view.select(phase, list(dict.fromkeys(step_key(phase, s["id"]) for s in plans.steps)))


async def run_planned(wiring: Wiring, run: Run, phase: Phase) -> None:
    """Run a planned phase to its verdict (or until the run stops)."""
    state = run.state
    empty = PlanState(phase.name)
    plans = state.plans.get(phase.name, empty)
    run.journal.emit(
        EventKind.PHASE_STARTED,
        phase=phase.name,
        data={"items": len(plans.steps), "concurrency": phase.max_parallel},
    )
    while run.stop is None:
        plans = state.plans.get(phase.name, empty)
        current = plans.current
        if current is None:
            if not await _plan(wiring, run, phase, plans):
                return
            continue
        plan_order(run.view, phase.name, plans)
        steps = [PlanStep.model_validate(s) for s in current["steps"]]
        nxt = await _run_steps(wiring, run, phase, plans, steps)
        if run.stop is not None:
            return
        if isinstance(nxt, Stalled) and len(plans.stalls) < phase.max_replans:
            # A step planned again (it never started) is listed once, as planned last.
            latest = {s["id"]: s for s in plans.steps}
            everything = [PlanStep.model_validate(s) for s in latest.values()]
            status, reasons = _statuses(run, phase, everything)
            # A person's answer is waited for before a replan, as a review is: a replan around
            # a step escalated at its gate would leave its card open and the run waiting for an
            # item that no plan runs. (The ladder leaves a step's own failure to the planner.)
            asked = [s.id for s in steps if status.get(s.id) == "escalated"]
            if asked:
                _verdict(
                    run, phase, steps, Waiting(f"step(s) {', '.join(asked)} wait for a person")
                )
                return
            run.journal.emit(
                EventKind.PLAN_STALLED,
                phase=phase.name,
                role=phase.plan_by,
                item=current["item"],  # the planner's item that made the plan
                data={
                    "revision": current["revision"],
                    "reason": nxt.reason,
                    "account": stall_account(everything, status, reasons, nxt.reason),
                },
            )
            continue
        _verdict(run, phase, steps, nxt)
        return


def _statuses(
    run: Run, phase: Phase, steps: list[PlanStep]
) -> tuple[dict[str, str], dict[str, str]]:
    """Each step's item status and reason, by step id (a step not started has none). Behind a
    review gate, an accepted step is ``accepted`` only once a person approved or amended it
    (`_reviewed.reviewed_status`): nothing else flows on to the steps that wait for it."""
    status: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for step in steps:
        key = step_key(phase.name, step.id)
        item = run.state.items.get(key)
        if item is not None:
            status[step.id] = reviewed_status(run.state, phase, key, item.status)
            if status[step.id] == "skipped" and item.status == "accepted":
                reasons[step.id] = SKIPPED_AT_REVIEW
            elif item.reason:
                reasons[step.id] = item.reason
    return status, reasons


async def _plan(wiring: Wiring, run: Run, phase: Phase, plans: PlanState) -> bool:
    """Get the phase's next plan from its planner (revision = plans so far + 1) and journal it
    (`plan.accepted`). Returns whether there is one; if not, the phase has ended (or the run
    is stopping)."""
    assert phase.plan_by is not None
    state = run.state
    revision = len(plans.plans) + 1
    name = planner_phase(phase.name)
    key = f"{name}[{revision}]"
    planner = chooser_phase(phase, name, phase.plan_by, plan_by=None, evaluator=None)
    item = state.items.get(key)
    if item is None or item.status != "accepted":
        # Kept: steps a new plan may reference, so only outputs a review gate let through.
        standing, _ = _statuses(run, phase, [PlanStep.model_validate(s) for s in plans.steps])
        kept = {s["id"]: s["role"] for s in plans.steps if standing.get(s["id"]) == "accepted"}
        used = {s["id"] for s in plans.steps if step_key(phase.name, s["id"]) in state.items} - set(
            kept
        )

        def errors(output: BaseModel) -> list[dict[str, Any]]:
            assert isinstance(output, Plan)
            return check_plan(
                output,
                roles=wiring.roles,
                allowed=list(phase.roles),
                kept=kept,
                used=used,
                max_steps=phase.max_steps,
                max_parallel=phase.max_parallel,
            )

        account = plans.stalls[-1]["account"] if plans.stalls else None
        start = (
            Start(Position(correction=account))
            if item is None
            else start_of(item, wiring.ladders[phase.plan_by])
        )
        if start is not None:
            # Its items: one planner item per plan asked for so far.
            run.journal.emit(EventKind.PHASE_STARTED, phase=name, data={"items": revision})
            await run_item(
                wiring,
                run,
                planner,
                0,
                key,
                None,
                1,
                start,
                Halt(),
                brief=planner_brief(phase, wiring.roles),
                check=OutputCheck(phase.name, errors),
            )
    item = state.items.get(key)
    if run.stop is not None and (item is None or item.status != "accepted"):
        return False
    ended = "missing" if item is None else item.status
    waits = ended in WAITING_FOR_PEOPLE
    if (planning := state.phases.get(name)) is not None and planning.status == "running":
        run.journal.emit(
            EventKind.PHASE_FINISHED,
            phase=name,
            data={
                "status": "completed" if ended == "accepted" else "waiting" if waits else "failed",
                "accepted": int(ended == "accepted"),
                "escalated": int(waits),
                "missing": int(ended != "accepted"),
            },
        )
    if item is None or item.status != "accepted":
        why = f"phase {phase.name!r}: its planner {phase.plan_by!r} made no valid plan " + (
            "and waits for a person" if waits else f"({item.reason if item else ended})"
        )
        status = "waiting" if waits else "failed"
        run.journal.emit(
            EventKind.PHASE_FINISHED, phase=phase.name, data={"status": status, "reason": why}
        )
        run.halt(status, why)
        return False
    plan = run.view.accepted(name, key)[1]
    assert isinstance(plan, Plan)
    run.journal.emit(
        EventKind.PLAN_ACCEPTED,
        phase=phase.name,
        role=phase.plan_by,
        item=key,
        data={
            "revision": revision,
            "item": key,
            "steps": [s.model_dump(mode="json") for s in plan.steps],
            "rationale": plan.rationale,
        },
    )
    return True


async def _run_steps(
    wiring: Wiring, run: Run, phase: Phase, plans: PlanState, steps: list[PlanStep]
) -> Ready | Done | Stalled | Waiting:
    """Run the plan's steps, each once its dependencies are accepted, up to
    `phase.max_parallel` at once, until it is done, stalled or waits for a person."""
    everything = {s["id"]: PlanStep.model_validate(s) for s in plans.steps}
    replans_left = len(plans.stalls) < phase.max_replans
    running: dict[str, asyncio.Task[None]] = {}
    tried: set[str] = set()
    try:
        while True:
            status, _ = _statuses(run, phase, list(everything.values()))
            for sid, st in status.items():
                if st == "gated" and sid not in tried:
                    status[sid] = "new"  # its gate is checked once a session
            nxt = next_steps(steps, status, running, review_waits=phase.review_waits)
            for sid in nxt.steps if isinstance(nxt, Ready) else ():
                if len(running) >= phase.max_parallel:
                    break
                if sid in tried:  # it ran in this session and did not end: not again
                    continue
                start = _start_of(wiring, run, phase.name, everything[sid])
                tried.add(sid)
                if start is None or (run.stop is not None and not start.under_way):
                    continue
                coro = _run_step(wiring, run, phase, everything, sid, start, replans_left)
                running[sid] = asyncio.create_task(coro)
            if not running:
                return nxt
            finished, _ = await asyncio.wait(running.values(), return_when=asyncio.FIRST_COMPLETED)
            for sid in [s for s, t in running.items() if t in finished]:
                running.pop(sid).result()  # an error in user code surfaces here
    finally:
        for task in running.values():
            task.cancel()
        for task in running.values():
            with contextlib.suppress(BaseException):
                await task


def _start_of(wiring: Wiring, run: Run, phase: str, step: PlanStep) -> Start | None:
    item = run.state.items.get(step_key(phase, step.id))
    return FRESH if item is None else start_of(item, wiring.ladders[step.role])


async def _run_step(
    wiring: Wiring,
    run: Run,
    phase: Phase,
    steps: dict[str, PlanStep],
    sid: str,
    start: Start,
    to_planner: bool,
) -> None:
    step = steps[sid]
    # `step` reads what the run view shows: behind a review gate, the approved (or amended)
    # output, never a held one (a step starts only once its dependencies' cards are decided).
    outputs = {d: run.view.step(phase.name, d) for d in dependencies(step)}
    raw = resolve_input(step, outputs)
    worker = replace(
        phase,
        role=step.role,
        plan_by=None,
        roles=(),
        input=lambda _run: raw,
        strategy=Strategy.BEST_EFFORT,
    )
    brief = Brief(
        objective=step.objective,
        scope=step.scope,
        output_format=step.output_format,
        siblings=step.siblings,
    )
    index = list(steps).index(sid)
    await run_item(
        wiring,
        run,
        worker,
        index,
        step_key(phase.name, sid),
        None,
        len(steps),
        start,
        Halt(),
        brief=brief,
        to_planner=to_planner,
    )


def _verdict(
    run: Run, phase: Phase, steps: list[PlanStep], nxt: Ready | Done | Stalled | Waiting
) -> None:
    """Journal the phase's verdict once its plan is done, waits for a person, or stalled with
    no replan left."""
    status_of, _ = _statuses(run, phase, steps)
    ended = list(status_of.values())
    accepted = ended.count("accepted") + ended.count(IN_REVIEW)  # accepted, reviewed or not
    escalated = sum(1 for s in ended if s in WAITING_FOR_PEOPLE)
    if isinstance(nxt, Done):
        status, why = "completed", ""
    elif isinstance(nxt, Waiting):
        status, why = "waiting", f"phase {phase.name!r}: {nxt.reason}"
    else:
        status, why = phase_verdict(
            phase.name,
            phase.strategy,
            None,
            PhaseCounts(len(steps), accepted, escalated, failed=ended.count("failed")),
        )
        if status != "completed":
            reason = nxt.reason if isinstance(nxt, Stalled) else "it cannot go on"
            why = (
                f"phase {phase.name!r}: the plan stalled ({reason}) with no replan left "
                f"(max_replans={phase.max_replans})"
            )
    data: PhaseFinished = {
        "status": status,
        "accepted": accepted,
        "escalated": escalated,
        "missing": len(steps) - accepted,
    }
    if why:
        data["reason"] = why
    run.journal.emit(EventKind.PHASE_FINISHED, phase=phase.name, data=data)
    if status != "completed":
        run.halt(status, why)
