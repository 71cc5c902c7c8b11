"""Resume: from the folded journal, what the run had decided, before the same code runs on.

Nothing here dispatches: it rebuilds what phases' `input` and `over` saw (the run view), the
ledger's spending, what `run.resumed` charges for the model requests in flight at the crash,
the decision to stop the run if one was journaled, and the cards a crash may have kept from
being written. Where each item stands is `_ladder.start_of`, from the same fold.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

from hubspoke.journal import RunRecord, RunState, Store
from hubspoke.runview import RunView

from . import _events
from ._run import Run, Wiring

__all__ = ["charged", "collector_paused", "rebuild_view", "reconcile_cards", "stop_decided"]


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a resume rebuilds a run's state in one
    synchronous pass: every object made is kept by the run (there is no garbage to find), and
    the collector would otherwise walk the growing state again and again (resume of a 100,000-
    event run: docs/performance.md). It runs again afterwards; a collector the application had
    turned off stays off."""
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
    shown: dict[str, tuple[str, bool]] = {}  # key -> (the artifact to read, seen or held)
    for item in accepted:
        assert item.artifact_id is not None
        shown[item.key] = (item.artifact_id, item.phase not in reviewed)
        if item.phase in reviewed and (approved := state.approved_artifact(item.key)):
            shown[item.key] = (approved, True)
    # One query for the run's artifacts, not one per item, validated from their JSON text.
    texts = store.artifact_texts(record.run_id) if accepted else {}
    with collector_paused():
        for item in accepted:
            key, (aid, seen) = item.key, shown[item.key]
            text = texts.get(aid)
            if text is None:
                raise RunNotFound(f"artifact {aid} of {key} is missing")
            # Stored by field name (`_events.accept`): read back by name, aliases or not.
            schema = results.get(key) or wiring.roles[item.role].output
            output = schema.model_validate_json(text, by_name=True)
            if seen:
                view.record(item.phase, key, aid, output)
            else:
                view.hold(item.phase, key, aid, output)
            by_artifact[aid] = key
            if item.artifact_id is not None:
                by_artifact[item.artifact_id] = key  # a TopK names the drafted artifact
    for name, phase_state in state.phases.items():
        if phase_state.selected is not None:
            view.select(name, [by_artifact[a] for a in phase_state.selected])
    for name in results:  # a routed phase's output is its result
        view.select(name.removesuffix("[result]"), [name])
    for name, plans in state.plans.items():  # a planned phase's outputs, in plan order
        view.select(name, list(dict.fromkeys(f"{name}[{s['id']}]" for s in plans.steps)))
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
    """Give every item that ended before the crash the card its end calls for.

    An item's end and its card are written together in practice; this makes resume correct
    even if a crash fell between the two.
    """
    state = run.state
    phases = {p.name: p for p in wiring.workflow.phases}
    for key, item in state.items.items():
        if key in state.carded or item.phase not in phases:
            continue
        phase = phases[item.phase]
        if item.status == "escalated":
            _events.escalation_card(wiring, run, phase.name, item.role, key, item.reason)
        elif item.status == "accepted" and phase.review and item.artifact_id is not None:
            aid, output = run.view.accepted(phase.name, key)
            _events.review_card(run, phase, wiring.roles[item.role], key, aid, output)


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
