"""Nothing is lost: a process killed mid-run resumes from its journal (docs/reliability.md)."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field, model_validator

from hubspoke import EventKind, Foreman, RunLocked, RunNotFound, SQLiteStore
from hubspoke.events import Event
from hubspoke.loader import load_workflow
from hubspoke.testing import SideEffects
from tests.helpers import (
    Draft,
    Killed,
    Topic,
    draft,
    judged,
    kill_when,
    relay,
    running_record,
)

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]


def count_finished(db: Path, run_id: str) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM events WHERE run_id=? AND kind='dispatch.finished'", (run_id,)
            ).fetchone()
            return int(row[0])
    except sqlite3.OperationalError:  # the table does not exist yet
        return 0


def start_and_kill(
    db: Path,
    ref: str,
    run_id: str,
    payload: dict[str, Any],
    *,
    after: int,
    latency: float = 0.0,
    env: dict[str, str] | None = None,
) -> None:
    """Start a run in a subprocess and SIGKILL it once `after` dispatches have finished."""
    log = db.with_suffix(".log")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.workflows.run",
                str(db),
                ref,
                run_id,
                json.dumps(payload),
                str(latency),
            ],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=out,
        )
        deadline = time.monotonic() + 60
        while count_finished(db, run_id) < after:
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before the kill: {log.read_text()}")
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError(f"the run made no progress: {log.read_text()}")
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def assert_contiguous(events: list[Event]) -> None:
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


async def test_killed_run_resumes_without_rerunning_completed_dispatches(tmp_path: Path) -> None:
    db, effects = tmp_path / "journal.db", tmp_path / "effects.db"
    env = {"SIDEFX_DB": str(effects)}
    os.environ["SIDEFX_DB"] = str(effects)
    ref = "tests.workflows.sidefx:workflow"
    start_and_kill(db, ref, "run_crash", {"items": 60}, after=20, env=env)

    store = SQLiteStore(db)
    before = store.events("run_crash")
    assert before[-1].kind is not EventKind.RUN_FINISHED  # it really died mid-run
    assert_contiguous(before)
    done_before = {e.item for e in before if e.kind is EventKind.ITEM_ACCEPTED}
    assert len(done_before) >= 20

    result = await Foreman(load_workflow(ref), store).resume("run_crash")
    assert result.status == "completed"
    assert result.result.count == 60 and result.result.total == sum(n * 10 for n in range(60))

    events = store.events("run_crash")
    assert_contiguous(events)
    assert store.integrity_ok()
    resumed_at = next(e.seq for e in events if e.kind is EventKind.RUN_RESUMED)
    rerun = {e.item for e in events[resumed_at:] if e.kind is EventKind.DISPATCH_STARTED}
    assert not rerun & done_before  # completed dispatches never ran again
    accepted = [e.item for e in events if e.kind is EventKind.ITEM_ACCEPTED]
    assert len(accepted) == len(set(accepted)) == 61  # each item accepted exactly once
    side = SideEffects(effects)
    assert side.count() == 60  # every order shipped exactly once (keyed by idempotency key)
    store.close()


async def test_sales_resumed_after_kill_gives_the_same_cards(tmp_path: Path) -> None:
    from hubspoke.examples.sales import DEMO_INPUT, workflow

    ref = "hubspoke.examples.sales:workflow"
    clean = SQLiteStore(tmp_path / "clean.db")
    baseline = await Foreman(workflow, clean).run(DEMO_INPUT, ref=ref)

    db = tmp_path / "crash.db"
    start_and_kill(db, ref, "run_sales", DEMO_INPUT, after=14, latency=0.01)
    store = SQLiteStore(db)
    result = await Foreman(workflow, store).resume("run_sales")
    assert result.status == baseline.status == "waiting"
    assert_contiguous(store.events("run_sales"))

    def board(s: SQLiteStore, run_id: str) -> list[tuple[str, str, str, str]]:
        return sorted((c.item, c.column.value, c.title, c.note) for c in s.cards(run_id))

    def contents(s: SQLiteStore, run_id: str) -> list[tuple[str, str]]:
        return sorted((a.item, json.dumps(a.content, sort_keys=True)) for a in s.artifacts(run_id))

    assert board(store, "run_sales") == board(clean, baseline.run_id)
    assert contents(store, "run_sales") == contents(clean, baseline.run_id)
    assert result.state.cards_in_review == 9


async def test_resume_of_a_finished_run_does_nothing(store: SQLiteStore) -> None:
    from hubspoke.examples.sales import DEMO_INPUT, workflow

    done = await Foreman(workflow, store).run(DEMO_INPUT)
    n = len(store.events(done.run_id))
    again = await Foreman(workflow, store).resume(done.run_id)
    assert again.status == "waiting"
    assert len(store.events(done.run_id)) == n


async def test_resume_of_a_completed_run_reloads_its_outputs_only_for_its_result(
    store: SQLiteStore,
) -> None:
    """A run left as it is needs its outputs only for the workflow's `result(...)`: without one
    the resume reads no artifact (the journal of a finished run may have lost or pruned them);
    with one it rebuilds the same result as the run's."""
    from hubspoke import Context

    async def inc(inp: Watched, ctx: Context) -> Watched:
        return Watched(n=inp.n + 1)

    with_result = dataclasses.replace(relay(Watched, inc), result=lambda run: run.output("second"))
    done = await Foreman(with_result, store).run({"n": 1}, run_id="r_result")
    again = await Foreman(with_result, store).resume("r_result")
    assert (again.status, again.result, done.result) == ("completed", Watched(n=3), Watched(n=3))

    plain = relay(Watched, inc)
    await Foreman(plain, store).run({"n": 1}, run_id="r_plain")
    with sqlite3.connect(store.path) as conn:
        conn.execute("DELETE FROM artifacts WHERE run_id='r_plain'")
    again = await Foreman(plain, store).resume("r_plain")
    assert (again.status, again.result) == ("completed", None)
    with pytest.raises(RunNotFound, match=r"artifact .* is missing"):
        await Foreman(with_result, store).resume("r_plain")


async def test_a_live_run_cannot_be_resumed_twice(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "j.db")
    from hubspoke.examples.sales import workflow

    holder = "another-process"
    store.create_run(_record("run_held"))
    assert store.acquire("run_held", holder) is None
    with pytest.raises(RunLocked, match="held by process"):
        await Foreman(workflow, store).resume("run_held")


def _record(run_id: str) -> Any:
    from hubspoke.examples.sales import DEMO_INPUT

    return running_record(run_id, "sales", DEMO_INPUT)


def truncate(db: Path, run_id: str, keep: int) -> None:
    """Make the journal look as if the process died right after event `keep` was written."""
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM events WHERE run_id=? AND seq>?", (run_id, keep))
        ids = {
            json.loads(d).get("artifact_id")
            for (d,) in conn.execute("SELECT data FROM events WHERE run_id=?", (run_id,))
        }
        for (aid,) in conn.execute("SELECT artifact_id FROM artifacts WHERE run_id=?", (run_id,)):
            if aid not in ids:
                conn.execute("DELETE FROM artifacts WHERE artifact_id=?", (aid,))
        for (cid,) in conn.execute(
            "SELECT card_id FROM cards WHERE run_id=?", (run_id,)
        ).fetchall():
            kept = conn.execute(
                "SELECT 1 FROM events WHERE run_id=? AND kind='card.created' AND data LIKE ?",
                (run_id, f'%"{cid}"%'),
            ).fetchone()
            if kept is None:
                conn.execute("DELETE FROM cards WHERE card_id=?", (cid,))
        conn.execute("UPDATE runs SET status='running', finished=NULL WHERE run_id=?", (run_id,))
        conn.execute("DELETE FROM leases")


@pytest.mark.parametrize(
    "after",
    [
        EventKind.ITEM_RETRY,
        EventKind.OUTPUT_INVALID,
        EventKind.ITEM_ESCALATED,
        EventKind.CARD_CREATED,
    ],
)
async def test_resume_right_after_a_ladder_event(tmp_path: Path, after: EventKind) -> None:
    from hubspoke.examples.sales import DEMO_INPUT, workflow

    db = tmp_path / "j.db"
    store = SQLiteStore(db)
    done = await Foreman(workflow, store).run(DEMO_INPUT, run_id="run_cut")
    cards = sorted((c.item, c.column.value, c.title) for c in store.cards("run_cut"))
    cut = next(e.seq for e in store.events("run_cut") if e.kind is after)
    store.close()
    truncate(db, "run_cut", cut)

    store = SQLiteStore(db)
    # Dispatches in flight at the cut (their tools run in worker threads, so siblings overlap)
    # run again on resume, each one more `dispatch.started`; nothing else may differ.
    in_flight: dict[str, int] = {}
    for e in store.events("run_cut"):
        if e.kind in (EventKind.DISPATCH_STARTED, EventKind.DISPATCH_FINISHED) and e.phase:
            step = 1 if e.kind is EventKind.DISPATCH_STARTED else -1
            in_flight[e.phase] = in_flight.get(e.phase, 0) + step
    resumed = await Foreman(workflow, store).resume("run_cut")
    assert resumed.status == done.status == "waiting"
    events = store.events("run_cut")
    assert_contiguous(events)
    assert not [e for e in events if e.kind is EventKind.ITEM_STUCK]
    assert sorted((c.item, c.column.value, c.title) for c in store.cards("run_cut")) == cards
    phases = resumed.state.summary()["phases"]
    assert phases == done.state.summary()["phases"] | {
        name: {
            **p,
            "usage": phases[name]["usage"],
            "dispatched": p["dispatched"] + in_flight.get(name, 0),
        }
        for name, p in done.state.summary()["phases"].items()
    }
    store.close()


async def test_a_resume_that_fails_before_it_drives_releases_its_lease(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hubspoke.examples.sales import DEMO_INPUT, workflow

    in_the_drafts = kill_when(lambda e: e.kind is EventKind.CARD_CREATED)
    with pytest.raises(Killed):
        await Foreman(workflow, store, listeners=[in_the_drafts]).run(DEMO_INPUT, run_id="r_lk")
    run_id = "r_lk"

    def broken(wiring: Any, run: Any) -> None:
        raise RuntimeError("reconciling the board failed")

    monkeypatch.setattr("hubspoke.foreman._resume.reconcile_cards", broken)
    with pytest.raises(RuntimeError, match="reconciling"):
        await Foreman(workflow, store).resume(run_id)
    assert store.holder(run_id) is None
    monkeypatch.undo()
    result = await Foreman(workflow, store).resume(run_id)  # not RunLocked
    assert result.status == "waiting"  # the demo's escalated contact waits for a person


AT_SECOND = kill_when(lambda e: e.kind is EventKind.PHASE_STARTED and e.phase == "second")
"""Kills a `relay` run as its second phase starts, its first phase accepted."""

GC_SEEN: list[bool] = []


class Watched(BaseModel):
    """Records whether the collector is on whenever it is validated."""

    n: int

    @model_validator(mode="after")
    def _seen(self) -> Watched:
        GC_SEEN.append(gc.isenabled())
        return self


@pytest.mark.parametrize("enabled", [True, False])
async def test_resume_pauses_the_collector_to_rebuild_and_leaves_it_as_it_was(
    store: SQLiteStore, enabled: bool
) -> None:
    from hubspoke import Context

    async def inc(inp: Watched, ctx: Context) -> Watched:
        return Watched(n=inp.n + 1)

    wf = relay(Watched, inc)
    with pytest.raises(Killed):
        await Foreman(wf, store, listeners=[AT_SECOND]).run({"n": 1}, run_id="r_gc")
    was = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        rebuilt: list[list[bool]] = []

        def at_resume(event: Event) -> None:
            if event.kind is EventKind.RUN_RESUMED:
                rebuilt.append(list(GC_SEEN))

        GC_SEEN.clear()
        result = await Foreman(wf, store, listeners=[at_resume]).resume("r_gc")
        assert result.status == "completed"
        # The first phase's output, reloaded last before run.resumed, with the collector paused.
        assert rebuilt[0] and rebuilt[0][-1] is False
        assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()


KEPT: list[BaseModel] = []


class Kept(BaseModel):
    """Keeps every instance validated, to find where the collector holds it."""

    n: int

    @model_validator(mode="after")
    def _kept(self) -> Kept:
        KEPT.append(self)
        return self


async def test_a_run_results_repr_leaves_out_its_state(store: SQLiteStore) -> None:
    """`asyncio.run` formats the result its coroutine returns (`hubspoke run` and `resume` return
    one): the repr names the run, its end and result, not every item of its fold."""
    from hubspoke import Context

    async def inc(inp: Kept, ctx: Context) -> Kept:
        return Kept(n=inp.n + 1)

    done = await Foreman(relay(Kept, inc), store).run({"n": 1}, run_id="r_repr")
    again = await Foreman(relay(Kept, inc), store).resume("r_repr")
    for result in (done, again):
        assert (
            repr(result) == "RunResult(run_id='r_repr', status='completed', reason='', result=None)"
        )


class Named(BaseModel):
    name: str = Field(alias="Name")


async def test_models_with_aliases_survive_the_journal_and_a_resume(store: SQLiteStore) -> None:
    """Input, outputs and artifacts are dumped by field name; every place that reads them back
    (the run's input given as an instance, a phase's input built from an output, a function's
    own instance, the artifacts a resume reloads) reads by name, whatever the aliases."""
    from hubspoke import Context

    async def echo(inp: Named, ctx: Context) -> Named:
        return Named(Name=inp.name + "!")

    wf = relay(Named, echo)
    with pytest.raises(Killed):
        await Foreman(wf, store, listeners=[AT_SECOND]).run(Named(Name="ada"), run_id="r_al")
    result = await Foreman(wf, store).resume("r_al")
    assert result.status == "completed"
    [second] = store.artifacts("r_al", "second")
    assert second.content == {"name": "ada!!"}


@pytest.mark.parametrize("first_verdict", ["accept", "reject"])
async def test_a_kill_during_evaluation_judges_the_output_again_without_redoing_the_work(
    store: SQLiteStore, first_verdict: str
) -> None:
    """The output under judgement is journaled with its dispatch's end: a resume runs the
    evaluation again, not the attempt, and then goes on as the uncrashed run would."""
    from hubspoke import Context, EvaluationRequest, Verdict
    from hubspoke.testing import stream

    written: list[int] = []

    async def writer(inp: Topic, ctx: Context) -> Draft:
        written.append(ctx.attempt)
        return await draft(inp, ctx)

    async def judge(inp: EvaluationRequest, ctx: Context) -> Verdict:
        ok = first_verdict == "accept" or len(inp.output["text"]) > 10
        return Verdict(accept=ok, critique="" if ok else "too short")

    wf = judged(writer, judge)
    while_judging = kill_when(lambda e: e.kind is EventKind.DISPATCH_STARTED and e.role == "judge")
    with pytest.raises(Killed):
        await Foreman(wf, store, listeners=[while_judging]).run({"topic": "x"}, run_id="r_ev")
    assert written == [1]
    result = await Foreman(wf, store).resume("r_ev")
    assert result.status == "completed"
    resumed = stream(store.events("r_ev"))
    after = resumed[resumed.index("run.resumed") :]
    if first_verdict == "accept":
        assert written == [1]  # the work was not done again
        assert after == [
            "run.resumed",
            "phase.started write items=1",
            "dispatch.started write judge write#eval #1",
            "dispatch.finished write judge write#eval #1 output",
            "item.accepted write writer write",
            "phase.finished write completed",
            "run.finished completed",
        ]
    else:
        assert written == [1, 2]  # rejected again, so the retry runs, once
        assert after[:5] == [
            "run.resumed",
            "phase.started write items=1",
            "dispatch.started write judge write#eval #1",
            "dispatch.finished write judge write#eval #1 output",
            "evaluator.rejected write writer write #1",
        ]
    [artifact] = store.artifacts("r_ev")
    assert artifact.content["text"] == (
        "short" if first_verdict == "accept" else "a longer, better draft"
    )
