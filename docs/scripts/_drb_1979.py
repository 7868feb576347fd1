"""The Delaware files and the model the pitfall scripts share.

``cold_start.py``, ``dynamic_extrapolation.py`` and ``partial_network.py`` each measure
one way a downscale can go wrong on the Delaware files, with the same short model: MSGL,
5 epochs, seed 0, fitted on 1979 (validation 1980-01..06, test 1980-07..12), on one
torch thread. Needs ``XMSGL_DATA_DIR`` (or the files in the cache).
"""

from __future__ import annotations

import warnings
from typing import Any

import xarray as xr

from xmsgl.datasets import open_drb

TEST = ("1980-07-01", "1980-12-31")


def drb_and_model() -> tuple[xr.Dataset, Any]:
    """The Delaware dataset and the 5-epoch model fitted on 1979 (its warnings silenced)."""
    import torch

    torch.set_num_threads(1)
    ds = open_drb()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ds.msgl.fit(method="msgl", epochs=5, seed=0, progress=False,
                            train=("1979-01-01", "1979-12-31"), val=("1980-01-01", "1980-06-30"),
                            test=TEST)
    return ds, model
