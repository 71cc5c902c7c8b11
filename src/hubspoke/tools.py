"""Tools: plain Python functions a role card allows its specialist to call.

A tool's arguments are described by a pydantic model built once from the function's signature,
so calls from a model are validated before the function ever runs. An async tool runs on the
event loop; a sync one runs in a worker thread (`hubspoke.threads.in_thread`), so blocking code
in a tool neither stalls other dispatches nor escapes its dispatch's time-out.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from hubspoke.errors import ToolArgumentsError
from hubspoke.threads import in_thread

__all__ = ["Tool", "ToolArgumentsError", "is_async_callable"]


def is_async_callable(function: Callable[..., Any]) -> bool:
    """Whether calling `function` gives a coroutine: an `async def`, a partial of one, or an
    object whose `__call__` is one."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - the method, not callability
    )


@dataclass(frozen=True, slots=True)
class Tool:
    """A callable a specialist may use, with its validated argument schema."""

    name: str
    function: Callable[..., Any]
    description: str
    arguments: type[BaseModel]
    is_async: bool
    """Runs on the event loop if true; otherwise in a worker thread."""

    @classmethod
    def from_function(cls, function: Callable[..., Any], *, name: str | None = None) -> Tool:
        """Build a tool from a function with annotated parameters and a docstring.

        Raises:
            TypeError: if `function` is not callable or a parameter has no annotation.
        """
        if not callable(function):
            raise TypeError(f"{function!r} is not callable")
        tool_name = name or getattr(function, "__name__", None)
        if not tool_name or tool_name == "<lambda>":
            raise TypeError("a tool needs a name: use a named function or pass name=")
        hints = get_type_hints(function)
        fields: dict[str, Any] = {}
        for param in inspect.signature(function).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"tool '{tool_name}': *args and **kwargs are not supported")
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
        )

    def json_schema(self) -> dict[str, Any]:
        return self.arguments.model_json_schema()

    async def call(self, raw_arguments: dict[str, Any] | str) -> Any:
        """Validate the arguments and call the function: on the loop if it is async, in a
        worker thread if not (a thread cannot be killed: if the call is cancelled, the thread
        runs on and its result is discarded).

        Args:
            raw_arguments: the arguments as an object, or as JSON text (a model's raw call).

        Raises:
            ToolArgumentsError: if the arguments do not validate (JSON that does not parse
                included); the function does not run.
        """
        try:
            if isinstance(raw_arguments, str):
                args = self.arguments.model_validate_json(raw_arguments or "{}")
            else:
                args = self.arguments.model_validate(raw_arguments)
        except ValidationError as e:
            raise ToolArgumentsError(self.name, e) from None
        kwargs = {name: getattr(args, name) for name in type(args).model_fields}
        if self.is_async:
            return await self.function(**kwargs)
        result = await in_thread(functools.partial(self.function, **kwargs))
        if inspect.isawaitable(result):  # a sync callable that hands back a coroutine
            return await result
        return result
