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
    question: str | None = None
    """The input field the demo's optional text argument fills (``hubspoke demo research
    "QUESTION"``); None when the demo takes no text."""


DEMOS: dict[str, Demo] = {
    "sales": Demo(
        name="sales",
        ref="hubspoke.examples.sales:workflow",
        input_name="DEMO_INPUT",
        about="research prospects, draft outreach, and park the drafts on the review board",
    ),
    "research": Demo(
        name="research",
        ref="hubspoke.examples.research:workflow",
        input_name="DEMO_INPUT",
        about="plan 1-5 searchers by the question's breadth, search a bundled corpus, "
        "synthesise an answer whose every claim cites a checked document",
        question="question",
    ),
}


def demo_input(demo: Demo, text: str | None = None) -> dict[str, Any]:
    """A copy of the demo's default input, with `text` in its question field if given.

    Raises:
        InputError: the demo's module or its input is missing or not a dict, or `text` is given
            to a demo that takes none.
    """
    if text is not None and demo.question is None:
        raise InputError(
            f"the {demo.name!r} demo takes no text argument; give its input with --input "
            "(a JSON object, or @file.json)"
        )
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
    data = copy.deepcopy(dict(value))
    if text is not None and demo.question is not None:
        data[demo.question] = text
    return data
