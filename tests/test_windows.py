"""A day's prediction does not depend on the window it is predicted in."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import xmsgl

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from xmsgl.nn.heads import CrossScaleHead  # noqa: E402


@pytest.mark.parametrize("phase", [0, 7, 15, 29])
@pytest.mark.parametrize("first_output", [40, 100, 180])
def test_head_cut_at_first_needed_day_is_exact(phase: int, first_output: int) -> None:
    torch.manual_seed(0)
    head = CrossScaleHead(hidden=4, window=30).eval()
    x = torch.randn(3, 300, 4)
    with torch.no_grad():
        _, whole = head(x, phase)
        cut = head.first_needed_day(first_output, phase)
        _, part = head(x[:, cut:], (phase + cut) % 30)
    assert 0 <= cut <= first_output
    torch.testing.assert_close(part[:, first_output - cut:], whole[:, first_output:])
    if cut < first_output:  # one day later is not enough: the cut is the latest exact one
        _, late = head(x[:, cut + 1:], (phase + cut + 1) % 30)
        assert not torch.allclose(late[:, first_output - cut - 1:], whole[:, first_output:])


def test_spans_follow_the_calendar() -> None:
    # Shifting the sequence and the phase together gives the same days the same spans.
    torch.manual_seed(1)
    head = CrossScaleHead(hidden=4, window=30).eval()
    x = torch.randn(2, 200, 4)
    with torch.no_grad():
        _, a = head(x[:, 10:], 10)
        _, b = head(x, 0)
        _, c = head(x[:, 10:], 0)  # the same days on another grid
    torch.testing.assert_close(a[:, 50:140], b[:, 60:150])
    assert not torch.allclose(c[:, 50:140], b[:, 60:150])


def _fit(fine_head: str) -> tuple[xr.Dataset, xmsgl.Downscaler]:
    ds = xmsgl.datasets.synthetic_basin(n_segments=8, start="2000-10-01", end="2002-09-30", seed=1)
    model = ds.msgl.sparsify(keep=0.1, seed=0).msgl.fit(method="msgl", epochs=6, progress=False,
                                                        seed=0, window=180, stride=90,
                                                        fine_head=fine_head)
    return ds, model


@pytest.fixture(scope="module")
def fitted() -> tuple[xr.Dataset, xmsgl.Downscaler]:
    return _fit("concat")


@pytest.fixture(scope="module")
def fitted_residual() -> tuple[xr.Dataset, xmsgl.Downscaler]:
    # The residual fine head reads the attention of task 1: its fine prediction
    # depends on later days of its spans, as the cross-scale estimate does.
    return _fit("residual")


@pytest.mark.parametrize("scale", ["reach", "cross"])
@pytest.mark.parametrize("head", ["concat", "residual"])
def test_a_period_gives_the_days_of_the_whole_record(fitted, fitted_residual, scale: str,
                                                     head: str) -> None:
    ds, model = fitted if head == "concat" else fitted_residual
    # The default spin-up (180 days): how fast a model forgets its start is its own,
    # and a 100-day spin-up left up to 0.08 degC with some fits of this basin.
    whole = ds.msgl.downscale(model, scale=scale, chunk=200, spinup=180)
    for sel in (("2001-02-11", "2001-12-20"), ("2001-07-01", "2002-09-30")):
        part = ds.msgl.downscale(model, scale=scale, time=sel, chunk=200, spinup=180)
        # The recurrences forget their start within the spin-up; the attention spans
        # lie on the calendar and are whole at every window's end.
        np.testing.assert_allclose(part.values, whole.sel(time=slice(*sel)).values, atol=0.005)


@pytest.mark.parametrize("head", ["concat", "residual"])
def test_lazy_time_blocks_read_ahead(fitted, fitted_residual, head: str) -> None:
    ds, model = fitted if head == "concat" else fitted_residual
    whole = ds.msgl.downscale(model)
    lazy = ds.chunk({"time": 100}).msgl.downscale(model, reach_chunk=30, time_block=365).compute()
    np.testing.assert_allclose(lazy.values, whole.values, atol=1e-5)


@pytest.mark.parametrize("scale", ["reach", "cross"])
def test_forcings_that_stop_after_the_period_do_not_block_it(fitted_residual, scale: str) -> None:
    # Forcings known up to some day, NaN after it (a record running up to today):
    # the days before downscale, reading ahead no further than the last complete day,
    # as on a record that ends there.
    ds, model = fitted_residual
    stop = "2002-03-10"
    cut = ds.copy(deep=True)
    for name in model.features.seg_vars + model.features.reach_vars:
        if "time" in cut[name].dims:
            cut[name] = cut[name].where(cut.time < np.datetime64(stop))
    sel = ("2001-10-01", "2002-03-01")
    got = cut.msgl.downscale(model, scale=scale, time=sel)
    ended = ds.sel(time=slice(None, "2002-03-09")).msgl.downscale(model, scale=scale, time=sel)
    np.testing.assert_array_equal(got.values, ended.values)
    whole = ds.msgl.downscale(model, scale=scale, time=sel)
    # Only the last days, whose attention spans (two blocks of 30 days) reach past
    # the stop, may differ from a run on the complete record: the others to rounding,
    # since the attention's one shift of its exponentials is the largest score of
    # all the days run (xmsgl.nn.heads._shared_exp), which the later days can change.
    np.testing.assert_allclose(got.values[:, :-60], whole.values[:, :-60], rtol=0, atol=1e-5)
    assert np.abs(got.values[:, -60:] - whole.values[:, -60:]).max() > 1e-3
    with pytest.raises(xmsgl.exceptions.DataError, match="NaN"):
        cut.msgl.downscale(model, scale=scale, time=("2002-03-01", "2002-03-20"))


def test_lazy_forcings_that_stop_after_the_period_do_not_block_it(fitted_residual) -> None:
    # The same on dask-backed inputs: each time block reads ahead no further than
    # the last day its inputs are finite on, and gives the in-memory values.
    ds, model = fitted_residual
    cut = ds.copy(deep=True)
    for name in model.features.seg_vars + model.features.reach_vars:
        if "time" in cut[name].dims:
            cut[name] = cut[name].where(cut.time < np.datetime64("2002-03-10"))
    sel = ("2001-10-01", "2002-03-01")
    lazy = cut.chunk({"time": 100}).msgl.downscale(model, time=sel, reach_chunk=30,
                                                   time_block=365).compute()
    np.testing.assert_array_equal(lazy.values, cut.msgl.downscale(model, time=sel).values)
    with pytest.raises(xmsgl.exceptions.DataError, match="NaN"):
        cut.chunk({"time": 100}).msgl.downscale(
            model, time=("2002-03-01", "2002-03-20"), reach_chunk=30, time_block=365).compute()


@pytest.mark.parametrize("head", ["concat", "residual"])
def test_validation_over_windows_of_two_lengths(head: str) -> None:
    # A leap water year is 366 days: validated in 365-day windows, it runs as two
    # groups of windows (one of 365 days, one of a day), each scoring only the
    # observed reaches. The score recorded is the RMSE of downscale on that year.
    ds = xmsgl.datasets.synthetic_basin(n_segments=6, start="2014-10-01", end="2017-09-30", seed=0)
    sparse = ds.msgl.sparsify(keep=0.2, seed=0)
    model = sparse.msgl.fit(method="msgl", seed=0, epochs=1, hidden=4, progress=False,
                            fine_head=head)
    (val,) = model.config["periods"]["val"]
    assert (np.datetime64(val[1]) - np.datetime64(val[0])).astype(int) + 1 == 366
    pred = sparse.msgl.downscale(model, time=tuple(val))
    obs = sparse.reach_temp.sel(time=slice(*val)).transpose(*pred.dims)
    ok = np.isfinite(obs.values)
    rmse = float(np.sqrt(np.mean((pred.values[ok] - obs.values[ok]) ** 2)))
    recorded = model.config["history"]["main"]["val"][0]
    assert recorded == pytest.approx(rmse, rel=1e-4)


@pytest.mark.parametrize("block_days", [1, 7])
def test_fine_recurrence_by_blocks_of_days_gives_the_same_prediction(
        fitted, monkeypatch: pytest.MonkeyPatch, block_days: int) -> None:
    # MSGL's concatenated fine head runs with the fine recurrence a block of days at a
    # time (the states carried over, the spin-up cut inside a block or on its edge):
    # any block size gives what one block of all days gives, for every reach and for
    # some reaches (the validation's path), over windows run side by side.
    import torch

    from xmsgl import train
    from xmsgl.graph import build_graphs
    from xmsgl.model import _rebuild

    ds, model = fitted
    whole = ds.msgl.downscale(model, chunk=200, spinup=100)
    graphs = build_graphs(ds, **model.config["graph"]["options"])
    data = _rebuild(model, ds, graphs, torch.device("cpu"), slice(None))
    rows = np.array([3, 10, 11, 40])
    ref = train.predict(model.net, data, 30, ds.sizes["time"], output="fine",
                        device=torch.device("cpu"), chunk=200, spinup=100, rows=rows)["reach"]
    # The coarse recurrence takes the same turns: the coarse prediction made with the
    # fine one is what the coarse path alone gives.
    coarse = train.predict(model.net, data, 30, ds.sizes["time"], output="coarse",
                           device=torch.device("cpu"), chunk=200, spinup=100)["seg"]
    n_reach = ds.sizes["reach"]
    hidden = model.net.hidden
    monkeypatch.setattr(train, "STATE_BLOCK_BYTES", block_days * n_reach * hidden * 4)
    monkeypatch.setattr(train, "STATE_BLOCK_MIN_DAYS", 1)
    # The head's own blocks (1 and 5 days for one window) straddle the state blocks.
    width = model.net.fine_head.parts()[0].shape[0]
    monkeypatch.setattr(train, "HEAD_BLOCK_BYTES", max(1, block_days - 2) * n_reach * width * 4)
    blocked = ds.msgl.downscale(model, chunk=200, spinup=100)
    np.testing.assert_allclose(blocked.values, whole.values, rtol=0, atol=1e-6)
    got = train.predict(model.net, data, 30, ds.sizes["time"], output="fine",
                        device=torch.device("cpu"), chunk=200, spinup=100, rows=rows)["reach"]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    assert np.isfinite(got).all()
    with_fine = train.predict(model.net, data, 30, ds.sizes["time"], output="fine",
                              device=torch.device("cpu"), chunk=200, spinup=100)["seg"]
    np.testing.assert_allclose(with_fine, coarse, rtol=0, atol=1e-6)
    assert np.isfinite(with_fine).all() and np.ptp(with_fine) > 0.5


# This small fit's summer discharge lies beyond its training range: said, and beside the point.
@pytest.mark.filterwarnings("ignore::xmsgl.exceptions.InputRangeWarning")
def test_days_whose_look_ahead_the_record_cuts_are_named(fitted, fitted_residual) -> None:
    # A month run at the end of its record (each month appended as it comes) changed by
    # up to 0.7 degC once later days were given, with no word: named, and warned of
    # when they are most of the days returned.
    ds, model = fitted_residual
    month = ("2002-06-01", "2002-06-30")
    upto = ds.sel(time=slice(None, "2002-06-30"))
    with pytest.warns(xmsgl.XmsglWarning, match=r"30 of the 30 days returned \(2002-06-01/2002-06-30\) "
                      r"have fewer than the 60 days after them"):
        edge = upto.msgl.downscale(model, time=month)
    assert edge.attrs["xmsgl_short_lookahead"] == "2002-06-01/2002-06-30"
    later = ds.msgl.downscale(model, time=month)
    assert "xmsgl_short_lookahead" not in later.attrs
    assert float(np.abs(edge - later).max()) > 1e-3  # what the name warns of
    # Inputs that stop (NaN from some day on) cut it as the record's end does.
    stop = ds.copy(deep=True)
    for name in model.features.seg_vars + model.features.reach_vars:
        if "time" in stop[name].dims:
            stop[name] = stop[name].where(stop.time <= np.datetime64("2002-07-15"))
    with pytest.warns(xmsgl.XmsglWarning, match="have fewer than the 60 days"):
        assert stop.msgl.downscale(model, time=month).attrs["xmsgl_short_lookahead"] == \
            "2002-06-01/2002-06-30"
    # A whole record: its last 60 days named, without a warning; a model whose
    # prediction reads no attention names none.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", xmsgl.InputRangeWarning)
        whole = ds.msgl.downscale(model)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        plain = fitted[0].msgl.downscale(fitted[1], time=month)
    assert not [w for w in seen if "days after them" in str(w.message)]
    assert whole.attrs["xmsgl_short_lookahead"] == "2002-08-02/2002-09-30"
    assert "xmsgl_short_lookahead" not in plain.attrs
    lazy = ds.chunk({"time": 100}).msgl.downscale(model, reach_chunk=30, time_block=365)
    assert lazy.attrs["xmsgl_short_lookahead"] == whole.attrs["xmsgl_short_lookahead"]
