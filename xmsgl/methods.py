"""The names of the networks :func:`xmsgl.fit` trains, importable without torch (the
``xmsgl`` command's options list them before any command has to load torch)."""

from __future__ import annotations

__all__ = ["METHODS"]

#: Methods understood by :func:`xmsgl.model.fit` (the baselines' names are
#: :data:`xmsgl.baselines.BASELINES`).
METHODS = ("msgl", "async-msgl", "fine-only", "remap", "direct", "progressive")
