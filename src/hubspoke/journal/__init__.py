"""The journal: the append-only event stream of a run, and the stores it lives in.

Each name is imported from its module on first use, so that importing one light module of
the package (`hubspoke.journal.urls`, which `hubspoke --help` needs to describe ``--db``)
does not import the writer, the stores and the fold. `PostgresStore` needs psycopg (the
``hubspoke[postgres]`` extra).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hubspoke.journal.location import open_store
    from hubspoke.journal.postgres import PostgresStore
    from hubspoke.journal.redaction import Redactor
    from hubspoke.journal.sqlite import SQLiteStore
    from hubspoke.journal.state import (
        CardState,
        ItemState,
        PhaseState,
        PlanState,
        RouteState,
        RunState,
        ToolCallState,
    )
    from hubspoke.journal.store import LeasedItem, RunRecord, Store
    from hubspoke.journal.writer import Journal

__all__ = [
    "CardState",
    "ItemState",
    "Journal",
    "LeasedItem",
    "PhaseState",
    "PlanState",
    "PostgresStore",
    "Redactor",
    "RouteState",
    "RunRecord",
    "RunState",
    "SQLiteStore",
    "Store",
    "ToolCallState",
    "open_store",
]

_WHERE = {
    "open_store": "location",
    "PostgresStore": "postgres",
    "Redactor": "redaction",
    "SQLiteStore": "sqlite",
    "CardState": "state",
    "ItemState": "state",
    "PhaseState": "state",
    "PlanState": "state",
    "RouteState": "state",
    "RunState": "state",
    "ToolCallState": "state",
    "LeasedItem": "store",
    "RunRecord": "store",
    "Store": "store",
    "Journal": "writer",
}
"""Each public name's module in this package."""


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hubspoke.journal' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hubspoke.journal.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
