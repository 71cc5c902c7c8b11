"""MCP tools: a role's tools served by an MCP server, over stdio or streamable HTTP.

Declare the server once and list on a card the tools its specialist may call::

    notes = MCPServer.stdio([sys.executable, "-m", "hubspoke.examples.mcp_notes"])
    Role(..., tools=[notes.tool("lookup"), notes.tool("append_note", side_effect=True)])

The card's list is the allow-list, as for Python tools: a tool the server has but the card does
not list is never offered to the model, and a call to it is refused and journaled like any
refused call (`tool.refused`). What the server says about a tool is read when a run starts:

- **Once per run.** `open_servers` starts (or connects to) every server the workflow's cards
  name, one client session each, and lists their tools before anything is written. A server
  that does not start or answer within its `MCPServer.timeout`, a tool a card names that the
  server lacks, or an argument schema that is not valid JSON Schema raises `ToolServerError`
  naming each problem (the CLI exits 2). The sessions stay open while the run goes on and are
  closed when it ends, however it ends (`ToolServers.close`).
- **Arguments** are checked against the tool's ``inputSchema`` (JSON Schema, with the
  ``jsonschema`` package the ``mcp`` extra brings) before the call is sent; invalid ones raise
  `ToolArgumentsError` like a Python tool's, which an agent gets back as a correction.
- **Calls** go through the context like a Python tool's (the allow-list, the allowance, the
  trace, `tool.called` in the journal). A result is the call's ``structuredContent`` when the
  server gives one, else its one text block, else its content blocks as JSON; a result the
  server marks ``isError`` raises `MCPToolError` (the tool ran and failed). A server that
  exits or drops the connection during the run is not reached again: the call it died in fails
  with `ConnectionError` (or `InDoubt`, if side-effecting), and every later call fails with
  `ConnectionError` unsent (certainly not run, so never in doubt), naming the server and
  quoting a stdio server's error output.
- **Side effects.** A tool declared ``side_effect=True`` on the card gets the same exactly-once
  treatment as a Python side-effecting tool (`hubspoke.tools.Tool.from_function`): keyed,
  ``tool.started`` and ``tool.finished`` journaled durably around the call, a recorded result
  replayed, a call in doubt settled by its ``reconcile`` or escalated. A call sent whose answer
  never came back (the connection dropped while the server worked) is in doubt (`InDoubt`).
  When the tool's ``inputSchema`` has an ``idempotency_key`` property, the runtime fills it with
  the call's key (it is not offered to the model), so the server can refuse a duplicate; a tool
  that requires one must be declared side-effecting. MCP's
  annotations are hints from the server: ``side_effect=None`` (the default) follows them (a tool
  annotated ``destructiveHint: true``, neither read-only nor idempotent, is side-effecting);
  ``True`` or ``False`` on the card always wins.

Nothing here imports the ``mcp`` package until a run opens a server: ``import hubspoke`` and
declaring servers cost nothing. Without the package installed, declaring a server raises
`ToolServerError` naming the extra to install (``pip install 'hubspoke[mcp]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, Final

from pydantic import BaseModel, RootModel

from hubspoke.errors import InDoubt, MCPToolError, ToolArgumentsError, ToolServerError
from hubspoke.tools import KEY_PARAMETER, Reconcile, Tool

if TYPE_CHECKING:
    from hubspoke.roles import Role

__all__ = [
    "DEFAULT_TIMEOUT",
    "EXTRA",
    "MCPArguments",
    "MCPServer",
    "MCPTool",
    "MCPToolError",
    "ToolServers",
    "open_servers",
]

EXTRA: Final = "pip install 'hubspoke[mcp]'"
"""How to install what MCP tools need."""

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds a server has to start, answer the handshake and list its tools."""

_STDERR_TAIL: Final = 800
"""Characters of a stdio server's own error output quoted when it fails to start."""


class MCPArguments(RootModel[dict[str, Any]]):
    """An MCP tool call's arguments once checked against the tool's JSON Schema: a JSON object."""


def _missing_extra() -> bool:
    try:
        return importlib.util.find_spec("mcp") is None
    except (ImportError, ValueError):  # a parent that is not a package, or a None in sys.modules
        return True


@dataclass(frozen=True, eq=False, kw_only=True)
class MCPServer:
    """An MCP server whose tools role cards may list. Build one with `stdio` or `http`.

    Each run opens one client session per `MCPServer` object (a stdio server: one process per
    run) and closes it when the run ends; cards that share the object share the session.
    """

    name: str
    """How errors and docs name the server."""
    command: tuple[str, ...] = ()
    """A stdio server's command line: the program, then its arguments."""
    env: Mapping[str, str] | None = None
    """Variables a stdio server gets on top of a minimal environment (``PATH``, ``HOME``...)."""
    cwd: str | None = None
    """A stdio server's working directory; the caller's when `None`."""
    url: str | None = None
    """A streamable HTTP server's endpoint, e.g. ``http://127.0.0.1:8000/mcp``."""
    headers: Mapping[str, str] | None = field(default=None, repr=False)
    """HTTP headers sent with every request to an HTTP server (an ``Authorization``, say)."""
    timeout: float = DEFAULT_TIMEOUT
    """Seconds the server has to start, answer and list its tools when a run opens it."""

    @classmethod
    def stdio(
        cls,
        command: Sequence[str],
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> MCPServer:
        """A server the run starts as a subprocess and talks to over its stdin and stdout.

        Args:
            command: the program and its arguments, e.g.
                ``[sys.executable, "-m", "hubspoke.examples.mcp_notes"]``.
            name: how errors name it; by default the module of ``python -m MODULE``, else
                the program's name.
            env: variables it gets besides a minimal environment (``PATH``, ``HOME``, ...,
                and ``PYTHONPATH``): the caller's other variables, secrets included, are not
                passed on unless given here.
            cwd: its working directory.
            timeout: seconds it has to start and list its tools.

        Raises:
            TypeError: `command` is not a non-empty list of strings, or `timeout` is not a
                positive number.
            ToolServerError: the ``mcp`` package is not installed.
        """
        if isinstance(command, str) or not command or not all(isinstance(c, str) for c in command):
            raise TypeError(
                "MCPServer.stdio takes the command as a list of strings, e.g. "
                f"[sys.executable, '-m', 'my_server']; got {command!r}"
            )
        words = tuple(command)
        # `python -m package.server` is named by its module, anything else by its program.
        module = words[words.index("-m") + 1] if "-m" in words[:-1] else None
        label = name or module or Path(words[0]).name
        return cls(
            name=label,
            command=words,
            env=None if env is None else dict(env),
            cwd=None if cwd is None else os.fspath(cwd),
            timeout=timeout,
        )

    @classmethod
    def http(
        cls,
        url: str,
        *,
        name: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> MCPServer:
        """A server reached over streamable HTTP at `url`, already running.

        Args:
            url: its MCP endpoint, e.g. ``http://127.0.0.1:8000/mcp``.
            name: how errors name it; by default the URL.
            headers: sent with every request (credentials: they are never journaled).
            timeout: seconds it has to answer and list its tools.

        Raises:
            TypeError: `url` is not an ``http://`` or ``https://`` URL, or `timeout` is not a
                positive number.
            ToolServerError: the ``mcp`` package is not installed.
        """
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise TypeError(f"MCPServer.http takes an http:// or https:// URL; got {url!r}")
        return cls(
            name=name or url,
            url=url,
            headers=None if headers is None else dict(headers),
            timeout=timeout,
        )

    def __post_init__(self) -> None:
        if not (self.command or self.url) or (self.command and self.url):
            raise TypeError("build an MCPServer with MCPServer.stdio(...) or MCPServer.http(...)")
        if (
            not isinstance(self.timeout, int | float)
            or isinstance(self.timeout, bool)
            or not 0 < self.timeout < float("inf")
        ):
            raise TypeError(f"timeout must be a positive number of seconds; got {self.timeout!r}")
        if _missing_extra():
            raise ToolServerError(
                [f"MCP server {self.name!r}: MCP tools need the mcp package: {EXTRA}"]
            )

    @property
    def where(self) -> str:
        """The command line or URL, to name in errors."""
        return self.url if self.url is not None else " ".join(self.command)

    def tool(
        self,
        name: str,
        *,
        side_effect: bool | None = None,
        reconcile: Reconcile | None = None,
        rename: str | None = None,
    ) -> MCPTool:
        """One of the server's tools, to list on a role card.

        Its description and argument schema are the server's, read when a run starts.

        Args:
            name: the tool's name on the server.
            side_effect: the tool changes the world, so each call is keyed and runs at most
                once per key (see the module's docstring). `None`: as the server's annotations
                say (side-effecting if ``destructiveHint`` is true and neither ``readOnlyHint``
                nor ``idempotentHint`` is).
            reconcile: settles a call in doubt, as for a Python tool (`hubspoke.tools.Reconcile`).
            rename: the name the card (and the model) uses, when the server's clashes with
                another tool's or is not one a provider takes.

        Raises:
            TypeError: `name` is empty, or `reconcile` is given with ``side_effect=False`` or
                is not callable.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"an MCP tool is named by a non-empty string; got {name!r}")
        card_name = rename if rename is not None else name
        if reconcile is not None and not callable(reconcile):
            raise TypeError(f"tool {card_name!r}: reconcile={reconcile!r} is not callable")
        if reconcile is not None and side_effect is False:
            raise TypeError(
                f"tool {card_name!r}: reconcile= settles calls of a side-effecting tool; "
                "remove side_effect=False"
            )
        return MCPTool(
            name=card_name,
            function=_Remote(self, name),
            description=f"{name} (from MCP server {self.name!r})",
            arguments=MCPArguments,
            is_async=True,
            side_effect=side_effect is True or reconcile is not None,
            reconcile=reconcile,
            server=self,
            remote=name,
            declared=True if reconcile is not None else side_effect,
        )

    def tools(self, *names: str) -> list[MCPTool]:
        """`tool` for each of `names`, as ordinary (or annotated) tools."""
        return [self.tool(name) for name in names]


@dataclass(frozen=True, eq=False)
class _Remote:
    """The `Tool.function` of an MCP tool: it names the server and the tool, and compares equal
    to another naming the same (a sub-workflow's card may list the tool its parent's lists)."""

    server: MCPServer
    name: str

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Remote) and other.server is self.server and other.name == self.name
        )

    def __hash__(self) -> int:
        return hash((id(self.server), self.name))

    async def __call__(self, **arguments: Any) -> Any:
        raise RuntimeError(
            f"MCP tool {self.name!r} of server {self.server.name!r} is called through a run, "
            "which opens the server: use it on a role card"
        )


@dataclass(frozen=True, slots=True, eq=False)
class MCPTool(Tool):
    """A tool served by an MCP server (`MCPServer.tool`). On a card it names the tool; a run
    binds it to its open session, with the description and schema the server listed."""

    listed_per_run: ClassVar[bool] = True

    server: MCPServer | None = None
    remote: str = ""
    """The tool's name on the server."""
    declared: bool | None = None
    """What the card said of its side effects (`None`: the server's annotations decide)."""
    schema: Mapping[str, Any] | None = None
    """The ``inputSchema`` the server listed (without ``idempotency_key``); `None` on a card."""
    session: _Session | None = None
    """The run's open session to the server; `None` on a card."""
    checker: Any = None
    """The JSON Schema validator of `schema`."""

    def how_to_rename(self, suggestion: str) -> str:
        """Renaming is the card's: the name on the server is the server's."""
        return f"rename it on the card: .tool({self.remote!r}, rename={suggestion!r})"

    def json_schema(self) -> dict[str, Any]:
        """The argument schema offered to a model: the server's, without ``idempotency_key``."""
        if self.schema is None:
            return {"type": "object", "properties": {}}
        return dict(self.schema)

    def validate(self, raw_arguments: dict[str, Any] | str) -> BaseModel:
        """The arguments checked against the server's JSON Schema (`MCPArguments`).

        Raises:
            ToolArgumentsError: they are not a JSON object or do not validate.
        """
        arguments: Any = raw_arguments
        if isinstance(raw_arguments, str):
            try:
                arguments = json.loads(raw_arguments or "{}")
            except ValueError as e:
                raise ToolArgumentsError(
                    self.name,
                    [{"type": "json_invalid", "loc": (), "msg": f"Invalid JSON: {e}", "input": ""}],
                ) from None
        if not isinstance(arguments, dict):
            raise ToolArgumentsError(
                self.name,
                [
                    {
                        "type": "object_type",
                        "loc": (),
                        "msg": "the arguments must be a JSON object",
                        "input": arguments,
                    }
                ],
            )
        if self.checker is not None:
            errors = sorted(self.checker.iter_errors(arguments), key=lambda e: list(e.path))
            if errors:
                raise ToolArgumentsError(
                    self.name,
                    [
                        {
                            "type": e.validator,
                            "loc": tuple(e.absolute_path),
                            "msg": e.message,
                            "input": e.instance,
                        }
                        for e in errors
                    ],
                )
        return MCPArguments(arguments)

    async def run(self, arguments: BaseModel, key: str | None = None) -> Any:
        """Send the call to the server; its result (see the module's docstring).

        Raises:
            MCPToolError: the server reports the tool failed.
            InDoubt: a side-effecting call's answer never came back.
            ConnectionError: the server closed the connection during this call (a call that
                is not side-effecting), or earlier in the run (the call was not sent).
        """
        session = self.session
        if session is None:
            raise RuntimeError(
                f"MCP tool {self.remote!r} is not bound to an open server session: a run opens it"
            )
        sent: dict[str, Any] = dict(arguments.model_dump(mode="json"))
        if self.takes_key:
            sent[KEY_PARAMETER] = key
        return await session.call(self, sent)


# The run's sessions --------------------------------------------------------------------------


_CREDENTIALS: Final = "Check the credentials in its headers (MCPServer.http(..., headers=...))"


def _listed_error(
    server: MCPServer, error: BaseException, stderr: str, status: int | None = None
) -> str:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]  # anyio's task groups wrap what failed inside them
    what = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if isinstance(error, TimeoutError):
        what = f"no answer within {server.timeout:g}s"
    if isinstance(error, FileNotFoundError):
        what = f"{server.command[0]!r} was not found"
    fix = "Check the command and run it by hand" if server.url is None else "Check the URL"
    if status is not None:
        # The mcp client reports an error status as "Server returned an error response".
        from http import HTTPStatus

        try:
            what = f"it answered HTTP {status} {HTTPStatus(status).phrase}"
        except ValueError:  # a status the standard does not name
            what = f"it answered HTTP {status}"
        if status in (401, 403, 407):
            fix = _CREDENTIALS
        elif status >= 500:
            fix = "Check the server"
    kind = "start" if server.url is None else "answer"
    text = f"MCP server {server.name!r} ({server.where}) did not {kind}: {what}"
    if stderr.strip():
        text += f"; its error output ends: {stderr.strip()[-_STDERR_TAIL:]!r}"
    return f"{text}. {fix}, or remove its tools from the cards"


class _Session:
    """One open client session to one server, held by a task of its own.

    The ``mcp`` client is built on anyio: its task groups must be entered and left by the same
    task, and a failure inside them cancels that task. A task of its own keeps both away from
    the run's task; dispatches call through the session from theirs."""

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self.client: Any = None
        self.listed: dict[str, Any] = {}
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stderr: IO[str] | None = None
        self.lost = False
        self.http_status: int | None = None
        """The first error status an HTTP server answered with, to name it in errors."""
        """The connection closed while the run went on (the server exited or dropped it)."""

    def _stderr_text(self) -> str:
        log = self._stderr
        if log is None:
            return ""
        with contextlib.suppress(OSError, ValueError):
            log.flush()
            log.seek(0)
            return log.read()
        return ""

    async def open(self) -> None:
        """Start or reach the server, shake hands and list its tools.

        Raises:
            ToolServerError: it does not start, answer or list within its time-out.
        """
        self._task = asyncio.create_task(self._hold(), name=f"mcp:{self.server.name}")
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait(
                {self._task, ready},
                timeout=self.server.timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:  # cancelled while it starts: it must not outlive the run
            await self.close()
            raise
        finally:
            ready.cancel()
        if self._ready.is_set():
            return
        error: BaseException = TimeoutError()
        if self._task.done() and not self._task.cancelled():
            error = self._task.exception() or RuntimeError("the session ended at once")
        stderr = self._stderr_text()
        await self.close()
        raise ToolServerError([_listed_error(self.server, error, stderr, self.http_status)])

    async def _hold(self) -> None:
        from mcp import Client, StdioServerParameters

        server = self.server
        transport: Any
        http: Any = None
        if server.url is not None:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            async def seen(response: Any) -> None:
                if response.status_code >= 400 and self.http_status is None:
                    self.http_status = response.status_code

            # The SDK's time-outs for MCP over HTTP, and a hook that keeps the status of an
            # error answer, which the SDK reports without it.
            http = httpx2.AsyncClient(
                headers=dict(server.headers or {}),
                timeout=httpx2.Timeout(30.0, read=300.0),
                event_hooks={"response": [seen]},
            )
            transport = streamable_http_client(server.url, http_client=http)
        else:
            from mcp.client.stdio import stdio_client

            # The server's own error output, kept to quote if it fails to start.
            self._stderr = tempfile.TemporaryFile(  # noqa: SIM115 - closed by `close`
                mode="w+", encoding="utf-8", errors="replace"
            )
            # The mcp package's minimal environment (PATH, HOME, ...), the run's PYTHONPATH (a
            # Python server started with sys.executable sees the run's packages), then `env`.
            env = {k: os.environ[k] for k in ("PYTHONPATH",) if k in os.environ}
            params = StdioServerParameters(
                command=server.command[0],
                args=list(server.command[1:]),
                env=env | dict(server.env or {}),
                cwd=server.cwd,
            )
            transport = stdio_client(params, errlog=self._stderr)
        try:
            async with Client(transport, cache=None) as client:
                self.client = client
                cursor: str | None = None
                for _ in range(100):  # pages; a listing that never ends cannot hang a run
                    page = await client.list_tools(cursor=cursor)
                    self.listed.update({t.name: t for t in page.tools})
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                self._ready.set()
                await self._stop.wait()
        finally:
            self.client = None
            if http is not None:
                await http.aclose()

    def _gone(self, tool: MCPTool, *, sent: bool, message: str = "") -> str:
        """Why a call of `tool` failed with the connection closed, and what to do."""
        # The name only: the message is journaled, and a command line or URL may hold a secret.
        where = f"MCP server {self.server.name!r}"
        if sent and not self.lost:
            # One request's stream broke (an HTTP response stream cut short); the session
            # goes on, and the call may be made again.
            return f"{where} dropped the call of tool {tool.remote!r} before answering ({message})"
        text = f"{where} closed the connection"
        if sent:
            text += " during this call"
        else:
            text += f" earlier in this run: tool {tool.remote!r} was not sent"
        stderr = self._stderr_text().strip()
        if stderr:
            text += f"; its error output ends: {stderr[-_STDERR_TAIL:]!r}"
        return (
            f"{text}. The run does not reach it again: fix the server, then resume the run "
            "(a resumed run starts its servers anew)"
        )

    def _closed(self) -> bool:
        """Whether nothing can be sent any more: the run's own record, or the ``mcp`` client's
        (its dispatcher refuses every send once the transport closed: a stdio server's output
        ended, an HTTP session ended)."""
        if self.lost or self.client is None:
            self.lost = True
            return True
        with contextlib.suppress(Exception):  # the client's internals; their absence says nothing
            if self.client.session._dispatcher._closed is True:
                self.lost = True
        return self.lost

    async def call(self, tool: MCPTool, arguments: dict[str, Any]) -> Any:
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        client = self.client
        where = f"MCP server {self.server.name!r}"
        if client is None or self._closed():
            # Nothing is sent: the call certainly did not run (a side effect is not in doubt).
            raise ConnectionError(self._gone(tool, sent=False))
        try:
            result = await client.call_tool(tool.remote, arguments)
        except MCPError as e:
            if e.code == CONNECTION_CLOSED:
                # The whole connection (a stdio server's output ends only when it exits), or
                # only this call's HTTP response stream, in which case the session goes on.
                if self.server.url is None:
                    self.lost = True
                self._closed()
                if tool.side_effect:
                    raise InDoubt(_in_doubt(tool, where, e)) from None
                raise ConnectionError(self._gone(tool, sent=True, message=e.message)) from None
            if tool.side_effect and e.code == REQUEST_TIMEOUT:
                raise InDoubt(_in_doubt(tool, where, e)) from None
            raise
        except Exception as e:
            if tool.side_effect:
                raise InDoubt(_in_doubt(tool, where, e)) from None
            raise
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content).strip()
            raise MCPToolError(text or f"{where}: tool {tool.remote!r} failed")
        if result.structured_content is not None:
            return result.structured_content
        blocks = result.content
        if len(blocks) == 1 and getattr(blocks[0], "type", None) == "text":
            return blocks[0].text
        return [b.model_dump(mode="json", by_alias=True, exclude_none=True) for b in blocks]

    async def close(self) -> None:
        """End the session (a stdio server's process with it); safe to call twice."""
        self._stop.set()
        task = self._task
        if task is not None and not task.done():
            if not self._ready.is_set():
                task.cancel()
            # Shielded: a run cancelled while it closes still ends the server's process.
            with contextlib.suppress(BaseException):
                await asyncio.shield(task)
        elif task is not None and not task.cancelled():
            task.exception()  # retrieved: a failed session is reported by `open`, not logged
        log, self._stderr = self._stderr, None
        if log is not None:
            log.close()


def _in_doubt(tool: MCPTool, where: str, error: BaseException) -> str:
    return (
        f"in doubt: MCP tool {tool.remote!r} was sent to {where} but its answer never came back "
        f"({type(error).__name__}: {error}), so it may have run. A person must check whether it "
        "took effect"
    )


def _bind(tool: MCPTool, session: _Session, listed: Any) -> MCPTool | str:
    """`tool` bound to the run's `session`, with what the server `listed` of it; or what is
    wrong with it."""
    from jsonschema import SchemaError  # type: ignore[import-untyped]
    from jsonschema.validators import validator_for  # type: ignore[import-untyped]

    where = f"MCP server {session.server.name!r}: tool {tool.remote!r}"
    schema: dict[str, Any] = dict(listed.input_schema or {"type": "object"})
    try:
        cls = validator_for(schema)
        cls.check_schema(schema)
    except SchemaError as e:
        return (
            f"{where} lists an argument schema that is not valid JSON Schema ({e.message}); "
            "fix the server's tool"
        )
    side_effect = tool.declared
    if side_effect is None:
        hints = listed.annotations
        side_effect = bool(
            hints is not None
            and hints.destructive_hint is True
            and hints.read_only_hint is not True
            and hints.idempotent_hint is not True
        )
    properties = schema.get("properties")
    takes_key = False
    if isinstance(properties, dict) and KEY_PARAMETER in properties:
        # Filled in by the runtime with the call's key, for a side-effecting tool: never the
        # model's to give.
        required = schema.get("required")
        if not side_effect and isinstance(required, list) and KEY_PARAMETER in required:
            return (
                f"{where} requires '{KEY_PARAMETER}', which the runtime fills in for "
                f"side-effecting tools: declare it on the card with .tool({tool.remote!r}, "
                "side_effect=True)"
            )
        schema["properties"] = {k: v for k, v in properties.items() if k != KEY_PARAMETER}
        if isinstance(required, list):
            schema["required"] = [r for r in required if r != KEY_PARAMETER]
            if not schema["required"]:
                del schema["required"]
        takes_key = side_effect  # an ordinary call sends none: the server's default applies
    description = (listed.description or "").split("\n\n")[0].strip() or tool.name
    return replace(
        tool,
        description=description,
        side_effect=side_effect,
        takes_key=takes_key,
        schema=schema,
        session=session,
        checker=cls(schema),
    )


class ToolServers:
    """The MCP sessions of one run and its roles' tools bound to them (`open_servers`)."""

    def __init__(self, sessions: list[_Session], tools: dict[str, dict[str, Tool]]) -> None:
        self.sessions = sessions
        self.tools = tools
        """Each role's tools by name, its MCP tools bound to this run's sessions."""

    async def close(self) -> None:
        """Close every session (stdio servers' processes end); safe to call twice."""
        await asyncio.gather(*(s.close() for s in self.sessions))


def _calls_tools(role: Role) -> bool:
    """Whether `role`'s own specialist calls its tools: a sub-workflow's card lists them as the
    permissions of its roles, whose run opens the servers it needs."""
    return role.delegate is None


def _servers_of(roles: Sequence[Role]) -> dict[int, MCPServer]:
    found: dict[int, MCPServer] = {}
    for role in roles:
        if not _calls_tools(role):
            continue
        for tool in role.compiled_tools:
            if isinstance(tool, MCPTool) and tool.server is not None:
                found.setdefault(id(tool.server), tool.server)
    return found


async def open_servers(
    roles: Sequence[Role], tables: Mapping[str, Mapping[str, Tool]]
) -> ToolServers | None:
    """Open one session per MCP server the `roles` name, list each one's tools once, and bind
    the cards' MCP tools to them. `None` when no card lists an MCP tool. A sub-workflow's card
    (`Workflow.as_role`) opens nothing: its tools are its roles' permissions, and the sub-run
    opens the servers its own cards name.

    Args:
        roles: the workflow's role cards.
        tables: each role's tools by name (the foreman's table, built from the cards).

    Returns:
        The sessions and the tables with the MCP tools bound; close it when the run ends.

    Raises:
        ToolServerError: the ``mcp`` package is missing, a server does not start or answer, a
            card names a tool its server does not list, or a listed schema is not valid JSON
            Schema. Every problem is named; every session opened is closed again.
    """
    servers = _servers_of(roles)
    if not servers:
        return None
    try:
        import jsonschema  # noqa: F401 - the mcp extra brings it
        import mcp  # noqa: F401
    except ImportError:
        raise ToolServerError(
            [
                f"roles {sorted({r.name for r in roles})} list tools of MCP servers, which need "
                f"the mcp package: {EXTRA}"
            ]
        ) from None
    sessions = {key: _Session(server) for key, server in servers.items()}

    async def close_all() -> None:
        await asyncio.gather(*(s.close() for s in sessions.values()))

    try:
        opened = await asyncio.gather(
            *(s.open() for s in sessions.values()), return_exceptions=True
        )
    except BaseException:  # cancelled while the servers start
        await close_all()
        raise
    problems: list[str] = []
    for outcome in opened:
        if isinstance(outcome, ToolServerError):
            problems.extend(outcome.problems)
        elif isinstance(outcome, BaseException):
            await close_all()
            raise outcome
    bound: dict[str, dict[str, Tool]] = {}
    for role in roles:
        table = dict(tables[role.name])
        for tool in role.compiled_tools:
            if not isinstance(tool, MCPTool) or tool.server is None or not _calls_tools(role):
                continue
            session = sessions[id(tool.server)]
            if not session._ready.is_set():
                continue  # its server's failure is already named
            listed = session.listed.get(tool.remote)
            if listed is None:
                has = ", ".join(sorted(session.listed)) or "none"
                problems.append(
                    f"role {role.name!r} lists tool {tool.remote!r}, which MCP server "
                    f"{tool.server.name!r} does not have (it has: {has}); fix the card's "
                    f".tool({tool.remote!r})"
                )
                continue
            result = _bind(tool, session, listed)
            if isinstance(result, str):
                problems.append(f"role {role.name!r}: {result}")
                continue
            table[tool.name] = result
        bound[role.name] = table
    found = ToolServers(list(sessions.values()), bound)
    if problems:
        await found.close()
        raise ToolServerError(list(dict.fromkeys(problems)))
    return found
