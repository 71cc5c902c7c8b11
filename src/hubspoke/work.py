"""Work items: one typed dispatch of a role, with its brief."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

__all__ = ["Brief", "WorkItem"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Brief:
    """What the foreman tells a specialist about the item beyond its input."""

    objective: str
    """What this item must achieve."""
    scope: str = ""
    """Where the item's edges are."""
    output_format: str = ""
    """How the output should look, beyond its schema."""
    siblings: str = ""
    """What sibling items cover, so the specialist does not duplicate them."""

    def to_dict(self) -> dict[str, str]:
        return {
            "objective": self.objective,
            "scope": self.scope,
            "output_format": self.output_format,
            "siblings": self.siblings,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkItem:
    """One dispatch: a role, its validated input and its brief, at a given attempt."""

    run_id: str
    phase: str
    key: str
    """Stable id of the item within its run, e.g. ``"contacts[3]"``; the same after resume."""
    role: str
    input: BaseModel
    brief: Brief
    attempt: int
    correction: str | None = None
    """What was wrong with the previous attempt, fed back for this one."""

    @property
    def idempotency_key(self) -> str:
        """``run:item``: the same for every attempt of the item (retries, fallback roles,
        rounds) and across crashes and resumes. Key the item's side effects with it, so that
        they happen once whatever attempt makes them."""
        return f"{self.run_id}:{self.key}"

    @property
    def attempt_key(self) -> str:
        """``run:item:role:attempt``: the same for this attempt across crashes and resumes (a
        dispatch in flight at a crash runs again with it), different for every other attempt
        of the item."""
        return f"{self.run_id}:{self.key}:{self.role}:{self.attempt}"
