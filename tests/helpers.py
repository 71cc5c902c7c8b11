"""Small workflows shared by the tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field

from hubspoke import Context, EvaluationRequest, Phase, Role, Verdict, Workflow
from hubspoke.events import Event


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


async def research(inp: Topic, ctx: Context) -> Notes:
    return Notes(points=[f"{inp.topic} is old", f"{inp.topic} is useful"])


async def summarise(inp: Notes, ctx: Context) -> Summary:
    return Summary(text="; ".join(inp.points))


async def square(inp: Number, ctx: Context) -> Squared:
    return Squared(n=inp.n, square=inp.n * inp.n)


def squares(phase: Phase, function: Any = square) -> Workflow:
    """One `squarer` role (Number -> Squared, `square` unless told) and the given phase."""
    return Workflow(
        name="squares",
        input=Topic,
        roles=[
            Role(name="squarer", purpose="Square.", input=Number, output=Squared, function=function)
        ],
        phases=[phase],
    )


class Draft(BaseModel):
    text: str


async def draft(inp: Topic, ctx: Context) -> Draft:
    """A short draft first; the longer one once a correction asks for better."""
    return Draft(text="short" if ctx.correction is None else "a longer, better draft")


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


class Killed(BaseException):
    """A kill at a chosen event: a listener raising an Exception would only be dropped."""


def kill_when(hit: Callable[[Event], bool]) -> Callable[[Event], None]:
    """A listener that raises `Killed` at the first event for which `hit` is true."""

    def listener(event: Event) -> None:
        if hit(event):
            raise Killed

    return listener
