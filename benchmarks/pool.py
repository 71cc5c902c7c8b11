#!/usr/bin/env python
"""The worker pool against the local executor on the fan-out workload, 50 ms of model latency.

    .venv/bin/python benchmarks/pool.py                              # N = 1,000 and 10,000
    .venv/bin/python benchmarks/pool.py --sizes 1000 --reps 3 --executors local,pool:2,pool:4
    .venv/bin/python benchmarks/pool.py --cpu-ms 20 --cpu-items 200  # and a CPU-bound fan-out

The workload is `workloads.fanout_workflow("agent", N)`: a planner, N agent items all in flight
(the offline model, each request taking `--latency` seconds) and a synthesis, journaled to an
SQLite file. Each executor is named as ``--executor`` names it (`executors.named.executor_for`);
a pool's processes are started once before its repetitions (their start-up is printed apart,
not counted in the walls). The critical path is the model requests on the longest path times
the latency (`workloads.critical_requests`), counted from the run's own events. Repetitions
of the executors are interleaved, since this machine's speed drifts; the figures are medians.

With ``--cpu-ms``, a second table: `cpu_bound.cpu_workflow`, items whose sync function burns
that many milliseconds of pure-Python CPU each (holding the GIL), where the pool is meant to
help; its floor is the items' CPU time divided by the CPUs.
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

import cpu_bound  # noqa: E402
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


async def cpu_run(executor: Executor, n: int, rounds: int, db: Path) -> float:
    """One CPU-bound run's wall time, in seconds."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db}{suffix}")
    store = SQLiteStore(db)
    try:
        foreman = Foreman(cpu_bound.cpu_workflow(n), store, executor=executor, freeze_gc=True)
        started = time.perf_counter()
        result = await foreman.run({"n": n, "rounds": rounds})
        wall = time.perf_counter() - started
        if result.status != "completed":
            raise RuntimeError(f"cpu-bound N={n}: the run ended {result.status}: {result.reason}")
    finally:
        store.close()
    return wall


async def measure(
    specs: list[str], sizes: list[int], latency: float, reps: int, cpu: tuple[float, int] | None
) -> None:
    executors = {spec: executor_for(spec) for spec in specs}
    for spec, executor in executors.items():
        if isinstance(executor, Starting):
            started = time.perf_counter()
            await executor.start()  # kept up across the repetitions: a run's start nests
            print(f"{spec}: processes started in {time.perf_counter() - started:.2f} s")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.db"
            for executor in executors.values():  # imports and caches, in every process
                await one_run(executor, 20, latency, db)
                if cpu is not None:
                    await cpu_run(executor, 4, 1, db)
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
            if cpu is not None:
                ms, n = cpu
                rounds = cpu_bound.rounds_for(ms)
                floor = n * ms / 1000 / (os.cpu_count() or 1)
                print()
                print(f"CPU-bound: {n:,} items of {ms:g} ms of CPU each ({rounds:,} rounds)")
                print()
                print("| executor | wall | CPU time / CPUs |")
                print("|---|---:|---:|")
                cpu_walls: dict[str, list[float]] = {spec: [] for spec in specs}
                for _ in range(reps):
                    for spec in specs:
                        cpu_walls[spec].append(await cpu_run(executors[spec], n, rounds, db))
                for spec in specs:
                    wall = statistics.median(cpu_walls[spec])
                    print(f"| {spec} | {wall:.2f} s | {floor:.2f} s |", flush=True)
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
    parser.add_argument(
        "--cpu-ms", type=float, default=0.0, help="also a CPU-bound fan-out: ms of CPU per item"
    )
    parser.add_argument("--cpu-items", type=int, default=200, help="its number of items")
    args: Any = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    specs = args.executors.split(",")
    print(f"{os.cpu_count()} CPUs, latency {args.latency * 1000:g} ms, {args.reps} repetitions")
    cpu = (args.cpu_ms, args.cpu_items) if args.cpu_ms > 0 else None
    asyncio.run(measure(specs, sizes, args.latency, args.reps, cpu))


if __name__ == "__main__":
    main()
