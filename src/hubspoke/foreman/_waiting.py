"""Waiting for people: when a run's phases are done but items wait for a person's decision, the
run ends its session `waiting`; it goes on once someone decides (or a gate's time-out is due).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

from hubspoke.errors import RunNotFound
from hubspoke.journal import RunState, Store
from hubspoke.journal.state import WAITING_FOR_PEOPLE
from hubspoke.roles import Role

from ._run import Run, RunResult

__all__ = ["gate_due", "still_waiting", "wait_for_people"]


def gate_due(roles: Mapping[str, Role], state: RunState) -> bool:
    """Whether an item waits at a human gate past its role's `gate_timeout`: the run goes
    on to apply `on_gate_timeout`, although nobody decided anything."""
    now = time.time()
    for item in state.items.values():
        if item.status != "gated":
            continue
        role = roles.get(item.role)
        timeout = None if role is None else role.gate_timeout
        if timeout is not None and now - item.gated_at >= timeout:
            return True
    return False


async def wait_for_people(
    store: Store,
    roles: Mapping[str, Role],
    resume: Callable[[str], Awaitable[RunResult]],
    run_id: str,
    *,
    timeout: float | None,
    poll: float,
) -> RunResult:
    """`Foreman.wait_for_people`, with the foreman's `resume`: watch the run's journal and
    resume it whenever a person decided something, until it no longer waits or `timeout`
    seconds have passed.

    Raises:
        RunNotFound: no such run. Otherwise as `resume`.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if store.run(run_id) is None:
            raise RunNotFound(f"no run {run_id!r}")
        state = RunState.fold(run_id, store.events(run_id))
        if state.status != "waiting" or state.decided or gate_due(roles, state):
            result = await resume(run_id)
            if result.status != "waiting":
                return result
            continue  # still waiting: for the next decision
        if deadline is not None and time.monotonic() >= deadline:
            return RunResult(run_id, state.status, state.reason, state, None)
        left = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
        await asyncio.sleep(left)


def still_waiting(run: Run) -> tuple[str, str] | None:
    """``("waiting", why)`` if items still wait for a person's decision when the phases are
    done: the run is not over until someone answers or skips them (`hubspoke.Board`)."""
    waiting = sorted(k for k, i in run.state.items.items() if i.status in WAITING_FOR_PEOPLE)
    if not waiting:
        return None
    shown = ", ".join(waiting[:5]) + (", ..." if len(waiting) > 5 else "")
    return "waiting", f"{len(waiting)} item(s) wait for a person's decision: {shown}"
