"""The names of the methods :func:`xmsgl.fit` understands, importable without torch (the
``xmsgl`` command's options list them before any command has to load torch)."""

from __future__ import annotations

__all__ = ["BASELINES", "FIT_METHODS", "METHODS"]

#: Networks trained by :func:`xmsgl.model.fit`.
METHODS = ("msgl", "async-msgl", "fine-only", "remap", "direct", "progressive")

#: Baselines fitted by :func:`xmsgl.baselines.fit_baseline`.
BASELINES = ("climatology", "mohseni", "idw", "harmonic")

#: Every name :func:`xmsgl.fit` understands: the networks, the baselines and ``"gru"``
#: (the per-reach GRU, :mod:`xmsgl.nn.gru`), in the order messages list them.
FIT_METHODS = (*METHODS, *BASELINES, "gru")
