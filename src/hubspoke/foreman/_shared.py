"""Shared phases: several foreman processes working one run's fan-out (`Foreman(share=...)`).

The foreman that holds the run's lease (the owner) stays its only decider, budget authority and
journal writer. In a shared phase each item's dispatch is made by the owner as usual
(`dispatch.started` with its reservation, `dispatch.finished`, then the item's step), but what
the dispatch does is publish the item in the store (`Store.publish_items`) and wait until a
shard, in a joiner process or in the owner's own, has run the item's whole ladder and reported
it done (`_shard`). The reservation is the item's allowance: the worst case of its whole ladder
(every role's attempts at its per-dispatch cap), so however many joiners spend, the run's budget
is never overrun; what an item did not spend comes back when its dispatch is settled.

The owner validates each output again against the role's schema and journals it, or sends the
item down escalation, in the run's journal: `hubspoke show`, the board and resume read it as
any run's. A resumed owner publishes its in-flight items again: a published item keeps its
lease or its result, so what shards finished before the owner died is not run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Coroutine
from dataclasses import replace
from types import TracebackType
from typing import Any

from hubspoke.budget import Budget
from hubspoke.events import EventKind
from hubspoke.journal import Journal, Redactor, RunState
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.phases import Phase
from hubspoke.roles import Role
from hubspoke.specialists.context import Context
from hubspoke.work import WorkItem

from ._ladder import Halt, end_step
from ._run import Run, Wiring
from ._shard import Shard, shard_record, shards_of
from ._sharing import Sharing
from ._steps import Step

__all__ = ["Share", "Sharing", "cannot_share", "item_allowance", "share_phase"]

_DIMENSIONS = ("tokens", "usd", "tool_calls")


def cannot_share(wiring: Wiring, phase: Phase) -> str | None:
    """Why the phase cannot be shared, or None: only a plain fan-out is, whose ladder has no
    human gate, no sub-workflow, no per-run role budget and no MCP tools, and no evaluator
    judges."""
    if phase.over is None or phase.plan_by is not None or phase.route_by is not None:
        return "it is not a fan-out (`over`)"
    if phase.evaluator is not None:
        return "an evaluator judges its outputs"
    for role in wiring.ladders[phase.role]:
        if role.approve_before_dispatch:
            return f"role {role.name!r} has a human gate"
        if role.delegate is not None:  # its child run is the run's, journaled in the run
            return f"role {role.name!r} runs a sub-workflow"
        if role.run_budget is not None:
            return f"role {role.name!r} has a per-run budget (run_budget)"
        if any(t.listed_per_run for t in role.compiled_tools):
            return f"role {role.name!r} uses MCP tools (their sessions are the owner's)"
    return None


def item_allowance(wiring: Wiring, run: Run, phase: Phase) -> Budget | str:
    """What one item's whole ladder may spend: each role's attempts at its per-dispatch cap
    (`Role.budget`, else the workflow's `dispatch_budget`); or why no safe amount exists (the
    run limits a dimension that no cap bounds)."""
    limits: dict[str, Any] = {}
    for dim in _DIMENSIONS:
        total: float | None = 0
        for role in wiring.ladders[phase.role]:
            cap = getattr(role.budget, dim) if role.budget is not None else None
            if cap is None:
                cap = getattr(wiring.workflow.dispatch_budget, dim)
            if cap is None:
                total = None
                break
            assert total is not None
            total += cap * role.max_attempts
        if total is None and getattr(run.budget, dim) is not None:
            return (
                f"phase {phase.name!r} cannot be shared: the run's budget limits {dim}, and no "
                f"per-dispatch cap bounds what an item may spend on it (set Role.budget on its "
                f"roles or the workflow's dispatch_budget, or run without share)"
            )
        limits[dim] = None if total is None else (round(total, 8) if dim == "usd" else int(total))
    return Budget(**limits)


class _Sharer:
    """The owner's specialist for a shared phase's role: a dispatch publishes the item and
    waits for a shard's result."""

    in_process = True

    def __init__(self, share: Share) -> None:
        self.share = share

    async def dispatch(self, item: WorkItem, ctx: Context) -> Outcome:
        allowance = ctx.allowance
        payload = {
            "phase": item.phase,
            "index": int(item.key.rpartition("[")[2].rstrip("]")),
            "total": self.share.total,
            "input": item.input.model_dump(mode="json"),
            "attempt": item.attempt,
            # A person's answer, or a retry round's feedback: the shard's first attempt reads it.
            "correction": ctx.correction,
            "allowance": {d: getattr(allowance, d) for d in _DIMENSIONS},
        }
        result = await self.share.wait(item.key, json.dumps(payload, sort_keys=True))
        used = result.get("usage", {})
        allowance.used.add(
            input_tokens=int(used.get("input_tokens", 0)),
            output_tokens=int(used.get("output_tokens", 0)),
            requests=int(used.get("requests", 0)),
            tool_calls=int(used.get("tool_calls", 0)),
            usd=float(used.get("usd", 0.0)),
        )
        by = f"run by shard {result.get('shard')}"
        self.share.made_by[item.key] = str(result.get("role", ""))
        outcome = result.get("outcome")
        if outcome == "output":
            return Outcome(OutcomeKind.OUTPUT, raw=result.get("output"), message=by)
        kind = {
            "needs_human": OutcomeKind.NEEDS_HUMAN,
            "budget_refused": OutcomeKind.BUDGET_REFUSED,
        }.get(str(outcome), OutcomeKind.FAILED)
        return Outcome(kind, message=f"{result.get('message', '')} ({by})")


class Share:
    """One session of a shared phase in its owner: publishes items, collects their results,
    and runs the owner's own shard. An async context manager around the phase's fan-out."""

    def __init__(
        self, wiring: Wiring, run: Run, phase: Phase, total: int, sharing: Sharing, each: Budget
    ) -> None:
        self.base, self.run, self.phase, self.total = wiring, run, phase, total
        self.sharing = sharing
        self.in_flight = replace(phase, concurrency=sharing.in_flight or 4 * phase.concurrency)
        """The phase as the owner fans it out: more items in flight than its own shard runs."""
        role = wiring.roles[phase.role]
        # One rung, one attempt: the item's whole ladder runs in the shard.
        shared = replace(role, budget=each, max_attempts=1, fallback=None)
        self.wiring = replace(
            wiring,
            roles={**wiring.roles, role.name: shared},
            ladders={**wiring.ladders, role.name: (shared,)},
            specialists={**wiring.specialists, role.name: _Sharer(self)},
            timeouts={**wiring.timeouts, role.name: None},
        )
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._unpublished: list[tuple[str, str]] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self.shard: Shard | None = None
        self._failed: BaseException | None = None
        self.made_by: dict[str, str] = {}
        """The role (of the phase's ladder) whose step ended each item in its shard."""

    def end(
        self, wiring: Wiring, run: Run, phase: Phase, role: Role, key: str, step: Step, halt: Halt
    ) -> None:
        """Apply the step that ends an item here, in the name of the role that made it (a
        fallback's output is the fallback's artifact, as in a run that is not shared)."""
        made = self.base.roles.get(self.made_by.pop(key, ""))
        end_step(self.base, run, phase, made or role, key, step, halt)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A helper task ended before the phase did: its error fails every waiting dispatch
        (nothing would ever answer them)."""
        if task.cancelled() or task.exception() is None:
            return
        self._failed = task.exception()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(self._failed)  # type: ignore[arg-type]

    async def wait(self, key: str, payload: str) -> dict[str, Any]:
        """Publish the item (with the pump's next batch) and wait for its result.

        Raises:
            the error that stopped the pump or the owner's shard (a store that failed)."""
        if self._failed is not None:
            raise self._failed
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        self._unpublished.append((key, payload))
        self._wake.set()
        try:
            return await future
        finally:
            self._waiting.pop(key, None)

    def _resolve(self, key: str, result: dict[str, Any]) -> None:
        future = self._waiting.pop(key, None)
        if future is not None and not future.done():
            future.set_result(result)

    async def _pump(self) -> None:
        store, run_id = self.base.store, self.run.run_id
        while True:
            if self._unpublished:
                batch, self._unpublished = self._unpublished, []
                store.publish_items(run_id, batch)
                if self.shard is not None:
                    self.shard.nudge()
            if self._waiting:
                for key, text in store.done_items(run_id, list(self._waiting)).items():
                    self._resolve(key, json.loads(text))
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.sharing.poll)

    def _end_dead_shards(self) -> None:
        """End the run's shards whose process is gone (`aborted`): its earlier owner sessions'
        (this process holds the run's lease) and joiners' killed outright, which no live process
        holds (a shard holds its own lease while its process lives). What they journaled stays:
        the items they held are taken again once their leases expire."""
        store, lease = self.base.store, uuid.uuid4().hex
        for shard_id in shards_of(store, self.run.run_id):
            record = store.run(shard_id)
            if record is None or record.status != "running" or "shard_of" not in record.options:
                continue
            if store.acquire(shard_id, lease) is not None:
                continue  # a live joiner's
            try:
                state = RunState.fold(shard_id, store.events(shard_id))
                journal = Journal(store, state, redactor=Redactor())
                owner = shard_id.startswith(f"{self.run.run_id}.owner-")
                reason = (
                    "its owner's session ended before it did"
                    if owner
                    else "its process ended without closing it (killed)"
                )
                journal.emit(EventKind.RUN_FINISHED, data={"status": "aborted", "reason": reason})
                journal.close()
            finally:
                store.release(shard_id, lease)

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        task.add_done_callback(self._ended)
        self._tasks.append(task)

    async def __aenter__(self) -> Share:
        self._end_dead_shards()
        self._start(self._pump())
        if self.sharing.local:
            run = self.run
            self.shard = Shard(
                self.base,
                run.record,
                shard_record(run.record, "owner"),
                run.view,
                tools=run.tools,
                redactor=run.journal.redactor,
                ttl=self.sharing.ttl,
                poll=self.sharing.poll,
                concurrency=self.phase.concurrency,
                on_done=self._resolve,
            )
            self.shard.open()
            self._start(self.shard.work(lambda: self._closing))
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        results = await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.shard is not None:
            try:
                if error is None:
                    self.shard.close()
                else:
                    self.shard.close("aborted", f"its phase ended: {type(error).__name__}")
            except Exception:
                if error is None:
                    raise  # otherwise the phase's own error is the one to report
        failed = [
            r
            for r in results
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
        ]
        if error is None and failed:
            raise failed[0]
        if error is None and self.run.stop is None:
            # Every item's end is journaled: once that is durable, the items are not needed.
            self.run.journal.checkpoint(force=True)
            self.base.store.clear_items(self.run.run_id)


def share_phase(wiring: Wiring, run: Run, phase: Phase, total: int) -> Share | str | None:
    """The phase's `Share` when this run shares it; None when it runs here alone; why it
    cannot be shared when its run's budget leaves no safe allowance per item."""
    sharing = wiring.share
    if sharing is None or (sharing.phases is not None and phase.name not in sharing.phases):
        return None
    why = cannot_share(wiring, phase)
    if why is not None:
        # Named on purpose: refused, not quietly run here alone.
        return None if sharing.phases is None else f"phase {phase.name!r} cannot be shared: {why}"
    each = item_allowance(wiring, run, phase)
    if isinstance(each, str):
        return each
    return Share(wiring, run, phase, total, sharing, each)
