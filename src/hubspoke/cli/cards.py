"""`hubspoke card`: show one card of the board and decide it.

`show` only reads the journal (it loads no foreman); the verbs write one `card.decided` event
each through `hubspoke.decisions.Board`, under the run's lease. Exit codes: 0 decided, 2 a
refused decision or bad input (nothing written), 1 the store refused the write.

What the commands need (the board, the journal, the workflow) is imported in their bodies, so
that `hubspoke --help` stays light.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hubspoke.cli.config import DB_ENV, resolve_db
from hubspoke.cli.failures import EXIT_RUN_FAILED, EXIT_USAGE, UsageError, report_error
from hubspoke.errors import (
    AmendRefused,
    DecisionRefused,
    JournalWriteError,
    RunLocked,
    StoreError,
)
from hubspoke.journal.location import backend_errors, refusal_reason

if TYPE_CHECKING:
    from hubspoke.decisions import Board, Decision
    from hubspoke.journal.location import AnyStore

__all__ = ["card_app", "default_by"]

card_app = typer.Typer(
    name="card",
    help=(
        "Show one card of the board, or decide it: approve, amend, park, unpark or skip a "
        "review card; answer, skip or abort an escalated one. Each decision is a card.decided "
        "event in the run's journal (who, when, the column before and after).\n\n"
        "A card is named by its id or a unique prefix of it (see hubspoke board). A run a "
        "live process drives cannot be decided: decide when it waits for people or has ended.\n\n"
        "Exit codes: 0 decided; 2 the decision was refused or the input is wrong (nothing was "
        "written); 1 the journal refused the write."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="PATH|URL",
        help=(
            "Journal: an SQLite file, or a PostgreSQL database (postgresql://USER@HOST/DB). "
            f"Default: ${DB_ENV} if set, else ./hubspoke.db."
        ),
        show_default=False,
    ),
]
CardArgument = Annotated[
    str,
    typer.Argument(
        metavar="CARD",
        help="A card id, or a prefix of one that matches a single card (see hubspoke board).",
        show_default=False,
    ),
]
ByOption = Annotated[
    str | None,
    typer.Option(
        "--by",
        metavar="NAME",
        help="Who decides (kept in the journal). Default: $USER, else 'unknown'.",
        show_default=False,
    ),
]
NoteOption = Annotated[
    str, typer.Option("--note", metavar="TEXT", help="Why, in a few words (kept with it).")
]
WorkflowOption = Annotated[
    str | None,
    typer.Option(
        "--workflow",
        "-w",
        metavar="FILE.py:NAME|MODULE:NAME",
        help=(
            "The run's workflow, to check the edit against its role's schema. Default: the "
            "workflow kept with the run."
        ),
        show_default=False,
    ),
]


def default_by(environ: Mapping[str, str] | None = None) -> str:
    """Who decides when `--by` is not given: ``$USER``, else ``unknown``."""
    user = (os.environ if environ is None else environ).get("USER", "").strip()
    return user or "unknown"


@contextmanager
def _deciding(db: str | None, *, read_only: bool = False) -> Iterator[AnyStore]:
    """Open the journal; turn errors into a message and an exit code: 1 when the store refused
    the write, 2 for anything the user can fix (nothing was written)."""
    from hubspoke.cli.failures import friendly_errors
    from hubspoke.cli.store import open_store

    refusals: tuple[type[Exception], ...] = (StoreError, JournalWriteError, *backend_errors())
    with friendly_errors(), open_store(resolve_db(db), read_only=read_only) as store:
        try:
            yield store
        except RunLocked as e:
            report_error(f"{e}.")  # says what to do: decide when the run waits or has ended
            raise typer.Exit(EXIT_USAGE) from None
        except DecisionRefused as e:
            if not e.errors:
                raise  # a sentence, as friendly_errors prints it
            report_error(_refused_fields(e))
            raise typer.Exit(EXIT_USAGE) from None
        except refusals as e:
            report_error(
                f"the journal refused the decision: {refusal_reason(e)}. Nothing was written; "
                "try again once "
                "the journal takes writes (see hubspoke runs)."
            )
            raise typer.Exit(EXIT_RUN_FAILED) from None


def _refused_fields(error: DecisionRefused) -> str:
    lines = [str(error).split(": ", 1)[0] + " (nothing was written):"]
    for e in error.errors:
        where = ".".join(str(p) for p in e.get("loc", ())) or "(the whole output)"
        lines.append(f"  - {where}: {e.get('msg', '')}")
    return "\n".join(lines)


def _said(decision: Decision, title: str) -> str:
    """One line for a decision, e.g. ``approved card_ab12 (drafts[0]: ...) by sam: review →
    approved``."""
    past = {
        "approve": "approved",
        "amend": "amended",
        "park": "parked",
        "unpark": "unparked",
        "skip": "skipped",
        "answer": "answered",
        "abort": "aborted the run of",
    }[decision.verb]
    line = (
        f"{past} {decision.card_id} ({title}) by {decision.by}: {decision.before} → "
        f"{decision.after} [{decision.decision_id}]"
    )
    if decision.artifact_id is not None:
        line += f"; the amended output is {decision.artifact_id}"
    if decision.verb == "abort":
        line += f"; run {decision.run_id} ended aborted"
    return line


def _decide(
    db: str | None, card: str, verb: str, by: str | None, note: str, workflow: str | None = None
) -> None:
    """approve, park, unpark, skip: the verbs that take nothing but a note. An approval then
    starts the card's follow-up run, if its workflow has one (`follow_up_lines`)."""
    with _deciding(db) as store:
        board = _board(store, card, workflow, load=False)
        found = board.find(card)
        decide = {
            "approve": board.approve,
            "park": board.park,
            "unpark": board.unpark,
            "skip": board.skip,
        }[verb]
        try:
            decision = decide(found.id, by=by or default_by(), note=note)
        except DecisionRefused:
            if verb != "approve" or found.column.value not in ("approved", "amended"):
                raise
            # Approved already (twice, or a crash came before its follow-up): say so, and
            # make sure its follow-up ran, once.
            typer.echo(f"card {found.id} is already {found.column.value}")
        else:
            typer.echo(_said(decision, found.title))
        if verb == "approve":
            for line in follow_up_lines(store, found.run_id)[0]:
                typer.echo(line)


def follow_up_lines(store: AnyStore, run_id: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Run the follow-ups of `run_id`'s approved cards (`hubspoke.followups.run_follow_ups`)
    with the workflow kept with the run; a line and a JSON object for each. No lines when the
    run's workflow cannot be loaded or has no follow-ups."""
    import asyncio

    from hubspoke.errors import InputError
    from hubspoke.followups import run_follow_ups
    from hubspoke.loader import load_workflow

    record = store.run(run_id)
    if record is None or record.ref is None:
        return [], []
    try:
        workflow = load_workflow(record.ref)
    except InputError:
        return [f"the run's workflow {record.ref!r} cannot be loaded: no follow-up started"], []
    if not workflow.follow_ups:
        return [], []
    done = asyncio.run(run_follow_ups(store, workflow, run_id))
    lines = [
        f"follow-up {f.run_id} of {f.item}: {f.status}"
        + ("" if f.started else " (it had run already)")
        for f in done
    ]
    objects = [
        {
            "card_id": f.card_id,
            "item": f.item,
            "run_id": f.run_id,
            "status": f.status,
            "started": f.started,
        }
        for f in done
    ]
    return lines, objects


def _board(store: AnyStore, card: str, ref: str | None, *, load: bool) -> Board:
    """A board over the journal, with the card's run's workflow when `load` (or `ref`) asks:
    an amend is checked against its role's schema, an answer's input against its input's."""
    from hubspoke.decisions import Board

    board = Board(store)
    if not load and ref is None:
        return board
    from hubspoke.cli.inputs import normalise_ref
    from hubspoke.errors import InputError
    from hubspoke.loader import load_workflow

    if ref is not None:
        return Board(store, workflow=load_workflow(normalise_ref(ref)))
    record = store.run(board.find(card).run_id)
    if record is None or record.ref is None:
        return board
    try:
        return Board(store, workflow=load_workflow(record.ref))
    except InputError:
        return board  # moved or gone: the amend imports the schema its artifact names


# reading -----------------------------------------------------------------------------------------


@card_app.command("show")
def show(
    card: CardArgument,
    json_output: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    db: DbOption = None,
) -> None:
    """Show a card: its output (or, escalated, why and the item's input), its decisions, and
    the verbs it takes now.

    Example: hubspoke card show card_3f2a

    Example: hubspoke card show card_3f2a --json
    """
    from hubspoke.cli.failures import friendly_errors
    from hubspoke.cli.store import open_store
    from hubspoke.decisions import Board

    with friendly_errors(), open_store(resolve_db(db), read_only=True) as store:
        detail = Board(store).card(card).to_dict()
    if json_output:
        typer.echo(json.dumps(detail))
        return
    typer.echo(_card_text(detail))


def _card_text(detail: Mapping[str, Any]) -> str:
    lines = [
        f"{detail['id']}  {detail['title']}",
        f"  column  {detail['column']}",
        f"  run     {detail['run_id']} ({detail['run_status']})",
        f"  item    {detail['item']} (phase {detail['phase']}, role {detail['role'] or '-'}, "
        f"risk {detail['risk']})",
    ]
    if detail["note"]:
        lines.append(f"  note    {detail['note']}")
    if detail["content"] is not None:
        lines += ["", f"output ({detail['schema']}, {detail['artifact_id']}):"]
        lines += _indented(detail["content"])
    elif detail["input"] is not None:
        lines += ["", "the item's input (answer --input replaces it):"]
        lines += _indented(detail["input"])
    if detail["decisions"]:
        lines += ["", "decisions:"]
        for d in detail["decisions"]:
            said = f" ({d['note']})" if d.get("note") else ""
            answer = f": {d['answer']}" if "answer" in d else ""
            lines.append(
                f"  {d['decision_id']}  {d['verb']} by {d['by']}, {d['before']} → "
                f"{d['after']}{answer}{said}"
            )
    verbs = detail["verbs"]
    lines.append("")
    if verbs:
        lines.append(f"decide it: hubspoke card {'|'.join(verbs)} {detail['id']}")
    else:
        lines.append("decided: this card takes no more decisions")
    return "\n".join(lines)


def _indented(value: Any) -> list[str]:
    return ["  " + line for line in json.dumps(value, indent=2, ensure_ascii=False).splitlines()]


# the verbs ---------------------------------------------------------------------------------------


@card_app.command("approve")
def approve(
    card: CardArgument, by: ByOption = None, note: NoteOption = "", db: DbOption = None
) -> None:
    """Approve a card's output as it is (review or parked → approved).

    Example: hubspoke card approve card_3f2a --by sam
    """
    _decide(db, card, "approve", by, note)


@card_app.command("park")
def park(
    card: CardArgument, by: ByOption = None, note: NoteOption = "", db: DbOption = None
) -> None:
    """Put a card aside, undecided (review → parked); unpark brings it back.

    Example: hubspoke card park card_3f2a --note "ask legal first"
    """
    _decide(db, card, "park", by, note)


@card_app.command("unpark")
def unpark(
    card: CardArgument, by: ByOption = None, note: NoteOption = "", db: DbOption = None
) -> None:
    """Bring a parked card back to review (parked → review).

    Example: hubspoke card unpark card_3f2a
    """
    _decide(db, card, "unpark", by, note)


@card_app.command("skip")
def skip(
    card: CardArgument, by: ByOption = None, note: NoteOption = "", db: DbOption = None
) -> None:
    """Drop a card: its output is not used (review or parked → skipped), or its escalated item
    ends without one (escalated → skipped).

    Example: hubspoke card skip card_3f2a --note "not a fit"
    """
    _decide(db, card, "skip", by, note)


@card_app.command("amend")
def amend(
    card: CardArgument,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="FIELD=VALUE",
            help=(
                "Change one field (repeatable). FIELD may be a dotted path (contact.email, "
                'evidence.0); VALUE is read as JSON when it parses (0.8, true, ["a"]), else '
                "as text."
            ),
            show_default=False,
        ),
    ] = None,
    json_: Annotated[
        str | None,
        typer.Option(
            "--json",
            metavar="OBJECT|@FILE",
            help="The whole amended output: a JSON object, or @path to a file holding one.",
            show_default=False,
        ),
    ] = None,
    by: ByOption = None,
    note: NoteOption = "",
    workflow: WorkflowOption = None,
    db: DbOption = None,
) -> None:
    """Replace a card's output with an edited one (review or parked → amended).

    With neither --set nor --json, opens $VISUAL or $EDITOR on the output as JSON. The edit is
    validated strictly against the role's output schema; an invalid one is refused with each
    field's error and nothing is written (an edit made in the editor is kept in a file, named
    in the message, to amend from with --json @FILE).

    Example: hubspoke card amend card_3f2a --set subject="Routes for the winter peak"

    Example: hubspoke card amend card_3f2a --json @draft.json --by sam
    """
    from hubspoke.cli.inputs import parse_input

    sets = _parse_sets(set_ or [])
    with _deciding(db) as store:
        board = _board(store, card, workflow, load=True)
        found = board.check(card, "amend")
        content = None
        kept: Path | None = None
        if json_ is not None:
            content = parse_input(
                json_,
                flag="--json",
                wanted="the amended output is a JSON object with the fields of the role's output",
                example='e.g. --json \'{"subject": "...", ...}\' or --json @draft.json',
            )
        elif not sets:
            kept, content = _edit(board, found.id)
        try:
            decision = board.amend(found.id, content, set=sets, by=by or default_by(), note=note)
        except DecisionRefused as e:
            if kept is not None and isinstance(e, AmendRefused):
                report_error(_refused_fields(e))
                report_error(
                    f"your edit is kept in {kept}; amend from it with: hubspoke card amend "
                    f"{found.id} --json @{kept}"
                )
                raise typer.Exit(EXIT_USAGE) from None
            if kept is not None:
                kept.unlink(missing_ok=True)
            raise
        if kept is not None:
            kept.unlink(missing_ok=True)
        typer.echo(_said(decision, found.title))
        for line in follow_up_lines(store, found.run_id)[0]:  # an amended card follows up too
            typer.echo(line)


def _parse_sets(pairs: list[str]) -> dict[str, str]:
    sets: dict[str, str] = {}
    for pair in pairs:
        field, eq, value = pair.partition("=")
        if not eq or not field.strip():
            raise _usage(
                f"--set {pair!r} is not FIELD=VALUE; e.g. --set subject='New subject' or "
                "--set confidence=0.9"
            )
        sets[field.strip()] = value
    return sets


def _usage(message: str) -> typer.Exit:
    report_error(message)
    return typer.Exit(EXIT_USAGE)


def _edit(board: Board, card_id: str) -> tuple[Path, dict[str, Any]]:
    """Open the editor on the card's output; return the file and what it holds after.

    Raises:
        UsageError: no editor is set, it cannot run or failed, or the edit is not a JSON
            object (the file is kept and named).
    """
    command = os.environ.get("VISUAL", "").strip() or os.environ.get("EDITOR", "").strip()
    if not command:
        raise UsageError(
            "no editor to amend in: set $EDITOR (e.g. EDITOR=nano), or give the edit with "
            "--set FIELD=VALUE or --json OBJECT|@FILE"
        )
    detail = board.card(card_id)
    text = json.dumps(detail.content, indent=2, ensure_ascii=False) + "\n"
    handle, name = tempfile.mkstemp(prefix=f"hubspoke-{card_id}-", suffix=".json")
    path = Path(name)
    with os.fdopen(handle, "w", encoding="utf-8") as f:
        f.write(text)
    try:
        done = subprocess.run([*shlex.split(command), str(path)], check=False)
    except OSError as e:
        path.unlink(missing_ok=True)
        raise UsageError(f"cannot run the editor {command!r}: {e}; nothing was amended") from None
    if done.returncode != 0:
        path.unlink(missing_ok=True)
        raise UsageError(
            f"the editor {command!r} exited with {done.returncode}; nothing was amended"
        )
    edited = path.read_text(encoding="utf-8")
    try:
        value = json.loads(edited)
    except json.JSONDecodeError as e:
        raise UsageError(
            f"the edit is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); nothing "
            f"was amended. Your edit is kept in {path}; fix it and amend from it with: hubspoke "
            f"card amend {card_id} --json @{path}"
        ) from None
    if not isinstance(value, dict):
        raise UsageError(
            f"the edit is a JSON {type(value).__name__}, not an object with the output's fields; "
            f"nothing was amended. Your edit is kept in {path}"
        )
    return path, value


@card_app.command("answer")
def answer(
    card: CardArgument,
    text: Annotated[
        str | None,
        typer.Argument(
            metavar="[TEXT]", help="What the item's next attempt reads.", show_default=False
        ),
    ] = None,
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            metavar="JSON|@FILE",
            help="A corrected input for the item's next attempt (checked against its role's "
            "input schema), instead of TEXT.",
            show_default=False,
        ),
    ] = None,
    by: ByOption = None,
    workflow: WorkflowOption = None,
    db: DbOption = None,
) -> None:
    """Answer an escalated card (escalated → answered): TEXT for the item's next attempt to
    read, or a corrected --input for it to run on.

    Example: hubspoke card answer card_9c1e "Marex is real; pick their COO"

    Example: hubspoke card answer card_9c1e --input @corrected.json
    """
    from hubspoke.cli.inputs import parse_input

    if (text is None) == (input is None):
        raise _usage(
            "give the answer as TEXT or a corrected --input JSON|@FILE (one of them); e.g. "
            'hubspoke card answer CARD "use the COO"'
        )
    with _deciding(db) as store:
        corrected = None
        if input is not None:
            corrected = parse_input(
                input,
                example="e.g. --input '{\"company\": ...}' or --input @corrected.json "
                "(hubspoke card show CARD prints the item's input)",
            )
        board = _board(store, card, workflow, load=corrected is not None)
        found = board.find(card)
        decision = board.answer(found.id, text, input=corrected, by=by or default_by())
    typer.echo(_said(decision, found.title))


@card_app.command("abort")
def abort(
    card: CardArgument,
    reason: Annotated[
        str,
        typer.Option("--reason", metavar="TEXT", help="Why the run is given up (required)."),
    ],
    by: ByOption = None,
    db: DbOption = None,
) -> None:
    """Give up on an escalated card's item and its whole run: the card is skipped and the run
    ends aborted.

    Example: hubspoke card abort card_9c1e --reason "wrong region"
    """
    with _deciding(db) as store:
        board = _board(store, card, None, load=False)
        found = board.find(card)
        decision = board.abort(found.id, by=by or default_by(), reason=reason)
    typer.echo(_said(decision, found.title))
