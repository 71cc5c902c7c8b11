"""What a plan runs next, by pure functions of where its steps stand.

`next_steps` maps a plan and its steps' statuses to the next move: run these steps, done,
stalled (replan, or end the phase) or waiting for a person. `stall_account` is what a replanning
planner is told; `resolve_input` fills a step's references from accepted outputs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from hubspoke.plans import PlanStep

from ._plans import dependencies, one_line, refs
from ._reviewed import IN_REVIEW

__all__ = [
    "Done",
    "Next",
    "Ready",
    "Stalled",
    "Waiting",
    "next_steps",
    "resolve_input",
    "stall_account",
]

ENDED_WITHOUT_OUTPUT = frozenset({"escalated", "failed", "skipped", "parked"})
"""Step statuses that leave its dependents unable to run."""
_REASON_CHARS = 160


@dataclass(frozen=True, slots=True)
class Ready:
    """Start these steps (possibly none while others run)."""

    steps: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Done:
    """Every step of the plan was accepted."""


@dataclass(frozen=True, slots=True)
class Stalled:
    """Steps ended without an output, so the plan cannot finish: replan, or end the phase."""

    reason: str


@dataclass(frozen=True, slots=True)
class Waiting:
    """Nothing can run until a person decides (a step waits at a human gate)."""

    reason: str


Next = Ready | Done | Stalled | Waiting


def next_steps(
    steps: Sequence[PlanStep],
    status: Mapping[str, str],
    running: Collection[str],
    *,
    review_waits: bool = False,
) -> Next:
    """What to do with the current plan, from where its steps stand.

    Args:
        steps: the current plan's steps.
        status: item status by step id (`ItemState.status`; behind a review gate, as the
            review left it: `_reviewed.reviewed_status`), for the plan's steps and the kept
            steps of earlier plans; a step without one has not started.
        running: steps being run in this session.
        review_waits: the phase waits for every review card (`Phase.review_waits`); without
            it, only for the cards of outputs that another step waits for.
    """
    # A step in review is done with, unless the phase waits for every card: its dependents
    # still wait for its approval (a dependency counts only once ``accepted``).
    todo = [
        s
        for s in steps
        if status.get(s.id) != "accepted" and (review_waits or status.get(s.id) != IN_REVIEW)
    ]
    if not todo:
        return Done()
    ready = tuple(
        s.id
        for s in todo
        if s.id not in running
        and status.get(s.id) not in ENDED_WITHOUT_OUTPUT | {"gated", IN_REVIEW}
        and all(status.get(d) == "accepted" for d in dependencies(s))
    )
    if ready or running:
        return Ready(ready)
    gated = [s.id for s in todo if status.get(s.id) == "gated"]
    if gated:
        return Waiting(f"step(s) {', '.join(gated)} wait at a human gate")
    # Reviews are waited for before a stall is declared: an approved step is kept by a replan.
    needed = {d for s in todo for d in dependencies(s)}
    reviewing = [
        sid
        for sid, st in status.items()
        if st == IN_REVIEW and (sid in needed or (review_waits and sid in {s.id for s in todo}))
    ]
    if reviewing:
        return Waiting(f"step(s) {', '.join(reviewing)} wait for a person's review")
    dead = [s.id for s in todo if status.get(s.id) in ENDED_WITHOUT_OUTPUT]
    blocked = [s.id for s in todo if s.id not in dead]
    why = f"step(s) {', '.join(dead)} ended without an output"
    return Stalled(why + (f", so {', '.join(blocked)} cannot run" if blocked else ""))


def stall_account(
    steps: Sequence[PlanStep], status: Mapping[str, str], reasons: Mapping[str, str], why: str
) -> str:
    """What a replanning planner is told: why the plan stalled, then each step of the plans so
    far (id, role, status, a one-line reason), never a worker's output."""
    lines = [f"The plan stalled: {why}. What happened to each step:"]
    for step in steps:
        state = status.get(step.id, "not run")
        if state == "running":
            state = "not finished"
        reason = reasons.get(step.id, "")
        lines.append(
            f"- {step.id} ({step.role}): {state}"
            + (f": {one_line(reason, _REASON_CHARS)}" if reason else "")
        )
    lines.append(
        'Accepted steps are kept: reference them by id ({"$from": "ID"}) or wait for them '
        "(after) instead of repeating them, and give new steps new ids. Return a new plan that "
        "avoids what failed."
    )
    return "\n".join(lines)


def resolve_input(step: PlanStep, outputs: Mapping[str, BaseModel]) -> dict[str, Any]:
    """The step's input with every reference replaced by the output it names (as JSON values,
    by alias, as `validate_handoff` reads a dict).

    Raises:
        KeyError: a referenced step has no output in `outputs`.
    """
    resolved: dict[str, Any] = {}
    for name, value in step.input.items():
        found = refs(value)
        if not found:
            resolved[name] = value
            continue
        values = []
        for ref in found:
            output = outputs[ref.step]
            dumped = output.model_dump(mode="json", by_alias=True)
            if ref.field is not None:
                field = type(output).model_fields[ref.field]
                dumped = dumped[field.alias or ref.field]
            values.append(dumped)
        resolved[name] = values if isinstance(value, list) else values[0]
    return resolved
