"""Reading what a run starts from: `--input` JSON (inline or ``@file``) and workflow references."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hubspoke.cli.failures import UsageError
from hubspoke.jsontext import MAX_DEPTH, check_json_value

__all__ = ["normalise_ref", "parse_input"]

_EXAMPLE = 'write a JSON object, e.g. --input \'{"company": "Acme"}\', or --input @input.json'


def parse_input(
    text: str,
    *,
    flag: str = "--input",
    wanted: str = "a run's input is a JSON object with the fields of the workflow's input schema",
    example: str = _EXAMPLE,
) -> dict[str, Any]:
    """Parse `--input` (or another `flag` that takes the same): a JSON object, or ``@path`` to
    a file holding one. `wanted` says what the object is for, `example` how to write one, in
    messages.

    Raises:
        UsageError: the file is missing or unreadable; the text is not JSON, or not an object;
            it holds NaN or Infinity (which `json.loads` reads, but JSON does not have), or
            nests more than `jsontext.MAX_DEPTH` levels.
    """
    where = flag
    if text.startswith("@"):
        path = Path(text[1:])
        where = f"{flag} file {str(path)!r}" if flag != "--input" else f"input file {str(path)!r}"
        if not text[1:]:
            raise UsageError(f"{flag} @ needs a file name after the @; {example}")
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"{where} does not exist; {example}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read {where}: {e}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"{where} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); {example}"
        ) from None
    except ValueError as e:  # e.g. an integer past Python's digit limit for int()
        raise UsageError(f"{where} is refused: {e}; {example}") from None
    except RecursionError:  # nested past what Python's parser reads, far past the limit
        raise UsageError(
            f"{where} is refused: it nests more than {MAX_DEPTH} levels deep; a JSON value may "
            f"nest at most {MAX_DEPTH} levels (objects and lists inside one another)"
        ) from None
    try:
        check_json_value(value)
    except ValueError as e:
        raise UsageError(f"{where} is refused: {e}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{where} is a JSON {type(value).__name__}, but {wanted}; {example}")
    return value


def normalise_ref(ref: str) -> str:
    """Make a file reference absolute so that `hubspoke resume` works from any directory.

    ``flows/notes.py:workflow`` becomes ``/abs/path/flows/notes.py:workflow``; module references
    (``package.module:NAME``) and anything that is not an existing file stay as they are.
    """
    target, sep, name = ref.rpartition(":")
    if not sep or not target or not name:
        return ref
    if (target.endswith(".py") or "/" in target) and Path(target).is_file():
        return f"{Path(target).resolve()}:{name}"
    return ref
