"""The router foreman's contract: what a router sees and the one action it returns each turn.

A phase declared with ``route_by="router"`` is run turn by turn: the role ``router`` gets a
`RouterView` (the task, the roles it may dispatch, and a compact account of the steps so far:
never a worker's raw output) and returns a `Route`, one typed action:

- `Dispatch`: run a role with an input (values may be references to accepted steps'
  outputs, ``{"$from": "s1"}`` or ``{"$from": "s1", "field": "NAME"}``, as in a plan);
- `Finish`: end the phase with a result (validated against `Phase.returns`);
- `Escalate`: ask a person a question (the phase waits for the answer);
- `Abort`: end the phase, failed, with a reason.

The foreman checks every decision (`hubspoke.foreman`): an invalid one is an invalid output of
the router, retried with every error as the correction. docs/router.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Abort",
    "Dispatch",
    "Escalate",
    "Finish",
    "Result",
    "Route",
    "RouterRole",
    "RouterStep",
    "RouterView",
]


class Dispatch(BaseModel):
    """Run a role."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["dispatch"] = "dispatch"
    role: str
    input: dict[str, Any] = Field(default_factory=dict)
    objective: str = ""


class Finish(BaseModel):
    """End with a result."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["finish"] = "finish"
    result: dict[str, Any] = Field(default_factory=dict)


class Escalate(BaseModel):
    """Ask a person."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["escalate"] = "escalate"
    question: str


class Abort(BaseModel):
    """Give up."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["abort"] = "abort"
    reason: str


class Route(BaseModel):
    """One action."""

    model_config = ConfigDict(extra="forbid")

    next: Dispatch | Finish | Escalate | Abort = Field(discriminator="action")


class RouterStep(BaseModel):
    """One step so far, as the router sees it."""

    id: str
    role: str
    status: str
    """``accepted``, ``failed``, ``escalated``, ``stuck``... (the step's item status)."""
    note: str = ""
    """One line: an accepted output's ``summary`` field (or its type and fields), else why it
    ended without one."""
    artifact: str = ""
    """The accepted output's artifact id."""


class RouterRole(BaseModel):
    """A role the router may dispatch."""

    name: str
    purpose: str
    input: list[str]
    """Its input's field names."""


class RouterView(BaseModel):
    """A router's input: the task and a compact, bounded account of the run."""

    task: dict[str, Any]
    roles: list[RouterRole]
    steps: list[RouterStep]
    """The latest steps (at most `Phase.keep_steps`), oldest first."""
    earlier: dict[str, int] = Field(default_factory=dict)
    """Older steps, counted by status."""
    steps_left: int
    answers: list[str] = Field(default_factory=list)
    """What people answered to the router's latest questions."""


class Result(BaseModel):
    """A finish result when the phase declares no `Phase.returns`: any fields."""

    model_config = ConfigDict(extra="allow")
