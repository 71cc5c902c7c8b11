"""Human gates: an item waits before its role's first dispatch until a person approves it.

A role with `Role.approve_before_dispatch` holds each item at its gate: the first time, a gate
card goes to the review column and the item waits (`item.waiting`, cause ``approval``); a person
approves (or skips) the card on the board, and the fold opens the gate
(`RunState._gate_decided`). Past the role's `gate_timeout`, its `on_gate_timeout` applies when
the run goes on: escalate the item, skip or park its card, or abort the run.
"""

from __future__ import annotations

import time

from hubspoke.board import Card, Column, gate_card_id
from hubspoke.events import EventKind
from hubspoke.phases import Phase
from hubspoke.roles import Role

from . import _events
from ._run import Run, Wiring

__all__ = ["gate_open"]


def _card(run: Run, phase: Phase, role: Role, key: str, column: Column, note: str) -> Card:
    return Card(
        id=gate_card_id(run.run_id, key, role.name),
        run_id=run.run_id,
        phase=phase.name,
        item=key,
        column=column,
        title=f"approve before dispatch: {role.name} on {key}",
        risk=role.risk.value,
        note=note,
        created=time.time(),
    )


def gate_open(wiring: Wiring, run: Run, phase: Phase, role: Role, key: str) -> bool:
    """Whether a person let the item through `role`'s human gate. If not, the item waits:
    the first time, its gate card goes to the review column (`item.waiting`, cause
    ``approval``); past the role's `gate_timeout`, `on_gate_timeout` applies."""
    item = run.state.items.get(key)
    if item is not None and role.name in item.gates_open:
        return True
    if item is None or item.status != "gated" or item.gate_role != role.name:
        note = f"{role.name} ({role.risk.value} risk) waits for a person's approval"
        card = _card(run, phase, role, key, Column.REVIEW, note)
        # Made once: back at its gate (it was escalated, then answered), the item finds the card
        # as a person left it meanwhile, parked or skipped (the fold applies that to the item).
        if card.id not in run.state.cards:
            run.journal.emit(
                EventKind.CARD_CREATED,
                phase=phase.name,
                role=role.name,
                item=key,
                data={"card_id": card.id, "column": "review", "title": card.title},
                card=card,
            )
        run.journal.emit(
            EventKind.ITEM_WAITING,
            phase=phase.name,
            role=role.name,
            item=key,
            attempt=1 if item is None else max(1, item.attempt),
            data={"cause": "approval", "reason": note, "seconds": 0.0, "waits": 0},
        )
        return False
    timeout = role.gate_timeout
    if timeout is None or time.time() - item.gated_at < timeout:
        return False
    why = f"not approved within {timeout:g}s at {role.name}'s human gate"
    if role.on_gate_timeout == "abort":
        run.halt("aborted", f"{key}: {why}")
    elif role.on_gate_timeout == "escalate":
        _events.escalate(wiring, run, phase, role.name, key, why)
    else:  # skip or park: the phase goes on without the item; its card says why
        verb = role.on_gate_timeout
        after = Column.SKIPPED if verb == "skip" else Column.PARKED
        card = _card(run, phase, role, key, after, f"{after.value}: {why}")
        before = run.state.cards.get(card.id)
        run.journal.emit(
            EventKind.CARD_DECIDED,
            phase=phase.name,
            role=role.name,
            item=key,
            data={
                "decision_id": f"{card.id}/{1 + (before.decisions if before else 0)}",
                "card_id": card.id,
                "verb": verb,
                "by": "hubspoke (gate time-out)",
                "before": before.column if before is not None else "review",
                "after": after.value,
                "note": why,
            },
            card=card,
        )
    return False
