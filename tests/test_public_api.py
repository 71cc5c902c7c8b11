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
    "threads",
    "loader",
    "testing",
    "examples",
    "cli",
}
