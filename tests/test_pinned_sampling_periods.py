"""sparsify's draw and the default water-year split, pinned value by value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xmsgl.periods import WHOLE_WATER_YEAR_DAYS, split_periods, whole_water_years
from xmsgl.sampling import sparsify


def _grid(n_reach: int = 4, n_time: int = 6) -> xr.Dataset:
    """A small fixed record: values 0, 1, 2, ... with two gaps, reach ids 10, 20, ..."""
    v = np.arange(n_reach * n_time, dtype=float).reshape(n_reach, n_time)
    v[1, 2] = np.nan
    v[3, 0] = np.nan
    return xr.Dataset(
        {"reach_temp": (("reach", "time"), v, {"units": "degC", "long_name": "water"})},
        coords={"reach": 10 * np.arange(1, n_reach + 1),
                "time": pd.date_range("2000-01-01", periods=n_time)},
    )


def test_sparsify_golden_draw_of_seed_0() -> None:
    # Guards the seed -> draw mapping: a seed gives the same observations everywhere
    # and in every release (changing it would silently change published benchmarks).
    out = sparsify(_grid(), keep=0.25, seed=0)
    kept = np.argwhere(out.reach_temp.notnull().values).tolist()
    assert kept == [[0, 0], [0, 5], [1, 0], [1, 4], [2, 0], [2, 3]]
    by_reach = sparsify(_grid(), keep=0.5, seed=0, by="reach")
    assert np.flatnonzero(by_reach.reach_temp.notnull().values.any(axis=1)).tolist() == [2, 3]


@pytest.mark.parametrize("by", ["observation", "reach"])
def test_sparsify_draw_does_not_depend_on_row_order(by: str) -> None:
    # Guards the draw being made in the order of reach ids and dates, not of rows.
    ds = _grid(6, 20)
    ref = sparsify(ds, keep=0.3, seed=5, by=by).reach_temp.notnull()
    shuffled = ds.isel(reach=[3, 0, 5, 1, 4, 2], time=np.random.default_rng(1).permutation(20))
    got = sparsify(shuffled, keep=0.3, seed=5, by=by).reach_temp.notnull()
    got = got.sortby("reach").sortby("time")
    np.testing.assert_array_equal(got.values, ref.values)


@pytest.mark.parametrize("seed", range(8))
def test_sparsify_by_reach_draws_among_observed_reaches_only(seed: int) -> None:
    # Guards the reach draw's candidates: only reaches with an observation, so the
    # share kept is of the observed reaches (unobserved ones would use up the draw).
    ds = _grid(8, 10)
    ds["reach_temp"][4:] = np.nan  # half the reaches never observed
    out = sparsify(ds, keep=0.25, seed=seed, by="reach")
    kept = out.reach_temp.notnull().values.any(axis=1)
    assert int(kept.sum()) == round(0.25 * 4) == 1
    # A kept reach keeps all its observations.
    r = int(np.flatnonzero(kept)[0])
    np.testing.assert_array_equal(out.reach_temp.values[r], ds.reach_temp.values[r])


def test_sparsify_keeps_the_variable_attrs() -> None:
    # Guards the thinned variable's attributes (units above all) surviving the thinning.
    out = sparsify(_grid(), keep=0.5, seed=0)
    attrs = out.reach_temp.attrs
    assert attrs["units"] == "degC" and attrs["long_name"] == "water"
    assert "keep=0.5" in attrs["xmsgl_sparsify"]


def test_whole_water_years_need_330_days_from_first_to_last() -> None:
    # Guards the threshold of a whole water year (WHOLE_WATER_YEAR_DAYS = 330 days
    # from the first to the last day of the year in the record).
    assert WHOLE_WATER_YEAR_DAYS == 330
    # 2001-03-01 .. 2001-09-30 spans 213 days: water year 2001 is partial.
    t = pd.date_range("2001-03-01", "2008-09-30")
    assert whole_water_years(t).tolist() == list(range(2002, 2009))
    # A year ending on 30 September whose first day is 330 days earlier counts,
    # one whose first day is 329 days earlier does not.
    end = pd.Timestamp("2005-09-30")
    assert whole_water_years(pd.date_range(end - pd.Timedelta(days=330), end)).tolist() == [2005]
    assert whole_water_years(pd.date_range(end - pd.Timedelta(days=329), end)).tolist() == []


def test_default_split_of_eleven_water_years() -> None:
    # Guards the sizes of the default split: with n = 11 whole water years, the last
    # round(11 / 6) = 2 are the test period and the round(11 / 12) = 1 before them
    # validation.
    t = pd.date_range("2000-10-01", "2011-09-30")
    assert whole_water_years(t).size == 11
    split = split_periods(t)
    assert split["test"] == [("2009-10-01", "2011-09-30")]
    assert split["val"] == [("2008-10-01", "2009-09-30")]
    assert split["train"] == [("2000-10-01", "2008-09-30")]


def test_whole_water_years_beyond_2262_in_the_days_own_unit() -> None:
    # datetime64[s] days past 2262, as docs/convention.md allows: the years' first and
    # last days were taken in nanoseconds, which cannot hold them (they wrapped around).
    t = pd.DatetimeIndex(np.arange(np.datetime64("2300-10-01", "s"), np.datetime64("2304-09-01", "s"),
                                   np.timedelta64(1, "D")))
    assert t.dtype == "datetime64[s]"
    assert whole_water_years(t).tolist() == [2301, 2302, 2303, 2304]
    assert whole_water_years(t[t < np.datetime64("2304-08-26", "s")]).tolist() == [2301, 2302, 2303]
