"""Outcomes: the typed result of one dispatch.

The kind of an outcome encodes the decision that follows (see `Outcome.rung`): invalid output
and time-outs are retried with a correction; a scope violation goes straight to the fallback;
a needs-human request escalates; a budget refusal ends the run in its declared budget state;
a throttled or unavailable provider is waited for, without spending an attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from hubspoke.budget import Usage

__all__ = ["RETRYABLE", "WAITABLE", "Outcome", "OutcomeKind"]


class OutcomeKind(StrEnum):
    OUTPUT = "output"
    """The specialist produced an output that validated against the role's schema."""
    INVALID = "invalid"
    """The output failed validation (or the phase's evaluator rejected it)."""
    SCOPE_VIOLATION = "scope_violation"
    """The specialist judged the item outside its card."""
    NEEDS_HUMAN = "needs_human"
    """The specialist asked for a human decision."""
    FAILED = "failed"
    """The specialist raised an exception or the provider failed."""
    TIMED_OUT = "timed_out"
    """The attempt ran past its time-out."""
    BUDGET_REFUSED = "budget_refused"
    """The dispatch's allowance could not cover the next model request or tool call."""
    THROTTLED = "throttled"
    """The provider refused the request for its rate limit (HTTP 429)."""
    UNAVAILABLE = "unavailable"
    """The provider could not serve the request: a 5xx answer, a time-out at the transport,
    a refused or dropped connection."""


RETRYABLE = frozenset({OutcomeKind.INVALID, OutcomeKind.FAILED, OutcomeKind.TIMED_OUT})
WAITABLE = frozenset({OutcomeKind.THROTTLED, OutcomeKind.UNAVAILABLE})
"""Outcomes that say nothing about the item, only that its provider cannot serve it now: the
item waits and is dispatched again at the same place on its ladder."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What came back from one dispatch, always with its usage. Immutable: the foreman makes a
    new outcome (`dataclasses.replace`) when it validates, times or judges one."""

    kind: OutcomeKind
    raw: Any = None
    """What the specialist returned, before validation."""
    output: BaseModel | None = None
    """The validated output; set by the foreman, never by a specialist."""
    errors: list[dict[str, Any]] = field(default_factory=list)
    """Validation errors of an invalid output, as pydantic reports them."""
    message: str = ""
    """The reason, question, error or critique, in words."""
    usage: Usage = field(default_factory=Usage)
    trace: list[dict[str, Any]] = field(default_factory=list)
    """Model exchanges and tool calls made during the dispatch, journaled by the foreman."""
    wait: float | None = None
    """For a throttled or unavailable outcome: seconds from its end until its endpoint takes
    requests again (the provider's ``Retry-After`` or the backoff), if known."""

    @property
    def retryable(self) -> bool:
        """Whether another attempt of the same role, with a correction, may help."""
        return self.kind in RETRYABLE

    def correction(self) -> str:
        """The feedback a retry receives: the exact errors, or the critique."""
        if self.errors:
            lines = [
                f"- {'.'.join(str(p) for p in e.get('loc', ())) or '(root)'}: {e.get('msg', '')}"
                for e in self.errors
            ]
            return "Your previous output was invalid:\n" + "\n".join(lines)
        return f"Your previous attempt failed ({self.kind.value}): {self.message}"
