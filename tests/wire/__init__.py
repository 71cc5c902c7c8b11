"""Scripted providers that speak the real wire formats, and refuse what the real ones refuse.

Each server is a stdlib `ThreadingHTTPServer` on 127.0.0.1 (a free port), started by the test
for the duration of a ``with`` block. It reads every request the way the provider would, checks
it against the provider's documented rules, and answers either the provider's error (a
`Refusal`: HTTP 400, or 401 for a missing key, in the provider's error shape) or the test's
scripted reply, rendered in its own format. No test here touches the internet.

Formats (`format` argument, the route served, the binding that reaches it):

- ``"chat"``: OpenAI Chat Completions, ``POST /v1/chat/completions``;
  ``openai-compatible:MODEL@URL`` (or ``openai-chat:MODEL`` with `Server.env` set).
- ``"responses"``: OpenAI Responses, ``POST /v1/responses``; ``openai:MODEL`` with `env` set.
- ``"anthropic"``: Anthropic Messages, ``POST /v1/messages``; ``anthropic:MODEL`` with `env`.

Replies are JSON (pydantic-ai's `Model.request` sends ``stream: false``), except that the
Anthropic double also answers ``stream: true`` in server-sent events: pydantic-ai streams a
`Model.request` whose `max_tokens` the Anthropic SDK will not wait for (above ~21,000). A
streaming request to either OpenAI double is a test failure.

Usage::

    with wire.serve("anthropic", [wire.call("lookup", {"topic": "tea"}),
                                  wire.call("final_result", {"points": ["a"]})]) as server:
        server.connect(monkeypatch)              # env (base URL, fake key), model requests on
        card = researcher_card(model=server.binding("m"), tools=[lookup])
        result = await Foreman(one_phase(card), store).run({"topic": "tea"})
    first = server.requests[0]
    assert first.tools == ["lookup", "final_result", "refuse", "ask_human"]
    assert first.tool_choice == "required" and first.max_tokens == 1024

The script is a list of replies consumed in order, or a function from each accepted `Request`
to its reply. Replies: `call` (one or several tool calls), `call_raw` (arguments as raw text,
finish reason "length"), `text`, `fault` (an error status, ``Retry-After``, a body), `slow`
(wait, noticing a client that hangs up: `Request.cancelled`) and `drop` (close without an
answer); `call`, `call_raw` and `text` take ``usage=(input, output)``, or ``usage=None`` for a
response without a usage block. Anthropic always sends usage, and pydantic-ai's Anthropic model
fails on a response without it (``AttributeError``): test a missing usage block on the OpenAI
formats. A non-streaming Anthropic `call_raw` carries its raw text as the `tool_use` input (a
real JSON response cannot hold arguments that do not parse); streamed, it is sent as a cut
stream sends it. The OpenAI and Anthropic SDKs retry 429, 5xx and dropped connections on their
own unless built with ``max_retries=0`` (hubspoke's ``openai-compatible:`` binding is):
`requests` shows every attempt.

On leaving the block the server closes (a `slow` reply still waiting is not sent) and raises
`AssertionError` if anything went wrong on the test's side: a request past the end of a
scripted list (answered 500), a script function that raised (500), a route or streaming request
the double does not speak; and, unless ``strict=False``, any request it refused, since a
request the provider would refuse is a bug in what hubspoke sends.

What each server checks, and refuses, with the provider's own message where it is known:

- every format: a JSON object body; a `model`; tool names matching ``^[a-zA-Z0-9_-]{1,64}$``
  (OpenAI API reference, function `name`; Anthropic tool use guide, tool `name`); tool schemas
  of ``type: "object"``; a forced tool choice (`required`/`any`, or one named tool) only with
  tools declared, and a named one only if declared; a tool result only for a call the
  conversation made; known roles; max output tokens and temperature in range.
- chat (`_chat.py`): a bearer key (401); `messages` non-empty; roles ``system``, ``developer``,
  ``user``, ``assistant``, ``tool``, ``function``; `tools` not an empty array; any `tool_choice`
  only with tools; every call of an assistant message answered by tool messages right after;
  ``strict: true`` schemas that set ``additionalProperties: false`` and require every property;
  `max_completion_tokens` ≥ 1; temperature 0-2.
- responses (`_responses.py`): a bearer key (401); input roles ``user``, ``assistant``,
  ``system``, ``developer``; a ``function_call_output`` only for an earlier ``function_call``;
  strict schemas unless ``strict: false`` (strict is the Responses default);
  `max_output_tokens` ≥ 16; temperature 0-2.
- anthropic (`_anthropic.py`): an ``x-api-key`` or bearer key (401; the SDK sends its key as
  a bearer token); ``anthropic-version``;
  `model`, `max_tokens` and `messages` all present; roles ``user`` and ``assistant`` only (a
  ``system`` message is refused: it is a top-level field); unique tool names; each
  ``tool_result`` answering a ``tool_use`` of the message before, and each ``tool_use``
  answered in the message after; temperature 0-1.

`Request` reads every format into one shape: `model`, `tools` (names, in order), `tool_schemas`,
`tool_choice` (``"auto"``, ``"required"``, ``"none"``, ``{"name": ...}`` or `None`),
`max_tokens`, `temperature`, `messages`, `work` (the hubspoke work item in the first user
message), `tool_results`, and what the server did: `refused`, `status`, `cancelled`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.wire._anthropic import Anthropic
from tests.wire._chat import Chat
from tests.wire._replies import (
    DEFAULT_USAGE,
    Answer,
    Drop,
    Fault,
    Reply,
    Slow,
    ToolCall,
    call,
    call_raw,
    drop,
    fault,
    slow,
    text,
)
from tests.wire._request import Format, Message, Refusal, Request, ToolResult
from tests.wire._responses import Responses
from tests.wire._server import API_KEY, Script, Server, WireFormat, run

__all__ = [
    "API_KEY",
    "DEFAULT_USAGE",
    "FORMATS",
    "Answer",
    "Drop",
    "Fault",
    "Format",
    "Message",
    "Refusal",
    "Reply",
    "Request",
    "Script",
    "Server",
    "Slow",
    "ToolCall",
    "ToolResult",
    "call",
    "call_raw",
    "drop",
    "fault",
    "serve",
    "slow",
    "text",
]

_WIRES: dict[Format, WireFormat] = {
    "chat": Chat(),
    "responses": Responses(),
    "anthropic": Anthropic(),
}

FORMATS: tuple[Format, ...] = tuple(_WIRES)
"""Every wire format, for tests parametrised over them: ``("chat", "responses", "anthropic")``."""


@contextmanager
def serve(format: Format, script: Script, *, strict: bool = True) -> Iterator[Server]:
    """Run a scripted server speaking `format` for the duration of the block.

    Args:
        format: ``"chat"``, ``"responses"`` or ``"anthropic"``.
        script: replies consumed in order, or a function from each accepted request to its reply.
        strict: fail the block if the server refused any request (turn off to test refusals).

    Raises:
        AssertionError: on leaving the block, what went wrong on the test's side (see the
            module docstring).
        KeyError: an unknown format.
    """
    with run(_WIRES[format], script, strict=strict) as server:
        yield server
