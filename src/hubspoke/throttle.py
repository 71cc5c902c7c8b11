"""Holding requests to a provider that is throttled or down, shared per endpoint.

A provider that answers 429 (rate limited), 5xx, times out or drops the connection is not a
reason to spend an attempt: it is a reason to wait. When one request meets such a fault, its
endpoint's `Gate` is *held*: no request to that endpoint leaves the process until the hold
ends, whichever run, item or sub-run makes it. That is what keeps a rate limit from becoming a
retry storm when eight items hit it at once.

How long a hold lasts: the provider's ``Retry-After`` when it sent one (never less), otherwise
bounded exponential backoff with jitter (`Backoff`): the n-th fault in a row on an endpoint holds
it for half of ``min(cap, first * 2 ** (n - 1))``, and every request held by it (the faulted
ones, and those that wait in `Gate.ready`) goes at its own random moment in the other half
("equal jitter", as in the AWS Architecture Blog's "Exponential Backoff And Jitter", 2015): so
that requests told the same thing do not all come back together. A ``Retry-After`` hold's
jitter is on top of what was asked (at most a tenth of it, and 1 s).

Faults *in a row* are faults of requests sent one after the other: a fault counts towards the
growth only if its request was sent after the current hold began (`Gate.fault`'s `sent`).
Eight requests in flight when the provider fails meet one outage, not eight in a row; each of
their faults still holds the gate at least as long as the current count says. A request that
succeeds resets the count.

Gates are kept per endpoint for the whole process (`gate_for`): rate limits belong to an
endpoint and its key, not to one run. Time is `time.monotonic()` seconds.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass

__all__ = ["Backoff", "Gate", "gate_for"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Bounded exponential backoff with jitter, in seconds.

    Args:
        first: the bound of the first hold.
        cap: no hold without ``Retry-After`` is longer than this.
        retry_after_cap: a provider's ``Retry-After`` longer than this is cut to it (a provider
            asking for an hour should not stall a run for an hour; the card's `max_waits`
            and the run's deadline bound the rest).

    Raises:
        ValueError: a negative or non-finite value, or `cap` below `first`.
    """

    first: float = 1.0
    cap: float = 30.0
    retry_after_cap: float = 120.0

    def __post_init__(self) -> None:
        for name in ("first", "cap", "retry_after_cap"):
            value = getattr(self, name)
            if not (0 <= value < float("inf")):
                raise ValueError(f"Backoff.{name} must be a finite number >= 0, got {value!r}")
        if self.cap < self.first:
            raise ValueError(f"Backoff.cap ({self.cap}) must be at least first ({self.first})")

    def bound(self, faults: int) -> float:
        """The longest hold after `faults` faults in a row (1 for the first)."""
        return min(self.cap, self.first * 2.0 ** max(0, min(faults - 1, 60)))

    def window(self, faults: int, retry_after: float | None) -> tuple[float, float]:
        """The hold after `faults` faults in a row: ``(held, jitter)``, seconds. No request goes
        for `held` seconds; each then goes at its own random moment in the next `jitter`."""
        if retry_after is not None and retry_after > 0:
            # Honour Retry-After: never less than asked (up to the cap), jitter on top so that
            # many clients told the same second do not all come back in it.
            asked = min(retry_after, self.retry_after_cap)
            return asked, min(1.0, asked / 10)
        bound = self.bound(faults)
        return bound / 2, bound / 2

    def hold(self, faults: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds one request waits after its endpoint's `faults`-th fault in a row: the
        `window`'s hold and a random share of its jitter."""
        held, jitter = self.window(faults, retry_after)
        return held + rng.uniform(0, jitter)


class Gate:
    """One endpoint's hold: requests wait in `ready` until it ends.

    Safe to use from several event loops and threads (a sub-run may run on its own loop).

    Args:
        endpoint: what the gate holds (a base URL).
        rng: draws the jitter of each request's wait; seed it to make the draws repeatable.
    """

    __slots__ = ("_faults", "_jitter", "_lock", "_rng", "_since", "_until", "endpoint")

    def __init__(self, endpoint: str, rng: random.Random | None = None) -> None:
        self.endpoint = endpoint
        self._until = 0.0
        """When the hold ends (no request goes before)."""
        self._jitter = 0.0
        """How far past `_until` each held request's own moment may fall."""
        self._since = float("-inf")
        """When the current hold began: a fault of a request sent before it is not one more
        in a row."""
        self._faults = 0
        self._lock = threading.Lock()
        self._rng = rng or random.Random()

    @property
    def held_for(self) -> float:
        """Seconds until the hold ends (0 when the gate is open)."""
        return max(0.0, self._until - time.monotonic())

    def fault(
        self, backoff: Backoff, retry_after: float | None = None, *, sent: float | None = None
    ) -> float:
        """Record a throttled or failed request and hold the gate.

        Args:
            backoff: how long to hold it.
            retry_after: the provider's ``Retry-After``, seconds, if it sent one.
            sent: when the request left (`time.monotonic()` seconds); `None`: just now. A
                request sent before the current hold began met the fault that began it (it was
                in flight alongside): its fault does not count as one more in a row, and holds
                the gate only as long as the current count says (a longer hold is kept).

        Returns:
            Seconds the request's item waits: until the hold ends, and its own random share of
            the hold's jitter.
        """
        with self._lock:
            now = time.monotonic()
            if sent is None or sent >= self._since or not self._faults:
                self._faults += 1
                self._since = now
            held, jitter = backoff.window(self._faults, retry_after)
            if now + held >= self._until:
                self._until, self._jitter = now + held, jitter
            return self._until - now + self._rng.uniform(0, self._jitter)

    def ok(self) -> None:
        """Record a request that succeeded: the next fault starts the backoff afresh."""
        if self._faults:
            with self._lock:
                self._faults = 0

    async def ready(self) -> float:
        """Wait until the gate is open, and then for this waiter's own random share of the
        hold's jitter, so that the requests held do not all go at once; return the seconds
        waited (0.0 if it was open).

        A hold made longer while waiting is waited out too. Cancellable.
        """
        waited = 0.0
        while (left := self._until - time.monotonic()) > 0:
            with self._lock:
                left += self._rng.uniform(0, self._jitter)
            await asyncio.sleep(left)
            waited += left
        return waited


_GATES: dict[str, Gate] = {}
_GATES_LOCK = threading.Lock()


def gate_for(endpoint: str) -> Gate:
    """The process's gate for `endpoint` (a base URL, or a provider name when the SDK picks the
    URL), made on first use."""
    gate = _GATES.get(endpoint)
    if gate is None:
        with _GATES_LOCK:
            gate = _GATES.setdefault(endpoint, Gate(endpoint))
    return gate
