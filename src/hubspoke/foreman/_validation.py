"""Validation of what crosses the hub: strict, from JSON, never coerced.

Every output, every hand-off from one phase to the next and every run input is validated here,
the same way: as JSON text against the schema in strict mode, so that `'900'` never becomes
`900` and an instance of the right class is re-checked rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json, to_json, to_jsonable_python

from hubspoke.errors import InputError
from hubspoke.handoff import validate_handoff, validate_json
from hubspoke.jsontext import MAX_DEPTH, check_json_value

__all__ = [
    "MAX_ERRORS",
    "MAX_JSON_DEPTH",
    "fingerprint",
    "format_errors",
    "run_input",
    "validate_output",
    "validation_errors",
]

MAX_JSON_DEPTH = MAX_DEPTH
"""How deeply a run's input or an item's input may nest: what pydantic's JSON parser reads (it
also bounds outputs, which are validated from JSON). Events wrap an input a few levels deeper,
within what the encoder writes (about 250) and `jsontext.parse` reads back."""

MAX_ERRORS = 20
"""Validation errors kept per invalid output: an enormous wrong list would otherwise put
millions of them in the journal and in the correction fed to the retry."""


def format_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """Validation errors in one line: ``loc.path: message; ...`` (``(root)`` for the root)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())) or '(root)'}: {e.get('msg', '')}"
        for e in errors
    )


def validation_errors(error: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors as journal-ready dicts (``loc``, ``msg``, ``type``), at most
    `MAX_ERRORS` of them plus one that counts the rest."""
    errors = error.errors(include_url=False, include_context=False, include_input=False)
    kept = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors[:MAX_ERRORS]
    ]
    if len(errors) > MAX_ERRORS:
        kept.append(
            {
                "loc": [],
                "msg": f"... and {len(errors) - MAX_ERRORS} more errors like these",
                "type": "too_many_errors",
            }
        )
    return kept


def validate_output(
    schema: type[BaseModel], raw: Any
) -> tuple[BaseModel | None, list[dict[str, Any]]]:
    """Validate `raw` against `schema` strictly from JSON: never trust an instance, never coerce.

    `raw` may be a model instance (re-validated from its JSON, by field name), JSON text
    (str or bytes) or a JSON-like Python value. Non-finite numbers (NaN, Infinity) are refused
    whichever way they come: they are not JSON (RFC 8259 §6).

    Returns:
        ``(model, [])`` when valid, ``(None, errors)`` otherwise; never raises.
    """
    by_name: bool | None = None
    text: str | bytes
    try:
        if isinstance(raw, BaseModel):
            # Dumped by field name, read back by name (its aliases may differ). A model would
            # write NaN as null: written with NaN and Infinity as such, and refused on reading.
            value = to_jsonable_python(raw, inf_nan_mode="constants")
            text, by_name = to_json(value, inf_nan_mode="constants"), True
            from_json(text, allow_inf_nan=False)
        elif isinstance(raw, str | bytes):
            text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="strict")
            # pydantic's JSON parser reads NaN and Infinity, and 1e400 overflows to infinity:
            # standard JSON has no such values, so check the parsed value too.
            json.dumps(from_json(text, allow_inf_nan=False), allow_nan=False)
        else:
            text = json_text(raw)
        return validate_json(schema, text, by_name=by_name), []
    except ValidationError as e:
        errors = validation_errors(e)
        if any("recursion limit" in err["msg"] for err in errors):
            return None, [TOO_DEEP]
        return None, errors
    except RecursionError:
        return None, [TOO_DEEP]
    except (TypeError, ValueError) as e:
        if "depth" in str(e) or "recursion" in str(e):
            return None, [TOO_DEEP]
        return None, [{"loc": [], "msg": f"not valid JSON: {e}", "type": "json"}]
    except Exception as e:  # user code in the schema (a validator, a serializer) raised
        return None, [
            {"loc": [], "msg": f"the schema raised {type(e).__name__}: {e}", "type": "raised"}
        ]


TOO_DEEP: dict[str, Any] = {
    "loc": [],
    "msg": f"cannot be journaled: nested deeper than the journal holds (JSON values nested up to "
    f"{MAX_JSON_DEPTH} levels)",
    "type": "too_deep",
}
"""The error of a value nested deeper than `MAX_JSON_DEPTH`."""


def run_input(
    schema: type[BaseModel], input: BaseModel | Mapping[str, Any]
) -> tuple[BaseModel, dict[str, Any]]:
    """A run's input validated strictly, from JSON, as (the instance, its JSON value by field
    name): no coercion (``"900"`` is not ``900``), no NaN or infinity.

    Raises:
        InputError: `input` does not match `schema`, or cannot be journaled (not JSON, or nested
            deeper than `MAX_JSON_DEPTH`).
    """
    raw: Any = input if isinstance(input, BaseModel) else dict(input)
    try:
        check_json_value(raw if isinstance(raw, dict) else raw.model_dump())
    except ValueError as e:
        raise InputError(f"input cannot be journaled: {e}") from None
    try:
        validated = validate_handoff(schema, raw)
    except ValidationError as e:
        errors = format_errors(validation_errors(e))
        raise InputError(f"input does not match {schema.__name__}: {errors}") from None
    try:
        input_dict: dict[str, Any] = from_json(validated.model_dump_json())
    except ValueError as e:
        raise InputError(
            f"input cannot be journaled: {e} (the journal holds JSON values nested up to "
            f"{MAX_JSON_DEPTH} levels)"
        ) from None
    return validated, input_dict


def validate_journaled(schema: type[BaseModel], value: Any) -> BaseModel | None:
    """An output the journal holds (dumped by field name) read back strictly, or None if it
    no longer validates against `schema`."""
    try:
        return validate_json(schema, json_text(value), by_name=True)
    except Exception:  # invalid now, or not JSON: the work is dispatched again
        return None


def json_text(raw: Any) -> str:
    """`raw` as JSON text, refused (by `json.dumps`) if it is not JSON: NaN, sets, dates...

    pydantic_core's encoder is ~3x faster than `json.dumps` but would write a set as a list
    and NaN as null; its text is kept only when decoding it gives back a value equal to `raw`.
    """
    if type(raw) is dict or type(raw) is list:  # a subclass may encode itself its own way
        try:
            encoded = to_json(raw, inf_nan_mode="null")
            if from_json(encoded) == raw:
                return encoded.decode()
        except Exception:  # not encodable, or nested deeper than the decoder goes
            pass
    return json.dumps(raw, allow_nan=False)


# What a correction may vary in without bringing new information: numbers, quoted values and
# whitespace ("value 17 is too big" and "value 18 is too big" ask the same thing again).
# A quote is a delimiter only with no letter outside it: "doesn't ... isn't" quotes nothing.
_QUOTED = re.compile(r"(?<!\w)'[^'\n]*'(?!\w)|(?<!\w)\"(?:[^\"\\\n]|\\.)*\"(?!\w)")
_NUMBER = re.compile(r"[-+]?\d+(?:[.,]\d+)*(?:[eE][-+]?\d+)?")
_SPACE = re.compile(r"\s+")


def normalise_correction(correction: str) -> str:
    """A correction with numbers, quoted values and runs of whitespace replaced by one mark
    each: two corrections that differ only there say the same thing."""
    text = _QUOTED.sub("'…'", correction)
    text = _NUMBER.sub("#", text)
    return _SPACE.sub(" ", text).strip()


def fingerprint(role: str, input_json: str, correction: str | None) -> str:
    """What a dispatch asks: role + input (JSON, artifact ids included) + normalised correction.

    Two dispatches with the same fingerprint ask the same question; after the first one ended
    in an informative failure, the second brings no new information (stuck detection).

    Returns:
        24 hex digits (BLAKE2b, 12 bytes).
    """
    norm = normalise_correction(correction) if correction else ""
    text = f"{role}\0{input_json}\0{norm}"
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
