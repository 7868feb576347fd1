"""Write docs/results.md and its figures (docs/figures/results_*.png) from one fresh run.

One command runs everything on the synthetic basin and rewrites the page::

    python docs/scripts/make_results.py                 # the full default (under an hour, 2 cores)
    python docs/scripts/make_results.py --preset small  # a documented smaller setting

What it runs (each knob is a flag; the values of the run are printed on the page):

1. A sparsity sweep (:func:`xmsgl.evaluate.sparsity_sweep`) of ``--methods`` at the
   shares ``--keep`` with the seeds ``--seeds`` (thinning and training), scored on
   the test water years at every reach against ``reach_temp_true``; neural methods
   train ``--epochs`` epochs with ``--window``/``--stride``/``--batch-size``/``--lr``.
2. Error maps on the network (per-reach test RMSE) for MSGL and the best other
   method at the first share kept and the first seed.
3. A repeated cross-validation (``--cv-method``, ``--folds``, ``--repeats``,
   ``--cv-seeds``, ``--blocking``) and its variance decomposition.
4. The robustness table (:func:`xmsgl.robustness.robustness`) of ``--rob-method``
   fitted on every training observation.

Knobs and their cost: the full default is 4 shares x 3 seeds x (MSGL + GRU + 4
baselines), a 3-fold x 2-repeat x 2-seed MSGL cross-validation (12 fits) and one
robustness run; ``--preset small`` is 2 shares x 2 seeds, 6 epochs and a 2 x 2 x 2
cross-validation of the GRU. The full default is sized from single-fit timings (an
MSGL fit of 8 epochs on a 6-segment basin over four water years took 24 s on a quiet
2-core machine; the GRU a few seconds, a non-neural baseline about a second) to
finish within an hour on a quiet 2-core CPU; the page records how long its own run took.
Measured on the 2-core machine shared with other jobs (load average about 4): ``--preset
small`` took 145 s with one torch thread, while the same run with two torch threads had
not finished its sweep after 20 minutes (two threads oversubscribe a shared 2-core
machine), so the script pins torch to one thread.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import xmsgl
from xmsgl.baselines import BASELINES
from xmsgl.evaluate import (
    cross_validate,
    default_trainer,
    evaluate,
    plot_sparsity,
    sparsity_sweep,
    variance_decomposition,
)

ROOT = Path(__file__).resolve().parents[2]
FIG = ROOT / "docs" / "figures"

PRESETS: dict[str, dict[str, Any]] = {
    "full": {"keep": [1.0, 0.2, 0.05, 0.01], "seeds": [0, 1, 2], "epochs": 10, "cv_method": "msgl",
             "folds": 3, "repeats": 2, "cv_seeds": 2},
    "small": {"keep": [1.0, 0.05], "seeds": [0, 1], "epochs": 6, "cv_method": "gru",
              "folds": 2, "repeats": 2, "cv_seeds": 2},
}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="full",
                    help="defaults of the knobs below (default: %(default)s)")
    ap.add_argument("--segments", type=int, default=8)
    ap.add_argument("--start", default="2000-10-01")
    ap.add_argument("--end", default="2005-09-30")
    ap.add_argument("--basin-seed", type=int, default=1)
    ap.add_argument("--reach-obs-share", type=float, default=0.3)
    ap.add_argument("--methods", nargs="+", default=[*BASELINES, "gru", "msgl"])
    ap.add_argument("--keep", nargs="+", type=float, default=None)
    ap.add_argument("--seeds", nargs="+", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--window", type=int, default=120)
    ap.add_argument("--stride", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--hidden", type=int, default=10)
    ap.add_argument("--cv-method", default=None)
    ap.add_argument("--folds", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--cv-seeds", type=int, default=None)
    ap.add_argument("--blocking", default="subbasin")
    ap.add_argument("--rob-method", default="msgl")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results.md"))
    return ap


def _neural(args: argparse.Namespace) -> dict[str, Any]:
    return {"epochs": args.epochs, "window": args.window, "stride": args.stride,
            "batch_size": args.batch_size, "lr": args.lr, "hidden": args.hidden}


def _kwargs(method: str, args: argparse.Namespace) -> dict[str, Any]:
    if method in BASELINES:
        return {}
    kw = _neural(args)
    if method == "gru":
        # The GRU's batches are (window, gauged reach) sequences, not whole-network windows.
        kw["batch_size"] = 8
    return kw


def _footer(fig: Any, text: str) -> None:
    # Below the axes (saved with bbox_inches="tight"), so it never covers the x label.
    fig.text(0.01, -0.03, text, fontsize=6.5, color="0.3", va="top")


def _network_map(ax: Any, ds: xr.Dataset, values: np.ndarray, vmax: float, title: str) -> Any:
    from matplotlib.collections import LineCollection

    from xmsgl.convention import topology_arrays

    topo = topology_arrays(ds)
    x, y = ds.reach_x.values / 1000.0, ds.reach_y.values / 1000.0
    to = topo.reach_to_idx
    down = to >= 0
    segs = np.stack([np.column_stack([x[down], y[down]]), np.column_stack([x[to[down]], y[to[down]]])], axis=1)
    coll = LineCollection(list(segs), array=values[down], cmap="viridis", linewidths=2.2,
                          capstyle="round")
    coll.set_clim(0.0, vmax)
    ax.add_collection(coll)
    obs = ds.reach_temp.notnull().any("time").values
    ax.scatter(x[obs], y[obs], s=14, facecolor="none", edgecolor="red", lw=0.8, zorder=3,
               label="gauged reach")
    ax.autoscale()
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("easting (km)")
    return coll


def _load() -> float:
    """The one-minute load average (how busy the machine was), or NaN where unknown."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return float("nan")


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from xmsgl.model import fit
    from xmsgl.robustness import robustness

    ap = _parser()
    args = ap.parse_args()
    for k, v in PRESETS[args.preset].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    warnings.simplefilter("ignore", UserWarning)
    xmsgl.set_options(progress=False)
    try:
        import torch

        # One thread: on a 2-core machine shared with other jobs, two torch threads
        # oversubscribe the cores and run several times slower.
        torch.set_num_threads(1)
        threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        threads = 0
    FIG.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = (f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}, "
               f"torch threads {threads}; load average {_load():.1f} at the start)")
    data = (f"synthetic_basin(n_segments={args.segments}, start={args.start!r}, end={args.end!r}, "
            f"seed={args.basin_seed}, reach_obs_share={args.reach_obs_share})")
    foot = f"{stamp}, {platform.node()}, xmsgl {xmsgl.__version__}, {data}"
    ds = xmsgl.datasets.synthetic_basin(n_segments=args.segments, start=args.start, end=args.end,
                                        seed=args.basin_seed, reach_obs_share=args.reach_obs_share)

    # 1. sparsity sweep; the first (keep, seed) predictions are kept for the maps
    preds: dict[str, xr.DataArray] = {}

    def capture(method: str) -> Any:
        inner = default_trainer(method, _kwargs(method, args))

        def trainer(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> xr.DataArray:
            pred = inner(train_ds, test_ds, seed)
            # The sweep runs keep-major, seed-minor: the first call is (keep[0], seeds[0]).
            preds.setdefault(method, pred)
            return pred

        return trainer

    t0 = time.time()
    sweep = sparsity_sweep(ds, args.methods, keep=args.keep, seeds=args.seeds,
                           trainer={m: capture(m) for m in args.methods})
    t_sweep = time.time() - t0
    test = [tuple(p) for p in json.loads(sweep.attrs["test_period"])]
    fig = plot_sparsity(sweep)
    fig.axes[0].set_title(f"Test RMSE at every reach, {ds.sizes['reach']} reaches", fontsize=9)
    _footer(fig, foot + f", seeds {args.seeds}")
    fig.savefig(FIG / "results_sparsity.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    mean = sweep.rmse.mean("seed")
    std = sweep.rmse.std("seed", ddof=1)  # the sample std, as plot_sparsity's band
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    width = 0.8 / len(args.keep)
    xs = np.arange(len(args.methods))
    for i, k in enumerate(args.keep):
        ax.bar(xs + i * width, mean.sel(keep=k).values, width, yerr=std.sel(keep=k).values,
               label=f"keep {k:g}", capsize=2)
    ax.set_xticks(xs + width * (len(args.keep) - 1) / 2, args.methods, rotation=20)
    ax.set_ylabel("test RMSE (degC)")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _footer(fig, foot + f", mean +- sample std over seeds {args.seeds}")
    fig.savefig(FIG / "results_bars.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    # 2. error maps on the network
    truth = ds.reach_temp_true.sel(time=slice(test[0][0], test[-1][1]))
    per_reach = {m: evaluate(p.sel(time=truth.time), truth, dims="time").rmse.values for m, p in preds.items()}
    others = [m for m in preds if m != "msgl"]
    best_other = min(others, key=lambda m: float(np.nanmean(per_reach[m] ** 2))) if others else None
    shown = [m for m in ("msgl", best_other) if m is not None and m in per_reach]
    vmax = float(np.nanpercentile(np.concatenate([per_reach[m] for m in shown]), 98))
    fig, axes = plt.subplots(1, len(shown), figsize=(5.2 * len(shown), 4.6), squeeze=False)
    coll = None
    for ax, m in zip(axes[0], shown):
        pooled = float(np.sqrt(np.nanmean(per_reach[m] ** 2)))
        coll = _network_map(ax, ds, per_reach[m], vmax, f"{m}: per-reach test RMSE (pooled {pooled:.2f} degC)")
    axes[0][0].set_ylabel("northing (km)")
    axes[0][0].legend(loc="lower left", fontsize=7)
    if coll is not None:
        fig.colorbar(coll, ax=axes[0].tolist(), shrink=0.8, label="test RMSE (degC)")
    _footer(fig, foot + f", keep {args.keep[0]:g}, seed {args.seeds[0]}")
    fig.savefig(FIG / "results_error_map.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    # 3. cross-validation and variance decomposition
    t1 = time.time()
    cv = cross_validate(ds, args.cv_method, folds=args.folds, repeats=args.repeats, seeds=args.cv_seeds,
                        blocking=args.blocking, fit_kwargs=_kwargs(args.cv_method, args))
    vd = variance_decomposition(cv)
    t_cv = time.time() - t1
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    names = ["sigma2_partition", "sigma2_seed"]
    est = [float(vd[n].sel(stat="estimate")) for n in names]
    lo = [float(vd[n].sel(stat="low")) for n in names]
    hi = [float(vd[n].sel(stat="high")) for n in names]
    ax.bar(["data partition", "training seed"], est,
           yerr=[np.subtract(est, lo).clip(0), np.subtract(hi, est).clip(0)], capsize=4,
           color=["tab:blue", "tab:orange"])
    ax.set_ylabel("variance of test RMSE (degC$^2$)")
    ax.set_title(f"{args.cv_method}, {args.blocking} blocks: icc {float(vd.icc.sel(stat='estimate')):.2f}",
                 fontsize=9)
    _footer(fig, foot + f", {args.folds} folds x {args.repeats} repeats x {args.cv_seeds} seeds")
    fig.savefig(FIG / "results_variance.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    # 4. robustness of one method fitted on every training observation
    t2 = time.time()
    from xmsgl.evaluate import _mask_obs

    tmask = np.zeros(ds.sizes["time"], dtype=bool)
    tindex = ds.time.to_index()
    for a, b in test:
        tmask |= (tindex >= a) & (tindex <= b)
    hidden = _mask_obs(ds, "reach_temp", "reach", np.ones((ds.sizes["reach"], 1), bool) & tmask)
    hidden = _mask_obs(hidden, "seg_temp", "seg", np.ones((ds.sizes["seg"], 1), bool) & tmask)
    kw: dict[str, Any] = _kwargs(args.rob_method, args)
    if args.rob_method in BASELINES:
        kw["train"] = (str(tindex[~tmask][0].date()), str(tindex[~tmask][-1].date()))
    else:
        from xmsgl.periods import validation_beside

        kw.update(test=test, progress=False, seed=args.seeds[0])
        val = validation_beside(tindex, tmask)
        if val:
            kw["val"] = val
    rob_model = fit(hidden, args.rob_method, **kw)
    rob = robustness(hidden, rob_model, n_draws=2, seed=0, time=(test[0][0], test[-1][1]))
    t_rob = time.time() - t2

    # the page
    lines = [
        "# Results",
        "",
        f"Produced by `python docs/scripts/make_results.py --preset {args.preset}` on {stamp}, "
        f"machine {machine}, xmsgl {xmsgl.__version__}, in {(time.time() - t_all) / 60:.0f} minutes. "
        "Every run of the script rewrites this page and the figures `docs/figures/results_*.png`; "
        "no number here is typed by hand.",
        "",
        f"Data: `xmsgl.datasets.{data}`: {ds.sizes['seg']} segments, {ds.sizes['reach']} reaches "
        f"({int(ds.reach_temp.notnull().any('time').sum())} gauged), {ds.sizes['time']} days. "
        f"Test period {test} (its fine and coarse observations are hidden from every method). "
        "Scores are against `reach_temp_true` at every reach, gauged or not.",
        "",
        f"Neural methods: {args.epochs} epochs, windows of {args.window} days every {args.stride}, "
        f"batch size {args.batch_size} windows (8 sequences for the GRU), learning rate {args.lr}, hidden size {args.hidden}, best "
        "validation epoch kept. These are small budgets chosen so that the whole page fits in an "
        "hour on two cores; `docs/evaluation.md` lists the knobs.",
        "",
        *([] if args.preset == "full" else [
            f"This page comes from the smaller documented setting `--preset {args.preset}`, not the "
            "full default (`--preset full`), which was not run for this page.", ""]),
        "Dynamic graph backbone experiments: [results_dmsge.md](results_dmsge.md).",
        "",
        "## Sparsity sweep",
        "",
        f"`sparsity_sweep(ds, {args.methods}, keep={args.keep}, seeds={args.seeds})`, thinning by "
        f"observation, {t_sweep / 60:.1f} minutes. Test RMSE (degC), mean +- sample standard "
        "deviation (ddof=1) over seeds:",
        "",
        "| method | " + " | ".join(f"keep {k:g}" for k in args.keep) + " |",
        "|---|" + "---|" * len(args.keep),
    ]
    for m in args.methods:
        cells = [f"{mu:.2f} +- {sd:.2f}" for mu, sd in zip(mean.sel({"method": m}).values,
                                                          std.sel({"method": m}).values)]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Fine observations left outside the test period (training and validation days): "
        + ", ".join(f"keep {k:g}: {int(n)}" for k, n in zip(args.keep, sweep.n_train_obs.mean("seed").values)),
        "",
        *(["`idw` has no source on the test days, whose observations are hidden, so it scores as "
           "`climatology` (docs/evaluation.md); `harmonic` interpolates between climatologies there.",
           ""] if "idw" in args.methods else []),
        "![RMSE against the share of observations kept](figures/results_sparsity.png)",
        "",
        "![Per-method test RMSE](figures/results_bars.png)",
        "",
        "## Errors on the network",
        "",
        f"Per-reach test RMSE of {' and '.join(shown)} (the best other method by pooled RMSE) at keep "
        f"{args.keep[0]:g}, seed {args.seeds[0]}; red circles are the gauged reaches.",
        "",
        "![Per-reach test RMSE on the network](figures/results_error_map.png)",
        "",
        "## Cross-validation and variance decomposition",
        "",
        f"`cross_validate(ds, {args.cv_method!r}, folds={args.folds}, repeats={args.repeats}, "
        f"seeds={args.cv_seeds}, blocking={args.blocking!r})`, {t_cv / 60:.1f} minutes, scored at every "
        "reach of the held-out blocks on every day; the fine and coarse observations of the "
        f"held-out blocks are hidden from the fits (mask_coarse={bool(cv.attrs['mask_coarse'])}). "
        f"Test RMSE (degC) over the {cv.rmse.size} fits: mean {float(cv.rmse.mean()):.3f}, "
        f"range {float(cv.rmse.min()):.3f} to {float(cv.rmse.max()):.3f}. "
        f"The decomposition counts each distinct held-out set once: {vd.attrs['n_partitions']} "
        f"partitions of the {cv.sizes['repeat'] * cv.sizes['fold']}"
        + (f" ({vd.attrs['n_duplicates_dropped']} repeated a set held out before and "
           f"{'was' if vd.attrs['n_duplicates_dropped'] == 1 else 'were'} dropped: the mean "
           "below is over the distinct ones)" if vd.attrs["n_duplicates_dropped"] else "")
        + ".",
        "",
        "| quantity | estimate | 95% bootstrap interval |",
        "|---|---|---|",
    ]
    for name in ("mean", "sigma2_partition", "sigma2_seed", "icc"):
        e, lo_, hi_ = vd[name].values
        lines.append(f"| {name} ({vd[name].attrs['units']}) | {e:.4f} | {lo_:.4f} to {hi_:.4f} |")
    lines += [
        "",
        "![Variance decomposition](figures/results_variance.png)",
        "",
        "Caveat: " + vd.attrs["caveat"] + ". With few partitions the bootstrap intervals are "
        "too narrow, not too wide (docs/evaluation.md): read them as a rough guide.",
        "",
        "## Robustness",
        "",
        f"`robustness(ds, model, n_draws=2)` of `{args.rob_method}` fitted on the training years "
        f"(seed {args.seeds[0]}), scored on the test period, {t_rob / 60:.1f} minutes. Unperturbed "
        f"RMSE {float(rob.base_rmse):.3f} degC; change of RMSE (degC, positive is worse):",
        "",
        "| check | setting | change of RMSE | change of bias |",
        "|---|---|---|---|",
    ]
    for c in rob.check.values:
        for j in rob.level.values:
            d = float(rob.d_rmse.sel(check=c, level=j))
            if np.isfinite(d):
                lines.append(f"| {c} | {rob.setting.sel(check=c, level=j).item()} | {d:+.3f} | "
                             f"{float(rob.d_bias.sel(check=c, level=j)):+.3f} |")
    lines += [
        "",
        "`mask_gauges` removes observations the networks never read when they predict, so it "
        "changes only gauge-driven baselines (`idw`, `harmonic`).",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print(json.dumps({"what": "make_results", "preset": args.preset, "seconds": round(time.time() - t_all, 1),
                      "sweep_s": round(t_sweep, 1), "cv_s": round(t_cv, 1), "rob_s": round(t_rob, 1),
                      "rmse_sweep": np.round(mean.values, 3).tolist()}))


if __name__ == "__main__":
    main()
