"""Exit codes and the one-paragraph messages the CLI gives instead of tracebacks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.text import Text

from hubspoke.errors import (
    DefinitionError,
    HubspokeError,
    ModelSetupError,
    RunLocked,
    RunNotFound,
    ToolServerError,
    WorkflowChanged,
)

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RUN_FAILED",
    "EXIT_USAGE",
    "UsageError",
    "exit_code_for",
    "friendly_errors",
    "report_error",
]

EXIT_OK = 0
EXIT_RUN_FAILED = 1
"""The run ended `failed` or `aborted`."""
EXIT_USAGE = 2
"""Bad arguments or input: nothing ran."""
EXIT_INTERRUPTED = 130
"""Ctrl-C or SIGTERM: the run stopped and can be resumed."""

_FAILED_STATUSES = frozenset({"failed", "aborted"})


class UsageError(Exception):
    """Something the user typed is wrong; the message says what to write instead."""


def exit_code_for(status: str) -> int:
    """The exit code of a run that ended with `status`."""
    return EXIT_RUN_FAILED if status in _FAILED_STATUSES else EXIT_OK


def _sentence(error: Exception) -> str:
    text = str(error).rstrip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _message(error: Exception) -> str:
    if isinstance(error, RunLocked):
        return (
            f"another process holds the run: {_sentence(error)} Only one process may drive a "
            "run at a time; resume it once that process has ended."
        )
    if isinstance(error, RunNotFound):
        return (
            f"{_sentence(error)} List the runs with `hubspoke runs` "
            "(and check --db / $HUBSPOKE_DB)."
        )
    if isinstance(error, WorkflowChanged):
        return (
            f"{_sentence(error)} If the workflow's file moved, point at it with "
            f"hubspoke {error.verb} RUN --workflow FILE.py:NAME."
        )
    if isinstance(error, ModelSetupError):
        return (
            "the run cannot start, nothing was run:\n"
            + "".join(f"- {problem}\n" for problem in error.problems)
            + "See each role's model, where it came from and its price: hubspoke models WORKFLOW"
        )
    if isinstance(error, ToolServerError):
        return (
            "the run cannot start, nothing was run: an MCP server its cards list tools of "
            "cannot be used:\n" + "".join(f"- {problem}\n" for problem in error.problems)
        ).rstrip("\n")
    if isinstance(error, DefinitionError):
        return (
            f"the workflow is not valid: {_sentence(error)} "
            "Fix the card or phase named, then try again."
        )
    return _sentence(error)


def report_error(message: str) -> None:
    """Print `message` to stderr as one paragraph, prefixed with ``error:``."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(Text("error: ", style="bold red") + Text(message))


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn the errors a user can fix into a message on stderr and exit code 2."""
    try:
        yield
    except (UsageError, HubspokeError) as error:
        report_error(_message(error))
        raise typer.Exit(EXIT_USAGE) from None
