"""Tools: plain Python functions a role card allows its specialist to call.

A tool's arguments are described by a pydantic model built once from the function's signature,
so calls from a model are validated before the function ever runs. An async tool runs on the
event loop; a sync one runs in a worker thread (`hubspoke.threads.in_thread`), so blocking code
in a tool neither stalls other dispatches nor escapes its dispatch's time-out.

A tool that changes the world (charges a card, sends a message) is declared side-effecting,
``Tool.from_function(charge, side_effect=True, reconcile=...)``: each of its calls has a stable
idempotency key, is journaled durably before it runs and its result after, and runs at most once
per key; a call that started but whose result was never recorded is *in doubt*, and its
`reconcile` function (or a person) decides. See `Tool.from_function` and "Side effects, exactly
once" in docs/concepts.md.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, get_type_hints

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model

from hubspoke.errors import InDoubt, ToolArgumentsError
from hubspoke.threads import in_thread

__all__ = [
    "DID_NOT_RUN",
    "KEY_PARAMETER",
    "InDoubt",
    "Reconcile",
    "Tool",
    "ToolArgumentsError",
    "is_async_callable",
]

KEY_PARAMETER: Final = "idempotency_key"
"""The parameter through which a side-effecting tool receives its call's idempotency key: the
runtime fills it in, and it is not part of the arguments a caller (or a model) gives."""


class _DidNotRun:
    """The type of `DID_NOT_RUN`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DID_NOT_RUN"


DID_NOT_RUN: Final = _DidNotRun()
"""What a `reconcile` function returns when the call in doubt did not take effect: the tool
then runs (once, with the same idempotency key)."""

Reconcile = Callable[[str, dict[str, Any]], Any]
"""``reconcile(key, arguments) -> result``, sync or async: settles a call in doubt. It looks the
effect up (by the key, which the tool passed on to the service it called) and returns the
call's result if it took effect, `DID_NOT_RUN` if it did not, or raises `InDoubt` if it cannot
tell. `arguments` are the call's validated arguments, as JSON values by name."""


def is_async_callable(function: Callable[..., Any]) -> bool:
    """Whether calling `function` gives a coroutine: an `async def`, a partial of one, or an
    object whose `__call__` is one."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - the method, not callability
    )


@dataclass(frozen=True, slots=True)
class Tool:
    """A callable a specialist may use, with its validated argument schema.

    Build one with `Tool.from_function`; a role card also takes plain functions (ordinary
    tools). A side-effecting tool (`side_effect`) runs at most once per idempotency key: see
    `from_function`.
    """

    listed_per_run: ClassVar[bool] = False
    """Its description and schema are known only once a run has started (an MCP server's tool,
    `hubspoke.mcp.MCPTool`): what is offered to a model is read from the run's tool table."""

    name: str
    function: Callable[..., Any]
    description: str
    arguments: type[BaseModel]
    is_async: bool
    """Runs on the event loop if true; otherwise in a worker thread."""
    side_effect: bool = False
    """Its calls change the world: each is keyed, journaled before and after it runs, and runs
    at most once per key."""
    reconcile: Reconcile | None = None
    """Settles a call in doubt (`Reconcile`); without one such a call escalates its item."""
    takes_key: bool = False
    """The function declares `KEY_PARAMETER` and is given each call's idempotency key."""
    returns: Any = None
    """The function's return annotation (None when it has none): a result read back from the
    journal is validated against it."""

    @classmethod
    def from_function(
        cls,
        function: Callable[..., Any],
        *,
        name: str | None = None,
        side_effect: bool = False,
        reconcile: Reconcile | None = None,
    ) -> Tool:
        """Build a tool from a function with annotated parameters and a docstring.

        Args:
            function: the tool; sync (run in a worker thread) or async.
            name: the tool's name, if not the function's.
            side_effect: the tool changes the world (charges, sends, writes elsewhere). Each
                call gets an idempotency key: a hash of the run, the item, the tool and the
                call's validated arguments (canonical JSON), the same across attempts, fallback
                roles and resumes. The call is journaled durably before it runs
                (``tool.started``) and its result after (``tool.finished``, the result as
                JSON); the same call again (a retry, a resume) gets the recorded result and
                the tool does not run (journaled as ``tool.called`` with ``replayed``). A call
                that raised is recorded with its error and runs again if made again, with the
                same key. A call that started but whose end was never recorded (the process
                died, or the dispatch timed out, while it ran) is in doubt: `reconcile`
                decides, and without one the item escalates to a person.
            reconcile: ``reconcile(key, arguments)``, sync or async (`Reconcile`): for a call
                in doubt, the call's result if it took effect, `DID_NOT_RUN` if it did not
                (the tool then runs), or raise `InDoubt` if it cannot tell (the item
                escalates; so does any other exception it raises).

        The function receives the call's key if it declares a parameter named
        ``idempotency_key`` (`KEY_PARAMETER`): pass it on to the service called (as a payment
        API's idempotency key) so that the service itself refuses a duplicate. That parameter
        is filled in by the runtime and is not in the tool's argument schema.

        Raises:
            TypeError: if `function` (or `reconcile`) is not callable, a parameter has no
                annotation or is ``*args``/``**kwargs``, `reconcile` is given without
                `side_effect`, or an ordinary tool declares ``idempotency_key``.
        """
        if not callable(function):
            raise TypeError(f"{function!r} is not callable")
        tool_name = name or getattr(function, "__name__", None)
        if not tool_name or tool_name == "<lambda>":
            raise TypeError("a tool needs a name: use a named function or pass name=")
        if reconcile is not None and not side_effect:
            raise TypeError(
                f"tool '{tool_name}': reconcile= settles calls of a side-effecting tool; "
                "pass side_effect=True too"
            )
        if reconcile is not None and not callable(reconcile):
            raise TypeError(f"tool '{tool_name}': reconcile={reconcile!r} is not callable")
        hints = get_type_hints(function, include_extras=True)  # keep Field(...) constraints
        fields: dict[str, Any] = {}
        takes_key = False
        for param in inspect.signature(function).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"tool '{tool_name}': *args and **kwargs are not supported")
            if param.name == KEY_PARAMETER:
                if not side_effect:
                    raise TypeError(
                        f"tool '{tool_name}': the parameter '{KEY_PARAMETER}' is filled in by "
                        "the runtime for side-effecting tools: pass side_effect=True, or "
                        "rename the parameter"
                    )
                takes_key = True
                continue
            if param.name not in hints:
                raise TypeError(f"tool '{tool_name}': parameter '{param.name}' has no annotation")
            default = ... if param.default is param.empty else param.default
            fields[param.name] = (hints[param.name], default)
        arguments = create_model(
            f"{tool_name}_arguments",
            __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
            **fields,
        )
        doc = inspect.getdoc(function) or ""
        return cls(
            name=tool_name,
            function=function,
            description=doc.split("\n\n")[0].strip() or tool_name,
            arguments=arguments,
            is_async=is_async_callable(function),
            side_effect=side_effect,
            reconcile=reconcile,
            takes_key=takes_key,
            returns=hints.get("return"),
        )

    def json_schema(self) -> dict[str, Any]:
        return self.arguments.model_json_schema()

    def how_to_rename(self, suggestion: str) -> str:
        """How to give this tool another name on a card (`suggestion`, say), for an error that
        refuses its name."""
        return "rename it with Tool.from_function(fn, name='...')"

    def validate(self, raw_arguments: dict[str, Any] | str) -> BaseModel:
        """The arguments validated against the tool's schema.

        Args:
            raw_arguments: the arguments as an object, or as JSON text (a model's raw call).

        Raises:
            ToolArgumentsError: if they do not validate (JSON that does not parse included).
        """
        try:
            if isinstance(raw_arguments, str):
                return self.arguments.model_validate_json(raw_arguments or "{}")
            return self.arguments.model_validate(raw_arguments)
        except ValidationError as e:
            raise ToolArgumentsError(self.name, e) from None

    def key(self, scope: str, arguments: BaseModel) -> str:
        """The idempotency key of a call with these validated `arguments`, within `scope` (the
        item's stable key, ``run:item``): 32 hex digits of a SHA-256 over the scope, the
        tool's name and the arguments as canonical JSON (keys sorted), so the same call has
        the same key in every attempt and every session."""
        canonical = json.dumps(
            arguments.model_dump(mode="json"),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        text = "\x1f".join((scope, self.name, canonical))
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]

    async def call(self, raw_arguments: dict[str, Any] | str) -> Any:
        """Validate the arguments and call the function: on the loop if it is async, in a
        worker thread if not (a thread cannot be killed: if the call is cancelled, the thread
        runs on and its result is discarded).

        This is the bare call: a side-effecting tool's key, journal and replay are the
        context's (`Context.call_tool`). Called here, a tool that takes a key is given
        ``None``.

        Args:
            raw_arguments: the arguments as an object, or as JSON text (a model's raw call).

        Raises:
            ToolArgumentsError: if the arguments do not validate (JSON that does not parse
                included); the function does not run.
        """
        return await self.run(self.validate(raw_arguments))

    async def run(self, arguments: BaseModel, key: str | None = None) -> Any:
        """Call the function with validated `arguments` (and `key` as its `KEY_PARAMETER`, if
        it declares one): on the loop if it is async, in a worker thread if not."""
        kwargs = {name: getattr(arguments, name) for name in type(arguments).model_fields}
        if self.takes_key:
            kwargs[KEY_PARAMETER] = key
        if self.is_async:
            return await self.function(**kwargs)
        result = await in_thread(functools.partial(self.function, **kwargs))
        if inspect.isawaitable(result):  # a sync callable that hands back a coroutine
            return await result
        return result

    async def settle(self, key: str, arguments: dict[str, Any]) -> Any:
        """Ask `reconcile` about a call in doubt: its result, or `DID_NOT_RUN`.

        Raises:
            InDoubt: there is no `reconcile`, it cannot tell, or it raised (its error is named).
        """
        reconcile = self.reconcile
        if reconcile is None:
            raise InDoubt(
                f"in doubt: tool {self.name!r} (key {key}) started but its result was never "
                "recorded, so it may have run; it has no reconcile function. A person must "
                "check whether it took effect"
            )
        try:
            if is_async_callable(reconcile):
                return await reconcile(key, arguments)
            result = await in_thread(reconcile, key, arguments)
            if inspect.isawaitable(result):
                return await result
            return result
        except InDoubt as e:
            raise InDoubt(
                f"in doubt: tool {self.name!r} (key {key}) may have run, and its reconcile "
                f"function cannot tell ({e.reason}). A person must check whether it took effect"
            ) from None
        except Exception as e:
            raise InDoubt(
                f"in doubt: tool {self.name!r} (key {key}) may have run, and its reconcile "
                f"function raised {type(e).__name__}: {e}. A person must check whether it "
                "took effect"
            ) from None

    def decode(self, recorded: Any) -> Any:
        """A result read back from the journal (JSON values), as the function's return
        annotation reads it (a pydantic model comes back as that model); as recorded when the
        function has no annotation or the record does not validate against it."""
        if self.returns is None or self.returns is Any:
            return recorded
        try:
            return TypeAdapter(self.returns).validate_python(recorded)
        except (ValidationError, TypeError, ValueError):  # TypeError: not a type pydantic knows
            return recorded
