"""The models on a CUDA device: fit, downscale, save and load, lazy and distributed runs.

Every test here needs a GPU (marker ``gpu``, deselected by default); run them with
``pytest -m gpu`` on a machine with CUDA. The tolerances against the CPU are those
of float32 sums taken in another order: the GPU's products and reductions are not
the CPU's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import xarray as xr

import xmsgl
from tests.conftest import FAST_FIT, SCALE_WINDOWS

torch = pytest.importorskip("torch")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

RUN = SCALE_WINDOWS


@pytest.fixture(scope="module")
def basin(scale_basin: xr.Dataset) -> xr.Dataset:
    return scale_basin


@pytest.fixture(scope="module")
def gpu_model(basin: xr.Dataset) -> xmsgl.Downscaler:
    model = basin.msgl.fit(method="msgl", seed=0, device="cuda", graph_options={"max_hops": 3},
                           **{**FAST_FIT, "epochs": 2})
    assert isinstance(model, xmsgl.Downscaler)
    return model


def _max_diff(a: xr.DataArray, b: xr.DataArray) -> float:
    assert np.array_equal(a.reach.values, b.reach.values)
    return float(np.abs(a.values - b.values).max())


def test_auto_picks_the_gpu() -> None:
    from xmsgl.train import resolve_device

    assert resolve_device("auto").type == "cuda"


def test_fit_on_gpu_gives_a_cpu_model_that_downscales_alike_on_both(
        basin: xr.Dataset, gpu_model: xmsgl.Downscaler) -> None:
    # The fitted network comes back on the CPU, whatever it was trained on.
    assert all(p.device.type == "cpu" for p in gpu_model.net.parameters())
    assert gpu_model.history["main"]["loss"][-1] < gpu_model.history["main"]["loss"][0]
    on_gpu = basin.msgl.downscale(gpu_model, device="cuda", **RUN)
    on_cpu = basin.msgl.downscale(gpu_model, device="cpu", **RUN)
    assert on_gpu.dtype == np.float32 and on_gpu.attrs["units"] == "degC"
    assert "device='cuda" in on_gpu.attrs["history"]
    assert "device='cpu'" in on_cpu.attrs["history"]
    assert np.isfinite(on_gpu.values).all()
    assert _max_diff(on_gpu, on_cpu) < 1e-3
    # Downscaling leaves the model where it was.
    assert all(p.device.type == "cpu" for p in gpu_model.net.parameters())


def test_gpu_fit_is_close_to_cpu_fit(basin: xr.Dataset, gpu_model: xmsgl.Downscaler) -> None:
    # Same seed, same data: the same initial weights and windows; the two devices
    # then differ only by rounding, which two epochs do not amplify beyond this.
    cpu_model = basin.msgl.fit(method="msgl", seed=0, device="cpu", graph_options={"max_hops": 3},
                               **{**FAST_FIT, "epochs": 2})
    a = basin.msgl.downscale(gpu_model, device="cpu", **RUN)
    b = basin.msgl.downscale(cpu_model, device="cpu", **RUN)
    assert _max_diff(a, b) < 0.05
    np.testing.assert_allclose(gpu_model.history["main"]["loss"], cpu_model.history["main"]["loss"],
                               rtol=1e-3)


def test_same_seed_on_gpu_repeats(basin: xr.Dataset, gpu_model: xmsgl.Downscaler) -> None:
    again = basin.msgl.fit(method="msgl", seed=0, device="cuda", graph_options={"max_hops": 3},
                           **{**FAST_FIT, "epochs": 2})
    a = basin.msgl.downscale(gpu_model, device="cuda", **RUN)
    b = basin.msgl.downscale(again, device="cuda", **RUN)
    assert _max_diff(a, b) < 1e-3
    # One GPU, one spelling in the record: "cuda" is recorded with its number.
    import torch

    assert gpu_model.config["device"] == f"cuda:{torch.cuda.current_device()}"


def test_saved_from_gpu_loads_on_cpu(basin: xr.Dataset, gpu_model: xmsgl.Downscaler,
                                     tmp_path: object) -> None:
    # Saved while its network sits on the GPU (a fit hands it back on the CPU, so it
    # is moved there first) and loaded in a process that sees no GPU.
    import os
    import pathlib
    import subprocess
    import sys

    tmp = pathlib.Path(str(tmp_path))
    path = tmp / "gpu.xmsgl"
    gpu_model.net.to("cuda")
    try:
        assert all(p.device.type == "cuda" for p in gpu_model.net.parameters())
        gpu_model.save(path)
    finally:
        gpu_model.net.to("cpu")
    b = basin.msgl.downscale(gpu_model, device="cpu", **RUN)
    basin.to_netcdf(tmp / "basin.nc")
    script = (
        "import sys, torch, xarray as xr, xmsgl\n"
        "assert not torch.cuda.is_available()\n"
        "torch.set_num_threads(1)\n"
        "back = xmsgl.load(sys.argv[1])\n"
        "ds = xr.open_dataset(sys.argv[2]).load()\n"
        f"out = ds.msgl.downscale(back, device='auto', **{RUN!r})\n"
        "assert 'device=' in out.attrs['history'] and 'cpu' in out.attrs['history']\n"
        "out.drop_attrs().to_netcdf(sys.argv[3])\n"
        "print(back.sha256)\n"
    )
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-c", script, str(path), str(tmp / "basin.nc"),
                           str(tmp / "out.nc")], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] == gpu_model.sha256
    with xr.open_dataarray(tmp / "out.nc") as a:
        np.testing.assert_array_equal(a.values, b.values)


@pytest.mark.parametrize("method", ["async-msgl", "fine-only", "remap", "direct", "progressive"])
def test_other_methods_fit_and_downscale_on_gpu(basin: xr.Dataset, method: str) -> None:
    model = basin.msgl.fit(method=method, seed=0, device="cuda", graph_options={"max_hops": 3},
                           **FAST_FIT)
    on_gpu = basin.msgl.downscale(model, device="cuda", **RUN)
    on_cpu = basin.msgl.downscale(model, device="cpu", **RUN)
    assert np.isfinite(on_gpu.values).all()
    assert _max_diff(on_gpu, on_cpu) < 1e-3


@contextlib.contextmanager
def _cudnn_full_float32() -> Iterator[None]:
    """cuDNN's convolutions and recurrences in full float32 (no TF32) inside the block.

    torch 2.9 and later set this per operator (``cudnn.conv.fp32_precision``); mixing
    that with the older ``cudnn.allow_tf32`` makes reading the latter raise, so the
    newer one is used where it exists.
    """
    cudnn = torch.backends.cudnn
    if getattr(getattr(cudnn, "conv", None), "fp32_precision", None) is not None:
        saved = (cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision)
        cudnn.conv.fp32_precision = cudnn.rnn.fp32_precision = "ieee"
        try:
            yield
        finally:
            cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = saved
    else:
        tf32 = cudnn.allow_tf32
        cudnn.allow_tf32 = False
        try:
            yield
        finally:
            cudnn.allow_tf32 = tf32


def test_cudnn_full_float32_restores_the_settings() -> None:
    cudnn = torch.backends.cudnn
    if getattr(getattr(cudnn, "conv", None), "fp32_precision", None) is not None:
        before = (cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision)
        with _cudnn_full_float32():
            assert (cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision) == ("ieee", "ieee")
        assert (cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision) == before
    else:
        before = cudnn.allow_tf32
        with _cudnn_full_float32():
            assert cudnn.allow_tf32 is False
        assert cudnn.allow_tf32 == before


@pytest.mark.parametrize("method", ["msgl", "progressive", "async-msgl"])
def test_dmsge_backbone_on_gpu(basin: xr.Dataset, method: str) -> None:
    # The two-stage methods too: their stages hand the backbone over on the GPU.
    model = basin.msgl.fit(method=method, seed=0, device="cuda", backbone="dmsge",
                           graph_options={"max_hops": 3}, **FAST_FIT)
    # cuDNN runs float32 convolutions and recurrences in TF32 by default on Ampere and
    # later, and the dynamic graph's neighbour choices amplify that rounding (docs/dmsge.md):
    # the CPU's results are matched in full float32.
    with _cudnn_full_float32():
        on_gpu = basin.msgl.downscale(model, device="cuda", **RUN)
    on_cpu = basin.msgl.downscale(model, device="cpu", **RUN)
    assert np.isfinite(on_gpu.values).all()
    assert _max_diff(on_gpu, on_cpu) < 1e-3


def test_subbasin_batches_on_gpu(basin: xr.Dataset) -> None:
    model = basin.msgl.fit(method="msgl", seed=0, device="cuda", graph_options={"max_hops": 3},
                           subbasin_batch=40, **{**FAST_FIT, "epochs": 2})
    hist = model.history["main"]
    assert hist["subbasin_blocks"] > 3 and np.isfinite(hist["loss"]).all()
    assert np.isfinite(basin.msgl.downscale(model, device="cuda", **RUN).values).all()


def test_lazy_downscale_on_gpu_matches_in_memory(basin: xr.Dataset,
                                                 gpu_model: xmsgl.Downscaler) -> None:
    whole = basin.msgl.downscale(gpu_model, device="cuda", **RUN)
    lazy = basin.chunk({"reach": 40, "seg": 10, "time": 120}).msgl.downscale(
        gpu_model, device="cuda", reach_chunk=40, time_block=200, **RUN)
    assert lazy.chunks is not None
    assert _max_diff(lazy.compute(), whole) < 0.05


def test_local_cluster_workers_use_their_gpu(basin: xr.Dataset, gpu_model: xmsgl.Downscaler,
                                             tmp_path: object) -> None:
    import pathlib

    distributed = pytest.importorskip("distributed")
    path = pathlib.Path(str(tmp_path)) / "m.xmsgl"
    gpu_model.save(path)
    whole = basin.msgl.downscale(gpu_model, device="cuda", **RUN)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        out = basin.chunk({"reach": 40, "seg": 10, "time": 120}).msgl.downscale(
            str(path), device="auto", reach_chunk=40, time_block=200, **RUN)
        got = out.compute()

        def devices_used() -> list[str]:
            import xmsgl.scale

            return [key[2] for key in xmsgl.scale._MODELS]

        per_worker = client.run(devices_used)
    assert _max_diff(got, whole) < 0.05
    used = [d for ds in per_worker.values() for d in ds]
    assert used and all(d.startswith("cuda") for d in used)


def test_a_fit_that_starts_cuda_leaves_the_callers_gpu_stream() -> None:
    import subprocess
    import sys

    # Seeded on the GPU alone: a fit that reseeded the GPUs with the CPU's seed (as
    # xmsgl did) would change the stream.
    code = (
        "import torch, xmsgl\n"
        "torch.cuda.manual_seed(123)\n"
        "ds = xmsgl.datasets.synthetic_basin(n_segments=4, start='2001-01-01', end='2001-06-30',"
        " reach_obs_share=0.3)\n"
        "xmsgl.fit(ds, method='fine-only', seed=0, device='cuda', epochs=1, window=30, stride=30,"
        " progress=False)\n"
        "a = torch.rand(3, device='cuda').cpu()\n"
        "torch.cuda.manual_seed(123)\n"
        "print(bool(torch.equal(a, torch.rand(3, device='cuda').cpu())))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("backbone", ["rgrn", "dmsge"])
def test_a_cpu_fitted_model_downscales_alike_on_the_gpu(basin: xr.Dataset, backbone: str) -> None:
    model = basin.msgl.fit(method="msgl", seed=0, device="cpu", backbone=backbone,
                           graph_options={"max_hops": 3}, **FAST_FIT)
    with _cudnn_full_float32():
        on_gpu = basin.msgl.downscale(model, device="cuda", **RUN)
    assert "cuda" in on_gpu.attrs["history"]
    assert _max_diff(on_gpu, basin.msgl.downscale(model, device="cpu", **RUN)) < 1e-3


def test_dmsge_calendar_blocks_of_windows_of_many_phases_on_the_gpu(basin: xr.Dataset, monkeypatch) -> None:
    # Windows 182 days apart against blocks of 20: every window of a batch changes
    # graph on other days, which the GPU runs as one batch of blocks (downscale
    # batches windows of one phase only, so the backbone is called here).
    from xmsgl.graph import build_graphs
    from xmsgl.knn import node_geometry
    from xmsgl.nn import SparseGraph
    from xmsgl.nn.dmsge import DMSGEBackbone

    torch.manual_seed(0)
    net = DMSGEBackbone(n_inputs=3, hidden=8, layers=2, k=3, dynamic_days=20).to("cuda")
    net.set_geometry("reach", node_geometry(basin, "reach"))
    adj = SparseGraph(build_graphs(basin, max_hops=3).fine, device="cuda")
    x = torch.randn(90, basin.sizes["reach"], 3, 3, device="cuda")
    day0 = [10957, 10957 + 182, 10957 + 364]

    def run(devices: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        monkeypatch.setattr(DMSGEBackbone, "blocks_on", devices)
        xi = x.clone().requires_grad_(True)
        with _cudnn_full_float32():
            out = net(xi, adj, "reach", day0=day0)
        out.square().mean().backward()
        return out.detach(), xi.grad

    blocks, grad_b = run(("cuda",))
    pieces, grad_p = run(())
    torch.testing.assert_close(blocks, pieces, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_b, grad_p, rtol=1e-4, atol=1e-6)


def test_mgda_and_explain_on_the_gpu(basin: xr.Dataset) -> None:
    model = basin.msgl.fit(method="msgl", seed=0, device="cuda", backbone="dmsge", weighting="mgda",
                           graph_options={"max_hops": 3}, **FAST_FIT)
    t = basin.time.values
    period = (str(t[0])[:10], str(t[120])[:10])
    with _cudnn_full_float32():
        on_gpu = model.explain(basin, time=period, device="cuda")
    on_cpu = model.explain(basin, time=period, device="cpu")
    np.testing.assert_allclose(on_gpu.dirichlet_energy.values, on_cpu.dirichlet_energy.values, rtol=1e-3)


def test_cross_validation_scores_on_the_device_it_fits_on(basin: xr.Dataset) -> None:
    from xmsgl.evaluate import default_trainer

    trainer = default_trainer("fine-only", {**FAST_FIT, "device": "cpu"})
    pred = trainer(basin, xr.Dataset(), 0)
    assert "cuda" not in pred.attrs["history"]


def test_explain_with_a_spinup_on_the_gpu(basin: xr.Dataset) -> None:
    # Days before the period are run first and left out of the statistics, on either device.
    model = basin.msgl.fit(method="fine-only", seed=0, device="cuda", backbone="dmsge",
                           graph_options={"max_hops": 3}, **FAST_FIT)
    t = basin.time.values
    period = (str(t[200])[:10], str(t[290])[:10])
    with _cudnn_full_float32():
        on_gpu = model.explain(basin, time=period, spinup=150, device="cuda")
    on_cpu = model.explain(basin, time=period, spinup=150, device="cpu")
    assert on_gpu.attrs["spinup_days"] == on_cpu.attrs["spinup_days"] == 150
    assert on_gpu.attrs["n_days"] == on_cpu.attrs["n_days"] == 91
    np.testing.assert_allclose(on_gpu.dirichlet_energy.values, on_cpu.dirichlet_energy.values,
                               rtol=1e-3)
    # The shares count wins over days x hidden units: the devices' rounding may turn a
    # near-tie (on H200, one win of 1,820 at one reach), not more.
    grid = 91 * model.config["hyperparameters"]["hidden"]
    for name in ("share_upstream", "share_downstream", "share_self", "top_share"):
        wins_gpu, wins_cpu = (np.rint(d[name].values * grid) for d in (on_gpu, on_cpu))
        assert np.abs(wins_gpu - wins_cpu).max() <= 2, name
        assert np.mean(wins_gpu != wins_cpu) < 0.01, name
    assert all(p.device.type == "cpu" for p in model.net.parameters())


def test_a_callers_cuda_default_device_changes_no_fit(basin: xr.Dataset) -> None:
    # torch.set_default_device("cuda") in the caller's code: the weights are still drawn
    # on the CPU from the seed, and a CPU fit is the one made without it, to the bit.
    options = {"method": "msgl", "seed": 0, "graph_options": {"max_hops": 3}, **FAST_FIT}
    reference = basin.msgl.fit(device="cpu", **options)
    torch.set_default_device("cuda")
    try:
        on_cpu = basin.msgl.fit(device="cpu", **options)
        on_gpu = basin.msgl.fit(device="cuda", **options)
        out_gpu = basin.msgl.downscale(on_gpu, device="cuda", **RUN)
    finally:
        torch.set_default_device(None)
    assert on_cpu.sha256 == reference.sha256
    assert all(p.device.type == "cpu" for p in on_gpu.net.parameters())
    out_ref = basin.msgl.downscale(reference, device="cpu", **RUN)
    assert _max_diff(out_gpu, out_ref) < 0.05
    np.testing.assert_allclose(on_gpu.history["main"]["loss"], reference.history["main"]["loss"],
                               rtol=1e-3)
