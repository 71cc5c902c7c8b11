"""Phases: the items of a phase, its fan-out, its selection and its verdict."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from hubspoke.board import card_id
from hubspoke.events import EventKind, PhaseTally
from hubspoke.journal.state import WAITING_FOR_PEOPLE
from hubspoke.phases import Phase, Strategy

from ._ladder import EndStep, Halt, run_item
from ._planned import run_planned
from ._routed import run_routed
from ._run import Run, Wiring
from ._shared import share_phase
from ._start import FRESH, Start, start_of
from ._steps import PhaseCounts, phase_verdict

__all__ = ["run_phase"]


async def run_phase(wiring: Wiring, run: Run, phase: Phase) -> None:
    """Run a phase's items (a fan-out in parallel, up to `phase.concurrency`), then journal its
    selection and its verdict. A phase the journal shows finished is not run again; one that
    waits for a person runs the items a decision reopened, then decides its verdict again."""
    state = run.state
    done = state.phases.get(phase.name)
    if done is not None and done.status not in ("running", "waiting"):
        return
    if phase.plan_by is not None:
        await run_planned(wiring, run, phase)
        return
    if phase.route_by is not None:
        await run_routed(wiring, run, phase)
        return
    try:
        elements: Sequence[Any] = list(phase.over(run.view)) if phase.over else [None]
    except Exception as e:
        run.halt("failed", f"phase {phase.name!r}: over() raised {type(e).__name__}: {e}")
        return
    total = len(elements)
    keys = [f"{phase.name}[{i}]" for i in range(total)] if phase.over else [phase.name]
    run.journal.emit(
        EventKind.PHASE_STARTED,
        phase=phase.name,
        data={"items": total, "concurrency": phase.concurrency},
    )
    share = share_phase(wiring, run, phase, total)
    if isinstance(share, str):
        run.halt("failed", share)
        return
    if share is None:
        passed = await _passes(wiring, run, phase, keys, elements)
    else:  # its items' ladders run in shards (here and in joiners)
        async with share:
            passed = await _passes(share.wiring, run, share.in_flight, keys, elements, share.end)
    if passed:
        _finish(run, phase, keys)


async def _passes(
    wiring: Wiring,
    run: Run,
    phase: Phase,
    keys: list[str],
    elements: Sequence[Any],
    end: EndStep | None = None,
) -> bool:
    """Run the phase's items, pass after pass, until none needs work; False if the run
    stopped meanwhile (the phase's verdict is then not decided)."""
    state, total = run.state, len(keys)
    ladder = wiring.ladders[phase.role]
    # On resume, what the journal already decided stands: a fail-fast phase that had lost an
    # item (or is waiting for a person about one) lets only the items it had started go on.
    halt = Halt(
        phase.strategy is Strategy.FAIL_FAST
        and any(
            (i := state.items.get(k)) is not None and i.status in ("escalated", "failed")
            for k in keys
        )
    )
    # Every pass takes the items that still need work: fresh ones, ones under way, and ones a
    # `Strategy.RETRY` round requeued. An item is requeued at most `phase.retries` times.
    # A pass takes the items of the earliest round only, as the uncrashed run did: a resumed
    # run finishes a round's items before it starts the next round.
    for _ in range(phase.retries + 2 if phase.strategy is Strategy.RETRY else 1):
        rounds: dict[str, int] = {}
        todo: list[tuple[int, str, Any, Start]] = []
        for index, (key, element) in enumerate(zip(keys, elements, strict=True)):
            item = state.items.get(key)
            start = FRESH if item is None else start_of(item, ladder)
            if start is not None:
                todo.append((index, key, element, start))
                if item is None or item.status != "gated":  # a gate holds no round back
                    rounds[key] = 0 if item is None else item.rounds
        if not todo:
            break
        earliest = min(rounds.values(), default=0)
        todo = [w for w in todo if rounds.get(w[1], earliest) == earliest]
        # What was under way at a crash goes first, in the order it had started: budgets are
        # reserved in that order again, as they were before the crash.
        todo.sort(key=lambda w: (0, _started_seq(run, w[1])) if w[3].under_way else (1, w[0]))
        await _fan_out(wiring, run, phase, todo, total, halt, end)
        if run.stop is not None:
            return False
    return True


async def _fan_out(
    wiring: Wiring,
    run: Run,
    phase: Phase,
    todo: list[tuple[int, str, Any, Start]],
    total: int,
    halt: Halt,
    end: EndStep | None = None,
) -> None:
    pending = iter(todo)

    async def worker() -> None:
        for index, key, element, start in pending:
            # A stop lets only what was under way finish; a fail-fast halt lets the items
            # already started finish their ladders.
            if run.stop is not None and not start.under_way:
                continue
            if halt.set and not start.started:
                continue
            await run_item(wiring, run, phase, index, key, element, total, start, halt, end=end)

    if len(todo) == 1:
        await worker()
        return
    # A task group, not gather: if one worker fails, the others are cancelled before the run's
    # lease is released, so nothing dispatches for a run no one holds.
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(phase.concurrency, len(todo))):
                group.create_task(worker())
    except BaseExceptionGroup as failed:  # the caller gets the error, not a group of them
        raise failed.exceptions[0] from None


def _finish(run: Run, phase: Phase, keys: list[str]) -> None:
    """Journal the phase's selection (`TopK`) and its verdict."""
    state = run.state
    accepted = [k for k in keys if (i := state.items.get(k)) and i.status == "accepted"]
    if phase.select is not None:
        select = phase.select
        # Behind a review gate, only what a person let through is ranked.
        ranked = [k for k in accepted if not phase.review or state.approved_artifact(k)]
        outputs = {k: run.view.accepted(phase.name, k) for k in ranked}
        try:
            scores = {k: float(select.key(outputs[k][1])) for k in ranked}
        except Exception as e:
            reason = f"phase {phase.name!r}: the TopK key raised {type(e).__name__}: {e}"
            run.journal.emit(
                EventKind.PHASE_FINISHED,
                phase=phase.name,
                data={"status": "failed", "reason": reason, **_counts(run, keys, accepted)},
            )
            run.halt("failed", reason)
            return
        # Highest first; equal scores keep item order (sorted is stable).
        chosen = sorted(ranked, key=lambda k: -scores[k])[: select.k]
        run.view.select(phase.name, chosen)
        run.journal.emit(
            EventKind.PHASE_SELECTED,
            phase=phase.name,
            data={"artifact_ids": [outputs[k][0] for k in chosen]},
        )
    counts = _counts(run, keys, accepted)
    ended = [i.status for k in keys if (i := state.items.get(k)) is not None]
    status, why = phase_verdict(
        phase.name,
        phase.strategy,
        phase.quorum,
        PhaseCounts(
            len(keys),
            counts["accepted"],
            counts["escalated"],
            failed=ended.count("failed"),
            skipped=ended.count("skipped") + ended.count("parked"),  # not needed now
        ),
    )
    if status == "completed" and phase.review_waits:
        # The gate waits for people: every card the phase made must be decided.
        pending = [
            k
            for k in accepted
            if (card := state.cards.get(card_id(run.run_id, k))) is not None
            and card.column in ("review", "parked")
        ]
        if pending:
            status = "waiting"
            why = f"phase {phase.name!r}: {len(pending)} card(s) wait for a person's review"
    run.journal.emit(
        EventKind.PHASE_FINISHED,
        phase=phase.name,
        data={
            "status": status,
            "accepted": counts["accepted"],
            "escalated": counts["escalated"],
            "missing": counts["missing"],
        },
    )
    if status != "completed":
        # `waiting`: the phase could still pass once a person answers; the run waits for that
        # decision (hubspoke resume goes on from it) rather than fail.
        run.halt(status, why)


def _counts(run: Run, keys: list[str], accepted: list[str]) -> PhaseTally:
    # Items at a human gate wait for a person like escalated ones.
    escalated = sum(
        1 for k in keys if (i := run.state.items.get(k)) and i.status in WAITING_FOR_PEOPLE
    )
    return {"accepted": len(accepted), "escalated": escalated, "missing": len(keys) - len(accepted)}


def _started_seq(run: Run, key: str) -> int:
    item = run.state.items.get(key)
    return 0 if item is None else item.started_seq
