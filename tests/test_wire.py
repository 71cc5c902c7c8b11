"""What hubspoke sends on the wire, read by servers that speak each provider's format.

Every run here goes end to end: a Foreman, pydantic-ai's model layer, the provider's own SDK
client, HTTP on 127.0.0.1, and a `tests.wire` server that checks the request as the provider
would. The last part tests the servers themselves: a request the provider refuses is refused,
in the provider's error shape, so the doubles cannot accept what the real ones would not.
"""

from __future__ import annotations

from typing import Any

import pytest

from hubspoke import Foreman, SQLiteStore
from hubspoke.specialists.agent import DEFAULT_MAX_OUTPUT_TOKENS
from hubspoke.testing import stream
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
        "model.exchange p researcher p #1 final_result",
        "dispatch.finished p researcher p #1 invalid",
        "output.invalid p researcher p #1",
        "item.retry p researcher p #2",
        "dispatch.started p researcher p #2",
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
