"""Thin out fine observations to emulate sparse monitoring (no torch here)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xmsgl.convention import REACH, TIME
from xmsgl.exceptions import SchemaError, XmsglError

__all__ = ["sparsify"]


def _period_mask(time: pd.DatetimeIndex, period: Any) -> np.ndarray:
    if period is None:
        return np.ones(len(time), dtype=bool)
    if isinstance(period, slice):
        period = (period.start, period.stop)
    if isinstance(period, tuple) and len(period) == 2 and not isinstance(period[0], (tuple, list)):
        period = [period]
    mask = np.zeros(len(time), dtype=bool)
    for start, end in period:
        lo = pd.Timestamp(start) if start is not None else time[0]
        hi = pd.Timestamp(end) if end is not None else time[-1]
        mask |= (time >= lo) & (time <= hi)
    return mask


def sparsify(
    ds: xr.Dataset,
    keep: float = 0.01,
    seed: int = 42,
    by: str = "observation",
    period: Any = None,
    variable: str = "reach_temp",
) -> xr.Dataset:
    """Keep a random share of the fine observations; the rest become NaN.

    The input is never modified: a new Dataset is returned whose ``variable`` is a
    new array. Exactly ``round(keep * n)`` of the ``n`` candidates are kept (at
    least one when ``keep > 0`` and there is any), drawn with
    :func:`numpy.random.default_rng` so that a seed gives the same draw everywhere.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset with ``variable`` on (reach, time).
    keep : float, default 0.01
        Share to keep, in [0, 1].
    seed : int, default 42
        Seed of the draw.
    by : {"observation", "reach"}, default "observation"
        ``"observation"`` keeps a share of the observed reach-days; ``"reach"``
        keeps all observations of a share of the observed reaches, so that whole
        reaches become unobserved.
    period : (start, end) or list of (start, end), optional
        Thin only days inside it (ends included); other days keep all their
        observations. Default: every day. Using the same sparsity for the training
        and validation periods (the default) keeps validation honest.
    variable : str, default "reach_temp"
        The observation variable to thin.

    Returns
    -------
    xarray.Dataset
        A copy of ``ds`` with ``variable`` thinned and its attribute
        ``xmsgl_sparsify`` recording the call.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> ds = xr.Dataset({"reach_temp": (("reach", "time"), np.ones((4, 50)), {"units": "degC"})},
    ...                 coords={"reach": [1, 2, 3, 4], "time": pd.date_range("2000-01-01", periods=50)})
    >>> out = sparsify(ds, keep=0.1, seed=0)
    >>> int(out["reach_temp"].notnull().sum()), int(ds["reach_temp"].notnull().sum())
    (20, 200)
    """
    if not 0.0 <= float(keep) <= 1.0:
        raise XmsglError(f"keep={keep!r} must be a share between 0 and 1 (0.01 keeps 1%)")
    if by not in ("observation", "reach"):
        raise XmsglError(f"by={by!r} is not known; use 'observation' or 'reach'")
    if variable not in ds.data_vars:
        raise SchemaError(f"variable {variable!r} is not in the dataset; nothing to sparsify")
    da = ds[variable]
    if set(map(str, da.dims)) != {REACH, TIME}:
        raise SchemaError(f"variable {variable!r} must be on ('reach', 'time'), got {tuple(da.dims)}")
    vals = np.array(da.transpose(REACH, TIME).values, dtype=da.dtype, copy=True)
    tmask = _period_mask(pd.DatetimeIndex(ds[TIME].values), period)
    observed = np.isfinite(vals) & tmask[None, :]
    rng = np.random.default_rng(seed)
    drop = np.zeros_like(observed)
    if by == "observation":
        cand = np.flatnonzero(observed.ravel())
        n_keep = int(round(keep * cand.size))
        if keep > 0 and cand.size:
            n_keep = max(1, n_keep)
        kept = rng.choice(cand, size=n_keep, replace=False) if n_keep else np.array([], dtype=np.int64)
        flat = observed.ravel().copy()
        flat[kept] = False
        drop = flat.reshape(observed.shape)
    else:
        reaches = np.flatnonzero(observed.any(axis=1))
        n_keep = int(round(keep * reaches.size))
        if keep > 0 and reaches.size:
            n_keep = max(1, n_keep)
        kept = rng.choice(reaches, size=n_keep, replace=False) if n_keep else np.array([], dtype=np.int64)
        lose = np.ones(vals.shape[0], dtype=bool)
        lose[kept] = False
        drop = observed & lose[:, None]
    vals[drop] = np.nan
    attrs = {**da.attrs, "xmsgl_sparsify": f"keep={keep}, seed={seed}, by={by!r}, period={period!r}"}
    new = xr.DataArray(vals, dims=(REACH, TIME), coords=da.transpose(REACH, TIME).coords, attrs=attrs)
    out = ds.copy(deep=False)
    out[variable] = new.transpose(*da.dims)
    return out
