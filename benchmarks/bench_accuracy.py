"""Accuracy on the synthetic basin: test RMSE at all reaches against the truth.

For each share of fine observations kept (``--keep``) and each seed, the basin is
sparsified (the same share in training and validation), the methods are fitted,
the test period is downscaled and scored against ``reach_temp_true`` at every
reach. Prints one JSON line per fit and a summary line per (method, keep) with
mean and standard deviation over seeds, and the relative gain of MSGL over the
best single-scale baseline (fine-only, remap). A first line scores the segment
truth itself carried to reaches (each reach takes ``seg_temp_true`` of its
segment): how far a perfect coarse model is from the fine truth when reaches only
inherit it, the part of the fine signal the coarse scale does not carry. Each fit's
line also splits the RMSE between reaches with fine observations in the training
period and the others, and for msgl and async-msgl scores the cross-scale estimate
(task 1, ``downscale(..., scale="cross")``) that the fine task refines.
Runs of separate seeds (often one process per seed) are pooled and compared seed
by seed, with an interval for the mean gain, by ``summarize_accuracy.py``.

Run (the full setting is long on two cores)::

    python benchmarks/bench_accuracy.py                      # default basin, 3 seeds
    python benchmarks/bench_accuracy.py --n-segments 60 --years 6 --epochs 8
    python benchmarks/bench_accuracy.py --drop reach_gw_share reach_shade   # reach attributes unknown
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
from _provenance import provenance


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-segments", type=int, default=450)
    ap.add_argument("--years", type=int, default=12, help="water years, ending 2019-09-30")
    ap.add_argument("--keep", type=float, nargs="+", default=[0.01, 0.05])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seeds run are first-seed, first-seed + 1, ... (to add seeds to a run)")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--pretrain-epochs", type=int, default=None)
    ap.add_argument("--stride", type=int, default=182)
    ap.add_argument("--weighting", default="mgda")
    ap.add_argument("--task-weights", nargs="+", default=None, metavar="TASK=W",
                    help="weights for --weighting fixed, e.g. coarse=0.1 cross=0.1 fine=0.8")
    ap.add_argument("--methods", nargs="+", default=["msgl", "async-msgl", "fine-only", "remap"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--drop", nargs="+", default=[],
                    help="input variables the models do not get (e.g. reach_gw_share reach_shade: "
                         "reaches whose local attributes are unknown); the truth is unchanged")
    ap.add_argument("--fine-head", default=None, choices=["concat", "residual"],
                    help="fine_head of msgl and async-msgl (default: fit's)")
    ap.add_argument("--input-scaling", default=None, choices=["pooled", "per-scale"],
                    help="input_scaling of msgl and async-msgl (default: fit's)")
    ap.add_argument("--max-hops", type=int, default=None,
                    help="graph_options={'max_hops': N} for every method (default: fit's graphs)")
    ap.add_argument("--ema-decay", type=float, default=None,
                    help="ema_decay of every network method (default: none, fit's)")
    ap.add_argument("--lr-schedule", default=None, choices=["constant", "cosine"],
                    help="lr_schedule of every network method (default: fit's)")
    ap.add_argument("--weight-decay", type=float, default=None,
                    help="weight_decay of every network method (default: fit's, 0)")
    ap.add_argument("--hidden", type=int, default=None,
                    help="hidden size of every network method (default: fit's, 20)")
    ap.add_argument("--stage-a-tasks", nargs="+", default=None,
                    choices=["coarse", "remap", "remap-fine"],
                    help="stage_a_tasks of async-msgl (default: fit's, coarse remap remap-fine)")
    args = ap.parse_args()
    task_weights = None
    if args.task_weights:
        task_weights = {k: float(v) for k, v in (kv.split("=", 1) for kv in args.task_weights)}

    import torch

    import xmsgl
    from xmsgl.convention import topology_arrays
    from xmsgl.downscale import downscale
    from xmsgl.metrics import rmse as rmse_of
    from xmsgl.model import fit
    from xmsgl.sampling import sparsify
    from xmsgl.train import split_periods

    if args.threads:
        torch.set_num_threads(args.threads)
    start = f"{2019 - args.years}-10-01"
    ds = xmsgl.datasets.synthetic_basin(n_segments=args.n_segments, start=start, end="2019-09-30")
    periods = split_periods(pd.DatetimeIndex(ds.time.values))
    test = periods["test"][0]
    truth = ds.reach_temp_true.sel(time=slice(*test)).transpose("reach", "time")
    setting = {"n_seg": ds.sizes["seg"], "n_reach": ds.sizes["reach"], "days": ds.sizes["time"],
               "test": test, "epochs": args.epochs, "stride": args.stride, "weighting": args.weighting,
               # Read by async-msgl, direct and progressive; a run with fit's default
               # leaves it out (as the runs before it was recorded did).
               **({"pretrain_epochs": args.pretrain_epochs} if args.pretrain_epochs is not None else {}),
               **({"task_weights": task_weights} if task_weights else {}),
               "dropped": args.drop, "fine_head": args.fine_head or "default",
               "input_scaling": args.input_scaling or "default",
               **({"ema_decay": args.ema_decay} if args.ema_decay is not None else {}),
               **({"lr_schedule": args.lr_schedule} if args.lr_schedule else {}),
               **({"weight_decay": args.weight_decay} if args.weight_decay is not None else {}),
               **({"hidden": args.hidden} if args.hidden is not None else {}),
               **({"max_hops": args.max_hops} if args.max_hops is not None else {}),
               "date": time.strftime("%Y-%m-%d"), **provenance(args.threads or torch.get_num_threads())}
    seg_pos = topology_arrays(ds).reach_seg_idx
    inherited = ds.seg_temp_true.sel(time=slice(*test)).transpose("seg", "time").values[seg_pos]
    gap = inherited - truth.values
    print(json.dumps({"what": "test_rmse_segment_truth_inherited",
                      "rmse": round(float(np.sqrt(np.nanmean(gap ** 2))), 4),
                      "mae": round(float(np.nanmean(np.abs(gap))), 4), **setting}), flush=True)
    scores: dict[tuple[str, float], list[float]] = {}
    for keep in args.keep:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            sparse = sparsify(ds, keep=keep, seed=seed).drop_vars(args.drop)
            seen = sparse.reach_temp.sel(time=slice(*periods["train"][0])).notnull()
            gauged = seen.any("time").transpose("reach").values
            for method in args.methods:
                t0 = time.perf_counter()
                model = fit(sparse, method=method, seed=seed, epochs=args.epochs,
                            **({"pretrain_epochs": args.pretrain_epochs}
                               if method in ("async-msgl", "direct", "progressive") else {}),
                            stride=args.stride,
                            **({"weighting": args.weighting, "task_weights": task_weights}
                               if method in ("msgl", "async-msgl") else {}),
                            progress=False,
                            **({"fine_head": args.fine_head} if args.fine_head
                               and method in ("msgl", "async-msgl") else {}),
                            **({"input_scaling": args.input_scaling} if args.input_scaling
                               and method in ("msgl", "async-msgl") else {}),
                            **({"ema_decay": args.ema_decay} if args.ema_decay is not None
                               else {}),
                            **({"lr_schedule": args.lr_schedule} if args.lr_schedule else {}),
                            **({"weight_decay": args.weight_decay}
                               if args.weight_decay is not None else {}),
                            **({"hidden": args.hidden} if args.hidden is not None else {}),
                            **({"graph_options": {"max_hops": args.max_hops}}
                               if args.max_hops is not None else {}),
                            **({"stage_a_tasks": tuple(args.stage_a_tasks)}
                               if args.stage_a_tasks and method == "async-msgl" else {}),
                            **periods)
                fit_seconds = time.perf_counter() - t0
                t_down = time.perf_counter()
                pred = downscale(sparse, model, time=test)
                down_seconds = time.perf_counter() - t_down
                err = (pred - truth).values
                rmse = float(np.sqrt(np.nanmean(err ** 2)))
                scores.setdefault((method, keep), []).append(rmse)
                extra = {"rmse_observed_reaches": round(float(rmse_of(pred[gauged], truth)), 4),
                         "rmse_unobserved_reaches": round(float(rmse_of(pred[~gauged], truth)), 4),
                         "observed_reaches": int(gauged.sum())}
                stages = {k: h for k, h in model.history.items() if isinstance(h, dict) and "val" in h}
                extra["best_epoch"] = {k: h["best_epoch"] for k, h in stages.items()}
                extra["val_by_epoch"] = {k: [None if v is None else round(v, 4) for v in h["val"]]
                                         for k, h in stages.items()}
                extra["task_weights_last_epoch"] = {
                    k: {t: round(w, 3) for t, w in h["task_weights"].items()} for k, h in stages.items()}
                if method == "async-msgl":
                    # The tasks stage A trained, on the fit's own line: fit's default
                    # changed once (2026-11-29), and summarize_accuracy.py keeps them apart.
                    extra["stage_a_tasks"] = list(model.config["stage_a"]["tasks"])
                if method in ("msgl", "async-msgl"):
                    cross = downscale(sparse, model, time=test, scale="cross")
                    extra["rmse_cross_scale_estimate"] = round(float(rmse_of(cross, truth)), 4)
                print(json.dumps({"what": "test_rmse_all_reaches", "method": method, "keep": keep,
                                  "seed": seed, "rmse": round(rmse, 4),
                                  "mae": round(float(np.nanmean(np.abs(err))), 4), **extra,
                                  "fit_seconds": round(fit_seconds, 1),
                                  "downscale_seconds": round(down_seconds, 1), **setting}),
                      flush=True)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    for keep in args.keep:
        # The standard deviation over seeds is the sample one (ddof=1; 0 for one seed).
        summary = {m: (float(np.mean(scores[(m, keep)])),
                       float(np.std(scores[(m, keep)], ddof=1)) if len(scores[(m, keep)]) > 1 else 0.0)
                   for m in args.methods if (m, keep) in scores}
        single = {m: summary[m][0] for m in ("fine-only", "remap") if m in summary}
        line = {"what": "summary", "keep": keep, "seeds": seeds, **setting, "std": "sample (ddof=1)",
                "rmse_mean_std": {m: [round(a, 4), round(b, 4)] for m, (a, b) in summary.items()}}
        if single:
            base = min(single, key=lambda m: single[m])
            line["best_single_scale"] = base
            missing = [m for m in ("fine-only", "remap") if m not in single]
            if missing:
                # The best of what ran, not of both single-scale baselines.
                line["single_scale_not_run"] = missing
            for m in ("msgl", "async-msgl"):
                if m in summary:
                    line[f"{m}_gain_vs_best_single_scale"] = round(1 - summary[m][0] / single[base], 4)
            line["goal_gain"] = 0.20
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
