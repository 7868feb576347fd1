"""The demo job, in its quick mode."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("torch")


def test_quick_demo_writes_table_netcdf_and_figure(tmp_path, capsys, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    from xmsgl.coverage import WARN_SD
    from xmsgl.demo import run_demo
    from xmsgl.train import resolve_device

    drawn: list = []
    monkeypatch.setattr(plt, "close", drawn.append)  # the figure, kept to look at
    res = run_demo(tmp_path / "demo", quick=True, progress=False, seed=0)
    # The map's legend lies below the map and its x axis (on it, it hid the branches
    # in its corner).
    (fig,) = drawn
    renderer = fig.canvas.get_renderer()
    legend = fig.axes[0].get_legend().get_window_extent(renderer)
    assert legend.y1 < fig.axes[0].xaxis.get_tightbbox(renderer).y0
    # ... and inside the image written: it holds the whole drawing, the legend included
    # (in inches, as wide and as tall as everything drawn; 110 dots per inch).
    import io

    from PIL import Image

    drawing = fig.get_tightbbox(renderer)
    assert drawing.y0 < 0  # the legend lies below the figure's own box...
    with Image.open(io.BytesIO(res["figure"].read_bytes())) as png:
        assert png.size[1] >= round(drawing.height * 110) - 2  # ... yet it is in the image
    monkeypatch.undo()
    plt.close(fig)
    printed = capsys.readouterr().out
    assert res["device"] == str(resolve_device("auto"))
    assert all(p.device.type == "cpu" for m in res["models"].values() for p in m.net.parameters())
    assert {r["method"] for r in res["table"]} == {"async-msgl", "fine-only", "remap"}
    for row in res["table"]:
        assert math.isfinite(row["rmse"]) and 0 < row["mae"] <= row["rmse"] < 15
        assert row["method"] in printed
    assert "RMSE" in printed and "MAE" in printed
    # The basin's sizes and the share kept are facts of the run, shown without progress.
    assert "[" not in printed.split("reaches")[0] and " fine observations (1%); test period " in printed
    with xr.open_dataset(res["netcdf"]) as out:
        # Each prediction's long_name names its method (viewers list variables by it).
        assert [out[f"reach_temp_{m}"].attrs["long_name"].rsplit(" (", 1)[1]
                for m in ("async_msgl", "fine_only", "remap")] == ["async-msgl)", "fine-only)", "remap)"]
        assert {"reach_temp_async_msgl", "reach_temp_fine_only", "reach_temp_remap",
                "reach_temp_true"} <= set(out.data_vars)
        assert out["reach_temp_async_msgl"].attrs["units"] == "degC"
        assert "xmsgl" in out.attrs["history"] and out.attrs["Conventions"] == "CF-1.11, ACDD-1.3"
        # What a catalog reads (ACDD): the test period's days, whole.
        test = res["test_period"]
        assert out.attrs["time_coverage_start"] == f"{test[0]}T00:00:00" and out.attrs["date_created"]
        assert out.attrs["summary"].startswith("Daily mean water temperature of the test period")
        assert out["time"].attrs["bounds"] == "time_bnds"
        assert (out["time_bnds"].values[:, 1] - out["time"].values == np.timedelta64(1, "D")).all()
        assert f"device={res['device']!r}" in out.attrs["history"]
        # The basin's history line, the sparsifying, then each fit and its prediction, in
        # the order they ran, each fit with its settings and the model it made.
        lines = out.attrs["history"].splitlines()
        assert "synthetic_basin(" in lines[0]
        assert re.search(r"UTC: xmsgl \S+ sparsify\(keep=0\.01, seed=0, by='observation', period=None\): "
                         r"\d+ of \d+ observations kept$", lines[1]), lines[1]
        steps = [(line.split(" UTC: xmsgl ")[1].split(" ", 1)[1].split("(")[0],
                  line.split("method='")[1].split("'")[0]) for line in lines[2:]]
        assert steps == [(step, m) for m in ("async-msgl", "fine-only", "remap")
                         for step in ("fit", "downscale")]
        for m, fit_line, made in zip(("async-msgl", "fine-only", "remap"), lines[2::2], lines[3::2]):
            sha = res["models"][m].sha256[:16]
            assert f"model sha256={sha}" in fit_line and f"model sha256={sha}" in made
            assert "seed=0" in fit_line and "train=[('" in fit_line and f"{res['test_period'][1]}')]" in fit_line
            assert ("pretrain_epochs=" in fit_line) is (m == "async-msgl")
        # What the table is computed from is in the file: the table can be recomputed.
        assert "keep=0.01, seed=0" in out.attrs["xmsgl_sparsify"] and out.attrs["seed"] == 0
        assert '"n_segments": 12' in out.attrs["generator_parameters"]
        unobs = out["reach_unobserved"].values.astype(bool)
        assert 0 < unobs.sum() < unobs.size
        # The header says which observations make a reach observed (sparsify keeps test
        # days too: "without any kept observation" could be false).
        assert (f"'unobs.' = the {int(unobs.sum())} reaches without a kept training or validation "
                "observation:") in printed
        assert out["seg_beyond_observed"].attrs["long_name"].startswith("segment with a static input")
        for row in res["table"]:
            err = out[f"reach_temp_{row['method'].replace('-', '_')}"] - out["reach_temp_true"]
            assert math.isclose(float((err ** 2).mean() ** 0.5), row["rmse"], rel_tol=1e-5)
            assert math.isclose(float((err[unobs] ** 2).mean() ** 0.5), row["rmse_unobserved"],
                                rel_tol=1e-5)
        assert set(out["reach_seg"].values) <= set(out["seg"].values)
        # Where the nodes lie: the basin's positions (the map can be drawn again from the
        # file), variables as in the basin, so a prediction can be put beside it.
        import json

        import xmsgl

        basin = xmsgl.datasets.synthetic_basin(**json.loads(out.attrs["generator_parameters"]))
        for name in ("reach_x", "reach_y", "seg_x", "seg_y"):
            assert name in out.data_vars and out[name].attrs["units"] == "m"
            np.testing.assert_array_equal(out[name].values, basin[name].values)
        beside = basin.assign(pred=out["reach_temp_async_msgl"])
        np.testing.assert_array_equal(beside["pred"].sel(time=out["time"]).values,
                                      out["reach_temp_async_msgl"].values)
        # The coverage line is recomputed from the file.
        beyond = out["reach_beyond_observed"].values.astype(bool)
        err = out["reach_temp_async_msgl"] - out["reach_temp_true"]
        words = f"{int(beyond.sum())} of {beyond.size} reaches and " \
                f"{int(out['seg_beyond_observed'].sum())} of {out.sizes['seg']} segments"
        assert words in printed
        assert f"at the others {float((err[~beyond] ** 2).mean() ** 0.5):.3f} degC" in printed
        if beyond.any():
            assert f"at those reaches {float((err[beyond] ** 2).mean() ** 0.5):.3f}" in printed
        far = out["reach_beyond_sd"].values > WARN_SD
        far_seg = out["seg_beyond_sd"].values > WARN_SD
        assert (f"{int(far.sum())} of those reaches" in printed) == bool(far.any())
        assert ("standard deviations beyond (downscale warns of" in printed) == bool(far.any() or far_seg.any())
    assert res["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Where the outputs went is said without progress too.
    assert f"wrote {res['netcdf']} and {res['figure']}" in printed
    assert not [p for p in (tmp_path / "demo").iterdir() if p.name.startswith(".")]


def test_a_failed_figure_leaves_neither_output(tmp_path, monkeypatch) -> None:
    """Both outputs or neither: a failure (or Ctrl-C) while drawing the figure used to
    leave downscaled.nc alone, which the next run then refused without --overwrite."""
    import xmsgl.demo as demo

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_figure", broken)
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(tmp_path / "d", quick=True, progress=False)
    assert not (tmp_path / "d").exists() or list((tmp_path / "d").iterdir()) == []


@pytest.mark.parametrize("failing", ["demo.png", "downscaled.nc"])
def test_a_failed_rename_leaves_neither_output(tmp_path, monkeypatch, failing: str) -> None:
    """The file was renamed into place before the figure was written, so a failure
    writing the figure (a full disk) left downscaled.nc alone."""
    import os

    import xmsgl.demo as demo
    import xmsgl.io as xio

    monkeypatch.setattr(demo, "_figure", lambda *a, **k: ({}, b"png"))
    real = os.replace

    def full(a, b):
        if str(b).endswith(failing):
            raise OSError(28, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(xio.os, "replace", full)
    with pytest.raises(OSError, match="No space"):
        demo.run_demo(tmp_path / "d", quick=True, progress=False)
    assert not (tmp_path / "d").exists() or list((tmp_path / "d").iterdir()) == []


def test_existing_outputs_are_refused_before_the_work(tmp_path, monkeypatch) -> None:
    import xmsgl.datasets
    from xmsgl.demo import run_demo
    from xmsgl.exceptions import ParameterError

    def never(*args, **kwargs):
        raise AssertionError("the demo started before its outputs were checked")

    monkeypatch.setattr(xmsgl.datasets, "synthetic_basin", never, raising=False)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "downscaled.nc").write_bytes(b"previous results")
    with pytest.raises(ParameterError, match=r"downscaled\.nc.*overwrite=True"):
        run_demo(tmp_path / "out", quick=True, progress=False)
    assert (tmp_path / "out" / "downscaled.nc").read_bytes() == b"previous results"
    (tmp_path / "afile").write_text("a file")
    for outdir in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        with pytest.raises(ParameterError, match="is a file, not a folder"):
            run_demo(outdir, quick=True, progress=False)
    # With overwrite, an output that is a folder cannot be replaced by the file: said
    # before the fits (it used to fail after them, with half the outputs written).
    (tmp_path / "dirs" / "demo.png").mkdir(parents=True)
    with pytest.raises(ParameterError, match=r"demo\.png' is a folder"):
        run_demo(tmp_path / "dirs", quick=True, progress=False, overwrite=True)
    # A failed run creates no folder: it is made only when the outputs are written.
    with pytest.raises(AssertionError, match="started before"):
        run_demo(tmp_path / "new" / "demo", quick=True, progress=False)
    assert not (tmp_path / "new").exists()


def test_progress_option_covers_the_demo(tmp_path, monkeypatch, capsys) -> None:
    # set_options(progress=False) is documented to cover the demo: no step lines.
    import xmsgl
    import xmsgl.datasets
    from xmsgl.demo import run_demo

    def stop(*args, **kwargs):
        raise AssertionError("stopped at the basin")

    monkeypatch.setattr(xmsgl.datasets, "synthetic_basin", stop, raising=False)
    with xmsgl.set_options(progress=False), pytest.raises(AssertionError, match="stopped"):
        run_demo(tmp_path / "demo", quick=True)
    assert capsys.readouterr().out == ""
    with pytest.raises(AssertionError, match="stopped"):
        run_demo(tmp_path / "demo", quick=True)
    assert "building the synthetic basin" in capsys.readouterr().out


def test_the_demo_says_where_predictions_fall_below_freezing(tmp_path, monkeypatch, capsys) -> None:
    # The heads are not bounded; a class reading the table should hear of it. Forced
    # here: the quick fits stay above 0 degC.
    import xmsgl.downscale
    from xmsgl.demo import run_demo

    real = xmsgl.downscale.downscale

    def colder(ds, model, **kwargs):
        out = real(ds, model, **kwargs)
        return out.copy(data=out.values - 12) if model.method == "async-msgl" else out

    monkeypatch.setattr(xmsgl.downscale, "downscale", colder)
    res = run_demo(tmp_path / "cold", quick=True, progress=False, seed=0)
    printed = capsys.readouterr().out
    with xr.open_dataset(res["netcdf"]) as out:
        pred = out["reach_temp_async_msgl"].values
        low = pred[pred < 0]
        truth = float(out["reach_temp_true"].min())
        others = {m: int((out[f"reach_temp_{m}"] < 0).sum()) for m in ("fine_only", "remap")}
    assert low.size and others == {"fine_only": 0, "remap": 0}
    assert (f"Reach-days predicted below 0 degC: async-msgl {low.size} (lowest {float(low.min()):.2f}), "
            f"fine-only 0, remap 0; the truth's lowest value is {truth:.2f}") in printed


def test_a_reader_that_leaves_does_not_stop_the_demo(tmp_path) -> None:
    # `xmsgl demo | head -1`: the demo stopped at its second line on the broken pipe,
    # before writing its outputs.
    import os
    import subprocess
    import sys

    out = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "xmsgl.cli", "demo", "--quick", "--no-progress",
                             "--outdir", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.readline()
    proc.stdout.close()  # the reader leaves after one line
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["demo.png", "downscaled.nc"]


@pytest.mark.parametrize("stretch", [1.0, 3.0])
def test_the_maps_legend_clears_its_axis_for_a_basin_wider_than_tall(monkeypatch, stretch: float) -> None:
    # An equal aspect makes the map short for a wide basin: a legend placed a fixed
    # share of the map's height below it landed on the axis's label.
    import matplotlib.pyplot as plt

    from xmsgl import demo
    from xmsgl.datasets import synthetic_basin

    ds = synthetic_basin(n_segments=3, start="2001-10-01", end="2002-09-30", seed=0)
    x = ds["reach_x"]
    ds["reach_x"] = (x - x.mean()) * stretch + x.mean()
    truth = ds["reach_temp_true"]
    drawn: list = []
    monkeypatch.setattr(plt, "close", drawn.append)
    demo._figure(ds, {"async-msgl": truth, "fine-only": truth}, truth, np.ones(ds.sizes["reach"], bool))
    (fig,) = drawn
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.y1 < ax.xaxis.get_tightbbox(renderer).y0
    box = ax.get_window_extent(renderer)
    assert stretch == 1 or box.width > 1.2 * box.height  # the wide map is the short one
    monkeypatch.undo()
    plt.close(fig)
