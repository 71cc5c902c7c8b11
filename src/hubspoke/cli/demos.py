"""The bundled examples `hubspoke demo NAME` runs offline."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hubspoke.errors import InputError

__all__ = ["DEMOS", "Demo", "demo_input"]


@dataclass(frozen=True, slots=True)
class Demo:
    """One bundled example: its workflow reference and the input it runs on by default."""

    name: str
    ref: str
    """``package.module:NAME`` of the workflow."""
    input_name: str
    """Name, in the workflow's module, of the default input (a dict)."""
    about: str


DEMOS: dict[str, Demo] = {
    "sales": Demo(
        name="sales",
        ref="hubspoke.examples.sales:workflow",
        input_name="DEMO_INPUT",
        about="research prospects, draft outreach, and park the drafts on the review board",
    ),
}


def demo_input(demo: Demo) -> dict[str, Any]:
    """A copy of the demo's default input.

    Raises:
        InputError: the demo's module or its input is missing or not a dict.
    """
    module_name = demo.ref.rpartition(":")[0]
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InputError(f"the {demo.name!r} demo cannot be imported ({e})") from None
    value = getattr(module, demo.input_name, None)
    if not isinstance(value, Mapping):
        raise InputError(
            f"the {demo.name!r} demo has no default input: {module_name}.{demo.input_name} "
            "should be a dict"
        )
    return copy.deepcopy(dict(value))
