"""A routed phase: a router role decides each next action, and the foreman applies it.

Each turn the router (an item of the phase ``PHASE:route`` keyed ``PHASE:route[TURN]``) gets a
bounded view of the run (`_route_check.router_view`) and returns a `Route`; the decision is
checked (`_route_check.check_decision`) as part of its ladder, so an invalid one is retried
with every error as the correction, and a valid one is journaled (`router.decided`). A dispatch
runs as a step ``PHASE[sN]`` on its role's ladder, ledger and journal, like a one-step plan; a
finish accepts the result as the item ``PHASE[result]``; an escalation waits for a person's
answer (the item ``PHASE:ask[TURN]``); an abort fails the phase.

Everything is decided from the fold (`RouteState` and the items), so a resumed run runs this
same code: a decided turn is not asked again, and an accepted step does not run again.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from pydantic import BaseModel

from hubspoke.events import EventKind, PhaseFinished, RouterDecided
from hubspoke.handoff import validate_handoff
from hubspoke.journal.state import WAITING_FOR_PEOPLE
from hubspoke.phases import Phase
from hubspoke.plans import PlanStep
from hubspoke.router import Result, Route
from hubspoke.work import Brief

from . import _events
from ._ladder import Halt, OutputCheck, run_item
from ._plan_next import resolve_input
from ._reviewed import IN_REVIEW, SKIPPED_AT_REVIEW, chooser_phase, reviewed_status, step_key
from ._route_check import Step, check_decision, finish_value, router_brief, router_view
from ._run import Run, Wiring
from ._start import FRESH, start_of

__all__ = ["RESULT", "router_phase", "run_routed"]

RESULT = "result"
"""The step id of a routed phase's finish result: ``run.step(PHASE, "result")``."""


def router_phase(name: str) -> str:
    """The phase the router's items of routed phase `name` belong to."""
    return f"{name}:route"


def _steps(run: Run, phase: Phase, decisions: list[RouterDecided]) -> list[Step]:
    """The phase's steps so far, from its decisions and their items. Behind a review gate, a
    step's output is there only once a person approved (or amended) it: until then its status
    is ``review`` (``skipped`` once skipped) and the router sees no note of it."""
    found = []
    for d in decisions:
        if d["action"] != "dispatch":
            continue
        sid = d.get("step", "")
        key = step_key(phase.name, sid)
        item = run.state.items.get(key)
        output, aid, status, reason = None, "", "new", ""
        if item is not None:
            status = reviewed_status(run.state, phase, key, item.status)
            reason = item.reason
            if status == "accepted":
                aid = run.view.accepted(phase.name, key)[0]
                output = run.view.step(phase.name, sid)  # the shown (approved) output
            elif status == IN_REVIEW:
                reason = "its output waits for a person's review"
            elif status == "skipped" and item.status == "accepted":
                reason = SKIPPED_AT_REVIEW
        found.append(
            Step(
                id=sid,
                role=d.get("role", ""),
                input=d.get("input", {}),
                status=status,
                reason=reason,
                artifact=aid,
                output=output,
            )
        )
    return found


def _task(run: Run, phase: Phase) -> dict[str, Any]:
    task = phase.input(run.view)
    if isinstance(task, BaseModel):
        dumped: dict[str, Any] = task.model_dump(mode="json")
        return dumped
    return task if isinstance(task, dict) else {"task": task}


async def run_routed(wiring: Wiring, run: Run, phase: Phase) -> None:
    """Run a routed phase to its verdict (or until the run stops)."""
    state = run.state
    name = phase.name
    run.journal.emit(EventKind.PHASE_STARTED, phase=name, data={"items": 0, "concurrency": 1})
    run.view.select(name, [step_key(name, RESULT)])
    turns = state.phases.get(router_phase(name))
    if turns is None or turns.status != "running":
        run.journal.emit(EventKind.PHASE_STARTED, phase=router_phase(name), data={"items": 0})
    while run.stop is None:
        route = state.routes.get(name)
        decisions = route.decisions if route is not None else []
        last = decisions[-1] if decisions else None
        if last is not None and last["action"] == "dispatch":
            sid = last.get("step", "")
            item = state.items.get(step_key(name, sid))
            if item is None or start_of(item, wiring.ladders[last.get("role", "")]) is not None:
                await _run_step(wiring, run, phase, decisions, last)
                if run.stop is not None:
                    return
                item = state.items.get(step_key(name, sid))
            # Run now or before (escalated, then resumed for another decision): the router
            # decides again only once a person answered or skipped the step.
            if item is None or item.status in WAITING_FOR_PEOPLE:
                why = f"phase {name!r}: step {sid!r} waits for a person"
                _end(run, phase, decisions, "waiting", why)
                return
        elif last is not None and last["action"] == "escalate":
            ask = state.items.get(f"{name}:ask[{last['turn']}]")
            if ask is None:  # a crash fell between the decision and the escalation
                if not _ask(wiring, run, phase, last):
                    return
                ask = state.items.get(f"{name}:ask[{last['turn']}]")
            # Answered or skipped by a person: the router decides again (it sees the answer).
            if ask is not None and ask.status not in ("answered", "skipped"):
                why = f"phase {name!r}: the router asks a person: {ask.reason}"
                _end(run, phase, decisions, "waiting", why)
                return
        elif last is not None:  # finish or abort, decided before a crash
            _apply_end(wiring, run, phase, decisions, last)
            return
        if phase.review_waits and (pending := _in_review(run, phase, decisions)):
            # The router decides on what people approved: every card first.
            why = f"phase {name!r}: step(s) {', '.join(pending)} wait for a person's review"
            _end(run, phase, decisions, "waiting", why)
            return
        turn = len(decisions) + 1
        decision = await _decide(wiring, run, phase, decisions, turn)
        if decision is None:
            return
        decided = _journal(run, phase, decision, turn, len(_steps(run, phase, decisions)))
        decisions = [*decisions, decided]
        if decided["action"] == "escalate":
            if not _ask(wiring, run, phase, decided):
                return
        elif decided["action"] in ("finish", "abort"):
            _apply_end(wiring, run, phase, decisions, decided, decision)
            return


def _in_review(run: Run, phase: Phase, decisions: list[RouterDecided]) -> list[str]:
    """The steps whose review card is undecided (in review or parked)."""
    return [s.id for s in _steps(run, phase, decisions) if s.status == IN_REVIEW]


def _ask(wiring: Wiring, run: Run, phase: Phase, decided: RouterDecided) -> bool:
    """Escalate the router's question to a person (within the workflow's escalation cap)."""
    assert phase.route_by is not None
    key = f"{phase.name}:ask[{decided['turn']}]"
    question = decided.get("question", "")
    return _events.escalate(wiring, run, phase, phase.route_by, key, question)


def _answers(run: Run, phase: str, decisions: list[RouterDecided]) -> list[str]:
    said = []
    for d in decisions:
        item = run.state.items.get(f"{phase}:ask[{d['turn']}]")
        if d["action"] == "escalate" and item is not None and item.answer:
            said.append(f"{d.get('question', '')} -> {item.answer}")
    return said


async def _decide(
    wiring: Wiring, run: Run, phase: Phase, decisions: list[RouterDecided], turn: int
) -> Route | None:
    """The router's checked decision for `turn`, or None if the phase ended (or the run is
    stopping) without one."""
    assert phase.route_by is not None
    state, name = run.state, phase.name
    key = f"{router_phase(name)}[{turn}]"
    steps = _steps(run, phase, decisions)
    try:
        task = _task(run, phase)
    except Exception as e:
        _end(run, phase, decisions, "failed", f"input() raised {type(e).__name__}: {e}")
        return None
    view = router_view(
        task,
        [wiring.roles[r] for r in phase.roles],
        steps,
        keep=phase.keep_steps,
        max_steps=phase.max_steps,
        answers=_answers(run, name, decisions),
    ).model_dump(mode="json")
    router = chooser_phase(
        phase, router_phase(name), phase.route_by, route_by=None, input=lambda _run: view
    )
    item = state.items.get(key)
    if item is None or item.status != "accepted":

        def errors(output: BaseModel) -> list[dict[str, Any]]:
            assert isinstance(output, Route)
            return check_decision(
                output,
                roles=wiring.roles,
                allowed=list(phase.roles),
                steps=steps,
                max_steps=phase.max_steps,
                returns=phase.returns,
            )

        start = FRESH if item is None else start_of(item, wiring.ladders[phase.route_by])
        if start is not None:
            await run_item(
                wiring,
                run,
                router,
                0,
                key,
                None,
                1,
                start,
                Halt(),
                brief=router_brief(phase, wiring.roles[phase.route_by].purpose),
                check=OutputCheck(name, errors, router=True),
            )
    item = state.items.get(key)
    if item is None or item.status != "accepted":
        if run.stop is not None:
            return None
        ended = "missing" if item is None else item.status
        waits = ended in WAITING_FOR_PEOPLE
        why = f"phase {name!r}: its router {phase.route_by!r} made no valid decision " + (
            "and waits for a person" if waits else f"({item.reason if item else ended})"
        )
        _end(run, phase, decisions, "waiting" if waits else "failed", why)
        return None
    decision = run.view.accepted(router.name, key)[1]
    assert isinstance(decision, Route)
    return decision


def _journal(run: Run, phase: Phase, decision: Route, turn: int, steps: int) -> RouterDecided:
    data: RouterDecided = {"turn": turn, "action": decision.action}
    if decision.action == "dispatch":
        data |= {"step": f"s{steps + 1}", "role": decision.role, "input": decision.input}
        if decision.objective:
            data["objective"] = decision.objective
    elif decision.action == "escalate":
        data["question"] = decision.question
    elif decision.action == "abort":
        data["reason"] = decision.reason
    run.journal.emit(
        EventKind.ROUTER_DECIDED,
        phase=phase.name,
        role=phase.route_by,
        item=f"{router_phase(phase.name)}[{turn}]",
        data=data,
    )
    return data


async def _run_step(
    wiring: Wiring, run: Run, phase: Phase, decisions: list[RouterDecided], d: RouterDecided
) -> None:
    """Run the step a dispatch decided, on its role's ladder, with its references resolved."""
    sid, role = d.get("step", ""), d.get("role", "")
    key = step_key(phase.name, sid)
    steps = {s.id: s for s in _steps(run, phase, decisions)}
    outputs = {i: s.output for i, s in steps.items() if s.output is not None}
    step = PlanStep(id=sid, role=role, input=d.get("input", {}), objective="-")
    raw = resolve_input(step, outputs)
    worker = replace(
        phase,
        role=role,
        route_by=None,
        roles=(),
        input=lambda _run: raw,
        returns=None,
        outbox=False,  # with outbox=True, only the phase's result goes to the outbox
    )
    item = run.state.items.get(key)
    start = FRESH if item is None else start_of(item, wiring.ladders[role])
    if start is None:
        return
    brief = Brief(objective=d.get("objective", "") or wiring.roles[role].purpose)
    # A step whose ladder ends is left to the router (it sees why), not escalated to a person.
    await run_item(
        wiring,
        run,
        worker,
        0,
        key,
        None,
        1,
        start,
        Halt(),
        brief=brief,
        to_planner=True,
        decider="router",
    )


def _apply_end(
    wiring: Wiring,
    run: Run,
    phase: Phase,
    decisions: list[RouterDecided],
    decided: RouterDecided,
    decision: Route | None = None,
) -> None:
    """Apply a finish (accept its result) or an abort (fail the phase)."""
    name = phase.name
    if decided["action"] == "abort":
        why = f"phase {name!r}: the router aborted: {decided.get('reason', '')}"
        _end(run, phase, decisions, "failed", why)
        return
    key = step_key(name, RESULT)
    item = run.state.items.get(key)
    if item is None or item.status != "accepted":
        if decision is None:  # decided before a crash: read it back
            turn_key = f"{router_phase(name)}[{decided['turn']}]"
            found = run.view.accepted(router_phase(name), turn_key)[1]
            assert isinstance(found, Route)
            decision = found
        assert isinstance(decision, Route) and decision.action == "finish"
        value = finish_value(decision, _steps(run, phase, decisions))
        result = validate_handoff(phase.returns or Result, value)
        assert phase.route_by is not None
        # Behind a review gate the result is an output of the phase like its steps': carded,
        # and held from later phases and the run's result until a person approves it.
        _events.accept(run, phase, wiring.roles[phase.route_by], key, result)
    if phase.review_waits and reviewed_status(run.state, phase, key, "accepted") == IN_REVIEW:
        _end(run, phase, decisions, "waiting", f"phase {name!r}: its result waits for review")
        return
    _end(run, phase, decisions, "completed", "")


def _end(run: Run, phase: Phase, decisions: list[RouterDecided], status: str, why: str) -> None:
    """Journal the phase's verdict, and stop the run unless it completed."""
    steps = [d for d in decisions if d["action"] == "dispatch"]
    ended = [
        i.status
        for d in steps
        if (i := run.state.items.get(step_key(phase.name, d.get("step", "")))) is not None
    ]
    accepted = ended.count("accepted")
    data: PhaseFinished = {
        "status": status,
        "accepted": accepted,
        "escalated": sum(1 for s in ended if s in WAITING_FOR_PEOPLE),
        "missing": len(steps) - accepted,
    }
    if why:
        data["reason"] = why
    turns = run.state.phases.get(router_phase(phase.name))
    if turns is not None and turns.status == "running":
        ended = [
            i.status
            for k, i in run.state.items.items()
            if i.phase == router_phase(phase.name) and k.startswith(router_phase(phase.name))
        ]
        decided = ended.count("accepted")
        run.journal.emit(
            EventKind.PHASE_FINISHED,
            phase=router_phase(phase.name),
            data={
                "status": status,
                "accepted": decided,
                "escalated": sum(1 for s in ended if s in WAITING_FOR_PEOPLE),
                "missing": len(ended) - decided,
            },
        )
    run.journal.emit(EventKind.PHASE_FINISHED, phase=phase.name, data=data)
    if status != "completed":
        run.halt(status, why)
