"""Journal events: the versioned record of everything a run decides.

A run's state is a fold over its events (`hubspoke.journal.RunState`). Events are plain data;
`data` holds only JSON values, shaped by the kind's payload type: one `TypedDict` per
`EventKind` (`PAYLOADS`), which the writer (`Journal.emit`, overloaded per kind) and every
reader (`payload(event, kind)`) go through, so that the type checker sees both ends of each
key. At run time a payload is a plain dict: the types cost nothing on the hot path.

`SCHEMA_VERSION` is stored with every run (and, as the newest written, with every journal
file) so that journals written by older versions keep loading; tests keep a journal written at
each version (`tests/fixtures/journal-v*.db`) and fold it. A key a version added is
`NotRequired` in its payload type, so readers must handle its absence in older journals.

Versions:

- 1: the first journal format.
- 2: the decision core's payloads. New kind `item.requeued` (a `Strategy.RETRY` round gives
  the item another round). `run.started` records the workflow's `shape`. `dispatch.started`
  records what was `reserved`, with `leftover_of`. `dispatch.finished` has a `fingerprint` for
  every outcome but an output, says whether the outcome was `informative`, carries the
  `correction` for the next attempt, and the `output` an evaluator is about to judge.
  `evaluator.rejected` names the `evaluator` and carries the `correction`. `budget.refused` has
  the `scope` whose budget refused. `item.failed` may stop the run (`stops_run`).
  `phase.finished` may be `stopped` (the run ended first, then without counts) and has a
  `reason` when stopped or failed by its `TopK` key.
- 3: providers. New kinds `item.waiting` (the item waits for a throttled or unavailable
  provider, spending no attempt) and `model.requested` (a model request about to leave the
  process, with its worst case: a resume charges what was in flight at a crash).
  `dispatch.finished` may be ``throttled`` or ``unavailable``, with the `wait` its provider
  asked for. `model.exchange` may count `cached_tokens`, may be `estimated` (the provider sent
  no usage), `cancelled` (its dispatch timed out or was cancelled while it was in flight: the
  worst case is charged), and may say that it `overran` the allowance.
- 4: people in the loop. New kind `card.decided` (a person approved, amended, parked, unparked,
  skipped or answered a card, or aborted the run from it: who, the column before and after,
  and for an amend the validated content and its new artifact). New card column ``answered``.
  A run and a phase may be ``waiting`` (for a person's decision). New kinds `tool.started` (a
  side-effecting tool call, journaled durably before it runs) and `tool.finished` (its result
  or error, or what its reconcile function found for a call in doubt). `tool.called` may be
  `replayed` (the recorded result of the same call was returned; the tool did not run), with
  the call's `key`. Added since, optional, read the same by older versions' folds: for
  tracing, `model.exchange` names the `model`, `provider` and `response_model` and says what
  the request cost (`usd`); `model.requested` names the `model` and `provider`; `run.resumed`
  names the `workflow`, the `parent_run` and `parent_item`, and what it `charged` for
  requests left in flight; for replay (`hubspoke replay`), `model.exchange` records the `request`
  sent (messages, tools, settings) and the `response` received, in pydantic-ai's JSON form.
- 5: dynamic plans. New kinds `plan.accepted` (a planner's plan passed the foreman's checks:
  its steps, and the revision it is), `plan.rejected` (it did not: every error, and the
  correction the planner's next attempt gets; folded like `evaluator.rejected`) and
  `plan.stalled` (the plan's steps can no longer finish and the planner is asked again, with a
  compact account of each step). The router foreman (docs/router.md), in the same version:
  `router.decided` (a router's checked decision for one turn: dispatch a role as a step, finish
  with a result, escalate to a person, or abort) and `router.rejected` (a decision failed the
  foreman's checks: every error and the correction; folded like `plan.rejected`).
"""

# No `from __future__ import annotations` here: `TypedDict` reads `NotRequired` from evaluated
# annotations only (with postponed ones, Python < 3.14 counts every key as required), and
# `__required_keys__` is what `hubspoke.testing.payload_errors` checks journals with.

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Literal, NewType, NotRequired, TypedDict, overload

from hubspoke.budget import BudgetData, UsageData
from hubspoke.jsontext import parse

__all__ = [
    "PAYLOADS",
    "SCHEMA_VERSION",
    "BudgetRefused",
    "CardCreated",
    "CardDecided",
    "ChildRunStarted",
    "DispatchFinished",
    "DispatchStarted",
    "EvaluatorRejected",
    "Event",
    "EventKind",
    "ItemAccepted",
    "ItemEscalated",
    "ItemFailed",
    "ItemFallback",
    "ItemRequeued",
    "ItemRetry",
    "ItemStuck",
    "ItemWaiting",
    "ModelExchange",
    "ModelRequested",
    "OutputInvalid",
    "Payload",
    "PhaseFinished",
    "PhaseSelected",
    "PhaseStarted",
    "PhaseTally",
    "PlanAccepted",
    "PlanRejected",
    "PlanStalled",
    "Reserved",
    "RouterDecided",
    "RouterRejected",
    "RunFinished",
    "RunResumed",
    "RunStarted",
    "TextEvent",
    "ToolCalled",
    "ToolFinished",
    "ToolRefused",
    "ToolStarted",
    "TraceEntry",
    "Unchecked",
    "payload",
]

SCHEMA_VERSION = 5


class EventKind(StrEnum):
    RUN_STARTED = "run.started"
    RUN_RESUMED = "run.resumed"
    RUN_FINISHED = "run.finished"
    PHASE_STARTED = "phase.started"
    PHASE_SELECTED = "phase.selected"
    PHASE_FINISHED = "phase.finished"
    DISPATCH_STARTED = "dispatch.started"
    DISPATCH_FINISHED = "dispatch.finished"
    MODEL_EXCHANGE = "model.exchange"
    TOOL_CALLED = "tool.called"
    TOOL_REFUSED = "tool.refused"
    OUTPUT_INVALID = "output.invalid"
    EVALUATOR_REJECTED = "evaluator.rejected"
    ITEM_RETRY = "item.retry"
    ITEM_FALLBACK = "item.fallback"
    ITEM_STUCK = "item.stuck"
    ITEM_ACCEPTED = "item.accepted"
    ITEM_ESCALATED = "item.escalated"
    ITEM_FAILED = "item.failed"
    ITEM_REQUEUED = "item.requeued"
    ITEM_WAITING = "item.waiting"
    MODEL_REQUESTED = "model.requested"
    BUDGET_REFUSED = "budget.refused"
    CARD_CREATED = "card.created"
    CARD_DECIDED = "card.decided"
    CHILD_RUN_STARTED = "child.started"
    # exactly-once tools (schema 4)
    TOOL_STARTED = "tool.started"
    TOOL_FINISHED = "tool.finished"
    # dynamic plans (schema 5)
    PLAN_ACCEPTED = "plan.accepted"
    PLAN_REJECTED = "plan.rejected"
    PLAN_STALLED = "plan.stalled"
    ROUTER_DECIDED = "router.decided"
    ROUTER_REJECTED = "router.rejected"


@dataclass(slots=True)
class Event:
    """One entry of a run's journal. `seq` is contiguous per run, starting at 1.

    `data` is the kind's payload (`PAYLOADS[kind]`); read it typed with `payload(event, kind)`.
    """

    run_id: str
    seq: int
    ts: float
    """Unix time, seconds."""
    kind: EventKind
    phase: str | None = None
    role: str | None = None
    item: str | None = None
    """The item's key (``phase[i]``, or the phase's name for a single item); an evaluator's
    dispatch about an item is keyed ``item#eval``."""
    attempt: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "run_id": self.run_id,
            "kind": self.kind.value,
            "phase": self.phase,
            "role": self.role,
            "item": self.item,
            "attempt": self.attempt,
            "data": self.data,
        }


_DATA: Any = Event.__dict__["data"]
"""The `data` slot's descriptor: where `TextEvent` keeps what it read."""


class TextEvent(Event):
    """An event made from its data's JSON text, which it reads when `data` is first asked for.

    The journal writes a specialist's trace entries (model exchanges of a few KB each) from the
    text they are kept as, and the live fold never reads them: most are never read back. It
    equals, prints and pickles as the `Event` with the same fields (it pickles as one), and is
    the same dataclass for `dataclasses.replace`, `asdict` and `match`."""

    __slots__ = ("_text",)

    def __init__(
        self,
        run_id: str,
        seq: int,
        ts: float,
        kind: EventKind,
        phase: str | None = None,
        role: str | None = None,
        item: str | None = None,
        attempt: int | None = None,
        text: str = "{}",
        *,
        data: dict[str, Any] | None = None,
    ) -> None:
        """`text`: the data's JSON text. `data`, when given, is the data already read (what
        `dataclasses.replace` passes): the text is then not read."""
        self.run_id, self.seq, self.ts, self.kind = run_id, seq, ts, kind
        self.phase, self.role, self.item, self.attempt = phase, role, item, attempt
        self._text = text
        if data is not None:
            _DATA.__set__(self, data)

    @property
    def data(self) -> dict[str, Any]:
        try:
            value: dict[str, Any] = _DATA.__get__(self)
        except AttributeError:  # not read yet
            value = parse(self._text)
            _DATA.__set__(self, value)
        return value

    @data.setter
    def data(self, value: dict[str, Any]) -> None:
        _DATA.__set__(self, value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return _fields(self) == _fields(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, as `Event`

    def __repr__(self) -> str:
        return repr(Event(*_fields(self)))

    def __reduce__(self) -> tuple[Any, ...]:
        return (Event, _fields(self))


def _fields(event: Event) -> tuple[Any, ...]:
    """An event's fields in order, its data read (what `Event`'s own equality compares)."""
    return (
        event.run_id,
        event.seq,
        event.ts,
        event.kind,
        event.phase,
        event.role,
        event.item,
        event.attempt,
        event.data,
    )


# the run ------------------------------------------------------------------------------------------


class RunStarted(TypedDict):
    """`run.started`: the first event of a run."""

    workflow: str
    """The workflow's name."""
    ref: str | None
    """Where the workflow is defined (`module:attr` or `file.py:attr`), if known."""
    input: dict[str, Any]
    """The run's input by field name, scrubbed of secrets."""
    schema_version: int
    """The `SCHEMA_VERSION` of the hubspoke that started the run."""
    budget: BudgetData
    """The run's limits."""
    parent_run: str | None
    """For a sub-run: the parent run's id."""
    parent_item: str | None
    """For a sub-run: the parent's item key that dispatched it."""
    shape: NotRequired[dict[str, Any]]
    """The workflow's shape (`Workflow.shape`): a resume refuses a workflow whose shape changed.
    Since schema 2."""


class RunResumed(TypedDict):
    """`run.resumed`: a new session of a run that had stopped before its end."""

    elapsed_before: float
    """Seconds of wall time spent in the earlier sessions."""
    in_flight: list[str]
    """Keys of the items that were under way when the last session stopped."""
    workflow: NotRequired[str]
    """The workflow's name (as `RunStarted.workflow`). Absent in journals written before it
    was added (schema 4)."""
    parent_run: NotRequired[str | None]
    """For a sub-run: the parent run's id (as `RunStarted.parent_run`). Added with
    `workflow`."""
    parent_item: NotRequired[str | None]
    """For a sub-run: the parent's item key whose dispatch resumed it. Added with `workflow`."""
    charged: NotRequired[list[dict[str, Any]]]
    """The dispatches that had a model request in flight when the last session stopped (their
    `model.requested` has no `dispatch.finished`), which this event charges: per dispatch its
    ``item``, ``phase``, ``role``, ``model`` and ``provider`` (when its requests named them),
    and what is charged: ``input_tokens``, ``output_tokens``, ``usd`` and ``requests`` (what it
    spent before its latest request plus that request's worst case). The fold charges them
    from the `model.requested` events themselves; this says so to a listener that saw none of
    them (a tracer in a new process). Added with `workflow`."""


class RunFinished(TypedDict):
    """`run.finished`: the last event of a run."""

    status: str
    """``completed``, ``failed``, ``escalated``, ``exhausted`` or ``aborted``."""
    reason: str
    """Why it did not complete; empty when it did."""


# phases -------------------------------------------------------------------------------------------


class PhaseStarted(TypedDict):
    """`phase.started`: a phase starts (again, on each resumed session that reaches it)."""

    items: int
    """The phase's items: one per element of its fan-out, or 1."""
    concurrency: NotRequired[int]
    """`Phase.concurrency`: how many of its items may be in flight at once (the run inspector
    shows the items in flight against it). Absent from journals written before the web app."""


class PhaseSelected(TypedDict):
    """`phase.selected`: what a phase's `TopK` kept."""

    artifact_ids: list[str]
    """The kept artifacts, highest key first."""


class PhaseTally(TypedDict):
    """A phase's items at its end, as `phase.finished` counts them."""

    accepted: int
    escalated: int
    missing: int
    """Items without an accepted output (escalated and failed ones included)."""


class PhaseFinished(TypedDict):
    """`phase.finished`: the phase's verdict."""

    status: str
    """``completed``, ``failed``, or ``stopped`` (the run ended before the phase could; since
    schema 2)."""
    accepted: NotRequired[int]
    """Absent when `status` is ``stopped``, like the other counts."""
    escalated: NotRequired[int]
    missing: NotRequired[int]
    """Items without an accepted output (escalated and failed ones included)."""
    reason: NotRequired[str]
    """Why it failed (its `TopK` key raised) or stopped. Since schema 2."""


# dispatches ---------------------------------------------------------------------------------------


class Reserved(TypedDict):
    """What the ledger reserved for one dispatch: its allowance; `None` is no limit."""

    tokens: int | None
    usd: float | None
    tool_calls: int | None
    leftover: bool
    """Sized by what an account had left rather than by a cap: running out of it means that
    account is spent."""
    leftover_of: NotRequired[str]
    """The account whose leftover sized it, ``run`` or ``role`` (read when `leftover`; absent
    reads as ``run``). Since schema 2."""


class DispatchStarted(TypedDict):
    """`dispatch.started`: a specialist is given an item (an attempt)."""

    fingerprint: str
    """Role, normalised input and correction, hashed: the same dispatch has the same one."""
    correction: str | None
    """What was wrong with the previous attempt, for a retry."""
    tries: int
    """Attempts the same role made before this one (the ladder's position)."""
    input: dict[str, Any]
    """The item's input by field name."""
    reserved: NotRequired[Reserved]
    """The dispatch's allowance: a resume gives a dispatch that was in flight the same again.
    Since schema 2."""


class DispatchFinished(TypedDict):
    """`dispatch.finished`: the specialist's outcome, validated, with what it spent."""

    outcome: str
    """An `OutcomeKind` value: ``output``, ``invalid``, ``scope_violation``, ``needs_human``,
    ``failed``, ``timed_out``, ``budget_refused``, ``throttled`` or ``unavailable`` (the last
    two since schema 3)."""
    usage: UsageData
    """What the dispatch spent (its wall time included)."""
    message: NotRequired[str]
    """The outcome's message, when it has one."""
    correction: NotRequired[str]
    """For an outcome but an output: the correction the next attempt gets. Since schema 2."""
    fingerprint: NotRequired[str]
    """The dispatch's fingerprint: for every outcome but an output since schema 2 (schema 1:
    only for informative ones)."""
    informative: NotRequired[bool]
    """The outcome says something about the input itself (``invalid``, ``scope_violation``,
    ``needs_human``): the same dispatch again is stuck at once, where a failure or time-out
    is tolerated a few times. Absent (schema 1): judge by `outcome`. Since schema 2."""
    output: NotRequired[dict[str, Any]]
    """The output (by field name) that the phase's evaluator is about to judge: a resume
    judges it again rather than dispatching again. Since schema 2."""
    wait: NotRequired[float]
    """For ``throttled`` or ``unavailable``: seconds until the provider takes requests again
    (its ``Retry-After``, or the backoff). Since schema 3."""


class ModelRequested(TypedDict):
    """`model.requested`: an agent specialist is about to send a model request that leaves the
    process; journaled durably before it is sent. Its dispatch's `dispatch.finished` carries
    what was really spent; if none comes (a crash), the fold charges the worst case when the
    run resumes. Since schema 3."""

    turn: int
    """The request's turn within the attempt, from 0."""
    worst_tokens: int
    """The most the request may cost in tokens: its prompt's estimate plus the maximum output."""
    worst_usd: float
    """The same in US dollars, at the model's price."""
    input_tokens: int
    """The prompt's estimate, in tokens (charged as input after a crash)."""
    endpoint: str
    """Where the request goes (a base URL, or the provider's name)."""
    spent: NotRequired[UsageData]
    """What the dispatch had spent before this request (its earlier requests, as counted):
    after a crash the fold charges this plus the request's worst case, not the worst case of
    every request the dispatch made. Absent in journals written before it was added: every
    request's worst case is charged."""
    model: NotRequired[str]
    """The model asked for (as `ModelExchange.model`). Absent in journals written before it
    was added (schema 4), and when the specialist did not say."""
    provider: NotRequired[str]
    """Who serves it (as `ModelExchange.provider`). Added with `model`."""


class OutputInvalid(TypedDict):
    """`output.invalid`: why an output failed validation."""

    errors: list[dict[str, Any]]
    """Validation errors, each with ``loc`` (a path) and ``msg`` (and ``type`` when pydantic
    gave one)."""


class EvaluatorRejected(TypedDict):
    """`evaluator.rejected`: the phase's evaluator rejected the item's output."""

    critique: str
    fingerprint: str
    """The fingerprint of the dispatch whose output was rejected: it is stuck from now on."""
    correction: NotRequired[str]
    """The correction the next attempt gets. Since schema 2."""
    evaluator: NotRequired[str]
    """The role that judged. Since schema 2."""


# what a specialist did (its trace) ---------------------------------------------------------------


class ModelExchange(TypedDict):
    """`model.exchange`: one model request of an agent specialist."""

    kind: str
    """``model.exchange`` (the trace entry's own kind)."""
    turn: int
    """The request's turn within the attempt, from 0."""
    input_tokens: NotRequired[int]
    """Absent when the request failed, like the rest of the answer."""
    output_tokens: NotRequired[int]
    seconds: NotRequired[float]
    """Wall time of the request."""
    calls: NotRequired[list[str]]
    """The tools the model called, in order."""
    error: NotRequired[str]
    """Why the request failed (e.g. ``HTTP 429``)."""
    cached_tokens: NotRequired[int]
    """Of `input_tokens`, those the provider read from its prompt cache (priced at its cached
    rate). Since schema 3."""
    estimated: NotRequired[bool]
    """The provider sent no usage: the tokens are the runtime's own estimate. Since schema 3."""
    cancelled: NotRequired[bool]
    """The dispatch ended while the request was in flight: its worst case is charged (the
    provider may have generated up to it). Since schema 3."""
    overran: NotRequired[bool]
    """The provider counted more than the dispatch's allowance had left: the answer is kept,
    the next request is refused. Since schema 3."""
    model: NotRequired[str]
    """The model the request asked for (``gpt-4o-mini``, ``offline``): OpenTelemetry's
    ``gen_ai.request.model``. Absent in journals written before it was added (schema 4)."""
    provider: NotRequired[str]
    """Who serves the model, as pydantic-ai names it (``openai``, ``anthropic``; ``function``
    for the offline model): ``gen_ai.provider.name``. Added with `model`."""
    response_model: NotRequired[str]
    """The model that answered, when the provider said (``gpt-4o-mini-2024-07-18``). Added
    with `model`."""
    usd: NotRequired[float]
    """What the request was charged, in US dollars (0 for an unpriced model), as its
    dispatch's usage counted it. Absent when nothing was charged (a request refused with an
    HTTP error before it was processed). Added with `model`."""
    request: NotRequired[dict[str, Any]]
    """What was sent, for `hubspoke replay`: ``messages`` (the messages this request added to
    the attempt's conversation, in pydantic-ai's JSON form), and on the attempt's first request
    ``tools`` (the tool definitions offered) and ``settings`` (header values left out); see
    `hubspoke.specialists.recording`. Absent in journals written before recording existed, or
    by an agent built with ``record=False``."""
    response: NotRequired[dict[str, Any]]
    """The `ModelResponse` as received (parts, tool calls with their arguments, finish reason,
    usage), in pydantic-ai's JSON form. Absent when the request failed, and where `request` is."""


class ToolCalled(TypedDict):
    """`tool.called`: a specialist called a tool of its card."""

    kind: str
    """``tool.called``."""
    tool: str
    arguments: dict[str, Any] | str
    """As the specialist passed them (a JSON string from a model)."""
    seconds: NotRequired[float]
    """Wall time of the call, when it returned."""
    error: NotRequired[str]
    """Why the call failed (bad arguments, or what the tool raised)."""
    replayed: NotRequired[bool]
    """A side-effecting tool's call made again (a retry, a resume): the recorded result was
    returned and the tool did not run. Since schema 4."""
    key: NotRequired[str]
    """With `replayed`: the call's idempotency key (its `tool.started`'s). Since schema 4."""


class ToolRefused(TypedDict):
    """`tool.refused`: a call the card does not allow, or a trace entry the foreman refused."""

    kind: str
    """``tool.refused``, or ``trace.refused`` for a malformed trace entry."""
    reason: str
    tool: NotRequired[str]
    """The tool asked for (absent for a malformed trace entry)."""


class ChildRunStarted(TypedDict):
    """`child.started`: a sub-foreman started (or resumed) a child run for the dispatch."""

    kind: str
    """``child.started``."""
    child_run: str
    """The child run's id."""
    budget: BudgetData
    """The child run's limits: its own, no looser than the parent's reservation."""


TraceEntry = ModelExchange | ToolCalled | ToolRefused | ChildRunStarted
"""An entry of a specialist's trace (`Context.trace`), journaled as the event of its kind."""

Unchecked = NewType("Unchecked", dict[str, Any])
"""A payload whose kind is chosen at run time (a trace entry, journaled by its ``kind``): the
type checker cannot pair it with a kind, so `Journal.emit` takes it only wrapped in this."""


# items --------------------------------------------------------------------------------------------


class ItemRetry(TypedDict):
    """`item.retry`: the item's role tries again, with a correction."""

    correction: str


class ItemFallback(TypedDict):
    """`item.fallback`: the item moves to its role's fallback role."""

    to: str
    """The fallback role."""
    reason: str


class ItemStuck(TypedDict):
    """`item.stuck`: the next dispatch would bring no new information."""

    fingerprint: str


class ItemAccepted(TypedDict):
    """`item.accepted`: the item's output is accepted, stored as an artifact."""

    artifact_id: str


class ItemEscalated(TypedDict):
    """`item.escalated`: the item is handed to a person (a card in the escalated column)."""

    reason: str


class ItemFailed(TypedDict):
    """`item.failed`: the item ends without an output and without a person."""

    reason: str
    stops_run: NotRequired[bool]
    """The escalation cap was reached: the run stops. Since schema 2."""


class ItemRequeued(TypedDict):
    """`item.requeued`: a `Strategy.RETRY` phase gives the item another round. Since schema 2."""

    reason: str
    """Why the last round did not accept it."""
    round: int
    """The round it is requeued for, from 1."""


class ItemWaiting(TypedDict):
    """`item.waiting`: the item waits before it is dispatched again where it stands on its
    ladder; no attempt is spent. Since schema 3."""

    cause: str
    """``throttled`` or ``unavailable``: what its provider answered; or ``approval`` (since
    schema 4): the item waits at a human gate until a person approves its card."""
    reason: str
    seconds: float
    """How long the item waits, at least (0 at a human gate: until a person decides)."""
    waits: int
    """Waits of the item's current role since its latest attempt began, this one included."""


class BudgetRefused(TypedDict):
    """`budget.refused`: the ledger refused a dispatch, or a dispatch ran out of what an
    account had left."""

    reason: str
    scope: NotRequired[str]
    """``run``: the run's budget (the run stops); ``role``: the role's `run_budget` (the item
    goes to the role's fallback or a person). Absent (schema 1): ``run``. Since schema 2."""


class CardCreated(TypedDict):
    """`card.created`: a card on the board (`Store.cards` holds the card itself)."""

    card_id: str
    column: str
    """``review`` or ``escalated``."""
    title: str
    artifact_id: NotRequired[str]
    """The output under review (review cards)."""


class CardDecided(TypedDict):
    """`card.decided`: a person decided a card (`hubspoke.decisions.Board`). The event's
    `phase`, `role` and `item` are the card's. Since schema 4."""

    decision_id: str
    """``{card_id}/{n}``, n counting the card's decisions from 1: stable, whoever reads it."""
    card_id: str
    verb: str
    """``approve``, ``amend``, ``park``, ``unpark``, ``skip``, ``answer`` or ``abort``."""
    by: str
    """Who decided (``--by``; by default the user's login name, or ``unknown``)."""
    before: str
    """The card's column before the decision."""
    after: str
    """Its column after: ``approved``, ``amended``, ``parked``, ``review``, ``skipped`` or
    ``answered``."""
    note: NotRequired[str]
    """Why, in the decider's words (an abort's reason)."""
    content: NotRequired[dict[str, Any]]
    """Amend: the amended output by field name, validated against the role's output schema."""
    artifact_id: NotRequired[str]
    """Amend: the new artifact that holds `content`."""
    answer: NotRequired[str]
    """Answer: the text the item's next attempt gets."""
    input: NotRequired[dict[str, Any]]
    """Answer: a corrected input (by field name) for the item's next attempt."""


# side-effecting tools, exactly once (schema 4) ----------------------------------------------------


class ToolStarted(TypedDict):
    """`tool.started`: a side-effecting tool is about to run; journaled durably before it runs.
    Its `tool.finished` (same `key`) follows when it returns or raises: a call started without
    one (the process died, or the dispatch ended, while the tool ran) is in doubt. Journaled
    as it happens, so it comes before the trace of its dispatch in the stream. Since schema 4."""

    key: str
    """The call's idempotency key: the run, the item, the tool and its arguments, hashed."""
    tool: str
    arguments: dict[str, Any]
    """The validated arguments, as JSON values by name (the key's input)."""
    reconciled: NotRequired[bool]
    """The call was in doubt and its reconcile function found that it had not run: it runs
    now."""


class ToolFinished(TypedDict):
    """`tool.finished`: how a side-effecting call ended, durably; the same call made again gets
    `result` without running the tool. Since schema 4."""

    key: str
    """The call's idempotency key (its `tool.started`'s)."""
    tool: str
    result: NotRequired[Any]
    """What the tool returned, as JSON (present, maybe null, when it returned)."""
    error: NotRequired[str]
    """What the tool raised: the call may run again, with the same key."""
    seconds: NotRequired[float]
    """Wall time of the call, when the tool ran."""
    reconciled: NotRequired[bool]
    """The call was in doubt: `result` is what its reconcile function found, and the tool did
    not run again."""


# dynamic plans -------------------------------------------------------------------------------


class PlanAccepted(TypedDict):
    """`plan.accepted`: a planner's plan passed the foreman's checks; its steps run as items
    ``PHASE[ID]``. Since schema 5."""

    revision: int
    """1 for the phase's first plan, 2 for the plan after its first stall..."""
    item: str
    """The planner's item that made it (``PHASE:plan[REVISION]``)."""
    steps: list[dict[str, Any]]
    """The steps (`hubspoke.PlanStep` by field name): ``id``, ``role``, ``input`` (references
    as ``{"$from": ID}``), ``after``, ``objective``, ``scope``, ``output_format``,
    ``siblings``."""
    rationale: NotRequired[str]


class PlanRejected(TypedDict):
    """`plan.rejected`: a planner's plan failed the foreman's checks (an invalid output: the
    planner's ladder retries it with every error). Since schema 5."""

    errors: list[dict[str, Any]]
    """Every error, each with ``loc`` (where in the plan) and ``msg``."""
    fingerprint: str
    """The planner dispatch whose plan was rejected: it is stuck from now on."""
    correction: str
    """What the planner's next attempt is told."""


class PlanStalled(TypedDict):
    """`plan.stalled`: the plan's steps can no longer all finish; the planner is asked for a
    new plan. The event names the planner's item that made the stalled plan. Since schema 5."""

    revision: int
    """The plan that stalled."""
    reason: str
    account: str
    """What the planner is told (each step's id, role, status and a one-line reason)."""


class RouterDecided(TypedDict):
    """`router.decided`: a routed phase's router made a valid decision for one turn; the event
    names the router's item (``PHASE:route[TURN]``). Since schema 5."""

    turn: int
    """1 for the phase's first decision, 2 for the next..."""
    action: str
    """``dispatch``, ``finish``, ``escalate`` or ``abort``."""
    step: NotRequired[str]
    """Dispatch: the step's id (its item is ``PHASE[ID]``)."""
    role: NotRequired[str]
    """Dispatch: the role it runs."""
    input: NotRequired[dict[str, Any]]
    """Dispatch: its input as decided (references as ``{"$from": ID}``)."""
    objective: NotRequired[str]
    question: NotRequired[str]
    """Escalate: what the person is asked (the item ``PHASE:ask[TURN]`` waits for it)."""
    reason: NotRequired[str]
    """Abort: why."""


class RouterRejected(TypedDict):
    """`router.rejected`: a router's decision failed the foreman's checks (an invalid output:
    the router's ladder retries it with every error). Since schema 5."""

    errors: list[dict[str, Any]]
    fingerprint: str
    correction: str


Payload = (
    RunStarted
    | RunResumed
    | RunFinished
    | PhaseStarted
    | PhaseSelected
    | PhaseFinished
    | DispatchStarted
    | DispatchFinished
    | ModelExchange
    | ToolCalled
    | ToolRefused
    | OutputInvalid
    | EvaluatorRejected
    | ItemRetry
    | ItemFallback
    | ItemStuck
    | ItemAccepted
    | ItemEscalated
    | ItemFailed
    | ItemRequeued
    | ItemWaiting
    | ModelRequested
    | BudgetRefused
    | CardCreated
    | CardDecided
    | ChildRunStarted
    | ToolStarted
    | ToolFinished
    | PlanAccepted
    | PlanRejected
    | PlanStalled
    | RouterDecided
    | RouterRejected
)
"""Any event's payload."""

PAYLOADS: Final[Mapping[EventKind, type[Any]]] = {
    EventKind.RUN_STARTED: RunStarted,
    EventKind.RUN_RESUMED: RunResumed,
    EventKind.RUN_FINISHED: RunFinished,
    EventKind.PHASE_STARTED: PhaseStarted,
    EventKind.PHASE_SELECTED: PhaseSelected,
    EventKind.PHASE_FINISHED: PhaseFinished,
    EventKind.DISPATCH_STARTED: DispatchStarted,
    EventKind.DISPATCH_FINISHED: DispatchFinished,
    EventKind.MODEL_EXCHANGE: ModelExchange,
    EventKind.TOOL_CALLED: ToolCalled,
    EventKind.TOOL_REFUSED: ToolRefused,
    EventKind.OUTPUT_INVALID: OutputInvalid,
    EventKind.EVALUATOR_REJECTED: EvaluatorRejected,
    EventKind.ITEM_RETRY: ItemRetry,
    EventKind.ITEM_FALLBACK: ItemFallback,
    EventKind.ITEM_STUCK: ItemStuck,
    EventKind.ITEM_ACCEPTED: ItemAccepted,
    EventKind.ITEM_ESCALATED: ItemEscalated,
    EventKind.ITEM_FAILED: ItemFailed,
    EventKind.ITEM_REQUEUED: ItemRequeued,
    EventKind.ITEM_WAITING: ItemWaiting,
    EventKind.MODEL_REQUESTED: ModelRequested,
    EventKind.BUDGET_REFUSED: BudgetRefused,
    EventKind.CARD_CREATED: CardCreated,
    EventKind.CARD_DECIDED: CardDecided,
    EventKind.CHILD_RUN_STARTED: ChildRunStarted,
    EventKind.TOOL_STARTED: ToolStarted,
    EventKind.TOOL_FINISHED: ToolFinished,
    EventKind.PLAN_ACCEPTED: PlanAccepted,
    EventKind.PLAN_REJECTED: PlanRejected,
    EventKind.PLAN_STALLED: PlanStalled,
    EventKind.ROUTER_DECIDED: RouterDecided,
    EventKind.ROUTER_REJECTED: RouterRejected,
}
"""The payload type of each kind (a `TypedDict` class: its `__required_keys__` and
`__optional_keys__` are the keys an event of that kind may have)."""


# reading payloads ---------------------------------------------------------------------------------


@overload
def payload(event: Event, kind: Literal[EventKind.RUN_STARTED]) -> RunStarted: ...
@overload
def payload(event: Event, kind: Literal[EventKind.RUN_RESUMED]) -> RunResumed: ...
@overload
def payload(event: Event, kind: Literal[EventKind.RUN_FINISHED]) -> RunFinished: ...
@overload
def payload(event: Event, kind: Literal[EventKind.PHASE_STARTED]) -> PhaseStarted: ...
@overload
def payload(event: Event, kind: Literal[EventKind.PHASE_SELECTED]) -> PhaseSelected: ...
@overload
def payload(event: Event, kind: Literal[EventKind.PHASE_FINISHED]) -> PhaseFinished: ...
@overload
def payload(event: Event, kind: Literal[EventKind.DISPATCH_STARTED]) -> DispatchStarted: ...
@overload
def payload(event: Event, kind: Literal[EventKind.DISPATCH_FINISHED]) -> DispatchFinished: ...
@overload
def payload(event: Event, kind: Literal[EventKind.MODEL_EXCHANGE]) -> ModelExchange: ...
@overload
def payload(event: Event, kind: Literal[EventKind.TOOL_CALLED]) -> ToolCalled: ...
@overload
def payload(event: Event, kind: Literal[EventKind.TOOL_REFUSED]) -> ToolRefused: ...
@overload
def payload(event: Event, kind: Literal[EventKind.OUTPUT_INVALID]) -> OutputInvalid: ...
@overload
def payload(event: Event, kind: Literal[EventKind.EVALUATOR_REJECTED]) -> EvaluatorRejected: ...
@overload
def payload(event: Event, kind: Literal[EventKind.ITEM_RETRY]) -> ItemRetry: ...
@overload
def payload(event: Event, kind: Literal[EventKind.ITEM_FALLBACK]) -> ItemFallback: ...
@overload
def payload(event: Event, kind: Literal[EventKind.ITEM_STUCK]) -> ItemStuck: ...
@overload
def payload(event: Event, kind: Literal[EventKind.ITEM_ACCEPTED]) -> ItemAccepted: ...
@overload
def payload(event: Event, kind: Literal[EventKind.ITEM_ESCALATED]) -> ItemEscalated: ...
@overload
def payload(event: Event, kind: Literal[EventKind.ITEM_FAILED]) -> ItemFailed: ...
@overload
def payload(event: Event, kind: Literal[EventKind.ITEM_REQUEUED]) -> ItemRequeued: ...
@overload
def payload(event: Event, kind: Literal[EventKind.ITEM_WAITING]) -> ItemWaiting: ...
@overload
def payload(event: Event, kind: Literal[EventKind.MODEL_REQUESTED]) -> ModelRequested: ...
@overload
def payload(event: Event, kind: Literal[EventKind.BUDGET_REFUSED]) -> BudgetRefused: ...
@overload
def payload(event: Event, kind: Literal[EventKind.CARD_CREATED]) -> CardCreated: ...
@overload
def payload(event: Event, kind: Literal[EventKind.CARD_DECIDED]) -> CardDecided: ...
@overload
def payload(event: Event, kind: Literal[EventKind.CHILD_RUN_STARTED]) -> ChildRunStarted: ...
@overload
def payload(event: Event, kind: Literal[EventKind.TOOL_STARTED]) -> ToolStarted: ...
@overload
def payload(event: Event, kind: Literal[EventKind.TOOL_FINISHED]) -> ToolFinished: ...
@overload
def payload(event: Event, kind: Literal[EventKind.PLAN_ACCEPTED]) -> PlanAccepted: ...
@overload
def payload(event: Event, kind: Literal[EventKind.PLAN_REJECTED]) -> PlanRejected: ...
@overload
def payload(event: Event, kind: Literal[EventKind.PLAN_STALLED]) -> PlanStalled: ...
@overload
def payload(event: Event, kind: Literal[EventKind.ROUTER_DECIDED]) -> RouterDecided: ...
@overload
def payload(event: Event, kind: Literal[EventKind.ROUTER_REJECTED]) -> RouterRejected: ...
def payload(event: Event, kind: EventKind) -> Any:
    """The event's data as the payload type of `kind` (the same dict: nothing is copied).

    Branch on `event.kind` first, then read with the kind you branched on::

        if event.kind is EventKind.RUN_FINISHED:
            status = payload(event, EventKind.RUN_FINISHED)["status"]

    Keys a schema version added are `NotRequired`: a journal written before it lacks them.

    Raises:
        ValueError: the event is of another kind.
    """
    if event.kind is not kind:
        raise ValueError(
            f"event {event.seq} of run {event.run_id} is {event.kind.value}, not {kind.value}: "
            "branch on event.kind before reading its payload"
        )
    return event.data
