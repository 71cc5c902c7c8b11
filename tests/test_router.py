"""The router foreman (docs/router.md): a router role decides each next action from a bounded
view of the run; every decision is checked (an invalid one is corrected like any invalid
output), and every invariant holds whatever it decides: budgets, the step cap, repeated
dispatches, the escalation cap, the result's schema, and resume after a kill."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from hubspoke import (
    Budget,
    Context,
    DefinitionError,
    EventKind,
    Foreman,
    Phase,
    Role,
    Route,
    RouterView,
    SQLiteStore,
    Workflow,
)
from hubspoke.foreman._route_check import Step, check_decision, router_view
from hubspoke.testing import payload_errors, stream
from tests.workflows.planned import ROLES, Answer, Ask, Finding

pytestmark = pytest.mark.anyio

CARDS = {r.name: r for r in ROLES}


class Summary(BaseModel):
    summary: str
    count: int


CARDS["summer"] = Role(
    name="summer",
    purpose="Summarise a finding.",
    input=Finding,
    output=Summary,
    function=lambda f, c: Summary(summary=f"{f.query}: {f.text}", count=1),
)


def route(action: str, **fields: Any) -> Route:
    return Route.model_validate({"next": {"action": action, **fields}})


def dispatch(role: str = "searcher", **input: Any) -> Route:
    return route("dispatch", role=role, input=input or {"query": "tides"})


def accepted(id: str, role: str = "searcher", **input: Any) -> Step:
    output = Finding(query=input.get("query", id), text=f"{id} found")
    return Step(id, role, input or {"query": id}, "accepted", artifact=f"a-{id}", output=output)


def errors_of(decision: Route, steps: list[Step] | None = None, **limits: Any) -> list[str]:
    args: dict[str, Any] = {
        "roles": CARDS,
        "allowed": ["searcher", "merger"],
        "steps": steps or [],
        "max_steps": 3,
        "returns": Answer,
    } | limits
    return [
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in check_decision(decision, **args)
    ]


# --- the decision check, from a table -----------------------------------------------------------

VALID: list[tuple[str, Route, list[Step]]] = [
    ("a dispatch of an allowed role", dispatch(), []),
    (
        "a reference to an accepted step",
        dispatch("merger", findings=[{"$from": "s1"}]),
        [accepted("s1")],
    ),
    ("a finish with the result's fields", route("finish", result={"text": "done"}), []),
    (
        "a finish with a field of a step's output",
        route("finish", result={"text": {"$from": "s1", "field": "text"}}),
        [accepted("s1")],
    ),
    ("an escalation", route("escalate", question="which region?"), []),
    ("an abort", route("abort", reason="nothing to find"), []),
]

INVALID: list[tuple[str, Route, list[Step], dict[str, Any], str]] = [
    (
        "an unknown role",
        dispatch("oracle"),
        [],
        {},
        "next.role: no role named 'oracle' (roles this plan may use: searcher, merger)",
    ),
    (
        "a role the phase does not allow",
        dispatch("summer", query="x", text="y"),
        [],
        {},
        "next.role: this plan may not use the role 'summer'",
    ),
    (
        "an input invalid for the role, strictly",
        dispatch(query="x", depth="2"),
        [],
        {},
        "next.input.depth: Input should be a valid integer",
    ),
    (
        "an input missing a field",
        route("dispatch", role="searcher", input={}),
        [],
        {},
        "next.input.query: Field required",
    ),
    (
        "a reference to a step that has no output",
        dispatch("merger", findings=[{"$from": "s1"}]),
        [Step("s1", "searcher", {"query": "a"}, "failed", "boom")],
        {},
        "next.input.findings: no step 's1' to take the output of (steps: s2)",
    ),
    (
        "the same dispatch again",
        dispatch(query="a"),
        [accepted("s1", query="a")],
        {},
        "next: repeats step 's1' (searcher, accepted): the same dispatch learns nothing new",
    ),
    (
        "a dispatch past the step cap",
        dispatch(query="z"),
        [accepted("s1"), accepted("s2"), accepted("s3")],
        {},
        "next.action: no steps left (max_steps=3)",
    ),
    (
        "a result invalid for the schema",
        route("finish", result={"txt": "done"}),
        [],
        {},
        "next.result.text: Field required",
    ),
    (
        "a result referencing a step that has no output",
        route("finish", result={"$from": "s9"}),
        [accepted("s1")],
        {},
        "next.result.$whole: no accepted step 's9' to take the output of (accepted: s1)",
    ),
    (
        "a result whose referenced output does not fit",
        route("finish", result={"$from": "s1"}),
        [accepted("s1")],
        {"returns": Summary},
        "next.result.summary: Field required",
    ),
]


@pytest.mark.parametrize(("name", "decision", "steps"), VALID, ids=[v[0] for v in VALID])
def test_a_valid_decision_has_no_errors(name: str, decision: Route, steps: list[Step]) -> None:
    assert errors_of(decision, steps) == []


@pytest.mark.parametrize(
    ("name", "decision", "steps", "limits", "error"), INVALID, ids=[v[0] for v in INVALID]
)
def test_an_invalid_decision_names_its_error(
    name: str, decision: Route, steps: list[Step], limits: dict[str, Any], error: str
) -> None:
    found = errors_of(decision, steps, **limits)
    assert any(e.startswith(error) for e in found), found


def test_a_router_may_offer_no_more_than_four_actions() -> None:
    schema = Route.model_json_schema()
    actions = schema["properties"]["next"]["discriminator"]["mapping"]
    assert sorted(actions) == ["abort", "dispatch", "escalate", "finish"]
