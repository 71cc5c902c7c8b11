"""A wrong card or workflow is refused when built, naming the card and the field."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from hubspoke import (
    Budget,
    Context,
    DefinitionError,
    Foreman,
    Outcome,
    Phase,
    Risk,
    Role,
    SQLiteStore,
    Tool,
    Verdict,
    Workflow,
    WorkItem,
)
from hubspoke.executors import LocalExecutor
from hubspoke.roles import DEFAULT_TIMEOUT
from hubspoke.specialists import Specialist, compile_system_prompt
from tests.helpers import Notes, Summary, Topic, research, researcher_card, summarise

pytestmark = pytest.mark.anyio


def build(*roles: Role, phases: list[Phase] | None = None) -> Workflow:
    return Workflow(
        name="w",
        input=Topic,
        roles=list(roles),
        phases=phases or [Phase(name="p", role=roles[0].name, input=lambda run: run.input)],
    )


def good(**changes: Any) -> Role:
    """A valid card, `researcher_card` played by `research`, with `changes` on top."""
    return researcher_card(**({"function": research} | changes))


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"output": dict}, "output", "BaseModel"),
        ({"input": "Topic"}, "input", "BaseModel"),
        ({"name": "Bad Name"}, "name", "lower-case"),
        ({"purpose": " "}, "purpose", "sentence"),
        ({"max_attempts": 0}, "max_attempts", "at least 1"),
        ({"fallback": "nobody"}, "fallback", "no role named 'nobody'"),
        ({"fallback": "researcher"}, "fallback", "its own fallback"),
        ({"timeout": -1.0}, "timeout", "positive"),
        ({"does_not": "send email"}, "does_not", "list"),
        (
            {"function": summarise.__wrapped__ if hasattr(summarise, "__wrapped__") else len},
            "function",
            "async",
        ),
    ],
)
def test_wrong_cards_are_refused_with_card_and_field(
    changes: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(DefinitionError) as e:
        build(good(**changes)).check()
    assert e.value.field == field
    assert "researcher" in e.value.where or "Bad Name" in e.value.where
    assert words in str(e.value)


def test_tool_that_is_not_callable_is_refused_at_the_card() -> None:
    with pytest.raises(DefinitionError) as e:
        good(tools=["search"])
    assert e.value.field == "tools[0]" and "not callable" in str(e.value)


def test_tool_without_annotations_is_refused() -> None:
    def search(q):  # type: ignore[no-untyped-def]
        return q

    with pytest.raises(DefinitionError, match="annotation"):
        good(tools=[search])


def test_duplicate_role_names_are_refused() -> None:
    with pytest.raises(DefinitionError, match="unique"):
        build(good(), good()).check()


def test_fallback_must_take_the_same_input() -> None:
    other = Role(name="writer", purpose="Write.", input=Notes, output=Summary, function=summarise)
    with pytest.raises(DefinitionError, match="same input"):
        build(good(fallback="writer"), other).check()


def test_high_risk_roles_must_pass_a_review_gate() -> None:
    risky = good(risk=Risk.HIGH)
    with pytest.raises(DefinitionError, match="review gate"):
        build(risky).check()
    build(
        risky, phases=[Phase(name="p", role="researcher", input=lambda r: r.input, review=True)]
    ).check()


def test_phase_errors_name_the_phase() -> None:
    with pytest.raises(DefinitionError) as e:
        build(good(), phases=[Phase(name="p", role="ghost", input=lambda r: r.input)]).check()
    assert e.value.where == "phase 'p'" and e.value.field == "role"
    with pytest.raises(DefinitionError, match="evaluator"):
        build(
            good(),
            phases=[
                Phase(name="p", role="researcher", input=lambda r: r.input, evaluator="researcher")
            ],
        ).check()


class Judge(BaseModel):
    ok: bool


def test_evaluator_must_return_a_verdict() -> None:
    judge = Role(name="judge", purpose="Judge.", input=Topic, output=Verdict, function=research)
    with pytest.raises(DefinitionError, match="EvaluationRequest"):
        build(
            good(),
            judge,
            phases=[Phase(name="p", role="researcher", input=lambda r: r.input, evaluator="judge")],
        ).check()


def test_system_prompt_is_compiled_from_the_card() -> None:
    def search(q: str) -> str:
        """Search."""
        return q

    role = Role(
        name="writer",
        purpose="Write drafts.",
        input=Topic,
        output=Summary,
        does=["writes short drafts"],
        does_not=["send email"],
        tools=[search],
        prompt="Be brief.",
    )
    prompt = compile_system_prompt(role)
    assert prompt.startswith('You are the specialist "writer". Write drafts.')
    for text in ("writes short drafts", "- send email", "Your tools: search", "Be brief."):
        assert text in prompt


# time-outs and function shapes -------------------------------------------------------------------


class RecordingExecutor:
    """Records the time-out the foreman gives each dispatch, then runs it in-process."""

    def __init__(self) -> None:
        self.timeouts: dict[str, float | None] = {}
        self.local = LocalExecutor()

    async def execute(
        self, specialist: Specialist, item: WorkItem, ctx: Context, timeout: float | None
    ) -> Outcome:
        self.timeouts[item.role] = timeout
        return await self.local.execute(specialist, item, ctx, timeout)


async def test_a_dispatch_has_a_default_time_out_the_card_can_change(
    store: SQLiteStore,
) -> None:
    cards: dict[str, dict[str, Any]] = {
        "default": {},
        "set": {"timeout": 2.5},
        "budget": {"timeout": 2.5, "budget": Budget(seconds=1.5)},
        "none": {"timeout": None},
    }
    roles = [good(name=name, **changes) for name, changes in cards.items()]
    phases = [Phase(name=name, role=name, input=lambda r: r.input) for name in cards]
    executor = RecordingExecutor()
    result = await Foreman(build(*roles, phases=phases), store, executor=executor).run(
        {"topic": "tea"}
    )
    assert result.status == "completed"
    assert DEFAULT_TIMEOUT == 300.0
    assert executor.timeouts == {"default": 300.0, "set": 2.5, "budget": 1.5, "none": None}


def test_a_sync_function_is_a_valid_card() -> None:
    def research_sync(inp: Topic, ctx: Context) -> Notes:
        return Notes(points=["sync"])

    build(good(function=research_sync)).check()


@pytest.mark.parametrize(
    ("function", "words"),
    [
        ("research", "must be a function `async def f(input:"),
        (lambda inp: inp, "cannot be called as f(input, ctx)"),
        (lambda inp, ctx, extra: inp, "cannot be called as f(input, ctx)"),
    ],
)
def test_a_function_that_cannot_take_input_and_context_is_refused(
    function: Any, words: str
) -> None:
    with pytest.raises(DefinitionError) as e:
        build(good(function=function)).check()
    assert e.value.field == "function"
    assert words in str(e.value)


def test_an_agent_tool_no_provider_takes_is_refused_at_check_but_a_function_may_have_it() -> None:
    def look(topic: str) -> str:
        """Look a topic up."""
        return topic

    dotted = Tool.from_function(look, name="web.search")
    agent = Role(name="r", purpose="Do.", input=Topic, output=Topic, tools=[dotted])
    with pytest.raises(DefinitionError, match="1 to 64 letters"):
        agent.check()
    answer = Role(
        name="r",
        purpose="Do.",
        input=Topic,
        output=Topic,
        tools=[Tool.from_function(look, name="refuse")],
    )
    with pytest.raises(DefinitionError, match="name of one of the agent's answers"):
        answer.check()
    Role(
        name="r", purpose="Do.", input=Topic, output=Topic, tools=[dotted], function=lambda i, c: i
    ).check()  # no provider sees a function's tools
