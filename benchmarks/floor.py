#!/usr/bin/env python
"""The journal's floor: what a crash-safe run must write per item, at the least, against the
plain asyncio loop, measured in the same process.

    .venv/bin/python benchmarks/floor.py            # N = 1,000, medians of 7
    .venv/bin/python benchmarks/floor.py -n 10000 --reps 3

The function fan-out of `benchmarks/run.py` writes, per accepted item, three events
(`dispatch.started`, `dispatch.finished`, `item.accepted`) and one artifact. This script does
the baseline's work (validate the input, call the function, validate the output, N coroutines
gathered) plus only that writing: each event's data (the same keys and values as the real
ones) encoded to JSON once, an `Event` per event, the artifact's id (a hash of its content) and
row, and the whole batch written to the same `SQLiteStore` in one transaction. No ledger, no
ladder, no fold, no redaction, no context: none of the foreman's decisions. Whatever the foreman
does on top of this floor is what the function ratio's target leaves room for.

Prints µs per item for the baseline, the floor and the hubspoke function fan-out, and each as a
multiple of the baseline; as in `benchmarks/run.py`, the work functions' own time is taken off
each wall before dividing by N.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pydantic_core import to_json

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workloads as wl  # noqa: E402

from hubspoke import Event, EventKind, Foreman, SQLiteStore  # noqa: E402
from hubspoke.artifacts import Artifact, artifact_id  # noqa: E402


async def floor(n: int, store: SQLiteStore, run_id: str) -> int:
    """The baseline's work plus the journal's rows for each item; returns the events written."""
    roles = wl.function_roles(0.0)
    plan_fn, work_fn, synth_fn = (r.function for r in roles)
    assert plan_fn is not None and work_fn is not None and synth_fn is not None
    goal = wl.Goal.model_validate(wl.goal_input(n))
    plan = wl.Plan.model_validate(await plan_fn(goal, None))
    events: list[Event] = []
    encoded: list[str] = []
    artifacts: list[Artifact] = []
    started_kind, finished_kind = EventKind.DISPATCH_STARTED, EventKind.DISPATCH_FINISHED
    accepted_kind = EventKind.ITEM_ACCEPTED

    def write(kind: EventKind, key: str, attempt: int | None, data: dict[str, Any]) -> None:
        encoded.append(to_json(data).decode())
        events.append(
            Event(run_id, len(events) + 1, time.time(), kind, "fan", "worker", key, attempt, data)
        )

    async def one(index: int, raw: dict[str, Any]) -> wl.Finding:
        key = f"fan[{index}]"
        task = wl.Task.model_validate(raw)
        write(
            started_kind,
            key,
            1,
            {
                "fingerprint": "0318a77c4d21198048abd866",
                "correction": None,
                "tries": 0,
                "input": raw,
                "reserved": {
                    "tokens": None,
                    "usd": None,
                    "tool_calls": None,
                    "leftover": False,
                    "leftover_of": "run",
                },
            },
        )
        t0 = time.monotonic()
        finding = wl.Finding.model_validate(await work_fn(task, None))
        usage = {
            "input_tokens": 0,
            "output_tokens": 0,
            "requests": 0,
            "tool_calls": 0,
            "usd": 0.0,
            "seconds": round(time.monotonic() - t0, 6),
            "steps": 1,
        }
        write(finished_kind, key, 1, {"outcome": "output", "usage": usage})
        content_json = finding.model_dump_json()
        aid = artifact_id(run_id, key, content_json)
        artifacts.append(
            Artifact(
                id=aid,
                run_id=run_id,
                phase="fan",
                role="worker",
                item=key,
                schema="workloads.Finding",
                content=finding.model_dump(mode="json"),
                created=time.time(),
                content_json=content_json,
            )
        )
        write(accepted_kind, key, None, {"artifact_id": aid})
        return finding

    findings = await asyncio.gather(*(one(i, t.model_dump()) for i, t in enumerate(plan.items)))
    store.append(events, artifacts, encoded=encoded)
    synth_in = wl.Findings.model_validate({"findings": [f.model_dump() for f in findings]})
    wl.Report.model_validate(await synth_fn(synth_in, None))
    return len(events)


async def time_floor(n: int, reps: int, tmp: Path) -> list[float]:
    """The floor's wall time in seconds, `reps` times, each into a fresh SQLite store."""
    walls = []
    for rep in range(reps):
        path = tmp / f"floor-{n}-{rep}.db"
        store = SQLiteStore(path)
        run_id = f"run_floor{rep}"
        t0 = time.perf_counter()
        written = await floor(n, store, run_id)
        walls.append(time.perf_counter() - t0)
        assert len(store.events(run_id)) == written == 3 * n
        wl.drop_store(store, path)
    return walls


def _median_us(walls: list[float], work: float, n: int) -> float:
    return (statistics.median(walls) - work) / n * 1e6


async def measure(n: int, reps: int, tmp: Path) -> dict[str, float]:
    """µs per item (work taken off) of the baseline, the floor and the function fan-out,
    interleaved rep by rep (the machine's speed drifts); a first round warms up, uncounted."""
    walls: dict[str, list[float]] = {"baseline": [], "floor": [], "function": []}
    workflow = wl.fanout_workflow("function", n)
    for rep in range(reps + 1):
        t0 = time.perf_counter()
        await wl.baseline(n)
        base = time.perf_counter() - t0
        (low,) = await time_floor(n, 1, tmp)
        store = SQLiteStore(tmp / f"function-{rep}.db")
        foreman = Foreman(workflow, store, freeze_gc=True)
        t0 = time.perf_counter()
        result = await foreman.run(wl.goal_input(n))
        full = time.perf_counter() - t0
        assert result.status == "completed", result.reason
        store.close()
        del result, foreman
        if rep:
            walls["baseline"].append(base)
            walls["floor"].append(low)
            walls["function"].append(full)
    work = await wl.function_work_seconds(n)
    return {name: _median_us(w, work, n) for name, w in walls.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=1000, help="items in the fan-out (default 1,000)")
    p.add_argument("--reps", type=int, default=7, help="measured repetitions (default 7)")
    args = p.parse_args(argv)
    if args.n < 1 or args.reps < 1:
        p.error("-n and --reps must be at least 1")
    gc.freeze()  # start-up objects out of the collector's reach, as Foreman(freeze_gc=True)
    with tempfile.TemporaryDirectory(prefix="hubspoke-floor-") as tmp:
        us = asyncio.run(measure(args.n, args.reps, Path(tmp)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"N = {args.n:,}, medians of {args.reps}, load average {load:.2f}")
    print()
    print("| measure | µs per item | × baseline |")
    print("| --- | ---: | ---: |")
    rows = (
        ("baseline (asyncio + pydantic)", "baseline"),
        ("floor: the baseline + the journal's rows (3 events, 1 artifact)", "floor"),
        ("hubspoke, function specialists, journal on", "function"),
    )
    for label, name in rows:
        print(f"| {label} | {us[name]:.1f} | {us[name] / us['baseline']:.2f}× |")
    room = 3 * us["baseline"] - us["floor"]
    print()
    print(
        f"The 3× target leaves {room:.1f} µs per item above the floor for the foreman's "
        f"own work; it uses {us['function'] - us['floor']:.1f} µs now."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
