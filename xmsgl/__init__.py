"""xmsgl: multi-scale graph learning to downscale stream water temperature.

Importing xmsgl registers the ``ds.msgl`` accessor on :class:`xarray.Dataset`. torch
is imported only when graphs or models are needed.
"""

from __future__ import annotations

# isort: off
# First: Ctrl-C while the xmsgl command imports what follows is said in one line.
from xmsgl import _starting  # noqa: F401  (arms its hook)
# isort: on

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from xmsgl import accessor as _accessor  # noqa: F401  (registers ds.msgl)
from xmsgl import datasets
from xmsgl.convention import OUTLET, to_convention, validate
from xmsgl.exceptions import (
    ChoiceError,
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
    "ChoiceError",
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


if TYPE_CHECKING:  # what __getattr__ gives, as type checkers see it (never run)
    from xmsgl import accessor as accessor
    from xmsgl import baselines as baselines
    from xmsgl import cli as cli
    from xmsgl import convention as convention
    from xmsgl import coverage as coverage
    from xmsgl import datasets as datasets
    from xmsgl import demo as demo
    from xmsgl import downscale as downscale
    from xmsgl import evaluate as evaluate
    from xmsgl import exceptions as exceptions
    from xmsgl import explain as explain
    from xmsgl import graph as graph
    from xmsgl import io as io
    from xmsgl import knn as knn
    from xmsgl import methods as methods
    from xmsgl import metrics as metrics
    from xmsgl import model as model
    from xmsgl import nn as nn
    from xmsgl import options as options
    from xmsgl import periods as periods
    from xmsgl import robustness as robustness
    from xmsgl import sampling as sampling
    from xmsgl import scale as scale
    from xmsgl import train as train
    from xmsgl.model import Downscaler as Downscaler
    from xmsgl.model import fit as fit
    from xmsgl.model import load as load

#: Submodules reachable as attributes after ``import xmsgl`` (``xmsgl.io.to_zarr_safe``,
#: ``xmsgl.metrics.rmse``), imported on first use: several import torch.
_SUBMODULES = frozenset({
    "accessor", "baselines", "cli", "convention", "coverage", "datasets", "demo", "downscale",
    "evaluate", "exceptions", "explain", "graph", "io", "knn", "methods", "metrics", "model", "nn",
    "options", "periods", "robustness", "sampling", "scale", "train",
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
