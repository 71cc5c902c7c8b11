"""People's decisions on the board (`hubspoke.decisions.Board`), on real runs of the sales demo.

The demo leaves 9 drafts in review and 1 escalated contact. Each test decides on a copy of one
run's journal and checks what the journal holds afterwards: the decision's event, the card's
row, the fold, and, for every refusal, that nothing at all was written.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

import hubspoke
from hubspoke import (
    AmendRefused,
    Artifact,
    Board,
    Card,
    CardNotFound,
    Column,
    Context,
    Decision,
    DecisionRefused,
    Event,
    EventKind,
    Foreman,
    Phase,
    Role,
    RunLocked,
    RunState,
    SQLiteStore,
    Workflow,
)
from hubspoke.decisions import MOVES, set_fields, verbs_for
from hubspoke.examples.sales import DEMO_INPUT, workflow
from hubspoke.examples.sales.schemas import Draft
from hubspoke.outbox import OutboxEntry
from hubspoke.testing import payload_errors, stream

SOURCE = str(Path(hubspoke.__file__).parents[1])
"""This checkout's hubspoke, for subprocesses."""


@pytest.fixture(scope="module")
def demo_journal(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One finished run of the sales demo, in a closed journal: copied by each test."""
    path = tmp_path_factory.mktemp("demo") / "journal.db"
    store = SQLiteStore(path)
    try:
        result = asyncio.run(Foreman(workflow, store).run(DEMO_INPUT))
    finally:
        store.close()
    assert result.status == "waiting"
    return path, result.run_id


@dataclass
class Demo:
    store: SQLiteStore
    run_id: str
    path: Path

    def board(self, *, with_workflow: bool = True) -> Board:
        return Board(self.store, workflow=workflow if with_workflow else None)

    def review(self, n: int = 0) -> Card:
        return self.board().cards(self.run_id, Column.REVIEW)[n]

    def escalated(self) -> Card:
        (card,) = self.board().cards(self.run_id, "escalated")
        return card


def copy_of(template: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "journal.db"
    shutil.copy(template, path)
    return path


@pytest.fixture
def demo(demo_journal: tuple[Path, str], tmp_path: Path) -> Iterator[Demo]:
    template, run_id = demo_journal
    path = copy_of(template, tmp_path)
    store = SQLiteStore(path)
    yield Demo(store, run_id, path)
    store.close()


def snapshot(store: SQLiteStore, run_id: str) -> tuple[Any, ...]:
    """Everything a decision could write: events, cards, artifacts, the outbox, the status."""
    record = store.run(run_id)
    return (
        [e.to_dict() for e in store.events(run_id)],
        store.cards(run_id),
        store.artifacts(run_id),
        store.outbox(run_id),
        None if record is None else record.status,
    )


def card_in(demo: Demo, column: Column) -> str:
    """A card of the demo's run moved to `column` by the verbs that lead there."""
    board = demo.board()
    if column in (Column.ESCALATED, Column.ANSWERED):
        card = demo.escalated().id
        if column is Column.ANSWERED:
            board.answer(card, "pick the COO", by="setup")
        return card
    card = demo.review().id
    if column is Column.PARKED:
        board.park(card, by="setup")
    elif column is Column.APPROVED:
        board.approve(card, by="setup")
    elif column is Column.AMENDED:
        board.amend(card, set={"subject": "A subject set up for the test"}, by="setup")
    elif column is Column.SKIPPED:
        board.skip(card, by="setup")
    return card


def decide(board: Board, verb: str, card: str, by: str = "ana") -> Decision:
    """Make the decision `verb` with the arguments it needs."""
    if verb == "amend":
        return board.amend(card, set={"subject": "Routes for the winter peak"}, by=by, note="n")
    if verb == "answer":
        return board.answer(card, "ask their COO instead", by=by)
    if verb == "abort":
        return board.abort(card, by=by, reason="wrong region")
    verbs = {"approve": board.approve, "park": board.park, "unpark": board.unpark}
    return verbs.get(verb, board.skip)(card, by=by, note=f"{verb} it")


# the board ---------------------------------------------------------------------------------------


def test_the_demo_leaves_nine_cards_in_review_and_one_escalated(demo: Demo) -> None:
    board = demo.board()
    assert len(board.cards(demo.run_id, Column.REVIEW)) == 9
    assert [c.item for c in board.cards(demo.run_id, "escalated")] == ["contacts[6]"]
    assert board.cards(demo.run_id, "approved") == []
    assert len(board.cards()) == 10
    with pytest.raises(ValueError, match="unknown column 'done'; the columns are: review"):
        board.cards(demo.run_id, "done")


def test_the_columns_and_the_verbs_each_takes() -> None:
    assert {c: verbs_for(c) for c in Column} == {
        Column.REVIEW: ("approve", "amend", "park", "skip"),
        Column.PARKED: ("approve", "amend", "unpark", "skip"),
        Column.ESCALATED: ("skip", "answer", "abort"),
        Column.APPROVED: (),
        Column.AMENDED: (),
        Column.SKIPPED: (),
        Column.ANSWERED: (),
    }


def test_a_card_is_named_by_its_id_or_a_unique_prefix(demo: Demo) -> None:
    board = demo.board()
    card = demo.review()
    assert board.find(card.id[:14]) == card
    with pytest.raises(CardNotFound, match=r"'card_' matches 10 cards \(card_.*, \.\.\.\); give"):
        board.find("card_")
    with pytest.raises(CardNotFound, match="no card 'card_nope' on the board; list the cards"):
        board.approve("card_nope", by="ana")
    with pytest.raises(CardNotFound, match="no card ''"):
        board.find("")


def test_card_shows_the_output_the_input_and_the_decisions(demo: Demo) -> None:
    board = demo.board()
    review, escalated = demo.review(), demo.escalated()
    shown = board.card(review.id[:12])
    artifact = next(a for a in demo.store.artifacts(demo.run_id) if a.id == review.artifact_id)
    assert (shown.card, shown.content, shown.schema) == (review, artifact.content, artifact.schema)
    assert (shown.role, shown.run_status, shown.decisions) == ("personalization", "waiting", ())
    assert shown.verbs == ("approve", "amend", "park", "skip")

    board.park(review.id, by="ana", note="later")
    board.unpark(review.id, by="bo")
    shown = board.card(review.id)
    assert [(d.decision_id, d.verb, d.by, d.note) for d in shown.decisions] == [
        (f"{review.id}/1", "park", "ana", "later"),
        (f"{review.id}/2", "unpark", "bo", ""),
    ]
    assert shown.card.column is Column.REVIEW

    asked = board.card(escalated.id)
    assert asked.content is None and asked.role == "contact_selection"
    assert asked.input is not None and asked.input["company"]["name"] == "Marex Logistics"
    assert asked.to_dict()["verbs"] == ["skip", "answer", "abort"]
    assert json.loads(json.dumps(asked.to_dict())) == asked.to_dict()


# each verb ---------------------------------------------------------------------------------------

ALLOWED = [(verb, column) for verb, moves in MOVES.items() for column in moves]


@pytest.mark.parametrize(("verb", "column"), ALLOWED, ids=[f"{v}-{c}" for v, c in ALLOWED])
def test_each_verb_moves_its_card_and_journals_who_before_and_after(
    demo: Demo, verb: str, column: Column
) -> None:
    board = demo.board()
    card = card_in(demo, column)
    earlier = demo.store.events(demo.run_id)
    made = len([e for e in earlier if e.data.get("card_id") == card])

    decision = decide(board, verb, card)

    events = demo.store.events(demo.run_id)
    new = events[len(earlier) :]
    after = MOVES[verb][column]
    assert new[0].kind is EventKind.CARD_DECIDED and new[0].seq == earlier[-1].seq + 1
    assert Decision.of(new[0]) == decision
    assert (decision.verb, decision.by, decision.before, decision.after) == (
        verb,
        "ana",
        column.value,
        after.value,
    )
    assert decision.decision_id == f"{card}/{made}"  # card.created counted: decisions + 1
    created = next(
        e for e in earlier if e.kind is EventKind.CARD_CREATED and e.data["card_id"] == card
    )
    assert (new[0].phase, new[0].role, new[0].item, new[0].attempt) == (
        created.phase,
        created.role,
        created.item,
        None,
    )
    (row,) = [c for c in demo.store.cards(demo.run_id) if c.id == card]
    assert row.column is after and row.note == decision.note
    folded = RunState.fold(demo.run_id, events)
    assert folded.cards[card].column == after.value
    assert folded.cards[card].decisions == made
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert payload_errors(events) == []
    if verb == "abort":
        assert [e.kind for e in new] == [EventKind.CARD_DECIDED, EventKind.RUN_FINISHED]
        assert folded.status == "aborted"
    else:
        assert len(new) == 1 and folded.status == "waiting"


@pytest.mark.parametrize("column", list(Column), ids=[c.value for c in Column])
def test_every_verb_a_column_does_not_take_is_refused_and_writes_nothing(
    demo: Demo, column: Column
) -> None:
    board = demo.board()
    card = card_in(demo, column)
    before = snapshot(demo.store, demo.run_id)
    takes = verbs_for(column)
    refused = [verb for verb in MOVES if verb not in takes]
    assert refused  # every column refuses something

    for verb in refused:
        said = f"cannot {verb} card {card}: it is in column '{column.value}', "
        said += f"which takes {', '.join(takes)}" if takes else "decided already"
        with pytest.raises(DecisionRefused) as refusal:
            decide(board, verb, card)
        assert str(refusal.value).startswith(said), str(refusal.value)
        assert type(refusal.value) is DecisionRefused  # not an amend's field errors
        with pytest.raises(DecisionRefused, match=f"cannot {verb} card {card}"):
            board.check(card, verb)

    assert snapshot(demo.store, demo.run_id) == before


def test_who_decides_must_be_said(demo: Demo) -> None:
    before = snapshot(demo.store, demo.run_id)
    for who in ("", "   "):
        with pytest.raises(DecisionRefused, match="say who decides"):
            demo.board().approve(demo.review().id, by=who)
    assert snapshot(demo.store, demo.run_id) == before


def test_decisions_are_numbered_per_card(demo: Demo) -> None:
    board = demo.board()
    card = demo.review().id
    decided = [
        board.park(card, by="ana"),
        board.unpark(card, by="ana"),
        board.park(card, by="bo"),
        board.approve(card, by="cy"),
    ]
    assert [d.decision_id for d in decided] == [f"{card}/{n}" for n in (1, 2, 3, 4)]
    assert [(d.before, d.after) for d in decided] == [
        ("review", "parked"),
        ("parked", "review"),
        ("review", "parked"),
        ("parked", "approved"),
    ]


# amend -------------------------------------------------------------------------------------------


def test_an_amend_is_stored_as_a_new_artifact_the_card_shows(demo: Demo) -> None:
    board = demo.board()
    card = demo.review()
    original = board.card(card.id).content
    assert original is not None
    edited = original | {"subject": "Routes for the winter peak", "confidence": 0.95}

    decision = board.amend(card.id, edited, by="ana", note="warmer")

    assert decision.content == edited and decision.note == "warmer"
    artifacts = {a.id: a for a in demo.store.artifacts(demo.run_id)}
    assert decision.artifact_id is not None and decision.artifact_id != card.artifact_id
    new, old = artifacts[decision.artifact_id], artifacts[card.artifact_id or ""]
    assert (new.content, new.phase, new.role, new.item, new.schema) == (
        edited,
        old.phase,
        old.role,
        old.item,
        old.schema,
    )
    assert old.content == original  # the draft stays as it was drafted
    shown = board.card(card.id)
    assert (shown.content, shown.card.artifact_id, shown.card.column) == (
        edited,
        decision.artifact_id,
        Column.AMENDED,
    )
    state = RunState.fold(demo.run_id, demo.store.events(demo.run_id))
    assert state.cards[card.id].artifact_id == decision.artifact_id


def test_set_reads_json_values_and_walks_dotted_paths() -> None:
    content: dict[str, Any] = {"a": {"b": [1, {"c": "x"}]}, "n": 1, "s": "t", "u": None}
    set_fields(
        content,
        {
            "a.b.1.c": "y",
            "a.b.0": "[1, 2]",
            "n": "2.5",
            "s": '"42"',
            "t": "true",
            "u": "NaN",
            "v": "not json",
        },
    )
    assert content == {
        "a": {"b": [[1, 2], {"c": "y"}]},
        "n": 2.5,
        "s": "42",
        "u": "NaN",
        "t": True,
        "v": "not json",
    }


def test_set_refuses_paths_that_name_no_field_and_sets_nothing() -> None:
    content: dict[str, Any] = {"a": {"b": [1]}, "n": 1}
    with pytest.raises(AmendRefused) as refused:
        set_fields(content, {"a.x.y": "1", "n.z": "1", "a.b.5": "1", "a..b": "1", "n": "2"})
    assert refused.value.errors == [
        {"loc": ["a", "x", "y"], "msg": "a has no field 'x'", "type": "path"},
        {"loc": ["n", "z"], "msg": "n is a number, not an object", "type": "path"},
        {"loc": ["a", "b", "5"], "msg": "a.b has no item 5", "type": "path"},
        {
            "loc": ["a", "", "b"],
            "msg": "a field path is names joined by dots, e.g. a.b",
            "type": "path",
        },
    ]
    assert content == {"a": {"b": [1]}, "n": 1}  # not even the good path was set


def test_an_invalid_amend_is_refused_with_each_field_error_and_writes_nothing(
    demo: Demo,
) -> None:
    card = demo.review().id
    before = snapshot(demo.store, demo.run_id)
    board = demo.board()

    with pytest.raises(AmendRefused) as refused:
        board.amend(
            card, set={"to": "nobody", "subject": "x", "confidence": "2", "tone": "warm"}, by="a"
        )
    assert [(e["loc"], e["type"]) for e in refused.value.errors] == [
        (["to"], "string_pattern_mismatch"),
        (["subject"], "string_too_short"),
        (["confidence"], "less_than_equal"),
        (["tone"], "extra_forbidden"),
    ]
    assert f"the amended output of card {card} does not fit" in str(refused.value)
    assert "subject: String should have at least 5 characters" in str(refused.value)

    with pytest.raises(AmendRefused, match=r"confidence: Input should be a valid number"):
        board.amend(card, set={"confidence": '"0.9"'}, by="a")  # strict: no "0.9" for 0.9
    with pytest.raises(AmendRefused, match="the output has no field 'contact'"):
        board.amend(card, set={"contact.email": "a@b.c"}, by="a")
    assert snapshot(demo.store, demo.run_id) == before


def test_an_amend_must_change_something(demo: Demo) -> None:
    card = demo.review().id
    board = demo.board()
    before = snapshot(demo.store, demo.run_id)
    with pytest.raises(DecisionRefused, match="give the amended output"):
        board.amend(card, by="ana")
    with pytest.raises(DecisionRefused, match="is the one it shows already: nothing to amend"):
        board.amend(card, board.card(card).content, by="ana")
    assert snapshot(demo.store, demo.run_id) == before


def test_an_amend_without_the_workflow_imports_the_schema_the_artifact_names(
    demo: Demo,
) -> None:
    card = demo.review()
    without = demo.board(with_workflow=False)
    decision = without.amend(card.id, set={"subject": "Checked by the artifact's schema"}, by="a")
    assert decision.after == "amended"

    other = demo.review(1)
    with sqlite3.connect(demo.path) as db:
        db.execute(
            "UPDATE artifacts SET schema='nowhere.Missing' WHERE artifact_id=?",
            (other.artifact_id,),
        )
    before = snapshot(demo.store, demo.run_id)
    with pytest.raises(DecisionRefused, match=r"its schema nowhere.Missing cannot be found"):
        without.amend(other.id, set={"subject": "No schema to check me"}, by="a")
    assert snapshot(demo.store, demo.run_id) == before
    assert demo.board().amend(other.id, set={"subject": "The workflow's schema"}, by="a")


EDIT_FIELDS = [*Draft.model_fields, "tone", "to.x", "body.0", "subject."]
EDIT_VALUES = st.one_of(
    st.text(max_size=40),
    st.integers(-5, 5).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["true", "null", "[1]", "{}", "0.5", '"0.5"', "a@b.c", "c001-s1"]),
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sets=st.dictionaries(st.sampled_from(EDIT_FIELDS), EDIT_VALUES, min_size=1, max_size=4))
def test_any_edit_is_amended_valid_or_refused_with_nothing_written(
    demo_journal: tuple[Path, str], tmp_path: Path, sets: dict[str, str]
) -> None:
    template, run_id = demo_journal
    store = SQLiteStore(copy_of(template, tmp_path / uuid.uuid4().hex))
    try:
        board = Board(store, workflow=workflow)
        card = board.cards(run_id, "review")[0]
        before = snapshot(store, run_id)
        try:
            decision = board.amend(card.id, set=sets, by="h")
        except DecisionRefused:
            assert snapshot(store, run_id) == before
            return
        assert decision.content is not None
        Draft.model_validate_json(json.dumps(decision.content), strict=True)
        stored = {a.id: a.content for a in store.artifacts(run_id)}
        assert stored[decision.artifact_id or ""] == decision.content
        assert board.card(card.id).card.column is Column.AMENDED
    finally:
        store.close()


# answer and abort --------------------------------------------------------------------------------


def test_an_answer_is_text_or_an_input_checked_against_the_roles_input_schema(
    demo: Demo,
) -> None:
    card = demo.escalated().id
    board = demo.board()
    before = snapshot(demo.store, demo.run_id)
    asked = board.card(card).input
    assert asked is not None

    with pytest.raises(DecisionRefused, match="exactly one of"):
        board.answer(card, by="ana")
    with pytest.raises(DecisionRefused, match="exactly one of"):
        board.answer(card, "text", input=asked, by="ana")
    with pytest.raises(DecisionRefused, match="the answer is empty"):
        board.answer(card, "  ", by="ana")
    with pytest.raises(DecisionRefused) as wrong:
        board.answer(card, input=asked | {"icp": {"region": "MARS"}}, by="ana")
    assert {"missing", "string_pattern_mismatch"} <= {e["type"] for e in wrong.value.errors}
    assert "the corrected input for card" in str(wrong.value)
    with pytest.raises(DecisionRefused, match="without its run's workflow 'sales'"):
        demo.board(with_workflow=False).answer(card, input=asked, by="ana")
    assert snapshot(demo.store, demo.run_id) == before

    corrected = asked | {"company": asked["company"] | {"evidence": ["ask the COO"]}}
    decision = board.answer(card, input=corrected, by="ana")
    assert (decision.input, decision.answer, decision.after) == (corrected, None, "answered")


class Batches(SQLiteStore):
    """A store that remembers the kinds of events each `append` wrote, one list per call."""

    batches: list[list[str]]

    def append(
        self,
        events: Sequence[Event],
        artifacts: Sequence[Artifact] = (),
        cards: Sequence[Card] = (),
        status: tuple[str, str] | None = None,
        *,
        encoded: Sequence[str] | None = None,
        outbox: Sequence[OutboxEntry] = (),
    ) -> None:
        super().append(events, artifacts, cards, status, encoded=encoded, outbox=outbox)
        self.batches.append([e.kind.value for e in events])


def test_abort_ends_the_run_aborted_in_the_decisions_own_transaction(demo: Demo) -> None:
    store = Batches(demo.path)
    store.batches = []
    try:
        card = demo.escalated().id
        decision = Board(store).abort(card, by="ana", reason="wrong region")
        assert store.batches == [["card.decided", "run.finished"]]
        record = store.run(demo.run_id)
        assert record is not None and record.status == "aborted"
        state = RunState.fold(demo.run_id, store.events(demo.run_id))
        assert (state.status, state.reason) == (
            "aborted",
            f"aborted by ana from card {card}: wrong region",
        )
        assert (decision.note, decision.after) == ("wrong region", "skipped")
        with pytest.raises(DecisionRefused, match="say why the run is aborted"):
            Board(store).abort(card, by="ana", reason=" ")
    finally:
        store.close()


def test_abort_of_a_run_cut_short_stops_its_unfinished_phases_in_the_same_transaction(
    demo: Demo,
) -> None:
    """A run killed while drafting (no live process holds it): the abort ends the phase under
    way `stopped` and the run `aborted`, as the foreman ends a run, with the decision."""
    events = demo.store.events(demo.run_id)
    cut = next(
        e.seq for e in events if e.kind is EventKind.DISPATCH_STARTED and e.phase == "drafts"
    )
    with sqlite3.connect(demo.path) as db:
        db.execute("DELETE FROM events WHERE run_id=? AND seq>?", (demo.run_id, cut))
    store = Batches(demo.path)
    store.batches = []
    try:
        Board(store).abort(demo.escalated().id, by="ana", reason="start over")
        assert store.batches == [["card.decided", "phase.finished", "run.finished"]]
        tail = stream(store.events(demo.run_id))[-3:]
        assert tail == [
            "card.decided contacts contact_selection contacts[6] abort",
            "phase.finished drafts stopped",
            "run.finished aborted",
        ]
    finally:
        store.close()


def test_a_note_holding_a_secret_is_scrubbed_everywhere(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-live-PLANTED-0123456789abcdef"
    monkeypatch.setenv("CRM_API_KEY", secret)
    card = demo.review().id
    decision = demo.board().approve(card, by="ana", note=f"sent with {secret}")
    assert secret not in decision.note
    (row,) = [c for c in demo.store.cards(demo.run_id) if c.id == card]
    assert secret not in row.note
    with sqlite3.connect(demo.path) as db:
        dumped = "\n".join(db.iterdump())
    assert secret not in dumped


# more than one process ---------------------------------------------------------------------------

HOLDER = """
import os, sys
from hubspoke import SQLiteStore
store = SQLiteStore({path!r})
print(store.acquire({run_id!r}, "a-foreman-elsewhere"), flush=True)
sys.stdin.readline()
os._exit(0)  # killed while holding the lease: nothing releases it
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")])}


def test_a_run_a_live_process_holds_is_refused_until_that_process_is_gone(demo: Demo) -> None:
    card = demo.review().id
    code = HOLDER.format(path=str(demo.path), run_id=demo.run_id)
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == "None"
        before = snapshot(demo.store, demo.run_id)
        with pytest.raises(RunLocked, match=f"held by process {child.pid} on") as locked:
            demo.board().approve(card, by="ana")
        assert "decide its cards when the run waits for people or has ended" in str(locked.value)
        assert snapshot(demo.store, demo.run_id) == before
        child.stdin.write("\n")
        child.stdin.flush()
        child.wait(timeout=30)

    decision = demo.board().approve(card, by="ana")  # a dead holder's lease is taken over
    assert decision.after == "approved"
    assert demo.store.holder(demo.run_id) is None  # and given back


DECIDER = """
import sys
from hubspoke import Board, SQLiteStore
store = SQLiteStore(sys.argv[1])
decision = getattr(Board(store), sys.argv[2])(sys.argv[3], by=sys.argv[4])
print(decision.decision_id, decision.seq)
store.close()
"""


def test_decisions_from_processes_in_a_row_keep_the_journal_contiguous(demo: Demo) -> None:
    first, second = demo.review(0).id, demo.review(1).id
    last = demo.store.events(demo.run_id)[-1].seq
    said = []
    for verb, card, who in [
        ("park", first, "p1"),
        ("approve", second, "p2"),
        ("unpark", first, "p3"),
        ("skip", first, "p4"),
    ]:
        done = subprocess.run(
            [sys.executable, "-c", DECIDER, str(demo.path), verb, card, who],
            capture_output=True,
            text=True,
            env=_env(),
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        said.append(done.stdout.split())
    assert said == [
        [f"{first}/1", str(last + 1)],
        [f"{second}/1", str(last + 2)],
        [f"{first}/2", str(last + 3)],
        [f"{first}/3", str(last + 4)],
    ]
    events = demo.store.events(demo.run_id)
    assert [e.seq for e in events] == list(range(1, last + 5))
    decided = [Decision.of(e) for e in events if e.kind is EventKind.CARD_DECIDED]
    assert [(d.by, d.verb, d.after) for d in decided] == [
        ("p1", "park", "parked"),
        ("p2", "approve", "approved"),
        ("p3", "unpark", "review"),
        ("p4", "skip", "skipped"),
    ]


# the whole stream --------------------------------------------------------------------------------


def test_the_whole_event_stream_of_a_decided_run(demo: Demo) -> None:
    """Decisions append to the run's stream and change nothing before them; the fold's board
    follows them, and a fresh fold of the journal agrees with the one the board wrote."""
    drafted = demo.store.events(demo.run_id)
    board = demo.board()
    c = [card.id for card in board.cards(demo.run_id, "review")]
    asked = demo.escalated().id

    board.approve(c[0], by="ana")
    board.amend(c[1], set={"subject": "Routes for the winter peak"}, by="ana")
    board.park(c[2], by="bo", note="ask legal")
    board.skip(c[3], by="bo")
    board.unpark(c[2], by="ana")
    board.answer(asked, "their COO is Lena Park", by="cy")

    events = demo.store.events(demo.run_id)
    assert stream(events) == [
        *stream(drafted),
        "card.decided drafts personalization drafts[0] approve",
        "card.decided drafts personalization drafts[1] amend",
        "card.decided drafts personalization drafts[2] park",
        "card.decided drafts personalization drafts[3] skip",
        "card.decided drafts personalization drafts[2] unpark",
        "card.decided contacts contact_selection contacts[6] answer",
    ]
    assert [e.to_dict() for e in events[: len(drafted)]] == [e.to_dict() for e in drafted]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert payload_errors(events) == []
    assert [
        {k: v for k, v in e.data.items() if k not in ("content", "artifact_id")}
        for e in events[len(drafted) :]
    ] == [
        {
            "decision_id": f"{c[0]}/1",
            "card_id": c[0],
            "verb": "approve",
            "by": "ana",
            "before": "review",
            "after": "approved",
        },
        {
            "decision_id": f"{c[1]}/1",
            "card_id": c[1],
            "verb": "amend",
            "by": "ana",
            "before": "review",
            "after": "amended",
        },
        {
            "decision_id": f"{c[2]}/1",
            "card_id": c[2],
            "verb": "park",
            "by": "bo",
            "before": "review",
            "after": "parked",
            "note": "ask legal",
        },
        {
            "decision_id": f"{c[3]}/1",
            "card_id": c[3],
            "verb": "skip",
            "by": "bo",
            "before": "review",
            "after": "skipped",
        },
        {
            "decision_id": f"{c[2]}/2",
            "card_id": c[2],
            "verb": "unpark",
            "by": "ana",
            "before": "parked",
            "after": "review",
        },
        {
            "decision_id": f"{asked}/1",
            "card_id": asked,
            "verb": "answer",
            "by": "cy",
            "before": "escalated",
            "after": "answered",
            "answer": "their COO is Lena Park",
        },
    ]
    state = RunState.fold(demo.run_id, events)
    assert {card.card_id: card.column for card in state.cards.values() if card.decisions} == {
        c[0]: "approved",
        c[1]: "amended",
        c[2]: "review",
        c[3]: "skipped",
        asked: "answered",
    }
    summary = state.summary()
    assert (summary["cards"], summary["cards_in_review"], summary["status"]) == (10, 6, "waiting")
    assert {card.id: card.column.value for card in demo.store.cards(demo.run_id)} == {
        card.card_id: card.column for card in state.cards.values()
    }


def test_the_board_imports_no_foreman() -> None:
    """The board is importable without the foreman: the CLI's reading commands use it."""
    code = textwrap.dedent(
        """
        import sys
        import hubspoke.decisions
        print(any(m.startswith("hubspoke.foreman") for m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True
    )
    assert done.stdout.strip() == "False"


class Address(BaseModel):  # pydantic's default: extra keys are ignored, not refused
    city: str


class Lead(BaseModel):
    name: str
    address: Address
    tags: list[Address] = []


async def find_lead(inp: Lead, ctx: Context) -> Lead:
    return inp


def test_an_amend_whose_keys_a_lenient_schema_would_drop_is_refused(tmp_path: Path) -> None:
    """A schema that ignores extra keys would drop a mistyped nested field of a person's edit
    silently: the edit is refused naming each such key, and nothing is written."""
    wf = Workflow(
        name="leads",
        input=Lead,
        roles=[Role(name="finder", purpose="Find.", input=Lead, output=Lead, function=find_lead)],
        phases=[Phase(name="find", role="finder", input=lambda run: run.input, review=True)],
    )
    store = SQLiteStore(tmp_path / "j.db")
    lead = {"name": "Ada", "address": {"city": "Oslo"}, "tags": [{"city": "Rome"}]}
    result = asyncio.run(Foreman(wf, store).run(lead, run_id="run_lead"))
    assert result.status == "completed"
    board = Board(store, workflow=wf)
    card = board.cards(run_id="run_lead")[0].id
    before = snapshot(store, "run_lead")

    edit = {
        "name": "Ada",
        "address": {"city": "Oslo", "cty": "Bergen"},
        "tags": [{"city": "Rome", "sity": "x"}],
    }
    with pytest.raises(AmendRefused, match=r"does not keep: address\.cty, tags\.0\.sity") as no:
        board.amend(card, edit, by="ana")
    assert [e["loc"] for e in no.value.errors] == [["address", "cty"], ["tags", "0", "sity"]]
    with pytest.raises(AmendRefused, match=r"does not keep: address\.zip"):
        board.amend(card, set={"address.zip": "0150"}, by="ana")
    assert snapshot(store, "run_lead") == before

    board.amend(card, set={"address.city": "Bergen"}, by="ana")
    amended = board.card(card).content
    assert amended is not None and amended["address"] == {"city": "Bergen"}
