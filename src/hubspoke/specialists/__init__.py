"""Specialists: implementations of role cards behind one interface."""

from hubspoke.specialists.agent import AgentSpecialist, compile_system_prompt
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context, ToolRefused
from hubspoke.specialists.function import FunctionSpecialist

__all__ = [
    "AgentSpecialist",
    "Context",
    "FunctionSpecialist",
    "Specialist",
    "ToolRefused",
    "compile_system_prompt",
]
