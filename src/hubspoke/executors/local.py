"""The default executor: specialists run as coroutines on the foreman's event loop."""

from __future__ import annotations

import asyncio

from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context
from hubspoke.work import WorkItem

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """Runs a dispatch in-process, with its time-out; never raises."""

    async def execute(
        self, specialist: Specialist, item: WorkItem, ctx: Context, timeout: float | None
    ) -> Outcome:
        try:
            if timeout is None:
                return await specialist.dispatch(item, ctx)
            async with asyncio.timeout(timeout):
                return await specialist.dispatch(item, ctx)
        except TimeoutError:
            return Outcome(OutcomeKind.TIMED_OUT, message=f"no result within {timeout:g}s")
        except Exception as e:  # a specialist must not raise; if one does, it is a failure
            return Outcome(OutcomeKind.FAILED, message=f"{type(e).__name__}: {e}")
