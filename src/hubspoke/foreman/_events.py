"""Decisions as events: the steps that write more than one event (accepting, escalating) or
that take time (waiting for a provider).

Every function here writes events (and the artifact or card they announce) and, for a wait,
sleeps; what to write was decided before, by the pure functions of `_steps`. A step that is one
event (a retry, a fallback, a requeue) is one `Journal.emit` where `_ladder` applies it.
"""

from __future__ import annotations

import asyncio
import time

from pydantic import BaseModel

from hubspoke.artifacts import Artifact, artifact_id
from hubspoke.board import Card, Column, card_id
from hubspoke.events import EventKind
from hubspoke.handoff import dump_json
from hubspoke.jsontext import parse
from hubspoke.outbox import OutboxEntry
from hubspoke.phases import Phase
from hubspoke.roles import Role

from ._reviewed import step_title
from ._run import Run, Wiring
from ._steps import Wait

__all__ = [
    "accept",
    "escalate",
    "escalation_card",
    "review_card",
    "wait",
]


async def wait(
    run: Run, phase: str, role: str, key: str, attempt: int, step: Wait, waits: int
) -> None:
    """Journal the wait (`item.waiting`), then hold the item for `step.seconds`, or until the
    run's deadline if that comes first: waiting counts against the deadline, and the next
    dispatch is then refused by it."""
    run.journal.emit(
        EventKind.ITEM_WAITING,
        phase=phase,
        role=role,
        item=key,
        attempt=attempt,
        data={"cause": step.cause, "reason": step.reason, "seconds": step.seconds, "waits": waits},
    )
    seconds = step.seconds
    if run.deadline is not None:
        seconds = min(seconds, max(0.0, run.deadline - time.monotonic()))
    if seconds > 0:
        await asyncio.sleep(seconds)


def accept(run: Run, phase: Phase, role: Role, key: str, output: BaseModel) -> None:
    """Store the output as an artifact, record it in the run view, and card it for review."""
    content_json = dump_json(output)
    run_id = run.run_id
    aid = artifact_id(run_id, key, content_json)
    artifact = Artifact(
        id=aid,
        run_id=run_id,
        phase=phase.name,
        role=role.name,
        item=key,
        schema=f"{type(output).__module__}.{type(output).__qualname__}",
        content=parse(content_json),
        created=time.time(),
        content_json=content_json,
    )
    outbox = (
        OutboxEntry(
            key=f"{run_id}/{key}",
            run_id=run_id,
            item=key,
            created=artifact.created,
            content=artifact.content,
        )
        if phase.outbox
        else None
    )
    run.journal.emit(
        EventKind.ITEM_ACCEPTED,
        phase=phase.name,
        role=role.name,
        item=key,
        data={"artifact_id": aid},
        artifact=artifact,
        outbox=outbox,
    )
    if phase.review:
        # The review gate holds: later phases and the result see it only once approved
        # (`_resume.rebuild_view` records approved and amended outputs).
        run.view.hold(phase.name, key, aid, output)
        review_card(run, phase, role, key, aid, output)
    else:
        run.view.record(phase.name, key, aid, output)


def review_card(run: Run, phase: Phase, role: Role, key: str, aid: str, output: BaseModel) -> None:
    """Put an accepted output on the board's review column. Its title is the phase's
    `card_title` of the output; by default a planned or routed step's id, role and objective
    (`_reviewed.step_title`), else the phase and item."""
    title = step_title(run.state, phase.name, key) or f"{phase.name}: {key}"
    why = ""
    if phase.card_title is not None:
        try:
            title = str(phase.card_title(output))
        except Exception as e:  # a title is for the board: the draft still goes to review
            why = f"card_title() raised {type(e).__name__}: {e}"
    card = Card(
        id=card_id(run.run_id, key),
        run_id=run.run_id,
        phase=phase.name,
        item=key,
        column=Column.REVIEW,
        title=title,
        risk=role.risk.value,
        artifact_id=aid,
        note=why,
        created=time.time(),
    )
    run.journal.emit(
        EventKind.CARD_CREATED,
        phase=phase.name,
        role=role.name,
        item=key,
        data={"card_id": card.id, "column": "review", "title": title, "artifact_id": aid},
        card=card,
    )


def escalate(wiring: Wiring, run: Run, phase: Phase, role: str, key: str, reason: str) -> bool:
    """Hand the item to a person; past the escalation cap, fail it and stop the run instead.

    Returns:
        Whether the item was escalated (False: the cap stopped the run).
    """
    state = run.state
    if state.escalations >= wiring.workflow.max_escalations and key not in state.escalated:
        run.journal.emit(
            EventKind.ITEM_FAILED,
            phase=phase.name,
            role=role,
            item=key,
            data={"reason": f"escalation cap reached ({reason})", "stops_run": True},
        )
        run.halt("aborted", wiring.cap_reason())
        return False
    run.journal.emit(
        EventKind.ITEM_ESCALATED,
        phase=phase.name,
        role=role,
        item=key,
        attempt=None,
        data={"reason": reason},
    )
    escalation_card(wiring, run, phase.name, role, key, reason)
    return True


def escalation_card(wiring: Wiring, run: Run, phase: str, role: str, key: str, reason: str) -> None:
    """Put an escalated item on the board's escalated column."""
    card = Card(
        id=card_id(run.run_id, key),
        run_id=run.run_id,
        phase=phase,
        item=key,
        column=Column.ESCALATED,
        title=f"{phase}: {key} needs a person",
        risk=wiring.roles[role].risk.value,
        note=reason,
        created=time.time(),
    )
    run.journal.emit(
        EventKind.CARD_CREATED,
        phase=phase,
        role=role,
        item=key,
        data={"card_id": card.id, "column": "escalated", "title": card.title},
        card=card,
    )
