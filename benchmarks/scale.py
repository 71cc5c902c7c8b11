#!/usr/bin/env python
"""How the fan-out's wall time grows with N, against the plain asyncio loop and the critical path.

    .venv/bin/python benchmarks/scale.py                    # N = 1,000 … 100,000 (~10 min, 2 cores)
    .venv/bin/python benchmarks/scale.py --quick            # N = 1,000, 3,000, 10,000 (~1 min)
    .venv/bin/python benchmarks/scale.py --max-n 10000 --executor pool:2 --executor ray
    .venv/bin/python benchmarks/scale.py --db postgresql://me@127.0.0.1/bench   # + Postgres

The workload is `benchmarks/workloads.py`'s fan-out (plan → N items, all in flight → synthesis)
at 50 ms of model (or function) latency, so the critical path is 3 × 50 ms = 150 ms whatever N
is (computed from the journal with `workloads.critical_requests` for agents). Series, each
measured at every N:

* the plain asyncio + pydantic loop (`workloads.baseline`);
* function and agent specialists on the local executor, journal in SQLite (WAL);
* the same on each executor given with ``--executor SPEC`` (parsed as ``hubspoke run
  --executor`` parses it), journal in SQLite;
* with ``--db URL``, the same on the local executor with the journal in PostgreSQL (a fresh
  database per run, made next to the one the URL names; its user must be allowed to create
  databases).

Every run is a fresh process (no memory or collector state carried over between sizes), warmed
up with a 20-item run, with a time-out. A series that fails or times out at some N is not run at
larger N. Prints Markdown tables (the figures, then each target of issue 14 with holds / misses),
writes every figure to JSON (default `benchmarks/results/scale.json`) and draws
`docs/images/scale.png` (matplotlib, Agg backend).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import run as bench  # noqa: E402
import workloads as wl  # noqa: E402

from hubspoke import Foreman, SQLiteStore  # noqa: E402
from hubspoke.executors.named import opened_executor as executor_from_spec  # noqa: E402
from hubspoke.journal import Store  # noqa: E402
from hubspoke.journal.location import redact_url  # noqa: E402

SIZES = (1_000, 3_000, 10_000, 30_000, 100_000)
QUICK_SIZES = (1_000, 3_000, 10_000)
KINDS = ("function", "agent")
BASELINE = bench.BASELINE
PG_TARGET = 2.0
"""Postgres's journal events per second within 2× of SQLite's (issue 14)."""
PLOT = ROOT / "docs" / "images" / "scale.png"
RESULTS = HERE / "results" / "scale.json"
WARM_N = 20


@dataclass(frozen=True, slots=True)
class Series:
    """One line of the plot: who runs the items, where, and with which journal."""

    kind: str  # "baseline", "function" or "agent"
    executor: str = "local"  # an --executor SPEC
    store: str = "sqlite"  # "sqlite" or "postgres"

    @property
    def label(self) -> str:
        if self.kind == "baseline":
            return BASELINE
        store = "Postgres" if self.store == "postgres" else "SQLite"
        return f"{self.kind}, {self.executor}, {store}"


# -- one run, in a fresh child process -----------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """The process's largest RSS so far (`ru_maxrss`; Linux counts RSS per thread and syncs
    the counts lazily, so it may lag the current RSS by a few pages: the larger of the two)."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, _rss_bytes())


async def _measure_baseline(n: int, latency: float) -> dict[str, Any]:
    await wl.baseline(WARM_N)
    gc.collect()
    rss0, cpu0, gc0 = _rss_bytes(), time.process_time(), bench.GC.total
    t0 = time.perf_counter()
    report = await wl.baseline(n, latency)
    wall = time.perf_counter() - t0
    cpu, gc_s, peak = time.process_time() - cpu0, bench.GC.total - gc0, _peak_rss_bytes()
    peak = max(peak, rss0)
    if report.count != n:
        raise RuntimeError(f"baseline N={n}: {report.count} findings, not {n}")
    return {
        "wall_s": wall,
        "critical_requests": 3,
        "events": None,
        "cpu_s": cpu,
        "gc_s": gc_s,
        "rss_before_bytes": rss0,
        "peak_rss_bytes": peak,
    }


async def _measure_hubspoke(
    kind: str, n: int, latency: float, executor_spec: str, store_kind: str, db: str | None
) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        executor = stack.enter_context(executor_from_spec(executor_spec))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hubspoke-scale-")))

        def new_store(tag: str) -> Store:
            store: Store
            if store_kind == "postgres":
                import stores  # benchmarks/stores.py: a fresh database per run, dropped after

                from hubspoke import PostgresStore

                assert db is not None
                store = PostgresStore(stack.enter_context(stores.fresh_database(db)))
            else:
                store = SQLiteStore(tmp / f"{tag}.db")
            stack.callback(store.close)  # closed before its database is dropped (LIFO)
            return store

        warm = Foreman(wl.fanout_workflow(kind, WARM_N), new_store("warm"), executor=executor)
        await warm.run(wl.goal_input(WARM_N))
        store = new_store("run")
        foreman = Foreman(
            wl.fanout_workflow(kind, n, latency),
            store,
            executor=executor,
            offline_latency=latency,
            freeze_gc=True,  # as benchmarks/run.py: the option a process of big fan-outs sets
        )
        del warm
        gc.collect()
        rss0, cpu0, gc0 = _rss_bytes(), time.process_time(), bench.GC.total
        t0 = time.perf_counter()
        result = await foreman.run(wl.goal_input(n))
        wall = time.perf_counter() - t0
        cpu, gc_s, peak = time.process_time() - cpu0, bench.GC.total - gc0, _peak_rss_bytes()
        peak = max(peak, rss0)
        if result.status != "completed":
            raise RuntimeError(f"{kind} N={n}: the run ended {result.status}: {result.reason}")
        accepted = result.state.phases["fan"].accepted
        if accepted != n:
            raise RuntimeError(f"{kind} N={n}: {accepted} items accepted, not {n}")
        # Read after the timed run (and after the peak RSS is taken).
        crit = wl.critical_requests(store.events(result.run_id)) if kind == "agent" else 3
        return {
            "wall_s": wall,
            "critical_requests": crit,
            "events": result.state.last_seq,
            "cpu_s": cpu,
            "gc_s": gc_s,
            "rss_before_bytes": rss0,
            "peak_rss_bytes": peak,
        }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measured run (in the child process): `spec` has kind, n, latency, executor, store
    and db. Returns the raw measures (seconds, bytes, counts)."""
    kind, n, latency = spec["kind"], int(spec["n"]), float(spec["latency"])
    if kind == "baseline":
        return asyncio.run(_measure_baseline(n, latency))
    return asyncio.run(
        _measure_hubspoke(kind, n, latency, spec["executor"], spec["store"], spec.get("db"))
    )


def run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    """`child(spec)` in a fresh interpreter (its own session, killed whole on time-out).

    Returns the measures, or ``{"error": ...}`` / ``{"timed_out": ...}``."""
    # The spec goes on stdin, not the command line: a --db URL may hold a password.
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--_child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(json.dumps(spec), timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the child and whatever it started
        proc.communicate()
        return {"timed_out": f"no result after {timeout:g} s (--timeout)"}
    for line in reversed(out.strip().splitlines()):
        with contextlib.suppress(ValueError):
            found = json.loads(line)
            if isinstance(found, dict):
                return found
    tail = err.strip().splitlines()[-1:] or [f"exit code {proc.returncode}, no output"]
    return {"error": tail[0]}


# -- the sweep -------------------------------------------------------------------------------


def derive(series: Series, n: int, latency: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of one series at one N, from its repetitions (the median wall's run)."""
    walls = [r["wall_s"] for r in runs]
    mid = sorted(runs, key=lambda r: r["wall_s"])[(len(runs) - 1) // 2]
    wall = statistics.median(walls)
    crit = mid["critical_requests"] * latency
    events = mid["events"]
    return {
        "series": series.label,
        "kind": series.kind,
        "executor": series.executor,
        "store": series.store,
        "n": n,
        "status": "ok",
        "reps": len(runs),
        "walls": walls,
        "wall_s": wall,
        "critical_requests": mid["critical_requests"],
        "critical_path_s": crit,
        "wall_over_critical": wall / crit,
        "us_per_item": wall / n * 1e6,
        "us_per_item_above_critical": (wall - crit) / n * 1e6,
        "cpu_s": mid["cpu_s"],
        "cpu_us_per_item": mid["cpu_s"] / n * 1e6,
        "cpu_over_critical": mid["cpu_s"] / crit,
        "gc_share": mid["gc_s"] / mid["wall_s"],
        "events": events,
        "events_per_s": None if events is None else events / wall,
        "rss_before_bytes": mid["rss_before_bytes"],
        "peak_rss_bytes": mid["peak_rss_bytes"],
    }


def sweep(
    series: Sequence[Series],
    sizes: Sequence[int],
    reps_of: Callable[[int], int],
    latency: float,
    db: str | None,
    timeout: float,
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Every series at every N, repetitions interleaved (A, B, A, B, …: the machine drifts)."""
    rows: list[dict[str, Any]] = []
    broken: dict[Series, str] = {}
    for n in sizes:
        runs: dict[Series, list[dict[str, Any]]] = {s: [] for s in series}
        failed: dict[Series, dict[str, Any]] = {}
        for rep in range(reps_of(n)):
            for s in series:
                if s in broken or s in failed:
                    continue
                spec = {"kind": s.kind, "n": n, "latency": latency, "executor": s.executor}
                spec |= {"store": s.store, "db": db if s.store == "postgres" else None}
                got = run_child(spec, timeout)
                if "wall_s" in got:
                    runs[s].append(got)
                    log(
                        f"N={n:>7,} {s.label:<32} rep {rep + 1}: wall {got['wall_s']:8.3f} s, "
                        f"CPU {got['cpu_s']:8.3f} s, peak RSS "
                        f"{got['peak_rss_bytes'] / 2**20:6.0f} MB"
                    )
                else:
                    status = "timed out" if "timed_out" in got else "failed"
                    why = got.get("timed_out") or got.get("error", "?")
                    failed[s] = {"status": status, "error": why}
                    log(f"N={n:>7,} {s.label:<32} rep {rep + 1}: {status}: {why}")
        for s in series:
            base = {"series": s.label, "kind": s.kind, "executor": s.executor, "store": s.store}
            if s in broken:
                rows.append({**base, "n": n, "status": "skipped", "error": broken[s]})
            elif s in failed:
                rows.append({**base, "n": n, **failed[s]})
                broken[s] = f"{failed[s]['status']} at N={n:,}"
            else:
                rows.append(derive(s, n, latency, runs[s]))
    return rows


# -- targets ---------------------------------------------------------------------------------


def targets(rows: list[dict[str, Any]], latency: float) -> list[dict[str, Any]]:
    """Issue 14's targets, per series measured, each with whether it holds."""
    ok = [r for r in rows if r["status"] == "ok"]

    def find(n: int, **match: str) -> dict[str, Any] | None:
        for r in ok:
            if r["n"] == n and all(r[k] == v for k, v in match.items()):
                return r
        return None

    out: list[dict[str, Any]] = []
    ms = f"{latency * 1000:g} ms"
    wanted: list[tuple[int, tuple[str, ...], float]] = [
        (1_000, ("agent",), bench.TARGETS["latency_1000"]),
        (10_000, KINDS, bench.TARGETS["latency_10000"]),
    ]
    hubspoke_series = sorted(
        {(r["kind"], r["executor"], r["store"]) for r in rows if r["kind"] != "baseline"},
        key=lambda k: (k[1] != "local" or k[2] != "sqlite", k),
    )
    for n, kinds, limit in wanted:
        base = find(n, kind="baseline")
        for kind, executor, store_kind in hubspoke_series:
            if kind not in kinds:
                continue
            r = find(n, kind=kind, executor=executor, store=store_kind)
            label = Series(kind, executor, store_kind).label
            note = "not measured"
            if r:
                note = (
                    f"wall {r['wall_s']:.3f} s, critical path {r['critical_path_s']:.3f} s; "
                    f"this process's CPU alone {r['cpu_s']:.3f} s = "
                    f"{r['cpu_over_critical']:.2f}× the critical path"
                )
                if base:
                    note += f"; the baseline {base['wall_over_critical']:.2f}×"
            out.append(
                {
                    "target": f"N={n:,}, {ms} latency: wall ≤ {limit:g}× the critical path",
                    "series": label,
                    "value": r["wall_over_critical"] if r else None,
                    "limit": limit,
                    "unit": "× critical path",
                    "holds": None if r is None else r["wall_over_critical"] <= limit,
                    "note": note,
                }
            )
    for r in ok:
        if r["store"] != "postgres":
            continue
        lite = find(r["n"], kind=r["kind"], executor=r["executor"], store="sqlite")
        value = lite["events_per_s"] / r["events_per_s"] if lite else None
        out.append(
            {
                "target": f"N={r['n']:,}: Postgres journal events/s within {PG_TARGET:g}× of "
                "SQLite's",
                "series": r["series"],
                "value": value,
                "limit": PG_TARGET,
                "unit": "× (SQLite events/s ÷ Postgres events/s)",
                "holds": None if value is None else value <= PG_TARGET,
                "note": (
                    f"{r['events_per_s']:,.0f} vs {lite['events_per_s']:,.0f} events/s"
                    if lite
                    else "SQLite not measured"
                ),
            }
        )
    return out


# -- printing and plotting -------------------------------------------------------------------


def _f(x: Any, fmt: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return fmt.format(x)


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    busy = m.get("other_cpus_busy", float("nan"))
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, pydantic "
        f"{m['pydantic']}, pydantic-ai {m['pydantic_ai']}, SQLite {m['sqlite']}; hubspoke at "
        f"{m['git_commit']}{' (+ uncommitted src changes)' if m['git_dirty_src'] else ''}; "
        f"{data['started']}; latency {data['latency_s'] * 1000:g} ms; other processes kept "
        f"{busy:.2f} CPUs busy on average meanwhile",
    ]
    if data.get("db"):
        lines.append(f"Postgres: {data['db']}")
    if busy > 0.15:
        lines.append(
            "\n**Warning: other processes were using the CPU during this run; its figures are "
            "not comparable with a quiet run.**"
        )
    lines += [
        "",
        "### Fan-out at 50 ms: plan → N items → synthesis (a fresh process per run)"
        if data["latency_s"] == bench.LATENCY
        else f"### Fan-out at {data['latency_s'] * 1000:g} ms: plan → N items → synthesis",
        "",
        "| N | series | reps | wall s | critical path s | wall / critical | µs / item above "
        "the critical path | CPU µs / item | CPU / critical | events/s | GC share | peak RSS MB |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in data["rows"]:
        if r["status"] != "ok":
            lines.append(
                f"| {r['n']:,} | {r['series']} | – | {r['status']}: {r['error']} | | | | | | | | |"
            )
            continue
        lines.append(
            f"| {r['n']:,} | {r['series']} | {r['reps']} | {r['wall_s']:.3f} "
            f"| {r['critical_path_s']:.3f} | {r['wall_over_critical']:.2f}× "
            f"| {r['us_per_item_above_critical']:.1f} | {r['cpu_us_per_item']:.1f} "
            f"| {r['cpu_over_critical']:.2f}× | {_f(r['events_per_s'], '{:,.0f}')} "
            f"| {r['gc_share'] * 100:.0f}% | {r['peak_rss_bytes'] / 2**20:,.0f} |"
        )
    lines += [
        "",
        "*CPU* is the measured process's CPU time during the run (the foreman, its journal and, on "
        "the local executor, every specialist; for the baseline, the loop). All of it runs on one "
        "core, one dispatch after another, so wall ≥ the critical path and wall ≳ CPU: a "
        "target of k× the critical path holds only while CPU / critical stays under about k.",
        "",
        "### Targets (issue 14)",
        "",
        "| target | series | measured | limit | verdict |",
        "| --- | --- | ---: | ---: | --- |",
    ]
    for t in data["targets"]:
        value = "–" if t["value"] is None else f"{t['value']:.2f}×"
        holds = "not measured" if t["holds"] is None else ("holds" if t["holds"] else "**misses**")
        lines.append(
            f"| {t['target']} ({t['note']}) | {t['series']} | {value} | {t['limit']:g}× | {holds} |"
        )
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path) -> None:
    """Wall time against N (log-log) per series, with the critical path and 2× it; beside it,
    µs per item above the critical path, with the allowance per item that 2× leaves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ok = [r for r in data["rows"] if r["status"] == "ok"]
    labels = list(dict.fromkeys(r["series"] for r in data["rows"]))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), layout="constrained")
    for label in labels:
        mine = sorted((r for r in ok if r["series"] == label), key=lambda r: r["n"])
        if not mine:
            continue
        ns = [r["n"] for r in mine]
        style = {"linestyle": "--", "color": "0.35"} if label == BASELINE else {}
        left.plot(ns, [r["wall_s"] for r in mine], marker="o", label=label, **style)
        above = [(r["n"], r["us_per_item_above_critical"]) for r in mine]
        above = [(n, us) for n, us in above if us > 0]
        if above:
            right.plot(*zip(*above, strict=True), marker="o", label=label, **style)
    crit = [r["critical_path_s"] for r in ok]
    ns_all = sorted({r["n"] for r in data["rows"]})
    if crit and ns_all:
        c = statistics.median(crit)
        span = [ns_all[0], ns_all[-1]]
        left.plot(span, [c, c], color="black", linewidth=1, label=f"critical path ({c:g} s)")
        left.plot(span, [1.3 * c] * 2, color="orange", linestyle=":", label="1.3× (N=1,000 target)")
        left.plot(span, [2 * c, 2 * c], color="red", linestyle=":", label="2× critical path")
        grid = [ns_all[0] * (ns_all[-1] / ns_all[0]) ** (i / 40) for i in range(41)]
        right.plot(
            grid,
            [c / n * 1e6 for n in grid],
            color="red",
            linestyle=":",
            label="allowance for ≤ 2× (critical path / N)",
        )
    m = data["machine"]
    busy = m.get("other_cpus_busy", 0.0)
    where = f"{m['nproc']} CPUs{', shared with other work' if busy > 0.15 else ''}"
    left.set(
        xscale="log",
        yscale="log",
        xlabel="items in the fan-out (N)",
        ylabel="wall time (s)",
        title=f"Fan-out wall time at {data['latency_s'] * 1000:g} ms latency ({where})",
    )
    right.set(
        xscale="log",
        yscale="log",
        xlabel="items in the fan-out (N)",
        ylabel="µs per item above the critical path",
        title="(wall − critical path) / N",
    )

    def number(v: float, _: object = None) -> str:
        return f"{v:,.0f}" if v >= 10 else f"{v:g}"

    def two_five(v: float, _: object = None) -> str:  # minor ticks: 2 and 5 of each decade
        lead = round(v / 10 ** math.floor(math.log10(v)), 6) if v > 0 else 0
        return number(v) if lead in (2, 5) else ""

    plain = FuncFormatter(number)
    for ax in (left, right):
        ax.set_xticks(ns_all)
        ax.xaxis.set_major_formatter(plain)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(FuncFormatter(two_five))
        ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"hubspoke at {m['git_commit']}, {data['started']}: plan → N items → synthesis",
        fontsize=9,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- command line ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1,000, 3,000, 10,000, once")
    parser.add_argument("--max-n", type=int, help="leave out the sizes above this N")
    parser.add_argument("--sizes", help="comma-separated sizes instead of the default set")
    parser.add_argument(
        "--reps",
        type=int,
        help="runs per series and N (default: 3 up to N=10,000 and 1 above; --quick: 1)",
    )
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="specialists: function,agent (default both)"
    )
    parser.add_argument(
        "--executor",
        action="append",
        default=[],
        metavar="SPEC",
        help="another series on this executor, as `hubspoke run --executor SPEC` takes it "
        "(repeatable); the local executor is always measured",
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help="also measure with the journal on this PostgreSQL server (postgresql://...; its "
        "user must be allowed to create databases: one is made and dropped per run)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=bench.LATENCY,
        help="seconds of model (or function) latency, > 0 (default 0.05)",
    )
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds one run may take (default 1800)"
    )
    parser.add_argument("--json", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    parser.add_argument("--plot", type=Path, default=PLOT, help=f"default: {PLOT}")
    parser.add_argument(
        "--replot",
        type=Path,
        metavar="JSON",
        help="measure nothing: print the tables and draw the plot from this earlier result",
    )
    parser.add_argument("--_child", dest="child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        try:
            print(json.dumps(child(json.loads(sys.stdin.read()))), flush=True)
        except BaseException as e:  # a result line either way; the traceback on stderr
            traceback.print_exc()
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)
            return 1
        return 0

    if args.replot:
        earlier: dict[str, Any] = json.loads(args.replot.read_text())
        print(markdown(earlier))
        plot(earlier, args.plot)
        print(f"drew {args.plot} from {args.replot}", file=sys.stderr)
        return 0

    if args.latency <= 0:
        parser.error(f"--latency {args.latency:g}: give seconds > 0 (the critical path is 3×)")
    sizes = list(QUICK_SIZES if args.quick else SIZES)
    if args.sizes:
        try:
            sizes = sorted({int(s) for s in args.sizes.split(",")})
        except ValueError:
            parser.error(f"--sizes {args.sizes!r}: give whole numbers separated by commas")
    if args.max_n is not None:
        sizes = [n for n in sizes if n <= args.max_n]
    if not sizes or min(sizes) < 1:
        parser.error("no sizes to measure: give --sizes of whole numbers ≥ 1, or a larger --max-n")
    kinds = [k for k in args.kinds.split(",") if k]
    if not kinds or set(kinds) - set(KINDS):
        parser.error(f"--kinds {args.kinds!r}: give function, agent or function,agent")
    series = [Series("baseline")]
    for executor in dict.fromkeys(["local", *args.executor]):
        series += [Series(kind, executor) for kind in kinds]
    if args.db:
        series += [Series(kind, "local", "postgres") for kind in kinds]

    def reps_of(n: int) -> int:
        if args.reps:
            return max(1, int(args.reps))
        return 1 if args.quick or n > 10_000 else 3

    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", file=sys.stderr, flush=True)

    data: dict[str, Any] = {
        "machine": bench.machine(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "latency_s": args.latency,
        "sizes": sizes,
        "series": [s.label for s in series],
        "db": redact_url(args.db) if args.db else None,
        "timeout_s": args.timeout,
    }
    busy = bench.BusyMeter()
    data["rows"] = sweep(series, sizes, reps_of, args.latency, args.db, args.timeout, log)
    data["machine"]["other_cpus_busy"] = busy.other_cpus()
    data["targets"] = targets(data["rows"], args.latency)
    data["elapsed_s"] = time.perf_counter() - t_start
    print(markdown(data))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n")
    plot(data, args.plot)
    log(f"wrote {args.json} and {args.plot} ({data['elapsed_s']:.0f} s in all)")
    return 0 if all(r["status"] == "ok" for r in data["rows"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
