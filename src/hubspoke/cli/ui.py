"""`hubspoke ui`: serve the web app (`hubspoke.web`) over a journal with uvicorn.

The web extra (FastAPI, uvicorn, Jinja2, python-multipart) is imported only here, when the
command runs: without it the command says which packages are missing and how to install them.
It binds 127.0.0.1 by default and refuses a non-loopback address unless an access token is
given (`--token`): anyone who can reach the port and knows the token may decide cards. The
journal is an SQLite file or a PostgreSQL database (``--db postgresql://...``), checked before
anything is served; messages name a URL without its password.
"""

from __future__ import annotations

import importlib
import socket
import sys
from collections.abc import Sequence
from typing import Final
from urllib.parse import quote

from hubspoke.cli.config import DbPath
from hubspoke.cli.failures import EXIT_OK, UsageError

__all__ = ["WEB_HINT", "check_bind", "missing_web_packages", "serve", "url_for"]

WEB_HINT: Final = "pip install 'hubspoke[web]'"
WEB_MODULES: Final = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "jinja2": "jinja2",
    "python_multipart": "python-multipart",
}
"""The web extra's import names → their package names."""


def missing_web_packages() -> list[str]:
    """The packages of the web extra that cannot be imported."""
    missing = []
    for module, package in WEB_MODULES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(package)
    return missing


TOKEN_MIN: Final = 16
"""The fewest characters of a token that guards an address other machines can reach."""


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve on an address other machines can reach without an explicit token that
    cannot be guessed by trying, and refuse a token of nothing but spaces anywhere.

    Raises:
        UsageError: the token is blank (spaces only); or `host` is not a loopback address
            (127.0.0.0/8, ::1, localhost) and no token was given, or one of fewer than
            `TOKEN_MIN` characters.
    """
    from hubspoke.web.security import is_loopback

    if token and not token.strip():
        raise UsageError(
            "the access token is blank (spaces only): give one that only the people who may "
            "decide cards know, or leave --token out for a random one"
        )
    if is_loopback(host):
        return
    if not token:
        raise UsageError(
            f"refusing to serve on {host}, which other machines can reach, without an explicit "
            "access token: give --token T (or $HUBSPOKE_UI_TOKEN) that only the people who may "
            "decide cards know, or bind 127.0.0.1 (the default)"
        )
    if len(token) < TOKEN_MIN:
        raise UsageError(
            f"refusing to serve on {host}, which other machines can reach, with a token of "
            f"{len(token)} characters, which could be guessed by trying: give one of at least "
            f'{TOKEN_MIN} characters, e.g. --token "$(openssl rand -hex 16)"'
        )


def url_for(host: str, port: int, token: str) -> str:
    """The address to open: the host as a browser writes it (IPv6 in brackets; a wildcard
    address as 127.0.0.1), the port, and the token, URL-encoded (a ``+``, ``#`` or ``&`` in
    it would otherwise change what the browser sends)."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/?token={quote(token, safe='')}"


def serve(
    db: DbPath,
    *,
    host: str,
    port: int,
    token: str | None,
    hosts: Sequence[str] = (),
    by: str | None = None,
) -> int:
    """Serve the web app on `host`:`port` until interrupted; print the address (with the
    token) first. Returns the exit code.

    Raises:
        UsageError: the web extra is missing, the bind is refused (`check_bind`), the journal
            file is missing, the PostgreSQL server cannot be reached, refused the login or holds
            no journal (or the postgres extra is missing), or the port cannot be bound.
    """
    missing = missing_web_packages()
    if missing:
        raise UsageError(
            f"hubspoke ui needs the web extra, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed: {WEB_HINT}"
        )
    check_bind(host, token)
    if db.url is None and not db.path.is_file():
        raise UsageError(
            f"no journal at {db.describe()}. Start a run first (e.g. `hubspoke demo sales`), or "
            "point --db or $HUBSPOKE_DB at the journal file."
        )
    import uvicorn

    from hubspoke.errors import JournalTooNew, StoreUnavailable
    from hubspoke.web.app import create_app
    from hubspoke.web.common import scrub

    wildcard = host in ("0.0.0.0", "::", "")
    allowed = list(hosts) + ([] if wildcard else [host])
    try:
        app = create_app(db.location, token, hosts=allowed, by=by)
    except (StoreUnavailable, JournalTooNew, ImportError) as e:
        raise UsageError(f"{scrub(str(e), db.location)} ({db.describe()})") from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise UsageError(
            f"cannot serve on {host}:{port}: {e.strerror or e}. Pick another port (--port N, "
            "or --port 0 for any free one)"
        ) from None
    sock.listen(128)  # before the address is printed: a request that comes at once waits
    bound = sock.getsockname()[1]
    print(f"hubspoke ui: the board of {db.describe()}", flush=True)
    print(f"open {url_for(host, bound, app.state.token)}", flush=True)
    print(
        "the token in that address is needed once per browser (it is kept in a cookie); "
        "Ctrl-C stops",
        flush=True,
    )
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    sys.stdout.flush()
    return EXIT_OK
