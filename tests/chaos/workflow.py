"""The chaos workflow: a long fan-out of side-effecting shipments, then notices and a report.

Everything an item does is decided by a hash of the run's seed and the item's number, so two
runs with the same seed produce the same artifacts and cards whatever crashes in between:

- ``ship`` fans out over ``items`` orders (8 in flight). Each shipment awaits a little, then
  records its side effect with its attempt's key, ``ctx.attempt_key`` (`CHAOS_EFFECTS` names
  the `SideEffects` file): the harness checks every dispatch, not only every item, so it keys
  by dispatch. Some orders fail once (a carrier error), some answer invalid output once, some
  are out of the shipper's scope and go to the fallback role ``courier``.
- ``notify`` drafts a customer notice for about one order in ten (high risk, so every notice
  becomes a card in review); a few need a person and are escalated.
- ``report`` adds everything up.

`CHAOS_DELAY_SCALE` stretches the awaits (default 1) without changing any result.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any

from pydantic import BaseModel, Field

from hubspoke import (
    Context,
    NeedsHuman,
    OutOfScope,
    Phase,
    Risk,
    Role,
    RunView,
    Strategy,
    Workflow,
)
from hubspoke.testing import SideEffects

REF = "tests.chaos.workflow:workflow"


class Batch(BaseModel):
    items: int = Field(ge=1, le=100_000)
    seed: int


class Order(BaseModel):
    n: int
    seed: int


class Receipt(BaseModel):
    n: int
    total: int
    carrier: str


class Notice(BaseModel):
    n: int
    text: str = Field(min_length=10)


class Totals(BaseModel):
    shipped: int
    total: int
    couriered: int


def draw(seed: int, n: int, what: str) -> float:
    """A number in [0, 1) fixed by the seed, the item and what it is for."""
    digest = hashlib.blake2b(f"{seed}:{n}:{what}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def fault(order: Order) -> str:
    x = draw(order.seed, order.n, "fault")
    if x < 0.06:
        return "flaky"
    if x < 0.10:
        return "invalid"
    if x < 0.14:
        return "out_of_scope"
    return "ok"


async def _pause(order: Order) -> None:
    scale = float(os.environ.get("CHAOS_DELAY_SCALE", "1"))
    await asyncio.sleep(scale * (0.005 + 0.03 * draw(order.seed, order.n, "delay")))


def _ship(order: Order, ctx: Context, carrier: str) -> Receipt:
    # The irreversible act, keyed by the attempt: a dispatch in flight at a crash runs again
    # with the same key, so its re-run is a no-op; the harness counts attempts per dispatch.
    SideEffects(os.environ["CHAOS_EFFECTS"]).record(ctx.attempt_key, f"order {order.n}")
    return Receipt(n=order.n, total=order.n * 10 + 1, carrier=carrier)


async def ship(order: Order, ctx: Context) -> Any:
    await _pause(order)
    kind = fault(order)
    if kind == "out_of_scope":
        raise OutOfScope(f"order {order.n} goes abroad; the shipper only ships at home")
    if kind == "flaky" and ctx.attempt == 1:
        raise ConnectionError("the carrier's API timed out")
    if kind == "invalid" and ctx.attempt == 1:
        return {"n": str(order.n), "total": "a lot", "carrier": "shipper"}
    return _ship(order, ctx, "shipper")


async def courier(order: Order, ctx: Context) -> Receipt:
    await _pause(order)
    return _ship(order, ctx, "courier")


async def notify(receipt: Receipt, ctx: Context) -> Notice:
    await _pause(Order(n=receipt.n, seed=-1))
    if receipt.n % 7 == 3:
        raise NeedsHuman(f"order {receipt.n} shipped by {receipt.carrier}: tell the customer?")
    return Notice(n=receipt.n, text=f"Your order {receipt.n} is on its way ({receipt.carrier}).")


async def report(totals: Totals, ctx: Context) -> Totals:
    return totals


def _to_notify(run: RunView) -> list[Receipt]:
    seed = run.input.seed
    return [r for r in run.outputs("ship") if draw(seed, r.n, "notify") < 0.1]


def _totals(run: RunView) -> Totals:
    receipts: list[Receipt] = run.outputs("ship")
    return Totals(
        shipped=len(receipts),
        total=sum(r.total for r in receipts),
        couriered=sum(r.carrier == "courier" for r in receipts),
    )


workflow = Workflow(
    name="chaos",
    input=Batch,
    roles=[
        Role(
            name="shipper",
            purpose="Ship one order at home.",
            input=Order,
            output=Receipt,
            function=ship,
            fallback="courier",
        ),
        Role(
            name="courier",
            purpose="Ship one order anywhere.",
            input=Order,
            output=Receipt,
            function=courier,
        ),
        Role(
            name="notifier",
            purpose="Draft a notice to the customer of a shipped order.",
            input=Receipt,
            output=Notice,
            function=notify,
            risk=Risk.HIGH,
        ),
        Role(
            name="reporter",
            purpose="Add up the shipments.",
            input=Totals,
            output=Totals,
            function=report,
        ),
    ],
    phases=[
        Phase(
            name="ship",
            role="shipper",
            over=lambda run: list(range(run.input.items)),
            input=lambda run, n: Order(n=n, seed=run.input.seed),
            concurrency=8,
            strategy=Strategy.BEST_EFFORT,
        ),
        Phase(
            name="notify",
            role="notifier",
            over=_to_notify,
            input=lambda run, receipt: receipt,
            concurrency=4,
            strategy=Strategy.BEST_EFFORT,
            review=True,
            card_title=lambda notice: f"notice for order {notice.n}",
        ),
        Phase(name="report", role="reporter", input=_totals),
    ],
    max_steps=100_000,
    max_escalations=100_000,
    result=lambda run: run.output("report"),
)
