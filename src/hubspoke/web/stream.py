"""Following a run's journal for the inspector's live event stream, without a web framework.

`follow` polls the journal for the events past a sequence number and yields each new batch,
then `Ended` once the run's session is over. Each poll opens the journal read-only in a worker
thread (`hubspoke.journal.location.open_store`: an SQLite file or a PostgreSQL database), reads,
and closes it: between polls nothing holds the file or a database connection, and neither
store's reader blocks a writer (SQLite's WAL; PostgreSQL's snapshots). A read-only store takes
no lease: `holder` only looks at the run's lease (for PostgreSQL, in ``pg_locks``).
`EventFilter` selects events by kind, phase, role and item; `sse` frames one server-sent event.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from hubspoke.events import Event, EventKind
from hubspoke.journal.location import open_store
from hubspoke.journal.store import RunRecord

__all__ = [
    "FAMILIES",
    "KINDS",
    "POLL_SECONDS",
    "Ended",
    "EventFilter",
    "follow",
    "resume_point",
    "sse",
]

KINDS: tuple[str, ...] = tuple(k.value for k in EventKind)
FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(k.split(".")[0] for k in KINDS))
"""Families of kinds (``item`` for ``item.*``), as `hubspoke events --kind` takes them."""
POLL_SECONDS = 0.5
"""How often a live stream looks for new events."""
_UNHELD_POLLS = 2
"""Polls in a row that must find a `running` run held by no process (and no new event) before
the stream calls it stopped: a run is created a moment before its lease is taken."""


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events to show: each given criterion must match (none given: every event)."""

    kinds: frozenset[str] = frozenset()
    """Exact kinds (``item.retry``) or families (``item``)."""
    phase: str = ""
    role: str = ""
    item: str = ""
    """An item's key; its evaluator's events (``item#eval``) match too."""

    @classmethod
    def parse(
        cls, kinds: Iterable[str] = (), phase: str = "", role: str = "", item: str = ""
    ) -> EventFilter:
        """A filter from a query's values; empty values are no criterion.

        Raises:
            ValueError: a kind that is neither an event kind nor a family, naming both lists.
        """
        chosen = frozenset(k.strip() for k in kinds if k.strip())
        unknown = sorted(k for k in chosen if k not in KINDS and k not in FAMILIES)
        if unknown:
            raise ValueError(
                f"no event kind {', '.join(map(repr, unknown))}: give one of "
                f"{', '.join(KINDS)}, or a family ({', '.join(FAMILIES)})"
            )
        return cls(chosen, phase.strip(), role.strip(), item.strip())

    def matches(self, event: Event) -> bool:
        if self.kinds and not (
            event.kind.value in self.kinds or event.kind.value.split(".")[0] in self.kinds
        ):
            return False
        if self.phase and event.phase != self.phase:
            return False
        if self.role and event.role != self.role:
            return False
        return not self.item or (event.item or "").partition("#")[0] == self.item

    def query(self) -> list[tuple[str, str]]:
        """The filter as query parameters, in a stable order."""
        pairs = [("kind", k) for k in sorted(self.kinds)]
        pairs += [(n, v) for n, v in (("phase", self.phase), ("role", self.role)) if v]
        return pairs + ([("item", self.item)] if self.item else [])

    @property
    def active(self) -> bool:
        return bool(self.kinds or self.phase or self.role or self.item)


@dataclass(frozen=True, slots=True)
class Ended:
    """The run's session is over: nothing more will be appended until someone resumes it."""

    status: str
    """The run's status (``completed``, ``waiting``, ...), or ``stopped`` for a run no process
    drives although its journal says ``running`` (a crash or a kill: `hubspoke resume`)."""
    reason: str = ""


def sse(event: str, data: str, *, id: int | None = None) -> str:
    """One server-sent event: ``event:``, ``id:`` when given (what a reconnecting browser sends
    back as ``Last-Event-ID``) and one ``data:`` line per line of `data` (any line break, so
    that no payload can end the message early or forge a field)."""
    lines = [f"event: {event}"]
    if id is not None:
        lines.append(f"id: {id}")
    lines += [f"data: {line}" for line in data.splitlines() or [""]]
    return "\n".join(lines) + "\n\n"


def resume_point(last_event_id: str | None, after: str | None) -> int:
    """The sequence number a stream starts after: the ``Last-Event-ID`` header a reconnecting
    browser sends, else the ``after`` query parameter, else 0 (the whole journal).

    Raises:
        ValueError: the value is not a whole number of at least 0.
    """
    for name, value in (("Last-Event-ID", last_event_id), ("after", after)):
        if value is None or value == "":
            continue
        if not value.strip().isdigit():
            raise ValueError(
                f"{name} must be an event's sequence number (0 or more), not {value!r}"
            )
        return int(value)
    return 0


def _poll(
    location: str | os.PathLike[str], run_id: str, after: int
) -> tuple[RunRecord | None, str | None, list[Event]]:
    """One look at the journal, from a worker thread: the run's record (read first, so that a
    finished run's last events are among those read after it), its lease holder, new events."""
    store = open_store(location, read_only=True)
    try:
        record = store.run(run_id)
        holder = store.holder(run_id) if record is not None and record.status == "running" else None
        return record, holder, store.events(run_id, after)
    finally:
        store.close()


async def follow(
    location: str | os.PathLike[str], run_id: str, *, after: int = 0, poll: float = POLL_SECONDS
) -> AsyncIterator[Sequence[Event] | Ended]:
    """The run's events past `after` as they are appended, batch by batch, then `Ended`.

    `location` is the journal: an SQLite file, or a PostgreSQL URL (one connection per poll,
    closed before the wait: a stream holds no connection, and so no server slot, while idle).

    Ends when the run's status is no longer ``running`` (after yielding every event up to its
    end), when the run is `running` but no live process holds it for `_UNHELD_POLLS` polls in
    a row, or when the run disappears. Between polls it waits `poll` seconds and holds nothing
    open.

    Raises:
        OSError, sqlite3.Error, psycopg.Error, StoreUnavailable, JournalTooNew: the journal could
            not be opened or read (as `open_store` and the store raise them).
    """
    unheld = 0
    while True:
        record, holder, batch = await asyncio.to_thread(_poll, location, run_id, after)
        if batch:
            after = batch[-1].seq
            unheld = 0
            yield batch
        if record is None:
            yield Ended("missing", f"run {run_id!r} is no longer in the journal")
            return
        if record.status != "running":
            yield Ended(record.status)
            return
        if holder is None and not batch:
            unheld += 1
            if unheld >= _UNHELD_POLLS:
                yield Ended("stopped", "no process drives the run; `hubspoke resume` goes on")
                return
        await asyncio.sleep(poll)
