"""The foreman's front door: the `Foreman` class, whose methods delegate to the modules that
wire a workflow (`_wiring`), start, drive and end runs (`_drive`), resume them (`_resume`) and
wait for people (`_waiting`)."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from hubspoke.budget import Budget
from hubspoke.errors import (
    RunNotFound,
    WorkflowChanged,
)
from hubspoke.events import Event
from hubspoke.executors import Executor, LocalExecutor
from hubspoke.journal import Redactor, RunState, Store
from hubspoke.mcp import open_servers
from hubspoke.models.config import Config
from hubspoke.models.selection import Choice, ModelOverride, choose_models
from hubspoke.roles import Role
from hubspoke.shape import shape_changes
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.function import FunctionSpecialist
from hubspoke.throttle import Backoff
from hubspoke.workflow import Workflow

from ._drive import (
    abandon,
    acquire,
    close_servers,
    drive,
    new_record,
    new_run,
    start,
    with_executor,
)
from ._join import join
from ._resume import begin_session, budget_of, can_go_on, collector_paused, rebuild_view
from ._run import RunResult
from ._sharing import Sharing
from ._subforeman import SubForeman
from ._validation import run_input
from ._waiting import wait_for_people
from ._wiring import agent_models, build_agent, check_models, check_override, redactor_for, wire

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider
    from pydantic_ai.models import Model

    from hubspoke.tracing import OtelTracer

__all__ = ["Foreman", "RunResult"]


class Foreman:
    """Runs one workflow; build it once and start any number of runs.

    Args:
        workflow: the plan. Checked here: a wrong card or phase raises `DefinitionError`.
        store: where the journal, artifacts and cards go (e.g. ``SQLiteStore("runs.db")``).
        models: models by binding name, e.g. ``{"offline": OfflineModel(...)}``. Without an
            ``"offline"`` entry, one is built from the workflow's `players` (only if the
            workflow has agent roles: a function-only workflow never imports pydantic-ai).
        model: a binding that replaces every agent role's own (e.g. ``"openai:gpt-4o-mini"``).
        executor: where specialists run; in-process by default (`LocalExecutor`), in worker
            processes on this machine (`hubspoke.executors.PoolExecutor`, started for each
            run and resume and stopped after), or on a Ray cluster
            (`hubspoke.executors.ray.RayExecutor`).
        listeners: called with every event as it is emitted (live views, tracing), its
            sub-runs' too (each event names its run: `Event.run_id`).
        depth: nesting level of a sub-foreman; 0 for a top-level run.
        offline_latency: seconds each request to the bundled offline model takes.
        freeze_gc: at the first run in this process, move every object alive then out of the
            cyclic garbage collector's reach (`gc.freeze()`), so that full collections walk only
            run data. Off by default: it changes the host process. Profiles of a 1,000-item
            fan-out showed full collections re-walking ~90k start-up objects, 16-20% of its CPU
            (docs/performance.md).
        backoff: how long a throttled or unavailable provider endpoint is held when it answered
            without a ``Retry-After`` (`hubspoke.throttle.Backoff`; default: 1 s doubling up to
            30 s, with jitter). Sub-foremen use it too.
        secrets: what is scrubbed from everything the journal writes (event data, the run's
            input and options, artifacts, cards), e.g. ``Redactor(extra_names=["ACME_PIN"],
            patterns=[r"acme-[0-9a-f]{32}"], values=[...])``. By default a `Redactor()`: the
            values of environment variables whose names say they are secret (`TOKEN`,
            `SECRET`, `PASSWORD`, `AUTH`, `API_KEY`... as whole words) and the credentials of
            URLs, re-read whenever the environment changes, so a key exported after the foreman
            was built is scrubbed from the next event, plus the names and patterns of the
            configuration's ``[secrets]`` table (`config`). Sub-foremen share it. The rules:
            `hubspoke.journal.redaction` and docs/concepts.md.
        tracing: OpenTelemetry spans of every run and its sub-runs (docs/tracing.md):
            ``True`` or ``False`` to trace or not whatever the ``OTEL_*`` variables say,
            `None` (the default) to trace only if they ask for it (``OTEL_TRACES_EXPORTER``,
            ``OTEL_EXPORTER_OTLP_ENDPOINT``...), or the `TracerProvider` to send the spans to.
            The tracer is `Foreman.tracer`. See `hubspoke.tracing.tracer_for`.
        record: record every model exchange's request and response in the journal (scrubbed
            of secrets), which `hubspoke replay` needs; ``False`` keeps only usage, for a
            smaller journal and less work per request (docs/replay.md). Sub-foremen share it.
        share: let other foreman processes on the same store work this run's fan-out phases
            (`Foreman.join`): ``True``, or a `Sharing` (lease time, phases); docs/scale.md.

    Raises:
        DefinitionError: the workflow is wrong (see `Workflow.check`), or `model` names a role
            that is not an agent role of the workflow or gives a binding that does not parse.
        ConfigError: the configuration is wrong (`hubspoke.toml`, a ``HUBSPOKE_*`` variable),
            or a role key of ``[models.roles]`` or ``[models.settings.ROLE]`` names no agent
            role of the workflow, by name or by path (`Config.check_roles`), or an ``OTEL_*``
            variable asks for what hubspoke cannot do (`hubspoke.tracing.tracer_for`).
        TypeError: `store` is not a store (a path string, say: use ``SQLiteStore(path)``), or
            `secrets` is not a `Redactor`.
        ExecutorError: the executor cannot run a role's specialist (`Preparing.prepare`).
        ImportError: tracing is asked for (by `tracing` or the variables) and the
            OpenTelemetry SDK is not installed: ``pip install 'hubspoke[otel]'``.
    """

    def __init__(
        self,
        workflow: Workflow,
        store: Store,
        *,
        models: Mapping[str, Model] | None = None,
        model: str | Model | Mapping[str, str | Model] | ModelOverride | None = None,
        config: Config | None = None,
        executor: Executor | None = None,
        listeners: Sequence[Callable[[Event], None]] = (),
        depth: int = 0,
        offline_latency: float = 0.0,
        freeze_gc: bool = False,
        backoff: Backoff | None = None,
        secrets: Redactor | None = None,
        tracing: bool | TracerProvider | None = None,
        record: bool = True,
        share: bool | Sharing = False,
    ) -> None:
        if isinstance(store, str | bytes | os.PathLike) or not hasattr(store, "append"):
            raise TypeError(
                f"store must be a Store such as SQLiteStore(path), not {type(store).__name__} "
                f"{store!r}"
            )
        workflow.check()
        self.workflow = workflow
        self.store = store
        self.given_models = dict(models or {})
        self.backoff = backoff
        self.offline_latency = offline_latency
        self.model_override = ModelOverride.of(model)
        self.config = config if config is not None else Config.load()
        if depth == 0:
            check_override(self.model_override, workflow)
            self.config.check_roles(workflow.agent_roles(), workflow.name)
        # Which model plays each agent role, and why: worked out once, here.
        self._choices = choose_models(
            workflow.roles,
            workflow.default_model,
            override=self.model_override,
            config=self.config,
        )
        self._children: dict[str, Foreman] = {}
        self.executor: Executor = executor or LocalExecutor()
        self.tracer: OtelTracer | None = None
        """The tracer of `tracing`, or `None` when runs are not traced (a sub-foreman's is
        `None`: its parent's tracer is among its `listeners`)."""
        if depth == 0:
            from hubspoke.tracing import tracer_for

            self.tracer = tracer_for(tracing)
        self.listeners = tuple(listeners) + ((self.tracer,) if self.tracer is not None else ())
        self.depth = depth
        self.freeze_gc = freeze_gc
        self.record = record
        self._models: dict[str, Model] | None = None
        self._shape = workflow.shape()  # what a resume must find unchanged (JSON schemas: slow)
        self.redactor = redactor_for(secrets, self.config)
        """What is scrubbed from the journal (the `secrets` argument)."""
        self._wiring = replace(
            wire(workflow, store, self.executor, self._build),
            share=Sharing() if share is True else share or None,
        )

    @property
    def model_choices(self) -> dict[str, Choice]:
        """The binding every agent role plays with, where it came from and its price, by
        path: a role's name, or ``research/searcher`` for a role of the sub-workflow that the
        role ``research`` runs. A run records them (``options["models"]``)."""
        found = dict(self._choices)
        for name, child in self._children.items():
            found.update({f"{name}/{path}": c for path, c in child.model_choices.items()})
        return found

    async def _check_models(self, budget: Budget) -> None:
        """Refuse to start (or resume) a run whose models cannot be used: a key not set, a
        server that does not answer, a USD budget over an unpriced model. A sub-foreman's
        models were checked with its parent's."""
        if self.depth > 0:
            return
        await check_models(self.model_choices, self.config, self.workflow.usd_limited(budget))

    def _build(self, role: Role) -> Specialist:
        if role.function is not None:
            return FunctionSpecialist(role.function)
        if role.delegate is not None:
            assert isinstance(role.delegate, Workflow)  # `Workflow.check` made sure of it
            child = Foreman(
                role.delegate,
                self.store,
                models=self.given_models,
                model=self.model_override.below(role.name),
                config=self.config.below(role.name),
                executor=self.executor,
                depth=self.depth + 1,
                offline_latency=self.offline_latency,
                backoff=self.backoff,
                secrets=self.redactor,
                listeners=self.listeners,
                record=self.record,
            )
            self._children[role.name] = child
            return SubForeman(child, self.workflow.max_depth)
        if self._models is None:
            self._models = agent_models(
                self.given_models, self.workflow.players, self.offline_latency
            )
        return build_agent(
            role,
            self._choices[role.name],
            self._models,
            self.given_models,
            self.config,
            backoff=self.backoff,
            record=self.record,
        )

    # starting and resuming ---------------------------------------------------------------

    @with_executor
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

        The input is validated strictly, from JSON: no coercion (``"900"`` is not ``900``), and
        no NaN or infinity (they are not JSON).

        Raises:
            InputError: `input` does not match the workflow's input schema.
            RunExists: `run_id` is already in the store (resume it with `resume`, or pick
                another id); raised before anything is written or leased.
            ModelSetupError: a model the run would use cannot be used: its key is not set,
                its server does not answer, or a USD budget covers it and it has no known
                price. Every problem is named; nothing is written.
            ToolServerError: an MCP server a card lists tools of cannot be used: it does not
                start or answer, or lacks a tool a card names (`hubspoke.mcp`). Every problem
                is named; nothing is written.
            ConfigError: a binding names an ``[endpoints.NAME]`` table the configuration lacks.
        """
        self._freeze_once()
        wf = self.workflow
        validated, input_dict = run_input(wf.input, input)
        run_budget = budget or wf.budget
        await self._check_models(run_budget)
        record = new_record(
            wf.name,
            self.redactor,
            input_dict,
            self.model_choices,
            run_budget,
            run_id=run_id,
            ref=ref,
            options=options,
            parent_run=parent_run,
            parent_item=parent_item,
        )
        run = await start(
            self._wiring, self.redactor, self.listeners, record, validated, run_budget, self._shape
        )
        return await drive(self._wiring, run, self.tracer)

    async def wait_for_people(
        self, run_id: str, *, timeout: float | None = None, poll: float = 0.25
    ) -> RunResult:
        """Let a `waiting` run go on by itself as soon as a person decides something: watch its
        journal for a decision (`card.decided`, made through `hubspoke.Board` in this process
        or any other, or `hubspoke card ...`), then resume it; repeat while it waits, until
        `timeout` seconds have passed. The run holds no lease while it waits, so the board can
        decide. A run that does not wait is returned as it is.

        Args:
            run_id: the run.
            timeout: seconds to wait for decisions in all; `None` for no limit.
            poll: seconds between two looks at the journal.

        Returns:
            The run's result once it no longer waits, or as it stands when `timeout` passed.

        Raises:
            RunNotFound: no such run. Otherwise as `resume`.
        """
        return await wait_for_people(
            self.store, self._wiring.roles, self.resume, run_id, timeout=timeout, poll=poll
        )

    @with_executor
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
            RunNotFound: no such run. HubspokeError: the run is a shard of a shared run.
            RunLocked: another live process holds the run.
            ModelSetupError, ToolServerError: as for `run`, for a run still to be driven;
                nothing is written.
        """
        self._freeze_once()
        record = self.store.run(run_id)
        if record is None:
            raise RunNotFound(f"no run {run_id!r} in the journal")
        # Take the lease before reading the journal: a state folded earlier could be stale by
        # the time this process drives the run (another one may have written meanwhile).
        lease = acquire(self.store, run_id)
        try:
            # One pause for the whole rebuild: the collector would otherwise walk the folded
            # state once more between the fold and the view.
            with collector_paused():
                state = RunState.fold(run_id, self.store.events(run_id))
                # A waiting run goes on once a person decided something; until then a resume
                # changes nothing.
                resumable = can_go_on(self._wiring, state, record)
                if resumable and state.shape is not None:
                    changes = shape_changes(state.shape, self._shape)
                    if changes:
                        raise WorkflowChanged(run_id, changes)
                # A run left as it is needs its outputs only for the workflow's `result`.
                result_of = self.workflow.result if state.status == "completed" else None
                if resumable or result_of is not None:
                    view = rebuild_view(self._wiring, self.store, record, state)
            if not resumable:
                self.store.release(run_id, lease)
                result = None if result_of is None else result_of(view)
                return RunResult(run_id, state.status, state.reason, state, result)
            run_budget = budget_of(self._wiring, record, budget)
            await self._check_models(run_budget)
            servers = await open_servers(self.workflow.roles, self._wiring.tools)
            try:
                run = new_run(
                    self._wiring,
                    self.redactor,
                    self.listeners,
                    record,
                    state,
                    view,
                    run_budget,
                    lease,
                    servers,
                )
            except BaseException:
                await close_servers(servers)
                raise
        except BaseException:
            self.store.release(run_id, lease)
            raise
        await begin_session(self._wiring, run, state, run_budget, self._shape)
        return await drive(self._wiring, run, self.tracer)

    @with_executor
    async def join(
        self, /, run_id: str, *, concurrency: int = 16, idle: float | None = None, **lease: float
    ) -> int:
        """Work the items of a run another foreman shares (docs/scale.md) in a shard run of
        this process, `concurrency` at once, until the run ends or nothing was free for `idle`
        seconds; `lease`: ``ttl`` and ``poll``, as `Sharing`'s. Returns the items it finished.

        Raises:
            RunNotFound: no such run. RunNotShared: the run was started without ``share``.
            WorkflowChanged: the run's workflow is another one. (Nothing is recorded then.)"""
        return await join(self._wiring, self.redactor, self._shape, run_id,
                          concurrency=concurrency, idle=idle, **lease)  # fmt: skip

    def abandon(self, run_id: str, reason: str) -> None:
        """End a run that no one will drive again (a sub-run whose parent dispatch timed out):
        its unfinished phases end `stopped` and the run `aborted` with `reason`. A run that
        already ended, or is unknown, is left as it is.

        Raises:
            RunLocked: another live process holds the run.
        """
        abandon(self.store, self.redactor, run_id, reason)

    def _freeze_once(self) -> None:
        global _FROZEN
        if self.freeze_gc and not _FROZEN:
            _FROZEN = True
            gc.freeze()


_FROZEN = False
