"""Docs are tests: every Python block in the README and docs runs, and they cite only the repo."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hubspoke.cli import app
from hubspoke.journal import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKDOWN = [*DOCS, ROOT / "benchmarks" / "README.md"]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_python_blocks_run(
    doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__main__"}  # as `python example.py` runs it
    for block in BLOCK.findall(doc.read_text()):
        # Not compiled under this file's `from __future__ import annotations`: a block's models
        # are built as `python example.py` builds them (a nested model's type is resolved).
        exec(compile(block, str(doc), "exec", dont_inherit=True), namespace)
    printed = capsys.readouterr().out
    for expected in re.findall(r"print\(.*\)\s+# (.+)", doc.read_text()):
        assert expected.strip() in printed


def test_readme_example_is_under_40_lines() -> None:
    (example,) = [b for b in BLOCK.findall((ROOT / "README.md").read_text()) if "Workflow(" in b]
    assert len(example.strip().splitlines()) <= 40


def test_the_readme_example_runs_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Saved as a file, the example is a workflow the CLI can import without running it.
    (example,) = [b for b in BLOCK.findall((ROOT / "README.md").read_text()) if "Workflow(" in b]
    (tmp_path / "qa.py").write_text(example, encoding="utf-8")
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(
        app, ["run", "qa.py:workflow", "--input", '{"topic": "tea"}', "--db", "cli.db", "--json"]
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"] == {"text": "tea was first brewed in China."}
    assert not (tmp_path / "qa.db").exists(), "importing the example ran it"
    store = SQLiteStore(tmp_path / "cli.db")
    try:
        assert len(store.runs(10)) == 1
    finally:
        store.close()


OUTSIDE = [
    (
        re.compile(r"\.\./shared|DESIGN\.md|STYLE\.md"),
        "a file of the design notes, outside the repo",
    ),
    # An absolute path: a slash that starts a path (not inside a URL, a relative path or a
    # fraction), e.g. /tmp/x or /home/me/notes. /proc/... is the kernel's, not a file we cite.
    (re.compile(r"(?<![\w.:/~-])/(?!proc/)(?:[\w.-]+/)+[\w.-]*"), "an absolute path"),
]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_cite_only_files_in_the_repository(doc: Path) -> None:
    wrong = []
    name = doc.relative_to(ROOT)
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        for pattern, what in OUTSIDE:
            wrong += [f"{name}:{number}: {m.group()!r} is {what}" for m in pattern.finditer(line)]
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path = (doc.parent / target).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                wrong.append(f"{name}:{number}: the link {target!r} is not a file in the repo")
    assert not wrong, "docs must stand on their own:\n" + "\n".join(wrong)


def test_the_citation_check_catches_what_it_should() -> None:
    def flagged(text: str) -> bool:
        return any(pattern.search(text) for pattern, _ in OUTSIDE)

    for bad in ("see ../shared/DESIGN.md", "DESIGN.md §3", "-o /tmp/spy.txt", "`/work/main/x`"):
        assert flagged(bad), bad
    for fine in (
        "http://127.0.0.1:8000/v1",
        "docs/architecture.md",
        "(../docs/performance.md)",
        "µs / dispatch",
        "from `/proc/stat`",
        "tokens/s",
    ):
        assert not flagged(fine), fine


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_only_tests_that_exist(doc: Path) -> None:
    """A test a doc points to (`tests/x.py::name`) is defined in that file: renaming a test
    must not leave the docs pointing at nothing."""
    for file, name in re.findall(r"(tests/[\w/]+\.py)::(\w+)", doc.read_text()):
        assert re.search(rf"def {name}\(", (ROOT / file).read_text()), f"{file}::{name}"
