"""Test error by how far a node's static inputs lie beyond those of the observed nodes.

The numbers behind :data:`xmsgl.coverage.WARN_SD` (docs/model.md, "What to trust
less"). ``coverage`` gives each node the distance, in standard deviations, by which
its farthest static input lies beyond that input's range over the nodes with training
observations; this script bins the nodes by that distance and gives each bin's RMSE.

* ``--synthetic SEED ...``: the demo's setting (the default 450-segment basin, water
  years 2014-2019, 1% of the fine observations kept, one-year windows, 6 epochs,
  3 of stage A for ASYNC-MSGL), each seed's own basin and draw; the test year's RMSE
  against the truth at every reach, binned by the larger of the reach's distance and
  its segment's (the reach's own for fine-only, which reads no segment).
* ``--drb DIR``: Delaware splits fitted by ``docs/scripts/drb_first_run.py --save``;
  ``DIR`` holds ``{method}_s{seed}.json`` reports with ``held_out_by_segment`` and
  ``msgl_s{seed}_model`` folders. Each held-out segment's fine RMSE at its held-out
  sites is binned by the segment's distance under that split's MSGL model (the
  distance depends only on which segments the split observes, the same for every
  method), pooled over splits by observation count.

Run: ``python docs/scripts/distance_vs_error.py --synthetic 0 1 2`` (about four minutes a
seed on two cores) or ``XMSGL_DATA_DIR=<folder of the mirror files> python
docs/scripts/distance_vs_error.py --drb DIR``. Prints JSON lines.
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

EDGES = (0.0, 1.0, 2.0, 2.5, 3.0, 5.0)


def bins(distance: np.ndarray, sq_error: np.ndarray, weight: np.ndarray | None = None) -> list[dict]:
    """Per bin of ``distance`` (0: inside the observed range; then the half-open
    intervals between ``EDGES``, the last open): nodes, weight and RMSE."""
    weight = np.ones_like(sq_error) if weight is None else weight
    inside = distance <= 0
    rows = []
    for k, lo in enumerate((None, *EDGES)):
        if lo is None:
            sel, label = inside, "0"
        else:
            hi = EDGES[k] if k < len(EDGES) else np.inf
            sel, label = ~inside & (distance > lo) & (distance <= hi), f"({lo:g}, {hi:g}]"
        w = float(weight[sel].sum())
        rmse = float(np.sqrt((weight[sel] * sq_error[sel]).sum() / w)) if w else None
        rows.append({"bin": label, "nodes": int(sel.sum()), "weight": w, "rmse": rmse})
    return rows


def synthetic(seed: int, methods: list[str]) -> None:
    import torch

    import xmsgl
    from xmsgl.coverage import coverage
    from xmsgl.demo import DEMO_SETTINGS, periods_kw
    from xmsgl.downscale import downscale
    from xmsgl.model import fit
    from xmsgl.sampling import sparsify
    from xmsgl.train import split_periods

    torch.set_num_threads(2)
    settings = DEMO_SETTINGS["full"]
    ds = xmsgl.datasets.synthetic_basin(seed=seed, **settings["basin"])
    periods = split_periods(pd.DatetimeIndex(ds["time"].values))
    test = periods["test"][0]
    sparse = sparsify(ds, keep=0.01, seed=seed)
    truth = ds["reach_temp_true"].sel(time=slice(*test)).transpose("reach", "time").values
    for method in methods:
        kw = dict(settings["fit"])
        if method != "async-msgl":
            kw.pop("pretrain_epochs")
        model = fit(sparse, method=method, seed=seed, progress=False, **periods_kw(periods), **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the warning is what is being calibrated
            pred = downscale(sparse, model, time=test).transpose("reach", "time").values
        cov = coverage(sparse, model, time=test)
        distance = cov["reach_beyond_sd"].values
        if "seg_beyond_sd" in cov:
            seg = pd.Series(cov["seg_beyond_sd"].values, index=cov["seg"].values)
            distance = np.maximum(distance, seg.reindex(sparse["reach_seg"].values).values)
        sq = np.nanmean((pred - truth) ** 2, axis=1)
        print(json.dumps({"data": "synthetic", "seed": seed, "method": method,
                          "rmse": float(np.sqrt(sq.mean())), "bins": bins(distance, sq)}), flush=True)


def drb(folder: Path) -> None:
    import xmsgl
    from xmsgl.datasets.drb import open_drb

    ds = open_drb(source="mirror", progress=False)
    pooled: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for path in sorted(folder.glob("msgl_s*_model")):
        seed = re.fullmatch(r"msgl_s(\d+)_model", path.name)
        if seed is None:
            continue
        cov = ds.msgl.coverage(xmsgl.load(path))
        distance = dict(zip(ds["seg"].values.tolist(), cov["seg_beyond_sd"].values.tolist()))
        for report in sorted(folder.glob(f"*_s{seed.group(1)}.json")):
            rep = json.loads(report.read_text())
            for seg, groups in rep.get("held_out_by_segment", {}).items():
                for group, scores in groups.items():
                    fine = [v for k, v in scores.items() if k.startswith("fine")]
                    if fine and fine[0]["n"] and np.isfinite(fine[0]["rmse"]):
                        pooled.setdefault((rep["method"], group), []).append(
                            (distance[int(seg)], fine[0]["rmse"] ** 2, fine[0]["n"]))
    for (method, group), rows in sorted(pooled.items()):
        d, sq, n = (np.array(c, dtype=float) for c in zip(*rows))
        print(json.dumps({"data": "drb", "method": method, "group": group,
                          "bins": bins(d, sq, n)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, nargs="*", default=[], metavar="SEED")
    parser.add_argument("--methods", nargs="+", default=["async-msgl", "msgl", "fine-only"])
    parser.add_argument("--drb", type=Path, metavar="DIR")
    args = parser.parse_args()
    for seed in args.synthetic:
        synthetic(seed, args.methods)
    if args.drb is not None:
        drb(args.drb)


if __name__ == "__main__":
    main()
