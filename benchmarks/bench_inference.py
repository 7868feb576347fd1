"""Inference throughput of ``downscale`` on large networks (10^4 and 10^5 reaches).

A model is fitted briefly on a small synthetic basin, then applied (with
``check_graph=False``: the weights are node-agnostic) to random networks of the
requested size with the same input variables and 365 days. Each size runs in a
fresh subprocess so that its peak memory (max RSS) is its own. ``peak_rss_gb`` is the
process's high-water mark, building the input included; ``peak_rss_gb_input`` is that
mark before the first call (the input and the model), ``rss_gb_before_calls`` the
memory resident when the calls start and ``peak_rss_gb_calls`` the high-water mark
over the calls, the resident input included (Linux: the mark is reset through
``/proc/self/clear_refs`` when the calls start and read as ``VmHWM``; null where that
cannot be done): the calls' own memory is the difference of those two. On the synthetic network of 10^5 reaches the input alone sets
``peak_rss_gb``. Prints JSON lines.

The model's graphs are fit's defaults unless ``--max-hops N`` limits them to ``N``
hops (``graph_options={"max_hops": N}``, a model of its own): the random networks
are deep, and the default graph's along-stream pairs grow with depth (about 440
non-zeros per fine row at 10^4 reaches, against 81 in the default synthetic basin
and 17 with ``--max-hops 8``). Each line gives ``fine_nonzeros_per_row``.

Run: ``python benchmarks/bench_inference.py [--sizes 10000 100000] [--threads 2] [--max-hops 8]``.
``--device cuda`` runs ``downscale`` on the GPU (the goal is for the 2-core CPU);
``--repeats 2`` times a second call in the same process (the first on a GPU
includes starting CUDA), and the line gives the first and the best.

The reference, measured in the same process after the timed calls on sizes up to
``--reference-max`` reaches (default 20,000; a dense matrix of 10^5 reaches would
take 40 GB) and on the CPU: the same model's fine prediction written the
straightforward way (dense coarse, fine and cross-scale matrices, a day loop with each
day's projection inside it), timed on its computation alone (its inputs standardized
and graphs built before the clock starts, which ``downscale``'s calls include), with
the speed ratios (``--reference-repeats N`` runs it N times: its best against the best
call, its first against the first call) and the largest difference from
``downscale``'s output in degC.
Its line comes after the throughput line, whose peak memory does not include it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import xarray as xr
from _provenance import provenance

MODEL_DIR = os.path.join(tempfile.gettempdir(), "xmsgl-bench-inference-model")


def model_dir(max_hops: int | None) -> str:
    """The benchmark model's folder for a graph setting (``None``: fit's default graphs)."""
    return MODEL_DIR + ("" if max_hops is None else f"-hops{max_hops}")


def _network(n_reach: int, template: xr.Dataset, n_days: int, seed: int = 0) -> xr.Dataset:
    """A random river network of about ``n_reach`` reaches, 7 per segment."""
    rng = np.random.default_rng(seed)
    per = 7
    n_seg = max(1, n_reach // per)
    seg_ids = np.arange(1, n_seg + 1)
    seg_to = np.zeros(n_seg, dtype=np.int64)
    # Each segment drains into a random earlier one (a random tree; id 1 is the outlet).
    seg_to[1:] = rng.integers(np.maximum(1, np.arange(1, n_seg) - 50), np.arange(1, n_seg) + 1)
    reach_ids = np.arange(1, n_seg * per + 1)
    reach_seg = np.repeat(seg_ids, per)
    reach_to = reach_ids + 1
    last = np.arange(per - 1, n_seg * per, per)  # outlet reach of each segment
    down = seg_to  # downstream segment of each segment
    reach_to[last] = np.where(down > 0, (down - 1) * per + 1, 0)
    time = pd.date_range("2001-01-01", periods=n_days)
    ds = xr.Dataset(coords={"seg": seg_ids, "reach": reach_ids, "time": time})
    ds["seg_to"] = ("seg", seg_to)
    ds["seg_length"] = ("seg", np.full(n_seg, 7000.0), {"units": "m"})
    ds["reach_to"] = ("reach", reach_to)
    ds["reach_length"] = ("reach", np.full(reach_ids.size, 1000.0), {"units": "m"})
    ds["reach_seg"] = ("reach", reach_seg)
    for name, da in template.data_vars.items():
        dims = tuple(str(d) for d in da.dims)
        if not np.issubdtype(da.dtype, np.floating) or name in ("seg_length", "reach_length"):
            continue
        if str(name).endswith("_true") or name in ("seg_temp", "reach_temp"):
            continue
        if "time" in dims and len(dims) == 2:
            node = [d for d in dims if d != "time"][0]
            n = ds.sizes[node]
            vals = rng.normal(float(da.mean()), float(da.std()) + 1e-6, (n_days, n)).astype(np.float32)
            ds[name] = (("time", node), vals, da.attrs)
        elif dims in (("seg",), ("reach",)):
            n = ds.sizes[dims[0]]
            ds[name] = (dims, rng.normal(float(da.mean()), float(da.std()) + 1e-6, n), da.attrs)
    return ds


def fit_model(path: str = MODEL_DIR, max_hops: int | None = 8) -> None:
    """The benchmark model, saved to ``path``: graphs of at most ``max_hops`` hops
    (``None``: fit's defaults); bench_scale.py uses the 8-hop one."""
    import xmsgl
    from xmsgl.model import fit

    ds = xmsgl.datasets.synthetic_basin(n_segments=20, start="2001-10-01", end="2003-09-30",
                                        reach_obs_share=0.3)
    model = fit(ds, method="msgl", epochs=1, window=120, stride=120, progress=False,
                graph_options={} if max_hops is None else {"max_hops": max_hops})
    model.save(path, overwrite=True)  # the benchmarks' own scratch folder


def _gpu_memory(device: str) -> dict[str, float]:
    import torch

    if not device.startswith("cuda"):
        return {}
    return {"gpu": torch.cuda.get_device_name(), "peak_gpu_allocated_gb":
            round(torch.cuda.max_memory_allocated() / 1e9, 2)}


def _synthetic_network(n_reach: int, n_days: int) -> xr.Dataset:
    """The synthetic basin generator's network at about ``n_reach`` reaches (its own
    drainage shape: shallower than the random trees), its forcings, ``n_days`` days."""
    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=max(5, round(n_reach / 7.3)), start="2001-01-01",
                                        end=str((pd.Timestamp("2001-01-01")
                                                 + pd.Timedelta(days=n_days - 1)).date()))
    return ds.drop_vars([v for v in ds.data_vars if str(v).endswith("_true")
                         or v in ("seg_temp", "reach_temp")])


def _straightforward(model, ds: xr.Dataset) -> tuple[float, np.ndarray]:  # type: ignore[no-untyped-def]
    """The model's fine prediction (degC, (reach, time)) written the straightforward way,
    and the seconds its computation took: dense coarse, fine and cross-scale matrices, a
    day loop with each day's input projection inside it, both scales from a zero state
    over all days (what ``downscale`` computes for a record of one ``chunk``), then the
    fine head. The inputs are standardized and the graphs built before the clock starts
    (``downscale``'s calls include both), so the comparison favours the reference."""
    import torch

    from xmsgl.graph import build_graphs_weighted
    from xmsgl.model import _rebuild

    net = model.net.cpu().eval()
    graphs = build_graphs_weighted(ds, model.config["graph"].get("weight_stats"),
                                   **model.config["graph"].get("options", {}))
    data = _rebuild(model, ds, graphs, torch.device("cpu"), slice(None))
    x_seg = torch.from_numpy(np.asarray(data.x_seg))
    x_reach = torch.from_numpy(np.asarray(data.x_reach))
    dense = {k: torch.from_numpy(graphs.matrix(k).toarray().astype(np.float32))
             for k in ("coarse", "fine", "cross")}
    hdim = net.hidden
    w_r, b_r = net.cell.recurrent.weight, net.cell.recurrent.bias

    def states(x: torch.Tensor, adj: torch.Tensor, scale: str) -> torch.Tensor:
        w_x = net._projection(scale, x.shape[-1])
        h = x.new_zeros(x.shape[1], hdim)
        c = x.new_zeros(x.shape[1], hdim)
        out = x.new_empty(x.shape[0], x.shape[1], hdim)
        for t in range(x.shape[0]):
            pre = x[t] @ w_x.T + net.gate_bias + h @ w_r[: 4 * hdim].T + b_r[: 4 * hdim]
            i, f, o, g = pre.chunk(4, dim=1)
            q = torch.tanh(h @ w_r[4 * hdim :].T + b_r[4 * hdim :])
            c = torch.sigmoid(f) * (c + adj @ q) + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out[t] = h
        return out

    with torch.no_grad():
        t0 = time.perf_counter()
        h_c = states(x_seg, dense["coarse"], "seg")
        h_f = states(x_reach, dense["fine"], "reach")
        h_cross = torch.stack([dense["cross"] @ h_c[t] for t in range(h_c.shape[0])])
        y = net.fine_head(h_cross.transpose(0, 1), h_f.transpose(0, 1))
        sec = time.perf_counter() - t0
    target = model.config["targets"]
    return sec, y.numpy() * target["std"] + target["mean"]


def _reset_high_water_mark() -> float | None:
    """Reset the process's resident-set high-water mark (Linux ``clear_refs`` 5), so
    that :func:`_high_water_mark_gb` reads the peak from now on, and return the mark
    just after (the memory resident then, GB); None where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _high_water_mark_gb()


def _high_water_mark_gb() -> float | None:
    """``VmHWM`` of ``/proc/self/status`` in GB, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None


def _one(n_reach: int, n_days: int, threads: int, device: str = "cpu", repeats: int = 1,
         max_hops: int | None = None, network: str = "random", reference_max: int = 20_000,
         reference_repeats: int = 1) -> None:
    import torch

    import xmsgl
    from xmsgl.downscale import downscale

    torch.set_num_threads(threads)
    model = xmsgl.load(model_dir(max_hops))
    template = xmsgl.datasets.synthetic_basin(n_segments=5, start="2001-01-01", end="2001-03-01")
    ds = (_network(n_reach, template, n_days) if network == "random"
          else _synthetic_network(n_reach, n_days))
    rss_input = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    rss_before_calls = _reset_high_water_mark()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = downscale(ds, model, check_graph=False, device=device)
        times.append(time.perf_counter() - t0)
    sec = min(times)
    rss_calls = _high_water_mark_gb() if rss_before_calls is not None else None
    from xmsgl.graph import build_graphs

    t1 = time.perf_counter()
    graphs = build_graphs(ds, **model.config["graph"]["options"])
    graph_s = time.perf_counter() - t1
    reach_days = out.sizes["reach"] * out.sizes["time"]
    print(json.dumps({
        "what": "downscale_throughput", "method": model.method, "network": network, "n_reach": int(out.sizes["reach"]),
        "n_seg": int(ds.sizes["seg"]), "days": int(out.sizes["time"]), "threads": threads,
        "device": device, "seconds_each_call": [round(t, 2) for t in times],
        "seconds_best_call": round(sec, 2), "seconds_graph_build": round(graph_s, 2),
        "reach_days_per_s": round(reach_days / sec),
        "reach_days_per_s_first_call": round(reach_days / times[0]),
        "reach_days_per_s_without_graph": round(reach_days / max(sec - graph_s, 1e-9)),
        "graph_options": model.config["graph"]["options"],
        "fine_nonzeros_per_row": round(graphs.fine.nnz / graphs.n_reach, 1),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 2),
        "peak_rss_gb_input": round(rss_input, 2),
        "rss_gb_before_calls": None if rss_before_calls is None else round(rss_before_calls, 2),
        "peak_rss_gb_calls": None if rss_calls is None else round(rss_calls, 2),
        **_gpu_memory(device),
        "goal_reach_days_per_s": 3_000_000, "machine": platform.machine(),
        **provenance(threads), "date": time.strftime("%Y-%m-%d"),
    }), flush=True)
    if device != "cpu" or model.method != "msgl" or out.sizes["reach"] > reference_max:
        # A dense fine matrix of 10^5 reaches would take 40 GB.
        return
    ref_times = []
    for _ in range(max(1, reference_repeats)):
        one_s, ref = _straightforward(model, ds)
        ref_times.append(one_s)
    ref_s = min(ref_times)
    got = out.transpose("reach", "time").values
    print(json.dumps({
        "what": "downscale_reference_dense_straightforward", "network": network,
        "n_reach": int(out.sizes["reach"]), "days": int(out.sizes["time"]), "threads": threads,
        "seconds_each_run": [round(t, 2) for t in ref_times],
        "seconds": round(ref_s, 2), "reach_days_per_s": round(reach_days / ref_s),
        # Best against best, and first against first: like for like either way.
        "speed_ratio_best": round(ref_s / sec, 1),
        "speed_ratio_first": round(ref_times[0] / times[0], 1),
        "max_abs_difference_degc": float(np.max(np.abs(ref - got))),
        **provenance(threads), "date": time.strftime("%Y-%m-%d"),
    }), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu (the goal's setting), cuda, cuda:1, ...")
    ap.add_argument("--repeats", type=int, default=1, help="calls timed per size (the best is reported)")
    ap.add_argument("--network", choices=["random", "synthetic"], default="random",
                    help="random trees, 7 reaches per segment (default), or the synthetic basin "
                         "generator's network, shallower")
    ap.add_argument("--max-hops", type=int, default=None,
                    help="graphs of at most this many hops (default: fit's default graphs)")
    ap.add_argument("--reference-max", type=int, default=20_000,
                    help="largest size timed against the dense straightforward reference")
    ap.add_argument("--reference-repeats", type=int, default=1,
                    help="runs of the reference per size (the best and the first are compared with "
                         "downscale's best and first calls)")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    hops = [] if args.max_hops is None else ["--max-hops", str(args.max_hops)]
    if args.one is not None:
        _one(args.one, args.days, args.threads, args.device, args.repeats, args.max_hops, args.network,
             args.reference_max, args.reference_repeats)
        return
    fit_model(model_dir(args.max_hops), args.max_hops)
    for n in args.sizes:
        subprocess.run([sys.executable, __file__, "--one", str(n), "--days", str(args.days),
                        "--threads", str(args.threads), "--device", args.device,
                        "--repeats", str(args.repeats), "--network", args.network,
                        "--reference-max", str(args.reference_max),
                        "--reference-repeats", str(args.reference_repeats), *hops], check=True)


if __name__ == "__main__":
    main()
