"""Journal payloads: one type per kind, the same for the writer and every reader."""

from __future__ import annotations

import ast
import json
import pickle
import typing
from pathlib import Path
from typing import Any, Literal, cast

import pytest
from pydantic import BaseModel

from hubspoke import Context, Event, EventKind, Foreman, SQLiteStore
from hubspoke.events import PAYLOADS, Payload, TextEvent, Unchecked, payload
from hubspoke.examples.sales import DEMO_INPUT, workflow
from hubspoke.journal import Journal
from hubspoke.testing import payload_errors, stream
from tests.helpers import one_step

pytestmark = pytest.mark.anyio

SRC = Path(__file__).resolve().parents[1] / "src"


# one payload type per kind ------------------------------------------------------------------------


def test_every_kind_has_exactly_one_payload_type() -> None:
    assert set(PAYLOADS) == set(EventKind)
    types = list(PAYLOADS.values())
    assert all(typing.is_typeddict(t) for t in types)
    assert len(set(types)) == len(types), "two kinds share a payload type"
    assert set(typing.get_args(Payload)) == set(types)


def _pairs(function: Any) -> dict[EventKind | None, Any]:
    """The kind each overload of `function` takes (None: any kind), with its payload type;
    an overload that takes only the payload's JSON text (no `data`) is left out."""
    pairs = {}
    for overload in typing.get_overloads(function):
        hints = typing.get_type_hints(overload)
        if "encoded" in hints and "data" not in hints:
            continue
        kind = hints["kind"]
        literal = typing.get_origin(kind) is Literal
        pairs[typing.get_args(kind)[0] if literal else None] = hints.get("data", hints["return"])
    return pairs


def test_the_writer_and_the_reader_pair_each_kind_with_its_payload_type() -> None:
    """`Journal.emit` takes, and `payload` returns, each kind's own type; only `emit` also
    takes a kind chosen at run time, with an `Unchecked` payload or its JSON text alone."""
    text_only = [
        hints
        for overload in typing.get_overloads(Journal.emit)
        if "data" not in (hints := typing.get_type_hints(overload))
    ]
    assert [(h["kind"], h["encoded"]) for h in text_only] == [(EventKind, str)]
    emits = _pairs(Journal.emit)
    assert emits.pop(None) is Unchecked
    assert emits == PAYLOADS
    assert _pairs(payload) == PAYLOADS


def test_payload_is_the_events_own_data_and_refuses_another_kind() -> None:
    event = Event("r", 3, 0.0, EventKind.RUN_FINISHED, data={"status": "completed", "reason": ""})
    assert payload(event, EventKind.RUN_FINISHED) is event.data
    with pytest.raises(ValueError, match=r"event 3 of run r is run\.finished, not phase\.finished"):
        payload(event, EventKind.PHASE_FINISHED)


# the type checker sees both ends ---------------------------------------------------------------


def _typos_the_type_checker_catches(journal: Journal, event: Event) -> int:
    """Never called. mypy checks this file strictly, so an ignore that silences no error is an
    error itself: each line below stays an error of its code, or `make check` fails."""
    journal.emit(  # type: ignore[call-overload]
        EventKind.RUN_FINISHED, data={"stauts": "completed", "reason": ""}
    )
    journal.emit(  # type: ignore[call-overload]
        EventKind.RUN_FINISHED, data={"reason": "no status"}
    )
    journal.emit(  # type: ignore[call-overload]
        EventKind.ITEM_RETRY,
        data={"to": "backup", "reason": "tired"},  # item.fallback's
    )
    payload(event, EventKind.RUN_FINISHED)["stauts"]  # type: ignore[typeddict-item]
    # mypy types `.get` of a key the type lacks as `object`, which no typed use takes:
    started = payload(event, EventKind.DISPATCH_STARTED)
    tries: int = started.get("trise", 0)  # type: ignore[assignment]
    return tries


SNIPPET = """\
from hubspoke.events import Event, EventKind, payload
from hubspoke.journal import Journal


def write(journal: Journal) -> None:
    journal.emit(EventKind.RUN_FINISHED, data={"stauts": "completed", "reason": ""})
    journal.emit(EventKind.ITEM_RETRY, data={"to": "backup", "reason": "tired"})
    journal.emit(EventKind.RUN_FINISHED, data={"status": "completed", "reason": ""})


def read(event: Event) -> None:
    print(payload(event, EventKind.DISPATCH_FINISHED)["outcoem"])
"""


def test_a_payload_key_typo_is_a_type_error(
    tmp_path: Path, pytestconfig: pytest.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mypy, run on a snippet, reports the writer's typo and wrong payload, and the reader's
    typo, and passes the right call.

    The first run in a checkout takes ~20 s (mypy reads hubspoke and pydantic); its cache is
    kept in pytest's cache folder, so later runs take about a second. The same cases are in
    `_typos_the_type_checker_catches`, which `make check` verifies at no cost to pytest.
    """
    api = pytest.importorskip("mypy.api")
    (tmp_path / "snippet.py").write_text(SNIPPET)
    kept = getattr(pytestconfig, "cache", None)  # absent with -p no:cacheprovider
    cache = kept.mkdir("mypy") if kept is not None else tmp_path / "cache"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MYPYPATH", str(SRC))
    out, err, code = api.run(
        ["--strict", "--follow-imports=silent", "--cache-dir", str(cache), "snippet.py"]
    )
    errors = [line for line in out.splitlines() if ": error: " in line]
    assert code == 1, out + err
    assert [(e.split(":")[1], e.rsplit("[", 1)[-1]) for e in errors] == [
        ("6", "call-overload]"),
        ("7", "call-overload]"),
        ("12", "typeddict-item]"),
    ], out
    assert 'TypedDict "DispatchFinished" has no key "outcoem"' in out


def test_no_module_reads_event_data_but_through_its_payload_type() -> None:
    """Every `event.data[...]` and `event.data.get(...)` in the package goes through
    `payload(event, kind)`, so the type checker sees the key; only `events.py` touches
    `.data` by key (its accessor)."""
    found = []
    for path in sorted((SRC / "hubspoke").rglob("*.py")):
        if path.name == "events.py" and path.parent.name == "hubspoke":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            target = None
            if isinstance(node, ast.Subscript):
                target = node.value
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = node.func.value if node.func.attr == "get" else None
            if isinstance(target, ast.Attribute) and target.attr == "data":
                found.append(f"{path.relative_to(SRC)}:{getattr(node, 'lineno', '?')}")
    assert found == []


# what the runtime writes fits the types --------------------------------------------------------


async def test_every_event_the_sales_demo_writes_fits_its_payload_type() -> None:
    store = SQLiteStore(":memory:")
    result = await Foreman(workflow, store).run(DEMO_INPUT)
    events = store.events(result.run_id)
    for event in events:  # the check `payload_errors` makes, spelled out once
        shape = PAYLOADS[event.kind]
        assert shape.__required_keys__ <= event.data.keys(), event
        assert event.data.keys() <= shape.__required_keys__ | shape.__optional_keys__, event
    assert payload_errors(events) == []


def test_payload_errors_name_the_missing_and_unknown_keys() -> None:
    events = [
        Event("r", 1, 0.0, EventKind.PHASE_STARTED, data={"items": 2}),
        Event("r", 2, 0.0, EventKind.DISPATCH_FINISHED, data={"outcome": "output", "usgae": {}}),
        Event("r", 3, 0.0, EventKind.ITEM_FAILED, data={"reason": "x", "stops_run": True}),
    ]
    assert payload_errors(events) == [
        "event 2 (dispatch.finished): missing 'usage'; unknown 'usgae'"
    ]


class Word(BaseModel):
    word: str


async def test_a_malformed_trace_entry_is_journaled_as_refused_and_shown(
    store: SQLiteStore,
) -> None:
    """A specialist's trace is validated as it is written: an entry of no known kind is refused
    (the specialist gets a `ContextError`) and journaled as a `tool.refused` naming the attempt;
    the stream shows it, and every payload fits its type."""

    async def scribble(inp: Word, ctx: Context) -> Word:
        ctx.trace.append(cast(Any, {"kind": "diary", "text": "dear diary"}))
        return inp

    wf = one_step(Word, scribble, role="scribe", phase="write")
    result = await Foreman(wf, store).run({"word": "tea"})
    events = store.events(result.run_id)
    assert "tool.refused write scribe write #1 ctx.trace.append" in stream(events)
    assert payload_errors(events) == []


def test_an_unchecked_payload_is_the_dict_it_wraps() -> None:
    """`Unchecked` costs nothing but the call: the journal gets the same dict."""
    data = {"kind": "tool.called", "tool": "t", "arguments": {}}
    assert Unchecked(data) is data


def test_an_event_made_from_its_text_reads_it_when_asked_and_equals_one_made_from_data() -> None:
    """A trace entry is journaled from its JSON text (`TextEvent`); its `data` is read from that
    text on first use, and the event is the same as one made from the parsed value: equal
    both ways, printed and pickled as it."""
    text = '{"kind":"model.exchange","turn":0,"input_tokens":12,"calls":["final_result"]}'
    where = ("r", 4, 1.5, EventKind.MODEL_EXCHANGE, "p", "worker", "p[0]", 1)
    lazy = TextEvent(*where, text)
    eager = Event(*where, json.loads(text))
    assert lazy.data == {
        "kind": "model.exchange",
        "turn": 0,
        "input_tokens": 12,
        "calls": ["final_result"],
    }
    assert lazy.data is lazy.data  # read once
    assert lazy == eager and eager == lazy
    assert TextEvent(*where, "{}") != eager and eager != TextEvent(*where, "{}")
    assert repr(lazy) == repr(eager)
    assert lazy.to_dict() == eager.to_dict()
    again = pickle.loads(pickle.dumps(lazy))
    assert type(again) is Event and again == eager
    assert payload(lazy, EventKind.MODEL_EXCHANGE) is lazy.data


def test_an_event_is_still_the_dataclass_it_was_for_listeners_that_copy_or_match_it() -> None:
    """Listeners and readers get a dataclass: `dataclasses.replace`, `asdict`, `fields` and
    positional `match` patterns work on events made from data or from text."""
    import dataclasses

    text = '{"kind":"tool.called","tool":"lookup"}'
    where = ("r", 2, 1.0, EventKind.TOOL_CALLED, "p", "worker", "p[0]", 1)
    lazy = TextEvent(*where, text)
    eager = Event(*where, json.loads(text))
    assert all(map(dataclasses.is_dataclass, (Event, lazy, eager)))
    names = ["run_id", "seq", "ts", "kind", "phase", "role", "item", "attempt", "data"]
    assert [f.name for f in dataclasses.fields(Event)] == names
    assert Event.__match_args__ == tuple(names)
    for event in (lazy, TextEvent(*where, text), eager):
        moved = dataclasses.replace(event, phase="elsewhere")
        assert moved == Event(
            "r", 2, 1.0, EventKind.TOOL_CALLED, "elsewhere", "worker", "p[0]", 1, eager.data
        )
        assert dataclasses.asdict(event) == {
            "run_id": "r",
            "seq": 2,
            "ts": 1.0,
            "kind": EventKind.TOOL_CALLED,
            "phase": "p",
            "role": "worker",
            "item": "p[0]",
            "attempt": 1,
            "data": {"kind": "tool.called", "tool": "lookup"},
        }
        match event:
            case Event(_, 2, _, EventKind.TOOL_CALLED, "p", data={"tool": tool}):
                assert tool == "lookup"
            case _:
                raise AssertionError("no match")
