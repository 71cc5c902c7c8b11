"""Long form of the chaos harness: ``python -m tests.chaos --kills 200 --items 600 --seed 1``.

``--shared both`` runs the two-foreman mode instead (an owner sharing the run and a joiner,
either killed at each point; ``joiner`` or ``owner`` to kill only that one), and ``--postgres``
puts the run on a throw-away PostgreSQL server (tests/pgserver.py) rather than an SQLite file.

Run from the repository root. Exits 0 when every check holds, 1 otherwise (the problems are
printed). `--workdir` keeps the journals for inspection (`hubspoke show run_chaos --db ...`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.chaos.harness import ChaosReport, run_chaos, run_shared_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos",
        description="SIGKILL a 200+ item fan-out at seeded moments, resume it, check §3.7.",
    )
    parser.add_argument("--kills", type=int, default=200, help="kill points (default 200)")
    parser.add_argument(
        "--items",
        type=int,
        default=600,
        help="fan-out items (default 600; each process makes a few decisions before its kill, "
        "so N kills need about 3N items)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of kill points and faults")
    parser.add_argument("--workdir", type=Path, help="keep the journals here (default: temp)")
    parser.add_argument("--quiet", action="store_true", help="print only the verdict")
    parser.add_argument(
        "--shared",
        choices=("joiner", "owner", "both"),
        help="two foremen share the run; kill this one (both: either, drawn per kill)",
    )
    parser.add_argument("--postgres", action="store_true", help="the run on a PostgreSQL server")
    args = parser.parse_args(argv)
    say = (lambda _: None) if args.quiet else (lambda text: print(text, flush=True))
    with tempfile.TemporaryDirectory(prefix="hubspoke-chaos-") as tmp:
        workdir = args.workdir or Path(tmp)
        if args.postgres:
            from tests.pgserver import postgres_server

            with postgres_server() as server:
                if isinstance(server, str):
                    print(f"no PostgreSQL server: {server}")
                    return 2
                report = _run(args, workdir, say, server.url())
        else:
            report = _run(args, workdir, say, None)
    print(report.summary())
    for problem in report.problems:
        print(f"  - {problem}")
    short = report.kills < min(args.kills, report.decisions - 1)
    if short:
        print(f"  - only {report.kills} of {args.kills} kill points were reached")
    return 1 if report.problems or short else 0


def _run(
    args: argparse.Namespace, workdir: Path, say: Callable[[str], None], db: str | None
) -> ChaosReport:
    if args.shared is None:
        return run_chaos(
            workdir, items=args.items, kills=args.kills, seed=args.seed, say=say, db=db
        )
    return run_shared_chaos(
        workdir,
        db if db is not None else workdir / "chaos.db",
        items=args.items,
        kills=args.kills,
        seed=args.seed,
        victim=args.shared,
        timeout=300,
        say=say,
    )


if __name__ == "__main__":
    sys.exit(main())
