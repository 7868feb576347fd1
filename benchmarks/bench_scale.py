"""Scale-out benchmark: lazy, block-by-block downscaling of 10^4 to 10^6 reaches.

A model is fitted briefly on a small synthetic basin (graphs with ``max_hops=8``)
and applied with ``check_graph=False`` (its weights are node-agnostic) to
continental synthetic networks: the topology of ``synthetic_basin`` (one drainage
basin per 75 segments) with lazy dask forcings of one year (random values of the
right magnitude, generated chunk by chunk, so that the benchmark times the
downscaling and not the heat-budget simulation). Each run is a fresh subprocess,
so its peak memory (max RSS) is its own. Prints JSON lines.

Modes:

* ``lazy``: ``ds.msgl.downscale(model)`` on the dask input, then ``.compute()`` with
  ``--workers`` threads (one torch thread each);
* ``memory``: the reference measured in the same run: inputs loaded, the in-memory
  single-block downscale with ``--workers`` torch threads;
* ``zarr``: the lazy result streamed to a zarr store (``to_zarr(compute=False)``,
  then computed; ``--writer xmsgl``: through ``xmsgl.io.to_zarr_safe``, which writes
  to a temporary name and renames it, as ``xmsgl downscale`` does);
* ``call``: the lazy call alone (topology, blocks, task graph), nothing computed.

Run: ``python benchmarks/bench_scale.py`` (10^4 and 10^5, lazy and memory, and the
difference between them), ``--zarr-sizes 1000000`` for the manual 10^6 run,
``--call-sizes 1000000`` to time the lazy set-up alone, ``--halo-sweep`` for the
accuracy of split components by halo depth.

Each line's ``reach_days_per_s`` is end to end (``seconds_end_to_end``: the lazy call and
its compute; in memory, loading the inputs and the downscale); ``seconds`` is the
compute alone (in memory, the downscale alone), with ``seconds_call`` and
``seconds_input`` the other parts. ``--mode call`` prints no throughput.

``--zarr-input`` reads the inputs from a zarr store instead (written once into the
benchmark's folder, untimed), the usual Pangeo case: zarr in, zarr out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from _provenance import provenance

WORK = os.path.join(tempfile.gettempdir(), "xmsgl-bench-scale")
MODEL_DIR = os.path.join(WORK, "model")
REACHES_PER_SEGMENT = 7.2  # what synthetic_basin gives with its defaults
DEFAULT_BLOCK = 10_000  # blocks of the halo sweep


def _fit_model() -> None:
    # The model of the inference benchmark with --max-hops 8 (bench_inference.py, beside this file).
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_inference import fit_model

    fit_model(MODEL_DIR)


def _network(n_reach: int, chunk: int, days: int = 365):  # type: ignore[no-untyped-def]
    import dask.array as dsa

    import xmsgl

    n_seg = max(1, int(round(n_reach / REACHES_PER_SEGMENT)))
    ds = xmsgl.datasets.synthetic_basin(n_segments=n_seg, start="2001-01-01", end="2001-01-02",
                                        seed=0)
    keep = [k for k, v in ds.data_vars.items() if "time" not in v.dims]
    ds = ds[keep].drop_vars("time", errors="ignore")
    import pandas as pd

    ds = ds.assign_coords(time=pd.date_range("2001-01-01", periods=days))
    rs = dsa.random.RandomState(0)
    for node in ("seg", "reach"):
        n = ds.sizes[node]
        c = chunk if node == "reach" else max(1, int(chunk / REACHES_PER_SEGMENT))
        for name, mean, std in (("air_temp", 12.0, 8.0), ("swrad", 180.0, 80.0),
                                ("precip", 2.5, 4.0), ("discharge", 20.0, 30.0)):
            units = {"air_temp": "degC", "swrad": "W m-2", "precip": "mm d-1",
                     "discharge": "m3 s-1"}[name]
            arr = rs.normal(mean, std, size=(n, days), chunks=(c, days)).astype(np.float32)
            ds[f"{node}_{name}"] = ((node, "time"), arr, {"units": units})
    return ds


def _zarr_input(n_reach: int, chunk: int):  # type: ignore[no-untyped-def]
    """The network's inputs written once to a zarr store (untimed), opened lazily."""
    import dask
    import xarray as xr

    store = os.path.join(WORK, f"input-{n_reach}-{chunk}.zarr")
    if not os.path.isdir(store):  # it only appears, complete, by the rename below
        tmp = store + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with dask.config.set(scheduler="threads"):
            _network(n_reach, chunk=chunk).to_zarr(tmp)
        os.replace(tmp, store)
    return xr.open_zarr(store)


def _one(n_reach: int, mode: str, workers: int, reach_chunk: int, halo: int | None,
         save: str | None, scheduler: str = "threads", zarr_input: bool = False,
         device: str = "cpu", writer: str = "xarray") -> None:
    import dask
    import torch

    import xmsgl

    model = xmsgl.load(MODEL_DIR)
    ds = _zarr_input(n_reach, reach_chunk) if zarr_input else _network(n_reach, chunk=reach_chunk)
    n, days = ds.sizes["reach"], ds.sizes["time"]
    rec: dict[str, object] = {"what": f"downscale_{mode}", "n_reach": n, "n_seg": ds.sizes["seg"],
                              "days": days, "workers": workers,
                              "input": "zarr store" if zarr_input else "dask random",
                              "device": device}
    t0 = time.perf_counter()
    if mode == "memory":
        torch.set_num_threads(workers)
        ds = ds.compute()
        t_load = time.perf_counter()
        out = ds.msgl.downscale(model, check_graph=False, device=device, lazy=False)
        sec = time.perf_counter() - t_load
        rec["seconds_input"] = round(t_load - t0, 2)
        values = out.values
    else:
        out = ds.msgl.downscale(model, check_graph=False, device=device, reach_chunk=reach_chunk,
                                halo=halo)
        t_call = time.perf_counter()
        rec["seconds_call"] = round(t_call - t0, 2)
        rec["history"] = out.attrs["history"].split("lazy: ")[-1]
        rec["dask_tasks"] = len(out.data.__dask_graph__())
        client = None
        if scheduler == "distributed":
            # One in-process worker with `workers` threads: the peak RSS of this process
            # covers scheduler and worker, and the distributed scheduler queues root
            # tasks (input reads) instead of running them far ahead of the blocks.
            from distributed import Client, LocalCluster

            client = Client(LocalCluster(n_workers=1, threads_per_worker=workers, processes=False,
                                         dashboard_address=None))
        rec["scheduler"] = scheduler
        ctx = (dask.config.set(scheduler="threads", num_workers=workers) if client is None
               else contextlib.nullcontext())
        with ctx:
            if mode == "call":  # the lazy set-up alone: topology, blocks, task graph
                values = None
            elif mode == "zarr":
                store = os.path.join(WORK, f"pred-{n_reach}.zarr")
                shutil.rmtree(store, ignore_errors=True)
                rec["writer"] = writer
                if writer == "xmsgl":
                    from xmsgl.io import to_zarr_safe

                    to_zarr_safe(out.to_dataset(), store)
                else:
                    delayed = out.to_dataset().to_zarr(store, compute=False, mode="w-")
                    delayed.compute()
                values = None
                shutil.rmtree(store, ignore_errors=True)
            else:
                values = out.values
        sec = time.perf_counter() - t_call
        if client is not None:
            client.close()
    total = time.perf_counter() - t0
    if save and values is not None:
        np.save(save, values)
    if mode != "call":
        # End to end: what a user waits for (the lazy call and the compute; in memory,
        # loading the inputs and the downscale), the parts apart in their own keys.
        rec.update({"seconds": round(sec, 2), "seconds_end_to_end": round(total, 2),
                    "reach_days_per_s": round(n * days / total),
                    "goal_reach_days_per_s": 1_500_000 if n_reach <= 100_000 else None})
    rec.update({
        # ru_maxrss is in KiB on Linux.
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2),
        "goal_peak_rss_gb": 2 if n_reach <= 100_000 else 4,
        "machine": platform.machine(), "cpus": os.cpu_count(), **provenance(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    })
    print(json.dumps(rec), flush=True)


def halo_sweep(halos: list[int], max_hops: list[int]) -> None:
    """Difference between lazy blocks (reach_chunk=150) and one in-memory block, by halo.

    A 120-segment basin in 2 drainage components, one year, a model fitted for one
    epoch with ``graph_options={"max_hops": h}``: every component is split, so the
    halo alone decides how close the blocks come to the single-block run.
    """
    import torch

    import xmsgl
    from xmsgl.model import fit
    from xmsgl.scale import partition

    torch.set_num_threads(1)
    ds = xmsgl.datasets.synthetic_basin(n_segments=120, start="2001-01-01", end="2001-12-31",
                                        seed=3, reach_obs_share=0.3, n_outlets=2)
    # What a halo costs where components are large against a block: two basins of
    # about 50,000 reaches each, blocks of 10,000 reaches.
    big = xmsgl.datasets.synthetic_basin(n_segments=14_000, start="2001-01-01", end="2001-01-02",
                                         seed=0, n_outlets=2)
    for halo in halos:
        p = partition(big, DEFAULT_BLOCK, halo)
        print(json.dumps({"what": "halo_cost", "n_reach": int(big.sizes["reach"]),
                          "components": p.n_components, "reach_chunk": DEFAULT_BLOCK,
                          "halo": halo, "blocks": len(p.blocks),
                          "halo_share": round(p.halo_share, 3)}), flush=True)
    for h in max_hops:
        model = fit(ds, method="msgl", seed=0, epochs=1, window=60, stride=60, progress=False,
                    attn_window=10, graph_options={"max_hops": h})
        ref = ds.msgl.downscale(model, device="cpu")
        lazy = ds.chunk({"reach": 200, "time": 100})
        for halo in halos:
            out = lazy.msgl.downscale(model, device="cpu", reach_chunk=150, halo=halo).compute()
            d = np.abs(out.values - ref.values)
            print(json.dumps({"what": "halo_sweep", "max_hops": h, "halo": halo,
                              "n_reach": int(ds.sizes["reach"]), "reach_chunk": 150,
                              "halo_share": round(partition(ds, 150, halo).halo_share, 3),
                              "max_abs_diff_degC": round(float(d.max()), 4),
                              "mean_abs_diff_degC": round(float(d.mean()), 5),
                              "p99_abs_diff_degC": round(float(np.quantile(d, 0.99)), 4),
                              "date": time.strftime("%Y-%m-%d %H:%M")}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--memory-sizes", type=int, nargs="*", default=[10_000, 100_000],
                    help="sizes also run in memory as the reference")
    ap.add_argument("--zarr-sizes", type=int, nargs="*", default=[],
                    help="sizes streamed to zarr (10^6 is a manual run)")
    ap.add_argument("--writer", choices=["xarray", "xmsgl"], default="xarray",
                    help="the zarr runs' writer: xarray's to_zarr, or xmsgl.io.to_zarr_safe")
    ap.add_argument("--call-sizes", type=int, nargs="*", default=[],
                    help="sizes whose lazy call alone is timed (no compute)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--reach-chunk", type=int, default=4_000)
    ap.add_argument("--halo", type=int, default=None)
    ap.add_argument("--scheduler", choices=["threads", "distributed"], default="threads",
                    help="dask's local threaded scheduler, or dask.distributed in-process")
    ap.add_argument("--zarr-input", action="store_true",
                    help="read the inputs from a zarr store (written once, untimed) instead of "
                         "generating them in the tasks")
    ap.add_argument("--halo-sweep", action="store_true",
                    help="only the accuracy of lazy blocks against one block, by halo depth")
    ap.add_argument("--device", default="cpu",
                    help="cpu (the goals' setting) or cuda: each worker thread runs its blocks there")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="lazy", help=argparse.SUPPRESS)
    ap.add_argument("--save", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        _one(args.one, args.mode, args.workers, args.reach_chunk, args.halo, args.save, args.scheduler,
             args.zarr_input, args.device, args.writer)
        return
    if args.halo_sweep:
        halo_sweep([0, 2, 4, 8, 12, 14], [3, 8])
        return
    os.makedirs(WORK, exist_ok=True)
    _fit_model()

    def run(n: int, mode: str, save: str | None = None) -> None:
        cmd = [sys.executable, __file__, "--one", str(n), "--mode", mode, "--workers",
               str(args.workers), "--reach-chunk", str(args.reach_chunk), "--scheduler", args.scheduler,
               "--device", args.device, "--writer", args.writer]
        if args.halo is not None:
            cmd += ["--halo", str(args.halo)]
        if args.zarr_input:
            cmd += ["--zarr-input"]
        if save:
            cmd += ["--save", save]
        subprocess.run(cmd, check=True)

    for n in args.sizes:
        both = n in args.memory_sizes
        lazy_file = os.path.join(WORK, f"lazy-{n}.npy") if both else None
        mem_file = os.path.join(WORK, f"memory-{n}.npy") if both else None
        run(n, "lazy", lazy_file)
        if both:
            run(n, "memory", mem_file)
            a, b = np.load(lazy_file), np.load(mem_file)  # type: ignore[arg-type]
            d = np.abs(a - b)
            print(json.dumps({"what": "lazy_vs_memory", "n_reach": n, "max_abs_diff_degC":
                              round(float(d.max()), 4), "mean_abs_diff_degC": round(float(d.mean()), 5),
                              "p99_abs_diff_degC": round(float(np.quantile(d, 0.99)), 4),
                              "goal_max_abs_diff_degC": 0.05}), flush=True)
    for n in args.call_sizes:
        run(n, "call")
    for n in args.zarr_sizes:
        run(n, "zarr")


if __name__ == "__main__":
    main()
