"""Starting and resuming runs from the command line, with progress and a summary at the end.

The CLI builds a `Foreman` like any caller and reads the run only through the journal: the
listener it passes sees every event, and the summary is the fold of them (`RunResult.summary`).
Ctrl-C and SIGTERM stop a run the same way: the foreman journals what it decided, the command
exits 130 and says how to resume.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import Any

import typer
from pydantic_core import to_jsonable_python
from rich.console import Console
from rich.text import Text

from hubspoke.cli.config import DbPath
from hubspoke.cli.failures import EXIT_INTERRUPTED, EXIT_OK, UsageError, exit_code_for
from hubspoke.cli.inputs import normalise_ref
from hubspoke.cli.live import LiveProgress, PlainProgress, Progress
from hubspoke.cli.models import parse_model_options, recorded_override
from hubspoke.cli.render import output_console, print_run_summary, status_text
from hubspoke.cli.report import unpriced, unpriced_roles
from hubspoke.cli.store import find_run, open_store
from hubspoke.errors import InputError
from hubspoke.events import Event
from hubspoke.executors.named import opened_executor
from hubspoke.foreman import Foreman, RunResult
from hubspoke.journal import Redactor, RunState
from hubspoke.journal.location import AnyStore
from hubspoke.loader import load_workflow
from hubspoke.models.config import Config
from hubspoke.workflow import Workflow

__all__ = ["RunSettings", "resume_run", "sigterm_as_ctrl_c", "start_run"]


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How the CLI drives and reports a run."""

    db: DbPath
    json_output: bool = False
    latency_ms: float = 0.0
    """Milliseconds each request to the bundled offline model takes."""
    models: tuple[str, ...] = ()
    """``--model`` as given: ``BINDING`` for every agent role, ``ROLE=BINDING`` for one."""
    otel_console: bool = False
    """Print the run's OpenTelemetry span tree to stderr when it ends (``--otel-console``)."""
    otel: bool | None = None
    """Export the run's spans (``--otel``/``--no-otel``); `None`: as the ``OTEL_*`` variables
    say (`hubspoke.tracing.tracer_for`)."""
    executor: str = "local"
    """Where specialists run (``--executor``): ``local``, ``pool[:N]``, ``ray`` or
    ``ray:ADDRESS``."""
    share: bool = False
    """Let `hubspoke join` processes work the run's fan-out phases (``--share``); kept with
    the run, so that `hubspoke resume` shares it too."""


class _Spans:
    """The run's tracers: with ``--otel-console`` one whose spans stay in memory, printed as a
    tree on stderr at the end; with ``--otel`` or the ``OTEL_*`` variables one that exports
    them (`hubspoke.tracing.tracer_for`; the ``console`` exporter writes to stderr, so that
    stdout holds only the summary). Nothing of OpenTelemetry is imported unless asked for."""

    def __init__(self, console: bool, otel: bool | None) -> None:
        from hubspoke.tracing import OtelTracer, tracer_for

        self.listeners: list[Callable[[Event], None]] = []
        self._tracers: list[OtelTracer] = []
        self._exporter: Any = None
        if console:
            from hubspoke.tracing import in_memory

            try:
                tracer, self._exporter = in_memory()
            except ImportError as e:
                raise UsageError(f"--otel-console: {e}") from None
            self._tracers.append(tracer)
        try:
            exporting = tracer_for(otel, console=sys.stderr)
        except ImportError as e:
            asked = "--otel" if otel else "the OTEL_* variables ask for tracing"
            raise UsageError(f"{asked}: {e} (or run with --no-otel)") from None
        if exporting is not None:
            self._tracers.append(exporting)
        self.listeners.extend(self._tracers)

    def end(self, run_id: str) -> None:
        """The run returned or raised: end its spans still open (an interrupted run), and
        print the tree if asked."""
        for tracer in self._tracers:
            tracer.end_open(run_id)
        if self._exporter is None:
            return
        from hubspoke.tracing import format_tree

        typer.echo(format_tree(self._exporter.get_finished_spans()), err=True)

    def flush(self) -> None:
        """Send what the exporters hold, after the summary is printed: a collector that does
        not answer delays the exit by the exporter's time-out (``OTEL_EXPORTER_OTLP_TIMEOUT``,
        10 s), not the summary."""
        for tracer in self._tracers:
            tracer.flush()


def _progress(run_id: str, workflow: Workflow, state: RunState | None) -> Progress:
    # Progress goes to stderr so that stdout holds only the summary (or the JSON).
    console = Console(stderr=True)
    if console.is_terminal:
        return LiveProgress(console, run_id, [p.name for p in workflow.phases], state)
    return PlainProgress(console, run_id)


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """While inside, SIGTERM (`kill PID`, a container or CI job being stopped) acts as Ctrl-C.

    It calls whatever handles SIGINT at that moment: inside `asyncio.run`, the runner's handler,
    which cancels the run's task so the foreman journals what it decided and the command ends
    with the resume hint; elsewhere, `KeyboardInterrupt`. A second signal interrupts at once, as
    a second Ctrl-C does.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:  # SIGINT ignored or default at the C level: still stop like Ctrl-C would
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _drive(
    progress: Progress,
    start: Callable[[], Awaitable[RunResult]],
    store: AnyStore,
    run_id: str,
    db: DbPath,
) -> RunResult:
    async def main() -> RunResult:
        async with progress.showing():
            return await start()

    try:
        with sigterm_as_ctrl_c():
            return asyncio.run(main())
    except KeyboardInterrupt:
        # The foreman flushed what it had decided on the way out; in-flight items run again.
        console = Console(stderr=True, highlight=False, soft_wrap=True)
        if store.run(run_id) is not None:
            console.print(f"interrupted; resume with: hubspoke resume {run_id}{db.flag()}")
        else:
            console.print("interrupted before the run started")
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _unpriced(store: AnyStore, run_id: str) -> dict[str, Any]:
    """Where the run's USD cost is unknown (a model without a price), from its journal."""
    record = store.run(run_id)
    options = record.options if record else {}
    # Every role priced (the offline model, a known one): nothing to look for, and a long
    # run's events are not read again just to find nothing.
    return unpriced(options, store.events(run_id) if unpriced_roles(options) else ())


def _report(
    result: RunResult, settings: RunSettings, unknown: dict[str, Any], redactor: Redactor
) -> int:
    summary = result.summary()
    # The result is the workflow's own object, not read back from the journal: scrub it like
    # everything the journal holds (with the foreman's own rules), whichever way it is printed.
    output = (
        None
        if result.result is None
        else redactor.scrub_json(to_jsonable_python(result.result, fallback=str))
    )
    if settings.json_output:
        payload: dict[str, Any] = {
            **summary,
            "elapsed": round(result.state.elapsed, 6),
            "unpriced": unknown,
        }
        if output is not None:
            payload["result"] = output
        typer.echo(json.dumps(payload))
    else:
        print_run_summary(
            output_console(),
            summary,
            result.state.elapsed,
            settings.db.flag(),
            result=output,
            unpriced=unknown,
        )
    return exit_code_for(result.status)


def start_run(ref: str, input: dict[str, Any], settings: RunSettings) -> int:
    """Load the workflow at `ref`, run it on `input` to its end, report; return the exit code.

    Raises:
        InputError: the reference cannot be loaded or the input does not fit the workflow.
        DefinitionError: the workflow is not valid.
        UsageError: a ``--model`` that does not parse or names no agent role.
        ConfigError: `hubspoke.toml` or a ``HUBSPOKE_*`` variable is wrong.
        ModelSetupError: a model cannot be used (key, server, price); nothing was written.
    """
    ref = normalise_ref(ref)
    workflow = load_workflow(ref)
    workflow.check()
    override = parse_model_options(settings.models, workflow)
    config = Config.load()
    run_id = f"run_{uuid.uuid4().hex[:12]}"
    # Kept with the run so that `hubspoke resume` rebuilds the foreman the same way (the
    # foreman records each role's binding itself).
    options: dict[str, Any] = {"latency": settings.latency_ms}
    if settings.share:
        options["share"] = True
    with (
        opened_executor(settings.executor) as executor,
        open_store(settings.db, create=True) as store,
    ):
        progress = _progress(run_id, workflow, None)
        spans = _Spans(settings.otel_console, settings.otel)
        foreman = Foreman(
            workflow,
            store,
            model=override,
            config=config,
            executor=executor,
            offline_latency=settings.latency_ms / 1000,
            listeners=[progress, *spans.listeners],
            tracing=False,  # the tracers are among the listeners
            share=settings.share,
        )
        try:
            result = _drive(
                progress,
                lambda: foreman.run(input, run_id=run_id, ref=ref, options=options),
                store,
                run_id,
                settings.db,
            )
        finally:
            spans.end(run_id)
        unknown = _unpriced(store, run_id)
    code = _report(result, settings, unknown, foreman.redactor)
    spans.flush()
    return code


def _already_ended(state: RunState, settings: RunSettings) -> int:
    if settings.json_output:
        typer.echo(json.dumps({**state.summary(), "elapsed": round(state.elapsed, 6)}))
        return EXIT_OK
    console = output_console()
    if state.status == "waiting":
        line = Text(f"run {state.run_id} is ").append_text(status_text(state.status))
        if state.reason:
            line.append(f" ({state.reason})")
        console.print(line)
        console.print(
            "nothing decided since it stopped; decide, then resume: hubspoke board --run "
            f"{state.run_id}{settings.db.flag()}",
            markup=False,
        )
        return EXIT_OK
    line = Text(f"run {state.run_id} already ended: ").append_text(status_text(state.status))
    if state.reason:
        line.append(f" ({state.reason})")
    console.print(line)
    console.print(
        f"nothing to resume; see: hubspoke show {state.run_id}{settings.db.flag()}",
        markup=False,
        highlight=False,
    )
    return EXIT_OK


def recorded_workflow_ref(run_id: str, recorded: str | None, given: str | None, verb: str) -> str:
    """The reference to load a run's workflow from, for `hubspoke resume` or `join` (`verb`):
    `given` (``--workflow``), else the one recorded with the run. A given file path without
    ``:NAME`` takes the recorded name.

    Raises:
        UsageError: neither is known (the run was started from Python).
    """
    if given is None:
        if recorded is None:
            raise UsageError(
                f"run {run_id} was started from Python without a workflow reference, so the "
                "CLI cannot find its workflow; give it with --workflow FILE.py:NAME (or "
                f"module:NAME), or {verb} it with Foreman(workflow, store).{verb}(run_id)"
            )
        return recorded
    target, sep, name = given.rpartition(":")
    if not (sep and target and name) and recorded is not None:
        recorded_name = recorded.rpartition(":")[2]
        if recorded_name:
            given = f"{given}:{recorded_name}"
    return normalise_ref(given)


def resume_run(run: str, settings: RunSettings, workflow_ref: str | None = None) -> int:
    """Continue a run that stopped before its end; return the exit code.

    Args:
        run: the run id, or a prefix that matches one run.
        settings: how to report; the latency and bindings are the ones recorded with the run.
        workflow_ref: where to load the workflow from instead of the reference recorded with
            the run (``--workflow``: a file that moved); ``None`` for the recorded one.

    Raises:
        RunNotFound: no run matches `run`.
        RunLocked: another process holds the run.
        WorkflowChanged: the workflow differs from the one the run started with.
        InputError: the workflow reference cannot be loaded.
        UsageError: the prefix is ambiguous, or there is no workflow reference to load.
    """
    with open_store(settings.db, create=False) as store:
        record = find_run(store, run)
        run_id = record.run_id
        state = RunState.fold(run_id, store.events(run_id))
        if state.status != "running" and not (state.status == "waiting" and state.decided):
            return _already_ended(state, settings)
        ref = recorded_workflow_ref(run_id, record.ref, workflow_ref, "resume")
        try:
            workflow = load_workflow(ref)
        except InputError as e:
            if workflow_ref is not None:
                raise
            raise InputError(
                f"{e}; if the workflow's file moved, resume with --workflow FILE.py:NAME"
            ) from None
        latency_ms = float(record.options.get("latency") or 0.0)
        workflow.check()
        with opened_executor(settings.executor) as executor:
            progress = _progress(run_id, workflow, state)
            spans = _Spans(settings.otel_console, settings.otel)
            foreman = Foreman(
                workflow,
                store,
                model=recorded_override(record.options, workflow),
                config=Config.load(),
                executor=executor,
                offline_latency=latency_ms / 1000,
                listeners=[progress, *spans.listeners],
                tracing=False,  # the tracers are among the listeners
                share=bool(record.options.get("share")),
            )
            try:
                result = _drive(
                    progress, lambda: foreman.resume(run_id), store, run_id, settings.db
                )
            finally:
                spans.end(run_id)
        unknown = _unpriced(store, run_id)
    code = _report(result, settings, unknown, foreman.redactor)
    spans.flush()
    return code
