"""Budgets hold: reserved before dispatch, refused when they would overrun, never exceeded."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubspoke import Budget, EventKind, Foreman, Phase, Role, SQLiteStore, Strategy, Workflow
from hubspoke.budget import Allowance, BudgetExceeded, Ledger, Reservation, Shortfall, Usage
from hubspoke.models.offline import answer
from hubspoke.testing import scripted, stream
from hubspoke.work import Brief, WorkItem
from tests.helpers import Number, Squared, Topic, square_each, squarer_card

pytestmark = pytest.mark.anyio


def agents(
    n: int,
    *,
    per_dispatch: Budget,
    run: Budget,
    concurrency: int = 1,
    on_exhausted: str = "finalize",
) -> Workflow:
    return Workflow(
        name="agents",
        input=Topic,
        roles=[squarer_card(None, purpose="Square a number.", budget=per_dispatch)],
        phases=[
            square_each("squares", range(n), concurrency=concurrency, strategy=Strategy.BEST_EFFORT)
        ],
        players={"squarer": lambda turn: answer(n=turn.input["n"], square=turn.input["n"] ** 2)},
        budget=run,
        on_budget_exhausted=on_exhausted,  # type: ignore[arg-type]
    )


async def test_a_budget_too_small_ends_in_its_declared_state(store: SQLiteStore) -> None:
    # Each dispatch reserves its cap (1500) and spends ~150: the third reservation would pass
    # the run's 1700 tokens, so it is refused before it runs.
    wf = agents(5, per_dispatch=Budget(tokens=1500), run=Budget(tokens=1700))
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "exhausted"
    assert "tokens" in result.reason
    assert result.state.usage.tokens <= 1700
    assert stream(store.events(result.run_id), skip=(EventKind.MODEL_EXCHANGE,)) == [
        "run.started",
        "phase.started squares items=5",
        "dispatch.started squares squarer squares[0] #1",
        "dispatch.finished squares squarer squares[0] #1 output",
        "item.accepted squares squarer squares[0]",
        "dispatch.started squares squarer squares[1] #1",
        "dispatch.finished squares squarer squares[1] #1 output",
        "item.accepted squares squarer squares[1]",
        "budget.refused squares squarer squares[2] #1",
        "phase.finished squares stopped",
        "run.finished exhausted",
    ]
    assert len(store.artifacts(result.run_id)) == 2  # finalized with what it had


async def test_abort_on_exhaustion_when_declared(store: SQLiteStore) -> None:
    wf = agents(5, per_dispatch=Budget(tokens=1500), run=Budget(tokens=1700), on_exhausted="abort")
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "aborted"


async def test_concurrent_reservations_hold_the_usd_budget(store: SQLiteStore) -> None:
    """Four in flight at once: the worst cases are reserved up front, so only two start."""
    wf = agents(4, per_dispatch=Budget(usd=0.001), run=Budget(usd=0.0025), concurrency=4)
    result = await Foreman(wf, store, offline_latency=0.001).run({"topic": "x"})
    assert result.status == "exhausted"
    assert result.state.usage.usd <= 0.0025
    assert result.state.phases["squares"].accepted == 2  # 2 reserved at once, the 3rd refused


async def test_per_dispatch_allowance_refuses_the_request_that_would_overrun(
    store: SQLiteStore,
) -> None:
    wf = agents(1, per_dispatch=Budget(tokens=50), run=Budget())
    result = await Foreman(wf, store).run({"topic": "x"})
    finished = [e for e in store.events(result.run_id) if e.kind is EventKind.DISPATCH_FINISHED]
    assert [e.data["outcome"] for e in finished] == ["budget_refused"]
    assert finished[0].data["usage"]["requests"] == 0  # the model was never called
    assert result.state.phases["squares"].escalated == 1


async def test_max_steps_is_a_budget(store: SQLiteStore) -> None:
    wf = agents(5, per_dispatch=Budget(), run=Budget(steps=3))
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "exhausted"
    assert result.state.steps == 3


async def test_wall_time_budget_ends_the_run(store: SQLiteStore) -> None:
    async def slow(inp: Number, ctx: object) -> Squared:
        await asyncio.Event().wait()
        raise AssertionError

    wf = Workflow(
        name="slow",
        input=Topic,
        roles=[squarer_card(slow, max_attempts=1)],
        phases=[square_each("squares", [1, 2], strategy=Strategy.BEST_EFFORT, concurrency=1)],
        budget=Budget(seconds=0.05),
    )
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == "exhausted"
    assert stream(store.events(result.run_id)) == [
        "run.started",
        "phase.started squares items=2",
        "dispatch.started squares squarer squares[0] #1",
        "dispatch.finished squares squarer squares[0] #1 timed_out",
        "budget.refused squares squarer squares[0] #1",
        "phase.finished squares stopped",
        "run.finished exhausted",
    ]


def test_allowance_checks() -> None:
    allowance = Allowance(tokens=100, usd=None, tool_calls=1)
    allowance.check_request(100, 0.0)
    with pytest.raises(BudgetExceeded):
        allowance.check_request(101, 0.0)
    allowance.check_tool_call()
    allowance.used.tool_calls = 1
    with pytest.raises(BudgetExceeded):
        allowance.check_tool_call()


def test_negative_or_nan_budgets_are_refused() -> None:
    with pytest.raises(ValueError, match="tokens"):
        Budget(tokens=-1)
    with pytest.raises(ValueError, match="usd"):
        Budget(usd=float("nan"))


@settings(max_examples=60, deadline=None)
@given(
    run_tokens=st.integers(0, 5000),
    run_calls=st.integers(0, 20),
    role_tokens=st.one_of(st.none(), st.integers(0, 3000)),
    per_tokens=st.one_of(st.none(), st.integers(1, 2000)),
    spends=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 5)), max_size=30),
)
def test_ledger_never_lets_spending_pass_a_limit(
    run_tokens: int,
    run_calls: int,
    role_tokens: int | None,
    per_tokens: int | None,
    spends: list[tuple[int, int]],
) -> None:
    """Whatever dispatches try to spend, the ledger and allowances keep every account in bounds."""
    roles = {"r": Budget(tokens=role_tokens)} if role_tokens is not None else {}
    ledger = Ledger(
        Budget(tokens=run_tokens, tool_calls=run_calls), roles, Budget(tokens=700, tool_calls=3)
    )
    spent_tokens = spent_calls = 0
    for want_tokens, want_calls in spends:
        reservation = ledger.reserve("r", Budget(tokens=per_tokens))
        if isinstance(reservation, Shortfall):
            continue
        allowance = Allowance(reservation.tokens, reservation.usd, reservation.tool_calls)
        try:
            allowance.check_request(want_tokens, 0.0)
            allowance.used.input_tokens += want_tokens
        except BudgetExceeded:
            pass
        for _ in range(want_calls):
            try:
                allowance.check_tool_call()
                allowance.used.tool_calls += 1
            except BudgetExceeded:
                break
        ledger.settle(reservation, allowance.used)
        spent_tokens += allowance.used.tokens
        spent_calls += allowance.used.tool_calls
        assert spent_tokens <= run_tokens
        assert spent_calls <= run_calls
        if role_tokens is not None:
            assert spent_tokens <= role_tokens
    assert ledger.spent()["tokens"] == spent_tokens


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 12),
    concurrency=st.integers(1, 6),
    run_tokens=st.integers(0, 8000),
    per_dispatch=st.integers(1100, 3000),
)
def test_runs_terminate_within_budget(
    tmp_path_factory: pytest.TempPathFactory,
    n: int,
    concurrency: int,
    run_tokens: int,
    per_dispatch: int,
) -> None:
    store = SQLiteStore(tmp_path_factory.mktemp("b") / "j.db")
    wf = agents(
        n,
        per_dispatch=Budget(tokens=per_dispatch),
        run=Budget(tokens=run_tokens),
        concurrency=concurrency,
    )
    result = asyncio.run(Foreman(wf, store).run({"topic": "x"}))
    assert result.status in ("completed", "exhausted", "waiting")
    assert result.state.usage.tokens <= run_tokens
    store.close()


def test_usage_roundtrip() -> None:
    u = Usage(
        input_tokens=3, output_tokens=4, requests=1, tool_calls=2, usd=0.5, seconds=1.0, steps=1
    )
    assert Usage.from_dict(u.to_dict()) == u
    assert callable(scripted(answer(x=1)))  # the helper builds a player


def test_a_spent_budget_refuses_instead_of_reserving_nothing() -> None:
    ledger = Ledger(Budget(tokens=1000), {}, Budget(tokens=400))
    first = ledger.reserve("r", None)
    assert isinstance(first, Reservation)
    ledger.settle(first, Usage(input_tokens=1000))
    refused = ledger.reserve("r", None)
    assert isinstance(refused, Shortfall) and "nothing left" in refused.reason
    assert refused.scope == "run"


def test_equal_budgets_share_a_plan_and_different_ones_do_not() -> None:
    ledger = Ledger(Budget(tokens=10_000), {}, Budget(tokens=400))
    a = ledger.reserve("r", Budget(tokens=1))
    b = ledger.reserve("r", Budget(tokens=2))
    assert isinstance(a, Reservation) and isinstance(b, Reservation)
    assert (a.tokens, b.tokens) == (1, 2)


async def test_other_scripts_are_estimated_at_a_token_per_byte(store: SQLiteStore) -> None:
    """The prompt goes out as UTF-8 (escapes would cost more tokens); the worst case counts every
    byte of a non-ASCII character as a token, so 300 CJK characters cannot slip under a cap that
    300 ASCII ones fit."""
    from hubspoke.specialists.agent import DEFAULT_MAX_OUTPUT_TOKENS, AgentSpecialist, _weight

    assert _weight("a" * 30) == 30
    assert _weight("中" * 30) // 3 == 90  # 3 bytes, 3 tokens
    assert _weight("é" * 30 + "a" * 3) // 3 == 61  # 2 bytes, 2 tokens; 3 ASCII, 1 token

    def echo(topic: str, cap: int) -> Workflow:
        return Workflow(
            name="echo",
            input=Topic,
            roles=[
                Role(
                    name="echoer",
                    purpose="Echo the topic.",
                    input=Topic,
                    output=Topic,
                    budget=Budget(tokens=cap),
                )
            ],
            phases=[Phase(name="echo", role="echoer", input=lambda run: run.input)],
            players={"echoer": lambda turn: answer(topic=turn.input["topic"])},
        )

    probe = Foreman(echo("x", 10**6), store)._wiring.specialists["echoer"]
    assert isinstance(probe, AgentSpecialist)
    item = WorkItem(
        run_id="r",
        phase="echo",
        key="echo",
        role="echoer",
        input=Topic(topic="中文"),
        brief=Brief(objective="Echo."),
        attempt=1,
    )
    assert '"topic":"中文"' in probe._user_prompt(item)
    ascii_prompt = 300 + 200  # the topic, and a generous allowance for the work item's JSON
    fixed = probe._schema_chars + _weight(probe._system)
    cap = (fixed + ascii_prompt) // 3 + 1 + DEFAULT_MAX_OUTPUT_TOKENS
    outcomes = {}
    for name, topic in (("ascii", "a" * 300), ("cjk", "中" * 300)):
        result = await Foreman(echo(topic, cap), store).run({"topic": topic})
        finished = [e for e in store.events(result.run_id) if e.kind is EventKind.DISPATCH_FINISHED]
        outcomes[name] = (finished[0].data["outcome"], finished[0].data["usage"]["requests"])
    assert outcomes == {"ascii": ("output", 1), "cjk": ("budget_refused", 0)}
