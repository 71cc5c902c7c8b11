"""A fan-out whose specialists have side effects, for crash-and-resume tests.

`SIDEFX_DB` names the SideEffects file; `SIDEFX_ITEMS` the number of items.
"""

from __future__ import annotations

import asyncio
import os

from pydantic import BaseModel

from hubspoke import Context, Phase, Role, Strategy, Workflow
from hubspoke.testing import SideEffects


class Batch(BaseModel):
    items: int


class Order(BaseModel):
    n: int


class Receipt(BaseModel):
    n: int
    total: int


class Report(BaseModel):
    count: int
    total: int


async def ship(order: Order, ctx: Context) -> Receipt:
    await asyncio.sleep(0.005 + (order.n % 3) * 0.005)
    SideEffects(os.environ["SIDEFX_DB"]).record(ctx.idempotency_key, f"shipped {order.n}")
    return Receipt(n=order.n, total=order.n * 10)


async def report(receipts: Report, ctx: Context) -> Report:
    return receipts


workflow = Workflow(
    name="sidefx",
    input=Batch,
    roles=[
        Role(name="shipper", purpose="Ship one order.", input=Order, output=Receipt, function=ship),
        Role(
            name="reporter", purpose="Report totals.", input=Report, output=Report, function=report
        ),
    ],
    phases=[
        Phase(
            name="ship",
            role="shipper",
            over=lambda run: list(range(run.input.items)),
            input=lambda run, n: Order(n=n),
            concurrency=8,
            strategy=Strategy.BEST_EFFORT,
            review=False,
        ),
        Phase(
            name="report",
            role="reporter",
            input=lambda run: Report(
                count=len(run.outputs("ship")), total=sum(r.total for r in run.outputs("ship"))
            ),
        ),
    ],
    result=lambda run: run.output("report"),
)
