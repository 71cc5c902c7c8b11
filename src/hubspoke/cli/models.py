"""`--model` and `hubspoke models`: which model plays each agent role, why, at what price.

Everything here reads the workflow's cards and the configuration (`hubspoke.toml`, the
environment); nothing builds a model or imports the foreman or pydantic-ai, and nothing touches
the network unless `--check` asks to probe the servers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from hubspoke.cli.failures import UsageError
from hubspoke.errors import BindingError
from hubspoke.models.bindings import parse_binding
from hubspoke.models.config import MODEL_ENV, Config
from hubspoke.models.prices import shipped_prices
from hubspoke.models.readiness import connections, key_problems, price_problems, probe_urls
from hubspoke.models.selection import Choice, ModelOverride
from hubspoke.models.settings import DEFAULT_MAX_TOKENS, merge_settings
from hubspoke.roles import Role
from hubspoke.workflow import Workflow

__all__ = ["config_report", "models_report", "parse_model_options", "recorded_override"]

_ROLE_KEY = re.compile(r"^[a-z][a-z0-9_\-]*(/[a-z][a-z0-9_\-]*)*$")


def _check_binding(option: str, binding: str) -> None:
    try:
        parse_binding(binding)
    except BindingError as e:
        raise UsageError(f"--model {option!r}: {e}") from None


def _all_roles(workflow: Workflow, prefix: str = "") -> dict[str, Role]:
    found: dict[str, Role] = {}
    for role in workflow.roles:
        found[prefix + role.name] = role
        if isinstance(role.delegate, Workflow):
            found.update(_all_roles(role.delegate, f"{prefix}{role.name}/"))
    return found


def parse_model_options(values: Sequence[str], workflow: Workflow) -> ModelOverride:
    """The override `--model` gives: ``NAME`` for every agent role (once at most), and
    ``ROLE=NAME`` (or ``PATH/ROLE=NAME`` into a sub-workflow) for one, repeatable.

    Raises:
        UsageError: a binding that does not parse, ``NAME`` twice, a role that does not exist
            or is not an agent role (a function or a sub-workflow calls no model).
    """
    every: str | None = None
    roles: dict[str, str] = {}
    agents = workflow.agent_roles()
    names = {path.rpartition("/")[2] for path in agents}
    everything = _all_roles(workflow)
    for value in values:
        key, eq, binding = value.partition("=")
        if not (eq and _ROLE_KEY.match(key)):
            _check_binding(value, value)
            if every is not None:
                raise UsageError(
                    f"--model given twice for every agent role ({every!r} and {value!r}); "
                    "give --model NAME once, and --model ROLE=NAME for one role"
                )
            every = value
            continue
        _check_binding(value, binding)
        if key not in agents and ("/" in key or key not in names):
            role = everything.get(key) or next(
                (r for p, r in everything.items() if p.rpartition("/")[2] == key), None
            )
            known = ", ".join(agents) or "none"
            if role is None:
                problem = f"workflow {workflow.name!r} has no role {key!r}"
            else:
                kind = "a function" if role.function is not None else "a sub-workflow"
                problem = f"role {key!r} runs {kind}: it calls no model"
            raise UsageError(f"--model {value!r}: {problem}; agent roles: {known}")
        roles[key] = binding
    return ModelOverride(every, roles, "cli")


def recorded_override(options: Mapping[str, Any], workflow: Workflow) -> ModelOverride:
    """The bindings a run recorded (``options["models"]``), as the override its resume plays
    the roles with; roles the workflow no longer has are left to its resume to report."""
    recorded = options.get("models")
    if isinstance(recorded, Mapping):
        agents = workflow.agent_roles()
        roles = {
            path: entry["binding"]
            for path, entry in recorded.items()
            if path in agents
            and isinstance(entry, Mapping)
            and isinstance(entry.get("binding"), str)
            and not entry.get("instance", False)
        }
        return ModelOverride(roles=roles, source="run")
    legacy = options.get("model")  # runs recorded before bindings were kept per role
    return ModelOverride(every=legacy if isinstance(legacy, str) else None, source="run")


def _row(
    path: str,
    role: Role,
    choice: Choice,
    config: Config,
    usd_limited: Mapping[str, str],
) -> dict[str, Any]:
    *outer, name = path.split("/")
    scoped = config
    for step in outer:  # the configuration as the role's own workflow sees it
        scoped = scoped.below(step)
    settings = merge_settings(role, scoped.settings, scoped.role_settings.get(name))
    settings.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
    connection = connections({path: choice}, config).get(path)
    return {
        "role": path,
        "binding": choice.name,
        "instance": not isinstance(choice.binding, str),
        "source": choice.source,
        "price": None if choice.price is None else choice.price.price.to_dict(),
        "price_source": None if choice.price is None else choice.price.source,
        "usd_limited": usd_limited.get(path),
        "key": None
        if connection is None or connection.key_env is None
        else {
            "variable": connection.key_env,
            "set": connection.api_key(config.environ) is not None,
        },
        "endpoint": None
        if connection is None
        else {"url": connection.base_url, "from": connection.base_url_from},
        "reachable": None,
        "settings": settings,
    }


def models_report(
    workflow: Workflow, config: Config, override: ModelOverride, *, check: bool = False
) -> dict[str, Any]:
    """What `hubspoke models WORKFLOW` says: a row per agent role, and the problems that
    would stop a run (a key not set, a USD budget over an unpriced model and, with `check`,
    a server that does not answer).

    Raises:
        ConfigError: an environment variable holds no valid binding, a binding names an
            ``[endpoints.NAME]`` table the file lacks, or a role key of the file names no
            agent role of the workflow.
    """
    choices = workflow.model_choices(override, config)
    agents = workflow.agent_roles()
    limited = workflow.usd_limited()
    rows = [_row(path, agents[path], c, config, limited) for path, c in choices.items()]
    problems = key_problems(choices, config) + price_problems(choices, config, limited)
    if check:
        urls = {r["role"]: r["endpoint"]["url"] for r in rows if r["endpoint"]}
        probed = {role: url for role, url in urls.items() if url}
        results = probe_urls(probed.values())
        for row in rows:
            url = probed.get(row["role"])
            if url is not None:
                row["reachable"] = results[url] is None
                if results[url] is not None:
                    problems.append(f"cannot reach {url} ({results[url]}) for role {row['role']!r}")
    return {
        "workflow": workflow.name,
        "config": None if config.path is None else str(config.path),
        "prices": shipped_prices().source,
        "roles": rows,
        "problems": list(dict.fromkeys(problems)),
    }


def config_report(config: Config) -> dict[str, Any]:
    """What `hubspoke models` says without a workflow: the bindings, servers and prices the
    configuration sets."""
    variables = {
        name: value
        for name, value in sorted(config.environ.items())
        if (name == MODEL_ENV or name.startswith(MODEL_ENV + "_")) and value.strip()
    }
    endpoints = []
    for name, endpoint in config.endpoints.items():
        key_env = endpoint.api_key_env or {"openai": "OPENAI_API_KEY"}.get(
            name, {"anthropic": "ANTHROPIC_API_KEY"}.get(name)
        )
        endpoints.append(
            {
                "name": name,
                "base_url": endpoint.base_url,
                "key": None
                if key_env is None
                else {"variable": key_env, "set": bool(config.environ.get(key_env))},
            }
        )
    return {
        "config": None if config.path is None else str(config.path),
        "default": config.default_model,
        "roles": dict(config.role_models),
        "environment": variables,
        "settings": dict(config.settings),
        "role_settings": {k: dict(v) for k, v in config.role_settings.items()},
        "endpoints": endpoints,
        "prices": shipped_prices().source,
        "price_overrides": sorted({*config.prices, *config.env_prices}),
    }
