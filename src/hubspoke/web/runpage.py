"""What the run inspector shows, as plain data built from the journal, without a web framework.

`RunFold` keeps a run's state up to date event by event (the fold, the fold per role that the
spokes draw, each phase's concurrency limit): the page folds the whole journal once, and the
live stream applies each new event to the same object. `inspect_run` builds the whole page's
view model; its totals are `hubspoke show`'s (`hubspoke.cli.report.run_report`), so the page
and the command never disagree.

Templates escape what they print; the SVG is escaped where it is drawn (`spokes.draw`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from hubspoke.artifacts import Artifact
from hubspoke.board import Card, card_id, gate_card_id
from hubspoke.cli.report import run_report
from hubspoke.events import Event, EventKind, payload
from hubspoke.journal import PhaseState, RunRecord, RunState
from hubspoke.web.spokes import as_role_event, draw, spokes

__all__ = [
    "EventRow",
    "QueueRow",
    "RunFold",
    "RunPage",
    "Summary",
    "anchor",
    "event_row",
    "inspect_run",
    "queue_rows",
]


def fmt_usd(usd: float, unknown: bool = False) -> str:
    """Dollars as `hubspoke show` prints them; ``≥ $x`` where a model without a price played
    part of it."""
    text = f"${usd:,.4f}" if usd < 100 else f"${usd:,.2f}"
    return f"≥ {text}" if unknown else text


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def anchor(kind: str, key: str) -> str:
    """A fragment id for an item, card, artifact or event, safe in an ``id`` and a URL."""
    return f"{kind}-{quote(key, safe='')}"


@dataclass(frozen=True, slots=True)
class Summary:
    """The summary bar."""

    status: str
    reason: str
    input_tokens: int
    output_tokens: int
    usd: float
    usd_unknown: bool
    """Part of the cost was spent by a model without a known price: `usd` is a lower bound."""
    elapsed: float
    in_flight: int
    limit: int | None
    """The concurrency limit of the phases running now (their sum), or None when none runs or
    the journal does not record it."""
    steps: int
    escalations: int
    cards_in_review: int
    events: int

    @property
    def usd_text(self) -> str:
        return fmt_usd(self.usd, self.usd_unknown)

    @property
    def elapsed_text(self) -> str:
        return fmt_seconds(self.elapsed)


class RunFold:
    """A run's state kept up to date event by event: `apply` each event in order.

    Args:
        record: the run as the store lists it (its options name the unpriced models).
        held: a process drives the run now (its lease); a `running` run nobody holds is shown
            ``stopped``.
    """

    def __init__(self, record: RunRecord, *, held: bool = True) -> None:
        self.record = record
        self.held = held
        self.state = RunState(record.run_id)
        self._by_role = RunState(record.run_id)
        self.concurrency: dict[str, int] = {}
        models = record.options.get("models")
        self._unpriced_roles = {
            role
            for role, entry in (models.items() if isinstance(models, Mapping) else ())
            if "/" not in role and isinstance(entry, Mapping) and entry.get("price") is None
        }
        self.unpriced = False
        self.events = 0

    def apply(self, event: Event) -> None:
        self.events += 1
        self.state.apply(event)
        mapped = as_role_event(event)
        if mapped is not None:
            self._by_role.apply(mapped)
        if event.kind is EventKind.PHASE_STARTED and event.phase is not None:
            limit = payload(event, EventKind.PHASE_STARTED).get("concurrency")
            if limit is not None:
                self.concurrency[event.phase] = limit
        elif (
            event.kind is EventKind.DISPATCH_FINISHED
            and event.role in self._unpriced_roles
            and int(payload(event, EventKind.DISPATCH_FINISHED)["usage"].get("requests", 0)) > 0
        ):
            self.unpriced = True

    def apply_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.apply(event)

    @property
    def status(self) -> str:
        status = self.state.status if self.events else self.record.status
        return "stopped" if status == "running" and not self.held else status

    def summary(self) -> Summary:
        state = self.state
        running = [p for p in state.phases.values() if p.status == "running"]
        limits = [self.concurrency.get(p.name) for p in running]
        limit = sum(x for x in limits if x is not None) if running and None not in limits else None
        return Summary(
            status=self.status,
            reason=state.reason,
            input_tokens=state.usage.input_tokens,
            output_tokens=state.usage.output_tokens,
            usd=state.usage.usd,
            usd_unknown=self.unpriced,
            elapsed=state.elapsed,
            in_flight=sum(max(0, p.in_flight) for p in state.phases.values()),
            limit=limit,
            steps=state.steps,
            escalations=state.escalations,
            cards_in_review=state.cards_in_review,
            events=self.events,
        )

    def role_counts(self) -> dict[str, PhaseState]:
        """The fold's counters per role (`spokes.role_counts`)."""
        return dict(self._by_role.phases)

    def svg(self, link: str = "") -> str:
        """The hub-and-spoke drawing of the run now."""
        summary = self.summary()
        return draw(
            spokes(self.state, self.role_counts(), self.state.shape),
            status=summary.status,
            in_flight=summary.in_flight,
            link=link,
            label=f"run {self.record.run_id} as hub and spoke",
        )


# rows ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueRow:
    """An item waiting for something: a retry, a person, its provider, another round."""

    item: str
    phase: str
    role: str
    state: str
    """``escalated``, ``gated``, ``answered``, ``retrying``, ``waiting`` or ``requeued``."""
    attempt: int
    why: str
    """The escalation's reason, the correction the retry runs with, a person's answer."""
    card: str | None
    """The card a person decides it on, when it has one."""


@dataclass(frozen=True, slots=True)
class ItemRow:
    key: str
    phase: str
    role: str
    status: str
    attempt: int
    usd: float
    reason: str
    artifact: str | None
    cards: list[str]
    children: list[str]
    """Sub-runs this item's dispatches started (a sub-workflow role)."""


@dataclass(frozen=True, slots=True)
class EventRow:
    """One event as the stream and the list show it."""

    seq: int
    at: float
    """Seconds from the run's first event."""
    kind: str
    phase: str | None
    role: str | None
    item: str | None
    attempt: int | None
    detail: str
    """A one-line summary of the payload."""
    data: str
    """The whole payload as indented JSON (secrets were scrubbed when it was journaled)."""
    artifact: str | None = None
    card: str | None = None
    child: str | None = None

    @property
    def item_key(self) -> str | None:
        """The item the event is about (its evaluator's events belong to it)."""
        return self.item.partition("#")[0] if self.item else None


_DETAIL_KEYS = (
    "outcome",
    "status",
    "reason",
    "correction",
    "to",
    "tool",
    "verb",
    "column",
    "title",
)


def _detail(event: Event) -> str:
    data = event.data
    parts = [f"{k}: {data[k]}" for k in _DETAIL_KEYS if isinstance(data.get(k), str) and data[k]]
    if event.kind is EventKind.PHASE_STARTED:
        parts.append(f"items: {data.get('items')}")
    usage = data.get("usage")
    if isinstance(usage, Mapping):
        parts.append(
            f"{usage.get('input_tokens', 0)}+{usage.get('output_tokens', 0)} tokens, "
            f"{fmt_usd(float(usage.get('usd', 0.0)))}"
        )
    text = " · ".join(parts)
    return text if len(text) <= 240 else text[:239] + "…"


def event_row(event: Event, origin: float) -> EventRow:
    data = event.data
    artifact = data.get("artifact_id") if isinstance(data.get("artifact_id"), str) else None
    card = data.get("card_id") if isinstance(data.get("card_id"), str) else None
    child = data.get("child_run") if event.kind is EventKind.CHILD_RUN_STARTED else None
    return EventRow(
        seq=event.seq,
        at=round(event.ts - origin, 3),
        kind=event.kind.value,
        phase=event.phase,
        role=event.role,
        item=event.item,
        attempt=event.attempt,
        detail=_detail(event),
        data=json.dumps(data, indent=2, ensure_ascii=False, default=str),
        artifact=artifact,
        card=card,
        child=child if isinstance(child, str) else None,
    )


def queue_rows(state: RunState) -> list[QueueRow]:
    """The retry and escalation queue: items waiting for a person, a retry, their provider or
    another round, in the order they started."""
    rows = []
    for item in state.items.values():
        card: str | None = None
        if item.status == "escalated":
            what, why = "escalated", item.reason
            card = card_id(state.run_id, item.key)
        elif item.status == "gated":
            what, why = "gated", f"waits for approval before {item.gate_role}"
            card = gate_card_id(state.run_id, item.key, item.gate_role or item.role)
        elif item.status == "answered":
            what, why = "answered", item.answer or "a corrected input"
            card = card_id(state.run_id, item.key)
        elif item.status == "requeued":
            what, why = "requeued", item.reason
        elif item.status == "running" and item.last_outcome in ("throttled", "unavailable"):
            what, why = "waiting", f"its provider was {item.last_outcome}"
        elif item.status == "running" and item.tries > 0:
            what, why = "retrying", item.correction or ""
        else:
            continue
        rows.append(
            QueueRow(
                item.key,
                item.phase,
                item.role,
                what,
                item.attempt,
                why,
                card if card in state.cards else None,
            )
        )
    return rows


@dataclass(frozen=True, slots=True)
class PhaseRow:
    name: str
    status: str
    counts: dict[str, int]
    in_flight: int
    concurrency: int | None
    usage: dict[str, Any]
    unpriced: bool
    seconds: float | None


@dataclass(frozen=True, slots=True)
class RoleRow:
    role: str
    model: str
    usage: dict[str, Any]
    unpriced: bool


@dataclass(frozen=True, slots=True)
class ChildRow:
    run_id: str
    item: str | None
    status: str
    workflow: str


@dataclass(slots=True)
class RunPage:
    """Everything the inspector page shows about one run."""

    record: RunRecord
    summary: Summary
    report: dict[str, Any]
    """`hubspoke show --json` of the run."""
    svg: str
    phases: list[PhaseRow]
    roles: list[RoleRow]
    queue: list[QueueRow]
    items: list[ItemRow]
    cards: list[Card]
    artifacts: list[Artifact]
    children: list[ChildRow]
    events: list[EventRow]
    """The events the filter selects."""
    last_seq: int
    """The newest event read: the live stream starts after it."""
    kinds: list[str] = field(default_factory=list)
    phase_names: list[str] = field(default_factory=list)
    role_names: list[str] = field(default_factory=list)
    hidden_events: int = 0
    """Selected events left out of `events` (older than the newest shown)."""

    @property
    def live(self) -> bool:
        """The run may still append events: the page follows its stream."""
        return self.summary.status == "running"


def inspect_run(
    record: RunRecord,
    events: Sequence[Event],
    *,
    artifacts: Sequence[Artifact] = (),
    cards: Sequence[Card] = (),
    children: Sequence[RunRecord] = (),
    held: bool = True,
    selected: Iterable[Event] | None = None,
    link: str = "",
) -> RunPage:
    """The inspector's view of a run.

    Args:
        record: the run.
        events: every event of the run, in order.
        artifacts: the run's artifacts; cards: its cards (`Store.cards`).
        children: the records of its sub-runs.
        held: a live process holds the run's lease.
        selected: the events to list (a filter's choice); all of them when None.
        link: the page's own path, which the spokes link to with a role filter.
    """
    fold = RunFold(record, held=held)
    fold.apply_all(events)
    state = fold.state
    report = run_report(record, events)
    unknown = report["unpriced"]
    origin = events[0].ts if events else record.created
    timeline = {t["phase"]: t.get("seconds") for t in report["timeline"]}
    phases = [
        PhaseRow(
            name,
            p["status"],
            {
                k: p[k]
                for k in ("items", "dispatched", "accepted", "retried", "escalated", "failed")
            },
            max(0, state.phases[name].in_flight),
            fold.concurrency.get(name),
            p["usage"],
            name in unknown["phases"],
            timeline.get(name),
        )
        for name, p in report["phases"].items()
    ]
    models = report.get("models") or {}
    roles = [
        RoleRow(
            role,
            str(models.get(role, {}).get("binding", ""))
            if isinstance(models.get(role), Mapping)
            else "",
            usage,
            role in unknown["roles"],
        )
        for role, usage in report["usage_by_role"].items()
    ]
    child_items: dict[str, list[str]] = {}
    for event in events:
        if event.kind is EventKind.CHILD_RUN_STARTED and event.item is not None:
            child_run = payload(event, EventKind.CHILD_RUN_STARTED)["child_run"]
            child_items.setdefault(event.item.partition("#")[0], []).append(child_run)
    cards_by_item: dict[str, list[str]] = {}
    for card in state.cards.values():
        cards_by_item.setdefault(card.item.partition("#")[0], []).append(card.card_id)
    costs = report["items"]
    items = [
        ItemRow(
            key,
            item.phase,
            item.role,
            item.status,
            item.attempt,
            float(costs.get(key, {}).get("usage", {}).get("usd", 0.0)),
            item.reason,
            item.artifact_id,
            cards_by_item.get(key, []),
            child_items.get(key, []),
        )
        for key, item in state.items.items()
    ]
    by_id = {c.run_id: c for c in children}
    child_rows = [
        ChildRow(
            run_id,
            by_id[run_id].parent_item if run_id in by_id else None,
            by_id[run_id].status if run_id in by_id else "missing",
            by_id[run_id].workflow if run_id in by_id else "",
        )
        for run_id in dict.fromkeys([*state.children, *by_id])
    ]
    shown = events if selected is None else list(selected)
    return RunPage(
        record=record,
        summary=fold.summary(),
        report=report,
        svg=fold.svg(link),
        phases=phases,
        roles=roles,
        queue=queue_rows(state),
        items=items,
        cards=list(cards),
        artifacts=list(artifacts),
        children=child_rows,
        events=[event_row(e, origin) for e in shown],
        last_seq=events[-1].seq if events else 0,
        kinds=sorted({e.kind.value for e in events}),
        phase_names=list(dict.fromkeys(e.phase for e in events if e.phase)),
        role_names=list(dict.fromkeys(e.role for e in events if e.role)),
    )
