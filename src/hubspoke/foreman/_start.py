"""Where an item's ladder starts in this session: `FRESH` for a new item, or, on resume, where
the fold of its events left it (`start_of`): the rung and attempt, a step decided but not
journaled, a dispatch to redo, an output to judge again, a person's corrected input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hubspoke.budget import Budget
from hubspoke.journal import ItemState
from hubspoke.outcomes import WAITABLE, OutcomeKind
from hubspoke.roles import Role

from ._steps import Position, Recorded, Refusal, Stuck

__all__ = ["FRESH", "Start", "start_of"]


@dataclass(frozen=True, slots=True)
class Start:
    """Where an item's ladder starts in this session."""

    position: Position = field(default_factory=Position)
    started: bool = False
    """The journal shows the item under way (it had been dispatched in an earlier session)."""
    pending: Recorded | Refusal | Stuck | None = None
    """Its latest attempt ended, but the step that follows was not journaled: decide it first."""
    redo: Budget | None = None
    """A dispatch in flight at the crash: it runs again, with the allowance it had."""
    redo_leftover_of: str | None = None
    candidate: dict[str, Any] | None = None
    """An output the phase's evaluator was judging at the crash: judged again, not redone."""
    input: dict[str, Any] | None = None
    """A corrected input a person gave the item (an answer to its escalation): it replaces
    what the phase's `input` makes."""

    @property
    def under_way(self) -> bool:
        """Something was already happening to the item that a stopping run still finishes."""
        return self.pending is not None or self.redo is not None or self.candidate is not None


FRESH = Start()


def start_of(item: ItemState, ladder: tuple[Role, ...]) -> Start | None:
    """Where `item` stands, from the fold of its events; None if it has ended (accepted,
    escalated or failed). A requeued item (a `Strategy.RETRY` round) starts the ladder again,
    keeping its attempt count and its latest correction."""
    if item.status in ("accepted", "escalated", "failed", "skipped", "parked"):
        return None
    if item.status == "gated":  # at its role's human gate: the ladder checks the gate again
        rung = next((n for n, r in enumerate(ladder) if r.name == item.role), 0)
        return Start(Position(rung, 0, max(1, item.attempt)), started=True)
    if item.status == "requeued":
        return Start(Position(0, 0, item.attempt, item.correction), started=True)
    if item.status == "answered":
        # A person answered its escalation: the ladder starts again from the phase's role,
        # with the answer as the correction (or the corrected input).
        said = None if item.answer is None else f"A person answered: {item.answer}"
        return Start(Position(0, 0, item.attempt, said), started=True, input=item.answer_input)
    rung = next((n for n, r in enumerate(ladder) if r.name == item.role), 0)
    position = Position(rung, item.tries, item.attempt, item.correction, item.waits)
    last = item.last_outcome
    if last is not None:
        pending: Recorded | Refusal | Stuck
        if last in WAITABLE:
            # The fold moved no ladder for it: decide the wait from where the item stands.
            why = f"{last} (before the restart)"
            pending = Recorded(OutcomeKind(last), item.correction, why, item.wait)
        elif last == "stuck":
            pending = Stuck("")
        elif last in ("refused:run", "refused:role"):
            pending = Refusal("run" if last == "refused:run" else "role", item.reason)
        else:
            pending = Recorded(OutcomeKind(last), item.correction, f"{last} (before the restart)")
            # The fold already counted the attempt that ended (`tries`, `attempt` one further):
            # decide from where the item stood when it was dispatched, as the uncrashed run did.
            position = Position(rung, max(0, item.tries - 1), max(1, item.attempt - 1), None)
        return Start(position, started=True, pending=pending)
    if item.candidate is not None:
        return Start(position, started=True, candidate=item.candidate)
    if item.pending and item.reserved is not None:
        sized = {k: item.reserved.get(k) for k in ("tokens", "usd", "tool_calls")}
        leftover = (
            item.reserved.get("leftover_of", "run") if item.reserved.get("leftover") else None
        )
        return Start(position, started=True, redo=Budget(**sized), redo_leftover_of=leftover)
    return Start(position, started=True)
