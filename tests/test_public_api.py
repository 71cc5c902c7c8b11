"""The front door: `hubspoke.__all__` lists exactly the public names, and they import."""

from __future__ import annotations

import hubspoke


def test_all_is_honest() -> None:
    public = {n for n in vars(hubspoke) if not n.startswith("_") and n not in _MODULES}
    assert set(hubspoke.__all__) - {"__version__"} == public
    for name in hubspoke.__all__:
        assert getattr(hubspoke, name) is not None


_MODULES = {
    "artifacts",
    "board",
    "budget",
    "errors",
    "events",
    "foreman",
    "journal",
    "jsontext",
    "models",
    "outcomes",
    "roles",
    "specialists",
    "tools",
    "work",
    "workflow",
    "executors",
    "subforeman",
    "loader",
    "testing",
    "examples",
    "cli",
}


def test_every_error_is_exported() -> None:
    """An error a caller may have to catch is importable from `hubspoke` itself."""
    import hubspoke.errors

    errors = {
        name
        for name, value in vars(hubspoke.errors).items()
        if isinstance(value, type) and issubclass(value, Exception) and not name.startswith("_")
    }
    assert errors == set(hubspoke.errors.__all__)
    assert errors <= set(hubspoke.__all__)
