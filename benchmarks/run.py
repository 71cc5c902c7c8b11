#!/usr/bin/env python
"""Benchmarks: the foreman's own cost, against a plain asyncio+pydantic loop in the same run.

    .venv/bin/python benchmarks/run.py            # full form (N up to 10,000)
    .venv/bin/python benchmarks/run.py --quick    # under two minutes on a 2-core machine
    .venv/bin/python benchmarks/run.py --json benchmarks/results/latest.json

Prints Markdown tables and writes every figure to JSON. Each figure is the median of several
repetitions; each ratio is against the baseline measured in the same invocation. Nothing is done
to the garbage collector between repetitions (no gc.collect()): its state is the one a
long-lived process running many runs would have; foremen are built with `freeze_gc=True`. See
benchmarks/README.md for what is measured and how to read it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import workloads as wl  # noqa: E402
from floor import time_floor  # noqa: E402
from startup import startup_suite  # noqa: E402
from workloads import drop_store, function_work_seconds  # noqa: E402

from hubspoke import Event, EventKind, Foreman, RunState, SQLiteStore  # noqa: E402
from hubspoke.models.offline import Turn  # noqa: E402

LATENCY = 0.050  # seconds of simulated model latency
RESUME_EVENTS = 100_000

BASELINE = "baseline (asyncio+pydantic)"
FLOOR = "journal floor (baseline + rows)"

TARGETS = {
    "function_ratio": 3.0,  # overhead ≤ 3× baseline per dispatch (N=1,000, journal on)
    "agent_us": 100.0,  # agent specialists on the fake model, µs per dispatch (N=1,000)
    "latency_1000": 1.3,  # wall ≤ 1.3× critical path, agent, 50 ms, N=1,000
    "latency_10000": 2.0,  # N=10,000 within 2×
    "kb_per_item": 20.0,  # ≤ 20 KB per in-flight item
    "resume_100k_s": 1.0,  # resume ≤ 1 s per 100,000 events
    "import_ratio": 2.0,  # import hubspoke ≤ 2× import pydantic (fresh interpreters)
    "help_ratio": 1.5,  # hubspoke --help ≤ 1.5× a bare Typer + Rich app with the same commands
}


# -- measuring helpers -----------------------------------------------------------------------


class GCTimer:
    """Time spent in the cyclic garbage collector (via gc.callbacks)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.collections = 0
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start
            self.collections += 1


GC = GCTimer()


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fresh_store(tmp: Path, tag: str) -> tuple[SQLiteStore, Path]:
    path = tmp / f"{tag}.db"
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")
    return SQLiteStore(path), path


def player_work_seconds(n: int) -> float:
    """Time of the offline players alone (the fake model's 'thinking'): plan, N items, synth."""
    goal = wl.goal_input(n)
    t0 = time.perf_counter()
    wl.planner_player(Turn(role="planner", input=goal, brief={}, attempt=1, correction=None))
    t1 = time.perf_counter()
    turns = [
        Turn(role="worker", input=t, brief={}, attempt=1, correction=None)
        for t in wl.plan_of(goal)["items"]
    ]
    t2 = time.perf_counter()
    finds = [wl.worker_player(t).args for t in turns]
    t3 = time.perf_counter()
    turn = Turn(role="synth", input={"findings": finds}, brief={}, attempt=1, correction=None)
    t4 = time.perf_counter()
    wl.synth_player(turn)
    t5 = time.perf_counter()
    return (t1 - t0) + (t3 - t2) + (t5 - t4)


# -- one fan-out configuration -------------------------------------------------------------------


async def time_hubspoke(kind: str, n: int, latency: float, reps: int, tmp: Path) -> dict[str, Any]:
    wf = wl.fanout_workflow(kind, n, latency)
    walls: list[float] = []
    gcs: list[float] = []
    events = 0
    crit_requests = 0
    for rep in range(reps):
        store, path = fresh_store(tmp, f"{kind}-{n}-{rep}")
        # freeze_gc: the documented option for a process that runs big fan-outs (start-up objects
        # out of the collector's reach); the baseline runs after the same freeze.
        foreman = Foreman(wf, store, offline_latency=latency, freeze_gc=True)
        gc0 = GC.total
        t0 = time.perf_counter()
        result = await foreman.run(wl.goal_input(n))
        wall = time.perf_counter() - t0
        gcs.append(GC.total - gc0)
        if result.status != "completed":
            raise RuntimeError(f"{kind} N={n}: run ended {result.status}: {result.reason}")
        walls.append(wall)
        events = result.state.last_seq
        if rep == 0:
            evs = store.events(result.run_id)
            assert len(evs) == events
            crit_requests = wl.critical_requests(evs) if kind == "agent" else 3
            assert result.state.phases["fan"].accepted == n
        del result, foreman
        drop_store(store, path)
    wall = median(walls)
    return {
        "walls": walls,
        "wall_s": wall,
        "wall_mean_s": statistics.fmean(walls),
        "events": events,
        "events_per_s": events / wall,
        "gc_share": sum(gcs) / sum(walls),
        "critical_requests": crit_requests,
    }


async def time_baseline(n: int, latency: float, reps: int) -> dict[str, Any]:
    walls: list[float] = []
    gcs: list[float] = []
    for _ in range(reps):
        gc0 = GC.total
        t0 = time.perf_counter()
        report = await wl.baseline(n, latency)
        wall = time.perf_counter() - t0
        assert report.count == n
        walls.append(wall)
        gcs.append(GC.total - gc0)
    return {
        "walls": walls,
        "wall_s": median(walls),
        "wall_mean_s": statistics.fmean(walls),
        "gc_share": sum(gcs) / sum(walls),
        "critical_requests": 3,
    }


def reps_for(n: int, quick: bool) -> int:
    if quick:
        return 5 if n <= 100 else 3
    return 9 if n <= 100 else 7 if n <= 1000 else 3


async def warm_up(tmp: Path) -> None:
    """Import everything and build pydantic's validators before anything is timed."""
    for kind in ("function", "agent"):
        store, path = fresh_store(tmp, f"warm-{kind}")
        # freeze_gc as every measured foreman: the freeze (once per process) happens here, so
        # the baseline and the floor are measured after it too, whatever the sizes asked.
        await Foreman(wl.fanout_workflow(kind, 20), store, freeze_gc=True).run(wl.goal_input(20))
        drop_store(store, path)
    await wl.baseline(20)


async def fanout_suite(
    ns: list[int],
    quick: bool,
    tmp: Path,
    log: Callable[[str], None],
    latencies: tuple[float, ...] = (0.0, LATENCY),
) -> list[dict[str, Any]]:
    await warm_up(tmp)
    rows: list[dict[str, Any]] = []
    for latency in latencies:
        for n in ns:
            reps = reps_for(n, quick)
            if latency and n >= 10_000:
                reps = min(reps, 3)
            base = await time_baseline(n, latency, reps)
            fwork = await function_work_seconds(n) if not latency else 0.0
            pwork = player_work_seconds(n) if not latency else 0.0
            crit = 3 * latency
            base_row = {
                "workload": f"fanout-{n}",
                "specialists": BASELINE,
                "n": n,
                "latency_s": latency,
                "reps": reps,
                "work_s": fwork,
                **base,
            }
            if not latency:
                base_row["us_per_dispatch"] = (base["wall_s"] - fwork) / n * 1e6
                base_row["us_per_dispatch_mean"] = (base["wall_mean_s"] - fwork) / n * 1e6
            else:
                base_row["critical_path_s"] = crit
                base_row["wall_over_critical"] = base["wall_s"] / crit
            rows.append(base_row)
            log(_brief(base_row))
            if not latency:
                # What writing the journal's rows alone costs on top of the baseline
                # (benchmarks/floor.py): the least any journaled run can take.
                gc0 = GC.total
                walls = await time_floor(n, reps, tmp)
                gc_share = (GC.total - gc0) / sum(walls)
                us = (median(walls) - fwork) / n * 1e6
                floor_row = {
                    "workload": f"fanout-{n}",
                    "specialists": FLOOR,
                    "n": n,
                    "latency_s": latency,
                    "reps": reps,
                    "work_s": fwork,
                    "walls": walls,
                    "wall_s": median(walls),
                    "wall_mean_s": statistics.fmean(walls),
                    "us_per_dispatch": us,
                    "ratio_to_baseline": us / base_row["us_per_dispatch"],
                    "gc_share": gc_share,
                }
                rows.append(floor_row)
                log(_brief(floor_row))
            for kind in ("function", "agent"):
                m = await time_hubspoke(kind, n, latency, reps, tmp)
                work = fwork if kind == "function" else pwork
                row = {
                    "workload": f"fanout-{n}",
                    "specialists": kind,
                    "n": n,
                    "latency_s": latency,
                    "reps": reps,
                    "work_s": work,
                    "journal": "sqlite-wal",
                    **m,
                }
                if not latency:
                    us = (m["wall_s"] - work) / n * 1e6
                    row["us_per_dispatch"] = us
                    row["us_per_dispatch_mean"] = (m["wall_mean_s"] - work) / n * 1e6
                    row["ratio_to_baseline"] = us / base_row["us_per_dispatch"]
                else:
                    crit_s = m["critical_requests"] * latency
                    row["critical_path_s"] = crit_s
                    row["wall_over_critical"] = m["wall_s"] / crit_s
                    row["baseline_wall_over_critical"] = base_row["wall_over_critical"]
                rows.append(row)
                log(_brief(row))
    return rows


def _brief(row: dict[str, Any]) -> str:
    bits = [
        f"{row['workload']:>13} {row['specialists'][:8]:>8} {row['latency_s'] * 1000:>3.0f}ms",
        f"wall {row['wall_s'] * 1000:9.1f} ms",
    ]
    if "us_per_dispatch" in row:
        bits.append(f"{row['us_per_dispatch']:8.1f} µs/dispatch")
    if "ratio_to_baseline" in row:
        bits.append(f"×{row['ratio_to_baseline']:.1f} baseline")
    if "wall_over_critical" in row:
        bits.append(f"{row['wall_over_critical']:.2f}× critical path")
    return "  ".join(bits)


# -- memory (in a fresh child process per configuration) ---------------------------------------


class BusyMeter:
    """CPU time the rest of the machine used while the benchmark ran (from /proc/stat)."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._busy0 = self._busy()
        self._own0 = self._own()

    @staticmethod
    def _busy() -> float:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return float("nan")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    def other_cpus(self) -> float:
        """Average number of CPUs kept busy by other processes since this meter started."""
        wall = time.perf_counter() - self._t0
        other = (self._busy() - self._busy0) - (self._own() - self._own0)
        return max(0.0, other / wall) if wall > 0 else 0.0


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class InFlight:
    """Counts the fan-out's dispatches in flight from the foreman's events (a listener)."""

    def __init__(self) -> None:
        self.now = 0
        self.max = 0

    def __call__(self, event: Event) -> None:
        if event.phase != "fan":
            return
        if event.kind is EventKind.DISPATCH_STARTED:
            self.now += 1
            self.max = max(self.max, self.now)
        elif event.kind is EventKind.DISPATCH_FINISHED:
            self.now -= 1


async def _sampled_run(
    run: Callable[[], Any], counter: Callable[[], int], read: Callable[[], int]
) -> tuple[Any, int, int, int]:
    """Run `run()` while a sampler records memory at the highest count in flight seen."""
    best = [0, 0]  # in flight, memory
    done = asyncio.Event()

    async def sampler() -> None:
        while not done.is_set():
            now = counter()
            if now >= best[0]:
                mem = read()
                if now > best[0] or mem > best[1]:
                    best[0], best[1] = now, mem
            await asyncio.sleep(0.001)

    task = asyncio.create_task(sampler())
    try:
        result = await run()
    finally:
        done.set()
        await task
    return result, best[0], best[1], read()


def memory_child(kind: str, n: int, latency: float) -> dict[str, Any]:
    """Runs in a fresh process: RSS pass (untraced) then a tracemalloc pass."""
    tmp = Path(tempfile.mkdtemp(prefix="hubspoke-bench-mem-"))
    out: dict[str, Any] = {"kind": kind, "n": n, "latency_s": latency}
    try:

        async def one(mode: str) -> None:
            inflight = InFlight()
            if kind == "baseline":
                counter = _BaselineCounter()

                async def run() -> Any:
                    return await _counted_baseline(n, latency, counter)

                count: Callable[[], int] = lambda: counter.now  # noqa: E731
                max_count: Callable[[], int] = lambda: counter.max  # noqa: E731
            else:
                store, _ = fresh_store(tmp, f"mem-{mode}")
                foreman = Foreman(
                    wl.fanout_workflow(kind, n, latency),
                    store,
                    offline_latency=latency,
                    listeners=[inflight],
                )

                async def run() -> Any:
                    return await foreman.run(wl.goal_input(n))

                count = lambda: inflight.now  # noqa: E731
                max_count = lambda: inflight.max  # noqa: E731
            gc.collect()
            if mode == "rss":
                before = _rss_bytes()
                maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                _, at, mem, _ = await _sampled_run(run, count, _rss_bytes)
                maxrss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
                out["rss_in_flight"] = at
                out["max_in_flight"] = max_count()
                out["rss_bytes_per_in_flight"] = (mem - before) / max(1, at)
                out["peak_rss_delta_bytes"] = max(maxrss1 - maxrss0, mem - before)
            else:
                tracemalloc.start()
                before = tracemalloc.get_traced_memory()[0]
                _, at, mem, _ = await _sampled_run(
                    run, count, lambda: tracemalloc.get_traced_memory()[0]
                )
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                out["traced_in_flight"] = at
                out["traced_bytes_per_in_flight"] = (mem - before) / max(1, at)
                out["traced_peak_bytes"] = peak - before

        async def main() -> None:
            if kind != "baseline":
                store, path = fresh_store(tmp, "mem-warm")
                await Foreman(wl.fanout_workflow(kind, 20), store).run(wl.goal_input(20))
                drop_store(store, path)
            await wl.baseline(20)
            await one("rss")
            await one("traced")

        asyncio.run(main())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


class _BaselineCounter:
    def __init__(self) -> None:
        self.now = 0
        self.max = 0


async def _counted_baseline(n: int, latency: float, counter: _BaselineCounter) -> Any:
    """The baseline, counting coroutines in flight (same shape as `workloads.baseline`)."""
    roles = wl.function_roles(latency)
    plan_fn, work_fn, synth_fn = (r.function for r in roles)
    goal = wl.Goal.model_validate(wl.goal_input(n))
    plan = wl.Plan.model_validate(await plan_fn(goal, None))  # type: ignore[misc]

    async def one(raw: dict[str, Any]) -> wl.Finding:
        counter.now += 1
        counter.max = max(counter.max, counter.now)
        try:
            task = wl.Task.model_validate(raw)
            return wl.Finding.model_validate(await work_fn(task, None))  # type: ignore[misc]
        finally:
            counter.now -= 1

    findings = await asyncio.gather(*(one(t.model_dump()) for t in plan.items))
    synth_in = wl.Findings.model_validate({"findings": [f.model_dump() for f in findings]})
    return wl.Report.model_validate(await synth_fn(synth_in, None))  # type: ignore[misc]


def memory_suite(ns: list[int], log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for n in ns:
        for kind in ("baseline", "function", "agent"):
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--_memory-child",
                json.dumps({"kind": kind, "n": n, "latency": LATENCY}),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"memory child {kind} N={n} failed:\n{proc.stderr}")
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(row)
            log(
                f"memory {kind:>8} N={n:>6}: max in flight {row['max_in_flight']:>6}, "
                f"{row['rss_bytes_per_in_flight'] / 1024:6.1f} KB RSS / in-flight item, "
                f"{row['traced_bytes_per_in_flight'] / 1024:6.1f} KB traced / in-flight item, "
                f"peak RSS +{row['peak_rss_delta_bytes'] / 2**20:.1f} MB"
            )
    return rows


# -- resume -------------------------------------------------------------------------------------


async def resume_suite(reps: int, tmp: Path, log: Callable[[str], None]) -> dict[str, Any]:
    # function specialists: 3 events per item plus 14 for the run and its phases
    n = math.ceil((RESUME_EVENTS - 14) / 3)
    store, path = fresh_store(tmp, "resume")
    wf = wl.fanout_workflow("function", n)
    foreman = Foreman(wf, store)
    t0 = time.perf_counter()
    result = await foreman.run(wl.goal_input(n))
    gen_wall = time.perf_counter() - t0
    assert result.status == "completed", result.reason
    run_id, events = result.run_id, result.state.last_seq
    del result
    log(f"resume: generated {events} events ({n} items) in {gen_wall:.2f} s")
    reads, folds, resumes = [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        evs = store.events(run_id)
        t1 = time.perf_counter()
        state = RunState.fold(run_id, evs)
        t2 = time.perf_counter()
        assert state.status == "completed" and state.last_seq == events
        reads.append(t1 - t0)
        folds.append(t2 - t1)
        del evs, state
        fresh = Foreman(wf, store)
        t0 = time.perf_counter()
        again = await fresh.resume(run_id)
        resumes.append(time.perf_counter() - t0)
        assert again.status == "completed"
        del again
    drop_store(store, path)

    # An interrupted run: the fan-out is accepted, the synthesis never started. Resuming it folds
    # the journal, reloads every accepted artifact and then dispatches the synthesis once.
    store, path = fresh_store(tmp, "interrupted")
    crasher = Foreman(wf, store, listeners=[_crash_at_synthesis])
    with contextlib.suppress(_Crash):
        await crasher.run(wl.goal_input(n), run_id="run_interrupted")
    cut_events = len(store.events("run_interrupted"))  # seq is contiguous from 1
    record = store.run("run_interrupted")
    assert record is not None and record.status == "running", "the run was not interrupted"
    assert cut_events < events, "the interrupted run journaled as much as the finished one"
    store.close()
    pristine = tmp / "interrupted-pristine.db"
    os.replace(path, pristine)
    interrupted: list[float] = []
    rebuilt: list[float] = []
    for rep in range(reps):
        copy = tmp / f"interrupted-{rep}.db"
        shutil.copyfile(pristine, copy)
        st = SQLiteStore(copy)
        t0 = time.perf_counter()
        marks: list[float] = []

        def continuing(event: Event, marks: list[float] = marks) -> None:
            if event.kind is EventKind.RUN_RESUMED:  # state rebuilt; the run goes on from here
                marks.append(time.perf_counter())

        again = await Foreman(wf, st, listeners=[continuing]).resume("run_interrupted")
        interrupted.append(time.perf_counter() - t0)
        rebuilt.append(marks[0] - t0)
        assert again.status == "completed", again.reason
        assert again.state.phases["fan"].dispatched == n, "resume re-ran accepted items"
        assert again.state.phases["synth"].dispatched == 1, "resume did not run the synthesis"
        del again
        drop_store(st, copy)
    pristine.unlink()
    read, fold, res = median(reads), median(folds), median(resumes)
    out = {
        "interrupted_events": cut_events,
        "interrupted_resume_s": median(interrupted),
        "interrupted_rebuild_s": median(rebuilt),
        "interrupted_resume_s_per_10k": median(interrupted) / cut_events * 10_000,
        "events": events,
        "items": n,
        "reps": reps,
        "generate_s": gen_wall,
        "generate_events_per_s": events / gen_wall,
        "read_s": read,
        "fold_s": fold,
        "read_fold_s": read + fold,
        "resume_s": res,
        "read_fold_s_per_10k": (read + fold) / events * 10_000,
        "fold_s_per_10k": fold / events * 10_000,
        "resume_s_per_10k": res / events * 10_000,
        "resume_s_per_100k": res / events * 100_000,
        "read_fold_s_per_100k": (read + fold) / events * 100_000,
    }
    log(
        f"resume: read {read:.3f} s + fold {fold:.3f} s; Foreman.resume {res:.3f} s "
        f"({out['resume_s_per_10k'] * 1000:.0f} ms per 10,000 events); interrupted run "
        f"({cut_events} events) resumed and finished in {out['interrupted_resume_s']:.3f} s"
    )
    return out


class _Crash(BaseException):
    """Stands for a crash just as the synthesis phase starts (a BaseException: the journal
    drops a listener that raises an Exception and the run goes on)."""


def _crash_at_synthesis(event: Event) -> None:
    if event.kind is EventKind.PHASE_STARTED and event.phase == "synth":
        raise _Crash


# -- the sales pipeline ------------------------------------------------------------------------


async def sales_suite(reps: int, tmp: Path, log: Callable[[str], None]) -> dict[str, Any]:
    try:
        from hubspoke.examples.sales import DEMO_INPUT
        from hubspoke.loader import load_workflow

        wf = load_workflow("hubspoke.examples.sales:workflow")
    except Exception as e:  # not written yet, or broken: skip with a note
        note = f"skipped: hubspoke.examples.sales does not import yet ({type(e).__name__}: {e})"
        log("sales: " + note)
        return {"skipped": True, "note": note}
    out: dict[str, Any] = {"skipped": False, "workflow": wf.name}
    for latency in (0.0, LATENCY):
        walls, dispatches, events, crit, status = [], 0, 0, 0, ""
        for rep in range(reps):
            store, path = fresh_store(tmp, f"sales-{rep}")
            foreman = Foreman(wf, store, offline_latency=latency, freeze_gc=True)
            t0 = time.perf_counter()
            result = await foreman.run(DEMO_INPUT)
            walls.append(time.perf_counter() - t0)
            status = result.status
            events = result.state.last_seq
            dispatches = result.state.steps
            if rep == 0:
                crit = wl.critical_requests(store.events(result.run_id))
            drop_store(store, path)
        wall = median(walls)
        key = "latency_0" if not latency else "latency_50ms"
        out[key] = {
            "status": status,
            "reps": reps,
            "walls": walls,
            "wall_s": wall,
            "dispatches": dispatches,
            "events": events,
            "events_per_s": events / wall,
            "us_per_dispatch": wall / max(1, dispatches) * 1e6,
            "critical_requests": crit,
        }
        if latency and crit:
            out[key]["critical_path_s"] = crit * latency
            out[key]["wall_over_critical"] = wall / (crit * latency)
        log(
            f"sales {latency * 1000:.0f}ms: {status}, {dispatches} dispatches, "
            f"wall {wall * 1000:.1f} ms"
        )
    return out


# -- report ------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import pydantic
    import pydantic_ai

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", str(HERE), *args],
                capture_output=True,
                text=True,
                check=False,
                timeout=10,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "git_commit": git("rev-parse", "--short", "HEAD"),
        "git_dirty_src": bool(git("status", "--porcelain", "--", str(HERE.parent / "src"))),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "pydantic": pydantic.VERSION,
        "pydantic_ai": getattr(pydantic_ai, "__version__", "?"),
        "sqlite": __import__("sqlite3").sqlite_version,
        "tmpdir": tempfile.gettempdir(),
    }


def _f(x: Any, fmt: str = "{:.1f}") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return fmt.format(x)


def targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target of the issue at N=1,000 (and 10,000), with whether it holds."""
    rows = data["fanout"]
    out: list[dict[str, Any]] = []

    def find(spec: str, n: int, latency: float) -> dict[str, Any] | None:
        for r in rows:
            if r["specialists"] == spec and r["n"] == n and r["latency_s"] == latency:
                found: dict[str, Any] = r
                return found
        return None

    def add(name: str, value: float | None, limit: float, unit: str, note: str = "") -> None:
        holds = None if value is None else value <= limit
        out.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "unit": unit,
                "holds": holds,
                "note": note,
            }
        )

    if rows:
        r, base = find("function", 1000, 0.0), find(BASELINE, 1000, 0.0)
        low = find(FLOOR, 1000, 0.0)
        add(
            "function specialists, journal on, N=1,000: overhead ≤ 3× baseline per dispatch",
            r["ratio_to_baseline"] if r else None,
            TARGETS["function_ratio"],
            "× baseline",
            (
                f"{r['us_per_dispatch']:.1f} µs vs baseline {base['us_per_dispatch']:.1f} µs"
                + (
                    f"; the journal's rows alone: {low['ratio_to_baseline']:.2f}× baseline"
                    if low
                    else ""
                )
            )
            if r and base
            else "",
        )
        r = find("agent", 1000, 0.0)
        add(
            "agent specialists on the fake model, N=1,000: ≤ 100 µs per dispatch",
            r["us_per_dispatch"] if r else None,
            TARGETS["agent_us"],
            "µs",
        )
        for n, key in ((1000, "latency_1000"), (10_000, "latency_10000")):
            r = find("agent", n, LATENCY)
            add(
                f"agent, 50 ms latency, N={n:,}: wall ≤ {TARGETS[key]:g}× critical path",
                r["wall_over_critical"] if r else None,
                TARGETS[key],
                "× critical path",
                f"wall {r['wall_s'] * 1000:.0f} ms, critical path "
                f"{r['critical_path_s'] * 1000:.0f} ms"
                if r
                else "not measured",
            )
    for m in data.get("memory", []):
        if m["kind"] == "baseline":
            continue
        add(
            f"{m['kind']} specialists, 50 ms, N={m['n']:,}: ≤ 20 KB per in-flight item (RSS)",
            m["rss_bytes_per_in_flight"] / 1024,
            TARGETS["kb_per_item"],
            "KB",
            f"max in flight {m['max_in_flight']:,} of {m['n']:,}; traced "
            f"{m['traced_bytes_per_in_flight'] / 1024:.1f} KB",
        )
    start = data.get("startup")
    if start:
        imp, hlp = start["import"], start["help"]
        add(
            "import hubspoke ≤ 2× import pydantic (import alone, fresh interpreter each)",
            imp["ratio"],
            TARGETS["import_ratio"],
            "× pydantic",
            f"{imp['hubspoke_s'] * 1000:.1f} ms vs {imp['pydantic_s'] * 1000:.1f} ms, "
            f"medians of {start['reps']}",
        )
        add(
            "hubspoke --help ≤ 1.5× a bare Typer + Rich app with the same commands (whole process)",
            hlp["ratio"],
            TARGETS["help_ratio"],
            "× bare app",
            f"{hlp['hubspoke_s'] * 1000:.0f} ms vs {hlp['baseline_s'] * 1000:.0f} ms, "
            f"medians of {start['reps']}",
        )
    res = data.get("resume")
    if res:
        add(
            "resume (Foreman.resume of a finished run) ≤ 1 s per 100,000 events",
            res["resume_s_per_100k"],
            TARGETS["resume_100k_s"],
            "s",
            f"read {res['read_s']:.3f} s + fold {res['fold_s']:.3f} s for {res['events']:,} events",
        )
        add(
            "resume of an interrupted run: its state rebuilt (read, fold, reload the accepted "
            "artifacts) ≤ 1 s per 100,000 events",
            res["interrupted_rebuild_s"] / res["interrupted_events"] * 100_000,
            TARGETS["resume_100k_s"],
            "s",
            f"{res['interrupted_events']:,} events, {res['items']:,} artifacts; the synthesis "
            f"then runs, {res['interrupted_resume_s']:.2f} s in all",
        )
    return out


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, pydantic {m['pydantic']},"
        f" pydantic-ai {m['pydantic_ai']}, SQLite {m['sqlite']}; hubspoke at {m['git_commit']}"
        f"{' (+ uncommitted src changes)' if m['git_dirty_src'] else ''}; mode: "
        f"{'quick' if data['quick'] else 'full'}; {data['started']}; other processes kept "
        f"{m.get('other_cpus_busy', float('nan')):.2f} CPUs busy on average meanwhile",
    ]
    if m.get("other_cpus_busy", 0.0) > 0.15:
        lines.append(
            "\n**Warning: other processes were using the CPU during this run; its figures are "
            "not comparable with a quiet run.**"
        )
    fan = [
        "",
        "### Fan-out: plan → N items → synthesis (journal: SQLite, WAL)",
        "",
        "| workload | specialists | latency | reps | wall ms (median) | µs / dispatch | × baseline "
        "| critical path ms | wall / critical | events | events/s | GC share (all reps) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    if data["fanout"]:
        lines += fan
    for r in data["fanout"]:
        lines.append(
            f"| {r['workload']} | {r['specialists']} | {r['latency_s'] * 1000:.0f} ms "
            f"| {r['reps']} "
            f"| {_f(r['wall_s'] * 1000)} | {_f(r.get('us_per_dispatch'))} "
            f"| {_f(r.get('ratio_to_baseline'), '{:.1f}×')} "
            f"| {_f(r['critical_path_s'] * 1000, '{:.0f}') if 'critical_path_s' in r else '–'} "
            f"| {_f(r.get('wall_over_critical'), '{:.2f}×')} "
            f"| {r.get('events', '–')} | {_f(r.get('events_per_s'), '{:,.0f}')} "
            f"| {_f(r['gc_share'] * 100, '{:.0f}%')} |"
        )
    if data.get("memory"):
        lines += [
            "",
            "### Memory at 50 ms latency (fresh process per row)",
            "",
            "| N | specialists | max in flight | KB / in-flight item (RSS) "
            "| KB / in-flight item (tracemalloc) | peak RSS Δ MB | tracemalloc peak MB |",
            "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for r in data["memory"]:
            lines.append(
                f"| {r['n']:,} | {r['kind']} | {r['max_in_flight']:,} "
                f"| {r['rss_bytes_per_in_flight'] / 1024:.1f} "
                f"| {r['traced_bytes_per_in_flight'] / 1024:.1f} "
                f"| {r['peak_rss_delta_bytes'] / 2**20:.1f} "
                f"| {r['traced_peak_bytes'] / 2**20:.1f} |"
            )
    res = data.get("resume")
    if res:
        per10k = res["events"] / 10_000

        def step(name: str, seconds: float, per: float | None = None) -> str:
            ms = "–" if per is None else f"{seconds / per * 1000:.1f} ms"
            return f"| {name} | {seconds:.3f} | {ms} |"

        interrupted = (
            f"Foreman.resume of an interrupted run ({res['interrupted_events']:,} events; "
            f"reloads {res['items']:,} artifacts, then runs the synthesis)"
        )
        lines += [
            "",
            f"### Resume from a journal of {res['events']:,} events ({res['items']:,} items)",
            "",
            "| step | median s | per 10,000 events |",
            "| --- | ---: | ---: |",
            step(
                f"generate the run ({res['generate_events_per_s']:,.0f} events/s)",
                res["generate_s"],
            ),
            step("store.events(run_id)", res["read_s"], per10k),
            step("RunState.fold(...)", res["fold_s"], per10k),
            step("read + fold", res["read_fold_s"], per10k),
            step("Foreman.resume (finished run)", res["resume_s"], per10k),
            step(interrupted, res["interrupted_resume_s"], res["interrupted_events"] / 10_000),
            step(
                "… of which rebuilding its state, up to `run.resumed` (read, fold, reload the "
                "artifacts)",
                res["interrupted_rebuild_s"],
                res["interrupted_events"] / 10_000,
            ),
        ]
    sales = data.get("sales")
    if sales:
        lines += ["", "### Sales pipeline (offline model)", ""]
        if sales.get("skipped"):
            lines.append(sales["note"])
        else:
            lines += [
                "| latency | status | dispatches | events | wall ms | µs / dispatch "
                "| critical path ms | wall / critical |",
                "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
            ]
            for key, lat in (("latency_0", 0), ("latency_50ms", 50)):
                s = sales[key]
                lines.append(
                    f"| {lat} ms | {s['status']} | {s['dispatches']} | {s['events']} "
                    f"| {s['wall_s'] * 1000:.1f} | {s['us_per_dispatch']:.0f} "
                    f"| {_f(s.get('critical_path_s', float('nan')) * 1000, '{:.0f}')} "
                    f"| {_f(s.get('wall_over_critical'), '{:.2f}×')} |"
                )
    start = data.get("startup")
    if start:
        imp, hlp = start["import"], start["help"]
        lines += [
            "",
            f"### Start-up (a fresh process per measure, medians of {start['reps']})",
            "",
            "| measure | hubspoke ms | baseline | baseline ms | × baseline |",
            "| --- | ---: | --- | ---: | ---: |",
            f"| import (the statement alone) | {imp['hubspoke_s'] * 1000:.1f} | import pydantic "
            f"| {imp['pydantic_s'] * 1000:.1f} | {imp['ratio']:.2f}× |",
            f"| `--help` (the whole process) | {hlp['hubspoke_s'] * 1000:.1f} | bare Typer + Rich "
            f"app, same commands | {hlp['baseline_s'] * 1000:.1f} | {hlp['ratio']:.2f}× |",
        ]
    lines += [
        "",
        "### Targets",
        "",
        "| target | measured | limit | verdict |",
        "| --- | ---: | ---: | --- |",
    ]
    for t in data["targets"]:
        value = "–" if t["value"] is None else f"{t['value']:.2f} {t['unit']}"
        holds = "not measured" if t["holds"] is None else ("holds" if t["holds"] else "**misses**")
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(f"| {t['target']}{note} | {value} | {t['limit']:g} {t['unit']} | {holds} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer sizes and repetitions (under two minutes on 2 cores)",
    )
    parser.add_argument(
        "--json",
        default=str(HERE / "results" / "latest.json"),
        help="where to write the figures (default: benchmarks/results/latest.json)",
    )
    parser.add_argument(
        "--only",
        default="fanout,memory,resume,sales,startup",
        help="comma-separated suites to run (fanout, memory, resume, sales, startup)",
    )
    parser.add_argument("--sizes", help="comma-separated fan-out sizes instead of the default set")
    parser.add_argument(
        "--latencies",
        default=f"0,{LATENCY:g}",
        help="comma-separated simulated model latencies in seconds (default: 0,0.05)",
    )
    parser.add_argument("--_memory-child", dest="memory_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        spec = json.loads(args.memory_child)
        print(json.dumps(memory_child(spec["kind"], spec["n"], spec["latency"])))
        return 0

    suites = set(args.only.split(","))
    ns = [10, 100, 1000] if args.quick else [10, 100, 1000, 10_000]
    if args.sizes:
        ns = [int(x) for x in args.sizes.split(",")]
    latencies = tuple(float(x) for x in args.latencies.split(","))
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    data: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "started": started,
        "latency_s": LATENCY,
        "fanout": [],
    }
    busy = BusyMeter()
    tmp = Path(tempfile.mkdtemp(prefix="hubspoke-bench-"))
    try:
        if "fanout" in suites:
            data["fanout"] = asyncio.run(fanout_suite(ns, args.quick, tmp, log, latencies))
        if "memory" in suites:
            mem_ns = [n for n in ns if n >= 1000] or [1000]
            data["memory"] = memory_suite(mem_ns, log)
        if "resume" in suites:
            data["resume"] = asyncio.run(resume_suite(2 if args.quick else 5, tmp, log))
        if "sales" in suites:
            data["sales"] = asyncio.run(sales_suite(3 if args.quick else 7, tmp, log))
        if "startup" in suites:
            data["startup"] = startup_suite(7 if args.quick else 15, log)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    data["targets"] = targets(data)
    data["machine"]["other_cpus_busy"] = busy.other_cpus()
    data["elapsed_s"] = time.perf_counter() - t_start
    text = markdown(data)
    print(text)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    log(f"wrote {out} ({data['elapsed_s']:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
