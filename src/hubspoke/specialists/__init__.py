"""Specialists: implementations of role cards behind one interface.

`AgentSpecialist` (our agent loop over pydantic-ai's model layer) imports on first use, so that
function-only workflows never import pydantic-ai.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hubspoke.errors import ContextError, ToolRefused
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context
from hubspoke.specialists.function import FunctionSpecialist
from hubspoke.specialists.trace import TRACE_KINDS, Trace
from hubspoke.specialists.views import AllowanceView, ToolTable, UsageView

if TYPE_CHECKING:
    from hubspoke.specialists.agent import AgentSpecialist, compile_system_prompt

__all__ = [
    "TRACE_KINDS",
    "AgentSpecialist",
    "AllowanceView",
    "Context",
    "ContextError",
    "FunctionSpecialist",
    "Specialist",
    "ToolRefused",
    "ToolTable",
    "Trace",
    "UsageView",
    "compile_system_prompt",
]

_LAZY = {"AgentSpecialist", "compile_system_prompt"}
"""Names that need pydantic-ai: imported from `hubspoke.specialists.agent` on first use."""


if not TYPE_CHECKING:
    # Hidden from type checkers: they read the imports above, and a module __getattr__
    # would make them accept any name imported from here.

    def __getattr__(name: str) -> Any:
        if name not in _LAZY:
            raise AttributeError(f"module 'hubspoke.specialists' has no attribute {name!r}")
        value = getattr(importlib.import_module("hubspoke.specialists.agent"), name)
        globals()[name] = value
        return value
