"""The board in a real browser: approve, amend (an invalid then a valid edit), park, unpark and
skip cards, answer an escalation; with htmx (the card moves without a reload) and without
JavaScript (plain forms, POST then a redirect). What each click wrote is read back from the
journal; the issue's done-means (three approvals, three messages in the outbox) is read with
`hubspoke outbox`, as a person would."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import Browser, BrowserContext, Page, expect
from typer.testing import CliRunner

import hubspoke
from hubspoke import SQLiteStore
from hubspoke.cli import app as cli
from hubspoke.decisions import Board
from tests.browser.conftest import Served


def ids(page: Page, column: str) -> list[str]:
    found = [a.get_attribute("id") for a in page.locator(f"#cards-{column} > article").all()]
    return [i for i in found if i]


def test_approving_three_cards_puts_exactly_three_messages_in_the_outbox(
    page: Page, served: Served
) -> None:
    chosen = ids(page, "review")[:3]
    for card in chosen:
        page.locator(f"#{card} button[value=approve]").click()
        expect(page.locator(f"#cards-approved #{card}")).to_be_visible()
        expect(page.locator(f"#cards-approved #{card} .msg.done")).to_contain_text(
            "approved by browser: review → approved; follow-up"
        )
    expect(page.locator("#count-approved")).to_have_text("3")
    expect(page.locator("#count-review")).to_have_text("6")
    assert page.url == served.url()  # no reload: htmx swapped the cards

    listed = CliRunner().invoke(cli, ["outbox", "--db", str(served.db), "--json"])
    assert listed.exit_code == 0, listed.output
    messages = json.loads(listed.stdout)
    assert len(messages) == 3
    assert sorted(m["run_id"] for m in messages) == sorted(
        f"{served.run_id}.drafts_{n}_.follow-up" for n in range(3)
    )
    page.reload()
    assert sorted(ids(page, "approved")) == sorted(chosen)


def test_done_means_hubspoke_demo_sales_then_hubspoke_ui_three_approvals_three_messages(
    context: BrowserContext, demo_journal: tuple[Path, str], tmp_path: Path
) -> None:
    """The issue's done-means, as a person does it: `hubspoke demo sales`, then `hubspoke ui`
    in a process of its own; open the address it printed, approve three cards; `hubspoke
    outbox` lists exactly three messages."""
    db = tmp_path / "demo.db"
    shutil.copy(demo_journal[0], db)  # what `hubspoke demo sales --db demo.db` wrote
    env = {**os.environ, "PYTHONPATH": str(Path(hubspoke.__file__).parents[1])}
    env.pop("HUBSPOKE_UI_TOKEN", None)
    ui = subprocess.Popen(
        [sys.executable, "-m", "hubspoke.cli", "ui", "--db", str(db), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert ui.stdout is not None
        ui.stdout.readline()
        printed = re.fullmatch(
            r"open (http://127\.0\.0\.1:\d+)/\?token=(\S+)\n", ui.stdout.readline()
        )
        assert printed is not None
        page = context.new_page()
        page.goto(printed.group(0).split()[1])
        assert page.url == f"{printed.group(1)}/board"

        for card in ids(page, "review")[:3]:
            page.locator(f"#{card} button[value=approve]").click()
            expect(page.locator(f"#cards-approved #{card}")).to_be_visible()
    finally:
        ui.terminate()
        ui.wait(timeout=30)
        if ui.stdout is not None:
            ui.stdout.close()

    listed = CliRunner().invoke(cli, ["outbox", "--db", str(db), "--json"])
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.stdout)) == 3


def test_an_invalid_amend_shows_each_fields_error_and_keeps_the_text_then_a_valid_one_moves(
    page: Page, served: Served
) -> None:
    card = page.locator(f"#{ids(page, 'review')[0]}")
    card_id = card.get_attribute("id")
    card.locator("details.amend > summary").click()
    card.locator("input[name='field.subject']").fill("Hi")
    card.locator("textarea[name='field.confidence']").fill("1.5")
    card.locator("button.verb-amend").click()

    expect(card.locator(f"#{card_id}-subject-error")).to_contain_text("at least 5 characters")
    expect(card.locator(f"#{card_id}-confidence-error")).to_contain_text("less than or equal to 1")
    expect(card.locator("input[name='field.subject']")).to_have_value("Hi")
    expect(card.locator("textarea[name='field.confidence']")).to_have_value("1.5")
    expect(card.locator(".msg.error")).to_contain_text("Nothing was written")
    assert served.decisions() == []

    card.locator("input[name='field.subject']").fill("Routes for the winter peak")
    card.locator("textarea[name='field.confidence']").fill("0.9")
    card.locator("button.verb-amend").click()

    expect(page.locator(f"#cards-amended #{card_id}")).to_be_visible()
    [decision] = served.decisions()
    assert decision["verb"] == "amend"
    assert decision["content"]["subject"] == "Routes for the winter peak"
    assert decision["content"]["confidence"] == 0.9


def test_park_unpark_and_skip(page: Page, served: Served) -> None:
    first, second = ids(page, "review")[:2]
    page.locator(f"#{first} form.decide input[name=note]").fill("check the signal first")
    page.locator(f"#{first} button[value=park]").click()
    expect(page.locator(f"#cards-parked #{first}")).to_be_visible()
    page.locator(f"#{first} button[value=unpark]").click()
    expect(page.locator(f"#cards-review #{first}")).to_be_visible()
    page.locator(f"#{second} button[value=skip]").click()
    expect(page.locator(f"#cards-skipped #{second}")).to_be_visible()

    assert [(d["card_id"], d["verb"], d.get("note")) for d in served.decisions()] == [
        (first, "park", "check the signal first"),
        (first, "unpark", None),
        (second, "skip", None),
    ]
    page.reload()
    assert first in ids(page, "review") and ids(page, "skipped") == [second]


def test_an_escalation_is_answered(page: Page, served: Served) -> None:
    [card_id] = ids(page, "escalated")
    card = page.locator(f"#{card_id}")
    expect(card).to_contain_text("No plausible decision-maker at Marex Logistics")
    card.locator("button.verb-answer").click()  # empty: refused, nothing written
    expect(card.locator(".msg.error")).to_contain_text("the answer is empty")

    card.locator("textarea[name=answer]").fill("Marex lists no one; try their COO")
    card.locator("button.verb-answer").click()

    expect(page.locator(f"#cards-answered #{card_id}")).to_be_visible()
    expect(page.locator(f"#{card_id} .msg.done")).to_contain_text(
        f"the run goes on with: hubspoke resume {served.run_id}"
    )
    [decision] = served.decisions()
    assert (decision["verb"], decision["answer"]) == ("answer", "Marex lists no one; try their COO")


def test_a_run_a_live_process_holds_is_refused_with_a_message_and_nothing_lost(
    page: Page, served: Served
) -> None:
    card_id = ids(page, "review")[0]
    holder = SQLiteStore(served.db)
    assert holder.acquire(served.run_id, "live") is None
    try:
        page.locator(f"#{card_id} form.decide input[name=note]").fill("my note")
        page.locator(f"#{card_id} button[value=approve]").click()
        expect(page.locator(f"#{card_id} .msg.error")).to_contain_text("which is driving it now")
    finally:
        holder.release(served.run_id, "live")
        holder.close()
    expect(page.locator(f"#cards-review #{card_id} form.decide input[name=note]")).to_have_value(
        "my note"
    )
    assert served.decisions() == []

    page.locator(f"#{card_id} button[value=approve]").click()  # once the process let go
    expect(page.locator(f"#cards-approved #{card_id}")).to_be_visible()


def test_without_javascript_the_forms_post_and_redirect(browser: Browser, served: Served) -> None:
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1280, "height": 800}
    )
    try:
        page = context.new_page()
        page.goto(served.url(token=True))
        card_id = ids(page, "review")[0]

        page.locator(f"#{card_id} button[value=approve]").click()

        expect(page.locator(f"#cards-approved #{card_id}")).to_be_visible()
        assert page.url == f"{served.base}/board?decided={card_id}#{card_id}"
        expect(page.locator("p.msg.done").first).to_contain_text("approve by browser")

        other = ids(page, "review")[0]
        page.locator(f"#{other} details.amend > summary").click()
        page.locator(f"#{other} input[name='field.subject']").fill("Hi")
        page.locator(f"#{other} button.verb-amend").click()
        expect(page.locator(f"#{other}-subject-error")).to_contain_text("at least 5 characters")
        expect(page.locator(f"#{other} input[name='field.subject']")).to_have_value("Hi")
        assert [d["verb"] for d in served.decisions()] == ["approve"]
    finally:
        context.close()


def test_a_person_says_who_decides_from_this_browser(page: Page, served: Served) -> None:
    page.locator("header .who summary").click()
    page.locator("header .who input[name=by]").fill("Sam Okafor")
    page.locator("header .who button").click()
    expect(page.locator("header .who summary")).to_have_text("deciding as Sam Okafor")
    card = ids(page, "review")[0]

    page.locator(f"#{card} button[value=park]").click()

    expect(page.locator(f"#cards-parked #{card}")).to_be_visible()
    assert [d["by"] for d in served.decisions()] == ["Sam Okafor"]


def test_a_refusal_before_the_app_answers_is_shown_and_nothing_typed_is_lost(
    page: Page, served: Served, context: BrowserContext
) -> None:
    """A click whose request the app's defences refuse (the session gone: the app restarted
    with a new token; a CSRF token that no longer fits) says so on the page, where it had
    silently done nothing; the card keeps what was typed; the next decision clears it."""
    card = ids(page, "review")[0]
    note = page.locator(f"#{card} form.decide input[name=note]")
    notice = page.locator("#notice")
    expect(notice).to_be_hidden()

    context.clear_cookies()  # as after a restart: the old cookie no longer opens the app
    note.fill("checked the company's site")
    page.locator(f"#{card} button[value=park]").click()

    expect(notice).to_be_visible()
    expect(notice).to_contain_text("The access token is needed")
    expect(note).to_have_value("checked the company's site")
    assert served.decisions() == []

    page.goto(served.url(token=True))  # signed in again; then a page whose token is stale
    page.evaluate("document.body.setAttribute('hx-headers', '{\"X-CSRF-Token\": \"0\"}')")
    page.locator(f"#{card} button[value=park]").click()
    expect(notice).to_contain_text("CSRF token is missing or wrong")
    assert served.decisions() == []

    page.reload()
    page.locator(f"#{card} button[value=park]").click()
    expect(page.locator(f"#cards-parked #{card}")).to_be_visible()
    expect(notice).to_be_hidden()
    assert [d["verb"] for d in served.decisions()] == ["park"]


def test_a_decision_made_elsewhere_is_announced_without_losing_what_is_typed(
    page: Page, served: Served
) -> None:
    first, second = ids(page, "review")[:2]
    page.locator(f"#{second} form.decide input[name=note]").fill("half-typed note")
    # Another person (here: the Python API, as `hubspoke card park` would) decides one card.
    store = SQLiteStore(served.db)
    try:
        Board(store).park(first, by="elsewhere")
    finally:
        store.close()
    notice = page.locator("#board-changes .msg.changed")
    expect(notice).to_contain_text("1 card decided elsewhere", timeout=15_000)  # polled, 5 s
    # Only a notice: the page did not move the card, nor drop what was being typed.
    assert first in ids(page, "review")
    expect(page.locator(f"#{second} form.decide input[name=note]")).to_have_value("half-typed note")
    notice.locator("a").click()
    expect(page.locator(f"#cards-parked #{first}")).to_be_visible()
    expect(page.locator("#board-changes .msg.changed")).to_have_count(0)
