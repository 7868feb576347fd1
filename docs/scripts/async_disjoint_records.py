"""ASYNC-MSGL where the coarse record and the fine one do not overlap in time.

On 20-segment synthetic basins (water years 2001-2006, seeds 0-2), ``seg_temp`` is kept
in water years 2001-2003 only and ``reach_temp`` in 2004-2006 only (the segments gauged
before the fine sites were installed), and 5% of the fine observations are kept
(``sparsify``). ASYNC-MSGL (stage A on the coarse record, stage B without the coarse
task) and fine-only are fitted on water years 2004-2005 (15 epochs), validated on
October 2005 to March 2006 and scored against the truth at every reach from April to
September 2006. MSGL and the other coarse methods refuse such a dataset. Prints one
JSON line per fit.

Run: ``python docs/scripts/async_disjoint_records.py`` (about two minutes on one core).
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np

import xmsgl

PERIODS = {"train": ("2003-10-01", "2005-09-30"), "val": ("2005-10-01", "2006-03-31"),
           "test": ("2006-04-01", "2006-09-30")}


def main() -> None:
    import torch

    torch.set_num_threads(1)
    for seed in (0, 1, 2):
        ds = xmsgl.datasets.synthetic_basin(n_segments=20, start="2000-10-01", end="2006-09-30", seed=seed)
        fine_from = np.datetime64("2003-10-01")
        ds = ds.assign(seg_temp=ds.seg_temp.where(ds.time < fine_from),
                       reach_temp=ds.reach_temp.where(ds.time >= fine_from))
        ds = ds.msgl.sparsify(keep=0.05, seed=seed)
        for method in ("async-msgl", "fine-only"):
            start = time.perf_counter()
            with warnings.catch_warnings():
                # ASYNC-MSGL says it trains stage B without the coarse task; the
                # small basin's few fine observations are warned of too.
                warnings.simplefilter("ignore", xmsgl.XmsglWarning)
                model = ds.msgl.fit(method=method, epochs=15, seed=seed, progress=False, **PERIODS)
                out = ds.msgl.downscale(model, time=PERIODS["test"])
            err = out - ds.reach_temp_true.sel(time=out.time)
            print(json.dumps({"method": method, "seed": seed, "rmse": round(float((err ** 2).mean() ** 0.5), 4),
                              "fine_observations_kept": int(ds.reach_temp.notnull().sum()),
                              "n_reach": ds.sizes["reach"], "fit_seconds": round(time.perf_counter() - start, 1)}),
                  flush=True)


if __name__ == "__main__":
    main()
