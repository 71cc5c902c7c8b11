"""One process of a chaos run: start it or resume it, until it ends or is killed.

Usage::

    python -m tests.chaos.runner start DB RUN_ID ITEMS SEED
    python -m tests.chaos.runner resume DB RUN_ID [READY_FILE GO_FILE]

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
from tests.chaos.workflow import REF, workflow

EXIT_LOCKED = 3


def _wait_for_go(ready: Path, go: Path) -> None:
    ready.write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("gave up waiting for the go file")
        time.sleep(0.001)


def main(argv: list[str]) -> int:
    mode, db, run_id = argv[:3]
    foreman = Foreman(workflow, open_store(db))
    result: RunResult
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
        raise SystemExit(f"unknown mode {mode!r}: use start or resume")
    print(json.dumps({"status": result.status, "pid": os.getpid()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
