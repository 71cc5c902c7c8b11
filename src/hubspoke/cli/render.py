"""Human output: tables and short formats for the reports of `hubspoke.cli.report`."""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hubspoke.events import Event

__all__ = [
    "artifacts_table",
    "board",
    "event_line",
    "fmt_price",
    "fmt_tokens",
    "fmt_usd",
    "items_table",
    "ladder_text",
    "models_table",
    "outbox_table",
    "output_console",
    "phases_table",
    "print_config",
    "print_models",
    "print_run_summary",
    "print_show",
    "roles_table",
    "run_models_table",
    "runs_table",
    "status_text",
    "usd_text",
]

PIPED_WIDTH = 10_000
"""Columns of the output when stdout is not a terminal (a pipe, a file): more than any row needs,
so that no cell is cut short with an ellipsis (run ids stay whole, to grep and to copy)."""


def output_console() -> Console:
    """The console a command prints its result on (stdout).

    On a terminal it has the terminal's width and colours; piped or redirected it has
    `PIPED_WIDTH` columns and no colours, so that tables keep every id whole and each row stays
    on one line.
    """
    console = Console()
    return console if console.is_terminal else Console(width=PIPED_WIDTH)


_STATUS_STYLE = {
    "completed": "bold green",
    "running": "bold yellow",
    "escalated": "bold magenta",
    "waiting": "bold cyan",
    "exhausted": "bold magenta",
    "failed": "bold red",
    "aborted": "bold red",
    "skipped": "dim",
    "pending": "dim",
}


def status_text(status: str) -> Text:
    """A run's or phase's status, coloured by how it ended."""
    return Text(status, style=_STATUS_STYLE.get(status, ""))


def fmt_usd(usd: float) -> str:
    """Dollars with enough digits for the fractions of a cent models cost."""
    return f"${usd:,.4f}" if usd < 100 else f"${usd:,.2f}"


def usd_text(usd: float, unknown: bool = False, *, whole: bool = False) -> Text:
    """Dollars, marked where a model without a price played part of it: ``unknown`` when none
    of it is known (`whole`, or nothing priced was spent), ``≥ $x`` when part is."""
    if not unknown:
        return Text(fmt_usd(usd))
    if whole or usd == 0:
        return Text("unknown", style="yellow")
    return Text(f"≥ {fmt_usd(usd)}", style="yellow")


def fmt_tokens(tokens: int) -> str:
    """Tokens with thousands separators."""
    return f"{tokens:,}"


def fmt_time(ts: float | None) -> str:
    """A timestamp as local time, or ``-``."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def fmt_seconds(seconds: float | None) -> str:
    """Seconds, or minutes past two of them; ``-`` when unknown."""
    if seconds is None:
        return "-"
    return f"{seconds:.2f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _tokens(usage: Mapping[str, Any]) -> int:
    return int(usage.get("input_tokens", 0)) + int(usage.get("output_tokens", 0))


def short_json(value: Any, width: int = 80) -> str:
    """Compact JSON, cut to `width` characters."""
    text = json.dumps(value, separators=(",", ":"), default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _table(title: str) -> Table:
    return Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False
    )


# runs ----------------------------------------------------------------------------------------


def runs_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """`hubspoke runs`: newest first."""
    table = _table("runs")
    for name in ("run", "workflow", "status", "created", "took"):
        table.add_column(name, no_wrap=True, justify="right" if name == "took" else "left")
    table.add_column("parent")
    for row in rows:
        parent = row["parent_run"]
        if parent and row["parent_item"]:
            parent = f"{parent} ({row['parent_item']})"
        finished = row["finished"]
        table.add_row(
            row["run_id"],
            row["workflow"],
            status_text(row["status"]),
            fmt_time(row["created"]),
            "-" if finished is None else fmt_seconds(finished - row["created"]),
            parent or "-",
        )
    return table


# a run's phases and roles ----------------------------------------------------------------------


_LADDER = ("waits", "retried", "fallbacks", "escalated", "failed", "stuck")


def ladder_text(phase: Mapping[str, Any]) -> Text:
    """What the failure ladder did, e.g. ``1 retried · 2 escalated``; ``-`` when nothing."""
    parts = [f"{phase[k]} {k}" for k in _LADDER if phase.get(k)]
    if not parts:
        return Text("-", style="dim")
    bad = phase.get("escalated") or phase.get("failed") or phase.get("stuck")
    return Text(" · ".join(parts), style="magenta" if bad else "yellow")


def phases_table(
    phases: Mapping[str, Mapping[str, Any]],
    timeline: Sequence[Mapping[str, Any]] = (),
    title: str = "phases",
    unpriced: Collection[str] = (),
) -> Table:
    """Per-phase status, counts, what the failure ladder did, usage and (when known) timing;
    the USD of the `unpriced` phases (a model without a price played in them) is marked."""
    spans = {span["phase"]: span for span in timeline}
    table = _table(title)
    table.add_column("phase", no_wrap=True)
    table.add_column("status", no_wrap=True)
    if spans:
        table.add_column("took", justify="right", no_wrap=True)
    table.add_column("accepted", justify="right", no_wrap=True)
    if not spans:  # the timeline has a table of outcomes that counts dispatches instead
        table.add_column("dispatches", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("USD", justify="right", no_wrap=True)
    table.add_column("ladder", min_width=12)
    for name, phase in phases.items():
        usage = phase.get("usage", {})
        cells: list[str | Text] = [name, status_text(phase["status"])]
        if spans:
            cells.append(fmt_seconds(spans.get(name, {}).get("seconds")))
        cells.append(f"{phase['accepted']}/{phase['items']}")
        if not spans:
            cells.append(str(phase["dispatched"]))
        cells += [
            fmt_tokens(_tokens(usage)),
            usd_text(float(usage.get("usd", 0.0)), name in unpriced),
            ladder_text(phase),
        ]
        table.add_row(*cells)
    return table


def roles_table(
    usage_by_role: Mapping[str, Mapping[str, Any]],
    total: Mapping[str, Any],
    unpriced: Collection[str] = (),
) -> Table:
    """Usage and cost per role, with the run's total; the `unpriced` roles' USD (a model
    without a price) is ``unknown``, and the total a lower bound."""
    table = _table("usage by role")
    table.show_footer = True
    table.add_column("role", footer="total", no_wrap=True)
    columns = (
        ("dispatches", "steps"),
        ("requests", "requests"),
        ("tool calls", "tool_calls"),
    )
    for label, key in columns:
        table.add_column(label, footer=str(total.get(key, 0)), justify="right")
    table.add_column("tokens", footer=fmt_tokens(_tokens(total)), justify="right")
    total_usd = usd_text(float(total.get("usd", 0.0)), bool(unpriced))
    table.add_column("USD", footer=total_usd, justify="right")
    for role, usage in usage_by_role.items():
        table.add_row(
            role,
            *(str(usage.get(key, 0)) for _, key in columns),
            fmt_tokens(_tokens(usage)),
            usd_text(float(usage.get("usd", 0.0)), role in unpriced, whole=True),
        )
    return table


ITEMS_SHOWN = 10
"""Items `hubspoke show` lists, most expensive first (`--json` has them all)."""


def items_table(
    items: Mapping[str, Mapping[str, Any]], unpriced: Collection[str] = ()
) -> Table | None:
    """The most expensive items (USD, then tokens), at most `ITEMS_SHOWN`; `None` for a run
    of one item or none (the tables of phases and roles say it all)."""
    if len(items) < 2:
        return None

    def cost(entry: tuple[str, Mapping[str, Any]]) -> tuple[float, int]:
        usage = entry[1]["usage"]
        return float(usage.get("usd", 0.0)), _tokens(usage)

    ranked = sorted(items.items(), key=cost, reverse=True)[:ITEMS_SHOWN]
    shown = (
        f"{len(ranked)} of {len(items)}, most expensive first" if len(items) > len(ranked) else ""
    )
    table = _table(f"cost by item ({shown})" if shown else "cost by item")
    table.add_column("item", no_wrap=True)
    table.add_column("role", no_wrap=True)
    for label in ("dispatches", "requests", "tokens", "USD"):
        table.add_column(label, justify="right", no_wrap=True)
    for key, entry in ranked:
        usage = entry["usage"]
        table.add_row(
            Text(key),  # an item key is no markup: "search[s1]" is not a style
            str(entry.get("role") or "-"),
            str(usage.get("steps", 0)),
            str(usage.get("requests", 0)),
            fmt_tokens(_tokens(usage)),
            usd_text(float(usage.get("usd", 0.0)), key in unpriced),
        )
    return table


def run_models_table(models: Mapping[str, Mapping[str, Any]]) -> Table:
    """The models a run's agent roles played with, as recorded when it started."""
    table = _table("models")
    for name in ("role", "binding", "from", "USD/Mtok in / out"):
        table.add_column(name, no_wrap=name != "USD/Mtok in / out")
    for role, entry in models.items():
        table.add_row(
            role,
            str(entry.get("binding", "-")),
            str(entry.get("source", "-")),
            fmt_price(entry.get("price")),
        )
    return table


def _next(summary: Mapping[str, Any], db_flag: str, always: Sequence[str]) -> str:
    """Commands worth running next, e.g. ``next: hubspoke board --run RUN · hubspoke show
    RUN``; for a waiting run, how to decide and go on."""
    run_id = summary["run_id"]
    commands = [f"hubspoke {c} {run_id}{db_flag}" for c in always]
    if summary.get("status") == "waiting":
        commands.insert(0, f"hubspoke resume {run_id}{db_flag} (once decided)")
        commands.insert(0, f"hubspoke card approve|answer|skip CARD{db_flag}")
    if summary.get("cards"):
        commands.insert(0, f"hubspoke board --run {run_id}{db_flag}")
    if summary.get("status") == "running":
        commands.insert(0, f"hubspoke resume {run_id}{db_flag}")
    return "next: " + " · ".join(commands)


def _headline(summary: Mapping[str, Any], elapsed: float | None) -> Text:
    line = Text("run ")
    line.append(str(summary["run_id"]), style="bold")
    line.append(" ")
    line.append_text(status_text(str(summary["status"])))
    if elapsed is not None:
        line.append(f" in {fmt_seconds(elapsed)}")
    if summary.get("workflow"):
        line.append(f" · workflow {summary['workflow']}")
    return line


def _board_line(summary: Mapping[str, Any]) -> Text | None:
    in_review, escalations = summary.get("cards_in_review", 0), summary.get("escalations", 0)
    if not in_review and not escalations:
        return None
    return Text(
        f"board: {in_review} card(s) waiting for review, "
        f"{escalations} item(s) escalated to a person",
        style="bold",
    )


def print_run_summary(
    console: Console,
    summary: Mapping[str, Any],
    elapsed: float | None,
    db_flag: str,
    *,
    result: Any = None,
    unpriced: Mapping[str, Any] | None = None,
) -> None:
    """The human summary printed when a run (or a resumed run) ends.

    Args:
        console: where to print (stdout).
        summary: `RunState.summary()` of the run.
        elapsed: seconds the run took, if known.
        db_flag: the `--db` option to repeat in the hints (``""`` for the default journal).
        result: the workflow's result as JSON-able data (already scrubbed), printed as indented
            JSON under ``result:``; None when the workflow has none (or the run did not complete).
        unpriced: where the USD cost is unknown (`report.unpriced`).
    """
    unknown = unpriced or {}
    console.print(_headline(summary, elapsed))
    if summary.get("reason"):
        console.print(f"reason: {summary['reason']}", markup=False, highlight=False)
    if summary["phases"]:
        console.print(phases_table(summary["phases"], unpriced=unknown.get("phases", ())))
    if summary["usage_by_role"]:
        console.print(
            roles_table(summary["usage_by_role"], summary["usage"], unknown.get("roles", ()))
        )
    _unpriced_line(console, unknown)
    if result is not None:
        console.print("result:", style="bold", highlight=False)
        console.print_json(data=result, indent=2, default=str)
    board_line = _board_line(summary)
    if board_line is not None:
        console.print(board_line)
    console.print(
        _next(summary, db_flag, ("show", "artifacts")),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _unpriced_line(console: Console, unpriced: Mapping[str, Any]) -> None:
    if unpriced.get("roles"):
        console.print(
            Text(
                f"USD unknown for {', '.join(unpriced['roles'])}: their model has no known price "
                "(price it in hubspoke.toml [prices] or HUBSPOKE_PRICES; see hubspoke models)",
                style="yellow",
            ),
            soft_wrap=True,
        )


def plan_table(phase: str, plan: Mapping[str, Any]) -> Table:
    """A planned phase's plan (`report.plan_report`): each step, its role, what it waits for,
    the plan that made it, its status and its brief's objective; the latest plan's rationale
    under it."""
    facts = [f"{plan['plans']} plan{'s' if plan['plans'] != 1 else ''} accepted"]
    if plan["rejected"]:
        facts.append(f"{plan['rejected']} rejected")
    if plan["stalls"]:
        facts.append(f"{len(plan['stalls'])} stalled")
    title = f"plan of {phase} ({', '.join(facts)})"
    table = _table(title)
    table.min_width = len(title) + 2
    for name in ("step", "role", "after", "plan", "status"):
        table.add_column(name)
    table.add_column("objective", overflow="fold")
    if plan.get("rationale"):
        table.caption = Text(f"why: {plan['rationale']}")
        table.caption_justify = "left"
    for step in plan["steps"]:
        table.add_row(
            step["id"],
            step["role"],
            ", ".join(step["after"]) or "-",
            str(step["revision"]),
            status_text(step["status"]),
            Text(step.get("objective") or "-"),  # the planner's words: no markup
        )
    return table


def route_table(phase: str, route: Mapping[str, Any]) -> Table:
    """A routed phase's decisions (`report.route_report`): each turn's action, the step it
    dispatched, its role and status, or what it asked or why it aborted."""
    turns = len(route["decisions"])
    title = f"router of {phase} ({turns} decision{'s' if turns != 1 else ''}"
    title += f", {route['rejected']} rejected)" if route["rejected"] else ")"
    table = _table(title)
    table.min_width = len(title) + 2
    for name in ("turn", "action", "step", "role", "status"):
        table.add_column(name)
    for d in route["decisions"]:
        table.add_row(
            str(d["turn"]),
            d["action"],
            d.get("step", "-"),
            d.get("role", "-"),
            status_text(d["status"]) if "status" in d else d.get("note", "-"),
        )
    return table


def print_show(console: Console, report: Mapping[str, Any], db_flag: str) -> None:
    """`hubspoke show`: header, timeline of phases, the plans of planned phases, outcomes,
    models, usage by role, the most expensive items, board, hints."""
    unknown: Mapping[str, Any] = report.get("unpriced") or {}
    console.print(_headline(report, report.get("elapsed")))
    facts = [f"created {fmt_time(report.get('created'))}"]
    if report.get("finished") is not None:
        facts.append(f"finished {fmt_time(report['finished'])}")
    facts.append(f"{report['steps']} dispatches, {report['events']} events")
    if report.get("parent_run") and report.get("parent_item") is None:  # a shared run's
        facts.append(f"shard of shared run {report['parent_run']}")
    elif report.get("parent_run"):
        facts.append(f"child of {report['parent_run']} ({report.get('parent_item')})")
    if report.get("ref"):
        facts.append(f"workflow ref {report['ref']}")
    console.print(" · ".join(facts), markup=False, highlight=False)
    if report.get("reason"):
        console.print(f"reason: {report['reason']}", markup=False, highlight=False)
    if report["phases"]:
        console.print(
            phases_table(
                report["phases"],
                report.get("timeline", ()),
                title="timeline",
                unpriced=unknown.get("phases", ()),
            )
        )
    for phase, plan in (report.get("plans") or {}).items():
        console.print(plan_table(phase, plan))
    for phase, route in (report.get("routes") or {}).items():
        console.print(route_table(phase, route))
    if report["outcomes"]:
        outcomes = _table("outcomes")
        outcomes.add_column("outcome")
        outcomes.add_column("count", justify="right")
        for kind, count in report["outcomes"].items():
            outcomes.add_row(kind, str(count))
        console.print(outcomes)
    if report.get("models"):
        console.print(run_models_table(report["models"]))
    if report["usage_by_role"]:
        console.print(
            roles_table(report["usage_by_role"], report["usage"], unknown.get("roles", ()))
        )
    items = items_table(report.get("items") or {}, unknown.get("items", ()))
    if items is not None:
        console.print(items)
    _unpriced_line(console, unknown)
    if report.get("children"):
        console.print("sub-runs: " + ", ".join(report["children"]), markup=False, highlight=False)
    board_line = _board_line(report)
    if board_line is not None:
        console.print(board_line)
    console.print(
        _next(report, db_flag, ("events", "artifacts")),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


# artifacts, cards, events ------------------------------------------------------------------------


def artifacts_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    table = _table(f"artifacts ({len(rows)})")
    table.add_column("artifact", no_wrap=True)
    table.add_column("phase")
    table.add_column("item", no_wrap=True)
    table.add_column("role")
    table.add_column("content")
    for row in rows:
        table.add_row(
            row["id"],
            row["phase"],
            row["item"],
            row["role"],
            Text(short_json(row["content"], 160), overflow="fold"),
        )
    return table


def board(
    console: Console, grouped: Mapping[str, Sequence[Mapping[str, Any]]], *, one_run: bool
) -> None:
    """`hubspoke board` (and `cards`): one table per non-empty column."""
    shown = False
    names = (
        ("card", "item", "title", "risk", "note")
        if one_run
        else ("card", "run", "item", "title", "risk", "note")
    )
    for column, cards in grouped.items():
        if not cards:
            continue
        shown = True
        table = _table(f"{column} ({len(cards)})")
        for name in names:
            table.add_column(name, no_wrap=name in ("card", "run", "item", "risk"))
        for card in cards:
            cells: list[str | Text] = [
                card["id"],
                Text(card["item"]),
                Text(card["title"]),
                card["risk"],
                Text(card["note"] or "-"),
            ]
            if not one_run:
                cells.insert(1, card["run_id"])
            table.add_row(*cells)
        console.print(table)
    if not shown:
        console.print("no cards: only phases with review=True and escalated items make cards")


def outbox_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """`hubspoke outbox`: oldest first."""
    table = _table(f"outbox ({len(rows)})")
    for name in ("key", "run", "item", "created", "content"):
        table.add_column(name, no_wrap=name != "content")
    for row in rows:
        table.add_row(
            row["key"],
            row["run_id"],
            Text(row["item"]),
            fmt_time(row["created"]),
            Text(short_json(row["content"], 120)),
        )
    return table


def event_line(event: Event, origin: float) -> str:
    """One event on one line: seq, time since the run's start, kind, where, and its data."""
    where = " ".join(
        part
        for part in (
            event.phase or "",
            event.item or "",
            f"role={event.role}" if event.role else "",
            f"attempt={event.attempt}" if event.attempt is not None else "",
        )
        if part
    )
    data = short_json(event.data, 100) if event.data else ""
    line = f"{event.seq:>6} {event.ts - origin:>+9.3f}s {event.kind.value:<18} {where:<36} {data}"
    return line.rstrip()


# models ------------------------------------------------------------------------------------------


def fmt_price(price: Mapping[str, Any] | None) -> Text:
    """A price per million tokens, e.g. ``$2 / $10 (cached $0.2)``; ``unknown`` in red."""
    if price is None:
        return Text("unknown", style="bold red")
    text = f"${price['input']:g} / ${price['output']:g}"
    if price.get("cached_input") is not None:
        text += f" (cached ${price['cached_input']:g})"
    return Text(text)


def _key_cell(key: Mapping[str, Any] | None) -> Text:
    if key is None:
        return Text("-", style="dim")
    if key["set"]:
        return Text(f"{key['variable']} set", style="green")
    return Text(f"{key['variable']} NOT SET", style="bold red")


def _server_cell(row: Mapping[str, Any]) -> Text:
    endpoint = row.get("endpoint")
    if endpoint is None:
        return Text("-", style="dim")
    text = Text(endpoint["url"] or "provider default")
    if endpoint["from"] not in ("binding", "default"):
        text.append(f" ({endpoint['from']})", style="dim")
    reachable = row.get("reachable")
    if reachable is True:
        text.append(" ✓", style="green")
    elif reachable is False:
        text.append(" unreachable", style="bold red")
    return text


def models_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    """`hubspoke models WORKFLOW`: each agent role's binding, where it came from, its price
    (USD per million tokens in / out), key, server and per-request settings."""
    table = _table("models")
    for name in ("role", "binding", "from", "USD/Mtok in / out", "key", "server", "settings"):
        table.add_column(name, no_wrap=name in ("role", "binding"))
    for row in rows:
        price = fmt_price(row["price"])
        if row["price"] is None and row["usd_limited"]:
            price.append(" under a USD budget", style="bold red")
        settings = ", ".join(f"{k}={v}" for k, v in row["settings"].items())
        table.add_row(
            row["role"],
            row["binding"],
            row["source"],
            price,
            _key_cell(row["key"]),
            _server_cell(row),
            settings,
        )
    return table


def print_models(console: Console, report: Mapping[str, Any]) -> None:
    """`hubspoke models WORKFLOW` as text."""
    config = report["config"] or "none (no hubspoke.toml here)"
    console.print(
        f"workflow {report['workflow']} · configuration {config} · prices {report['prices']}",
        markup=False,
        highlight=False,
    )
    if report["roles"]:
        console.print(models_table(report["roles"]))
    else:
        console.print("no agent roles: this workflow calls no model", highlight=False)
    for problem in report["problems"]:
        console.print(Text("problem: ", style="bold red") + Text(problem), soft_wrap=True)


def print_config(console: Console, report: Mapping[str, Any]) -> None:
    """`hubspoke models` without a workflow: what the configuration sets."""
    facts = [
        f"configuration: {report['config'] or 'none (no hubspoke.toml here)'}",
        f"every agent role: {report['default'] or '-'} (hubspoke.toml [models] default)",
    ]
    facts += [f"{name}={value} (environment)" for name, value in report["environment"].items()]
    facts += [
        f"role {role}: {binding} ([models.roles])" for role, binding in report["roles"].items()
    ]
    if report["settings"]:
        facts.append("settings: " + ", ".join(f"{k}={v}" for k, v in report["settings"].items()))
    for role, settings in report["role_settings"].items():
        facts.append(f"settings of {role}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    for endpoint in report["endpoints"]:
        key = endpoint["key"]
        state = "-" if key is None else f"{key['variable']} {'set' if key['set'] else 'NOT SET'}"
        url = endpoint["base_url"] or "provider default"
        facts.append(f"endpoint {endpoint['name']}: {url}, key {state}")
    facts.append(f"prices: {report['prices']}")
    if report["price_overrides"]:
        facts.append("priced by configuration: " + ", ".join(report["price_overrides"]))
    for fact in facts:
        console.print(fact, markup=False, highlight=False, soft_wrap=True)
    console.print(
        "see a workflow's bindings with: hubspoke models FILE.py:NAME (or a demo name)",
        markup=False,
        highlight=False,
    )
