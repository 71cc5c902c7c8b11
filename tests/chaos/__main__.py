"""Long form of the chaos harness: ``python -m tests.chaos --kills 200 --items 600 --seed 1``.

Run from the repository root. Exits 0 when every check holds, 1 otherwise (the problems are
printed). `--workdir` keeps the journals for inspection (`hubspoke show run_chaos --db ...`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests.chaos.harness import run_chaos


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
    args = parser.parse_args(argv)
    say = (lambda _: None) if args.quiet else (lambda text: print(text, flush=True))
    with tempfile.TemporaryDirectory(prefix="hubspoke-chaos-") as tmp:
        workdir = args.workdir or Path(tmp)
        report = run_chaos(workdir, items=args.items, kills=args.kills, seed=args.seed, say=say)
    print(report.summary())
    for problem in report.problems:
        print(f"  - {problem}")
    short = report.kills < min(args.kills, report.decisions - 1)
    if short:
        print(f"  - only {report.kills} of {args.kills} kill points were reached")
    return 1 if report.problems or short else 0


if __name__ == "__main__":
    sys.exit(main())
