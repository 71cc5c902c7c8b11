"""JSON values at the runtime's edges: reading back what it wrote, checking what it is given.

pydantic_core's parser is the fast one but stops at 200 levels of nesting; `json.loads` goes
on to Python's recursion limit (about 1,000). A value the runtime accepted and journaled must be
readable back, so the slow parser takes over where the fast one stops.

What the runtime is given (a run's input, a hand-off between phases) must be a JSON value it
can journal: finite numbers only, nested at most `MAX_DEPTH` levels. `check_json_value` says
where a value breaks either rule, without recursion, so it also answers for values nested far
deeper than Python's recursion limit.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from pydantic_core import from_json

__all__ = ["MAX_DEPTH", "check_json_value", "parse"]

MAX_DEPTH = 200
"""How many levels a value the runtime is given may nest (an object holding a list is two):
what pydantic_core's JSON parser reads, which also validates every output."""


def parse(text: str | bytes) -> Any:
    """The value of JSON `text`; raises ValueError (or RecursionError) if it is not JSON."""
    try:
        return from_json(text)
    except ValueError:
        return json.loads(text)


def _path(steps: list[str | int]) -> str:
    text = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")
    return text or "(root)"


def check_json_value(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Refuse a value JSON cannot hold or that nests too deeply; `None` when it is fine.

    Walks dicts, lists and tuples (at any depth, without recursion); other values are left to
    the schema that validates them.

    Args:
        value: a parsed JSON value, or the Python value to be turned into one.
        max_depth: how many levels of dicts and lists may nest (`{"a": [1]}` nests two).

    Raises:
        ValueError: a float (or Decimal) is NaN or infinite, naming where (``items[2].price``);
            or the value nests deeper than `max_depth`.
    """
    # (value, depth of the containers holding it, index of its parent step, its own step)
    steps: list[tuple[int, str | int]] = []
    stack: list[tuple[Any, int, int]] = [(value, 0, -1)]
    while stack:
        current, depth, step = stack.pop()
        if isinstance(current, dict | list | tuple):
            if depth >= max_depth:
                raise ValueError(
                    f"it nests more than {max_depth} levels deep; a JSON value may nest at "
                    f"most {max_depth} levels (objects and lists inside one another)"
                )
            children = current.items() if isinstance(current, dict) else enumerate(current)
            for key, child in children:
                if isinstance(child, dict | list | tuple | float | Decimal):
                    steps.append((step, key if isinstance(key, int | str) else repr(key)))
                    stack.append((child, depth + 1, len(steps) - 1))
        elif isinstance(current, float | Decimal) and not (
            math.isfinite(current) if isinstance(current, float) else current.is_finite()
        ):
            path: list[str | int] = []
            while step != -1:
                step, key = steps[step]
                path.append(key)
            shown = "NaN" if current != current else ("-" if current < 0 else "") + "Infinity"
            if shown != "NaN":
                shown += " (or a number too large for a float)"
            raise ValueError(
                f"the number at {_path(path[::-1])} is {shown}, which JSON cannot hold: give a "
                "finite number (or null, where the schema allows it)"
            )
