"""How a run shares its fan-out phases with joiners: `Sharing`, the `Foreman(share=...)` switch
(the rest is `_shared`, the owner's side, and `_shard`, where items run)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LEASE_POLL", "LEASE_TTL", "Sharing", "check_lease"]

LEASE_TTL = 30.0
"""Seconds an item's lease lasts unless renewed, by default (`Sharing.ttl`, `Foreman.join`,
`hubspoke join --ttl`)."""
LEASE_POLL = 0.05
"""Seconds between a sharing process's looks at the store, by default (`Sharing.poll`)."""


def check_lease(ttl: float, poll: float) -> None:
    """Refuse a lease that could expire under a live holder: a holder renews its leases every
    third of `ttl`, at a turn of its loop (one every `poll` seconds at most).

    Raises:
        ValueError: `ttl` or `poll` is not positive, or `ttl` is less than 4 times `poll`.
    """
    if not ttl > 0 or not poll > 0:
        raise ValueError(f"Sharing ttl and poll must be positive, not {ttl}, {poll}")
    if ttl < 4 * poll:
        raise ValueError(
            f"ttl ({ttl:g}) must be at least 4 times poll ({poll:g}): a lease is renewed every "
            "third of ttl, at a look at the store every poll; with less, it expires under a "
            "live holder and another process runs the item too. Raise ttl or lower poll"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Sharing:
    """How a run's fan-out phases are shared with joiners (`Foreman(share=Sharing(...))`;
    ``share=True`` is `Sharing()`).

    Args:
        ttl: seconds an item's lease lasts unless its holder renews it (every third of it):
            how long the items of a joiner that died wait before another process takes them;
            at least 4 times `poll`.
        poll: seconds between two looks at the store for finished or free items.
        local: the owner runs items too (a shard of its own), not only joiners.
        phases: the names of the phases to share (each a phase of the workflow, else
            `Foreman` raises `ValueError`); None: every fan-out phase that can be.
        in_flight: items of a shared phase published at once (the owner's dispatches waiting
            for a shard); None: four times the phase's `concurrency`, which is what the owner's
            own shard runs at once, so that joiners find items to lease.

    Raises:
        ValueError: `ttl` or `poll` not positive, `ttl` under 4 times `poll`, `in_flight`
            under 1, or `phases` a string rather than a set of names.
    """

    ttl: float = LEASE_TTL
    poll: float = LEASE_POLL
    local: bool = True
    phases: frozenset[str] | None = None
    in_flight: int | None = None

    def __post_init__(self) -> None:
        check_lease(self.ttl, self.poll)
        if isinstance(self.phases, str):
            raise ValueError(
                f"Sharing phases is a set of phase names, not a string: "
                f"phases=frozenset({{{self.phases!r}}})"
            )
        if self.phases is not None:
            object.__setattr__(self, "phases", frozenset(self.phases))
        if self.in_flight is not None and self.in_flight < 1:
            raise ValueError(f"Sharing in_flight must be at least 1, not {self.in_flight}")
