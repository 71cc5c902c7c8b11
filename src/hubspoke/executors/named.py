"""Executors named by a string, as ``--executor`` and the benchmarks name them.

``local`` (in the foreman's process), ``pool`` or ``pool:N`` (`PoolExecutor`: N worker processes
on this machine, one per CPU without N), ``ray`` or ``ray:ADDRESS`` (`RayExecutor`: a Ray
cluster, the ``ray`` extra). The pool and Ray are imported only when named.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hubspoke.errors import ExecutorError
from hubspoke.executors.base import Executor
from hubspoke.executors.local import LocalExecutor

__all__ = ["EXECUTOR_SPECS", "executor_for", "opened_executor"]

EXECUTOR_SPECS = "local|pool[:N]|ray[:ADDRESS]"
"""The forms `executor_for` takes, for a command's help."""


def executor_for(spec: str) -> Executor:
    """The executor `spec` names; a `RayExecutor` is made, not connected yet.

    Args:
        spec: ``local``, ``pool``, ``pool:N`` (N worker processes, 1 to 8 per CPU), ``ray``
            (the cluster ``RAY_ADDRESS`` names, else a local one), ``ray:auto``,
            ``ray:HOST:PORT`` or ``ray:ray://HOST:PORT``.

    Raises:
        ExecutorError: `spec` is none of these (the message lists them), or Ray is named and
            not installed, or its address is not one.
    """
    kind, sep, rest = spec.partition(":")
    if kind == "local" and not sep:
        return LocalExecutor()
    if kind == "pool":
        from hubspoke.executors.pool import PoolExecutor

        if not sep:
            return PoolExecutor()
        if not (rest.isdigit() and rest.isascii() and int(rest) >= 1):
            raise ExecutorError(
                f"--executor {spec!r}: the pool's size must be a whole number of worker "
                f"processes >= 1, as in pool:4 (or pool for one per CPU), got {rest!r}"
            )
        return PoolExecutor(int(rest))
    if kind == "ray":
        from hubspoke.executors.ray import RayExecutor

        return RayExecutor(rest or None)
    raise ExecutorError(
        f"--executor {spec!r}: give local, pool (worker processes on this machine, one per "
        "CPU), pool:N (N of them), ray (a local Ray cluster, or the one RAY_ADDRESS names), "
        "ray:auto (the one `ray start --head` started here) or ray:HOST:PORT"
    )


@contextmanager
def opened_executor(spec: str) -> Iterator[Executor | None]:
    """The executor `spec` names, ready to run on: a Ray cluster connected before anything is
    written (`None` for ``local``: the foreman's default); closed at the end, however the block
    ends (a local Ray cluster it started stops; a pool's processes, which the foreman starts and
    stops with each run, are gone). What ``--executor`` and the benchmarks use.

    Raises:
        ExecutorError: as `executor_for`, or the Ray cluster cannot be reached.
    """
    if spec == "local":
        yield None
        return
    executor = executor_for(spec)
    close = getattr(executor, "close", None)
    try:
        connect = getattr(executor, "connect", None)
        if connect is not None:
            connect()
        yield executor
    finally:
        if close is not None:
            close()
