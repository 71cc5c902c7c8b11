"""A shard: the items of a shared run that one process leased, each run through its whole
ladder (validation, retries, fallbacks) by the usual foreman code, in the shard's own journal.

A shard is a run of its own (``RUN.joiner-…`` or ``RUN.owner-…``, `RunRecord.parent_run` the
shared run), so that its dispatches, model exchanges and tool calls are journaled as any run's,
and the shared run's journal is never written by two processes. What the item came to (its
output, or why it needs a person, and what it spent) is handed back through the store
(`Store.finish_items`); the shared run's owner journals it in the run's journal.

The ladder of an item runs with the run's ids (its idempotency and attempt keys are the shared
run's, the same whichever process runs it). An item whose holder died (its lease expired) is
taken again: the new holder reads the item's events in its earlier holders' shards, charges
what they spent against the item's allowance and knows their side-effecting tool calls, which
are then replayed or settled, never made twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from hubspoke.budget import Budget, Ledger, Usage
from hubspoke.errors import RunLocked
from hubspoke.events import Event, EventKind, payload
from hubspoke.journal import Journal, LeasedItem, Redactor, RunRecord, RunState, Store
from hubspoke.phases import Phase
from hubspoke.runview import RunView
from hubspoke.tools import Tool

from ._ladder import Halt, run_item
from ._run import Run, Wiring
from ._start import Start
from ._steps import Accept, Escalate, Position, Step, Stop

__all__ = ["Shard", "shard_record", "shards_of"]

Done = Callable[[str, dict[str, Any]], None]
"""Told of each item the shard finished: its key and result (the owner's own shard tells the
owner at once, without waiting for its next look at the store)."""


def shards_of(store: Store, run_id: str) -> list[str]:
    """The ids of the shared run's shards, its owner sessions' and its joiners'."""
    return [*store.find_runs(f"{run_id}.owner-"), *store.find_runs(f"{run_id}.joiner-")]


def shard_record(parent: RunRecord, name: str) -> RunRecord:
    """The record of a new shard of `parent`: ``PARENT.NAME-xxxxxxxx`` (a path segment, as
    a sub-run's id is: the web inspector opens it)."""
    return RunRecord(
        run_id=f"{parent.run_id}.{name}-{uuid.uuid4().hex[:8]}",
        workflow=parent.workflow,
        ref=parent.ref,
        input=parent.input,
        options={"shard_of": parent.run_id},
        parent_run=parent.run_id,
        parent_item=None,
        schema_version=parent.schema_version,
        created=time.time(),
        status="running",
        finished=None,
    )


class Shard:
    """Leases a shared run's items and runs them, up to `concurrency` at once.

    Args:
        wiring: the workflow's wiring (the roles' own specialists, not the owner's).
        parent: the shared run.
        record: this shard's run, recorded by `open`.
        tools: each role's tools.
        ttl: seconds a lease lasts unless renewed (renewed every third of it).
        poll: seconds between two looks for free items when none was found.
        concurrency: items run at once.
        on_done: told of each finished item.
    """

    def __init__(
        self,
        wiring: Wiring,
        parent: RunRecord,
        record: RunRecord,
        view: RunView,
        *,
        tools: dict[str, dict[str, Tool]],
        redactor: Redactor,
        ttl: float,
        poll: float,
        concurrency: int,
        on_done: Done | None = None,
    ) -> None:
        self.wiring, self.parent, self.record, self.view = wiring, parent, record, view
        self.tools, self.ttl, self.poll = tools, ttl, poll
        self.concurrency = max(1, concurrency)
        self.on_done = on_done
        self.done = 0
        """Items this shard finished."""
        self.given_back = 0
        """Items this shard stopped and gave back unfinished (it was cancelled, or the run
        ended under it)."""
        self._usage: dict[str, Usage] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        """The task running each held item, by key."""
        self._finished: list[tuple[str, dict[str, Any]]] = []
        self._store = wiring.store
        self._lease = uuid.uuid4().hex
        self._ended: dict[str, list[Event]] = {}
        """The journals of ended shards read so far (items run again read them all)."""
        self._nudged = asyncio.Event()
        self.journal = Journal(
            self._store, RunState(record.run_id), redactor=redactor, listeners=(self._spent,)
        )

    def nudge(self) -> None:
        """Items were published: look for free ones now rather than at the next poll."""
        self._nudged.set()

    async def _idle(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._nudged.wait(), seconds)
        self._nudged.clear()

    def _spent(self, event: Event) -> None:
        """Tally each item's spending (its evaluator's included) as the journal records it."""
        if event.kind is EventKind.DISPATCH_FINISHED and event.item is not None:
            usage = self._usage.get(event.item.partition("#")[0])
            if usage is not None:
                Usage.add_dict_to(payload(event, EventKind.DISPATCH_FINISHED)["usage"], usage)

    def open(self) -> None:
        """Record the shard, take its run's lease (while this process lives, `hubspoke runs`
        shows it running, and no other process ends it) and journal its start.

        Raises:
            RunLocked: another process took the new shard's lease first (it found the shard
                without a holder, between its recording and this lease).
        """
        self._store.create_run(self.record)
        holder = self._store.acquire(self.record.run_id, self._lease)
        if holder is not None:
            raise RunLocked(f"shard {self.record.run_id} was taken by {holder}; join again")
        wf = self.wiring.workflow
        self.journal.emit(
            EventKind.RUN_STARTED,
            data={
                "shape": {},
                "workflow": wf.name,
                "ref": self.record.ref,
                "input": self.record.input,
                "schema_version": self.record.schema_version,
                "budget": Budget().to_dict(),
                "parent_run": self.parent.run_id,
                "parent_item": None,
            },
        )

    def close(self, status: str = "completed", reason: str = "") -> None:
        """Journal the shard's end, write what is left and give its lease back."""
        try:
            self.journal.emit(EventKind.RUN_FINISHED, data={"status": status, "reason": reason})
            self.journal.close()
        finally:
            self._store.release(self.record.run_id, self._lease)

    @property
    def running(self) -> int:
        """Items this shard holds and runs now."""
        return len(self._running)

    async def work(self, until: Callable[[], bool]) -> None:
        """Lease and run items until `until()` holds (looked at every turn, before leasing:
        once the shared run has ended, nothing more is leased) or this is cancelled; the items
        still running then are stopped and given back (their leases released, `given_back`).

        A loop turn reports the items finished since the last one (their journal written, then
        all marked done in one transaction), leases what the shard has room for, and renews
        its leases every third of `ttl`; then waits up to `poll` for running items, so that a
        turn's store calls serve every item that finished meanwhile."""
        store, run_id = self._store, self.parent.run_id
        renewed = time.monotonic()
        try:
            while True:
                self._report()
                if until():
                    return
                free = self.concurrency - len(self._running)
                leased = (
                    store.lease_items(run_id, self.record.run_id, free, self.ttl) if free else []
                )
                for item in leased:
                    self._running[item.key] = asyncio.create_task(self._run(item))
                if time.monotonic() - renewed > self.ttl / 3 and self._running:
                    renewed = time.monotonic()
                    keys = list(self._running)
                    held = set(store.renew_items(run_id, self.record.run_id, keys, self.ttl))
                    for key in keys:
                        if key not in held:  # taken by another after this lease expired
                            self._running.pop(key).cancel()
                if not self._running:
                    await self._idle(0 if leased else self.poll)
                    continue
                await asyncio.wait(self._running.values(), timeout=self.poll)
                for key in [k for k, task in self._running.items() if task.done()]:
                    self._running.pop(key).result()
        finally:
            running = dict(self._running)
            for task in running.values():
                task.cancel()
            if running:
                await asyncio.gather(*running.values(), return_exceptions=True)
            self.given_back += len(running)
            with contextlib.suppress(Exception):  # the error that stopped the loop comes first
                self._report()
                # What the stopped items journaled (their tool calls) is durable before
                # another holder, which reads it, can lease them.
                self.journal.checkpoint(force=True)
                if running:
                    store.release_items(run_id, self.record.run_id, list(running))
            self._running.clear()

    def _report(self) -> None:
        """Hand the finished items back: their journal durable first, then marked done."""
        if not self._finished:
            return
        finished, self._finished = self._finished, []
        self.journal.checkpoint(force=True)
        results = [(key, json.dumps(result)) for key, result in finished]
        recorded = set(self._store.finish_items(self.parent.run_id, self.record.run_id, results))
        self.done += len(recorded)
        if self.on_done is not None:
            for key, result in finished:
                if key in recorded:
                    self.on_done(key, result)

    async def _run(self, leased: LeasedItem) -> None:
        """Run one item's ladder and hand its result back."""
        wiring = self.wiring
        published = json.loads(leased.payload)
        key: str = leased.key
        phase = next(p for p in wiring.workflow.phases if p.name == published["phase"])
        prior = self._prior(key, leased.holders)
        spent = Usage()
        spent.add(prior.usage)
        for _, _, worst in prior.requested.values():  # in flight when its holder died
            spent.add(worst)
        # Side-effecting calls of this item made earlier: replayed, never made twice. A call's
        # key is the same in every attempt, so an item the run dispatches again (a person
        # answered it, a retry round) finds those of every shard that ran it before, not only
        # of this publication's holders (whose spending the owner has not settled yet).
        if published["attempt"] > 1:
            prior = self._prior(key, tuple(shards_of(self._store, self.parent.run_id)))
        self.journal.state.tool_calls.update(prior.tool_calls)
        allowance = published["allowance"]
        budget = Budget(
            tokens=_left(allowance["tokens"], spent.tokens),
            usd=_left(allowance["usd"], spent.usd),
            tool_calls=_left(allowance["tool_calls"], spent.tool_calls),
        )
        ledger = Ledger(budget, {}, wiring.workflow.dispatch_budget)
        run = Run(self.parent, self.journal, ledger, self.view, budget, "", self.tools)
        self._usage[key] = usage = Usage()
        ended: list[tuple[Any, ...]] = []
        await run_item(
            wiring,
            run,
            phase,
            published["index"],
            key,
            None,
            published["total"],
            Start(Position(correction=published.get("correction")), input=published["input"]),
            Halt(),
            end=lambda *args: ended.append(args),
        )
        usage.add(spent)
        result = _result(ended, self.journal.state, key, phase)
        result["usage"] = usage.to_dict()
        result["shard"] = self.record.run_id
        self._usage.pop(key, None)
        self._finished.append((key, result))  # reported by the loop's next turn

    def _prior(self, key: str, holders: tuple[str, ...]) -> RunState:
        """The fold of the item's events in the shards of its earlier holders."""
        events: list[Event] = []
        for shard in holders:
            if shard == self.record.run_id:
                continue
            journal = self._ended.get(shard)
            if journal is None:
                record = self._store.run(shard)  # before its events: ended, they are all there
                journal = self._store.events(shard)
                if record is not None and record.status != "running":
                    self._ended[shard] = journal  # an ended shard's journal no longer grows
            events.extend(
                e
                for e in journal
                if e.item is not None and (e.item == key or e.item.startswith(key + "#"))
            )
        return RunState.fold(self.record.run_id, events)


def _left(limit: float | None, spent: float) -> Any:
    return None if limit is None else type(limit)(max(0, limit - spent))


def _result(
    ended: list[tuple[Any, ...]], state: RunState, key: str, phase: Phase
) -> dict[str, Any]:
    """What the item came to, for its owner: an output, a person needed, or a failure; and the
    role whose step ended it."""
    if ended:
        role, step = ended[-1][3], ended[-1][5]
        return {"role": role.name, **_ended(step, phase)}
    item = state.items.get(key)
    reason = item.reason if item is not None and item.reason else "the item's ladder ended"
    return {"outcome": "failed", "message": f"{phase.name}: {reason}"}


def _ended(step: Step, phase: Phase) -> dict[str, Any]:
    if isinstance(step, Accept):
        return {"outcome": "output", "output": step.output.model_dump(mode="json")}
    if isinstance(step, Escalate):
        return {"outcome": "needs_human", "message": step.reason}
    if isinstance(step, Stop):
        return {"outcome": "budget_refused", "message": f"the item's allowance: {step.reason}"}
    return {"outcome": "failed", "message": f"{phase.name}: the ladder ended with {step!r}"}
