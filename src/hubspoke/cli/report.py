"""What the reading commands report, as JSON-able data built from the journal.

`--json` prints these dicts as they are; the tables in `render` show the same data, so the two
never disagree. Everything here comes from the store and the fold of the run's events
(`RunState.fold`), never from a foreman.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from hubspoke.artifacts import Artifact
from hubspoke.board import Card, Column
from hubspoke.events import Event, EventKind, payload
from hubspoke.journal import RunRecord, RunState

__all__ = [
    "BOARD_ORDER",
    "artifact_row",
    "card_row",
    "cards_by_column",
    "run_report",
    "run_row",
]


BOARD_ORDER: tuple[Column, ...] = (
    Column.REVIEW,
    Column.ESCALATED,
    *(c for c in Column if c not in (Column.REVIEW, Column.ESCALATED)),
)
"""Board columns as the CLI lists them: what waits for a person first."""


def run_row(record: RunRecord, holder: str | None = None) -> dict[str, Any]:
    """One line of `hubspoke runs`.

    A run whose status is still `running` but that no live process holds was interrupted (a
    crash, a kill): it shows as `stopped`, resumable with `hubspoke resume`.
    """
    status = record.status
    if status == "running" and holder is None:
        status = "stopped"
    return {
        "run_id": record.run_id,
        "workflow": record.workflow,
        "status": status,
        "created": record.created,
        "finished": record.finished,
        "parent_run": record.parent_run,
        "parent_item": record.parent_item,
        "ref": record.ref,
    }


def _timeline(events: Sequence[Event], origin: float) -> list[dict[str, Any]]:
    """When each phase started and finished, in seconds from the run's first event."""
    spans: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.phase is None:
            continue
        if event.kind is EventKind.PHASE_STARTED:
            span = spans.setdefault(event.phase, {"phase": event.phase, "finished": None})
            span.setdefault("started", round(event.ts - origin, 6))
        elif event.kind is EventKind.PHASE_FINISHED and event.phase in spans:
            spans[event.phase]["finished"] = round(event.ts - origin, 6)
            spans[event.phase]["status"] = payload(event, EventKind.PHASE_FINISHED)["status"]
    for span in spans.values():
        finished = span["finished"]
        span["seconds"] = None if finished is None else round(finished - span["started"], 6)
    return list(spans.values())


def run_report(record: RunRecord, events: Sequence[Event]) -> dict[str, Any]:
    """Everything `hubspoke show` says about a run.

    The run state's `summary()` (status, per-phase counts and usage, per-role usage, cards),
    plus the outcome of every dispatch counted by kind, the timeline of phases and the run's
    record (reference, parent, times).
    """
    state = RunState.fold(record.run_id, events)
    outcomes = Counter(
        payload(e, EventKind.DISPATCH_FINISHED)["outcome"]
        for e in events
        if e.kind is EventKind.DISPATCH_FINISHED
    )
    origin = events[0].ts if events else record.created
    return {
        **state.summary(),
        "ref": record.ref,
        "parent_run": record.parent_run,
        "parent_item": record.parent_item,
        "created": record.created,
        "finished": state.finished,
        "elapsed": round(state.elapsed, 6),
        "events": len(events),
        "outcomes": dict(sorted(outcomes.items())),
        "timeline": _timeline(events, origin),
    }


def artifact_row(artifact: Artifact) -> dict[str, Any]:
    """One artifact, content included."""
    return {
        "id": artifact.id,
        "run_id": artifact.run_id,
        "phase": artifact.phase,
        "role": artifact.role,
        "item": artifact.item,
        "schema": artifact.schema,
        "content": artifact.content,
        "created": artifact.created,
    }


def card_row(card: Card) -> dict[str, Any]:
    """One card of the board."""
    return {
        "id": card.id,
        "run_id": card.run_id,
        "phase": card.phase,
        "item": card.item,
        "column": card.column.value,
        "title": card.title,
        "risk": card.risk,
        "artifact_id": card.artifact_id,
        "note": card.note,
        "created": card.created,
    }


def cards_by_column(cards: Sequence[Card]) -> dict[str, list[dict[str, Any]]]:
    """Cards grouped by board column, every column present, in the order of the review flow."""
    grouped: dict[str, list[dict[str, Any]]] = {column.value: [] for column in BOARD_ORDER}
    for card in cards:
        grouped[card.column.value].append(card_row(card))
    return grouped
