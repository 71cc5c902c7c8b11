"""A planner's plan checked, by a pure function.

`check_plan` lists every error of a plan (unknown or forbidden roles, inputs invalid for their
role, references to missing steps or to outputs that do not fit, cycles, too many steps, too
wide a graph) so that the planner gets them all at once as its correction. What runs next is
`_plan_next`. Neither reads the clock, the journal or the network (tests/test_plans.py tests
them from tables); the planned phase (`_planned`) applies what they decide by writing events.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from hubspoke.handoff import validate_handoff
from hubspoke.phases import Phase
from hubspoke.plans import STEP_ID, Plan, dependencies, refs
from hubspoke.roles import Role
from hubspoke.work import Brief

from ._validation import validation_errors

__all__ = ["check_plan", "dependencies", "one_line", "refs", "width"]


def one_line(text: str, most: int) -> str:
    """`text` on one line (whitespace runs made one space), cut to `most` characters with
    "…" when longer."""
    flat = " ".join(text.split())
    return flat if len(flat) <= most else flat[: most - 1] + "…"


def _error(loc: tuple[str | int, ...], msg: str, kind: str = "plan") -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _fits(wanted: Any, given: Any) -> bool:
    """Whether a value of type `given` (an output class, or a field's annotation) may fill an
    input field annotated `wanted`."""
    if wanted is Any or wanted == given:
        return True
    origin = typing.get_origin(wanted)
    if origin is typing.Union or origin is types.UnionType:
        return any(_fits(w, given) for w in typing.get_args(wanted))
    if origin is typing.Annotated:
        return _fits(typing.get_args(wanted)[0], given)
    if (wanted is dict or origin is dict) and isinstance(given, type):
        return issubclass(given, BaseModel)  # a model is handed over as its JSON object
    if isinstance(wanted, type) and isinstance(given, type):
        return issubclass(given, wanted)
    return False


def _unoptional(t: Any) -> Any:
    """`t` without `None` (``X | None`` -> ``X``)."""
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return t


def _type_name(t: Any) -> str:
    return t.__name__ if isinstance(t, type) else str(t).replace("typing.", "")


def _check_refs(
    at: tuple[str | int, ...],
    schema: type[BaseModel],
    name: str,
    value: Any,
    outputs: Mapping[str, tuple[str, type[BaseModel] | None]],
) -> tuple[bool, list[dict[str, Any]]]:
    """Whether the input field `name` holds references, and their errors."""
    try:
        named = refs(value)
    except ValueError as e:
        return True, [_error((*at, name), str(e))]
    if not named:
        return False, []
    field = schema.model_fields.get(name)
    if field is None:
        return True, [_error((*at, name), f"{schema.__name__} has no field {name!r}")]
    wanted = field.annotation
    many = isinstance(value, list)
    if many:
        listed = _unoptional(wanted)
        if typing.get_origin(listed) is not list:
            problem = f"a list of references fills a list field, and {name!r} is "
            return True, [_error((*at, name), problem + _type_name(wanted))]
        wanted = next(iter(typing.get_args(listed)), Any)
    errors: list[dict[str, Any]] = []
    for ref in named:
        source = outputs.get(ref.step)
        if source is None:
            known = ", ".join(outputs) or "none"
            errors.append(
                _error((*at, name), f"no step {ref.step!r} to take the output of (steps: {known})")
            )
            continue
        role, output = source
        if output is None:
            continue  # its unknown role is reported with its step
        given: Any = output
        if ref.field is not None:
            found = output.model_fields.get(ref.field)
            if found is None:
                fields = ", ".join(output.model_fields)
                errors.append(
                    _error(
                        (*at, name),
                        f"step {ref.step!r} (role {role!r}) outputs "
                        f"{output.__name__}, which has no field {ref.field!r} "
                        f"(fields: {fields})",
                    )
                )
                continue
            given = found.annotation
        if not _fits(wanted, given):
            what = output.__name__ if ref.field is None else f"{output.__name__}.{ref.field}"
            errors.append(
                _error(
                    (*at, name),
                    f"takes {_type_name(wanted)}, but step "
                    f"{ref.step!r} (role {role!r}) gives {what} "
                    f"({_type_name(given)})",
                )
            )
    return True, errors


def _cycle(steps: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle of the graph (step -> the steps it waits for), as a path, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in steps.get(node, ()):
            if dep not in steps:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for node in steps:
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def width(graph: Mapping[str, Sequence[str]]) -> tuple[int, list[str]]:
    """The most steps of an acyclic graph (step -> the steps it waits for) that could run at
    once, and one such set: its largest antichain (Dilworth: steps minus a maximum matching
    of its reachability)."""
    nodes = list(graph)
    reach: dict[str, set[str]] = {}

    def below(node: str) -> set[str]:
        if node not in reach:
            reach[node] = set()
            for dep in graph[node]:
                if dep in graph:
                    reach[node] |= {dep} | below(dep)
        return reach[node]

    for node in nodes:
        below(node)
    match: dict[str, str] = {}  # lower -> upper

    def augment(upper: str, seen: set[str]) -> bool:
        for lower in sorted(reach[upper]):
            if lower in seen:
                continue
            seen.add(lower)
            if lower not in match or augment(match[lower], seen):
                match[lower] = upper
                return True
        return False

    for node in nodes:
        augment(node, set())
    # König: the antichain is the nodes outside a minimum vertex cover of the split graph.
    free = [n for n in nodes if n not in match.values()]
    left_seen: set[str] = set()
    right_seen: set[str] = set()
    stack = list(free)
    while stack:
        upper = stack.pop()
        if upper in left_seen:
            continue
        left_seen.add(upper)
        for lower in reach[upper]:
            if lower not in right_seen:
                right_seen.add(lower)
                if lower in match:
                    stack.append(match[lower])
    chain = [n for n in nodes if n in left_seen and n not in right_seen]
    return len(nodes) - len(match), chain


def check_plan(
    plan: Plan,
    *,
    roles: Mapping[str, Role],
    allowed: Sequence[str],
    kept: Mapping[str, str],
    used: Collection[str],
    max_steps: int,
    max_parallel: int,
) -> list[dict[str, Any]]:
    """Every error of `plan`, as validation errors (``loc``, ``msg``, ``type``), empty if none.

    Args:
        plan: the planner's validated output.
        roles: the workflow's roles by name.
        allowed: the roles the phase's planner may use (`Phase.roles`).
        kept: steps of the phase's earlier plans that were accepted, id -> role: the plan may
            reference them (and wait for them) without repeating them.
        used: ids of the phase's earlier steps that started and were not accepted: not to be
            used again (a step that never started may be planned again under its id).
        max_steps: most steps a plan may have.
        max_parallel: most steps of the plan that may run at once (its graph's width).
    """
    errors: list[dict[str, Any]] = []
    steps = plan.steps
    if not steps:
        errors.append(_error(("steps",), "a plan needs at least one step"))
    if len(steps) > max_steps:
        errors.append(
            _error(
                ("steps",),
                f"{len(steps)} steps, more than max_steps={max_steps}: plan fewer, broader steps",
            )
        )
    ids: dict[str, int] = {}
    for i, step in enumerate(steps):
        where = ("steps", i, "id")
        if not STEP_ID.match(step.id):
            errors.append(
                _error(where, f"{step.id!r} is not a step id: use 1 to 40 of a-z, 0-9, _ and -")
            )
        elif step.id in ids:
            errors.append(
                _error(
                    where,
                    f"{step.id!r} is also the id of steps[{ids[step.id]}]: ids must be unique",
                )
            )
        elif step.id in kept:
            errors.append(
                _error(
                    where,
                    f"step {step.id!r} was already accepted in an earlier plan "
                    "and is kept: reference it instead of repeating it",
                )
            )
        elif step.id in used:
            errors.append(
                _error(
                    where,
                    f"{step.id!r} was the id of a step of an earlier plan: give new steps new ids",
                )
            )
        ids.setdefault(step.id, i)
    # What each step outputs (None: its role is unknown, an error of its own).
    outputs: dict[str, tuple[str, type[BaseModel] | None]] = {}
    for k, r in kept.items():
        outputs[k] = (r, roles[r].output if r in roles else None)
    for step in steps:
        role = roles.get(step.role)
        outputs.setdefault(step.id, (step.role, None if role is None else role.output))
    for i, step in enumerate(steps):
        role = roles.get(step.role)
        if role is None or step.role not in allowed:
            may = ", ".join(allowed)
            why = "no role named" if role is None else "this plan may not use the role"
            errors.append(
                _error(
                    ("steps", i, "role"), f"{why} {step.role!r} (roles this plan may use: {may})"
                )
            )
        for j, dep in enumerate(step.after):
            if dep not in outputs:
                errors.append(_error(("steps", i, "after", j), f"no step {dep!r} to wait for"))
        if role is None:
            continue
        at: tuple[str | int, ...] = ("steps", i, "input")
        referenced: set[str] = set()
        for name, value in step.input.items():
            has, found = _check_refs(at, role.input, name, value, outputs)
            if has:
                referenced.add(name)
                errors += found
        plain = {k: v for k, v in step.input.items() if k not in referenced}
        try:
            validate_handoff(role.input, plain)
        except ValidationError as e:
            for err in validation_errors(e):
                loc = tuple(err.get("loc", ()))
                if loc and loc[0] in referenced and err.get("type") == "missing":
                    continue  # filled by a reference when the step starts
                errors.append(_error((*at, *loc), str(err.get("msg", "")), str(err.get("type"))))
        except Exception as e:  # user code in the schema (a validator) raised
            errors.append(_error(at, f"the schema raised {type(e).__name__}: {e}"))
    graph = {s.id: dependencies(s) for i, s in enumerate(steps) if ids.get(s.id) == i}
    cycle = _cycle(graph)
    if cycle is not None:
        errors.append(
            _error(
                ("steps",),
                "the steps wait for one another in a cycle: "
                f"{' -> '.join(cycle)}; a step can only use what comes before it",
            )
        )
    elif graph:
        most, wide = width({k: [d for d in v if d in graph] for k, v in graph.items()})
        if most > max_parallel:
            errors.append(
                _error(
                    ("steps",),
                    f"{most} steps could run at once ({', '.join(wide)}),"
                    f" more than max_parallel={max_parallel}: make some wait for "
                    "others (after) or plan fewer",
                )
            )
    return errors


def planner_brief(phase: Phase, roles: Mapping[str, Role]) -> Brief:
    """The planner's brief: the phase's objective (else the planner's purpose) and scope, and
    as the output format the plan's limits and each role it may use (`_role_line`)."""
    assert phase.plan_by is not None
    return Brief(
        objective=phase.objective or roles[phase.plan_by].purpose,
        scope=phase.scope,
        output_format=(
            f"A plan of at most {phase.max_steps} steps, at most {phase.max_parallel} of them "
            f"able to run at once, using only the roles {', '.join(phase.roles)}. Each step: a "
            'unique id, its role, its input (a value may be {"$from": "ID"} or {"$from": "ID", '
            '"field": "NAME"}: an earlier step\'s output), the steps it waits for (after), and '
            "its brief: objective, scope, output format and what the other steps cover. "
            f"The roles: {'; '.join(_role_line(roles[name]) for name in phase.roles)}."
        ),
    )


_TYPES = {"string": "text", "integer": "integer", "number": "number", "boolean": "true/false"}


def _type_of(prop: Any) -> str:
    """A JSON-schema property in a word: ``text``, ``date``, ``integer[]``, ``object``..."""
    if not isinstance(prop, dict):
        return "object"
    choices = [p for p in prop.get("anyOf", ()) if isinstance(p, dict) and p.get("type") != "null"]
    if len(choices) == 1:
        return _type_of(choices[0])
    kind = prop.get("type")
    if kind == "array":
        return f"{_type_of(prop.get('items'))}[]"
    if kind == "string" and prop.get("format") in ("date", "date-time"):
        return str(prop["format"])
    if kind == "string" and "enum" in prop:
        return "|".join(str(v) for v in prop["enum"])
    return _TYPES.get(kind, "object") if isinstance(kind, str) else "object"


def _role_line(role: Role) -> str:
    """A role as the planner needs it to write a valid step: its purpose (one line) and its
    input's fields, each with its JSON type (``[]`` a list, ``?`` optional)."""
    schema = role.input.model_json_schema()
    required = set(schema.get("required", ()))
    fields = []
    for field, prop in schema.get("properties", {}).items():
        fields.append(f"{field}{'' if field in required else '?'}: {_type_of(prop)}")
    return f"{role.name} ({one_line(role.purpose, 100)}) takes {{{', '.join(fields)}}}"
