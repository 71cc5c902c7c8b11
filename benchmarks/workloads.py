"""The workloads measured by `benchmarks/run.py`, and the plain asyncio+pydantic baseline.

One shape everywhere: plan -> N typed work items (a fan-out `Phase` with `over=`) -> synthesis
(a phase whose input is `run.outputs("fan")`). The same pydantic models and the same work
functions are used by the hubspoke workflows (function or agent specialists) and by the
baseline, so the difference between them is the runtime's own cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hubspoke import EventKind, Phase, Role, SQLiteStore, Workflow
from hubspoke.events import Event
from hubspoke.models.offline import Turn, answer

# -- schemas ---------------------------------------------------------------------------------


class Goal(BaseModel):
    topic: str
    n: int


class Task(BaseModel):
    index: int
    title: str
    notes: str


class Plan(BaseModel):
    items: list[Task]


class Finding(BaseModel):
    index: int
    summary: str
    score: float
    tags: list[str]


class Findings(BaseModel):
    findings: list[Finding]


class Report(BaseModel):
    count: int
    best: int
    mean: float


# -- the work itself (plain functions on dicts, shared by every variant) ------------------------


def plan_of(goal: dict[str, Any]) -> dict[str, Any]:
    topic = goal["topic"]
    return {
        "items": [
            {"index": i, "title": f"{topic} #{i}", "notes": "look at one account"}
            for i in range(goal["n"])
        ]
    }


def finding_of(task: dict[str, Any]) -> dict[str, Any]:
    i = task["index"]
    return {
        "index": i,
        "summary": f"finding for {task['title']}",
        "score": (i * 7919 % 1000) / 1000.0,
        "tags": ["lead", "b2b"],
    }


def report_of(findings: list[dict[str, Any]]) -> dict[str, Any]:
    if not findings:
        return {"count": 0, "best": -1, "mean": 0.0}
    best = max(findings, key=lambda f: f["score"])
    return {
        "count": len(findings),
        "best": best["index"],
        "mean": sum(f["score"] for f in findings) / len(findings),
    }


def goal_input(n: int) -> dict[str, Any]:
    return {"topic": "benchmark", "n": n}


# -- function specialists --------------------------------------------------------------------


def function_roles(latency: float) -> list[Role]:
    async def plan(inp: Goal, ctx: Any) -> dict[str, Any]:
        if latency:
            await asyncio.sleep(latency)
        return plan_of({"topic": inp.topic, "n": inp.n})

    async def work(inp: Task, ctx: Any) -> dict[str, Any]:
        if latency:
            await asyncio.sleep(latency)
        return finding_of({"index": inp.index, "title": inp.title})

    async def synth(inp: Findings, ctx: Any) -> dict[str, Any]:
        if latency:
            await asyncio.sleep(latency)
        return report_of([{"index": f.index, "score": f.score} for f in inp.findings])

    return [
        Role(
            name="planner",
            purpose="Split the goal into items.",
            input=Goal,
            output=Plan,
            function=plan,
        ),
        Role(name="worker", purpose="Work on one item.", input=Task, output=Finding, function=work),
        Role(
            name="synth",
            purpose="Combine the findings.",
            input=Findings,
            output=Report,
            function=synth,
        ),
    ]


# -- agent specialists on the offline model ------------------------------------------------------


def planner_player(turn: Turn) -> Any:
    return answer(plan_of(turn.input))


def worker_player(turn: Turn) -> Any:
    return answer(finding_of(turn.input))


def synth_player(turn: Turn) -> Any:
    return answer(report_of(turn.input["findings"]))


PLAYERS = {"planner": planner_player, "worker": worker_player, "synth": synth_player}


def agent_roles() -> list[Role]:
    return [
        Role(
            name="planner",
            purpose="Split the goal into items.",
            input=Goal,
            output=Plan,
            does=["plans"],
            does_not=["send email"],
        ),
        Role(
            name="worker",
            purpose="Work on one item.",
            input=Task,
            output=Finding,
            does=["researches one item"],
            does_not=["send email"],
        ),
        Role(
            name="synth",
            purpose="Combine the findings.",
            input=Findings,
            output=Report,
            does=["summarises"],
            does_not=["send email"],
        ),
    ]


# -- the workflow ------------------------------------------------------------------------------


def fanout_workflow(kind: str, n: int, latency: float = 0.0) -> Workflow:
    """plan -> n items (all in flight: concurrency n) -> synthesis."""
    roles = function_roles(latency) if kind == "function" else agent_roles()
    return Workflow(
        name=f"fanout-{kind}",
        input=Goal,
        roles=roles,
        phases=[
            Phase(name="plan", role="planner", input=lambda run: run.input),
            Phase(
                name="fan",
                role="worker",
                over=lambda run: run.output("plan").items,
                input=lambda run, task: task,
                concurrency=max(1, n),
            ),
            Phase(
                name="synth",
                role="synth",
                input=lambda run: Findings(findings=run.outputs("fan")),
            ),
        ],
        # Every dispatch counts one step; let the run make all of them.
        max_steps=n + 16,
        players=PLAYERS if kind == "agent" else {},
    )


# -- the baseline: a plain asyncio loop validating the same models ------------------------------


async def baseline(n: int, latency: float = 0.0) -> Report:
    """input -> function -> output validated, N coroutines gathered; plan and synthesis too."""
    work = function_roles(latency)
    plan_fn, work_fn, synth_fn = (r.function for r in work)
    assert plan_fn is not None and work_fn is not None and synth_fn is not None
    goal = Goal.model_validate(goal_input(n))
    plan = Plan.model_validate(await plan_fn(goal, None))

    async def one(raw: dict[str, Any]) -> Finding:
        task = Task.model_validate(raw)
        return Finding.model_validate(await work_fn(task, None))

    findings = await asyncio.gather(*(one(t.model_dump()) for t in plan.items))
    synth_in = Findings.model_validate({"findings": [f.model_dump() for f in findings]})
    return Report.model_validate(await synth_fn(synth_in, None))


async def function_work_seconds(n: int) -> float:
    """CPU time of the work functions alone (no runtime, no validation): plan, N items, synth."""
    roles = function_roles(0.0)
    plan_fn, work_fn, synth_fn = (r.function for r in roles)
    goal = Goal.model_validate(goal_input(n))
    t0 = time.perf_counter()
    plan = await plan_fn(goal, None)  # type: ignore[misc]
    t1 = time.perf_counter()
    tasks = [Task.model_validate(t) for t in plan["items"]]
    t2 = time.perf_counter()
    out = [await work_fn(t, None) for t in tasks]  # type: ignore[misc]
    t3 = time.perf_counter()
    findings = Findings.model_validate({"findings": out})
    t4 = time.perf_counter()
    await synth_fn(findings, None)  # type: ignore[misc]
    t5 = time.perf_counter()
    return (t1 - t0) + (t3 - t2) + (t5 - t4)


def drop_store(store: SQLiteStore, path: Path) -> None:
    """Close a benchmark's store and delete its file (and its WAL and shared-memory files)."""
    store.close()
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


# -- helpers ---------------------------------------------------------------------------------


def critical_requests(events: Iterable[Event]) -> int:
    """Sequential model requests on the longest path: phases run one after another, and an
    item's requests (turns, retries, its evaluation) one after another; items run in parallel."""
    per_item: dict[tuple[str, str], int] = defaultdict(int)
    for e in events:
        if e.kind is EventKind.MODEL_EXCHANGE and e.phase is not None and e.item is not None:
            per_item[(e.phase, e.item.split("#", 1)[0])] += 1
    by_phase: dict[str, int] = {}
    for (phase, _), count in per_item.items():
        by_phase[phase] = max(by_phase.get(phase, 0), count)
    return sum(by_phase.values())
