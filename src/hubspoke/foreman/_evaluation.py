"""The phase's evaluator: a role that judges every valid output before it is accepted.

An evaluator that cannot judge (it raised, timed out, gave no verdict, its provider is down) is
not a rejection: the draft is kept, the writer spends no attempt, and the evaluator walks its
own failure ladder (retry with correction, its fallback). If it never judges, the item
escalates naming the evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from hubspoke.events import EventKind
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.phases import EvaluationRequest, Verdict
from hubspoke.roles import Role
from hubspoke.work import Brief

from . import _events
from ._dispatch import Request, dispatch
from ._run import Run, Wiring
from ._steps import (
    Escalate,
    Fallback,
    Position,
    Recorded,
    Refusal,
    Retry,
    Stop,
    Stuck,
    Wait,
    advance,
    decide,
)
from ._validation import fingerprint

__all__ = ["Unjudged", "judge"]


def _start(run: Run, key: str, ladder: tuple[Role, ...]) -> tuple[Position, bool, Recorded | None]:
    """Where the evaluator's ladder starts for this item, whether its first dispatch was in
    flight at a crash, and a throttled or unavailable end whose wait is not journaled yet.
    From the fold: a new evaluation starts at rung 0 with the attempt after the item's latest
    evaluator attempt (every evaluator dispatch of an item has its own attempt, so its own
    idempotency key); an evaluation under way at a crash goes on where its ladder stood, at the
    same attempt after a wait for its provider."""
    item = run.state.items.get(key)
    if item is None:
        return Position(), False, None
    if item.judge_role is None:
        return Position(attempt=item.judge_attempt + 1), False, None
    rung = next((n for n, r in enumerate(ladder) if r.name == item.judge_role), 0)
    waited = item.judge_waits > 0 or item.judge_waiting is not None
    attempt = item.judge_attempt if item.judge_open or waited else item.judge_attempt + 1
    position = Position(rung, item.judge_tries, attempt, item.judge_correction, item.judge_waits)
    pending = None
    if item.judge_waiting is not None:
        outcome, wait = item.judge_waiting
        pending = Recorded(OutcomeKind(outcome), None, f"{outcome} (before the restart)", wait)
    return position, item.judge_open, pending


@dataclass(frozen=True, slots=True)
class Unjudged:
    """The evaluator never judged: the item escalates with this reason."""

    reason: str


async def judge(
    wiring: Wiring,
    run: Run,
    request: Request,
    role: str,
    attempt: int,
    output: BaseModel,
    work_fingerprint: str,
) -> Outcome | Refusal | Unjudged:
    """Have the phase's evaluator judge `output`, the work of `role` on `request`.

    Returns:
        A valid ``output`` outcome if the evaluator accepts; an ``invalid`` outcome carrying its
        critique if it rejects (journaled as `evaluator.rejected`); `Unjudged` if its ladder
        ends without a verdict; a `Refusal` if the run's budget refused it or the run stops.
    """
    phase = request.phase
    assert phase.evaluator is not None
    ladder = wiring.ladders[phase.evaluator]
    question = EvaluationRequest(
        objective=request.brief.objective,
        input=request.input_dict,
        output=output.model_dump(mode="json"),
    )
    question_json = question.model_dump_json()
    question_dict: dict[str, Any] = question.model_dump(mode="json")
    evaluation = Request(
        phase,
        f"{request.key}#eval",
        question,
        question_json,
        question_dict,
        Brief(objective=f"judge the output of {request.key}"),
    )
    position, redo, pending = _start(run, request.key, ladder)
    first = True
    while True:
        if not first and run.stop is not None:
            return Refusal("run", "the run is stopping")
        evaluator = ladder[position.rung]
        fp = fingerprint(evaluator.name, question_json, position.correction)
        result: Outcome | Refusal | Stuck | Recorded
        # An evaluator dispatch in flight at a crash runs again whatever was learnt since.
        if pending is not None:  # its wait for the provider was not journaled: decide it
            result, pending = pending, None
        elif not (first and redo) and run.state.is_stuck(fp):
            run.journal.emit(
                EventKind.ITEM_STUCK,
                phase=phase.name,
                role=evaluator.name,
                item=evaluation.key,
                attempt=position.attempt,
                data={"fingerprint": fp},
            )
            result = Stuck(fp)
        else:
            result = await dispatch(wiring, run, evaluation, evaluator, position, fp)
        first = False
        if isinstance(result, Outcome) and isinstance(result.output, Verdict):
            verdict = result.output
            if verdict.accept:
                return Outcome(OutcomeKind.OUTPUT, output=output)
            critique = verdict.critique or "rejected"
            rejected = Outcome(OutcomeKind.INVALID, message=f"evaluator: {critique}")
            run.journal.emit(
                EventKind.EVALUATOR_REJECTED,
                phase=phase.name,
                role=role,
                item=request.key,
                attempt=attempt,
                data={
                    "critique": critique,
                    "evaluator": evaluator.name,
                    "fingerprint": work_fingerprint,
                    "correction": rejected.correction(),
                },
            )
            return rejected
        step = decide(position, result, ladder)
        if isinstance(step, Stop):
            assert isinstance(result, Refusal)
            return result
        if isinstance(step, Escalate):
            return Unjudged(f"evaluator {phase.evaluator!r} could not judge: {step.reason}")
        if isinstance(step, Wait):
            position = advance(position, step)
            await _events.wait(
                run,
                phase.name,
                evaluator.name,
                evaluation.key,
                position.attempt,
                step,
                position.waits,
            )
            continue
        if isinstance(step, Retry):
            run.journal.emit(
                EventKind.ITEM_RETRY,
                phase=phase.name,
                role=evaluator.name,
                item=evaluation.key,
                attempt=position.attempt + 1,
                data={"correction": step.correction},
            )
        elif isinstance(step, Fallback):
            run.journal.emit(
                EventKind.ITEM_FALLBACK,
                phase=phase.name,
                role=evaluator.name,
                item=evaluation.key,
                attempt=None,
                data={"to": step.to, "reason": step.reason},
            )
        else:  # a Verdict is the evaluator's only valid output
            raise AssertionError(f"unexpected step {step!r}")
        position = advance(position, step)
