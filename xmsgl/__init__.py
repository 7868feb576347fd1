"""xmsgl: multi-scale graph learning to downscale stream water temperature.

Importing xmsgl registers the ``ds.msgl`` accessor on :class:`xarray.Dataset`. torch
is imported only when graphs or models are needed.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from xmsgl import accessor as _accessor  # noqa: F401  (registers ds.msgl)
from xmsgl import datasets
from xmsgl.convention import OUTLET, to_convention, validate
from xmsgl.exceptions import (
    ColdStartWarning,
    DataError,
    DownloadError,
    ExtrapolationWarning,
    FewObservationsWarning,
    InputRangeWarning,
    InSampleWarning,
    ModelMismatchError,
    ParameterError,
    PeriodError,
    SchemaError,
    ShortRecordWarning,
    TimeError,
    TimeGapWarning,
    TopologyError,
    TrainingError,
    UnitConversionWarning,
    UnitsError,
    XmsglError,
    XmsglWarning,
)
from xmsgl.options import get_option, set_options

try:
    __version__ = version("xmsgl")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "OUTLET",
    "DataError",
    "DownloadError",
    "Downscaler",
    "ExtrapolationWarning",
    "ModelMismatchError",
    "ParameterError",
    "PeriodError",
    "SchemaError",
    "TimeError",
    "ShortRecordWarning",
    "FewObservationsWarning",
    "InputRangeWarning",
    "ColdStartWarning",
    "InSampleWarning",
    "TimeGapWarning",
    "TopologyError",
    "TrainingError",
    "UnitConversionWarning",
    "UnitsError",
    "XmsglError",
    "XmsglWarning",
    "__version__",
    "datasets",
    "fit",
    "get_option",
    "load",
    "set_options",
    "to_convention",
    "validate",
]


#: Submodules reachable as attributes after ``import xmsgl`` (``xmsgl.io.to_zarr_safe``,
#: ``xmsgl.metrics.rmse``), imported on first use: several import torch.
_SUBMODULES = frozenset({
    "accessor", "baselines", "cli", "convention", "coverage", "datasets", "demo", "downscale",
    "evaluate", "exceptions", "explain", "graph", "io", "knn", "metrics", "model", "nn", "options",
    "periods", "robustness", "sampling", "scale", "train",
})


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"xmsgl.{name}")
    # Model objects live with torch; import them only when asked for.
    if name == "Downscaler":
        from xmsgl.model import Downscaler

        return Downscaler
    if name == "load":
        from xmsgl.model import load

        return load
    if name == "fit":
        from xmsgl.model import fit

        return fit
    raise AttributeError(f"module 'xmsgl' has no attribute {name!r}")


def __dir__() -> list[str]:
    # What __getattr__ gives too, for tab completion and help(xmsgl).
    return sorted({*globals(), *__all__, *_SUBMODULES, "Downscaler", "fit", "load"})
