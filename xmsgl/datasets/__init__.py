"""Data sets: the synthetic basin generator and the real Delaware River Basin.

``synthetic_basin`` builds a physically based synthetic basin in the xmsgl
convention; ``open_drb`` and ``fetch_data`` give the real Delaware River Basin
through pooch, from the folder ``data_folder()`` names at the time of each call
(``XMSGL_DATA_DIR`` when set); ``catalog()`` gives them as an intake 2 catalog.
Modules load on first use, so ``import xmsgl`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what __getattr__ gives, as type checkers see it (never run)
    from xmsgl.datasets._catalog import catalog
    from xmsgl.datasets.drb import data_folder, fetch_data, open_drb
    from xmsgl.datasets.synthetic import synthetic_basin

__all__ = ["synthetic_basin", "open_drb", "fetch_data", "data_folder", "catalog"]


def __getattr__(name: str) -> Any:
    if name == "synthetic_basin":
        from xmsgl.datasets.synthetic import synthetic_basin

        return synthetic_basin
    if name == "catalog":
        from xmsgl.datasets._catalog import catalog

        return catalog
    if name in ("open_drb", "fetch_data", "data_folder"):
        from xmsgl.datasets import drb

        return getattr(drb, name)
    raise AttributeError(f"module 'xmsgl.datasets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
