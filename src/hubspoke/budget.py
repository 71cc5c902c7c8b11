"""Budgets, usage and the ledger that makes them hold.

A `Budget` is a set of limits (any may be `None`, meaning unlimited). `Usage` is what a
dispatch actually spent. The `Ledger` holds one account for the run and one per role; before a
dispatch the foreman *reserves* the dispatch's worst case on every account that covers it and
refuses when any would overrun; after the dispatch it *settles* what was really spent. The
worst case is enforced inside the dispatch by an `Allowance`, so the settled amount can never
exceed the reservation: budgets hold by construction, not by after-the-fact checks.

The one place where they can be passed is a provider's own count. A model request is reserved
at its worst case *as the runtime estimates it*: the prompt at about 3 characters a token (each
byte of a non-ASCII character a whole token) plus the request's maximum output, which the
provider enforces. A provider's tokenizer may count more for the prompt: at most one token per
byte, so up to 3 times the estimate of an ASCII prompt, plus its framing of each message (a few
tokens each). What it counts is what is charged (the answer is kept; `Allowance.check_request`
then refuses the dispatch's next request), so **one request can pass its dispatch's allowance by
at most about two thirds of its prompt's ASCII characters in tokens, plus the framing**, and a
run's budget by that much for each dispatch in flight at once. A response without usage is
charged the estimate; a request cut short by a time-out, a cancellation or a crash is charged
its worst case (docs/models.md, "How usage is counted").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from hubspoke.errors import BudgetExceeded

__all__ = [
    "Allowance",
    "Budget",
    "BudgetData",
    "BudgetExceeded",
    "Ledger",
    "Reservation",
    "Usage",
    "UsageData",
]

_DIMENSIONS = ("tokens", "usd", "tool_calls", "steps")


class BudgetData(TypedDict):
    """A `Budget` as JSON (`Budget.to_dict`), as the journal records it; `None`: no limit."""

    tokens: int | None
    usd: float | None
    tool_calls: int | None
    seconds: float | None
    steps: int | None


class UsageData(TypedDict):
    """A `Usage` as JSON (`Usage.to_dict`), as the journal records it."""

    input_tokens: int
    output_tokens: int
    requests: int
    """Model requests."""
    tool_calls: int
    usd: float
    """US dollars, rounded to 8 decimals."""
    seconds: float
    """Wall time, rounded to microseconds."""
    steps: int
    """Dispatches."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """Limits for a run, a role or one dispatch. `None` means no limit on that dimension."""

    tokens: int | None = None
    """Input plus output tokens."""
    usd: float | None = None
    """Cost in US dollars, from the model's price table."""
    tool_calls: int | None = None
    """Tool calls made by specialists."""
    seconds: float | None = None
    """Wall time. Per run: a deadline; per dispatch: a time-out."""
    steps: int | None = None
    """Dispatches (every attempt counts one)."""

    def __post_init__(self) -> None:
        for name in ("tokens", "usd", "tool_calls", "seconds", "steps"):
            value = getattr(self, name)
            if value is not None and (value != value or value < 0):  # NaN or negative
                raise ValueError(f"Budget.{name} must be a non-negative number, got {value!r}")

    def tighter(self, other: Budget) -> Budget:
        """The smaller limit of the two on every dimension (`None` is no limit)."""

        def least(x: Any, y: Any) -> Any:
            return y if x is None else x if y is None else min(x, y)

        return Budget(
            tokens=least(self.tokens, other.tokens),
            usd=least(self.usd, other.usd),
            tool_calls=least(self.tool_calls, other.tool_calls),
            seconds=least(self.seconds, other.seconds),
            steps=least(self.steps, other.steps),
        )

    def to_dict(self) -> BudgetData:
        return {
            "tokens": self.tokens,
            "usd": self.usd,
            "tool_calls": self.tool_calls,
            "seconds": self.seconds,
            "steps": self.steps,
        }


@dataclass(slots=True)
class Usage:
    """What one or more dispatches spent."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    tool_calls: int = 0
    usd: float = 0.0
    seconds: float = 0.0
    steps: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.requests += other.requests
        self.tool_calls += other.tool_calls
        self.usd += other.usd
        self.seconds += other.seconds
        self.steps += other.steps

    @staticmethod
    def add_dict_to(other: UsageData, *totals: Usage) -> None:
        """Add a usage read from the journal to each of `totals`, reading the dict once."""
        get: Callable[..., Any] = other.get  # one lookup of the method (a hot path)
        it, ot = int(get("input_tokens", 0)), int(get("output_tokens", 0))
        rq, tc = int(get("requests", 0)), int(get("tool_calls", 0))
        usd, sec, st = float(get("usd", 0.0)), float(get("seconds", 0.0)), int(get("steps", 0))
        for t in totals:
            t.input_tokens += it
            t.output_tokens += ot
            t.requests += rq
            t.tool_calls += tc
            t.usd += usd
            t.seconds += sec
            t.steps += st

    def to_dict(self) -> UsageData:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "requests": self.requests,
            "tool_calls": self.tool_calls,
            "usd": round(self.usd, 8),
            "seconds": round(self.seconds, 6),
            "steps": self.steps,
        }

    @classmethod
    def from_dict(cls, data: UsageData) -> Usage:
        return cls(
            input_tokens=int(data.get("input_tokens", 0)),
            output_tokens=int(data.get("output_tokens", 0)),
            requests=int(data.get("requests", 0)),
            tool_calls=int(data.get("tool_calls", 0)),
            usd=float(data.get("usd", 0.0)),
            seconds=float(data.get("seconds", 0.0)),
            steps=int(data.get("steps", 0)),
        )


@dataclass(slots=True)
class _Amount:
    tokens: float = 0
    usd: float = 0.0
    tool_calls: float = 0
    steps: float = 0

    def get(self, dimension: str) -> float:
        return float(getattr(self, dimension))


@dataclass(slots=True)
class _Account:
    name: str
    limit: Budget
    scope: Literal["run", "role"] = "run"
    spent: _Amount = field(default_factory=_Amount)
    reserved: _Amount = field(default_factory=_Amount)

    def shortfall(self, amount: _Amount, dims: tuple[str, ...] = _DIMENSIONS) -> str | None:
        spent, reserved = self.spent, self.reserved
        for dim in dims:
            cap = getattr(self.limit, dim)
            if cap is None:
                continue
            needed = getattr(amount, dim)
            used = getattr(spent, dim) + getattr(reserved, dim)
            if used + needed > cap + 1e-12:
                return (
                    f"{self.name} {dim}: reserving {needed:g} would pass the limit {cap:g} "
                    f"({used:g} used or reserved)"
                )
        return None

    def left(self, dimension: str) -> float | None:
        cap: float | None = getattr(self.limit, dimension)
        if cap is None:
            return None
        return max(0.0, cap - self.spent.get(dimension) - self.reserved.get(dimension))


def _amount(caps: dict[str, float | None]) -> _Amount:
    """What a dispatch with these caps reserves (one step)."""
    return _Amount(caps["tokens"] or 0, caps["usd"] or 0.0, caps["tool_calls"] or 0, 1)


@dataclass(frozen=True, slots=True)
class _Plan:
    accounts: tuple[_Account, ...]
    fixed: dict[str, float | None]
    """Per-dispatch caps the role sets (None where it sets none)."""
    dynamic: tuple[str, ...]
    """Dimensions some account limits but the role does not cap: sized per dispatch."""
    limited: tuple[tuple[_Account, tuple[str, ...]], ...]
    """Each account with the dimensions it limits: the only ones worth checking."""
    amount: _Amount | None
    """What every dispatch reserves, when it does not depend on what is left (no `dynamic`
    dimension); read, never changed."""


@dataclass(frozen=True, slots=True)
class Shortfall:
    """Why the ledger refused a dispatch: which account could not cover it."""

    scope: Literal["run", "role"]
    """``run``: the run's own limits; ``role``: the role's per-run limits (`Role.run_budget`)."""
    reason: str


@dataclass(slots=True)
class Reservation:
    """What the ledger set aside for one dispatch; the dispatch's allowance is exactly this."""

    role: str
    tokens: int | None
    usd: float | None
    tool_calls: int | None
    from_leftover: bool = False
    """Sized by what an account had left, not by a cap: if the dispatch runs out of it, that
    account's budget is what ran out."""
    leftover_of: Literal["run", "role"] = "run"
    """The account whose leftover sized it (meaningful when `from_leftover`)."""


@dataclass(slots=True)
class Allowance:
    """What one dispatch may spend. Specialists draw from it; they never see the ledger."""

    tokens: int | None
    usd: float | None
    tool_calls: int | None
    used: Usage = field(default_factory=Usage)

    def check_request(self, tokens: int, usd: float) -> None:
        """Raise `BudgetExceeded` unless a model request of this worst case still fits.

        Once a provider has counted past the allowance (see the module's docstring for how far
        one request can), every further request of the dispatch is refused here."""
        if self.tokens is not None and self.used.tokens + tokens > self.tokens:
            raise BudgetExceeded("tokens", tokens, self.tokens - self.used.tokens)
        if self.usd is not None and self.used.usd + usd > self.usd + 1e-12:
            raise BudgetExceeded("usd", usd, self.usd - self.used.usd)

    def check_tool_call(self) -> None:
        """Raise `BudgetExceeded` unless one more tool call fits."""
        if self.tool_calls is not None and self.used.tool_calls + 1 > self.tool_calls:
            raise BudgetExceeded("tool_calls", 1, self.tool_calls - self.used.tool_calls)

    def remaining(self) -> Budget:
        return Budget(
            tokens=None if self.tokens is None else max(0, self.tokens - self.used.tokens),
            usd=None if self.usd is None else max(0.0, self.usd - self.used.usd),
            tool_calls=(
                None if self.tool_calls is None else max(0, self.tool_calls - self.used.tool_calls)
            ),
        )


class Ledger:
    """Accounts for a run and for each role; reserve before a dispatch, settle after.

    `settle` records what the dispatch really spent, which a provider's own count can make more
    than was reserved: by at most one request per dispatch, of at most about two thirds of that
    request's ASCII prompt characters in tokens plus per-message framing (the module's docstring
    says why). The next `reserve` then sees the account with less left, or refuses.

    Args:
        run: the run's limits.
        roles: each role's per-run limits.
        dispatch_default: the worst case reserved for a dispatch whose role sets no per-dispatch
            cap on a dimension that some account limits. Without it such a dispatch could not be
            bounded, so a limited dimension always gets a cap.
    """

    def __init__(
        self,
        run: Budget,
        roles: dict[str, Budget],
        dispatch_default: Budget,
    ) -> None:
        self._run = _Account("run", run)
        self._roles = {
            name: _Account(f"role {name}", limit, "role") for name, limit in roles.items()
        }
        self._default = dispatch_default
        self._plans: dict[tuple[str, Budget | None], _Plan] = {}
        self._last: dict[str, tuple[Budget | None, _Plan]] = {}
        """Each role's latest plan with the cap it was made for: the same (immutable) cap
        object again needs no hashing of the budget."""

    def _accounts(self, role: str) -> tuple[_Account, ...]:
        account = self._roles.get(role)
        return (self._run,) if account is None else (self._run, account)

    def _plan(self, role: str, per_dispatch: Budget | None) -> _Plan:
        """What a dispatch of `role` reserves: worked out once per role, not per dispatch."""
        last = self._last.get(role)
        if last is not None and last[0] is per_dispatch:
            return last[1]
        key = (role, per_dispatch)
        plan = self._plans.get(key)
        if plan is None:
            accounts = self._accounts(role)
            fixed: dict[str, float | None] = {}
            dynamic: list[str] = []
            for dim in ("tokens", "usd", "tool_calls"):
                cap = None if per_dispatch is None else getattr(per_dispatch, dim)
                if cap is None and any(getattr(a.limit, dim) is not None for a in accounts):
                    dynamic.append(dim)
                fixed[dim] = cap
            limited = tuple(
                (a, tuple(d for d in _DIMENSIONS if getattr(a.limit, d) is not None))
                for a in accounts
            )
            amount = None if dynamic else _amount(fixed)
            plan = self._plans[key] = _Plan(accounts, fixed, tuple(dynamic), limited, amount)
        self._last[role] = (per_dispatch, plan)
        return plan

    def reserve(self, role: str, per_dispatch: Budget | None) -> Reservation | Shortfall:
        """Reserve the worst case of one dispatch of `role`, or say which account cannot."""
        plan = self._plan(role, per_dispatch)
        accounts = plan.accounts
        caps = plan.fixed
        clipped_by: set[str] = set()
        amount = plan.amount
        if amount is None:
            caps = dict(caps)
            for dim in plan.dynamic:
                # The role sets no cap: reserve the default, or whatever is left if that is
                # less (nothing else may then run against the same limit meanwhile).
                lefts = [(x, a) for a in accounts if (x := a.left(dim)) is not None]
                left, tightest = min(lefts, key=lambda pair: pair[0])
                if left <= 0:
                    return Shortfall(
                        tightest.scope,
                        f"{tightest.name} {dim}: nothing left to reserve for a dispatch of {role}",
                    )
                default = getattr(self._default, dim)
                if default is None or left < default:
                    clipped_by.add(tightest.scope)
                caps[dim] = left if default is None else min(default, left)
            amount = _amount(caps)
        for account, dims in plan.limited:
            if dims:
                reason = account.shortfall(amount, dims)
                if reason is not None:
                    return Shortfall(account.scope, reason)
        for account in accounts:
            reserved = account.reserved
            reserved.tokens += amount.tokens
            reserved.usd += amount.usd
            reserved.tool_calls += amount.tool_calls
            reserved.steps += 1
        tokens, usd, tool_calls = caps["tokens"], caps["usd"], caps["tool_calls"]
        return Reservation(
            role,
            None if tokens is None else int(tokens),
            usd,
            None if tool_calls is None else int(tool_calls),
            bool(clipped_by),
            # The run's leftover ending is the run's end, whatever else clipped the dispatch.
            "role" if clipped_by == {"role"} else "run",
        )

    def settle(self, reservation: Reservation, used: Usage) -> None:
        """Release a reservation and record what the dispatch really spent."""
        tokens, usd = reservation.tokens or 0, reservation.usd or 0.0
        tool_calls = reservation.tool_calls or 0
        for account in self._accounts(reservation.role):
            reserved = account.reserved
            reserved.tokens -= tokens
            reserved.usd -= usd
            reserved.tool_calls -= tool_calls
            reserved.steps -= 1
            self._charge(account, used)

    def restore(self, role: str, used: Usage) -> None:
        """Charge usage recorded in the journal (used when a run is resumed)."""
        for account in self._accounts(role):
            self._charge(account, used)

    @staticmethod
    def _charge(account: _Account, used: Usage) -> None:
        spent = account.spent
        spent.tokens += used.tokens
        spent.usd += used.usd
        spent.tool_calls += used.tool_calls
        spent.steps += used.steps

    def spent(self) -> dict[str, float]:
        s = self._run.spent
        return {"tokens": s.tokens, "usd": s.usd, "tool_calls": s.tool_calls, "steps": s.steps}
