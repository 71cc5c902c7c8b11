"""What a store's rows mean, for every store: a row of each table as the runtime's value, and
the refusal of a batch whose `(run_id, seq)` is taken.

`SQLiteStore` and `PostgresStore` keep the same columns in the same order (``SELECT *`` of
``runs``, ``artifacts`` and ``cards``; the listed columns of ``events`` and ``outbox``), so one
reading serves both; only the SQL that fetches the rows is each store's own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from hubspoke.artifacts import Artifact
from hubspoke.board import Card, Column
from hubspoke.errors import DuplicateEvent
from hubspoke.events import Event, EventKind
from hubspoke.journal.store import RunRecord
from hubspoke.jsontext import parse
from hubspoke.outbox import OutboxEntry

__all__ = [
    "EVENT_COLUMNS",
    "artifact",
    "card",
    "duplicate_event",
    "events",
    "outbox_entry",
    "run_record",
]

_KINDS = {k.value: k for k in EventKind}

Row = Sequence[Any]


def run_record(row: Row) -> RunRecord:
    """A ``runs`` row (``SELECT *``)."""
    return RunRecord(
        run_id=row[0],
        workflow=row[1],
        ref=row[2],
        input=json.loads(row[3]),
        options=json.loads(row[4]),
        parent_run=row[5],
        parent_item=row[6],
        schema_version=row[7],
        created=row[8],
        status=row[9],
        finished=row[10],
    )


EVENT_COLUMNS = "seq, ts, kind, phase, role, item, attempt, data"
"""The columns of ``events`` that `events` reads, in its order (not `run_id`: the one asked for)."""


def events(run_id: str, rows: Iterable[Row]) -> list[Event]:
    """The events of run `run_id` from its ``events`` rows (`EVENT_COLUMNS`), in their order.

    One pass that unpacks each row (a resume reads every event of a run: 100,000 and more);
    each event's data is parsed from its own JSON text.
    """
    return [
        Event(run_id, seq, ts, _KINDS[kind], phase, role, item, attempt, parse(data))
        for seq, ts, kind, phase, role, item, attempt, data in rows
    ]


def artifact(row: Row) -> Artifact:
    """An ``artifacts`` row (``SELECT *``), with its JSON text kept as `content_json`."""
    return Artifact(
        id=row[0],
        run_id=row[1],
        phase=row[2],
        role=row[3],
        item=row[4],
        schema=row[5],
        content=parse(row[6]),
        created=row[7],
        content_json=row[6],
    )


def card(row: Row) -> Card:
    """A ``cards`` row (``SELECT *``)."""
    return Card(
        id=row[0],
        run_id=row[1],
        phase=row[2],
        item=row[3],
        artifact_id=row[4],
        column=Column(row[5]),
        title=row[6],
        risk=row[7],
        note=row[8],
        created=row[9],
    )


def outbox_entry(row: Row) -> OutboxEntry:
    """An ``outbox`` row: key, run_id, item, created, content."""
    return OutboxEntry(
        key=row[0], run_id=row[1], item=row[2], created=row[3], content=parse(row[4])
    )


def duplicate_event(
    events: Sequence[Event], stored: Callable[[tuple[str, int]], bool], path: Path | str
) -> DuplicateEvent | None:
    """After a refused batch: the `DuplicateEvent` for its first taken `(run_id, seq)`, taken
    twice in the batch or already `stored` in the journal at `path`; None if none is."""
    seen: set[tuple[str, int]] = set()
    for e in events:
        key = (e.run_id, e.seq)
        taken = stored(key)
        if key in seen or taken:
            why = (
                "is twice in one batch (a journal numbers each event once)"
                if not taken
                else f"is already in the journal at {path}: another writer numbered "
                "events of this run too (only the process holding the run's lease may "
                "write it)"
            )
            return DuplicateEvent(
                e.run_id,
                e.seq,
                f"event {e.seq} of run {e.run_id!r} {why}; the batch of {len(events)} "
                "events was not written",
            )
        seen.add(key)
    return None
