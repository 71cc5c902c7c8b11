"""Tools: plain Python functions a role card allows its specialist to call.

A tool's arguments are described by a pydantic model built once from the function's signature,
so calls from a model are validated before the function ever runs.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

__all__ = ["Tool", "ToolArgumentsError"]


class ToolArgumentsError(Exception):
    """The arguments of a tool call failed validation."""

    def __init__(self, tool: str, error: ValidationError) -> None:
        super().__init__(f"invalid arguments for tool '{tool}': {error.errors(include_url=False)}")
        self.errors = error.errors(include_url=False, include_context=False)


@dataclass(frozen=True, slots=True)
class Tool:
    """A callable a specialist may use, with its validated argument schema."""

    name: str
    function: Callable[..., Any]
    description: str
    arguments: type[BaseModel]
    is_async: bool

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
            is_async=inspect.iscoroutinefunction(function),
        )

    def json_schema(self) -> dict[str, Any]:
        return self.arguments.model_json_schema()

    async def call(self, raw_arguments: dict[str, Any] | str) -> Any:
        """Validate the arguments and call the function.

        Raises:
            ToolArgumentsError: if the arguments do not validate.
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
        return self.function(**kwargs)
