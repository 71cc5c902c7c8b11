"""Tracing switched on and pointed by the standard `OTEL_*` variables (`hubspoke.tracing._setup`),
end to end: the CLI, in a subprocess, sends the sales demo's spans over OTLP/HTTP (protobuf) to
a collector endpoint the test runs on 127.0.0.1, and they form the run's tree with its totals."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from hubspoke import ConfigError, Foreman, SQLiteStore
from hubspoke.examples.sales import DEMO_INPUT, workflow
from hubspoke.journal import RunState
from hubspoke.tracing import tracer_for, tracing_wanted

ROOT = Path(__file__).resolve().parents[1]


# a collector -------------------------------------------------------------------------------------


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    return None if which is None else getattr(value, which)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


@dataclass
class Received:
    """A span as the collector decoded it."""

    name: str
    span_id: bytes
    parent_span_id: bytes
    trace_id: bytes
    kind: int
    start: int
    end: int
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class Collector:
    """An OTLP/HTTP trace receiver, as a collector's: POST /v1/traces with a protobuf body
    (``application/x-protobuf``, maybe gzip), answered with an `ExportTraceServiceResponse`;
    any other path is 404 and any other content type 415."""

    url: str = ""
    spans: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    posts: int = 0


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path != "/v1/traces":
                return self._answer(404, f"no {self.path}")
            if self.headers.get("Content-Type") != "application/x-protobuf":
                return self._answer(415, f"content type {self.headers.get('Content-Type')}")
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            with lock:
                found.posts += 1
                for resource_spans in request.resource_spans:
                    resource = _attributes(resource_spans.resource.attributes)
                    for scope in resource_spans.scope_spans:
                        for s in scope.spans:
                            found.spans.append(
                                Received(
                                    s.name,
                                    s.span_id,
                                    s.parent_span_id,
                                    s.trace_id,
                                    s.kind,
                                    s.start_time_unix_nano,
                                    s.end_time_unix_nano,
                                    _attributes(s.attributes),
                                    resource,
                                )
                            )
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def _answer(self, status: int, why: str) -> None:
            with lock:
                found.refused.append(why)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _hubspoke(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh process, with only these `OTEL_*` variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-m", "hubspoke.cli", *args],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT / "src"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


# end to end --------------------------------------------------------------------------------------


def test_the_cli_sends_the_runs_tree_to_a_collector_named_by_the_variables(
    collector: Collector, tmp_path: Path
) -> None:
    db = tmp_path / "j.db"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_SERVICE_NAME": "sales-test"}
    done = _hubspoke("demo", "sales", "--db", str(db), "--json", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # spans go to the collector: stdout holds the summary
    assert collector.refused == [] and collector.posts >= 1
    spans = collector.spans

    # One trace, one root, every parent received: the tree a backend shows.
    ids = {s.span_id: s for s in spans}
    assert len(ids) == len(spans)
    assert {s.trace_id for s in spans} == {spans[0].trace_id}
    roots = [s for s in spans if not s.parent_span_id]
    assert [r.name for r in roots] == ["invoke_workflow sales"]
    assert all(not s.parent_span_id or s.parent_span_id in ids for s in spans)
    assert all(s.resource.get("service.name") == "sales-test" for s in spans)
    root = roots[0]
    assert root.attributes["hubspoke.run_id"] == summary["run_id"]
    assert root.attributes["hubspoke.status"] == "waiting"

    # The same totals as the journal, by dispatch and by model request.
    store = SQLiteStore(db, read_only=True)
    state = RunState.fold(summary["run_id"], store.events(summary["run_id"]))
    store.close()
    usage = state.usage
    agents = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "invoke_agent"]
    chats = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert agents and chats
    for group in (agents, chats):
        assert sum(s.attributes["gen_ai.usage.input_tokens"] for s in group) == usage.input_tokens
        assert sum(s.attributes["gen_ai.usage.output_tokens"] for s in group) == (
            usage.output_tokens
        )
        cost = sum(s.attributes["hubspoke.usage.usd"] for s in group)
        assert cost == pytest.approx(usage.usd, abs=1e-9)
    assert usage.input_tokens == summary["usage"]["input_tokens"]
    for chat in chats:  # under its dispatch, named by its model, a client span
        parent = ids[chat.parent_span_id]
        assert parent.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert chat.name == "chat offline" and chat.kind == 3  # SPAN_KIND_CLIENT
        assert chat.attributes["gen_ai.request.model"] == "offline"
        assert chat.attributes["gen_ai.provider.name"] == "function"
    for agent in agents:
        assert ids[agent.parent_span_id].name == f"phase {agent.attributes['hubspoke.phase']}"
        assert ids[ids[agent.parent_span_id].parent_span_id] is root


def test_the_signal_endpoint_is_used_as_it_is(collector: Collector, tmp_path: Path) -> None:
    """``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is the full URL (no ``/v1/traces`` added)."""
    env = {
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{collector.url}/v1/traces",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"{collector.url}/elsewhere",
    }
    done = _hubspoke("demo", "sales", "--db", str(tmp_path / "j.db"), "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert collector.refused == [] and collector.spans


@pytest.mark.parametrize(
    ("env", "flag"),
    [
        ({"OTEL_TRACES_EXPORTER": "none"}, None),
        ({"OTEL_SDK_DISABLED": "TRUE"}, None),
        ({}, "--no-otel"),  # the option wins over the variables
    ],
)
def test_the_variables_or_the_option_turn_it_off(
    collector: Collector, tmp_path: Path, env: dict[str, str], flag: str | None
) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, **env}
    args = ["demo", "sales", "--db", str(tmp_path / "j.db"), "--json"]
    done = _hubspoke(*args, *([flag] if flag else []), env=env)
    assert done.returncode == 0, done.stderr
    assert collector.posts == 0 and collector.refused == []


def test_the_option_turns_it_on_and_the_variables_say_where(
    collector: Collector, tmp_path: Path
) -> None:
    env = {
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{collector.url}/v1/traces",
    }
    done = _hubspoke("demo", "sales", "--db", str(tmp_path / "j.db"), "--json", "--otel", env=env)
    assert done.returncode == 0, done.stderr
    assert any(s.name == "invoke_workflow sales" for s in collector.spans)


def test_the_console_exporter_writes_to_stderr_in_the_cli(tmp_path: Path) -> None:
    env = {"OTEL_TRACES_EXPORTER": "console"}
    done = _hubspoke("demo", "sales", "--db", str(tmp_path / "j.db"), "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "waiting"
    assert '"name": "invoke_workflow sales"' in done.stderr
    assert '"name": "chat offline"' in done.stderr


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER='zipkin'"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL='grpc'",
        ),
        (
            {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json", "OTEL_TRACES_EXPORTER": "otlp"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL='http/json'",
        ),
        ({"OTEL_SDK_DISABLED": "true", "--otel": ""}, "OTEL_SDK_DISABLED=true"),
    ],
)
def test_a_variable_hubspoke_cannot_honour_is_a_usage_error(
    tmp_path: Path, env: dict[str, str], says: str
) -> None:
    flags = ["--otel"] if env.pop("--otel", None) is not None else []
    done = _hubspoke("demo", "sales", "--db", str(tmp_path / "j.db"), *flags, env=env)
    assert done.returncode == 2
    assert says in done.stderr


def test_without_the_sdk_the_cli_and_the_foreman_name_the_extra(tmp_path: Path) -> None:
    """A `sitecustomize` hides the OpenTelemetry SDK from the fresh process, as if the extra
    were not installed (the API comes with pydantic-ai)."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\nsys.modules['opentelemetry.sdk'] = None\n"
        "sys.modules['opentelemetry.exporter'] = None\n"
    )
    env = {"OTEL_TRACES_EXPORTER": "otlp"}
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    path = os.pathsep.join([str(hide), str(ROOT / "src"), str(ROOT)])
    done = subprocess.run(
        [sys.executable, "-m", "hubspoke.cli", "demo", "sales", "--db", str(tmp_path / "j.db")],
        env={**clean, "PYTHONPATH": path, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "pip install 'hubspoke[otel]'" in done.stderr and "--no-otel" in done.stderr
    code = (
        "from hubspoke import Foreman, SQLiteStore\n"
        "from hubspoke.examples.sales import workflow\n"
        "try:\n"
        "    Foreman(workflow, SQLiteStore(':memory:'), tracing=True)\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "pip install 'hubspoke[otel]'" in shown.stdout, shown.stderr


# the rules, in process ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "option", "wanted"),
    [
        ({}, None, False),  # off by default
        ({"OTEL_SERVICE_NAME": "x"}, None, False),  # naming the service asks for nothing
        ({"OTEL_TRACES_EXPORTER": "otlp"}, None, True),
        ({"OTEL_TRACES_EXPORTER": " Console , otlp "}, None, True),
        ({"OTEL_TRACES_EXPORTER": ""}, None, False),  # empty is unset
        ({"OTEL_TRACES_EXPORTER": "otlp,none"}, None, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, None, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, None, True),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "True"},
            None,
            False,
        ),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "yes"}, None, True),  # not "true"
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "x"}, None, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, False, False),  # the option wins
        ({"OTEL_TRACES_EXPORTER": "none"}, True, True),
    ],
)
def test_when_a_run_is_traced(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], option: bool | None, wanted: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing_wanted(option) is wanted


def test_a_boolean_variable_that_is_neither_true_nor_false_is_false_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "1")
    with caplog.at_level("WARNING", logger="hubspoke.tracing"):
        assert tracing_wanted() is True
    assert "OTEL_SDK_DISABLED='1' is read as false" in caplog.text


def test_the_foreman_option_and_the_variables(
    monkeypatch: pytest.MonkeyPatch, store: SQLiteStore
) -> None:
    assert Foreman(workflow, store).tracer is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    foreman = Foreman(workflow, store)
    assert foreman.tracer is not None and foreman.tracer in foreman.listeners
    # Foremen with the same settings share one provider (each runs a batch thread).
    again = Foreman(workflow, store).tracer
    assert again is not None and again.provider is foreman.tracer.provider
    assert Foreman(workflow, store, tracing=False).tracer is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(ConfigError, match="OTEL_TRACES_EXPORTER='jaeger'"):
        Foreman(workflow, store)


def test_a_provider_given_is_where_the_spans_go(store: SQLiteStore) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = tracer_for(provider)
    assert tracer is not None and tracer.provider is provider
    import asyncio

    result = asyncio.run(Foreman(workflow, store, tracing=provider).run(DEMO_INPUT))
    names = [s.name for s in exporter.get_finished_spans()]
    assert "invoke_workflow sales" in names and result.status == "waiting"
