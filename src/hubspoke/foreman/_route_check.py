"""A router's decision checked, and what a router sees, by pure functions.

`check_decision` lists every error of one decision (a role the phase does not allow, an input
invalid for the role, a reference to a step without an output, a dispatch that repeats an
earlier one, a dispatch past the step cap, a result invalid for the phase's schema). A dispatch
is checked as a one-step plan (`_plans.check_plan`). `router_view` is the router's bounded
input. Neither reads the clock, the journal or the network (tests/test_router.py tests them from
tables); the routed phase (`_routed`) applies what they decide by writing events.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from hubspoke.handoff import validate_handoff
from hubspoke.phases import Phase
from hubspoke.plans import Plan, PlanStep
from hubspoke.roles import Role
from hubspoke.router import Result, Route, RouterRole, RouterStep, RouterView
from hubspoke.work import Brief

from ._plan_next import resolve_input
from ._plans import check_plan, one_line, refs
from ._reviewed import IN_REVIEW
from ._validation import validation_errors

__all__ = [
    "Step",
    "check_decision",
    "finish_value",
    "note_of",
    "router_brief",
    "router_view",
    "same_dispatch",
]

_NOTE_CHARS = 80
_PURPOSE_CHARS = 80


@dataclass(frozen=True, slots=True)
class Step:
    """A step of a routed phase so far: what was dispatched and how it ended."""

    id: str
    role: str
    input: dict[str, Any]
    status: str = "new"
    """Its item's status (``new``: not started)."""
    reason: str = ""
    artifact: str = ""
    output: BaseModel | None = None
    """Its accepted output."""


def _error(loc: tuple[str | int, ...], msg: str, kind: str = "route") -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def same_dispatch(role: str, input: Mapping[str, Any]) -> str:
    """What makes two dispatches the same: the role and the input, canonically."""
    return role + " " + json.dumps(input, sort_keys=True, separators=(",", ":"), default=str)


def check_decision(
    route: Route,
    *,
    roles: Mapping[str, Role],
    allowed: Sequence[str],
    steps: Sequence[Step],
    max_steps: int,
    returns: type[BaseModel] | None,
) -> list[dict[str, Any]]:
    """Every error of the router's decision, as validation errors (``loc``, ``msg``,
    ``type``), empty if none.

    Args:
        route: the router's validated output.
        roles: the workflow's roles by name.
        allowed: the roles the router may dispatch (`Phase.roles`).
        steps: the phase's steps so far, in order.
        max_steps: most steps the phase may dispatch.
        returns: the schema of a finish's result (`Phase.returns`), None for any fields.
    """
    accepted = {s.id: s for s in steps if s.status == "accepted" and s.output is not None}
    errors = _unused_fields(route)
    if route.action == "escalate" and not route.question.strip():
        errors.append(_error(("question",), "an escalation asks a person a question: give it"))
    if route.action == "abort" and not route.reason.strip():
        errors.append(_error(("reason",), "an abort says why: give a reason"))
    if route.action == "dispatch":
        if len(steps) >= max_steps:
            errors.append(
                _error(
                    ("action",),
                    f"no steps left (max_steps={max_steps}): finish with a result, escalate "
                    "to a person or abort",
                )
            )
        key = same_dispatch(route.role, route.input)
        for s in steps:
            if same_dispatch(s.role, s.input) == key:
                errors.append(
                    _error(
                        ("action",),
                        f"repeats step {s.id!r} ({s.role}, {s.status}): the same dispatch "
                        "learns nothing new; dispatch something else, finish, escalate or abort",
                    )
                )
                break
        step = PlanStep(
            id=f"s{len(steps) + 1}",
            role=route.role,
            input=route.input,
            objective=route.objective or "-",
        )
        found = check_plan(
            Plan(steps=[step]),
            roles=roles,
            allowed=allowed,
            kept={s.id: s.role for s in accepted.values()},
            used=set(),
            max_steps=1,
            max_parallel=1,
        )
        for e in found:
            loc = tuple(e["loc"])
            msg = (
                str(e["msg"])
                .replace("roles this plan may use", "roles the router may dispatch")
                .replace("this plan may not use the role", "the router may not dispatch the role")
            )
            errors.append({**e, "loc": loc[2:] if loc[:2] == ("steps", 0) else loc, "msg": msg})
    elif route.action == "finish":
        errors += _check_result(route, accepted, returns or Result)
    return [_said_in_review(e, steps) for e in errors]


def _said_in_review(error: dict[str, Any], steps: Sequence[Step]) -> dict[str, Any]:
    """A reference to a step whose output waits for a person's review, said as such (rather
    than as a step that does not exist)."""
    msg = str(error["msg"])
    for s in steps:
        if s.status == IN_REVIEW and msg.startswith(
            (f"no step {s.id!r} to take", f"no accepted step {s.id!r} to take")
        ):
            said = (
                f"step {s.id!r} waits for a person's review: its output can be used once "
                "approved; dispatch something else, finish, escalate or abort"
            )
            return {**error, "msg": said}
    return error


_USES = {
    "dispatch": {"role", "input", "objective"},
    "finish": {"result"},
    "escalate": {"question"},
    "abort": {"reason"},
}


def _unused_fields(route: Route) -> list[dict[str, Any]]:
    """Fields given that the action does not use: the router meant another action."""
    given = {
        k
        for k in ("role", "input", "objective", "result", "question", "reason")
        if getattr(route, k)
    }
    return [
        _error(
            (k,), f"{route.action} takes no {k} (it takes {', '.join(sorted(_USES[route.action]))})"
        )
        for k in sorted(given - _USES[route.action])
    ]


def _check_result(
    action: Route, accepted: Mapping[str, Step], schema: type[BaseModel]
) -> list[dict[str, Any]]:
    """A finish's result: its references name accepted steps, and it fits `schema`."""
    at: tuple[str | int, ...] = ("result",)
    errors: list[dict[str, Any]] = []
    result = action.result
    whole = refs(result) if "$from" in result else []
    fields = {"$whole": result} if whole else result
    outputs: dict[str, BaseModel] = {}
    for name, value in fields.items():
        try:
            named = refs(value)
        except ValueError as e:
            errors.append(_error((*at, name), str(e)))
            continue
        for ref in named:
            step = accepted.get(ref.step)
            if step is None or step.output is None:
                known = ", ".join(accepted) or "none"
                errors.append(
                    _error(
                        (*at, name),
                        f"no accepted step {ref.step!r} to take the output of (accepted: {known})",
                    )
                )
            elif ref.field is not None and ref.field not in type(step.output).model_fields:
                errors.append(
                    _error((*at, name), f"step {ref.step!r}'s output has no field {ref.field!r}")
                )
            else:
                outputs[ref.step] = step.output
    if errors:
        return errors
    resolved = resolve_input(PlanStep(id="result", role="-", input=fields, objective="-"), outputs)
    value = resolved["$whole"] if whole else resolved
    try:
        validate_handoff(schema, value)
    except ValidationError as e:
        for err in validation_errors(e):
            loc = (*at, *tuple(err.get("loc", ())))
            errors.append(_error(loc, str(err.get("msg", "")), str(err.get("type"))))
    except Exception as e:  # user code in the schema (a validator) raised
        errors.append(_error(at, f"the schema raised {type(e).__name__}: {e}"))
    return errors


def finish_value(action: Route, steps: Sequence[Step]) -> Any:
    """A checked finish's result with its references resolved (for `validate_handoff`)."""
    outputs = {s.id: s.output for s in steps if s.output is not None}
    whole = "$from" in action.result
    fields = {"$whole": action.result} if whole else action.result
    step = PlanStep(id="result", role="-", input=fields, objective="-")
    resolved = resolve_input(step, outputs)
    return resolved["$whole"] if whole else resolved


def note_of(step: Step) -> str:
    """One line on a step: an accepted output's ``summary`` field if it has one, else its type
    and field names (never the worker's output itself); why a step ended without one."""
    output = step.output
    if output is not None:
        summary = getattr(output, "summary", None)
        if isinstance(summary, str):
            return one_line(summary, _NOTE_CHARS)
        return one_line(f"{type(output).__name__} ({', '.join(type(output).model_fields)})", 60)
    return one_line(step.reason, _NOTE_CHARS)


def router_view(
    task: dict[str, Any],
    roles: Sequence[Role],
    steps: Sequence[Step],
    *,
    keep: int,
    max_steps: int,
    answers: Sequence[str] = (),
) -> RouterView:
    """What the router sees: the task, its roles, the latest `keep` steps one by one and the
    older ones counted by status, the steps left and people's latest answers (two at most).
    Its size does not grow with the number of steps beyond the digits of the counts."""
    older, latest = steps[: max(0, len(steps) - keep)], steps[max(0, len(steps) - keep) :]
    counts: dict[str, int] = {}
    for s in older:
        counts[s.status] = counts.get(s.status, 0) + 1
    return RouterView(
        task=task,
        roles=[
            RouterRole(
                name=r.name,
                purpose=one_line(r.purpose, _PURPOSE_CHARS),
                input=list(r.input.model_fields),
            )
            for r in roles
        ],
        steps=[
            RouterStep(id=s.id, role=s.role, status=s.status, note=note_of(s), artifact=s.artifact)
            for s in latest
        ],
        earlier=counts,
        steps_left=max(0, max_steps - len(steps)),
        answers=[one_line(a, _NOTE_CHARS) for a in answers[-2:]],
    )


def router_brief(phase: Phase, purpose: str) -> Brief:
    """The router's brief: its objective (the phase's, or the router role's `purpose`) and how
    to answer."""
    return Brief(
        objective=phase.objective or purpose,
        scope=phase.scope,
        output_format=(
            "One action in next: dispatch (a role of roles, its input by field name; a value "
            'may be {"$from": "sN"} or {"$from": "sN", "field": "NAME"}: an accepted step\'s '
            'output), finish (result: its fields, or {"$from": "sN"}), escalate (question) or '
            "abort (reason). Never repeat a dispatch."
        ),
    )
