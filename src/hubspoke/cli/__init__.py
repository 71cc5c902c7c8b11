"""The `hubspoke` command: run workflows, read their journals, decide their cards.

Commands that run (`demo`, `run`, `resume`) drive a `Foreman` and show its progress; the others
read the journal (`runs`, `show`, `events`, `artifacts`, `board` and its alias `cards`,
`outbox`, `card show`) or the configuration (`models`); the verbs of `card` (`hubspoke.cli.cards`)
write people's decisions; `ui` serves the web app (`hubspoke.web`, the `web` extra). Everything
they print about runs comes from the journal, the same source resume and replay use.

Only the commands that run import the foreman (and with it the model layer), inside their
bodies: `hubspoke --help` and the reading commands start without them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hubspoke.cli.cards import card_app
from hubspoke.cli.config import DB_ENV, resolve_db
from hubspoke.cli.demos import DEMOS
from hubspoke.cli.failures import UsageError, friendly_errors
from hubspoke.errors import InputError

# What a command needs beyond its options (the journal, the tables, the foreman) is imported in
# its body, so that `hubspoke --help` loads no more than Typer and Rich do (see
# benchmarks/startup.py) and the reading commands never load the foreman or pydantic-ai.

if TYPE_CHECKING:
    from hubspoke.cli.running import RunSettings

__all__ = ["app", "main"]

app = typer.Typer(
    name="hubspoke",
    help=(
        "Run foreman workflows and read their journals.\n\n"
        "Every command works on one journal: an SQLite file, or a PostgreSQL database shared by "
        "several machines (--db postgresql://USER@HOST/DB). Which one: --db if given, "
        f"else ${DB_ENV}, else ./hubspoke.db in the current directory.\n\n"
        "Exit codes: 0 the command worked and the run ended (completed, escalated or "
        "exhausted); 1 the run ended failed or aborted; 2 bad arguments or input, nothing ran; "
        "130 interrupted (Ctrl-C or SIGTERM), resume with hubspoke resume RUN.\n\n"
        "Start with: hubspoke demo sales"
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(card_app, name="card")

_DB_HELP = (
    "Journal: an SQLite file, or a PostgreSQL database (postgresql://USER@HOST/DB). "
    f"Default: ${DB_ENV} if set, else ./hubspoke.db."
)

DbOption = Annotated[
    str | None, typer.Option("--db", metavar="PATH|URL", help=_DB_HELP, show_default=False)
]
RunArgument = Annotated[
    str,
    typer.Argument(
        metavar="RUN",
        help="A run id, or a prefix of one that matches a single run (see hubspoke runs).",
        show_default=False,
    ),
]
InputOption = Annotated[
    str | None,
    typer.Option(
        "--input",
        "-i",
        metavar="JSON|@FILE",
        help="The run's input: a JSON object, or @path to a file holding one.",
        show_default=False,
    ),
]
LatencyOption = Annotated[
    float,
    typer.Option(
        "--latency",
        metavar="MS",
        min=0,
        help="Milliseconds each request to the bundled offline model takes (to watch a run).",
    ),
]
ModelOption = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        metavar="[ROLE=]BINDING",
        help=(
            "Play every agent role with this model (BINDING), or one role (ROLE=BINDING; "
            "repeatable), over the environment, hubspoke.toml and the cards: offline, "
            "openai:MODEL, openai-chat:MODEL, anthropic:MODEL or "
            "openai-compatible:MODEL@http://127.0.0.1:8000/v1. See: hubspoke models."
        ),
        show_default=False,
    ),
]

OtelOption = Annotated[
    bool,
    typer.Option(
        "--otel-console",
        help=(
            "Print the run's OpenTelemetry span tree (GenAI conventions: one line per span, "
            "with tokens and cost) to stderr when it ends. Needs: pip install 'hubspoke[otel]'."
        ),
    ),
]

OtelExportOption = Annotated[
    bool | None,
    typer.Option(
        "--otel/--no-otel",
        help=(
            "Send the run's OpenTelemetry spans where the OTEL_* variables say "
            "(OTEL_TRACES_EXPORTER: otlp or console; OTEL_EXPORTER_OTLP_ENDPOINT, default "
            "http://localhost:4318), or do not trace whatever they say. Without either, the "
            "run is traced only if the variables ask for it. Needs: pip install "
            "'hubspoke[otel]'. See docs/tracing.md."
        ),
        show_default=False,
    ),
]

ExecutorOption = Annotated[
    str,
    typer.Option(
        "--executor",
        metavar="local|pool[:N]|ray[:ADDRESS]",
        help=(
            "Where specialists run: local (in this process); pool: in worker processes on "
            "this machine, one per CPU, started for the run (pool:N for N of them); or ray: "
            "on a Ray cluster, the one RAY_ADDRESS names or a local one for this run; "
            "ray:auto the one `ray start --head` started on this machine; ray:HOST:PORT any "
            "cluster's head (needs: pip install 'hubspoke[ray]'). See docs/scale.md."
        ),
    ),
]

RunJson = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print only one JSON summary of the run on stdout (progress still goes to stderr).",
    ),
]


def _version(value: bool) -> None:
    if value:
        from hubspoke import __version__

        typer.echo(f"hubspoke {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run foreman workflows and read their journals."""


def _settings(
    db: str | None,
    json_output: bool,
    latency: float,
    model: list[str] | None,
    otel_console: bool = False,
    otel: bool | None = None,
    executor: str = "local",
    share: bool = False,
) -> RunSettings:
    from hubspoke.cli.running import RunSettings

    return RunSettings(
        resolve_db(db),
        json_output,
        latency,
        tuple(model or ()),
        otel_console,
        otel,
        executor,
        share,
    )


# running -------------------------------------------------------------------------------------


@app.command()
def demo(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help=f"The demo: {', '.join(DEMOS)}.", show_default=False),
    ],
    question: Annotated[
        str | None,
        typer.Argument(
            metavar="[QUESTION]",
            help="The research demo's question (the others take none).",
            show_default=False,
        ),
    ] = None,
    input: InputOption = None,
    json_output: RunJson = False,
    db: DbOption = None,
    latency: LatencyOption = 0.0,
    model: ModelOption = None,
    otel_console: OtelOption = False,
    otel: OtelExportOption = None,
    executor: ExecutorOption = "local",
) -> None:
    """Run a bundled example end to end, offline (no API key, no network).

    The demo runs on its bundled input unless --input gives another (or QUESTION, for the
    research demo). Progress shows live on a terminal; at the end comes a summary with counts,
    usage and cost per phase and per role, the cards waiting for review, and the demo's result
    (the research demo's answer).

    With --model the demo's agents play on a real model instead (see docs/models.md).

    Exit code: 0 when the run ends, 1 when it ends failed or aborted, 2 for bad arguments or
    input, or a model that cannot be used (a key not set, a server that does not answer),
    130 on Ctrl-C or SIGTERM (then: hubspoke resume RUN).

    Example: hubspoke demo sales --latency 200

    Example: hubspoke demo research "What did the Corvel Bridge cost?"

    Example: hubspoke demo sales --otel-console

    Example: hubspoke demo sales --model openai-compatible:smollm2@http://127.0.0.1:8080/v1
    """
    from hubspoke.cli.demos import demo_input
    from hubspoke.cli.inputs import parse_input
    from hubspoke.cli.running import start_run

    with friendly_errors():
        chosen = DEMOS.get(name)
        if chosen is None:
            known = "; ".join(f"{d.name} ({d.about})" for d in DEMOS.values())
            raise UsageError(f"unknown demo {name!r}. Known demos: {known}.")
        if input is not None and question is not None:
            raise UsageError("give the question or --input, not both")
        data = parse_input(input) if input is not None else demo_input(chosen, question)
        code = start_run(
            chosen.ref,
            data,
            _settings(db, json_output, latency, model, otel_console, otel, executor),
        )
    raise typer.Exit(code)


@app.command()
def run(
    workflow: Annotated[
        str,
        typer.Argument(
            metavar="FILE.py:NAME|MODULE:NAME",
            help="Where the workflow is: a Python file or an importable module, and its name.",
            show_default=False,
        ),
    ],
    input: InputOption = None,
    json_output: RunJson = False,
    db: DbOption = None,
    latency: LatencyOption = 0.0,
    model: ModelOption = None,
    otel_console: OtelOption = False,
    otel: OtelExportOption = None,
    executor: ExecutorOption = "local",
    share: Annotated[
        bool,
        typer.Option(
            "--share",
            help=(
                "Let other processes work this run's fan-out phases: hubspoke join RUN --db "
                "(the same store) on any machine. See docs/scale.md."
            ),
        ),
    ] = False,
) -> None:
    """Run a workflow on an input, to its end.

    NAME may be a Workflow or a function of no arguments that returns one. A MODULE is looked up
    in the current directory first, then among installed packages. Without --input the
    input is {}. The reference, latency and each role's model are kept with the run, so
    hubspoke resume rebuilds it the same way. Which model plays each role: --model, then
    $HUBSPOKE_MODEL_<ROLE> and $HUBSPOKE_MODEL, then ./hubspoke.toml, then the cards (see
    hubspoke models).

    Exit code: 0 when the run ends, 1 when it ends failed or aborted, 2 for bad arguments or
    input, or a model that cannot be used (a key not set, a server that does not answer, a USD
    budget over a model without a price), 130 on Ctrl-C or SIGTERM (then: hubspoke resume RUN).

    Example: hubspoke run flows/outreach.py:workflow --input '{"company": "Acme"}'

    Example: hubspoke run mypkg.flows:outreach --input @input.json --json

    Example: OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 hubspoke run flows/a.py:workflow

    Example: hubspoke run flows/outreach.py:workflow --executor ray:auto
    """
    from hubspoke.cli.inputs import parse_input
    from hubspoke.cli.running import start_run

    with friendly_errors():
        data = parse_input(input) if input is not None else {}
        try:
            code = start_run(
                workflow,
                data,
                _settings(db, json_output, latency, model, otel_console, otel, executor, share),
            )
        except InputError as e:
            if input is None and str(e).startswith("input does not match"):
                raise UsageError(f"{e}; give the run's input with --input JSON or @file") from None
            raise
    raise typer.Exit(code)


@app.command()
def resume(
    run: RunArgument,
    json_output: RunJson = False,
    db: DbOption = None,
    workflow: Annotated[
        str | None,
        typer.Option(
            "--workflow",
            "-w",
            metavar="FILE.py[:NAME]|MODULE:NAME",
            help=(
                "Load the workflow from here instead of the reference kept with the run (a file "
                "that moved). Without :NAME, the name kept with the run."
            ),
            show_default=False,
        ),
    ] = None,
    otel_console: OtelOption = False,
    otel: OtelExportOption = None,
    executor: ExecutorOption = "local",
) -> None:
    """Continue a run that stopped before its end (Ctrl-C, SIGTERM, a crash, a killed process).

    Accepted items are never dispatched again; items that were in flight run again. The
    workflow, latency and each role's model are the ones the run was started with; the
    workflow must not have changed since (its phases, roles, schemas, tools), or resume refuses
    with exit 2 and says what changed. Limits, prompts and the code of functions may change. A
    run that already ended is left as it is (exit 0). Fails with exit 2 while another process
    holds the run.

    Exit code: 0 when the run ends, 1 when it ends failed or aborted, 2 for bad arguments or
    input, or a changed workflow, 130 on Ctrl-C or SIGTERM (then: hubspoke resume RUN).

    Example: hubspoke resume run_3f2a

    Example: hubspoke resume run_3f2a --workflow flows/moved.py
    """
    from hubspoke.cli.running import RunSettings, resume_run

    with friendly_errors():
        code = resume_run(
            run,
            RunSettings(
                resolve_db(db),
                json_output,
                otel_console=otel_console,
                otel=otel,
                executor=executor,
            ),
            workflow,
        )
    raise typer.Exit(code)


@app.command()
def join(
    run: RunArgument,
    db: DbOption = None,
    workflow: Annotated[
        str | None,
        typer.Option(
            "--workflow",
            "-w",
            metavar="FILE.py:NAME|MODULE:NAME",
            help="Load the workflow from here instead of the reference kept with the run.",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Items this process runs at once.")
    ] = 16,
    idle: Annotated[
        float | None,
        typer.Option(
            "--idle",
            metavar="SECONDS",
            help="Leave after this long with nothing to do (default: when the run ends).",
            show_default=False,
        ),
    ] = None,
    ttl: Annotated[
        float,
        typer.Option(
            "--ttl",
            metavar="SECONDS",
            help="How long an item's lease lasts unless renewed: how soon the items of a "
            "joiner that died go to another process.",
        ),
    ] = 30.0,
    executor: ExecutorOption = "local",
    json_output: Annotated[
        bool, typer.Option("--json", help="Print {run_id, items} as JSON.")
    ] = False,
) -> None:
    """Work the items of a run another foreman shares (started with --share), until it ends.

    Each item this process leases runs its whole failure ladder here and is journaled in a
    shard run of this process (RUN.joiner-xxxxxxxx); the run's owner validates each output and
    journals it in the run. Needs the run's store: a Postgres database shared by the machines
    (or, on one machine, the same SQLite file).

    Exit code: 0 once the run has ended (at once for a run that is not running: ended, or
    waiting for people), 130 on Ctrl-C or SIGTERM (its items go back to the run at once), 2 for
    bad arguments, a run that does not exist or was not started with --share, or a workflow
    that is not the run's.

    Example: hubspoke join run_3f2a --db postgresql://hubspoke@db.internal/runs
    """
    from hubspoke.cli.joining import join_run

    with friendly_errors():
        code = join_run(
            run,
            resolve_db(db),
            workflow,
            concurrency=concurrency,
            idle=idle,
            ttl=ttl,
            executor=executor,
            json_output=json_output,
        )
    raise typer.Exit(code)


@app.command()
def replay(
    run: RunArgument,
    db: DbOption = None,
    workflow: Annotated[
        str | None,
        typer.Option(
            "--workflow",
            "-w",
            metavar="FILE.py:NAME|MODULE:NAME",
            help="Replay this workflow instead of the one recorded with the run.",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as a JSON object.")
    ] = False,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            metavar="FILE",
            help=(
                "Write the run to a new journal file of its own instead of replaying it (to keep "
                "in a test folder: hubspoke.testing.assert_replays)."
            ),
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run a recorded run's workflow again, offline, on its recorded model responses.

    Every agent request is answered with the recorded response of the same request (phase,
    role, item, attempt, index) and compared with the recorded request: the prompt, the tools
    offered, the settings. Function specialists and tools run again; side-effecting tools are
    answered from the run's journal. The recorded run is only read.

    Prints `identical` (exit 0) or the first divergence: where, and what differed, with a short
    diff (exit 1). Exit 2 for a run recorded without its requests and responses.

    Example: hubspoke replay run_3f2a

    Example: hubspoke replay run_3f2a --workflow flows/sales.py:workflow --json

    Example: hubspoke replay run_3f2a --export tests/runs/sales.db
    """
    from hubspoke.cli.replaying import replay_run

    with friendly_errors():
        code = replay_run(run, resolve_db(db), workflow, json_output=json_output, export=export)
    raise typer.Exit(code)


# the configuration ---------------------------------------------------------------------------


@app.command()
def models(
    workflow: Annotated[
        str | None,
        typer.Argument(
            metavar="[FILE.py:NAME|MODULE:NAME|DEMO]",
            help="The workflow (or a demo's name); without it, what the configuration sets.",
            show_default=False,
        ),
    ] = None,
    model: ModelOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Also probe each server (GET {base_url}/models, 2 s at most)."
        ),
    ] = False,
) -> None:
    """List each agent role's model: its binding and where it came from (cli, env VARIABLE,
    hubspoke.toml, card or workflow default), its price in USD per million tokens, whether
    its API key is set and which server it reaches, and its per-request settings.

    Reads the cards, ./hubspoke.toml and the environment; touches the network only with
    --check. Exit code: 0 when every model could be used, 1 when a problem is listed (a key
    not set, a USD budget over a model without a price, with --check a server that does not
    answer), 2 for bad arguments or configuration.

    Example: hubspoke models sales --model personalization=anthropic:claude-haiku-4-5

    Example: hubspoke models flows/outreach.py:workflow --check --json
    """
    from hubspoke.cli.demos import DEMOS
    from hubspoke.cli.inputs import normalise_ref
    from hubspoke.cli.models import config_report, models_report, parse_model_options
    from hubspoke.cli.render import output_console, print_config, print_models
    from hubspoke.loader import load_workflow
    from hubspoke.models.config import Config

    with friendly_errors():
        config = Config.load()
        if workflow is None:
            if model:
                raise UsageError("--model needs a workflow: hubspoke models WORKFLOW --model ...")
            report = config_report(config)
        else:
            demo = DEMOS.get(workflow)
            loaded = load_workflow(demo.ref if demo else normalise_ref(workflow))
            loaded.check()
            override = parse_model_options(model or (), loaded)
            report = models_report(loaded, config, override, check=check)
    if json_output:
        typer.echo(json.dumps(report))
    elif workflow is None:
        print_config(output_console(), report)
    else:
        print_models(output_console(), report)
    raise typer.Exit(1 if report.get("problems") else 0)


# reading the journal -------------------------------------------------------------------------


@app.command()
def runs(
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Runs to list.")] = 50,
    db: DbOption = None,
) -> None:
    """List runs, newest first: id, workflow, status, created, parent (for sub-runs).

    Example: hubspoke runs --limit 10
    """
    from hubspoke.cli.render import output_console, runs_table
    from hubspoke.cli.report import run_row
    from hubspoke.cli.store import open_store

    with friendly_errors(), open_store(resolve_db(db), read_only=True) as store:
        rows = [run_row(r, store.holder(r.run_id)) for r in store.runs(limit)]
    if json_output:
        typer.echo(json.dumps(rows))
    elif not rows:
        typer.echo("no runs yet; start one with: hubspoke demo sales")
    else:
        output_console().print(runs_table(rows))


@app.command()
def show(
    run: RunArgument,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    db: DbOption = None,
) -> None:
    """Show a run: timeline of phases, outcomes, usage and cost per phase and per role.

    Built from the run's journal alone, so it works for finished, failed and crashed runs.

    Example: hubspoke show run_3f2a --json
    """
    from hubspoke.cli.render import output_console, print_show
    from hubspoke.cli.report import run_report
    from hubspoke.cli.store import find_run, open_store

    resolved = resolve_db(db)
    with friendly_errors(), open_store(resolved, read_only=True) as store:
        record = find_run(store, run)
        report = run_report(record, store.events(record.run_id))
    if json_output:
        typer.echo(json.dumps(report))
    else:
        print_show(output_console(), report, resolved.flag())


def _kind_filter(kinds: list[str]) -> set[str]:
    """Event kinds selected by `--kind`: exact kinds or families (``item`` for ``item.*``)."""
    from hubspoke.events import EventKind

    values = {k.value for k in EventKind}
    families = {v.split(".")[0] for v in values}
    chosen: set[str] = set()
    for kind in kinds:
        if kind in values:
            chosen.add(kind)
        elif kind in families:
            chosen.update(v for v in values if v.startswith(kind + "."))
        else:
            raise UsageError(
                f"unknown event kind {kind!r}; use one of {', '.join(sorted(values))}, "
                f"or a family: {', '.join(sorted(families))}"
            )
    return chosen


@app.command()
def events(
    run: RunArgument,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per line (JSON Lines).")
    ] = False,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            "-k",
            metavar="KIND",
            help="Only events of this kind (item.escalated) or family (item); repeatable.",
            show_default=False,
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Print a run's journal, event by event, in order.

    With --json each line is an object with seq, ts, run_id, kind, phase, role, item, attempt
    and data.

    Example: hubspoke events run_3f2a --kind item.escalated --kind item.fallback
    """
    from hubspoke.cli.render import event_line
    from hubspoke.cli.store import find_run, open_store

    with friendly_errors(), open_store(resolve_db(db), read_only=True) as store:
        wanted = _kind_filter(kind) if kind else None
        record = find_run(store, run)
        stream = store.events(record.run_id)
    origin = stream[0].ts if stream else record.created
    selected = [e for e in stream if wanted is None or e.kind.value in wanted]
    if json_output:
        typer.echo("".join(json.dumps(e.to_dict()) + "\n" for e in selected), nl=False)
    else:
        for event in selected:
            typer.echo(event_line(event, origin))


@app.command()
def artifacts(
    run: RunArgument,
    phase: Annotated[
        str | None,
        typer.Option("--phase", "-p", help="Only this phase's artifacts.", show_default=False),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON list, content included.")
    ] = False,
    db: DbOption = None,
) -> None:
    """List the accepted outputs of a run (artifacts), with their content.

    Example: hubspoke artifacts run_3f2a --phase draft --json
    """
    from hubspoke.cli.render import artifacts_table, output_console
    from hubspoke.cli.report import artifact_row
    from hubspoke.cli.store import find_run, open_store

    with friendly_errors(), open_store(resolve_db(db), read_only=True) as store:
        record = find_run(store, run)
        rows = [artifact_row(a) for a in store.artifacts(record.run_id, phase)]
        if phase is not None and not rows:
            phases = list(dict.fromkeys(e.phase for e in store.events(record.run_id) if e.phase))
            if phase not in phases:
                raise UsageError(
                    f"run {record.run_id} has no phase {phase!r} (phases: {', '.join(phases)})"
                )
    if json_output:
        typer.echo(json.dumps(rows))
    else:
        output_console().print(artifacts_table(rows))


ColumnOption = Annotated[
    str | None,
    typer.Option(
        "--column",
        "-c",
        metavar="COLUMN",
        help=(
            "Only this column: review, escalated, parked, approved, amended, answered or skipped."
        ),
        show_default=False,
    ),
]


@app.command()
def board(
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            "-r",
            metavar="RUN",
            help="Only this run's cards (id or unique prefix).",
            show_default=False,
        ),
    ] = None,
    column: ColumnOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON object: column → list of cards.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Show the review board: cards by column (review, escalated, then the decided ones).

    Review-gated phases draft one card per accepted output; escalated items get a card too.
    Decide one with hubspoke card approve|amend|park|unpark|skip|answer|abort CARD.

    Example: hubspoke board --run run_3f2a --column review
    """
    _board(run, column, json_output, db)


@app.command()
def cards(
    run: Annotated[
        str | None,
        typer.Argument(
            metavar="RUN", help="Only this run's cards (id or unique prefix).", show_default=False
        ),
    ] = None,
    column: ColumnOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON object: column → list of cards.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Show the review board (the same as hubspoke board, with the run as an argument).

    Example: hubspoke cards run_3f2a
    """
    _board(run, column, json_output, db)


def _board(run: str | None, column: str | None, json_output: bool, db: str | None) -> None:
    from hubspoke.board import Column
    from hubspoke.cli.render import board, output_console
    from hubspoke.cli.report import cards_by_column
    from hubspoke.cli.store import find_run, open_store

    with friendly_errors():
        if column is not None and column not in {c.value for c in Column}:
            raise UsageError(
                f"unknown column {column!r}; use one of {', '.join(c.value for c in Column)}"
            )
        with open_store(resolve_db(db), read_only=True) as store:
            run_id = None if run is None else find_run(store, run).run_id
            grouped = cards_by_column(store.cards(run_id))
    if column is not None:
        grouped = {column: grouped[column]}
    if json_output:
        typer.echo(json.dumps(grouped))
    else:
        board(output_console(), grouped, one_run=run_id is not None)


@app.command("follow-ups")
def follow_ups(
    run: Annotated[
        str, typer.Argument(metavar="RUN", help="The run whose approved cards start follow-ups.")
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    db: DbOption = None,
) -> None:
    """Start the follow-up run of every approved (or amended) card of RUN that has none yet,
    and finish one a crash cut short: each card's follow-up runs once, however often this is
    called (`hubspoke card approve` does it after every approval).

    Example: hubspoke follow-ups run_3f2a
    """
    from hubspoke.cli.cards import follow_up_lines
    from hubspoke.cli.store import find_run, open_store

    with friendly_errors(), open_store(resolve_db(db), create=False) as store:
        run_id = find_run(store, run).run_id
        lines, done = follow_up_lines(store, run_id)
    if json_output:
        typer.echo(json.dumps(done))
    else:
        typer.echo("\n".join(lines) if lines else f"run {run_id} has no approved card to follow up")


@app.command()
def outbox(
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            "-r",
            metavar="RUN",
            help="Only what this run wrote (id or unique prefix).",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    db: DbOption = None,
) -> None:
    """List the outbox: the messages runs wrote instead of sending them, oldest first (each
    written once, however often the item that wrote it was accepted again). With --run: what
    that run and its follow-up runs wrote.

    Example: hubspoke outbox --run run_3f2a --json
    """
    from hubspoke.cli.render import outbox_table, output_console
    from hubspoke.cli.report import outbox_row
    from hubspoke.cli.store import find_run, open_store

    with friendly_errors(), open_store(resolve_db(db), read_only=True) as store:
        run_id = None if run is None else find_run(store, run).run_id
        # A run's messages, and those its follow-up runs wrote (`run_id.item.follow-up`).
        rows = [
            outbox_row(entry)
            for entry in store.outbox()
            if run_id is None or entry.run_id == run_id or entry.run_id.startswith(run_id + ".")
        ]
    if json_output:
        typer.echo(json.dumps(rows))
    elif not rows:
        typer.echo("the outbox is empty: no run wrote a message")
    else:
        output_console().print(outbox_table(rows))


@app.command()
def ui(
    db: DbOption = None,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            metavar="ADDRESS",
            help="Address to serve on. Anything but loopback needs --token (16+ characters).",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")
    ] = 8765,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="T",
            envvar="HUBSPOKE_UI_TOKEN",
            help="The access token every request needs. Default: a random one, printed.",
            show_default=False,
        ),
    ] = None,
    allow_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-host",
            metavar="NAME",
            help="A host name the browser may use besides 127.0.0.1 and localhost (repeatable).",
            show_default=False,
        ),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            metavar="NAME",
            help="Who decides, as the journal records it. Default: $USER, else 'unknown'.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve the web app: the board (decide cards), the runs and the run inspector.

    Prints the address to open, with an access token that every request needs (a cookie
    keeps it after the first visit). Binds 127.0.0.1 unless --host says otherwise; any other
    address needs an explicit --token. Decisions go through the same board as hubspoke card.
    Needs: pip install 'hubspoke[web]'.

    Example: hubspoke ui --db demo.db

    Example: hubspoke ui --port 9000 --token "$(openssl rand -hex 16)"

    Example: hubspoke ui --db postgresql://hubspoke@db.internal/hubspoke
    """
    from hubspoke.cli.ui import serve

    with friendly_errors():
        code = serve(
            resolve_db(db), host=host, port=port, token=token, hosts=allow_host or (), by=by
        )
    raise typer.Exit(code)


def main() -> None:
    """Entry point of the `hubspoke` script."""
    app()
