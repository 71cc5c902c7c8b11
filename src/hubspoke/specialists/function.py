"""Function specialists: an async function `(input, ctx) -> output` behind the interface."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from hubspoke.budget import BudgetExceeded
from hubspoke.errors import NeedsHuman, OutOfScope
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.specialists.context import Context, ToolRefused
from hubspoke.work import WorkItem

__all__ = ["FunctionSpecialist"]

SpecialistFunction = Callable[[Any, Context], Awaitable[Any]]


class FunctionSpecialist:
    """Runs a function; its return value is validated by the foreman like any output."""

    __slots__ = ("function",)

    def __init__(self, function: SpecialistFunction) -> None:
        self.function = function

    async def dispatch(self, item: WorkItem, ctx: Context) -> Outcome:
        try:
            result = await self.function(item.input, ctx)
        except OutOfScope as e:
            return Outcome(OutcomeKind.SCOPE_VIOLATION, message=e.reason)
        except NeedsHuman as e:
            return Outcome(OutcomeKind.NEEDS_HUMAN, message=e.question)
        except BudgetExceeded as e:
            return Outcome(OutcomeKind.BUDGET_REFUSED, message=str(e))
        except ToolRefused as e:
            return Outcome(OutcomeKind.FAILED, message=f"refused tool call: {e}")
        except Exception as e:
            return Outcome(OutcomeKind.FAILED, message=f"{type(e).__name__}: {e}")
        if isinstance(result, Outcome):
            return result
        return Outcome(OutcomeKind.OUTPUT, raw=result)
