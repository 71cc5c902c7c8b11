"""Find a workflow from a reference: ``path/to/file.py:NAME`` or ``package.module:NAME``.

The reference is stored with the run so that `hubspoke resume` can rebuild the same workflow.
A module reference is looked up from the current directory first, as `python -m` does, so that
`hubspoke run flows:workflow` finds `./flows.py` (the `hubspoke` script, unlike `python -m`,
does not put the current directory on `sys.path` by itself).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from hubspoke.errors import InputError
from hubspoke.workflow import Workflow

__all__ = ["load_workflow"]


def load_workflow(ref: str) -> Workflow:
    """Import the module or file of `ref` and return its workflow.

    `NAME` may name a `Workflow` or a function of no arguments that returns one. For a module
    reference the current directory is put first on `sys.path` (and stays there, so that the
    workflow can import its neighbours while it runs), unless it is there already.

    Raises:
        InputError: the reference is malformed, the module or name is missing, or the object is
            not a workflow. The message says which, and what to write instead.
    """
    target, sep, name = ref.rpartition(":")
    if not sep or not target or not name:
        raise InputError(
            f"{ref!r} is not a workflow reference: write FILE.py:NAME or package.module:NAME "
            "(e.g. examples/pipeline.py:workflow)"
        )
    if target.endswith(".py") or "/" in target:
        path = Path(target)
        if not path.is_file():
            raise InputError(f"workflow file {target!r} does not exist")
        module_name = f"_hubspoke_workflow_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise InputError(f"cannot import {target!r} as a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[module_name]  # as `import` does: no half-run module left behind
            raise InputError(f"importing {target!r} failed: {type(e).__name__}: {e}") from None
    else:
        _put_cwd_on_path()
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            missing = isinstance(e, ModuleNotFoundError) and e.name == target.partition(".")[0]
            hint = (
                f" (looked in the current directory, {os.getcwd()}, and the installed packages; "
                "give a file as path/to/flow.py:NAME, or run from the module's directory)"
                if missing
                else ""
            )
            raise InputError(f"cannot import module {target!r}: {e}{hint}") from None
        except Exception as e:  # the module itself raised (or is not valid Python)
            raise InputError(f"importing {target!r} failed: {type(e).__name__}: {e}") from None
    obj = getattr(module, name, None)
    if obj is None:
        found = sorted(k for k, v in vars(module).items() if isinstance(v, Workflow))
        hint = f" (workflows there: {', '.join(found)})" if found else ""
        raise InputError(f"{target!r} has no attribute {name!r}{hint}")
    if isinstance(obj, type):
        raise InputError(f"{ref!r} is a class ({obj.__name__}), not a hubspoke.Workflow")
    if callable(obj) and not isinstance(obj, Workflow):
        try:
            obj = obj()
        except Exception as e:
            raise InputError(
                f"calling {ref!r} to build the workflow failed: {type(e).__name__}: {e}"
            ) from None
    if not isinstance(obj, Workflow):
        raise InputError(f"{ref!r} is a {type(obj).__name__}, not a hubspoke.Workflow")
    return obj


def _put_cwd_on_path() -> None:
    """Put the current directory first on `sys.path`, as `python -m` does, unless it is there."""
    cwd = os.getcwd()
    if not any(os.path.abspath(entry or os.curdir) == cwd for entry in sys.path):
        sys.path.insert(0, cwd)
        importlib.invalidate_caches()
