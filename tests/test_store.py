"""The store conformance suite: every store passes it, through the one `backend` fixture.

Each test pins a behaviour a caller in `src/` relies on (named in the test's docstring); a new
store is one more line in `BACKENDS`. The end of the file tests what only `SQLiteStore` offers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import hubspoke
from hubspoke import Artifact, Card, Column, Event, EventKind, Foreman, Phase
from hubspoke.errors import DuplicateEvent, JournalReadOnly, RunExists
from hubspoke.journal import PostgresStore, RunRecord, SQLiteStore, Store
from hubspoke.outbox import OutboxEntry
from tests.helpers import Number, squares

pytestmark = pytest.mark.anyio

# the stores under test ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backend:
    """One store under test, empty at the start of each test."""

    open: Callable[[], Store]
    """A new handle (connection) on the same store."""
    opener: str
    """Python source that binds `store` to a new handle on the same store, for a subprocess."""


@contextmanager
def sqlite_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """An empty journal file in the test's folder."""
    path: Path = request.getfixturevalue("tmp_path") / "journal.db"
    yield Backend(
        open=lambda: SQLiteStore(path),
        opener=f"from hubspoke import SQLiteStore\nstore = SQLiteStore({str(path)!r})",
    )


@contextmanager
def postgres_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A fresh database on the session's PostgreSQL server (tests/pgserver.py); skipped
    without one, failed in CI (``HUBSPOKE_TEST_POSTGRES=required``)."""
    url: str = request.getfixturevalue("postgres_url")
    yield Backend(
        open=lambda: PostgresStore(url),
        opener=f"from hubspoke import PostgresStore\nstore = PostgresStore({url!r})",
    )


BACKENDS: list[Callable[[pytest.FixtureRequest], AbstractContextManager[Backend]]] = [
    sqlite_backend,
    postgres_backend,
]
"""Every store hubspoke ships; each test below runs once per entry. An entry takes the test's
request (for its folder or a server), makes an empty store (a file, a database, a schema),
yields how to open it and removes it afterwards."""


@pytest.fixture(params=BACKENDS, ids=lambda make: make.__name__.removesuffix("_backend"))
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    with request.param(request) as made:
        yield made


@pytest.fixture
def store(backend: Backend) -> Iterator[Store]:
    opened = backend.open()
    yield opened
    opened.close()


@contextmanager
def handle(backend: Backend) -> Iterator[Store]:
    """Another handle on the store under test (another connection), closed on the way out."""
    opened = backend.open()
    try:
        yield opened
    finally:
        opened.close()


# what the runtime writes -------------------------------------------------------------------------


def record(run_id: str, created: float = 1000.0, **fields: Any) -> RunRecord:
    values: dict[str, Any] = {
        "workflow": "notes",
        "ref": "flow.py:workflow",
        "input": {"topic": "tea", "tags": ["a", "ü"], "nested": {"n": 1}},
        "options": {"budget": {"tokens": 100}, "latency": 0.0, "model": None},
        "parent_run": None,
        "parent_item": None,
        "schema_version": 2,
        "created": created,
        "status": "running",
        "finished": None,
    }
    return RunRecord(run_id=run_id, **(values | fields))


def event(run_id: str, seq: int, **data: Any) -> Event:
    return Event(
        run_id,
        seq,
        1000.0 + seq / 8,
        EventKind.DISPATCH_STARTED,
        phase="draft",
        role="writer",
        item=f"draft[{seq}]",
        attempt=seq % 3 or None,
        data={"n": seq, **data},
    )


def artifact(run_id: str, item: str, content: dict[str, Any], **fields: Any) -> Artifact:
    text = json.dumps(content)
    values: dict[str, Any] = {
        "id": "art_" + hashlib.sha256(f"{run_id}{item}{text}".encode()).hexdigest()[:20],
        "run_id": run_id,
        "phase": "draft",
        "role": "writer",
        "item": item,
        "schema": "tests.Draft",
        "content": content,
        "created": 1000.0,
    }
    return Artifact(**(values | fields))


def card(run_id: str, item: str, **fields: Any) -> Card:
    values: dict[str, Any] = {
        "id": f"card_{run_id}_{item}",
        "run_id": run_id,
        "phase": "draft",
        "item": item,
        "column": Column.REVIEW,
        "title": f"check {item}",
        "risk": "high",
        "artifact_id": None,
        "note": "",
        "created": 1000.0,
    }
    return Card(**(values | fields))


def run_together(workers: list[Callable[[], None]]) -> list[BaseException | None]:
    """Start every worker in its own thread at the same moment; return what each raised."""
    barrier = threading.Barrier(len(workers))
    raised: list[BaseException | None] = [None] * len(workers)

    def target(i: int) -> None:
        barrier.wait()
        try:
            workers[i]()
        except BaseException as e:
            raised[i] = e

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return raised


# runs --------------------------------------------------------------------------------------------


def test_a_run_reads_back_as_it_was_created(store: Store) -> None:
    """`Foreman.resume` rebuilds the run from its record (input by name, budget in options)."""
    sub = record("run_b.draft[0].1", parent_run="run_b", parent_item="draft[0]", ref=None)
    store.create_run(record("run_b"))
    store.create_run(sub)

    assert store.run("run_b") == record("run_b")
    assert store.run(sub.run_id) == sub
    assert store.run("run_c") is None
    assert store.run("run_") is None  # an exact id, not a prefix


def test_a_run_id_already_stored_is_refused_and_the_stored_run_kept(store: Store) -> None:
    """`Foreman.run(run_id=...)` on an id in use must fail clearly, not overwrite that run."""
    store.create_run(record("run_a", workflow="first"))

    with pytest.raises(RunExists, match="run 'run_a' is already in the journal") as raised:
        store.create_run(record("run_a", workflow="second"))

    assert "resume it" in str(raised.value)
    stored = store.run("run_a")
    assert stored is not None and stored.workflow == "first"
    assert [r.run_id for r in store.runs()] == ["run_a"]


async def test_the_foreman_refuses_a_run_id_the_store_holds(store: Store) -> None:
    """The runtime's view: a second run under a taken id writes nothing and holds no lease."""
    workflow = squares(
        Phase(
            name="squares",
            role="squarer",
            over=lambda run: [1, 2],
            input=lambda run, n: Number(n=n),
        )
    )
    done = await Foreman(workflow, store).run({"topic": "x"}, run_id="run_same")
    journal = store.events("run_same")

    with pytest.raises(RunExists, match="run_same"):
        await Foreman(workflow, store).run({"topic": "y"}, run_id="run_same")

    assert done.status == "completed"
    assert store.events("run_same") == journal
    assert store.holder("run_same") is None
    stored = store.run("run_same")
    assert stored is not None and stored.input == {"topic": "x"}


def test_runs_lists_the_newest_first_and_ties_by_id(store: Store) -> None:
    """`hubspoke runs --limit N`."""
    for run_id, created in [("run_b", 2.0), ("run_old", 1.0), ("run_c", 3.0), ("run_a", 2.0)]:
        store.create_run(record(run_id, created=created))

    assert [r.run_id for r in store.runs()] == ["run_c", "run_a", "run_b", "run_old"]
    assert [r.run_id for r in store.runs(limit=2)] == ["run_c", "run_a"]


def test_find_runs_matches_a_literal_prefix_newest_first(store: Store) -> None:
    """`hubspoke show PREFIX`: ``_`` and ``%`` in a run id are characters, not wildcards."""
    runs = [("job_1", 1.0), ("jobx1", 2.0), ("job%2", 3.0), ("job_3", 4.0), ("job_2", 4.0)]
    for run_id, created in runs:
        store.create_run(record(run_id, created=created))

    assert store.find_runs("job_") == ["job_2", "job_3", "job_1"]
    assert store.find_runs("job%") == ["job%2"]
    assert store.find_runs("job") == ["job_2", "job_3", "job%2", "jobx1", "job_1"]
    assert store.find_runs("job_1") == ["job_1"]
    assert store.find_runs("nope") == []


def test_a_status_sets_the_run_and_its_end_time(store: Store) -> None:
    """`run.finished` carries the status that `hubspoke runs` lists."""
    store.create_run(record("run_a"))
    store.create_run(record("run_b"))
    store.append([event("run_a", 1)], status=("run_a", "running"))
    store.append([event("run_b", 1)], status=("run_b", "exhausted"))

    running, ended = store.run("run_a"), store.run("run_b")
    assert running is not None and (running.status, running.finished) == ("running", None)
    assert ended is not None and ended.status == "exhausted" and ended.finished is not None


# the journal -------------------------------------------------------------------------------------


def test_events_read_back_whole_and_in_seq_order(store: Store) -> None:
    """Every fold (`RunState.fold`, `hubspoke show`, resume) reads the run's events in order."""
    store.create_run(record("run_a"))
    store.create_run(record("run_b"))
    first = [event("run_a", 1, text="ünïcode ✓", deep={"list": [1, 2.5, None, True]})]
    first += [event("run_a", n) for n in (2, 3)]
    later = [event("run_a", n) for n in range(4, 40)]
    other = [event("run_b", n) for n in (1, 2)]

    store.append(first)
    store.append(other)
    store.append(later)

    assert store.events("run_a") == first + later
    assert store.events("run_b") == other
    assert store.events("run_unknown") == []


def test_the_stored_data_is_the_encoded_text_the_journal_gives(store: Store) -> None:
    """`Journal.flush` passes each event's data already encoded (and scrubbed of secrets)."""
    store.create_run(record("run_a"))
    given = [event("run_a", 1, secret="sk-123"), event("run_a", 2)]
    encoded = ['{"n":1,"secret":"[REDACTED]"}', '{"n":2}']

    store.append(given, encoded=encoded)

    assert [e.data for e in store.events("run_a")] == [
        {"n": 1, "secret": "[REDACTED]"},
        {"n": 2},
    ]


def test_a_taken_seq_refuses_the_whole_batch(store: Store) -> None:
    """The journal is a prefix of what was decided: a batch is written whole or not at all,
    events, artifacts, cards and status together; `Journal.flush` keeps a refused batch."""
    store.create_run(record("run_a"))
    store.append([event("run_a", n) for n in (1, 2, 3)])
    out = artifact("run_a", "draft[4]", {"text": "x"})
    drawn = card("run_a", "draft[4]", artifact_id=out.id)
    batch = [event("run_a", 4), event("run_a", 5), event("run_a", 3, again=True)]

    with pytest.raises(DuplicateEvent, match="event 3 of run 'run_a'") as raised:
        store.append(batch, [out], [drawn], ("run_a", "completed"))

    assert (raised.value.run_id, raised.value.seq) == ("run_a", 3)
    assert store.events("run_a") == [event("run_a", n) for n in (1, 2, 3)]
    assert store.artifacts("run_a") == []
    assert store.artifact_texts("run_a") == {}
    assert store.cards("run_a") == []
    stored = store.run("run_a")
    assert stored is not None and stored.status == "running"
    # Nothing of it was left behind: the batch without its clash goes in whole.
    store.append(batch[:2], [out], [drawn], ("run_a", "completed"))
    assert [e.seq for e in store.events("run_a")] == [1, 2, 3, 4, 5]
    assert store.artifacts("run_a") == [out]
    assert store.cards("run_a") == [drawn]


def test_a_seq_twice_in_one_batch_refuses_it(store: Store) -> None:
    store.create_run(record("run_a"))

    with pytest.raises(DuplicateEvent, match="event 1 of run 'run_a' is twice in one batch"):
        store.append([event("run_a", 1), event("run_a", 2), event("run_a", 1)])

    assert store.events("run_a") == []


def test_a_batch_of_any_size_is_written_whole_in_order_or_not_at_all(store: Store) -> None:
    """A long loop tick flushes hundreds of events and artifacts at once (a store may write
    them by several rows per statement): every row goes in, in order, an artifact given twice
    in the batch is kept once, and a taken seq anywhere in a batch refuses all of it."""
    store.create_run(record("run_a"))
    events = [event("run_a", n, text=f"ü{n}") for n in range(1, 101)]
    outputs = [artifact("run_a", f"draft[{n}]", {"n": n}, created=1000.0 + n) for n in range(70)]
    again = artifact("run_a", "draft[5]", {"n": 5}, created=1.0)

    store.append(events, [*outputs[:40], again, *outputs[40:]])

    assert store.events("run_a") == events
    assert store.artifacts("run_a") == outputs
    late = [event("run_a", n) for n in range(101, 181)]
    late[50] = event("run_a", 77)
    with pytest.raises(DuplicateEvent, match="event 77 of run 'run_a'"):
        store.append(late, [artifact("run_a", "late", {"n": 0})])
    assert store.events("run_a") == events
    assert len(store.artifacts("run_a")) == 70


def test_seq_is_per_run(store: Store) -> None:
    store.create_run(record("run_a"))
    store.create_run(record("run_b"))

    store.append([event("run_a", 1), event("run_b", 1)])

    assert [e.run_id for e in store.events("run_a") + store.events("run_b")] == ["run_a", "run_b"]


def test_what_one_handle_appends_another_reads_at_once(backend: Backend, store: Store) -> None:
    """`hubspoke runs`/`show` in another process read a live run; `close` keeps it all."""
    store.create_run(record("run_a"))
    with handle(backend) as reader:
        store.append([event("run_a", 1)])
        assert reader.events("run_a") == [event("run_a", 1)]
        store.append([event("run_a", 2)], status=("run_a", "completed"))
        assert len(reader.events("run_a")) == 2
    store.close()
    with handle(backend) as reopened:
        assert reopened.events("run_a") == [event("run_a", 1), event("run_a", 2)]
        stored = reopened.run("run_a")
        assert stored is not None and stored.status == "completed"


# artifacts and cards -----------------------------------------------------------------------------


def test_artifacts_by_run_and_phase_in_order_with_their_text(store: Store) -> None:
    """`hubspoke artifacts [--phase]`, and resume's one `artifact_texts` query."""
    store.create_run(record("run_a"))
    store.create_run(record("run_b"))
    late = artifact("run_a", "draft[0]", {"text": "late"}, created=1002.0)
    early_b = artifact("run_a", "draft[1]", {"text": "b"}, created=1001.0)
    early_a = artifact("run_a", "draft[0]", {"text": "a", "n": [1, {"ü": None}]}, created=1001.0)
    given_text = '{"text":"picked", "by_name":true}'
    picked = artifact(
        "run_a",
        "pick",
        {"text": "picked", "by_name": True},
        phase="pick",
        content_json=given_text,
        created=1003.0,
    )
    elsewhere = artifact("run_b", "draft[0]", {"text": "other run"})
    store.append([event("run_a", 1)], [late, early_b])
    store.append([event("run_a", 2), event("run_b", 1)], [early_a, picked, elsewhere])

    everything = store.artifacts("run_a")
    assert everything == [early_a, early_b, late, picked]
    assert all(a.content_json is not None for a in everything)
    assert store.artifacts("run_a", "pick") == [picked]
    assert store.artifacts("run_a", "nope") == []
    texts = store.artifact_texts("run_a")
    assert texts[picked.id] == given_text
    assert {k: json.loads(v) for k, v in texts.items()} == {a.id: a.content for a in everything}
    assert store.artifacts("run_unknown") == [] and store.artifact_texts("run_unknown") == {}


def test_an_artifact_stored_again_keeps_the_first(store: Store) -> None:
    """Artifact ids are content hashes: an item accepted again after a resume, with the same
    output, announces an id that is stored already; its events must still be written."""
    store.create_run(record("run_a"))
    first = artifact("run_a", "draft[0]", {"text": "a"}, created=1001.0)
    store.append([event("run_a", 1)], [first])

    store.append([event("run_a", 2)], [artifact("run_a", "draft[0]", {"text": "a"}, created=2.0)])

    assert store.artifacts("run_a") == [first]
    assert [e.seq for e in store.events("run_a")] == [1, 2]


def test_cards_by_run_in_order_and_a_card_given_again_replaces_it(store: Store) -> None:
    """`hubspoke cards [RUN]`; a resume re-drafts the card of an item whose end it replays."""
    store.create_run(record("run_a"))
    store.create_run(record("run_b"))
    review = card("run_a", "draft[1]", artifact_id="art_1", created=1001.0)
    escalated = card(
        "run_a", "draft[0]", column=Column.ESCALATED, note="who decides?", created=1001.0
    )
    first = card("run_a", "draft[2]", created=1000.0)
    other = card("run_b", "draft[0]", created=999.0)
    store.append([event("run_a", 1), event("run_b", 1)], cards=[review, escalated, first, other])

    assert store.cards("run_a") == [first, escalated, review]
    assert store.cards() == [other, first, escalated, review]
    assert store.cards("run_unknown") == []

    moved = card("run_a", "draft[0]", column=Column.REVIEW, title="now drafted", created=1001.0)
    store.append([event("run_a", 2)], cards=[moved])
    assert store.cards("run_a") == [first, moved, review]


# the outbox --------------------------------------------------------------------------------------


def entry(run_id: str, key: str, created: float = 1000.0, **content: Any) -> OutboxEntry:
    return OutboxEntry(
        key=key,
        run_id=run_id,
        item="send[0]",
        created=created,
        content={"to": "ana@example.com", "body": "Hej ü", "n": [1, {"x": None}], **content},
    )


def test_the_outbox_by_run_in_order_each_key_written_once(store: Store) -> None:
    """A follow-up run's sending stage writes each message once, however often the item that
    writes it is accepted again (`Journal.emit(outbox=...)`); `hubspoke outbox [--run RUN]`."""
    store.create_run(record("run_a"))
    store.create_run(record("run_b"))
    late, early = entry("run_a", "card_2", 1002.0), entry("run_a", "card_1", 1001.0)
    other = entry("run_b", "card_9", 1000.5)
    store.append([event("run_a", 1), event("run_b", 1)], outbox=[late, early, other])
    assert store.outbox("run_a") == [early, late]
    assert store.outbox() == [other, early, late]
    assert store.outbox("run_unknown") == []

    again = entry("run_a", "card_1", 1003.0, body="sent twice?")
    store.append([event("run_a", 2)], outbox=[again])
    assert store.outbox("run_a") == [early, late]  # the first message with that key stays
    assert [e.seq for e in store.events("run_a")] == [1, 2]  # the batch itself was written


def test_a_refused_batch_writes_none_of_its_outbox(store: Store) -> None:
    """A message is written with the decision that writes it, or not at all."""
    store.create_run(record("run_a"))
    store.append([event("run_a", 1)])
    with pytest.raises(DuplicateEvent):
        store.append([event("run_a", 2), event("run_a", 1)], outbox=[entry("run_a", "card_1")])
    assert store.outbox() == []
    store.append([event("run_a", 2)], outbox=[entry("run_a", "card_1")])
    assert [e.key for e in store.outbox()] == ["card_1"]


def test_the_outbox_is_shared_by_every_handle(backend: Backend, store: Store) -> None:
    """`hubspoke outbox` reads what a run in another process wrote."""
    store.create_run(record("run_a"))
    with handle(backend) as other:
        other.append([event("run_a", 1)], outbox=[entry("run_a", "card_1")])
    assert [e.key for e in store.outbox("run_a")] == ["card_1"]


# leases ------------------------------------------------------------------------------------------


def test_a_lease_has_one_owner_until_released(store: Store) -> None:
    """`Foreman._acquire` and `release`; `hubspoke runs` shows a held run as running."""
    store.create_run(record("run_a"))
    store.create_run(record("run_b"))
    assert store.holder("run_a") is None

    assert store.acquire("run_a", "owner-1") is None
    held = store.holder("run_a")
    assert held is not None and str(os.getpid()) in held
    assert store.acquire("run_a", "owner-1") is None  # its owner may take it again
    assert store.acquire("run_a", "owner-2") == held
    assert store.acquire("run_b", "owner-2") is None  # a lease is per run
    store.release("run_a", "owner-2")  # not its owner: nothing happens
    assert store.holder("run_a") == held
    assert store.acquire("run_a", "owner-2") == held

    store.release("run_a", "owner-1")
    assert store.holder("run_a") is None
    assert store.acquire("run_a", "owner-2") is None


HOLDER = """
import os, sys
{opener}
print(store.acquire({run_id!r}, "owner-elsewhere"), flush=True)
sys.stdin.readline()
os._exit(0)  # killed while holding the lease: nothing releases it
"""


def test_a_lease_held_by_a_live_process_is_refused_and_taken_once_it_died(
    backend: Backend, store: Store
) -> None:
    """`hubspoke resume` refuses a run another process drives, and takes over a killed one."""
    store.create_run(record("run_a"))
    code = HOLDER.format(opener=backend.opener, run_id="run_a")
    source = str(Path(hubspoke.__file__).parents[1])  # this checkout's hubspoke, from any cwd
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        assert child.stdout.readline().strip() == "None"
        held = store.holder("run_a")
        assert held is not None and str(child.pid) in held and socket.gethostname() in held
        assert store.acquire("run_a", "owner-here") == held
        child.stdin.write("\n")
        child.stdin.flush()
    assert child.returncode == 0

    assert store.holder("run_a") is None
    assert store.acquire("run_a", "owner-here") is None
    mine = store.holder("run_a")
    assert mine is not None and str(os.getpid()) in mine


# concurrent writers ------------------------------------------------------------------------------


def test_writers_of_different_runs_at_once_lose_and_mix_nothing(backend: Backend) -> None:
    """Sub-foremen and parallel runs write one store at the same time (one handle each)."""
    writers, batches, size = 4, 30, 5

    def write(w: int) -> Callable[[], None]:
        def work() -> None:
            run_id = f"run_{w}"
            with handle(backend) as mine:
                mine.create_run(record(run_id))
                for b in range(batches):
                    seqs = range(b * size + 1, (b + 1) * size + 1)
                    out = artifact(run_id, f"item[{b}]", {"writer": w, "batch": b})
                    mine.append(
                        [event(run_id, s, writer=w) for s in seqs],
                        [out],
                        [card(run_id, f"item[{b}]", artifact_id=out.id)],
                    )

        return work

    assert run_together([write(w) for w in range(writers)]) == [None] * writers

    with handle(backend) as reader:
        for w in range(writers):
            events = reader.events(f"run_{w}")
            assert [e.seq for e in events] == list(range(1, batches * size + 1))
            assert {e.data["writer"] for e in events} == {w}
            assert len(reader.artifacts(f"run_{w}")) == batches
            assert len(reader.cards(f"run_{w}")) == batches


def test_writers_of_one_run_at_once_lose_and_duplicate_nothing(backend: Backend) -> None:
    writers, each = 4, 40
    with handle(backend) as setup:
        setup.create_run(record("run_a"))

    def write(w: int) -> Callable[[], None]:
        def work() -> None:
            with handle(backend) as mine:
                for k in range(each):
                    mine.append([event("run_a", k * writers + w + 1, writer=w)])

        return work

    assert run_together([write(w) for w in range(writers)]) == [None] * writers

    with handle(backend) as reader:
        events = reader.events("run_a")
    assert [e.seq for e in events] == list(range(1, writers * each + 1))
    assert all(e.data["writer"] == (e.seq - 1) % writers for e in events)


def test_two_writers_of_one_seq_at_once_one_is_refused(backend: Backend) -> None:
    """The last line of defence if two processes ever drive one run: one batch wins whole,
    the other is refused whole."""
    rounds = 15
    with handle(backend) as setup:
        setup.create_run(record("run_a"))
    handles = [backend.open(), backend.open()]
    try:
        for seq in range(1, rounds + 1):

            def write(w: int, seq: int = seq) -> Callable[[], None]:
                def work() -> None:
                    out = artifact("run_a", f"item[{seq}]", {"writer": w})
                    handles[w].append(
                        [event("run_a", seq, writer=w)], [out], [card("run_a", f"w{w}[{seq}]")]
                    )

                return work

            raised = run_together([write(0), write(1)])
            refused = [e for e in raised if e is not None]
            assert len(refused) == 1 and isinstance(refused[0], DuplicateEvent), raised
            winner = raised.index(None)
            (written,) = [e for e in handles[0].events("run_a") if e.seq == seq]
            assert written.data["writer"] == winner
            assert [
                a.content for a in handles[0].artifacts("run_a") if a.item == f"item[{seq}]"
            ] == [{"writer": winner}]
            assert [c.item for c in handles[0].cards("run_a") if c.item.endswith(f"[{seq}]")] == [
                f"w{winner}[{seq}]"
            ]
    finally:
        for opened in handles:
            opened.close()
    with handle(backend) as reader:
        assert [e.seq for e in reader.events("run_a")] == list(range(1, rounds + 1))


# item leases (several foremen sharing one run) ---------------------------------------------------


def test_items_lease_in_published_order_each_to_one_owner(store: Store) -> None:
    """The owner publishes a shared phase's items; joiners lease them in batches
    (`hubspoke.foreman._shared`)."""
    store.publish_items("run_a", [(f"p[{i}]", f'{{"i": {i}}}') for i in range(5)])
    first = store.lease_items("run_a", "joiner-1", 3, 60)
    assert [(i.key, i.payload, i.tries, i.holders) for i in first] == [
        ("p[0]", '{"i": 0}', 1, ()),
        ("p[1]", '{"i": 1}', 1, ()),
        ("p[2]", '{"i": 2}', 1, ()),
    ]
    assert [i.key for i in store.lease_items("run_a", "joiner-2", 10, 60)] == ["p[3]", "p[4]"]
    assert store.lease_items("run_a", "joiner-3", 10, 60) == []
    assert store.lease_items("run_b", "joiner-1", 10, 60) == []  # items are per run


def test_a_done_item_reports_its_result_only_from_its_holder(store: Store) -> None:
    store.publish_items("run_a", [("p[0]", "{}"), ("p[1]", "{}")])
    store.lease_items("run_a", "joiner-1", 2, 60)
    assert store.finish_items("run_a", "joiner-2", [("p[0]", '"theirs"')]) == []
    assert store.finish_items("run_a", "joiner-1", [("p[9]", "{}"), ("p[0]", '{"ok": 1}')]) == [
        "p[0]"
    ]
    assert store.finish_items("run_a", "joiner-1", [("p[0]", '"again"')]) == []  # done once
    assert store.done_items("run_a", ["p[0]", "p[1]", "p[9]"]) == {"p[0]": '{"ok": 1}'}
    assert store.lease_items("run_a", "joiner-2", 10, 60) == []  # done: never leased again


def test_an_expired_lease_is_taken_again_naming_its_holders(store: Store) -> None:
    """A joiner that dies stops renewing: its items go to another owner, who learns whose shard
    journals hold where the item stood."""
    store.publish_items("run_a", [("p[0]", "{}"), ("p[1]", "{}")])
    store.lease_items("run_a", "joiner-1", 2, -1)  # expired at once
    assert store.renew_items("run_a", "joiner-1", ["p[1]"], 60) == ["p[1]"]  # still its own
    (taken,) = store.lease_items("run_a", "joiner-2", 10, 60)
    assert (taken.key, taken.tries, taken.holders) == ("p[0]", 2, ("joiner-1",))
    assert store.renew_items("run_a", "joiner-1", ["p[0]", "p[1]"], 60) == ["p[1]"]
    assert store.finish_items("run_a", "joiner-1", [("p[0]", "{}")]) == []  # lost it
    store.release_items("run_a", "joiner-1", ["p[1]"])
    (again,) = store.lease_items("run_a", "joiner-3", 10, 60)
    assert (again.key, again.holders) == ("p[1]", ("joiner-1",))


def test_publishing_again_keeps_what_is_under_way_and_resets_a_new_attempt(store: Store) -> None:
    """A resumed owner publishes its in-flight items again: done and leased ones stay; a new
    attempt (another payload) starts over."""
    store.publish_items("run_a", [("p[0]", "a1"), ("p[1]", "a1"), ("p[2]", "a1")])
    store.lease_items("run_a", "joiner-1", 2, 60)
    store.finish_items("run_a", "joiner-1", [("p[0]", '"done"')])
    store.publish_items("run_a", [("p[0]", "a1"), ("p[1]", "a1"), ("p[2]", "a2")])
    assert store.done_items("run_a", ["p[0]"]) == {"p[0]": '"done"'}
    assert [(i.key, i.payload, i.tries) for i in store.lease_items("run_a", "j2", 9, 60)] == [
        ("p[2]", "a2", 1)
    ]
    store.clear_items("run_a")
    assert store.done_items("run_a", ["p[0]"]) == {}
    store.publish_items("run_a", [("p[0]", "a1")])
    assert [i.key for i in store.lease_items("run_a", "j3", 9, 60)] == ["p[0]"]


def test_leasers_at_once_never_get_one_item_twice(backend: Backend) -> None:
    """Joiners on several machines lease from one run at the same time (one handle each)."""
    total, leasers = 300, 4
    with handle(backend) as setup:
        setup.publish_items("run_a", [(f"p[{i}]", "{}") for i in range(total)])
    got: list[list[str]] = [[] for _ in range(leasers)]

    def lease(w: int) -> Callable[[], None]:
        def work() -> None:
            with handle(backend) as mine:
                while batch := mine.lease_items("run_a", f"joiner-{w}", 7, 60):
                    got[w].extend(i.key for i in batch)
                    done = [(item.key, "{}") for item in batch]
                    assert mine.finish_items("run_a", f"joiner-{w}", done) == [k for k, _ in done]

        return work

    assert run_together([lease(w) for w in range(leasers)]) == [None] * leasers
    every = [key for keys in got for key in keys]
    assert sorted(every) == sorted(f"p[{i}]" for i in range(total))  # each once, none lost


# SQLiteStore only --------------------------------------------------------------------------------


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    """A journal with one finished run, closed."""
    path = tmp_path / "journal.db"
    store = SQLiteStore(path)
    store.create_run(record("run_a"))
    out = artifact("run_a", "draft[0]", {"text": "a"})
    store.append([event("run_a", 1), event("run_a", 2)], [out], status=("run_a", "completed"))
    store.close()
    return path


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of the folder: its bytes and modification time (ns)."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_a_read_only_store_reads_and_refuses_every_write(journal: Path) -> None:
    before = snapshot(journal.parent)
    store = SQLiteStore(journal, read_only=True)
    try:
        assert [r.run_id for r in store.runs()] == ["run_a"]
        assert [e.seq for e in store.events("run_a")] == [1, 2]
        assert len(store.artifacts("run_a")) == 1
        assert store.holder("run_a") is None
        writes: list[Callable[[], object]] = [
            lambda: store.create_run(record("run_b")),
            lambda: store.append([event("run_a", 3)]),
            lambda: store.acquire("run_a", "owner"),
            lambda: store.release("run_a", "owner"),
        ]
        for write in writes:
            with pytest.raises(JournalReadOnly, match="opened read-only"):
                write()
        # Even past the guard, SQLite itself refuses: the connection is read-only.
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store._db.execute("DELETE FROM events")
    finally:
        store.close()
    assert snapshot(journal.parent)[journal.name] == before[journal.name]


def test_a_read_only_store_sees_what_a_live_writer_commits(journal: Path) -> None:
    """`hubspoke runs` next to a running foreman: read-only is not a stale copy."""
    writer = SQLiteStore(journal)
    reader = SQLiteStore(journal, read_only=True)
    try:
        writer.append([event("run_a", 3)])
        assert [e.seq for e in reader.events("run_a")] == [1, 2, 3]
    finally:
        reader.close()
        writer.close()


def test_a_read_only_store_refuses_a_missing_file_and_a_foreign_database(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no journal at"):
        SQLiteStore(tmp_path / "none.db", read_only=True)
    assert not (tmp_path / "none.db").exists()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(sqlite3.DatabaseError, match="not a hubspoke journal"):
        SQLiteStore(other, read_only=True)
    with pytest.raises(ValueError, match="needs a journal file"):
        SQLiteStore(":memory:", read_only=True)


def test_events_after_a_seq_and_an_artifact_by_id(journal: Path) -> None:
    """Beyond the `Store` interface: paging a run's events and reading a card's artifact."""
    store = SQLiteStore(journal, read_only=True)
    try:
        assert [e.seq for e in store.events("run_a", after=1)] == [2]
        assert store.events("run_a", after=2) == []
        (out,) = store.artifacts("run_a")
        assert store.artifact(out.id) == out
        assert store.artifact("art_none") is None
        assert store.integrity_ok()
    finally:
        store.close()


def test_a_journal_older_than_the_outbox_reads_an_empty_one(tmp_path: Path) -> None:
    """`hubspoke outbox` on a journal written before the outbox table existed, read-only (so
    the table cannot be made): nothing is in it, and nothing is written."""
    path = tmp_path / "v3.db"
    shutil.copy(Path(__file__).parent / "fixtures" / "journal-v3.db", path)
    before = path.read_bytes()
    store = SQLiteStore(path, read_only=True)
    try:
        assert store.outbox() == []
        assert store.outbox(store.runs()[0].run_id) == []
    finally:
        store.close()
    assert path.read_bytes() == before
