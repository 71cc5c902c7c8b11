"""Reading JSON text the runtime wrote: fast, and for any depth the standard library reads.

pydantic_core's parser is the fast one but stops at 200 levels of nesting; `json.loads` goes
on to Python's recursion limit (about 1,000). A value the runtime accepted and journaled must be
readable back, so the slow parser takes over where the fast one stops.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import from_json

__all__ = ["parse"]


def parse(text: str | bytes) -> Any:
    """The value of JSON `text`; raises ValueError (or RecursionError) if it is not JSON."""
    try:
        return from_json(text)
    except ValueError:
        return json.loads(text)
