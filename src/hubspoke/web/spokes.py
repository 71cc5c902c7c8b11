"""The run drawn as hub and spoke: an SVG string made on the server.

The foreman sits at the centre; each role is a spoke: its dispatches and cost in its circle,
its name and counts (accepted, retried, escalated, failed, in flight) under it. The counts are
the fold's own counters (`RunState`), kept per role instead of per phase: `role_counts` folds
the run's events with each event's phase replaced by its role, so a spoke counts exactly what
the phase table counts, by the same code.

No framework here: `draw` returns markup, every string from the journal (role names, the run's
status) escaped for SVG text and attributes alike. The drawing scales with its `viewBox`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from urllib.parse import urlencode

from hubspoke.events import Event, EventKind
from hubspoke.journal import PhaseState, RunState

__all__ = ["Spoke", "as_role_event", "draw", "role_counts", "spokes"]

_PHASE_KINDS = frozenset(
    {EventKind.PHASE_STARTED, EventKind.PHASE_SELECTED, EventKind.PHASE_FINISHED}
)

WIDTH, HEIGHT = 600, 500
"""The drawing's `viewBox`: it scales to the width it is given (`width="100%"`)."""
_HUB_R, _NODE_R = 56, 36
_HALO = 'paint-order="stroke" stroke="#ffffff" stroke-width="4" stroke-linejoin="round"'
"""Text under a spoke stays legible where the spoke's line runs under it."""
_NAME_CHARS = 18
"""Characters of a role's name drawn on its spoke; the whole name is in its tooltip."""

_COLOURS: dict[str, tuple[str, str]] = {
    # state: (fill, stroke)
    "failed": ("#fde2e1", "#b42318"),
    "escalated": ("#fff4d6", "#a15c00"),
    "retried": ("#fffbe6", "#8a6d00"),
    "busy": ("#e3efff", "#1d5fbf"),
    "done": ("#e4f5e9", "#1e7a3c"),
    "idle": ("#f1f2f4", "#6b7280"),
}
"""How a spoke looks by its state (`Spoke.state`): red where items failed."""


@dataclass(frozen=True, slots=True)
class Spoke:
    """One role of the run and what the fold counts for it."""

    role: str
    kind: str = ""
    """``agent``, ``function`` or ``workflow`` (a sub-workflow) as the run's recorded shape says;
    ``""`` when the journal does not say."""
    dispatched: int = 0
    accepted: int = 0
    """Items this role's output was accepted for."""
    retried: int = 0
    escalated: int = 0
    """Items waiting for a person after this role (answered or skipped ones no longer count)."""
    failed: int = 0
    in_flight: int = 0
    """Dispatches of this role under way now."""
    usd: float = 0.0
    """What the role spent (the fold's `usage_by_role`)."""

    @property
    def state(self) -> str:
        """What colours the spoke: ``failed`` if any of its items failed, else ``escalated``,
        ``busy`` (in flight), ``retried``, ``done`` (something accepted) or ``idle``."""
        if self.failed:
            return "failed"
        if self.escalated:
            return "escalated"
        if self.in_flight:
            return "busy"
        if self.retried:
            return "retried"
        return "done" if self.accepted else "idle"


def as_role_event(event: Event) -> Event | None:
    """The event as the per-role fold takes it: its phase replaced by its role (events without
    a role as they are), or None for a phase's own start, selection and end."""
    if event.kind in _PHASE_KINDS:
        return None
    return dataclasses.replace(event, phase=event.role) if event.role is not None else event


def role_counts(run_id: str, events: Iterable[Event]) -> dict[str, PhaseState]:
    """The fold's phase counters, kept per role: the run's events folded with each event's
    phase replaced by its role (`as_role_event`). Keys are role names in order of first
    appearance."""
    by_role = RunState(run_id)
    for event in events:
        mapped = as_role_event(event)
        if mapped is not None:
            by_role.apply(mapped)
    return dict(by_role.phases)


def spokes(
    state: RunState, counts: Mapping[str, PhaseState], shape: Mapping[str, object] | None
) -> list[Spoke]:
    """One spoke per role: the roles of the run's recorded shape in their order, then any other
    role the journal names. A role of the shape that never ran is drawn idle."""
    kinds: dict[str, str] = {}
    roles = shape.get("roles") if shape else None
    if isinstance(roles, Mapping):
        for name, card in roles.items():
            kind = card.get("kind") if isinstance(card, Mapping) else None
            kinds[str(name)] = kind if isinstance(kind, str) else ""
    names = list(kinds)
    names += [r for r in (*counts, *state.usage_by_role) if r not in kinds and r not in names]
    out = []
    for name in names:
        c = counts.get(name) or PhaseState(name)
        usage = state.usage_by_role.get(name)
        out.append(
            Spoke(
                role=name,
                kind=kinds.get(name, ""),
                dispatched=c.dispatched,
                accepted=c.accepted,
                retried=c.retried,
                escalated=c.escalated,
                failed=c.failed,
                in_flight=max(0, c.in_flight),
                usd=usage.usd if usage is not None else 0.0,
            )
        )
    return out


def _short(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"


def _count_line(spoke: Spoke) -> str:
    return (
        f"✓{spoke.accepted} ↻{spoke.retried} ⚠{spoke.escalated} ✗{spoke.failed} ▸{spoke.in_flight}"
    )


def _spoke_title(spoke: Spoke) -> str:
    kind = f" ({spoke.kind})" if spoke.kind else ""
    return (
        f"{spoke.role}{kind}: {spoke.dispatched} dispatched, {spoke.accepted} accepted, "
        f"{spoke.retried} retried, {spoke.escalated} escalated, {spoke.failed} failed, "
        f"{spoke.in_flight} in flight, ${spoke.usd:,.4f}"
    )


def draw(
    items: Sequence[Spoke], *, status: str, in_flight: int, link: str = "", label: str = "run"
) -> str:
    """The hub-and-spoke drawing as an ``<svg>`` element.

    Args:
        items: the spokes, drawn clockwise from the top.
        status: the run's status, written under the hub.
        in_flight: dispatches under way in the whole run, written in the hub.
        link: the page each spoke links to, with ``?role=NAME#events`` added (its events);
            ``""`` for the current page.
        label: the drawing's accessible name.

    Returns:
        Markup safe to put in HTML as it is: every string is escaped. Each spoke is a ``<g>``
        with ``data-role``, ``data-state`` and one ``data-`` attribute per count, for tests and
        scripts.
    """
    cx, cy = WIDTH / 2, HEIGHT / 2 - 8
    radius = min(cx, cy) - _NODE_R - 34  # room under the lowest spoke for its two lines
    total_usd = sum(s.usd for s in items) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="spokes" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-label="{escape(label)}" '
        'preserveAspectRatio="xMidYMid meet">',
        '<text x="6" y="16" font-size="12" fill="#4b5563">'
        "✓ accepted ↻ retried ⚠ escalated ✗ failed ▸ in flight</text>",
    ]
    nodes = []
    for i, spoke in enumerate(items):
        angle = -math.pi / 2 + 2 * math.pi * i / max(1, len(items))
        x, y = cx + radius * math.cos(angle), cy + radius * math.sin(angle)
        fill, stroke = _COLOURS[spoke.state]
        width = 2 + 8 * spoke.usd / total_usd
        parts.append(
            f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{x:.1f}" y2="{y:.1f}" stroke="{stroke}" '
            f'stroke-width="{width:.1f}" stroke-linecap="round"/>'
        )
        href = escape(f"{link}?{urlencode({'role': spoke.role})}#events")
        ring = (
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{_NODE_R + 5}" fill="none" '
            f'stroke="{stroke}" stroke-dasharray="4 3"/>'
            if spoke.kind == "workflow"
            else ""
        )
        data = " ".join(
            f'data-{name.replace("_", "-")}="{getattr(spoke, name)}"'
            for name in ("dispatched", "accepted", "retried", "escalated", "failed", "in_flight")
        )
        nodes.append(
            f'<g class="spoke spoke-{spoke.state}" data-role="{escape(spoke.role)}" '
            f'data-state="{spoke.state}" {data}>'
            f'<a href="{href}"><title>{escape(_spoke_title(spoke))}</title>{ring}'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{_NODE_R}" fill="{fill}" stroke="{stroke}" '
            'stroke-width="2"/>'
            f'<text x="{x:.1f}" y="{y - 2:.1f}" text-anchor="middle" font-size="17" '
            f'font-weight="700" fill="#111827">{spoke.dispatched}</text>'
            f'<text x="{x:.1f}" y="{y + 16:.1f}" text-anchor="middle" font-size="12" '
            f'fill="#374151">${spoke.usd:,.4f}</text>'
            f'<text x="{x:.1f}" y="{y + _NODE_R + 17:.1f}" text-anchor="middle" font-size="15" '
            f'font-weight="600" fill="#111827" {_HALO}>{escape(_short(spoke.role))}</text>'
            f'<text x="{x:.1f}" y="{y + _NODE_R + 34:.1f}" text-anchor="middle" font-size="14" '
            f'fill="{stroke}" {_HALO}>{escape(_count_line(spoke))}</text></a></g>'
        )
    parts.extend(nodes)
    parts.append(
        f'<g class="hub" data-status="{escape(status)}" data-in-flight="{in_flight}">'
        f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{_HUB_R}" fill="#111827"/>'
        f'<text x="{cx:.1f}" y="{cy - 10:.1f}" text-anchor="middle" font-size="16" '
        'font-weight="700" fill="#ffffff">foreman</text>'
        f'<text x="{cx:.1f}" y="{cy + 9:.1f}" text-anchor="middle" font-size="13" '
        f'fill="#e5e7eb">{escape(status)}</text>'
        f'<text x="{cx:.1f}" y="{cy + 26:.1f}" text-anchor="middle" font-size="12" '
        f'fill="#e5e7eb">{in_flight} in flight</text></g></svg>'
    )
    return "".join(parts)
