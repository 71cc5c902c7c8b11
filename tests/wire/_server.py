"""The scripted server: a stdlib threaded HTTP server on 127.0.0.1, one wire format each."""

from __future__ import annotations

import itertools
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, runtime_checkable

import pydantic_ai.models
import pytest

from tests.wire._replies import Answer, Drop, Fault, Reply, Slow
from tests.wire._request import Format, Refusal, Request

Script = Sequence[Reply] | Callable[[Request], Reply]
"""Replies consumed in order, or a function from each accepted request to its reply."""

API_KEY = "sk-wire-test-0123456789"
"""The fake key `Server.env` sets; the servers require one, as the providers do."""


class WireFormat(Protocol):
    """What a wire format gives the server: its route, how to read and check a request, how
    to render an answer and an error."""

    name: Format
    path: str

    def read(self, request: Request) -> None:
        """Fill `request`'s normalised fields from its body; raise `Refusal` for what the real
        provider refuses."""

    def render(self, answer: Answer, request: Request, new_id: Callable[[str], str]) -> Any:
        """The 200 body for `answer`."""

    def error_body(self, status: int, message: str, kind: str | None) -> Any:
        """The provider's error body for `status` (its default error type when `kind` is
        `None`)."""


@runtime_checkable
class StreamingWireFormat(WireFormat, Protocol):
    """A format that also answers ``stream: true`` requests, as server-sent events."""

    def render_stream(
        self, answer: Answer, request: Request, new_id: Callable[[str], str]
    ) -> list[tuple[str, Any]]:
        """The events for `answer`: ``(event name, JSON data)`` pairs, in order."""


class Server:
    """A running scripted server. Read `url`, `binding(model)`, `env`, `requests`."""

    def __init__(self, wire: WireFormat, script: Script, port: int) -> None:
        self.wire = wire
        self.format: Format = wire.name
        self.url = f"http://127.0.0.1:{port}/v1"
        """The base URL, ending in ``/v1``."""
        self.requests: list[Request] = []
        """Every request received, in arrival order, refused ones too."""
        self.failures: list[str] = []
        """What went wrong on the test's side: requests past the end of a scripted list, a
        script function that raised, a route or streaming request the double does not speak."""
        self._script = script
        self._next = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.closing = threading.Event()

    @property
    def env(self) -> dict[str, str]:
        """The environment the SDK clients read: the base URL and a fake key (set each with
        ``monkeypatch.setenv``)."""
        if self.format == "anthropic":
            return {
                "ANTHROPIC_BASE_URL": self.url.removesuffix("/v1"),
                "ANTHROPIC_API_KEY": API_KEY,
            }
        return {"OPENAI_BASE_URL": self.url, "OPENAI_API_KEY": API_KEY}

    def connect(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Set `env` for the test and let pydantic-ai's model requests through (to this server:
        the conftest blocks them otherwise). Build the foreman after this: the SDK clients
        read the environment when the model is resolved."""
        for name, value in self.env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(pydantic_ai.models, "ALLOW_MODEL_REQUESTS", True)

    def binding(self, model: str) -> str:
        """The binding string that reaches this server for `model`: ``openai-compatible:
        MODEL@URL`` (chat), ``openai:MODEL`` (responses) or ``anthropic:MODEL``; the last two
        need `env` set."""
        if self.format == "chat":
            return f"openai-compatible:{model}@{self.url}"
        if self.format == "responses":
            return f"openai:{model}"
        return f"anthropic:{model}"

    def new_id(self, prefix: str) -> str:
        """A fresh id, unique on this server: ``call_3``, ``toolu_4``..."""
        return f"{prefix}_{next(self._ids)}"

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def fail(self, why: str) -> str:
        with self._lock:
            self.failures.append(why)
        return why

    def reply_for(self, request: Request) -> Reply | str:
        """The scripted reply for an accepted request, or why there is none."""
        if callable(self._script):
            try:
                return self._script(request)
            except Exception as e:
                return self.fail(f"the script raised on request #{len(self.requests)}: {e!r}")
        with self._lock:
            n = self._next
            self._next += 1
        if n >= len(self._script):
            return self.fail(
                f"request #{n + 1} came after the script's {len(self._script)} replies "
                f"(model {request.model!r})"
            )
        return self._script[n]


def _handler(server: Server) -> type[BaseHTTPRequestHandler]:
    wire = server.wire
    streaming = wire if isinstance(wire, StreamingWireFormat) else None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            headers = {k.lower(): v for k, v in self.headers.items()}
            request = Request(wire.name, body, headers, path=self.path)
            server.record(request)
            if self.path != wire.path:
                why = server.fail(f"POST {self.path}: this {wire.name} server serves {wire.path}")
                self._send(request, 404, wire.error_body(404, why, None))
                return
            try:
                if not isinstance(body, dict):
                    raise Refusal(
                        "We could not parse the JSON body of your request: expected an object."
                    )
                wire.read(request)
            except Refusal as e:
                request.refused = e.message
                self._send(request, e.status, wire.error_body(e.status, e.message, e.kind))
                return
            if body.get("stream") and streaming is None:
                why = server.fail(f"a streaming request: this {wire.name} double answers JSON only")
                self._send(request, 500, wire.error_body(500, why, None))
                return
            reply = server.reply_for(request)
            if isinstance(reply, str):
                self._send(request, 500, wire.error_body(500, f"wire double: {reply}", None))
                return
            self._answer(request, reply)

        def _answer(self, request: Request, reply: Reply) -> None:
            if isinstance(reply, Slow):
                if self._wait(reply.seconds):
                    self._answer(request, reply.reply)
                else:
                    request.cancelled = self._hung_up(0)
                return
            if isinstance(reply, Drop):
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if isinstance(reply, Fault):
                body = reply.body
                if body is None:
                    body = wire.error_body(reply.status, _REASONS.get(reply.status, "error"), None)
                extra = {}
                if reply.retry_after is not None:
                    seconds = reply.retry_after
                    extra["Retry-After"] = str(int(seconds) if seconds == int(seconds) else seconds)
                self._send(request, reply.status, body, extra)
                return
            if request.body.get("stream") and streaming is not None:
                self._send_events(request, streaming.render_stream(reply, request, server.new_id))
            else:
                self._send(request, 200, wire.render(reply, request, server.new_id))

        def _wait(self, seconds: float) -> bool:
            """Sleep `seconds`, watching the connection: False if the client hung up first or
            the server is closing."""
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                if server.closing.is_set():
                    return False
                if self._hung_up(min(left, 0.02)):
                    return False
            return True

        def _hung_up(self, timeout: float) -> bool:
            """Whether the client closed its end, waiting up to `timeout` seconds to see."""
            try:
                readable, _, _ = select.select([self.connection], [], [], timeout)
                return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
            except OSError:
                return True

        def _send(
            self, request: Request, status: int, body: Any, headers: dict[str, str] | None = None
        ) -> None:
            request.status = status
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client hung up first
                request.cancelled = True

        def _send_events(self, request: Request, events: list[tuple[str, Any]]) -> None:
            """Server-sent events, then close (HTTP/1.0: the end of the body is the close)."""
            request.status = 200
            try:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for name, data in events:
                    self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            except OSError:
                request.cancelled = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


_REASONS = {
    400: "bad request",
    401: "invalid api key",
    404: "not found",
    429: "rate limited: too many requests",
    500: "the server had an error while processing your request",
    502: "bad gateway",
    503: "the engine is currently overloaded, please try again later",
    529: "overloaded",
}


class _HTTPServer(ThreadingHTTPServer):
    # Closing joins the handler threads (a `slow` one stops waiting when the server closes),
    # so every request's `status` and `cancelled` are final once `serve` returns.
    daemon_threads = False
    block_on_close = True


@contextmanager
def run(wire: WireFormat, script: Script, *, strict: bool = True) -> Iterator[Server]:
    """Run a server for `wire` for the duration of the block (see `tests.wire.serve`)."""
    if not callable(script):
        script = list(script)
    http = _HTTPServer(("127.0.0.1", 0), _handler_stub())
    server = Server(wire, script, http.server_address[1])
    http.RequestHandlerClass = _handler(server)
    # A short poll: closing the server waits for the loop to see it.
    thread = threading.Thread(
        target=http.serve_forever, args=(0.02,), name=f"wire-{wire.name}", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.closing.set()
        http.shutdown()
        http.server_close()
        thread.join()
    problems = list(server.failures)
    if strict:
        problems += [
            f"request #{i} refused ({r.status}): {r.refused}"
            for i, r in enumerate(server.requests, 1)
            if r.refused is not None
        ]
    if problems:
        raise AssertionError(f"the {wire.name} wire double saw: " + "; ".join(problems))


def _handler_stub() -> type[BaseHTTPRequestHandler]:
    return BaseHTTPRequestHandler
