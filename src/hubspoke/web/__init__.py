"""`hubspoke ui`: the web app over a journal (the board for operators, the runs, the inspector),
an SQLite file or a PostgreSQL database alike.

FastAPI + Jinja2 templates + htmx (vendored in `static/vendor`, with its licence and checksums).
It reads the journal and writes people's decisions only through `hubspoke.decisions.Board`, as
the CLI's `hubspoke card` verbs do. Its parts:

- `app`: `create_app(db, token)`, the pages and the decisions, and `routers()`, what it serves;
- `common`: what the routers share: the templates (autoescaped), a store per request (`connect`,
  the one way the app opens its journal) and the pages of a journal that cannot be read;
- `security`: the access token, the session cookie, CSRF, Host and Origin checks (an ASGI
  middleware in front of every route, the inspector's too);
- `views`: what the pages show, built from the store and the fold (no web framework);
- `inspector`: the run inspector's router (`/runs/{run_id}`, its fragments and live stream);
- `runpage`, `spokes`, `stream`: the inspector's view model, its hub-and-spoke SVG and the
  journal it follows live (no web framework).

Needs the optional extra ``hubspoke[web]`` (FastAPI, uvicorn, Jinja2, python-multipart); this
package's `__init__` imports none of them, so `hubspoke --help` stays light.
"""

from __future__ import annotations

__all__: list[str] = []
