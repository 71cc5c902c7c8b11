"""A fan-out whose items burn CPU (pure Python, holding the GIL): where a worker pool helps.

In its own module so that the pool's worker processes import its functions by name.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from hubspoke import Phase, Role, Workflow


class Batch(BaseModel):
    n: int
    rounds: int


class Chunk(BaseModel):
    index: int
    rounds: int


class Sum(BaseModel):
    index: int
    total: int


def crunch(chunk: Chunk, ctx: Any) -> Sum:
    """Sync, so it runs in a worker thread; pure Python, so it holds the GIL throughout."""
    total = 0
    for i in range(chunk.rounds):
        total += i * i % 7
    return Sum(index=chunk.index, total=total)


def rounds_for(ms: float) -> int:
    """How many rounds of `crunch` take about `ms` milliseconds on this machine."""
    rounds = 10_000
    started = time.perf_counter()
    crunch(Chunk(index=0, rounds=rounds), None)
    took = time.perf_counter() - started
    return max(1, int(rounds * ms / 1000 / took))


def cpu_workflow(n: int) -> Workflow:
    """N items of `crunch`, all in flight."""
    return Workflow(
        name="cpu-bound",
        input=Batch,
        roles=[Role(name="cruncher", purpose="Crunch.", input=Chunk, output=Sum, function=crunch)],
        phases=[
            Phase(
                name="crunch",
                role="cruncher",
                over=lambda run: [
                    Chunk(index=i, rounds=run.input.rounds) for i in range(run.input.n)
                ],
                input=lambda run, chunk: chunk,
                concurrency=max(1, n),
            )
        ],
        max_steps=n + 16,
    )
