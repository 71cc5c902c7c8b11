"""A tiny MCP server of notes, to try MCP tools with (docs/mcp.md) and to test them with.

Run it over stdio (a run starts it: ``MCPServer.stdio([sys.executable, "-m",
"hubspoke.examples.mcp_notes"])``), or over streamable HTTP on 127.0.0.1::

    python -m hubspoke.examples.mcp_notes --http 8000   # prints its URL once it listens

Its tools:

- ``lookup(topic, limit=3)``: what it knows of a topic (read-only);
- ``append_note(text, idempotency_key)``: writes a note (a side effect): one JSON line per note
  in the file named by ``NOTES_FILE``; a second call with the same key writes nothing and
  returns the first note, as a payment API deduplicates by its idempotency key;
- ``clear_notes()``: deletes every note (destructive: a card should not list it).

Needs the ``mcp`` extra (``pip install 'hubspoke[mcp]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations

__all__ = ["FACTS", "main", "server"]

FACTS: dict[str, list[str]] = {
    "tea": ["Tea is brewed from Camellia sinensis.", "Green and black tea share a plant."],
    "mcp": ["MCP servers offer tools, resources and prompts.", "MCP speaks JSON-RPC."],
}
"""What `lookup` knows."""

server: MCPServer[Any] = MCPServer("notes", log_level="WARNING")


def _notes_file() -> Path:
    return Path(os.environ.get("NOTES_FILE", "notes.jsonl"))


def _notes() -> list[dict[str, Any]]:
    path = _notes_file()
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def lookup(topic: str, limit: int = 3) -> list[str]:
    """What is known of a topic: up to `limit` facts."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return FACTS.get(topic.lower(), [])[:limit]


@server.tool(annotations=ToolAnnotations(destructiveHint=False, idempotentHint=False))
def append_note(text: str, idempotency_key: str = "") -> dict[str, Any]:
    """Write a note; returns its number. A key already used writes nothing."""
    notes = _notes()
    for number, note in enumerate(notes, start=1):
        if idempotency_key and note.get("key") == idempotency_key:
            return {"note": number, "text": note["text"], "duplicate": True}
    with _notes_file().open("a", encoding="utf-8") as f:
        f.write(json.dumps({"text": text, "key": idempotency_key}) + "\n")
    return {"note": len(notes) + 1, "text": text, "duplicate": False}


@server.tool(annotations=ToolAnnotations(destructiveHint=True))
def clear_notes() -> str:
    """Delete every note."""
    _notes_file().unlink(missing_ok=True)
    return "cleared"


def main(argv: list[str] | None = None) -> None:
    """Serve over stdio, or over streamable HTTP on 127.0.0.1 with ``--http PORT`` (0: any
    free port); in HTTP mode the URL is printed on stdout once the server listens."""
    parser = argparse.ArgumentParser(prog="python -m hubspoke.examples.mcp_notes")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve over streamable HTTP")
    args = parser.parse_args(argv)
    if args.http is None:
        server.run("stdio")
        return
    import anyio
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.http))
    listener.listen()
    port = listener.getsockname()[1]
    app = server.streamable_http_app(host="127.0.0.1")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")

    async def serve() -> None:
        uv = uvicorn.Server(config)
        print(f"http://127.0.0.1:{port}/mcp", flush=True)  # listening: clients may connect
        await uv.serve(sockets=[listener])

    anyio.run(serve)


if __name__ == "__main__":
    main(sys.argv[1:])
