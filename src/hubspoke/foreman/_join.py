"""Joining a shared run: a foreman process that is not the run's owner works its items in a
shard of its own (`Foreman.join`, `hubspoke join`)."""

from __future__ import annotations

import time

from hubspoke.errors import RunNotFound, RunNotShared, WorkflowChanged
from hubspoke.journal import Redactor, RunState
from hubspoke.runview import RunView
from hubspoke.shape import shape_changes

from ._run import Wiring
from ._shard import Shard, shard_record
from ._sharing import LEASE_POLL, LEASE_TTL, check_lease

__all__ = ["join"]


async def join(
    wiring: Wiring,
    redactor: Redactor,
    shape: dict[str, object],
    run_id: str,
    *,
    concurrency: int,
    idle: float | None,
    ttl: float = LEASE_TTL,
    poll: float = LEASE_POLL,
) -> int:
    """Work the shared run's items in a new shard (``RUN.joiner-xxxxxxxx``) until the run ends,
    or nothing was free for `idle` seconds; returns how many items this shard finished (0, with
    no shard recorded, for a run that has already ended or waits for people).

    Raises:
        ValueError: `ttl` less than 4 times `poll` (`Sharing`'s rule).
        RunNotFound: no such run.
        RunNotShared: the run was started without ``share``.
        WorkflowChanged: the run was started by another workflow, or this one's shape differs.
    """
    check_lease(ttl, poll)
    store = wiring.store
    record = store.run(run_id)
    if record is None:
        raise RunNotFound(f"no run {run_id!r} in the journal to join")
    if not record.options.get("share"):
        raise RunNotShared(
            f"run {run_id} is not shared: it was started without share (Foreman(share=True), "
            "hubspoke run --share), so no other process can work its items"
        )
    wf = wiring.workflow
    state = RunState.fold(run_id, store.events(run_id))
    changes = (
        [f"the run's workflow is {record.workflow!r}, not {wf.name!r}"]
        if record.workflow != wf.name
        else shape_changes(state.shape, dict(shape))
        if state.shape is not None
        else []
    )
    if changes:
        raise WorkflowChanged(run_id, changes, verb="join")
    if record.status != "running":
        return 0  # ended (or waiting for people): nothing to join, no shard to leave behind
    view = RunView(wf.input.model_validate(record.input), phases=wf.phases)
    shard = Shard(
        wiring,
        record,
        shard_record(record, "joiner"),
        view,
        tools=wiring.tools,
        redactor=redactor,
        ttl=ttl,
        poll=poll,
        concurrency=concurrency,
    )
    busy = [time.monotonic(), shard.done]

    def over() -> bool:
        """The run ended (whatever this shard holds is given back), or this shard had nothing
        to do for `idle` seconds."""
        if shard.done != busy[1] or shard.running:
            busy[:] = [time.monotonic(), shard.done]
        ended = store.run(run_id)
        if ended is None or ended.status != "running":
            return True
        return idle is not None and time.monotonic() - busy[0] >= idle

    shard.open()
    status, reason = "completed", ""
    try:
        await shard.work(over)
    except BaseException as e:
        status, reason = "aborted", f"{type(e).__name__}: {e}"
        raise
    finally:
        if status == "completed" and shard.given_back:
            status = "aborted"
            reason = f"the run ended while it ran {shard.given_back} item(s): given back"
        shard.close(status, reason)
    return shard.done
