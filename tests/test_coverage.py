"""xmsgl.coverage: nodes whose static inputs lie beyond those of the observed nodes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

torch = pytest.importorskip("torch")

import xmsgl  # noqa: E402
from tests.conftest import FAST_FIT  # noqa: E402
from xmsgl.exceptions import ParameterError, SchemaError  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _train_days(ds: xr.Dataset, model) -> np.ndarray:
    days = np.zeros(ds.sizes["time"], dtype=bool)
    for a, b in model.config["periods"]["train"]:
        days |= (ds["time"].values >= np.datetime64(a)) & (ds["time"].values <= np.datetime64(b))
    return days


def _observed(ds: xr.Dataset, dim: str, model) -> np.ndarray:
    y = ds[f"{dim}_temp"].transpose("time", dim).values
    return np.isfinite(y[_train_days(ds, model)]).any(axis=0)


def test_ranges_are_those_of_the_observed_nodes(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    # The fit records, for every static input, the range over the nodes with a
    # training observation at its scale, recomputed here from the dataset; the saved
    # model keeps it.
    spec = half_year_msgl.features
    names = spec.seg_vars + spec.reach_vars
    assert any(spec.static[n] for n in names) and not all(spec.static[n] for n in names)
    assert sorted(spec.observed_range) == sorted(names)
    days = _train_days(half_year_basin, half_year_msgl)
    for name in names:
        dim = "seg" if name.startswith("seg_") else "reach"
        seen = _observed(half_year_basin, dim, half_year_msgl)
        assert 0 < seen.sum() < half_year_basin.sizes[dim] or dim == "seg"
        da = half_year_basin[name]
        vals = (da.values[seen] if spec.static[name]
                else da.transpose("time", dim).values[days][:, seen])
        assert spec.observed_range[name] == [float(vals.min()), float(vals.max())]


def test_coverage_flags_what_lies_beyond(half_year_basin: xr.Dataset, half_year_msgl, tmp_path: Path) -> None:
    model = half_year_msgl
    spec = model.features
    lo, hi = spec.observed_range["reach_slope"]
    std = spec.std["reach_slope"]
    ds = half_year_basin.copy()
    slope = ds["reach_slope"].values.copy()
    # Reach 0 well beyond (3 sd above the largest observed slope), reach 1 just
    # inside the margin (0.5 sd above), every other reach inside the range.
    slope[:] = np.clip(slope, lo, hi)
    slope[0], slope[1] = hi + 3.0 * std, hi + 0.5 * std
    ds["reach_slope"] = ("reach", slope, ds["reach_slope"].attrs)
    for name in [n for n in spec.reach_vars if spec.static[n] and n != "reach_slope"]:
        a, b = spec.observed_range[name]
        ds[name] = ("reach", np.clip(ds[name].values, a, b), ds[name].attrs)
    cov = ds.msgl.coverage(model)
    flag = cov["reach_beyond_observed"].values
    assert flag[0] and not flag[1:].any()
    np.testing.assert_allclose(cov["reach_beyond_sd"].values[:2], [3.0, 0.5], rtol=1e-5)
    assert cov["reach_beyond_variable"].values[0] == "reach_slope"
    assert cov["reach_beyond_variable"].values[2] == ""
    np.testing.assert_array_equal(cov["reach"].values, ds["reach"].values)
    # A smaller margin takes reach 1 in too; a saved model gives the same.
    assert ds.msgl.coverage(model, margin=0.25)["reach_beyond_observed"].values[:2].all()
    model.save(tmp_path / "m")
    xr.testing.assert_equal(ds.msgl.coverage(tmp_path / "m").drop_attrs(), cov.drop_attrs())
    # Segments: the reaches of a segment beyond are flagged as such.
    seg_cov = cov["seg_beyond_observed"].values
    seg_of = {int(s): i for i, s in enumerate(ds["seg"].values)}
    want = np.array([seg_cov[seg_of[int(s)]] for s in ds["reach_seg"].values])
    np.testing.assert_array_equal(cov["reach_segment_beyond_observed"].values, want)


def _far_beyond(ds: xr.Dataset, model, name: str, node: int | slice, sd: float,
                clip: bool = True) -> xr.Dataset:
    """``ds`` with every static input clipped to its observed range (unless not
    ``clip``) but ``name`` at position(s) ``node``, ``sd`` standard deviations above it."""
    spec = model.features
    ds = ds.copy()
    for n in [n for n in spec.seg_vars + spec.reach_vars if spec.static[n]]:
        a, b = spec.observed_range[n]
        v = np.clip(ds[n].values, a, b) if clip else ds[n].values.copy()
        if n == name:
            v[node] = b + sd * spec.std[n]
        ds[n] = (ds[n].dims, v, ds[n].attrs)
    return ds


def test_downscale_warns_of_nodes_far_beyond(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    import warnings

    import xmsgl
    from xmsgl.coverage import WARN_SD
    from xmsgl.exceptions import ExtrapolationWarning

    model = half_year_msgl
    ds = _far_beyond(half_year_basin, model, "reach_slope", 2, WARN_SD + 1.5)
    rid = int(ds["reach"].values[2])
    with pytest.warns(ExtrapolationWarning, match=rf"^1 reach \(id {rid}\) has a static input more than "
                      rf"5 standard deviations .*farthest: reach {rid}, 'reach_slope', 6.5 standard"):
        ds.msgl.downscale(model, time="2001-03")
    # Inside the threshold, or on a scale that does not read it: no warning.
    near = _far_beyond(half_year_basin, model, "reach_slope", 2, WARN_SD - 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", xmsgl.ColdStartWarning)  # short records: said apart
        near.msgl.downscale(model, time="2001-03")
        ds.msgl.downscale(model, scale="seg", time="2001-03")  # reaches are not read
    # A segment far beyond is judged for the reach prediction (MSGL reads both scales),
    # not for fine-only's, which reads no segment.
    segs = [n for n in model.features.seg_vars if model.features.static[n]]
    far_seg = _far_beyond(half_year_basin, model, segs[0], 1, 2 * WARN_SD)
    sid = int(far_seg["seg"].values[1])
    for scale in ("reach", "seg"):
        with pytest.warns(ExtrapolationWarning, match=rf"^1 segment \(id {sid}\) has .*'{segs[0]}'"):
            far_seg.msgl.downscale(model, scale=scale, time="2001-03")
    fine_only = xmsgl.fit(half_year_basin, "fine-only", seed=0, **FAST_FIT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", xmsgl.ColdStartWarning)  # short records: said apart
        far_seg.msgl.downscale(fine_only, time="2001-03")
    # Several nodes, both scales: counted, the first five ids shown, plural words.
    both = _far_beyond(far_seg, model, "reach_slope", slice(0, 7), 2 * WARN_SD, clip=False)
    ids = ", ".join(str(int(i)) for i in both["reach"].values[:5])
    with pytest.warns(ExtrapolationWarning, match=rf"^1 segment \(id {sid}\) and 7 reaches \(ids {ids}, "
                      r"\.\.\.\) have a static input .*: their predictions are extrapolations"):
        both.msgl.downscale(model, time="2001-03")
    from xmsgl.coverage import static_extrapolation

    assert "more than 1 standard deviation beyond" in static_extrapolation(both, model, ("seg",), margin=1)


def _air_in_fahrenheit(ds: xr.Dataset) -> xr.Dataset:
    """Air temperatures in degF, still labelled degC (plausible air on cold days)."""
    return ds.assign({v: ds[v] * 9 / 5 + 32 for v in ("seg_air_temp", "reach_air_temp")})


def test_downscale_warns_of_time_varying_inputs_far_beyond(half_year_basin: xr.Dataset,
                                                           half_year_msgl) -> None:
    import warnings

    from xmsgl.coverage import dynamic_extrapolation
    from xmsgl.exceptions import ExtrapolationWarning, InputRangeWarning

    model = half_year_msgl
    spec = model.features
    jan = ("2001-01-01", "2001-01-31")
    assert issubclass(InputRangeWarning, ExtrapolationWarning)  # robustness and CV leave both out
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the training's own days: nothing to say
        warnings.simplefilter("ignore", xmsgl.ColdStartWarning)  # short records: said apart
        half_year_basin.msgl.downscale(model, time=jan)
    hot = _air_in_fahrenheit(half_year_basin)
    lo, hi = spec.observed_range["reach_air_temp"]
    v = hot["reach_air_temp"].values
    share = float((v > hi + spec.std["reach_air_temp"]).mean())
    assert share > 0.05  # what the warning is for
    with pytest.warns(InputRangeWarning, match=r"^inputs 'seg_air_temp' \(degC; \d+% of the node-days.*"
                      r"'reach_air_temp' .*check the units \(degF labelled degC"):
        hot.msgl.downscale(model, time=jan)
    # The segments' alone, for the coarse output (the reaches are not read).
    with pytest.warns(InputRangeWarning, match=r"^input 'seg_air_temp' .*lies more than"):
        hot.msgl.downscale(model, scale="seg", time=jan)
    # A few node-days beyond (a heat wave at one reach) are not warned of.
    few = half_year_basin.copy(deep=True)
    few["reach_air_temp"].values[0, :3] = hi + 3 * spec.std["reach_air_temp"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", xmsgl.ColdStartWarning)  # short records: said apart
        few.msgl.downscale(model, time=jan)
    # The share of node-days beyond is what decides: named just below it, not above
    # (over 30 days, the window it is taken on).
    from xmsgl.coverage import WARN_WINDOW_DAYS
    from xmsgl.train import InputDays

    assert WARN_WINDOW_DAYS == 30
    jan30 = ("2001-01-01", "2001-01-30")
    days = InputDays(hot.sel(time=slice(*jan30)), spec.seg_vars, "seg", spec)
    lo_s, hi_s = spec.observed_range["seg_air_temp"]
    sd_s = spec.std["seg_air_temp"]
    v_s = hot["seg_air_temp"].sel(time=slice(*jan30)).values
    s_seg = float(((v_s < lo_s - sd_s) | (v_s > hi_s + sd_s)).mean())
    assert dynamic_extrapolation([days], model, share=s_seg - 1e-6)[1] == ["seg_air_temp"]
    assert dynamic_extrapolation([days], model, share=s_seg + 1e-6) is None
    # A missing-data code in an input never negative (a discharge), even on one node-day.
    code = half_year_basin.copy(deep=True)
    assert spec.observed_range["reach_discharge"][0] >= 0
    # (-99.9, more than 10 standard deviations out, is refused as a code of FILL_VALUES.)
    code["reach_discharge"].values[1, 5] = -5.0
    with pytest.warns(InputRangeWarning, match=r"^input 'reach_discharge' \(m3 s-1; 1 of \d+ node-days, "
                      r"lowest -5.*never negative in training.*missing-data code"):
        code.msgl.downscale(model, time=jan)
    # The lazy path judges each block, naming the inputs, once per call (it said so for
    # every block: hundreds of lines on a large basin), and again for another call.
    lazy = hot.chunk({"reach": 20}).msgl.downscale(model, time=jan, chunk=10, time_block=10)
    blocks = [k for k in dict(lazy.__dask_graph__()) if "block_downscale" in str(k)]
    assert len(blocks) > 2
    for _ in range(2):
        with pytest.warns(InputRangeWarning) as said:
            hot.chunk({"reach": 20}).msgl.downscale(model, time=jan, chunk=10, time_block=10).compute()
        ranges = [w for w in said if issubclass(w.category, InputRangeWarning)]
        assert len(ranges) == 1
        assert re.search(r"inputs 'seg_air_temp', 'reach_air_temp' lie far beyond their training "
                         r"ranges in a block", str(ranges[0].message))
    # Five days in degF in a run of four months: 4% of its node-days, 17% of those of
    # the 30 days around them (a month appended in other units is not diluted by the rest).
    five = half_year_basin.copy()
    spell = (five.time >= np.datetime64("2001-02-01")) & (five.time <= np.datetime64("2001-02-05"))
    for v in ("seg_air_temp", "reach_air_temp"):
        five[v] = xr.where(spell, five[v] * 9 / 5 + 32, five[v]).transpose(*five[v].dims).assign_attrs(
            five[v].attrs)
    run = ("2001-01-01", "2001-04-30")
    r = five["reach_air_temp"].sel(time=slice(*run)).values
    lo_r, hi_r = spec.observed_range["reach_air_temp"]
    sd_r = spec.std["reach_air_temp"]
    assert ((r < lo_r - sd_r) | (r > hi_r + sd_r)).mean() < 0.05
    with pytest.warns(InputRangeWarning, match=r"'reach_air_temp' \(degC; 17% of the node-days"):
        five.msgl.downscale(model, time=run)
    # Plain arrays (inputs already standardized) are not judged.
    assert dynamic_extrapolation([np.zeros((3, 2, 1), np.float32)], model) is None


def test_the_input_range_warning_names_the_days_it_judged(half_year_basin: xr.Dataset,
                                                          half_year_msgl) -> None:
    """The warning judges the days run, the warm-up before those asked for included; its
    hint, coverage(model, time=...), judged the days asked for alone and found nothing
    where degF air lay in the warm-up only. The hint now gives the days run."""
    from xmsgl.cli import _cli_words
    from xmsgl.exceptions import InputRangeWarning

    warm_up = (half_year_basin.time >= np.datetime64("2001-02-01")) & (
        half_year_basin.time <= np.datetime64("2001-03-31"))
    hot = half_year_basin.copy()
    for v in ("seg_air_temp", "reach_air_temp"):
        hot[v] = xr.where(warm_up, hot[v] * 9 / 5 + 32, hot[v]).transpose(*hot[v].dims).assign_attrs(
            hot[v].attrs)
    asked = ("2001-06-01", "2001-06-30")
    with pytest.warns(InputRangeWarning) as said:
        hot.msgl.downscale(half_year_msgl, time=asked)
    text = str(next(w for w in said if issubclass(w.category, InputRangeWarning)).message)
    hint = re.search(r"ds\.msgl\.coverage\(model, time=\('([-0-9]+)', '([-0-9]+)'\)\) lists the nodes "
                     r"and days beyond the range over the days run, the (\d+) days of warm-up before "
                     r"those asked for included$", text)
    assert hint is not None, text
    assert hint[1] == "2001-01-01" and hint[2] >= asked[1] and int(hint[3]) == 151

    def days_beyond(ds: xr.Dataset, time: tuple[str, str]) -> int:
        return int(ds.msgl.coverage(half_year_msgl, time=time)["reach_days_beyond_observed"].sum())

    # The days asked for alone do not show the degF air; the days run do.
    assert days_beyond(hot, asked) == days_beyond(half_year_basin, asked)
    run = (hint[1], hint[2])
    assert days_beyond(hot, run) > days_beyond(half_year_basin, run)
    # In the command's words, with the same days.
    assert f"xmsgl coverage MODEL DATA --time {hint[1]} {hint[2]} lists" in _cli_words(text, "downscale")


def test_the_share_warned_of_reads_above_its_threshold() -> None:
    from xmsgl.coverage import _percent_over

    # 5.24% was printed as "5%" in a sentence about shares "over 5%".
    assert _percent_over(0.0524, 0.05) == "5.2%" and _percent_over(0.17, 0.05) == "17%"
    assert _percent_over(0.0500001, 0.05) == "5.00001%"


def test_coverage_of_no_day(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    # Lazy, it failed with a plain ValueError (and the command with a traceback).
    for ds in (half_year_basin.isel(time=slice(0, 0)),
               half_year_basin.isel(time=slice(0, 0)).chunk({"time": 100})):
        cov = ds.msgl.coverage(half_year_msgl)
        assert cov.attrs["xmsgl_days_judged"] == 0 and "xmsgl_time_judged" not in cov.attrs
        assert int(cov["reach_days_beyond_observed"].sum()) == 0
        assert cov["reach_days_beyond_observed"].attrs["units"] == "1"
        # The command's lines say so without an empty span ("of 0 days judged, )").
        from xmsgl.cli import _coverage_lines

        lines = "\n".join(_coverage_lines(cov, 1.0))
        assert "(of 0 days judged)" in lines and ", )" not in lines


def test_coverage_refuses_a_fill_value_as_downscale_does(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    # It reported the reach as merely far beyond, where downscale refuses the value.
    from xmsgl.exceptions import DataError

    area = half_year_basin["reach_area"].values.copy()
    area[3] = -9999.0
    bad = half_year_basin.assign(reach_area=("reach", area, half_year_basin["reach_area"].attrs))
    for call in (lambda: bad.msgl.coverage(half_year_msgl), lambda: bad.msgl.downscale(half_year_msgl)):
        with pytest.raises(DataError, match=r"'reach_area' holds 1 value of -9999 .*a fill value that "
                                            r"was not masked"):
            call()


def test_robustness_runs_do_not_repeat_the_warning(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    import warnings

    from xmsgl.robustness import robustness

    ds = _far_beyond(half_year_basin, half_year_msgl, "reach_slope", 2, 8.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one run per perturbation: none warns
        robustness(ds, half_year_msgl, {"lag": [0, 2]}, time=("2001-06-03", "2001-06-30"))


def test_lazy_downscale_judges_static_inputs_and_reads_nothing_on_time(
        half_year_basin: xr.Dataset, half_year_msgl) -> None:
    import dask
    import dask.array as dsa

    from xmsgl.exceptions import ExtrapolationWarning

    ds = _far_beyond(half_year_basin, half_year_msgl, "reach_slope", 2, 8.0).chunk({"time": 60})

    def boom(x: np.ndarray) -> np.ndarray:
        raise AssertionError("a time cube was computed")

    for name in [n for n in ds.data_vars if "time" in ds[n].dims]:
        data = ds[name].data
        ds[name] = (ds[name].dims, dsa.map_blocks(boom, data, dtype=data.dtype), ds[name].attrs)
    with dask.config.set(scheduler="sync"), pytest.warns(ExtrapolationWarning, match="'reach_slope'"):
        out = ds.msgl.downscale(half_year_msgl)  # dask-backed static inputs are read
    assert out.chunks is not None
    with pytest.raises(AssertionError, match="time cube"):
        out.compute()


def test_coverage_refuses(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    import xmsgl

    with pytest.raises(ParameterError, match="margin"):
        half_year_basin.msgl.coverage(half_year_msgl, margin=-1)
    with pytest.raises(SchemaError, match="reach_slope"):
        half_year_basin.assign(reach_slope=half_year_basin.reach_slope.expand_dims(
            time=half_year_basin.time).transpose()).msgl.coverage(half_year_msgl)
    baseline = xmsgl.fit(half_year_basin, "climatology")
    with pytest.raises(ParameterError, match="'climatology' is a baseline: climatology reads no "
                                             "input variable, only observations$"):
        half_year_basin.msgl.coverage(baseline)
    # Mohseni's curves do read an input: it was said to learn "no weights from inputs".
    mohseni = xmsgl.fit(half_year_basin, "mohseni")
    with pytest.raises(ParameterError, match=r"'mohseni' is a baseline: mohseni's curves read the air "
                                             r"temperature alone, and its predictions warn \(InputRangeWarning\)"):
        half_year_basin.msgl.coverage(mohseni)
    old = xmsgl.Downscaler.__new__(xmsgl.Downscaler)
    old.__dict__.update(half_year_msgl.__dict__)
    old.config = {**half_year_msgl.config,
                  "variables": {k: v for k, v in half_year_msgl.config["variables"].items()
                                if k != "observed_range"}}
    with pytest.raises(ParameterError, match="fit it again"):
        half_year_basin.msgl.coverage(old)


def test_a_dataarray_is_refused_with_the_way_to_a_dataset(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    # These three once failed with a raw AttributeError on a DataArray (downscale's output).
    import xmsgl.convention
    import xmsgl.downscale

    da = half_year_basin["reach_air_temp"]
    calls = [lambda: xmsgl.coverage.coverage(da, half_year_msgl),
             lambda: xmsgl.downscale.downscale(da, half_year_msgl),
             lambda: xmsgl.convention.daily_time_bounds(da)]
    for call in calls:
        with pytest.raises(SchemaError, match=r"expected an xarray.Dataset, got DataArray; make one with "
                                              r"da.to_dataset\(\)"):
            call()
    with pytest.raises(SchemaError, match="got dict; open the data with xarray.open_dataset"):
        xmsgl.downscale.downscale({"a": 1}, half_year_msgl)


def test_fine_only_reads_reaches_only(half_year_basin: xr.Dataset) -> None:
    import xmsgl

    model = xmsgl.fit(half_year_basin, "fine-only", seed=0, **FAST_FIT)
    cov = half_year_basin.msgl.coverage(model)
    assert set(cov.data_vars) == {"reach_beyond_observed", "reach_beyond_sd", "reach_beyond_variable",
                                  "reach_days_beyond_observed", "reach_days_beyond_sd",
                                  "reach_days_beyond_variable"}
    assert all(n.startswith("reach_") for n in model.features.observed_range)


def test_coverage_reads_inputs_as_fit_does(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    # A static input labelled in K is converted to degC by fit and downscale; coverage
    # reads it the same way (it flagged every node, 390 sd beyond, reading kelvin).
    from xmsgl.datasets import synthetic_basin
    from xmsgl.model import fit

    ds = synthetic_basin(n_segments=6, start="2001-01-01", end="2001-06-30", seed=3, reach_obs_share=0.3)
    ds["reach_soil_temp"] = ("reach", 281.0 + ds["reach_elevation"].values / 1000.0, {"units": "K"})
    with pytest.warns(Warning):
        model = fit(ds, method="msgl", seed=0, **FAST_FIT)
    assert 7.0 < model.features.observed_range["reach_soil_temp"][0] < 9.0  # degC
    with pytest.warns(Warning, match="converted"):
        cov = ds.msgl.coverage(model)
    # Read as kelvin, every reach was 390 sd beyond through this input.
    assert float(cov["reach_beyond_sd"].max()) < 10.0
    assert (cov["reach_beyond_variable"] == "reach_soil_temp").sum() < cov.sizes["reach"] / 2


def test_coverage_of_a_model_with_no_static_input_at_its_scale(half_year_basin: xr.Dataset) -> None:
    # remap reads segment inputs only: with none static, nothing to judge, and the
    # model is not taken for one saved before the ranges were recorded.
    import xmsgl

    ds = half_year_basin.drop_vars([v for v in half_year_basin.data_vars if str(v).startswith("seg_")
                                    and "time" not in half_year_basin[v].dims and v != "seg_to"
                                    and v != "seg_length"])
    model = xmsgl.fit(ds, "remap", seed=0, **FAST_FIT)
    spec = model.features
    assert spec.observed_range and not any(spec.static[n] for n in spec.observed_range)
    cov = ds.msgl.coverage(model)
    assert not cov["seg_beyond_observed"].any()
    assert (cov["seg_beyond_variable"] == "").all()


def test_coverage_refuses_non_finite_and_damaged_ranges(half_year_basin: xr.Dataset, half_year_msgl,
                                                        tmp_path: Path) -> None:
    import json

    import xmsgl
    from xmsgl.exceptions import DataError, XmsglError

    slope = half_year_basin["reach_slope"].values.copy()
    slope[2] = np.inf
    bad = half_year_basin.assign(reach_slope=("reach", slope, half_year_basin["reach_slope"].attrs))
    rid = half_year_basin["reach"].values[2]
    with pytest.raises(DataError, match=f"'reach_slope' is not finite at reach ids.*{rid}"):
        bad.msgl.coverage(half_year_msgl)
    half_year_msgl.save(tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    good = json.loads(cfg_path.read_text())
    for damage in ([1.0], [5.0, 1.0], "12", [float("nan"), 1.0]):
        cfg = json.loads(json.dumps(good))
        cfg["variables"]["observed_range"]["reach_slope"] = damage
        cfg_path.write_text(json.dumps(cfg))
        with pytest.raises(XmsglError, match="observed_range"):
            xmsgl.load(tmp_path / "m")
    cfg = json.loads(json.dumps(good))
    cfg["variables"]["observed_range"]["reach_bogus"] = [0.0, 1.0]  # not an input
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(XmsglError, match="not inputs of the model"):
        xmsgl.load(tmp_path / "m")


def test_days_beyond_for_time_varying_inputs(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    # The observed reaches on the training days are inside by construction; air 15
    # degrees warmer puts every reach beyond on the warm days, named by the input.
    model = half_year_msgl
    days = _train_days(half_year_basin, model)
    seen = _observed(half_year_basin, "reach", model)
    train = half_year_basin.isel(time=np.flatnonzero(days))
    cov = train.msgl.coverage(model)
    assert (cov["reach_days_beyond_observed"].values[seen] == 0).all()
    assert (cov["reach_days_beyond_sd"].values[seen] == 0).all()
    hot = half_year_basin.assign(reach_air_temp=half_year_basin["reach_air_temp"] + 15.0)
    hot_cov = hot.msgl.coverage(model)
    n_days = hot_cov["reach_days_beyond_observed"].values
    assert (n_days > 0).all() and (n_days <= half_year_basin.sizes["time"]).all()
    assert set(hot_cov["reach_days_beyond_variable"].values) == {"reach_air_temp"}
    # By hand for one reach: days on which any input on time lies more than one sd
    # beyond its observed range.
    spec = model.features
    union = np.zeros(hot.sizes["time"], dtype=bool)
    for name in [n for n in spec.reach_vars if not spec.static[n]]:
        lo, hi = spec.observed_range[name]
        v = hot[name].isel(reach=0).values.astype(np.float64)
        union |= (np.maximum(lo - v, v - hi) / spec.std[name]) > 1.0
    assert n_days[0] == union.sum() > 0
    # time= judges the days given only.
    part = hot.msgl.coverage(model, time=("2001-01-01", "2001-01-31"))
    assert (part["reach_days_beyond_observed"].values <= 31).all()
    # Static results do not depend on the days.
    np.testing.assert_array_equal(part["reach_beyond_sd"].values, hot_cov["reach_beyond_sd"].values)


def test_time_is_read_as_downscale_reads_it(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    # Out of range, reversed or one-sided periods were silently judged as no days, or
    # as all days up to the one given; a single day dropped the time dimension.
    from xmsgl.exceptions import PeriodError, TimeError, XmsglError

    ds, model = half_year_basin, half_year_msgl
    for bad, err in ((("2050-01-01", "2050-12-31"), TimeError), (("2001-01-31", "2001-01-01"), PeriodError),
                     (("2001-01-31",), XmsglError), (("2001-01-01", "2001-01-05", "2001-01-09"), XmsglError)):
        with pytest.raises(err):
            ds.msgl.coverage(model, time=bad)
        with pytest.raises(err):
            ds.msgl.downscale(model, time=bad)
    one = ds.msgl.coverage(model, time="2001-01-05")
    assert (one["reach_days_beyond_observed"].values <= 1).all()
    part = ds.msgl.coverage(model, time=slice("2001-01-01", "2001-01-31"))
    same = ds.isel(time=slice(0, 31)).msgl.coverage(model)
    assert "time=slice(" in part.attrs.pop("history") and "time=" not in same.attrs.pop("history")
    xr.testing.assert_identical(part, same)


def test_a_static_input_the_dataset_lacks_is_listed_as_not_judged(half_year_basin: xr.Dataset,
                                                                   half_year_msgl) -> None:
    # It used to stop coverage with an error that gave no fix, where the docs promise a
    # list of the inputs the model reads that DATA lacks.
    cov = half_year_basin.drop_vars("reach_slope").msgl.coverage(half_year_msgl)
    assert cov.attrs["xmsgl_inputs_not_judged"] == "reach_slope"
    assert "reach_slope" not in cov.attrs["xmsgl_inputs_judged"].split(", ")
    assert not (cov["reach_beyond_variable"] == "reach_slope").any()
    full = half_year_basin.msgl.coverage(half_year_msgl)
    assert full.attrs["xmsgl_inputs_not_judged"] == ""


def test_attributes_alone_are_judged(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    # Screening new sites by their attributes: without the inputs on time, the static
    # ones are judged and no day counts are made.
    ds = half_year_basin.drop_vars([v for v in half_year_basin.data_vars
                                    if "time" in half_year_basin[v].dims]).drop_dims("time")
    cov = ds.msgl.coverage(half_year_msgl)
    full = half_year_basin.msgl.coverage(half_year_msgl)
    assert not any("days" in str(v) for v in cov.data_vars)
    np.testing.assert_array_equal(cov["reach_beyond_sd"].values, full["reach_beyond_sd"].values)


def test_coverage_of_a_period_reaching_past_the_days_says_what_it_judged(
        half_year_basin: xr.Dataset, half_year_msgl) -> None:
    import warnings

    from xmsgl.exceptions import XmsglWarning

    last = str(half_year_basin["time"].values[-1])[:10]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cov = half_year_basin.msgl.coverage(half_year_msgl, time=(last, "2100-01-01"))
    messages = [str(w.message) for w in caught if issubclass(w.category, XmsglWarning)]
    assert len(messages) == 1 and "only the 1 day from" in messages[0]
    assert "1 day from 2001-06-30 to 2001-06-30 is judged" in messages[0] and "returned" not in messages[0]
    assert cov.attrs["xmsgl_days_judged"] == 1


def test_coverage_keeps_the_id_coordinates_downscale_keeps(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    # Its outputs carried the bare ids: seg_id_nat, COMID and the ids' attributes were lost.
    ds = half_year_basin.assign_coords(
        COMID=("reach", np.arange(half_year_basin.sizes["reach"]) + 1000),
        seg_id_nat=("seg", np.arange(half_year_basin.sizes["seg"]) + 7), basin="test")
    ds["reach"].attrs["long_name"] = "reach id"
    cov = ds.msgl.coverage(half_year_msgl)
    down = ds.msgl.downscale(half_year_msgl)
    np.testing.assert_array_equal(cov["COMID"], down["COMID"])
    np.testing.assert_array_equal(cov["reach_beyond_sd"]["COMID"], ds["COMID"])
    np.testing.assert_array_equal(cov["seg_beyond_sd"]["seg_id_nat"], ds["seg_id_nat"])
    assert cov["reach"].attrs["long_name"] == "reach id" and cov["basin"].item() == "test"
    assert "time" not in cov.dims


def test_inputs_in_other_units_than_the_fit_are_refused(half_year_basin: xr.Dataset,
                                                        half_year_msgl) -> None:
    # validate converts temperatures only: an area in m2 or a discharge in ft3 s-1
    # would be measured in the wrong unit (millions of standard deviations), so
    # coverage refuses them as downscale does.
    from xmsgl.exceptions import ModelMismatchError

    ds = half_year_basin.copy()
    name = next(n for n in half_year_msgl.features.reach_vars if "area" in n)
    assert half_year_msgl.features.units[name] == "km2"
    ds[name] = (ds[name] * 1e6).assign_attrs(units="m2")
    fix = rf"convert it \(ds\['{name}'\] = ds\['{name}'\] \* 1e-06, then ds\['{name}'\].attrs\['units'\] = 'km2'\)"
    with pytest.raises(ModelMismatchError, match=f"input variable '{name}' has units 'm2'; the "
                                                 f"model was fitted with 'km2': {fix} or refit"):
        ds.msgl.coverage(half_year_msgl)
    with pytest.raises(ModelMismatchError, match=f"has units 'm2'.*: {fix} or refit"):
        ds.msgl.downscale(half_year_msgl)
    # The fix, followed as written, gives the model's own units back.
    ds[name] = ds[name] * 1e-06
    ds[name].attrs["units"] = "km2"
    np.testing.assert_allclose(ds.msgl.downscale(half_year_msgl).values,
                               half_year_basin.msgl.downscale(half_year_msgl).values, atol=1e-5)
    # Units that differ by more than a factor get no factor.
    ds["seg_air_temp"] = ds["seg_air_temp"].assign_attrs(units="W m-2")
    with pytest.raises(ModelMismatchError, match=r"'seg_air_temp' has units 'W m-2'; the model was "
                                                 r"fitted with 'degC': convert it or refit"):
        ds.msgl.downscale(half_year_msgl)


def test_coverage_says_how_it_was_made_in_valid_units(half_year_basin: xr.Dataset,
                                                      half_year_msgl) -> None:
    # A history line naming the step, the model and the margin; distances in
    # standard deviations carry the CF unit "1" (the words are in the long name).
    cov = half_year_basin.msgl.coverage(half_year_msgl, margin=2)
    assert "xmsgl" in cov.attrs["history"] and "coverage(method='msgl'" in cov.attrs["history"]
    assert f"sha256={half_year_msgl.sha256[:16]}" in cov.attrs["history"]
    assert "margin=2" in cov.attrs["history"]
    for name in ("reach_beyond_sd", "seg_beyond_sd"):
        assert cov[name].attrs["units"] == "1"
        assert "standard deviations" in cov[name].attrs["long_name"]


def test_days_are_judged_a_block_at_a_time_alike(half_year_basin: xr.Dataset, half_year_msgl,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Inputs on time are read a block of days at a time (dask-backed ones too): blocks
    # of 7 days, or a dask-backed dataset, give what one block of the whole record gives.
    import xmsgl.coverage

    ds = half_year_basin.copy()
    spec = half_year_msgl.features
    first, second = [n for n in spec.reach_vars if not spec.static[n]][:2]
    # Days far beyond on two inputs, in two blocks of 7 days: days 3, 10 and 11 on the
    # first, days 10 and 11 on the second too: three days, each counted once.
    for name, days in ((first, [3, 10, 11]), (second, [10, 11])):
        vals = ds[name].transpose("time", "reach").values.copy()
        # 8 standard deviations above the range: within -90..65 degC for a temperature
        # (one beyond is refused as a fill value or mislabelled units).
        vals[days, :2] = spec.observed_range[name][1] + 8.0 * spec.std[name]
        ds[name] = (("time", "reach"), vals, ds[name].attrs)
    whole = ds.msgl.coverage(half_year_msgl, margin=5)
    assert whole["reach_days_beyond_observed"].values[:2].tolist() == [3, 3]
    assert whole["reach_days_beyond_variable"].values[:2].tolist() == [first, first]
    monkeypatch.setattr(xmsgl.coverage, "_BLOCK_VALUES", 7 * ds.sizes["reach"])
    for other in (ds.msgl.coverage(half_year_msgl, margin=5),
                  ds.chunk({"time": 30}).msgl.coverage(half_year_msgl, margin=5),
                  ds.chunk({"time": 30, "reach": 4}).msgl.coverage(half_year_msgl, margin=5)):
        for cov in (whole, other):
            cov.attrs.pop("history", None)
        xr.testing.assert_identical(other, whole)


def test_a_dask_backed_input_is_read_a_chunk_once(half_year_basin: xr.Dataset, half_year_msgl,
                                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Blocks of days for every node cut each chunk of a long record into several reads
    # (365 / days of them: 46 at a million reaches); blocks of whole chunks read each once.
    import dask
    from dask.callbacks import Callback

    import xmsgl.coverage

    spec = half_year_msgl.features
    on_time = [n for n in spec.reach_vars if not spec.static[n]]
    half_year_basin.chunk({"time": 30, "reach": 4}).to_zarr(tmp_path / "in.zarr", consolidated=False)
    ds = xr.open_zarr(tmp_path / "in.zarr", consolidated=False)
    monkeypatch.setattr(xmsgl.coverage, "_BLOCK_VALUES", 7 * ds.sizes["reach"])
    reads: dict[tuple, int] = {}

    class Count(Callback):
        def _pretask(self, key: object, dsk: object, state: object) -> None:
            # The store's chunks: ('open_dataset-<variable>-<token>', i, j).
            if isinstance(key, tuple) and str(key[0]).startswith("open_dataset-") and any(
                    f"-{v}-" in str(key[0]) for v in on_time):
                reads[key] = reads.get(key, 0) + 1

    # The whole record, and a subset whose first chunks are shorter (uneven chunks).
    for sub, first in ((ds, 0), (ds.isel(time=slice(10, None)), 10)):
        reads.clear()
        with dask.config.set({"optimization.fuse.active": False}), Count():
            cov = sub.msgl.coverage(half_year_msgl, margin=5)
        n_chunks = len(on_time) * len(sub.chunks["reach"]) * len(sub.chunks["time"])
        assert len(reads) == n_chunks and set(reads.values()) == {1}
        want = half_year_basin.isel(time=slice(first, None)).msgl.coverage(half_year_msgl, margin=5)
        for c in (cov, want):
            c.attrs.pop("history", None)
        xr.testing.assert_identical(cov, want)
    # A chunk larger than four blocks is read in blocks of days, as in memory: memory
    # stays bounded whatever the chunks.
    monkeypatch.setattr(xmsgl.coverage, "_BLOCK_VALUES", 20)
    times, nodes = xmsgl.coverage._blocks(ds, on_time, "reach", ds.sizes["reach"])
    assert nodes == [slice(0, ds.sizes["reach"])] and max(t.stop - t.start for t in times) == 1


def test_values_not_finite_are_named_over_every_block(half_year_basin: xr.Dataset, half_year_msgl,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Days are read a block at a time; the error names every node with a value that is
    # not finite, in whichever block, not only those of the first block holding one.
    import xmsgl.coverage
    from xmsgl.exceptions import DataError

    monkeypatch.setattr(xmsgl.coverage, "_BLOCK_VALUES", 7 * half_year_basin.sizes["reach"])
    ds = half_year_basin.copy()
    spec = half_year_msgl.features
    name = next(n for n in spec.reach_vars if not spec.static[n])
    vals = ds[name].transpose("time", "reach").values.copy()
    vals[2, 1] = np.nan
    vals[40, 4] = np.inf
    ds[name] = (("time", "reach"), vals, ds[name].attrs)
    ids = ds["reach"].values
    with pytest.raises(DataError, match=rf"'{name}' is not finite at reach ids \[{ids[1]}, {ids[4]}\]"):
        ds.msgl.coverage(half_year_msgl)


def test_a_value_not_finite_is_placed_on_its_day(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    from xmsgl.exceptions import DataError

    ds = half_year_basin.copy()
    spec = half_year_msgl.features
    name = next(n for n in spec.reach_vars if not spec.static[n])
    vals = ds[name].transpose("time", "reach").values.copy()
    vals[5, 2] = np.nan
    ds[name] = (("time", "reach"), vals, ds[name].attrs)
    day = str(ds.time.values[5])[:10]
    with pytest.raises(DataError, match=rf"\(first: reach {ds.reach.values[2].item()!r} on {day}\).*time="):
        ds.msgl.coverage(half_year_msgl)


def test_the_refusals_say_what_to_do(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    on_time = half_year_basin.assign(reach_slope=half_year_basin.reach_slope.expand_dims(
        time=half_year_basin.time).transpose())
    with pytest.raises(SchemaError, match=r"give it as at fit time.*isel\(time=0\)"):
        on_time.msgl.coverage(half_year_msgl)
    static_only = half_year_basin[[n for n in half_year_basin.data_vars if "time" not in
                                   half_year_basin[n].dims]]
    assert "time" not in static_only.dims
    with pytest.raises(SchemaError, match="leave time= out"):
        static_only.msgl.coverage(half_year_msgl, time=("2001-01-01", "2001-01-31"))


@pytest.mark.parametrize("lazy", [False, True])
def test_degc_labelled_kelvin_is_refused_in_memory_and_lazily(half_year_basin: xr.Dataset,
                                                                half_year_msgl, lazy: bool) -> None:
    # validate reads no lazy values: coverage judged the dask-backed temperatures as
    # about -270 degC (every day 31 standard deviations beyond) instead of refusing
    # them, as downscale does.
    import warnings

    from xmsgl.exceptions import UnitConversionWarning, UnitsError

    name = next(n for n in half_year_msgl.features.reach_vars if n.endswith("air_temp"))
    ds = half_year_basin.copy()
    ds[name] = ds[name].assign_attrs(units="K")
    if lazy:
        ds = ds.chunk({"time": 60})
    with warnings.catch_warnings(), pytest.raises(UnitsError, match=name):
        warnings.simplefilter("ignore", UnitConversionWarning)  # the lazy conversion says it
        ds.msgl.coverage(half_year_msgl)


def test_one_input_beyond_is_told_in_the_singular() -> None:
    from xmsgl.coverage import input_range_sentence

    vals = np.full((40, 3), 30.0)
    said = input_range_sentence([("seg_air_temp", (30.0, 30.0), lambda: vals)], {"seg_air_temp": [0.0, 10.0]},
                                {"seg_air_temp": 2.0}, {"seg_air_temp": "degC"})
    assert said is not None and "'seg_air_temp' (degC; 100% of the node-days" in said[0]
    assert ") lies more than" in said[0]
    neg = np.full((40, 3), -5.0)
    said = input_range_sentence([("reach_precip", (-5.0, -5.0), lambda: neg)], {"reach_precip": [0.0, 10.0]},
                                {"reach_precip": 1.0}, {"reach_precip": "mm day-1"})
    assert said is not None and "never negative in training, is below 0" in said[0]


def test_the_gru_is_judged_on_its_reaches(tmp_path: Path) -> None:
    # The GRU records its inputs' observed ranges; its static inputs were never judged
    # (no warning, and coverage refused it as a baseline).
    import warnings

    from xmsgl.coverage import WARN_SD
    from xmsgl.exceptions import ExtrapolationWarning

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2001-09-30", seed=3,
                                        reach_obs_share=0.3)
    gru = xmsgl.fit(ds, "gru", epochs=1, window=120, stride=120, progress=False)
    spec = gru.features
    assert spec.seg_vars == [] and "reach_slope" in spec.observed_range
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        inside = _far_beyond(ds, gru, "reach_slope", 2, 0.0)
        gru.predict(inside, time=("2001-01-01", "2001-01-31"))
    far = _far_beyond(ds, gru, "reach_slope", 2, WARN_SD + 2)
    rid = far.reach.values[2]
    with pytest.warns(ExtrapolationWarning, match=rf"1 reach \(id {rid}\).*'reach_slope'"):
        gru.predict(far, time=("2001-01-01", "2001-01-31"))
    with pytest.warns(ExtrapolationWarning, match=rf"id {rid}"):
        far.msgl.downscale(gru, time=("2001-01-01", "2001-01-31"))
    for model in (gru, gru.save(tmp_path / "gru")):
        cov = far.msgl.coverage(model)
        assert "seg_beyond_observed" not in cov and cov.attrs["xmsgl_method"] == "gru"
        assert cov.reach_beyond_observed.values.tolist() == [i == 2 for i in range(far.sizes["reach"])]
        assert cov.reach_beyond_sd.values[2] == pytest.approx(WARN_SD + 2, rel=1e-5)
        assert cov.reach_beyond_variable.values[2] == "reach_slope"


def test_the_first_value_not_finite_is_the_earliest_over_every_block(
        half_year_basin: xr.Dataset, half_year_msgl, monkeypatch: pytest.MonkeyPatch) -> None:
    # Blocks go by days, then by nodes: the first found was not the earliest day when
    # a later day's value sat at a node of an earlier block.
    import xmsgl.coverage
    from xmsgl.exceptions import DataError

    ds = half_year_basin.copy()
    spec = half_year_msgl.features
    name = next(n for n in spec.reach_vars if not spec.static[n])
    vals = ds[name].transpose("time", "reach").values.copy()
    vals[50, 0] = np.nan  # a later day at the first node
    vals[5, -1] = np.nan  # the earliest day, at the last node
    ds[name] = (("time", "reach"), vals, ds[name].attrs)
    day = str(ds.time.values[5])[:10]
    monkeypatch.setattr(xmsgl.coverage, "_BLOCK_VALUES", 3 * ds.sizes["time"])
    for run in (ds, ds.chunk({"reach": 3})):
        with pytest.raises(DataError, match=rf"\(first: reach {ds.reach.values[-1].item()!r} on {day}\)"):
            run.msgl.coverage(half_year_msgl)


def test_a_downscale_in_a_loop_warns_once_per_line(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    # torch, pandas and xarray change the warning filters (catch_warnings) as they run,
    # which makes Python forget what a line said: the loop warned at every pass.
    import warnings

    from xmsgl.coverage import WARN_SD
    from xmsgl.exceptions import ColdStartWarning, ExtrapolationWarning

    ds = _far_beyond(half_year_basin, half_year_msgl, "reach_slope", 2, WARN_SD + 1.5)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")  # Python's own action for these warnings
        warnings.simplefilter("ignore", ColdStartWarning)
        for _ in range(3):
            ds.msgl.downscale(half_year_msgl, time="2001-03")
        ds.msgl.downscale(half_year_msgl, time="2001-03")  # another line: said again
    lines = [w.lineno for w in seen if w.category is ExtrapolationWarning]
    assert len(lines) == 2 and lines[0] != lines[1]
    assert all(w.filename == __file__ for w in seen if w.category is ExtrapolationWarning)
    # Under "always" (pytest.warns's) every pass says it, as Python would.
    with pytest.warns(ExtrapolationWarning) as said:
        for _ in range(2):
            ds.msgl.downscale(half_year_msgl, time="2001-03")
    assert sum(w.category is ExtrapolationWarning for w in said) == 2
