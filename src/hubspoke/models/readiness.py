"""Before any work starts: can every model the run would use be used?

Three checks, each naming what to fix, all problems at once:

- **keys**: a provider binding whose key variable (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY`` or
  the endpoint's ``api_key_env``) is unset or empty;
- **servers**: an OpenAI-compatible server, or any configured base URL, that does not answer
  ``GET {base_url}/models`` within `PROBE_TIMEOUT` seconds (refused, unknown host, no answer).
  Any HTTP answer counts as reachable, an error status included: the server is there;
- **prices**: a USD budget (the run's, a role's per-run or per-dispatch one) over a role whose
  model has no known price, which no USD limit could then bound.

Every agent role counts, also one the run may never dispatch: a fallback, a later phase's role,
a role of a sub-workflow.
"""

from __future__ import annotations

import base64
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote, urlsplit, urlunsplit

from hubspoke.errors import ModelSetupError
from hubspoke.models.bindings import parse_binding
from hubspoke.models.config import Config, Connection
from hubspoke.models.selection import Choice

__all__ = [
    "PROBE_TIMEOUT",
    "check_ready",
    "connections",
    "key_problems",
    "needs_probe",
    "price_problems",
    "probe_urls",
]

PROBE_TIMEOUT = 2.0
"""Seconds a server has to answer ``GET {base_url}/models`` before a run."""


def connections(choices: Mapping[str, Choice], config: Config) -> dict[str, Connection]:
    """The connection of every role bound to a provider by a binding string, by role (or
    path); model instances and the offline model are left out.

    Raises:
        ConfigError: a binding names an ``[endpoints.NAME]`` table the file lacks.
    """
    found: dict[str, Connection] = {}
    for role, choice in choices.items():
        if isinstance(choice.binding, str):
            connection = config.connection(parse_binding(choice.binding))
            if connection is not None:
                found[role] = connection
    return found


def needs_probe(choices: Mapping[str, Choice], config: Config) -> bool:
    """Whether `check_ready` would probe a server (and so wait on the network)."""
    return any(c.probe and c.base_url for c in connections(choices, config).values())


def _roles(roles: list[str]) -> str:
    quoted = ", ".join(repr(r) for r in roles)
    return f"role {quoted}" if len(roles) == 1 else f"roles {quoted}"


def _bound_by(choices: Mapping[str, Choice], roles: list[str]) -> str:
    """Which bindings `roles` use, and where they came from: ``openai:x (from cli)``."""
    seen = dict.fromkeys(f"{choices[r].name} (from {choices[r].source})" for r in roles)
    return ", ".join(seen)


def key_problems(choices: Mapping[str, Choice], config: Config) -> list[str]:
    """A sentence for each key variable that is not set, naming the roles that need it."""
    missing: dict[str, list[str]] = {}
    for role, connection in connections(choices, config).items():
        if connection.key_env is not None and connection.api_key(config.environ) is None:
            missing.setdefault(connection.key_env, []).append(role)
    return [
        f"{variable} is not set ({_roles(roles)}: {_bound_by(choices, roles)}): export "
        f"{variable}=... or bind the role(s) to another model"
        for variable, roles in missing.items()
    ]


def price_problems(
    choices: Mapping[str, Choice], config: Config, usd_limited: Mapping[str, str]
) -> list[str]:
    """A sentence for each unpriced model a USD limit covers, saying how to price it."""
    unpriced: dict[str, dict[str, list[str]]] = {}
    for role, why in usd_limited.items():
        choice = choices.get(role)
        if choice is not None and choice.price is None:
            unpriced.setdefault(choice.name, {}).setdefault(why, []).append(role)
    return [
        f"{name} has no known price, and a USD limit covers it ("
        + "; ".join(f"{why}: {_roles(roles)}" for why, roles in limits.items())
        + "): "
        f'price it in {config.file_name} ([prices."{name}"] input = ..., output = ..., in USD '
        f"per million tokens; or the family, [prices.{name.partition(':')[0]}]) or with "
        f"HUBSPOKE_PRICES='{name}=INPUT/OUTPUT', or remove the USD limit"
        for name, limits in unpriced.items()
    ]


def _request(base_url: str) -> urllib.request.Request:
    """``GET {base_url}/models``. Credentials in the URL (``http://user:PASSWORD@host/v1``)
    are sent as HTTP basic auth, as the SDKs' client (httpx) sends them: urllib would take
    them for part of the host name."""
    parts = urlsplit(base_url.rstrip("/") + "/models")
    headers = {"User-Agent": "hubspoke"}
    if parts.username is not None or parts.password is not None:
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {basic}"
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=host)
    return urllib.request.Request(urlunsplit(parts), method="GET", headers=headers)


_PASSWORD_IN_URL = re.compile(r"(?<=://)([^\s/?#@:]*):[^\s/?#]+@")


def _hide_passwords(text: str) -> str:
    """`text` with the password of every URL in it (``scheme://user:PASSWORD@``) as ``***``:
    a refusal is printed, and a binding may carry one."""
    return _PASSWORD_IN_URL.sub(r"\1:***@", text)


def _probe(base_url: str, timeout: float) -> str | None:
    try:
        request = _request(base_url)
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered: the server is there
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused"
        if isinstance(reason, TimeoutError):
            return f"no answer within {timeout:g} s"
        if isinstance(reason, socket.gaierror):
            return "unknown host"
        return str(reason)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except (OSError, ValueError) as e:
        return str(e) or type(e).__name__


def probe_urls(urls: Iterable[str], timeout: float = PROBE_TIMEOUT) -> dict[str, str | None]:
    """Probe servers concurrently: by URL, why it cannot be reached, or `None` if it answered.

    Blocks for at most about `timeout` seconds per URL (all at once, in worker threads).
    """
    unique = list(dict.fromkeys(urls))
    if not unique:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(unique))) as pool:
        results = list(pool.map(lambda url: _probe(url, timeout), unique))
    return dict(zip(unique, results, strict=True))


def _unreachable(choices: Mapping[str, Choice], config: Config, timeout: float) -> list[str]:
    probed = {r: c for r, c in connections(choices, config).items() if c.probe and c.base_url}
    results = probe_urls((c.base_url for c in probed.values() if c.base_url), timeout)
    problems: dict[str, list[str]] = {}
    for role, connection in probed.items():
        assert connection.base_url is not None
        if results.get(connection.base_url) is not None:
            problems.setdefault(connection.base_url, []).append(role)
    return [
        f"cannot reach {url} ({results[url]}: GET {url.rstrip('/')}/models; "
        f"{_roles(roles)}: {_bound_by(choices, roles)}): start the server, or fix the URL"
        for url, roles in problems.items()
    ]


def check_ready(
    choices: Mapping[str, Choice],
    config: Config,
    *,
    usd_limited: Mapping[str, str] | None = None,
    probe: bool = True,
    timeout: float = PROBE_TIMEOUT,
) -> None:
    """Refuse a run whose models cannot be used. Blocks while servers are probed (run it in a
    worker thread from async code).

    Args:
        choices: the binding of every agent role, by role name or path.
        config: where keys and URLs come from.
        usd_limited: the roles (names or paths) a USD budget covers, each with the budget that
            does (e.g. ``"the run's budget (usd=0.5)"``).
        probe: probe the servers (no network when `False`).
        timeout: seconds each server has to answer.

    Raises:
        ModelSetupError: every problem found, one sentence each (the password of a URL in
            it shown as ``***``).
        ConfigError: a binding names an ``[endpoints.NAME]`` table the file lacks.
    """
    problems = key_problems(choices, config)
    problems += price_problems(choices, config, usd_limited or {})
    if probe:
        problems += _unreachable(choices, config, timeout)
    if problems:
        raise ModelSetupError([_hide_passwords(problem) for problem in problems])
