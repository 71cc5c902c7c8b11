"""The web app's defences, as one ASGI middleware in front of every route (`Guard`).

In the order a request meets them:

1. **Host**: the ``Host`` header must name an allowed host (the loopback names, the bound address
   and any ``--allow-host``): a page of another site whose name resolves to 127.0.0.1 (DNS
   rebinding) is refused with 400.
2. **Origin**: a request that carries an ``Origin`` must come from the page's own origin (scheme
   ``http`` or ``https``, the same ``Host``), and a state change marked ``Sec-Fetch-Site:
   cross-site`` is refused: 403.
3. **Access token**: a visit with ``?token=T`` (the token `hubspoke ui` printed) gets a session
   cookie (``HttpOnly``, ``SameSite=Strict``) and a 303 to the same address without the token;
   every other request needs that cookie: 401 otherwise. The cookie holds a random session id
   and its HMAC under a key derived from the token, never the token itself.
4. **CSRF**: every state change (a method other than GET, HEAD, OPTIONS) carries the session's
   CSRF token, as the form field ``csrf`` (URL-encoded forms) or the header ``X-CSRF-Token``
   (htmx sends it from the page's ``hx-headers``): 403 otherwise, and the route never runs.
   Its body is at most `MAX_FORM_BYTES` (1 MiB): 413 otherwise, the route never runs.

Every response gets a Content-Security-Policy (scripts only from the app itself), ``nosniff``,
``Referrer-Policy: same-origin``, ``frame-ancestors 'none'`` and ``Cache-Control: no-store``.
The session's CSRF token is put in ``request.state.csrf`` for the templates.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "LOOPBACK_NAMES",
    "Access",
    "Guard",
    "is_loopback",
    "new_token",
]

COOKIE: Final = "hubspoke_session"
CSRF_FIELD: Final = "csrf"
CSRF_HEADER: Final = "x-csrf-token"
LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM_BYTES: Final = 1_048_576
"""The largest state-changing request body read (1 MiB): a card's edit is far smaller."""

CSP: Final = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
"""No inline or foreign script can run: a model's text that slipped past escaping still could
not execute. Inline styles stay allowed (server-drawn SVG may use them)."""


def new_token() -> str:
    """A random access token: 32 URL-safe characters (192 bits)."""
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) is this machine
    only: ``localhost``, 127.0.0.0/8 or ::1."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Access:
    """Who may use the app: the access token and the host names it answers to.

    Args:
        token: the access token (non-empty).
        hosts: host names (no port) the ``Host`` header may name, besides the loopback names.

    Raises:
        ValueError: an empty token.
    """

    token: str
    hosts: frozenset[str] = field(default_factory=frozenset)
    _key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("the access token is empty: give one, or let hubspoke ui make one")
        key = hashlib.sha256(b"hubspoke-ui-session\0" + self.token.encode()).digest()
        object.__setattr__(self, "_key", key)
        names = {h.strip().strip("[]").lower() for h in self.hosts if h.strip()}
        object.__setattr__(self, "hosts", frozenset(names | LOOPBACK_NAMES))

    def _mac(self, purpose: str, value: str) -> str:
        digest = hmac.new(self._key, f"{purpose}\0{value}".encode(), hashlib.sha256)
        return digest.hexdigest()

    def token_matches(self, given: str) -> bool:
        """Whether `given` is the access token (in constant time)."""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def new_session(self) -> str:
        """A session cookie's value: ``{id}.{mac}``."""
        sid = secrets.token_urlsafe(18)
        return f"{sid}.{self._mac('session', sid)}"

    def session(self, cookie: str) -> str | None:
        """The session id a cookie's value carries, if its MAC is right."""
        sid, dot, mac = cookie.partition(".")
        if not sid or not dot:
            return None
        good = hmac.compare_digest(mac.encode(), self._mac("session", sid).encode())
        return sid if good else None

    def csrf(self, sid: str) -> str:
        """The CSRF token of session `sid`."""
        return self._mac("csrf", sid)

    def host_allowed(self, host_header: str) -> bool:
        """Whether a ``Host`` header (``name[:port]``, ``[v6]:port``) names an allowed host."""
        return _host_name(host_header) in self.hosts


def _host_name(host_header: str) -> str:
    value = host_header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in out:
            value = f"{out[name]}{'; ' if name == 'cookie' else ', '}{value}"
        out[name] = value
    return out


def _page(status: int, title: str, said: str) -> tuple[int, bytes]:
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)} · hubspoke</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(said)}</p></body></html>"
    )
    return status, body.encode()


class Guard:
    """The ASGI middleware that applies `Access` to every HTTP request (see the module's
    docstring); a WebSocket is refused unless its session is good.

    Args:
        app: the app behind it.
        access: the token and the hosts.
    """

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        method = str(scope.get("method", "GET")).upper()
        refusal = self._host_and_origin(headers, method)
        if refusal is None:
            query = scope.get("query_string", b"").decode("latin-1")
            pairs = parse_qsl(query, keep_blank_values=True)
            if any(name == "token" for name, _ in pairs) and scope["type"] == "http":
                await self._token_visit(scope, pairs, send)
                return
            sid = self._session(headers)
            if sid is None:
                refusal = _page(
                    401,
                    "The access token is needed",
                    "Open the address hubspoke ui printed when it started (it ends with "
                    "?token=...); the token is kept in a cookie for this browser. Started "
                    "elsewhere? Start it again: hubspoke ui prints a new address.",
                )
            else:
                scope.setdefault("state", {})["csrf"] = self.access.csrf(sid)
                if method not in SAFE_METHODS and scope["type"] == "http":
                    ok, receive = await self._csrf(headers, receive, self.access.csrf(sid))
                    if ok is None:
                        refusal = _page(
                            413,
                            "Refused: the request is too large",
                            f"A change is at most {MAX_FORM_BYTES // 1_048_576} MiB of form "
                            "data, and this one is more. Nothing was done: shorten what you "
                            "typed and send it again.",
                        )
                    elif not ok:
                        refusal = _page(
                            403,
                            "Refused: the CSRF token is missing or wrong",
                            "A change must come from a page of this app (its forms carry the "
                            "token). Nothing was done: reload the page and try again.",
                        )
        if refusal is not None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await _respond(send, *refusal)
            return
        await self.app(scope, receive, _secured(send))

    def _host_and_origin(self, headers: dict[str, str], method: str) -> tuple[int, bytes] | None:
        host = headers.get("host", "")
        if not self.access.host_allowed(host):
            return _page(
                400,
                "Refused: unknown Host",
                f"This app answers only to {', '.join(sorted(self.access.hosts))}, not to "
                f"{host!r} (a defence against DNS rebinding). Open it as "
                "http://127.0.0.1:PORT/, or start hubspoke ui with --allow-host NAME.",
            )
        origin = headers.get("origin")
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
                return _page(
                    403,
                    "Refused: a request from another origin",
                    f"Only pages of this app may call it, not {origin!r}. Nothing was done.",
                )
        if method not in SAFE_METHODS and headers.get("sec-fetch-site") == "cross-site":
            return _page(
                403, "Refused: a cross-site request", "Only pages of this app may change things."
            )
        return None

    def _session(self, headers: dict[str, str]) -> str | None:
        raw = headers.get("cookie")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return None
        morsel = jar.get(COOKIE)
        return None if morsel is None else self.access.session(morsel.value)

    async def _token_visit(self, scope: Scope, pairs: list[tuple[str, str]], send: Send) -> None:
        given = [value for name, value in pairs if name == "token"]
        if len(given) != 1 or not self.access.token_matches(given[0]):
            await _respond(
                send,
                *_page(
                    401,
                    "Wrong access token",
                    "The token in this address is not the one hubspoke ui printed. Open the "
                    "address it printed when it started.",
                ),
            )
            return
        rest = urlencode([(n, v) for n, v in pairs if n != "token"])
        raw = scope.get("raw_path") or str(scope.get("path", "/")).encode("utf-8")
        path = bytes(raw).decode("latin-1").partition("?")[0] or "/"
        if not path.startswith("/") or path.startswith("//") or "\\" in path:
            path = "/"  # never a redirect to another site (//host, /\\host)
        location = path + (f"?{rest}" if rest else "")
        cookie = f"{COOKIE}={self.access.new_session()}; HttpOnly; SameSite=Strict; Path=/"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode("latin-1", "replace")),
                    (b"set-cookie", cookie.encode()),
                    (b"content-length", b"0"),
                    *_SECURITY_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def _csrf(
        self, headers: dict[str, str], receive: Receive, expected: str
    ) -> tuple[bool | None, Receive]:
        """Whether the request carries the CSRF token (None: its body is over
        `MAX_FORM_BYTES`, read no further); a `receive` that replays the body read."""
        header = headers.get(CSRF_HEADER)
        if header is not None and not hmac.compare_digest(header.encode(), expected.encode()):
            return False, receive
        body = await _body(headers, receive)
        if body == "gone":
            return False, receive  # a cut body is never acted on
        if body == "too large":
            return None, receive
        if header is not None:
            return True, _replay(body, receive)
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return False, receive
        fields = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        given = [v for n, v in fields if n == CSRF_FIELD]
        ok = len(given) == 1 and hmac.compare_digest(given[0].encode(), expected.encode())
        return ok, _replay(body, receive)


async def _body(headers: dict[str, str], receive: Receive) -> bytes | Literal["too large", "gone"]:
    """A state change's whole body; ``"too large"`` when it is over `MAX_FORM_BYTES` (said by
    its ``Content-Length``, or counted as it comes): whatever the CSRF token rides in, the route
    never reads more; ``"gone"`` when the client disconnected before the body's end."""
    length = headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > MAX_FORM_BYTES:
        return "too large"
    body = bytearray()
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return "gone"
        body += message.get("body", b"")
        more = bool(message.get("more_body", False))
        if len(body) > MAX_FORM_BYTES:
            return "too large"
    return bytes(body)


_SECURITY_HEADERS: Final[tuple[tuple[bytes, bytes], ...]] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    # same-origin, not no-referrer: under no-referrer chromium sends `Origin: null` with a
    # form's POST, which the Origin check must refuse.
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
)


def _secured(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            names = {name.lower() for name, _ in message.get("headers", ())}
            extra = [(n, v) for n, v in _SECURITY_HEADERS if n not in names]
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        await send(message)

    return sending


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replaying() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replaying


async def _respond(send: Send, status: int, body: bytes) -> None:
    headers: Iterable[tuple[bytes, bytes]] = (
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *_SECURITY_HEADERS,
    )
    await send({"type": "http.response.start", "status": status, "headers": list(headers)})
    await send({"type": "http.response.body", "body": body})
