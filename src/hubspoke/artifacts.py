"""Artifacts: accepted outputs, stored once and passed by reference."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Artifact", "artifact_id"]


def artifact_id(run_id: str, item: str, content_json: str) -> str:
    """A stable id: the same item accepting the same content gets the same id after a resume."""
    digest = hashlib.sha256(f"{run_id}\0{item}\0{content_json}".encode()).hexdigest()
    return f"art_{digest[:20]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Artifact:
    id: str
    run_id: str
    phase: str
    role: str
    item: str
    schema: str
    """Qualified name of the output model."""
    content: dict[str, Any]
    created: float
    content_json: str | None = field(default=None, compare=False, repr=False)
    """`content` already encoded, when the foreman has it (saves encoding it twice)."""
