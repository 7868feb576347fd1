"""``xmsgl fit`` and ``xmsgl downscale``: a model fitted, saved and applied from the shell."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xmsgl
from tests.conftest import as_saved_before_digests
from tests.test_cli import one_error_line
from xmsgl.cli import main

torch = pytest.importorskip("torch")

FAST = ["--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cli")
    ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2003-09-30")
    nc, store = root / "basin.nc", root / "basin.zarr"
    ds.to_netcdf(nc)
    ds.to_zarr(store, consolidated=False)
    return {"root": str(root), "nc": str(nc), "zarr": str(store)}


@pytest.fixture(scope="module")
def model_dir(files: dict[str, str]) -> str:
    path = os.path.join(files["root"], "m.xmsgl")
    assert main(["fit", files["nc"], path, "--seed", "3", *FAST]) == 0
    return path


def test_fit_saves_the_model_fit_would_return(files: dict[str, str], model_dir: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # The command is fit and save: the same settings from Python give the same model.
    saved = xmsgl.load(model_dir)
    ds = xr.load_dataset(files["nc"])
    direct = ds.msgl.fit(method="msgl", seed=3, epochs=1, progress=False)
    assert saved.weights_sha256 == direct.weights_sha256
    cfg = json.loads(open(os.path.join(model_dir, "config.json")).read())
    assert cfg["method"] == "msgl" and cfg["seed"] == 3


def test_fit_without_reach_forcings_names_the_option_to_use(
        files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    # The refusal of a prediction that reads only static inputs, in the command's words.
    ds = xr.load_dataset(files["nc"])
    ds = ds.drop_vars([v for v, da in ds.data_vars.items()
                       if da.dims == ("reach", "time") and not str(v).startswith("reach_temp")])
    path = os.path.join(files["root"], "no-reach-forcings.nc")
    ds.to_netcdf(path)
    out = os.path.join(files["root"], "static.xmsgl")
    assert main(["fit", path, out, "--method", "fine-only", *FAST]) == 2
    err = capsys.readouterr().err
    assert ("xmsgl: error: method 'fine-only' would predict the same temperature every day at "
            "each reach" in err)
    assert "or use --method msgl, whose fine head reads the segments' forcings" in err
    assert not os.path.exists(out)


def test_fit_prints_its_score_and_refuses_to_overwrite(files: dict[str, str], model_dir: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = os.path.join(files["root"], "printed.xmsgl")
    assert main(["fit", files["nc"], path, "--method", "fine-only", *FAST]) == 0
    out = capsys.readouterr().out
    assert "fitted fine-only on" in out and f"wrote {path}" in out
    best = xmsgl.load(path).history["main"]
    assert (f"best epoch {best['best_epoch']} of 1 with validation fine RMSE "
            f"{best['val'][best['best_epoch'] - 1]:.3f} degC") in out
    assert "still improving" not in out  # one epoch: nothing to compare
    # With two epochs, the line says when the last one was the best; so does the repr.
    two = os.path.join(files["root"], "two.xmsgl")
    assert main(["fit", files["nc"], two, "--method", "fine-only", "--epochs", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    kept = xmsgl.load(two)
    b = kept.history["main"]["best_epoch"]
    assert f"best epoch {b} of 2" in out and f" best_epoch={b}/2 " in repr(kept)
    assert ("(still improving at the last epoch: more --epochs may help)" in out) == (b == 2)
    before = xmsgl.load(model_dir).sha256
    assert main(["fit", files["nc"], model_dir, *FAST]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert xmsgl.load(model_dir).sha256 == before
    # --overwrite replaces a saved model, never another folder.
    project = os.path.join(files["root"], "project")
    os.makedirs(project)
    open(os.path.join(project, "notes.txt"), "w").close()
    assert main(["fit", files["nc"], project, "--overwrite", *FAST]) == 2
    assert "is not an xmsgl model folder" in capsys.readouterr().err
    assert os.listdir(project) == ["notes.txt"]


def test_fit_checks_its_options_before_reading(files: dict[str, str], tmp_path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "m")
    for argv, message in (
        (["--method", "nope"], "--method 'nope' is not known; use one of"),
        (["--method", "msgll"], "--method 'msgll' is not known (did you mean 'msgl'?); use one of"),
        (["--method", "idw", "--epochs", "3"], "the baseline 'idw' has no epochs"),
        (["--epochs", "0"], "--epochs 0: give at least 1"),
        (["--train", "2002-01-01", "2001-01-01"], "--train END 2001-01-01 is before --train START"),
        (["--val", "someday", "2001-01-01"], "--val START 'someday' is not a date"),
        # A zone on one date of the pair: refused in one line, not a comparison's traceback.
        (["--test", "2002-01-01", "2002-09-30T00:00+01:00"], "--test END '2002-09-30T00:00+01:00' has a time zone"),
    ):
        assert main(["fit", files["nc"], out, *argv]) == 2
        assert message in capsys.readouterr().err
    assert main(["fit", files["nc"], files["nc"], "--overwrite"]) == 2
    assert "would write over the input" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "absent.nc"), out]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not os.path.exists(out)


def test_the_gru_fits_where_the_automatic_device_is_a_gpu(files: dict[str, str], tmp_path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # The GRU trains on the CPU only. On a machine with a GPU, --device auto (the default)
    # was resolved to cuda before the fit, which the GRU refused: exit 2, "trains on the
    # CPU only". A GPU named with --device is still refused.
    import xmsgl.cli as cli

    monkeypatch.setattr(cli, "_device", lambda name: "cuda" if name == "auto" else name)
    out = str(tmp_path / "gru")
    assert main(["fit", files["nc"], out, "--method", "gru", *FAST]) == 0, capsys.readouterr().err
    assert xmsgl.load(out).method == "gru"
    assert main(["fit", files["nc"], str(tmp_path / "named"), "--method", "gru", "--device", "cuda",
                 *FAST]) == 2
    assert "method 'gru' trains on the CPU only" in capsys.readouterr().err


def test_fit_prints_warnings_as_lines(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2002-10-01",
                                        reach_obs_share=0.5)
    ds.to_netcdf(tmp_path / "short.nc")
    with warnings.catch_warnings():
        # As on a command line, where xmsgl's warnings are shown, not raised.
        warnings.simplefilter("default", xmsgl.XmsglWarning)
        assert main(["fit", str(tmp_path / "short.nc"), str(tmp_path / "m"), "--method", "fine-only",
                     *FAST]) == 0
    err = capsys.readouterr().err
    assert "xmsgl: warning: the record holds 2 whole water year(s)" in err


@pytest.mark.parametrize("source", ["nc", "zarr"])
@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_downscale_writes_what_downscale_returns(files: dict[str, str], model_dir: str, tmp_path,
                                                 source: str, suffix: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"pred{suffix}"
    assert main(["downscale", model_dir, files[source], str(out), "--time", "2002-10-01",
                 "2003-03-31"]) == 0
    assert f"wrote {out} (reach_temp_pred: 26 reach x 182 time, degC; msgl on cpu)" in capsys.readouterr().out
    got = (xr.open_zarr(out) if suffix == ".zarr" else xr.open_dataset(out))["reach_temp_pred"]
    ds = xr.load_dataset(files["nc"])
    want = ds.msgl.downscale(xmsgl.load(model_dir), time=("2002-10-01", "2003-03-31"), device="cpu")
    np.testing.assert_allclose(got.values, want.values, atol=1e-5)
    assert got.attrs["units"] == "degC" and "xmsgl" in got.attrs["history"]
    assert list(got["reach"].values) == list(ds["reach"].values)
    # Daily means with CF bounds: each day from its start to the next day's.
    written = xr.open_zarr(out) if suffix == ".zarr" else xr.open_dataset(out)
    assert written["time"].attrs["bounds"] == "time_bnds"
    bounds = written["time_bnds"].values
    np.testing.assert_array_equal(bounds[:, 0], written["time"].values)
    assert (bounds[:, 1] - bounds[:, 0] == np.timedelta64(1, "D")).all()
    assert got.attrs["cell_methods"] == "time: mean"
    assert written.attrs["Conventions"] == "CF-1.11, ACDD-1.3"
    # CF coordinates and what a catalog (ACDD) reads.
    assert {k: written["time"].attrs[k] for k in ("standard_name", "axis")} == {"standard_name": "time",
                                                                              "axis": "T"}
    assert written["reach"].attrs["long_name"] == "reach id"
    assert (written.attrs["time_coverage_start"], written.attrs["time_coverage_end"]) == ("2002-10-01T00:00:00",
                                                                                          "2003-04-01T00:00:00")
    assert written.attrs["date_created"].endswith("Z")
    if suffix == ".nc":
        # Compressed in chunks of the output's blocks (it was written contiguous and raw).
        assert got.encoding["zlib"] and got.encoding["shuffle"] and got.encoding["complevel"] == 4
        assert tuple(got.encoding["chunksizes"]) == (26, 182)


def test_downscale_keeps_numpy_attributes_and_reads_partial_labels(
        files: dict[str, str], model_dir: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # Attributes as a netCDF reader returns them (numpy scalars and arrays) ride on the
    # coordinates copied into the output; they used to stop the write in json.dumps.
    ds = xr.load_dataset(files["nc"])
    ds["time"].attrs["actual_range"] = np.array([0.0, 1095.0])
    ds["reach"].attrs["valid_min"] = np.int32(1)
    ds.to_netcdf(tmp_path / "attrs.nc")
    for suffix in (".nc", ".zarr"):
        out = tmp_path / f"a{suffix}"
        # An end given as a partial label includes all of it, as in the library: "2003"
        # ends after "2003-06" starts (it was refused as "before" it), and reaches past
        # the record, which is said in a line.
        with warnings.catch_warnings():
            warnings.simplefilter("default", xmsgl.XmsglWarning)
            assert main(["downscale", model_dir, str(tmp_path / "attrs.nc"), str(out), "--time",
                         "2003-06", "2003"]) == 0
        assert "xmsgl: warning: --time 2003-06 2003 reaches past" in capsys.readouterr().err
        got = (xr.open_zarr(out) if suffix == ".zarr" else xr.open_dataset(out))["reach_temp_pred"]
        assert str(got.time.values[0])[:10] == "2003-06-01" and str(got.time.values[-1])[:10] == "2003-09-30"
        assert list(np.asarray(got.time.attrs["actual_range"])) == [0.0, 1095.0]
        assert int(got.reach.attrs["valid_min"]) == 1


def test_downscale_scales_and_refusals(files: dict[str, str], model_dir: str, tmp_path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    seg = tmp_path / "seg.nc"
    assert main(["downscale", model_dir, files["nc"], str(seg), "--scale", "seg"]) == 0
    assert xr.open_dataset(seg)["seg_temp_pred"].sizes["seg"] == 5
    cross = tmp_path / "cross.zarr"
    assert main(["downscale", model_dir, files["zarr"], str(cross), "--scale", "cross"]) == 0
    assert "reach_temp_cross" in xr.open_zarr(cross)
    # A store for readers with zarr-python 2 (the installed zarr writes format 3 by default).
    v2 = tmp_path / "v2.zarr"
    assert main(["downscale", model_dir, files["zarr"], str(v2), "--time", "2002-10-01", "2002-12-31",
                 "--zarr-format", "2"]) == 0
    assert (v2 / ".zgroup").is_file() and not (v2 / "zarr.json").exists()
    assert xr.open_zarr(v2, zarr_format=2)["reach_temp_pred"].sizes["time"] == 92
    capsys.readouterr()
    for argv, message in (
        ([files["nc"], files["nc"], "--overwrite"], "would write over the input"),
        ([files["nc"], os.path.join(model_dir, "x.nc")], "would write over the input"),
        ([files["nc"], str(seg)], "already exists; pass --overwrite"),
        ([files["nc"], str(tmp_path / "c.nc"), "--scale", "cross", "--reach-chunk", "5"],
         "--scale cross runs in memory"),
        ([files["nc"], str(tmp_path / "t.nc"), "--time", "2003-01-01", "2002-01-01"],
         "--time END 2002-01-01 is before --time START"),
        ([files["nc"], str(tmp_path / "t.nc"), "--time", "2003-01-01T00:00Z", "2003-01-31"],
         "--time START '2003-01-01T00:00Z' has a time zone"),
        ([files["nc"], str(tmp_path / "t.nc"), "--zarr-format", "2"],
         "--zarr-format 2 applies to a zarr store"),
    ):
        assert main(["downscale", model_dir, *argv]) == 2
        assert message in capsys.readouterr().err
    # Another network is refused with what differs, unless asked for on purpose.
    other = xmsgl.datasets.synthetic_basin(n_segments=6, start="2002-10-01", end="2003-03-31", seed=9)
    other.to_netcdf(tmp_path / "other.nc")
    assert main(["downscale", model_dir, str(tmp_path / "other.nc"), str(tmp_path / "o.nc")]) == 2
    assert "river graph differs" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # printed as a line by the command
        assert main(["downscale", model_dir, str(tmp_path / "other.nc"), str(tmp_path / "o.nc"),
                     "--other-network"]) == 0
    # Another network's reaches may lie far beyond those the model saw: said so.
    assert "xmsgl: warning: 1 reach (id 5) has a static input" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "t.nc") and not os.path.exists(tmp_path / "c.nc")


def test_downscale_checks_only_what_the_model_reads(files: dict[str, str], model_dir: str, tmp_path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """As the Python call: an unused ensemble on one more dimension, observations in degF,
    do not stop the command (it used to validate the whole file); its messages speak of
    its own options."""
    ds = xr.load_dataset(files["nc"])
    ens = xr.concat([ds.reach_air_temp + k for k in range(3)], dim="member").rename("ens_air")
    extra = ds.assign(ens_air=ens, reach_temp=(ds.reach_temp * 1.8 + 32).assign_attrs(units="degF"))
    extra.to_netcdf(tmp_path / "extra.nc")
    out = tmp_path / "p.nc"
    assert main(["downscale", model_dir, str(tmp_path / "extra.nc"), str(out)]) == 0
    err = capsys.readouterr().err
    assert "ens_air" not in err and "degF" not in err
    want = ds.msgl.downscale(xmsgl.load(model_dir), device="cpu")
    np.testing.assert_allclose(xr.open_dataset(out)["reach_temp_pred"].values, want.values, atol=1e-5)
    # A reach far beyond the observed ones is named, with the command to see more.
    model = xmsgl.load(model_dir)
    far = ds.reach_slope.values.copy()
    far[3] = model.features.observed_range["reach_slope"][1] + 9 * model.features.std["reach_slope"]
    ds.assign(reach_slope=("reach", far, ds.reach_slope.attrs)).to_netcdf(tmp_path / "far.nc")
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # printed as a line by the command
        assert main(["downscale", model_dir, str(tmp_path / "far.nc"), str(tmp_path / "far_p.nc")]) == 0
    err = capsys.readouterr().err
    assert f"xmsgl: warning: 1 reach (id {int(ds.reach.values[3])}) has a static input" in err
    assert "'reach_slope', 9.0 standard deviations" in err and "xmsgl coverage MODEL DATA" in err
    # A variable the model reads is still judged, and the message names the file.
    ds.drop_vars("reach_air_temp").to_netcdf(tmp_path / "no_air.nc")
    assert main(["downscale", model_dir, str(tmp_path / "no_air.nc"), str(tmp_path / "q.nc")]) == 2
    err = capsys.readouterr().err
    assert "DATA " in err and "reach_air_temp" in err
    # Advice in the command's words, and a missing model folder said as such.
    base = xmsgl.baselines.fit_baseline(ds, "climatology")
    base.save(tmp_path / "clim")
    assert main(["downscale", str(tmp_path / "clim"), files["nc"], str(tmp_path / "s.nc"),
                 "--scale", "seg"]) == 2
    err = capsys.readouterr().err
    assert "--scale reach" in err and "scale='reach'" not in err
    assert main(["downscale", str(tmp_path / "nowhere"), files["nc"], str(tmp_path / "s.nc")]) == 2
    assert f"MODEL '{tmp_path / 'nowhere'}' does not exist" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "q.nc") and not os.path.exists(tmp_path / "s.nc")


def test_downscale_never_deletes_an_input_inside_out(files: dict[str, str], model_dir: str,
                                                     tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """An OUT zarr store holding DATA or MODEL is refused even with --overwrite: replacing it
    deleted them (with --scale cross, where DATA is read into memory, and for MODEL)."""
    import shutil

    store = tmp_path / "o.zarr"
    xr.Dataset({"x": ("a", [1.0])}).to_zarr(store, consolidated=False)
    shutil.copy(files["nc"], store / "input.nc")
    shutil.copytree(model_dir, store / "model")
    for argv, what in (([model_dir, str(store / "input.nc"), str(store), "--scale", "cross"], "input.nc"),
                       ([str(store / "model"), files["nc"], str(store)], "model")):
        assert main(["downscale", *argv, "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert "holds the input" in err and what in err and "would delete" in err
    assert (store / "input.nc").is_file() and (store / "model" / "config.json").is_file()


def test_downscale_on_a_damaged_chunk_is_one_line(files: dict[str, str], model_dir: str, tmp_path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """DATA is read while OUT is written: a chunk that cannot be decoded is a DataError
    naming DATA (exit 2), not a traceback, and nothing is written."""
    import shutil

    store = tmp_path / "bad.zarr"
    shutil.copytree(files["zarr"], store)
    chunks = [p for p in (store / "reach_air_temp").rglob("*") if p.is_file()
              and p.name not in ("zarr.json", ".zarray", ".zattrs")]
    for chunk in chunks:
        chunk.write_bytes(b"garbage")
    out = tmp_path / "p.nc"
    assert main(["downscale", model_dir, str(store), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xmsgl: error: DATA '{store}' could not be read") and "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_nan_inputs_found_by_the_command_get_a_shell_users_advice(
        files: dict[str, str], model_dir: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # It ended "or downscale in memory (ds.load() first, without lazy=True)", which
    # the command, reading DATA block by block, has no way to do.
    ds = xr.open_dataset(files["nc"]).load()
    ds["reach_air_temp"][0, 100:103] = np.nan
    ds.to_netcdf(tmp_path / "nan.nc")
    assert main(["downscale", model_dir, str(tmp_path / "nan.nc"), str(tmp_path / "o.nc")]) == 2
    err = one_error_line(capsys.readouterr().err)
    assert "'reach_air_temp' has 3 NaN or infinite values" in err
    assert err.endswith("count them over the whole of DATA (in Python: "
                        "int(ds['reach_air_temp'].isnull().sum()) for NaN, or "
                        "ds.load().msgl.downscale(model), which names them all)")
    assert not (tmp_path / "o.nc").exists()


def test_messages_speak_of_the_commands_options(files: dict[str, str], model_dir: str, tmp_path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """Errors and warnings name the option, not the Python keyword."""
    other = xmsgl.datasets.synthetic_basin(n_segments=6, start="2002-10-01", end="2003-03-31", seed=9)
    other.to_netcdf(tmp_path / "other.nc")
    assert main(["downscale", model_dir, str(tmp_path / "other.nc"), str(tmp_path / "o.nc")]) == 2
    err = capsys.readouterr().err
    assert "pass --other-network" in err and "check_graph" not in err
    assert main(["downscale", model_dir, files["nc"], str(tmp_path / "t.nc"), "--time", "1990", "1991"]) == 2
    assert "--time 1990 1991 selects no day" in capsys.readouterr().err
    assert main(["demo", "--quick", "--seed", "-1", "--outdir", str(tmp_path / "d")]) == 2
    assert "--seed -1" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_downscale_appends_to_the_inputs_history_and_writes_its_own_bounds(
        files: dict[str, str], model_dir: str, tmp_path) -> None:
    ds = xr.load_dataset(files["nc"])
    t = ds.time.values
    ds["time_bnds"] = (("time", "nv"), np.stack([t, t + np.timedelta64(1, "D")], axis=1))
    ds["time"].attrs["bounds"] = "time_bnds"
    ds.attrs["history"] = "2001-01-01 made by hand"
    src, out = tmp_path / "in.nc", tmp_path / "out.nc"
    ds.to_netcdf(src)
    assert main(["downscale", model_dir, str(src), str(out)]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # xarray warns about bounds naming no variable
        got = xr.open_dataset(out)
    lines = got.attrs["history"].splitlines()
    assert lines[0] == "2001-01-01 made by hand" and "downscale(method='msgl'" in lines[1]
    # The input's bounds are not carried (the output holds no copy of them); the file
    # writes its own, of the days it holds, under the name its time gives.
    assert got["time"].attrs["bounds"] == "time_bnds"
    np.testing.assert_array_equal(got["time_bnds"].values[:, 0], got["time"].values)
    got.close()
    # In memory too: the output on (reach, time) carries no time_bnds.
    pred = xr.load_dataset(src).msgl.downscale(xmsgl.load(model_dir), device="cpu")
    assert "bounds" not in pred["time"].attrs


def test_output_dataset_gives_python_the_file_the_command_writes(files: dict[str, str], model_dir: str,
                                                                 tmp_path) -> None:
    from xmsgl.convention import output_dataset
    from xmsgl.exceptions import ParameterError
    from xmsgl.io import to_netcdf_safe

    ds = xr.load_dataset(files["nc"])
    ds.attrs.update(history="2001-01-01 made by hand", featureType="timeSeries", license="CC-BY-4.0",
                    references="doi:10.0/x", creator_name="A. Gauger", institution="A Survey")
    ds["reach"].attrs["cf_role"] = "timeseries_id"
    # Places on a map, in reverse order of the reaches (taken by id, not by position).
    lat = np.linspace(41.5, 40.0, ds.sizes["reach"])
    ds["reach_lat"] = ("reach", lat, {"units": "degrees_north"})
    ds["reach_lon"] = ("reach", np.linspace(-74.0, -75.5, ds.sizes["reach"]), {"units": "degree_east"})
    src, cli_out = tmp_path / "in.nc", tmp_path / "cli.nc"
    ds.to_netcdf(src)
    assert main(["downscale", model_dir, str(src), str(cli_out), "--time", "2002-10-01", "2003-03-31"]) == 0
    read = xr.open_dataset(src, chunks={})  # lazy, as a Pangeo user reads
    pred = read.msgl.downscale(xmsgl.load(model_dir), time=("2002-10-01", "2003-03-31"), device="cpu")
    out = output_dataset(pred, read)
    assert out["reach_temp_pred"].chunks is not None  # nothing computed
    assert "Conventions" not in pred.attrs and "bounds" not in pred["time"].attrs  # pred unchanged
    py_out = to_netcdf_safe(out, tmp_path / "py.nc")
    with xr.open_dataset(cli_out) as a, xr.open_dataset(py_out) as b:
        def same(attrs: dict) -> dict:  # but when it ran, to the second
            return {k: re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "T", v) if k == "history" else v
                    for k, v in attrs.items() if k not in ("date_created", "source")}

        assert same(b.attrs) == same(a.attrs)
        assert b.attrs["history"].splitlines()[0] == "2001-01-01 made by hand"
        assert b.attrs["featureType"] == "timeSeries" and b.attrs["title"].startswith("xmsgl downscale")
        assert b.attrs["source"].startswith(str(src)) and xmsgl.load(model_dir).sha256 in b.attrs["source"]
        for name in ("time", "time_bnds", "reach", "reach_temp_pred"):
            assert same(b[name].attrs) == same(a[name].attrs), name
        xr.testing.assert_allclose(a["reach_temp_pred"], b["reach_temp_pred"], atol=1e-5)
        np.testing.assert_array_equal(a["time_bnds"].values, b["time_bnds"].values)
        # ACDD: the input's terms and citation carried, its makers named as the input's;
        # the nodes on a map, and the bounds a catalog searches by.
        assert b.attrs["Conventions"] == "CF-1.11, ACDD-1.3"
        assert (b.attrs["license"], b.attrs["references"]) == ("CC-BY-4.0", "doi:10.0/x")
        assert (b.attrs["xmsgl_input_creator_name"], b.attrs["xmsgl_input_institution"]) == (
            "A. Gauger", "A Survey")
        assert "creator_name" not in b.attrs and "institution" not in b.attrs
        assert b.attrs["summary"].startswith("Daily mean stream water temperature") and "msgl model" in \
            b.attrs["summary"] and "reaches" in b.attrs["summary"] and b.attrs["keywords"]
        assert (b.attrs["time_coverage_start"], b.attrs["time_coverage_end"],
                b.attrs["time_coverage_resolution"]) == ("2002-10-01T00:00:00", "2003-04-01T00:00:00", "P1D")
        assert "reach_lat" in b.coords and "reach_lat" in b["reach_temp_pred"].encoding["coordinates"]
        assert b["reach_lat"].attrs["standard_name"] == "latitude"
        assert b["reach_lon"].attrs["units"] == "degrees_east"
        np.testing.assert_array_equal(b["reach_lat"].values, ds["reach_lat"].sel(reach=b["reach"]).values)
        assert (b.attrs["geospatial_lat_min"], b.attrs["geospatial_lat_max"],
                b.attrs["geospatial_lon_min"], b.attrs["geospatial_lon_max"]) == (40.0, 41.5, -75.5, -74.0)
        # The projected positions too, by id, with their units: variables, as in the
        # input, so that the prediction read from the file can be put beside the input.
        for name in ("reach_x", "reach_y"):
            assert name in b.data_vars and b[name].attrs["units"] == "m"
            np.testing.assert_array_equal(b[name].values, ds[name].sel(reach=b["reach"]).values)
        assert b["reach_x"].attrs["long_name"] == ds["reach_x"].attrs["long_name"]
        beside = ds.drop_vars(["reach_lat", "reach_lon"]).assign(pred=b["reach_temp_pred"])
        np.testing.assert_array_equal(beside["pred"].sel(time=b["time"]).values, b["reach_temp_pred"].values)
        # Latitudes and longitudes are coordinates of the file (CF's discrete sampling
        # geometry): the docs' way to put the prediction beside an input holding them.
        beside = ds.assign(pred=b["reach_temp_pred"].reset_coords(drop=True))
        np.testing.assert_array_equal(beside["pred"].sel(time=b["time"]).values, b["reach_temp_pred"].values)
    # Files of consecutive months opened as one, as docs/pangeo.md says: the positions
    # stay one value a reach.
    halves = [to_netcdf_safe(output_dataset(pred.sel(time=t), read), tmp_path / f"half{i}.nc")
              for i, t in enumerate((slice("2002-10-01", "2002-12-31"), slice("2003-01-01", None)))]
    with xr.open_mfdataset(halves, data_vars="minimal", compat="no_conflicts") as both:
        assert both["reach_x"].dims == ("reach",) and both["reach_temp_pred"].sizes["time"] == 182
        np.testing.assert_array_equal(both["reach_x"].values, ds["reach_x"].sel(reach=both["reach"]).values)
    # Some reaches only: their own places.
    some = output_dataset(pred.isel(reach=[5, 2]), read)
    np.testing.assert_array_equal(some["reach_lat"].values, lat[[5, 2]])
    np.testing.assert_array_equal(some["reach_x"].values, ds["reach_x"].values[[5, 2]])
    # A pair in a unit of length, or without units (the convention's metres): one in
    # another unit, or one of the two alone, is no position to be sure of.
    for x_attrs, y_attrs, kept in (({"units": "km"}, {"units": "km"}, True), ({}, {}, True),
                                   ({"units": "degC"}, {"units": "m"}, False)):
        odd = ds.assign(reach_x=ds["reach_x"].copy(deep=False).assign_attrs(x_attrs),
                        reach_y=ds["reach_y"].copy(deep=False).assign_attrs(y_attrs))
        odd["reach_x"].attrs, odd["reach_y"].attrs = x_attrs, y_attrs
        odd_out = output_dataset(pred, odd)
        assert ("reach_x" in odd_out and "reach_y" in odd_out) is kept, x_attrs
        if kept:
            assert odd_out["reach_y"].attrs == {"long_name": "northing of the reach", **y_attrs}
    assert "reach_y" not in output_dataset(pred, ds.drop_vars("reach_x"))
    assert some.attrs["geospatial_lat_max"] == lat[2]
    # Time series of one kind of node on a map: CF's discrete sampling geometry, as
    # THREDDS and ERDDAP serve station data (an input that names its own wins); not
    # for a file of reaches and segments, nor without places.
    plain = pred.copy()
    plain["reach"].attrs = {}
    mapped = plain.assign_coords(reach_lat=("reach", lat, {"units": "degrees_north"}),
                                 reach_lon=("reach", lat - 115.0, {"units": "degrees_east"}))
    dsg = output_dataset(mapped)
    assert dsg.attrs["featureType"] == "timeSeries" and dsg["reach"].attrs["cf_role"] == "timeseries_id"
    assert "cf_role" not in mapped["reach"].attrs  # the prediction is left as it was
    assert "featureType" not in output_dataset(plain).attrs
    # Not from the names alone: places in radians, or values on other dimensions too.
    radians = plain.assign_coords(reach_lat=("reach", np.radians(lat), {"units": "radians"}),
                                  reach_lon=("reach", np.radians(lat - 115.0), {"units": "radians"}))
    assert "featureType" not in output_dataset(radians).attrs
    members = xr.concat([mapped, mapped], "member").rename("members")
    assert "featureType" not in output_dataset(members).attrs
    # A latitude in radians is no latitude in degrees for a catalog; one in plain
    # degrees is, by its standard name.
    for units, found in (("radians", False), ("degrees", True)):
        placed = pred.assign_coords(reach_lat=("reach", np.radians(lat) if not found else lat,
                                               {"units": units, "standard_name": "latitude"}))
        assert ("geospatial_lat_min" in output_dataset(placed).attrs) is found, units
    # Your own attributes over the defaults; a prediction without history gets none.
    mine = output_dataset(pred, read, attrs={"license": "CC0-1.0", "creator_name": "Me", "summary": "S"})
    assert (mine.attrs["license"], mine.attrs["creator_name"], mine.attrs["summary"]) == ("CC0-1.0", "Me", "S")
    bare = pred.copy()
    bare.attrs.pop("history")
    assert "history" not in output_dataset(bare).attrs
    with pytest.raises(ParameterError, match="attrs must be a mapping"):
        output_dataset(pred, attrs=["license"])
    # Both scales in one file: each prediction's history line, once.
    seg = read.msgl.downscale(xmsgl.load(model_dir), scale="seg", time=("2002-10-01", "2003-03-31"),
                              device="cpu")
    both = output_dataset(xr.Dataset({str(pred.name): pred, str(seg.name): seg}), source="both scales")
    lines = both.attrs["history"].splitlines()
    assert len(lines) == 2 and "scale='seg'" in lines[1] and both.attrs["source"] == "both scales"
    assert "featureType" not in both.attrs  # no input named one
    assert "featureType" not in output_dataset(xr.Dataset({"a": mapped, "b": seg.rename("b")})).attrs
    # The title and the summary name both predictions.
    for attr in ("title", "summary"):
        assert pred.attrs["long_name"] in both.attrs[attr] or \
            pred.attrs["long_name"][1:] in both.attrs[attr], attr
        assert seg.attrs["long_name"] in both.attrs[attr] and seg.attrs["long_name"] != pred.attrs["long_name"]
    with pytest.raises(ParameterError, match="rename"):
        output_dataset(pred.rename(None))
    with pytest.raises(ParameterError, match="got ndarray"):
        output_dataset(pred.values)
    with pytest.raises(ParameterError, match="ds must be the Dataset"):
        output_dataset(pred, files["nc"])


def test_coverage_prints_and_writes_what_coverage_returns(files: dict[str, str], model_dir: str, tmp_path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    ds = xr.load_dataset(files["nc"])
    # Two reaches pushed far beyond every observed reach's slope: they must be named.
    hot = ds.copy(deep=True)
    hot["reach_slope"].values[[0, 3]] = float(ds["reach_slope"].max()) * 50
    hot_nc = tmp_path / "hot.nc"
    hot.to_netcdf(hot_nc)
    out = tmp_path / "cov.nc"
    capsys.readouterr()
    assert main(["coverage", model_dir, str(hot_nc), "--out", str(out),
                 "--time", "2002-10-01", "2003-09-30"]) == 0
    printed = capsys.readouterr().out
    expected = hot.msgl.coverage(xmsgl.load(model_dir), time=("2002-10-01", "2003-09-30"))
    flagged = expected["reach_beyond_observed"].values
    assert flagged[[0, 3]].all()
    assert (f"reaches: {int(flagged.sum())} of {hot.sizes['reach']} have a static input more than "
            "1 standard deviation beyond" in printed)
    ids = hot["reach"].values
    assert f"reach {ids[0]} (reach_slope," in printed and f"reach {ids[3]} (reach_slope," in printed
    assert "(of 365 days judged, 2002-10-01 to 2003-09-30)" in printed
    assert expected.attrs["xmsgl_days_judged"] == 365
    assert expected.attrs["xmsgl_time_judged"] == "2002-10-01 to 2003-09-30"
    written = xr.load_dataset(out)
    np.testing.assert_array_equal(written["reach_beyond_observed"].values, flagged.astype(np.int8))
    np.testing.assert_array_equal(written["reach_beyond_sd"].values, expected["reach_beyond_sd"].values)
    assert list(written["reach_beyond_variable"].values) == list(expected["reach_beyond_variable"].values)
    assert written.attrs["xmsgl_model_sha256"] == expected.attrs["xmsgl_model_sha256"]
    # The input's history goes on with this step's line; distances in the CF unit "1".
    history = written.attrs["history"].splitlines()
    assert "coverage(method=" in history[-1] and "margin=1" in history[-1]
    assert history[:-1] == str(hot.attrs.get("history", "")).splitlines()
    assert written["reach_beyond_sd"].attrs["units"] == "1"
    assert written.attrs["Conventions"] == "CF-1.11, ACDD-1.3" and written.attrs["summary"].startswith("For each node")
    assert written.attrs["date_created"].endswith("Z") and written.attrs["keywords"]
    assert (written.attrs["time_coverage_start"], written.attrs["time_coverage_end"]) == (
        "2002-10-01T00:00:00", "2003-10-01T00:00:00")  # the days judged, whole
    # Never over an existing file without --overwrite, nor over an input, nor to zarr.
    assert main(["coverage", model_dir, str(hot_nc), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["coverage", model_dir, str(hot_nc), "--out", str(hot_nc), "--overwrite"]) == 2
    assert main(["coverage", model_dir, str(hot_nc), "--out", str(tmp_path / "c.zarr")]) == 2
    assert main(["coverage", model_dir, str(hot_nc), "--margin", "-1"]) == 2
    assert "--margin" in capsys.readouterr().err
    # A folder is refused as what it is, not as an existing file to --overwrite.
    (tmp_path / "adir").mkdir()
    for bad in (str(tmp_path / "adir"), str(tmp_path / "new") + os.sep):
        assert main(["coverage", model_dir, str(hot_nc), "--out", bad]) == 2
        assert "writes one netCDF file" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
    # The unchanged basin: printed without --out, nothing written; the inputs judged named.
    assert main(["coverage", model_dir, files["nc"]]) == 0
    printed = capsys.readouterr().out
    assert "reaches: " in printed and "inputs judged: " in printed and "reach_slope" in printed
    assert "not judged" not in printed
    # Without an input on time, the coverage says so rather than counting no days.
    partial = tmp_path / "partial.nc"
    ds.drop_vars(["reach_discharge", "seg_discharge"]).to_netcdf(partial)
    assert main(["coverage", model_dir, str(partial)]) == 0
    printed = capsys.readouterr().out
    assert "not judged (the model reads them, DATA lacks them): " in printed
    assert "reach_discharge" in printed.split("not judged")[1]
    # --time on a file of static inputs alone, and a period outside the record: one line
    # in the command's words.
    static = tmp_path / "static.nc"
    ds.drop_dims("time").to_netcdf(static)
    assert main(["coverage", model_dir, str(static), "--time", "2002-01-01", "2002-02-01"]) == 2
    assert "--time was given" in capsys.readouterr().err
    assert main(["coverage", model_dir, files["nc"], "--time", "2010-01-01", "2011-01-01"]) == 2
    err = capsys.readouterr().err
    assert "--time 2010-01-01 2011-01-01" in err and "time=" not in err


def test_coverage_refuses_a_baseline_and_lists_a_missing_input(files: dict[str, str], model_dir: str, tmp_path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    clim = str(tmp_path / "clim")
    assert main(["fit", files["nc"], clim, "--method", "climatology"]) == 0
    capsys.readouterr()
    assert main(["coverage", clim, str(tmp_path / "absent.nc")]) == 2  # refused before DATA is read
    err = capsys.readouterr().err
    assert f"MODEL {clim!r} is the climatology baseline (climatology reads no input" in err
    assert "--method msgl" in err and "gru" in err.split("fit one with")[1]
    mohseni = str(tmp_path / "mohseni")
    assert main(["fit", files["nc"], mohseni, "--method", "mohseni"]) == 0
    capsys.readouterr()
    assert main(["coverage", mohseni, str(tmp_path / "absent.nc")]) == 2
    err = capsys.readouterr().err  # it said mohseni learns "no weights from inputs"
    assert ("(mohseni's curves read the air temperature alone, and its predictions warn "
            "(InputRangeWarning) where that leaves the range they were fitted on (input_range in "
            "the model's config.json))") in err
    # The GRU learns from its reaches' inputs and is judged, as ds.msgl.coverage judges it
    # (the command refused it with the baselines).
    gru = str(tmp_path / "gru")
    assert main(["fit", files["nc"], gru, "--method", "gru", *FAST]) == 0
    capsys.readouterr()
    assert main(["coverage", gru, files["nc"], "--out", str(tmp_path / "gru_cov.nc")]) == 0
    printed = capsys.readouterr().out
    assert "reaches: " in printed and "segments: " not in printed
    expected = xr.load_dataset(files["nc"]).msgl.coverage(xmsgl.load(gru))
    written = xr.load_dataset(tmp_path / "gru_cov.nc")
    np.testing.assert_array_equal(written["reach_beyond_observed"].values,
                                  expected["reach_beyond_observed"].values)
    ds = xr.load_dataset(files["nc"]).drop_vars("reach_slope")
    ds.to_netcdf(tmp_path / "no_slope.nc")
    # A static input DATA lacks is listed as not judged, as one on time is.
    assert main(["coverage", model_dir, str(tmp_path / "no_slope.nc")]) == 0
    out = capsys.readouterr().out
    assert "not judged (the model reads them, DATA lacks them): reach_slope" in out


def test_fit_and_info_say_when_fine_tuning_kept_its_starting_weights(
        files: dict[str, str], model_dir: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # best_epoch 0: no epoch of the last stage validated better than its start.
    kept = xmsgl.load(model_dir)
    kept.config["history"]["main"] = {"loss": [1.0, 0.9], "val": [0.91, 0.82], "best_epoch": 0,
                                      "val_start": 0.5}
    monkeypatch.setattr(xmsgl, "fit", lambda *a, **k: kept)
    path = os.path.join(files["root"], "kept.xmsgl")
    capsys.readouterr()
    assert main(["fit", files["nc"], path, "--method", "direct", *FAST]) == 0
    out = capsys.readouterr().out
    assert ("the starting weights of the fine-tuning kept (validation fine RMSE 0.500 degC): none "
            "of its 2 epochs scored lower") in out
    assert main(["info", path]) == 0
    out = capsys.readouterr().out
    assert ("the weights the last stage started from kept (validation fine RMSE 0.500 degC): none "
            "of its 2 epochs scored lower") in out
    assert "best epoch" not in out


@pytest.mark.filterwarnings("default::xmsgl.exceptions.XmsglWarning")
def test_info_says_a_models_warnings_as_the_other_commands_do(
        files: dict[str, str], model_dir: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # It printed Python's warning ("bin/xmsgl:8: XmsglWarning: ..." and the source
    # line), twice with --data.
    edited = str(tmp_path / "edited.xmsgl")
    shutil.copytree(model_dir, edited)
    cfg = json.loads(open(os.path.join(edited, "config.json")).read())
    cfg["hyperparameters"]["lr"] = 0.01
    with open(os.path.join(edited, "config.json"), "w") as f:
        json.dump(cfg, f)
    for extra in ([], ["--data", files["nc"]]):
        capsys.readouterr()
        assert main(["info", edited, *extra]) == 0
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and err[0].startswith(
            f"xmsgl: warning: {edited + '/config.json'!r} was edited after the model was saved")


def test_threads_set_torchs_count_for_the_command_alone(files: dict[str, str], tmp_path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # The command had no way to set them: the model's sha256 depends on the count, and a
    # shared machine wants one thread.
    import torch

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    path = str(tmp_path / "m.xmsgl")
    assert main(["fit", files["nc"], path, *FAST, "--threads", str(other)]) == 0
    assert xmsgl.load(path).config["torch_threads"] == other
    assert torch.get_num_threads() == before
    capsys.readouterr()
    assert main(["info", path]) == 0
    assert f"with {other} torch thread" in capsys.readouterr().out
    assert main(["downscale", path, files["nc"], str(tmp_path / "o.nc"), "--threads", str(other)]) == 0
    assert torch.get_num_threads() == before
    assert main(["fit", files["nc"], str(tmp_path / "n.xmsgl"), *FAST, "--threads", "0"]) == 2
    assert "--threads 0: give at least 1" in capsys.readouterr().err
    assert not (tmp_path / "n.xmsgl").exists()


def test_a_fifo_given_as_data_is_refused_not_waited_on(model_dir: str, tmp_path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Opening it waited for a writer without end.
    fifo = tmp_path / "data.nc"
    os.mkfifo(fifo)
    for argv in (["downscale", model_dir, str(fifo), str(tmp_path / "out.nc")],
                 ["info", model_dir, "--data", str(fifo)]):
        capsys.readouterr()
        assert main(argv) == 2
        assert f"the data file {str(fifo)!r} is a FIFO, not a file" in capsys.readouterr().err
    assert not (tmp_path / "out.nc").exists()


@pytest.mark.filterwarnings("default::xmsgl.exceptions.XmsglWarning")
def test_info_shows_control_characters_of_a_config_escaped(
        model_dir: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # They went to the terminal as they were: an escape sequence erased a line, a newline
    # forged one.
    edited = str(tmp_path / "edited.xmsgl")
    shutil.copytree(model_dir, edited)
    cfg = json.loads(open(os.path.join(edited, "config.json")).read())
    cfg["created"] = "2026-12-03\x1b[2K\rFAKE: model verified OK\x07"
    cfg["data"]["targets_sha256"] = "abc\nsha256 FORGED"
    with open(os.path.join(edited, "config.json"), "w") as f:
        json.dump(cfg, f)
    capsys.readouterr()
    assert main(["info", edited]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert not any(line.startswith("sha256 FORGED") for line in out.splitlines())
    assert "\\x1b[2K\\rFAKE" in out and "abc\\nsha256 FORGED" in out


def test_info_describes_a_saved_model(files: dict[str, str], model_dir: str, tmp_path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["info", model_dir]) == 0
    lines = capsys.readouterr().out.splitlines()
    model = xmsgl.load(model_dir)
    cfg = model.config
    assert lines[0].startswith(f"{model_dir}: msgl (the fine head's prediction)") and "seed 3" in lines[0]
    assert lines[1] == f"sha256 {model.sha256}"
    assert f"{cfg['graph']['n_seg']} segments, {cfg['graph']['n_reach']} reaches" in lines[2]
    assert lines[2].endswith("graphs: fit's defaults")
    # What a colleague compares with their own network's (ds.msgl.graphs().fingerprint).
    assert f"(graph fingerprint {cfg['graph']['fingerprint']})" in lines[2]
    for k in ("train", "val", "test"):
        (a, b), = cfg["periods"][k]
        assert f"{k}: {a} to {b}" in lines
    main_hist = cfg["history"]["main"]
    best = main_hist["best_epoch"]
    fit_line = next(ln for ln in lines if ln.startswith("fit: "))
    assert f"{cfg['n_fine_train_obs']} fine training observations" in fit_line
    assert f"best epoch {best} of {len(main_hist['val'])}" in fit_line
    assert f"{main_hist['val'][best - 1]:.3f} degC" in fit_line
    inputs = next(ln for ln in lines if ln.startswith("reach inputs: "))
    for name in cfg["variables"]["reach_vars"]:
        assert f"{name} (" in inputs
    assert "reach_slope (1, static)" in inputs and "reach_air_temp (degC)" in inputs
    def info_of(name: str, *fit_args: str) -> tuple[str, str]:
        """Fit into tmp_path/name with fit_args, then what xmsgl info prints of it."""
        path = str(tmp_path / name)
        assert main(["fit", files["nc"], path, *fit_args]) == 0
        capsys.readouterr()
        assert main(["info", path]) == 0
        return path, capsys.readouterr().out

    # ASYNC-MSGL names its stage A; a baseline says what it is; a missing folder is refused.
    path, out = info_of("async", "--method", "async-msgl", *FAST)
    stage = xmsgl.load(path).config["stage_a"]
    assert f"stage A: {stage['period'][0][0]} to {stage['period'][0][1]}" in out
    assert f"tasks {', '.join(stage['tasks'])}" in out
    clim, out = info_of("clim", "--method", "climatology")
    assert "the climatology baseline" in out and f"sha256 {xmsgl.load(clim).sha256}" in out
    test = xmsgl.load(clim).config["test"][0]
    assert f"test: {test[0]} to {test[1]}" in out  # the default split's, held out
    assert "reads: no variable (the days of year alone)" in out
    _, out = info_of("mohseni", "--method", "mohseni")
    assert "reads: reach_air_temp (air temperature, as its trailing 5-day mean)" in out
    _, out = info_of("idw", "--method", "idw")
    assert "reads: reach_temp (the sources" in out and "; seg_temp (" in out and "reach_length (" in out
    gru, out = info_of("gru", "--method", "gru", *FAST)
    cfg = xmsgl.load(gru).config
    assert "the gru baseline" in out and "best epoch 1 of 1" in out
    threads = cfg["torch_threads"]
    assert f" on cpu with {threads} torch thread{'s' if threads > 1 else ''}, seed 0" in out
    assert f"test: {cfg['periods']['test'][0][0]} to {cfg['periods']['test'][0][1]}" in out
    assert f"hidden {cfg['hyperparameters']['hidden']}" in out
    assert "reach inputs: reach_air_temp (degC)" in out and "segment inputs" not in out
    assert main(["fit", files["nc"], str(tmp_path / "gru2"), "--method", "gru", *FAST]) == 0
    assert "best epoch 1 of 1 with validation fine RMSE" in capsys.readouterr().out  # once left out
    assert main(["downscale", clim, files["nc"], str(tmp_path / "c.nc"), "--other-network"]) == 2
    assert f"MODEL {clim!r}: baseline 'climatology'" in capsys.readouterr().err
    assert main(["coverage", model_dir, files["nc"], "--overwrite"]) == 2
    assert "--overwrite replaces the file of --out, which is not given" in capsys.readouterr().err
    # Without validation days the epoch kept was chosen on the training loss: said so.
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # printed as a line by the command
        assert main(["fit", files["nc"], str(tmp_path / "noval"), "--train", "2000-10-01", "2002-09-30",
                     "--test", "2002-10-01", "2003-09-30", "--epochs", "2", "--no-progress"]) == 0
    assert "xmsgl: warning: no validation period" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "noval")]) == 0
    out = capsys.readouterr().out
    assert "val: none" in out and "chosen on the training loss" in out and "still improving" not in out
    _, out = info_of("remap", "--method", "remap", *FAST)
    assert "segments' observations only" in out and "fine training observations" not in out
    # Only the inputs a model reads are listed (remap reads no reach input, fine-only no
    # segment input), as coverage judges them.
    assert "segment inputs: " in out and "reach inputs: " not in out
    _, out = info_of("fine", "--method", "fine-only", *FAST)
    assert "reach inputs: " in out and "segment inputs: " not in out
    # Nor the settings it does not read (its config records weighting "mgda").
    hp_line = next(ln for ln in out.splitlines() if ln.startswith("hyperparameters: "))
    assert "weighting" not in hp_line and "fine_head" not in hp_line and "hidden " in hp_line
    # A config without "output" (the method implies it; downscale reads such a model).
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    cfg = json.loads((bare / "config.json").read_text())
    del cfg["output"]
    (bare / "config.json").write_text(json.dumps(as_saved_before_digests(cfg)))
    assert main(["info", str(bare)]) == 0
    assert "msgl (the fine head's prediction)" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["info", files["nc"]]) == 2


def test_downscale_refuses_an_out_that_names_a_folder(files: dict[str, str], model_dir: str, tmp_path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # "pred/" was written as a netCDF file named "pred".
    out = str(tmp_path / "pred") + os.sep
    assert main(["downscale", model_dir, files["nc"], out]) == 2
    assert "names a folder" in capsys.readouterr().err
    assert not (tmp_path / "pred").exists()
    assert main(["downscale", model_dir, files["nc"], str(tmp_path / "pred.zarr") + os.sep]) == 0
    assert (tmp_path / "pred.zarr").is_dir()
    # A name that promises another format ("out.csv" was written as netCDF).
    for name in ("out.csv", "out", "out.parquet"):
        assert main(["downscale", model_dir, files["nc"], str(tmp_path / name)]) == 2
        assert "give a name ending in .nc (netCDF; or .cdf, .nc4, .netcdf) or .zarr" in capsys.readouterr().err
        assert not (tmp_path / name).exists()
    assert main(["evaluate", "--out", str(tmp_path / "scores.csv")]) == 2
    assert "writes one netCDF file; give a file name ending in .nc" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["pred/", "pred/.", "existing.nc/"])
def test_downscale_out_naming_a_folder_is_refused_before_overwrite_is_advised(
        files: dict[str, str], model_dir: str, tmp_path, name: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "existing.nc").write_bytes(b"x")
    out = str(tmp_path) + os.sep + name  # as typed: pathlib would drop the separator
    assert main(["downscale", model_dir, files["nc"], out]) == 2
    err = capsys.readouterr().err
    assert "names a folder" in err and "--overwrite" not in err
    assert not (tmp_path / "pred").exists() and (tmp_path / "existing.nc").read_bytes() == b"x"


def test_checks_come_in_the_order_that_gives_advice_that_works(files: dict[str, str], model_dir: str, tmp_path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # "already exists; pass --overwrite" came first, and --overwrite was then refused.
    nc = files["nc"]
    assert main(["downscale", model_dir, nc, nc]) == 2
    err = capsys.readouterr().err
    assert "would write over the input" in err and "pass --overwrite" not in err
    (tmp_path / "emptydir").mkdir()
    assert main(["fit", nc, str(tmp_path / "emptydir"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "is not an xmsgl model folder" in err and "pass --overwrite" not in err
    # An empty argument (an unset shell variable) is said to be empty, not taken for ".".
    out = str(tmp_path / "x.nc")
    for argv, said in ((["downscale", model_dir, "", out], "DATA '' is empty"),
                       (["downscale", "", nc, out], "MODEL '' is empty"),
                       (["fit", "", str(tmp_path / "m")], "DATA '' is empty"),
                       (["info", ""], "MODEL '' is empty"),
                       (["coverage", "", nc], "MODEL '' is empty")):
        assert main(argv) == 2
        assert said in capsys.readouterr().err, argv
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    assert main(["info", str(tmp_path / "dangling")]) == 2
    assert "is a symbolic link to" in capsys.readouterr().err
    # What the model cannot give is blamed on MODEL, before DATA is read (here it is absent).
    fine = str(tmp_path / "fine")
    assert main(["fit", nc, fine, "--method", "fine-only", *FAST]) == 0
    capsys.readouterr()
    assert main(["downscale", fine, str(tmp_path / "absent.nc"), out, "--scale", "seg"]) == 2
    assert f"MODEL {fine!r}: method 'fine-only' has no coarse prediction; use --scale reach" in (
        capsys.readouterr().err)
    assert not os.path.exists(out)


def test_nothing_is_written_inside_a_zarr_store_or_a_saved_model(files: dict[str, str], model_dir: str, tmp_path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # fit wrote a model folder into a store (every later read of the store warned about
    # it) and the demo its files into a model folder, which a save could then no longer
    # replace; fit found out only when it saved, after the whole fit.
    store, nc = files["zarr"], files["nc"]
    before = sorted(os.listdir(store)), sorted(os.listdir(model_dir))
    for argv, said in ((["fit", nc, os.path.join(store, "m")], "MODEL"),
                       (["fit", nc, os.path.join(model_dir, "sub"), *FAST], "MODEL"),
                       (["downscale", model_dir, nc, os.path.join(store, "p.nc")], "OUT"),
                       (["coverage", model_dir, nc, "--out", os.path.join(store, "c.nc")], "--out"),
                       (["demo", "--quick", "--outdir", store, "--overwrite"], None),
                       (["demo", "--quick", "--outdir", os.path.join(model_dir, "d")], None)):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert ("zarr store" in err or "saved xmsgl folder" in err) and "write to a path outside it" in err, err
        assert said is None or f"xmsgl: error: {said} " in err
    assert (sorted(os.listdir(store)), sorted(os.listdir(model_dir))) == before
    import xmsgl.io

    with pytest.raises(xmsgl.ParameterError, match="saved xmsgl folder"):
        xmsgl.io.to_netcdf_safe(xr.Dataset({"a": ("x", [1.0])}), os.path.join(model_dir, "x.nc"))


@pytest.mark.skipif(not hasattr(getattr(xr, "coders", None), "CFDatetimeCoder"),
                    reason="needs xarray 2025.01 or later (xr.coders.CFDatetimeCoder)")
def test_downscale_reads_standard_dates_beyond_2262(files: dict[str, str], model_dir: str) -> None:
    # xarray decodes a standard calendar beyond 1678-2262 as cftime, which the command
    # refused with advice it could not follow; it now reads them as datetime64[s].
    import pandas as pd

    ds = xr.load_dataset(files["nc"])
    far = ds.assign_coords(time=pd.date_range("2297-10-01", periods=ds.sizes["time"], freq="D", unit="s"))
    src, out = os.path.join(files["root"], "far.nc"), os.path.join(files["root"], "far_out.nc")
    far.to_netcdf(src)
    assert main(["downscale", model_dir, src, out, "--time", "2297-10-01", "2297-12-31"]) == 0
    want = far.msgl.downscale(xmsgl.load(model_dir), time=("2297-10-01", "2297-12-31"))
    with xr.open_dataset(out, decode_times=xr.coders.CFDatetimeCoder(time_unit="s")) as got:
        assert str(got.time.values[0])[:10] == "2297-10-01" and got.sizes["time"] == 92
        assert str(got.time_bnds.values[-1, 1])[:10] == "2298-01-01"
        np.testing.assert_allclose(got.reach_temp_pred.values, want.values, atol=1e-6)


@pytest.mark.parametrize(("calendar", "start", "filled"), [
    ("noleap", "2003-10-01", "2004-02-29"), ("360_day", "2000-10-01", "2000-10-31"),
    ("noleap", "2297-10-01", "2300-02-28")])  # 2300 is no leap year: nothing lacking then
def test_convert_calendar_runs_a_climate_models_calendar(files: dict[str, str], model_dir: str, tmp_path,
                                                         capsys: pytest.CaptureFixture[str], calendar: str,
                                                         start: str, filled: str) -> None:
    # Forcings on a model calendar were refused with advice in Python only.
    import pandas as pd

    ds = xr.load_dataset(files["nc"]).drop_vars(["reach_temp", "seg_temp", "reach_temp_true", "seg_temp_true"])
    ds = ds.assign_coords(time=pd.date_range(start, periods=ds.sizes["time"], freq="D", unit="s"))
    model_cal = ds.convert_calendar(calendar, align_on="date" if calendar == "360_day" else None,
                                    use_cftime=True)
    src = tmp_path / f"{calendar}.nc"
    model_cal.to_netcdf(src)
    assert main(["downscale", model_dir, str(src), str(tmp_path / "refused.nc")]) == 2
    assert "holds cftime dates" in capsys.readouterr().err.replace("\n", " ")
    out = tmp_path / "out.nc"
    assert main(["downscale", model_dir, str(src), str(out), "--convert-calendar"]) == 0
    assert main(["coverage", model_dir, str(src), "--convert-calendar"]) == 0
    decode = xr.coders.CFDatetimeCoder(time_unit="s") if hasattr(getattr(xr, "coders", None), "CFDatetimeCoder") \
        else True
    with xr.open_dataset(out, decode_times=decode) as got:
        pred = got["reach_temp_pred"].load()
        history = got.attrs["history"]
    assert np.issubdtype(pred.time.dtype, np.datetime64) and str(pred.time.values[0])[:10] == start
    assert np.isfinite(pred.values).all()
    # Every day of the standard calendar, the ones the model calendar lacks filled and named.
    assert (np.diff(pred.time.values) == np.timedelta64(1, "D")).all()
    assert f"time converted from calendar {calendar!r} to 'standard'" in history
    lacking = calendar == "360_day" or start.startswith("2003")
    assert (filled in pred.attrs.get("xmsgl_input_filled_spans", "")) == lacking
    # Before the first day it lacks, the standard record's prediction.
    want = ds.msgl.downscale(xmsgl.load(model_dir))
    first = "2000-10-30" if calendar == "360_day" else "2004-02-28"
    np.testing.assert_allclose(pred.sel(time=slice(None, first)).values,
                               want.sel(time=slice(None, first)).values, atol=1e-5)
    if not lacking:
        np.testing.assert_allclose(pred.values, want.values, atol=1e-5)


def test_outputs_name_their_sources_by_absolute_path(files: dict[str, str], model_dir: str, tmp_path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Given relative paths, the source attribute kept them, which meant nothing once
    # the output was moved.
    monkeypatch.chdir(files["root"])
    data, model = os.path.basename(files["nc"]), os.path.basename(model_dir)
    want = f"{os.path.join(files['root'], data)} with the model {os.path.join(files['root'], model)}"
    assert main(["downscale", model, data, str(tmp_path / "p.nc"), "--time", "2002-10-01", "2002-10-31"]) == 0
    assert main(["coverage", model, data, "--out", str(tmp_path / "c.nc")]) == 0
    for name in ("p.nc", "c.nc"):
        with xr.open_dataset(tmp_path / name) as out:
            assert out.attrs["source"] == want


def test_a_netcdf_file_is_read_in_blocks_of_whole_stored_chunks(tmp_path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from xmsgl.cli import _NETCDF_CHUNKS, _open_any

    ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2002-09-30")
    contiguous, daily = tmp_path / "contiguous.nc", tmp_path / "daily.nc"
    ds.to_netcdf(contiguous)
    ds.to_netcdf(daily, encoding={v: {"chunksizes": (ds[v].sizes["reach"], 1)}
                                  for v in ds.data_vars if ds[v].dims == ("reach", "time")})
    old = dict(_NETCDF_CHUNKS)
    try:
        _NETCDF_CHUNKS.update(reach=10, time=100)  # blocks smaller than this basin
        lazy = _open_any(contiguous, lazy=True)
        # A contiguous file was one dask chunk per variable, read whole.
        assert lazy["reach_air_temp"].chunks == ((10, 10, 6), (100,) * 7 + (30,))
        per_day = _open_any(daily, lazy=True)
        # Stored a day at a time and all reaches at once: whole stored chunks.
        assert per_day["reach_air_temp"].chunks == ((26,), (100,) * 7 + (30,))
        xr.testing.assert_identical(lazy.load(), xr.load_dataset(contiguous))
        # An unlimited time (netCDF-C's default for a record dimension): the data are
        # stored a day of every reach at a time, the time coordinate in chunks of its
        # own (512 days), which set the blocks' days before.
        unlimited = tmp_path / "unlimited.nc"
        ds.to_netcdf(unlimited, unlimited_dims=["time"])
        with xr.open_dataset(unlimited) as raw:
            var = raw["reach_air_temp"]
            assert var.encoding["chunksizes"][var.dims.index("time")] == 1
            assert raw["time"].encoding["chunksizes"][0] > 100
        assert _open_any(unlimited, lazy=True)["reach_air_temp"].chunks[1][0] == 100
        # Days are taken fewer where every reach is one stored chunk, to bound a block.
        monkeypatch.setattr("xmsgl.cli._NETCDF_CHUNK_VALUES", 26 * 40)
        assert _open_any(unlimited, lazy=True)["reach_air_temp"].chunks[1][0] == 40
    finally:
        _NETCDF_CHUNKS.clear()
        _NETCDF_CHUNKS.update(old)


def test_chunking_advice_is_in_the_commands_words(files: dict[str, str], model_dir: str, tmp_path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # A store of one day a chunk: the advice was Python calls the command cannot take.
    daily = tmp_path / "daily.zarr"
    ds = xr.load_dataset(files["nc"]).isel(time=slice(-40, None)).chunk({"time": 1})
    for v in ds.variables.values():
        v.encoding.clear()
    ds.to_zarr(daily, consolidated=False)
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # printed as a line by the command
        assert main(["downscale", model_dir, str(daily), str(tmp_path / "out.zarr")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "are chunked by 1 day along time" in err
    assert "store DATA in chunks of a year along time (in Python: ds.chunk({'time': 365}).to_zarr(...))" in err
    assert "open the store with" not in err


def test_sigterm_stops_a_write_as_ctrl_c_does_and_leaves_nothing(
        files: dict[str, str], model_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A batch system's cancel (SIGTERM) used to kill the process mid-write, leaving its
    temporary file; Ctrl-C printed a traceback."""
    import signal

    import xmsgl.cli

    before = signal.getsignal(signal.SIGTERM)
    write = xr.Dataset.to_netcdf

    def cancelled(self: xr.Dataset, path: object, *args: object, **kwargs: object) -> object:
        write(self, path, *args, **kwargs)  # the temporary file is there, whole or not
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", cancelled)
    out = tmp_path / "out" / "pred.nc"
    out.parent.mkdir()
    assert main(["downscale", model_dir, files["nc"], str(out)]) == 143
    assert "stopped by SIGTERM; no output was left half-written" in capsys.readouterr().err
    assert list(out.parent.iterdir()) == []  # neither OUT nor its temporary file
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back

    def interrupted(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(xmsgl.cli, "_info", interrupted)
    assert main(["info"]) == 130
    assert "stopped by Ctrl-C" in capsys.readouterr().err
    # Ctrl-C while the options are made (their method names import torch: seconds).
    monkeypatch.setattr(xmsgl.cli, "build_parser", interrupted)
    assert main(["info"]) == 130
    assert capsys.readouterr().err == ("xmsgl: error: stopped by Ctrl-C before the command started; "
                                       "nothing was written\n")

    # An append grows its store in place: the line says it was cut back, not renamed.
    monkeypatch.undo()
    store = tmp_path / "pred.zarr"
    assert main(["downscale", model_dir, files["nc"], str(store), "--time", "2002-10-01", "2002-12-31"]) == 0
    capsys.readouterr()

    def stopped(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(xmsgl.io, "append_zarr", stopped)
    assert main(["downscale", model_dir, files["nc"], str(store), "--time", "2003-01-01", "2003-01-31",
                 "--append"]) == 130
    assert ("stopped by Ctrl-C; no output was left half-written (the store was cut back to the days "
            "it held before)") in capsys.readouterr().err


def test_a_full_disk_names_the_output_as_it_was(files: dict[str, str], model_dir: str, tmp_path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # The error named the hidden temporary file alone, removed by then.
    import errno

    def full(self: xr.Dataset, path: object, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full)
    out = tmp_path / "pred.nc"
    assert main(["downscale", model_dir, files["nc"], str(out)]) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and ".tmp'; writing 'pred.nc' failed under that temporary " \
        "name, now removed: 'pred.nc' is as it was before the command" in err
    assert list(tmp_path.iterdir()) == []
    # A temporary name left by a killed run, named by an error, is not said to be removed.
    left = tmp_path / ".pred.nc.0123456789ab.tmp"
    left.write_text("")

    def blocked(self: xr.Dataset, path: object, *args: object, **kwargs: object) -> None:
        raise OSError(errno.EACCES, "Permission denied", str(left))

    monkeypatch.setattr(xr.Dataset, "to_netcdf", blocked)
    assert main(["downscale", model_dir, files["nc"], str(out)]) == 1
    assert "now removed" not in capsys.readouterr().err


def test_a_second_ctrl_c_cannot_stop_the_removal_of_a_failed_write(tmp_path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    import xmsgl.io

    seen = []
    remove = xmsgl.io._remove

    def spy(path: object) -> None:
        seen.append(signal.getsignal(signal.SIGINT))
        remove(path)

    monkeypatch.setattr(xmsgl.io, "_remove", spy)

    def failing(tmp: Path, now: bool, guard: bool) -> None:
        tmp.write_text("half")  # a write that had begun
        raise KeyboardInterrupt

    # Python's own handler to start from: a process started in the background by a
    # shell inherits SIGINT ignored, where the checks below could not fail.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            xmsgl.io._write(failing, tmp_path / "a.nc", False, True)
        assert seen and all(h is signal.SIG_IGN for h in seen)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    finally:
        signal.signal(signal.SIGINT, before)
    assert list(tmp_path.iterdir()) == []


def test_an_output_that_cannot_be_written_is_refused_before_any_work(
        files: dict[str, str], tmp_path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # It was found when the model or the sweep was saved, after all the work, with
    # exit 1 and an error naming a hidden temporary file.
    import tempfile

    locked = tmp_path / "locked"
    locked.mkdir()
    real = tempfile.mkstemp

    def refuse(*args, **kwargs):
        if Path(kwargs.get("dir", "")) == locked:
            raise PermissionError(13, "Permission denied")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr(xmsgl, "fit", lambda *a, **k: pytest.fail("the fit ran"))
    assert main(["fit", files["nc"], str(locked / "m"), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"MODEL {str(locked / 'm')!r} cannot be written (Permission denied" in err
    # A folder still to be made is judged by the nearest one that exists.
    assert main(["fit", files["nc"], str(locked / "new" / "m"), *FAST]) == 2
    assert "cannot be written" in capsys.readouterr().err
    assert sorted(p.name for p in locked.iterdir()) == []


def test_a_demo_folder_or_a_store_that_cannot_be_written_is_refused_before_any_work(
        files: dict[str, str], model_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The demo ran its fits in a read-only folder and failed at the end, exit 1; an
    # append to a store another user owns failed after the downscale, with a bare
    # PermissionError naming a chunk's temporary file.
    import tempfile

    from xmsgl.demo import run_demo
    from xmsgl.exceptions import ParameterError
    from xmsgl.io import append_zarr

    store = tmp_path / "p.zarr"
    assert main(["downscale", model_dir, files["nc"], str(store), "--time", "2002-10-01", "2002-10-31"]) == 0
    # The static arrays are not written by an append: another user's may stay so.
    locked = {tmp_path / "ro", store / "reach_temp_pred", store / "reach"}
    (tmp_path / "ro").mkdir()
    real = tempfile.mkstemp

    def refuse(*args, **kwargs):
        if Path(kwargs.get("dir", "")) in locked:
            raise PermissionError(13, "Permission denied")
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    monkeypatch.setattr("xmsgl.cli._load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    monkeypatch.setattr("xmsgl.datasets.synthetic_basin", lambda *a, **k: pytest.fail("the demo ran"))
    assert main(["demo", "--outdir", str(tmp_path / "ro" / "demo"), "--no-progress"]) == 2
    assert "--outdir" in capsys.readouterr().err
    with pytest.raises(ParameterError, match="outdir .*cannot be written .*Permission denied"):
        run_demo(outdir=tmp_path / "ro" / "demo", progress=False)
    assert main(["downscale", model_dir, files["nc"], str(store), "--time", "2002-11-01", "2002-11-30",
                 "--append"]) == 2
    err = capsys.readouterr().err
    assert "--append: OUT" in err and "reach_temp_pred" in err and "nothing was appended" in err
    before = xr.open_zarr(store).sizes["time"]
    ds = xr.load_dataset(files["nc"])
    monkeypatch.undo()
    piece = ds.msgl.downscale(xmsgl.load(model_dir), time=("2002-11-01", "2002-11-30"), device="cpu")
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(ParameterError, match="cannot be written .*reach_temp_pred.*nothing was appended"):
        append_zarr(piece, store)
    assert xr.open_zarr(store).sizes["time"] == before == 31
    locked.difference_update({store / "reach_temp_pred"})  # the static 'reach' stays another's
    append_zarr(piece, store)
    assert xr.open_zarr(store).sizes["time"] == 61
    assert sorted(p.name for p in (tmp_path / "ro").iterdir()) == []


def test_a_model_and_a_run_can_be_given_again_from_their_record(files: dict[str, str], model_dir: str,
                                                                tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # A reviewer refitting from config.json needed Python for any hyperparameter but the
    # epochs, and could not replay a downscale whose history named spinup or chunk.
    path = tmp_path / "m"
    assert main(["fit", files["nc"], str(path), *FAST, "--set", "hidden=3", "--set", "lr=0.002",
                 "--set", "weighting=equal"]) == 0
    hp = xmsgl.load(path).config["hyperparameters"]
    assert (hp["hidden"], hp["lr"], hp["weighting"]) == (3, 0.002, "equal")
    capsys.readouterr()
    from xmsgl.cli import _settings

    # Numbers as numbers (.001 too), names and dates as text, lists as JSON.
    assert _settings(["lr=.001", "hidden=08", "stage_a_period=2001", "fine_head=concat",
                      "task_weights=[1, 2, 1]", "clip_grad_norm=null"]) == {
        "lr": 0.001, "hidden": 8, "stage_a_period": "2001", "fine_head": "concat",
        "task_weights": [1, 2, 1], "clip_grad_norm": None}
    assert _settings(['stage_a_period=["2001", "2002"]']) == {"stage_a_period": ["2001", "2002"]}
    for bad, says in ((["--set", "seed=2"], "seed has its own option, --seed"),
                      (["--set", "max_hops=3"], "max_hops has its own option, --max-hops"),
                      (["--set", "lr=nan"], "give a finite number"),
                      (["--set", "hidden"], "give NAME=VALUE"),
                      (["--set", "hiden=3"], "did you mean 'hidden'"),
                      # It echoed '--train (...)', rewritten by the command's words.
                      (["--set", 'train=("2001-10-01","2002-06-30")'],
                       "--set train=...: train has its own option, --train"),
                      # Read as one name: "stage_a_tasks ['coarse,remap'] are not known".
                      (["--set", "stage_a_tasks=coarse,remap"],
                       """--set stage_a_tasks=coarse,remap: a list is written in JSON, e.g. """
                       """--set stage_a_tasks='["coarse", "remap"]'""")):
        assert main(["fit", files["nc"], str(tmp_path / "x"), *FAST, *bad]) == 2
        assert says in capsys.readouterr().err
    out = tmp_path / "p.nc"
    assert main(["downscale", model_dir, files["nc"], str(out), "--time", "2002-10-01", "2002-12-31",
                 "--spinup", "30", "--chunk", "100"]) == 0
    ds = xr.load_dataset(files["nc"])
    want = ds.msgl.downscale(xmsgl.load(model_dir), time=("2002-10-01", "2002-12-31"), spinup=30,
                             chunk=100, device="cpu")
    with xr.open_dataset(out) as got:
        assert "spinup=30, chunk=100" in got["reach_temp_pred"].attrs["history"]
        np.testing.assert_allclose(got["reach_temp_pred"].values, want.values, atol=1e-5)
    assert main(["downscale", model_dir, files["nc"], str(tmp_path / "q.nc"), "--spinup", "-1"]) == 2
    assert "--spinup -1: give at least 0" in capsys.readouterr().err
    # A baseline has no windows to set: said of MODEL, in the command's words.
    base = tmp_path / "clim"
    assert main(["fit", files["nc"], str(base), "--method", "climatology"]) == 0
    assert main(["downscale", str(base), files["nc"], str(tmp_path / "r.nc"), "--spinup", "30"]) == 2
    assert f"--spinup: MODEL {str(base)!r} is the baseline 'climatology'" in capsys.readouterr().err


def test_info_names_and_checks_the_data_a_model_learned_from(files: dict[str, str], model_dir: str,
                                                             tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["info", model_dir, "--data", files["nc"]]) == 0
    said = capsys.readouterr().out
    record = xmsgl.load(model_dir).config["data"]
    assert f"targets sha256 {record['targets_sha256']}" in said and "versions: xmsgl" in said
    assert f"inputs sha256 {record['inputs_sha256']}" in said
    assert "targets on the days the fit learned from the same; inputs on the days it read the same" in said
    ds = xr.load_dataset(files["nc"])
    ds["reach_air_temp"][:, 5] += 0.5  # a training day's forcing
    changed = tmp_path / "changed.nc"
    ds.to_netcdf(changed)
    assert main(["info", model_dir, "--data", str(changed)]) == 0
    assert "learned from the same; inputs on the days it read DIFFERENT" in capsys.readouterr().out
    # A baseline records its data as the networks do (--data refused it): mohseni reads
    # the air temperature, climatology observations alone.
    for method, inputs in (("mohseni", "inputs on the days it read DIFFERENT"),
                           ("climatology", "the climatology baseline's fit reads no input variable")):
        base = str(tmp_path / method)
        assert main(["fit", files["nc"], base, "--method", method]) == 0
        capsys.readouterr()
        assert main(["info", base, "--data", files["nc"]]) == 0
        said = capsys.readouterr().out
        assert "targets on the days the fit learned from the same;" in said
        assert f"targets sha256 {xmsgl.load(base).config['data']['targets_sha256']} (training)" in said
        assert main(["info", base, "--data", str(changed)]) == 0
        assert f"learned from the same; {inputs}" in capsys.readouterr().out
    assert main(["info", "--data", files["nc"]]) == 2
    assert "give MODEL too" in capsys.readouterr().err
    # A --data that cannot be read is refused alone: the model's description was printed first.
    assert main(["info", model_dir, "--data", str(tmp_path / "missing.nc")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "does not exist" in err


def test_outputs_record_paths_and_commands_that_work_again(
        files: dict[str, str], model_dir: str, tmp_path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # A quoted '~' (a Makefile's, a job script's variable) reached the command as typed:
    # the files were read and written under $HOME, but `source` named '<cwd>/~/...'.
    import shlex
    import shutil

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(files["nc"], home / "b.nc")
    shutil.copytree(model_dir, home / "m")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert main(["downscale", "~/m", "~/b.nc", "~/p.nc"]) == 0
    source = xr.open_dataset(home / "p.nc").attrs["source"]
    assert source == f"{home / 'b.nc'} with the model {home / 'm'}", source
    # evaluate's command line is quoted, so that it runs again as written.
    spaced = tmp_path / "a dir"
    spaced.mkdir()
    shutil.copy(files["nc"], spaced / "my basin.nc")
    argv = ["evaluate", "--data", str(spaced / "my basin.nc"), "--methods", "climatology",
            "--keep", "1", "--out", str(spaced / "e v.nc")]
    assert main(argv) == 0
    attrs = xr.open_dataset(spaced / "e v.nc").attrs
    assert shlex.split(attrs["command"]) == ["xmsgl", *argv]
    assert attrs["data"] == str(spaced / "my basin.nc")
    capsys.readouterr()


def test_the_grus_progress_goes_to_stderr(files: dict[str, str], tmp_path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # Its epochs were printed on stdout, among the results a script parses.
    assert main(["fit", files["nc"], str(tmp_path / "g"), "--method", "gru", "--epochs", "2"]) == 0
    out, err = capsys.readouterr()
    assert "gru epoch 1/2" in err and "gru epoch" not in out
    assert out.startswith("fitted gru on ")


def test_advice_is_in_the_commands_words(files: dict[str, str], tmp_path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    # Python keywords where options exist: train= (start, end), a period printed as
    # None, ds.msgl.coverage(model, time=...), cross_validate.
    from xmsgl.cli import _cli_words

    assert main(["fit", files["nc"], str(tmp_path / "m"), "--test", "2000-10-01", "2003-09-30", *FAST]) == 2
    err = capsys.readouterr().err
    assert "the test ('2000-10-01', '2003-09-30') period covers every day" in err
    assert "None" not in err and "shorten it or give --train START END" in err
    assert (_cli_words("; ds.msgl.coverage(model, time=...) lists the nodes")
            == "; xmsgl coverage MODEL DATA --time START END lists the nodes")
    assert "(xmsgl evaluate --cv METHOD)" in _cli_words("held-out data (xmsgl.evaluate.cross_validate), or")
    assert (_cli_words("or blocking='subbasin' or 'reach') or ask for repeats=1", "evaluate")
            == "or --blocking subbasin or reach) or ask for --repeats 1")


def test_fit_takes_a_graph_cut(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    # A deep network needs max_hops or max_distance, which the graph-size refusal names:
    # the command had no way to give them.
    from xmsgl.cli import _cli_words

    path = os.path.join(files["root"], "cut.xmsgl")
    assert main(["fit", files["nc"], path, "--method", "fine-only", "--max-hops", "3",
                 "--max-distance", "50000", *FAST]) == 0
    assert xmsgl.load(path).config["graph"]["options"] == {"max_hops": 3, "max_distance": 50000.0}
    assert main(["fit", files["nc"], path + "2", "--method", "climatology", "--max-hops", "3"]) == 2
    assert "--max-hops: 'climatology' builds no river graph; leave it out" in capsys.readouterr().err
    assert main(["fit", files["nc"], path + "3", "--method", "fine-only", "--max-hops", "0", *FAST]) == 2
    assert "error: --max-hops 0 must be an integer >= 1 (e.g. 3), or leave it out for no cut" in \
        capsys.readouterr().err
    # The refusal's advice, in the command's words.
    from xmsgl import graph

    with pytest.MonkeyPatch.context() as mp, pytest.warns(xmsgl.XmsglWarning) as said:
        mp.setattr(graph, "LARGE_GRAPH_BYTES", 0)
        graph.build_graphs(xr.open_dataset(files["nc"]))
    assert "give a cut: xmsgl fit --max-hops (e.g. 8) or --max-distance (m), whose model" in \
        _cli_words(str(said[0].message))


def test_downscale_append_grows_a_store_checked(files: dict[str, str], model_dir: str, tmp_path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pred.zarr"
    assert main(["downscale", model_dir, files["zarr"], str(out), "--time", "2002-10-01", "2002-12-31"]) == 0
    assert main(["downscale", model_dir, files["zarr"], str(out), "--time", "2003-01-01", "2003-03-31",
                 "--append"]) == 0
    assert f"appended to {out} (reach_temp_pred: 26 reach x 90 time, degC; msgl on cpu)" in capsys.readouterr().out
    written = xr.open_zarr(out)
    ds = xr.load_dataset(files["nc"])
    model = xmsgl.load(model_dir)
    want = xr.concat([ds.msgl.downscale(model, time=t, device="cpu")
                      for t in (("2002-10-01", "2002-12-31"), ("2003-01-01", "2003-03-31"))], "time")
    np.testing.assert_allclose(written["reach_temp_pred"].values, want.values, atol=1e-5)
    assert written["time_bnds"].shape == (182, 2) and written.attrs["Conventions"] == "CF-1.11, ACDD-1.3"
    assert written.attrs["date_modified"] >= written.attrs["date_created"]  # ACDD, set by the append
    # The first run's 92 days were stored in chunks of a year, which later days fill.
    assert written["reach_temp_pred"].encoding["chunks"][1] == 365
    assert written["time_bnds"].encoding["chunks"][0] == 365
    history = written.attrs["history"].splitlines()
    assert "append_zarr: 2003-01-01 to 2003-03-31 (90 time steps); the piece: " in history[-1]
    assert (written.attrs["time_coverage_start"], written.attrs["time_coverage_end"]) == ("2002-10-01T00:00:00",
                                                                                          "2003-04-01T00:00:00")
    assert "downscale(method='msgl'" in history[-1] and "time=2003-01-01/2003-03-31" in history[-1]
    # Days the store has, and options that cannot apply, are refused before anything is written.
    refusals = [
        (["--time", "2003-03-01", "2003-04-30", "--append"], "not after the store's last day (2003-03-31): "
         "appending it would repeat days; start --time at 2003-04-01"),
        (["--append", "--overwrite"], "leave --overwrite out"),
        (["--append", "--zarr-format", "2"], "leave --zarr-format out"),
    ]
    for argv, message in refusals:
        assert main(["downscale", model_dir, files["zarr"], str(out), *argv]) == 2
        assert message in capsys.readouterr().err
    assert xr.open_zarr(out).sizes["time"] == 182
    assert main(["downscale", model_dir, files["zarr"], str(tmp_path / "p.nc"), "--append"]) == 2
    assert "--append grows a zarr store along time" in capsys.readouterr().err
    assert main(["downscale", model_dir, files["zarr"], str(tmp_path / "new.zarr"), "--append"]) == 2
    assert "does not exist; write its first days without --append" in capsys.readouterr().err
    assert main(["downscale", model_dir, files["zarr"], files["zarr"], "--append"]) == 2
    assert "is or holds the input" in capsys.readouterr().err
    (tmp_path / "file.zarr").write_text("")
    assert main(["downscale", model_dir, files["zarr"], str(tmp_path / "file.zarr"), "--append"]) == 2
    assert "is a file, not a zarr store" in capsys.readouterr().err


@pytest.mark.filterwarnings("default::xmsgl.exceptions.XmsglWarning")
def test_a_validation_warning_of_fit_is_printed_once(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # xmsgl fit validates its file and fit validates it again: each warning was
    # printed twice.
    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2001-09-30", seed=2,
                                        reach_obs_share=0.3)
    temp = ds["reach_temp"].values
    i, j = np.argwhere(np.isfinite(temp))[0]
    temp[i, j] = -7.0
    ds.to_netcdf(tmp_path / "cold.nc")
    assert main(["fit", str(tmp_path / "cold.nc"), str(tmp_path / "m"), *FAST]) == 0
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "outside -5..45 degC" in ln]
    assert len(lines) == 1 and lines[0].startswith("xmsgl: warning: ")


def _command(args: list[str], **env: str) -> tuple[int, str, str]:
    """``xmsgl ARGS`` in a process of its own, with ``env`` added to the environment."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "xmsgl.cli", *args], capture_output=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **env}, timeout=300)
    return proc.returncode, proc.stdout.decode("ascii", "replace"), proc.stderr.decode("ascii", "replace")


def test_a_path_the_terminal_cannot_encode_is_printed_escaped(files: dict[str, str], model_dir: str,
                                                               tmp_path) -> None:
    # The last line, printed after the work, failed with a traceback and exit 1.
    accented = tmp_path / "modèle"
    shutil.copytree(model_dir, accented)
    code, out, err = _command(["info", str(accented)], PYTHONIOENCODING="ascii")
    assert code == 0 and "Traceback" not in err, err
    assert "mod\\xe8le" in out


def test_warnings_made_errors_end_the_command_with_one_line(files: dict[str, str], tmp_path) -> None:
    # Under python -W error an XmsglWarning is raised as an exception: it ended the
    # command with a traceback.
    code, _, err = _command(["fit", files["nc"], str(tmp_path / "m"), *FAST],
                            PYTHONWARNINGS="error::UserWarning")
    assert code == 2 and "Traceback" not in err, err
    assert err.startswith("xmsgl: error: ") and "an error under the warning filters in force" in err
    assert not (tmp_path / "m").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="names of undecodable bytes: Linux file systems")
def test_a_file_names_own_bytes_are_printed_as_they_are(model_dir: str, tmp_path) -> None:
    # Under a C locale Python writes a name's undecodable bytes back as they were
    # (surrogateescape); the escapes above are only for streams that refuse them.
    import subprocess
    import sys

    raw = os.fsencode(str(tmp_path)) + b"/mod\xe9le"
    shutil.copytree(model_dir, os.fsdecode(raw))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8")}
    proc = subprocess.run([sys.executable, "-m", "xmsgl.cli", "info", os.fsdecode(raw)],
                          capture_output=True, env={**env, "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1"},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert b"mod\xe9le" in proc.stdout


def test_downscale_sets_the_attributes_given_with_attr(files: dict[str, str], model_dir: str, tmp_path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # Publishing from the shell needed a second tool for the maker and the terms.
    out = tmp_path / "pred.nc"
    assert main(["downscale", model_dir, files["nc"], str(out), "--time", "2002-10-01", "2002-12-31",
                 "--attr", "creator_name=A. Hydrologist", "--attr", "license=CC0-1.0",
                 "--attr", "summary=Stream temperature, x=y"]) == 0
    with xr.open_dataset(out) as written:
        assert (written.attrs["creator_name"], written.attrs["license"]) == ("A. Hydrologist", "CC0-1.0")
        assert written.attrs["summary"] == "Stream temperature, x=y"  # split at the first '='
        assert written.attrs["Conventions"] == "CF-1.11, ACDD-1.3"
    capsys.readouterr()
    for bad in ("creator_name", "=x", "two words=x"):
        assert main(["downscale", model_dir, files["nc"], str(tmp_path / "b.nc"), "--attr", bad]) == 2
        assert "give KEY=VALUE" in capsys.readouterr().err
    # The attributes that state facts of the run were replaced without a word (the
    # history line that names the model's sha256, among them).
    for key in ("history", "Conventions", "time_coverage_start", "date_created"):
        assert main(["downscale", model_dir, files["nc"], str(tmp_path / "b.nc"), "--attr", f"{key}=x"]) == 2
        err = one_error_line(capsys.readouterr().err)
        assert err.startswith(f"xmsgl: error: --attr {key}: xmsgl writes {key} of OUT from the run (")
        assert err.endswith("leave it out (a note of your own goes in --attr comment='...')")
    store = tmp_path / "p.zarr"
    assert main(["downscale", model_dir, files["nc"], str(store), "--time", "2002-10-01", "2002-10-31"]) == 0
    assert main(["downscale", model_dir, files["nc"], str(store), "--time", "2002-11-01", "2002-11-30",
                 "--append", "--attr", "license=CC0-1.0"]) == 2
    assert "leave --attr out with --append" in capsys.readouterr().err
    assert not (tmp_path / "b.nc").exists()


def test_score_gives_a_predictions_errors_at_the_reaches_and_days_asked(
        files: dict[str, str], model_dir: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # The shell could write a prediction but not score it against held-out gauges.
    pred_file = str(tmp_path / "pred.nc")
    assert main(["downscale", model_dir, files["nc"], pred_file]) == 0
    reaches = [int(r) for r in xr.load_dataset(files["nc"]).reach.values[:3]]
    capsys.readouterr()
    out = tmp_path / "scores.nc"
    argv = ["score", pred_file, files["nc"], "--obs-var", "reach_temp_true", "--time", "2002-10-01",
            "2003-09-30", "--reach", *map(str, reaches), "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    pred = xr.load_dataset(pred_file).reach_temp_pred.sel(reach=reaches, time=slice("2002-10-01", "2003-09-30"))
    truth = xr.load_dataset(files["nc"]).reach_temp_true.sel(reach=reaches, time=pred.time)
    rmse = float(np.sqrt(((pred.values - truth.transpose(*pred.dims).values) ** 2).mean()))
    assert f"RMSE {rmse:.3f} degC" in text and f"{pred.size} pairs" in text
    assert "3 reaches scored; per-reach RMSE median" in text
    with xr.open_dataset(out) as res:
        assert float(res.pooled_rmse) == pytest.approx(rmse, rel=1e-5)
        assert res.rmse.dims == ("reach",) and res.reach.values.tolist() == reaches
        assert res.rmse.attrs["units"] == "degC" and "xmsgl score" in res.attrs["command"]
    # What cannot be scored is said, with the fix.
    assert main(["score", pred_file, files["nc"], "--reach", "999999"]) == 2
    assert "--reach: PRED" in capsys.readouterr().err
    assert main(["score", pred_file, files["nc"], "--obs-var", "nope"]) == 2
    assert "has no variable 'nope'" in capsys.readouterr().err
    two = tmp_path / "two.nc"
    xr.load_dataset(pred_file).assign(other=lambda d: d["reach_temp_pred"] + 1).to_netcdf(two)
    assert main(["score", str(two), files["nc"]]) == 2
    assert "name the prediction with --var" in capsys.readouterr().err
    assert main(["score", str(two), files["nc"], "--var", "other"]) == 0


def test_score_and_threads_refuse_what_they_cannot_use_in_one_line(
        files: dict[str, str], model_dir: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # A noleap PRED with --time and a PRED listing a reach twice with --reach ended in
    # tracebacks, as did --threads beyond what torch takes; --reach 1 1 blamed the file.
    pred_file = tmp_path / "pred.nc"
    assert main(["downscale", model_dir, files["nc"], str(pred_file)]) == 0
    pred = xr.load_dataset(pred_file).drop_vars("time_bnds", errors="ignore")
    pred.convert_calendar("noleap").to_netcdf(tmp_path / "noleap.nc")
    xr.concat([pred.isel(reach=[0]), pred], "reach").to_netcdf(tmp_path / "twice.nc")
    first = str(int(pred.reach.values[0]))
    capsys.readouterr()
    for argv, says in (
            (["score", str(tmp_path / "noleap.nc"), files["nc"], "--time", "2001-01-01", "2001-12-31"],
             "has dates on the 'noleap' calendar"),
            (["score", str(tmp_path / "twice.nc"), files["nc"], "--reach", first],
             f"lists reaches more than once ([{first}])"),
            (["fit", files["nc"], str(tmp_path / "m"), *FAST, "--threads", "99999999999"],
             "--threads 99999999999: give at least 1 and at most 4,096")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("xmsgl: error: ") and says in err and "Traceback" not in err
    assert main(["score", str(pred_file), files["nc"], "--obs-var", "reach_temp_true", "--reach", first,
                 first]) == 0
    assert f"(reaches [{first}], every day" in capsys.readouterr().out


def test_threads_of_commands_run_at_once_leave_the_option_as_it_was() -> None:
    # Each command restored the value it found: the first to end left the second's.
    import argparse
    import threading

    from xmsgl.cli import _thread_option

    before = xmsgl.get_option("torch_threads")
    a_in, b_in = threading.Event(), threading.Event()
    seen: list = []

    def first() -> None:
        with _thread_option(argparse.Namespace(threads=2)):
            a_in.set()
            b_in.wait(10)
        seen.append(xmsgl.get_option("torch_threads"))  # the second still runs

    def second() -> None:
        a_in.wait(10)
        with _thread_option(argparse.Namespace(threads=3)):
            b_in.set()
            while len(seen) < 1:
                threading.Event().wait(0.01)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == [3] and xmsgl.get_option("torch_threads") == before


def test_info_escapes_controls_but_keeps_joiners() -> None:
    from xmsgl.cli import _printable

    assert _printable("فارسی\u200cها 👩\u200d💻") == "فارسی\u200cها 👩\u200d💻"
    assert _printable("a\u202eb\x1b[2Kc") == "a\\u202eb\\x1b[2Kc"
