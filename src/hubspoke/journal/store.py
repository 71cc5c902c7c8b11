"""The store interface behind the journal, artifacts, board, outbox and run leases.

`Store` holds exactly the calls the runtime makes (the foreman, the journal writer, sub-foremen
and the CLI), so that a Postgres store can follow the SQLite one by implementing them and
passing `tests/test_store.py`, the suite every store runs. Two promises carry the rest:

- `append` writes a batch of events with the artifacts, cards and run status they announce in
  one transaction: either all of it is durable or none of it is, so the journal is always a
  prefix of what the foreman decided.
- `(run_id, seq)` is unique: an event can be neither lost half-way nor written twice, and two
  writers that numbered the same event cannot both succeed (`DuplicateEvent`).

A store object serves one thread at a time (the foreman's event loop, a CLI command); writers in
other threads or processes open their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hubspoke.artifacts import Artifact
from hubspoke.board import Card
from hubspoke.events import Event
from hubspoke.outbox import OutboxEntry

__all__ = ["LeasedItem", "RunRecord", "Store"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """A run as the store lists it: what started it, and its status."""

    run_id: str
    workflow: str
    """The workflow's name."""
    ref: str | None
    """Where the workflow is defined (`module:attr` or `file.py:attr`), for `hubspoke resume`."""
    input: dict[str, Any]
    """The run's input, by field name (JSON values)."""
    options: dict[str, Any]
    """How the run was started (its budget, the CLI's latency and model), JSON values."""
    parent_run: str | None
    """For a sub-run: the parent run's id."""
    parent_item: str | None
    """For a sub-run: the parent's item key that dispatched it."""
    schema_version: int
    """The journal schema the run was started with (`hubspoke.SCHEMA_VERSION`). A newer hubspoke
    that resumes the run appends events of its own schema; readers read every schema up to
    theirs."""
    created: float
    """Unix time, seconds."""
    status: str
    """``"running"`` until the run's `run.finished` event is appended, then its status."""
    finished: float | None
    """Unix time (seconds) at which the store recorded the final status; None while running."""


@dataclass(frozen=True, slots=True)
class LeasedItem:
    """An item of a shared run that `Store.lease_items` gave to an owner."""

    key: str
    payload: str
    """What the run's owner published for it (JSON text; the store does not read it)."""
    tries: int
    """How many times the item was leased, this time included (1 the first time)."""
    holders: tuple[str, ...]
    """The owners that leased it before, oldest first: a lease that expired left the item
    where its holder stood (`hubspoke.foreman` resumes it from their shard journals)."""


class Store(Protocol):
    """Runs, their journals, artifacts, cards, the outbox and leases.

    Every method is the answer to one call of the runtime; `tests/test_store.py` pins the
    behaviour each caller relies on. Reads return what committed `append` and `create_run`
    calls wrote, whichever handle or process wrote them.
    """

    # runs ------------------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        """Record a new run, before any of its events (`Foreman.run`).

        Raises:
            RunExists: a run with `run.run_id` is already stored; the stored one is unchanged.
        """
        ...

    def run(self, run_id: str) -> RunRecord | None:
        """The run with this exact id, or None."""
        ...

    def runs(self, limit: int = 50) -> list[RunRecord]:
        """The `limit` newest runs, sub-runs included: newest `created` first, ties by
        `run_id` ascending (`hubspoke runs`)."""
        ...

    def find_runs(self, prefix: str) -> list[str]:
        """Ids of the runs whose id starts with `prefix` (every character literal: ``_`` and
        ``%`` are no wildcards), newest `created` first, ties by `run_id` ascending; every
        match, no limit (`hubspoke show PREFIX`)."""
        ...

    # the journal -----------------------------------------------------------------------------

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
        """Write a batch in one transaction: all of it becomes durable, or none of it.

        The `Journal` calls this once per loop tick (or slice of one), with events in `seq`
        order; a refused batch is kept and given again whole, so a refusal must leave nothing.

        Args:
            events: events of runs already created, each `(run_id, seq)` new. The store
                neither renumbers them nor checks `seq` for gaps: the `Journal` numbers them.
            artifacts: accepted outputs announced by the events. An artifact whose id is
                already stored is left as it is (ids are content hashes: the same item accepting
                the same output after a resume gets the same id).
            cards: board cards. A card whose id is already stored is replaced (a card's id
                names its run and item; the later card is the item's current one).
            status: ``(run_id, status)``: the run's new status. Any status but ``"running"``
                also sets the run's `finished` time.
            encoded: each event's `data` as JSON text, in the order of `events` (the journal
                has it already, scrubbed of secrets); when given, the store keeps this text
                rather than encoding `data` again. Reading the event back gives that JSON.
            outbox: messages the batch's decisions write (a follow-up run's sending stage).
                An entry whose `key` is already stored is ignored, the stored one kept: a
                message is written once however often the batch that writes it is made.

        Raises:
            DuplicateEvent: an event's `(run_id, seq)` is already stored, or two events of the
                batch share one; nothing of the batch was written.
        """
        ...

    def events(self, run_id: str) -> list[Event]:
        """Every stored event of the run, in ascending `seq` order; [] for an unknown run."""
        ...

    # artifacts and cards ---------------------------------------------------------------------

    def artifacts(self, run_id: str, phase: str | None = None) -> list[Artifact]:
        """The run's artifacts (only `phase`'s, if given), by `created` then `item`, each with
        its `content_json` set (`hubspoke artifacts`)."""
        ...

    def artifact_texts(self, run_id: str) -> dict[str, str]:
        """Every artifact of the run as its JSON text, by artifact id: the `content_json` it
        was appended with, or its `content` encoded (what a resume validates its outputs from,
        in one query)."""
        ...

    def cards(self, run_id: str | None = None) -> list[Card]:
        """The run's cards, or every run's when `run_id` is None, by `created` then `item`
        (`hubspoke cards`)."""
        ...

    def outbox(self, run_id: str | None = None) -> list[OutboxEntry]:
        """The outbox: the entries the run wrote, or every run's when `run_id` is None, by
        `created` then `key` (`hubspoke outbox`)."""
        ...

    # leases ----------------------------------------------------------------------------------

    def acquire(self, run_id: str, owner: str) -> str | None:
        """Take the run's lease for `owner` (a fresh id per `Foreman.run` or `resume`).

        The lease is taken when nobody holds it, when `owner` holds it already, or when its
        holder is known to be dead (for `SQLiteStore`: a process on this host that no longer
        runs; a holder on another host is never presumed dead. For `PostgresStore`: also a
        holder whose database session has ended, wherever it ran).

        Returns:
            None when `owner` holds the lease now; otherwise who holds it, for a message, e.g.
            ``"process 4242 on build-1"`` (naming the holder's process id).
        """
        ...

    def holder(self, run_id: str) -> str | None:
        """Who holds the run's lease now, in the words of `acquire`, or None when nobody does or
        its holder is known to be dead (`hubspoke runs` shows a stopped run so)."""
        ...

    def release(self, run_id: str, owner: str) -> None:
        """Give up `owner`'s lease on the run; nothing happens if `owner` does not hold it."""
        ...

    # item leases (several foremen sharing one run's items) --------------------------------

    def publish_items(self, run_id: str, items: Sequence[tuple[str, str]]) -> None:
        """Offer items of a run for lease, as ``(key, payload)`` pairs, in one transaction.

        An item not stored yet is stored open. An item stored with the same payload is left as
        it is, leased or done (a resumed owner publishing again keeps what was under way or
        finished); one stored with another payload (a new attempt) is reset: open, its result
        and holders cleared.
        """
        ...

    def lease_items(self, run_id: str, owner: str, limit: int, ttl: float) -> list[LeasedItem]:
        """Atomically lease up to `limit` of the run's items to `owner` for `ttl` seconds: open
        ones, and leased ones whose lease expired (its holder stopped renewing it), in the
        order they were published. No item is ever leased to two owners whose leases are both
        unexpired, however many processes lease at once. Returns [] when none is free."""
        ...

    def renew_items(self, run_id: str, owner: str, keys: Sequence[str], ttl: float) -> list[str]:
        """Extend `owner`'s leases on `keys` to `ttl` seconds from now; returns the keys it
        still holds (an expired lease another owner took is lost: its holder stops the item)."""
        ...

    def finish_items(
        self, run_id: str, owner: str, results: Sequence[tuple[str, str]]
    ) -> list[str]:
        """Mark items done, as ``(key, result)`` pairs (the result JSON text), in one
        transaction: those `owner` holds (its lease may have expired, as long as no other owner
        took the item). Returns the keys recorded, in the order given."""
        ...

    def release_items(self, run_id: str, owner: str, keys: Sequence[str]) -> None:
        """Give `owner`'s leases on `keys` back: the items are open again."""
        ...

    def done_items(self, run_id: str, keys: Sequence[str]) -> dict[str, str]:
        """Of `keys`, the items that are done, with their result text."""
        ...

    def clear_items(self, run_id: str) -> None:
        """Forget every item the run published (its owner has journaled them all)."""
        ...

    def close(self) -> None:
        """Release the store's connection; what was appended stays durable. The store is not
        used afterwards."""
        ...
