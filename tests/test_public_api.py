"""The front door: `hubspoke.__all__` lists exactly the public names, and they import.

The names import lazily (`hubspoke.__getattr__`), so the list is checked three ways: against the
table of lazy exports, against the `if TYPE_CHECKING:` imports type checkers read, and by
resolving every name to the object its module defines.
"""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import pytest

import hubspoke
import hubspoke.models
import hubspoke.specialists

INIT = Path(hubspoke.__file__)


_TYPE_CHECKING = {"TYPE_CHECKING", "typing.TYPE_CHECKING", "_typing.TYPE_CHECKING"}


def _type_checking_imports(path: Path) -> dict[str, str]:
    """Names imported under ``if TYPE_CHECKING:`` in `path`, and the module of each."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) in _TYPE_CHECKING:
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module, ast.unparse(stmt)
                names.update({alias.asname or alias.name: stmt.module for alias in stmt.names})
    return names


def test_all_is_honest() -> None:
    exports = hubspoke._EXPORTS
    assert set(hubspoke.__all__) == {*exports, "__version__"}
    assert len(hubspoke.__all__) == len(set(hubspoke.__all__))
    # Type checkers see the same names, from the same modules, as the lazy table serves.
    assert _type_checking_imports(INIT) == exports
    for name in hubspoke.__all__:
        value = getattr(hubspoke, name)
        assert value is not None
        if name in exports:
            assert value is getattr(importlib.import_module(exports[name]), name)
    assert set(hubspoke.__all__) <= set(dir(hubspoke))


def test_the_lazy_table_names_where_each_name_is_defined() -> None:
    """Each name's module is the one that defines it, or the package holding that module (a
    package's front door, such as `hubspoke.foreman`): never a module that only re-exports it,
    so that the first use of a name imports no more than its home."""
    wrong = []
    for name, module in hubspoke._EXPORTS.items():
        defined_in = getattr(getattr(hubspoke, name), "__module__", None)
        if defined_in is None:  # a constant, such as SCHEMA_VERSION: checked above
            continue
        if defined_in != module and not defined_in.startswith(f"{module}."):
            wrong.append(f"{name}: the table says {module}, it is defined in {defined_in}")
    assert not wrong, "fix _EXPORTS (and the imports under TYPE_CHECKING):\n" + "\n".join(wrong)


def test_the_namespace_holds_only_public_names_and_submodules() -> None:
    for name in hubspoke.__all__:
        getattr(hubspoke, name)
    public = {
        name
        for name, value in vars(hubspoke).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(hubspoke.__all__) - {"__version__"}


def test_an_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'hubspoke' has no attribute 'Formen'"):
        hubspoke.Formen  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(ImportError):
        from hubspoke import Formen  # type: ignore[attr-defined]  # noqa: F401


@pytest.mark.parametrize(
    "package", [hubspoke.models, hubspoke.specialists], ids=lambda m: m.__name__
)
def test_lazy_subpackages_export_what_they_list(package: types.ModuleType) -> None:
    init = Path(package.__file__ or "")
    lazy = _type_checking_imports(init)
    for name in package.__all__:
        assert getattr(package, name) is not None, name
    for name, module in lazy.items():
        assert getattr(package, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        package.nothing  # noqa: B018


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


MOVED = {
    "hubspoke.journal.writer": {"Redactor": "hubspoke.journal.redaction"},
    "hubspoke.workflow": {
        "ArtifactRef": "hubspoke.runview",
        "EvaluationRequest": "hubspoke.phases",
        "Phase": "hubspoke.phases",
        "RunView": "hubspoke.runview",
        "Strategy": "hubspoke.phases",
        "TopK": "hubspoke.phases",
        "Verdict": "hubspoke.phases",
        "shape_changes": "hubspoke.shape",
        "validate_handoff": "hubspoke.handoff",
    },
    "hubspoke.specialists.context": {
        "TRACE_KINDS": "hubspoke.specialists.trace",
        "Trace": "hubspoke.specialists.trace",
        "AllowanceView": "hubspoke.specialists.views",
        "ToolTable": "hubspoke.specialists.views",
        "UsageView": "hubspoke.specialists.views",
        "ContextError": "hubspoke.errors",
        "ToolRefused": "hubspoke.errors",
    },
}
"""Names a module once defined, now defined elsewhere: old module → {name: where it lives}."""


@pytest.mark.parametrize("old", sorted(MOVED))
def test_names_that_moved_still_import_from_where_they_were(old: str) -> None:
    module = importlib.import_module(old)
    for name, home in MOVED[old].items():
        assert name in module.__all__, f"{old}.__all__ should list {name} (re-exported)"
        assert getattr(module, name) is getattr(importlib.import_module(home), name), name
