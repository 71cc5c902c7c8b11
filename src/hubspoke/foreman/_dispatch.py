"""One dispatch: reserve, send the work item through the executor, settle, validate, journal.

The dispatch owns time: an outcome that comes back after its time-out or the run's deadline is
`timed_out`, whatever it says, and never accepted.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from hubspoke.budget import Allowance, Budget, Reservation, Shortfall, Usage
from hubspoke.events import DispatchFinished, EventKind, ModelRequested
from hubspoke.journal import Journal
from hubspoke.outcomes import WAITABLE, Outcome, OutcomeKind
from hubspoke.phases import Phase
from hubspoke.roles import Role
from hubspoke.specialists.context import Context
from hubspoke.specialists.trace import TRACE_KINDS
from hubspoke.work import Brief, WorkItem

from ._run import Run, Wiring
from ._steps import Position, Refusal
from ._subforeman import SubForeman
from ._tools import ToolLog
from ._validation import validate_output

__all__ = ["Request", "dispatch"]

_NOTHING = Usage()
_TRACE_KINDS = {kind: EventKind(kind) for kind in TRACE_KINDS}
"""A trace entry's kind is the kind of the event that journals it."""
# Outcomes that say something about the input itself: the same fingerprint again after one of
# these brings no new information. Failures and time-outs may be transient: their fingerprint is
# journaled too, and counted (`RunState.failed_fingerprints`), but tolerated a few times.
_INFORMATIVE = frozenset(
    {OutcomeKind.INVALID, OutcomeKind.SCOPE_VIOLATION, OutcomeKind.NEEDS_HUMAN}
)


class Request:
    """What one dispatch of an item is about: its phase, key, input and brief."""

    __slots__ = ("brief", "input", "input_dict", "input_json", "key", "phase")

    def __init__(
        self,
        phase: Phase,
        key: str,
        input: BaseModel,
        input_json: str,
        input_dict: dict[str, Any],
        brief: Brief,
    ) -> None:
        self.phase = phase
        self.key = key
        self.input = input
        self.input_json = input_json
        self.input_dict = input_dict
        self.brief = brief


async def dispatch(
    wiring: Wiring,
    run: Run,
    request: Request,
    role: Role,
    position: Position,
    fingerprint: str,
    *,
    redo: Budget | None = None,
    redo_leftover_of: str | None = None,
    judged: bool = False,
) -> Outcome | Refusal:
    """Dispatch `request` to `role` at `position`; return its validated outcome.

    Args:
        redo: the allowance a dispatch in flight at a crash had: it runs again the same way.
        redo_leftover_of: the account whose leftover sized that allowance, if one did.
        judged: the phase's evaluator will judge a valid output; it is journaled with
            `dispatch.finished` so that a kill during the evaluation costs only the evaluation.

    Returns:
        The outcome (``output`` only when valid against the role's schema and in time), or the
        ledger's `Refusal` when the run's or role's budget could not cover the dispatch.
    """
    journal = run.journal
    phase, key = request.phase.name, request.key
    reservation = run.ledger.reserve(role.name, redo or role.budget)
    if isinstance(reservation, Reservation) and redo_leftover_of is not None:
        # Given back to a dispatch that was in flight: sized as it was then.
        reservation.from_leftover = True
        reservation.leftover_of = "role" if redo_leftover_of == "role" else "run"
    if isinstance(reservation, Reservation) and run.deadline_passed():
        run.ledger.settle(reservation, _NOTHING)
        reservation = Shortfall("run", run.deadline_reason())
    if isinstance(reservation, Shortfall):
        run.journal.emit(
            EventKind.BUDGET_REFUSED,
            phase=phase,
            role=role.name,
            item=key,
            attempt=position.attempt,
            data={"reason": reservation.reason, "scope": reservation.scope},
        )
        return Refusal(reservation.scope, reservation.reason)
    attempt, correction = position.attempt, position.correction
    item = WorkItem(
        run_id=run.run_id,
        phase=phase,
        key=key,
        role=role.name,
        input=request.input,
        brief=request.brief,
        attempt=attempt,
        correction=correction,
    )
    allowance = Allowance(reservation.tokens, reservation.usd, reservation.tool_calls)
    announce = _Announce(journal, phase, role.name, key, attempt).announce
    once = role.name in run.tools_once
    ctx = Context(
        request.brief,
        attempt,
        correction,
        item.idempotency_key,
        allowance,
        run.tools[role.name],
        attempt_key=item.attempt_key,
        _roles=wiring.role_names,
        _announce=announce,
        _journal_tool=ToolLog(journal, phase, role.name, key, attempt) if once else None,
    )
    journal.emit(
        EventKind.DISPATCH_STARTED,
        phase=phase,
        role=role.name,
        item=key,
        attempt=attempt,
        data={
            "fingerprint": fingerprint,
            "correction": correction,
            "tries": position.tries,
            "input": request.input_dict,
            "reserved": {
                "tokens": reservation.tokens,
                "usd": reservation.usd,
                "tool_calls": reservation.tool_calls,
                "leftover": reservation.from_leftover,
                "leftover_of": reservation.leftover_of,
            },
        },
    )
    # About to wait for the specialist: a point where the journal may be cut. A sub-run is
    # recorded as it starts, so the dispatch that starts it is made durable first: no crash
    # can leave a sub-run that no parent journal knows about.
    journal.checkpoint(force=role.delegate is not None)
    timeout = wiring.timeouts[role.name]
    cut_by_deadline = False
    if run.deadline is not None:
        left = max(0.001, run.deadline - time.monotonic())
        cut_by_deadline = timeout is None or left < timeout
        timeout = left if cut_by_deadline else timeout
    started = time.monotonic()
    try:
        outcome = await wiring.executor.execute(wiring.specialists[role.name], item, ctx, timeout)
    finally:
        # Whatever the executor left running can no longer spend, call tools or trace (an
        # executor closes it itself as it returns: `Executor.execute`).
        if not ctx._live.closed:
            ctx.close()
    took = time.monotonic() - started
    used = allowance.used  # the allowance ends with this dispatch: its tally is the usage
    used.seconds, used.steps = took, 1
    run.ledger.settle(reservation, used)
    if timeout is not None and took > timeout and outcome.kind is not OutcomeKind.TIMED_OUT:
        # Time is the foreman's: whatever came back after the time-out is not accepted.
        outcome = Outcome(
            OutcomeKind.TIMED_OUT, message=f"no result within {timeout:g}s (came {took:.3g}s)"
        )
    in_doubt = ctx._live.in_doubt
    if in_doubt is not None and outcome.kind is not OutcomeKind.NEEDS_HUMAN:
        # A side-effecting call may have run and nothing could settle it: a person decides,
        # whatever the specialist made of the `InDoubt` it was raised.
        outcome = Outcome(OutcomeKind.NEEDS_HUMAN, message=in_doubt)
    outcome = _validated(role, outcome, used)
    for kind, text in ctx._traced_json():
        _journal_trace(run, phase, role.name, key, attempt, kind, text)
    finished: DispatchFinished = {"outcome": outcome.kind._value_, "usage": used.to_dict()}
    if outcome.message:
        finished["message"] = outcome.message
    if outcome.kind in WAITABLE:
        # Nothing learnt about the item: no correction, no fingerprint to count.
        if outcome.wait is not None:
            finished["wait"] = round(outcome.wait, 3)
    elif outcome.kind is not OutcomeKind.OUTPUT:
        finished["correction"] = outcome.correction()
        finished["fingerprint"] = fingerprint
        finished["informative"] = outcome.kind in _INFORMATIVE
    elif judged and outcome.output is not None:
        finished["output"] = outcome.output.model_dump(mode="json")
    run.journal.emit(
        EventKind.DISPATCH_FINISHED,
        phase=phase,
        role=role.name,
        item=key,
        attempt=attempt,
        data=finished,
    )
    if role.delegate is not None and outcome.kind is not OutcomeKind.OUTPUT:
        specialist = wiring.specialists[role.name]
        if isinstance(specialist, SubForeman):  # its sub-run may have been cut mid-way
            specialist.abandon(item, f"its parent's dispatch ended {outcome.kind.value}")
    if outcome.kind is OutcomeKind.BUDGET_REFUSED and reservation.from_leftover:
        # The dispatch ran out of what its account had left: that account is spent.
        scope = reservation.leftover_of
        reason = f"what the {scope} had left: {outcome.message}"
        return _refused(run, phase, role.name, key, attempt, scope, reason)
    if outcome.kind is OutcomeKind.TIMED_OUT and cut_by_deadline and run.deadline_passed():
        return _refused(run, phase, role.name, key, attempt, "run", run.deadline_reason())
    if outcome.kind is OutcomeKind.INVALID and outcome.errors:
        run.journal.emit(
            EventKind.OUTPUT_INVALID,
            phase=phase,
            role=role.name,
            item=key,
            attempt=attempt,
            data={"errors": outcome.errors},
        )
    return outcome


class _Announce:
    """Journals a dispatch's model request before it leaves (`Context.before_request`).

    An object, not a closure: a closure would make the dispatch's variables cells, one object
    each, on every dispatch, whether or not a request is ever announced."""

    __slots__ = ("attempt", "journal", "key", "phase", "role")

    def __init__(self, journal: Journal, phase: str, role: str, key: str, attempt: int) -> None:
        self.journal, self.phase, self.role, self.key = journal, phase, role, key
        self.attempt = attempt

    def announce(self, requested: ModelRequested) -> None:
        # Durable before the request leaves: a crash cannot hide what it may cost.
        self.journal.emit(
            EventKind.MODEL_REQUESTED,
            phase=self.phase,
            role=self.role,
            item=self.key,
            attempt=self.attempt,
            data=requested,
        )
        self.journal.checkpoint(force=True)


def _refused(
    run: Run, phase: str, role: str, key: str, attempt: int, scope: str, reason: str
) -> Refusal:
    run.journal.emit(
        EventKind.BUDGET_REFUSED,
        phase=phase,
        role=role,
        item=key,
        attempt=attempt,
        data={"reason": reason, "scope": scope},
    )
    return Refusal("role" if scope == "role" else "run", reason)


def _validated(role: Role, outcome: Outcome, used: Usage) -> Outcome:
    """The outcome with its usage, an output validated strictly against the role's schema."""
    kind, raw = outcome.kind, outcome.raw
    if kind is not OutcomeKind.OUTPUT:
        return Outcome(kind, raw, None, outcome.errors, outcome.message, used, wait=outcome.wait)
    output, errors = validate_output(role.output, raw)
    if output is None:
        message = "output does not match " + role.output.__name__
        return Outcome(OutcomeKind.INVALID, raw, None, errors, message, used)
    return Outcome(kind, raw, output, [], outcome.message, used)


def _journal_trace(
    run: Run, phase: str, role: str, key: str, attempt: int, kind: str, text: bytes
) -> None:
    """One entry of what the specialist did (a model exchange, a tool call), journaled from
    the JSON text the trace keeps it as: not written again, nor read back here (the event
    reads it if asked). The context validated it when it was traced (`Trace.append`), or the
    runtime made it: its kind is a known one."""
    run.journal.emit(
        _TRACE_KINDS[kind],
        phase=phase,
        role=role,
        item=key,
        attempt=attempt,
        encoded=text.decode(),
    )
