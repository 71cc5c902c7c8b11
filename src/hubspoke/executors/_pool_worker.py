"""A worker process of `PoolExecutor`: many dispatches at once on its own event loop.

The foreman's process starts it (a fresh interpreter) with one end of a pipe (a socket pair).
Over the pipe go batches of messages, each batch one pickle and one write, so that a thousand
dispatches do not mean a thousand system calls each way:

- from the foreman: ``("run", shipment, pickle)`` (the specialist's pickle only the first time
  this process gets its digest), ``("cancel", dispatch)``, ``("answer", question, reply)``,
  ``("stop",)``;
- to the foreman: ``("ready", pid)``, ``("done", dispatch, returned)`` and
  ``("ask", question, dispatch, kind, body)``, the returned and the body pickled apart inside
  the batch (`_framed`): one that does not load in the foreman fails only its own dispatch.

Each dispatch runs as a task (`_remote.run_shipment`, as on Ray). A question (a model request's
announcement, a side-effecting tool's journaling) must be answered before its asker goes on,
as on one machine: the request or the tool starts only once the foreman's journal holds the
event. An agent's announcement goes with the loop tick's other messages and its model waits
for the answer (`_remote.Asker.cleared`); any other question is written at once and its asker
blocks. A thread reads the pipe, so the answer arrives even when the asker blocks the event
loop (a custom specialist's `before_request` and a tool's journaling are sync); the other
dispatches of the process then wait one round trip.

The process ends when the foreman says so, or when the pipe closes (the foreman died): at once,
from the reader thread, whatever its specialists hold (a blocked thread, a loop that never
yields: `os._exit`), and with it the processes its specialists started in its process group
(its own: the pool starts it so). A process a specialist forks does not keep the pipe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.util
import itertools
import os
import pickle
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from hubspoke.executors._remote import Loaded, Reply, Shipment, failed, run_shipment, unpack
from hubspoke.tools import Reconcile, Tool

__all__ = ["load_specialist", "main", "rebuild_tool"]


def main(fd: int) -> None:
    """The worker process's entry point: `fd` is its end of the pipe to the foreman."""
    conn = Connection(fd)
    # A process a specialist forks must not hold the pipe open: the foreman sees this process
    # die by its end reading EOF, which a copy of the pipe left in a child would hold off.
    os.set_inheritable(fd, False)
    os.register_at_fork(after_in_child=conn.close)
    # A Ctrl-C reaches the foreman's process group (this one has its own, from the foreman):
    # the foreman decides what stops, not its workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_Worker(conn, loop).serve())
    except BaseException:  # this process's own code failed: say why; the foreman sees it die
        traceback.print_exc()
    # Not `asyncio.run`'s end, which waits for every worker thread: a sync specialist cut off
    # by its time-out may block one for ever. The foreman ends what is left of the group.
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(1)


def _end() -> None:
    """End this process now, with the processes its specialists started in its process group
    (a fork that sleeps on, a `multiprocessing` child): the run they belonged to is over."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    if os.getpgrp() == os.getpid():  # the group is this worker's own (the pool starts it so)
        with contextlib.suppress(OSError):
            os.killpg(0, signal.SIGKILL)
    os._exit(0)


def rebuild_tool(
    function: Callable[..., Any], name: str, side_effect: bool, reconcile: Reconcile | None
) -> Tool:
    """A tool made again from its function (its argument schema is a class made at run time,
    which pickles only by what made it)."""
    return Tool.from_function(function, name=name, side_effect=side_effect, reconcile=reconcile)


def load_specialist(pickled: bytes) -> Loaded:
    """A role's specialist, tools and input schema, as the pool pickled them: the workflow
    files they come from (``FILE.py:NAME``, loaded by `hubspoke.loader` under a module name of
    their own) loaded here under the same names first, so that their functions are found."""
    files, inner = pickle.loads(pickled)
    for name, path in files.items():
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load the workflow file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:  # not left half-made: the next dispatch tries again, and says why
            del sys.modules[name]
            raise
    loaded: Loaded = pickle.loads(inner)
    return loaded


class _Worker:
    """The process's side of the pipe: dispatches by number, questions waiting for answers."""

    def __init__(self, conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
        self.conn, self.loop = conn, loop
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.pickles: dict[str, bytes] = {}
        self.waiting: dict[int, concurrent.futures.Future[Reply]] = {}
        self.questions = itertools.count()
        self.out: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()
        """Held while `out` changes or is written: dispatches' threads ask too."""
        self.flushing = False

    async def serve(self) -> None:
        threading.Thread(target=self._read, name="hubspoke-pool-reader", daemon=True).start()
        self._send(("ready", os.getpid()), now=True)
        await self.loop.create_future()  # for ever: the process ends from the reader thread

    # the pipe ------------------------------------------------------------------------------

    def _read(self) -> None:
        """The reader thread: answers go straight to their askers (who may block the loop),
        the rest to the loop, one hand-over per batch."""
        while True:
            try:
                batch: list[tuple[Any, ...]] = pickle.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                batch = [("stop",)]  # the foreman is gone: so is its run
            rest = []
            for message in batch:
                if message[0] == "answer":
                    waiting = self.waiting.pop(message[1], None)
                    if waiting is not None:
                        waiting.set_result(message[2])
                elif message[0] == "stop":
                    # Told to stop, or the foreman is gone: nothing is left to send, and the
                    # loop may be held by a specialist that never yields. End here and now.
                    _end()
                else:
                    rest.append(message)
            if rest:
                self.loop.call_soon_threadsafe(self._take, rest)

    def _send(self, message: tuple[Any, ...], *, now: bool = False) -> None:
        """Queue a message; written at the end of this loop tick, or `now`."""
        with self.lock:
            self.out.append(message)
            if now:
                self._write()
                return
            if self.flushing:
                return
            self.flushing = True
        self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        with self.lock:
            self.flushing = False
            self._write()

    def _write(self) -> None:
        """Write what is queued as one batch (the lock held)."""
        batch, self.out = self.out, []
        if not batch:
            return
        data = pickle.dumps([_framed(m) for m in batch], pickle.HIGHEST_PROTOCOL)
        with contextlib.suppress(OSError):  # the foreman is gone; the reader stops the process
            self.conn.send_bytes(data)

    # dispatches ----------------------------------------------------------------------------

    def _take(self, batch: list[tuple[Any, ...]]) -> None:
        for message in batch:
            kind = message[0]
            if kind == "run":
                shipment: Shipment = message[1]
                if message[2] is not None:
                    self.pickles[shipment.digest] = message[2]
                task = self.loop.create_task(self._run(shipment))
                self.tasks[shipment.dispatch] = task
            elif kind == "cancel":
                running = self.tasks.get(message[1])
                if running is not None:
                    running.cancel()

    async def _run(self, shipment: Shipment) -> None:
        digest = shipment.digest
        try:
            try:
                loaded = unpack(digest, lambda: self.pickles[digest], load_specialist)
            except (Exception, SystemExit, KeyboardInterrupt) as e:  # a file that exits at import
                returned = failed(
                    f"the worker could not load the specialist: {type(e).__name__}: {e}"
                )
            else:
                returned = await run_shipment(shipment, loaded, self._ask, self._ask_later)
        finally:
            self.tasks.pop(shipment.dispatch, None)
        self._send(("done", shipment.dispatch, returned))

    def _ask(self, dispatch: int, kind: str, body: Any) -> Reply:
        """Ask the foreman and wait for its answer (on the loop's thread or a specialist's)."""
        return self._question(dispatch, kind, body, now=True).result()

    def _ask_later(self, dispatch: int, kind: str, body: Any) -> concurrent.futures.Future[Reply]:
        """Ask the foreman with this loop tick's other messages; the answer comes in the
        future (on the loop's thread only)."""
        return self._question(dispatch, kind, body, now=False)

    def _question(
        self, dispatch: int, kind: str, body: Any, *, now: bool
    ) -> concurrent.futures.Future[Reply]:
        question = next(self.questions)
        answered: concurrent.futures.Future[Reply] = concurrent.futures.Future()
        self.waiting[question] = answered
        self._send(("ask", question, dispatch, kind, body), now=now)
        return answered


def _framed(message: tuple[Any, ...]) -> tuple[Any, ...]:
    """`message` with what a specialist made (a result, a tool's journaling) pickled apart, so
    that what does not pickle here, or does not load in the foreman's process, fails its own
    dispatch or question, not the batch it travels in."""
    kind = message[0]
    if kind not in ("done", "ask"):
        return message
    try:
        payload = pickle.dumps(message[-1], pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        if kind == "done":
            payload = pickle.dumps(failed(f"its result does not pickle: {e}"))
        else:
            return ("ask", message[1], message[2], "unpicklable", pickle.dumps(repr(e)))
    return (*message[:-1], payload)
