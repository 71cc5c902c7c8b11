"""Driving a run: its lease, the state of one session (budget, ledger, journal, tools), the
phases in order, and the run's end, journaled so that no phase stays `running`."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from pydantic import BaseModel

from hubspoke.budget import Budget, Ledger
from hubspoke.errors import JournalWriteError, RunLocked
from hubspoke.events import SCHEMA_VERSION, Event, EventKind, RunStarted
from hubspoke.executors import Executor
from hubspoke.executors.base import running
from hubspoke.journal import Journal, Redactor, RunRecord, RunState, Store
from hubspoke.mcp import ToolServers, open_servers
from hubspoke.models.selection import Choice
from hubspoke.runview import RunView

from ._phases import run_phase
from ._run import Run, RunResult, Wiring
from ._waiting import still_waiting

if TYPE_CHECKING:
    from hubspoke.tracing import OtelTracer

__all__ = [
    "abandon",
    "acquire",
    "close_servers",
    "drive",
    "finish",
    "new_record",
    "new_run",
    "start",
    "started",
    "under_way",
    "with_executor",
]


def new_record(
    workflow: str,
    redactor: Redactor,
    input: dict[str, Any],
    choices: Mapping[str, Choice],
    budget: Budget,
    *,
    run_id: str | None,
    ref: str | None,
    options: Mapping[str, Any] | None,
    parent_run: str | None,
    parent_item: str | None,
) -> RunRecord:
    """The record of a new run (a fresh ``run_...`` id unless `run_id` is given), its input,
    `ref` and options scrubbed of secrets; the options hold the budget and each agent role's
    binding (`choices`), so that `hubspoke resume` plays the roles with the same."""
    models = {path: choice.to_dict() for path, choice in choices.items()}
    opts = {**(options or {}), "budget": budget.to_dict(), "models": models}
    # Secrets never reach the store: not even inside the run's input or options.
    return RunRecord(
        run_id=run_id or f"run_{uuid.uuid4().hex[:12]}",
        workflow=workflow,
        ref=None if ref is None else redactor.scrub(ref),
        input=redactor.scrub_json(input),
        options=redactor.scrub_json(opts),
        parent_run=parent_run,
        parent_item=parent_item,
        schema_version=SCHEMA_VERSION,
        created=time.time(),
        status="running",
        finished=None,
    )


def started(record: RunRecord, budget: Budget, shape: dict[str, Any]) -> RunStarted:
    """The data of a run's `run.started` event."""
    return {
        "shape": shape,
        "workflow": record.workflow,
        "ref": record.ref,
        "input": record.input,
        "schema_version": SCHEMA_VERSION,
        "budget": budget.to_dict(),
        "parent_run": record.parent_run,
        "parent_item": record.parent_item,
    }


def finish(journal: Journal, status: str, reason: str) -> None:
    """Journal a run's end. Phase statuses are final when the run ends: a phase the end cut
    short is journaled `stopped`."""
    for name, phase_state in journal.state.phases.items():
        if phase_state.status == "running":
            journal.emit(
                EventKind.PHASE_FINISHED, phase=name, data={"status": "stopped", "reason": reason}
            )
    journal.emit(EventKind.RUN_FINISHED, data={"status": status, "reason": reason})


def acquire(store: Store, run_id: str) -> str:
    """Take the run's lease for this process; return the lease's owner id.

    Raises:
        RunLocked: another live process holds the run.
    """
    lease = uuid.uuid4().hex
    holder = store.acquire(run_id, lease)
    if holder is not None:
        raise RunLocked(f"run {run_id} is held by {holder}; wait for it to finish or stop it first")
    return lease


def new_run(
    wiring: Wiring,
    redactor: Redactor,
    listeners: tuple[Callable[[Event], None], ...],
    record: RunRecord,
    state: RunState,
    view: RunView,
    budget: Budget,
    lease: str,
    servers: ToolServers | None,
) -> Run:
    """The state of one session of a run: its budget (steps capped by the workflow's
    `max_steps`), ledger, journal and tools (an MCP session's, when servers were opened)."""
    wf = wiring.workflow
    steps = wf.max_steps if budget.steps is None else min(budget.steps, wf.max_steps)
    budget = replace(budget, steps=steps)
    ledger = Ledger(
        budget,
        {r.name: r.run_budget for r in wf.roles if r.run_budget is not None},
        wf.dispatch_budget,
    )
    journal = Journal(wiring.store, state, redactor=redactor, listeners=listeners)
    tools = wiring.tools if servers is None else servers.tools
    return Run(record, journal, ledger, view, budget, lease, tools, servers)


async def start(
    wiring: Wiring,
    redactor: Redactor,
    listeners: tuple[Callable[[Event], None], ...],
    record: RunRecord,
    input: BaseModel,
    budget: Budget,
    shape: dict[str, Any],
) -> Run:
    """Start a new run's first session: its MCP servers opened, the run recorded and leased,
    `run.started` journaled, its deadline set.

    Raises:
        ToolServerError: as `hubspoke.mcp.open_servers`; nothing is written.
        RunExists: `record`'s run id is taken; nothing is written or leased.
    """
    # MCP servers start and list their tools before anything is written: one that cannot
    # be used refuses the run (`ToolServerError`) with nothing in the store.
    servers = await open_servers(wiring.workflow.roles, wiring.tools)
    if wiring.share is not None:  # what lets `join` tell a shared run from one that is not
        record = replace(record, options={**record.options, "share": True})
    try:
        wiring.store.create_run(record)
        lease = acquire(wiring.store, record.run_id)
        view = RunView(input, phases=wiring.workflow.phases)
        run = new_run(
            wiring,
            redactor,
            listeners,
            record,
            RunState(record.run_id),
            view,
            budget,
            lease,
            servers,
        )
        run.journal.emit(EventKind.RUN_STARTED, data=started(record, budget, shape))
    except BaseException:
        await close_servers(servers)
        raise
    if budget.seconds is not None:
        run.deadline = time.monotonic() + budget.seconds
    return run


async def drive(wiring: Wiring, run: Run, tracer: OtelTracer | None) -> RunResult:
    """Run the phases not yet finished, in order, then end the run: `completed`, `waiting`
    for people, or as it was stopped; the journal closed, the lease released and the MCP
    sessions ended however it ends."""
    wf = wiring.workflow
    result: Any = None
    try:
        # A run that was stopping when it crashed still finishes the phase under way.
        finishing = under_way(run) if run.stop is not None else frozenset()
        for phase in wf.phases:
            done = run.state.phases.get(phase.name)
            if done is not None and done.status not in ("running", "waiting"):
                continue  # finished before a crash
            if run.stop is not None and phase.name not in finishing:
                break
            finishing = frozenset()
            try:
                await run_phase(wiring, run, phase)
            except JournalWriteError:
                raise
            except Exception as e:
                # User code the foreman calls raised where nothing else caught it: the run
                # ends in a declared state with the reason, never left `running`.
                run.halt("failed", f"phase {phase.name!r}: {type(e).__name__}: {e}")
                break
        waiting = None if run.stop is not None else still_waiting(run)
        if run.stop is None and waiting is None and wf.result is not None:
            # The result is made once nothing waits for a person: until then what it
            # reads may not be there yet.
            try:
                result = wf.result(run.view)
            except Exception as e:
                run.halt("failed", f"result() raised {type(e).__name__}: {e}")
        status, reason = run.stop or waiting or ("completed", "")
        finish(run.journal, status, reason)
    finally:
        # Flush what was decided even when interrupted: the journal stays a prefix. The lease
        # goes even if the store refuses the flush: a resume then starts from that prefix.
        try:
            run.journal.close()
        finally:
            try:
                wiring.store.release(run.run_id, run.lease)
            finally:
                if tracer is not None:  # interrupted: its open spans end, to be sent
                    tracer.end_open(run.run_id)
                # However the run ended (a crash, a cancellation): its MCP sessions end
                # with it, and stdio servers' processes with them.
                await close_servers(run.servers)
    # The reason as journaled: scrubbed of secrets like every event.
    return RunResult(run.run_id, status, run.state.reason, run.state, result)


def under_way(run: Run) -> frozenset[str]:
    """Phases with an item whose dispatch or decision was under way."""
    # A planner's item (phase ``NAME:plan``) is under way in its planned phase ``NAME``.
    return frozenset(
        i.phase.removesuffix(":plan")
        for i in run.state.items.values()
        if i.status == "running" and i.pending
    )


async def close_servers(servers: ToolServers | None) -> None:
    """End a run's MCP sessions, if it has any."""
    if servers is not None:
        await servers.close()


class _Executing(Protocol):
    executor: Executor


_S = TypeVar("_S", bound=_Executing)
_P = ParamSpec("_P")
_R = TypeVar("_R")


def with_executor(
    method: Callable[Concatenate[_S, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _R]]:
    """A foreman's method with its executor started for it and stopped after it (an executor
    with processes of its own: `hubspoke.executors.base.Starting`; calls nest)."""

    async def started(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        async with running(self.executor):
            return await method(self, *args, **kwargs)

    functools.update_wrapper(started, method)
    return started


def abandon(store: Store, redactor: Redactor, run_id: str, reason: str) -> None:
    """End a run no one will drive again: its unfinished phases `stopped`, the run `aborted`
    with `reason` (`Foreman.abandon`); a run that ended, waits, or is unknown is left as it is.

    Raises:
        RunLocked: another live process holds the run.
    """
    if store.run(run_id) is None:
        return
    lease = acquire(store, run_id)
    try:
        state = RunState.fold(run_id, store.events(run_id))
        if state.status != "running":  # a waiting sub-run keeps its cards for a person
            return
        journal = Journal(store, state, redactor=redactor)
        finish(journal, "aborted", reason)
        journal.close()
    finally:
        store.release(run_id, lease)
