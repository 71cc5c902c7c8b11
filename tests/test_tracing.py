"""OpenTelemetry spans made from the journal's events, checked with the SDK's in-memory exporter
on whole runs: one tree per run, totals equal to the journal's, sub-runs under their dispatch."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from typer.testing import CliRunner

from hubspoke import Budget, EventKind, Foreman, Phase, Role, SQLiteStore, Workflow
from hubspoke.cli import app
from hubspoke.examples.sales import DEMO_INPUT, workflow
from hubspoke.tracing import format_tree, in_memory
from tests import wire
from tests.helpers import Killed, kill_when, one_phase, researcher_card
from tests.test_subforeman import lookup, parent_workflow, research_workflow
from tests.workflows.charges import Order

pytestmark = pytest.mark.anyio


def _tree(spans: tuple[ReadableSpan, ...]) -> ReadableSpan:
    """The one root of `spans`, after checking that every other span's parent is among them."""
    ids = {s.context.span_id for s in spans if s.context is not None}
    roots = [s for s in spans if s.parent is None]
    assert len(roots) == 1, [s.name for s in roots]
    for s in spans:
        assert s.parent is None or s.parent.span_id in ids, s.name
        assert s.end_time is not None and s.start_time is not None and s.end_time >= s.start_time
    assert len({s.context.trace_id for s in spans if s.context is not None}) == 1
    return roots[0]


def _attr(span: ReadableSpan, key: str) -> object:
    assert span.attributes is not None
    return span.attributes.get(key)


async def test_the_sales_demo_is_one_tree_whose_totals_are_the_journals(
    store: SQLiteStore,
) -> None:
    tracer, exporter = in_memory()
    result = await Foreman(workflow, store, listeners=[tracer]).run(DEMO_INPUT)
    spans = exporter.get_finished_spans()
    root = _tree(spans)
    assert root.name == "invoke_workflow sales"
    assert _attr(root, "hubspoke.run_id") == result.run_id
    assert _attr(root, "hubspoke.status") == "waiting"

    events = store.events(result.run_id)
    dispatches = [s for s in spans if _attr(s, "gen_ai.operation.name") == "invoke_agent"]
    assert len(dispatches) == sum(e.kind is EventKind.DISPATCH_FINISHED for e in events)
    usage = result.state.usage
    assert sum(int(str(_attr(s, "gen_ai.usage.input_tokens"))) for s in dispatches) == (
        usage.input_tokens
    )
    assert sum(int(str(_attr(s, "gen_ai.usage.output_tokens"))) for s in dispatches) == (
        usage.output_tokens
    )
    usd = sum(float(str(_attr(s, "hubspoke.usage.usd"))) for s in dispatches)
    assert usd == pytest.approx(usage.usd, abs=1e-9)

    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    phases = [s for s in spans if s.name.startswith("phase ")]
    assert sorted(s.name for s in phases) == [
        "phase contacts",
        "phase discover",
        "phase drafts",
        "phase qualify",
    ]
    for s in phases:
        assert s.parent is not None and by_id[s.parent.span_id] is root
    for s in dispatches:
        assert (
            s.parent is not None
            and by_id[s.parent.span_id].name == f"phase {_attr(s, 'hubspoke.phase')}"
        )
        assert s.name == f"invoke_agent {_attr(s, 'hubspoke.role')}"
        assert _attr(s, "hubspoke.outcome") is not None and _attr(s, "hubspoke.attempt") is not None
    # One span per model request and per tool call, each under its own dispatch.
    chats = [s for s in spans if _attr(s, "gen_ai.operation.name") == "chat"]
    tools = [s for s in spans if s.name.startswith("execute_tool ")]
    assert len(chats) == sum(e.kind is EventKind.MODEL_EXCHANGE for e in events)
    for s in chats:  # named and described as the GenAI conventions say of inference spans
        assert s.name == "chat offline" and s.kind is SpanKind.CLIENT
        assert _attr(s, "gen_ai.request.model") == "offline"
        assert _attr(s, "gen_ai.provider.name") == "function"  # pydantic-ai's FunctionModel
    # Every request's tokens and cost are on its span; together they are the run's.
    assert sum(int(str(_attr(s, "gen_ai.usage.input_tokens"))) for s in chats) == (
        usage.input_tokens
    )
    assert sum(int(str(_attr(s, "gen_ai.usage.output_tokens"))) for s in chats) == (
        usage.output_tokens
    )
    chat_usd = sum(float(str(_attr(s, "hubspoke.usage.usd"))) for s in chats)
    assert chat_usd == pytest.approx(usage.usd, abs=1e-9) and usage.usd > 0
    assert len(tools) == sum(e.kind is EventKind.TOOL_CALLED for e in events)
    for s in chats + tools:
        assert s.parent is not None
        parent = by_id[s.parent.span_id]
        assert _attr(parent, "gen_ai.operation.name") == "invoke_agent"
        assert _attr(parent, "hubspoke.item") == _attr(s, "hubspoke.item")
    retried = [s for s in dispatches if _attr(s, "hubspoke.attempt") == 2]
    assert retried  # the demo retries two drafts: each attempt has its own span


async def test_a_sub_runs_spans_hang_under_its_parent_dispatch(store: SQLiteStore) -> None:
    child = research_workflow([lookup])
    parent = parent_workflow(child, tools=[lookup], budget=Budget(tokens=2500, tool_calls=3))
    tracer, exporter = in_memory()
    result = await Foreman(parent, store, listeners=[tracer]).run({"topic": "tea"})
    assert result.status == "completed"
    spans = exporter.get_finished_spans()
    root = _tree(spans)
    assert _attr(root, "hubspoke.run_id") == result.run_id
    (child_id,) = result.state.children
    by_id = {s.context.span_id: s for s in spans if s.context is not None}
    (sub_run,) = [s for s in spans if s.name == "invoke_workflow research"]
    assert _attr(sub_run, "hubspoke.run_id") == child_id
    assert sub_run.parent is not None
    dispatch = by_id[sub_run.parent.span_id]
    assert dispatch.name == "invoke_agent research_team"
    assert _attr(dispatch, "hubspoke.run_id") == result.run_id
    # The child's own dispatches hang under the sub-run, inside the parent's trace.
    inner = [s for s in spans if s.name == "invoke_agent searcher"]
    assert inner and all(_attr(s, "hubspoke.run_id") == child_id for s in inner)
    # The parent's totals count the child's spending once: in its dispatch's usage.
    top = [
        s
        for s in spans
        if _attr(s, "gen_ai.operation.name") == "invoke_agent"
        and _attr(s, "hubspoke.run_id") == result.run_id
    ]
    assert sum(int(str(_attr(s, "gen_ai.usage.input_tokens"))) for s in top) == (
        result.state.usage.input_tokens
    )


def test_the_cli_prints_the_span_tree(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["demo", "sales", "--db", str(tmp_path / "j.db"), "--json", "--otel-console"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("invoke_workflow sales"))
    tree = lines[start:]
    assert "status=waiting" in tree[0]
    assert any(line.startswith("  phase drafts") for line in tree)
    agent = next(line for line in tree if line.startswith("    invoke_agent discovery"))
    assert "tokens=" in agent and "$" in agent
    assert any(line.startswith("      execute_tool search_companies") for line in tree)
    assert '"status": "waiting"' in result.stdout  # the summary stays alone on stdout


def test_format_tree_of_nothing_is_empty() -> None:
    assert format_tree([]) == ""


def test_without_opentelemetry_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "from hubspoke.tracing import OtelTracer\n"
        "try:\n    OtelTracer()\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'hubspoke[otel]'" in out.stdout


def test_importing_hubspoke_tracing_imports_no_opentelemetry() -> None:
    code = (
        "import sys, hubspoke.tracing\n"
        "print(any(m.startswith('opentelemetry') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_after_a_resume_a_sub_run_still_hangs_under_its_parent_dispatch(
    store: SQLiteStore,
) -> None:
    """A run is killed inside its sub-run, then resumed by a new foreman with a new tracer (as
    a new process would be). Each session is one tree in the same backend: the killed one's
    open spans end ``interrupted`` (so they are sent), and in the resumed one the sub-run,
    named, hangs under the dispatch that resumed it. Over both, the totals are the journal's."""
    child = research_workflow([lookup])
    parent = parent_workflow(child, tools=[lookup], budget=Budget(tokens=2500, tool_calls=3))
    tracer, exporter = in_memory()
    inside_the_sub_run = kill_when(
        lambda e: e.kind is EventKind.ITEM_ACCEPTED and e.run_id != "run_p"
    )
    with pytest.raises(Killed):
        await Foreman(parent, store, listeners=[inside_the_sub_run], tracing=tracer.provider).run(
            {"topic": "tea"}, run_id="run_p"
        )
    first = exporter.get_finished_spans()
    root = _tree(first)
    assert root.name == "invoke_workflow parent"
    assert _attr(root, "hubspoke.status") == "interrupted"
    (sub_run,) = [s for s in first if s.name == "invoke_workflow research"]
    assert _attr(sub_run, "hubspoke.status") == "interrupted"
    exporter.clear()

    result = await Foreman(parent, store, tracing=tracer.provider).resume("run_p")
    assert result.status == "completed"
    second = exporter.get_finished_spans()
    root = _tree(second)
    assert root.name == "invoke_workflow parent" and _attr(root, "hubspoke.resumed") is True
    (child_id,) = result.state.children
    by_id = {s.context.span_id: s for s in second if s.context is not None}
    (sub_run,) = [
        s
        for s in second
        if _attr(s, "hubspoke.run_id") == child_id
        and s.parent
        and by_id[s.parent.span_id].name == "invoke_agent research_team"
    ]
    assert sub_run.name == "invoke_workflow research"
    assert _attr(sub_run, "hubspoke.resumed") is True
    assert _attr(sub_run, "hubspoke.status") == "completed"

    # Over both sessions: every request once, and the parent's dispatches hold its usage.
    spans = (*first, *second)
    usage = result.state.usage
    chats = [s for s in spans if _attr(s, "gen_ai.operation.name") == "chat"]
    assert sum(int(str(_attr(s, "gen_ai.usage.input_tokens"))) for s in chats) == (
        usage.input_tokens
    )
    top = [
        s
        for s in spans
        if _attr(s, "gen_ai.operation.name") == "invoke_agent"
        and _attr(s, "hubspoke.run_id") == "run_p"
        and _attr(s, "gen_ai.usage.input_tokens") is not None
    ]
    assert sum(int(str(_attr(s, "gen_ai.usage.input_tokens"))) for s in top) == (usage.input_tokens)


async def test_a_run_resumed_in_the_same_process_ends_its_earlier_sessions_spans(
    store: SQLiteStore,
) -> None:
    """One tracer given as a listener to both sessions (no `Foreman(tracing=...)` to end the
    killed session's spans): the resume ends them, interrupted, and opens the new session's."""
    child = research_workflow([lookup])
    parent = parent_workflow(child, tools=[lookup], budget=Budget(tokens=2500, tool_calls=3))
    tracer, exporter = in_memory()
    kill = kill_when(lambda e: e.kind is EventKind.ITEM_ACCEPTED and e.run_id != "run_p")
    with pytest.raises(Killed):
        await Foreman(parent, store, listeners=[kill, tracer]).run({"topic": "tea"}, run_id="run_p")
    assert not [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_workflow")]
    result = await Foreman(parent, store, listeners=[tracer]).resume("run_p")
    assert result.status == "completed"
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.parent is None]
    assert [(s.name, _attr(s, "hubspoke.status")) for s in roots] == [
        ("invoke_workflow parent", "interrupted"),
        ("invoke_workflow parent", "completed"),
    ]
    interrupted = [
        s
        for s in spans
        if "interrupted" in (_attr(s, "hubspoke.status"), _attr(s, "hubspoke.outcome"))
    ]
    assert sorted(s.name for s in interrupted) == [
        "invoke_agent research_team",
        "invoke_workflow parent",
        "invoke_workflow research",
        "phase research",
        "phase search",
    ]


async def test_requests_in_flight_at_a_crash_are_chat_spans_of_the_resume(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session killed with a model request in flight: the resume charges its dispatch's
    worst case (the fold, from `model.requested`), and a tracer that saw nothing of that
    session (a new process's) shows the charge as a chat span, so the chat spans still add up
    to the run's usage."""

    def lookup(topic: str) -> str:
        """Look a topic up."""
        return topic

    def script(request: wire.Request) -> wire.Reply:
        if not request.tool_results:  # the first request of an attempt
            return wire.call("lookup", {"topic": "tea"}, usage=(200, 10))
        return wire.call("final_result", {"points": ["tea is old"]}, usage=(300, 20))

    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        flow = one_phase(researcher_card(model=server.binding("m"), tools=[lookup]))
        second_request = kill_when(
            lambda e: e.kind is EventKind.MODEL_REQUESTED and e.data["turn"] == 1
        )
        with pytest.raises(Killed):
            await Foreman(flow, store, listeners=[second_request]).run(
                {"topic": "tea"}, run_id="run_c"
            )
        tracer, exporter = in_memory()
        result = await Foreman(flow, store, tracing=tracer.provider).resume("run_c")
    assert result.status == "completed"
    spans = exporter.get_finished_spans()
    root = _tree(spans)
    chats = [s for s in spans if _attr(s, "gen_ai.operation.name") == "chat"]
    usage = result.state.usage
    assert sum(int(str(_attr(s, "gen_ai.usage.input_tokens"))) for s in chats) == (
        usage.input_tokens
    )
    assert sum(int(str(_attr(s, "gen_ai.usage.output_tokens"))) for s in chats) == (
        usage.output_tokens
    )
    (charged,) = [s for s in chats if _attr(s, "hubspoke.charged_at_resume")]
    assert charged.parent is not None and charged.parent.span_id == root.context.span_id
    assert charged.name == "chat m" and _attr(charged, "gen_ai.request.model") == "m"
    assert _attr(charged, "hubspoke.requests") is None
    assert _attr(charged, "hubspoke.usage.requests") == 2  # the answered one and the cut one
    assert (
        _attr(charged, "hubspoke.item") == "p" and _attr(charged, "hubspoke.role") == "researcher"
    )


async def test_every_tool_call_is_a_span_side_effecting_ones_too(
    store: SQLiteStore, tmp_path: Path
) -> None:
    """A side-effecting call is journaled as `tool.started` and `tool.finished` (no
    `tool.called`), a replayed one as `tool.called`: each is one ``execute_tool`` span under its
    dispatch, timed by its events, a failed one with its exception's type as ``error.type``; a
    dispatch has as many tool spans as it counted tool calls."""
    from hubspoke import Context, Retry, Tool
    from tests.test_exactly_once import cashier_workflow
    from tests.workflows.charges import Charges, Receipt

    charges = Charges(tmp_path / "charges.db")
    tries: list[str] = []

    def charge(card: str, amount: int, idempotency_key: str) -> str:
        """Charge a card."""
        tries.append(idempotency_key)
        if len(tries) == 1:
            raise ConnectionError("the processor did not answer")
        return charges.charge_once(idempotency_key, card, amount)

    async def pay(order: Order, ctx: Context) -> Receipt:
        try:
            charge_id = await ctx.call_tool("charge", card=order.card, amount=order.amount)
        except ConnectionError as e:
            raise Retry(f"charging failed: {e}") from None
        again = await ctx.call_tool("charge", card=order.card, amount=order.amount)  # replayed
        assert again == charge_id
        return Receipt(card=order.card, charge_id=charge_id)

    tracer, exporter = in_memory()
    wf = cashier_workflow(Tool.from_function(charge, side_effect=True), function=pay)
    result = await Foreman(wf, store, listeners=[tracer]).run({"card": "4242", "amount": 10})
    assert result.status == "completed", result.reason
    spans = exporter.get_finished_spans()
    _tree(spans)
    dispatches = sorted(
        (s for s in spans if s.name == "invoke_agent cashier"),
        key=lambda s: _attr(s, "hubspoke.attempt"),  # type: ignore[arg-type,return-value]
    )
    tools = [
        sorted(
            (t.name, str(_attr(t, "error.type")), bool(_attr(t, "hubspoke.replayed")))
            for t in spans
            if t.parent is not None
            and d.context is not None
            and t.parent.span_id == d.context.span_id
        )
        for d in dispatches
    ]
    assert tools == [
        [("execute_tool charge", "ConnectionError", False)],
        [("execute_tool charge", "None", False), ("execute_tool charge", "None", True)],
    ]
    assert [len(t) for t in tools] == [_attr(d, "hubspoke.usage.tool_calls") for d in dispatches]
    events = store.events(result.run_id)
    started = [e.ts for e in events if e.kind is EventKind.TOOL_STARTED]
    ran = [
        t for t in spans if t.name == "execute_tool charge" and not _attr(t, "hubspoke.replayed")
    ]
    assert sorted(t.start_time or 0 for t in ran) == [int(ts * 1e9) for ts in started]


async def test_a_failed_tool_calls_error_type_is_its_class_not_its_message(
    store: SQLiteStore,
) -> None:
    """``error.type`` is low-cardinality, as the conventions ask: a tool that raised gives its
    exception's class and arguments that did not validate give ``ToolArgumentsError``, whatever
    the message (ids, paths, amounts) says; the whole error is the span's status."""
    from hubspoke import Context, Tool, ToolArgumentsError

    def fetch(order_id: int) -> str:
        """Fetch an order."""
        raise LookupError(f"no order {order_id} in /var/orders/{order_id}.json")

    async def clerk(order: Order, ctx: Context) -> Order:
        for arguments in ({"order_id": 7}, {"order_id": 8}, {"order_id": "x"}):
            with contextlib.suppress(LookupError, ToolArgumentsError):
                await ctx.call_tool("fetch", **arguments)
        return order

    wf = Workflow(
        name="orders",
        input=Order,
        roles=[
            Role(
                name="clerk",
                purpose="Fetches orders.",
                input=Order,
                output=Order,
                tools=[Tool.from_function(fetch)],
                function=clerk,
            )
        ],
        phases=[Phase(name="fetch", role="clerk", input=lambda run: run.input)],
        result=lambda run: run.output("fetch"),
    )
    tracer, exporter = in_memory()
    result = await Foreman(wf, store, listeners=[tracer]).run({"card": "4242", "amount": 1})
    assert result.status == "completed", result.reason
    tools = [s for s in exporter.get_finished_spans() if s.name == "execute_tool fetch"]
    assert sorted(str(_attr(s, "error.type")) for s in tools) == [
        "LookupError",
        "LookupError",
        "ToolArgumentsError",
    ]
    assert sorted(str(s.status.description) for s in tools)[0].startswith(
        "LookupError('no order 7 in /var/orders/7.json')"
    )


async def test_a_tracer_serving_many_runs_keeps_nothing_of_the_finished_ones(
    store: SQLiteStore,
) -> None:
    """One `OtelTracer` given to a foreman that runs again and again (a service) holds on to
    no span of a finished run: what it keeps per dispatch goes when the dispatch ends."""
    tracer, exporter = in_memory()
    foreman = Foreman(workflow, store, listeners=[tracer])
    for _ in range(2):
        result = await foreman.run(DEMO_INPUT)
        assert result.status == "waiting"
    kept = {name: len(value) for name, value in vars(tracer).items() if isinstance(value, dict)}
    assert kept == dict.fromkeys(kept, 0)
    assert len(exporter.get_finished_spans()) > 0


async def test_a_refused_tool_call_is_a_span_too(store: SQLiteStore) -> None:
    """A call of a tool the card does not list is refused and journaled (`tool.refused`): its
    ``execute_tool`` span says so (``error.type`` ``refused``), so that a backend shows what a
    specialist tried, not only what it was allowed."""
    from hubspoke import Context, ToolRefused

    async def clerk(order: Order, ctx: Context) -> Order:
        with contextlib.suppress(ToolRefused):
            await ctx.call_tool("delete_orders")
        return order

    wf = Workflow(
        name="orders",
        input=Order,
        roles=[
            Role(name="clerk", purpose="Keeps orders.", input=Order, output=Order, function=clerk)
        ],
        phases=[Phase(name="keep", role="clerk", input=lambda run: run.input)],
        result=lambda run: run.output("keep"),
    )
    tracer, exporter = in_memory()
    result = await Foreman(wf, store, listeners=[tracer]).run({"card": "4242", "amount": 1})
    assert result.status == "completed", result.reason
    spans = exporter.get_finished_spans()
    [refused] = [s for s in spans if s.name == "execute_tool delete_orders"]
    [dispatch] = [s for s in spans if s.name == "invoke_agent clerk"]
    assert refused.parent is not None and dispatch.context is not None
    assert refused.parent.span_id == dispatch.context.span_id
    assert _attr(refused, "error.type") == "refused"
    assert _attr(refused, "gen_ai.tool.name") == "delete_orders"
    assert "delete_orders" in str(refused.status.description)


async def test_a_side_effecting_call_its_dispatch_cut_short_is_an_in_doubt_span(
    store: SQLiteStore,
) -> None:
    """A side-effecting call still running when its dispatch times out has a `tool.started`
    and no `tool.finished`: its span ends with the dispatch, marked in doubt."""
    import asyncio

    from hubspoke import Context, Tool

    async def charge(card: str, amount: int, idempotency_key: str) -> str:
        """Charge a card (the processor never answers)."""
        await asyncio.sleep(30)
        return "ch_1"

    async def pay(order: Order, ctx: Context) -> Order:
        await ctx.call_tool("charge", card=order.card, amount=order.amount)
        return order

    wf = Workflow(
        name="till",
        input=Order,
        roles=[
            Role(
                name="cashier",
                purpose="Charges.",
                input=Order,
                output=Order,
                tools=[Tool.from_function(charge, side_effect=True)],
                function=pay,
                timeout=0.5,
                max_attempts=1,
            )
        ],
        phases=[Phase(name="pay", role="cashier", input=lambda run: run.input)],
        result=lambda run: run.output("pay"),
    )
    tracer, exporter = in_memory()
    await Foreman(wf, store, listeners=[tracer]).run({"card": "4242", "amount": 1})
    spans = exporter.get_finished_spans()
    _tree(spans)
    [call] = [s for s in spans if s.name == "execute_tool charge"]
    [dispatch] = [s for s in spans if s.name == "invoke_agent cashier"]
    assert (_attr(call, "error.type"), _attr(call, "hubspoke.in_doubt")) == ("in_doubt", True)
    assert call.end_time == dispatch.end_time
