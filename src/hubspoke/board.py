"""The review board: cards drafted by review-gated phases and the items escalated to people.

A card refers to the artifact it shows. Columns follow the review flow: `review` (waiting for a
person), then `approved`, `amended`, `parked` or `skipped`; items the failure ladder escalated
sit in `escalated` until someone decides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Card", "Column", "card_id", "gate_card_id"]


class Column(StrEnum):
    REVIEW = "review"
    APPROVED = "approved"
    AMENDED = "amended"
    PARKED = "parked"
    SKIPPED = "skipped"
    ESCALATED = "escalated"
    ANSWERED = "answered"
    """An escalated card a person answered: the item's next attempt gets the answer."""


def card_id(run_id: str, item: str) -> str:
    return "card_" + hashlib.sha256(f"{run_id}\0{item}".encode()).hexdigest()[:16]


def gate_card_id(run_id: str, item: str, role: str) -> str:
    """The card of `item`'s human gate before `role` (`Role.approve_before_dispatch`)."""
    return card_id(run_id, f"{item}#gate:{role}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Card:
    id: str
    run_id: str
    phase: str
    item: str
    column: Column
    title: str
    risk: str
    artifact_id: str | None = None
    """The drafted output; `None` for an escalated item, which has none."""
    note: str = ""
    """Why the card is where it is (the escalation reason, a reviewer's note)."""
    created: float = 0.0
