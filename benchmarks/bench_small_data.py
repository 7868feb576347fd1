"""Fits on little fine data, and the dmsge backbone's operation count.

Prints JSON lines. The numbers behind ``fit``'s :class:`~xmsgl.FewObservationsWarning`
thresholds and the ``ema_decay`` correction (docs/model.md), and the operation counts of
the dmsge layers' two layouts (docs/dmsge.md):

* ``--case few``: a 20-segment synthetic basin (seed 1, water years 2001-2004, a fifth
  of the reaches gauged; train 2001-2002, validate 2003, test 2004), its training
  observations thinned to 10 or 30 (drawn with seed 0), all at the reach with most of
  them, or all in the training period's last 20 days; msgl, fine-only and remap fitted
  for ``--epochs`` epochs (15), test RMSE at all reaches against the synthetic truth.
* ``--case ema``: the same basin with the generator's default share of gauged reaches,
  5% of its fine observations kept (seed 1), msgl
  fitted for 8 epochs on fit's default split, with and without ``ema_decay=0.95``.
* ``--case ops``: the aten operations of a forward and backward of a dmsge backbone
  (3 layers, ``dynamic_days=20``) over 7 windows of 365 days starting 182 days apart,
  with the windows cut into pieces (the CPU's layout) and as one batch of calendar
  blocks (the GPU's), on a 30-segment basin.

Run: ``python benchmarks/bench_small_data.py`` (all cases; ``--case few`` etc. for one;
``--quick``: a few days, epochs and setups, to check that the script runs).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch
from _provenance import provenance

import xmsgl

PERIODS = {"train": ("2000-10-01", "2002-09-30"), "val": ("2002-10-01", "2003-09-30"),
           "test": ("2003-10-01", "2004-09-30")}


def _basin(share: float | None = 0.2):
    kw = {} if share is None else {"reach_obs_share": share}
    return xmsgl.datasets.synthetic_basin(n_segments=20, start="2000-10-01", end="2004-09-30", seed=1, **kw)


def _thinned(ds, n: int | None = None, reach: int | None = None, last_days: int | None = None):
    """``ds`` with the training period's fine observations thinned (the others kept)."""
    t = ds.time.to_index()
    train = (t >= PERIODS["train"][0]) & (t <= PERIODS["train"][1])
    y = ds.reach_temp.transpose("reach", "time").values
    ok = np.isfinite(y) & train[None, :]
    if reach is not None:
        ok[np.arange(y.shape[0]) != reach] = False
    if last_days is not None:
        ok[:, np.flatnonzero(train)[:-last_days]] = False
    cells = np.argwhere(ok)
    if n is not None and n < len(cells):
        cells = cells[np.random.default_rng(0).choice(len(cells), size=n, replace=False)]
    out = np.where(train[None, :], np.nan, y)
    out[cells[:, 0], cells[:, 1]] = y[cells[:, 0], cells[:, 1]]
    return (ds.assign(reach_temp=(("reach", "time"), out, ds.reach_temp.attrs)),
            len(cells), len(np.unique(cells[:, 0])))


def _rmse(ds, model, test) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = ds.msgl.downscale(model, time=test)
    truth = ds.reach_temp_true.sel(time=pred.time).transpose(*pred.dims)
    return float(np.sqrt(np.nanmean((pred.values - truth.values) ** 2)))


def case_few(epochs: int, quick: bool = False) -> None:
    base = _basin()
    y = base.reach_temp.sel(time=slice(*PERIODS["train"])).transpose("reach", "time").values
    best_reach = int(np.argmax(np.isfinite(y).sum(axis=1)))
    setups = [("10 observations", {"n": 10}), ("30 observations", {"n": 30}),
              ("one reach", {"reach": best_reach}), ("last 20 training days", {"last_days": 20})]
    for label, how in setups[:1] if quick else setups:
        ds, n_obs, n_reach = _thinned(base, **how)
        for method in ("msgl", "fine-only", "remap"):
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                model = ds.msgl.fit(method=method, epochs=epochs, progress=False, seed=0, **PERIODS)
            print(json.dumps({
                "case": "few", "setup": label, "n_obs": n_obs, "n_reaches": n_reach, "method": method,
                "epochs": epochs, "test_rmse": round(_rmse(ds, model, PERIODS["test"]), 4),
                "few_observations_warning": any(w.category is xmsgl.FewObservationsWarning for w in said),
                "seconds": round(time.perf_counter() - t0, 1), **provenance(torch.get_num_threads()),
                "date": time.strftime("%Y-%m-%d %H:%M")}), flush=True)


def case_ema(epochs: int = 8) -> None:
    ds = _basin(share=None).msgl.sparsify(keep=0.05, seed=1)
    for decay in (None, 0.95):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = ds.msgl.fit(method="msgl", epochs=epochs, ema_decay=decay, progress=False, seed=0)
        test = tuple(model.config["periods"]["test"][0])
        print(json.dumps({
            "case": "ema", "ema_decay": decay, "epochs": epochs, "test": list(test),
            "test_rmse": round(_rmse(ds, model, test), 4), "best_epoch": model.history["main"]["best_epoch"],
            "seconds": round(time.perf_counter() - t0, 1), **provenance(torch.get_num_threads()),
            "date": time.strftime("%Y-%m-%d %H:%M")}), flush=True)


def case_ops(n_windows: int = 7, n_days: int = 365) -> None:
    from torch.utils._python_dispatch import TorchDispatchMode

    from xmsgl.graph import build_graphs
    from xmsgl.knn import node_geometry
    from xmsgl.nn import SparseGraph
    from xmsgl.nn.dmsge import DMSGEBackbone

    class Count(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            self.n += 1
            return func(*args, **(kwargs or {}))

    ds = xmsgl.datasets.synthetic_basin(n_segments=30, start="2000-01-01", end="2003-12-31", seed=1)
    torch.manual_seed(0)
    net = DMSGEBackbone(n_inputs=3, hidden=20, layers=3, dynamic_days=20)
    net.set_geometry("reach", node_geometry(ds, "reach"))
    adj = SparseGraph(build_graphs(ds).fine)
    x = torch.randn(n_days, ds.sizes["reach"], n_windows, 3)
    day0 = [10957 + 182 * w for w in range(n_windows)]
    states = {}
    for layout, devices in (("pieces", ()), ("blocks", ("cpu",))):
        DMSGEBackbone.blocks_on = devices
        net.zero_grad()
        count = Count()
        t0 = time.perf_counter()
        with count:
            out = net(x, adj, "reach", day0=day0)
            out.square().mean().backward()
        states[layout] = out.detach()
        print(json.dumps({"case": "ops", "layout": layout, "windows": n_windows, "days": n_days,
                          "n_reach": ds.sizes["reach"], "aten_ops_forward_backward": count.n,
                          "seconds_counted": round(time.perf_counter() - t0, 2),
                          "max_state_difference": float((out.detach() - states["pieces"]).abs().max()),
                          **provenance(torch.get_num_threads()), "date": time.strftime("%Y-%m-%d %H:%M")}),
              flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=("few", "ema", "ops", "all"), default="all")
    ap.add_argument("--epochs", type=int, default=15, help="epochs of the few-observation fits")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a few days, epochs and setups")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.case in ("ops", "all"):
        case_ops(*((3, 60) if args.quick else (7, 365)))
    if args.case in ("ema", "all"):
        case_ema(1 if args.quick else 8)
    if args.case in ("few", "all"):
        case_few(1 if args.quick else args.epochs, args.quick)


if __name__ == "__main__":
    main()
