"""Workflows: a plan as a sequence of phases over registered role cards.

A phase dispatches one role once, or fans out over a list taken from earlier artifacts (with a
concurrency limit), optionally keeps only the top k of its outputs, optionally has every output
checked by an evaluator role, and optionally turns its outputs into cards on the review board.
Each phase declares what one failed item means for the rest (`Strategy`).

`Workflow.check()` refuses a wrong definition before anything runs, naming the card or phase and
the field at fault.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json, to_json, to_jsonable_python

from hubspoke.budget import Budget
from hubspoke.errors import DefinitionError, OutputLookupError
from hubspoke.jsontext import MAX_DEPTH, check_json_value
from hubspoke.roles import Risk, Role
from hubspoke.shape import SHAPE_VERSION, schema_shape, shape_changes
from hubspoke.work import Brief

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from hubspoke.models.offline import Player

__all__ = [
    "ArtifactRef",
    "EvaluationRequest",
    "Phase",
    "RunView",
    "Strategy",
    "TopK",
    "Verdict",
    "Workflow",
    "shape_changes",
    "validate_handoff",
]


_M = TypeVar("_M", bound=BaseModel)


class Strategy(StrEnum):
    """What a phase does when one of its items ends without an accepted output."""

    FAIL_FAST = "fail_fast"
    """Stop dispatching the phase's other items and fail the run."""
    BEST_EFFORT = "best_effort"
    """Keep the siblings going; the phase completes with what was accepted."""
    RETRY = "retry"
    """Run the phase's unaccepted items again (`Phase.retries` times), then best effort."""
    QUORUM = "quorum"
    """The phase succeeds when at least `Phase.quorum` items are accepted."""


class ArtifactRef(BaseModel):
    """A reference to an accepted artifact, handed to synthesis phases."""

    id: str
    phase: str
    item: str
    content: dict[str, Any]


class EvaluationRequest(BaseModel):
    """The input of an evaluator role."""

    objective: str
    input: dict[str, Any]
    output: dict[str, Any]


class Verdict(BaseModel):
    """The output of an evaluator role: a rejection is treated as an invalid output."""

    accept: bool
    critique: str = ""


@dataclass(frozen=True, slots=True)
class TopK:
    """Keep the `k` accepted outputs with the highest `key`, in rank order.

    `run.outputs(phase)` and `run.artifacts(phase)` then give the kept outputs highest key
    first; outputs with equal keys keep their item order (`phase[0]` before `phase[1]`).
    """

    k: int
    key: Callable[[Any], float]


@dataclass(frozen=True, kw_only=True, eq=False)
class Phase:
    """One step of a workflow."""

    name: str
    role: str
    """Name of the role card that does the work."""
    input: Callable[..., Any]
    """`(run) -> input` for one dispatch; with `over`, `(run, element) -> input` per element."""
    over: Callable[[RunView], Sequence[Any]] | None = None
    """`(run) -> elements`: fan out one item per element."""
    concurrency: int = 16
    """Items of a fan-out in flight at once."""
    strategy: Strategy = Strategy.FAIL_FAST
    retries: int = 1
    """With `Strategy.RETRY`: how many more rounds the unaccepted items get."""
    quorum: int | None = None
    """With `Strategy.QUORUM`: how many accepted items make the phase succeed."""
    select: TopK | None = None
    evaluator: str | None = None
    """Name of a role (input `EvaluationRequest`, output `Verdict`) that checks every output."""
    review: bool = False
    """Turn every accepted output into a card in the board's review column."""
    card_title: Callable[[Any], str] | None = None
    objective: str = ""
    """The brief's objective; defaults to the role's purpose."""
    scope: str = ""
    output_format: str = ""


class RunView:
    """What a phase's `input` and `over` functions may read: the run input and accepted outputs.

    Args:
        input: the run's validated input.
        phases: the workflow's phases. Given (as the foreman does), asking for a phase the
            workflow does not have, or for `output()` of a fan-out phase, raises
            `OutputLookupError` instead of answering as if the phase had no output.
    """

    __slots__ = ("_fan_out", "_outputs", "_selected", "input")

    def __init__(self, input: BaseModel, *, phases: Sequence[Phase] = ()) -> None:
        self.input: Any = input
        """The run's validated input (an instance of the workflow's input schema)."""
        self._outputs: dict[str, dict[str, tuple[str, BaseModel]]] = {}
        self._selected: dict[str, list[str]] = {}
        self._fan_out: dict[str, bool] = {p.name: p.over is not None for p in phases}

    def record(self, phase: str, item: str, artifact_id: str, output: BaseModel) -> None:
        """Record an accepted output (the foreman calls this as it accepts one)."""
        self._outputs.setdefault(phase, {})[item] = (artifact_id, output)

    def select(self, phase: str, items: list[str]) -> None:
        """Record a phase's selection (`TopK`), in rank order (the foreman calls this)."""
        self._selected[phase] = items

    def accepted(self, phase: str, item: str) -> tuple[str, BaseModel]:
        """The artifact id and output accepted for one item.

        Raises:
            KeyError: the item has no accepted output.
        """
        return self._outputs[phase][item]

    def _known(self, phase: str) -> None:
        if self._fan_out and phase not in self._fan_out:
            raise OutputLookupError(
                f"the workflow has no phase {phase!r} (phases: {', '.join(self._fan_out)})"
            )

    def _accepted(self, phase: str) -> list[tuple[str, str, BaseModel]]:
        self._known(phase)
        by_item = self._outputs.get(phase, {})
        keys = self._selected.get(phase)
        if keys is None:
            keys = sorted(by_item, key=_item_order)
        return [(k, *by_item[k]) for k in keys if k in by_item]

    def output(self, phase: str) -> Any:
        """The accepted output of a one-dispatch phase (an instance of its role's output).

        Raises:
            OutputLookupError: the workflow has no such phase; the phase fans out (use
                `outputs`); or it has no accepted output.
        """
        self._known(phase)
        if self._fan_out.get(phase):
            raise OutputLookupError(
                f"phase {phase!r} fans out (over=...), one output per element: read them with "
                f"run.outputs({phase!r})"
            )
        accepted = self._accepted(phase)
        if not accepted:
            raise OutputLookupError(f"phase {phase!r} has no accepted output")
        return accepted[0][2]

    def outputs(self, phase: str) -> list[Any]:
        """The accepted outputs of a phase, in item order; with `select=TopK(...)`, the kept
        ones in rank order (highest key first). Empty when nothing was accepted.

        Raises:
            OutputLookupError: the workflow has no such phase.
        """
        return [output for _, _, output in self._accepted(phase)]

    def artifacts(self, phase: str) -> list[ArtifactRef]:
        """References to the accepted artifacts of a phase, for synthesis, in `outputs` order.

        Raises:
            OutputLookupError: the workflow has no such phase.
        """
        return [
            ArtifactRef(id=aid, phase=phase, item=item, content=out.model_dump(mode="json"))
            for item, aid, out in self._accepted(phase)
        ]


def validate_handoff(schema: type[_M], raw: Any) -> _M:
    """Validate what a phase's `input` function returned against its role's input schema,
    strictly and from JSON: the same rules as an output, never a silent coercion.

    `raw` is written as JSON first (a pydantic model by field name and read back by name, a
    dict as it is, with any models inside it by alias), then validated with `strict=True`: a
    string is never read as a number (``{"n": "900"}`` is refused where `n` is an int), while
    what JSON writes as text (dates, enums, UUIDs) is read back as its type.

    Args:
        schema: the role's input schema.
        raw: a model, or a dict (or another value pydantic can write as JSON).

    Returns:
        An instance of `schema`.

    Raises:
        pydantic.ValidationError: `raw` does not match `schema`; or it is not a JSON value the
            journal can hold (NaN or Infinity, nested past `jsontext.MAX_DEPTH` levels, a value
            with no JSON form), as one `json_invalid` error that says so.
    """
    by_name = True if isinstance(raw, BaseModel) else None
    try:
        # The common case, cheaply: written as JSON with NaN and Infinity as such (models inside
        # too: their own serializers would write null), then read back by pydantic's parser,
        # which refuses those and anything nested past 200 levels (its recursion limit is
        # `MAX_DEPTH`). What it refuses takes the slow path below, which says what and where.
        value = to_jsonable_python(raw, by_alias=by_name is None, inf_nan_mode="constants")
        text = to_json(value, inf_nan_mode="constants")
        from_json(text, allow_inf_nan=False)
    except ValueError:
        text = _handoff_text(schema, raw, by_name)
    return schema.model_validate_json(text, strict=True, by_name=by_name)


def _handoff_text(schema: type[BaseModel], raw: Any, by_name: bool | None) -> bytes:
    """`raw` as JSON text, or a `ValidationError` that names what JSON cannot hold and where."""
    try:
        try:
            # JSON's values, NaN and Infinity kept as such (models inside too) to be named below.
            value = to_jsonable_python(raw, by_alias=by_name is None, inf_nan_mode="constants")
        except ValueError as e:
            if "depth" in str(e):  # past what the encoder writes, far past the limit
                raise ValueError(
                    f"it nests more than {MAX_DEPTH} levels deep; a JSON value may nest at most "
                    f"{MAX_DEPTH} levels (objects and lists inside one another)"
                ) from None
            raise ValueError(f"it has no JSON form ({e})") from None
        check_json_value(value)
        return to_json(value)
    except ValueError as e:
        raise ValidationError.from_exception_data(
            schema.__name__,
            [
                {
                    "type": "json_invalid",
                    "loc": (),
                    "input": None,  # hidden: it may be too deep, or too big, to print
                    "ctx": {"error": f"input cannot be journaled: {e}"},
                }
            ],
            hide_input=True,
        ) from None


def _is_whole(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def _item_order(key: str) -> tuple[int, str]:
    start = key.rfind("[")
    if start != -1 and key.endswith("]") and key[start + 1 : -1].isdigit():
        return (int(key[start + 1 : -1]), key)
    return (-1, key)


@dataclass(frozen=True, kw_only=True, eq=False)
class Workflow:
    """A static plan: role cards and the phases that use them."""

    name: str
    input: type[BaseModel]
    """Schema of the run's input; validated before the run starts."""
    roles: Sequence[Role]
    phases: Sequence[Phase]
    budget: Budget = field(default_factory=Budget)
    """The run's limits. `steps` defaults to `max_steps`."""
    max_steps: int = 1000
    """Dispatches a run may make, attempts and evaluations included."""
    max_escalations: int = 25
    """Items a run may escalate to people before it aborts."""
    on_budget_exhausted: Literal["finalize", "abort"] = "finalize"
    """`finalize`: end as `exhausted`, keeping what was accepted; `abort`: end as `aborted`."""
    dispatch_budget: Budget = field(
        default_factory=lambda: Budget(tokens=20_000, usd=0.05, tool_calls=25)
    )
    """Worst case reserved for a dispatch whose role sets no per-dispatch cap on a limited
    dimension."""
    default_model: str | Model = "offline"
    players: Mapping[str, Player] = field(default_factory=dict)
    """Players of the bundled offline model, by role name: every example runs offline."""
    result: Callable[[RunView], Any] | None = None
    """The run's result; required when the workflow is used as a role of another workflow."""
    max_depth: int = 3
    """How deep sub-foremen may nest below this workflow."""
    description: str = ""

    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(name)

    def check(self) -> None:
        """Refuse a wrong workflow, naming the card or phase and the field.

        Checks every card (`Role.check`), then what only the whole workflow can tell: names,
        fallbacks (same input and output schemas, no loops), players (agent roles only), phases
        (roles, strategy options, evaluators, review gates) and sub-workflows (depth, cycles,
        tools), which are checked in turn.

        Raises:
            DefinitionError: on the first problem found.
        """
        self._check(path=())

    def _check(self, path: tuple[Workflow, ...]) -> None:
        """`check()` of this workflow nested below the workflows in `path` (outermost first)."""
        where = f"workflow {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise DefinitionError(where, "name", "give the workflow a name")
        if not (isinstance(self.input, type) and issubclass(self.input, BaseModel)):
            raise DefinitionError(where, "input", "must be a pydantic BaseModel subclass")
        for field_name in ("roles", "phases"):
            if not _is_list(getattr(self, field_name)):
                raise DefinitionError(where, field_name, "must be a list")
        if not self.phases:
            raise DefinitionError(where, "phases", "a workflow needs at least one phase")
        for field_name, least in (("max_steps", 1), ("max_escalations", 0), ("max_depth", 0)):
            if not _is_whole(getattr(self, field_name), least):
                raise DefinitionError(where, field_name, f"must be a whole number ≥ {least}")
        for field_name in ("budget", "dispatch_budget"):
            if not isinstance(getattr(self, field_name), Budget):
                raise DefinitionError(where, field_name, "must be a hubspoke.Budget")
        if self.on_budget_exhausted not in ("finalize", "abort"):
            raise DefinitionError(
                where,
                "on_budget_exhausted",
                f"must be 'finalize' or 'abort', got {self.on_budget_exhausted!r}",
            )
        if self.result is not None and not callable(self.result):
            raise DefinitionError(where, "result", "must be a function of the run view")
        roles: dict[str, Role] = {}
        for i, role in enumerate(self.roles):
            if not isinstance(role, Role):
                raise DefinitionError(where, f"roles[{i}]", f"{role!r} is not a hubspoke.Role")
            role.check()
            if role.name in roles:
                raise DefinitionError(
                    f"role {role.name!r}", "name", "two cards have this name; names must be unique"
                )
            roles[role.name] = role
        for role in roles.values():
            if role.fallback is None:
                continue
            fallback = roles.get(role.fallback)
            if fallback is None:
                raise DefinitionError(
                    f"role {role.name!r}",
                    "fallback",
                    f"no role named {role.fallback!r} in the workflow (roles: {', '.join(roles)})",
                )
            if fallback.input is not role.input:
                raise DefinitionError(
                    f"role {role.name!r}",
                    "fallback",
                    f"fallback {fallback.name!r} takes {fallback.input.__name__}, "
                    f"not {role.input.__name__}: a fallback must take the same input",
                )
            # The same class, not an equal JSON schema: the phases after this one read the
            # output's attributes and validators, whichever role of the chain produced it.
            if fallback.output is not role.output:
                raise DefinitionError(
                    f"role {role.name!r}",
                    "fallback",
                    f"fallback {fallback.name!r} returns {fallback.output.__name__}, not "
                    f"{role.output.__name__}: a fallback must return the same output schema "
                    "(the same class), since what follows reads it in place of this role's",
                )
            seen = {role.name}
            nxt: Role | None = fallback
            while nxt is not None and nxt.fallback is not None:
                if nxt.name in seen:
                    raise DefinitionError(
                        f"role {role.name!r}", "fallback", "fallbacks form a loop"
                    )
                seen.add(nxt.name)
                nxt = roles.get(nxt.fallback)
        self._check_players(roles)
        names: set[str] = set()
        for i, phase in enumerate(self.phases):
            if not isinstance(phase, Phase):
                raise DefinitionError(where, f"phases[{i}]", f"{phase!r} is not a hubspoke.Phase")
            pw = f"phase {phase.name!r}"
            if not isinstance(phase.name, str) or not phase.name or {"[", "#"} & set(phase.name):
                raise DefinitionError(pw, "name", "give the phase a name without '[' or '#'")
            if phase.name in names:
                raise DefinitionError(pw, "name", "two phases have this name")
            names.add(phase.name)
            found = roles.get(phase.role)
            if found is None:
                raise DefinitionError(
                    pw, "role", f"no role named {phase.role!r} (roles: {', '.join(roles)})"
                )
            role = found
            if not callable(phase.input):
                raise DefinitionError(pw, "input", "must be a function of the run view")
            if phase.over is not None and not callable(phase.over):
                raise DefinitionError(pw, "over", "must be a function returning a list")
            if not _is_whole(phase.concurrency, 1):
                raise DefinitionError(pw, "concurrency", "must be a whole number of at least 1")
            if not isinstance(phase.strategy, Strategy):
                raise DefinitionError(
                    pw,
                    "strategy",
                    f"must be a hubspoke.Strategy (e.g. Strategy.BEST_EFFORT), got "
                    f"{phase.strategy!r}",
                )
            if phase.strategy is Strategy.QUORUM and not _is_whole(phase.quorum, 1):
                raise DefinitionError(
                    pw,
                    "quorum",
                    "Strategy.QUORUM needs quorum ≥ 1: the accepted items that make the phase "
                    "succeed",
                )
            if phase.quorum is not None and phase.strategy is not Strategy.QUORUM:
                raise DefinitionError(
                    pw,
                    "quorum",
                    f"quorum only counts with Strategy.QUORUM, and this phase is "
                    f"Strategy.{phase.strategy.name}: set strategy=Strategy.QUORUM, or remove "
                    "quorum",
                )
            if phase.over is None and phase.quorum is not None and phase.quorum > 1:
                raise DefinitionError(
                    pw,
                    "quorum",
                    f"a phase without over= dispatches one item, so quorum={phase.quorum} can "
                    "never be met: use quorum=1, or fan out with over=",
                )
            if phase.strategy is Strategy.RETRY and not _is_whole(phase.retries, 1):
                raise DefinitionError(pw, "retries", "Strategy.RETRY needs retries ≥ 1")
            if phase.select is not None and not (
                isinstance(phase.select, TopK) and _is_whole(phase.select.k, 1)
            ):
                raise DefinitionError(pw, "select", "must be TopK(k, key) with k ≥ 1")
            if not isinstance(phase.review, bool):
                raise DefinitionError(pw, "review", "must be True or False")
            if phase.card_title is not None and not callable(phase.card_title):
                raise DefinitionError(pw, "card_title", "must be a function of the output")
            chain = [role]
            while chain[-1].fallback is not None:
                chain.append(roles[chain[-1].fallback])
            for r in chain:
                if r.risk is Risk.HIGH and not phase.review:
                    raise DefinitionError(
                        pw,
                        "review",
                        f"role {r.name!r} is high-risk: its outputs must pass a review gate "
                        "(set review=True)",
                    )
            if phase.evaluator is not None:
                evaluator = roles.get(phase.evaluator)
                if evaluator is None:
                    raise DefinitionError(pw, "evaluator", f"no role named {phase.evaluator!r}")
                if not issubclass(evaluator.input, EvaluationRequest) or not issubclass(
                    evaluator.output, Verdict
                ):
                    raise DefinitionError(
                        pw,
                        "evaluator",
                        f"role {evaluator.name!r} must take EvaluationRequest and return Verdict",
                    )
        self._check_delegates(roles, (*path, self))

    def shape(self) -> dict[str, Any]:
        """What a resumed run must find unchanged: a JSON-able description of the workflow.

        Holds the workflow's name and input schema; each role's kind (agent, function or
        sub-workflow), input and output JSON schemas, tools (names and argument schemas),
        fallback, risk and sub-workflow (its own shape); each phase's name, role, fan-out,
        strategy, quorum, `TopK` size, evaluator and review gate, in order. Schemas are kept
        without titles, descriptions and examples.

        Left out, so that they may change between a crash and a resume: limits (budgets,
        attempts, retries, time-outs, concurrency), prompts, purposes, model bindings, and the
        code of functions (specialists, `input`, `over`, `key`, `result`): fixing the bug that
        stopped a run and resuming it is the point of resume. Compare two shapes with
        `shape_changes`. Call it on a checked workflow.

        Raises:
            DefinitionError: the sub-workflows form a cycle.
        """
        described = self._shape(path=())
        # Exactly what the journal gives back: lists, not tuples; str keys.
        result: dict[str, Any] = json.loads(json.dumps(described))
        return result

    def _shape(self, path: tuple[Workflow, ...]) -> dict[str, Any]:
        if any(self is outer for outer in path):
            raise DefinitionError(
                f"workflow {self.name!r}", "roles", "sub-workflows form a cycle; check() says where"
            )
        roles: dict[str, Any] = {}
        for role in self.roles:
            child = role.delegate
            kind = "agent" if child is None else "workflow"
            if role.function is not None:
                kind = "function"
            roles[role.name] = {
                "kind": kind,
                "input": schema_shape(role.input),
                "output": schema_shape(role.output),
                "tools": {t.name: schema_shape(t.arguments) for t in role.compiled_tools},
                "fallback": role.fallback,
                "risk": role.risk.value,
                "workflow": child._shape((*path, self)) if isinstance(child, Workflow) else None,
            }
        phases = [
            {
                "name": phase.name,
                "role": phase.role,
                "fan_out": phase.over is not None,
                "strategy": phase.strategy.value,
                "quorum": phase.quorum,
                "select": phase.select.k if phase.select is not None else None,
                "evaluator": phase.evaluator,
                "review": phase.review,
            }
            for phase in self.phases
        ]
        return {
            "version": SHAPE_VERSION,
            "name": self.name,
            "input": schema_shape(self.input),
            "roles": roles,
            "phases": phases,
        }

    def as_role(
        self,
        *,
        name: str,
        purpose: str,
        output: type[BaseModel],
        tools: Sequence[Callable[..., Any]] = (),
        budget: Budget | None = None,
        timeout: float | None = None,
        max_attempts: int = 1,
        risk: Risk = Risk.LOW,
    ) -> Role:
        """This workflow as a role of another workflow: each dispatch runs a sub-foreman.

        The sub-run has its own journal linked to the parent item, a budget carved from the
        parent's reservation for the dispatch, and may only use tools listed here (a subset of
        the parent's permissions).
        """
        return Role(
            name=name,
            purpose=purpose,
            input=self.input,
            output=output,
            tools=tools,
            budget=budget,
            timeout=timeout,
            max_attempts=max_attempts,
            risk=risk,
            delegate=self,
        )

    def _check_players(self, roles: Mapping[str, Role]) -> None:
        where = f"workflow {self.name!r}"
        if not isinstance(self.players, Mapping) or not all(
            isinstance(k, str) and callable(v) for k, v in self.players.items()
        ):
            raise DefinitionError(where, "players", "must map role names to player functions")
        agents = [r.name for r in roles.values() if r.function is None and r.delegate is None]
        for name in self.players:
            found = roles.get(name)
            if found is None:
                problem = f"player {name!r} names no role of the workflow"
            elif found.function is not None:
                problem = f"player {name!r} is for role {name!r}, which a function implements"
            elif found.delegate is not None:
                problem = f"player {name!r} is for role {name!r}, which runs a sub-workflow"
            else:
                continue
            known = ", ".join(agents) if agents else "none"
            raise DefinitionError(
                where,
                "players",
                f"{problem}: the offline model plays agent roles only (agent roles: {known}); "
                "fix the name or remove the player",
            )

    def _check_delegates(self, roles: Mapping[str, Role], path: tuple[Workflow, ...]) -> None:
        """Check the sub-workflows of `roles`; `path` runs from the outermost workflow to this
        one, so `len(path)` is the nesting depth of a sub-run of this workflow."""
        for role in roles.values():
            child = role.delegate
            if child is None:
                continue
            where = f"role {role.name!r}"
            if not isinstance(child, Workflow):
                raise DefinitionError(
                    where,
                    "delegate",
                    f"must be a hubspoke.Workflow, got {child!r}: make the card with "
                    "workflow.as_role(...)",
                )
            if any(child is outer for outer in path):
                start = next(i for i, outer in enumerate(path) if outer is child)
                cycle = " → ".join(repr(w.name) for w in (*path[start:], child))
                raise DefinitionError(
                    where,
                    "delegate",
                    f"sub-workflows form a cycle ({cycle}): a workflow cannot run itself as a "
                    "sub-run, at any depth; break the cycle",
                )
            if len(path) > self.max_depth:
                raise DefinitionError(
                    where, "workflow", f"sub-foremen nest deeper than max_depth={self.max_depth}"
                )
            if child.input is not role.input:
                raise DefinitionError(
                    where, "input", f"must be the sub-workflow's input {child.input.__name__}"
                )
            if child.result is None:
                raise DefinitionError(
                    where, "workflow", f"sub-workflow {child.name!r} needs result=... to return"
                )
            allowed = {t.function for t in role.compiled_tools}
            for child_role in child.roles:
                if not isinstance(child_role, Role):
                    continue  # the child's own check names it
                for tool in child_role.compiled_tools:
                    if tool.function not in allowed:
                        raise DefinitionError(
                            where,
                            "tools",
                            f"sub-workflow role {child_role.name!r} uses tool {tool.name!r}, which "
                            "this card does not allow: a child's permissions are a subset of its "
                            "parent's",
                        )
            child._check(path)

    def brief(self, phase: Phase, role: Role, index: int | None, total: int) -> Brief:
        siblings = ""
        if index is not None and total > 1:
            siblings = (
                f"This is item {index + 1} of {total} in phase '{phase.name}'; the other items "
                "cover the other elements of the list, so stay on this one."
            )
        return Brief(
            objective=phase.objective or role.purpose,
            scope=phase.scope,
            output_format=phase.output_format,
            siblings=siblings,
        )
