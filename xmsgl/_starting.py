"""Ctrl-C while the ``xmsgl`` command starts.

The command's script (``from xmsgl.cli import main``, as pip writes it) imports xmsgl,
xarray and pandas, about a second, before :func:`xmsgl.cli.main` can answer Ctrl-C
with its one line: stopped in that second, Python printed the import's traceback.
When the program running is that script, or ``python -m xmsgl``, :func:`arm` (run as
this module is imported, the first thing ``import xmsgl`` does) puts a hook in
:data:`sys.excepthook` that says the line instead, and :func:`disarm` (the first thing
``main`` does) puts the previous hook back. Python still exits as a program stopped by
SIGINT (status 130 in a shell). Any other program that imports xmsgl is left as it is.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any

#: What the command says (after ``xmsgl: error:``) when stopped before it started, here
#: and in :func:`xmsgl.cli.main` while it builds its options.
MESSAGE = "stopped by Ctrl-C before the command started; nothing was written"
#: The line of pip's script (and of setuptools' and uv's) that makes it the command.
_SCRIPT_LINE = "from xmsgl.cli import main"
_PREVIOUS: list[Any] = []


def _module_run() -> str | None:
    """The module ``python -m`` was given, while Python imports its package (then
    ``sys.argv[0]`` is ``"-m"``, and the command line is in ``sys.orig_argv``)."""
    if not sys.argv or sys.argv[0] != "-m":
        return None
    args = iter(getattr(sys, "orig_argv", [])[1:])
    for arg in args:
        if arg == "--check-hash-based-pycs":
            next(args, None)
            continue
        if not arg.startswith("-") or arg.startswith("--"):
            continue
        # Short options, which Python lets one write together (-Im xmsgl, -mxmsgl);
        # -W and -X take the rest of the word or the next one, -m and -c end them.
        for i, flag in enumerate(arg[1:], start=2):
            if flag in "WXmc":
                value = arg[i:] or next(args, "")
                if flag == "m":
                    return value
                if flag == "c":
                    return None
                break
    return None


def _is_the_command() -> bool:
    """Whether the program running is the ``xmsgl`` command: ``python -m xmsgl``, or
    the ``xmsgl`` script: ``__main__`` is the file ``sys.argv[0]`` names, called
    ``xmsgl`` (``xmsgl-script.py`` where older setuptools wrote one for Windows), that
    imports the command's entry point."""
    if _module_run() in ("xmsgl", "xmsgl.__main__"):
        return True
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    # __main__'s file is absolute (Python 3.9 on), argv[0] as typed (.venv/bin/xmsgl).
    if not path or not sys.argv or os.path.abspath(sys.argv[0]) != os.path.abspath(path):
        return False
    name = os.path.basename(path).lower()
    if name not in ("xmsgl", "xmsgl-script.py", "xmsgl-script.pyw"):
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return _SCRIPT_LINE in f.read(4096)
    except OSError:
        return False


def _hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        try:
            print(f"xmsgl: error: {MESSAGE}", file=sys.stderr, flush=True)
        except (OSError, ValueError):  # stderr closed, or a reader gone
            pass
        return
    previous = _PREVIOUS[0] if _PREVIOUS else sys.__excepthook__
    previous(kind, value, tb)


def arm() -> None:
    """Answer Ctrl-C with :data:`MESSAGE` until :func:`disarm`, in the command only."""
    if _PREVIOUS or not _is_the_command():
        return
    _PREVIOUS.append(sys.excepthook)
    sys.excepthook = _hook


def disarm() -> None:
    """Put back the hook :func:`arm` replaced (unless something replaced it since)."""
    if not _PREVIOUS:
        return
    previous = _PREVIOUS.pop()
    if sys.excepthook is _hook:
        sys.excepthook = previous


arm()
