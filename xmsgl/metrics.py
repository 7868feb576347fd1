"""Skill metrics of a prediction against observations, as lazy xarray functions.

Every metric is computed from the *pairs* of a prediction and an observation that
are both present; NaN in either marks a missing pair and is skipped. An infinite
value is not missing: its pair counts. An infinite prediction makes ``rmse`` and
``mae`` infinite (``nse`` -inf, ``kge`` NaN), so a model that blew up on some days
cannot score well on the rest; an infinite observation makes ``nse`` and ``kge`` NaN,
and a pair infinite on both sides has no error (``inf - inf``), so every metric but
``n`` is NaN. The kernels run
through :func:`xarray.apply_ufunc` with ``dask="parallelized"``, so dask-backed
inputs stay lazy: nothing is computed until the caller asks for values.

Definitions (``p`` prediction, ``o`` observation, sums over the ``n`` pairs):

* ``bias = mean(p - o)`` (degC; positive when the prediction is too warm);
* ``mae = mean(|p - o|)`` (degC);
* ``rmse = sqrt(mean((p - o)^2))`` (degC);
* ``nse = 1 - sum((p - o)^2) / sum((o - mean(o))^2)`` (Nash-Sutcliffe efficiency,
  dimensionless, 1 is perfect, 0 is as good as the observed mean);
* ``kge = 1 - sqrt((r - 1)^2 + (a - 1)^2 + (b - 1)^2)`` with ``r`` the Pearson
  correlation, ``a = std(p) / std(o)`` and ``b = mean(p) / mean(o)`` (Kling-Gupta
  efficiency of Gupta et al. 2009, dimensionless, 1 is perfect). ``b`` divides by
  the observed mean in degC, so KGE is ill-conditioned for series whose mean is
  near 0 degC; read it together with ``bias``.

Inputs whose ``units`` are both kelvin or both Fahrenheit are converted to degC
first (lazily on dask input), so the outputs are always in degC.

NSE is NaN when the observations do not vary (fewer than two pairs or a constant
series); KGE is NaN when ``std(o)`` or ``mean(o)`` is 0. "Constant" and "0" allow
for float64 rounding: a series whose spread is within the rounding of its mean
(a gauge stuck at 20.1 degC) counts as constant, not as a tiny spread that would
give an NSE of -1e27.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from xmsgl.convention import (  # noqa: F401  (WARM_DEGC, WARM_SHARE: read here by their users)
    WARM_DEGC,
    WARM_SHARE,
    _is_difference,
    _refuse_timezones,
    _temperature_scale,
    _temperature_to_celsius,
    mask_outside,
    same_units,
    stamp_text,
    warn_fahrenheit_looking,
)
from xmsgl.exceptions import (
    ChoiceError,
    DataError,
    ParameterError,
    SchemaError,
    TimeError,
    UnitsError,
    XmsglWarning,
    format_ids,
    warn_at_user,
)

__all__ = [
    "METRICS",
    "UNITS",
    "SEASONS",
    "HOT_QUANTILE",
    "align_pair",
    "skill",
    "rmse",
    "mae",
    "bias",
    "nse",
    "kge",
    "hot_mask",
]

#: Metrics computed by :func:`skill`, in the order of its output.
METRICS = ("rmse", "mae", "bias", "nse", "kge")

#: Units attribute of each metric (``"1"`` for dimensionless).
UNITS = {"rmse": "degC", "mae": "degC", "bias": "degC", "nse": "1", "kge": "1", "n": "1"}

#: Meteorological seasons, by month.
SEASONS = ("DJF", "MAM", "JJA", "SON")

#: Observed values at or above this quantile make the "hottest 10%" subset.
HOT_QUANTILE = 0.9

_LONG_NAMES = {
    "rmse": "root mean square error",
    "mae": "mean absolute error",
    "bias": "mean error (prediction minus observation)",
    "nse": "Nash-Sutcliffe efficiency",
    "kge": "Kling-Gupta efficiency (2009)",
    "n": "number of prediction-observation pairs",
}


#: Relative size of float64 rounding below which a spread or a mean counts as 0.
_ROUNDING = 64 * np.finfo(np.float64).eps


def _varies(x: np.ndarray, ok: np.ndarray, centered_ss: np.ndarray, n: np.ndarray,
            scale: np.ndarray) -> np.ndarray:
    """Whether the valid values of ``x`` vary by more than the rounding of their mean:
    not all equal, and a centered sum of squares above ``n (rounding x scale)^2``, with
    ``scale`` their largest magnitude."""
    hi = np.where(ok, x, -np.inf).max(axis=-1, initial=-np.inf)
    lo = np.where(ok, x, np.inf).min(axis=-1, initial=np.inf)
    with np.errstate(invalid="ignore", over="ignore"):
        floor = n * (_ROUNDING * scale) ** 2
        return (hi > lo) & ~(centered_ss <= floor)


def _kernel(pred: np.ndarray, obs: np.ndarray, n_core: int) -> np.ndarray:
    """All metrics and the pair count over the last ``n_core`` axes.

    Returns an array with the loop dimensions first and a last axis of length
    ``len(METRICS) + 1`` (the metrics, then ``n``).
    """
    loop_shape = np.broadcast_shapes(pred.shape, obs.shape)[: pred.ndim - n_core]
    p = np.broadcast_to(pred, loop_shape + pred.shape[pred.ndim - n_core:])
    o = np.broadcast_to(obs, loop_shape + obs.shape[obs.ndim - n_core:])
    p = p.reshape(loop_shape + (-1,)).astype(np.float64)
    o = o.reshape(loop_shape + (-1,)).astype(np.float64)
    # NaN marks a missing pair; an infinite value is a pair, so a prediction that blew
    # up on some days scores inf (rmse, mae) rather than well on the other days.
    ok = ~np.isnan(p) & ~np.isnan(o)
    p = np.where(ok, p, 0.0)
    o = np.where(ok, o, 0.0)
    n = ok.sum(axis=-1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = p - o
        mean_p = p.sum(axis=-1) / n
        mean_o = o.sum(axis=-1) / n
        bias = err.sum(axis=-1) / n
        mae = np.abs(err).sum(axis=-1) / n
        sse = (err**2).sum(axis=-1)
        rmse = np.sqrt(sse / n)
        # Centered sums over the valid pairs only (masked entries were set to 0).
        dp = np.where(ok, p - mean_p[..., None], 0.0)
        do = np.where(ok, o - mean_o[..., None], 0.0)
        sst = (do**2).sum(axis=-1)
        spp = (dp**2).sum(axis=-1)
        spo = (dp * do).sum(axis=-1)
        # A constant series is one whose spread is no more than the rounding of its
        # mean: a gauge stuck at 20.1 degC leaves sums of squares of 1e-27, not 0,
        # which would give NSE -1e27 rather than NaN. Likewise a mean within rounding
        # of 0 is 0.
        o_scale = np.abs(o).max(axis=-1, initial=0.0)  # missing pairs were set to 0
        o_varies = _varies(o, ok, sst, n, o_scale)
        p_varies = _varies(p, ok, spp, n, np.abs(p).max(axis=-1, initial=0.0))
        mean_o_zero = np.abs(mean_o) <= _ROUNDING * o_scale
        nse = np.where(o_varies, 1.0 - sse / sst, np.nan)
        r = np.where(o_varies & p_varies, spo / np.sqrt(sst * spp), np.nan)
        # A prediction without spread against a varying observation has r = 0 by
        # convention, which keeps KGE finite (and poor) instead of NaN.
        r = np.where(o_varies & ~p_varies, 0.0, r)
        alpha = np.where(p_varies, np.sqrt(spp / sst), 0.0)
        beta = mean_p / mean_o
        kge = 1.0 - np.sqrt((r - 1.0) ** 2 + (alpha - 1.0) ** 2 + (beta - 1.0) ** 2)
        kge = np.where(o_varies & ~mean_o_zero, kge, np.nan)
    empty = n == 0
    out = np.stack([rmse, mae, bias, nse, kge], axis=-1)
    out[empty] = np.nan
    return np.concatenate([out, n[..., None]], axis=-1)


def align_pair(
    prediction: xr.DataArray, observed: xr.DataArray, *, join: str = "inner"
) -> tuple[xr.DataArray, xr.DataArray]:
    """Align a prediction and an observation by their coordinates.

    Parameters
    ----------
    prediction, observed : xarray.DataArray
        Arrays on the same dimensions (in any order), for example (reach, time).
    join : {"inner", "exact"}, default "inner"
        ``"inner"`` keeps the labels both share along every dimension (with an
        :class:`~xmsgl.exceptions.XmsglWarning` when reach or segment labels of
        the prediction are left out: the two may not be on the same network);
        ``"exact"`` requires the same labels (in any order).

    Returns
    -------
    prediction, observed : xarray.DataArray
        The aligned pair, the observation transposed to the prediction's order;
        converted to degC (``units = "degC"``, lazily on dask input) when both are
        in kelvin or both in Fahrenheit.

    Raises
    ------
    SchemaError
        The arrays have different dimensions, or a coordinate is missing on one; a
        side holds no real numbers (booleans, dates, text, complex numbers).
    UnitsError
        Both carry ``units`` and they differ; or one side has none and the other
        is not in degC, or the side without units holds values implausible for
        degC (outside :data:`PLAUSIBLE_DEGC`). When one side has degC and the
        other no units at all, an :class:`~xmsgl.exceptions.XmsglWarning` names
        the side without units. Also raised for values labelled K or degF
        that, converted to degC, fall outside :data:`PLAUSIBLE_DEGC` while the
        raw values fit it (degC values labelled K); and for values labelled degC
        (or integers without units) outside :data:`PLAUSIBLE_DEGC` that all fit water
        temperatures in kelvin (223.15..373.15): the message names the scale and the
        conversion to degC.
    DataError
        ``join="exact"`` and the labels differ, or no label is shared along a
        dimension (the message names the dimension and labels of each side); a
        side holds integers carrying ``_FillValue``/``missing_value`` attributes or
        values implausible for water temperature in degC, after conversion from K or
        degF (undecoded fill values), or, without ``units``, values outside
        :data:`PLAUSIBLE_ANY_UNIT`, which no water temperature in degC, K or degF
        reaches.
    TimeError
        A time coordinate repeats a label (other dimensions: ``DataError``); the
        message names the dimension and the first repeated label. A timezone-aware
        ``time`` coordinate, with the fix; a ``time`` coordinate of dates on one side
        and of text or numbers on the other.

    Warns
    -----
    XmsglWarning
        A side without ``units`` taken to be degC; reach or segment labels of the
        prediction left out by ``join="inner"``; a side labelled degC that looks like
        degF; a side labelled degF whose values all convert to below -1 degC (degC
        values labelled degF: no liquid stream is that cold); a side stored
        as integers in degC whose smallest value is negative (an integer cannot mark
        a value missing, so a marker such as -1 is scored as a temperature): mask it
        and cast to float, e.g.
        ``observed.where(observed != -1).astype(float)``.

    Examples
    --------
    >>> import xarray as xr
    >>> p = xr.DataArray([1.0, 2.0, 3.0], dims="reach", coords={"reach": [3, 1, 2]})
    >>> o = xr.DataArray([2.0, 3.0, 9.0, 1.0], dims="reach", coords={"reach": [2, 3, 4, 1]})
    >>> align_pair(p, o)[1].values.tolist()
    [3.0, 1.0, 2.0]
    """
    if not isinstance(prediction, xr.DataArray) or not isinstance(observed, xr.DataArray):
        model = next((x for x in (prediction, observed) if hasattr(x, "predict")
                      or type(x).__name__ in ("Downscaler", "BaselineModel")), None)
        # A prediction file's variable ends in _pred: name it where a Dataset holds one.
        named = next((str(v) for x in (prediction, observed) if isinstance(x, xr.Dataset)
                      for v in x.data_vars if str(v).endswith("_pred")), "reach_temp")
        fix = ("a fitted model is not a prediction: downscale it first, "
               "ds.msgl.evaluate(ds.msgl.downscale(model))" if model is not None else
               f"pick a variable, e.g. ds[{named!r}]")
        raise SchemaError(
            "prediction and observed must be xarray.DataArray objects, got "
            f"{type(prediction).__name__} and {type(observed).__name__}; {fix}"
        )
    # Blank units (netCDF writers leave units = "") say no more than none: judged as none
    # (they were read as a dimensionless quantity, which no plausibility check covers).
    prediction, observed = _blank_units_dropped(prediction), _blank_units_dropped(observed)
    if set(prediction.dims) != set(observed.dims):
        fix = "rename or select so both have the same dimensions"
        # A dimension one side lost to a selection of one label (isel(time=100)) that
        # the other has: a selection by a list keeps it.
        for side, da, other in (("prediction", prediction, observed), ("observed", observed, prediction)):
            gone = [str(d) for d in other.dims if d not in da.dims and d in da.coords and da[d].ndim == 0]
            if gone:
                fix = (f"the {side} holds a single {gone[0]!r} as a scalar coordinate: select it "
                       f"with a list to keep the dimension (.isel({gone[0]}=[i]) or "
                       f".sel({gone[0]}=[label])), or select the same from the other side")
                break
        raise SchemaError(
            f"prediction dims {tuple(map(str, prediction.dims))} differ from observed dims "
            f"{tuple(map(str, observed.dims))}; {fix}"
        )
    # Stored as integers: said once the pair is known to be scored (after every refusal).
    integers = [(side, da) for side, da in (("prediction", prediction), ("observed", observed))
                if da.dtype.kind in "iu"]
    for side, da in (("prediction", prediction), ("observed", observed)):
        _check_numbers(side, da)
        if "time" in da.coords:
            _refuse_timezones(da["time"])
        _check_labels(side, da)
        _check_integer(side, da)
        if da.dtype.kind == "f":
            _check_fill_codes(side, da)
    _check_time_labels(prediction, observed)
    _check_units(prediction, observed)
    # Both sides in K or both in degF: score them in degC, as the outputs are labelled.
    raw = prediction, observed
    prediction = _converted("prediction", prediction)
    observed = _converted("observed", observed)
    if join not in ("inner", "exact"):
        raise ChoiceError(f"join={join!r} is not known; use 'inner' or 'exact'")
    _warn_below_freezing([("prediction", raw[0], prediction), ("observed", raw[1], observed)])
    for side, da in (("prediction", prediction), ("observed", observed)):
        _warn_fahrenheit_looking(side, da)
    for dim in prediction.dims:
        has_p, has_o = dim in prediction.coords, dim in observed.coords
        if has_p != has_o:
            side = "observed" if has_p else "prediction"
            raise SchemaError(
                f"dimension {str(dim)!r} has a coordinate on one side only ({side} lacks it); "
                f"assign the same labels to both, e.g. .assign_coords({dim}=...)"
            )
        if not has_p and prediction.sizes[dim] != observed.sizes[dim]:
            raise DataError(
                f"dimension {str(dim)!r} has {prediction.sizes[dim]} entries in the prediction but "
                f"{observed.sizes[dim]} in the observations and no coordinate to align them by; "
                "assign labels with .assign_coords"
            )
    observed = observed.transpose(*prediction.dims)
    if join == "exact":
        for dim in prediction.dims:
            if dim not in prediction.coords:
                continue
            a, b = prediction.indexes[dim], observed.indexes[dim]
            if a.equals(b):
                continue
            only_p = a.difference(b)
            only_o = b.difference(a)
            if len(only_p) or len(only_o):
                # Only the side that has labels of its own is named.
                sides = [f"only in {side}: {format_ids(_label_texts(only))}"
                         for side, only in (("prediction", only_p), ("observed", only_o)) if len(only)]
                raise DataError(
                    f"coordinate {str(dim)!r} differs between prediction and observed "
                    f"({', '.join(sides)}); use join='inner' to score the shared labels"
                )
            # The same labels in another order: pairs are matched by label, not position
            # (repeated labels were refused above).
            observed = observed.sel({dim: a})
        for side, da in integers:
            _warn_integer(side, da)
        return prediction, observed
    p, o = xr.align(prediction, observed, join="inner")
    for dim in p.dims:
        if p.sizes[dim] == 0:
            hint = _same_days_hint(prediction, observed, dim)
            raise DataError(
                f"prediction and observed share no {str(dim)!r} label (prediction "
                f"{_labels(prediction, dim)}, observed {_labels(observed, dim)})"
                + (hint or f"; score them on the same {str(dim)!r}")
            )
    for dim in p.dims:
        # Days outside the observed record are common (a forecast, a longer run);
        # reach or segment ids of the prediction missing from the observations
        # usually mean the two are not on the same network.
        if dim == "time" or dim not in prediction.coords or p.sizes[dim] == prediction.sizes[dim]:
            continue
        lost = prediction.indexes[dim].difference(p.indexes[dim])
        warn_at_user(
            f"{len(lost)} of the prediction's {prediction.sizes[dim]} {str(dim)!r} labels are not "
            f"in the observations ({format_ids(list(lost))}) and are not scored; check that both "
            f"are on the same network, or select the shared ones to silence this",
            XmsglWarning,
        )
    for side, da in integers:
        _warn_integer(side, da)
    return p, o


#: Values outside this range (degC) cannot be water temperatures in degC: they are
#: kelvin, fill values or another unit.
PLAUSIBLE_DEGC = (-50.0, 100.0)

#: Values outside this range cannot be water temperatures in degC, K or degF: what
#: values without a ``units`` attribute are held to (fill codes such as -999).
PLAUSIBLE_ANY_UNIT = (-50.0, 400.0)


def _finite_range(da: xr.DataArray) -> tuple[float, float] | None:
    """Smallest and largest finite value of an in-memory array (None if lazy or empty)."""
    if da.chunks is not None:
        return None  # finding out would compute the dask graph
    vals = np.asarray(da.values)
    if vals.dtype.kind not in "iuf":
        return None
    vals = vals[np.isfinite(vals)] if vals.dtype.kind == "f" else vals.ravel()
    if vals.size == 0:
        return None
    return float(vals.min()), float(vals.max())


def _blank_units_dropped(da: xr.DataArray) -> xr.DataArray:
    """``da`` without a ``units`` attribute that is blank text (a shallow copy)."""
    units = da.attrs.get("units")
    if isinstance(units, str) and not units.strip():
        da = da.copy(deep=False)
        da.attrs = {k: v for k, v in da.attrs.items() if k != "units"}
    return da


def _label_texts(index: pd.Index) -> list[object]:
    """Labels as a message shows them: dates as :func:`~xmsgl.convention.stamp_text`
    gives them, others as they are (a pandas Timestamp's repr was printed)."""
    if isinstance(index, pd.DatetimeIndex):
        return [stamp_text(t) for t in index]
    return list(index)


def _implausible(rng: tuple[float, float] | None) -> bool:
    return rng is not None and (rng[0] < PLAUSIBLE_DEGC[0] or rng[1] > PLAUSIBLE_DEGC[1])


def _check_labels(side: str, da: xr.DataArray) -> None:
    """Refuse a coordinate with repeated labels: pairs would be matched twice."""
    for dim in da.dims:
        if dim not in da.indexes:
            continue
        index = da.indexes[dim]
        if index.is_unique:
            continue
        first = index[index.duplicated()][0]
        if isinstance(first, pd.Timestamp):
            first = str(first.date()) if first == first.normalize() else str(first)
        elif isinstance(first, np.generic):
            first = first.item()
        error = TimeError if dim == "time" or isinstance(index, pd.DatetimeIndex) else DataError
        raise error(
            f"{side} has duplicated {str(dim)!r} labels (first: {first!r}, "
            f"{int(index.duplicated().sum())} repeated in all); drop or combine the repeated labels, e.g. "
            f"da.drop_duplicates({str(dim)!r}), before scoring"
        )


def _check_numbers(side: str, da: xr.DataArray) -> None:
    """Refuse values that are not real numbers: booleans, dates, text, complex or objects
    would be scored as temperatures (True as 1 degC, a date as nanoseconds)."""
    if da.dtype.kind in "fiu":
        return
    kind = {"b": "booleans", "M": "dates", "m": "time spans", "U": "text", "S": "text",
            "c": "complex numbers", "O": "Python objects"}.get(da.dtype.kind, "non-numbers")
    raise SchemaError(
        f"{side} holds {kind} (dtype {da.dtype}), not temperatures; pass the temperature "
        f"values themselves, e.g. {side}.astype(float) when they are numbers stored as "
        "another type"
    )


def _check_time_labels(prediction: xr.DataArray, observed: xr.DataArray) -> None:
    """Refuse a ``time`` coordinate of dates on one side and of something else (text,
    numbers) on the other: no label would ever match."""
    kinds = []
    for da in (prediction, observed):
        if "time" not in da.coords or "time" not in da.dims:
            return
        values = da["time"].values
        kinds.append("dates" if values.dtype.kind == "M" or (
            values.dtype == object and values.size and hasattr(values.flat[0], "calendar"))
            else f"{da['time'].dtype} values")
    if kinds[0] != kinds[1] and "dates" in kinds:
        side = "prediction" if kinds[0] != "dates" else "observed"
        raise TimeError(
            f"the 'time' coordinate holds dates on one side and {[k for k in kinds if k != 'dates'][0]} "
            f"on the other ({side}); convert the labels to dates, e.g. "
            f"{side} = {side}.assign_coords(time=pd.to_datetime({side}['time'].values))"
        )


def _check_integer(side: str, da: xr.DataArray) -> None:
    """Refuse integer temperatures that still hold fill values."""
    if da.dtype.kind not in "iu":
        return
    fill = {k: da.attrs[k] for k in ("_FillValue", "missing_value") if k in da.attrs}
    if fill:
        raise DataError(
            f"{side} holds integers with {fill}: the fill values would be scored as "
            "temperatures; decode the file (xarray.decode_cf, or open it with mask_and_scale=True) "
            f"or mask them, e.g. {side}.where({side} != fill).astype(float)"
        )
    _check_fill_codes(side, da, "integers", without_units=True)


def _warn_integer(side: str, da: xr.DataArray) -> None:
    """Warn (:class:`~xmsgl.exceptions.XmsglWarning`) of a side stored as integers in
    degC whose smallest value is negative: an integer cannot be NaN, and a water
    temperature below 0 degC stored as a whole number is far more often a "missing"
    marker (-1) than a reading, which would then be scored as a temperature. Integers
    from 0 up (0 degC is ice-covered water) are read as data, without a word."""
    if da.dtype.kind not in "iu" or da.chunks is not None or not da.size:
        return
    units = da.attrs.get("units")
    if units is not None and not same_units(str(units), "degC"):
        return
    vals = np.asarray(da.values)
    low = vals.min().item()
    if low >= 0:
        return
    warn_at_user(
        f"{side} is stored as {da.dtype}, which cannot mark a value missing (no NaN), and its "
        f"smallest value, {low}, is on {int((vals == low).sum())} of its {da.size} values: a "
        f"missing-data marker is scored as a temperature; if it is one, mask it and cast to "
        f"float, e.g. {side} = {side}.where({side} != {low}).astype(float)",
        XmsglWarning,
    )


def _other_scale_hint(side: str, rng: tuple[float, float], label: str) -> str:
    """What a degC range implausible for water says about its scale, or ``""``: values
    that all fit water temperatures in kelvin (:data:`PLAUSIBLE_DEGC` + 273.15) are
    said to be so."""
    lo, hi = rng
    if PLAUSIBLE_DEGC[0] + 273.15 <= lo and hi <= PLAUSIBLE_DEGC[1] + 273.15:
        return (f"{side} {label} but holds values from {lo:g} to {hi:g}, which look like kelvin "
                f"({lo - 273.15:.4g} to {hi - 273.15:.4g} degC): if so, convert them to degC, "
                f"e.g. ({side} - 273.15).assign_attrs(units='degC') (or label them "
                f"{side}.attrs['units'] = 'K' where the other side is in K too)")
    # No such test for degF: water in degF passes 100 on the hottest days only, so
    # values past 100 that fit degF are as often one spike among degC values.
    return ""


def _check_fill_codes(side: str, da: xr.DataArray, what: str = "values",
                      without_units: bool = False) -> None:
    """Refuse values that cannot be water temperatures in degC (fill codes).

    Values in other units are not judged. Values without units are held to degC
    with ``without_units``; otherwise to what no water temperature in degC, K or
    degF can be (:data:`PLAUSIBLE_ANY_UNIT`), since both sides may lack units alike
    (attributes that arithmetic dropped), when the units check compares nothing.
    Values held to degC that all fit water temperatures in kelvin are a
    ``UnitsError`` that names the scale; the mask a fill-value message suggests
    drops the values found beyond the range (below it, above it, or both).
    """
    units = da.attrs.get("units")
    if units is None and not without_units:
        rng = _finite_range(da)
        if rng is not None and (rng[0] < PLAUSIBLE_ANY_UNIT[0] or rng[1] > PLAUSIBLE_ANY_UNIT[1]):
            raise DataError(
                f"{side} has no 'units' attribute (or a blank one) and holds {what} from {rng[0]:g} to "
                f"{rng[1]:g}, implausible for water temperature in degC, K or degF (fill values "
                f"such as -999?); mask the missing values, e.g. "
                f"{mask_outside(side, *PLAUSIBLE_ANY_UNIT, *rng, inclusive=False)}, and set "
                f"{side}.attrs['units']"
            )
        return
    if units is not None and not same_units(str(units), "degC"):
        return
    rng = _finite_range(da)
    if _implausible(rng):
        assert rng is not None
        label = "is labelled degC" if units is not None else "has no 'units' attribute (taken as degC)"
        hint = _other_scale_hint(side, rng, label)
        if hint:
            raise UnitsError(hint)
        raise DataError(
            f"{side} holds {what} from {rng[0]:g} to {rng[1]:g}, implausible for water "
            "temperature in degC (fill values such as -999?); mask the missing values, e.g. "
            f"{mask_outside(side, *PLAUSIBLE_DEGC, *rng, inclusive=False)}.astype(float), or "
            "decode the file with xarray.decode_cf"
        )


def _to_degc(da: xr.DataArray) -> xr.DataArray:
    """``da`` converted to degC when its ``units`` name kelvin or Fahrenheit, else as is.

    Uses the package's conversion (:mod:`xmsgl.convention`), which is lazy on dask
    input; the result is float and carries ``units = "degC"``.
    """
    units = da.attrs.get("units")
    if units is None or _temperature_scale(units) not in ("K", "degF"):
        return da
    key = "__xmsgl_metrics_value__"
    ds = _temperature_to_celsius(xr.Dataset({key: da.variable}), key, [], water=True,
                                 check_values=False)
    return da.copy(data=ds[key].data).assign_attrs(ds[key].attrs)


def _warn_fahrenheit_looking(side: str, da: xr.DataArray) -> None:
    """Warn of an in-memory side labelled degC that looks like degF
    (:func:`xmsgl.convention.warn_fahrenheit_looking`)."""
    if da.attrs.get("units") == "degC":
        warn_fahrenheit_looking(side, da)


def _converted(side: str, da: xr.DataArray) -> xr.DataArray:
    """:func:`_to_degc`, refusing in-memory results implausible for degC."""
    if _is_difference(da.attrs) and _temperature_scale(str(da.attrs.get("units"))) in ("K", "degF"):
        raise UnitsError(
            f"{side} is declared a temperature difference (units_metadata="
            f"{da.attrs['units_metadata']!r}), but scores compare water temperatures; drop the "
            f"attribute or set {side}.attrs['units_metadata'] = 'temperature: on_scale'")
    new = _to_degc(da)
    if new is da:
        return da
    units = da.attrs["units"]
    rng = _finite_range(new)
    if _implausible(rng):
        assert rng is not None
        raw = _finite_range(da)
        assert raw is not None
        if not _implausible(raw):
            raise UnitsError(
                f"{side} is labelled {units!r}, but converted to degC it spans {rng[0]:g} to "
                f"{rng[1]:g}, implausible for water temperature; its values ({raw[0]:g} to "
                f"{raw[1]:g}) look like degC: set {side}.attrs['units'] = 'degC'"
            )
        raise DataError(
            f"{side} is in {units!r} and holds values that, converted to degC, span "
            f"{rng[0]:g} to {rng[1]:g}, implausible for water temperature (fill values such "
            f"as -999?); mask the missing values, e.g. {side}.where({side} != -999), or decode "
            "the file with xarray.decode_cf"
        )
    return new


#: A side in degF whose values all convert below this (degC) is taken for degC values
#: labelled degF: liquid stream water stays above it (a record under ice reads about 0).
FREEZING_MARGIN = -1.0


def _warn_below_freezing(pairs: list[tuple[str, xr.DataArray, xr.DataArray]]) -> None:
    """Warn of sides (``(side, raw, converted)``) converted from degF whose values all lie
    below :data:`FREEZING_MARGIN` degC, where no liquid stream water is: degC values
    labelled degF (0..30 becomes -17.8..-1.1 degC, inside :data:`PLAUSIBLE_DEGC`, and
    would be scored at 5/9 of their errors without a word)."""
    found = []
    for side, raw, new in pairs:
        if _temperature_scale(str(raw.attrs.get("units"))) != "degF":
            continue
        rng, before = _finite_range(new), _finite_range(raw)
        # Below -1 degC: a record under ice in degF (31.x degF) stays out of it.
        if rng is None or before is None or rng[1] >= FREEZING_MARGIN:
            continue
        found.append((side, f"{side} ({before[0]:.4g} to {before[1]:.4g} {raw.attrs['units']}, "
                            f"{rng[0]:.3g} to {rng[1]:.3g} degC)"))
    if not found:
        return
    units = pairs[0][1].attrs["units"]
    if len(found) == 2:
        what, fix = (f"{found[0][1]} and {found[1][1]} lie", "if they are in degC, set "
                     "attrs['units'] = 'degC' on both sides")
    else:
        side = found[0][0]
        other = "observed" if side == "prediction" else "prediction"
        what, fix = (f"{found[0][1]} lies", f"if {side}'s values are in degC, set "
                     f"{side}.attrs['units'] = 'degC' and convert {other} to degC "
                     "((x - 32) / 1.8, units 'degC')")
    warn_at_user(
        f"converted to degC, {what} wholly below {FREEZING_MARGIN:g} degC, where no liquid "
        f"stream water is: "
        f"values in degC labelled {units!r} look like this, and would be scored at 5/9 of "
        f"their errors; {fix}",
        XmsglWarning)


def _check_units(prediction: xr.DataArray, observed: xr.DataArray) -> None:
    pu, ou = prediction.attrs.get("units"), observed.attrs.get("units")
    if pu is not None and ou is not None:
        if not same_units(str(pu), str(ou)):
            raise UnitsError(
                f"prediction is in {pu!r} but observed is in {ou!r}; convert one of them "
                "(xmsgl works in 'degC')"
            )
        return
    if pu is None and ou is None:
        return
    has, lacks = ("prediction", "observed") if pu is not None else ("observed", "prediction")
    unit = str(pu if pu is not None else ou)
    da_lacks = observed if pu is not None else prediction
    if not same_units(unit, "degC"):
        raise UnitsError(
            f"{has} is in {unit!r} but {lacks} has no 'units' attribute (or a blank one); the scores "
            "are in degC: "
            f"convert {has} to degC and set {lacks}.attrs['units'] = 'degC'"
        )
    rng = _finite_range(da_lacks)
    if _implausible(rng):
        assert rng is not None
        raise UnitsError(
            f"{lacks} has no 'units' attribute (or a blank one) and holds values from {rng[0]:g} to {rng[1]:g}, "
            f"implausible for degC ({has} is in {unit!r}); convert {lacks} to degC (from kelvin: "
            f"subtract 273.15) and set {lacks}.attrs['units'] = 'degC'"
        )
    # Values that look like degF are said to be so, not to be silenced as degC.
    if not warn_fahrenheit_looking(lacks, da_lacks, unlabelled=True):
        warn_at_user(
            f"{lacks} has no 'units' attribute (or a blank one); it is taken to be in degC like {has} "
            f"({unit!r}): set "
            f"{lacks}.attrs['units'] = 'degC' to silence this",
            XmsglWarning,
        )


def _labels(da: xr.DataArray, dim: Hashable) -> str:
    """The labels of ``dim`` for a message: dates as dates, or to the second when
    some carry a time of day (two days stamped at 00:00 and 12:00 must read apart)."""
    values = da[dim].values
    if np.issubdtype(values.dtype, np.datetime64):
        days = values.astype("datetime64[D]")
        if (days == values).all():
            return format_ids([str(v) for v in days])
        return format_ids([str(v) for v in values.astype("datetime64[s]")])
    return format_ids(list(values))


def _same_days_hint(prediction: xr.DataArray, observed: xr.DataArray, dim: Hashable) -> str:
    """A hint when two time axes share days but not times of day (noon-stamped daily
    values against midnight-stamped ones), or lie on two calendars."""
    a, b = prediction[dim].values, observed[dim].values
    calendars = [str(getattr(x.flat[0], "calendar", "")) if x.dtype == object and x.size else
                 ("standard (datetime64)" if np.issubdtype(x.dtype, np.datetime64) else "") for x in (a, b)]
    if all(calendars) and calendars[0] != calendars[1]:
        # Two calendars (a model's cftime dates on one side at least): no label is equal.
        model_side = [w for w, x in (("prediction", a), ("observed", b)) if x.dtype == object]
        align = ", align_on='date'" if "360_day" in calendars else ""
        return (f"; the prediction is on the calendar {calendars[0]!r} and the observations on "
                f"{calendars[1]!r}: put {' and '.join(model_side)} on the standard calendar, e.g. "
                f"{model_side[0]}.convert_calendar('standard'{align}, use_cftime=False)")
    if not (np.issubdtype(a.dtype, np.datetime64) and np.issubdtype(b.dtype, np.datetime64)):
        return ""
    if not np.intersect1d(a.astype("datetime64[D]"), b.astype("datetime64[D]")).size:
        return ""
    return (f"; they share days but not times of day: stamp both at the start of the day, "
            f"e.g. da.assign_coords({dim}=da[{str(dim)!r}].dt.floor('D'))")


def _core_dims(da: xr.DataArray, dims: str | Iterable[Hashable] | None) -> list[Hashable]:
    if dims is None:
        return list(da.dims)
    if isinstance(dims, str) or not isinstance(dims, Iterable):
        if not isinstance(dims, str) and dims not in da.dims:
            raise ParameterError(f"dims={dims!r} must be a dimension name or a list of them, e.g. "
                                 "dims='time'")
        wanted: list[Hashable] = [dims]
    else:
        wanted = list(dims)
    twice = sorted({str(d) for d in wanted if wanted.count(d) > 1})
    if twice:
        raise ParameterError(f"dims={dims!r} names {format_ids(twice)} more than once; give each "
                             "dimension to pool over once")
    missing = [d for d in wanted if d not in da.dims]
    if missing:
        raise SchemaError(
            f"dims {format_ids(missing)} are not dimensions of the data "
            f"{tuple(map(str, da.dims))}; pool over some of those"
        )
    return wanted


def skill(
    prediction: xr.DataArray,
    observed: xr.DataArray,
    dims: str | Sequence[Hashable] | None = None,
) -> xr.Dataset:
    """RMSE, MAE, bias, NSE, KGE and the pair count, pooled over ``dims``.

    This is the kernel of :func:`xmsgl.evaluate.evaluate` without alignment,
    subsets or empty checks: the inputs must already be aligned.

    Parameters
    ----------
    prediction, observed : xarray.DataArray
        Aligned arrays with the same dimensions. A side whose ``units`` name
        kelvin or Fahrenheit is converted to degC (no other check is made).
    dims : str or sequence of str, optional
        Dimensions to pool over (default all those both inputs have: one pooled value,
        per member where one side has a dimension the other lacks, such as an
        ensemble's ``member``). Pooling over ``"time"`` only gives one value per reach.

    Returns
    -------
    xarray.Dataset
        Variables ``rmse``, ``mae``, ``bias``, ``nse``, ``kge`` (float64, with
        ``units``: degC for ``rmse``, ``mae`` and ``bias``, or the units both
        inputs share when they are not a temperature) and ``n`` (int64, on dask
        input too), on the dimensions not pooled over. Lazy when an input is
        dask-backed.

    Raises
    ------
    SchemaError
        An input is no DataArray of real numbers.
    DataError
        The inputs differ along a dimension they share (other labels, order or size):
        use :func:`align_pair` first. A dimension of one side only (an ensemble's
        ``member``) is broadcast.
    TimeError
        A timezone-aware ``time`` coordinate.

    Examples
    --------
    >>> import xarray as xr
    >>> o = xr.DataArray([1.0, 2.0, 3.0, 4.0], dims="time")
    >>> out = skill(o + 0.5, o)
    >>> float(out.rmse), float(out.bias), int(out.n)
    (0.5, 0.5, 4)
    """
    _check_aligned(prediction, observed)
    # By default the dimensions both sides have: one of one side only (an ensemble's
    # member) stays in the result, broadcast against the other.
    core = _core_dims(prediction, dims) if dims is not None else [
        d for d in prediction.dims if d in observed.dims]
    one_sided = [d for d in core if d not in observed.dims]
    if one_sided:
        raise SchemaError(
            f"dims {format_ids(one_sided)} are not dimensions of observed "
            f"{tuple(map(str, observed.dims))}; pool over dimensions both have (a dimension of one "
            "side only, such as an ensemble's member, is kept in the result)")
    if set(prediction.dims) != set(observed.dims):
        # The kernel pairs whole arrays: each side gets the other's one-sided dimensions.
        prediction, observed = xr.broadcast(prediction, observed)
    # Inputs in K or degF (aligned by hand rather than by align_pair) are scored in degC.
    prediction, observed = _to_degc(prediction), _to_degc(observed)
    # Another quantity (discharge in m3 s-1, say) keeps its own units in the errors.
    value_units = _shared_other_units(prediction, observed)
    if prediction.chunks is not None or observed.chunks is not None:
        # The kernel needs every core dimension in one block; other dims keep theirs.
        prediction = prediction.chunk({d: -1 for d in core})
        observed = observed.chunk({d: -1 for d in core})
    stacked = xr.apply_ufunc(
        _kernel,
        prediction,
        observed,
        input_core_dims=[core, core],
        output_core_dims=[["metric"]],
        kwargs={"n_core": len(core)},
        dask="parallelized",
        output_dtypes=[np.float64],
        dask_gufunc_kwargs={"output_sizes": {"metric": len(METRICS) + 1}},
        keep_attrs=False,
    )
    out = xr.Dataset()
    for i, name in enumerate((*METRICS, "n")):
        da = stacked.isel(metric=i, drop=True)
        if name == "n":
            da = da.astype(np.int64)  # lazily on dask input, so both paths give int64
        units = value_units if UNITS[name] == "degC" and value_units is not None else UNITS[name]
        da.attrs = {"units": units, "long_name": _LONG_NAMES[name]}
        out[name] = da
    return out


def _check_aligned(prediction: xr.DataArray, observed: xr.DataArray) -> None:
    """What :func:`skill` needs of its (already aligned) inputs, refused in its own words."""
    if not isinstance(prediction, xr.DataArray) or not isinstance(observed, xr.DataArray):
        raise SchemaError(
            "prediction and observed must be xarray.DataArray objects, got "
            f"{type(prediction).__name__} and {type(observed).__name__}"
        )
    for side, da in (("prediction", prediction), ("observed", observed)):
        _check_numbers(side, da)
        if "time" in da.coords:
            _refuse_timezones(da["time"])
    # A dimension of one side only (an ensemble's member) is broadcast; the shared ones
    # must carry the same labels: skill does not align them.
    for dim in set(prediction.dims) & set(observed.dims):
        same = (prediction.sizes[dim] == observed.sizes[dim]) and (
            dim not in prediction.indexes or dim not in observed.indexes
            or prediction.indexes[dim].equals(observed.indexes[dim]))
        if not same:
            raise DataError(
                f"prediction and observed differ along {str(dim)!r} (other labels, another order "
                "or another size), and skill does not align them; align them first with "
                "xmsgl.metrics.align_pair(prediction, observed), or score them with "
                "xmsgl.evaluate.evaluate, which aligns"
            )


def _shared_other_units(prediction: xr.DataArray, observed: xr.DataArray) -> str | None:
    """The units both sides share when they are not a temperature (then the errors are
    in them, not in degC); None otherwise."""
    pu, ou = prediction.attrs.get("units"), observed.attrs.get("units")
    if pu is None or ou is None or not str(pu).strip() or not same_units(str(pu), str(ou)):
        return None
    if _temperature_scale(str(pu)) is not None:
        return None
    return str(pu)


def _one(name: str, prediction: xr.DataArray, observed: xr.DataArray,
         dims: str | Sequence[Hashable] | None) -> xr.DataArray:
    p, o = align_pair(prediction, observed)
    return skill(p, o, dims)[name].rename(name)


def rmse(prediction: xr.DataArray, observed: xr.DataArray,
         dims: str | Sequence[Hashable] | None = None) -> xr.DataArray:
    """Root mean square error over the pairs where neither side is NaN, pooled over ``dims`` (degC).

    ``dims`` (a name or names; default all) are pooled: the result keeps the other
    dimensions, as in :func:`skill`. Both sides have the same dimensions (their labels
    are aligned first); for a dimension of one side only, such as an ensemble's
    ``member``, use :func:`skill`, which broadcasts it.

    Examples
    --------
    >>> import xarray as xr
    >>> float(rmse(xr.DataArray([1.0, 3.0], dims="time"), xr.DataArray([2.0, 2.0], dims="time")))
    1.0
    """
    return _one("rmse", prediction, observed, dims)


def mae(prediction: xr.DataArray, observed: xr.DataArray,
        dims: str | Sequence[Hashable] | None = None) -> xr.DataArray:
    """Mean absolute error over the pairs where neither side is NaN, pooled over ``dims`` (degC).

    ``dims`` (a name or names; default all) are pooled: the result keeps the other
    dimensions, as in :func:`skill`. Both sides have the same dimensions (their labels
    are aligned first); for a dimension of one side only, such as an ensemble's
    ``member``, use :func:`skill`, which broadcasts it.

    Examples
    --------
    >>> import xarray as xr
    >>> float(mae(xr.DataArray([1.0, 4.0], dims="time"), xr.DataArray([2.0, 2.0], dims="time")))
    1.5
    """
    return _one("mae", prediction, observed, dims)


def bias(prediction: xr.DataArray, observed: xr.DataArray,
         dims: str | Sequence[Hashable] | None = None) -> xr.DataArray:
    """Mean of prediction minus observation over the pairs where neither side is NaN (degC).

    ``dims`` (a name or names; default all) are pooled: the result keeps the other
    dimensions, as in :func:`skill`. Both sides have the same dimensions (their labels
    are aligned first); for a dimension of one side only, such as an ensemble's
    ``member``, use :func:`skill`, which broadcasts it.

    Examples
    --------
    >>> import xarray as xr
    >>> float(bias(xr.DataArray([1.0, 4.0], dims="time"), xr.DataArray([2.0, 2.0], dims="time")))
    0.5
    """
    return _one("bias", prediction, observed, dims)


def nse(prediction: xr.DataArray, observed: xr.DataArray,
        dims: str | Sequence[Hashable] | None = None) -> xr.DataArray:
    """Nash-Sutcliffe efficiency over the pairs where neither side is NaN (dimensionless).

    ``dims`` (a name or names; default all) are pooled: the result keeps the other
    dimensions, as in :func:`skill`. Both sides have the same dimensions (their labels
    are aligned first); for a dimension of one side only, such as an ensemble's
    ``member``, use :func:`skill`, which broadcasts it.

    Examples
    --------
    >>> import xarray as xr
    >>> o = xr.DataArray([1.0, 2.0, 3.0], dims="time")
    >>> float(nse(o, o)), float(nse(o * 0 + 2.0, o))
    (1.0, 0.0)
    """
    return _one("nse", prediction, observed, dims)


def kge(prediction: xr.DataArray, observed: xr.DataArray,
        dims: str | Sequence[Hashable] | None = None) -> xr.DataArray:
    """Kling-Gupta efficiency (2009) over the pairs where neither side is NaN (dimensionless).

    ``dims`` (a name or names; default all) are pooled: the result keeps the other
    dimensions, as in :func:`skill`. Both sides have the same dimensions (their labels
    are aligned first); for a dimension of one side only, such as an ensemble's
    ``member``, use :func:`skill`, which broadcasts it.

    Examples
    --------
    >>> import xarray as xr
    >>> o = xr.DataArray([1.0, 2.0, 3.0], dims="time")
    >>> float(kge(o, o))
    1.0
    """
    return _one("kge", prediction, observed, dims)


def hot_mask(
    observed: xr.DataArray,
    *,
    per: Hashable | None = "reach",
    time_dim: Hashable = "time",
    quantile: float = HOT_QUANTILE,
) -> xr.DataArray:
    """Where the observation is among the hottest 10% (lazy on dask input).

    Parameters
    ----------
    observed : xarray.DataArray
        Observations, NaN where missing.
    per : str or None, default "reach"
        ``"reach"`` (any dimension name): the threshold is the ``quantile`` of each
        reach's own observed values along ``time_dim``, so every observed reach
        contributes its own warmest days (``"seg"`` for segment data). ``None``: one
        pooled threshold over all observed values. A name that is not a dimension of
        ``observed`` is a ``SchemaError``, except for a single series on ``time_dim``.
    time_dim : str, default "time"
        The time dimension.
    quantile : float, default 0.9
        Values at or above this quantile are "hot".

    Returns
    -------
    xarray.DataArray of bool
        True at hot observed entries.

    Raises
    ------
    ParameterError
        ``quantile`` outside [0, 1].
    SchemaError
        ``per`` or ``time_dim`` is not a dimension of ``observed``; ``observed`` is
        no DataArray of numbers.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> o = xr.DataArray(np.arange(20.0), dims="time")
    >>> int(hot_mask(o, per=None).sum())
    2
    """
    if not isinstance(observed, xr.DataArray):
        raise SchemaError(f"observed must be an xarray.DataArray with a {str(time_dim)!r} dimension, "
                          f"got {type(observed).__name__}; e.g. hot_mask(ds['reach_temp'])")
    _check_numbers("observed", observed)
    if (isinstance(quantile, (bool, np.bool_)) or not isinstance(quantile, (int, float, np.integer, np.floating))
            or not 0 <= quantile <= 1):
        raise ParameterError(f"quantile={quantile!r} must be a number in [0, 1] (0.9: the hottest tenth)")
    if per is not None and per not in observed.dims:
        if tuple(observed.dims) != (time_dim,):
            # A typo, or segment data with the default per="reach", would otherwise pool
            # every node under one threshold without a word.
            raise SchemaError(
                f"per={per!r} is not a dimension of observed {tuple(map(str, observed.dims))}; "
                "name the node dimension (per='seg' for segment data) or pass per=None for one "
                "pooled threshold")
        per = None  # a single series: per-reach and pooled agree
    over = [time_dim] if per is not None else list(observed.dims)
    if per is not None and time_dim not in observed.dims:
        raise SchemaError(f"observed has no {str(time_dim)!r} dimension to rank days along")
    src = observed.chunk({d: -1 for d in over}) if observed.chunks is not None else observed
    # A reach without observations has no threshold (NaN) and no hot day: that is the
    # answer. Its row is filled before the quantile, which would warn of it ("All-NaN
    # slice"), and its threshold set to NaN after (no filter: they are process-wide).
    seen = src.notnull().any(over)
    threshold = src.where(seen, 0.0).quantile(quantile, dim=over, skipna=True).drop_vars("quantile")
    return observed >= threshold.where(seen)
