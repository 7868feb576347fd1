"""``xmsgl demo``: the whole downscaling job on the built-in synthetic basin.

Build a synthetic basin, keep 1% of its fine observations (the same share in the
training and validation periods), fit ASYNC-MSGL and the fine-only and remap
baselines, downscale the test period, score every reach (observed or not) against
the synthetic truth, and write a netCDF file and a figure. Existing outputs are
replaced only when asked (``overwrite=True``, ``xmsgl demo --overwrite``); this is
checked before the work starts.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from xmsgl.exceptions import ExtrapolationWarning, FewObservationsWarning, ParameterError, check_flag
from xmsgl.io import atomic_write, compressed_encoding, output_folder, refuse_unwritable

if TYPE_CHECKING:
    import torch

__all__ = ["run_demo", "check_outdir", "DEMO_SETTINGS", "OUTPUTS"]

#: The files the demo writes into its output folder.
OUTPUTS = ("downscaled.nc", "demo.png")

#: Basin and training settings of the demo. The full demo takes one to four minutes
#: on a quiet two-core CPU, as fast as it is (the goal is five; docs/benchmarks.md,
#: "Demo"): the
#: default synthetic network (450 segments, 3,288 reaches) over six water years, the
#: default's last six (2013-10 to 2019-09; its weather is drawn for these days alone,
#: so its temperatures are not those of the same days of ``synthetic_basin()``: score
#: the demo's file against its own ``reach_temp_true``), one-year windows without overlap, a few epochs per stage for the networks
#: on the reaches. The remap baseline's coarse network (450 segments) costs a third
#: of a second an epoch, so it gets the paper's 40: with 4 it had not converged
#: (its test predictions spanned 7.8-15.7 degC against a truth of 0-27), a baseline
#: weaker than it is.
DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "basin": {"n_segments": 450, "start": "2013-10-01", "end": "2019-09-30"},
        "fit": {"epochs": 6, "pretrain_epochs": 3, "stride": 365},
        "remap_epochs": 40,
    },
    "quick": {
        "basin": {"n_segments": 12, "start": "2015-10-01", "end": "2019-09-30"},
        "fit": {"epochs": 2, "pretrain_epochs": 1, "stride": 365},
        "remap_epochs": 10,
    },
}

METHODS = ("async-msgl", "fine-only", "remap")


def _metrics(pred: xr.DataArray, truth: xr.DataArray, unobserved: np.ndarray) -> dict[str, float]:
    err = (pred - truth).values
    ok = np.isfinite(err)
    uo = ok & unobserved[:, None]
    return {
        "rmse": float(np.sqrt(np.mean(err[ok] ** 2))),
        "mae": float(np.mean(np.abs(err[ok]))),
        "rmse_unobserved": float(np.sqrt(np.mean(err[uo] ** 2))) if uo.any() else float("nan"),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = f"{'method':<12} {'RMSE':>7} {'MAE':>7} {'RMSE unobs.':>12} {'fit s':>7}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['method']:<12} {r['rmse']:>7.3f} {r['mae']:>7.3f} "
                     f"{r['rmse_unobserved']:>12.3f} {r['fit_seconds']:>7.1f}")
    return "\n".join(lines)


def _figure(ds: xr.DataArray | xr.Dataset, preds: dict[str, xr.DataArray], truth: xr.DataArray,
            unobserved: np.ndarray) -> tuple[dict[str, Any], bytes]:
    """The figure as PNG bytes (written by the caller, after the netCDF), and what it shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    main = preds["async-msgl"]
    times = pd.DatetimeIndex(main["time"].values)
    summer = np.flatnonzero((times.month == 7) & (times.day == 15))
    day = int(summer[0]) if summer.size else int(np.argmax(main.mean("reach").values))
    x = ds["reach_x"].values / 1000.0
    y = ds["reach_y"].values / 1000.0
    ids = ds["reach"].values
    pos = {int(r): i for i, r in enumerate(ids)}
    to = ds["reach_to"].values
    segs, colour = [], []
    vals = main.isel(time=day).values
    outlets = []
    for i, t in enumerate(to):
        j = pos.get(int(t))
        if j is not None:
            segs.append([(x[i], y[i]), (x[j], y[j])])
            colour.append(vals[i])
        else:
            outlets.append(i)  # no line to draw: a marker, the largest rivers of the basin
    # The time series: the unobserved reach farthest, on average, from its segment.
    seg_of = ds["reach_seg"].values
    seg_truth = ds["seg_temp_true"].sel(time=truth["time"]).sel(seg=xr.DataArray(seg_of, dims="reach"))
    gap = np.abs(truth.values - seg_truth.values).mean(axis=1)
    gap[~unobserved] = -1
    r = int(np.argmax(gap))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 5.6), gridspec_kw={"width_ratios": [1, 1.4]})
    # One colour scale for every reach, the outlets included.
    lims = (float(np.nanmin(vals)), float(np.nanmax(vals)))
    lc = LineCollection(segs, array=np.asarray(colour), cmap="coolwarm", linewidths=1.2)
    lc.set_clim(*lims)
    ax0.add_collection(lc)
    if outlets:
        ax0.scatter(x[outlets], y[outlets], c=vals[outlets], cmap="coolwarm", vmin=lims[0],
                    vmax=lims[1], s=30, marker="o", edgecolors="k", linewidths=0.6,
                    label="outlet reach", zorder=3)
    ax0.autoscale()
    ax0.set_aspect("equal")
    # Above the outlets' circles, hollow: a circle beneath (its own, or a nearby outlet's,
    # which hid the star's centre and made it read as the outlet) stays visible.
    # Its own value on the day in the legend: inside the star the reader sees the
    # colour of whatever lies beneath (an outlet's circle half a kilometre away).
    ax0.plot(x[r], y[r], "*", color="k", mfc="none", mew=1.3, ms=15,
             label=f"reach {ids[r]} (unobserved, right): {vals[r]:.1f} degC that day", zorder=4)
    fig.colorbar(lc, ax=ax0, label="water temperature (degC)")
    ax0.set_title(f"ASYNC-MSGL fine temperature, {times[day].date()}")
    ax0.set_xlabel("x (km)")
    ax0.set_ylabel("y (km)")
    ax1.plot(times, truth.isel(reach=r).values, "k-", lw=1.5, label="truth (reach)")
    ax1.plot(times, seg_truth.isel(reach=r).values, color="0.6", lw=1.2,
             label=f"segment {seg_of[r]}, truth at its outlet (coarse)")
    ax1.plot(times, main.isel(reach=r).values, "C3-", lw=1.0, label="ASYNC-MSGL")
    ax1.plot(times, preds["fine-only"].isel(reach=r).values, "C0--", lw=0.8, label="fine-only")
    ax1.set_ylabel("water temperature (degC)")
    ax1.set_xlabel("date (test period)")
    ax1.set_title(f"unobserved reach {ids[r]}, test period")
    ax1.legend()
    fig.tight_layout()
    # The map's legend below its x axis (ticks and label), not on the map, where it hid
    # the branches in its corner: that axis's height is measured, as an equal aspect
    # makes the map short for a basin wider than tall.
    from matplotlib.transforms import offset_copy

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg's canvas
    below = ax0.get_window_extent(renderer).y0 - ax0.xaxis.get_tightbbox(renderer).y0
    ax0.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False,
               bbox_transform=offset_copy(ax0.transAxes, fig=fig, y=-(below * 72 / fig.dpi + 4),
                                          units="points"))
    import io

    buf = io.BytesIO()
    fig.savefig(buf, dpi=110, format="png", bbox_inches="tight")  # the legend below the map too
    plt.close(fig)
    return {"day": str(times[day].date()), "reach": int(ids[r])}, buf.getvalue()


def check_outdir(outdir: str | Path, overwrite: bool, option: str = "outdir",
                 overwrite_hint: str = "overwrite=True") -> Path:
    """The output folder, refused when it is a file or holds outputs not to be replaced.

    ``option`` and ``overwrite_hint`` name the argument and how to allow replacing
    in the messages (the command line says ``--outdir`` and ``--overwrite``).
    """
    folder = output_folder(outdir, option)
    existing = [str(folder / name) for name in OUTPUTS if os.path.lexists(folder / name)]
    if existing and not overwrite:
        raise ParameterError(f"{', '.join(map(repr, existing))} already exist(s); pass {overwrite_hint} "
                             f"to replace, or choose another {option}")
    # Files replace files (or links); a folder in an output's place would be found
    # only when that output is written, after the fits, with half the outputs written.
    folders = [str(folder / name) for name in OUTPUTS
               if (folder / name).is_dir() and not (folder / name).is_symlink()]
    if folders:
        raise ParameterError(f"{', '.join(map(repr, folders))} {'is a folder' if len(folders) == 1 else 'are folders'}, "
                             f"which the demo's output files cannot replace; remove "
                             f"{'it' if len(folders) == 1 else 'them'} or choose another {option}")
    # Found before the fits, not once they are done (a read-only working folder).
    refuse_unwritable(folder / OUTPUTS[0], str(outdir), option)
    return folder


def _device_name(dev: Any) -> str:
    """``cpu``, or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    import torch

    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(dev)


def run_demo(
    outdir: str | Path = "xmsgl-demo", quick: bool = False, progress: bool | None = None, seed: int = 0,
    overwrite: bool = False, device: str | torch.device = "auto",
) -> dict[str, Any]:
    """Run the demo job and write its outputs to ``outdir``.

    Parameters
    ----------
    outdir : str or Path, default "xmsgl-demo"
        Folder for ``downscaled.nc`` and ``demo.png`` (created when they are written;
        ``~`` is expanded).
    quick : bool, default False
        A 12-segment basin and two epochs: seconds instead of minutes (for tests).
    progress : bool, optional
        Print the steps and show progress bars. Default: the ``progress`` option
        (:func:`xmsgl.set_options`), True unless set otherwise.
    seed : int, default 0
        Seed of the basin, the sparsification and the fits.
    overwrite : bool, default False
        Replace ``downscaled.nc`` and ``demo.png`` when ``outdir`` already holds
        them. Without it they are refused before any work.
    device : str, default "auto"
        Where the networks are fitted and run: ``"auto"`` (cuda, then mps, then
        cpu), ``"cpu"``, ``"cuda"``, ``"cuda:1"``... An absent device is refused
        before any work.

    Returns
    -------
    dict
        ``"table"`` (one dict per method: rmse, mae, rmse_unobserved in degC,
        fit_seconds) and ``"table_text"`` (the table as printed), ``"netcdf"`` and
        ``"figure"`` paths, ``"figure_info"`` (the map's ``"day"`` and the time
        series' ``"reach"``), ``"models"`` (the fitted :class:`~xmsgl.Downscaler`
        objects), ``"test_period"``, ``"seconds"`` and ``"device"`` (where the
        networks ran).

    Raises
    ------
    ParameterError
        When ``outdir`` is a file (or lies below one), or already holds an output
        and ``overwrite`` is False.

    Examples
    --------
    >>> from xmsgl.demo import run_demo
    >>> res = run_demo("demo-out", quick=True, progress=False)  # doctest: +SKIP
    >>> sorted(r["method"] for r in res["table"])  # doctest: +SKIP
    ['async-msgl', 'fine-only', 'remap']
    """
    import xmsgl
    from xmsgl.convention import (
        OUTPUT_CONVENTIONS,
        acdd_attrs,
        cf_coordinate_attrs,
        daily_time_bounds,
        history_line,
    )
    from xmsgl.coverage import WARN_SD, coverage
    from xmsgl.downscale import downscale
    from xmsgl.model import fit
    from xmsgl.options import progress_or_option
    from xmsgl.sampling import sparsify
    from xmsgl.train import resolve_device, split_periods

    t0 = time.perf_counter()
    check_flag("quick", quick)
    check_flag("overwrite", overwrite)
    check_flag("progress", progress, none=True)
    # The progress option covers the demo too, as it does fit (options.py).
    progress = progress_or_option(progress)
    settings = DEMO_SETTINGS["quick" if quick else "full"]
    dev = resolve_device(device)
    outdir = check_outdir(outdir, overwrite)

    def say(msg: str, always: bool = False) -> None:
        # Progress lines are timed and shown with progress; the facts of the run
        # (always=True) are shown without it too.
        if progress:
            print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", flush=True)
        elif always:
            print(msg, flush=True)

    say(f"building the synthetic basin {settings['basin']}; the networks run on {_device_name(dev)}")
    ds = xmsgl.datasets.synthetic_basin(seed=seed, **settings["basin"])
    periods = split_periods(pd.DatetimeIndex(ds["time"].values))
    test = periods["test"][0]
    # The same 1% share in training and validation: validation must be as sparse
    # as what the model learns from.
    sparse = sparsify(ds, keep=0.01, seed=seed)
    # The file's history: the basin's line, then each step that made its values, in order.
    kept_args, _, kept = sparse["reach_temp"].attrs["xmsgl_sparsify"].partition(": ")
    steps = [history_line(f"{xmsgl.__version__} sparsify({kept_args}): {kept}")]
    n_obs = int(sparse["reach_temp"].notnull().sum())
    say(f"{ds.sizes['seg']} segments, {ds.sizes['reach']} reaches, {ds.sizes['time']} days; "
        f"kept {n_obs} of {int(ds['reach_temp'].notnull().sum())} fine observations (1%); "
        f"test period {test[0]} to {test[1]}", always=True)
    observed = sparse["reach_temp"].sel(time=slice(None, periods["val"][0][1])).notnull().any("time").values
    unobserved = ~np.asarray(observed)
    if quick:
        print(f"The quick basin keeps fine observations at {int(observed.sum())} reach"
              f"{'' if int(observed.sum()) == 1 else 'es'} (training and validation): too few to trust a fine-scale fit "
              "(fit's FewObservationsWarning, not repeated here); the full demo keeps them at "
              "dozens.", flush=True)
    models: dict[str, Any] = {}
    preds: dict[str, xr.DataArray] = {}
    rows = []
    truth = ds["reach_temp_true"].sel(time=slice(*test)).transpose("reach", "time")
    for method in METHODS:
        say(f"fitting {method}")
        t1 = time.perf_counter()
        kw = dict(settings["fit"])
        if method != "async-msgl":
            kw.pop("pretrain_epochs")  # stage A's epochs: only ASYNC-MSGL has a stage A
        if method == "remap":
            kw["epochs"] = settings["remap_epochs"]
        with warnings.catch_warnings():
            if quick:
                # Said once below the basin's line: a dozen segments keep a handful.
                warnings.simplefilter("ignore", FewObservationsWarning)
            models[method] = fit(sparse, method=method, seed=seed, progress=progress, device=str(dev),
                                 **periods_kw(periods), **kw)
        fit_s = time.perf_counter() - t1
        shown = ", ".join(f"{k}={v!r}" for k, v in {"method": method, "seed": seed, **kw,
                                                     **periods_kw(periods), "device": str(dev)}.items())
        steps.append(history_line(f"{xmsgl.__version__} fit({shown}): model sha256={models[method].sha256[:16]}"))
        with warnings.catch_warnings():
            # The nodes far beyond the observed ones are reported below, with coverage.
            warnings.simplefilter("ignore", ExtrapolationWarning)
            preds[method] = downscale(sparse, models[method], time=test, device=str(dev))
        steps.append(preds[method].attrs["history"])
        rows.append({"method": method, **_metrics(preds[method], truth, unobserved), "fit_seconds": fit_s})
    table = _table(rows)
    print(f"\nTest period {test[0]} to {test[1]}, all {ds.sizes['reach']} reaches against the "
          f"synthetic truth (degC); 'unobs.' = the {int(unobserved.sum())} reaches without a kept "
          f"training or validation observation:\n{table}\n", flush=True)
    # Where ASYNC-MSGL extrapolates: static inputs beyond those of the observed nodes.
    cov = coverage(sparse, models["async-msgl"], time=test)
    beyond = cov["reach_beyond_observed"].values
    err = (preds["async-msgl"] - truth).values
    there = (f"{float(np.sqrt(np.mean(err[beyond] ** 2))):.3f}" if beyond.any() else "-")
    print(f"Coverage (ds.msgl.coverage): {int(beyond.sum())} of {beyond.size} reaches and "
          f"{int(cov['seg_beyond_observed'].sum())} of {cov.sizes['seg']} segments have a static "
          f"input more than 1 standard deviation beyond those of the ones with a training-period "
          f"observation (the 'unobs.' column also counts validation observations); ASYNC-MSGL's "
          f"RMSE at those reaches {there}, at the others "
          f"{float(np.sqrt(np.mean(err[~beyond] ** 2))):.3f} degC", flush=True)
    far = cov["reach_beyond_sd"].values > WARN_SD
    far_seg = int((cov["seg_beyond_sd"].values > WARN_SD).sum())
    if far.any() or far_seg:
        # What downscale's warning (left out above) would have named.
        n_far = int(far.sum())
        who = [f"{n_far} of those reaches"] if n_far else []
        who += [f"{far_seg} segment{'' if far_seg == 1 else 's'}"] if far_seg else []
        verb = "lies" if len(who) == 1 and (n_far or far_seg) == 1 else "lie"
        text = f"{' and '.join(who)} {verb} more than {WARN_SD:g} standard deviations beyond (downscale warns of {'it' if verb == 'lies' else 'them'}"
        if n_far:
            k = int(np.argmax(cov["reach_beyond_sd"].values))
            text += (f"; farthest reach: {int(cov['reach'].values[k])}, {cov['reach_beyond_variable'].values[k]}, "
                     f"{float(cov['reach_beyond_sd'].values[k]):.1f}): ASYNC-MSGL's RMSE at those reaches "
                     f"{float(np.sqrt(np.mean(err[far] ** 2))):.3f} degC")
        else:
            text += ")"
        print(text, flush=True)
    # Heads linear in the states are not bounded: said where a prediction falls below
    # freezing, with the truth's lowest value beside it (docs/model.md).
    cold = {m: p.values[p.values < 0] for m, p in preds.items()}
    if any(v.size for v in cold.values()):
        counts = ", ".join(f"{m} {v.size}" + (f" (lowest {float(v.min()):.2f})" if v.size else "")
                           for m, v in cold.items())
        print(f"Reach-days predicted below 0 degC: {counts}; the truth's lowest value is "
              f"{float(np.nanmin(truth.values)):.2f}. Predictions are not bounded: clip them "
              "(pred.clip(min=0)) where the freezing point matters", flush=True)
    print(flush=True)

    say("writing netCDF and figure")
    # Each prediction names its method in its long_name: viewers (ncview, Panoply) list
    # variables by it.
    out = xr.Dataset({f"reach_temp_{m.replace('-', '_')}":
                      p.assign_attrs(long_name=f"{p.attrs['long_name']} ({m})")
                      for m, p in preds.items()})
    # The truth is a daily mean too, as the predictions are.
    out["reach_temp_true"] = truth.astype("float32").assign_attrs(cell_methods="time: mean")
    out["seg_temp_true"] = ds["seg_temp_true"].sel(time=slice(*test)).astype("float32").assign_attrs(
        cell_methods="time: mean")
    # What the table's columns and the figure's pairing are computed from.
    out["reach_seg"] = ds["reach_seg"]
    # Where each reach and segment lies (the basin's own plane, in metres): the map can
    # be drawn again from the file. Variables, as in the basin, so that a prediction
    # read from the file can be put beside the basin's variables.
    for name in ("reach_x", "reach_y", "seg_x", "seg_y"):
        out[name] = ds[name]
    out["reach_unobserved"] = xr.DataArray(
        unobserved.astype(np.int8), dims="reach",
        attrs={"long_name": "reach without any kept observation in the training and validation "
                            "periods (the table's 'RMSE unobs.')",
               "flag_values": np.array([0, 1], dtype=np.int8),
               "flag_meanings": "observed unobserved"})
    for dim in ("reach", "seg"):
        out[f"{dim}_beyond_observed"] = xr.DataArray(
            cov[f"{dim}_beyond_observed"].values.astype(np.int8), dims=dim,
            attrs={"long_name": f"{'reach' if dim == 'reach' else 'segment'} with a static input "
                                f"more than 1 standard deviation beyond "
                                f"those of the {'reaches' if dim == 'reach' else 'segments'} with a "
                                "training-period observation (ASYNC-MSGL's coverage"
                                + ("; reach_unobserved counts validation observations too)"
                                   if dim == "reach" else ")"),
                   "flag_values": np.array([0, 1], dtype=np.int8), "flag_meanings": "inside beyond"})
        out[f"{dim}_beyond_sd"] = cov[f"{dim}_beyond_sd"]
    out.attrs = {"title": "xmsgl demo: downscaled stream temperature on a synthetic basin",
                 "summary": "Daily mean water temperature of the test period at every reach of a "
                            "synthetic river basin, downscaled by xmsgl from its segments with "
                            f"{', '.join(preds)} fitted on 1% of the fine observations, beside "
                            "the synthetic truth (reach_temp_true, seg_temp_true).",
                 "keywords": "stream temperature, water temperature, river network, downscaling, "
                             "synthetic data",
                 "Conventions": OUTPUT_CONVENTIONS,
                 # The basin's line, then the sparsifying, and each fit and its prediction.
                 "history": "\n".join([str(ds.attrs.get("history", "")), *steps]).strip(),
                 "source": str(ds.attrs.get("source", "")),
                 "generator_parameters": str(ds.attrs.get("generator_parameters", "")),
                 "seed": seed,
                 "xmsgl_sparsify": str(sparse["reach_temp"].attrs.get("xmsgl_sparsify", "")),
                 "xmsgl_version": xmsgl.__version__}
    out.attrs.update(acdd_attrs(out))
    out = cf_coordinate_attrs(daily_time_bounds(out))
    nc = outdir / "downscaled.nc"
    png = outdir / "demo.png"
    # The figure is drawn (in memory) and written while the file waits under its
    # temporary name, and the file goes in place last: a failure (or Ctrl-C) while
    # drawing or writing either leaves neither (a new figure is taken back if the
    # file's own rename fails; one replaced with overwrite=True cannot be).
    png_new = not os.path.lexists(png)
    png_done = False
    try:
        with atomic_write(nc, overwrite=overwrite) as tmp:
            out.to_netcdf(tmp, encoding={str(k): compressed_encoding(v) for k, v in out.data_vars.items()
                                         if "time" in v.dims and v.ndim == 2 and v.dtype.kind == "f"})
            fig_info, png_bytes = _figure(ds, preds, truth, unobserved)
            with atomic_write(png, overwrite=overwrite) as tmp_png:
                tmp_png.write_bytes(png_bytes)
            png_done = True
    except BaseException:
        if png_done and png_new:
            png.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - t0
    # Said with or without progress, as the table is: where the results are.
    print(f"wrote {nc} and {png} ({seconds:.0f} s in all)", flush=True)
    return {"table": rows, "table_text": table, "netcdf": nc, "figure": png, "models": models,
            "test_period": test, "figure_info": fig_info, "seconds": seconds, "device": str(dev)}


def periods_kw(periods: dict[str, Any]) -> dict[str, Any]:
    """``fit`` keyword arguments for the demo's periods."""
    return {"train": periods["train"], "val": periods["val"], "test": periods["test"]}
