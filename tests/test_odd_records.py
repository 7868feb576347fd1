"""Records users bring: gaps to fill, constant inputs or observations, integer targets,
the day axis under another name, an air temperature given as stage A's target."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl
from xmsgl.convention import fill_daily

torch = pytest.importorskip("torch")

FIT = {"epochs": 1, "window": 60, "stride": 60, "hidden": 4, "progress": False, "seed": 0}


@pytest.fixture(scope="module")
def basin() -> xr.Dataset:
    torch.set_num_threads(1)
    return xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2003-09-30", seed=0,
                                          reach_obs_share=0.3)


def test_fill_daily_names_the_long_gaps_it_draws_straight_lines_through(basin: xr.Dataset) -> None:
    # A year-long hole in the forcings was bridged by straight lines without a word,
    # and a model run through it predicted a flat line (sd 0.04 against 4.73 degC).
    holed = basin.drop_sel(time=pd.date_range("2001-10-01", "2002-09-30"))
    with pytest.warns(xmsgl.exceptions.TimeGapWarning,
                      match=r"through 1 gap longer than 30 days \(the longest 365 days, 2001-10-01 to "
                            r"2002-09-30\).*give max_gap=30"):
        full = fill_daily(holed)
    assert full.sizes["time"] == basin.sizes["time"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short = fill_daily(holed.drop_sel(time=pd.date_range("2000-12-01", "2000-12-20")), max_gap=30)
    assert short.sizes["time"] == holed.sizes["time"]  # 20 days filled, the year left a gap


def test_a_test_period_without_fine_observations_is_named(basin: xr.Dataset) -> None:
    # A default split whose test years no fine logger covered held them out silently;
    # evaluate against reach_temp then found no pair to score.
    early = basin.assign(reach_temp=basin.reach_temp.where(basin.time < np.datetime64("2002-10-01")))
    with pytest.warns(xmsgl.XmsglWarning, match=r"the test period \[\('2002-10-01', '2003-09-30'\)\] holds "
                                                r"no fine observation"):
        early.msgl.fit(method="fine-only", train=("2000-10-01", "2001-09-30"),
                       val=("2001-10-01", "2002-09-30"), test=("2002-10-01", "2003-09-30"), **FIT)


def test_hiding_the_scored_days_silences_its_own_thread_only() -> None:
    # The sweeps' fits held a process-wide warning filter (and its lock) for the whole
    # fit: another thread's fit waited for the sweep and lost its own warning.
    import threading

    from xmsgl.model import scored_days_hidden, warn_unobserved_test

    seen: list[str] = []

    def other() -> None:
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            warn_unobserved_test([("2003-10-01", "2004-09-30")])
        seen.extend(str(w.message) for w in got)

    with scored_days_hidden(), warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_unobserved_test([("2003-10-01", "2004-09-30")])  # silent here
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=60)
    assert len(seen) == 1 and "holds no fine observation" in seen[0]


def test_fill_daily_fills_the_inputs_of_a_gap_and_never_the_observations(basin: xr.Dataset) -> None:
    gap = pd.date_range("2001-03-01", "2001-08-31")
    short = pd.date_range("2002-03-01", "2002-03-03")
    gappy = basin.drop_sel(time=gap.append(short))
    with pytest.warns(xmsgl.exceptions.TimeGapWarning, match="the longest 184 days"):
        full = fill_daily(gappy)
    assert full.sizes["time"] == basin.sizes["time"] and full.attrs["xmsgl_filled_days"] == 187
    # Straight lines through the forcings, none through the observations or the truth.
    for name in ("reach_temp", "seg_temp", "reach_temp_true"):
        assert int(full[name].sel(time=gap).count()) == 0
    air = full.seg_air_temp.sel(time=gap)
    assert bool(np.isfinite(air).all())
    ends = full.seg_air_temp.sel(time=["2001-02-28", "2001-09-01"]).values
    np.testing.assert_allclose(air.isel(time=0).values,
                               ends[:, 0] + (ends[:, 1] - ends[:, 0]) / (len(gap) + 1), rtol=1e-5)
    # The days the dataset had are left as they were, a missing value included.
    xr.testing.assert_identical(full.sel(time=gappy.time).reach_temp, gappy.reach_temp)
    # max_gap fills the short gap and leaves the long one.
    some = fill_daily(gappy, max_gap=5)
    assert some.attrs["xmsgl_filled_days"] == 3 and not bool(some.time.isin(gap).any())
    with pytest.raises(xmsgl.ParameterError, match="max_gap"):
        fill_daily(gappy, max_gap=0)
    # A model runs through the filled gap: no gap warning at downscale.
    model = full.msgl.fit(**FIT)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xmsgl.exceptions.TimeGapWarning)
        pred = full.msgl.downscale(model)
    # The filled days are named on the dataset and carried to the output.
    assert full.attrs["xmsgl_filled_spans"] == "2001-03-01/2001-08-31, 2002-03-01/2002-03-03"
    assert "fill_daily: the inputs of 187 added days" in full.attrs["history"]
    assert pred.attrs["xmsgl_input_filled_days"] == 187
    # Read back from a file as a numpy number, or written by other software as a double.
    from xmsgl.convention import input_attrs

    for given, said in ((np.int32(187), 187), (187.0, 187), (np.array([3]), 3), (187.9, "187.9"),
                        (np.array([3, 4]), "[3 4]"), ("n/a", "n/a"), (float("nan"), "nan")):
        got = input_attrs({"xmsgl_filled_days": given})["xmsgl_input_filled_days"]
        assert got == said and type(got) is type(said), (given, got)
    assert pred.attrs["xmsgl_input_filled_spans"] == full.attrs["xmsgl_filled_spans"]


def _as_cftime(values: np.ndarray) -> np.ndarray:
    """datetime64 values as cftime dates of the noleap calendar (as convert_calendar
    leaves a CMIP file's bounds)."""
    import cftime

    return np.array([cftime.DatetimeNoLeap(t.year, t.month, t.day) for t in pd.DatetimeIndex(values.ravel())],
                    dtype=object).reshape(values.shape)


def test_fill_daily_refuses_stamps_at_several_times_and_keeps_dask_flags_bounds_and_encodings(
        basin: xr.Dataset) -> None:
    gappy = basin.drop_sel(time=pd.date_range("2001-03-01", "2001-03-20"))
    # Two files joined, one stamped at midnight and one at noon: a grid at one time of
    # day would have dropped half the stamps and their observations.
    t = gappy.indexes["time"]
    mixed = gappy.assign_coords(time=t.where(t < "2002-01-01", t + pd.Timedelta(hours=12)))
    with pytest.raises(xmsgl.TimeError, match=r"2 times of day.*dt.floor\('D'\)"):
        fill_daily(mixed)
    # Chunked along time, with a flag, time bounds and an encoding: lazy, and kept.
    rich = xmsgl.convention.daily_time_bounds(gappy.assign(
        flag=("time", np.ones(gappy.sizes["time"], dtype=bool))))
    rich["seg_air_temp"].encoding = {"zlib": True, "complevel": 3}
    lazy = fill_daily(rich.chunk({"time": 100}))
    assert lazy.seg_air_temp.chunks is not None
    assert max(lazy.seg_air_temp.chunksizes["time"]) == 100  # not one chunk of the record
    full = lazy.compute()
    xr.testing.assert_allclose(full.seg_air_temp, fill_daily(rich).seg_air_temp)
    assert full.flag.dtype == bool and int((~full.flag).sum()) == 20
    bounds = full[full.time.attrs["bounds"]]
    assert bool(bounds.notnull().all()) and bounds.sizes["time"] == basin.sizes["time"]
    assert full.seg_air_temp.encoding.get("complevel") == 3
    # Bounds that put each stamp on the next day (a daily mean stamped at its end) are
    # refused, also as cftime beside converted stamps, before fill_daily makes them again.
    lo = gappy.indexes["time"]
    ends = gappy.assign_coords(time=lo + pd.Timedelta(days=1))
    ends["time_bnds"] = (("time", "nv"), np.stack([lo.values, (lo + pd.Timedelta(days=1)).values], 1))
    ends.time.attrs["bounds"] = "time_bnds"
    with pytest.raises(xmsgl.TimeError, match="lies outside its bounds"):
        fill_daily(ends)
    cf = ends.assign(time_bnds=(("time", "nv"), _as_cftime(ends.time_bnds.values)))
    with pytest.raises(xmsgl.TimeError, match="lies outside its bounds"):
        fill_daily(cf)
    # exclude: a modelled temperature used as a stage-A target is not drawn through.
    excluded = fill_daily(gappy, exclude=["seg_air_temp"])
    assert int(excluded.seg_air_temp.sel(time="2001-03-10").count()) == 0


def test_the_gap_advice_names_fill_daily_not_a_resample_of_the_observations(basin: xr.Dataset) -> None:
    gappy = basin.drop_sel(time=pd.date_range("2001-03-01", "2001-08-31"))
    model = gappy.msgl.fit(**FIT)
    with pytest.warns(xmsgl.exceptions.TimeGapWarning, match=r"fill_daily\(ds, max_gap=...\)") as seen:
        gappy.msgl.downscale(model)
    assert not any("resample" in str(w.message) for w in seen)


def test_constant_inputs_are_named_only_where_the_method_reads_them(basin: xr.Dataset) -> None:
    flat = basin.assign(seg_gw_share=xr.full_like(basin.seg_gw_share, 0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", xmsgl.XmsglWarning)
        flat.msgl.fit(method="fine-only", **FIT)  # reads no segment input
    with pytest.warns(xmsgl.XmsglWarning, match=r"inputs \['seg_gw_share'\] take one value"):
        flat.msgl.fit(method="msgl", **FIT)


def test_constant_inputs_and_observations_are_named_at_fit(basin: xr.Dataset) -> None:
    flat = basin.assign(reach_gw_share=xr.full_like(basin.reach_gw_share, 0.0),
                        seg_gw_share=xr.full_like(basin.seg_gw_share, 0.0))
    with pytest.warns(xmsgl.XmsglWarning, match=r"inputs \['seg_gw_share', 'reach_gw_share'\] take one "
                                                r"value"):
        flat.msgl.fit(**FIT)
    # Constant observations give one kind of model whatever float32 makes of the constant.
    for value in (10.0, 4.1):
        stuck = basin.assign(reach_temp=basin.reach_temp * 0 + value,
                             seg_temp=basin.seg_temp * 0 + value)
        with pytest.warns(xmsgl.XmsglWarning, match=f"training observations are all {value:g} degC"):
            model = stuck.msgl.fit(**FIT)
        assert model.config["targets"]["std"] == 1.0


def test_an_integer_target_is_said_to_hold_no_missing_value(basin: xr.Dataset) -> None:
    coded = basin.assign(reach_temp=basin.reach_temp.fillna(-1).round().astype("int16")
                         .assign_attrs(units="degC"))
    with pytest.warns(xmsgl.XmsglWarning, match=r"'reach_temp' is stored as int16.*<marker>"):
        coded.msgl.validate()


def test_the_day_axis_under_another_name_is_to_be_renamed(basin: xr.Dataset) -> None:
    model = basin.msgl.fit(**FIT)
    dated = basin.rename(time="date")
    with pytest.raises(xmsgl.SchemaError, match=r"target 'seg_temp' has its days on 'date'.*"
                                               r"rename\(\{'date': 'time'\}\)"):
        dated.msgl.validate()
    with pytest.raises(xmsgl.SchemaError, match=r"has its days on 'date'.*to_convention\(ds, time='date'\)"):
        dated.drop_vars(["reach_temp", "seg_temp"]).msgl.downscale(model)
    assert xmsgl.to_convention(dated, time="date").msgl.validate().sizes["time"] == basin.sizes["time"]


def test_an_air_temperature_is_refused_as_stage_a_water_temperature(basin: xr.Dataset) -> None:
    with pytest.raises(xmsgl.ParameterError, match=r"'seg_air_temp' goes down to -\d.*looks like an air"):
        basin.msgl.fit(method="async-msgl", stage_a_variable="seg_air_temp", **FIT)
    # The observed seg_temp, which MSGL trains on too, is judged as a target: one cold
    # outlier does not stop ASYNC-MSGL (it is named, as implausible water).
    seg = basin.seg_temp.copy()
    first = np.argwhere(np.isfinite(seg.values))[0]
    seg[first[0], first[1]] = -7.0
    with pytest.warns(xmsgl.XmsglWarning, match="'seg_temp' has values outside -5..45 degC"):
        basin.assign(seg_temp=seg).msgl.fit(method="async-msgl", **FIT)


@pytest.mark.parametrize("method", ["direct", "progressive"])
def test_coarse_pretraining_without_coarse_validation_says_so(basin: xr.Dataset, method: str) -> None:
    early = basin.assign(seg_temp=basin.seg_temp.where(basin.time < np.datetime64("2001-10-01")))
    with pytest.warns(xmsgl.XmsglWarning, match=f"coarse pretraining of '{method}' keeps the epoch"):
        early.msgl.fit(method=method, **FIT)


def test_gaps_that_leave_only_scraps_of_training_windows_are_named(basin: xr.Dataset) -> None:
    scraps = basin.isel(time=[i for i in range(basin.sizes["time"]) if i % 3 != 2])
    with pytest.warns(xmsgl.exceptions.TimeGapWarning, match=r"runs shorter than 30 days.*fill_daily"):
        scraps.msgl.fit(**FIT)
    # A few gaps in a long record are no scraps: no warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error", xmsgl.exceptions.TimeGapWarning)
        basin.drop_sel(time=pd.date_range("2001-03-01", "2001-03-05")).msgl.fit(**FIT)


def test_stamps_all_at_a_late_hour_are_named(basin: xr.Dataset) -> None:
    # Local midnight converted to UTC lands at 23:00 the day before: every value would be
    # read as the previous day's.
    shifted = basin.assign_coords(time=basin.time.values - np.timedelta64(1, "h"))
    with pytest.warns(xmsgl.XmsglWarning, match=r"every stamp of 'time' is at 23:00.*dt.round"):
        shifted.msgl.validate()
    # Seconds are shown where there are some (12:00:01 read as 12:00, below its own
    # threshold), and stamps late in their own day are not told to be rounded.
    late = basin.assign_coords(time=basin.time.values + np.timedelta64(12 * 3600 + 1, "s"))
    with pytest.warns(xmsgl.XmsglWarning, match=r"is at 12:00:01: .*which is right for stamps late in their "
                                                r"own day; if these are local midnights converted to UTC"):
        late.msgl.validate()
    # Noon stamps (Daymet's) are a day's own.
    with warnings.catch_warnings():
        warnings.simplefilter("error", xmsgl.XmsglWarning)
        basin.assign_coords(time=basin.time.values + np.timedelta64(12, "h")).msgl.validate()


def test_local_midnights_east_of_greenwich_with_summer_time_are_named(basin: xr.Dataset) -> None:
    # Berlin's midnights in UTC fall at 23:00 in winter and 22:00 in summer: two times of
    # day, which the warning for one late hour let through, each value read as the day
    # before its own; fill_daily advised floor('D'), which moved them back a day too.
    from xmsgl.convention import fill_daily

    local = pd.DatetimeIndex(basin.time.values).tz_localize("Europe/Berlin")
    with pytest.raises(xmsgl.TimeError, match=r"tz_localize\(None\)") as info:
        basin.assign_coords(time=local).msgl.validate()
    assert "with ds = ds.assign_coords(time=ds.indexes['time'].tz_convert(None))" not in str(info.value)
    utc = basin.assign_coords(time=local.tz_convert(None))
    with pytest.warns(xmsgl.XmsglWarning, match=r"every stamp of 'time' is at 22:00 and 23:00.*dt.round"):
        utc.msgl.validate()
    with pytest.raises(xmsgl.TimeError, match=r"2 times of day.*dt.round\('D'\)") as info:
        fill_daily(utc)
    advice = re.search(r"ds = ds.assign_coords\(time=(ds.time.dt.round\('D'\))\)", str(info.value))
    assert advice
    fixed = utc.assign_coords(time=eval(advice.group(1), {"ds": utc}))
    np.testing.assert_array_equal(fixed.time.values, basin.time.values)
    # Stamps of a zone west of Greenwich (04:00 and 05:00 UTC) still floor to their dates.
    west = basin.assign_coords(
        time=pd.DatetimeIndex(basin.time.values).tz_localize("America/New_York").tz_convert(None))
    with pytest.raises(xmsgl.TimeError, match=r"floor\('D'\)"):
        fill_daily(west)


PERIODS = {"train": ("2000-10-01", "2002-09-30"), "val": ("2002-10-01", "2003-09-30")}


def _keep(ds: xr.Dataset, reaches: np.ndarray, n: int | None = None) -> xr.Dataset:
    """The training period's observations at ``reaches`` only (the first ``n`` of
    them in time order when given); the validation year's all kept."""
    y = ds.reach_temp.transpose("reach", "time").values.copy()
    train = (ds.time <= np.datetime64(PERIODS["train"][1])).values
    keep = np.zeros_like(y, dtype=bool)
    keep[reaches] = np.isfinite(y[reaches])
    if n is not None:
        rows, cols = np.nonzero(keep & train[None, :])
        order = np.argsort(cols, kind="stable")[n:]
        keep[rows[order], cols[order]] = False
    y[train[None, :] & ~keep] = np.nan
    return ds.assign(reach_temp=(("reach", "time"), y, ds.reach_temp.attrs))


def test_fits_on_a_handful_of_fine_observations_or_reaches_warn(basin: xr.Dataset) -> None:
    # Fits on 10 observations, or at one reach, were often worse than remap (which
    # reads none), and nothing said so.
    observed = np.flatnonzero(basin.reach_temp.sel(time=slice(*PERIODS["train"])).notnull().any("time").values)
    assert observed.size >= 5
    two = _keep(basin, observed[:2])
    for method in ("fine-only", "msgl", "gru"):
        kw = {"epochs": 1, "progress": False, "seed": 0} if method == "gru" else FIT
        with pytest.warns(xmsgl.FewObservationsWarning, match=rf"method '{method}' learns the reaches "
                                                              r"from \d+ fine observations at 2 reaches"):
            two.msgl.fit(method=method, **PERIODS, **kw)
    with pytest.warns(xmsgl.FewObservationsWarning, match=r"from 10 fine observations at \d reach"):
        _keep(basin, observed, n=10).msgl.fit(method="fine-only", **PERIODS, **FIT)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xmsgl.FewObservationsWarning)
        basin.msgl.fit(method="fine-only", **PERIODS, **FIT)  # every gauged reach: no warning
        two.msgl.fit(method="remap", **PERIODS, **FIT)  # reads no fine observation


def test_a_single_observation_is_named_as_such(basin: xr.Dataset) -> None:
    # It was blamed on "a stuck sensor or a filled constant".
    observed = np.flatnonzero(basin.reach_temp.sel(time=slice(*PERIODS["train"])).notnull().any("time").values)
    one = _keep(basin, observed[:1], n=1)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        one.msgl.fit(method="fine-only", **PERIODS, **FIT)
    texts = [str(w.message) for w in said]
    assert any("training period's one observation" in t for t in texts), texts
    assert not any("stuck sensor" in t for t in texts)
    assert any("from 1 fine observation at 1 reach" in t for t in texts)


def test_fine_observations_of_one_season_warn(basin: xr.Dataset) -> None:
    # 458 observations, all in the training period's last 20 days, gave msgl 7.33
    # degC against remap's 2.66, without a word.
    summer = (basin.time >= np.datetime64("2001-06-01")) & (basin.time <= np.datetime64("2001-07-15"))
    train = basin.time <= np.datetime64(PERIODS["train"][1])
    one_season = basin.assign(reach_temp=basin.reach_temp.where(summer | ~train))
    with pytest.warns(xmsgl.FewObservationsWarning, match=r"leave 320 days of the year without one "
                                                          r"\(16 Jul to 31 May.*those days extrapolate"):
        one_season.msgl.fit(method="fine-only", **PERIODS, **FIT)
    # Samples a fortnight apart cover the year: no warning (counting days of the
    # year seen, as first written, warned of them and not of a summer's loggers).
    fortnightly = basin.time.dt.dayofyear % 14 == 0
    sparse = basin.assign(reach_temp=basin.reach_temp.where(fortnightly | ~train))
    assert int(sparse.reach_temp.where(train).notnull().any("reach").sum()) < 90
    with warnings.catch_warnings():
        warnings.simplefilter("error", xmsgl.FewObservationsWarning)
        sparse.msgl.fit(method="fine-only", **PERIODS, **FIT)


def test_async_msgl_learns_from_a_coarse_record_outside_the_training_period(basin: xr.Dataset) -> None:
    # The coarse record covers the first water year only, the fine one the second: the
    # case ASYNC-MSGL is for. It was refused for want of seg_temp in the training period.
    ds = basin.copy()
    ds["seg_temp"] = ds.seg_temp.where(ds.time < np.datetime64("2001-10-01"))
    ds["reach_temp"] = ds.reach_temp.where(ds.time >= np.datetime64("2001-10-01"))
    periods = {"train": ("2001-10-01", "2002-09-30"), "val": ("2002-10-01", "2003-03-31"),
               "test": ("2003-04-01", "2003-09-30")}
    with pytest.warns(xmsgl.XmsglWarning, match=r"stage A of 'async-msgl' learns from 'seg_temp' on its "
                                                r"own days.*without the coarse task"):
        model = ds.msgl.fit(method="async-msgl", **periods, **FIT)
    # Stage A runs on every day but val and test; it read targets up to the coarse
    # record's last day, which is what it records.
    assert model.config["periods"]["stage_a"] == [("2000-10-01", "2001-09-30")]
    assert np.isfinite(model.history["stage_a"]["loss"]).all()
    assert np.isfinite(model.history["main"]["loss"]).all()
    out = ds.msgl.downscale(model, time=periods["test"])
    assert bool(np.isfinite(out).all())
    # Its segments are judged against those stage A learned from, on stage A's days.
    ranges = model.features.observed_range
    assert all(n in ranges for n in model.features.seg_vars)
    stage_a = ds.sel(time=slice("2000-10-01", "2002-09-30"))  # its days: all but val and test
    seen = stage_a.seg_temp.notnull().any("time")
    name = next(n for n in model.features.seg_vars if not model.features.static[n])
    on = stage_a[name].where(seen)
    assert ranges[name] == pytest.approx([float(on.min()), float(on.max())])
    cov = ds.assign(seg_elevation=ds.seg_elevation + 1e4).msgl.coverage(model)
    assert bool(cov.seg_beyond_observed.all())
    # Without "coarse" in stage A nothing would train the coarse head.
    with pytest.raises(xmsgl.ParameterError, match="leaves out .coarse."):
        ds.msgl.fit(method="async-msgl", stage_a_tasks=("remap", "remap-fine"), **periods, **FIT)
    # MSGL itself trains the coarse task on the training days: refused, pointing to ASYNC-MSGL.
    with pytest.raises(xmsgl.DataError, match="no coarse observations.*method='async-msgl'"):
        ds.msgl.fit(method="msgl", **periods, **FIT)
    # Stage A without a value in its period is still refused.
    with pytest.warns(xmsgl.XmsglWarning, match="without the coarse task"), \
            pytest.raises(xmsgl.DataError, match="has no value in stage A's period"):
        ds.msgl.fit(method="async-msgl", stage_a_period=("2001-10-01", "2002-09-30"), **periods, **FIT)


@pytest.mark.parametrize("method", ["msgl", "async-msgl", "gru"])
def test_a_stuck_fine_sensor_is_named_beside_varying_segments(basin: xr.Dataset, method: str) -> None:
    # Pooled with the varying segment observations, the constant fine ones went unsaid.
    ds = basin.copy()
    ds["reach_temp"] = xr.where(ds.reach_temp.notnull(), 10.0, np.nan).astype("float32").assign_attrs(
        basin.reach_temp.attrs)
    fit = {**FIT, "hidden": 4} if method != "gru" else {"epochs": 1, "window": 60, "stride": 60,
                                                        "progress": False}
    with pytest.warns(xmsgl.XmsglWarning, match=r"training observations of 'reach_temp' are all 10 degC"):
        ds.msgl.fit(method=method, **fit)
    # Varying observations say nothing of it.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        basin.msgl.fit(method=method, **fit)
    assert not [w for w in seen if "are all" in str(w.message)]


def test_climatology_says_which_days_of_the_year_it_interpolates(basin: xr.Dataset) -> None:
    # Summer observations only: January was drawn between August and June, unsaid.
    summer = basin.time.dt.month.isin([6, 7, 8])
    ds = basin.assign(reach_temp=basin.reach_temp.where(summer), seg_temp=basin.seg_temp.where(summer))
    with pytest.warns(xmsgl.FewObservationsWarning, match=r"days of the year without one within its centred window of 31 days \(the longest run"):
        model = xmsgl.fit(ds, method="climatology")
    assert model.config["fit"]["climatology_days"]["doy_interpolated"] > 200
    with warnings.catch_warnings():
        warnings.simplefilter("error", xmsgl.FewObservationsWarning)
        full = xmsgl.fit(basin, method="climatology")
    assert full.config["fit"]["climatology_days"]["doy_interpolated"] == 0


def test_a_baseline_leaves_variables_it_does_not_read_alone(basin: xr.Dataset) -> None:
    # Only what a model reads is validated at downscale: an ensemble on one more
    # dimension or a variable without units broke the non-neural baselines alone.
    extra = basin.assign(ens=(("reach", "member"), np.zeros((basin.sizes["reach"], 3))),
                         seg_bar=(("seg", "time"), np.zeros((basin.sizes["seg"], basin.sizes["time"]))))
    for method in ("climatology", "mohseni", "idw", "harmonic"):
        model = xmsgl.fit(basin, method=method)
        a = extra.msgl.downscale(model, time=("2003-01-01", "2003-01-31"))
        b = basin.msgl.downscale(model, time=("2003-01-01", "2003-01-31"))
        xr.testing.assert_equal(a, b)


def test_a_short_gap_free_training_period_is_not_blamed_on_gaps(basin: xr.Dataset) -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        basin.msgl.fit(method="fine-only", train=("2001-01-01", "2001-01-20"), val=("2001-02-01", "2001-03-01"),
                       test=("2002-01-01", "2002-09-30"), **{**FIT, "window": 30, "stride": 30})
    said = [str(w.message) for w in seen if "consecutive days" in str(w.message)]
    assert said and "holds 20 consecutive days, fewer than 30" in said[0]
    assert not [w for w in seen if issubclass(w.category, xmsgl.exceptions.TimeGapWarning)]


def test_short_training_periods_given_are_not_blamed_on_gaps(basin: xr.Dataset) -> None:
    train = [("2001-01-01", "2001-01-20"), ("2001-03-01", "2001-03-20"), ("2001-05-01", "2001-05-20")]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        basin.msgl.fit(method="fine-only", train=train, val=("2001-07-01", "2001-08-31"),
                       test=("2002-01-01", "2002-09-30"), **{**FIT, "window": 30, "stride": 30})
    said = [str(w.message) for w in seen if "runs of consecutive days" in str(w.message)]
    assert said and said[0].startswith("the training periods given are 3 runs") and "fill_daily" not in said[0]
    assert not [w for w in seen if issubclass(w.category, xmsgl.exceptions.TimeGapWarning)]


def test_climate_calendars_bounds_ensembles_and_scores() -> None:
    """A prediction back on its climate model's calendar gets daily bounds of that
    calendar; an ensemble member dimension is refused with the per-member recipe, naming
    every variable on it; scores across two calendars say so."""
    import warnings

    from xmsgl.convention import daily_time_bounds
    from xmsgl.evaluate import evaluate

    t = pd.date_range("1990-02-26", periods=5)
    pred = xr.DataArray(np.ones((2, 5), "f4"), dims=("reach", "time"), coords={"reach": [1, 2], "time": t},
                        name="x", attrs={"units": "degC"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        noleap = pred.convert_calendar("noleap")
    out = daily_time_bounds(noleap.to_dataset())
    assert out.time.attrs["bounds"] == "time_bnds" and out.time_bnds.encoding["calendar"] == "noleap"
    assert str(out.time_bnds.values[2, 1])[:10] == "1990-03-01"  # 28 February, then 1 March
    with pytest.raises(xmsgl.DataError, match=r"on the calendar 'standard \(datetime64\)' and the "
                                              r"observations on 'noleap'"):
        evaluate(pred, noleap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_360 = pred.convert_calendar("360_day", align_on="date")
    with pytest.raises(xmsgl.DataError, match=r"put prediction and observed on the standard calendar, e.g. "
                                              r"prediction.convert_calendar\('standard', align_on='date'"):
        evaluate(on_360, noleap)
    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-01-31")
    members = xr.concat([ds[["reach_air_temp", "seg_air_temp"]]] * 3, "member")
    ens = ds.assign(reach_air_temp=members.reach_air_temp, seg_air_temp=members.seg_air_temp)
    with pytest.raises(xmsgl.SchemaError, match=r"2 variables on 'member': \['reach_air_temp', "
                                                r"'seg_air_temp'\]\): select or reduce \[.member.\].*; for an ensemble, "
                                                r"downscale each member"):
        ens.msgl.validate()


def test_object_bounds_that_are_not_dates_pass_and_fills_add_up() -> None:
    """cftime bounds with missing rows, 360_day dates the standard calendar lacks and text
    bounds say nothing (they passed before cftime bounds were read); a second fill adds its
    days to the first's; filled inputs keep chunks of the input's largest length."""
    import cftime

    from xmsgl.convention import fill_daily, validate

    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2011-02-01", end="2011-03-31", seed=1)
    days = pd.DatetimeIndex(ds.time.values)
    import datetime

    # As a 360_day file's bounds beside its converted stamps: 28 February runs to the
    # 29th, which the standard calendar lacks; the 31st of a month has no bounds.
    lo = np.array([cftime.Datetime360Day(d.year, d.month, d.day) if d.day <= 30 else np.nan
                   for d in days], dtype=object)
    hi = np.array([x + datetime.timedelta(days=1) if not isinstance(x, float) else np.nan for x in lo],
                  dtype=object)
    for bounds in (np.stack([lo, hi], 1),                                   # 2011-02-29/30 in there
                   np.where(np.arange(len(days))[:, None] == 3, np.nan, np.stack([lo, hi], 1)),
                   np.array([["a", "b"]] * len(days), dtype=object)):
        with_bounds = ds.assign(time_bnds=(("time", "nv"), bounds))
        with_bounds.time.attrs["bounds"] = "time_bnds"
        validate(with_bounds)
    gappy = ds.drop_sel(time=ds.time[[5, 6, 20]])
    once = fill_daily(gappy)
    twice = fill_daily(once.drop_sel(time=once.time[[30]]))
    assert once.attrs["xmsgl_filled_days"] == 3 and twice.attrs["xmsgl_filled_days"] == 4
    assert twice.attrs["xmsgl_filled_spans"] == "2011-02-06/2011-02-07, 2011-02-21/2011-02-21, 2011-03-03/2011-03-03"
    assert fill_daily(once).attrs["xmsgl_filled_days"] == 3  # nothing more to fill
    lazy = fill_daily(gappy.chunk({"time": (3, 50, 3)}))
    assert max(lazy.seg_air_temp.chunksizes["time"]) == 50 and len(lazy.seg_air_temp.chunksizes["time"]) == 2


def _small() -> xr.Dataset:
    return xmsgl.datasets.synthetic_basin(n_segments=4, start="2001-01-01", end="2001-01-20",
                                          reach_obs_share=0.3)


def test_bounds_found_by_name_when_the_conversion_dropped_their_attribute() -> None:
    # The advice for cftime dates beyond 2262 (to_datetimeindex) drops time's 'bounds'
    # attribute: a daily mean stamped at the end of its day then passed without a word.
    import datetime

    from xmsgl.exceptions import TimeError

    t = xr.date_range("2290-01-02", periods=20, calendar="noleap", use_cftime=True)
    ds = _small().assign_coords(time=t)
    ds["time_bnds"] = (("time", "nv"), np.array([[d - datetime.timedelta(days=1), d] for d in t],
                                                dtype=object))
    ds.time.attrs["bounds"] = "time_bnds"
    d = ds.convert_calendar("proleptic_gregorian", use_cftime=True)
    d = d.assign_coords(time=d.indexes["time"].to_datetimeindex(time_unit="s"))
    assert "bounds" not in d.time.attrs
    with pytest.raises(TimeError, match="lies outside its bounds 'time_bnds'"):
        xmsgl.validate(d)
    with pytest.raises(TimeError, match="lies outside its bounds 'time_bnds'"):
        fill_daily(d)


def test_fill_daily_names_a_nat_and_refuses_an_exclude_of_no_names() -> None:
    from xmsgl.exceptions import ParameterError, TimeError

    ds = _small()
    times = ds.time.values.copy()
    times[3] = np.datetime64("NaT", "ns")
    # It was told to sort and drop repeats, which keeps the NaT.
    with pytest.raises(TimeError, match=r"holds NaT \(not-a-time\) at positions \[3\]"):
        fill_daily(ds.assign_coords(time=times))
    for exclude in (None, 5):  # a bare TypeError
        with pytest.raises(ParameterError, match="exclude must be a variable name"):
            fill_daily(ds, exclude=exclude)  # type: ignore[arg-type]
    assert fill_daily(ds.isel(time=[0])).attrs["xmsgl_filled_days"] == 0


def test_integers_filled_are_not_written_back_as_zeros(tmp_path) -> None:
    # An int16 record without a _FillValue kept its encoding once the added days made it
    # float with NaN: written, the 3 added days read back as 0 degC observations.
    from xmsgl.io import to_netcdf_safe

    ds = _small()
    ds["reach_temp"] = ds.reach_temp_true.round().astype("int16")
    ds.reach_temp.attrs["units"] = "degC"
    ds.to_netcdf(tmp_path / "in.nc")
    with xr.open_dataset(tmp_path / "in.nc") as r:
        gappy = r.load().drop_sel(time=r.time[5:8])
    filled = fill_daily(gappy)
    to_netcdf_safe(filled, tmp_path / "filled.nc")
    with xr.open_dataset(tmp_path / "filled.nc") as back:
        assert int(back.reach_temp.sel(time=slice("2001-01-06", "2001-01-08")).notnull().sum()) == 0
        assert int(back.reach_temp.sel(time="2001-01-05").notnull().sum()) == ds.sizes["reach"]


def test_output_dataset_takes_any_days_and_makes_the_bounds_it_names() -> None:
    from xmsgl.convention import daily_time_bounds, output_dataset
    from xmsgl.exceptions import TimeError

    def pred(days: list[str]) -> xr.DataArray:
        return xr.DataArray(np.ones((2, len(days)), "float32"), dims=("reach", "time"),
                            coords={"reach": [1, 2], "time": pd.DatetimeIndex(days)},
                            name="reach_temp_pred", attrs={"units": "degC"})

    # NaT at an end: a bare ValueError; unsorted days: the coverage ended before it began.
    out = output_dataset(pred(["2001-01-01", "2001-01-02", "NaT"]), source="t")
    assert (out.attrs["time_coverage_start"], out.attrs["time_coverage_end"]) == ("2001-01-01T00:00:00", "2001-01-03T00:00:00")
    out = output_dataset(pred(["2001-01-05", "2001-01-01", "2001-01-03"]), source="t")
    assert (out.attrs["time_coverage_start"], out.attrs["time_coverage_end"]) == ("2001-01-01T00:00:00", "2001-01-06T00:00:00")
    # A prediction taken from a dataset with bounds names them without holding them.
    named = pred(["2001-01-01", "2001-01-02"])
    named.time.attrs["bounds"] = "time_bnds"
    out = output_dataset(named, source="t")
    assert out.time.attrs["bounds"] in out.variables
    assert str(out[out.time.attrs["bounds"]].values[0, 1])[:10] == "2001-01-02"
    # On a model calendar the coverage is given too (it was left out).
    noleap = pred(["2001-02-26", "2001-02-27", "2001-02-28", "2001-03-01"]).convert_calendar("noleap")
    out = output_dataset(noleap, source="t")
    assert (out.attrs["time_coverage_start"], out.attrs["time_coverage_end"]) == ("2001-02-26T00:00:00", "2001-03-02T00:00:00")
    # Time zones: a bare TypeError of numpy's.
    zoned = xr.Dataset(coords={"time": pd.date_range("2001-01-01", periods=2, tz="UTC")})
    with pytest.raises(TimeError, match="timezone-aware"):
        daily_time_bounds(zoned)


@pytest.mark.filterwarnings("ignore:saving variable .* as an integer dtype")
def test_fill_daily_keeps_what_it_did_not_fill_and_writes_decode_coords_all(tmp_path) -> None:
    from xmsgl.convention import daily_time_bounds
    from xmsgl.io import to_netcdf_safe, to_zarr_safe

    ds = daily_time_bounds(_small())
    # Packed as integers with a scale factor: kept so (it was written back as float64).
    ds["reach_elevation"].encoding = {"dtype": "int16", "scale_factor": 0.5}
    ds.to_netcdf(tmp_path / "in.nc")
    with xr.open_dataset(tmp_path / "in.nc", decode_coords="all") as r:
        opened = r.load()
    assert "bounds" not in opened.time.attrs and opened.time.encoding.get("bounds") == "time_bnds"
    filled = fill_daily(opened.drop_sel(time=opened.time[5:8]))
    assert filled.reach_elevation.encoding.get("dtype") == np.dtype("int16")
    # Bounds kept in the encoding by decode_coords="all": xarray refused to write them
    # with the attribute the rebuilt bounds gave ("Key 'bounds' already exists").
    to_netcdf_safe(filled, tmp_path / "filled.nc")
    to_zarr_safe(filled, tmp_path / "filled.zarr")
    with xr.open_dataset(tmp_path / "filled.nc") as back:
        assert back.sizes["time"] == 20
        assert back.reach_elevation.encoding["dtype"] == np.dtype("int16")
        assert str(back.time_bnds.values[6, 0])[:10] == "2001-01-07"


def test_a_time_bnds_of_numbers_is_not_taken_for_bounds() -> None:
    from xmsgl.convention import daily_time_bounds

    ds = _small()
    ds["time_bnds"] = (("time", "two"), np.stack([np.arange(20.0), np.arange(20.0) + 1], axis=1))
    out = daily_time_bounds(fill_daily(ds))
    assert out.time_bnds.dims == ("time", "two") and float(out.time_bnds.values[0, 1]) == 1.0


def _largest_result(obj: xr.DataArray) -> int:
    """The most bytes one task of ``obj``'s dask graph returns when its chunks are
    computed (each on its own: not joined into one array at the end)."""
    import dask
    from dask.callbacks import Callback

    seen = [0]

    class _Sizes(Callback):
        def _posttask(self, key, result, dsk, state, id):  # type: ignore[no-untyped-def]
            seen[0] = max(seen[0], int(getattr(result, "nbytes", 0) or 0))

    with _Sizes():
        dask.compute(*obj.data.to_delayed().ravel(), scheduler="sync")
    return seen[0]


def test_fill_daily_and_the_low_pass_filter_of_a_long_lazy_record_keep_its_chunks_small(
        basin: xr.Dataset) -> None:
    # Both run along the whole time axis. Rechunked to one time chunk with the other
    # dimensions' chunks kept, a chunk held every reach over the three years, 11 times
    # the input's chunks of 100 days (a forty-year record of 10^4 reaches, in one chunk
    # along reach, makes chunks of gigabytes).
    import dask

    from xmsgl.robustness import lowpass

    gappy = basin.drop_sel(time=basin.time[[40, 41, 500]])
    lazy = gappy.chunk({"time": 100})
    air = lazy.reach_air_temp
    chunk_bytes = air.dtype.itemsize * int(np.prod(air.data.chunksize))
    whole = air.dtype.itemsize * air.sizes["time"] * air.sizes["reach"]
    assert whole > 10 * chunk_bytes
    with dask.config.set({"array.chunk-size": "1KiB"}):
        filled = fill_daily(lazy)
        assert filled.reach_air_temp.chunksizes["reach"] == air.chunksizes["reach"]
        assert max(filled.reach_air_temp.chunksizes["time"]) == 100
        # (xarray's reindex onto the daily steps makes a chunk of 105 days of one of 100.)
        assert _largest_result(filled.reach_air_temp) <= 1.25 * chunk_bytes
        smooth = lowpass(basin.chunk({"time": 100}), 30.0)
        assert smooth.reach_air_temp.chunksizes == basin.chunk({"time": 100}).reach_air_temp.chunksizes
        assert _largest_result(smooth.reach_air_temp) <= chunk_bytes
        from xmsgl.convention import whole_time_chunks

        cut = whole_time_chunks(air)
        assert cut.chunksizes["time"] == (air.sizes["time"],)
        assert air.dtype.itemsize * air.sizes["time"] * max(cut.chunksizes["reach"]) <= chunk_bytes
        # Three members in one chunk: a short dimension cannot be cut far enough alone
        # (cut to one member, a chunk still held every reach: 3.6 times the input's).
        members = xr.concat([air] * 3, "member").chunk({"member": 3})
        cut = whole_time_chunks(members)
        assert cut.dims == members.dims and cut.chunksizes["time"] == (air.sizes["time"],)
        assert cut.dtype.itemsize * int(np.prod(cut.data.chunksize)) <= 3 * chunk_bytes
        # Chunks are cut where they must be, at the input's boundaries.
        uneven = air.chunk({"reach": (2, 2, 13)})
        bounds = set(np.cumsum(whole_time_chunks(uneven).chunksizes["reach"]).tolist())
        assert {2, 4, 17} <= bounds and len(bounds) > 3
    # Nothing merged where nothing must be cut (an input of uneven chunks kept them).
    assert whole_time_chunks(uneven).chunksizes["reach"] == (2, 2, 13)
    # The same values as in memory.
    xr.testing.assert_allclose(filled.reach_air_temp.compute(), fill_daily(gappy).reach_air_temp)
    xr.testing.assert_allclose(smooth.reach_air_temp.compute(), lowpass(basin, 30.0).reach_air_temp)
    in_memory = gappy.reach_air_temp
    assert whole_time_chunks(in_memory) is in_memory
