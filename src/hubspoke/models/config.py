"""Configuration: `hubspoke.toml` and the ``HUBSPOKE_*`` environment, read once into a `Config`.

`Config.load()` reads ``hubspoke.toml`` from the working directory (or the file named by
``HUBSPOKE_CONFIG``) with the standard library's `tomllib`, and the environment. Every key is
checked when the file is read: a misspelt table or key is a `ConfigError` naming the file, the
key and what to write, never silently ignored. The file::

    [models]
    default = "openai:gpt-6-luna"            # every agent role (below the CLI and environment)

    [models.roles]                           # one role, by name (or path into a sub-workflow)
    writer = "anthropic:claude-haiku-4-5"
    "research/searcher" = "offline"

    [models.settings]                        # per-request settings of every agent role
    max_tokens = 800
    temperature = 0.2

    [models.settings.writer]                 # one role's, over those
    temperature = 0.7

    [endpoints.openai]                       # openai: and openai-chat: bindings
    base_url = "https://proxy.example.com/v1"
    api_key_env = "COMPANY_OPENAI_KEY"       # the variable holding the key, never the key

    [endpoints.anthropic]                    # anthropic: bindings
    api_key_env = "ANTHROPIC_API_KEY"

    [endpoints.local]                        # openai-compatible:MODEL@local
    base_url = "http://127.0.0.1:8080/v1"
    api_key_env = "LOCAL_LLM_KEY"            # optional: local servers rarely need one

    [prices."openai-compatible:smollm2@local"]   # or a family: [prices.openai-compatible]
    input = 0.0                              # USD per million tokens
    output = 0.0
    cached_input = 0.0                       # optional

    [secrets]                                # more to scrub from the journal
    names = ["MY_SERVICE_TOKEN"]             # environment variables whose values are secret
    patterns = ["tok_[A-Za-z0-9]{24}"]       # regular expressions

Role keys are checked against the workflow when a foreman is built (`Config.check_roles`): one
that names no agent role, by name or by path, is a `ConfigError`.

The environment: ``HUBSPOKE_MODEL`` (every agent role), ``HUBSPOKE_MODEL_<ROLE>`` (one role: its
name upper-cased, other characters than letters and digits as ``_``), ``HUBSPOKE_PRICES``, and
the providers' standard variables (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``,
``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``) unless an endpoint table names others.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hubspoke.errors import BindingError, ConfigError
from hubspoke.models.bindings import Binding, parse_binding, url_problem
from hubspoke.models.prices import (
    PRICES_ENV,
    Price,
    Priced,
    PriceList,
    lookup_price,
    parse_price_env,
    price_from_table,
)
from hubspoke.models.settings import SETTINGS, settings_problem

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILE",
    "MODEL_ENV",
    "Config",
    "Connection",
    "Endpoint",
    "Secrets",
    "role_variable",
]

CONFIG_FILE = "hubspoke.toml"
"""The configuration file, read from the working directory."""
CONFIG_ENV = "HUBSPOKE_CONFIG"
"""Environment variable naming another configuration file."""
MODEL_ENV = "HUBSPOKE_MODEL"
"""Environment variable binding every agent role; ``HUBSPOKE_MODEL_<ROLE>`` binds one."""

_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HOSTED = {
    # provider: (endpoint table, key variable, base URL variable)
    "openai": ("openai", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "openai-chat": ("openai", "OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "anthropic": ("anthropic", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
}


def role_variable(role: str) -> str:
    """The environment variable that binds one role: ``HUBSPOKE_MODEL_<ROLE>``, the name
    upper-cased with every character but letters and digits as ``_`` (``lead-writer`` →
    ``HUBSPOKE_MODEL_LEAD_WRITER``)."""
    return f"{MODEL_ENV}_{re.sub(r'[^A-Z0-9]', '_', role.upper())}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An ``[endpoints.NAME]`` table: where a provider's server is and which variable holds
    its key. ``openai`` and ``anthropic`` configure those providers; any other name is an
    OpenAI-compatible server, bound as ``openai-compatible:MODEL@NAME``."""

    name: str
    base_url: str | None = None
    """`None`: the provider's standard variable (``OPENAI_BASE_URL``...) or its default URL."""
    api_key_env: str | None = None
    """The environment variable holding the key; `None`: the provider's standard one
    (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``), and no key for an OpenAI-compatible server."""


@dataclass(frozen=True, slots=True)
class Secrets:
    """The ``[secrets]`` table: more to scrub from everything the journal records."""

    names: tuple[str, ...] = ()
    """Environment variables whose values are secrets, besides those named like one."""
    patterns: tuple[str, ...] = ()
    """Regular expressions matching secrets."""


@dataclass(frozen=True, slots=True)
class Connection:
    """How a provider binding reaches its server: URL, key, and whether to probe it."""

    base_url: str | None
    """`None`: the SDK's default (``https://api.openai.com/v1``, ``https://api.anthropic.com``)."""
    base_url_from: str
    """Where the URL came from: ``binding``, ``hubspoke.toml [endpoints.NAME]``, a variable
    such as ``OPENAI_BASE_URL``, or ``default``."""
    key_env: str | None
    """The variable holding the API key; `None`: the server takes none."""
    probe: bool
    """Check the server answers before a run: an OpenAI-compatible server, or any configured
    base URL (the providers' own are not probed)."""

    def api_key(self, environ: Mapping[str, str]) -> str | None:
        """The key, or `None` when it takes none or the variable is unset or empty."""
        if self.key_env is None:
            return None
        return environ.get(self.key_env) or None


def _table(where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table")
    return value


def _unknown(where: str, table: Mapping[str, Any], known: tuple[str, ...]) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; use {', '.join(known)}")


def _binding(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a binding string such as 'openai:gpt-6-luna'")
    try:
        parse_binding(value)
    except BindingError as e:
        raise ConfigError(f"{where}: {e}") from None
    return value


def _url(where: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a URL string such as 'http://127.0.0.1:8080/v1'")
    problem = url_problem(value)
    if problem is not None:
        raise ConfigError(f"{where}: {problem}; write e.g. 'http://127.0.0.1:8080/v1'")
    return value


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The configuration a foreman and the CLI read bindings, settings, endpoints, prices
    and secrets from. `Config()` is an empty one: cards and defaults only.

    Build it with `Config.load()` (the working directory's `hubspoke.toml` and the process's
    environment) or `Config.from_toml(text, environ=...)`.
    """

    path: Path | None = None
    """The file read, if any."""
    default_model: str | None = None
    """``[models] default``."""
    role_models: Mapping[str, str] = field(default_factory=dict)
    """``[models.roles]``: role name or path (``team/researcher``) → binding."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """``[models.settings]``: per-request settings of every agent role."""
    role_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """``[models.settings.ROLE]``: one role's settings, by name or path."""
    endpoints: Mapping[str, Endpoint] = field(default_factory=dict)
    prices: Mapping[str, Price] = field(default_factory=dict)
    """``[prices]``: by binding or family."""
    env_prices: Mapping[str, Price] = field(default_factory=dict)
    """``HUBSPOKE_PRICES``, parsed."""
    secrets: Secrets = field(default_factory=Secrets)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    """The environment the configuration was read from (model variables, API keys)."""

    @property
    def file_name(self) -> str:
        """How messages name the file: its name, or ``hubspoke.toml`` when there is none."""
        return CONFIG_FILE if self.path is None else self.path.name

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Read `hubspoke.toml` (or ``$HUBSPOKE_CONFIG``) and the environment.

        Args:
            directory: where to look for `hubspoke.toml`; the working directory by default.
            environ: the environment; the process's by default (copied).

        Raises:
            ConfigError: ``HUBSPOKE_CONFIG`` names a file that does not exist, the file is not
                valid TOML, a key is unknown or a value wrong, ``HUBSPOKE_PRICES`` is malformed.
        """
        env = dict(os.environ if environ is None else environ)
        named = env.get(CONFIG_ENV, "").strip()
        if named:
            path = Path(named)
            if not path.is_file():
                raise ConfigError(f"{CONFIG_ENV}={named} names no file; fix or unset it")
        else:
            path = Path(directory if directory is not None else ".").absolute() / CONFIG_FILE
            if not path.is_file():
                return cls._from_data({}, path=None, environ=env)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read {path}: {e}") from None
        return cls.from_toml(text, path=path, environ=env)

    @classmethod
    def from_toml(
        cls, text: str, *, path: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> Config:
        """A configuration from the text of a `hubspoke.toml`.

        Args:
            text: the file's content.
            path: the file, for messages.
            environ: the environment (none by default: no keys, no model variables).

        Raises:
            ConfigError: see `load`.
        """
        name = CONFIG_FILE if path is None else str(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{name} is not valid TOML: {e}") from None
        return cls._from_data(data, path=path, environ=dict(environ or {}), name=name)

    @classmethod
    def _from_data(
        cls,
        data: Mapping[str, Any],
        *,
        path: Path | None,
        environ: dict[str, str],
        name: str = CONFIG_FILE,
    ) -> Config:
        _unknown(name, data, ("models", "endpoints", "prices", "secrets"))
        models = _table(f"{name} [models]", data.get("models", {}))
        _unknown(f"{name} [models]", models, ("default", "roles", "settings"))
        default = models.get("default")
        if default is not None:
            default = _binding(f"{name} [models] default", default)
        roles = _table(f"{name} [models.roles]", models.get("roles", {}))
        role_models = {
            role: _binding(f"{name} [models.roles] {role}", value) for role, value in roles.items()
        }
        every, per_role = cls._settings(name, models.get("settings", {}))
        endpoints = {
            key: cls._endpoint(name, key, value)
            for key, value in _table(f"{name} [endpoints]", data.get("endpoints", {})).items()
        }
        prices = {
            key: price_from_table(f'{name} [prices."{key}"]', value)
            for key, value in _table(f"{name} [prices]", data.get("prices", {})).items()
        }
        return cls(
            path=path,
            default_model=default,
            role_models=role_models,
            settings=every,
            role_settings=per_role,
            endpoints=endpoints,
            prices=prices,
            env_prices=parse_price_env(environ.get(PRICES_ENV, "")),
            secrets=cls._secrets(name, data.get("secrets", {})),
            environ=environ,
        )

    @staticmethod
    def _settings(name: str, value: object) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        table = _table(f"{name} [models.settings]", value)
        # A sub-table is a role's, unless its key is a setting that takes a table.
        every = {
            k: v
            for k, v in table.items()
            if not isinstance(v, Mapping)
            or k in SETTINGS
            or k.startswith(("openai_", "anthropic_"))
        }
        per_role = {k: dict(v) for k, v in table.items() if k not in every}
        problem = settings_problem(every)
        if problem is not None:
            raise ConfigError(f"{name} [models.settings]: {problem}")
        for role, settings in per_role.items():
            problem = settings_problem(settings)
            if problem is not None:
                raise ConfigError(f"{name} [models.settings.{role}]: {problem}")
        return every, per_role

    @staticmethod
    def _endpoint(name: str, key: str, value: object) -> Endpoint:
        where = f"{name} [endpoints.{key}]"
        table = _table(where, value)
        if "api_key" in table:
            raise ConfigError(
                f"{where}: a key never goes in a file; put it in an environment variable and "
                'name the variable with api_key_env = "VARIABLE"'
            )
        _unknown(where, table, ("base_url", "api_key_env"))
        base_url = table.get("base_url")
        if base_url is not None:
            base_url = _url(f"{where} base_url", base_url)
        elif key not in ("openai", "anthropic"):
            raise ConfigError(
                f"{where}: an OpenAI-compatible server needs base_url = "
                '"http://HOST:PORT/v1" (only [endpoints.openai] and [endpoints.anthropic] '
                "may leave it to the provider's default)"
            )
        key_env = table.get("api_key_env")
        if key_env is not None and (not isinstance(key_env, str) or not _VARIABLE.match(key_env)):
            raise ConfigError(
                f"{where}: api_key_env must be the name of an environment variable, e.g. "
                f'"OPENAI_API_KEY"; got {key_env!r}'
            )
        return Endpoint(key, base_url, key_env)

    @staticmethod
    def _secrets(name: str, value: object) -> Secrets:
        where = f"{name} [secrets]"
        table = _table(where, value)
        _unknown(where, table, ("names", "patterns"))
        lists: dict[str, tuple[str, ...]] = {}
        for key in ("names", "patterns"):
            items = table.get(key, [])
            if not isinstance(items, list) or not all(isinstance(x, str) and x for x in items):
                raise ConfigError(f"{where}: {key} must be a list of non-empty strings")
            lists[key] = tuple(items)
        for pattern in lists["patterns"]:
            try:
                re.compile(pattern)
            except re.error as e:
                raise ConfigError(
                    f"{where}: pattern {pattern!r} is not a regular expression: {e}"
                ) from None
        return Secrets(lists["names"], lists["patterns"])

    # role keys: names or paths ------------------------------------------------------------------

    def below(self, role: str) -> Config:
        """The configuration as the sub-workflow that `role` runs sees it: role keys of
        ``[models.roles]`` and ``[models.settings.ROLE]`` that are names still apply (a name
        binds every role of that name), and paths under `role` lose their first step
        (``team/researcher`` is ``researcher`` there). A path's binding beats the name's; its
        settings go over the name's, key by key."""
        prefix = role + "/"
        models = {k: v for k, v in self.role_models.items() if "/" not in k}
        models.update(
            {k[len(prefix) :]: v for k, v in self.role_models.items() if k.startswith(prefix)}
        )
        settings = {k: v for k, v in self.role_settings.items() if "/" not in k}
        for key, value in self.role_settings.items():
            if key.startswith(prefix):
                name = key[len(prefix) :]
                settings[name] = {**settings.get(name, {}), **value}
        return replace(self, role_models=models, role_settings=settings)

    def check_roles(self, agents: Collection[str], workflow: str) -> None:
        """Refuse role keys that name no agent role of a workflow: a ``[models.roles]`` or
        ``[models.settings.ROLE]`` key is the name of an agent role (at any depth) or its path
        (``team/researcher``), or a misspelling that would bind nothing.

        Args:
            agents: the workflow's agent roles, by path (`Workflow.agent_roles`).
            workflow: the workflow's name, for the message.

        Raises:
            ConfigError: naming the file, the key and the workflow's agent roles.
        """
        names = {path.rpartition("/")[2] for path in agents}
        for table, keys in (
            ("[models.roles] {}", self.role_models),
            ("[models.settings.{}]", self.role_settings),
        ):
            for key in keys:
                if key in agents or ("/" not in key and key in names):
                    continue
                known = ", ".join(agents) or "none"
                where = table.format(f'"{key}"' if "/" in key else key)
                raise ConfigError(
                    f"{self.file_name} {where}: workflow {workflow!r} has no agent role {key!r} "
                    f"(agent roles, by name or path: {known}); fix the name or remove the key"
                )

    # what the configuration says about a binding ------------------------------------------------

    def env_binding(self, role: str) -> tuple[str, str] | None:
        """The binding the environment gives `role`, and the variable it came from:
        ``HUBSPOKE_MODEL_<ROLE>``, else ``HUBSPOKE_MODEL``.

        Raises:
            ConfigError: the variable holds no valid binding.
        """
        for variable in (role_variable(role), MODEL_ENV):
            value = self.environ.get(variable, "").strip()
            if value:
                try:
                    parse_binding(value)
                except BindingError as e:
                    raise ConfigError(f"{variable}={value}: {e}") from None
                return variable, value
        return None

    def price_lists(self) -> list[PriceList]:
        """The configuration's prices, highest first: ``HUBSPOKE_PRICES``, then the file's."""
        return [
            PriceList(PRICES_ENV, self.env_prices),
            PriceList(self.file_name, self.prices),
        ]

    def price(self, binding: str) -> Priced | None:
        """The price of a binding and where it came from; `None` when nothing prices it."""
        return lookup_price(binding, self.price_lists())

    def connection(self, binding: Binding) -> Connection | None:
        """Where a provider binding's server is and which variable holds its key; `None` for
        the offline model and named models.

        Raises:
            ConfigError: an ``openai-compatible:MODEL@NAME`` binding names no endpoint table,
                or the provider's URL variable (``OPENAI_BASE_URL``...) holds no valid URL.
        """
        if binding.provider in ("offline", "named"):
            return None
        if binding.provider in _HOSTED:
            table, key_var, url_var = _HOSTED[binding.provider]
            endpoint = self.endpoints.get(table, Endpoint(table))
            key_env = endpoint.api_key_env or key_var
            if endpoint.base_url is not None:
                return Connection(
                    endpoint.base_url, f"{self.file_name} [endpoints.{table}]", key_env, True
                )
            env_url = self.environ.get(url_var, "").strip()
            if env_url:
                problem = url_problem(env_url)
                if problem is not None:
                    raise ConfigError(
                        f"{url_var}: {problem}; set it to e.g. 'https://proxy.example.com/v1', "
                        "or unset it"
                    )
                return Connection(env_url, url_var, key_env, True)
            return Connection(None, "default", key_env, False)
        if binding.endpoint is not None:
            endpoint_or_none = self.endpoints.get(binding.endpoint)
            if endpoint_or_none is None or endpoint_or_none.base_url is None:
                known = [n for n, e in self.endpoints.items() if n not in ("openai", "anthropic")]
                raise ConfigError(
                    f"binding {binding.text!r} names the server [endpoints.{binding.endpoint}], "
                    f"which {self.file_name} does not have (servers: {', '.join(known) or 'none'});"
                    f' add it with base_url = "http://HOST:PORT/v1", or write the URL: '
                    f"openai-compatible:{binding.model}@http://HOST:PORT/v1"
                )
            return Connection(
                endpoint_or_none.base_url,
                f"{self.file_name} [endpoints.{binding.endpoint}]",
                endpoint_or_none.api_key_env,
                True,
            )
        assert binding.base_url is not None
        # A URL written in the binding takes the key of an endpoint table with the same URL.
        url_key_env: str | None = next(
            (
                e.api_key_env
                for e in self.endpoints.values()
                if e.base_url is not None and _same_url(e.base_url, binding.base_url)
            ),
            None,
        )
        return Connection(binding.base_url, "binding", url_key_env, True)
