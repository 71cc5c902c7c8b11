#!/usr/bin/env python
"""Profile one benchmark workload (the hot path of the foreman).

    .venv/bin/python benchmarks/hotpath.py fanout --kind function -n 1000
    .venv/bin/python benchmarks/hotpath.py fanout --kind agent -n 1000 --latency 0.05
    .venv/bin/python benchmarks/hotpath.py resume
    .venv/bin/python benchmarks/hotpath.py fanout --kind agent --profiler cprofile

Profilers: pyinstrument (statistical, call tree; default) or cProfile (deterministic, own time per
function). Install the pinned profilers with `pip install -r benchmarks/requirements.txt`.
For a sampling profile of the whole process without instrumentation, use py-spy:

    .venv/bin/py-spy record -o /tmp/profile.svg -- .venv/bin/python benchmarks/hotpath.py \
        fanout --kind agent -n 1000 --profiler none --repeat 20
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import math
import pstats
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workloads as wl  # noqa: E402

from hubspoke import Foreman, RunState, SQLiteStore  # noqa: E402


async def fanout(kind: str, n: int, latency: float, repeat: int, tmp: Path) -> None:
    wf = wl.fanout_workflow(kind, n, latency)
    for i in range(repeat):
        store = SQLiteStore(tmp / f"p{i}.db")
        result = await Foreman(wf, store, offline_latency=latency, freeze_gc=True).run(
            wl.goal_input(n)
        )
        assert result.status == "completed", result.reason
        store.close()


def main() -> int:
    p = argparse.ArgumentParser(description="profile one workload")
    p.add_argument("workload", choices=["fanout", "resume"])
    p.add_argument("--kind", choices=["function", "agent"], default="function")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--profiler", choices=["pyinstrument", "cprofile", "none"], default="pyinstrument"
    )
    p.add_argument("--top", type=int, default=40, help="rows of the cProfile table")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hubspoke-prof-"))

    # warm up outside the profile
    asyncio.run(fanout(args.kind, 20, 0.0, 1, tmp))

    if args.workload == "fanout":

        def work() -> None:
            asyncio.run(fanout(args.kind, args.n, args.latency, args.repeat, tmp))
    else:
        n = math.ceil((100_000 - 14) / 3)
        store = SQLiteStore(tmp / "resume.db")
        result = asyncio.run(
            Foreman(wl.fanout_workflow("function", n), store).run(wl.goal_input(n))
        )
        run_id = result.run_id
        del result
        gc.collect()

        def work() -> None:
            for _ in range(args.repeat):
                state = RunState.fold(run_id, store.events(run_id))
                assert state.status == "completed"
                asyncio.run(Foreman(wl.fanout_workflow("function", n), store).resume(run_id))

    t0 = time.perf_counter()
    if args.profiler == "pyinstrument":
        from pyinstrument import Profiler

        prof = Profiler(interval=0.0005, async_mode="disabled")
        prof.start()
        work()
        prof.stop()
        print(prof.output_text(unicode=True, color=False, show_all=False))
    elif args.profiler == "cprofile":
        cp = cProfile.Profile()
        cp.enable()
        work()
        cp.disable()
        stats = pstats.Stats(cp).strip_dirs().sort_stats("tottime")
        stats.print_stats(args.top)
    else:
        work()
    print(f"# {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
