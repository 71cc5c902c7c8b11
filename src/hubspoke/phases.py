"""Phases: the steps of a workflow, and what each declares.

A phase dispatches one role once, or fans out over a list taken from earlier artifacts (with a
concurrency limit), optionally keeps only the top k of its outputs (`TopK`), optionally has every
output checked by an evaluator role (input `EvaluationRequest`, output `Verdict`), and optionally
turns its outputs into cards on the review board. Each phase declares what one failed item means
for the rest (`Strategy`). `check_phase` refuses a wrong phase, naming the field at fault.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from hubspoke.errors import DefinitionError
from hubspoke.roles import Risk, Role
from hubspoke.runview import RunView

__all__ = ["EvaluationRequest", "Phase", "Strategy", "TopK", "Verdict", "check_phase"]


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
    role: str = ""
    """Name of the role card that does the work (not with `plan_by`)."""
    input: Callable[..., Any]
    """`(run) -> input` for one dispatch; with `over`, `(run, element) -> input` per element;
    with `plan_by`, the planner's input."""
    plan_by: str | None = None
    """A planned phase: the name of the role (output `hubspoke.Plan`) that plans its steps;
    the phase runs the plan once it is valid (docs/plans.md)."""
    roles: Sequence[str] = ()
    """With `plan_by`: the roles the plan's steps may use."""
    max_steps: int = 8
    """With `plan_by`: most steps one plan may have."""
    max_parallel: int = 4
    """With `plan_by`: most steps of a plan that may run at once (the width of its graph) and
    that are in flight at once."""
    max_replans: int = 1
    """With `plan_by`: how often the planner is asked for a new plan after one stalls."""
    route_by: str | None = None
    """A routed phase: the name of the role (output `hubspoke.router.Route`) that decides
    each next action, dispatching the roles in `roles` one at a time (docs/router.md). Its
    dispatches are capped by `max_steps`."""
    returns: type[BaseModel] | None = None
    """With `route_by`: the schema a `Finish` result is validated against (`run.output(NAME)`
    then gives it); by default any fields (`hubspoke.router.Result`)."""
    keep_steps: int = 6
    """With `route_by`: how many latest steps the router sees one by one (older ones are
    counted by status), so that its prompt stays bounded however long the run."""
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
    """Turn every accepted output into a card in the board's review column. The review gate
    holds: later phases, the run's result and follow-up runs see such an output only once a
    person approved it (or amended it: they see the amended content). In a planned or routed
    phase, every step's output (and a routed phase's result): a step that takes a reviewed
    step's output starts only once it is approved, and takes it as approved or amended
    (docs/plans.md, docs/router.md)."""
    review_waits: bool = False
    """With `review`: the phase waits until every card it made is decided (approved, amended
    or skipped; a parked card is not decided), and the run waits with it (status `waiting`).
    Without it the run goes on and completes with the cards pending; approvals then start the
    workflow's follow-up runs (`Workflow.follow_ups`)."""
    outbox: bool = False
    """Write every accepted output to the store's outbox (`hubspoke outbox`), in the same
    transaction that accepts it, keyed by run and item: written once, however often the run is
    resumed or its follow-up started again."""
    card_title: Callable[[Any], str] | None = None
    objective: str = ""
    """The brief's objective; defaults to the role's purpose."""
    scope: str = ""
    output_format: str = ""


def _is_whole(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _check_whole(pw: str, phase: Phase, least: int, *names: str) -> None:
    """Each field of `names` is a whole number of at least `least`."""
    for name in names:
        if not _is_whole(getattr(phase, name), least):
            raise DefinitionError(pw, name, f"must be a whole number of at least {least}")


def check_phase(phase: Phase, roles: Mapping[str, Role]) -> None:
    """Refuse a wrong phase, naming the phase and the field: its role, functions, strategy
    options, selection, review gate (every high-risk role of its fallback chain needs one) and
    evaluator.

    Args:
        phase: a phase with a valid, unique name (the workflow checks names).
        roles: the workflow's checked cards by name, their fallbacks included.

    Raises:
        DefinitionError: on the first problem found.
    """
    pw = f"phase {phase.name!r}"
    if phase.route_by is not None:
        _check_routed(phase, roles)
        return
    if phase.plan_by is not None or phase.roles:
        _check_planned(phase, roles)
        return
    if not phase.role:
        raise DefinitionError(
            pw, "role", "give the phase a role (role='writer') or a planner (plan_by='lead')"
        )
    role = roles.get(phase.role)
    if role is None:
        raise DefinitionError(
            pw, "role", f"no role named {phase.role!r} (roles: {', '.join(roles)})"
        )
    if not callable(phase.input):
        raise DefinitionError(pw, "input", "must be a function of the run view")
    if phase.over is not None and not callable(phase.over):
        raise DefinitionError(pw, "over", "must be a function returning a list")
    _check_whole(pw, phase, 1, "concurrency")
    if not isinstance(phase.strategy, Strategy):
        raise DefinitionError(
            pw,
            "strategy",
            f"must be a hubspoke.Strategy (e.g. Strategy.BEST_EFFORT), got {phase.strategy!r}",
        )
    if phase.strategy is Strategy.QUORUM and not _is_whole(phase.quorum, 1):
        raise DefinitionError(
            pw,
            "quorum",
            "Strategy.QUORUM needs quorum ≥ 1: the accepted items that make the phase succeed",
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
    _check_review(pw, phase)
    if (r := _ungated(phase, role, roles)) is not None:
        raise DefinitionError(
            pw,
            "review",
            f"role {r.name!r} is high-risk: its outputs must pass a review gate "
            "(set review=True), or its items a human gate before dispatch "
            "(Role(approve_before_dispatch=True))",
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


def _check_review(pw: str, phase: Phase) -> None:
    """A phase's review gate: its flags are booleans, `review_waits` needs `review`, a gated
    output does not go to the outbox, and `card_title` is a function."""
    for flag in ("review", "review_waits", "outbox"):
        if not isinstance(getattr(phase, flag), bool):
            raise DefinitionError(pw, flag, "must be True or False")
    if phase.review_waits and not phase.review:
        raise DefinitionError(pw, "review_waits", "waits for review cards: set review=True too")
    if phase.outbox and phase.review:
        raise DefinitionError(
            pw,
            "outbox",
            "a review-gated phase's output must not leave before a person approves it: put "
            "outbox=True on the phase of a follow-up workflow (Workflow.follow_ups) instead",
        )
    if phase.card_title is not None and not callable(phase.card_title):
        raise DefinitionError(pw, "card_title", "must be a function of the output")


def _check_steps(
    pw: str, phase: Phase, roles: Mapping[str, Role], chooser: str, step: str, task: str
) -> None:
    """What a planned and a routed phase share: `input` is a function of `task`, the review
    gate is well set, and the roles its `chooser` (``"plan"``, ``"router"``) may use are
    named, known, and every high-risk one of their fallback chains is behind a gate: the
    phase's review gate or a human gate before dispatch."""
    if not callable(phase.input):
        raise DefinitionError(pw, "input", f"must be a function of {task}")
    _check_review(pw, phase)
    if isinstance(phase.roles, str) or not isinstance(phase.roles, Sequence) or not phase.roles:
        raise DefinitionError(
            pw, "roles", f"list the roles the {chooser} may use, e.g. ['searcher']"
        )
    for name in phase.roles:
        role = roles.get(name)
        if role is None:
            raise DefinitionError(
                pw, "roles", f"no role named {name!r} (roles: {', '.join(roles)})"
            )
        if (r := _ungated(phase, role, roles)) is not None:
            raise DefinitionError(
                pw,
                "roles",
                f"role {r.name!r} is high-risk: a {step}'s output must pass the phase's "
                "review gate (set review=True), or its dispatch a human gate "
                "(Role(approve_before_dispatch=True))",
            )


def _ungated(phase: Phase, role: Role, roles: Mapping[str, Role]) -> Role | None:
    """The first high-risk role of `role`'s fallback chain whose output passes neither the
    phase's review gate nor a human gate before its dispatch, if any."""
    chain = [role]
    while chain[-1].fallback is not None:
        chain.append(roles[chain[-1].fallback])
    ungated = (r for r in chain if r.risk is Risk.HIGH and not r.approve_before_dispatch)
    return None if phase.review else next(ungated, None)


def _check_routed(phase: Phase, roles: Mapping[str, Role]) -> None:
    """A routed phase: its router returns a `Route`, its roles exist, its limits are whole."""
    from hubspoke.router import Route, RouterView

    pw = f"phase {phase.name!r}"
    if phase.role or phase.plan_by is not None:
        raise DefinitionError(
            pw,
            "route_by",
            "a routed phase's router names the roles it dispatches: remove role= and plan_by=",
        )
    router = roles.get(phase.route_by or "")
    if router is None:
        raise DefinitionError(
            pw, "route_by", f"no role named {phase.route_by!r} (roles: {', '.join(roles)})"
        )
    if not issubclass(router.output, Route) or not issubclass(router.input, RouterView):
        raise DefinitionError(
            pw,
            "route_by",
            f"role {router.name!r} takes {router.input.__name__} and returns "
            f"{router.output.__name__}: a router takes hubspoke.RouterView and returns "
            "hubspoke.Route",
        )
    if router.tools:
        raise DefinitionError(
            pw,
            "route_by",
            f"role {router.name!r} has tools: a router is offered only its answers (at most 4 "
            "actions), so give it none",
        )
    _check_steps(pw, phase, roles, "router", "router's step", "the run view (the task)")
    if (r := _ungated(phase, router, roles)) is not None:  # the phase's result is its output
        raise DefinitionError(
            pw,
            "route_by",
            f"role {r.name!r} is high-risk: its result must pass the phase's review gate "
            "(set review=True), or its turns a human gate before dispatch "
            "(Role(approve_before_dispatch=True))",
        )
    if phase.route_by in phase.roles:
        raise DefinitionError(pw, "roles", "the router cannot dispatch itself: remove it")
    _check_whole(pw, phase, 1, "max_steps", "keep_steps")
    if phase.returns is not None and not (
        isinstance(phase.returns, type) and issubclass(phase.returns, BaseModel)
    ):
        raise DefinitionError(pw, "returns", "must be a pydantic model class (the result's schema)")
    for field_name, bad in (
        ("over", phase.over is not None),
        ("select", phase.select is not None),
        ("evaluator", phase.evaluator is not None),
        ("strategy", phase.strategy not in (Strategy.FAIL_FAST,)),
    ):
        if bad:
            raise DefinitionError(
                pw,
                field_name,
                "a routed phase takes no over, select, evaluator or strategy: its router "
                "decides each step; gate steps with review=True or with human gates before "
                "dispatch (Role(approve_before_dispatch=True))",
            )


def _check_planned(phase: Phase, roles: Mapping[str, Role]) -> None:
    """A planned phase: its planner returns a `Plan`, its roles exist, its limits are whole."""
    from hubspoke.plans import Plan

    pw = f"phase {phase.name!r}"
    if phase.plan_by is None:
        raise DefinitionError(pw, "roles", "roles= lists what a planner may use: set plan_by=")
    if phase.role:
        raise DefinitionError(
            pw, "role", "a planned phase's steps name their roles: remove role= (plan_by= plans)"
        )
    planner = roles.get(phase.plan_by)
    if planner is None:
        raise DefinitionError(
            pw, "plan_by", f"no role named {phase.plan_by!r} (roles: {', '.join(roles)})"
        )
    if not issubclass(planner.output, Plan):
        raise DefinitionError(
            pw,
            "plan_by",
            f"role {planner.name!r} returns {planner.output.__name__}: a planner returns "
            "hubspoke.Plan (or a subclass)",
        )
    _check_steps(pw, phase, roles, "plan", "planned step", "the run view")
    _check_whole(pw, phase, 1, "max_steps", "max_parallel")
    _check_whole(pw, phase, 0, "max_replans")
    for field_name, bad in (
        ("over", phase.over is not None),
        ("select", phase.select is not None),
        ("quorum", phase.strategy is Strategy.QUORUM),
        ("strategy", phase.strategy is Strategy.RETRY),
    ):
        if bad:
            raise DefinitionError(
                pw,
                field_name,
                "a planned phase takes no over, select, quorum or retry strategy: its plan "
                "decides its steps; use Strategy.FAIL_FAST or Strategy.BEST_EFFORT, and gate "
                "steps with review=True or with human gates before dispatch "
                "(Role(approve_before_dispatch=True))",
            )
    if phase.evaluator is not None:
        evaluator = roles.get(phase.evaluator)
        if evaluator is None or not (
            issubclass(evaluator.input, EvaluationRequest) and issubclass(evaluator.output, Verdict)
        ):
            raise DefinitionError(
                pw, "evaluator", "must name a role taking EvaluationRequest and returning Verdict"
            )
