"""Per-request settings: max output tokens, temperature and the like, from the card or the
configuration, sent with every model request of an agent role.

They are pydantic-ai `ModelSettings` keys. A role's settings are merged key by key, later
winning: the card's (`Role.model_settings`), then ``[models.settings]`` of `hubspoke.toml`
(every agent role), then ``[models.settings.ROLE]`` (that role). The configuration wins over
the card as it does for bindings: whoever runs the workflow has the last word.

``max_tokens`` is also the worst case the budget reserves for each response: a request is
refused before it is sent if its prompt plus ``max_tokens`` would pass the dispatch's
allowance. Without it an agent asks for at most `DEFAULT_MAX_TOKENS` (1,024) output tokens.

Left out on purpose: ``timeout`` (the role's time-out governs a dispatch), ``max_retries`` (the
foreman handles provider faults, not the SDK) and ``tool_choice`` (the agent loop decides what a
request offers). Keys starting with ``openai_`` or ``anthropic_`` pass through unchecked to that
provider's model (e.g. ``openai_reasoning_effort``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hubspoke.roles import Role

__all__ = ["DEFAULT_MAX_TOKENS", "SETTINGS", "merge_settings", "settings_problem"]

DEFAULT_MAX_TOKENS = 1024
"""The most one response may use when neither the card nor the configuration sets
``max_tokens``: also the output part of the worst case reserved for each request."""

_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
_WHOLE: dict[str, int | None] = {"max_tokens": 1, "top_k": 1, "seed": None}
_OTHER = ("stop_sequences", "parallel_tool_calls", "extra_headers", "extra_body")
_PREFIXES = ("openai_", "anthropic_")

SETTINGS: tuple[str, ...] = (*_WHOLE, *_RANGES, *_OTHER)
"""The settings a card or the configuration may give (besides ``openai_*``/``anthropic_*``)."""

_REFUSED = {
    "timeout": "a dispatch's time-out is the role's `timeout` (or `budget.seconds`)",
    "request_timeout": "a dispatch's time-out is the role's `timeout` (or `budget.seconds`)",
    "max_retries": "the foreman, not the provider's SDK, handles provider faults",
    "tool_choice": "the agent loop decides what each request offers",
}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _problem(key: str, value: object) -> str | None:
    if key in _WHOLE:
        least = _WHOLE[key]
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{key} must be a whole number, got {value!r}"
        if least is not None and value < least:
            return f"{key} must be at least {least}, got {value!r}"
    elif key in _RANGES:
        low, high = _RANGES[key]
        if not _is_number(value) or not low <= value <= high:  # type: ignore[operator]
            return f"{key} must be a number from {low:g} to {high:g}, got {value!r}"
    elif key == "stop_sequences":
        if isinstance(value, str) or not isinstance(value, list | tuple):
            return f"stop_sequences must be a list of strings, got {value!r}"
        if not all(isinstance(x, str) and x for x in value):
            return "stop_sequences must be a list of non-empty strings"
    elif key == "parallel_tool_calls":
        if not isinstance(value, bool):
            return f"parallel_tool_calls must be true or false, got {value!r}"
    elif key == "extra_headers":
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            return "extra_headers must map header names to strings"
    elif key == "extra_body" and not isinstance(value, Mapping):
        return "extra_body must be a table (a dict) merged into the request's body"
    return None


def settings_problem(settings: object) -> str | None:
    """What is wrong with a set of per-request settings, or `None` if nothing.

    The text names the key, what it must be and, for an unknown key, the keys there are.
    """
    if not isinstance(settings, Mapping):
        return f"must be a dict of model settings such as {{'max_tokens': 800}}, got {settings!r}"
    for key, value in settings.items():
        if not isinstance(key, str):
            return f"setting names are strings, got {key!r}"
        if key in _REFUSED:
            return f"{key} cannot be set per request: {_REFUSED[key]}"
        if key.startswith(_PREFIXES):
            continue
        if key not in SETTINGS:
            return (
                f"unknown setting {key!r}; use {', '.join(SETTINGS)}, or a provider's own "
                "key starting with openai_ or anthropic_"
            )
        problem = _problem(key, value)
        if problem is not None:
            return problem
    return None


def merge_settings(
    role: Role,
    every_role: Mapping[str, Any] | None = None,
    this_role: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A role's settings: the card's, then those for every agent role, then the role's own.

    Args:
        role: the card (its `model_settings`).
        every_role: ``[models.settings]`` of the configuration.
        this_role: ``[models.settings.ROLE]`` of the configuration.
    """
    merged: dict[str, Any] = dict(role.model_settings or {})
    merged.update(every_role or {})
    merged.update(this_role or {})
    return merged
