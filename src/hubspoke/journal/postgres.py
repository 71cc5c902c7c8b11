"""The shared store: one PostgreSQL database that foremen on several machines write at once.

Everything `SQLiteStore` keeps, in the tables of one schema (``hubspoke``), created on first use:
runs, events (primary key ``(run_id, seq)``), artifacts, cards, the outbox, run leases and
``meta`` (the journal schema version). Every `append` is one transaction.

Leases. A run's lease is a session-level advisory lock of PostgreSQL held by the connection of
the store that took it, with a row in ``leases`` naming its process and host. The server ends a
session whose client is gone and drops its locks with it, so a lease's holder is known to be
dead when its lock is free: at once for a killed process (its socket closes), and after the
server's TCP keep-alive gives up (`dead_after` seconds, the server's clock) for a machine that
vanished. A holder on this host whose process no longer runs is dead too, as for `SQLiteStore`;
its session may take a moment to end, which `acquire` waits out. A connection that broke never
reconnects by itself: a foreman that lost its session has lost its lease and cannot write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from collections.abc import Sequence
from typing import Any

try:
    import psycopg
    from psycopg import errors as pg_errors
except ImportError as e:  # pragma: no cover - exercised in a process without the extra
    raise ImportError(
        "PostgresStore needs psycopg, which the postgres extra installs: "
        "pip install 'hubspoke[postgres]'"
    ) from e

from hubspoke.artifacts import Artifact
from hubspoke.board import Card
from hubspoke.errors import (
    JournalReadOnly,
    JournalTooNew,
    RunExists,
    StoreUnavailable,
)
from hubspoke.events import SCHEMA_VERSION, Event
from hubspoke.journal import rows as decode
from hubspoke.journal.store import LeasedItem, RunRecord
from hubspoke.journal.urls import redact_url
from hubspoke.outbox import OutboxEntry

__all__ = ["PostgresStore"]


SCHEMA = "hubspoke"
"""The PostgreSQL schema (namespace) that holds hubspoke's tables."""

# Ids and keys sort bytewise ("C"), as in SQLite, whatever the database's collation.
_DDL = """
CREATE SCHEMA IF NOT EXISTS hubspoke;
CREATE TABLE IF NOT EXISTS hubspoke.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS hubspoke.runs (
    run_id text COLLATE "C" PRIMARY KEY, workflow text NOT NULL, ref text, input text NOT NULL,
    options text NOT NULL, parent_run text, parent_item text, schema_version integer NOT NULL,
    created double precision NOT NULL, status text NOT NULL, finished double precision
);
CREATE INDEX IF NOT EXISTS runs_by_created ON hubspoke.runs (created DESC, run_id);
CREATE TABLE IF NOT EXISTS hubspoke.events (
    run_id text COLLATE "C" NOT NULL, seq bigint NOT NULL, ts double precision NOT NULL,
    kind text NOT NULL, phase text, role text, item text, attempt integer, data text NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS hubspoke.artifacts (
    artifact_id text PRIMARY KEY, run_id text COLLATE "C" NOT NULL, phase text NOT NULL,
    role text NOT NULL, item text COLLATE "C" NOT NULL, schema text NOT NULL,
    content text NOT NULL, created double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_by_run ON hubspoke.artifacts (run_id, phase);
CREATE TABLE IF NOT EXISTS hubspoke.cards (
    card_id text PRIMARY KEY, run_id text COLLATE "C" NOT NULL, phase text NOT NULL,
    item text COLLATE "C" NOT NULL, artifact_id text, column_name text NOT NULL,
    title text NOT NULL, risk text NOT NULL, note text NOT NULL, created double precision NOT NULL
);
CREATE INDEX IF NOT EXISTS cards_by_run ON hubspoke.cards (run_id);
CREATE TABLE IF NOT EXISTS hubspoke.outbox (
    key text COLLATE "C" PRIMARY KEY, run_id text COLLATE "C" NOT NULL, item text NOT NULL,
    created double precision NOT NULL, content text NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_run ON hubspoke.outbox (run_id);
CREATE TABLE IF NOT EXISTS hubspoke.leases (
    run_id text PRIMARY KEY, owner text NOT NULL, host text NOT NULL, pid integer NOT NULL,
    backend_pid integer NOT NULL, acquired double precision NOT NULL
);
CREATE TABLE IF NOT EXISTS hubspoke.items (
    run_id text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL, payload text NOT NULL,
    state text NOT NULL, owner text, expires double precision, tries integer NOT NULL,
    holders text[] NOT NULL, result text, published bigserial, PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS items_free ON hubspoke.items (run_id, published)
    WHERE state <> 'done';
"""

LAYOUT = 2
"""The version of the tables below (``meta.postgres_layout``; 2 added ``items``, the leases of
shared runs' items), apart from the journal's event
schema (``meta.schema_version``, as in SQLite): a later layout adds what it needs when a store
first opens an older database."""
_DDL_LOCK = 0x6875627370_6F6B  # "hubspok": serialises schema creation across clients
_RETRIES = 5
"""Attempts at a batch the server aborted for a deadlock or a serialization failure (another
writer's transaction crossed it); the batch is then given again whole."""
_NOW = "extract(epoch FROM clock_timestamp())::double precision"
"""The database's clock, Unix seconds: times the store records itself come from the server,
so that foremen on machines whose clocks differ agree on them."""


_INSERT_ARTIFACTS = (
    "INSERT INTO artifacts SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::text[], %b::text[], %b::float8[]) ON CONFLICT (artifact_id) DO NOTHING"
)
_UPSERT_CARDS = (
    "INSERT INTO cards SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], "
    "%b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::float8[]) "
    "ON CONFLICT (card_id) DO UPDATE SET run_id=excluded.run_id, phase=excluded.phase, "
    "item=excluded.item, artifact_id=excluded.artifact_id, column_name=excluded.column_name, "
    "title=excluded.title, risk=excluded.risk, note=excluded.note, created=excluded.created"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::float8[], "
    "%b::text[]) ON CONFLICT (key) DO NOTHING"
)


def _columns(rows: list[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as `width` column lists (the parameters of an ``unnest`` insert)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * width


def _lock_key(run_id: str) -> int:
    """The advisory lock of a run's lease: 64 bits of a hash of its id (signed, as PostgreSQL
    takes them). Two run ids sharing a key would share a lease: at 2**-64 per pair, none do."""
    digest = hashlib.blake2b(f"hubspoke-lease:{run_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _password(url: str) -> str | None:
    try:
        return psycopg.conninfo.conninfo_to_dict(url).get("password")  # type: ignore[return-value]
    except psycopg.ProgrammingError:
        return None


class PostgresStore:
    """Journal, artifacts, board, outbox and run leases in a PostgreSQL database; a `Store`.

    Several foreman processes, on one machine or many, can share the database: each run is
    driven by the one process holding its lease (see the module's docstring), and
    `(run_id, seq)` is unique, so no event is written twice. Needs the ``hubspoke[postgres]``
    extra (psycopg 3).

    Args:
        url: ``postgresql://user:password@host:port/database`` (or ``postgres://``, or any
            libpq connection string). The password may instead come from ``PGPASSWORD`` or
            ``~/.pgpass``. It is never printed: messages name `path`, the URL without it.
        read_only: read only: no schema is created, every write is refused
            (`JournalReadOnly`), and the session itself is read-only.
        dead_after: seconds after which the server gives up on a client machine that stopped
            answering, ending its session and so its leases (TCP keep-alive, the server's
            clock). A killed process loses its leases at once, whatever this is.
        connect_timeout: seconds to wait for the server to answer at all.

    Raises:
        StoreUnavailable: the server cannot be reached, refused the login, or has no such
            database (the message names `path` and what to check); or, `read_only`, the
            database holds no hubspoke journal.
        JournalTooNew: the database was written by a newer hubspoke.
    """

    schema_version: int
    """The newest journal schema the database holds: `SCHEMA_VERSION` once this hubspoke has
    written a run or events to it."""
    path: str
    """The URL without its password, for messages (what `SQLiteStore.path` is for a file)."""

    def __init__(
        self,
        url: str,
        *,
        read_only: bool = False,
        dead_after: float = 30.0,
        connect_timeout: float = 10.0,
    ) -> None:
        if dead_after < 3:
            raise ValueError(f"dead_after must be at least 3 seconds, not {dead_after!r}")
        self.path = redact_url(url)
        self.read_only = read_only
        self.host = socket.gethostname()
        self._held: set[str] = set()
        """Runs whose lease lock this store's session holds."""
        probe = max(1, int(dead_after / 3))
        try:
            self._db = psycopg.connect(
                url,
                autocommit=True,
                connect_timeout=max(1, round(connect_timeout)),
                application_name="hubspoke",
                keepalives=1,
                keepalives_idle=probe,
                keepalives_interval=probe,
                keepalives_count=2,
            )
        except psycopg.Error as e:
            raise StoreUnavailable(self._unavailable(url, e)) from None
        try:
            self._setup(probe)
        except BaseException:
            self._db.close()
            raise

    def _unavailable(self, url: str, error: Exception) -> str:
        reason = " ".join(str(error).split())
        secret = _password(url)
        if secret:
            reason = reason.replace(secret, "***")
        return (
            f"cannot open the Postgres store {self.path}: {reason}. Check that the server is "
            "running and reachable, that the database exists, and the user name and password "
            "(in the URL, $PGPASSWORD or ~/.pgpass)"
        )

    def _setup(self, probe: int) -> None:
        db = self._db
        # The server probes an idle client too, and ends the session (dropping its leases)
        # when a vanished machine stops answering. Ignored on a Unix socket.
        db.execute(
            "SELECT set_config('tcp_keepalives_idle', %s, false), "
            "set_config('tcp_keepalives_interval', %s, false), "
            "set_config('tcp_keepalives_count', '2', false), "
            "set_config('search_path', 'hubspoke', false)",
            (str(probe), str(probe)),
        )
        row = db.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        self._backend_pid = int(row[0])
        if self.read_only:
            db.execute("SET default_transaction_read_only = on")
            if db.execute("SELECT to_regclass('hubspoke.meta')").fetchone() in (None, (None,)):
                raise StoreUnavailable(
                    f"the Postgres database {self.path} holds no hubspoke journal (no "
                    "`hubspoke` schema); start a run with --db pointing at it first"
                )
        elif self._layout() < LAYOUT:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
                db.execute(_DDL)
                db.execute(
                    "INSERT INTO meta VALUES ('schema_version', %s), ('postgres_layout', %s) "
                    "ON CONFLICT (key) DO NOTHING",
                    (str(SCHEMA_VERSION), str(LAYOUT)),
                )
                db.execute(
                    "UPDATE meta SET value=%s WHERE key='postgres_layout' AND value::integer < %s",
                    (str(LAYOUT), LAYOUT),
                )
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = SCHEMA_VERSION if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise JournalTooNew(
                f"{self.path} was written by a newer hubspoke (journal schema {version}, this "
                f"version reads up to {SCHEMA_VERSION}); upgrade hubspoke to read it"
            )
        self.schema_version = version

    def _layout(self) -> int:
        """The version of the tables the database holds (``meta.postgres_layout``); 0 when it
        holds none. Opening a database whose tables are current runs no DDL (which needs the
        right to create in the database) and takes no lock."""
        if self._db.execute("SELECT to_regclass('hubspoke.meta')").fetchone() in (None, (None,)):
            return 0
        row = self._db.execute("SELECT value FROM meta WHERE key='postgres_layout'").fetchone()
        return 0 if row is None else int(row[0])

    def _refuse_if_read_only(self, what: str) -> None:
        if self.read_only:
            raise JournalReadOnly(
                f"cannot {what}: the store at {self.path} was opened read-only; open it with "
                "PostgresStore(url) to write"
            )

    def _stamp(self) -> None:
        """Within a write transaction: record that the database now holds this version's
        schema, if it held only older ones (never lowering what a newer hubspoke recorded)."""
        if self.schema_version < SCHEMA_VERSION:
            self._db.execute(
                "UPDATE meta SET value=%s WHERE key='schema_version' AND value::integer < %s",
                (str(SCHEMA_VERSION), SCHEMA_VERSION),
            )

    # runs ------------------------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        """Record a new run (see `Store.create_run`).

        Raises:
            RunExists: the run id is taken; the stored run is unchanged.
            JournalReadOnly: the store was opened read-only.
        """
        self._refuse_if_read_only(f"record run {run.run_id!r}")
        try:
            with self._db.transaction():
                self._stamp()
                self._db.execute(
                    "INSERT INTO runs VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
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
        except pg_errors.UniqueViolation:
            raise RunExists(
                f"run {run.run_id!r} is already in the journal at {self.path}; resume it "
                "(Foreman.resume, `hubspoke resume`) or start the new run under another id"
            ) from None
        self.schema_version = max(self.schema_version, SCHEMA_VERSION)

    def run(self, run_id: str) -> RunRecord | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id=%s", (run_id,)).fetchone()
        return None if row is None else decode.run_record(row)

    def runs(self, limit: int = 50) -> list[RunRecord]:
        rows = self._db.execute(
            "SELECT * FROM runs ORDER BY created DESC, run_id LIMIT %s", (limit,)
        ).fetchall()
        return [decode.run_record(r) for r in rows]

    def find_runs(self, prefix: str) -> list[str]:
        rows = self._db.execute(
            "SELECT run_id FROM runs WHERE left(run_id, char_length(%(p)s)) = %(p)s "
            "ORDER BY created DESC, run_id",
            {"p": prefix},
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
        """Write a batch in one transaction (see `Store.append`). A batch the server aborts
        for a deadlock with another writer is given again, up to a few times.

        Raises:
            DuplicateEvent: an event's `(run_id, seq)` is taken; nothing was written.
            JournalReadOnly: the store was opened read-only.
            psycopg.OperationalError: the connection broke (nothing is retried on another).
        """
        self._refuse_if_read_only("append events")
        datas = encoded if encoded is not None else [json.dumps(e.data) for e in events]
        rows = [
            (e.run_id, e.seq, e.ts, e.kind.value, e.phase, e.role, e.item, e.attempt, d)
            for e, d in zip(events, datas, strict=True)
        ]
        for attempt in range(_RETRIES):
            try:
                self._write(rows, artifacts, cards, status, outbox)
                break
            except pg_errors.UniqueViolation:
                self._raise_if_duplicate(events)
                raise
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == _RETRIES - 1:
                    raise
        self.schema_version = max(self.schema_version, SCHEMA_VERSION)

    def _write(
        self,
        rows: list[tuple[Any, ...]],
        artifacts: Sequence[Artifact],
        cards: Sequence[Card],
        status: tuple[str, str] | None,
        outbox: Sequence[OutboxEntry],
    ) -> None:
        # Events are copied (COPY, formatted in C); the other tables' rows go in one statement
        # each, as binary columns (`unnest` of arrays), because they need ON CONFLICT. A row
        # per statement would cost a bind and an execute each; text arrays, a regex per value.
        db = self._db
        with db.transaction(), db.cursor() as cur:
            self._stamp()
            if rows:
                with cur.copy("COPY events FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            if artifacts:
                cur.execute(
                    _INSERT_ARTIFACTS,
                    _columns(
                        [
                            (
                                a.id,
                                a.run_id,
                                a.phase,
                                a.role,
                                a.item,
                                a.schema,
                                a.content_json
                                if a.content_json is not None
                                else json.dumps(a.content),
                                a.created,
                            )
                            for a in artifacts
                        ],
                        8,
                    ),
                )
            if cards:
                # One statement may not update a row twice: the batch's last card of an id wins,
                # as it would written one by one.
                last = {c.id: c for c in cards}
                cur.execute(
                    _UPSERT_CARDS,
                    _columns(
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
                            for c in last.values()
                        ],
                        10,
                    ),
                )
            if outbox:
                cur.execute(
                    _INSERT_OUTBOX,
                    _columns(
                        [
                            (o.key, o.run_id, o.item, o.created, json.dumps(o.content))
                            for o in outbox
                        ],
                        5,
                    ),
                )
            if status is not None:
                finished = "NULL" if status[1] == "running" else _NOW
                cur.execute(
                    f"UPDATE runs SET status=%s, finished={finished} WHERE run_id=%s",
                    (status[1], status[0]),
                )

    def _raise_if_duplicate(self, events: Sequence[Event]) -> None:
        """After a refused batch: raise `DuplicateEvent` for its first taken `(run_id, seq)`."""
        stored = {
            (r[0], int(r[1]))
            for r in self._db.execute(
                "SELECT e.run_id, e.seq FROM events e "
                "JOIN unnest(%s::text[], %s::bigint[]) AS b(run_id, seq) "
                "ON e.run_id = b.run_id AND e.seq = b.seq",
                ([e.run_id for e in events], [e.seq for e in events]),
            ).fetchall()
        }
        duplicate = decode.duplicate_event(events, stored.__contains__, self.path)
        if duplicate is not None:
            raise duplicate from None

    def events(self, run_id: str, after: int = 0) -> list[Event]:
        """The run's events in `seq` order (see `Store.events`); only those past `after`, if
        given (beyond the `Store` interface: for a reader that follows a live run)."""
        rows = self._db.execute(
            f"SELECT {decode.EVENT_COLUMNS} FROM events WHERE run_id=%s AND seq>%s ORDER BY seq",
            (run_id, after),
        )
        return decode.events(run_id, rows)

    # artifacts and cards ----------------------------------------------------------------------

    def artifact(self, artifact_id: str) -> Artifact | None:
        """The artifact with this id, or None (beyond the `Store` interface: a card's output)."""
        row = self._db.execute(
            "SELECT * FROM artifacts WHERE artifact_id=%s", (artifact_id,)
        ).fetchone()
        return None if row is None else decode.artifact(row)

    def artifacts(self, run_id: str, phase: str | None = None) -> list[Artifact]:
        rows = self._db.execute(
            "SELECT * FROM artifacts WHERE run_id=%s AND (%s::text IS NULL OR phase=%s) "
            "ORDER BY created, item",
            (run_id, phase, phase),
        ).fetchall()
        return [decode.artifact(r) for r in rows]

    def artifact_texts(self, run_id: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT artifact_id, content FROM artifacts WHERE run_id=%s", (run_id,)
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def cards(self, run_id: str | None = None) -> list[Card]:
        rows = self._db.execute(
            "SELECT * FROM cards WHERE %s::text IS NULL OR run_id=%s ORDER BY created, item",
            (run_id, run_id),
        ).fetchall()
        return [decode.card(r) for r in rows]

    def outbox(self, run_id: str | None = None) -> list[OutboxEntry]:
        rows = self._db.execute(
            "SELECT key, run_id, item, created, content FROM outbox "
            "WHERE %s::text IS NULL OR run_id=%s ORDER BY created, key",
            (run_id, run_id),
        ).fetchall()
        return [decode.outbox_entry(r) for r in rows]

    # leases ----------------------------------------------------------------------------------

    def _lease(self, run_id: str) -> tuple[str, str, int, int] | None:
        """The lease row: (owner, host, pid, backend_pid), or None."""
        row = self._db.execute(
            "SELECT owner, host, pid, backend_pid FROM leases WHERE run_id=%s", (run_id,)
        ).fetchone()
        return None if row is None else (row[0], row[1], int(row[2]), int(row[3]))

    @staticmethod
    def _describe(lease: tuple[str, str, int, int]) -> str:
        return f"process {lease[2]} on {lease[1]}"

    def _dead_here(self, lease: tuple[str, str, int, int]) -> bool:
        """The lease's process ran on this host and no longer runs."""
        return lease[1] == self.host and not _pid_alive(lease[2])

    def _take_lock(self, run_id: str, wait: float) -> bool:
        """Take the run's advisory lock for this session, waiting up to `wait` seconds."""
        key = _lock_key(run_id)
        if wait <= 0:
            row = self._db.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            return bool(row and row[0])
        try:
            with self._db.transaction():
                self._db.execute(
                    "SELECT set_config('lock_timeout', %s, true)", (f"{round(wait * 1000)}ms",)
                )
                self._db.execute("SELECT pg_advisory_lock(%s)", (key,))
        except pg_errors.LockNotAvailable:
            return False
        return True

    def _outwait_dead_session(
        self, run_id: str, lease: tuple[str, str, int, int] | None, patience: float = 10.0
    ) -> bool:
        """Take the lock of a lease whose process on this host is gone while its session ends
        (the server notices the closed socket a moment later); False once another process took
        the lease meanwhile, or after `patience` seconds."""
        for _ in range(round(patience / 0.1)):
            if lease is None or not self._dead_here(lease):
                return False
            if self._take_lock(run_id, 0.1):
                return True
            lease = self._lease(run_id)
        return False

    def acquire(self, run_id: str, owner: str) -> str | None:
        """Take the run's lease (see `Store.acquire`). A lease names its process and host; it
        is taken over once its holder's database session has ended, or its process ran on this
        host and no longer runs (then its ending session is waited for, up to 10 s)."""
        self._refuse_if_read_only(f"take the lease of run {run_id!r}")
        lease = self._lease(run_id)
        if run_id in self._held:
            if lease is not None and lease[0] != owner and lease[3] == self._backend_pid:
                return self._describe(lease)  # another owner in this very process
        elif not self._take_lock(run_id, 0) and not self._outwait_dead_session(run_id, lease):
            lease = self._lease(run_id) or lease
            return self._describe(lease) if lease else "another process (taking it now)"
        self._held.add(run_id)
        try:
            self._db.execute(
                f"INSERT INTO leases VALUES (%s,%s,%s,%s,%s,{_NOW}) ON CONFLICT (run_id) DO "
                "UPDATE SET owner=excluded.owner, host=excluded.host, pid=excluded.pid, "
                "backend_pid=excluded.backend_pid, acquired=excluded.acquired",
                (run_id, owner, self.host, os.getpid(), self._backend_pid),
            )
        except BaseException:
            self._unlock(run_id)
            raise
        return None

    def _unlock(self, run_id: str) -> None:
        if run_id in self._held:
            self._held.discard(run_id)
            self._db.execute("SELECT pg_advisory_unlock(%s)", (_lock_key(run_id),))

    def holder(self, run_id: str) -> str | None:
        """Who is driving the run now, if anyone: the lease's process, while its database
        session holds the lease's lock (and, on this host, while the process runs)."""
        lease = self._lease(run_id)
        if lease is None:
            return None
        if lease[3] == self._backend_pid:
            return self._describe(lease) if run_id in self._held else None
        if self._dead_here(lease):
            return None
        key = _lock_key(run_id) & 0xFFFF_FFFF_FFFF_FFFF
        row = self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype='advisory' AND granted "
            "AND pid=%s AND classid::bigint=%s AND objid::bigint=%s AND objsubid=1 "
            "AND database=(SELECT oid FROM pg_database WHERE datname=current_database()))",
            (lease[3], key >> 32, key & 0xFFFF_FFFF),
        ).fetchone()
        return self._describe(lease) if row and row[0] else None

    def release(self, run_id: str, owner: str) -> None:
        """Give up `owner`'s lease (see `Store.release`). On a connection that broke there is
        nothing to give up: the lease ended with the session, and the error that broke it is
        the one to report, so this does nothing."""
        self._refuse_if_read_only(f"release the lease of run {run_id!r}")
        if self._db.closed or self._db.broken:
            self._held.clear()
            return
        gone = self._db.execute(
            "DELETE FROM leases WHERE run_id=%s AND owner=%s AND backend_pid=%s RETURNING 1",
            (run_id, owner, self._backend_pid),
        ).fetchone()
        if gone is not None:
            self._unlock(run_id)

    # item leases -----------------------------------------------------------------------------

    def publish_items(self, run_id: str, items: Sequence[tuple[str, str]]) -> None:
        """Offer items for lease (see `Store.publish_items`), in one statement."""
        self._refuse_if_read_only(f"publish items of run {run_id!r}")
        if not items:
            return
        self._db.execute(
            "INSERT INTO items (run_id, key, payload, state, tries, holders) "
            "SELECT %s, k, p, 'open', 0, '{}' FROM unnest(%s::text[], %s::text[]) "
            "WITH ORDINALITY AS b(k, p, n) ORDER BY n "
            "ON CONFLICT (run_id, key) DO UPDATE SET payload=excluded.payload, state='open', "
            "owner=NULL, expires=NULL, tries=0, holders='{}', result=NULL, "
            "published=excluded.published WHERE items.payload <> excluded.payload",
            (run_id, [k for k, _ in items], [p for _, p in items]),
        )

    def lease_items(self, run_id: str, owner: str, limit: int, ttl: float) -> list[LeasedItem]:
        """Lease free items (see `Store.lease_items`): one ``UPDATE`` of rows picked ``FOR
        UPDATE SKIP LOCKED``, so concurrent leasers never wait for, nor take, each other's."""
        self._refuse_if_read_only(f"lease items of run {run_id!r}")
        rows = self._db.execute(
            f"UPDATE items i SET state='leased', owner=%(o)s, expires={_NOW} + %(t)s, "
            "tries=i.tries + 1, holders=array_append(i.holders, %(o)s::text) "
            "FROM (SELECT key FROM items WHERE run_id=%(r)s AND (state='open' OR "
            f"(state='leased' AND expires < {_NOW})) ORDER BY published LIMIT %(n)s "
            "FOR UPDATE SKIP LOCKED) free WHERE i.run_id=%(r)s AND i.key=free.key "
            "RETURNING i.key, i.payload, i.tries, i.holders, i.published",
            {"o": owner, "t": ttl, "r": run_id, "n": limit},
        ).fetchall()
        rows.sort(key=lambda r: int(r[4]))
        return [LeasedItem(r[0], r[1], int(r[2]), tuple(r[3][:-1])) for r in rows]

    def renew_items(self, run_id: str, owner: str, keys: Sequence[str], ttl: float) -> list[str]:
        self._refuse_if_read_only(f"renew item leases of run {run_id!r}")
        rows = self._db.execute(
            f"UPDATE items SET expires={_NOW} + %s WHERE run_id=%s AND key = ANY(%s) "
            "AND owner=%s AND state='leased' RETURNING key",
            (ttl, run_id, list(keys), owner),
        ).fetchall()
        held = {r[0] for r in rows}
        return [k for k in keys if k in held]

    def finish_items(
        self, run_id: str, owner: str, results: Sequence[tuple[str, str]]
    ) -> list[str]:
        self._refuse_if_read_only(f"finish items of run {run_id!r}")
        if not results:
            return []
        rows = self._db.execute(
            "UPDATE items i SET state='done', result=b.result, expires=NULL "
            "FROM unnest(%s::text[], %s::text[]) AS b(key, result) "
            "WHERE i.run_id=%s AND i.key=b.key AND i.owner=%s AND i.state='leased' "
            "RETURNING i.key",
            ([k for k, _ in results], [r for _, r in results], run_id, owner),
        ).fetchall()
        recorded = {r[0] for r in rows}
        return [k for k, _ in results if k in recorded]

    def release_items(self, run_id: str, owner: str, keys: Sequence[str]) -> None:
        self._refuse_if_read_only(f"release item leases of run {run_id!r}")
        self._db.execute(
            "UPDATE items SET state='open', expires=NULL WHERE run_id=%s AND key = ANY(%s) "
            "AND owner=%s AND state='leased'",
            (run_id, list(keys), owner),
        )

    def done_items(self, run_id: str, keys: Sequence[str]) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT key, result FROM items WHERE run_id=%s AND state='done' AND key = ANY(%s)",
            (run_id, list(keys)),
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def clear_items(self, run_id: str) -> None:
        self._refuse_if_read_only(f"clear the items of run {run_id!r}")
        self._db.execute("DELETE FROM items WHERE run_id=%s", (run_id,))

    def close(self) -> None:
        """Close the connection; the leases it held end with it (given up here, before the
        connection closes, so that they are free when this returns: the server would end the
        session a moment later)."""
        if self._held and not (self._db.closed or self._db.broken):
            with contextlib.suppress(psycopg.Error):
                self._db.execute("SELECT pg_advisory_unlock_all()")
        self._held.clear()
        self._db.close()
