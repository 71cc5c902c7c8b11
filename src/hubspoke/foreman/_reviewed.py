"""Review gates of planned and routed phases: a step's status as people's review left it, its
item key and card title, and the phase outside the gate that its planner or router runs in.

A planned or routed phase declared `review=True` holds each accepted step's output for a person,
as a static phase holds each item's (`_events.accept` cards it in the review column). For what
runs next, a step then stands as its card says: ``accepted`` once approved or amended, ``review``
while its card is undecided (in review or parked), ``skipped`` once a person skipped it, which is
a step that ended without an output. Only an approved (or amended) output flows on: a dependent
step, a replanning planner, the router's view and its references see no other (docs/plans.md,
docs/router.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hubspoke.board import card_id
from hubspoke.journal import RunState
from hubspoke.phases import Phase, Strategy

from ._plans import one_line

__all__ = [
    "IN_REVIEW",
    "SKIPPED_AT_REVIEW",
    "chooser_phase",
    "reviewed_status",
    "step_key",
    "step_title",
]

IN_REVIEW = "review"
"""The status of an accepted step whose review card is undecided (in review or parked)."""
SKIPPED_AT_REVIEW = "a person skipped its output at review"
"""The reason given for a step whose review card was skipped."""
_TITLE_CHARS = 100


def step_key(phase: str, step_id: str) -> str:
    """The item key of a planned or routed phase's step (``research[a]``), or of a routed
    phase's result (``research[result]``)."""
    return f"{phase}[{step_id}]"


def chooser_phase(phase: Phase, name: str, role: str, **changes: Any) -> Phase:
    """The phase `name` the planner's or router's items of a planned or routed `phase` run in,
    as `role` with `changes`: fail-fast, and outside the phase's review gate and outbox, which
    hold its steps' outputs, not its plans or decisions."""
    return replace(
        phase,
        name=name,
        role=role,
        roles=(),
        strategy=Strategy.FAIL_FAST,
        outbox=False,
        review=False,
        review_waits=False,
        card_title=None,
        **changes,
    )


def reviewed_status(state: RunState, phase: Phase, key: str, status: str) -> str:
    """The status of the item `key` (its fold's `status`) as the phase's review gate left it:
    an accepted output is ``accepted`` only once a person approved or amended it, ``review``
    while undecided, ``skipped`` if skipped. Without a review gate, `status` as it is."""
    if not phase.review or status != "accepted":
        return status
    card = state.cards.get(card_id(state.run_id, key))
    if card is None or card.artifact_id is None:
        # Carded with its acceptance, or by the resume after a crash between (until then it
        # holds no card, or its earlier escalation's, which carries no artifact).
        return IN_REVIEW
    if card.column in ("approved", "amended"):
        return "accepted"
    return "skipped" if card.column == "skipped" else IN_REVIEW


def step_title(state: RunState, phase: str, key: str) -> str | None:
    """The review card's title of a planned or routed step (``research: step a (searcher):
    find what is known about tides``; a routed phase's result ``research: result``), or None
    if `key` is no step of a planned or routed phase."""
    plans = state.plans.get(phase)
    if plans is not None:
        for step in reversed(plans.steps):  # a step planned again: as planned last
            if step_key(phase, step["id"]) == key:
                objective = str(step.get("objective", ""))
                return one_line(
                    f"{phase}: step {step['id']} ({step['role']}): {objective}", _TITLE_CHARS
                )
    route = state.routes.get(phase)
    if route is not None:
        if key == step_key(phase, "result"):
            return f"{phase}: result"
        for decided in route.decisions:
            sid = decided.get("step", "")
            if decided["action"] == "dispatch" and step_key(phase, sid) == key:
                objective = decided.get("objective", "")
                title = f"{phase}: step {sid} ({decided.get('role', '')})"
                return one_line(title + (f": {objective}" if objective else ""), _TITLE_CHARS)
    return None
