"""Model bindings: from a string on a role card (or the CLI, the environment, `hubspoke.toml`)
to a pydantic-ai model, with its per-request settings and its price.

Bindings are configuration, never code: ``"offline"`` (the bundled deterministic model),
``"openai:gpt-6-luna"`` (Responses), ``"openai-chat:gpt-6-luna"`` (Chat Completions),
``"anthropic:claude-haiku-4-5"``, or an OpenAI-compatible server as
``"openai-compatible:MODEL@http://127.0.0.1:8000/v1"`` (see `bindings`). Which binding plays a
role is decided by precedence (`selection`), from the configuration (`config`); clients are
built in `providers`, checked before a run in `readiness`; prices are in `prices`, per-request
settings in `settings`. Providers import lazily and a missing extra fails with the exact install
command.

pydantic-ai itself imports lazily too: only when a model is resolved or the offline model (or
one of its helpers) is first used, never by importing this package.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hubspoke.errors import BindingError, DefinitionError
from hubspoke.models.bindings import Binding, parse_binding
from hubspoke.models.config import Config, Endpoint, Secrets
from hubspoke.models.prices import Price, price_for, set_price
from hubspoke.models.selection import Choice, ModelOverride, binding_name, choose_models

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from hubspoke.models.offline import OfflineModel, Turn, answer, ask_human, call, refuse

__all__ = [
    "Binding",
    "Choice",
    "Config",
    "Endpoint",
    "Model",
    "ModelOverride",
    "OfflineModel",
    "Price",
    "Secrets",
    "Turn",
    "answer",
    "ask_human",
    "binding_name",
    "call",
    "choose_models",
    "parse_binding",
    "price_for",
    "refuse",
    "resolve_model",
    "set_price",
]
_LAZY: dict[str, str] = {
    "Model": "pydantic_ai.models",
    "OfflineModel": "hubspoke.models.offline",
    "Turn": "hubspoke.models.offline",
    "answer": "hubspoke.models.offline",
    "ask_human": "hubspoke.models.offline",
    "call": "hubspoke.models.offline",
    "refuse": "hubspoke.models.offline",
}
"""Names that need pydantic-ai, and where they live: imported on first use (PEP 562)."""


if not TYPE_CHECKING:
    # Hidden from type checkers: they read the imports above, and a module __getattr__
    # would make them accept any name imported from here.

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'hubspoke.models' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value


def resolve_model(
    binding: str | Model, named: Mapping[str, Model] | None = None, config: Config | None = None
) -> Model:
    """Turn a binding into a model instance.

    Args:
        binding: a model instance, a name in `named`, or a provider string.
        named: models registered by name for this run (e.g. ``{"offline": OfflineModel(...)}``);
            a name found here wins over a provider string.
        config: where servers and keys come from; by default `Config.load()`: the working
            directory's `hubspoke.toml` and the process's environment.

    Raises:
        DefinitionError: a binding that does not parse, a name not in `named`, or the
            provider's extra is not installed.
        ConfigError: the binding names an ``[endpoints.NAME]`` table the configuration lacks,
            or the configuration itself is wrong.
    """
    if not isinstance(binding, str):
        from pydantic_ai.models import Model

        if isinstance(binding, Model):
            return binding
        raise DefinitionError(
            f"model {binding!r}",
            "model",
            "use a binding string such as 'openai:gpt-6-luna' or a pydantic-ai Model",
        )
    if named and binding in named:
        return named[binding]
    try:
        parsed = parse_binding(binding)
    except BindingError as e:
        raise DefinitionError(f"model {binding!r}", "model", str(e)) from None
    if parsed.provider == "offline":
        raise DefinitionError(
            "model 'offline'",
            "model",
            "this run has no offline model; pass one with models={'offline': OfflineModel(...)}",
        )
    if parsed.provider == "named":
        known = ", ".join(sorted(named or {})) or "none"
        raise DefinitionError(
            f"model {binding!r}",
            "model",
            f"no model is registered as {binding!r} (registered: {known}); pass it with "
            f"Foreman(models={{{binding!r}: ...}}) or write provider:model, e.g. "
            "'openai:gpt-6-luna'",
        )
    from hubspoke.models.providers import build_model

    return build_model(parsed, config if config is not None else Config.load())
