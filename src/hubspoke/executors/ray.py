"""The Ray executor: specialists run as Ray tasks on a Ray cluster (the ``ray`` extra).

``Foreman(workflow, store, executor=RayExecutor(address="auto"))`` or
``hubspoke run --executor ray[:ADDRESS]``. See "Ray" in docs/scale.md.

The foreman stays the only decider and the only journal writer. It reserves the dispatch's
budget, builds its context and journals ``dispatch.started`` as with any executor; then one Ray
task runs the specialist in a worker process, with a copy of the context (the same limits,
tools and keys). Whatever the foreman journals *during* a dispatch comes back to it and the
worker waits for its answer before going on: a model request's ``model.requested``
(`Context.before_request`, durable before the request leaves) and a side-effecting tool's
``tool.started``/``tool.finished`` (and the lookup of a recorded call). They go through a hub, one
async actor per connection, which the foreman polls in batches (`_ray_worker.Hub`). The trace
and the usage come back with the outcome, and the foreman journals them as after a local
dispatch.

Why tasks, not actors: a task is one dispatch in one worker process, so a time-out can kill it
(`ray.cancel(force=True)`, which stops sync code too) and a worker that dies takes one dispatch
with it, never its neighbours'; Ray reuses worker processes across tasks, and each keeps the
specialists it has unpickled. The price is one worker process per dispatch in flight: each task
asks for `num_cpus` (1 by default; give ``num_cpus=0.25`` for agents that mostly wait on a
model, so that four run per core).

Failures: Ray's own retries are off (``max_retries=0``, no retried exceptions), so the foreman
decides. A worker that dies mid-dispatch (`WorkerCrashedError`), a task Ray cannot run, or
anything else Ray raises is a ``failed`` outcome, which goes down the failure ladder; a
dispatch that has not returned within its time-out is cancelled with force and ``timed_out``.
Such a dispatch's tally died with it: it is charged what it had reported before its last model
request plus that request's worst case, as a resume charges a dispatch a crash cut short.

What the workers need: the specialists are sent pickled (Ray's cloudpickle), once per
connection. A workflow loaded from a file (``FILE.py:NAME``) is sent by value, its functions,
schemas and tools with it; everything else is sent by reference and must be importable on every
worker: hubspoke itself, a ``module:NAME`` workflow's module and what any of them import (the
same environment on every node, or ``runtime_env={"working_dir": ...}`` or
``{"py_modules": [...]}``). An agent on a provider's model travels without its client and the
foreman's environment: the worker builds the model from its binding (`ModelRecipe`) with the API
keys of its own environment. Nothing is downloaded at run time: a `runtime_env` that installs
packages (``pip``, ``conda``, ``uv``, containers) is refused, and Ray's usage statistics are
off. What cannot run in a worker is refused when the foreman is built (`ExecutorError`): a role
whose tools come from an MCP server (its session lives in the foreman's process), or a
specialist that cannot be pickled. A sub-workflow's role (`Workflow.as_role`) runs its child
foreman in the foreman's process, whose own specialists run on Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import itertools
import os
import socket
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hubspoke.errors import ExecutorError
from hubspoke.executors._remote import FILE_MODULES, Open, Packs, Relay, Shipment
from hubspoke.executors.local import LocalExecutor
from hubspoke.outcomes import Outcome, OutcomeKind
from hubspoke.roles import Role
from hubspoke.specialists.base import Specialist
from hubspoke.specialists.context import Context
from hubspoke.tools import Tool
from hubspoke.work import WorkItem

if TYPE_CHECKING:
    from hubspoke.executors._remote import Returned

__all__ = ["RayExecutor"]

_INSTALL = "pip install 'hubspoke[ray]'"
_DOWNLOADS = frozenset({"pip", "conda", "uv", "container", "image_uri"})
"""`runtime_env` keys that make Ray download or build at run time."""


def _ray() -> Any:
    """The `ray` module, or `ExecutorError` naming the extra."""
    # Ray reports usage statistics to its makers unless told not to: a run contacts nothing.
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        import ray
    except ImportError:
        raise ExecutorError(f"RayExecutor needs Ray, which is not installed: {_INSTALL}") from None
    return ray


class RayExecutor:
    """Runs each dispatch as a Ray task on a Ray cluster.

    Args:
        address: the cluster. ``None``: Ray's default (the cluster ``RAY_ADDRESS`` names, else a
            local one started in this process for its life); ``"auto"``: the cluster started on
            this machine with ``ray start --head``; ``"HOST:PORT"``: that cluster's head (its
            GCS port, 6379 by default); ``"ray://HOST:10001"``: through the Ray Client (needs
            ``ray[client]``). If Ray is already initialised in this process, that connection is
            used whatever `address` says.
        num_cpus: the CPUs each dispatch's task asks for (fractions allowed: ``0.25`` runs four
            dispatches per core).
        runtime_env: Ray's runtime environment for the workers (``working_dir``,
            ``py_modules``, ``env_vars``); nothing that installs packages.

    Raises:
        ExecutorError: Ray is not installed (``pip install 'hubspoke[ray]'``), `address` is not
            one of the forms above, or `runtime_env` would download something.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        num_cpus: float = 1.0,
        runtime_env: Mapping[str, Any] | None = None,
    ) -> None:
        _ray()
        if address is not None:
            _check_address(address)
        if not num_cpus >= 0:
            raise ExecutorError(f"RayExecutor(num_cpus=...) must be >= 0, got {num_cpus!r}")
        env = dict(runtime_env or {})
        downloads = sorted(_DOWNLOADS & set(env))
        if downloads:
            raise ExecutorError(
                f"RayExecutor(runtime_env=...) must not install anything at run time, but it "
                f"sets {', '.join(downloads)}: install the packages on every node instead"
            )
        self.address = address
        self.num_cpus = num_cpus
        self.runtime_env = env
        self._local = LocalExecutor()
        self._packs = Packs(
            _cloudpickled,
            "a Ray worker",
            "keep what it holds picklable (no open clients, locks or files)",
        )
        self._refs: dict[str, Any] = {}
        self._remote: Any = None
        self._hub: Any = None
        self._started = False
        self._relay = Relay()
        self._ids = itertools.count()
        self._pump: asyncio.Task[None] | None = None
        self._polling: Any = None
        self._taken = -1
        """The number of the last question answered: a poll asks for those after it."""

    # before a run -------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect to the cluster (start a local one for `address=None` without one) and start
        the hub. Idempotent; the first dispatch calls it if nobody did (its time-out then
        counts the connection too). A bad address fails here, before anything runs.

        Raises:
            ExecutorError: nothing answers at the address, or Ray refused to connect.
        """
        if self._hub is not None:
            return
        ray = _ray()
        address = self.address
        if address is not None and address != "auto" and not address.startswith("ray://"):
            _probe(address)  # even when Ray is up in this process: a wrong address is an error
        if not ray.is_initialized():
            self._init(ray)
        from hubspoke.executors._ray_worker import Hub, run_dispatch

        self._hub = ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)(Hub).remote()
        self._remote = ray.remote(run_dispatch).options(
            num_cpus=self.num_cpus, max_retries=0, retry_exceptions=False
        )

    def _init(self, ray: Any) -> None:
        address = self.address
        kwargs: dict[str, Any] = {"log_to_driver": False}
        if self.runtime_env:
            kwargs["runtime_env"] = self.runtime_env
        if address is None:
            kwargs["include_dashboard"] = False
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as e:
            hint = ""
            if address == "auto":
                hint = "; start one with `ray start --head`, or give its HOST:PORT"
            elif address is not None and address.startswith("ray://"):
                hint = "; the Ray Client needs pip install 'ray[client]', or give HOST:PORT"
            where = "a local Ray cluster" if address is None else f"the Ray cluster at {address}"
            raise ExecutorError(f"cannot connect to {where}: {e}{hint}") from None
        self._started = address is None

    def close(self) -> None:
        """Disconnect; a local cluster this executor started stops."""
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        self._hub = self._remote = None
        self._taken = -1
        self._refs.clear()
        if self._started:
            _ray().shutdown()
            self._started = False

    def prepare(self, specialists: Mapping[str, Specialist], roles: Mapping[str, Role]) -> None:
        """Check that every role's specialist can run in a Ray worker, and pickle it (with its
        tools and input schema) once. The foreman calls it when it is built.

        Raises:
            ExecutorError: a role's tools come from an MCP server, or its specialist cannot
                be pickled; the message names the role.
        """
        self._packs.prepare(specialists, roles)

    # a dispatch -------------------------------------------------------------------------------

    async def execute(
        self, specialist: Specialist, item: WorkItem, ctx: Context, timeout: float | None
    ) -> Outcome:
        """Run `specialist.dispatch(item, ctx)` as a Ray task; `timeout` in seconds.

        Returns the specialist's outcome, its trace appended to `ctx` and its usage added to
        `ctx`'s allowance; `timed_out` (the task cancelled with force) past `timeout`;
        `failed` if the specialist raised, its worker died or Ray could not run it. A specialist
        marked ``in_process`` (a sub-foreman) runs in this process (`LocalExecutor`). Closes
        `ctx`.

        Raises:
            asyncio.CancelledError: this call was cancelled (and the task with it).
        """
        if getattr(specialist, "in_process", False):
            return await self._local.execute(specialist, item, ctx, timeout)
        try:
            return await self._execute(specialist, item, ctx, timeout)
        finally:
            ctx.close()

    async def _execute(
        self, specialist: Specialist, item: WorkItem, ctx: Context, timeout: float | None
    ) -> Outcome:
        ray = _ray()
        self.connect()
        tools: Mapping[str, Tool] = ctx._live.tools
        packed = self._packs.pack(item.role, specialist, tools, type(item.input))
        ref = self._refs.get(packed.digest)
        if ref is None:
            ref = self._refs[packed.digest] = ray.put(packed.pickled)
        dispatch = next(self._ids)
        shipment = Shipment.of(packed.digest, dispatch, item, ctx)
        opened = self._relay.open
        state = opened[dispatch] = Open(ctx)
        self._serve()
        task = self._remote.remote(shipment, [ref], self._hub)
        try:
            waiting = asyncio.wrap_future(task.future())
            returned: Returned = await asyncio.wait_for(waiting, timeout)
        except TimeoutError:
            ray.cancel(task, force=True)
            Relay.charge_lost(state)
            return Outcome(OutcomeKind.TIMED_OUT, message=f"no result within {timeout:g}s")
        except asyncio.CancelledError:
            ray.cancel(task, force=True)
            raise
        except Exception as e:
            Relay.charge_lost(state)
            return Outcome(OutcomeKind.FAILED, message=_failure(e))
        finally:
            del opened[dispatch]
            if not opened and self._pump is not None:
                self._stop_serving()
        return Relay.settle(ctx, returned)

    # the hub ---------------------------------------------------------------------------------

    def _serve(self) -> None:
        """Answer the workers' questions while dispatches are in flight (one task per loop)."""
        pump = self._pump
        loop = asyncio.get_running_loop()
        if pump is None or pump.done() or pump.get_loop() is not loop:
            self._pump = loop.create_task(self._answer_questions())

    def _stop_serving(self) -> None:
        assert self._pump is not None
        self._pump.cancel()
        self._pump = None
        if self._polling is not None:
            # A question it took and never delivered stays in the hub for the next poll.
            with contextlib.suppress(Exception):
                _ray().cancel(self._polling)
            self._polling = None

    async def _answer_questions(self) -> None:
        hub = self._hub
        while True:
            self._polling = hub.questions.remote(self._taken)
            try:
                batch = await asyncio.wrap_future(self._polling.future())
            except Exception:
                # The hub died (its node went away): the workers that ask it fail their
                # dispatches; the next dispatch starts a new hub.
                if self._hub is hub:
                    self._hub, self._taken = None, -1
                return
            self._polling = None
            answers = []
            for qid, dispatch, kind, body in batch:
                answers.append((qid, self._relay.answer(dispatch, kind, body)))
                self._taken = max(self._taken, qid)
            hub.answer.remote(answers)


def _cloudpickled(value: object) -> bytes:
    """`value` pickled with Ray's cloudpickle, a workflow loaded from a file by value."""
    cloudpickle: Any = importlib.import_module("ray.cloudpickle")
    for module_name, module in list(sys.modules.items()):
        if module_name.startswith(FILE_MODULES) and module is not None:
            with contextlib.suppress(ValueError):  # registered already
                cloudpickle.register_pickle_by_value(module)
    pickled: bytes = cloudpickle.dumps(value)
    return pickled


def _failure(e: Exception) -> str:
    """What went wrong with a task, in one line."""
    from ray import exceptions

    first = (str(e).strip().splitlines() or [""])[0][:300]
    if isinstance(e, exceptions.WorkerCrashedError):
        return "the Ray worker running the dispatch died (killed, or out of memory)"
    if isinstance(e, exceptions.TaskCancelledError):
        return "the Ray task was cancelled"
    if isinstance(e, exceptions.RayTaskError):
        cause = e.cause if isinstance(e.cause, BaseException) else None
        if cause is not None:
            return f"the Ray task raised {type(cause).__name__}: {cause}"[:400]
    return f"Ray could not run the dispatch: {type(e).__name__}: {first}"


def _check_address(address: str) -> None:
    if address == "auto" or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ExecutorError(
            f"RayExecutor address {address!r} is not a Ray cluster's address: give HOST:PORT "
            "(the head's GCS port, 6379 by default), 'auto' (the cluster `ray start --head` "
            "started on this machine), ray://HOST:PORT, or nothing for a local cluster"
        )


def _probe(address: str) -> None:
    """Fail at once if nothing listens at ``HOST:PORT`` (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=3):
            pass
    except OSError as e:
        raise ExecutorError(
            f"no Ray cluster answers at {address} ({e.strerror or e}); start one with "
            f"`ray start --head --port={port}`, or check the address"
        ) from None
