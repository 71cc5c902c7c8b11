"""Workflows that only tests/test_pool.py runs (the others come from tests/ray_flows.py), loaded
as ``FILE.py:NAME`` as the CLI loads them, so that each worker process loads this file too.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel

from hubspoke.roles import Role
from hubspoke.runview import RunView
from hubspoke.specialists.context import Context
from hubspoke.workflow import Phase, Strategy, Workflow
from tests.ray_flows import Done, Sleep, Topic, researching, sleeper, slow


class Many(BaseModel):
    n: int
    block: float


def sleep_once(sleep: Sleep, ctx: Context) -> Done:
    """Sync; one that sleeps (the blocking one) is `sleeper`, which writes its pid first."""
    if sleep.seconds:
        return sleeper(sleep, ctx)
    return Done(pid=os.getpid())


def _sleeps(run: RunView) -> list[Sleep]:
    inp = run.input
    assert isinstance(inp, Many)
    return [Sleep(seconds=inp.block if i == 0 else 0.0) for i in range(inp.n)]


blocking_fan = Workflow(
    name="blocking_fan",
    input=Many,
    roles=[replace(slow.roles[0], function=sleep_once)],
    phases=[
        Phase(
            name="sleep",
            role="sleeper",
            over=_sleeps,
            input=lambda run, sleep: sleep,
            concurrency=16,
            strategy=Strategy.BEST_EFFORT,
        )
    ],
)
"""A fan-out whose first item's sync specialist blocks its worker thread past its time-out;
the others return at once, in the same worker process."""


class Topics(BaseModel):
    topics: list[str]


researching_many = Workflow(
    name="researching_many",
    input=Topics,
    roles=[researching.roles[0]],
    phases=[
        Phase(
            name="research",
            role="researcher",
            over=lambda run: run.input.topics,
            input=lambda run, topic: Topic(topic=topic),
            concurrency=16,
        )
    ],
)
"""One agent role over many topics, all in flight; the test binds it to a scripted provider's
server (`Foreman(model=...)`)."""


async def nap_or_watch(sleep: Sleep, ctx: Context) -> Done:
    """Async. With seconds, naps, and says so in ``cancelled`` when its task is cancelled;
    without, returns once that file is there."""
    flag = Path(os.environ["HUBSPOKE_TEST_RAY_DIR"]) / "cancelled"
    if sleep.seconds:
        try:
            await asyncio.sleep(sleep.seconds)
        except asyncio.CancelledError:
            flag.write_text(str(os.getpid()))
            raise
    while not flag.exists():
        await asyncio.sleep(0.05)
    return Done(pid=os.getpid())


cancelling = replace(
    blocking_fan,
    name="cancelling",
    roles=[replace(blocking_fan.roles[0], function=nap_or_watch)],
    # One at a time: the napper first, past its time-out; then the watcher.
    phases=[replace(blocking_fan.phases[0], concurrency=1)],
)
"""A napper whose task must be cancelled in its worker at its time-out, and a watcher that
returns once it was."""


class Count(BaseModel):
    n: int


class Number(BaseModel):
    i: int


async def echo(number: Number, ctx: Context) -> Number:
    """Async, returns at once."""
    return number


echoing = Workflow(
    name="echoing",
    input=Count,
    roles=[Role(name="echo", purpose="Echo.", input=Number, output=Number, function=echo)],
    phases=[
        Phase(
            name="echo",
            role="echo",
            over=lambda run: [Number(i=i) for i in range(run.input.n)],
            input=lambda run, number: number,
            concurrency=1_000,
        )
    ],
    max_steps=1_016,
)
"""A fan-out of up to 1,000 items that return at once."""


class Unreadable(Exception):
    """An exception that pickles but does not unpickle (its class needs two arguments; pickle
    calls it again with the one it passed on)."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(a)
        self.b = b


async def answer_or_not(number: Number, ctx: Context) -> object:
    """Async: the first item's result is a value the foreman's process cannot read back; the
    others return their number at once."""
    if number.i == 0:
        return {"i": 0, "note": Unreadable(1, 2)}
    return number


unreadable = replace(
    echoing,
    name="unreadable",
    roles=[replace(echoing.roles[0], function=answer_or_not)],
)
"""A fan-out whose first item's result pickles in the worker but does not load in the foreman;
the others in flight with it in the same process are fine."""


def fork_or_block(number: Number, ctx: Context) -> Number:
    """Sync. The first item forks a child that sleeps on (it writes its pid to ``forked.pid``)
    and returns; the second, once the child is there, writes its worker's pid to
    ``blocker.pid`` and blocks until the test kills that worker."""
    folder = Path(os.environ["HUBSPOKE_TEST_RAY_DIR"])
    if number.i == 0:
        if os.fork() == 0:  # the child: holds whatever the worker had open, and sleeps
            try:
                (folder / "forked.tmp").write_text(str(os.getpid()))
                os.replace(folder / "forked.tmp", folder / "forked.pid")
                time.sleep(600)
            finally:
                os._exit(0)
        return number
    while not (folder / "forked.pid").exists():
        time.sleep(0.02)
    (folder / "blocker.tmp").write_text(str(os.getpid()))
    os.replace(folder / "blocker.tmp", folder / "blocker.pid")
    time.sleep(600)
    return number


forking = replace(
    echoing,
    name="forking",
    roles=[
        replace(echoing.roles[0], function=fork_or_block, timeout=60, max_attempts=1),
    ],
    # One at a time: the forking item has come back before the blocking one is sent.
    phases=[replace(echoing.phases[0], concurrency=1, strategy=Strategy.BEST_EFFORT)],
)
"""A specialist that forks a process that outlives its dispatch, then one that blocks its
worker until the test kills it."""


async def exit_or_echo(number: Number, ctx: Context) -> Number:
    """Async: the first item calls `sys.exit` (in its worker); the others return at once."""
    if number.i == 0:
        sys.exit(3)
    return number


exiting = replace(echoing, name="exiting", roles=[replace(echoing.roles[0], function=exit_or_echo)])
"""A fan-out whose first item's specialist calls `sys.exit`."""


class Padded(BaseModel):
    i: int
    pad: str = ""


def hold_the_gil(padded: Padded, ctx: Context) -> Padded:
    """Sync. The first item writes its worker's pid to ``gil.pid`` and calls C code that keeps
    the GIL for ten minutes (libc's ``sleep`` through `ctypes.PyDLL`, which does not release
    it), as a C extension or a runaway regular expression can: nothing else in its process
    runs, the thread that reads its pipe included. The others return at once."""
    if padded.i == 0:
        folder = Path(os.environ["HUBSPOKE_TEST_RAY_DIR"])
        (folder / "gil.tmp").write_text(str(os.getpid()))
        os.replace(folder / "gil.tmp", folder / "gil.pid")
        ctypes.PyDLL(None).sleep(600)
    return padded


holding = Workflow(
    name="holding",
    input=Count,
    roles=[
        Role(
            name="holder",
            purpose="Hold.",
            input=Padded,
            output=Padded,
            function=hold_the_gil,
            timeout=1,
            max_attempts=1,
        )
    ],
    phases=[
        Phase(
            name="hold",
            role="holder",
            # Inputs larger than a socket's buffer: sending one to the held worker must not
            # hold up the foreman.
            over=lambda run: [
                Padded(i=i, pad="x" * (4_000_000 if i else 0)) for i in range(run.input.n)
            ],
            input=lambda run, padded: padded,
            concurrency=1,
            strategy=Strategy.BEST_EFFORT,
        )
    ],
)
"""A worker held by C code that keeps the GIL, and dispatches sent to it after."""
