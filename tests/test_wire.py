"""What hubspoke sends on the wire, read by servers that speak each provider's format.

Every run here goes end to end: a Foreman, pydantic-ai's model layer, the provider's own SDK
client, HTTP on 127.0.0.1, and a `tests.wire` server that checks the request as the provider
would. The last part tests the servers themselves: a request the provider refuses is refused,
in the provider's error shape, so the doubles cannot accept what the real ones would not.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from hubspoke import EventKind, Foreman, SQLiteStore
from hubspoke.errors import DefinitionError
from hubspoke.specialists.agent import DEFAULT_MAX_OUTPUT_TOKENS
from hubspoke.testing import stream
from hubspoke.tools import Tool
from tests import wire
from tests.helpers import one_phase, recording_lookup, researcher_card

pytestmark = pytest.mark.anyio

ANSWERS = ["final_result", "refuse", "ask_human"]
MAX_TOKENS_FIELD = {
    "chat": "max_completion_tokens",
    "responses": "max_output_tokens",
    "anthropic": "max_tokens",
}
"""The field each format carries the max output tokens in."""

formats = pytest.mark.parametrize("fmt", wire.FORMATS)


def offered(request: wire.Request) -> tuple[list[str], Any]:
    return request.tools, request.tool_choice


def sends_max_tokens(request: wire.Request) -> None:
    """The request carries the format's max output field, at the agent's limit."""
    assert request.body[MAX_TOKENS_FIELD[request.format]] == DEFAULT_MAX_OUTPUT_TOKENS
    assert request.max_tokens == DEFAULT_MAX_OUTPUT_TOKENS


# what a request offers --------------------------------------------------------------------------


@formats
async def test_a_role_with_tools_is_offered_its_tools_and_the_three_answers(
    fmt: wire.Format, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    script = [
        wire.call("lookup", {"topic": "tea"}),
        wire.call("final_result", {"points": ["tea is old"]}),
    ]
    with wire.serve(fmt, script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), tools=[recording_lookup(ran)])
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    assert result.status == "completed"
    assert store.artifacts(result.run_id)[0].content == {"points": ["tea is old"]}
    assert ran == ["tea"]
    first, second = server.requests
    # Both turns offer the card's tool and the three answers, and force a tool call.
    for request in (first, second):
        assert offered(request) == (["lookup", *ANSWERS], "required")
        assert request.model == "m"
        sends_max_tokens(request)
        schemas = request.tool_schemas
        assert schemas["lookup"]["properties"] == {"topic": {"type": "string"}}
        assert schemas["final_result"]["required"] == ["points"]
        assert schemas["refuse"]["required"] == ["reason"]
        assert schemas["ask_human"]["required"] == ["question"]
    assert first.work["input"] == {"topic": "tea"}
    assert first.work["attempt"] == 1
    assert first.tool_results == []
    [returned] = second.tool_results
    assert (returned.tool, returned.content) == ("lookup", "tea: known")
    assert [m.role for m in second.messages] == ["system", "user", "assistant", "tool"]


@formats
async def test_a_role_without_tools_is_offered_the_three_answers_only(
    fmt: wire.Format, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with wire.serve(fmt, [wire.call("final_result", {"points": ["a"]})]) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"))
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    assert result.status == "completed"
    [request] = server.requests
    assert offered(request) == (ANSWERS, "required")
    sends_max_tokens(request)
    # The output schema as the card declares it (pydantic-ai leaves out the titles).
    assert request.tool_schemas["final_result"]["properties"] == {
        "points": {"items": {"type": "string"}, "minItems": 1, "type": "array"}
    }


@formats
async def test_a_retry_offers_the_same_and_carries_the_correction(
    fmt: wire.Format, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = [
        wire.call("final_result", {"points": []}),  # Notes needs at least one point
        wire.call("final_result", {"points": ["a"]}),
    ]
    with wire.serve(fmt, script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), tools=[recording_lookup([])])
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    assert result.status == "completed"
    assert stream(store.events(result.run_id)) == [
        "run.started",
        "phase.started p items=1",
        "dispatch.started p researcher p #1",
        "model.requested p researcher p #1",
        "model.exchange p researcher p #1 final_result",
        "dispatch.finished p researcher p #1 invalid",
        "output.invalid p researcher p #1",
        "item.retry p researcher p #2",
        "dispatch.started p researcher p #2",
        "model.requested p researcher p #2",
        "model.exchange p researcher p #2 final_result",
        "dispatch.finished p researcher p #2 output",
        "item.accepted p researcher p",
        "phase.finished p completed",
        "run.finished completed",
    ]
    first, retry = server.requests
    assert offered(first) == offered(retry) == (["lookup", *ANSWERS], "required")
    sends_max_tokens(retry)
    assert first.tool_schemas == retry.tool_schemas
    assert "correction" not in first.work
    assert retry.work["attempt"] == 2
    assert "points" in retry.work["correction"]
    assert retry.work["input"] == first.work["input"]


# what each reply does, end to end ---------------------------------------------------------------


@formats
async def test_a_response_cut_at_its_token_limit_is_retried_with_a_correction(
    fmt: wire.Format, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = [
        wire.call_raw("final_result", '{"points": ["tea is o'),
        wire.call("final_result", {"points": ["tea is old"]}),
    ]
    with wire.serve(fmt, script) as server:
        server.connect(monkeypatch)
        result = await Foreman(one_phase(researcher_card(model=server.binding("m"))), store).run(
            {"topic": "tea"}
        )
    assert result.status == "completed"
    invalid = next(e for e in store.events(result.run_id) if e.kind is EventKind.OUTPUT_INVALID)
    assert "(the response hit its token limit)" in invalid.data["errors"][0]["msg"]
    assert "token limit" in server.requests[1].work["correction"]


@formats
async def test_text_alone_and_several_calls_in_one_response(
    fmt: wire.Format, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    script = [
        wire.text("Tea is old."),
        wire.call("lookup", {"topic": "tea"}, ("lookup", {"topic": "milk"})),
        wire.call("final_result", {"points": ["tea and milk"]}, usage=(70, 7)),
    ]
    with wire.serve(fmt, script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), tools=[recording_lookup(ran)])
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    assert result.status == "completed"
    assert sorted(ran) == ["milk", "tea"]
    _, calls, final = server.requests
    assert "answered in text" in calls.work["correction"]
    assert [(r.tool, r.content) for r in final.tool_results] == [
        ("lookup", "tea: known"),
        ("lookup", "milk: known"),
    ]
    # Each response's usage is what the journal counts: 40 + 10 (the default), twice, then 70 + 7.
    usage = result.state.summary()["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["requests"]) == (150, 27, 3)


async def test_a_slow_answer_the_dispatch_gave_up_on_is_cancelled_on_the_wire(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = [wire.slow(30, wire.call("final_result", {"points": ["late"]}))]
    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), timeout=0.3, max_attempts=1)
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    assert result.status == "waiting"
    [request] = server.requests
    assert request.cancelled
    assert request.status is None  # nothing was sent back


# the servers refuse what the providers refuse ---------------------------------------------------

LOOKUP_SCHEMA = {
    "type": "object",
    "properties": {"topic": {"type": "string"}},
    "required": ["topic"],
    "additionalProperties": False,
}


def chat_body() -> dict[str, Any]:
    """A Chat Completions request every check accepts: a tool call and its result."""
    call = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    return {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": '{"input": {"topic": "tea"}}'},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "c1", "content": "known"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "lookup", "parameters": LOOKUP_SCHEMA, "strict": True},
            }
        ],
        "tool_choice": "required",
        "max_completion_tokens": 100,
        "temperature": 0.5,
    }


def responses_body() -> dict[str, Any]:
    """A Responses request every check accepts: a function call and its output."""
    return {
        "model": "m",
        "input": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": '{"input": {"topic": "tea"}}'},
            {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "known"},
        ],
        "tools": [
            {"type": "function", "name": "lookup", "parameters": LOOKUP_SCHEMA, "strict": True}
        ],
        "tool_choice": "required",
        "max_output_tokens": 100,
        "temperature": 0.5,
    }


def anthropic_body() -> dict[str, Any]:
    """A Messages request every check accepts: a tool use and its result."""
    return {
        "model": "m",
        "max_tokens": 100,
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": '{"input": {"topic": "tea"}}'},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "known"}],
            },
        ],
        "tools": [{"name": "lookup", "input_schema": LOOKUP_SCHEMA}],
        "tool_choice": {"type": "any"},
        "temperature": 0.5,
    }


VALID = {"chat": chat_body, "responses": responses_body, "anthropic": anthropic_body}


def post(
    server: wire.Server, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """POST `body` to the server's route as the provider's SDK would: status, headers, JSON."""
    if headers is None:
        headers = (
            {"x-api-key": wire.API_KEY, "anthropic-version": "2023-06-01"}
            if server.format == "anthropic"
            else {"authorization": f"Bearer {wire.API_KEY}"}
        )
    route = {"chat": "/chat/completions", "responses": "/responses", "anthropic": "/messages"}
    request = urllib.request.Request(
        server.url + route[server.format],
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def tools_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools: list[dict[str, Any]] = body["tools"]
    return tools


def rename(body: dict[str, Any], name: str) -> None:
    """Rename the declared tool (and keep the rest of the request consistent with it)."""
    tool = tools_of(body)[0]
    tool.get("function", tool)["name"] = name


def without(field: str) -> Any:
    return lambda body: body.pop(field)


def setting(field: str, value: Any) -> Any:
    return lambda body: body.__setitem__(field, value)


def drop_tools(body: dict[str, Any]) -> None:
    body.pop("tools")


def message(i: int, **changes: Any) -> Any:
    """Change message (or input item) `i`."""

    def change(body: dict[str, Any]) -> None:
        items = body["input"] if "input" in body else body["messages"]
        items[i].update(changes)

    return change


def unstrict(body: dict[str, Any], *, default: bool = False) -> None:
    """Give the tool an open object schema (and, with `default`, leave `strict` unsaid)."""
    tool = tools_of(body)[0]
    tool.get("function", tool)["parameters"] = {"type": "object", "properties": {"a": {}}}
    if default:
        tool.pop("strict")


def result_id(value: str) -> Any:
    def change(body: dict[str, Any]) -> None:
        last = body["messages"][-1]
        last["content"][0]["tool_use_id"] = value

    return change


# (format, what is wrong, the change that makes it wrong, what the message says)
REFUSED: list[tuple[wire.Format, str, Any, str]] = [
    ("chat", "no model", without("model"), "model parameter"),
    ("chat", "no messages", setting("messages", []), "'messages'"),
    ("chat", "unknown role", message(0, role="robot"), "'robot'"),
    ("chat", "tool name with a dot", lambda b: rename(b, "look.up"), "does not match pattern"),
    ("chat", "tool name of 65", lambda b: rename(b, "x" * 65), "does not match pattern"),
    ("chat", "empty tools", setting("tools", []), "empty array"),
    ("chat", "required, no tools", drop_tools, "only allowed when 'tools' are specified"),
    ("chat", "undeclared named choice",
     setting("tool_choice", {"type": "function", "function": {"name": "nope"}}), "'nope'"),
    ("chat", "result for no call", message(3, tool_call_id="c9"), "preceeding message"),
    ("chat", "call with no result", lambda b: b["messages"].pop(), "did not have response"),
    ("chat", "strict schema, open object", unstrict, "additionalProperties"),
    ("chat", "max tokens 0", setting("max_completion_tokens", 0), "max_completion_tokens"),
    ("chat", "temperature 3", setting("temperature", 3), "temperature"),
    ("responses", "no model", without("model"), "model parameter"),
    ("responses", "unknown role", message(1, role="robot"), "'robot'"),
    ("responses", "tool name with a space", lambda b: rename(b, "look up"), "does not match"),
    ("responses", "required, no tools", drop_tools, "'required' must be specified with 'tools'"),
    ("responses", "undeclared named choice",
     setting("tool_choice", {"type": "function", "name": "nope"}), "not found"),
    ("responses", "output for no call", message(3, call_id="c9"), "No tool call found"),
    ("responses", "strict by default",
        lambda b: unstrict(b, default=True),
        "additionalProperties"),
    ("responses", "max output tokens 8", setting("max_output_tokens", 8), ">= 16"),
    ("anthropic", "no max_tokens", without("max_tokens"), "max_tokens: Field required"),
    ("anthropic", "no model", without("model"), "model: Field required"),
    ("anthropic", "a system message", message(0, role="system"), "top-level `system`"),
    ("anthropic", "unknown role", message(0, role="tool"), "'user' or 'assistant'"),
    ("anthropic", "tool name with a slash", lambda b: rename(b, "a/b"), "does not match"),
    ("anthropic", "two tools of one name",
     lambda b: tools_of(b).append(dict(tools_of(b)[0])), "must be unique"),
    ("anthropic", "any, no tools", drop_tools, "tool_choice.any"),
    ("anthropic", "undeclared named choice",
     setting("tool_choice", {"type": "tool", "name": "nope"}), "'nope' not found"),
    ("anthropic", "result for no call", result_id("t9"), "unexpected `tool_use_id`"),
    ("anthropic", "call with no result", lambda b: b["messages"].pop(),
     "without `tool_result` blocks"),
    ("anthropic", "temperature 1.5", setting("temperature", 1.5), "temperature"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fmt", "change", "says"),
    [pytest.param(f, change, says, id=f"{f}-{why}") for f, why, change, says in REFUSED],
)
def test_a_request_the_provider_refuses_is_refused_in_its_error_shape(
    fmt: wire.Format, change: Any, says: str
) -> None:
    with wire.serve(fmt, [wire.text("accepted")], strict=False) as server:
        status, _, _ = post(server, VALID[fmt]())
        assert status == 200  # the request as it stands is accepted ...
        body = VALID[fmt]()
        change(body)
        status, _, error = post(server, body)  # ... and refused once it is wrong
    assert status == 400
    [accepted, refused] = server.requests
    assert accepted.refused is None
    assert refused.refused is not None and says in refused.refused, refused.refused
    if fmt == "anthropic":
        assert error == {
            "type": "error",
            "error": {"type": "invalid_request_error", "message": refused.refused},
            "request_id": "req_wire",
        }
    else:
        assert error == {
            "error": {
                "message": refused.refused,
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        }


@formats
def test_a_request_without_a_key_is_refused_401(fmt: wire.Format) -> None:
    with wire.serve(fmt, [], strict=False) as server:
        status, _, error = post(server, VALID[fmt](), headers={})
    assert status == 401
    kind = "authentication_error" if fmt == "anthropic" else "invalid_request_error"
    assert (error["error"]["type"], server.requests[0].status) == (kind, 401)


def test_anthropic_requires_its_version_header() -> None:
    with wire.serve("anthropic", [], strict=False) as server:
        status, _, error = post(server, anthropic_body(), headers={"x-api-key": wire.API_KEY})
    assert (status, error["error"]["message"]) == (400, "anthropic-version: header is required")


@formats
def test_a_strict_server_fails_the_test_on_any_refusal(fmt: wire.Format) -> None:
    body = VALID[fmt]()
    body.pop("model")
    with (
        pytest.raises(AssertionError, match=r"request #1 refused \(400\)"),
        wire.serve(fmt, []) as server,
    ):
        post(server, body)


@formats
def test_a_request_after_the_script_is_answered_500_and_fails_the_test(fmt: wire.Format) -> None:
    with (
        pytest.raises(AssertionError, match=r"request #2 came after the script's 1 replies"),
        wire.serve(fmt, [wire.text("one")]) as server,
    ):
        assert post(server, VALID[fmt]())[0] == 200
        status, _, error = post(server, VALID[fmt]())
        assert status == 500
        assert "came after the script's 1 replies" in error["error"]["message"]


@formats
def test_a_fault_is_sent_as_the_provider_sends_it(fmt: wire.Format) -> None:
    script = [wire.fault(429, retry_after=1), wire.fault(500), wire.fault(503, body={"x": 1})]
    with wire.serve(fmt, script) as server:
        limited = post(server, VALID[fmt]())
        failed = post(server, VALID[fmt]())
        unavailable = post(server, VALID[fmt]())
    assert (limited[0], limited[1]["Retry-After"]) == (429, "1")
    if fmt == "anthropic":
        assert limited[2]["error"]["type"] == "rate_limit_error"
        assert failed[2]["error"]["type"] == "api_error"
    else:
        assert limited[2]["error"]["code"] == "rate_limit_exceeded"
        assert failed[2]["error"]["type"] == "server_error"
    assert (failed[0], unavailable[0], unavailable[2]) == (500, 503, {"x": 1})
    assert [r.status for r in server.requests] == [429, 500, 503]


@formats
def test_a_dropped_connection_gets_no_answer(fmt: wire.Format) -> None:
    with (
        wire.serve(fmt, [wire.drop()]) as server,
        pytest.raises((urllib.error.URLError, ConnectionError)),
    ):
        post(server, VALID[fmt]())
    [request] = server.requests
    assert (request.status, request.refused) == (None, None)


def test_a_client_hanging_up_on_a_slow_reply_is_recorded() -> None:
    with (
        wire.serve("chat", [wire.slow(30, wire.text("late"))]) as server,
        pytest.raises((TimeoutError, urllib.error.URLError)),
    ):
        request = urllib.request.Request(
            server.url + "/chat/completions",
            data=json.dumps(chat_body()).encode(),
            headers={"authorization": f"Bearer {wire.API_KEY}"},
        )
        urllib.request.urlopen(request, timeout=0.2)
    [received] = server.requests
    assert received.cancelled and received.status is None


# a card whose request a provider would refuse is refused when the foreman is built --------------


def look(topic: str) -> str:
    """Look a topic up."""
    return topic


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("web.search", "1 to 64 letters, digits, '_' or '-'"),
        ("x" * 65, "1 to 64 letters, digits, '_' or '-'"),
        ("café", "1 to 64 letters, digits, '_' or '-'"),  # a valid Python identifier
        ("final_result", "the name of one of the agent's answers"),
        ("ask_human", "the name of one of the agent's answers"),
    ],
)
@formats
async def test_an_agent_tool_a_provider_would_refuse_is_refused_before_any_request(
    fmt: wire.Format, name: str, says: str, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every provider refuses such a request (a name outside ``^[a-zA-Z0-9_-]{1,64}$``, or two
    tools of one name), so every attempt would fail on the wire: the card is refused instead,
    naming the tool and how to rename it, and nothing is sent."""
    with wire.serve(fmt, []) as server:
        server.connect(monkeypatch)
        card = researcher_card(
            model=server.binding("m"), tools=[Tool.from_function(look, name=name)]
        )
        with pytest.raises(DefinitionError, match="field 'tools'") as refused:
            Foreman(one_phase(card), store)
    assert repr(name) in str(refused.value) and says in str(refused.value)
    assert "Tool.from_function(" in str(refused.value)
    assert server.requests == []


async def test_an_anthropic_request_too_long_to_wait_for_is_streamed_and_answered_in_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pydantic-ai's Anthropic model streams a `Model.request` whose `max_tokens` the SDK will
    not wait for (above ~21,000): the Messages double answers it in server-sent events, a
    truncated call's arguments cut as a stream cuts them."""
    from pydantic_ai.messages import ModelMessage, ModelRequest, ToolCallPart, UserPromptPart

    from hubspoke.models import resolve_model
    from hubspoke.specialists.agent import _request_parameters

    script = [
        wire.call("final_result", {"points": ["a"]}, usage=(30, 5)),
        wire.call_raw("final_result", '{"points": ["a'),
    ]
    card = researcher_card()
    prompt: list[ModelMessage] = [
        ModelRequest(parts=[UserPromptPart(content='{"input": {"topic": "tea"}}')])
    ]
    with wire.serve("anthropic", script) as server:
        server.connect(monkeypatch)
        model = resolve_model(server.binding("m"))
        whole = await model.request(prompt, {"max_tokens": 32_000}, _request_parameters(card))
        cut = await model.request(prompt, {"max_tokens": 32_000}, _request_parameters(card))
    assert [r.body["stream"] for r in server.requests] == [True, True]
    assert server.requests[0].max_tokens == 32_000
    [call] = whole.parts
    assert isinstance(call, ToolCallPart) and call.args_as_dict() == {"points": ["a"]}
    assert (whole.usage.input_tokens, whole.usage.output_tokens) == (30, 5)
    assert whole.finish_reason == "tool_call"
    [truncated] = cut.parts
    assert isinstance(truncated, ToolCallPart) and truncated.args == '{"points": ["a'
    assert cut.finish_reason == "length"


async def test_the_openai_chat_binding_reaches_the_chat_server_through_the_environment(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with wire.serve("chat", [wire.call("final_result", {"points": ["a"]})]) as server:
        server.connect(monkeypatch)  # OPENAI_BASE_URL, OPENAI_API_KEY
        card = researcher_card(model="openai-chat:m")
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    assert result.status == "completed"
    [request] = server.requests
    assert request.headers["authorization"] == f"Bearer {wire.API_KEY}"
    assert offered(request) == (ANSWERS, "required")
