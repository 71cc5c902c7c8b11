"""Workflow shapes: what a resumed run must find unchanged, and how to say what changed.

`Workflow.shape()` describes a workflow as JSON (its roles' schemas, tools and fallbacks; its
phases' roles and strategies); the foreman records it when a run starts. `shape_changes` compares
that record with the workflow a resume is given, one sentence per change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["SHAPE_VERSION", "schema_shape", "shape_changes"]


SHAPE_VERSION = 1
"""Version of what `Workflow.shape` describes; shapes of different versions are not compared."""

_NOTES = frozenset({"title", "description", "examples", "$comment"})
"""Schema keywords that document and never change what validates."""
_SCHEMA_MAPS = frozenset({"properties", "$defs", "definitions", "patternProperties"})
"""Keywords whose value maps names to schemas: the names are not keywords."""
_DATA = frozenset({"default", "const", "enum"})
"""Keywords whose value is data, kept as it is."""


def _contract(node: Any, names: bool = False) -> Any:
    """A JSON schema without its notes (titles, descriptions, examples)."""
    if isinstance(node, dict):
        if names:
            return {k: _contract(v) for k, v in node.items()}
        return {
            k: v if k in _DATA else _contract(v, k in _SCHEMA_MAPS)
            for k, v in node.items()
            if k not in _NOTES
        }
    if isinstance(node, list | tuple):
        return [_contract(v) for v in node]
    return node


def schema_shape(schema: type[BaseModel]) -> Any:
    """The JSON schema of `schema` without its notes: what validates, nothing that documents."""
    try:
        return _contract(schema.model_json_schema())
    except Exception:  # a type with no JSON schema (arbitrary_types_allowed): the class then
        return {"class": f"{schema.__module__}.{schema.__qualname__}"}


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return repr(value) if isinstance(value, str) else str(value)


_KINDS = {"agent": "an agent", "function": "a function", "workflow": "a sub-workflow"}
_WHAT = {
    "input": "input schema",
    "output": "output schema",
    "fan_out": "fan-out (over=)",
    "select": "TopK size (select=)",
    "review": "review gate",
}


def _changed(where: str, key: str, old: Any, new: Any) -> str:
    what = _WHAT.get(key, key)
    if key in ("input", "output") or isinstance(old, dict | list) or isinstance(new, dict | list):
        return f"{where}: {what} changed"
    if key == "kind":
        return f"{where}: was {_KINDS.get(old, _show(old))}, now {_KINDS.get(new, _show(new))}"
    return f"{where}: {what} changed (was {_show(old)}, now {_show(new)})"


def _entries(old: Mapping[str, Any], new: Mapping[str, Any], where: str) -> list[str]:
    """Differences between two entries (a role's or a phase's), one sentence each."""
    changes: list[str] = []
    for key in dict.fromkeys([*old, *new]):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if key == "tools" and isinstance(before, dict) and isinstance(after, dict):
            for tool in dict.fromkeys([*before, *after]):
                if tool not in after:
                    changes.append(f"{where}: tool {tool!r} was removed")
                elif tool not in before:
                    changes.append(f"{where}: tool {tool!r} was added")
                elif before[tool] != after[tool]:
                    changes.append(f"{where}: the arguments of tool {tool!r} changed")
        elif key == "workflow" and isinstance(before, dict) and isinstance(after, dict):
            changes += [f"{where}, sub-workflow: {c}" for c in shape_changes(before, after)]
        else:
            changes.append(_changed(where, key, before, after))
    return changes


def _named_changes(what: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What was removed, added or changed among named entries (roles, phases), in order."""
    changes: list[str] = []
    for name in dict.fromkeys([*old, *new]):
        if name not in new:
            changes.append(f"{what} {name!r} was removed")
        elif name not in old:
            changes.append(f"{what} {name!r} was added")
        else:
            changes += _entries(old[name], new[name], f"{what} {name!r}")
    return changes


def shape_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What changed from one `Workflow.shape` to another, one sentence each.

    For example ``"role 'writer': output schema changed"``, ``"phase 'draft' was removed"``,
    ``"phase 'review': strategy changed (was 'fail_fast', now 'best_effort')"``.

    Args:
        old: the shape the run recorded when it started.
        new: the shape of the workflow it is resumed with.

    Returns:
        The changes, in the order of the shape; empty when nothing a resumed run depends on
        changed, or when the shapes are of different versions (`SHAPE_VERSION`) and cannot be
        compared.
    """
    if old.get("version") != new.get("version"):
        return []
    changes: list[str] = []
    if old.get("name") != new.get("name"):
        changes.append(_changed("the workflow", "name", old.get("name"), new.get("name")))
    if old.get("input") != new.get("input"):
        changes.append("the run's input schema changed")
    old_roles: Mapping[str, Any] = old.get("roles") or {}
    new_roles: Mapping[str, Any] = new.get("roles") or {}
    changes += _named_changes("role", old_roles, new_roles)
    old_phases = {p["name"]: p for p in old.get("phases") or []}
    new_phases = {p["name"]: p for p in new.get("phases") or []}
    changes += _named_changes("phase", old_phases, new_phases)
    kept_before = [n for n in old_phases if n in new_phases]
    kept_after = [n for n in new_phases if n in old_phases]
    if kept_before != kept_after:
        changes.append(
            f"the phases run in another order (was {', '.join(kept_before)}; now "
            f"{', '.join(kept_after)})"
        )
    return changes
