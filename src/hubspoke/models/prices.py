"""Prices per million tokens: turning token usage into USD, and bounding a request's cost.

The table hubspoke ships is package data (`prices.toml`, versioned by the date its figures were
read, with its sources). Configuration overrides it, highest first:

1. ``HUBSPOKE_PRICES``: ``"BINDING=INPUT/OUTPUT[/CACHED],..."`` in USD per million tokens, e.g.
   ``"openai-compatible=0/0,openai:gpt-6-sol=2/10/0.2"``;
2. ``[prices."BINDING"]`` or ``[prices.FAMILY]`` tables in `hubspoke.toml`
   (``input``, ``output``, ``cached_input``);
3. `set_price` from Python;
4. the shipped table.

Within each source a binding is looked up as written, then ``openai-chat:NAME`` as
``openai:NAME`` (the same model through another API), then by family (the part before the first
``:``, e.g. ``openai-compatible``). A model found nowhere has no known price: its cost is
unknown, never $0, and a USD budget over it is refused before a run starts.
"""

from __future__ import annotations

import functools
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from hubspoke.errors import ConfigError

__all__ = [
    "Price",
    "PriceList",
    "Priced",
    "lookup_price",
    "parse_price_env",
    "price_for",
    "price_from_table",
    "set_price",
    "shipped_prices",
]

PRICES_ENV = "HUBSPOKE_PRICES"


@dataclass(frozen=True, slots=True)
class Price:
    """What a model costs, in US dollars per million tokens."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None
    """Input read from the provider's prompt cache; `None`: charged the input price."""

    def usd(self, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0) -> float:
        """The cost of a request, in USD.

        Args:
            input_tokens: all input tokens, cached ones included (as providers report them).
            output_tokens: output tokens, reasoning included.
            cached_input_tokens: how many of `input_tokens` were read from the cache.
        """
        cached = min(max(cached_input_tokens, 0), input_tokens)
        cached_rate = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok
        )
        return (
            (input_tokens - cached) * self.input_per_mtok
            + cached * cached_rate
            + output_tokens * self.output_per_mtok
        ) / 1e6

    def to_dict(self) -> dict[str, float | None]:
        """As JSON: ``{"input": ..., "output": ..., "cached_input": ...}`` per million tokens."""
        return {
            "input": self.input_per_mtok,
            "output": self.output_per_mtok,
            "cached_input": self.cached_input_per_mtok,
        }


@dataclass(frozen=True, slots=True)
class PriceList:
    """Prices from one source, by binding or family."""

    source: str
    """Where they come from: ``HUBSPOKE_PRICES``, ``hubspoke.toml``, ``set_price`` or
    ``prices.toml VERSION`` (the shipped table)."""
    prices: Mapping[str, Price]


@dataclass(frozen=True, slots=True)
class Priced:
    """A price found for a binding, and where."""

    price: Price
    source: str
    """The `PriceList.source` it came from."""
    key: str
    """The entry that matched: the binding itself, its ``openai:`` twin or its family."""

    def describe(self) -> str:
        """E.g. ``$2.00 / $10.00 per Mtok (cached $0.20), prices.toml 2026-11-29``."""
        p = self.price
        cached = (
            "" if p.cached_input_per_mtok is None else f" (cached ${p.cached_input_per_mtok:g})"
        )
        return (
            f"${p.input_per_mtok:g} in / ${p.output_per_mtok:g} out per Mtok{cached}, "
            f"{self.source} [{self.key}]"
        )


def _number(where: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: {key} must be a number of US dollars per million tokens")
    if value < 0:
        raise ConfigError(f"{where}: {key} must not be negative, got {value!r}")
    return float(value)


def price_from_table(where: str, table: object) -> Price:
    """A price from a TOML table ``{input = ..., output = ..., cached_input = ...}``.

    Args:
        where: the table's name for messages, e.g. ``hubspoke.toml [prices."openai:x"]``.
        table: the parsed table.

    Raises:
        ConfigError: not a table, a missing or unknown key, a value that is not a finite,
            non-negative number.
    """
    if not isinstance(table, Mapping):
        raise ConfigError(
            f"{where} must be a table: input = USD, output = USD (per million tokens), and "
            "optionally cached_input = USD"
        )
    unknown = sorted(set(table) - {"input", "output", "cached_input"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; a price has input, output and cached_input "
            "(USD per million tokens)"
        )
    for key in ("input", "output"):
        if key not in table:
            raise ConfigError(f"{where}: give {key} = USD per million tokens")
    cached = table.get("cached_input")
    return Price(
        _number(where, "input", table["input"]),
        _number(where, "output", table["output"]),
        None if cached is None else _number(where, "cached_input", cached),
    )


def parse_price_env(text: str) -> dict[str, Price]:
    """Prices from ``HUBSPOKE_PRICES``: ``"BINDING=INPUT/OUTPUT[/CACHED],..."``.

    Raises:
        ConfigError: an entry of another shape, naming it and showing the format.
    """
    prices: dict[str, Price] = {}
    for entry in filter(None, (x.strip() for x in text.split(","))):
        name, eq, figures = entry.rpartition("=")
        parts = figures.split("/")
        try:
            if not eq or not name.strip() or len(parts) not in (2, 3):
                raise ValueError(entry)
            values = [float(x) for x in parts]
            if not all(math.isfinite(v) and v >= 0 for v in values):
                raise ValueError(entry)
        except ValueError:
            raise ConfigError(
                f"{PRICES_ENV} entry {entry!r} is not 'BINDING=INPUT/OUTPUT' or "
                "'BINDING=INPUT/OUTPUT/CACHED' in USD per million tokens, e.g. "
                "'openai:gpt-6-sol=2/10/0.2' or 'openai-compatible=0/0'"
            ) from None
        prices[name.strip()] = Price(values[0], values[1], values[2] if len(values) == 3 else None)
    return prices


@functools.cache
def shipped_prices() -> PriceList:
    """The table hubspoke ships (`prices.toml`); its source names the table's version.

    Raises:
        ConfigError: the shipped file is damaged (a packaging fault).
    """
    text = resources.files("hubspoke.models").joinpath("prices.toml").read_text("utf-8")
    data: dict[str, Any] = tomllib.loads(text)
    version = data.get("version")
    table = data.get("prices")
    if not isinstance(version, str) or not isinstance(table, dict):
        raise ConfigError("the shipped prices.toml has no version or no [prices] tables")
    prices = {
        name: price_from_table(f'prices.toml [prices."{name}"]', entry)
        for name, entry in table.items()
    }
    return PriceList(f"prices.toml {version}", prices)


_SET: dict[str, Price] = {}


def set_price(model: str, price: Price) -> None:
    """Price a binding (or a family, e.g. ``"openai-compatible"``) for this process.

    `HUBSPOKE_PRICES` and `hubspoke.toml` still override it.
    """
    _SET[model] = price


def _keys(binding: str) -> list[str]:
    keys = [binding]
    provider, sep, rest = binding.partition(":")
    if sep and provider == "openai-chat":
        keys.append(f"openai:{rest}")
    if sep:
        keys.append(provider)
    return keys


def lookup_price(binding: str, first: Sequence[PriceList] = ()) -> Priced | None:
    """The price of a binding, searching `first`, then `set_price`, then the shipped table.

    Args:
        binding: the binding as written (or a model's name).
        first: price lists that override the others, highest first (the configuration's).

    Returns:
        The price and where it came from, or `None` when no source knows the model.
    """
    keys = _keys(binding)
    for price_list in (*first, PriceList("set_price", _SET), shipped_prices()):
        for key in keys:
            price = price_list.prices.get(key)
            if price is not None:
                return Priced(price, price_list.source, key)
    return None


def price_for(model: str) -> Price | None:
    """The price of a binding, from ``HUBSPOKE_PRICES`` as the environment holds it now,
    `set_price` and the shipped table (not `hubspoke.toml`: see `hubspoke.models.Config`).

    Returns:
        The price, or `None` when it is unknown (never a silent $0).

    Raises:
        ConfigError: ``HUBSPOKE_PRICES`` is malformed.
    """
    env = parse_price_env(os.environ.get(PRICES_ENV, ""))
    found = lookup_price(model, [PriceList(PRICES_ENV, env)])
    return None if found is None else found.price
