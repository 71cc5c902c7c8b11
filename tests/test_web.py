"""The web app (`hubspoke ui`) at HTML level, through FastAPI's test client, on the sales demo.

The demo (started as `hubspoke demo sales`, so the run keeps its workflow's reference) leaves 9
drafts in review and 1 escalated contact. Each test gets its own copy of the journal: an SQLite
file, or (the tests marked `ON_BOTH`) a PostgreSQL database too, copied from one the demo wrote
(tests/pgserver.py; they skip without PostgreSQL, and fail in CI). What a decision wrote is read
back from the journal (`card.decided` events, the outbox), never from the page alone; every
defence is checked to refuse and to write nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import socket
from collections.abc import Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from pydantic import BaseModel
from typer.testing import CliRunner

from hubspoke import Context, EventKind, Foreman, Phase, Role, SQLiteStore, Workflow
from hubspoke.cli import app as cli
from hubspoke.cli.ui import url_for
from hubspoke.decisions import Board
from hubspoke.errors import StoreUnavailable
from hubspoke.journal.location import open_store
from hubspoke.phases import EvaluationRequest, Verdict
from hubspoke.web.app import create_app, routers
from hubspoke.web.security import Access, Guard, is_loopback
from hubspoke.web.views import edited_content
from tests.pgserver import PASSWORD, PASSWORD_USER, PostgresServer, free_port, missing

TOKEN = "tok-3f2a9c8e1d7b"
BASE = "http://127.0.0.1:8765"
VENDOR = Path(__file__).parents[1] / "src" / "hubspoke" / "web" / "static" / "vendor"

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_db_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUBSPOKE_DB", raising=False)
    monkeypatch.delenv("HUBSPOKE_UI_TOKEN", raising=False)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    db = tmp_path_factory.mktemp("demo") / "journal.db"
    result = runner.invoke(cli, ["demo", "sales", "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    return db, json.loads(result.stdout)["run_id"]


@pytest.fixture(scope="module")
def pg_template(postgres: PostgresServer | str) -> Iterator[tuple[str, str]]:
    """A PostgreSQL database the demo wrote (copied for each test), and the demo's run id."""
    if isinstance(postgres, str):
        missing(postgres)
        raise AssertionError("unreachable")
    with postgres.database() as url:
        result = runner.invoke(cli, ["demo", "sales", "--db", url, "--json"])
        assert result.exit_code == 0, result.output
        yield url, json.loads(result.stdout)["run_id"]


ON_BOTH = pytest.mark.parametrize("web", ["sqlite", "postgres"], indirect=True)
"""Run the test on an SQLite file and on a PostgreSQL database (`web`'s parameter)."""


@dataclass
class Web:
    """A logged-in client over a copy of the demo's journal."""

    client: TestClient
    db: Path | str
    """The journal: an SQLite file, or a PostgreSQL URL."""
    run_id: str

    def page(self, path: str = "/board", **params: str | list[str]) -> str:
        response = self.client.get(path, params=params) if params else self.client.get(path)
        assert response.status_code == 200, response.text
        return response.text

    @property
    def csrf(self) -> str:
        found = re.search(r'name="csrf" value="([0-9a-f]+)"', self.page())
        assert found is not None
        return found.group(1)

    def cards(self, column: str) -> list[str]:
        return cards_in(self.page(), column)

    def post(self, path: str, data: dict[str, str], **headers: str) -> Response:
        return self.client.post(
            path, data={"csrf": self.csrf, **data}, headers=headers, follow_redirects=False
        )

    def events(self, kind: EventKind | None = None) -> list[Any]:
        store = open_store(self.db, read_only=True)
        try:
            return [e for e in store.events(self.run_id) if kind is None or e.kind is kind]
        finally:
            store.close()

    def events_of(self, run_id: str, kind: EventKind) -> list[Any]:
        """The `kind` events' data of another run of the journal."""
        store = open_store(self.db, read_only=True)
        try:
            return [e.data for e in store.events(run_id) if e.kind is kind]
        finally:
            store.close()

    def decisions(self) -> list[dict[str, Any]]:
        return [e.data for e in self.events(EventKind.CARD_DECIDED)]

    def outbox(self) -> list[Any]:
        store = open_store(self.db, read_only=True)
        try:
            return store.outbox()
        finally:
            store.close()


def login(client: TestClient) -> None:
    response = client.get(f"/?token={TOKEN}", follow_redirects=False)
    assert response.status_code == 303, response.text


@pytest.fixture
def web(
    request: pytest.FixtureRequest, template: tuple[Path, str], tmp_path: Path
) -> Iterator[Web]:
    """The app over a copy of the demo's journal: an SQLite file, or with the parameter
    ``"postgres"`` (`ON_BOTH`) a PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "postgres":
        url, run_id = request.getfixturevalue("pg_template")
        server: PostgresServer = request.getfixturevalue("postgres")
        with (
            server.database(template=url) as copy,
            TestClient(create_app(copy, TOKEN, by="ana"), base_url=BASE) as client,
        ):
            login(client)
            yield Web(client, copy, run_id)
        return
    db = tmp_path / "journal.db"
    shutil.copy(template[0], db)
    with TestClient(create_app(db, TOKEN, by="ana"), base_url=BASE) as client:
        login(client)
        yield Web(client, db, template[1])


def cards_in(html: str, column: str) -> list[str]:
    """The ids of the cards in one column of a board page, top to bottom."""
    start = html.index(f'id="cards-{column}"')
    end = html.find('<section class="column', start)
    return re.findall(
        r'<article class="card [^"]*" id="([^"]+)"', html[start : end if end > 0 else None]
    )


def article(html: str, card: str) -> str:
    """The HTML of one card."""
    start = html.index(f'id="{card}"')
    return html[start : html.index("</article>", start)]


# the vendored scripts ----------------------------------------------------------------------------


def test_vendored_htmx_matches_its_checksums_and_ships_its_licences() -> None:
    sums = {}
    for line in (VENDOR / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split()
        sums[name] = digest
    files = {p.name for p in VENDOR.iterdir()} - {"SHA256SUMS", "README.md"}
    assert set(sums) == files  # every file is listed, and nothing listed is missing
    for name, digest in sums.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert {"htmx-2.0.11.min.js", "htmx-2.0.11.LICENSE"} <= files
    assert {"htmx-ext-sse-2.2.4.min.js", "htmx-ext-sse-2.2.4.LICENSE"} <= files


def test_every_page_loads_htmx_and_its_sse_extension_from_the_package(web: Web) -> None:
    for path in ("/board", "/runs", f"/cards/{web.cards('review')[0]}"):
        html = web.page(path)
        assert '<script src="/static/vendor/htmx-2.0.11.min.js"></script>' in html
        assert '<script src="/static/vendor/htmx-ext-sse-2.2.4.min.js"></script>' in html
        assert '<a href="/board">Board</a>' in html and '<a href="/runs">Runs</a>' in html
    served = web.client.get("/static/vendor/htmx-2.0.11.min.js")
    assert served.status_code == 200
    assert served.content == (VENDOR / "htmx-2.0.11.min.js").read_bytes()


# the board ---------------------------------------------------------------------------------------


@ON_BOTH
def test_the_board_shows_every_column_and_what_a_card_needs(web: Web) -> None:
    html = web.page()

    for column in ("review", "approved", "amended", "parked", "skipped", "escalated"):
        assert f'id="cards-{column}"' in html
    assert len(web.cards("review")) == 9 and len(web.cards("escalated")) == 1
    assert re.search(r'id="count-review">9<', html) and re.search(r'id="count-escalated">1<', html)
    card = article(html, web.cards("review")[0])
    # the draft, the signal it cites and the evidence that holds it, marked
    assert "<dt>subject</dt>" in card and "<dt>body</dt>" in card
    cited = re.search(r"cited_signal <code>(c\d{3}-s\d+)</code>", card)
    assert cited is not None
    assert re.search(rf"<mark>[^<]*\({cited.group(1)}\)</mark>", card)
    # the verdicts, the cost and the verbs
    assert "Validator</dt><dd>valid Draft on attempt 1" in card
    assert "Evaluator</dt><dd>no evaluator judged it" in card
    # a draft that failed validation once says why
    assert "valid Draft on attempt 2; refused before: cited_signal: Field required" in html
    assert re.search(r"Cost</dt><dd>\d+ in / \d+ out tokens, \$\d", card)
    for verb in ("approve", "park", "skip"):
        assert f'name="verb" value="{verb}"' in card
    assert 'action="/cards/' in card and "/amend" in card and 'value="unpark"' not in card
    asked = article(html, web.cards("escalated")[0])
    assert "No plausible decision-maker at Marex Logistics" in asked
    assert "/answer" in asked and "/abort" in asked and 'value="approve"' not in asked
    assert "The item's input" in asked and "&#34;icp&#34;" in asked


def test_the_board_filters_by_run_and_workflow(web: Web) -> None:
    assert len(cards_in(web.page(f"/board?run={web.run_id}"), "review")) == 9
    other = web.page("/board?run=run_other")
    assert cards_in(other, "review") == [] and '<option value="run_other" selected>' in other
    assert len(cards_in(web.page("/board?workflow=sales"), "escalated")) == 1
    assert cards_in(web.page("/board?workflow=sending"), "review") == []
    html = web.page(f"/board?run={web.run_id}&workflow=sales")
    assert f'<option value="{web.run_id}" selected>' in html
    assert '<option value="sales" selected>' in html


def test_a_card_links_to_its_item_and_the_items_events_in_the_inspector(web: Web) -> None:
    """From the board, one click reaches what the card is about in the run inspector: its
    item's row (with its output, its cost, its sub-runs) and its item's events."""
    html = web.page()
    card = article(html, web.cards("review")[0])
    item = re.search(r"(\w+\[\d+\])</a>", card)
    assert item is not None
    key = item.group(1)
    anchor = quote(key, safe="")
    assert f'href="/runs/{web.run_id}#item-{anchor}"' in card
    assert f'href="/runs/{web.run_id}?item={anchor}#events"' in card
    inspector = web.page(f"/runs/{web.run_id}")
    assert f'id="item-{anchor}"' in inspector  # the link lands on the item's row


@ON_BOTH
def test_a_card_has_its_own_page(web: Web) -> None:
    card = web.cards("review")[0]
    assert f'id="{card}"' in web.page(f"/cards/{card}")
    assert f'id="{card}"' in web.page(f"/cards/{card[:12]}")  # a unique prefix, as the CLI
    missing = web.client.get("/cards/card_nope")
    assert missing.status_code == 404 and "no card &#39;card_nope&#39;" in missing.text
    gone = web.post("/cards/card_nope/decide", {"verb": "approve"}, **{"HX-Request": "true"})
    assert gone.text.strip().startswith('<p class="msg error"') and "no card" in gone.text


# the board notices changes made elsewhere ------------------------------------------------------


def shown_states(html: str) -> list[str]:
    """The ``shown`` values a board page sends with its poll: one per card."""
    return re.findall(r'class="card-state" name="shown" value="([^"]+)"', html)


@ON_BOTH
def test_the_board_says_what_changed_elsewhere_since_it_was_loaded(web: Web) -> None:
    html = web.page("/board")
    shown = shown_states(html)
    assert len(shown) == 10 and 'hx-get="/board/changes"' in html  # 9 drafts, 1 escalation
    assert web.page("/board/changes", shown=shown).strip() == ""  # nothing changed yet

    # Another process decides two cards (the CLI, another person), on the same journal.
    first, second = web.cards("review")[:2]
    store = open_store(web.db)
    try:
        Board(store).park(first, by="bo")
        Board(store).skip(second, by="bo")
    finally:
        store.close()
    notice = web.page("/board/changes", shown=shown)
    assert "2 cards decided elsewhere" in notice and 'href="/board"' in notice

    # The page's own decisions move its cards with their new state: no notice for them.
    third = web.cards("review")[0]
    response = web.post(f"/cards/{third}/decide", {"verb": "approve"}, **{"HX-Request": "true"})
    moved = [v for v in shown_states(response.text) if v.startswith(f"{third}:")]
    assert moved == [f"{third}:approved:1"]
    now = shown_states(web.page("/board"))
    assert web.page("/board/changes", shown=now).strip() == ""
    # A card the page never showed is new; a filtered board asks about its own cards only.
    assert "1 new card" in web.page("/board/changes", shown=now[1:])
    assert web.page("/board/changes", shown=[], run="run_other").strip() == ""


# decisions without JavaScript: POST, then a redirect -------------------------------------------


@ON_BOTH
def test_approving_three_cards_puts_three_messages_in_the_outbox(web: Web) -> None:
    chosen = web.cards("review")[:3]
    for card in chosen:
        response = web.post(f"/cards/{card}/decide", {"verb": "approve", "note": "good"})
        assert response.status_code == 303
        assert response.headers["location"] == f"/board?decided={card}#{card}"

    html = web.page(response.headers["location"])
    assert sorted(cards_in(html, "approved")) == sorted(chosen)
    assert "approve by ana: review → approved" in html
    assert [(d["card_id"], d["verb"], d["by"], d.get("note")) for d in web.decisions()] == [
        (card, "approve", "ana", "good") for card in chosen
    ]
    messages = web.outbox()
    assert len(messages) == 3
    assert sorted(m.run_id for m in messages) == sorted(
        f"{web.run_id}.drafts_{n}_.follow-up" for n in range(3)
    )


def test_decisions_on_cards_of_one_run_at_once_all_go_through(web: Web) -> None:
    """Several cards of one run decided at the same moment (htmx sends each card's click at
    once; two people on one board) are each written: the app's own requests wait for each
    other instead of refusing as if a live process drove the run."""
    chosen = web.cards("review")[:6]
    csrf = web.csrf

    def approve(card: str) -> int:
        response = web.client.post(
            f"/cards/{card}/decide",
            data={"csrf": csrf, "verb": "approve"},
            follow_redirects=False,
        )
        return response.status_code

    with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
        statuses = list(pool.map(approve, chosen))

    assert statuses == [303] * len(chosen)
    assert sorted(d["card_id"] for d in web.decisions()) == sorted(chosen)
    assert len(web.outbox()) == len(chosen)  # each approval's follow-up sent one message


def test_park_unpark_and_skip_move_the_card_and_record_who(web: Web) -> None:
    first, second = web.cards("review")[:2]
    web.post(f"/cards/{first}/decide", {"verb": "park", "note": "check the signal"})
    assert web.cards("parked") == [first]
    assert 'value="unpark"' in article(web.page(), first)
    web.post(f"/cards/{first}/decide", {"verb": "unpark"})
    web.post(f"/cards/{second}/decide", {"verb": "skip", "note": "not a fit"})

    assert first in web.cards("review") and web.cards("skipped") == [second]
    assert [(d["verb"], d["before"], d["after"], d.get("note")) for d in web.decisions()] == [
        ("park", "review", "parked", "check the signal"),
        ("unpark", "parked", "review", None),
        ("skip", "review", "skipped", "not a fit"),
    ]
    assert web.outbox() == []


def test_a_verb_the_column_does_not_take_is_refused_and_writes_nothing(web: Web) -> None:
    card = web.cards("review")[0]
    web.post(f"/cards/{card}/decide", {"verb": "skip"})

    again = web.post(f"/cards/{card}/decide", {"verb": "approve", "note": "typed"})

    assert again.status_code == 400
    said = article(again.text, card)
    assert "cannot approve card" in said and "decided already" in said
    assert len(web.decisions()) == 1
    unknown = web.post(f"/cards/{card}/decide", {"verb": "delete"})
    assert unknown.status_code == 400 and "unknown verb" in unknown.text


@ON_BOTH
def test_an_invalid_amend_loses_nothing_and_a_valid_one_is_written(web: Web) -> None:
    card = web.cards("review")[0]
    form = {"field.subject": "Hi", "field.confidence": "1.5", "note": "tighter"}

    refused = web.post(f"/cards/{card}/amend", form)

    assert refused.status_code == 422
    shown = article(refused.text, card)
    assert 'name="field.subject" value="Hi" aria-invalid="true"' in shown
    assert re.search(r'-subject-error">String should have at least 5 characters', shown)
    assert re.search(r'-confidence-error">Input should be less than or equal to 1', shown)
    assert ">1.5</textarea>" in shown and 'value="tighter"' in shown
    assert '<details class="amend" open>' in shown
    assert web.decisions() == [] and web.cards("review")[0] == card

    not_json = web.post(f"/cards/{card}/amend", {"field.confidence": "very"})
    assert not_json.status_code == 422 and "not JSON" in article(not_json.text, card)

    body = (
        "Hi Nils,\r\n\r\nA shorter note about the new COO and what Routewise does for cold chain."
    )
    done = web.post(
        f"/cards/{card}/amend",
        {"field.subject": "Routes for the winter peak", "field.body": body, "note": "tighter"},
    )

    assert done.status_code == 303
    [decision] = web.decisions()
    assert decision["verb"] == "amend" and decision["after"] == "amended"
    assert decision["content"]["subject"] == "Routes for the winter peak"
    assert decision["content"]["body"] == body.replace("\r\n", "\n")  # as typed, line ends kept
    assert decision["content"]["confidence"] == 0.8  # untouched fields as they were
    assert web.cards("amended") == [card]
    [message] = web.outbox()
    assert message.content["subject"] == "Routes for the winter peak"


@ON_BOTH
def test_an_escalation_is_answered_and_an_empty_answer_refused(web: Web) -> None:
    card = web.cards("escalated")[0]

    empty = web.post(f"/cards/{card}/answer", {"answer": "  "})
    assert empty.status_code == 400 and "the answer is empty" in article(empty.text, card)
    bad = web.post(f"/cards/{card}/answer", {"input": "{not json", "answer": ""})
    assert bad.status_code == 422
    assert "not JSON" in article(bad.text, card) and "{not json</textarea>" in bad.text
    wrong = web.post(f"/cards/{card}/answer", {"input": '{"company": 1}'})
    assert wrong.status_code == 422 and "does not fit" in article(wrong.text, card)
    assert web.decisions() == []

    done = web.post(f"/cards/{card}/answer", {"answer": "Marex has no one; try their COO"})

    assert done.status_code == 303
    [decision] = web.decisions()
    assert (decision["verb"], decision["after"], decision["answer"]) == (
        "answer",
        "answered",
        "Marex has no one; try their COO",
    )
    assert web.cards("answered") == [card]


def test_aborting_needs_a_reason_and_ends_the_run(web: Web) -> None:
    card = web.cards("escalated")[0]
    refused = web.post(f"/cards/{card}/abort", {"reason": ""})
    assert refused.status_code == 400 and "say why the run is aborted" in refused.text

    web.post(f"/cards/{card}/abort", {"reason": "wrong region"})

    [finished] = [e.data for e in web.events(EventKind.RUN_FINISHED)][-1:]
    assert finished["status"] == "aborted" and "wrong region" in finished["reason"]
    assert web.cards("skipped") == [card]


@ON_BOTH
def test_a_run_held_by_a_live_process_is_refused_and_the_typed_text_kept(web: Web) -> None:
    card = web.cards("review")[0]
    holder = open_store(web.db)
    assert holder.acquire(web.run_id, "live-process-7") is None
    try:
        refused = web.post(f"/cards/{card}/amend", {"field.subject": "Kept as typed", "note": "n"})
        htmx = web.post(f"/cards/{card}/decide", {"verb": "approve"}, **{"HX-Request": "true"})
    finally:
        holder.release(web.run_id, "live-process-7")
        holder.close()

    assert refused.status_code == 409
    shown = article(refused.text, card)
    assert "is held by process" in shown and "which is driving it now" in shown
    assert "Nothing was written" in shown
    assert 'value="Kept as typed"' in shown
    assert htmx.status_code == 200 and htmx.text.lstrip().startswith("<article")
    assert "is held by process" in htmx.text
    assert web.decisions() == []


# decisions with htmx: the card is swapped --------------------------------------------------------


@ON_BOTH
def test_with_htmx_a_decided_card_moves_to_its_new_column(web: Web) -> None:
    card = web.cards("review")[0]

    response = web.post(
        f"/cards/{card}/decide",
        {"verb": "park", "back_run": web.run_id},
        **{"HX-Request": "true", "HX-Current-URL": f"{BASE}/board?run={web.run_id}"},
    )

    assert response.status_code == 200
    html = response.text
    assert '<div hx-swap-oob="afterbegin:#cards-parked">' in html
    assert f'id="{card}"' in html and "parked by ana: review → parked" in html
    assert '<span class="count" id="count-review" hx-swap-oob="true">8</span>' in html
    assert '<span class="count" id="count-parked" hx-swap-oob="true">1</span>' in html
    assert f'name="back_run" value="{web.run_id}"' in html  # the forms keep the board's filter


def test_with_htmx_a_refused_amend_comes_back_in_place(web: Web) -> None:
    card = web.cards("review")[0]

    response = web.post(f"/cards/{card}/amend", {"field.subject": "Hi"}, **{"HX-Request": "true"})

    assert response.status_code == 200  # htmx swaps 2xx only
    assert response.text.lstrip().startswith('<article class="card col-review')
    assert 'value="Hi"' in response.text
    assert 'hx-swap-oob="afterbegin' not in response.text  # not moved
    assert '<div id="notice" class="notice" role="alert" hx-swap-oob="true"></div>' in (
        response.text  # an earlier refusal's notice is cleared
    )


# the runs ----------------------------------------------------------------------------------------


@ON_BOTH
def test_the_runs_page_lists_runs_and_puts_waiting_ones_first(web: Web) -> None:
    web.post(f"/cards/{web.cards('review')[0]}/decide", {"verb": "approve"})

    html = web.page("/runs")

    waiting = html[html.index("Waiting for people") : html.index("</section>")]
    assert web.run_id in waiting and "9 decisions pending" in waiting
    assert f'href="/board?run={web.run_id}"' in waiting
    row = html[html.index(f'id="run-{web.run_id}"') :]
    row = row[: row.index("</tr>")]
    assert 'class="status-waiting waiting"' in html
    assert f'<a href="/runs/{web.run_id}">' in row
    assert re.search(r'data-label="Tokens">\d+ / \d+<', row)
    assert re.search(r'data-label="USD">\$\d', row) and 'data-label="Duration">' in row
    follow_up = f"{web.run_id}.drafts_0_.follow-up"
    assert f'<a href="/runs/{follow_up}">' in html

    completed = web.page("/runs?status=completed")
    assert follow_up in completed and f'id="run-{web.run_id}"' not in completed
    sending = web.page("/runs?workflow=sending")
    assert follow_up in sending and f'id="run-{web.run_id}"' not in sending
    assert "No runs match these filters" in web.page("/runs?status=failed")


# the defences ------------------------------------------------------------------------------------


def test_runs_filters_reach_past_the_newest_runs_listed(web: Web) -> None:
    """The runs page lists the newest `RUNS_SHOWN`; a filter looks at every run, so that an
    older run of a workflow is found by its filter, not "no runs match"."""
    from hubspoke.web import views

    store = SQLiteStore(web.db)
    try:
        newer = [asyncio.run(Foreman(JUDGED_FLOW, store).run({"topic": t})) for t in "ab"]
    finally:
        store.close()
    shown = views.RUNS_SHOWN
    views.RUNS_SHOWN = 2  # as if the journal held more runs than the page lists
    try:
        html = web.page("/runs")
        listed = html.split("<table")[1]
        assert all(r.run_id in listed for r in newer) and web.run_id not in listed
        assert "The newest 2 runs are listed" in html
        sales = web.page("/runs?workflow=sales")
        assert f'id="run-{web.run_id}"' in sales and "No runs" not in sales
        assert '<option value="sales" selected>' in sales
    finally:
        views.RUNS_SHOWN = shown


def test_every_request_needs_the_token(template: tuple[Path, str], tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    shutil.copy(template[0], db)
    client = TestClient(create_app(db, TOKEN), base_url=BASE)
    for path in ("/", "/board", "/runs", "/static/app.css", "/static/vendor/htmx-2.0.11.min.js"):
        refused = client.get(path, follow_redirects=False)
        assert refused.status_code == 401, path
        assert "access token is needed" in refused.text and TOKEN not in refused.text
    wrong = client.get("/board?token=guess", follow_redirects=False)
    assert wrong.status_code == 401 and "Wrong access token" in wrong.text
    assert "set-cookie" not in wrong.headers
    client.cookies.set("hubspoke_session", "abc.def")
    assert client.get("/board").status_code == 401  # a forged session
    client.cookies.clear()

    visit = client.get(f"/board?run=run_x&token={TOKEN}", follow_redirects=False)

    assert visit.status_code == 303
    assert visit.headers["location"] == "/board?run=run_x"  # the token leaves the address
    cookie = visit.headers["set-cookie"]
    assert cookie.startswith("hubspoke_session=") and TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    for path in ("/board", "/runs", "/static/app.css"):
        page = client.get(path)
        assert page.status_code == 200 and TOKEN not in page.text, path
    other = TestClient(create_app(db, "another-token"), base_url=BASE)
    other.cookies.update(client.cookies)  # a session of one token is no session of another
    assert other.get("/board").status_code == 401


def test_a_random_token_is_made_when_none_is_given(template: tuple[Path, str]) -> None:
    one, two = create_app(template[0]), create_app(template[0])
    assert len(one.state.token) >= 32 and one.state.token != two.state.token


def test_a_state_change_needs_the_sessions_csrf_token(web: Web) -> None:
    card = web.cards("review")[0]
    path = f"/cards/{card}/decide"
    missing = web.client.post(path, data={"verb": "approve"})
    wrong = web.client.post(path, data={"verb": "approve", "csrf": "0" * 64})
    header_wrong = web.client.post(
        path, data={"verb": "approve"}, headers={"X-CSRF-Token": "0" * 64}
    )
    json_body = web.client.post(path, json={"verb": "approve", "csrf": web.csrf})
    with TestClient(web.client.app, base_url=BASE) as stranger:
        login(stranger)  # another session: its token is not this one's
        theirs = re.search(r'name="csrf" value="([0-9a-f]+)"', stranger.get("/board").text)
        assert theirs is not None and theirs.group(1) != web.csrf
    foreign = web.client.post(path, data={"verb": "approve", "csrf": theirs.group(1)})

    for refused in (missing, wrong, header_wrong, json_body, foreign):
        assert refused.status_code == 403 and "CSRF token is missing or wrong" in refused.text
    assert web.decisions() == []

    by_header = web.client.post(
        path,
        data={"verb": "approve"},
        headers={"X-CSRF-Token": web.csrf},
        follow_redirects=False,
    )
    assert by_header.status_code == 303 and len(web.decisions()) == 1
    assert f'"X-CSRF-Token": "{web.csrf}"' in web.page()  # htmx sends it from the page


def test_a_body_too_large_is_refused_as_such_and_writes_nothing(web: Web) -> None:
    """A change of more than 1 MiB (a 10 MB amend) is a 413 page saying so, whether the CSRF
    token comes in the form (no JavaScript) or in htmx's header, never a CSRF refusal or a
    framework's JSON."""
    card = web.cards("review")[0]
    huge = "A" * (10 * 1024 * 1024)
    by_form = web.post(f"/cards/{card}/amend", {"field.subject": huge})
    by_header = web.client.post(
        f"/cards/{card}/amend",
        data={"field.subject": huge},
        headers={"X-CSRF-Token": web.csrf, "HX-Request": "true"},
    )
    streamed = web.client.post(  # no Content-Length: the body is counted as it comes
        f"/cards/{card}/amend",
        content=iter([f"csrf={web.csrf}&field.subject=".encode(), huge.encode()]),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    for refused in (by_form, by_header, streamed):
        assert refused.status_code == 413, refused.text[:200]
        assert refused.headers["content-type"].startswith("text/html")
        assert "too large" in refused.text and "1 MiB" in refused.text
        assert "CSRF" not in refused.text
    assert web.decisions() == []
    near = web.post(f"/cards/{card}/amend", {"field.subject": "A" * 1_000_000})
    assert near.status_code == 422 and "subject" in near.text  # read, and the schema said no
    fits = web.post(f"/cards/{card}/amend", {"field.subject": "A shorter subject"})
    assert fits.status_code == 303 and len(web.decisions()) == 1


def test_a_wrong_address_or_parameter_is_a_page_saying_what_was_wrong(web: Web) -> None:
    """A person's browser gets HTML it can read, never a framework's JSON: an unknown address
    (404), a method a route does not take (405), a parameter that is not a number (400)."""
    card = web.cards("review")[0]
    cases = [
        ("GET", "/nowhere", 404, "No such page"),
        ("GET", "/static/nowhere.css", 404, "No such page"),
        ("GET", f"/cards/{card}/decide", 405, "GET"),
        ("GET", f"/runs/{web.run_id}/events?after=abc", 400, "after"),
        ("GET", f"/runs/{web.run_id}?limit=ten", 400, "limit"),
    ]
    for method, path, status, said in cases:
        answer = web.client.request(method, path)
        assert answer.status_code == status, (path, answer.text[:200])
        assert answer.headers["content-type"].startswith("text/html"), path
        assert said in answer.text, (path, answer.text)
        assert '<a href="/board">' in answer.text  # the way back
    bad = web.client.get(f"/runs/{web.run_id}/events?after=<b>x")
    assert "<b>x" not in bad.text and "&lt;b&gt;x" in bad.text


def _cut_short(access: Access, cookie: str, extra: list[tuple[bytes, bytes]]) -> tuple[bool, int]:
    """Whether the app behind `Guard` was reached, and the status sent, for a POST whose
    client sends the CSRF token and half an edit, then disconnects."""
    reached: list[bool] = []
    sent: list[MutableMapping[str, Any]] = []
    csrf = access.csrf(access.session(cookie) or "")
    parts: list[MutableMapping[str, Any]] = [
        {
            "type": "http.request",
            "body": f"csrf={csrf}&field.body=Hello wor".encode(),
            "more_body": True,
        },
        {"type": "http.disconnect"},
    ]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)

    async def receive() -> MutableMapping[str, Any]:
        return parts.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/cards/x/amend",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8765"),
            (b"cookie", f"hubspoke_session={cookie}".encode()),
            (b"content-type", b"application/x-www-form-urlencoded"),
            *extra,
        ],
    }
    asyncio.run(Guard(app, access)(scope, receive, send))
    return bool(reached), int(sent[0]["status"])


def test_a_body_cut_short_by_a_client_that_went_away_is_never_acted_on() -> None:
    """The route never sees part of a form: a client that sent the CSRF token and half an
    edit, then disconnected, has nothing done (the edit is not written cut)."""
    access = Access(TOKEN)
    cookie = access.new_session()
    csrf = access.csrf(access.session(cookie) or "")
    for extra in ([], [(b"x-csrf-token", csrf.encode())]):
        assert _cut_short(access, cookie, extra) == (False, 403)


def test_a_foreign_host_is_refused_dns_rebinding(web: Web) -> None:
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.evil.example", "10.0.0.5"):
        refused = web.client.get("/board", headers={"Host": host})
        assert refused.status_code == 400, host
        assert "unknown Host" in refused.text and "DNS rebinding" in refused.text
    post = web.client.post(
        f"/cards/{web.cards('review')[0]}/decide",
        data={"verb": "approve", "csrf": web.csrf},
        headers={"Host": "evil.example:8765"},
    )
    assert post.status_code == 400 and web.decisions() == []
    for host in ("localhost:8765", "127.0.0.1", "[::1]:8765"):
        assert web.client.get("/board", headers={"Host": host}).status_code == 200, host


def test_another_origin_is_refused(web: Web) -> None:
    card = web.cards("review")[0]
    for origin in ("http://evil.example", "null", "http://127.0.0.1:9999", "file://"):
        refused = web.client.post(
            f"/cards/{card}/decide",
            data={"verb": "approve", "csrf": web.csrf},
            headers={"Origin": origin},
        )
        assert refused.status_code == 403, origin
        assert "another origin" in refused.text
    cross = web.client.post(
        f"/cards/{card}/decide",
        data={"verb": "approve", "csrf": web.csrf},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert cross.status_code == 403 and "cross-site" in cross.text
    assert web.client.get("/board", headers={"Origin": "http://evil.example"}).status_code == 403
    assert web.decisions() == []

    same = web.post(f"/cards/{card}/decide", {"verb": "approve"}, Origin=BASE)
    assert same.status_code == 303 and len(web.decisions()) == 1


def test_every_page_is_sent_with_a_strict_content_security_policy(web: Web) -> None:
    for path in ("/board", "/runs", "/static/app.css"):
        headers = web.client.get(path).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"  # no-referrer: Origin null
        assert headers["cache-control"] == "no-store"


# model-produced text is shown as text ----------------------------------------------------------

HOSTILE = '<script>alert("owned")</script>" onmouseover="alert(1)'


class Note(BaseModel):
    text: str
    score: float


class Topic(BaseModel):
    topic: str


async def _note(item: Topic, ctx: Context) -> Note:
    return Note(text=f"{HOSTILE} {item.topic}", score=0.5)


HOSTILE_FLOW = Workflow(
    name="hostile",
    input=Topic,
    roles=[Role(name="noter", purpose="Notes.", input=Topic, output=Note, function=_note)],
    phases=[
        Phase(
            name="note",
            role="noter",
            input=lambda run: run.input,
            review=True,
            card_title=lambda note: note.text,
        )
    ],
)


def test_a_card_whose_content_is_markup_shows_it_as_text(web: Web) -> None:
    store = SQLiteStore(web.db)
    try:
        run = asyncio.run(Foreman(HOSTILE_FLOW, store).run({"topic": HOSTILE}))
    finally:
        store.close()
    [card] = cards_in(web.page(f"/board?run={run.run_id}"), "review")

    for html in (web.page(), web.page(f"/cards/{card}")):
        assert "<script>alert" not in html and 'onmouseover="alert' not in html
        assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;&#34; onmouseover=" in html
    # inside attributes too: the amend form's value, a refused edit's typed text
    shown = article(web.page(), card)
    assert 'value="&lt;script&gt;alert(&#34;owned&#34;)' not in shown  # a long text: a textarea
    typed = web.post(f"/cards/{card}/amend", {"field.score": HOSTILE, "note": HOSTILE})
    assert typed.status_code == 422
    assert "<script>alert" not in typed.text and 'onmouseover="alert' not in typed.text
    assert (
        'value="&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;&#34; onmouseover=' in typed.text
    )


async def _write(item: Topic, ctx: Context) -> Note:
    return Note(text=f"{item.topic}, take {ctx.attempt}", score=0.5)


async def _judge(request: EvaluationRequest, ctx: Context) -> Verdict:
    accept = not request.output["text"].endswith("take 1")
    return Verdict(accept=accept, critique="" if accept else "say more about <b>tea</b>")


JUDGED_FLOW = Workflow(
    name="judged",
    input=Topic,
    roles=[
        Role(name="writer", purpose="Writes.", input=Topic, output=Note, function=_write),
        Role(
            name="judge",
            purpose="Judges.",
            input=EvaluationRequest,
            output=Verdict,
            function=_judge,
        ),
    ],
    phases=[
        Phase(
            name="write",
            role="writer",
            input=lambda run: run.input,
            evaluator="judge",
            review=True,
        )
    ],
)


def test_a_card_says_what_the_evaluator_judged(web: Web) -> None:
    store = SQLiteStore(web.db)
    try:
        run = asyncio.run(Foreman(JUDGED_FLOW, store).run({"topic": "tea"}))
    finally:
        store.close()
    html = web.page(f"/board?run={run.run_id}")
    [card] = cards_in(html, "review")

    said = article(html, card)

    assert "Evaluator</dt><dd>judged 2 time(s), rejected 1: say more about &lt;b&gt;tea" in said
    assert said.count(", accepted</dd>") == 1
    assert "Validator</dt><dd>valid Note on attempt 2" in said


async def _fail(item: Topic, ctx: Context) -> Note:
    raise RuntimeError(f"the pricing service is down (attempt {ctx.attempt})")


FAILING_FLOW = Workflow(
    name="failing",
    input=Topic,
    roles=[
        Role(
            name="pricer",
            purpose="Prices.",
            input=Topic,
            output=Note,
            function=_fail,
            max_attempts=1,
        )
    ],
    phases=[Phase(name="price", role="pricer", input=lambda run: run.input)],
)


def test_a_form_from_before_the_run_was_resumed_decides_nothing(web: Web) -> None:
    """A card shown, then answered elsewhere, the run resumed and the item escalated again
    under the same card: the answer typed on the old page is for an escalation that is over.
    It is refused (409), saying what changed, the text kept; the page as it is now decides."""
    store = SQLiteStore(web.db)
    try:
        run = asyncio.run(Foreman(FAILING_FLOW, store).run({"topic": "tea"}))
    finally:
        store.close()
    [card] = cards_in(web.page(f"/board?run={run.run_id}"), "escalated")
    old_page = article(web.page(f"/board?run={run.run_id}"), card)
    assert 'name="seen" value="0"' in old_page

    answered = web.post(f"/cards/{card}/answer", {"answer": "use last year's price"})
    assert answered.status_code == 303
    store = SQLiteStore(web.db)
    try:
        asyncio.run(Foreman(FAILING_FLOW, store).resume(run.run_id))
    finally:
        store.close()
    assert card in cards_in(web.page(f"/board?run={run.run_id}"), "escalated")  # again

    stale = web.post(f"/cards/{card}/answer", {"answer": "try the old API", "seen": "0"})
    assert stale.status_code == 409
    said = article(stale.text, card)
    assert "changed since your page showed it" in said and "answer by ana" in said
    assert "try the old API" in said  # what was typed is kept
    answers = [d["answer"] for d in web.events_of(run.run_id, EventKind.CARD_DECIDED)]
    assert answers == ["use last year's price"]

    now = article(web.page(f"/board?run={run.run_id}"), card)
    assert 'name="seen" value="1"' in now
    fresh = web.post(f"/cards/{card}/answer", {"answer": "try the old API", "seen": "1"})
    assert fresh.status_code == 303
    answers = [d["answer"] for d in web.events_of(run.run_id, EventKind.CARD_DECIDED)]
    assert answers == ["use last year's price", "try the old API"]


# the pieces --------------------------------------------------------------------------------------


def test_an_amend_form_keeps_strings_as_typed_and_reads_other_fields_as_json() -> None:
    content = {"subject": "old", "confidence": 0.8, "tags": ["a"], "code": "42"}
    edit, errors = edited_content(
        content, {"field.subject": "a\r\nb", "field.confidence": "0.9", "field.code": "43"}
    )
    assert edit == {"subject": "a\nb", "confidence": 0.9, "tags": ["a"], "code": "43"}
    assert errors == {}
    _, errors = edited_content(content, {"field.tags": "[a"})
    assert list(errors) == ["tags"] and "not JSON" in errors["tags"][0]
    # A field with no value yet (an optional text, say) is edited as JSON: its error shows
    # how the text typed is written as JSON.
    _, errors = edited_content({"alt": None}, {"field.alt": "a second opinion"})
    assert 'a text as "a second opinion"' in errors["alt"][0]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.5.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.4", False),
        ("example.com", False),
    ],
)
def test_which_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_access_refuses_an_empty_token_and_checks_hosts() -> None:
    with pytest.raises(ValueError, match="the access token is empty"):
        Access("")
    access = Access("t", frozenset({"Box.Local"}))
    assert access.host_allowed("box.local:8765") and access.host_allowed("[::1]:1")
    assert not access.host_allowed("") and not access.host_allowed("evil.example")


def test_create_app_refuses_a_missing_journal(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no journal at"):
        create_app(tmp_path / "nope.db", TOKEN)


# a journal that cannot be read -------------------------------------------------------------------

SECRET = "s3cret-horse"
"""A password put in the URLs below: the test server trusts user postgres and ignores it, and
no page or message may show it."""


def with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{SECRET}@", 1)


def test_a_journal_that_cannot_be_read_is_a_503_page_without_the_password(
    pg_template: tuple[str, str], postgres: PostgresServer
) -> None:
    with postgres.database(template=pg_template[0]) as url:
        secret_url = with_password(url)
        client = TestClient(create_app(secret_url, TOKEN, by="ana"), base_url=BASE)
        login(client)
        web = Web(client, secret_url, pg_template[1])
        card = web.cards("review")[0]
        csrf = web.csrf
        shown = url.replace("postgres@", "postgres:***@", 1)
    # The database is gone now (dropped with its connections): every page says so, and why.
    for path in ("/board", "/runs", f"/cards/{card}", f"/runs/{web.run_id}"):
        page = client.get(path)
        assert page.status_code == 503, (path, page.text)
        assert "The journal cannot be read: cannot open the Postgres store" in page.text, path
        assert shown in page.text and SECRET not in page.text, path
    decided = client.post(f"/cards/{card}/decide", data={"csrf": csrf, "verb": "approve"})
    assert decided.status_code == 503 and shown in decided.text
    assert SECRET not in decided.text


def test_a_journal_file_removed_while_served_is_a_404_page_that_says_what_to_do(
    web: Web,
) -> None:
    assert isinstance(web.db, Path)
    csrf = web.csrf
    for name in ("journal.db", "journal.db-wal", "journal.db-shm"):
        (web.db.parent / name).unlink(missing_ok=True)
    for path in ("/board", "/runs", "/cards/card_x"):
        page = web.client.get(path)
        assert page.status_code == 404, path
        assert "there is no journal at" in page.text and "start a run first" in page.text
    decided = web.client.post(
        "/cards/card_x/decide", data={"csrf": csrf, "verb": "approve"}, follow_redirects=False
    )
    assert decided.status_code == 404 and "there is no journal at" in decided.text
    assert not web.db.exists()  # neither reading nor deciding made an empty journal


def test_a_journal_file_spoiled_while_served_is_a_503_page_naming_it(web: Web) -> None:
    assert isinstance(web.db, Path)
    card = web.cards("review")[0]
    csrf = web.csrf
    for name in ("journal.db-wal", "journal.db-shm"):
        (web.db.parent / name).unlink(missing_ok=True)
    web.db.write_bytes(b"not a journal\n" * 512)
    for path in ("/board", "/runs", f"/cards/{card}", f"/runs/{web.run_id}"):
        page = web.client.get(path)
        assert page.status_code == 503, path
        said = " ".join(page.text.split())
        assert f"The journal cannot be read: file is not a database (the journal {web.db})" in said
    decided = web.client.post(f"/cards/{card}/decide", data={"csrf": csrf, "verb": "approve"})
    assert decided.status_code == 503 and "file is not a database" in decided.text


def test_create_app_refuses_an_unreachable_server_without_the_password() -> None:
    url = f"postgresql://ann:{SECRET}@127.0.0.1:{free_port()}/runs"
    with pytest.raises(StoreUnavailable) as refused:
        create_app(url, TOKEN)
    said = str(refused.value)
    assert f"postgresql://ann:***@127.0.0.1:{url.split(':')[3]}" in said and SECRET not in said


# hubspoke ui -------------------------------------------------------------------------------------


def test_ui_refuses_a_non_loopback_address_without_a_token(
    template: tuple[Path, str],
) -> None:
    for host in ("0.0.0.0", "192.168.1.4", "::"):
        result = runner.invoke(cli, ["ui", "--db", str(template[0]), "--host", host])
        assert result.exit_code == 2, result.output
        said = " ".join(result.stderr.split())
        assert f"refusing to serve on {host}" in said and "--token" in said


@pytest.mark.parametrize("token", ["k3y+with#odd&chars%20=x", "ключ-доступа-42", "a b"])
def test_the_printed_address_opens_the_app_whatever_the_token_holds(
    template: tuple[Path, str], token: str
) -> None:
    """`--token` may hold any character: the address `hubspoke ui` prints carries it
    URL-encoded, so that opening it signs in (a raw ``+``, ``#`` or ``&`` cut it short)."""
    address = url_for("127.0.0.1", 8765, token)
    assert address.startswith("http://127.0.0.1:8765/?token=")
    client = TestClient(create_app(template[0], token), base_url=BASE)

    visit = client.get(address.removeprefix(BASE), follow_redirects=False)

    assert visit.status_code == 303, visit.text
    assert client.get("/board").status_code == 200


def test_ui_refuses_a_blank_token_and_a_short_one_off_this_machine(
    template: tuple[Path, str],
) -> None:
    """A token of spaces protects nothing and breaks the printed address; on an address other
    machines reach, a short token is guessed by trying: both are refused, saying why."""
    db = str(template[0])
    for host, token, said in (
        ("127.0.0.1", "   ", "blank"),
        ("0.0.0.0", " ", "blank"),
        ("0.0.0.0", "letmein", "16 characters"),
    ):
        result = runner.invoke(cli, ["ui", "--db", db, "--host", host, "--token", token])
        assert result.exit_code == 2, result.output
        assert said in " ".join(result.stderr.split()), result.stderr


def test_ui_refuses_a_missing_journal_and_a_taken_port(
    template: tuple[Path, str], tmp_path: Path
) -> None:
    missing = runner.invoke(cli, ["ui", "--db", str(tmp_path / "nope.db")])
    assert missing.exit_code == 2 and "no journal at" in missing.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(cli, ["ui", "--db", str(template[0]), "--port", str(port)])
    assert result.exit_code == 2, result.output
    assert f"cannot serve on 127.0.0.1:{port}" in " ".join(result.stderr.split())


def test_ui_refuses_an_unreachable_postgres_server_before_serving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://ann:{SECRET}@127.0.0.1:{port}/runs"
    flagged = runner.invoke(cli, ["ui", "--db", url, "--port", "0"])
    monkeypatch.setenv("HUBSPOKE_DB", url.replace("postgresql://", "postgres://", 1))
    from_env = runner.invoke(cli, ["ui", "--port", "0"])

    for result, shown, source in (
        (flagged, f"postgresql://ann:***@127.0.0.1:{port}/runs", "from --db"),
        (from_env, f"postgres://ann:***@127.0.0.1:{port}/runs", "from $HUBSPOKE_DB"),
    ):
        assert result.exit_code == 2, result.output
        said = " ".join(result.stderr.split())
        assert f"cannot open the Postgres store {shown}" in said and f"({shown} ({source}))" in said
        assert "Check that the server is running" in said
        assert SECRET not in result.output and "open http" not in result.stdout


def test_ui_refuses_a_wrong_postgres_password_without_showing_it(
    pg_template: tuple[str, str],
) -> None:
    url = pg_template[0].replace("postgres@", f"{PASSWORD_USER}:{PASSWORD}x@", 1)
    result = runner.invoke(cli, ["ui", "--db", url, "--port", "0"])
    assert result.exit_code == 2, result.output
    said = " ".join(result.stderr.split())
    assert f"{PASSWORD_USER}:***@" in said and "password authentication failed" in said
    assert PASSWORD not in result.output


def test_the_token_visit_redirects_only_within_the_app() -> None:
    """The address without the token keeps the path as the browser sent it (encoded), and is
    never another site's (``//host``, ``/\\host``)."""
    from hubspoke.web.security import Guard

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a token visit never reaches the app")

    def location(raw_path: bytes) -> str:
        sent: list[MutableMapping[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        scope = {
            "type": "http",
            "method": "GET",
            "path": raw_path.decode(),
            "raw_path": raw_path,
            "query_string": f"a=1&token={TOKEN}".encode(),
            "headers": [(b"host", b"127.0.0.1:8765")],
        }
        asyncio.run(Guard(app, Access(TOKEN))(scope, receive, send))
        assert sent[0]["status"] == 303
        found: bytes = dict(sent[0]["headers"])[b"location"]
        return found.decode()

    assert location(b"/cards/card%5Fx") == "/cards/card%5Fx?a=1"
    assert location(b"//evil.example/board") == "/?a=1"
    assert location(b"/\\evil.example") == "/?a=1"


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_hubspoke_ui_prints_the_address_and_serves_it(
    kind: str, template: tuple[Path, str], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """`hubspoke ui` in a process of its own: the printed address (with the token) opens the
    board; without the token, 401. On PostgreSQL, named by $HUBSPOKE_DB with a password that
    the first line does not show."""
    import http.client
    import os
    import subprocess
    import sys
    from contextlib import ExitStack

    import hubspoke

    env = {**os.environ, "PYTHONPATH": str(Path(hubspoke.__file__).parents[1])}
    command = [sys.executable, "-m", "hubspoke.cli", "ui", "--port", "0"]
    stack = ExitStack()
    if kind == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres")
        url = stack.enter_context(
            server.database(template=request.getfixturevalue("pg_template")[0])
        )
        env["HUBSPOKE_DB"] = with_password(url)
        journal = f"{url.replace('postgres@', 'postgres:***@', 1)} (from $HUBSPOKE_DB)"
    else:
        command += ["--db", str(template[0])]
        journal = f"{template[0]} (from --db)"
    process = subprocess.Popen(
        [*command, "--token", TOKEN], stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    stack.callback(process.wait, timeout=30)
    stack.callback(process.terminate)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        address = process.stdout.readline().strip()
        assert first == f"hubspoke ui: the board of {journal}\n", first
        found = re.fullmatch(rf"open http://127\.0\.0\.1:(\d+)/\?token={TOKEN}", address)
        assert found is not None, address
        port = int(found.group(1))

        def get(path: str, cookie: str = "") -> tuple[int, str, str]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
                response = connection.getresponse()
                body = response.read().decode()
                return response.status, response.getheader("set-cookie") or "", body
            finally:
                connection.close()

        assert get("/board")[0] == 401
        status, cookie, _ = get(f"/?token={TOKEN}")
        assert status == 303
        status, _, board = get("/board", cookie.split(";")[0])
        assert status == 200 and board.count('<article class="card col-review') == 9
    finally:
        stack.close()  # the process ends before its database is dropped
        if process.stdout is not None:
            process.stdout.close()


def test_every_route_needs_the_token_and_every_change_the_csrf_token(
    template: tuple[Path, str], tmp_path: Path
) -> None:
    """Whatever routes the app has (the inspector's included, when it is there), none answers
    without a session, and none that changes state answers without the CSRF token: the
    defences sit in front of the routes, not in each of them."""
    db = tmp_path / "journal.db"
    shutil.copy(template[0], db)
    app = create_app(db, TOKEN)
    anonymous = TestClient(app, base_url=BASE)
    signed_in = TestClient(app, base_url=BASE)
    login(signed_in)
    checked = 0
    every: list[tuple[str, set[str]]] = [("/static/app.css", {"GET"})]
    for included in routers():
        for route in included.routes:
            path = re.sub(r"\{[^}]+\}", "x", str(getattr(route, "path", "")))
            every.append((path, set(getattr(route, "methods", None) or ())))
    for path, methods in every:
        for method in methods - {"HEAD"}:
            refused = anonymous.request(method, path, follow_redirects=False)
            assert refused.status_code == 401, (method, path)
            if method not in ("GET", "OPTIONS"):
                no_csrf = signed_in.request(method, path, data={"verb": "approve"})
                assert no_csrf.status_code == 403, (method, path)
            checked += 1
    assert checked >= 8  # /, /board, /cards/x, /runs, the static files, four decisions


def test_each_browser_says_who_decides_from_it(web: Web) -> None:
    assert "deciding as <b>ana</b>" in web.page()  # the app's --by until the browser says
    card = web.cards("review")[0]

    named = web.post("/by", {"by": "  sam   <o'neil>  ", "back": f"/board?run={web.run_id}"})

    assert named.status_code == 303 and named.headers["location"] == f"/board?run={web.run_id}"
    cookie = named.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "deciding as <b>sam &lt;o&#39;neil&gt;</b>" in web.page()
    web.post(f"/cards/{card}/decide", {"verb": "park"})
    assert [d["by"] for d in web.decisions()] == ["sam <o'neil>"]

    for wrong in ("", "   ", "x" * 81):
        assert web.post("/by", {"by": wrong, "back": "/board"}).status_code == 400
    off_site = web.post("/by", {"by": "sam", "back": "//evil.example/board"})
    assert off_site.headers["location"] == "/board"
