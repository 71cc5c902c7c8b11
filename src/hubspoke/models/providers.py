"""Provider models built from bindings, through pydantic-ai's model layer.

Every SDK client is built here, with the base URL and key the configuration gives
(`Config.connection`) and ``max_retries=0``: a 429 or 5xx comes back to the foreman at once,
which journals it and decides what to do (wait, retry, fall back), instead of the SDK sleeping
and retrying out of sight.

- ``openai:NAME``: `OpenAIResponsesModel` (the Responses API);
- ``openai-chat:NAME``: `OpenAIChatModel` (Chat Completions);
- ``anthropic:NAME``: `AnthropicModel` (Messages);
- ``openai-compatible:NAME@URL``: `OpenAIChatModel` with pydantic-ai's
  `OpenAICompatibleProvider`, whose model profile assumes none of the features only OpenAI's
  own API has. ``OPENAI_API_KEY`` is never sent to such a server: name the variable holding its
  key with ``api_key_env`` in its ``[endpoints.NAME]`` table.

A key that is not set does not stop a model from being built (`hubspoke models` lists it as
missing); `hubspoke.models.readiness` refuses the run before it starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hubspoke.errors import DefinitionError
from hubspoke.models.bindings import Binding
from hubspoke.models.config import Config

if TYPE_CHECKING:
    from pydantic_ai.models import Model

__all__ = ["DEFAULT_URLS", "build_model"]

DEFAULT_URLS = {
    "openai": "https://api.openai.com/v1",
    "openai-chat": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
}
"""The providers' own servers, used when neither the configuration nor the standard variables
name another."""

_EXTRAS = {"openai": "openai", "openai-chat": "openai", "openai-compatible": "openai"}
_NO_KEY = "no-key-set"
"""Sent in place of a key that is not set (the SDKs refuse to build a client without one); a
run never starts with it: the readiness check names the missing variable first."""


def build_model(binding: Binding, config: Config) -> Model:
    """The pydantic-ai model of a provider binding.

    Args:
        binding: a parsed binding of a provider (not ``offline`` nor a named model).
        config: where the server's URL and key come from.

    Raises:
        DefinitionError: the provider's extra is not installed (with the install command).
        ConfigError: the binding names an ``[endpoints.NAME]`` table the file lacks.
    """
    connection = config.connection(binding)
    if connection is None:
        raise ValueError(f"{binding.text!r} is not a provider binding")
    key = connection.api_key(config.environ) or _NO_KEY
    base_url = connection.base_url or DEFAULT_URLS.get(binding.provider)
    try:
        if binding.provider == "anthropic":
            from anthropic import AsyncAnthropic
            from pydantic_ai.models.anthropic import AnthropicModel
            from pydantic_ai.providers.anthropic import AnthropicProvider

            anthropic_client = AsyncAnthropic(api_key=key, base_url=base_url, max_retries=0)
            return AnthropicModel(
                binding.model, provider=AnthropicProvider(anthropic_client=anthropic_client)
            )
        from openai import AsyncOpenAI
        from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel

        client = AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0)
        if binding.provider == "openai-compatible":
            from pydantic_ai.providers.openai_compatible import OpenAICompatibleProvider

            compatible = OpenAICompatibleProvider("openai-compatible", openai_client=client)
            return OpenAIChatModel(binding.model, provider=compatible)
        from pydantic_ai.providers.openai import OpenAIProvider

        provider = OpenAIProvider(openai_client=client)
        if binding.provider == "openai-chat":
            return OpenAIChatModel(binding.model, provider=provider)
        return OpenAIResponsesModel(binding.model, provider=provider)
    except ImportError as e:
        extra = _EXTRAS.get(binding.provider, binding.provider)
        raise DefinitionError(
            f"model {binding.text!r}",
            "model",
            f"the {binding.provider} provider is not installed ({e.name or e}); "
            f"run: pip install 'hubspoke[{extra}]'",
        ) from None
