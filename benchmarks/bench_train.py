"""Training speed of full three-task MSGL on a Delaware-sized synthetic basin.

Prints JSON lines: seconds per epoch with equal task weights and with MGDA-UB,
an epoch being the training steps over all the windows of the basin's record (26
one-year windows, every 182 days): no validation pass, which ``fit`` adds after
each epoch (a year of the network's prediction, about a second on two cores of
the AMD EPYC without AVX-512), and more windows than ``fit`` trains on, as it keeps
the last years for validation and test. In the same run, two references written the straightforward way (dense
adjacency, one window at a time, per-day indexing of the projected inputs, autograd
recording every day's operations), each timed on ``--ref-windows`` windows (3 by
default, after an untimed one; the heads' cost follows each window's observed reaches,
and one window alone made the ratio vary by a fifth from run to run) and scaled to the
epoch, with the speed ratios (``--ref-windows 0`` times the network alone): the fine task alone
(the fine recurrence and a linear head; less work than the timed network, so its
ratio is a lower bound), and all three tasks with equal weights (dense coarse, fine
and cross-scale matrices and the package's heads on the observed reaches: the same
work as the timed network's equal-weights epoch).

Run: ``python benchmarks/bench_train.py`` (``--quick`` for a small basin,
``--max-hops 8`` for the sparser fine graph of ``graph_options={"max_hops": 8}``).
``--device cuda`` trains on the GPU (the goals are for the 2-core CPU), and the
line adds the GPU's peak allocated memory. Before each timed epoch one step (the
windows of one batch) trains a copy of the network, timed apart
(``seconds_untimed_first_window``): what
a process pays once (the import of torch's compiler stack by its first optimizer,
about a second here; the recurrence's reusable buffers; starting CUDA) is not an
epoch's cost.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import resource
import time
from collections.abc import Callable

import numpy as np
import torch
from _provenance import provenance
from torch import nn


def _peak_rss_gb() -> float:
    """The process's peak RSS so far in GB (``ru_maxrss`` is in KiB on Linux): a high-water
    mark, so each line's value covers everything the process ran before it."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


class DenseReference(nn.Module):
    """The straightforward RGrN: dense adjacency, projection and indexing inside the loop."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.w_x = nn.Linear(n_in, 4 * hidden)
        self.w_h = nn.Linear(hidden, 4 * hidden)
        self.w_q = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        n_time, n_node, _ = x.shape
        h = x.new_zeros(n_node, self.hidden)
        c = x.new_zeros(n_node, self.hidden)
        out = x.new_zeros(n_time, n_node)
        for t in range(n_time):
            gates = self.w_x(x[t]) + self.w_h(h)
            i, f, o, g = gates.chunk(4, dim=-1)
            q = torch.tanh(self.w_q(h))
            c = torch.sigmoid(f) * (c + adj @ q) + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out[t] = self.head(h).squeeze(-1)
        return out


class DenseMSGLReference(nn.Module):
    """Full three-task MSGL written the straightforward way.

    The same tasks as the timed network (coarse, cross-scale, fine; equal weights),
    with dense coarse, fine and cross-scale matrices, each scale's projection and
    every per-day indexing inside a day loop that autograd records op by op. The
    heads are the package's (run, as in the timed network, on the reaches observed
    in the window), so the two differ only in how the recurrences and graph
    products are computed.
    """

    def __init__(self, n_seg_in: int, n_reach_in: int, hidden: int) -> None:
        super().__init__()
        from xmsgl.nn.heads import CrossScaleHead, FineHead

        self.hidden = hidden
        self.w_seg = nn.Linear(n_seg_in, 4 * hidden)
        self.w_reach = nn.Linear(n_reach_in, 4 * hidden)
        self.w_h = nn.Linear(hidden, 4 * hidden)
        self.w_q = nn.Linear(hidden, hidden)
        self.coarse_head = nn.Linear(hidden, 1)
        self.cross_head = CrossScaleHead(hidden, 30, 2)
        self.fine_head = FineHead(hidden)

    def _states(self, x: torch.Tensor, adj: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
        n_time, n_node, _ = x.shape
        h = x.new_zeros(n_node, self.hidden)
        c = x.new_zeros(n_node, self.hidden)
        out = []
        for t in range(n_time):
            gates = proj(x[t]) + self.w_h(h)
            i, f, o, g = gates.chunk(4, dim=-1)
            q = torch.tanh(self.w_q(h))
            c = torch.sigmoid(f) * (c + adj @ q) + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out.append(h)
        return torch.stack(out)  # (T, N, H)

    def forward(self, x_seg: torch.Tensor, x_reach: torch.Tensor, adj_c: torch.Tensor,
                adj_f: torch.Tensor, cross_rows: torch.Tensor, rows: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        h_c = self._states(x_seg, adj_c, self.w_seg)
        h_f = self._states(x_reach, adj_f, self.w_reach)
        h_cross = torch.einsum("rs,tsh->rth", cross_rows, h_c)
        _, y_cross = self.cross_head(h_cross)
        y_fine = self.fine_head(h_cross, h_f[:, rows].transpose(0, 1))
        return {"coarse": self.coarse_head(h_c).squeeze(-1), "cross": y_cross.t(), "fine": y_fine.t()}


def _masked_rmse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    mask = torch.isfinite(y)
    if not bool(mask.any()):
        return None
    return torch.sqrt(((pred - torch.nan_to_num(y)) ** 2)[mask].mean() + 1e-8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a 40-segment basin over 3 years")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ref-windows", type=int, default=3,
                    help="windows each reference is timed on (0: no reference)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--device", default="cpu", help="cpu (the goals' setting), cuda, cuda:1, ...")
    ap.add_argument("--max-hops", type=int, default=None,
                    help="graph option max_hops (a sparser fine graph; default: no cut)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import xmsgl
    from xmsgl.convention import REACH, SEG, input_variables
    from xmsgl.graph import build_graphs
    from xmsgl.nn import MSGLNet
    from xmsgl.train import (
        ModelData,
        cross_row_blocks,
        default_batch_size,
        feature_spec,
        fit_scalers,
        input_array,
        make_windows,
        target_array,
        torch_graphs,
        train_tasks,
    )

    if args.quick:
        ds = xmsgl.datasets.synthetic_basin(n_segments=40, start="2007-10-01", end="2010-09-30")
        stride = 182
    else:
        ds = xmsgl.datasets.synthetic_basin()
        stride = 161  # 26 windows of 365 days over water years 2008-2019
    ds = ds.msgl.sparsify(keep=0.05, seed=0)
    graphs = build_graphs(ds, max_hops=args.max_hops)
    spec = feature_spec(ds, input_variables(ds))
    fit_scalers(ds, spec, np.ones(ds.sizes["time"], dtype=bool))
    dev = torch.device(args.device)
    gpu = dev.type == "cuda"

    def sync() -> None:
        if gpu:
            torch.cuda.synchronize(dev)

    data = ModelData(input_array(ds, spec.seg_vars, SEG, spec), input_array(ds, spec.reach_vars, REACH, spec),
                     torch_graphs(graphs, dev), cross_row_blocks(graphs, dev, 2000),
                     np.asarray(graphs.parent.tocsr().indices), graphs.cross.tocsr())
    ys = target_array(ds, "seg_temp", SEG)
    yr = target_array(ds, "reach_temp", REACH)
    mu, sd = float(np.nanmean(ys)), float(np.nanstd(ys))
    ys, yr = (ys - mu) / sd, (yr - mu) / sd
    windows = make_windows([(0, ds.sizes["time"])], 365, stride)
    info = {"n_seg": graphs.n_seg, "n_reach": graphs.n_reach, "n_windows": len(windows),
            "window": 365, "threads": args.threads, "max_hops": args.max_hops,
            "fine_nonzeros_per_row": round(graphs.fine.nnz / graphs.n_reach, 1),
            "device": str(dev), "gpu": torch.cuda.get_device_name(dev) if gpu else None,
            "machine": platform.machine(), **provenance(args.threads), "date": time.strftime("%Y-%m-%d")}
    # The windows a step takes, as train_tasks chooses them: the untimed first step
    # must allocate the buffers of a whole step, or the timed epoch pays for them.
    bs = args.batch_size or default_batch_size(graphs.n_seg + graphs.n_reach, 365, 20)
    results = {}
    for weighting in ("equal", "mgda"):
        torch.manual_seed(0)
        net = MSGLNet(spec.n_common, len(spec.seg_vars) - spec.n_common,
                      len(spec.reach_vars) - spec.n_common, hidden=20).to(dev)
        # One step on a copy first, timed apart: what a process pays once (torch's
        # first optimizer imports its compiler stack, the recurrence's reusable
        # buffers are allocated and zeroed, CUDA starts on a GPU), not every epoch.
        t_warm = time.perf_counter()
        warm = copy.deepcopy(net)
        train_tasks(warm, data, {"coarse": ys, "cross": yr, "fine": yr}, windows[:bs], val=None,
                    epochs=1, weighting=weighting, batch_size=args.batch_size, device=dev,
                    rng=np.random.default_rng(0), progress=False)
        sync()
        warm_s = time.perf_counter() - t_warm
        del warm
        if gpu:
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        hist = train_tasks(net, data, {"coarse": ys, "cross": yr, "fine": yr}, windows, val=None,
                           epochs=args.epochs, weighting=weighting, batch_size=args.batch_size,
                           device=dev, rng=np.random.default_rng(0), progress=False)
        sync()
        sec = (time.perf_counter() - t0) / args.epochs
        results[weighting] = sec
        print(json.dumps({"what": "train_epoch_msgl", "weighting": weighting, **info,
                          "seconds_per_epoch": round(sec, 2),
                          "seconds_untimed_first_window": round(warm_s, 2),
                          "loss": round(hist["loss"][-1], 4),
                          "peak_rss_gb": round(_peak_rss_gb(), 2),
                          **({"peak_gpu_allocated_gb": round(torch.cuda.max_memory_allocated(dev) / 1e9, 2)}
                             if gpu else {}),
                          "goal_s": 20 if weighting == "equal" else 60}), flush=True)

    if args.ref_windows <= 0:
        return
    # The reference: same fine graph as a dense matrix, one window at a time.
    ref = DenseReference(len(spec.reach_vars), 20).to(dev)
    opt = torch.optim.Adam(ref.parameters(), lr=5e-3)
    adj = torch.from_numpy(graphs.fine.toarray().astype(np.float32)).to(dev)
    x = torch.from_numpy(data.x_reach).to(dev)
    y = torch.from_numpy(yr).to(dev)
    # One untimed window first, as for the network above.
    timed = windows[:1] + windows[: args.ref_windows]

    def time_reference(what: str, step: Callable[[int, int], float]) -> None:
        """Train ``step`` on the untimed window, then on the timed ones; print the line."""
        t0 = time.perf_counter()
        loss = float("nan")
        for k, (s, n) in enumerate(timed):
            if k == 1:
                sync()
                t0 = time.perf_counter()
            loss = step(s, n)
        sync()
        per_window = (time.perf_counter() - t0) / args.ref_windows
        ref_epoch = per_window * len(windows)
        print(json.dumps({"what": what, **info,
                          "timed_windows": args.ref_windows, "seconds_per_window": round(per_window, 2),
                          "seconds_per_epoch_extrapolated": round(ref_epoch, 1),
                          "loss_last_window": round(loss, 4), "peak_rss_gb": round(_peak_rss_gb(), 2),
                          "speed_ratio_vs_equal": round(ref_epoch / results["equal"], 1),
                          "speed_ratio_vs_mgda": round(ref_epoch / results["mgda"], 1),
                          "goal_ratio": 10}), flush=True)

    def adam_step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
        opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())

    def fine_only_step(s: int, n: int) -> float:
        loss = _masked_rmse(ref(x[s: s + n], adj), y[s: s + n])
        assert loss is not None
        return adam_step(opt, loss)

    time_reference("train_epoch_reference_dense_fine_task_only", fine_only_step)

    # The like-for-like reference: all three tasks, dense matrices at both scales.
    torch.manual_seed(0)
    full = DenseMSGLReference(data.x_seg.shape[-1], data.x_reach.shape[-1], 20).to(dev)
    opt_full = torch.optim.Adam(full.parameters(), lr=5e-3)
    adj_c = torch.from_numpy(graphs.coarse.toarray().astype(np.float32)).to(dev)
    cross_np = graphs.cross.toarray().astype(np.float32)
    xs_all = torch.from_numpy(data.x_seg).to(dev)
    ys_all = torch.from_numpy(ys).to(dev)

    def three_task_step(s: int, n: int) -> float:
        yw = y[s: s + n]
        rows_np = np.flatnonzero(np.isfinite(yr[s: s + n]).any(axis=0))
        rows = torch.from_numpy(rows_np).to(dev)
        out = full(xs_all[s: s + n], x[s: s + n], adj_c, adj, torch.from_numpy(cross_np[rows_np]).to(dev),
                   rows)
        task_losses = [_masked_rmse(out["coarse"], ys_all[s: s + n]),
                       _masked_rmse(out["cross"], yw[:, rows]), _masked_rmse(out["fine"], yw[:, rows])]
        loss = sum(t for t in task_losses if t is not None)
        assert isinstance(loss, torch.Tensor)
        return adam_step(opt_full, loss)

    time_reference("train_epoch_reference_dense_msgl_three_tasks", three_task_step)

if __name__ == "__main__":
    main()
