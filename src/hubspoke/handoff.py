"""The hand-off between phases: what a phase's `input` function returns, validated strictly.

The run's input and every phase's hand-off are validated like an output: written as JSON, then
read back with `strict=True` against the role's input schema, so a string is never read as a
number and a value the journal cannot hold (NaN, Infinity, nested too deep) is refused.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json, to_json, to_jsonable_python

from hubspoke.jsontext import MAX_DEPTH, check_json_value

__all__ = ["dump_json", "handoff_json", "validate_handoff", "validate_json"]


_M = TypeVar("_M", bound=BaseModel)

# pydantic's `model_dump_json` and `model_validate_json` hand a dozen keywords to the Rust
# serializer and validator; for the small models of a dispatch that costs more than the work
# itself. Called directly with the same defaults, unless a model overrides the method.
_DUMP_JSON = BaseModel.model_dump_json
_VALIDATE_JSON = BaseModel.model_validate_json.__func__  # type: ignore[attr-defined]


def dump_json(model: BaseModel) -> str:
    """`model.model_dump_json()`: the same text, by the model's serializer directly."""
    cls = type(model)
    if cls.model_dump_json is _DUMP_JSON:
        return cls.__pydantic_serializer__.to_json(model).decode()
    return model.model_dump_json()


def validate_json(
    schema: type[_M], text: str | bytes, *, by_name: bool | None = None, strict: bool | None = True
) -> _M:
    """`schema.model_validate_json(text, strict=strict, by_name=by_name)`, by the schema's
    validator directly (strict by default, as every hand-off and output is checked).

    Raises:
        pydantic.ValidationError: `text` is not JSON or does not match `schema`.
    """
    try:
        plain = schema.model_validate_json.__func__ is _VALIDATE_JSON  # type: ignore[attr-defined]
    except AttributeError:  # overridden by something that is not a classmethod
        plain = False
    if plain:
        model: _M = schema.__pydantic_validator__.validate_json(
            text, strict=strict, by_name=by_name
        )
        return model
    return schema.model_validate_json(text, strict=strict, by_name=by_name)


def validate_handoff(schema: type[_M], raw: Any) -> _M:
    """Validate what a phase's `input` function returned against its role's input schema,
    strictly and from JSON: the same rules as an output, never a silent coercion.

    `raw` is written as JSON first (a pydantic model by field name and read back by name, a
    dict as it is, with any models inside it by alias), then validated with `strict=True`: a
    string is never read as a number (``{"n": "900"}`` is refused where `n` is an int), while
    what JSON writes as text (dates, enums, UUIDs) is read back as its type.

    Args:
        schema: the role's input schema.
        raw: a model, or a dict (or another value pydantic can write as JSON).

    Returns:
        An instance of `schema`.

    Raises:
        pydantic.ValidationError: `raw` does not match `schema`; or it is not a JSON value the
            journal can hold (NaN or Infinity, nested past `jsontext.MAX_DEPTH` levels, a value
            with no JSON form), as one `json_invalid` error that says so.
    """
    return handoff_json(schema, raw)[0]


def handoff_json(schema: type[_M], raw: Any) -> tuple[_M, bytes, Any]:
    """`validate_handoff`, with the JSON text it validated and that text's value (`None` if
    it took the slow path), so that a caller who journals the input parses it only once.

    Raises:
        pydantic.ValidationError: as `validate_handoff`.
    """
    by_name = True if isinstance(raw, BaseModel) else None
    parsed: Any = None
    try:
        # The common case, cheaply: written as JSON with NaN and Infinity as such (models inside
        # too: their own serializers would write null), then read back by pydantic's parser,
        # which refuses those and anything nested past 200 levels (its recursion limit is
        # `MAX_DEPTH`). What it refuses takes the slow path below, which says what and where.
        value = to_jsonable_python(raw, by_alias=by_name is None, inf_nan_mode="constants")
        text = to_json(value, inf_nan_mode="constants")
        parsed = from_json(text, allow_inf_nan=False)
    except ValueError:
        text = _handoff_text(schema, raw, by_name)
    return validate_json(schema, text, by_name=by_name), text, parsed


def _handoff_text(schema: type[BaseModel], raw: Any, by_name: bool | None) -> bytes:
    """`raw` as JSON text, or a `ValidationError` that names what JSON cannot hold and where."""
    try:
        try:
            # JSON's values, NaN and Infinity kept as such (models inside too) to be named below.
            value = to_jsonable_python(raw, by_alias=by_name is None, inf_nan_mode="constants")
        except ValueError as e:
            if "depth" in str(e):  # past what the encoder writes, far past the limit
                raise ValueError(
                    f"it nests more than {MAX_DEPTH} levels deep; a JSON value may nest at most "
                    f"{MAX_DEPTH} levels (objects and lists inside one another)"
                ) from None
            raise ValueError(f"it has no JSON form ({e})") from None
        check_json_value(value)
        return to_json(value)
    except ValueError as e:
        raise ValidationError.from_exception_data(
            schema.__name__,
            [
                {
                    "type": "json_invalid",
                    "loc": (),
                    "input": None,  # hidden: it may be too deep, or too big, to print
                    "ctx": {"error": f"input cannot be journaled: {e}"},
                }
            ],
            hide_input=True,
        ) from None
