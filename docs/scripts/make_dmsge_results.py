"""Write docs/results_dmsge.md (and figures) comparing the dmsge backbone with the recurrent cell.

Parts (``--parts``), each stored in ``docs/results_dmsge.json`` with its own
command, date and machine, so that a part can be rerun alone and the page is
always rendered from stored runs of this script:

* ``compare``: fine-only and MSGL with each backbone at two shares of fine
  observations, several seeds; test-year RMSE at every reach against the truth.
* ``depth``: fine-only dmsge at several depths with and without layer
  concatenation; test RMSE and the Dirichlet energy per depth
  (:func:`xmsgl.explain.explain`), plus a figure of the energy and a map of the
  neighbour attribution.
* ``variance``: repeated blocked K-fold cross-validation
  (:func:`xmsgl.evaluate.cross_validate`) of dmsge with static graphs only
  (hydrologic + geometric) and with the dynamic graph added, and the variance
  decomposition (:func:`xmsgl.evaluate.variance_decomposition`).
* ``drb``: the real Delaware mirror data (``XMSGL_DATA_DIR``), split as in
  ``docs/scripts/drb_first_run.py`` (dates held out from 1980-07-01, validation
  from 1980-04-01), both backbones, fine observations sparsified to the given
  shares of those available.

The defaults are a reduced setting for a shared 2-core CPU (about 25 minutes for
the synthetic parts); raise ``--segments``, ``--epochs`` and ``--seeds`` for a
fuller run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FIG = DOCS / "figures"
STORE = DOCS / "results_dmsge.json"


def _stamp(args: argparse.Namespace, part: str, seconds: float) -> dict[str, Any]:
    import torch

    import xmsgl

    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} threads)",
        "xmsgl": xmsgl.__version__,
        "command": "python docs/scripts/make_dmsge_results.py " + " ".join(sys.argv[1:]),
        "part": part,
        "seconds": round(seconds, 1),
    }


def _synthetic(args: argparse.Namespace) -> Any:
    import xmsgl

    return xmsgl.datasets.synthetic_basin(n_segments=args.segments, start=args.start, end=args.end,
                                          seed=args.basin_seed, reach_obs_share=args.reach_obs_share)


def _test_rmse(ds: Any, model: Any, test: tuple[str, str]) -> float:
    pred = ds.msgl.downscale(model, time=test)
    sel = ds.sel(time=slice(*test))
    return float(sel.msgl.evaluate(pred).rmse)


def _dmsge_opts(args: argparse.Namespace, **over: Any) -> dict[str, Any]:
    opts = {"layers": args.layers, "k": args.k}
    opts.update(over)
    return opts


def part_compare(args: argparse.Namespace) -> dict[str, Any]:
    from xmsgl.train import split_periods

    ds = _synthetic(args)
    import pandas as pd

    test = split_periods(pd.DatetimeIndex(ds.time.values))["test"][0]
    rows = []
    for keep in args.keep:
        for seed in args.seeds:
            sp = ds.msgl.sparsify(keep=keep, seed=seed)
            for method in args.methods:
                for backbone in ("rgrn", "dmsge"):
                    t0 = time.time()
                    kw: dict[str, Any] = {"backbone": backbone}
                    if backbone == "dmsge":
                        kw["backbone_options"] = _dmsge_opts(args)
                    model = sp.msgl.fit(method=method, epochs=args.epochs, stride=args.stride,
                                        seed=seed, progress=False, **kw)
                    rmse = _test_rmse(sp, model, test)
                    rows.append({"keep": keep, "seed": seed, "method": method, "backbone": backbone,
                                 "rmse": rmse, "fit_s": round(time.time() - t0, 1)})
                    print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows, "test": list(test), "setting": _setting(args, ds)}


def _setting(args: argparse.Namespace, ds: Any) -> str:
    n_obs = int(ds["reach_temp"].notnull().any("time").sum())
    return (f"synthetic_basin(n_segments={args.segments}, start={args.start!r}, end={args.end!r}, "
            f"seed={args.basin_seed}, reach_obs_share={args.reach_obs_share}): {ds.sizes['seg']} "
            f"segments, {ds.sizes['reach']} reaches ({n_obs} gauged); "
            f"{args.epochs} epochs, stride {args.stride} days, dmsge layers={args.layers}, "
            f"k={args.k} unless varied")


def part_depth(args: argparse.Namespace) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from xmsgl.explain import plot_energy, plot_explain
    from xmsgl.train import split_periods

    ds = _synthetic(args)
    test = split_periods(pd.DatetimeIndex(ds.time.values))["test"][0]
    sp = ds.msgl.sparsify(keep=args.depth_keep, seed=0)
    rows = []
    energies: dict[str, Any] = {}
    last = None
    for concat in (True, False):
        for layers in args.depths:
            t0 = time.time()
            model = sp.msgl.fit(method="fine-only", epochs=args.epochs, stride=args.stride, seed=0,
                                progress=False, backbone="dmsge",
                                backbone_options=_dmsge_opts(args, layers=layers, concat=concat))
            rmse = _test_rmse(sp, model, test)
            ex = model.explain(sp, time=test)
            row = {"layers": layers, "concat": concat, "rmse": rmse,
                   "fit_s": round(time.time() - t0, 1)}
            for g in ("hydro", "geo", "dynamic"):
                row[f"energy_{g}"] = ex["dirichlet_energy_normalized"].sel(graph=g).values.tolist()
                row[f"energy_concat_{g}"] = ex["dirichlet_energy_concat_normalized"].sel(
                    graph=g).values.tolist()
            for c in ("upstream", "downstream", "other", "self", "parent_segment"):
                row[f"share_{c}"] = ex[f"basin_share_{c}"].isel(layer=-1).values.tolist()
            row["win_distance_m"] = ex["win_distance"].isel(layer=-1).mean("reach").values.tolist()
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("layers", "concat", "rmse", "fit_s")}), flush=True)
            if layers == max(args.depths):
                energies["concat" if concat else "no concat"] = ex
            if concat and layers == max(args.depths):
                last = ex
    FIG.mkdir(parents=True, exist_ok=True)
    fig = plot_energy(energies)
    fig.axes[0].set_title(f"normalized Dirichlet energy, {max(args.depths)} layers, fine-only dmsge")
    fig.savefig(FIG / "dmsge_energy_depth.png", dpi=110, bbox_inches="tight")
    if last is not None:
        fig = plot_explain(last, sp, variable="share_upstream", graph="dynamic")
        fig.savefig(FIG / "dmsge_attribution_map.png", dpi=110, bbox_inches="tight")
    return {"rows": rows, "test": list(test), "keep": args.depth_keep, "setting": _setting(args, ds)}


def part_variance(args: argparse.Namespace) -> dict[str, Any]:
    from xmsgl.evaluate import cross_validate, variance_decomposition

    ds = _synthetic(args).msgl.sparsify(keep=args.cv_keep, seed=0)
    out = {}
    for label, graphs in (("static", ["hydro", "geo"]), ("dynamic", ["hydro", "geo", "dynamic"])):
        t0 = time.time()
        fit_kwargs = {"epochs": args.epochs, "stride": args.stride, "backbone": "dmsge",
                      "backbone_options": _dmsge_opts(args, graphs=graphs)}
        cv = cross_validate(ds, "fine-only", folds=args.folds, repeats=args.repeats,
                            seeds=args.cv_seeds, blocking="subbasin", fit_kwargs=fit_kwargs)
        vd = variance_decomposition(cv, n_boot=500)
        out[label] = {
            "rmse": cv["rmse"].values.tolist(),
            **{v: vd[v].values.tolist() for v in ("mean", "sigma2_partition", "sigma2_seed", "icc")},
            "seconds": round(time.time() - t0, 1),
        }
        print(json.dumps({label: {k: out[label][k] for k in ("mean", "sigma2_partition",
                                                              "sigma2_seed")}}), flush=True)
    return {"cv": out, "keep": args.cv_keep, "folds": args.folds, "repeats": args.repeats,
            "seeds": args.cv_seeds, "setting": _setting(args, ds)}


def part_drb(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    from xmsgl.datasets.drb import open_drb

    if not os.environ.get("XMSGL_DATA_DIR"):
        raise SystemExit("the drb part needs XMSGL_DATA_DIR (see docs/data.md)")
    ds = open_drb(source="mirror", progress=False)
    times = pd.DatetimeIndex(ds.time.values)
    test = ("1980-07-01", str(times[-1].date()))
    val = ("1980-04-01", "1980-06-30")
    train = (str(times[0].date()), "1980-03-31")
    rows = []
    for keep in args.drb_keep:
        sp = ds.msgl.sparsify(keep=keep, seed=0) if keep < 1 else ds
        n_obs = int(sp["reach_temp"].sel(time=slice(*train)).notnull().sum())
        for backbone in ("rgrn", "dmsge"):
            t0 = time.time()
            kw: dict[str, Any] = {"backbone": backbone}
            if backbone == "dmsge":
                kw["backbone_options"] = _dmsge_opts(args)
            model = sp.msgl.fit(method=args.drb_method, epochs=args.drb_epochs, train=train, val=val,
                                test=test, window=180, stride=90, seed=0, progress=False, **kw)
            pred = ds.msgl.downscale(model, time=test)
            obs = ds["reach_temp"].sel(time=slice(*test))
            err = (pred.transpose("reach", "time") - obs.transpose("reach", "time")).values
            ok = np.isfinite(err)
            rmse = float(np.sqrt(np.mean(err[ok] ** 2)))
            rows.append({"keep": keep, "backbone": backbone, "rmse": rmse, "n_test": int(ok.sum()),
                         "n_train_obs": n_obs, "fit_s": round(time.time() - t0, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows, "test": list(test), "val": list(val), "train": list(train),
            "method": args.drb_method, "epochs": args.drb_epochs,
            "setting": f"open_drb(source='mirror'): {ds.sizes['seg']} segments, "
                       f"{ds.sizes['reach']} reaches; window 180, stride 90, "
                       f"dmsge layers={args.layers}, k={args.k}"}


# ----------------------------------------------------------------------- rendering


def _fmt(vals: list[float]) -> str:
    a = np.asarray(vals, dtype=float)
    return f"{a.mean():.2f} ± {a.std(ddof=1):.2f}" if a.size > 1 else f"{a.mean():.2f}"


def _head(p: dict[str, Any]) -> str:
    s = p["stamp"]
    return (f"*Run {s['date']} on {s['machine']}, xmsgl {s['xmsgl']}, {s['seconds']:.0f} s: "
            f"`{s['command']}`.*\n")


def render(store: dict[str, Any]) -> str:
    out = ["# Results: the dynamic multi-scale graph embedding backbone\n",
           "Produced by `docs/scripts/make_dmsge_results.py` from the runs stored in "
           "`docs/results_dmsge.json`; do not edit by hand. Every setting below is a reduced one "
           "chosen to run in about 25 minutes on a shared 2-core CPU, so differences smaller than "
           "the spread over seeds are not findings. See [dmsge.md](dmsge.md) for the backbone.\n"]
    if "compare" in store:
        p = store["compare"]
        out += ["## dmsge against the recurrent cell\n", _head(p),
                f"Setting: {p['setting']}. Test period {p['test'][0]} to {p['test'][1]}; RMSE "
                "(degC) at every reach against `reach_temp_true`, mean ± sample std (ddof=1) over seeds "
                f"{sorted({r['seed'] for r in p['rows']})} (the seed sets both the sparsified "
                "observations and the weights).\n",
                "| kept | method | rgrn | dmsge | dmsge − rgrn | fit s (rgrn / dmsge) |",
                "|---|---|---|---|---|---|"]
        keys = sorted({(r["keep"], r["method"]) for r in p["rows"]})
        for keep, method in keys:
            sel = {b: [r for r in p["rows"] if r["keep"] == keep and r["method"] == method
                       and r["backbone"] == b] for b in ("rgrn", "dmsge")}
            ra = [r["rmse"] for r in sel["rgrn"]]
            da = [r["rmse"] for r in sel["dmsge"]]
            ts = [np.mean([r["fit_s"] for r in sel[b]]) for b in ("rgrn", "dmsge")]
            out.append(f"| {keep:.0%} | {method} | {_fmt(ra)} | {_fmt(da)} | "
                       f"{np.mean(da) - np.mean(ra):+.2f} | {ts[0]:.0f} / {ts[1]:.0f} |")
        out.append("")
    if "drb" in store:
        p = store["drb"]
        out += ["## Delaware River Basin mirror data\n", _head(p),
                f"Setting: {p['setting']}; method {p['method']}, {p['epochs']} epochs, seed 0. "
                f"Trained {p['train'][0]} to {p['train'][1]}, validation {p['val'][0]} to "
                f"{p['val'][1]}, test {p['test'][0]} to {p['test'][1]}. RMSE (degC) against all "
                "observed reach-days of the test period (all sites; no site hold-out here).\n",
                "| kept share of fine observations | training reach-days | backbone | RMSE | n | fit s |",
                "|---|---|---|---|---|---|"]
        for r in p["rows"]:
            out.append(f"| {r['keep']:.0%} | {r['n_train_obs']} | {r['backbone']} | {r['rmse']:.2f} | "
                       f"{r['n_test']} | {r['fit_s']:.0f} |")
        out.append("")
    if "depth" in store:
        p = store["depth"]
        out += ["## Depth, layer concatenation and over-smoothing\n", _head(p),
                f"Setting: {p['setting']}; fine-only, {p['keep']:.0%} of fine observations kept, "
                "seed 0. Normalized Dirichlet energy (energy over the reaches' spread; 0: "
                "neighbours equal, about 1: neighbours no closer than any two reaches) of the "
                "last layer's output and of the concatenation of all "
                "outputs, on the test year, per graph.\n",
                "| layers | concat | test RMSE | energy last layer (hydro / geo / dynamic) | "
                "energy of the concatenation (hydro / geo / dynamic) | fit s |",
                "|---|---|---|---|---|---|"]
        for r in p["rows"]:
            last = " / ".join(f"{r[f'energy_{g}'][-1]:.3f}" for g in ("hydro", "geo", "dynamic"))
            cat = " / ".join(f"{r[f'energy_concat_{g}'][-1]:.3f}" for g in ("hydro", "geo", "dynamic"))
            out.append(f"| {r['layers']} | {'yes' if r['concat'] else 'no'} | {r['rmse']:.2f} | {last} "
                       f"| {cat} | {r['fit_s']:.0f} |")
        out += ["", "Energy of every depth (encoder = depth 0) for the deepest models: "
                "![energy](figures/dmsge_energy_depth.png)\n",
                "Which neighbours win the maximum in the last layer of the deepest concatenating "
                "model (shares of max-winning messages, basin mean; hydro / geo / dynamic):\n",
                "| share | hydro | geo | dynamic |", "|---|---|---|---|"]
        deep = [r for r in p["rows"] if r["concat"]][-1]
        for c in ("upstream", "downstream", "other", "self", "parent_segment"):
            out.append(f"| {c.replace('_', ' ')} | " + " | ".join(
                f"{v:.2f}" for v in deep[f"share_{c}"]) + " |")
        out.append("| mean winner distance (m) | " + " | ".join(
            f"{v:.0f}" for v in deep["win_distance_m"]) + " |")
        out += ["", "Share of upstream winners on the dynamic graph, with a line to each reach's "
                "most frequent winner: ![attribution](figures/dmsge_attribution_map.png)\n"]
    if "variance" in store:
        p = store["variance"]
        out += ["## Static versus dynamic graphs: variance decomposition\n", _head(p),
                f"Setting: {p['setting']}; fine-only dmsge, {p['keep']:.0%} of fine observations "
                f"kept, sub-basin blocked {p['folds']}-fold cross-validation x {p['repeats']} "
                f"repeats x {p['seeds']} seeds; RMSE (degC) against the truth on held-out "
                "sub-basins. Variance components with 95% bootstrap intervals over partitions "
                "(see `xmsgl.evaluate.variance_decomposition` for the model and its caveat).\n",
                "| graphs | mean RMSE | sigma² partition (data split) | sigma² seed | ICC |",
                "|---|---|---|---|---|"]
        for label, r in p["cv"].items():
            def ci(v: list[float]) -> str:
                return f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"
            out.append(f"| {label} | {ci(r['mean'])} | {ci(r['sigma2_partition'])} | "
                       f"{ci(r['sigma2_seed'])} | {ci(r['icc'])} |")
        out.append("")
    out += ["## What this shows\n", store.get("findings", "(findings are written from the runs "
            "above: see the summary in dmsge.md)") + "\n"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["compare", "depth", "variance"],
                    choices=["compare", "depth", "variance", "drb", "render"])
    ap.add_argument("--segments", type=int, default=12)
    ap.add_argument("--start", default="2000-10-01")
    ap.add_argument("--end", default="2004-09-30")
    ap.add_argument("--basin-seed", type=int, default=0)
    ap.add_argument("--reach-obs-share", type=float, default=0.3,
                    help="share of reaches with a (synthetic) gauge before sparsifying")
    ap.add_argument("--methods", nargs="+", default=["fine-only", "msgl"])
    ap.add_argument("--keep", nargs="+", type=float, default=[0.01, 0.05])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--stride", type=int, default=365)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--depths", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--depth-keep", type=float, default=0.05)
    ap.add_argument("--cv-keep", type=float, default=0.05)
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cv-seeds", type=int, default=2)
    ap.add_argument("--drb-keep", nargs="+", type=float, default=[0.05])
    ap.add_argument("--drb-epochs", type=int, default=3)
    ap.add_argument("--drb-method", default="fine-only")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--findings", type=Path, default=None,
                    help="a text file with the findings paragraph to store and render")
    args = ap.parse_args(argv)

    import torch

    import xmsgl
    from xmsgl.io import atomic_write

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", UserWarning)
    xmsgl.set_options(progress=False)
    store: dict[str, Any] = json.loads(STORE.read_text()) if STORE.exists() else {}
    parts = {"compare": part_compare, "depth": part_depth, "variance": part_variance,
             "drb": part_drb}
    for name in args.parts:
        if name == "render":
            continue
        t0 = time.time()
        res = parts[name](args)
        res["stamp"] = _stamp(args, name, time.time() - t0)
        store[name] = res
        with atomic_write(STORE, overwrite=True) as tmp:
            tmp.write_text(json.dumps(store, indent=1))
    if args.findings is not None:
        store["findings"] = args.findings.read_text().strip()
        with atomic_write(STORE, overwrite=True) as tmp:
            tmp.write_text(json.dumps(store, indent=1))
    with atomic_write(DOCS / "results_dmsge.md", overwrite=True) as tmp:
        tmp.write_text(render(store))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
