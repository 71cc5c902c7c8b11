"""Sub-foremen: a workflow used as one role of another.

Each dispatch of such a role runs the child workflow under its own foreman, as its own run linked
to the parent item, with a budget carved from the parent's reservation for that dispatch (so the
child can never spend more than the parent set aside), and only the tools the parent's card
allows (checked when the workflow is built). A re-dispatch after a crash resumes the child run.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from hubspoke.budget import Budget
from hubspoke.journal import RunState
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.roles import Role
from hubspoke.specialists.context import Context
from hubspoke.work import WorkItem

if TYPE_CHECKING:
    from hubspoke.foreman import Foreman

__all__ = ["SubForeman"]

_STATUS_TO_OUTCOME = {
    "escalated": OutcomeKind.NEEDS_HUMAN,
    "exhausted": OutcomeKind.BUDGET_REFUSED,
}


class SubForeman:
    """The specialist behind a role made with `Workflow.as_role`."""

    def __init__(self, role: Role, parent: Foreman) -> None:
        from hubspoke.foreman import Foreman

        assert role.delegate is not None
        self.role = role
        self.parent = parent
        self.child = Foreman(
            role.delegate,
            parent.store,
            models=parent.given_models,
            model=parent.model_override,
            executor=parent.executor,
            depth=parent.depth + 1,
            offline_latency=parent.offline_latency,
        )

    async def dispatch(self, item: WorkItem, ctx: Context) -> Outcome:
        child_wf = self.child.workflow
        if self.child.depth > self.parent.workflow.max_depth:
            return Outcome(OutcomeKind.FAILED, message="sub-foreman depth limit reached")
        allowance = ctx.allowance
        own = child_wf.budget
        # The child's own limits, no looser than what the parent reserved for this dispatch.
        carve = Budget(tokens=allowance.tokens, usd=allowance.usd, tool_calls=allowance.tool_calls)
        budget = own.tighter(carve)
        child_id = re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{item.run_id}.{item.key}.{item.attempt}")
        ctx.trace.append(
            {"kind": "child.started", "child_run": child_id, "budget": budget.to_dict()}
        )
        store = self.child.store
        resumed = store.run(child_id) is not None
        try:
            if resumed:
                # Re-dispatched after a crash: the sub-run goes on within this dispatch's carve.
                result = await self.child.resume(child_id, budget=budget)
            else:
                result = await self.child.run(
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
            spent = RunState.fold(child_id, store.events(child_id)).usage
            used = allowance.used
            used.input_tokens += spent.input_tokens
            used.output_tokens += spent.output_tokens
            used.requests += spent.requests
            used.tool_calls += spent.tool_calls
            used.usd += spent.usd
        if result.status == "completed":
            return Outcome(OutcomeKind.OUTPUT, raw=result.result)
        kind = _STATUS_TO_OUTCOME.get(result.status, OutcomeKind.FAILED)
        return Outcome(kind, message=f"sub-run {child_id} ended {result.status}: {result.reason}")
