"""One errors module, one root: terminal errors apart from the signals specialists raise."""

from __future__ import annotations

import hubspoke.errors as errors
from hubspoke.errors import HubspokeError, Signal


def _classes() -> dict[str, type[BaseException]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, BaseException)
    }


def test_every_error_derives_from_the_one_root() -> None:
    for name, cls in _classes().items():
        assert issubclass(cls, HubspokeError), name


def test_signals_are_apart_from_terminal_errors() -> None:
    signals = {n for n, c in _classes().items() if issubclass(c, Signal)}
    assert signals == {
        "Signal",
        "Retry",
        "OutOfScope",
        "NeedsHuman",
        "BudgetExceeded",
        "ToolRefused",
        "ToolArgumentsError",
        "ContextError",
        "InDoubt",
    }


def test_errors_are_defined_nowhere_else() -> None:
    """No module of the package defines its own exception class: they all live here."""
    import importlib
    import pkgutil

    import hubspoke

    found = []
    for module in pkgutil.walk_packages(hubspoke.__path__, "hubspoke."):
        if module.name.startswith(("hubspoke.cli", "hubspoke.examples")):
            continue
        mod = importlib.import_module(module.name)
        for name, value in vars(mod).items():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__ == module.name
                and module.name != "hubspoke.errors"
            ):
                found.append(f"{module.name}.{name}")
    assert found == []
