"""OpenAI Responses (`POST /v1/responses`), as the API reference describes it.

Sources: OpenAI API reference, "Create a model response"
(https://platform.openai.com/docs/api-reference/responses/create) and the official SDK's types,
generated from the same OpenAPI spec (`openai/types/responses/response_create_params.py`,
`function_tool_param.py`, `response_input_item_param.py`, `response.py`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.wire._chat import check_auth, check_model, error_body
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

ROLES = frozenset({"user", "assistant", "system", "developer"})
"""The roles of an input message (`EasyInputMessageParam`, `Message`)."""

MIN_OUTPUT_TOKENS = 16
"""The API refuses a smaller `max_output_tokens`: "Invalid 'max_output_tokens': integer below
minimum value. Expected a value >= 16"."""


def _text(content: Any) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise Refusal(
            f"Invalid type for 'content': expected a string or an array, got {content!r}."
        )
    parts = [
        {"text": p.get("text", "")}
        if isinstance(p, dict) and p.get("type") in ("input_text", "output_text")
        else p
        for p in content
    ]
    if all(isinstance(p, dict) and list(p) == ["text"] for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


class Responses:
    """The Responses double."""

    name: Format = "responses"
    path = "/v1/responses"

    def error_body(self, status: int, message: str, kind: str | None) -> Any:
        return error_body(status, message, kind)

    def read(self, request: Request) -> None:
        body: dict[str, Any] = request.body
        check_auth(request.headers)
        request.model = check_model(body)
        self._read_tools(request, body)
        request.max_tokens = body.get("max_output_tokens")
        request.temperature = body.get("temperature")
        check_number(request.max_tokens, "max_output_tokens", MIN_OUTPUT_TOKENS)
        check_number(request.temperature, "temperature", 0, 2)
        if isinstance(body.get("instructions"), str):
            request.messages.append(Message("system", body["instructions"]))
        self._read_input(request, body.get("input"))

    def _read_tools(self, request: Request, body: dict[str, Any]) -> None:
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise Refusal(f"Invalid type for 'tools': expected an array, got {tools!r}.")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or tool.get("type") != "function":
                # Built-in tools (web search, ...) are declared by type; hubspoke sends none.
                raise Refusal(f"Invalid 'tools[{i}]': this double knows function tools only.")
            name = check_tool_name(tool.get("name"), f"tools[{i}].name")
            schema = tool.get("parameters")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise Refusal(
                    f"Invalid schema for function '{name}': schema must be a JSON Schema of "
                    f"'type: \"object\"', got {schema!r:.100}."
                )
            # `strict` defaults to true in the Responses API (function calling guide, "Strict
            # mode"): only an explicit false turns the schema checks off.
            if tool.get("strict") is not False:
                check_strict_schema(schema, name)
            request.tools.append(name)
            request.tool_schemas[name] = schema
        request.tool_choice = self._tool_choice(body.get("tool_choice"), request.tools)

    def _tool_choice(self, choice: Any, tools: list[str]) -> ToolChoice:
        if choice is None:
            return None
        if choice in ("auto", "required", "none"):
            normal: ToolChoice = choice
        elif isinstance(choice, dict) and choice.get("type") == "function":
            normal = {"name": str(choice.get("name"))}
        else:
            raise Refusal(f"Invalid value for 'tool_choice': {choice!r}.")
        if normal == "required" and not tools:
            raise Refusal("Tool choice 'required' must be specified with 'tools' parameter.")
        if isinstance(normal, dict) and normal["name"] not in tools:
            raise Refusal(
                f"Tool choice 'function' not found in 'tools' parameter: {normal['name']!r}."
            )
        return normal

    def _read_input(self, request: Request, items: Any) -> None:
        if isinstance(items, str):
            request.messages.append(Message("user", items))
            return
        if not isinstance(items, list):
            raise Refusal("Missing required parameter: 'input'.")
        calls: dict[str, str] = {}
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise Refusal(f"Invalid 'input[{i}]': expected an object, got {item!r:.100}.")
            kind = item.get("type", "message")
            if kind == "function_call":
                name = str(item.get("name"))
                calls[str(item.get("call_id"))] = name
                part = {"call": name, "id": item.get("call_id"), "arguments": item.get("arguments")}
                request.messages.append(Message("assistant", [part]))
            elif kind == "function_call_output":
                call_id = item.get("call_id")
                if call_id not in calls:
                    raise Refusal(
                        f"No tool call found for function call output with call_id {call_id}."
                    )
                result = ToolResult(call_id, calls[call_id], parse_content(item.get("output")))
                request.tool_results.append(result)
                request.messages.append(
                    Message("tool", [{"result": call_id, "content": result.content}])
                )
            elif kind == "message":
                role = item.get("role")
                if role not in ROLES:
                    raise Refusal(
                        f"Invalid value: {role!r}. Supported values are: 'assistant', 'system', "
                        f"'developer', and 'user'. (input[{i}].role)"
                    )
                role = "system" if role == "developer" else str(role)
                request.messages.append(Message(role, _text(item.get("content"))))
            else:
                raise Refusal(f"Invalid 'input[{i}].type': this double does not know {kind!r}.")

    def render(self, answer: Answer, request: Request, new_id: Callable[[str], str]) -> Any:
        """A `response` object: its output items (function calls or one message), its status
        (`incomplete` with reason `max_output_tokens` for a truncated answer) and `usage`."""
        output: list[dict[str, Any]] = [
            {
                "type": "function_call",
                "id": new_id("fc"),
                "call_id": new_id("call"),
                "name": c.tool,
                "arguments": c.arguments,
                "status": "incomplete" if answer.truncated else "completed",
            }
            for c in answer.calls
        ]
        if answer.text is not None:
            output.insert(
                0,
                {
                    "type": "message",
                    "id": new_id("msg"),
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": answer.text, "annotations": []}],
                },
            )
        out: dict[str, Any] = {
            "id": new_id("resp"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "incomplete" if answer.truncated else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if answer.truncated else None,
            "error": None,
            "model": request.model,
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": request.body.get("tool_choice", "auto"),
            "tools": request.body.get("tools", []),
            "max_output_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": None,
            "instructions": request.body.get("instructions"),
            "metadata": {},
        }
        if answer.usage is not None:
            inp, outp = answer.usage
            out["usage"] = {
                "input_tokens": inp,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": outp,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": inp + outp,
            }
        return out
