"""JSON values at the runtime's edges: what `check_json_value` refuses, and where it says."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hubspoke.jsontext import MAX_DEPTH, check_json_value


def nest(levels: int) -> Any:
    value: Any = {"leaf": 1}
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "the number at (root) is NaN"),
        ({"x": float("nan")}, "the number at x is NaN"),
        ({"a": [1, {"b": float("inf")}]}, "the number at a[1].b is Infinity"),
        ({"a": (0, 1, float("-inf"))}, "the number at a[2] is -Infinity"),
        ({"price": Decimal("NaN")}, "the number at price is NaN"),
        ({"price": Decimal("-Infinity")}, "the number at price is -Infinity"),
    ],
)
def test_a_number_json_cannot_hold_is_refused_saying_where(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as e:
        check_json_value(value)
    assert str(e.value).startswith(message)
    assert "which JSON cannot hold: give a finite number" in str(e.value)


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 250, 10_000, 100_000])
def test_a_value_nested_past_the_limit_is_refused_without_recursing(levels: int) -> None:
    with pytest.raises(ValueError, match="it nests more than 200 levels deep"):
        check_json_value({"deep": nest(levels - 1)})


def test_a_self_referencing_value_is_refused_as_too_deep() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nests more than 3 levels"):
        check_json_value(loop, max_depth=3)


@pytest.mark.parametrize(
    "value",
    [
        None,
        {"x": 1.5, "y": [1, "NaN", None, True], "z": {"w": Decimal("2.5")}},
        nest(MAX_DEPTH),
        {"when": object()},  # not a JSON value, but the schema decides about leaves
    ],
)
def test_values_json_holds_are_accepted(value: Any) -> None:
    check_json_value(value)
