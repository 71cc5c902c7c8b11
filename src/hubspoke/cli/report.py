"""What the reading commands report, as JSON-able data built from the journal.

`--json` prints these dicts as they are; the tables in `render` show the same data, so the two
never disagree. Everything here comes from the store and the fold of the run's events
(`RunState.fold`), never from a foreman.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from hubspoke.artifacts import Artifact
from hubspoke.board import Card, Column, card_id
from hubspoke.budget import Usage
from hubspoke.events import Event, EventKind, payload
from hubspoke.journal import RunRecord, RunState
from hubspoke.outbox import OutboxEntry

__all__ = [
    "BOARD_ORDER",
    "artifact_row",
    "card_row",
    "cards_by_column",
    "item_costs",
    "outbox_row",
    "plan_report",
    "run_report",
    "run_row",
    "unpriced",
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


def _base_item(key: str) -> str:
    """An evaluator's dispatch about an item (``item#eval``) counts for the item."""
    return key.partition("#")[0]


def unpriced_roles(options: Mapping[str, Any]) -> set[str]:
    """The roles whose model had no known price when the run started (``options["models"]``,
    as the run recorded them): the only ones `unpriced` looks for in the events."""
    models = options.get("models")
    if not isinstance(models, Mapping):
        return set()
    return {
        role
        for role, entry in models.items()
        if "/" not in role and isinstance(entry, Mapping) and entry.get("price") is None
    }


def unpriced(options: Mapping[str, Any], events: Sequence[Event]) -> dict[str, Any]:
    """Where a run's USD cost is unknown: the roles whose model had no known price when the
    run started (``options["models"]``) and that made model requests, and the phases, items
    and run those requests belong to. Their USD is counted as $0 in the usage, so it is a
    lower bound there; `hubspoke show` says "unknown" or "≥".

    Returns:
        ``{"run": bool, "roles": [...], "phases": [...], "items": [...]}``.
    """
    roles = unpriced_roles(options)
    found_roles: set[str] = set()
    phases: set[str] = set()
    items: set[str] = set()
    for event in events:
        role = event.role
        if event.kind is not EventKind.DISPATCH_FINISHED or role is None or role not in roles:
            continue
        if int(payload(event, EventKind.DISPATCH_FINISHED)["usage"].get("requests", 0)) > 0:
            found_roles.add(role)
            if event.phase is not None:
                phases.add(event.phase)
            if event.item is not None:
                items.add(_base_item(event.item))
    return {
        "run": bool(found_roles),
        "roles": sorted(found_roles),
        "phases": sorted(phases),
        "items": sorted(items),
    }


def item_costs(events: Sequence[Event]) -> dict[str, dict[str, Any]]:
    """What each item spent, over all its dispatches (its evaluator's included), in order of
    first dispatch: ``{item: {"phase", "role", "usage"}}``; the role is the last that
    played it (a fallback, say)."""
    costs: dict[str, dict[str, Any]] = {}
    totals: dict[str, Usage] = {}
    for event in events:
        if event.kind is not EventKind.DISPATCH_FINISHED or event.item is None:
            continue
        key = _base_item(event.item)
        usage = totals.get(key)
        if usage is None:
            usage = totals[key] = Usage()
            costs[key] = {"phase": event.phase, "role": event.role}
        if "#" not in event.item:
            costs[key]["role"] = event.role
        Usage.add_dict_to(payload(event, EventKind.DISPATCH_FINISHED)["usage"], usage)
    for key, usage in totals.items():
        costs[key]["usage"] = usage.to_dict()
    return costs


def _step_status(state: RunState, key: str) -> str:
    """A planned or routed step's status: its item's (``not run`` if it never started); an
    accepted output behind a review gate as its card stands (``review``, ``parked``,
    ``skipped``; ``accepted`` once approved or amended)."""
    item = state.items.get(key)
    if item is None:
        return "not run"
    card = state.cards.get(card_id(state.run_id, key))
    if card is None or card.artifact_id is None or item.status != "accepted":
        return item.status
    return card.column if card.column in ("review", "parked", "skipped") else item.status


def plan_report(state: RunState) -> dict[str, dict[str, Any]]:
    """The plans of a run's planned phases, by phase: how many plans were accepted, rejected
    and stalled (with the stalls' reasons), and every step planned (``id``, ``role``, the
    steps it waits for in ``after``, the ``revision`` of the plan that last planned it, its
    item's ``status``: ``not run`` if it never started, and its brief's ``objective``), and the
    latest plan's ``rationale`` (empty if it gave none)."""
    from hubspoke.plans import PlanStep, dependencies

    found: dict[str, dict[str, Any]] = {}
    for name, plans in state.plans.items():
        steps: dict[str, dict[str, Any]] = {}
        for plan in plans.plans:
            for raw in plan["steps"]:
                step = PlanStep.model_validate(raw)
                steps[step.id] = {
                    "id": step.id,
                    "role": step.role,
                    "after": dependencies(step),
                    "revision": plan["revision"],
                    "status": _step_status(state, f"{name}[{step.id}]"),
                    "objective": step.objective,
                }
        found[name] = {
            "plans": len(plans.plans),
            "rejected": plans.rejected,
            "stalls": [stall["reason"] for stall in plans.stalls],
            "steps": list(steps.values()),
            "rationale": plans.plans[-1].get("rationale", "") if plans.plans else "",
        }
    return found


def route_report(state: RunState) -> dict[str, dict[str, Any]]:
    """The decisions of a run's routed phases, by phase: how many the foreman's checks
    rejected, and each decision (``turn``, ``action``, for a dispatch the ``step``, its
    ``role`` and its item's ``status``; an escalation's question or an abort's reason in
    ``note``)."""
    found: dict[str, dict[str, Any]] = {}
    for name, route in state.routes.items():
        decisions = []
        for d in route.decisions:
            row: dict[str, Any] = {"turn": d["turn"], "action": d["action"]}
            if "step" in d:
                row |= {
                    "step": d["step"],
                    "role": d.get("role", ""),
                    "status": _step_status(state, f"{name}[{d['step']}]"),
                }
            note = d.get("question") or d.get("reason")
            if note:
                row["note"] = note
            decisions.append(row)
        found[name] = {"rejected": route.rejected, "decisions": decisions}
    return found


def run_report(record: RunRecord, events: Sequence[Event]) -> dict[str, Any]:
    """Everything `hubspoke show` says about a run.

    The run state's `summary()` (status, per-phase counts and usage, per-role usage, cards),
    plus the outcome of every dispatch counted by kind, the timeline of phases, the run's
    record (reference, parent, times), the models its roles played with (``models``: binding,
    source, price, as recorded when it started), what each item spent (``items``) and where
    the USD cost is unknown (``unpriced``: a model without a price), and for a run with planned
    phases their plans (``plans``: `plan_report`), for routed phases their router's decisions
    (``routes``: `route_report`).
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
        "models": dict(record.options.get("models") or {}),
        "items": item_costs(events),
        "unpriced": unpriced(record.options, events),
        **({"plans": plan_report(state)} if state.plans else {}),
        **({"routes": route_report(state)} if state.routes else {}),
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


def outbox_row(entry: OutboxEntry) -> dict[str, Any]:
    """One message of the outbox."""
    return {
        "key": entry.key,
        "run_id": entry.run_id,
        "item": entry.item,
        "created": entry.created,
        "content": entry.content,
    }


def cards_by_column(cards: Sequence[Card]) -> dict[str, list[dict[str, Any]]]:
    """Cards grouped by board column, every column present, in the order of the review flow."""
    grouped: dict[str, list[dict[str, Any]]] = {column.value: [] for column in BOARD_ORDER}
    for card in cards:
        grouped[card.column.value].append(card_row(card))
    return grouped
