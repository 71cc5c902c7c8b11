"""The next step as a value: what follows an outcome, decided by pure functions.

`decide` maps an item's position on its failure ladder, the outcome of its latest dispatch and
the ladder (the chain of role cards: the role, its fallback, its fallback's fallback...) to one
step: accept, retry with a correction, wait for the provider, fall back to the next role,
escalate, or stop the run.
`phase_verdict` maps a phase's counts under its strategy to its status. Neither reads the clock,
the journal or the network, so both are tested from tables (tests/test_steps.py), and the one
place that applies a step (`_ladder.run_item`) is the only one that writes its events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from hubspoke.outcomes import RETRYABLE, WAITABLE, Outcome, OutcomeKind
from hubspoke.phases import Strategy
from hubspoke.roles import Role

from ._validation import format_errors

__all__ = [
    "Accept",
    "Escalate",
    "Fallback",
    "PhaseCounts",
    "Position",
    "Recorded",
    "Refusal",
    "Retry",
    "Step",
    "Stop",
    "Stuck",
    "Wait",
    "advance",
    "decide",
    "phase_verdict",
]


@dataclass(frozen=True, slots=True)
class Position:
    """Where an item stands on its failure ladder."""

    rung: int = 0
    """Index of the role now in charge in the ladder (0: the phase's role)."""
    tries: int = 0
    """Attempts already made by that role."""
    attempt: int = 1
    """The number of the next attempt, counted over every role of the ladder."""
    correction: str | None = None
    """The feedback the next attempt receives."""
    waits: int = 0
    """Waits for the provider since the role's latest attempt began (`Role.max_waits`)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The ledger refused a dispatch, or a dispatch ran out of what its account had left."""

    scope: Literal["run", "role"]
    """``run``: the run's budget or deadline ran out (the run stops); ``role``: the role's
    per-run budget did (that role fails; the item goes down its ladder)."""
    reason: str


@dataclass(frozen=True, slots=True)
class Recorded:
    """An attempt's end as the journal holds it, when its decision was not journaled (a crash
    came between the two): resume decides from it instead of dispatching again."""

    kind: OutcomeKind
    correction: str | None
    message: str
    wait: float | None = None
    """Seconds the provider asked to wait, for a throttled or unavailable attempt."""


@dataclass(frozen=True, slots=True)
class Stuck:
    """The next dispatch would repeat one that brought no new information."""

    fingerprint: str
    after: str = ""
    """How the dispatch it would repeat had ended, in words."""


@dataclass(frozen=True, slots=True)
class Accept:
    output: BaseModel


@dataclass(frozen=True, slots=True)
class Retry:
    """Dispatch the same role again with this correction."""

    correction: str
    reason: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Hold the item, then dispatch it again where it stands: its provider is throttled or
    unavailable. No attempt is spent; `Role.max_waits` bounds how often."""

    reason: str
    seconds: float
    """How long to hold the item, at least (0: only until the endpoint's own hold ends)."""
    cause: str
    """The outcome that asked for the wait: ``throttled`` or ``unavailable``."""


@dataclass(frozen=True, slots=True)
class Fallback:
    """Hand the item to the next role of the ladder."""

    to: str
    reason: str


@dataclass(frozen=True, slots=True)
class Escalate:
    """A person must decide: the ladder is exhausted or the specialist asked for one."""

    reason: str


@dataclass(frozen=True, slots=True)
class Stop:
    """End the run: its budget or deadline ran out."""

    reason: str


Step = Accept | Retry | Wait | Fallback | Escalate | Stop


def describe(outcome: Outcome) -> str:
    """An outcome in words, for reasons: ``kind: message or errors``."""
    words = [outcome.message] if outcome.message else []
    if outcome.errors:
        words.append(format_errors(outcome.errors))
    return f"{outcome.kind.value}: {' - '.join(words)}"


def decide(
    position: Position, result: Outcome | Recorded | Refusal | Stuck, ladder: Sequence[Role]
) -> Step:
    """The step that follows `result` for an item at `position` on `ladder`.

    Args:
        position: where the item stands (`position.rung` indexes `ladder`).
        result: the outcome of its latest dispatch (validated and judged), the ledger's refusal
            of that dispatch, or the stuck detector's verdict on the next one.
        ladder: the phase's role followed by its fallbacks.

    Rules (docs/concepts.md, "The failure ladder"): a valid output is accepted; a request
    for a person escalates; a retryable outcome (invalid, failed, timed out) is retried with
    its correction while the role has attempts left; anything else, or the last attempt,
    falls back to the next role, and past the last role the item escalates. A throttled or
    unavailable provider is waited for, spending no attempt, `Role.max_waits` times; after
    that it is the role's failure. A refusal by the run's budget stops the run; by the role's
    per-run budget it is that role's failure. Stuck is a failure of the role.
    """
    if isinstance(result, Refusal):
        if result.scope == "run":
            return Stop(result.reason)
        return _next_rung(position, ladder, f"budget: {result.reason}")
    if isinstance(result, Stuck):
        why = "stuck: the same dispatch would repeat with no new information"
        return _next_rung(position, ladder, f"{why} ({result.after})" if result.after else why)
    if isinstance(result, Recorded):
        kind, correction, reason = result.kind, result.correction, result.message
    else:
        if result.kind is OutcomeKind.OUTPUT and result.output is not None:
            return Accept(result.output)
        kind, correction, reason = result.kind, result.correction(), describe(result)
    if kind is OutcomeKind.NEEDS_HUMAN:
        return Escalate(result.message or reason)
    role = ladder[position.rung]
    if kind in WAITABLE:
        if position.waits < role.max_waits:
            return Wait(reason, max(0.0, result.wait or 0.0), kind.value)
        waits = f"{position.waits} wait{'s' if position.waits != 1 else ''}"
        return _next_rung(position, ladder, f"{reason} (still, after {waits})")
    if kind in RETRYABLE and position.tries + 1 < role.max_attempts:
        return Retry(correction or "", reason)
    return _next_rung(position, ladder, reason)


def _next_rung(position: Position, ladder: Sequence[Role], reason: str) -> Fallback | Escalate:
    if position.rung + 1 < len(ladder):
        return Fallback(ladder[position.rung + 1].name, reason)
    return Escalate(f"failure ladder exhausted ({reason})")


def advance(position: Position, step: Retry | Wait | Fallback) -> Position:
    """The position after a retry or a fallback (one attempt further), or a wait (the same
    attempt, one wait more)."""
    if isinstance(step, Wait):
        return Position(
            position.rung, position.tries, position.attempt, position.correction, position.waits + 1
        )
    if isinstance(step, Retry):
        return Position(position.rung, position.tries + 1, position.attempt + 1, step.correction)
    return Position(position.rung + 1, 0, position.attempt + 1, None)


@dataclass(frozen=True, slots=True)
class PhaseCounts:
    total: int
    accepted: int
    escalated: int
    """Items escalated to a person whose card is not decided yet: they may still be answered."""
    failed: int = 0
    """Items that ended without an output and without a person."""
    skipped: int = 0
    """Items a person skipped: the phase no longer needs them."""


def phase_verdict(
    name: str, strategy: Strategy, quorum: int | None, counts: PhaseCounts
) -> tuple[Literal["completed", "failed", "waiting"], str]:
    """A phase's status once its items have ended (or wait for a person), and why it did not
    complete (``""`` if it did).

    fail-fast needs every item accepted; quorum needs `quorum` of them; best-effort completes
    whatever happened to its items, and so does retry once its rounds are over. Items a person
    skipped are not needed. A phase that would fail but could still pass once the items waiting
    for a person are answered is ``waiting``: the run waits for those decisions.
    """
    needed = counts.total - counts.skipped
    if strategy is Strategy.FAIL_FAST:
        ok = counts.accepted >= needed
        could = counts.failed == 0
    elif strategy is Strategy.QUORUM:
        ok = counts.accepted >= (quorum or 0)
        could = counts.accepted + counts.escalated >= (quorum or 0)
    else:
        ok, could = True, True
    if ok:
        return "completed", ""
    why = (
        f"phase {name!r} ({strategy.value}): {counts.accepted} of {needed} items accepted, "
        f"{counts.escalated} escalated"
    )
    if could and counts.escalated:
        return "waiting", f"{why}, waiting for a person"
    return "failed", why
