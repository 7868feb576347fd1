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
time chunk (each chunk holds the whole time axis, the other dimension cut so that
a chunk stays within dask's ``array.chunk-size``:
:func:`xmsgl.convention.whole_time_chunks`), and the result comes back in the
input's chunks, so a chunked dataset stays lazy until the model reads it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import pandas as pd
import xarray as xr

from xmsgl.convention import (
    REACH,
    SEG,
    TIME,
    expect_dataset,
    input_variables,
    is_temperature_units,
    whole_time_chunks,
)
from xmsgl.exceptions import (
    ChoiceError,
    DataError,
    InSampleWarning,
    ParameterError,
    SchemaError,
    TimeError,
    check_count,
    check_flag,
    typed_arguments,
    warn_at_user,
)
from xmsgl.periods import mask_spans, period_bounds, period_mask, select_days, spans_text

if TYPE_CHECKING:
    import torch

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


def _forcings(ds: xr.Dataset, variables: str | Sequence[str] | None) -> list[str]:
    expect_dataset(ds)
    if variables is None:
        inp = input_variables(ds)
        return list(inp.seg_dynamic + inp.reach_dynamic)
    if isinstance(variables, str):
        names = [variables]
    elif isinstance(variables, Iterable):
        names = list(variables)
    else:
        raise ParameterError(f"variables={variables!r} must be a variable name or a list of them, "
                             "e.g. variables='seg_air_temp'")
    bad = [v for v in names if not isinstance(v, str) or v not in ds.data_vars or TIME not in ds[v].dims]
    if bad:
        raise SchemaError(f"variables {bad} are not variables of the dataset on 'time'; give "
                          "dynamic forcings such as 'seg_air_temp'")
    return names


def _period(value: Any, what: str) -> float:
    # float(True) is 1: a 1-day period, which changes nothing; text such as "30" is
    # refused as numbers given as text are elsewhere (a list's "30d" would not parse).
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ParameterError(f"{what}={value!r} must be a period in days (a positive number)")
    try:
        p = float(value)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"{what}={value!r} must be a period in days (a positive number)") from err
    if not np.isfinite(p) or p <= 0:
        raise ParameterError(f"{what}={value!r} must be a period in days (a positive number)")
    return p


def _times(ds: xr.Dataset, what: str) -> pd.DatetimeIndex:
    """The time index, refused unless strictly increasing (shifts and filters go by date)."""
    times = pd.DatetimeIndex(ds[TIME].values)
    if not times.is_monotonic_increasing or not times.is_unique:
        dup = times[times.duplicated()]
        detail = f"{dup[0].date()} repeats" if dup.size else "it is not sorted"
        raise TimeError(f"{what} needs a strictly increasing 'time' coordinate ({detail}); sort it "
                        "with ds.sortby('time') and drop repeated days")
    return times


def _calendar(times: pd.DatetimeIndex, what: str) -> pd.DatetimeIndex | None:
    """The daily calendar from the first to the last day, or None when there is no gap."""
    if times.size < 2:
        return None
    # In seconds whatever the index's own unit (pandas 3 builds datetime64[us]; a cast
    # to nanoseconds fails beyond 2262, which datetime64[s] axes reach).
    steps: Any = np.diff(times.values.astype("datetime64[s]").astype(np.int64))
    day = 86_400
    if (steps == day).all():
        return None
    if (steps % day).any():
        raise TimeError(f"{what} needs daily time steps; the 'time' coordinate has steps of "
                        f"{pd.Timedelta(seconds=int(steps[np.flatnonzero(steps % day)[0]]))}: resample to days")
    return pd.date_range(times[0], times[-1], freq="D", unit=times.unit)


def _fill_nan(x: np.ndarray) -> np.ndarray:
    """Where ``x`` (rows along the last axis) is not finite, in place: linear in time.

    Values before the first or after the last finite value repeat it; rows without
    any finite value are left as they are. Returns the mask of filled entries.
    """
    bad = ~np.isfinite(x)
    t = np.arange(x.shape[-1])
    for r in np.flatnonzero(bad.any(axis=-1)):
        ok = ~bad[r]
        if ok.any():
            x[r, bad[r]] = np.interp(t[bad[r]], t[ok], x[r, ok])
    return bad


def _filter(ds: xr.Dataset, sos: np.ndarray, names: list[str], keep_mean: bool) -> xr.Dataset:
    from scipy.signal import sosfiltfilt

    times = _times(ds, "the filter")
    calendar = _calendar(times, "the filter")
    n_time = ds.sizes[TIME] if calendar is None else calendar.size
    # sosfiltfilt pads with 3 * (2 * sections + 1) values on each side by default.
    pad = 3 * (2 * sos.shape[0] + 1)
    if n_time <= pad:
        raise DataError(f"the dataset has {n_time} days; a zero-phase filter of order "
                        f"{2 * sos.shape[0]} needs more than {pad} (its padding depends on the order "
                        f"alone): use a longer record or a lower order (order=1 needs more than 9 days)")

    def kernel(x: np.ndarray, floor: bool) -> np.ndarray:
        dtype = np.asarray(x).dtype
        flat = np.array(x, dtype=np.float64).reshape(-1, np.shape(x)[-1])
        # The mean kept is that of the days with values, not of the bridged series
        # (a bridged summer gap would move it).
        finite = np.isfinite(flat)
        mean = np.where(finite, flat, 0.0).sum(axis=-1, keepdims=True) / np.maximum(
            finite.sum(axis=-1, keepdims=True), 1)
        # NaN (missing forcings, days in a gap of the time axis) is bridged linearly so
        # that one missing day does not spread over the whole series; it stays NaN.
        bad = _fill_nan(flat)
        y = sosfiltfilt(sos, flat, axis=-1)
        if keep_mean:
            # The band's own mean over those days is taken out: the result's mean over
            # them is the input's, exactly.
            own = np.where(finite, y, 0.0).sum(axis=-1, keepdims=True) / np.maximum(
                finite.sum(axis=-1, keepdims=True), 1)
            y = y - own + mean
        if floor:
            # A series without a negative value (precipitation, discharge, radiation)
            # stays without one: the filter's ringing would make rain negative. The
            # clip alone would raise its mean (rain's by 7% in the band 7-120 days), so
            # what is left is scaled back to the filtered series' mean over the days
            # with values: zeros stay zeros.
            nonneg = np.flatnonzero(np.where(finite, flat >= 0, True).all(axis=-1))
            kept = finite[nonneg]
            before = np.where(kept, y[nonneg], 0.0).sum(axis=-1, keepdims=True)
            clipped = np.maximum(y[nonneg], 0.0)
            after = np.where(kept, clipped, 0.0).sum(axis=-1, keepdims=True)
            scale = np.divide(np.maximum(before, 0.0), after, out=np.ones_like(after), where=after > 0)
            y[nonneg] = clipped * scale
        y[bad] = np.nan
        return y.reshape(np.shape(x)).astype(dtype, copy=False)

    out = {}
    for name in names:
        da = ds[name]
        if calendar is not None:
            da = da.reindex({TIME: calendar})
        da = whole_time_chunks(da)  # the filter runs along the whole axis
        # Temperatures may cross 0; other quantities that never go below it must not.
        floor = not is_temperature_units(str(da.attrs.get("units", "")))
        res = xr.apply_ufunc(kernel, da, input_core_dims=[[TIME]], output_core_dims=[[TIME]],
                             kwargs={"floor": floor}, dask="parallelized", output_dtypes=[da.dtype],
                             keep_attrs=True)
        if calendar is not None:
            res = res.sel({TIME: times}).astype(ds[name].dtype)
        res = res.transpose(*ds[name].dims)
        if ds[name].chunks is not None:
            res = res.chunk(ds[name].chunksizes)  # back to the input's chunks
        out[name] = res
    return ds.assign(out)


_T = TypeVar("_T", bound=Callable[..., Any])


def _recorded(func: _T) -> _T:
    """Append the perturbation's call to the returned dataset's ``history``: a perturbed
    copy saved to disk says what was done to it."""
    @functools.wraps(func)
    def wrapper(ds: xr.Dataset, *args: Any, **kwargs: Any) -> Any:
        result = func(ds, *args, **kwargs)
        pert = result[0] if isinstance(result, tuple) else result
        # The variables whose values are new (a level that changes nothing records nothing).
        changed = [str(v) for v in pert.data_vars if v in ds.variables and pert[v].data is not ds[v].data]
        if not changed:
            return result
        call = ", ".join(["ds", *map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        line = (f"{now} UTC: xmsgl {_version()} xmsgl.robustness.{func.__name__}({call}) "
                f"changed {', '.join(changed)}")
        prior = str(pert.attrs.get("history", "")).rstrip("\n")
        pert = pert.assign_attrs(history=f"{prior}\n{line}" if prior else line)
        return (pert, *result[1:]) if isinstance(result, tuple) else pert
    return cast(_T, wrapper)


@typed_arguments
@_recorded
def lowpass(ds: xr.Dataset, period: float, *, order: int = 4,
            variables: str | Sequence[str] | None = None) -> xr.Dataset:
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
    variables : str or sequence of str, optional
        Variables to filter (a single name is one variable); default every dynamic
        input (``seg_*`` and ``reach_*`` on time).

    Returns
    -------
    xarray.Dataset
        A shallow copy with the filtered variables (lazy on dask input).

    Notes
    -----
    A series that has no negative value and is not a temperature (precipitation,
    discharge, radiation) is clipped at 0 after filtering, the filter's ringing
    around a storm would otherwise give negative rain, and then scaled so that its
    mean over the days with values is the filtered series' (zeros stay zeros).
    Missing values do not spread: before filtering, each series' NaN are bridged
    by linear interpolation in time (the first or last value repeats beyond the
    ends), and they are NaN again in the result. A time axis with gaps is filtered
    on the daily calendar, the missing days bridged the same way, and the result
    holds the days of ``ds`` only, so the cutoff stays a period in days.

    Raises
    ------
    ParameterError
        A non-positive period, a period longer than half the record, or an order
        outside 1..12.
    DataError
        A record no longer than the filter's padding (15 days at order 4).
    TimeError
        The time coordinate is not strictly increasing or not in whole days.

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
    _check_record(ds, p, "period")
    sos = butter(order, wn, btype="lowpass", output="sos")
    return _filter(ds, sos, names, keep_mean=False)


@_recorded
def bandpass(ds: xr.Dataset, short: float, long: float, *, order: int = 4,
             variables: str | Sequence[str] | None = None) -> xr.Dataset:
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
    variables : str or sequence of str, optional
        Variables to filter; default every dynamic input.

    Returns
    -------
    xarray.Dataset
        The filtered copy of ``ds``. NaN and gaps of the time axis are handled as in
        :func:`lowpass`, and a non-negative series that is not a temperature is
        clipped at 0 and scaled back to its mean as there, so every series keeps its
        mean.

    Raises
    ------
    ParameterError
        Non-positive periods, ``short >= long``, ``long <= 2`` days (no variation of
        daily data is that short), ``long`` longer than half the record, or an order
        outside 1..12.
    DataError
        A record no longer than the filter's padding.
    TimeError
        The time coordinate is not strictly increasing or not in whole days.

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
    _check_long(hi, long)
    order = _order(order)
    names = _forcings(ds, variables)
    if not names:
        return ds.copy()
    _check_record(ds, hi, "long")
    f_hi, f_lo = 2.0 / lo, 2.0 / hi
    if f_hi >= 1.0:
        sos = butter(order, f_lo, btype="highpass", output="sos")
    else:
        sos = butter(order, [f_lo, f_hi], btype="bandpass", output="sos")
    return _filter(ds, sos, names, keep_mean=True)


def _check_record(ds: xr.Dataset, period: float, name: str) -> None:
    """Refuse a cutoff period longer than half the record: the filter would be set by
    its edge conditions, not by the data (a near-constant far from the series' mean)."""
    if TIME not in ds.coords or ds.sizes.get(TIME, 0) < 2:
        return
    days = np.asarray(ds[TIME].values).astype("datetime64[D]").astype(np.int64)
    span = int(days.max() - days.min()) + 1
    if period > span / 2:
        raise ParameterError(
            f"{name}={period:g} days is more than half of the record ({span} days): a filter "
            f"that slow is set by its edges, not by the data; give at most {span // 2} days"
        )


def _check_long(hi: float, long: Any) -> None:
    # Daily data resolve no period of 2 days or less (the Nyquist frequency is 0.5 per
    # day): such a band is empty and its cutoff is not a valid Butterworth frequency.
    if hi <= 2.0:
        raise ParameterError(f"long={long!r} must be longer than 2 days: daily data hold no variation "
                             "with a period of 2 days or less (the Nyquist frequency is 0.5 per day)")


def _order(order: Any) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or not 1 <= int(order) <= 12:
        raise ParameterError(f"order={order!r} must be an integer from 1 to 12")
    return int(order)


@typed_arguments
@_recorded
def lag(ds: xr.Dataset, days: int, *, variables: str | Sequence[str] | None = None) -> xr.Dataset:
    """Shift the dynamic forcings by ``days``: day ``t`` gets the forcings of ``t - days``.

    The shift goes by date, not by position: where the time axis has gaps, day
    ``t`` still gets the forcings of the date ``t - days``. When that date is not
    in ``ds`` (it falls in a gap) its value is interpolated linearly in time
    between the days on either side of the gap; before the first (after the last)
    day the first (last) value repeats. ``days=0`` returns an unchanged copy;
    negative ``days`` gives forcings from the future.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention with a strictly increasing daily time axis
        (gaps allowed); not modified.
    days : int
        The lag in days.
    variables : str or sequence of str, optional
        Variables to shift; default every dynamic input.

    Raises
    ------
    ParameterError
        ``days`` not an integer, or not shorter than the time axis.
    TimeError
        The time coordinate is not strictly increasing.

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
    times = _times(ds, "lag")
    # In seconds, whatever the index's unit: pandas 2 took the Timedelta in nanoseconds
    # and overflowed beyond 2262, an index in seconds against it gave wrong shifts, and
    # nanoseconds themselves wrap near 1677 and 2262 without a word.
    stamps = np.asarray(times.values).astype("datetime64[s]")
    t_ns = stamps.view(np.int64)
    s_ns = (stamps - np.timedelta64(k, "D")).view(np.int64)
    # The day at or before each source date, and the weight of the day after it
    # (0 where the source date is a day of ds or beyond either end).
    lo = np.clip(np.searchsorted(t_ns, s_ns, side="right") - 1, 0, times.size - 1)
    hi = np.minimum(lo + 1, times.size - 1)
    span = (t_ns[hi] - t_ns[lo]).astype(np.float64)
    inside = (s_ns > t_ns[lo]) & (s_ns < t_ns[-1]) & (span > 0)
    w = np.where(inside, (s_ns - t_ns[lo]) / np.where(span > 0, span, 1.0), 0.0)
    weight = xr.DataArray(w, dims=(TIME,), coords={TIME: ds[TIME]})
    out = {}
    for name in names:
        da = ds[name]
        before = da.isel({TIME: lo}).assign_coords({TIME: ds[TIME]})
        if (w > 0).any():
            after = da.isel({TIME: hi}).assign_coords({TIME: ds[TIME]})
            before = xr.where(weight > 0, before * (1 - weight) + after * weight, before)
        out[name] = before.astype(da.dtype).transpose(*da.dims)
        out[name].attrs = da.attrs
    return ds.assign(out)


def _seed(value: Any, what: str = "seed") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < 0:
        raise ParameterError(f"{what}={value!r} must be an integer of at least 0")
    return int(value)


def _share(value: Any, what: str) -> float:
    # float(True) is 1: every node; text is refused as numbers given as text are elsewhere.
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ParameterError(f"{what}={value!r} must be a share between 0 and 1")
    try:
        s = float(value)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"{what}={value!r} must be a share between 0 and 1") from err
    if not 0.0 <= s <= 1.0:
        raise ParameterError(f"{what}={value!r} must be a share between 0 and 1")
    return s


def _mask_count(share: float, n: int) -> int:
    """How many of ``n`` nodes a share masks: rounded half up (``round`` would send
    0.5 of 1 to 0), and at least one for any share above 0."""
    if share <= 0 or n == 0:
        return 0
    # round(.., 9) first: 0.58 * 25 is 14.499999999999998 in floating point.
    return min(n, max(1, int(np.floor(round(share * n, 9) + 0.5))))


@typed_arguments
@_recorded
def mask_coarse(ds: xr.Dataset, share: float, *, seed: int = 0) -> tuple[xr.Dataset, np.ndarray]:
    """Mask a random share of the segments: basin-mean coarse inputs, no ``seg_temp``.

    Every ``seg_*`` input of the chosen segments is replaced by the mean over all
    segments (per day for forcings) and their ``seg_temp`` becomes NaN. The segments
    are drawn in the order of their ids, so a seed masks the same segments however
    the dataset's rows are ordered. ``share * n`` is rounded half up, and any share
    above 0 masks at least one segment.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention, with a ``seg`` dimension.
    share : float
        Share of the segments masked, in [0, 1].
    seed : int, default 0
        Seed of the draw.

    Returns
    -------
    (xarray.Dataset, numpy.ndarray)
        The perturbed copy and the ids of the masked segments.

    Raises
    ------
    ParameterError
        A share outside [0, 1], or a seed that is not an integer of at least 0.
    SchemaError
        ``ds`` has no ``seg`` dimension.

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=8, start="2001-01-01", end="2001-03-31")
    >>> out, ids = mask_coarse(ds, 0.5, seed=1)
    >>> len(ids), bool(out.seg_temp.sel(seg=ids).isnull().all())
    (4, True)
    """
    expect_dataset(ds)
    s = _share(share, "share")
    seed = _seed(seed)
    if SEG not in ds.dims:
        raise SchemaError("mask_coarse masks segments, and the dataset has no 'seg' dimension")
    n = ds.sizes[SEG]
    k = _mask_count(s, n)
    rng = np.random.default_rng(seed)
    # Drawn in the order of segment ids: the same seed masks the same segments
    # however the dataset's rows are ordered.
    by_id = np.argsort(np.asarray(ds[SEG].values), kind="stable")
    pick = np.zeros(n, dtype=bool)
    pick[by_id[rng.choice(n, size=k, replace=False)]] = True
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


@_recorded
def mask_gauges(ds: xr.Dataset, share: float, *, seed: int = 0) -> tuple[xr.Dataset, np.ndarray]:
    """Drop the observations ``reach_temp`` of a random share of the observed reaches.

    The reaches are drawn in the order of their ids, so a seed drops the same reaches
    however the dataset's rows are ordered. ``share * n`` is rounded half up (where
    :func:`xmsgl.sampling.sparsify` rounds half to even), and any share above 0 drops
    at least one reach. Only ``reach_temp`` is dropped: where the coarse observations
    come from the same gauges (the Delaware files' ``seg_temp``), the dropped gauges
    still inform the fit through their segment's ``seg_temp``.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention with ``reach_temp``.
    share : float
        Share of the observed reaches (those with any ``reach_temp`` value) dropped,
        in [0, 1].
    seed : int, default 0
        Seed of the draw.

    Returns
    -------
    (xarray.Dataset, numpy.ndarray)
        The perturbed copy and the ids of the dropped reaches.

    Raises
    ------
    ParameterError
        A share outside [0, 1], or a seed that is not an integer of at least 0.
    SchemaError
        No ``reach_temp`` in ``ds``.
    """
    expect_dataset(ds)
    s = _share(share, "share")
    seed = _seed(seed)
    if "reach_temp" not in ds.data_vars:
        raise SchemaError("mask_gauges drops observed reaches of 'reach_temp', which is missing")
    observed = np.asarray(ds["reach_temp"].notnull().any(TIME).transpose(REACH).values)
    # The observed reaches in the order of their ids (as for mask_coarse).
    by_id = np.argsort(np.asarray(ds[REACH].values), kind="stable")
    cand = by_id[observed[by_id]]
    k = _mask_count(s, cand.size)
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


def _predict(model: Any, ds: xr.Dataset, time: tuple[str, str],
             device: str | torch.device = "auto") -> xr.DataArray:
    from xmsgl.baselines import BaselineModel
    from xmsgl.exceptions import ColdStartWarning, ExtrapolationWarning

    if isinstance(model, BaselineModel):
        with warnings.catch_warnings():
            # As for the networks below: the perturbed copies' inputs (a lag, a filter)
            # are judged against the training range once per run, the same words each time.
            warnings.simplefilter("ignore", ExtrapolationWarning)
            return model.predict(ds, time=time)
    from xmsgl.downscale import downscale

    with warnings.catch_warnings():
        # The same nodes for every perturbed run: ds.msgl.coverage(model) names them;
        # and the same days short of warm-up, which the result's runs share.
        warnings.simplefilter("ignore", ExtrapolationWarning)
        warnings.simplefilter("ignore", ColdStartWarning)
        return downscale(ds, model, time=time, device=device)


def _days_read(model: Any) -> list[tuple[str, str]]:
    """The spans whose targets the model's fit read: training (a baseline keeps it as
    ``"train"``, a network under ``"periods"``), validation and ASYNC-MSGL's stage A."""
    cfg = getattr(model, "config", {}) or {}
    periods = cfg.get("periods") or {}
    return [(str(a), str(b)) for a, b in (*(cfg.get("train") or periods.get("train") or []),
                                          *(periods.get("val") or []),
                                          *(periods.get("stage_a") or []))]


def _warn_days_read(model: Any, time: pd.DatetimeIndex, scored: np.ndarray) -> None:
    """Warn when days given to score lie inside the periods the model's fit read."""
    from xmsgl.downscale import merge_spans

    read = _days_read(model)
    if not read:
        return
    inside = scored & period_mask(time, read, "read")
    if inside.any():
        n, m = int(inside.sum()), int(scored.sum())
        warn_at_user(
            f"robustness: {n} of the {m} days scored lie inside the periods the model's fit read "
            f"({spans_text(merge_spans(read))}): its errors there are in-sample, and smaller than "
            "on days it never saw; give time= held-out days (by default the model's test period "
            "is scored)", InSampleWarning)


def _default_days(model: Any, time: pd.DatetimeIndex) -> np.ndarray:
    """The days scored by default: the model's test period (every part of it, and
    nothing between its parts), else the days after every day whose targets its fit
    read (training, validation, ASYNC-MSGL's stage A), else all (with a warning: the
    scores are then in-sample)."""
    cfg = getattr(model, "config", {}) or {}
    periods = cfg.get("periods") or {}
    # The networks and the GRU keep it in "periods", the light baselines on its own.
    test = periods.get("test") or cfg.get("test")
    if test:
        spans = [(str(a), str(b)) for a, b in test]
        mask = period_mask(time, spans, "test")
        if not mask.any():
            raise TimeError(f"the model's test period {spans_text(spans)}, scored by default, holds "
                            f"no day of the dataset ({time[0].date()} to {time[-1].date()}); give "
                            "the days to score with time=(start, end)")
        return mask
    read = _days_read(model)
    if read:
        # By day, as every period is read: a stamp at noon on the last day read is
        # that day, not one after it.
        end = max(pd.Timestamp(b) for _, b in read).normalize()
        after = np.asarray(time.normalize() > end)
        if after.any():
            return after
    warn_at_user(
        f"robustness: the model records no test period and no day of the dataset follows the days "
        f"its fit read, so every day ({time[0].date()} to {time[-1].date()}) is scored, those it "
        "was fitted on included: the errors are in-sample; give time=(start, end) to score "
        "held-out days", InSampleWarning)
    return np.ones(len(time), dtype=bool)


def _check_levels_on(ds: xr.Dataset, levels: dict[str, list[Any]], times: pd.DatetimeIndex,
                     t_first: int) -> None:
    """Refuse, before any model run, levels the dataset's record cannot take (each
    perturbed run of a network can take minutes): filters slower than half the record,
    lags not shorter than the time axis, shifts longer than the days before the first
    scored day; and ``mask_gauges`` on a dataset without ``reach_temp``."""
    if "mask_gauges" in levels and "reach_temp" not in ds.data_vars:
        raise SchemaError("mask_gauges drops observed reaches of 'reach_temp', which the dataset "
                          "lacks; leave mask_gauges out of checks, or give the observations")
    for name, lv in levels.items():
        for level in lv:
            if name == "lowpass":
                _check_record(ds, _period(level, "lowpass level"), "lowpass level")
            elif name == "bandpass":
                _check_record(ds, _period(level[1], "long"), "bandpass long")
            elif name == "lag" and abs(int(level)) >= len(times):
                raise ParameterError(f"lag level {level!r} must be shorter than the time axis "
                                     f"({len(times)} days)")
            elif name == "shift":
                before = int((times[t_first] - times[0]).days)
                if int(level) > before:
                    fix = (f"give at most {before}" if before >= 1 else "leave shift out of checks")
                    raise ParameterError(
                        f"shift level {level!r}: the dataset has {before} days before the first "
                        f"scored day ({times[t_first].date()}), so no prediction can start "
                        f"{level} days earlier; {fix}, or a dataset that starts earlier")




def _levels(checks: Mapping[str, Sequence[Any]] | Sequence[str] | None) -> dict[str, list[Any]]:
    if checks is None:
        return {k: list(v) for k, v in DEFAULT_CHECKS.items()}
    if isinstance(checks, str):
        checks = [checks]
    if not isinstance(checks, Mapping | Iterable):
        raise ParameterError(f"checks={checks!r} must be a list of check names, a mapping of names "
                             f"to levels, or None; the checks are {list(CHECKS)}")
    if not checks:
        raise ParameterError(f"checks={checks!r} names no check; give some of {list(CHECKS)}, or None "
                             "for the default set")
    if not isinstance(checks, Mapping):
        checks = {str(c): DEFAULT_CHECKS.get(str(c), []) for c in checks}
    bad = sorted(set(checks) - set(CHECKS))
    if bad:
        raise ChoiceError(f"checks {bad} are not known; use some of {list(CHECKS)}")
    out: dict[str, list[Any]] = {}
    for name, levels in checks.items():
        if isinstance(levels, np.ndarray):  # the levels as an array: its values, as a list
            levels = levels.tolist()
        if isinstance(levels, (list, tuple)):  # bandpass pairs as arrays: as lists
            levels = [x.tolist() if isinstance(x, np.ndarray) else x for x in levels]
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
                _check_long(_period(level[1], "long"), level[1])
            elif name in ("lag", "shift"):
                if isinstance(level, bool) or not isinstance(level, (int, np.integer)):
                    raise ParameterError(f"{name} level {level!r} must be an integer number of days")
                if name == "shift" and int(level) < 1:
                    raise ParameterError(f"shift level {level!r} must be a positive number of days")
            else:
                _share(level, f"{name} level")
        out[name] = lv
    return out


def _warn_sources_scored(method: str, ds: xr.Dataset, ref: xr.DataArray, on_scored: xr.DataArray,
                         truth_name: str) -> None:
    """Warn (:class:`~xmsgl.exceptions.InSampleWarning`) where an interpolating baseline,
    which returns the observations it reads, is scored at reach-days whose observations
    it reads: whatever the truth is named (the observations themselves, a copy under
    another name, or a truth whose reaches were observed that day). ``ref`` and
    ``on_scored``: the truth and the scored days, over the scored period."""
    from xmsgl.baselines import coarse_copies

    # Only the scored period is read; the operands of & are matched by reach id and date.
    days = on_scored[TIME].values  # ds's own stamps (date strings fail beyond 2262)
    ds = ds.sel({TIME: slice(days[0], days[-1])})
    parts, seen = [], xr.zeros_like(ref, dtype=bool)
    if "reach_temp" in ds.data_vars:
        seen, parts = ds["reach_temp"].notnull(), ["reach_temp"]
    copied = coarse_copies(ds)
    if copied is not None:
        seen = seen | copied
        parts.append("seg_temp at each segment's outlet reach")
    if not parts:
        return
    pairs = ref.notnull() & on_scored
    sums = xr.Dataset({"n": (pairs & seen).sum(), "total": pairs.sum()}).compute()  # one pass
    n, total = int(sums["n"]), int(sums["total"])
    if n:
        warn_at_user(
            f"the {method!r} baseline returns the observations it reads ({', and '.join(parts)}) as "
            f"its prediction, and {n} of the {total} reach-days scored against {truth_name!r} are "
            "reach-days whose observations it reads: there its scores are in-sample (the error of "
            "the observation it copies, or 0 against the observations themselves); pass "
            "hide_scored=True to hide the scored days' observations from it",
            InSampleWarning)


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


@typed_arguments
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
    hide_scored: bool = False,
    device: str | torch.device | None = None,
) -> xr.Dataset:
    """Change of a fitted model's error when its inputs are perturbed.

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset the model is applied to (as for :func:`xmsgl.downscale.downscale`
        or ``BaselineModel.predict``); it is not modified. Mask the observations a
        gauge-driven baseline must not see before passing it, or pass them
        unmasked with ``hide_scored=True``.
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
        default ``reach_temp_true`` when present, else ``reach_temp``. It must hold
        values on the scored days: observations masked there cannot be scored
        (see ``hide_scored``).
    time : period, optional
        Scored days, read as :mod:`xmsgl.periods` reads periods (``"2015"``, a
        ``(start, end)`` pair or a list of them); default the model's test period
        (``config["periods"]["test"]``, a light baseline's ``config["test"]``, every
        part of it and only those days), else
        the days after its training and validation periods (and ASYNC-MSGL's stage
        A), else every day, with an :class:`~xmsgl.exceptions.InSampleWarning` (in-sample
        scores). Days given here inside the periods the fit read (training,
        validation, stage A) warn too. The output's ``scored_days`` lists them.
    n_draws : int, default 3
        Draws of each random check (``"shift"``, ``"mask_coarse"``, ``"mask_gauges"``);
        the errors are averaged over draws.
    seed : int, default 0
        Seed of the draws (draw ``d`` of a check at level ``j`` uses ``(seed, the
        check's place in CHECKS, j, d)``: the same whatever other checks are listed).
    order : int, default 4
        Order of the Butterworth filters.
    hide_scored : bool, default False
        Hide the scored days' observations (``reach_temp`` and ``seg_temp``) from
        the model's input, every perturbed copy included, and score against the
        unmasked ones (``truth`` is read from ``ds`` as given). This is the
        temporal holdout of a dataset without ``reach_temp_true``: the model
        never sees the observations it is scored on. Without it, an ``idw`` or
        ``harmonic`` baseline scored at reach-days whose observations it reads
        (it returns them) warns with their count
        (:class:`~xmsgl.exceptions.InSampleWarning`).
    device : str, optional
        Torch device of a network model's runs (see :func:`xmsgl.downscale.downscale`);
        default that of ``downscale`` (``"auto"``, or ``set_options(device=...)``).
        Baselines run on the CPU.

    Returns
    -------
    xarray.Dataset
        On (``check``, ``level``), ``level`` the position of the level in its
        check (checks with fewer levels are padded with NaN): ``rmse``, ``mae``,
        ``bias`` of the perturbed runs and ``d_rmse``, ``d_mae``, ``d_bias``, the
        perturbed minus the unperturbed value (degC; positive ``d_rmse``: worse);
        ``setting`` (check, level) describes each level (for the masks, with how
        many nodes were masked: ``"0.5 of observed reaches (3 of 6)"``). ``base_rmse``,
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
        No truth to score against, or a truth without ``reach`` and ``time``
        coordinates.
    DataError
        The truth holds no value on the scored days (for example observations
        masked there: pass them unmasked with ``hide_scored=True``).

    Examples
    --------
    >>> import xmsgl
    >>> from xmsgl.baselines import fit_baseline
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=6, start="2000-10-01", end="2003-09-30")
    >>> model = fit_baseline(ds, "mohseni")
    >>> rob = robustness(ds, model, {"lag": [0, 5], "lowpass": [2.0, 30.0]})
    >>> float(abs(rob.d_rmse.sel(check="lag", level=0)))  # level: the position, 0 days here
    0.0
    >>> str(rob.setting.sel(check="lag", level=1).values)  # the second level: 5 days
    '5 d'
    >>> dict(rob.d_rmse.sizes)
    {'check': 2, 'level': 2}
    """
    from xmsgl.evaluate import evaluate

    expect_dataset(ds)
    check_count("n_draws", n_draws)
    seed = _seed(seed)
    order = _order(order)
    levels = _levels(checks)
    check_flag("hide_scored", hide_scored)
    if device is not None:
        from xmsgl.train import resolve_device

        resolve_device(device)  # refused before any run, whatever the model
    if not isinstance(model, (str, os.PathLike)):
        fitted = model
    else:
        from xmsgl.model import load

        fitted = load(model)
    if TIME not in ds.dims:
        raise SchemaError("the dataset has no 'time' dimension")
    # Sorted, unique dates, as the checks need (a reversed axis failed in pandas).
    times = _times(ds, "robustness")
    # Read the way every period argument is (a label such as "2015", a pair, a list
    # of them): a date that cannot be read is a PeriodError, not a parser's error.
    if time is None:
        scored = _default_days(fitted, times)
    else:
        scored = select_days(times, time, done="scored")
    first, last = np.flatnonzero(scored)[[0, -1]]
    period = (str(times[first].date()), str(times[last].date()))
    # The period's first and last instants: date strings in sel are read in nanoseconds,
    # which fail beyond 2262.
    days = slice(*period_bounds(period, "time"))
    on_scored = xr.DataArray(scored, dims=(TIME,), coords={TIME: ds[TIME]}).sel({TIME: days})
    if truth is None:
        truth = "reach_temp_true" if "reach_temp_true" in ds.data_vars else "reach_temp"
    if isinstance(truth, str):
        if truth not in ds.data_vars:
            raise SchemaError(f"truth={truth!r} is not a variable of the dataset; give the (reach, time) "
                              "reference to score against")
        truth_name, ref = truth, ds[truth]
    else:
        truth_name, ref = str(getattr(truth, "name", None) or "truth"), truth
    if not isinstance(ref, xr.DataArray) or set(map(str, ref.dims)) != {REACH, TIME}:
        raise SchemaError(
            f"truth {truth_name!r} must be a (reach, time) DataArray to score against; it is on "
            f"{tuple(map(str, getattr(ref, 'dims', ())))}: give the reference for every scored day")
    unlabelled = [d for d in (REACH, TIME) if d not in ref.coords]
    if unlabelled:
        # It is matched to the predictions by reach id and date.
        raise SchemaError(
            f"truth {truth_name!r} has no {' or '.join(map(repr, unlabelled))} coordinate, by which "
            f"it is matched to the predictions; label it with its own reach ids and dates, as the "
            f"dataset labels them (truth.assign_coords("
            f"{', '.join(f'{d}=ds[{d!r}]' for d in unlabelled)}) for a truth on every reach and day "
            "of ds)")
    ref = ref.sel({TIME: days})
    if not bool(ref.notnull().any()):  # one reduction, on dask too
        raise DataError(
            f"truth {truth_name!r} holds no value from {period[0]} to {period[1]}, the scored days: "
            "there is nothing to score against (were the observations of those days masked in ds?); "
            "give the unmasked dataset with hide_scored=True, which hides them from the model and "
            "scores against them, or pass the unmasked values as truth=<DataArray>"
        )
    reads = getattr(fitted, "reads", {})
    if not hide_scored and {"reach_temp", "seg_temp"} & set(reads) & set(ds.data_vars):
        _warn_sources_scored(fitted.method, ds, ref, on_scored, truth_name)
    if hide_scored:
        on = xr.DataArray(scored, dims=(TIME,), coords={TIME: ds[TIME]})
        ds = ds.assign({v: ds[v].where(~on) for v in ("reach_temp", "seg_temp") if v in ds.data_vars})

    def score(pred: xr.DataArray) -> tuple[float, float, float]:
        # Only the scored days: a test period in parts leaves the days between out.
        res = evaluate(pred.sel({TIME: days}).where(on_scored), ref)
        return float(res.rmse), float(res.mae), float(res.bias)

    t_first = int(np.flatnonzero(scored)[0])
    _check_levels_on(ds, levels, times, t_first)
    if time is not None:  # days given inside the fit, once the call is known to run
        _warn_days_read(fitted, times, scored)
    def run(data: xr.Dataset, days: tuple[str, str]) -> tuple[float, float, float]:
        return score(_predict(fitted, data, days, device or "auto"))

    base = run(ds, period)
    names = list(levels)
    n_lev = max(len(v) for v in levels.values())
    vals = np.full((3, len(names), n_lev), np.nan)
    dvals = np.full((3, len(names), n_lev), np.nan)
    setting = np.full((len(names), n_lev), "", dtype=object)
    # The nodes a mask draws from, for the settings' "(k of n)".
    pool = {"mask_coarse": ds.sizes.get(SEG, 0),
            "mask_gauges": (int(ds["reach_temp"].notnull().any(TIME).sum())
                            if "mask_gauges" in levels and "reach_temp" in ds.data_vars else 0)}
    for i, name in enumerate(names):
        for j, level in enumerate(levels[name]):
            setting[i, j] = _label(name, level)
            draws = int(n_draws) if name in _RANDOM else 1
            got = []
            for d in range(draws):
                # By the check's name, not its place in the mapping: listing other
                # checks beside it must not change its draws.
                rng_seed = [int(seed), CHECKS.index(name), j, d]
                if name == "lowpass":
                    got.append(run(lowpass(ds, level, order=order), period))
                elif name == "bandpass":
                    got.append(run(bandpass(ds, level[0], level[1], order=order), period))
                elif name == "lag":
                    got.append(run(lag(ds, int(level)), period))
                elif name == "shift":
                    # By date: ``off`` days before the first scored day (the first day of
                    # ds on or after that date, where it falls in a gap).
                    off = int(np.random.default_rng(rng_seed).integers(1, int(level) + 1))
                    start = times[int(times.searchsorted(times[t_first] - pd.Timedelta(days=off)))]
                    got.append(run(ds, (str(start.date()), period[1])))
                else:
                    mask = mask_coarse if name == "mask_coarse" else mask_gauges
                    pert, ids = mask(ds, level, seed=int(np.random.default_rng(rng_seed).integers(2**31)))
                    # How many were masked, which a share alone does not say on a small basin.
                    setting[i, j] = f"{_label(name, level)} ({ids.size} of {pool[name]})"
                    got.append(run(pert, period))
            vals[:, i, j] = np.mean(np.asarray(got), axis=0)
            # Each draw against the base, then averaged: draws that change nothing give
            # exactly 0 (the mean of equal errors can differ from them in the last bit).
            dvals[:, i, j] = np.mean(np.asarray(got) - np.asarray(base), axis=0)
    out = xr.Dataset(coords={"check": names, "level": ("level", np.arange(n_lev), {
        "long_name": "position of the level in its check's list (the level itself: setting)"})})
    for k, m in enumerate(("rmse", "mae", "bias")):
        what = {"rmse": "RMSE", "mae": "MAE", "bias": "bias (mean of prediction minus truth)"}[m]
        sign = ("; positive: the perturbed run is warmer, not worse" if m == "bias"
                else "; positive: the perturbed run is worse")
        out[m] = (("check", "level"), vals[k], {"units": "degC", "long_name": f"{what} of the perturbed run"})
        out[f"d_{m}"] = (("check", "level"), dvals[k],
                         {"units": "degC", "long_name": f"change of {what} against the unperturbed run{sign}"})
        out[f"base_{m}"] = ((), base[k], {"units": "degC", "long_name": f"{what} of the unperturbed run"})
    out = out.assign_coords(setting=(("check", "level"), setting.astype(str)))
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    out.attrs.update({
        "method": str(getattr(fitted, "method", "?")),
        "scored_period": list(period),
        "scored_days": spans_text(mask_spans(times, scored)),
        "truth": truth_name,
        "n_draws": int(n_draws),
        "seed": int(seed),
        "order": order,
        "hide_scored": int(bool(hide_scored)),
        "history": f"{now} UTC: xmsgl {_version()} robustness(checks={levels!r}, "
                   f"n_draws={n_draws}, seed={seed}, order={order}, hide_scored={bool(hide_scored)}"
                   + ("" if device is None else f", device={device!r}") + ")",
    })
    return out
