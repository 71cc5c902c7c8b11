"""Workflows that tests/test_ray.py runs on a Ray cluster, loaded as ``FILE.py:NAME`` so that
`RayExecutor` sends them to the workers by value (the workers cannot import the tests).

The files a flow writes go to ``$HUBSPOKE_TEST_RAY_DIR``, which the test's cluster is started
with: workers see the environment of the cluster, not of the test.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hubspoke.budget import Budget
from hubspoke.events import EventKind
from hubspoke.examples.sales import workflow as sales
from hubspoke.examples.sales.data import list_people as known_people
from hubspoke.journal import SQLiteStore
from hubspoke.roles import Role
from hubspoke.specialists.context import Context
from hubspoke.tools import Tool
from hubspoke.workflow import Phase, Strategy, Workflow


def _dir() -> Path:
    return Path(os.environ["HUBSPOKE_TEST_RAY_DIR"])


def _block_once(name: str) -> None:
    """The first call in the cluster writes its process id to ``NAME.pid`` and blocks until the
    test kills that process; later calls return at once."""
    try:
        fd = os.open(_dir() / f"{name}.claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    pid_file = _dir() / f"{name}.pid"
    (_dir() / f"{name}.tmp").write_text(str(os.getpid()))
    os.replace(_dir() / f"{name}.tmp", pid_file)  # whole, or not there
    time.sleep(600)


def list_people(company_id: str) -> list[dict[str, Any]]:
    """The people we know at a company, with titles and departments."""
    _block_once("list_people")
    return known_people(company_id)


killable_sales = replace(
    sales,
    roles=[
        replace(r, tools=[list_people]) if r.name == "contact_selection" else r for r in sales.roles
    ],
)
"""The sales demo, whose first `list_people` call blocks in its worker until killed."""


# a dispatch that never ends ------------------------------------------------------------------


class Sleep(BaseModel):
    seconds: float


class Done(BaseModel):
    pid: int


def sleeper(sleep: Sleep, ctx: Context) -> Done:
    """Sync: writes its pid, then sleeps past its time-out."""
    pid_file = _dir() / "sleeper.pid"
    (_dir() / "sleeper.tmp").write_text(str(os.getpid()))
    os.replace(_dir() / "sleeper.tmp", pid_file)
    time.sleep(sleep.seconds)
    return Done(pid=os.getpid())


slow = Workflow(
    name="slow",
    input=Sleep,
    roles=[
        Role(
            name="sleeper",
            purpose="Sleep.",
            input=Sleep,
            output=Done,
            function=sleeper,
            timeout=3,
            max_attempts=1,
        )
    ],
    phases=[Phase(name="sleep", role="sleeper", input=lambda run: run.input)],
)


# budgets -------------------------------------------------------------------------------------


class Many(BaseModel):
    n: int


class One(BaseModel):
    i: int


async def spend(one: One, ctx: Context) -> One:
    """Spends its whole allowance of 100 tokens."""
    ctx.allowance.used.add(input_tokens=100)
    return one


spending = Workflow(
    name="spending",
    input=Many,
    budget=Budget(tokens=450),
    roles=[
        Role(
            name="spender",
            purpose="Spend.",
            input=One,
            output=One,
            function=spend,
            budget=Budget(tokens=100),
            max_attempts=1,
        )
    ],
    phases=[
        Phase(
            name="fan",
            role="spender",
            over=lambda run: list(range(run.input.n)),
            input=lambda run, i: One(i=i),
            concurrency=8,
            strategy=Strategy.BEST_EFFORT,
        )
    ],
)


# what the foreman journals during a dispatch ---------------------------------------------------


class Probe(BaseModel):
    db: str


class Seen(BaseModel):
    requested: int
    spent: int
    stamps: int


def stamp(note: str) -> str:
    """Append a line to the stamps file (a side effect: at most once per key)."""
    with open(_dir() / "stamps.txt", "a", encoding="utf-8") as f:
        f.write(note + "\n")
    return "stamped " + note


async def announce(probe: Probe, ctx: Context) -> Seen:
    """Announces a model request, then reads the journal from the worker: the announcement is
    there already. Then calls a side-effecting tool twice with the same arguments."""
    ctx.allowance.used.add(input_tokens=7)
    ctx.before_request(
        turn=0,
        worst_tokens=50,
        worst_usd=0.0,
        input_tokens=10,
        endpoint="https://models.invalid/v1",
        model="m",
        provider="p",
    )
    run_id = ctx.idempotency_key.split(":")[0]
    store = SQLiteStore(probe.db, read_only=True)
    try:
        found = [e for e in store.events(run_id) if e.kind is EventKind.MODEL_REQUESTED]
    finally:
        store.close()
    await ctx.call_tool("stamp", note="once")
    await ctx.call_tool("stamp", note="once")
    stamps = (_dir() / "stamps.txt").read_text(encoding="utf-8").count("once")
    return Seen(
        requested=len(found),
        spent=found[0].data["spent"]["input_tokens"] if found else -1,
        stamps=stamps,
    )


announcing = Workflow(
    name="announcing",
    input=Probe,
    roles=[
        Role(
            name="announcer",
            purpose="Announce a request.",
            input=Probe,
            output=Seen,
            function=announce,
            tools=[Tool.from_function(stamp, side_effect=True)],
            max_attempts=1,
        )
    ],
    phases=[Phase(name="announce", role="announcer", input=lambda run: run.input)],
)


# an agent on a provider's model ----------------------------------------------------------------


class Topic(BaseModel):
    topic: str


class Notes(BaseModel):
    points: list[str]


researching = Workflow(
    name="researching",
    input=Topic,
    roles=[Role(name="researcher", purpose="Collect facts.", input=Topic, output=Notes)],
    phases=[Phase(name="research", role="researcher", input=lambda run: run.input)],
)
"""One agent role; the test binds it to a scripted provider's server (`Foreman(model=...)`)."""


# a sub-workflow ------------------------------------------------------------------------------


def _pid_notes(topic: Topic, ctx: Context) -> Notes:
    return Notes(points=[f"{topic.topic} in process {os.getpid()}"])


inner = Workflow(
    name="inner",
    input=Topic,
    roles=[Role(name="noter", purpose="Note.", input=Topic, output=Notes, function=_pid_notes)],
    phases=[Phase(name="note", role="noter", input=lambda run: run.input)],
    result=lambda run: run.output("note"),
)

nested = Workflow(
    name="nested",
    input=Topic,
    roles=[inner.as_role(name="team", purpose="Take notes.", output=Notes)],
    phases=[Phase(name="delegate", role="team", input=lambda run: run.input)],
)
"""A role that is a sub-workflow: its child foreman runs in the foreman's process, the child's
function role in a Ray worker (its note names the worker's process)."""


# a side effect cut short by a killed worker -------------------------------------------------


def charge(amount: int) -> str:
    """Charge a card (a side effect). The first call blocks in its worker until killed."""
    _block_once("charge")
    return f"charged {amount}"


async def _pay(one: One, ctx: Context) -> One:
    await ctx.call_tool("charge", amount=one.i)
    return one


paying = Workflow(
    name="paying",
    input=One,
    roles=[
        Role(
            name="payer",
            purpose="Pay.",
            input=One,
            output=One,
            function=_pay,
            tools=[Tool.from_function(charge, side_effect=True)],
            max_attempts=2,
        )
    ],
    phases=[Phase(name="pay", role="payer", input=lambda run: run.input)],
)
"""A side-effecting call whose worker dies after its `tool.started`: in doubt from then on."""
