"""What a specialist is handed with its work item, and nothing more.

The context carries the brief, the attempt and its correction, the allowance (what is left of
the dispatch's budget), an idempotency key for side effects, and the tools of the card. It has no
handle on the foreman, the journal or other specialists, and a specialist cannot change the
runtime through it:

- `ctx.allowance` is a read-only view: its limits cannot be raised, and what it has used only
  grows (a specialist may report spending, never take it back).
- `ctx.tools` is a read-only mapping of the card's tools: a tool cannot be added or removed.
- `ctx.trace` is append-only, and `append` validates every entry (a known `kind`, its fields
  typed, JSON values); a malformed one is refused.
- The context's own attributes cannot be reassigned.

Every refusal is raised to the specialist (`ToolRefused` for tools, `ContextError` otherwise) and
recorded in the trace as a `tool.refused` entry, which the foreman journals. The guarantees hold
for what a specialist does through the context; in-process code that reaches around it (private
attributes, `object.__setattr__`, introspection) is beyond any in-process runtime.

When the dispatch ends (it returned, failed or timed out), the executor closes the context: from
then on it refuses tool calls, trace entries and spending, so a specialist that runs on past its
time-out (a thread cannot be killed) changes nothing the foreman has read.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn, overload

from pydantic_core import to_json

from hubspoke.budget import Allowance, Budget, Usage
from hubspoke.errors import ContextError, ToolRefused
from hubspoke.jsontext import parse
from hubspoke.tools import Tool, ToolArgumentsError
from hubspoke.work import Brief

__all__ = [
    "TRACE_KINDS",
    "AllowanceView",
    "Context",
    "ContextError",
    "ToolRefused",
    "ToolTable",
    "Trace",
    "UsageView",
]


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_seconds(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def _is_text(value: object) -> bool:
    return isinstance(value, str)


def _is_name(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _is_names(value: object) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(x, str) for x in value)


def _is_object(value: object) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)


def _anything(value: object) -> bool:
    return True


_Field = tuple[Callable[[object], bool], str]
_COUNT: _Field = (_is_count, "a whole number of at least 0")
_SECONDS: _Field = (_is_seconds, "a finite number of seconds, at least 0")
_TEXT: _Field = (_is_text, "a string")
_NAME: _Field = (_is_name, "a non-empty string")

# kind -> (required fields, optional fields); other keys are kept if their values are JSON.
_SCHEMAS: dict[str, tuple[dict[str, _Field], dict[str, _Field]]] = {
    "model.exchange": (
        {"turn": _COUNT},
        {
            "input_tokens": _COUNT,
            "output_tokens": _COUNT,
            "seconds": _SECONDS,
            "calls": (_is_names, "a list of tool names (strings)"),
            "error": _TEXT,
        },
    ),
    "tool.called": (
        {"tool": _NAME},
        {"arguments": (_anything, "JSON"), "seconds": _SECONDS, "error": _TEXT},
    ),
    "tool.refused": ({"tool": _NAME, "reason": _TEXT}, {}),
    "child.started": (
        {"child_run": _NAME},
        {"budget": (_is_object, "an object of limits")},
    ),
}

TRACE_KINDS = frozenset(_SCHEMAS)
"""The kinds of trace entry, each journaled as the event of the same name."""

# kind -> (required field names, every known field's check): worked out once.
_CHECKS = {
    kind: (tuple(required), {**required, **optional})
    for kind, (required, optional) in _SCHEMAS.items()
}


def _malformed(entry: object) -> str | None:
    """Why `entry` cannot go in a trace, or None if it can (JSON values are checked apart)."""
    if not isinstance(entry, Mapping):
        return f"a trace entry is a dict, got {type(entry).__name__}"
    kind = entry.get("kind")
    checks = _CHECKS.get(kind) if isinstance(kind, str) else None
    if checks is None:
        return f"'kind' must be one of {', '.join(sorted(_SCHEMAS))}; got {kind!r:.80}"
    required, fields = checks
    for name in required:
        if name not in entry:
            return f"a {kind} entry needs '{name}' ({fields[name][1]})"
    for name, value in entry.items():
        if not isinstance(name, str):
            return "a trace entry's keys are strings"
        check = fields.get(name)
        if check is not None and not check[0](value):
            return f"'{name}' of a {kind} entry must be {check[1]}; got {value!r:.80}"
    return None


def _encode(entry: Mapping[str, Any]) -> bytes:
    """`entry` as JSON: a copy the specialist can no longer change. Raises ValueError (or
    RecursionError) if it cannot be written: a cycle, invalid UTF-8, too deep."""
    return to_json(entry, fallback=str)


_ENDED = "the dispatch has ended (it returned, failed or timed out)"


class Trace(Sequence[dict[str, Any]]):
    """The dispatch's record of model exchanges, tool calls and refusals, in the order they
    happened: append-only, every entry validated, read back as fresh dicts.

    Reading (`for entry in ctx.trace`, `ctx.trace[i]`, `len(ctx.trace)`) gives copies: each
    entry is a dict with a `"kind"` in `TRACE_KINDS` and that kind's fields, JSON values only.
    """

    __slots__ = ("_ctx", "_entries")

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._entries: list[bytes] = []

    def append(self, entry: Mapping[str, Any]) -> None:
        """Add an entry: a dict with `"kind"` (one of `TRACE_KINDS`) and that kind's fields:

        - `model.exchange`: `turn` (int ≥ 0); optional `input_tokens`, `output_tokens` (int ≥ 0),
          `seconds` (number ≥ 0), `calls` (list of str), `error` (str).
        - `tool.called`: `tool` (non-empty str); optional `arguments` (JSON), `seconds`, `error`.
        - `tool.refused`: `tool` (non-empty str), `reason` (str).
        - `child.started`: `child_run` (non-empty str); optional `budget` (object).

        Other keys are kept. Every value must be JSON-serialisable (non-JSON objects are written
        as their `str`).

        Raises:
            ContextError: the entry is malformed (recorded as a `tool.refused` entry), or the
                dispatch has ended.
        """
        ctx = self._ctx
        ctx._check_open()
        problem = _malformed(entry)
        encoded = b""
        if problem is None:
            try:
                encoded = _encode(dict(entry))  # an object, whatever Mapping it came as
            except (ValueError, RecursionError) as e:
                problem = f"a trace entry's values are JSON; this one cannot be written ({e})"
        if problem is not None:
            ctx._refuse(
                "ctx.trace.append",
                f"malformed trace entry refused: {problem}. Append a dict such as "
                "{'kind': 'tool.called', 'tool': 'lookup', 'arguments': {...}}",
            )
        self._entries.append(encoded)

    def _add(self, entry: Mapping[str, Any]) -> int:
        """Record an entry the runtime made (trusted fields); returns its position."""
        self._entries.append(_encode(entry))
        return len(self._entries) - 1

    def _replace(self, position: int, entry: Mapping[str, Any]) -> None:
        """Complete an entry recorded when its call started, keeping its place in the order."""
        if not self._ctx._closed:
            self._entries[position] = _encode(entry)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [parse(e) for e in self._entries[index]]
        entry: dict[str, Any] = parse(self._entries[index])
        return entry

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for encoded in self._entries:
            entry: dict[str, Any] = parse(encoded)
            yield entry

    def __setitem__(self, index: object, value: object) -> NoReturn:
        self._ctx._refuse("ctx.trace", "the trace is append-only: entries cannot be replaced")

    def __delitem__(self, index: object) -> NoReturn:
        self._ctx._refuse("ctx.trace", "the trace is append-only: entries cannot be deleted")

    def __repr__(self) -> str:
        return f"Trace({list(self)!r})"


class ToolTable(Mapping[str, Tool]):
    """The card's tools by name, read-only: a specialist cannot add, replace or remove one."""

    __slots__ = ("_ctx", "_tools")

    def __init__(self, ctx: Context, tools: Mapping[str, Tool]) -> None:
        self._ctx = ctx
        self._tools = tools

    def __getitem__(self, name: str) -> Tool:
        return self._tools[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tools)

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __setitem__(self, name: str, value: object) -> NoReturn:
        self._ctx._refuse(
            _tool_name(name),
            f"the tool table is read-only: a specialist cannot add tool {name!r:.80}; "
            f"its tools are the card's ({self._ctx._allowed()})",
            ToolRefused,
        )

    def __delitem__(self, name: str) -> NoReturn:
        self._ctx._refuse(
            _tool_name(name), "the tool table is read-only: a tool cannot be removed", ToolRefused
        )

    def __repr__(self) -> str:
        return f"ToolTable({sorted(self._tools)!r})"


def _tool_name(name: object) -> str:
    return name if isinstance(name, str) else repr(name)[:80]


_SPENDING = ("input_tokens", "output_tokens", "requests", "tool_calls", "usd")


class UsageView:
    """What the dispatch has spent so far. It only grows: a specialist may add what it spent
    (`ctx.allowance.used.usd += cost`), never lower a count."""

    __slots__ = ("_ctx", "_usage")
    _ctx: Context
    _usage: Usage

    def __init__(self, ctx: Context, usage: Usage) -> None:
        object.__setattr__(self, "_ctx", ctx)
        object.__setattr__(self, "_usage", usage)

    def _grow(self, name: str, value: object) -> None:
        ctx = self._ctx
        ctx._check_open()
        current = getattr(self._usage, name)
        if name == "usd":
            fits = _is_seconds(value)  # a finite number, at least 0
            what = "a finite number of US dollars"
        else:
            fits = _is_count(value)
            what = "a whole number"
        if not fits:
            ctx._refuse("ctx.allowance.used", f"used.{name} must be {what}; got {value!r:.80}")
        assert isinstance(value, int | float)
        if value < current:
            ctx._refuse(
                "ctx.allowance.used",
                f"spending only grows: used.{name} is {current:g} and cannot go down to {value:g}",
            )
        setattr(self._usage, name, value)

    def add(
        self,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        requests: int = 0,
        tool_calls: int = 0,
        usd: float = 0.0,
    ) -> None:
        """Add what was spent: whole numbers of tokens, requests and tool calls, a finite
        number of US dollars, none of them negative.

        Raises:
            ContextError: an amount is negative or not a number (recorded), or the dispatch
                has ended.
        """
        ctx = self._ctx
        ctx._check_open()
        counts = (input_tokens, output_tokens, requests, tool_calls)
        if not (all(_is_count(n) for n in counts) and _is_seconds(usd)):
            ctx._refuse(
                "ctx.allowance.used",
                "used.add takes whole numbers of tokens, requests and tool calls and a finite "
                f"number of US dollars, none negative; got {(*counts, usd)!r}",
            )
        usage = self._usage
        usage.input_tokens += input_tokens
        usage.output_tokens += output_tokens
        usage.requests += requests
        usage.tool_calls += tool_calls
        usage.usd += usd

    @property
    def input_tokens(self) -> int:
        return self._usage.input_tokens

    @input_tokens.setter
    def input_tokens(self, value: int) -> None:
        self._grow("input_tokens", value)

    @property
    def output_tokens(self) -> int:
        return self._usage.output_tokens

    @output_tokens.setter
    def output_tokens(self, value: int) -> None:
        self._grow("output_tokens", value)

    @property
    def requests(self) -> int:
        return self._usage.requests

    @requests.setter
    def requests(self, value: int) -> None:
        self._grow("requests", value)

    @property
    def tool_calls(self) -> int:
        return self._usage.tool_calls

    @tool_calls.setter
    def tool_calls(self, value: int) -> None:
        self._grow("tool_calls", value)

    @property
    def usd(self) -> float:
        return self._usage.usd

    @usd.setter
    def usd(self, value: float) -> None:
        self._grow("usd", value)

    @property
    def tokens(self) -> int:
        """Input plus output tokens."""
        return self._usage.tokens

    def __setattr__(self, name: str, value: object) -> None:
        if name not in _SPENDING:
            self._ctx._refuse("ctx.allowance.used", f"used.{name} cannot be set")
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        spent = ", ".join(f"{n}={getattr(self._usage, n)!r}" for n in _SPENDING)
        return f"UsageView({spent})"


class AllowanceView:
    """What one dispatch may spend, read-only: the limits (`tokens`, `usd`, `tool_calls`, `None`
    for no limit), what is `used` and what `remaining()`. A specialist cannot raise a limit."""

    __slots__ = ("_allowance", "_ctx")
    _allowance: Allowance
    _ctx: Context

    def __init__(self, ctx: Context, allowance: Allowance) -> None:
        object.__setattr__(self, "_ctx", ctx)
        object.__setattr__(self, "_allowance", allowance)

    @property
    def tokens(self) -> int | None:
        return self._allowance.tokens

    @property
    def usd(self) -> float | None:
        return self._allowance.usd

    @property
    def tool_calls(self) -> int | None:
        return self._allowance.tool_calls

    @property
    def used(self) -> UsageView:
        """What the dispatch has spent so far (it only grows)."""
        return UsageView(self._ctx, self._allowance.used)

    def remaining(self) -> Budget:
        """What is left: tokens, usd and tool calls (`None` where there is no limit)."""
        return self._allowance.remaining()

    def check_request(self, tokens: int, usd: float) -> None:
        """Raise `BudgetExceeded` unless a model request of this worst case still fits."""
        self._allowance.check_request(tokens, usd)

    def check_tool_call(self) -> None:
        """Raise `BudgetExceeded` unless one more tool call fits."""
        self._allowance.check_tool_call()

    def __setattr__(self, name: str, value: object) -> None:
        self._ctx._refuse(
            "ctx.allowance",
            f"the allowance is read-only: {name} cannot be set (the foreman sizes each "
            "dispatch's budget)",
        )

    def __repr__(self) -> str:
        a = self._allowance
        return f"AllowanceView(tokens={a.tokens}, usd={a.usd}, tool_calls={a.tool_calls})"


class Context:
    """What a specialist gets with its work item. Read-only; see the module's docstring.

    Args:
        brief: the item's brief.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        correction: what was wrong with the previous attempt, if this is a retry.
        idempotency_key: stable for this item and attempt across crashes.
        allowance: the dispatch's allowance; the specialist sees a read-only view of it.
        tools: the card's tools by name.
        _roles: the workflow's role names, to say why a call to one is refused.
    """

    __slots__ = (
        "_allowance_given",
        "_allowance_view",
        "_closed",
        "_loop",
        "_roles",
        "_tools_given",
        "_tools_view",
        "_trace_made",
        "attempt",
        "brief",
        "correction",
        "idempotency_key",
    )

    _allowance_given: Allowance
    _allowance_view: AllowanceView | None
    _closed: bool
    _loop: asyncio.AbstractEventLoop | None
    _roles: frozenset[str]
    _tools_given: Mapping[str, Tool]
    _tools_view: ToolTable | None
    _trace_made: Trace | None
    brief: Brief
    attempt: int
    correction: str | None
    """What was wrong with the previous attempt, if this is a retry."""
    idempotency_key: str
    """Stable for this item and attempt across crashes: key side effects with it."""

    def __init__(
        self,
        brief: Brief,
        attempt: int,
        correction: str | None,
        idempotency_key: str,
        allowance: Allowance,
        tools: Mapping[str, Tool],
        *,
        _roles: frozenset[str] = frozenset(),
    ) -> None:
        init = object.__setattr__
        init(self, "brief", brief)
        init(self, "attempt", attempt)
        init(self, "correction", correction)
        init(self, "idempotency_key", idempotency_key)
        init(self, "_roles", frozenset(_roles))
        init(self, "_closed", False)
        # The views are made when first used: most dispatches never look at some of them, and
        # a context is made for every dispatch.
        init(self, "_trace_made", None)
        init(self, "_tools_given", tools)
        init(self, "_tools_view", None)
        init(self, "_allowance_given", allowance)
        init(self, "_allowance_view", None)
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        init(self, "_loop", loop)

    @property
    def _trace(self) -> Trace:
        trace = self._trace_made
        if trace is None:
            trace = Trace(self)
            object.__setattr__(self, "_trace_made", trace)
        return trace

    @property
    def _tools(self) -> ToolTable:
        view = self._tools_view
        if view is None:
            view = ToolTable(self, self._tools_given)
            object.__setattr__(self, "_tools_view", view)
        return view

    @property
    def _allowance(self) -> AllowanceView:
        view = self._allowance_view
        if view is None:
            view = AllowanceView(self, self._allowance_given)
            object.__setattr__(self, "_allowance_view", view)
        return view

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
        trace = self._trace_made
        return [] if trace is None else list(trace)

    @property
    def remaining(self) -> Budget:
        """What is left of this dispatch's budget."""
        return self._allowance.remaining()

    @property
    def closed(self) -> bool:
        """Whether the dispatch has ended: a closed context refuses everything but reading."""
        return self._closed

    def close(self) -> None:
        """End the dispatch: from now on tool calls, trace entries and spending are refused.
        The executor calls it when the dispatch returns, fails or times out."""
        object.__setattr__(self, "_closed", True)

    def __setattr__(self, name: str, value: object) -> None:
        self._refuse(f"ctx.{name}", f"the context is read-only: ctx.{name} cannot be set")

    def __delattr__(self, name: str) -> None:
        self._refuse(f"ctx.{name}", f"the context is read-only: ctx.{name} cannot be deleted")

    def _check_open(self) -> None:
        if self._closed:
            raise ContextError(f"{_ENDED}: the context accepts nothing more")

    def _refuse(self, what: str, reason: str, error: type[Exception] = ContextError) -> NoReturn:
        """Record a refused attempt in the trace (while the dispatch runs) and raise it."""
        if not self._closed:
            self._trace._add({"kind": "tool.refused", "tool": what, "reason": reason})
        raise error(reason)

    def _allowed(self) -> str:
        return ", ".join(sorted(self._tools)) or "none"

    def refuse_tool(self, name: str) -> str:
        """Record a refused call and return the reason given back to the caller."""
        if not isinstance(name, str):
            reason = f"a tool is called by its name (a string), got {type(name).__name__}"
        elif name in self._roles:
            reason = (
                f"'{name}' is another role: specialists never call each other; "
                "return your output and the foreman routes the work"
            )
        else:
            reason = f"tool '{name}' is not on this role's card (allowed: {self._allowed()})"
        if not self._closed:
            self._trace._add({"kind": "tool.refused", "tool": _tool_name(name), "reason": reason})
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
        if self._closed:
            raise ToolRefused(f"{_ENDED}: no more tool calls")
        tool = self._tools._tools.get(name) if isinstance(name, str) else None
        if tool is None:
            raise ToolRefused(self.refuse_tool(name))
        allowance = self._allowance._allowance
        allowance.check_tool_call()
        allowance.used.tool_calls += 1
        entry: dict[str, Any] = {"kind": "tool.called", "tool": name, "arguments": arguments}
        try:
            to_json(arguments, fallback=str)
        except (ValueError, RecursionError):
            entry["arguments"] = f"<not JSON: {type(arguments).__name__}>"
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

    def call_tool_sync(self, name: str, /, **arguments: Any) -> Any:
        """`call_tool` for a sync function specialist, which runs in a worker thread: the call
        runs on the event loop (checked, counted and traced the same way) and this thread
        waits for its result.

        Raises:
            RuntimeError: called on the event loop's own thread (use `await ctx.call_tool`).
            ToolRefused, BudgetExceeded, ToolArgumentsError: as `call_tool`.
        """
        loop = self._loop
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
        return future.result()
