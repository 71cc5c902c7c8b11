"""The run view: what a phase's functions may read of the run so far.

A phase's `input` and `over` functions, a `TopK` key's phase and a workflow's `result` are given
a `RunView`: the run's validated input and the outputs accepted so far, by phase. The foreman
records each accepted output in it as it accepts one; reading a phase the workflow does not have,
or reading a fan-out phase as if it had one output, raises `OutputLookupError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from hubspoke.errors import OutputLookupError

__all__ = ["ArtifactRef", "RunView"]


class ArtifactRef(BaseModel):
    """A reference to an accepted artifact, handed to synthesis phases."""

    id: str
    phase: str
    item: str
    content: dict[str, Any]


class _Planned(Protocol):
    """What the run view reads of a phase (a `hubspoke.Phase`): its name, and whether it fans
    out (`over` is not None)."""

    @property
    def name(self) -> str: ...

    @property
    def over(self) -> object: ...


def _item_order(key: str) -> tuple[int, str]:
    start = key.rfind("[")
    if start != -1 and key.endswith("]") and key[start + 1 : -1].isdigit():
        return (int(key[start + 1 : -1]), key)
    return (-1, key)


class RunView:
    """What a phase's `input` and `over` functions may read: the run input and accepted outputs.

    Args:
        input: the run's validated input.
        phases: the workflow's phases. Given (as the foreman does), asking for a phase the
            workflow does not have, or for `output()` of a fan-out phase, raises
            `OutputLookupError` instead of answering as if the phase had no output.
    """

    __slots__ = ("_fan_out", "_held", "_outputs", "_selected", "input")

    def __init__(self, input: BaseModel, *, phases: Sequence[_Planned] = ()) -> None:
        self.input: Any = input
        """The run's validated input (an instance of the workflow's input schema)."""
        self._outputs: dict[str, dict[str, tuple[str, BaseModel]]] = {}
        self._held: dict[str, dict[str, tuple[str, BaseModel]]] = {}
        self._selected: dict[str, list[str]] = {}
        # A planned phase (`plan_by`) has one output per step, like a fan-out.
        self._fan_out: dict[str, bool] = {
            p.name: p.over is not None or getattr(p, "plan_by", None) is not None for p in phases
        }

    def record(self, phase: str, item: str, artifact_id: str, output: BaseModel) -> None:
        """Record an accepted output (the foreman calls this as it accepts one)."""
        self._outputs.setdefault(phase, {})[item] = (artifact_id, output)

    def hold(self, phase: str, item: str, artifact_id: str, output: BaseModel) -> None:
        """Record an accepted output that a review gate holds back: `accepted` finds it (the
        phase's own `TopK` ranks it), but `output`, `outputs` and `artifacts` do not show it
        until it is approved (`record`)."""
        self._held.setdefault(phase, {})[item] = (artifact_id, output)

    def select(self, phase: str, items: list[str]) -> None:
        """Record a phase's selection (`TopK`), in rank order (the foreman calls this)."""
        self._selected[phase] = items

    def accepted(self, phase: str, item: str) -> tuple[str, BaseModel]:
        """The artifact id and output accepted for one item.

        Raises:
            KeyError: the item has no accepted output.
        """
        shown = self._outputs.get(phase, {}).get(item)
        return shown if shown is not None else self._held[phase][item]

    def _known(self, phase: str) -> None:
        if self._fan_out and phase not in self._fan_out:
            raise OutputLookupError(
                f"the workflow has no phase {phase!r} (phases: {', '.join(self._fan_out)})"
            )

    def _accepted(self, phase: str) -> list[tuple[str, str, BaseModel]]:
        self._known(phase)
        by_item = self._outputs.get(phase, {})
        keys = self._selected.get(phase)
        if keys is None:
            keys = sorted(by_item, key=_item_order)
        return [(k, *by_item[k]) for k in keys if k in by_item]

    def output(self, phase: str) -> Any:
        """The accepted output of a one-dispatch phase (an instance of its role's output).

        Raises:
            OutputLookupError: the workflow has no such phase; the phase fans out (use
                `outputs`); or it has no accepted output.
        """
        self._known(phase)
        if self._fan_out.get(phase):
            raise OutputLookupError(
                f"phase {phase!r} fans out (over=...), one output per element: read them with "
                f"run.outputs({phase!r})"
            )
        accepted = self._accepted(phase)
        if not accepted:
            raise OutputLookupError(f"phase {phase!r} has no accepted output")
        return accepted[0][2]

    def step(self, phase: str, step_id: str) -> Any:
        """The accepted output of one step of a planned phase (``Phase(plan_by=...)``).

        Raises:
            OutputLookupError: the workflow has no such phase, or that step has no accepted
                output (it was never planned, or it ended without one).
        """
        self._known(phase)
        found = self._outputs.get(phase, {}).get(f"{phase}[{step_id}]")
        if found is None:
            raise OutputLookupError(f"step {step_id!r} of phase {phase!r} has no accepted output")
        return found[1]

    def outputs(self, phase: str) -> list[Any]:
        """The accepted outputs of a phase, in item order; with `select=TopK(...)`, the kept
        ones in rank order (highest key first). Empty when nothing was accepted.

        Raises:
            OutputLookupError: the workflow has no such phase.
        """
        return [output for _, _, output in self._accepted(phase)]

    def artifacts(self, phase: str) -> list[ArtifactRef]:
        """References to the accepted artifacts of a phase, for synthesis, in `outputs` order.

        Raises:
            OutputLookupError: the workflow has no such phase.
        """
        return [
            ArtifactRef(id=aid, phase=phase, item=item, content=out.model_dump(mode="json"))
            for item, aid, out in self._accepted(phase)
        ]
