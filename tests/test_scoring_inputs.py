"""What scoring and the baselines say about inputs that would score or fit without a word:
integer observations with in-range missing markers, predictions in another scale
labelled degC, and training observations all of one value."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import xmsgl
import xmsgl.metrics as metrics
from xmsgl.baselines import BASELINES, fit_baseline


@pytest.fixture(scope="module")
def basin() -> xr.Dataset:
    return xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2001-09-30",
                                          seed=0, reach_obs_share=0.3)


def _labelled(da: xr.DataArray, values: np.ndarray, units: str) -> xr.DataArray:
    return da.copy(data=values.astype(np.float64)).assign_attrs(units=units)


def test_integer_observations_with_a_missing_marker_warn(basin: xr.Dataset) -> None:
    pred, obs = basin.reach_temp_true, basin.reach_temp
    n_real = int(np.isfinite(obs.values).sum())
    assert 0 < n_real < obs.size
    marked = obs.fillna(-1).round().astype("int16")
    with pytest.warns(xmsgl.XmsglWarning, match=r"observed is stored as int16, which cannot mark a "
                      r"value missing.*smallest value, -1.*observed.where\(observed != -1\)"
                      r"\.astype\(float\)"):
        metrics.rmse(pred, marked)
    ds = basin.drop_vars(["reach_temp_true", "seg_temp_true"]).assign(reach_temp=marked)
    with pytest.warns(xmsgl.XmsglWarning, match="cannot mark a value missing"):
        assert int(ds.msgl.evaluate(pred).n) == obs.size  # every node-day, markers too
    # The fix the warning gives scores the real observations only, without a word.
    fixed = marked.where(marked != -1).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xmsgl.XmsglWarning)
        assert int(metrics.skill(pred, fixed).n) == n_real


def test_kelvin_or_fahrenheit_labelled_degc_are_named(basin: xr.Dataset) -> None:
    truth, obs = basin.reach_temp_true, basin.reach_temp
    kelvin = _labelled(truth, truth.values + 273.15, "degC")
    with pytest.raises(xmsgl.UnitsError, match=r"prediction is labelled degC but holds values from "
                       r".* look like kelvin.*\(prediction - 273.15\)"):
        metrics.rmse(kelvin, obs)
    with pytest.raises(xmsgl.UnitsError, match="look like kelvin"):
        basin.msgl.evaluate(kelvin)
    # One spike past 100 among degC values is a fill value, not degF (which it fits).
    spiked = np.clip(truth.values, 15.0, None)  # summer water: all of it fits degF too
    spiked.flat[0] = 120.0
    with pytest.raises(xmsgl.DataError, match=r"fill values.*prediction.where\(prediction < 100\)"):
        metrics.rmse(_labelled(truth, spiked, "degC"), obs)
    # Integers without units in kelvin are named too.
    with pytest.raises(xmsgl.UnitsError, match="observed has no 'units' attribute .*look like kelvin"):
        metrics.align_pair(truth.drop_attrs(),
                           (truth + 273.15).round().astype("int16").drop_attrs())


@pytest.mark.parametrize(("code", "mask"), [(-9999.0, "observed > -50"), (999.0, "observed < 100")])
def test_the_mask_a_fill_value_message_gives_drops_the_fill_values(
        basin: xr.Dataset, code: float, mask: str) -> None:
    obs = basin.reach_temp.copy(deep=True)
    first = np.argwhere(np.isfinite(obs.values))[0]
    obs.values[tuple(first)] = code
    with pytest.raises(xmsgl.DataError, match=rf"fill values .*observed.where\({mask}\)") as err:
        metrics.rmse(basin.reach_temp_true, obs)
    assert "look like" not in str(err.value)
    # The suggested mask, applied, lets the pair be scored.
    masked = eval(f"observed.where({mask})", {"observed": obs})
    assert int(metrics.skill(basin.reach_temp_true, masked).n) == int(np.isfinite(obs.values).sum()) - 1


def test_baselines_warn_of_constant_training_observations(basin: xr.Dataset) -> None:
    constant = basin.assign(reach_temp=basin.reach_temp.where(basin.reach_temp.isnull(), 10.0),
                            seg_temp=basin.seg_temp.where(basin.seg_temp.isnull(), 10.0))
    n = int(np.isfinite(constant.reach_temp.values).sum() + np.isfinite(constant.seg_temp.values).sum())
    for method in BASELINES:
        with pytest.warns(xmsgl.XmsglWarning, match=rf"the {n} training observations are all 10 "
                          rf"degC: baseline '{method}' learns no variation"):
            fit_baseline(constant, method, train=("2000-10-01", "2001-09-30"))
    # One scale stuck while the other varies: named with its variable.
    stuck = basin.assign(reach_temp=constant.reach_temp)
    with pytest.warns(xmsgl.XmsglWarning, match="observations of 'reach_temp' are all 10 degC"):
        fit_baseline(stuck, "climatology", train=("2000-10-01", "2001-09-30"))
    # Varying observations: no such warning (warnings are errors in this test run).
    fit_baseline(basin, "climatology", train=("2000-10-01", "2001-09-30"))
