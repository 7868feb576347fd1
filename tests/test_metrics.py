"""Metrics: hand-computed values, laziness on dask input, alignment and empty selections."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl
from xmsgl.evaluate import evaluate
from xmsgl.metrics import align_pair, hot_mask, kge, nse, rmse, skill


def _series(values: list[float] | np.ndarray, start: str = "2001-01-01") -> xr.DataArray:
    t = pd.date_range(start, periods=len(values))
    return xr.DataArray(np.asarray(values, dtype=float), dims="time", coords={"time": t},
                        attrs={"units": "degC"})


@pytest.fixture
def obs2d() -> xr.DataArray:
    rng = np.random.default_rng(0)
    t = pd.date_range("2001-01-01", periods=730)
    seasonal = 12 + 9 * np.sin(2 * np.pi * (np.arange(730) - 100) / 365.25)
    vals = seasonal[None, :] + np.array([[0.0], [2.0], [-1.0]]) + rng.normal(0, 1, (3, 730))
    return xr.DataArray(vals, dims=("reach", "time"), coords={"reach": [11, 12, 13], "time": t},
                        attrs={"units": "degC"})


def test_perfect_prediction() -> None:
    o = _series([1.0, 4.0, 2.0, 8.0])
    out = skill(o, o)
    assert float(out.rmse) == 0 and float(out.mae) == 0 and float(out.bias) == 0
    assert float(out.nse) == 1 and float(out.kge) == 1
    assert int(out.n) == 4


@pytest.mark.parametrize("b", [0.7, -2.5])
def test_constant_bias(b: float) -> None:
    o = _series([3.0, 5.0, 9.0, 11.0, 4.0])
    out = skill(o + b, o)
    assert float(out.bias) == pytest.approx(b)
    assert float(out.rmse) == pytest.approx(abs(b))
    assert float(out.mae) == pytest.approx(abs(b))
    # A shifted copy keeps the correlation and spread: KGE only sees the mean ratio.
    beta = (o.mean() + b) / o.mean()
    assert float(out.kge) == pytest.approx(1 - abs(float(beta) - 1))


def test_hand_computed_values() -> None:
    p, o = _series([1.0, 2.0, 3.0, 4.0]), _series([2.0, 2.0, 4.0, 4.0])
    out = skill(p, o)
    assert float(out.bias) == pytest.approx(-0.5)
    assert float(out.mae) == pytest.approx(0.5)
    assert float(out.rmse) == pytest.approx(np.sqrt(0.5))
    assert float(out.nse) == pytest.approx(1 - 2.0 / 4.0)
    r = 4.0 / np.sqrt(5.0 * 4.0)
    alpha = np.sqrt(5.0 / 4.0)
    beta = 2.5 / 3.0
    assert float(out.kge) == pytest.approx(1 - np.sqrt((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2))
    assert float(nse(p, o)) == pytest.approx(0.5)
    assert float(kge(p, o)) == pytest.approx(float(out.kge))
    assert rmse(p, o).attrs["units"] == "degC" and nse(p, o).attrs["units"] == "1"


def test_nan_pairs_are_skipped() -> None:
    p = _series([1.0, np.nan, 3.0, 10.0])
    o = _series([1.0, 5.0, 3.0, np.nan])
    out = skill(p, o)
    assert int(out.n) == 2 and float(out.rmse) == 0


def test_constant_observations_give_nan_efficiencies() -> None:
    out = skill(_series([1.0, 2.0]), _series([3.0, 3.0]))
    assert np.isnan(float(out.nse)) and np.isnan(float(out.kge))
    assert float(out.rmse) == pytest.approx(np.sqrt(2.5))


def test_per_reach_and_units(obs2d: xr.DataArray) -> None:
    pred = obs2d + xr.DataArray([0.0, 1.0, -2.0], dims="reach", coords={"reach": [11, 12, 13]})
    out = evaluate(pred, obs2d, dims="time")
    assert out.rmse.dims == ("reach",)
    np.testing.assert_allclose(out.rmse.values, [0.0, 1.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(out.bias.values, [0.0, 1.0, -2.0], atol=1e-12)
    assert out.n.values.tolist() == [730, 730, 730]
    for name, units in [("rmse", "degC"), ("mae", "degC"), ("bias", "degC"), ("nse", "1"), ("kge", "1")]:
        assert out[name].attrs["units"] == units
    assert "evaluate(" in out.attrs["history"]


def test_unobserved_reach_reports_zero_pairs(obs2d: xr.DataArray) -> None:
    o = obs2d.copy()
    o[1] = np.nan
    out = evaluate(obs2d, o, dims="time")
    assert out.n.values.tolist() == [730, 0, 730]
    assert np.isnan(out.rmse.values[1]) and out.rmse.values[0] == 0


def test_seasons_and_hot_days(obs2d: xr.DataArray) -> None:
    out = evaluate(obs2d + 1.0, obs2d, by=["season", "hot"])
    assert out["subset"].values.tolist() == ["all", "DJF", "MAM", "JJA", "SON", "hot10"]
    n = out.n.to_series()
    assert n["all"] == 3 * 730
    assert n[["DJF", "MAM", "JJA", "SON"]].sum() == n["all"]
    assert n["hot10"] == pytest.approx(0.1 * n["all"], rel=0.05)
    np.testing.assert_allclose(out.rmse.values, 1.0)


def test_seasons_on_a_model_calendar() -> None:
    pytest.importorskip("cftime")
    # A climate model's noleap days: seasons as on the standard calendar (90 DJF days).
    t = xr.date_range("2001-01-01", periods=365, freq="D", calendar="noleap", use_cftime=True)
    o = xr.DataArray(np.arange(365.0) % 17, dims="time", coords={"time": t}, attrs={"units": "degC"})
    out = evaluate(o + 2.0, o, by="season")
    assert out.n.sel(subset="DJF").item() == 90 and out.n.sel(subset="JJA").item() == 92
    np.testing.assert_allclose(out.rmse.values, 2.0)


def test_hot_days_per_reach_vs_pooled(obs2d: xr.DataArray) -> None:
    per = hot_mask(obs2d, per="reach")
    pooled = hot_mask(obs2d, per=None)
    # Per reach every reach keeps its own warmest tenth; pooled favours the warm reach 12.
    np.testing.assert_allclose(per.sum("time").values, 73, atol=1)
    counts = pooled.sum("time").values
    assert counts[1] > counts[0] > counts[2]
    out = evaluate(obs2d, obs2d, by="hot", hot=None)
    assert int(out.n.sel(subset="hot10")) == int(pooled.sum())


def _raise_if_computed(*args: object, **kwargs: object) -> None:
    raise AssertionError("a dask graph was computed")


def test_stays_lazy_on_dask(obs2d: xr.DataArray) -> None:
    lazy = obs2d.chunk({"reach": 1, "time": 200})
    with dask.config.set(scheduler=_raise_if_computed):
        out = evaluate(lazy + 0.5, lazy, dims="time", by=["season", "hot"])
        pooled = evaluate(lazy + 0.5, lazy)
    assert out.rmse.chunks is not None and pooled.rmse.chunks is not None
    assert out.rmse.dims == ("subset", "reach")
    eager = evaluate(obs2d + 0.5, obs2d, dims="time", by=["season", "hot"])
    done = out.compute()
    np.testing.assert_allclose(done.rmse.values, eager.rmse.values)
    np.testing.assert_array_equal(done.n.values, eager.n.values)
    np.testing.assert_allclose(float(pooled.rmse), 0.5)


def test_inner_join_aligns_by_label(obs2d: xr.DataArray) -> None:
    pred = obs2d.sel(reach=[13, 12]).isel(time=slice(100, 400))
    out = evaluate(pred, obs2d, dims="time")
    assert out.reach.values.tolist() == [13, 12]
    assert out.n.values.tolist() == [300, 300]
    assert np.all(out.rmse.values == 0)


def test_no_overlap_is_an_error(obs2d: xr.DataArray) -> None:
    other = obs2d.assign_coords(reach=[21, 22, 23])
    with pytest.raises(xmsgl.DataError, match=r"share no 'reach' label.*\[21, 22, 23\]"):
        evaluate(other, obs2d)
    later = obs2d.assign_coords(time=obs2d.time + np.timedelta64(3650, "D"))
    with pytest.raises(xmsgl.DataError, match="share no 'time' label") as info:
        evaluate(later, obs2d)
    assert "times of day" not in str(info.value)


def test_noon_stamps_against_midnight_stamps_read_apart(obs2d: xr.DataArray) -> None:
    # Both sides used to be listed as the same dates ('2001-01-01', ...).
    noon = obs2d.assign_coords(time=obs2d.time + np.timedelta64(12, "h"))
    with pytest.raises(xmsgl.DataError, match=r"prediction \['2001-01-01', .*observed "
                                              r"\['2001-01-01T12:00:00', .*share days but not times "
                                              r"of day.*dt.floor\('D'\)"):
        evaluate(obs2d, noon)
    floored = noon.assign_coords(time=noon["time"].dt.floor("D"))
    assert float(evaluate(obs2d, floored).rmse) == 0.0


def test_timezone_aware_time_is_a_time_error(obs2d: xr.DataArray) -> None:
    aware = obs2d.assign_coords(time=obs2d.indexes["time"].tz_localize("UTC"))
    with pytest.raises(xmsgl.TimeError, match="timezone-aware.*tz_localize\\(None\\)"):
        evaluate(obs2d, aware)


def test_a_day_selected_as_a_scalar_is_told_to_be_selected_as_a_list(obs2d: xr.DataArray) -> None:
    with pytest.raises(xmsgl.SchemaError, match=r"differ from observed dims \('reach', 'time'\); the "
                                                r"prediction holds a single 'time' as a scalar coordinate: "
                                                r"select it with a list to keep the dimension \(\.isel\(time=\[i\]\)"):
        evaluate(obs2d.isel(time=3), obs2d.transpose("reach", "time"))
    with pytest.raises(xmsgl.SchemaError, match=r"the observed holds a single 'reach'"):
        evaluate(obs2d, obs2d.isel(reach=0))
    assert int(evaluate(obs2d.isel(time=[3]), obs2d).n) == int(obs2d.isel(time=[3]).notnull().sum())
    # Another dimension altogether keeps the plain advice.
    with pytest.raises(xmsgl.SchemaError, match=r"\); rename or select so both have the same dimensions"):
        evaluate(obs2d.rename(reach="site"), obs2d)


def test_exact_join_names_the_mismatch(obs2d: xr.DataArray) -> None:
    # The side with no labels of its own is not named (it read "only in prediction: []").
    with pytest.raises(xmsgl.DataError, match=r"and observed \(only in observed: \[11\]\); use join="):
        evaluate(obs2d.sel(reach=[12, 13]), obs2d, join="exact")
    with pytest.raises(xmsgl.DataError, match=r"and observed \(only in prediction: \[11\]\); use join="):
        evaluate(obs2d, obs2d.sel(reach=[12, 13]), join="exact")
    p, o = align_pair(obs2d, obs2d.transpose("time", "reach"), join="exact")
    assert o.dims == p.dims


def test_bad_pairs_are_typed_errors(obs2d: xr.DataArray) -> None:
    with pytest.raises(xmsgl.SchemaError, match="dims"):
        evaluate(obs2d.isel(reach=0), obs2d)
    with pytest.raises(xmsgl.UnitsError, match="'K'"):
        evaluate(obs2d.assign_attrs(units="K"), obs2d)
    with pytest.raises(xmsgl.ParameterError, match="by="):
        evaluate(obs2d, obs2d, by="month")
    with pytest.raises(xmsgl.ParameterError, match=r"by=\['seasons'\] is not known \(did you mean 'season'\?\)"):
        evaluate(obs2d, obs2d, by="seasons")


def test_empty_selection_is_an_error(obs2d: xr.DataArray) -> None:
    with pytest.raises(xmsgl.DataError, match="selection is empty"):
        evaluate(obs2d, obs2d * np.nan)
    summer = obs2d.where(obs2d.time.dt.season == "JJA")
    # Without subsets the same data is fine.
    assert int(evaluate(obs2d, summer).n) == int(summer.notnull().sum())


def test_empty_subset_is_nan_with_zero_pairs_on_both_paths(obs2d: xr.DataArray) -> None:
    # A summer-only gauge: pairs exist, none in DJF. That subset is NaN with n = 0,
    # as on dask input, and n is int64 on both paths.
    summer = obs2d.where(obs2d.time.dt.season == "JJA").sel(reach=[12])
    pred = (obs2d + 0.5).sel(reach=[12])
    eager = evaluate(pred, summer, by=["season", "hot"])
    assert int(eager.n.sel(subset="all")) == int(summer.notnull().sum()) > 0
    assert int(eager.n.sel(subset="DJF")) == 0 and np.isnan(float(eager.rmse.sel(subset="DJF")))
    assert float(eager.rmse.sel(subset="JJA")) == pytest.approx(0.5)
    assert int(eager.n.sel(subset="hot10")) > 0
    lazy = evaluate(pred.chunk({"time": 100}), summer.chunk({"time": 100}), by=["season", "hot"])
    assert eager.n.dtype == lazy.n.dtype == np.int64
    xr.testing.assert_allclose(lazy.compute(), eager)
    per_reach = evaluate(obs2d + 0.5, obs2d.where(obs2d.time.dt.season == "JJA"), dims="time",
                         by="season")
    assert per_reach.n.dtype == np.int64 and int(per_reach.n.sel(subset="DJF").sum()) == 0


def test_empty_selection_message_says_which_side_is_empty(obs2d: xr.DataArray) -> None:
    with pytest.raises(xmsgl.DataError, match="observed holds no finite value"):
        evaluate(obs2d, obs2d * np.nan)
    # An empty prediction is not told to score other observations.
    with pytest.raises(xmsgl.DataError, match=r"prediction holds no finite value at the labels both "
                                              r"share\); check the prediction: the days or reaches") as err:
        evaluate(obs2d * np.nan, obs2d)
    assert "observations" not in str(err.value)
    with pytest.raises(xmsgl.DataError, match="never both at the same reach and day"):
        evaluate(obs2d.where(obs2d.time.dt.month < 6), obs2d.where(obs2d.time.dt.month >= 6))


def test_units_on_one_side_only(obs2d: xr.DataArray) -> None:
    kelvin = (obs2d + 273.15).assign_attrs(units="K")
    bare = obs2d.copy()
    bare.attrs = {}
    with pytest.raises(xmsgl.UnitsError, match="prediction is in 'K' but observed has no 'units'"):
        evaluate(kelvin, bare)
    # Kelvin values without units against degC: implausible for degC, refused.
    bare_k = (obs2d + 273.15)
    bare_k.attrs = {}
    with pytest.raises(xmsgl.UnitsError, match=r"prediction has no 'units' attribute \(or a blank one\) and holds values"):
        evaluate(bare_k, obs2d)
    # Plausible values: scored, with a warning naming the side without units.
    with pytest.warns(xmsgl.XmsglWarning, match="observed has no 'units' attribute"):
        out = evaluate(obs2d + 1.0, bare)
    assert float(out.rmse) == pytest.approx(1.0)
    with pytest.warns(xmsgl.XmsglWarning, match="prediction has no 'units'"):
        rmse(bare, obs2d)


def test_integer_observations_with_fill_values_are_refused(obs2d: xr.DataArray) -> None:
    ints = obs2d.round().astype(np.int16)
    ints[0, :10] = -999
    with pytest.raises(xmsgl.DataError, match="implausible for water temperature"):
        evaluate(obs2d, ints)
    with pytest.raises(xmsgl.DataError, match="_FillValue"):
        evaluate(obs2d, ints.where(ints > -999, 0).astype(np.int16).assign_attrs(_FillValue=-999))
    with pytest.raises(xmsgl.DataError, match="missing_value"):
        evaluate(obs2d, obs2d.round().astype(np.int16).assign_attrs(missing_value=-9999))
    # Plausible integers without fill attributes are data.
    assert int(evaluate(obs2d, obs2d.round().astype(np.int16)).n) == obs2d.size


def test_duplicated_labels_are_refused(obs2d: xr.DataArray) -> None:
    dup = xr.concat([obs2d, obs2d.isel(time=[5])], dim="time")
    with pytest.raises(xmsgl.TimeError, match=r"observed has duplicated 'time' labels \(first: '2001-01-06'"):
        evaluate(obs2d, dup)
    twice = xr.concat([obs2d, obs2d.isel(reach=[1])], dim="reach")
    with pytest.raises(xmsgl.DataError, match="prediction has duplicated 'reach' labels .first: 12"):
        evaluate(twice, obs2d)


def test_float_fill_codes_in_degc_are_refused() -> None:
    import xmsgl.metrics as metrics

    obs = xr.DataArray([12.0, -999.0, 14.0], dims="time", coords={"time": [0, 1, 2]},
                       attrs={"units": "degC"})
    pred = obs.where(obs > -50, 13.0)
    with pytest.raises(metrics.DataError, match="observed holds values from -999"):
        metrics.align_pair(pred, obs)
    # Other quantities in other units are not judged as temperatures.
    metrics.align_pair(pred.assign_attrs(units="m3 s-1"), obs.assign_attrs(units="m3 s-1"))


def test_float_fill_codes_without_units_on_either_side_are_refused() -> None:
    # attrs dropped by arithmetic on both sides: -999 is no water temperature in any scale.
    import xmsgl.metrics as metrics

    obs = xr.DataArray([12.0, -999.0, 14.0], dims="time", coords={"time": [0, 1, 2]})
    pred = obs.where(obs > -50, 13.0)
    with pytest.raises(metrics.DataError, match=r"observed has no 'units' attribute \(or a blank one\) and holds values "
                       r"from -999 to 14, implausible .* degC, K or degF"):
        metrics.rmse(pred, obs)
    with pytest.raises(metrics.DataError, match="prediction has no 'units'"):
        metrics.rmse(obs, pred)
    # Bare kelvin on both sides is scored as it is; bare masked values too.
    assert float(metrics.rmse(pred + 273.15, obs.where(obs > -50) + 273.15)) == pytest.approx(0.0)
    # Another quantity beyond that range scores once it carries its units.
    flow = xr.DataArray([450.0, 800.0], dims="time", coords={"time": [0, 1]})
    with pytest.raises(metrics.DataError, match="set prediction.attrs"):
        metrics.rmse(flow, flow + 10)
    assert float(metrics.rmse(flow.assign_attrs(units="m3 s-1"),
                              (flow + 10).assign_attrs(units="m3 s-1"))) == pytest.approx(10.0)


_TO_SCALE = {"degC": lambda v: v, "K": lambda v: v + 273.15, "degF": lambda v: v * 1.8 + 32.0}


@pytest.mark.parametrize("units", ["K", "degF", "degrees_F", "kelvin"])
def test_same_error_in_any_temperature_scale_scores_the_same(obs2d: xr.DataArray,
                                                             units: str) -> None:
    # Both sides in K or degF are scored in degC: the same +1 degC error gives the
    # same RMSE (not 1.8 in degF) and KGE (whose bias ratio depends on the scale).
    to = _TO_SCALE[{"degrees_F": "degF", "kelvin": "K"}.get(units, units)]
    pred_c = (obs2d + 1.0).assign_attrs(units="degC")
    pred, obs = to(pred_c).assign_attrs(units=units), to(obs2d).assign_attrs(units=units)
    want = evaluate(pred_c, obs2d, dims="time")
    got = evaluate(pred, obs, dims="time")
    xr.testing.assert_allclose(got, want)
    np.testing.assert_allclose(got.rmse.values, 1.0)
    assert float(rmse(pred, obs)) == pytest.approx(1.0)
    assert float(kge(pred, obs)) == pytest.approx(float(kge(pred_c, obs2d)))
    assert float(skill(pred, obs).kge) == pytest.approx(float(kge(pred_c, obs2d)))
    for name in ("rmse", "mae", "bias"):
        assert got[name].attrs["units"] == "degC"
    assert rmse(pred, obs).attrs["units"] == "degC"
    p, o = align_pair(pred, obs)
    assert p.attrs["units"] == o.attrs["units"] == "degC"
    np.testing.assert_allclose(o.values, obs2d.values)


def test_degc_values_labelled_degf_on_both_sides_are_warned_of() -> None:
    # 0..30 degC labelled degF on both sides converts to -17.8..-1.1 degC (inside the
    # -50..100 that refuses), and every error would be scored at 5/9: said, once.
    obs = _series(np.linspace(0.0, 30.0, 60)).assign_attrs(units="degF")
    pred = (obs - 1.0).assign_attrs(units="degF")
    with pytest.warns(xmsgl.XmsglWarning) as record:
        got = float(rmse(pred, obs))
    assert got == pytest.approx(5 / 9)
    texts = [str(w.message) for w in record if issubclass(w.category, xmsgl.XmsglWarning)]
    assert len(texts) == 1
    assert "prediction (-1 to 29 degF, -18.3 to -1.67 degC) and observed (0 to 30 degF" in texts[0]
    assert texts[0].endswith("set attrs['units'] = 'degC' on both sides")
    # A summer record (23..30, -5..-1.1 degC converted) is wholly below freezing too.
    summer = _series(np.linspace(23.0, 30.0, 60)).assign_attrs(units="degF")
    with pytest.warns(xmsgl.XmsglWarning, match=r"and observed \(23 to 30 degF"):
        rmse(summer, summer)
    # One side alone: the fix relabels that side and converts the other (relabelling
    # both would make the true degF side read as degC).
    real = _series(np.linspace(50.0, 86.0, 60)).assign_attrs(units="degF")
    with pytest.warns(xmsgl.XmsglWarning) as record:
        rmse(real, obs)
    text = next(str(w.message) for w in record if issubclass(w.category, xmsgl.XmsglWarning))
    assert text.startswith("converted to degC, observed (0 to 30 degF, -17.8 to -1.11 degC) lies wholly "
                           "below -1 degC")
    assert text.endswith("if observed's values are in degC, set observed.attrs['units'] = 'degC' and "
                         "convert prediction to degC ((x - 32) / 1.8, units 'degC')")
    # Water truly in degF, near freezing included, is scored without a word; so is a
    # prediction of a cold winter that dips below -5 degC (21..45 degF).
    true_f = _series(np.linspace(32.0, 86.0, 60)).assign_attrs(units="degF")
    assert float(rmse((true_f + 1.8).assign_attrs(units="degF"), true_f)) == pytest.approx(1.0)
    winter = _series(np.linspace(32.0, 45.0, 60)).assign_attrs(units="degF")
    cold = _series(np.linspace(21.0, 45.0, 60)).assign_attrs(units="degF")
    assert float(rmse(cold, winter)) > 0
    # A record under ice in degF (31..31.9 degF, -0.6..-0.1 degC) is no mislabel.
    ice = _series(np.linspace(31.0, 31.9, 60)).assign_attrs(units="degF")
    assert float(rmse(ice, ice)) == 0.0
    # Kelvin is not degF: no degF advice for a cold record in K (268..273 K).
    cold_k = _series(np.linspace(268.0, 272.9, 60)).assign_attrs(units="K")
    assert float(rmse(cold_k, cold_k)) == 0.0
    # A side declared a temperature difference is named, not the package's inner name.
    diff = obs.assign_attrs(units="degF", units_metadata="temperature: difference")
    with pytest.raises(xmsgl.UnitsError, match=r"^observed is declared a temperature difference"):
        rmse(pred, diff)
    # A refusal comes before the warning.
    with pytest.raises(xmsgl.ChoiceError, match="join='bad'"):
        align_pair(pred, obs, join="bad")


def test_kelvin_on_dask_is_converted_lazily(obs2d: xr.DataArray) -> None:
    pred = (obs2d + 274.15).assign_attrs(units="K").chunk({"reach": 1, "time": 200})
    obs = (obs2d + 273.15).assign_attrs(units="K").chunk({"reach": 1, "time": 200})
    with dask.config.set(scheduler=_raise_if_computed):
        out = evaluate(pred, obs, dims="time", by="season")
        one = kge(pred, obs)
    assert out.rmse.chunks is not None and one.chunks is not None
    want = evaluate((obs2d + 1.0).assign_attrs(units="degC"), obs2d, dims="time", by="season")
    xr.testing.assert_allclose(out.compute(), want)
    assert float(one) == pytest.approx(float(kge(obs2d + 1.0, obs2d)))


def test_kelvin_fill_values_and_mislabelled_kelvin_are_refused(obs2d: xr.DataArray) -> None:
    kelvin = (obs2d + 273.15).assign_attrs(units="K")
    ints = kelvin.round().astype(np.int16).assign_attrs(units="K")
    ints[0, :10] = -999
    # Integers in K are judged once converted, like integers in degC.
    with pytest.raises(xmsgl.DataError, match="implausible for water temperature"):
        evaluate(kelvin, ints)
    floats = kelvin.copy()
    floats[0, :10] = -9999.0
    with pytest.raises(xmsgl.DataError, match="fill values"):
        evaluate(floats, kelvin)
    # degC values labelled K on both sides: a units error, not -260 degC water.
    with pytest.raises(xmsgl.UnitsError, match="look like degC"):
        evaluate(obs2d.assign_attrs(units="K"), obs2d.assign_attrs(units="K"))
    assert int(evaluate(kelvin, kelvin.round().astype(np.int16).assign_attrs(units="K")).n) \
        == obs2d.size


def test_errors_of_another_quantity_keep_its_units() -> None:
    # Discharge scored against discharge: the errors are in m3 s-1, not degC.
    obs = xr.DataArray([1.0, 2.0, 4.0], dims="time", coords={"time": [0, 1, 2]},
                       attrs={"units": "m3 s-1"})
    out = evaluate(obs + 1.0, obs)
    assert out.rmse.attrs["units"] == "m3 s-1" and out.bias.attrs["units"] == "m3 s-1"
    assert out.nse.attrs["units"] == "1"
    temp = obs.assign_attrs(units="degC")
    assert evaluate(temp + 1.0, temp).rmse.attrs["units"] == "degC"


def test_exact_join_matches_labels_in_any_order() -> None:
    obs = xr.DataArray([[10.0, 11.0, 12.0]], dims=("time", "reach"),
                       coords={"time": [0], "reach": [1, 2, 3]}, attrs={"units": "degC"})
    pred = (obs + xr.DataArray([0.0, 1.0, 2.0], dims="reach", coords={"reach": [1, 2, 3]})).isel(
        reach=[2, 0, 1]).assign_attrs(units="degC")
    exact = evaluate(pred, obs, join="exact", dims="time")
    inner = evaluate(pred, obs, dims="time")
    np.testing.assert_array_equal(exact.bias.sel(reach=[1, 2, 3]).values, [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(exact.bias.sel(reach=[1, 2, 3]).values, inner.bias.sel(reach=[1, 2, 3]).values)
    with pytest.raises(xmsgl.exceptions.DataError, match=r"only in observed: \[3\]"):
        evaluate(pred.sel(reach=[1, 2]), obs, join="exact")


def test_an_infinite_prediction_is_a_pair_not_a_gap() -> None:
    # A model that blew up on one day must not score perfectly on the others.
    from xmsgl.metrics import skill

    obs = xr.DataArray([1.0, 2.0, 3.0, np.nan], dims="time")
    pred = xr.DataArray([np.inf, 2.0, 3.0, 4.0], dims="time")
    res = skill(pred, obs, "time")
    assert int(res["n"]) == 3
    assert np.isposinf(float(res["rmse"])) and np.isposinf(float(res["mae"]))
    assert np.isneginf(float(res["nse"])) and np.isnan(float(res["kge"]))
    # NaN stays a missing pair.
    res = skill(pred.where(np.isfinite(pred)), obs, "time")
    assert int(res["n"]) == 2 and float(res["rmse"]) == 0.0


def test_hot_days_are_ranked_over_the_scored_days_only() -> None:
    # Observed days without a prediction are not scored, and must not move the
    # reach's 90th percentile: leaving them out or making them NaN gives one answer.
    rng = np.random.default_rng(0)
    t = pd.date_range("2001-01-01", periods=200)
    obs = xr.DataArray(rng.normal(15, 5, (2, 200)), dims=("reach", "time"),
                       coords={"reach": [1, 2], "time": t}, attrs={"units": "degC"})
    pred = (obs + rng.normal(0, 1, obs.shape)).assign_attrs(units="degC")
    gap = np.zeros(200, bool)
    gap[:: 7] = True
    with_nan = pred.where(~xr.DataArray(gap, dims="time", coords={"time": t}))
    cut = pred.isel(time=np.flatnonzero(~gap))
    a = evaluate(with_nan, obs, by="hot").sel(subset="hot10")
    b = evaluate(cut, obs, by="hot").sel(subset="hot10")
    assert int(a["n"]) == int(b["n"]) and float(a["rmse"]) == pytest.approx(float(b["rmse"]))


def test_hot_mask_is_quiet_about_a_reach_without_observations() -> None:
    import warnings

    obs = xr.DataArray([[1.0, 2.0, 3.0], [np.nan] * 3], dims=("reach", "time"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mask = hot_mask(obs)
    assert mask.values.tolist() == [[False, False, True], [False, False, False]]


@pytest.mark.parametrize("value", [20.1, 12.3, 0.1, 8.0])
def test_constant_observations_give_nan_nse_and_kge_not_huge_numbers(value: float) -> None:
    # A gauge stuck at one value: the float64 mean of 20.1 x 365 is not 20.1, and the
    # rounding left sums of squares of 1e-27, which gave an NSE of -1e27.
    rng = np.random.default_rng(0)
    n = 365
    obs = xr.DataArray(np.full(n, value), dims="time")
    pred = obs + xr.DataArray(rng.normal(0, 0.3, n), dims="time")
    out = skill(pred, obs)
    assert np.isnan(float(out["nse"])) and np.isnan(float(out["kge"]))
    assert 0.2 < float(out["rmse"]) < 0.4


def test_a_mean_within_rounding_of_zero_gives_nan_kge() -> None:
    obs = xr.DataArray([0.1, 0.2, -0.3], dims="time")  # mean 1.9e-17, not 0
    out = skill(obs + 0.1, obs)
    assert np.isnan(float(out["kge"])) and np.isfinite(float(out["nse"]))


def test_infinite_values_score_as_documented() -> None:
    obs = xr.DataArray([10.0, 11.0, 12.0], dims="time")
    inf_pred = skill(obs.copy(data=[10.0, np.inf, 12.0]), obs)
    assert float(inf_pred["rmse"]) == np.inf and float(inf_pred["nse"]) == -np.inf
    assert np.isnan(float(inf_pred["kge"]))
    inf_obs = skill(obs, obs.copy(data=[10.0, np.inf, 12.0]))
    assert np.isnan(float(inf_obs["nse"])) and np.isnan(float(inf_obs["kge"]))
    both = skill(obs.copy(data=[10.0, np.inf, 12.0]), obs.copy(data=[10.0, np.inf, 12.0]))
    assert all(np.isnan(float(both[m])) for m in ("rmse", "mae", "nse", "kge"))
    assert int(both["n"]) == 3


def test_hot_mask_refuses_a_per_that_is_not_a_dimension() -> None:
    from xmsgl.metrics import hot_mask

    o = xr.DataArray(np.arange(40.0).reshape(2, 20), dims=("seg", "time"))
    with pytest.raises(xmsgl.SchemaError, match=r"per='reach' is not a dimension.*per='seg'"):
        hot_mask(o)  # segment data with the default per="reach" used to pool both segments
    assert hot_mask(o, per="seg").sum("time").values.tolist() == [2, 2]
    assert int(hot_mask(o.isel(seg=0)).sum()) == 2  # one series: per-reach and pooled agree


def test_the_package_lists_what_it_gives_on_first_use() -> None:
    import xmsgl

    assert {"fit", "load", "Downscaler", "metrics", "datasets"} <= set(dir(xmsgl))


def test_fahrenheit_looking_water_and_the_days_scored(obs2d: xr.DataArray) -> None:
    import warnings

    # Water in degF labelled degC (inside the plausible -50..100) is warned of.
    f = (obs2d * 1.8 + 32).assign_attrs(units="degC")
    with pytest.warns(xmsgl.XmsglWarning, match=r"observed is labelled degC but \d+ of its 2190 values "
                      r"\(\d+%\) exceed 40.*degF labelled degC"):
        evaluate(obs2d, f)
    # Without units, taken to be degC beside a degC side: said to look like degF, not
    # advised to be labelled degC (which silenced the warning and kept the scores wrong).
    bare = f.copy()
    bare.attrs.clear()
    with pytest.warns(xmsgl.XmsglWarning) as said:
        evaluate(bare, obs2d.assign_attrs(units="degC"))
    assert [str(w.message).split(" but ")[0] for w in said] == [
        "prediction has no 'units' attribute and is taken to be in degC"]
    assert "degF taken as degC look like this; convert them ((x - 32) / 1.8) and set units='degC'" \
        in str(said[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hot = obs2d + 17  # a warm spring: some values above 40, under 5% of them
        assert 0 < float((hot > 40).mean()) < 0.05
        evaluate(obs2d, hot.assign_attrs(units="degC"))
    # The days scored are the ones both share, named in the result.
    out = evaluate(obs2d, obs2d.sel(time=slice("2001-03-01", "2001-05-31")))
    assert out.attrs["scored_period"] == "2001-03-01/2001-05-31"
    assert int(out.n) == 3 * 92


def test_a_dimension_named_twice_is_refused_by_name() -> None:
    o = xr.DataArray(np.linspace(5.0, 20.0, 40), dims="time", attrs={"units": "degC"})
    with pytest.raises(xmsgl.ParameterError, match=r"dims=\['time', 'time'\] names \['time'\] more than once"):
        evaluate(o + 1, o, dims=["time", "time"])
    assert float(evaluate(o + 1, o, dims=["time"]).rmse) == pytest.approx(1.0)


@pytest.mark.parametrize("quantile", ["0.9", None, True, float("nan"), 1.5, -0.1])
def test_hot_mask_refuses_a_quantile_that_is_no_share(quantile) -> None:
    o = xr.DataArray(np.arange(20.0), dims="time")
    with pytest.raises(xmsgl.ParameterError, match=r"quantile=.* must be a number in \[0, 1\]"):
        hot_mask(o, per=None, quantile=quantile)
    assert int(hot_mask(o, per=None, quantile=np.float32(0.9)).sum()) == 2


def test_blank_units_reversed_time_and_exact_join_messages() -> None:
    from xmsgl.exceptions import DataError

    t = _series(np.linspace(5.0, 20.0, 40))
    # Blank units were read as a dimensionless quantity: a -999 fill was scored silently.
    filled = (t + 0.5).where(t.time.dt.day != 3, -999.0)
    blank_p, blank_o = filled.assign_attrs(units=""), t.assign_attrs(units=" ")
    with pytest.raises(DataError, match=r"has no 'units' attribute \(or a blank one\) and holds values from -999"):
        evaluate(blank_p, blank_o)
    # skill, which takes aligned arrays, labels blank units' errors as degC, not as "".
    res = skill(t.assign_attrs(units=""), (t + 1).assign_attrs(units=" "))
    assert res["rmse"].attrs["units"] == "degC"
    # A Dataset given for the prediction: the hint names its prediction variable.
    with pytest.raises(xmsgl.SchemaError, match=r"pick a variable, e\.g\. ds\['reach_temp_pred'\]"):
        evaluate(t.to_dataset(name="reach_temp_pred"), t)  # type: ignore[arg-type]
    # The days scored run from the first date to the last, whatever the prediction's order.
    p = (t + 0.5).assign_attrs(units="degC")
    o = t.assign_attrs(units="degC")
    assert evaluate(p.isel(time=slice(None, None, -1)), o).attrs["scored_period"] == \
        evaluate(p, o).attrs["scored_period"] == "2001-01-01/2001-02-09"
    # Dates are named as days, not as pandas Timestamps.
    with pytest.raises(DataError, match=r"only in observed: \['2001-01-01'\]\)"):
        evaluate(p.isel(time=slice(1, None)), o, join="exact")
