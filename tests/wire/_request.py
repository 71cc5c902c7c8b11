"""A request as a server received it, read into one shape whatever the wire format."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Format = Literal["chat", "responses", "anthropic"]
ToolChoice = Literal["auto", "required", "none"] | dict[str, str] | None

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
"""A tool name every format accepts. OpenAI: "Must be a-z, A-Z, 0-9, or contain underscores and
dashes, with a maximum length of 64" (API reference, `tools[].function.name`; the SDK's
`openai/types/shared_params/function_definition.py`). Anthropic: "Must match the regex
`^[a-zA-Z0-9_-]{1,64}$`" (docs.claude.com, tool use, "Specifying client tools")."""


@dataclass(frozen=True)
class ToolResult:
    """A tool result sent back to the model: the id of the call it answers, the tool's name
    (from that call), and its content (parsed JSON when it parses, else the text)."""

    call_id: str
    tool: str | None
    content: Any


@dataclass(frozen=True)
class Message:
    """One message of the conversation, normalised.

    `role` is ``system``, ``user``, ``assistant`` or ``tool`` (a tool result, whatever the format
    calls it). `content` is the text when the message is only text; otherwise a list of parts,
    each ``{"text": ...}``, ``{"call": name, "id": ..., "arguments": text}`` or
    ``{"result": call_id, "content": ...}``.
    """

    role: str
    content: str | list[dict[str, Any]]


class Refusal(Exception):
    """What the real provider would refuse: the HTTP status, its message and error type."""

    def __init__(self, message: str, *, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind


@dataclass
class Request:
    """One request a server received, read the same way whatever its wire format.

    Fields a refused request could not be read for keep their defaults.
    """

    format: Format
    body: Any
    """The request's JSON body as sent (`None` if it was not JSON)."""
    headers: dict[str, str]
    """The request's headers, names in lower case."""
    path: str = ""
    model: str | None = None
    tools: list[str] = field(default_factory=list)
    """The declared tools' names, in the order declared."""
    tool_schemas: dict[str, Any] = field(default_factory=dict)
    """Each declared tool's JSON schema for its arguments, by name."""
    tool_choice: ToolChoice = None
    """``"auto"``, ``"required"`` (OpenAI's "required", Anthropic's "any"), ``"none"``,
    ``{"name": tool}`` for one named tool, or `None` when the request sets none."""
    max_tokens: int | None = None
    """The format's max output field (`max_completion_tokens` or `max_tokens`,
    `max_output_tokens`, `max_tokens`), or `None` when absent."""
    temperature: float | None = None
    messages: list[Message] = field(default_factory=list)
    tool_results: list[ToolResult] = field(default_factory=list)
    """The tool results this request sends back, in order."""
    refused: str | None = None
    """Why the server refused the request (the error message it answered), or `None`."""
    status: int | None = None
    """The status the server answered with (`None` for a dropped connection)."""
    cancelled: bool = False
    """The client hung up while a `slow` reply was waiting."""

    @property
    def work(self) -> dict[str, Any]:
        """The hubspoke work item: the JSON object in the first user message's text.

        Raises:
            LookupError: no user message whose text is a JSON object.
        """
        for message in self.messages:
            if message.role != "user":
                continue
            texts = (
                [message.content]
                if isinstance(message.content, str)
                else [p["text"] for p in message.content if "text" in p]
            )
            for text in texts:
                try:
                    work = json.loads(text)
                except ValueError:
                    continue
                if isinstance(work, dict):
                    return work
        raise LookupError(f"no user message holds a JSON work item: {self.messages!r:.300}")

    @property
    def texts(self) -> list[str]:
        """Every text of the conversation, in order (system, user, assistant)."""
        out: list[str] = []
        for message in self.messages:
            if isinstance(message.content, str):
                out.append(message.content)
            else:
                out += [p["text"] for p in message.content if "text" in p]
        return out


def parse_content(text: Any) -> Any:
    """A tool result's content: parsed JSON when it is JSON text, else as given."""
    if isinstance(text, str):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def check_tool_name(name: Any, where: str) -> str:
    """`name`, or a refusal if the providers refuse it (see `TOOL_NAME`)."""
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise Refusal(
            f"Invalid '{where}': string does not match pattern. Expected a string that "
            f"matches the pattern '^[a-zA-Z0-9_-]{{1,64}}$', got {name!r}."
        )
    return name


def check_number(value: Any, where: str, low: float, high: float | None = None) -> None:
    """Refuse a number field outside ``[low, high]`` (or not a number)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Refusal(f"Invalid type for '{where}': expected a number, got {value!r}.")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise Refusal(f"Invalid '{where}': expected a value {bound}, but got {value} instead.")


def check_strict_schema(schema: Any, tool: str, path: str = "") -> None:
    """Refuse a schema OpenAI's strict mode refuses: every object must set
    ``additionalProperties: false`` and list every property in ``required`` (OpenAI API
    reference, function calling guide, "Strict mode"; structured outputs guide, "Supported
    schemas")."""
    if isinstance(schema, list):
        for i, sub in enumerate(schema):
            check_strict_schema(sub, tool, f"{path}/{i}")
        return
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "object" or "properties" in schema:
        where = f"Invalid schema for function '{tool}': In context=({path or '()'})"
        if schema.get("additionalProperties") is not False:
            raise Refusal(f"{where}, 'additionalProperties' is required to be supplied and false.")
        props = schema.get("properties", {})
        missing = [p for p in props if p not in schema.get("required", [])]
        if missing:
            raise Refusal(
                f"{where}, 'required' is required to be supplied and to be an array "
                f"including every key in properties. Missing {missing[0]!r}."
            )
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        subs = schema.get(key)
        if isinstance(subs, dict):
            for name, sub in subs.items():
                check_strict_schema(sub, tool, f"{path}/{key}/{name}")
    for key in ("items", "anyOf", "allOf", "oneOf", "prefixItems", "not", "additionalProperties"):
        if isinstance(schema.get(key), dict | list):
            check_strict_schema(schema[key], tool, f"{path}/{key}")
