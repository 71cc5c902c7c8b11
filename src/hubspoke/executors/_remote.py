"""A dispatch run in another process, whatever carries it there (Ray's tasks, the pool's pipes).

Both sides of it, shared by `RayExecutor` and `PoolExecutor`:

- the worker's side: a `Shipment` (one dispatch, as sent), the specialist unpickled once per
  process (`unpack`), the dispatch run with a copy of its context (`run_shipment`), whose
  journaling goes to the foreman as questions (`Asker`: a model request's announcement, durable
  before the request leaves, and a side-effecting tool's `tool.started`, `tool.finished` and
  the lookup of a recorded call), and what comes back (`Returned`: the outcome, the trace and
  the usage);
- the foreman's side: the specialists checked and pickled once per role (`Packs`, which refuses
  what cannot leave the process), the dispatches in flight and the questions their workers ask
  answered on their contexts (`Relay`), and what came back checked and added to the context as
  after a local dispatch (`Relay.settle`).

A transport only moves `Shipment`s, questions, answers and `Returned`s; nothing here writes the
journal but through the foreman's context.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import sys
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, fields
from typing import Any

from pydantic import BaseModel

from hubspoke.budget import Allowance
from hubspoke.errors import (
    ContextError,
    ExecutorError,
    HubspokeError,
    JournalWriteError,
    ToolRefused,
)
from hubspoke.events import ModelRequested, ToolFinished, ToolStarted
from hubspoke.executors.local import _raised_cancelled
from hubspoke.journal.state import ToolCallState
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.roles import Role
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context
from hubspoke.tools import Tool
from hubspoke.work import Brief, WorkItem

__all__ = [
    "FILE_MODULES",
    "Asker",
    "Loaded",
    "Packed",
    "Packs",
    "Relay",
    "Reply",
    "Returned",
    "Shipment",
    "run_shipment",
    "unpack",
]

FILE_MODULES = "_hubspoke_workflow_"
"""The prefix of the modules `hubspoke.loader` loads from files (``FILE.py:NAME``): each
transport loads them in its workers too (the pool by their path, Ray by value)."""

Reply = tuple[str, Any]
"""``("ok", value)`` or ``(error class name, message)``."""

Usage = tuple[int, int, int, int, float]
"""Input tokens, output tokens, requests, tool calls, US dollars: exact, not rounded."""

Loaded = tuple[Specialist, dict[str, Tool], type[BaseModel]]
"""A role's specialist, its tools by name and its input schema, as a worker unpickled them."""

Ask = Callable[[int, str, Any], Reply]
"""A transport's way to ask the foreman (dispatch number, kind, body) and wait for its reply."""

AskLater = Callable[[int, str, Any], "concurrent.futures.Future[Reply]"]
"""A transport's way to ask without waiting: the reply comes in the future returned."""

_RAISED: dict[str, type[Exception]] = {
    "ContextError": ContextError,
    "JournalWriteError": JournalWriteError,
    "ToolRefused": ToolRefused,
}

_CACHE: dict[str, Loaded] = {}
"""What this worker process has unpickled, by digest: a worker runs many dispatches of the same
roles, and unpickling a specialist (its schemas, its tools) costs more than the dispatch."""

_NOTHING: Usage = (0, 0, 0, 0, 0.0)


# the worker's side ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Shipment:
    """One dispatch, as sent to a worker (the specialist travels apart, by its digest)."""

    digest: str
    """The digest of the pickled specialist, its tools and its input schema."""
    dispatch: int
    """The dispatch's number on the foreman's side: its questions are asked by it."""
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

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Pickled as its values in order: a frozen dataclass's own way looks its fields up
        # again for every object, which costs more than the rest of the dispatch's message.
        values = tuple(getattr(self, name) for name in _SHIPMENT)
        return _shipment, (*values[:_BRIEF], self.brief.to_dict(), *values[_BRIEF + 1 :])

    @classmethod
    def of(cls, digest: str, dispatch: int, item: WorkItem, ctx: Context) -> Shipment:
        """The shipment of `item`'s dispatch, with `ctx`'s limits, roles and hooks."""
        allowance = ctx.allowance
        return cls(
            digest=digest,
            dispatch=dispatch,
            run_id=item.run_id,
            phase=item.phase,
            key=item.key,
            role=item.role,
            attempt=item.attempt,
            correction=item.correction,
            brief=item.brief,
            input_json=item.input.model_dump_json().encode(),
            tokens=allowance.tokens,
            usd=allowance.usd,
            tool_calls=allowance.tool_calls,
            roles=ctx._live.roles,
            announce=ctx._live.announce is not None,
            journal_tools=ctx._live.journal_tool is not None,
        )


@dataclass(frozen=True, slots=True)
class Returned:
    """What comes back from a worker: the outcome, the trace and the usage."""

    outcome: Outcome
    trace: list[dict[str, Any]]
    usage: Usage
    in_doubt: str | None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # As `Shipment.__reduce__`: values in order, the outcome's that a specialist sets.
        o = self.outcome
        if not isinstance(o, Outcome):
            return Returned, (o, self.trace, self.usage, self.in_doubt)
        outcome = (o.kind.value, o.raw, o.errors, o.message, o.wait)
        return _returned, (outcome, self.trace, self.usage, self.in_doubt)


_SHIPMENT = tuple(f.name for f in fields(Shipment))
"""`Shipment`'s fields in order, as it pickles them."""
_BRIEF = _SHIPMENT.index("brief")
"""Where the brief is among them: pickled as a dict (`Brief.to_dict`)."""


def _shipment(*values: Any) -> Shipment:
    brief = Brief(**values[_BRIEF])
    return Shipment(*values[:_BRIEF], brief, *values[_BRIEF + 1 :])  # type: ignore[call-arg]


def _returned(
    outcome: tuple[str, Any, list[dict[str, Any]], str, float | None],
    trace: list[dict[str, Any]],
    usage: Usage,
    in_doubt: str | None,
) -> Returned:
    kind, raw, errors, message, wait = outcome
    made = Outcome(OutcomeKind(kind), raw, None, errors, message, wait=wait)
    return Returned(made, trace, usage, in_doubt)


def usage_of(allowance: Allowance) -> Usage:
    u = allowance.used
    return (u.input_tokens, u.output_tokens, u.requests, u.tool_calls, u.usd)


def failed(message: str) -> Returned:
    """A dispatch that could not run in the worker."""
    return Returned(Outcome(OutcomeKind.FAILED, message=message), [], _NOTHING, None)


class Asker:
    """A worker's copy of the foreman's hooks: asks the foreman and waits for its answer, so
    that what comes next (the request, the tool) starts only once the journal holds the event.

    With `later` (a transport that runs many dispatches on one event loop), an agent's
    announcement does not block the loop: it is sent with the loop tick's other messages, and
    the agent's model waits for its answer before the request leaves (`cleared`)."""

    __slots__ = ("allowance", "dispatch", "later", "pending", "send")

    def __init__(
        self, send: Ask, dispatch: int, allowance: Allowance, later: AskLater | None = None
    ) -> None:
        self.send, self.dispatch, self.allowance, self.later = send, dispatch, allowance, later
        self.pending: list[concurrent.futures.Future[Reply]] = []

    def ask(self, kind: str, body: Any) -> Any:
        return _answered(self.send(self.dispatch, kind, body))

    def announce(self, requested: ModelRequested) -> None:
        body = (dict(requested), usage_of(self.allowance))
        if self.later is None:
            self.ask("request", body)
        else:
            self.pending.append(self.later(self.dispatch, "request", body))

    async def cleared(self) -> None:
        """Wait until the foreman has journaled every announcement made so far.

        Raises:
            ContextError, JournalWriteError, HubspokeError: the foreman could not: the request
                must not leave.
        """
        while self.pending:
            _answered(await asyncio.wrap_future(self.pending.pop(0)))

    def recorded(self, key: str) -> ToolCallState | None:
        found: ToolCallState | None = self.ask("tool.recorded", key)
        return found

    def started(self, data: ToolStarted) -> None:
        self.ask("tool.started", dict(data))

    def finished(self, data: ToolFinished) -> None:
        self.ask("tool.finished", dict(data))


def _answered(reply: Reply) -> Any:
    status, value = reply
    if status == "ok":
        return value
    raise _RAISED.get(status, HubspokeError)(value)


_ASKER: ContextVar[Asker | None] = ContextVar("hubspoke_asker", default=None)
"""The asker of the dispatch this task runs (each dispatch is a task of its own)."""


class _AnnouncedFirst:
    """An agent's model in a worker whose announcements do not block (`Asker.later`): a request
    leaves only once the foreman has journaled its ``model.requested``."""

    __slots__ = ("wrapped",)

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        asker = _ASKER.get()
        if asker is not None:
            await asker.cleared()
        return await self.wrapped.request(*args, **kwargs)


def _waits_for_clearance(specialist: Specialist) -> bool:
    """Whether `specialist` is an agent, its model made to wait for its announcements (once:
    the specialist is this process's, cached)."""
    agent = sys.modules.get("hubspoke.specialists.agent")  # no agent was unpickled without it
    if agent is None or not isinstance(specialist, agent.AgentSpecialist):
        return False
    if not isinstance(specialist.model, _AnnouncedFirst):
        specialist.model = _AnnouncedFirst(specialist.model)
    return True


def unpack(digest: str, fetch: Callable[[], bytes], loads: Callable[[bytes], Any]) -> Loaded:
    """The specialist, tools and input schema pickled under `digest`: unpickled (`loads`) from
    what `fetch` gives the first time, from this process's cache after."""
    found = _CACHE.get(digest)
    if found is None:
        found = _CACHE[digest] = loads(fetch())
    return found


async def run_shipment(
    shipment: Shipment, loaded: Loaded, send: Ask, later: AskLater | None = None
) -> Returned:
    """Run one dispatch in this worker with a copy of its context; never raises but when it is
    cancelled (a specialist's exception, `SystemExit` and `KeyboardInterrupt` included, or its
    input that does not load, is `failed`). With `later`, an agent's
    announcements do not block (`Asker`)."""
    s = shipment
    specialist, tools, schema = loaded
    try:
        value = schema.model_validate_json(s.input_json)
    except Exception as e:
        return failed(f"the worker could not load the input: {type(e).__name__}: {e}")
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
    asker = Asker(send, s.dispatch, allowance, later if _waits_for_clearance(specialist) else None)
    _ASKER.set(asker)  # this dispatch's task's own context
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
        outcome = _raised_cancelled()
    except (SystemExit, KeyboardInterrupt) as e:
        # Its process runs other dispatches: this one fails, as a sync specialist's does when
        # it raises these in its thread (`threads.in_thread`); the process goes on.
        outcome = Outcome(OutcomeKind.FAILED, message=f"the specialist raised {_raised(e)}")
    finally:
        ctx.close()
    return Returned(outcome, ctx.traced(), usage_of(allowance), ctx._live.in_doubt)


def _raised(e: BaseException) -> str:
    said = str(e)
    return f"{type(e).__name__}: {said}" if said else type(e).__name__


# the foreman's side --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Packed:
    digest: str
    pickled: bytes
    keep: tuple[object, ...]
    """What the key's ids belong to, kept alive so that an id is not reused."""


class Packs:
    """Each role's specialist, with its tools and input schema, pickled once by `dumps`.

    Args:
        dumps: the transport's pickler (Ray's cloudpickle; the standard library's for the pool).
        where: where the specialists go, for errors (``"a Ray worker"``).
        hint: what to do about a specialist that does not pickle, for its error.
    """

    __slots__ = ("_dumps", "_hint", "_packed", "_where")

    def __init__(self, dumps: Callable[[object], bytes], where: str, hint: str) -> None:
        self._dumps, self._where, self._hint = dumps, where, hint
        self._packed: dict[tuple[int, ...], Packed] = {}

    def prepare(self, specialists: Mapping[str, Specialist], roles: Mapping[str, Role]) -> None:
        """Check that every role's specialist can run in a worker, and pickle it once (an
        ``in_process`` one, a sub-foreman, stays in the foreman's process).

        Raises:
            ExecutorError: a role's tools come from an MCP server, or its specialist cannot
                be pickled; the message names the role.
        """
        for name, specialist in specialists.items():
            if getattr(specialist, "in_process", False):
                continue
            role = roles[name]
            served = [t.name for t in role.compiled_tools if t.listed_per_run]
            if served:
                raise ExecutorError(
                    f"role {name!r} calls tools of an MCP server ({', '.join(served)}), whose "
                    f"session lives in the foreman's process: it cannot run in {self._where} "
                    "yet; run this workflow with the local executor"
                )
            self.pack(name, specialist, {t.name: t for t in role.compiled_tools}, role.input)

    def pack(
        self, role: str, specialist: Specialist, tools: Mapping[str, Tool], schema: type[BaseModel]
    ) -> Packed:
        """The role's pickle, made once per (specialist, schema, tools).

        Raises:
            ExecutorError: it does not pickle; the message names the role.
        """
        key = (id(specialist), id(schema), *map(id, tools.values()))
        packed = self._packed.get(key)
        if packed is not None:
            return packed
        try:
            pickled = self._dumps((specialist, dict(tools), schema))
        except Exception as e:
            raise ExecutorError(
                f"role {role!r}'s specialist cannot be sent to {self._where}: it does not pickle "
                f"({type(e).__name__}: {e}); {self._hint}, or run this workflow with the local "
                "executor"
            ) from None
        digest = hashlib.blake2b(pickled, digest_size=16).hexdigest()
        packed = self._packed[key] = Packed(digest, pickled, (specialist, schema, *tools.values()))
        return packed


@dataclass(slots=True)
class Open:
    """A dispatch in flight: its context, and what its worker said it spent."""

    ctx: Context
    worst: tuple[int, int, float] | None = None
    """The latest announced request's input estimate, worst tokens and worst USD."""


class Relay:
    """The foreman's side of the dispatches in flight in workers: their contexts by number, the
    questions their workers ask answered on them, and what comes back settled."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open: dict[int, Open] = {}

    def answer(self, dispatch: int, kind: str, body: Any) -> Reply:
        """Do what a worker asks for, on the foreman's side of the dispatch's context."""
        state = self.open.get(dispatch)
        if state is None or state.ctx.closed:
            return ("ContextError", "the dispatch has ended (it returned, failed or timed out)")
        ctx = state.ctx
        try:
            if kind == "request":
                requested, spent = body
                _add_usage(ctx, spent)  # what it spent before this request, for `spent`
                state.worst = (
                    requested["input_tokens"],
                    requested["worst_tokens"],
                    requested["worst_usd"],
                )
                ctx.before_request(
                    turn=requested["turn"],
                    worst_tokens=requested["worst_tokens"],
                    worst_usd=requested["worst_usd"],
                    input_tokens=requested["input_tokens"],
                    endpoint=requested["endpoint"],
                    model=requested.get("model"),
                    provider=requested.get("provider"),
                )
                return ("ok", None)
            log = ctx._live.journal_tool
            if log is None:
                return ("ContextError", "this dispatch journals no tool calls")
            if kind == "tool.recorded":
                return ("ok", log.recorded(body))
            if kind == "tool.started":
                log.started(body)
                return ("ok", None)
            if kind == "tool.finished":
                log.finished(body)
                return ("ok", None)
            return ("ContextError", f"unknown question {kind!r}")
        except (ContextError, HubspokeError) as e:
            return (type(e).__name__, str(e))
        except Exception as e:
            return ("HubspokeError", f"{type(e).__name__}: {e}")

    @staticmethod
    def settle(ctx: Context, returned: Returned) -> Outcome:
        """What a worker sent back, checked: its usage added to `ctx`'s allowance, its trace
        appended to `ctx` (validated again: the worker is not trusted), a call it left in
        doubt made ``needs_human`` as `_dispatch` does with a local context's."""
        try:
            _add_usage(ctx, returned.usage)
            for entry in returned.trace:
                ctx.trace.append(entry)
        except ContextError as e:  # refused and traced as `tool.refused`: the dispatch failed
            return Outcome(OutcomeKind.FAILED, message=f"the worker sent back {e}")
        outcome = returned.outcome
        if not isinstance(outcome, Outcome):
            return Outcome(OutcomeKind.FAILED, message="the worker sent back no outcome")
        if returned.in_doubt is not None and outcome.kind is not OutcomeKind.NEEDS_HUMAN:
            outcome = Outcome(OutcomeKind.NEEDS_HUMAN, message=returned.in_doubt)
        return outcome

    @staticmethod
    def charge_lost(state: Open) -> None:
        """A dispatch whose tally died with its worker (killed, timed out): charge what it
        reported before its last model request, which the foreman added then, plus that
        request's worst case, as a resume charges a request in flight at a crash."""
        if state.worst is None or state.ctx.closed:
            return
        inp, worst, usd = state.worst
        state.ctx.allowance.used.add(
            input_tokens=inp, output_tokens=max(0, worst - inp), requests=1, usd=usd
        )


def _add_usage(ctx: Context, usage: Usage) -> None:
    """Bring the foreman's tally of the dispatch up to what its worker counted."""
    used = ctx.allowance.used
    inp, out, requests, calls, usd = usage
    used.add(
        input_tokens=max(0, inp - used.input_tokens),
        output_tokens=max(0, out - used.output_tokens),
        requests=max(0, requests - used.requests),
        tool_calls=max(0, calls - used.tool_calls),
        usd=max(0.0, usd - used.usd),
    )
