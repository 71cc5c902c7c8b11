"""OpenAI Chat Completions (`POST /v1/chat/completions`), as the API reference describes it.

Sources: OpenAI API reference, "Create chat completion"
(https://platform.openai.com/docs/api-reference/chat/create) and the request and response types
of the official SDK, which are generated from the same OpenAPI spec
(`openai/types/chat/completion_create_params.py`, `openai/types/chat/chat_completion.py`). Error
messages are the API's own wording where it is known.
"""

from __future__ import annotations

import time
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
    check_strict_schema,
    check_tool_name,
    parse_content,
)

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
"""The message roles the API knows (`ChatCompletionMessageParam`)."""

ERROR_TYPES = {401: "invalid_request_error", 404: "invalid_request_error", 429: "requests"}


def error_body(status: int, message: str, kind: str | None) -> Any:
    """OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``."""
    if kind is None:
        kind = "server_error" if status >= 500 else ERROR_TYPES.get(status, "invalid_request_error")
    code = "rate_limit_exceeded" if status == 429 else None
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def check_auth(headers: dict[str, str]) -> None:
    """A request without a bearer key is refused with 401 (API reference, "Authentication")."""
    if not headers.get("authorization", "").startswith("Bearer "):
        raise Refusal(
            "You didn't provide an API key. You need to provide your API key in an "
            "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            status=401,
        )


def check_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise Refusal("you must provide a model parameter")
    return model


def text_of(content: Any) -> str | list[dict[str, Any]]:
    """A message's content: the text, or its parts (``{"text": ...}`` for text parts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            {"text": p.get("text", "")} if isinstance(p, dict) and p.get("type") == "text" else p
            for p in content
        ]
        if all("text" in p and len(p) == 1 for p in parts):
            return "".join(p["text"] for p in parts)
        return parts
    raise Refusal(f"Invalid type for 'content': expected a string or an array, got {content!r}.")


class Chat:
    """The Chat Completions double."""

    name: Format = "chat"
    path = "/v1/chat/completions"

    def error_body(self, status: int, message: str, kind: str | None) -> Any:
        return error_body(status, message, kind)

    def read(self, request: Request) -> None:
        body: dict[str, Any] = request.body
        check_auth(request.headers)
        request.model = check_model(body)
        self._read_tools(request, body)
        request.max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        request.temperature = body.get("temperature")
        # "An upper bound for the number of tokens" (integer, minimum 1); temperature 0..2.
        for field in ("max_completion_tokens", "max_tokens"):
            check_number(body.get(field), field, 1)
        check_number(request.temperature, "temperature", 0, 2)
        self._read_messages(request, body)

    def _read_tools(self, request: Request, body: dict[str, Any]) -> None:
        tools = body.get("tools")
        if tools is not None:
            if not isinstance(tools, list):
                raise Refusal(f"Invalid type for 'tools': expected an array, got {tools!r}.")
            if not tools:
                # The spec gives `tools` no minimum, but the API answers an empty array with
                # "Invalid 'tools': empty array. Expected an array with minimum length 1".
                raise Refusal(
                    "Invalid 'tools': empty array. Expected an array with minimum length 1, "
                    "but got an empty array instead."
                )
            for i, tool in enumerate(tools):
                function = tool.get("function") if isinstance(tool, dict) else None
                if not isinstance(function, dict) or tool.get("type") != "function":
                    raise Refusal(f"Invalid 'tools[{i}]': expected a function tool, got {tool!r}.")
                name = check_tool_name(function.get("name"), f"tools[{i}].function.name")
                schema = function.get("parameters", {})
                if not isinstance(schema, dict) or schema.get("type", "object") != "object":
                    raise Refusal(
                        f"Invalid schema for function '{name}': schema must be a JSON Schema "
                        f"of 'type: \"object\"', got {schema!r:.100}."
                    )
                if function.get("strict"):
                    check_strict_schema(schema, name)
                request.tools.append(name)
                request.tool_schemas[name] = schema
        request.tool_choice = self._tool_choice(body.get("tool_choice"), request.tools)

    def _tool_choice(self, choice: Any, tools: list[str]) -> ToolChoice:
        if choice is None:
            return None
        if choice in ("auto", "required", "none"):
            normal: ToolChoice = choice
        elif (
            isinstance(choice, dict)
            and choice.get("type") == "function"
            and isinstance(choice.get("function"), dict)
        ):
            normal = {"name": str(choice["function"].get("name"))}
        else:
            raise Refusal(f"Invalid value for 'tool_choice': {choice!r}.")
        if not tools:
            # The API's own message for a tool choice without tools.
            raise Refusal(
                "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' "
                "are specified."
            )
        if isinstance(normal, dict) and normal["name"] not in tools:
            raise Refusal(
                f"Invalid value for 'tool_choice': no function named {normal['name']!r} "
                "was specified in the 'tools' parameter."
            )
        return normal

    def _read_messages(self, request: Request, body: dict[str, Any]) -> None:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise Refusal(
                "Invalid 'messages': empty array. Expected an array with minimum length 1."
            )
        pending: dict[str, str] = {}  # the last assistant message's calls awaiting a result
        names: dict[str, str] = {}
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, dict) else None
            if role not in ROLES:
                raise Refusal(
                    f"Invalid value: {role!r}. Supported values are: 'system', 'assistant', "
                    f"'user', 'function', 'tool', and 'developer'. (messages[{i}].role)"
                )
            if role != "tool" and pending:
                # "An assistant message with 'tool_calls' must be followed by tool messages
                # responding to each 'tool_call_id'."
                raise Refusal(
                    "An assistant message with 'tool_calls' must be followed by tool messages "
                    "responding to each 'tool_call_id'. The following tool_call_ids did not "
                    f"have response messages: {', '.join(pending)}"
                )
            content = text_of(message.get("content"))
            if role == "tool":
                call_id = message.get("tool_call_id")
                if call_id not in pending:
                    raise Refusal(
                        "Invalid parameter: messages with role 'tool' must be a response to a "
                        f"preceeding message with 'tool_calls'. (messages[{i}], "
                        f"tool_call_id {call_id!r})"
                    )
                del pending[call_id]
                result = ToolResult(call_id, names.get(call_id), parse_content(content))
                request.tool_results.append(result)
                request.messages.append(
                    Message("tool", [{"result": call_id, "content": result.content}])
                )
                continue
            if role == "assistant" and message.get("tool_calls"):
                parts: list[dict[str, Any]] = [{"text": content}] if content else []
                for call in message["tool_calls"]:
                    function = call.get("function", {})
                    pending[call["id"]] = names[call["id"]] = function.get("name")
                    parts.append(
                        {
                            "call": function.get("name"),
                            "id": call["id"],
                            "arguments": function.get("arguments"),
                        }
                    )
                request.messages.append(Message("assistant", parts))
                continue
            normal_role = "system" if role in ("system", "developer") else str(role)
            request.messages.append(Message(normal_role, content))
        if pending:
            raise Refusal(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(pending)}"
            )

    def render(self, answer: Answer, request: Request, new_id: Callable[[str], str]) -> Any:
        """A `chat.completion` object: one choice, its tool calls or text, the finish reason
        (`tool_calls`, `stop`, or `length` for a truncated answer) and `usage`."""
        message: dict[str, Any] = {"role": "assistant", "content": answer.text, "refusal": None}
        if answer.calls:
            message["tool_calls"] = [
                {
                    "id": new_id("call"),
                    "type": "function",
                    "function": {"name": c.tool, "arguments": c.arguments},
                }
                for c in answer.calls
            ]
        finish = "length" if answer.truncated else "tool_calls" if answer.calls else "stop"
        out: dict[str, Any] = {
            "id": new_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": [
                {"index": 0, "finish_reason": finish, "message": message, "logprobs": None}
            ],
        }
        if answer.usage is not None:
            inp, outp = answer.usage
            out["usage"] = {
                "prompt_tokens": inp,
                "completion_tokens": outp,
                "total_tokens": inp + outp,
            }
            if answer.cached:
                out["usage"]["prompt_tokens_details"] = {"cached_tokens": answer.cached}
        return out
