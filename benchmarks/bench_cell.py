"""The recurrent graph cell against the same recurrence written with autograd.

The reference is the input projection and the day loop as autograd sees them
(about twenty recorded operations per day, their inputs saved for backward); the
cell under test is :meth:`xmsgl.nn.GraphRecurrent.run_inputs`, the path the models
use (raw inputs, the projection done inside the recurrence). Both run with the same weights on the same inputs
over the fine graph of the default synthetic basin (or a random river-like graph of
``--reaches`` nodes with ``--synthetic``), interleaved in one process so that load
from other jobs falls on both. Prints JSON lines: forward+backward seconds per
window, peak memory held by the saved activations, inference seconds, speed ratios,
and the largest differences of outputs and gradients.

Run: ``python benchmarks/bench_cell.py`` (``--days 365 --batch 1 --repeats 3``).
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from _provenance import provenance

from xmsgl.nn import GraphRecurrent, SparseGraph, graph_product


def reference_forward(cell: GraphRecurrent, gates_in: torch.Tensor, adj: SparseGraph) -> torch.Tensor:
    """The recurrence written directly with autograd operations, one day at a time."""
    n_time, n_node, n_batch, _ = gates_in.shape
    hdim = cell.hidden
    h = gates_in.new_zeros(n_node, n_batch, hdim)
    c = gates_in.new_zeros(n_node, n_batch, hdim)
    w_gates, w_q = cell.recurrent.weight.t().split([4 * hdim, hdim], dim=1)
    b_gates, b_q = cell.recurrent.bias.split([4 * hdim, hdim])
    outs = []
    for x_t in gates_in.unbind(0):
        h2 = h.reshape(-1, hdim)
        gates = torch.addmm(b_gates, h2, w_gates).reshape(n_node, n_batch, 4 * hdim) + x_t
        q_t = torch.tanh(torch.addmm(b_q, h2, w_q)).reshape(n_node, n_batch, hdim)
        sig, g_lin = gates.split([3 * hdim, hdim], dim=-1)
        i_t, f_t, o_t = torch.sigmoid(sig).chunk(3, dim=-1)
        c = f_t * (c + graph_product(adj, q_t)) + i_t * torch.tanh(g_lin)
        h = o_t * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, 0)


def _graph(args: argparse.Namespace) -> Any:
    if not args.synthetic:
        import xmsgl
        from xmsgl.graph import build_graphs

        return build_graphs(xmsgl.datasets.synthetic_basin()).fine
    # A random tree with self-loops, row-normalized: the sparsity of a river network.
    rng = np.random.default_rng(0)
    n = args.reaches
    parent = np.array([rng.integers(i + 1, n) if i < n - 1 else i for i in range(n)])
    a = sp.coo_matrix((np.ones(n), (np.arange(n), parent)), shape=(n, n))
    a = (a + a.T + sp.eye(n)).tocsr()
    a.data[:] = 1.0
    return sp.csr_matrix(a.multiply(1.0 / a.sum(axis=1)))


def _int64(adj: torch.Tensor) -> torch.Tensor:
    return torch.sparse_csr_tensor(adj.crow_indices().long(), adj.col_indices().long(), adj.values(),
                                   size=adj.shape)


def _saved_bytes(fn: Any) -> tuple[Any, int]:
    """Run ``fn`` and count the bytes of the tensors autograd keeps for backward."""
    total = 0
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = t.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--batch", type=int, default=1, help="windows side by side")
    ap.add_argument("--hidden", type=int, default=20)
    ap.add_argument("--features", type=int, default=11, help="raw input variables")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--synthetic", action="store_true", help="random graph instead of the basin")
    ap.add_argument("--reaches", type=int, default=3288)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    matrix = _graph(args)
    graph = SparseGraph(matrix)
    # The reference as it was: the same matrix with 64-bit indices.
    graph64 = SparseGraph(matrix)
    # (adj_t is made on first use; the int64 copy takes its place.)
    graph64.adj, graph64._adj_t = _int64(graph.adj), _int64(graph.adj_t)
    n_node = graph.shape[0]
    torch.manual_seed(0)
    cell = GraphRecurrent(args.hidden)
    with torch.no_grad():
        cell.recurrent.weight.mul_(2.0)  # livelier gates than at initialization
    x = torch.randn(args.days, n_node, args.batch, args.features)
    w_x = torch.nn.Parameter(torch.randn(4 * args.hidden, args.features) * 0.5)
    b_x = torch.nn.Parameter(torch.randn(4 * args.hidden) * 0.1)
    params = [w_x, b_x, *cell.parameters()]

    def reference(cell: GraphRecurrent, xin: torch.Tensor, graph: SparseGraph) -> torch.Tensor:
        return reference_forward(cell, xin @ w_x.t() + b_x, graph)

    def new(cell: GraphRecurrent, xin: torch.Tensor, graph: SparseGraph) -> torch.Tensor:
        out = cell.run_inputs(xin, w_x, b_x, graph)
        assert isinstance(out, torch.Tensor)
        return out

    w_out = torch.randn(args.days, n_node, args.batch, args.hidden)
    info = {**provenance(args.threads), "n_node": n_node, "days": args.days, "batch": args.batch, "hidden": args.hidden,
            "threads": args.threads, "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d")}

    def train_step(fn: Any, graph: SparseGraph) -> tuple[float, int, torch.Tensor, list[torch.Tensor]]:
        for p in params:
            p.grad = None
        xin = x.clone().requires_grad_(True)
        gc.collect()
        t0 = time.perf_counter()
        hs, saved = _saved_bytes(lambda: fn(cell, xin, graph))
        (hs * w_out).sum().backward()
        sec = time.perf_counter() - t0
        grads = [xin.grad] + [p.grad for p in params]
        return sec, saved, hs.detach(), [g.detach() for g in grads if g is not None]

    def infer(fn: Any, graph: SparseGraph) -> tuple[float, torch.Tensor]:
        with torch.inference_mode():
            t0 = time.perf_counter()
            hs = fn(cell, x, graph)
            return time.perf_counter() - t0, hs

    times: dict[str, list[float]] = {k: [] for k in ("ref", "ref32", "new", "ref_inf", "ref32_inf", "new_inf")}
    saved: dict[str, int] = {}
    results: dict[str, Any] = {}
    for _ in range(args.repeats):
        runs = (("ref", reference, graph64), ("ref32", reference, graph), ("new", new, graph))
        for name, fn, gr in runs:
            sec, nbytes, hs, grads = train_step(fn, gr)
            times[name].append(sec)
            saved[name] = nbytes
            results[name] = (hs, grads)
            sec_inf, hs_inf = infer(fn, gr)
            times[name + "_inf"].append(sec_inf)
            results[name + "_inf"] = hs_inf
    (h_ref, g_ref), (h_new, g_new) = results["ref"], results["new"]
    rel_grad = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(g_new, g_ref))
    best = {k: min(v) for k, v in times.items()}
    reach_days = n_node * args.batch * args.days
    print(json.dumps({"what": "cell_train_window", **info,
                      "seconds_reference": round(best["ref"], 3), "seconds_new": round(best["new"], 3),
                      "speed_ratio": round(best["ref"] / best["new"], 2),
                      "seconds_reference_int32_graph": round(best["ref32"], 3),
                      "speed_ratio_vs_int32_reference": round(best["ref32"] / best["new"], 2),
                      "saved_gb_reference": round(saved["ref"] / 1e9, 3),
                      "saved_gb_new": round(saved["new"] / 1e9, 3),
                      "memory_ratio": round(saved["ref"] / max(saved["new"], 1), 2),
                      "max_abs_diff_h": float((h_new - h_ref).abs().max()),
                      "max_rel_diff_grad": rel_grad}), flush=True)
    print(json.dumps({"what": "cell_inference", **info,
                      "seconds_reference": round(best["ref_inf"], 3),
                      "seconds_new": round(best["new_inf"], 3),
                      "speed_ratio": round(best["ref_inf"] / best["new_inf"], 2),
                      "seconds_reference_int32_graph": round(best["ref32_inf"], 3),
                      "speed_ratio_vs_int32_reference": round(best["ref32_inf"] / best["new_inf"], 2),
                      "reach_days_per_s_new": round(reach_days / best["new_inf"]),
                      "max_abs_diff_h": float((results["new_inf"] - results["ref_inf"]).abs().max())}),
          flush=True)


if __name__ == "__main__":
    main()
