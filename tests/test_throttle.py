"""Holds on a throttled or unavailable endpoint: how long, and that they are shared."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubspoke.throttle import Backoff, Gate, gate_for

BACKOFF = Backoff(first=1.0, cap=30.0, retry_after_cap=120.0)


@given(
    faults=st.integers(min_value=1, max_value=10_000),
    retry_after=st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False),
    seed=st.integers(),
)
def test_a_hold_honours_retry_after_and_is_bounded(
    faults: int, retry_after: float | None, seed: int
) -> None:
    hold = BACKOFF.hold(faults, retry_after, random.Random(seed))
    if retry_after is not None and retry_after > 0:
        asked = min(retry_after, BACKOFF.retry_after_cap)
        assert asked <= hold <= asked + 1.0  # never less than asked, a little jitter on top
    else:
        bound = min(BACKOFF.cap, 2.0 ** min(faults - 1, 60))
        assert bound / 2 <= hold <= bound  # equal jitter under the doubling bound


def test_the_bound_doubles_up_to_the_cap() -> None:
    assert [BACKOFF.bound(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize(
    "changes", [{"first": -1.0}, {"cap": float("inf")}, {"first": 2.0, "cap": 1.0}]
)
def test_a_backoff_that_cannot_work_is_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**changes)


def test_faults_in_a_row_grow_the_hold_and_a_success_resets_it() -> None:
    gate = Gate("http://127.0.0.1:1/v1", rng=random.Random(0))
    backoff = Backoff(first=10.0, cap=1000.0)
    first = gate.fault(backoff)
    second = gate.fault(backoff)
    assert 5.0 <= first <= 10.0 and 10.0 <= second <= 20.0
    assert gate.held_for > 0
    gate.ok()
    gate.fault(backoff)
    assert gate.held_for > 9.0  # a hold already longer is kept...
    fresh = Gate("x", rng=random.Random(0))
    fresh.fault(backoff)
    fresh.ok()
    assert 5.0 <= fresh.fault(backoff) <= 10.0  # ...and the count starts again after a success


def test_one_gate_per_endpoint_for_the_whole_process() -> None:
    assert gate_for("http://127.0.0.1:9/v1") is gate_for("http://127.0.0.1:9/v1")
    assert gate_for("http://127.0.0.1:9/v1") is not gate_for("http://127.0.0.1:10/v1")


@pytest.mark.anyio
async def test_an_open_gate_does_not_wait() -> None:
    assert await Gate("y").ready() == 0.0


def test_faults_of_requests_in_flight_together_count_as_one() -> None:
    # Eight requests sent together meet one outage: the hold is the first fault's, however many
    # of them report it. A request sent after the hold began that faults is the next in a row.
    gate = Gate("http://127.0.0.1:2/v1", rng=random.Random(0))
    backoff = Backoff(first=10.0, cap=1000.0)
    sent = time.monotonic()
    waits = [gate.fault(backoff, sent=sent) for _ in range(8)]
    assert all(4.9 <= wait <= 10.0 for wait in waits)  # within the first fault's bound
    after = gate.fault(backoff, sent=time.monotonic())
    assert 9.9 <= after <= 20.0  # the second in a row
    # A fault whose send time is not known counts, as before.
    assert 19.9 <= gate.fault(backoff) <= 40.0


def test_requests_held_by_one_fault_each_go_at_their_own_moment() -> None:
    # Equal jitter per request: held for half the bound, then each at its own random moment
    # in the other half, not all at the hold's end.
    gate = Gate("http://127.0.0.1:3/v1", rng=random.Random(0))
    sent = time.monotonic()
    waits = [gate.fault(Backoff(first=10.0, cap=10.0), sent=sent) for _ in range(8)]
    assert max(waits) - min(waits) > 2.5  # the seeded draws spread over 2.93 of the 5 s


@pytest.mark.anyio
async def test_requests_waiting_for_a_hold_each_go_at_their_own_moment() -> None:
    gate = Gate("http://127.0.0.1:4/v1", rng=random.Random(1))
    gate.fault(Backoff(first=0.2, cap=0.2))  # held 0.1 s, then each in the next 0.1 s
    waits = await asyncio.gather(*(gate.ready() for _ in range(8)))
    assert all(wait >= 0.09 for wait in waits)
    assert max(waits) - min(waits) > 0.05  # the seeded draws spread over 0.075 s
