"""Plans: what a planner role returns, a graph of steps over registered roles.

A phase declared with ``plan_by="lead"`` runs the plan that the role ``lead`` makes: its output
schema is `Plan` (or a subclass). Each `PlanStep` names a role the phase allows, its input, the
steps it waits for (`PlanStep.after`) and its brief. An input value may be a reference to an
earlier step's output, resolved when the step starts:

- ``{"$from": "s1"}``: the whole output of step ``s1``;
- ``{"$from": "s1", "field": "summary"}``: one field of it.

A reference is a top-level input field's value, or an item of a list field (``{"findings":
[{"$from": "s1"}, {"$from": "s2"}]}``); it makes the step wait for the one it names. The foreman
checks a plan before anything runs (`hubspoke.foreman` feeds every error back to the planner):
docs/plans.md.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["REF", "STEP_ID", "Plan", "PlanStep", "Reference", "reference"]

REF = "$from"
"""The key that makes an input value a reference to another step's output."""
STEP_ID = re.compile(r"^[a-z0-9_-]{1,40}$")
"""What a step id may be: 1 to 40 lower-case letters, digits, ``_`` or ``-``."""


class PlanStep(BaseModel):
    """One step of a plan: a dispatch of a registered role."""

    model_config = ConfigDict(extra="forbid")

    id: str
    """Unique in the plan (and across the phase's earlier plans): ``[a-z0-9_-]{1,40}``."""
    role: str
    """A role the phase lets its planner use (`Phase.roles`)."""
    input: dict[str, Any] = Field(default_factory=dict)
    """The role's input by field name; values may be references (``{"$from": "ID"}``)."""
    after: list[str] = Field(default_factory=list)
    """Steps that must be accepted first, besides the ones its references name."""
    objective: str
    """What the step must achieve (its brief)."""
    scope: str = ""
    """Where its edges are."""
    output_format: str = ""
    """How its output should look, beyond its schema."""
    siblings: str = ""
    """What the other steps cover, so that it does not duplicate them."""


class Plan(BaseModel):
    """A planner role's output: the steps to run."""

    model_config = ConfigDict(extra="forbid")

    steps: list[PlanStep]
    rationale: str = ""
    """Why this plan, in a sentence or two (shown with the plan; not used by the foreman)."""


class Reference(BaseModel):
    """A parsed reference: the step it names and, optionally, one field of its output."""

    model_config = ConfigDict(frozen=True)

    step: str
    field: str | None = None


def reference(value: Any) -> Reference | None:
    """`value` as a `Reference` if it is one (a dict with the key ``"$from"``), else `None`.

    Raises:
        ValueError: a dict with ``"$from"`` that is not a well-formed reference (the step is not
            a string, ``field`` is not a string, or it has other keys); the message says what.
    """
    if not isinstance(value, dict) or REF not in value:
        return None
    step, field = value.get(REF), value.get("field")
    extra = sorted(set(value) - {REF, "field"})
    if not isinstance(step, str):
        raise ValueError(f'a reference names a step id: {{"{REF}": "ID"}}, not {step!r}')
    if field is not None and not isinstance(field, str):
        raise ValueError(f"a reference's field is a field name, not {field!r}")
    if extra:
        raise ValueError(
            f'a reference has only "{REF}" and optionally "field"; remove {", ".join(extra)}'
        )
    return Reference(step=step, field=field)


def refs(value: Any) -> list[Reference]:
    """The references of one top-level input value: itself, or the items of a list."""
    found = reference(value)
    if found is not None:
        return [found]
    if isinstance(value, list):
        return [r for v in value if (r := reference(v)) is not None]
    return []


def dependencies(step: PlanStep) -> list[str]:
    """The steps `step` waits for: its `after` and the steps its references name, in order,
    without repeats. Malformed references are ignored here (the foreman's plan check reports
    them)."""
    found = list(step.after)
    for value in step.input.values():
        try:
            found += [r.step for r in refs(value)]
        except ValueError:
            continue
    return list(dict.fromkeys(found))
