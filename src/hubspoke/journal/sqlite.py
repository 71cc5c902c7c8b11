"""The embedded store: one SQLite file in WAL mode.

Durable against a killed process: every `append` is one transaction, and `(run_id, seq)` is the
primary key of the events table, so an event can be neither lost half-way nor written twice.
Opened read-only, it reads a journal the user cannot write and never writes a byte to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from itertools import chain
from pathlib import Path

from hubspoke.artifacts import Artifact
from hubspoke.board import Card
from hubspoke.errors import JournalReadOnly, JournalTooNew, RunExists
from hubspoke.events import SCHEMA_VERSION, Event
from hubspoke.journal import rows as decode
from hubspoke.journal.store import LeasedItem, RunRecord
from hubspoke.outbox import OutboxEntry

__all__ = ["SQLiteStore"]


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
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY, run_id TEXT NOT NULL, item TEXT NOT NULL, created REAL NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_run ON outbox (run_id);
CREATE TABLE IF NOT EXISTS leases (
    run_id TEXT PRIMARY KEY, owner TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
    acquired REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items (
    run_id TEXT NOT NULL, key TEXT NOT NULL, payload TEXT NOT NULL, state TEXT NOT NULL,
    owner TEXT, expires REAL, tries INTEGER NOT NULL, holders TEXT NOT NULL, result TEXT,
    published INTEGER NOT NULL, PRIMARY KEY (run_id, key)
);
"""


ROWS_PER_INSERT = 32
"""Rows written by one ``INSERT ... VALUES (...), (...)`` statement in `_insert`: one step of
SQLite for them all, where ``executemany`` steps (and resets, and releases the GIL) once per
row: an event row costs ~16k instructions instead of ~20k. 32 rows of 9 values stay under
SQLite's oldest limit of 999 variables per statement."""


def _insert(db: sqlite3.Connection, into: str, row: str, rows: Sequence[Sequence[object]]) -> None:
    """``{into} VALUES {row}`` for each of `rows` (`row` its ``(?,...)`` placeholders): by
    `ROWS_PER_INSERT` rows per statement, the few left over one by one; always the same two
    statements, so that the connection's statement cache keeps them compiled."""
    whole = len(rows) - len(rows) % ROWS_PER_INSERT
    if whole:
        statement = f"{into} VALUES {','.join([row] * ROWS_PER_INSERT)}"
        for start in range(0, whole, ROWS_PER_INSERT):
            db.execute(statement, [*chain.from_iterable(rows[start : start + ROWS_PER_INSERT])])
    if whole < len(rows):
        db.executemany(f"{into} VALUES {row}", rows[whole:])


def _rollback(db: sqlite3.Connection) -> None:
    """Roll back the transaction if one is open: SQLite may already have rolled it back (a full
    disk, say), and "no transaction is active" must not hide the error that did it."""
    if db.in_transaction:
        db.execute("ROLLBACK")


def _switch_to_wal(db: sqlite3.Connection, patience: float = 10.0) -> None:
    """Put the journal in WAL mode, waiting while another handle holds the file.

    SQLite answers "database is locked" to `PRAGMA journal_mode=WAL` at once, without waiting
    out `busy_timeout`, while another connection is opening or switching the same new file (as
    several sub-foremen or processes do at their start): so retry, up to `patience` seconds.
    """
    give_up = time.monotonic() + patience
    pause = 0.001
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= give_up:
                raise
        time.sleep(pause)  # a real wait for another connection's lock, not a test's sleep
        pause = min(pause * 2, 0.05)


def _open_read_only(path: str) -> sqlite3.Connection:
    """Connect to an existing journal without writing anything.

    ``mode=ro`` first: it sees what a live writer commits. WAL readers share a ``-shm`` file that
    SQLite creates next to the database; where the folder refuses it, the journal is read as
    immutable, which ignores the ``-wal`` file: exact only when that file is absent or empty.
    """
    if path == ":memory:":
        raise ValueError("a read-only store needs a journal file, not ':memory:'")
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no journal at {path}")
    uri = file.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    try:
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.Error as e:
        db.close()
        # Only a file SQLite cannot open read-only (its -shm cannot be made) falls back to
        # reading it as immutable; a locked or broken journal says so.
        code = getattr(e, "sqlite_errorcode", 0) & 0xFF  # the primary result code
        if code not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY):
            raise
    wal = file.with_name(file.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise PermissionError(
            f"cannot read the journal {path} read-only: {wal.name} holds writes not yet in the "
            f"database, and SQLite cannot create {file.name}-shm next to it to read them (the "
            f"folder {file.parent} is not writable). Copy the journal with its -wal file to a "
            "folder you can write, or have its owner open it for writing once (closing a "
            "writable connection folds the -wal file into the database)."
        )
    db = sqlite3.connect(
        f"{uri}?mode=ro&immutable=1", uri=True, isolation_level=None, check_same_thread=False
    )
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SQLiteStore:
    """Journal, artifacts, board, outbox and run leases in one SQLite database; a `Store`.

    Schema versions: the file records the newest journal schema written to it, and each run
    the schema it was started with (`RunRecord.schema_version`). This hubspoke reads every
    older schema and writes its own (`SCHEMA_VERSION`): when it first writes a run or events
    to an older file, the file's version moves up to its own in the same transaction, so an
    older hubspoke then refuses the file (`JournalTooNew`) rather than misread the new events.
    Opening, reading, and taking leases leave the version as it was. A run resumed by a newer
    hubspoke keeps its recorded schema; its events from then on are of the newer one, and the
    fold reads both.

    Args:
        path: the database file (created with its folder if missing), or ``":memory:"``.
        read_only: open an existing journal for reading only, as the CLI's reading commands
            do: nothing is written, not even the schema, and the file's bytes stay as they
            were (SQLite may make the ``-wal`` and ``-shm`` files WAL readers share). A
            journal in a folder the user cannot write (where SQLite cannot create the
            ``-shm`` file) is read as an immutable file, which is exact when no ``-wal`` file
            holds writes not yet in the database.

    Raises:
        JournalTooNew: the journal was written by a newer hubspoke.
        FileNotFoundError: `read_only` and there is no file at `path`.
        PermissionError: `read_only`, and the journal's ``-wal`` file holds writes that cannot
            be read without creating the ``-shm`` file the folder refuses.
        sqlite3.DatabaseError: the file is not an SQLite database, or (`read_only`) not a
            hubspoke journal.
    """

    schema_version: int
    """The newest journal schema the file holds: `SCHEMA_VERSION` once this hubspoke has written
    a run or events to it."""

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = str(path)
        self.read_only = read_only
        if read_only:
            self._db = _open_read_only(self.path)
        else:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=10000")
            if self.path != ":memory:":
                _switch_to_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        try:
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError:
            self._db.close()
            raise sqlite3.DatabaseError(
                f"{self.path} is not a hubspoke journal (it has no `meta` table)"
            ) from None
        if row is None:
            if not read_only:
                self._db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            self.schema_version = SCHEMA_VERSION
        elif int(row[0]) > SCHEMA_VERSION:
            self._db.close()
            raise JournalTooNew(
                f"{self.path} was written by a newer hubspoke (journal schema {row[0]}, this "
                f"version reads up to {SCHEMA_VERSION}); upgrade hubspoke to read it"
            )
        else:
            self.schema_version = int(row[0])

    def _refuse_if_read_only(self, what: str) -> None:
        if self.read_only:
            raise JournalReadOnly(
                f"cannot {what}: the journal at {self.path} was opened read-only; open it with "
                "SQLiteStore(path) to write (the file and its folder must be writable)"
            )

    # runs ------------------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        self._refuse_if_read_only(f"record run {run.run_id!r}")
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._stamp()
            db.execute(
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
            db.execute("COMMIT")
        except BaseException as e:
            _rollback(db)
            if isinstance(e, sqlite3.IntegrityError) and self.run(run.run_id) is not None:
                raise RunExists(
                    f"run {run.run_id!r} is already in the journal at {self.path}; resume it "
                    "(Foreman.resume, `hubspoke resume`) or start the new run under another id"
                ) from None
            raise
        self.schema_version = max(self.schema_version, SCHEMA_VERSION)

    def _stamp(self) -> None:
        """Within a write transaction: record that the file now holds this version's schema,
        if it held only older ones (never lowering what a newer hubspoke recorded)."""
        if self.schema_version < SCHEMA_VERSION:
            self._db.execute(
                "UPDATE meta SET value=? WHERE key='schema_version' AND CAST(value AS INTEGER) < ?",
                (str(SCHEMA_VERSION), SCHEMA_VERSION),
            )

    def run(self, run_id: str) -> RunRecord | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return None if row is None else decode.run_record(row)

    def runs(self, limit: int = 50) -> list[RunRecord]:
        rows = self._db.execute(
            "SELECT * FROM runs ORDER BY created DESC, run_id LIMIT ?", (limit,)
        ).fetchall()
        return [decode.run_record(r) for r in rows]

    def find_runs(self, prefix: str) -> list[str]:
        rows = self._db.execute(
            "SELECT run_id FROM runs WHERE substr(run_id, 1, length(?1)) = ?1 "
            "ORDER BY created DESC, run_id",
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
        *,
        encoded: Sequence[str] | None = None,
        outbox: Sequence[OutboxEntry] = (),
    ) -> None:
        """Write a batch in one transaction (see `Store.append`).

        Raises:
            DuplicateEvent: an event's `(run_id, seq)` is taken; nothing was written.
            JournalReadOnly: the store was opened read-only.
        """
        self._refuse_if_read_only("append events")
        datas = encoded if encoded is not None else [json.dumps(e.data) for e in events]
        # `_value_`, not `.value`: the enum's `value` is a Python-level property, read per row.
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._stamp()
            _insert(
                db,
                "INSERT INTO events",
                "(?,?,?,?,?,?,?,?,?)",
                [
                    (e.run_id, e.seq, e.ts, e.kind._value_, e.phase, e.role, e.item, e.attempt, d)
                    for e, d in zip(events, datas, strict=True)
                ],
            )
            if artifacts:
                _insert(
                    db,
                    "INSERT OR IGNORE INTO artifacts",
                    "(?,?,?,?,?,?,?,?)",
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
            if outbox:
                db.executemany(
                    "INSERT OR IGNORE INTO outbox VALUES (?,?,?,?,?)",
                    [(o.key, o.run_id, o.item, o.created, json.dumps(o.content)) for o in outbox],
                )
            if status is not None:
                finished = None if status[1] == "running" else time.time()
                db.execute(
                    "UPDATE runs SET status=?, finished=? WHERE run_id=?",
                    (status[1], finished, status[0]),
                )
            db.execute("COMMIT")
        except BaseException as e:
            _rollback(db)
            if isinstance(e, sqlite3.IntegrityError):
                self._raise_if_duplicate(events)
            raise
        self.schema_version = max(self.schema_version, SCHEMA_VERSION)

    def _raise_if_duplicate(self, events: Sequence[Event]) -> None:
        """After a refused batch: raise `DuplicateEvent` for its first taken `(run_id, seq)`."""

        def stored(key: tuple[str, int]) -> bool:
            query = "SELECT 1 FROM events WHERE run_id=? AND seq=?"
            return self._db.execute(query, key).fetchone() is not None

        duplicate = decode.duplicate_event(events, stored, self.path)
        if duplicate is not None:
            raise duplicate from None

    def events(self, run_id: str, after: int = 0) -> list[Event]:
        """The run's events in `seq` order (see `Store.events`); only those past `after`, if
        given (beyond the `Store` interface: for a reader that follows a live run)."""
        rows = self._db.execute(
            f"SELECT {decode.EVENT_COLUMNS} FROM events WHERE run_id=? AND seq>? ORDER BY seq",
            (run_id, after),
        )
        return decode.events(run_id, rows)

    # artifacts and cards ----------------------------------------------------------------------

    def artifact(self, artifact_id: str) -> Artifact | None:
        """The artifact with this id, or None (beyond the `Store` interface: a card's output)."""
        row = self._db.execute(
            "SELECT * FROM artifacts WHERE artifact_id=?", (artifact_id,)
        ).fetchone()
        return None if row is None else decode.artifact(row)

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
        return [decode.artifact(r) for r in rows]

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
        return [decode.card(r) for r in rows]

    def outbox(self, run_id: str | None = None) -> list[OutboxEntry]:
        query = "SELECT key, run_id, item, created, content FROM outbox"
        args: tuple[str, ...] = ()
        if run_id is not None:
            query += " WHERE run_id=?"
            args = (run_id,)
        try:
            rows = self._db.execute(query + " ORDER BY created, key", args).fetchall()
        except sqlite3.OperationalError:
            if self._has_table("outbox"):
                raise
            return []  # a journal older than the outbox, opened read-only: nothing written
        return [decode.outbox_entry(r) for r in rows]

    def _has_table(self, name: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)
        ).fetchone()
        return row is not None

    # leases ----------------------------------------------------------------------------------

    def acquire(self, run_id: str, owner: str) -> str | None:
        """Take the run's lease (see `Store.acquire`). A lease names its process and host; it
        is taken over when that process is on this host and no longer runs."""
        self._refuse_if_read_only(f"take the lease of run {run_id!r}")
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
                    _rollback(db)
                    return f"process {row[2]} on {row[1]}"
            db.execute(
                "INSERT OR REPLACE INTO leases VALUES (?,?,?,?,?)",
                (run_id, owner, host, pid, time.time()),
            )
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise
        return None

    def holder(self, run_id: str) -> str | None:
        """Who is driving the run now (a live process on this host, or one elsewhere), if any."""
        row = self._db.execute("SELECT host, pid FROM leases WHERE run_id=?", (run_id,)).fetchone()
        if row is None or (row[0] == socket.gethostname() and not _pid_alive(int(row[1]))):
            return None
        return f"process {row[1]} on {row[0]}"

    def release(self, run_id: str, owner: str) -> None:
        self._refuse_if_read_only(f"release the lease of run {run_id!r}")
        self._db.execute("DELETE FROM leases WHERE run_id=? AND owner=?", (run_id, owner))

    # item leases -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _write_txn(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): committed when the block ends, rolled
        back if it raises; refused first (`JournalReadOnly`) on a read-only handle."""
        self._refuse_if_read_only(what)
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            _rollback(db)
            raise

    def publish_items(self, run_id: str, items: Sequence[tuple[str, str]]) -> None:
        """Offer items for lease (see `Store.publish_items`)."""
        with self._write_txn(f"publish items of run {run_id!r}") as db:
            row = db.execute("SELECT coalesce(max(published), 0) FROM items").fetchone()
            base = int(row[0])
            db.executemany(
                "INSERT INTO items VALUES (?,?,?,'open',NULL,NULL,0,'[]',NULL,?) "
                "ON CONFLICT (run_id, key) DO UPDATE SET payload=excluded.payload, state='open', "
                "owner=NULL, expires=NULL, tries=0, holders='[]', result=NULL, "
                "published=excluded.published WHERE items.payload <> excluded.payload",
                [(run_id, key, payload, base + n) for n, (key, payload) in enumerate(items, 1)],
            )

    def lease_items(self, run_id: str, owner: str, limit: int, ttl: float) -> list[LeasedItem]:
        """Lease free items (see `Store.lease_items`): one write transaction, so that no two
        handles lease the same item."""
        with self._write_txn(f"lease items of run {run_id!r}") as db:
            now = time.time()
            rows = db.execute(
                "SELECT key, payload, tries, holders FROM items WHERE run_id=? AND "
                "(state='open' OR (state='leased' AND expires < ?)) ORDER BY published LIMIT ?",
                (run_id, now, limit),
            ).fetchall()
            leased = []
            for key, payload, tries, holders in rows:
                before: list[str] = json.loads(holders)
                db.execute(
                    "UPDATE items SET state='leased', owner=?, expires=?, tries=?, holders=? "
                    "WHERE run_id=? AND key=?",
                    (owner, now + ttl, tries + 1, json.dumps([*before, owner]), run_id, key),
                )
                leased.append(LeasedItem(key, payload, tries + 1, tuple(before)))
        return leased

    def renew_items(self, run_id: str, owner: str, keys: Sequence[str], ttl: float) -> list[str]:
        with self._write_txn(f"renew item leases of run {run_id!r}") as db:
            held = []
            for key in keys:
                cur = db.execute(
                    "UPDATE items SET expires=? WHERE run_id=? AND key=? AND owner=? "
                    "AND state='leased'",
                    (time.time() + ttl, run_id, key, owner),
                )
                if cur.rowcount:
                    held.append(key)
        return held

    def finish_items(
        self, run_id: str, owner: str, results: Sequence[tuple[str, str]]
    ) -> list[str]:
        with self._write_txn(f"finish items of run {run_id!r}") as db:
            recorded = []
            for key, result in results:
                cur = db.execute(
                    "UPDATE items SET state='done', result=?, expires=NULL WHERE run_id=? "
                    "AND key=? AND owner=? AND state='leased'",
                    (result, run_id, key, owner),
                )
                if cur.rowcount:
                    recorded.append(key)
        return recorded

    def release_items(self, run_id: str, owner: str, keys: Sequence[str]) -> None:
        with self._write_txn(f"release item leases of run {run_id!r}") as db:
            db.executemany(
                "UPDATE items SET state='open', expires=NULL WHERE run_id=? AND key=? "
                "AND owner=? AND state='leased'",
                [(run_id, key, owner) for key in keys],
            )

    def done_items(self, run_id: str, keys: Sequence[str]) -> dict[str, str]:
        done: dict[str, str] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, result FROM items WHERE run_id=? AND state='done' "
                f"AND key IN ({marks})",
                (run_id, *chunk),
            ).fetchall()
            done.update(dict(rows))
        return done

    def clear_items(self, run_id: str) -> None:
        self._refuse_if_read_only(f"clear the items of run {run_id!r}")
        self._db.execute("DELETE FROM items WHERE run_id=?", (run_id,))

    def integrity_ok(self) -> bool:
        """SQLite's own check of the file (``PRAGMA integrity_check``) passes."""
        row = self._db.execute("PRAGMA integrity_check").fetchone()
        return bool(row and row[0] == "ok")

    def close(self) -> None:
        self._db.close()
