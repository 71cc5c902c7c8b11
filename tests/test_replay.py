"""Record and replay: a recorded run replays offline identically, and a change to a role's
prompt, tools, output schema, a function's output or a side-effecting call shows up as the first
divergence, at the first request (or dispatch) it affects."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydantic_ai.models
import pytest
from typer.testing import CliRunner

from hubspoke import Foreman, NotReplayable, Phase, Role, SQLiteStore, Workflow
from hubspoke.cli import app
from hubspoke.events import EventKind, payload
from hubspoke.examples.research import workflow as research
from hubspoke.examples.research.players import PLAYERS
from hubspoke.examples.sales import DEMO_INPUT
from hubspoke.examples.sales import workflow as sales
from hubspoke.examples.sales.schemas import Draft
from hubspoke.journal import Redactor
from hubspoke.models.offline import answer, call
from hubspoke.replay import export_run, replay
from hubspoke.testing import assert_replays, scripted
from hubspoke.tools import Tool
from tests import wire
from tests.helpers import Notes, Topic, notes_workflow, one_phase, recording_lookup, researcher_card
from tests.test_research import failing_on, replanning_fixes
from tests.test_secrets import file_bytes, leaks

pytestmark = pytest.mark.anyio
FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


async def recorded_sales(store: SQLiteStore, workflow: Workflow = sales) -> str:
    result = await Foreman(workflow, store).run(DEMO_INPUT)
    return result.run_id


def with_role(workflow: Workflow, name: str, **changes: Any) -> Workflow:
    """`workflow` with role `name`'s card changed."""
    roles = [replace(r, **changes) if r.name == name else r for r in workflow.roles]
    return replace(workflow, roles=roles)


def first_exchange_of(store: SQLiteStore, run_id: str, role: str) -> tuple[str, str, int]:
    """(phase, item, attempt) of the role's first model exchange in the recorded journal."""
    for event in store.events(run_id):
        if event.kind is EventKind.MODEL_EXCHANGE and event.role == role:
            assert event.phase and event.item and event.attempt
            return event.phase, event.item, event.attempt
    raise AssertionError(f"no exchange of {role}")


# what is recorded ------------------------------------------------------------------------------


async def test_every_exchange_records_its_request_and_response(store: SQLiteStore) -> None:
    run_id = await recorded_sales(store)
    exchanges = [
        (e, payload(e, EventKind.MODEL_EXCHANGE))
        for e in store.events(run_id)
        if e.kind is EventKind.MODEL_EXCHANGE
    ]
    assert exchanges
    tools: dict[str | None, Any] = {}
    for event, data in exchanges:
        request, response = data["request"], data["response"]
        [message] = request["messages"]
        kinds = [p["part_kind"] for p in message["parts"]]
        if data["turn"] == 0:
            assert kinds == ["system-prompt", "user-prompt"]
            assert message["parts"][0]["content"].startswith(
                f'You are the specialist "{event.role}"'
            )
            assert request["settings"]["max_tokens"] > 0
            assert len(request["tools_digest"]) == 32
            if "tools" in request:  # whole, once per role in a run
                assert event.role not in tools
                tools[event.role] = request["tools"]
                names = [t["name"] for t in request["tools"]]
                assert names[-3:] == ["final_result", "refuse", "ask_human"]
                assert all("parameters_json_schema" in t for t in request["tools"])
        else:
            assert set(kinds) == {"tool-return"}
            assert not {"tools", "tools_digest", "settings"} & request.keys()
        assert response["kind"] == "response"
        calls = [p for p in response["parts"] if p["part_kind"] == "tool-call"]
        assert [p["tool_name"] for p in calls] == data["calls"]
        assert response["usage"]["input_tokens"] == data["input_tokens"]
    assert tools.keys() == {e.role for e, _ in exchanges}


@pytest.mark.parametrize(
    "system, user",
    [
        ('You are the specialist "w". Do: \n- things', '{"input":{"a":1}}'),
        ("naïve 中文 \u2028 \x00 \\ </script>", 'quote " and \\ backslash \t tab é'),
        ("holds hubspoke:user-prompt:4f1c9a0e, the marker", "x"),
    ],
)
def test_a_request_is_recorded_as_the_json_of_its_dumped_values(system: str, user: str) -> None:
    # The agent loop writes each recorded request as JSON text at once (an attempt's first
    # from a per-role template split around its user prompt): the same values `dump_messages`
    # gives, which the replay compares a new request with.
    from pydantic_ai.messages import ModelRequest, SystemPromptPart, ToolReturnPart, UserPromptPart
    from pydantic_core import from_json, to_json

    from hubspoke.specialists.recording import dump_messages, opening, request_json

    first = ModelRequest(parts=[SystemPromptPart(content=system), UserPromptPart(content=user)])
    later = ModelRequest(
        parts=[ToolReturnPart(tool_name="t", content={"v": [1.5, user]}, tool_call_id="c")]
    )
    for message in (first, later):
        assert from_json(request_json(message)) == dump_messages([message])[0]
    split = opening(system)
    if "hubspoke:user-prompt:4f1c9a0e" in system:
        assert split is None  # the template cannot be split: each request written whole
    else:
        assert split is not None
        assert split[0] + to_json(user) + split[1] == request_json(first)


def _responses() -> list[Any]:
    from decimal import Decimal

    from pydantic_ai.messages import ModelResponse, TextPart, ThinkingPart, ToolCallPart
    from pydantic_ai.usage import RequestUsage

    call_part = ToolCallPart(tool_name="final_result", args={"x": [1.5, "é"]}, tool_call_id="c")
    with_extra = RequestUsage(input_tokens=3)
    with_extra.provider_field = 7  # type: ignore[attr-defined]  # kept by pydantic-ai's hook
    return [
        ModelResponse(parts=[call_part], usage=RequestUsage(input_tokens=190, output_tokens=21)),
        ModelResponse(
            parts=[TextPart("naïve 中文 \u2028"), ThinkingPart("hm"), call_part],
            usage=RequestUsage(
                input_tokens=5,
                cache_read_tokens=2,
                details={"reasoning": 3},
                cost=Decimal("0.0012"),
                unmeasured_requests=1,
                audio_seconds=1.5,
            ),
            model_name="m",
            provider_name="p",
            finish_reason="length",
            provider_details={"id": None, "n": 1},
        ),
        ModelResponse(parts=(call_part,), usage=RequestUsage()),  # a tuple of parts
        ModelResponse(parts=[], usage=with_extra),
    ]


@pytest.mark.parametrize("index", range(4))
def test_a_response_is_recorded_as_pydantic_ai_writes_it(index: int) -> None:
    # `response_json` writes most responses with a copy of pydantic-ai's schema without its two
    # Python hooks (parts as any sequence, usage with its extra attributes), and the rest with
    # the adapter: the recorded text is the adapter's either way, byte for byte.
    from hubspoke.specialists.recording import _RESPONSE, response_json

    response = _responses()[index]
    assert response_json(response) == _RESPONSE.dump_json(response, exclude_none=True)


async def test_recording_off_keeps_usage_only_and_the_run_is_not_replayable(
    store: SQLiteStore,
) -> None:
    result = await Foreman(sales, store, record=False).run(DEMO_INPUT)
    exchanges = [
        payload(e, EventKind.MODEL_EXCHANGE)
        for e in store.events(result.run_id)
        if e.kind is EventKind.MODEL_EXCHANGE
    ]
    assert exchanges and all("input_tokens" in x for x in exchanges)
    assert not any({"request", "response"} & x.keys() for x in exchanges)
    with pytest.raises(NotReplayable, match="or with recording off"):
        await replay(store, result.run_id, sales)


# replaying the sales demo ----------------------------------------------------------------------


async def test_a_recorded_sales_run_replays_identically(store: SQLiteStore) -> None:
    run_id = await recorded_sales(store)
    report = await replay(store, run_id, sales)
    assert report.identical
    assert report.requests == sum(
        1 for e in store.events(run_id) if e.kind is EventKind.MODEL_EXCHANGE
    )
    assert report.describe().startswith("identical (")


def test_the_cli_says_identical_and_exits_0(tmp_path: Path) -> None:
    import asyncio

    db = tmp_path / "j.db"
    store = SQLiteStore(db)
    run_id = asyncio.run(recorded_sales(store))
    store.close()
    before = db.read_bytes()
    result = runner.invoke(
        app, ["replay", run_id, "--db", str(db), "-w", "hubspoke.examples.sales:workflow"]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("identical (")
    as_json = runner.invoke(
        app, ["replay", run_id, "--db", str(db), "-w", "hubspoke.examples.sales:workflow", "--json"]
    )
    assert as_json.exit_code == 0
    assert json.loads(as_json.output) == {
        "run_id": run_id,
        "identical": True,
        "requests": json.loads(as_json.output)["requests"],
        "not_replayed": 0,
        "divergence": None,
    }
    assert db.read_bytes() == before  # the recorded run is only read


def test_an_exported_run_is_a_regression_test(tmp_path: Path) -> None:
    import asyncio

    db = tmp_path / "j.db"
    store = SQLiteStore(db)
    run_id = asyncio.run(recorded_sales(store))
    store.close()
    kept = tmp_path / "runs" / "sales.db"
    kept.parent.mkdir()
    result = runner.invoke(app, ["replay", run_id, "--db", str(db), "--export", str(kept)])
    assert result.exit_code == 0, result.output
    assert assert_replays(kept, sales).identical
    again = runner.invoke(app, ["replay", run_id, "--db", str(db), "--export", str(kept)])
    assert again.exit_code == 2 and "exists" in again.output
    changed = with_role(sales, "personalization", prompt="Write in French.")
    with pytest.raises(AssertionError) as failed:
        assert_replays(kept, changed)
    message = str(failed.value)
    assert "first divergence: phase" in message and "role personalization" in message
    assert "+Write in French." in message


# replaying the research assistant: a planned phase -----------------------------------------------

OVERVIEW = {"question": "Give me an overview of the Kestrel Point wind farm."}


async def test_a_recorded_research_run_replays_identically(store: SQLiteStore) -> None:
    run = await Foreman(research, store).run(OVERVIEW)
    assert run.status == "completed"
    report = await replay(store, run.run_id, research)
    assert report.identical, report.describe()
    # The lead's plan and its four searchers were replayed, not only the static phases.
    exchanges = [e for e in store.events(run.run_id) if e.kind is EventKind.MODEL_EXCHANGE]
    assert {e.item for e in exchanges} >= {"search:plan[1]", *(f"search[s{n}]" for n in (1, 4))}
    assert report.requests == len(exchanges)


async def test_a_research_run_whose_plan_stalled_and_was_replanned_replays_identically(
    store: SQLiteStore,
) -> None:
    fixed: list[bool] = [False]
    seen: list[str | None] = []
    players = {
        **PLAYERS,
        "lead": replanning_fixes(fixed, seen),
        "searcher": failing_on("Kestrel Point wind farm: timeline", fixed),
    }
    run = await Foreman(replace(research, players=players), store).run(OVERVIEW)
    assert run.status == "completed" and len(run.state.plans["search"].plans) == 2
    # Replayed against the recorded responses: the invalid searches, the stall account the
    # lead got and its second plan are all asked for again, as recorded.
    report = await replay(store, run.run_id, research)
    assert report.identical, report.describe()


@pytest.mark.parametrize("role", ["lead", "searcher"])
async def test_a_changed_leads_or_searchers_prompt_diverges_at_its_first_request(
    store: SQLiteStore, role: str
) -> None:
    run = await Foreman(research, store).run(OVERVIEW)
    card = next(r for r in research.roles if r.name == role)
    changed = with_role(research, role, prompt=(card.prompt or "") + "\nCite only wires.")
    report = await replay(store, run.run_id, changed)
    d = report.divergence
    assert d is not None
    phase, item, attempt = first_exchange_of(store, run.run_id, role)
    assert (d.phase, d.role, d.item, d.attempt, d.request) == (phase, role, item, attempt, 0)
    if role == "lead":  # the planner's item, before any search
        assert (phase, item) == ("search:plan", "search:plan[1]")
    else:  # a planned step
        assert phase == "search" and item in {f"search[s{n}]" for n in range(1, 5)}
    assert [x.what for x in d.differences] == ["prompt"]
    assert "+Cite only wires." in d.differences[0].detail


def test_hubspoke_replay_of_a_research_demo_run_says_identical(tmp_path: Path) -> None:
    db = str(tmp_path / "research.db")
    ran = runner.invoke(app, ["demo", "research", OVERVIEW["question"], "--db", db, "--json"])
    assert ran.exit_code == 0, ran.output
    run_id = json.loads(ran.stdout)["run_id"]
    result = runner.invoke(app, ["replay", run_id, "--db", db])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("identical (")
    flow = tmp_path / "flow.py"
    flow.write_text(
        "from dataclasses import replace\n"
        "from hubspoke.examples.research import workflow as research\n"
        "workflow = replace(research, roles=[replace(r, prompt='Plan one searcher.') "
        "if r.name == 'lead' else r for r in research.roles])\n"
    )
    changed = runner.invoke(app, ["replay", run_id, "--db", db, "-w", f"{flow}:workflow"])
    assert changed.exit_code == 1, changed.output
    assert changed.output.startswith(
        "first divergence: phase search:plan, role lead, item search:plan[1], attempt 1, request 0"
    )
    assert "+Plan one searcher." in changed.output


# divergences -----------------------------------------------------------------------------------


async def test_a_changed_prompt_diverges_at_the_roles_first_request(store: SQLiteStore) -> None:
    run_id = await recorded_sales(store)
    role = next(r for r in sales.roles if r.name == "contact_selection")
    changed = with_role(sales, role.name, prompt=(role.prompt or "") + "\nBe terse.")
    report = await replay(store, run_id, changed)
    d = report.divergence
    assert d is not None
    phase, item, attempt = first_exchange_of(store, run_id, role.name)
    assert (d.phase, d.role, d.item, d.attempt, d.request) == (phase, role.name, item, attempt, 0)
    assert [x.what for x in d.differences] == ["prompt"]
    assert "system-prompt" in d.differences[0].detail
    assert "+Be terse." in d.differences[0].detail
    as_json = report.to_dict()["divergence"]
    assert as_json["what"] == "prompt" and as_json["request"] == 0


def test_the_cli_prints_the_divergence_and_exits_1(tmp_path: Path) -> None:
    import asyncio

    db = tmp_path / "j.db"
    store = SQLiteStore(db)
    run_id = asyncio.run(recorded_sales(store))
    store.close()
    flow = tmp_path / "flow.py"
    flow.write_text(
        "from dataclasses import replace\n"
        "from hubspoke.examples.sales import workflow as sales\n"
        "workflow = replace(sales, roles=[replace(r, prompt='Be brief.') "
        "if r.name == 'discovery' else r for r in sales.roles])\n"
    )
    result = runner.invoke(app, ["replay", run_id, "--db", str(db), "-w", f"{flow}:workflow"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith(
        "first divergence: phase discover, role discovery, item discover, attempt 1, request 0"
    )
    assert "prompt differs:" in result.output and "+Be brief." in result.output
    as_json = runner.invoke(
        app, ["replay", run_id, "--db", str(db), "-w", f"{flow}:workflow", "--json"]
    )
    assert as_json.exit_code == 1
    divergence = json.loads(as_json.output)["divergence"]
    assert divergence["role"] == "discovery" and divergence["what"] == "prompt"


async def test_changed_tools_diverge_at_the_roles_first_request(store: SQLiteStore) -> None:
    run_id = await recorded_sales(store)
    report = await replay(store, run_id, with_role(sales, "discovery", tools=[]))
    d = report.divergence
    assert d is not None
    assert (d.role, d.request, d.what) == ("discovery", 0, "tools")
    assert "recorded, not offered now: search_companies" in d.differences[0].detail
    # The system prompt lists the tools too: said after the tools.
    assert [x.what for x in d.differences] == ["tools", "prompt"]


async def test_a_changed_output_schema_diverges_at_the_roles_first_request(
    store: SQLiteStore,
) -> None:
    run_id = await recorded_sales(store)

    class Drafted(Draft):
        tone: str = "warm"

    report = await replay(store, run_id, with_role(sales, "personalization", output=Drafted))
    d = report.divergence
    assert d is not None
    phase, item, attempt = first_exchange_of(store, run_id, "personalization")
    assert (d.phase, d.role, d.item, d.attempt, d.request) == (
        phase,
        "personalization",
        item,
        attempt,
        0,
    )
    assert d.what == "tools"
    assert "final_result changed" in d.differences[0].detail
    assert '"tone"' in d.differences[0].detail


async def test_a_request_the_replay_does_not_make_is_a_divergence(store: SQLiteStore) -> None:
    run_id = await recorded_sales(store)
    # discovery searched, then answered: two requests. With one turn it cannot answer.
    report = await replay(store, run_id, with_role(sales, "discovery", max_turns=1))
    d = report.divergence
    assert d is not None
    assert (d.phase, d.role, d.item, d.attempt, d.request) == (
        "discover",
        "discovery",
        "discover",
        1,
        1,
    )
    assert d.what == "missing request"


def charging_workflow(charges: list[int], amount: int, output: str = "paid") -> Workflow:
    def charge(amount: int) -> str:
        """Charge the card."""
        charges.append(amount)
        return f"charged {amount}"

    card = researcher_card(tools=[Tool.from_function(charge, side_effect=True)])
    players = {"researcher": scripted([call("charge", amount=amount), answer(points=[output])])}
    return one_phase(card, players=players)


async def test_side_effecting_tools_are_answered_from_the_journal(store: SQLiteStore) -> None:
    charges: list[int] = []
    run = await Foreman(charging_workflow(charges, 5), store).run({"topic": "tea"})
    assert charges == [5]
    report = await replay(store, run.run_id, charging_workflow(charges, 5))
    assert report.identical and charges == [5]  # not charged again


def paying_workflow(charges: list[int], amount: int) -> Workflow:
    """A function specialist that charges `amount` through a side-effecting tool."""

    def charge(amount: int) -> str:
        """Charge the card."""
        charges.append(amount)
        return f"charged {amount}"

    async def pay(topic: Any, ctx: Any) -> Notes:
        said = await ctx.call_tool("charge", amount=amount)
        return Notes(points=[said])

    tool = Tool.from_function(charge, side_effect=True)
    return one_phase(researcher_card(function=pay, tools=[tool]))


async def test_a_changed_side_effecting_call_is_a_divergence(store: SQLiteStore) -> None:
    charges: list[int] = []
    run = await Foreman(paying_workflow(charges, 5), store).run({"topic": "tea"})
    assert charges == [5]
    assert (await replay(store, run.run_id, paying_workflow(charges, 5))).identical
    report = await replay(store, run.run_id, paying_workflow(charges, 7))
    assert charges == [5]  # neither replay charged
    d = report.divergence
    assert d is not None
    assert (d.phase, d.role, d.item, d.attempt, d.request) == ("p", "researcher", "p", 1, None)
    assert d.what == "tool call"
    assert 'charge called with arguments {"amount": 7}' in d.differences[0].detail


async def test_a_function_specialists_changed_output_is_a_divergence(store: SQLiteStore) -> None:
    def notes(topic: Any, ctx: Any) -> Notes:
        return Notes(points=[f"{topic.topic} is old"])

    def other(topic: Any, ctx: Any) -> Notes:
        return Notes(points=[f"{topic.topic} is new"])

    run = await Foreman(one_phase(researcher_card(function=notes)), store).run({"topic": "tea"})
    assert (await replay(store, run.run_id, one_phase(researcher_card(function=notes)))).identical
    report = await replay(store, run.run_id, one_phase(researcher_card(function=other)))
    d = report.divergence
    assert d is not None
    assert (d.phase, d.role, d.item, d.request, d.what) == ("p", "researcher", "p", None, "output")
    assert '-  "tea is old"\n+  "tea is new"' in d.differences[0].detail


def team_workflow(prompt: str = "") -> Workflow:
    """`notes` whose research is a sub-workflow: an agent `searcher` with a lookup tool."""
    searcher = Role(
        name="searcher",
        purpose="Search a topic.",
        input=Topic,
        output=Notes,
        tools=[lookup],
        prompt=prompt,
    )
    player = scripted([call("lookup", topic="tea"), answer(points=["tea is known"])])
    child = Workflow(
        name="research",
        input=Topic,
        roles=[searcher],
        phases=[Phase(name="search", role="searcher", input=lambda run: run.input)],
        players={"searcher": player},
        result=lambda run: run.output("search"),
    )
    team = child.as_role(name="team", purpose="Research as a team.", output=Notes, tools=[lookup])
    return notes_workflow(team, name="parent")


def lookup(topic: str) -> str:
    """Look a topic up."""
    return f"{topic}: known"


async def test_a_run_with_a_sub_workflow_replays_and_diverges_in_its_sub_run(
    store: SQLiteStore,
) -> None:
    run = await Foreman(team_workflow(), store).run({"topic": "tea"})
    assert run.status == "completed" and run.state.children
    report = await replay(store, run.run_id, team_workflow())
    assert report.identical and report.requests == 2
    report = await replay(store, run.run_id, team_workflow(prompt="Cite sources."))
    d = report.divergence
    assert d is not None
    assert (d.sub_run, d.phase, d.role, d.item, d.attempt, d.request) == (
        ".research.1",
        "search",
        "searcher",
        "search",
        1,
        0,
    )
    assert d.what == "prompt" and "+Cite sources." in d.differences[0].detail
    assert report.describe().startswith("first divergence: sub-run .research.1, phase search")


# a real provider's wire, secrets, older journals -----------------------------------------------


async def test_a_run_recorded_against_a_provider_replays_offline(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ran: list[str] = []
    script = [
        wire.call("lookup", {"topic": "tea"}),
        wire.call("final_result", {"points": ["tea is old"]}),
    ]
    secret = "pin-5550123-acme"
    card = researcher_card(
        tools=[recording_lookup(ran)], prompt=f"The customer's PIN is {secret}; never say it."
    )
    secrets = Redactor(values=[secret])
    with wire.serve("chat", script) as server:
        server.connect(monkeypatch)
        card = replace(card, model=server.binding("m"))
        run = await Foreman(one_phase(card), store, secrets=secrets).run({"topic": "tea"})
        key = server.env["OPENAI_API_KEY"]
    assert run.status == "completed" and ran == ["tea"]
    # No server now, no key, and no request may leave the process.
    pydantic_ai.models.ALLOW_MODEL_REQUESTS = False
    for name in server.env:
        monkeypatch.delenv(name)
    report = await replay(store, run.run_id, one_phase(card), secrets=secrets)
    assert report.identical and report.requests == 2
    assert ran == ["tea", "tea"]  # an ordinary tool runs again: it is the code under test
    store.close()
    assert leaks(Path(store.path), [key, secret]) == []
    assert b"[REDACTED]" in file_bytes(Path(store.path))


@pytest.mark.parametrize("version", [1, 2, 3, 4])
async def test_a_journal_written_before_recording_is_refused(version: int) -> None:
    fixture = SQLiteStore(FIXTURES / f"journal-v{version}.db", read_only=True)
    try:
        [sales_run] = [r.run_id for r in fixture.runs(100) if r.workflow == "sales"]
        with pytest.raises(NotReplayable, match="recorded before hubspoke recorded them"):
            await replay(fixture, sales_run, sales)
    finally:
        fixture.close()


def test_the_cli_refuses_a_run_recorded_before_recording() -> None:
    journal = FIXTURES / "journal-v4.db"
    before = journal.read_bytes()
    result = runner.invoke(
        app,
        ["replay", "run_sales", "--db", str(journal), "-w", "hubspoke.examples.sales:workflow"],
    )
    assert result.exit_code == 2
    assert "run run_sales cannot be replayed" in result.output
    assert "recorded before hubspoke recorded them" in result.output
    assert journal.read_bytes() == before


async def test_an_exported_run_holds_the_run_alone(store: SQLiteStore, tmp_path: Path) -> None:
    run_id = await recorded_sales(store)
    out = export_run(store, run_id, tmp_path / "one.db")
    copy = SQLiteStore(out, read_only=True)
    try:
        assert [r.run_id for r in copy.runs()] == [run_id]
        assert copy.events(run_id) == store.events(run_id)
    finally:
        copy.close()
    with pytest.raises(FileExistsError):
        export_run(store, run_id, out)
