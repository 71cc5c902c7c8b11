#!/usr/bin/env python
"""Count the instructions one fan-out costs per item, under valgrind's callgrind.

Wall time on a shared machine drifts by 10-30 %; instruction counts repeat within ~0.2 %, so
they compare two versions of the code (or the code with one part switched off) even while
other processes use the CPUs. Only the measured runs are counted: the interpreter's start-up,
the imports and a warm-up run are not.

    benchmarks/instructions.py function          # fanout-1000, function specialists
    benchmarks/instructions.py agent -n 1000
    benchmarks/instructions.py baseline          # the plain asyncio + pydantic loop
    benchmarks/instructions.py agent --no-record # model exchanges recorded without their
                                                 # requests and responses (Foreman(record=False))

It re-runs itself under ``valgrind --tool=callgrind --instr-atstart=no`` and turns counting on
and off around the measured runs with ``callgrind_control``; it prints instructions per item
(the whole run, plan and synthesis included, divided by N). ~30 s for N = 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workloads as wl  # noqa: E402

from hubspoke import Foreman, SQLiteStore  # noqa: E402


def _count(on: bool) -> None:
    flag = "on" if on else "off"
    subprocess.run(["callgrind_control", "-i", flag, str(os.getpid())], check=True, text=True)


async def _measured(kind: str, n: int, reps: int, tmp: Path, record: bool = True) -> None:
    """One warm-up run, then `reps` counted runs."""
    if kind == "baseline":
        await wl.baseline(n)
        _count(True)
        for _ in range(reps):
            await wl.baseline(n)
        _count(False)
        return
    workflow = wl.fanout_workflow(kind, n)
    for i in range(reps + 1):
        store = SQLiteStore(tmp / f"{i}.db")
        foreman = Foreman(workflow, store, freeze_gc=True, record=record)
        if i == 1:
            _count(True)
        result = await foreman.run(wl.goal_input(n))
        assert result.status == "completed", result.reason
        store.close()
    _count(False)


def main() -> int:
    p = argparse.ArgumentParser(description="instructions per item of one fan-out")
    p.add_argument("kind", choices=["function", "agent", "baseline"])
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument(
        "--no-record", action="store_true", help="Foreman(record=False): no requests recorded"
    )
    p.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inside:
        tmp = Path(tempfile.mkdtemp())
        asyncio.run(_measured(args.kind, args.n, args.reps, tmp, record=not args.no_record))
        return 0
    out = Path(tempfile.mkdtemp(prefix="hubspoke-ir-")) / "callgrind.out"
    done = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            args.kind,
            "-n",
            str(args.n),
            "--reps",
            str(args.reps),
            "--inside",
            *(["--no-record"] if args.no_record else []),
        ],
        capture_output=True,
        text=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        print(done.stderr, file=sys.stderr)
        return 1
    per_item = int(found.group(1)) / (args.n * args.reps)
    how = " (recording off)" if args.no_record else ""
    print(f"{args.kind} fanout-{args.n}{how}: {per_item:,.0f} instructions per item")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
