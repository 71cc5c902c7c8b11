"""Function specialists: a function `(input, ctx) -> output` behind the interface.

An `async def` runs on the event loop. A plain `def` runs in a worker thread
(`hubspoke.threads.in_thread`), so blocking code neither stalls the other dispatches nor escapes
its time-out; it calls tools with `ctx.call_tool_sync`. A thread cannot be killed: a sync function
that times out runs on to its end, and what it returns then is discarded (its context is closed,
so it cannot call tools or record anything either).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from hubspoke.budget import BudgetExceeded
from hubspoke.errors import InDoubt, NeedsHuman, OutOfScope, Retry
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.specialists.context import Context, ToolRefused
from hubspoke.specialists.site import REQUEST_SITE, RequestSite
from hubspoke.threads import in_thread
from hubspoke.tools import is_async_callable
from hubspoke.work import WorkItem

__all__ = ["FunctionSpecialist"]

SpecialistFunction = Callable[[Any, Context], Any]
"""`async def f(input, ctx) -> output` or `def f(input, ctx) -> output`."""


class FunctionSpecialist:
    """Runs a function; its return value is validated by the foreman like any output."""

    __slots__ = ("function", "is_async")

    def __init__(self, function: SpecialistFunction) -> None:
        self.function = function
        self.is_async = is_async_callable(function)

    async def dispatch(self, item: WorkItem, ctx: Context) -> Outcome:
        # Where the function's tool calls come from (a replayed side-effecting tool says so).
        REQUEST_SITE.set(
            RequestSite(item.run_id, item.phase, item.role, item.key, item.attempt, None)
        )
        try:
            if self.is_async:
                result = await self.function(item.input, ctx)
            else:
                result = await in_thread(self.function, item.input, ctx)
                if inspect.isawaitable(result):  # a sync callable that hands back a coroutine
                    result = await result
        except Retry as e:
            return Outcome(OutcomeKind.INVALID, message=e.correction)
        except OutOfScope as e:
            return Outcome(OutcomeKind.SCOPE_VIOLATION, message=e.reason)
        except NeedsHuman as e:
            return Outcome(OutcomeKind.NEEDS_HUMAN, message=e.question)
        except InDoubt as e:  # a side-effecting tool call may have run: a person must check
            return Outcome(OutcomeKind.NEEDS_HUMAN, message=e.reason)
        except BudgetExceeded as e:
            return Outcome(OutcomeKind.BUDGET_REFUSED, message=str(e))
        except ToolRefused as e:
            return Outcome(OutcomeKind.FAILED, message=f"refused tool call: {e}")
        except Exception as e:
            return Outcome(OutcomeKind.FAILED, message=f"{type(e).__name__}: {e}")
        if isinstance(result, Outcome):
            return result
        return Outcome(OutcomeKind.OUTPUT, raw=result)
