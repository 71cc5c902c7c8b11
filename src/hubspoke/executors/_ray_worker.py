"""What runs on the Ray cluster for `RayExecutor`: one dispatch in a worker, and the hub.

A worker rebuilds the dispatch's context with the same limits, tools and keys, runs the
specialist on its own event loop and sends back the outcome, the trace and the usage. What the
foreman must journal *during* the dispatch goes to the foreman through the hub, and the worker
waits for the answer before going on: a model request's announcement (`Context.before_request`:
durable before the request leaves) and a side-effecting tool's `tool.started`, `tool.finished`
and the lookup of a recorded call (`ToolJournal`). Nothing here writes the journal.

The hub is one async actor per `RayExecutor` connection: workers `ask` and wait; the foreman
takes the `questions` in batches and `answer`s them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray
from pydantic import BaseModel

from hubspoke.budget import Allowance
from hubspoke.errors import ContextError, HubspokeError, JournalWriteError, ToolRefused
from hubspoke.events import ModelRequested, ToolFinished, ToolStarted
from hubspoke.journal.state import ToolCallState
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context
from hubspoke.tools import Tool
from hubspoke.work import Brief, WorkItem

__all__ = ["Hub", "Returned", "Shipment", "run_dispatch"]

Reply = tuple[str, Any]
"""``("ok", value)`` or ``(error class name, message)``."""

_RAISED: dict[str, type[Exception]] = {
    "ContextError": ContextError,
    "JournalWriteError": JournalWriteError,
    "ToolRefused": ToolRefused,
}

_CACHE: dict[str, tuple[Specialist, dict[str, Tool], type[BaseModel]]] = {}
"""What this worker process has unpickled, by digest: a worker runs many dispatches of the same
roles, and unpickling a specialist (its schemas, its tools) costs more than the dispatch."""


@dataclass(frozen=True, slots=True)
class Shipment:
    """One dispatch, as sent to a worker."""

    digest: str
    """The digest of the pickled specialist, its tools and its input schema."""
    payload: list[ray.ObjectRef[bytes]]
    """The pickle in the object store, in a list so that Ray does not fetch it for a worker
    that has it already."""
    dispatch: int
    hub: Any
    """The hub's actor handle."""
    run_id: str
    phase: str
    key: str
    role: str
    attempt: int
    correction: str | None
    brief: Brief
    input_json: bytes
    tokens: int | None
    usd: float | None
    tool_calls: int | None
    roles: frozenset[str]
    announce: bool
    """Whether the foreman journals model requests before they leave."""
    journal_tools: bool
    """Whether the foreman journals side-effecting tool calls."""


@dataclass(frozen=True, slots=True)
class Returned:
    """What comes back from a worker: the outcome, the trace and the usage."""

    outcome: Outcome
    trace: list[dict[str, Any]]
    usage: tuple[int, int, int, int, float]
    """Input tokens, output tokens, requests, tool calls, US dollars: exact, not rounded."""
    in_doubt: str | None


def usage_of(allowance: Allowance) -> tuple[int, int, int, int, float]:
    u = allowance.used
    return (u.input_tokens, u.output_tokens, u.requests, u.tool_calls, u.usd)


class _Asker:
    """Asks the foreman, through the hub, and waits for its answer."""

    __slots__ = ("allowance", "dispatch", "hub")

    def __init__(self, hub: Any, dispatch: int, allowance: Allowance) -> None:
        self.hub, self.dispatch, self.allowance = hub, dispatch, allowance

    def ask(self, kind: str, body: Any) -> Any:
        # Blocking is right here: this worker runs this one dispatch, and what comes next (the
        # request, the tool) must not start before the foreman's journal holds the event.
        reply: Reply = ray.get(self.hub.ask.remote(self.dispatch, kind, body))
        status, value = reply
        if status == "ok":
            return value
        raise _RAISED.get(status, HubspokeError)(value)

    def announce(self, requested: ModelRequested) -> None:
        self.ask("request", (dict(requested), usage_of(self.allowance)))

    def recorded(self, key: str) -> ToolCallState | None:
        found: ToolCallState | None = self.ask("tool.recorded", key)
        return found

    def started(self, data: ToolStarted) -> None:
        self.ask("tool.started", dict(data))

    def finished(self, data: ToolFinished) -> None:
        self.ask("tool.finished", dict(data))


def _unpack(shipment: Shipment) -> tuple[Specialist, dict[str, Tool], type[BaseModel]]:
    found = _CACHE.get(shipment.digest)
    if found is None:
        from ray import cloudpickle

        found = cloudpickle.loads(ray.get(shipment.payload[0]))
        _CACHE[shipment.digest] = found
    return found


def run_dispatch(shipment: Shipment) -> Returned:
    """Run one dispatch in this worker; never raises (a specialist's exception is `failed`)."""
    try:
        specialist, tools, schema = _unpack(shipment)
        value = schema.model_validate_json(shipment.input_json)
    except Exception as e:
        outcome = Outcome(
            OutcomeKind.FAILED,
            message=f"the Ray worker could not load the specialist or its input: "
            f"{type(e).__name__}: {e}",
        )
        return Returned(outcome, [], (0, 0, 0, 0, 0.0), None)
    return asyncio.run(_dispatch(shipment, specialist, tools, value))


async def _dispatch(
    shipment: Shipment, specialist: Specialist, tools: Mapping[str, Tool], value: BaseModel
) -> Returned:
    s = shipment
    item = WorkItem(
        run_id=s.run_id,
        phase=s.phase,
        key=s.key,
        role=s.role,
        input=value,
        brief=s.brief,
        attempt=s.attempt,
        correction=s.correction,
    )
    allowance = Allowance(s.tokens, s.usd, s.tool_calls)
    asker = _Asker(s.hub, s.dispatch, allowance)
    ctx = Context(
        s.brief,
        s.attempt,
        s.correction,
        item.idempotency_key,
        allowance,
        tools,
        attempt_key=item.attempt_key,
        _roles=s.roles,
        _announce=asker.announce if s.announce else None,
        _journal_tool=asker if s.journal_tools else None,
    )
    try:
        outcome = await specialist.dispatch(item, ctx)
    except Exception as e:  # a specialist must not raise; if one does, it failed
        outcome = Outcome(OutcomeKind.FAILED, message=f"{type(e).__name__}: {e}")
    except asyncio.CancelledError:
        outcome = Outcome(OutcomeKind.FAILED, message="the specialist raised CancelledError")
    finally:
        ctx.close()
    return Returned(outcome, ctx.traced(), usage_of(allowance), ctx._in_doubt)


class Hub:
    """Where workers ask the foreman and wait for its answer (an async Ray actor).

    A question stays here until it is answered, and `questions` returns those after the last
    one the foreman took: a poll whose result never reached the foreman (its loop ended, its
    await was cancelled) loses nothing, the next poll gets the same questions."""

    def __init__(self) -> None:
        self._pending: dict[int, tuple[int, str, Any]] = {}
        self._arrived = asyncio.Event()
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count()

    async def ask(self, dispatch: int, kind: str, body: Any) -> Reply:
        """A worker's question; returns the foreman's answer."""
        qid = next(self._ids)
        answered: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[qid] = answered
        self._pending[qid] = (dispatch, kind, body)
        # Every poll waiting now wakes: each holds the event it waited on.
        self._arrived.set()
        self._arrived = asyncio.Event()
        try:
            return await answered
        finally:
            self._waiting.pop(qid, None)
            self._pending.pop(qid, None)

    async def questions(self, after: int) -> list[tuple[int, int, str, Any]]:
        """The unanswered questions numbered above `after`, in order, waiting for one."""
        while True:
            batch = [(qid, *asked) for qid, asked in self._pending.items() if qid > after]
            if batch:
                return batch
            await self._arrived.wait()

    async def answer(self, answers: list[tuple[int, Reply]]) -> None:
        """The foreman's answers, by question."""
        for qid, reply in answers:
            self._pending.pop(qid, None)
            waiting = self._waiting.get(qid)
            if waiting is not None and not waiting.done():
                waiting.set_result(reply)
