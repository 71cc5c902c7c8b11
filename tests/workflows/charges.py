"""A cashier that charges cards through a side-effecting tool, for the exactly-once tests.

Charges go to a card processor outside the journal (`Charges`, an SQLite file named by
`CHARGES_DB`), so that a test counts what really happened. With `CHARGES_HOLD` set, the tool
blocks after charging until that file exists: a test kills the process meanwhile, inside the
tool, after the charge and before its result is journaled.

- `workflow`: the ``charge`` tool with a reconcile function that looks the charge up by its
  idempotency key.
- `unreconciled`: the same workflow, the tool without a reconcile function.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from hubspoke import Context, Phase, Role, Tool, Workflow
from hubspoke.tools import DID_NOT_RUN


class Charges:
    """A card processor: every call to `charge` charges (it does not deduplicate), and records
    the reference it is given, which `find` looks charges up by; `charge_once` is the kind of
    API that deduplicates by an idempotency key (a second call with a key returns the first
    charge)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        with sqlite3.connect(self.path) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS charges (id INTEGER PRIMARY KEY, reference TEXT, "
                "card TEXT, amount INTEGER)"
            )

    def charge(self, card: str, amount: int, reference: str | None = None) -> str:
        """Charge `card`; the charge's id (``ch_1``, ``ch_2``, ...)."""
        with sqlite3.connect(self.path, timeout=10) as db:
            cursor = db.execute(
                "INSERT INTO charges (reference, card, amount) VALUES (?, ?, ?)",
                (reference, card, amount),
            )
            return f"ch_{cursor.lastrowid}"

    def charge_once(self, key: str, card: str, amount: int) -> str:
        """Charge `card` unless a charge with this idempotency key exists: then its id."""
        return self.find(key) or self.charge(card, amount, key)

    def find(self, reference: str) -> str | None:
        """The id of the first charge made with this reference, if any."""
        with sqlite3.connect(self.path, timeout=10) as db:
            row = db.execute(
                "SELECT id FROM charges WHERE reference=? ORDER BY id LIMIT 1", (reference,)
            ).fetchone()
        return None if row is None else f"ch_{row[0]}"

    def count(self) -> int:
        """How many charges were made."""
        with sqlite3.connect(self.path, timeout=10) as db:
            return int(db.execute("SELECT COUNT(*) FROM charges").fetchone()[0])


class Order(BaseModel):
    card: str
    amount: int


class Receipt(BaseModel):
    card: str
    charge_id: str


def charge(card: str, amount: int, idempotency_key: str) -> str:
    """Charge a card; returns the charge's id."""
    charge_id = Charges(os.environ["CHARGES_DB"]).charge(card, amount, idempotency_key)
    hold = os.environ.get("CHARGES_HOLD")
    while hold and not Path(hold).exists():  # the test kills the process meanwhile
        time.sleep(0.01)
    return charge_id


def find_charge(key: str, arguments: dict[str, Any]) -> Any:
    """The charge made with this key, if the call in doubt got as far as the processor."""
    found = Charges(os.environ["CHARGES_DB"]).find(key)
    return DID_NOT_RUN if found is None else found


async def pay(order: Order, ctx: Context) -> Receipt:
    charge_id = await ctx.call_tool("charge", card=order.card, amount=order.amount)
    return Receipt(card=order.card, charge_id=charge_id)


def cashier(tool: Tool) -> Workflow:
    """Workflow `till`: one phase, `pay`, whose `cashier` (played by `pay`) charges with
    `tool`."""
    return Workflow(
        name="till",
        input=Order,
        roles=[
            Role(
                name="cashier",
                purpose="Charge the order.",
                input=Order,
                output=Receipt,
                function=pay,
                tools=[tool],
            )
        ],
        phases=[Phase(name="pay", role="cashier", input=lambda run: run.input)],
        result=lambda run: run.output("pay"),
    )


workflow = cashier(Tool.from_function(charge, side_effect=True, reconcile=find_charge))
unreconciled = cashier(Tool.from_function(charge, side_effect=True))
