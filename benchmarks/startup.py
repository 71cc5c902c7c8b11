"""Start-up cost: `import hubspoke` and `hubspoke --help`, each against a baseline, fresh processes.

- `import hubspoke` against `import pydantic`: the time of the import statement alone, measured
  inside a fresh interpreter (interpreter start-up excluded).
- `hubspoke --help` against a bare Typer + Rich app with the same commands, options and help
  texts and no bodies, generated from hubspoke's own app into a temporary file: the wall time of
  the whole process, as a user waits for it.

Each pair is measured interleaved (A, B, A, B, ...) in the same invocation, and compared by
medians, because this machine's speed drifts over minutes. Used by `benchmarks/run.py`; on its
own: `python benchmarks/startup.py [--reps N]`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import subprocess
import sys
import tempfile
import time
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from typer.models import OptionInfo

__all__ = ["baseline_cli_source", "startup_suite"]

_IMPORT = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def import_seconds(module: str) -> float:
    """Seconds `import module` takes in a fresh interpreter (start-up excluded)."""
    code = _IMPORT.format(module=module)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return float(out.strip().splitlines()[-1])


def command_seconds(argv: list[str]) -> float:
    """Wall seconds of a whole process, from spawn to exit; fails if it exits non-zero."""
    t0 = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True)
    return time.perf_counter() - t0


# -- the baseline app ------------------------------------------------------------------------------


def _type_source(annotation: Any) -> str:
    """Source text of a parameter's type (``str | None``, ``pathlib.Path | None``, ...)."""
    if isinstance(annotation, type):
        module = annotation.__module__
        return (
            annotation.__qualname__ if module == "builtins" else f"{module}.{annotation.__name__}"
        )
    return repr(annotation).replace("typing.", "")


_FIELDS = ("metavar", "help", "min", "max", "show_default", "is_eager")
"""The fields of a Typer parameter the baseline keeps: those that change what help shows."""
_DEFAULTS: dict[str, object] = {"show_default": True, "is_eager": False}


def _parameter(name: str, annotation: Any, default: Any) -> str:
    """One parameter of a generated command: same type, flags, metavar, help; no callback."""
    kind, info = typing.get_args(annotation)
    decls = [info.default] if isinstance(info, OptionInfo) and info.default is not ... else []
    decls += list(info.param_decls or ())
    fields = [repr(d) for d in decls]
    for field in _FIELDS:
        value = getattr(info, field, None)
        if value is not None and value != _DEFAULTS.get(field):
            fields.append(f"{field}={value!r}")
    factory = "typer.Option" if isinstance(info, OptionInfo) else "typer.Argument"
    spec = f"Annotated[{_type_source(kind)}, {factory}({', '.join(fields)})]"
    tail = "" if default is inspect.Parameter.empty else f" = {default!r}"
    return f"    {name}: {spec}{tail},"


def _function(name: str, callback: Callable[..., Any]) -> list[str]:
    hints = typing.get_type_hints(callback, include_extras=True)
    lines = [f"def {name}("]
    for param in inspect.signature(callback).parameters.values():
        lines.append(_parameter(param.name, hints[param.name], param.default))
    return [*lines, ") -> None:", f"    {inspect.getdoc(callback) or ''!r}", ""]


def baseline_cli_source(app: typer.Typer) -> str:
    """Source of a Typer + Rich app with `app`'s commands, options and help, and no bodies.

    Raises:
        ValueError: a command parameter is not declared with ``Annotated[T, typer.Option()]``
            or ``typer.Argument()`` (the only form hubspoke's CLI uses).
    """
    info = app.info
    lines = [
        "from typing import Annotated",
        "import pathlib",
        "import typer",
        "",
        "app = typer.Typer(",
        f"    name={info.name!r}, help={info.help!r}, no_args_is_help={info.no_args_is_help!r},",
        f"    rich_markup_mode={app.rich_markup_mode!r}, add_completion=False,",
        f"    context_settings={info.context_settings!r},",
        ")",
        "",
        "",
    ]
    root = app.registered_callback
    if root is not None and root.callback is not None:
        lines += ["@app.callback()", *_function("_root", root.callback), ""]
    for command in app.registered_commands:
        if command.callback is None:
            continue
        name = command.name or command.callback.__name__.replace("_", "-")
        function = "_" + name.replace("-", "_")  # `follow-ups` is no Python name
        lines += [f"@app.command({name!r})", *_function(function, command.callback), ""]
    lines += ["", "if __name__ == '__main__':", "    app()", ""]
    return "\n".join(lines)


# -- the suite -------------------------------------------------------------------------------------


def _interleaved(
    measure_a: Callable[[], float], measure_b: Callable[[], float], reps: int
) -> tuple[list[float], list[float]]:
    measure_a(), measure_b()  # warm the file system cache and the bytecode caches
    a: list[float] = []
    b: list[float] = []
    for _ in range(reps):
        a.append(measure_a())
        b.append(measure_b())
    return a, b


def startup_suite(reps: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Measure both pairs, `reps` times each, interleaved; return medians and ratios."""
    from hubspoke.cli import app

    out: dict[str, Any] = {"reps": reps}
    hub, pyd = _interleaved(
        lambda: import_seconds("hubspoke"), lambda: import_seconds("pydantic"), reps
    )
    out["import"] = {
        "hubspoke_s": statistics.median(hub),
        "pydantic_s": statistics.median(pyd),
        "hubspoke_walls": hub,
        "pydantic_walls": pyd,
    }
    out["import"]["ratio"] = out["import"]["hubspoke_s"] / out["import"]["pydantic_s"]
    log(
        f"startup: import hubspoke {out['import']['hubspoke_s'] * 1000:.1f} ms, import pydantic "
        f"{out['import']['pydantic_s'] * 1000:.1f} ms (×{out['import']['ratio']:.2f})"
    )
    with tempfile.TemporaryDirectory(prefix="hubspoke-bench-cli-") as tmp:
        baseline = Path(tmp) / "baseline_cli.py"
        baseline.write_text(baseline_cli_source(app), encoding="utf-8")
        entry = Path(tmp) / "hubspoke_cli.py"
        entry.write_text("from hubspoke.cli import main\n\nmain()\n", encoding="utf-8")
        hub, base = _interleaved(
            lambda: command_seconds([sys.executable, str(entry), "--help"]),
            lambda: command_seconds([sys.executable, str(baseline), "--help"]),
            reps,
        )
    out["help"] = {
        "hubspoke_s": statistics.median(hub),
        "baseline_s": statistics.median(base),
        "hubspoke_walls": hub,
        "baseline_walls": base,
    }
    out["help"]["ratio"] = out["help"]["hubspoke_s"] / out["help"]["baseline_s"]
    log(
        f"startup: hubspoke --help {out['help']['hubspoke_s'] * 1000:.1f} ms, bare Typer app "
        f"--help {out['help']['baseline_s'] * 1000:.1f} ms (×{out['help']['ratio']:.2f})"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=9, help="repetitions of each measure")
    parser.add_argument("--source", action="store_true", help="print the baseline app and exit")
    args = parser.parse_args(argv)
    if args.source:
        from hubspoke.cli import app

        print(baseline_cli_source(app))
        return 0
    result = startup_suite(args.reps, lambda msg: print(msg, file=sys.stderr))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
