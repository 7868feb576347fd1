"""The ``xmsgl`` command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xmsgl
from xmsgl.cli import build_parser, main


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("demo", "fetch-data", "info"):
        assert cmd in out


def test_info_runs(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import torch

    monkeypatch.setenv("XMSGL_DATA_DIR", str(tmp_path))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("xmsgl ")
    assert f"cuda available: {torch.cuda.is_available()}" in out
    assert "mps available: " in out and "device='auto' uses: " in out
    assert f"torch threads: {torch.get_num_threads()}" in out
    assert f"data folder: {tmp_path} (XMSGL_DATA_DIR)" in out


def test_synthetic_defaults_apply_without_data() -> None:
    from xmsgl.cli import _check_evaluate

    args = build_parser().parse_args(["evaluate", "--out", "never-written.nc"])
    _check_evaluate(args)
    assert (args.n_segments, args.start, args.end, args.basin_seed, args.reach_obs_share) == (
        10, "2000-10-01", "2005-09-30", 1, 0.1)


def test_failed_download_exits_1_not_2(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    # A valid command that the network fails is not bad usage.
    from xmsgl.datasets import drb

    for name in drb.POOCH.registry:
        monkeypatch.setitem(drb.POOCH.urls, name, f"http://127.0.0.1:9/{name}")
    monkeypatch.setattr(drb.POOCH, "retry_if_failed", 0)
    # pooch's log handler keeps the stderr of the moment pooch was imported, which an
    # earlier test's capture may have closed since (a process's own stderr stays open).
    import sys

    import pooch
    for handler in pooch.get_logger().handlers:
        if hasattr(handler, "stream"):
            monkeypatch.setattr(handler, "stream", sys.stderr)
    assert main(["fetch-data", "--folder", str(tmp_path / "drb")]) == 1
    err = capsys.readouterr().err.strip().splitlines()  # pooch's progress lines, then the error
    assert err[-1].startswith("xmsgl: error: ") and "Traceback" not in "".join(err)
    assert "could not be downloaded from http://127.0.0.1:9/" in err[-1]
    assert len(err) > 1  # pooch's lines
    # --no-progress: the error alone (fetch-data printed its download log regardless).
    assert main(["fetch-data", "--folder", str(tmp_path / "drb2"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xmsgl: error: ")
    # In the command's words: its folder is --folder, not the Python API's folder=.
    assert "(given as --folder;" in err[0] and err[0].endswith("or give --folder a folder that holds them")
    assert "folder=" not in err[0]


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["demo"])
    assert args.outdir == "xmsgl-demo" and not args.quick


def test_console_script_installed() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xmsgl.cli", "info"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_help_and_usage_errors_do_not_import_torch(capsys: pytest.CaptureFixture[str]) -> None:
    # The fit command's help lists the methods, which came from xmsgl.model: every
    # `xmsgl --help`, and every mistyped option, waited seconds for torch to load.
    script = (
        "import contextlib, io, sys\n"
        "from xmsgl.cli import main\n"
        "for argv in (['--help'], ['fit', '--help'], ['fit'], ['demo', '--no-such-option']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "    assert 'torch' not in sys.modules, argv\n"
        "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    from xmsgl.methods import METHODS
    from xmsgl.model import METHODS as fitted

    assert fitted is METHODS
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert ", ".join(METHODS) in " ".join(capsys.readouterr().out.split())


def test_evaluate_keep_coarse_keeps_the_held_out_sites_coarse_observations(tmp_path) -> None:
    import xarray as xr

    out = tmp_path / "kept.nc"
    assert main(["evaluate", "--methods", "climatology", "--keep", "1.0", "--seeds", "0",
                 "--n-segments", "5", "--end", "2003-09-30", "--cv", "climatology", "--folds", "2",
                 "--repeats", "1", "--keep-coarse", "--out", str(out)]) == 0
    with xr.open_dataset(out) as res:
        assert res.attrs["cv_mask_coarse"] == 0
        assert res.attrs["cv"].endswith("coarse observations of held-out sites kept")
        assert "mask_coarse=False" in res.attrs["history"]


def test_evaluate_prints_the_mean_over_distinct_held_out_sets(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    import xarray as xr

    out = tmp_path / "dup.nc"
    # Five water years in three folds, twice: one held-out set is drawn in both repetitions.
    assert main(["evaluate", "--methods", "climatology", "--keep", "1.0", "--seeds", "0",
                 "--n-segments", "5", "--cv", "climatology", "--blocking", "water_year", "--folds", "3",
                 "--repeats", "2", "--out", str(out)]) == 0
    shown = capsys.readouterr().out
    printed = float(re.search(r"mean RMSE ([0-9.]+) degC over 5 distinct", shown)[1])
    # Five held-out sets: the intervals are said to be a rough guide, on screen too.
    assert "cross-validation climatology: note: intervals from 5 held-out sets are a rough guide" in shown
    with xr.open_dataset(out) as res:
        assert res.attrs["cv_note"].startswith("intervals from 5 held-out sets are a rough guide")
    with xr.open_dataset(out) as res:
        assert res.attrs["vd_n_duplicates_dropped"] == 1
        assert printed == round(float(res.vd_mean.sel(stat="estimate")), 3)
        assert round(float(res.cv_rmse.mean()), 3) != printed  # the duplicate counted twice


def test_evaluate_by_reach_says_the_segments_observations_are_kept(tmp_path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # On the Delaware files, halving the gauges cost climatology 0.0006 degC: their
    # seg_temp, built from the same gauges, kept what the thinned reaches knew, and
    # nothing said so (--keep-coarse's help spoke of hiding them, which is --cv's).
    import xarray as xr

    out = tmp_path / "r.nc"
    assert main(["evaluate", "--methods", "climatology", "--keep", "1.0", "0.5", "--by", "reach",
                 "--n-segments", "4", "--end", "2003-09-30", "--out", str(out), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "note: --by reach thins the reaches' observations (reach_temp) only: the segments' " in text
    with xr.open_dataset(out) as res:
        assert "--by reach thins" in res.attrs["sweep_note"]
    assert main(["evaluate", "--methods", "climatology", "--keep", "1.0", "0.5", "--n-segments", "4",
                 "--end", "2003-09-30", "--out", str(tmp_path / "o.nc"), "--device", "cpu"]) == 0
    assert "--by reach thins" not in capsys.readouterr().out


def test_evaluate_writes_netcdf_and_prints_a_table(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import xarray as xr

    import xmsgl

    out = tmp_path / "res.nc"
    argv = ["evaluate", "--methods", "climatology", "idw", "--keep", "1.0", "0.1", "--seeds", "0", "1",
            "--n-segments", "5", "--end", "2003-09-30", "--cv", "climatology", "--folds", "2",
            "--repeats", "2", "--robustness", "idw", "--out", str(out), "--device", "cpu"]
    before = {k: xmsgl.get_option(k) for k in ("progress", "device")}
    assert main(argv) == 0
    # The command's settings do not outlive it in the calling process.
    assert {k: xmsgl.get_option(k) for k in ("progress", "device")} == before
    text = capsys.readouterr().out
    assert "climatology" in text and "keep 0.1" in text and "robustness idw lag" in text
    # The robustness lines are changes of RMSE, and say so, with the unperturbed RMSE.
    with xr.open_dataset(out) as res:
        base = float(res.rob_base_rmse)
        assert res.rob_bias.long_name.startswith("bias (mean of prediction minus truth)")
    header = (f"robustness idw: change of test RMSE (degC) against the unperturbed {base:.3f} "
              "(positive: the perturbed run is worse)\nrobustness idw lowpass")
    assert header in text and text.index(header) < text.index("robustness idw lag")
    # idw predicts hidden scored days from its climatology: its zeros are not robustness.
    assert "robustness idw: note: idw reads only the observations of the day it predicts" in text
    # In the sweep, too, idw's row repeats climatology's: a note under the table says why.
    assert "note: idw reads only the observations of the day it predicts" in text.split("robustness")[0]
    with xr.open_dataset(out) as res:
        assert dict(res.rmse.sizes) == {"method": 2, "keep": 2, "seed": 2}
        # CF: a title and version, named metrics, and coordinates without a fill value.
        assert res.attrs["Conventions"] == "CF-1.11, ACDD-1.3" and res.attrs["title"].startswith("xmsgl evaluate")
        assert res.attrs["summary"].startswith("Test-period errors") and res.attrs["date_created"].endswith("Z")
        assert res.rmse.attrs["long_name"] == "root mean square error"
        assert "_FillValue" not in res["keep"].encoding
        # One seed per fold for a baseline, which ignores the seed.
        assert dict(res.cv_rmse.sizes) == {"cv_repeat": 2, "cv_fold": 2, "cv_seed": 1}
        assert "from its climatology" in res.attrs["robustness_note"]
        assert "row repeats climatology's" in res.attrs["sweep_note"]
        assert np.array_equal(res.rmse.sel(method="idw"), res.rmse.sel(method="climatology"))
        assert "vd_icc" in res and res.rob_d_rmse.dims == ("check", "level")
        assert res.attrs["command"].startswith("xmsgl evaluate --methods")
        assert "synthetic_basin(n_segments=5" in res.attrs["data"]
        # Every step's history line is kept; a step's settings are named as its own.
        steps = [line.split(": xmsgl ")[1].split(" ", 1)[1].split("(")[0]
                 for line in res.attrs["history"].splitlines()]
        assert steps == ["sparsity_sweep", "cross_validate", "variance_decomposition", "robustness"]
        assert "method" not in res.attrs and res.attrs["cv_method"] == "climatology"
        # The held-out sites' coarse observations were hidden (the default).
        assert res.attrs["cv_mask_coarse"] == 1 and "kept" not in res.attrs["cv"]
        assert np.isfinite(res.rmse.values).all()
    # An existing file is kept unless --overwrite is given.
    assert main(argv[:-2] + ["--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_evaluate_default_methods_leave_out_mohseni_without_air_temperature(
        tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import xarray as xr

    import xmsgl
    import xmsgl.cli as cli

    # The defaults are a baseline that reads nothing but observations, one that reads air
    # temperature, and MSGL (replaced here by fine-only's cheaper neighbour to keep it short).
    monkeypatch.setattr(cli, "_EVALUATE_METHODS", ("climatology", "mohseni"))
    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2000-10-01", end="2003-09-30", seed=1)
    ds.to_netcdf(tmp_path / "air.nc")
    ds.rename({"reach_air_temp": "reach_tave_air"}).to_netcdf(tmp_path / "drb_like.nc")
    assert main(["evaluate", "--keep", "1", "--data", str(tmp_path / "air.nc"),
                 "--out", str(tmp_path / "a.nc")]) == 0
    cap = capsys.readouterr()
    assert "mohseni " in cap.out and "left out" not in cap.err
    assert main(["evaluate", "--keep", "1", "--data", str(tmp_path / "drb_like.nc"),
                 "--out", str(tmp_path / "b.nc")]) == 0
    cap = capsys.readouterr()
    assert "mohseni is left out of the default methods" in cap.err and "reach_tave_air" in cap.err
    assert "mohseni" not in cap.out.split("wrote")[0] and "climatology" in cap.out
    with xr.open_dataset(tmp_path / "b.nc") as res:
        assert list(res["method"].values) == ["climatology"]
        assert "sweep_note" not in res.attrs
    # Named explicitly, it is refused on such data, before any work.
    assert main(["evaluate", "--methods", "mohseni", "--keep", "1", "--data",
                 str(tmp_path / "drb_like.nc"), "--out", str(tmp_path / "c.nc")]) == 2
    assert "--methods mohseni cannot run" in capsys.readouterr().err


def test_evaluate_robustness_notes_the_checks_that_change_nothing(tmp_path, capsys) -> None:
    import re

    import xarray as xr

    # The GRU reads reach inputs alone: masking segments or gauges changes none of its
    # predictions, and the table's zeros said so to nobody.
    assert main(["evaluate", "--methods", "climatology", "--keep", "1.0", "--n-segments", "6",
                 "--start", "2000-10-01", "--end", "2003-09-30", "--robustness", "gru", "--epochs", "1",
                 "--out", str(tmp_path / "r.nc"), "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    # (shift moves the GRU by next to nothing: exactly 0 or below 0.0005 degC, by machine.)
    assert re.search(r"robustness gru: note: (shift, )?mask_coarse, mask_gauges left every scored "
                     r"prediction of gru as it was \(exactly 0 at every level\): nothing they change "
                     r"reaches gru's predictions", text), text
    with xr.open_dataset(tmp_path / "r.nc") as res:
        assert "mask_coarse, mask_gauges left every scored prediction" in res.attrs["robustness_note"]
        # The method is said once, by the step's own attribute.
        assert res.attrs["rob_method"] == "gru" and "robustness_method" not in res.attrs
        for check in ("mask_coarse", "mask_gauges"):
            assert (res.rob_d_rmse.sel(check=check).fillna(0) == 0).all()
        assert (res.rob_d_rmse.sel(check="lag").fillna(0) != 0).any()
        assert "lag" not in res.attrs["robustness_note"]


def test_robustness_on_data_without_truth(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # Real data has observations only: the robustness table scores the test years'
    # observations, which the fit never sees.
    import xarray as xr

    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2003-09-30", seed=2)
    ds.drop_vars([v for v in ds.data_vars if str(v).endswith("_true")]).to_netcdf(tmp_path / "obs.nc")
    assert main(["evaluate", "--methods", "climatology", "--keep", "1", "--data", str(tmp_path / "obs.nc"),
                 "--robustness", "climatology", "--out", str(tmp_path / "r.nc")]) == 0, \
        capsys.readouterr().err
    with xr.open_dataset(tmp_path / "r.nc") as res:
        assert np.isfinite(res["rob_rmse"].values).any()
    # A network fitted for it on the test days' observations hidden on purpose says
    # nothing of them (it warned that its test period held no fine observation).
    assert main(["evaluate", "--methods", "climatology", "--keep", "1", "--data", str(tmp_path / "obs.nc"),
                 "--robustness", "fine-only", "--epochs", "1", "--out", str(tmp_path / "r2.nc")]) == 0
    assert "holds no fine observation" not in capsys.readouterr().err


def test_evaluate_reads_a_data_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2003-09-30", seed=2)
    ds.to_netcdf(tmp_path / "basin.nc")
    assert main(["evaluate", "--methods", "climatology", "--keep", "0.5", "--data", str(tmp_path / "basin.nc"),
                 "--out", str(tmp_path / "r.nc")]) == 0
    import xarray as xr

    with xr.open_dataset(tmp_path / "r.nc") as res:
        assert "basin.nc" in res.attrs["data"] and res.rmse.shape == (1, 1, 1)
    assert main(["evaluate", "--data", str(tmp_path / "missing.nc"), "--out", str(tmp_path / "x.nc")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# usage, refusals and failures: one line on stderr, never a traceback


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xmsgl: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import xmsgl

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"xmsgl {xmsgl.__version__}"


def test_closed_pipe_exits_quietly(tmp_path) -> None:
    import os

    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written, as after `| head -1`
    try:
        proc = subprocess.run([sys.executable, "-m", "xmsgl.cli", "info"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    # Its work done, a command exits 0 whether its reader stayed or not (1 before, while
    # xmsgl demo gave 0: under `set -o pipefail` a complete downscale read as a failure).
    assert proc.returncode == 0
    assert proc.stderr == "", proc.stderr


def test_warning_lines_are_whole_from_many_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # A lazy downscale's blocks warn from dask's threads: print wrote the text and its
    # newline apart, and another thread's line was glued between them.
    import threading
    import time

    import xmsgl.cli as cli

    class SlowStream:  # a terminal or pipe that lets other threads run between writes
        def __init__(self) -> None:
            self.parts: list[str] = []

        def write(self, text: str) -> int:
            time.sleep(0.0002)
            self.parts.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    stream = SlowStream()
    monkeypatch.setattr(sys, "stderr", stream)

    def many(k: int) -> None:
        for i in range(40):
            cli._warn(f"thread {k} line {i}")

    threads = [threading.Thread(target=many, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = "".join(stream.parts).splitlines()
    assert len(lines) == 240 and all(re.fullmatch(r"xmsgl: warning: thread \d line \d+", ln)
                                     for ln in lines), lines[:5]


def test_commands_in_threads_print_their_own_warnings_and_leave_python_s_hook(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Two commands overlapping in two threads: each saved and restored
    # warnings.showwarning in turn, so the second put the first's printer back for good
    # (the caller's warnings were then printed as xmsgl lines, once each).
    import threading
    import warnings

    import xmsgl.cli as cli
    from xmsgl.exceptions import XmsglWarning

    original = warnings.showwarning
    entered, second_entered, first_left = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with cli._warnings_as_lines("first"):
            entered.set()
            second_entered.wait(10)
            warnings.warn("from the first", XmsglWarning, stacklevel=1)
        first_left.set()

    def second() -> None:
        entered.wait(10)
        with cli._warnings_as_lines("second"):
            second_entered.set()
            first_left.wait(10)
            warnings.warn("from the second", XmsglWarning, stacklevel=1)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        threads = [threading.Thread(target=second), threading.Thread(target=first)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert warnings.showwarning is original
    err = capsys.readouterr().err
    assert err.count("xmsgl: warning: from the first") == 1
    assert err.count("xmsgl: warning: from the second") == 1


def test_a_cross_validation_plan_beside_another_thread_leaves_warnings_working(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # xmsgl evaluate --cv recorded the plan's notes with catch_warnings(record=True); a
    # thread silencing a note meanwhile (a lazy downscale's block building its graph)
    # put the recording hook back for good when it left: every later warning of the
    # process went to a list nobody read.
    import argparse
    import threading
    import warnings

    import xmsgl.cli as cli
    import xmsgl.evaluate as ev
    from xmsgl.datasets import synthetic_basin
    from xmsgl.nn.rgrn import quiet_sparse_notes

    in_plan, other_in, plan_done = threading.Event(), threading.Event(), threading.Event()
    plan = ev._cv_plan

    def slow_plan(*args: object, **kwargs: object) -> object:
        in_plan.set()
        other_in.wait(10)
        return plan(*args, **kwargs)  # type: ignore[arg-type]

    def other() -> None:
        in_plan.wait(10)
        with quiet_sparse_notes():
            other_in.set()
            plan_done.wait(10)

    monkeypatch.setattr(ev, "_cv_plan", slow_plan)
    ds = synthetic_basin(n_segments=4, start="2000-10-01", end="2003-09-30", seed=3)
    # Three water years in three folds: one partition, so a note on the repeat dropped.
    args = argparse.Namespace(methods=["remap"], cv="remap", robustness=None, data=None, folds=3,
                              repeats=2, blocking="water_year")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        hook, shown = warnings._showwarnmsg_impl, warnings.showwarning  # type: ignore[attr-defined]
        thread = threading.Thread(target=other)
        thread.start()
        with cli._warnings_as_lines("evaluate"):
            notes = cli._check_evaluate_data(args, ds)
            plan_done.set()
            thread.join()
        assert warnings._showwarnmsg_impl is hook and warnings.showwarning is shown  # type: ignore[attr-defined]
    assert len(notes) == 1 and "only 1 distinct partition exists" in notes[0]


def test_a_store_is_read_in_memory_without_dask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A command read its zarr store in memory by loading dask arrays inside
    # open_far_dates' turn of the warning filters: the load's tasks, on a shared
    # scheduler of one thread, waited behind another command's blocks, which waited for
    # the turn (a deadlock). Read without dask, the load has no task to wait for.
    import xarray as xr

    import xmsgl.cli as cli
    from xmsgl.datasets import synthetic_basin

    synthetic_basin(n_segments=4, start="2001-01-01", end="2001-03-31", seed=3).to_zarr(
        tmp_path / "d.zarr", consolidated=False)
    loaded: list[bool] = []
    load = xr.Dataset.load

    def watched_load(self: xr.Dataset, **kwargs: object) -> xr.Dataset:
        loaded.append(any(v.chunks is not None for v in self.variables.values()))
        return load(self, **kwargs)

    monkeypatch.setattr(xr.Dataset, "load", watched_load)
    ds = cli._read_dataset(str(tmp_path / "d.zarr"), check=False)
    assert loaded == [False]  # one load, of no dask array
    assert all(v.chunks is None for v in ds.variables.values())
    assert cli._read_dataset(str(tmp_path / "d.zarr"), lazy=True, check=False)["reach_temp"].chunks


def test_a_store_of_dates_before_1582_read_in_memory_says_only_the_error(tmp_path: Path) -> None:
    # Loaded after open_far_dates' block, its time bounds' dates gave xarray's
    # SerializationWarning first (under -W error a traceback instead of the error).
    import datetime
    import warnings

    import cftime

    import xmsgl.cli as cli
    from xmsgl.datasets import synthetic_basin

    ds = synthetic_basin(n_segments=4, start="2001-01-01", end="2001-03-31", seed=3)
    days = [cftime.DatetimeGregorian(1400, 1, 1) + datetime.timedelta(days=i) for i in range(ds.sizes["time"])]
    old = ds.assign_coords(time=days)
    old["time_bnds"] = (("time", "nv"), np.array([[d, d] for d in days], dtype=object))
    old["time"].attrs["bounds"] = "time_bnds"
    for name in ("time", "time_bnds"):
        old[name].encoding = {"units": "days since 1400-01-01", "calendar": "standard"}
    old.to_zarr(tmp_path / "old.zarr", consolidated=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(xmsgl.TimeError, match="holds cftime dates"):
            cli._read_dataset(str(tmp_path / "old.zarr"))


def test_a_warning_of_a_thread_no_command_started_goes_to_python_s_hook(
        capsys: pytest.CaptureFixture[str]) -> None:
    # A user's thread warning through the Python API while a command ran had its warning
    # printed as the command's line, in the command's words.
    import threading
    import warnings

    import xmsgl.cli as cli
    from xmsgl.exceptions import XmsglWarning

    distributed = pytest.importorskip("distributed")

    # A worker thread's name as this dask.distributed gives it (a prefix was assumed once).
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        worker_thread = client.submit(lambda: threading.current_thread().name).result()
    got: list[str] = []

    def hook(message: object, *args: object, **kwargs: object) -> None:
        got.append(str(message))

    def warn(text: str) -> None:
        warnings.warn(text, XmsglWarning, stacklevel=1)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = hook
        with cli._warnings_as_lines("downscale"):
            for name, text in (("user", "from the user's thread"),
                               (worker_thread, "from a worker of a cluster")):
                thread = threading.Thread(target=warn, args=(text,), name=name)
                thread.start()
                thread.join()
            warn("from the command")
    assert got == ["from the user's thread"]
    err = capsys.readouterr().err
    assert "xmsgl: warning: from a worker of a cluster" in err and "xmsgl: warning: from the command" in err


def test_a_command_starting_beside_a_silenced_note_keeps_its_warnings(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Another thread silencing every warning for a moment (a calendar converted by another
    # command) when a command started: its filter was kept to be put back after the
    # command (silencing the process for good), and its end put its hook back over the
    # command's (the command's warnings printed as Python's).
    import threading
    import time
    import warnings

    import xmsgl.cli as cli
    from xmsgl.exceptions import XmsglWarning, ignoring

    inside = threading.Event()

    def other() -> None:
        with ignoring(Warning):
            inside.set()
            time.sleep(0.3)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        before = list(warnings.filters)
        thread = threading.Thread(target=other)
        thread.start()
        inside.wait(10)
        with cli._warnings_as_lines("downscale"):
            warnings.warn("said by the command", XmsglWarning, stacklevel=1)
        thread.join()
        assert warnings.filters == before
    assert "xmsgl: warning: said by the command" in capsys.readouterr().err


def test_commands_in_threads_open_netcdf_files_one_at_a_time(tmp_path: Path) -> None:
    # netCDF-C and HDF5 are not thread-safe: four threads opening files at once ended
    # the process with a segmentation fault (xarray locks the data reads only).
    from xmsgl.datasets import synthetic_basin

    synthetic_basin(n_segments=6, start="2001-01-01", end="2001-03-31", seed=3).to_netcdf(tmp_path / "d.nc")
    script = """
import sys, threading
from xmsgl.cli import _read_dataset
def work():
    for _ in range(10):
        _read_dataset(sys.argv[1], lazy=True, check=False).close()
threads = [threading.Thread(target=work) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print("read")
"""
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "d.nc")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "read", (proc.returncode, proc.stderr[-2000:])


def test_system_failures_exit_1_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import xmsgl.cli as cli

    def full(args: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "_info", full)
    assert main(["info"]) == 1
    assert "No space left on device" in one_error_line(capsys.readouterr().err)


@pytest.fixture
def files(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Unusable inputs and outputs in a working folder; the sweep must never start."""
    import xarray as xr

    import xmsgl.evaluate

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the work started before the options were checked")

    monkeypatch.setattr(xmsgl.evaluate, "sparsity_sweep", never)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.nc").write_bytes(b"garbage, not netCDF\n")
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "afile").write_text("a file")
    xr.Dataset({"a": ("x", [1.0, 2.0])}).to_netcdf(tmp_path / "e1.nc")
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["evaluate", "--data", "bad.nc"], "--data 'bad.nc' cannot be read"),
        (["evaluate", "--data", "emptydir"], "--data 'emptydir' cannot be read"),
        (["evaluate", "--data", "e1.nc"], "--data 'e1.nc' is not in the xmsgl convention"),
        (["evaluate", "--out", "afile/x.nc"], "'afile' is a file, not a folder; choose another --out"),
        (["evaluate", "--out", "emptydir"], "--out 'emptydir': evaluate writes one netCDF file"),
        (["evaluate", "--out", "newdir/"], "--out 'newdir/': evaluate writes one netCDF file"),
        (["evaluate", "--out", "emptydir/."], "--out 'emptydir/.': evaluate writes one netCDF file"),
        (["evaluate", "--out", "ev.zarr"], "--out 'ev.zarr': evaluate writes one netCDF file"),
        (["demo", "--quick", "--outdir", "afile"], "--outdir 'afile' is a file"),
        (["demo", "--quick", "--outdir", "afile/sub"], "choose another --outdir"),
        (["evaluate", "--cv", "bogus"], "--cv: unknown method(s) ['bogus']"),
        (["evaluate", "--methods", "idw", "msgll"], "--methods: unknown method(s) ['msgll']"),
        (["evaluate", "--robustness", "nope"], "--robustness: unknown method(s) ['nope']"),
        (["evaluate", "--cv", "msgl", "--cv-seeds", "1"], "--cv-seeds 1: msgl depends on its training seed"),
        (["evaluate", "--cv", "idw", "--cv-seeds", "0"], "--cv-seeds 0: give at least 1"),
        (["evaluate", "--cv", "idw", "--folds", "1"], "--folds 1"),
        # --epochs with baselines alone: refused, not ignored (as fit does).
        (["evaluate", "--methods", "idw", "climatology", "--epochs", "5"],
         "--epochs: the methods asked for (['climatology', 'idw']) are baselines"),
        # Cross-validation options without --cv: refused, not ignored.
        (["evaluate", "--folds", "4", "--blocking", "reach"], "--folds --blocking: these set the cross-validation"),
        (["evaluate", "--keep-coarse"], "--keep-coarse: these set the cross-validation"),
        (["evaluate", "--cv", "idw", "--blocking", "water_year", "--keep-coarse"],
         "--keep-coarse keeps the coarse observations of held-out sites; --blocking water_year"),
        (["evaluate", "--keep", "1.0", "0"], "--keep [0.0]"),
        (["evaluate", "--seeds", "1", "1"], "--seeds [1, 1]"),
        # Refused by the sweep itself, but only after the basin was built.
        (["evaluate", "--keep", "0.5", "0.5"], "--keep [0.5, 0.5] names a share twice"),
        (["evaluate", "--seeds", "-1"], "--seeds [-1]: seeds must be integers of at least 0"),
        (["evaluate", "--basin-seed", "-1"], "--basin-seed -1"),
        (["evaluate", "--start", "notadate"], "--start 'notadate' is not a date"),
        (["evaluate", "--end", ""], "--end '' is not a date"),
        (["evaluate", "--end", "1999-09-30"], "--end 1999-09-30 is before --start 2000-10-01"),
        (["evaluate", "--start", "2000-10-01T00:00Z"], "--start '2000-10-01T00:00Z' has a time zone"),
        # Known only once the basin is built, and still before the sweep.
        (["evaluate", "--cv", "climatology", "--folds", "40"],
         "--cv climatology --blocking subbasin --folds 40: --blocking subbasin finds 10 sub-basins"),
        (["evaluate", "--cv", "climatology", "--blocking", "water_year", "--folds", "5", "--end", "2003-09-30"],
         "--folds 5: --blocking water_year finds 3 water years but --folds 5"),
        # The synthetic basin's options do not apply to a --data file: refused, not ignored.
        (["evaluate", "--data", "e1.nc", "--start", "2001-10-01"],
         "--start: these build the synthetic basin and do not apply to --data 'e1.nc'"),
        (["evaluate", "--data", "e1.nc", "--n-segments", "10", "--end", "2003-09-30"],
         "--n-segments --end: these build the synthetic basin"),
        (["fetch-data", "--folder", "afile/sub"], "choose another --folder"),
        (["fetch-data", "--folder", "afile"], "--folder 'afile' is a file"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(files, argv: list[str], expect: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    assert expect in line, line
    assert "XMSGL_DATA_DIR" not in line
    assert sorted(p.name for p in files.iterdir()) == ["afile", "bad.nc", "e1.nc", "emptydir"]


def test_robustness_method_needs_its_variables_before_the_sweep(files, capsys: pytest.CaptureFixture[str]) -> None:
    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2000-10-01", end="2002-09-30", seed=2)
    ds.drop_vars("reach_air_temp").to_netcdf(files / "noair.nc")
    for option in ("--robustness", "--cv", "--methods"):
        assert main(["evaluate", "--methods", "climatology", option, "mohseni", "--data", "noair.nc",
                     "--out", "r.nc"]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert f"{option} mohseni cannot run on --data 'noair.nc'" in line and "'reach_air_temp'" in line
    assert not (files / "r.nc").exists()


def test_the_robustness_of_climatology_says_why_its_rows_are_zero(tmp_path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import xarray as xr

    out = tmp_path / "clim.nc"
    assert main(["evaluate", "--methods", "climatology", "--keep", "1.0", "--seeds", "0",
                 "--n-segments", "4", "--end", "2002-09-30", "--robustness", "climatology",
                 "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "robustness climatology: note: climatology predicts each reach from its training" in text
    with xr.open_dataset(out) as res:
        assert float(abs(res.rob_d_rmse).max()) == 0.0
        assert "reads no input when it predicts" in res.attrs["robustness_note"]


def test_robustness_checks_the_data_cannot_take_are_refused_before_the_sweep(
        files, capsys: pytest.CaptureFixture[str]) -> None:
    # The default shift levels need days before the test period: a test period at the
    # start of the record is refused before the sweep runs (it used to be refused
    # after it), with advice the command can follow.
    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2000-10-01", end="2002-09-30", seed=2)
    ds.to_netcdf(files / "b.nc")
    assert main(["evaluate", "--methods", "climatology", "--robustness", "climatology", "--data", "b.nc",
                 "--test", "2000-10-01", "2001-09-30", "--out", "r.nc"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--robustness climatology runs the default checks" in line
    assert "0 days before the first scored day (2000-10-01)" in line and "leave shift out of checks" in line
    assert "Choose --test with more days before it" in line
    assert not (files / "r.nc").exists()


def test_cross_validation_of_a_baseline_says_what_it_cannot_tell(
        tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import xarray as xr

    import xmsgl.cli
    import xmsgl.evaluate

    said: list[str] = []
    warn, sweep = xmsgl.cli._warn, xmsgl.evaluate.sparsity_sweep

    def noted(message: object) -> None:
        said.append(str(message))
        warn(message)

    def after_the_warning(*args: object, **kwargs: object) -> object:
        assert said, "the repeats were checked after the sweep"
        return sweep(*args, **kwargs)

    monkeypatch.setattr(xmsgl.cli, "_warn", noted)
    monkeypatch.setattr(xmsgl.evaluate, "sparsity_sweep", after_the_warning)
    # Three water years in three folds: one partition, whatever the repeats.
    assert main(["evaluate", "--methods", "climatology", "--keep", "1", "--n-segments", "4",
                 "--end", "2003-09-30", "--cv", "idw", "--blocking", "water_year", "--folds", "3",
                 "--repeats", "2", "--out", str(tmp_path / "cv.nc")]) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("xmsgl: warning: ")]
    assert len(warnings) == 1 and "only 1 distinct partition exists" in warnings[0]
    assert "--repeats 2" in warnings[0] and "Traceback" not in captured.err
    assert "icc n/a (idw ignores the training seed" in captured.out and "icc 1.00" not in captured.out
    with xr.open_dataset(tmp_path / "cv.nc") as res:
        assert dict(res.cv_rmse.sizes) == {"cv_repeat": 1, "cv_fold": 3, "cv_seed": 1}
        assert np.isnan(res.vd_icc.values).all() and np.isnan(res.vd_sigma2_seed.values).all()
        assert np.isfinite(res.vd_sigma2_partition.values).all()
        assert res.attrs["vd_seed_component"].startswith("not estimated: one seed")


def test_existing_out_is_refused_before_the_work(files, capsys: pytest.CaptureFixture[str]) -> None:
    (files / "res.nc").write_text("previous results")
    assert main(["evaluate", "--methods", "climatology", "--out", "res.nc"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--overwrite" in line and "overwrite=True" not in line
    assert (files / "res.nc").read_text() == "previous results"


def test_evaluate_never_writes_over_its_data(files, capsys: pytest.CaptureFixture[str]) -> None:
    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2000-10-01", end="2001-09-30", seed=2)
    ds.to_netcdf(files / "syn.nc")
    before = (files / "syn.nc").read_bytes()
    for out in ("syn.nc", "./syn.nc", str(files / "syn.nc")):
        assert main(["evaluate", "--methods", "climatology", "--data", "syn.nc", "--out", out,
                     "--overwrite"]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert "would write over the --data input" in line and "even with --overwrite" in line
    assert (files / "syn.nc").read_bytes() == before


def test_robustness_help_names_the_training_years(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "fitted on the training years" in out and "all observations" not in out


@pytest.mark.parametrize(("command", "words"), [
    ("demo", ["fit ASYNC-MSGL and the fine-only and remap baselines", "OUTDIR/downscaled.nc",
              "OUTDIR/demo.png", "keep 1% of"]),
    ("fetch-data", ["sha256", "XMSGL_DATA_DIR"]),
    ("evaluate", ["each in (0, 1]"]),
])
def test_every_command_says_what_it_does(capsys: pytest.CaptureFixture[str], command: str,
                                         words: list[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    # Without whitespace: argparse wraps at the terminal's width, at spaces and hyphens.
    out = "".join(capsys.readouterr().out.split())
    assert all("".join(w.split()) in out for w in words), out


def test_demo_refuses_existing_outputs_unless_overwrite(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import xmsgl.demo

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(xmsgl.demo, "run_demo", lambda **kw: calls.append(kw) or {})
    # A fresh folder (as on a fresh clone) needs no --overwrite.
    assert main(["demo", "--quick", "--outdir", str(tmp_path / "new")]) == 0
    assert calls[-1]["overwrite"] is False
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "demo.png").write_bytes(b"previous figure")
    assert main(["demo", "--quick", "--outdir", str(tmp_path / "old")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "demo.png" in line and "--overwrite" in line and "overwrite=True" not in line
    assert len(calls) == 1
    assert main(["demo", "--quick", "--overwrite", "--outdir", str(tmp_path / "old")]) == 0
    assert calls[-1]["overwrite"] is True


def test_device_is_checked_before_the_work(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    import xmsgl.demo
    import xmsgl.evaluate

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(xmsgl.demo, "run_demo", lambda **kw: calls.append(kw) or {})

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the evaluation started before --device was checked")

    monkeypatch.setattr(xmsgl.evaluate, "sparsity_sweep", never)
    assert main(["demo", "--quick", "--device", "cpu", "--outdir", str(tmp_path / "a")]) == 0
    assert calls[-1]["device"] == "cpu"
    absent = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, or any with none
    for name, why in (("gpu", "is not a torch device"), (absent, "torch sees")):
        for cmd in (["demo", "--quick", "--outdir", str(tmp_path / "b")],
                    ["evaluate", "--methods", "climatology", "--out", str(tmp_path / "e.nc")]):
            assert main([*cmd, "--device", name]) == 2
            line = one_error_line(capsys.readouterr().err)
            assert f"--device {name}:" in line and why in line
    assert len(calls) == 1 and not (tmp_path / "b").exists() and not (tmp_path / "e.nc").exists()


def test_messages_in_the_commands_words_leave_python_code_alone() -> None:
    from xmsgl.cli import _cli_words

    assert (_cli_words("time=('2010-01-01', '2011-01-01') selects no day")
            == "--time 2010-01-01 2011-01-01 selects no day")
    assert _cli_words("give train=('a', 'b')") == "give --train a b"
    assert _cli_words("use method='msgl'") == "use --method msgl"
    assert (_cli_words("the validation period ('1990', '1991') holds no day; give dates inside it, or "
                       "leave val= out") == "--val 1990 1991 holds no day; give dates inside it, or leave --val out")
    assert _cli_words("the training period ('a', 'b')") == "--train a b"
    assert _cli_words("so overwrite=True does not replace it") == "so --overwrite does not replace it"
    # Settings of --set are JSON: the pair of a period in a list, a dict in double quotes.
    assert (_cli_words("for the period from the first to the second give a tuple: "
                       "stage_a_period=('2010-01-01', '2010-06-30')")
            == "for the period from the first to the second give one pair in a list: "
               """--set stage_a_period='[["2010-01-01", "2010-06-30"]]'""")
    assert (_cli_words("Give 'fine' a weight > 0 (e.g. {'coarse': 1, 'fine': 0.1}); to train")
            == """Give 'fine' a weight > 0 (e.g. --set task_weights='{"coarse": 1, "fine": 0.1}'); to train""")
    assert (_cli_words("weighting='fixed' needs task_weights, a dict such as {'coarse': 1, 'fine': 2} "
                       "(got None)")
            == """--set weighting=fixed needs --set task_weights='{"coarse": 1, "fine": 2}' (a weight """
               "for each task) (got None)")
    assert (_cli_words("'now' is not a date; give a label such as '2001', a pair (start, end) such as "
                       "('2001-01-01', '2001-12-31'), or a list of pairs")
            == "'now' is not a date; give a date such as 2001-01-01, or a year such as 2001")
    # Where one period is asked for, the advice offers no list, in Python or in the command.
    from xmsgl.periods import period_bounds

    with pytest.raises(xmsgl.PeriodError) as err:
        period_bounds(("now", "2001"), "time")
    assert "list" not in str(err.value)
    assert _cli_words(str(err.value)).endswith("give a date such as 2001-01-01, or a year such as 2001")
    # A folder that holds no model is one xmsgl fit writes; xmsgl evaluate compares the
    # methods of --methods, which has no --method (it was advised).
    assert _cli_words("give the folder a model was saved to (model.save(path) writes one)") == (
        "give the folder a model was saved to (xmsgl fit writes one; model.save in Python)")
    few = "such fits were often worse than method='remap', which reads none"
    assert _cli_words(few, "evaluate") == "such fits were often worse than remap (add it to --methods), which reads none"
    assert _cli_words(few) == "such fits were often worse than --method remap, which reads none"
    # Advice written as Python keeps its keywords: it is code to type, not an option.
    for code in ("ds.resample(time='1D').mean()", "fit(ds, method='msgl')", "f(a, time='x')",
                 "to_zarr_safe(ds, p, overwrite=True)"):
        assert _cli_words(f"run {code}") == f"run {code}"


@pytest.mark.filterwarnings("default::xmsgl.exceptions.ShortRecordWarning")
def test_evaluate_takes_a_test_period_and_advises_it(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # On a record of two water years the default split warns; its advice named
    # --train and --val, which evaluate does not have.
    import json

    import xarray as xr

    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2002-09-30", seed=2)
    ds.to_netcdf(tmp_path / "short.nc")
    base = ["evaluate", "--methods", "climatology", "msgl", "--epochs", "1", "--keep", "1",
            "--data", str(tmp_path / "short.nc")]
    assert main([*base, "--out", str(tmp_path / "a.nc")]) == 0
    err = capsys.readouterr().err
    assert "give --test START END to choose the test period" in err and "--train" not in err
    # climatology alone: the networks would validate on nothing before this test period
    base = ["evaluate", "--methods", "climatology", "--keep", "1", "--data", str(tmp_path / "short.nc")]
    assert main([*base, "--test", "2002-04-01", "2002-09-30", "--out", str(tmp_path / "b.nc")]) == 0
    assert "too few for the default split" not in capsys.readouterr().err
    with xr.open_dataset(tmp_path / "b.nc") as res:
        assert json.loads(res.attrs["test_period"]) == [["2002-04-01", "2002-09-30"]]
    assert main([*base, "--test", "2002-09-30", "2002-04-01", "--out", str(tmp_path / "c.nc")]) == 2
    assert "--test" in capsys.readouterr().err


def test_a_full_disk_while_fetching_exits_1_with_the_system_error(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # Every OSError became a DataError that advised another folder, with status 2 (bad
    # usage); a full disk is the system failing a valid command.
    import pooch

    def full(self, url, output_file, pooch_obj, check_only=False):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", full)
    assert main(["fetch-data", "--folder", str(tmp_path / "drb"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "writable folder" not in err
    # A folder that cannot be written is still the user's to change (status 2).
    def denied(self, url, output_file, pooch_obj, check_only=False):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pooch.HTTPDownloader, "__call__", denied)
    assert main(["fetch-data", "--folder", str(tmp_path / "drb3"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "writable folder" in err and "folder=" not in err


def test_evaluate_robustness_reads_the_test_days_whole(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Noon stamps: comparing them with the test period's date strings left its last
    # day out of the test days, so a baseline trained on it and was scored on it.
    import pandas as pd

    import xmsgl
    import xmsgl.model

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2003-09-30", seed=2)
    ds = ds.assign_coords(time=ds.time + pd.Timedelta(hours=12))
    ds.to_netcdf(tmp_path / "noon.nc")
    import functools

    seen: dict = {}
    real = xmsgl.model.fit

    @functools.wraps(real)  # fit reads its own signature
    def spy(*args, **kw):
        seen.update(kw)
        return real(*args, **kw)

    monkeypatch.setattr(xmsgl.model, "fit", spy)
    assert main(["evaluate", "--methods", "climatology", "--keep", "1", "--data", str(tmp_path / "noon.nc"),
                 "--robustness", "climatology", "--test", "2002-10-01", "2003-09-30",
                 "--out", str(tmp_path / "r.nc")]) == 0
    assert seen["train"] == [("2000-10-01", "2002-09-30")]


def test_an_unknown_option_is_the_subcommands_error_and_evaluate_takes_no_progress(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--methods", "climatology", "--bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "xmsgl evaluate: error: unrecognized arguments: --bogus" in err
    assert "usage: xmsgl evaluate" in err
    assert build_parser().parse_args(["evaluate", "--no-progress"]).no_progress
    for sub in (["downscale", "m", "d", "o"], ["coverage", "m", "d"]):
        assert build_parser().parse_args([*sub, "--no-progress"]).no_progress


def test_evaluate_advice_names_what_evaluate_takes() -> None:
    from xmsgl.cli import _cli_words

    said = _cli_words("no validation period: ...; give val=(start, end) (days not in train) to "
                      "choose it on held-out days", "evaluate")
    assert "--val" not in said and "more whole water years" in said and "with --cv, fewer --folds" in said
    said = _cli_words("no fine observations in the training period [('a', 'b')]; give a training "
                      "period with observations or use method='remap'", "evaluate")
    assert "--method" not in said and said.endswith("with observations")
    # xmsgl fit has --val: its advice stays.
    assert "--val START END" in _cli_words("give val=(start, end) (days not in train) to", "fit")


def test_evaluate_on_a_short_record_validates_the_robustness_network(tmp_path, capsys) -> None:
    # On two water years the --robustness network was fitted with test= and no validation
    # (none whole beside the test), and warned in cross-validation's words (--folds); it
    # now takes fit's own split, as the sweep's networks do.
    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2000-10-01", end="2002-09-30", seed=1,
                                        reach_obs_share=0.3)
    ds.to_netcdf(tmp_path / "short.nc")
    code = main(["evaluate", "--data", str(tmp_path / "short.nc"), "--methods", "climatology",
                 "--keep", "1", "--robustness", "fine-only", "--epochs", "1",
                 "--out", str(tmp_path / "r.nc")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "no validation period" not in err and "--folds" not in err
    # Data without air temperature and a method that needs it: the refusal alone, without
    # the warning that mohseni was left out of the default methods.
    ds.drop_vars("reach_air_temp").to_netcdf(tmp_path / "noair.nc")
    assert main(["evaluate", "--data", str(tmp_path / "noair.nc"), "--robustness", "mohseni",
                 "--out", str(tmp_path / "n.nc")]) == 2
    err = capsys.readouterr().err
    assert "--robustness mohseni cannot run" in err and "left out" not in err


def test_the_coverage_hint_names_the_file_that_lists_every_node() -> None:
    from xmsgl.cli import _cli_words

    text = "beyond those of the observed ones; ds.msgl.coverage(model) lists every node, input and day"
    assert _cli_words(text, "downscale").endswith(
        "xmsgl coverage MODEL DATA --out FILE.nc lists every node, input and day")


def test_advice_of_the_python_api_is_given_in_the_commands_words(tmp_path, capsys) -> None:
    # Messages that still named Python keywords and calls a shell user cannot type.
    import xmsgl.cli as cli

    said = cli._cli_words("40 of the 60 days returned have fewer than spinup=180 days of inputs before "
                          "them ... Give the dataset 180 days of inputs before the first day you want "
                          "and select that day with time=, or leave the days listed out", "downscale")
    assert "select that day with --time," in said and "fewer than --spinup 180 days" in said
    assert "xmsgl coverage MODEL DATA names the nodes and days beyond them" in cli._cli_words(
        "far beyond its training range; model.config['variables']['observed_range'] holds the ranges")
    # (Python reads PYTHONWARNINGS before xmsgl can be imported: a builtin category.)
    assert "(or make this warning an error, PYTHONWARNINGS=error::UserWarning, which makes every " \
        "xmsgl warning (every UserWarning) an error, to stop" in cli._cli_words("(or make this warning an error, warnings.simplefilter('error', "
                       "xmsgl.TimeGapWarning), to stop before writing)")
    # evaluate's record is --start/--end or --data: it has no --train.
    assert main(["evaluate", "--n-segments", "3", "--start", "2000-10-01", "--end", "2000-10-05",
                 "--methods", "climatology", "--keep", "1", "--out", str(tmp_path / "e.nc")]) == 2
    err = capsys.readouterr().err
    assert "give a longer record (--start and --end, or the file of --data)" in err and "--train" not in err
