"""The run inspector: one run as hub and spoke, its costs, its queue and its live event stream.

Routes (a FastAPI `APIRouter`, `router`; the app's middleware guards them like every page):

- ``GET /runs/{run_id}``: the page. Query: ``kind`` (repeatable: an event kind or a family such
  as ``item``), ``phase``, ``role``, ``item`` select the events listed and streamed; ``limit``
  how many of the newest selected events are listed (500).
- ``GET /runs/{run_id}/events``: the selected events as a list fragment (``after`` = a sequence
  number: only later ones).
- ``GET /runs/{run_id}/stream``: server-sent events (``text/event-stream``) from ``after`` or
  the ``Last-Event-ID`` header a reconnecting browser sends: ``event`` (one selected event,
  ``id`` its sequence number), ``summary``, ``spokes`` and ``queue`` (fragments to swap in after
  each batch, ``id`` the newest sequence number read), then ``end`` once the run's session is
  over, and the response ends.

The journal is `request.app.state.db` (an SQLite file's `pathlib.Path`, or a PostgreSQL URL),
opened read-only (`hubspoke.web.common.connect`) for each request and each poll of a stream, and
closed straight after: nothing here writes, and nothing holds it (no file, no connection, no
lease). A journal that cannot be read is a 503 page, or, once a stream has begun, its ``end``
event saying why (the URL's password never shown).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from hubspoke.events import Event, EventKind, payload
from hubspoke.journal import RunRecord
from hubspoke.journal.location import AnyStore
from hubspoke.web import common
from hubspoke.web.runpage import RunFold, RunPage, anchor, event_row, inspect_run, queue_rows
from hubspoke.web.stream import (
    FAMILIES,
    POLL_SECONDS,
    Ended,
    EventFilter,
    follow,
    resume_point,
    sse,
)

__all__ = ["EVENTS_SHOWN", "router", "templates"]


def _path_part(value: object) -> str:
    """A value quoted to be one segment or query value of a URL (``/`` included)."""
    return quote(str(value), safe="")


def _ready(found: Jinja2Templates) -> Jinja2Templates:
    """The templates with what the inspector's templates use: `anchor`, `families`, `|path`."""
    env = found.env
    if "anchor" not in env.globals:
        env.globals.update(anchor=anchor, families=FAMILIES)
        env.filters["path"] = _path_part
    return found


templates = _ready(common.templates)
"""The app's templates (autoescaped, strict about undefined names) with the inspector's globals."""


EVENTS_SHOWN = 500
"""Newest selected events the page lists by default; the stream adds the later ones."""

router = APIRouter()

Kinds = Annotated[list[str], Query(alias="kind")]


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Why a request gets an error page instead: its status, title and message."""

    status: int
    title: str
    message: str


def _open(request: Request) -> AnyStore | _Refusal:
    location = request.app.state.db
    try:
        return common.connect(location, read_only=True)
    except common.journal_errors() as e:
        if not common.gone(location):
            return _Refusal(503, "The journal cannot be read", common.unreadable(e, location))
        return _Refusal(
            404,
            "No journal",
            "There is no journal yet: start a run first (e.g. `hubspoke demo sales`), "
            "or start `hubspoke ui --db PATH` on the journal you mean.",
        )


def _render(
    request: Request, name: str, context: dict[str, Any], status: int = 200
) -> HTMLResponse:
    """A page, with what the app's ``base.html`` reads (`common.render`)."""
    return common.render(request, name, context, status)


def _refusal(request: Request, refused: _Refusal) -> HTMLResponse:
    return _render(
        request,
        "inspector_error.html",
        {"title": refused.title, "message": refused.message},
        refused.status,
    )


def _filter(kinds: list[str], phase: str, role: str, item: str) -> EventFilter | _Refusal:
    try:
        return EventFilter.parse(kinds, phase, role, item)
    except ValueError as e:
        return _Refusal(400, "Unknown event kind", str(e))


def _missing(run_id: str) -> _Refusal:
    return _Refusal(
        404,
        "No such run",
        f"There is no run {run_id!r} in this journal. The Runs page lists the runs it holds.",
    )


def _page(request: Request, run_id: str, chosen: EventFilter, limit: int) -> RunPage | _Refusal:
    store = _open(request)
    if isinstance(store, _Refusal):
        return store
    try:
        record = store.run(run_id)
        if record is None:
            return _missing(run_id)
        events = store.events(run_id)
        children = [c for c in map(store.run, _children(events)) if c is not None]
        held = record.status != "running" or store.holder(run_id) is not None
        selected = [e for e in events if chosen.matches(e)]
        page = inspect_run(
            record,
            events,
            artifacts=store.artifacts(run_id),
            cards=store.cards(run_id),
            children=children,
            held=held,
            selected=selected[-limit:] if limit > 0 else selected,
            link=f"/runs/{quote(run_id, safe='')}",
        )
        page.hidden_events = max(0, len(selected) - len(page.events))
        return page
    finally:
        store.close()


def _record(request: Request, run_id: str) -> RunRecord | _Refusal:
    store = _open(request)
    if isinstance(store, _Refusal):
        return store
    try:
        return store.run(run_id) or _missing(run_id)
    finally:
        store.close()


def _events(request: Request, run_id: str) -> tuple[RunRecord, list[Event]] | _Refusal:
    store = _open(request)
    if isinstance(store, _Refusal):
        return store
    try:
        record = store.run(run_id)
        return _missing(run_id) if record is None else (record, store.events(run_id))
    finally:
        store.close()


def _children(events: list[Event]) -> list[str]:
    return [
        payload(e, EventKind.CHILD_RUN_STARTED)["child_run"]
        for e in events
        if e.kind is EventKind.CHILD_RUN_STARTED
    ]


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request,
    run_id: str,
    kind: Kinds = [],  # noqa: B006 (FastAPI copies a query default)
    phase: str = "",
    role: str = "",
    item: str = "",
    limit: int = EVENTS_SHOWN,
) -> Response:
    """The run inspector page; 404 for a run the journal does not hold."""
    chosen = _filter(kind, phase, role, item)
    if isinstance(chosen, _Refusal):
        return _refusal(request, chosen)
    page = _page(request, run_id, chosen, limit)
    if isinstance(page, _Refusal):
        return _refusal(request, page)
    path = f"/runs/{quote(run_id, safe='')}"
    stream_query = [*chosen.query(), ("after", str(page.last_seq))]
    return _render(
        request,
        "inspector.html",
        {
            "page": page,
            "filter": chosen,
            "path": path,
            "stream_url": f"{path}/stream?{urlencode(stream_query)}",
            "limit": limit,
        },
    )


@router.get("/runs/{run_id}/events", response_class=HTMLResponse)
def run_events(
    request: Request,
    run_id: str,
    kind: Kinds = [],  # noqa: B006
    phase: str = "",
    role: str = "",
    item: str = "",
    after: int = 0,
    limit: int = EVENTS_SHOWN,
) -> Response:
    """The selected events (past `after`) as the page's list fragment."""
    chosen = _filter(kind, phase, role, item)
    if isinstance(chosen, _Refusal):
        return _refusal(request, chosen)
    found = _events(request, run_id)
    if isinstance(found, _Refusal):
        return _refusal(request, found)
    record, events = found
    origin = events[0].ts if events else record.created
    selected = [e for e in events if e.seq > after and chosen.matches(e)]
    shown = selected[-limit:] if limit > 0 else selected
    return _render(
        request,
        "inspector_events.html",
        {
            "rows": [event_row(e, origin) for e in shown],
            "hidden": len(selected) - len(shown),
            "path": f"/runs/{quote(run_id, safe='')}",
        },
    )


def _fragment(request: Request, name: str, context: dict[str, Any]) -> str:
    return templates.get_template(name).render({"request": request, **context})


@router.get("/runs/{run_id}/stream")
async def run_stream(
    request: Request,
    run_id: str,
    kind: Kinds = [],  # noqa: B006
    phase: str = "",
    role: str = "",
    item: str = "",
    after: str | None = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """The run's events as server-sent events, from `Last-Event-ID` (or `after`) to the end
    of the run's session."""
    chosen = _filter(kind, phase, role, item)
    if isinstance(chosen, _Refusal):
        return _refusal(request, chosen)
    try:
        start = resume_point(last_event_id, after)
    except ValueError as e:
        return _refusal(request, _Refusal(400, "Bad resume point", str(e)))
    found = await asyncio.to_thread(_record, request, run_id)
    if isinstance(found, _Refusal):
        return _refusal(request, found)
    record = found
    location = request.app.state.db
    poll = float(getattr(request.app.state, "poll_seconds", POLL_SECONDS))
    path = f"/runs/{quote(run_id, safe='')}"

    async def messages() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        fold = RunFold(record)
        origin: float | None = None
        shown: str | None = None  # the status the fragments sent last show
        steps = aiter(follow(location, run_id, poll=poll))
        failures: tuple[type[Exception], ...] = (OSError, *common.journal_errors())
        while True:
            try:
                got = await anext(steps)
            except StopAsyncIteration:
                return
            except failures as e:
                # Mid-stream the status is sent already: the end event says why it stops.
                reason = common.unreadable(e, location)
                ended = _fragment(
                    request, "inspector_end.html", {"status": "unreadable", "reason": reason}
                )
                yield sse("end", ended, id=fold.state.last_seq)
                return
            if isinstance(got, Ended):
                fold.held = got.status != "stopped"
                last = fold.state.last_seq
                if shown != fold.status:  # e.g. a run nobody drives: now shown stopped
                    yield from_fold(fold, last)
                ended = _fragment(
                    request, "inspector_end.html", {"status": got.status, "reason": got.reason}
                )
                yield sse("end", ended, id=last)
                return
            if origin is None:
                origin = got[0].ts
            fold.apply_all(got)
            fresh = [e for e in got if e.seq > start]
            if not fresh:
                continue
            # One write per batch: a long journal's first batch is thousands of messages.
            row = templates.get_template("inspector_event.html")
            shown = fold.status
            yield "".join(
                [
                    *(
                        sse("event", row.render(e=event_row(e, origin), path=path), id=e.seq)
                        for e in fresh
                        if chosen.matches(e)
                    ),
                    from_fold(fold, fresh[-1].seq),
                ]
            )

    def from_fold(fold: RunFold, last: int) -> str:
        summary = _fragment(request, "inspector_summary.html", {"summary": fold.summary()})
        queue = _fragment(
            request, "inspector_queue.html", {"queue": queue_rows(fold.state), "path": path}
        )
        return (
            sse("summary", summary, id=last)
            + sse("spokes", fold.svg(path), id=last)
            + sse("queue", queue, id=last)
        )

    return StreamingResponse(
        messages(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
