"""Feature-space kNN for the dmsge backbone: seconds per window, against a brute-force reference.

Prints JSON lines. For a synthetic basin of about ``--reaches`` reaches (default
3,200, Delaware-sized) and embeddings of size ``--dim`` summarized over a window,
it times, per window:

* ``reference``: the straightforward exact search (full pairwise distance matrix
  by broadcasting, then a full sort of every row);
* ``brute``: :func:`xmsgl.knn.knn_brute` (``torch.cdist`` + ``topk``), exact;
* ``candidates``: :func:`xmsgl.knn.knn_candidates` over the parent segment's
  reaches and the ``--candidates`` nearest geometric neighbours, O(N M d), with
  its recall against the exact neighbours (how good the approximation is for
  these embeddings) and against the exact search restricted to the candidates
  (must be 1: the search itself is exact);
* ``static``: building the geometric kNN graph and the candidate sets once
  (scipy cKDTree), which is not per window.

The goal is a feature kNN for 3,200 reaches within 0.2 s per window on the
project's CPU; ``ratio`` is reference seconds over the method's seconds (each the best
of ``--repeat`` runs). The reference is numpy's broadcast and sort, which run on one
thread, while the methods run on torch's ``--threads``: with two threads the ratio
can favour the methods by up to two; ``--threads 1`` compares like with like. ``peak_rss_mib_after_candidates`` is the process's peak memory
right after the candidate search, which runs before the references.

    python benchmarks/bench_knn.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np
from _provenance import provenance


def _best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--reaches", type=int, default=3200)
    ap.add_argument("--dim", type=int, default=20)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--candidates", type=int, default=32)
    ap.add_argument("--windows", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--noise", type=float, default=0.1,
                    help="std of the noise added to spatially smooth embeddings")
    args = ap.parse_args()

    import torch

    import xmsgl
    from xmsgl.knn import candidate_set, geometric_knn, knn_brute, knn_candidates, node_geometry

    torch.set_num_threads(args.threads)
    n_seg = max(5, round(args.reaches / 7.3))
    ds = xmsgl.datasets.synthetic_basin(n_segments=n_seg, start="2000-01-01", end="2000-01-02", seed=0)
    geom = node_geometry(ds, "reach")
    n = geom.n
    rng = np.random.default_rng(0)
    # Embeddings that vary smoothly in space plus noise, like a trained layer's.
    base = (geom.pos - geom.pos.mean(axis=0)) / geom.pos.std(axis=0)
    proj = rng.normal(size=(2, args.dim))
    feats = np.tanh(base @ proj) + args.noise * rng.normal(size=(args.windows, n, args.dim))
    x = torch.from_numpy(feats.astype(np.float32))
    common = {"reaches": n, "dim": args.dim, "k": args.k, "windows": args.windows,
              **provenance(args.threads), "machine": platform.machine(),
              "date": time.strftime("%Y-%m-%d %H:%M")}

    def reference() -> np.ndarray:
        xs = x.numpy()
        out = []
        for b in range(xs.shape[0]):
            d = ((xs[b][:, None, :] - xs[b][None, :, :]) ** 2).sum(-1)
            np.fill_diagonal(d, np.inf)
            out.append(np.argsort(d, axis=1)[:, : args.k])
        return np.stack(out)

    # The candidate search first, so that the process's peak memory read right after it
    # is that of the basin and the search, not of the references' pairwise matrices.
    t0 = time.perf_counter()
    geometric_knn(geom.pos, args.k)
    cand, valid = candidate_set(geom.pos, geom.group, args.candidates)
    t_static = time.perf_counter() - t0
    c, v = torch.from_numpy(cand), torch.from_numpy(valid)
    t_cand = _best(lambda: knn_candidates(x, c, v, args.k), args.repeat)
    got_cand = knn_candidates(x, c, v, args.k).numpy()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    t_ref = _best(reference, args.repeat)
    exact = reference()
    print(json.dumps({"what": "reference", **common, "seconds": round(t_ref / args.windows, 4)}))

    t_brute = _best(lambda: knn_brute(x, args.k), args.repeat)
    got = knn_brute(x, args.k).numpy()
    same = float(np.mean([len(set(a) & set(b)) / args.k for a, b in zip(got.reshape(-1, args.k),
                                                                        exact.reshape(-1, args.k))]))
    print(json.dumps({"what": "brute", **common, "seconds": round(t_brute / args.windows, 4),
                      "ratio": round(t_ref / t_brute, 1), "recall": round(same, 4),
                      "goal_s": 0.2, "goal_met": t_brute / args.windows <= 0.2}))

    print(json.dumps({"what": "static", **common, "candidates": cand.shape[1],
                      "seconds": round(t_static, 4)}))

    got = got_cand
    recall = float(np.mean([len(set(a) & set(b)) / args.k for a, b in zip(got.reshape(-1, args.k),
                                                                          exact.reshape(-1, args.k))]))
    # Exact search restricted to each node's candidates: the candidate search must match it.
    xs = x.numpy()
    inside = []
    for bw in range(xs.shape[0]):
        d = ((xs[bw][cand] - xs[bw][:, None, :]) ** 2).sum(-1)
        d[~valid] = np.inf
        best = np.take_along_axis(cand, np.argsort(d, axis=1)[:, : args.k], axis=1)
        inside.append(np.mean([len(set(a) & set(b)) / args.k for a, b in zip(got[bw], best)]))
    print(json.dumps({"what": "candidates", **common, "candidates": cand.shape[1],
                      "seconds": round(t_cand / args.windows, 4), "ratio": round(t_ref / t_cand, 1),
                      "recall": round(recall, 4),
                      "recall_within_candidates": round(float(np.mean(inside)), 4), "goal_s": 0.2,
                      "goal_met": t_cand / args.windows <= 0.2,
                      "peak_rss_mib_after_candidates": round(peak_mib)}))


if __name__ == "__main__":
    main()
