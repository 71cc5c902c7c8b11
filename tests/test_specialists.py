"""Specialists: function specialists (sync ones in worker threads), the agent loop (concurrent
tool calls, answers that do not parse) and the context a specialist cannot change the runtime
through. End to end through `Foreman.run`, with the offline model's players."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai.messages import (
    INVALID_JSON_KEY,
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from hubspoke import Budget, Context, EventKind, Foreman, Phase, Role, SQLiteStore, Workflow
from hubspoke.budget import BudgetExceeded, Usage
from hubspoke.models.offline import Turn, answer, ask_human, call, refuse
from hubspoke.specialists import ContextError, ToolRefused
from hubspoke.testing import scripted, stream
from hubspoke.tools import Tool
from tests.helpers import (
    Notes,
    Number,
    Squared,
    Topic,
    one_phase,
    recording_lookup,
    researcher_card,
    square_each,
    squares,
    summarise,
)

pytestmark = pytest.mark.anyio

HOLD = 30.0
"""A failsafe only: how long a blocked thread waits before giving up if the runtime is broken."""


def worker_thread(name: str) -> threading.Thread:
    """The worker thread running `name` (sync tools and functions run in `hubspoke:<name>`)."""
    return next(t for t in threading.enumerate() if t.name == f"hubspoke:{name}")


ONE = Phase(name="p", role="squarer", input=lambda run: Number(n=3))


# sync function specialists run in worker threads -----------------------------------------------


async def test_a_blocking_sync_function_does_not_stall_its_siblings(store: SQLiteStore) -> None:
    sibling_done = threading.Event()

    def work(inp: Number, ctx: Context) -> Squared:
        if inp.n == 0:  # blocks until its sibling has finished: only if the sibling runs meanwhile
            assert sibling_done.wait(HOLD), "the sibling never ran while this one blocked"
        else:
            sibling_done.set()
        return Squared(n=inp.n, square=inp.n * inp.n)

    wf = squares(square_each("p", range(2), concurrency=2), work)
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "completed"
    assert stream(store.events(result.run_id), skip=[EventKind.PHASE_STARTED])[1:-2] == [
        "dispatch.started p squarer p[0] #1",
        "dispatch.started p squarer p[1] #1",
        "dispatch.finished p squarer p[1] #1 output",
        "item.accepted p squarer p[1]",
        "dispatch.finished p squarer p[0] #1 output",
        "item.accepted p squarer p[0]",
    ]


async def test_a_blocked_sync_function_times_out_while_its_thread_runs_on(
    store: SQLiteStore,
) -> None:
    release, started, returned = threading.Event(), threading.Event(), threading.Event()

    def stuck(inp: Number, ctx: Context) -> Squared:
        started.set()
        release.wait(HOLD)
        returned.set()
        return Squared(n=inp.n, square=inp.n * inp.n)

    wf = squares(ONE, stuck, timeout=0.2, max_attempts=1)
    result = await Foreman(wf, store).run({"topic": "x"})
    # The dispatch ended at its time-out: the thread had started and has not returned yet.
    assert started.is_set() and not returned.is_set()
    assert result.status == "waiting"
    events = store.events(result.run_id)
    assert stream(events)[2:5] == [
        "dispatch.started p squarer p #1",
        "dispatch.finished p squarer p #1 timed_out",
        "item.escalated p squarer p",
    ]
    thread = worker_thread("stuck")
    release.set()
    thread.join(HOLD)
    assert returned.is_set()
    await asyncio.sleep(0)  # let the late result reach the loop: it is dropped
    assert store.events(result.run_id) == events  # what it returned late changed nothing


async def test_a_sync_function_calls_tools_with_call_tool_sync(store: SQLiteStore) -> None:
    looked: list[str] = []
    lookup = recording_lookup(looked)

    def research(inp: Topic, ctx: Context) -> Notes:
        return Notes(points=[ctx.call_tool_sync("lookup", topic=inp.topic)])

    card = researcher_card(purpose="Research.", function=research, tools=[lookup])
    wf = one_phase(card, result=lambda run: run.output("p"))
    result = await Foreman(wf, store).run({"topic": "tea"})
    assert result.status == "completed"
    assert result.result == Notes(points=["tea: known"])
    assert looked == ["tea"]
    called = [e.data for e in store.events(result.run_id) if e.kind is EventKind.TOOL_CALLED]
    assert [(c["tool"], c["arguments"]) for c in called] == [("lookup", {"topic": "tea"})]


async def test_call_tool_sync_on_the_event_loop_is_refused_with_the_fix(
    store: SQLiteStore,
) -> None:
    async def research(inp: Topic, ctx: Context) -> Notes:
        ctx.call_tool_sync("lookup", topic=inp.topic)
        raise AssertionError("unreachable")

    wf = one_phase(
        researcher_card(purpose="Research.", function=research, tools=[lookup], max_attempts=1)
    )
    result = await Foreman(wf, store).run({"topic": "tea"})
    finished = next(e for e in store.events(result.run_id) if e.kind is EventKind.DISPATCH_FINISHED)
    assert finished.data["outcome"] == "failed"
    assert "await ctx.call_tool" in finished.data["message"]


# the context: read-only allowance and tools, a validated append-only trace ------------------------


def send_email(to: str) -> str:
    """Send an email."""
    raise AssertionError("never runs: not on the card")


def cyclic() -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": "tool.called", "tool": "lookup"}
    entry["arguments"] = entry
    return entry


Attempt = Callable[[Context], object]

# (what the specialist tries, the error it gets, the `tool` of the journaled refusal)
TAMPERING: dict[str, tuple[Attempt, type[Exception], str]] = {
    "raise the token limit": (
        lambda ctx: setattr(ctx.allowance, "tokens", 10**9),
        ContextError,
        "ctx.allowance",
    ),
    "raise the tool-call limit": (
        lambda ctx: setattr(ctx.allowance, "tool_calls", None),
        ContextError,
        "ctx.allowance",
    ),
    "replace what was used": (
        lambda ctx: setattr(ctx.allowance, "used", Usage()),
        ContextError,
        "ctx.allowance",
    ),
    "reset the tool calls used": (
        lambda ctx: setattr(ctx.allowance.used, "tool_calls", 0),
        ContextError,
        "ctx.allowance.used",
    ),
    "spend a negative amount": (
        lambda ctx: ctx.allowance.used.add(usd=-1.0),
        ContextError,
        "ctx.allowance.used",
    ),
    "spend NaN": (
        lambda ctx: setattr(ctx.allowance.used, "usd", math.nan),
        ContextError,
        "ctx.allowance.used",
    ),
    "add another tool": (
        lambda ctx: ctx.tools.__setitem__("send_email", Tool.from_function(send_email)),
        ToolRefused,
        "send_email",
    ),
    "remove a tool": (lambda ctx: ctx.tools.__delitem__("lookup"), ToolRefused, "lookup"),
    "swap the tool table": (
        lambda ctx: setattr(ctx, "tools", {"send_email": Tool.from_function(send_email)}),
        ContextError,
        "ctx.tools",
    ),
    "swap the allowance": (
        lambda ctx: setattr(ctx, "allowance", None),
        ContextError,
        "ctx.allowance",
    ),
    "forget the other roles": (
        lambda ctx: setattr(ctx, "_roles", frozenset()),
        ContextError,
        "ctx._roles",
    ),
    "change the attempt": (lambda ctx: setattr(ctx, "attempt", 99), ContextError, "ctx.attempt"),
    "a trace entry without a kind": (
        lambda ctx: ctx.trace.append({"bogus": 1}),
        ContextError,
        "ctx.trace.append",
    ),
    "a trace entry of an unknown kind": (
        lambda ctx: ctx.trace.append({"kind": "run.finished", "status": "completed"}),
        ContextError,
        "ctx.trace.append",
    ),
    "a trace entry without its fields": (
        lambda ctx: ctx.trace.append({"kind": "child.started"}),
        ContextError,
        "ctx.trace.append",
    ),
    "a mistyped trace field": (
        lambda ctx: ctx.trace.append({"kind": "model.exchange", "turn": "one"}),
        ContextError,
        "ctx.trace.append",
    ),
    "a trace entry that is not a dict": (
        lambda ctx: ctx.trace.append("tool.called lookup"),  # type: ignore[arg-type]
        ContextError,
        "ctx.trace.append",
    ),
    "a trace entry that is not JSON": (
        lambda ctx: ctx.trace.append(cyclic()),
        ContextError,
        "ctx.trace.append",
    ),
    "replace a trace entry": (
        lambda ctx: ctx.trace.__setitem__(0, {"kind": "tool.refused"}),
        ContextError,
        "ctx.trace",
    ),
    "clear the trace": (lambda ctx: ctx.trace.__delitem__(slice(None)), ContextError, "ctx.trace"),
}


def lookup(topic: str) -> str:
    """Look a topic up."""
    return f"{topic}: known"


def other_tool(topic: str) -> str:
    """Another role's tool."""
    raise AssertionError("never runs: another role's tool")


def tampering_workflow(function: Any) -> Workflow:
    return Workflow(
        name="tamper",
        input=Topic,
        roles=[
            Role(
                name="researcher",
                purpose="Research.",
                input=Topic,
                output=Notes,
                function=function,
                tools=[lookup],
                budget=Budget(tool_calls=1),
                max_attempts=1,
            ),
            Role(
                name="writer",
                purpose="Write.",
                input=Notes,
                output=Notes,
                function=summarise,
                tools=[other_tool],
            ),
        ],
        phases=[Phase(name="p", role="researcher", input=lambda run: run.input)],
    )


@pytest.mark.parametrize("attempt", list(TAMPERING), ids=list(TAMPERING))
async def test_a_specialist_cannot_change_the_runtime_through_its_context(
    store: SQLiteStore, attempt: str
) -> None:
    tamper, error, refused_as = TAMPERING[attempt]
    caught: list[Exception] = []
    after: list[str] = []

    async def research(inp: Topic, ctx: Context) -> Notes:
        after.append(await ctx.call_tool("lookup", topic=inp.topic))
        try:
            tamper(ctx)
        except error as e:
            caught.append(e)
        # The runtime is as it was: its one tool call used, the card's tools only.
        with pytest.raises(BudgetExceeded):
            await ctx.call_tool("lookup", topic="again")
        with pytest.raises(ToolRefused, match="not on this role's card"):
            await ctx.call_tool("send_email", to="x@example.com")
        with pytest.raises(ToolRefused, match="not on this role's card"):
            await ctx.call_tool("other_tool", topic="x")
        return Notes(points=after)

    result = await Foreman(tampering_workflow(research), store).run({"topic": "tea"})
    assert result.status == "completed", result.reason
    assert len(caught) == 1, f"{attempt}: not refused"
    events = store.events(result.run_id)
    refused = [e.data for e in events if e.kind is EventKind.TOOL_REFUSED]
    assert [r["tool"] for r in refused] == [refused_as, "send_email", "other_tool"]
    first = next(e for e in events if e.kind.value.startswith("tool."))
    assert first.kind is EventKind.TOOL_CALLED  # the tampering came after the one allowed call
    assert refused[0]["reason"] == str(caught[0])
    assert [e.data["tool"] for e in events if e.kind is EventKind.TOOL_CALLED] == ["lookup"]
    assert after == ["tea: known"]


async def test_a_refusal_the_specialist_does_not_catch_is_a_failed_dispatch(
    store: SQLiteStore,
) -> None:
    async def research(inp: Topic, ctx: Context) -> Notes:
        ctx.trace.append({"bogus": 1})
        raise AssertionError("unreachable")

    result = await Foreman(tampering_workflow(research), store).run({"topic": "tea"})
    assert result.status == "waiting"  # down the ladder; the foreman did not crash
    events = store.events(result.run_id)
    finished = next(e for e in events if e.kind is EventKind.DISPATCH_FINISHED)
    assert finished.data["outcome"] == "failed"
    assert finished.data["message"].startswith("ContextError: malformed trace entry refused:")
    assert "'kind' must be one of" in finished.data["message"]


async def test_trace_entries_are_copies_the_specialist_cannot_change(
    store: SQLiteStore,
) -> None:
    async def research(inp: Topic, ctx: Context) -> Notes:
        entry: dict[str, Any] = {"kind": "tool.called", "tool": "search", "arguments": {"q": 1}}
        ctx.trace.append(entry)
        entry["kind"] = "bogus"  # the original, after it was appended
        entry["arguments"]["q"] = 2
        read = ctx.trace[0]
        read["tool"] = "changed"  # a copy read back
        del next(iter(ctx.trace))["kind"]
        return Notes(points=[str(len(ctx.trace))])

    result = await Foreman(tampering_workflow(research), store).run({"topic": "tea"})
    assert result.status == "completed"
    called = [e.data for e in store.events(result.run_id) if e.kind is EventKind.TOOL_CALLED]
    assert called == [{"kind": "tool.called", "tool": "search", "arguments": {"q": 1}}]


async def test_a_trace_entry_may_come_as_any_mapping(store: SQLiteStore) -> None:
    async def research(inp: Topic, ctx: Context) -> Notes:
        ctx.trace.append(MappingProxyType({"kind": "tool.called", "tool": "search"}))
        return Notes(points=["ok"])

    result = await Foreman(tampering_workflow(research), store).run({"topic": "tea"})
    assert result.status == "completed"
    called = [e.data for e in store.events(result.run_id) if e.kind is EventKind.TOOL_CALLED]
    assert called == [{"kind": "tool.called", "tool": "search"}]


async def test_the_allowance_is_readable_and_spending_only_grows(store: SQLiteStore) -> None:
    seen: dict[str, Any] = {}

    async def research(inp: Topic, ctx: Context) -> Notes:
        allowance = ctx.allowance
        seen["limit"] = allowance.tool_calls
        await ctx.call_tool("lookup", topic=inp.topic)
        seen["used"] = allowance.used.tool_calls
        allowance.used.usd += 0.25  # reporting what it spent elsewhere is allowed
        allowance.used.add(input_tokens=10, output_tokens=5, requests=1)
        seen["left"] = ctx.remaining.tool_calls
        return Notes(points=["ok"])

    result = await Foreman(tampering_workflow(research), store).run({"topic": "tea"})
    assert result.status == "completed"
    assert seen == {"limit": 1, "used": 1, "left": 0}
    finished = next(e for e in store.events(result.run_id) if e.kind is EventKind.DISPATCH_FINISHED)
    usage = finished.data["usage"]
    assert (usage["tool_calls"], usage["usd"], usage["input_tokens"], usage["requests"]) == (
        1,
        0.25,
        10,
        1,
    )


# the agent loop: several tool calls of one response run concurrently ------------------------------


def meeting_tools(sync: bool) -> list[Callable[..., Any]]:
    """Two tools that only both return if they run at the same time."""
    if sync:
        met = threading.Event()

        def wait_for_partner() -> str:
            """Wait until the partner arrives."""
            return "met" if met.wait(HOLD) else "alone"

        def arrive() -> str:
            """Arrive."""
            met.set()
            return "arrived"

        return [wait_for_partner, arrive]
    arrived = asyncio.Event()

    async def wait_for_partner_async() -> str:
        """Wait until the partner arrives."""
        await arrived.wait()
        return "met"

    async def arrive_async() -> str:
        """Arrive."""
        arrived.set()
        return "arrived"

    wait_for_partner_async.__name__, arrive_async.__name__ = "wait_for_partner", "arrive"
    return [wait_for_partner_async, arrive_async]


@pytest.mark.parametrize("sync", [False, True], ids=["async-tools", "sync-tools"])
async def test_tool_calls_of_one_response_run_concurrently_results_in_call_order(
    store: SQLiteStore, sync: bool
) -> None:
    def player(turn: Turn) -> Any:
        if turn.turn == 0:
            return [call("wait_for_partner"), call("arrive")]
        return answer(points=[f"{name}={content}" for name, content in turn.results])

    agent = researcher_card(
        name="agent", purpose="Meet.", tools=meeting_tools(sync), timeout=HOLD, max_attempts=1
    )
    wf = one_phase(agent, players={"agent": player}, result=lambda run: run.output("p"))
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "completed", result.reason
    assert result.result == Notes(points=["wait_for_partner=met", "arrive=arrived"])
    assert stream(store.events(result.run_id))[3:6] == [
        "model.exchange p agent p #1 wait_for_partner,arrive",
        "tool.called p agent p #1 wait_for_partner",  # in call order, though it returned last
        "tool.called p agent p #1 arrive",
    ]


async def test_each_tool_call_is_checked_and_counted_in_call_order_before_any_runs(
    store: SQLiteStore,
) -> None:
    ran: list[str] = []
    look = recording_lookup(ran, "look")

    def player(turn: Turn) -> Any:
        return [
            call("look", topic="a"),
            call("send_email", to="x@example.com"),
            call("look", topic="b"),
            call("look", topic="c"),
        ]

    agent = researcher_card(
        name="agent", purpose="Look.", tools=[look], budget=Budget(tool_calls=2), max_attempts=1
    )
    wf = one_phase(agent, players={"agent": player})
    result = await Foreman(wf, store).run({"topic": "x"})
    assert sorted(ran) == ["a", "b"]  # the third call on the card was over the allowance
    assert stream(store.events(result.run_id))[3:8] == [
        "model.exchange p agent p #1 look,send_email,look,look",
        "tool.called p agent p #1 look",
        "tool.refused p agent p #1 send_email",
        "tool.called p agent p #1 look",
        "dispatch.finished p agent p #1 budget_refused",
    ]


# the agent loop: answers whose arguments do not parse ---------------------------------------------


class Facts(BaseModel):
    """Every field has a default: `{}` would validate, and must never be taken for an answer."""

    facts: list[str] = []


TRUNCATED = {
    "final_result": '{"facts": ["tea is o',
    "ask_human": '{"question": "Should we email the',
    "refuse": '{"reason": "This is out',
}


def agent_workflow(player: Any, output: type[BaseModel] = Facts, **role: Any) -> Workflow:
    return one_phase(
        Role(name="agent", purpose="Answer.", input=Topic, output=output, **role),
        players={"agent": player} if player is not None else {},
        result=lambda run: run.output("p"),
    )


@pytest.mark.parametrize("wrapped", [False, True], ids=["text", "invalid-json-stand-in"])
@pytest.mark.parametrize("tool", list(TRUNCATED))
async def test_an_answer_whose_arguments_do_not_parse_is_invalid_with_a_correction(
    store: SQLiteStore, tool: str, wrapped: bool
) -> None:
    corrections: list[str | None] = []
    # As the model sent them, or as pydantic-ai stands in for them once they failed to parse.
    args: str | dict[str, Any] = {INVALID_JSON_KEY: TRUNCATED[tool]} if wrapped else TRUNCATED[tool]

    def player(turn: Turn) -> Any:
        corrections.append(turn.correction)
        if turn.attempt == 1:
            return ToolCallPart(tool_name=tool, args=args, tool_call_id="c1")
        return answer(facts=["tea is old"])

    result = await Foreman(agent_workflow(player), store).run({"topic": "tea"})
    assert result.status == "completed"
    assert result.result == Facts(facts=["tea is old"])  # never `Facts(facts=[])`, the defaults
    events = store.events(result.run_id)
    assert stream(events)[3:9] == [
        f"model.exchange p agent p #1 {tool}",
        "dispatch.finished p agent p #1 invalid",
        "output.invalid p agent p #1",
        "item.retry p agent p #2",
        "dispatch.started p agent p #2",
        "model.exchange p agent p #2 final_result",
    ]
    assert not [e for e in events if e.kind is EventKind.ITEM_ESCALATED]
    assert corrections[0] is None
    assert corrections[1] == (
        "Your previous output was invalid:\n"
        f"- (root): your `{tool}` call's arguments were not a valid JSON object (truncated?); "
        f"call `{tool}` again with "
        + (
            "one complete JSON object matching its schema"
            if tool == "final_result"
            else '{"%s": "..."}' % ("question" if tool == "ask_human" else "reason")
        )
    )


@pytest.mark.parametrize(
    ("move", "field"),
    [
        (ask_human(""), "question"),
        (refuse("   "), "reason"),
        (ToolCallPart(tool_name="ask_human", args={}, tool_call_id="c1"), "question"),
        (ToolCallPart(tool_name="refuse", args={"reason": 42}, tool_call_id="c1"), "reason"),
    ],
)
async def test_a_question_or_refusal_without_its_text_is_not_an_empty_escalation(
    store: SQLiteStore, move: ToolCallPart, field: str
) -> None:
    result = await Foreman(agent_workflow(scripted(move, answer(facts=["a"]))), store).run(
        {"topic": "tea"}
    )
    assert result.status == "completed"
    events = store.events(result.run_id)
    invalid = next(e for e in events if e.kind is EventKind.OUTPUT_INVALID)
    assert invalid.data["errors"][0]["msg"].startswith(
        f"`{move.tool_name}` needs a non-empty `{field}` string"
    )
    assert not [e for e in events if e.kind is EventKind.ITEM_ESCALATED]


async def test_a_response_cut_at_its_token_limit_says_so(store: SQLiteStore) -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        # A model can only call the tools the request offers: read them, as a provider would.
        offered = [t.name for t in [*info.function_tools, *info.output_tools]]
        assert "final_result" in offered, offered
        if len(messages) == 1 and "correction" not in str(messages[0]):
            return ModelResponse(
                parts=[ToolCallPart(tool_name="final_result", args='{"facts": ["a", "b')],
                usage=RequestUsage(input_tokens=10, output_tokens=1024),
                finish_reason="length",
            )
        return ModelResponse(
            parts=[ToolCallPart(tool_name="final_result", args='{"facts": ["a"]}')],
            usage=RequestUsage(input_tokens=10, output_tokens=5),
        )

    wf = agent_workflow(None, model=FunctionModel(respond, model_name="cut"))
    result = await Foreman(wf, store).run({"topic": "tea"})
    assert result.status == "completed"
    assert result.result == Facts(facts=["a"])
    invalid = next(e for e in store.events(result.run_id) if e.kind is EventKind.OUTPUT_INVALID)
    assert "(the response hit its token limit)" in invalid.data["errors"][0]["msg"]


async def test_tool_arguments_that_do_not_parse_go_back_as_invalid_json(
    store: SQLiteStore,
) -> None:
    ran: list[str] = []
    look = recording_lookup(ran, "look")

    def player(turn: Turn) -> Any:
        if turn.turn == 0:
            return ToolCallPart(tool_name="look", args='{"topic": "te', tool_call_id="c1")
        returned = turn.result("look")
        return answer(facts=[returned["invalid_arguments"][0]["type"]])

    result = await Foreman(agent_workflow(player, tools=[look]), store).run({"topic": "tea"})
    assert result.result == Facts(facts=["json_invalid"])
    assert ran == []


async def test_an_answer_in_text_alone_is_still_invalid(store: SQLiteStore) -> None:
    result = await Foreman(
        agent_workflow(scripted(TextPart("tea is old"), answer(facts=["a"]))), store
    ).run({"topic": "tea"})
    assert result.status == "completed"


# hostile specialists, second review ----------------------------------------------------------


class _Sneaky(int):
    """An int whose comparisons lie: it is never less than anything, always at least anything."""

    def __lt__(self, other: object) -> bool:
        return False

    def __ge__(self, other: object) -> bool:
        return True


async def _run_hostile(
    store: SQLiteStore, body: Callable[[Context], Any], budget: Budget | None = None
) -> tuple[str, list[str], list[Any]]:
    """Run one researcher whose function does `body(ctx)` then answers; return the run's status,
    what the lookup tool really ran with, and the journal's events."""
    ran: list[str] = []

    async def hostile(inp: Topic, ctx: Context) -> Notes:
        await body(ctx)
        return Notes(points=["done"])

    card = researcher_card(
        function=hostile, tools=[recording_lookup(ran)], budget=budget, max_attempts=1
    )
    result = await Foreman(one_phase(card), store).run({"topic": "t"})
    return result.status, ran, store.events(result.run_id)


async def test_spending_cannot_be_lowered_with_a_number_that_lies(store: SQLiteStore) -> None:
    async def body(ctx: Context) -> None:
        await ctx.call_tool("lookup", topic="a")
        ctx.allowance.used.tool_calls = _Sneaky(0)

    status, ran, events = await _run_hostile(store, body, Budget(tool_calls=2))
    assert status == "waiting" and ran == ["a"]
    finished = [e for e in events if e.kind is EventKind.DISPATCH_FINISHED]
    assert finished[0].data["usage"]["tool_calls"] == 1
    assert "must be a whole number" in finished[0].data["message"]


async def test_a_context_cannot_be_initialised_again(store: SQLiteStore) -> None:
    from hubspoke.budget import Allowance

    async def body(ctx: Context) -> None:
        tools = dict(ctx.tools)
        unlimited = Allowance(None, None, None)
        ctx.__init__(ctx.brief, 1, None, "k", unlimited, tools)  # type: ignore[misc]

    status, _, events = await _run_hostile(store, body)
    assert status == "waiting"
    finished = next(e for e in events if e.kind is EventKind.DISPATCH_FINISHED)
    assert "cannot be initialised again" in finished.data["message"]


async def test_the_foremans_tool_table_is_out_of_reach(store: SQLiteStore) -> None:
    async def body(ctx: Context) -> None:
        ctx.tools._tools["secret"] = ctx.tools["lookup"]  # type: ignore[index]

    wf_status, _, _ = await _run_hostile(store, body)
    assert wf_status == "waiting"  # a read-only proxy: the assignment raises


async def test_a_trace_entry_that_reads_differently_twice_is_refused_or_kept_as_checked(
    store: SQLiteStore,
) -> None:
    class TwoFaced(dict[str, Any]):
        reads = 0

        def __iter__(self) -> Any:
            TwoFaced.reads += 1
            return iter(["kind"] if TwoFaced.reads > 1 else ["kind", "tool"])

    async def body(ctx: Context) -> None:
        entry = TwoFaced(kind="tool.called", tool="lookup")
        ctx.trace.append(entry)
        ctx.trace.append({"kind": "tool.called", "tool": "t", "seconds": float("nan")})

    status, _, events = await _run_hostile(store, body)
    assert status in ("completed", "waiting")  # never a crash of the foreman
    assert all(e.kind is not EventKind.RUN_FINISHED or e.data["status"] != "failed" for e in events)
    refused = [e for e in events if e.kind is EventKind.TOOL_REFUSED]
    assert any("JSON" in e.data["reason"] for e in refused)  # NaN is not JSON


async def test_stop_iteration_in_a_sync_specialist_fails_at_once(store: SQLiteStore) -> None:
    def first_match(inp: Topic, ctx: Context) -> Notes:
        return Notes(points=[next(p for p in ["a", "b"] if p == "z")])

    card = researcher_card(function=first_match, max_attempts=1, timeout=None)
    result = await Foreman(one_phase(card), store).run({"topic": "t"})
    assert result.status == "waiting"  # not a hang until a time-out that never comes
    finished = next(e for e in store.events(result.run_id) if e.kind is EventKind.DISPATCH_FINISHED)
    assert finished.data["outcome"] == "failed"
    assert "StopIteration" in finished.data["message"]


async def test_the_trace_records_the_arguments_a_tool_ran_with() -> None:
    """A caller that changes its arguments dict while the call runs does not change what the
    journal says the tool was given."""
    from hubspoke.budget import Allowance
    from hubspoke.work import Brief

    ran: list[str] = []

    async def delete(path: str) -> str:
        """Delete a file."""
        ran.append(path)
        await asyncio.sleep(0)  # the call is under way: the caller gets a turn
        return "deleted"

    ctx = Context(
        Brief(objective="tidy"),
        1,
        None,
        "k",
        Allowance(None, None, None),
        {"delete": Tool.from_function(delete)},
    )
    arguments = {"path": "/etc/important"}
    call = asyncio.create_task(ctx.call_tool_raw("delete", arguments))
    await asyncio.sleep(0)
    arguments["path"] = "/tmp/scratch"
    await call
    assert ran == ["/etc/important"]
    assert ctx.traced()[0]["arguments"] == {"path": "/etc/important"}


async def test_a_sync_specialists_tool_call_ends_with_its_dispatch(store: SQLiteStore) -> None:
    """`call_tool_sync` runs the tool on the loop: a time-out of the dispatch cancels it too,
    so its side effect does not happen after the dispatch ended (and overlap the retry)."""
    started, finished = asyncio.Event(), []

    async def send_email(to: str) -> str:
        """Send an email."""
        started.set()
        await asyncio.Event().wait()  # holds until cancelled
        finished.append(to)
        return "sent"

    def sync_writer(inp: Topic, ctx: Context) -> Notes:
        ctx.call_tool_sync("send_email", to="dana")
        return Notes(points=["x"])

    card = researcher_card(function=sync_writer, tools=[send_email], timeout=0.1, max_attempts=1)
    result = await Foreman(one_phase(card), store).run({"topic": "t"})
    assert result.status == "waiting"
    assert started.is_set()
    for _ in range(20):  # let any call left running have its turns on the loop
        await asyncio.sleep(0)
    assert finished == []
    assert not [t for t in asyncio.all_tasks() if "call_tool_raw" in repr(t.get_coro())]


async def test_a_request_offers_the_cards_tools_and_the_three_answers(
    store: SQLiteStore,
) -> None:
    """What the model is offered, read as a provider reads it: the card's tools, and the
    answers `final_result` (with the output schema), `refuse` and `ask_human`; no free text.
    (pydantic-ai drops output tools from a request whose output mode is not `tool`.)"""
    seen: list[AgentInfo] = []

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(info)
        return ModelResponse(
            parts=[ToolCallPart(tool_name="final_result", args={"facts": ["tea is old"]})],
            usage=RequestUsage(input_tokens=10, output_tokens=5),
        )

    ran: list[str] = []
    wf = agent_workflow(
        None, model=FunctionModel(respond, model_name="reader"), tools=[recording_lookup(ran)]
    )
    result = await Foreman(wf, store).run({"topic": "tea"})
    assert result.status == "completed"
    [info] = seen
    assert [t.name for t in info.function_tools] == ["lookup"]
    assert [t.name for t in info.output_tools] == ["final_result", "refuse", "ask_human"]
    assert info.output_tools[0].parameters_json_schema["properties"].keys() == {"facts"}
    assert info.allow_text_output is False
    assert info.model_request_parameters.output_mode == "tool"


def test_before_request_journals_the_model_and_refuses_what_is_not_text() -> None:
    """`model.requested` names the model and provider the specialist says (for tracing), and
    a name that is not text is refused like any wrong argument."""
    from hubspoke.budget import Allowance
    from hubspoke.work import Brief

    announced: list[dict[str, Any]] = []
    ctx = Context(
        Brief(objective="research"),
        1,
        None,
        "k",
        Allowance(None, None, None),
        {},
        _announce=lambda requested: announced.append(dict(requested)),
    )

    def request(**named: Any) -> None:
        ctx.before_request(
            turn=0, worst_tokens=10, worst_usd=0.0, input_tokens=4, endpoint="https://api", **named
        )

    request(model="gpt-x", provider="openai")
    request()
    assert [(a.get("model"), a.get("provider")) for a in announced] == [
        ("gpt-x", "openai"),
        (None, None),
    ]
    with pytest.raises(ContextError, match="model must be a string"):
        request(model=3)
    assert len(announced) == 2
