"""People's decisions on the board: approve, amend, park, unpark, skip, answer, abort.

A decision is a journal event (`card.decided`) of the card's run, so that the run's state stays
the fold of its journal: `Board` takes the run's lease (a run a live process drives is refused
with `RunLocked`), folds the journal, checks the verb against the card's column, and appends the
event through a `Journal` (secrets scrubbed, numbered after the last event) together with the
card's new row and, for an amend, the amended output as a new artifact. What each verb does:

| column | verbs |
| --- | --- |
| review | approve → approved, amend → amended, park → parked, skip → skipped |
| parked | unpark → review, approve → approved, amend → amended, skip → skipped |
| escalated | answer → answered, skip → skipped, abort → skipped (and the run ends aborted) |

Any other (verb, column) pair is refused with `DecisionRefused`, naming the verbs the column
takes; a refused decision writes nothing.
"""

from __future__ import annotations

import copy
import importlib
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from hubspoke.artifacts import Artifact, artifact_id
from hubspoke.board import Card, Column
from hubspoke.errors import AmendRefused, CardNotFound, DecisionRefused, RunLocked
from hubspoke.events import CardDecided, Event, EventKind, payload
from hubspoke.journal.redaction import Redactor
from hubspoke.journal.state import CardState, RunState
from hubspoke.journal.store import Store
from hubspoke.journal.writer import Journal
from hubspoke.jsontext import check_json_value, parse

if TYPE_CHECKING:
    from pydantic import BaseModel

    from hubspoke.workflow import Workflow

__all__ = ["MOVES", "Board", "CardDetail", "Decision", "parse_field_value", "set_fields"]

MOVES: Final[Mapping[str, Mapping[Column, Column]]] = {
    "approve": {Column.REVIEW: Column.APPROVED, Column.PARKED: Column.APPROVED},
    "amend": {Column.REVIEW: Column.AMENDED, Column.PARKED: Column.AMENDED},
    "park": {Column.REVIEW: Column.PARKED},
    "unpark": {Column.PARKED: Column.REVIEW},
    "skip": {
        Column.REVIEW: Column.SKIPPED,
        Column.PARKED: Column.SKIPPED,
        Column.ESCALATED: Column.SKIPPED,
    },
    "answer": {Column.ESCALATED: Column.ANSWERED},
    "abort": {Column.ESCALATED: Column.SKIPPED},
}
"""Each verb: the columns it takes a card from, and the column it moves the card to."""


def verbs_for(column: Column | str) -> tuple[str, ...]:
    """The verbs a card in `column` takes, in the order of `MOVES`."""
    return tuple(verb for verb, moves in MOVES.items() if Column(column) in moves)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """One decision on a card, as its `card.decided` event records it (scrubbed of secrets)."""

    run_id: str
    decision_id: str
    """``{card_id}/{n}``: the card's n-th decision, from 1."""
    card_id: str
    verb: str
    by: str
    before: str
    """The card's column before (a `Column` value)."""
    after: str
    """Its column after."""
    note: str = ""
    content: dict[str, Any] | None = None
    """Amend: the amended output, by field name."""
    artifact_id: str | None = None
    """Amend: the artifact that holds `content`."""
    answer: str | None = None
    """Answer: the text the item's next attempt gets."""
    input: dict[str, Any] | None = None
    """Answer: the corrected input for the item's next attempt."""
    seq: int = 0
    """The event's place in the run's journal."""
    ts: float = 0.0
    """When it was decided (Unix time, seconds)."""

    @classmethod
    def of(cls, event: Event) -> Decision:
        """The decision a `card.decided` event records.

        Raises:
            ValueError: the event is of another kind.
        """
        decided = payload(event, EventKind.CARD_DECIDED)
        return cls(
            run_id=event.run_id,
            decision_id=decided["decision_id"],
            card_id=decided["card_id"],
            verb=decided["verb"],
            by=decided["by"],
            before=decided["before"],
            after=decided["after"],
            note=decided.get("note", ""),
            content=decided.get("content"),
            artifact_id=decided.get("artifact_id"),
            answer=decided.get("answer"),
            input=decided.get("input"),
            seq=event.seq,
            ts=event.ts,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON values, keys as the fields (`None` fields left out)."""
        fields = {
            "run_id": self.run_id,
            "decision_id": self.decision_id,
            "card_id": self.card_id,
            "verb": self.verb,
            "by": self.by,
            "before": self.before,
            "after": self.after,
            "note": self.note,
            "content": self.content,
            "artifact_id": self.artifact_id,
            "answer": self.answer,
            "input": self.input,
            "seq": self.seq,
            "ts": self.ts,
        }
        return {k: v for k, v in fields.items() if v is not None}


@dataclass(frozen=True, slots=True, kw_only=True)
class CardDetail:
    """A card with what a person needs to decide it (`Board.card`, `hubspoke card show`)."""

    card: Card
    """The card, in the column the run's journal puts it in now."""
    role: str | None
    """The role whose output (review) or item (escalated) the card shows."""
    run_status: str
    """The run's status (its journal's fold)."""
    content: dict[str, Any] | None
    """The output the card shows now (the amended one after an amend); None for an escalated
    card."""
    schema: str | None
    """The output's schema, as ``module.Qualname``."""
    input: dict[str, Any] | None
    """The item's latest input (what an answer's corrected input replaces), if it was
    dispatched."""
    decisions: tuple[Decision, ...] = field(default_factory=tuple)
    """Its decisions so far, oldest first."""

    @property
    def verbs(self) -> tuple[str, ...]:
        """The verbs the card takes now."""
        return verbs_for(self.card.column)

    def to_dict(self) -> dict[str, Any]:
        """JSON values: the card's fields, then `content`, `input`, `decisions` and `verbs`."""
        card = self.card
        return {
            "id": card.id,
            "run_id": card.run_id,
            "phase": card.phase,
            "item": card.item,
            "role": self.role,
            "column": card.column.value,
            "title": card.title,
            "risk": card.risk,
            "note": card.note,
            "created": card.created,
            "run_status": self.run_status,
            "artifact_id": card.artifact_id,
            "schema": self.schema,
            "content": self.content,
            "input": self.input,
            "decisions": [d.to_dict() for d in self.decisions],
            "verbs": list(self.verbs),
        }


class Board:
    """The review board of a store: its cards, and the decisions people make on them.

    Each verb returns the `Decision` it journaled, or raises and writes nothing.

    Args:
        store: the store the runs are in.
        workflow: the workflow of the runs decided on, if at hand: an amend is validated
            against the output schema of its role (and an answer's corrected input against the
            input schema) for runs of a workflow with its name. Without it, an amend imports
            the schema the artifact names (``module.Qualname``); an answer's corrected input
            needs it.
        secrets: what is scrubbed from what a decision writes; by default the rules of the
            foreman's default (`Redactor()` plus the ``[secrets]`` table of hubspoke.toml).
    """

    def __init__(
        self, store: Store, *, workflow: Workflow | None = None, secrets: Redactor | None = None
    ) -> None:
        self.store = store
        self.workflow = workflow
        self._secrets = secrets

    # reading ----------------------------------------------------------------------------------

    def cards(self, run_id: str | None = None, column: Column | str | None = None) -> list[Card]:
        """The cards of one run (or every run's), by `created` then item; only those in
        `column`, if given.

        Raises:
            ValueError: `column` is not a column's name.
        """
        wanted = None if column is None else _column(column)
        return [c for c in self.store.cards(run_id) if wanted is None or c.column is wanted]

    def find(self, card_id: str) -> Card:
        """The card whose id is `card_id`, or the only one whose id starts with it.

        Raises:
            CardNotFound: no card matches, or several do (the message lists some).
        """
        cards = self.store.cards()
        for card in cards:
            if card.id == card_id:
                return card
        matches = [c for c in cards if c.id.startswith(card_id)] if card_id else []
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise CardNotFound(
                f"no card {card_id!r} on the board; list the cards with `hubspoke board` "
                "(Board.cards()) and give a card id, or a prefix of one"
            )
        shown = ", ".join(c.id for c in matches[:5]) + (", ..." if len(matches) > 5 else "")
        raise CardNotFound(
            f"{card_id!r} matches {len(matches)} cards ({shown}); give more of the card id"
        )

    def card(self, card_id: str) -> CardDetail:
        """The card (id or unique prefix) with its output, its item's input and its decisions.

        Raises:
            CardNotFound: as for `find`.
        """
        card = self.find(card_id)
        events = self.store.events(card.run_id)
        state = RunState.fold(card.run_id, events)
        current = state.cards.get(card.id)
        if current is not None:
            card = replace(card, column=Column(current.column), artifact_id=current.artifact_id)
        artifact = self._artifact(card, card.artifact_id)
        decisions = tuple(
            Decision.of(e)
            for e in events
            if e.kind is EventKind.CARD_DECIDED
            and payload(e, EventKind.CARD_DECIDED)["card_id"] == card.id
        )
        return CardDetail(
            card=card,
            role=_card_role(events, card),
            run_status=state.status,
            content=None if artifact is None else artifact.content,
            schema=None if artifact is None else artifact.schema,
            input=_latest_input(events, card.item),
            decisions=decisions,
        )

    def check(self, card_id: str, verb: str) -> Card:
        """The card, if its column takes `verb` now: a cheap check before asking a person for
        an edit or an answer (the verb checks again, under the run's lease).

        Raises:
            CardNotFound: as for `find`.
            DecisionRefused: the card's column does not take `verb`.
            ValueError: `verb` is not one of `MOVES`.
        """
        if verb not in MOVES:
            raise ValueError(f"unknown verb {verb!r}; the verbs are: {', '.join(MOVES)}")
        card = self.find(card_id)
        state = RunState.fold(card.run_id, self.store.events(card.run_id))
        current = state.cards.get(card.id)
        column = Column(current.column) if current is not None else card.column
        if column not in MOVES[verb]:
            raise DecisionRefused(_refusal(card.id, verb, column))
        return card

    # the verbs --------------------------------------------------------------------------------

    def approve(self, card_id: str, *, by: str, note: str = "") -> Decision:
        """Approve a card's output as it is (review or parked → approved).

        Raises:
            CardNotFound: as for `find`.
            DecisionRefused: the card's column does not take the verb, or `by` is empty.
            RunLocked: a live process drives the card's run: decide when it waits or ends.
        """
        return self._decide(card_id, "approve", by, note)

    def amend(
        self,
        card_id: str,
        content: Mapping[str, Any] | None = None,
        *,
        set: Mapping[str, str] | None = None,
        by: str,
        note: str = "",
    ) -> Decision:
        """Replace a card's output with an edited one (review or parked → amended).

        The edit is `content` (the whole output, by field name), or the card's current output
        with the fields in `set` changed, or `content` with `set` applied on top. A key of
        `set` is a field name or a dotted path into nested objects and lists
        (``contact.email``, ``evidence.0``); a value is read as JSON when it parses
        (``0.8``, ``true``, ``["a"]``, ``"\\"42\\""``), else taken as the string it is. The
        whole edited output is then validated strictly against the role's output schema and
        stored as a new artifact, whose id the decision carries.

        Raises:
            AmendRefused: the edit does not fit the schema, or a path of `set` names no field:
                `errors` has each field's error; nothing was written.
            DecisionRefused: no edit given, the edit changes nothing, the column does not take
                the verb, `by` is empty, or the schema cannot be found (give `workflow`).
            CardNotFound, RunLocked: as for `approve`.
        """
        if content is None and not set:
            raise DecisionRefused(
                "give the amended output (content={...}) or the fields to change "
                "(set={'field': 'value'}); nothing was written"
            )
        edit = None if content is None else dict(content)
        sets = dict(set or {})

        def amended(ctx: _Deciding) -> tuple[dict[str, Any], Artifact]:
            from hubspoke.foreman import format_errors, validate_output

            card = ctx.card
            current = self._artifact(card, ctx.current.artifact_id)
            if current is None:
                raise DecisionRefused(
                    f"card {card.id} shows no stored output to amend (artifact "
                    f"{ctx.current.artifact_id!r} is not in the store); skip it instead"
                )
            base = copy.deepcopy(edit if edit is not None else current.content)
            set_fields(base, sets)
            schema = self._output_schema(ctx, current)
            model, errors = validate_output(schema, base)
            if model is None:
                raise AmendRefused(
                    f"the amended output of card {card.id} does not fit {current.schema}: "
                    f"{format_errors(errors)}. Nothing was written; fix these fields and amend "
                    "again",
                    errors,
                )
            dropped = dropped_keys(base, model)
            if dropped:
                raise AmendRefused(
                    f"the amended output of card {card.id} has fields {current.schema} does not "
                    f"keep: {', '.join(dropped)}. Nothing was written; remove them or name fields "
                    "as the output has them (`hubspoke card show ID` lists them)",
                    [
                        {"loc": path.split("."), "msg": "no such field", "type": "unknown_field"}
                        for path in dropped
                    ],
                )
            text = model.model_dump_json()
            value = parse(text)
            if value == current.content:
                raise DecisionRefused(
                    f"the amended output of card {card.id} is the one it shows already: nothing "
                    "to amend; approve the card to take it as it is"
                )
            artifact = Artifact(
                id=artifact_id(card.run_id, card.item, text),
                run_id=card.run_id,
                phase=current.phase,
                role=current.role,
                item=card.item,
                schema=current.schema,
                content=value,
                created=time.time(),
                content_json=text,
            )
            return {"content": value, "artifact_id": artifact.id}, artifact

        return self._decide(card_id, "amend", by, note, amended)

    def park(self, card_id: str, *, by: str, note: str = "") -> Decision:
        """Put a card aside, undecided (review → parked).

        Raises:
            CardNotFound, DecisionRefused, RunLocked: as for `approve`.
        """
        return self._decide(card_id, "park", by, note)

    def unpark(self, card_id: str, *, by: str, note: str = "") -> Decision:
        """Bring a parked card back to review (parked → review).

        Raises:
            CardNotFound, DecisionRefused, RunLocked: as for `approve`.
        """
        return self._decide(card_id, "unpark", by, note)

    def skip(self, card_id: str, *, by: str, note: str = "") -> Decision:
        """Drop a card: its output is not used (review or parked → skipped), or its escalated
        item ends without one (escalated → skipped).

        Raises:
            CardNotFound, DecisionRefused, RunLocked: as for `approve`.
        """
        return self._decide(card_id, "skip", by, note)

    def answer(
        self,
        card_id: str,
        text: str | None = None,
        *,
        input: Mapping[str, Any] | None = None,
        by: str,
    ) -> Decision:
        """Answer an escalated item (escalated → answered): `text` for its next attempt to
        read, or a corrected `input` (by field name) for it to run on, validated strictly
        against the input schema of the item's role (which needs the board's `workflow`).

        Raises:
            DecisionRefused: not exactly one of `text` and `input`, an empty text, an input
                that does not fit the schema (`errors` has each field's error), no workflow to
                check the input with; and as for `approve`.
            CardNotFound, RunLocked: as for `approve`.
        """
        if (text is None) == (input is None):
            raise DecisionRefused(
                "answer with exactly one of: text (what the item's next attempt reads) or "
                "input={...} (a corrected input for it); nothing was written"
            )
        if text is not None and not text.strip():
            raise DecisionRefused("the answer is empty: say what the item should do")
        corrected = None if input is None else dict(input)

        def answered(ctx: _Deciding) -> tuple[dict[str, Any], Artifact | None]:
            if corrected is None:
                assert text is not None
                return {"answer": text}, None
            from hubspoke.foreman import format_errors, validate_output

            schema = self._input_schema(ctx)
            model, errors = validate_output(schema, corrected)
            if model is None:
                raise DecisionRefused(
                    f"the corrected input for card {ctx.card.id} does not fit "
                    f"{schema.__module__}.{schema.__qualname__}: {format_errors(errors)}. "
                    "Nothing was written; fix these fields and answer again",
                    errors,
                )
            return {"input": parse(model.model_dump_json())}, None

        return self._decide(card_id, "answer", by, "", answered)

    def abort(self, card_id: str, *, by: str, reason: str) -> Decision:
        """Give up on an escalated item and its whole run (escalated → skipped): the run ends
        ``aborted`` with `reason`, in the same transaction (its unfinished phases
        ``stopped``).

        Raises:
            DecisionRefused: `reason` is empty; and as for `approve`.
            CardNotFound, RunLocked: as for `approve`.
        """
        if not reason.strip():
            raise DecisionRefused("say why the run is aborted (reason=...); nothing was written")
        return self._decide(card_id, "abort", by, reason)

    # how a decision is made -------------------------------------------------------------------

    def _decide(
        self,
        card_id: str,
        verb: str,
        by: str,
        note: str,
        build: Callable[[_Deciding], tuple[dict[str, Any], Artifact | None]] | None = None,
    ) -> Decision:
        """Take the run's lease, fold, check the verb against the column, build the verb's
        payload (`build`, which may refuse), and write the event with the card (and artifact)
        in one transaction."""
        who = by.strip() if isinstance(by, str) else ""
        if not who:
            raise DecisionRefused(
                f"say who decides (by='name'; the CLI's --by, by default $USER): card {card_id}"
            )
        card = self.find(card_id)
        run_id = card.run_id
        lease = uuid.uuid4().hex
        holder = self.store.acquire(run_id, lease)
        if holder is not None:
            raise RunLocked(
                f"run {run_id} of card {card.id} is held by {holder}, which is driving it now; "
                "decide its cards when the run waits for people or has ended (see hubspoke "
                "runs). Nothing was written"
            )
        try:
            events = self.store.events(run_id)
            state = RunState.fold(run_id, events)
            current = state.cards.get(card.id) or CardState(
                card.id, card.item, card.phase, card.column.value, card.artifact_id
            )
            before = Column(current.column)
            after = MOVES[verb].get(before)
            if after is None:
                raise DecisionRefused(_refusal(card.id, verb, before))
            ctx = _Deciding(card, current, state, events)
            extra, artifact = build(ctx) if build is not None else ({}, None)
            data: CardDecided = {
                "decision_id": f"{card.id}/{current.decisions + 1}",
                "card_id": card.id,
                "verb": verb,
                "by": who,
                "before": before.value,
                "after": after.value,
            }
            if note:
                data["note"] = note
            data.update(extra)  # type: ignore[typeddict-item]  # the verb's keys of CardDecided
            journal = Journal(self.store, state, redactor=self._redactor(), deferred=True)
            stored = replace(
                card,
                column=after,
                note=note,
                artifact_id=artifact.id if artifact is not None else current.artifact_id,
            )
            event = journal.emit(
                EventKind.CARD_DECIDED,
                phase=card.phase,
                role=_card_role(events, card),
                item=card.item,
                data=data,
                card=stored,
                artifact=artifact,
            )
            if verb == "abort" and state.status != "aborted":
                _abort_run(journal, f"aborted by {who} from card {card.id}: {note}")
            journal.close()
        finally:
            self.store.release(run_id, lease)
        return Decision.of(event)

    def _redactor(self) -> Redactor:
        if self._secrets is None:
            from hubspoke.models.config import Config

            found = Config.load().secrets
            self._secrets = Redactor(extra_names=found.names, patterns=found.patterns)
        return self._secrets

    def _artifact(self, card: Card, aid: str | None) -> Artifact | None:
        if aid is None:
            return None
        return next((a for a in self.store.artifacts(card.run_id, card.phase) if a.id == aid), None)

    def _workflow_for(self, ctx: _Deciding) -> Workflow | None:
        """The board's workflow if it is the one the card's run was started with (by name)."""
        wf = self.workflow
        return wf if wf is not None and wf.name == ctx.state.workflow else None

    def _output_schema(self, ctx: _Deciding, artifact: Artifact) -> type[BaseModel]:
        wf = self._workflow_for(ctx)
        if wf is not None:
            phase = next((p for p in wf.phases if p.name == ctx.card.phase), None)
            if phase is not None and phase.route_by and ctx.card.item == f"{phase.name}[result]":
                from hubspoke.router import Result  # a routed phase's result, in its schema

                return phase.returns or Result
            roles = {r.name: r for r in wf.roles}
            role = roles.get(artifact.role) or _phase_role(wf, ctx.card.phase)
            if role is not None:
                return role.output
        return _import_schema(artifact.schema, ctx.card.id)

    def _input_schema(self, ctx: _Deciding) -> type[BaseModel]:
        wf = self._workflow_for(ctx)
        if wf is None:
            given = "" if self.workflow is None else f" (the board's is {self.workflow.name!r})"
            raise DecisionRefused(
                f"cannot check a corrected input for card {ctx.card.id} without its run's "
                f"workflow {ctx.state.workflow!r}{given}: give it (Board(store, workflow=...); "
                "the CLI loads the run's own, or --workflow FILE.py:NAME), or answer with text"
            )
        roles = {r.name: r for r in wf.roles}
        item = ctx.state.items.get(ctx.card.item)
        role = roles.get(item.role) if item is not None else None
        role = role or roles.get(_card_role(ctx.events, ctx.card) or "")
        role = role or _phase_role(wf, ctx.card.phase)
        if role is None:
            raise DecisionRefused(
                f"workflow {wf.name!r} has no phase {ctx.card.phase!r} for card {ctx.card.id}: "
                "give the workflow the run was started with"
            )
        return role.input


@dataclass(frozen=True, slots=True)
class _Deciding:
    """What a verb's payload is built from: the card, where the fold has it, the run."""

    card: Card
    current: CardState
    state: RunState
    events: Sequence[Event]


def _column(column: Column | str) -> Column:
    try:
        return Column(column)
    except ValueError:
        names = ", ".join(c.value for c in Column)
        raise ValueError(f"unknown column {column!r}; the columns are: {names}") from None


def _refusal(card_id: str, verb: str, column: Column) -> str:
    verbs = verbs_for(column)
    where = ", ".join(c.value for c in MOVES[verb])
    if verbs:
        return (
            f"cannot {verb} card {card_id}: it is in column {column.value!r}, which takes "
            f"{', '.join(verbs)} ({verb} takes cards in {where}); nothing was written"
        )
    return (
        f"cannot {verb} card {card_id}: it is in column {column.value!r}, decided already, and "
        f"takes no more decisions ({verb} takes cards in {where}); see its decisions with "
        "`hubspoke card show`"
    )


def _card_role(events: Sequence[Event], card: Card) -> str | None:
    for event in events:
        if (
            event.kind is EventKind.CARD_CREATED
            and payload(event, EventKind.CARD_CREATED)["card_id"] == card.id
        ):
            return event.role
    return None


def _latest_input(events: Sequence[Event], item: str) -> dict[str, Any] | None:
    for event in reversed(events):
        if event.kind is EventKind.DISPATCH_STARTED and event.item == item:
            return payload(event, EventKind.DISPATCH_STARTED)["input"]
    return None


def _phase_role(wf: Workflow, phase: str) -> Any:
    """The role card of the workflow's phase `phase`, or None."""
    for p in wf.phases:
        if p.name == phase:
            return next((r for r in wf.roles if r.name == p.role), None)
    return None


def _import_schema(path: str, card_id: str) -> type[BaseModel]:
    """The class an artifact's ``module.Qualname`` names (the longest importable module)."""
    from pydantic import BaseModel

    parts = path.split(".")
    problem = "no module of it can be imported"
    for cut in range(len(parts) - 1, 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                found = getattr(found, name)
        except AttributeError as e:
            problem = str(e)
            break
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
        problem = f"it is a {type(found).__name__}, not a pydantic model"
        break
    raise DecisionRefused(
        f"cannot check the amend of card {card_id}: its schema {path} cannot be found "
        f"({problem}). Give the run's workflow: Board(store, workflow=...), or hubspoke card "
        "amend --workflow FILE.py:NAME. Nothing was written"
    )


def _abort_run(journal: Journal, reason: str) -> None:
    """End the run `aborted`: its unfinished phases `stopped`, as the foreman ends a run."""
    for name, phase in journal.state.phases.items():
        if phase.status == "running":
            journal.emit(
                EventKind.PHASE_FINISHED, phase=name, data={"status": "stopped", "reason": reason}
            )
    journal.emit(EventKind.RUN_FINISHED, data={"status": "aborted", "reason": reason})


# --set field=value ---------------------------------------------------------------------------


def parse_field_value(text: str) -> Any:
    """A value given for a field: JSON when it parses as JSON (numbers, booleans, null,
    quoted strings, lists, objects), else the text itself as a string. NaN and Infinity are
    not JSON: taken as text."""

    def refuse(constant: str) -> Any:
        raise ValueError(constant)

    try:
        value = json.loads(text, parse_constant=refuse)
        check_json_value(value)
    except (ValueError, RecursionError):
        return text
    return value


def dropped_keys(edited: Any, model: BaseModel) -> list[str]:
    """The dotted paths of object keys in `edited` that `model` (validated from it) no longer
    has: fields a schema that ignores extra keys (pydantic's default) would drop silently. A key
    counts as kept when the model has it under its field name or its alias.

    A person's edit must lose nothing: an unknown key is refused, never dropped.
    """
    names = model.model_dump(mode="json", round_trip=True)
    aliases = model.model_dump(mode="json", round_trip=True, by_alias=True)
    out: list[str] = []
    _walk_dropped(edited, names, aliases, [], out)
    return out


def _walk_dropped(edited: Any, names: Any, aliases: Any, path: list[str], out: list[str]) -> None:
    if isinstance(edited, dict):
        for key, value in edited.items():
            in_names = isinstance(names, dict) and key in names
            in_aliases = isinstance(aliases, dict) and key in aliases
            if not (in_names or in_aliases):
                out.append(".".join([*path, str(key)]))
                continue
            _walk_dropped(
                value,
                names[key] if in_names else None,
                aliases[key] if in_aliases else None,
                [*path, str(key)],
                out,
            )
    elif isinstance(edited, list):
        for i, value in enumerate(edited):
            _walk_dropped(
                value,
                names[i] if isinstance(names, list) and i < len(names) else None,
                aliases[i] if isinstance(aliases, list) and i < len(aliases) else None,
                [*path, str(i)],
                out,
            )


def set_fields(content: dict[str, Any], sets: Mapping[str, str]) -> None:
    """Set each dotted field path of `sets` in `content` (in place) to its parsed value
    (`parse_field_value`). A path walks objects by field name and lists by index from 0; its
    last part may name a field the object lacks (the schema then judges it).

    Raises:
        AmendRefused: a path is empty, or walks through a field that is missing, an index out
            of range, or a value that is neither an object nor a list; `errors` has one entry
            per such path (``loc`` the path, ``msg``, ``type`` ``path``). Nothing is set when
            any path is wrong.
    """
    errors: list[dict[str, Any]] = []
    planned: list[tuple[dict[str, Any] | list[Any], str | int, Any]] = []
    for path, raw in sets.items():
        parts = path.split(".")
        if not all(parts):
            errors.append(_path_error(path, "a field path is names joined by dots, e.g. a.b"))
            continue
        target: Any = content
        walked: list[str] = []
        for part in parts[:-1]:
            step = _step(target, part)
            if isinstance(step, str):
                errors.append(_path_error(path, f"{'.'.join(walked) or 'the output'} {step}"))
                break
            target = step[0]
            walked.append(part)
        else:
            last = parts[-1]
            where = ".".join(walked) or "the output"
            if isinstance(target, list):
                if not (last.isdigit() and int(last) < len(target)):
                    errors.append(_path_error(path, f"{where} has no item {last}"))
                    continue
                planned.append((target, int(last), parse_field_value(raw)))
            elif isinstance(target, dict):
                planned.append((target, last, parse_field_value(raw)))
            else:
                errors.append(
                    _path_error(path, f"{where} is a {_json_type(target)}, not an object")
                )
    if errors:
        from hubspoke.foreman import format_errors

        raise AmendRefused(
            f"cannot set {format_errors(errors)}. Nothing was written; name fields as the "
            "output has them (`hubspoke card show ID` lists them)",
            errors,
        )
    for container, key, value in planned:
        container[key] = value  # type: ignore[index]  # a list's key is an int, a dict's a str


def _step(target: Any, part: str) -> tuple[Any] | str:
    """One step down a field path: the value under `part`, or why there is none."""
    if isinstance(target, dict):
        return (target[part],) if part in target else f"has no field {part!r}"
    if isinstance(target, list):
        if part.isdigit() and int(part) < len(target):
            return (target[int(part)],)
        return f"has no item {part} (a list of {len(target)})"
    return f"is a {_json_type(target)}, not an object"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else type(value).__name__


def _path_error(path: str, msg: str) -> dict[str, Any]:
    return {"loc": path.split("."), "msg": msg, "type": "path"}
