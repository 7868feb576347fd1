"""Robustness checks: filters, lags, shifts and masks applied to fitted models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl
from xmsgl.baselines import fit_baseline
from xmsgl.robustness import bandpass, lag, lowpass, mask_coarse, mask_gauges, robustness


@pytest.fixture(scope="module")
def basin() -> xr.Dataset:
    return xmsgl.datasets.synthetic_basin(n_segments=6, start="2000-10-01", end="2002-09-30", seed=2,
                                          reach_obs_share=0.2)


def test_lowpass_above_nyquist_is_identity_and_removes_fast_variation(basin: xr.Dataset) -> None:
    same = lowpass(basin, 2.0)
    xr.testing.assert_identical(same, basin)
    smooth = lowpass(basin, 30.0)
    a, b = basin.reach_air_temp, smooth.reach_air_temp
    assert b.dims == a.dims and b.attrs == a.attrs and b.dtype == a.dtype
    # Day-to-day changes nearly vanish; the seasonal level stays.
    assert float(b.diff("time").std()) < 0.3 * float(a.diff("time").std())
    assert abs(float(b.mean() - a.mean())) < 0.1
    # Static inputs and targets are untouched.
    xr.testing.assert_identical(smooth.reach_shade, basin.reach_shade)
    xr.testing.assert_identical(smooth.reach_temp, basin.reach_temp)


def test_filters_are_zero_phase_and_lazy_on_dask(basin: xr.Dataset) -> None:
    t = np.arange(basin.sizes["time"])
    wave = xr.DataArray(10 + 5 * np.sin(2 * np.pi * t / 365.0), dims="time", coords={"time": basin.time})
    ds = basin.assign(seg_air_temp=(basin.seg_air_temp * 0 + wave).assign_attrs(basin.seg_air_temp.attrs))
    low = lowpass(ds, 30.0, variables=["seg_air_temp"]).seg_air_temp.isel(seg=0).values
    mid = slice(60, -60)
    # A slow wave passes with no shift (zero phase) and nearly no damping.
    np.testing.assert_allclose(low[mid], ds.seg_air_temp.isel(seg=0).values[mid], atol=0.05)
    lazy = basin.chunk({"time": 100, "reach": 10})
    import dask

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a dask graph was computed")

    with dask.config.set(scheduler=refuse):
        out = bandpass(lazy, 5.0, 60.0)
    assert out.reach_air_temp.chunks is not None
    np.testing.assert_allclose(out.reach_air_temp.values, bandpass(basin, 5.0, 60.0).reach_air_temp.values,
                               rtol=1e-5, atol=1e-4)


def test_lag_and_masks(basin: xr.Dataset) -> None:
    xr.testing.assert_identical(lag(basin, 0), basin)
    late = lag(basin, 3)
    np.testing.assert_array_equal(late.seg_air_temp.isel(time=slice(3, None)).values,
                                  basin.seg_air_temp.isel(time=slice(None, -3)).values)
    np.testing.assert_array_equal(late.seg_air_temp.isel(time=0).values, basin.seg_air_temp.isel(time=0).values)
    early = lag(basin, -2)
    np.testing.assert_array_equal(early.reach_swrad.isel(time=slice(None, -2)).values,
                                  basin.reach_swrad.isel(time=slice(2, None)).values)
    out, ids = mask_coarse(basin, 0.5, seed=4)
    assert ids.size == 3
    assert bool(out.seg_temp.sel(seg=ids).isnull().all())
    keep = [s for s in basin.seg.values if s not in ids]
    xr.testing.assert_identical(out.seg_air_temp.sel(seg=keep), basin.seg_air_temp.sel(seg=keep))
    np.testing.assert_allclose(out.seg_air_temp.sel(seg=ids[0]).values, basin.seg_air_temp.mean("seg").values,
                               rtol=1e-6)
    obs = basin.reach.values[basin.reach_temp.notnull().any("time").values]
    out, dropped = mask_gauges(basin, 1.0, seed=0)
    assert sorted(dropped.tolist()) == sorted(obs.tolist()) and not bool(out.reach_temp.notnull().any())


def test_masks_do_not_depend_on_row_order(basin: xr.Dataset) -> None:
    # The draws follow the ids, not the rows: a dataset stored in another order
    # loses the same segments and gauges for the same seed.
    flipped = basin.isel(seg=slice(None, None, -1), reach=slice(None, None, -1))
    for seed in (0, 3, 4):
        a = mask_coarse(basin, 0.5, seed=seed)[1]
        b = mask_coarse(flipped, 0.5, seed=seed)[1]
        assert sorted(a.tolist()) == sorted(b.tolist())
        a = mask_gauges(basin, 0.5, seed=seed)[1]
        b = mask_gauges(flipped, 0.5, seed=seed)[1]
        assert a.size > 0 and sorted(a.tolist()) == sorted(b.tolist())


def test_bad_parameters_are_typed_errors(basin: xr.Dataset) -> None:
    model = fit_baseline(basin, "climatology")
    with pytest.raises(xmsgl.ParameterError, match="not known"):
        robustness(basin, model, {"noise": [1.0]})
    with pytest.raises(xmsgl.ParameterError, match="period in days"):
        robustness(basin, model, {"lowpass": [0.0]})
    with pytest.raises(xmsgl.ParameterError, match="short must be below long"):
        robustness(basin, model, {"bandpass": [(30.0, 10.0)]})
    with pytest.raises(xmsgl.ParameterError, match="integer number of days"):
        robustness(basin, model, {"lag": [1.5]})
    with pytest.raises(xmsgl.ParameterError, match="share between 0 and 1"):
        robustness(basin, model, {"mask_gauges": [1.5]})
    with pytest.raises(xmsgl.ParameterError, match="n_draws"):
        robustness(basin, model, ["lag"], n_draws=0)
    with pytest.raises(xmsgl.ParameterError, match="shorter than the time axis"):
        lag(basin, 10_000)
    with pytest.raises(xmsgl.ParameterError, match="order"):
        lowpass(basin, 10.0, order=0)
    with pytest.raises(xmsgl.TimeError, match="selects no day"):
        robustness(basin, model, ["lag"], time=("1990-01-01", "1990-02-01"))
    with pytest.raises(xmsgl.SchemaError, match="truth"):
        robustness(basin, model, ["lag"], truth="nope")


def test_robustness_table(basin: xr.Dataset) -> None:
    before = basin.copy(deep=True)
    test = ("2001-10-01", "2002-09-30")
    hidden = basin.assign(reach_temp=basin.reach_temp.where(basin.time < np.datetime64(test[0])))
    moh = fit_baseline(hidden, "mohseni", train=("2000-10-01", "2001-09-30"))
    checks = {"lowpass": [2.0, 30.0], "lag": [0, 7], "shift": [30], "mask_gauges": [1.0],
              "bandpass": [(5.0, 90.0)]}
    rob = robustness(basin, moh, checks, time=test, n_draws=2)
    xr.testing.assert_identical(before, basin)
    assert dict(rob.d_rmse.sizes) == {"check": 5, "level": 2}
    assert rob.check.values.tolist() == list(checks)
    d = rob.d_rmse
    # Unperturbed settings give exactly zero change.
    assert float(d.sel(check="lowpass", level=0)) == 0.0
    assert float(d.sel(check="lag", level=0)) == 0.0
    # A stateless model that reads no observations when it predicts cannot change.
    assert float(d.sel(check="shift", level=0)) == 0.0
    assert float(d.sel(check="mask_gauges", level=0)) == 0.0
    # The logistic regression reads air temperature: lagging it a week hurts.
    assert float(d.sel(check="lag", level=1)) > 0.05
    assert np.isnan(float(d.sel(check="shift", level=1)))
    assert str(rob.setting.sel(check="lag", level=1).item()) == "7 d"
    np.testing.assert_allclose(rob.rmse - rob.base_rmse, rob.d_rmse)
    assert rob.attrs["truth"] == "reach_temp_true" and rob.attrs["scored_period"] == list(test)
    # An interpolator driven by gauges does change when they are masked.
    idw = fit_baseline(hidden, "idw", train=("2000-10-01", "2001-09-30"))
    with pytest.warns(xmsgl.InSampleWarning):  # it reads the scored days' observations
        rob = robustness(basin, idw, {"mask_gauges": [0.5, 1.0], "mask_coarse": [0.5]}, time=test,
                         n_draws=2)
    assert float(rob.d_rmse.sel(check="mask_gauges", level=1)) > 0.0
    assert float(rob.d_rmse.sel(check="mask_coarse", level=0)) > 0.0
    n_obs = int(basin.reach_temp.notnull().any("time").sum())
    assert str(rob.setting.sel(check="mask_gauges", level=1).item()) == \
        f"1 of observed reaches ({n_obs} of {n_obs})"
    assert str(rob.setting.sel(check="mask_coarse", level=0).item()) == \
        f"0.5 of segments ({basin.sizes['seg'] // 2} of {basin.sizes['seg']})"


def test_filters_keep_rain_non_negative_and_let_temperatures_cross_zero(basin: xr.Dataset) -> None:
    # The ringing of a zero-phase filter around storms took precipitation to -3.7 mm/d.
    assert float(basin.reach_precip.min()) >= 0
    for out in (lowpass(basin, 7.0), bandpass(basin, 7.0, 120.0), lowpass(basin.chunk({"reach": 5}), 7.0)):
        assert float(out.reach_precip.min()) == 0.0
        assert float(out.reach_discharge.min()) >= 0.0
    # ... and keeps its mean (the clip alone raised rain's by 7% in the band 7-120 days).
    for short, long in ((7.0, 120.0), (2.0, 30.0)):
        np.testing.assert_allclose(float(bandpass(basin, short, long).reach_precip.mean()),
                                   float(basin.reach_precip.mean()), rtol=1e-5)
    # The same series as a temperature is not clipped, and the filter does take it below
    # zero: the clip is what holds the rain at 0.
    raw = lowpass(basin.assign(reach_precip=basin.reach_precip.assign_attrs(units="degC")), 7.0)
    assert float(raw.reach_precip.min()) < -0.5


@pytest.mark.parametrize(("share", "n", "masked"), [(0.5, 1, 1), (0.25, 2, 1), (0.25, 6, 2), (0.25, 10, 3),
                                                     (0.01, 4, 1), (0.0, 4, 0), (1.0, 3, 3)])
def test_a_share_of_a_few_nodes_masks_what_it_says(share: float, n: int, masked: int) -> None:
    from xmsgl.robustness import _mask_count

    # Half up as the docs say, floating point notwithstanding (0.58 * 25 = 14.4999...).
    assert [_mask_count(a, b) for a, b in ((0.58, 25), (0.29, 50), (0.35, 90))] == [15, 15, 32]
    # round() sent 0.5 of one gauge, and 0.25 of two segments, to nothing masked (and
    # 0.25 of 6 to 2 but of 10 to 2): a table then read "no change" for what never ran.
    ds = xmsgl.datasets.synthetic_basin(n_segments=n, start="2001-01-01", end="2001-01-31", seed=1)
    assert mask_coarse(ds, share, seed=0)[1].size == masked
    reach_temp = np.full((ds.sizes["reach"], ds.sizes["time"]), np.nan)
    reach_temp[:n] = 10.0  # n observed reaches
    gauged = ds.assign(reach_temp=(("reach", "time"), reach_temp, ds.reach_temp.attrs))
    assert mask_gauges(gauged, share, seed=0)[1].size == masked


def test_robustness_of_a_network(basin: xr.Dataset, tmp_path) -> None:
    pytest.importorskip("torch")
    from xmsgl.model import fit

    model = fit(basin, "gru", epochs=2, window=180, stride=90, progress=False)
    folder = model.save(tmp_path / "gru")
    rob = robustness(basin, folder, {"lag": [0, 3], "shift": [60], "mask_coarse": [0.5]}, n_draws=1)
    assert rob.attrs["method"] == "gru"
    assert float(rob.d_rmse.sel(check="lag", level=0)) == 0.0
    assert float(rob.d_rmse.sel(check="lag", level=1)) != 0.0
    # The GRU reads no segment input: masking coarse nodes changes nothing.
    assert float(rob.d_rmse.sel(check="mask_coarse", level=0)) == 0.0
    assert np.isfinite(float(rob.d_rmse.sel(check="shift", level=0)))


def test_default_days_follow_what_the_fit_read() -> None:
    # A network keeps its periods under config["periods"]; its training days were
    # scored as if held out when it had no test period.
    import types

    import pandas as pd

    from xmsgl.robustness import _default_days

    time = pd.date_range("2000-10-01", "2003-09-30")
    network = types.SimpleNamespace(config={"periods": {
        "train": [["2000-10-01", "2001-09-30"]], "val": [["2001-10-01", "2002-09-30"]], "test": []}})
    days = _default_days(network, time)
    assert time[days][0] == pd.Timestamp("2002-10-01") and days.sum() == 365
    baseline = types.SimpleNamespace(config={"train": [["2000-10-01", "2002-09-30"]]})
    assert time[_default_days(baseline, time)][0] == pd.Timestamp("2002-10-01")
    tested = types.SimpleNamespace(config={"periods": {"test": [["2001-01-01", "2001-01-31"]]}})
    assert _default_days(tested, time).sum() == 31
    # Nothing held out to score: every day, said to be in-sample.
    with pytest.warns(xmsgl.XmsglWarning, match="in-sample.*time="):
        assert _default_days(types.SimpleNamespace(config={}), time).all()
    fitted_on_all = types.SimpleNamespace(config={"train": [["2000-10-01", "2003-09-30"]]})
    with pytest.warns(xmsgl.XmsglWarning, match="in-sample"):
        assert _default_days(fitted_on_all, time).all()
    # A test period outside the data names the period, not time=None.
    with pytest.raises(xmsgl.TimeError, match="model's test period 2001-01-01/2001-01-31.*time="):
        _default_days(tested, pd.date_range("2002-10-01", "2003-09-30"))
    # A light baseline keeps the test days of the default split as config["test"]: those are
    # scored (every day was, training included, with a warning that said there were none).
    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2004-09-30", seed=1)
    clim = xmsgl.fit(ds, "climatology")
    test = clim.config["test"]
    time4 = pd.DatetimeIndex(ds.time.values)
    days = time4[_default_days(clim, time4)]
    assert (str(days[0].date()), str(days[-1].date())) == tuple(test[0]) and len(test) == 1
    with pytest.raises(xmsgl.TimeError, match=f"model's test period {test[0][0]}/{test[0][1]}"):
        _default_days(clim, pd.date_range("2000-10-01", "2001-09-30"))


def test_shift_goes_by_date_and_levels_are_checked_before_any_run(basin: xr.Dataset) -> None:
    """A shift of s days starts the prediction on the date s days before the first scored
    day (it counted rows, so a gap stretched it); levels the record cannot take are
    refused before the first model run."""
    from xmsgl import robustness as rob

    t = basin.time.values
    gap = basin.isel(time=np.flatnonzero((t < np.datetime64("2001-07-01"))
                                         | (t >= np.datetime64("2001-07-26"))))
    clim = fit_baseline(gap, "climatology", train=("2000-10-01", "2001-06-30"))
    starts = []
    real = rob._predict

    def spy(model, ds, time, device=None):  # type: ignore[no-untyped-def]
        starts.append(time[0])
        return real(model, ds, time, device)

    import unittest.mock

    with unittest.mock.patch.object(rob, "_predict", spy):
        rob.robustness(gap, clim, {"shift": [20]}, time=("2001-08-01", "2001-09-30"), n_draws=3)
    first = pd.Timestamp("2001-08-01")
    days_before = [(first - pd.Timestamp(d)).days for d in starts[1:]]
    assert all(1 <= d <= 20 for d in days_before), days_before
    calls = []
    with unittest.mock.patch.object(rob, "_predict", lambda *a: calls.append(a)):
        for checks, match in (({"shift": [400]}, "shift level 400.*304 days before"),
                              ({"lag": [1, 800]}, "lag level 800"),
                              ({"lowpass": [7.0, 600.0]}, "lowpass level=600"),
                              ({"bandpass": [(7.0, 600.0)]}, "bandpass long=600")):
            with pytest.raises(xmsgl.ParameterError, match=match):
                rob.robustness(gap, clim, checks, time=("2001-08-01", "2001-09-30"))
    assert calls == []


def _without_truth(ds: xr.Dataset) -> xr.Dataset:
    return ds.drop_vars([v for v in ds.data_vars if str(v).endswith("_true")])


def test_robustness_scores_masked_test_observations_on_data_without_truth(basin: xr.Dataset) -> None:
    ds = _without_truth(basin)
    test = ("2001-10-01", "2002-09-30")
    before = ds.time < np.datetime64(test[0])
    hidden = ds.assign(reach_temp=ds.reach_temp.where(before), seg_temp=ds.seg_temp.where(before))
    clim = fit_baseline(hidden, "climatology", train=("2000-10-01", "2001-09-30"))
    # The test period's observations are masked in `hidden`: nothing to score there, and
    # the error says how to score them.
    with pytest.raises(xmsgl.DataError, match="hide_scored=True"):
        robustness(hidden, clim, ["lag"], truth="reach_temp")
    rob = robustness(ds, clim, {"lag": [0, 3]}, time=test, hide_scored=True)
    assert rob.attrs["truth"] == "reach_temp" and rob.attrs["hide_scored"] == 1
    assert np.isfinite(float(rob.base_rmse)) and float(rob.d_rmse.sel(check="lag", level=0)) == 0.0
    same = robustness(hidden, clim, {"lag": [0, 3]}, time=test, truth=ds.reach_temp)
    np.testing.assert_allclose(same.rmse.values, rob.rmse.values)
    # A gauge-driven baseline never sees the scored observations: it cannot reproduce them.
    idw = fit_baseline(hidden, "idw", train=("2000-10-01", "2001-09-30"))
    rob = robustness(ds, idw, {"mask_gauges": [1.0]}, time=test, n_draws=1, hide_scored=True)
    assert float(rob.base_rmse) > 0.1
    assert float(rob.d_rmse.sel(check="mask_gauges", level=0)) == 0.0
    # Without hide_scored it reproduces what it is scored against: said so, whatever
    # the truth's name (a copy of the observations under another name went unsaid, and
    # so did the truth of reaches observed on the scored days).
    for truth in (None, ds.reach_temp.rename("obs")):
        with pytest.warns(xmsgl.InSampleWarning, match=r"'idw' baseline returns the observations it "
                                                       r"reads \(reach_temp, and seg_temp at each "
                                                       r"segment's outlet reach\) .* \d+ of the \d+ "
                                                       r"reach-days scored against '(reach_temp|obs)'"):
            rob = robustness(ds, idw, {"lag": [0]}, time=test, truth=truth)
        assert float(rob.base_rmse) < 1e-6
    # The synthetic truth, at the reach-days observed (or copied from seg_temp at the
    # outlet reaches) on the scored days.
    from xmsgl.baselines import coarse_copies

    days = slice(*test)
    read = (basin.reach_temp.notnull() | coarse_copies(basin)).sel(time=days)
    n = int((read & basin.reach_temp_true.sel(time=days).notnull()).sum())
    with pytest.warns(xmsgl.InSampleWarning, match=rf" {n} of the \d+ reach-days scored against "
                                                   r"'reach_temp_true' are reach-days whose"):
        robustness(basin, idw, {"lag": [0]}, time=test)
    # Coarse observations alone are copied too.
    with pytest.warns(xmsgl.InSampleWarning, match=r"reads \(seg_temp at each segment's outlet reach\)"):
        robustness(basin.drop_vars("reach_temp"), idw, {"lag": [0]}, time=test)


def test_robustness_refuses_a_truth_without_labels_and_text_for_numbers(basin: xr.Dataset) -> None:
    from xmsgl.baselines import fit_baseline

    clim = fit_baseline(basin, "climatology")
    bare = xr.DataArray(basin.reach_temp.transpose("reach", "time").values, dims=("reach", "time"))
    # It failed in xarray's sel with a TypeError.
    with pytest.raises(xmsgl.SchemaError, match=r"has no 'reach' or 'time' coordinate.*"
                                                r"truth.assign_coords\(reach=ds\['reach'\], time=ds\['time'\]\)"):
        robustness(basin, clim, {"lag": [0]}, truth=bare)
    # A share given as text was taken (a period as text was refused).
    with pytest.raises(xmsgl.ParameterError, match="mask_coarse level='0.5' must be a share"):
        robustness(basin, clim, {"mask_coarse": ["0.5"]})
    with pytest.raises(xmsgl.ParameterError, match="must be a share"):
        robustness(basin, clim, {"mask_coarse": [np.True_]})
    # Levels as a numpy array are levels (the array was taken for one level), and
    # bandpass pairs as arrays are pairs.
    a = robustness(basin, clim, {"lag": np.array([1, 3])}, n_draws=1)
    b = robustness(basin, clim, {"lag": [1, 3]}, n_draws=1)
    np.testing.assert_array_equal(a.rmse.values, b.rmse.values)
    c = robustness(basin, clim, {"bandpass": [np.array([7, 120]), np.array([2, 30])]}, n_draws=1)
    assert list(c.setting.sel(check="bandpass").values) == list(
        robustness(basin, clim, {"bandpass": [[7, 120], [2, 30]]}, n_draws=1).setting.sel(
            check="bandpass").values)


def test_filters_bridge_missing_values(basin: xr.Dataset) -> None:
    holed = basin.copy()
    air = basin.reach_air_temp.copy()
    air[0, 100] = np.nan
    holed["reach_air_temp"] = air
    for out, ref in ((lowpass(holed, 30.0), lowpass(basin, 30.0)),
                     (bandpass(holed, 5.0, 60.0), bandpass(basin, 5.0, 60.0))):
        got = out.reach_air_temp
        # The missing day stays missing; it does not spread over the series.
        assert int(got.isnull().sum()) == 1 and bool(got[0, 100].isnull())
        np.testing.assert_allclose(got.values[1:], ref.reach_air_temp.values[1:])
        np.testing.assert_allclose(got[0].fillna(0).values, ref.reach_air_temp[0].where(got[0].notnull(), 0),
                                   atol=0.5)


def test_bandpass_keeps_the_mean_of_the_days_with_values(basin: xr.Dataset) -> None:
    """As documented: each forcing keeps its temporal mean, over the days it has, with a
    missing summer too (the bridged series' mean, 0.3 degC warmer, was added back)."""
    t = basin.time.values
    summer = (t >= np.datetime64("2001-06-01")) & (t < np.datetime64("2001-09-01"))
    gap = basin.isel(time=np.flatnonzero(~summer))
    holed = basin.assign(seg_air_temp=basin.seg_air_temp.where(~summer))
    for ds in (basin, gap, holed):
        got = bandpass(ds, 5.0, 60.0).seg_air_temp
        np.testing.assert_allclose(got.mean("time").values, ds.seg_air_temp.mean("time").values,
                                   rtol=0, atol=1e-4)
    # The variations kept are those of the band: the same as without the mean moved.
    np.testing.assert_allclose(bandpass(gap, 5.0, 60.0).seg_air_temp.values,
                               bandpass(holed, 5.0, 60.0).seg_air_temp.dropna("time").values,
                               atol=1e-4)


def _ramp_with_gap(basin: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    days = np.arange(basin.sizes["time"], dtype=np.float32)
    ramp = xr.DataArray(days, dims="time", coords={"time": basin.time})
    full = basin.assign(seg_air_temp=(basin.seg_air_temp * 0 + ramp).assign_attrs(basin.seg_air_temp.attrs))
    gap = full.sel(time=(full.time < np.datetime64("2000-11-20")) | (full.time > np.datetime64("2000-11-22")))
    return full, gap


def test_lag_and_filters_go_by_date_across_gaps(basin: xr.Dataset) -> None:
    full, gap = _ramp_with_gap(basin)
    late = lag(gap, 1, variables="seg_air_temp").seg_air_temp.isel(seg=0)
    # 2000-11-23 gets the forcing of 2000-11-22 (bridged inside the gap), not of 2000-11-19.
    want = float(full.seg_air_temp.isel(seg=0).sel(time="2000-11-22"))
    assert float(late.sel(time="2000-11-23")) == pytest.approx(want)
    np.testing.assert_allclose(late.values, lag(full, 1).seg_air_temp.isel(seg=0).sel(time=gap.time).values)
    # The filter runs on the daily calendar: on a ramp (bridged exactly) the gap changes nothing.
    low = lowpass(gap, 30.0, variables="seg_air_temp").seg_air_temp.isel(seg=0)
    ref = lowpass(full, 30.0, variables="seg_air_temp").seg_air_temp.isel(seg=0).sel(time=gap.time)
    np.testing.assert_allclose(low.values, ref.values, atol=1e-3)
    assert low.sizes["time"] == gap.sizes["time"]


def test_single_variable_name_and_seeds(basin: xr.Dataset) -> None:
    out = lowpass(basin, 30.0, variables="seg_air_temp")
    assert not out.seg_air_temp.identical(basin.seg_air_temp)
    xr.testing.assert_identical(out.reach_air_temp, basin.reach_air_temp)
    with pytest.raises(xmsgl.SchemaError, match=r"\['nope'\]"):
        lowpass(basin, 30.0, variables="nope")
    for bad in (-1, 1.5, True):
        with pytest.raises(xmsgl.ParameterError, match="seed="):
            mask_coarse(basin, 0.5, seed=bad)
        with pytest.raises(xmsgl.ParameterError, match="seed="):
            mask_gauges(basin, 0.5, seed=bad)
    with pytest.raises(xmsgl.ParameterError, match="seed=-1"):
        robustness(basin, fit_baseline(basin, "climatology"), ["mask_coarse"], seed=-1)
    unsorted = basin.isel(time=[1, 0, 2, 3] + list(range(4, basin.sizes["time"])))
    with pytest.raises(xmsgl.TimeError, match="sortby"):
        lag(unsorted, 1)


def test_bandpass_without_a_resolvable_band_is_a_parameter_error(basin: xr.Dataset) -> None:
    # A band whose long period is 2 days or less lies at or above the Nyquist frequency
    # of daily data: scipy's butter() used to fail with a plain ValueError, in
    # robustness() only after the unperturbed run.
    for short, long in ((1.0, 2.0), (0.5, 1.5)):
        with pytest.raises(xmsgl.ParameterError, match="longer than 2 days"):
            bandpass(basin, short, long)
    with pytest.raises(xmsgl.ParameterError, match="longer than 2 days"):
        robustness(basin, fit_baseline(basin, "climatology"), {"bandpass": [(1.0, 2.0)]})
    # Just above it the band-pass is a high-pass, as documented for short <= 2.
    assert bandpass(basin, 2.0, 3.0).seg_air_temp.notnull().all()


def test_review_fixes_split_test_draws_long_periods_and_typed_errors() -> None:
    import xmsgl
    from xmsgl.baselines import fit_baseline
    from xmsgl.exceptions import ParameterError, PeriodError
    from xmsgl.robustness import bandpass, lowpass, robustness

    d = xmsgl.datasets.synthetic_basin(n_segments=6, start="2011-10-01", end="2015-09-30",
                                       reach_obs_share=0.3)
    # A test period in two parts is scored on those parts only (the years between
    # were scored too).
    clim = fit_baseline(d, "climatology", train=("2012-10-01", "2014-09-30"))
    clim.config["periods"] = {"test": [["2011-10-01", "2012-09-30"], ["2014-10-01", "2015-09-30"]]}
    rob = robustness(d, clim, {"lag": [0]})
    assert rob.attrs["scored_days"] == "2011-10-01/2012-09-30, 2014-10-01/2015-09-30"
    # A check's draws do not depend on the other checks listed beside it.
    h = fit_baseline(d, "harmonic")
    alone = robustness(d, h, {"mask_coarse": [0.5]}, n_draws=2, hide_scored=True)
    beside = robustness(d, h, {"lag": [1], "mask_coarse": [0.5]}, n_draws=2, hide_scored=True)
    assert float(alone.d_rmse.sel(check="mask_coarse", level=0)) == float(
        beside.d_rmse.sel(check="mask_coarse", level=0))
    # Cutoffs slower than half the record were set by the filter's edges (or failed
    # with a LinAlgError).
    for call in (lambda: lowpass(d, 3000.0), lambda: bandpass(d, 7.0, 1e9)):
        with pytest.raises(ParameterError, match="more than half of the record"):
            call()
    with pytest.raises(ParameterError, match="names no check"):
        robustness(d, h, {})
    with pytest.raises(PeriodError):
        robustness(d, h, {"lag": [1]}, time=("abc", "def"))
    with pytest.warns(xmsgl.XmsglWarning, match="time='2015' reaches past .* only the 273 days"):
        rob = robustness(d, h, {"lag": [1]}, time="2015", hide_scored=True)
    assert rob.attrs["scored_days"] == "2015-01-01/2015-09-30"


def test_daily_times_in_microseconds_are_daily(small_basin: xr.Dataset) -> None:
    # pandas 3 builds datetime64[us] indexes: one step a day is still a day.
    us = small_basin.assign_coords(time=small_basin.time.values.astype("datetime64[us]"))
    np.testing.assert_allclose(lowpass(us, 10)["reach_air_temp"].values,
                               lowpass(small_basin, 10)["reach_air_temp"].values)
    np.testing.assert_allclose(bandpass(us, 5, 30)["reach_air_temp"].values,
                               bandpass(small_basin, 5, 30)["reach_air_temp"].values)


def test_lowpass_of_dates_beyond_2262() -> None:
    # Gaps were found in nanoseconds: pandas' OutOfBoundsDatetime for CMIP extensions.
    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2001-10-01", end="2002-09-30", seed=0)
    far = ds.assign_coords(time=pd.date_range("2297-10-01", periods=ds.sizes["time"], freq="D", unit="s"))
    a = lowpass(far.drop_isel(time=[5]), 10.0)
    b = lowpass(ds.drop_isel(time=[5]), 10.0)
    np.testing.assert_array_equal(a.reach_air_temp.values, b.reach_air_temp.values)
    assert str(a.time.values[0])[:10] == "2297-10-01"


def test_booleans_and_a_truth_without_days_are_refused(basin: xr.Dataset) -> None:
    # True was read as 1: a 1-day lowpass (no change), every segment masked, a
    # "no" that hid the scored observations, and xarray's ValueError for a truth of one day.
    model = fit_baseline(basin, "climatology")
    for checks in ({"lowpass": [True]}, {"mask_coarse": [True]}, {"mask_gauges": [False]},
                   {"bandpass": [(True, 30)]}):
        with pytest.raises(xmsgl.ParameterError, match=f"{next(iter(checks))}|short"):
            robustness(basin, model, checks)
    with pytest.raises(xmsgl.ParameterError, match="hide_scored='no' must be True or False"):
        robustness(basin, model, {"lag": [1]}, hide_scored="no")
    with pytest.raises(xmsgl.SchemaError, match=r"truth 'reach_temp_true' must be a \(reach, time\)"):
        robustness(basin, model, {"lag": [1]}, truth=basin.reach_temp_true.isel(time=400))


def test_mask_gauges_without_observations_is_refused_before_the_first_run(basin: xr.Dataset) -> None:
    # mask_gauges needs reach_temp; on a forcing-only dataset scored against a truth
    # given apart, that is refused before the first model run (it came after all the
    # other checks' runs); a shift longer than the record before is advised to be left out.
    import unittest.mock

    from xmsgl import robustness as rob

    clim = fit_baseline(basin, "climatology", train=("2000-10-01", "2001-09-30"))
    calls: list[object] = []
    with unittest.mock.patch.object(rob, "_predict", lambda *a: calls.append(a)):
        with pytest.raises(xmsgl.SchemaError, match="mask_gauges drops observed reaches of 'reach_temp', "
                                                    "which the dataset lacks; leave mask_gauges out"):
            rob.robustness(basin.drop_vars("reach_temp"), clim, truth=basin.reach_temp_true,
                           time=("2001-10-01", "2002-09-30"))
        with pytest.raises(xmsgl.ParameterError, match="0 days before the first scored day "
                                                       r"\(2000-10-01\).*; leave shift out of checks"):
            rob.robustness(basin, clim, {"shift": [30]}, time=("2000-10-01", "2001-09-30"))
    assert calls == []


def test_noon_stamps_leave_the_last_training_day_unscored(basin: xr.Dataset) -> None:
    # The default days follow the training period by day: a stamp at noon on its last
    # day used to count as a day after it, and was scored although trained on.
    noon = basin.assign_coords(time=basin.time + pd.Timedelta(hours=12))
    model = fit_baseline(noon, "climatology", train=("2000-10-01", "2001-09-30"))
    rob = robustness(noon, model, {"lag": [3]})
    assert rob.attrs["scored_days"].startswith("2001-10-01/")


def test_robustness_refuses_what_it_cannot_read_with_the_fix(basin: xr.Dataset) -> None:
    model = fit_baseline(basin, "climatology", train=("2000-10-01", "2001-09-30"))
    with pytest.raises(xmsgl.TimeError, match=r"strictly increasing 'time'.*ds\.sortby\('time'\)"):
        robustness(basin.isel(time=slice(None, None, -1)), model, {"lag": [3]})
    with pytest.raises(xmsgl.SchemaError, match="expected an xarray.Dataset, got DataArray"):
        robustness(basin.reach_air_temp, model, {"lag": [3]})
    for truth in (basin.reach_temp_true.values, basin[["reach_temp_true"]]):
        with pytest.raises(xmsgl.SchemaError, match="must be a \\(reach, time\\) DataArray"):
            robustness(basin, model, {"lag": [3]}, truth=truth)
    short = basin.isel(time=slice(0, 12))
    with pytest.raises(xmsgl.DataError, match=r"depends on the order alone\): use a longer record or a "
                                              r"lower order \(order=1 needs more than 9 days\)"):
        lowpass(short, 3)
    assert lowpass(short, 3, order=1).sizes["time"] == 12


def test_a_network_model_runs_on_the_device_given(basin: xr.Dataset, monkeypatch) -> None:
    import xmsgl.downscale as dsc

    model = basin.msgl.fit(method="fine-only", epochs=1, window=60, stride=60, progress=False,
                           train=("2000-10-01", "2001-06-30"), val=("2001-07-01", "2001-09-30"),
                           test=("2001-10-01", "2002-09-30"))
    asked: list[str] = []
    real = dsc.resolve_device
    monkeypatch.setattr(dsc, "resolve_device", lambda device="auto": asked.append(str(device)) or real(device))
    out = robustness(basin, model, {"lag": [1]}, device="cpu")
    assert asked and set(asked) == {"cpu"}, asked
    assert "device='cpu'" in out.attrs["history"]
    with pytest.raises(xmsgl.ParameterError, match="device"):
        robustness(basin, model, {"lag": [1]}, device="banana")
    clim = fit_baseline(basin, "climatology", train=("2000-10-01", "2001-09-30"))
    with pytest.raises(xmsgl.ParameterError, match="device"):
        robustness(basin, clim, {"lag": [1]}, device="banana")  # a baseline runs on none


@pytest.mark.parametrize("perturb", [lambda da: lowpass(da, 30), lambda da: bandpass(da, 5, 30),
                                     lambda da: lag(da, 1), lambda da: mask_coarse(da, 0.5),
                                     lambda da: mask_gauges(da, 0.5)])
def test_perturbations_of_one_variable_are_refused_as_not_a_dataset(basin: xr.Dataset, perturb) -> None:
    with pytest.raises(xmsgl.SchemaError, match="expected an xarray.Dataset, got DataArray"):
        perturb(basin["reach_temp"])


def test_robustness_labels_signs_zero_changes_and_lazy_truth(basin: xr.Dataset) -> None:
    """The level is a position (said so), d_bias's sign is named, a check that changes
    nothing gives exactly 0, and a dask-backed truth without values is refused too."""
    model = xmsgl.fit(basin, "climatology")
    rob = robustness(basin, model, {"lag": [0, 3], "mask_gauges": [0.5]}, n_draws=3)
    assert "position" in rob.level.attrs["long_name"]
    assert "warmer, not worse" in rob.d_bias.attrs["long_name"]
    assert float(rob.d_bias.sel(check="lag", level=0)) == 0.0
    # climatology reads no gauge: three draws, each exactly the base.
    for m in ("d_rmse", "d_mae", "d_bias"):
        assert float(rob[m].sel(check="mask_gauges", level=0)) == 0.0, m
    masked = basin.assign(reach_temp_true=basin.reach_temp_true.where(basin.time < np.datetime64("2001-10-01")))
    with pytest.raises(xmsgl.DataError, match="holds no value"):
        robustness(masked.chunk({"time": 200}), model, {"lag": [1]}, truth="reach_temp_true")
    # A perturbed copy says what was done to it.
    assert "xmsgl.robustness.lag(ds, 3) changed" in lag(basin, 3).attrs["history"]


def test_a_models_history_is_a_copy(half_year_msgl) -> None:
    sha = half_year_msgl.sha256
    h = half_year_msgl.history
    h["main"]["best_epoch"] = 99
    assert half_year_msgl.sha256 == sha and half_year_msgl.history["main"]["best_epoch"] != 99


def test_robustness_of_dates_beyond_2262() -> None:
    # The scored period was sliced by date strings, read in nanoseconds: OutOfBoundsDatetime.
    from xmsgl.baselines import fit_baseline

    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2000-10-01", end="2002-09-30", seed=0)
    # 400 years on: the same calendar (leap days included), so the same scores.
    far = ds.assign_coords(time=pd.date_range("2400-10-01", periods=ds.sizes["time"], freq="D", unit="s"))
    near_model = fit_baseline(ds, "climatology", train=("2000-10-01", "2001-09-30"))
    far_model = fit_baseline(far, "climatology", train=("2400-10-01", "2401-09-30"))
    near = robustness(ds, near_model, {"lag": [1]}, time=("2001-10-01", "2002-09-30"), n_draws=1)
    got = robustness(far, far_model, {"lag": [1]}, time=("2401-10-01", "2402-09-30"), n_draws=1)
    np.testing.assert_allclose(got.rmse.values, near.rmse.values)


def test_lag_whatever_the_time_unit() -> None:
    # Shifts were computed in the index's unit against a day in nanoseconds: an index in
    # seconds gave wrong shifts, and nanoseconds wrapped near 1677 (the record's last value
    # stood before its first day).
    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-04-30", seed=1)
    ds = ds.drop_isel(time=[20, 21])  # a gap, which the lag bridges by date
    want = lag(ds, 3).seg_air_temp.values
    for start, unit in (("2001-01-01", "s"), ("2001-01-01", "us"), ("1677-09-22", "ns")):
        days = pd.date_range(start, periods=ds.sizes["time"] + 2, freq="D", unit=unit).delete([20, 21])
        got = lag(ds.assign_coords(time=days), 3).seg_air_temp.values
        np.testing.assert_allclose(got, want, err_msg=f"{start} [{unit}]")
