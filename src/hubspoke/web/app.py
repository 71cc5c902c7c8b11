"""The web app: `create_app(db, token)`, its pages and the decisions made from them.

Pages: the **board** (``/board``: cards by column across runs, filtered by run and workflow;
each card with its draft, the evidence it cites, the validator's and evaluator's verdicts, its
cost and its verbs), one **card** (``/cards/{id}``), the **runs** (``/runs``) and, when present,
the run inspector (``/runs/{run_id}``, `hubspoke.web.inspector`).

Decisions (``POST /cards/{id}/decide|amend|answer|abort``) go only through
`hubspoke.decisions.Board`, as ``hubspoke card`` does; an approval (or amend) then starts the
card's follow-up runs (`hubspoke.cli.cards.follow_up_lines`). Without JavaScript a form posts
and the app redirects back to the board (303); a refused decision re-renders the page with the
card's message, each field's error and the text as typed (409 while a live process holds the
run, 422 for an edit that does not fit, 400 for another refusal, 404 for no such card). With
htmx (``HX-Request``) the answer is the card itself: swapped in place when it stays in its
column, moved to its new column (``hx-swap-oob``) with the columns' counts when it does not.

The journal is an SQLite file or a PostgreSQL database (``postgresql://...``), opened for each
request (`hubspoke.web.common.connect`) and closed after it. A journal that cannot be opened or
read gives a 503 page saying why (404 for an SQLite file that is gone), never the URL's
password; a decision the journal refuses keeps the card's form, with a 503. An address the app
does not have, a method a route does not take or a parameter it cannot read (``after=abc``) is
a page saying so (404, 405, 400), never the framework's JSON.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from hubspoke.board import Card
from hubspoke.decisions import Board, Decision
from hubspoke.errors import (
    AmendRefused,
    CardNotFound,
    DecisionRefused,
    InputError,
    RunLocked,
)
from hubspoke.journal.location import AnyStore, refusal_reason
from hubspoke.web import inspector, views
from hubspoke.web.common import (
    BY_COOKIE,
    BY_MAX,
    STATIC,
    connect,
    decider,
    gone,
    journal_at,
    journal_errors,
    open_store,
    render,
    scrub,
    shown,
    templates,
    unreadable,
)
from hubspoke.web.security import Access, Guard, new_token
from hubspoke.web.views import (
    BOARD_COLUMNS,
    CardView,
    FormState,
    board_cards,
    board_changes,
    card_view,
    edited_content,
    run_rows,
)

__all__ = ["create_app", "router", "routers"]

router = APIRouter()

SIMPLE_VERBS: Final = ("approve", "park", "unpark", "skip")
PAST: Final = {
    "approve": "approved",
    "amend": "amended",
    "park": "parked",
    "unpark": "unparked",
    "skip": "skipped",
    "answer": "answered",
    "abort": "aborted the run of",
}


def create_app(
    db: str | os.PathLike[str],
    token: str | None = None,
    *,
    hosts: Iterable[str] = (),
    by: str | None = None,
) -> FastAPI:
    """The web app over the journal at `db`.

    Args:
        db: the journal: an SQLite file (a path; it must exist) or a PostgreSQL database
            (``postgresql://user:password@host:port/database``, or ``postgres://``; it must
            hold a hubspoke journal). The URL's password is never shown on a page.
        token: the access token every request needs (`hubspoke.web.security`); a random one
            when None, readable as ``app.state.token``.
        hosts: host names the ``Host`` header may name besides the loopback ones (the address
            a non-loopback bind serves on).
        by: who decides, as the journal records it; default ``$USER`` (as ``hubspoke card``).

    Raises:
        FileNotFoundError: no journal file at `db`.
        StoreUnavailable: the PostgreSQL server cannot be reached, refused the login, or the
            database holds no journal (the message names the URL without its password).
        JournalTooNew: the PostgreSQL journal was written by a newer hubspoke.
        ImportError: a URL, and psycopg (``hubspoke[postgres]``) is not installed.
    """
    from hubspoke.cli.cards import default_by

    location = journal_at(db)
    if isinstance(location, Path):
        if not location.is_file():
            raise FileNotFoundError(
                f"no journal at {location}: start a run first (e.g. hubspoke demo sales --db "
                f"{location}), or point --db at the journal file"
            )
    else:
        connect(location).close()  # reachable, and holds a journal: else say so now
    access = Access(token or new_token(), frozenset(hosts))
    app = FastAPI(title="hubspoke", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db = location
    app.state.shown = shown(location)
    app.state.token = access.token
    app.state.by = by or default_by()
    app.state.templates = templates
    app.state.run_locks = {}  # run id → the lock its decisions take (`_deciding`)
    app.state.run_locks_lock = threading.Lock()
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for included in routers():
        app.include_router(included)
    for error in journal_errors():
        app.add_exception_handler(error, _unreadable)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_middleware(Guard, access=access)
    return app


async def _unreadable(request: Request, error: Exception) -> Response:
    """A page saying the journal cannot be read, and why (503; 404 for a file that is gone)."""
    location = request.app.state.db
    if gone(location):
        message = scrub(str(error), location)
        return render(
            request, "journal_error.html", {"title": "No journal", "message": message}, 404
        )
    title, message = "The journal cannot be read", unreadable(error, location)
    return render(request, "journal_error.html", {"title": title, "message": message}, 503)


async def _http_error(request: Request, error: Exception) -> Response:
    """An HTTP error the framework raised (no such page, a method a route does not take) as
    a page saying so, instead of its JSON."""
    assert isinstance(error, StarletteHTTPException)
    if error.status_code == 404:
        title, message = "No such page", f"This app has no page at {request.url.path}."
    elif error.status_code == 405:
        title = "Not this way"
        message = f"{request.url.path} does not take {request.method}: use the page's forms."
    else:
        title, message = "Refused", str(error.detail)
    response = render(request, "error.html", {"title": title, "message": message})
    response.status_code = error.status_code
    if error.headers:
        response.headers.update(error.headers)
    return response


async def _bad_request(request: Request, error: Exception) -> Response:
    """A parameter the route cannot read (``after=abc``) as a 400 page naming it."""
    assert isinstance(error, RequestValidationError)
    said = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'the request'}: "
        f"{e.get('msg', '')} (given {e.get('input')!r})"
        for e in error.errors()
    )
    message = f"Something in the address or the form cannot be read: {said}."
    return render(request, "error.html", {"title": "Bad request", "message": message}, 400)


def routers() -> list[APIRouter]:
    """The routers the app serves: this module's pages and decisions, and the run inspector's.
    The security middleware stands in front of all of them."""
    return [router, inspector.router]


# pages -------------------------------------------------------------------------------------------


@router.get("/", include_in_schema=False)
async def home() -> Response:
    return RedirectResponse("/board", status_code=303)


@router.get("/board", response_class=HTMLResponse)
async def board_page(request: Request, run: str = "", workflow: str = "") -> Response:
    """The board: every card by column, of one run and one workflow if asked."""
    decided = request.query_params.get("decided", "")
    return await run_in_threadpool(_board_page, request, run, workflow, {}, 200, decided)


def _board_page(
    request: Request,
    run: str,
    workflow: str,
    forms: Mapping[str, FormState],
    status: int,
    decided: str = "",
) -> Response:
    with open_store(request) as store:
        every = board_cards(store)
        cards = [
            c
            for c in every
            if (not run or c.card.run_id == run) and (not workflow or c.workflow == workflow)
        ]
    cards = [_with_form(c, forms.get(c.card.id)) for c in cards]
    columns = {column: [c for c in cards if c.card.column is column] for column in BOARD_COLUMNS}
    just = next((c for c in cards if c.card.id == decided), None)
    return render(
        request,
        "board.html",
        {
            "columns": columns,
            "runs": sorted({c.card.run_id for c in every} | ({run} if run else set())),
            "workflows": sorted({c.workflow for c in every} | ({workflow} if workflow else set())),
            "run": run,
            "workflow": workflow,
            "decided": just,
            "messages": [f for f in forms.values() if f.message],
        },
        status,
    )


def _with_form(view: CardView, form: FormState | None) -> CardView:
    if form is None:
        return view
    return replace(view, form=form)


@router.get("/board/changes", response_class=HTMLResponse)
async def board_changes_notice(request: Request, run: str = "", workflow: str = "") -> Response:
    """What changed on the board of these filters since a page showed it: cards made since,
    and cards decided elsewhere (another browser, the CLI, a run that went on). The page sends
    each card's `card_state` as a ``shown`` parameter; the answer is empty when nothing changed,
    else a notice linking to the board as it is now. The board page asks every few seconds
    (htmx) and so never replaces a card a person may be typing in."""
    shown = request.query_params.getlist("shown")
    return await run_in_threadpool(_board_changes, request, run, workflow, shown)


def _board_changes(request: Request, run: str, workflow: str, shown: list[str]) -> Response:
    with open_store(request) as store:
        changes = board_changes(board_cards(store, run or None, workflow or None), shown)
    if not changes:
        return HTMLResponse("")
    query = urlencode({k: v for k, v in (("run", run), ("workflow", workflow)) if v})
    return render(
        request,
        "_changes.html",
        {"changes": changes, "href": "/board" + (f"?{query}" if query else "")},
    )


@router.get("/cards/{card_id}", response_class=HTMLResponse)
async def card_page(request: Request, card_id: str) -> Response:
    """One card, alone on its page (the inspector links here)."""

    def page() -> Response:
        with open_store(request) as store:
            try:
                card = Board(store).find(card_id)
            except CardNotFound as e:
                return render(request, "missing.html", {"message": str(e)}, 404)
            view = card_view(store, card)
        if view is None:
            return render(request, "missing.html", {"message": f"card {card_id}: no run"}, 404)
        return render(request, "card.html", {"c": view, "run": "", "workflow": ""})

    return await run_in_threadpool(page)


@router.get("/runs", response_class=HTMLResponse)
async def runs_page(request: Request, status: str = "", workflow: str = "") -> Response:
    """The runs, newest first; waiting runs and their pending decisions first."""

    def page() -> Response:
        with open_store(request) as store:
            every = run_rows(store)
            rows = run_rows(store, status, workflow) if status or workflow else every
        return render(
            request,
            "runs.html",
            {
                "waiting": [r for r in rows if r.waiting],
                "rows": rows,
                "statuses": sorted({r.status for r in every} | ({status} if status else set())),
                "workflows": sorted(
                    {r.workflow for r in every} | ({workflow} if workflow else set())
                ),
                "status": status,
                "workflow": workflow,
                "shown": views.RUNS_SHOWN if len(every) >= views.RUNS_SHOWN else None,
            },
        )

    return await run_in_threadpool(page)


@router.post("/by")
async def set_by(request: Request) -> Response:
    """Say who decides from this browser (the form's ``by``): kept in a cookie, recorded as
    the ``by`` of each decision made from it; then back to the form's page (``back``)."""
    form = await _form(request)
    name = " ".join(form.get("by", "").split())
    if not name or len(name) > BY_MAX or not name.isprintable():
        message = f"give a name of 1 to {BY_MAX} characters to decide under; nothing changed"
        return render(request, "missing.html", {"message": message}, 400)
    back = form.get("back", "")
    if not back.startswith("/") or back.startswith("//") or "\\" in back:
        back = "/board"  # never off the app
    response = RedirectResponse(back, status_code=303)
    response.set_cookie(
        BY_COOKIE, quote(name, safe=""), max_age=400 * 86400, httponly=True, samesite="strict"
    )
    return response


# decisions ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Done:
    """What an action left: the card now (None if there is none), and what to say on it."""

    card: CardView | None
    form: FormState
    status: int
    moved: bool


Action = Callable[[AnyStore, Card], Decision]


def _act(
    request: Request,
    card_id: str,
    verb: str,
    action: Action,
    typed: FormState,
    seen: str | None = None,
) -> _Done:
    """Find the card, run `action` through the board, and say what came of it. A refusal keeps
    what was typed (`typed`) on the card, with the message and each field's errors. `seen` is
    the form's ``seen``: how many decisions the card had on the page the form was on; when the
    card has had others since (decided elsewhere, its run resumed and the card raised again),
    the action is refused (409) and the card shown as it is now."""
    store = connect(request.app.state.db, read_only=False)
    try:
        try:
            card = Board(store).find(card_id)
        except CardNotFound as e:
            return _Done(None, FormState(message=str(e)), 404, False)
        # One decision of a run at a time in this app, its follow-ups and the check that the
        # form is not stale included (`_deciding`).
        with _deciding(request, card.run_id):
            if seen is not None:
                shown = card_view(store, card)
                if shown is not None and seen.strip() != str(len(shown.decisions)):
                    changed = _changed(typed, shown)
                    return _Done(replace(shown, form=changed), changed, 409, False)
            form: FormState
            status = 200
            try:
                decision = action(store, card)
            except RunLocked as e:
                form, status = _refused(typed, str(e)), 409
            except AmendRefused as e:
                form, status = _refused(typed, str(e), e.errors), 422
            except DecisionRefused as e:
                form, status = _refused(typed, str(e), e.errors), 422 if e.errors else 400
            except InputError as e:
                form, status = _refused(typed, str(e)), 400
            except journal_errors() as e:
                message = (
                    "the journal refused the decision: "
                    f"{scrub(refusal_reason(e), request.app.state.db)}. "
                    "Nothing was written; try again once the journal takes writes"
                )
                form, status = _refused(typed, message), 503
            else:
                said = f"{PAST[verb]} by {decision.by}: {decision.before} → {decision.after}"
                if verb in ("approve", "amend"):
                    said += scrub(_follow_ups(store, card), request.app.state.db)
                if verb == "answer":
                    said += f"; the run goes on with: hubspoke resume {decision.run_id}"
                if verb == "abort":
                    said += f"; run {decision.run_id} ended aborted"
                form = FormState(message=said, kind="done")
            fresh = Board(store).find(card.id)
            view = card_view(store, fresh, form)
            return _Done(view, form, status, fresh.column is not card.column)
    finally:
        store.close()


def _deciding(request: Request, run_id: str) -> threading.Lock:
    """The lock this app takes around a decision on run `run_id`'s cards and the follow-ups
    it starts. A decision takes the run's lease for its moment; without the lock, this app's
    own requests deciding cards of one run at once (htmx sends each card's click as it comes)
    refused each other as if a live process drove the run, and their follow-ups raced. Other
    processes still get `RunLocked`."""
    locks: dict[str, threading.Lock] = request.app.state.run_locks
    with request.app.state.run_locks_lock:
        return locks.setdefault(run_id, threading.Lock())


def _changed(typed: FormState, now: CardView) -> FormState:
    """What a form from before the card's latest decisions leaves on it."""
    last = now.decisions[-1] if now.decisions else None
    what = f"{last.verb} by {last.by}: {last.before} → {last.after}" if last else "none"
    message = (
        f"card {now.card.id} changed since your page showed it (its latest decision: {what}; "
        f"it is {now.card.column.value} now). Nothing was written: read it as it is now, then "
        "decide"
    )
    return _refused(typed, message)


def _follow_ups(store: AnyStore, card: Card) -> str:
    """Start the follow-up runs of the run's approved cards, as ``hubspoke card approve``
    does; what came of this card's, to say after its decision. The decision stands whatever
    happens here: a follow-up that could not start now is started by ``hubspoke follow-ups``."""
    from hubspoke.cli.cards import follow_up_lines
    from hubspoke.errors import HubspokeError

    failures: tuple[type[Exception], ...] = (HubspokeError, *journal_errors())
    try:
        lines = follow_up_lines(store, card.run_id)[0]
    except failures as e:
        return (
            f"; its follow-up did not start now ({e}); start it with: hubspoke follow-ups "
            f"{card.run_id}"
        )
    return "".join(f"; {line}" for line in lines if f" of {card.item}:" in line)


def _refused(typed: FormState, message: str, errors: Iterable[Mapping[str, Any]] = ()) -> FormState:
    by_field: dict[str, list[str]] = {k: list(v) for k, v in typed.errors.items()}
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        name = loc[0] if loc else ""
        where = ".".join(loc[1:])
        msg = str(error.get("msg", ""))
        by_field.setdefault(name, []).append(f"{where}: {msg}" if where else msg)
    return FormState(
        values=typed.values, errors=by_field, message=message, kind="error", open=typed.open
    )


async def _form(request: Request) -> dict[str, str]:
    data = await request.form()
    return {k: v for k, v in data.multi_items() if isinstance(v, str)}


def _answer(request: Request, done: _Done, form: Mapping[str, str]) -> Response:
    """The response to an action: the card for htmx, a redirect or the page otherwise."""
    run, workflow = form.get("back_run", ""), form.get("back_workflow", "")
    if request.headers.get("hx-request") == "true":
        return _htmx(request, done, run, workflow)
    if done.form.kind == "done" and done.card is not None:
        query = urlencode(
            {k: v for k, v in (("run", run), ("workflow", workflow)) if v}
            | {"decided": done.card.card.id}
        )
        return RedirectResponse(f"/board?{query}#{done.card.card.id}", status_code=303)
    forms = {} if done.card is None else {done.card.card.id: done.form}
    if done.card is None:
        return render(request, "missing.html", {"message": done.form.message}, done.status)
    return _board_page(request, run, workflow, forms, done.status)


def _htmx(request: Request, done: _Done, run: str, workflow: str) -> Response:
    if done.card is None:
        return render(request, "_message.html", {"message": done.form.message})
    context = {"c": done.card, "run": run, "workflow": workflow}
    page = urlsplit(request.headers.get("hx-current-url", "")).path
    if not done.moved or page.rstrip("/") not in ("", "/board"):
        return render(request, "_in_place.html", context)  # the card page has no columns
    with open_store(request) as store:
        cards = [c for c in board_cards(store, run or None, workflow or None)]
    counts = {column: sum(1 for c in cards if c.card.column is column) for column in BOARD_COLUMNS}
    return render(request, "_moved.html", {**context, "counts": counts})


@router.post("/cards/{card_id}/decide")
async def decide(request: Request, card_id: str) -> Response:
    """approve, park, unpark or skip (the form's ``verb``), with an optional ``note``."""
    form = await _form(request)
    verb = form.get("verb", "")
    note = form.get("note", "").strip()
    typed = FormState(values={"note": form.get("note", "")})
    if verb not in SIMPLE_VERBS:
        done = _Done(None, FormState(message=f"unknown verb {verb!r}"), 400, False)
        return render(request, "missing.html", {"message": done.form.message}, 400)
    by = decider(request)

    def action(store: AnyStore, card: Card) -> Decision:
        board = Board(store)
        verbs: dict[str, Callable[..., Decision]] = {
            "approve": board.approve,
            "park": board.park,
            "unpark": board.unpark,
            "skip": board.skip,
        }
        return verbs[verb](card.id, by=by, note=note)

    done = await run_in_threadpool(_act, request, card_id, verb, action, typed, form.get("seen"))
    return _answer(request, done, form)


@router.post("/cards/{card_id}/amend")
async def amend(request: Request, card_id: str) -> Response:
    """Amend a card's output from the form's ``field.NAME`` values (and ``note``)."""
    form = await _form(request)
    typed = FormState(values=form, open="amend")
    by = decider(request)

    def action(store: AnyStore, card: Card) -> Decision:
        board = _board(store, card)
        detail = board.card(card.id)
        if detail.content is None:
            raise DecisionRefused(
                f"card {card.id} shows no output to amend (it is a gate or an escalation); "
                "approve, skip or answer it instead"
            )
        edit, errors = edited_content(detail.content, form)
        if errors:
            raise AmendRefused(
                "some fields are not JSON; nothing was written. Fix them and amend again",
                [{"loc": [name], "msg": msg} for name, msgs in errors.items() for msg in msgs],
            )
        return board.amend(card.id, edit, by=by, note=form.get("note", "").strip())

    done = await run_in_threadpool(_act, request, card_id, "amend", action, typed, form.get("seen"))
    return _answer(request, done, form)


@router.post("/cards/{card_id}/answer")
async def answer(request: Request, card_id: str) -> Response:
    """Answer an escalated card: the form's ``answer`` text, or a corrected ``input`` (JSON)."""
    form = await _form(request)
    typed = FormState(values=form, open="answer")
    by = decider(request)
    text = form.get("answer", "").replace("\r\n", "\n")
    raw_input = form.get("input", "").strip()

    def action(store: AnyStore, card: Card) -> Decision:
        if raw_input:
            try:
                corrected = json.loads(raw_input)
            except ValueError as e:
                raise DecisionRefused(
                    f"the corrected input is not JSON ({e}); nothing was written",
                    [{"loc": ["input"], "msg": f"not JSON: {e}"}],
                ) from None
            if not isinstance(corrected, dict):
                raise DecisionRefused(
                    "the corrected input must be a JSON object with the input's fields; nothing "
                    "was written",
                    [{"loc": ["input"], "msg": "not a JSON object"}],
                )
            if text.strip():
                raise DecisionRefused(
                    "give either an answer or a corrected input, not both; nothing was written"
                )
            return _board(store, card).answer(card.id, input=corrected, by=by)
        return Board(store).answer(card.id, text, by=by)

    done = await run_in_threadpool(
        _act, request, card_id, "answer", action, typed, form.get("seen")
    )
    return _answer(request, done, form)


@router.post("/cards/{card_id}/abort")
async def abort(request: Request, card_id: str) -> Response:
    """Give up on an escalated card's item and its whole run (the form's ``reason``)."""
    form = await _form(request)
    typed = FormState(values=form, open="abort")
    by = decider(request)

    def action(store: AnyStore, card: Card) -> Decision:
        return Board(store).abort(card.id, by=by, reason=form.get("reason", "").strip())

    done = await run_in_threadpool(_act, request, card_id, "abort", action, typed, form.get("seen"))
    return _answer(request, done, form)


def _board(store: AnyStore, card: Card) -> Board:
    """A board with the card's run's workflow, as ``hubspoke card amend`` loads it: an amend is
    checked against its role's output schema, an answer's input against its input schema."""
    from hubspoke.loader import load_workflow

    record = store.run(card.run_id)
    if record is None or record.ref is None:
        return Board(store)
    try:
        return Board(store, workflow=load_workflow(record.ref))
    except InputError:
        return Board(store)  # moved or gone: the amend imports the schema its artifact names
