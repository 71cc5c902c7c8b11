"""The store interface behind the journal, artifacts and board.

Small on purpose so that a Postgres store can follow the SQLite one. `append` writes a batch of
events with the artifacts and cards they announce in one transaction: either all are durable or
none is, so the journal is always a prefix of what the foreman decided.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hubspoke.artifacts import Artifact
from hubspoke.board import Card
from hubspoke.events import Event

__all__ = ["RunRecord", "Store"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    run_id: str
    workflow: str
    ref: str | None
    """Where the workflow is defined (`module:attr` or `file.py:attr`), for `hubspoke resume`."""
    input: dict[str, Any]
    options: dict[str, Any]
    parent_run: str | None
    parent_item: str | None
    schema_version: int
    created: float
    status: str
    finished: float | None


class Store(Protocol):
    def create_run(self, run: RunRecord) -> None: ...

    def run(self, run_id: str) -> RunRecord | None: ...

    def runs(self, limit: int = 50) -> list[RunRecord]: ...

    def append(
        self,
        events: Sequence[Event],
        artifacts: Sequence[Artifact] = (),
        cards: Sequence[Card] = (),
        status: tuple[str, str] | None = None,
    ) -> None:
        """Write events, artifacts and cards atomically; `status` is (run_id, new status)."""
        ...

    def events(self, run_id: str, after: int = 0) -> list[Event]: ...

    def last_seq(self, run_id: str) -> int: ...

    def artifact(self, artifact_id: str) -> Artifact | None: ...

    def artifacts(self, run_id: str, phase: str | None = None) -> list[Artifact]: ...

    def artifact_texts(self, run_id: str) -> dict[str, str]:
        """Every artifact of the run as its JSON text, by id (what a resume reloads)."""
        ...

    def cards(self, run_id: str | None = None) -> list[Card]: ...

    def acquire(self, run_id: str, owner: str) -> str | None:
        """Take the run's lease; return None on success or who holds it."""
        ...

    def holder(self, run_id: str) -> str | None:
        """Who holds the run's lease now, if a live process does."""
        ...

    def find_runs(self, prefix: str) -> list[str]:
        """Ids of the runs that start with `prefix`, newest first."""
        ...

    def release(self, run_id: str, owner: str) -> None: ...

    def close(self) -> None: ...
