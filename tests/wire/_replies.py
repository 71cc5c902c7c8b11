"""What a scripted server answers: each reply is rendered by the server in its own wire format."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DEFAULT_USAGE = (40, 10)
"""The usage a reply reports unless told: 40 input tokens, 10 output tokens."""


@dataclass(frozen=True)
class ToolCall:
    """One tool call in a response: the tool's name and its arguments as the JSON text sent."""

    tool: str
    arguments: str


@dataclass(frozen=True)
class Answer:
    """A 200 response: tool calls, or text when there are none.

    `truncated` makes the finish reason the format's "hit the token limit" (`length`,
    `max_output_tokens`, `max_tokens`); `usage` is ``(input, output)`` tokens, or `None` for a
    response without a usage block at all.
    """

    calls: tuple[ToolCall, ...] = ()
    text: str | None = None
    usage: tuple[int, int] | None = DEFAULT_USAGE
    truncated: bool = False
    cached: int = 0
    """Of the input tokens, how many the provider read from its prompt cache (Chat Completions'
    `usage.prompt_tokens_details.cached_tokens`; the chat format only)."""


@dataclass(frozen=True)
class Fault:
    """An error response: `status`, an optional ``Retry-After`` (seconds), and the body (the
    format's own error shape for that status unless given)."""

    status: int
    retry_after: float | None = None
    body: Any = None


@dataclass(frozen=True)
class Slow:
    """Wait `seconds` before answering `reply`; a client that hangs up meanwhile is noticed,
    recorded as the request's `cancelled`, and gets nothing."""

    seconds: float
    reply: Reply


@dataclass(frozen=True)
class Drop:
    """Close the connection without an answer."""


Reply = Answer | Fault | Slow | Drop


def call(
    tool: str,
    args: dict[str, Any],
    *more_calls: tuple[str, dict[str, Any]],
    usage: tuple[int, int] | None = DEFAULT_USAGE,
    cached: int = 0,
) -> Answer:
    """A response with one tool call, or several: ``call("lookup", {"topic": "tea"},
    ("final_result", {...}))``; finish reason "tool calls"."""
    calls = [ToolCall(tool, json.dumps(args))]
    calls += [ToolCall(name, json.dumps(more)) for name, more in more_calls]
    return Answer(calls=tuple(calls), usage=usage, cached=cached)


def call_raw(
    tool: str, raw_args_text: str, *, usage: tuple[int, int] | None = DEFAULT_USAGE
) -> Answer:
    """A response cut at its token limit: one call to `tool` whose arguments are `raw_args_text`
    as sent (e.g. truncated JSON), with the format's "length" finish reason."""
    return Answer(calls=(ToolCall(tool, raw_args_text),), usage=usage, truncated=True)


def text(content: str, *, usage: tuple[int, int] | None = DEFAULT_USAGE) -> Answer:
    """A response in text, no tool call; finish reason "stop"/"end_turn"."""
    return Answer(text=content, usage=usage)


def fault(status: int, retry_after: float | None = None, body: Any = None) -> Fault:
    """An error answer, e.g. ``fault(429, retry_after=1)``, ``fault(500)``, ``fault(503)``.

    Args:
        status: the HTTP status.
        retry_after: seconds, sent as the ``Retry-After`` header (an int when whole).
        body: the JSON body; the format's own error shape for `status` when `None`.
    """
    return Fault(status, retry_after, body)


def slow(seconds: float, reply: Reply) -> Slow:
    """Answer `reply` after `seconds`; a client disconnect meanwhile is recorded on the request
    (`Request.cancelled`) and ends the wait."""
    return Slow(seconds, reply)


def drop() -> Drop:
    """Close the connection without answering (the client sees a transport error)."""
    return Drop()
