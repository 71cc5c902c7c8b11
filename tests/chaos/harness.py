"""Kill a run with SIGKILL at seeded moments, resume it, and check that nothing was lost.

`run_chaos` first runs the chaos workflow once without a crash (the baseline), then again with
the same seed, killing the process each time the journal reaches the next kill point and
re-launching it with `Foreman.resume`, until the run completes. Kill points are numbers of
journal events reached, counting the decisions a resume never repeats (all events but
run.resumed, phase.started and dispatch.started); each is drawn from the seed around an even
share of the decisions left, so the kills spread over the whole run (most of it is the
fan-out). Each kill lands right after the count reaches its point, after no delay, a tiny random
one or a small one, so some land in the middle of the next journal write. The journal is polled
through a read-only SQLite connection, or a PostgreSQL one when the run's store is a
``postgresql://`` URL (`run_chaos(..., db=URL)`; the uncrashed run stays in an SQLite file).

After every kill it records what was durable; at the end it checks that nothing is lost
(docs/reliability.md):

- every dispatch whose end was journaled before a kill never ran again, and each order was
  shipped exactly once (`SideEffects`, keyed by the dispatch's `ctx.attempt_key`);
- no item was accepted twice, and no accepted item was dispatched after a `run.resumed`;
- every run's journal is numbered 1..n with no gap or duplicate, and the database is intact;
- the final artifacts and cards equal those of the uncrashed run, item by item.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubspoke.journal.location import is_postgres_url, open_store
from hubspoke.testing import SideEffects

ROOT = Path(__file__).resolve().parents[2]
RUN_ID = "run_chaos"


@dataclass(slots=True)
class Durable:
    """What the journal and the side-effects ledger held right after one kill."""

    kill: int
    events: int
    finished: set[str]
    """Idempotency keys of the dispatches whose end was journaled."""
    attempts: dict[str, int]
    """Side effects attempted so far, by the dispatch's attempt key."""


@dataclass(slots=True)
class ChaosReport:
    items: int
    seed: int
    kill_points: list[int]
    """Where each kill landed, in decisions made."""
    kills: int = 0
    launches: int = 0
    baseline_events: int = 0
    decisions: int = 0
    """Events of the uncrashed run that a resume never repeats: the scale of kill points."""
    events: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    joined: int = 0
    """Shared runs: items a joiner's shard ran (`run_shared_chaos`)."""
    taken_over: int = 0
    """Shared runs: items that ran in more than one shard (their holder was killed)."""

    def summary(self) -> str:
        verdict = "OK" if not self.problems else f"{len(self.problems)} PROBLEMS"
        return (
            f"chaos: {self.items} items, seed {self.seed}: {self.kills} kills over "
            f"{self.launches} processes; journal {self.events} events (uncrashed "
            f"{self.baseline_events}); {self.seconds:.1f}s; {verdict}"
        )


# processes ----------------------------------------------------------------------------------


def launch(args: Sequence[str], effects: Path, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start `python -m tests.chaos.runner ARGS` from the repository root."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.runner", *args],
            cwd=ROOT,
            env={**os.environ, "CHAOS_EFFECTS": str(effects), **env},
            stdout=out,
            stderr=out,
        )


def finish(proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait for a process that must end by itself, successfully."""
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the run did not finish within {timeout:g}s:\n{tail(log)}") from None
    if code != 0:
        raise AssertionError(f"the runner exited with {code}:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# A resume repeats these (it starts the run, its current phase and the dispatches in flight
# again); every other event is a decision made once. Kill points count decisions, so that they
# spread over the whole run however many resumes came before.
REPEATED = ("run.resumed", "phase.started", "dispatch.started")
_PROGRESS = "SELECT COUNT(*) FROM events WHERE run_id=? AND kind NOT IN (?,?,?)"


Location = Path | str
"""Where a chaos run's store is: an SQLite file, or a ``postgresql://`` URL."""


class _Postgres:
    """Plain SQL on a Postgres store's tables (schema ``hubspoke``), autocommit, read-only."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("SET default_transaction_read_only = on")
        self.conn.execute("SET search_path TO hubspoke")

    def rows(self, query: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(query.replace("?", "%s"), tuple(args)).fetchall()


class Watcher:
    """Reads the run's progress through a read-only connection (no locks held)."""

    def __init__(self, db: Location) -> None:
        self.db = db
        self._conn: sqlite3.Connection | _Postgres | None = None

    def count(self) -> int:
        if isinstance(self.db, str) and is_postgres_url(self.db):
            return self._count_postgres(self.db)
        path = Path(self.db)
        try:
            if self._conn is None:
                if not path.exists():
                    return 0
                self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
            assert isinstance(self._conn, sqlite3.Connection)
            row = self._conn.execute(_PROGRESS, (RUN_ID, *REPEATED)).fetchone()
            return int(row[0] or 0)
        except sqlite3.OperationalError:  # not created yet, or busy for a moment
            return 0

    def _count_postgres(self, url: str) -> int:
        import psycopg

        if self._conn is None:
            self._conn = _Postgres(url)
        assert isinstance(self._conn, _Postgres)
        try:
            return int(self._conn.rows(_PROGRESS, (RUN_ID, *REPEATED))[0][0] or 0)
        except psycopg.errors.UndefinedTable:  # the first process has not made the schema yet
            return 0

    def close(self) -> None:
        if self._conn is not None:
            (self._conn.conn if isinstance(self._conn, _Postgres) else self._conn).close()
            self._conn = None


def kill_at(
    proc: subprocess.Popen[bytes], watcher: Watcher, target: int, delay: float, timeout: float
) -> bool:
    """SIGKILL `proc` once the run has made `target` decisions (plus `delay` seconds).

    Returns False if the process ended by itself first.
    """
    deadline = time.monotonic() + timeout
    while watcher.count() < target:
        if proc.poll() is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"no progress to {target} events within {timeout:g}s")
        time.sleep(0.0005)
    if delay:
        time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


# reading what is durable ---------------------------------------------------------------------


def read_events(db: Location) -> list[tuple[str, int, str, str | None, str | None, int | None]]:
    """(run_id, seq, kind, item, role, attempt) of every event of every run, in order."""
    query = "SELECT run_id, seq, kind, item, role, attempt FROM events ORDER BY run_id, seq"
    if isinstance(db, str) and is_postgres_url(db):
        reader = _Postgres(db)
        try:
            return [(r[0], int(r[1]), r[2], r[3], r[4], r[5]) for r in reader.rows(query)]
        finally:
            reader.conn.close()
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute(query).fetchall()


def attempts_by_key(effects: Path) -> dict[str, int]:
    if not effects.exists():
        return {}
    with sqlite3.connect(effects, timeout=10) as conn:
        try:
            rows = conn.execute("SELECT key, COUNT(*) FROM attempts GROUP BY key").fetchall()
        except sqlite3.OperationalError:  # killed before the first side effect was set up
            return {}
    return {str(k): int(n) for k, n in rows}


def attempt_key(item: str | None, role: str | None, attempt: int | None) -> str:
    """The dispatch's `ctx.attempt_key`, which the chaos workflow records its side effect with."""
    return f"{RUN_ID}:{item}:{role}:{attempt}"


def snapshot(kill: int, db: Location, effects: Path) -> Durable:
    events = [e for e in read_events(db) if e[0] == RUN_ID]
    finished = {
        attempt_key(item, role, attempt)
        for _, _, kind, item, role, attempt in events
        if kind == "dispatch.finished"
    }
    return Durable(kill, len(events), finished, attempts_by_key(effects))


Entries = list[tuple[str, ...]]


def outputs(db: Location) -> tuple[Entries, Entries, str]:
    """Artifacts and cards compared by item (ids and times differ between runs), and status."""
    store = open_store(db)
    try:
        record = store.run(RUN_ID)
        artifacts: Entries = sorted(
            (a.phase, a.item, a.role, json.dumps(a.content, sort_keys=True))
            for a in store.artifacts(RUN_ID)
        )
        cards: Entries = sorted(
            (c.phase, c.item, c.column.value, c.title, c.note, c.risk) for c in store.cards(RUN_ID)
        )
        return artifacts, cards, record.status if record else "missing"
    finally:
        store.close()


# checks -------------------------------------------------------------------------------------


def check_journal(db: Location) -> list[str]:
    problems: list[str] = []
    by_run: dict[str, list[int]] = {}
    for run_id, seq, *_ in read_events(db):
        by_run.setdefault(run_id, []).append(seq)
    for run_id, seqs in by_run.items():
        if seqs != list(range(1, len(seqs) + 1)):
            problems.append(f"{run_id}: journal seq is not 1..{len(seqs)} without gaps")
    if isinstance(db, str) and is_postgres_url(db):
        return problems  # the server keeps its own files whole
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
    if verdict != "ok":
        problems.append(f"integrity_check: {verdict}")
    return problems


def check_final(
    db: Location, effects: Path, items: int, durable: list[Durable], baseline: Location
) -> list[str]:
    problems = check_journal(db)
    if not (isinstance(db, str) and is_postgres_url(db)):
        store = open_store(db)
        if not store.integrity_ok():  # type: ignore[union-attr]  # an SQLiteStore here
            problems.append("SQLiteStore.integrity_ok() is False")
        store.close()
    events = [e for e in read_events(db) if e[0] == RUN_ID]

    accepted = Counter(item for _, _, kind, item, _, _ in events if kind == "item.accepted")
    problems += [f"{item} accepted {n} times" for item, n in accepted.items() if n > 1]

    finished = Counter(
        attempt_key(item, role, attempt)
        for _, _, kind, item, role, attempt in events
        if kind == "dispatch.finished"
    )
    problems += [f"dispatch {key} finished {n} times" for key, n in finished.items() if n > 1]

    done: set[str] = set()
    for _, seq, kind, item, _, _ in events:
        if kind == "run.resumed":
            later = {e[3] for e in events if e[1] > seq and e[2] == "dispatch.started" and e[3]}
            again = sorted(later & done)
            problems += [f"{i} dispatched again after run.resumed at {seq}" for i in again]
        elif kind == "item.accepted" and item is not None:
            done.add(item)

    side = SideEffects(effects)
    if side.count() != items:
        problems.append(f"{side.count()} orders shipped, expected {items} (each exactly once)")
    recorded = side.keys()  # the ledger's attempt keys, one per shipment
    shipped = Counter(key.split(":")[1] for key in recorded)
    problems += [f"{item} shipped {n} times" for item, n in shipped.items() if n > 1]
    final_attempts = attempts_by_key(effects)
    for snap in durable:
        for key in snap.finished:
            then, now = snap.attempts.get(key, 0), final_attempts.get(key, 0)
            if now != then:
                problems.append(
                    f"{key} had finished before kill {snap.kill} but ran again "
                    f"({then} → {now} side-effect attempts)"
                )

    got_artifacts, got_cards, status = outputs(db)
    want_artifacts, want_cards, want_status = outputs(baseline)
    if status != want_status:
        problems.append(f"status {status}, uncrashed run {want_status}")
    if got_artifacts != want_artifacts:
        diff = set(got_artifacts) ^ set(want_artifacts)
        problems.append(f"artifacts differ from the uncrashed run in {len(diff)} entries")
    if got_cards != want_cards:
        problems.append(f"cards differ from the uncrashed run: {set(got_cards) ^ set(want_cards)}")
    return problems


# the harness ----------------------------------------------------------------------------------


TAIL = 12
"""The last decisions of a run (its report phase and end) pass in a few milliseconds: only the
final kill aims there, so that an earlier one cannot overshoot the end of the run."""


def next_kill(
    rng: random.Random, reached: int, decisions: int, kills_left: int, overshoot: float
) -> tuple[int, float]:
    """The next kill point and its delay (none, tiny or small), drawn from the seeded `rng`.

    Points are spread over what is left of the run: around an even share of the decisions
    still to come, less the `overshoot` seen so far (the decisions a process makes past its
    point before the kill lands). A plan fixed up front would run out of run before it ran
    out of kills.
    """
    end = decisions if kills_left == 1 else max(reached + 1, decisions - TAIL)
    share = max(1.0, (end - reached) / (kills_left + 1) - overshoot)
    point = min(end, reached + max(1, round(rng.uniform(0.5, 1.5) * share)))
    delay = rng.choice((0.0, rng.uniform(0, 0.002), rng.uniform(0.002, 0.008)))
    return point, delay


def run_chaos(
    workdir: Path,
    *,
    items: int = 200,
    kills: int = 24,
    seed: int = 1,
    timeout: float = 120.0,
    say: Callable[[str], None] | None = None,
    db: str | None = None,
) -> ChaosReport:
    """Crash and resume one run `kills` times; return what was checked and any problem found.

    `db` is where the crashed run's store is (an empty ``postgresql://`` database, say); an
    SQLite file in `workdir` by default. The uncrashed run is always in an SQLite file."""
    say = say or (lambda _: None)
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "runner.log"

    base_db, base_effects = workdir / "baseline.db", workdir / "baseline-effects.db"
    say(f"uncrashed run: {items} items, seed {seed}")
    finish(
        launch(["start", str(base_db), RUN_ID, str(items), str(seed)], base_effects, log),
        log,
        timeout,
    )
    baseline = read_events(base_db)
    decisions = sum(e[2] not in REPEATED for e in baseline)

    rng = random.Random(seed)
    report = ChaosReport(items, seed, [], baseline_events=len(baseline), decisions=decisions)
    chaos_db: Location = db if db is not None else workdir / "chaos.db"
    effects = workdir / "chaos-effects.db"
    watcher = Watcher(chaos_db)
    durable: list[Durable] = []
    args = ["start", str(chaos_db), RUN_ID, str(items), str(seed)]
    overshoot = 0.0
    while report.kills < kills:
        point, delay = next_kill(rng, watcher.count(), decisions, kills - report.kills, overshoot)
        proc = launch(args, effects, log)
        report.launches += 1
        if not kill_at(proc, watcher, point, delay, timeout):
            finish(proc, log, timeout)  # the run ended before this point: no more kills
            break
        report.kills += 1
        reached = watcher.count()
        overshoot += (reached - point - overshoot) / report.kills  # running mean
        report.kill_points.append(reached)
        durable.append(snapshot(report.kills, chaos_db, effects))
        report.problems += [f"after kill {report.kills}: {p}" for p in check_journal(chaos_db)]
        say(
            f"kill {report.kills}/{kills} after decision {reached} of {decisions} "
            f"(point {point}, event {durable[-1].events}, +{delay * 1000:.1f}ms)"
        )
        args = ["resume", str(chaos_db), RUN_ID]
    else:
        proc = launch(args, effects, log)
        report.launches += 1
        finish(proc, log, timeout)
    watcher.close()
    report.events = len(read_events(chaos_db))
    report.problems += check_final(chaos_db, effects, items, durable, base_db)
    report.seconds = time.monotonic() - started
    return report


def take_over(workdir: Path, db: Location, *, items: int = 120, seed: int = 5) -> dict[str, Any]:
    """Two foreman processes on one store: B is refused while A drives the run, and takes it
    over once A is killed mid-run.

    Returns B's exit code and output while A ran (`refused`), then after A's death (`resumed`),
    A's pid, and the finished run's checks against an uncrashed run in an SQLite file.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log, effects = workdir / "takeover.log", workdir / "takeover-effects.db"
    base_db = workdir / "takeover-baseline.db"
    finish(
        launch(
            ["start", str(base_db), RUN_ID, str(items), str(seed)],
            workdir / "takeover-baseline-effects.db",
            log,
        ),
        log,
        120,
    )
    # A runs slowly enough that B arrives in the middle of the fan-out.
    first = launch(["start", str(db), RUN_ID, str(items), str(seed)], effects, log,
                   CHAOS_DELAY_SCALE="3")  # fmt: skip
    watcher = Watcher(db)
    try:
        reached = 0
        deadline = time.monotonic() + 60
        while reached < 30:
            assert first.poll() is None, f"A ended before B could try:\n{tail(log)}"
            assert time.monotonic() < deadline, f"A made no progress:\n{tail(log)}"
            time.sleep(0.001)
            reached = watcher.count()
        out = workdir / "second-refused.log"
        second = launch(["resume", str(db), RUN_ID], effects, out)
        refused = {"code": second.wait(120), "output": out.read_text(errors="replace")}
        assert first.poll() is None, f"A ended while B tried:\n{tail(log)}"
        first.send_signal(signal.SIGKILL)
        first.wait()
        killed_at = watcher.count()
    finally:
        watcher.close()
    out = workdir / "second-resumed.log"
    second = launch(["resume", str(db), RUN_ID], effects, out)
    resumed = {"code": second.wait(120), "output": out.read_text(errors="replace")}
    return {
        "first_pid": first.pid,
        "killed_at": killed_at,
        "refused": refused,
        "resumed": resumed,
        "problems": check_final(db, effects, items, [], base_db),
        "events": read_events(db),
    }


def race_resumers(
    workdir: Path, *, items: int = 200, seed: int = 3, db: str | None = None
) -> dict[str, Any]:
    """Kill a run early, then let two processes resume it at the same instant.

    `db` is the run's store (a ``postgresql://`` URL, say); an SQLite file in `workdir` by
    default. Returns each resumer's exit code and output, and the finished journal's checks.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    log, effects = workdir / "race.log", workdir / "race-effects.db"
    db_at: Location = db if db is not None else workdir / "race.db"
    proc = launch(["start", str(db_at), RUN_ID, str(items), str(seed)], effects, log)
    watcher = Watcher(db_at)
    assert kill_at(proc, watcher, 40, 0.0, 60), tail(log)
    watcher.close()
    go = workdir / "go"
    resumers = []
    for name in ("a", "b"):
        ready = workdir / f"ready-{name}"
        out = workdir / f"resumer-{name}.log"
        resumers.append(
            (
                out,
                ready,
                launch(
                    ["resume", str(db_at), RUN_ID, str(ready), str(go)],
                    effects,
                    out,
                    CHAOS_DELAY_SCALE="3",  # long enough that the loser arrives mid-run
                ),
            )
        )
    deadline = time.monotonic() + 60
    while not all(ready.exists() for _, ready, _ in resumers):
        assert time.monotonic() < deadline, "the resumers never got ready"
        time.sleep(0.001)
    go.write_text("go")
    results = []
    for out, _, p in resumers:
        code = p.wait(120)
        results.append({"code": code, "output": out.read_text(errors="replace"), "pid": p.pid})
    return {
        "resumers": results,
        "problems": check_journal(db_at),
        "shipped": SideEffects(effects).count(),
        "status": outputs(db_at)[2],
    }


def run_shared_chaos(
    workdir: Path,
    db: Location,
    *,
    items: int = 120,
    kills: int = 6,
    seed: int = 7,
    victim: str = "joiner",
    ttl: float = 1.0,
    timeout: float = 120.0,
    say: Callable[[str], None] | None = None,
) -> ChaosReport:
    """Two foreman processes share one run: its owner (`Foreman(share=...)`, the ``ship``
    phase shared) and a joiner (`Foreman.join`). At seeded points `victim` (``"joiner"``,
    ``"owner"`` or ``"both"``: either, drawn per kill) is SIGKILLed and started again: a joiner
    joins again, an owner resumes. Items leased by a killed process come back after `ttl`.

    The checks are `run_chaos`'s (each order shipped once, nothing accepted twice or run again
    once finished, journals whole, the same artifacts and cards as the uncrashed run), plus:
    joiners ran some of the items, and every item's shard work was journaled in a shard run."""
    say = say or (lambda _: None)
    started = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "shared.log"
    base_db, base_effects = workdir / "baseline.db", workdir / "baseline-effects.db"
    finish(
        launch(["start", str(base_db), RUN_ID, str(items), str(seed)], base_effects, log),
        log,
        timeout,
    )
    baseline = read_events(base_db)
    # The shared run's journal holds one dispatch and one end per `ship` item (their retries
    # and fallbacks are in the shards): kill points count those, and every other decision.
    others = [e for e in baseline if e[0] == RUN_ID and not (e[3] or "").startswith("ship[")]
    decisions = 2 * items + sum(e[2] not in REPEATED for e in others)
    rng = random.Random(seed)
    report = ChaosReport(items, seed, [], baseline_events=len(baseline), decisions=decisions)
    effects = workdir / "chaos-effects.db"
    # Slower shipments than `run_chaos`'s, so that the fan-out lasts while a joiner starts.
    share = {"CHAOS_SHARE_TTL": str(ttl), "CHAOS_DELAY_SCALE": "3"}
    start = ["start", str(db), RUN_ID, str(items), str(seed)]
    # The joiner first, and the owner once it is loaded: it shares the fan-out from the start.
    ready = workdir / "joiner-ready"
    procs = {"joiner": launch(["join", str(db), RUN_ID, str(ready)], effects, log, **share)}
    deadline = time.monotonic() + timeout
    while not ready.exists():
        assert procs["joiner"].poll() is None, f"the joiner ended:\n{tail(log)}"
        assert time.monotonic() < deadline, "the joiner never got ready"
        time.sleep(0.01)
    procs["owner"] = launch(start, effects, log, **share)
    report.launches = 2
    watcher = Watcher(db)
    durable: list[Durable] = []
    overshoot = 0.0
    while report.kills < kills:
        point, delay = next_kill(rng, watcher.count(), decisions, kills - report.kills, overshoot)
        name = victim if victim != "both" else rng.choice(("owner", "joiner"))
        if not kill_at(procs[name], watcher, point, delay, timeout):
            break  # the run ended first
        report.kills += 1
        reached = watcher.count()
        overshoot += (reached - point - overshoot) / report.kills
        report.kill_points.append(reached)
        durable.append(snapshot(report.kills, db, effects))
        report.problems += [f"after kill {report.kills}: {p}" for p in check_journal(db)]
        say(f"kill {report.kills}/{kills}: the {name} after decision {reached} of {decisions}")
        again = ["resume", str(db), RUN_ID] if name == "owner" else ["join", str(db), RUN_ID]
        procs[name] = launch(again, effects, log, **share)
        report.launches += 1
    finish(procs["owner"], log, timeout)
    finish(procs["joiner"], log, timeout)  # it leaves once the run has ended
    watcher.close()
    everything = read_events(db)
    report.events = len(everything)
    report.problems += check_final(db, effects, items, durable, base_db)
    ran: dict[str, set[str]] = {}  # by kind of shard (owner, joiner): items they finished
    by_shard: dict[str, set[str]] = {}  # by shard: items it started
    for run_id, _, kind, item, _, _ in everything:
        if not (item and run_id.startswith(f"{RUN_ID}.")):
            continue
        if kind == "dispatch.finished":
            ran.setdefault(run_id[len(RUN_ID) + 1 :].split("-")[0], set()).add(item)
        elif kind == "dispatch.started":
            by_shard.setdefault(run_id, set()).add(item)
    report.joined = len(ran.get("joiner", set()))
    report.taken_over = sum(
        n > 1 for n in Counter(i for s in by_shard.values() for i in s).values()
    )
    if not report.joined:
        report.problems.append("no joiner ran an item: the run was not shared")
    store = open_store(db)
    try:
        owners = [store.run(r) for r in store.find_runs(f"{RUN_ID}.owner-")]
        stale = [r.run_id for r in owners if r is not None and r.status == "running"]
    finally:
        store.close()
    report.problems += [f"the owner's shard {r} is still running" for r in stale]
    ship = {f"ship[{n}]" for n in range(items)}
    unsharded = ship - set().union(*ran.values())
    if unsharded:
        report.problems.append(f"{len(unsharded)} items ran in no shard, e.g. {min(unsharded)}")
    report.seconds = time.monotonic() - started
    return report
