"""Workflows: what `check()` refuses, the run view, the hand-off between phases, the shape."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest
from pydantic import BaseModel, Field

from hubspoke import (
    Budget,
    Context,
    DefinitionError,
    Foreman,
    InputError,
    OutputLookupError,
    Phase,
    Risk,
    Role,
    RunView,
    SQLiteStore,
    Strategy,
    TopK,
    Workflow,
    WorkflowChanged,
)
from hubspoke.models.offline import answer
from hubspoke.workflow import shape_changes, validate_handoff
from tests.helpers import (
    Notes,
    Number,
    Squared,
    Summary,
    Topic,
    notes_workflow,
    one_step,
    research,
    square_each,
    squarer_card,
    squares,
    summarise,
    writer_card,
)

pytestmark = pytest.mark.anyio

# --- check(): players ----------------------------------------------------------------------------


def notes_player(turn: Any) -> Any:
    return answer(points=["a fact"])


@pytest.mark.parametrize(
    ("player", "words"),
    [
        ("reseacher", "player 'reseacher' names no role of the workflow"),
        ("writer", "which a function implements"),
    ],
)
def test_a_player_must_name_an_agent_role(player: str, words: str) -> None:
    with pytest.raises(DefinitionError) as e:
        notes_workflow(players={player: notes_player}).check()
    assert (e.value.where, e.value.field) == ("workflow 'notes'", "players")
    assert words in e.value.problem
    assert "agent roles: researcher" in e.value.problem
    notes_workflow(players={"researcher": notes_player}).check()


def test_a_player_for_a_sub_workflow_role_is_refused() -> None:
    child = notes_workflow(name="child")
    team = child.as_role(name="team", purpose="Research as a team.", output=Summary)
    parent = notes_workflow(
        name="parent",
        roles=[team],
        phases=[Phase(name="go", role="team", input=lambda run: run.input)],
        players={"team": notes_player},
    )
    with pytest.raises(DefinitionError, match="which runs a sub-workflow"):
        parent.check()


# --- check(): sub-workflows ----------------------------------------------------------------------


def delegating(name: str, to: Workflow | None = None) -> Workflow:
    """A workflow whose one role is a function, or delegates to `to`."""
    role = (
        squarer_card(name="sq")
        if to is None
        else to.as_role(name="sq", purpose="Square elsewhere.", output=Squared)
    )
    return Workflow(
        name=name,
        input=Number,
        roles=[role],
        phases=[Phase(name="p", role="sq", input=lambda run: run.input)],
        result=lambda run: run.output("p"),
        max_depth=10,
    )


def close_cycle(first: Workflow, last: Workflow) -> None:
    """Make `last` delegate to `first`: the roles list is the one mutable part of a workflow."""
    assert isinstance(last.roles, list)
    last.roles[0] = first.as_role(name="sq", purpose="Square elsewhere.", output=Squared)


@pytest.mark.parametrize("length", [1, 2, 3])
def test_a_cycle_of_sub_workflows_is_refused_at_any_depth(length: int) -> None:
    chain = [delegating("w0")]
    for i in range(1, length):
        chain.append(delegating(f"w{i}", to=chain[-1]))
    close_cycle(chain[-1], chain[0])  # w0 → w{n-1} → ... → w0

    for workflow in chain:
        with pytest.raises(DefinitionError) as e:
            workflow.check()
        assert e.value.field == "delegate"
        assert "sub-workflows form a cycle" in e.value.problem
        assert e.value.problem.count("→") == length
        with pytest.raises(DefinitionError, match="cycle"):
            workflow.shape()


def test_a_delegate_must_be_a_workflow() -> None:
    role = Role(name="sq", purpose="Square.", input=Number, output=Squared, delegate="w")  # type: ignore[arg-type]
    wf = delegating("w")
    assert isinstance(wf.roles, list)
    wf.roles[0] = role
    with pytest.raises(DefinitionError, match=r"must be a hubspoke\.Workflow"):
        wf.check()


def test_nesting_is_still_bounded_by_max_depth() -> None:
    """A workflow's `max_depth` bounds how deep its sub-runs sit below the outermost run."""
    middle = delegating("middle", to=delegating("inner"))
    delegating("outer", to=middle).check()
    with pytest.raises(DefinitionError, match="max_depth=0"):
        Workflow(**{**vars_of(middle), "max_depth": 0}).check()
    middle.check()
    with pytest.raises(DefinitionError, match="max_depth=1"):
        delegating("outer", to=Workflow(**{**vars_of(middle), "max_depth": 1})).check()


def vars_of(workflow: Workflow) -> dict[str, Any]:
    return {name: getattr(workflow, name) for name in workflow.__dataclass_fields__}


# --- check(): role cards -------------------------------------------------------------------------


async def two(inp: Number, ctx: Context) -> Squared:
    return Squared(n=inp.n, square=inp.n**2)


async def one(inp: Number) -> Squared:
    return Squared(n=inp.n, square=inp.n**2)


async def three(inp: Number, ctx: Context, extra: int) -> Squared:
    return Squared(n=inp.n, square=extra)


async def keywords(*, inp: Number, ctx: Context) -> Squared:
    return Squared(n=inp.n, square=inp.n**2)


async def defaulted(inp: Number, ctx: Context, extra: int = 2) -> Squared:
    return Squared(n=inp.n, square=inp.n**extra)


async def star(*args: Any) -> Squared:
    return Squared(n=args[0].n, square=args[0].n ** 2)


class Squarer:
    """A callable object: `await Squarer()(input, ctx)`."""

    async def __call__(self, inp: Number, ctx: Context) -> Squared:
        return Squared(n=inp.n, square=inp.n**2)


class Method:
    async def square(self, inp: Number, ctx: Context) -> Squared:
        return Squared(n=inp.n, square=inp.n**2)


def squaring(role: Role) -> Workflow:
    return Workflow(
        name="w",
        input=Number,
        roles=[role],
        phases=[Phase(name="p", role="sq", input=lambda run: run.input)],
    )


@pytest.mark.parametrize("function", [one, three, keywords], ids=lambda f: f.__name__)
def test_a_function_that_cannot_take_input_and_ctx_is_refused(function: Any) -> None:
    with pytest.raises(DefinitionError) as e:
        squaring(squarer_card(function, name="sq")).check()
    assert (e.value.where, e.value.field) == ("role 'sq'", "function")
    assert "cannot be called as f(input, ctx)" in e.value.problem
    assert "async def f(input: Number, ctx: Context) -> Squared" in e.value.problem


@pytest.mark.parametrize(
    "function",
    [two, defaulted, star, Squarer(), Method().square, functools.partial(three, extra=3)],
    ids=["plain", "defaults", "star-args", "callable-object", "method", "partial"],
)
async def test_any_async_callable_taking_input_and_ctx_is_accepted(
    function: Any, store: SQLiteStore
) -> None:
    result = await Foreman(squaring(squarer_card(function, name="sq")), store).run({"n": 3})
    assert result.status == "completed"
    [artifact] = store.artifacts(result.run_id)
    assert artifact.content["n"] == 3


@pytest.mark.parametrize(
    ("changes", "kind"),
    [({"function": two}, "function"), ({"delegate": delegating("child")}, "delegate")],
)
def test_a_model_on_a_role_that_is_no_agent_is_refused(changes: dict[str, Any], kind: str) -> None:
    role = Role(
        name="sq", purpose="Square.", input=Number, output=Squared, model="offline", **changes
    )
    with pytest.raises(DefinitionError) as e:
        squaring(role).check()
    assert (e.value.where, e.value.field) == ("role 'sq'", "model")
    assert f"a role with a {kind} calls no model" in e.value.problem


def test_a_fallback_must_return_the_same_output_schema() -> None:
    main = Role(name="main", purpose="Write.", input=Notes, output=Summary, fallback="spare")
    spare = Role(name="spare", purpose="Write.", input=Notes, output=Notes, function=summarise)
    wf = Workflow(
        name="w",
        input=Notes,
        roles=[main, spare],
        phases=[Phase(name="p", role="main", input=lambda run: run.input)],
    )
    with pytest.raises(DefinitionError) as e:
        wf.check()
    assert (e.value.where, e.value.field) == ("role 'main'", "fallback")
    assert "fallback 'spare' returns Notes, not Summary" in e.value.problem


# --- check(): phases -----------------------------------------------------------------------------


def fan(**phase: Any) -> Workflow:
    """Phase `p` fanning out over 1, 2, 3 for the `sq` card; `phase` adds its other fields."""
    return Workflow(
        name="w",
        input=Topic,
        roles=[squarer_card(two, name="sq")],
        phases=[square_each("p", [1, 2, 3], role="sq", **phase)],
    )


@pytest.mark.parametrize(
    ("phase", "words"),
    [
        (
            {"quorum": 2},
            "quorum only counts with Strategy.QUORUM, and this phase is Strategy.FAIL_FAST",
        ),
        ({"quorum": 2, "strategy": Strategy.BEST_EFFORT}, "Strategy.BEST_EFFORT"),
        ({"strategy": Strategy.QUORUM}, "Strategy.QUORUM needs quorum ≥ 1"),
        ({"strategy": Strategy.QUORUM, "quorum": 0}, "Strategy.QUORUM needs quorum ≥ 1"),
    ],
)
def test_quorum_goes_with_strategy_quorum(phase: dict[str, Any], words: str) -> None:
    with pytest.raises(DefinitionError) as e:
        fan(**phase).check()
    assert (e.value.where, e.value.field) == ("phase 'p'", "quorum")
    assert words in e.value.problem
    fan(strategy=Strategy.QUORUM, quorum=2).check()


def test_a_quorum_a_single_dispatch_cannot_meet_is_refused() -> None:
    single = Phase(
        name="p", role="sq", input=lambda run: Number(n=1), strategy=Strategy.QUORUM, quorum=2
    )
    with pytest.raises(DefinitionError, match="dispatches one item, so quorum=2 can never be met"):
        Workflow(
            name="w", input=Topic, roles=[squarer_card(two, name="sq")], phases=[single]
        ).check()


# --- the run view --------------------------------------------------------------------------------


def view_of(workflow: Workflow) -> RunView:
    view = RunView(Topic(topic="tea"), phases=workflow.phases)
    return view


def test_the_run_view_refuses_an_unknown_phase_naming_the_known_ones() -> None:
    view = view_of(notes_workflow())
    for read in (view.output, view.outputs, view.artifacts):
        with pytest.raises(OutputLookupError) as e:
            read("reserch")
        assert str(e.value) == "the workflow has no phase 'reserch' (phases: research, write)"
        assert isinstance(e.value, LookupError)


def test_output_of_a_fan_out_phase_says_to_use_outputs() -> None:
    view = view_of(fan())
    view.record("p", "p[0]", "a0", Squared(n=1, square=1))
    with pytest.raises(OutputLookupError, match=r"fans out .* run.outputs\('p'\)"):
        view.output("p")
    assert view.outputs("p") == [Squared(n=1, square=1)]


def test_output_of_a_phase_without_output_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match="phase 'research' has no accepted output"):
        view_of(notes_workflow()).output("research")


def test_selected_outputs_come_in_rank_order() -> None:
    view = view_of(fan())
    for i, squared in enumerate([4, 9, 1]):
        view.record("p", f"p[{i}]", f"a{i}", Squared(n=i, square=squared))
    view.select("p", ["p[1]", "p[0]"])  # the foreman's selection, highest first
    assert [o.square for o in view.outputs("p")] == [9, 4]
    assert [a.id for a in view.artifacts("p")] == ["a1", "a0"]


async def test_a_phase_reading_an_unknown_phase_fails_its_item_naming_the_phases(
    store: SQLiteStore,
) -> None:
    wf = notes_workflow(
        phases=[
            Phase(name="research", role="writer", input=lambda run: Notes(points=["x"])),
            Phase(name="write", role="writer", input=lambda run: run.output("reserch")),
        ],
    )
    result = await Foreman(wf, store).run({"topic": "tea"})
    assert result.status == "failed"
    reasons = [e.data["reason"] for e in store.events(result.run_id) if e.data.get("reason")]
    assert any("no phase 'reserch' (phases: research, write)" in r for r in reasons), reasons


async def test_top_k_keeps_the_highest_in_rank_order(store: SQLiteStore) -> None:
    wf = Workflow(
        name="top",
        input=Topic,
        roles=[squarer_card(two, name="sq")],
        phases=[
            square_each("p", [2, 4, 1, 5], role="sq", select=TopK(2, key=lambda out: out.square))
        ],
        result=lambda run: [o.n for o in run.outputs("p")],
    )
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.result == [5, 4]


# --- the hand-off between phases -----------------------------------------------------------------


class Aliased(BaseModel):
    from_: str = Field(alias="from")
    n: int


class Measure(BaseModel):
    x: float


class Holder(BaseModel):
    inner: Number
    tags: list[str]


@pytest.mark.parametrize(
    ("schema", "raw"),
    [
        (Number, {"n": "900"}),  # never read a string as a number
        (Number, {"n": 9.5}),
        (Number, {"n": True}),
        (Number, {"n": None}),
        (Holder, {"inner": {"n": "1"}, "tags": []}),
        (Holder, {"inner": Number(n=1), "tags": "a"}),
    ],
)
def test_the_hand_off_is_validated_strictly(schema: type[BaseModel], raw: Any) -> None:
    with pytest.raises(Exception) as e:
        validate_handoff(schema, raw)
    assert type(e.value).__name__ == "ValidationError"
    assert "Input should be a valid" in str(e.value)


def test_the_hand_off_reads_models_by_name_and_dicts_by_alias() -> None:
    assert validate_handoff(Number, {"n": 900}) == Number(n=900)
    assert validate_handoff(Aliased, Aliased(**{"from": "x", "n": 1})) == Aliased(
        **{"from": "x", "n": 1}
    )
    assert validate_handoff(Aliased, {"from": "y", "n": 2}).from_ == "y"
    assert validate_handoff(Holder, {"inner": Number(n=1), "tags": ("a",)}) == Holder(
        inner=Number(n=1), tags=["a"]
    )
    assert validate_handoff(Measure, {"x": 1}) == Measure(x=1.0)  # an int is a JSON number


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"x": float("nan")}, "the number at x is NaN"),
        ({"x": float("-inf")}, "the number at x is -Infinity"),
        (Measure(x=float("inf")), "the number at x is Infinity"),
        ({"x": object()}, "it has no JSON form"),
    ],
)
def test_a_hand_off_json_cannot_hold_is_refused(raw: Any, words: str) -> None:
    with pytest.raises(Exception) as e:
        validate_handoff(Measure, raw)
    assert type(e.value).__name__ == "ValidationError"
    assert "input cannot be journaled" in str(e.value)
    assert words in str(e.value)


class Tree(BaseModel):
    tree: Any


@pytest.mark.parametrize("depth", [199, 200, 253, 300, 10_000])
@pytest.mark.parametrize("as_model", [False, True])
def test_a_hand_off_nested_past_the_limit_is_refused(depth: int, as_model: bool) -> None:
    tree: Any = 1
    for _ in range(depth - 1):  # `depth` levels with the object holding it
        tree = [tree]
    raw = Tree(tree=tree) if as_model else {"tree": tree}
    if depth <= 200:
        assert validate_handoff(Tree, raw).tree == tree
        return
    with pytest.raises(Exception, match="nests more than 200 levels deep") as e:
        validate_handoff(Tree, raw)
    assert type(e.value).__name__ == "ValidationError"


async def test_a_phase_handing_a_string_for_a_number_fails_its_item(store: SQLiteStore) -> None:
    wf = squares(Phase(name="p", role="sq", input=lambda run: {"n": "900"}), two, name="sq")
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "failed"
    [failed] = [e for e in store.events(result.run_id) if e.kind.value == "item.failed"]
    assert "n: Input should be a valid integer" in failed.data["reason"]


@pytest.mark.parametrize("x", [float("nan"), float("inf")])
async def test_a_run_input_json_cannot_hold_is_refused(x: float, store: SQLiteStore) -> None:
    wf = one_step(Measure, same)
    with pytest.raises(InputError, match=r"input cannot be journaled: the number at x is"):
        await Foreman(wf, store).run({"x": x})
    assert store.runs(10) == []


async def same(inp: Measure, ctx: Context) -> Measure:
    return inp


# --- the shape -----------------------------------------------------------------------------------


def lookup(topic: str) -> str:
    """Look a topic up."""
    return topic


def shaped(**changes: Any) -> Workflow:
    """A workflow with every part the shape describes; `changes` replace workflow fields,
    `role_*` and `phase_*` keys the researcher's card and the research phase's fields."""
    role_changes = {k[5:]: v for k, v in changes.items() if k.startswith("role_")}
    phase_changes = {k[6:]: v for k, v in changes.items() if k.startswith("phase_")}
    changes = {k: v for k, v in changes.items() if not k.startswith(("role_", "phase_"))}
    researcher = dict(
        name="researcher",
        purpose="Collect facts.",
        input=Topic,
        output=Notes,
        tools=[lookup],
        fallback="backup",
    )
    researcher.update(role_changes)
    research_phase = dict(
        name="research", role="researcher", input=lambda run: run.input, review=True
    )
    research_phase.update(phase_changes)
    args: dict[str, Any] = dict(
        name="notes",
        input=Topic,
        roles=[
            Role(**researcher),  # type: ignore[arg-type]
            Role(name="backup", purpose="Collect facts.", input=Topic, output=researcher["output"]),  # type: ignore[arg-type]
            writer_card(),
        ],
        phases=[
            Phase(**research_phase),  # type: ignore[arg-type]
            Phase(name="write", role="writer", input=lambda run: run.output("research")),
        ],
        result=lambda run: run.output("write"),
    )
    args.update(changes)
    workflow = Workflow(**args)
    workflow.check()
    return workflow


def test_the_shape_is_json_and_describes_roles_and_phases() -> None:
    shape = shaped().shape()
    assert json.loads(json.dumps(shape)) == shape
    assert shape["name"] == "notes"
    researcher = shape["roles"]["researcher"]
    assert researcher["kind"] == "agent"
    assert researcher["fallback"] == "backup"
    assert set(researcher["tools"]) == {"lookup"}
    assert researcher["output"]["properties"]["points"]["minItems"] == 1
    assert shape["roles"]["writer"]["kind"] == "function"
    assert [p["name"] for p in shape["phases"]] == ["research", "write"]
    assert shape["phases"][0] == {
        "name": "research",
        "role": "researcher",
        "fan_out": False,
        "strategy": "fail_fast",
        "quorum": None,
        "select": None,
        "evaluator": None,
        "review": True,
    }


async def other_summarise(inp: Notes, ctx: Context) -> Summary:
    return Summary(text="other")


def test_what_may_change_before_a_resume_leaves_the_shape_alone() -> None:
    before = shaped().shape()
    after = shaped(
        budget=Budget(usd=5.0),
        max_steps=10,
        players={"researcher": notes_player},
        description="changed",
        role_purpose="Another purpose.",
        role_prompt="Be brief.",
        role_max_attempts=1,
        role_timeout=3.0,
        role_model="openai:gpt-4o-mini",
        phase_input=lambda run: Topic(topic="x"),
        phase_objective="Another objective.",
        phase_concurrency=2,
    )
    assert isinstance(after.roles, list)
    after.roles[2] = Role(
        name="writer", purpose="Sum up.", input=Notes, output=Summary, function=other_summarise
    )
    assert shape_changes(before, after.shape()) == []


def test_titles_and_descriptions_of_schemas_are_not_part_of_the_shape() -> None:
    class Plain(BaseModel):
        points: list[str] = Field(min_length=1)

    class Documented(BaseModel):
        """Described."""

        points: list[str] = Field(min_length=1, description="One fact per point.", title="P")

    def shape_of(schema: type[BaseModel]) -> dict[str, Any]:
        return one_step(schema).shape()

    assert shape_changes(shape_of(Plain), shape_of(Documented)) == []


class LongerNotes(BaseModel):
    points: list[str] = Field(min_length=2)


def search(topic: str) -> str:
    """Search a topic."""
    return topic


@pytest.mark.parametrize(
    ("changes", "sentences"),
    [
        (
            {"role_output": LongerNotes},
            ["role 'researcher': output schema changed", "role 'backup': output schema changed"],
        ),
        (
            {"role_fallback": None},
            ["role 'researcher': fallback changed (was 'backup', now none)"],
        ),
        (
            {"role_tools": [lookup, search]},
            ["role 'researcher': tool 'search' was added"],
        ),
        (
            {"role_risk": Risk.HIGH},
            ["role 'researcher': risk changed (was 'low', now 'high')"],
        ),
        (
            {"role_function": research},
            ["role 'researcher': was an agent, now a function"],
        ),
        (
            {"phase_strategy": Strategy.BEST_EFFORT},
            ["phase 'research': strategy changed (was 'fail_fast', now 'best_effort')"],
        ),
        (
            {"phase_review": False},
            ["phase 'research': review gate changed (was yes, now no)"],
        ),
        (
            {"phase_over": lambda run: ["a"], "phase_input": lambda run, t: Topic(topic=t)},
            ["phase 'research': fan-out (over=) changed (was no, now yes)"],
        ),
        ({"name": "other"}, ["the workflow: name changed (was 'notes', now 'other')"]),
        ({"input": Notes}, ["the run's input schema changed"]),
    ],
)
def test_shape_changes_says_what_changed(changes: dict[str, Any], sentences: list[str]) -> None:
    if changes.get("input") is Notes:
        changes["phase_input"] = lambda run: Topic(topic="x")
    assert shape_changes(shaped().shape(), shaped(**changes).shape()) == sentences


def test_shape_changes_names_removed_added_and_reordered_parts() -> None:
    before = shaped()
    roles = list(before.roles)
    phases = list(before.phases)
    after = Workflow(
        name="notes",
        input=Topic,
        roles=[
            roles[0],
            roles[1],
            Role(name="critic", purpose="Critique.", input=Topic, output=Notes),
        ],
        phases=[Phase(name="critique", role="critic", input=lambda run: run.input), phases[0]],
    )
    assert shape_changes(before.shape(), after.shape()) == [
        "role 'writer' was removed",
        "role 'critic' was added",
        "phase 'write' was removed",
        "phase 'critique' was added",
    ]
    swapped = Workflow(
        name="notes",
        input=Topic,
        roles=roles,
        phases=[
            Phase(name="write", role="writer", input=lambda run: Notes(points=["x"])),
            Phase(name="research", role="researcher", input=lambda run: run.input, review=True),
        ],
    )
    assert shape_changes(before.shape(), swapped.shape()) == [
        "the phases run in another order (was research, write; now write, research)"
    ]


def test_shape_changes_goes_into_sub_workflows() -> None:
    def parent(child: Workflow) -> Workflow:
        return Workflow(
            name="parent",
            input=Topic,
            roles=[child.as_role(name="team", purpose="Research.", output=Summary, tools=[lookup])],
            phases=[Phase(name="go", role="team", input=lambda run: run.input)],
        )

    before = parent(shaped()).shape()
    after = parent(shaped(role_output=LongerNotes)).shape()
    assert shape_changes(before, after) == [
        "role 'team', sub-workflow: role 'researcher': output schema changed",
        "role 'team', sub-workflow: role 'backup': output schema changed",
    ]


def test_shapes_of_other_versions_are_not_compared() -> None:
    before = shaped().shape()
    assert shape_changes({**before, "version": 0, "phases": []}, before) == []


def test_workflow_changed_says_what_changed() -> None:
    error = WorkflowChanged(
        "run_1", ["role 'writer': output schema changed", "phase 'x' was removed"]
    )
    assert str(error) == (
        "run run_1 cannot resume: its workflow changed since it started (role 'writer': output "
        "schema changed; phase 'x' was removed). Resume it with the workflow it started with, or "
        "start a new run"
    )
    assert error.changes == ["role 'writer': output schema changed", "phase 'x' was removed"]
