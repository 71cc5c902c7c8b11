"""The journal: the append-only event stream of a run, and the stores it lives in."""

from hubspoke.journal.redaction import Redactor
from hubspoke.journal.sqlite import SQLiteStore
from hubspoke.journal.state import CardState, ItemState, PhaseState, RunState, ToolCallState
from hubspoke.journal.store import RunRecord, Store
from hubspoke.journal.writer import Journal

__all__ = [
    "CardState",
    "ItemState",
    "Journal",
    "PhaseState",
    "Redactor",
    "RunRecord",
    "RunState",
    "SQLiteStore",
    "Store",
    "ToolCallState",
]
