"""A run's state, rebuilt by folding its events.

The foreman applies each event to a `RunState` as it emits it; `hubspoke show`, resume and the
live view fold the same events read back from the store. There is no other copy of run state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hubspoke.board import card_id, gate_card_id
from hubspoke.budget import Usage
from hubspoke.events import (
    BudgetRefused,
    CardCreated,
    CardDecided,
    ChildRunStarted,
    DispatchFinished,
    DispatchStarted,
    EvaluatorRejected,
    Event,
    EventKind,
    ItemAccepted,
    ItemEscalated,
    ItemFailed,
    ItemFallback,
    ItemRequeued,
    ItemRetry,
    ItemStuck,
    ItemWaiting,
    ModelRequested,
    PhaseFinished,
    PhaseSelected,
    PhaseStarted,
    PlanAccepted,
    PlanRejected,
    PlanStalled,
    RouterDecided,
    RouterRejected,
    RunFinished,
    RunResumed,
    RunStarted,
    ToolFinished,
    ToolStarted,
)

__all__ = [
    "WAITING_FOR_PEOPLE",
    "CardState",
    "ItemState",
    "PhaseState",
    "PlanState",
    "RouteState",
    "RunState",
    "ToolCallState",
]

_ENDED = frozenset({"accepted", "escalated", "failed"})
"""Item statuses that are also the names of the phase's counters."""
_INFORMATIVE = frozenset({"invalid", "scope_violation", "needs_human"})
WAITING_FOR_PEOPLE = frozenset({"escalated", "gated"})
"""Item statuses that wait for a person: an escalated card to answer or skip, or a human gate
to approve. A run with such an item ends its session `waiting`."""
_WAITABLE = frozenset({"throttled", "unavailable"})
"""Outcomes that move no ladder: the item waits for its provider and is dispatched again."""
"""Outcomes that say something about the input itself (journals of schema 1 recorded a
fingerprint only for these)."""

TRANSIENT_REPEATS = 3
"""How many times the same dispatch may fail or time out before it is stuck: such failures may
be transient, but a dispatch that keeps failing the same way brings no new information,
however many attempts its role allows."""


@dataclass(slots=True)
class ItemState:
    key: str
    phase: str
    role: str
    status: str = "running"
    """running, accepted, escalated (waiting for a person) or failed; requeued between two
    rounds of a `Strategy.RETRY` phase; answered (a person answered its escalation: it runs
    again) or skipped (a person skipped it: it ends); gated (it waits at its role's human gate
    for a person's approval) or parked (its gate card was set aside: nothing waits for it)."""
    attempt: int = 0
    """The attempt in flight, or the next one once the last has finished."""
    tries: int = 0
    """Attempts already made by the current role (the ladder's position)."""
    correction: str | None = None
    last_outcome: str | None = None
    """How the latest finished attempt ended when no later step was journaled yet (an outcome
    kind, ``stuck``, ``refused:run`` or ``refused:role``): resume decides the next step from it
    instead of dispatching the same thing again."""
    waits: int = 0
    """Waits for a throttled or unavailable provider since the current role's latest attempt
    began (`item.waiting`)."""
    wait: float | None = None
    """With a `last_outcome` of ``throttled`` or ``unavailable``: the seconds its provider
    asked to wait."""
    artifact_id: str | None = None
    reason: str = ""
    rounds: int = 0
    """Times a `Strategy.RETRY` phase requeued the item for another round."""
    pending: bool = False
    """A dispatch of the item started, or its latest attempt ended or was stuck, and the next
    step is not journaled yet. A run that was stopping finishes exactly these on resume."""
    reserved: Mapping[str, Any] | None = None
    """What the ledger reserved for the latest dispatch (`hubspoke.events.Reserved`; None in
    journals of schema 1): a resume gives that dispatch, if it was in flight, the same allowance
    again."""
    started_seq: int = 0
    """The sequence number of its latest `dispatch.started`: a resume restarts the dispatches
    that were under way in the order they had started."""
    judge_attempt: int = 0
    """The latest attempt number of the phase's evaluator about this item, over all its
    evaluations: each evaluator dispatch gets its own (and its own attempt key)."""
    judge_role: str | None = None
    """The evaluator (or its fallback) judging the item's candidate now; None between
    evaluations. With `judge_tries` and `judge_correction`, where the evaluator's own ladder
    stands, so that a resume goes on from there."""
    judge_tries: int = 0
    judge_correction: str | None = None
    judge_open: bool = False
    """An evaluator dispatch about the item started and has not finished."""
    judge_waits: int = 0
    """Waits of the evaluator for its provider since its latest attempt began."""
    judge_waiting: tuple[str, float | None] | None = None
    """The evaluator's latest dispatch ended ``throttled`` or ``unavailable`` (with the wait its
    provider asked for) and its wait was not journaled yet: a resume decides it first."""
    candidate: dict[str, Any] | None = None
    """The output of the latest attempt while the phase's evaluator judges it: a resume judges
    it again instead of dispatching the attempt again."""
    answer: str | None = None
    """A person's answer to the item's escalation (status ``answered``): its next attempt gets
    it as the correction."""
    gates_open: set[str] = field(default_factory=set)
    """Roles whose human gate (`Role.approve_before_dispatch`) a person let the item through."""
    gate_role: str | None = None
    """The role at whose human gate the item waits (status ``gated``), or last waited."""
    gated_at: float = 0.0
    """When the item stopped at the human gate (Unix time, seconds): its time-out counts from
    it (status ``gated``)."""
    answer_input: dict[str, Any] | None = None
    """A corrected input a person gave the item (status ``answered``), by field name: its next
    attempt runs on it."""


@dataclass(slots=True)
class PhaseState:
    name: str
    status: str = "running"
    """running, completed, failed, stopped (the run ended before the phase could), or waiting
    (it could still pass once a person answers its escalated items)."""
    items: int = 0
    """The items the phase has: as many as it started with (a fan-out's), or, in a phase whose
    items are decided as it runs (a plan's steps, a router's), as many as it has had so far."""
    dispatched: int = 0
    accepted: int = 0
    retried: int = 0
    fallbacks: int = 0
    escalated: int = 0
    failed: int = 0
    stuck: int = 0
    skipped: int = 0
    """Items a person skipped: the phase no longer needs them."""
    waits: int = 0
    """Times an item waited for a throttled or unavailable provider."""
    in_flight: int = 0
    selected: list[str] | None = None
    usage: Usage = field(default_factory=Usage)
    seen: int = 0
    """Items of the phase the journal has named so far (not in `counts`)."""

    def counts(self) -> dict[str, int]:
        return {
            "items": self.items,
            "dispatched": self.dispatched,
            "accepted": self.accepted,
            "retried": self.retried,
            "fallbacks": self.fallbacks,
            "escalated": self.escalated,
            "failed": self.failed,
            "stuck": self.stuck,
            "waits": self.waits,
        }


@dataclass(slots=True)
class CardState:
    """A card on the run's board, as its `card.created` and `card.decided` events left it."""

    card_id: str
    item: str
    phase: str
    column: str
    """A `hubspoke.board.Column` value: where the card is now."""
    artifact_id: str | None = None
    """The output the card shows now: the drafted one, or the amended one after an amend."""
    decisions: int = 0
    """Decisions made on the card (`card.decided` events): the next one is numbered one more."""


@dataclass(slots=True)
class ToolCallState:
    """A side-effecting tool call (`tool.started`, `tool.finished`), by its idempotency key."""

    key: str
    tool: str
    item: str
    """The key of the item whose dispatch made the call (``item#eval`` for its evaluator)."""
    arguments: dict[str, Any]
    """The validated arguments, as JSON values by name."""
    started: int
    """The sequence number of its latest `tool.started`."""
    finished: bool = False
    """Its end was journaled: it returned (`result`) or raised (`error`), or its reconcile
    function settled it."""
    result: Any = None
    """What it returned, as JSON (None until it finished, or when it raised)."""
    error: str | None = None
    """What it raised: the same call runs again if made again."""
    reconciled: bool = False
    """It was in doubt and its `result` is what its reconcile function found."""

    @property
    def done(self) -> bool:
        """It took effect and its result is recorded: the same call gets `result`."""
        return self.finished and self.error is None

    @property
    def in_doubt(self) -> bool:
        """It started and its end was never journaled: it may or may not have taken effect."""
        return not self.finished


@dataclass(slots=True)
class PlanState:
    """A planned phase's plans (schema 5): every accepted plan and every stall, in order."""

    phase: str
    plans: list[PlanAccepted] = field(default_factory=list)
    """The accepted plans, each a `plan.accepted` payload (``revision``, ``item``, ``steps``)."""
    stalls: list[PlanStalled] = field(default_factory=list)
    """The stalls, each a `plan.stalled` payload (``revision``, ``reason``, ``account``)."""
    rejected: int = 0
    """Plans the foreman's checks sent back to the planner."""

    @property
    def steps(self) -> list[dict[str, Any]]:
        """Every step of every accepted plan, in order. An id appears twice only for a step
        that never started and was planned again."""
        return [step for plan in self.plans for step in plan["steps"]]

    @property
    def current(self) -> PlanAccepted | None:
        """The latest accepted plan, unless it stalled since (then a new one is due)."""
        if not self.plans or len(self.stalls) >= len(self.plans):
            return None
        return self.plans[-1]


@dataclass(slots=True)
class RouteState:
    """A routed phase's decisions (schema 5): every `router.decided` payload, in turn order."""

    phase: str
    decisions: list[RouterDecided] = field(default_factory=list)
    rejected: int = 0
    """Decisions the foreman's checks sent back to the router."""


@dataclass(slots=True)
class RunState:
    run_id: str
    workflow: str = ""
    status: str = "running"
    reason: str = ""
    started: float = 0.0
    finished: float | None = None
    elapsed_before: float = 0.0
    """Wall time spent in earlier sessions of a resumed run."""
    last_ts: float = 0.0
    last_seq: int = 0
    input: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, PhaseState] = field(default_factory=dict)
    items: dict[str, ItemState] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    usage_by_role: dict[str, Usage] = field(default_factory=dict)
    steps: int = 0
    escalations: int = 0
    """Items that needed a person (an item counts once, however often it asked)."""
    escalated: set[str] = field(default_factory=set)
    stuck_fingerprints: set[str] = field(default_factory=set)
    """Dispatches that would bring no new information if they ran again."""
    transient_failures: dict[str, int] = field(default_factory=dict)
    cards: dict[str, CardState] = field(default_factory=dict)
    """The run's cards by card id, in the order they were created."""
    stopping: tuple[str, str] | None = None
    """The first journaled decision to stop the run, as (cause, reason): ``"budget"`` when
    the budget refused a dispatch, ``"escalations"`` when the escalation cap was reached. A
    resumed run honours it."""
    carded: set[str] = field(default_factory=set)
    """Items that have a card."""
    children: list[str] = field(default_factory=list)
    requested: dict[str, tuple[str, str, Usage]] = field(default_factory=dict)
    """Dispatches with a model request journaled (`model.requested`) that have not finished, by
    item key: (phase, role, what they may have spent: their spending before their latest
    request plus its worst case). A dispatch's end replaces it with what it really spent; a
    resume charges it (the crash may have come after the provider billed)."""
    requested_models: dict[str, dict[str, str]] = field(default_factory=dict)
    """Of `requested`, by item key: the ``model`` and ``provider`` its latest request named
    (empty in journals that did not record them), for what a resume reports it charged."""
    decided: bool = False
    """A person decided something (`card.decided`) since the run's last session ended: a
    resume of a `waiting` run has something to go on from."""
    shape: dict[str, Any] | None = None
    """The workflow's shape as the run recorded it at its start (`Workflow.shape`), if it did:
    a resume refuses a workflow whose shape changed."""
    tool_calls: dict[str, ToolCallState] = field(default_factory=dict)
    """Side-effecting tool calls by idempotency key: a call made again with a recorded result
    gets it without running; one started without an end is in doubt."""
    plans: dict[str, PlanState] = field(default_factory=dict)
    """Planned phases' plans by phase name (schema 5)."""
    routes: dict[str, RouteState] = field(default_factory=dict)
    """Routed phases' decisions by phase name (schema 5)."""

    @classmethod
    def fold(cls, run_id: str, events: Iterable[Event]) -> RunState:
        state = cls(run_id)
        for event in events:
            state.apply(event)
        return state

    def phase(self, name: str) -> PhaseState:
        phase = self.phases.get(name)
        if phase is None:
            phase = self.phases[name] = PhaseState(name)
        return phase

    def apply(self, event: Event) -> None:
        """Fold one event into the state.

        Accepts every schema version this hubspoke reads: a key a later version added is read
        with its meaning in the earlier one when absent (see `hubspoke.events`).
        """
        self.last_seq = event.seq
        self.last_ts = event.ts
        # One lookup in a table of folds by kind: a kind the state does not fold (a model
        # exchange, a tool call) costs nothing more.
        fold = _FOLDS.get(event.kind)
        if fold is not None:
            fold(self, event, event.data)

    def _dispatch_started(self, event: Event, started: DispatchStarted) -> None:
        assert event.phase is not None and event.item is not None and event.role is not None
        self.steps += 1
        phase = self.phase(event.phase)
        phase.dispatched += 1
        phase.in_flight += 1
        if "#" in event.item:  # an evaluator's dispatch about the item, not the item
            judged = self.items.get(event.item.partition("#")[0])
            if judged is not None:
                judged.judge_attempt = event.attempt or 0
                judged.judge_role = event.role
                judged.judge_tries = started.get("tries", 0)
                judged.judge_correction = started.get("correction")
                judged.judge_open = True
                judged.judge_waiting = None
                judged.started_seq = event.seq
            return
        item = self.items.get(event.item)
        if item is None:
            item = self._new_item(event.item, event.phase, event.role)
        item.role = event.role
        item.attempt = event.attempt or 0
        item.tries = started.get("tries", 0)
        item.correction = started.get("correction")
        item.last_outcome = None
        item.status = "running"
        item.pending = True
        item.started_seq = event.seq
        item.reserved = started.get("reserved")
        item.candidate = None
        item.judge_role, item.judge_open = None, False

    def _dispatch_finished(self, event: Event, finished: DispatchFinished) -> None:
        assert event.phase is not None and event.role is not None
        if self.requested:
            self.requested.pop(event.item or "", None)
            self.requested_models.pop(event.item or "", None)
        phase = self.phase(event.phase)
        phase.in_flight -= 1
        role_usage = self.usage_by_role.get(event.role)
        if role_usage is None:
            role_usage = self.usage_by_role[event.role] = Usage()
        Usage.add_dict_to(finished["usage"], phase.usage, self.usage, role_usage)
        outcome = finished["outcome"]
        key = event.item or ""
        if "#" in key and (judged := self.items.get(key.partition("#")[0])) is not None:
            judged.judge_open = False
            if outcome in _WAITABLE:  # no attempt spent: the evaluator waits, then again
                judged.judge_waiting = (outcome, finished.get("wait"))
            elif outcome != "output":  # its own ladder moves on
                judged.judge_tries += 1
                judged.judge_waits = 0
                judged.judge_correction = finished.get("correction")
        if outcome in _WAITABLE:
            # No attempt spent, nothing learnt about the input: the item waits (resume
            # decides the wait from this if `item.waiting` was not journaled).
            if (waiting := self.items.get(key)) is not None:
                waiting.last_outcome, waiting.wait = outcome, finished.get("wait")
        elif outcome != "output":
            if "fingerprint" in finished:
                informative = finished.get("informative", outcome in _INFORMATIVE)
                self._failed(finished["fingerprint"], informative)
            self._attempt_failed(event.item, outcome, finished.get("correction"))
        elif "output" in finished and (item := self.items.get(key)) is not None:
            item.candidate = finished["output"]

    def _new_item(self, key: str, phase: str, role: str) -> ItemState:
        """A new item of `phase`, counted among the phase's items if it started with fewer
        (its items are decided as it runs)."""
        item = self.items[key] = ItemState(key, phase, role)
        counters = self.phase(phase)
        counters.seen += 1
        counters.items = max(counters.items, counters.seen)
        return item

    def _end_item(self, event: Event, status: str) -> ItemState:
        """The item of an `item.accepted`, `item.escalated` or `item.failed` event, moved to
        `status` and counted in its phase's counter of that name."""
        assert event.phase is not None and event.item is not None
        item = self.items.get(event.item)
        if item is None:
            item = self._new_item(event.item, event.phase, event.role or "")
        phase = self.phase(event.phase)
        # Counts are per item: an item that ends again (a retry round) moves, not doubles.
        if item.status in _ENDED:
            setattr(phase, item.status, getattr(phase, item.status) - 1)
        setattr(phase, status, getattr(phase, status) + 1)
        item.status = status
        item.pending = False
        item.candidate = None
        item.artifact_id, item.reason = None, ""
        return item

    def _item_accepted(self, event: Event, accepted: ItemAccepted) -> None:
        self._end_item(event, "accepted").artifact_id = accepted.get("artifact_id")

    def _item_escalated(self, event: Event, escalated: ItemEscalated) -> None:
        self._end_item(event, "escalated").reason = escalated.get("reason", "")
        if event.item not in self.escalated:
            self.escalated.add(event.item or "")  # items count toward the cap, not requests
            self.escalations += 1

    def _item_failed(self, event: Event, failed: ItemFailed) -> None:
        item = self._end_item(event, "failed")
        item.reason = failed.get("reason", "")
        if failed.get("stops_run", False) and self.stopping is None:
            self.stopping = ("escalations", item.reason)

    def _evaluator_rejected(self, event: Event, rejected: EvaluatorRejected) -> None:
        self._rejected(event.item, rejected["fingerprint"], rejected.get("correction"))

    def _plan_rejected(self, event: Event, bad: PlanRejected) -> None:
        # The planner's output was invalid as a plan: as an evaluator's rejection.
        self._rejected(event.item, bad["fingerprint"], bad["correction"])
        self._plan(event).rejected += 1

    def _plan_accepted(self, event: Event, accepted: PlanAccepted) -> None:
        plan = self._plan(event)
        plan.plans.append(accepted)
        phase = self.phase(plan.phase)
        phase.items = max(len(plan.steps), phase.seen)

    def _router_rejected(self, event: Event, bad: RouterRejected) -> None:
        self._rejected(event.item, bad["fingerprint"], bad["correction"])
        self._route(event).rejected += 1

    def _router_decided(self, event: Event, decided: RouterDecided) -> None:
        self._route(event).decisions.append(decided)

    def _plan_stalled(self, event: Event, stalled: PlanStalled) -> None:
        self._plan(event).stalls.append(stalled)

    def _item_waiting(self, event: Event, held: ItemWaiting) -> None:
        assert event.phase is not None and event.item is not None
        if held["cause"] == "approval":  # a human gate, before the role's dispatch
            item = self.items.get(event.item)
            if item is None:
                item = self._new_item(event.item, event.phase, event.role or "")
                item.attempt = event.attempt or 1
            item.status, item.pending, item.gated_at = "gated", False, event.ts
            if event.role:
                item.role = item.gate_role = event.role
            # Back at a gate whose card a person parked or skipped meanwhile (the item was
            # escalated then): the card's decision holds.
            gate = self.cards.get(gate_card_id(self.run_id, item.key, item.gate_role or ""))
            if gate is not None and gate.column == "parked":
                item.status = "parked"
            elif gate is not None and gate.column == "skipped":
                item.status = "skipped"
                self.phase(event.phase).skipped += 1
            return
        self.phase(event.phase).waits += 1
        item = self.items.get(event.item)
        if item is not None:
            item.waits = held["waits"]
            item.last_outcome = item.wait = None
            item.pending = False
        elif "#" in event.item and (judged := self.items.get(event.item.partition("#")[0])):
            judged.judge_waits, judged.judge_waiting = held["waits"], None

    def _model_requested(self, event: Event, requested: ModelRequested) -> None:
        assert event.phase is not None and event.role is not None
        key = event.item or ""
        entry = self.requested.get(key)
        if entry is None or "spent" in requested:
            # What the dispatch spent before this request, as it counted, then this one's
            # worst case: its earlier requests are not charged at their worst again.
            before = requested.get("spent")
            usage = Usage() if before is None else Usage.from_dict(before)
            usage.seconds, usage.steps = 0.0, 0
            entry = self.requested[key] = (event.phase, event.role, usage)
        most, inp = requested["worst_tokens"], requested["input_tokens"]
        entry[2].input_tokens += inp
        entry[2].output_tokens += max(0, most - inp)
        entry[2].usd += requested["worst_usd"]
        entry[2].requests += 1
        named = self.requested_models[key] = {}
        if "model" in requested:
            named["model"] = requested["model"]
        if "provider" in requested:
            named["provider"] = requested["provider"]

    def _tool_started(self, event: Event, started: ToolStarted) -> None:
        """A side-effecting tool call's start (an evaluator's calls are keyed like any other)."""
        key = started["key"]
        # A later start of the same key (it raised, or its reconcile found it had not run)
        # replaces the earlier one.
        self.tool_calls[key] = ToolCallState(
            key, started["tool"], event.item or "", started["arguments"], event.seq
        )

    def _tool_finished(self, event: Event, ended: ToolFinished) -> None:
        call = self.tool_calls.get(ended["key"])
        if call is None:  # never without its start; kept whole all the same
            call = self.tool_calls[ended["key"]] = ToolCallState(
                ended["key"], ended["tool"], event.item or "", {}, event.seq
            )
        call.finished = True
        call.result = ended.get("result")
        call.error = ended.get("error")
        call.reconciled = ended.get("reconciled", False)

    def _item_requeued(self, event: Event, requeued: ItemRequeued) -> None:
        assert event.phase is not None and event.item is not None
        item = self.items.get(event.item)
        if item is not None:
            if item.last_outcome in _WAITABLE:
                item.attempt += 1  # the role gave up waiting: that attempt is spent
            item.status = "requeued"
            item.waits = 0
            item.rounds += 1
            item.reason = requeued.get("reason", "")
            item.last_outcome = item.candidate = None
            item.pending = False

    def _judge_fallback(self, event: Event, fallback: ItemFallback) -> None:
        """The evaluator's own ladder about an item (``item#eval``) moves to a fallback: the
        phase's counters count items, not this."""
        judged = self.items.get((event.item or "").partition("#")[0])
        if judged is not None:
            judged.judge_role = fallback["to"]
            judged.judge_tries, judged.judge_correction = 0, None
            judged.judge_waits, judged.judge_waiting = 0, None

    def _judge_refused(self, event: Event, refused: BudgetRefused) -> None:
        """The budget refused the evaluator's dispatch about an item (``item#eval``)."""
        scope: str = refused.get("scope", "run")
        if scope == "run" and self.stopping is None:
            self.stopping = ("budget", refused["reason"])
        judged = self.items.get((event.item or "").partition("#")[0])
        if judged is not None and judged.status == "running":
            # The evaluation was refused: the item's next step is decided from it.
            judged.last_outcome = f"refused:{scope}"
            judged.reason = refused["reason"]

    def _item_retry(self, event: Event, retry: ItemRetry) -> None:
        assert event.phase is not None and event.item is not None
        self.phase(event.phase).retried += 1
        item = self.items.get(event.item)
        if item is not None:
            item.last_outcome = None  # decided: the next attempt runs with the correction
            item.pending = False
            item.waits = 0

    def _item_fallback(self, event: Event, fallback: ItemFallback) -> None:
        assert event.phase is not None and event.item is not None
        self.phase(event.phase).fallbacks += 1
        item = self.items.get(event.item)
        if item is not None:
            if item.last_outcome in _WAITABLE:
                item.attempt += 1  # the role gave up waiting: that attempt is spent
            item.role = fallback["to"]
            item.tries = 0
            item.waits = 0
            item.correction = None
            item.last_outcome = None
            item.pending = False

    def _item_stuck(self, event: Event, stuck: ItemStuck) -> None:
        assert event.phase is not None
        self.phase(event.phase).stuck += 1
        item = self.items.get(event.item or "")
        if item is not None:
            item.last_outcome = "stuck"
            item.pending = True

    def _phase_started(self, event: Event, started: PhaseStarted) -> None:
        assert event.phase is not None
        phase = self.phase(event.phase)
        phase.status = "running"
        phase.items = max(started.get("items", 0), phase.seen)

    def _phase_selected(self, event: Event, selected: PhaseSelected) -> None:
        assert event.phase is not None
        self.phase(event.phase).selected = list(selected["artifact_ids"])

    def _phase_finished(self, event: Event, finished: PhaseFinished) -> None:
        assert event.phase is not None
        self.phase(event.phase).status = finished["status"]

    def _card_created(self, event: Event, created: CardCreated) -> None:
        if event.item is not None:
            self.carded.add(event.item)
        earlier = self.cards.get(created["card_id"])
        self.cards[created["card_id"]] = CardState(
            created["card_id"],
            event.item or "",
            event.phase or "",
            created["column"],
            created.get("artifact_id"),
            # A card made again (the item escalated again) keeps numbering its decisions.
            0 if earlier is None else earlier.decisions,
        )

    def _card_decided(self, event: Event, decided: CardDecided) -> None:
        card = self.cards.get(decided["card_id"])
        if card is None:  # a decision without its card: keep what the event says
            card = self.cards[decided["card_id"]] = CardState(
                decided["card_id"], event.item or "", event.phase or "", decided["before"]
            )
        card.column = decided["after"]
        card.decisions += 1
        if "artifact_id" in decided:
            card.artifact_id = decided["artifact_id"]
        self._decided_item(event, decided)

    def _budget_refused(self, event: Event, refused: BudgetRefused) -> None:
        scope = refused.get("scope", "run")
        if scope == "run" and self.stopping is None:
            self.stopping = ("budget", refused["reason"])
        item = self.items.get(event.item or "")
        if item is not None and item.status == "running":
            item.last_outcome = f"refused:{scope}"
            item.reason = refused["reason"]
            item.pending = True

    def _child_run_started(self, event: Event, started: ChildRunStarted) -> None:
        self.children.append(started["child_run"])

    def _run_started(self, event: Event, started: RunStarted) -> None:
        self.workflow = started.get("workflow", "")
        self.shape = started.get("shape")
        self.input = started.get("input", {})
        self.started = event.ts
        self.status = "running"

    def _run_resumed(self, event: Event, resumed: RunResumed) -> None:
        self.elapsed_before = resumed.get("elapsed_before", self.elapsed_before)
        self.started = event.ts
        self.finished = None
        self.status = "running"
        for phase in self.phases.values():
            phase.in_flight = 0
        # Requests in flight at the crash: the provider may have billed up to their worst
        # case, and no `dispatch.finished` will ever say what they cost.
        for phase_name, role, worst in self.requested.values():
            role_usage = self.usage_by_role.get(role)
            if role_usage is None:
                role_usage = self.usage_by_role[role] = Usage()
            for sum_ in (self.phase(phase_name).usage, self.usage, role_usage):
                sum_.add(worst)
        self.requested.clear()
        self.requested_models.clear()

    def _run_finished(self, event: Event, ended: RunFinished) -> None:
        self.decided = False
        self.status = ended["status"]
        self.reason = ended.get("reason", "")
        self.finished = event.ts

    def _rejected(self, key: str | None, fingerprint: str, correction: str | None) -> None:
        """An output rejected after it validated (by the phase's evaluator, or the foreman's
        plan or route check): its dispatch is stuck, and its attempt failed as invalid."""
        self._failed(fingerprint, True)
        self._attempt_failed(key, "invalid", correction)

    def _route(self, event: Event) -> RouteState:
        name = event.phase or ""
        route = self.routes.get(name)
        if route is None:
            route = self.routes[name] = RouteState(name)
        return route

    def _plan(self, event: Event) -> PlanState:
        name = event.phase or ""
        plan = self.plans.get(name)
        if plan is None:
            plan = self.plans[name] = PlanState(name)
        return plan

    def _decided_item(self, event: Event, decided: CardDecided) -> None:
        """What a `card.decided` event does to its item. On an escalated card: an answer
        reopens the item (``answered``: its next attempt gets the answer, or runs on the
        corrected input) and its phase; a skip ends it (``skipped``: its phase no longer needs
        it) and reopens a waiting phase. Review decisions move only their card; an abort is the
        `run.finished` that follows it."""
        self.decided = True
        item = self.items.get(event.item or "")
        gate = None
        if item is not None and item.gate_role is not None:
            gate = gate_card_id(self.run_id, item.key, item.gate_role)
        if item is not None and decided["card_id"] == gate:
            if item.status in ("gated", "parked"):
                self._gate_decided(item, decided["verb"])
            elif decided["verb"] in ("approve", "amend"):  # approved late: the gate opens
                item.gates_open.add(item.gate_role or "")
            return
        if item is None or item.status != "escalated" or decided["before"] != "escalated":
            return
        verb = decided["verb"]
        if verb not in ("answer", "skip"):
            return
        phase = self.phase(item.phase)
        phase.escalated -= 1
        item.pending, item.last_outcome, item.candidate = False, None, None
        if verb == "answer":
            item.status = "answered"
            item.answer = decided.get("answer")
            item.answer_input = decided.get("input")
            phase.status = "running"  # it runs again for the answered item
        else:
            item.status = "skipped"
            phase.skipped += 1
            if phase.status == "waiting":
                phase.status = "running"  # its verdict is decided again without the item

    def _gate_decided(self, item: ItemState, verb: str) -> None:
        """A decision on an item's human-gate card: approved (or amended) opens the gate, a
        skip ends the item, a park sets it aside (``parked``: its phase and run no longer wait
        for it) and an unpark brings it back to the gate."""
        phase = self.phase(item.phase)
        if verb in ("approve", "amend"):
            item.status = "running"
            item.gates_open.add(item.gate_role or "")
        elif verb == "skip":
            item.status = "skipped"
            phase.skipped += 1
        elif verb == "park":
            item.status = "parked"
        elif verb == "unpark":
            item.status = "gated"
        else:
            return
        if phase.status in ("waiting", "completed"):
            phase.status = "running"  # it runs again for the item

    def approved_artifact(self, item: str) -> str | None:
        """The artifact of `item`'s review card that a person let through (approved, or the
        amended one), or None while it is undecided, parked or skipped."""
        card = self.cards.get(card_id(self.run_id, item))
        if card is None or card.column not in ("approved", "amended"):
            return None
        return card.artifact_id

    @property
    def cards_in_review(self) -> int:
        """Cards waiting for a person's review now (column ``review``)."""
        return sum(1 for card in self.cards.values() if card.column == "review")

    def calls_in_doubt(self, item: str) -> list[ToolCallState]:
        """The side-effecting tool calls of `item` (its key, or ``item#eval``) that started and
        whose end was never journaled, in the order they started: after a crash, or once the
        item escalated as in doubt, each may or may not have taken effect. A person who checked
        one settles it with a `tool.finished` for its key: with `result` and `reconciled` if it
        took effect, with `error` if it did not (it then runs again when made again)."""
        calls = [c for c in self.tool_calls.values() if c.item == item and c.in_doubt]
        return sorted(calls, key=lambda c: c.started)

    def _failed(self, fingerprint: str, informative: bool) -> None:
        """Count a dispatch that ended without an output: stuck at once if the outcome said
        something about the input, after `TRANSIENT_REPEATS` failures otherwise."""
        if informative:
            self.stuck_fingerprints.add(fingerprint)
            return
        count = self.transient_failures.get(fingerprint, 0) + 1
        self.transient_failures[fingerprint] = count
        if count >= TRANSIENT_REPEATS:
            self.stuck_fingerprints.add(fingerprint)

    def is_stuck(self, fingerprint: str) -> bool:
        """Whether a dispatch with this fingerprint would bring no new information."""
        return fingerprint in self.stuck_fingerprints

    def _attempt_failed(self, key: str | None, outcome: str, correction: str | None) -> None:
        """Move an item's ladder past an attempt that ended without an accepted output."""
        item = self.items.get(key or "")
        if item is None:  # an evaluator's own dispatch (`item#eval`)
            return
        item.candidate = None
        item.tries += 1
        item.attempt += 1
        item.correction = correction
        item.last_outcome = outcome

    @property
    def elapsed(self) -> float:
        """Wall time of the run so far, over all its sessions."""
        end = self.finished if self.finished is not None else self.last_ts
        return self.elapsed_before + max(0.0, end - self.started) if self.started else 0.0

    def summary(self) -> dict[str, Any]:
        """The machine-readable summary printed by `--json`."""
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "reason": self.reason,
            "steps": self.steps,
            "escalations": self.escalations,
            "phases": {
                name: {"status": p.status, **p.counts(), "usage": p.usage.to_dict()}
                for name, p in self.phases.items()
            },
            "usage": self.usage.to_dict(),
            "usage_by_role": {r: u.to_dict() for r, u in self.usage_by_role.items()},
            "cards": len(self.cards),
            "cards_in_review": self.cards_in_review,
            "children": list(self.children),
        }


Fold = Callable[[RunState, Event, Any], None]
"""How `RunState.apply` folds one kind of event: `(state, event, event.data)`, the data typed
as the kind's payload in each fold's signature (`tests/test_journal.py` checks that each
fold's payload type is `PAYLOADS[kind]`)."""


def _unless_judging(fold: Fold, judging: Fold | None = None) -> Fold:
    """`fold` for an item's own event; for one of the evaluator's own ladder about an item
    (keyed ``item#eval``), `judging`, or nothing: the phase's counters count items."""

    @functools.wraps(fold)  # its payload type stays readable (`inspect.unwrap`)
    def fold_item(state: RunState, event: Event, data: Any) -> None:
        if event.item is not None and "#" in event.item:
            if judging is not None:
                judging(state, event, data)
        else:
            fold(state, event, data)

    return fold_item


_FOLDS: dict[EventKind, Fold] = {
    EventKind.DISPATCH_STARTED: RunState._dispatch_started,
    EventKind.DISPATCH_FINISHED: RunState._dispatch_finished,
    EventKind.ITEM_ACCEPTED: RunState._item_accepted,
    EventKind.ITEM_ESCALATED: RunState._item_escalated,
    EventKind.ITEM_FAILED: RunState._item_failed,
    EventKind.EVALUATOR_REJECTED: RunState._evaluator_rejected,
    EventKind.PLAN_REJECTED: RunState._plan_rejected,
    EventKind.PLAN_ACCEPTED: RunState._plan_accepted,
    EventKind.ROUTER_REJECTED: RunState._router_rejected,
    EventKind.ROUTER_DECIDED: RunState._router_decided,
    EventKind.PLAN_STALLED: RunState._plan_stalled,
    EventKind.ITEM_WAITING: RunState._item_waiting,
    EventKind.MODEL_REQUESTED: RunState._model_requested,
    EventKind.TOOL_STARTED: RunState._tool_started,
    EventKind.TOOL_FINISHED: RunState._tool_finished,
    EventKind.ITEM_REQUEUED: RunState._item_requeued,
    EventKind.ITEM_RETRY: _unless_judging(RunState._item_retry),
    EventKind.ITEM_FALLBACK: _unless_judging(RunState._item_fallback, RunState._judge_fallback),
    EventKind.ITEM_STUCK: _unless_judging(RunState._item_stuck),
    EventKind.PHASE_STARTED: _unless_judging(RunState._phase_started),
    EventKind.PHASE_SELECTED: _unless_judging(RunState._phase_selected),
    EventKind.PHASE_FINISHED: _unless_judging(RunState._phase_finished),
    EventKind.CARD_CREATED: _unless_judging(RunState._card_created),
    EventKind.CARD_DECIDED: _unless_judging(RunState._card_decided),
    EventKind.BUDGET_REFUSED: _unless_judging(RunState._budget_refused, RunState._judge_refused),
    EventKind.CHILD_RUN_STARTED: _unless_judging(RunState._child_run_started),
    EventKind.RUN_STARTED: _unless_judging(RunState._run_started),
    EventKind.RUN_RESUMED: _unless_judging(RunState._run_resumed),
    EventKind.RUN_FINISHED: _unless_judging(RunState._run_finished),
}
"""The fold of each kind the state follows; the other kinds (`model.exchange`, `tool.called`,
`tool.refused`, `output.invalid`) only move `last_seq` and `last_ts`."""
