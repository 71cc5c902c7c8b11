"""A routed phase for the router's crash test: a router searches each topic, then merges.

The router (a function) dispatches one search per topic of ``Ask.topics``, then a merge of them
all, then finishes with the merge. Each search waits a little and records its side effect
(``ROUTED_DB`` names the SideEffects file, if set), so that a run killed in the middle shows
which steps ran twice, if any did; ``ROUTED_SLEEP`` sets how long a search takes (seconds,
0.01 by default). ``ROUTED_ASKED`` names a file each router decision appends its turn to.
"""

from __future__ import annotations

import asyncio
import os

from hubspoke import Context, Phase, Role, Route, RouterView, Workflow
from hubspoke.testing import SideEffects
from tests.workflows.planned import Answer, Ask, Finding, Merge, Query, merge


async def route(view: RouterView, ctx: Context) -> Route:
    done = len(view.steps) + sum(view.earlier.values())
    if "ROUTED_ASKED" in os.environ:
        with open(os.environ["ROUTED_ASKED"], "a") as f:
            f.write(f"{done}\n")
    topics = view.task["topics"]
    if done < len(topics):
        return Route(action="dispatch", role="searcher", input={"query": topics[done]})
    if done == len(topics):
        ids = [f"s{i + 1}" for i in range(len(topics))]
        return Route(
            action="dispatch", role="merger", input={"findings": [{"$from": i} for i in ids]}
        )
    return Route(action="finish", result={"$from": f"s{done}"})


async def search(query: Query, ctx: Context) -> Finding:
    await asyncio.sleep(float(os.environ.get("ROUTED_SLEEP", "0.01")))
    if "ROUTED_DB" in os.environ:
        SideEffects(os.environ["ROUTED_DB"]).record(ctx.idempotency_key, query.query)
    return Finding(query=query.query, text=f"{query.query} is known")


workflow = Workflow(
    name="routed",
    input=Ask,
    roles=[
        Role(name="router", purpose="Route.", input=RouterView, output=Route, function=route),
        Role(name="searcher", purpose="Search.", input=Query, output=Finding, function=search),
        Role(name="merger", purpose="Merge findings.", input=Merge, output=Answer, function=merge),
    ],
    phases=[
        Phase(
            name="work",
            route_by="router",
            input=lambda run: run.input,
            roles=["searcher", "merger"],
            max_steps=40,
            returns=Answer,
        )
    ],
    result=lambda run: run.output("work"),
)
