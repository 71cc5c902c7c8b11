"""The router foreman's contract: what a router sees and the one action it returns each turn.

A phase declared with ``route_by="router"`` is run turn by turn: the role ``router`` gets a
`RouterView` (the task, the roles it may dispatch, and a compact account of the steps so far:
never a worker's raw output) and returns a `Route`, one typed action (`Route.action`):

- ``dispatch``: run a role with an input (values may be references to accepted steps'
  outputs, ``{"$from": "s1"}`` or ``{"$from": "s1", "field": "NAME"}``, as in a plan);
- ``finish``: end the phase with a result (validated against `Phase.returns`);
- ``escalate``: ask a person a question (the phase waits for the answer);
- ``abort``: end the phase, failed, with a reason.

One flat model rather than a union of four: its JSON schema, which a model-played router gets
with every turn, stays small.

The foreman checks every decision (`hubspoke.foreman`): an invalid one is an invalid output of
the router, retried with every error as the correction. docs/router.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ACTIONS",
    "Result",
    "Route",
    "RouterRole",
    "RouterStep",
    "RouterView",
]


def _compact(schema: dict[str, Any]) -> None:
    """Leave generated titles out of a model's JSON schema: a router's prompt carries it on
    every turn, and its budget is small."""
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)


ACTIONS = ("dispatch", "finish", "escalate", "abort")
"""What a router may do: its four actions."""


class Route(BaseModel):
    """One action: dispatch (role, input), finish (result), escalate (question), abort
    (reason)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_compact)

    action: Literal["dispatch", "finish", "escalate", "abort"]
    role: str = ""
    """Dispatch: the role to run (one of the view's roles)."""
    input: dict[str, Any] = Field(default_factory=dict)
    """Dispatch: its input by field name; a value may be ``{"$from": "sN"}`` (an accepted
    step's output) or ``{"$from": "sN", "field": "NAME"}`` (one field of it)."""
    objective: str = ""
    """Dispatch: what the step must achieve (its brief)."""
    result: dict[str, Any] = Field(default_factory=dict)
    """Finish: the result's fields (references allowed), or ``{"$from": "sN"}``."""
    question: str = ""
    """Escalate: what to ask a person."""
    reason: str = ""
    """Abort: why."""


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
