"""What an agent's model exchange records, so that a run can be replayed offline.

Every `model.exchange` an agent specialist traces carries, besides its usage:

- ``request``: the messages this request added to the attempt's conversation (the first
  request's system and user prompts; a later one's tool results), in pydantic-ai's own JSON
  form (`ModelMessagesTypeAdapter`, ``None`` values left out, request parts without their
  timestamps); on the attempt's first request also the ``settings`` sent (``max_tokens``,
  ``temperature``...; header values never, only their names) and the ``tools_digest`` of the
  tools offered, and on the role's first request in the run the ``tools`` themselves
  (pydantic-ai `ToolDefinition`s: name, description, JSON schema; function tools then answers):
  every dispatch of a role in a run offers the same. A later request of the attempt offers the
  same tools and settings: the conversation so far is the earlier exchanges' messages and
  responses, so each request is recorded once, whole.
- ``response``: the `ModelResponse` as received (text parts, tool calls with their arguments
  as the provider sent them, the finish reason, the usage), in the same JSON form.

The journal scrubs secrets from every event (`hubspoke.journal.redaction`), these included.

`REQUEST_SITE` (`hubspoke.specialists.site`, re-exported here) says which request of which
dispatch a model is answering: the agent loop sets it before each request, so a model (the
replay model of `hubspoke.replay`) can find the recorded exchange it stands for.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from typing import Any

from pydantic import TypeAdapter
from pydantic.main import IncEx
from pydantic_ai.messages import (
    ModelMessage,
    ModelMessagesTypeAdapter,
    ModelRequest,
    ModelResponse,
    SystemPromptPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.usage import RequestUsage
from pydantic_core import SchemaSerializer, from_json, to_json

from hubspoke.specialists.site import REQUEST_SITE, RequestSite

__all__ = [
    "REQUEST_SITE",
    "RequestSite",
    "dump_messages",
    "dump_response",
    "dump_settings",
    "dump_tools",
    "load_response",
    "message_json",
    "opening",
    "request_json",
    "response_json",
    "tools_digest",
]


_TOOLS: TypeAdapter[list[ToolDefinition]] = TypeAdapter(list[ToolDefinition])
# One message type each: the same JSON as `ModelMessagesTypeAdapter` gives each element of its
# list (its `kind` included, so that adapter reads it back), at a fraction of the cost of the
# union's serialiser (12 µs against 61 µs a request, measured with `timeit`).
_REQUEST: TypeAdapter[ModelRequest] = TypeAdapter(ModelRequest)
_RESPONSE: TypeAdapter[ModelResponse] = TypeAdapter(ModelResponse)


def _without_timestamps(message: dict[str, Any]) -> dict[str, Any]:
    # A request part's timestamp is when the loop built it: noise that differs on every run.
    parts = message.get("parts")
    if isinstance(parts, list):
        message["parts"] = [
            {k: v for k, v in p.items() if k != "timestamp"} if isinstance(p, dict) else p
            for p in parts
        ]
    message.pop("timestamp", None)
    return message


_EACH_PART: dict[str, IncEx | bool] = {"__all__": {"timestamp"}}
_NO_TIMESTAMPS: dict[str, IncEx | bool] = {"timestamp": True, "parts": _EACH_PART}
_MARK = "hubspoke:user-prompt:4f1c9a0e"
"""Stands for the user prompt in `opening`'s template (a system prompt holding it gets none)."""


def request_json(message: ModelRequest) -> bytes:
    """A request message as `dump_messages` gives it, written as JSON text at once: what the
    agent loop records, without building the JSON values first."""
    return _REQUEST.dump_json(message, exclude_none=True, exclude=_NO_TIMESTAMPS)


def message_json(message: ModelMessage) -> bytes:
    """One message as `dump_messages` gives it, written as JSON text at once."""
    if isinstance(message, ModelRequest):
        return request_json(message)
    return response_json(message)


def _without_hooks(adapter: TypeAdapter[ModelResponse]) -> SchemaSerializer | None:
    """A serialiser of responses without the two Python hooks pydantic-ai's schema runs on
    every response, for the responses where they change nothing (`response_json` checks):

    - the parts go through pydantic's `serialize_sequence_via_list` (any sequence written as a
      list): for a list, the list schema writes the same;
    - the usage goes through a function that adds the attributes set on it beyond its fields
      (none, for every usage pydantic-ai's adapters make) to what its dataclass schema writes.

    Together more than half of a response's JSON cost (97,000 instructions a response with one
    tool call, 37,000 of them the usage's hook). A test holds the two serialisers to the same
    JSON. `None` if the schema is not the shape this expects: `response_json` then uses the
    adapter for every response."""
    schema: Any = copy.deepcopy(adapter.core_schema)
    try:
        fields = {f["name"]: f["schema"] for f in schema["schema"]["schema"]["fields"]}
        parts, usage = fields["parts"], fields["usage"]["schema"]
        each_part = parts["serialization"]
        usage_hook = usage["serialization"]
        if (
            each_part["type"] != "function-wrap"
            or getattr(each_part["function"], "__name__", "") != "serialize_sequence_via_list"
            or usage_hook["type"] != "function-wrap"
            or usage["schema"].get("cls") is not RequestUsage
        ):
            return None
        parts["serialization"] = {"type": "list", "items_schema": each_part["schema"]}
        usage["serialization"] = usage_hook["schema"]
        return SchemaSerializer(schema)
    except (KeyError, TypeError, ValueError):
        return None


_RESPONSE_UNHOOKED = _without_hooks(_RESPONSE)
_USAGE_FIELDS = frozenset(f.name for f in dataclasses.fields(RequestUsage))


def response_json(response: ModelResponse) -> bytes:
    """A response as `dump_response` gives it, written as JSON text at once."""
    usage = response.usage
    if (
        _RESPONSE_UNHOOKED is not None
        and type(response.parts) is list
        and type(usage) is RequestUsage
        and usage.__dict__.keys() <= _USAGE_FIELDS  # no attributes beyond its fields
    ):
        return _RESPONSE_UNHOOKED.to_json(response, exclude_none=True)
    return _RESPONSE.dump_json(response, exclude_none=True)


def opening(system: str) -> tuple[bytes, bytes] | None:
    """`request_json` of an attempt's first request (the system prompt `system`, then a user
    prompt) split around the user prompt's JSON string: the same for every attempt of a role,
    so the loop writes ``before + to_json(user) + after`` instead of serialising the system
    prompt again. `None` if `system` holds the marker the split looks for."""
    template = request_json(
        ModelRequest(parts=[SystemPromptPart(content=system), UserPromptPart(content=_MARK)])
    )
    before, found, after = template.partition(to_json(_MARK))
    if not found or to_json(_MARK)[1:-1] in before + after:
        return None
    return before, after


def dump_messages(messages: list[ModelMessage]) -> list[dict[str, Any]]:
    """Messages as JSON values (pydantic-ai's form), a request's without its timestamps."""
    return [
        _without_timestamps(_REQUEST.dump_python(m, mode="json", exclude_none=True))
        if isinstance(m, ModelRequest)
        else dump_response(m)
        for m in messages
    ]


def dump_response(response: ModelResponse) -> dict[str, Any]:
    """A response as JSON values (pydantic-ai's form), as received."""
    dumped: dict[str, Any] = _RESPONSE.dump_python(response, mode="json", exclude_none=True)
    return dumped


def load_response(data: dict[str, Any]) -> ModelResponse:
    """A response recorded by `dump_response`.

    Raises:
        pydantic.ValidationError: `data` is not a recorded response.
    """
    message = ModelMessagesTypeAdapter.validate_python([data])[0]
    if not isinstance(message, ModelResponse):
        raise ValueError(f"a recorded response has kind 'response', not {message.kind!r}")
    return message


def dump_tools(params: ModelRequestParameters) -> list[dict[str, Any]]:
    """The tools a request offers (function tools, then answers), as JSON values."""
    tools = [*params.function_tools, *params.output_tools]
    dumped: list[dict[str, Any]] = _TOOLS.dump_python(tools, mode="json", exclude_defaults=True)
    return dumped


def tools_digest(tools: list[dict[str, Any]]) -> str:
    """A short digest of the tools a request offers (`dump_tools`), before any scrubbing:
    recorded with every attempt's first request, the tools themselves once per run."""
    return hashlib.sha256(to_json(tools)).hexdigest()[:32]


def dump_settings(settings: ModelSettings) -> dict[str, Any]:
    """The settings sent with a request, as JSON values; of headers only their names (a header
    may carry a key)."""
    out: dict[str, Any] = {}
    for name, value in settings.items():
        if name == "extra_headers" and isinstance(value, dict):
            out[name] = sorted(value)
        else:  # JSON values as they are; anything else (a timeout object) as its repr
            out[name] = from_json(to_json(value, fallback=repr))
    return out
