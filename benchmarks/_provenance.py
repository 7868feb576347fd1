"""What every benchmark line records about where it ran: the commit, the CPU and torch.

The 2-core VM reports different CPU models from one day to the next, with speeds
up to 2x apart, and the code moves between runs: a line that does not say both
cannot be compared with another.
"""

from __future__ import annotations

import os
import platform
import subprocess


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit() -> str:
    """The git commit of the checkout the benchmark runs from (``+dirty`` when it has
    uncommitted changes), or ``"unknown"``."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def provenance(threads: int | None = None) -> dict[str, object]:
    """``commit``, ``cpu`` and ``torch`` (and ``threads`` when given) for a JSON line."""
    import torch

    out: dict[str, object] = {"commit": commit(), "cpu": cpu_model(), "torch": torch.__version__}
    if threads is not None:
        out["threads"] = int(threads)
    return out
