"""Progress of a run while it runs: a Rich live view on a terminal, plain lines otherwise.

Both are journal listeners: the foreman calls them synchronously with every event it emits.
They must stay cheap, because a 10,000-item run emits ~50,000 events: the live view only folds
each event into its own `RunState` and a timer on the event loop redraws at most
`REFRESH_PER_SECOND` times a second; the plain view prints only phase starts and ends,
escalations, budget refusals and the run's start and end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from hubspoke.cli.render import fmt_seconds, fmt_tokens, fmt_usd, ladder_text, status_text
from hubspoke.events import Event, EventKind, payload
from hubspoke.journal import RunState

__all__ = ["REFRESH_PER_SECOND", "LiveProgress", "PlainProgress", "Progress"]

REFRESH_PER_SECOND = 8
"""Most frames the live view draws in a second."""
_NOTABLE = 5
"""Recent retries, fallbacks, escalations and failures kept on screen."""
_BAR = 20
_WIDE = 100
"""Terminal width from which the live table shows each phase's ladder counts."""


class Progress(Protocol):
    """A journal listener that shows a run's progress for the length of `showing()`."""

    def __call__(self, event: Event) -> None: ...

    def showing(self) -> AbstractAsyncContextManager[None]: ...


class PlainProgress:
    """Prints one line per phase start and end, escalation, budget refusal and run start/end.

    Args:
        console: where the lines go (stderr, so that stdout keeps only the summary).
        run_id: only this run's events are reported.
    """

    def __init__(self, console: Console, run_id: str) -> None:
        self.console = console
        self.run_id = run_id
        self._started: dict[str, tuple[float, int]] = {}

    @asynccontextmanager
    async def showing(self) -> AsyncIterator[None]:
        yield

    def _say(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def __call__(self, event: Event) -> None:
        if event.run_id != self.run_id:
            return
        kind = event.kind
        if kind is EventKind.PHASE_STARTED and event.phase is not None:
            items = payload(event, kind)["items"]
            self._started[event.phase] = (event.ts, items)
            self._say(f"phase {event.phase}: started, {items} item(s)")
        elif kind is EventKind.PHASE_FINISHED and event.phase is not None:
            finished = payload(event, kind)
            started, items = self._started.get(event.phase, (event.ts, 0))
            # A phase the run stopped has no counts.
            accepted: int = finished.get("accepted", 0)
            escalated: int = finished.get("escalated", 0)
            self._say(
                f"phase {event.phase}: {finished['status']} in "
                f"{fmt_seconds(event.ts - started)}, {accepted} of {max(items, accepted)} "
                f"accepted, {escalated} escalated"
            )
        elif kind is EventKind.ITEM_ESCALATED:
            self._say(f"escalated {event.item} ({event.role}): {payload(event, kind)['reason']}")
        elif kind is EventKind.BUDGET_REFUSED:
            reason = payload(event, kind)["reason"]
            self._say(f"budget refused {event.item} ({event.role}): {reason}")
        elif kind is EventKind.RUN_STARTED:
            workflow = payload(event, kind)["workflow"]
            self._say(f"run {event.run_id} started: workflow {workflow}")
        elif kind is EventKind.RUN_RESUMED:
            again = len(payload(event, kind)["in_flight"])
            self._say(f"run {event.run_id} resumed: {again} item(s) that were in flight run again")
        elif kind is EventKind.RUN_FINISHED:
            ended = payload(event, kind)
            reason = f": {ended['reason']}" if ended["reason"] else ""
            self._say(f"run {event.run_id} {ended['status']}{reason}")


_NOTABLE_KINDS = {
    EventKind.ITEM_RETRY: "retry",
    EventKind.ITEM_FALLBACK: "fallback",
    EventKind.ITEM_ESCALATED: "escalated",
    EventKind.ITEM_FAILED: "failed",
    EventKind.ITEM_STUCK: "stuck",
    EventKind.ITEM_WAITING: "waiting",
    EventKind.BUDGET_REFUSED: "budget refused",
    EventKind.PLAN_ACCEPTED: "plan",
    EventKind.PLAN_REJECTED: "plan rejected",
    EventKind.PLAN_STALLED: "replanning",
    EventKind.ROUTER_DECIDED: "router",
    EventKind.ROUTER_REJECTED: "router rejected",
}


_COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("phase", "left"),
    ("status", "left"),
    ("progress", "left"),
    ("done", "right"),
    ("in flight", "right"),
    ("tokens", "right"),
    ("USD", "right"),
    ("ladder", "left"),
)


def _why(event: Event) -> str:
    """What a ladder event says about its item: the reason, or the correction of a retry."""
    kind = event.kind
    if kind is EventKind.ITEM_FALLBACK:
        fallback = payload(event, kind)
        return f"to {fallback['to']}: {fallback['reason']}"
    if kind is EventKind.ITEM_RETRY:
        return payload(event, kind)["correction"]
    if kind is EventKind.ITEM_ESCALATED:
        return payload(event, kind)["reason"]
    if kind is EventKind.ITEM_FAILED:
        return payload(event, kind)["reason"]
    if kind is EventKind.BUDGET_REFUSED:
        return payload(event, kind)["reason"]
    if kind is EventKind.ITEM_WAITING:
        waiting = payload(event, kind)
        return f"{waiting['seconds']:.3g}s for the provider: {waiting['reason']}"
    if kind is EventKind.PLAN_ACCEPTED:
        steps = payload(event, kind)["steps"]
        return f"{len(steps)} step(s): " + ", ".join(f"{s['id']} ({s['role']})" for s in steps)
    if kind is EventKind.PLAN_REJECTED:
        errors = payload(event, kind)["errors"]
        return f"{len(errors)} error(s): " + "; ".join(str(e.get("msg", "")) for e in errors)
    if kind is EventKind.PLAN_STALLED:
        return payload(event, kind)["reason"]
    if kind is EventKind.ROUTER_DECIDED:
        decided = payload(event, kind)
        if decided["action"] == "dispatch":
            return f"dispatch {decided.get('step', '')} ({decided.get('role', '')})"
        said = decided.get("question") or decided.get("reason") or ""
        return decided["action"] + (f": {said}" if said else "")
    if kind is EventKind.ROUTER_REJECTED:
        errors = payload(event, kind)["errors"]
        return f"{len(errors)} error(s): " + "; ".join(str(e.get("msg", "")) for e in errors)
    return ""  # item.stuck: its fingerprint says nothing to a reader


def _notable_line(event: Event) -> Text:
    """One line about a ladder event, e.g. ``escalated draft[2] (drafter) is Hold real?``."""
    why = _why(event)
    label = _NOTABLE_KINDS[event.kind]
    line = Text(f"{label} ", style="yellow" if label == "retry" else "bold magenta")
    line.append(f"{event.item} ({event.role}) ")
    line.append(" ".join(why.split())[:120], style="dim")
    line.no_wrap, line.overflow = True, "ellipsis"
    return line


class LiveProgress:
    """A Rich live view of a run: phases with progress bars, work in flight, the ladder, cost.

    Args:
        console: a terminal console (stderr).
        run_id: only this run's events are folded.
        phases: the workflow's phase names, shown as pending until they start.
        state: the fold of the run's earlier events when resuming.
    """

    def __init__(
        self,
        console: Console,
        run_id: str,
        phases: Sequence[str],
        state: RunState | None = None,
    ) -> None:
        self.console = console
        self.run_id = run_id
        self.phases = tuple(phases)
        self.state = state or RunState(run_id)
        self.notable: deque[Event] = deque(maxlen=_NOTABLE)
        self.events = 0
        """Events received in this session."""

    def __call__(self, event: Event) -> None:
        if event.run_id != self.run_id:
            return
        self.events += 1
        self.state.apply(event)
        if event.kind in _NOTABLE_KINDS:
            self.notable.append(event)

    @asynccontextmanager
    async def showing(self) -> AsyncIterator[None]:
        live = Live(console=self.console, auto_refresh=False, transient=False)
        ticker = asyncio.get_running_loop().create_task(self._tick(live))
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            if self.events and not live.is_started:
                live.start()  # a run that ended before the first tick still shows its end
            if live.is_started:
                live.update(self.render(), refresh=True)
                live.stop()

    async def _tick(self, live: Live) -> None:
        # Redraw on a timer, never per event, and on the loop's own thread, so the state is
        # never read while an event is being folded into it. The view appears with the first
        # event of this session: a run refused before it starts (bad input, locked) shows none.
        while True:
            if self.events:
                if not live.is_started:
                    live.start()
                live.update(self.render(), refresh=True)
            await asyncio.sleep(1 / REFRESH_PER_SECOND)

    def _elapsed(self) -> float:
        state = self.state
        if not state.started:
            return 0.0
        end = state.finished if state.finished is not None else time.time()
        return state.elapsed_before + max(0.0, end - state.started)

    def render(self) -> RenderableType:
        """The current frame: totals, one row per phase, the latest ladder events."""
        state = self.state
        # Per-phase ladder counts only fit on a wide terminal; the totals line always has them.
        wide = self.console.width >= _WIDE
        columns = _COLUMNS if wide else _COLUMNS[:-1]
        table = Table(box=None, padding=(0, 1), pad_edge=False, header_style="bold")
        for name, justify in columns:
            table.add_column(name, justify=justify, no_wrap=name != "ladder")
        names = list(self.phases) + [p for p in state.phases if p not in self.phases]
        for name in names:
            phase = state.phases.get(name)
            if phase is None:
                bar = ProgressBar(total=1, completed=0, width=_BAR)
                table.add_row(name, status_text("pending"), bar, *[""] * (len(columns) - 3))
                continue
            done = min(phase.items, phase.accepted + phase.escalated + phase.failed)
            cells: list[RenderableType] = [
                name,
                status_text(phase.status),
                ProgressBar(total=max(phase.items, 1), completed=done, width=_BAR),
                f"{done}/{phase.items}",
                str(max(phase.in_flight, 0)),
                fmt_tokens(phase.usage.tokens),
                fmt_usd(phase.usage.usd),
            ]
            if wide:
                cells.append(ladder_text(phase.counts()))
            table.add_row(*cells)
        parts: list[RenderableType] = [self._headline(), self._totals(), table]
        if self.notable:
            parts.append(Text("recent:", style="dim"))
            parts.extend(_notable_line(event) for event in self.notable)
        return Group(*parts)

    def _headline(self) -> Text:
        state = self.state
        head = Text("run ")
        head.append(self.run_id, style="bold")
        head.append(" ")
        head.append_text(status_text(state.status))
        if state.workflow:
            head.append(f" · {state.workflow}")
        head.append(f" · {fmt_seconds(self._elapsed())}")
        return head

    def _totals(self) -> Text:
        state = self.state
        phases = state.phases.values()
        ladder = {
            "retried": sum(p.retried for p in phases),
            "fallbacks": sum(p.fallbacks for p in phases),
            "escalated": state.escalations,
            "failed": sum(p.failed for p in phases),
        }
        line = Text(
            f"{state.steps} dispatches · {sum(max(p.in_flight, 0) for p in phases)} in flight · "
            f"{fmt_tokens(state.usage.tokens)} tokens · {fmt_usd(state.usage.usd)} · ",
            style="dim",
        )
        line.append_text(ladder_text(ladder) if any(ladder.values()) else Text("no retries"))
        if state.cards_in_review:
            line.append(f" · {state.cards_in_review} in review", style="bold")
        return line
