"""What the foreman's modules share: the wiring (built once per foreman) apart from the state of
one run (built per run), as pydantic-ai keeps run dependencies apart from run state; and how a
run ended (`RunResult`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from hubspoke.budget import Budget, Ledger
from hubspoke.executors.base import Executor
from hubspoke.journal import Journal, RunRecord, RunState, Store
from hubspoke.mcp import ToolServers
from hubspoke.roles import Role
from hubspoke.runview import RunView
from hubspoke.specialists.base import Specialist
from hubspoke.tools import Tool
from hubspoke.workflow import Workflow

from ._sharing import Sharing

__all__ = ["Run", "RunResult", "Wiring"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Wiring:
    """Everything a run needs that does not change while it runs."""

    workflow: Workflow
    store: Store
    executor: Executor
    roles: dict[str, Role]
    ladders: dict[str, tuple[Role, ...]]
    """Each role followed by its fallbacks, in order."""
    specialists: dict[str, Specialist]
    tools: dict[str, dict[str, Tool]]
    timeouts: dict[str, float | None]
    """Each role's `dispatch_timeout`, worked out once."""
    role_names: frozenset[str]
    share: Sharing | None = None
    """How fan-out phases are shared with joiners (`Foreman(share=...)`); None: not shared."""

    def __post_init__(self) -> None:
        named = self.share.phases if self.share is not None else None
        unknown = sorted(named - {p.name for p in self.workflow.phases}) if named else []
        if unknown:
            raise ValueError(
                f"Sharing phases name no phase of workflow {self.workflow.name!r}: "
                f"{', '.join(map(repr, unknown))} (its phases: "
                f"{', '.join(p.name for p in self.workflow.phases)})"
            )

    def cap_reason(self) -> str:
        return f"more than max_escalations={self.workflow.max_escalations} items needed a person"

    def budget_state(self) -> str:
        """How the run ends when its budget runs out: ``exhausted`` or ``aborted``."""
        return "exhausted" if self.workflow.on_budget_exhausted == "finalize" else "aborted"


class Run:
    """Per-run state besides the fold (kept small and acyclic)."""

    __slots__ = (
        "budget",
        "deadline",
        "journal",
        "lease",
        "ledger",
        "record",
        "servers",
        "stop",
        "tools",
        "tools_once",
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
        tools: dict[str, dict[str, Tool]],
        servers: ToolServers | None = None,
    ) -> None:
        self.record = record
        self.journal = journal
        self.ledger = ledger
        self.view = view
        self.budget = budget
        self.lease = lease
        self.tools = tools
        """Each role's tools by name: the wiring's, with MCP tools bound to this run's
        sessions (`servers`)."""
        self.tools_once = frozenset(
            role for role, table in tools.items() if any(t.side_effect for t in table.values())
        )
        """The roles with a side-effecting tool, whose calls are journaled (`Tool.side_effect`)."""
        self.servers = servers
        """This run's MCP sessions, closed when it ends; `None` when no card lists one."""
        self.deadline: float | None = None
        """`time.monotonic()` after which nothing more is dispatched."""
        self.stop: tuple[str, str] | None = None
        """The run's decision to stop, as (status, reason); the first one wins."""

    @property
    def state(self) -> RunState:
        return self.journal.state

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def halt(self, status: str, reason: str) -> None:
        if self.stop is None:
            self.stop = (status, reason)

    def deadline_passed(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def deadline_reason(self) -> str:
        return f"run seconds: the deadline of {self.budget.seconds:g}s has passed"


@dataclass(slots=True)
class RunResult:
    """How a run ended."""

    run_id: str
    status: str
    """completed, failed, escalated, exhausted or aborted."""
    reason: str
    state: RunState = field(repr=False)
    """The fold of the run's journal. Left out of the repr, which would show every item (19 MB
    for a run of 100,000 events): `asyncio.run` of a coroutine that returns the result formats
    it twice on the way out (Python 3.11's `signal.signal` and `getsignal` try the runner's
    SIGINT handler, which holds the main task, as an `enum` value and format the error they
    catch), half a second each at that size."""
    result: Any = None
    """The workflow's `result(...)`, when it has one and the run completed."""

    def summary(self) -> dict[str, Any]:
        return self.state.summary()
