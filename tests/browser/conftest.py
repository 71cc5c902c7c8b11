"""Real-browser tests of `hubspoke ui`: Playwright for Python driving Debian's chromium.

No browser is ever downloaded: Playwright launches ``/usr/bin/chromium`` (`executable_path`),
headless; the tests skip, saying why, only when it is missing (``.ci/run`` installs it with
apt-get, and sets ``HUBSPOKE_TEST_CHROMIUM=required`` so that there they fail instead). Each
test gets its own copy of a journal made by running the offline sales demo (``hubspoke demo
sales``: 9 drafts in review, 1 contact escalated) and its own server: the app under uvicorn on
a free 127.0.0.1 port, in a background thread. The socket listens before the thread starts, so
the first request waits in its backlog instead of racing the start-up.

chromium resolves ``evil.example`` (and its subdomains) to 127.0.0.1, as a DNS-rebinding
attacker's name would; pages "from" it are served by Playwright's routing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
from typer.testing import CliRunner

from hubspoke import EventKind, SQLiteStore
from hubspoke.cli import app as cli

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "browser-token-5d1c0e"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP evil.example 127.0.0.1, MAP *.evil.example 127.0.0.1",
]


def off_loop(work: Callable[[], T]) -> T:
    """`work()` in a thread of its own: Playwright's sync API keeps an event loop running in
    the test's thread, where a foreman's `asyncio.run` cannot start another."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work).result()


@pytest.fixture(autouse=True)
def _no_db_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUBSPOKE_DB", raising=False)


@pytest.fixture(scope="session")
def demo_journal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A journal holding one run of `hubspoke demo sales`, and the run's id."""
    db = tmp_path_factory.mktemp("demo") / "journal.db"
    result = off_loop(lambda: CliRunner().invoke(cli, ["demo", "sales", "--db", str(db), "--json"]))
    assert result.exit_code == 0, result.output
    return db, json.loads(result.stdout)["run_id"]


@dataclass
class Served:
    """The app, served over a copy of the demo's journal."""

    base: str
    """``http://127.0.0.1:PORT``."""
    port: int
    db: Path
    run_id: str

    def url(self, path: str = "/board", *, token: bool = False) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}{path}{sep}token={TOKEN}" if token else f"{self.base}{path}"

    def decisions(self) -> list[dict[str, Any]]:
        store = SQLiteStore(self.db, read_only=True)
        try:
            return [e.data for e in store.events(self.run_id) if e.kind is EventKind.CARD_DECIDED]
        finally:
            store.close()

    def column(self, column: str) -> list[str]:
        store = SQLiteStore(self.db, read_only=True)
        try:
            return [c.id for c in store.cards(self.run_id) if c.column.value == column]
        finally:
            store.close()


def serve(db: Path) -> tuple[int, Any, threading.Thread]:
    """Start the app on a free port of 127.0.0.1 in a background thread."""
    import uvicorn

    from hubspoke.web.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    app = create_app(db, TOKEN, by="browser")
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    return port, server, thread


@pytest.fixture
def served(demo_journal: tuple[Path, str], tmp_path: Path) -> Iterator[Served]:
    db = tmp_path / "journal.db"
    shutil.copy(demo_journal[0], db)
    port, server, thread = serve(db)
    yield Served(f"http://127.0.0.1:{port}", port, db, demo_journal[1])
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """chromium, for the browser tests only: Playwright's sync API runs an event loop in the
    test's thread while it is open, so it is closed when this package's tests end."""
    if not CHROMIUM.exists():
        if os.environ.get("HUBSPOKE_TEST_CHROMIUM") == "required":  # set by .ci/run
            pytest.fail(f"no chromium at {CHROMIUM}, and CI requires the browser tests")
        pytest.skip(
            f"no chromium at {CHROMIUM}: install it (apt-get install chromium) to run the "
            "browser tests; they never download a browser"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context(viewport={"width": 1280, "height": 800})
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext, served: Served) -> Page:
    """A page signed in (the token visit done), on the board."""
    opened = context.new_page()
    opened.goto(served.url(token=True))
    assert opened.url == served.url()
    return opened
