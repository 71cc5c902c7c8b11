"""Model bindings: from a string on a role card to a pydantic-ai model.

Bindings are configuration, never code: ``"offline"`` (the bundled deterministic model),
``"openai:gpt-4o-mini"``, ``"anthropic:claude-haiku-4-5"``, or an OpenAI-compatible local
server as ``"openai-compatible:MODEL@http://127.0.0.1:8000/v1"``. Providers import lazily and
a missing extra fails with the exact install command.

pydantic-ai itself imports lazily too: only when a model is resolved or the offline model (or
one of its helpers) is first used, never by importing this package.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hubspoke.errors import DefinitionError
from hubspoke.models.prices import Price, price_for, set_price

if TYPE_CHECKING:
    from pydantic_ai.models import Model

    from hubspoke.models.offline import OfflineModel, Turn, answer, ask_human, call, refuse

__all__ = [
    "Model",
    "OfflineModel",
    "Price",
    "Turn",
    "answer",
    "ask_human",
    "binding_name",
    "call",
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


_EXTRAS = {"openai": "openai", "openai-compatible": "openai", "anthropic": "anthropic"}


def binding_name(binding: str | Model) -> str:
    """The name a binding is journaled and priced under: the string, or the model's name."""
    return binding if isinstance(binding, str) else binding.model_name


def resolve_model(binding: str | Model, named: Mapping[str, Model] | None = None) -> Model:
    """Turn a binding into a model instance.

    Args:
        binding: a model instance, a name in `named`, or a provider string.
        named: models registered by name for this run (e.g. ``{"offline": OfflineModel(...)}``).

    Raises:
        DefinitionError: unknown binding, or the provider's extra is not installed.
    """
    if not isinstance(binding, str):
        from pydantic_ai.models import Model

        if isinstance(binding, Model):
            return binding
        raise DefinitionError(
            f"model {binding!r}",
            "model",
            "use a binding string such as 'openai:gpt-4o-mini' or a pydantic-ai Model",
        )
    if named and binding in named:
        return named[binding]
    if binding == "offline":
        raise DefinitionError(
            "model 'offline'",
            "model",
            "this run has no offline model; pass one with models={'offline': OfflineModel(...)}",
        )
    provider, sep, name = binding.partition(":")
    if not sep or not name:
        raise DefinitionError(
            f"model {binding!r}",
            "model",
            "use 'offline', 'provider:model' (e.g. 'openai:gpt-4o-mini') or "
            "'openai-compatible:MODEL@http://127.0.0.1:8000/v1'",
        )
    try:
        if provider == "openai-compatible":
            model_name, at, base_url = name.partition("@")
            if not at:
                raise DefinitionError(
                    f"model {binding!r}",
                    "model",
                    "write the server as 'openai-compatible:MODEL@http://host:port/v1'",
                )
            from openai import AsyncOpenAI
            from pydantic_ai.models.openai import OpenAIChatModel
            from pydantic_ai.providers.openai import OpenAIProvider

            api_key = os.environ.get("OPENAI_API_KEY", "not-needed-for-local-servers")
            # No retries inside the SDK: a 429 or 5xx comes back to the foreman at once, which
            # journals it and walks the role's failure ladder (retry, fallback, escalate) within
            # the budget, instead of the SDK sleeping and retrying out of sight.
            client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0)
            return OpenAIChatModel(model_name, provider=OpenAIProvider(openai_client=client))
        from pydantic_ai.models import infer_model

        return infer_model(binding)
    except ImportError as e:
        extra = _EXTRAS.get(provider, provider)
        raise DefinitionError(
            f"model {binding!r}",
            "model",
            f"the {provider} provider is not installed ({e.name or e}); "
            f"run: pip install 'hubspoke[{extra}]'",
        ) from None
    except DefinitionError:
        raise
    except Exception as e:
        raise DefinitionError(f"model {binding!r}", "model", str(e)) from None
