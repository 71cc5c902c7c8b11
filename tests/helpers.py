"""Schemas, specialists, role cards and small workflows shared by the tests.

Each builder names its roles and phases the way the tests' expected event streams spell them
(`squarer`, `squares`, `researcher`, `write`, ...): a stream line such as
``"dispatch.started squares squarer squares[0] #1"`` reads straight off the builder's call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pydantic import BaseModel, Field

from hubspoke import Context, EvaluationRequest, Phase, Role, Verdict, Workflow
from hubspoke.events import Event
from hubspoke.journal import RunRecord

# --- schemas -------------------------------------------------------------------------------------
# No docstrings on these: pydantic makes a model's docstring its JSON schema's description, which
# an agent's prompt carries (and its token estimate counts). The run input is a Topic; Notes and
# Summary are the researcher's and the writer's outputs; a fan-out squares Numbers.


class Topic(BaseModel):
    topic: str


class Notes(BaseModel):
    points: list[str] = Field(min_length=1)


class Summary(BaseModel):
    text: str


class Number(BaseModel):
    n: int


class Squared(BaseModel):
    n: int
    square: int


class Draft(BaseModel):
    text: str


# --- specialists and tools -----------------------------------------------------------------------


async def research(inp: Topic, ctx: Context) -> Notes:
    """Two points on the topic."""
    return Notes(points=[f"{inp.topic} is old", f"{inp.topic} is useful"])


async def summarise(inp: Notes, ctx: Context) -> Summary:
    """The points joined with "; "."""
    return Summary(text="; ".join(inp.points))


async def square(inp: Number, ctx: Context) -> Squared:
    """The number and its square."""
    return Squared(n=inp.n, square=inp.n * inp.n)


async def draft(inp: Topic, ctx: Context) -> Draft:
    """A short draft first; the longer one once a correction asks for better."""
    return Draft(text="short" if ctx.correction is None else "a longer, better draft")


def drafting(attempts: list[int]) -> Callable[[Topic, Context], Awaitable[Draft]]:
    """A writer that drafts ``"a draft"`` every time and appends each dispatch's attempt number
    to `attempts`: how many times the writer itself was dispatched, whatever its judge did."""

    async def write(inp: Topic, ctx: Context) -> Draft:
        attempts.append(ctx.attempt)
        return Draft(text="a draft")

    return write


def recording_lookup(calls: list[str], name: str = "lookup") -> Callable[[str], str]:
    """A tool called `name`, ``name(topic: str) -> "<topic>: known"`` ("Look a topic up."), that
    appends every topic it runs with to `calls`: what actually ran, as against what was asked."""

    def lookup(topic: str) -> str:
        """Look a topic up."""
        calls.append(topic)
        return f"{topic}: known"

    lookup.__name__ = lookup.__qualname__ = name
    return lookup


# --- role cards ----------------------------------------------------------------------------------


def squarer_card(function: Any = square, **changes: Any) -> Role:
    """The `squarer` card (Number -> Squared, "Square.") played by `function` (`None`: an
    agent); `changes` set or replace any other card field (`name`, `max_attempts`, `tools`...)."""
    card: dict[str, Any] = dict(
        name="squarer", purpose="Square.", input=Number, output=Squared, function=function
    )
    return Role(**(card | changes))


def researcher_card(**changes: Any) -> Role:
    """The `researcher` card (Topic -> Notes, "Collect facts."): an agent unless `changes` give it
    a `function`; `changes` set or replace any card field."""
    card: dict[str, Any] = dict(
        name="researcher", purpose="Collect facts.", input=Topic, output=Notes
    )
    return Role(**(card | changes))


def writer_card() -> Role:
    """The `writer` card (Notes -> Summary, "Summarise.") played by `summarise`."""
    return Role(
        name="writer", purpose="Summarise.", input=Notes, output=Summary, function=summarise
    )


# --- phases --------------------------------------------------------------------------------------


def square_each(name: str, numbers: Iterable[int], **options: Any) -> Phase:
    """Phase `name` fanning out over `numbers`: item `name[i]` is ``Number(n=numbers[i])``, for
    the `squarer` role unless `options` name another `role`; `options` are the phase's other
    fields (`strategy`, `concurrency`, `select`, ...), each at its default unless given."""
    values = list(numbers)
    fields: dict[str, Any] = {"role": "squarer"} | options
    return Phase(
        name=name, over=lambda run: list(values), input=lambda run, n: Number(n=n), **fields
    )


# --- workflows -----------------------------------------------------------------------------------


def squares(phase: Phase, function: Any = square, **card: Any) -> Workflow:
    """Workflow `squares` over a Topic: one `squarer_card(function, **card)` role and the given
    phase."""
    return Workflow(
        name="squares", input=Topic, roles=[squarer_card(function, **card)], phases=[phase]
    )


def fan_out(
    function: Any = square,
    n: int = 3,
    *,
    phase: str = "squares",
    max_attempts: int = 3,
    roles: list[Role] | None = None,
    max_escalations: int = 25,
    **options: Any,
) -> Workflow:
    """Workflow `fan`: one phase squaring the numbers ``0 .. n-1``, one item each, one at a time.

    Args:
        function: plays the `squarer` card, with `max_attempts` attempts an item.
        n: how many items.
        phase: the phase's name; its items are ``phase[0] .. phase[n-1]``.
        roles: cards to use instead of that one `squarer` card (the phase still dispatches to
            `squarer`, so one of them must be it).
        max_escalations: the run's escalation cap.
        options: the phase's other fields (`strategy`, `retries`, `quorum`, ...);
            `concurrency` is 1 unless given.
    """
    return Workflow(
        name="fan",
        input=Topic,
        roles=roles or [squarer_card(function, max_attempts=max_attempts)],
        phases=[square_each(phase, range(n), **({"concurrency": 1} | options))],
        max_escalations=max_escalations,
    )


def one_phase(card: Role, *, phase: str = "p", **changes: Any) -> Workflow:
    """Workflow `w`: the one `card` and one phase, `phase`, that hands it the run's input (the
    card's input schema is the run's); `changes` set or replace any other workflow field
    (`players`, `result`, ...)."""
    args: dict[str, Any] = dict(
        name="w",
        input=card.input,
        roles=[card],
        phases=[Phase(name=phase, role=card.name, input=lambda run: run.input)],
    )
    return Workflow(**(args | changes))


def one_step(
    model: type[BaseModel], function: Any = None, *, role: str = "r", phase: str = "p"
) -> Workflow:
    """`one_phase` for a card `role` ("Do.", `model` -> `model`) played by `function` (an agent
    if `None`), in the phase `phase`."""
    card = Role(name=role, purpose="Do.", input=model, output=model, function=function)
    return one_phase(card, phase=phase)


def notes_workflow(researcher: Role | None = None, **changes: Any) -> Workflow:
    """Workflow `notes`: phase `research` (the `researcher` card given; `researcher_card()`, an
    agent, unless told) hands its notes to phase `write` (`writer_card()`); the run's result is
    the summary. `changes` set or replace any other workflow field (`players`, `name`, `roles`,
    ...)."""
    first = researcher or researcher_card()
    args: dict[str, Any] = dict(
        name="notes",
        input=Topic,
        roles=[first, writer_card()],
        phases=[
            Phase(name="research", role=first.name, input=lambda run: run.input),
            Phase(name="write", role="writer", input=lambda run: run.output("research")),
        ],
        result=lambda run: run.output("write"),
    )
    return Workflow(**(args | changes))


def judged(
    writer: Callable[[Topic, Context], Awaitable[Draft]],
    judge: Callable[[EvaluationRequest, Context], Awaitable[Verdict]],
) -> Workflow:
    """One phase, `write`, whose drafts the `judge` role evaluates."""
    return Workflow(
        name="judged",
        input=Topic,
        roles=[
            Role(name="writer", purpose="Write.", input=Topic, output=Draft, function=writer),
            Role(
                name="judge",
                purpose="Judge drafts.",
                input=EvaluationRequest,
                output=Verdict,
                function=judge,
            ),
        ],
        phases=[Phase(name="write", role="writer", input=lambda run: run.input, evaluator="judge")],
        result=lambda run: run.output("write"),
    )


def relay(model: type[BaseModel], step: Callable[[Any, Context], Awaitable[Any]]) -> Workflow:
    """Two phases, `first` and `second`, each running `step` on the one before's output."""
    return Workflow(
        name="relay",
        input=model,
        roles=[Role(name="step", purpose="Step.", input=model, output=model, function=step)],
        phases=[
            Phase(name="first", role="step", input=lambda run: run.input),
            Phase(name="second", role="step", input=lambda run: run.output("first")),
        ],
    )


# --- journal records -----------------------------------------------------------------------------


def running_record(run_id: str, workflow: str, input: dict[str, Any], **fields: Any) -> RunRecord:
    """The record of a top-level run of `workflow` on `input` that started now and has not
    finished, as written by schema version 1; `fields` replace any other field (`ref`,
    `options`, ...)."""
    values: dict[str, Any] = dict(
        ref=None,
        options={},
        parent_run=None,
        parent_item=None,
        schema_version=1,
        created=time.time(),
        status="running",
        finished=None,
    )
    return RunRecord(run_id=run_id, workflow=workflow, input=input, **(values | fields))


# --- kills ---------------------------------------------------------------------------------------


class Killed(BaseException):
    """A kill at a chosen event: a listener raising an Exception would only be dropped."""


def kill_when(hit: Callable[[Event], bool]) -> Callable[[Event], None]:
    """A listener that raises `Killed` at the first event for which `hit` is true."""

    def listener(event: Event) -> None:
        if hit(event):
            raise Killed

    return listener
