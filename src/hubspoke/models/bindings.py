"""Model bindings as text: what a card, the CLI, the environment or `hubspoke.toml` may write.

A binding names a provider and a model:

- ``offline``: the bundled deterministic model.
- ``openai:MODEL``: OpenAI's Responses API.
- ``openai-chat:MODEL``: OpenAI's Chat Completions API.
- ``anthropic:MODEL``: Anthropic's Messages API.
- ``openai-compatible:MODEL@URL``: a server speaking Chat Completions (vLLM, Ollama, llama.cpp,
  LM Studio), e.g. ``openai-compatible:qwen2.5:0.5b@http://127.0.0.1:11434/v1``; or
  ``openai-compatible:MODEL@NAME`` for the server described by ``[endpoints.NAME]`` in
  `hubspoke.toml`.
- a bare name without ``:``: a model given to the foreman by that name
  (``Foreman(models={"mine": FunctionModel(...)})``).

Parsing needs no provider SDK and no pydantic-ai: `Workflow.check()` and `hubspoke models` use it
without loading either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from hubspoke.errors import BindingError

__all__ = ["PROVIDERS", "Binding", "BindingError", "parse_binding", "url_problem"]

Provider = Literal["offline", "named", "openai", "openai-chat", "anthropic", "openai-compatible"]

PROVIDERS: tuple[str, ...] = ("openai", "openai-chat", "anthropic", "openai-compatible")
"""The providers a ``provider:model`` binding may name."""

_ENDPOINT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_FORMS = (
    "offline, openai:MODEL, openai-chat:MODEL, anthropic:MODEL or "
    "openai-compatible:MODEL@http://HOST:PORT/v1"
)


@dataclass(frozen=True, slots=True)
class Binding:
    """A parsed binding."""

    text: str
    """The binding as written, e.g. ``"openai-compatible:smollm2@http://127.0.0.1:8080/v1"``."""
    provider: Provider
    model: str
    """The model's name at the provider (the whole text for ``offline`` and named models)."""
    base_url: str | None = None
    """``openai-compatible`` only: the server's URL, when the binding gives one."""
    endpoint: str | None = None
    """``openai-compatible`` only: the name of an ``[endpoints.NAME]`` table in
    `hubspoke.toml`, when the binding names one instead of a URL."""

    @property
    def family(self) -> str:
        """The provider part, as prices are looked up by family: ``openai-compatible``."""
        return "offline" if self.provider == "offline" else self.text.partition(":")[0]


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a server's URL, or `None` when it can: an ``http://`` or
    ``https://`` URL with a host, and a port from 0 to 65535 if it gives one. A URL the
    standard library cannot read (an unclosed ``[`` of an IPv6 host, a port that is not a
    number) is such a problem too, never an exception."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks it: a port out of range raises ValueError
    except ValueError as e:
        return f"{url!r} is not a valid URL ({e})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url!r} is not an http:// or https:// URL with a host"
    return None


def parse_binding(text: str) -> Binding:
    """Parse a binding.

    Args:
        text: the binding as written.

    Raises:
        BindingError: no provider or an unknown one, an empty model name, a server URL without
            ``http://`` or ``https://`` or that does not parse (`url_problem`), whitespace;
            the message says what to write.
    """
    if not isinstance(text, str):
        raise BindingError(f"a binding is a string such as 'openai:gpt-5.4-mini', not {text!r}")
    if not text or text != text.strip() or any(c.isspace() for c in text):
        raise BindingError(f"binding {text!r} is empty or has spaces in it; write {_FORMS}")
    if text == "offline":
        return Binding(text, "offline", text)
    provider, sep, rest = text.partition(":")
    if not sep:
        return Binding(text, "named", text)
    if provider not in PROVIDERS:
        raise BindingError(
            f"binding {text!r} names an unknown provider {provider!r}; write {_FORMS}"
        )
    if provider != "openai-compatible":
        if not rest:
            raise BindingError(f"binding {text!r} has no model name; write {provider}:MODEL")
        if "@" in rest:
            raise BindingError(
                f"binding {text!r}: {provider}: bindings take no server; set the server in "
                f"hubspoke.toml ([endpoints.{provider.removesuffix('-chat')}] base_url = ...) "
                "or use openai-compatible:MODEL@URL for another server"
            )
        return Binding(text, provider, rest)  # type: ignore[arg-type]
    model, at, target = rest.partition("@")
    example = f"openai-compatible:{model or 'MODEL'}@http://127.0.0.1:8080/v1"
    if not model:
        raise BindingError(f"binding {text!r} has no model name; write {example}")
    if not at or not target:
        raise BindingError(f"binding {text!r} names no server; write {example}")
    if "://" in target:
        problem = url_problem(target)
        if problem is not None:
            raise BindingError(f"binding {text!r}: the server {problem}; write {example}")
        return Binding(text, "openai-compatible", model, base_url=target)
    if _ENDPOINT_NAME.match(target) and target != "localhost":
        return Binding(text, "openai-compatible", model, endpoint=target)
    raise BindingError(
        f"binding {text!r}: the server {target!r} has no scheme; write "
        f"openai-compatible:{model}@http://{target} (or https://), or name an "
        "[endpoints.NAME] table of hubspoke.toml"
    )
