"""Nothing is lost (docs/reliability.md): SIGKILL at seeded moments, resume, compare with no crash.

The short form runs in the default suite (24 kill points, ~20 s). The long form has 200 kill
points: ``python -m tests.chaos --kills 200 --items 600 --seed 1`` or ``pytest -m slow``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.chaos.harness import RUN_ID, race_resumers, run_chaos, run_shared_chaos
from tests.chaos.runner import EXIT_LOCKED


def test_short_chaos_run_loses_nothing(tmp_path: Path) -> None:
    report = run_chaos(tmp_path, items=200, kills=24, seed=11)
    assert report.problems == [], report.summary()
    assert report.kills == 24, report.summary()
    # The kills spread over the run: some early, some past the middle of the fan-out.
    assert report.kill_points[0] < report.decisions // 4
    assert report.kill_points[-1] > report.decisions * 3 // 4
    assert report.events > report.baseline_events  # in-flight items really ran again


def test_two_processes_resuming_one_run_one_proceeds(tmp_path: Path) -> None:
    race = race_resumers(tmp_path, items=200, seed=3)
    codes = sorted(r["code"] for r in race["resumers"])
    assert codes == [0, EXIT_LOCKED], race
    winner = next(r for r in race["resumers"] if r["code"] == 0)
    loser = next(r for r in race["resumers"] if r["code"] == EXIT_LOCKED)
    assert '"status": "completed"' in winner["output"]
    message = loser["output"].strip()
    assert re.fullmatch(
        rf"RunLocked: run {RUN_ID} is held by process {winner['pid']} on \S+; "
        "wait for it to finish or stop it first",
        message,
    ), message
    assert race["status"] == "completed"
    assert race["problems"] == []
    assert race["shipped"] == 200  # the loser dispatched nothing


@pytest.mark.slow
def test_long_chaos_run_loses_nothing(tmp_path: Path) -> None:
    kills = int(os.environ.get("CHAOS_KILLS", "200"))
    seed = int(os.environ.get("CHAOS_SEED", "1"))
    # Each process makes a few decisions before its kill: 200 kills need about 600 items.
    report = run_chaos(tmp_path, items=600, kills=kills, seed=seed, timeout=300)
    assert report.problems == [], report.summary()
    assert report.kills == kills, report.summary()


def test_short_chaos_with_a_joiner_sharing_the_run_loses_nothing(tmp_path: Path) -> None:
    """Two foreman processes share one run's fan-out on SQLite; the joiner is killed at seeded
    points and joins again."""
    report = run_shared_chaos(tmp_path, tmp_path / "chaos.db", items=120, kills=5, seed=7)
    assert report.problems == [], report.summary()
    assert report.kills == 5, report.summary()
    assert report.joined > 0 and report.taken_over > 0, report  # a killed joiner's items ran again


@pytest.mark.parametrize("victim", ["joiner", "both"])
def test_a_short_chaos_run_shared_by_two_foremen_on_postgres_loses_nothing(
    postgres_url: str, tmp_path: Path, victim: str
) -> None:
    """Issue 14: an owner and a joiner process share one run's fan-out on Postgres; the joiner
    (or, drawn per kill, either of them) is SIGKILLed at seeded points and started again."""
    report = run_shared_chaos(tmp_path, postgres_url, items=120, kills=5, seed=7, victim=victim)
    assert report.problems == [], report.summary()
    assert report.kills == 5, report.summary()
    assert report.joined > 0 and report.taken_over > 0, report
