"""hubspoke: a runtime for the foreman (orchestrator-worker) pattern of multi-agent systems.

One foreman receives a goal, dispatches typed work items to narrow specialists, validates every
result against its schema and decides what comes next. See docs/architecture.md.
"""

from hubspoke.artifacts import Artifact
from hubspoke.board import Card, Column
from hubspoke.budget import Budget, Usage
from hubspoke.errors import (
    DefinitionError,
    HubspokeError,
    InputError,
    JournalTooNew,
    NeedsHuman,
    OutOfScope,
    OutputLookupError,
    RunLocked,
    RunNotFound,
    WorkflowChanged,
)
from hubspoke.events import SCHEMA_VERSION, Event, EventKind
from hubspoke.foreman import Foreman, RunResult
from hubspoke.journal import RunState, SQLiteStore
from hubspoke.models import OfflineModel
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.roles import Risk, Role
from hubspoke.specialists import Context
from hubspoke.tools import Tool
from hubspoke.work import Brief, WorkItem
from hubspoke.workflow import (
    ArtifactRef,
    EvaluationRequest,
    Phase,
    RunView,
    Strategy,
    TopK,
    Verdict,
    Workflow,
)

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "Artifact",
    "ArtifactRef",
    "Brief",
    "Budget",
    "Card",
    "Column",
    "Context",
    "DefinitionError",
    "EvaluationRequest",
    "Event",
    "EventKind",
    "Foreman",
    "HubspokeError",
    "InputError",
    "JournalTooNew",
    "NeedsHuman",
    "OfflineModel",
    "OutOfScope",
    "Outcome",
    "OutcomeKind",
    "OutputLookupError",
    "Phase",
    "Risk",
    "Role",
    "RunLocked",
    "RunNotFound",
    "RunResult",
    "RunState",
    "RunView",
    "SQLiteStore",
    "Strategy",
    "Tool",
    "TopK",
    "Usage",
    "Verdict",
    "WorkItem",
    "Workflow",
    "WorkflowChanged",
    "__version__",
]
