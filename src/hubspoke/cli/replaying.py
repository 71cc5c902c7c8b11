"""`hubspoke replay`: run a recorded run's workflow again offline and print the first
divergence (`hubspoke.replay`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hubspoke.cli.config import DbPath
from hubspoke.cli.failures import EXIT_OK, EXIT_RUN_FAILED, UsageError
from hubspoke.cli.store import find_run, open_store

__all__ = ["replay_run"]


def _workflow_ref(run_id: str, recorded: str | None, given: str | None) -> str:
    """`given` (``--workflow``), else the reference recorded with the run."""
    from hubspoke.cli.inputs import normalise_ref

    if given is not None:
        return normalise_ref(given)
    if recorded is None:
        raise UsageError(
            f"run {run_id} was started from Python without a workflow reference; give the "
            "workflow with --workflow FILE.py:NAME (or module:NAME)"
        )
    return recorded


def replay_run(
    run: str,
    db: DbPath,
    workflow_ref: str | None,
    *,
    json_output: bool,
    export: Path | None,
) -> int:
    """Replay `run` (or export it with `export`); return the exit code: 0 identical (or
    exported), 1 diverged.

    Raises:
        RunNotFound: no run matches `run`.
        NotReplayable: the run was recorded without its requests and responses.
        InputError: the workflow reference cannot be loaded.
        UsageError: the prefix is ambiguous, there is no workflow reference, or the export
            file exists.
    """
    from hubspoke.loader import load_workflow
    from hubspoke.replay import export_run, replay_sync

    with open_store(db, read_only=True) as store:
        record = find_run(store, run)
        if export is not None:
            try:
                written = export_run(store, record.run_id, export)
            except FileExistsError as e:
                raise UsageError(str(e)) from None
            typer.echo(f"exported run {record.run_id} to {written}")
            return EXIT_OK
        workflow = load_workflow(_workflow_ref(record.run_id, record.ref, workflow_ref))
        report = replay_sync(store, record.run_id, workflow)
    if json_output:
        typer.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        typer.echo(report.describe())
    return EXIT_OK if report.identical else EXIT_RUN_FAILED
