"""A tiny OpenAI-compatible provider on 127.0.0.1, for tests that go through a real HTTP client.

`serve(answer)` starts a threaded stdlib HTTP server whose `/v1/chat/completions` calls
`answer(request_body, headers)` (header names in lower case) for `(status, payload)`. Bind a
role to it with ``model=f"openai-compatible:MODEL@{url}"``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[dict[str, Any], Mapping[str, str]], tuple[int, dict[str, Any]]]


def completion(model: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A chat completion whose answer is one tool call with JSON arguments."""
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": tool, "arguments": json.dumps(arguments)},
    }
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
            }
        ],
        "usage": {"prompt_tokens": 40, "completion_tokens": 10, "total_tokens": 50},
    }


def work_of(body: dict[str, Any]) -> dict[str, Any]:
    """The work item the agent loop sent (its user prompt is the item as JSON)."""
    user = next(m for m in body["messages"] if m["role"] == "user")
    work: dict[str, Any] = json.loads(user["content"])
    return work


@contextmanager
def serve(answer: Answer) -> Iterator[str]:
    """Run the server for the duration of the block; yields its base URL (``.../v1``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path != "/v1/chat/completions":
                status, payload = 404, {"error": {"message": f"no route {self.path}"}}
            else:
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, payload = answer(body, headers)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
