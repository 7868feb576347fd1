"""Lazy downscaling of models with the dmsge backbone: the blocks see the whole network's geometry."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xmsgl

torch = pytest.importorskip("torch")
dask = pytest.importorskip("dask")

#: Pieces as the blocks ask, though a default halo covers these small basins whole.
pytestmark = pytest.mark.usefixtures("split_as_asked")

from tests.conftest import SCALE_FIT, SCALE_RUN  # noqa: E402
from xmsgl.exceptions import ParameterError  # noqa: E402
from xmsgl.model import Downscaler, fit  # noqa: E402
from xmsgl.scale import BlockDependenceError, halo_for_options  # noqa: E402

FAST = {**SCALE_FIT, "hidden": 8, "seed": 0}
RUN = SCALE_RUN
OPTS = {"layers": 2, "k": 3}
HYDRO = {**OPTS, "graphs": ["hydro"]}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> object:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def basin() -> xr.Dataset:
    # Three drainage components, 167 reaches; reach_x/reach_y and seg_x/seg_y present.
    return xmsgl.datasets.synthetic_basin(n_segments=24, start="2001-01-01", end="2001-10-27",
                                          seed=3, reach_obs_share=0.3, n_outlets=3)


def _lazy(ds: xr.Dataset, model: Downscaler, **kw: object) -> xr.DataArray:
    out = ds.chunk({"reach": 40, "seg": 10, "time": 120}).msgl.downscale(model, **RUN, **kw)
    assert out.chunks is not None
    return out.compute()


def _max_diff(a: xr.DataArray, b: xr.DataArray) -> float:
    return float(abs(a - b).max())


@pytest.mark.parametrize("coords", ["auto", "xy"])
def test_one_block_reproduces_the_in_memory_run(basin: xr.Dataset, coords: str) -> None:
    # The blocks used to lose reach_x/reach_y: positions then fell back to outlet
    # distances (degrees of difference), and coords="xy" was refused.
    model = fit(basin, method="fine-only", backbone="dmsge",
                backbone_options={**OPTS, "coords": coords}, **FAST)
    ref = basin.msgl.downscale(model, **RUN)
    lazy = _lazy(basin, model)
    assert "1 blocks" in lazy.attrs["history"]
    assert _max_diff(ref, lazy) < 1e-5


def test_one_block_of_a_multiscale_model_and_the_fallback_positions(basin: xr.Dataset) -> None:
    no_xy = basin.drop_vars(["reach_x", "reach_y", "seg_x", "seg_y"])
    for ds in (basin, no_xy):
        model = fit(ds, method="msgl", backbone="dmsge", backbone_options=OPTS,
                    graph_options={"max_hops": 2}, **FAST)
        for scale in ("reach", "seg"):
            assert _max_diff(ds.msgl.downscale(model, scale=scale, **RUN),
                             _lazy(ds, model, scale=scale)) < 1e-5


def test_blocks_are_refused_when_neighbours_are_searched_over_the_network(
        basin: xr.Dataset) -> None:
    model = fit(basin, method="fine-only", backbone="dmsge", backbone_options=OPTS, **FAST)
    chunked = basin.chunk({"reach": 40})
    with pytest.raises(BlockDependenceError, match=r"\['geo', 'dynamic'\].*lazy=False.*"
                                                   r"reach_chunk=167") as err:
        chunked.msgl.downscale(model, reach_chunk=40, **RUN)
    assert isinstance(err.value, ParameterError)
    # One block, or the in-memory path, is exact.
    ref = basin.msgl.downscale(model, **RUN)
    assert _max_diff(ref, chunked.msgl.downscale(model, reach_chunk=167, **RUN).compute()) < 1e-5
    assert _max_diff(ref, chunked.msgl.downscale(model, lazy=False, **RUN)) < 1e-5


def test_missing_coordinates_are_named_when_the_lazy_call_is_made(basin: xr.Dataset) -> None:
    model = fit(basin, method="fine-only", backbone="dmsge",
                backbone_options={**OPTS, "coords": "xy"}, **FAST)
    no_xy = basin.drop_vars(["reach_x", "reach_y"]).chunk({"reach": 40})
    with pytest.raises(xmsgl.exceptions.ModelMismatchError,
                       match=r"positions from \['reach_x', 'reach_y'\]"):
        no_xy.msgl.downscale(model, **RUN)


@pytest.mark.parametrize("method", ["fine-only", "msgl"])
def test_river_neighbours_only_are_exact_in_blocks_with_the_default_halo(
        basin: xr.Dataset, method: str) -> None:
    # A cut graph, so that components are split into pieces with halos; threads run
    # blocks side by side on one cached model.
    model = fit(basin, method=method, backbone="dmsge", backbone_options=HYDRO,
                graph_options={"max_hops": 1}, **FAST)
    ref = basin.msgl.downscale(model, **RUN)
    chunked = basin.chunk({"reach": 40, "seg": 10, "time": 120})
    with dask.config.set(scheduler="threads", num_workers=3):
        lazy = chunked.msgl.downscale(model, reach_chunk=30, **RUN)
        assert "halo=3," in lazy.attrs["history"]  # (layers + 1) x max_hops
        assert _max_diff(ref, lazy.compute()) < 1e-5
        if method == "msgl":
            # The halo is needed: without it the cut rows differ.
            cut = chunked.msgl.downscale(model, reach_chunk=30, halo=0, **RUN).compute()
            assert _max_diff(ref, cut) > 1e-3


def test_default_halo_of_the_backbone_covers_its_layers(basin: xr.Dataset) -> None:
    topo = xmsgl.convention.topology_arrays(basin)
    assert halo_for_options({"max_hops": 2}, topo, layers=3) == 8
    assert halo_for_options({"max_hops": 2}, topo) == 14  # the cell's measured margin
    assert halo_for_options({}, topo, layers=3) is None  # no cut: components stay whole
    down = halo_for_options({"max_hops": 2, "direction": "downstream"}, topo, layers=3)
    assert down == halo_for_options({"max_hops": 2, "direction": "downstream"}, topo)


def test_blocks_keep_the_networks_order_of_nodes() -> None:
    from xmsgl.scale import Block, _in_dataset_order

    blk = Block(seg=np.array([4, 7, 1]), n_core_seg=2, reach=np.array([9, 12, 3, 2]),
                n_core_reach=2)
    out, core_s, core_r = _in_dataset_order(blk)
    assert out.seg.tolist() == [1, 4, 7] and core_s.tolist() == [False, True, True]
    assert out.reach.tolist() == [2, 3, 9, 12] and core_r.tolist() == [False, False, True, True]
