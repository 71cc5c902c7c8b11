"""A dispatch's trace: what a specialist did, append-only and validated.

The trace records the dispatch's model exchanges, tool calls and refusals in the order they
happened; the foreman journals each entry as the event of the same kind (`TRACE_KINDS`). A
specialist may append entries, never replace or delete one, and every entry it appends is checked
(a known `kind`, that kind's fields typed, JSON values only): a malformed one is refused, and the
refusal is itself traced. Entries are kept as JSON, so reading gives fresh dicts a specialist
cannot use to change what was recorded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn, Protocol, overload

from pydantic_core import from_json, to_json

from hubspoke.errors import ContextError
from hubspoke.jsontext import parse

__all__ = ["TRACE_KINDS", "Owner", "Trace"]


class Owner(Protocol):
    """What a part of a context (its trace, tool table and allowance views) asks of the context
    that holds it: whether the dispatch is still open, and how to refuse an attempt (traced,
    then raised). `hubspoke.specialists.Context` is the one implementation; the parts take this
    protocol rather than the class, which makes them."""

    @property
    def closed(self) -> bool:
        """Whether the dispatch has ended."""
        ...

    def _check_open(self) -> None:
        """Raise `ContextError` if the dispatch has ended."""
        ...

    def _refuse(self, what: str, reason: str, error: type[Exception] = ..., /) -> NoReturn:
        """Record a refused attempt in the trace (while the dispatch runs) and raise `error`
        (`ContextError` by default) with `reason`."""
        ...


_UNSET = object()


def refuse_second_init(obj: object, slot: str) -> None:
    """Raise `ContextError` if `obj` was already initialised (its `slot` is set): calling
    `__init__` again on a context or one of its views would reopen, widen or wipe it."""
    # `getattr` with a default, not a caught AttributeError: the unset slot is the common case
    # (every context and view is made once), and raising and catching it costs more than the
    # rest of a view's `__init__`. The classes that call this define no `__getattr__`.
    if getattr(obj, slot, _UNSET) is not _UNSET:
        raise ContextError(f"a {type(obj).__name__} cannot be initialised again")


def is_count(value: object) -> bool:
    """Whether `value` is a whole number of at least 0: a plain `int`, since a subclass (or a
    bool) could answer the comparison any way it likes."""
    return type(value) is int and value >= 0


def is_seconds(value: object) -> bool:
    """Whether `value` is a finite number of at least 0, a plain `int` or `float` (a subclass
    could answer the comparisons any way it likes): seconds, or dollars."""
    if type(value) is not int and type(value) is not float:
        return False
    assert isinstance(value, int | float)
    return math.isfinite(value) and value >= 0


def _is_text(value: object) -> bool:
    return isinstance(value, str)


def _is_name(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _is_names(value: object) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(x, str) for x in value)


def _is_object(value: object) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)


def _anything(value: object) -> bool:
    return True


_Field = tuple[Callable[[object], bool], str]
_COUNT: _Field = (is_count, "a whole number of at least 0")
_SECONDS: _Field = (is_seconds, "a finite number of seconds, at least 0")
_TEXT: _Field = (_is_text, "a string")
_NAME: _Field = (_is_name, "a non-empty string")
_FLAG: _Field = (lambda value: type(value) is bool, "true or false")

# kind -> (required fields, optional fields); other keys are kept if their values are JSON.
_SCHEMAS: dict[str, tuple[dict[str, _Field], dict[str, _Field]]] = {
    "model.exchange": (
        {"turn": _COUNT},
        {
            "input_tokens": _COUNT,
            "output_tokens": _COUNT,
            "seconds": _SECONDS,
            "calls": (_is_names, "a list of tool names (strings)"),
            "error": _TEXT,
            "cached_tokens": _COUNT,
            "estimated": _FLAG,
            "cancelled": _FLAG,
            "overran": _FLAG,
            "model": _TEXT,
            "provider": _TEXT,
            "response_model": _TEXT,
            "usd": (is_seconds, "a finite number of US dollars, at least 0"),
            "request": (_is_object, "an object (the request sent)"),
            "response": (_is_object, "an object (the response received)"),
        },
    ),
    "tool.called": (
        {"tool": _NAME},
        {
            "arguments": (_anything, "JSON"),
            "seconds": _SECONDS,
            "error": _TEXT,
            "replayed": _FLAG,
            "key": _TEXT,
        },
    ),
    "tool.refused": ({"tool": _NAME, "reason": _TEXT}, {}),
    "child.started": (
        {"child_run": _NAME},
        {"budget": (_is_object, "an object of limits")},
    ),
}

TRACE_KINDS = frozenset(_SCHEMAS)
"""The kinds of trace entry, each journaled as the event of the same name."""

# kind -> (required field names, every known field's check): worked out once.
_CHECKS = {
    kind: (tuple(required), {**required, **optional})
    for kind, (required, optional) in _SCHEMAS.items()
}


def _malformed(entry: object) -> str | None:
    """Why `entry` cannot go in a trace, or None if it can (JSON values are checked apart)."""
    if not isinstance(entry, Mapping):
        return f"a trace entry is a dict, got {type(entry).__name__}"
    kind = entry.get("kind")
    checks = _CHECKS.get(kind) if isinstance(kind, str) else None
    if checks is None:
        return f"'kind' must be one of {', '.join(sorted(_SCHEMAS))}; got {kind!r:.80}"
    required, fields = checks
    for name in required:
        if name not in entry:
            return f"a {kind} entry needs '{name}' ({fields[name][1]})"
    for name, value in entry.items():
        if not isinstance(name, str):
            return "a trace entry's keys are strings"
        check = fields.get(name)
        if check is not None and not check[0](value):
            return f"'{name}' of a {kind} entry must be {check[1]}; got {value!r:.80}"
    return None


def _encode(entry: Mapping[str, Any]) -> bytes:
    """`entry` as JSON: a copy the specialist can no longer change, written as the journal
    writes it (NaN and Infinity as null), so that the foreman journals these bytes as they are.
    Raises ValueError (or RecursionError) if it cannot be written: a cycle, invalid UTF-8."""
    return to_json(entry, fallback=str, inf_nan_mode="null")


class Trace(Sequence[dict[str, Any]]):
    """The dispatch's record of model exchanges, tool calls and refusals, in the order they
    happened: append-only, every entry validated, read back as fresh dicts.

    Reading (`for entry in ctx.trace`, `ctx.trace[i]`, `len(ctx.trace)`) gives copies: each
    entry is a dict with a `"kind"` in `TRACE_KINDS` and that kind's fields, JSON values only.
    """

    __slots__ = ("_ctx", "_entries")
    _ctx: Owner
    _entries: list[tuple[str, bytes]]
    """Each entry's kind and JSON text, one tuple appended at once (a sync tool's thread may
    trace meanwhile): the foreman journals an entry under its kind without reading it back."""

    def __init__(self, ctx: Owner) -> None:
        refuse_second_init(self, "_ctx")
        object.__setattr__(self, "_ctx", ctx)
        object.__setattr__(self, "_entries", [])

    def __setattr__(self, name: str, value: object) -> None:
        self._ctx._refuse("ctx.trace", f"the trace is append-only: {name} cannot be set")

    def append(self, entry: Mapping[str, Any]) -> None:
        """Add an entry: a dict with `"kind"` (one of `TRACE_KINDS`) and that kind's fields:

        - `model.exchange`: `turn` (int ≥ 0); optional `input_tokens`, `output_tokens` (int ≥ 0),
          `seconds` (number ≥ 0), `calls` (list of str), `error` (str), `model`, `provider`,
          `response_model` (str), `usd` (number ≥ 0, what the request cost), `request` and
          `response` (objects: `hubspoke.specialists.recording`).
        - `tool.called`: `tool` (non-empty str); optional `arguments` (JSON), `seconds`, `error`,
          `replayed` (bool) and `key` (str).
        - `tool.refused`: `tool` (non-empty str), `reason` (str).
        - `child.started`: `child_run` (non-empty str); optional `budget` (object).

        Other keys are kept. Every value must be JSON-serialisable (non-JSON objects are written
        as their `str`).

        Raises:
            ContextError: the entry is malformed (recorded as a `tool.refused` entry), or the
                dispatch has ended.
        """
        ctx = self._ctx
        ctx._check_open()
        # Written once, read back, and the copy read back is what is checked and kept: a
        # mapping that answers differently when read twice cannot pass one thing and store
        # another, and NaN or Infinity (not JSON) is refused.
        encoded = b""
        copy: Any = None
        try:
            encoded = to_json(dict(entry), fallback=str, inf_nan_mode="constants")
            copy = from_json(encoded, allow_inf_nan=False)
            problem = _malformed(copy)
        except (ValueError, RecursionError, TypeError) as e:
            problem = f"a trace entry's values are JSON; this one cannot be written ({e})"
        if problem is not None:
            ctx._refuse(
                "ctx.trace.append",
                f"malformed trace entry refused: {problem}. Append a dict such as "
                "{'kind': 'tool.called', 'tool': 'lookup', 'arguments': {...}}",
            )
        self._entries.append((copy["kind"], encoded))

    def _add(self, entry: Mapping[str, Any]) -> int:
        """Record an entry the runtime made (trusted fields); returns its position."""
        self._entries.append((entry["kind"], _encode(entry)))
        return len(self._entries) - 1

    def _add_exchange(self, text: bytes) -> None:
        """Record a `model.exchange` entry the runtime wrote as JSON itself (an agent's model
        exchange, its request and response written by `hubspoke.specialists.recording`):
        `text` must be one JSON object whose `"kind"` is ``"model.exchange"``, NaN written as
        null.

        Raises:
            ContextError: the dispatch has ended.
        """
        self._ctx._check_open()
        self._entries.append(("model.exchange", text))

    def _json(self) -> list[tuple[str, bytes]]:
        """Each entry's kind and the JSON text it is kept as: what the foreman journals."""
        return list(self._entries)

    def _replace(self, position: int, entry: Mapping[str, Any]) -> None:
        """Complete an entry recorded when its call started, keeping its place in the order."""
        if not self._ctx.closed:
            self._entries[position] = (entry["kind"], _encode(entry))

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [parse(text) for _, text in self._entries[index]]
        entry: dict[str, Any] = parse(self._entries[index][1])
        return entry

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for _, encoded in self._entries:
            entry: dict[str, Any] = parse(encoded)
            yield entry

    def __setitem__(self, index: object, value: object) -> NoReturn:
        self._ctx._refuse("ctx.trace", "the trace is append-only: entries cannot be replaced")

    def __delitem__(self, index: object) -> NoReturn:
        self._ctx._refuse("ctx.trace", "the trace is append-only: entries cannot be deleted")

    def __repr__(self) -> str:
        return f"Trace({list(self)!r})"
