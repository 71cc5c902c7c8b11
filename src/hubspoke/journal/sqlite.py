"""The embedded store: one SQLite file in WAL mode.

Durable against a killed process: every `append` is one transaction, and `(run_id, seq)` is the
primary key of the events table, so an event can be neither lost half-way nor written twice.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hubspoke.artifacts import Artifact
from hubspoke.board import Card, Column
from hubspoke.errors import JournalTooNew
from hubspoke.events import SCHEMA_VERSION, Event, EventKind
from hubspoke.journal.store import RunRecord
from hubspoke.jsontext import parse

__all__ = ["SQLiteStore"]

_KINDS = {k.value: k for k in EventKind}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, ref TEXT, input TEXT NOT NULL,
    options TEXT NOT NULL, parent_run TEXT, parent_item TEXT, schema_version INTEGER NOT NULL,
    created REAL NOT NULL, status TEXT NOT NULL, finished REAL
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL,
    phase TEXT, role TEXT, item TEXT, attempt INTEGER, data TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, phase TEXT NOT NULL, role TEXT NOT NULL,
    item TEXT NOT NULL, schema TEXT NOT NULL, content TEXT NOT NULL, created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_by_run ON artifacts (run_id, phase);
CREATE TABLE IF NOT EXISTS cards (
    card_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, phase TEXT NOT NULL, item TEXT NOT NULL,
    artifact_id TEXT, column_name TEXT NOT NULL, title TEXT NOT NULL, risk TEXT NOT NULL,
    note TEXT NOT NULL, created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS cards_by_run ON cards (run_id);
CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    acquired REAL NOT NULL
);
"""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SQLiteStore:
    """Journal, artifacts, board and run leases in one SQLite database.

    Args:
        path: the database file (created with its folder if missing), or ``":memory:"``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout=10000")
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) > SCHEMA_VERSION:
            raise JournalTooNew(
                f"{self.path} was written by a newer hubspoke (journal schema {row[0]}, this "
                f"version reads up to {SCHEMA_VERSION}); upgrade hubspoke to read it"
            )

    # runs ------------------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        self._db.execute(
            "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                run.run_id,
                run.workflow,
                run.ref,
                json.dumps(run.input),
                json.dumps(run.options),
                run.parent_run,
                run.parent_item,
                run.schema_version,
                run.created,
                run.status,
                run.finished,
            ),
        )

    @staticmethod
    def _run_record(row: tuple[Any, ...]) -> RunRecord:
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

    def run(self, run_id: str) -> RunRecord | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return None if row is None else self._run_record(row)

    def runs(self, limit: int = 50) -> list[RunRecord]:
        rows = self._db.execute(
            "SELECT * FROM runs ORDER BY created DESC, run_id LIMIT ?", (limit,)
        ).fetchall()
        return [self._run_record(r) for r in rows]

    def find_runs(self, prefix: str) -> list[str]:
        rows = self._db.execute(
            "SELECT run_id FROM runs WHERE substr(run_id, 1, length(?1)) = ?1 "
            "ORDER BY created DESC",
            (prefix,),
        ).fetchall()
        return [r[0] for r in rows]

    # journal ---------------------------------------------------------------------------------

    def append(
        self,
        events: Sequence[Event],
        artifacts: Sequence[Artifact] = (),
        cards: Sequence[Card] = (),
        status: tuple[str, str] | None = None,
        encoded: Sequence[str] | None = None,
    ) -> None:
        """Write a batch in one transaction. `encoded` may carry each event's data as JSON."""
        datas = encoded if encoded is not None else [json.dumps(e.data) for e in events]
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(
                "INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (e.run_id, e.seq, e.ts, e.kind.value, e.phase, e.role, e.item, e.attempt, d)
                    for e, d in zip(events, datas, strict=True)
                ],
            )
            if artifacts:
                db.executemany(
                    "INSERT OR IGNORE INTO artifacts VALUES (?,?,?,?,?,?,?,?)",
                    [
                        (
                            a.id,
                            a.run_id,
                            a.phase,
                            a.role,
                            a.item,
                            a.schema,
                            a.content_json if a.content_json is not None else json.dumps(a.content),
                            a.created,
                        )
                        for a in artifacts
                    ],
                )
            if cards:
                db.executemany(
                    "INSERT OR REPLACE INTO cards VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [
                        (
                            c.id,
                            c.run_id,
                            c.phase,
                            c.item,
                            c.artifact_id,
                            c.column.value,
                            c.title,
                            c.risk,
                            c.note,
                            c.created,
                        )
                        for c in cards
                    ],
                )
            if status is not None:
                finished = None if status[1] == "running" else time.time()
                db.execute(
                    "UPDATE runs SET status=?, finished=? WHERE run_id=?",
                    (status[1], finished, status[0]),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def events(self, run_id: str, after: int = 0) -> list[Event]:
        rows = self._db.execute(
            "SELECT run_id, seq, ts, kind, phase, role, item, attempt, data FROM events "
            "WHERE run_id=? AND seq>? ORDER BY seq",
            (run_id, after),
        ).fetchall()
        return [
            Event(r[0], r[1], r[2], _KINDS[r[3]], r[4], r[5], r[6], r[7], parse(r[8])) for r in rows
        ]

    def last_seq(self, run_id: str) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM events WHERE run_id=?", (run_id,)).fetchone()
        return int(row[0] or 0)

    # artifacts and cards ----------------------------------------------------------------------

    @staticmethod
    def _artifact(row: tuple[Any, ...]) -> Artifact:
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

    def artifact(self, artifact_id: str) -> Artifact | None:
        row = self._db.execute(
            "SELECT * FROM artifacts WHERE artifact_id=?", (artifact_id,)
        ).fetchone()
        return None if row is None else self._artifact(row)

    def artifacts(self, run_id: str, phase: str | None = None) -> list[Artifact]:
        if phase is None:
            rows = self._db.execute(
                "SELECT * FROM artifacts WHERE run_id=? ORDER BY created, item", (run_id,)
            ).fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM artifacts WHERE run_id=? AND phase=? ORDER BY created, item",
                (run_id, phase),
            ).fetchall()
        return [self._artifact(r) for r in rows]

    def artifact_texts(self, run_id: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT artifact_id, content FROM artifacts WHERE run_id=?", (run_id,)
        ).fetchall()
        return dict(rows)

    def cards(self, run_id: str | None = None) -> list[Card]:
        query = "SELECT * FROM cards"
        args: tuple[str, ...] = ()
        if run_id is not None:
            query += " WHERE run_id=?"
            args = (run_id,)
        rows = self._db.execute(query + " ORDER BY created, item", args).fetchall()
        return [
            Card(
                id=r[0],
                run_id=r[1],
                phase=r[2],
                item=r[3],
                artifact_id=r[4],
                column=Column(r[5]),
                title=r[6],
                risk=r[7],
                note=r[8],
                created=r[9],
            )
            for r in rows
        ]

    # leases ----------------------------------------------------------------------------------

    def acquire(self, run_id: str, owner: str) -> str | None:
        host, pid = socket.gethostname(), os.getpid()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute(
                "SELECT owner, host, pid FROM leases WHERE run_id=?", (run_id,)
            ).fetchone()
            if row is not None and row[0] != owner:
                held_here = row[1] == host
                if not held_here or _pid_alive(int(row[2])):
                    db.execute("ROLLBACK")
                    return f"process {row[2]} on {row[1]}"
            db.execute(
                "INSERT OR REPLACE INTO leases VALUES (?,?,?,?,?)",
                (run_id, owner, host, pid, time.time()),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return None

    def holder(self, run_id: str) -> str | None:
        """Who is driving the run now (a live process on this host, or one elsewhere), if any."""
        row = self._db.execute("SELECT host, pid FROM leases WHERE run_id=?", (run_id,)).fetchone()
        if row is None or (row[0] == socket.gethostname() and not _pid_alive(int(row[1]))):
            return None
        return f"process {row[1]} on {row[0]}"

    def release(self, run_id: str, owner: str) -> None:
        self._db.execute("DELETE FROM leases WHERE run_id=? AND owner=?", (run_id, owner))

    def integrity_ok(self) -> bool:
        row = self._db.execute("PRAGMA integrity_check").fetchone()
        return bool(row and row[0] == "ok")

    def close(self) -> None:
        self._db.close()
