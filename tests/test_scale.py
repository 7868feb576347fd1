"""Scale-out: hydrology-aligned blocks, lazy downscaling with dask, zarr regions, workers."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl

torch = pytest.importorskip("torch")
dask = pytest.importorskip("dask")

#: Pieces as the blocks ask, though a default halo covers these small basins whole.
pytestmark = pytest.mark.usefixtures("split_as_asked")

import dask.array as dsa  # noqa: E402

from tests.conftest import SCALE_FIT, SCALE_RUN  # noqa: E402
from xmsgl.exceptions import ModelMismatchError, ParameterError  # noqa: E402
from xmsgl.model import Downscaler, fit  # noqa: E402
from xmsgl.scale import (  # noqa: E402
    ChunkingError,
    _ChunkReads,
    _cluster_worker,
    _gather,
    _RecentChunks,
    cached_model,
    hydro_order,
    partition,
)

FAST = SCALE_FIT
RUN = SCALE_RUN


@pytest.fixture(scope="module")
def basin(scale_basin: xr.Dataset) -> xr.Dataset:
    return scale_basin


@pytest.fixture(scope="module")
def model(basin: xr.Dataset) -> Downscaler:
    # A distance-limited graph, as scale-out needs (the default halo follows max_hops).
    return fit(basin, method="msgl", seed=0, graph_options={"max_hops": 3}, **FAST)


@pytest.fixture(scope="module")
def reference(basin: xr.Dataset, model: Downscaler) -> xr.DataArray:
    return basin.msgl.downscale(model, **RUN)


def _chunked(ds: xr.Dataset) -> xr.Dataset:
    return ds.chunk({"reach": 40, "seg": 10, "time": 120})


# ------------------------------------------------------------------- partition


def test_weights_changed_in_place_are_what_the_lazy_path_runs(basin: xr.Dataset, model: Downscaler,
                                                              tmp_path, monkeypatch) -> None:
    """A model's sha256 follows its weights: edited in place after a lazy run, they are
    what the next lazy run (whose workers load a copy saved under the sha256) and the
    outputs' provenance name (the copy of the old weights ran, and the old sha256 was
    quoted, before)."""
    import copy

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the lazy path's saved copies go there
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    edited = copy.deepcopy(model)
    before = edited.sha256
    first = _chunked(basin).msgl.downscale(edited, **RUN).compute()
    with torch.no_grad():
        for p in edited.net.parameters():
            p.mul_(0.5)
    assert edited.sha256 != before
    lazy = _chunked(basin).msgl.downscale(edited, **RUN).compute()
    eager = basin.msgl.downscale(edited, **RUN)
    np.testing.assert_allclose(lazy.values, eager.values, atol=1e-5)
    assert float(abs(lazy - first).max()) > 0.01
    assert lazy.attrs["xmsgl_model_sha256"] == eager.attrs["xmsgl_model_sha256"] == edited.sha256
    # Saved and loaded, the sha256 is the file's, and unchanged by use.
    edited.save(tmp_path / "m")
    again = xmsgl.load(tmp_path / "m")
    assert again.sha256 == edited.sha256 and again.weights_sha256 == edited.weights_sha256
    # Edits torch does not count as in-place changes of the parameters: through
    # .data (a view of the same memory) and by replacing .data, as
    # torch.nn.utils.vector_to_parameters does. The lazy run used to load the copy
    # saved under the old sha256, the old weights.
    from torch.nn.utils import parameters_to_vector, vector_to_parameters

    for edit in (lambda: next(iter(edited.net.parameters())).data.add_(0.5),
                 lambda: vector_to_parameters(parameters_to_vector(edited.net.parameters()) * 1.05,
                                              edited.net.parameters())):
        before = edited.sha256
        edit()
        assert edited.sha256 != before
        lazy = _chunked(basin).msgl.downscale(edited, **RUN).compute()
        eager = basin.msgl.downscale(edited, **RUN)
        np.testing.assert_allclose(lazy.values, eager.values, atol=1e-5)
        assert lazy.attrs["xmsgl_model_sha256"] == edited.sha256


def test_block_options_are_counts_and_not_ignored(basin: xr.Dataset, model: Downscaler) -> None:
    """reach_chunk, time_block and halo are checked like every count (30.9, True, "30"
    used to be rounded or cast), and refused where the run is in memory and would ignore
    them; the public downscale_lazy refuses a scale it cannot run (a KeyError at compute,
    under the fine prediction's name, before)."""
    from xmsgl.scale import downscale_lazy

    lazy = _chunked(basin)
    for kw, match in (({"reach_chunk": 30.9}, "reach_chunk=30.9"), ({"time_block": "365"}, "time_block="),
                      ({"halo": True}, "halo=True"), ({"halo": -1}, "halo=-1 must be an integer of at least 0")):
        with pytest.raises(ParameterError, match=match):
            lazy.msgl.downscale(model, **RUN, **kw)
    for ds, kw, why in ((basin, {"reach_chunk": 30}, "not dask-backed"),
                        (lazy, {"lazy": False, "halo": 2}, "lazy=False was given")):
        with pytest.raises(ParameterError, match=rf"shape the lazy run's blocks.*{why}.*lazy=True"):
            ds.msgl.downscale(model, **RUN, **kw)
    # In memory with lazy=True, blocks are what was asked for.
    got = basin.msgl.downscale(model, lazy=True, reach_chunk=30, **RUN).compute()
    np.testing.assert_allclose(got.values, basin.msgl.downscale(model, **RUN).values, atol=1e-5)
    valid = xmsgl.validate(lazy)
    for scale in ("cross", "Reach"):
        with pytest.raises(ParameterError, match=f"scale={scale!r}: the lazy path runs"):
            downscale_lazy(valid, model, scale=scale)
    # A baseline (what xmsgl.load may give) gave an AttributeError ('features').
    from xmsgl.baselines import fit_baseline

    with pytest.raises(ParameterError, match="not baseline 'climatology'.*ds.msgl.downscale"):
        downscale_lazy(valid, fit_baseline(basin, "climatology"))  # type: ignore[arg-type]
    # A torch.device, as downscale takes, names the device of the blocks and the history.
    import torch

    pred = downscale_lazy(valid, model, device=torch.device("cpu"), **{k: v for k, v in RUN.items()
                                                                        if k != "device"})
    assert "device='cpu'" in pred.attrs["history"]


def test_the_device_option_goes_with_the_lazy_blocks(basin: xr.Dataset, model: Downscaler,
                                                     monkeypatch) -> None:
    """Blocks resolve their device when computed, perhaps after the set_options block
    ended: the device the option named at the call goes with them (they got "auto"
    while the history said the option's device)."""
    import xmsgl.scale as scale

    seen: list[str] = []
    real = scale._downscale_lazy

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(kwargs["device"])
        return real(*args, **kwargs)

    monkeypatch.setattr(scale, "_downscale_lazy", spy)
    run = {k: v for k, v in RUN.items() if k != "device"}
    with xmsgl.set_options(device="cpu"):
        pred = _chunked(basin).msgl.downscale(model, **run)
    assert seen == ["cpu"] and "device='cpu'" in pred.attrs["history"]
    pred.compute()


def test_partition_covers_each_node_once_with_whole_segments(basin: xr.Dataset) -> None:
    topo = xmsgl.convention.topology_arrays(basin)
    for reach_chunk, halo in ((10_000, 4), (30, 0), (30, 3)):
        p = partition(topo, reach_chunk=reach_chunk, halo=halo)
        core_r = np.sort(p.reach_order)
        core_s = np.sort(p.seg_order)
        assert np.array_equal(core_r, np.arange(topo.n_reach))
        assert np.array_equal(core_s, np.arange(topo.n_seg))
        for b in p.blocks:
            # Every reach stays with its segment, in the core and in the halo.
            assert set(topo.reach_seg_idx[b.reach[: b.n_core_reach]]) == set(b.seg[: b.n_core_seg])
            assert set(topo.reach_seg_idx[b.reach]) == set(b.seg)
    whole = partition(topo, reach_chunk=10_000)
    assert len(whole.blocks) == 1 and whole.n_split == 0 and whole.halo_share == 0
    assert whole.n_components == 3
    split = partition(topo, reach_chunk=30, halo=3)
    assert split.n_split >= 1 and len(split.blocks) > 3
    assert split.halo_share > 0
    assert partition(topo, reach_chunk=30, halo=0).halo_share == 0
    assert "blocks" in repr(split)


def test_partition_packs_small_components_together() -> None:
    ds = xmsgl.datasets.synthetic_basin(n_segments=60, start="2001-01-01", end="2001-01-05",
                                        n_outlets=20, seed=2)
    p = partition(ds, reach_chunk=150, halo=2)
    comp = xmsgl.graph.build_graphs(ds).component_seg
    sizes = [b.n_core_reach for b in p.blocks]
    assert len(p.blocks) < 20 and max(sizes) <= 150
    # Whole components are never cut when each fits a block.
    if p.n_split == 0:
        for b in p.blocks:
            core = b.seg[: b.n_core_seg]
            assert set(comp[core]) == set(comp[np.isin(comp, comp[core])])
    order = hydro_order(ds, reach_chunk=150)
    assert sorted(order["reach"].tolist()) == sorted(ds.reach.values.tolist())


def test_partition_rejects_bad_parameters(basin: xr.Dataset) -> None:
    with pytest.raises(ParameterError, match="reach_chunk"):
        partition(basin, reach_chunk=0)
    with pytest.raises(ParameterError, match="halo"):
        partition(basin, halo=-1)


@pytest.mark.parametrize("read_factor", [0.0, None, 100.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gather_matches_fancy_indexing(seed: int, read_factor: float | None) -> None:
    # Uneven input chunks, rows and columns in any order and with repeats, uneven
    # output chunks: each output chunk one task reading only the chunks it needs,
    # either as shared tasks (read_factor=0) or by running them itself.
    from dask.core import get_dependencies

    rng = np.random.default_rng(seed)
    values = rng.normal(size=(37, 23)).astype(np.float32)
    arr = dsa.from_array(values, chunks=((5, 12, 1, 19), (7, 7, 9)))
    rows = rng.integers(0, 37, size=41)
    cols = rng.permutation(23)[:17]
    out = _gather(arr, rows, (10, 1, 30), cols, (4, 13), read_factor=read_factor)
    assert out.chunks == ((10, 1, 30), (4, 13))
    np.testing.assert_array_equal(out.compute(scheduler="sync"), values[rows][:, cols])
    np.testing.assert_array_equal(out.compute(scheduler="threads"), values[rows][:, cols])
    flat = dsa.from_array(values[:, 0], chunks=((5, 12, 1, 19),))
    got = _gather(flat, rows, (20, 21), read_factor=read_factor)
    np.testing.assert_array_equal(got.compute(scheduler="sync"), values[rows, 0])
    # A chunk of the output reads the input chunks it needs and no others.
    one = _gather(arr, np.array([0, 4]), (2,), np.array([0, 1]), (2,), read_factor=read_factor)
    graph = dict(one.__dask_graph__())
    if read_factor == 0.0:
        assert get_dependencies(graph, (one.name, 0, 0)) == {(arr.name, 0, 0)}
    else:
        assert not any(isinstance(k, tuple) and k[0] == arr.name for k in graph)
        task = graph[(one.name, 0, 0)]
        args = task.args if hasattr(task, "args") else task[1:]
        reads = [a for a in args if isinstance(a, _ChunkReads)]
        assert reads[0].keys == [(arr.name, 0, 0)]


def test_gather_reads_chunks_in_its_tasks_only_when_few_share_them() -> None:
    # Deterministic chunk tasks (seeded random) read twice give the same values; an
    # input of one chunk that every output chunk needs stays one shared task.
    from dask.core import get_dependencies

    x = dsa.random.RandomState(0).normal(size=(40, 6), chunks=(10, 6)).astype(np.float32)
    values = x.compute()
    rows = np.arange(40)
    out = _gather(x, rows, (15, 15, 10), np.arange(6), (6,))
    graph = dict(out.__dask_graph__())
    assert all(not get_dependencies(graph, k) for k in graph)
    np.testing.assert_array_equal(out.compute(), values)
    one_chunk = dsa.from_array(values, chunks=-1)
    shared = _gather(one_chunk, rows, (10, 10, 10, 10), np.arange(6), (6,))
    graph = dict(shared.__dask_graph__())
    assert get_dependencies(graph, (shared.name, 2, 0)) == {(one_chunk.name, 0, 0)}
    np.testing.assert_array_equal(shared.compute(), values)


class _Store:
    """An array read at compute time, as a zarr store is (numpy input is copied into the graph)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values, self.shape, self.dtype, self.ndim = values, values.shape, values.dtype, values.ndim

    def __getitem__(self, index: object) -> np.ndarray:
        return self.values[index].copy()


def test_a_cluster_computes_the_same_result_again_from_its_store_as_it_is() -> None:
    # Worker processes kept chunks for readers that ran elsewhere (here: never, a
    # partial compute) and served them to the next compute of the same graph: after
    # the store was rewritten, the result mixed old chunks and new (by up to 0.47
    # degC at 430 of 495 reaches in a downscale on two worker processes).
    distributed = pytest.importorskip("distributed")
    values = np.arange(60 * 4, dtype=np.float32).reshape(60, 4)
    arr = dsa.from_array(_Store(values), chunks=((7, 13, 20, 20), (4,)))
    out = _gather(arr, np.arange(60), (10, 10, 10, 10, 10, 10), np.arange(4), (4,))
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None):
        np.testing.assert_array_equal(out.blocks[:3].compute(), values[:30])
        values += 1000.0  # the store rewritten in place
        np.testing.assert_array_equal(out.compute(), values)
    assert _cluster_worker() is None


def test_recent_chunks_keeps_a_chunk_for_its_other_readers_only() -> None:
    cache = _RecentChunks(max_bytes=1000)

    def read(key: object, readers: int, value: np.ndarray | None = None) -> np.ndarray:
        # What a reading task does: claim, read if nobody has, keep for the others.
        got, waits, mine = cache.claim("g", [key])
        assert not waits
        if mine:
            value = np.zeros(50, np.float32) if value is None else value  # 200 bytes
            cache.put("g", key, value, readers - 1)
            return value
        return got[key]

    a = read("a", readers=3)
    assert read("a", 3) is a and read("a", 3) is a  # its two other readers
    assert cache.nbytes == 0 and not cache.entries  # then dropped
    read("b", readers=1)  # no other reader: not kept
    assert not cache.entries
    # Another graph's chunk of the same key is not served.
    read("c", readers=2)
    assert cache.take("h", "c") == (False, None)
    assert cache.take("g", "c")[0] and not cache.entries
    # Within the bound, the least recently used go first; a chunk above it is not kept.
    for i in range(6):
        read(i, readers=2)
    assert cache.nbytes == 1000 and {k for _, k in cache.entries} == {1, 2, 3, 4, 5}
    read("big", readers=2, value=np.zeros(300, np.float32))
    assert cache.take("g", "big") == (False, None) and not cache.reading


def test_recent_chunks_a_reader_waits_for_a_chunk_being_read() -> None:
    import threading

    cache = _RecentChunks(max_bytes=10_000)
    got, waits, mine = cache.claim("g", ["a", "b"])
    assert mine == ["a", "b"] and not got and not waits
    _, waits, mine = cache.claim("g", ["a"])
    assert not mine and set(waits) == {"a"}
    event = waits["a"]
    seen: list[object] = []
    waiter = threading.Thread(target=lambda: (event.wait(), seen.append(cache.take("g", "a")[1])))
    waiter.start()
    value = np.ones(4, np.float32)
    cache.put("g", "a", value, readers=1)
    waiter.join(timeout=10)
    assert seen and seen[0] is value and not cache.entries
    # A failed read gives its claims up: the waiters find nothing and read themselves.
    _, waits, _ = cache.claim("g", ["b"])
    cache.abandon("g", ["b"])
    assert waits["b"].is_set() and cache.take("g", "b") == (False, None) and not cache.reading


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_gather_reads_each_input_chunk_once(scheduler: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Output chunks that straddle input chunks share the chunks on their edges: the
    # first reader keeps them for the others, so each is made once, and a second
    # compute of a new gather reads them again (nothing carried over between graphs).
    made: list[int] = []
    values = np.arange(40 * 6, dtype=np.float32).reshape(40, 6)

    def chunk(block_id: tuple[int, int] | None = None) -> np.ndarray:
        assert block_id is not None
        made.append(block_id[0])
        return values[block_id[0] * 10 : (block_id[0] + 1) * 10]

    arr = dsa.map_blocks(chunk, chunks=((10, 10, 10, 10), (6,)), dtype=np.float32)
    rows = np.arange(40)
    out = _gather(arr, rows, (15, 15, 10), np.arange(6), (6,))
    np.testing.assert_array_equal(out.compute(scheduler=scheduler), values)
    assert sorted(made) == [0, 1, 2, 3]
    made.clear()
    again = _gather(arr, rows, (15, 15, 10), np.arange(6), (6,))
    np.testing.assert_array_equal(again.compute(scheduler=scheduler), values)
    assert sorted(made) == [0, 1, 2, 3]
    # With nothing kept, the chunk on the edge of the first two pieces is read twice.
    made.clear()
    monkeypatch.setattr(xmsgl.scale, "RECENT_CHUNK_BYTES", 0)
    third = _gather(arr, rows, (15, 15, 10), np.arange(6), (6,))
    np.testing.assert_array_equal(third.compute(scheduler=scheduler), values)
    assert sorted(made) == [0, 1, 1, 2, 3]


def test_gather_a_failing_chunk_read_raises_and_hangs_nothing() -> None:
    import threading

    def chunk(block_id: tuple[int, int] | None = None) -> np.ndarray:
        assert block_id is not None
        if block_id[0] == 1:  # the chunk two output chunks share
            raise OSError("store unreachable")
        return np.zeros((10, 6), np.float32)

    arr = dsa.map_blocks(chunk, chunks=((10, 10, 10, 10), (6,)), dtype=np.float32)
    out = _gather(arr, np.arange(40), (15, 15, 10), np.arange(6), (6,))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.compute(scheduler="threads", num_workers=3)
        except BaseException as exc:  # noqa: BLE001 - what the compute raised
            errors.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "a reader waited for a chunk whose read had failed"
    assert len(errors) == 1 and "store unreachable" in str(errors[0])


def test_gather_from_a_zarr_store_reads_in_its_tasks(tmp_path) -> None:
    # A store opened lazily has one task that is not a chunk (the opened array);
    # each output task carries it along with its chunks' tasks, so that no task of
    # the input is shared between blocks.
    from dask.core import get_dependencies

    values = np.arange(40 * 6, dtype=np.float32).reshape(40, 6)
    xr.Dataset({"a": (("r", "t"), values)}).chunk({"r": 10}).to_zarr(tmp_path / "a.zarr")
    arr = xr.open_zarr(tmp_path / "a.zarr")["a"].data
    rows = np.arange(40)[::-1]
    out = _gather(arr, rows, (15, 15, 10), np.arange(6), (6,))
    graph = dict(out.__dask_graph__())
    assert set(graph) == {(out.name, i, 0) for i in range(3)}
    assert all(not get_dependencies(graph, k) for k in graph)
    np.testing.assert_array_equal(out.compute(scheduler="threads"), values[rows])


# ------------------------------------------------------------------- laziness


def _refuse(dsk: object, keys: object, **kwargs: object) -> None:
    raise AssertionError("something was computed during the call")


def test_lazy_downscale_computes_nothing(basin: xr.Dataset, model: Downscaler) -> None:
    ds = _chunked(basin)
    # One value per node (the topology) may be read; nothing on time may be.
    ds = ds.assign({k: v.load() for k, v in ds.data_vars.items() if "time" not in v.dims})

    def boom(x: np.ndarray) -> np.ndarray:
        raise AssertionError("a time cube was computed")

    # Cubes whose tasks raise: any compute of them fails the test.
    for name in ("reach_air_temp", "seg_air_temp"):
        data = ds[name].data
        ds[name] = (ds[name].dims, dsa.map_blocks(boom, data, dtype=data.dtype), ds[name].attrs)
    with dask.config.set(scheduler=_refuse):
        out = ds.msgl.downscale(model, **RUN, reach_chunk=30)
    assert out.chunks is not None and out.dims == ("reach", "time")
    assert out.sizes == {"reach": basin.sizes["reach"], "time": basin.sizes["time"]}
    assert "lazy" in out.attrs["history"]
    with pytest.raises(AssertionError, match="time cube"):
        out.compute()


def test_lazy_matches_in_memory(basin: xr.Dataset, model: Downscaler,
                                reference: xr.DataArray) -> None:
    ds = _chunked(basin)
    whole = ds.msgl.downscale(model, **RUN).compute()
    # Whole components and time blocks aligned with the windows: the same numbers.
    np.testing.assert_allclose(whole.values, reference.values, atol=1e-4)
    assert np.array_equal(whole.reach.values, reference.reach.values)
    assert whole.attrs["units"] == "degC"
    # Components split into pieces with the default halo: within 0.05 degC.
    split = ds.msgl.downscale(model, **RUN, reach_chunk=40, time_block=200).compute()
    assert float(np.abs(split - reference).max()) < 0.05
    # Without a halo the cut shows; the halo is what closes the gap.
    bare = ds.msgl.downscale(model, **RUN, reach_chunk=40, halo=0, time_block=200).compute()
    assert float(np.abs(bare - reference).max()) > float(np.abs(split - reference).max())


def test_a_look_ahead_ends_for_the_whole_network_as_in_memory(basin: xr.Dataset) -> None:
    # A residual fine head reads days ahead of the last one asked for. When one
    # drainage component's forcings end among those days, the look-ahead ends there
    # for every reach in memory; blocks used to judge only their own reaches, so the
    # other components changed with reach_chunk.
    from xmsgl.convention import topology_arrays

    residual = fit(basin, method="msgl", seed=0, graph_options={"max_hops": 3}, fine_head="residual",
                   attn_window=10, **FAST)
    assert residual.net.lookahead(residual.output) > 0
    first = partition(topology_arrays(basin), reach_chunk=40, halo=None).blocks[0].reach
    ds = basin.copy(deep=True)
    for name in residual.features.reach_vars:
        if "time" in ds[name].dims:
            ds[name][{"reach": first, "time": slice(250, None)}] = np.nan
    time = ("2001-01-01", str(ds.time.values[245])[:10])
    reference = ds.msgl.downscale(residual, time=time, **RUN)
    lazy = _chunked(ds)
    for reach_chunk in (1000, 40):
        got = lazy.msgl.downscale(residual, time=time, reach_chunk=reach_chunk, **RUN).compute()
        np.testing.assert_allclose(got.values, reference.values, atol=1e-4)


def test_lazy_follows_the_users_order_and_time_selection(basin: xr.Dataset, model: Downscaler,
                                                         reference: xr.DataArray) -> None:
    rng = np.random.default_rng(0)
    shuffled = basin.isel(reach=rng.permutation(basin.sizes["reach"]),
                          seg=rng.permutation(basin.sizes["seg"]))
    period = ("2001-05-01", "2001-08-31")
    out = _chunked(shuffled).msgl.downscale(model, **RUN, reach_chunk=30, time=period).compute()
    assert np.array_equal(out.reach.values, shuffled.reach.values)
    want = shuffled.msgl.downscale(model, **RUN, time=period)
    assert out.sizes["time"] == 123
    assert float(np.abs(out - want).max()) < 0.05


def test_lazy_restarts_after_a_gap_as_in_memory(basin: xr.Dataset, model: Downscaler,
                                                 tmp_path: Path) -> None:
    keep = np.ones(basin.sizes["time"], dtype=bool)
    keep[130:150] = False
    gappy = basin.isel(time=keep)
    with pytest.warns(xmsgl.TimeGapWarning):
        want = gappy.msgl.downscale(model, **RUN)
    with pytest.warns(xmsgl.TimeGapWarning):
        out = _chunked(gappy).msgl.downscale(model, **RUN, time_block=200)
    # Time blocks are cut at the gap and laid out from its first day, like the windows;
    # the result still has uniform time chunks, which zarr needs.
    assert out.chunks is not None and out.chunks[1] == (200, 80)
    out.to_dataset().to_zarr(tmp_path / "gappy.zarr", compute=False)
    np.testing.assert_allclose(out.compute().values, want.values, atol=1e-4)


def test_lazy_coarse_scale(basin: xr.Dataset, model: Downscaler) -> None:
    ref = basin.msgl.downscale(model, scale="seg", **RUN)
    out = _chunked(basin).msgl.downscale(model, scale="seg", **RUN, reach_chunk=30)
    assert out.chunks is not None and out.dims == ("seg", "time")
    assert float(np.abs(out.compute() - ref).max()) < 0.05
    # Coarse values are predicted, not downscaled; both paths say so alike.
    assert out.attrs["long_name"] == ref.attrs["long_name"]
    assert "coarse segments, predicted by xmsgl" in ref.attrs["long_name"]


def test_lazy_rejects_unworkable_chunks(basin: xr.Dataset, model: Downscaler,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import xmsgl.scale

    monkeypatch.setattr(xmsgl.scale, "MAX_INPUT_CHUNK_BYTES", 1000)
    with pytest.raises(ChunkingError, match=r"rechunk.*ds.chunk"):
        basin.chunk({"time": -1}).msgl.downscale(model, **RUN)
    monkeypatch.undo()
    with pytest.raises(ParameterError, match="multiple of chunk"):
        _chunked(basin).msgl.downscale(model, **RUN, time_block=150)


def test_lazy_graph_check_up_front(basin: xr.Dataset, model: Downscaler) -> None:
    other = basin.isel(reach=slice(0, None))
    other = other.assign(reach_length=other.reach_length * 2)
    with pytest.raises(ModelMismatchError, match="river graph"):
        _chunked(other).msgl.downscale(model, **RUN)
    # Applied to another network on purpose: lazy, no error.
    out = _chunked(other).msgl.downscale(model, **RUN, check_graph=False)
    assert out.chunks is not None


def test_lazy_degc_labelled_kelvin_fails_at_compute(basin: xr.Dataset, model: Downscaler) -> None:
    # Lazy values are not read to judge units; converted as labelled, degC values
    # labelled K become about -263 degC and used to give plausible-looking output.
    bad = basin.copy()
    bad["seg_air_temp"] = bad.seg_air_temp.assign_attrs(units="K")
    with pytest.warns(xmsgl.exceptions.UnitConversionWarning):
        out = _chunked(bad).msgl.downscale(model, **RUN)
    with pytest.raises(xmsgl.exceptions.UnitsError, match=r"input temperature 'seg_air_temp' spans -2"):
        out.compute()


# ------------------------------------------------------------------- output


def test_a_store_grown_along_time_as_the_docs_say(basin: xr.Dataset, model: Downscaler,
                                                 reference: xr.DataArray, tmp_path: Path) -> None:
    # docs/pangeo.md: each piece through daily_time_bounds and rechunked to the store's
    # time chunks, the first one included (its in-memory bounds would be one chunk).
    from xmsgl.convention import daily_time_bounds

    lazy, store = _chunked(basin), tmp_path / "grown.zarr"
    # 200 days, then 100: pieces on the run's windows of 100 days, each warmed up as
    # in a single run over all the days.
    pieces = [("2001-01-01", "2001-07-19"), ("2001-07-20", "2001-10-27")]
    for k, days in enumerate(pieces):
        piece = daily_time_bounds(lazy.msgl.downscale(model, time=days, **RUN).to_dataset())
        piece.chunk({"time": 100}).to_zarr(store, **({"mode": "w-"} if k == 0 else {"append_dim": "time"}))
    back = xr.open_zarr(store)
    assert back.sizes["time"] == 300 and back["time_bnds"].encoding["chunks"][0] == 100
    days = back["time"].values.astype("datetime64[D]")
    np.testing.assert_array_equal(back["time_bnds"].values[:, 0].astype("datetime64[D]"), days)
    np.testing.assert_array_equal(back["time"].values, basin["time"].values)
    np.testing.assert_allclose(back["reach_temp_pred"].values, reference.values, atol=1e-4)


def test_zarr_regions(basin: xr.Dataset, model: Downscaler, reference: xr.DataArray,
                      tmp_path: object) -> None:
    import pathlib

    store = pathlib.Path(str(tmp_path)) / "pred.zarr"
    out = _chunked(basin).msgl.downscale(model, **RUN, time_block=200)
    ds_out = out.to_dataset().chunk({"reach": 100, "time": 100})
    ds_out.to_zarr(store, compute=False, mode="w-", consolidated=False)  # metadata only
    n = ds_out.sizes["reach"]
    for a in range(0, n, 100):
        region = {"reach": slice(a, min(a + 100, n)), "time": slice(None)}
        ds_out.isel(reach=region["reach"]).drop_vars(
            [c for c in ds_out.coords if "time" in ds_out[c].dims and "reach" not in ds_out[c].dims]
        ).to_zarr(store, region=region, consolidated=False)
    back = xr.open_zarr(store, consolidated=False)["reach_temp_pred"].load()
    assert float(np.abs(back - reference).max()) < 0.05
    # The safe writers take the lazy result too, delayed included (its graph ends in a
    # rechunk, whose dependencies dask's bind lost: the delayed writes failed).
    path = xmsgl.io.to_zarr_safe(out.to_dataset(), pathlib.Path(str(tmp_path)) / "all.zarr",
                                 consolidated=False)
    assert xr.open_zarr(path, consolidated=False)["reach_temp_pred"].shape == reference.shape
    for writer, name in ((xmsgl.io.to_zarr_safe, "later.zarr"), (xmsgl.io.to_netcdf_safe, "later.nc")):
        later = writer(out, pathlib.Path(str(tmp_path)) / name, compute=False)
        path = later.compute()
        with xr.open_dataset(path, engine="zarr" if name.endswith(".zarr") else None) as back:
            assert float(np.abs(back["reach_temp_pred"] - reference).max()) < 0.05


def test_regions_with_a_chunked_reach_coordinate_and_a_scalar_one(
        basin: xr.Dataset, model: Downscaler, reference: xr.DataArray, tmp_path: Path) -> None:
    # A COMID-like coordinate stored in chunks of 9 reaches kept that encoding on the
    # output, and writing the output by regions of its own chunks failed ("would
    # overlap multiple Dask chunks"); a scalar coordinate was dropped.
    labelled = basin.assign_coords(comid=("reach", basin.reach.values * 10 + 7), run="r1")
    labelled.chunk({"reach": 9, "seg": 10, "time": 120}).to_zarr(tmp_path / "in.zarr", consolidated=False)
    out = xr.open_zarr(tmp_path / "in.zarr", consolidated=False).msgl.downscale(
        model, **RUN, reach_chunk=50).to_dataset()
    assert out["comid"].encoding == {} and out["comid"].chunks == out["reach_temp_pred"].chunks[:1]
    assert out["run"].item() == "r1"
    store = tmp_path / "pred.zarr"
    out.to_zarr(store, compute=False, mode="w-", consolidated=False)
    n = out.sizes["reach"]
    for a in range(0, n, 100):  # the recipe of docs/pangeo.md
        region = {"reach": slice(a, min(a + 100, n)), "time": slice(None)}
        out.isel(reach=region["reach"]).drop_vars(
            [c for c in out.coords if "reach" not in out[c].dims]).to_zarr(
            store, region=region, consolidated=False)
    back = xr.open_zarr(store, consolidated=False).load()
    np.testing.assert_array_equal(back["comid"].values, labelled["comid"].values)
    assert float(np.abs(back["reach_temp_pred"] - reference).max()) < 0.05
    in_memory = labelled.msgl.downscale(model, **RUN)
    assert in_memory["run"].item() == "r1" and in_memory["comid"].encoding == {}


def test_safe_writers_refuse_the_store_a_lazy_downscale_reads(basin: xr.Dataset, model: Downscaler,
                                                               tmp_path: Path) -> None:
    # The lazy result reads its input through xmsgl's gather tasks, which carry the
    # input's reading tasks inside them: the writers find the store there.
    store = tmp_path / "in.zarr"
    _chunked(basin).to_zarr(store, consolidated=False)
    files = []
    for i, (a, b) in enumerate(((None, "2001-05-31"), ("2001-06-01", None))):
        files.append(tmp_path / f"part{i}.nc")
        basin.sel(time=slice(a, b)).to_netcdf(files[-1])
    pred = xr.open_zarr(store, consolidated=False).msgl.downscale(model, **RUN)
    assert "source" not in pred.encoding
    with pytest.raises(ParameterError, match="were read from it"):
        xmsgl.io.to_zarr_safe(pred.to_dataset(), store, overwrite=True)
    with pytest.raises(ParameterError, match="lies inside"):
        xmsgl.io.to_zarr_safe((pred + 0).to_dataset(), store / "pred.zarr")
    several = xr.open_mfdataset(files, data_vars="minimal", coords="minimal", compat="override")
    pred = several.msgl.downscale(model, **RUN)
    for f in files:  # each file feeds some of the blocks
        with pytest.raises(ParameterError, match="were read from it"):
            xmsgl.io.to_netcdf_safe(pred, f, overwrite=True)
    xr.testing.assert_identical(xr.open_zarr(store, consolidated=False).load(), _chunked(basin).load())


# ------------------------------------------------------------------- workers


def test_model_objects_are_saved_in_a_folder_of_the_users_own(model: Downscaler, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import tempfile

    from xmsgl.scale import _model_location

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    where = Path(_model_location(model, None))
    assert where == tmp_path / f"xmsgl-models-{os.getuid()}" / model.sha256
    assert (where / "config.json").is_file() and where.parent.stat().st_mode & 0o777 == 0o700
    assert _model_location(model, None) == str(where)  # saved once, then reused
    assert _model_location(model, tmp_path / "given") == str((tmp_path / "given").resolve())


def test_model_cache_loads_once_and_checks_hash(model: Downscaler, tmp_path: object) -> None:
    import pathlib

    path = str(pathlib.Path(str(tmp_path)) / "m.xmsgl")
    model.save(path)
    a = cached_model(path, model.sha256)
    assert cached_model(path, model.sha256) is a
    with pytest.raises(ModelMismatchError, match="sha256"):
        cached_model(path, "0" * 64)


# Two worker processes that import torch: about 25 s on a quiet 2-core machine.
def test_local_cluster_of_processes(basin: xr.Dataset, model: Downscaler,
                                    reference: xr.DataArray, tmp_path: object,
                                    capfd: pytest.CaptureFixture[str]) -> None:
    import pathlib

    distributed = pytest.importorskip("distributed")
    path = pathlib.Path(str(tmp_path)) / "m.xmsgl"
    model.save(path)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        out = _chunked(basin).msgl.downscale(str(path), **RUN, reach_chunk=40, time_block=200)
        got = out.compute()
        # Inputs persisted on the cluster (futures in their graph) failed with a KeyError
        # in the workers, which ran the gather's reading tasks themselves.
        pinned = _chunked(basin).persist()
        kept = pinned.msgl.downscale(str(path), **RUN, reach_chunk=40, time_block=200)
        # Its gather tasks share chunks the scheduler resolves: other tasks, so other keys
        # than those of the unpersisted run (which the scheduler may still hold). Keys
        # both runs have (inputs held in memory, never persisted) are the same tasks.
        graphs = [dict(x.__dask_graph__()) for x in (out, kept)]
        gathers = [{k: v[0].__name__ for k, v in g.items() if isinstance(k, tuple)
                    and str(k[0]).startswith("xmsgl-gather-")} for g in graphs]
        assert "_gather_piece" in gathers[1].values() and "_read_piece" in gathers[0].values()
        assert all(gathers[0][k] == gathers[1][k] for k in gathers[0].keys() & gathers[1].keys())
        written = xmsgl.io.to_zarr_safe(kept, pathlib.Path(str(tmp_path)) / "p.zarr",
                                        compute=False).compute()
        np.testing.assert_allclose(xr.open_zarr(written)["reach_temp_pred"].values, got.values,
                                   atol=1e-5)

        # A warning of a block's inputs reaches the client (it printed on the workers'
        # stderr only): a discharge of the wrong sign, once per call.
        flipped = _chunked(basin.assign(reach_discharge=-basin.reach_discharge.assign_attrs(
            basin.reach_discharge.attrs)))
        with pytest.warns(xmsgl.InputRangeWarning, match=r"input 'reach_discharge' lies far beyond its training range in a block of a lazy downscale \(said as the block is computed") as said:
            flipped.msgl.downscale(str(path), **RUN, reach_chunk=40, time_block=200).compute()
            for _ in range(100):  # the workers' events come in beside the result
                if any(issubclass(w.category, xmsgl.InputRangeWarning) for w in said):
                    break
                time.sleep(0.1)
        # ... and there only: the workers, whose stderr is this process's, printed it too.
        assert "lies far beyond" not in capfd.readouterr().err

        def loaded() -> tuple[int, int]:
            import torch as t

            import xmsgl.scale

            return len(xmsgl.scale._MODELS), t.get_num_threads()

        per_worker = client.run(loaded)
    assert float(np.abs(got - reference).max()) < 0.05
    # Each worker loaded the model at most once and runs torch on one thread.
    assert all(n <= 1 for n, _ in per_worker.values())
    assert any(n == 1 for n, _ in per_worker.values())
    assert all(threads == 1 for _, threads in per_worker.values())


def test_a_block_warning_is_said_once_by_a_cluster_in_the_clients_process() -> None:
    # A worker in the client's own process warned there, and sent the warning on to the
    # client, which said it again.
    import warnings

    distributed = pytest.importorskip("distributed")
    from xmsgl.exceptions import InputRangeWarning
    from xmsgl.scale import CallTag, warn_once

    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=1,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            client.submit(warn_once, CallTag(), "inputs far beyond", InputRangeWarning, pure=False).result()
            time.sleep(1.0)  # what the client would receive from the worker arrives by now
    assert [str(w.message) for w in seen if w.category is InputRangeWarning] == ["inputs far beyond"]


def test_a_worker_in_another_process_sends_its_block_warning_to_the_client_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # distributed.warn said it on the worker too: on a LocalCluster, whose workers print
    # on the user's terminal, each worker process printed it once more.
    import warnings

    pytest.importorskip("distributed")
    from distributed.client import _handle_warn  # what a client does with the event

    import xmsgl.scale as scale
    from xmsgl.exceptions import InputRangeWarning

    class Worker:
        address = "tcp://127.0.0.1:40000"

        def __init__(self) -> None:
            self.events: list[tuple[str, object]] = []

        def log_event(self, topic: str, msg: object) -> None:
            self.events.append((topic, msg))

    worker = Worker()
    monkeypatch.setattr(scale, "_cluster_worker", lambda: worker)
    call = scale.CallTag()
    with warnings.catch_warnings(record=True) as here:
        warnings.simplefilter("always")
        scale.warn_once(call, "inputs far beyond", InputRangeWarning)
        scale.warn_once(call, "inputs far beyond", InputRangeWarning)  # once a call
    assert here == [] and len(worker.events) == 1 and worker.events[0][0] == "warn"
    with warnings.catch_warnings(record=True) as client:
        warnings.simplefilter("always")
        _handle_warn(worker.events[0])
    assert [(w.category, str(w.message)) for w in client] == [(InputRangeWarning, "inputs far beyond")]


def test_workers_keep_a_bounded_number_of_models(model: Downscaler, tmp_path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import xmsgl.scale as scale

    monkeypatch.setattr(scale, "_MODELS", type(scale._MODELS)())
    monkeypatch.setattr(scale, "MODELS_KEPT", 2)
    paths = [str(model.save(tmp_path / f"m{i}.xmsgl")) for i in range(3)]
    first = scale.cached_model(paths[0], model.sha256)
    assert scale.cached_model(paths[0], model.sha256) is first  # loaded once
    scale.cached_model(paths[1], model.sha256)
    scale.cached_model(paths[0], model.sha256)  # used again: now the most recent
    scale.cached_model(paths[2], model.sha256)  # drops the least recently used, paths[1]
    assert [key[0] for key in scale._MODELS] == [paths[0], paths[2]]


def test_threads_keep_a_bounded_number_of_model_copies(model: Downscaler,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker thread's own copies (dmsge models) are bounded as the process's models are.
    import threading

    import xmsgl.scale as scale

    monkeypatch.setattr(scale, "_THREAD", threading.local())
    monkeypatch.setattr(scale, "MODELS_KEPT", 2)
    first = scale._thread_model(model, ("a",))
    assert first is not model and scale._thread_model(model, ("a",)) is first
    scale._thread_model(model, ("b",))
    scale._thread_model(model, ("a",))  # used again: now the most recent
    scale._thread_model(model, ("c",))  # drops the least recently used, "b"
    assert list(scale._THREAD.models) == [("a",), ("c",)]
    assert scale._thread_model(model, ("a",)) is first


# ------------------------------------------------------------------- training by sub-basins


def test_fit_by_subbasins(basin: xr.Dataset, model: Downscaler) -> None:
    opts = {"max_hops": 3}
    one = fit(basin, method="msgl", seed=0, graph_options=opts, subbasin_batch=10_000, **FAST)
    # One batch covering the network is the ordinary fit.
    a = basin.msgl.downscale(one, **RUN)
    b = basin.msgl.downscale(model, **RUN)
    np.testing.assert_allclose(a.values, b.values, atol=1e-4)
    parts = fit(basin, method="msgl", seed=0, graph_options=opts, subbasin_batch=40,
                **{**FAST, "epochs": 3})
    hist = parts.history["main"]
    assert hist["subbasin_blocks"] > 3
    assert parts.config["hyperparameters"]["subbasin_batch"] == 40
    assert "subbasin_batch" not in model.config["hyperparameters"]
    assert all(np.isfinite(hist["loss"])) and hist["loss"][-1] < hist["loss"][0]
    pred = basin.msgl.downscale(parts, **RUN)
    assert np.isfinite(pred.values).all()


def test_fit_by_subbasins_shows_progress_when_asked(basin: xr.Dataset, capsys) -> None:
    # progress=True was accepted and ignored with subbasin_batch.
    kw = {**FAST, "epochs": 2, "progress": True}
    fit(basin, method="fine-only", seed=0, graph_options={"max_hops": 3}, subbasin_batch=40, **kw)
    assert "fine-only main" in capsys.readouterr().err
    fit(basin, method="fine-only", seed=0, graph_options={"max_hops": 3}, subbasin_batch=40,
        **{**kw, "progress": False})
    assert capsys.readouterr().err == ""


def test_fine_tuning_by_subbasins_scores_its_starting_weights(basin: xr.Dataset) -> None:
    # As on the whole network: the weights the pseudo-label stage kept compete for
    # the checkpoint of the fine-tuning.
    m = fit(basin, method="progressive", seed=0, graph_options={"max_hops": 3}, subbasin_batch=40,
            pretrain_epochs=2, **{**FAST, "epochs": 2})
    main, prev = m.history["main"], m.history["pseudo_labels"]
    assert main["subbasin_blocks"] > 3
    assert main["val_start"] == pytest.approx(prev["val"][prev["best_epoch"] - 1], rel=1e-6)
    kept = main["val_start"] if main["best_epoch"] == 0 else main["val"][main["best_epoch"] - 1]
    assert kept == min([main["val_start"], *main["val"]])


def test_lazy_nan_error_names_the_real_day(basin: xr.Dataset, model: Downscaler) -> None:
    from xmsgl.exceptions import DataError

    bad = basin.copy()
    vals = bad["reach_air_temp"].transpose("reach", "time").values.copy()
    vals[5, 200] = np.nan
    bad["reach_air_temp"] = (("reach", "time"), vals, basin["reach_air_temp"].attrs)
    day = str(pd.Timestamp(basin.time.values[200]).date())
    reach = basin.reach.values[5].item()
    for ds in (bad, _chunked(bad)):
        with pytest.raises(DataError, match=rf"at reach {reach} on {day}\)"):
            ds.msgl.downscale(model, **RUN).compute()
    # A lazy run finds the values of one block at a time: its count was given as the
    # whole dataset's (1 of 3), without a word.
    vals[-1, 10] = vals[-2, 10] = np.nan
    bad["reach_air_temp"] = (("reach", "time"), vals, basin["reach_air_temp"].attrs)
    with pytest.raises(DataError, match="has 3 NaN or infinite values") as whole:
        bad.msgl.downscale(model, **RUN)
    assert "lazy" not in str(whole.value)
    with dask.config.set(scheduler="sync"), pytest.raises(DataError) as one:
        _chunked(bad).msgl.downscale(model, reach_chunk=40, **RUN).compute()
    said = str(one.value)
    assert re.search(r"has [12] NaN or infinite values", said), said
    assert re.search(r"[^.]\. Found in one block of a lazy downscale \(\d+ reaches, \d{4}-\d\d-\d\d to "
                     r"\d{4}-\d\d-\d\d with its warm-up\): the values named above are that "
                     r"block's, and other blocks may hold more; count them over the whole dataset "
                     r"\(int\(ds\['reach_air_temp'\]\.isnull\(\)\.sum\(\)\) for NaN\), or "
                     r"downscale in memory \(ds\.load\(\) first, without lazy=True\), which names "
                     r"them all$", said), said
    # A missing-data code is a units question: no count to make, one full stop.
    vals = basin["reach_air_temp"].transpose("reach", "time").values.copy()
    vals[3, 50] = -999.0
    bad["reach_air_temp"] = (("reach", "time"), vals, basin["reach_air_temp"].attrs)
    with dask.config.set(scheduler="sync"), pytest.raises(xmsgl.UnitsError) as code:
        _chunked(bad).msgl.downscale(model, reach_chunk=40, **RUN).compute()
    said = str(code.value)
    # A fill code in a forcing is a DataError too, with no NaN to count.
    swrad = basin["reach_swrad"].transpose("reach", "time").values.copy()
    swrad[3, 50] = -9999.0
    coded = basin.copy()
    coded["reach_swrad"] = (("reach", "time"), swrad, basin["reach_swrad"].attrs)
    with dask.config.set(scheduler="sync"), pytest.raises(DataError) as fill:
        _chunked(coded).msgl.downscale(model, reach_chunk=40, **RUN).compute()
    assert "isnull" not in str(fill.value) and "Found in one block" in str(fill.value), str(fill.value)
    assert re.search(r"attribute\. Found in one block", said) and said.endswith("the values named above are that block's, and other "
                                              "blocks may hold more of them"), said


def test_gather_keys_name_the_way_of_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    # Chunks read by each task and chunks shared as tasks are other task definitions:
    # under one key a distributed scheduler holding the first would be handed the second.
    import dask.array as da

    import xmsgl.scale as scale

    arr = da.ones((40, 100), chunks=(10, 50))

    def gathered() -> tuple[str, str]:
        g = scale._gather(arr, np.arange(40), (20, 20), np.arange(100), (50, 50))
        task = next(v for k, v in dict(g.__dask_graph__()).items() if "xmsgl-gather" in str(k))
        assert float(g.sum().compute()) == 4000.0
        return g.name, task[0].__name__

    own = gathered()
    monkeypatch.setattr(scale, "MAX_READ_FACTOR", 0)
    shared = gathered()
    assert own[1] == "_read_piece" and shared[1] == "_gather_piece" and own[0] != shared[0]
