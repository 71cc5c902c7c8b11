"""Role cards: the contract of one specialist.

A card says what a specialist is for, what it does and, written adversarially, what it does
*not* do; the schemas of what it takes and returns; which tools it may call; which model plays
it (or which function implements it); its risk; and its policies (attempts, fallback, budgets,
time-out). The foreman enforces every one of these; none of them is a mere prompt.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel

from hubspoke.budget import Budget
from hubspoke.errors import DefinitionError
from hubspoke.tools import Tool

if TYPE_CHECKING:
    from pydantic_ai.models import Model
    from pydantic_ai.settings import ModelSettings

__all__ = ["AGENT_ANSWERS", "DEFAULT_TIMEOUT", "Delegate", "Risk", "Role"]

DEFAULT_TIMEOUT = 300.0
"""Seconds one attempt of a role may take unless its card says otherwise (`Role.timeout`)."""

_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,62}$")

AGENT_ANSWERS = ("final_result", "refuse", "ask_human")
"""The tools an agent specialist answers with (its output, a refusal, a question for a person):
no tool of an agent's card may have one of these names."""

_PROVIDER_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""The tool names every provider accepts: OpenAI ("a-z, A-Z, 0-9, or contain underscores and
dashes, with a maximum length of 64", API reference, function `name`) and Anthropic (tool use
guide: "Must match the regex `^[a-zA-Z0-9_-]{1,64}$`") refuse the whole request otherwise."""


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_async_callable(function: object) -> bool:
    """`function` returns a coroutine when called: an async function (or a partial or bound
    method of one), or an object whose `__call__` is async."""
    if inspect.iscoroutinefunction(function):
        return True
    if inspect.isfunction(function) or inspect.ismethod(function):
        return False
    return inspect.iscoroutinefunction(inspect.getattr_static(function, "__call__", None))


class Delegate(Protocol):
    """What a card needs of the workflow it delegates to; `hubspoke.Workflow` is one.

    A protocol rather than the class itself keeps role cards (layer 1) free of any import of
    the workflow layer above them; `Workflow.check()` refuses a delegate that is not a Workflow.
    """

    @property
    def name(self) -> str: ...

    @property
    def input(self) -> type[BaseModel]: ...

    def check(self) -> None: ...


class Risk(StrEnum):
    """How much harm a wrong output of the role could do once it leaves the system."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, kw_only=True, eq=False)
class Role:
    """The card of one specialist. Build it once; the foreman reuses it for every dispatch."""

    name: str
    """Unique within a workflow: lower case letters, digits, `_` and `-`."""
    purpose: str
    """One sentence: why this role exists."""
    input: type[BaseModel]
    """Schema of a work item's input; validated before every dispatch."""
    output: type[BaseModel]
    """Schema of the output; validated before any decision. Invalid output is never accepted."""
    does: Sequence[str] = ()
    """What the role does, one duty per entry."""
    does_not: Sequence[str] = ()
    """What the role must refuse, written adversarially ("does not send email", ...)."""
    tools: Sequence[Callable[..., Any] | Tool] = ()
    """The only tools the specialist may call; checked at call time."""
    model: str | Model | None = None
    """Model binding of an agent specialist (`"offline"`, `"openai:gpt-6-luna"`,
    `"openai-compatible:MODEL@http://127.0.0.1:8080/v1"`, ...; see `hubspoke.models.bindings`).
    `None` uses the run's default model. The CLI, the environment and `hubspoke.toml` override
    it (docs/models.md). Only for agents: a card with `function` or `delegate` and a model is
    refused."""
    function: Callable[..., Any] | None = None
    """A function `(input, ctx) -> output` implementing the role instead of an agent. An
    `async def` runs on the event loop; a plain `def` runs in a worker thread, so it may block.
    Any callable works that can be called with those two positional arguments (extra parameters
    need defaults): a bound method, a partial, an object with a `__call__`."""
    risk: Risk = Risk.LOW
    """High-risk roles' outputs cannot leave a review gate without a human decision."""
    max_attempts: int = 3
    """Attempts (the first plus retries with correction) before the fallback is tried."""
    fallback: str | None = None
    """Name of a role with the same input and output schemas to try when this one gives up."""
    budget: Budget | None = None
    """Limits of one dispatch (tokens, usd, tool calls, seconds as its time-out)."""
    run_budget: Budget | None = None
    """Limits of all this role's dispatches in one run."""
    timeout: float | None = DEFAULT_TIMEOUT
    """Seconds one attempt may take (`DEFAULT_TIMEOUT`, 300, unless set); `None` for no limit
    other than the run's deadline. An attempt past its time-out is `timed_out` whatever it
    returns later."""
    max_turns: int = 8
    """Model requests one attempt of an agent specialist may make."""
    max_waits: int = 5
    """Waits for a throttled or unavailable provider (a 429, a 5xx, a dropped connection)
    before the role gives up and the fallback takes over: waiting spends no attempt, so this
    is what bounds it. 0: the first such fault is the role's failure."""
    prompt: str = ""
    """Extra instructions appended to the compiled system prompt of an agent specialist."""
    approve_before_dispatch: bool = False
    """A human gate: each item waits, before this role is first dispatched on it, until a person
    approves it (a card in the review column; `hubspoke card approve`, or skip it). A high-risk
    role needs a gate: this one, or a review gate on its phase."""
    gate_timeout: float | None = None
    """Seconds an item may wait at the gate; past them (checked when the run goes on, e.g. at
    `hubspoke resume`), `on_gate_timeout` applies. `None`: it waits for ever."""
    on_gate_timeout: Literal["park", "skip", "escalate", "abort"] = "escalate"
    """What a gate time-out does: ``escalate`` the item to a person (an escalated card: answer
    it, then approve the gate, to dispatch the item, or skip it); ``park`` its gate card (the
    run no longer waits for the item, and ends without it unless a person approves the card
    while the run still waits for something else); ``skip`` it (its phase no longer needs it);
    or ``abort`` the run. It applies when the run goes on (`hubspoke resume`, or while
    `Foreman.wait_for_people` watches), whether or not anybody decided anything meanwhile."""
    delegate: Delegate | None = None
    """A workflow run by a sub-foreman for each dispatch; see `Workflow.as_role`."""
    model_settings: ModelSettings | None = None
    """Per-request settings of an agent specialist, sent with every model request: pydantic-ai
    `ModelSettings` keys such as ``max_tokens`` (the most one response may use, also the worst
    case the budget reserves for it; 1,024 when unset), ``temperature``, ``top_p``, ``seed``,
    ``stop_sequences`` (`hubspoke.models.settings` lists them). `hubspoke.toml`'s
    ``[models.settings]`` overrides them key by key. Only for agents."""
    compiled_tools: tuple[Tool, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "compiled_tools", tuple(self._compile_tools()))

    def _where(self) -> str:
        return f"role {self.name!r}"

    def _compile_tools(self) -> list[Tool]:
        compiled: list[Tool] = []
        for i, tool in enumerate(self.tools):
            if isinstance(tool, Tool):
                compiled.append(tool)
                continue
            try:
                compiled.append(Tool.from_function(tool))
            except TypeError as e:
                raise DefinitionError(self._where(), f"tools[{i}]", str(e)) from None
        names = [t.name for t in compiled]
        for name in names:
            if names.count(name) > 1:
                raise DefinitionError(self._where(), "tools", f"tool {name!r} is listed twice")
        return compiled

    def check(self) -> None:
        """Refuse a card that cannot work, naming the field at fault.

        Raises:
            DefinitionError: on the first problem found.
        """
        where = self._where()
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise DefinitionError(
                where,
                "name",
                "use 1-63 lower-case letters, digits, '_' or '-', starting with a letter",
            )
        if not self.purpose or not self.purpose.strip():
            raise DefinitionError(where, "purpose", "say in one sentence why the role exists")
        for field_name in ("input", "output"):
            schema = getattr(self, field_name)
            if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
                raise DefinitionError(
                    where, field_name, f"must be a pydantic BaseModel subclass, got {schema!r}"
                )
        for field_name in ("does", "does_not"):
            value = getattr(self, field_name)
            if isinstance(value, str) or not all(isinstance(x, str) for x in value):
                raise DefinitionError(where, field_name, "must be a list of sentences (strings)")
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise DefinitionError(where, "max_attempts", "must be a whole number of at least 1")
        if not isinstance(self.max_turns, int) or self.max_turns < 1:
            raise DefinitionError(where, "max_turns", "must be a whole number of at least 1")
        if (
            not isinstance(self.max_waits, int)
            or isinstance(self.max_waits, bool)
            or self.max_waits < 0
        ):
            raise DefinitionError(where, "max_waits", "must be a whole number of at least 0")
        if self.timeout is not None and not (_is_number(self.timeout) and self.timeout > 0):
            raise DefinitionError(where, "timeout", "must be a positive number of seconds or None")
        if self.model is not None and not isinstance(self.model, str):
            from pydantic_ai.models import Model

            if not isinstance(self.model, Model):
                raise DefinitionError(
                    where,
                    "model",
                    f"must be a binding such as 'offline' or 'openai:gpt-4o-mini', a pydantic-ai "
                    f"Model, or None; got {self.model!r}",
                )
        if self.fallback is not None and not isinstance(self.fallback, str):
            raise DefinitionError(where, "fallback", "must be the name of a role, or None")
        if not isinstance(self.prompt, str):
            raise DefinitionError(where, "prompt", "must be a string")
        if not isinstance(self.risk, Risk):
            raise DefinitionError(where, "risk", "must be Risk.LOW, Risk.MEDIUM or Risk.HIGH")
        if self.function is not None:
            self._check_function(self.function)
        if self.function is not None and self.delegate is not None:
            raise DefinitionError(
                where, "function", "a role has a function or a delegate, not both"
            )
        if self.model is not None and (self.function is not None or self.delegate is not None):
            kind = "function" if self.function is not None else "delegate"
            raise DefinitionError(
                where,
                "model",
                f"a role with a {kind} calls no model of its own: remove model= (or remove "
                f"{kind}= to make the role an agent played by that model)",
            )
        if self.model_settings is not None:
            if not isinstance(self.model_settings, Mapping):
                raise DefinitionError(
                    where, "model_settings", "must be a dict such as {'max_tokens': 800}, or None"
                )
            if self.function is not None or self.delegate is not None:
                kind = "function" if self.function is not None else "delegate"
                raise DefinitionError(
                    where,
                    "model_settings",
                    f"a role with a {kind} calls no model of its own: remove model_settings=",
                )
        if self.fallback == self.name:
            raise DefinitionError(where, "fallback", "a role cannot be its own fallback")
        if not isinstance(self.approve_before_dispatch, bool):
            raise DefinitionError(where, "approve_before_dispatch", "must be True or False")
        if self.gate_timeout is not None and not (
            _is_number(self.gate_timeout) and self.gate_timeout > 0
        ):
            raise DefinitionError(where, "gate_timeout", "must be a positive number of seconds")
        if self.gate_timeout is not None and not self.approve_before_dispatch:
            raise DefinitionError(
                where, "gate_timeout", "times out a human gate: set approve_before_dispatch=True"
            )
        if self.on_gate_timeout not in ("park", "skip", "escalate", "abort"):
            raise DefinitionError(
                where, "on_gate_timeout", "must be 'park', 'skip', 'escalate' or 'abort'"
            )
        if self.function is None and self.delegate is None:
            self._check_agent_tool_names()
        for field_name in ("budget", "run_budget"):
            value = getattr(self, field_name)
            if value is not None and not isinstance(value, Budget):
                raise DefinitionError(where, field_name, "must be a hubspoke.Budget or None")

    def _check_agent_tool_names(self) -> None:
        """Refuse an agent's tool that no provider would take: a name outside
        `_PROVIDER_TOOL_NAME` (every request would be refused with HTTP 400), or the name of an
        answer (the model layer would drop the card's tool for the answer, out of sight)."""
        for tool in self.compiled_tools:
            if tool.name in AGENT_ANSWERS:
                raise DefinitionError(
                    self._where(),
                    "tools",
                    f"tool {tool.name!r} has the name of one of the agent's answers "
                    f"({', '.join(AGENT_ANSWERS)}); {tool.how_to_rename(tool.name + '_')}",
                )
            if not _PROVIDER_TOOL_NAME.match(tool.name):
                suggestion = re.sub(r"[^a-zA-Z0-9_-]", "_", tool.name)[:64] or "tool"
                raise DefinitionError(
                    self._where(),
                    "tools",
                    f"tool {tool.name!r}: model providers take tool names of 1 to 64 letters, "
                    f"digits, '_' or '-' and refuse any other; {tool.how_to_rename(suggestion)}",
                )

    def _check_function(self, function: object) -> None:
        shape = (
            f"`async def f(input: {self.input.__name__}, ctx: Context) -> "
            f"{self.output.__name__}` (or a plain `def`, run in a worker thread)"
        )
        if not callable(function):
            raise DefinitionError(
                self._where(), "function", f"must be a function {shape}; got {function!r}"
            )
        try:
            inspect.signature(function).bind(None, None)
        except ValueError:  # no signature to read (some builtins): called as it is
            return
        except TypeError as e:
            name = getattr(function, "__name__", function)
            raise DefinitionError(
                self._where(),
                "function",
                f"{name!r} cannot be called as f(input, ctx) ({e}): take the input and the "
                f"context as the first two positional parameters, with defaults for any other: "
                f"{shape}",
            ) from None

    @property
    def dispatch_timeout(self) -> float | None:
        """The time-out of one attempt, in seconds: the smaller of `timeout` and
        `budget.seconds`; `None` if neither sets one."""
        limits = [x for x in (self.timeout, self.budget.seconds if self.budget else None) if x]
        return min(limits) if limits else None
