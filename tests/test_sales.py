"""The sales pipeline, end to end on the offline model."""

from __future__ import annotations

import pytest

from hubspoke import EventKind, Foreman, SQLiteStore
from hubspoke.examples.sales import DEMO_INPUT, workflow
from hubspoke.examples.sales.data import search_companies
from hubspoke.examples.sales.schemas import Draft

pytestmark = pytest.mark.anyio


async def test_demo_drafts_nine_cards_escalates_one_and_retries_two(store: SQLiteStore) -> None:
    result = await Foreman(workflow, store).run(DEMO_INPUT)
    s = result.summary()
    assert s["status"] == "waiting"  # the escalated contact waits for a person
    counts = {
        p: (v["dispatched"], v["accepted"], v["retried"], v["escalated"], v["failed"])
        for p, v in s["phases"].items()
    }
    assert counts == {
        "discover": (1, 1, 0, 0, 0),
        "qualify": (1, 1, 0, 0, 0),
        "contacts": (10, 9, 0, 1, 0),
        "drafts": (11, 9, 2, 0, 0),
    }
    assert s["cards_in_review"] == 9
    assert 0 < s["usage"]["usd"] < 0.05
    cards = store.cards(result.run_id)
    assert sorted(c.column.value for c in cards) == ["escalated"] + ["review"] * 9
    for card in cards:
        if card.column.value == "review":
            assert card.artifact_id is not None and card.risk == "high"
            artifact = store.artifact(card.artifact_id)
            assert artifact is not None
            draft = Draft.model_validate(artifact.content)
            assert draft.cited_signal.startswith(draft.company_id)  # cites its own company
    # The escalation is the company with nobody who can decide, not an error.
    escalated = next(e for e in store.events(result.run_id) if e.kind is EventKind.ITEM_ESCALATED)
    assert escalated.item == "contacts[6]"
    assert "No plausible decision-maker" in escalated.data["reason"]


async def test_narrow_profile_asks_a_person(store: SQLiteStore) -> None:
    narrow = {**DEMO_INPUT, "min_employees": 3000}
    assert 0 < len(search_companies("logistics", "EMEA", 3000)) < 10
    result = await Foreman(workflow, store).run(narrow)
    assert result.status == "waiting"
    (card,) = store.cards(result.run_id)
    assert card.phase == "qualify" and "broader profile" in card.note


async def test_every_tool_call_is_on_the_card(store: SQLiteStore) -> None:
    result = await Foreman(workflow, store).run(DEMO_INPUT)
    allowed = {r.name: {t.name for t in r.compiled_tools} for r in workflow.roles}
    calls = [e for e in store.events(result.run_id) if e.kind is EventKind.TOOL_CALLED]
    assert calls
    for call in calls:
        assert call.role is not None
        assert call.data["tool"] in allowed[call.role]
    assert not [e for e in store.events(result.run_id) if e.kind is EventKind.TOOL_REFUSED]
