"""Docs are tests: every Python block in the README and docs runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_python_blocks_run(
    doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in BLOCK.findall(doc.read_text()):
        exec(compile(block, str(doc), "exec"), namespace)
    printed = capsys.readouterr().out
    for expected in re.findall(r"print\(.*\)\s+# (.+)", doc.read_text()):
        assert expected.strip() in printed


def test_readme_example_is_under_40_lines() -> None:
    (example,) = [b for b in BLOCK.findall((ROOT / "README.md").read_text()) if "Workflow(" in b]
    assert len(example.strip().splitlines()) <= 40
