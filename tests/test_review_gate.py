"""The review gate holds, and approvals start follow-up runs that write to the outbox once.

A review-gated phase's outputs reach later phases, the run's result and follow-up runs only as
approved or amended content. A phase declares whether the run waits for those decisions
(`review_waits=True`) or completes with the cards pending; approvals then start the workflow's
follow-up runs (the sales pipeline's sending stage), each once.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from hubspoke import Board, Context, EventKind, Foreman, Phase, Risk, Role, SQLiteStore, Workflow
from hubspoke.cli import app
from hubspoke.examples.sales import DEMO_INPUT
from hubspoke.examples.sales import workflow as sales
from hubspoke.followups import follow_up_id, run_follow_ups
from hubspoke.testing import stream

pytestmark = pytest.mark.anyio


class Topics(BaseModel):
    topics: list[str]


class Topic(BaseModel):
    topic: str


class Post(BaseModel):
    topic: str
    text: str


class Sent(BaseModel):
    text: str


async def write(inp: Topic, ctx: Context) -> Post:
    return Post(topic=inp.topic, text=f"all about {inp.topic}")


async def publish(inp: Post, ctx: Context) -> Sent:
    return Sent(text=inp.text)


def gated(waits: bool) -> Workflow:
    """A high-risk writer behind a review gate, then a phase that publishes what it wrote."""
    return Workflow(
        name="gated",
        input=Topics,
        roles=[
            Role(name="writer", purpose="Write.", input=Topic, output=Post, function=write,
                 risk=Risk.HIGH),
            Role(name="publisher", purpose="Publish.", input=Post, output=Sent, function=publish),
        ],
        phases=[
            Phase(name="write", role="writer", over=lambda run: run.input.topics,
                  input=lambda run, t: Topic(topic=t), review=True, review_waits=waits),
            Phase(name="publish", role="publisher", over=lambda run: run.outputs("write"),
                  input=lambda run, post: post),
        ],
        result=lambda run: [s.text for s in run.outputs("publish")],
    )  # fmt: skip


async def test_a_gated_output_is_read_by_no_later_phase_before_a_person_approves_it(
    store: SQLiteStore,
) -> None:
    wf = gated(waits=True)
    first = await Foreman(wf, store).run({"topics": ["tea", "rum", "gin"]}, run_id="run_g")
    assert first.status == "waiting"
    assert not [e for e in store.events("run_g") if e.phase == "publish"]

    board = Board(store, workflow=wf)
    tea, rum, gin = sorted(board.cards("run_g", "review"), key=lambda c: c.item)
    board.approve(tea.id, by="ada")
    board.amend(rum.id, set={"text": "rum, reconsidered"}, by="ada")
    board.skip(gin.id, by="ada")
    done = await Foreman(wf, store).resume("run_g")

    assert done.status == "completed"
    # Only what a person let through was published: tea as written, rum as amended, no gin.
    assert done.result == ["all about tea", "rum, reconsidered"]
    lines = stream(store.events("run_g"), skip=(EventKind.CARD_CREATED,))
    decided = max(i for i, line in enumerate(lines) if line.startswith("card.decided"))
    first_publish = min(i for i, line in enumerate(lines) if " publish " in f" {line} ")
    assert first_publish > decided  # nothing of `publish` before the decisions
    assert lines[:13] == [
        "run.started",
        "phase.started write items=3",
        "dispatch.started write writer write[0] #1",
        "dispatch.finished write writer write[0] #1 output",
        "item.accepted write writer write[0]",
        "dispatch.started write writer write[1] #1",
        "dispatch.finished write writer write[1] #1 output",
        "item.accepted write writer write[1]",
        "dispatch.started write writer write[2] #1",
        "dispatch.finished write writer write[2] #1 output",
        "item.accepted write writer write[2]",
        "phase.finished write waiting",
        "run.finished waiting",
    ]


async def test_without_waiting_the_run_completes_and_later_phases_see_nothing_unapproved(
    store: SQLiteStore,
) -> None:
    result = await Foreman(gated(waits=False), store).run({"topics": ["tea", "rum"]})
    assert result.status == "completed"
    assert result.result == []
    assert result.state.phases["publish"].items == 0
    assert result.state.cards_in_review == 2


def test_a_follow_up_must_belong_to_a_review_gate() -> None:
    from hubspoke import DefinitionError

    wf = gated(waits=False)
    follow = Workflow(
        name="after",
        input=Post,
        roles=[Role(name="p", purpose="Publish.", input=Post, output=Sent, function=publish)],
        phases=[Phase(name="p", role="p", input=lambda run: run.input)],
    )
    with pytest.raises(DefinitionError, match="no review gate"):
        Workflow(**{**wf.__dict__, "follow_ups": {"publish": follow}}).check()
    with pytest.raises(DefinitionError, match="no phase named"):
        Workflow(**{**wf.__dict__, "follow_ups": {"nowhere": follow}}).check()


# the sales pipeline's sending stage ----------------------------------------------------------


runner = CliRunner()


def invoke(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def test_approvals_send_through_the_outbox_exactly_once(tmp_path: Path) -> None:
    # Synchronous, as the CLI runs: each command drives its own event loop.
    db = tmp_path / "j.db"
    store = SQLiteStore(db)
    result = asyncio.run(
        Foreman(sales, store).run(
            DEMO_INPUT, run_id="run_sales", ref="hubspoke.examples.sales:workflow"
        )
    )
    assert result.status == "waiting"  # 9 drafts in review, 1 contact escalated
    assert result.state.cards_in_review == 9
    reviewed = sorted(Board(store).cards("run_sales", "review"), key=lambda c: c.item)
    store.close()

    # Three approvals from the CLI: three messages.
    for card in reviewed[:3]:
        done = invoke("card", "approve", card.id, "--by", "ana", "--db", db)
        assert done.exit_code == 0, done.output
    assert len(outbox(db)) == 3
    # The same card approved again: nothing more is sent.
    again = invoke("card", "approve", reviewed[0].id, "--by", "ana", "--db", db)
    assert again.exit_code == 0, again.output
    assert len(outbox(db)) == 3

    # A crash between an approval and its follow-up: the approval is journaled, nothing sent.
    store = SQLiteStore(db)
    Board(store).approve(reviewed[3].id, by="ana")
    assert len(outbox(db)) == 3
    # The next approval, or `hubspoke follow-ups`, sends what the crash kept back, once.
    swept = invoke("follow-ups", "run_sales", "--db", db, "--json")
    assert swept.exit_code == 0, swept.output
    started = [f for f in json.loads(swept.stdout) if f["started"]]
    assert [f["item"] for f in started] == [reviewed[3].item]
    assert len(outbox(db)) == 4
    assert all(not f.started for f in asyncio.run(run_follow_ups(store, sales, "run_sales")))
    assert len(outbox(db)) == 4

    # Each message is the approved draft, written by its card's own follow-up run.
    messages = outbox(db)
    assert sorted(m["run_id"] for m in messages) == sorted(
        follow_up_id("run_sales", c.item) for c in reviewed[:4]
    )
    drafts = {a.item: a.content for a in store.artifacts("run_sales", "drafts")}
    for message, card in zip(
        sorted(messages, key=lambda m: m["run_id"]),
        sorted(reviewed[:4], key=lambda c: follow_up_id("run_sales", c.item)),
        strict=True,
    ):
        assert message["content"]["subject"] == drafts[card.item]["subject"]
    store.close()


def outbox(db: Path) -> list[dict[str, Any]]:
    shown = invoke("outbox", "--run", "run_sales", "--json", "--db", db)
    assert shown.exit_code == 0, shown.output
    rows: list[dict[str, Any]] = json.loads(shown.stdout)
    return rows
