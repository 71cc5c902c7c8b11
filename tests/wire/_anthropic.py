"""Anthropic Messages (`POST /v1/messages`), as the API reference describes it.

Sources: Anthropic API reference, "Messages" (https://docs.claude.com/en/api/messages), "Errors"
(https://docs.claude.com/en/api/errors), the tool use guide
(https://docs.claude.com/en/docs/agents-and-tools/tool-use/implement-tool-use) and the official
SDK's types (`anthropic/types/message_create_params.py`, `tool_param.py`, `tool_choice_*.py`).
Error messages are the API's own wording where it is known.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.wire._replies import Answer
from tests.wire._request import (
    Format,
    Message,
    Refusal,
    Request,
    ToolChoice,
    ToolResult,
    check_number,
    check_tool_name,
    parse_content,
)

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
"""The error type of each status ("Errors", "HTTP errors")."""


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """A message's content as blocks: a string is one text block."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise Refusal(f"{where}.content: Input should be a valid list or string")
    return content


def _normal(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Blocks as the neutral parts (text alone becomes the text)."""
    parts: list[dict[str, Any]] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text":
            parts.append({"text": block.get("text", "")})
        elif kind == "tool_use":
            arguments = json.dumps(block.get("input"))
            parts.append({"call": block.get("name"), "id": block.get("id"), "arguments": arguments})
        elif kind == "tool_result":
            parts.append({"result": block.get("tool_use_id"), "content": _result(block)})
        else:
            parts.append(block)
    if all(list(p) == ["text"] for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _result(block: dict[str, Any]) -> Any:
    content = block.get("content")
    if isinstance(content, list):
        texts = [b.get("text", "") for b in content if isinstance(b, dict) and b["type"] == "text"]
        content = "".join(texts)
    return parse_content(content)


class Anthropic:
    """The Messages double."""

    name: Format = "anthropic"
    path = "/v1/messages"

    def error_body(self, status: int, message: str, kind: str | None) -> Any:
        """Anthropic's error shape: ``{"type": "error", "error": {"type", "message"},
        "request_id"}``."""
        if kind is None:
            kind = ERROR_TYPES.get(
                status, "api_error" if status >= 500 else "invalid_request_error"
            )
        return {
            "type": "error",
            "error": {"type": kind, "message": message},
            "request_id": "req_wire",
        }

    def read(self, request: Request) -> None:
        body: dict[str, Any] = request.body
        headers = request.headers
        if not headers.get("x-api-key") and not headers.get("authorization"):
            raise Refusal("x-api-key header is required", status=401, kind="authentication_error")
        if not headers.get("anthropic-version"):
            raise Refusal("anthropic-version: header is required")
        # `model`, `messages` and `max_tokens` are required (`message_create_params.py`).
        for field in ("model", "max_tokens", "messages"):
            if field not in body:
                raise Refusal(f"{field}: Field required")
        if not isinstance(body["model"], str) or not body["model"]:
            raise Refusal("model: String should have at least 1 character")
        request.model = body["model"]
        request.max_tokens = body["max_tokens"]
        request.temperature = body.get("temperature")
        # max_tokens: "Set to `0` to populate the prompt cache"; temperature "Ranges from 0.0
        # to 1.0".
        check_number(request.max_tokens, "max_tokens", 0)
        check_number(request.temperature, "temperature", 0, 1)
        self._read_tools(request, body)
        system = body.get("system")
        if system is not None:
            request.messages.append(Message("system", _normal(_blocks(system, "system"))))
        self._read_messages(request, body["messages"])

    def _read_tools(self, request: Request, body: dict[str, Any]) -> None:
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise Refusal("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict):
                raise Refusal(f"tools.{i}: Input should be a valid dictionary")
            name = check_tool_name(tool.get("name"), f"tools.{i}.custom.name")
            schema = tool.get("input_schema")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise Refusal(f"tools.{i}.custom.input_schema.type: Input should be 'object'")
            if name in request.tools:
                raise Refusal("tools: Tool names must be unique.")
            request.tools.append(name)
            request.tool_schemas[name] = schema
        choice = body.get("tool_choice")
        if choice is None:
            return
        kind = choice.get("type") if isinstance(choice, dict) else None
        normal: ToolChoice
        if kind in ("auto", "none"):
            normal = kind
        elif kind == "any":
            normal = "required"
        elif kind == "tool":
            normal = {"name": str(choice.get("name"))}
        else:
            raise Refusal(
                "tool_choice: Input tag does not match any of the expected tags: "
                "'auto', 'any', 'tool', 'none'"
            )
        if kind in ("any", "tool") and not request.tools:
            raise Refusal(f"tool_choice.{kind} may only be specified while providing tools")
        if isinstance(normal, dict) and normal["name"] not in request.tools:
            raise Refusal(f"tool_choice.tool: Tool '{normal['name']}' not found in tools")
        request.tool_choice = normal

    def _read_messages(self, request: Request, messages: Any) -> None:
        if not isinstance(messages, list):
            raise Refusal("messages: Input should be a valid list")
        asked: dict[str, str] = {}  # the tool_use blocks of the message before
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role == "system":
                raise Refusal(
                    'messages: Unexpected role "system". The Messages API accepts a top-level '
                    '`system` parameter, not "system" as an input message role.'
                )
            if role not in ("user", "assistant"):
                raise Refusal(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            assert isinstance(message, dict)
            blocks = _blocks(message.get("content"), f"messages.{i}")
            results = [b for b in blocks if b.get("type") == "tool_result"]
            # "Each `tool_result` block must have a corresponding `tool_use` block in the
            # previous message", and every `tool_use` its `tool_result` in the next one.
            for j, block in enumerate(blocks):
                if block.get("type") == "tool_result" and block.get("tool_use_id") not in asked:
                    raise Refusal(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {block.get('tool_use_id')}. Each `tool_result` "
                        "block must have a corresponding `tool_use` block in the previous "
                        "message."
                    )
            answered = {b.get("tool_use_id") for b in results}
            missing = [call_id for call_id in asked if call_id not in answered]
            if missing:
                raise Refusal(
                    f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                    "a corresponding `tool_result` block in the next message."
                )
            for block in results:
                call_id = str(block.get("tool_use_id"))
                request.tool_results.append(ToolResult(call_id, asked[call_id], _result(block)))
            asked = {
                str(b.get("id")): str(b.get("name"))
                for b in blocks
                if b.get("type") == "tool_use" and role == "assistant"
            }
            normal = _normal(blocks)
            if role == "user" and results and isinstance(normal, list):
                rest = [p for p in normal if "result" not in p]
                request.messages.append(Message("tool", [p for p in normal if "result" in p]))
                if rest:
                    request.messages.append(Message("user", _normal_parts(rest)))
            else:
                request.messages.append(Message(str(role), normal))
        if asked and messages and messages[-1].get("role") == "assistant":
            # A conversation may end on the assistant's message (a prefill), but not on calls
            # that no result follows.
            raise Refusal(
                f"messages.{len(messages) - 1}: `tool_use` ids were found without "
                f"`tool_result` blocks immediately after: {', '.join(asked)}. Each `tool_use` "
                "block must have a corresponding `tool_result` block in the next message."
            )

    def render(self, answer: Answer, request: Request, new_id: Callable[[str], str]) -> Any:
        """A `message` object: its content blocks (text, tool_use), its `stop_reason`
        (`tool_use`, `end_turn`, or `max_tokens` for a truncated answer) and `usage`.

        A truncated call's `input` is its raw text parsed when it parses, else the raw text
        itself: a non-streaming Messages response has no way to carry arguments that do not
        parse, so this stands in for a stream cut mid-`input_json_delta`.
        """
        content: list[dict[str, Any]] = []
        if answer.text is not None:
            content.append({"type": "text", "text": answer.text})
        for c in answer.calls:
            try:
                arguments: Any = json.loads(c.arguments)
            except ValueError:
                arguments = c.arguments
            content.append(
                {"type": "tool_use", "id": new_id("toolu"), "name": c.tool, "input": arguments}
            )
        stop = "max_tokens" if answer.truncated else "tool_use" if answer.calls else "end_turn"
        out: dict[str, Any] = {
            "id": new_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
        }
        if answer.usage is not None:
            inp, outp = answer.usage
            out["usage"] = {
                "input_tokens": inp,
                "output_tokens": outp,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            }
        return out

    def render_stream(
        self, answer: Answer, request: Request, new_id: Callable[[str], str]
    ) -> list[tuple[str, Any]]:
        """The same answer as server-sent events ("Streaming Messages": `message_start`, each
        block's `content_block_start`, one delta and `content_block_stop`, `message_delta`
        with the stop reason and output tokens, `message_stop`). A call's arguments go as
        they are in one `input_json_delta`, so truncated JSON is sent as a cut stream sends it.

        pydantic-ai streams a `Model.request` when the SDK refuses a non-streaming one, i.e.
        for a `max_tokens` above about 21,000 (the SDK's "Streaming is required").
        """
        message = self.render(Answer(usage=answer.usage), request, new_id)
        message["stop_reason"] = None
        if answer.usage is not None:
            message["usage"]["output_tokens"] = 1
        events: list[tuple[str, Any]] = [
            ("message_start", {"type": "message_start", "message": message})
        ]
        blocks: list[tuple[dict[str, Any], dict[str, Any]]] = []
        if answer.text is not None:
            blocks.append(
                ({"type": "text", "text": ""}, {"type": "text_delta", "text": answer.text})
            )
        for c in answer.calls:
            start = {"type": "tool_use", "id": new_id("toolu"), "name": c.tool, "input": {}}
            blocks.append((start, {"type": "input_json_delta", "partial_json": c.arguments}))
        for i, (start, delta) in enumerate(blocks):
            events += [
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": i, "content_block": start},
                ),
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": i, "delta": delta},
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": i}),
            ]
        stop = "max_tokens" if answer.truncated else "tool_use" if answer.calls else "end_turn"
        end: dict[str, Any] = {
            "type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": None},
        }
        if answer.usage is not None:
            end["usage"] = {"output_tokens": answer.usage[1]}
        events += [("message_delta", end), ("message_stop", {"type": "message_stop"})]
        return events


def _normal_parts(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    if all(list(p) == ["text"] for p in parts):
        return "".join(p["text"] for p in parts)
    return parts
