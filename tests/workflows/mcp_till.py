"""A cashier whose ``charge`` tool is served by an MCP server over stdio, for the crash tests of
MCP tools (tests/test_mcp.py).

``python -m tests.workflows.mcp_till`` serves the tool: it charges through `Charges` (the file
named by `CHARGES_DB`), passing on the call's idempotency key. With `KILL_CLIENT` naming a file
that does not exist yet, the first call charges, creates that file and SIGKILLs the process
that started the server (the run), before the result can reach it: the call took effect, and
the run's journal holds its start but no end. With `MCP_LOG` naming a file, the server writes
``start PID`` there when it starts and ``list`` each time its tools are listed. With
`BROKEN_SCHEMA` set, it also lists a tool ``broken`` whose argument schema is not JSON Schema.

`make(reconciled)` builds the workflow (reading the environment then); `workflow` is
`make(True)`, for `tests.workflows.run`.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from hubspoke import Phase, Role, Workflow
from hubspoke.mcp import MCPServer
from hubspoke.models.offline import Move, Turn, answer, call
from hubspoke.tools import DID_NOT_RUN
from tests.workflows.charges import Charges, Order, Receipt

ROOT = Path(__file__).resolve().parents[2]


def find_charge(key: str, arguments: dict[str, Any]) -> Any:
    """The reconcile function: the charge made with this key, if any, as the tool's result
    reads (the Python SDK's server wraps a plain return value in ``{"result": ...}``)."""
    found = Charges(os.environ["CHARGES_DB"]).find(key)
    return DID_NOT_RUN if found is None else {"result": found}


def cashier(turn: Turn) -> Move:
    charged = turn.result("charge")
    if charged is None:
        return call("charge", card=turn.input["card"], amount=turn.input["amount"])
    return answer(card=turn.input["card"], charge_id=charged["result"])


def make(reconciled: bool) -> Workflow:
    """The ``till`` workflow: the cashier charges through the server's ``charge`` tool,
    declared side-effecting (with `find_charge` as its reconcile if `reconciled`)."""
    names = ("CHARGES_DB", "KILL_CLIENT", "MCP_LOG", "BROKEN_SCHEMA")
    env = {name: os.environ[name] for name in names if name in os.environ}
    server = MCPServer.stdio([sys.executable, "-m", "tests.workflows.mcp_till"], env=env, cwd=ROOT)
    tool = server.tool("charge", side_effect=True, reconcile=find_charge if reconciled else None)
    return Workflow(
        name="till",
        input=Order,
        roles=[
            Role(
                name="cashier",
                purpose="Charge the order.",
                input=Order,
                output=Receipt,
                tools=[tool],
            )
        ],
        phases=[Phase(name="pay", role="cashier", input=lambda run: run.input)],
        result=lambda run: run.output("pay"),
        players={"cashier": cashier},
    )


def _log(line: str) -> None:
    path = os.environ.get("MCP_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def serve() -> None:
    from mcp.server.mcpserver import MCPServer as Server
    from mcp.types import Tool

    class Logged(Server[Any]):
        """Logs its start and every listing of its tools to the file `MCP_LOG` names."""

        async def list_tools(self) -> list[Tool]:
            _log("list")
            listed = await super().list_tools()
            if os.environ.get("BROKEN_SCHEMA"):  # a tool whose schema is not JSON Schema
                broken = {"type": "object", "properties": {"x": {"type": "nonsense"}}}
                listed.append(Tool(name="broken", input_schema=broken))
            return listed

    _log(f"start {os.getpid()}")
    app = Logged("till", log_level="WARNING")

    @app.tool()
    def charge(card: str, amount: int, idempotency_key: str) -> str:
        """Charge a card; returns the charge's id."""
        charge_id = Charges(os.environ["CHARGES_DB"]).charge(card, amount, idempotency_key)
        marker = os.environ.get("KILL_CLIENT")
        if marker and not Path(marker).exists():
            Path(marker).touch()
            parent = os.getppid()
            os.kill(parent, signal.SIGKILL)
            while os.getppid() == parent:  # until the run is gone: it never reads this result
                time.sleep(0.01)
            os._exit(0)
        return charge_id

    app.run("stdio")


workflow = make(True)

if __name__ == "__main__":
    serve()
