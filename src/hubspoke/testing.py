"""Test helpers for workflows: the same tools hubspoke's own tests use.

- `stream(events)`: a run's whole event stream as compact lines, ids and timestamps left out,
  to compare with one `assert`.
- `payload_errors(events)`: what in each event's data its kind's payload type does not allow.
- `scripted(...)`: an offline-model player that plays a fixed script of moves per attempt.
- `SideEffects`: a place for side-effecting specialists to write with their idempotency key,
  so that tests can count what really happened.
- `block_model_requests()`: make any real provider request fail (pydantic-ai's switch).
- `assert_replays(journal, workflow)`: a recorded run as a regression test: the workflow
  replays it offline identically, or the assertion fails with the first divergence.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hubspoke.events import PAYLOADS, Event, EventKind, payload
from hubspoke.models.offline import Move, Player, Turn

if TYPE_CHECKING:
    from hubspoke.journal import Redactor, Store
    from hubspoke.replay import ReplayReport
    from hubspoke.workflow import Workflow

__all__ = [
    "SideEffects",
    "assert_replays",
    "block_model_requests",
    "payload_errors",
    "scripted",
    "stream",
]


def _detail(event: Event) -> str | None:
    """The part of an event's payload that a stream line shows, if any."""
    kind = event.kind
    if kind is EventKind.DISPATCH_FINISHED:
        return payload(event, kind)["outcome"]
    if kind is EventKind.RUN_FINISHED or kind is EventKind.PHASE_FINISHED:
        return payload(event, kind)["status"]
    if kind is EventKind.PHASE_STARTED:
        return f"items={payload(event, kind)['items']}"
    if kind is EventKind.ITEM_FALLBACK:
        return f"to={payload(event, kind)['to']}"
    if kind is EventKind.TOOL_CALLED:
        called = payload(event, kind)
        return f"{called['tool']} replayed" if called.get("replayed") else called["tool"]
    if kind is EventKind.TOOL_STARTED:
        started = payload(event, kind)
        return f"{started['tool']} reconciled" if started.get("reconciled") else started["tool"]
    if kind is EventKind.TOOL_FINISHED:
        ended = payload(event, kind)
        how = " error" if "error" in ended else " reconciled" if ended.get("reconciled") else ""
        return ended["tool"] + how
    if kind is EventKind.TOOL_REFUSED:
        refused = payload(event, kind)
        # A malformed trace entry names no tool: show the trace entry's kind instead.
        return refused.get("tool") or refused["kind"]
    if kind is EventKind.CARD_CREATED:
        return payload(event, kind)["column"]
    if kind is EventKind.CARD_DECIDED:
        return payload(event, kind)["verb"]
    if kind is EventKind.ITEM_WAITING:
        return payload(event, kind)["cause"]
    if kind is EventKind.PLAN_ACCEPTED:
        accepted = payload(event, kind)
        return f"rev={accepted['revision']} " + ",".join(s["id"] for s in accepted["steps"])
    if kind is EventKind.PLAN_REJECTED:
        return f"errors={len(payload(event, kind)['errors'])}"
    if kind is EventKind.PLAN_STALLED:
        return f"rev={payload(event, kind)['revision']}"
    if kind is EventKind.ROUTER_DECIDED:
        decided = payload(event, kind)
        said = f"turn={decided['turn']} {decided['action']}"
        return said + (f" {decided['step']}={decided['role']}" if "step" in decided else "")
    if kind is EventKind.ROUTER_REJECTED:
        return f"errors={len(payload(event, kind)['errors'])}"
    if kind is EventKind.MODEL_EXCHANGE:
        exchange = payload(event, kind)
        # A failed request has no calls: show its error rather than an empty detail.
        return exchange.get("error") or ",".join(exchange.get("calls", []))
    return None


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
        detail = _detail(event)
        if detail is not None:
            parts.append(detail)
        lines.append(" ".join(parts))
    return lines


def payload_errors(events: Iterable[Event]) -> list[str]:
    """What in each event's data its kind's payload type (`hubspoke.events.PAYLOADS`) does not
    allow: a required key that is missing, or a key the type does not have.

    Checks keys, not values (the type checker checks those where the payload is written). A
    journal written by this version, or read back from an older one, gives ``[]``; so does the
    trace of a specialist that writes only what the trace types allow.

    Returns:
        One line per event that does not fit, e.g.
        ``"event 7 (dispatch.finished): missing 'usage'; unknown 'usgae'"``.
    """
    errors = []
    for event in events:
        shape = PAYLOADS[event.kind]
        keys = event.data.keys()
        missing = sorted(shape.__required_keys__ - keys)
        unknown = sorted(keys - shape.__required_keys__ - shape.__optional_keys__)
        if missing or unknown:
            said = [f"missing {', '.join(map(repr, missing))}"] if missing else []
            said += [f"unknown {', '.join(map(repr, unknown))}"] if unknown else []
            errors.append(f"event {event.seq} ({event.kind.value}): {'; '.join(said)}")
    return errors


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


def assert_replays(
    journal: str | Path | Store,
    workflow: Workflow,
    run_id: str | None = None,
    *,
    secrets: Redactor | None = None,
) -> ReplayReport:
    """Assert that `workflow` replays a recorded run identically (`hubspoke.replay`).

    Keep a real run as a regression test: export it (``hubspoke replay RUN --export
    tests/runs/NAME.db``) and assert in a test that the workflow, as it is now, still makes the
    same requests on the recorded responses and gives the same outputs. Runs offline: no key,
    no server. Synchronous (it runs its own event loop): call it from a plain test function.

    Args:
        journal: the journal file (a path), or an open store.
        workflow: the workflow as it is now.
        run_id: the recorded run; `None` for the journal's only top-level run.
        secrets: what to scrub from the new requests before comparing (`replay`).

    Returns:
        The report, when identical.

    Raises:
        AssertionError: the replay diverged; the message is the first divergence (where, what
            differed and a short diff).
        NotReplayable: the run was recorded without its requests and responses.
        RunNotFound: no such run; `ValueError` when `run_id` is None and the journal holds
            no top-level run or several.
    """
    from hubspoke.journal import SQLiteStore
    from hubspoke.replay import replay_sync

    opened = isinstance(journal, str | Path)
    if isinstance(journal, str | Path):
        if not Path(journal).exists():
            raise FileNotFoundError(f"no journal at {journal}")
        store: Store = SQLiteStore(str(journal), read_only=True)
    else:
        store = journal
    try:
        if run_id is None:
            tops = [r.run_id for r in store.runs(limit=1000) if r.parent_run is None]
            if len(tops) != 1:
                raise ValueError(
                    f"the journal holds {len(tops)} top-level runs ({', '.join(tops[:5])}); "
                    "name the one to replay with run_id="
                )
            run_id = tops[0]
        report = replay_sync(store, run_id, workflow, secrets=secrets)
    finally:
        if opened:
            store.close()
    if not report.identical:
        raise AssertionError(f"run {run_id} does not replay identically:\n{report.describe()}")
    return report
