"""Small workflows shared by the tests."""

from __future__ import annotations

from pydantic import BaseModel, Field

from hubspoke import Context


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
