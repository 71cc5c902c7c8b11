"""The outbox, written through the journal: with the event that decides it, once per key, and
scrubbed of secrets like everything else the journal writes. (The store's own rules are in the
conformance suite, tests/test_store.py.)"""

from __future__ import annotations

from dataclasses import replace

import pytest

from hubspoke import EventKind, RunState, SQLiteStore
from hubspoke.journal import Journal, RunRecord
from hubspoke.journal.redaction import REDACTED
from hubspoke.outbox import OutboxEntry

SECRET = "sk-live-PLANTED-0123456789abcdef"


def _run(store: SQLiteStore, run_id: str) -> None:
    store.create_run(
        RunRecord(
            run_id=run_id,
            workflow="send",
            ref=None,
            input={},
            options={},
            parent_run=None,
            parent_item=None,
            schema_version=4,
            created=1000.0,
            status="running",
            finished=None,
        )
    )


def test_an_entry_is_written_with_its_event_once_and_scrubbed(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_API_KEY", SECRET)
    _run(store, "run_a")
    journal = Journal(store, RunState("run_a"), deferred=True)
    entry = OutboxEntry(
        key="send/card_1",
        run_id="run_a",
        item="send[0]",
        created=1001.0,
        content={"to": "ana@example.com", "body": f"the key is {SECRET}"},
    )
    journal.emit(EventKind.PHASE_STARTED, phase="send", data={"items": 1}, outbox=entry)
    assert store.outbox() == []  # deferred: nothing is written before the flush
    again = replace(entry, content={"to": "ana@example.com", "body": "a second copy"})
    journal.emit(EventKind.PHASE_STARTED, phase="send", data={"items": 1}, outbox=again)
    journal.close()

    (written,) = store.outbox("run_a")
    assert written == replace(
        entry, content={"to": "ana@example.com", "body": f"the key is {REDACTED}"}
    )
    assert [e.seq for e in store.events("run_a")] == [1, 2]


def test_a_later_batch_with_a_stored_key_writes_its_events_but_not_the_entry(
    store: SQLiteStore,
) -> None:
    """A follow-up item accepted again (a resume, a second approval) sends nothing twice."""
    _run(store, "run_a")
    entry = OutboxEntry(key="k", run_id="run_a", item="send[0]", created=1.0, content={"n": 1})
    first = Journal(store, RunState("run_a"))
    first.emit(EventKind.PHASE_STARTED, phase="send", data={"items": 1}, outbox=entry)
    first.close()
    state = RunState.fold("run_a", store.events("run_a"))
    second = Journal(store, state)
    second.emit(
        EventKind.PHASE_STARTED, phase="send", data={"items": 1}, outbox=replace(entry, created=2.0)
    )
    second.close()
    assert store.outbox() == [entry]
    assert [e.seq for e in store.events("run_a")] == [1, 2]
