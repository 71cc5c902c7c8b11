"""Workflows: a plan as a sequence of phases over registered role cards.

A workflow names its role cards and its phases (`hubspoke.phases`), the run's input schema, its
limits and, to be used as a role of another workflow, its result. `Workflow.check()` refuses a
wrong definition before anything runs, naming the card or phase and the field at fault;
`Workflow.shape()` describes what a resumed run must find unchanged.

The names a workflow is written with are importable from here too: `Phase`, `Strategy`, `TopK`,
`EvaluationRequest` and `Verdict` (`hubspoke.phases`), `RunView` and `ArtifactRef`
(`hubspoke.runview`), `validate_handoff` (`hubspoke.handoff`) and `shape_changes`
(`hubspoke.shape`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from hubspoke.budget import Budget
from hubspoke.errors import BindingError, DefinitionError
from hubspoke.handoff import validate_handoff
from hubspoke.models.bindings import parse_binding
from hubspoke.models.config import Config
from hubspoke.models.selection import Choice, ModelOverride, choose_models, is_agent
from hubspoke.models.settings import settings_problem
from hubspoke.phases import EvaluationRequest, Phase, Strategy, TopK, Verdict, check_phase
from hubspoke.roles import Risk, Role
from hubspoke.runview import ArtifactRef, RunView
from hubspoke.shape import SHAPE_VERSION, schema_shape, shape_changes
from hubspoke.tools import Tool
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


def _is_whole(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _is_list(value: object) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


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
    """The binding of agent roles whose card names none (and that nothing overrides: see
    docs/models.md for the precedence)."""
    players: Mapping[str, Player] = field(default_factory=dict)
    """Players of the bundled offline model, by role name: every example runs offline."""
    result: Callable[[RunView], Any] | None = None
    """The run's result; required when the workflow is used as a role of another workflow."""
    max_depth: int = 3
    """How deep sub-foremen may nest below this workflow."""
    description: str = ""
    follow_ups: Mapping[str, Workflow] = field(default_factory=dict)
    """What an approved card starts, by the name of the (review-gated) phase that made it: a
    separate run of that workflow, with its own foreman, on the approved (or amended) output
    (the sales pipeline's sending stage). One run per card, started by
    `hubspoke.followups.run_follow_ups` (the CLI does after every approval): however often
    that is called, or after a crash between the approval and the follow-up, it runs once."""

    def _check_follow_ups(self, path: tuple[Workflow, ...]) -> None:
        """A follow-up belongs to a review-gated phase, and its workflow takes that phase's
        output as its input."""
        phases = {p.name: p for p in self.phases}
        for name, follow in self.follow_ups.items():
            where = f"workflow {self.name!r}"
            phase = phases.get(name)
            if phase is None:
                raise DefinitionError(
                    where, "follow_ups", f"no phase named {name!r} (phases: {', '.join(phases)})"
                )
            if not phase.review:
                raise DefinitionError(
                    where,
                    "follow_ups",
                    f"phase {name!r} has no review gate: a follow-up starts from an approved "
                    "card (set review=True on the phase)",
                )
            if not phase.role:  # planned or routed: its steps' outputs have several schemas
                raise DefinitionError(
                    where,
                    "follow_ups",
                    f"phase {name!r} is planned or routed: a follow-up starts from a phase "
                    "with one role (role=...), whose outputs share one schema",
                )
            if not isinstance(follow, Workflow):
                raise DefinitionError(where, "follow_ups", f"{follow!r} is not a Workflow")
            if follow is self or follow in path:
                raise DefinitionError(where, "follow_ups", f"{follow.name!r} follows itself")
            output = self.role(phase.role).output
            if not issubclass(output, follow.input):
                raise DefinitionError(
                    where,
                    "follow_ups",
                    f"follow-up {follow.name!r} takes {follow.input.__name__}, but phase "
                    f"{name!r} gives {output.__name__}",
                )
            follow.check()

    def role(self, name: str) -> Role:
        for role in self.roles:
            if role.name == name:
                return role
        raise KeyError(name)

    def agent_roles(self) -> dict[str, Role]:
        """Every agent role of this workflow and of its sub-workflows, by path: the role's
        name here, ``research/searcher`` for the role ``searcher`` of the workflow that the
        role ``research`` runs (at any depth). Call it on a checked workflow."""
        found: dict[str, Role] = {}
        for role in self.roles:
            if is_agent(role):
                found[role.name] = role
            elif isinstance(role.delegate, Workflow):
                for path, inner in role.delegate.agent_roles().items():
                    found[f"{role.name}/{path}"] = inner
        return found

    def usd_limited(self, budget: Budget | None = None) -> dict[str, str]:
        """The agent roles (by path, as `agent_roles`) whose spending a USD limit bounds, each
        with the budget that does: the run's (`budget`, else the workflow's own), a role's
        per-dispatch or per-run budget, a sub-workflow's or its role's budget. Their models
        need a known price, or the limit could never bind.

        Args:
            budget: the run's budget; the workflow's `budget` by default.
        """
        run = self.budget if budget is None else budget
        why = None if run.usd is None else f"the run's budget (usd={run.usd:g})"
        return self._usd_limited(why)

    def _usd_limited(self, why: str | None) -> dict[str, str]:
        found: dict[str, str] = {}
        for role in self.roles:
            reason = why
            for field_name in ("budget", "run_budget"):
                limit: Budget | None = getattr(role, field_name)
                if reason is None and limit is not None and limit.usd is not None:
                    reason = f"role {role.name!r}'s {field_name} (usd={limit.usd:g})"
            if is_agent(role):
                if reason is not None:
                    found[role.name] = reason
            elif isinstance(role.delegate, Workflow):
                child = role.delegate
                if reason is None and child.budget.usd is not None:
                    reason = f"workflow {child.name!r}'s budget (usd={child.budget.usd:g})"
                for path, inner in child._usd_limited(reason).items():
                    found[f"{role.name}/{path}"] = inner
        return found

    def model_choices(
        self,
        model: str | Model | Mapping[str, str | Model] | ModelOverride | None = None,
        config: Config | None = None,
    ) -> dict[str, Choice]:
        """The binding every agent role would play with, where it came from and its price, by
        path (as `agent_roles`): what `hubspoke models` lists and a run records.

        Args:
            model: an override, as `Foreman(model=...)` takes it.
            config: the configuration; an empty one by default.

        Raises:
            DefinitionError: an override binding that does not parse.
            ConfigError: an environment variable holds no valid binding, or a role key of the
                configuration names no agent role (`Config.check_roles`).
        """
        config = config or Config()
        config.check_roles(self.agent_roles(), self.name)
        return self._model_choices(ModelOverride.of(model), config)

    def _model_choices(self, override: ModelOverride, config: Config) -> dict[str, Choice]:
        found = dict(
            choose_models(self.roles, self.default_model, override=override, config=config)
        )
        for role in self.roles:
            if isinstance(role.delegate, Workflow):
                inner = role.delegate._model_choices(
                    override.below(role.name), config.below(role.name)
                )
                found.update({f"{role.name}/{path}": c for path, c in inner.items()})
        return found

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
        self._check_models(roles)
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
            check_phase(phase, roles)
        for phase in self.phases:
            for by, suffix, who in (
                (phase.plan_by, ":plan", "planner"),
                (phase.route_by, ":route", "router"),
            ):
                if by is not None and f"{phase.name}{suffix}" in names:
                    raise DefinitionError(
                        f"phase {phase.name + suffix!r}",
                        "name",
                        f"the {who} of phase {phase.name!r} runs as phase "
                        f"{phase.name + suffix!r}: rename one of them",
                    )
        self._check_follow_ups(path)
        self._check_delegates(roles, (*path, self))

    def shape(self) -> dict[str, Any]:
        """What a resumed run must find unchanged: a JSON-able description of the workflow.

        Holds the workflow's name and input schema; each role's kind (agent, function or
        sub-workflow), input and output JSON schemas, tools (names and argument schemas),
        fallback, risk and sub-workflow (its own shape); each phase's name, role, fan-out,
        strategy, quorum, `TopK` size, evaluator and review gate, in order (a planned phase's
        planner and roles; a routed phase's router, roles and result schema). Schemas are kept
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
                **(
                    {"plan_by": phase.plan_by, "roles": sorted(phase.roles)}
                    if phase.plan_by is not None
                    else {}
                ),
                **(
                    {
                        "route_by": phase.route_by,
                        "roles": sorted(phase.roles),
                        "returns": schema_shape(phase.returns) if phase.returns else None,
                    }
                    if phase.route_by is not None
                    else {}
                ),
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
        tools: Sequence[Callable[..., Any] | Tool] = (),
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

    def _check_models(self, roles: Mapping[str, Role]) -> None:
        """Bindings that parse (a provider we know, a model name, a server with its scheme)
        and per-request settings we know."""
        bindings: list[tuple[str, str, object]] = [
            (f"workflow {self.name!r}", "default_model", self.default_model)
        ]
        bindings += [(f"role {r.name!r}", "model", r.model) for r in roles.values()]
        for where, field_name, binding in bindings:
            if isinstance(binding, str):
                try:
                    parse_binding(binding)
                except BindingError as e:
                    raise DefinitionError(where, field_name, str(e)) from None
        for role in roles.values():
            if role.model_settings is not None:
                problem = settings_problem(role.model_settings)
                if problem is not None:
                    raise DefinitionError(f"role {role.name!r}", "model_settings", problem)

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
