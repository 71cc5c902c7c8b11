"""The foreman: runs a workflow, routes and validates, never produces an artifact itself.

For each phase: build the work items, and for each item walk its failure ladder: reserve the
worst case in the budget ledger, dispatch through the executor, validate the output (and have
the phase's evaluator check it), then accept, retry with the correction, try the fallback role,
escalate to a person, or stop the run. Every decision is a journal event, and the run's state is
the fold of those events, so a crashed run resumes from its journal: accepted items are never
dispatched again, items that were in flight are.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_ai.models import Model
from pydantic_core import from_json, to_json

from hubspoke.artifacts import Artifact, artifact_id
from hubspoke.board import Card, Column, card_id
from hubspoke.budget import Allowance, Budget, Ledger, Usage
from hubspoke.errors import InputError, RunLocked, RunNotFound
from hubspoke.events import SCHEMA_VERSION, Event, EventKind
from hubspoke.executors import Executor, LocalExecutor
from hubspoke.journal import ItemState, Journal, Redactor, RunRecord, RunState, Store
from hubspoke.jsontext import parse
from hubspoke.models import OfflineModel, binding_name, price_for, resolve_model
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.roles import Role
from hubspoke.specialists import AgentSpecialist, Context, FunctionSpecialist, Specialist
from hubspoke.tools import Tool
from hubspoke.work import Brief, WorkItem
from hubspoke.workflow import EvaluationRequest, Phase, RunView, Strategy, Verdict, Workflow

__all__ = ["Foreman", "RunResult", "format_errors"]

_TRACE_KINDS = {
    "model.exchange": EventKind.MODEL_EXCHANGE,
    "tool.called": EventKind.TOOL_CALLED,
    "tool.refused": EventKind.TOOL_REFUSED,
    "child.started": EventKind.CHILD_RUN_STARTED,
}
# Outcomes that say something about the input itself: dispatching the same fingerprint again
# after one of these brings no new information, so it is stuck. Failures and time-outs may be
# transient and are bounded by max_attempts instead.
_INFORMATIVE = frozenset(
    {OutcomeKind.INVALID, OutcomeKind.SCOPE_VIOLATION, OutcomeKind.NEEDS_HUMAN}
)


_NOTHING = Usage()
_RETRYABLE_KINDS = frozenset(k.value for k in OutcomeKind if Outcome(k).retryable)


def format_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())) or '(root)'}: {e.get('msg', '')}"
        for e in errors
    )


MAX_JSON_DEPTH = 200
"""How deeply a run's input or an item's input may nest: what pydantic's JSON parser reads (it
also bounds outputs, which are validated from JSON). Events wrap an input a few levels deeper,
within what the encoder writes (about 250) and `jsontext.parse` reads back."""

MAX_ERRORS = 20
"""Validation errors kept per invalid output: an enormous wrong list would otherwise put
millions of them in the journal and in the correction fed to the retry."""


def _errors(error: ValidationError) -> list[dict[str, Any]]:
    errors = error.errors(include_url=False, include_context=False, include_input=False)
    kept = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors[:MAX_ERRORS]
    ]
    if len(errors) > MAX_ERRORS:
        kept.append(
            {
                "loc": [],
                "msg": f"... and {len(errors) - MAX_ERRORS} more errors like these",
                "type": "too_many_errors",
            }
        )
    return kept


def validate_output(
    schema: type[BaseModel], raw: Any
) -> tuple[BaseModel | None, list[dict[str, Any]]]:
    """Validate strictly from JSON: never trust an instance, never coerce silently.

    Non-finite numbers (NaN, Infinity) are refused whichever way they come: they are not JSON.
    """
    by_name: bool | None = None
    try:
        if isinstance(raw, BaseModel):
            # Dumped by field name: read back by name (its aliases may differ).
            text, by_name = raw.model_dump_json(), True
        elif isinstance(raw, str | bytes):
            text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="strict")
            # pydantic's JSON parser reads NaN and Infinity, and 1e400 overflows to infinity:
            # standard JSON has no such values, so check the parsed value too.
            json.dumps(from_json(text, allow_inf_nan=False), allow_nan=False)
        else:
            text = _json_text(raw)
        return schema.model_validate_json(text, strict=True, by_name=by_name), []
    except ValidationError as e:
        return None, _errors(e)
    except RecursionError:
        return None, [{"loc": [], "msg": "output is nested too deeply", "type": "json"}]
    except (TypeError, ValueError) as e:
        return None, [{"loc": [], "msg": f"output is not valid JSON: {e}", "type": "json"}]


def _json_text(raw: Any) -> str:
    """`raw` as JSON text, refused (by `json.dumps`) if it is not JSON: NaN, sets, dates...

    pydantic_core's encoder is ~3x faster than `json.dumps` but would write a set as a list
    and NaN as null; its text is kept only when decoding it gives back a value equal to `raw`.
    """
    if type(raw) is dict or type(raw) is list:  # a subclass may encode itself its own way
        try:
            encoded = to_json(raw, inf_nan_mode="null")
            if from_json(encoded) == raw:
                return encoded.decode()
        except Exception:  # not encodable, or nested deeper than the decoder goes
            pass
    return json.dumps(raw, allow_nan=False)


_GC_FROZEN = False


def _freeze_startup_objects() -> None:
    """Once per process, at the first run: move what start-up made (imports, workflow and role
    definitions) out of the cyclic collector's reach, so that full collections walk only run
    data. Profiles showed full collections re-walking ~90k start-up objects, 16-20% of a
    1,000-item fan-out (DESIGN.md §7, docs/performance.md)."""
    global _GC_FROZEN
    if not _GC_FROZEN:
        _GC_FROZEN = True
        gc.freeze()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
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


def _in_flight_at_crash(item: ItemState | None) -> bool:
    """Whether the journal shows a dispatch of `item` that started and never finished."""
    return (
        item is not None
        and item.pending
        and item.last_outcome is None
        and item.reserved is not None
        and item.candidate is None
    )


def fingerprint(role: str, input_json: str, correction: str | None) -> str:
    text = f"{role}\0{input_json}\0{correction or ''}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def _started(record: RunRecord, budget: Budget) -> dict[str, Any]:
    """The data of a run's `run.started` event."""
    return {
        "workflow": record.workflow,
        "ref": record.ref,
        "input": record.input,
        "schema_version": SCHEMA_VERSION,
        "budget": budget.to_dict(),
        "parent_run": record.parent_run,
        "parent_item": record.parent_item,
    }


@dataclass(slots=True)
class RunResult:
    """How a run ended."""

    run_id: str
    status: str
    """completed, failed, escalated, exhausted or aborted."""
    reason: str
    state: RunState
    result: Any = None
    """The workflow's `result(...)`, when it has one and the run completed."""

    def summary(self) -> dict[str, Any]:
        return self.state.summary()


class _Halt:
    __slots__ = ("set",)

    def __init__(self) -> None:
        self.set = False


class _Run:
    """Per-run state the foreman needs besides the fold (kept small and acyclic)."""

    __slots__ = (
        "budget",
        "closing",
        "deadline",
        "journal",
        "lease",
        "ledger",
        "record",
        "stop",
        "view",
    )

    def __init__(
        self,
        record: RunRecord,
        journal: Journal,
        ledger: Ledger,
        view: RunView,
        budget: Budget,
        lease: str,
    ) -> None:
        self.record = record
        self.journal = journal
        self.ledger = ledger
        self.view = view
        self.budget = budget
        self.deadline: float | None = None
        self.stop: tuple[str, str] | None = None
        self.closing: tuple[str, str] | None = None
        """A resumed run that was stopping when it crashed: the (status, reason) it decided."""
        self.lease = lease

    @property
    def state(self) -> RunState:
        return self.journal.state

    def halt(self, status: str, reason: str) -> None:
        if self.stop is None:
            # The first decision wins, including one journaled before a crash.
            self.stop = self.closing or (status, reason)


class Foreman:
    """Runs one workflow; build it once and start any number of runs.

    Args:
        workflow: the plan. Checked here: a wrong card or phase raises `DefinitionError`.
        store: where the journal, artifacts and cards go.
        models: models by binding name, e.g. ``{"offline": OfflineModel(...)}``. Without an
            ``"offline"`` entry, one is built from the workflow's `players`.
        model: a binding that replaces every agent role's own (e.g. ``"openai:gpt-4o-mini"``).
        executor: where specialists run; in-process by default.
        listeners: called with every event as it is emitted (live views).
        depth: nesting level of a sub-foreman; 0 for a top-level run.
        offline_latency: seconds each request to the bundled offline model takes.
    """

    def __init__(
        self,
        workflow: Workflow,
        store: Store,
        *,
        models: Mapping[str, Model] | None = None,
        model: str | Model | None = None,
        executor: Executor | None = None,
        listeners: Sequence[Callable[[Event], None]] = (),
        depth: int = 0,
        offline_latency: float = 0.0,
    ) -> None:
        workflow.check()
        self.workflow = workflow
        self.store = store
        self.given_models = dict(models or {})
        self.offline_latency = offline_latency
        self.models = dict(self.given_models)
        if "offline" not in self.models:
            self.models["offline"] = OfflineModel(workflow.players, latency=offline_latency)
        self.model_override = model
        self.executor: Executor = executor or LocalExecutor()
        self.listeners = tuple(listeners)
        self.depth = depth
        self._roles = {role.name: role for role in workflow.roles}
        self._role_names = frozenset(self._roles)
        self._tools = {r.name: {t.name: t for t in r.compiled_tools} for r in workflow.roles}
        self._specialists = {r.name: self._build(r) for r in workflow.roles}
        self._chains = {name: self._chain(name) for name in self._roles}
        self._timeouts = {r.name: r.dispatch_timeout for r in workflow.roles}
        self._redactor = Redactor()

    def _build(self, role: Role) -> Specialist:
        if role.function is not None:
            return FunctionSpecialist(role.function)
        if role.delegate is not None:
            from hubspoke.subforeman import SubForeman

            return SubForeman(role, self)
        binding = self.model_override or role.model or self.workflow.default_model
        model = resolve_model(binding, self.models)
        return AgentSpecialist(role, model, price_for(binding_name(binding)))

    def _chain(self, name: str) -> tuple[Role, ...]:
        chain = [self._roles[name]]
        while chain[-1].fallback is not None:
            chain.append(self._roles[chain[-1].fallback])
        return tuple(chain)

    def tools_of(self, role: str) -> dict[str, Tool]:
        return self._tools[role]

    # starting and resuming ---------------------------------------------------------------

    async def run(
        self,
        input: BaseModel | Mapping[str, Any],
        *,
        run_id: str | None = None,
        ref: str | None = None,
        options: Mapping[str, Any] | None = None,
        budget: Budget | None = None,
        parent_run: str | None = None,
        parent_item: str | None = None,
    ) -> RunResult:
        """Start a run and drive it to its end.

        Raises:
            InputError: `input` does not match the workflow's input schema.
        """
        _freeze_startup_objects()
        wf = self.workflow
        try:
            if isinstance(input, BaseModel):
                validated = wf.input.model_validate_json(
                    input.model_dump_json(), strict=True, by_name=True
                )
            else:
                validated = wf.input.model_validate(dict(input))
        except ValidationError as e:
            raise InputError(
                f"input does not match {wf.input.__name__}: {format_errors(_errors(e))}"
            ) from None
        try:
            input_dict = from_json(validated.model_dump_json())
        except ValueError as e:
            raise InputError(
                f"input cannot be journaled: {e} (the journal holds JSON values nested up to "
                f"{MAX_JSON_DEPTH} levels)"
            ) from None
        run_budget = budget or wf.budget
        opts = {**(options or {}), "budget": run_budget.to_dict()}
        # Secrets never reach the store: not even inside the run's input or options.
        record = RunRecord(
            run_id=run_id or f"run_{uuid.uuid4().hex[:12]}",
            workflow=wf.name,
            ref=ref,
            input=self._redactor.scrub_json(input_dict),
            options=self._redactor.scrub_json(opts),
            parent_run=parent_run,
            parent_item=parent_item,
            schema_version=SCHEMA_VERSION,
            created=time.time(),
            status="running",
            finished=None,
        )
        self.store.create_run(record)
        lease = self._acquire(record.run_id)
        run = self._new_run(record, RunState(record.run_id), validated, run_budget, lease)
        run.journal.emit(EventKind.RUN_STARTED, data=_started(record, run_budget))
        if run_budget.seconds is not None:
            run.deadline = time.monotonic() + run_budget.seconds
        return await self._drive(run)

    async def resume(self, run_id: str, *, budget: Budget | None = None) -> RunResult:
        """Continue a run that stopped before its end (a crash, a kill).

        A run that already ended is left as it is; for a completed run the workflow's
        `result(...)` is rebuilt from its artifacts (a sub-foreman re-dispatched after a crash
        needs it).

        Args:
            run_id: the run.
            budget: limits tighter than the run's own for the whole run, spending so far
                included: a sub-foreman re-dispatched after a crash is held to the carve its
                parent reserved this time, not the one it got before the crash.

        Raises:
            RunNotFound: no such run.
            RunLocked: another live process holds the run.
        """
        cap = budget
        record = self.store.run(run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id!r} in the journal")
        # Take the lease before reading the journal: a state folded earlier could be stale by
        # the time this process drives the run (another one may have written meanwhile).
        lease = self._acquire(run_id)
        try:
            with _collector_paused():
                state = RunState.fold(run_id, self.store.events(run_id))
            if state.status != "running":
                self.store.release(run_id, lease)
                result = None
                if state.status == "completed" and self.workflow.result is not None:
                    result = self.workflow.result(self._rebuild_view(record, state))
                return RunResult(run_id, state.status, state.reason, state, result)
            view = self._rebuild_view(record, state)
            budget = (
                Budget(**record.options.get("budget", {}))
                if "budget" in record.options
                else (self.workflow.budget)
            )
            if cap is not None:
                budget = budget.tighter(cap)
            run = self._new_run(record, state, view.input, budget, lease, view)
        except BaseException:
            self.store.release(run_id, lease)
            raise
        for role, used in state.usage_by_role.items():
            run.ledger.restore(role, used)
        if state.stopping is not None:
            cause, why = state.stopping
            if cause == "budget":
                finalize = self.workflow.on_budget_exhausted == "finalize"
                run.closing = ("exhausted" if finalize else "aborted", f"budget: {why}")
            else:
                run.closing = ("aborted", self._cap_reason())
        elapsed = state.elapsed
        try:
            if state.last_seq == 0:
                # Killed after the run was recorded but before its first event was written:
                # start it now, so that its journal still begins with run.started.
                run.journal.emit(EventKind.RUN_STARTED, data=_started(record, budget))
            else:
                in_flight = sorted(k for k, i in state.items.items() if i.status == "running")
                run.journal.emit(
                    EventKind.RUN_RESUMED,
                    data={"elapsed_before": elapsed, "in_flight": in_flight},
                )
                self._reconcile_cards(run)  # runs the workflow's card_title
        except BaseException:
            try:
                with contextlib.suppress(Exception):  # the first error is the one to report
                    run.journal.close()
            finally:
                self.store.release(run_id, lease)
            raise
        if budget.seconds is not None:
            run.deadline = time.monotonic() + max(0.0, budget.seconds - elapsed)
        return await self._drive(run)

    def _rebuild_view(self, record: RunRecord, state: RunState) -> RunView:
        """What phases' `input` and `over` saw: the run input and the accepted outputs."""
        # The run record holds the input by field name.
        view = RunView(self.workflow.input.model_validate(record.input, by_name=True))
        by_artifact: dict[str, str] = {}
        accepted = [i for i in state.items.values() if i.status == "accepted" and i.artifact_id]
        # One query for the run's artifacts, not one per item, validated from their JSON text.
        texts = self._artifact_texts(record.run_id) if accepted else {}
        with _collector_paused():
            for item in accepted:
                key, aid = item.key, item.artifact_id
                if aid is not None:
                    text = texts.get(aid)
                    if text is None:
                        raise RunNotFound(f"artifact {aid} of {key} is missing")
                    # Stored by field name (`_accept`): read back by name, aliases or not.
                    output = self._roles[item.role].output.model_validate_json(text, by_name=True)
                    view._record(item.phase, key, aid, output)
                    by_artifact[aid] = key
        for name, phase_state in state.phases.items():
            if phase_state.selected is not None:
                view._select(name, [by_artifact[a] for a in phase_state.selected])
        return view

    def _artifact_texts(self, run_id: str) -> dict[str, str]:
        texts = getattr(self.store, "artifact_texts", None)
        if texts is not None:
            return texts(run_id)  # type: ignore[no-any-return]
        # A store written before `Store.artifact_texts` existed.
        return {
            a.id: a.content_json or to_json(a.content).decode()
            for a in self.store.artifacts(run_id)
        }

    def _reconcile_cards(self, run: _Run) -> None:
        """Give every item that ended before the crash the card its end calls for.

        An item's end and its card are written together in practice; this makes resume
        correct even if a crash fell between the two.
        """
        state = run.state
        phases = {p.name: p for p in self.workflow.phases}
        for key, item in state.items.items():
            if key in state.carded or item.phase not in phases:
                continue
            phase = phases[item.phase]
            if item.status == "escalated":
                self._escalation_card(run, phase.name, item.role, key, item.reason)
            elif item.status == "accepted" and phase.review and item.artifact_id is not None:
                _, output = run.view._outputs[phase.name][key]
                self._review_card(run, phase, self._roles[item.role], key, item.artifact_id, output)

    def _new_run(
        self,
        record: RunRecord,
        state: RunState,
        input: BaseModel,
        budget: Budget,
        lease: str,
        view: RunView | None = None,
    ) -> _Run:
        wf = self.workflow
        steps = wf.max_steps if budget.steps is None else min(budget.steps, wf.max_steps)
        budget = replace(budget, steps=steps)
        ledger = Ledger(
            budget,
            {r.name: r.run_budget for r in wf.roles if r.run_budget is not None},
            wf.dispatch_budget,
        )
        journal = Journal(self.store, state, redactor=self._redactor, listeners=self.listeners)
        return _Run(record, journal, ledger, view or RunView(input), budget, lease)

    def _acquire(self, run_id: str) -> str:
        """Take the run's lease for this process; return the lease's owner id."""
        lease = uuid.uuid4().hex
        holder = self.store.acquire(run_id, lease)
        if holder is not None:
            raise RunLocked(
                f"run {run_id} is held by {holder}; wait for it to finish or stop it first"
            )
        return lease

    async def _drive(self, run: _Run) -> RunResult:
        wf = self.workflow
        result: Any = None
        try:
            for phase in wf.phases:
                if run.stop is not None:
                    break
                await self._run_phase(run, phase)
            if run.stop is None and wf.result is not None:
                try:
                    result = wf.result(run.view)
                except Exception as e:
                    run.halt("failed", f"result() raised {type(e).__name__}: {e}")
            status, reason = run.stop or ("completed", "")
            run.journal.emit(EventKind.RUN_FINISHED, data={"status": status, "reason": reason})
        finally:
            # Flush what was decided even when interrupted: the journal stays a prefix. The lease
            # goes even if the store refuses the flush: a resume then starts from that prefix.
            try:
                run.journal.close()
            finally:
                self.store.release(run.record.run_id, run.lease)
        # The reason as journaled: scrubbed of secrets like every event.
        return RunResult(run.record.run_id, status, run.state.reason, run.state, result)

    # phases --------------------------------------------------------------------------------

    async def _run_phase(self, run: _Run, phase: Phase) -> None:
        state = run.state
        done = state.phases.get(phase.name)
        if done is not None and done.status in ("completed", "failed"):
            return
        view = run.view
        try:
            elements: Sequence[Any] = list(phase.over(view)) if phase.over else [None]
        except Exception as e:
            run.halt("failed", f"phase {phase.name!r}: over() raised {type(e).__name__}: {e}")
            return
        total = len(elements)
        keys = [f"{phase.name}[{i}]" for i in range(total)] if phase.over else [phase.name]
        run.journal.emit(EventKind.PHASE_STARTED, phase=phase.name, data={"items": total})
        work = list(zip(range(total), keys, elements, strict=True))
        halt = _Halt()
        # On resume, what the journal already decided stands: a run that was stopping, or a
        # fail-fast phase that had lost an item, only finishes the dispatches in flight.
        stopping = run.closing is not None or (
            phase.strategy is Strategy.FAIL_FAST
            and any(
                (i := state.items.get(k)) is not None and i.status in ("escalated", "failed")
                for k in keys
            )
        )
        rounds = 1 + (phase.retries if phase.strategy is Strategy.RETRY else 0)
        for round_ in range(rounds):
            # Each round takes the items that have not been through it yet; after a resume that
            # also means the items in flight at the crash, whatever round they were in.
            todo = [
                w
                for w in work
                if (i := state.items.get(w[1])) is None
                or i.status == "running"
                or i.reopened
                or (round_ > 0 and i.status != "accepted" and i.rounds <= round_)
            ]
            if stopping:
                # A stopping run finishes only the dispatches and decisions under way; a
                # fail-fast phase lets the items it had started finish their ladders.
                todo = [
                    w
                    for w in todo
                    if (i := state.items.get(w[1])) is not None
                    and (
                        i.pending
                        if run.closing is not None
                        else (i.status == "running" or i.reopened)
                    )
                ]
            if run.stop is not None:
                break
            if todo:
                await self._fan_out(run, phase, todo, total, halt, fresh=round_ > 0)
            if stopping:
                halt.set = phase.strategy is Strategy.FAIL_FAST
                break
        if run.closing is not None:
            run.halt(*run.closing)
        if run.stop is not None:
            return
        accepted = [k for k in keys if (i := state.items.get(k)) and i.status == "accepted"]
        if phase.select is not None:
            chosen = sorted(
                accepted,
                key=lambda k: -phase.select.key(view._outputs[phase.name][k][1]),  # type: ignore[union-attr]
            )[: phase.select.k]
            chosen.sort(key=keys.index)
            view._select(phase.name, chosen)
            run.journal.emit(
                EventKind.PHASE_SELECTED,
                phase=phase.name,
                data={"artifact_ids": [view._outputs[phase.name][k][0] for k in chosen]},
            )
        escalated = sum(1 for k in keys if (i := state.items.get(k)) and i.status == "escalated")
        missing = total - len(accepted)
        if phase.strategy is Strategy.FAIL_FAST:
            ok = missing == 0
        elif phase.strategy is Strategy.QUORUM:
            ok = len(accepted) >= (phase.quorum or 0)
        else:
            ok = True
        run.journal.emit(
            EventKind.PHASE_FINISHED,
            phase=phase.name,
            data={
                "status": "completed" if ok else "failed",
                "accepted": len(accepted),
                "escalated": escalated,
                "missing": missing,
            },
        )
        if not ok:
            why = (
                f"phase {phase.name!r} ({phase.strategy.value}): {len(accepted)} of {total} items "
                f"accepted, {escalated} escalated"
            )
            run.halt("escalated" if escalated else "failed", why)

    async def _fan_out(
        self,
        run: _Run,
        phase: Phase,
        todo: list[tuple[int, str, Any]],
        total: int,
        halt: _Halt,
        *,
        fresh: bool,
    ) -> None:
        if len(todo) == 1:
            index, key, element = todo[0]
            await self._run_item(run, phase, index, key, element, total, halt, fresh)
            return
        pending = iter(todo)

        async def worker() -> None:
            for index, key, element in pending:
                held = run.stop is not None or halt.set
                # A stop or a fail-fast halt decided in this session does not hold back a dispatch
                # that was already in flight when the run crashed (it had started before them).
                if held and (fresh or not _in_flight_at_crash(run.state.items.get(key))):
                    continue
                await self._run_item(run, phase, index, key, element, total, halt, fresh)

        # A task group, not gather: if one worker fails, the others are cancelled before the
        # run's lease is released, so nothing dispatches for a run no one holds.
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(phase.concurrency, len(todo))):
                    group.create_task(worker())
        except BaseExceptionGroup as failed:  # the caller gets the error, not a group of them
            raise failed.exceptions[0] from None

    # items ---------------------------------------------------------------------------------

    async def _run_item(
        self,
        run: _Run,
        phase: Phase,
        index: int,
        key: str,
        element: Any,
        total: int,
        halt: _Halt,
        fresh: bool,
    ) -> None:
        view = run.view
        first = self._roles[phase.role]
        try:
            raw = phase.input(view, element) if phase.over else phase.input(view)
        except Exception as e:
            self._fail_item(run, phase, key, first.name, f"input() raised {type(e).__name__}: {e}")
            halt.set = halt.set or phase.strategy is Strategy.FAIL_FAST
            return
        try:
            if isinstance(raw, BaseModel):  # dumped by field name: read back by name
                item_input = first.input.model_validate(raw.model_dump(), by_name=True)
            else:
                item_input = first.input.model_validate(raw)
        except ValidationError as e:
            self._fail_item(
                run,
                phase,
                key,
                first.name,
                f"input for role {first.name!r} is invalid: {format_errors(_errors(e))}",
            )
            halt.set = halt.set or phase.strategy is Strategy.FAIL_FAST
            return
        try:
            input_json = item_input.model_dump_json()
            input_dict: dict[str, Any] = from_json(input_json)  # the journal's depth limit
        except ValueError as e:  # a value JSON cannot hold, or nested past MAX_JSON_DEPTH
            self._fail_item(
                run,
                phase,
                key,
                first.name,
                f"input for role {first.name!r} cannot be journaled: {e} (the journal holds "
                f"JSON values nested up to {MAX_JSON_DEPTH} levels)",
            )
            halt.set = halt.set or phase.strategy is Strategy.FAIL_FAST
            return
        chain = self._chains[first.name]
        start, attempt, tries, correction = 0, 1, 0, None
        previous = run.state.items.get(key)
        reason = ""
        if previous is not None:
            attempt = previous.attempt + (1 if fresh and previous.last_outcome is None else 0)
            if not fresh:  # resuming: pick the ladder up where the journal left it
                start = next((n for n, r in enumerate(chain) if r.name == previous.role), 0)
                tries, correction = previous.tries, previous.correction
                ended = previous.last_outcome
                if ended is not None:
                    # The last attempt finished but its decision was not journaled: decide now
                    # instead of dispatching the same thing again.
                    reason = f"{ended} (before the restart)"
                    if ended == OutcomeKind.NEEDS_HUMAN.value:
                        self._escalate(run, phase, previous.role, key, reason, halt)
                        return
                    if ended not in _RETRYABLE_KINDS:
                        tries = chain[start].max_attempts
                    elif tries < chain[start].max_attempts:
                        self._note(
                            run,
                            EventKind.ITEM_RETRY,
                            phase,
                            previous.role,
                            key,
                            attempt,
                            {"correction": correction},
                        )
        # A resumed run that was stopping gives an item in flight at the crash that dispatch
        # back and nothing more: the uncrashed run had stopped before the item's next attempt.
        dispatched = previous is not None and not fresh and previous.last_outcome is not None
        again: Budget | None = None  # a dispatch in flight at the crash gets its allowance back
        if not fresh and _in_flight_at_crash(previous):
            assert previous is not None and previous.reserved is not None
            sized = {k: previous.reserved.get(k) for k in ("tokens", "usd", "tool_calls")}
            again = Budget(**sized)
        # An attempt whose output the evaluator was judging at the crash: judged again, once,
        # whatever was decided since (in the uncrashed run that evaluation had already started).
        candidate = previous.candidate if previous is not None and not fresh else None
        for rung in range(start, len(chain)):
            role = chain[rung]
            specialist = self._specialists[role.name]
            brief = self.workflow.brief(phase, role, index if phase.over else None, total)
            while tries < role.max_attempts:
                # The dispatch in flight at a crash runs once whatever was decided since: in the
                # uncrashed run it had started before that decision.
                stopping = run.stop is not None or (dispatched and run.closing is not None)
                if stopping and again is None and candidate is None:
                    return
                fp = fingerprint(role.name, input_json, correction)
                if fp in run.state.failed_fingerprints:
                    self._note(
                        run,
                        EventKind.ITEM_STUCK,
                        phase,
                        role.name,
                        key,
                        attempt,
                        {"fingerprint": fp},
                    )
                    reason = (
                        reason or "stuck: the same dispatch would repeat with no new information"
                    )
                    break
                judged = self._candidate(role, candidate)
                candidate = None
                if judged is not None:
                    outcome = await self._judge(
                        run, phase, role, key, brief, input_dict, judged, attempt, fp
                    )
                else:
                    outcome = await self._dispatch(
                        run,
                        phase,
                        role,
                        specialist,
                        key,
                        item_input,
                        input_dict,
                        brief,
                        attempt,
                        correction,
                        tries,
                        fp,
                        again,
                    )
                dispatched, again = True, None
                if outcome is None:  # the run's budget refused it; the run is stopping
                    return
                if outcome.kind is OutcomeKind.OUTPUT and outcome.output is not None:
                    self._accept(run, phase, role, key, outcome.output)
                    return
                tries += 1
                attempt += 1
                reason = f"{outcome.kind.value}: {outcome.message or format_errors(outcome.errors)}"
                if outcome.kind is OutcomeKind.NEEDS_HUMAN:
                    self._escalate(run, phase, role.name, key, outcome.message, halt)
                    return
                if not outcome.retryable or tries >= role.max_attempts:
                    break
                correction = outcome.correction()
                self._note(
                    run,
                    EventKind.ITEM_RETRY,
                    phase,
                    role.name,
                    key,
                    attempt,
                    {"correction": correction},
                )
            if rung + 1 < len(chain):
                self._note(
                    run,
                    EventKind.ITEM_FALLBACK,
                    phase,
                    role.name,
                    key,
                    None,
                    {"to": chain[rung + 1].name, "reason": reason},
                )
            tries, correction = 0, None
        # A stopping run escalates nothing more: whether it decided to stop in this session
        # (`stop`) or before a crash (`closing`), so a resumed run ends as the uncrashed one.
        if run.stop is None and run.closing is None:
            self._escalate(
                run, phase, chain[-1].name, key, f"failure ladder exhausted ({reason})", halt
            )

    async def _dispatch(
        self,
        run: _Run,
        phase: Phase,
        role: Role,
        specialist: Specialist,
        key: str,
        item_input: BaseModel,
        input_dict: dict[str, Any],
        brief: Brief,
        attempt: int,
        correction: str | None,
        tries: int,
        fp: str,
        again: Budget | None = None,
    ) -> Outcome | None:
        journal = run.journal
        # `again`: the allowance this dispatch had before a crash, so it runs the same way.
        reservation = run.ledger.reserve(role.name, again or role.budget)
        if again is not None and not isinstance(reservation, str):
            # Given back to a dispatch that was in flight: sized as it was then.
            previous = run.state.items.get(key)
            reservation.from_leftover = bool(
                previous is not None and (previous.reserved or {}).get("leftover")
            )
        deadline_passed = run.deadline is not None and time.monotonic() >= run.deadline
        if not isinstance(reservation, str) and deadline_passed:
            run.ledger.settle(reservation, _NOTHING)
            reservation = f"run seconds: the deadline of {run.budget.seconds:g}s has passed"
        if isinstance(reservation, str):
            self._exhausted(run, phase, role, key, attempt, reservation)
            return None
        item = WorkItem(
            run_id=run.record.run_id,
            phase=phase.name,
            key=key,
            role=role.name,
            input=item_input,
            brief=brief,
            attempt=attempt,
            correction=correction,
        )
        allowance = Allowance(reservation.tokens, reservation.usd, reservation.tool_calls)
        ctx = Context(
            brief,
            attempt,
            correction,
            item.idempotency_key,
            allowance,
            self._tools[role.name],
            _roles=self._role_names,
        )
        journal.emit(
            EventKind.DISPATCH_STARTED,
            phase=phase.name,
            role=role.name,
            item=key,
            attempt=attempt,
            data={
                "fingerprint": fp,
                "correction": correction,
                "tries": tries,
                "input": input_dict,
                "reserved": {
                    "tokens": reservation.tokens,
                    "usd": reservation.usd,
                    "tool_calls": reservation.tool_calls,
                    "leftover": reservation.from_leftover,
                },
            },
        )
        # About to wait for the specialist: a point where the journal may be cut. A sub-run is
        # recorded as it starts, so the dispatch that starts it is made durable first: no crash
        # can leave a sub-run that no parent journal knows about.
        journal.checkpoint(force=role.delegate is not None)
        timeout = self._timeouts[role.name]
        cut_by_deadline = False
        if run.deadline is not None:
            left = max(0.001, run.deadline - time.monotonic())
            cut_by_deadline = timeout is None or left < timeout
            timeout = left if cut_by_deadline else timeout
        started = time.perf_counter()
        outcome = await self.executor.execute(specialist, item, ctx, timeout)
        used = allowance.used
        used.seconds = time.perf_counter() - started
        used.steps = 1
        run.ledger.settle(reservation, used)
        outcome.usage = used
        if outcome.kind is OutcomeKind.OUTPUT:
            outcome.output, outcome.errors = validate_output(role.output, outcome.raw)
            if outcome.output is None:
                outcome.kind = OutcomeKind.INVALID
                outcome.message = "output does not match " + role.output.__name__
        for entry in ctx.trace:
            kind = _TRACE_KINDS.get(entry["kind"], EventKind.TOOL_CALLED)
            self._note(run, kind, phase, role.name, key, attempt, entry)
        finished: dict[str, Any] = {"outcome": outcome.kind.value, "usage": used.to_dict()}
        if outcome.message:
            finished["message"] = outcome.message
        if outcome.kind is not OutcomeKind.OUTPUT:
            finished["correction"] = outcome.correction()
        if outcome.kind in _INFORMATIVE:
            finished["fingerprint"] = fp
        judged = outcome.kind is OutcomeKind.OUTPUT and phase.evaluator is not None
        judge = outcome.output if judged and "#" not in key else None  # the phase evaluates it
        if judge is not None:
            # Journaled so that a kill during the evaluation costs the evaluation, not the work.
            finished["output"] = parse(judge.model_dump_json())
        self._note(run, EventKind.DISPATCH_FINISHED, phase, role.name, key, attempt, finished)
        if outcome.kind is OutcomeKind.BUDGET_REFUSED and reservation.from_leftover:
            self._exhausted(
                run, phase, role, key, attempt, f"what the run had left: {outcome.message}"
            )
            return None
        if outcome.kind is OutcomeKind.TIMED_OUT and cut_by_deadline:
            reason = f"run seconds: the deadline of {run.budget.seconds:g}s has passed"
            self._exhausted(run, phase, role, key, attempt, reason)
            return None
        if outcome.kind is OutcomeKind.INVALID:
            self._note(
                run,
                EventKind.OUTPUT_INVALID,
                phase,
                role.name,
                key,
                attempt,
                {"errors": outcome.errors},
            )
        elif judge is not None:
            return await self._judge(run, phase, role, key, brief, input_dict, outcome, attempt, fp)
        return outcome

    @staticmethod
    def _candidate(role: Role, candidate: dict[str, Any] | None) -> Outcome | None:
        """The journaled output an evaluator was judging at the crash, as the outcome it was."""
        if candidate is None:
            return None
        try:  # dumped by field name; None (dispatch again) if it no longer validates
            output = role.output.model_validate(candidate, by_name=True)
        except ValidationError:
            return None
        return Outcome(OutcomeKind.OUTPUT, output=output)

    async def _judge(
        self,
        run: _Run,
        phase: Phase,
        role: Role,
        key: str,
        brief: Brief,
        input_dict: dict[str, Any],
        outcome: Outcome,
        attempt: int,
        fp: str,
    ) -> Outcome | None:
        """The phase's evaluator on an output: the outcome as it stands, the rejection as an
        invalid one, or None if the run's budget refused the evaluation (the run is stopping)."""
        assert outcome.output is not None
        judged, critique = await self._evaluate(
            run, phase, key, brief, input_dict, outcome.output, attempt
        )
        if not judged:  # the run's budget refused the evaluation: the run is stopping
            return None
        if critique is None:  # accepted, even if a sibling stopped the run meanwhile: the work
            return outcome  # is done and judged, as a dispatch that ends after a stop is kept
        rejected = Outcome(
            OutcomeKind.INVALID, message=f"evaluator: {critique}", usage=outcome.usage
        )
        self._note(
            run,
            EventKind.EVALUATOR_REJECTED,
            phase,
            role.name,
            key,
            attempt,
            {"critique": critique, "fingerprint": fp, "correction": rejected.correction()},
        )
        return rejected

    async def _evaluate(
        self,
        run: _Run,
        phase: Phase,
        key: str,
        brief: Brief,
        input_dict: dict[str, Any],
        output: BaseModel,
        attempt: int,
    ) -> tuple[bool, str | None]:
        """Have the phase's evaluator judge an output: (False, None) if the run's budget
        refused the evaluation, else (True, its critique if it rejects)."""
        assert phase.evaluator is not None
        evaluator = self._roles[phase.evaluator]
        request = EvaluationRequest(
            objective=brief.objective, input=input_dict, output=output.model_dump(mode="json")
        )
        request_json = request.model_dump_json()
        eval_key = f"{key}#eval"
        fp = fingerprint(evaluator.name, request_json, None)
        outcome = await self._dispatch(
            run,
            phase,
            evaluator,
            self._specialists[evaluator.name],
            eval_key,
            request,
            json.loads(request_json),
            Brief(objective=f"judge the output of {key}"),
            attempt,
            None,
            0,
            fp,
        )
        if outcome is None:  # refused by the run's budget: the run is stopping
            return False, None
        if outcome.kind is not OutcomeKind.OUTPUT or not isinstance(outcome.output, Verdict):
            return True, f"the evaluator gave no verdict ({outcome.kind.value}: {outcome.message})"
        return True, None if outcome.output.accept else (outcome.output.critique or "rejected")

    # decisions -----------------------------------------------------------------------------

    def _accept(self, run: _Run, phase: Phase, role: Role, key: str, output: BaseModel) -> None:
        content_json = output.model_dump_json()
        content = parse(content_json)
        run_id = run.record.run_id
        aid = artifact_id(run_id, key, content_json)
        now = time.time()
        artifact = Artifact(
            id=aid,
            run_id=run_id,
            phase=phase.name,
            role=role.name,
            item=key,
            schema=f"{type(output).__module__}.{type(output).__qualname__}",
            content=content,
            created=now,
            content_json=content_json,
        )
        run.journal.emit(
            EventKind.ITEM_ACCEPTED,
            phase=phase.name,
            role=role.name,
            item=key,
            data={"artifact_id": aid},
            artifact=artifact,
        )
        run.view._record(phase.name, key, aid, output)
        if phase.review:
            self._review_card(run, phase, role, key, aid, output)

    def _review_card(
        self, run: _Run, phase: Phase, role: Role, key: str, aid: str, output: BaseModel
    ) -> None:
        title, note = f"{phase.name}: {key}", ""
        if phase.card_title is not None:
            try:
                title = str(phase.card_title(output))
            except Exception as e:  # a title is for the board: the draft still goes to review
                note = f"card_title() raised {type(e).__name__}: {e}"
        card = Card(
            id=card_id(run.record.run_id, key),
            run_id=run.record.run_id,
            phase=phase.name,
            item=key,
            column=Column.REVIEW,
            title=title,
            risk=role.risk.value,
            artifact_id=aid,
            note=note,
            created=time.time(),
        )
        run.journal.emit(
            EventKind.CARD_CREATED,
            phase=phase.name,
            role=role.name,
            item=key,
            data={"card_id": card.id, "column": "review", "title": title, "artifact_id": aid},
            card=card,
        )

    def _escalate(
        self, run: _Run, phase: Phase, role: str, key: str, reason: str, halt: _Halt
    ) -> None:
        if phase.strategy is Strategy.FAIL_FAST:
            halt.set = True
        if run.state.escalations >= self.workflow.max_escalations:
            run.journal.emit(
                EventKind.ITEM_FAILED,
                phase=phase.name,
                role=role,
                item=key,
                data={"reason": f"escalation cap reached ({reason})", "stops_run": True},
            )
            run.halt("aborted", self._cap_reason())
            return
        self._note(run, EventKind.ITEM_ESCALATED, phase, role, key, None, {"reason": reason})
        self._escalation_card(run, phase.name, role, key, reason)

    def _escalation_card(self, run: _Run, phase: str, role: str, key: str, reason: str) -> None:
        card = Card(
            id=card_id(run.record.run_id, key),
            run_id=run.record.run_id,
            phase=phase,
            item=key,
            column=Column.ESCALATED,
            title=f"{phase}: {key} needs a person",
            risk=self._roles[role].risk.value,
            note=reason,
            created=time.time(),
        )
        run.journal.emit(
            EventKind.CARD_CREATED,
            phase=phase,
            role=role,
            item=key,
            data={"card_id": card.id, "column": "escalated", "title": card.title},
            card=card,
        )

    def _cap_reason(self) -> str:
        return f"more than max_escalations={self.workflow.max_escalations} items needed a person"

    def _exhausted(
        self, run: _Run, phase: Phase, role: Role, key: str, attempt: int, reason: str
    ) -> None:
        """The run's budget refused a dispatch: journal it and end the run in its declared state."""
        self._note(
            run, EventKind.BUDGET_REFUSED, phase, role.name, key, attempt, {"reason": reason}
        )
        finalize = self.workflow.on_budget_exhausted == "finalize"
        run.halt("exhausted" if finalize else "aborted", f"budget: {reason}")

    @staticmethod
    def _note(
        run: _Run,
        kind: EventKind,
        phase: Phase,
        role: str,
        key: str,
        attempt: int | None,
        data: dict[str, Any],
    ) -> None:
        """Journal an event about one item of a phase."""
        run.journal.emit(kind, phase=phase.name, role=role, item=key, attempt=attempt, data=data)

    def _fail_item(self, run: _Run, phase: Phase, key: str, role: str, reason: str) -> None:
        self._note(run, EventKind.ITEM_FAILED, phase, role, key, None, {"reason": reason})
