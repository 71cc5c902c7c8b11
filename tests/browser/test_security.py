"""The web app's defences, in a real browser: the access token and its cookie, CSRF, Host
(DNS rebinding) and Origin checks, and model-produced markup shown as text. Each attack is
checked to write nothing to the journal."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, expect

from hubspoke import Foreman, SQLiteStore
from tests.browser.conftest import TOKEN, Served, off_loop, serve
from tests.test_web import HOSTILE, HOSTILE_FLOW


def test_the_token_is_needed_and_leaves_the_address_for_a_cookie(
    context: BrowserContext, served: Served
) -> None:
    page = context.new_page()
    refused = page.goto(served.url("/board"))
    assert refused is not None and refused.status == 401
    expect(page.locator("h1")).to_have_text("The access token is needed")
    wrong = page.goto(served.url("/board?token=guess"))
    assert wrong is not None and wrong.status == 401
    assert context.cookies() == []

    page.goto(served.url("/runs", token=True))

    assert page.url == served.url("/runs")  # the token is gone from the address bar
    [cookie] = context.cookies()
    assert cookie["name"] == "hubspoke_session" and TOKEN not in cookie["value"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    for path in ("/runs", "/board"):
        page.goto(served.url(path))
        assert TOKEN not in page.content()
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it


def test_a_post_without_the_csrf_token_is_refused(page: Page, served: Served) -> None:
    card = page.locator("#cards-review > article").first.get_attribute("id")
    status = page.evaluate(
        """async (card) => (await fetch(`/cards/${card}/decide`, {
            method: 'POST',
            headers: {'Content-Type': 'application/x-www-form-urlencoded'},
            body: 'verb=approve',
        })).status""",
        card,
    )
    assert status == 403
    assert served.decisions() == []


def test_a_form_on_another_site_cannot_decide(page: Page, served: Served) -> None:
    """A page of evil.example (signed in to the app in the same browser) posts the board's
    form to the app: the browser says where it comes from (Origin), and the app refuses."""
    card = page.locator("#cards-review > article").first.get_attribute("id")
    attack = f"""<!doctype html><html><body>
      <form id=f method=post action="{served.base}/cards/{card}/decide">
        <input name=verb value=approve><input name=csrf value=guess>
      </form><script>document.getElementById('f').submit()</script></body></html>"""
    page.route(
        "http://evil.example/**", lambda route: route.fulfill(body=attack, content_type="text/html")
    )

    with page.expect_response(f"{served.base}/cards/{card}/decide") as answered:
        page.goto("http://evil.example/attack")

    assert answered.value.status in (401, 403)  # no session cookie (SameSite), or the Origin
    assert served.decisions() == []


def test_a_rebound_host_name_is_refused(context: BrowserContext, served: Served) -> None:
    """evil.example resolves to 127.0.0.1 (DNS rebinding): its pages reach the app's port, with
    a Host the app does not answer to."""
    page = context.new_page()
    rebound = page.goto(f"http://evil.example:{served.port}/board?token={TOKEN}")
    assert rebound is not None and rebound.status == 400
    expect(page.locator("h1")).to_have_text("Refused: unknown Host")
    assert context.cookies() == []
    page.goto(served.url(token=True))
    again = page.goto(f"http://evil.example:{served.port}/board")
    assert again is not None and again.status == 400


@pytest.fixture
def hostile(demo_journal: tuple[Path, str], tmp_path: Path) -> Iterator[Served]:
    """The demo's journal plus a run whose card is markup (its title, its fields)."""
    db = tmp_path / "journal.db"
    shutil.copy(demo_journal[0], db)

    def run() -> str:
        store = SQLiteStore(db)
        try:
            return asyncio.run(Foreman(HOSTILE_FLOW, store).run({"topic": "tea"})).run_id
        finally:
            store.close()

    run_id = off_loop(run)
    port, server, thread = serve(db)
    yield Served(f"http://127.0.0.1:{port}", port, db, run_id)
    server.should_exit = True
    thread.join(timeout=30)


def test_markup_a_model_wrote_is_shown_as_text(browser: Browser, hostile: Served) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    dialogs: list[str] = []
    try:
        page = context.new_page()

        def seen(dialog: Dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", seen)
        page.goto(hostile.url(f"/board?run={hostile.run_id}", token=True))
        card = page.locator("#cards-review > article").first
        title = card.locator("h3.title")

        expect(title).to_have_text(f"{HOSTILE} tea")
        title.hover()
        card.locator("details.amend > summary").click()
        card.locator("textarea[name='field.score']").fill(HOSTILE)
        card.locator("input#" + (card.get_attribute("id") or "") + "-amend-note").fill(HOSTILE)
        card.locator("button.verb-amend").click()

        expect(card.locator(".msg.error")).to_contain_text("not JSON")
        expect(card.locator("textarea[name='field.score']")).to_have_value(HOSTILE)
        expect(card.locator("input[name=note]").last).to_have_value(HOSTILE)
        card.locator("h3.title").hover()
        assert page.locator("script").count() == 2  # htmx and its SSE extension, no other
        assert dialogs == []
        assert hostile.decisions() == []
    finally:
        context.close()
