"""What the web app's routers share: the templates (escaping everything), the package's files,
and a store opened per request.

The journal is ``request.app.state.db``: an SQLite file (a `Path`) or a PostgreSQL URL (a
`str`, password included: never shown; ``app.state.shown`` is the URL without it). The routers
open it with `connect` (the stream, free of web frameworks, with what `connect` calls:
`hubspoke.journal.location.open_store`, the one opener of both stores).
A router reads the journal with ``with open_store(request) as store: ...`` (read-only) and
renders with ``render(request, "page.html", {...})``; the pages extend ``base.html`` (blocks
``title`` and ``content``), which carries the session's CSRF token for htmx. What a store
raises when it cannot be opened or read (`journal_errors`) becomes a 503 page saying so, its
message `scrub`-bed of the URL's password.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from hubspoke.errors import JournalTooNew, JournalWriteError, StoreError, StoreUnavailable
from hubspoke.journal import location as locations
from hubspoke.journal.location import AnyStore, backend_errors, is_postgres_url, redact_url

__all__ = [
    "BY_COOKIE",
    "STATIC",
    "TEMPLATES",
    "connect",
    "decider",
    "gone",
    "journal_at",
    "journal_errors",
    "open_store",
    "render",
    "scrub",
    "shown",
    "templates",
    "unreadable",
]

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


def _json(value: Any, indent: int | None = None) -> str:
    """A JSON value as text, every character as it is (the template escapes it once; Jinja's
    own ``tojson`` would show ``<`` as ``\\u003c`` and ``é`` as ``\\u00e9``)."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


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


def journal_at(db: str | os.PathLike[str]) -> str | Path:
    """The journal `db` names, as the app keeps it: a PostgreSQL URL (``postgresql://`` or
    ``postgres://``) as a `str`, anything else as the `Path` of an SQLite file."""
    if is_postgres_url(db):
        return str(db).strip()
    return Path(db)


def shown(location: str | os.PathLike[str]) -> str:
    """The journal as a page or a message may name it: the file, or the URL without its
    password (`hubspoke.journal.urls.redact_url`)."""
    return redact_url(str(location)) if is_postgres_url(location) else str(location)


def _secrets(url: str) -> list[str]:
    """The password a URL carries (in its user part or a ``password=`` parameter), as written
    and decoded; [] when it carries none."""
    try:
        parts = urlsplit(url)
        found = [parts.password or ""]
        found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k == "password"]
    except ValueError:
        return []
    return sorted({s for f in found if f for s in (f, unquote(f))}, key=len, reverse=True)


def scrub(text: str, location: str | os.PathLike[str]) -> str:
    """`text` (an error's message) with the journal's URL and password as `shown` gives them:
    ``***`` wherever the password appears. A file's name is kept as it is."""
    if not is_postgres_url(location):
        return text
    url = str(location).strip()
    text = text.replace(url, redact_url(url))
    for secret in _secrets(url):
        text = text.replace(secret, "***")
    return text


def unreadable(error: BaseException, location: str | os.PathLike[str]) -> str:
    """What to say of an `error` the journal at `location` raised: ``The journal cannot be
    read: ...``, naming the journal when the error does not, never the URL's password."""
    message = scrub(str(error), location).rstrip(".")
    where = shown(location)
    if where not in message:
        message += f" (the journal {where})"
    return f"The journal cannot be read: {message}"


def journal_errors() -> tuple[type[Exception], ...]:
    """What a store raises when the journal cannot be opened, read or written: hubspoke's store
    errors (`StoreError`, `StoreUnavailable`, `JournalTooNew`, `JournalWriteError`) and the
    storage engines' own (``sqlite3.Error``, and ``psycopg.Error`` once psycopg is loaded)."""
    return (StoreError, StoreUnavailable, JournalTooNew, JournalWriteError, *backend_errors())


def gone(location: str | os.PathLike[str]) -> bool:
    """Whether the journal is an SQLite file that does not exist (removed while the app runs):
    its pages are a 404 saying how to make one, not a 503."""
    return not is_postgres_url(location) and not Path(location).exists()


def connect(location: str | os.PathLike[str], *, read_only: bool = True) -> AnyStore:
    """Open the journal at `location` (a PostgreSQL URL or an SQLite file) as every part of the
    app does: through `hubspoke.journal.location.open_store`. The caller closes it.

    Raises:
        StoreUnavailable: the PostgreSQL server cannot be reached, refused the login or holds no
            journal; the SQLite file does not exist (`gone`: the app never makes one, even to
            write) or cannot be opened (an `OSError`, reworded to name it).
        ImportError: a URL, and psycopg (``hubspoke[postgres]``) is not installed.
        JournalTooNew, sqlite3.Error: as the store raises them (`journal_errors`).
    """
    try:
        if not read_only and gone(location):
            raise FileNotFoundError(location)  # SQLite would make an empty journal
        return locations.open_store(location, read_only=read_only)
    except FileNotFoundError:
        raise StoreUnavailable(
            f"there is no journal at {shown(location)} (any more): start a run first (e.g. "
            "`hubspoke demo sales`), or start `hubspoke ui --db PATH` on the journal you mean"
        ) from None
    except OSError as e:
        raise StoreUnavailable(f"cannot open the journal {shown(location)}: {e}") from None


@contextmanager
def open_store(request: Request, *, write: bool = False) -> Iterator[AnyStore]:
    """The app's journal (``app.state.db``), opened with `connect` for this request (read-only
    unless `write`), closed after. Raises what `connect` and the store's reads raise."""
    store = connect(request.app.state.db, read_only=not write)
    try:
        yield store
    finally:
        store.close()
