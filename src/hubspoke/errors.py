"""Errors: one module, one root, two kinds.

Every exception hubspoke defines derives from `HubspokeError`. They come in two kinds:

- **Terminal errors**, raised to the *caller*: a bad card or workflow (`DefinitionError`), bad
  input (`InputError`), a bad `hubspoke.toml` or ``HUBSPOKE_*`` variable (`ConfigError`), a
  model that cannot be used as set up (`ModelSetupError`), a tool server that cannot be used
  (`ToolServerError`), an executor that cannot run the workflow (`ExecutorError`), an unknown
  or held run (`RunNotFound`, `RunLocked`), a run that does not share its items with joiners
  (`RunNotShared`), a run that cannot be replayed (`NotReplayable`), an
  unknown card or a decision the board refuses
  (`CardNotFound`, `DecisionRefused`, `AmendRefused`), a store that refuses a write
  (`StoreError` and its subclasses, `JournalWriteError`), a workflow changed under a resumed
  run, or not the one a joiner's run runs (`WorkflowChanged`). They say what went wrong and
  what to do.
- **Signals** (`Signal`), raised by a *specialist* to answer its work item with something other
  than an output. They are control flow, not failures of hubspoke: the foreman catches them,
  turns them into outcomes and walks the failure ladder. `Retry` asks for another attempt with a
  correction (like pydantic-ai's `ModelRetry`), `OutOfScope` and `NeedsHuman` send the item to
  the fallback role or a person; `BudgetExceeded`, `ToolRefused`, `ToolArgumentsError` and
  `ContextError` say the dispatch's allowance, its card or its context refused a call; `InDoubt`
  says a side-effecting tool call may or may not have taken effect, and a person must check. A
  signal never reaches the caller of `Foreman.run`.

`MCPToolError` is neither: a tool served by an MCP server that ran and failed, raised to whoever
called the tool as a Python tool's own exception is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "AmendRefused",
    "BindingError",
    "BudgetExceeded",
    "CardNotFound",
    "ConfigError",
    "ContextError",
    "DecisionRefused",
    "DefinitionError",
    "DuplicateEvent",
    "ExecutorError",
    "HubspokeError",
    "InDoubt",
    "InputError",
    "JournalReadOnly",
    "JournalTooNew",
    "JournalWriteError",
    "MCPToolError",
    "ModelSetupError",
    "NeedsHuman",
    "NotReplayable",
    "OutOfScope",
    "OutputLookupError",
    "Retry",
    "RunExists",
    "RunLocked",
    "RunNotFound",
    "RunNotShared",
    "Signal",
    "StoreError",
    "StoreUnavailable",
    "ToolArgumentsError",
    "ToolRefused",
    "ToolServerError",
    "WorkflowChanged",
]


class HubspokeError(Exception):
    """Base class of the errors hubspoke raises to its caller."""


class DefinitionError(HubspokeError):
    """A role card or workflow is wrong. Raised when the workflow is built, never mid-run.

    Args:
        where: the card or phase at fault, e.g. ``"role 'writer'"``.
        field: the field at fault.
        problem: what is wrong and what to do.
    """

    def __init__(self, where: str, field: str, problem: str) -> None:
        super().__init__(f"{where}, field '{field}': {problem}")
        self.where = where
        self.field = field
        self.problem = problem


class InputError(HubspokeError):
    """The input given to a run does not match the workflow's input schema."""


class BindingError(HubspokeError, ValueError):
    """A model binding cannot be parsed (`hubspoke.models.parse_binding`); the message says
    what to write instead. Where the binding was written turns it into that place's error:
    `DefinitionError` for a card, `ConfigError` for the environment or `hubspoke.toml`."""


class ConfigError(HubspokeError):
    """The configuration is wrong: `hubspoke.toml`, a ``HUBSPOKE_*`` environment variable, or an
    ``OTEL_*`` one that asks for tracing hubspoke cannot do (`hubspoke.tracing.tracer_for`).

    The message names the file or variable, the key at fault and what to write instead.
    """


class ModelSetupError(HubspokeError):
    """A model the run would use cannot be used as set up. Raised before the run starts, so
    nothing is written: an API key that is not set, a server that cannot be reached, or a USD
    budget over a model with no known price.

    Args:
        problems: one sentence each, naming the role, its binding and what to fix (the
            variable to set, the URL to check, the price to give).
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class ToolServerError(HubspokeError):
    """An MCP server whose tools a role card lists cannot be used. Raised before the run starts
    (or goes on, for a resume), so nothing is written: the ``mcp`` extra is not installed, the
    server does not start or does not answer, it lacks a tool a card names, or a tool's argument
    schema is not a valid JSON Schema (`hubspoke.mcp`).

    Args:
        problems: one sentence each, naming the server, the role or tool, and what to fix.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class ExecutorError(HubspokeError):
    """An executor cannot run the workflow's specialists as set up. Raised before the run
    starts, so nothing is written: its engine is not installed (``pip install
    'hubspoke[ray]'``), its cluster's address does not answer, or a specialist or tool cannot be
    sent to where it would run (`hubspoke.executors.ray`). The message names what and how to fix
    it."""


class MCPToolError(HubspokeError):
    """A tool served by an MCP server ran and reported a failure (a result marked ``isError``);
    the message is the text the server gave. Raised to whoever called the tool, as a Python
    tool's own exception is: an agent gets it back as the call's error (`hubspoke.mcp`)."""


class JournalTooNew(HubspokeError):
    """The journal was written by a newer hubspoke whose schema this version cannot read."""


class RunNotFound(HubspokeError):
    """No run with that id is in the journal."""


class RunNotShared(HubspokeError):
    """A joiner (`Foreman.join`, `hubspoke join`) was pointed at a run that does not share its
    items: it was started without ``share`` (docs/scale.md)."""


class NotReplayable(HubspokeError):
    """A run cannot be replayed (`hubspoke.replay`): its model exchanges were recorded without
    their requests and responses (before recording existed, or with recording off), or it is
    of a kind replay does not cover. The message says which and what to do."""


class RunLocked(HubspokeError):
    """Another live process holds the run (it is running or being resumed)."""


class CardNotFound(HubspokeError, LookupError):
    """No card of the board has that id, or the prefix given matches several cards (the
    message lists them: give more of the id)."""


class DecisionRefused(HubspokeError):
    """The board refused a decision; nothing was written. The message says why and what to do:
    a verb the card's column does not take (naming the verbs it takes), a missing `by`, an
    answer's corrected input that does not fit the role's input schema (`errors`).

    Args:
        message: what was refused and what to do instead.
        errors: for content that does not fit its schema, pydantic's errors (each with
            ``loc``, ``msg`` and ``type``); empty otherwise.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.errors: list[dict[str, Any]] = list(errors or [])


class AmendRefused(DecisionRefused):
    """An amended output does not fit the role's output schema, validated strictly; nothing
    was written. `errors` holds each field's error (``loc``, ``msg``, ``type``)."""


class StoreError(HubspokeError):
    """The store refused a write because of what it already holds or how it was opened.

    Nothing of the refused call was written. Errors of the storage itself (a full disk, a lock
    held too long) are the backend's own (e.g. `sqlite3.OperationalError`).
    """


class RunExists(StoreError):
    """`Store.create_run` was given a run id that the store already holds.

    Resume that run (`Foreman.resume`, `hubspoke resume`) or start the new one under another id.
    """


class DuplicateEvent(StoreError):
    """`Store.append` was given an event whose `(run_id, seq)` the journal already holds, or
    two events with the same `(run_id, seq)`: two writers numbered events of one run.

    The whole batch (its events, artifacts, cards and status) was refused.

    Args:
        run_id: the run.
        seq: the sequence number already taken.
        message: what happened and what to do.
    """

    def __init__(self, run_id: str, seq: int, message: str) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.seq = seq


class StoreUnavailable(HubspokeError):
    """The store cannot be opened: its server is unreachable, refused the login, or has no such
    database. The message names the store (a URL without its password) and what to check."""


class JournalReadOnly(StoreError):
    """A store opened read-only (``SQLiteStore(path, read_only=True)``) was asked to write."""


class WorkflowChanged(HubspokeError):
    """A run is resumed with a workflow that differs from the one it started with.

    A resumed run goes on from its journal: the phases, roles and schemas it recorded must be
    the ones it continues with. Limits, prompts and the code of functions may change.

    Args:
        run_id: the run being resumed.
        changes: what changed, one sentence each (see `hubspoke.workflow.shape_changes`).
        verb: what was refused: ``"resume"``, or ``"join"`` (a joiner's workflow is not the
            run's: `Foreman.join`).
    """

    def __init__(self, run_id: str, changes: list[str], *, verb: str = "resume") -> None:
        what = "; ".join(changes)
        super().__init__(
            f"cannot join run {run_id}: this workflow is not the one it runs ({what}). Join it "
            "with the workflow the run started with"
            if verb == "join"
            else f"run {run_id} cannot resume: its workflow changed since it started ({what}). "
            "Resume it with the workflow it started with, or start a new run"
        )
        self.run_id = run_id
        self.changes = changes
        self.verb = verb


class OutputLookupError(HubspokeError, LookupError):
    """A phase's `input` or `over` asked the run view for an output it cannot give: a phase the
    workflow does not have, `output()` of a fan-out phase, or a phase with no accepted output.

    A `LookupError`, so code that caught the run view's lookups before goes on working.
    """


class JournalWriteError(HubspokeError):
    """The store refused a batch of events: the run stops rather than go on unjournaled.

    What was refused stays unwritten; resume the run once the store accepts writes again.
    """


# signals: raised by specialists, caught by the foreman -----------------------------------------


class Signal(HubspokeError):
    """Base of what a specialist raises to answer its work item without an output. The foreman
    turns each into an outcome; none reaches the caller of a run."""


class Retry(Signal):
    """Raised by a function specialist to ask for another attempt with this correction.

    The attempt counts as an invalid output whose correction is `correction`; the next attempt
    receives it as `ctx.correction` (while the role has attempts left).
    """

    def __init__(self, correction: str) -> None:
        super().__init__(correction)
        self.correction = correction


class OutOfScope(Signal):
    """Raised by a specialist when the work item asks for something its card excludes."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NeedsHuman(Signal):
    """Raised by a specialist when only a person can decide how to go on."""

    def __init__(self, question: str) -> None:
        super().__init__(question)
        self.question = question


class ToolRefused(Signal):
    """A specialist called a tool its card does not allow (or tried to reach another role), or
    tried to change its card's tool table."""


class ToolArgumentsError(Signal):
    """The arguments of a tool call failed validation against the tool's argument schema.

    Args:
        tool: the tool's name.
        error: pydantic's validation error, or the errors already listed as pydantic lists
            them (``{"type", "loc", "msg", "input"}`` each: an MCP tool's JSON Schema
            errors); they are kept in `errors`.
    """

    def __init__(self, tool: str, error: ValidationError | list[dict[str, Any]]) -> None:
        if isinstance(error, list):
            errors: list[Any] = error
            shown: list[Any] = error
        else:
            errors = error.errors(include_url=False, include_context=False)
            shown = error.errors(include_url=False)
        super().__init__(f"invalid arguments for tool '{tool}': {shown}")
        self.errors = errors


class ContextError(Signal):
    """A specialist tried to change the runtime through its context: a malformed trace entry, a
    raised limit, spending taken back, an attribute reassigned, or anything after the dispatch
    ended. Recorded in the trace as a `tool.refused` entry (while the dispatch runs)."""


class BudgetExceeded(Signal):
    """Raised inside a dispatch when its allowance cannot cover the next model or tool call."""

    def __init__(self, dimension: str, needed: float, left: float) -> None:
        super().__init__(
            f"{dimension}: needs {needed:g}, {left:g} left in this dispatch's allowance"
        )
        self.dimension = dimension


class InDoubt(Signal):
    """A side-effecting tool call started but its result was never recorded (the process died,
    or the dispatch ended, while the tool ran): it may or may not have taken effect.

    Raised by a tool's `reconcile` function when it cannot tell either, and by the context to
    the specialist when the call is in doubt and nothing could settle it: the call is not run
    again, and the dispatch ends ``needs_human``, so the item escalates to a person (see
    `hubspoke.tools.Tool.from_function`, and "Side effects, exactly once" in docs/concepts.md).

    Args:
        reason: what is in doubt and what a person must check.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
