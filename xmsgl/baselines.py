"""Non-neural baselines that downscale like a fitted model does.

Each baseline is fitted on the training period's fine observations ``reach_temp``
(sparse, NaN where unobserved) and, where it helps, the coarse observations
``seg_temp``; :meth:`BaselineModel.predict` returns a (reach, time) DataArray in
degC, as :func:`xmsgl.downscale.downscale` does. No baseline needs torch.

``"climatology"``
    Per reach and day of year, the mean of the reach's training observations
    within a circular window of ``window`` days (default 31) around the day (an
    even ``window`` holds one day more before the day than after it).
    Days of year with fewer than ``min_count`` observations (default 3) in the
    window fall back to the reach's segment (the same climatology of
    ``seg_temp``, with the same minimum), then to the pooled climatology of every
    fine and coarse training observation: one observation would otherwise set the
    value of ``window`` days of the year, with jumps at their ends.
``"mohseni"``
    The logistic air-to-water regression of Mohseni et al. (1998),
    ``T_w = mu + (alpha - mu) / (1 + exp(gamma * (beta - T_air)))``, with
    ``T_air`` the trailing ``air_window``-day mean of ``reach_air_temp``, fitted
    with :func:`scipy.optimize.curve_fit` per reach with at least ``min_obs``
    training observations in at least ``min_months`` calendar months; other
    reaches use their segment's parameters (fitted on ``seg_temp`` against the air
    temperature of the segment's outlet reach, under the same two minimums), then
    the pooled parameters (all fine and coarse training observations).
``"idw"``
    Inverse-distance weighting along the river network. On each day the sources
    are the reaches observed that day in the dataset given to ``predict`` and the
    outlet reaches of the segments whose ``seg_temp`` is observed that day. A reach
    takes ``sum_j w_ij T_j / sum_j w_ij`` with ``w_ij = 1 / max(|D_ij|, d_min)^p``
    over the sources ``j`` on its flow path (``D`` the signed along-stream
    distance, :func:`xmsgl.graph.flow_distances`); sources are reproduced exactly.
    A reach with no connected source that day takes its segment's ``seg_temp``,
    then its climatology.
``"harmonic"``
    Harmonic interpolation on the fine graph (a Dirichlet problem): boundary
    nodes are the reaches observed on any day of the dataset given to ``predict``
    and the outlet reaches of segments with any coarse observation; their value on
    a day is the fine observation, else the coarse one, else the reach's fitted
    climatology, so the boundary set is the same every day and one sparse LU
    factorization (:func:`scipy.sparse.linalg.splu`) of the interior Laplacian
    serves all days. Edges join each reach to its downstream reach with
    conductance ``1 / l``, ``l`` the mean length of the two reaches. Reaches in a
    tree without boundary node take their climatology.

Fitting never modifies the input dataset; a fitted model is saved to a folder
(``config.json`` + ``arrays.npz``) and reloaded with :func:`load_baseline`.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from xmsgl.convention import (
    REACH,
    SEG,
    TIME,
    Topology,
    check_loaded_temperature,
    expect_dataset,
    in_id_order,
    input_attrs,
    is_temperature_units,
    only_read,
    output_coords,
    topology_arrays,
    validate,
    warn_constant_observations,
)
from xmsgl.exceptions import (
    ChoiceError,
    DataError,
    FewObservationsWarning,
    ModelMismatchError,
    ParameterError,
    SchemaError,
    ShortRecordWarning,
    TimeError,
    XmsglError,
    XmsglWarning,
    format_ids,
    ignoring,
    warn_at_user,
)
from xmsgl.io import (
    model_path,
    read_json_file,
    read_saved_folder,
    refuse_unknown_version,
    regular_file,
    settings_digests,
    warn_edited_settings,
    write_model_folder,
)
from xmsgl.methods import BASELINES  # the names fit_baseline understands
from xmsgl.periods import period_days, select_days, spans_text, split_periods, whole_water_years

__all__ = ["BASELINES", "BaselineModel", "fit_baseline", "load_baseline", "default_train_period"]


FORMAT = "xmsgl-baseline"
#: 2: days of the year by calendar date (``day_of_year`` "month-day" in the config);
#: 1 read them by their ordinal, a day late from March in leap years.
FORMAT_VERSION = 2
CONFIG = "config.json"
ARRAYS = "arrays.npz"

_N_DOY = 366
_DEFAULTS: dict[str, dict[str, Any]] = {
    "climatology": {"window": 31, "min_count": 3},
    "mohseni": {"window": 31, "min_count": 3, "air_window": 5, "min_obs": 50, "min_months": 8},
    "idw": {"window": 31, "min_count": 3, "power": 2.0, "d_min": 100.0},
    "harmonic": {"window": 31, "min_count": 3},
}

#: Settings added after the first saved baselines, with the value that reproduces
#: what those were fitted with (a folder without them loads with these).
_ADDED_SETTINGS = {"min_count": 1, "min_months": 1}

#: Settings a method keeps in its config (the climatology every baseline stores) but
#: does not read when it predicts: refused from the caller, who would see no effect.
_UNREAD = {"mohseni": ("window", "min_count")}


def _version() -> str:
    import xmsgl

    return str(xmsgl.__version__)


# ----------------------------------------------------------------------------- periods


def default_train_period(time: pd.DatetimeIndex) -> list[tuple[str, str]]:
    """Days before the default test period of :func:`xmsgl.fit` (by water year).

    The test period is that of :func:`xmsgl.periods.split_periods`: with ``n >= 3``
    whole water years (1 October - 30 September, spanning and holding at least
    :data:`~xmsgl.periods.WHOLE_WATER_YEAR_DAYS` days) the last ``max(1, round(n /
    6))`` of them and any days after them; with fewer, the last 15% of the days. A
    partial water year at the end of the record is never a test year of its own.
    Baselines have no early stopping, so the validation days are part of their
    training period.

    Examples
    --------
    >>> import pandas as pd
    >>> default_train_period(pd.date_range("2000-10-01", "2006-09-30"))
    [('2000-10-01', '2005-09-30')]
    """
    time = pd.DatetimeIndex(time)
    if len(time) < 10:
        raise TimeError(f"{len(time)} day(s) are too few to set a training period aside; give "
                        "train=(start, end) or a longer record")
    # With 10 days or more the split always leaves days before the test period.
    days = time[time < pd.Timestamp(split_periods(time)["test"][0][0])]
    return [(str(days[0].date()), str(days[-1].date()))]


# ----------------------------------------------------------------------------- helpers


def _reach_time(ds: xr.Dataset, name: str, dim: str, *, water: bool = True) -> np.ndarray | None:
    """(node, time) float64 values of ``name``, or None when it is absent.

    The values are judged as temperatures once read (water ones by default): the
    dataset may be lazy, or given to ``predict``, which validates without reading
    values, and a fill value or a wrong unit label would otherwise be fitted or
    copied into the prediction.
    """
    if name not in ds.data_vars:
        return None
    da = ds[name]
    if set(map(str, da.dims)) != {dim, TIME}:
        raise SchemaError(f"variable {name!r} must be on ({dim!r}, 'time'), got {tuple(map(str, da.dims))}")
    values = np.asarray(da.transpose(dim, TIME).values, dtype=np.float64)
    check_loaded_temperature(name, values, da.attrs, water=water)
    return values


#: How a date finds its row of the climatologies, in a model's config
#: (``day_of_year``): ``"month-day"``, the position of its month and day in a leap
#: year (29 February is 59, 1 March always 60, 31 December always 365), the same
#: date in every year; ``"ordinal"`` (saved before format version 2, which lack the
#: key), the day's number in its own year, so that from 1 March on a leap year read
#: the next date's row.
DAY_OF_YEAR = "month-day"


def _doy(time: pd.DatetimeIndex, scheme: str = DAY_OF_YEAR) -> np.ndarray:
    ordinal = np.asarray(time.day_of_year, dtype=np.int64) - 1
    if scheme == "ordinal":
        return ordinal
    return ordinal + ((~np.asarray(time.is_leap_year)) & (np.asarray(time.month) >= 3))


def _smoothed_clim(values: np.ndarray, doy: np.ndarray, window: int, min_count: int = 1) -> np.ndarray:
    """Circular moving-window mean by day of year, NaN where fewer than ``min_count``
    values fall in the window."""
    from scipy.ndimage import uniform_filter1d

    n = values.shape[0]
    ok = np.isfinite(values)
    rows = np.broadcast_to(np.arange(n)[:, None], values.shape)[ok]
    cols = np.broadcast_to(doy[None, :], values.shape)[ok]
    flat = rows * _N_DOY + cols
    s = np.bincount(flat, weights=values[ok], minlength=n * _N_DOY).reshape(n, _N_DOY)
    c = np.bincount(flat, minlength=n * _N_DOY).reshape(n, _N_DOY).astype(np.float64)
    # Sums and counts are smoothed separately so that days with many observations
    # weigh more than days with one, and gaps need no special case.
    s = uniform_filter1d(s, size=window, axis=1, mode="wrap")
    c = uniform_filter1d(c, size=window, axis=1, mode="wrap")
    # c is the window's mean count: c * window values fall in it.
    enough = c * window > max(int(min_count), 1) - 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(enough, s / np.where(enough, c, 1.0), np.nan)
    return out


def _fill_circular(row: np.ndarray) -> np.ndarray:
    """Fill NaN days of year by circular linear interpolation between defined days."""
    ok = np.isfinite(row)
    if ok.all() or not ok.any():
        return row
    x = np.flatnonzero(ok)
    xs = np.concatenate([x - _N_DOY, x, x + _N_DOY])
    ys = np.tile(row[x], 3)
    return np.interp(np.arange(_N_DOY), xs, ys)


def _outlet_reach_idx(topo: Topology) -> np.ndarray:
    return np.asarray(topo.seg_outlet_reach_idx, dtype=np.int64)


def _length_m(ds: xr.Dataset, name: str, values: np.ndarray) -> np.ndarray:
    units = str(ds[name].attrs.get("units", "m")).strip().lower()
    return values * (1000.0 if units in ("km", "kilometre", "kilometer", "kilometres", "kilometers") else 1.0)


def _train_mask(time: pd.DatetimeIndex, train: Any) -> tuple[np.ndarray, list[tuple[str, str]]]:
    period = default_train_period(time) if train is None else train
    n_whole = whole_water_years(time).size if train is None else 3
    if n_whole < 3:
        # As fit warns of its split on such a record.
        warn_at_user(
            f"the record holds {n_whole} whole water year(s) "
            f"({time[0].date()} to {time[-1].date()}), too few for the default split by water "
            f"year: the baseline trains on the first 85% of the days ({spans_text(period).replace('/', ' to ')}), "
            "and the last 15%, its test days, cover part of one year; give train=(start, end) "
            "to choose them, or use a record of three water years or more",
            ShortRecordWarning)
    mask = period_days(time, period, "trained on", "train")
    if not mask.any():
        raise TimeError(
            f"the training period {period!r} holds no day of the dataset "
            f"({time[0].date()} to {time[-1].date()}); give dates inside it"
        )
    from xmsgl.train import period_ranges

    ranges = [(str(time[a].date()), str(time[b - 1].date())) for a, b in period_ranges(time, mask)]
    return mask, ranges


def _climatology_tables(
    y_reach: np.ndarray, y_seg: np.ndarray | None, topo: Topology, doy: np.ndarray, window: int,
    min_count: int = 1,
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Reach and segment climatologies (n, 366), gaps (days of year with fewer than
    ``min_count`` observations in the window) filled by the fallbacks."""
    pooled_parts = [y_reach]
    if y_seg is not None:
        pooled_parts.append(y_seg)
    pooled_vals = np.concatenate(pooled_parts, axis=0)
    if not np.isfinite(pooled_vals).any():
        raise DataError(
            "no fine ('reach_temp') or coarse ('seg_temp') observation in the training period; "
            "a baseline needs observations: give a training period that holds some"
        )
    # The pooled climatology is the last resort, so it must be defined on every day
    # of the year: days farther than the window from any observation are interpolated.
    pooled_raw = _smoothed_clim(pooled_vals.reshape(1, -1), np.tile(doy, pooled_vals.shape[0]), window)[0]
    pooled = _fill_circular(pooled_raw)
    seg = (_smoothed_clim(y_seg, doy, window, min_count) if y_seg is not None
           else np.full((topo.n_seg, _N_DOY), np.nan))
    seg_level = np.isfinite(seg)
    seg = np.where(seg_level, seg, pooled[None, :])
    reach = _smoothed_clim(y_reach, doy, window, min_count)
    own = np.isfinite(reach)
    from_seg = ~own & seg_level[topo.reach_seg_idx]
    reach = np.where(own, reach, seg[topo.reach_seg_idx])
    counts = {"reach_doy_own": int(own.sum()), "reach_doy_segment": int(from_seg.sum()),
              "reach_doy_pooled": int((~own & ~from_seg).sum()),
              # Days of the year no observation's window reaches, interpolated.
              "doy_interpolated": int((~np.isfinite(pooled_raw)).sum())}
    if counts["doy_interpolated"]:
        # The longest run of them, across the new year (day-of-year positions 0-365):
        # the widest step between defined days (there is one: an observation's own),
        # of equal ones the first to end in the year.
        ok = np.flatnonzero(np.isfinite(pooled_raw))
        nxt = np.append(ok[1:], ok[0] + _N_DOY)
        width = nxt - ok
        end = np.where(ok == _N_DOY - 1, nxt - 1 - _N_DOY, nxt - 1)
        i = int(np.lexsort((end, -width))[0])
        counts.update({"doy_interpolated_longest": int(nxt[i] - ok[i] - 1),
                       "doy_interpolated_first": int(ok[i] + 1) % _N_DOY,
                       "doy_interpolated_last": int(nxt[i] - 1) % _N_DOY})
    return reach, seg, counts


def _warn_missing_air(values: np.ndarray, reach_ids: np.ndarray, days: pd.DatetimeIndex) -> None:
    """Warn where Mohseni's prediction ``values`` (reach, day) is NaN: missing air
    temperature, which its trailing mean carries."""
    missing = ~np.isfinite(values)
    if not missing.any():
        return
    r_idx, t_idx = np.nonzero(missing)
    first = ", ".join(f"reach {reach_ids[i]} on {days[j].date()}"
                      for i, j in zip(r_idx[:3], t_idx[:3], strict=True))
    warn_at_user(XmsglWarning(
        f"mohseni predicts no value on {int(missing.sum())} reach-days ({first}"
        f"{' and more' if missing.sum() > 3 else ''}): 'reach_air_temp' is missing "
        "on those days (NaN), so their trailing mean is; fill it (for example "
        "ds['reach_air_temp'].interpolate_na('time')) or use another baseline there"))


def _mohseni(air: np.ndarray, mu: float, alpha: float, gamma: float, beta: float) -> np.ndarray:
    return mu + (alpha - mu) / (1.0 + np.exp(gamma * (beta - air)))


# mu, the curve's lower plateau, is the minimum water temperature: at or above
# freezing, as Mohseni et al. (1998) keep it (below 0 it let cold records predict ice
# water below 0 degC).
_BOUNDS = ([0.0, 0.0, 0.01, -10.0], [20.0, 40.0, 2.0, 40.0])


def _fit_mohseni(air: np.ndarray, water: np.ndarray) -> np.ndarray | None:
    from scipy.optimize import OptimizeWarning, curve_fit

    ok = np.isfinite(air) & np.isfinite(water)
    x, y = air[ok], water[ok]
    if x.size < 5:
        return None
    p0 = [float(np.clip(np.percentile(y, 2), 0.1, 19.0)),
          float(np.clip(np.percentile(y, 98) + 1.0, 1.0, 39.0)), 0.2,
          float(np.clip(np.median(x), -9.0, 39.0))]
    try:
        with ignoring(OptimizeWarning):
            popt, _ = curve_fit(_mohseni, x, y, p0=p0, bounds=_BOUNDS, maxfev=5000)
    except (RuntimeError, ValueError):
        return None
    return np.asarray(popt, dtype=np.float64)


def _smooth_air(air: np.ndarray, window: int, times: pd.DatetimeIndex | None = None) -> np.ndarray:
    """Trailing mean over ``window`` days (shorter at the start), NaN-aware.

    ``times`` (the axis of ``air``) makes the window one of calendar days: across a gap
    in the time axis it holds only the days of the window that are there, not days
    from before the gap."""
    if window <= 1:
        return air
    if times is not None and len(times) > 1:
        day = np.asarray(times.values).astype("datetime64[D]").astype(np.int64)
        day = day - day[0]
        if day[-1] + 1 != len(times):
            # On the daily calendar, the missing days NaN, then back to the days given.
            full = np.full((air.shape[0], int(day[-1]) + 1), np.nan)
            full[:, day] = air
            return _smooth_air(full, window)[:, day]
    ok = np.isfinite(air)
    s = np.cumsum(np.where(ok, air, 0.0), axis=1)
    c = np.cumsum(ok, axis=1).astype(np.float64)
    s[:, window:] = s[:, window:] - s[:, :-window].copy()
    c[:, window:] = c[:, window:] - c[:, :-window].copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        # A window with a missing day still averages the days it has; only a day
        # whose own air temperature is missing gives NaN.
        return np.where(ok, s / np.where(c > 0, c, 1.0), np.nan)


def _observed_sources(
    y_reach: np.ndarray | None, y_seg: np.ndarray | None, topo: Topology, n_time: int
) -> np.ndarray:
    """(reach, time) values of the sources: fine obs, else coarse obs at outlet reaches."""
    v = np.full((topo.n_reach, n_time), np.nan)
    if y_seg is not None:
        v[_outlet_reach_idx(topo)] = y_seg
    if y_reach is not None:
        v = np.where(np.isfinite(y_reach), y_reach, v)
    return v


# ----------------------------------------------------------------------------- model


class BaselineModel:
    """A fitted non-neural baseline: its method, settings and arrays.

    Made by :func:`fit_baseline` or :func:`load_baseline`; apply it with
    :meth:`predict`, save it with :meth:`save`.

    Attributes
    ----------
    method : str
        One of :data:`BASELINES`.
    config : dict
        Settings, training period and provenance (written to ``config.json``).
    arrays : dict of numpy.ndarray
        Fitted arrays (written to ``arrays.npz``): ``reach_ids``, ``seg_ids``,
        ``reach_clim`` and ``seg_clim`` (node x 366 days of year, degC) and, for
        ``"mohseni"``, ``params`` (reach x [mu, alpha, gamma, beta]) and
        ``param_level`` (0 own fit, 1 segment, 2 pooled).

    Examples
    --------
    >>> import xmsgl
    >>> from xmsgl.baselines import fit_baseline
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2003-09-30")
    >>> model = fit_baseline(ds, "climatology")
    >>> pred = model.predict(ds, time=("2003-01-01", "2003-01-31"))
    >>> pred.dims, pred.sizes["time"], pred.attrs["units"]
    (('reach', 'time'), 31, 'degC')
    """

    def __init__(self, method: str, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.method = method
        self.config = config
        self.arrays = arrays

    def __repr__(self) -> str:
        # The periods as the outputs name them: the same before saving and after loading
        # (tuples became lists in config.json).
        train = spans_text(self.config["train"]) if self.config.get("train") else None
        return (f"<xmsgl.BaselineModel method={self.method!r} n_reach={self.arrays['reach_ids'].size} "
                f"train={train}>")

    @property
    def sha256(self) -> str:
        """The baseline's identity: sha256 of its settings and fitted arrays together.

        Recorded with every output (``xmsgl_model_sha256``), as for the networks; a
        saved and loaded baseline keeps it.
        """
        h = hashlib.sha256(json.dumps(_identity_settings(self.config), sort_keys=True).encode())
        _update_with_arrays(h, self.arrays)
        return h.hexdigest()

    @property
    def reads(self) -> dict[str, str]:
        """The variables of the dataset :meth:`predict` reads besides the network's ids
        and topology, each with what it is read for (empty for ``"climatology"``, which
        needs only the days)."""
        if self.method == "mohseni":
            days = (self.config.get("settings") or {}).get("air_window", "?")
            return {"reach_air_temp": f"air temperature, as its trailing {days}-day mean"}
        if self.method in ("idw", "harmonic"):
            return {"reach_temp": "the sources: observations on the days of the dataset",
                    "seg_temp": "the sources: observations of the segments' outlet reaches",
                    "reach_length": "along-stream distances" if self.method == "idw" else
                                    "edge conductances"}
        return {}

    def check_data(self, ds: xr.Dataset) -> dict[str, bool | None]:
        """Whether ``ds`` holds the data this model was fitted on (for a light baseline,
        the observations ``reach_temp`` and ``seg_temp`` on its training days and, for
        ``"mohseni"``, ``reach_air_temp`` on them): see :func:`xmsgl.model.check_data`."""
        from xmsgl.model import check_data

        return check_data(self, ds)

    # ------------------------------------------------------------------ predict
    def _positions(self, ds: xr.Dataset, topo: Topology) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the dataset's reaches and segments in the model's arrays."""
        out = []
        for dim, ids in ((REACH, topo.reach_ids), (SEG, topo.seg_ids)):
            known = self.arrays[f"{dim}_ids"]
            order = np.argsort(known)
            pos = np.searchsorted(known[order], ids)
            pos = np.minimum(pos, known.size - 1)
            found = known[order][pos] == ids
            if not found.all() or ids.size != known.size:
                missing = np.setdiff1d(known, ids)
                extra = ids[~found]
                raise ModelMismatchError(
                    f"the dataset's {dim!r} ids differ from the fitted baseline's (new: "
                    f"{format_ids(extra)}, absent: {format_ids(missing)}); predict on the network "
                    "the baseline was fitted on"
                )
            out.append(order[pos])
        return out[0], out[1]

    def predict(self, ds: xr.Dataset, time: Any = None) -> xr.DataArray:
        """Predict fine water temperature on the days of ``ds``.

        Parameters
        ----------
        ds : xarray.Dataset
            The network the baseline was fitted on (nodes matched by id, any order),
            with ``reach_air_temp`` for ``"mohseni"``. For ``"idw"`` and
            ``"harmonic"`` the observations ``reach_temp`` and ``seg_temp`` in
            ``ds`` are the sources: mask the ones a test must not see.
        time : (start, end) or slice, optional
            Days to return (ends included); default all. Sources and smoothing use
            every day of ``ds``.

        Returns
        -------
        xarray.DataArray
            float32 on (reach, time), units ``degC``, with ``long_name``,
            ``xmsgl_method``, ``xmsgl_train_periods``, a ``history`` line and, for
            ``"idw"`` and ``"harmonic"``, ``xmsgl_sources`` saying that the
            observations of the predicted days were read.

        Raises
        ------
        ModelMismatchError
            The dataset's reach or segment ids differ from the fitted ones.
        SchemaError
            A variable the method needs is missing.
        TimeError
            ``time`` selects no day of ``ds``, or the time axis is unusable.

        Warns
        -----
        XmsglWarning
            ``time`` reaches beyond the dataset's days: only those are returned.
        InputRangeWarning
            ``"mohseni"``: the air temperature of the days returned lies far beyond the
            values its curves were fitted on (``config["input_range"]``), as
            :func:`xmsgl.downscale.downscale` judges the networks' inputs.
        """
        expect_dataset(ds)
        if self.method == "mohseni" and "reach_air_temp" not in ds.data_vars:
            _mohseni_air(ds)  # its SchemaError names the dataset's other air temperatures
        # Only what it reads is validated, as for the networks: other variables (an
        # ensemble on one more dimension, a variable without units) are left as they are.
        ds = validate(only_read(ds, list(self.reads)), check_values=False)
        topo = topology_arrays(ds)
        r_pos, s_pos = self._positions(ds, topo)
        if TIME not in ds.dims:
            raise SchemaError("the dataset has no 'time' dimension; baselines predict daily values")
        times = pd.DatetimeIndex(ds[TIME].values)
        tmask = select_days(times, time)
        doy = _doy(times, self.config.get("day_of_year", "ordinal"))
        clim_r = self.arrays["reach_clim"][r_pos][:, doy]
        clim_s = self.arrays["seg_clim"][s_pos][:, doy]
        if self.method == "climatology":
            values = clim_r
        elif self.method == "mohseni":
            air = _mohseni_air(ds)
            _warn_air_range(self.config, air if tmask.all() else air[:, tmask])
            air = _smooth_air(air, int(self.config["settings"]["air_window"]), times)
            p = self.arrays["params"][r_pos]
            with np.errstate(over="ignore"):
                values = _mohseni(air, p[:, :1], p[:, 1:2], p[:, 2:3], p[:, 3:4])
        else:
            y_reach = _reach_time(ds, "reach_temp", REACH)
            y_seg = _reach_time(ds, "seg_temp", SEG)
            src = _observed_sources(y_reach, y_seg, topo, len(times))
            length = _length_m(ds, "reach_length", np.asarray(topo.reach_length, dtype=np.float64))
            if self.method == "idw":
                values = _idw(src, y_seg, topo, length, clim_r, clim_s,
                              float(self.config["settings"]["power"]),
                              float(self.config["settings"]["d_min"]))
            else:
                values = _harmonic(src, topo, length, clim_r)
        values = values[:, tmask]
        if self.method == "mohseni":
            _warn_missing_air(values, topo.reach_ids, times[tmask])
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        coords = output_coords(ds.isel({TIME: np.flatnonzero(tmask)}), REACH)
        return xr.DataArray(
            values.astype(np.float32),
            dims=(REACH, TIME),
            coords=coords,
            name="reach_temp_pred",
            attrs={
                "units": "degC",
                "long_name": f"daily mean stream water temperature of fine reaches, {self.method} baseline",
                "cell_methods": "time: mean",
                "xmsgl_method": self.method,
                "xmsgl_model_sha256": self.sha256,
                **({"xmsgl_train_periods": spans_text(self.config["train"])}
                   if self.config.get("train") else {}),
                # The days fit held out (test=), to score on, and the seed, as for the networks.
                **({"xmsgl_test_periods": spans_text(self.config["test"])}
                   if self.config.get("test") else {}),
                **({"xmsgl_seed": int(self.config["seed"])}
                   if isinstance(self.config.get("seed"), int) else {}),
                **input_attrs(ds.attrs),
                # An interpolation reads the observations of the days it predicts: at a
                # gauged reach its value is the observation, so those days are not held
                # out however the training period reads.
                **({"xmsgl_sources": "reach_temp and seg_temp of the dataset on every day "
                                     "predicted (at a gauged reach the prediction is its "
                                     "observation; mask observations a test must not see)"}
                   if self.method in ("idw", "harmonic") else {}),
                "history": f"{now} UTC: xmsgl {_version()} BaselineModel(method={self.method!r}, "
                           f"train={self.config.get('train')}, sha256={self.sha256[:16]})"
                           f".predict(time={time!r})",
            },
        )

    # ------------------------------------------------------------------ save/load
    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """Write the baseline to the folder ``path`` (``config.json`` + ``arrays.npz``).

        The folder is written under a temporary name next to ``path`` and moved into
        place, so a reader never sees a half-written baseline.
        An existing folder holding the same saved baseline (the same settings and arrays)
        is written again; one holding another baseline is replaced with
        ``overwrite=True`` only (outputs cite a baseline by its sha256, which a replaced
        folder no longer has), else :class:`~xmsgl.exceptions.XmsglError`; any other
        existing file or folder raises it too.

        Returns
        -------
        pathlib.Path
            The folder written.
        """
        arrays = io.BytesIO()
        np.savez(arrays, **self.arrays)  # type: ignore[arg-type]
        # A model loaded from version 1 (days of the year by ordinal) stays version 1.
        version = FORMAT_VERSION if self.config.get("day_of_year") == DAY_OF_YEAR else 1
        config = {**self.config, "format": FORMAT, "format_version": version, "method": self.method,
                  "arrays_sha256": _arrays_digest(self.arrays)}
        # A digest of each settings entry, which a load compares (the arrays' sha256
        # does not cover the settings): an edited entry is named there.
        config["settings_sha256"] = settings_digests(_identity_settings(config))
        def same(old: dict[str, Any]) -> bool:
            # What sha256 reads: the settings and the arrays' digest.
            return (old.get("arrays_sha256") == config["arrays_sha256"]
                    and _identity_settings(old) == _identity_settings(config))

        return write_model_folder(path, {ARRAYS: arrays.getvalue(),
                                         CONFIG: json.dumps(config, indent=1).encode()}, what="baseline",
                                  overwrite=overwrite, same=same)


def _identity_settings(config: dict[str, Any]) -> Any:
    """The settings a baseline's sha256 reads: ``config`` through JSON (as config.json
    holds it: tuples become lists), less the file's format entries, which saving adds,
    the time of the fit and the arrays' digest (the arrays are hashed themselves): the
    same settings on the same data give the same baseline and the same sha256. Every
    other entry counts, ``input_range`` too, so that an xmsgl of another version reads
    the same sha256 from the same folder. The dataset's ``history`` in ``data`` stays
    out, as for the networks (:func:`xmsgl.nn.weights.model_sha256`): it says when the
    data were built, and the same observations built again are the same data."""
    settings = {k: v for k, v in config.items()
                if k not in ("format", "format_version", "created", "arrays_sha256", "settings_sha256")}
    if isinstance(settings.get("data"), dict):
        settings["data"] = {k: v for k, v in settings["data"].items() if k != "history"}
    return json.loads(json.dumps(settings, default=str))


def load_baseline(path: str | os.PathLike[str]) -> BaselineModel:
    """Read a baseline written by :meth:`BaselineModel.save`.

    Raises
    ------
    DataError
        The folder is not a readable xmsgl baseline (missing files, other format).

    Examples
    --------
    >>> import tempfile, pathlib, xmsgl
    >>> from xmsgl.baselines import fit_baseline, load_baseline
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2002-09-30")
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "clim"
    >>> _ = fit_baseline(ds, "climatology").save(folder)
    >>> load_baseline(folder).method
    'climatology'
    """
    # Read again where another process replaced the folder meanwhile.
    return read_saved_folder(model_path(path), _read_baseline)


#: The arrays a saved baseline holds, and those mohseni's holds besides.
_ARRAYS_ALL = ("reach_ids", "seg_ids", "reach_clim", "seg_clim")
_ARRAYS_MOHSENI = ("params", "param_level")


#: The most ids an arrays file may list per scale, and the bytes of a member's header.
_MOST_IDS = 10**8
_NPY_HEADER = 4096
#: Members above this size (bytes) may not unpack to more than ``_MOST_PACKING`` times
#: what they take in the file (saving stores them unpacked: 1).
_PACKED_FLOOR = 2**24
_MOST_PACKING = 20


def _most_bytes(name: str, read: dict[str, np.ndarray]) -> int:
    """The largest a member ``name`` of a baseline's arrays file unpacks to, given the
    ids ``read`` before it (at most 8 bytes a value; the ids come first)."""
    n_reach = read["reach_ids"].size if "reach_ids" in read else _MOST_IDS
    n_seg = read["seg_ids"].size if "seg_ids" in read else _MOST_IDS
    values = {"reach_ids": _MOST_IDS, "seg_ids": _MOST_IDS, "reach_clim": n_reach * _N_DOY,
              "seg_clim": n_seg * _N_DOY, "params": n_reach * 4, "param_level": n_reach}[name]
    return 8 * values + _NPY_HEADER


def _read_baseline(path: Path) -> BaselineModel:
    import zipfile

    again = "write one with BaselineModel.save"
    if not path.is_dir():
        raise DataError(f"{str(path)!r} is not a readable xmsgl baseline folder (it is "
                        f"{'missing' if not path.exists() else 'no folder'}); {again}")
    config = read_json_file(path / CONFIG, "settings file", again)
    regular_file(path / ARRAYS, "arrays file", again)
    try:
        # Opened here, so that a damaged file is closed too (np.load given a path left
        # it open when the zip could not be read). allow_pickle=False: numbers only.
        with open(path / ARRAYS, "rb") as fh:
            z = np.load(fh)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError(f"{ARRAYS} holds a single {type(z).__name__}, not named arrays")
            with z:
                # The arrays a baseline holds, not every member: an extra one is never
                # decompressed (a few MB can hold GB of zeros); nor is a member larger
                # than its shape allows, once the ids say how many reaches and segments.
                infos = {i.filename.removesuffix(".npy"): i
                         for i in (z.zip.infolist() if z.zip is not None else [])}
                arrays: dict[str, np.ndarray] = {}
                for k in (*_ARRAYS_ALL, *_ARRAYS_MOHSENI):
                    if k not in z.files:
                        continue
                    size, packed = infos[k].file_size, infos[k].compress_size
                    most = _most_bytes(k, arrays)
                    if size > most:
                        raise ValueError(f"member {k!r} unpacks to {size:,} bytes, more than a "
                                         f"baseline of its reaches and segments holds ({most:,})")
                    # save stores its arrays unpacked: a member that unpacks to far more
                    # than it takes (zeros, ids included) was not written by it.
                    if size > _PACKED_FLOOR and size > _MOST_PACKING * packed:
                        raise ValueError(f"member {k!r} unpacks to {size:,} bytes from {packed:,}, "
                                         "which BaselineModel.save never writes")
                    arrays[k] = z[k]
    except (OSError, ValueError, TypeError, MemoryError, zipfile.BadZipFile, EOFError) as err:
        detail = str(err).split(". If you trust")[0][:200]  # numpy's advice to unpickle, not ours
        raise DataError(f"{str(path)!r} is not a readable xmsgl baseline folder ({type(err).__name__}: "
                        f"{detail}); {again}") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        kind = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise DataError(f"{str(path)!r} holds format {kind!r}, not {FORMAT!r}")
    refuse_unknown_version(config, FORMAT, FORMAT_VERSION, path / CONFIG,
                           "fit the baseline again or fetch the folder again")
    method = config.get("method")
    if method not in BASELINES:
        raise DataError(f"{str(path)!r} names method {method!r}, not one of the baselines {list(BASELINES)}")
    # Version 1 read days of the year by their ordinal (and has no key); from 2, the key.
    scheme = config.get("day_of_year", "ordinal" if config["format_version"] == 1 else None)
    if scheme != ("ordinal" if config["format_version"] == 1 else DAY_OF_YEAR):
        raise DataError(f"{str(path)!r}: {CONFIG} gives day_of_year={scheme!r}, which format version "
                        f"{config['format_version']} does not have; the file was edited: fit and save "
                        "the baseline again")
    needed = [*_ARRAYS_ALL, *(_ARRAYS_MOHSENI if method == "mohseni" else ())]
    missing = [k for k in needed if k not in arrays]
    if missing:
        raise DataError(f"{str(path)!r}: {ARRAYS} lacks {missing}, which a {method!r} baseline holds; "
                        "the file is damaged or was edited: fit and save the baseline again")
    recorded = config.get("arrays_sha256")  # absent in folders saved before it was recorded
    if recorded is None and "settings_sha256" in config:
        # Saved since both were recorded: its arrays' digest was taken out.
        raise ModelMismatchError(
            f"{str(path)!r}: {CONFIG} lacks the sha256 of {ARRAYS} that saving records; it was "
            "edited: fit and save the baseline again")
    if recorded is not None and recorded != _arrays_digest(arrays):
        # The error a network's weights give in this case, so that one except clause
        # finds a data file swapped or changed in any saved model.
        raise ModelMismatchError(
            f"{str(path)!r}: {ARRAYS} does not match the sha256 recorded in {CONFIG} when it "
            "was saved; it was changed or damaged: fit and save the baseline again")
    _check_loaded(path, str(method), config, arrays)
    warn_edited_settings(config.get("settings_sha256"), _identity_settings(config), path / CONFIG,
                         "fit and save the baseline again")
    return BaselineModel(str(method), config, arrays)


def _check_loaded(path: Path, method: str, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Refuse settings, training periods and arrays that ``fit_baseline`` never writes.

    A hand-edited ``config.json`` (``power: -1``, a setting removed) or a truncated
    array would otherwise load and predict nonsense, or fail at ``predict`` with a
    bare ``KeyError`` or ``IndexError``."""
    def bad(what: str) -> DataError:
        return DataError(f"{str(path)!r}: {what}; the folder was edited or damaged, or saved by "
                         "an xmsgl that allowed it: fit and save the baseline again")

    for key in ("fit", "data"):
        if key in config and not isinstance(config[key], dict):
            raise bad(f"{CONFIG}'s {key} entry is a {type(config[key]).__name__}, not a dict")
    settings = config.get("settings")
    if isinstance(settings, dict):
        # A folder saved before a setting existed was fitted as its old value; its
        # config stays as saved (and its sha256 with it), since predict reads the arrays.
        settings = {**{k: v for k, v in _ADDED_SETTINGS.items() if k in _DEFAULTS[method]},
                    **settings}
    if not isinstance(settings, dict) or set(settings) != set(_DEFAULTS[method]):
        raise bad(f"{CONFIG} holds settings {settings!r}, where a {method!r} baseline has "
                  f"{sorted(_DEFAULTS[method])}")
    for name, value in settings.items():
        try:
            _setting(name, value, _DEFAULTS[method][name])
        except ParameterError as err:
            raise bad(f"{CONFIG} holds a {method!r} {err}") from None
    for key in ("train", "test"):
        if key == "test" and key not in config:
            continue  # recorded only when fit was given test=
        spans = config.get(key)
        ok = isinstance(spans, list) and all(
            isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(d, str) for d in pair)
            for pair in spans)
        if ok:
            try:
                for a, b in spans:  # type: ignore[union-attr]
                    ok = ok and pd.Timestamp(a) <= pd.Timestamp(b)
            except (ValueError, TypeError):
                ok = False
        if not ok:
            raise bad(f"{CONFIG} holds {key} {spans!r}, not a list of (start, end) dates")
    if "input_range" in config:
        # What predict judges the air temperatures against (absent in older folders).
        rng_ = config["input_range"]
        air = rng_.get("reach_air_temp") if isinstance(rng_, dict) else None

        def real(v: Any) -> bool:
            return not isinstance(v, bool) and isinstance(v, (int, float)) and bool(np.isfinite(v))

        fine = rng_ == {} or (
            isinstance(air, dict) and set(rng_) == {"reach_air_temp"}
            and isinstance(air.get("range"), list) and len(air["range"]) == 2
            and all(real(v) for v in air["range"]) and air["range"][0] <= air["range"][1]
            and real(air.get("std")) and air["std"] > 0 and isinstance(air.get("units", "degC"), str))
        if not fine:
            raise bad(f"{CONFIG} holds input_range {rng_!r}, not {{'reach_air_temp': {{'range': [low, "
                      "high], 'std': positive, 'units': ...}}")
    n_reach, n_seg = arrays["reach_ids"].shape, arrays["seg_ids"].shape
    want = {"reach_ids": (n_reach, "iu"), "seg_ids": (n_seg, "iu"),
            "reach_clim": ((*n_reach, _N_DOY), "f"), "seg_clim": ((*n_seg, _N_DOY), "f")}
    if method == "mohseni":
        want.update({"params": ((*n_reach, 4), "f"), "param_level": (n_reach, "iu")})
    wrong = [f"{k} {arrays[k].shape} {arrays[k].dtype}" for k, (shape, kinds) in want.items()
             if arrays[k].ndim != len(shape) or arrays[k].shape != shape or arrays[k].dtype.kind not in kinds]
    if len(n_reach) != 1 or len(n_seg) != 1 or wrong:
        raise bad(f"{ARRAYS} holds arrays of other shapes or types than a {method!r} baseline's "
                  f"(one row per reach or segment, {_N_DOY} days of the year, 4 Mohseni "
                  f"parameters): {wrong or ['reach_ids', 'seg_ids']}")
    # The climatologies are filled at every day of the year (the fallbacks end in the
    # pooled one, interpolated): NaN there would be predicted without a word.
    gaps = [k for k in ("reach_clim", "seg_clim") if not np.isfinite(arrays[k]).all()]
    if gaps:
        raise bad(f"{ARRAYS} holds NaN or infinite values in {gaps}, which fit_baseline fills at "
                  "every day of the year")


def _update_with_arrays(h: Any, arrays: dict[str, np.ndarray]) -> None:
    """Feed a baseline's arrays (names, dtypes, shapes and values, in name order) to ``h``."""
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.tobytes())


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of a baseline's arrays alone, recorded in ``config.json`` by ``save``."""
    h = hashlib.sha256()
    _update_with_arrays(h, arrays)
    return h.hexdigest()


def _same_number(value: Any, default: Any) -> bool:
    """Whether ``value`` is a plain number equal to ``default`` (not a bool)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and float(value) == float(default))


def taken_settings(method: str) -> list[str]:
    """The settings a caller may give baseline ``method`` (its config holds
    ``_UNREAD``'s too, which it does not read)."""
    return [k for k in _DEFAULTS[method] if k not in _UNREAD.get(method, ())]


def baseline_settings(method: str) -> tuple[str, ...]:
    """The keyword arguments :func:`fit_baseline` takes for baseline ``method``."""
    return ("train", "seed", *taken_settings(method))


def fit_baseline(
    ds: xr.Dataset,
    method: str,
    *,
    train: Any = None,
    seed: int = 0,
    **kw: Any,
) -> BaselineModel:
    """Fit a non-neural baseline on the training period's observations.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention with ``reach_temp`` (reach, time) and,
        optionally, ``seg_temp`` (seg, time), NaN where unobserved; ``"mohseni"``
        also needs ``reach_air_temp``. ``*_true`` variables are never read, and
        ``ds`` is not modified.
    method : str
        One of :data:`BASELINES` (see the module docstring for the formulas).
    train : (start, end) or list of (start, end), optional
        Days whose observations are used (ends included). Default:
        :func:`default_train_period` (every water year before the default test
        period of :func:`xmsgl.fit`).
    seed : int, default 0
        Recorded for symmetry with :func:`xmsgl.fit`; the baselines are
        deterministic.
    **kw
        Settings: ``window`` (days of the climatology window, 31), ``min_count`` (3,
        the observations a day of a reach's or segment's climatology needs in its
        window before it falls back to the next level), ``air_window``
        (days of the trailing air temperature mean, 5), ``min_obs`` (50, the
        observations a reach or segment needs for its own logistic fit) and
        ``min_months`` (8, the calendar months those observations must fall in) for
        ``"mohseni"``, which takes ``window`` and ``min_count`` at their defaults only
        (its config records them; it does not read them);
        ``power`` (2.0) and ``d_min`` (100.0 m, the smallest distance) for ``"idw"``.

    Returns
    -------
    BaselineModel

    Raises
    ------
    ParameterError
        An unknown method or setting, a window that is not a positive number of days.
    DataError
        No observation in the training period.
    SchemaError, TimeError
        A missing variable, a training period outside the data.

    Warns
    -----
    XmsglWarning
        The training observations give no variation to learn from, as
        :func:`xmsgl.fit` warns: one observation, or all of one value (a stuck
        sensor, a filled constant), pooled over ``reach_temp`` and ``seg_temp`` or
        within one of them.

    Examples
    --------
    >>> import xmsgl
    >>> from xmsgl.baselines import fit_baseline
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2003-09-30")
    >>> fit_baseline(ds, "harmonic").predict(ds).attrs["xmsgl_method"]
    'harmonic'
    """
    from xmsgl.model import _data_record, check_seed

    if method not in BASELINES:
        raise ChoiceError(f"method={method!r} is not a baseline; use one of {list(BASELINES)}")
    check_seed(seed)
    takes = sorted(taken_settings(method))
    # Given at their defaults (what a saved model's config records, given back to refit
    # it), they change nothing and are taken; other values would go unread.
    unread = sorted(k for k in set(kw) & set(_UNREAD.get(method, ()))
                    if not _same_number(kw[k], _DEFAULTS[method][k]))
    if unread:
        one = len(unread) == 1
        raise ParameterError(
            f"setting{'' if one else 's'} {unread} shape{'s' if one else ''} the day-of-year "
            f"climatology, which baseline {method!r} does not read (a day without air temperature "
            f"is predicted as NaN); leave {'it' if one else 'them'} out. It takes {takes}")
    unknown = sorted(set(kw) - set(_DEFAULTS[method]))
    if unknown:
        raise ParameterError(f"settings {unknown} are not known for baseline {method!r}; "
                             f"it takes {takes}")
    settings = {k: _setting(k, v, _DEFAULTS[method][k]) for k, v in {**_DEFAULTS[method], **kw}.items()}
    window = int(settings["window"])
    if window < 1:
        raise ParameterError(f"window={window!r} must be a positive number of days")
    ds = in_id_order(validate(ds))  # the same fit whatever the file's order
    topo = topology_arrays(ds)
    if TIME not in ds.dims:
        raise SchemaError("the dataset has no 'time' dimension; baselines need daily observations")
    if "reach_temp" not in ds.data_vars:
        raise SchemaError("baselines are fitted on 'reach_temp' on (reach, time) in degC (NaN where "
                          "unobserved); add it")
    # Read before the training period is chosen: a dataset without air temperatures is
    # refused before any word on how its record is split.
    air = _mohseni_air(ds) if method == "mohseni" else None
    times = pd.DatetimeIndex(ds[TIME].values)
    tmask, ranges = _train_mask(times, train)
    doy = _doy(times)
    y_reach = _reach_time(ds, "reach_temp", REACH)
    assert y_reach is not None
    y_seg = _reach_time(ds, "seg_temp", SEG)
    # Only training days are read; the rest are masked before any statistic.
    y_reach = np.where(tmask[None, :], y_reach, np.nan)
    y_seg = np.where(tmask[None, :], y_seg, np.nan) if y_seg is not None else None
    reach_clim, seg_clim, counts = _climatology_tables(y_reach, y_seg, topo, doy, window,
                                                       int(settings["min_count"]))
    warn_constant_observations([("reach_temp", y_reach)] + ([("seg_temp", y_seg)] if y_seg is not None
                                                             else []), f"baseline {method!r}")
    if method != "mohseni" and counts["doy_interpolated"]:
        # Observations of one season only: the other days of the year are drawn
        # between the nearest observed ones (a January from June and August). idw
        # and harmonic predict from that climatology wherever a day has no source.
        def day(pos: int) -> str:  # a day-of-year position (0-365) as day and month
            return (pd.Timestamp("2000-01-01") + pd.Timedelta(days=pos)).strftime("%d %b")

        whose = (f"climatology's training observations (in the training period {ranges})"
                 if method == "climatology" else
                 f"the training observations (in the training period {ranges}) of {method}'s "
                 "climatology, which it predicts on the days and at the reaches without a source,")
        warn_at_user(
            f"{whose} leave "
            f"{counts['doy_interpolated']} days of the year without one within its centred "
            f"window of {window} days (the longest run {day(counts['doy_interpolated_first'])} to "
            f"{day(counts['doy_interpolated_last'])}, {counts['doy_interpolated_longest']} days): "
            "their values are interpolated between the nearest observed days of the year, not "
            "learned; score them on held-out days of those seasons, or give a training period "
            "whose observations cover them", FewObservationsWarning)
    arrays: dict[str, np.ndarray] = {
        "reach_ids": topo.reach_ids.astype(np.int64),
        "seg_ids": topo.seg_ids.astype(np.int64),
        "reach_clim": reach_clim.astype(np.float32),
        "seg_clim": seg_clim.astype(np.float32),
    }
    info: dict[str, Any] = {"climatology_days": counts,
                            "n_reach_obs": int(np.isfinite(y_reach).sum()),
                            "n_seg_obs": int(np.isfinite(y_seg).sum()) if y_seg is not None else 0}
    if air is not None:  # mohseni's, read once: the curves' fit and their inputs' range
        params, level, few_months = _fit_mohseni_all(ds, air, y_reach, y_seg, topo, settings)
        arrays["params"] = params
        arrays["param_level"] = level
        info["param_levels"] = {"own": int((level == 0).sum()), "segment": int((level == 1).sum()),
                                "pooled": int((level == 2).sum())}
        info["few_months"] = few_months
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {"method": method, "settings": settings, "train": ranges, "seed": int(seed),
              "created": now, "xmsgl": _version(), "fit": info, "day_of_year": DAY_OF_YEAR}
    if train is None:
        # The default split's test days, held out as fit holds them out of a network's
        # fit: named with the outputs (xmsgl_test_periods), to score on.
        config["test"] = [list(map(str, p)) for p in split_periods(times)["test"]]
    if air is not None:
        config["input_range"] = _air_range(air, y_reach, y_seg, topo)
    # What identifies the data it learned from, as a network's record does
    # (:meth:`BaselineModel.check_data` compares a dataset with it).
    config["data"] = _data_record(ds, y_reach.T, None if y_seg is None else y_seg.T, tmask,
                                  inputs=list(_FIT_INPUTS.get(method, ())), days_text="training")
    return BaselineModel(method, config, arrays)


#: The input variables a baseline's fit reads, whose values on the training days its
#: data record hashes (the observations are hashed as targets).
_FIT_INPUTS: dict[str, tuple[str, ...]] = {"mohseni": ("reach_air_temp",)}


#: The smallest value each setting may take, and why (a setting outside is refused).
_LEAST: dict[str, tuple[float, bool, str]] = {
    # name: (bound, bound allowed, what it means)
    "window": (1, True, "a number of days"),  # at most 366 too (_MOST)
    "min_count": (1, True, "a number of observations"),
    "air_window": (1, True, "a number of days"),
    "min_obs": (4, True, "the Mohseni curve has four parameters"),
    "min_months": (1, True, "a number of calendar months"),
    "power": (0, False, "weights must fall with distance"),
    "d_min": (0, False, "a distance in m"),
}


#: The largest value a setting may take, and why.
_MOST: dict[str, tuple[float, str]] = {
    # A window of 366 days covers every day of the year once (a constant climatology);
    # wider ones counted some days twice.
    "window": (366, "a window of 366 days already covers every day of the year"),
    "min_months": (12, "a year has 12 months"),
}


def _setting(name: str, value: Any, default: int | float) -> int | float:
    """A setting as a plain Python number of the default's type, or a typed error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(float(value)):
        raise ParameterError(f"setting {name}={value!r} must be a finite number (default {default!r})")
    if isinstance(default, int) and float(value) != int(float(value)):
        raise ParameterError(f"setting {name}={value!r} must be a whole number (default {default!r})")
    most = _MOST.get(name)
    if most is not None and float(value) > most[0]:
        raise ParameterError(f"setting {name}={value!r} must be at most {most[0]:g} ({most[1]}; "
                             f"default {default!r})")
    least, inclusive, why = _LEAST.get(name, (-np.inf, True, ""))
    if float(value) < least or (not inclusive and float(value) == least):
        raise ParameterError(
            f"setting {name}={value!r} must be {'at least' if inclusive else 'above'} {least:g} "
            f"({why}; default {default!r})"
        )
    # numpy scalars (np.int64 from np.arange, ...) are not JSON serializable: the
    # fitted baseline could not be saved to config.json.
    return int(float(value)) if isinstance(default, int) else float(value)


def _mohseni_air(ds: xr.Dataset) -> np.ndarray:
    """``reach_air_temp`` as (reach, time) values, or a :class:`SchemaError` that names
    the dataset's other air temperatures (the Delaware files have ``reach_tave_air``)."""
    air = _reach_time(ds, "reach_air_temp", REACH, water=False)
    if air is not None:
        return air
    others = sorted(str(k) for k, v in ds.data_vars.items()
                    if set(map(str, v.dims)) == {REACH, TIME} and "air" in str(k)
                    and is_temperature_units(v.attrs.get("units", "")))
    hint = (f"; this dataset has {others}: use one as the air temperature, in Python with "
            f"ds = ds.assign(reach_air_temp=ds[{others[0]!r}]), or for the xmsgl command by "
            f"adding such a copy named 'reach_air_temp' to the file" if others else
            "; add the daily mean air temperature at each reach")
    raise SchemaError(f"method 'mohseni' needs 'reach_air_temp' on (reach, time) in degC{hint}")


def _air_range(air: np.ndarray, y_reach: np.ndarray, y_seg: np.ndarray | None, topo: Topology
               ) -> dict[str, dict[str, Any]]:
    """The air temperatures the Mohseni curves were fitted on (at each observation: the
    reach's, or the outlet reach's of an observed segment): their range and spread, which
    ``predict`` judges a dataset's air temperatures against (degF labelled degC would
    put every winter day on the curve's summer plateau). ``air``: :func:`_mohseni_air`."""
    seen = [air[np.isfinite(y_reach)]]
    if y_seg is not None:
        seen.append(air[_outlet_reach_idx(topo)][np.isfinite(y_seg)])
    vals = np.concatenate(seen)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return {}
    return {"reach_air_temp": {"range": [float(vals.min()), float(vals.max())],
                               "std": float(vals.std()) or 1.0, "units": "degC"}}


def _warn_air_range(config: dict[str, Any], air: np.ndarray) -> None:
    """Warn (:class:`~xmsgl.exceptions.InputRangeWarning`) when the air temperatures of
    the days predicted lie far beyond those the curves were fitted on, as ``downscale``
    judges a network's inputs (:func:`xmsgl.coverage.input_range_sentence`)."""
    from xmsgl.coverage import warn_input_range

    known = (config.get("input_range") or {}).get("reach_air_temp")
    vals = air[np.isfinite(air)]
    if not isinstance(known, dict) or vals.size == 0:
        return
    name = "reach_air_temp"
    warn_input_range(
        [(name, (float(vals.min()), float(vals.max())), lambda: air.T)],
        {name: known["range"]}, {name: float(known["std"])}, {name: str(known.get("units", "degC"))},
        more="model.config['input_range'] holds the range")


def _months_observed(y: np.ndarray, months: np.ndarray) -> np.ndarray:
    """How many of the 12 calendar months hold an observation, per row of ``y`` (node,
    time); ``months``: each day's month, 1-12."""
    seen = np.isfinite(y)
    return np.stack([seen[:, months == m].any(axis=1) for m in range(1, 13)], axis=1).sum(axis=1)


def _fit_mohseni_all(
    ds: xr.Dataset, raw_air: np.ndarray, y_reach: np.ndarray, y_seg: np.ndarray | None,
    topo: Topology, settings: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Mohseni parameters of every reach from ``raw_air`` (:func:`_mohseni_air` of ``ds``),
    the level each came from, and how many reaches and segments had ``min_obs``
    observations but in fewer than ``min_months`` months (their curves are not used:
    a curve fitted on summer days alone sets its lower plateau from summer water and
    predicted about 16 degC all winter)."""
    times = pd.DatetimeIndex(ds[TIME].values)
    air = _smooth_air(raw_air, int(settings["air_window"]), times)
    min_obs = int(settings["min_obs"])
    min_months = int(settings["min_months"])
    months = np.asarray(times.month)
    outlet = _outlet_reach_idx(topo)
    xs = [air[np.isfinite(y_reach)]]
    ys = [y_reach[np.isfinite(y_reach)]]
    if y_seg is not None:
        xs.append(air[outlet][np.isfinite(y_seg)])
        ys.append(y_seg[np.isfinite(y_seg)])
    pooled = _fit_mohseni(np.concatenate(xs), np.concatenate(ys))
    if pooled is None:
        raise DataError("the pooled logistic regression of 'mohseni' did not converge or has fewer "
                        "than 5 training observations; use another baseline or more observations")
    seg_params: list[np.ndarray | None] = [None] * topo.n_seg
    few = {"reaches": 0, "segments": 0}
    if y_seg is not None:
        enough = np.isfinite(y_seg).sum(axis=1) >= min_obs
        spread = _months_observed(y_seg, months) >= min_months
        few["segments"] = int((enough & ~spread).sum())
        for s in np.flatnonzero(enough & spread):
            seg_params[s] = _fit_mohseni(air[outlet[s]], y_seg[s])
    params = np.empty((topo.n_reach, 4))
    level = np.full(topo.n_reach, 2, dtype=np.int8)
    enough = np.isfinite(y_reach).sum(axis=1) >= min_obs
    spread = _months_observed(y_reach, months) >= min_months
    few["reaches"] = int((enough & ~spread).sum())
    for r in range(topo.n_reach):
        own = _fit_mohseni(air[r], y_reach[r]) if enough[r] and spread[r] else None
        seg = seg_params[topo.reach_seg_idx[r]]
        if own is not None:
            params[r], level[r] = own, 0
        elif seg is not None:
            params[r], level[r] = seg, 1
        else:
            params[r] = pooled
    return params, level, few


# ----------------------------------------------------------------------------- interpolators


def coarse_copies(ds: xr.Dataset) -> xr.DataArray | None:
    """(reach, time), True at each segment's outlet reach on the days its ``seg_temp`` is
    observed: there ``idw`` and ``harmonic`` return the coarse observation (where the
    reach has no observation of its own that day). None for a dataset without
    ``seg_temp`` or without a usable topology (the outlet reaches are then unknown)."""
    if "seg_temp" not in ds.data_vars:
        return None
    try:
        topo = topology_arrays(ds)
    except XmsglError:
        return None
    outlet = np.asarray(topo.seg_outlet_reach_idx)
    seg_of = np.full(topo.n_reach, -1, dtype=np.int64)
    seg_of[outlet[outlet >= 0]] = np.flatnonzero(outlet >= 0)
    seen = ds["seg_temp"].notnull().isel({SEG: xr.DataArray(np.maximum(seg_of, 0), dims=REACH)})
    seen = seen.drop_vars([c for c in seen.coords if SEG in seen[c].dims or c == SEG])
    return seen.assign_coords({REACH: ds[REACH]}) & xr.DataArray(
        seg_of >= 0, dims=REACH, coords={REACH: ds[REACH]})


def _idw(
    src: np.ndarray, y_seg: np.ndarray | None, topo: Topology, length: np.ndarray,
    clim_r: np.ndarray, clim_s: np.ndarray, power: float, d_min: float,
) -> np.ndarray:
    from xmsgl.graph import flow_distances

    observed = np.isfinite(src)
    cols = np.flatnonzero(observed.any(axis=1))
    dist, _ = flow_distances(topo.reach_to_idx, length)
    sub = dist[:, cols].tocsr() if cols.size else sp.csr_matrix((topo.n_reach, 0))
    w = sub.copy()
    w.data = 1.0 / np.maximum(np.abs(w.data), d_min) ** power
    m = observed[cols].astype(np.float64)
    num = w @ np.where(observed[cols], src[cols], 0.0)
    den = w @ m
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    # Fallbacks for reaches with no source on their flow path that day: the
    # segment's coarse observation, then the reach's climatology.
    if y_seg is not None:
        coarse = y_seg[topo.reach_seg_idx]
        values = np.where(np.isfinite(values), values, coarse)
    values = np.where(np.isfinite(values), values, clim_r)
    # Sources are reproduced exactly (the weight of a zero distance is infinite).
    return np.where(observed, src, values)


def _harmonic(src: np.ndarray, topo: Topology, length: np.ndarray, clim_r: np.ndarray) -> np.ndarray:
    from scipy.sparse.csgraph import connected_components
    from scipy.sparse.linalg import splu

    n = topo.n_reach
    boundary = np.isfinite(src).any(axis=1)
    values = np.array(clim_r, dtype=np.float64, copy=True)
    if not boundary.any():
        return values
    xb = np.where(np.isfinite(src), src, clim_r)
    down = np.flatnonzero(topo.reach_to_idx >= 0)
    to = topo.reach_to_idx[down]
    cond = 1.0 / np.maximum(0.5 * (length[down] + length[to]), 1.0)
    a = sp.coo_matrix((np.concatenate([cond, cond]), (np.concatenate([down, to]),
                                                      np.concatenate([to, down]))), shape=(n, n)).tocsr()
    lap = (sp.diags(np.asarray(a.sum(axis=1)).ravel()) - a).tocsr()
    # Trees without a boundary node have a singular block: they keep the climatology.
    _, comp = connected_components(a, directed=False)
    has_b = np.zeros(n, dtype=bool)
    has_b[np.unique(comp[boundary])] = True
    interior = np.flatnonzero(~boundary & has_b[comp])
    bidx = np.flatnonzero(boundary)
    values[bidx] = xb[bidx]
    if interior.size:
        lu = splu(lap[interior][:, interior].tocsc())
        rhs = -(lap[interior][:, bidx] @ xb[bidx])
        values[interior] = lu.solve(np.asfortranarray(rhs))
    return values

