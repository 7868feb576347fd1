"""The dynamic multi-scale graph embedding backbone (xmsgl.nn.dmsge) and its diagnostics."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr

import xmsgl
from tests.conftest import as_saved_before_digests
from xmsgl.exceptions import ModelMismatchError, ParameterError, SchemaError, UnitsError

torch = pytest.importorskip("torch")

from xmsgl.knn import node_geometry  # noqa: E402
from xmsgl.nn import MSGLNet, SparseGraph  # noqa: E402
from xmsgl.nn.dmsge import (  # noqa: E402
    DMSGEBackbone,
    _EdgeReduce,
    backbone_options,
    dirichlet_energy,
)

OPTS = {"layers": 2, "k": 3}


@pytest.fixture(scope="module")
def basin() -> xr.Dataset:
    return xmsgl.datasets.synthetic_basin(n_segments=6, start="2001-01-01", end="2001-04-30",
                                          seed=3, reach_obs_share=0.3)


@pytest.fixture(scope="module")
def fine_model(basin: xr.Dataset) -> xmsgl.Downscaler:
    torch.set_num_threads(1)
    return basin.msgl.fit(method="fine-only", epochs=1, hidden=8, window=60, stride=60,
                          progress=False, backbone="dmsge", backbone_options=OPTS)


def _backbone(ds: xr.Dataset, **kw: object) -> tuple[DMSGEBackbone, SparseGraph]:
    from xmsgl.graph import build_graphs

    net = DMSGEBackbone(n_inputs=3, hidden=6, **{**OPTS, **kw})  # type: ignore[arg-type]
    net.set_geometry("reach", node_geometry(ds, "reach"))
    return net, SparseGraph(build_graphs(ds).fine)


@pytest.mark.parametrize("mean", [False, True])
def test_edge_reduce_gradients_and_values_match_a_dense_reference(mean: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    b, n, t, h, k = 2, 4, 2, 3, 3
    a = torch.randn(b, n, t, h, dtype=torch.double, generator=gen, requires_grad=True)
    nb = torch.randn(b * n, t, h, dtype=torch.double, generator=gen, requires_grad=True)
    e = torch.randn(b, n, k, h, dtype=torch.double, generator=gen, requires_grad=True)
    idx = torch.randint(0, b * n, (b * n, k), generator=gen)
    assert torch.autograd.gradcheck(lambda a_, nb_, e_: _EdgeReduce.apply(a_, nb_, idx, e_, mean),
                                    (a, nb, e))
    g = nb[idx].view(b, n, k, t, h) + e.unsqueeze(3)
    ref = torch.relu(a.unsqueeze(2) + g).mean(2) if mean else torch.relu(a + g.max(2).values)
    torch.testing.assert_close(_EdgeReduce.apply(a, nb, idx, e, mean), ref)


def test_backbone_options_are_checked() -> None:
    assert backbone_options(None)["layers"] == 3
    assert backbone_options(None)["dynamic_days"] == 20
    assert backbone_options({"dynamic_days": None})["dynamic_days"] is None
    for bad in (0, -3, 2.5, True, "30"):
        with pytest.raises(ParameterError, match="dynamic_days.*integer >= 1"):
            backbone_options({"dynamic_days": bad})
    with pytest.raises(ParameterError, match="not known"):
        backbone_options({"depth": 2})
    with pytest.raises(ParameterError, match="reduce"):
        backbone_options({"reduce": "sum"})
    with pytest.raises(ParameterError, match="graphs"):
        backbone_options({"graphs": ["hydro", "sky"]})
    with pytest.raises(ParameterError, match="candidates"):
        backbone_options({"k": 10, "candidates": 5})
    assert backbone_options({"graphs": ("dynamic", "hydro")})["graphs"] == ["hydro", "dynamic"]
    # The winning neighbour is kept in one byte: k above 255 would wrap around.
    assert backbone_options({"k": 255, "candidates": 255})["k"] == 255
    with pytest.raises(ParameterError, match="k'\\]=256 is more than 255"):
        backbone_options({"k": 256, "graphs": ["hydro", "geo"]})
    # The candidates limit k only where the dynamic search reads them.
    assert backbone_options({"k": 40, "graphs": ["hydro", "geo"]})["k"] == 40


@pytest.mark.parametrize("kw", [{}, {"concat": False}, {"reduce": "mean", "encoder": "gru"},
                                {"graphs": ["hydro", "geo"]}, {"layers": 0}])
def test_backbone_shapes_and_gradients(tiny_basin: xr.Dataset, kw: dict) -> None:
    net, adj = _backbone(tiny_basin, **kw)
    n = tiny_basin.sizes["reach"]
    x = torch.randn(20, n, 2, 3, requires_grad=True)
    out = net(x, adj, "reach")
    assert out.shape == (20, n, 2, 6)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in net.parameters())


def _changed_from_day_15(ds: xr.Dataset, **kw: object) -> tuple[torch.Tensor, torch.Tensor]:
    """A backbone's states over 30 days of random inputs, and over the same inputs
    changed from day 15 on."""
    torch.manual_seed(0)
    net, adj = _backbone(ds, **kw)
    n = ds.sizes["reach"]
    x = torch.randn(30, n, 1, 3)
    y = x.clone()
    y[15:] += 5.0 * torch.randn(1, n, 1, 3)
    with torch.no_grad():
        return net(x, adj, "reach"), net(y, adj, "reach")


@pytest.mark.parametrize("kw", [{"graphs": ["hydro", "geo"]}, {}, {"encoder": "gru"},
                                {"dynamic_days": 7}, {"dynamic_days": 1}])
def test_no_day_reads_a_later_day(tiny_basin: xr.Dataset, kw: dict) -> None:
    # The encoder is causal, and each block's feature-space graph is built from the
    # days up to its first: a change from day 15 on leaves days 0-14 unchanged.
    a, b = _changed_from_day_15(tiny_basin, **kw)
    torch.testing.assert_close(a[:15], b[:15])
    assert not torch.allclose(a[15:], b[15:])


def test_the_whole_window_graph_reads_later_days(tiny_basin: xr.Dataset) -> None:
    # dynamic_days=None, the graph of models saved before the option: one graph per
    # window from the mean over all of its days, which a later change moves.
    a, b = _changed_from_day_15(tiny_basin, dynamic_days=None)
    assert not torch.allclose(a[:15], b[:15])


def test_blocks_lie_on_the_calendar(tiny_basin: xr.Dataset) -> None:
    # A window that starts 23 days later gives the days of the longer run once it
    # holds enough days before them (encoder 31 days, then two layers of blocks of
    # 10 days, each built from the 10 days before): its graphs change on the same
    # dates. Blocks counted from the window's start instead change on other dates.
    torch.manual_seed(0)
    net, adj = _backbone(tiny_basin, dynamic_days=10)
    n = tiny_basin.sizes["reach"]
    x = torch.randn(120, n, 1, 3) * torch.linspace(0.5, 2.0, n).view(1, n, 1, 1)
    with torch.no_grad():
        whole = net(x, adj, "reach", day0=[100])
        later = net(x[23:], adj, "reach", day0=[123])
        counted = net(x[23:], adj, "reach")
    torch.testing.assert_close(later[57:], whole[23 + 57:])
    assert not torch.allclose(counted[57:], whole[23 + 57:])
    with pytest.raises(ParameterError, match="day0 gives 2 first dates for 1 windows"):
        net(x, adj, "reach", day0=[1, 2])


def test_dynamic_graph_is_rebuilt_per_window_and_block(tiny_basin: xr.Dataset) -> None:
    net, adj = _backbone(tiny_basin, dynamic_days=10)
    n = tiny_basin.sizes["reach"]
    x = torch.randn(25, n, 2, 3)
    x[:, :, 1] = x[:, :, 1].flip(1) * 3  # a second window with other features
    net.record = {}
    with torch.no_grad():
        net(x, adj, "reach", day0=[0, 5])
    pieces = net.record["index"][0]
    net.record = None
    # Window 0 changes graph on days 10 and 20, window 1 on days 5 and 15.
    assert [(t0, t1) for t0, t1, _ in pieces] == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 25)]
    assert all(idx.shape == (2, n, 3) for _, _, idx in pieces)
    assert not torch.equal(pieces[0][2][0], pieces[0][2][1])
    assert torch.equal(pieces[0][2][0], pieces[1][2][0])  # window 0 keeps its first graph to day 10


def test_downscaling_does_not_depend_on_chunk_or_period(tmp_path) -> None:
    # With a causal graph on calendar blocks, a day's prediction depends on neither
    # the inference windows (chunk) nor the period asked for, once the spin-up covers
    # what the backbone reads before a day; a model saved before dynamic_days existed
    # loads with the whole-window graph it was fitted with.
    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2001-01-01", end="2001-12-31",
                                        seed=2, reach_obs_share=0.3)
    torch.set_num_threads(1)
    model = ds.msgl.fit(method="msgl", epochs=1, hidden=8, window=90, stride=90, progress=False,
                        backbone="dmsge", backbone_options=OPTS, seed=0)
    assert model.net.dmsge.options["dynamic_days"] == 20
    whole = ds.msgl.downscale(model)
    pieces = ds.msgl.downscale(model, chunk=30, spinup=180)
    np.testing.assert_allclose(pieces.values, whole.values, atol=1e-4)
    part = ds.msgl.downscale(model, time=("2001-08-01", "2001-12-31"))
    np.testing.assert_allclose(part.values, whole.sel(time=part.time).values, atol=1e-4)
    folder = model.save(tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["hyperparameters"]["backbone_options"]["dynamic_days"]
    (folder / "config.json").write_text(json.dumps(as_saved_before_digests(cfg)))
    old = xmsgl.load(folder)
    assert old.net.dmsge.options["dynamic_days"] is None
    assert not np.allclose(ds.msgl.downscale(old).values, whole.values, atol=1e-4)
    from xmsgl.cli import _model_lines

    assert "dynamic_days none" in [ln for ln in _model_lines(str(folder)) if ln.startswith("backbone")][0]


def test_node_permutation_permutes_the_output(tiny_basin: xr.Dataset) -> None:
    torch.manual_seed(0)
    net, adj = _backbone(tiny_basin)
    n = tiny_basin.sizes["reach"]
    x = torch.randn(12, n, 1, 3)
    perm = np.random.default_rng(0).permutation(n)
    shuffled = tiny_basin.isel(reach=perm)
    net2, adj2 = _backbone(shuffled)
    net2.load_state_dict(net.state_dict())
    with torch.no_grad():
        a = net(x, adj, "reach")
        b = net2(x[:, torch.from_numpy(perm)], adj2, "reach")
    torch.testing.assert_close(a[:, torch.from_numpy(perm)], b, rtol=1e-4, atol=1e-5)


def test_k_larger_than_the_graph_and_missing_geometry_are_typed_errors(
        tiny_basin: xr.Dataset, basin: xr.Dataset) -> None:
    net = DMSGEBackbone(3, 4, k=8)
    with pytest.raises(ParameterError, match="lower k to at most 5"):
        net.set_geometry("seg", node_geometry(tiny_basin, "seg"))
    with pytest.raises(ParameterError, match="no node geometry"):
        net(torch.randn(5, 6, 1, 3), torch.eye(6).to_sparse(), "seg")
    with pytest.raises(ParameterError, match=r"'k'\]=8 needs more than 8 nodes"):
        basin.msgl.fit(method="msgl", epochs=1, progress=False, backbone="dmsge",
                       backbone_options={"k": 8})


def test_advice_on_a_too_large_k_names_both_limits_and_leads_to_a_valid_k(
        basin: xr.Dataset) -> None:
    # Following either piece of advice must not run into the other limit.
    with pytest.raises(ParameterError, match=r"k'\]=100 is larger than .*'candidates'\]=32.*"
                                             r"number of nodes.*Lower k to at most 32") as err:
        backbone_options({"k": 100})
    assert "raise candidates" not in str(err.value)
    n_reach = basin.sizes["reach"]
    with pytest.raises(ParameterError, match=f"lower k to at most {n_reach - 1}"):
        basin.msgl.fit(method="fine-only", epochs=1, progress=False, backbone="dmsge",
                       backbone_options={"k": 100, "candidates": 100})
    backbone_options({"k": 32})
    backbone_options({"k": n_reach - 1, "candidates": 100})


def test_river_neighbours_alone_allow_k_above_the_nodes(tiny_basin: xr.Dataset) -> None:
    # Short rows of the river adjacency are padded with the node itself, so only the
    # geometric and feature searches limit k (a block of the lazy path may be small).
    net = DMSGEBackbone(3, 4, layers=1, k=8, graphs=["hydro"])
    net.set_geometry("seg", node_geometry(tiny_basin, "seg"))
    from xmsgl.graph import build_graphs

    out = net(torch.randn(5, 6, 1, 3), SparseGraph(build_graphs(tiny_basin).coarse), "seg")
    assert tuple(out.shape) == (5, 6, 1, 4)


def test_dirichlet_energy_is_zero_for_equal_nodes_and_positive_otherwise() -> None:
    idx = torch.tensor([[1, 2], [0, 2], [0, 1]])
    same = torch.ones(1, 3, 4, 2)
    assert dirichlet_energy(same, idx) == (0.0, 0.0)
    diff = torch.arange(3.0).view(1, 3, 1, 1).expand(1, 3, 4, 2)
    e, en = dirichlet_energy(diff, idx)
    # pairs (0,1),(0,2),(1,2) each twice: squared distances 2*(1,4,1) per day, halved.
    assert e == pytest.approx(0.5 * 2 * (1 + 4 + 1 + 1 + 4 + 1) / 6 / 1)
    assert en > 0


def test_normalized_energy_is_about_one_for_unrelated_neighbours_whatever_the_offset() -> None:
    # Divided by the mean squared norm, an offset every node shares (ReLU outputs are
    # non-negative) pulled the ratio towards 0 with no graph smoothing at all.
    gen = torch.Generator().manual_seed(0)
    n, k = 400, 6
    idx = torch.randint(0, n, (n, k), generator=gen)
    h = torch.randn(1, n, 50, 8, generator=gen)
    for offset in (0.0, 5.0):
        _, en = dirichlet_energy(h + offset, idx)
        assert en == pytest.approx(1.0, abs=0.05)
    # Neighbours that share their embedding: the ratio falls with the graph.
    smooth = h.clone()
    smooth[0, 1::2] = smooth[0, 0::2]
    pairs = torch.arange(n).view(n, 1) ^ 1   # each node's twin
    assert dirichlet_energy(smooth + 5.0, pairs)[1] == pytest.approx(0.0, abs=1e-6)


def test_fit_save_load_round_trip(tmp_path, fine_model: xmsgl.Downscaler, basin: xr.Dataset) -> None:
    hp = fine_model.config["hyperparameters"]
    assert hp["backbone"] == "dmsge" and hp["backbone_options"]["k"] == 3
    pred = basin.msgl.downscale(fine_model)
    assert np.isfinite(pred.values).all()
    fine_model.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["hyperparameters"]["backbone_options"]["layers"] == 2
    loaded = xmsgl.load(tmp_path / "m")
    assert isinstance(loaded, xmsgl.Downscaler) and loaded.net.dmsge is not None
    xr.testing.assert_allclose(basin.msgl.downscale(loaded), pred)


def test_msgl_trains_with_the_backbone_and_cell_configs_are_unchanged(basin: xr.Dataset) -> None:
    model = basin.msgl.fit(method="msgl", epochs=1, hidden=8, window=60, stride=60, progress=False,
                           backbone="dmsge", backbone_options=OPTS)
    assert np.isfinite(model.history["main"]["loss"]).all()
    assert np.isfinite(basin.msgl.downscale(model, scale="seg").values).all()
    cell = MSGLNet(2, 1, 1, hidden=4)
    assert cell.dmsge is None and cell.backbone == "rgrn"


def test_fit_refuses_bad_backbone_arguments(basin: xr.Dataset) -> None:
    with pytest.raises(ParameterError, match="backbone='gcn' is not known"):
        basin.msgl.fit(method="fine-only", epochs=1, progress=False, backbone="gcn")
    with pytest.raises(ParameterError, match="options of backbone='dmsge'"):
        basin.msgl.fit(method="fine-only", epochs=1, progress=False, backbone_options={"k": 3})


def test_dataset_without_coordinates_falls_back_or_raises(basin: xr.Dataset) -> None:
    no_xy = basin.drop_vars(["reach_x", "reach_y"])
    model = no_xy.msgl.fit(method="fine-only", epochs=1, hidden=8, window=60, stride=60,
                           progress=False, backbone="dmsge", backbone_options=OPTS)
    assert model.net.dmsge.geometry("reach").source == "outlet-distance"
    with pytest.raises(SchemaError, match="reach_x and reach_y"):
        no_xy.msgl.fit(method="fine-only", epochs=1, progress=False, backbone="dmsge",
                       backbone_options={**OPTS, "coords": "xy"})


def test_a_model_reads_the_positions_it_was_fitted_with(tmp_path, fine_model: xmsgl.Downscaler,
                                                       basin: xr.Dataset) -> None:
    """Without the training data's x/y, coords='auto' would fall back to other positions and
    change every neighbourhood: the model refuses, saved and loaded too, lazily too."""
    assert fine_model.config["hyperparameters"]["backbone_positions"] == {"reach": "xy"}
    no_xy = basin.drop_vars(["reach_x", "reach_y"])
    with pytest.raises(ModelMismatchError, match=r"positions from \['reach_x', 'reach_y'\]"):
        no_xy.msgl.downscale(fine_model)
    fine_model.save(tmp_path / "m")
    loaded = xmsgl.load(tmp_path / "m")
    with pytest.raises(ModelMismatchError, match="reach_x"):
        no_xy.msgl.downscale(loaded)
    with pytest.raises(ModelMismatchError, match="reach_x"):
        no_xy.chunk({"reach": 40}).msgl.downscale(loaded, lazy=True)
    with pytest.raises(ModelMismatchError, match="reach_x"):
        loaded.explain(no_xy)
    # A position missing at some reaches: the fix offered was to drop x/y or pass
    # coords=, which this model refuses (above) and downscale does not take.
    holed = basin.copy()
    holed["reach_x"] = basin["reach_x"].where(basin["reach"] != basin["reach"][3])
    with pytest.raises(SchemaError, match=r"'reach_x' is missing \(NaN or infinite\) at reach ids "
                                          r"\[\d+\]; fill them: the model was fitted on positions "
                                          r"from \['reach_x', 'reach_y'\] and reads no other"):
        holed.msgl.downscale(loaded)
    with pytest.raises(SchemaError, match="drop the variables"):  # fitting: both ways open
        holed.msgl.fit(method="fine-only", epochs=1, progress=False, backbone="dmsge",
                       backbone_options=OPTS)
    # A model fitted on the fallback keeps it where x/y exist.
    fallback = no_xy.msgl.fit(method="fine-only", epochs=1, hidden=8, window=60, stride=60,
                              progress=False, backbone="dmsge", backbone_options=OPTS)
    assert fallback.config["hyperparameters"]["backbone_positions"] == {"reach": "outlet-distance"}
    xr.testing.assert_identical(basin.msgl.downscale(fallback).drop_attrs(),
                                no_xy.msgl.downscale(fallback).drop_attrs())


def test_explain_takes_a_saved_folder_and_records_its_call(tmp_path, fine_model: xmsgl.Downscaler,
                                                           basin: xr.Dataset) -> None:
    from xmsgl.explain import explain

    fine_model.save(tmp_path / "m")
    ex = explain(str(tmp_path / "m"), basin, time=("2001-02-01", "2001-04-30"))
    xr.testing.assert_identical(ex.drop_attrs(), fine_model.explain(
        basin, time=("2001-02-01", "2001-04-30")).drop_attrs())
    assert f"xmsgl {xmsgl.__version__} explain(time='2001-02-01/2001-04-30', n_bins=8" in \
        ex.attrs["history"]
    assert "(xy)" in ex.win_distance.attrs["long_name"]


def test_projected_positions_in_km_are_converted_and_other_units_refused(
        fine_model: xmsgl.Downscaler, basin: xr.Dataset) -> None:
    km = basin.assign(**{v: (basin[v] / 1000).assign_attrs(units="km") for v in ("reach_x", "reach_y")})
    xr.testing.assert_allclose(km.msgl.downscale(fine_model), basin.msgl.downscale(fine_model),
                               atol=1e-4)
    np.testing.assert_allclose(node_geometry(km, "reach").pos, node_geometry(basin, "reach").pos)
    deg = basin.assign(reach_x=basin.reach_x.assign_attrs(units="degrees_east"))
    with pytest.raises(UnitsError, match="'reach_x' has units 'degrees_east'.*reach_lon"):
        node_geometry(deg, "reach")


def test_explain_leaves_the_spin_up_days_out(fine_model: xmsgl.Downscaler, basin: xr.Dataset) -> None:
    # The backbone is causal, so a run's first days are the same whatever follows them;
    # the statistics of the whole record (120 days) are then the day-weighted means of
    # those of January-February (59) and of March-April (61), the latter explained after
    # January-February's spin-up, only if its spin-up days are left out of them.
    whole = fine_model.explain(basin)
    head = fine_model.explain(basin, time=("2001-01-01", "2001-02-28"))
    tail = fine_model.explain(basin, time=("2001-03-01", "2001-04-30"))
    assert (whole.attrs["spinup_days"], head.attrs["spinup_days"], tail.attrs["spinup_days"]) == (0, 0, 59)
    assert "spinup=180" in tail.attrs["history"]
    for name in ("dirichlet_energy", "dirichlet_energy_concat", "share_upstream", "share_downstream",
                 "share_other", "share_self", "share_parent_segment", "win_distance"):
        np.testing.assert_allclose(np.nan_to_num(whole[name].values) * 120,
                                   np.nan_to_num(head[name].values) * 59 + np.nan_to_num(tail[name].values) * 61,
                                   rtol=1e-4, atol=1e-5, err_msg=name)
    # Without the spin-up the period starts from fresh states, and its statistics move.
    cold = fine_model.explain(basin, time=("2001-03-01", "2001-04-30"), spinup=0)
    assert cold.attrs["spinup_days"] == 0
    assert not np.allclose(cold["dirichlet_energy"].values, tail["dirichlet_energy"].values, rtol=1e-3)
    # The warm-up stops at the record's start and at a gap.
    assert fine_model.explain(basin, time=("2001-01-20", "2001-02-28")).attrs["spinup_days"] == 19
    gapped = basin.drop_sel(time=np.datetime64("2001-02-10"))
    assert fine_model.explain(gapped, time=("2001-03-01", "2001-04-30"), spinup=30).attrs["spinup_days"] == 18
    # A gap inside the days explained is said, as downscale says it; n_days counts them.
    with pytest.warns(xmsgl.TimeGapWarning, match=r"1 gap in the days explained, the first between "
                                                  r"2001-02-09 and 2001-02-11 \(1 day missing\)"):
        inside = fine_model.explain(gapped, time=("2001-02-01", "2001-02-28"))
    assert inside.attrs["n_days"] == 27 and head.attrs["n_days"] == 59
    assert fine_model.explain(basin, time=("2001-03-01", "2001-04-30"), spinup=5).attrs["spinup_days"] == 5
    with pytest.raises(xmsgl.ParameterError, match="spinup"):
        fine_model.explain(basin, spinup=-1)


def test_explain_returns_shares_energies_and_plots(fine_model: xmsgl.Downscaler,
                                                   basin: xr.Dataset) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from xmsgl.explain import plot_energy, plot_explain

    ex = fine_model.explain(basin, time=("2001-02-01", "2001-03-31"))
    assert ex.sizes["layer"] == 2 and ex.sizes["depth"] == 3
    total = sum(ex[f"share_{c}"] for c in ("upstream", "downstream", "other", "self"))
    np.testing.assert_allclose(total.values, 1.0, atol=1e-5)
    assert (ex["share_parent_segment"] <= 1 + 1e-6).all()
    np.testing.assert_allclose(ex["win_distance_hist"].sum("distance_bin").values, 1.0, atol=1e-5)
    assert (ex["dirichlet_energy"] >= 0).all()
    # The self share comes only from the padding of the hydrologic graph.
    assert float(ex["share_self"].sel(graph="geo").max()) == 0.0
    assert set(ex["top_neighbour"].values.ravel()) <= set(basin["reach"].values.tolist())
    assert plot_explain(ex, basin).axes
    assert plot_energy({"a": ex}).axes


def test_moving_the_model_drops_its_device_caches_and_explain_moves_it_back(
        fine_model: xmsgl.Downscaler, basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model put back on the CPU holds no copy on another device (the geometry's
    per-device copies and the last river graph were not parameters, so .to('cpu') left
    them on the GPU); explain() moves the model back to the CPU, as downscale does
    ("meta" stands in for a GPU here)."""
    import copy

    model = copy.deepcopy(fine_model)  # a fitted model holding its last graph copies too
    bb = model.net.dmsge
    basin.msgl.downscale(model)
    assert bb._hydro == {}  # downscale puts the model back on the CPU, caches dropped
    state = bb._scales["reach"]
    state.to(torch.device("meta"))
    bb._hydro["reach"] = ("a graph", torch.zeros(1), torch.zeros(1))
    assert "meta" in state.on_device
    model.net.to("cpu")
    assert state.on_device == {} and bb._hydro == {}
    moves: list[str] = []
    real_to = torch.nn.Module.to

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self is model.net:
            moves.append(str(args[0] if args else kwargs.get("device")))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    model.explain(basin, time=("2001-02-01", "2001-02-28"), device="cpu")
    assert moves[-1] == "cpu" and len(moves) >= 2


def test_explain_needs_the_dmsge_backbone(basin: xr.Dataset) -> None:
    model = basin.msgl.fit(method="fine-only", epochs=1, hidden=4, window=60, stride=60,
                           progress=False)
    with pytest.raises(ParameterError, match="backbone='dmsge'"):
        model.explain(basin)


@pytest.mark.parametrize("options", [
    {"k": 4, "layers": 1, "graphs": ["hydro"]},           # equal river weights at a junction
    {"k": 3, "coords": "outlet-distance", "layers": 1},   # co-located nodes, small trees
])
def test_predictions_do_not_depend_on_the_order_of_the_rows(options) -> None:
    # Ties were broken by row position: shuffling the dataset changed the chosen
    # neighbours and the predictions by up to 3.6 degC.
    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=6, start="2012-10-01", end="2015-09-30", n_outlets=3,
                                        reach_obs_share=0.3)
    model = xmsgl.fit(ds, method="msgl", epochs=1, progress=False, hidden=4, window=120, stride=120,
                      backbone="dmsge", backbone_options=options)
    rng = np.random.default_rng(0)
    shuffled = ds.isel(seg=rng.permutation(ds.sizes["seg"]), reach=rng.permutation(ds.sizes["reach"]))
    a = ds.msgl.downscale(model)
    b = shuffled.msgl.downscale(model).sel(reach=a.reach)
    assert float(np.abs(a - b).max()) < 1e-5


def test_backbone_options_must_be_a_dict_of_sane_sizes() -> None:
    from xmsgl.nn.dmsge import backbone_options

    with pytest.raises(ParameterError, match="must be a dict"):
        backbone_options([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="layers'\\]=1000000 is more than 64"):
        backbone_options({"layers": 10**6})
    # Names of mixed types are named too (sorting them raised a TypeError).
    with pytest.raises(ParameterError, match=r"backbone_options \['x', 1\] are not known"):
        backbone_options({1: 2, "x": 1})  # type: ignore[dict-item]


@pytest.mark.parametrize("options", [0, "", [], {"k": 4}])
def test_options_of_the_dmsge_backbone_are_refused_for_the_rgrn(options) -> None:
    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-03-31", seed=1)
    with pytest.raises(ParameterError, match="backbone_options are options of backbone='dmsge'"):
        xmsgl.fit(ds, "fine-only", backbone="rgrn", backbone_options=options, epochs=1, progress=False)


def test_sub_network_keeps_the_training_length_scale_and_k_needs_candidates_only_when_dynamic(
        tmp_path) -> None:
    # Edge features are in units of the training network's median nearest-node
    # distance; a drainage basin downscaled alone recomputed it from its own nodes
    # (0.14 degC apart here). k above candidates is refused only where the dynamic
    # search reads the candidates.
    from xmsgl.graph import build_graphs

    two = xmsgl.datasets.synthetic_basin(n_segments=8, n_outlets=2, start="2001-01-01",
                                         end="2001-04-30", seed=5, reach_obs_share=0.3)
    opts = {"k": 6, "candidates": 4, "layers": 1, "graphs": ["hydro"]}
    model = two.msgl.fit(method="msgl", epochs=1, hidden=4, window=60, stride=60, progress=False,
                         backbone="dmsge", backbone_options=opts)
    scales = model.config["hyperparameters"]["backbone_length_scales"]
    assert set(scales) == {"seg", "reach"} and all(v > 0 for v in scales.values())
    loaded = xmsgl.load(model.save(tmp_path / "m"))
    assert loaded.net.dmsge.length_scales == scales
    g = build_graphs(two)
    first = g.component_seg == g.component_seg[0]
    one = two.isel(seg=np.flatnonzero(first),
                   reach=np.flatnonzero(np.isin(two.reach_seg.values, two.seg.values[first])))
    whole = two.msgl.downscale(loaded).sel(reach=one.reach)
    alone = one.msgl.downscale(loaded, check_graph=False)
    np.testing.assert_allclose(alone.values, whole.values, atol=1e-5)
    with pytest.raises(ParameterError, match="larger than backbone_options\\['candidates'\\]"):
        two.msgl.fit(method="msgl", epochs=1, hidden=4, window=60, stride=60, progress=False,
                     backbone="dmsge", backbone_options={**opts, "graphs": ["hydro", "dynamic"]})


def test_plot_explain_refuses_a_graph_the_model_does_not_use(basin: xr.Dataset) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from xmsgl.explain import plot_explain

    static = basin.msgl.fit(method="fine-only", epochs=1, hidden=4, window=60, stride=60,
                            progress=False, backbone="dmsge",
                            backbone_options={**OPTS, "graphs": ["hydro", "geo"]})
    ex = static.explain(basin, time=("2001-02-01", "2001-03-31"))
    assert (ex["top_neighbour"].sel(graph="dynamic") == -1).all()
    with pytest.raises(ParameterError, match="not a neighbourhood of the explained model"):
        plot_explain(ex, basin, graph="dynamic")
    # By default the last graph the model uses.
    assert plot_explain(ex, basin).axes[0].get_title() == plot_explain(ex, basin, graph="geo").axes[0].get_title()


def test_explain_refuses_a_baseline_with_a_typed_error(basin: xr.Dataset) -> None:
    from xmsgl.explain import explain

    model = xmsgl.fit(basin, "climatology")
    with pytest.raises(ParameterError, match="has no graph network to explain"):
        explain(model, basin)
    # The per-reach GRU has a network, but no graph: not told to refit with a backbone.
    gru = xmsgl.fit(basin, "gru", epochs=1, window=30, stride=30, progress=False)
    with pytest.raises(ParameterError, match=r"GRUModel \(method 'gru'\) has no graph network to explain"):
        explain(gru, basin)
    # What is no model at all is named as such (it read "NoneType (method '?') has no graph network").
    with pytest.raises(ParameterError, match=r"\(an xmsgl.Downscaler, or the folder it was saved to\), "
                                             r"got NoneType$"):
        explain(None, basin)  # type: ignore[arg-type]


def test_top_neighbour_sums_a_node_over_the_blocks() -> None:
    # explain's top neighbour of the dynamic graph: the node whose wins, summed over
    # the blocks, are largest (on a tie the one of the smaller id, whatever the rows'
    # order: the smaller row position had been taken, so a permuted dataset could
    # name another neighbour).
    from xmsgl.explain import _top_neighbour

    rows = np.array([0, 0, 0, 1, 1, 2])
    cols = np.array([2, 1, 2, 0, 2, 1])
    w = np.array([0.2, 0.3, 0.25, 0.5, 0.5, 1.0])
    top, share = _top_neighbour(rows, cols, w, 3, np.array([10, 11, 12]), 20)
    assert top.tolist() == [2, 0, 1]
    np.testing.assert_allclose(share, [0.45, 0.5, 1.0])
    # Row 1 ties between positions 0 and 2: the smaller id wins, not the smaller position.
    top, _ = _top_neighbour(rows, cols, w, 3, np.array([12, 11, 10]), 20)
    assert top.tolist() == [2, 2, 1]


def test_top_neighbour_ties_are_ties_of_win_counts() -> None:
    # Wins are kept as float32 shares count / (days x H) of each block, weighed by the
    # block's days: two neighbours with 23 wins each summed to totals 1e-9 apart, and
    # the rounding, not the smaller id, chose.
    from xmsgl.explain import _top_neighbour

    hidden, n_days, blocks = 6, 184, [(0, 13), (13, 33), (33, 53)]
    counts = {1: [0, 0, 23], 2: [13, 10, 0]}  # position 1 is id 11, position 2 id 33
    rows, cols, w = [], [], []
    for b, (t0, t1) in enumerate(blocks):
        for col, c in counts.items():
            share32 = np.float32(c[b]) / np.float32((t1 - t0) * hidden)
            rows.append(0)
            cols.append(col)
            w.append(float(share32) * (t1 - t0) / n_days)
    ids = np.array([100, 11, 33])
    totals = [sum(x for x, c in zip(w, cols) if c == k) for k in (1, 2)]
    assert totals[0] != totals[1]  # what rounding leaves
    top, share = _top_neighbour(np.array(rows), np.array(cols), np.array(w), 3, ids, n_days * hidden)
    assert ids[top[0]] == 11 and share[0] == pytest.approx(23 / (n_days * hidden), rel=1e-6)
    # Either order of the ids: the smaller one.
    top, _ = _top_neighbour(np.array(rows), np.array(cols), np.array(w), 3, np.array([100, 33, 11]),
                            n_days * hidden)
    assert top[0] == 2


def test_the_winners_of_mean_messages_are_those_of_the_stacked_messages() -> None:
    # With reduce="mean" the recorded winner is the neighbour whose message is largest
    # (the first on a tie), found one neighbour at a time instead of stacking all k.
    from xmsgl.nn.dmsge import EdgeLayer

    torch.manual_seed(0)
    b, n, t, hd, k = 2, 7, 5, 3, 4
    layer = EdgeLayer(hd, n_graphs=1)
    h = torch.randn(b, n, t, hd)
    h[:, :, 0] = 0.0  # ties on the first day: the first neighbour wins them
    idx = torch.randint(0, n, (b, n, k))
    feats = torch.zeros(b, n, k, 3)
    wins: list[torch.Tensor] = []
    with torch.no_grad():
        layer(h, [(idx, feats)], mean=True, wins=wins)
        nb = layer.node(h).split(hd, dim=-1)[1].reshape(b * n, t, hd)
        rows = (idx + (torch.arange(b) * n).view(b, 1, 1)).reshape(b * n, k)
        e = (feats @ layer.edge.weight.t()).expand(b, n, k, hd)
        z = torch.stack([nb.index_select(0, rows[:, j]).view(b, n, t, hd) + e[:, :, j].unsqueeze(2)
                         for j in range(k)])
        ref = torch.zeros(b, n, k)
        ref.scatter_add_(2, z.argmax(dim=0).reshape(b, n, -1), torch.ones(b, n, t * hd))
    torch.testing.assert_close(wins[0], ref / (t * hd))


def test_a_window_of_no_day_gives_no_state(tiny_basin: xr.Dataset) -> None:
    # As the recurrent cell: (0, N, B, H), not an IndexError from the encoder.
    net, adj = _backbone(tiny_basin)
    n = tiny_basin.sizes["reach"]
    out = net(torch.randn(0, n, 2, 3), adj, "reach", day0=[0, 5])
    assert tuple(out.shape) == (0, n, 2, 6)


def test_a_model_saved_before_positions_were_kept_reads_x_y_as_it_did(
        tmp_path, fine_model: xmsgl.Downscaler, basin: xr.Dataset) -> None:
    """Such a model read x/y as metres whatever their units, and took its length scale
    so: reading km now would move its predictions by degrees."""
    folder = fine_model.save(tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["hyperparameters"]["backbone_positions"]
    (folder / "config.json").write_text(json.dumps(as_saved_before_digests(cfg)))
    old = xmsgl.load(folder)
    km = basin.assign(**{v: (basin[v] / 1000).assign_attrs(units="km") for v in ("reach_x", "reach_y")})
    old.explain(km, time=("2001-02-01", "2001-04-30"))  # sets the geometry of km
    np.testing.assert_allclose(old.net.dmsge.geometry("reach").pos,
                               np.stack([km.reach_x.values, km.reach_y.values], axis=1))
    fine_model.explain(km, time=("2001-02-01", "2001-04-30"))
    np.testing.assert_allclose(fine_model.net.dmsge.geometry("reach").pos,
                               np.stack([basin.reach_x.values, basin.reach_y.values], axis=1))


def test_a_model_saved_before_positions_were_kept_warns_on_longitudes_across_the_meridian(
        tmp_path, basin: xr.Dataset) -> None:
    """Such a model may have been fitted when longitudes across the 180th meridian were
    read as a network torn 360 degrees apart, or after: its folder cannot say which."""
    def lonlat(ds: xr.Dataset, lon0: float) -> xr.Dataset:
        out = ds.drop_vars(["reach_x", "reach_y", "seg_x", "seg_y"], errors="ignore")
        x = ds.reach_x.values - ds.reach_x.values.mean()
        lon = lon0 + x / 80_000.0  # about 1/80 degree a km at 41 N
        lon = (lon + 180.0) % 360.0 - 180.0
        return out.assign(reach_lon=("reach", lon, {"units": "degrees_east"}),
                          reach_lat=("reach", 41.0 + ds.reach_y.values / 111_000.0,
                                     {"units": "degrees_north"}))

    whole = lonlat(basin, -75.0)
    torn = lonlat(basin, 180.0)  # the same network across the meridian
    assert np.ptp(torn.reach_lon.values) > 180
    model = whole.msgl.fit(method="fine-only", epochs=1, hidden=8, window=60, stride=60,
                           progress=False, backbone="dmsge", backbone_options=OPTS)
    folder = model.save(tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["hyperparameters"].pop("backbone_positions") == {"reach": "lonlat"}
    (folder / "config.json").write_text(json.dumps(as_saved_before_digests(cfg)))
    old = xmsgl.load(folder)
    with pytest.warns(xmsgl.XmsglWarning, match=r"reach_lon spans 3\d\d\.\d degrees as given.*refit it"):
        torn.msgl.downscale(old)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", xmsgl.ColdStartWarning)  # short records: said apart
        warnings.simplefilter("ignore", xmsgl.InputRangeWarning)  # a fit on winter, run on spring
        whole.msgl.downscale(old)  # a network that no projection tore
        torn.msgl.downscale(model)  # the kind of its positions kept: read as whole


@pytest.mark.parametrize("n_days, day0", [(365, [10957, 11139, 11321]), (45, [3, 17]), (7, [5])])
def test_calendar_blocks_as_one_batch_give_the_pieces_states_and_gradients(
        basin: xr.Dataset, monkeypatch, n_days: int, day0: list[int]) -> None:
    # On a GPU the layers run every window's calendar blocks as one batch; the
    # windows cut into pieces (the CPU's way) must give the same states.
    torch.manual_seed(0)
    net, adj = _backbone(basin, dynamic_days=20, graphs=("hydro", "geo", "dynamic"))
    x = torch.randn(n_days, basin.sizes["reach"], len(day0), 3)

    def run(devices: tuple[str, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        monkeypatch.setattr(DMSGEBackbone, "blocks_on", devices)
        net.zero_grad()
        xi = x.clone().requires_grad_(True)
        out = net(xi, adj, "reach", day0=day0)
        (out.square().mean() + out.sum()).backward()
        return out.detach(), [xi.grad, *(p.grad.clone() for p in net.parameters() if p.grad is not None)]

    pieces, grads_p = run(())
    blocks, grads_b = run(("cpu",))
    torch.testing.assert_close(blocks, pieces, rtol=0, atol=0)
    assert len(grads_b) == len(grads_p) > 3
    for a, b in zip(grads_b, grads_p):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_runs_of_one_dmsge_model_in_threads_read_their_own_geometry(basin: xr.Dataset,
                                                                      fine_model: xmsgl.Downscaler) -> None:
    # A run sets the dataset's node geometry on the shared backbone: two threads
    # downscaling one model at once on differently placed nodes read each other's (9
    # of 16 calls were silently off by up to 3.5 degC, on two networks 15 failed).
    from concurrent.futures import ThreadPoolExecutor

    from xmsgl.explain import explain

    rng = np.random.default_rng(0)
    moved = basin.copy()
    for name in ("reach_x", "reach_y", "seg_x", "seg_y"):
        if name in moved:
            moved[name] = moved[name].copy(data=rng.permutation(moved[name].values))
    datasets = [basin, moved]
    ref = [ds.msgl.downscale(fine_model).values for ds in datasets]
    assert not np.array_equal(ref[0], ref[1])  # the geometry changes the prediction
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda i: (i % 2, datasets[i % 2].msgl.downscale(fine_model).values), range(12)))
    for i, values in runs:
        np.testing.assert_array_equal(values, ref[i])
    # explain keeps a record on the backbone: alongside other explains and downscales.
    alone = explain(fine_model, basin)
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(explain, fine_model, basin) if i % 2 == 0 else
                pool.submit(lambda: moved.msgl.downscale(fine_model).values) for i in range(8)]
        done = [j.result() for j in jobs]
    for i, res in enumerate(done):
        if i % 2 == 0:
            xr.testing.assert_equal(res.drop_attrs(), alone.drop_attrs())
        else:
            np.testing.assert_array_equal(res, ref[1])


def test_a_translated_network_gives_the_same_states() -> None:
    # Only differences of positions enter the messages; absolute x/y held in float32
    # (a northing of 4.55e6 m) rounded them, and states moved by 2.4e-4 under a shift.
    import copy

    from xmsgl.graph import build_graphs

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2001-01-01", end="2001-04-30",
                                        reach_obs_share=0.3)
    geom = node_geometry(ds, "reach")
    assert np.abs(geom.pos).max() > 4e6
    torch.manual_seed(0)
    net = DMSGEBackbone(n_inputs=3, hidden=5, layers=2, k=3, dynamic_days=7)
    graph = SparseGraph(build_graphs(ds).fine)
    x = torch.randn(40, geom.n, 1, 3)
    with torch.no_grad():
        net.set_geometry("reach", geom)
        before = net(x, graph, "reach", day0=[11323])
        for shift in ([-5e5, -4.55e6], [0.0, 5e6]):
            moved = copy.copy(geom)
            moved.pos = geom.pos + np.array(shift)
            net.set_geometry("reach", moved)
            torch.testing.assert_close(net(x, graph, "reach", day0=[11323]), before, rtol=0, atol=1e-6)
