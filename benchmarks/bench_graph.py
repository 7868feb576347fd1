"""Time :func:`xmsgl.graph.build_graphs` on Delaware-sized and 10^5-reach networks.

Run from the repository root::

    python benchmarks/bench_graph.py            # both sizes
    python benchmarks/bench_graph.py --quick    # one repeat each

Prints one JSON line per measurement: ``what``, ``n_seg``, ``n_reach``,
``seconds`` (best of ``--repeat`` calls), ``nnz`` (stored entries of the fine
weights, the largest matrix), ``peak_mem_mb`` (peak of Python-tracked allocations,
numpy and scipy arrays included, during one extra call under :mod:`tracemalloc`),
the mean and largest number of hops from a reach to its outlet, and, for the
Delaware size, ``ratio`` against all-pairs ``scipy.sparse.csgraph.shortest_path``
(dense and unsigned) timed in the same run. ``deep_chain_hops_and_cycles`` times the
hops to the outlet and the cycle check on a chain of 5 x 10^4 nodes (2 x 10^4 with
``--quick``) against the walk of one step per level (quadratic in the depth: 9 s at
5 x 10^4), in the same run. The networks are random river forests
from ``tests/strategies.py``, so the script needs no data files; when
``xmsgl.datasets.synthetic_basin`` is available it is timed as well.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.csgraph as csgraph
import xarray as xr

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _provenance import provenance  # noqa: E402

from tests.strategies import random_river_dataset  # noqa: E402
from xmsgl.convention import topology_arrays  # noqa: E402
from xmsgl.graph import build_graphs  # noqa: E402


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def peak_mb(fn: Callable[[], Any]) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def depth(to_idx: np.ndarray) -> np.ndarray:
    """Hops from each node to its outlet, the straightforward way: every node one
    hop down per step, one step per level of the network (the reference of
    :func:`measure_deep_chain`)."""
    d = np.zeros(to_idx.size, dtype=np.int64)
    cur = to_idx.copy()
    alive = cur >= 0
    while alive.any():
        d[alive] += 1
        cur[alive] = to_idx[cur[alive]]
        alive = cur >= 0
    return d


def peel_cycles(to_idx: np.ndarray) -> np.ndarray:
    """Nodes on a cycle, the straightforward way: headwaters peeled a level a step."""
    n = to_idx.size
    indeg = np.bincount(to_idx[to_idx >= 0], minlength=n)
    alive = np.ones(n, dtype=bool)
    frontier = np.flatnonzero(indeg == 0)
    while frontier.size:
        alive[frontier] = False
        nxt = to_idx[frontier]
        nxt = nxt[nxt >= 0]
        np.subtract.at(indeg, nxt, 1)
        cand = np.unique(nxt)
        frontier = cand[(indeg[cand] == 0) & alive[cand]]
    return np.flatnonzero(alive)


def measure_deep_chain(n: int, repeat: int) -> dict[str, Any]:
    """Hops to the outlet and the cycle check (what validate, graphs and the lazy
    partition walk) on a chain of ``n`` nodes, the deepest network there is, by
    pointer doubling against one step per level."""
    from xmsgl.convention import _find_cycles, hops_to_outlet

    to_idx = np.append(np.arange(1, n), -1)
    seconds, (hops, cycles) = best_of(lambda: (hops_to_outlet(to_idx), _find_cycles(to_idx)), repeat)
    ref_seconds, (ref_hops, ref_cycles) = best_of(lambda: (depth(to_idx), peel_cycles(to_idx)), repeat)
    assert np.array_equal(hops, ref_hops) and cycles.size == ref_cycles.size == 0
    row: dict[str, Any] = {
        "what": "deep_chain_hops_and_cycles", "n_nodes": n, "seconds": round(seconds, 4),
        "reference": "one numpy step per level (hops) and headwater peeling (cycles)",
        "reference_seconds": round(ref_seconds, 4), "speed_ratio": round(ref_seconds / seconds, 1),
        "python": platform.python_version(), "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    row.update(provenance())
    return row


def dense_reference(ds: xr.Dataset) -> Callable[[], Any]:
    topo = topology_arrays(ds)
    down = np.flatnonzero(topo.reach_to_idx >= 0)
    # Edge weight = length of the downstream node; a tiny floor keeps zero lengths as edges.
    graph = sp.csr_matrix(
        (np.maximum(topo.reach_length[topo.reach_to_idx[down]], 1e-9),
         (down, topo.reach_to_idx[down])),
        shape=(topo.n_reach, topo.n_reach),
    )
    return lambda: csgraph.shortest_path(graph, method="D", directed=False)


def measure(what: str, ds: xr.Dataset, repeat: int, reference: bool, **kw: Any) -> dict[str, Any]:
    seconds, g = best_of(lambda: build_graphs(ds, **kw), repeat)
    d = depth(topology_arrays(ds).reach_to_idx)
    row: dict[str, Any] = {
        "what": what,
        "n_seg": g.n_seg,
        "n_reach": g.n_reach,
        "n_outlets": g.n_outlets_reach,
        "options": {k: v for k, v in g.options.items() if v is not None},
        "seconds": round(seconds, 4),
        "nnz": int(g.fine.nnz),
        "nnz_cross": int(g.cross.nnz),
        "peak_mem_mb": round(peak_mb(lambda: build_graphs(ds, **kw)), 1),
        "reach_depth_mean": round(float(d.mean()), 1),
        "reach_depth_max": int(d.max()),
    }
    if reference:
        ref_seconds, _ = best_of(dense_reference(ds), repeat)
        row["reference"] = "scipy.sparse.csgraph.shortest_path, dense unsigned all pairs"
        row["reference_seconds"] = round(ref_seconds, 4)
        # Reference seconds over the method's, as in the other benchmarks (until
        # this was recorded as speed_ratio, "ratio" was the inverse, method over reference).
        row["speed_ratio"] = round(ref_seconds / seconds, 2)
    row["python"] = platform.python_version()
    row["machine"] = platform.machine()
    row["date"] = time.strftime("%Y-%m-%d")
    row.update(provenance())
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="calls per size (best is kept)")
    parser.add_argument("--quick", action="store_true", help="one call per size")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else args.repeat

    delaware = random_river_dataset(0, 450, reaches_per_seg=(2, 12), window=4)
    print(json.dumps(measure("delaware_sized_random", delaware, repeat, reference=True)), flush=True)
    print(json.dumps(measure("delaware_sized_random", delaware, repeat, reference=False,
                             weighting="adjacency")), flush=True)

    print(json.dumps(measure_deep_chain(20_000 if args.quick else 50_000, repeat)), flush=True)

    large = random_river_dataset(1, 14_300, n_outlets=200, reaches_per_seg=(2, 12), window=4)
    print(json.dumps(measure("1e5_reaches_random", large, repeat, reference=False)), flush=True)
    print(json.dumps(measure("1e5_reaches_random", large, repeat, reference=False,
                             max_distance=50_000.0)), flush=True)

    try:
        from xmsgl.datasets import synthetic_basin

        basin = synthetic_basin(n_segments=450, start="2000-01-01", end="2000-01-10", seed=0)
    except (ImportError, NotImplementedError, TypeError) as err:
        print(json.dumps({"what": "synthetic_basin", "skipped": f"{type(err).__name__}: {err}"}))
    else:
        print(json.dumps(measure("synthetic_basin_450", basin, repeat, reference=False)), flush=True)


if __name__ == "__main__":
    main()
