"""One process of a chaos run: start it or resume it, until it ends or is killed.

Usage::

    python -m tests.chaos.runner start DB RUN_ID ITEMS SEED
    python -m tests.chaos.runner resume DB RUN_ID [READY_FILE GO_FILE]
    python -m tests.chaos.runner join DB RUN_ID [READY_FILE]

`join` works the items of the run another process shares, until the run ends (writing
READY_FILE, if given, once it is loaded). With
`CHAOS_SHARE_TTL` set (seconds), `start` and `resume` share the ``ship`` phase with joiners
(`Foreman(share=...)`) and items are leased for that long.

DB is an SQLite file or a ``postgresql://`` URL.
`CHAOS_EFFECTS` names the side-effects file. With READY_FILE and GO_FILE, the process writes
READY_FILE once it is loaded and waits for GO_FILE before resuming (to race two resumers).
Prints ``{"status": ..., "pid": ...}`` on stdout; exit code 3 with the message on stderr when
another process holds the run (`hubspoke.RunLocked`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

from hubspoke import Foreman, RunLocked, RunResult, open_store
from hubspoke.foreman import Sharing
from tests.chaos.workflow import REF, workflow

EXIT_LOCKED = 3


def _wait_for_go(ready: Path, go: Path) -> None:
    ready.write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("gave up waiting for the go file")
        time.sleep(0.001)


def _join(foreman: Foreman, run_id: str, ttl: float) -> int:
    """Join the run once its owner has recorded it; returns the items this process finished."""
    deadline = time.monotonic() + 60
    while foreman.store.run(run_id) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run_id} never appeared")
        time.sleep(0.01)  # waiting for another process to record the run
    return asyncio.run(foreman.join(run_id, concurrency=8, ttl=ttl, poll=0.02))


def main(argv: list[str]) -> int:
    mode, db, run_id = argv[:3]
    ttl = float(os.environ.get("CHAOS_SHARE_TTL", "0") or 0)
    share = Sharing(ttl=ttl, poll=0.02, phases=frozenset({"ship"})) if ttl else False
    foreman = Foreman(workflow, open_store(db), share=share)
    result: RunResult
    if mode == "join":
        if len(argv) >= 4:
            Path(argv[3]).write_text(str(os.getpid()))
        done = _join(foreman, run_id, ttl or 30.0)
        print(json.dumps({"joined": done, "pid": os.getpid()}))
        return 0
    if mode == "start":
        items, seed = int(argv[3]), int(argv[4])
        result = asyncio.run(foreman.run({"items": items, "seed": seed}, run_id=run_id, ref=REF))
    elif mode == "resume":
        if len(argv) >= 5:
            _wait_for_go(Path(argv[3]), Path(argv[4]))
        try:
            result = asyncio.run(foreman.resume(run_id))
        except RunLocked as e:
            print(f"RunLocked: {e}", file=sys.stderr)
            return EXIT_LOCKED
    else:
        raise SystemExit(f"unknown mode {mode!r}: use start, resume or join")
    print(json.dumps({"status": result.status, "pid": os.getpid()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
