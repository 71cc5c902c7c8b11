"""`benchmarks/floor.py` runs end to end at a tiny N: the floor writes exactly the journal's rows
(it checks the store holds 3 events per item) and prints its table; bad sizes are refused in
argparse's words. The figures themselves are `make bench`'s."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "floor.py"


def floor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=100,
    )


def test_the_floor_benchmark_measures_the_baseline_the_floor_and_the_foreman() -> None:
    done = floor("-n", "30", "--reps", "1")

    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ") and "µs" not in line]
    assert [row.split(" | ")[0] for row in rows[1:]] == [
        "| baseline (asyncio + pydantic)",
        "| floor: the baseline + the journal's rows (3 events, 1 artifact)",
        "| hubspoke, function specialists, journal on",
    ]
    assert "The 3× target leaves" in done.stdout


def test_the_floor_benchmark_refuses_an_empty_fan_out() -> None:
    done = floor("-n", "0")

    assert done.returncode == 2
    assert "-n and --reps must be at least 1" in done.stderr
