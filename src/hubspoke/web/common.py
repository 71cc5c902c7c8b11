"""What the web app's routers share: the templates (escaping everything), the package's files,
and a store opened per request.

A router reads the journal with ``with open_store(request) as store: ...`` (read-only) and
renders with ``render(request, "page.html", {...})``; the pages extend ``base.html`` (blocks
``title`` and ``content``), which carries the session's CSRF token for htmx.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from hubspoke.journal import SQLiteStore

__all__ = ["BY_COOKIE", "STATIC", "TEMPLATES", "decider", "open_store", "render", "templates"]

HERE: Final = Path(__file__).resolve().parent
TEMPLATES: Final = HERE / "templates"
STATIC: Final = HERE / "static"


def _usd(value: Any) -> str:
    """US dollars: ``$0.0123``, four decimals under a dollar, two above."""
    amount = float(value or 0)
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}"


def _when(ts: Any) -> str:
    """A Unix time as UTC, ``2026-11-29 14:53:00``."""
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(float(ts), dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: Any) -> str:
    """A duration: ``0.42 s``, ``3 min 05 s``, ``2 h 01 min``."""
    s = float(value or 0)
    if s < 60:
        return f"{s:.2f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def _json(value: Any) -> str:
    """A JSON value as text (the template escapes it)."""
    return json.dumps(value, ensure_ascii=False)


def _quote(value: Any) -> str:
    """A URL path segment or query value: every reserved character escaped (``/`` too)."""
    return quote(str(value), safe="")


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its extension (SVG too)
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(usd=_usd, when=_when, seconds=_seconds, json=_json, q=_quote)
    return env


templates: Final = Jinja2Templates(env=_environment())
"""The app's templates: autoescaped, strict about undefined names."""


def render(
    request: Request,
    name: str,
    context: Mapping[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    """Render template `name` with `context` (and ``request``, ``csrf`` and ``by``)."""
    state = request.state
    values = {
        "csrf": getattr(state, "csrf", ""),
        "by": decider(request),
        "here": _here(request),
        **(context or {}),
    }
    return templates.TemplateResponse(request, name, values, status_code=status)


BY_COOKIE: Final = "hubspoke_by"
BY_MAX: Final = 80
"""The longest name a person may decide under (characters)."""


def decider(request: Request) -> str:
    """Who decides from this browser: the name it set (``POST /by``, kept in a cookie), else
    the app's (``hubspoke ui --by``, default ``$USER``)."""
    name = unquote(request.cookies.get(BY_COOKIE, "")).strip()
    if name and len(name) <= BY_MAX and name.isprintable():
        return name
    return str(getattr(request.app.state, "by", "") or "unknown")


def _here(request: Request) -> str:
    """This page's path and query, to come back to after a form."""
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


@contextmanager
def open_store(request: Request, *, write: bool = False) -> Iterator[SQLiteStore]:
    """The app's journal, opened for this request (read-only unless `write`), closed after."""
    store = SQLiteStore(request.app.state.db, read_only=not write)
    try:
        yield store
    finally:
        store.close()
