"""The journal writer: numbers events, folds them into the live state, and persists in batches.

`emit` is on the foreman's hot path, so it only appends to a buffer; the first event of a loop
iteration schedules one `flush` with `call_soon`, so everything decided in that iteration is
written in a single transaction; an iteration that decides more is written in slices at the
foreman's checkpoints (a dispatch about to wait), never between two events of one decision.
Order is kept, so what is durable is always a prefix of what was decided, cut where the run
could have been killed. Secrets are scrubbed (`hubspoke.journal.redaction`) from event data as
it is emitted, before the live state, the listeners or the store see it, and from artifacts and
cards as they are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import replace
from typing import Any, Literal, TypedDict, Unpack, overload

from pydantic_core import to_json

from hubspoke import events as ev
from hubspoke.artifacts import Artifact
from hubspoke.board import Card
from hubspoke.errors import JournalWriteError
from hubspoke.events import Event, EventKind, TextEvent, payload
from hubspoke.journal.redaction import Redactor
from hubspoke.journal.state import RunState
from hubspoke.journal.store import Store
from hubspoke.outbox import OutboxEntry

__all__ = ["Held", "Journal", "JournalWriteError", "Redactor", "held_checkpoints"]


Listener = Callable[[Event], None]


class Where(TypedDict, total=False):
    """Where an event happened, and what it announces (the keyword arguments of `emit`)."""

    phase: str | None
    role: str | None
    item: str | None
    """The item's key."""
    attempt: int | None
    artifact: Artifact | None
    """An accepted output, written with the event (`item.accepted`)."""
    card: Card | None
    """A card, written with the event (`card.created`, `card.decided`)."""
    outbox: OutboxEntry | None
    """A message for the outbox, written with the event (ignored if its key is stored)."""
    encoded: str | None
    """`data` as JSON text, when the caller already has it as `emit` would write it
    (``to_json(data, fallback=str, inf_nan_mode="null")``, which a value read back from such a
    text writes again unchanged): not encoded again. The foreman journals a specialist's trace
    entries so, from the text the trace keeps them as."""


_RUN_FINISHED = EventKind.RUN_FINISHED
"""Read once per event: on Python 3.11 each `EventKind.X` goes through the enum metaclass's
`__getattr__` hook (~700 instructions, a third of an `Event`'s construction)."""

FLUSH_EVENTS = 1024
"""Events after which the journal writes at the next `checkpoint` without waiting for the loop
tick to end. A tick can be long (a fan-out of thousands of items that never wait): writing in
slices keeps the buffer, and what a crash loses, small, and lets the events die young, before
the cyclic collector has to walk them (fanout-10000: GC time 136-186 ms -> 91-109 ms, -10%)."""


class Journal:
    """Writes one run's events; the run's `RunState` is kept as the fold of what was emitted.

    Args:
        store: where the events go.
        state: the run's state so far (the fold of its journal); events are numbered after its
            `last_seq` and applied to it as they are emitted.
        redactor: what is scrubbed from everything written (a `Redactor()` by default).
        listeners: called with each event as it is emitted.
        deferred: write only at `flush` or `close`, never by itself: several events decided
            together outside an event loop (a person's decision on the board) then go to the
            store in one transaction. Otherwise each loop tick is written at its end (or, with
            no running loop, each event at once).
    """

    def __init__(
        self,
        store: Store,
        state: RunState,
        *,
        redactor: Redactor | None = None,
        listeners: tuple[Listener, ...] = (),
        deferred: bool = False,
    ) -> None:
        self.store = store
        self.state = state
        self.run_id = state.run_id
        self._seq = state.last_seq
        self._events: list[Event] = []
        self._encoded: list[str] = []
        self._artifacts: list[Artifact] = []
        self._cards: list[Card] = []
        self._outbox: list[OutboxEntry] = []
        self._status: tuple[str, str] | None = None
        self._scheduled = False
        self._deferred = deferred
        self._broken: BaseException | None = None
        self._closed = False
        self._redactor = redactor or Redactor()
        self._listeners = listeners

    @property
    def redactor(self) -> Redactor:
        """What this journal scrubs from everything it writes."""
        return self._redactor

    @overload
    def emit(
        self, kind: Literal[EventKind.RUN_STARTED], *, data: ev.RunStarted, **where: Unpack[Where]
    ) -> Event: ...
    @overload
    def emit(
        self, kind: Literal[EventKind.RUN_RESUMED], *, data: ev.RunResumed, **where: Unpack[Where]
    ) -> Event: ...
    @overload
    def emit(
        self, kind: Literal[EventKind.RUN_FINISHED], *, data: ev.RunFinished, **where: Unpack[Where]
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.PHASE_STARTED],
        *,
        data: ev.PhaseStarted,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.PHASE_SELECTED],
        *,
        data: ev.PhaseSelected,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.PHASE_FINISHED],
        *,
        data: ev.PhaseFinished,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.DISPATCH_STARTED],
        *,
        data: ev.DispatchStarted,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.DISPATCH_FINISHED],
        *,
        data: ev.DispatchFinished,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.MODEL_EXCHANGE],
        *,
        data: ev.ModelExchange,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self, kind: Literal[EventKind.TOOL_CALLED], *, data: ev.ToolCalled, **where: Unpack[Where]
    ) -> Event: ...
    @overload
    def emit(
        self, kind: Literal[EventKind.TOOL_REFUSED], *, data: ev.ToolRefused, **where: Unpack[Where]
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.OUTPUT_INVALID],
        *,
        data: ev.OutputInvalid,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.EVALUATOR_REJECTED],
        *,
        data: ev.EvaluatorRejected,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self, kind: Literal[EventKind.ITEM_RETRY], *, data: ev.ItemRetry, **where: Unpack[Where]
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.ITEM_FALLBACK],
        *,
        data: ev.ItemFallback,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self, kind: Literal[EventKind.ITEM_STUCK], *, data: ev.ItemStuck, **where: Unpack[Where]
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.ITEM_ACCEPTED],
        *,
        data: ev.ItemAccepted,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.ITEM_ESCALATED],
        *,
        data: ev.ItemEscalated,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self, kind: Literal[EventKind.ITEM_FAILED], *, data: ev.ItemFailed, **where: Unpack[Where]
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.ITEM_REQUEUED],
        *,
        data: ev.ItemRequeued,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.ITEM_WAITING],
        *,
        data: ev.ItemWaiting,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.MODEL_REQUESTED],
        *,
        data: ev.ModelRequested,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.BUDGET_REFUSED],
        *,
        data: ev.BudgetRefused,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self, kind: Literal[EventKind.CARD_CREATED], *, data: ev.CardCreated, **where: Unpack[Where]
    ) -> Event: ...
    @overload
    def emit(
        self, kind: Literal[EventKind.CARD_DECIDED], *, data: ev.CardDecided, **where: Unpack[Where]
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.CHILD_RUN_STARTED],
        *,
        data: ev.ChildRunStarted,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self, kind: Literal[EventKind.TOOL_STARTED], *, data: ev.ToolStarted, **where: Unpack[Where]
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.TOOL_FINISHED],
        *,
        data: ev.ToolFinished,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.PLAN_ACCEPTED],
        *,
        data: ev.PlanAccepted,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.PLAN_REJECTED],
        *,
        data: ev.PlanRejected,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.PLAN_STALLED],
        *,
        data: ev.PlanStalled,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.ROUTER_DECIDED],
        *,
        data: ev.RouterDecided,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(
        self,
        kind: Literal[EventKind.ROUTER_REJECTED],
        *,
        data: ev.RouterRejected,
        **where: Unpack[Where],
    ) -> Event: ...
    @overload
    def emit(self, kind: EventKind, *, data: ev.Unchecked, **where: Unpack[Where]) -> Event: ...
    @overload
    def emit(
        self,
        kind: EventKind,
        *,
        encoded: str,
        phase: str | None = None,
        role: str | None = None,
        item: str | None = None,
        attempt: int | None = None,
    ) -> Event: ...
    def emit(
        self,
        kind: EventKind,
        *,
        phase: str | None = None,
        role: str | None = None,
        item: str | None = None,
        attempt: int | None = None,
        data: Any = None,
        artifact: Artifact | None = None,
        card: Card | None = None,
        outbox: OutboxEntry | None = None,
        encoded: str | None = None,
    ) -> Event:
        """Number the event, fold it into the live state, tell the listeners, and buffer it
        for the next flush.

        Typed per kind (one overload each, nothing at run time): `data` is the kind's payload
        (`hubspoke.events.PAYLOADS`), usually a dict literal that the type checker checks key
        by key; a misspelt, missing or foreign key shows as mypy's "No overload variant of
        emit matches", whose list names the type for each kind. A kind chosen at run time (a
        specialist's trace entry) takes an `Unchecked` payload, or only its JSON text as
        `encoded`: the event then reads its `data` from that text when first asked (most trace
        entries never are). `artifact`, `card` and `outbox` are written with the event;
        `encoded` is `data`'s JSON text if the caller has it (`Where.encoded`).

        Raises:
            JournalWriteError: the journal is closed, or the store refused an earlier batch.
        """
        if self._closed:
            raise JournalWriteError(f"the journal of run {self.run_id} is closed")
        if self._broken is not None:
            self._raise_if_broken()
        if encoded is None:
            data = data or {}
            # Encode (and scrub) now rather than at flush: the live state, the listeners and
            # every summary made from them must never hold a secret either, not only the store.
            # NaN and Infinity are not JSON: written as null, so the journal is always valid.
            encoded = to_json(data, fallback=str, inf_nan_mode="null").decode()
        self._seq += 1
        clean = self._redactor.scrub_encoded(encoded)
        if clean is not encoded:
            encoded, data = clean, json.loads(clean)
        event = (
            Event(self.run_id, self._seq, time.time(), kind, phase, role, item, attempt, data)
            if data is not None
            else TextEvent(
                self.run_id, self._seq, time.time(), kind, phase, role, item, attempt, encoded
            )
        )
        self._events.append(event)
        self._encoded.append(encoded)
        if artifact is not None:
            self._artifacts.append(artifact)
        if card is not None:
            self._cards.append(card)
        if outbox is not None:
            self._outbox.append(outbox)
        if kind is _RUN_FINISHED:
            self._status = (self.run_id, payload(event, EventKind.RUN_FINISHED)["status"])
        self.state.apply(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a live view must never stop a run
                self._listeners = tuple(x for x in self._listeners if x is not listener)
        if not self._scheduled and not self._deferred:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self._flush_soon)
            except RuntimeError:  # no loop: write now
                self.flush()
        return event

    def checkpoint(self, *, force: bool = False) -> None:
        """Called by the foreman where a dispatch is about to wait for its specialist: the
        journal so far is then a state the run could have been killed in, as at the end of a
        loop tick (every task stands at an await). Writes what is buffered if it has reached
        `FLUSH_EVENTS` or `force` is set, so that a long tick (thousands of items that never
        wait) is written in slices; raises `JournalWriteError` if the store refuses it.
        Inside `held_checkpoints`, such a write waits for the block's end."""
        if self._closed or not (force or len(self._events) >= FLUSH_EVENTS):
            return
        held = _HELD.get()
        if held is not None:  # the holder writes it, before anything that depends on it goes
            self._raise_if_broken()
            held.hold(self)
            return
        self._write_now()

    def _write_now(self) -> None:
        """Write what is buffered; raise `JournalWriteError` if the store refused it (or an
        earlier batch)."""
        self._flush_soon()
        self._raise_if_broken()

    def _raise_if_broken(self) -> None:
        if self._broken is not None:
            raise JournalWriteError(
                f"the journal of run {self.run_id} could not be written: {self._broken}"
            ) from self._broken

    def _flush_soon(self) -> None:
        """The flush scheduled for the end of a loop tick: a failure is kept in `_broken` and
        raised by the run's next `emit`, inside the foreman, rather than lost in a callback."""
        if not self._closed:
            with contextlib.suppress(Exception):
                self.flush()

    def close(self) -> None:
        """Flush, then write nothing more: what the store refused stays unwritten, so that a
        resume (which starts from what is durable) never meets a late write of this session.

        Raises:
            JournalWriteError: the store refused the last batch (the store's own error is its
                `__cause__`); the journal is closed all the same.
        """
        try:
            self.flush()
        except Exception as e:
            raise JournalWriteError(
                f"the journal of run {self.run_id} could not be written: {e}"
            ) from e
        finally:
            self._closed = True

    def flush(self) -> None:
        """Write everything emitted so far in one transaction (nothing once closed)."""
        self._scheduled = False
        if self._closed:
            return
        if not self._events:
            return
        redactor = self._redactor
        redactor.refresh()  # once for the batch: nothing runs while it is scrubbed
        artifacts = [_scrub_artifact(a, redactor) for a in self._artifacts]
        cards = [
            replace(c, title=redactor.scrub(c.title), note=redactor.scrub(c.note))
            for c in self._cards
        ]
        outbox = [_scrub_entry(o, redactor) for o in self._outbox]
        try:
            self.store.append(
                self._events,
                artifacts,
                cards,
                self._status,
                encoded=self._encoded,
                outbox=outbox,
            )
        except BaseException as e:
            # Keep the batch (the next flush retries it) and stop the run at its next event:
            # going on would decide things the journal cannot hold.
            self._broken = e
            raise
        self._broken = None
        self._events, self._encoded, self._artifacts, self._cards = [], [], [], []
        self._outbox = []
        self._status = None


def _scrub_artifact(artifact: Artifact, redactor: Redactor) -> Artifact:
    text = artifact.content_json or to_json(artifact.content, fallback=str).decode()
    clean = redactor.scrub_encoded(text, recheck=False)
    if clean is text:
        return artifact
    return Artifact(
        id=artifact.id,
        run_id=artifact.run_id,
        phase=artifact.phase,
        role=artifact.role,
        item=artifact.item,
        schema=artifact.schema,
        content=json.loads(clean),
        created=artifact.created,
        content_json=clean,
    )


def _scrub_entry(entry: OutboxEntry, redactor: Redactor) -> OutboxEntry:
    text = to_json(entry.content, fallback=str).decode()
    clean = redactor.scrub_encoded(text, recheck=False)
    return entry if clean is text else replace(entry, content=json.loads(clean))


class Held:
    """The journals whose checkpoints `held_checkpoints` holds, and how writing them went."""

    __slots__ = ("error", "journals")

    def __init__(self) -> None:
        self.journals: dict[int, Journal] = {}
        self.error: JournalWriteError | None = None
        """Set when a journal held could not be written: nothing that waited for it may go."""

    def hold(self, journal: Journal) -> None:
        self.journals.setdefault(id(journal), journal)

    def write(self) -> None:
        """Write each journal held, once (one store transaction each)."""
        for journal in self.journals.values():
            try:
                journal._write_now()
            except JournalWriteError as e:
                self.error = self.error or e
        self.journals.clear()


_HELD: ContextVar[Held | None] = ContextVar("hubspoke_held_checkpoints", default=None)


@contextlib.contextmanager
def held_checkpoints() -> Iterator[Held]:
    """Inside, a checkpoint that would write now (`Journal.checkpoint`, forced or full) is
    held, and each journal held is written once, in one transaction, when the block ends:
    for code that answers many questions at once and sends no answer before the block ends
    (the worker pool answering a worker's batch of model requests). Synchronous code only:
    nothing inside may await.

    Yields the `Held`, whose `error` says, after the block, that a journal could not be
    written (every answer that waited for it must then be a refusal)."""
    held = Held()
    token = _HELD.set(held)
    try:
        yield held
    finally:
        _HELD.reset(token)
        held.write()
