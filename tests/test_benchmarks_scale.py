"""`benchmarks/scale.py` runs end to end at a tiny N: every series in a fresh process, the JSON,
the targets table and the PNG plot; a bad `--executor` is one failed series, said in the CLI's
own words, not a crash of the sweep. The figures themselves are `make bench-scale`'s."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hubspoke.executors.named import opened_executor as executor_from_spec

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "scale.py"


def scale(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    out, png = tmp_path / "scale.json", tmp_path / "scale.png"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json", str(out), "--plot", str(png)],
        capture_output=True,
        text=True,
        check=False,
        timeout=100,
    )
    data: dict[str, object] = json.loads(out.read_text()) if out.exists() else {}
    return done, data


def test_the_scale_benchmark_measures_every_series_and_draws_the_plot(tmp_path: Path) -> None:
    done, data = scale(
        tmp_path,
        *("--sizes", "12,30", "--reps", "1", "--latency", "0.01", "--kinds", "agent"),
        *("--executor", "local"),
    )

    assert done.returncode == 0, done.stderr
    rows = data["rows"]
    assert isinstance(rows, list)
    # `--executor local` is the series always measured: not a second copy of it.
    assert [(r["series"], r["n"], r["status"]) for r in rows] == [
        (series, n, "ok")
        for n in (12, 30)
        for series in ("baseline (asyncio+pydantic)", "agent, local, SQLite")
    ]
    for r in rows:
        assert r["critical_path_s"] == 3 * 0.01  # plan, one item's request, synthesis
        assert r["wall_s"] >= r["critical_path_s"]
        assert r["wall_over_critical"] == r["wall_s"] / r["critical_path_s"]
        assert r["peak_rss_bytes"] >= r["rss_before_bytes"] > 0
        if r["kind"] == "baseline":
            assert r["events"] is None
        else:  # the journal holds the run: at least a start, a finish and an artifact per item
            assert r["events"] > 3 * r["n"] and r["events_per_s"] > 0
    assert done.stdout.count("| holds |") + done.stdout.count("| **misses** |") == 0
    assert "| N=10,000, 10 ms latency: wall ≤ 2× the critical path" in done.stdout
    assert "| N=1,000, 10 ms latency: wall ≤ 1.3× the critical path" in done.stdout
    assert "not measured" in done.stdout
    png = tmp_path / "scale.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The plot is drawn again from the JSON alone.
    again = tmp_path / "again.png"
    redone = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--replot",
            str(tmp_path / "scale.json"),
            "--plot",
            str(again),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert redone.returncode == 0, redone.stderr
    assert again.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_executor_the_cli_refuses_fails_its_series_only(tmp_path: Path) -> None:
    done, data = scale(
        tmp_path,
        *("--sizes", "10,20", "--reps", "1", "--latency", "0.01", "--kinds", "function"),
        *("--executor", "nowhere:3"),
    )

    assert done.returncode == 1  # a series did not run: not a clean measurement
    rows = data["rows"]
    assert isinstance(rows, list)
    by = {(r["series"], r["n"]): r for r in rows}
    assert by[("function, local, SQLite", 10)]["status"] == "ok"
    assert by[("function, local, SQLite", 20)]["status"] == "ok"
    failed = by[("function, nowhere:3, SQLite", 10)]
    assert failed["status"] == "failed"
    # In the words of the function `hubspoke run --executor` parses its spec with.
    with pytest.raises(Exception) as refused, executor_from_spec("nowhere:3"):
        pass
    assert failed["error"] == f"{type(refused.value).__name__}: {refused.value}"
    assert "'nowhere:3'" in failed["error"]
    assert by[("function, nowhere:3, SQLite", 20)] | {"error": ""} == {
        "series": "function, nowhere:3, SQLite",
        "kind": "function",
        "executor": "nowhere:3",
        "store": "sqlite",
        "n": 20,
        "status": "skipped",
        "error": "",
    }
    assert by[("function, nowhere:3, SQLite", 20)]["error"] == "failed at N=10"
    assert (tmp_path / "scale.png").exists()


def test_bad_sizes_and_latency_are_refused_saying_what_to_give(tmp_path: Path) -> None:
    for args, said in (
        (["--sizes", "ten"], "--sizes 'ten': give whole numbers separated by commas"),
        (["--sizes", "100", "--max-n", "10"], "no sizes to measure"),
        (["--latency", "0"], "--latency 0: give seconds > 0"),
        (["--kinds", "robot"], "--kinds 'robot': give function, agent or function,agent"),
    ):
        done, data = scale(tmp_path, *args)
        assert done.returncode == 2, args
        assert said in done.stderr, done.stderr
        assert data == {}


def test_a_run_past_its_time_out_is_killed_and_said_so(tmp_path: Path) -> None:
    # 10 ms: no interpreter starts, imports pydantic and runs a foreman in that time.
    done, data = scale(
        tmp_path, *("--sizes", "10,20", "--reps", "1", "--kinds", "function", "--timeout", "0.01")
    )

    assert done.returncode == 1
    rows = data["rows"]
    assert isinstance(rows, list)
    assert [(r["series"], r["n"], r["status"], r["error"]) for r in rows] == [
        ("baseline (asyncio+pydantic)", 10, "timed out", "no result after 0.01 s (--timeout)"),
        ("function, local, SQLite", 10, "timed out", "no result after 0.01 s (--timeout)"),
        ("baseline (asyncio+pydantic)", 20, "skipped", "timed out at N=10"),
        ("function, local, SQLite", 20, "skipped", "timed out at N=10"),
    ]
    assert "| 10 | function, local, SQLite | – | timed out: no result after 0.01 s" in done.stdout
