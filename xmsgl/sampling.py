"""Thin out fine observations to emulate sparse monitoring (no torch here)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xmsgl.convention import REACH, TIME, _refuse_timezones, cftime_message, stamp_text
from xmsgl.exceptions import ChoiceError, ParameterError, SchemaError, TimeError, format_ids, typed_arguments
from xmsgl.periods import period_days

__all__ = ["sparsify"]


@typed_arguments
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
    new array. Exactly ``round(keep * n)`` of the ``n`` candidates are kept (Python's
    ``round``, halves to even: ``keep=0.25`` of 10 keeps 2; at least one when
    ``keep > 0`` and there is any), drawn with
    :func:`numpy.random.default_rng` in the order of reach ids and dates, so that a
    seed gives the same draw everywhere, however the dataset's rows are ordered. A
    dask-backed ``variable`` stays lazy (only where it is observed is computed).

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
        reaches become unobserved. Only ``variable`` is thinned: where coarse
        observations come from the same gauges (on the Delaware data ``seg_temp``
        is the mean of the segment's reach observations), a dropped reach's data
        stays in them, so hide its segment's ``seg_temp`` too before scoring there
        as held out (``cross_validate`` does so by default).
    period : label, (start, end) or list of them, optional
        Thin only days inside it (ends included, read by
        :func:`xmsgl.periods.period_list`); other days keep all their
        observations. Default: every day. Using the same sparsity for the training
        and validation periods (the default) keeps validation honest. The share is
        drawn over all the candidates at once, so which training observations are
        kept depends on where the other candidates are (not on their values): to
        keep the test period's observations out of the draw, and whole for scoring,
        give the training and validation days here.
    variable : str, default "reach_temp"
        The observation variable to thin.

    Returns
    -------
    xarray.Dataset
        A copy of ``ds`` with ``variable`` thinned and its attribute
        ``xmsgl_sparsify`` recording the call and how many observations it kept
        of the candidates (those inside ``period`` when it is given; after an earlier
        call's record, joined by ``"; then "``).

    Raises
    ------
    ParameterError
        ``ds`` is not a Dataset; ``keep``, ``seed``, ``by`` or ``period`` is of the
        wrong kind or out of range.
    SchemaError
        ``variable`` is missing, not on (reach, time), or not of a float dtype; reach
        ids that are missing, given twice or of several types.
    TimeError
        ``time`` does not hold dates (or holds dates with a time zone, NaT, or a date
        twice), or ``period`` holds none of its days.

    Warns
    -----
    XmsglWarning
        ``period`` reaches before the first or past the last day of ``ds``: only
        the days it holds are thinned (as ``fit`` and ``downscale`` warn).

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> ds = xr.Dataset({"reach_temp": (("reach", "time"), np.ones((4, 50)), {"units": "degC"})},
    ...                 coords={"reach": [1, 2, 3, 4], "time": pd.date_range("2000-01-01", periods=50)})
    >>> out = sparsify(ds, keep=0.1, seed=0)
    >>> int(out["reach_temp"].notnull().sum()), int(ds["reach_temp"].notnull().sum())
    (20, 200)
    """
    if not isinstance(ds, xr.Dataset):
        raise ParameterError(
            f"sparsify needs an xarray.Dataset, got {type(ds).__name__}; "
            "pass the dataset holding the observations (for a DataArray use .to_dataset())"
        )
    if isinstance(keep, (bool, np.bool_)) or not isinstance(keep, (int, float, np.integer, np.floating)):
        raise ParameterError(f"keep={keep!r} must be a number between 0 and 1 (0.01 keeps 1%)")
    if not 0.0 <= float(keep) <= 1.0:
        raise ParameterError(f"keep={keep!r} must be a share between 0 and 1 (0.01 keeps 1%)")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed={seed!r} must be a non-negative integer (for example 42)")
    if by not in ("observation", "reach"):
        raise ChoiceError(f"by={by!r} is not known; use 'observation' or 'reach'")
    if variable not in ds.data_vars:
        raise SchemaError(f"variable {variable!r} is not in the dataset; nothing to sparsify")
    da = ds[variable]
    if set(map(str, da.dims)) != {REACH, TIME}:
        raise SchemaError(f"variable {variable!r} must be on ('reach', 'time'), got {tuple(da.dims)}")
    if not np.issubdtype(da.dtype, np.floating):
        raise SchemaError(
            f"variable {variable!r} has dtype {da.dtype}, which cannot hold the NaN that marks a "
            f"dropped observation; convert it first, e.g. ds[{variable!r}].astype('float64')"
        )
    if TIME in ds.coords:
        _refuse_timezones(ds[TIME])  # zoned stamps: a plain TypeError below
    if TIME not in ds.coords or not np.issubdtype(ds[TIME].dtype, np.datetime64):
        first = ds[TIME].values.flat[0] if TIME in ds.coords and ds.sizes[TIME] else None
        calendar = getattr(first, "calendar", None)
        if calendar is not None:
            raise TimeError(cftime_message(calendar))
        got = ds[TIME].dtype if TIME in ds.coords else "no coordinate"
        raise TimeError(
            f"coordinate 'time' must hold dates (datetime64), got {got}; "
            "convert it with pd.to_datetime or decode the file with decode_times=True"
        )
    stamps = pd.DatetimeIndex(ds[TIME].values)
    # The draw follows the dates and the reach ids: a date missing or given more than
    # once, or an id so, would make it depend on the rows' order.
    if stamps.hasnans:
        raise TimeError(
            f"coordinate 'time' holds NaT (not-a-time) at positions "
            f"{format_ids(np.flatnonzero(stamps.isna()))}; drop those steps with "
            "ds.sel(time=ds['time'].notnull()) or fix their dates")
    if stamps.has_duplicates:
        twice = sorted({stamp_text(d) for d in stamps[stamps.duplicated()]})
        raise TimeError(f"coordinate 'time' holds dates more than once ({format_ids(twice)}); keep "
                        "the first of each with ds.drop_duplicates('time')")
    # Without an id coordinate the positions are the ids.
    ids = pd.Index(np.asarray(ds[REACH].values) if REACH in ds.coords else np.arange(ds.sizes[REACH]))
    if ids.hasnans:
        raise SchemaError(f"coordinate 'reach' holds missing ids (NaN or None) at positions "
                          f"{format_ids(np.flatnonzero(ids.isna()))}; give every reach an id")
    if ids.has_duplicates:
        raise SchemaError(f"coordinate 'reach' has duplicate ids "
                          f"{format_ids(ids[ids.duplicated()].unique())}; each reach must appear "
                          "once: drop or merge the duplicates")
    try:
        rows = np.argsort(np.asarray(ids), kind="stable")
    except TypeError:  # ids of several types (numbers and text) have no order
        raise SchemaError(
            f"coordinate 'reach' mixes ids of several types "
            f"({sorted({type(v).__name__ for v in ids})}); give ids of one type (all integers, "
            "or all text)") from None
    da_rt = da.transpose(REACH, TIME)
    # Only where the observations are is read: a dask-backed variable stays lazy.
    observed = np.asarray(da_rt.notnull().values)
    # The dates in order (the rows' may be any): the draw follows them, and so does the
    # warning of a period reaching beyond the record, as fit and downscale warn.
    cols = np.argsort(np.asarray(stamps), kind="stable")
    if period is not None:
        in_order = period_days(stamps[cols], period, "thinned", "period")
        if len(stamps) and not in_order.any():  # (an empty record has nothing to thin)
            raise TimeError(
                f"period={period!r} holds no day of the dataset ({stamps.min().date()} to "
                f"{stamps.max().date()}), so nothing would be dropped; give dates inside it"
            )
        in_period = np.empty_like(in_order)
        in_period[cols] = in_order
        observed &= in_period[None, :]
    # The draw is made in the order of reach ids and dates, so that it does not
    # depend on how the dataset's rows happen to be ordered.
    drop = np.zeros_like(observed)
    drop[np.ix_(rows, cols)] = _draw(observed[np.ix_(rows, cols)], keep, seed, by)
    kept = int(observed.sum() - drop.sum())
    call = (f"keep={keep}, seed={seed}, by={by!r}, period={period!r}: {kept} of "
            f"{int(observed.sum())} observations kept")
    if by == "reach":
        # What the share applied to: the observed reaches.
        call += (f" ({int((observed & ~drop).any(axis=1).sum())} of "
                 f"{int(observed.any(axis=1).sum())} observed reaches)")
    # A second thinning adds to the record, so the share left overall stays readable.
    before = da.attrs.get("xmsgl_sparsify")
    attrs = {**da.attrs, "xmsgl_sparsify": f"{before}; then {call}" if before else call}
    new = da_rt.where(~xr.DataArray(drop, dims=(REACH, TIME)))
    new.attrs = attrs
    out = ds.copy(deep=False)
    out[variable] = new.transpose(*da.dims)
    return out


def _draw(observed: np.ndarray, keep: float, seed: int, by: str) -> np.ndarray:
    """Which of the ``observed`` (reach, time) values to drop."""
    rng = np.random.default_rng(seed)
    if by == "observation":
        cand = np.flatnonzero(observed.ravel())
        n_keep = int(round(keep * cand.size))
        if keep > 0 and cand.size:
            n_keep = max(1, n_keep)
        kept = rng.choice(cand, size=n_keep, replace=False) if n_keep else np.array([], dtype=np.int64)
        flat = observed.ravel().copy()
        flat[kept] = False
        return flat.reshape(observed.shape)
    reaches = np.flatnonzero(observed.any(axis=1))
    n_keep = int(round(keep * reaches.size))
    if keep > 0 and reaches.size:
        n_keep = max(1, n_keep)
    kept = rng.choice(reaches, size=n_keep, replace=False) if n_keep else np.array([], dtype=np.int64)
    lose = np.ones(observed.shape[0], dtype=bool)
    lose[kept] = False
    return observed & lose[:, None]
