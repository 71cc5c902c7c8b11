"""Side-effecting tool calls journaled for one dispatch: the context's `ToolJournal`.

The context decides (replay a recorded result, settle a call in doubt, run the tool); this
writes what it decided to the run's journal, durably, and reads back what the run's fold holds
for a key (`RunState.tool_calls`), whatever session or attempt made the call.
"""

from __future__ import annotations

from hubspoke.events import EventKind, ToolFinished, ToolStarted
from hubspoke.journal import Journal, ToolCallState

__all__ = ["ToolLog"]


class ToolLog:
    """The `hubspoke.specialists.context.ToolJournal` of one dispatch."""

    __slots__ = ("attempt", "item", "journal", "phase", "role")

    def __init__(self, journal: Journal, phase: str, role: str, item: str, attempt: int) -> None:
        self.journal = journal
        self.phase = phase
        self.role = role
        self.item = item
        self.attempt = attempt

    def recorded(self, key: str) -> ToolCallState | None:
        return self.journal.state.tool_calls.get(key)

    def started(self, data: ToolStarted) -> None:
        # Durable before the tool runs: a crash inside it leaves the call in doubt, never
        # forgotten (and so never silently run again).
        self.journal.emit(
            EventKind.TOOL_STARTED,
            phase=self.phase,
            role=self.role,
            item=self.item,
            attempt=self.attempt,
            data=data,
        )
        self.journal.checkpoint(force=True)

    def finished(self, data: ToolFinished) -> None:
        # Durable at once: a crash right after still finds the result, not a call in doubt.
        self.journal.emit(
            EventKind.TOOL_FINISHED,
            phase=self.phase,
            role=self.role,
            item=self.item,
            attempt=self.attempt,
            data=data,
        )
        self.journal.checkpoint(force=True)
