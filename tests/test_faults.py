"""Fault matrix: every failure a specialist or model can produce × every phase strategy.

Each cell runs a three-item fan-out whose middle item (`work[1]`) meets the fault while its
siblings succeed, and asserts the run's terminal status and its whole event stream. The
expected stream is built from two small tables: what the faulty item's ladder journals in each
round (`LADDER`), and what each strategy does around it (`expected_stream`).

Provider faults (HTTP 429 and 503) come from a real OpenAI-compatible server started on
127.0.0.1 by the test, reached through `openai-compatible:MODEL@http://127.0.0.1:PORT/v1`.
They spend no attempt: the item waits (`item.waiting`) and is dispatched again at the same
attempt, `max_waits` times, and then its role has failed. Every request to the server is
journaled before it is sent (`model.requested`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pydantic_ai.models
import pytest

from hubspoke import (
    Budget,
    Context,
    Foreman,
    NeedsHuman,
    OutOfScope,
    Phase,
    Role,
    SQLiteStore,
    Strategy,
    Workflow,
)
from hubspoke.testing import payload_errors, stream
from hubspoke.throttle import Backoff
from tests import wire
from tests.helpers import Number, Squared, Topic

pytestmark = pytest.mark.anyio

FAULTS = (
    "exception",
    "timeout",
    "invalid_once",
    "invalid_always",
    "scope_violation",
    "needs_human",
    "dispatch_budget",
    "run_budget",
    "provider_429",
    "provider_503",
)
STRATEGIES = (Strategy.FAIL_FAST, Strategy.BEST_EFFORT, Strategy.RETRY, Strategy.QUORUM)
MAX_STEPS = 12
TERMINAL = {"completed", "failed", "waiting", "exhausted", "aborted"}
"""Where a session of a run can end (`waiting` is not final: a person's decision goes on)."""

# The status each cell ends in: fault → {strategy: status}. A fault that leaves the item
# unaccepted escalates it to a person, and the run waits for that decision: a fail-fast phase
# waits (`phase.finished waiting`, later phases do not run); the other strategies finish the
# phase with the siblings (quorum 2 of 3 is met) and the run still waits for the escalated item.
# Running out of the run's budget ends the run in its declared state (`exhausted`).
_LOST = dict.fromkeys(STRATEGIES, "waiting")
STATUS: dict[str, dict[Strategy, str]] = {
    "exception": _LOST,
    "timeout": _LOST,
    "invalid_once": dict.fromkeys(STRATEGIES, "completed"),
    "invalid_always": _LOST,
    "scope_violation": _LOST,
    "needs_human": _LOST,
    "dispatch_budget": _LOST,
    "run_budget": dict.fromkeys(STRATEGIES, "exhausted"),
    "provider_429": _LOST,
    "provider_503": _LOST,
}


# expected streams ---------------------------------------------------------------------------


def at(kind: str, item: int, attempt: int | None = None, detail: str = "") -> str:
    line = f"{kind} work worker work[{item}]"
    if attempt is not None:
        line += f" #{attempt}"
    return f"{line} {detail}" if detail else line


def dispatch(item: int, attempt: int, outcome: str, exchange: str | None = None) -> list[str]:
    lines = [at("dispatch.started", item, attempt)]
    if exchange is not None:
        lines.append(at("model.requested", item, attempt))
        lines.append(at("model.exchange", item, attempt, exchange))
    return [*lines, at("dispatch.finished", item, attempt, outcome)]


def accepted(item: int, attempt: int = 1, exchange: str | None = None) -> list[str]:
    return [*dispatch(item, attempt, "output", exchange), at("item.accepted", item)]


def escalated(item: int) -> list[str]:
    return [at("item.escalated", item), at("card.created", item, detail="escalated")]


def retry(item: int, attempt: int) -> list[str]:
    return [at("item.retry", item, attempt)]


def failing_twice(outcome: str, exchange: str | None = None) -> Callable[[int], list[str]]:
    """A retryable failure on both attempts (max_attempts=2), then escalation."""

    def lines(first: int) -> list[str]:
        return [
            *dispatch(1, first, outcome, exchange),
            *retry(1, first + 1),
            *dispatch(1, first + 1, outcome, exchange),
            *escalated(1),
        ]

    return lines


def waiting_then_failing(outcome: str, exchange: str) -> Callable[[int], list[str]]:
    """A provider fault on every request: one wait (max_waits=1) at the same attempt, then the
    role has failed and, with no fallback, the item escalates. No attempt is spent."""

    def lines(first: int) -> list[str]:
        return [
            *dispatch(1, first, outcome, exchange),
            at("item.waiting", 1, first, outcome),
            *dispatch(1, first, outcome, exchange),
            *escalated(1),
        ]

    return lines


def invalid(attempt: int) -> list[str]:
    return [*dispatch(1, attempt, "invalid"), at("output.invalid", 1, attempt)]


def not_retryable(outcome: str) -> Callable[[int], list[str]]:
    """A round that ends the ladder at once. A later round runs again: it carries the
    correction of this one, so it is not the same dispatch."""

    def lines(first: int) -> list[str]:
        return [*dispatch(1, first, outcome), *escalated(1)]

    return lines


# What the faulty item journals in one round of its phase, given its first attempt number.
LADDER: dict[str, Callable[[int], list[str]]] = {
    "exception": failing_twice("failed"),
    "timeout": failing_twice("timed_out"),
    "invalid_once": lambda first: [*invalid(1), *retry(1, 2), *accepted(1, 2)],
    "invalid_always": lambda first: (
        [*invalid(1), *retry(1, 2), *invalid(2), *escalated(1)]
        if first == 1
        else [at("item.stuck", 1, first), *escalated(1)]
    ),
    "scope_violation": not_retryable("scope_violation"),
    "needs_human": not_retryable("needs_human"),
    # A refusal of the dispatch's own allowance says nothing about the input: a later round
    # runs it again (and it is refused again).
    "dispatch_budget": lambda first: [*dispatch(1, first, "budget_refused"), *escalated(1)],
    "provider_429": waiting_then_failing("throttled", "HTTP 429"),
    "provider_503": waiting_then_failing("unavailable", "HTTP 503"),
}


def expected_stream(fault: str, strategy: Strategy) -> list[str]:
    exchange = "final_result" if fault.startswith("provider") else None
    lines = ["run.started", "phase.started work items=3", *accepted(0, exchange=exchange)]
    if fault == "run_budget":
        # The phase the budget cut short ends `stopped`: no phase stays running.
        return [
            *lines,
            at("budget.refused", 1, 1),
            "phase.finished work stopped",
            "run.finished exhausted",
        ]
    ladder = LADDER[fault]
    lost = fault != "invalid_once"
    if strategy is Strategy.RETRY and lost:
        # The first round's end requeues the item instead of escalating it: an item escalates
        # once, after its last round.
        first_round = ladder(1)
        assert first_round[-2:] == escalated(1)
        lines += [*first_round[:-2], at("item.requeued", 1)]
    else:
        lines += ladder(1)
    if strategy is Strategy.FAIL_FAST and lost:
        return [*lines, "phase.finished work waiting", "run.finished waiting"]
    lines += accepted(2, exchange=exchange)
    if strategy is Strategy.RETRY and lost:
        # The phase's second round: attempts go on from where the first round stopped.
        # (A dispatch again after a wait is the same attempt.)
        attempts = {line for line in ladder(1) if line.startswith("dispatch.started")}
        lines += ladder(len(attempts) + 1)
    return [*lines, "phase.finished work completed", f"run.finished {STATUS[fault][strategy]}"]


# the specialists ------------------------------------------------------------------------------


def lookup(topic: str) -> str:
    """Look a topic up."""
    return topic


def squares(n: int) -> dict[str, int]:
    return {"n": n, "square": n * n}


async def faulty(fault: str, inp: Number, ctx: Context) -> Any:
    if inp.n != 1:
        return squares(inp.n)
    if fault == "exception":
        raise RuntimeError("the specialist fell over")
    if fault == "timeout":
        await asyncio.Event().wait()
    if fault == "invalid_once" and ctx.attempt == 1:
        return {"n": "one", "square": 1}
    if fault == "invalid_always":
        return {"n": 1}
    if fault == "scope_violation":
        raise OutOfScope("one is not a number this role squares")
    if fault == "needs_human":
        raise NeedsHuman("should one be squared at all?")
    if fault == "dispatch_budget":
        await ctx.call_tool("lookup", topic="one")  # the dispatch's allowance has no tool call
    return squares(inp.n)


def build(fault: str, strategy: Strategy, server: str) -> Workflow:
    worker: dict[str, Any] = dict(
        name="worker",
        purpose="Square a number.",
        input=Number,
        output=Squared,
        max_attempts=2,
        tools=[lookup],
    )
    if fault.startswith("provider"):
        worker["model"] = f"openai-compatible:{fault}@{server}"
        worker["max_waits"] = 1
    else:

        async def work(inp: Number, ctx: Context) -> Any:
            return await faulty(fault, inp, ctx)

        worker["function"] = work
    if fault == "timeout":
        worker["timeout"] = 0.02
    if fault == "dispatch_budget":
        worker["budget"] = Budget(tool_calls=0)
    phase: dict[str, Any] = {"strategy": strategy}
    if strategy is Strategy.RETRY:
        phase["retries"] = 1
    if strategy is Strategy.QUORUM:
        phase["quorum"] = 2
    return Workflow(
        name=f"faults-{fault}-{strategy.value}",
        input=Topic,
        roles=[Role(**worker)],
        phases=[
            Phase(
                name="work",
                role="worker",
                over=lambda run: [0, 1, 2],
                input=lambda run, n: Number(n=n),
                concurrency=1,
                **phase,
            )
        ],
        budget=Budget(steps=1) if fault == "run_budget" else Budget(),
        max_steps=MAX_STEPS,
    )


# the OpenAI Chat Completions double (tests/wire) ----------------------------------------------


def answer_squares(request: wire.Request) -> wire.Reply:
    """The model name says how `work[1]` is answered; every other item gets its square."""
    n = request.work["input"]["n"]
    if n == 1 and request.model == "provider_429":
        return wire.fault(429)
    if n == 1 and request.model == "provider_503":
        return wire.fault(503)
    return wire.call("final_result", squares(n))


@pytest.fixture(scope="module")
def provider() -> Iterator[str]:
    """The Chat Completions double's base URL (it checks every request as OpenAI would)."""
    with wire.serve("chat", answer_squares) as server:
        yield server.url


@pytest.fixture
def local_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let requests through to the server this module started on 127.0.0.1 (and only there)."""
    monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)


# the matrix -----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: s.value)
@pytest.mark.parametrize("fault", FAULTS)
async def test_fault_matrix(
    store: SQLiteStore, provider: str, local_requests: None, fault: str, strategy: Strategy
) -> None:
    wf = build(fault, strategy, provider)
    # No hold at all: the stream is the point, and a hold still on when a sibling starts would
    # make the stream depend on timing (that sibling would wait too).
    brief = Backoff(first=0.0, cap=0.0)
    result = await Foreman(wf, store, backoff=brief).run({"topic": "numbers"})
    assert result.status == STATUS[fault][strategy] in TERMINAL
    assert result.state.steps <= MAX_STEPS
    assert stream(store.events(result.run_id)) == expected_stream(fault, strategy)
    assert payload_errors(store.events(result.run_id)) == []  # failed requests, refusals too
    # Whatever failed, nothing invalid was accepted and every artifact is a real square.
    for artifact in store.artifacts(result.run_id):
        assert Squared.model_validate(artifact.content, strict=True).square == (
            artifact.content["n"] ** 2
        )


def test_the_matrix_covers_every_fault_and_strategy() -> None:
    assert set(STATUS) == set(FAULTS) == set(LADDER) | {"run_budget"}
    assert all(set(row) == set(Strategy) for row in STATUS.values())
