"""Test helpers for workflows: the same tools hubspoke's own tests use.

- `stream(events)`: a run's whole event stream as compact lines, ids and timestamps left out,
  to compare with one `assert`.
- `scripted(...)`: an offline-model player that plays a fixed script of moves per attempt.
- `SideEffects`: a place for side-effecting specialists to write with their idempotency key,
  so that tests can count what really happened.
- `block_model_requests()`: make any real provider request fail (pydantic-ai's switch).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from hubspoke.events import Event, EventKind
from hubspoke.models.offline import Move, Player, Turn

__all__ = ["SideEffects", "block_model_requests", "scripted", "stream"]

_DETAIL: dict[EventKind, Callable[[dict[str, Any]], str]] = {
    EventKind.DISPATCH_FINISHED: lambda d: d["outcome"],
    EventKind.RUN_FINISHED: lambda d: d["status"],
    EventKind.PHASE_FINISHED: lambda d: d["status"],
    EventKind.PHASE_STARTED: lambda d: f"items={d['items']}",
    EventKind.ITEM_FALLBACK: lambda d: f"to={d['to']}",
    EventKind.TOOL_CALLED: lambda d: d["tool"],
    EventKind.TOOL_REFUSED: lambda d: d["tool"],
    EventKind.CARD_CREATED: lambda d: d["column"],
    # A failed request has no calls: show its error rather than an empty detail.
    EventKind.MODEL_EXCHANGE: lambda d: d.get("error") or ",".join(d.get("calls", [])),
}


def stream(events: Iterable[Event], *, skip: Sequence[EventKind] = ()) -> list[str]:
    """Render events as ``"kind phase role item attempt detail"`` lines, in order.

    Leaves out what varies between identical runs (ids, timestamps, durations), so two runs of
    the same workflow on the same input give equal streams.
    """
    lines = []
    for event in events:
        if event.kind in skip:
            continue
        parts = [event.kind.value]
        parts += [x for x in (event.phase, event.role, event.item) if x]
        if event.attempt is not None:
            parts.append(f"#{event.attempt}")
        detail = _DETAIL.get(event.kind)
        if detail is not None:
            parts.append(detail(event.data))
        lines.append(" ".join(parts))
    return lines


def scripted(*attempts: Sequence[Move] | Move, repeat_last: bool = True) -> Player:
    """A player that plays `attempts[n]` on attempt n+1, one move per model request.

    Each entry is one move, or a list of moves played turn by turn within that attempt. With
    `repeat_last`, attempts past the end replay the last entry.
    """
    scripts: list[list[Move]] = [
        list(a) if isinstance(a, list | tuple) else [a]  # type: ignore[list-item]
        for a in attempts
    ]

    def play(turn: Turn) -> Move:
        index = min(turn.attempt - 1, len(scripts) - 1) if repeat_last else turn.attempt - 1
        moves = scripts[index]
        return moves[min(turn.turn, len(moves) - 1)]

    return play


class SideEffects:
    """A durable ledger of side effects, keyed by idempotency key (an SQLite file).

    A specialist calls `record(ctx.idempotency_key, what)` before doing something irreversible;
    it returns False when that key was already recorded, so a re-run after a crash does not do it
    twice. `count()` and `keys()` tell tests what really happened.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with sqlite3.connect(self.path) as db:
            db.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, what TEXT)")
            db.execute("CREATE TABLE IF NOT EXISTS attempts (key TEXT, what TEXT)")

    def record(self, key: str, what: str) -> bool:
        with sqlite3.connect(self.path, timeout=10) as db:
            db.execute("INSERT INTO attempts VALUES (?, ?)", (key, what))
            cursor = db.execute("INSERT OR IGNORE INTO effects VALUES (?, ?)", (key, what))
            return cursor.rowcount == 1

    def count(self) -> int:
        with sqlite3.connect(self.path) as db:
            return int(db.execute("SELECT COUNT(*) FROM effects").fetchone()[0])

    def keys(self) -> list[str]:
        with sqlite3.connect(self.path) as db:
            return [r[0] for r in db.execute("SELECT key FROM effects ORDER BY key")]

    def attempts(self) -> int:
        """How many times a side effect was attempted, duplicates included."""
        with sqlite3.connect(self.path) as db:
            return int(db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0])


def block_model_requests() -> None:
    """Make requests to real providers raise; offline and function models keep working."""
    import pydantic_ai.models

    pydantic_ai.models.ALLOW_MODEL_REQUESTS = False
