"""Saving never deletes a folder that is not a saved model; dates with a time zone are
refused; a lazy run's history names the device it resolved."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl
from tests.conftest import SCALE_FIT, SCALE_RUN
from xmsgl.exceptions import ParameterError, PeriodError, XmsglError
from xmsgl.io import write_model_folder
from xmsgl.model import Downscaler, fit
from xmsgl.periods import period_bounds, period_list, period_mask

torch = pytest.importorskip("torch")
torch.set_num_threads(1)


def hidden(folder: Path) -> list[str]:
    """Temporary or moved-aside entries a save may have left next to its target."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def model(scale_basin: xr.Dataset) -> Downscaler:
    torch.set_num_threads(1)
    return fit(scale_basin, method="msgl", seed=0, graph_options={"max_hops": 3},
                     **SCALE_FIT)


# ------------------------------------------------------------- saving over a folder


def test_save_keeps_a_project_folder_that_has_a_config_json(tmp_path: Path,
                                                            model: Downscaler) -> None:
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    (proj / "config.json").write_text("{}")
    (proj / "data" / "obs.csv").write_text("precious")
    with pytest.raises(XmsglError, match=r"proj'.*not an xmsgl model folder.*format None.*"
                                         r"choose another path or remove it"):
        model.save(proj)
    assert (proj / "data" / "obs.csv").read_text() == "precious"
    assert (proj / "config.json").read_text() == "{}"
    assert hidden(tmp_path) == []


def test_save_replaces_a_saved_model(tmp_path: Path, model: Downscaler) -> None:
    path = model.save(tmp_path / "m")
    model.save(path)  # the same model: saved again
    # Also when it was fitted on the same data built again (the dataset's history line
    # and the time of the fit are not part of the model's sha256).
    cfg = json.loads((path / "config.json").read_text())
    assert isinstance(cfg.get("data"), dict)
    cfg["data"]["history"] = "built again"
    cfg["created"] = "2000-01-01T00:00:00Z"
    (path / "config.json").write_text(json.dumps(cfg))
    assert xmsgl.load(path).sha256 == model.sha256
    model.save(path)
    with pytest.raises(ParameterError, match="overwrite='no' must be True or False"):
        model.save(path, overwrite="no")
    cfg = json.loads((path / "config.json").read_text())
    cfg["note"] = "old"
    (path / "config.json").write_text(json.dumps(cfg))
    # Another model (here its settings differ): replaced when asked only.
    with pytest.raises(XmsglError, match=r"holds another saved model \(method 'msgl', created .*"
                                         r"pass overwrite=True to replace it"):
        model.save(path)
    assert json.loads((path / "config.json").read_text())["note"] == "old"
    # Named by what is there: a baseline saved over this model's folder finds a model.
    clim = xmsgl.fit(xmsgl.datasets.synthetic_basin(n_segments=3, start="2000-10-01", end="2001-09-30"),
                     "climatology", train=("2000-10-01", "2001-09-30"))
    with pytest.raises(XmsglError, match=r"holds another saved model \(method 'msgl'"):
        clim.save(path)
    model.save(path, overwrite=True)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "weights.pt"]
    assert "note" not in json.loads((path / "config.json").read_text())
    assert xmsgl.load(path).sha256 == model.sha256
    assert hidden(tmp_path) == []


def test_save_refuses_a_folder_of_another_format(tmp_path: Path, model: Downscaler) -> None:
    path = model.save(tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "format": "someone-elses-model"}))
    with pytest.raises(XmsglError, match="format 'someone-elses-model'"):
        model.save(path)
    assert json.loads((path / "config.json").read_text())["format"] == "someone-elses-model"
    (path / "config.json").write_text("not json {")
    with pytest.raises(XmsglError, match="cannot be read as JSON"):
        model.save(path)
    (path / "config.json").write_text('["xmsgl-model"]')
    with pytest.raises(XmsglError, match="not an xmsgl model folder"):
        model.save(path)
    assert (path / "weights.pt").exists() and hidden(tmp_path) == []


def test_save_refuses_a_model_folder_with_a_file_of_the_users(tmp_path: Path,
                                                              model: Downscaler) -> None:
    path = model.save(tmp_path / "m")
    (path / "notes.txt").write_text("mine")
    with pytest.raises(XmsglError, match="also holds 'notes.txt'.*remove it"):
        model.save(path)
    assert (path / "notes.txt").read_text() == "mine"
    (path / "notes.txt").unlink()
    (path / "runs").mkdir()
    with pytest.raises(XmsglError, match="also holds 'runs'"):
        model.save(path)
    assert (path / "runs").is_dir()
    # The files of a baseline are not those of a network's folder.
    (path / "runs").rmdir()
    (path / "arrays.npz").write_bytes(b"")
    with pytest.raises(XmsglError, match="also holds 'arrays.npz'"):
        model.save(path)
    assert hidden(tmp_path) == []


def test_a_baseline_replaces_a_baseline_but_keeps_user_files(tmp_path: Path,
                                                             scale_basin: xr.Dataset) -> None:
    from xmsgl.baselines import fit_baseline, load_baseline

    base = fit_baseline(scale_basin, "climatology")
    path = base.save(tmp_path / "b")
    base.save(path)
    assert load_baseline(path).method == "climatology"
    (path / "extra.csv").write_text("mine")
    with pytest.raises(XmsglError, match="not an xmsgl baseline folder.*extra.csv"):
        base.save(path)
    assert (path / "extra.csv").read_text() == "mine"


def test_saved_formats_are_those_the_writers_write() -> None:
    from xmsgl import baselines
    from xmsgl import model as model_module
    from xmsgl.io import _SAVED_FOLDERS
    from xmsgl.nn import gru, weights

    assert set(_SAVED_FOLDERS) == {model_module.FORMAT, baselines.FORMAT, gru.FORMAT}
    for fmt in (model_module.FORMAT, gru.FORMAT):
        assert _SAVED_FOLDERS[fmt] == {weights.CONFIG, weights.WEIGHTS}
    assert _SAVED_FOLDERS[baselines.FORMAT] == {weights.CONFIG, baselines.ARRAYS}


def test_folder_changed_during_the_save_is_put_back(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import xmsgl.io as io

    final = tmp_path / "m"
    config = json.dumps({"format": "xmsgl-baseline"}).encode()
    write_model_folder(final, {"config.json": config, "arrays.npz": b"1"})
    prepare = io._prepare

    def racing_prepare(path: Path, overwrite: bool) -> Path:
        # Someone adds a file after the first check, while the new folder is written.
        (final / "late.csv").write_text("mine")
        return prepare(path, overwrite)

    monkeypatch.setattr(io, "_prepare", racing_prepare)
    with pytest.raises(XmsglError, match="also holds 'late.csv'"):
        write_model_folder(final, {"config.json": config, "arrays.npz": b"2"})
    assert (final / "late.csv").read_text() == "mine"
    assert (final / "arrays.npz").read_bytes() == b"1"
    assert hidden(tmp_path) == []


def test_a_link_to_a_saved_folder_is_replaced_and_its_target_kept(tmp_path: Path) -> None:
    config = json.dumps({"format": "xmsgl-model"}).encode()
    real = write_model_folder(tmp_path / "real", {"config.json": config, "weights.pt": b"1"})
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    write_model_folder(link, {"config.json": config, "weights.pt": b"2"})
    assert not link.is_symlink() and (link / "weights.pt").read_bytes() == b"2"
    assert (real / "weights.pt").read_bytes() == b"1"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    link2 = tmp_path / "link2"
    link2.symlink_to(tmp_path / "other", target_is_directory=True)
    with pytest.raises(XmsglError, match="link2'.*no config.json"):
        write_model_folder(link2, {"config.json": config})
    assert link2.is_symlink() and (tmp_path / "other" / "keep.txt").exists()


# ------------------------------------------------------------------ dates with a zone

NAIVE = ["2001", "2001-03", "2001-03-01", "20010301", "2001-03-01T12", "2001-03-01T12:00",
         "2001-03-01 12:00:30", "2001Q1", "Jan 2001", b"2001-03-01"]
ZONED = ["2012-10-01T00:00Z", "2014-01-01T00:00+01:00", "2014-01-01T00:00-05:00",
         "2014-01-01T00:00-0500", "2001-03-01T12-05", "2001-03-01 12:00:00 +0100",
         "2001-03-01T00:00:00.000Z", "2001-03-01t00:00z", "2001-03-01 00:00 UTC"]


@pytest.mark.parametrize("text", NAIVE)
def test_naive_date_strings_are_read(text: str | bytes) -> None:
    (lo, hi), = period_list(text, "train")
    assert lo is not None and hi is not None and lo.tz is None and lo <= hi
    assert lo.year == 2001


@pytest.mark.parametrize("text", ZONED)
def test_date_strings_with_a_zone_are_refused(text: str) -> None:
    with pytest.raises(PeriodError, match=r"train=.*has a time zone.*naive dates"):
        period_list((text, "2015-09-30"), "train")
    with pytest.raises(PeriodError, match=r"time=.*has a time zone"):
        period_bounds(("2001-01-01", text), "time")
    with pytest.raises(PeriodError, match="has a time zone"):
        period_mask(pd.date_range("2001-01-01", periods=3), [text], "period")


def test_a_zoned_timestamp_and_a_zoned_string_are_refused_alike() -> None:
    stamp = pd.Timestamp("2012-10-01", tz="UTC")
    with pytest.raises(PeriodError, match="has a time zone") as by_stamp:
        period_list((stamp, "2013"), "train")
    with pytest.raises(PeriodError, match="has a time zone") as by_text:
        period_list(("2012-10-01T00:00Z", "2013"), "train")
    assert (str(by_stamp.value).split("has a time zone")[1]
            == str(by_text.value).split("has a time zone")[1])


def test_sparsify_refuses_a_zoned_period(tiny_basin: xr.Dataset) -> None:
    out = tiny_basin.msgl.sparsify(keep=0.5, seed=0, period=("2001-02", "2001-03-15"))
    assert int(out["reach_temp"].notnull().sum()) <= int(tiny_basin["reach_temp"].notnull().sum())
    with pytest.raises(PeriodError, match=r"period=.*'2001-02-01T00:00\+01:00' has a time zone"):
        tiny_basin.msgl.sparsify(keep=0.5, period=("2001-02-01T00:00+01:00", "2001-03"))


# ------------------------------------------------------------ lazy history's device


def test_lazy_history_names_the_resolved_device(scale_basin: xr.Dataset,
                                                model: Downscaler) -> None:
    from xmsgl.train import resolve_device

    ds = scale_basin.chunk({"reach": 40, "seg": 10, "time": 120})
    run = {**SCALE_RUN, "device": "auto"}
    out = ds.msgl.downscale(model, **run, reach_chunk=30)
    assert out.chunks is not None
    history = out.attrs["history"]
    assert f"device={str(resolve_device('auto'))!r}" in history
    assert "device='auto'" not in history
    if not torch.cuda.is_available():
        assert "device='cpu'" in history
    assert np.isfinite(out.values).all()
    named = ds.msgl.downscale(model, **SCALE_RUN, reach_chunk=30)
    assert "device='cpu'" in named.attrs["history"]


# --------------------------------------------------- a date stands for its whole day

def _noon(ds: xr.Dataset) -> xr.Dataset:
    return ds.assign_coords(time=ds.time + pd.Timedelta(hours=12))


@pytest.mark.parametrize("end", [__import__("datetime").date(2001, 2, 10), np.datetime64("2001-02-10"),
                                 pd.Timestamp("2001-02-10"), pd.Timestamp("2001-02-10 06:00"),
                                 "2001-02-10"])
def test_an_end_date_keeps_its_noon_stamped_day(end: object) -> None:
    times = pd.date_range("2001-02-01 12:00", periods=20)
    mask = period_mask(times, [("2001-02-05", end)], "period")
    assert times[mask][-1] == pd.Timestamp("2001-02-10 12:00") and mask.sum() == 6
    # A start given as a date keeps its noon-stamped day too.
    start = pd.Timestamp("2001-02-05 18:00")
    assert period_mask(times, [(start, end)], "period").sum() == 6


@pytest.mark.parametrize("text", ["2001-02-10T12", "2001-02-10T23:59", "2001-02-10 06:00:00"])
def test_a_string_with_a_time_of_day_is_its_whole_day(text: str) -> None:
    # Days stamped at midnight: a start of "...T12" must not drop its own day.
    times = pd.date_range("2001-02-01", periods=20)
    assert period_mask(times, [(text, "2001-02-12")], "period").sum() == 3
    assert period_mask(times, [("2001-02-08", text)], "period").sum() == 3
    assert period_mask(times, text, "period").sum() == 1


def test_a_month_as_datetime64_is_the_whole_month() -> None:
    (lo, hi), = period_list([(np.datetime64("2001-02"), np.datetime64("2001-03"))], "train")
    assert lo == pd.Timestamp("2001-02-01") and hi.date() == pd.Timestamp("2001-03-31").date()


def test_fit_with_date_ends_on_noon_stamps_trains_on_none_of_their_days(
        half_year_basin: xr.Dataset) -> None:
    import datetime as dt

    # Daily values stamped at noon (as Daymet's are), periods given as dates: no day
    # of val or test may fall through to training (train is every other day).
    ds = _noon(half_year_basin)
    val, test = (dt.date(2001, 4, 1), dt.date(2001, 4, 30)), (dt.date(2001, 5, 1), dt.date(2001, 5, 31))
    model = fit(ds, method="fine-only", val=val, test=test, epochs=1, window=30, stride=30,
                hidden=4, progress=False)
    periods = model.config["periods"]
    assert [tuple(p) for p in periods["val"]] == [("2001-04-01", "2001-04-30")]
    assert [tuple(p) for p in periods["test"]] == [("2001-05-01", "2001-05-31")]
    for a, b in periods["train"]:
        assert dt.date.fromisoformat(b) < val[0] or dt.date.fromisoformat(a) > test[1]


@pytest.mark.parametrize("day", [np.datetime64("2002-01-15"), np.datetime64("2002-01-15T13:00"),
                                 pd.Timestamp("2002-01-15 13:00"), __import__("datetime").date(2002, 1, 15)])
def test_a_date_alone_is_its_whole_day_as_a_string_is(day: object) -> None:
    # A bare string stood for its day, a bare datetime64 or Timestamp was refused as
    # "not a (start, end) pair".
    from xmsgl.periods import period_bounds, period_list

    want = period_bounds("2002-01-15")
    assert want[0] == pd.Timestamp("2002-01-15") and want[1].normalize() == want[0]
    assert period_bounds(day) == want
    assert period_list(day, "train") == [want]
    month = period_bounds(np.datetime64("2002-01"))
    assert month[0] == pd.Timestamp("2002-01-01") and month[1].normalize() == pd.Timestamp("2002-01-31")
    with pytest.raises(PeriodError, match="20020115 is not a"):
        period_bounds(20020115)
