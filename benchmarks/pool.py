#!/usr/bin/env python
"""The worker pool against the local executor on the fan-out workload, 50 ms of model latency.

    .venv/bin/python benchmarks/pool.py                              # N = 1,000 and 10,000
    .venv/bin/python benchmarks/pool.py --sizes 1000 --reps 3 --executors local,pool:2,pool:4

The workload is `workloads.fanout_workflow("agent", N)`: a planner, N agent items all in flight
(the offline model, each request taking `--latency` seconds) and a synthesis, journaled to an
SQLite file. Each executor is named as ``--executor`` names it (`executors.named.executor_for`);
a pool's processes are started once before its repetitions (their start-up is printed apart,
not counted in the walls). The critical path is the model requests on the longest path times
the latency (`workloads.critical_requests`), counted from the run's own events. Repetitions
of the executors are interleaved, since this machine's speed drifts; the figures are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the workers find `workloads` (its players) on the same path

import workloads as wl  # noqa: E402

from hubspoke import Foreman, SQLiteStore  # noqa: E402
from hubspoke.executors import Executor  # noqa: E402
from hubspoke.executors.base import Starting  # noqa: E402
from hubspoke.executors.named import executor_for  # noqa: E402


async def one_run(executor: Executor, n: int, latency: float, db: Path) -> tuple[float, float]:
    """One run's wall time and critical path, in seconds."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db}{suffix}")
    store = SQLiteStore(db)
    try:
        wf = wl.fanout_workflow("agent", n, latency)
        foreman = Foreman(wf, store, offline_latency=latency, executor=executor, freeze_gc=True)
        started = time.perf_counter()
        result = await foreman.run(wl.goal_input(n))
        wall = time.perf_counter() - started
        if result.status != "completed" or result.state.phases["fan"].accepted != n:
            raise RuntimeError(f"N={n}: the run ended {result.status}: {result.reason}")
        critical = wl.critical_requests(store.events(result.run_id)) * latency
    finally:
        store.close()
    return wall, critical


async def measure(specs: list[str], sizes: list[int], latency: float, reps: int) -> None:
    executors = {spec: executor_for(spec) for spec in specs}
    for spec, executor in executors.items():
        if isinstance(executor, Starting):
            started = time.perf_counter()
            await executor.start()  # kept up across the repetitions: a run's start nests
            print(f"{spec}: processes started in {time.perf_counter() - started:.2f} s")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.db"
            await one_run(executors[specs[0]], 20, latency, db)  # imports, caches
            print()
            print("| executor | N | wall | critical path | wall / critical |")
            print("|---|---:|---:|---:|---:|")
            for n in sizes:
                walls: dict[str, list[float]] = {spec: [] for spec in specs}
                critical = 0.0
                for _ in range(reps):
                    for spec in specs:
                        wall, critical = await one_run(executors[spec], n, latency, db)
                        walls[spec].append(wall)
                for spec in specs:
                    wall = statistics.median(walls[spec])
                    print(
                        f"| {spec} | {n:,} | {wall:.2f} s | {critical:.2f} s | "
                        f"{wall / critical:.2f}× |",
                        flush=True,
                    )
    finally:
        for executor in executors.values():
            if isinstance(executor, Starting):
                await executor.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="items per run, comma-separated")
    parser.add_argument("--latency", type=float, default=0.050, help="seconds per model request")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per executor and size")
    parser.add_argument(
        "--executors", default="local,pool", help="as --executor names them, comma-separated"
    )
    args: Any = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    specs = args.executors.split(",")
    print(f"{os.cpu_count()} CPUs, latency {args.latency * 1000:g} ms, {args.reps} repetitions")
    asyncio.run(measure(specs, sizes, args.latency, args.reps))


if __name__ == "__main__":
    main()
