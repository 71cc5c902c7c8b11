"""The journal: the append-only event stream of a run, and the stores it lives in.

`PostgresStore` is imported on first use (it needs psycopg, the ``hubspoke[postgres]`` extra).
"""

from typing import TYPE_CHECKING, Any

from hubspoke.journal.location import open_store
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

if TYPE_CHECKING:
    from hubspoke.journal.postgres import PostgresStore

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


def __getattr__(name: str) -> Any:
    if name == "PostgresStore":
        from hubspoke.journal.postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module 'hubspoke.journal' has no attribute {name!r}")
