"""Sub-foremen: a workflow as a role, with a carved budget, a subset of permissions, a depth."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import BaseModel

from hubspoke import Budget, DefinitionError, EventKind, Foreman, Phase, Role, SQLiteStore, Workflow
from hubspoke.models.offline import answer
from tests.helpers import Notes, Summary, Topic, notes_workflow

pytestmark = pytest.mark.anyio


def lookup(topic: str) -> str:
    """Look a topic up."""
    return f"{topic}: known"


def shell(command: str) -> str:
    """Run a shell command."""
    raise AssertionError("never allowed")


def research_workflow(tools: list[Callable[..., str]]) -> Workflow:
    return Workflow(
        name="research",
        input=Topic,
        roles=[
            Role(name="searcher", purpose="Search a topic.", input=Topic, output=Notes, tools=tools)
        ],
        phases=[Phase(name="search", role="searcher", input=lambda run: run.input)],
        players={"searcher": lambda turn: answer(points=[f"{turn.input['topic']} is known"])},
        result=lambda run: run.output("search"),
    )


def parent_workflow(
    child: Workflow, *, tools: list[Callable[..., str]], budget: Budget
) -> Workflow:
    """`notes_workflow` whose research is `child`, run as the role `research_team`."""
    team = child.as_role(
        name="research_team",
        purpose="Research a topic as a team.",
        output=Notes,
        tools=tools,
        budget=budget,
    )
    return notes_workflow(team, name="parent")


async def test_sub_foreman_budget_is_carved_from_the_parent(store: SQLiteStore) -> None:
    child = research_workflow([lookup])
    parent = parent_workflow(child, tools=[lookup], budget=Budget(tokens=2500, tool_calls=3))
    result = await Foreman(parent, store).run({"topic": "tea"})
    assert result.status == "completed"
    assert result.result == Summary(text="tea is known")

    child_id = result.state.children[0]
    record = store.run(child_id)
    assert record is not None
    assert (record.parent_run, record.parent_item) == (result.run_id, "research")
    child_events = store.events(child_id)
    started = child_events[0]
    assert started.kind is EventKind.RUN_STARTED
    assert started.data["budget"]["tokens"] == 2500  # exactly the parent's reservation
    assert started.data["budget"]["tool_calls"] == 3
    child_tokens = sum(
        e.data["usage"]["input_tokens"] + e.data["usage"]["output_tokens"]
        for e in child_events
        if e.kind is EventKind.DISPATCH_FINISHED
    )
    assert 0 < child_tokens <= 2500
    # The parent's ledger is charged with what the child spent.
    assert result.state.usage_by_role["research_team"].tokens == child_tokens
    assert [e.kind for e in store.events(result.run_id)].count(EventKind.CHILD_RUN_STARTED) == 1


async def test_sub_foreman_that_runs_out_of_its_carve_is_refused(store: SQLiteStore) -> None:
    child = research_workflow([])
    parent = parent_workflow(child, tools=[], budget=Budget(tokens=1100))
    result = await Foreman(parent, store).run({"topic": "tea"})
    child_events = store.events(result.state.children[0])
    finished = [e for e in child_events if e.kind is EventKind.DISPATCH_FINISHED]
    # 1,100 tokens cannot cover one request's worst case: refused before the model is called.
    assert [e.data["outcome"] for e in finished] == ["budget_refused"]
    assert finished[0].data["usage"]["requests"] == 0
    assert result.status == "waiting"  # the parent's item went down its ladder


def test_child_permissions_must_be_a_subset_of_the_parent_card() -> None:
    child = research_workflow([lookup, shell])
    parent = parent_workflow(child, tools=[lookup], budget=Budget())
    with pytest.raises(DefinitionError) as e:
        Foreman(parent, SQLiteStore(":memory:"))
    assert "research_team" in str(e.value)
    assert "shell" in str(e.value)
    assert "subset" in str(e.value)


def test_depth_limit() -> None:
    wf: Workflow = research_workflow([])
    for level in range(3):
        wf = Workflow(
            name=f"level{level}",
            input=Topic,
            roles=[wf.as_role(name="inner", purpose="Go deeper.", output=Notes)],
            phases=[Phase(name="go", role="inner", input=lambda run: run.input)],
            result=lambda run: run.output("go"),
            max_depth=2,
        )
    with pytest.raises(DefinitionError, match="max_depth=2"):
        Foreman(wf, SQLiteStore(":memory:"))


class Other(BaseModel):
    x: int


def test_sub_workflow_input_must_match_the_card() -> None:
    child = research_workflow([])
    role = child.as_role(name="team", purpose="Research.", output=Notes)
    bad = Role(name="team", purpose="Research.", input=Other, output=Notes, delegate=child)
    wf = Workflow(
        name="p",
        input=Other,
        roles=[bad],
        phases=[Phase(name="go", role="team", input=lambda run: run.input)],
    )
    with pytest.raises(DefinitionError, match="input"):
        wf.check()
    assert role.input is Topic


async def test_a_sub_run_its_parent_timed_out_ends_aborted(store: SQLiteStore) -> None:
    """The parent's time-out cuts the sub-run mid-way and the parent's retry starts another:
    no one will resume the first, so it ends `aborted`, its phase `stopped`, never `running`."""
    import asyncio

    from tests.helpers import Number, Squared

    async def hangs(inp: Number, ctx: object) -> Squared:
        await asyncio.Event().wait()  # only the parent's time-out ends it
        raise AssertionError

    child = Workflow(
        name="child",
        input=Number,
        roles=[Role(name="sq", purpose="Square.", input=Number, output=Squared, function=hangs)],
        phases=[Phase(name="c", role="sq", input=lambda run: run.input)],
        result=lambda run: run.output("c"),
    )
    parent = Workflow(
        name="parent",
        input=Number,
        roles=[
            child.as_role(name="sub", purpose="Sub.", output=Squared, timeout=0.05, max_attempts=2)
        ],
        phases=[Phase(name="p", role="sub", input=lambda run: run.input)],
    )
    result = await Foreman(parent, store).run({"n": 3})
    assert result.status == "waiting"
    children = [r for r in store.runs() if r.parent_run == result.run_id]
    assert len(children) == 2
    for record in children:
        assert record.status == "aborted"
        events = store.events(record.run_id)
        assert events[-1].kind is EventKind.RUN_FINISHED
        assert "timed_out" in events[-1].data["reason"]
        assert [e.data["status"] for e in events if e.kind is EventKind.PHASE_FINISHED] == [
            "stopped"
        ]
