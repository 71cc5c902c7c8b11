"""`hubspoke board`, `hubspoke card ...` and `hubspoke outbox`, end to end on the sales demo.

The demo (started as `hubspoke demo sales`, so the run keeps its workflow's reference) leaves 9
drafts in review and 1 escalated contact. The editor of `card amend` is a real process: a small
Python script named by $EDITOR.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

import hubspoke
from hubspoke import EventKind, SQLiteStore
from hubspoke.cli import app
from hubspoke.cli.cards import default_by
from hubspoke.events import Event
from hubspoke.outbox import OutboxEntry

SOURCE = str(Path(hubspoke.__file__).parents[1])

runner = CliRunner()


def invoke(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def _no_db_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUBSPOKE_DB", raising=False)
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.delenv("EDITOR", raising=False)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("demo") / "journal.db"
    result = invoke("demo", "sales", "--db", db, "--json")
    assert result.exit_code == 0, result.output
    return db, json.loads(result.stdout)["run_id"]


@dataclass
class Demo:
    db: Path
    run_id: str

    def board(self, *args: str) -> dict[str, list[dict[str, Any]]]:
        result = invoke("board", "--db", self.db, "--json", *args)
        assert result.exit_code == 0, result.output
        grouped: dict[str, list[dict[str, Any]]] = json.loads(result.stdout)
        return grouped

    def review(self, n: int = 0) -> str:
        card: str = self.board("--column", "review")["review"][n]["id"]
        return card

    def escalated(self) -> str:
        card: str = self.board("--column", "escalated")["escalated"][0]["id"]
        return card

    def events(self) -> list[Event]:
        store = SQLiteStore(self.db, read_only=True)
        try:
            return store.events(self.run_id)
        finally:
            store.close()

    def decisions(self) -> list[dict[str, Any]]:
        return [e.data for e in self.events() if e.kind is EventKind.CARD_DECIDED]

    def show(self, card: str) -> dict[str, Any]:
        result = invoke("card", "show", card, "--db", self.db, "--json")
        assert result.exit_code == 0, result.output
        shown: dict[str, Any] = json.loads(result.stdout)
        return shown


@pytest.fixture
def demo(template: tuple[Path, str], tmp_path: Path) -> Demo:
    db = tmp_path / "journal.db"
    shutil.copy(template[0], db)
    return Demo(db, template[1])


def assert_refused(result: Result, *fragments: str) -> None:
    """Exit 2, a message on stderr saying what to do, and no traceback."""
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr and "Traceback" not in result.output
    said = " ".join(result.stderr.split())
    for fragment in fragments:
        assert fragment in said, said


# the board ---------------------------------------------------------------------------------------


def test_board_lists_the_cards_by_column_and_filters_by_run_and_column(demo: Demo) -> None:
    every = demo.board()
    assert list(every)[:2] == ["review", "escalated"]
    assert (len(every["review"]), len(every["escalated"])) == (9, 1)
    assert demo.board("--run", demo.run_id[:10]) == every
    assert list(demo.board("--column", "escalated")) == ["escalated"]
    assert json.loads(invoke("cards", demo.run_id, "--db", demo.db, "--json").stdout) == every

    human = invoke("board", "--db", demo.db, "--run", demo.run_id)
    assert human.exit_code == 0
    assert "review (9)" in human.stdout and "escalated (1)" in human.stdout

    assert_refused(
        invoke("board", "--db", demo.db, "--column", "done"),
        "unknown column 'done'; use one of review",
    )
    assert_refused(invoke("board", "--db", demo.db, "--run", "run_nope"), "no run 'run_nope'")


def test_card_show_prints_the_output_and_the_verbs(demo: Demo) -> None:
    card = demo.review()
    shown = demo.show(card[:12])
    assert (shown["id"], shown["column"], shown["verbs"]) == (
        card,
        "review",
        ["approve", "amend", "park", "skip"],
    )
    assert shown["content"]["to"].endswith(".example") and shown["decisions"] == []

    human = invoke("card", "show", card, "--db", demo.db)
    assert human.exit_code == 0
    assert shown["content"]["subject"] in human.stdout
    assert f"decide it: hubspoke card approve|amend|park|skip {card}" in human.stdout

    asked = invoke("card", "show", demo.escalated(), "--db", demo.db)
    assert "the item's input (answer --input replaces it)" in asked.stdout
    assert "Marex Logistics" in asked.stdout

    assert_refused(invoke("card", "show", "card_nope", "--db", demo.db), "no card 'card_nope'")
    assert_refused(invoke("card", "show", "card_", "--db", demo.db), "matches 10 cards")


# the verbs ---------------------------------------------------------------------------------------


def test_approve_park_unpark_and_skip_record_who_and_why(demo: Demo) -> None:
    first, second = demo.review(0), demo.review(1)
    steps = [
        ("park", first, ["--by", "ana", "--note", "ask legal"]),
        ("unpark", first, ["--by", "bo"]),
        ("approve", first, ["--by", "ana"]),
        ("skip", second, ["--by", "cy", "--note", "not a fit"]),
    ]
    for verb, card, options in steps:
        result = invoke("card", verb, card[:14], "--db", demo.db, *options)
        assert result.exit_code == 0, result.output
        assert card in result.stdout

    assert [
        (d["verb"], d["by"], d["before"], d["after"], d.get("note")) for d in demo.decisions()
    ] == [
        ("park", "ana", "review", "parked", "ask legal"),
        ("unpark", "bo", "parked", "review", None),
        ("approve", "ana", "review", "approved", None),
        ("skip", "cy", "review", "skipped", "not a fit"),
    ]
    board = demo.board()
    assert [c["id"] for c in board["approved"]] == [first]
    assert [(c["id"], c["note"]) for c in board["skipped"]] == [(second, "not a fit")]

    # Approving again decides nothing more; it only makes sure the follow-up ran, once.
    again = invoke("card", "approve", first, "--db", demo.db)
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[0] == f"card {first} is already approved"
    assert "(it had run already)" in again.stdout
    assert len(demo.decisions()) == 4


def test_the_decision_line_says_what_moved(demo: Demo) -> None:
    card = demo.review()
    title = demo.show(card)["title"]
    result = invoke("card", "approve", card, "--db", demo.db, "--by", "ana")
    decided, followed = result.stdout.strip().splitlines()
    assert decided == f"approved {card} ({title}) by ana: review → approved [{card}/1]"
    assert followed.startswith("follow-up ") and followed.endswith(": completed")


def test_by_defaults_to_the_user(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "sam")
    assert invoke("card", "park", demo.review(), "--db", demo.db).exit_code == 0
    monkeypatch.delenv("USER")
    assert invoke("card", "park", demo.review(1), "--db", demo.db).exit_code == 0
    assert [d["by"] for d in demo.decisions()] == ["sam", "unknown"]
    assert default_by({"USER": "  "}) == "unknown"


def test_amend_with_set_and_json(demo: Demo, tmp_path: Path) -> None:
    first, second, third = demo.review(0), demo.review(1), demo.review(2)

    done = invoke(
        "card",
        "amend",
        first,
        "--set",
        "subject=Routes for the winter peak",
        "--set",
        "confidence=0.95",
        "--db",
        demo.db,
    )
    assert done.exit_code == 0, done.output
    assert "the amended output is art_" in done.stdout
    shown = demo.show(first)
    assert (shown["column"], shown["content"]["subject"], shown["content"]["confidence"]) == (
        "amended",
        "Routes for the winter peak",
        0.95,
    )

    whole = demo.show(second)["content"] | {"subject": "A whole new draft, from JSON"}
    assert (
        invoke("card", "amend", second, "--json", json.dumps(whole), "--db", demo.db).exit_code == 0
    )
    assert demo.show(second)["content"] == whole

    edit = tmp_path / "draft.json"
    edit.write_text(json.dumps(demo.show(third)["content"] | {"subject": "From a file"}))
    assert invoke("card", "amend", third, "--json", f"@{edit}", "--db", demo.db).exit_code == 0
    assert demo.show(third)["content"]["subject"] == "From a file"


def test_an_invalid_amend_lists_each_field_error_and_writes_nothing(demo: Demo) -> None:
    card = demo.review()
    before = demo.events()

    result = invoke(
        "card", "amend", card, "--set", "subject=x", "--set", "confidence=2", "--db", demo.db
    )
    assert_refused(
        result,
        "does not fit hubspoke.examples.sales.schemas.Draft (nothing was written):",
        "- subject: String should have at least 5 characters",
        "- confidence: Input should be less than or equal to 1",
    )
    assert_refused(
        invoke("card", "amend", card, "--set", "subject", "--db", demo.db),
        "--set 'subject' is not FIELD=VALUE",
    )
    assert_refused(
        invoke("card", "amend", card, "--json", "{not json", "--db", demo.db),
        "--json is not valid JSON",
    )
    assert_refused(
        invoke("card", "amend", card, "--json", "[1]", "--db", demo.db),
        "--json is a JSON list, but the amended output is a JSON object",
    )
    assert_refused(
        invoke("card", "amend", card, "--db", demo.db), "no editor to amend in: set $EDITOR"
    )
    assert_refused(
        invoke("card", "amend", demo.escalated(), "--set", "a=1", "--db", demo.db),
        "cannot amend card",
        "it is in column 'escalated', which takes skip, answer, abort",
    )
    assert [e.to_dict() for e in demo.events()] == [e.to_dict() for e in before]


def test_answer_text_or_a_corrected_input_and_abort(demo: Demo, tmp_path: Path) -> None:
    card = demo.escalated()
    asked = demo.show(card)["input"]

    assert_refused(invoke("card", "answer", card, "--db", demo.db), "give the answer as TEXT")
    assert_refused(
        invoke("card", "answer", card, "hi", "--input", "{}", "--db", demo.db),
        "give the answer as TEXT",
    )
    wrong = invoke("card", "answer", card, "--input", '{"company": {}}', "--db", demo.db)
    assert_refused(wrong, "the corrected input for card", "- icp: Field required")
    assert demo.decisions() == []

    corrected = tmp_path / "input.json"
    corrected.write_text(json.dumps(asked | {"company": asked["company"] | {"score": 9.0}}))
    result = invoke("card", "answer", card, "--input", f"@{corrected}", "--db", demo.db)
    assert result.exit_code == 0, result.output
    (decision,) = demo.decisions()
    assert (decision["verb"], decision["input"]["company"]["score"]) == ("answer", 9.0)

    assert_refused(
        invoke("card", "abort", card, "--reason", "late", "--db", demo.db),
        "it is in column 'answered', decided already",
    )


def test_abort_ends_the_run(demo: Demo) -> None:
    card = demo.escalated()
    assert invoke("card", "abort", card, "--db", demo.db).exit_code == 2  # --reason is required
    result = invoke("card", "abort", card, "--reason", "wrong region", "--db", demo.db)
    assert result.exit_code == 0, result.output
    assert f"run {demo.run_id} ended aborted" in result.stdout
    runs = json.loads(invoke("runs", "--db", demo.db, "--json").stdout)
    assert [r["status"] for r in runs if r["run_id"] == demo.run_id] == ["aborted"]


def test_a_store_that_refuses_the_write_exits_1_and_writes_nothing(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(SQLiteStore, "append", refuse)
    result = invoke("card", "approve", demo.review(), "--db", demo.db)
    assert result.exit_code == 1, result.output
    assert "the journal refused the decision: disk I/O error" in " ".join(result.stderr.split())
    monkeypatch.undo()
    assert demo.decisions() == []


def test_a_run_a_live_process_drives_is_refused(demo: Demo) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        from hubspoke import SQLiteStore
        store = SQLiteStore({str(demo.db)!r})
        print(store.acquire({demo.run_id!r}, "a-foreman"), flush=True)
        sys.stdin.readline()
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")])}
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == "None"
        result = invoke("card", "approve", demo.review(), "--db", demo.db)
        child.stdin.write("\n")
        child.stdin.flush()
    assert_refused(
        result,
        f"held by process {child.pid}",
        "decide its cards when the run waits for people or has ended",
    )
    assert "resume it" not in result.stderr
    assert demo.decisions() == []


# $EDITOR -----------------------------------------------------------------------------------------

EDITOR = textwrap.dedent(
    """
    import json, sys
    path, what = sys.argv[-1], sys.argv[1]
    text = open(path, encoding="utf-8").read()
    if what == "fail":
        sys.exit(3)
    if what == "garble":
        open(path, "w", encoding="utf-8").write(text + "oops")
        sys.exit(0)
    draft = json.loads(text)
    draft["subject"] = {"good": "Routes for the winter peak", "bad": "x"}[what]
    open(path, "w", encoding="utf-8").write(json.dumps(draft, indent=2))
    """
)


@pytest.fixture
def editor(tmp_path: Path) -> Iterator[Any]:
    """Run `hubspoke card amend CARD` in a subprocess with $EDITOR set to a script that makes a
    good edit, a bad one, garbles the file, or fails; the temporary folder is the test's."""
    script = tmp_path / "editor.py"
    script.write_text(EDITOR, encoding="utf-8")
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    def amend(db: Path, card: str, what: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")]),
            "EDITOR": f"{sys.executable} {script} {what}",
            "TMPDIR": str(scratch),
            "USER": "ed",
        }
        env.pop("VISUAL", None)
        return subprocess.run(
            [sys.executable, "-m", "hubspoke.cli", "card", "amend", card, "--db", str(db)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
            timeout=60,
        )

    amend.scratch = scratch  # type: ignore[attr-defined]
    yield amend


def test_amend_in_the_editor(demo: Demo, editor: Any) -> None:
    card = demo.review()
    done = editor(demo.db, card, "good")
    assert done.returncode == 0, done.stderr
    assert demo.show(card)["content"]["subject"] == "Routes for the winter peak"
    assert [d["by"] for d in demo.decisions()] == ["ed"]
    assert list(editor.scratch.iterdir()) == []  # the edit's file is gone once amended


def test_an_invalid_edit_keeps_the_edited_text_in_a_file_it_names(demo: Demo, editor: Any) -> None:
    card = demo.review()
    done = editor(demo.db, card, "bad")
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert "- subject: String should have at least 5 characters" in said
    (kept,) = editor.scratch.iterdir()
    assert f"your edit is kept in {kept}" in said
    assert f"hubspoke card amend {card} --json @{kept}" in said
    assert json.loads(kept.read_text())["subject"] == "x"
    assert demo.decisions() == []

    garbled = editor(demo.db, card, "garble")
    assert garbled.returncode == 2
    assert "the edit is not valid JSON" in garbled.stderr
    assert len(list(editor.scratch.iterdir())) == 2  # that edit is kept too

    failed = editor(demo.db, card, "fail")
    assert failed.returncode == 2
    assert "exited with 3; nothing was amended" in " ".join(failed.stderr.split())
    assert demo.decisions() == []


# the outbox --------------------------------------------------------------------------------------


def test_outbox_lists_what_runs_wrote(demo: Demo) -> None:
    empty = invoke("outbox", "--db", demo.db)
    assert (empty.exit_code, empty.stdout.strip()) == (
        0,
        "the outbox is empty: no run wrote a message",
    )
    store = SQLiteStore(demo.db)
    try:
        last = store.events(demo.run_id)[-1]
        marker = Event(
            demo.run_id, last.seq + 1, last.ts, EventKind.PHASE_STARTED, data={"items": 0}
        )
        entries = [
            OutboxEntry(
                key=f"send/{n}",
                run_id=demo.run_id,
                item=f"send[{n}]",
                created=1000.0 + n,
                content={"to": f"p{n}@example.com", "body": "Hej"},
            )
            for n in (1, 0)
        ]
        store.append([marker], outbox=entries)
    finally:
        store.close()

    listed = json.loads(invoke("outbox", "--db", demo.db, "--json").stdout)
    assert [(e["key"], e["content"]["to"]) for e in listed] == [
        ("send/0", "p0@example.com"),
        ("send/1", "p1@example.com"),
    ]
    assert (
        json.loads(invoke("outbox", "--run", demo.run_id[:9], "--db", demo.db, "--json").stdout)
        == listed
    )
    human = invoke("outbox", "--db", demo.db)
    assert "outbox (2)" in human.stdout and "p0@example.com" in human.stdout


# help --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["board"],
        ["outbox"],
        ["card", "show"],
        ["card", "approve"],
        ["card", "park"],
        ["card", "unpark"],
        ["card", "skip"],
        ["card", "amend"],
        ["card", "answer"],
        ["card", "abort"],
    ],
)
def test_every_board_command_has_help_with_an_example(command: list[str]) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == 0
    assert "Example" in result.stdout and "--db" in result.stdout
