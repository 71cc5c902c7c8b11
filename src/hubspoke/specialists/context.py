"""What a specialist is handed with its work item, and nothing more.

The context carries the brief, the attempt and its correction, the allowance (remaining
budget, to draw from), an idempotency key for side effects, and the tools of the card. It has
no handle on the foreman, the journal or other specialists: calls to anything not on the card
are refused and recorded in the trace that the foreman journals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from hubspoke.budget import Allowance, Budget, BudgetExceeded
from hubspoke.events import TraceEntry
from hubspoke.tools import Tool, ToolArgumentsError
from hubspoke.work import Brief

__all__ = ["Context", "ToolRefused"]


class ToolRefused(Exception):
    """A specialist called a tool its card does not allow (or tried to reach another role)."""


@dataclass(slots=True)
class Context:
    brief: Brief
    attempt: int
    correction: str | None
    """What was wrong with the previous attempt, if this is a retry."""
    idempotency_key: str
    """Stable for this item and attempt across crashes: key side effects with it."""
    allowance: Allowance
    tools: dict[str, Tool]
    trace: list[TraceEntry] = field(default_factory=list)
    """What the specialist did (model exchanges, tool calls and refusals, child runs), journaled
    by the foreman after the dispatch as events of each entry's `kind`."""
    _roles: frozenset[str] = frozenset()

    @property
    def remaining(self) -> Budget:
        """What is left of this dispatch's budget."""
        return self.allowance.remaining()

    def refuse_tool(self, name: str) -> str:
        """Record a refused call and return the reason given back to the caller."""
        if name in self._roles:
            reason = (
                f"'{name}' is another role: specialists never call each other; "
                "return your output and the foreman routes the work"
            )
        else:
            allowed = ", ".join(sorted(self.tools)) or "none"
            reason = f"tool '{name}' is not on this role's card (allowed: {allowed})"
        self.trace.append({"kind": "tool.refused", "tool": name, "reason": reason})
        return reason

    async def call_tool(self, name: str, /, **arguments: Any) -> Any:
        """Call a tool of the card by name, checked, counted and traced.

        Raises:
            ToolRefused: the tool is not on the card.
            hubspoke.budget.BudgetExceeded: the allowance has no tool call left.
            hubspoke.tools.ToolArgumentsError: the arguments do not validate.
        """
        return await self.call_tool_raw(name, arguments)

    async def call_tool_raw(self, name: str, arguments: dict[str, Any] | str) -> Any:
        tool = self.tools.get(name)
        if tool is None:
            raise ToolRefused(self.refuse_tool(name))
        self.allowance.check_tool_call()
        self.allowance.used.tool_calls += 1
        started = time.perf_counter()
        try:
            result = await tool.call(arguments)
        except ToolArgumentsError as e:
            # Counted as a call (it was made), journaled with why it never ran.
            self.trace.append(
                {"kind": "tool.called", "tool": name, "arguments": arguments, "error": str(e)}
            )
            raise
        except BudgetExceeded:
            raise
        except Exception as e:
            self.trace.append(
                {"kind": "tool.called", "tool": name, "arguments": arguments, "error": repr(e)}
            )
            raise
        self.trace.append(
            {
                "kind": "tool.called",
                "tool": name,
                "arguments": arguments,
                "seconds": round(time.perf_counter() - started, 6),
            }
        )
        return result
