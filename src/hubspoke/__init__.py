"""hubspoke: a runtime for the foreman (orchestrator-worker) pattern of multi-agent systems.

One foreman receives a goal, dispatches typed work items to narrow specialists, validates every
result against its schema and decides what comes next. See docs/architecture.md.

The public names below import lazily, on first use: `import hubspoke` costs almost nothing, and
pydantic-ai (the model layer) is imported only when a model or an agent specialist is built.
"""

# No `from __future__ import annotations` and private aliases only: this namespace holds the
# public names and nothing else (tests/test_public_api.py checks it).
import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from hubspoke.artifacts import Artifact
    from hubspoke.board import Card, Column
    from hubspoke.budget import Budget, Usage
    from hubspoke.decisions import Board, CardDetail, Decision
    from hubspoke.errors import (
        AmendRefused,
        BindingError,
        BudgetExceeded,
        CardNotFound,
        ConfigError,
        ContextError,
        DecisionRefused,
        DefinitionError,
        DuplicateEvent,
        ExecutorError,
        HubspokeError,
        InDoubt,
        InputError,
        JournalReadOnly,
        JournalTooNew,
        JournalWriteError,
        MCPToolError,
        ModelSetupError,
        NeedsHuman,
        NotReplayable,
        OutOfScope,
        OutputLookupError,
        Retry,
        RunExists,
        RunLocked,
        RunNotFound,
        RunNotShared,
        Signal,
        StoreError,
        StoreUnavailable,
        ToolArgumentsError,
        ToolRefused,
        ToolServerError,
        WorkflowChanged,
    )
    from hubspoke.events import SCHEMA_VERSION, Event, EventKind
    from hubspoke.foreman import Foreman, RunResult
    from hubspoke.journal import RunState, SQLiteStore, open_store
    from hubspoke.journal.postgres import PostgresStore
    from hubspoke.models import Config, OfflineModel
    from hubspoke.outbox import OutboxEntry
    from hubspoke.outcomes import Outcome, OutcomeKind
    from hubspoke.phases import EvaluationRequest, Phase, Strategy, TopK, Verdict
    from hubspoke.plans import Plan, PlanStep
    from hubspoke.roles import Risk, Role
    from hubspoke.router import Route, RouterView
    from hubspoke.runview import ArtifactRef, RunView
    from hubspoke.specialists import Context
    from hubspoke.tools import Tool
    from hubspoke.work import Brief, WorkItem
    from hubspoke.workflow import Workflow

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Artifact": "hubspoke.artifacts",
    "Card": "hubspoke.board",
    "Column": "hubspoke.board",
    "Budget": "hubspoke.budget",
    "Usage": "hubspoke.budget",
    "Board": "hubspoke.decisions",
    "CardDetail": "hubspoke.decisions",
    "Decision": "hubspoke.decisions",
    "AmendRefused": "hubspoke.errors",
    "CardNotFound": "hubspoke.errors",
    "DecisionRefused": "hubspoke.errors",
    "BindingError": "hubspoke.errors",
    "ConfigError": "hubspoke.errors",
    "DefinitionError": "hubspoke.errors",
    "ModelSetupError": "hubspoke.errors",
    "MCPToolError": "hubspoke.errors",
    "HubspokeError": "hubspoke.errors",
    "InputError": "hubspoke.errors",
    "JournalTooNew": "hubspoke.errors",
    "NeedsHuman": "hubspoke.errors",
    "InDoubt": "hubspoke.errors",
    "OutOfScope": "hubspoke.errors",
    "RunLocked": "hubspoke.errors",
    "RunNotFound": "hubspoke.errors",
    "RunNotShared": "hubspoke.errors",
    "NotReplayable": "hubspoke.errors",
    "DuplicateEvent": "hubspoke.errors",
    "ExecutorError": "hubspoke.errors",
    "JournalReadOnly": "hubspoke.errors",
    "RunExists": "hubspoke.errors",
    "StoreError": "hubspoke.errors",
    "StoreUnavailable": "hubspoke.errors",
    "OutputLookupError": "hubspoke.errors",
    "WorkflowChanged": "hubspoke.errors",
    "BudgetExceeded": "hubspoke.errors",
    "JournalWriteError": "hubspoke.errors",
    "Retry": "hubspoke.errors",
    "Signal": "hubspoke.errors",
    "ContextError": "hubspoke.errors",
    "ToolArgumentsError": "hubspoke.errors",
    "ToolRefused": "hubspoke.errors",
    "ToolServerError": "hubspoke.errors",
    "SCHEMA_VERSION": "hubspoke.events",
    "Event": "hubspoke.events",
    "EventKind": "hubspoke.events",
    "Foreman": "hubspoke.foreman",
    "RunResult": "hubspoke.foreman",
    "RunState": "hubspoke.journal",
    "SQLiteStore": "hubspoke.journal",
    "open_store": "hubspoke.journal",
    "PostgresStore": "hubspoke.journal.postgres",
    "Config": "hubspoke.models",
    "OfflineModel": "hubspoke.models",
    "OutboxEntry": "hubspoke.outbox",
    "Outcome": "hubspoke.outcomes",
    "OutcomeKind": "hubspoke.outcomes",
    "EvaluationRequest": "hubspoke.phases",
    "Phase": "hubspoke.phases",
    "Strategy": "hubspoke.phases",
    "TopK": "hubspoke.phases",
    "Verdict": "hubspoke.phases",
    "Plan": "hubspoke.plans",
    "PlanStep": "hubspoke.plans",
    "Risk": "hubspoke.roles",
    "Role": "hubspoke.roles",
    "Route": "hubspoke.router",
    "RouterView": "hubspoke.router",
    "ArtifactRef": "hubspoke.runview",
    "RunView": "hubspoke.runview",
    "Context": "hubspoke.specialists",
    "Tool": "hubspoke.tools",
    "Brief": "hubspoke.work",
    "WorkItem": "hubspoke.work",
    "Workflow": "hubspoke.workflow",
}
"""Each public name and the module that defines it (kept equal to the imports above by a test)."""

__all__ = [
    "SCHEMA_VERSION",
    "AmendRefused",
    "Artifact",
    "ArtifactRef",
    "BindingError",
    "Board",
    "Brief",
    "Budget",
    "BudgetExceeded",
    "Card",
    "CardDetail",
    "CardNotFound",
    "Column",
    "Config",
    "ConfigError",
    "Context",
    "ContextError",
    "Decision",
    "DecisionRefused",
    "DefinitionError",
    "DuplicateEvent",
    "EvaluationRequest",
    "Event",
    "EventKind",
    "ExecutorError",
    "Foreman",
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
    "OfflineModel",
    "OutOfScope",
    "OutboxEntry",
    "Outcome",
    "OutcomeKind",
    "OutputLookupError",
    "Phase",
    "Plan",
    "PlanStep",
    "PostgresStore",
    "Retry",
    "Risk",
    "Role",
    "Route",
    "RouterView",
    "RunExists",
    "RunLocked",
    "RunNotFound",
    "RunNotShared",
    "RunResult",
    "RunState",
    "RunView",
    "SQLiteStore",
    "Signal",
    "StoreError",
    "StoreUnavailable",
    "Strategy",
    "Tool",
    "ToolArgumentsError",
    "ToolRefused",
    "ToolServerError",
    "TopK",
    "Usage",
    "Verdict",
    "WorkItem",
    "Workflow",
    "WorkflowChanged",
    "__version__",
    "open_store",
]


if not _typing.TYPE_CHECKING:
    # Hidden from type checkers: they read the imports above, and a module __getattr__
    # would make them accept any name imported from here.

    def __getattr__(name: str) -> _typing.Any:
        """Import a public name's module on first use and keep the name here (PEP 562).

        Raises:
            AttributeError: `name` is not a public name of hubspoke (nor a submodule).
        """
        module = _EXPORTS.get(name)
        if module is None:
            raise AttributeError(f"module 'hubspoke' has no attribute {name!r}")
        value = getattr(_importlib.import_module(module), name)
        globals()[name] = value
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
