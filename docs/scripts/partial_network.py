"""Downscaling part of the Delaware network with ``check_graph=False``.

A 5-epoch MSGL model fitted on 1979 (validation 1980-01..06) is run on its own network
and on parts of it: whole drainage basins (which reproduce the network's values) and
headwater sub-basins cut out of a larger basin at a segment (whose reaches lose the
flow path below the cut). For each part: its size, whether ``downscale`` warned of the
cut, and the difference from the full network's prediction at the same reaches over
1980-07..12 (the mean absolute difference per reach, its median and largest over the
reaches).

Run: ``XMSGL_DATA_DIR=<folder of the mirror files> python docs/scripts/partial_network.py``
(about a minute on one core). Prints JSON lines.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import xarray as xr
from _drb_1979 import TEST, drb_and_model


def upstream_of(ds: xr.Dataset, seg: int) -> list[int]:
    """``seg`` and every segment that drains to it."""
    up: dict[int, list[int]] = {}
    for s, t in zip(ds.seg.values.tolist(), ds.seg_to.values.tolist(), strict=True):
        up.setdefault(int(t), []).append(int(s))
    out, todo = [seg], [seg]
    while todo:
        for u in up.get(todo.pop(), []):
            out.append(u)
            todo.append(u)
    return out


def part(ds: xr.Dataset, segs: list[int], outlet: int) -> xr.Dataset:
    """The segments ``segs`` and their reaches, ``outlet`` made an outlet."""
    sub = ds.sel(seg=segs).sel(reach=ds.reach[ds.reach_seg.isin(segs)])
    sub = sub.assign(seg_to=sub.seg_to.where(sub.seg != outlet, 0))
    to = sub.reach_to.values.copy()
    to[~np.isin(to, sub.reach.values)] = 0
    return sub.assign(reach_to=("reach", to, sub.reach_to.attrs))


def main() -> None:
    ds, model = drb_and_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the network's own warnings, said elsewhere
        full = ds.msgl.downscale(model, time=TEST)
    outlets = [int(s) for s, t in zip(ds.seg.values, ds.seg_to.values, strict=True) if int(t) == 0]
    largest = max(outlets, key=lambda o: len(upstream_of(ds, o)))
    cases = [("whole basin", largest)] + [("cut-out", s) for s in (1639, 1578, 1489)]
    for kind, seg in cases:
        segs = upstream_of(ds, seg)
        sub = part(ds, segs, seg)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = sub.msgl.downscale(model, check_graph=False, time=TEST)
        said = [str(w.message) for w in caught if "cuts its drainage basins" in str(w.message)]
        diff = abs(pred - full.sel(reach=pred.reach)).mean("time")
        print(json.dumps({"part": kind, "at_segment": seg, "segments": len(segs),
                          "reaches": int(sub.sizes["reach"]), "warned": bool(said),
                          "median_reach_mean_abs_diff_degC": round(float(diff.median()), 3),
                          "max_reach_mean_abs_diff_degC": round(float(diff.max()), 3)}), flush=True)


if __name__ == "__main__":
    main()
