"""ruff and mypy run with the tests so that style and types cannot drift."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _tool(name: str) -> list[str]:
    exe = shutil.which(name, path=str(ROOT / ".venv" / "bin")) or shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return [exe]


def test_ruff() -> None:
    proc = subprocess.run(
        _tool("ruff") + ["check", "xmsgl", "tests", "benchmarks", "docs"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed; install the test extra: "
                                       "pip install -e '.[test]'")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "xmsgl"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
