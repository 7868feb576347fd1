"""Robustness checks: how much worse does a fitted model get when its inputs degrade?

:func:`robustness` applies a fitted model (a :class:`~xmsgl.model.Downscaler`, a
baseline or the per-reach GRU) to perturbed copies of a dataset and reports the
change of its error against the unperturbed run, on a grid ``check x level``.
The perturbations are also public functions, so they can be used on their own:

``"lowpass"`` (:func:`lowpass`)
    Every dynamic forcing (``seg_*`` and ``reach_*`` variables on time, such as air
    temperature, discharge, precipitation, radiation) is low-passed along time
    with a zero-phase Butterworth filter (:func:`scipy.signal.butter` in
    second-order sections and :func:`scipy.signal.sosfiltfilt`): variations faster
    than the level, a cutoff period in days, are removed. A cutoff period of 2 days
    or less is at or above the Nyquist frequency (0.5 per day) and leaves the data
    unchanged.
``"bandpass"`` (:func:`bandpass`)
    Each forcing keeps its temporal mean plus only the variations with periods
    between the two periods of the level ``(short, long)`` in days; weather
    faster than ``short`` and slow changes beyond ``long`` are removed.
``"lag"`` (:func:`lag`)
    Forcings are shifted by ``k`` days: the model sees on day ``t`` the forcings
    of day ``t - k`` (the first ``k`` days repeat the first value). ``k = 0``
    is the unperturbed run; negative ``k`` gives forcings from the future.
``"shift"``
    Random temporal shifts of the prediction windows: the model is run from a
    start date ``s`` days (drawn uniformly in ``1..level``) before the scored
    period, so its 365-day chunks and their fresh recurrent states fall on other
    dates; the scored days are the same. Stateless baselines do not change.
``"mask_coarse"``
    A random share (the level) of the segments is masked: their coarse inputs
    (every ``seg_*`` input, dynamic and static) are replaced by the mean over all
    segments (per day for forcings) and their coarse observations ``seg_temp``
    are removed. For a network this is a coarse node whose forcings are unknown;
    for the gauge-driven baselines (``"idw"``, ``"harmonic"``) it removes coarse
    sources.
``"mask_gauges"``
    A random share (the level) of the observed reaches (those with any
    ``reach_temp`` value in the dataset given) lose their observations. Only
    methods that read observations when they predict (``"idw"`` and
    ``"harmonic"``) can change; the networks, the GRU, climatology and Mohseni
    read forcings only and show zero change, which the table reports as such.

Random checks are drawn ``n_draws`` times (seeded) and the errors averaged.
Errors are RMSE, MAE and bias over the scored days at every reach against the
truth (``reach_temp_true`` when present).

The filters run on dask arrays too: :func:`xarray.apply_ufunc` with
``dask="parallelized"`` applies :func:`scipy.signal.sosfiltfilt` along a single
time chunk (the time dimension is rechunked to one chunk; other dimensions keep
their chunks), so a chunked dataset stays lazy until the model reads it.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from xmsgl.convention import REACH, SEG, TIME, input_variables
from xmsgl.exceptions import DataError, ParameterError, SchemaError, TimeError

if TYPE_CHECKING:
    from xmsgl.baselines import BaselineModel
    from xmsgl.model import Downscaler

__all__ = ["CHECKS", "DEFAULT_CHECKS", "robustness", "lowpass", "bandpass", "lag", "mask_coarse",
           "mask_gauges"]

#: Checks understood by :func:`robustness`.
CHECKS = ("lowpass", "bandpass", "lag", "shift", "mask_coarse", "mask_gauges")

#: Levels run when ``checks`` is not given.
DEFAULT_CHECKS: dict[str, list[Any]] = {
    "lowpass": [30.0, 7.0],
    "bandpass": [(7.0, 120.0)],
    "lag": [1, 3, 7],
    "shift": [90, 180],
    "mask_coarse": [0.25, 0.5],
    "mask_gauges": [0.5, 1.0],
}

_RANDOM = ("shift", "mask_coarse", "mask_gauges")


def _version() -> str:
    import xmsgl

    return str(xmsgl.__version__)


# ----------------------------------------------------------------------------- perturbations


def _forcings(ds: xr.Dataset, variables: Sequence[str] | None) -> list[str]:
    if variables is None:
        inp = input_variables(ds)
        return list(inp.seg_dynamic + inp.reach_dynamic)
    names = list(variables)
    bad = [v for v in names if v not in ds.data_vars or TIME not in ds[v].dims]
    if bad:
        raise SchemaError(f"variables {bad} are not variables of the dataset on 'time'; give "
                          "dynamic forcings such as 'seg_air_temp'")
    return names


def _period(value: Any, what: str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"{what}={value!r} must be a period in days (a positive number)") from err
    if not np.isfinite(p) or p <= 0:
        raise ParameterError(f"{what}={value!r} must be a period in days (a positive number)")
    return p


def _filter(ds: xr.Dataset, sos: np.ndarray, names: list[str], keep_mean: bool) -> xr.Dataset:
    from scipy.signal import sosfiltfilt

    n_time = ds.sizes[TIME]
    # sosfiltfilt pads with 3 * (2 * sections + 1) values on each side by default.
    pad = 3 * (2 * sos.shape[0] + 1)
    if n_time <= pad:
        raise DataError(f"the dataset has {n_time} days; a zero-phase filter of order "
                        f"{2 * sos.shape[0]} needs more than {pad}: use a longer period or a lower order")

    def kernel(x: np.ndarray) -> np.ndarray:
        y = sosfiltfilt(sos, np.asarray(x, dtype=np.float64), axis=-1)
        if keep_mean:
            y = y + np.mean(x, axis=-1, keepdims=True)
        return y.astype(np.asarray(x).dtype, copy=False)

    out = {}
    for name in names:
        da = ds[name]
        if da.chunks is not None:
            da = da.chunk({TIME: -1})
        res = xr.apply_ufunc(kernel, da, input_core_dims=[[TIME]], output_core_dims=[[TIME]],
                             dask="parallelized", output_dtypes=[da.dtype], keep_attrs=True)
        out[name] = res.transpose(*ds[name].dims)
    return ds.assign(out)


def lowpass(ds: xr.Dataset, period: float, *, order: int = 4,
            variables: Sequence[str] | None = None) -> xr.Dataset:
    """Low-pass the dynamic forcings of ``ds`` along time (zero-phase Butterworth).

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention (daily time steps); not modified.
    period : float
        Cutoff period in days: variations faster than this are removed. At 2 days
        or less the cutoff is at or above the Nyquist frequency and ``ds`` is
        returned unchanged.
    order : int, default 4
        Order of the Butterworth filter (applied forward and backward, so the
        effective order is doubled and the phase is zero).
    variables : sequence of str, optional
        Variables to filter; default every dynamic input (``seg_*`` and ``reach_*``
        on time).

    Returns
    -------
    xarray.Dataset
        A shallow copy with the filtered variables (lazy on dask input).

    Raises
    ------
    ParameterError
        A non-positive period or order.
    DataError
        Too few days for the filter.

    Examples
    --------
    >>> import numpy as np, xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-12-31")
    >>> smooth = lowpass(ds, 30.0)
    >>> bool(smooth.seg_air_temp.diff("time").std() < ds.seg_air_temp.diff("time").std())
    True
    >>> lowpass(ds, 2.0).seg_air_temp.identical(ds.seg_air_temp)
    True
    """
    from scipy.signal import butter

    p = _period(period, "period")
    order = _order(order)
    names = _forcings(ds, variables)
    wn = 2.0 / p  # cutoff frequency 1/p per day over the Nyquist frequency 0.5 per day
    if wn >= 1.0 or not names:
        return ds.copy()
    sos = butter(order, wn, btype="lowpass", output="sos")
    return _filter(ds, sos, names, keep_mean=False)


def bandpass(ds: xr.Dataset, short: float, long: float, *, order: int = 4,
             variables: Sequence[str] | None = None) -> xr.Dataset:
    """Keep each forcing's mean plus its variations with periods in ``[short, long]`` days.

    A zero-phase Butterworth band-pass (:func:`scipy.signal.sosfiltfilt`) along
    time; the temporal mean of each series (per node) is added back so that the
    level of the forcing is kept. ``short <= 2`` days makes it a high-pass at
    ``long`` (plus the mean).

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention; not modified.
    short, long : float
        The shortest and longest periods kept, in days (``short < long``).
    order : int, default 4
        Order of the Butterworth filter.
    variables : sequence of str, optional
        Variables to filter; default every dynamic input.

    Returns
    -------
    xarray.Dataset

    Raises
    ------
    ParameterError
        Non-positive periods, ``short >= long`` or a bad order.

    Examples
    --------
    >>> import numpy as np, xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2002-12-31")
    >>> bp = bandpass(ds, 5.0, 60.0)
    >>> bool(abs(bp.seg_air_temp.mean() - ds.seg_air_temp.mean()) < 0.05)
    True
    """
    from scipy.signal import butter

    lo, hi = _period(short, "short"), _period(long, "long")
    if lo >= hi:
        raise ParameterError(f"short={short!r} must be shorter than long={long!r} (periods in days)")
    order = _order(order)
    names = _forcings(ds, variables)
    if not names:
        return ds.copy()
    f_hi, f_lo = 2.0 / lo, 2.0 / hi
    if f_hi >= 1.0:
        sos = butter(order, f_lo, btype="highpass", output="sos")
    else:
        sos = butter(order, [f_lo, f_hi], btype="bandpass", output="sos")
    return _filter(ds, sos, names, keep_mean=True)


def _order(order: Any) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= int(order) <= 12:
        raise ParameterError(f"order={order!r} must be an integer from 1 to 12")
    return int(order)


def lag(ds: xr.Dataset, days: int, *, variables: Sequence[str] | None = None) -> xr.Dataset:
    """Shift the dynamic forcings by ``days``: day ``t`` gets the forcings of ``t - days``.

    The days left empty at the edge repeat the nearest value. ``days=0`` returns
    an unchanged copy; negative ``days`` gives forcings from the future.

    Raises
    ------
    ParameterError
        ``days`` not an integer, or not shorter than the time axis.

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-03-31")
    >>> late = lag(ds, 2)
    >>> bool((late.seg_air_temp.isel(time=10) == ds.seg_air_temp.isel(time=8)).all())
    True
    """
    if isinstance(days, bool) or not isinstance(days, (int, np.integer)):
        raise ParameterError(f"lag days={days!r} must be an integer number of days")
    k = int(days)
    if TIME not in ds.dims or abs(k) >= ds.sizes[TIME]:
        raise ParameterError(f"lag days={days!r} must be shorter than the time axis "
                             f"({ds.sizes.get(TIME, 0)} days)")
    names = _forcings(ds, variables)
    if k == 0 or not names:
        return ds.copy()
    out = {}
    for name in names:
        da = ds[name]
        edge = da.isel({TIME: 0 if k > 0 else -1})
        out[name] = da.shift({TIME: k}).fillna(edge).astype(da.dtype).transpose(*da.dims)
        out[name].attrs = da.attrs
    return ds.assign(out)


def _share(value: Any, what: str) -> float:
    try:
        s = float(value)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"{what}={value!r} must be a share between 0 and 1") from err
    if not 0.0 <= s <= 1.0:
        raise ParameterError(f"{what}={value!r} must be a share between 0 and 1")
    return s


def mask_coarse(ds: xr.Dataset, share: float, *, seed: int = 0) -> tuple[xr.Dataset, np.ndarray]:
    """Mask a random share of the segments: basin-mean coarse inputs, no ``seg_temp``.

    Every ``seg_*`` input of the chosen segments is replaced by the mean over all
    segments (per day for forcings) and their ``seg_temp`` becomes NaN.

    Returns
    -------
    (xarray.Dataset, numpy.ndarray)
        The perturbed copy and the ids of the masked segments.

    Raises
    ------
    ParameterError
        A share outside [0, 1].

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=8, start="2001-01-01", end="2001-03-31")
    >>> out, ids = mask_coarse(ds, 0.5, seed=1)
    >>> len(ids), bool(out.seg_temp.sel(seg=ids).isnull().all())
    (4, True)
    """
    s = _share(share, "share")
    n = ds.sizes[SEG]
    k = int(round(s * n))
    rng = np.random.default_rng(seed)
    pick = np.zeros(n, dtype=bool)
    pick[rng.choice(n, size=k, replace=False)] = True
    ids = np.asarray(ds[SEG].values)[pick]
    if k == 0:
        return ds.copy(), ids
    inp = input_variables(ds)
    sel = xr.DataArray(pick, dims=(SEG,), coords={SEG: ds[SEG]})
    out = {}
    for name in (*inp.seg_dynamic, *inp.seg_static):
        da = ds[name]
        out[name] = da.where(~sel, da.mean(SEG)).astype(da.dtype).transpose(*da.dims)
        out[name].attrs = da.attrs
    if "seg_temp" in ds.data_vars:
        out["seg_temp"] = ds["seg_temp"].where(~sel)
    return ds.assign(out), ids


def mask_gauges(ds: xr.Dataset, share: float, *, seed: int = 0) -> tuple[xr.Dataset, np.ndarray]:
    """Drop the observations ``reach_temp`` of a random share of the observed reaches.

    Returns
    -------
    (xarray.Dataset, numpy.ndarray)
        The perturbed copy and the ids of the dropped reaches.

    Raises
    ------
    ParameterError
        A share outside [0, 1].
    SchemaError
        No ``reach_temp`` in ``ds``.
    """
    s = _share(share, "share")
    if "reach_temp" not in ds.data_vars:
        raise SchemaError("mask_gauges drops observed reaches of 'reach_temp', which is missing")
    observed = np.asarray(ds["reach_temp"].notnull().any(TIME).transpose(REACH).values)
    cand = np.flatnonzero(observed)
    k = int(round(s * cand.size))
    rng = np.random.default_rng(seed)
    drop = np.zeros(ds.sizes[REACH], dtype=bool)
    if k:
        drop[rng.choice(cand, size=k, replace=False)] = True
    ids = np.asarray(ds[REACH].values)[drop]
    if not k:
        return ds.copy(), ids
    sel = xr.DataArray(drop, dims=(REACH,), coords={REACH: ds[REACH]})
    return ds.assign(reach_temp=ds["reach_temp"].where(~sel)), ids


# ----------------------------------------------------------------------------- the table


def _predict(model: Any, ds: xr.Dataset, time: tuple[str, str]) -> xr.DataArray:
    from xmsgl.baselines import BaselineModel

    if isinstance(model, BaselineModel):
        return model.predict(ds, time=time)
    from xmsgl.downscale import downscale

    return downscale(ds, model, time=time)


def _default_period(model: Any, time: pd.DatetimeIndex) -> tuple[str, str]:
    cfg = getattr(model, "config", {}) or {}
    test = (cfg.get("periods") or {}).get("test")
    if test:
        return str(test[0][0]), str(test[-1][1])
    train = cfg.get("train")
    if train:
        end = max(pd.Timestamp(b) for _, b in train)
        after = time[time > end]
        if after.size:
            return str(after[0].date()), str(after[-1].date())
    return str(time[0].date()), str(time[-1].date())


def _levels(checks: Mapping[str, Sequence[Any]] | Sequence[str] | None) -> dict[str, list[Any]]:
    if checks is None:
        return {k: list(v) for k, v in DEFAULT_CHECKS.items()}
    if isinstance(checks, str):
        checks = [checks]
    if not isinstance(checks, Mapping):
        checks = {str(c): DEFAULT_CHECKS.get(str(c), []) for c in checks}
    bad = sorted(set(checks) - set(CHECKS))
    if bad:
        raise ParameterError(f"checks {bad} are not known; use some of {list(CHECKS)}")
    out: dict[str, list[Any]] = {}
    for name, levels in checks.items():
        lv = list(levels) if isinstance(levels, (list, tuple)) and not (
            name == "bandpass" and len(levels) == 2 and not isinstance(levels[0], (list, tuple))) \
            else [levels]
        if not lv:
            raise ParameterError(f"check {name!r} has no level; give at least one")
        for level in lv:
            if name == "lowpass":
                _period(level, "lowpass level")
            elif name == "bandpass":
                if not (isinstance(level, (list, tuple)) and len(level) == 2):
                    raise ParameterError(f"bandpass level {level!r} must be (short, long) periods in days")
                if _period(level[0], "short") >= _period(level[1], "long"):
                    raise ParameterError(f"bandpass level {level!r}: short must be below long")
            elif name in ("lag", "shift"):
                if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
                    raise ParameterError(f"{name} level {level!r} must be an integer number of days")
                if name == "shift" and int(level) < 1:
                    raise ParameterError(f"shift level {level!r} must be a positive number of days")
            else:
                _share(level, f"{name} level")
        out[name] = lv
    return out


def _label(name: str, level: Any) -> str:
    if name == "lowpass":
        return f"periods < {float(level):g} d removed"
    if name == "bandpass":
        return f"periods {float(level[0]):g}-{float(level[1]):g} d kept"
    if name == "lag":
        return f"{int(level)} d"
    if name == "shift":
        return f"start 1-{int(level)} d earlier"
    return f"{float(level):g} of {'segments' if name == 'mask_coarse' else 'observed reaches'}"


def robustness(
    ds: xr.Dataset,
    model: Downscaler | BaselineModel | str | os.PathLike[str],
    checks: Mapping[str, Sequence[Any]] | Sequence[str] | None = None,
    truth: xr.DataArray | str | None = None,
    *,
    time: tuple[Any, Any] | None = None,
    n_draws: int = 3,
    seed: int = 0,
    order: int = 4,
) -> xr.Dataset:
    """Change of a fitted model's error when its inputs are perturbed.

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset the model is applied to (as for :func:`xmsgl.downscale.downscale`
        or ``BaselineModel.predict``); it is not modified. Mask the observations a
        gauge-driven baseline must not see before passing it.
    model : Downscaler, BaselineModel or path
        A fitted model (any method of :func:`xmsgl.fit`) or the folder of a saved one.
    checks : mapping or sequence of str, optional
        ``{check: [levels]}`` (see the module docstring; levels: cutoff periods in
        days for ``"lowpass"``, ``(short, long)`` periods for ``"bandpass"``,
        days for ``"lag"`` and the largest ``"shift"``, shares for the masks), or
        names of checks run at their default levels (:data:`DEFAULT_CHECKS`).
        Default: every check at its default levels.
    truth : xarray.DataArray or str, optional
        The (reach, time) reference in degC, or the name of a variable of ``ds``;
        default ``reach_temp_true`` when present, else ``reach_temp``.
    time : (start, end), optional
        Scored days; default the model's test period (``config["periods"]["test"]``),
        else the days after its training period, else every day.
    n_draws : int, default 3
        Draws of each random check (``"shift"``, ``"mask_coarse"``, ``"mask_gauges"``);
        the errors are averaged over draws.
    seed : int, default 0
        Seed of the draws (draw ``i`` of a check uses ``(seed, i)``).
    order : int, default 4
        Order of the Butterworth filters.

    Returns
    -------
    xarray.Dataset
        On (``check``, ``level``), ``level`` the position of the level in its
        check (checks with fewer levels are padded with NaN): ``rmse``, ``mae``,
        ``bias`` of the perturbed runs and ``d_rmse``, ``d_mae``, ``d_bias``, the
        perturbed minus the unperturbed value (degC; positive ``d_rmse``: worse);
        ``setting`` (check, level) describes each level. ``base_rmse``,
        ``base_mae``, ``base_bias`` hold the unperturbed errors. Attributes name
        the method, scored period, truth, draws and a ``history`` line.

    Raises
    ------
    ParameterError
        An unknown check, a bad level (non-positive period, ``short >= long``, a
        non-integer lag, a share outside [0, 1]), or ``n_draws < 1``.
    TimeError
        ``time`` selects no day of ``ds``.
    SchemaError
        No truth to score against.

    Examples
    --------
    >>> import xmsgl
    >>> from xmsgl.baselines import fit_baseline
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=6, start="2000-10-01", end="2003-09-30")
    >>> model = fit_baseline(ds, "mohseni")
    >>> rob = robustness(ds, model, {"lag": [0, 5], "lowpass": [2.0, 30.0]})
    >>> float(abs(rob.d_rmse.sel(check="lag", level=0)))
    0.0
    >>> dict(rob.d_rmse.sizes)
    {'check': 2, 'level': 2}
    """
    from xmsgl.evaluate import evaluate

    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or int(n_draws) < 1:
        raise ParameterError(f"n_draws={n_draws!r} must be a positive integer")
    order = _order(order)
    levels = _levels(checks)
    if not isinstance(model, (str, os.PathLike)):
        fitted = model
    else:
        from xmsgl.model import load

        fitted = load(model)
    if TIME not in ds.dims:
        raise SchemaError("the dataset has no 'time' dimension")
    times = pd.DatetimeIndex(ds[TIME].values)
    if time is None:
        period = _default_period(fitted, times)
    else:
        period = (str(pd.Timestamp(time[0]).date()), str(pd.Timestamp(time[1]).date()))
    scored = (times >= pd.Timestamp(period[0])) & (times <= pd.Timestamp(period[1]))
    if not scored.any():
        raise TimeError(f"time={period!r} selects no day of the dataset "
                        f"({times[0].date()} to {times[-1].date()})")
    if truth is None:
        truth = "reach_temp_true" if "reach_temp_true" in ds.data_vars else "reach_temp"
    if isinstance(truth, str):
        if truth not in ds.data_vars:
            raise SchemaError(f"truth={truth!r} is not a variable of the dataset; give the (reach, time) "
                              "reference to score against")
        truth_name, ref = truth, ds[truth]
    else:
        truth_name, ref = str(truth.name or "truth"), truth
    ref = ref.sel({TIME: slice(*period)})

    def score(pred: xr.DataArray) -> tuple[float, float, float]:
        res = evaluate(pred.sel({TIME: slice(*period)}), ref)
        return float(res.rmse), float(res.mae), float(res.bias)

    base = score(_predict(fitted, ds, period))
    names = list(levels)
    n_lev = max(len(v) for v in levels.values())
    vals = np.full((3, len(names), n_lev), np.nan)
    setting = np.full((len(names), n_lev), "", dtype=object)
    t_first = int(np.flatnonzero(scored)[0])
    for i, name in enumerate(names):
        for j, level in enumerate(levels[name]):
            setting[i, j] = _label(name, level)
            draws = int(n_draws) if name in _RANDOM else 1
            got = []
            for d in range(draws):
                rng_seed = [int(seed), i, j, d]
                if name == "lowpass":
                    got.append(score(_predict(fitted, lowpass(ds, level, order=order), period)))
                elif name == "bandpass":
                    got.append(score(_predict(fitted, bandpass(ds, level[0], level[1], order=order),
                                              period)))
                elif name == "lag":
                    got.append(score(_predict(fitted, lag(ds, int(level)), period)))
                elif name == "shift":
                    off = int(np.random.default_rng(rng_seed).integers(1, int(level) + 1))
                    start = times[max(0, t_first - off)]
                    got.append(score(_predict(fitted, ds, (str(start.date()), period[1]))))
                elif name == "mask_coarse":
                    pert, _ = mask_coarse(ds, level, seed=int(np.random.default_rng(rng_seed).integers(2**31)))
                    got.append(score(_predict(fitted, pert, period)))
                else:
                    pert, _ = mask_gauges(ds, level, seed=int(np.random.default_rng(rng_seed).integers(2**31)))
                    got.append(score(_predict(fitted, pert, period)))
            vals[:, i, j] = np.mean(np.asarray(got), axis=0)
    coords = {"check": names, "level": np.arange(n_lev)}
    out = xr.Dataset(coords=coords)
    for k, m in enumerate(("rmse", "mae", "bias")):
        out[m] = (("check", "level"), vals[k], {"units": "degC", "long_name": f"{m.upper()} of the perturbed run"})
        out[f"d_{m}"] = (("check", "level"), vals[k] - base[k],
                         {"units": "degC", "long_name": f"change of {m.upper()} against the unperturbed run"})
        out[f"base_{m}"] = ((), base[k], {"units": "degC", "long_name": f"{m.upper()} of the unperturbed run"})
    out = out.assign_coords(setting=(("check", "level"), setting.astype(str)))
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    out.attrs.update({
        "method": str(getattr(fitted, "method", "?")),
        "scored_period": list(period),
        "truth": truth_name,
        "n_draws": int(n_draws),
        "seed": int(seed),
        "order": order,
        "history": f"{now} UTC: xmsgl {_version()} robustness(checks={levels!r}, "
                   f"n_draws={n_draws}, seed={seed}, order={order})",
    })
    return out
