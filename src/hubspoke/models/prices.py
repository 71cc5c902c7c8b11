"""Prices per million tokens, used to turn token usage into USD and to bound a request's cost.

The offline model has a nominal price so that USD budgets behave offline as they would online.
Unknown models cost nothing unless priced with `set_price` (or `HUBSPOKE_PRICES`,
``"model=in/out,model2=in/out"`` in USD per million tokens).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Price", "price_for", "set_price"]


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float

    def usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


_FREE = Price(0.0, 0.0)
_PRICES: dict[str, Price] = {
    "offline": Price(0.15, 0.60),
    "openai:gpt-4o-mini": Price(0.15, 0.60),
    "openai:gpt-4o": Price(2.50, 10.00),
    "openai:gpt-4.1-mini": Price(0.40, 1.60),
    "anthropic:claude-haiku-4-5": Price(1.00, 5.00),
    "anthropic:claude-sonnet-4-5": Price(3.00, 15.00),
}


def _from_env() -> dict[str, Price]:
    spec = os.environ.get("HUBSPOKE_PRICES", "").strip()
    prices: dict[str, Price] = {}
    for entry in filter(None, (x.strip() for x in spec.split(","))):
        name, _, pair = entry.partition("=")
        inp, _, out = pair.partition("/")
        try:
            prices[name.strip()] = Price(float(inp), float(out))
        except ValueError:
            raise ValueError(
                f"HUBSPOKE_PRICES entry {entry!r} is not 'model=input/output' in USD per million "
                "tokens, e.g. 'openai:gpt-4o-mini=0.15/0.6'"
            ) from None
    return prices


def set_price(model: str, price: Price) -> None:
    _PRICES[model] = price


def price_for(model: str) -> Price:
    """The price of a model binding; the part before the first ':' is tried as a family too."""
    env = _from_env()
    return env.get(model) or _PRICES.get(model) or _PRICES.get(model.split(":", 1)[0]) or _FREE
