"""Provider faults and honest usage, end to end through servers that speak the wire formats.

Every run goes through a Foreman, pydantic-ai's model layer, the provider's SDK client and HTTP
on 127.0.0.1 to a `tests.wire` server. Covered: a rate limit (429 with ``Retry-After``) and an
outage (5xx, a dropped connection) are waits that spend no attempt and hold every request to
the endpoint; after `Role.max_waits` the fallback takes over; an exhausted quota fails at
once, whatever its status; waiting counts against the deadline; a response without usage is
charged the estimate; a count past the allowance keeps the answer; a request cut short is
charged its worst case, in the process that cut it and, after a crash, in the run that resumes
it.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hubspoke import Budget, EventKind, Foreman, Phase, Role, RunState, SQLiteStore, Workflow
from hubspoke.events import Event, payload
from hubspoke.specialists.agent import DEFAULT_MAX_OUTPUT_TOKENS
from hubspoke.testing import payload_errors, stream
from hubspoke.throttle import Backoff
from tests import wire
from tests.helpers import Notes, Topic, one_phase, researcher_card

pytestmark = pytest.mark.anyio

QUICK = Backoff(first=0.01, cap=0.02)
"""Backoff for faults without ``Retry-After``: waits of milliseconds, so tests stay fast."""

NOTES = {"points": ["tea is old"]}


def kinds(events: list[Event], kind: EventKind) -> list[Event]:
    return [e for e in events if e.kind is kind]


def fan(card: Role, n: int) -> Workflow:
    """`n` parallel items of `card`, one per topic ``t0 .. t{n-1}``."""
    return Workflow(
        name="fan",
        input=Topic,
        roles=[card],
        phases=[
            Phase(
                name="p",
                role=card.name,
                over=lambda run: [f"t{i}" for i in range(n)],
                input=lambda run, topic: Topic(topic=topic),
                concurrency=n,
            )
        ],
    )


# rate limits and outages ------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", wire.FORMATS)
async def test_a_rate_limit_holds_every_item_for_retry_after_and_spends_no_attempt(
    fmt: wire.Format, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The provider rate-limits the first request of each item for a second, then answers.
    seen: dict[str, int] = {}

    def script(request: wire.Request) -> wire.Reply:
        topic = request.work["input"]["topic"]
        seen[topic] = seen.get(topic, 0) + 1
        return (
            wire.fault(429, retry_after=1)
            if seen[topic] == 1
            else wire.call("final_result", {"points": [topic]})
        )

    with wire.serve(fmt, script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), max_attempts=1)
        result = await Foreman(fan(card, 8), store, backoff=QUICK).run({"topic": "tea"})
    events = store.events(result.run_id)
    assert payload_errors(events) == []
    # Every item was accepted, on its first attempt: no retry, no escalation.
    assert result.status == "completed"
    assert result.state.phases["p"].accepted == 8
    assert kinds(events, EventKind.ITEM_RETRY) == [] == kinds(events, EventKind.ITEM_ESCALATED)
    assert {e.attempt for e in kinds(events, EventKind.DISPATCH_STARTED)} == {1}
    # Two requests an item, no more: the 429s did not turn into a storm. An item whose turn
    # came while the endpoint was held waited without sending anything.
    assert len(server.requests) == 16 and set(seen.values()) == {2}
    waits = [payload(e, EventKind.ITEM_WAITING) for e in kinds(events, EventKind.ITEM_WAITING)]
    assert 8 <= len(waits) <= 16
    assert all(w["cause"] == "throttled" for w in waits)
    assert max(w["seconds"] for w in waits) >= 1.0  # Retry-After honoured, never less
    # No item went again before the second had passed since its 429.
    by_item: dict[str, list[Event]] = {}
    for event in events:
        if event.item is not None:
            by_item.setdefault(event.item, []).append(event)
    for item_events in by_item.values():
        finished = [e for e in item_events if e.kind is EventKind.DISPATCH_FINISHED]
        throttled, second = (
            finished[0],
            [e for e in item_events if e.kind is EventKind.DISPATCH_STARTED][1],
        )
        assert payload(throttled, EventKind.DISPATCH_FINISHED)["outcome"] == "throttled"
        assert second.ts - throttled.ts >= 0.95


async def test_an_outage_is_waited_out_with_backoff_and_the_item_is_accepted(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    script: list[wire.Reply] = [
        wire.fault(500),
        wire.fault(503),
        wire.drop(),
        wire.call("final_result", NOTES),
    ]
    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), max_attempts=1, max_waits=3)
        result = await Foreman(one_phase(card), store, backoff=QUICK).run({"topic": "tea"})
    events = store.events(result.run_id)
    assert result.status == "completed"
    assert stream(events, skip=[EventKind.MODEL_REQUESTED, EventKind.MODEL_EXCHANGE]) == [
        "run.started",
        "phase.started p items=1",
        "dispatch.started p researcher p #1",
        "dispatch.finished p researcher p #1 unavailable",
        "item.waiting p researcher p #1 unavailable",
        "dispatch.started p researcher p #1",
        "dispatch.finished p researcher p #1 unavailable",
        "item.waiting p researcher p #1 unavailable",
        "dispatch.started p researcher p #1",
        "dispatch.finished p researcher p #1 unavailable",
        "item.waiting p researcher p #1 unavailable",
        "dispatch.started p researcher p #1",
        "dispatch.finished p researcher p #1 output",
        "item.accepted p researcher p",
        "phase.finished p completed",
        "run.finished completed",
    ]
    # The transport errors were never fed to the model as a correction.
    assert all(r.work.get("correction") is None for r in server.requests)
    messages = [
        payload(e, EventKind.DISPATCH_FINISHED).get("message", "")
        for e in kinds(events, EventKind.DISPATCH_FINISHED)
    ]
    assert all(server.url.rsplit("/v1", 1)[0] in m for m in messages[:3])  # names the server


async def test_after_max_waits_the_fallback_takes_over(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def backup(inp: Topic, ctx: Any) -> Notes:
        return Notes(points=[f"backup: {inp.topic}"])

    with wire.serve("chat", lambda request: wire.fault(429, retry_after=0.01)) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), max_waits=2, fallback="backup")
        spare = Role(
            name="backup", purpose="Collect facts.", input=Topic, output=Notes, function=backup
        )
        wf = one_phase(card, roles=[card, spare])
        result = await Foreman(wf, store, backoff=QUICK).run({"topic": "tea"})
    events = store.events(result.run_id)
    assert result.status == "completed"
    assert len(server.requests) == 3  # the first request and one after each of the two waits
    [fallback] = kinds(events, EventKind.ITEM_FALLBACK)
    assert payload(fallback, EventKind.ITEM_FALLBACK)["to"] == "backup"
    assert "after 2 waits" in payload(fallback, EventKind.ITEM_FALLBACK)["reason"]
    # The fallback's attempt is the next one: the throttled attempt was spent when given up.
    assert [e.attempt for e in kinds(events, EventKind.DISPATCH_STARTED)] == [1, 1, 1, 2]
    assert store.artifacts(result.run_id)[0].content == {"points": ["backup: tea"]}


def first_requests_in_flight_together(n: int) -> Callable[[wire.Request], wire.Reply]:
    """A script: the first request of each of `n` items waits until all `n` have arrived,
    then meets a 500; the second is answered. So all `n` were sent before any fault."""
    barrier = threading.Barrier(n, timeout=30)
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def script(request: wire.Request) -> wire.Reply:
        topic = request.work["input"]["topic"]
        with lock:
            seen[topic] = seen.get(topic, 0) + 1
            first = seen[topic] == 1
        if first:
            barrier.wait()
            return wire.fault(500)
        return wire.call("final_result", {"points": [topic]})

    return script


async def test_faults_of_requests_in_flight_together_are_one_fault_not_many_in_a_row(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Eight items' requests meet one outage together: each waits within the bound of a first
    # fault (0.1 s), not the eighth in a row's (the cap, 3 s).
    with wire.serve("chat", first_requests_in_flight_together(8)) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), max_attempts=1)
        backoff = Backoff(first=0.1, cap=3.0)
        result = await Foreman(fan(card, 8), store, backoff=backoff).run({"topic": "tea"})
    assert result.status == "completed"
    waits = [
        payload(e, EventKind.ITEM_WAITING)["seconds"]
        for e in kinds(store.events(result.run_id), EventKind.ITEM_WAITING)
    ]
    # One wait an item for its 500; an item whose next turn came while the endpoint was still
    # held waited once more, without sending: never longer than the first fault's bound.
    assert len(waits) >= 8
    assert all(wait <= 0.1 for wait in waits), waits


async def test_items_held_by_one_fault_do_not_all_come_back_together(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Held for half the bound (0.5 s), then each item at its own moment in the other half: the
    # eight second requests spread over the seeded draws (0.39 s), not within milliseconds.
    from hubspoke.specialists import agent
    from hubspoke.throttle import Gate

    gates: dict[str, Gate] = {}
    monkeypatch.setattr(
        agent, "gate_for", lambda url: gates.setdefault(url, Gate(url, rng=random.Random(3)))
    )
    arrivals: list[float] = []
    script = first_requests_in_flight_together(8)

    def timed(request: wire.Request) -> wire.Reply:
        reply = script(request)
        if not isinstance(reply, wire.Fault):
            arrivals.append(time.monotonic())
        return reply

    with wire.serve("chat", timed) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), max_attempts=1)
        backoff = Backoff(first=1.0, cap=1.0)
        result = await Foreman(fan(card, 8), store, backoff=backoff).run({"topic": "tea"})
    assert result.status == "completed" and len(arrivals) == 8
    assert max(arrivals) - min(arrivals) > 0.2


async def test_a_sub_runs_agent_waits_with_the_foremans_backoff(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    script: list[wire.Reply] = [wire.fault(500), wire.call("final_result", NOTES)]
    with wire.serve("anthropic", script) as server:
        server.connect(monkeypatch)
        child = one_phase(
            researcher_card(model=server.binding("m")), result=lambda run: run.output("p")
        )
        team = child.as_role(name="team", purpose="Research.", output=Notes)
        parent = one_phase(team, result=lambda run: run.output("p"))
        result = await Foreman(parent, store, backoff=QUICK).run({"topic": "tea"}, run_id="P")
    assert result.status == "completed"
    [sub_run] = [r for r in store.runs(10) if r.run_id != "P"]
    [waited] = kinds(store.events(sub_run.run_id), EventKind.ITEM_WAITING)
    assert payload(waited, EventKind.ITEM_WAITING)["seconds"] <= QUICK.cap  # not 0.5-1 s


QUOTA = {
    # OpenAI sends an exhausted quota as a 429, like a rate limit, told apart by its code;
    # Anthropic as a 400 `billing_error`.
    "chat": (
        429,
        {
            "error": {
                "message": "You exceeded your current quota.",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        },
    ),
    "responses": (
        429,
        {
            "error": {
                "message": "You exceeded your current quota.",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        },
    ),
    "anthropic": (
        400,
        {
            "type": "error",
            "error": {"type": "billing_error", "message": "Your credit balance is too low."},
        },
    ),
}


@pytest.mark.parametrize("fmt", wire.FORMATS)
async def test_an_exhausted_quota_fails_the_attempt_instead_of_waiting(
    fmt: wire.Format, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Waiting does not refill a quota: the attempt fails and the ladder goes on (here: no more
    # attempts, so the item escalates), with no `item.waiting` and one request sent.
    status, body = QUOTA[fmt]
    with wire.serve(fmt, lambda request: wire.fault(status, body=body), strict=False) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), max_attempts=1, max_waits=3)
        result = await Foreman(one_phase(card), store, backoff=QUICK).run({"topic": "tea"})
    events = store.events(result.run_id)
    assert len(server.requests) == 1
    assert kinds(events, EventKind.ITEM_WAITING) == []
    [finished] = kinds(events, EventKind.DISPATCH_FINISHED)
    assert payload(finished, EventKind.DISPATCH_FINISHED)["outcome"] == "failed"
    assert "quota" in payload(finished, EventKind.DISPATCH_FINISHED)["message"]
    assert kinds(events, EventKind.ITEM_ESCALATED) != []


async def test_waiting_counts_against_the_deadline(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Retry-After of a minute against a run deadline of half a second: the run ends at its
    # deadline, exhausted, instead of sleeping for a minute.
    with wire.serve("chat", lambda request: wire.fault(429, retry_after=60)) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"))
        wf = one_phase(card, budget=Budget(seconds=0.5))
        result = await Foreman(wf, store).run({"topic": "tea"})
    assert result.status == "exhausted"
    assert "deadline" in result.reason
    [waited] = kinds(store.events(result.run_id), EventKind.ITEM_WAITING)
    assert payload(waited, EventKind.ITEM_WAITING)["seconds"] >= 60
    assert len(server.requests) == 1


async def test_two_runs_on_one_endpoint_share_its_hold(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run A meets the rate limit; run B, started meanwhile against the same endpoint, holds its
    # request until the hold ends instead of sending it into the limit.
    gate_open = asyncio.Event()
    answers: list[str] = []

    def script(request: wire.Request) -> wire.Reply:
        answers.append(request.work["input"]["topic"])
        if len(answers) == 1:
            return wire.fault(429, retry_after=0.5)
        return wire.call("final_result", {"points": [request.work["input"]["topic"]]})

    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"))
        store_a, store_b = SQLiteStore(tmp_path / "a.db"), SQLiteStore(tmp_path / "b.db")

        def when_a_waits(event: Event) -> None:
            if event.kind is EventKind.ITEM_WAITING:
                gate_open.set()

        run_a = asyncio.create_task(
            Foreman(one_phase(card), store_a, listeners=[when_a_waits]).run({"topic": "a"})
        )
        await gate_open.wait()
        result_b = await Foreman(one_phase(card), store_b).run({"topic": "b"})
        result_a = await run_a
    assert (result_a.status, result_b.status) == ("completed", "completed")
    # B sent nothing while A's hold was on: its first dispatch ended throttled without a
    # request, it waited, then its one request went out after the hold.
    events_b = store_b.events(result_b.run_id)
    [waited] = [payload(e, EventKind.ITEM_WAITING) for e in kinds(events_b, EventKind.ITEM_WAITING)]
    assert waited["cause"] == "throttled" and waited["seconds"] > 0
    assert len(kinds(events_b, EventKind.MODEL_REQUESTED)) == 1
    assert answers == ["a", "b", "a"] or answers == ["a", "a", "b"]
    assert [r.status for r in server.requests].count(429) == 1


# honest usage -----------------------------------------------------------------------------------


async def test_a_response_without_usage_is_charged_the_estimate_and_budgets_bind(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every answer is a tool call without a usage block: before, 20 requests all went out under
    # a 4,000-token budget and the journal counted 0 tokens.
    with wire.serve(
        "chat", lambda request: wire.call("lookup", {"topic": "tea"}, usage=None)
    ) as server:
        server.connect(monkeypatch)

        def lookup(topic: str) -> str:
            """Look a topic up."""
            return "tea " * 50

        card = researcher_card(
            model=server.binding("m"), tools=[lookup], max_turns=20, max_attempts=1
        )
        wf = one_phase(card, budget=Budget(tokens=4000))
        result = await Foreman(wf, store).run({"topic": "tea"})
    events = store.events(result.run_id)
    exchanges = [
        payload(e, EventKind.MODEL_EXCHANGE) for e in kinds(events, EventKind.MODEL_EXCHANGE)
    ]
    assert exchanges and all(x.get("estimated") is True for x in exchanges)
    assert all(x["input_tokens"] > 0 and x["output_tokens"] > 0 for x in exchanges)
    assert result.state.usage.tokens == sum(
        x["input_tokens"] + x["output_tokens"] for x in exchanges
    )
    assert result.state.usage.tokens <= 4000  # the run's budget held, counted on the estimate
    assert len(server.requests) < 20


async def test_a_count_past_the_allowance_keeps_the_final_answer(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The provider counts 4,000 input tokens for a prompt estimated far lower: the answer is
    # kept (before, it was thrown away as budget_refused) and the overrun is journaled.
    script = [wire.call("final_result", NOTES, usage=(4000, 10))]
    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), budget=Budget(tokens=3000))
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    events = store.events(result.run_id)
    assert result.status == "completed"
    [exchange] = kinds(events, EventKind.MODEL_EXCHANGE)
    assert payload(exchange, EventKind.MODEL_EXCHANGE)["overran"] is True
    assert result.state.usage.tokens == 4010  # what the provider counted, not the estimate


async def test_after_an_overrun_the_next_request_is_refused(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = [wire.call("lookup", {"topic": "tea"}, usage=(4000, 10))]
    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)

        def lookup(topic: str) -> str:
            """Look a topic up."""
            raise AssertionError("a tool of a response past the allowance must not run")

        card = researcher_card(
            model=server.binding("m"), budget=Budget(tokens=3000), tools=[lookup], max_attempts=1
        )
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    events = store.events(result.run_id)
    assert len(server.requests) == 1
    [finished] = kinds(events, EventKind.DISPATCH_FINISHED)
    assert payload(finished, EventKind.DISPATCH_FINISHED)["outcome"] == "budget_refused"
    assert kinds(events, EventKind.TOOL_CALLED) == []
    assert result.state.usage.tokens == 4010


async def test_a_timed_out_request_is_charged_its_worst_case(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    script: list[wire.Reply] = [
        wire.slow(30, wire.call("final_result", NOTES)),
        wire.call("final_result", NOTES),
    ]
    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), timeout=0.3)
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    events = store.events(result.run_id)
    assert result.status == "completed"
    first, _ = kinds(events, EventKind.DISPATCH_FINISHED)
    cut = payload(first, EventKind.DISPATCH_FINISHED)
    assert cut["outcome"] == "timed_out"
    [requested] = [
        payload(e, EventKind.MODEL_REQUESTED)
        for e in kinds(events, EventKind.MODEL_REQUESTED)
        if e.attempt == 1
    ]
    # The cut request counts, at its worst case: before, it counted 0 tokens and 0 requests.
    assert cut["usage"]["requests"] == 1
    assert cut["usage"]["input_tokens"] + cut["usage"]["output_tokens"] == requested["worst_tokens"]
    assert cut["usage"]["output_tokens"] == DEFAULT_MAX_OUTPUT_TOKENS
    exchange = payload(kinds(events, EventKind.MODEL_EXCHANGE)[0], EventKind.MODEL_EXCHANGE)
    assert exchange["cancelled"] is True and exchange["estimated"] is True
    assert server.requests[0].cancelled  # the client hung up: the server stopped generating


async def test_every_request_is_journaled_before_it_is_sent(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    journaled_before: list[int] = []

    def script(request: wire.Request) -> wire.Reply:
        # The store already holds the request's `model.requested`, durably, as it arrives.
        [run] = store.runs()
        journaled_before.append(len(kinds(store.events(run.run_id), EventKind.MODEL_REQUESTED)))
        return (
            wire.call("lookup", {"topic": "tea"})
            if len(journaled_before) == 1
            else wire.call("final_result", NOTES)
        )

    def lookup(topic: str) -> str:
        """Look a topic up."""
        return "tea"

    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), tools=[lookup])
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    assert result.status == "completed"
    assert journaled_before == [1, 2]
    requested = [
        payload(e, EventKind.MODEL_REQUESTED)
        for e in kinds(store.events(result.run_id), EventKind.MODEL_REQUESTED)
    ]
    assert [r["turn"] for r in requested] == [0, 1]
    assert all(r["endpoint"].rstrip("/") == server.url for r in requested)
    assert all(
        r["worst_tokens"] == r["input_tokens"] + DEFAULT_MAX_OUTPUT_TOKENS for r in requested
    )


async def test_requests_in_flight_at_a_crash_are_charged_when_the_run_resumes(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three sessions die while their request is in flight (the provider may bill each one);
    # the fourth finishes. Before, the journal counted only the finished request.
    kills = 3
    arrived = asyncio.Queue[None]()
    loop = asyncio.get_running_loop()

    def script(request: wire.Request) -> wire.Reply:
        loop.call_soon_threadsafe(arrived.put_nowait, None)
        if len(server.requests) <= kills:
            return wire.slow(30, wire.call("final_result", NOTES))
        return wire.call("final_result", NOTES, usage=(300, 20))

    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"))
        wf = one_phase(card)
        run_id = "crashy"
        for session in range(kills):
            foreman = Foreman(wf, store)
            if session == 0:
                task = asyncio.create_task(foreman.run({"topic": "tea"}, run_id=run_id))
            else:
                task = asyncio.create_task(foreman.resume(run_id))
            await arrived.get()  # its request is at the provider now
            task.cancel()  # the process dies
            with pytest.raises(asyncio.CancelledError):
                await task
        result = await Foreman(wf, store).resume(run_id)
    assert result.status == "completed"
    events = store.events(run_id)
    requested = [
        payload(e, EventKind.MODEL_REQUESTED) for e in kinds(events, EventKind.MODEL_REQUESTED)
    ]
    assert len(requested) == len(server.requests) == kills + 1
    worst = sum(r["worst_tokens"] for r in requested[:kills])
    # Three worst cases and the finished request's own count: never less than was billed.
    assert result.state.usage.requests == kills + 1
    assert result.state.usage.tokens == worst + 320


async def test_text_cut_at_the_token_limit_is_corrected_as_such(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small model rambles until max tokens: the correction says it ran out of room, not only
    # that it answered in text.
    script: list[wire.Reply] = [
        wire.Answer(text="Let me think about tea. " * 40, truncated=True),
        wire.call("final_result", NOTES),
    ]
    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"))
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    assert result.status == "completed"
    correction = server.requests[1].work["correction"]
    assert f"cut at the {DEFAULT_MAX_OUTPUT_TOKENS}-token limit" in correction


async def test_cached_input_tokens_are_priced_at_the_cached_rate_and_journaled(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # $1 per million input tokens, $2 output, $0.10 cached input.
    monkeypatch.setenv("HUBSPOKE_PRICES", "openai-compatible=1/2/0.1")
    script = [wire.call("final_result", NOTES, usage=(1000, 100), cached=800)]
    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"))
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    [exchange] = kinds(store.events(result.run_id), EventKind.MODEL_EXCHANGE)
    assert payload(exchange, EventKind.MODEL_EXCHANGE)["cached_tokens"] == 800
    assert result.state.usage.usd == pytest.approx((200 * 1 + 800 * 0.1 + 100 * 2) / 1e6)


@pytest.mark.parametrize("fmt", wire.FORMATS)
async def test_a_call_to_a_tool_not_on_the_card_is_refused_and_the_model_told(
    fmt: wire.Format, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    script: list[wire.Reply] = [
        wire.call("send_email", {"to": "ceo@example.com"}),
        wire.call("final_result", NOTES),
    ]
    with wire.serve(fmt, script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"))
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    assert result.status == "completed"
    events = store.events(result.run_id)
    [refused] = kinds(events, EventKind.TOOL_REFUSED)
    assert payload(refused, EventKind.TOOL_REFUSED).get("tool") == "send_email"
    assert kinds(events, EventKind.TOOL_CALLED) == []
    [returned] = server.requests[1].tool_results
    assert "not on this role's card" in str(returned)


FLOW = """
from pydantic import BaseModel
from hubspoke import Phase, Role, Workflow


class Topic(BaseModel):
    topic: str


class Notes(BaseModel):
    points: list[str]


workflow = Workflow(
    name="killed",
    input=Topic,
    roles=[Role(name="researcher", purpose="Collect facts.", input=Topic, output=Notes)],
    phases=[Phase(name="p", role="researcher", input=lambda run: run.input)],
)
"""


def test_a_process_killed_with_a_request_in_flight_is_charged_it_on_resume(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL while the provider holds the request, then `hubspoke resume` from another
    process: the killed request counts, at its worst case, next to the one that finished."""
    (tmp_path / "flow.py").write_text(FLOW)
    db = tmp_path / "journal.db"
    hubspoke = str(Path(sys.executable).with_name("hubspoke"))
    arrived = threading.Event()

    def script(request: wire.Request) -> wire.Reply:
        if not arrived.is_set():
            arrived.set()
            return wire.slow(60, wire.call("final_result", NOTES))
        return wire.call("final_result", NOTES, usage=(300, 20))

    with wire.serve("chat", script) as server:
        env = {**os.environ, "HUBSPOKE_PRICES": "openai-compatible=0/0"}
        run = [hubspoke, "run", "flow.py:workflow", "--input", '{"topic": "tea"}', "--db", str(db)]
        proc = subprocess.Popen(
            [*run, "--model", server.binding("m")],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert arrived.wait(60), "the request never reached the provider"
        finally:
            proc.kill()
            proc.wait()
        reader = SQLiteStore(db, read_only=True)
        [record] = reader.runs()
        reader.close()
        resumed = subprocess.run(
            [hubspoke, "resume", record.run_id, "--db", str(db)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert resumed.returncode == 0, resumed.stderr
    store = SQLiteStore(db, read_only=True)
    events = store.events(record.run_id)
    requested = [
        payload(e, EventKind.MODEL_REQUESTED) for e in kinds(events, EventKind.MODEL_REQUESTED)
    ]
    assert len(requested) == len(server.requests) == 2
    state = RunState.fold(record.run_id, events)
    assert state.status == "completed"
    assert state.usage.requests == 2
    assert state.usage.tokens == requested[0]["worst_tokens"] + 320


async def test_a_sibling_whose_turn_comes_during_a_hold_waits_outside_its_time_out(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # t0 meets a 429 (Retry-After 1 s) while t1 is mid-conversation; t1's next request would
    # wait behind the hold inside its 0.6 s time-out and lose an attempt. It waits outside.
    n: dict[str, int] = {}

    def script(request: wire.Request) -> wire.Reply:
        topic = request.work["input"]["topic"]
        n[topic] = n.get(topic, 0) + 1
        if topic == "t0" and n[topic] == 1:
            return wire.fault(429, retry_after=1)
        if topic == "t1" and n[topic] == 1:
            return wire.slow(0.3, wire.call("lookup", {"topic": topic}))
        return wire.call("final_result", {"points": [topic]})

    def lookup(topic: str) -> str:
        """Look a topic up."""
        return topic

    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"), tools=[lookup], timeout=0.6)
        result = await Foreman(fan(card, 2), store, backoff=QUICK).run({"topic": "tea"})
    events = store.events(result.run_id)
    assert result.status == "completed"
    outcomes = [
        payload(e, EventKind.DISPATCH_FINISHED)["outcome"]
        for e in kinds(events, EventKind.DISPATCH_FINISHED)
    ]
    assert "timed_out" not in outcomes
    assert kinds(events, EventKind.ITEM_RETRY) == []
    assert {e.attempt for e in kinds(events, EventKind.DISPATCH_STARTED)} == {1}


async def test_a_request_dropped_after_it_was_sent_is_charged_its_worst_case(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    script: list[wire.Reply] = [wire.drop(), wire.call("final_result", NOTES, usage=(300, 20))]
    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        card = researcher_card(model=server.binding("m"))
        result = await Foreman(one_phase(card), store, backoff=QUICK).run({"topic": "tea"})
    events = store.events(result.run_id)
    assert result.status == "completed"
    first = payload(kinds(events, EventKind.MODEL_EXCHANGE)[0], EventKind.MODEL_EXCHANGE)
    [requested, _] = [
        payload(e, EventKind.MODEL_REQUESTED) for e in kinds(events, EventKind.MODEL_REQUESTED)
    ]
    assert first["estimated"] is True
    assert first["input_tokens"] + first["output_tokens"] == requested["worst_tokens"]
    assert result.state.usage.requests == 2
    assert result.state.usage.tokens == requested["worst_tokens"] + 320


async def test_a_sub_run_cut_short_with_a_request_in_flight_charges_its_parent(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    reply = wire.slow(30, wire.call("final_result", NOTES))
    with wire.serve("chat", lambda request: reply) as server:
        server.connect(monkeypatch)
        child = Workflow(
            name="child",
            input=Topic,
            roles=[researcher_card(model=server.binding("m"))],
            phases=[Phase(name="c", role="researcher", input=lambda run: run.input)],
            result=lambda run: run.output("c"),
        )
        team = child.as_role(name="team", purpose="Research.", output=Notes, timeout=0.5)
        parent = Workflow(
            name="parent",
            input=Topic,
            roles=[team],
            phases=[Phase(name="p", role="team", input=lambda run: run.input)],
            max_escalations=5,
        )
        result = await Foreman(parent, store).run({"topic": "tea"}, run_id="P")
    child_events = [e for c in result.state.children for e in store.events(c)]
    worst = sum(
        payload(e, EventKind.MODEL_REQUESTED)["worst_tokens"]
        for e in child_events
        if e.kind is EventKind.MODEL_REQUESTED
    )
    assert worst > 0
    # Every request the children had in flight is charged to the parent: before, 0 tokens.
    assert result.state.usage.tokens == worst
    assert result.state.usage.requests == len(server.requests)


async def test_a_resume_charges_the_earlier_requests_of_a_dispatch_as_counted(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Turn 0 is answered (40 + 10 tokens, a tool call); turn 1 is in flight at the crash. The
    # resume charges 50 + turn 1's worst case, not turn 0's worst case as well.
    arrived = asyncio.Queue[int]()
    loop = asyncio.get_running_loop()

    def script(request: wire.Request) -> wire.Reply:
        loop.call_soon_threadsafe(arrived.put_nowait, len(server.requests))
        if len(server.requests) == 1:
            return wire.call("lookup", {"topic": "tea"}, usage=(40, 10))
        if len(server.requests) == 2:
            return wire.slow(30, wire.call("final_result", NOTES))
        return wire.call("final_result", NOTES, usage=(40, 10))

    def lookup(topic: str) -> str:
        """Look a topic up."""
        return topic

    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        wf = one_phase(researcher_card(model=server.binding("m"), tools=[lookup]))
        task = asyncio.create_task(Foreman(wf, store).run({"topic": "tea"}, run_id="X"))
        while await arrived.get() < 2:
            pass
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        result = await Foreman(wf, store).resume("X")
    requested = [
        payload(e, EventKind.MODEL_REQUESTED)
        for e in kinds(store.events("X"), EventKind.MODEL_REQUESTED)
    ]
    assert result.status == "completed"
    assert result.state.usage.tokens == 50 + requested[1]["worst_tokens"] + 50


async def test_an_evaluator_that_waited_for_its_provider_resumes_where_it_stood(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The judge is throttled twice (max_waits=1): one wait, then it gives up and the item
    # escalates. Cut right after its `item.waiting` and resumed, the run decides the same: the
    # same attempt, no second wait.
    from hubspoke import EvaluationRequest, Verdict
    from tests.helpers import Draft, drafting
    from tests.test_resume import truncate

    calls = [0]

    def script(request: wire.Request) -> wire.Reply:
        calls[0] += 1
        if calls[0] <= 2:
            return wire.fault(429, retry_after=0.05)
        return wire.call("final_result", {"accept": True})

    def flow(binding: str) -> Workflow:
        writer = Role(
            name="writer", purpose="Write.", input=Topic, output=Draft, function=drafting([])
        )
        judge = Role(
            name="judge",
            purpose="Judge.",
            input=EvaluationRequest,
            output=Verdict,
            model=binding,
            max_waits=1,
        )
        return Workflow(
            name="w",
            input=Topic,
            roles=[writer, judge],
            phases=[
                Phase(name="write", role="writer", input=lambda run: run.input, evaluator="judge")
            ],
        )

    db = tmp_path / "j.db"
    shown = (EventKind.DISPATCH_STARTED, EventKind.DISPATCH_FINISHED, EventKind.ITEM_WAITING)
    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        store = SQLiteStore(db)
        await Foreman(flow(server.binding("m")), store, backoff=QUICK).run(
            {"topic": "tea"}, run_id="R"
        )
        events = store.events("R")
        uncrashed = [line for line in stream(events) if line.split()[0] in shown]
        cut = next(e.seq for e in events if e.kind is EventKind.ITEM_WAITING)
        store.close()
        truncate(db, "R", cut)
        calls[0] = 0
        store = SQLiteStore(db)
        resumed = await Foreman(flow(server.binding("m")), store, backoff=QUICK).resume("R")
        again = [line for line in stream(store.events("R")) if line.split()[0] in shown]
        store.close()
    assert resumed.status == "waiting"  # escalated: the judge never judged
    assert again == uncrashed
    assert uncrashed[-2:] == [
        "dispatch.started write judge write#eval #1",
        "dispatch.finished write judge write#eval #1 throttled",
    ]
