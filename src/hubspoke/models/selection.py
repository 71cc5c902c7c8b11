"""Which model plays each agent role, and why: the precedence of bindings.

Highest first:

1. an override: ``--model ROLE=NAME`` or ``--model NAME`` on the CLI, ``Foreman(model=...)``
   from Python, or the bindings recorded with a run that ``hubspoke resume`` continues; a
   binding for the role beats one for every role;
2. the environment: ``HUBSPOKE_MODEL_<ROLE>``, then ``HUBSPOKE_MODEL``;
3. `hubspoke.toml`: ``[models.roles] ROLE = ...`` (a name, or a path such as
   ``"team/researcher"``: `Config.below`), then ``[models] default = ...``;
4. the card: `Role.model`, then the workflow's `default_model`.

`choose_models` works this out once for the agent roles of one workflow; each `Choice` says
where its binding came from and what the model costs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hubspoke.errors import BindingError, DefinitionError
from hubspoke.models.bindings import parse_binding
from hubspoke.models.config import Config
from hubspoke.models.prices import Priced

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from hubspoke.roles import Role

__all__ = ["Choice", "ModelOverride", "binding_name", "choose_models", "is_agent"]


def binding_name(binding: str | Model) -> str:
    """The name a binding is journaled and priced under: the string, or the model's name."""
    return binding if isinstance(binding, str) else binding.model_name


def is_agent(role: Role) -> bool:
    """The role is played by a model (not a function, not a sub-workflow)."""
    return role.function is None and role.delegate is None


@dataclass(frozen=True, slots=True)
class ModelOverride:
    """Bindings that beat the environment, the configuration and the cards.

    Role keys are role names (every role of that name, sub-workflows included) or paths
    through sub-workflow roles (``research/searcher``: the role ``searcher`` of the workflow
    the role ``research`` runs), which beat names.
    """

    every: str | Model | None = None
    """The binding of every agent role (``--model NAME``)."""
    roles: Mapping[str, str | Model] = field(default_factory=dict)
    """Bindings by role name or path (``--model ROLE=NAME``)."""
    source: str = "Foreman(model=...)"
    """Where the override came from, as `Choice.source` says it: ``cli``, ``run``..."""

    @classmethod
    def of(
        cls, value: str | Model | Mapping[str, str | Model] | ModelOverride | None
    ) -> ModelOverride:
        """An override from what `Foreman(model=...)` accepts: a binding for every agent role,
        a mapping of role names (or paths) to bindings, an override, or `None`.

        Raises:
            DefinitionError: a binding string that does not parse.
        """
        if isinstance(value, ModelOverride):
            override = value
        elif value is None:
            override = cls()
        elif isinstance(value, Mapping):
            override = cls(roles=dict(value))
        else:
            override = cls(every=value)
        for key, binding in (("", override.every), *override.roles.items()):
            if isinstance(binding, str):
                try:
                    parse_binding(binding)
                except BindingError as e:
                    target = f"[{key!r}]" if key else ""
                    raise DefinitionError(f"Foreman(model=...){target}", "model", str(e)) from None
        return override

    def below(self, role: str) -> ModelOverride:
        """The override as the sub-workflow run by `role` sees it: names still apply, and the
        paths under `role` lose their first step (and beat names)."""
        prefix = role + "/"
        roles: dict[str, str | Model] = {k: v for k, v in self.roles.items() if "/" not in k}
        roles.update({k[len(prefix) :]: v for k, v in self.roles.items() if k.startswith(prefix)})
        return ModelOverride(self.every, roles, self.source)

    def __bool__(self) -> bool:
        return self.every is not None or bool(self.roles)


@dataclass(frozen=True, slots=True)
class Choice:
    """The binding an agent role plays with, where it came from, and its price."""

    role: str
    binding: str | Model
    source: str
    """``cli``, ``run``, ``Foreman(model=...)``, ``env HUBSPOKE_MODEL_WRITER``,
    ``hubspoke.toml [models.roles]``, ``hubspoke.toml [models] default``, ``card`` or
    ``workflow default``."""
    price: Priced | None
    """`None`: no source prices the model; its cost is unknown."""

    @property
    def name(self) -> str:
        """The binding's name (`binding_name`)."""
        return binding_name(self.binding)

    def to_dict(self) -> dict[str, Any]:
        """As JSON, as a run records it: binding (a model instance: its name, with
        ``instance`` true), source, price (or `None`) and where the price came from."""
        return {
            "binding": self.name,
            "instance": not isinstance(self.binding, str),
            "source": self.source,
            "price": None if self.price is None else self.price.price.to_dict(),
            "price_source": None if self.price is None else self.price.source,
        }


def _price(binding: str | Model, config: Config) -> Priced | None:
    if isinstance(binding, str):
        return config.price(binding)
    found = config.price(binding.model_name)
    if found is None:
        system = getattr(binding, "system", None)
        if isinstance(system, str):
            found = config.price(f"{system}:{binding.model_name}")
    return found


def choose_models(
    roles: Sequence[Role],
    default_model: str | Model,
    *,
    override: ModelOverride | None = None,
    config: Config | None = None,
) -> dict[str, Choice]:
    """The binding of every agent role of one workflow, by precedence (see the module).

    Args:
        roles: the workflow's cards; roles with a function or a sub-workflow are skipped.
        default_model: the workflow's `default_model`.
        override: bindings from the CLI, `Foreman(model=...)` or a resumed run.
        config: the configuration; an empty one by default.

    Returns:
        A `Choice` per agent role, by role name, in card order.

    Raises:
        ConfigError: an environment variable holds no valid binding.
    """
    override = override or ModelOverride()
    config = config or Config()
    chosen: dict[str, Choice] = {}
    for role in roles:
        if not is_agent(role):
            continue
        binding: str | Model | None = override.roles.get(role.name)
        source = override.source
        if binding is None and override.every is not None:
            binding = override.every
        if binding is None and (from_env := config.env_binding(role.name)) is not None:
            variable, binding = from_env
            source = f"env {variable}"
        if binding is None and role.name in config.role_models:
            binding, source = config.role_models[role.name], f"{config.file_name} [models.roles]"
        if binding is None and config.default_model is not None:
            binding, source = config.default_model, f"{config.file_name} [models] default"
        if binding is None and role.model is not None:
            binding, source = role.model, "card"
        if binding is None:
            binding, source = default_model, "workflow default"
        chosen[role.name] = Choice(role.name, binding, source, _price(binding, config))
    return chosen
