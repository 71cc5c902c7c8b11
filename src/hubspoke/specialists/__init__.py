"""Specialists: implementations of role cards behind one interface."""

from hubspoke.specialists.agent import AgentSpecialist, compile_system_prompt
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import (
    TRACE_KINDS,
    AllowanceView,
    Context,
    ContextError,
    ToolRefused,
    ToolTable,
    Trace,
    UsageView,
)
from hubspoke.specialists.function import FunctionSpecialist

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
