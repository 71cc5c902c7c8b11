"""What the web app's pages show, built from the store and the fold of each run's journal.

No web framework here: the board's cards (`board_cards`, `card_view`) and the runs
(`run_rows`) as plain data the templates render, and the amend form's fields (`amend_fields`,
`edited_content`). Every value that came from a model stays a plain string: the templates
escape it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from hubspoke.artifacts import Artifact
from hubspoke.board import Card, Column
from hubspoke.cli.report import item_costs, run_row
from hubspoke.decisions import Decision, verbs_for
from hubspoke.events import Event, EventKind, payload
from hubspoke.journal import RunRecord, RunState
from hubspoke.journal.store import Store

__all__ = [
    "BOARD_COLUMNS",
    "PENDING",
    "RUNS_SHOWN",
    "CardView",
    "Field",
    "FormState",
    "RunRow",
    "amend_fields",
    "board_cards",
    "card_view",
    "edited_content",
    "run_rows",
]

BOARD_COLUMNS: Final[tuple[Column, ...]] = (
    Column.REVIEW,
    Column.ESCALATED,
    Column.PARKED,
    Column.APPROVED,
    Column.AMENDED,
    Column.SKIPPED,
    Column.ANSWERED,
)
"""The board's columns, left to right: what waits for a person first, then the decided."""

PENDING: Final = frozenset({Column.REVIEW, Column.PARKED, Column.ESCALATED})
"""Columns whose cards wait for a person's decision."""

CITING: Final = ("cite", "signal", "evidence", "source")
"""A field of an output whose name holds one of these cites something of its input."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field of the amend form: its name, how it is edited, and its text."""

    name: str
    kind: str
    """``line`` (a short string), ``text`` (a long one) or ``json`` (anything else, as JSON)."""
    value: str


@dataclass(frozen=True, slots=True)
class FormState:
    """What a refused or failed action leaves on its card: the typed text, each field's
    errors, and a message; so that nothing a person typed is lost."""

    values: Mapping[str, str] = field(default_factory=dict)
    """The amend form's fields as typed, by name; ``answer``, ``input``, ``note``, ``reason``."""
    errors: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Field name → its errors (``""`` for errors of the whole output)."""
    message: str = ""
    kind: str = "error"
    """``error`` (refused, nothing written) or ``done`` (a decision was written)."""
    open: str = ""
    """The form to show open: ``amend``, ``answer`` or ``abort``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CardView:
    """A card as the board shows it."""

    card: Card
    """The card, in the column the fold of its run puts it in."""
    workflow: str
    run_status: str
    role: str | None
    content: dict[str, Any] | None
    schema: str | None
    input: dict[str, Any] | None
    cited: list[tuple[str, str]]
    """(field, value) of the output's citing fields."""
    evidence: list[tuple[str, bool]]
    """The evidence strings of the item's input, each with whether the output cites it."""
    validator: str
    evaluator: str
    usage: dict[str, Any] | None
    decisions: tuple[Decision, ...]
    form: FormState = field(default_factory=FormState)

    @property
    def verbs(self) -> tuple[str, ...]:
        """The verbs the card takes now."""
        return verbs_for(self.card.column)

    @property
    def simple_verbs(self) -> tuple[str, ...]:
        """The verbs decided with a button (and an optional note)."""
        return tuple(v for v in self.verbs if v in ("approve", "park", "unpark", "skip"))

    @property
    def fields(self) -> list[Field]:
        """The amend form's fields, as typed if a refused edit left them, else as shown."""
        return amend_fields(self.content or {}, self.form.values)

    @property
    def input_json(self) -> str:
        return "" if self.input is None else json.dumps(self.input, indent=2, ensure_ascii=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRow:
    """One line of the runs page."""

    run_id: str
    workflow: str
    status: str
    created: float
    seconds: float
    input_tokens: int
    output_tokens: int
    usd: float
    pending: int
    """Cards of the run that wait for a person."""
    parent_run: str | None
    reason: str | None

    @property
    def waiting(self) -> bool:
        return self.status == "waiting" or self.pending > 0


# the board ---------------------------------------------------------------------------------------


def board_cards(
    store: Store, run: str | None = None, workflow: str | None = None
) -> list[CardView]:
    """Every card of the store (of run `run` and workflow `workflow`, if given), each with what
    a person needs to decide it; one fold per run."""
    cards = store.cards(run)
    by_run: dict[str, list[Card]] = {}
    for card in cards:
        by_run.setdefault(card.run_id, []).append(card)
    views: list[CardView] = []
    for run_id, run_cards in by_run.items():
        record = store.run(run_id)
        if record is None or (workflow and record.workflow != workflow):
            continue
        views += _run_cards(store, record, run_cards)
    return views


def card_state(view: CardView) -> str:
    """What the board shows of a card, in one string: ``ID:COLUMN:DECISIONS`` (its id, its
    column and how many decisions it has had). A board page carries each card's (``shown``), so
    that `board_changes` can say what changed since."""
    return f"{view.card.id}:{view.card.column.value}:{len(view.decisions)}"


@dataclass(frozen=True, slots=True)
class BoardChanges:
    """How the board now differs from what a page shows (card ids)."""

    new: tuple[str, ...]
    """Cards the page does not show: made since it was loaded."""
    decided: tuple[str, ...]
    """Cards the page shows in another column or with fewer decisions: decided elsewhere."""

    def __bool__(self) -> bool:
        return bool(self.new or self.decided)


def board_changes(cards: Iterable[CardView], shown: Iterable[str]) -> BoardChanges:
    """Compare the board's `cards` now with the `card_state` strings a page shows. A card the
    page shows that the board no longer lists is not a change worth a notice (a filter or a
    removed run); a malformed string counts as nothing shown."""
    seen: dict[str, str] = {}
    for text in shown:
        parts = text.rsplit(":", 2)  # an id may hold a colon; a column and a count do not
        if len(parts) == 3 and parts[0]:
            seen[parts[0]] = text
    new, decided = [], []
    for view in cards:
        was = seen.get(view.card.id)
        if was is None:
            new.append(view.card.id)
        elif was != card_state(view):
            decided.append(view.card.id)
    return BoardChanges(tuple(new), tuple(decided))


def card_view(store: Store, card: Card, form: FormState | None = None) -> CardView | None:
    """One card (found already: `Board.find`), as the board shows it; None if its run is gone."""
    record = store.run(card.run_id)
    if record is None:
        return None
    [view] = _run_cards(store, record, [card])
    return view if form is None else replace(view, form=form)


def _run_cards(store: Store, record: RunRecord, cards: Sequence[Card]) -> list[CardView]:
    events = store.events(record.run_id)
    state = RunState.fold(record.run_id, events)
    costs = item_costs(events)
    artifacts = {a.id: a for a in store.artifacts(record.run_id)}
    roles = _card_roles(events)
    decisions: dict[str, list[Decision]] = {}
    for event in events:
        if event.kind is EventKind.CARD_DECIDED:
            decision = Decision.of(event)
            decisions.setdefault(decision.card_id, []).append(decision)
    views = []
    for card in cards:
        current = state.cards.get(card.id)
        if current is not None:
            card = replace(card, column=Column(current.column), artifact_id=current.artifact_id)
        artifact = artifacts.get(card.artifact_id or "")
        content = None if artifact is None else artifact.content
        item_input = _latest_input(events, card.item)
        cited = _cited(content)
        views.append(
            CardView(
                card=card,
                workflow=record.workflow,
                run_status=state.status,
                role=roles.get(card.id),
                content=content,
                schema=None if artifact is None else artifact.schema,
                input=item_input,
                cited=cited,
                evidence=_evidence(item_input, [value for _, value in cited]),
                validator=_validator(events, card, artifact),
                evaluator=_evaluator(events, card.item),
                usage=(costs.get(card.item) or {}).get("usage"),
                decisions=tuple(decisions.get(card.id, ())),
            )
        )
    return views


def _card_roles(events: Iterable[Event]) -> dict[str, str | None]:
    return {
        payload(e, EventKind.CARD_CREATED)["card_id"]: e.role
        for e in events
        if e.kind is EventKind.CARD_CREATED
    }


def _latest_input(events: Sequence[Event], item: str) -> dict[str, Any] | None:
    for event in reversed(events):
        if event.kind is EventKind.DISPATCH_STARTED and event.item == item:
            return payload(event, EventKind.DISPATCH_STARTED)["input"]
    return None


def _cited(content: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """The output's fields that cite its input (by name: `CITING`), one per value."""
    found: list[tuple[str, str]] = []
    for name, value in (content or {}).items():
        if not any(word in name.lower() for word in CITING):
            continue
        values = value if isinstance(value, list) else [value]
        found += [(name, v) for v in values if isinstance(v, str) and v]
    return found


def _evidence(item_input: Any, cited: Sequence[str]) -> list[tuple[str, bool]]:
    """The strings of every ``evidence`` list in the input (at any depth), each marked when an
    output's citing value is in it; then any other input string a citation names."""
    found: list[tuple[str, bool]] = []
    seen: set[str] = set()

    def add(text: str) -> None:
        if text not in seen:
            seen.add(text)
            found.append((text, any(c in text for c in cited)))

    def walk(value: Any, under_evidence: bool) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(inner, under_evidence or "evidence" in str(key).lower())
        elif isinstance(value, list):
            for inner in value:
                walk(inner, under_evidence)
        elif isinstance(value, str) and (under_evidence or any(c in value for c in cited)):
            add(value)

    walk(item_input, False)
    return found


def _validator(events: Sequence[Event], card: Card, artifact: Artifact | None) -> str:
    """What validation said of the item's outputs: which attempt passed, and why earlier ones
    were refused."""
    outcomes = [
        payload(e, EventKind.DISPATCH_FINISHED)["outcome"]
        for e in events
        if e.kind is EventKind.DISPATCH_FINISHED and e.item == card.item
    ]
    refused = [
        "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())) or 'output'}: {err.get('msg', '')}"
            for err in payload(e, EventKind.OUTPUT_INVALID)["errors"]
        )
        for e in events
        if e.kind is EventKind.OUTPUT_INVALID and e.item == card.item
    ]
    earlier = f"; refused before: {' | '.join(refused)}" if refused else ""
    if artifact is not None:
        schema = artifact.schema.rsplit(".", 1)[-1]
        return f"valid {schema} on attempt {len(outcomes) or 1}{earlier}"
    if not outcomes:
        return "not dispatched yet"
    return f"no valid output after {len(outcomes)} attempt(s): {', '.join(outcomes)}{earlier}"


def _evaluator(events: Sequence[Event], item: str) -> str:
    """What the phase's evaluator said of the item's outputs, if the phase has one."""
    judged = sum(
        1 for e in events if e.kind is EventKind.DISPATCH_FINISHED and e.item == f"{item}#eval"
    )
    rejections = [
        payload(e, EventKind.EVALUATOR_REJECTED)
        for e in events
        if e.kind is EventKind.EVALUATOR_REJECTED and e.item == item
    ]
    if not judged and not rejections:
        return "no evaluator judged it"
    said = f"judged {judged} time(s)"
    if rejections:
        critiques = " | ".join(r["critique"] for r in rejections)
        said += f", rejected {len(rejections)}: {critiques}"
    accepted = any(e.kind is EventKind.ITEM_ACCEPTED and e.item == item for e in events)
    return said + (", accepted" if accepted else "")


# the amend form ----------------------------------------------------------------------------------


def amend_fields(content: Mapping[str, Any], typed: Mapping[str, str]) -> list[Field]:
    """The amend form's fields for an output: a string field as a line (or a text area when
    long or multi-line), anything else as JSON; each with its typed text when there is one."""
    fields = []
    for name, value in content.items():
        key = f"field.{name}"
        if isinstance(value, str):
            kind = "text" if len(value) > 80 or "\n" in value else "line"
            text = value
        else:
            kind, text = "json", json.dumps(value, ensure_ascii=False)
        fields.append(Field(name, kind, typed.get(key, text)))
    return fields


def edited_content(
    content: Mapping[str, Any], form: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The output an amend form gives: each field of `content` from the form's
    ``field.NAME`` (a string field taken as typed, line ends normalised to ``\\n``; any other
    parsed as JSON), or as it was when the form lacks it. Returns the edit and the errors of
    fields that are not JSON (by field name)."""
    edit: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, value in content.items():
        raw = form.get(f"field.{name}")
        if raw is None:
            edit[name] = value
            continue
        raw = raw.replace("\r\n", "\n")
        if isinstance(value, str):
            edit[name] = raw
            continue
        try:
            edit[name] = json.loads(raw)
        except ValueError as e:
            quoted = json.dumps(raw[:40], ensure_ascii=False) + ("…" if len(raw) > 40 else "")
            errors[name] = [
                f'not JSON ({e}); write it as JSON, e.g. 0.8, true, ["a"], or a text as {quoted}'
            ]
    return edit, errors


# the runs ----------------------------------------------------------------------------------------


RUNS_SHOWN = 200
"""The most runs the runs page lists, newest first."""
RUNS_SCANNED: Final = 1_000_000
"""The most runs' records a filter looks through (only the matching ones are folded)."""


def run_rows(
    store: Store, status: str | None = None, workflow: str | None = None, limit: int | None = None
) -> list[RunRow]:
    """The newest `limit` runs (`RUNS_SHOWN` when None) of `status` and `workflow`, if given,
    with what they spent and the cards that wait for a person. A filter looks through every
    run, not only the newest `limit`. A run still ``running`` that no process holds shows as
    ``stopped`` (`hubspoke runs` says the same)."""
    limit = RUNS_SHOWN if limit is None else limit
    rows: list[RunRow] = []
    for record in store.runs(RUNS_SCANNED if status or workflow else limit):
        if len(rows) >= limit:
            break
        if workflow and record.workflow != workflow:
            continue
        shown = run_row(record, store.holder(record.run_id))["status"]
        if status and shown != status:
            continue
        state = RunState.fold(record.run_id, store.events(record.run_id))
        usage = state.usage
        rows.append(
            RunRow(
                run_id=record.run_id,
                workflow=record.workflow,
                status=shown,
                created=record.created,
                seconds=round(state.elapsed, 3),
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                usd=usage.usd,
                pending=sum(1 for c in state.cards.values() if Column(c.column) in PENDING),
                parent_run=record.parent_run,
                reason=state.reason,
            )
        )
    return rows
