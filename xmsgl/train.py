"""Training machinery: inputs to tensors, windows, losses, task weighting, the loop.

Everything a fit needs between a validated dataset and a trained
:class:`~xmsgl.nn.MSGLNet`; :mod:`xmsgl.model` decides *what* to train (methods,
stages) and this module *how*.

Guards kept on purpose (each is a defect of earlier public code):

* windows never straddle a gap between periods or in the time axis;
* a window without observations for one task still trains the other tasks;
* validation reads the same (sparse) fine variable as training, for every method;
* the cross-scale matrix is aligned by ids (it comes from :func:`xmsgl.graph.build_graphs`).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import numbers
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd
import torch
import xarray as xr

from xmsgl.convention import (
    CONVERTED_OTHER_TEMP,
    REACH,
    SEG,
    TIME,
    InputVariables,
    check_loaded_temperature,
    degf_hint,
    mislabel_hint,
    same_units,
    stored_mask,
    value_span,
)
from xmsgl.exceptions import (
    ChoiceError,
    DataError,
    ParameterError,
    SchemaError,
    TrainingError,
    UnitsError,
    XmsglError,
    XmsglWarning,
    check_count,
    warn_at_user,
)
from xmsgl.nn import FineHead, SparseGraph, graph_product
from xmsgl.nn.rgrn import PARAM_DTYPE, reusable_empty
from xmsgl.periods import WHOLE_WATER_YEAR_DAYS, split_periods  # noqa: F401  (re-exported)

__all__ = [
    "FeatureSpec",
    "feature_spec",
    "input_array",
    "InputDays",
    "target_array",
    "resolve_device",
    "split_periods",
    "period_ranges",
    "make_windows",
    "masked_rmse",
    "mgda_weights",
    "min_norm_weights",
    "train_tasks",
    "predict",
    "time_breaks",
]

#: Hidden units to keep in memory for one window during training: the recurrent
#: loop saves roughly this many (N, H) float32 tensors per day and per node.
_ACTIVATIONS_PER_NODE_DAY = 30


# ---------------------------------------------------------------------------- inputs


def _strip(name: str) -> str:
    for prefix in (f"{SEG}_", f"{REACH}_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


@dataclass
class FeatureSpec:
    """Which variables feed the model, in which order, and how they are scaled.

    ``seg_vars`` and ``reach_vars`` start with the ``n_common`` variables shared by
    both scales (matched by name without their ``seg_``/``reach_`` prefix), in the
    same order, followed by the variables found at one scale only.
    """

    seg_vars: list[str]
    reach_vars: list[str]
    n_common: int
    units: dict[str, str]
    static: dict[str, bool]
    mean: dict[str, float] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    #: ``[min, max]`` of each input over the nodes with training observations at its
    #: scale, on the training days for an input on time (:func:`observed_ranges`;
    #: absent from models saved before).
    observed_range: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "seg_vars": self.seg_vars, "reach_vars": self.reach_vars, "n_common": self.n_common,
            "units": self.units, "static": self.static, "mean": self.mean, "std": self.std,
            "observed_range": self.observed_range,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(
            seg_vars=list(d["seg_vars"]), reach_vars=list(d["reach_vars"]),
            n_common=int(d["n_common"]), units=dict(d["units"]), static=dict(d["static"]),
            mean={k: float(v) for k, v in d["mean"].items()},
            std={k: float(v) for k, v in d["std"].items()},
            observed_range={k: [float(v[0]), float(v[1])]
                            for k, v in d.get("observed_range", {}).items()},
        )


def observed_ranges(ds: xr.Dataset, spec: FeatureSpec, targets: dict[str, np.ndarray | None],
                           train_mask: np.ndarray) -> dict[str, list[float]]:
    """``[min, max]`` of each input over the nodes that have at least one observation
    (``targets[scale]``, (T, N)) on the training days, for the scales in ``targets``
    (an input on time: over those nodes' training days); a variable with no such
    node is left out."""
    out: dict[str, list[float]] = {}
    days = np.flatnonzero(train_mask)
    for dim, names in ((SEG, spec.seg_vars), (REACH, spec.reach_vars)):
        y = targets.get(dim)
        if y is None:
            continue
        seen = np.isfinite(y[train_mask]).any(axis=0)
        for name in names:
            da = ds[name]
            # The observed nodes (and training days) first: a whole record in float64
            # would be several times the input's own size.
            nodes = np.flatnonzero(seen)
            if spec.static[name]:
                vals = np.asarray(da.isel({dim: nodes}).values, dtype=np.float64)
            else:
                vals = np.asarray(da.isel({TIME: days, dim: nodes}).values, dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            if vals.size:
                out[name] = [float(vals.min()), float(vals.max())]
    return out


def feature_spec(ds: xr.Dataset, inputs: InputVariables) -> FeatureSpec:
    """Order the input variables of ``ds`` into shared and scale-specific ones."""
    seg_all = {_strip(v): (v, False) for v in inputs.seg_dynamic}
    seg_all.update({_strip(v): (v, True) for v in inputs.seg_static})
    reach_all = {_strip(v): (v, False) for v in inputs.reach_dynamic}
    reach_all.update({_strip(v): (v, True) for v in inputs.reach_static})
    common = sorted(k for k in set(seg_all) & set(reach_all) if seg_all[k][1] == reach_all[k][1])
    seg_vars = [seg_all[k][0] for k in common] + sorted(
        v for k, (v, _) in seg_all.items() if k not in common)
    reach_vars = [reach_all[k][0] for k in common] + sorted(
        v for k, (v, _) in reach_all.items() if k not in common)
    if not seg_vars and not reach_vars:
        raise DataError(
            "the dataset has no input variables (numeric variables on (seg, time), (seg,), "
            "(reach, time) or (reach,) with a 'units' attribute); add forcings such as "
            "'seg_air_temp' and 'reach_air_temp'"
        )
    units = {v: str(ds[v].attrs.get("units", "1")) for v in seg_vars + reach_vars}
    static = {v: TIME not in ds[v].dims for v in seg_vars + reach_vars}
    return FeatureSpec(seg_vars, reach_vars, len(common), units, static)


#: Inputs further than this many training standard deviations from the training
#: mean are refused: they are fill values or unit mistakes, and they would
#: saturate or overflow the network.
MAX_STANDARD_SCORE = 1000.0


#: Numbers that data sets write for "missing" without declaring them as ``_FillValue``
#: (so xarray does not mask them). Refused in an input where they are far from its
#: other values: :data:`FILL_SCORE` training standard deviations from the training
#: mean (:func:`_check_fill_values`), or, on the training days themselves, beyond the
#: other values by more than their range (:func:`refuse_fill_values`): one such value
#: among the training days widens the standard deviation that would judge it, and
#: with them a few percent of the days.
#: The decimal ones (PRMS writes -99.9) are compared as float32, how files store them.
FILL_VALUES = (-99999.0, -32768.0, -32767.0, -9999.9, -9999.0, -999.9, -999.0, -99.9, -99.0,
               999.9, 9999.0, 9999.9, 99999.0)

#: What the two checks look for in a time-varying input (a forcing): :data:`FILL_VALUES`
#: and 999 (a shortwave radiation of 999 W m-2 among 0-400). A static input is not
#: judged for 999: whole-number attributes take it as a real value (an elevation of
#: 999 m in a basin trained below 300 m, in a transfer run, was refused).
FORCING_FILL_VALUES = (*FILL_VALUES, 999.0)


def _fill_values(static: bool) -> tuple[float, ...]:
    """The fill values looked for in a static input (``static``) or a forcing."""
    return FILL_VALUES if static else FORCING_FILL_VALUES


#: Magnitude from which an input value is taken for a fill value as those of
#: :data:`FILL_VALUES` are (1e20, CMIP's ``missing_value``; 9.96921e36, netCDF's
#: default float fill; 3.4e38, the largest float32): no forcing or attribute of a
#: river network comes near it in the units the convention uses (a drainage area of
#: the Amazon is 7e12 m2).
HUGE_VALUE = 1e15

#: Standard scores beyond which a value of :data:`FILL_VALUES` is taken for a fill value.
FILL_SCORE = 10.0


def _fill_message(name: str, found: np.ndarray, n: int, where: str, why: str, static: bool,
                  fitting: bool = True) -> str:
    shown = " and ".join(f"{v:g}" for v in found[:3]) + (
        f" (and {len(found) - 3} other value{'s' if len(found) > 4 else ''})" if len(found) > 3 else "")
    # A mask that leaves none of the values found: every huge one by its size, the
    # others by their values.
    # The values as stored (a float32 -99.9 read as float64 is -99.90000152587891,
    # which != -99.9 would keep): short where that is exact.
    small = [float(v) for v in found if abs(v) < HUGE_VALUE]
    exact = [f"{v:g}" if float(f"{v:g}") == v else repr(v) for v in small]
    parts = [f"abs(ds[{name!r}]) < {HUGE_VALUE:g}"] if len(small) < len(found) else []
    if len(small) == 1 and not parts:
        parts.append(f"ds[{name!r}] != {exact[0]}")
    elif small:
        parts.append(f"~ds[{name!r}].isin([{', '.join(exact)}])")
    keep = parts[0] if len(parts) == 1 else " & ".join(f"({p})" for p in parts)
    fill = ("fill them from related values (a reach's from its segment, or a basin median)"
            if static else "fill the gaps (for example .interpolate_na('time'))")
    return (f"input variable {name!r} holds {n} value{'s' if n != 1 else ''} of {shown} (at "
            f"{where}), {why}: a fill value that was not masked (no _FillValue or missing_value "
            f"attribute told xarray of it); mask it, ds[{name!r}] = "
            f"ds[{name!r}].where({keep}), then {fill}"
            + (", or leave the variable out" if fitting else
               " (the model was fitted with it, so it cannot be left out)"))


def _check_fill_values(name: str, lo: Any, hi: Any, vals: np.ndarray, spec: FeatureSpec,
                       static: bool, sel: xr.Dataset, dim: str, fitting: bool = True) -> None:
    """Refuse values of :data:`FILL_VALUES` more than :data:`FILL_SCORE` standard
    deviations from the training mean in input ``name`` (``lo``, ``hi``: its smallest
    and largest standard scores, which rule the search out for almost every input).
    Temperatures in degC are left to their plausible range."""
    if (-FILL_SCORE <= lo and hi <= FILL_SCORE) or spec.units.get(name) == "degC":
        return
    mean, std = float(spec.mean[name]), float(spec.std[name])
    vmin, vmax = float(lo) * std + mean, float(hi) * std + mean
    cands = [v for v in _fill_values(static) if abs(v - mean) > FILL_SCORE * std
             and vmin - 1e-3 * abs(v) <= v <= vmax + 1e-3 * abs(v)]
    if not cands:
        return
    bad = np.isin(np.asarray(vals, dtype=np.float32), np.asarray(cands, dtype=np.float32))
    if not bad.any():
        return
    found = np.unique(np.asarray(vals, dtype=np.float64)[bad])
    raise DataError(_fill_message(
        name, found, int(np.count_nonzero(bad)), _where_bad(bad, sel, dim),
        f"more than {FILL_SCORE:g} standard deviations from its training mean {mean:.4g} "
        f"(standard deviation {std:.4g})", static, fitting))


def refuse_fill_values(ds: xr.Dataset, name: str, vals: np.ndarray, train_mask: np.ndarray) -> None:
    """Refuse input ``name`` whose training values ``vals`` (finite, flattened) hold a
    value of :data:`FILL_VALUES` (in a forcing :data:`FORCING_FILL_VALUES`), or of
    magnitude :data:`HUGE_VALUE` or more, beyond the range of its other values by more
    than that range (or only such values): a fill
    value would otherwise set the mean and standard deviation that judge it, and the
    model would learn nothing from the input. Temperatures in degC are left to their
    plausible range."""
    if not vals.size or str(ds[name].attrs.get("units")) == "degC":
        return
    vmin, vmax = float(vals.min()), float(vals.max())
    codes = _fill_values(TIME not in ds[name].dims)
    if not (any(vmin - 1e-3 * abs(v) <= v <= vmax + 1e-3 * abs(v) for v in codes)
            or vmin <= -HUGE_VALUE or vmax >= HUGE_VALUE):
        return
    sentinel = (np.isin(vals.astype(np.float32), np.asarray(codes, dtype=np.float32))
                | (np.abs(vals) >= HUGE_VALUE))
    if not sentinel.any():
        return
    others = vals[~sentinel]
    if others.size:
        omin, omax = float(others.min()), float(others.max())
        span = omax - omin
        found = np.unique(vals[sentinel])
        found = found[(found < omin - span) | (found > omax + span)]
        if not found.size:
            return
        why = f"beyond its other training values ({omin:.4g}..{omax:.4g}) by more than their range"
    else:
        found = np.unique(vals[sentinel])
        why = "its only values on the training days"
    da = ds[name]
    if TIME in da.dims:
        days = np.flatnonzero(train_mask)
        sel = ds.isel({TIME: days})
        arr = np.asarray(sel[name].transpose(TIME, *[d for d in da.dims if d != TIME]).values)
    else:
        sel, arr = ds, np.asarray(da.values)
    bad = np.isin(arr, found)
    dim = next(str(d) for d in da.dims if str(d) != TIME)
    raise DataError(_fill_message(name, found, int(np.count_nonzero(bad)),
                                  _where_bad(bad, sel, dim), why, TIME not in da.dims))


def _input_values(sel: xr.Dataset, name: str, dim: str) -> tuple[np.ndarray, bool]:
    """Input ``name`` of ``sel`` as it is stored (no copy where the data allow):
    (T, N) (a transposed view for a variable stored on (N, T)) or (N,), and whether
    it is static. :class:`SchemaError` for a variable on other dimensions."""
    da = sel[name]
    if set(da.dims) - {TIME, dim} or dim not in da.dims:
        raise SchemaError(
            f"input variable {name!r} is on dimensions {tuple(map(str, da.dims))}; the model "
            f"uses it on ({dim!r}, 'time') or ({dim!r},): select or reduce the other dimensions "
            f"(for example ds[{name!r}].isel(...)) before calling"
        )
    vals = np.asarray(da.values)
    if not (np.issubdtype(vals.dtype, np.floating) or np.issubdtype(vals.dtype, np.integer)):
        vals = vals.astype(np.float32)
    if TIME not in da.dims:
        return vals, True
    return (vals if da.dims[0] == TIME else vals.T), False


#: A coordinate along ``time`` holding the dates where ``time`` holds day positions
#: (the datasets a lazy block rebuilds), so that messages name the real days.
DATE_COORD = "_date"


def _day_text(values: np.ndarray, i: int) -> str:
    """Day ``i`` of a time axis as ``"on 2001-05-03"``, or ``"on day 3"`` where the axis
    holds positions rather than dates."""
    if np.issubdtype(values.dtype, np.datetime64):
        return f"on {pd.Timestamp(values[i]).date()}"
    return f"on day {values[i].item()!r}"


def _where_bad(bad: np.ndarray, sel: xr.Dataset, dim: str, limit: int = 3) -> str:
    """The first ``limit`` places where ``bad`` (a (T, N) or static (N,) mask of the
    days and nodes of ``sel``) is true, as ``"reach 12 on 2001-05-03, ..."``."""
    ids = np.asarray(sel[dim].values)
    if bad.ndim == 1:
        places = [f"{dim} {ids[n].item()!r}" for n in np.flatnonzero(bad)[:limit]]
    else:
        days = np.asarray(sel[DATE_COORD].values if DATE_COORD in sel.coords else sel[TIME].values)
        t, n = np.nonzero(bad)  # in time order, then by node
        places = [f"{dim} {ids[j].item()!r} {_day_text(days, i)}"
                  for i, j in zip(t[:limit], n[:limit], strict=True)]
    more = int(np.count_nonzero(bad)) - len(places)
    return ", ".join(places) + (f" and {more} more" if more > 0 else "")


def _check_scores(name: str, lo: Any, hi: Any, vals: np.ndarray, spec: FeatureSpec, static: bool,
                  sel: xr.Dataset, dim: str, fitting: bool = True) -> None:
    """Refuse input ``name`` whose smallest or largest standard score (``lo``,
    ``hi``) is NaN, infinite or beyond :data:`MAX_STANDARD_SCORE`; ``vals`` are its
    values on the days and nodes (``dim``) of ``sel``, counted and located for the
    message only then. Leaving the variable out is advised when ``fitting`` only: a
    fitted model needs every input it was fitted with."""
    if lo >= -MAX_STANDARD_SCORE and hi <= MAX_STANDARD_SCORE:
        _check_fill_values(name, lo, hi, vals, spec, static, sel, dim, fitting)
        return
    as32 = np.asarray(vals, dtype=np.float32)
    bad = ~np.isfinite(as32)
    n_bad = int(np.count_nonzero(bad))
    if n_bad:
        raise DataError(
            f"input variable {name!r} has {n_bad} NaN or infinite values"
            + ("" if static else f" in the {sel.sizes[TIME]} days read")
            + f" (at {_where_bad(bad, sel, dim)})"
            + (f"; it has no 'time' to interpolate along: fill it from related values, for "
               f"a reach its segment's value, or a basin median with "
               f"ds[{name!r}] = ds[{name!r}].fillna(ds[{name!r}].median())" if static else
               f"; fill them (for example ds[{name!r}].interpolate_na('time') or .fillna(...))"
               + ("; interpolate_na fills between values only, so a NaN on the record's last "
                  "day stays: end " + ("the periods (train=, val=, test=)" if fitting else
                                       "the days asked for (time=)")
                  + " before it, or fill it with .fillna(...)"
                  if bad.ndim == 2 and bad[-1].any() else ""))
            + (f"; to fit a model without it, leave it out with ds.drop_vars({name!r})" if fitting
               else "; the model was fitted with it, so it cannot be left out")
        )
    z = (as32 - np.float32(spec.mean[name])) / np.float32(spec.std[name])
    far = ~(np.abs(z) <= MAX_STANDARD_SCORE)
    n_far = int(np.count_nonzero(far))
    found = np.unique(as32[far])
    shown = " and ".join(f"{v:g}" for v in found[:3]) + (" and others" if found.size > 3 else "")
    raise DataError(
        f"input variable {name!r} has {n_far} value{'s' if n_far != 1 else ''} ({shown}) more "
        f"than {MAX_STANDARD_SCORE:g} standard deviations from its training mean "
        f"{spec.mean[name]:.4g} (standard deviation {spec.std[name]:.4g}) (at "
        f"{_where_bad(far, sel, dim)}); look for fill values such as -9999 or a change "
        "of units, and mask or convert them"
    )


def _check_temperature(name: str, vmin: float, vmax: float, spec: FeatureSpec,
                       attrs: Mapping[str, Any], vals: np.ndarray, sel: xr.Dataset, dim: str) -> None:
    """Refuse a degC input whose values leave :data:`~xmsgl.convention.CONVERTED_OTHER_TEMP`.

    The convention judges temperatures when it validates values in memory; this check
    also covers lazy inputs (it runs on each block as it is computed) and inputs that
    were never validated: a fill value such as -9999, or degC values labelled ``K``,
    which the conversion turns into about -270 degC. It runs before the check of the
    standard scores, so that a fill value in a temperature is told as one. ``vals``
    (on the days and nodes ``dim`` of ``sel``) locate the values outside.
    """
    if spec.units.get(name) != "degC" or not (np.isfinite(vmin) and np.isfinite(vmax)):
        return
    lo, hi = CONVERTED_OTHER_TEMP
    if lo <= vmin and vmax <= hi:
        return
    why = mislabel_hint(name, vmin, vmax, attrs)
    out = (vals < lo) | (vals > hi)
    n_out = int(np.count_nonzero(out))
    if not n_out:  # the extremes given were not the values' own
        return
    fix = (f"mask fill values ({stored_mask(name, lo, hi, vmin, vmax, attrs)}) or correct its "
           f"'units' attribute.{' ' + why[0].upper() + why[1:] + '.' if why else ''}")
    # Fahrenheit labelled degC, named as such first.
    fix = (degf_hint(name, vmin, vmax, vals[out], (lo, hi), attrs) if not why else "") or fix
    raise UnitsError(
        f"input temperature {name!r} spans {value_span(vmin, vmax)} degC here, outside the "
        f"plausible {lo:g}..{hi:g} degC for air and other temperatures ({n_out} "
        f"value{'s' if n_out != 1 else ''}, at {_where_bad(out, sel, dim)}); {fix}"
    )


def input_array(
    ds: xr.Dataset, names: Sequence[str], dim: str, spec: FeatureSpec, time_index: slice | None = None,
    contiguous: bool = True,
) -> np.ndarray:
    """Standardized inputs as float32 (T, N, F); static variables repeat over time.

    With ``contiguous=False`` the result is a (T, N, F) view of the variables'
    contiguous (F, T, N) planes instead of a copy interleaved into (T, N, F)
    (inference takes :class:`InputDays` instead, which never holds all days).

    Raises :class:`DataError` naming the variable and the count of NaN values, or
    of values more than :data:`MAX_STANDARD_SCORE` standard deviations from the
    training mean (fill values such as -9999, or wrong units), and
    :class:`SchemaError` for a variable on other dimensions than it was fitted on.
    """
    sel = ds if time_index is None else ds.isel({TIME: time_index})
    n_time = sel.sizes[TIME]
    n_node = sel.sizes[dim]
    # One contiguous (T, N) plane per variable, interleaved at the end in one pass:
    # writing each variable straight into its strided column of (T, N, F) took
    # twice as long.
    planes = np.empty((len(names), n_time, n_node), dtype=np.float32)
    for j, name in enumerate(names):
        vals, static = _input_values(sel, name, dim)
        # Standardized in float32 in the variable's plane; a static (N,) on its own,
        # then broadcast.
        if static:
            z = vals.astype(np.float32) - np.float32(spec.mean[name])
        else:
            z = planes[j]
            z[...] = vals
            z -= np.float32(spec.mean[name])
        z /= np.float32(spec.std[name])
        # The smallest and largest scores find NaN, infinite and far values together
        # (NaN propagates and fails both comparisons); only when some are found are
        # they told apart and counted for the message.
        lo, hi = (z.min(), z.max()) if z.size else (0.0, 0.0)
        if z.size and spec.units.get(name) == "degC":
            # The values' own extremes: ones rebuilt from float32 scores could put a
            # value on the plausible range's bound (65 degC) just past it.
            _check_temperature(name, float(np.min(vals)), float(np.max(vals)), spec, sel[name].attrs,
                               vals, sel, dim)
        _check_scores(name, lo, hi, vals, spec, static, sel, dim)
        if static:
            planes[j] = z
    view = planes.transpose(1, 2, 0)
    return np.ascontiguousarray(view) if contiguous else view


def check_input_values(name: str, vals: np.ndarray, static: bool, spec: FeatureSpec,
                       sel: xr.Dataset, dim: str, fitting: bool) -> tuple[float, float] | None:
    """The checks of a fitted model's input ``name`` (``vals``, as :func:`_input_values`
    gives them on the days and nodes ``dim`` of ``sel``), on its smallest and largest
    value: a degC input outside the plausible range (:func:`_check_temperature`), then
    NaN, infinite, far and fill values (:func:`_check_scores`; rounding is monotone, so
    the extremes give the extreme scores). Returns those extremes (None without
    values). ``fitting``: whether leaving the input out may be advised."""
    if vals.size:
        vmin, vmax = float(vals.min()), float(vals.max())
        mean, std = np.float32(spec.mean[name]), np.float32(spec.std[name])
        lo, hi = (np.float32(vmin) - mean) / std, (np.float32(vmax) - mean) / std
        _check_temperature(name, vmin, vmax, spec, sel[name].attrs, vals, sel, dim)
    else:
        lo = hi = np.float32(0.0)
    _check_scores(name, lo, hi, vals, spec, static, sel, dim, fitting=fitting)
    return (vmin, vmax) if vals.size else None


def _torch_view(vals: np.ndarray) -> torch.Tensor | None:
    """``vals`` viewed by torch (no copy), or None where torch cannot view it: not
    float32 in the machine's byte order, read-only, or strides torch refuses (negative
    ones, from a dataset reversed with ``isel(slice(None, None, -1))``)."""
    if not (vals.dtype == np.float32 and vals.dtype.isnative and vals.flags.writeable
            and all(st >= 0 and st % vals.itemsize == 0 for st in vals.strides)):
        return None
    try:
        return torch.from_numpy(vals)
    except (ValueError, TypeError, RuntimeError):
        return None


class InputDays:
    """Standardized inputs (T, N, F), float32, made a block of days at a time.

    What :func:`input_array` gives, for inference, without holding every day: the
    variables stay as the dataset stores them, and ``days[a:b]`` standardizes days
    ``a`` to ``b`` into a reused buffer (a (b - a, N, F) view of its (F, b - a, N)
    planes, the layout of ``input_array(..., contiguous=False)``, with the same
    float32 operations: the same values to the last bit). The recurrence reads the
    inputs a day at a time, and MSGL's fine recurrence runs over blocks of days
    (:func:`_fine_by_chunks`): at 10^5 reaches and 11 inputs a year of scores
    is 1.6 GB, which a first call also had the system find and zero pages for
    (3.6 s against 0.3 s once the memory was the process's own).

    The checks of :func:`input_array` run on construction, on each variable's
    smallest and largest value (rounding is monotone, so these give the smallest
    and largest score): errors come before any work. A buffer is reused only once
    nothing views it (:func:`xmsgl.nn.rgrn.reusable_empty`), so earlier blocks stay
    valid. ``np.asarray(days)`` gives all days at once.
    """

    def __init__(self, ds: xr.Dataset, names: Sequence[str], dim: str, spec: FeatureSpec,
                 time_index: slice | None = None) -> None:
        sel = ds if time_index is None else ds.isel({TIME: time_index})
        n_time, n_node = sel.sizes[TIME], sel.sizes[dim]
        self.shape = (n_time, n_node, len(names))
        self.dtype = np.dtype(np.float32)
        self.ndim = 3
        self._mean = [np.float32(spec.mean[n]) for n in names]
        self._std = [np.float32(spec.std[n]) for n in names]
        self._values: list[np.ndarray] = []  # (T, N) as stored, or a static's (N,) scores
        self._tensors: list[torch.Tensor | None] = []  # the same, viewed by torch
        self._static: list[bool] = []
        self.names = list(names)
        #: Each time-varying input's smallest and largest value on these days (None
        #: for a static input or no days), which :func:`xmsgl.coverage.dynamic_extrapolation`
        #: judges against the training range.
        self.extremes: list[tuple[float, float] | None] = []
        for name, mean, std in zip(names, self._mean, self._std, strict=True):
            vals, static = _input_values(sel, name, dim)
            extremes = check_input_values(name, vals, static, spec, sel, dim, fitting=False)
            self.extremes.append(None if static else extremes)
            if static:
                z = vals.astype(np.float32) - mean
                z /= std
                vals = z
            self._values.append(vals)
            self._static.append(static)
            # float32 values torch can view (static scores are this object's own) are
            # standardized by torch on every thread, the others by numpy.
            self._tensors.append(_torch_view(vals))
        self._days = 0  # the longest block made: buffers of one size are reused
        self._like = torch.empty(0, dtype=torch.float32, device="cpu")  # host buffers, whatever the default device

    def raw(self, j: int) -> np.ndarray:
        """Input ``j`` as the dataset stores it on these days: (T, N) for a time-varying
        one (a view where the data allow), a static one's (N,) standard scores."""
        return self._values[j]

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        full = np.array(self[0: self.shape[0]], copy=True)
        return full if dtype is None else full.astype(dtype, copy=False)

    def __getitem__(self, key: Any) -> np.ndarray:
        if not (isinstance(key, slice) and key.step in (None, 1)):
            return np.asarray(self)[key]
        t0, t1, _ = key.indices(self.shape[0])
        t1 = max(t0, t1)
        n_feat, n_node = self.shape[2], self.shape[1]
        self._days = max(self._days, t1 - t0)
        block_t = reusable_empty((n_feat, self._days, n_node), self._like)[:, : t1 - t0]
        block = block_t.numpy()
        for j in range(n_feat):
            z = block[j]
            vt = self._tensors[j]
            if vt is not None:
                # The same float32 operations as numpy's below, on every thread (a
                # variable stored on (node, time) is read across its rows).
                if self._static[j]:
                    block_t[j].copy_(vt)
                else:
                    torch.sub(vt[t0:t1], float(self._mean[j]), out=block_t[j])
                    block_t[j].div_(float(self._std[j]))
                continue
            if self._static[j]:
                z[...] = self._values[j]
                continue
            z[...] = self._values[j][t0:t1]
            z -= self._mean[j]
            z /= self._std[j]
        return block.transpose(1, 2, 0)


#: How :func:`fit_scalers` standardizes a driver found at both scales: ``"per-scale"``
#: gives its segment and reach variables one mean and standard deviation each,
#: ``"pooled"`` one for both (over the values of the scales the method trains on).
INPUT_SCALINGS = ("per-scale", "pooled")


def check_input_scaling(scaling: object) -> None:
    """Refuse an ``input_scaling`` that is not one of :data:`INPUT_SCALINGS`."""
    if not isinstance(scaling, str) or scaling not in INPUT_SCALINGS:
        raise ChoiceError(f"input_scaling={scaling!r} is not known; use one of "
                             f"{list(INPUT_SCALINGS)}")


def _training_values(ds: xr.Dataset, name: str, train_mask: np.ndarray) -> np.ndarray:
    """The finite values of input ``name`` on the training days (all of a static one);
    :class:`DataError` where they hold fill values (:func:`refuse_fill_values`)."""
    da = ds[name]
    if TIME in da.dims:
        # Node by node, whatever the file's layout: sums in another order would differ in
        # the last bits, and with them the model's sha256.
        da = da.transpose(..., TIME)
        vals = np.asarray(da.isel({TIME: np.flatnonzero(train_mask)}).values, dtype=np.float64)
    else:
        vals = np.asarray(da.values, dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    refuse_fill_values(ds, name, vals, train_mask)
    return vals


#: An input whose standard deviation over the training values is at most this share
#: of its largest magnitude takes one value (to rounding): it is not scaled (std 1).
CONSTANT_SPREAD = 1e-9


def fit_scalers(ds: xr.Dataset, spec: FeatureSpec, train_mask: np.ndarray,
                scaling: str = "per-scale", scales: tuple[str, ...] = (SEG, REACH)) -> None:
    """Mean and standard deviation of each input over the training days (in place).

    With ``scaling="pooled"`` and both scales in ``scales``, each of the
    ``spec.n_common`` drivers found at both scales gets one mean and standard
    deviation over its segment and reach values together (count-weighted), so
    that a value enters the shared input projection as the same score at either
    scale; a pair whose ``units`` differ is scaled apart, with an
    :class:`~xmsgl.exceptions.XmsglWarning`. Variables of one scale, and every
    variable when ``scales`` names one scale, are scaled by their own values.
    """
    check_input_scaling(scaling)

    constant: list[str] = []

    def store(names: Sequence[str], finite: np.ndarray) -> None:
        mean = float(finite.mean()) if finite.size else 0.0
        std = float(finite.std()) if finite.size else 1.0
        # Constant relative to the values' own size (rounding of one repeated value),
        # not to an absolute bound: a permeability of 1e-16..1e-13 m2 varies.
        flat = finite.size > 0 and std <= CONSTANT_SPREAD * float(np.abs(finite).max())
        if flat:
            # Only where there is something to vary: the static attributes of a network
            # of one segment are constant by nature.
            # Only at the scales the method reads (fine-only reads no segment input).
            constant.extend(n for n in names if (SEG if n in spec.seg_vars else REACH) in scales
                            and not (spec.static[n]
                                     and ds.sizes[SEG if n in spec.seg_vars else REACH] < 2))
        for name in names:
            spec.mean[name] = mean
            spec.std[name] = 1.0 if flat or not finite.size else std

    pooled = scaling == "pooled" and SEG in scales and REACH in scales
    common = (list(zip(spec.seg_vars[:spec.n_common], spec.reach_vars[:spec.n_common]))
              if pooled else [])
    apart = [(a, b) for a, b in common if not same_units(spec.units[a], spec.units[b])]
    if apart:
        # Pooled values of two units would mean nothing; each keeps its own scaler.
        warn_at_user(XmsglWarning(
            "input_scaling='pooled': " + ", ".join(
                f"{a!r} ({spec.units[a]}) and {b!r} ({spec.units[b]})" for a, b in apart)
            + " feed the shared cell in different units, so each is standardized by its own "
            "values; convert them to one unit to pool them"))
        common = [pair for pair in common if pair not in apart]
    for seg_name, reach_name in common:
        store((seg_name, reach_name), np.concatenate(
            [_training_values(ds, seg_name, train_mask),
             _training_values(ds, reach_name, train_mask)]))
    done = {n for pair in common for n in pair}
    for name in spec.seg_vars + spec.reach_vars:
        if name not in done:
            store((name,), _training_values(ds, name, train_mask))
    if constant:
        # Standardized, such an input is 0 on every training day: its weights keep
        # their random start, and any other value at downscale moves the predictions
        # through them (coverage's distances, in units of its spread, cannot tell).
        warn_at_user(XmsglWarning(
            f"inputs {constant} take one value over the training days and nodes, so the model "
            "cannot learn from them, and another value at downscale would move its "
            "predictions through untrained weights; drop them (ds.drop_vars(...)) or mark "
            "them attrs['xmsgl_role'] = 'ignore', unless the same value holds wherever the "
            "model is applied"))


def target_array(ds: xr.Dataset, name: str, dim: str, time_index: slice | None = None) -> np.ndarray:
    """A target as float32 (T, N) in degC, NaN where unobserved.

    Its values are judged as they are read (a lazy dataset's were not by
    ``validate``): outside -10..60 degC they raise :class:`UnitsError`.
    """
    sel = ds[name] if time_index is None else ds[name].isel({TIME: time_index})
    values = np.asarray(sel.transpose(TIME, dim).values, dtype=np.float32)
    check_loaded_temperature(name, values, ds[name].attrs, water=True)
    return values


# --------------------------------------------------------------------------- devices


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's thread count set to ``threads`` inside the block and restored after it
    (it is process-wide); ``None`` leaves it as it is."""
    before = torch.get_num_threads()
    if threads is not None and int(threads) != before:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


_F = TypeVar("_F", bound=Callable[..., Any])


def uses_thread_option(func: _F) -> _F:
    """Run ``func`` with the ``torch_threads`` option of :func:`xmsgl.set_options`
    (torch's own setting when it is None), restoring torch's count afterwards."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from xmsgl.options import get_option

        with torch_threads(get_option("torch_threads")):
            return func(*args, **kwargs)

    return cast(_F, wrapper)


def trains(func: _F) -> _F:
    """Run ``func`` with autograd on and in float32, inside a caller's ``torch.no_grad()``,
    ``torch.inference_mode()`` or ``torch.autocast`` too (a fit there failed in torch's
    backward with "element 0 of tensors does not require grad", or in the sparse product
    in bfloat16); the caller's modes are as they were afterwards."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # A caller's torch.set_default_device: torch 2.3's Adam made its step counter
        # there ('meta' failed in the first step). The CPU, torch's own default, only
        # where it is not the default already: the context intercepts every torch call.
        cpu = contextlib.nullcontext() if torch.empty(()).device.type == "cpu" else torch.device("cpu")
        with torch.inference_mode(False), torch.enable_grad(), without_autocast(), cpu:
            return func(*args, **kwargs)

    return cast(_F, wrapper)


def full_precision(func: _F) -> _F:
    """Run ``func`` (a prediction) in float32 inside a caller's ``torch.autocast`` too
    (the GRU's prediction failed in bfloat16); the caller's mode is as it was afterwards."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with without_autocast():
            return func(*args, **kwargs)

    return cast(_F, wrapper)


@contextmanager
def without_autocast() -> Iterator[None]:
    """torch's autocast off in this thread, on the CPU and the accelerators xmsgl runs on."""
    with contextlib.ExitStack() as modes:
        modes.enter_context(torch.autocast("cpu", enabled=False))
        if torch.cuda.is_available():
            modes.enter_context(torch.autocast("cuda", enabled=False))
        if torch.backends.mps.is_available():
            try:
                mps = torch.autocast("mps", enabled=False)
            except RuntimeError:  # a torch without autocast on MPS (before 2.5)
                pass
            else:
                modes.enter_context(mps)
        yield


#: One seeded block at a time in the process (see :func:`torch_seeded`).
_RNG_LOCK = threading.Lock()


@contextmanager
def torch_seeded(seed: int | None = None) -> Iterator[None]:
    """Draws from torch's global CPU generator inside the block start from ``seed``
    (None: from wherever the generator stands), and the generator is as it was after it.

    The blocks of all threads take turns: two fits building their networks at once
    drew each other's numbers (a fit of seed 7 beside another gave another model in 2-4
    of 10 runs), and a fork held over a whole call restored, when calls overlapped, a
    state another call had seeded. Building a network is the only use of torch's
    random numbers in xmsgl (training draws none), so it is done in such a block.
    """
    # On the CPU whatever the caller's default device (torch.set_default_device("cuda")
    # would draw the weights from a GPU's generator, which the seed does not set).
    with _RNG_LOCK, torch.random.fork_rng(devices=[]), torch.device("cpu"):
        if seed is not None:
            torch.default_generator.manual_seed(int(seed))
        yield


def check_device_name(device: object) -> torch.device | None:
    """The device ``device`` names (None for ``"auto"``), or a :class:`ParameterError`
    for a name that is no device xmsgl runs on; whether it is available here is not
    judged (a lazy run resolves it where its blocks are computed)."""
    if isinstance(device, torch.device):
        dev = device
    elif not isinstance(device, str):
        raise ParameterError(f"device={device!r} is not a device name; use 'auto', 'cpu', 'cuda', "
                             "'cuda:1' or 'mps' (or a torch.device)")
    elif device == "auto":
        return None
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as err:
            raise ChoiceError(f"device={device!r} is not a torch device; use 'auto', 'cpu' or 'cuda'") from err
    if dev.type not in ("cpu", "cuda", "mps"):
        # "meta" holds no values, and xla, xpu and the rest are untested: moving a model
        # there fails deep inside torch, or leaves its weights unusable.
        raise ChoiceError(f"device={device!r}: xmsgl runs on 'cpu', 'cuda' (or 'cuda:N') and 'mps', "
                             f"not on {dev.type!r}; use 'auto' to pick the best of those")
    return dev


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks cuda, then mps, then cpu; anything else is passed to torch.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    dev = check_device_name(device)
    if dev is None:  # "auto"
        from xmsgl.options import get_option

        opt = get_option("device")
        if opt != "auto":
            return resolve_device(opt)
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            problem = _mps_sparse_problem()
            if problem is None:
                return torch.device("mps")
            _warn_mps_once(problem)
        return torch.device("cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"device={device!r} was asked for but torch sees no CUDA device; use 'auto'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ParameterError(f"device={device!r} was asked for but torch sees {torch.cuda.device_count()} "
                         "CUDA device(s), numbered from 0")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ParameterError(f"device={device!r} was asked for but this torch build or machine has no "
                             "MPS (Apple GPU) support; use 'auto' or 'cpu'")
        problem = _mps_sparse_problem()
        if problem is not None:
            raise ParameterError(f"device={device!r}: the graph products use torch's sparse CSR tensors, "
                             f"which this torch build does not run on MPS ({problem}); use 'cpu' "
                             "(or 'auto', which then picks the CPU)")
    return dev


@functools.lru_cache(maxsize=4)
def _mps_sparse_problem(device: str = "mps") -> str | None:
    """Why the graph products cannot run on Apple's MPS, or None where they can.

    The recurrence diffuses through torch sparse CSR products (``addmm`` forward, the
    transpose's product backward), which torch builds up to at least 2.13 do not run
    on MPS: a fit there would fail at its first step. Tried once per process on a
    2 x 2 graph, checking the values too (``device``: another device to try it on).
    """
    from xmsgl.nn.rgrn import _transpose, quiet_sparse_notes

    try:
        with quiet_sparse_notes():
            dev = torch.device(device)
            adj = torch.sparse_csr_tensor(torch.tensor([0, 1, 3], dtype=torch.int32, device="cpu"),
                                          torch.tensor([0, 0, 1], dtype=torch.int32, device="cpu"),
                                          torch.tensor([1.0, 2.0, 3.0], dtype=torch.float32, device="cpu"),
                                          size=(2, 2), device="cpu").to(dev)
            x = torch.tensor([[1.0], [10.0]], dtype=torch.float32, device=dev)
            forward = torch.addmm(x, adj, x).cpu()
            backward = torch.sparse.mm(_transpose(adj), x).cpu()
    except Exception as err:  # any refusal of the backend means the same here
        return f"{type(err).__name__}: {' '.join(str(err).split())[:160]}"
    if forward.flatten().tolist() != [2.0, 42.0] or backward.flatten().tolist() != [21.0, 30.0]:
        return "its sparse product gave wrong values on a 2 x 2 test graph"
    return None


_MPS_WARNED: list[bool] = []


def _warn_mps_once(problem: str) -> None:
    """Say once per process that ``device='auto'`` passed over MPS, and why."""
    if _MPS_WARNED:
        return
    _MPS_WARNED.append(True)
    warn_at_user(f"device='auto': MPS (Apple GPU) is available, but the graph products use torch's "
                 f"sparse CSR tensors, which this torch build does not run on MPS ({problem}); "
                 "running on the CPU", XmsglWarning)


# --------------------------------------------------------------------------- periods

def period_ranges(time: pd.DatetimeIndex, mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs ``[i0, i1)`` of ``mask`` that do not cross a gap in ``time``."""
    if not mask.any():
        return []
    days = np.asarray(time.values).astype("datetime64[D]").astype(np.int64)
    breaks = np.ones(len(time) + 1, dtype=bool)
    breaks[1:-1] = (mask[1:] != mask[:-1]) | (np.diff(days) != 1)
    edges = np.flatnonzero(breaks)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if mask[a]]


def make_windows(ranges: Sequence[tuple[int, int]], length: int, stride: int) -> list[tuple[int, int]]:
    """Windows ``(start, length)`` inside each range; none straddles two ranges.

    Windows of ``length`` days start every ``stride`` days; a last window is aligned
    to the end of the range so that no day is left out, and a range shorter than
    ``length`` is one window of its own length.

    Examples
    --------
    >>> make_windows([(0, 10), (20, 24)], length=4, stride=3)
    [(0, 4), (3, 4), (6, 4), (20, 4)]
    """
    out: list[tuple[int, int]] = []
    for i0, i1 in ranges:
        n = i1 - i0
        if n <= length:
            out.append((i0, n))
            continue
        starts = list(range(i0, i1 - length + 1, stride))
        if starts[-1] + length < i1:
            starts.append(i1 - length)
        out.extend((s, length) for s in starts)
    return out


# ---------------------------------------------------------------------------- losses


def masked_rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor | None:
    """RMSE over the observed (finite) entries of ``target``; None when there are none.

    Examples
    --------
    >>> import torch
    >>> y = torch.tensor([1.0, float("nan"), 3.0])
    >>> round(masked_rmse(torch.tensor([2.0, 0.0, 3.0]), y).item() ** 2, 6)
    0.5
    """
    mask = torch.isfinite(target)
    n = int(mask.sum())
    if n == 0:
        return None
    diff = torch.where(mask, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    # The small constant keeps the gradient of the square root finite at a perfect fit.
    return torch.sqrt(diff.pow(2).sum() / n + 1e-8)


#: Up to this many tasks the min-norm point is solved exactly, face by face of the
#: simplex (2**k - 1 small linear systems); beyond, by Frank-Wolfe.
EXACT_MIN_NORM_TASKS = 8


def _min_norm_exact(gram: np.ndarray) -> np.ndarray:
    """The min-norm point by its faces: on each face (a subset ``S`` of the vectors)
    the stationary point of ``a' G a`` with ``sum(a) = 1`` solves ``G_S a = lambda 1``;
    of the solutions with every weight >= 0, the one of least norm is the optimum
    (the optimum lies inside one face, where it is that face's stationary point)."""
    k = gram.shape[0]
    found: list[tuple[float, np.ndarray]] = []
    for mask in range(1, 2 ** k):
        idx = [i for i in range(k) if mask >> i & 1]
        g = gram[np.ix_(idx, idx)]
        m = len(idx)
        # [G 1; 1' 0] [a; -lambda] = [0; 1]; least squares where G_S is singular
        # (parallel vectors), which still gives a stationary point if there is one.
        kkt = np.zeros((m + 1, m + 1))
        kkt[:m, :m] = g
        kkt[:m, m] = 1.0
        kkt[m, :m] = 1.0
        rhs = np.zeros(m + 1)
        rhs[m] = 1.0
        sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:m]
        if sol.min() < -1e-12 or abs(sol.sum() - 1.0) > 1e-9:
            continue
        a = np.zeros(k)
        a[idx] = np.clip(sol, 0.0, None)
        a /= a.sum()
        found.append((float(a @ gram @ a), a))
    if not found:
        return np.zeros(k)
    best_val = min(val for val, _ in found)
    # Parallel vectors tie on a whole edge or face (identical ones gave all the weight
    # to the first): the points of least norm make a convex set, so the mean of those
    # found is one of them, and spreads the weight over the tied vectors.
    # (Relative to the Gram matrix's scale: the least norm can be 0, where the hull
    # holds the origin.)
    diag = np.abs(np.diag(gram))
    tol = 1e-12 * max(abs(best_val), float(diag[diag > 0].min()) if (diag > 0).any() else 0.0, 1e-300)
    ties = [a for val, a in found if val <= best_val + tol]
    return np.mean(ties, axis=0) if len(ties) > 1 else ties[0]


def min_norm_weights(gram: np.ndarray, iters: int = 250, tol: float = 1e-9) -> np.ndarray:
    """Weights of the min-norm point in the convex hull of vectors, from their Gram matrix.

    Exact for up to :data:`EXACT_MIN_NORM_TASKS` vectors (every face of the simplex
    solved in closed form, the feasible solution of least norm kept), including
    optima on an edge or a vertex; beyond, Frank-Wolfe with exact line search
    (``iters``, ``tol``).

    Examples
    --------
    >>> import numpy as np
    >>> min_norm_weights(np.array([[1.0, 0.0], [0.0, 1.0]])).round(3).tolist()
    [0.5, 0.5]
    >>> min_norm_weights(np.array([[1.0, 1.0], [1.0, 4.0]])).round(3).tolist()
    [1.0, 0.0]
    >>> g = np.array([[1, .892, .926], [.892, 1, .968], [.926, .968, 1]])
    >>> min_norm_weights(g).round(3).tolist()  # on an edge of the simplex
    [0.5, 0.5, 0.0]
    >>> min_norm_weights(np.ones((3, 3))).round(3).tolist()  # identical vectors: a tie
    [0.333, 0.333, 0.333]
    """
    gram = np.asarray(gram, dtype=np.float64)
    k = gram.shape[0]
    if k == 1:
        return np.ones(1)
    if k <= EXACT_MIN_NORM_TASKS:
        return _min_norm_exact(gram)
    alpha = np.full(k, 1.0 / k)
    for _ in range(iters):
        grad = gram @ alpha
        t = int(np.argmin(grad))
        vv = float(alpha @ grad)
        vt = float(grad[t])
        tt = float(gram[t, t])
        denom = vv - 2 * vt + tt
        if denom <= 1e-16:
            break
        gamma = min(max((vv - vt) / denom, 0.0), 1.0)
        if gamma < tol:
            break
        alpha = (1 - gamma) * alpha
        alpha[t] += gamma
    return alpha


def mgda_weights(norms: np.ndarray, gram: np.ndarray) -> np.ndarray:
    """MGDA-UB's task weights from the norms of the tasks' gradients on the shared
    parameters and the Gram matrix of the normalized gradients.

    A task whose gradient there is zero (a head whose last layer is still zero, say)
    adds nothing to the shared update whatever its weight; left in, it would be the
    min-norm point on its own and take all the weight. Such tasks get ``1/k`` each
    (their heads still train), the others share the rest by their min-norm point;
    with none left, the weights are equal.

    Examples
    --------
    >>> import numpy as np
    >>> mgda_weights(np.array([1.0, 2.0, 0.0]), np.diag([1.0, 1.0, 0.0])).round(3).tolist()
    [0.333, 0.333, 0.333]
    """
    k = len(norms)
    top = float(np.max(norms)) if k else 0.0
    live = np.asarray(norms) > 1e-10 * top if top > 0 else np.zeros(k, dtype=bool)
    if not live.any():
        return np.full(k, 1.0 / k)
    alpha = np.full(k, 1.0 / k)
    idx = np.flatnonzero(live)
    alpha[idx] = min_norm_weights(gram[np.ix_(idx, idx)]) * (idx.size / k)
    return alpha


# ----------------------------------------------------------------------------- data


@dataclass
class ModelData:
    """Standardized arrays and graphs of one dataset, ready for the network."""

    x_seg: np.ndarray | InputDays  # (T, S, F_seg)
    x_reach: np.ndarray | InputDays  # (T, R, F_reach)
    graphs: dict[str, SparseGraph]  # sparse "coarse", "fine", "cross" on the device
    cross_rows: Sequence[tuple[int, int, SparseGraph]]  # row blocks of "cross" for inference
    reach_seg_idx: np.ndarray  # (R,) position of each reach's segment
    cross_csr: Any = None  # scipy (R, S) cross matrix, to take rows of per step
    #: Positions of the days that do not follow the day before (a gap in the time
    #: axis ends just before each); inference restarts the recurrence there.
    breaks: np.ndarray | None = None
    #: The date of every day in days since 1970-01-01 (:func:`epoch_days`): inference
    #: lays the cross-scale head's attention spans on the calendar by it, so that a
    #: day's prediction does not depend on where its window starts, nor on a gap
    #: before it. None (days that are not dates): positions stand for the days.
    days: np.ndarray | None = None

    def epoch_day_at(self, pos: int) -> int:
        """Days since 1970-01-01 of the day at position ``pos``."""
        return int(pos) if self.days is None else int(self.days[pos])


def torch_graphs(graphs: Any, device: torch.device) -> dict[str, SparseGraph]:
    """The coarse, fine and cross matrices of a :class:`~xmsgl.graph.RiverGraphs`.

    Each keeps its transpose too, so backward products need no per-day transposition.
    """
    return {k: SparseGraph(graphs.matrix(k), device) for k in ("coarse", "fine", "cross")}


class CrossRowBlocks(Sequence[tuple[int, int, SparseGraph]]):
    """Row blocks ``(r0, r1, SparseGraph)`` of the cross matrix, to run the fine heads
    a block of reaches at a time, built on first use: the default fine head's
    inference carries whole days instead and never reads them (building them took
    1.2 s of a 15 s call on 10^5 reaches)."""

    def __init__(self, graphs: Any, device: torch.device, rows: int) -> None:
        self._matrix = graphs.cross
        self._device = device
        self._rows = max(1, int(rows))
        self._blocks: list[tuple[int, int, SparseGraph]] | None = None

    def _built(self) -> list[tuple[int, int, SparseGraph]]:
        if self._blocks is None:
            m = self._matrix.tocsr()
            self._blocks = [(r0, min(r0 + self._rows, m.shape[0]),
                             SparseGraph(m[r0:r0 + self._rows], self._device))
                            for r0 in range(0, m.shape[0], self._rows)]
        return self._blocks

    def __len__(self) -> int:
        n = self._matrix.shape[0]
        return -(-n // self._rows)

    def __getitem__(self, i: Any) -> Any:
        return self._built()[i]

    def __iter__(self) -> Iterator[tuple[int, int, SparseGraph]]:
        return iter(self._built())


def cross_row_blocks(graphs: Any, device: torch.device, rows: int) -> CrossRowBlocks:
    """Row blocks of the cross matrix (:class:`CrossRowBlocks`), built on first use."""
    return CrossRowBlocks(graphs, device, rows)


def _batch(arr: np.ndarray | InputDays, starts: Sequence[int], length: int, device: torch.device) -> torch.Tensor:
    """Stack windows of ``arr`` (T, N, ...) side by side: (length, N, B, ...)."""
    if len(starts) == 1:
        # One window: a view of the array, no copy (torch shares numpy's memory).
        s = int(starts[0])
        return torch.from_numpy(arr[s: s + length]).unsqueeze(2).to(device)
    out = np.stack([arr[s: s + length] for s in starts], axis=2)
    return torch.from_numpy(out).to(device)


def default_batch_size(n_nodes: int, length: int, hidden: int, budget_gb: float = 3.0) -> int:
    """Windows per batch so that saved activations stay near ``budget_gb``."""
    per_window = n_nodes * length * hidden * 4 * _ACTIVATIONS_PER_NODE_DAY
    return int(max(1, min(16, budget_gb * 1e9 // max(per_window, 1))))


# ------------------------------------------------------------------------------ loop

ValFn = Callable[[Any], float | None]


#: The tasks that ``weighting="fixed"`` gives weights to.
WEIGHTED_TASKS = ("coarse", "cross", "fine")


def check_weighting(weighting: object, task_weights: object) -> None:
    """Refuse an unknown ``weighting`` and ``task_weights`` that cannot be meant.

    ``weighting="fixed"`` needs a weight (a finite number >= 0, not all zero) for
    each of the tasks ``"coarse"``, ``"cross"`` and ``"fine"``, and nothing else:
    a misspelled or forgotten task would otherwise train with weight 0. Other
    weightings take no ``task_weights``.

    Examples
    --------
    >>> check_weighting("fixed", {"coarse": 0.1, "cross": 0.1, "fine": 0.8})
    >>> check_weighting("fixed", {"Coarse": 1, "cross": 1, "fine": 1})
    Traceback (most recent call last):
    ...
    xmsgl.exceptions.ParameterError: task_weights has unknown task(s) ['Coarse']; the tasks are ['coarse', 'cross', 'fine'] (missing: ['coarse'])
    """
    if weighting not in ("equal", "fixed", "mgda"):
        raise ChoiceError(f"weighting={weighting!r} is not known; use 'equal', 'fixed' or 'mgda'")
    example = "{'coarse': 1, 'cross': 1, 'fine': 2}"
    if weighting != "fixed":
        if task_weights is not None:
            raise ParameterError(
                f"task_weights are used with weighting='fixed' only (got weighting={weighting!r}); "
                f"pass weighting='fixed' or drop task_weights"
            )
        return
    if not isinstance(task_weights, dict) or not task_weights:
        raise ParameterError(f"weighting='fixed' needs task_weights, a dict such as {example} "
                             f"(got {task_weights!r})")
    unknown = sorted(str(k) for k in task_weights if k not in WEIGHTED_TASKS)
    missing = [t for t in WEIGHTED_TASKS if t not in task_weights]
    if unknown:
        raise ParameterError(
            f"task_weights has unknown task(s) {unknown}; the tasks are {list(WEIGHTED_TASKS)}"
            + (f" (missing: {missing})" if missing else "")
        )
    if missing:
        raise ParameterError(f"task_weights has no weight for {missing}; give one for each of "
                             f"{list(WEIGHTED_TASKS)} (0 turns a task off), e.g. {example}")
    bad = {k: v for k, v in task_weights.items()
           if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating))
           or not math.isfinite(float(v)) or float(v) < 0}
    if bad:
        raise ParameterError(f"task_weights {bad} must be finite numbers >= 0")
    if not any(float(v) > 0 for v in task_weights.values()):
        raise ParameterError(f"task_weights are all 0, so nothing would be trained; e.g. {example}")


def check_clip_grad_norm(clip_grad_norm: Any) -> None:
    """Raise :class:`ParameterError` unless ``clip_grad_norm`` is None or a positive number."""
    if clip_grad_norm is not None and (
            isinstance(clip_grad_norm, (bool, np.bool_)) or not isinstance(clip_grad_norm, numbers.Real)
            or not math.isfinite(clip_grad_norm) or clip_grad_norm <= 0):
        raise ParameterError(
            f"clip_grad_norm={clip_grad_norm!r} must be a positive number (for example 1.0) or None "
            "for no clipping"
        )


def check_lr(lr: Any) -> float:
    """``lr`` as a float, or :class:`ParameterError` unless it is a positive finite
    number (a bool is refused)."""
    if (isinstance(lr, (bool, np.bool_)) or not isinstance(lr, numbers.Real)
            or not math.isfinite(lr) or lr <= 0):
        raise ParameterError(f"lr={lr!r} must be a positive finite learning rate, for example 5e-3")
    return float(lr)


def resolve_stride(window: int, stride: int | None) -> int:
    """The step between training windows: ``min(182, window)`` by default.

    ``window`` must have been checked; a stride longer than it would leave the days
    between windows untrained, so it is refused (:class:`ParameterError`).
    """
    stride = min(182, int(window)) if stride is None else stride
    check_count("stride", stride)
    if int(stride) > int(window):
        raise ParameterError(f"stride={stride} is longer than window={window}: the days between "
                             f"windows would never be trained on; give stride <= window (the "
                             f"default is min(182, window))")
    return int(stride)


def check_ema_decay(ema_decay: Any) -> None:
    """Raise :class:`ParameterError` unless ``ema_decay`` is None or a number in (0, 1)."""
    if ema_decay is None:
        return
    if (isinstance(ema_decay, (bool, np.bool_)) or not isinstance(ema_decay, numbers.Real)
            or not math.isfinite(ema_decay) or not 0 < float(ema_decay) < 1):
        raise ParameterError(
            f"ema_decay={ema_decay!r} must be a number between 0 and 1, both excluded (for "
            "example 0.95: each step's weights count for 5% of the average), or None for no "
            "average"
        )


class WeightAverage:
    """An exponential moving average of a module's weights (its floating-point
    state; other entries, such as counters, follow the module's last value).

    The average is of the weights after each step only: after ``k`` steps the
    weights of step ``j`` count for ``d**(k-j) * (1 - d) / (1 - d**k)``, the
    weights the module started with for nothing (the correction Adam makes to its
    moments). Without it they kept ``d**k`` of the average: where one step takes a
    whole epoch (a small basin, several windows a step), most of it after a few
    epochs.
    """

    def __init__(self, net: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.steps = 0
        self.state = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        """Fold the module's current weights into the average."""
        self.steps += 1
        # (1 - d) / (1 - d**k): 1 at the first step, which replaces the start.
        rate = (1.0 - self.decay) / (1.0 - self.decay ** self.steps)
        for k, v in net.state_dict().items():
            avg = self.state[k]
            if v.is_floating_point():
                avg.lerp_(v.detach(), rate)
            else:
                avg.copy_(v)

    def swap_in(self, net: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Load the average into ``net``; returns a copy of the weights it had."""
        live = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.load_state_dict(self.state)
        return live


def check_weight_decay(weight_decay: Any, lr: float | None = None) -> None:
    """Raise :class:`ParameterError` unless ``weight_decay`` is a finite number >= 0
    and, given ``lr``, ``lr * weight_decay`` < 1 (each step multiplies the weight
    matrices by ``1 - lr * weight_decay``: at 1 or more it zeroes or flips them)."""
    if (isinstance(weight_decay, (bool, np.bool_)) or not isinstance(weight_decay, numbers.Real)
            or not math.isfinite(weight_decay) or float(weight_decay) < 0):
        raise ParameterError(
            f"weight_decay={weight_decay!r} must be a finite number >= 0 (0: none; for example "
            "1e-2 shrinks each weight matrix by lr * 1e-2 of itself every step)"
        )
    if lr is not None and float(lr) * float(weight_decay) >= 1:
        raise ParameterError(
            f"weight_decay={weight_decay!r} with lr={lr!r} shrinks every weight matrix by "
            f"lr * weight_decay = {float(lr) * float(weight_decay):g} of itself each step, which "
            f"zeroes or flips it; give weight_decay below {1 / float(lr):g} (typical values are "
            "1e-4 to 0.1)"
        )


def make_optimizer(net: torch.nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam at ``lr``; with ``weight_decay`` > 0, AdamW (decoupled weight decay,
    Loshchilov and Hutter) on the weight matrices and Adam on the biases, gains and
    other one-dimensional parameters, which are not shrunk."""
    if not weight_decay:
        return torch.optim.Adam(net.parameters(), lr=lr)
    params = [p for p in net.parameters() if p.requires_grad]
    return torch.optim.AdamW(
        [{"params": [p for p in params if p.ndim >= 2], "weight_decay": float(weight_decay)},
         {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}], lr=lr)


#: Learning-rate schedules understood by :func:`train_tasks` and ``fit``.
LR_SCHEDULES = ("constant", "cosine")


def check_lr_schedule(lr_schedule: Any) -> None:
    """Raise :class:`ParameterError` unless ``lr_schedule`` is one of :data:`LR_SCHEDULES`."""
    if not isinstance(lr_schedule, str) or lr_schedule not in LR_SCHEDULES:
        raise ChoiceError(f"lr_schedule={lr_schedule!r} is not one of {list(LR_SCHEDULES)}")


def lr_factor(lr_schedule: str, progress: float) -> float:
    """The factor of the learning rate at ``progress`` (0 at a stage's first step, up
    to 1 at its end) under ``lr_schedule``.

    Examples
    --------
    >>> lr_factor("constant", 0.7)
    1.0
    >>> [round(lr_factor("cosine", p), 3) for p in (0.0, 0.5, 0.9)]
    [1.0, 0.5, 0.024]
    """
    if lr_schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def score_starting_weights(net: Any, val: ValFn | None, history: dict[str, Any]) -> float:
    """Score the weights a stage starts from (``score_start``): records ``"val_start"``
    in ``history`` and, when the score is finite, ``"best_epoch"`` 0; returns the score
    for the epochs to beat (infinity when there is none)."""
    if val is None:
        return math.inf
    start = val(net)
    history["val_start"] = start
    if start is None or not math.isfinite(start):
        return math.inf
    history["best_epoch"] = 0
    return float(start)


def nothing_trained(stage: str, tasks: Sequence[str], weighting: str,
                    task_weights: dict[str, float] | None) -> TrainingError:
    """The error of a stage whose every window was skipped: no step was taken (its
    weights would be the untrained ones, not a model that diverged)."""
    weighed = (f" weighed above 0 (task_weights={task_weights})" if weighting == "fixed" and task_weights
               else "")
    return TrainingError(
        f"no training window of stage {stage!r} holds an observation of a task{weighed} (tasks "
        f"{list(tasks)}), so nothing was trained; give observations of these tasks in the "
        "training period" + (", or weights above 0 to the tasks that have them" if weighed else "")
    )


def epoch_loss_criterion(history: dict[str, Any], weighting: str) -> float | None:
    """What ranks the last epoch of ``history`` without a validation score: its
    training loss, or with ``weighting="mgda"`` (whose task weights change from step
    to step, so that two epochs' weighted losses are sums of different things) its
    task losses summed with equal weights (``"loss_equal"``)."""
    key = "loss_equal" if weighting == "mgda" and history.get("loss_equal") else "loss"
    return history[key][-1] if history[key] else None


def epoch_bar(epochs: int, desc: str | None, progress: bool) -> Any:
    """The progress bar over a stage's epochs (tqdm.auto; silent unless ``progress``)."""
    from tqdm.auto import tqdm

    return tqdm(range(int(epochs)), desc=desc, disable=not progress, leave=False, unit="epoch")


def show_epoch(bar: Any, history: dict[str, Any], score: float | None) -> None:
    """The epoch's training loss and validation score on its :func:`epoch_bar`."""
    bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", val="-" if score is None else f"{score:.3f}")


def train_tasks(
    net: Any,
    data: ModelData,
    targets: dict[str, np.ndarray],
    windows: Sequence[tuple[int, int]],
    *,
    val: ValFn | None,
    epochs: int,
    lr: float = 5e-3,
    weighting: str = "equal",
    task_weights: dict[str, float] | None = None,
    batch_size: int | None = None,
    device: torch.device,
    rng: np.random.Generator,
    progress: bool = True,
    desc: str = "fit",
    max_head_reaches: int | None = 256,
    clip_grad_norm: float | None = None,
    stage: str | None = None,
    time: pd.DatetimeIndex | None = None,
    ema_decay: float | None = None,
    lr_schedule: str = "constant",
    score_start: bool = False,
    weight_decay: float = 0.0,
) -> dict[str, Any]:
    """Train ``net`` on ``targets`` (task name -> standardized (T, N) array).

    Each step draws a batch of windows of equal length, computes the masked RMSE
    of every task with at least one observation in the batch (a task without
    observations is left out of this step; the others still train), combines the
    losses by ``weighting`` (``"equal"``, ``"fixed"`` with ``task_weights``, or
    ``"mgda"``: MGDA-UB weights from the min-norm point of the L2-normalized task
    gradients on the shared parameters), and takes an Adam step.

    The fine heads act on each reach alone, so they run only on the reaches with an
    observation in the batch (the exact loss, at a fraction of the cost with sparse
    data); where more than ``max_head_reaches`` reaches are observed (dense
    pseudo-labels, or real observations at many reaches), a random subset of that
    many is drawn per step and the step's loss is taken on those alone. A batch without
    any fine observation skips the fine graph and trains the coarse task alone. After every epoch
    ``val(net)`` gives the validation score (lower is better); the weights of the
    best epoch are restored at the end.

    With ``score_start`` (for a stage that fine-tunes weights whose scored head a stage
    before trained: ``progressive`` after its pseudo-labels, ASYNC-MSGL after a stage A
    with ``"remap-fine"``), ``val(net)`` also scores the weights the stage starts from,
    before its first epoch (``"val_start"`` in the history), and they compete with every
    epoch's: when no epoch scores lower, they are the weights restored and
    ``"best_epoch"`` is 0. Fine-tuning then never leaves a model that validates worse
    than the one it started from.

    With ``clip_grad_norm``, the gradients of all parameters are rescaled before
    each step so that their joint L2 norm is at most that value
    (:func:`torch.nn.utils.clip_grad_norm_`). A task loss that is NaN or infinite
    stops training with a :class:`~xmsgl.exceptions.TrainingError` naming the
    epoch, ``stage``, task and windows (as dates of ``time`` when given, else as
    day positions) before any gradient is taken from it.

    With ``ema_decay``, an exponential moving average of the weights is kept, updated
    after every step (``avg = ema_decay * avg + (1 - ema_decay) * weights``, of the
    weights after each step, corrected as Adam corrects its moments so that the
    weights the stage starts with count for nothing; see :class:`WeightAverage`);
    the score of every epoch is that of the averaged weights, and those of the best
    epoch are the ones restored. Training itself goes
    on from the weights of the last step. (With ``val=None`` the criterion is still
    the training loss of the weights being trained, as below.)

    With ``val=None`` the epoch kept is the one with the lowest training loss; with
    ``weighting="mgda"``, whose weights change from step to step, the lowest mean of
    the steps' task losses summed with equal weights (``"loss_equal"``, see
    :func:`epoch_loss_criterion`).

    ``lr_schedule`` sets the learning rate of every step (see :func:`lr_factor`):
    ``"constant"`` keeps ``lr``; ``"cosine"`` lowers it from ``lr`` towards 0 along
    half a cosine over the stage's planned steps.

    ``weight_decay`` > 0 steps with AdamW instead of Adam (see :func:`make_optimizer`):
    every weight matrix shrinks by ``lr * weight_decay`` of itself each step, apart from
    the gradient; biases and other one-dimensional parameters do not.

    Returns
    -------
    dict
        ``"loss"`` and ``"val"`` per epoch (with ``weighting="mgda"`` also
        ``"loss_equal"``), ``"best_epoch"`` (counted from 1; 0 for
        the starting weights with ``score_start``), ``"task_weights"`` (mean weights
        per task in the last epoch), and ``"val_start"`` with ``score_start``.
    """
    check_weighting(weighting, task_weights)
    if not windows:
        raise DataError("no training windows: the training period is empty")
    check_clip_grad_norm(clip_grad_norm)
    check_ema_decay(ema_decay)
    check_lr_schedule(lr_schedule)
    check_weight_decay(weight_decay, lr)
    stage_name = stage if stage is not None else desc

    def window_text(starts: Sequence[int], n: int) -> str:
        spans = []
        for s0 in sorted(starts):
            if time is not None and 0 <= s0 and s0 + n <= len(time):
                spans.append(f"{time[s0].date()} to {time[s0 + n - 1].date()}")
            else:
                spans.append(f"days {s0} to {s0 + n - 1}")
        shown = ", ".join(spans[:5])
        more = f" and {len(spans) - 5} more" if len(spans) > 5 else ""
        return f"window{'s' if len(spans) > 1 else ''} {shown}{more}"

    tasks = tuple(targets)
    if weighting == "fixed" and len(tasks) > 1:
        assert task_weights is not None
        missing = [t for t in tasks if t not in task_weights]
        if missing:
            raise ParameterError(
                f"task_weights has no weight for task(s) {missing} of stage {stage_name!r}; "
                f"give one for each of {list(tasks)}"
            )
        if all(float(task_weights[t]) == 0 for t in tasks):
            # ASYNC-MSGL's stage A trains coarse and cross only: weights 0 for both
            # would run its epochs without changing a weight.
            raise ParameterError(
                f"task_weights give weight 0 to every task of stage {stage_name!r} "
                f"({list(tasks)}), which would train nothing; give at least one of them a "
                "positive weight"
            )
    needs_seg = any(t in tasks for t in ("coarse", "cross", "fine"))
    needs_reach = any(t in tasks for t in ("fine", "fine_only"))
    if data.cross_csr is None:
        raise XmsglError("ModelData.cross_csr is needed for training (the scipy cross matrix)")
    n_nodes = (data.x_seg.shape[1] if needs_seg else 0) + (data.x_reach.shape[1] if needs_reach else 0)
    length = max(n for _, n in windows)
    bs = batch_size or default_batch_size(n_nodes, length, net.hidden)
    opt = make_optimizer(net, lr, float(weight_decay))
    shared = net.shared_parameters()
    shared_ids = {id(p) for p in shared}
    params = [p for p in net.parameters()]
    history: dict[str, Any] = {"loss": [], "val": [], "best_epoch": None, "task_weights": {}}
    best = math.inf
    best_state = copy.deepcopy(net.state_dict())
    average = WeightAverage(net, float(ema_decay)) if ema_decay is not None else None
    if score_start:
        best = score_starting_weights(net, val, history)

    bar = epoch_bar(epochs, desc, progress)
    for epoch in bar:
        net.train()
        order = rng.permutation(len(windows))
        by_len: dict[int, list[int]] = {}
        for i in order:
            by_len.setdefault(windows[i][1], []).append(windows[i][0])
        batches = [(n, starts[j: j + bs]) for n, starts in by_len.items() for j in range(0, len(starts), bs)]
        batches = [batches[i] for i in rng.permutation(len(batches))]
        losses = []
        equal_sums: list[float] = []  # MGDA-UB: each step's task losses, summed
        wsum = dict.fromkeys(tasks, 0.0)
        steps = 0  # steps taken (windows without any target are skipped)
        for j, (n, starts) in enumerate(batches):
            if lr_schedule != "constant":
                # Planned steps, skipped ones included: the rate depends on the
                # position in the stage alone.
                for group in opt.param_groups:
                    group["lr"] = lr * lr_factor(lr_schedule, (epoch + j / len(batches)) / epochs)
            ys = {t: _batch(targets[t], starts, n, device) for t in tasks}
            fine_tasks = [t for t in tasks if t != "coarse"]
            rows_np = np.zeros(0, dtype=np.int64)
            if fine_tasks:
                seen = np.zeros(data.x_reach.shape[1], dtype=bool)
                for t in fine_tasks:
                    seen |= np.asarray(torch.isfinite(ys[t]).any(dim=2).any(dim=0).cpu())
                rows_np = np.flatnonzero(seen)
                if max_head_reaches and rows_np.size > max_head_reaches:
                    rows_np = np.sort(rng.choice(rows_np, size=max_head_reaches, replace=False))
            step_tasks = tuple(t for t in tasks if t == "coarse" or rows_np.size)
            if not step_tasks:
                continue
            rows = torch.from_numpy(rows_np).to(device)
            # On an accelerator the transpose for backward is made from the host slice.
            cross = (SparseGraph(data.cross_csr[rows_np], device, keep_host=device.type != "cpu")
                     if rows_np.size else None)
            xs = _batch(data.x_seg, starts, n, device) if any(
                t in step_tasks for t in ("coarse", "cross", "fine")) else None
            xr_ = _batch(data.x_reach, starts, n, device) if any(
                t in step_tasks for t in ("fine", "fine_only")) else None
            out = net(xs, xr_, data.graphs, tasks=step_tasks, rows=rows, cross=cross,
                      day0=[data.epoch_day_at(s) for s in starts])
            task_loss = {}
            for t in step_tasks:
                y = ys[t] if t == "coarse" else ys[t].index_select(1, rows)
                loss = masked_rmse(out[t], y)
                if loss is not None:
                    task_loss[t] = loss
            if weighting == "fixed" and len(tasks) > 1:
                # A task weighed 0 adds nothing; a window whose tasks all weigh 0 is
                # skipped, as one without targets is (Adam would step on momentum alone).
                assert task_weights is not None
                task_loss = {t: v for t, v in task_loss.items() if float(task_weights[t]) > 0}
            if not task_loss:
                continue
            for t, loss in task_loss.items():
                if not bool(torch.isfinite(loss.detach())):
                    raise TrainingError(
                        f"the loss of task {t!r} became {float(loss.detach())} in epoch {epoch + 1} "
                        f"of stage {stage_name!r}, on the {window_text(starts, n)}; lower lr (now "
                        f"{lr}), set clip_grad_norm (e.g. 1.0), or check the inputs and targets of "
                        "those days for extreme values"
                    )
            opt.zero_grad(set_to_none=True)
            names = list(task_loss)
            if weighting == "mgda" and len(names) > 1:
                grads = [torch.autograd.grad(task_loss[t], params, retain_graph=i < len(names) - 1,
                                             allow_unused=True) for i, t in enumerate(names)]
                flat, norms = [], []
                for g in grads:
                    parts = [(gi if gi is not None else torch.zeros_like(p)).reshape(-1)
                             for gi, p in zip(g, params) if id(p) in shared_ids]
                    v = torch.cat(parts)
                    norm = v.norm()
                    norms.append(float(norm))
                    flat.append(v / (norm + 1e-12))
                mat = torch.stack(flat)
                # To the CPU first: MPS has no float64.
                alpha = mgda_weights(np.array(norms), (mat @ mat.t()).cpu().double().numpy())
                for p, *gs in zip(params, *grads):
                    acc = None
                    for a, g in zip(alpha, gs):
                        if g is not None:
                            acc = g * float(a) if acc is None else acc + g * float(a)
                    p.grad = acc
                weights = dict(zip(names, alpha.tolist()))
                total = sum(float(a) * float(task_loss[t].detach()) for a, t in zip(alpha, names))
            else:
                if weighting == "fixed" and len(tasks) > 1:
                    # Fixed weights are those of a multi-task stage; a stage with one
                    # task trains it with weight 1.
                    assert task_weights is not None
                    weights = {t: float(task_weights[t]) for t in names}
                else:
                    weights = dict.fromkeys(names, 1.0)
                loss_sum = sum(weights[t] * task_loss[t] for t in names)
                assert isinstance(loss_sum, torch.Tensor)
                loss_sum.backward()
                total = float(loss_sum.detach())
            if weighting == "mgda":
                # The weights change from step to step: without validation, epochs are
                # compared on the task losses summed with equal weights.
                equal_sums.append(float(sum(task_loss[t].detach() for t in names)))
            if not math.isfinite(total):
                raise TrainingError(
                    f"the training loss became {total} in epoch {epoch + 1} of stage {stage_name!r}, "
                    f"on the {window_text(starts, n)} (tasks {names}); lower lr (now {lr}), set "
                    "clip_grad_norm (e.g. 1.0), or check the inputs for extreme values"
                )
            if clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, float(clip_grad_norm))
            opt.step()
            if average is not None:
                average.update(net)
            losses.append(total)
            steps += 1
            for t, w in weights.items():
                wsum[t] += w
        if not steps:  # every epoch visits the same windows: none will take a step
            raise nothing_trained(stage_name, tasks, weighting, task_weights)
        live = average.swap_in(net) if average is not None else None
        score = val(net) if val is not None else None
        history["loss"].append(float(np.mean(losses)) if losses else float("nan"))
        if equal_sums:
            history.setdefault("loss_equal", []).append(float(np.mean(equal_sums)))
        history["val"].append(score)
        # The mean weight of each task over the steps taken this epoch.
        history["task_weights"] = {t: w / steps if steps else 0.0 for t, w in wsum.items()}
        crit = score if score is not None else epoch_loss_criterion(history, weighting)
        if crit is not None and math.isfinite(crit) and crit < best:
            best = crit
            history["best_epoch"] = epoch + 1
            best_state = copy.deepcopy(net.state_dict())
        if live is not None:
            net.load_state_dict(live)
        show_epoch(bar, history, score)
    if history["best_epoch"] is None:
        # Every epoch's criterion was NaN or infinite (a validation score that
        # overflowed, say): the weights restored would be the untrained ones.
        scored = any(v is not None for v in history["val"])
        what, values = ("validation score", history["val"]) if scored else ("training loss", history["loss"])
        raise TrainingError(
            f"no epoch of stage {stage_name!r} gave a finite {what} ({values}): the fit diverged; "
            f"lower lr (now {lr}), set clip_grad_norm (e.g. 1.0), or check the inputs for extreme "
            "values"
        )
    net.load_state_dict(best_state)
    return history


# ------------------------------------------------------------------------- inference


def epoch_days(time: Any) -> np.ndarray | None:
    """Every day of ``time`` in days since 1970-01-01 (None when it is not datetime64).

    Examples
    --------
    >>> import pandas as pd
    >>> epoch_days(pd.to_datetime(["1970-01-31", "1970-02-03"])).tolist()
    [30, 33]
    """
    values = np.asarray(time)
    if not np.issubdtype(values.dtype, np.datetime64):
        return None
    return values.astype("datetime64[D]").astype(np.int64)


def time_breaks(time: Any) -> np.ndarray:
    """Positions of the days that do not follow the day before: gaps in a daily axis.

    A time axis that is not datetime64 (the integer days of a lazy block) has none.

    Examples
    --------
    >>> import pandas as pd
    >>> days = pd.to_datetime(["2001-01-01", "2001-01-02", "2001-01-05", "2001-01-06"])
    >>> time_breaks(days).tolist()
    [2]
    """
    values = np.asarray(time)
    if values.size < 2 or not np.issubdtype(values.dtype, np.datetime64):
        return np.zeros(0, dtype=np.int64)
    days = values.astype("datetime64[D]").astype(np.int64)
    return np.flatnonzero(np.diff(days) != 1).astype(np.int64) + 1


def inference_windows(
    t0: int, t1: int, chunk: int, spinup: int, breaks: Sequence[int] | np.ndarray | None = None
) -> list[tuple[int, int, int]]:
    """Windows ``(start, keep_from, end)`` covering days ``[t0, t1)``.

    Each window runs from ``keep_from - spinup`` (not before day 0) to ``end`` with
    a fresh state and keeps the days from ``keep_from``: as in training, every
    prediction comes from a state warmed up on at most about a year of inputs.
    ``breaks`` are days that do not follow the day before (see :func:`time_breaks`):
    no window crosses one, so each run of consecutive days is covered as if it were
    the whole record, its windows laid out from its first kept day.

    Examples
    --------
    >>> inference_windows(0, 10, chunk=4, spinup=2)
    [(0, 0, 4), (2, 4, 8), (6, 8, 10)]
    >>> inference_windows(0, 10, chunk=4, spinup=2, breaks=[5])
    [(0, 0, 4), (2, 4, 5), (5, 5, 9), (7, 9, 10)]
    """
    edges = sorted({0, *(int(b) for b in (breaks if breaks is not None else ()) if 0 < b < t1)})
    out = []
    for i, r0 in enumerate(edges):
        r1 = edges[i + 1] if i + 1 < len(edges) else t1
        first, last = max(t0, r0), min(t1, r1)
        for a in range(first, last, chunk):
            b = min(a + chunk, last)
            out.append((max(r0, a - spinup), a, b))
    return out


#: Bytes of fine states per block of days when MSGL's fine recurrence and its
#: concatenated head take turns (:func:`_fine_by_chunks`): 4 days of 10^5 reaches, 40
#: of 10^4. Repeated calls run as fast with blocks of 16 to 256 MB (within the
#: noise of the 2-core VM), but a first call pays the system for every page of fresh
#: memory it touches: at 10^4 reaches halving these blocks, and quartering the head's
#: below, took a first call's page faults from 75,000 to 31,000 and its time from
#: 0.9-1.3 s to 0.8-0.9 s (docs/benchmarks.md).
STATE_BLOCK_BYTES = 32e6

#: Days per block of states at least (while the block stays within
#: :data:`STATE_BLOCK_MAX_BYTES`): inputs stored on (node, time), as netCDF files
#: and the synthetic basin hold them, are read a block of days at a time, and 16
#: days of float32 fill a cache line of each node's row. With the 4 days that 32 MB
#: gave at 10^5 reaches every line read held 16 bytes used of 64; a call took
#: 15.8-16.0 s against 14.8-15.6 s with 16 days (docs/benchmarks.md).
STATE_BLOCK_MIN_DAYS = 16

#: The most bytes of fine states per block that :data:`STATE_BLOCK_MIN_DAYS` asks for.
STATE_BLOCK_MAX_BYTES = 256e6

#: Bytes of the fine head's pre-activations per block of days (:class:`_FineHeadDays`);
#: the GELU's output takes as many again.
HEAD_BLOCK_BYTES = 16e6


class _FineHeadDays:
    """MSGL's fine prediction with :class:`~xmsgl.nn.heads.FineHead`, a block of days
    at a time, from the coarse states ``h_c`` (T, S, B, H) and the fine ones ``h_f``
    (T, R, B, H) of the same days, in the states' own layout (no copy of the states).

    The head's first product is linear in the carried states, so it runs on the
    segments, and each day its ``W + 1`` columns are carried to the reaches by one
    sparse product added to the reaches' own product. The days go by blocks of
    :attr:`step` days, about :data:`HEAD_BLOCK_BYTES` of pre-activations, in buffers
    made once and reused by every block (and, on the CPU, by later calls): fresh
    tensors of tens of MB cost more in page faults than the arithmetic on them.
    """

    def __init__(self, head: Any, data: ModelData, rows: np.ndarray | None,
                 cross_blocks: Sequence[tuple[int, int, SparseGraph]], n_seg: int, n_reach: int,
                 nb: int, like: torch.Tensor) -> None:
        self.head = head
        self.w_cross, self.w_fine, self.bias = head.parts()
        self.width = self.w_cross.shape[0]
        if rows is None:
            self.cross = data.graphs["cross"]
        else:
            assert len(cross_blocks) == 1
            self.cross = cross_blocks[0][2]
        # GELU runs on all W + 1 columns (contiguous rows vectorize; a slice of W
        # columns took three times as long) and the linear branch's column gets
        # weight 0 after it.
        self.w_out = torch.cat([head.out.weight.reshape(-1), head.out.weight.new_zeros(1)])
        self.step = max(1, int(HEAD_BLOCK_BYTES // max(1, n_reach * nb * self.width * 4)))
        self.n_seg, self.n_reach, self.nb = n_seg, n_reach, nb
        self._bufs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._like = like

    def _buffers(self, n_days: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._bufs is None or self._bufs[0].shape[0] < n_days * self.n_reach * self.nb:
            days = min(self.step, n_days)
            shape = (days * self.n_reach * self.nb, self.width)
            self._bufs = (reusable_empty(shape, self._like), reusable_empty(shape, self._like),
                          reusable_empty((days * self.n_seg * self.nb, self.width), self._like))
        return self._bufs

    def __call__(self, h_c: torch.Tensor, h_f: torch.Tensor, out: torch.Tensor) -> None:
        """The prediction of the days of ``h_c`` and ``h_f`` into ``out`` (T, R, B)."""
        n_time, _, nb, hdim = h_f.shape
        width, rows_per_day = self.width, self.n_reach * nb
        for t0 in range(0, n_time, self.step):
            t1 = min(t0 + self.step, n_time)
            pre_buf, act_buf, seg_buf = self._buffers(t1 - t0)
            n_rows = (t1 - t0) * rows_per_day
            pre, act = pre_buf[:n_rows], act_buf[:n_rows]
            on_seg = seg_buf[:(t1 - t0) * self.n_seg * nb]
            torch.mm(h_c[t0:t1].reshape(-1, hdim), self.w_cross.t(), out=on_seg)
            seg_days = on_seg.view(t1 - t0, self.n_seg, nb * width)
            torch.addmm(self.bias, h_f[t0:t1].reshape(-1, hdim), self.w_fine.t(), out=pre)
            pre_days = pre.view(t1 - t0, self.n_reach, nb * width)
            for t in range(t0, t1):
                day = pre_days[t - t0]
                torch.addmm(day, self.cross.adj, seg_days[t - t0], out=day)
            torch.nn.functional.gelu(pre, out=act)  # type: ignore[call-arg]  # the op takes out=
            flat = out[t0:t1].view(-1)
            torch.addmv(pre[:, width - 1], act, self.w_out, out=flat)
            flat += self.head.out.bias


def _fine_by_chunks(net: Any, data: ModelData, starts: Sequence[int], length: int, cut: int,
                    rows_t: torch.Tensor | None, head: _FineHeadDays, out: torch.Tensor,
                    coarse: torch.Tensor, device: torch.device) -> None:
    """MSGL's fine prediction of days ``[cut, length)`` of the windows at ``starts``
    into ``out`` (length - cut, R, B), and the coarse one of all days into
    ``coarse`` (length, S, B), the two recurrences and the head taking turns over
    blocks of days.

    The concatenated fine head reads each day's states alone, so no more than one
    block of them is ever held: the fine states of a year of 10^5 reaches (2.9 GB,
    which a first call also paid the system to zero page by page) and the coarse
    ones (0.4 GB) are never made, and the inputs are standardized a block at a time.
    """
    nb = len(starts)
    n_all, n_seg = data.x_reach.shape[1], data.x_seg.shape[1]
    # Blocks of about STATE_BLOCK_BYTES of fine states (all reaches: the recurrence
    # runs on the whole graph).
    per_day = max(1, n_all * nb * net.hidden * 4)
    step = max(1, int(STATE_BLOCK_BYTES // per_day),
               min(STATE_BLOCK_MIN_DAYS, int(STATE_BLOCK_MAX_BYTES // per_day)))
    bounds = sorted({*range(0, length, step), cut, length})
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    if not spans:
        return
    days = max(b - a for a, b in spans)
    buf = reusable_empty((days, n_all, nb, net.hidden), out)
    seg_buf = reusable_empty((days, n_seg, nb, net.hidden), out)
    state = seg_state = None
    for a, b in spans:
        firsts = [s + a for s in starts]
        h_c, seg_state = net.hidden_states_from(_batch(data.x_seg, firsts, b - a, device),
                                                data.graphs["coarse"], "seg", seg_state,
                                                out=seg_buf[: b - a])
        coarse[a:b] = net.coarse_prediction(h_c)
        x = _batch(data.x_reach, firsts, b - a, device)
        hs, state = net.hidden_states_from(x, data.graphs["fine"], "reach", state, out=buf[: b - a])
        if b > cut:  # a >= cut: the bounds include cut
            if rows_t is not None:
                hs = hs.index_select(1, rows_t)
            head(h_c, hs, out[a - cut : b - cut])


@torch.inference_mode()
@full_precision  # in memory and in the blocks of a lazy run, whichever thread runs them
def predict(
    net: Any,
    data: ModelData,
    t0: int,
    t1: int,
    *,
    output: str,
    device: torch.device,
    chunk: int = 365,
    spinup: int = 180,
    batch_size: int | None = None,
    rows: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Standardized predictions for days ``[t0, t1)`` of ``data``.

    ``output`` is the task whose values are the fine prediction: ``"fine"``
    (MSGL), ``"fine_only"``, ``"remap"`` (the coarse prediction of each
    reach's segment) or ``"cross"`` (MSGL's cross-scale estimate, task 1, which
    the fine task refines: what the coarse states alone say about each reach);
    ``"coarse"`` gives the coarse prediction only.
    Returns ``{"reach": (T, R), "seg": (T, S)}`` (``"seg"`` unless
    ``output="fine_only"``, ``"reach"`` unless ``output="coarse"``). With
    ``rows``, only those reaches are returned (the recurrence still runs on the
    whole graph).
    """
    net.eval()
    n_time = t1 - t0
    n_seg = data.x_seg.shape[1]
    n_reach = data.x_reach.shape[1] if rows is None else len(rows)
    cross_blocks = data.cross_rows
    rows_t = None
    if rows is not None:
        rows_t = torch.from_numpy(np.asarray(rows, dtype=np.int64)).to(device)
        cross_blocks = [(0, len(rows), SparseGraph(data.cross_csr[np.asarray(rows)], device))]
    if output not in ("fine", "fine_only", "remap", "cross", "coarse"):
        raise ChoiceError(f"output {output!r} is not known; use 'fine', 'fine_only', "
                             "'remap', 'cross' or 'coarse'")
    need_seg = output in ("fine", "cross", "remap", "coarse")
    need_reach = output in ("fine", "fine_only")
    res: dict[str, np.ndarray] = {}
    if output != "coarse":
        res["reach"] = np.empty((n_time, n_reach), dtype=np.float32)
    if need_seg:
        res["seg"] = np.empty((n_time, n_seg), dtype=np.float32)
    # Each window runs on past the last day it keeps, up to ``lookahead`` days where
    # the data go on without a gap: the attention of the cross-scale head is not
    # causal, so a kept day's span must be whole, as in any other window.
    look = net.lookahead(output)
    n_data = data.x_seg.shape[0]  # days of the data (x_reach has as many)
    stops = np.union1d(np.asarray(data.breaks if data.breaks is not None else [], dtype=np.int64),
                       [n_data])
    # Windows run side by side when they have the same length and the same place on
    # the calendar grid of the attention spans (``phase``).
    period = net.cross_head.span_period()
    groups: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    for s, a, b in inference_windows(t0, t1, chunk, spinup, data.breaks):
        run_end = min(b + look, int(stops[np.searchsorted(stops, b)]))
        groups.setdefault((run_end - s, data.epoch_day_at(s) % period), []).append((s, a, b))
    hidden = net.hidden
    # MSGL's concatenated fine head reads each day's fine states alone: the fine
    # recurrence and the head take turns over blocks of days (see _fine_by_chunks).
    by_chunks = (output == "fine" and isinstance(net.fine_head, FineHead)
                 and getattr(net, "dmsge", None) is None)
    heads: dict[int, _FineHeadDays] = {}
    for (length, phase), ws in groups.items():
        nodes = (n_seg if need_seg else 0) + (n_reach if need_reach else 0)
        # Inference keeps about 6 (N, H) tensors per node-day (inputs, states, heads).
        bs = batch_size or int(max(1, min(len(ws), 2e9 // max(1, nodes * length * hidden * 4 * 6))))
        for j in range(0, len(ws), bs):
            part = ws[j: j + bs]
            starts = [w[0] for w in part]
            day0 = [data.epoch_day_at(s) for s in starts]
            h_c = h_f = None
            coarse = None
            if need_seg and not by_chunks:
                h_c = net.hidden_states(_batch(data.x_seg, starts, length, device), data.graphs["coarse"],
                                        "seg", day0=day0)
                coarse = net.coarse_prediction(h_c)  # (L, S, B)
            elif need_seg:  # made with the fine prediction, below
                coarse = torch.empty(length, n_seg, len(part), dtype=PARAM_DTYPE, device=device)
            if need_reach and not by_chunks:
                h_f = net.hidden_states(_batch(data.x_reach, starts, length, device), data.graphs["fine"],
                                        "reach", day0=day0)
                if rows_t is not None:
                    h_f = h_f.index_select(1, rows_t)
            fine = None
            # The reach heads skip the spin-up days that no kept day depends on.
            cut = 0
            if output == "remap":
                assert coarse is not None
                seg_idx = data.reach_seg_idx if rows is None else data.reach_seg_idx[np.asarray(rows)]
                fine = coarse[:, torch.from_numpy(seg_idx).to(device)]
            elif output != "coarse":
                nb = len(part)
                warm = min(keep - s for s, keep, _ in part)
                cut = net.cross_head.first_needed_day(warm, phase) if net.reads_attention(output) else warm
                days = length - cut
                fine = torch.empty(days, n_reach, nb, dtype=PARAM_DTYPE, device=device)
                blocks = cross_blocks
                if output == "fine" and isinstance(net.fine_head, FineHead):
                    head = heads.get(nb)
                    if head is None:
                        head = heads[nb] = _FineHeadDays(net.fine_head, data, rows, cross_blocks,
                                                         n_seg, n_reach, nb, fine)
                    if by_chunks:
                        assert coarse is not None
                        _fine_by_chunks(net, data, starts, length, cut, rows_t, head, fine, coarse,
                                        device)
                    else:
                        assert h_c is not None and h_f is not None
                        head(h_c[cut:], h_f[cut:], fine)
                    blocks = []  # done for this batch; the next batch needs the blocks again
                # One contiguous (S, T, B, H) copy serves every block of reaches.
                hc_perm = (h_c[cut:].permute(1, 0, 2, 3).contiguous() if h_c is not None and blocks
                           else None)
                for r0, r1, cross in blocks:
                    hx = hf = None
                    if output in ("fine", "cross"):
                        assert hc_perm is not None
                        hx = graph_product(cross, hc_perm).permute(0, 2, 1, 3)
                        hx = hx.reshape(-1, days, hidden)
                    if h_f is not None:
                        hf = h_f[cut:, r0:r1].permute(1, 2, 0, 3).reshape(-1, days, hidden)
                    y = net.fine_from_hidden(hx, hf, (output,), phase=(phase + cut) % period)[output]
                    fine[:, r0:r1] = y.reshape(r1 - r0, nb, days).permute(2, 0, 1)
            for b, (s, keep, end) in enumerate(part):
                a = keep - s
                if fine is not None:
                    res["reach"][keep - t0: end - t0] = (
                        fine[a - cut: a - cut + end - keep, :, b].float().cpu().numpy())
                if coarse is not None:
                    res["seg"][keep - t0: end - t0] = coarse[a: a + end - keep, :, b].float().cpu().numpy()
    return res
