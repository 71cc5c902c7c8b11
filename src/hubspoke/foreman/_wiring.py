"""Wiring a workflow, once per foreman: the model overrides checked, each role's ladder, each
role's specialist built (a function, an agent on its model, a sub-foreman), the models checked
before a run (keys, servers, prices)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from hubspoke.errors import DefinitionError
from hubspoke.executors import Executor, Preparing
from hubspoke.journal import Redactor, Store
from hubspoke.models.config import Config
from hubspoke.models.readiness import check_ready, needs_probe
from hubspoke.models.selection import Choice, ModelOverride
from hubspoke.roles import Role
from hubspoke.specialists.base import Specialist
from hubspoke.throttle import Backoff
from hubspoke.workflow import Workflow

from ._run import Wiring

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from hubspoke.models.offline import Player

__all__ = [
    "agent_models",
    "build_agent",
    "check_models",
    "check_override",
    "ladder",
    "redactor_for",
    "wire",
]


def wire(
    workflow: Workflow, store: Store, executor: Executor, build: Callable[[Role], Specialist]
) -> Wiring:
    """The `Wiring` of `workflow`, each role's specialist made by `build`, in the workflow's
    order of roles.

    Raises:
        ExecutorError: the executor cannot run a role's specialist (`Preparing.prepare`).
    """
    roles = {role.name: role for role in workflow.roles}
    wiring = Wiring(
        workflow=workflow,
        store=store,
        executor=executor,
        roles=roles,
        ladders={name: ladder(roles, name) for name in roles},
        specialists={r.name: build(r) for r in workflow.roles},
        tools={r.name: {t.name: t for t in r.compiled_tools} for r in workflow.roles},
        timeouts={r.name: r.dispatch_timeout for r in workflow.roles},
        role_names=frozenset(roles),
    )
    if isinstance(executor, Preparing):  # e.g. Ray: refuse what cannot run there now
        executor.prepare(wiring.specialists, roles)
    return wiring


def redactor_for(secrets: Redactor | None, config: Config) -> Redactor:
    """What scrubs the journal: `secrets` as given, or by default a `Redactor` with the names
    and patterns of the configuration's ``[secrets]`` table added to its rules.

    Raises:
        TypeError: `secrets` is not a `Redactor`.
    """
    if secrets is not None and not isinstance(secrets, Redactor):
        raise TypeError(
            f"secrets must be a Redactor, e.g. Redactor(extra_names=[...]), not "
            f"{type(secrets).__name__}"
        )
    if secrets is None:  # the [secrets] table of hubspoke.toml, if any, adds to the rules
        found = config.secrets
        secrets = Redactor(extra_names=found.names, patterns=found.patterns)
    return secrets


def check_override(override: ModelOverride, workflow: Workflow) -> None:
    """Refuse a `Foreman(model=...)` key that names no agent role of `workflow`.

    Raises:
        DefinitionError: a key names no agent role, by path or by name.
    """
    if not override.roles:
        return
    agents = workflow.agent_roles()
    names = {path.rpartition("/")[2] for path in agents}
    for key in override.roles:
        if key in agents or ("/" not in key and key in names):
            continue
        known = ", ".join(agents) or "none"
        raise DefinitionError(
            f"Foreman(model=...)[{key!r}]",
            "model",
            f"{key!r} names no agent role of workflow {workflow.name!r} (agent roles: "
            f"{known}); a role with a function or a sub-workflow calls no model",
        )


async def check_models(
    choices: dict[str, Choice], config: Config, usd_limited: Mapping[str, str] | None
) -> None:
    """Refuse to start (or resume) a run whose models cannot be used: a key not set, a server
    that does not answer, a USD budget over an unpriced model.

    Raises:
        ModelSetupError: as `check_ready`, every problem named.
    """
    if not needs_probe(choices, config):
        check_ready(choices, config, usd_limited=usd_limited, probe=False)
        return
    # Probing waits on the network: in a worker thread, off the event loop.
    await asyncio.to_thread(check_ready, choices, config, usd_limited=usd_limited)


def ladder(roles: dict[str, Role], name: str) -> tuple[Role, ...]:
    """The role `name` followed by its fallbacks, in order."""
    found = [roles[name]]
    while found[-1].fallback is not None:
        found.append(roles[found[-1].fallback])
    return tuple(found)


def agent_models(
    given: Mapping[str, Model], players: Mapping[str, Player], latency: float
) -> dict[str, Model]:
    """The models agents are built on, by binding: those given, and the bundled offline model
    playing the workflow's `players` unless one is given as ``"offline"``."""
    from hubspoke.models import OfflineModel

    models = dict(given)
    if "offline" not in models:
        models["offline"] = OfflineModel(players, latency=latency)
    return models


def build_agent(
    role: Role,
    choice: Choice,
    models: dict[str, Model],
    given: Mapping[str, Model],
    config: Config,
    *,
    backoff: Backoff | None,
    record: bool,
) -> Specialist:
    """An agent role's specialist on the model its `choice` binds; a provider's client built
    here is kept in `models`, so that roles with the same binding share it."""
    # Only an agent role needs pydantic-ai: imported here, not when hubspoke is.
    from hubspoke.models import resolve_model
    from hubspoke.models.settings import merge_settings
    from hubspoke.specialists.agent import AgentSpecialist, ModelRecipe

    binding = choice.binding
    # A provider's model is built again from its binding where it runs (an executor that
    # sends specialists to other processes); a model given by name, or the offline one,
    # travels as it is.
    recipe = None
    if isinstance(binding, str) and binding != "offline" and binding not in given:
        recipe = ModelRecipe.of(binding, config)
    model = resolve_model(binding, models, config)
    if isinstance(binding, str):
        models[binding] = model  # roles with the same binding share one client
    settings = merge_settings(role, config.settings, config.role_settings.get(role.name))
    price = None if choice.price is None else choice.price.price
    return AgentSpecialist(
        role,
        model,
        price,
        model_settings=settings,
        backoff=backoff,
        record=record,
        recipe=recipe,
    )
