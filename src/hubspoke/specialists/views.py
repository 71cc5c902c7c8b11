"""The read-only views a specialist is handed of its tools and its allowance.

- `ToolTable`: the card's tools by name; a tool cannot be added, replaced or removed.
- `AllowanceView`: what the dispatch may spend; a limit cannot be raised.
- `UsageView`: what the dispatch has spent; it only grows (a specialist may report spending,
  never take it back).

Every attempt to change what a view forbids is refused through the context that holds it
(`trace.Owner`): traced as a `tool.refused` entry, then raised (`ToolRefused` for the tool table,
`ContextError` otherwise).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import NoReturn

from hubspoke.budget import Allowance, Budget, Usage
from hubspoke.errors import ToolRefused
from hubspoke.specialists.trace import Owner, is_count, is_seconds, refuse_second_init
from hubspoke.tools import Tool

__all__ = ["AllowanceView", "ToolTable", "UsageView"]


class ToolTable(Mapping[str, Tool]):
    """The card's tools by name, read-only: a specialist cannot add, replace or remove one."""

    __slots__ = ("_ctx", "_tools")
    _ctx: Owner
    _tools: Mapping[str, Tool]

    def __init__(self, ctx: Owner, tools: Mapping[str, Tool]) -> None:
        refuse_second_init(self, "_ctx")
        object.__setattr__(self, "_ctx", ctx)
        # A read-only proxy: the foreman's own table of the role's tools stays out of reach.
        object.__setattr__(self, "_tools", MappingProxyType(dict(tools)))

    def __setattr__(self, name: str, value: object) -> None:
        self._ctx._refuse("ctx.tools", f"the tool table is read-only: {name} cannot be set")

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
            tool_name(name),
            f"the tool table is read-only: a specialist cannot add tool {name!r:.80}; "
            f"its tools are the card's ({self._allowed()})",
            ToolRefused,
        )

    def __delitem__(self, name: str) -> NoReturn:
        self._ctx._refuse(
            tool_name(name), "the tool table is read-only: a tool cannot be removed", ToolRefused
        )

    def __repr__(self) -> str:
        return f"ToolTable({sorted(self._tools)!r})"

    def _allowed(self) -> str:
        """The tools' names, to say which calls a card allows."""
        return ", ".join(sorted(self._tools)) or "none"


def tool_name(name: object) -> str:
    """A tool's name as given, or a short repr of what was given instead of a name."""
    return name if isinstance(name, str) else repr(name)[:80]


_SPENDING = ("input_tokens", "output_tokens", "requests", "tool_calls", "usd")


class UsageView:
    """What the dispatch has spent so far. It only grows: a specialist may add what it spent
    (`ctx.allowance.used.usd += cost`), never lower a count."""

    __slots__ = ("_ctx", "_usage")
    _ctx: Owner
    _usage: Usage

    def __init__(self, ctx: Owner, usage: Usage) -> None:
        refuse_second_init(self, "_ctx")
        object.__setattr__(self, "_ctx", ctx)
        object.__setattr__(self, "_usage", usage)

    def _grow(self, name: str, value: object) -> None:
        ctx = self._ctx
        ctx._check_open()
        current = getattr(self._usage, name)
        if name == "usd":
            fits = is_seconds(value)  # a finite number, at least 0
            what = "a finite number of US dollars"
        else:
            fits = is_count(value)
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
        if not (all(is_count(n) for n in counts) and is_seconds(usd)):
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
    _ctx: Owner

    def __init__(self, ctx: Owner, allowance: Allowance) -> None:
        refuse_second_init(self, "_ctx")
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
