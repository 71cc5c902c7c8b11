"""Tools: arguments validated before the function runs; sync tools in worker threads, so a
blocking tool neither blocks the event loop nor outlives the wait of a cancelled call."""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Annotated, Any

import pytest
from pydantic import Field

from hubspoke.threads import in_thread
from hubspoke.tools import Tool, ToolArgumentsError, is_async_callable

pytestmark = pytest.mark.anyio

HOLD = 30.0
"""A failsafe only: how long a blocked thread waits before giving up if the runtime is broken."""


async def test_a_sync_tool_runs_in_a_worker_thread_an_async_one_on_the_loop() -> None:
    def where_sync() -> int:
        """Which thread runs me."""
        return threading.get_ident()

    async def where_async() -> int:
        """Which thread runs me."""
        return threading.get_ident()

    loop_thread = threading.get_ident()
    assert await Tool.from_function(where_sync).call({}) != loop_thread
    assert await Tool.from_function(where_async).call({}) == loop_thread


async def test_a_blocking_sync_tool_does_not_block_the_event_loop() -> None:
    freed = threading.Event()

    def wait_to_be_freed() -> bool:
        """Block until freed."""
        return freed.wait(HOLD)

    async def free() -> None:  # runs on the loop only if the tool does not hold it
        freed.set()

    tool = Tool.from_function(wait_to_be_freed)
    returned, _ = await asyncio.gather(tool.call({}), free())
    assert returned is True


async def test_a_cancelled_sync_tool_call_ends_at_once_and_its_result_is_dropped() -> None:
    started, release, returned = threading.Event(), threading.Event(), threading.Event()

    def stuck() -> str:
        """Block until released."""
        started.set()
        release.wait(HOLD)
        returned.set()
        return "late"

    call = asyncio.ensure_future(Tool.from_function(stuck).call({}))
    assert await in_thread(started.wait, HOLD)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert not returned.is_set()  # the call ended; its thread still runs (it cannot be killed)
    thread = next(t for t in threading.enumerate() if t.name == "hubspoke:stuck")
    release.set()
    thread.join(HOLD)
    assert returned.is_set()
    await asyncio.sleep(0)  # the late result reaches the loop, and is dropped without an error


async def test_arguments_that_are_not_json_never_reach_the_function() -> None:
    ran: list[str] = []

    def lookup(topic: str) -> str:
        """Look a topic up."""
        ran.append(topic)
        return topic

    tool = Tool.from_function(lookup)
    with pytest.raises(ToolArgumentsError) as e:
        await tool.call('{"topic": "te')
    assert [err["type"] for err in e.value.errors] == ["json_invalid"]
    assert await tool.call('{"topic": "tea"}') == "tea"
    assert ran == ["tea"]


class AsyncCallable:
    async def __call__(self, topic: str) -> str:
        return topic


async def test_async_callables_of_every_shape_run_on_the_loop() -> None:
    async def lookup(topic: str) -> str:
        return topic

    assert is_async_callable(lookup)
    assert is_async_callable(functools.partial(lookup, topic="x"))
    assert is_async_callable(AsyncCallable())
    assert not is_async_callable(len)
    tool = Tool.from_function(AsyncCallable().__call__, name="echo")
    assert tool.is_async and await tool.call({"topic": "tea"}) == "tea"


async def test_a_thread_that_raises_system_exit_does_not_stop_the_loop() -> None:
    def leave() -> Any:
        raise SystemExit(3)

    with pytest.raises(RuntimeError, match=r"SystemExit raised in a worker thread"):
        await in_thread(leave)


async def test_constraints_in_annotated_parameters_are_part_of_the_argument_schema() -> None:
    calls: list[int] = []

    def top(limit: Annotated[int, Field(ge=1, le=10)] = 5) -> int:
        """The first `limit` results."""
        calls.append(limit)
        return limit

    tool = Tool.from_function(top)

    assert tool.json_schema()["properties"]["limit"]["maximum"] == 10
    for bad in (11, 0):
        with pytest.raises(ToolArgumentsError, match="limit"):
            await tool.call({"limit": bad})
    assert await tool.call({"limit": 10}) == 10
    assert calls == [10]  # the refused calls never reached the function
