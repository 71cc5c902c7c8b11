"""What runs on the Ray cluster for `RayExecutor`: one dispatch in a worker, and the hub.

The dispatch itself is `_remote.run_shipment`, shared with the worker pool: the context rebuilt
with the same limits, tools and keys, the outcome, the trace and the usage sent back. Here is
only how it travels on Ray: the pickled specialist comes from the object store, and what the
foreman must journal *during* the dispatch goes to the foreman through the hub, the worker
waiting for the answer before going on (`ray.get`: this worker runs this one dispatch).

The hub is one async actor per `RayExecutor` connection: workers `ask` and wait; the foreman
takes the `questions` in batches and `answer`s them.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import ray

from hubspoke.executors._remote import Reply, Returned, Shipment, failed, run_shipment, unpack

__all__ = ["Hub", "run_dispatch"]


def run_dispatch(shipment: Shipment, payload: list[ray.ObjectRef[bytes]], hub: Any) -> Returned:
    """Run one dispatch in this worker; never raises (a specialist's exception is `failed`).

    `payload` holds the pickle in the object store, in a list so that Ray does not fetch it for
    a worker that has it already; `hub` is the hub's actor handle."""
    from ray import cloudpickle

    try:
        loaded = unpack(shipment.digest, lambda: ray.get(payload[0]), cloudpickle.loads)
    except Exception as e:
        return failed(f"the Ray worker could not load the specialist: {type(e).__name__}: {e}")

    def ask(dispatch: int, kind: str, body: Any) -> Reply:
        reply: Reply = ray.get(hub.ask.remote(dispatch, kind, body))
        return reply

    return asyncio.run(run_shipment(shipment, loaded, ask))


class Hub:
    """Where workers ask the foreman and wait for its answer (an async Ray actor).

    A question stays here until it is answered, and `questions` returns those after the last
    one the foreman took: a poll whose result never reached the foreman (its loop ended, its
    await was cancelled) loses nothing, the next poll gets the same questions."""

    def __init__(self) -> None:
        self._pending: dict[int, tuple[int, str, Any]] = {}
        self._arrived = asyncio.Event()
        self._waiting: dict[int, asyncio.Future[Reply]] = {}
        self._ids = itertools.count()

    async def ask(self, dispatch: int, kind: str, body: Any) -> Reply:
        """A worker's question; returns the foreman's answer."""
        qid = next(self._ids)
        answered: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._waiting[qid] = answered
        self._pending[qid] = (dispatch, kind, body)
        # Every poll waiting now wakes: each holds the event it waited on.
        self._arrived.set()
        self._arrived = asyncio.Event()
        try:
            return await answered
        finally:
            self._waiting.pop(qid, None)
            self._pending.pop(qid, None)

    async def questions(self, after: int) -> list[tuple[int, int, str, Any]]:
        """The unanswered questions numbered above `after`, in order, waiting for one."""
        while True:
            batch = [(qid, *asked) for qid, asked in self._pending.items() if qid > after]
            if batch:
                return batch
            await self._arrived.wait()

    async def answer(self, answers: list[tuple[int, Reply]]) -> None:
        """The foreman's answers, by question."""
        for qid, reply in answers:
            self._pending.pop(qid, None)
            waiting = self._waiting.get(qid)
            if waiting is not None and not waiting.done():
                waiting.set_result(reply)
