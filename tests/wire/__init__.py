"""Scripted provider doubles that speak real wire formats (placeholder docstring)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.wire._chat import Chat
from tests.wire._replies import (
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
from tests.wire._server import API_KEY, Script, Server, WireFormat, run

__all__ = [
    "API_KEY",
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

_FORMATS: dict[str, WireFormat] = {"chat": Chat()}


@contextmanager
def serve(format: Format, script: Script, *, strict: bool = True) -> Iterator[Server]:
    with run(_FORMATS[format], script, strict=strict) as server:
        yield server
