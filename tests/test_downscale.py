"""Downscaling to labeled DataArrays: metadata, id alignment, mismatch errors."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl
from tests.conftest import FAST_FIT, devices

torch = pytest.importorskip("torch")

from xmsgl.downscale import downscale  # noqa: E402
from xmsgl.exceptions import DataError, ModelMismatchError, ParameterError, TimeError  # noqa: E402
from xmsgl.model import Downscaler, fit  # noqa: E402

FAST = FAST_FIT


@pytest.fixture(scope="module")
def basin(half_year_basin: xr.Dataset) -> xr.Dataset:
    return half_year_basin


@pytest.fixture(scope="module")
def model(half_year_msgl: Downscaler) -> Downscaler:
    return half_year_msgl


@pytest.mark.parametrize("device", devices())
def test_output_is_labeled(basin: xr.Dataset, model: Downscaler, device: str) -> None:
    coded = basin.assign_coords(reach_code=("reach", [f"r{i}" for i in basin.reach.values]))
    out = coded.msgl.downscale(model, device=device, time=("2001-03-01", "2001-03-31"))
    assert out.dims == ("reach", "time") and out.dtype == np.float32
    assert out.sizes == {"reach": basin.sizes["reach"], "time": 31}
    assert out.attrs["units"] == "degC" and "temperature" in out.attrs["long_name"]
    hist = out.attrs["history"]
    for part in (xmsgl.__version__, "method='msgl'", model.sha256[:16], f"device={device!r}",
                 "spinup=180", "check_graph=True", "time=2001-03-01/2001-03-31"):
        assert part in hist
    np.testing.assert_array_equal(out.reach.values, basin.reach.values)
    val = model.config["periods"]["val"]
    assert out.attrs["xmsgl_val_periods"] == ", ".join(f"{a}/{b}" for a, b in val)
    assert out.reach_code.values[0] == f"r{basin.reach.values[0]}"  # input coordinates kept
    assert bool(np.isfinite(out).all())
    assert 0 < float(out.mean()) < 30


@pytest.mark.parametrize("lazy", [False, True])
def test_variables_the_model_does_not_read_are_left_alone(
        basin: xr.Dataset, model: Downscaler, lazy: bool) -> None:
    # An ensemble of forcings on one more dimension and a variable without units are
    # refused at fit time (which inputs to use is open there); a fitted model's inputs
    # are fixed, so downscale neither validates nor reads anything else.
    days = ("2001-03-01", "2001-03-31")
    ens = basin.reach_air_temp.expand_dims(member=2).copy()
    extra = basin.assign(reach_air_temp_ens=ens, reach_foo=basin.reach_length * 0.0 + 1.0)
    extra["reach_foo"].attrs = {}
    with pytest.raises(xmsgl.exceptions.SchemaError, match="reach_air_temp_ens"):
        extra.msgl.validate()
    if lazy:
        basin, extra = basin.chunk({"time": 60}), extra.chunk({"time": 60})
    want = basin.msgl.downscale(model, time=days).values
    np.testing.assert_array_equal(extra.msgl.downscale(model, time=days).values, want)
    # The model's own inputs are still checked.
    with pytest.raises(ModelMismatchError, match="reach_air_temp"):
        extra.drop_vars("reach_air_temp").msgl.downscale(model, time=days).compute()


def test_one_basin_of_the_network_alone_is_weighed_as_in_training(tmp_path) -> None:
    # The "msgl" weighting standardizes edge distances over a network. A model keeps
    # its own network's standardization, so that a drainage basin downscaled alone
    # (check_graph=False) gets what it gets with the whole network: an unrelated basin
    # in the dataset no longer moved its predictions (by 0.032 degC here).
    from xmsgl.graph import build_graphs

    two = xmsgl.datasets.synthetic_basin(n_segments=8, n_outlets=2, start="2001-01-01",
                                         end="2001-04-30", seed=5, reach_obs_share=0.3)
    m = fit(two, method="msgl", seed=0, **FAST)
    stats = m.config["graph"]["weight_stats"]
    assert set(stats) == {"coarse", "fine", "cross"}
    g = build_graphs(two)
    first = g.component_seg == g.component_seg[0]
    one = two.isel(seg=np.flatnonzero(first),
                   reach=np.flatnonzero(np.isin(two.reach_seg.values, two.seg.values[first])))
    assert 0 < one.sizes["reach"] < two.sizes["reach"]
    whole = two.msgl.downscale(m).sel(reach=one.reach)
    for model_or_path in (m, m.save(tmp_path / "m")):
        for lazy in (False, True):
            blocks = {"reach_chunk": 1000} if lazy else {}
            alone = one.msgl.downscale(model_or_path, check_graph=False, lazy=lazy, **blocks)
            np.testing.assert_allclose(alone.values, whole.values, atol=1e-5)
    # Without them (a model saved before they were kept) the part is weighed by its own
    # distances, which differ.
    old = copy.deepcopy(m)
    del old.config["graph"]["weight_stats"]
    apart = one.msgl.downscale(old, check_graph=False)
    assert float(np.abs(apart - whole).max()) > 1e-3
    # A part that cuts a drainage basin is warned of (whole basins, above, are not): at a
    # segment that drains into another, with what lies upstream of it.
    to = dict(zip(two.seg.values.tolist(), two.seg_to.values.tolist()))
    cut = next(s for s in one.seg.values.tolist() if to[s] != 0 and s in to.values())
    keep, todo = [cut], [cut]
    while todo:
        below = todo.pop()
        up = [s for s, t in to.items() if t == below]
        keep += up
        todo += up
    head = two.sel(seg=keep).sel(reach=two.reach[two.reach_seg.isin(keep)])
    head = head.assign(seg_to=head.seg_to.where(head.seg != cut, 0))
    r_to = head.reach_to.values.copy()
    r_to[~np.isin(r_to, head.reach.values)] = 0
    head = head.assign(reach_to=("reach", r_to, head.reach_to.attrs))
    for lazy in (False, True):
        blocks = {"reach_chunk": 1000} if lazy else {}
        with pytest.warns(xmsgl.XmsglWarning, match=rf"cuts its drainage basins: segment ids \[{cut}\] "
                          r"drain to an outlet here but not in the model's network.*include whole "
                          r"drainage basins"):
            head.msgl.downscale(m, check_graph=False, lazy=lazy, **blocks)
    # The lower part of a basin without its headwaters: its outlet's basin is short.
    # (Nothing in it points upstream, into what was dropped.)
    low = one.drop_sel(seg=keep).sel(reach=one.reach[~one.reach_seg.isin(keep)])
    assert low.sizes["seg"] > 0
    n_basin = int(first.sum())
    with pytest.warns(xmsgl.XmsglWarning, match=rf"the basins of outlet segment ids \d+ "
                      rf"\({n_basin - len(keep)} of {n_basin}\) hold fewer segments"):
        low.msgl.downscale(m, check_graph=False)
    # A model saved before the counts were kept is not judged.
    del old.config["graph"]["drainage"]
    from xmsgl.model import partial_network

    assert partial_network(old, build_graphs(head)) is None


def test_coarse_predictions(basin: xr.Dataset, model: Downscaler) -> None:
    seg = downscale(basin, model, scale="seg")
    assert seg.dims == ("seg", "time") and seg.sizes["seg"] == basin.sizes["seg"]
    assert seg.attrs["long_name"].endswith("coarse segments, predicted by xmsgl")
    # The coarse prediction and the cross-scale estimate read segment inputs only:
    # without the reach inputs they are the same, and the fine prediction names them.
    no_reach = basin.drop_vars(model.features.reach_vars)
    np.testing.assert_array_equal(downscale(no_reach, model, scale="seg").values, seg.values)
    np.testing.assert_array_equal(downscale(no_reach, model, scale="cross").values,
                                  downscale(basin, model, scale="cross").values)
    with pytest.raises(ModelMismatchError, match="reach_air_temp"):
        downscale(no_reach, model)
    fine_only = fit(basin, method="fine-only", seed=0, **FAST)
    with pytest.raises(ParameterError, match="no coarse prediction"):
        downscale(basin, fine_only, scale="seg")


def test_coarse_output_is_the_remap_without_reaches(basin: xr.Dataset, model: Downscaler) -> None:
    from xmsgl.exceptions import ParameterError
    from xmsgl.graph import build_graphs
    from xmsgl.model import _rebuild
    from xmsgl.train import predict

    graphs = build_graphs(basin, **model.config["graph"].get("options", {}))
    dev = torch.device("cpu")
    data = _rebuild(model, basin, graphs, dev, slice(0, basin.sizes["time"]))
    n = basin.sizes["time"]
    coarse = predict(model.net, data, 40, n, output="coarse", device=dev, chunk=60, spinup=20)
    remap = predict(model.net, data, 40, n, output="remap", device=dev, chunk=60, spinup=20)
    assert set(coarse) == {"seg"}
    np.testing.assert_array_equal(coarse["seg"], remap["seg"])
    np.testing.assert_array_equal(remap["reach"], remap["seg"][:, data.reach_seg_idx])
    with pytest.raises(ParameterError, match="'fine', 'fine_only'"):
        predict(model.net, data, 0, n, output="seg", device=dev)


def test_cross_scale_estimate_is_what_the_fine_head_refines(basin: xr.Dataset, model: Downscaler) -> None:
    import copy

    cross = downscale(basin, model, scale="cross")
    fine = downscale(basin, model)
    assert cross.dims == ("reach", "time") and cross.name == "reach_temp_cross"
    assert cross.attrs["units"] == "degC" and "cross-scale" in cross.attrs["long_name"]
    assert "scale='cross'" in cross.attrs["history"]
    assert not np.allclose(cross.values, fine.values)
    # The default fine head reads the carried coarse states, not the cross-scale
    # head: other attention weights change the cross-scale estimate only.
    assert model.config["hyperparameters"]["fine_head"] == "concat"
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.net.cross_head.parameters():
            p.add_(0.1)
    np.testing.assert_array_equal(downscale(basin, other).values, fine.values)
    assert not np.allclose(downscale(basin, other, scale="cross").values, cross.values)
    # The residual head adds to the cross-scale estimate an MLP whose last layer
    # is zeroed here: the two must then agree.
    residual = fit(basin, method="msgl", seed=0, fine_head="residual", **FAST)
    flat = copy.deepcopy(residual)
    last = flat.net.fine_head.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    np.testing.assert_allclose(downscale(basin, flat).values,
                               downscale(basin, residual, scale="cross").values, atol=1e-5)
    fine_only = fit(basin, method="fine-only", seed=0, **FAST)
    with pytest.raises(ParameterError, match="no cross-scale estimate"):
        downscale(basin, fine_only, scale="cross")
    with pytest.raises(ParameterError, match="in memory only"):
        downscale(basin, model, scale="cross", lazy=True)
    with pytest.raises(ParameterError, match="'reach', 'seg' or 'cross'"):
        downscale(basin, model, scale="segment")


def test_alignment_is_by_id_not_order(basin: xr.Dataset, model: Downscaler) -> None:
    rng = np.random.default_rng(0)
    shuffled = basin.isel(reach=rng.permutation(basin.sizes["reach"]),
                          seg=rng.permutation(basin.sizes["seg"]))
    a = downscale(basin, model)
    b = downscale(shuffled, model)
    np.testing.assert_array_equal(b.reach.values, shuffled.reach.values)
    np.testing.assert_allclose(a.sel(reach=b.reach).values, b.values, atol=1e-5)


def test_spinup_starts_before_requested_days(basin: xr.Dataset, model: Downscaler) -> None:
    full = downscale(basin, model)
    # The requested days start late but their window reaches back to day 0: the
    # same window as the full run, so the same values.
    part = downscale(basin, model, time=("2001-05-01", "2001-06-30"), spinup=180)
    assert part.sizes["time"] == 61
    np.testing.assert_allclose(part.values, full.sel(time=part.time).values, atol=1e-4)


def test_gap_in_days_restarts_the_recurrence(basin: xr.Dataset, model: Downscaler) -> None:
    # 20 missing days: no state may cross them. The run with the gap equals the two
    # sides downscaled on their own, and days after the gap differ from a run that
    # carries the state through (the record with the gap's days present).
    keep = np.ones(basin.sizes["time"], dtype=bool)
    keep[80:100] = False
    gappy = basin.isel(time=keep)
    run = {"spinup": 30, "chunk": 50}
    with pytest.warns(xmsgl.TimeGapWarning, match=r"1 gap in 'time' \(between 2001-03-21 and 2001-04-11: 20 days missing\)"):
        out = downscale(gappy, model, **run)
    before = downscale(gappy.isel(time=slice(0, 80)), model, **run)
    after = downscale(gappy.isel(time=slice(80, None)), model, **run)
    np.testing.assert_allclose(out.values, xr.concat([before, after], "time").values, atol=1e-5)
    through = downscale(basin, model, **run).sel(time=after.time)
    assert float(np.abs(through - after).isel(time=0).max()) > 0.01
    # Days selected just after the gap are not warmed up across it either: the same as
    # the selection from the record after the gap.
    period = ("2001-04-15", "2001-05-31")
    with pytest.warns(xmsgl.TimeGapWarning):
        late = downscale(gappy, model, time=period, **run)
    alone = downscale(gappy.isel(time=slice(80, None)), model, time=period, **run)
    np.testing.assert_allclose(late.values, alone.values, atol=1e-5)


def test_days_short_of_warm_up_are_named(basin: xr.Dataset, model: Downscaler) -> None:
    # The first days of a record (and after a gap) follow a fresh state; the output
    # says which, so that they can be left out.
    days = [str(d)[:10] for d in basin.time.values]
    full = downscale(basin, model, spinup=30, chunk=50)
    assert full.attrs["xmsgl_short_warmup"] == f"{days[0]}/{days[29]}"
    assert full.attrs["cell_methods"] == "time: mean"
    assert full.attrs["xmsgl_train_periods"] == ", ".join(
        f"{a}/{b}" for a, b in model.config["periods"]["train"])
    assert f"time={days[0]}/{days[-1]}" in full.attrs["history"]
    late = downscale(basin, model, spinup=30, chunk=50, time=(days[40], days[60]))
    assert "xmsgl_short_warmup" not in late.attrs
    assert f"time={days[40]}/{days[60]}" in late.attrs["history"]
    edge = downscale(basin, model, spinup=30, chunk=50, time=(days[20], days[60]))
    assert edge.attrs["xmsgl_short_warmup"] == f"{days[20]}/{days[29]}"
    keep = np.ones(basin.sizes["time"], dtype=bool)
    keep[80:100] = False
    with pytest.warns(xmsgl.TimeGapWarning):
        gappy = downscale(basin.isel(time=keep), model, spinup=30, chunk=50)
    assert gappy.attrs["xmsgl_short_warmup"] == f"{days[0]}/{days[29]}, {days[100]}/{days[129]}"


def test_mostly_cold_started_days_are_warned_of(basin: xr.Dataset, model: Downscaler) -> None:
    import warnings

    days = [str(d)[:10] for d in basin.time.values]
    # A month from a dataset that starts on its first day: every day is short of warm-up.
    month = basin.sel(time=slice("2001-03-01", "2001-03-31"))
    with pytest.warns(xmsgl.ColdStartWarning, match=r"^31 of the 31 days returned \(2001-03-01/2001-03-31\) "
                      r"have fewer than spinup=180 days of inputs before them.*Give the dataset 180 days"):
        month.msgl.downscale(model)
    with pytest.warns(xmsgl.ColdStartWarning, match=r"^31 of the 31 days"):  # lazily too
        month.chunk({"reach": 50}).msgl.downscale(model, reach_chunk=50)
    # 40 of 61 days (over half) short of a 40-day warm-up are; 30 of 181 and 0 of 81 are not.
    with pytest.warns(xmsgl.ColdStartWarning, match=rf"^40 of the 61 days returned \({days[80]}/"):
        downscale(basin.isel(time=slice(80, None)), model, spinup=40, time=(days[80], days[140]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", xmsgl.ColdStartWarning)
        downscale(basin, model, spinup=30, chunk=50)
        downscale(basin, model, spinup=40, time=(days[60], days[140]))  # 0 of 81


def test_days_asked_for_beyond_the_record_are_named(basin: xr.Dataset, model: Downscaler) -> None:
    # A period past the record's end used to come back shorter without a word.
    days = [str(d)[:10] for d in basin.time.values]
    with pytest.warns(xmsgl.XmsglWarning, match=rf"reaches past the dataset's days.*only the 11 days "
                                                rf"from {days[-11]} to {days[-1]}"):
        out = downscale(basin, model, time=(days[-11], "2030-12-31"))
    assert out.sizes["time"] == 11
    with pytest.warns(xmsgl.XmsglWarning, match="reaches before and past"):
        downscale(basin, model, time=("1990-01-01", "2030-12-31"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", xmsgl.ColdStartWarning)  # short records: said apart
        # (The summer days of this short record lie beyond the winter the model was
        # fitted on: tests/test_coverage.py checks that warning.)
        warnings.simplefilter("ignore", xmsgl.InputRangeWarning)
        downscale(basin, model, time=(days[0], days[-1]))
        downscale(basin, model, time=(days[3], None))
    # The warning names the caller's line (it named a wrapper inside xmsgl), through the
    # accessor too; a baseline's period beyond the days warns alike (it said nothing).
    from xmsgl.baselines import fit_baseline

    clim = fit_baseline(basin, "climatology")
    for what in (model, clim):
        with pytest.warns(xmsgl.XmsglWarning, match="reaches past the dataset's days") as got:
            out = basin.msgl.downscale(what, time=(days[-11], "2030-12-31"))
        assert out.sizes["time"] == 11
        # (With the network, its June days also lie beyond the winter it was fitted on:
        # that warning names the caller's line too.)
        assert {w.filename for w in got} == {__file__}
        assert sum("past the dataset's days" in str(w.message) for w in got) == 1
    # A baseline reads a list of periods too (the warning's check refused it).
    two = [(days[0], days[4]), (days[-5], days[-1])]
    assert basin.msgl.downscale(clim, time=two).sizes["time"] == 10


def test_a_lazy_run_refuses_a_name_that_is_no_device_at_once(basin: xr.Dataset, model: Downscaler) -> None:
    # It was accepted, written into the history, and refused only at compute.
    with pytest.raises(xmsgl.ParameterError, match="device='gpu' is not a torch device"):
        basin.chunk({"time": 100}).msgl.downscale(model, device="gpu")
    with pytest.raises(xmsgl.ParameterError, match="not on 'meta'"):
        basin.chunk({"time": 100}).msgl.downscale(model, device="meta")


def test_short_warmup_spans_stop_at_the_next_restart() -> None:
    from xmsgl.downscale import short_warmup

    times = pd.date_range("2001-01-01", periods=100).delete(range(10, 15))  # restarts at 10
    breaks = np.array([10])
    assert short_warmup(times, 0, 95, 30, breaks) == "2001-01-01/2001-01-10, 2001-01-16/2001-02-14"
    assert short_warmup(times, 50, 95, 30, breaks) == ""
    assert short_warmup(times, 0, 95, 0, breaks) == ""


def test_gap_off_the_span_grid_keeps_days_on_the_calendar(basin: xr.Dataset, model: Downscaler) -> None:
    # The cross-scale head's attention spans lie on a calendar grid. After a gap whose
    # length is not a multiple of the grid's period, the days after it must still be
    # placed by their dates (as a run of them alone does), not by their positions.
    period = model.net.cross_head.span_period()
    assert period > 1
    gap = period + 3
    keep = np.ones(basin.sizes["time"], dtype=bool)
    keep[80: 80 + gap] = False
    gappy = basin.isel(time=keep)
    run = {"spinup": 30, "chunk": 50}
    with pytest.warns(xmsgl.TimeGapWarning):
        out = downscale(gappy, model, **run)
    after = downscale(gappy.isel(time=slice(80, None)), model, **run)
    np.testing.assert_allclose(out.isel(time=slice(80, None)).values, after.values, atol=1e-5)
    # 68 days, 60 of them before the record's end: their look-ahead is cut, and said.
    with pytest.warns(xmsgl.XmsglWarning, match="60 of the 68 days returned .* days after them"):
        cross = downscale(gappy.isel(time=slice(80, None)), model, scale="cross", **run)
    with pytest.warns(xmsgl.TimeGapWarning):
        cross_gappy = downscale(gappy, model, scale="cross", **run)
    np.testing.assert_allclose(cross_gappy.isel(time=slice(80, None)).values, cross.values, atol=1e-5)


def test_time_selection_on_an_axis_of_seconds(basin: xr.Dataset, model: Downscaler) -> None:
    # A time axis in datetime64[s] (as numpy day arrays or CF decoding with
    # time_unit="s" give): a label's last instant is not a whole second.
    secs = basin.assign_coords(time=basin.time.values.astype("datetime64[s]"))
    assert secs.time.dtype == np.dtype("datetime64[s]")
    want = downscale(basin, model, time=("2001-03-01", "2001-03-31"))
    got = downscale(secs, model, time=("2001-03-01", "2001-03-31"))
    assert got.sizes["time"] == 31
    np.testing.assert_array_equal(got.values, want.values)
    assert downscale(secs, model, time="2001-04").sizes["time"] == 30
    lazy = downscale(secs.chunk({"time": 60}), model, time="2001-04")
    np.testing.assert_allclose(lazy.compute().values, downscale(basin, model, time="2001-04").values,
                               atol=1e-5)


def test_missing_input_variable_is_named(basin: xr.Dataset, model: Downscaler) -> None:
    with pytest.raises(ModelMismatchError, match="reach_swrad"):
        downscale(basin.drop_vars("reach_swrad"), model)
    other_units = basin.copy()
    other_units["reach_precip"] = basin.reach_precip.assign_attrs(units="furlong")
    with pytest.raises(ModelMismatchError, match="reach_precip.*units"):
        downscale(other_units, model)


def test_an_input_stored_as_integers_is_read_as_its_values(basin: xr.Dataset, model: Downscaler) -> None:
    # Fit leaves an int16 air temperature out (integers are flags or ids there); a model
    # fitted with the float one reads it by name, as the values it holds, unit-checked.
    rounded = basin.assign(reach_air_temp=basin.reach_air_temp.round())
    as_int = basin.assign(reach_air_temp=basin.reach_air_temp.round().astype("int16")
                          .assign_attrs(basin.reach_air_temp.attrs))
    np.testing.assert_array_equal(downscale(as_int, model).values, downscale(rounded, model).values)
    shifted = rounded.assign(reach_air_temp=rounded.reach_air_temp + 273)
    shifted["reach_air_temp"].attrs["units"] = "K"
    as_int["reach_air_temp"] = (as_int.reach_air_temp + 273).astype("int16").assign_attrs(units="K")
    with pytest.warns(xmsgl.exceptions.UnitConversionWarning, match="'reach_air_temp' converted"):
        from_int = downscale(as_int, model).values
    with pytest.warns(xmsgl.exceptions.UnitConversionWarning, match="'reach_air_temp' converted"):
        from_float = downscale(shifted, model).values
    np.testing.assert_allclose(from_int, from_float, atol=1e-5)


def test_nan_input_at_downscale_names_variable(basin: xr.Dataset, model: Downscaler) -> None:
    bad = basin.copy()
    v = bad.seg_air_temp.values.copy()
    v[..., 5] = np.nan
    bad["seg_air_temp"] = (bad.seg_air_temp.dims, v, bad.seg_air_temp.attrs)
    with pytest.raises(DataError, match="'seg_air_temp' has"):
        downscale(bad, model)


def test_other_graph_is_refused_with_the_difference(basin: xr.Dataset, model: Downscaler) -> None:
    other = xmsgl.datasets.synthetic_basin(n_segments=7, start="2001-01-01", end="2001-02-28", seed=4)
    with pytest.raises(ModelMismatchError, match="river graph differs"):
        downscale(other, model)
    longer = basin.copy()
    longer["reach_length"] = basin.reach_length * 2
    # Same ids: the error says which part of the network differs.
    with pytest.raises(ModelMismatchError, match=r"ids match; what differs: the reach lengths "
                       r"\(reach_length, compared to 0.01 m\) \(fingerprint"):
        downscale(longer, model)
    both = longer.assign(seg_length=basin.seg_length * 3)
    with pytest.raises(ModelMismatchError, match=r"what differs: the segment lengths .*; the reach lengths"):
        downscale(both, model)
    # A model saved without the parts of its fingerprint says less, but still refuses.
    older = copy.deepcopy(model)
    del older.config["graph"]["fingerprint_parts"]
    with pytest.raises(ModelMismatchError, match="ids match but downstream pointers, parents, lengths"):
        downscale(longer, older)
    # Applying the node-agnostic weights to another network is possible on purpose.
    out = downscale(longer, model, check_graph=False)
    assert out.sizes["reach"] == basin.sizes["reach"]


def test_downscale_never_builds_a_graph_transpose(basin: xr.Dataset, model: Downscaler,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # The transpose serves backward only; at 10^5 reaches it is some 70 MB and a
    # tenth of a second to build.
    from xmsgl.nn import SparseGraph

    def refuse(self: SparseGraph) -> None:
        raise AssertionError("a transpose was built for inference")

    monkeypatch.setattr(SparseGraph, "adj_t", property(refuse))
    for scale in ("reach", "seg", "cross"):
        assert downscale(basin, model, scale=scale, device="cpu").notnull().all()
    assert downscale(basin, model, check_graph=False, device="cpu").notnull().all()


def test_a_period_inside_a_gap_is_said_to_be_in_the_gap(basin: xr.Dataset, model: Downscaler) -> None:
    # It was answered with the record's span, which holds the period.
    gap = basin.drop_sel(time=pd.date_range("2001-02-10", "2001-02-20"))
    for sel in (("2001-02-12", "2001-02-15"), "2001-02-14"):
        with pytest.raises(TimeError, match=r"falls in a gap of its days, between 2001-02-09 and 2001-02-21"):
            gap.msgl.downscale(model, time=sel)
    with pytest.raises(TimeError, match=r"selects no day of the dataset \(2001-01-01 to 2001-06-30\)"):
        gap.msgl.downscale(model, time=("1990", "1991"))


def test_runs_on_an_accelerator_take_turns_with_the_callers_model() -> None:
    """In memory, downscale moves the caller's model to the device and back to the CPU:
    two threads running one model on a GPU would pull its weights from under each other,
    so runs there take turns; on the CPU nothing moves and nothing waits."""
    import threading
    import time

    import torch

    from xmsgl.downscale import on_device

    moves: list[tuple[str, str]] = []

    class Net(torch.nn.Module):
        def to(self, dev):  # type: ignore[override]
            moves.append((threading.current_thread().name, str(dev)))
            time.sleep(0.05)  # a move takes a while: room for another thread to cut in
            return self

    net = Net()

    def run() -> None:
        with on_device(net, torch.device("cuda")) as on:
            assert on is net
            time.sleep(0.1)

    threads = [threading.Thread(target=run, name=f"t{i}") for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Each thread's move there is followed by its own move back, never another's.
    assert len(moves) == 6
    for there, back in zip(moves[::2], moves[1::2]):
        assert there[1] == "cuda" and back == (there[0], "cpu")
    # On the CPU: the same moves (no-ops for the weights), and runs side by side.
    moves.clear()
    inside = threading.Barrier(2, timeout=5)

    def cpu_run() -> None:
        with on_device(net, torch.device("cpu")):
            inside.wait()  # both inside at once, or the barrier times out

    pair = [threading.Thread(target=cpu_run) for _ in range(2)]
    for t in pair:
        t.start()
    for t in pair:
        t.join()
    assert [d for _, d in moves] == ["cpu"] * 4 and not inside.broken
    # A CPU run of the same model waits for a GPU run (its move back to the CPU landed
    # inside the GPU run), while another model's GPU run goes beside it.
    moves.clear()
    other = Net()
    started = threading.Event()
    both = threading.Barrier(2, timeout=5)

    def gpu_run(model: torch.nn.Module, name: str) -> None:
        with on_device(model, torch.device("cuda")):
            moves.append((name, "running"))
            started.set()
            both.wait()  # the other model's run is inside too
            time.sleep(0.1)

    a = threading.Thread(target=gpu_run, args=(net, "a"), name="a")
    c = threading.Thread(target=gpu_run, args=(other, "c"), name="c")
    a.start()
    started.wait(5)
    b = threading.Thread(target=cpu_run_alone, args=(net,), name="b")
    b.start()
    c.start()
    for t in (a, b, c):
        t.join()
    assert not both.broken
    mine = [m for m in moves if m[0] in ("a", "b")]
    assert mine.index(("a", "cpu")) < mine.index(("b", "cpu"))  # b moved only after a was back


def cpu_run_alone(net) -> None:  # type: ignore[no-untyped-def]
    import torch

    from xmsgl.downscale import on_device

    with on_device(net, torch.device("cpu")):
        pass


def test_another_network_reusing_the_models_ids_is_not_called_part_of_it() -> None:
    # Another basin whose reach ids are all among the model's: the error named only
    # the missing ids (as if the rest were the model's graph), and check_graph=False
    # called it "part of the model's" network, though its pointers differ.
    one = xmsgl.datasets.synthetic_basin(n_segments=8, start="2000-10-01", end="2001-09-30", seed=1)
    other = xmsgl.datasets.synthetic_basin(n_segments=8, start="2000-10-01", end="2001-09-30", seed=2)
    assert np.isin(other.reach.values, one.reach.values).all() and other.sizes["reach"] < one.sizes["reach"]
    m = one.msgl.fit(method="msgl", epochs=1, hidden=4, window=120, stride=120, seed=0, progress=False)
    with pytest.raises(xmsgl.ModelMismatchError, match=r"of the model's graph are missing; the nodes "
                                                       r"whose ids both have are not compared"):
        other.msgl.downscale(m)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        other.msgl.downscale(m, check_graph=False)
    said = " ".join(str(w.message) for w in seen)
    assert "is part of the model's" not in said
    if "cuts its drainage basins" in said:
        assert "ids alone are compared" in said


def test_a_nan_on_the_last_day_gets_advice_that_fills_it(basin: xr.Dataset, model: Downscaler) -> None:
    # interpolate_na('time') fills between values only: advised alone for a forcing
    # missing on the newest day, it left the NaN and the same error came back.
    name = model.features.seg_vars[0]
    last, mid = basin.time.values[-1], basin.time.values[100]
    for day, said in ((last, True), (mid, False)):
        bad = basin.copy(deep=True)
        bad[name].loc[{"time": day}] = np.nan
        with pytest.raises(xmsgl.DataError, match="interpolate_na") as err:
            downscale(bad, model)
        assert ("a NaN on the record's last day stays: end the days asked for (time=) before it" in
                str(err.value)) is said
    # fit has no time=: its periods are named instead.
    with pytest.raises(xmsgl.DataError, match=r"record's last day stays: end the periods \(train=, val=, "
                       r"test=\) before it"):
        at_end = basin.copy(deep=True)
        at_end[name].loc[{"time": last}] = np.nan
        fit(at_end, method="fine-only", epochs=1, progress=False)
