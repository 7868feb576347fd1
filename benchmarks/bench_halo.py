"""Lazy blocks against one block, by graph options, fit seed and halo depth.

A synthetic basin (160 segments in two components by default; more segments give
one component) is fitted for one epoch on a 10% sample with each seed, downscaled
in memory as one block and lazily in blocks of 150 reaches (so components are
split) with each halo (``null``: the model's default). Prints one JSON line per
case: the largest absolute difference in degC and the reaches above 0.05 degC.

Run: ``python benchmarks/bench_halo.py '{"max_hops": 3}' '[0,1,2,3,4]' '[null,9,15]'``
(add a fourth argument, e.g. ``300``, for the single-component basin).
"""

from __future__ import annotations

import json
import sys

import numpy as np
from _provenance import provenance


def main() -> None:
    import torch

    import xmsgl

    torch.set_num_threads(1)
    opts, seeds, halos = (json.loads(a) for a in sys.argv[1:4])
    n_seg = int(sys.argv[4]) if len(sys.argv) > 4 else 160
    ds = xmsgl.datasets.synthetic_basin(n_segments=n_seg, start="2000-10-01", end="2002-09-30",
                                        seed=0, n_outlets=1 if n_seg > 160 else None)
    for seed in seeds:
        m = ds.msgl.sparsify(keep=0.1).msgl.fit(method="msgl", epochs=1, progress=False,
                                                graph_options=opts, seed=seed)
        ref = ds.msgl.downscale(m)
        for halo in halos:
            q = ds.chunk({"time": 365}).msgl.downscale(m, reach_chunk=150, halo=halo)
            d = np.abs(q.compute().values - ref.values)
            print(json.dumps({"what": "halo_vs_one_block", "opts": opts, "seed": seed,
                              "halo": q.attrs["history"].split("halo=")[1].split(",")[0],
                              "max_abs_diff_degC": round(float(d.max()), 4),
                              "reaches_over_0.05": int((d.max(1) > 0.05).sum()),
                              "goal_max_abs_diff_degC": 0.05, **provenance()}), flush=True)


if __name__ == "__main__":
    main()
