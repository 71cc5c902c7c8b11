"""Resume: from the folded journal, what the run had decided, before the same code runs on.

Nothing here dispatches: it rebuilds what phases' `input` and `over` saw (the run view), the
ledger's spending, what `run.resumed` charges for the model requests in flight at the crash,
the decision to stop the run if one was journaled, and the cards a crash may have kept from
being written; it says whether a resume drives the run on at all (`can_go_on`) and with what
budget, and begins the resumed session (`begin_session`). Where each item stands is
`_start.start_of`, from the same fold.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from typing import Any

from hubspoke.board import card_id
from hubspoke.budget import Budget
from hubspoke.errors import HubspokeError
from hubspoke.events import EventKind, RunResumed
from hubspoke.handoff import validate_json
from hubspoke.journal import RunRecord, RunState, Store
from hubspoke.phases import Phase
from hubspoke.runview import RunView

from . import _events
from ._drive import close_servers, started
from ._planned import plan_order
from ._run import Run, Wiring
from ._waiting import gate_due

__all__ = [
    "begin_session",
    "budget_of",
    "can_go_on",
    "charged",
    "collector_paused",
    "rebuild_view",
    "reconcile_cards",
    "stop_decided",
]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a resume rebuilds a run's state in one
    synchronous pass: every object made is kept by the run (there is no garbage to find), and
    the collector would otherwise walk the growing state again and again (resume of a 100,000-
    event run: docs/performance.md). It runs again afterwards; a collector the application had
    turned off stays off. Nothing else of the collector's changes: which objects are in which
    generation is the process's business, not a library's."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def rebuild_view(wiring: Wiring, store: Store, record: RunRecord, state: RunState) -> RunView:
    """What phases' `input` and `over` saw: the run input and the accepted outputs.

    Raises:
        RunNotFound: an accepted item's artifact is missing from the store.
    """
    from hubspoke.errors import RunNotFound
    from hubspoke.router import Result

    # The run record holds the input by field name.
    workflow = wiring.workflow
    view = RunView(
        workflow.input.model_validate(record.input, by_name=True), phases=workflow.phases
    )
    by_artifact: dict[str, str] = {}
    accepted = [i for i in state.items.values() if i.status == "accepted" and i.artifact_id]
    # The review gate holds: a review phase's output is seen once approved, as amended if it
    # was; until then (in review, parked, skipped) it is not.
    reviewed = {p.name for p in workflow.phases if p.review}
    # A routed phase's finish result is an item of the router's, in the phase's own schema.
    results = {f"{p.name}[result]": p.returns or Result for p in workflow.phases if p.route_by}
    # One query for the run's artifacts, not one per item, validated from their JSON text.
    texts = store.artifact_texts(record.run_id) if accepted else {}
    with collector_paused():
        for item in accepted:
            key, drafted = item.key, item.artifact_id
            assert drafted is not None
            aid, seen = drafted, item.phase not in reviewed
            if not seen and (approved := state.approved_artifact(key)):
                aid, seen = approved, True
            text = texts.get(aid)
            if text is None:
                raise RunNotFound(f"artifact {aid} of {key} is missing")
            # Stored by field name (`_events.accept`): read back by name, aliases or not, by
            # the model's validator directly (a resume validates every accepted output: 33,329
            # at 100,000 events) and as its config says: it was checked strictly when accepted.
            schema = results.get(key) or wiring.roles[item.role].output
            output = validate_json(schema, text, by_name=True, strict=None)
            if seen:
                view.record(item.phase, key, aid, output)
            else:
                view.hold(item.phase, key, aid, output)
            by_artifact[aid] = key
            by_artifact[drafted] = key  # a TopK names the drafted artifact
    for name, phase_state in state.phases.items():
        if phase_state.selected is not None:
            view.select(name, [by_artifact[a] for a in phase_state.selected])
    for name in results:  # a routed phase's output is its result
        view.select(name.removesuffix("[result]"), [name])
    for name, plans in state.plans.items():
        plan_order(view, name, plans)
    return view


def stop_decided(wiring: Wiring, state: RunState) -> tuple[str, str] | None:
    """The decision to stop the run that the journal holds, as (status, reason), if any."""
    if state.stopping is None:
        return None
    cause, why = state.stopping
    if cause == "budget":
        return wiring.budget_state(), f"budget: {why}"
    return "aborted", wiring.cap_reason()


def reconcile_cards(wiring: Wiring, run: Run) -> None:
    """Give every item that ended before the crash the card its end calls for, once.

    An item's end and its card are written together in practice; this makes resume correct
    even if a crash fell between the two. An item has one card id (`board.card_id`) whatever
    its ends, so an item that escalated, was answered and then ended again already holds a
    card, its earlier escalation's: what counts is whether the card it holds now is the one
    its latest end called for (`_card_due`), not whether it has one.
    """
    state = run.state
    phases = {p.name: p for p in wiring.workflow.phases}
    for key, item in state.items.items():
        # A planner's or router's item (phase `PHASE:plan`, `PHASE:route`) escalates too, and is
        # never reviewed.
        phase = phases.get(item.phase)
        due = _card_due(state, phase, key, item.status, item.artifact_id)
        if due == "escalated":
            _events.escalation_card(wiring, run, item.phase, item.role, key, item.reason)
        elif due == "review" and phase is not None:
            aid, output = run.view.accepted(phase.name, key)
            _events.review_card(run, phase, wiring.roles[item.role], key, aid, output)


def _card_due(
    state: RunState, phase: Phase | None, key: str, status: str, artifact: str | None
) -> str | None:
    """The column of the card the item's end calls for and the journal lacks, or None.

    An escalated item needs its card open in the escalated column: a card of an earlier
    escalation was decided already (answered), or the item would not have escalated again. An
    accepted output of a review-gated phase needs a review card, which carries the artifact it
    shows; the item's escalation card carries none. A gate card (`board.gate_card_id`) is
    another card, and counts for neither.
    """
    reviewed = status == "accepted" and phase is not None and phase.review and artifact is not None
    if status != "escalated" and not reviewed:
        return None  # its end calls for no card (most items: no id to hash)
    # `carded`: items with any card (theirs or their gate's); the others need no id hashed.
    card = state.cards.get(card_id(state.run_id, key)) if key in state.carded else None
    if status == "escalated":
        return "escalated" if card is None or card.column != "escalated" else None
    return "review" if card is None or card.artifact_id is None else None


def charged(state: RunState) -> list[dict[str, Any]]:
    """What `run.resumed` charges for the model requests in flight when the last session
    stopped (`RunResumed.charged`), from the fold before it."""
    charged: list[dict[str, Any]] = []
    for key, (phase, role, worst) in sorted(state.requested.items()):
        charged.append(
            {
                "item": key,
                "phase": phase,
                "role": role,
                **state.requested_models.get(key, {}),
                "input_tokens": worst.input_tokens,
                "output_tokens": worst.output_tokens,
                "usd": worst.usd,
                "requests": worst.requests,
            }
        )
    return charged


def can_go_on(wiring: Wiring, state: RunState, record: RunRecord) -> bool:
    """Whether a resume drives the run on: it is `running`, or `waiting` and a person decided
    something (or a gate's time-out is due). Until then a resume changes nothing.

    Raises:
        HubspokeError: the run is a shard of a shared run (``RUN.joiner-…``): never resumed.
    """
    if (shared := record.options.get("shard_of")) is not None:
        # Resumed as a run, it would drive the whole workflow again inside the shard.
        raise HubspokeError(
            f"run {record.run_id} is a shard of shared run {shared}: it is never resumed. The "
            f"items it held go back to {shared} once their leases expire; if {shared} itself "
            f"stopped, resume {shared}"
        )
    return state.status == "running" or (
        state.status == "waiting" and (state.decided or gate_due(wiring.roles, state))
    )


def budget_of(wiring: Wiring, record: RunRecord, tighter: Budget | None) -> Budget:
    """The run's budget as it was started with (the workflow's if the record has none), made
    `tighter` if given."""
    options = record.options
    found = Budget(**options["budget"]) if "budget" in options else wiring.workflow.budget
    return found if tighter is None else found.tighter(tighter)


async def begin_session(
    wiring: Wiring, run: Run, state: RunState, budget: Budget, shape: dict[str, Any]
) -> None:
    """Start a resumed session: the decision to stop as journaled, `run.started` if the run
    never got one or else `run.resumed` (with what it charges) and the cards a crash kept
    from being written, the ledger's spending so far, the deadline less the time already run.
    If that fails, the journal is closed, the lease released and the MCP sessions ended before
    the error propagates.
    """
    record = run.record
    # A decision to stop journaled before the crash stands: the resumed run only finishes
    # what was under way, as the uncrashed one would have.
    run.stop = stop_decided(wiring, state)
    try:
        if state.last_seq == 0:
            # Killed after the run was recorded but before its first event was written:
            # start it now, so that its journal still begins with run.started.
            run.journal.emit(
                EventKind.RUN_STARTED,
                data=started(record, budget, shape),
            )
        else:
            in_flight = sorted(k for k, i in state.items.items() if i.status == "running")
            resumed: RunResumed = {
                "elapsed_before": state.elapsed,
                "in_flight": in_flight,
                # Named again so that a listener that saw none of the earlier
                # sessions (a tracer in a new process) knows the run and its parent.
                "workflow": record.workflow,
                "parent_run": record.parent_run,
                "parent_item": record.parent_item,
            }
            if state.requested:
                resumed["charged"] = charged(state)
            run.journal.emit(EventKind.RUN_RESUMED, data=resumed)
            reconcile_cards(wiring, run)  # runs the workflow's card_title
    except BaseException:
        try:
            with contextlib.suppress(Exception):  # the first error is the one to report
                run.journal.close()
        finally:
            wiring.store.release(run.run_id, run.lease)
            await close_servers(run.servers)
        raise
    # After `run.resumed`, whose fold charged the model requests in flight at the crash.
    for role, used in state.usage_by_role.items():
        run.ledger.restore(role, used)
    if budget.seconds is not None:
        run.deadline = time.monotonic() + max(0.0, budget.seconds - state.elapsed)
