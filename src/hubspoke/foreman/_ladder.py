"""One item's failure ladder: dispatch, decide the next step, apply it, until the item ends.

The same code runs a fresh item and a resumed one: a resume only gives the item a different
`Start` (where the journal left it), computed up front by `_start.start_of`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json

from hubspoke.budget import Budget
from hubspoke.events import EventKind, PlanRejected
from hubspoke.handoff import dump_json, handoff_json
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.phases import Phase, Strategy
from hubspoke.roles import Role
from hubspoke.work import Brief

from . import _events
from ._dispatch import Request, dispatch
from ._evaluation import Unjudged, judge
from ._gates import gate_open
from ._run import Run, Wiring
from ._start import Start
from ._steps import (
    Accept,
    Escalate,
    Fallback,
    Position,
    Recorded,
    Refusal,
    Retry,
    Step,
    Stop,
    Stuck,
    Wait,
    advance,
    decide,
)
from ._validation import (
    MAX_JSON_DEPTH,
    fingerprint,
    format_errors,
    validate_journaled,
    validation_errors,
)

__all__ = ["EndStep", "Halt", "OutputCheck", "end_step", "run_item"]


@dataclass(frozen=True, slots=True)
class OutputCheck:
    """A check of a valid output beyond its schema (a planner's plan against the workflow):
    its errors make the output invalid, journaled as `plan.rejected` under `phase`, and the
    role's ladder retries with all of them as the correction."""

    phase: str
    errors: Callable[[BaseModel], list[dict[str, Any]]]
    """The output's errors (``loc``, ``msg``, ``type``), empty if it passes."""
    router: bool = False
    """A router's decision (`router.rejected`), not a plan (`plan.rejected`)."""


class Halt:
    """A fail-fast phase's flag: set once one of its items ends without an output."""

    __slots__ = ("set",)

    def __init__(self, value: bool = False) -> None:
        self.set = value


EndStep = Callable[[Wiring, Run, Phase, Role, str, Step, Halt], None]
"""Applies the step that ends an item's ladder in this session (`end_step`, by default)."""


def _request(
    wiring: Wiring,
    run: Run,
    phase: Phase,
    index: int,
    key: str,
    element: Any,
    total: int,
    given: dict[str, Any] | None = None,
    brief: Brief | None = None,
) -> Request | str:
    """The item's validated input and brief, or why it cannot be dispatched. `given`: a
    corrected input a person gave, used instead of the phase's `input`."""
    first = wiring.roles[phase.role]
    try:
        if given is not None:
            raw: Any = given
        else:
            raw = phase.input(run.view, element) if phase.over else phase.input(run.view)
    except Exception as e:
        return f"input() raised {type(e).__name__}: {e}"
    # A hand-off is validated strictly, like any output: '900' does not become 900.
    try:
        item_input, text, value = handoff_json(first.input, raw)
    except ValidationError as e:
        errors = validation_errors(e)
        return f"input for role {first.name!r} is invalid: {format_errors(errors)}"
    except Exception as e:  # user code in the schema (a validator) raised
        return f"input for role {first.name!r}: the schema raised {type(e).__name__}: {e}"
    input_json = dump_json(item_input)
    try:
        # The text validated is usually the text journaled (no alias, no validator that
        # changes a value): its value was read as it was checked.
        input_dict: dict[str, Any] = (
            value
            if value is not None and input_json.encode() == text
            else from_json(input_json)  # the journal's depth limit
        )
    except ValueError as e:  # nested past MAX_JSON_DEPTH
        return (
            f"input for role {first.name!r} cannot be journaled: {e} (the journal holds JSON "
            f"values nested up to {MAX_JSON_DEPTH} levels)"
        )
    if brief is None:
        brief = wiring.workflow.brief(phase, first, index if phase.over else None, total)
    return Request(phase, key, item_input, input_json, input_dict, brief)


async def run_item(
    wiring: Wiring,
    run: Run,
    phase: Phase,
    index: int,
    key: str,
    element: Any,
    total: int,
    start: Start,
    halt: Halt,
    *,
    brief: Brief | None = None,
    check: OutputCheck | None = None,
    to_planner: bool = False,
    decider: str = "planner",
    end: EndStep | None = None,
) -> None:
    """Walk one item's ladder from `start` until it is accepted, escalated or failed, or the
    run stops. `brief` replaces the one the workflow makes (a plan's step has its own);
    `check` checks every valid output further (a planner's plan); with `to_planner`, an item
    that would escalate fails instead, "left to the `decider`", for its planner to replan (a
    step of a plan with replans left) or its router to decide again (a routed step)."""
    request = _request(wiring, run, phase, index, key, element, total, start.input, brief)
    if isinstance(request, str):
        run.journal.emit(
            EventKind.ITEM_FAILED,
            phase=phase.name,
            role=phase.role,
            item=key,
            attempt=None,
            data={"reason": request},
        )
        halt.set = halt.set or phase.strategy is Strategy.FAIL_FAST
        return
    ladder = wiring.ladders[phase.role]
    position = start.position
    pending, redo, candidate = start.pending, start.redo, start.candidate
    last_reason = ""
    while True:
        role = ladder[position.rung]
        result: Outcome | Recorded | Refusal | Stuck | Unjudged
        if pending is not None:
            result, pending = pending, None
        else:
            # A stopping run dispatches nothing more, except what it already had under way.
            if run.stop is not None and redo is None and candidate is None:
                return
            if role.approve_before_dispatch and not gate_open(wiring, run, phase, role, key):
                return  # it waits at the human gate for a person's approval
            result = await _attempt(
                wiring, run, request, role, position, start, redo, candidate, check
            )
            redo = candidate = None
            if isinstance(result, Stuck) and last_reason:
                result = Stuck(result.fingerprint, last_reason)
        step: Step = (
            Escalate(result.reason)
            if isinstance(result, Unjudged)
            else decide(position, result, ladder)
        )
        if isinstance(step, Wait):
            position = advance(position, step)
            await _events.wait(
                run, phase.name, role.name, key, position.attempt, step, position.waits
            )
            continue
        if isinstance(step, Retry | Fallback):
            if isinstance(step, Retry):
                run.journal.emit(
                    EventKind.ITEM_RETRY,
                    phase=phase.name,
                    role=role.name,
                    item=key,
                    attempt=position.attempt + 1,
                    data={"correction": step.correction},
                )
            else:
                run.journal.emit(
                    EventKind.ITEM_FALLBACK,
                    phase=phase.name,
                    role=role.name,
                    item=key,
                    attempt=None,
                    data={"to": step.to, "reason": step.reason},
                )
            position, last_reason = advance(position, step), step.reason
            continue
        if to_planner and isinstance(step, Escalate) and run.stop is None:
            run.journal.emit(
                EventKind.ITEM_FAILED,
                phase=phase.name,
                role=role.name,
                item=key,
                attempt=None,
                data={"reason": f"left to the {decider}: {step.reason}"},
            )
            return
        (end or end_step)(wiring, run, phase, role, key, step, halt)
        return


async def _attempt(
    wiring: Wiring,
    run: Run,
    request: Request,
    role: Role,
    position: Position,
    start: Start,
    redo: Budget | None,
    candidate: dict[str, Any] | None,
    check: OutputCheck | None = None,
) -> Outcome | Refusal | Stuck | Unjudged:
    """One attempt: the stuck check, the dispatch, and the evaluator's judgement."""
    fp = fingerprint(role.name, request.input_json, position.correction)
    phase = request.phase
    output: BaseModel | None = None
    if candidate is not None:
        # Journaled by field name; validated strictly as any output; dispatched again if it no
        # longer validates (the schema changed in a compatible way, say).
        output = validate_journaled(role.output, candidate)
    if output is None:
        # A dispatch in flight at the crash runs again whatever was learnt since: in the
        # uncrashed run it had started before (a sibling's failure may have made it "stuck").
        if redo is None and run.state.is_stuck(fp):
            run.journal.emit(
                EventKind.ITEM_STUCK,
                phase=phase.name,
                role=role.name,
                item=request.key,
                attempt=position.attempt,
                data={"fingerprint": fp},
            )
            return Stuck(fp)
        judged = phase.evaluator is not None or check is not None
        outcome = await dispatch(
            wiring,
            run,
            request,
            role,
            position,
            fp,
            redo=redo,
            redo_leftover_of=start.redo_leftover_of if redo is not None else None,
            judged=judged,
        )
        if not judged or not isinstance(outcome, Outcome) or outcome.output is None:
            return outcome
        output = outcome.output
    if check is not None:
        errors = check.errors(output)
        if errors:
            what = "invalid decision" if check.router else "invalid plan"
            rejected = Outcome(OutcomeKind.INVALID, errors=errors, message=what)
            data: PlanRejected = {
                "errors": errors,
                "fingerprint": fp,
                "correction": rejected.correction(),
            }
            if check.router:
                run.journal.emit(
                    EventKind.ROUTER_REJECTED,
                    phase=check.phase,
                    role=role.name,
                    item=request.key,
                    attempt=position.attempt,
                    data=data,
                )
            else:
                run.journal.emit(
                    EventKind.PLAN_REJECTED,
                    phase=check.phase,
                    role=role.name,
                    item=request.key,
                    attempt=position.attempt,
                    data=data,
                )
            return rejected
        if phase.evaluator is None:
            return Outcome(OutcomeKind.OUTPUT, output=output)
    return await judge(wiring, run, request, role.name, position.attempt, output, fp)


def end_step(
    wiring: Wiring, run: Run, phase: Phase, role: Role, key: str, step: Step, halt: Halt
) -> None:
    """Apply a step that ends the item's ladder in this session."""
    if isinstance(step, Accept):
        _events.accept(run, phase, role, key, step.output)
    elif isinstance(step, Stop):
        run.halt(wiring.budget_state(), f"budget: {step.reason}")
    elif isinstance(step, Escalate):
        # A stopping run escalates nothing more, so that a resumed run ends as the uncrashed one.
        if run.stop is not None:
            return
        if phase.strategy is Strategy.RETRY:
            item = run.state.items.get(key)
            if item is not None and item.rounds < phase.retries:
                run.journal.emit(
                    EventKind.ITEM_REQUEUED,
                    phase=phase.name,
                    role=role.name,
                    item=key,
                    attempt=None,
                    data={"reason": step.reason, "round": item.rounds + 1},
                )
                return
        if phase.strategy is Strategy.FAIL_FAST:
            halt.set = True
        _events.escalate(wiring, run, phase, role.name, key, step.reason)
    else:  # Retry and Fallback go on in the loop
        raise AssertionError(f"not an ending step: {step!r}")
