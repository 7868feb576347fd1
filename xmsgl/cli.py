"""The ``xmsgl`` command.

Sub-commands:

``xmsgl demo``
    The whole job on the built-in synthetic basin: build it, fit ASYNC-MSGL and two
    baselines on 1% of the fine observations, downscale the test period, print scores
    against the synthetic truth, write netCDF and a figure.
``xmsgl fetch-data``
    Download (or check) the Delaware River Basin files for offline use.
``xmsgl info``
    Versions of xmsgl and its main dependencies, and the torch devices seen.
``xmsgl evaluate``
    A sparsity sweep of several methods (optionally a cross-validation and
    robustness checks) on the synthetic basin or a dataset file; writes one
    netCDF file and prints a table of test RMSE.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from xmsgl.exceptions import XmsglError

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from xmsgl.demo import run_demo

    run_demo(outdir=args.outdir, quick=args.quick, progress=not args.no_progress, seed=args.seed)
    return 0


def _fetch_data(args: argparse.Namespace) -> int:
    from xmsgl.datasets.drb import fetch_data

    paths = fetch_data(source=args.source, folder=args.folder)
    for p in paths:
        print(p)
    print(f"{len(paths)} files ready")
    return 0


def _info(args: argparse.Namespace) -> int:
    import importlib.metadata as md

    import xmsgl

    print(f"xmsgl {xmsgl.__version__}")
    for pkg in ("numpy", "xarray", "dask", "torch", "torch_geometric", "pooch", "intake"):
        try:
            print(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            print(f"{pkg} not installed")
    try:
        import torch

        print("cuda available:", torch.cuda.is_available())
    except ImportError:
        pass
    return 0


def _json_attrs(ds: Any) -> Any:
    """``ds`` with attributes netCDF cannot hold (lists, dicts, None) as JSON text."""
    import json

    def clean(attrs: dict[Any, Any]) -> dict[Any, Any]:
        return {k: (v if isinstance(v, (str, int, float)) and not isinstance(v, bool) else json.dumps(v))
                for k, v in attrs.items()}

    ds.attrs = clean(ds.attrs)
    for v in ds.variables.values():
        v.attrs = clean(v.attrs)
    return ds


def _open_data(path: str) -> Any:
    import os

    import xarray as xr

    if not os.path.exists(path):
        raise XmsglError(f"--data {path!r} does not exist; give a netCDF file or a zarr store")
    if path.rstrip("/").endswith(".zarr") or os.path.isdir(path):
        return xr.open_zarr(path).load()
    return xr.open_dataset(path).load()


def _evaluate(args: argparse.Namespace) -> int:
    import json
    import time as _time

    import numpy as np
    import xarray as xr

    import xmsgl
    from xmsgl.baselines import BASELINES
    from xmsgl.evaluate import cross_validate, sparsity_sweep, variance_decomposition
    from xmsgl.io import to_netcdf_safe

    xmsgl.set_options(progress=False)
    if args.data:
        ds = _open_data(args.data)
        source = args.data
    else:
        ds = xmsgl.datasets.synthetic_basin(n_segments=args.n_segments, start=args.start, end=args.end,
                                            seed=args.basin_seed, reach_obs_share=args.reach_obs_share)
        source = (f"synthetic_basin(n_segments={args.n_segments}, start={args.start!r}, "
                  f"end={args.end!r}, seed={args.basin_seed}, reach_obs_share={args.reach_obs_share})")
    neural = {"epochs": args.epochs}
    fit_kwargs = {m: ({} if m in BASELINES else neural) for m in args.methods}
    t0 = _time.time()
    sweep = sparsity_sweep(ds, args.methods, keep=args.keep, seeds=args.seeds, by=args.by,
                           fit_kwargs=fit_kwargs)
    out = sweep
    parts = [f"sweep {_time.time() - t0:.0f} s"]
    if args.cv:
        t1 = _time.time()
        cv = cross_validate(ds, args.cv, folds=args.folds, repeats=args.repeats, seeds=args.cv_seeds,
                            blocking=args.blocking,
                            fit_kwargs=None if args.cv in BASELINES else neural)
        vd = variance_decomposition(cv, n_boot=200)
        cv = cv.rename({"repeat": "cv_repeat", "fold": "cv_fold", "seed": "cv_seed"})
        cv = cv.rename({v: f"cv_{v}" for v in cv.data_vars})
        vd = vd.rename({v: f"vd_{v}" for v in vd.data_vars})
        out = xr.merge([out, cv, vd], combine_attrs="drop_conflicts")
        out.attrs["cv"] = f"{args.cv} {args.blocking} folds={args.folds} repeats={args.repeats}"
        parts.append(f"cross-validation {_time.time() - t1:.0f} s")
    if args.robustness:
        from xmsgl.evaluate import _mask_obs, _ranges
        from xmsgl.model import fit
        from xmsgl.robustness import robustness

        t2 = _time.time()
        test = [tuple(p) for p in json.loads(sweep.attrs["test_period"])]
        time = ds["time"].to_index()
        test_days = np.zeros(len(time), dtype=bool)
        for a, b in test:
            test_days |= (time >= a) & (time <= b)
        hidden = _mask_obs(ds, "reach_temp", "reach", np.ones((ds.sizes["reach"], 1), bool) & test_days)
        hidden = _mask_obs(hidden, "seg_temp", "seg", np.ones((ds.sizes["seg"], 1), bool) & test_days)
        kw = {} if args.robustness in BASELINES else {**neural, "progress": False}
        if args.robustness in BASELINES:
            kw["train"] = _ranges(time, ~test_days)
        else:
            kw["test"] = test
        model = fit(hidden, args.robustness, **kw)
        rob = robustness(hidden, model, n_draws=2, truth="reach_temp_true"
                         if "reach_temp_true" in ds.data_vars else "reach_temp")
        rob = rob.rename({v: f"rob_{v}" for v in rob.data_vars})
        rob = rob.rename({"setting": "rob_setting"})
        out = xr.merge([out, rob], combine_attrs="drop_conflicts")
        out.attrs["robustness_method"] = args.robustness
        parts.append(f"robustness {_time.time() - t2:.0f} s")
    out.attrs["data"] = source
    out.attrs["command"] = "xmsgl " + " ".join(args.argv)
    to_netcdf_safe(_json_attrs(out), args.out, overwrite=args.overwrite)
    mean = sweep["rmse"].mean("seed")
    keep = [float(k) for k in sweep["keep"].values]
    width = max(len(m) for m in args.methods) + 2
    print(f"test RMSE (degC) against {sweep.attrs['target']}, mean over seeds {list(args.seeds)}")
    print("method".ljust(width) + "".join(f"keep {k:<8g}" for k in keep))
    for m in args.methods:
        vals = mean.sel({"method": m}).values
        print(m.ljust(width) + "".join(f"{v:<13.3f}" for v in vals))
    if args.cv:
        e = out["vd_icc"].sel(stat="estimate").item()
        print(f"cross-validation {args.cv}: mean RMSE {float(out['cv_rmse'].mean()):.3f} degC, icc {e:.2f}")
    if args.robustness:
        for c in out["check"].values:
            row = out["rob_d_rmse"].sel(check=c)
            labels = out["rob_setting"].sel(check=c).values
            cells = [f"{lab}: {v:+.3f}" for lab, v in zip(labels, row.values) if np.isfinite(v)]
            print(f"robustness {args.robustness} {c}: " + "; ".join(cells))
    print(f"wrote {args.out} ({', '.join(parts)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xmsgl",
        description="Downscale stream water temperature from coarse segments to fine reaches.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole job on the built-in synthetic basin")
    demo.add_argument("--outdir", default="xmsgl-demo", help="folder for outputs (default: %(default)s)")
    demo.add_argument("--quick", action="store_true", help="a small basin and few epochs (seconds)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_demo)

    fetch = sub.add_parser("fetch-data", help="pre-fetch the Delaware River Basin files")
    fetch.add_argument("--source", default="mirror", choices=["mirror", "release"],
                       help="which files: public mirrors (default) or the full USGS releases")
    fetch.add_argument("--folder", default=None,
                       help="cache folder (default: $XMSGL_DATA_DIR or the user cache)")
    fetch.set_defaults(func=_fetch_data)

    info = sub.add_parser("info", help="print versions and devices")
    info.set_defaults(func=_info)

    ev = sub.add_parser(
        "evaluate", help="sparsity sweep (and cross-validation, robustness) written to netCDF",
        description="Fit methods on thinned observations of the synthetic basin (or --data), score "
                    "them on the test water years at every reach and write the results to netCDF.")
    ev.add_argument("--methods", nargs="+", default=["climatology", "idw", "msgl"],
                    help="methods of xmsgl.fit and baselines (default: %(default)s)")
    ev.add_argument("--keep", nargs="+", type=float, default=[1.0, 0.2, 0.05],
                    help="shares of the fine observations kept (default: %(default)s)")
    ev.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default: %(default)s)")
    ev.add_argument("--by", default="observation", choices=["observation", "reach"],
                    help="thin reach-days or whole reaches (default: %(default)s)")
    ev.add_argument("--epochs", type=int, default=10, help="epochs of the neural methods (default: %(default)s)")
    ev.add_argument("--data", default=None, help="a netCDF file or zarr store in the xmsgl convention "
                    "(default: the synthetic basin)")
    ev.add_argument("--n-segments", type=int, default=10, help="synthetic basin size (default: %(default)s)")
    ev.add_argument("--start", default="2000-10-01", help="synthetic basin start (default: %(default)s)")
    ev.add_argument("--end", default="2005-09-30", help="synthetic basin end (default: %(default)s)")
    ev.add_argument("--basin-seed", type=int, default=1, help="synthetic basin seed (default: %(default)s)")
    ev.add_argument("--reach-obs-share", type=float, default=0.1,
                    help="share of synthetic reaches with a gauge (default: %(default)s)")
    ev.add_argument("--cv", default=None, metavar="METHOD", help="also cross-validate this method")
    ev.add_argument("--folds", type=int, default=3, help="cross-validation folds (default: %(default)s)")
    ev.add_argument("--repeats", type=int, default=2, help="cross-validation repeats (default: %(default)s)")
    ev.add_argument("--cv-seeds", type=int, default=2, help="training seeds per fold (default: %(default)s)")
    ev.add_argument("--blocking", default="subbasin", choices=["subbasin", "reach", "water_year"],
                    help="cross-validation blocks (default: %(default)s)")
    ev.add_argument("--robustness", default=None, metavar="METHOD",
                    help="also run the robustness checks on this method (fitted on all observations)")
    ev.add_argument("--out", default="xmsgl-evaluation.nc", help="netCDF file (default: %(default)s)")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    ev.set_defaults(func=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xmsgl`` command."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args))
    except XmsglError as err:
        print(f"xmsgl: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
