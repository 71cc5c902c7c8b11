"""A planned phase for the plans tests and the crash test: a lead plans searches and a merge.

The lead (a function) plans ``Ask.topics`` searches and one merge of them all. Each search waits
a little and records its side effect (``PLANNED_DB`` names the SideEffects file, if set), so that
a run killed in the middle shows which steps ran twice, if any did; ``PLANNED_SLEEP`` sets how
long a search takes (seconds, 0.01 by default; ``t3`` takes 4 times as long as ``t0``).
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

from hubspoke import Context, Phase, Plan, PlanStep, Role, Workflow
from hubspoke.testing import SideEffects


class Ask(BaseModel):
    topics: list[str]


class Query(BaseModel):
    query: str
    depth: int = 1


class Finding(BaseModel):
    query: str
    text: str


class Merge(BaseModel):
    findings: list[Finding]


class Answer(BaseModel):
    text: str


async def plan(ask: Ask, ctx: Context) -> Plan:
    searches = [
        PlanStep(
            id=f"s{i}",
            role="searcher",
            input={"query": topic},
            objective=f"find what is known about {topic}",
            siblings="the other searches cover the other topics",
        )
        for i, topic in enumerate(ask.topics)
    ]
    merge = PlanStep(
        id="merge",
        role="merger",
        input={"findings": [{"$from": s.id} for s in searches]},
        objective="merge the findings",
    )
    return Plan(steps=[*searches, merge])


async def search(query: Query, ctx: Context) -> Finding:
    # A topic ending in a digit d takes d + 1 times as long: searches end one by one.
    times = 1 + (int(query.query[-1]) if query.query[-1:].isdigit() else 0)
    await asyncio.sleep(float(os.environ.get("PLANNED_SLEEP", "0.01")) * times)
    if "PLANNED_DB" in os.environ:
        SideEffects(os.environ["PLANNED_DB"]).record(ctx.idempotency_key, query.query)
    return Finding(query=query.query, text=f"{query.query} is known")


async def merge(merge: Merge, ctx: Context) -> Answer:
    return Answer(text="; ".join(f.text for f in merge.findings))


ROLES = [
    Role(name="lead", purpose="Plan the research.", input=Ask, output=Plan, function=plan),
    Role(name="searcher", purpose="Search.", input=Query, output=Finding, function=search),
    Role(name="merger", purpose="Merge findings.", input=Merge, output=Answer, function=merge),
]

workflow = Workflow(
    name="planned",
    input=Ask,
    roles=ROLES,
    phases=[
        Phase(
            name="research",
            plan_by="lead",
            input=lambda run: run.input,
            roles=["searcher", "merger"],
            max_steps=12,
            max_parallel=10,
        )
    ],
    result=lambda run: run.step("research", "merge"),
)
