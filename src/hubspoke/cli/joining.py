"""`hubspoke join`: work the items of a run another foreman shares (`Foreman.join`)."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.console import Console

from hubspoke.cli.config import DbPath
from hubspoke.cli.failures import EXIT_INTERRUPTED, EXIT_OK, UsageError
from hubspoke.cli.store import find_run, open_store

__all__ = ["join_run"]


def join_run(
    run: str,
    db: DbPath,
    workflow_ref: str | None,
    *,
    concurrency: int,
    idle: float | None,
    ttl: float,
    executor: str = "local",
    json_output: bool,
) -> int:
    """Join `run` (started with ``--share``) until it ends; return the exit code.

    Raises:
        RunNotFound: no run matches `run`.
        RunNotShared: the run was started without ``--share``.
        WorkflowChanged: the workflow loaded is not the run's.
        InputError: the workflow reference cannot be loaded.
        ExecutorError: `executor` names no executor, or its cluster cannot be reached.
        UsageError: the prefix is ambiguous, or there is no workflow reference to load.
    """
    from hubspoke.cli.models import recorded_override
    from hubspoke.cli.running import recorded_workflow_ref, sigterm_as_ctrl_c
    from hubspoke.executors.named import opened_executor
    from hubspoke.foreman import Foreman
    from hubspoke.foreman._sharing import LEASE_POLL
    from hubspoke.loader import load_workflow
    from hubspoke.models.config import Config

    if concurrency < 1 or (idle is not None and idle < 0):
        raise UsageError("--concurrency must be at least 1, --idle positive")
    if ttl < 4 * LEASE_POLL:  # `check_lease`'s rule, said in the option's words
        raise UsageError(
            f"--ttl must be at least {4 * LEASE_POLL:g} seconds, not {ttl:g}: shorter leases "
            "expire under a live joiner, and another process runs its items too"
        )
    with open_store(db, create=False) as store, opened_executor(executor) as chosen:
        record = find_run(store, run)
        ref = recorded_workflow_ref(record.run_id, record.ref, workflow_ref, "join")
        workflow = load_workflow(ref)
        workflow.check()
        foreman = Foreman(
            workflow,
            store,
            model=recorded_override(record.options, workflow),
            config=Config.load(),
            offline_latency=float(record.options.get("latency") or 0.0) / 1000,
            executor=chosen,
        )
        try:
            with sigterm_as_ctrl_c():  # a stopped container gives its items back at once
                done = asyncio.run(
                    foreman.join(
                        record.run_id, concurrency=concurrency, idle=idle, ttl=ttl, poll=LEASE_POLL
                    )
                )
        except KeyboardInterrupt:
            # The shard stopped its items and released their leases on the way out.
            console = Console(stderr=True, highlight=False, soft_wrap=True)
            console.print(f"interrupted; its items go back to run {record.run_id}")
            return EXIT_INTERRUPTED
        ended = store.run(record.run_id)
    if json_output:
        typer.echo(json.dumps({"run_id": record.run_id, "items": done}))
    elif record.status != "running":
        typer.echo(f"run {record.run_id} is {record.status}: nothing to join (it is not running)")
    else:
        status = "" if ended is None else f" (it is {ended.status})"
        typer.echo(f"joined run {record.run_id}{status}: this process ran {done} item(s)")
    return EXIT_OK
