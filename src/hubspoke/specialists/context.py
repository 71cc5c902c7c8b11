"""What a specialist is handed with its work item, and nothing more.

The context carries the brief, the attempt and its correction, the allowance (what is left of
the dispatch's budget), an idempotency key for side effects, and the tools of the card. It has no
handle on the foreman, the journal or other specialists, and a specialist cannot change the
runtime through it:

- `ctx.allowance` is a read-only view (`views.AllowanceView`): its limits cannot be raised, and
  what it has used only grows (a specialist may report spending, never take it back).
- `ctx.tools` is a read-only mapping of the card's tools (`views.ToolTable`): a tool cannot be
  added or removed.
- `ctx.trace` is append-only (`trace.Trace`), and `append` validates every entry (a known
  `kind`, its fields typed, JSON values); a malformed one is refused.
- The context's own attributes cannot be reassigned.

The context makes each part when it is first used. The parts' names (`Trace`, `TRACE_KINDS`,
`ToolTable`, `AllowanceView`, `UsageView`) are importable from here too.

Every refusal is raised to the specialist (`ToolRefused` for tools, `ContextError` otherwise) and
recorded in the trace as a `tool.refused` entry, which the foreman journals. The guarantees hold
for what a specialist does through the context; in-process code that reaches around it (private
attributes, `object.__setattr__`, introspection) is beyond any in-process runtime.

When the dispatch ends (it returned, failed or timed out), the executor closes the context: from
then on it refuses tool calls, trace entries and spending, so a specialist that runs on past its
time-out (a thread cannot be killed) changes nothing the foreman has read.

A side-effecting tool's call (`Tool.side_effect`) is keyed, journaled durably before it runs and
its result after, through the foreman's hook (`ToolJournal`): the same call made again gets the
recorded result, and a call in doubt is settled by the tool's `reconcile` or raises `InDoubt`
(the dispatch then ends ``needs_human``). See "Side effects, exactly once" in docs/concepts.md.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, Protocol

from pydantic_core import from_json, to_json

from hubspoke.budget import Allowance, Budget
from hubspoke.errors import ContextError, InDoubt, ToolRefused
from hubspoke.events import ModelRequested, ToolFinished, ToolStarted
from hubspoke.journal.state import ToolCallState
from hubspoke.specialists.trace import TRACE_KINDS, Trace, refuse_second_init
from hubspoke.specialists.views import AllowanceView, ToolTable, UsageView, tool_name
from hubspoke.tools import DID_NOT_RUN, Tool, ToolArgumentsError
from hubspoke.work import Brief

__all__ = [
    "TRACE_KINDS",
    "AllowanceView",
    "Context",
    "ContextError",
    "InDoubt",
    "ToolJournal",
    "ToolRefused",
    "ToolTable",
    "Trace",
    "UsageView",
]


_ENDED = "the dispatch has ended (it returned, failed or timed out)"


class ToolJournal(Protocol):
    """Where a context journals its side-effecting tool calls: the foreman's (one per
    dispatch, in `hubspoke.foreman._dispatch`), reading and writing the run's journal."""

    def recorded(self, key: str) -> ToolCallState | None:
        """What the run's journal holds for the call with this idempotency key, if anything."""
        ...

    def started(self, data: ToolStarted) -> None:
        """Journal `tool.started`, durably, before returning (the tool runs only then).

        Raises:
            hubspoke.journal.JournalWriteError: it could not be written: the tool must not run.
        """
        ...

    def finished(self, data: ToolFinished) -> None:
        """Journal `tool.finished`, durably."""
        ...


def _as_json(value: Any) -> Any:
    """`value` as JSON values (what the journal records; objects that are not JSON as their
    `str`, NaN and infinities as null)."""
    try:
        return from_json(to_json(value, fallback=str, inf_nan_mode="null"))
    except (ValueError, RecursionError):
        return f"<not JSON: {type(value).__name__}>"


class _Live:
    """What a context holds (its public attributes are read-only properties of these), its own
    state and the foreman's hooks: in one plain object, so that making a context (one per
    dispatch) costs one guarded assignment (`object.__setattr__`), not one per attribute. A
    specialist reaches it only around the context's API, as it could reach any private
    attribute (see the module's docstring)."""

    __slots__ = (
        "allowance",
        "allowance_view",
        "announce",
        "attempt",
        "attempt_key",
        "brief",
        "calls",
        "closed",
        "correction",
        "idempotency_key",
        "in_doubt",
        "journal_tool",
        "keyed",
        "loop",
        "roles",
        "tools",
        "tools_view",
        "trace",
    )

    brief: Brief
    attempt: int
    correction: str | None
    idempotency_key: str
    attempt_key: str

    def __init__(
        self,
        allowance: Allowance,
        tools: Mapping[str, Tool],
        roles: frozenset[str],
        announce: Callable[[ModelRequested], None] | None,
        journal_tool: ToolJournal | None,
    ) -> None:
        self.allowance = allowance
        self.tools = tools
        self.roles = roles
        """The workflow's role names, to say why a call to one is refused."""
        self.announce = announce
        """Journals a model request before it is sent (`before_request`); set by the foreman."""
        self.journal_tool = journal_tool
        """Journals side-effecting tool calls and reads them back; set by the foreman."""
        self.closed = False
        self.in_doubt: str | None = None
        """Why a call of this dispatch is in doubt (`InDoubt` was raised to the specialist):
        the foreman ends the dispatch ``needs_human`` whatever the specialist made of it."""
        self.keyed: dict[str, asyncio.Lock] | None = None
        """One lock per idempotency key called in this dispatch (made when first needed): the
        same call made twice at once runs once, the second reading the first's record."""
        self.calls: set[concurrent.futures.Future[Any]] | None = None
        """Tool calls `call_tool_sync` handed to the loop and still running (made when first
        needed: most dispatches never make one)."""
        # The views are made when first used: most dispatches never look at some of them.
        self.trace: Trace | None = None
        self.tools_view: ToolTable | None = None
        self.allowance_view: AllowanceView | None = None
        try:
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None


class Context:
    """What a specialist gets with its work item. Read-only; see the module's docstring.

    Args:
        brief: the item's brief.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        correction: what was wrong with the previous attempt, if this is a retry.
        idempotency_key: the item's key, the same for every attempt and across crashes
            (``run:item``); side-effecting tools' keys are made from it.
        allowance: the dispatch's allowance; the specialist sees a read-only view of it.
        tools: the card's tools by name.
        attempt_key: this attempt's key (``run:item:role:attempt``); by default
            ``idempotency_key`` followed by ``:attempt``.
        _roles: the workflow's role names, to say why a call to one is refused.
        _announce: what journals a model request before it is sent (the foreman's; without
            one, `before_request` only checks its arguments).
        _journal_tool: what journals side-effecting tool calls and reads them back (the
            foreman's; without one, such tools run every time they are called, unjournaled).
    """

    __slots__ = ("_live",)

    _live: _Live
    """What the context holds, with its own state and the foreman's hooks (see `_Live`)."""

    def __init__(
        self,
        brief: Brief,
        attempt: int,
        correction: str | None,
        idempotency_key: str,
        allowance: Allowance,
        tools: Mapping[str, Tool],
        *,
        attempt_key: str | None = None,
        _roles: frozenset[str] = frozenset(),
        _announce: Callable[[ModelRequested], None] | None = None,
        _journal_tool: ToolJournal | None = None,
    ) -> None:
        refuse_second_init(self, "_live")
        live = _Live(allowance, tools, frozenset(_roles), _announce, _journal_tool)
        live.brief, live.attempt, live.correction = brief, attempt, correction
        live.idempotency_key = idempotency_key
        live.attempt_key = attempt_key or f"{idempotency_key}:{attempt}"
        object.__setattr__(self, "_live", live)

    @property
    def brief(self) -> Brief:
        """The item's brief."""
        return self._live.brief

    @property
    def attempt(self) -> int:
        """1 for the first attempt, 2 for the first retry, ..."""
        return self._live.attempt

    @property
    def correction(self) -> str | None:
        """What was wrong with the previous attempt, if this is a retry."""
        return self._live.correction

    @property
    def idempotency_key(self) -> str:
        """The item's key (``run:item``): the same for every attempt, fallback role and round
        of the item, and across crashes and resumes. Key the item's side effects with it, so
        that they happen once whatever attempt makes them."""
        return self._live.idempotency_key

    @property
    def attempt_key(self) -> str:
        """This attempt's key (``run:item:role:attempt``): the same when a dispatch in flight at
        a crash runs again, different for every other attempt of the item."""
        return self._live.attempt_key

    @property
    def _trace(self) -> Trace:
        live = self._live
        if live.trace is None:
            live.trace = Trace(self)
        return live.trace

    @property
    def _tools(self) -> ToolTable:
        live = self._live
        if live.tools_view is None:
            live.tools_view = ToolTable(self, live.tools)
        return live.tools_view

    @property
    def _allowance(self) -> AllowanceView:
        live = self._live
        if live.allowance_view is None:
            live.allowance_view = AllowanceView(self, live.allowance)
        return live.allowance_view

    @property
    def allowance(self) -> AllowanceView:
        """What this dispatch may spend and has spent; read-only."""
        return self._allowance

    @property
    def tools(self) -> ToolTable:
        """The card's tools by name; read-only."""
        return self._tools

    @property
    def trace(self) -> Trace:
        """Model exchanges, tool calls and refusals so far; append-only, validated."""
        return self._trace

    def traced(self) -> list[dict[str, Any]]:
        """What was traced so far, as fresh dicts (the foreman journals them after the
        dispatch); empty without making the trace when nothing was traced."""
        trace = self._live.trace
        return [] if trace is None else list(trace)

    def _traced_json(self) -> list[tuple[str, bytes]]:
        """What was traced so far, each entry's kind and JSON text (what `traced` parses): the
        foreman journals these without writing them again."""
        trace = self._live.trace
        return [] if trace is None else trace._json()

    @property
    def remaining(self) -> Budget:
        """What is left of this dispatch's budget."""
        return self._allowance.remaining()

    @property
    def closed(self) -> bool:
        """Whether the dispatch has ended: a closed context refuses everything but reading."""
        return self._live.closed

    def close(self) -> None:
        """End the dispatch: from now on tool calls, trace entries and spending are refused,
        and tool calls a sync specialist started (`call_tool_sync`) are cancelled. The executor
        calls it when the dispatch returns, fails or times out."""
        live = self._live
        live.closed = True
        for future in list(live.calls or ()):
            future.cancel()

    def before_request(
        self,
        *,
        turn: int,
        worst_tokens: int,
        worst_usd: float,
        input_tokens: int,
        endpoint: str,
        model: str | None = None,
        provider: str | None = None,
    ) -> None:
        """Say that a model request which leaves the process is about to be sent: the foreman
        journals it, durably, before this returns (`model.requested`). If the process dies
        while the request is in flight, a resume charges its worst case, since the provider may
        have billed it. Agent specialists call it; a custom specialist that calls a paid API
        itself should too.

        Args:
            turn: the request's turn within the attempt, from 0.
            worst_tokens: the most it may cost in tokens (prompt estimate + maximum output).
            worst_usd: the same in US dollars.
            input_tokens: the prompt's estimate, in tokens.
            endpoint: where it goes (a base URL or a provider's name).
            model: the model asked for (``gpt-4o-mini``), if known.
            provider: who serves it (pydantic-ai's name: ``openai``, ``anthropic``), if known.

        Raises:
            ContextError: a value of the wrong type or negative, or the dispatch has ended.
            hubspoke.journal.JournalWriteError: the journal could not be written (the request
                must then not be sent).
        """
        self._check_open()
        for name, value in (
            ("turn", turn),
            ("worst_tokens", worst_tokens),
            ("input_tokens", input_tokens),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                self._refuse("before_request", f"{name} must be a whole number >= 0")
        if not isinstance(worst_usd, int | float) or not 0 <= worst_usd < float("inf"):
            self._refuse("before_request", "worst_usd must be a finite number >= 0")
        if not isinstance(endpoint, str):
            self._refuse("before_request", "endpoint must be a string")
        for name, text in (("model", model), ("provider", provider)):
            if text is not None and not isinstance(text, str):
                self._refuse("before_request", f"{name} must be a string or None")
        announce = self._live.announce
        if announce is not None:
            requested: ModelRequested = {
                "turn": turn,
                "worst_tokens": worst_tokens,
                "worst_usd": float(worst_usd),
                "input_tokens": min(input_tokens, worst_tokens),
                "endpoint": endpoint[:500],
                # Read from the dispatch's own tally, not from the specialist.
                "spent": self._live.allowance.used.to_dict(),
            }
            if model is not None:
                requested["model"] = model[:500]
            if provider is not None:
                requested["provider"] = provider[:500]
            announce(requested)

    def __setattr__(self, name: str, value: object) -> None:
        self._refuse(f"ctx.{name}", f"the context is read-only: ctx.{name} cannot be set")

    def __delattr__(self, name: str) -> None:
        self._refuse(f"ctx.{name}", f"the context is read-only: ctx.{name} cannot be deleted")

    def _check_open(self) -> None:
        if self._live.closed:
            raise ContextError(f"{_ENDED}: the context accepts nothing more")

    def _refuse(self, what: str, reason: str, error: type[Exception] = ContextError) -> NoReturn:
        """Record a refused attempt in the trace (while the dispatch runs) and raise it."""
        if not self._live.closed:
            self._trace._add({"kind": "tool.refused", "tool": what, "reason": reason})
        raise error(reason)

    def _allowed(self) -> str:
        return self._tools._allowed()

    def refuse_tool(self, name: str) -> str:
        """Record a refused call and return the reason given back to the caller."""
        if not isinstance(name, str):
            reason = f"a tool is called by its name (a string), got {type(name).__name__}"
        elif name in self._live.roles:
            reason = (
                f"'{name}' is another role: specialists never call each other; "
                "return your output and the foreman routes the work"
            )
        else:
            reason = f"tool '{name}' is not on this role's card (allowed: {self._allowed()})"
        if not self._live.closed:
            self._trace._add({"kind": "tool.refused", "tool": tool_name(name), "reason": reason})
        return reason

    async def call_tool(self, name: str, /, **arguments: Any) -> Any:
        """Call a tool of the card by name, checked, counted and traced.

        Raises:
            ToolRefused: the tool is not on the card, or the dispatch has ended.
            hubspoke.budget.BudgetExceeded: the allowance has no tool call left.
            hubspoke.tools.ToolArgumentsError: the arguments do not validate.
        """
        return await self.call_tool_raw(name, arguments)

    async def call_tool_raw(self, name: str, arguments: dict[str, Any] | str) -> Any:
        """`call_tool` with the arguments as an object or as JSON text (a model's raw call).

        The allow-list and the allowance are checked, and the call counted, before the tool
        runs; its trace entry keeps the place of the call's start, so calls made concurrently
        are recorded in the order they were made. A call the dispatch's end cuts short is
        recorded with an `error` saying so.
        """
        if self._live.closed:
            raise ToolRefused(f"{_ENDED}: no more tool calls")
        tool = self._tools._tools.get(name) if isinstance(name, str) else None
        if tool is None:
            raise ToolRefused(self.refuse_tool(name))
        allowance = self._allowance._allowance
        allowance.check_tool_call()
        allowance.used.tool_calls += 1
        if tool.side_effect:
            return await self._call_once(tool, arguments)
        # A copy, made as the call starts: what the tool is given is what is recorded, however
        # the caller changes its own dict while the call runs.
        recorded: Any
        try:
            recorded = from_json(to_json(arguments, fallback=str, inf_nan_mode="null"))
        except (ValueError, RecursionError):
            recorded = f"<not JSON: {type(arguments).__name__}>"
        entry: dict[str, Any] = {"kind": "tool.called", "tool": name, "arguments": recorded}
        position = self._trace._add(
            {**entry, "error": "unfinished: the dispatch ended before the tool returned"}
        )
        started = time.perf_counter()
        try:
            result = await tool.call(arguments)
        except ToolArgumentsError as e:
            # Counted as a call (it was made), journaled with why it never ran.
            self._trace._replace(position, {**entry, "error": str(e)})
            raise
        except Exception as e:
            self._trace._replace(position, {**entry, "error": repr(e)})
            raise
        self._trace._replace(
            position, {**entry, "seconds": round(time.perf_counter() - started, 6)}
        )
        return result

    async def _call_once(self, tool: Tool, arguments: dict[str, Any] | str) -> Any:
        """A side-effecting tool's call: keyed, and run at most once per key (see
        `Tool.from_function`). Bad arguments are traced like any call's; the tool never runs.

        Raises:
            InDoubt: the call is in doubt and its `reconcile` (if any) could not settle it, or
                the tool raised it: the tool is not run.
        """
        try:
            validated = tool.validate(arguments)
        except ToolArgumentsError as e:
            self._trace._add(
                {
                    "kind": "tool.called",
                    "tool": tool.name,
                    "arguments": _as_json(arguments),
                    "error": str(e),
                }
            )
            raise
        key = tool.key(self.idempotency_key, validated)
        live = self._live
        locks = live.keyed
        if locks is None:
            locks = live.keyed = {}
        lock = locks.get(key)
        if lock is None:
            lock = locks[key] = asyncio.Lock()
        async with lock:
            return await self._run_once(tool, validated, key)

    async def _run_once(self, tool: Tool, validated: Any, key: str) -> Any:
        """What `_call_once` does once it holds the key: replay a recorded result, settle a
        call in doubt, or run the tool between its durable `tool.started` and `tool.finished`."""
        log = self._live.journal_tool
        arguments: dict[str, Any] = validated.model_dump(mode="json")
        record = log.recorded(key) if log is not None else None
        if record is not None and record.done:
            self._trace._add(
                {
                    "kind": "tool.called",
                    "tool": tool.name,
                    "arguments": arguments,
                    "replayed": True,
                    "key": key,
                }
            )
            return tool.decode(record.result)
        started: ToolStarted = {"key": key, "tool": tool.name, "arguments": arguments}
        if record is not None and record.in_doubt:
            try:
                found = await tool.settle(key, arguments)
            except InDoubt as e:
                self._live.in_doubt = e.reason
                raise
            if found is not DID_NOT_RUN:
                assert log is not None  # a record came from it
                log.finished(
                    {"key": key, "tool": tool.name, "result": _as_json(found), "reconciled": True}
                )
                return found
            started["reconciled"] = True
        if self._live.closed:  # ended while the call waited for its key or its reconcile
            raise ToolRefused(f"{_ENDED}: no more tool calls")
        if log is not None:
            log.started(started)  # durable before the tool runs; if it cannot be, it does not
        began = time.perf_counter()
        try:
            result = await tool.run(validated, key)
        except InDoubt as e:
            # The tool itself cannot tell whether it took effect: the call stays in doubt.
            self._live.in_doubt = e.reason
            raise
        except Exception as e:
            if log is not None:
                log.finished(
                    {
                        "key": key,
                        "tool": tool.name,
                        "error": repr(e),
                        "seconds": round(time.perf_counter() - began, 6),
                    }
                )
            raise
        # A cancellation or a kill (BaseException) records nothing: the call is in doubt.
        if log is not None:
            log.finished(
                {
                    "key": key,
                    "tool": tool.name,
                    "result": _as_json(result),
                    "seconds": round(time.perf_counter() - began, 6),
                }
            )
        return result

    def call_tool_sync(self, name: str, /, **arguments: Any) -> Any:
        """`call_tool` for a sync function specialist, which runs in a worker thread: the call
        runs on the event loop (checked, counted and traced the same way) and this thread
        waits for its result.

        Raises:
            RuntimeError: called on the event loop's own thread (use `await ctx.call_tool`).
            ToolRefused, BudgetExceeded, ToolArgumentsError: as `call_tool`.
        """
        live = self._live
        loop = live.loop
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is not None:
            raise RuntimeError(
                "call_tool_sync is for sync function specialists, in their worker thread; "
                "in async code use `await ctx.call_tool(...)`"
            )
        call = self.call_tool_raw(name, arguments)
        try:
            future = asyncio.run_coroutine_threadsafe(call, loop)
        except RuntimeError:  # the loop has closed: the run is over
            call.close()
            raise ToolRefused(f"{_ENDED}: no more tool calls") from None
        # The call runs as a task of the loop, outside the dispatch's own task: `close` cancels
        # it, so that a dispatch's end (a time-out) also ends the tool calls it started.
        pending = live.calls
        if pending is None:
            pending = live.calls = set()
        pending.add(future)
        future.add_done_callback(pending.discard)
        if live.closed:  # closed while the call was being handed over
            future.cancel()
        return future.result()
