"""Ctrl-C while the xmsgl command starts: one line, not the import's traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import xmsgl._starting as starting

# What pip writes as the command's script, with Ctrl-C arriving as xmsgl imports xarray
# (where the command spends most of its first second).
SCRIPT = '''import re
import sys


class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "xarray":
            raise KeyboardInterrupt
        return None


sys.meta_path.insert(0, CtrlC())
from xmsgl.cli import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
'''


def _run(path: Path, typed: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the script at ``path``, named on the command line as ``typed`` (a path relative
    to the folder above its own, the working one) or by its absolute path."""
    path.write_text(SCRIPT)
    return subprocess.run([sys.executable, typed or str(path), "info"], capture_output=True,
                          text=True, timeout=120, cwd=path.parent.parent)


def test_ctrl_c_while_the_command_imports_xmsgl_says_one_line(tmp_path: Path) -> None:
    # It printed the traceback of the imports under way (pandas, xarray, ...).
    done = _run(tmp_path / "xmsgl")
    assert done.stderr == f"xmsgl: error: {starting.MESSAGE}\n"
    assert done.stdout == ""
    if sys.platform != "win32":  # still ended as a program stopped by SIGINT (130 in a shell)
        assert done.returncode == -signal.SIGINT


def test_the_command_named_by_a_relative_path_says_one_line_too(tmp_path: Path) -> None:
    # As the README runs it (.venv/bin/xmsgl demo): argv[0] relative, __main__'s file
    # absolute, so it was not taken for the command.
    (tmp_path / "bin").mkdir()
    done = _run(tmp_path / "bin" / "xmsgl", typed="bin/xmsgl")
    assert done.stderr == f"xmsgl: error: {starting.MESSAGE}\n"


@pytest.mark.parametrize("module", [["-m", "xmsgl"], ["-W", "ignore", "-mxmsgl"]])
def test_python_dash_m_xmsgl_says_one_line_too(tmp_path: Path, module: list[str]) -> None:
    # python -m xmsgl imports the package while argv[0] is "-m": not taken for the command.
    (tmp_path / "sitecustomize.py").write_text(SCRIPT.split("from xmsgl")[0])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, *module, "info"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.stderr == f"xmsgl: error: {starting.MESSAGE}\n"
    assert done.stdout == ""
    if sys.platform != "win32":
        assert done.returncode == -signal.SIGINT


@pytest.mark.parametrize(("argv", "expected"), [
    (["python", "-m", "xmsgl", "demo"], "xmsgl"),
    (["python", "-Im", "xmsgl.__main__"], "xmsgl.__main__"),
    (["python", "-X", "dev", "-Wignore", "-m", "other"], "other"),
    (["python", "--check-hash-based-pycs", "always", "-m", "xmsgl"], "xmsgl"),
    (["python", "-c", "import xmsgl", "-m", "xmsgl"], None),
])
def test_the_module_python_runs_is_read_from_its_command_line(
        monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: str | None) -> None:
    monkeypatch.setattr(sys, "argv", ["-m"])
    monkeypatch.setattr(sys, "orig_argv", argv, raising=False)
    assert starting._module_run() == expected
    monkeypatch.setattr(sys, "argv", ["/path/to/xmsgl/__main__.py"])
    assert starting._module_run() is None


def test_other_programs_keep_pythons_traceback(tmp_path: Path) -> None:
    # A program of the user's that imports xmsgl is not the command.
    done = _run(tmp_path / "mine.py")
    assert "Traceback" in done.stderr and "KeyboardInterrupt" in done.stderr
    assert starting.MESSAGE not in done.stderr


def test_the_command_puts_the_previous_hook_back(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from xmsgl.cli import main

    def users_hook(*args: object) -> None:
        seen.append(args)

    seen: list[tuple[object, ...]] = []
    monkeypatch.setattr(starting, "_PREVIOUS", [])
    monkeypatch.setattr(starting, "_is_the_command", lambda: True)
    monkeypatch.setattr(sys, "excepthook", users_hook)
    starting.arm()
    assert sys.excepthook is starting._hook
    # Other errors than Ctrl-C go to the hook it replaced.
    error = ValueError("not an interrupt")
    starting._hook(ValueError, error, None)
    assert seen == [(ValueError, error, None)]
    assert main(["info"]) == 0
    assert "xmsgl" in capsys.readouterr().out
    assert sys.excepthook is users_hook and starting._PREVIOUS == []
