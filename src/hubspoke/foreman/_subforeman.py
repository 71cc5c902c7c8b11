"""Sub-foremen: a workflow used as one role of another.

Each dispatch of such a role runs the child workflow under its own foreman, as its own run linked
to the parent item, with a budget carved from the parent's reservation for that dispatch (so the
child can never spend more than the parent set aside), and only the tools the parent's card
allows (checked when the workflow is built). A re-dispatch after a crash resumes the child run.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Protocol

from pydantic import BaseModel

from hubspoke.budget import Budget, Usage
from hubspoke.errors import RunLocked
from hubspoke.journal import RunState, Store
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.specialists.context import Context
from hubspoke.work import WorkItem
from hubspoke.workflow import Workflow

__all__ = ["ChildForeman", "SubForeman"]

_STATUS_TO_OUTCOME = {
    "escalated": OutcomeKind.NEEDS_HUMAN,
    "waiting": OutcomeKind.NEEDS_HUMAN,
    "exhausted": OutcomeKind.BUDGET_REFUSED,
}


class ChildResult(Protocol):
    status: str
    reason: str
    result: Any


class ChildForeman(Protocol):
    """What a sub-foreman needs of the foreman that runs its child workflow."""

    workflow: Workflow
    store: Store
    depth: int

    async def run(
        self,
        input: BaseModel,
        *,
        run_id: str,
        budget: Budget,
        parent_run: str,
        parent_item: str,
    ) -> ChildResult: ...

    async def resume(self, run_id: str, *, budget: Budget) -> ChildResult: ...

    def abandon(self, run_id: str, reason: str) -> None: ...


class SubForeman:
    """The specialist behind a role made with `Workflow.as_role`.

    Args:
        child: the foreman of the child workflow (one level deeper than the parent's).
        max_depth: the parent workflow's `max_depth`: deeper children fail without running.
    """

    in_process = True
    """Runs in the foreman's process under every executor: it drives a child run and writes
    its journal (its own specialists run on the executor)."""

    def __init__(self, child: ChildForeman, max_depth: int) -> None:
        self.child = child
        self.max_depth = max_depth

    @staticmethod
    def child_id(item: WorkItem) -> str:
        """The sub-run a dispatch runs: the same for the same item and attempt, so that a
        dispatch given back after a crash resumes it."""
        return re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{item.run_id}.{item.key}.{item.attempt}")

    def abandon(self, item: WorkItem, reason: str) -> None:
        """The parent journaled this dispatch's end without the sub-run's (a time-out cut it):
        no one will resume that sub-run, so it ends `aborted` rather than stay `running`."""
        with contextlib.suppress(RunLocked):  # someone else drives it: theirs to end
            self.child.abandon(self.child_id(item), reason)

    async def dispatch(self, item: WorkItem, ctx: Context) -> Outcome:
        child = self.child
        if child.depth > self.max_depth:
            return Outcome(OutcomeKind.FAILED, message="sub-foreman depth limit reached")
        allowance = ctx.allowance
        # The child's own limits, no looser than what the parent reserved for this dispatch.
        carve = Budget(tokens=allowance.tokens, usd=allowance.usd, tool_calls=allowance.tool_calls)
        budget = child.workflow.budget.tighter(carve)
        child_id = self.child_id(item)
        ctx.trace.append(
            {"kind": "child.started", "child_run": child_id, "budget": budget.to_dict()}
        )
        store = child.store
        try:
            if store.run(child_id) is not None:
                # Re-dispatched after a crash: the sub-run goes on within this dispatch's carve.
                result = await child.resume(child_id, budget=budget)
            else:
                result = await child.run(
                    item.input,
                    run_id=child_id,
                    budget=budget,
                    parent_run=item.run_id,
                    parent_item=item.key,
                )
        finally:
            # Charge everything the sub-run spent, even when this dispatch was cut short (a
            # time-out cancels it): its journal, flushed in its own `finally`, says how much.
            # A resumed sub-run is held to this dispatch's carve in total, pre-crash spending
            # included, and the parent's ledger never settled the dispatch that was in flight.
            folded = RunState.fold(child_id, store.events(child_id))
            spent = Usage()
            spent.add(folded.usage)
            # Requests the child sent that no `dispatch.finished` accounts for (this dispatch
            # was cut short while they were in flight): the provider may bill their worst case.
            for _, _, worst in folded.requested.values():
                spent.add(worst)
            allowance.used.add(
                input_tokens=spent.input_tokens,
                output_tokens=spent.output_tokens,
                requests=spent.requests,
                tool_calls=spent.tool_calls,
                usd=spent.usd,
            )
        if result.status == "completed":
            return Outcome(OutcomeKind.OUTPUT, raw=result.result)
        kind = _STATUS_TO_OUTCOME.get(result.status, OutcomeKind.FAILED)
        return Outcome(kind, message=f"sub-run {child_id} ended {result.status}: {result.reason}")
