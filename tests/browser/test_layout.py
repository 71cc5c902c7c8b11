"""The pages at a laptop's 1280×800 and at a phone's width: the board's columns side by side
or one under the other, nothing wider than the screen, every button reachable."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from playwright.sync_api import Browser, Page, expect
from pydantic import BaseModel

from hubspoke import Context, Foreman, Phase, Role, SQLiteStore, Workflow
from tests.browser.conftest import Served, off_loop

SHOTS = os.environ.get("HUBSPOKE_SCREENSHOTS", "")
"""A directory to save the pages' screenshots in (docs/images for docs/ui.md), if set."""


def shoot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / name))


def no_sideways_scroll(page: Page) -> None:
    viewport = page.viewport_size
    assert viewport is not None
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], (
        f"the page is {width}px wide on a {viewport['width']}px screen"
    )


def test_at_1280_by_800_the_columns_stand_side_by_side(page: Page, served: Served) -> None:
    review = page.locator("#col-review").bounding_box()
    approved = page.locator("#col-approved").bounding_box()
    assert review is not None and approved is not None
    assert approved["x"] >= review["x"] + review["width"] and approved["y"] == review["y"]
    assert review["width"] >= 300
    escalated = page.locator("#col-escalated").bounding_box()  # what waits for a person is
    assert escalated is not None and escalated["x"] + escalated["width"] <= 1280  # in view
    no_sideways_scroll(page)  # the board scrolls inside itself, the page does not
    shoot(page, "board-1280.png")
    page.goto(served.url("/runs"))
    expect(page.locator("table.runs thead")).to_be_visible()
    no_sideways_scroll(page)
    shoot(page, "runs-1280.png")


def test_at_a_phone_width_columns_stack_and_cards_can_be_decided(
    browser: Browser, served: Served
) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        page = context.new_page()
        page.goto(served.url(token=True))
        review = page.locator("#col-review").bounding_box()
        approved = page.locator("#col-approved").bounding_box()
        assert review is not None and approved is not None
        assert approved["y"] >= review["y"] + review["height"] and approved["x"] == review["x"]
        assert review["width"] <= 390
        no_sideways_scroll(page)
        shoot(page, "board-phone.png")

        card = page.locator("#cards-review > article").first
        card_id = card.get_attribute("id")
        button = card.locator("button[value=approve]")
        box = button.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390
        button.click()
        expect(page.locator(f"#cards-approved #{card_id}")).to_be_visible()

        page.goto(served.url("/runs"))
        expect(page.locator("table.runs thead")).to_be_hidden()  # rows stack, labelled
        expect(page.locator(".waiting-runs")).to_contain_text("decisions pending")
        no_sideways_scroll(page)
    finally:
        context.close()


LONG = "contact_selection_for_enterprise_accounts_in_the_nordic_region"
"""A role, phase and item name with no place to break a line (63 characters, the most)."""


class _Ask(BaseModel):
    topic: str


class _Note(BaseModel):
    text: str


async def _noting(inp: _Ask, ctx: Context) -> _Note:
    return _Note(text=inp.topic)


LONG_FLOW = Workflow(
    name="long_names",
    input=_Ask,
    roles=[Role(name=LONG, purpose="Notes.", input=_Ask, output=_Note, function=_noting)],
    phases=[Phase(name=LONG, role=LONG, input=lambda run: run.input, review=True)],
)


def test_the_inspector_fits_a_phone_and_its_cards_are_a_table(
    browser: Browser, served: Served
) -> None:
    def run() -> str:
        store = SQLiteStore(served.db)
        try:
            return asyncio.run(Foreman(LONG_FLOW, store).run({"topic": "tea"})).run_id
        finally:
            store.close()

    run_id = off_loop(run)
    for width, height in ((390, 844), (1280, 800)):
        context = browser.new_context(
            viewport={"width": width, "height": height}, is_mobile=width < 700
        )
        try:
            page = context.new_page()
            page.goto(served.url(f"/runs/{run_id}", token=True))
            expect(page.locator("table.cards")).to_be_visible()
            no_sideways_scroll(page)  # long names wrap; wide tables scroll in their box
            # The board's card columns are styled apart: this table is a table, with no
            # "no cards" where its rows are.
            table = page.locator("table.cards")
            assert table.evaluate("t => getComputedStyle(t).display") == "table"
            before = table.evaluate("t => getComputedStyle(t, '::before').content")
            assert before in ("none", "normal"), before
        finally:
            context.close()
