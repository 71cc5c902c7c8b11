#!/usr/bin/env python
"""What a dispatch costs on Ray: the fan-out workload on `RayExecutor` against `LocalExecutor`.

    .venv/bin/python benchmarks/ray_overhead.py                   # 100 items, 3 repetitions
    .venv/bin/python benchmarks/ray_overhead.py --n 200 --kind agent --task-cpus 0.25

Starts a local Ray cluster in this process (all the machine's cores, no dashboard, usage
statistics off), runs the fan-out once to start the workers, then runs the same workflow
(benchmarks/workloads.py: plan → N items → synthesis, no model latency) with each executor,
repetitions interleaved. **overhead per dispatch** = (Ray's wall − local wall) / dispatches:
what Ray adds to each dispatch at that concurrency (submitting the task, the pickles both ways,
the worker's own event loop), since the work itself costs nothing here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import workloads as wl  # noqa: E402

from hubspoke import Foreman, SQLiteStore  # noqa: E402
from hubspoke.executors import Executor  # noqa: E402
from hubspoke.executors.ray import RayExecutor  # noqa: E402


async def _timed(workflow: Any, n: int, executor: Executor | None, db: Path) -> tuple[float, int]:
    store = SQLiteStore(db)
    try:
        foreman = Foreman(workflow, store, executor=executor)
        started = time.perf_counter()
        result = await foreman.run(wl.goal_input(n))
        wall = time.perf_counter() - started
        assert result.status == "completed", result.reason
        return wall, int(result.summary()["usage"]["steps"])
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="items of the fan-out")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--kind", choices=("function", "agent"), default="function")
    parser.add_argument("--task-cpus", type=float, default=1.0, help="RayExecutor(num_cpus=)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    cloudpickle: Any = ray.cloudpickle
    cloudpickle.register_pickle_by_value(wl)  # the workers cannot import benchmarks/
    ray.init(include_dashboard=False, log_to_driver=False)
    workflow = wl.fanout_workflow(args.kind, args.n)
    executor = RayExecutor(num_cpus=args.task_cpus)
    walls: dict[str, list[float]] = {"local": [], "ray": []}
    dispatches = 0
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_timed(workflow, args.n, executor, Path(tmp, "warm.db")))  # start workers
        for rep in range(args.reps):
            for name, chosen in (("local", None), ("ray", executor)):
                db = Path(tmp, f"{name}-{rep}.db")
                wall, dispatches = asyncio.run(_timed(workflow, args.n, chosen, db))
                walls[name].append(wall)
    ray.shutdown()
    local, remote = statistics.median(walls["local"]), statistics.median(walls["ray"])
    figures = {
        "kind": args.kind,
        "items": args.n,
        "dispatches": dispatches,
        "task_cpus": args.task_cpus,
        "cores": os.cpu_count(),
        "local_wall_s": round(local, 4),
        "ray_wall_s": round(remote, 4),
        "overhead_per_dispatch_ms": round((remote - local) / dispatches * 1000, 3),
        "ray_dispatches_per_s": round(dispatches / remote, 1),
        "walls": {k: [round(w, 4) for w in v] for k, v in walls.items()},
    }
    print(json.dumps(figures, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
