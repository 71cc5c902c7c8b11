"""The worker pool: dispatches drained from a queue by worker processes on this machine.

``Foreman(workflow, store, executor=PoolExecutor(workers=4))`` or
``hubspoke run --executor pool[:N]``. See "Worker pool" in docs/scale.md.

The foreman stays the only decider and the only journal writer: it reserves the dispatch's
budget, builds its context and journals ``dispatch.started`` as with any executor, then queues
the dispatch. Each of the `workers` processes (a fresh interpreter started with this process's
import path, never a fork of a process with threads) runs up to `concurrency` dispatches at
once on its own event loop; a dispatch waits in the queue while every process is full, and goes
to the one with the fewest in flight. In the worker it runs as on Ray (`_remote.run_shipment`):
a copy of its context, whose model requests and side-effecting tool calls are asked of the
foreman and journaled before they go on; the trace, the usage and the outcome come back and are
journaled as after a local dispatch. Messages go over the pipes in batches: one pickle and one
write per process and event-loop tick each way, not one per dispatch.

Time is the foreman's, as with `LocalExecutor` (which times every dispatch here): past its
time-out (counted from when it was queued) a dispatch is `timed_out` and its task in the
worker cancelled, whatever the worker does; a sync specialist's thread runs on there, as it
would in the foreman's process. A worker process that dies (killed, out of memory, a crash in
native code) fails every dispatch it had in flight (`failed`, down the failure ladder: never a
lost item), and the pool starts another in its place.

The processes start when a run starts (`start`, which the foreman calls) and stop when it ends
(`stop`); calls nest, so a sub-workflow's run shares its parent's processes. What cannot run in
a worker is refused when the foreman is built (`ExecutorError`): a role whose tools an MCP server
serves, and a specialist that the standard library's pickle cannot send: it pickles functions
and classes by reference, so they must be importable (defined at a module's top level, or in the
workflow file the CLI loaded, which each worker loads too). A sub-workflow's role runs its child
foreman in the foreman's process; the child's specialists run in the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
import types
from collections import deque
from collections.abc import Mapping
from typing import Any

from hubspoke.errors import ExecutorError
from hubspoke.executors._pool_worker import rebuild_tool
from hubspoke.executors._remote import (
    FILE_MODULES,
    Open,
    Packed,
    Packs,
    Relay,
    Reply,
    Returned,
    Shipment,
)
from hubspoke.executors.local import LocalExecutor
from hubspoke.journal.writer import held_checkpoints
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.roles import Role
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context
from hubspoke.tools import Tool
from hubspoke.work import WorkItem

__all__ = ["PoolExecutor"]

_BOOT = (
    "import json, sys; fd = int(sys.argv[1]); sys.path[:] = json.loads(sys.argv[2]); "
    "sys.argv[:] = json.loads(sys.argv[3]); "
    "from hubspoke.executors._pool_worker import main; main(fd)"
)
"""A worker process's start: this interpreter, the pipe's end, this process's import path and
command line (a workflow file the worker loads reads what it would read in the foreman).
Not `multiprocessing`'s ``spawn``, which runs the caller's ``__main__`` again in every worker
(a script without an ``if __name__ == "__main__":`` guard would start itself again)."""
_MAX_PER_CPU = 8
"""The most worker processes per CPU a pool may have: more only costs memory and start-up."""
_STOP_SECONDS = 5.0
"""How long a worker has to end after it is told to stop before it is killed."""


class PoolExecutor:
    """Runs dispatches in a pool of worker processes on this machine.

    Args:
        workers: how many processes; `None` for one per CPU (`os.cpu_count`).
        concurrency: how many dispatches each process runs at once (agents mostly wait on their
            model, so a process overlaps many); more wait in the queue.
        start_timeout: seconds the processes have to start (import hubspoke and your code)
            before `start` gives up.

    Raises:
        ExecutorError: `workers`, `concurrency` or `start_timeout` is not a positive number,
            `workers` is more than 8 per CPU, or this is not a POSIX system.
    """

    def __init__(
        self, workers: int | None = None, *, concurrency: int = 1_000, start_timeout: float = 60.0
    ) -> None:
        for name, value in (("workers", workers), ("concurrency", concurrency)):
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise ExecutorError(
                    f"PoolExecutor({name}=...) must be a whole number >= 1, got {value!r}"
                )
        if os.name != "posix":
            raise ExecutorError(
                "PoolExecutor needs a POSIX system (Linux, macOS): its workers are handed "
                "their end of a socket pair by descriptor; use the local executor or Ray here"
            )
        if not start_timeout > 0:
            raise ExecutorError(
                f"PoolExecutor(start_timeout=...) must be > 0, got {start_timeout!r}"
            )
        cpus = os.cpu_count() or 1
        if workers is not None and workers > _MAX_PER_CPU * cpus:
            raise ExecutorError(
                f"PoolExecutor(workers={workers}) asks for more processes than this machine can "
                f"start: at most {_MAX_PER_CPU} worker processes per CPU, at most "
                f"{_MAX_PER_CPU * cpus} here ({cpus} CPUs). Each is an interpreter of its own "
                "(tens of MB, a fraction of a second of CPU to start); for dispatches that wait, "
                "raise concurrency= instead (each process runs 1,000 at once by default)"
            )
        self.workers: int = workers or cpus
        self.concurrency = concurrency
        self.start_timeout = start_timeout
        self._local = LocalExecutor()
        self._packs = Packs(
            _pickled,
            "a worker process",
            "define its function, tools and schemas at a module's top level (the pool pickles "
            "them by reference) and keep what it holds picklable (no open clients or locks)",
        )
        self._relay = Relay()
        self._ids = itertools.count()
        self._processes: list[_Process] = []
        self._queue: deque[asyncio.Future[_Process]] = deque()
        """Dispatches waiting for a free place in a process, in order."""
        self._users = 0
        """Runs under way (`start` minus `stop`): the processes live while there is one."""
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers running now (empty when the pool is stopped)."""
        return [p.pid for p in self._processes if not p.dead]

    # a run's start and end -----------------------------------------------------------------

    async def start(self) -> None:
        """Start the processes, and wait until each is ready, unless a run already did (the
        foreman calls it when a run starts; calls nest with `stop`).

        Raises:
            ExecutorError: a process did not start within `start_timeout` seconds, or died
                starting (it could not import what it needs).
        """
        self._users += 1
        if self._processes:
            return
        try:
            self._loop = asyncio.get_running_loop()
            started = [self._spawn() for _ in range(self.workers)]
            try:
                async with asyncio.timeout(self.start_timeout):
                    await asyncio.gather(*(p.ready for p in started))
            except TimeoutError:
                raise ExecutorError(
                    f"the worker pool's processes did not start within {self.start_timeout:g}s"
                ) from None
        except BaseException:
            self._users -= 1
            self.close()
            raise

    async def stop(self) -> None:
        """Stop the processes once the last run that started them has ended."""
        self._users = max(0, self._users - 1)
        if self._users == 0:
            self.close()

    def close(self) -> None:
        """Stop every process now: told to stop, killed if it has not after a few seconds.
        Dispatches still in flight fail; the pool starts again on the next run."""
        processes, self._processes = self._processes, []
        for p in processes:
            p.finish(_STOP_SECONDS)
        for p in processes:
            _reap(p.process, _STOP_SECONDS)
            self._lost(p, "the worker pool stopped")
        self._users = 0

    # before a run --------------------------------------------------------------------------

    def prepare(self, specialists: Mapping[str, Specialist], roles: Mapping[str, Role]) -> None:
        """Refuse, when the foreman is built, what a worker process cannot run, and pickle
        the rest once (`_remote.Packs.prepare`, with the standard library's pickle).

        Raises:
            ExecutorError: naming the role: its tools are an MCP server's, or its specialist
                does not pickle (a function or class that is not importable by its name).
        """
        self._packs.prepare(specialists, roles)

    # a dispatch ----------------------------------------------------------------------------

    async def execute(
        self, specialist: Specialist, item: WorkItem, ctx: Context, timeout: float | None
    ) -> Outcome:
        """Run `specialist.dispatch(item, ctx)` in a worker process; `timeout` in seconds,
        counted from now (time in the queue included).

        Returns the specialist's outcome, its trace appended to `ctx` and its usage added to
        `ctx`'s allowance; `timed_out` past `timeout` (the task in the worker cancelled);
        `failed` if the specialist raised or its process died. A specialist marked
        ``in_process`` (a sub-foreman) runs in this process. Closes `ctx`.

        Raises:
            asyncio.CancelledError: this call was cancelled (and the dispatch with it).
        """
        if getattr(specialist, "in_process", False):
            return await self._local.execute(specialist, item, ctx, timeout)
        return await self._local.execute(_Queued(self, specialist), item, ctx, timeout)

    async def _dispatch(self, specialist: Specialist, item: WorkItem, ctx: Context) -> Outcome:
        """The dispatch's way through the queue and a worker (timed by `LocalExecutor`)."""
        if not self._processes or self._loop is not asyncio.get_running_loop():
            await self._restart()  # used without a run's `start` (or on another loop)
        tools: Mapping[str, Tool] = ctx._live.tools
        packed = self._packs.pack(item.role, specialist, tools, type(item.input))
        dispatch = next(self._ids)
        opened = self._relay.open
        state = opened[dispatch] = Open(ctx)
        process: _Process | None = None
        try:
            process = await self._place()
            returned = await process.run(Shipment.of(packed.digest, dispatch, item, ctx), packed)
        except asyncio.CancelledError:  # timed out, or the run was cancelled
            if process is not None:
                process.cancel(dispatch)
            Relay.charge_lost(state)
            raise
        finally:
            del opened[dispatch]
            if process is not None:
                self._release(process)
        if isinstance(returned, str):
            Relay.charge_lost(state)
            return Outcome(OutcomeKind.FAILED, message=returned)
        return Relay.settle(ctx, returned)

    async def _restart(self) -> None:
        if self._processes:
            self.close()
        await self.start()
        self._users -= 1  # nobody will call `stop`: `close` ends these processes

    async def _place(self) -> _Process:
        """A process with room for one more dispatch, waiting in the queue for one if need be."""
        if not self._queue:
            best = self._least_loaded()
            if best is not None:
                best.load += 1
                return best
        waiter: asyncio.Future[_Process] = asyncio.get_running_loop().create_future()
        self._queue.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(waiter.result())  # given a place just as it was cancelled
            else:
                with contextlib.suppress(ValueError):
                    self._queue.remove(waiter)
            raise

    def _least_loaded(self) -> _Process | None:
        best = None
        for p in self._processes:
            if p.live and p.load < self.concurrency and (best is None or p.load < best.load):
                best = p
        return best

    def _release(self, process: _Process) -> None:
        """A dispatch left `process`: its place goes to the first one waiting."""
        process.load -= 1
        self._hand_out()

    def _hand_out(self) -> None:
        queue = self._queue
        while queue:
            best = self._least_loaded()
            if best is None:
                if all(p.dead for p in self._processes):
                    self._fail_queue()
                return
            waiter = queue.popleft()
            if not waiter.done():
                best.load += 1
                waiter.set_result(best)

    def _fail_queue(self) -> None:
        """No process is left that could take the dispatches waiting (replacements that died
        starting): they fail rather than wait for ever."""
        while self._queue:
            waiter = self._queue.popleft()
            if not waiter.done():
                waiter.set_exception(ExecutorError("no worker process is left: they died starting"))

    # the processes -------------------------------------------------------------------------

    def _spawn(self) -> _Process:
        loop = self._loop
        assert loop is not None
        mine, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _BOOT,
                    str(theirs.fileno()),
                    json.dumps(sys.path),
                    json.dumps(sys.argv),
                ],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                process_group=0,  # its own: what its specialists start ends with it (`_reap`)
            )
        except OSError as e:
            mine.close()
            raise ExecutorError(f"cannot start a worker process of the pool: {e}") from None
        finally:
            theirs.close()  # theirs only: when the worker dies, this end reads EOF
        p = _Process(process, mine, loop)
        loop.add_reader(mine.fileno(), self._readable, p)
        self._processes.append(p)
        return p

    def _readable(self, p: _Process) -> None:
        """What a worker sent has arrived (as much as is there: the loop never waits for the
        rest); each whole batch taken in turn. At EOF the process died."""
        batches, ended = p.receive()
        for data in batches:
            if p.dead:
                return
            try:
                batch: list[tuple[Any, ...]] = pickle.loads(data)
            except Exception:  # it sent what this side cannot read: it goes
                self._died(p)
                return
            self._take(p, batch)
        if ended and not p.dead:
            self._died(p)

    def _take(self, p: _Process, batch: list[tuple[Any, ...]]) -> None:
        """A batch from a worker: results, questions (answered in one batch back), readiness."""
        answers: list[tuple[Any, ...]] = []
        # What the batch's questions journal (each model request's announcement, forced to
        # disk before its answer) is written in one transaction at the block's end, before
        # any answer goes back: durable before the request leaves, one write per batch.
        with held_checkpoints() as held:
            for message in batch:
                kind = message[0]
                if kind == "done":
                    waiting = p.inflight.pop(message[1], None)
                    if waiting is not None and not waiting.done():
                        waiting.set_result(_loaded(message[2], "result"))
                elif kind == "ask":
                    _, question, dispatch, asked, body = message
                    answers.append(("answer", question, self._answer(dispatch, asked, body)))
                elif kind == "ready":
                    p.pid = message[1]
                    if not p.ready.done():
                        p.ready.set_result(None)
                    self._hand_out()
        if held.error is not None:  # not written: no request may leave, no tool go on
            refused = ("JournalWriteError", str(held.error))
            answers = [(kind, question, refused) for kind, question, _ in answers]
        if answers:
            p.send_all(answers)

    def _answer(self, dispatch: int, asked: str, body: bytes) -> Reply:
        """The answer to a worker's question, its body as the worker pickled it (`_framed`)."""
        value = _loaded(body, "question")
        if isinstance(value, str):
            return ("HubspokeError", value)
        if asked == "unpicklable":
            return ("HubspokeError", f"what it asked to journal does not pickle: {value[1]}")
        return self._relay.answer(dispatch, asked, value[1])

    def _died(self, p: _Process) -> None:
        """A worker process ended without being told to: its dispatches fail, and another
        takes its place (unless it died starting: then whatever stops it would stop that one)."""
        _reap(p.process, 1.0)  # it sent what this side cannot read, if it runs: it goes too
        code = p.process.returncode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        starting = not p.ready.done()
        if starting:
            p.ready.set_exception(
                ExecutorError(f"a worker process of the pool died starting ({how})")
            )
            p.ready.exception()  # `start` reads it, if it waits; a replacement's nobody does
        self._lost(p, f"the worker process running the dispatch died (pid {p.pid}, {how})")
        with contextlib.suppress(ValueError):
            self._processes.remove(p)
        if not starting:
            self._spawn()
        self._hand_out()

    def _lost(self, p: _Process, reason: str) -> None:
        """Close `p`'s end and fail its dispatches with `reason`."""
        if p.dead:
            return
        p.dead = True
        with contextlib.suppress(Exception):
            p.loop.remove_reader(p.sock.fileno())
            if p.writing:
                p.loop.remove_writer(p.sock.fileno())
        p.sock.close()
        p.pending.clear()
        for waiting in p.inflight.values():
            if not waiting.done():
                waiting.set_result(reason)
        p.inflight.clear()
        if not p.ready.done():
            p.ready.cancel()


def _reap(process: subprocess.Popen[bytes], seconds: float) -> None:
    """Wait up to `seconds` for a worker to end (killed past them), then end what is left of
    its process group (what its specialists started, and that a killed worker could not end
    itself), then collect it. The group is ended before the worker is collected, so its id
    (the worker's pid) cannot have been reused by then."""
    pid = process.pid
    deadline = time.monotonic() + seconds
    while process.returncode is None:
        try:
            ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # collected already
            break
        if ended is not None:
            break
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            deadline = float("inf")
        time.sleep(0.005)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    process.wait()


def _loaded(payload: bytes, what: str) -> Any:
    """A result (a `Returned`) or a question's body (as ``("ok", body)``) a worker pickled
    apart; why it could not be read (a str), if it does not load here."""
    try:
        value = pickle.loads(payload)
    except Exception as e:
        return (
            f"the worker's {what} could not be read in the foreman's process "
            f"({type(e).__name__}: {e}); send back plain data (what pickles by the names this "
            "process imports)"
        )
    return value if what == "result" else ("ok", value)


class _Queued:
    """What `LocalExecutor` times: the dispatch's way through the pool."""

    __slots__ = ("pool", "specialist")

    def __init__(self, pool: PoolExecutor, specialist: Specialist) -> None:
        self.pool, self.specialist = pool, specialist

    async def dispatch(self, item: WorkItem, ctx: Context) -> Outcome:
        return await self.pool._dispatch(self.specialist, item, ctx)


class _Process:
    """The foreman's side of one worker process: its pipe, what it has in flight, and the
    messages for it queued until the end of the loop tick.

    The pipe never blocks this side: a worker whose process reads nothing for a while (C code
    that keeps the GIL, a machine out of CPU) must not hold up the foreman's loop, whose clock
    times every dispatch. What does not fit waits in `pending` and is written when the pipe
    has room; what arrives is taken whole batch by whole batch, as `multiprocessing`'s
    `Connection` frames them (the worker's side is one)."""

    __slots__ = (
        "dead",
        "digests",
        "flushing",
        "inbox",
        "inflight",
        "load",
        "loop",
        "out",
        "pending",
        "pid",
        "process",
        "ready",
        "sock",
        "writing",
    )

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.process, self.sock, self.loop = process, sock, loop
        sock.setblocking(False)
        self.inbox = bytearray()
        """What has arrived of batches not yet whole."""
        self.pending: deque[memoryview] = deque()
        """What is framed for the worker and not yet written."""
        self.writing = False
        """Whether the loop watches the pipe for room (`pending` is not empty)."""
        self.pid: int = process.pid
        self.ready: asyncio.Future[None] = loop.create_future()
        self.inflight: dict[int, asyncio.Future[Returned | str]] = {}
        """The dispatches it runs, by number: a `Returned`, or why it never came."""
        self.digests: set[str] = set()
        """The specialists it has been sent."""
        self.load = 0
        """Dispatches placed on it (sent or about to be)."""
        self.out: list[tuple[Any, ...]] = []
        self.flushing = False
        self.dead = False

    @property
    def live(self) -> bool:
        return not self.dead and self.ready.done() and not self.ready.cancelled()

    async def run(self, shipment: Shipment, packed: Packed) -> Returned | str:
        """Send the dispatch; its `Returned`, or why it never came back."""
        if self.dead:
            return "the worker process running the dispatch died before it started"
        pickled = None
        if shipment.digest not in self.digests:
            self.digests.add(shipment.digest)
            pickled = packed.pickled
        returned: asyncio.Future[Returned | str] = self.loop.create_future()
        self.inflight[shipment.dispatch] = returned
        self.send(("run", shipment, pickled))
        return await returned

    def cancel(self, dispatch: int) -> None:
        if self.inflight.pop(dispatch, None) is not None and not self.dead:
            self.send(("cancel", dispatch))

    def send(self, message: tuple[Any, ...], *, now: bool = False) -> None:
        """Queue a message for the process; written at the end of this loop tick, or `now`."""
        self.out.append(message)
        if now:
            self._flush()
        elif not self.flushing:
            self.flushing = True
            self.loop.call_soon(self._flush)

    def send_all(self, messages: list[tuple[Any, ...]]) -> None:
        """Write `messages` (answers a worker waits for) with what is queued, now."""
        self.out.extend(messages)
        self._flush()

    def _flush(self) -> None:
        self.flushing = False
        batch, self.out = self.out, []
        if not batch or self.dead:
            return
        self.pending.extend(_framed(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL)))
        if not self.writing:
            self._drain()

    def _drain(self) -> None:
        """Write what is pending as far as the pipe takes it now; the rest once it has room."""
        pending = self.pending
        try:
            while pending:
                view = pending[0]
                sent = self.sock.send(view)
                if sent < len(view):
                    pending[0] = view[sent:]
                    break
                pending.popleft()
        except BlockingIOError:
            pass
        except OSError:  # it died: its end's EOF fails what it had
            pending.clear()
        if pending and not self.writing:
            self.writing = True
            self.loop.add_writer(self.sock.fileno(), self._drain)
        elif not pending and self.writing:
            self.writing = False
            self.loop.remove_writer(self.sock.fileno())

    def finish(self, seconds: float) -> None:
        """Write what is pending and ``("stop",)`` after it, waiting up to `seconds` for the
        pipe to take them (a worker that reads nothing is killed after: `_reap`)."""
        if self.dead:
            return
        self.out.append(("stop",))
        self._flush()
        if not self.pending:
            return
        if self.writing:
            self.writing = False
            self.loop.remove_writer(self.sock.fileno())
        with contextlib.suppress(OSError):  # timed out, or it died
            self.sock.settimeout(seconds)
            for view in self.pending:
                self.sock.sendall(view)
        self.pending.clear()

    def receive(self) -> tuple[list[bytes], bool]:
        """The whole batches that have arrived (what has of the next is kept), and whether the
        pipe reached its end (the process died)."""
        inbox, ended = self.inbox, False
        try:
            while True:
                chunk = self.sock.recv(_READ)
                if not chunk:
                    ended = True
                    break
                inbox += chunk
                if len(chunk) < _READ:
                    break
        except BlockingIOError:
            pass
        except OSError:
            ended = True
        batches = []
        while len(inbox) >= 4:
            (size,) = _SIZE.unpack_from(inbox)
            start = 4
            if size == -1:  # `Connection`'s frame of a batch of 2 GiB or more
                if len(inbox) < 12:
                    break
                (size,) = _LONG_SIZE.unpack_from(inbox, 4)
                start = 12
            if len(inbox) < start + size:
                break
            batches.append(bytes(inbox[start : start + size]))
            del inbox[: start + size]
        return batches, ended


_SIZE = struct.Struct("!i")
_LONG_SIZE = struct.Struct("!Q")
_READ = 1 << 18
"""The most read from a pipe in one call."""


def _framed(data: bytes) -> tuple[memoryview, memoryview]:
    """`data` with the header `multiprocessing.connection.Connection.recv_bytes` reads."""
    size = len(data)
    long = size > 0x7FFFFFFF  # then a -1 and the size in 8 bytes
    header = _SIZE.pack(-1) + _LONG_SIZE.pack(size) if long else _SIZE.pack(size)
    return memoryview(header), memoryview(data)


class _Pickler(pickle.Pickler):
    """The standard library's pickler, with a role's tools made again from their functions in
    the worker (their argument schemas are classes made at run time, not importable)."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is Tool and not obj.listed_per_run:
            return rebuild_tool, (obj.function, obj.name, obj.side_effect, obj.reconcile)
        if isinstance(obj, (type, types.FunctionType)):
            _check_findable(obj)
        return NotImplemented


def _check_findable(obj: type | types.FunctionType) -> None:
    """Refuse a function or class that a worker could not find by its name: pickle sends it by
    reference, and a worker runs neither the script being run (``__main__``) nor what made a
    module at run time.

    Raises:
        pickle.PicklingError: it is one; the message says where to put it instead.
    """
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or module.startswith(FILE_MODULES):
        return
    made = sys.modules.get(module)
    if module in ("__main__", "__mp_main__"):
        where = "the script being run (__main__), which a worker process does not run"
    elif made is not None and getattr(made, "__spec__", None) is None:
        where = f"module {module!r}, made at run time, which a worker process cannot import"
    else:
        return
    raise pickle.PicklingError(
        f"{obj.__qualname__} is defined in {where}: move it into a module that the script "
        "imports, or load the workflow from its file with hubspoke.loader.load_workflow("
        "'FILE.py:NAME') (as `hubspoke run FILE.py:NAME` does), which each worker loads too"
    )


def _pickled(value: object) -> bytes:
    """`value` pickled for a worker (`_pool_worker.load_specialist`): with the workflow files
    loaded in this process (``FILE.py:NAME``), which the worker loads first."""
    buffer = io.BytesIO()
    _Pickler(buffer, pickle.HIGHEST_PROTOCOL).dump(value)
    files = {
        name: module.__file__
        for name, module in list(sys.modules.items())
        if name.startswith(FILE_MODULES) and getattr(module, "__file__", None)
    }
    return pickle.dumps((files, buffer.getvalue()), pickle.HIGHEST_PROTOCOL)
