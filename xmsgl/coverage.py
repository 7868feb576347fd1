"""Where a model is asked about places unlike those it learned from.

A network model learns from the nodes that have observations in its training period;
every other node gets a prediction too, from its inputs through the same weights. A
node whose static inputs (area, slope, shade, groundwater share, ...) lie far beyond
those of every observed node is an extrapolation: nothing in training tested what the
network does there, and it can be far off (on the Delaware data, an unobserved segment
whose groundwater coefficient was 11 standard deviations above the mean was predicted
near 14 degC all year). :func:`coverage` says which nodes those are. It does not
judge the time-varying inputs (air temperature, discharge).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import xarray as xr

from xmsgl.convention import REACH, SEG
from xmsgl.exceptions import ParameterError, SchemaError

__all__ = ["coverage"]


def coverage(ds: xr.Dataset, model: Any, *, margin: float = 1.0) -> xr.Dataset:
    """Nodes of ``ds`` whose static inputs lie beyond those of the observed nodes.

    For each static input of a scale the model reads, the fit recorded the smallest
    and largest value over the nodes with at least one training observation at that
    scale (``model.features.observed_range``). A node of ``ds`` is *beyond* where one
    of its static inputs lies more than ``margin`` standard deviations (the model's
    standardization of that input) below that smallest or above that largest value.

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset to be downscaled (only its static inputs are read).
    model : xmsgl.Downscaler or path
        A fitted network model (``msgl``, ``async-msgl``, ``fine-only``, ``remap``,
        ``direct``, ``progressive``), or the folder of a saved one.
    margin : float, default 1.0
        Standard deviations beyond the observed range before a node counts.

    Returns
    -------
    xarray.Dataset
        For each scale ``s`` the model reads (``seg``, ``reach``): ``s_beyond_observed``
        (bool), ``s_beyond_sd`` (how far beyond, in standard deviations: the largest
        over the inputs, 0 inside) and ``s_beyond_variable`` (that input's name, ``""``
        inside). When the model reads both scales, ``reach_segment_beyond_observed``
        flags reaches whose segment is beyond: MSGL's reach predictions also read
        their segment's states.

    Raises
    ------
    ParameterError
        For a baseline model, a model saved before the ranges were recorded, or a
        ``margin`` that is not a number >= 0.
    SchemaError
        For a static input the model reads that ``ds`` lacks or holds on time.

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2003-09-30")
    >>> model = ds.msgl.fit(epochs=1, progress=False)  # doctest: +SKIP
    >>> cov = ds.msgl.coverage(model)  # doctest: +SKIP
    >>> int(cov["reach_beyond_observed"].sum())  # doctest: +SKIP
    0
    """
    from xmsgl.baselines import BaselineModel
    from xmsgl.model import Downscaler, load

    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)) or not (
            np.isfinite(margin) and margin >= 0):
        raise ParameterError(f"margin={margin!r} must be a number of standard deviations >= 0")
    if isinstance(model, (str, os.PathLike)):
        model = load(model)
    if isinstance(model, BaselineModel):
        raise ParameterError(
            f"coverage judges the inputs of a network model; the baseline {model.method!r} reads "
            "no static inputs")
    if not isinstance(model, Downscaler):
        raise ParameterError(f"expected an xmsgl.Downscaler or a saved model's folder, got "
                             f"{type(model).__name__}")
    spec = model.features
    if not spec.observed_range and any(spec.static.values()):
        raise ParameterError(
            "this model was saved before xmsgl recorded the range of its observed nodes' static "
            "inputs; fit it again to judge coverage")
    reads = {SEG: model.output != "fine_only", REACH: model.output != "remap"}
    out = xr.Dataset()
    flags: dict[str, np.ndarray] = {}
    for dim, names in ((SEG, spec.seg_vars), (REACH, spec.reach_vars)):
        if not reads[dim] or dim not in ds.dims:
            continue
        n = ds.sizes[dim]
        worst = np.zeros(n)
        which = np.full(n, "", dtype=object)
        for name in names:
            if name not in spec.observed_range:
                continue
            if name not in ds.variables:
                raise SchemaError(f"the model reads the static input {name!r}, which the dataset lacks")
            if tuple(map(str, ds[name].dims)) != (dim,):
                raise SchemaError(f"the model reads {name!r} as a static input on ({dim!r},); the "
                                  f"dataset holds it on {tuple(map(str, ds[name].dims))}")
            lo, hi = spec.observed_range[name]
            v = np.asarray(ds[name].values, dtype=np.float64)
            far = np.maximum(lo - v, v - hi) / spec.std[name]
            far = np.where(np.isfinite(far), np.maximum(far, 0.0), 0.0)
            more = far > worst
            worst[more], which[more] = far[more], name
        flag = worst > margin
        flags[dim] = flag
        coord = {dim: ds[dim].values}
        out[f"{dim}_beyond_observed"] = xr.DataArray(flag, dims=(dim,), coords=coord, attrs={
            "long_name": f"static input beyond those of the {dim}s with training observations",
            "description": f"true where a static input lies more than {float(margin):g} standard "
                           "deviations beyond its range over the observed nodes"})
        out[f"{dim}_beyond_sd"] = xr.DataArray(worst.astype(np.float32), dims=(dim,), coords=coord, attrs={
            "long_name": "distance beyond the observed range", "units": "standard deviations"})
        out[f"{dim}_beyond_variable"] = xr.DataArray(which.astype(str), dims=(dim,), coords=coord, attrs={
            "long_name": "static input farthest beyond the observed range"})
    if SEG in flags and REACH in flags and "reach_seg" in ds.variables:
        seg_ids = np.asarray(ds[SEG].values)
        pos = {int(s): i for i, s in enumerate(seg_ids)}
        idx = np.array([pos.get(int(s), -1) for s in np.asarray(ds["reach_seg"].values)])
        seg_flag = np.where(idx >= 0, flags[SEG][np.maximum(idx, 0)], False)
        out["reach_segment_beyond_observed"] = xr.DataArray(
            seg_flag, dims=(REACH,), coords={REACH: ds[REACH].values},
            attrs={"long_name": "the reach's segment is beyond the observed segments"})
    out.attrs.update({"xmsgl_margin_sd": float(margin), "xmsgl_method": model.method,
                      "xmsgl_model_sha256": model.sha256})
    return out
