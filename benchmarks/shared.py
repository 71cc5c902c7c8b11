#!/usr/bin/env python
"""Wall time of one fan-out of CPU-bound items: one foreman alone, against the same run shared
with joiner processes (`Foreman(share=...)`, `Foreman.join`; docs/scale.md).

    .venv/bin/python benchmarks/shared.py                    # starts a throw-away server
    .venv/bin/python benchmarks/shared.py --items 2000 --cpu-ms 2 --joiners 0,1 --reps 3
    .venv/bin/python benchmarks/shared.py --db postgresql://me@db.example/bench

Each item is a sync function specialist that burns `--cpu-ms` of CPU (its thread's CPU time),
so one process runs them one after another whatever the phase's concurrency (the GIL). Rows:
**alone** (no sharing), then the run shared with 0, 1, ... joiner processes (each started
before the run and waiting for it, so their start-up is not timed). Each repetition gets a fresh
database (made and dropped outside the timed run); the figure is the median wall of the
repetitions, from `Foreman.run` to its return.

Without `--db`, a PostgreSQL server is started from Debian's binaries on 127.0.0.1 with fsync on
(tests/pgserver.py); with `--db`, its user must be able to create and drop databases.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from hubspoke import Context, Foreman, Phase, PostgresStore, Role, Strategy, Workflow  # noqa: E402
from hubspoke.foreman import Sharing  # noqa: E402
from hubspoke.journal.location import redact_url  # noqa: E402

RUN_ID = "run_shared_bench"
POLL = float(os.environ.get("SHARED_BENCH_POLL", "0.01"))
"""Seconds between two looks at the store (`Sharing.poll`), owner and joiners."""


class Job(BaseModel):
    items: int
    cpu_ms: float


class Item(BaseModel):
    n: int
    cpu_ms: float


class Done(BaseModel):
    n: int
    spins: int


def burn(item: Item, ctx: Context) -> Done:
    """Spin for `cpu_ms` of this thread's CPU time."""
    end = time.thread_time() + item.cpu_ms / 1000
    spins = 0
    while time.thread_time() < end:
        spins += 1
    return Done(n=item.n, spins=spins)


workflow = Workflow(
    name="shared_bench",
    input=Job,
    roles=[Role(name="burner", purpose="Burn CPU.", input=Item, output=Done, function=burn)],
    phases=[
        Phase(
            name="burn",
            role="burner",
            over=lambda run: list(range(run.input.items)),
            input=lambda run, n: Item(n=n, cpu_ms=run.input.cpu_ms),
            concurrency=16,
            strategy=Strategy.BEST_EFFORT,
        )
    ],
    max_steps=1_000_000,
)


def join(url: str) -> int:
    """A joiner process: wait for the run to be recorded, then work it until it ends."""
    store = PostgresStore(url)
    while store.run(RUN_ID) is None:
        time.sleep(0.005)  # the owner records the run
    done = asyncio.run(Foreman(workflow, store).join(RUN_ID, concurrency=16, poll=POLL))
    store.close()
    print(f"joiner ran {done} items", file=sys.stderr)
    return 0


def one(
    url: str, items: int, cpu_ms: float, joiners: int | None, local: bool = True
) -> tuple[float, int]:
    """Wall of one run (`joiners` None: not shared; `local`: the owner runs items too) and
    the items the owner's shard ran."""
    from stores import fresh_database

    with fresh_database(url) as db:
        store = PostgresStore(db)  # makes the tables before the joiners look
        procs = [
            subprocess.Popen([sys.executable, __file__, "--join", db]) for _ in range(joiners or 0)
        ]
        share = False if joiners is None else Sharing(poll=POLL, local=local)
        foreman = Foreman(workflow, store, share=share)
        started, cpu = time.perf_counter(), time.process_time()
        result = asyncio.run(foreman.run({"items": items, "cpu_ms": cpu_ms}, run_id=RUN_ID))
        wall = time.perf_counter() - started
        print(f"  owner CPU {time.process_time() - cpu:.2f}s of {wall:.2f}s wall", flush=True)
        for proc in procs:
            proc.wait(60)
        assert result.status == "completed", result.reason
        shards = [r.run_id for r in store.runs(1000) if r.run_id.startswith(f"{RUN_ID}.owner-")]
        mine = sum(
            1 for s in shards for e in store.events(s) if e.kind.value == "dispatch.finished"
        )
        store.close()
    return wall, mine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="a PostgreSQL URL (default: start a throw-away server)")
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--cpu-ms", type=float, default=2.0)
    parser.add_argument(
        "--joiners",
        default="0,1,1d,2d",
        help="joiner counts to measure; a trailing d: the owner only decides, runs no item "
        "(Sharing(local=False)). Default 0,1,1d,2d",
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--join", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.join:
        return join(args.join)
    setups: list[tuple[str, int | None, bool]] = [("alone", None, True)]
    for spec in args.joiners.split(","):
        n, local = int(spec.rstrip("d")), not spec.endswith("d")
        setups.append((f"{n} joiner(s)" + ("" if local else ", owner decides"), n, local))

    def measure(url: str) -> None:
        print(f"Postgres: {redact_url(url)}; {args.items} items of {args.cpu_ms:g} ms CPU")
        print(f"{'setup':<28} {'wall (median)':>14} {'reps':>24} {'owner ran':>10}")
        walls: dict[str, Any] = {}
        for _ in range(args.reps):
            for name, joiners, local in setups:
                run = one(url, args.items, args.cpu_ms, joiners, local)
                walls.setdefault(name, []).append(run)
        for name, runs in walls.items():
            median = statistics.median(w for w, _ in runs)
            reps = ", ".join(f"{w:.2f}" for w, _ in runs)
            owner = "" if name == "alone" else str(runs[-1][1])
            print(f"{name:<28} {median:>13.2f}s {reps:>24} {owner:>10}", flush=True)

    if args.db:
        measure(args.db)
        return 0
    from tests.pgserver import postgres_server

    with postgres_server(durable=True) as server:
        if isinstance(server, str):
            print(f"cannot measure: {server}", file=sys.stderr)
            return 2
        measure(server.url())
    return 0


if __name__ == "__main__":
    sys.exit(main())
