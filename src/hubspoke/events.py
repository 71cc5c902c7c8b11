"""Journal events: the versioned record of everything a run decides.

A run's state is a fold over its events (`hubspoke.journal.RunState`). Events are plain data;
`data` holds only JSON values. `SCHEMA_VERSION` is stored with every run so that journals written
by older versions keep loading (tests keep a fixture of each).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["SCHEMA_VERSION", "Event", "EventKind"]

SCHEMA_VERSION = 1


class EventKind(StrEnum):
    RUN_STARTED = "run.started"
    RUN_RESUMED = "run.resumed"
    RUN_FINISHED = "run.finished"
    PHASE_STARTED = "phase.started"
    PHASE_SELECTED = "phase.selected"
    PHASE_FINISHED = "phase.finished"
    DISPATCH_STARTED = "dispatch.started"
    DISPATCH_FINISHED = "dispatch.finished"
    MODEL_EXCHANGE = "model.exchange"
    TOOL_CALLED = "tool.called"
    TOOL_REFUSED = "tool.refused"
    OUTPUT_INVALID = "output.invalid"
    EVALUATOR_REJECTED = "evaluator.rejected"
    ITEM_RETRY = "item.retry"
    ITEM_FALLBACK = "item.fallback"
    ITEM_STUCK = "item.stuck"
    ITEM_ACCEPTED = "item.accepted"
    ITEM_ESCALATED = "item.escalated"
    ITEM_FAILED = "item.failed"
    ITEM_REQUEUED = "item.requeued"
    BUDGET_REFUSED = "budget.refused"
    CARD_CREATED = "card.created"
    CHILD_RUN_STARTED = "child.started"


@dataclass(slots=True)
class Event:
    """One entry of a run's journal. `seq` is contiguous per run, starting at 1."""

    run_id: str
    seq: int
    ts: float
    kind: EventKind
    phase: str | None = None
    role: str | None = None
    item: str | None = None
    attempt: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "run_id": self.run_id,
            "kind": self.kind.value,
            "phase": self.phase,
            "role": self.role,
            "item": self.item,
            "attempt": self.attempt,
            "data": self.data,
        }
