"""Phases end in a declared state whatever user code the foreman calls does (issue rule 6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel, model_validator

from hubspoke import Context, Foreman, Phase, Role, SQLiteStore, Strategy, TopK, Workflow
from tests.helpers import Number, Squared, Topic, square

pytestmark = pytest.mark.anyio


class Touchy(BaseModel):
    n: int

    @model_validator(mode="after")
    def _explode(self) -> Touchy:
        if self.n == 2:
            raise RuntimeError("a validator that is not a ValueError")
        return self


async def touchy(inp: Number, ctx: Context) -> dict[str, int]:
    return {"n": inp.n}


def boom(*args: Any) -> Any:
    raise RuntimeError("user code fell over")


def fan(**phase: Any) -> Workflow:
    output = phase.pop("output", Squared)
    function = phase.pop("function", square)
    result: Callable[[Any], Any] | None = phase.pop("result", None)
    return Workflow(
        name="fan",
        input=Topic,
        roles=[
            Role(name="r", purpose="Do.", input=Number, output=output, function=function),
        ],
        phases=[
            Phase(
                name="p",
                role="r",
                over=phase.pop("over", lambda run: [1, 2, 3]),
                input=phase.pop("input", lambda run, i: Number(n=i)),
                **phase,
            )
        ],
        result=result,
    )


CASES = {
    "over raises": (fan(over=boom), "failed", "over() raised RuntimeError"),
    "input raises": (fan(input=boom), "failed", "fail_fast"),
    "a TopK key raises": (fan(select=TopK(k=1, key=boom)), "failed", "TopK key raised"),
    "result raises": (fan(result=boom), "failed", "result() raised RuntimeError"),
    "a schema validator raises": (
        fan(output=Touchy, function=touchy, strategy=Strategy.BEST_EFFORT),
        "waiting",  # its items wait for a person
        "",
    ),
    "card_title raises": (fan(review=True, card_title=boom), "completed", ""),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_user_code_that_raises_ends_in_a_declared_state(
    case: str, store: SQLiteStore
) -> None:
    wf, status, why = CASES[case]
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.status == status
    assert why in result.reason
    record = store.run(result.run_id)
    assert record is not None and record.status == status  # never left `running`
    assert all(p.status != "running" for p in result.state.phases.values())


async def test_a_validator_that_raises_is_an_invalid_output_with_the_reason(
    store: SQLiteStore,
) -> None:
    wf = fan(output=Touchy, function=touchy, strategy=Strategy.BEST_EFFORT)
    result = await Foreman(wf, store).run({"topic": "x"})
    assert sorted(a.item for a in store.artifacts(result.run_id)) == ["p[0]", "p[2]"]
    [card] = store.cards(result.run_id)
    assert "the schema raised RuntimeError" in card.note


async def test_topk_keeps_rank_order(store: SQLiteStore) -> None:
    wf = fan(over=lambda run: [1, 3, 2], select=TopK(k=2, key=lambda out: out.square))
    wf = Workflow(
        name=wf.name,
        input=wf.input,
        roles=wf.roles,
        phases=wf.phases,
        result=lambda run: [o.n for o in run.outputs("p")],
    )
    result = await Foreman(wf, store).run({"topic": "x"})
    assert result.result == [3, 2]  # highest first, not item order
