"""The run inspector (`hubspoke.web.inspector`), at HTML level through FastAPI's test client, over
journals written by real runs on the offline model and function specialists.

The page's numbers are checked against the fold (`RunState`) and `hubspoke show --json`; the
hub-and-spoke SVG against the fold's counters; the event stream against the journal, event by
event. No test sleeps: a live run is held by a specialist that waits for the test to let it go.
The demo's page and stream, a live run's stream and the stream's polls run on an SQLite file and
on a PostgreSQL database (`sales_run`'s and `journal`'s parameters; tests/pgserver.py: they skip
without PostgreSQL, and fail in CI).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from typer.testing import CliRunner

from hubspoke import Budget, Context, Foreman, Phase, Role, SQLiteStore, Strategy, Workflow
from hubspoke.artifacts import Artifact
from hubspoke.board import Card, Column
from hubspoke.cli import app as cli_app
from hubspoke.cli.report import run_report
from hubspoke.events import Event, EventKind
from hubspoke.examples.sales import DEMO_INPUT
from hubspoke.examples.sales import workflow as sales
from hubspoke.journal import RunState
from hubspoke.journal.location import open_store
from hubspoke.web import stream
from hubspoke.web.app import create_app
from hubspoke.web.runpage import inspect_run
from hubspoke.web.spokes import role_counts
from hubspoke.web.stream import EventFilter, resume_point, sse
from tests.helpers import Notes, Topic, notes_workflow, research, running_record
from tests.pgserver import PostgresServer, missing

SVG = "{http://www.w3.org/2000/svg}"
COUNTS = ("dispatched", "accepted", "retried", "escalated", "failed")


# --- the app and its journals ---------------------------------------------------------------------


TOKEN = "tok-inspector-5e1f"
BASE = "http://127.0.0.1:8765"


Where = Path | str
"""A journal: an SQLite file, or a PostgreSQL URL."""


def client_for(db: Where, *, poll: float = 0.01) -> TestClient:
    """The whole web app over `db` (the inspector behind the app's guard), signed in."""
    app = create_app(db, TOKEN, by="ana")
    app.state.poll_seconds = poll  # a live stream looks for new events this often
    client = TestClient(app, base_url=BASE)
    assert client.get(f"/?token={TOKEN}", follow_redirects=False).status_code == 303
    return client


def run_into(db: Where, workflow: Workflow, data: dict[str, Any]) -> str:
    store = open_store(db)
    try:
        return asyncio.run(Foreman(workflow, store).run(data)).run_id
    finally:
        store.close()


def read(db: Where, run_id: str) -> list[Event]:
    store = open_store(db, read_only=True)
    try:
        return store.events(run_id)
    finally:
        store.close()


def database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database's URL (skips, or fails in CI, without PostgreSQL)."""
    server: PostgresServer | str = request.getfixturevalue("postgres")
    if isinstance(server, str):
        missing(server)
        raise AssertionError("unreachable")
    with server.database() as url:
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def sales_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Where, str]]:
    """The sales demo on the offline model: 9 drafts for review, 2 retries, 1 escalation; in
    an SQLite file, or a PostgreSQL database."""
    if request.param == "postgres":
        for url in database(request):
            yield url, run_into(url, sales, DEMO_INPUT)
        return
    db = tmp_path_factory.mktemp("sales") / "journal.db"
    yield db, run_into(db, sales, DEMO_INPUT)


@pytest.fixture(params=["sqlite", "postgres"])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Where]:
    """An empty journal: an SQLite file, or a PostgreSQL database."""
    if request.param == "postgres":
        yield from database(request)
        return
    yield tmp_path / "journal.db"


class Elements(HTMLParser):
    """Every start tag's attributes, in document order (SVG included)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))

    def having(self, attr: str, tag: str | None = None) -> list[dict[str, str]]:
        return [a for t, a in self.found if attr in a and (tag is None or t == tag)]


def svg_of(html: str) -> ET.Element:
    """The page's hub-and-spoke drawing, parsed as XML: escaping must keep it well formed."""
    match = re.search(r"<svg\b.*?</svg>", html, re.S)
    assert match is not None, "no <svg> on the page"
    return ET.fromstring(match.group(0))


def spoke_counts(svg: ET.Element) -> dict[str, dict[str, int]]:
    return {
        g.attrib["data-role"]: {k: int(g.attrib[f"data-{k}"]) for k in (*COUNTS, "in-flight")}
        for g in svg.iter(f"{SVG}g")
        if "data-role" in g.attrib
    }


def messages(body: str) -> list[dict[str, str]]:
    """Server-sent events parsed from a stream's body: their fields, data lines joined."""
    out = []
    for block in body.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(": ")
            if name == "data":
                fields["data"] = fields["data"] + "\n" + value if "data" in fields else value
            elif name in ("event", "id"):
                fields[name] = value
        if "event" in fields:
            out.append(fields)
    return out


def stream_body(client: TestClient, url: str, **headers: str) -> str:
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return "".join(response.iter_text())


# --- the page -------------------------------------------------------------------------------------


def test_spokes_count_what_the_fold_counts(sales_run: tuple[Where, str]) -> None:
    db, run_id = sales_run
    page = client_for(db).get(f"/runs/{run_id}")
    assert page.status_code == 200
    events = read(db, run_id)
    state = RunState.fold(run_id, events)
    drawn = spoke_counts(svg_of(page.text))
    # One spoke per role of the workflow, in its order.
    assert list(drawn) == [r.name for r in sales.roles]
    # Each sales phase has its own role: a spoke counts exactly what its phase counts.
    for phase in sales.phases:
        counts = state.phases[phase.name].counts()
        assert {k: drawn[phase.role][k] for k in COUNTS} == {k: counts[k] for k in COUNTS}
    for k in COUNTS:
        assert sum(s[k] for s in drawn.values()) == sum(
            p.counts()[k] for p in state.phases.values()
        )
    assert drawn["contact_selection"]["escalated"] == 1
    assert drawn["personalization"]["retried"] == 2
    assert all(s["in-flight"] == 0 for s in drawn.values())
    states = {
        g.attrib["data-role"]: g.attrib["data-state"]
        for g in svg_of(page.text).iter(f"{SVG}g")
        if "data-role" in g.attrib
    }
    assert states["contact_selection"] == "escalated"
    hub = next(g for g in svg_of(page.text).iter(f"{SVG}g") if g.attrib.get("class") == "hub")
    assert hub.attrib["data-status"] == "waiting"


def test_totals_equal_hubspoke_show(sales_run: tuple[Where, str]) -> None:
    db, run_id = sales_run
    shown = CliRunner().invoke(cli_app, ["show", run_id, "--db", str(db), "--json"])
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    page = Elements(client_for(db).get(f"/runs/{run_id}").text)
    (bar,) = page.having("data-usd", "dl")
    assert int(bar["data-input-tokens"]) == report["usage"]["input_tokens"]
    assert int(bar["data-output-tokens"]) == report["usage"]["output_tokens"]
    assert float(bar["data-usd"]) == pytest.approx(report["usage"]["usd"], abs=1e-8)
    assert float(bar["data-elapsed"]) == pytest.approx(report["elapsed"], abs=1e-6)
    assert bar["data-status"] == report["status"] == "waiting"
    phases = {a["data-phase"]: a for a in page.having("data-phase", "tr")}
    assert list(phases) == list(report["phases"])
    for name, row in phases.items():
        usage = report["phases"][name]["usage"]
        assert float(row["data-usd"]) == pytest.approx(usage["usd"], abs=1e-8)
        assert int(row["data-input-tokens"]) == usage["input_tokens"]
        assert int(row["data-output-tokens"]) == usage["output_tokens"]
    roles = {a["data-role"]: a for a in page.having("data-usd", "tr") if "data-role" in a}
    assert set(roles) == set(report["usage_by_role"])
    for role, row in roles.items():
        assert float(row["data-usd"]) == pytest.approx(report["usage_by_role"][role]["usd"])
    # Nothing runs now: nothing in flight, and no limit to compare it with.
    assert (bar["data-in-flight"], bar["data-limit"]) == ("0", "")


def test_cost_played_by_a_model_without_a_price_is_a_lower_bound(
    sales_run: tuple[Where, str],
) -> None:
    db, run_id = sales_run
    store = open_store(db, read_only=True)
    try:
        record, events = store.run(run_id), store.events(run_id)
    finally:
        store.close()
    assert record is not None
    unpriced = dataclasses.replace(
        record, options={"models": {"contact_selection": {"binding": "x:y", "price": None}}}
    )
    for rec, unknown in ((record, False), (unpriced, True)):
        page = inspect_run(rec, events)
        assert run_report(rec, events)["unpriced"]["run"] is unknown
        assert page.summary.usd_unknown is unknown
        assert page.summary.usd_text.startswith("≥ $") is unknown
        assert [r.role for r in page.roles if r.unpriced] == (
            ["contact_selection"] if unknown else []
        )


def test_escalation_and_retries_are_in_the_queue_linked_to_cards_and_items(
    sales_run: tuple[Where, str],
) -> None:
    db, run_id = sales_run
    text = client_for(db).get(f"/runs/{run_id}").text
    page = Elements(text)
    queue = [a for a in page.having("data-state", "tr")]
    assert [(q["data-item"], q["data-state"]) for q in queue] == [("contacts[6]", "escalated")]
    assert "No plausible decision-maker" in text
    # The queue's card link points at the card's row, the card's at its item's row, and the
    # item's output link at the artifact.
    ids = {a["id"] for a in page.having("id")}
    hrefs = {a["href"] for a in page.having("href", "a")}
    escalated = next(c for c in page.having("data-card", "tr") if c["data-column"] == "escalated")
    assert f"card-{escalated['data-card']}" in ids
    assert f"#card-{escalated['data-card']}" in hrefs
    assert f"/cards/{escalated['data-card']}" in hrefs  # the app's page of the card
    assert "item-contacts%5B6%5D" in ids and "#item-contacts%5B6%5D" in hrefs
    for item in page.having("data-item", "tr"):
        if item.get("data-status") == "accepted":
            assert any(h.startswith("#artifact-art_") for h in hrefs)
    artifacts = {a["data-artifact"] for a in page.having("data-artifact", "li")}
    assert len(artifacts) == len(RunState.fold(run_id, read(db, run_id)).items) - 1
    assert {f"artifact-{a}" for a in artifacts} <= ids
    # Every event listed has its anchor, and the page streams nothing for a finished session.
    assert len(page.having("data-seq", "li")) == len(read(db, run_id))
    assert "sse-connect" not in text


def test_tables_scroll_in_their_box_and_the_drawing_scales(sales_run: tuple[Where, str]) -> None:
    # What keeps the page usable from a phone's width up (the browser tests look at it).
    db, run_id = sales_run
    text = client_for(db).get(f"/runs/{run_id}").text
    tables = re.findall(r"<(?:div|table)\b[^>]*>", text)
    for i, tag in enumerate(tables):
        if tag.startswith("<table"):
            assert tables[i - 1] == '<div class="scroll">', tag
    assert len([t for t in tables if t.startswith("<table")]) == 5
    svg = svg_of(text)
    assert svg.attrib["viewBox"] == "0 0 600 500" and svg.attrib["width"] == "100%"
    assert "height" not in svg.attrib


def test_unknown_run_is_a_404_page_that_says_so(sales_run: tuple[Where, str]) -> None:
    db, _ = sales_run
    client = client_for(db)
    for url in ("/runs/run_nope", "/runs/run_nope/events", "/runs/run_nope/stream"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "There is no run &#39;run_nope&#39; in this journal" in response.text


def test_pages_render_in_the_apps_base_with_who_decides(sales_run: tuple[Where, str]) -> None:
    db, run_id = sales_run
    client = client_for(db)
    for url in (f"/runs/{run_id}", "/runs/run_nope", f"/runs/{run_id}?kind=nope"):
        page = client.get(url).text
        assert 'href="/board"' in page and "ana" in page, url  # the app's nav and decider
    assert "data-seq" in client.get(f"/runs/{run_id}").text


def test_missing_journal_says_how_to_make_one(tmp_path: Path) -> None:
    db = tmp_path / "gone.db"
    SQLiteStore(db).close()
    client = client_for(db)
    for name in ("gone.db", "gone.db-wal", "gone.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)  # removed while the app serves it
    response = client.get("/runs/run_x")
    assert response.status_code == 404
    assert "start a run first" in response.text


# --- filters --------------------------------------------------------------------------------------


def listed(text: str) -> list[tuple[int, str]]:
    return [(int(a["data-seq"]), a["data-kind"]) for a in Elements(text).having("data-seq", "li")]


def test_filters_select_by_kind_phase_role_and_item(sales_run: tuple[Where, str]) -> None:
    db, run_id = sales_run
    client = client_for(db)
    events = read(db, run_id)

    def expect(pick: Any) -> list[tuple[int, str]]:
        return [(e.seq, e.kind.value) for e in events if pick(e)]

    cases: list[tuple[str, Any]] = [
        ("kind=item", lambda e: e.kind.value.startswith("item.")),
        (
            "kind=item.retry&kind=item.escalated",
            lambda e: e.kind.value in ("item.retry", "item.escalated"),
        ),
        ("phase=drafts", lambda e: e.phase == "drafts"),
        (
            "role=contact_selection&kind=dispatch",
            lambda e: e.role == "contact_selection" and e.kind.value.startswith("dispatch."),
        ),
        ("item=contacts%5B6%5D", lambda e: (e.item or "").partition("#")[0] == "contacts[6]"),
    ]
    for query, pick in cases:
        wanted = expect(pick)
        assert wanted, query
        assert listed(client.get(f"/runs/{run_id}?{query}").text) == wanted, query
        assert listed(client.get(f"/runs/{run_id}/events?{query}").text) == wanted, query
        streamed = messages(stream_body(client, f"/runs/{run_id}/stream?{query}"))
        assert [listed(m["data"])[0] for m in streamed if m["event"] == "event"] == wanted, query
    # `after` and `limit` cut the list; a cut says how much it left out.
    assert listed(client.get(f"/runs/{run_id}/events?kind=item&after=150").text) == expect(
        lambda e: e.seq > 150 and e.kind.value.startswith("item.")
    )
    limited = client.get(f"/runs/{run_id}?limit=5").text
    assert [s for s, _ in listed(limited)] == [e.seq for e in events[-5:]]
    assert f"{len(events) - 5} earlier event(s) not listed" in limited


def test_an_unknown_kind_is_refused_with_the_kinds_to_choose_from(
    sales_run: tuple[Where, str],
) -> None:
    db, run_id = sales_run
    client = client_for(db)
    for url in (f"/runs/{run_id}?kind=itme", f"/runs/{run_id}/stream?kind=itme"):
        response = client.get(url)
        assert response.status_code == 400
        assert "no event kind &#39;itme&#39;" in response.text
        assert "item.retry" in response.text and "a family" in response.text
    with pytest.raises(ValueError, match="Last-Event-ID must be an event's sequence number"):
        resume_point("x", None)
    assert (
        resume_point("7", "3") == 7
        and resume_point(None, "3") == 3
        and resume_point(None, None) == 0
    )
    assert client.get(f"/runs/{run_id}/stream", headers={"Last-Event-ID": "-1"}).status_code == 400


def test_filter_matches_an_items_evaluator_events_too() -> None:
    event = Event("r", 1, 0.0, EventKind.DISPATCH_STARTED, "write", "judge", "write[0]#eval", 1)
    assert EventFilter.parse(item="write[0]").matches(event)
    assert not EventFilter.parse(item="write[1]").matches(event)
    assert EventFilter.parse(["dispatch"], role="judge").matches(event)
    assert not EventFilter.parse(["dispatch.finished"]).matches(event)


# --- the stream -----------------------------------------------------------------------------------


def test_stream_delivers_every_event_in_order_then_ends(sales_run: tuple[Where, str]) -> None:
    db, run_id = sales_run
    events = read(db, run_id)
    got = messages(stream_body(client_for(db), f"/runs/{run_id}/stream"))
    sent = [m for m in got if m["event"] == "event"]
    assert (
        [int(m["id"]) for m in sent] == [e.seq for e in events] == list(range(1, len(events) + 1))
    )
    for m, e in zip(sent, events, strict=True):
        assert f'data-kind="{e.kind.value}"' in m["data"]
    # After the events: the fragments to swap in, then the end; nothing after it.
    assert [m["event"] for m in got[len(sent) :]] == ["summary", "spokes", "queue", "end"]
    assert 'data-status="waiting"' in got[-1]["data"]
    assert all(int(m["id"]) == events[-1].seq for m in got[len(sent) :])


def test_stream_resumes_after_last_event_id(sales_run: tuple[Where, str]) -> None:
    db, run_id = sales_run
    client = client_for(db)
    whole = [
        int(m["id"])
        for m in messages(stream_body(client, f"/runs/{run_id}/stream"))
        if m["event"] == "event"
    ]
    # The header wins over the page's `after`: a reconnecting browser sends what it last got.
    again = messages(
        stream_body(client, f"/runs/{run_id}/stream?after=10", **{"Last-Event-ID": "120"})
    )
    assert [int(m["id"]) for m in again if m["event"] == "event"] == whole[120:]
    # Resuming at the end sends no event, only the end.
    last = str(whole[-1])
    tail = messages(stream_body(client, f"/runs/{run_id}/stream", **{"Last-Event-ID": last}))
    assert [m["event"] for m in tail] == ["summary", "spokes", "queue", "end"]


def sessions(db: Where) -> int:
    """How many connections to the journal's PostgreSQL database are open (0 for a file)."""
    if isinstance(db, Path):
        return 0
    import psycopg

    with psycopg.connect(db.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db.rsplit("/", 1)[1],)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_follow_holds_no_journal_open_between_polls(
    journal: Where, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(journal)
    store.create_run(running_record("run_crashed", "notes", {"topic": "tea"}))
    store.append(
        [
            Event("run_crashed", n, time.time(), EventKind.PHASE_STARTED, "p", data={"items": 1})
            for n in (1, 2)
        ]
    )
    store.close()
    opened: list[Any] = []
    closed: list[Any] = []

    def counted(location: Where, *, read_only: bool = False) -> Any:
        assert read_only, "the stream opened the journal for writing"
        assert location == journal
        found = open_store(location, read_only=read_only)
        opened.append(found)
        real_close = found.close

        def close() -> None:
            closed.append(found)
            real_close()

        found.close = close  # type: ignore[method-assign]
        return found

    monkeypatch.setattr(stream, "open_store", counted)

    async def consume() -> list[object]:
        got: list[object] = []
        async for step in stream.follow(journal, "run_crashed", poll=0):
            assert closed == opened, "a journal was left open between polls"
            assert sessions(journal) == 0, "a database connection was kept between polls"
            got.append(step)
        return got

    got = asyncio.run(consume())
    assert [len(g) if isinstance(g, list) else g for g in got] == [
        2,
        stream.Ended("stopped", "no process drives the run; `hubspoke resume` goes on"),
    ]
    assert len(opened) == 3 and closed == opened  # one look per poll


def test_a_journal_lost_mid_stream_ends_the_stream_saying_why_without_the_password(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, secret = postgres_url, "s3cret-horse"  # user postgres is trusted: a password is ignored
    store = open_store(url)
    store.create_run(running_record("run_crashed", "notes", {"topic": "tea"}))
    store.append(
        [Event("run_crashed", 1, time.time(), EventKind.RUN_STARTED, data={"workflow": "n"})]
    )
    store.close()
    polls: list[str] = []

    def dropping(location: str, *, read_only: bool = False) -> Any:
        polls.append(location)
        if len(polls) == 2:  # the database goes away between the first poll and the next
            import psycopg

            admin_url = url.rsplit("/", 1)[0] + "/postgres"
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE {url.rsplit('/', 1)[1]} WITH (FORCE)")
        return open_store(location, read_only=read_only)

    monkeypatch.setattr(stream, "open_store", dropping)
    secret_url = url.replace("postgres@", f"postgres:{secret}@", 1)
    got = messages(stream_body(client_for(secret_url), "/runs/run_crashed/stream"))

    assert [m["event"] for m in got] == ["event", "summary", "spokes", "queue", "end"]
    end = " ".join(got[-1]["data"].split())
    shown = url.replace("postgres@", "postgres:***@", 1)
    assert 'data-status="unreadable"' in end and got[-1]["id"] == "1"
    assert "The stream stopped: The journal cannot be read: cannot open the Postgres store" in end
    assert f"store {shown}: " in end and "Reload to try again" in end
    assert secret not in "".join(m["data"] for m in got) and len(polls) == 2


def test_sse_framing_keeps_a_payload_inside_its_message() -> None:
    framed = sse("event", "one\nevent: end\r\ndata: forged\rtwo", id=3)
    assert framed == (
        "event: event\nid: 3\ndata: one\ndata: event: end\ndata: data: forged\ndata: two\n\n"
    )
    assert [m["event"] for m in messages(framed)] == ["event"]


class Held:
    """A function specialist that waits until the test lets it go: the run stays live."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, inp: Topic, ctx: Context) -> Notes:
        self.entered.set()
        assert self.release.wait(60), "the test never let the specialist go"
        return Notes(points=[f"{inp.topic} is held"])


def test_stream_follows_a_live_run_to_its_end(journal: Where) -> None:
    db = journal
    held = Held()
    workflow = notes_workflow(
        Role(name="researcher", purpose="Collect facts.", input=Topic, output=Notes, function=held)
    )
    store = open_store(db)
    runner = threading.Thread(
        target=lambda: asyncio.run(Foreman(workflow, store).run({"topic": "tea"})), daemon=True
    )
    runner.start()
    try:
        assert held.entered.wait(60)
        run_id = store.runs()[0].run_id
        client = client_for(db)
        page = client.get(f"/runs/{run_id}?kind=item")
        # A live run's page follows its stream, from the newest event it shows, filter kept.
        (live,) = Elements(page.text).having("sse-connect")
        seen = read(db, run_id)[-1].seq
        assert live["sse-connect"] == f"/runs/{run_id}/stream?kind=item&after={seen}"
        assert live["sse-close"] == "end"
        # A hostile filter reaches the stream's URL encoded, inside an escaped attribute.
        hostile = client.get(f"/runs/{run_id}", params={"item": EVIL_ATTR}).text
        assert "<img" not in hostile
        (live,) = Elements(hostile).having("sse-connect")
        assert live["sse-connect"].startswith(f"/runs/{run_id}/stream?item=%22%27%3E%3Cimg")
        got: list[dict[str, str]] = []
        with client.stream("GET", f"/runs/{run_id}/stream") as response:
            buffer = ""
            for chunk in response.iter_text():
                buffer += chunk
                got = messages(buffer)
                if not held.release.is_set() and any(m["event"] == "queue" for m in got):
                    # The first batch is out while the specialist holds the run: one in flight.
                    summary = next(m for m in got if m["event"] == "summary")
                    assert 'data-in-flight="1"' in summary["data"]
                    assert 'data-limit="16"' in summary["data"]
                    assert 'data-status="running"' in summary["data"]
                    held.release.set()
        runner.join(60)
        events = read(db, run_id)
        assert [int(m["id"]) for m in got if m["event"] == "event"] == [e.seq for e in events]
        assert events[-1].kind is EventKind.RUN_FINISHED
        assert got[-1]["event"] == "end" and 'data-status="completed"' in got[-1]["data"]
        final = next(m for m in reversed(got) if m["event"] == "spokes")
        assert 'data-state="done"' in final["data"]
    finally:
        held.release.set()
        runner.join(60)
        store.close()


def test_a_running_run_nobody_drives_is_shown_stopped_and_its_stream_ends(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    store = SQLiteStore(db)
    store.create_run(running_record("run_crashed", "notes", {"topic": "tea"}))
    store.append(
        [Event("run_crashed", 1, time.time(), EventKind.RUN_STARTED, data={"workflow": "notes"})]
    )
    store.close()
    client = client_for(db)
    page = client.get("/runs/run_crashed")
    assert 'data-status="stopped"' in page.text and "sse-connect" not in page.text
    got = messages(stream_body(client, "/runs/run_crashed/stream"))
    assert [m["event"] for m in got] == [
        "event",
        "summary",
        "spokes",
        "queue",
        "summary",
        "spokes",
        "queue",
        "end",
    ]
    # The first fragments show it running; once nobody drove it for two polls, stopped.
    assert 'data-status="running"' in got[1]["data"] and 'data-status="stopped"' in got[4]["data"]
    assert 'data-status="stopped"' in got[-1]["data"] and "hubspoke resume" in got[-1]["data"]


# --- sub-runs and failures ------------------------------------------------------------------------


def test_sub_runs_link_to_their_parent_item_and_back(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    child = Workflow(
        name="research",
        input=Topic,
        roles=[
            Role(name="searcher", purpose="Search.", input=Topic, output=Notes, function=research)
        ],
        phases=[Phase(name="search", role="searcher", input=lambda run: run.input)],
        result=lambda run: run.output("search"),
    )
    team = child.as_role(
        name="research_team",
        purpose="Research as a team.",
        output=Notes,
        budget=Budget(tokens=1000),
    )
    run_id = run_into(db, notes_workflow(team, name="parent"), {"topic": "tea"})
    client = client_for(db)
    parent = client.get(f"/runs/{run_id}").text
    (child_id,) = RunState.fold(run_id, read(db, run_id)).children
    hrefs = {a["href"] for a in Elements(parent).having("href", "a")}
    assert f"/runs/{child_id}" in hrefs
    (team_spoke,) = [
        g for g in svg_of(parent).iter(f"{SVG}g") if g.attrib.get("data-role") == "research_team"
    ]
    assert team_spoke.attrib["data-accepted"] == "1"
    assert any(c.attrib.get("stroke-dasharray") for c in team_spoke.iter(f"{SVG}circle"))
    page = client.get(f"/runs/{child_id}").text
    (back,) = Elements(page).having("class", "a") and [
        a for a in Elements(page).having("class", "a") if a["class"] == "parent-link"
    ]
    assert back["href"] == f"/runs/{run_id}#item-research"
    assert 'id="item-research"' in parent


class Ask(BaseModel):
    topic: str


class Pitch(BaseModel):
    text: str


def test_a_failing_role_is_drawn_in_the_failure_colour(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"

    def breaks(inp: Ask, ctx: Context) -> Pitch:
        raise RuntimeError("the pricing service is down")

    def writes(inp: Ask, ctx: Context) -> Pitch:
        return Pitch(text=inp.topic)

    workflow = Workflow(
        name="breaking",
        input=Ask,
        roles=[
            Role(name="writer", purpose="Write.", input=Ask, output=Pitch, function=writes),
            Role(
                name="pricer",
                purpose="Price.",
                input=Ask,
                output=Pitch,
                function=breaks,
                max_attempts=2,
            ),
        ],
        phases=[
            Phase(name="write", role="writer", input=lambda run: run.input),
            Phase(name="price", role="pricer", input=lambda run: run.input),
        ],
        max_escalations=0,  # the pricer's escalation fails its item instead
    )
    run_id = run_into(db, workflow, {"topic": "tea"})
    text = client_for(db).get(f"/runs/{run_id}").text
    spokes = {
        g.attrib["data-role"]: g for g in svg_of(text).iter(f"{SVG}g") if "data-role" in g.attrib
    }
    assert spokes["pricer"].attrib["data-state"] == "failed"
    assert spokes["pricer"].attrib["data-failed"] == "1"
    assert spokes["pricer"].attrib["data-retried"] == "1"
    assert spokes["writer"].attrib["data-state"] == "done"
    red = {c.attrib["stroke"] for c in spokes["pricer"].iter(f"{SVG}circle")}
    assert red == {"#b42318"}
    assert "#b42318" not in {c.attrib["stroke"] for c in spokes["writer"].iter(f"{SVG}circle")}
    assert 'data-status="failed"' in text and "the pricing service is down" in text


def test_an_output_reads_as_written_escaped_but_not_mangled(tmp_path: Path) -> None:
    """The Outputs list shows each artifact's JSON as the event details do: markup escaped
    once, as text, and every other character as it is (no ``\\u003c``, no ``\\u00e9``)."""
    db = tmp_path / "journal.db"

    def writes(inp: Ask, ctx: Context) -> Pitch:
        return Pitch(text="<b>café</b> & «tea»")

    workflow = Workflow(
        name="writing",
        input=Ask,
        roles=[Role(name="writer", purpose="Write.", input=Ask, output=Pitch, function=writes)],
        phases=[Phase(name="write", role="writer", input=lambda run: run.input)],
    )
    run_id = run_into(db, workflow, {"topic": "tea"})
    html = client_for(db).get(f"/runs/{run_id}").text
    outputs = html[html.index('id="artifacts-title"') : html.index('id="events-title"')]
    assert "&lt;b&gt;café&lt;/b&gt; &amp; «tea»" in outputs
    assert "\\u" not in outputs and "<b>" not in outputs


def test_role_counts_fold_per_role_as_the_phases_fold() -> None:
    # One phase played by two roles (a fallback): the phase's counts split across its roles.
    events = [
        Event("r", 1, 0.0, EventKind.RUN_STARTED, data={"workflow": "w"}),
        Event("r", 2, 0.0, EventKind.PHASE_STARTED, "p", data={"items": 1}),
        Event("r", 3, 0.0, EventKind.DISPATCH_STARTED, "p", "a", "p", 1, {"tries": 0}),
        Event(
            "r",
            4,
            0.0,
            EventKind.DISPATCH_FINISHED,
            "p",
            "a",
            "p",
            1,
            {"outcome": "error", "usage": {}},
        ),
        Event("r", 5, 0.0, EventKind.ITEM_FALLBACK, "p", "a", "p", 1, {"to": "b", "reason": "x"}),
        Event("r", 6, 0.0, EventKind.DISPATCH_STARTED, "p", "b", "p", 2, {"tries": 0}),
        Event(
            "r",
            7,
            0.0,
            EventKind.DISPATCH_FINISHED,
            "p",
            "b",
            "p",
            2,
            {"outcome": "output", "usage": {}},
        ),
        Event("r", 8, 0.0, EventKind.ITEM_ACCEPTED, "p", "b", "p", 2, {"artifact_id": "art"}),
    ]
    counts = role_counts("r", events)
    assert {r: (c.dispatched, c.accepted, c.fallbacks) for r, c in counts.items()} == {
        "a": (1, 0, 1),
        "b": (1, 1, 0),
    }
    phase = RunState.fold("r", events).phases["p"]
    assert phase.dispatched == sum(c.dispatched for c in counts.values())
    assert phase.accepted == sum(c.accepted for c in counts.values())


# --- escaping -------------------------------------------------------------------------------------

EVIL = '<script>alert("x")</script>'
EVIL_ATTR = "\"'><img src=x onerror=alert(1)>"


def assert_escaped(text: str, where: str) -> None:
    """No hostile markup survived as markup; it is there as text."""
    assert "<script>" not in text, where
    assert "<img" not in text, where
    assert "onerror=alert(1)>" not in text.replace("onerror=alert(1)&gt;", ""), where
    assert "&lt;script&gt;" in text or "&lt;img" in text, where


def test_model_output_card_title_and_role_names_are_escaped_everywhere(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"

    def writes(inp: Ask, ctx: Context) -> Pitch:
        return Pitch(text=EVIL + EVIL_ATTR)

    def breaks(inp: Ask, ctx: Context) -> Pitch:
        raise RuntimeError(EVIL_ATTR + EVIL)

    workflow = Workflow(
        name="hostile",
        input=Ask,
        roles=[
            Role(name="writer", purpose="Write.", input=Ask, output=Pitch, function=writes),
            Role(
                name="breaker",
                purpose="Break.",
                input=Ask,
                output=Pitch,
                function=breaks,
                max_attempts=1,
            ),
        ],
        phases=[
            Phase(
                name="write",
                role="writer",
                input=lambda run: run.input,
                review=True,
                card_title=lambda out: EVIL_ATTR + out.text,
            ),
            Phase(
                name="break",
                role="breaker",
                input=lambda run: run.input,
                strategy=Strategy.BEST_EFFORT,
            ),
        ],
    )
    real = run_into(db, workflow, {"topic": EVIL})
    # Role, phase and item names the runtime would refuse, written into a journal by hand.
    forged = "run_forged"
    store = SQLiteStore(db)
    store.create_run(running_record(forged, EVIL_ATTR, {"topic": EVIL}, status="running"))
    now = time.time()
    shape = {"roles": {EVIL_ATTR: {"kind": "agent"}}, "phases": []}
    store.append(
        [
            Event(
                forged,
                1,
                now,
                EventKind.RUN_STARTED,
                data={"workflow": EVIL_ATTR, "input": {"topic": EVIL}, "shape": shape},
            ),
            Event(
                forged,
                2,
                now,
                EventKind.PHASE_STARTED,
                EVIL_ATTR,
                data={"items": 1, "concurrency": 2},
            ),
            Event(
                forged,
                3,
                now,
                EventKind.DISPATCH_STARTED,
                EVIL_ATTR,
                EVIL_ATTR,
                EVIL_ATTR,
                1,
                {"tries": 0, "correction": EVIL, "fingerprint": "f", "input": {}},
            ),
            Event(
                forged,
                4,
                now,
                EventKind.DISPATCH_FINISHED,
                EVIL_ATTR,
                EVIL_ATTR,
                EVIL_ATTR,
                1,
                {"outcome": "output", "usage": {"usd": 0.5}, "output": {"text": EVIL}},
            ),
            Event(
                forged,
                5,
                now,
                EventKind.ITEM_ACCEPTED,
                EVIL_ATTR,
                EVIL_ATTR,
                EVIL_ATTR,
                1,
                {"artifact_id": EVIL_ATTR},
            ),
            Event(
                forged,
                6,
                now,
                EventKind.CARD_CREATED,
                EVIL_ATTR,
                EVIL_ATTR,
                EVIL_ATTR,
                1,
                {"card_id": EVIL_ATTR, "column": "review", "title": EVIL, "artifact_id": EVIL_ATTR},
            ),
            Event(
                forged,
                7,
                now,
                EventKind.CHILD_RUN_STARTED,
                EVIL_ATTR,
                EVIL_ATTR,
                EVIL_ATTR,
                1,
                {"kind": "child", "child_run": EVIL_ATTR, "budget": {}},
            ),
            Event(
                forged, 8, now, EventKind.RUN_FINISHED, data={"status": "completed", "reason": EVIL}
            ),
        ],
        artifacts=[
            Artifact(
                id=EVIL_ATTR,
                run_id=forged,
                phase=EVIL_ATTR,
                role=EVIL_ATTR,
                item=EVIL_ATTR,
                schema=EVIL,
                content={"text": EVIL},
                created=now,
            )
        ],
        cards=[
            Card(
                id=EVIL_ATTR,
                run_id=forged,
                phase=EVIL_ATTR,
                item=EVIL_ATTR,
                column=Column.REVIEW,
                title=EVIL,
                risk=EVIL,
                artifact_id=EVIL_ATTR,
                note=EVIL,
            )
        ],
        status=(forged, "completed"),
    )
    store.close()
    client = client_for(db)
    for run_id in (real, forged):
        page = client.get(f"/runs/{run_id}")
        assert page.status_code == 200
        assert_escaped(page.text, f"page of {run_id}")
        svg_of(page.text)  # still well-formed XML
        assert_escaped(client.get(f"/runs/{run_id}/events").text, f"events of {run_id}")
        body = stream_body(client, f"/runs/{run_id}/stream")
        assert_escaped(body, f"stream of {run_id}")
        for m in messages(body):
            assert "<script>" not in m["data"] and "<img" not in m["data"]
        # Filters carry the hostile names back escaped in links and the stream's URL.
        filtered = client.get(f"/runs/{run_id}", params={"role": EVIL_ATTR, "phase": EVIL_ATTR})
        assert filtered.status_code == 200
        assert_escaped(filtered.text, f"filtered page of {run_id}")
    forged_page = client.get(f"/runs/{forged}").text
    (spoke,) = [g for g in svg_of(forged_page).iter(f"{SVG}g") if "data-role" in g.attrib]
    assert spoke.attrib["data-role"] == EVIL_ATTR  # read back intact from the attribute
    # The card's title, as text.
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in forged_page
    real_page = client.get(f"/runs/{real}").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in real_page


# --- imports --------------------------------------------------------------------------------------


def test_the_view_modules_need_no_web_framework() -> None:
    probe = (
        "import sys, hubspoke, hubspoke.web.runpage, hubspoke.web.spokes, hubspoke.web.stream\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('fastapi', 'starlette', 'jinja2')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
