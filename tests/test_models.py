"""Models by configuration: bindings, their precedence, the configuration file, the clients
built from it, the checks before a run, per-request settings and prices.

End to end through `Foreman.run` where the rule is the foreman's (settings reaching a request,
a run refused before anything is written), on the parts themselves where the rule is theirs.
"""

from __future__ import annotations

import base64
import dataclasses
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai.messages import ModelMessage, ModelResponse, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from hubspoke import (
    Budget,
    ConfigError,
    DefinitionError,
    EventKind,
    Foreman,
    ModelSetupError,
    Phase,
    Role,
    SQLiteStore,
    Workflow,
)
from hubspoke.models import Config, ModelOverride, Price, parse_binding, price_for, set_price
from hubspoke.models.bindings import Binding
from hubspoke.models.config import role_variable
from hubspoke.models.offline import answer
from hubspoke.models.prices import _SET, lookup_price, shipped_prices
from hubspoke.models.providers import build_model
from hubspoke.models.readiness import probe_urls
from hubspoke.testing import scripted
from tests.helpers import Notes, Summary, Topic, research, summarise

pytestmark = pytest.mark.anyio


def two_agents(
    writer_model: str | None = None,
    default_model: str = "offline",
    spare: str | None = None,
    **writer: Any,
) -> Workflow:
    """A function role, then two agent roles: `writer` (whose card may name a model) and
    `reader` (whose card names none); with `spare`, a fallback of the writer bound to it."""
    fallback = [Role(name="spare", purpose="Write.", input=Notes, output=Summary, model=spare)]
    return Workflow(
        name="two",
        input=Topic,
        roles=[
            Role(
                name="researcher", purpose="Research.", input=Topic, output=Notes, function=research
            ),
            Role(
                name="writer",
                purpose="Write.",
                input=Notes,
                output=Summary,
                model=writer_model,
                **writer,
            ),
            Role(name="reader", purpose="Read.", input=Summary, output=Summary),
            *(fallback if spare else []),
        ],
        phases=[
            Phase(name="research", role="researcher", input=lambda run: run.input),
            Phase(name="write", role="writer", input=lambda run: run.output("research")),
            Phase(name="read", role="reader", input=lambda run: run.output("write")),
        ],
        default_model=default_model,
        players={
            "writer": scripted(answer(text="tea is old")),
            "reader": scripted(answer(text="read")),
        },
    )


def refused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on: bound, then closed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# bindings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("offline", Binding("offline", "offline", "offline")),
        ("openai:gpt-6-luna", Binding("openai:gpt-6-luna", "openai", "gpt-6-luna")),
        ("openai-chat:gpt-6-luna", Binding("openai-chat:gpt-6-luna", "openai-chat", "gpt-6-luna")),
        (
            "anthropic:claude-haiku-4-5",
            Binding("anthropic:claude-haiku-4-5", "anthropic", "claude-haiku-4-5"),
        ),
        (
            "openai-compatible:qwen2.5:0.5b@http://127.0.0.1:11434/v1",
            Binding(
                "openai-compatible:qwen2.5:0.5b@http://127.0.0.1:11434/v1",
                "openai-compatible",
                "qwen2.5:0.5b",
                base_url="http://127.0.0.1:11434/v1",
            ),
        ),
        (
            "openai-compatible:smollm2@local",
            Binding(
                "openai-compatible:smollm2@local", "openai-compatible", "smollm2", endpoint="local"
            ),
        ),
        ("scripted", Binding("scripted", "named", "scripted")),
    ],
)
def test_bindings_parse(text: str, expected: Binding) -> None:
    assert parse_binding(text) == expected


BAD_BINDINGS = {
    "openai-compatible:m@127.0.0.1:8089/v1": "write openai-compatible:m@http://127.0.0.1:8089/v1",
    "openai-compatible:m@localhost:8080/v1": "write openai-compatible:m@http://localhost:8080/v1",
    "openai-compatible:m@ftp://host/v1": "is not an http:// or https:// URL",
    "openai-compatible:m": "names no server; write openai-compatible:m@http://",
    "openai-compatible:@http://127.0.0.1:1/v1": "has no model name",
    "groq:llama": "unknown provider 'groq'; write offline, openai:MODEL",
    "openai:": "has no model name; write openai:MODEL",
    "anthropic:claude@http://proxy": "take no server; set the server in hubspoke.toml",
    " openai:x": "has spaces in it",
    # URLs the standard library cannot read: refused with what to write, never a ValueError
    "openai-compatible:m@http://[::1/v1": "'http://[::1/v1' is not a valid URL (Invalid IPv6",
    "openai-compatible:m@http://h:99999/v1": "not a valid URL (Port out of range 0-65535)",
    "openai-compatible:m@http://u:[REDACTED]@h/v1": "'http://u:[REDACTED]@h/v1' is not a valid",
}


@pytest.mark.parametrize("binding", list(BAD_BINDINGS))
def test_a_bad_binding_on_a_card_is_refused_at_check_saying_what_to_write(binding: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        two_agents(binding).check()
    assert (caught.value.where, caught.value.field) == ("role 'writer'", "model")
    assert BAD_BINDINGS[binding] in caught.value.problem


def test_a_bad_default_model_is_refused_at_check() -> None:
    with pytest.raises(DefinitionError) as caught:
        two_agents(default_model="openai-compatible:m@127.0.0.1:8089/v1").check()
    assert (caught.value.where, caught.value.field) == ("workflow 'two'", "default_model")
    assert "http://127.0.0.1:8089/v1" in caught.value.problem


# precedence --------------------------------------------------------------------------------------

LEVELS = [
    ("override for the role", "openai:a"),
    ("override for every role", "openai:b"),
    ("env HUBSPOKE_MODEL_WRITER", "openai:c"),
    ("env HUBSPOKE_MODEL", "openai:d"),
    ("hubspoke.toml [models.roles]", "openai:e"),
    ("hubspoke.toml [models] default", "openai:f"),
    ("card", "openai:g"),
    ("workflow default", "openai:h"),
]
"""Every level a binding can come from, highest first, with the binding each gives `writer`."""


def choices_with(levels: set[str]) -> dict[str, tuple[str, str]]:
    """Each agent role's (binding, source) when only `levels` give one."""
    given = dict(LEVELS)
    roles = {"writer": given[LEVELS[0][0]]} if LEVELS[0][0] in levels else {}
    override = ModelOverride(
        every=given[LEVELS[1][0]] if LEVELS[1][0] in levels else None, roles=roles, source="cli"
    )
    environ = {name.removeprefix("env "): given[name] for name in levels if name.startswith("env ")}
    toml = ["[models]"]
    if "hubspoke.toml [models] default" in levels:
        toml.append(f'default = "{given["hubspoke.toml [models] default"]}"')
    if "hubspoke.toml [models.roles]" in levels:
        toml += ["[models.roles]", f'writer = "{given["hubspoke.toml [models.roles]"]}"']
    config = Config.from_toml("\n".join(toml), environ=environ)
    workflow = two_agents(
        given["card"] if "card" in levels else None, default_model=given["workflow default"]
    )
    return {
        role: (str(choice.binding), choice.source)
        for role, choice in workflow.model_choices(override, config).items()
    }


@pytest.mark.parametrize("top", range(len(LEVELS)), ids=[name for name, _ in LEVELS])
def test_each_level_beats_every_level_below_it(top: int) -> None:
    name, binding = LEVELS[top]
    chosen = choices_with({level for level, _ in LEVELS[top:]})
    source = {
        "override for the role": "cli",
        "override for every role": "cli",
    }.get(name, name)
    assert chosen["writer"] == (binding, source)


@pytest.mark.parametrize("top", range(1, len(LEVELS)), ids=[name for name, _ in LEVELS[1:]])
def test_a_level_for_every_role_reaches_a_role_whose_card_names_none(top: int) -> None:
    # `reader` has no card binding and no role-specific level names it: it takes the highest
    # level that binds every role.
    every = [
        i
        for i, (name, _) in enumerate(LEVELS)
        if name
        not in (
            "override for the role",
            "env HUBSPOKE_MODEL_WRITER",
            "hubspoke.toml [models.roles]",
            "card",
        )
    ]
    chosen = choices_with({level for level, _ in LEVELS[top:]})
    first = next(i for i in every if i >= top)
    name, binding = LEVELS[first]
    assert chosen["reader"] == (binding, "cli" if name.startswith("override") else name)


def test_the_role_variable_upper_cases_the_name_and_replaces_other_characters() -> None:
    assert role_variable("lead-writer") == "HUBSPOKE_MODEL_LEAD_WRITER"
    assert role_variable("writer_2") == "HUBSPOKE_MODEL_WRITER_2"


def test_an_environment_variable_with_a_bad_binding_is_a_config_error_naming_it() -> None:
    config = Config(environ={"HUBSPOKE_MODEL_WRITER": "openai-compatible:m@127.0.0.1:1/v1"})
    with pytest.raises(ConfigError, match=r"HUBSPOKE_MODEL_WRITER=.*has no scheme"):
        two_agents().model_choices(None, config)


def nested() -> Workflow:
    """Workflow `outer`: `two_agents` as its role `inner` (agent roles ``inner/writer`` and
    ``inner/reader``), then its own agent role `writer`."""
    inner = dataclasses.replace(two_agents(), result=lambda run: run.output("read"))
    return Workflow(
        name="outer",
        input=Topic,
        roles=[
            inner.as_role(name="inner", purpose="Run the inner workflow.", output=Summary),
            Role(name="writer", purpose="Write.", input=Summary, output=Summary),
        ],
        phases=[
            Phase(name="inner", role="inner", input=lambda run: run.input),
            Phase(name="write", role="writer", input=lambda run: run.output("inner")),
        ],
        result=lambda run: run.output("write"),
    )


def test_paths_bind_roles_of_sub_workflows_and_beat_names() -> None:
    outer = nested()
    override = {"writer": "openai:every-writer", "inner/writer": "openai:inner-writer"}
    chosen = {path: c.binding for path, c in outer.model_choices(override).items()}
    assert chosen == {
        "writer": "openai:every-writer",
        "inner/writer": "openai:inner-writer",
        "inner/reader": "offline",
    }


async def test_paths_in_hubspoke_toml_bind_and_set_roles_of_sub_workflows(
    store: SQLiteStore,
) -> None:
    # As `Foreman(model={"inner/writer": ...})` does: a path reaches the role of the
    # sub-workflow and beats its name; a path's settings go over the name's.
    every: list[dict[str, Any]] = []
    inner: list[dict[str, Any]] = []
    config = Config.from_toml(
        '[models.roles]\nwriter = "every"\n"inner/writer" = "inner"\n'
        "[models.settings.writer]\ntemperature = 0.3\n"
        '[models.settings."inner/writer"]\nmax_tokens = 222\n'
    )
    models = {"every": recording(every), "inner": recording(inner)}
    foreman = Foreman(nested(), store, models=models, config=config)

    result = await foreman.run({"topic": "tea"})

    assert result.status == "completed"
    source = "hubspoke.toml [models.roles]"
    chosen = {path: (c.name, c.source) for path, c in foreman.model_choices.items()}
    assert chosen == {
        "writer": ("every", source),
        "inner/writer": ("inner", source),
        "inner/reader": ("offline", "workflow default"),
    }
    assert inner == [{"temperature": 0.3, "max_tokens": 222}]  # the sub-run's writer
    assert every == [{"temperature": 0.3, "max_tokens": 1024}]  # the outer writer
    on_paper = {path: c.source for path, c in nested().model_choices(None, config).items()}
    assert on_paper == {path: s for path, (_, s) in chosen.items()}


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[models.roles]\nwrtier = "offline"', "[models.roles] wrtier:"),
        ('[models.roles]\n"inner/nobody" = "offline"', '[models.roles] "inner/nobody":'),
        ('[models.roles]\n"reader" = "offline"', None),  # a name: every role so named
        ('[models.roles]\n"writer/reader" = "offline"', '[models.roles] "writer/reader":'),
        ('[models.roles]\ninner = "offline"', "[models.roles] inner:"),  # a sub-workflow
        # a function's
        ('[models.roles]\n"inner/researcher" = "offline"', '[models.roles] "inner/researcher":'),
        ("[models.settings.wrtier]\ntemperature = 0.1", "[models.settings.wrtier]:"),
        ('[models.settings."inner/nobody"]\ntop_p = 0.5', '[models.settings."inner/nobody"]:'),
    ],
)
def test_role_keys_of_the_configuration_must_name_an_agent_role(
    store: SQLiteStore, text: str, where: str | None
) -> None:
    config = Config.from_toml(text)
    if where is None:
        Foreman(nested(), store, config=config)
        return
    with pytest.raises(ConfigError) as caught:
        Foreman(nested(), store, config=config)
    message = str(caught.value)
    assert message.startswith(f"hubspoke.toml {where} workflow 'outer' has no agent role")
    assert "(agent roles, by name or path: inner/writer, inner/reader, writer)" in message
    with pytest.raises(ConfigError, match="has no agent role"):  # what `hubspoke models` reads
        nested().model_choices(None, config)


async def test_the_foreman_records_each_roles_binding_source_and_price(store: SQLiteStore) -> None:
    config = Config(environ={"HUBSPOKE_MODEL_READER": "offline"})
    result = await Foreman(two_agents(), store, config=config).run({"topic": "tea"})

    assert result.status == "completed"
    record = store.run(result.run_id)
    assert record is not None
    offline = {"input": 0.15, "output": 0.6, "cached_input": None}
    prices = shipped_prices().source
    assert record.options["models"] == {
        "writer": {
            "binding": "offline",
            "instance": False,
            "source": "workflow default",
            "price": offline,
            "price_source": prices,
        },
        "reader": {
            "binding": "offline",
            "instance": False,
            "source": "env HUBSPOKE_MODEL_READER",
            "price": offline,
            "price_source": prices,
        },
    }


@pytest.mark.parametrize(
    ("model", "problem"),
    [
        ({"nobody": "offline"}, "'nobody' names no agent role of workflow 'two'"),
        ({"researcher": "offline"}, "'researcher' names no agent role"),
        ("openai-compatible:m@127.0.0.1:1/v1", "has no scheme"),
    ],
)
def test_the_foreman_refuses_an_override_for_no_agent_role_or_a_bad_binding(
    store: SQLiteStore, model: Any, problem: str
) -> None:
    with pytest.raises(DefinitionError, match=problem):
        Foreman(two_agents(), store, model=model, config=Config())


async def test_an_override_by_role_plays_that_role_only(store: SQLiteStore) -> None:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("final_result", {"text": "from the function"})])

    result = await Foreman(
        two_agents(),
        store,
        model={"writer": FunctionModel(respond, model_name="fn")},
        config=Config(),
    ).run({"topic": "tea"})

    assert result.status == "completed"
    texts = {a.phase: a.content for a in store.artifacts(result.run_id)}
    assert texts["write"] == {"text": "from the function"}
    assert texts["read"] == {"text": "read"}  # the offline player, as the workflow says


# the configuration file --------------------------------------------------------------------------

FULL = """
[models]
default = "openai:gpt-6-luna"

[models.roles]
writer = "anthropic:claude-haiku-4-5"

[models.settings]
max_tokens = 800
temperature = 0.2
extra_headers = { X-Team = "sales" }

[models.settings.writer]
temperature = 0.7

[endpoints.openai]
base_url = "https://proxy.example.com/v1"
api_key_env = "COMPANY_OPENAI_KEY"

[endpoints.local]
base_url = "http://127.0.0.1:8080/v1"
api_key_env = "LOCAL_LLM_KEY"

[prices."openai-compatible:smollm2@local"]
input = 0.0
output = 0.0

[prices.openai-compatible]
input = 0.01
output = 0.02
cached_input = 0.005

[secrets]
names = ["MY_SERVICE_TOKEN"]
patterns = ["tok_[A-Za-z0-9]{24}"]
"""


def test_a_full_configuration_file_loads(tmp_path: Path) -> None:
    (tmp_path / "hubspoke.toml").write_text(FULL, encoding="utf-8")
    config = Config.load(tmp_path, environ={})

    assert config.path == tmp_path / "hubspoke.toml"
    assert config.default_model == "openai:gpt-6-luna"
    assert config.role_models == {"writer": "anthropic:claude-haiku-4-5"}
    assert config.settings == {
        "max_tokens": 800,
        "temperature": 0.2,
        "extra_headers": {"X-Team": "sales"},
    }
    assert config.role_settings == {"writer": {"temperature": 0.7}}
    assert config.endpoints["local"].base_url == "http://127.0.0.1:8080/v1"
    assert config.prices["openai-compatible"] == Price(0.01, 0.02, 0.005)
    assert config.secrets.names == ("MY_SERVICE_TOKEN",)
    assert config.secrets.patterns == ("tok_[A-Za-z0-9]{24}",)


def test_no_file_is_an_empty_configuration(tmp_path: Path) -> None:
    config = Config.load(tmp_path, environ={"HUBSPOKE_MODEL": "offline"})
    assert config.path is None
    assert config.default_model is None
    assert config.env_binding("writer") == ("HUBSPOKE_MODEL", "offline")


def test_hubspoke_config_names_another_file(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text('[models]\ndefault = "openai:gpt-6-sol"', encoding="utf-8")
    config = Config.load(tmp_path / "nowhere", environ={"HUBSPOKE_CONFIG": str(other)})
    assert config.default_model == "openai:gpt-6-sol"
    with pytest.raises(ConfigError, match=r"HUBSPOKE_CONFIG=.* names no file"):
        Config.load(tmp_path, environ={"HUBSPOKE_CONFIG": str(tmp_path / "missing.toml")})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[model]\ndefault = 'offline'", "unknown key 'model'; use models, endpoints, prices"),
        ("[models]\ndefualt = 'offline'", "[models]: unknown key 'defualt'; use default, roles"),
        ("[models.roles]\nwriter = 'foo:bar'", "[models.roles] writer: binding 'foo:bar' names an"),
        ("[models.settings]\ntemprature = 0.3", "unknown setting 'temprature'"),
        ("[models.settings]\ntemperature = 3", "temperature must be a number from 0 to 2"),
        ("[models.settings.writer]\nmax_tokens = 0", "[models.settings.writer]: max_tokens must"),
        ("[models.settings]\ntimeout = 30", "timeout cannot be set per request"),
        ("[endpoints.local]\napi_key_env = 'X'", "needs base_url"),
        ("[endpoints.local]\nbase_url = '127.0.0.1:8080/v1'", "is not an http:// or https:// URL"),
        ("[endpoints.local]\nbase_url = 'http://[::1/v1'", "'http://[::1/v1' is not a valid URL"),
        ("[endpoints.openai]\napi_key = 'sk-123'", "a key never goes in a file"),
        ("[endpoints.openai]\napi_key_env = 'not a name'", "api_key_env must be the name"),
        ("[prices.offline]\ninput = 1", "give output = USD per million tokens"),
        ("[prices.offline]\ninput = -1\noutput = 1", "input must not be negative"),
        ("[secrets]\npatterns = ['(']", "pattern '(' is not a regular expression"),
        ("[models", "is not valid TOML"),
    ],
)
def test_a_wrong_configuration_names_the_file_the_key_and_what_to_write(
    text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_toml(text)
    assert message in str(caught.value)
    assert "hubspoke.toml" in str(caught.value)


def test_connections_come_from_endpoints_then_the_standard_variables() -> None:
    config = Config.from_toml(
        FULL, environ={"OPENAI_BASE_URL": "http://ignored/v1", "ANTHROPIC_BASE_URL": "http://a/v1"}
    )
    openai = config.connection(parse_binding("openai-chat:gpt-6-luna"))
    anthropic = config.connection(parse_binding("anthropic:claude-haiku-4-5"))
    local = config.connection(parse_binding("openai-compatible:smollm2@local"))
    same_url = config.connection(parse_binding("openai-compatible:m@http://127.0.0.1:8080/v1/"))
    other = config.connection(parse_binding("openai-compatible:m@http://127.0.0.1:9/v1"))

    assert openai is not None and anthropic is not None and local is not None
    assert (openai.base_url, openai.key_env, openai.probe) == (
        "https://proxy.example.com/v1",
        "COMPANY_OPENAI_KEY",
        True,
    )
    assert (anthropic.base_url, anthropic.base_url_from, anthropic.key_env) == (
        "http://a/v1",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_API_KEY",
    )
    assert (local.base_url, local.key_env) == ("http://127.0.0.1:8080/v1", "LOCAL_LLM_KEY")
    assert same_url is not None and same_url.key_env == "LOCAL_LLM_KEY"
    assert other is not None and other.key_env is None  # never OPENAI_API_KEY
    plain = Config().connection(parse_binding("openai:gpt-6-luna"))
    assert plain is not None
    assert (plain.base_url, plain.key_env, plain.probe) == (None, "OPENAI_API_KEY", False)
    with pytest.raises(ConfigError, match=r"\[endpoints.nowhere\], which hubspoke.toml does not"):
        config.connection(parse_binding("openai-compatible:m@nowhere"))


# clients -----------------------------------------------------------------------------------------


def test_clients_are_built_with_no_sdk_retries_and_the_configured_url_and_key() -> None:
    from anthropic import AsyncAnthropic
    from pydantic_ai.models.anthropic import AnthropicModel
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel

    environ = {
        "COMPANY_OPENAI_KEY": "sk-company",
        "ANTHROPIC_API_KEY": "sk-ant",
        "OPENAI_API_KEY": "sk-openai",
    }
    config = Config.from_toml(FULL, environ=environ)
    responses = build_model(parse_binding("openai:gpt-6-luna"), config)
    chat = build_model(parse_binding("openai-chat:gpt-6-luna"), config)
    anthropic = build_model(parse_binding("anthropic:claude-haiku-4-5"), config)
    compatible = build_model(parse_binding("openai-compatible:m@http://127.0.0.1:9/v1"), config)

    assert isinstance(responses, OpenAIResponsesModel) and isinstance(chat, OpenAIChatModel)
    assert isinstance(anthropic, AnthropicModel) and isinstance(compatible, OpenAIChatModel)
    for model, url, key in [
        (responses, "https://proxy.example.com/v1/", "sk-company"),
        (chat, "https://proxy.example.com/v1/", "sk-company"),
        (compatible, "http://127.0.0.1:9/v1/", "no-key-set"),  # OPENAI_API_KEY is not sent
    ]:
        assert isinstance(model, OpenAIChatModel | OpenAIResponsesModel)
        assert (str(model.client.base_url), model.client.api_key, model.client.max_retries) == (
            url,
            key,
            0,
        )
    assert compatible.system == "openai-compatible"
    client = anthropic.client
    assert isinstance(client, AsyncAnthropic)
    assert (str(client.base_url), client.api_key, client.max_retries) == (
        "https://api.anthropic.com",
        "sk-ant",
        0,
    )


# before a run ------------------------------------------------------------------------------------


async def test_a_missing_key_stops_the_run_before_anything_is_written(store: SQLiteStore) -> None:
    config = Config(environ={"OPENAI_API_KEY": ""})  # set but empty counts as missing
    foreman = Foreman(two_agents("openai:gpt-6-luna"), store, config=config)

    with pytest.raises(ModelSetupError) as caught:
        await foreman.run({"topic": "tea"})

    (problem,) = caught.value.problems
    assert problem.startswith("OPENAI_API_KEY is not set (role 'writer': openai:gpt-6-luna")
    assert store.runs(10) == []


async def test_an_endpoints_own_key_variable_is_the_one_named(store: SQLiteStore) -> None:
    config = Config.from_toml(FULL, environ={"OPENAI_API_KEY": "sk-not-this-one"})
    override = {"writer": "openai:gpt-6-luna", "reader": "offline"}
    foreman = Foreman(two_agents(), store, config=config, model=override)
    with pytest.raises(ModelSetupError, match="COMPANY_OPENAI_KEY is not set"):
        await foreman.run({"topic": "tea"})


async def test_an_unreachable_server_stops_the_run_naming_its_url(store: SQLiteStore) -> None:
    url = f"http://127.0.0.1:{refused_port()}/v1"
    foreman = Foreman(two_agents(f"openai-compatible:m@{url}"), store, config=Config())

    with pytest.raises(ModelSetupError) as caught:
        await foreman.run({"topic": "tea"})

    assert caught.value.problems == [
        f"cannot reach {url} (connection refused: GET {url}/models; role 'writer': "
        f"openai-compatible:m@{url} (from card)): start the server, or fix the URL"
    ]
    assert store.runs(10) == []


def test_a_servers_url_variable_that_does_not_parse_is_a_config_error_naming_it() -> None:
    config = Config.from_toml("", environ={"OPENAI_BASE_URL": "http://[::1/v1"})
    with pytest.raises(ConfigError, match=r"OPENAI_BASE_URL: 'http://\[::1/v1' is not a valid"):
        config.connection(parse_binding("openai:gpt-6-luna"))


def test_credentials_in_a_servers_url_are_sent_as_basic_auth() -> None:
    # urllib takes `user:password@127.0.0.1` for the host name ("unknown host"): the probe
    # strips them from the URL and sends them as the SDKs' client does, as basic auth.
    seen: list[tuple[str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        url = f"http://us%40er:pa55word-xyz@127.0.0.1:{httpd.server_address[1]}/v1"
        try:
            assert probe_urls([url]) == {url: None}
        finally:
            httpd.shutdown()
            thread.join()
    basic = base64.b64encode(b"us@er:pa55word-xyz").decode()
    assert seen == [("/v1/models", f"Basic {basic}")]


async def test_a_refusal_shows_no_password_of_a_servers_url(store: SQLiteStore) -> None:
    url = f"http://user:pa55word-xyz@127.0.0.1:{refused_port()}/v1"
    foreman = Foreman(two_agents(f"openai-compatible:m@{url}"), store, config=Config())

    with pytest.raises(ModelSetupError) as caught:
        await foreman.run({"topic": "tea"})

    [problem] = caught.value.problems
    shown = url.replace("pa55word-xyz", "***")
    assert problem.startswith(f"cannot reach {shown} (connection refused: GET {shown}/models; ")
    assert f"openai-compatible:m@{shown} (from card)" in problem
    assert "pa55word" not in str(caught.value)


def test_any_http_answer_means_the_server_is_there() -> None:
    from tests import wire

    with wire.serve("chat", []) as server:  # answers GET /models with 501
        assert probe_urls([server.url]) == {server.url: None}


async def test_every_agent_role_counts_even_one_never_dispatched(store: SQLiteStore) -> None:
    url = f"http://127.0.0.1:{refused_port()}/v1"
    wf = two_agents(fallback="spare", spare=f"openai-compatible:m@{url}")
    foreman = Foreman(wf, store, config=Config())
    with pytest.raises(ModelSetupError, match=r"role 'spare'"):
        await foreman.run({"topic": "tea"})


# prices and USD budgets --------------------------------------------------------------------------


def fn_model(name: str = "local") -> FunctionModel:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("final_result", {"text": "done"})])

    return FunctionModel(respond, model_name=name)


@pytest.mark.parametrize(
    ("budgets", "why"),
    [
        ({"run": Budget(usd=1.0)}, "the run's budget (usd=1)"),
        ({"budget": Budget(usd=0.1)}, "role 'writer''s budget (usd=0.1)"),
        ({"run_budget": Budget(usd=0.5)}, "role 'writer''s run_budget (usd=0.5)"),
    ],
)
async def test_a_usd_budget_over_an_unpriced_model_is_refused_before_any_event(
    store: SQLiteStore, budgets: dict[str, Budget], why: str
) -> None:
    run_budget = budgets.pop("run", None)
    card: dict[str, Any] = dict(budgets)
    wf = two_agents("local", **card)
    foreman = Foreman(wf, store, models={"local": fn_model()}, config=Config())

    with pytest.raises(ModelSetupError) as caught:
        await foreman.run({"topic": "tea"}, budget=run_budget)

    (problem,) = caught.value.problems
    assert problem.startswith(f"local has no known price, and a USD limit covers it ({why}: ")
    assert (
        '[prices."local"] input = ...' in problem
        and "HUBSPOKE_PRICES='local=INPUT/OUTPUT'" in problem
    )
    assert store.runs(10) == []


async def test_priced_by_configuration_the_same_run_goes_ahead(store: SQLiteStore) -> None:
    config = Config(environ={"HUBSPOKE_PRICES": "local=1/2"}, env_prices={"local": Price(1, 2)})
    foreman = Foreman(two_agents("local"), store, models={"local": fn_model()}, config=config)
    result = await foreman.run({"topic": "tea"}, budget=Budget(usd=1.0))
    assert result.status == "completed"
    assert result.state.usage_by_role["writer"].usd > 0


async def test_an_unpriced_model_without_a_usd_budget_runs_and_its_cost_is_unknown(
    store: SQLiteStore,
) -> None:
    foreman = Foreman(two_agents("local"), store, models={"local": fn_model()}, config=Config())
    result = await foreman.run({"topic": "tea"})
    assert result.status == "completed"
    record = store.run(result.run_id)
    assert record is not None
    assert record.options["models"]["writer"]["price"] is None


def test_the_shipped_price_table_loads_with_its_version() -> None:
    shipped = shipped_prices()
    assert shipped.source.startswith("prices.toml 20")
    assert shipped.prices["anthropic:claude-haiku-4-5"] == Price(1.0, 5.0, 0.10)
    assert shipped.prices["openai:gpt-6-sol"] == Price(2.0, 10.0, 0.20)
    assert all(p.input_per_mtok > 0 and p.output_per_mtok > 0 for p in shipped.prices.values())


def test_cached_input_is_charged_its_own_price_or_the_input_price() -> None:
    priced = Price(2.0, 10.0, 0.2)
    assert priced.usd(1_000_000, 0, cached_input_tokens=400_000) == pytest.approx(1.2 + 0.08)
    assert Price(2.0, 10.0).usd(1_000_000, 100_000, cached_input_tokens=400_000) == pytest.approx(
        3.0
    )


def test_prices_are_looked_up_source_first_then_as_openai_then_by_family(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(_SET, "openai:gpt-6-sol", Price(9, 9))
    config = Config.from_toml(
        '[prices."openai:gpt-6-luna"]\ninput = 3\noutput = 4\n'
        "[prices.anthropic]\ninput = 5\noutput = 6",
        environ={"HUBSPOKE_PRICES": "openai-compatible=0/0,openai:gpt-6-luna=7/8/1"},
    )

    def found(binding: str) -> tuple[Price, str] | None:
        priced = config.price(binding)
        return None if priced is None else (priced.price, priced.source)

    assert found("openai:gpt-6-luna") == (Price(7, 8, 1), "HUBSPOKE_PRICES")
    assert found("openai-chat:gpt-6-luna") == (Price(7, 8, 1), "HUBSPOKE_PRICES")
    assert found("openai-compatible:smollm2@http://127.0.0.1:8080/v1") == (
        Price(0, 0),
        "HUBSPOKE_PRICES",
    )
    assert found("anthropic:claude-haiku-4-5") == (Price(5, 6), "hubspoke.toml")  # the family
    assert found("openai:gpt-6-sol") == (Price(9, 9), "set_price")
    assert found("openai:gpt-6-astra") == (Price(10, 50, 1), shipped_prices().source)
    assert found("openai:no-such-model") is None


def test_price_for_reads_the_family_form_of_hubspoke_prices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    binding = "openai-compatible:smollm2@http://127.0.0.1:8080/v1"
    assert price_for(binding) is None  # unknown, not $0
    monkeypatch.setenv("HUBSPOKE_PRICES", "openai-compatible=0.1/0.2")
    assert price_for(binding) == Price(0.1, 0.2)
    monkeypatch.setenv("HUBSPOKE_PRICES", "openai-compatible=cheap")
    with pytest.raises(
        ConfigError, match="'openai-compatible=cheap' is not 'BINDING=INPUT/OUTPUT'"
    ):
        price_for(binding)


def test_set_price_prices_a_family() -> None:
    try:
        set_price("openai-compatible", Price(0.5, 0.5))
        found = lookup_price("openai-compatible:m@http://h/v1")
        assert found is not None and found.price == Price(0.5, 0.5)
    finally:
        _SET.pop("openai-compatible", None)


# per-request settings ----------------------------------------------------------------------------


def recording(seen: list[dict[str, Any]]) -> FunctionModel:
    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        seen.append(dict(info.model_settings or {}))
        return ModelResponse(parts=[ToolCallPart("final_result", {"text": "done"})])

    return FunctionModel(respond, model_name="recorder")


async def test_the_cards_and_the_configurations_settings_reach_every_request(
    store: SQLiteStore,
) -> None:
    seen: list[dict[str, Any]] = []
    wf = two_agents("recorder", model_settings={"max_tokens": 300, "temperature": 0.1, "seed": 7})
    config = Config.from_toml(
        "[models.settings]\ntemperature = 0.5\nstop_sequences = ['END']\n"
        "[models.settings.writer]\nmax_tokens = 200\n"
        "[models.settings.reader]\ntop_p = 0.9"
    )
    foreman = Foreman(
        wf, store, models={"recorder": recording(seen)}, model={"reader": "recorder"}, config=config
    )

    result = await foreman.run({"topic": "tea"})

    assert result.status == "completed"
    assert seen == [
        {"max_tokens": 200, "temperature": 0.5, "seed": 7, "stop_sequences": ["END"]},  # writer
        {"temperature": 0.5, "stop_sequences": ["END"], "top_p": 0.9, "max_tokens": 1024},
    ]


@pytest.mark.parametrize(("max_tokens", "outcome"), [(None, "budget_refused"), (50, "output")])
async def test_max_tokens_is_the_output_part_of_the_worst_case_a_request_reserves(
    store: SQLiteStore, max_tokens: int | None, outcome: str
) -> None:
    # About 300 tokens of prompt: with the default 1,024 tokens of output the request does not
    # fit a 1,000-token dispatch; with 50 it does.
    settings = None if max_tokens is None else {"max_tokens": max_tokens}
    wf = two_agents("recorder", model_settings=settings, budget=Budget(tokens=1000), max_attempts=1)
    result = await Foreman(wf, store, models={"recorder": recording([])}, config=Config()).run(
        {"topic": "tea"}
    )
    finished = [
        e.data["outcome"]
        for e in store.events(result.run_id)
        if e.kind is EventKind.DISPATCH_FINISHED and e.role == "writer"
    ]
    assert finished == [outcome]


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"max_tokens": 0}, "max_tokens must be at least 1"),
        ({"temprature": 0.2}, "unknown setting 'temprature'"),
        ({"tool_choice": "auto"}, "tool_choice cannot be set per request"),
        ({"stop_sequences": "END"}, "stop_sequences must be a list of strings"),
    ],
)
def test_wrong_settings_on_a_card_are_refused_at_check(
    settings: dict[str, Any], problem: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        two_agents(model_settings=settings).check()
    assert (caught.value.where, caught.value.field) == ("role 'writer'", "model_settings")
    assert problem in caught.value.problem


def test_settings_on_a_function_role_are_refused() -> None:
    role = Role(
        name="summariser",
        purpose="Sum up.",
        input=Notes,
        output=Summary,
        function=summarise,
        model_settings={"max_tokens": 10},
    )
    with pytest.raises(DefinitionError, match="calls no model of its own"):
        role.check()


def test_usd_limits_reach_the_roles_of_sub_workflows() -> None:
    inner = two_agents()
    capped = Workflow(
        name="capped",
        input=Topic,
        roles=[
            inner.as_role(name="inner", purpose="Run it.", output=Summary, budget=Budget(usd=0.2)),
            Role(name="writer", purpose="Write.", input=Summary, output=Summary),
        ],
        phases=[
            Phase(name="inner", role="inner", input=lambda run: run.input),
            Phase(name="write", role="writer", input=lambda run: run.output("inner")),
        ],
    )
    why = "role 'inner''s budget (usd=0.2)"
    assert capped.usd_limited() == {"inner/writer": why, "inner/reader": why}
    run = "the run's budget (usd=1)"
    assert capped.usd_limited(Budget(usd=1.0)) == {
        "inner/writer": run,
        "inner/reader": run,
        "writer": run,
    }


async def test_the_offline_model_answers_as_pydantic_ais_function_model_would() -> None:
    # `OfflineModel.request` skips what only a user's function reads (`AgentInfo`) and
    # pydantic-ai's per-request download budget: its answer is still FunctionModel's.
    from pydantic_ai.messages import ModelRequest, SystemPromptPart, UserPromptPart
    from pydantic_ai.models import ModelRequestParameters

    from hubspoke.models.offline import OfflineModel, Turn

    def player(turn: Turn) -> Any:
        return answer({"echo": turn.input, "attempt": turn.attempt})

    model = OfflineModel({"w": player})
    messages: list[ModelMessage] = [
        ModelRequest(
            parts=[
                SystemPromptPart('You are the specialist "w". Echo.'),
                UserPromptPart('{"input":{"a":"é"},"attempt":2}'),
            ]
        )
    ]
    params = ModelRequestParameters(output_mode="tool", allow_text_output=False)
    ours = await model.request(messages, {"max_tokens": 50}, params)
    theirs = await FunctionModel.request(model, messages, {"max_tokens": 50}, params)
    assert isinstance(ours, ModelResponse)
    assert (
        (ours.model_name, ours.usage)
        == (theirs.model_name, theirs.usage)
        == ("offline", ours.usage)
    )
    assert [(p.tool_name, p.args) for p in ours.parts if isinstance(p, ToolCallPart)] == [
        (p.tool_name, p.args) for p in theirs.parts if isinstance(p, ToolCallPart)
    ]
    assert ours.usage.input_tokens > 1 and ours.usage.output_tokens > 1
