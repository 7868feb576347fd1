"""sparsify: exact shares, reproducible draws, the input left untouched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl
from xmsgl.exceptions import SchemaError, TimeError, XmsglError
from xmsgl.sampling import sparsify


@pytest.fixture
def obs() -> xr.Dataset:
    rng = np.random.default_rng(0)
    v = rng.normal(10, 3, (20, 100)).astype("float32")
    v[rng.random(v.shape) < 0.3] = np.nan
    return xr.Dataset({"reach_temp": (("reach", "time"), v, {"units": "degC"})},
                      coords={"reach": np.arange(1, 21), "time": pd.date_range("2000-01-01", periods=100)})


def test_keeps_exact_share_and_never_modifies_input(obs: xr.Dataset) -> None:
    before = obs.reach_temp.values.copy()
    n = int(obs.reach_temp.notnull().sum())
    out = sparsify(obs, keep=0.1, seed=1)
    assert int(out.reach_temp.notnull().sum()) == round(0.1 * n)
    np.testing.assert_array_equal(obs.reach_temp.values, before)
    kept = out.reach_temp.notnull().values
    np.testing.assert_array_equal(out.reach_temp.values[kept], before[kept])
    assert "keep=0.1" in out.reach_temp.attrs["xmsgl_sparsify"]


def test_same_seed_same_draw(obs: xr.Dataset) -> None:
    a = sparsify(obs, keep=0.05, seed=7).reach_temp.notnull().values
    b = sparsify(obs, keep=0.05, seed=7).reach_temp.notnull().values
    c = sparsify(obs, keep=0.05, seed=8).reach_temp.notnull().values
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_by_reach_hides_whole_reaches(obs: xr.Dataset) -> None:
    out = sparsify(obs, keep=0.25, seed=0, by="reach")
    observed = out.reach_temp.notnull().any("time").values
    assert observed.sum() == 5
    np.testing.assert_array_equal(out.reach_temp.values[observed], obs.reach_temp.values[observed])


def test_period_limits_the_thinning(obs: xr.Dataset) -> None:
    out = sparsify(obs, keep=0.0, period=("2000-01-01", "2000-01-31"))
    assert int(out.reach_temp.sel(time=slice("2000-01-01", "2000-01-31")).notnull().sum()) == 0
    late = slice("2000-02-01", None)
    np.testing.assert_array_equal(out.reach_temp.sel(time=late).values, obs.reach_temp.sel(time=late).values)


@pytest.mark.filterwarnings("default::xmsgl.exceptions.XmsglWarning")
def test_a_period_reaching_past_the_record_warns_as_fit_does(obs: xr.Dataset) -> None:
    # It thinned the days it held without a word, where fit and downscale warn.
    with pytest.warns(xmsgl.XmsglWarning, match=r"period=\('2000-03-01', '2000-12-31'\) reaches past the "
                                                r"dataset's days \(2000-01-01 to 2000-04-09\): only the 40 "
                                                r"days from 2000-03-01 to 2000-04-09 are thinned"):
        out = sparsify(obs, keep=0.0, period=("2000-03-01", "2000-12-31"))
    assert int(out.reach_temp.sel(time=slice("2000-03-01", None)).notnull().sum()) == 0
    # Rows in another order: the same warning (the days in date order) and the same draw.
    shuffled = obs.isel(time=np.random.default_rng(1).permutation(obs.sizes["time"]))
    with pytest.warns(xmsgl.XmsglWarning, match=r"only the 40 days from 2000-03-01 to 2000-04-09"):
        again = sparsify(shuffled, keep=0.5, period=("2000-03-01", "2000-12-31"), seed=3)
    np.testing.assert_array_equal(
        again.sortby("time").reach_temp.notnull().values,
        sparsify(obs, keep=0.5, period=("2000-03-01", "2000-04-09"), seed=3).reach_temp.notnull().values)


def test_tiny_share_keeps_at_least_one(obs: xr.Dataset) -> None:
    assert int(sparsify(obs, keep=1e-9).reach_temp.notnull().sum()) == 1


def test_bad_arguments(obs: xr.Dataset) -> None:
    with pytest.raises(XmsglError, match="keep="):
        sparsify(obs, keep=5)
    with pytest.raises(XmsglError, match="by="):
        sparsify(obs, by="segment")
    with pytest.raises(SchemaError, match="'seg_temp'"):
        sparsify(obs, variable="seg_temp")
    # A period outside the record used to drop nothing and be recorded as applied.
    with pytest.raises(TimeError, match=r"period=\('2030', '2031'\) holds no day of the dataset"):
        sparsify(obs, keep=0.01, period=("2030", "2031"))


def test_accessor_forwards(obs: xr.Dataset) -> None:
    import xmsgl  # noqa: F401  (registers ds.msgl)

    out = obs.msgl.sparsify(keep=0.5, seed=3)
    np.testing.assert_array_equal(out.reach_temp.values, sparsify(obs, keep=0.5, seed=3).reach_temp.values)


def test_the_record_says_what_was_kept_and_keeps_earlier_calls() -> None:
    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2001-01-01", end="2001-12-31",
                                        reach_obs_share=0.5)
    n = int(ds.reach_temp.notnull().sum())
    once = ds.msgl.sparsify(keep=0.5, seed=0)
    twice = once.msgl.sparsify(keep=0.5, seed=1)
    first = once.reach_temp.attrs["xmsgl_sparsify"]
    assert first.startswith("keep=0.5, seed=0") and f"{round(0.5 * n)} of {n} observations kept" in first
    record = twice.reach_temp.attrs["xmsgl_sparsify"]
    assert record.startswith(first + "; then keep=0.5, seed=1")
    assert record.endswith(f"{int(twice.reach_temp.notnull().sum())} of {round(0.5 * n)} observations kept")


def test_the_short_record_split_counts_whole_days_and_whole_years_hold_their_days() -> None:
    # int(90 * 0.70) was 62 (0.7 * 90 = 62.999...): a day lost to rounding; and a water
    # year of two days 364 days apart (a gap allows it) counted as whole, and became
    # the test period.
    import pandas as pd

    from xmsgl.periods import split_periods, whole_water_years

    t = pd.date_range("2001-01-01", periods=90)
    p = split_periods(t)
    assert p["train"] == [("2001-01-01", "2001-03-04")]   # 63 days, then 13 and 14
    assert p["val"] == [("2001-03-05", "2001-03-17")] and p["test"] == [("2001-03-18", "2001-03-31")]
    gap = pd.date_range("2000-10-01", "2003-10-01").append(pd.DatetimeIndex(["2004-09-30"]))
    assert whole_water_years(gap).tolist() == [2001, 2002, 2003]
    assert split_periods(gap)["test"] == [("2002-10-01", "2004-09-30")]


def test_thinning_by_reach_records_how_many_reaches_it_kept() -> None:
    ds = xmsgl.datasets.synthetic_basin(n_segments=6, start="2001-01-01", end="2001-03-31", seed=3,
                                        reach_obs_share=0.3)
    n = int(ds.reach_temp.notnull().any("time").sum())
    thin = xmsgl.sampling.sparsify(ds, keep=0.5, seed=0, by="reach")
    kept = int(thin.reach_temp.notnull().any("time").sum())
    assert thin.reach_temp.attrs["xmsgl_sparsify"].endswith(f"({kept} of {n} observed reaches)")
    assert kept == max(1, round(0.5 * n))


def test_refuses_ids_and_dates_the_draw_cannot_follow() -> None:
    # The draw follows reach ids and dates: zoned dates and ids of two types failed with a
    # plain TypeError, and a duplicate id (or date) made the draw depend on the rows' order.
    def data(reach: object, time: object) -> xr.Dataset:
        return xr.Dataset({"reach_temp": (("reach", "time"), np.ones((4, 20)))},
                          coords={"reach": reach, "time": time})

    days = pd.date_range("2000-01-01", periods=20)
    with pytest.raises(TimeError, match="timezone-aware timestamps"):
        sparsify(data([1, 2, 3, 4], pd.date_range("2000-01-01", periods=20, tz="UTC")), keep=0.5)
    with pytest.raises(SchemaError, match=r"mixes ids of several types \(\['int', 'str'\]\); give "
                                          r"ids of one type"):
        sparsify(data(np.array([1, "a", 2, "b"], dtype=object), days), keep=0.5)
    with pytest.raises(SchemaError, match=r"duplicate ids \[7\];"):
        sparsify(data([7, 7, 7, 9], days), keep=0.5)
    with pytest.raises(SchemaError, match=r"missing ids \(NaN or None\) at positions \[1\]"):
        sparsify(data([1.0, np.nan, 2.0, 3.0], days), keep=0.5)
    with pytest.raises(TimeError, match=r"dates more than once \(\['2000-01-01'\]\)"):
        sparsify(data([1, 2, 3, 4], days[[0] * 3 + list(range(3, 20))]), keep=0.5)
    with pytest.raises(TimeError, match=r"NaT \(not-a-time\) at positions \[0\]"):
        sparsify(data([1, 2, 3, 4], pd.DatetimeIndex([pd.NaT, *days[1:]])), keep=0.5)
    # Without a reach coordinate the positions are the ids, as before.
    bare = data([1, 2, 3, 4], days).drop_vars("reach")
    assert int(sparsify(bare, keep=0.5).reach_temp.notnull().sum()) == 40
    # Text ids of one type, and dates in any order, are drawn from as before.
    out = sparsify(data(["a", "b", "c", "d"], days[::-1]), keep=0.5)
    assert int(out.reach_temp.notnull().sum()) == 40
