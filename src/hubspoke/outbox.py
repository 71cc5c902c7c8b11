"""The outbox: messages a run means to send, written in the store rather than sent.

A follow-up run (the sales example's sending stage) writes each message it would send as an
`OutboxEntry`, in the same transaction as the events that decided it (`Store.append(...,
outbox=...)`). Its `key` is unique: a second entry with the same key is ignored, so a message
is written once however often the item that writes it is accepted again (a resume, a second
approval). `hubspoke outbox` lists what is there; nothing is ever sent to a real server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["OutboxEntry"]


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One message in the outbox: ``OutboxEntry(key, run_id, item, created, content)``."""

    key: str
    """Unique over the store: the message's identity (e.g. the approved card it sends). A
    second entry with a stored key is ignored, the first one kept."""
    run_id: str
    """The run that wrote it."""
    item: str
    """The item key that wrote it."""
    created: float
    """Unix time, seconds."""
    content: dict[str, Any]
    """The message, by field name (JSON values)."""
