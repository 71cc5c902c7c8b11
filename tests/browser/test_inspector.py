"""The run inspector watching a live run: `hubspoke demo sales --latency 300` runs in a process
of its own while chromium shows its page, and the spokes, the summary and the events change
without a reload until the stream says the run is over."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from hubspoke import SQLiteStore
from hubspoke.web.spokes import role_counts
from tests.browser.conftest import TOKEN, serve
from tests.browser.test_layout import shoot


@pytest.fixture
def live_run(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """An empty journal, and the sales demo starting on it in another process (300 ms per
    model request: long enough to be watched, short enough for CI)."""
    db = tmp_path / "live.db"
    SQLiteStore(db).close()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("HUBSPOKE_DB", None)
    demo = ["demo", "sales", "--latency", "300", "--db", str(db), "--json"]
    process = subprocess.Popen(
        [sys.executable, "-m", "hubspoke.cli", *demo],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        yield db, process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def first_run(db: Path, process: subprocess.Popen[str]) -> str:
    """The id of the run the demo process starts, once its first event is written."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "the demo ended before a run was seen"
        store = SQLiteStore(db, read_only=True)
        try:
            runs = store.runs()
        finally:
            store.close()
        if runs:
            return runs[0].run_id
        time.sleep(0.05)  # waiting for another process, bounded by the deadline
    raise AssertionError("no run started within 60 s")


def accepted(page: Page) -> dict[str, int]:
    counts: dict[str, int] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('g.spoke')]
              .map(g => [g.dataset.role, Number(g.dataset.accepted)]))"""
    )
    return counts


def test_a_live_run_is_watched_without_a_reload(
    context: BrowserContext, live_run: tuple[Path, subprocess.Popen[str]]
) -> None:
    db, process = live_run
    port, server, thread = serve(db)
    try:
        run_id = first_run(db, process)
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/runs/{run_id}?token={TOKEN}")
        expect(page.locator("#inspector[sse-connect]")).to_have_count(1)  # live: it streams
        page.evaluate("window.__sameDocument = true")  # gone if the page reloads
        first_events = page.locator("li.event").count()
        first_accepted = sum(accepted(page).values())

        # The run goes on in the other process; the page follows it as it goes.
        drafting = page.locator('g.spoke[data-role="personalization"]')
        expect(drafting).not_to_have_attribute("data-dispatched", "0", timeout=60_000)
        shoot(page, "inspector-1280.png")  # mid-run: drafts under way
        expect(page.locator(".stream-state.ended")).to_have_attribute(
            "data-status", "waiting", timeout=120_000
        )
        assert page.evaluate("window.__sameDocument === true")

        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        store = SQLiteStore(db, read_only=True)
        try:
            events = store.events(run_id)
        finally:
            store.close()
        # Every event of the run, in order, on the page that was open from the start.
        seqs = page.evaluate("[...document.querySelectorAll('li.event')].map(e => +e.dataset.seq)")
        assert seqs == sorted(seqs) or seqs == sorted(seqs, reverse=True)
        assert set(seqs) == {e.seq for e in events}
        assert len(seqs) > first_events
        # The spokes moved to the fold's final counts without a reload.
        final = accepted(page)
        assert sum(final.values()) > first_accepted
        folded = role_counts(run_id, events)  # the fold's counters, per role
        assert final == {role: counts.accepted for role, counts in folded.items()}
        expect(page.locator(".summary-bar")).to_have_attribute("data-in-flight", "0")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
