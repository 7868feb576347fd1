"""The ``xmsgl`` command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from xmsgl.cli import build_parser, main


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("demo", "fetch-data", "info"):
        assert cmd in out


def test_info_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    assert "xmsgl" in capsys.readouterr().out


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["demo"])
    assert args.outdir == "xmsgl-demo" and not args.quick


def test_console_script_installed() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xmsgl.cli", "info"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
