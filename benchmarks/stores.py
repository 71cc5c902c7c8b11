#!/usr/bin/env python
"""Journal events per second on the fan-out workload: PostgresStore against SQLiteStore.

    .venv/bin/python benchmarks/stores.py                      # starts a throw-away server
    .venv/bin/python benchmarks/stores.py --db postgresql://me@db.example/bench
    .venv/bin/python benchmarks/stores.py --sizes 1000 --reps 3 --json stores.json

Both stores run the same fan-out workflows (benchmarks/workloads.py: plan → N items → synthesis,
every item in flight, no model latency, so the journal's writes weigh as much as they can) in
the same invocation, repetitions interleaved (SQLite, Postgres, SQLite, ...) because the
machine's speed drifts. Each repetition gets a fresh store: a new SQLite file (WAL,
``synchronous=NORMAL``), or a new database on the server (made and dropped outside the timed
run). **events/s** = journal events of the run / wall; the figure is the median of the
repetitions; **× SQLite** is Postgres's wall over SQLite's. Issue 14's target: Postgres within
2× of SQLite.

Without `--db`, a PostgreSQL server is started from Debian's binaries on 127.0.0.1 with fsync on
(tests/pgserver.py, as the tests do, but durable); with `--db`, the URL must name a database
whose user may create and drop databases (a fresh one is made per repetition next to it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import workloads as wl  # noqa: E402

from hubspoke import Foreman, PostgresStore, SQLiteStore  # noqa: E402
from hubspoke.journal import Store  # noqa: E402
from hubspoke.journal.location import redact_url  # noqa: E402

TARGET = 2.0
"""Postgres's wall ≤ 2× SQLite's on the same workload (issue 14)."""


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A new empty database on `url`'s server; yields its URL, drops it afterwards."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield _with_database(url, name)
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def one_run(store: Store, kind: str, n: int) -> tuple[float, int]:
    """Wall seconds and journal events of one fan-out run on `store`."""
    foreman = Foreman(wl.fanout_workflow(kind, n), store, freeze_gc=True)
    t0 = time.perf_counter()
    result = await foreman.run(wl.goal_input(n))
    wall = time.perf_counter() - t0
    if result.status != "completed":
        raise RuntimeError(f"{kind} N={n}: run ended {result.status}: {result.reason}")
    assert len(store.events(result.run_id)) == result.state.last_seq
    return wall, result.state.last_seq


async def measure(url: str, kinds: list[str], sizes: list[int], reps: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="hubspoke-bench-stores-") as tmp:
        # Warm up: imports, validators, the server's caches.
        for kind in kinds:
            sqlite = SQLiteStore(Path(tmp) / f"warm-{kind}.db")
            await one_run(sqlite, kind, 20)
            sqlite.close()
            with fresh_database(url) as db:
                pg = PostgresStore(db)
                await one_run(pg, kind, 20)
                pg.close()
        for kind in kinds:
            for n in sizes:
                walls: dict[str, list[float]] = {"sqlite": [], "postgres": []}
                events = 0
                for rep in range(reps):
                    sqlite = SQLiteStore(Path(tmp) / f"{kind}-{n}-{rep}.db")
                    wall, events = await one_run(sqlite, kind, n)
                    sqlite.close()
                    walls["sqlite"].append(wall)
                    with fresh_database(url) as db:
                        pg = PostgresStore(db)
                        wall, pg_events = await one_run(pg, kind, n)
                        pg.close()
                    assert pg_events == events
                    walls["postgres"].append(wall)
                row: dict[str, Any] = {"kind": kind, "n": n, "events": events, "reps": reps}
                for name, ws in walls.items():
                    row[name] = {
                        "walls": ws,
                        "wall_s": statistics.median(ws),
                        "events_per_s": events / statistics.median(ws),
                    }
                row["ratio"] = row["postgres"]["wall_s"] / row["sqlite"]["wall_s"]
                rows.append(row)
                print(_line(row), flush=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    s, p = row["sqlite"], row["postgres"]
    verdict = "meets" if row["ratio"] <= TARGET else "MISSES"
    return (
        f"| fanout-{row['n']} {row['kind']} | {row['events']:,} | {s['events_per_s']:,.0f} | "
        f"{p['events_per_s']:,.0f} | {row['ratio']:.2f}× ({verdict} ≤ {TARGET:g}×) |"
    )


HEADER = (
    "| workload | events | SQLite events/s | Postgres events/s | Postgres wall / SQLite |\n"
    "|---|---:|---:|---:|---|"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="a PostgreSQL URL (default: start a throw-away server)")
    parser.add_argument("--sizes", default="1000,10000", help="fan-out sizes (default 1000,10000)")
    parser.add_argument("--kinds", default="function,agent", help="specialists (function,agent)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions per store (default 5)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = args.kinds.split(",")

    def run(url: str) -> list[dict[str, Any]]:
        print(f"Postgres: {redact_url(url)}\n\n{HEADER}", flush=True)
        return asyncio.run(measure(url, kinds, sizes, args.reps))

    if args.db:
        rows = run(args.db)
    else:
        from tests.pgserver import postgres_server

        with postgres_server(durable=True) as server:
            if isinstance(server, str):
                print(f"cannot measure Postgres: {server}", file=sys.stderr)
                return 2
            rows = run(server.url())
    if args.json:
        args.json.write_text(json.dumps({"target": TARGET, "rows": rows}, indent=2))
    return 0 if all(r["ratio"] <= TARGET for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
