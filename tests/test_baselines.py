"""Non-neural baselines on the small synthetic basin."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl
from tests.conftest import as_saved_before_digests
from xmsgl.baselines import BASELINES, default_train_period, fit_baseline, load_baseline
from xmsgl.evaluate import evaluate

TEST = ("2003-10-01", "2004-09-30")


def _hide_test(ds: xr.Dataset) -> xr.Dataset:
    """The dataset with the test period's fine and coarse observations masked."""
    before = ds.time < np.datetime64(TEST[0])
    return ds.assign(reach_temp=ds.reach_temp.where(before), seg_temp=ds.seg_temp.where(before))


@pytest.fixture(scope="module")
def fitted(small_basin: xr.Dataset) -> dict[str, object]:
    return {m: fit_baseline(small_basin, m) for m in BASELINES}


def test_default_train_period_matches_fit_split(small_basin: xr.Dataset) -> None:
    import pandas as pd

    assert default_train_period(pd.DatetimeIndex(small_basin.time.values)) == [
        ("2000-10-01", "2003-09-30")]
    # A partial water year at the end is not a test year of its own: the last whole
    # one and the days after it are, as fit's split has them (it used to leave
    # October-December 2006 alone to test on, a test period without a summer).
    t = pd.date_range("2000-10-01", "2006-12-31")
    assert default_train_period(t) == [("2000-10-01", "2005-09-30")]
    from xmsgl.train import split_periods

    assert split_periods(t)["test"][0][0] == "2005-10-01"
    # Two calendar years (the Delaware files): fewer than three whole water years,
    # so the last 15% of the days, as fit.
    two = pd.date_range("1979-01-01", "1980-12-31")
    assert default_train_period(two) == [("1979-01-01", str(two[int(len(two) * 0.85) - 1].date()))]


@pytest.mark.parametrize("method", BASELINES)
def test_prediction_shape_units_and_no_nan(small_basin: xr.Dataset, fitted: dict, method: str) -> None:
    pred = fitted[method].predict(_hide_test(small_basin), time=TEST)
    assert pred.dims == ("reach", "time")
    assert pred.shape == (small_basin.sizes["reach"], 366)
    assert pred.dtype == np.float32
    assert pred.attrs["units"] == "degC" and pred.attrs["xmsgl_method"] == method
    assert "long_name" in pred.attrs and method in pred.attrs["history"]
    assert not bool(pred.isnull().any())
    np.testing.assert_array_equal(pred.reach.values, small_basin.reach.values)


@pytest.mark.parametrize("method", BASELINES)
def test_beats_a_constant_on_truth(small_basin: xr.Dataset, fitted: dict, method: str) -> None:
    truth = small_basin.reach_temp_true.sel(time=slice(*TEST))
    train_obs = small_basin.reach_temp.sel(time=slice(None, "2003-09-30"))
    constant = xr.full_like(truth, float(train_obs.mean()))
    pred = fitted[method].predict(_hide_test(small_basin), time=TEST)
    base = float(evaluate(constant, truth).rmse)
    got = float(evaluate(pred, truth).rmse)
    assert got < 0.6 * base, (method, got, base)


@pytest.mark.parametrize("method", ["idw", "harmonic"])
def test_interpolators_reproduce_observations(small_basin: xr.Dataset, fitted: dict, method: str) -> None:
    pred = fitted[method].predict(small_basin).values
    fine = small_basin.reach_temp.values
    ok = np.isfinite(fine)
    assert ok.sum() > 100
    np.testing.assert_allclose(pred[ok], fine[ok], atol=1e-4)
    # Coarse observations are sources at the outlet reach of their segment.
    outlet_pos = small_basin.seg_outlet_reach.values - 1
    coarse = small_basin.seg_temp.values
    at = np.isfinite(coarse) & ~ok[outlet_pos]
    np.testing.assert_allclose(pred[outlet_pos][at], coarse[at], atol=1e-4)


def test_interpolators_use_the_sources_they_are_given(small_basin: xr.Dataset, fitted: dict) -> None:
    # With every observation hidden both interpolators fall back to the climatology.
    hidden = small_basin.assign(reach_temp=small_basin.reach_temp * np.nan,
                                seg_temp=small_basin.seg_temp * np.nan)
    clim = fitted["climatology"].predict(hidden)
    for m in ("idw", "harmonic"):
        np.testing.assert_allclose(fitted[m].predict(hidden).values, clim.values)


def test_mohseni_parameters_levels(fitted: dict) -> None:
    levels = fitted["mohseni"].config["fit"]["param_levels"]
    # The three observed reaches of this basin but the seasonal gauge (April to October,
    # 7 months), and the segments observed in fewer than 8 months, fit no curve of their own.
    assert levels["own"] == 2
    assert fitted["mohseni"].config["fit"]["few_months"] == {"reaches": 1, "segments": 4}
    assert sum(levels.values()) == 145
    mu, alpha, gamma, beta = fitted["mohseni"].arrays["params"].T
    assert np.all(alpha > mu) and np.all(gamma > 0)


def test_mohseni_air_window_counts_days_across_a_gap(small_basin: xr.Dataset, fitted: dict) -> None:
    """The trailing air mean is over calendar days: after a gap in the time axis it holds
    only the days of the window that are there (it reached back across the gap, 2.5
    degC off on a July day in a check)."""
    from xmsgl.baselines import _smooth_air

    t = small_basin.time.values
    gap = small_basin.isel(time=np.flatnonzero((t < np.datetime64("2002-07-01"))
                                               | (t > np.datetime64("2002-07-10"))))
    model = fitted["mohseni"]
    days = ("2002-07-11", "2002-07-20")
    # On the days whose window lies after the gap (from the 5th day on), the prediction is
    # that of the whole record; the first four average only the days they have.
    np.testing.assert_allclose(model.predict(gap, time=("2002-07-15", "2002-07-20")).values,
                               model.predict(small_basin, time=("2002-07-15", "2002-07-20")).values,
                               atol=1e-5)
    # The first days after the gap see no day before it: as if the record began there.
    after = small_basin.sel(time=slice("2002-07-11", None))
    np.testing.assert_allclose(model.predict(gap, time=days).values,
                               model.predict(after, time=days).values, atol=1e-5)
    air = gap.reach_air_temp.transpose("reach", "time")
    smooth = _smooth_air(air.values.astype(float), 5, pd.DatetimeIndex(gap.time.values))
    first = int(np.flatnonzero(gap.time.values == np.datetime64(days[0]))[0])
    np.testing.assert_allclose(smooth[:, first], air.values[:, first])  # alone in its window


def test_climatology_window_is_at_most_a_year(small_basin: xr.Dataset) -> None:
    """A window of 366 days is every day of the year once (a constant); wider ones counted
    days twice and are refused."""
    flat = fit_baseline(small_basin, "climatology", window=366).arrays["reach_clim"]
    np.testing.assert_allclose(flat, flat[:, :1] * np.ones_like(flat), atol=1e-5)
    with pytest.raises(xmsgl.ParameterError, match="window=367 must be at most 366"):
        fit_baseline(small_basin, "climatology", window=367)


def test_input_is_not_modified(small_basin: xr.Dataset) -> None:
    before = small_basin.copy(deep=True)
    for m in BASELINES:
        fit_baseline(small_basin, m, train=("2000-10-01", "2002-09-30")).predict(small_basin)
    xr.testing.assert_identical(before, small_basin)


def test_matches_nodes_by_id(small_basin: xr.Dataset, fitted: dict) -> None:
    shuffled = small_basin.isel(reach=np.arange(small_basin.sizes["reach"])[::-1])
    a = fitted["idw"].predict(small_basin, time=TEST)
    b = fitted["idw"].predict(shuffled, time=TEST)
    xr.testing.assert_allclose(a, b.sel(reach=a.reach))


def test_save_and_load(tmp_path, small_basin: xr.Dataset, fitted: dict) -> None:
    for m in ("climatology", "mohseni"):
        folder = fitted[m].save(tmp_path / m)
        assert sorted(p.name for p in folder.iterdir()) == ["arrays.npz", "config.json"]
        again = load_baseline(folder)
        assert again.method == m
        np.testing.assert_array_equal(again.predict(small_basin, time=TEST).values,
                                      fitted[m].predict(small_basin, time=TEST).values)
        # The identity survives the round trip and is recorded with the output.
        assert again.sha256 == fitted[m].sha256
        out = again.predict(small_basin, time=TEST)
        assert out.attrs["xmsgl_model_sha256"] == again.sha256
        assert again.sha256[:16] in out.attrs["history"]
    assert fitted["climatology"].sha256 != fitted["mohseni"].sha256
    # The time of the fit is not part of the identity; the settings are.
    base = fitted["climatology"]
    later = type(base)(base.method, {**base.config, "created": "2000-01-01T00:00:00Z"}, base.arrays)
    assert later.sha256 == base.sha256
    edited = type(base)(base.method, {**base.config, "seed": base.config["seed"] + 1}, base.arrays)
    assert edited.sha256 != base.sha256
    # Another baseline's folder is replaced when asked only; the same one is saved again.
    with pytest.raises(xmsgl.XmsglError, match=r"holds another saved baseline \(method 'climatology'.*"
                                               r"pass overwrite=True"):
        fitted["idw"].save(tmp_path / "climatology")
    assert load_baseline(tmp_path / "climatology").method == "climatology"
    fitted["climatology"].save(tmp_path / "climatology")
    fitted["idw"].save(tmp_path / "climatology", overwrite=True)
    assert load_baseline(tmp_path / "climatology").method == "idw"
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(xmsgl.XmsglError, match="not an xmsgl baseline folder"):
        fitted["idw"].save(tmp_path / "file.txt")
    with pytest.raises(xmsgl.DataError, match="not a readable"):
        load_baseline(tmp_path / "missing")


def test_damaged_or_edited_baseline_folders_are_typed_errors(tmp_path, fitted: dict) -> None:
    import json
    import shutil

    good = fitted["mohseni"].save(tmp_path / "good")

    def copy(name: str) -> Path:
        return Path(shutil.copytree(good, tmp_path / name))

    truncated = copy("truncated")
    (truncated / "arrays.npz").write_bytes((good / "arrays.npz").read_bytes()[:200])
    with pytest.raises(xmsgl.DataError, match="not a readable xmsgl baseline folder"):
        xmsgl.load(truncated)
    lacking = copy("lacking")
    arrays = dict(np.load(good / "arrays.npz"))
    del arrays["params"]
    np.savez(lacking / "arrays.npz", **arrays)
    with pytest.raises(xmsgl.DataError, match=r"lacks \['params'\]"):
        load_baseline(lacking)
    changed = copy("changed")
    arrays = dict(np.load(good / "arrays.npz"))
    arrays["reach_clim"] = arrays["reach_clim"] + 1
    np.savez(changed / "arrays.npz", **arrays)
    # A ModelMismatchError, as a network's weights that do not match their sha256 give.
    with pytest.raises(xmsgl.ModelMismatchError, match="does not match the sha256"):
        load_baseline(changed)
    # A newer format asks for an upgrade, as for networks; a version no xmsgl wrote is damage.
    for key, value, error, expect in (
            ("method", "kriging", xmsgl.DataError, "names method 'kriging'"),
            ("format_version", 99, xmsgl.ModelMismatchError, "version 99.*upgrade xmsgl"),
            ("format_version", True, xmsgl.DataError, "found True.*damaged")):
        edited = copy(f"edited_{key}_{value}")
        config = json.loads((good / "config.json").read_text())
        config[key] = value
        (edited / "config.json").write_text(json.dumps(config))
        with pytest.raises(error, match=expect):
            load_baseline(edited)


def test_the_climatology_reads_one_row_for_one_calendar_date(tmp_path) -> None:
    # From 1 March of a leap year on, each date read the next date's row: 2016-03-01
    # predicted the climatology of 2 March (0.8 degC off with window=1).
    import json

    from xmsgl.baselines import _identity_settings
    from xmsgl.io import settings_digests

    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2012-10-01", end="2016-09-30", seed=0,
                                        reach_obs_share=1.0)
    model = ds.msgl.fit(method="climatology", train=("2012-10-01", "2015-09-30"), window=1, min_count=1)
    pred = ds.msgl.downscale(model)
    obs = ds["reach_temp"].sel(time=slice("2012-10-01", "2015-09-30"))
    for date in ("03-01", "07-15", "12-31"):
        on_date = obs.time.dt.strftime("%m-%d") == date  # three trained years each
        expect = obs.where(on_date, drop=True).mean("time").values
        seen = np.isfinite(expect)  # reaches observed on that date (others fall back)
        assert seen.sum() >= 6
        every = pred.where(pred.time.dt.strftime("%m-%d") == date, drop=True)  # a leap year's among them
        assert every.sizes["time"] == 4
        np.testing.assert_allclose(every.values[seen], np.repeat(expect[seen, None], 4, axis=1), rtol=1e-6)
    # 29 February has its row, filled from its neighbours when no leap day was trained on.
    assert np.isfinite(pred.sel(time="2016-02-29").values).all()
    # A folder saved before (format version 1, no day_of_year) reads days as it did then,
    # and is saved again in its own version.
    model.save(tmp_path / "v2")
    config = json.loads((tmp_path / "v2" / "config.json").read_text())
    assert (config["format_version"], config["day_of_year"]) == (2, "month-day")
    del config["day_of_year"]
    config["format_version"] = 1
    config["settings_sha256"] = settings_digests(_identity_settings(config))
    old = tmp_path / "v1"
    old.mkdir()
    (old / "arrays.npz").write_bytes((tmp_path / "v2" / "arrays.npz").read_bytes())
    (old / "config.json").write_text(json.dumps(config))
    v1 = xmsgl.load(old)
    then = ds.msgl.downscale(v1)
    # By ordinal, a common year's 2 March reads row 60 (1 March by calendar date), and
    # its 1 March row 59 (29 February); a leap year's dates keep their rows.
    np.testing.assert_array_equal(then.sel(time="2015-03-02").values, pred.sel(time="2015-03-01").values)
    np.testing.assert_array_equal(then.sel(time="2015-03-01").values, pred.sel(time="2016-02-29").values)
    np.testing.assert_array_equal(then.sel(time="2016").values, pred.sel(time="2016").values)
    v1.save(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text())["format_version"] == 1
    # A version-2 folder whose day_of_year was edited is refused.
    config = json.loads((tmp_path / "v2" / "config.json").read_text())
    config["day_of_year"] = "ordinal"
    (tmp_path / "v2" / "config.json").write_text(json.dumps(config))
    with pytest.raises(xmsgl.DataError, match="gives day_of_year='ordinal', which format version 2 does not have"):
        xmsgl.load(tmp_path / "v2")


def test_an_arrays_member_larger_than_its_shape_allows_is_not_unpacked(tmp_path, fitted: dict) -> None:
    # A 0.1 MB arrays.npz whose reach_clim unpacks to 100 MB (or GB) was unpacked whole
    # before its sha256 was found wrong.
    import io
    import zipfile

    folder = fitted["climatology"].save(tmp_path / "clim")
    arrays = dict(np.load(folder / "arrays.npz"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, values in arrays.items():
            npy = io.BytesIO()
            np.save(npy, np.zeros((arrays["reach_ids"].size, 366 * 400)) if name == "reach_clim" else values)
            zf.writestr(name + ".npy", npy.getvalue())
    (folder / "arrays.npz").write_bytes(buf.getvalue())
    assert (folder / "arrays.npz").stat().st_size < 10**6
    with pytest.raises(xmsgl.DataError, match=r"member 'reach_clim' unpacks to [\d,]+ bytes, more than a "
                                              r"baseline of its reaches and segments holds"):
        xmsgl.load(folder)
    # Nor when the file lists as many ids as the climatology's rows (its bound taken from
    # them): a member that unpacks to far more than it takes is not save's.
    ids = np.arange(10_000, dtype=np.int64)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, values in {**arrays, "reach_ids": ids, "reach_clim": np.zeros((ids.size, 366))}.items():
            npy = io.BytesIO()
            np.save(npy, values)
            zf.writestr(name + ".npy", npy.getvalue())
    (folder / "arrays.npz").write_bytes(buf.getvalue())
    with pytest.raises(xmsgl.DataError, match=r"member 'reach_clim' unpacks to [\d,]+ bytes from [\d,]+, "
                                              r"which BaselineModel.save never writes"):
        xmsgl.load(folder)


def test_edited_settings_periods_and_arrays_are_refused_at_load(tmp_path, fitted: dict) -> None:
    # These loaded, then predicted with weights growing with distance (power -1) or
    # failed at predict with a bare KeyError, ValueError or IndexError; the shape check
    # holds in folders without arrays_sha256 (saved before it was recorded).
    import json
    import shutil

    def edited(method: str, name: str, change: Any, arrays: Any = None) -> Path:
        good = tmp_path / f"good_{method}"
        if not good.exists():
            fitted[method].save(good)
        folder = Path(shutil.copytree(good, tmp_path / name))
        config = json.loads((good / "config.json").read_text())
        change(config)
        config.pop("arrays_sha256", None)
        as_saved_before_digests(config)  # as saved before either was recorded
        (folder / "config.json").write_text(json.dumps(config))
        if arrays is not None:
            np.savez(folder / "arrays.npz", **arrays(dict(np.load(good / "arrays.npz"))))
        return folder

    cases = [
        ("idw", lambda c: c["settings"].update(power=-1), None, r"setting power=-1 must be above 0"),
        ("idw", lambda c: c["settings"].update(d_min=0), None, r"setting d_min=0 must be above 0"),
        ("mohseni", lambda c: c["settings"].update(air_window=0), None, "air_window=0 must be at least 1"),
        ("mohseni", lambda c: c["settings"].update(air_window="abc"), None, "must be a finite number"),
        ("idw", lambda c: c["settings"].pop("power"), None,
         r"holds settings .* has \['d_min', 'min_count', 'power'"),
        ("idw", lambda c: c["settings"].update(min_count=0), None, "min_count=0 must be at least 1"),
        ("climatology", lambda c: c.pop("settings"), None, "holds settings None"),
        ("climatology", lambda c: c.update(method="idw"), None, r"'idw' baseline has"),
        ("climatology", lambda c: c.update(train="junk"), None, "holds train 'junk'"),
        ("climatology", lambda c: c.update(train=[["2001-01-01", "x"]]), None, "not a list of"),
        ("climatology", lambda c: c.update(train=[["2002-01-01", "2001-01-01"]]), None, "not a list of"),
        ("climatology", lambda c: None, lambda a: {**a, "reach_clim": a["reach_clim"][:3]},
         r"other shapes .*reach_clim \(3, 366\)"),
        ("mohseni", lambda c: None, lambda a: {**a, "params": a["params"][:, :2]},
         r"other shapes .*params"),
        # All NaN, its digest taken out: it loaded and predicted NaN at every reach-day.
        ("climatology", lambda c: None, lambda a: {**a, "reach_clim": a["reach_clim"] * np.nan},
         r"NaN or infinite values in \['reach_clim'\]"),
        ("mohseni", lambda c: c.update(input_range=[1]), None, r"holds input_range \[1\], not"),
        ("mohseni", lambda c: c["input_range"]["reach_air_temp"].update(std="abc"), None,
         "holds input_range .*'std': 'abc'"),
        ("mohseni", lambda c: c["input_range"]["reach_air_temp"].update(range=[5.0, -5.0]), None,
         "holds input_range .*'range': \\[5.0, -5.0\\]"),
    ]
    for i, (method, change, arrays, expect) in enumerate(cases):
        folder = edited(method, f"case{i}", change, arrays)
        with pytest.raises(xmsgl.DataError, match=expect):
            xmsgl.load(folder)
    # An unedited folder without the sha256 entry (an older save) still loads.
    assert xmsgl.load(edited("mohseni", "older", lambda c: None)).method == "mohseni"
    # A folder saved before min_count existed (fitted as min_count 1) loads as saved,
    # with the sha256 its outputs recorded.
    old = edited("climatology", "no_min_count", lambda c: c["settings"].pop("min_count"))
    loaded = xmsgl.load(old)
    assert "min_count" not in loaded.config["settings"]
    assert loaded.sha256 == xmsgl.load(old).sha256


def test_errors(small_basin: xr.Dataset, tiny_basin: xr.Dataset, fitted: dict) -> None:
    with pytest.raises(xmsgl.XmsglError, match="not a baseline"):
        fit_baseline(small_basin, "kriging")
    with pytest.raises(xmsgl.XmsglError, match="settings"):
        fit_baseline(small_basin, "idw", window=11, smoothing=3)
    empty = small_basin.assign(reach_temp=small_basin.reach_temp * np.nan,
                               seg_temp=small_basin.seg_temp * np.nan)
    with pytest.raises(xmsgl.DataError, match="no fine"):
        fit_baseline(empty, "climatology")
    with pytest.raises(xmsgl.TimeError, match="training period"):
        fit_baseline(small_basin, "climatology", train=("1990-01-01", "1990-12-31"))
    with pytest.raises(xmsgl.ModelMismatchError, match="'reach' ids differ"):
        fitted["climatology"].predict(tiny_basin)
    with pytest.raises(xmsgl.SchemaError, match="reach_air_temp"):
        fitted["mohseni"].predict(small_basin.drop_vars("reach_air_temp"))


# ----------------------------------------------------------------------------- per-reach GRU


@pytest.fixture(scope="module")
def gru_basin() -> xr.Dataset:
    return xmsgl.datasets.synthetic_basin(n_segments=6, start="2000-10-01", end="2003-09-30", seed=3,
                                          reach_obs_share=0.2)


@pytest.fixture(scope="module")
def gru_model(gru_basin: xr.Dataset):
    pytest.importorskip("torch")
    from xmsgl.model import fit

    return fit(gru_basin, "gru", epochs=8, window=180, stride=90, batch_size=4, progress=False)


def test_gru_fits_downscales_and_beats_a_constant(gru_basin: xr.Dataset, gru_model) -> None:
    from xmsgl.downscale import downscale
    from xmsgl.nn.gru import GRUModel

    assert isinstance(gru_model, GRUModel) and gru_model.method == "gru"
    test = tuple(gru_model.config["periods"]["test"][0])
    assert test == ("2002-10-01", "2003-09-30")
    pred = downscale(gru_basin, gru_model, time=test)
    assert pred.dims == ("reach", "time") and pred.dtype == np.float32
    assert pred.shape == (gru_basin.sizes["reach"], 365) and not bool(pred.isnull().any())
    assert pred.attrs["units"] == "degC" and pred.attrs["xmsgl_method"] == "gru"
    hist = gru_model.config["history"]
    assert hist["best_epoch"] is not None and len(hist["val"]) == 8
    # Counted from 1, as for the networks.
    assert hist["val"][hist["best_epoch"] - 1] == min(v for v in hist["val"] if v is not None)
    truth = gru_basin.reach_temp_true.sel(time=slice(*test))
    train_obs = gru_basin.reach_temp.sel(time=slice(None, "2001-09-30"))
    constant = xr.full_like(truth, float(train_obs.mean()))
    got, base = float(evaluate(pred, truth).rmse), float(evaluate(constant, truth).rmse)
    assert got < 0.8 * base, (got, base)


def test_gru_is_deterministic_and_saves(tmp_path, gru_basin: xr.Dataset, gru_model) -> None:
    import json

    import torch

    from xmsgl.model import fit, load

    again = fit(gru_basin, "gru", epochs=8, window=180, stride=90, batch_size=4, progress=False)
    assert again.sha256 == gru_model.sha256
    folder = gru_model.save(tmp_path / "gru")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "weights.pt"]
    loaded = load(folder)
    assert loaded.sha256 == gru_model.sha256
    np.testing.assert_array_equal(loaded.predict(gru_basin).values, gru_model.predict(gru_basin).values)
    # Nodes are matched by id: a reordered dataset gives the same values per reach.
    rev = gru_basin.isel(reach=np.arange(gru_basin.sizes["reach"])[::-1])
    a = gru_model.predict(gru_basin, time=("2003-01-01", "2003-01-31"))
    b = gru_model.predict(rev, time=("2003-01-01", "2003-01-31"))
    np.testing.assert_allclose(a.values, b.sel(reach=a.reach).values, atol=1e-5)
    # The same seed on the reordered dataset trains the same model: the sequences
    # are listed by reach id (by row they drew other batches: 0.49 degC apart).
    c = fit(rev, "gru", epochs=2, window=180, stride=90, batch_size=4, progress=False)
    d = fit(gru_basin, "gru", epochs=2, window=180, stride=90, batch_size=4, progress=False)
    np.testing.assert_allclose(c.predict(gru_basin, time=("2003-01-01", "2003-01-31")).values,
                               d.predict(gru_basin, time=("2003-01-01", "2003-01-31")).values, atol=1e-5)
    # Without validation observations the lowest training loss chooses, as for the
    # networks, with a warning (the GRU used to keep its last epoch silently).
    dry = gru_basin.assign(reach_temp=gru_basin.reach_temp.where(
        (gru_basin.time < np.datetime64("2001-10-01")) | (gru_basin.time >= np.datetime64("2002-10-01"))))
    with pytest.warns(xmsgl.XmsglWarning, match="holds no fine observation"):
        m = fit(dry, "gru", epochs=3, window=180, stride=90, batch_size=4, progress=False)
    h = m.config["history"]
    assert h["val"] == [None] * 3 and h["best_epoch"] == int(np.argmin(h["loss"])) + 1
    # Modified weights are refused by their hash; pickled code by weights_only.
    state = torch.load(folder / "weights.pt", weights_only=True)
    state["head.bias"] = state["head.bias"] + 1.0
    torch.save(state, folder / "weights.pt")
    with pytest.raises(xmsgl.ModelMismatchError, match="sha256"):
        load(folder)
    cfg = json.loads((folder / "config.json").read_text())
    torch.save({"x": object()}, folder / "weights.pt")
    import hashlib

    cfg["weights"]["sha256"] = hashlib.sha256((folder / "weights.pt").read_bytes()).hexdigest()
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(xmsgl.DataError, match="plain tensors"):
        load(folder)


def test_gru_restarts_after_a_gap_in_the_days(gru_basin: xr.Dataset, gru_model) -> None:
    """As downscale does for the networks: a gap in 'time' restarts the GRU's state with a
    TimeGapWarning, so the days after it are predicted as if the record began there (it
    used to carry the state, and the warm-up, across the gap without a word)."""
    t = gru_basin.time.values
    gap = gru_basin.isel(time=np.flatnonzero((t < np.datetime64("2002-06-01"))
                                             | (t >= np.datetime64("2002-09-01"))))
    after = gru_basin.sel(time=slice("2002-09-01", None))
    days = ("2002-09-01", "2002-10-15")
    with pytest.warns(xmsgl.TimeGapWarning, match="between 2002-05-31 and 2002-09-01: 92 days missing"):
        across = gru_model.predict(gap, time=days)
    alone = gru_model.predict(after, time=days)
    np.testing.assert_array_equal(across.values, alone.values)
    # The gap matters: the same days with the summer present are predicted otherwise.
    assert float(abs(gru_model.predict(gru_basin, time=days) - alone).max()) > 1e-3


def test_gru_errors(gru_basin: xr.Dataset, gru_model, small_basin: xr.Dataset) -> None:
    from xmsgl.model import fit

    with pytest.raises(xmsgl.ParameterError, match="not arguments of method 'gru'"):
        fit(gru_basin, "gru", attn_blocks=3)
    with pytest.raises(xmsgl.ParameterError, match="hidden"):
        fit(gru_basin, "gru", hidden=0)
    with pytest.raises(xmsgl.DataError, match="no fine observations"):
        fit(gru_basin.assign(reach_temp=gru_basin.reach_temp * np.nan), "gru", epochs=1)
    with pytest.raises(xmsgl.ModelMismatchError, match="'reach' ids differ"):
        gru_model.predict(small_basin)
    with pytest.raises(xmsgl.ModelMismatchError, match="reach_air_temp"):
        gru_model.predict(gru_basin.drop_vars("reach_air_temp"))


def test_numpy_settings_are_saved_and_bad_ones_are_typed_errors(tmp_path, small_basin: xr.Dataset) -> None:
    # Settings taken from numpy (np.arange, ...) used to reach config.json as numpy
    # scalars, which json cannot write: save() failed with a plain TypeError.
    model = fit_baseline(small_basin, "mohseni", min_months=np.int64(7), air_window=np.int64(3),
                         min_obs=np.int64(40))
    again = load_baseline(model.save(tmp_path / "moh"))
    assert again.config["settings"] == {"window": 31, "min_count": 3, "air_window": 3, "min_obs": 40,
                                        "min_months": 7}
    np.testing.assert_array_equal(again.predict(small_basin, time=TEST).values,
                                  model.predict(small_basin, time=TEST).values)
    fit_baseline(small_basin, "idw", power=np.float32(1.5), d_min=np.int64(50)).save(tmp_path / "idw")
    for bad in ({"window": "31"}, {"window": None}, {"power": float("nan")}, {"d_min": True}):
        with pytest.raises(xmsgl.ParameterError, match=f"setting {next(iter(bad))}="):
            fit_baseline(small_basin, "idw", **bad)


def test_gru_reads_inputs_as_validated(gru_basin: xr.Dataset, gru_model) -> None:
    # The GRU is fitted on the validated dataset (temperatures in degC); predicting on
    # the same data with air temperature in kelvin, or a unit spelled another way,
    # used to raise ModelMismatchError instead of converting as the fit does.
    air = gru_basin.reach_air_temp
    kelvin = gru_basin.assign(reach_air_temp=(air.astype("float64") + 273.15).assign_attrs(air.attrs, units="K"),
                              reach_swrad=gru_basin.reach_swrad.assign_attrs(units="W/m2"))
    assert gru_model.config["variables"]["units"]["reach_swrad"] == "W m-2"
    time = ("2003-01-01", "2003-01-31")
    with pytest.warns(xmsgl.UnitConversionWarning):
        got = gru_model.predict(kelvin, time=time)
    np.testing.assert_allclose(got.values, gru_model.predict(gru_basin, time=time).values, atol=1e-3)
    # Targets are still not read: a target without units does not stop the prediction.
    bare = gru_basin.assign(reach_temp=gru_basin.reach_temp.drop_attrs())
    np.testing.assert_array_equal(gru_model.predict(bare, time=time).values,
                                  gru_model.predict(gru_basin, time=time).values)


def test_mohseni_names_the_air_temperature_the_dataset_has(small_basin: xr.Dataset, fitted: dict) -> None:
    # The Delaware files call it reach_tave_air; the message used to say only what is missing.
    renamed = small_basin.rename(reach_air_temp="reach_tave_air")
    with pytest.raises(xmsgl.SchemaError, match=r"\['reach_tave_air'\].*ds.assign\(reach_air_temp="):
        fit_baseline(renamed, "mohseni")
    with pytest.raises(xmsgl.SchemaError, match=r"reach_tave_air"):
        fitted["mohseni"].predict(renamed)
    with pytest.raises(xmsgl.SchemaError, match="add the daily mean air temperature"):
        fit_baseline(small_basin.drop_vars("reach_air_temp"), "mohseni")
    fixed = renamed.assign(reach_air_temp=renamed["reach_tave_air"])
    assert fit_baseline(fixed, "mohseni").method == "mohseni"
    # On a record too short for the split by water year, the missing variable is named
    # before any warning on how the record would be split (which never happens).
    short = renamed.isel(time=slice(0, 500))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(xmsgl.SchemaError, match="for the xmsgl command by adding such a copy"):
            fit_baseline(short, "mohseni")
    with pytest.warns(xmsgl.ShortRecordWarning):
        fit_baseline(short.assign(reach_air_temp=short["reach_tave_air"]), "mohseni")


def test_baselines_refuse_the_lazy_options(small_basin: xr.Dataset,
                                           fitted: dict[str, object]) -> None:
    model = fitted["climatology"]
    lazy_in = small_basin.chunk({"time": 100})
    # Dask-backed inputs are computed during the call, as documented.
    out = lazy_in.msgl.downscale(model)
    assert out.chunks is None
    for kw in ({"lazy": True}, {"reach_chunk": 10}, {"time_block": 365}, {"halo": 2}):
        with pytest.raises(xmsgl.exceptions.ParameterError, match="computes its prediction in memory"):
            lazy_in.msgl.downscale(model, **kw)
    assert lazy_in.msgl.downscale(model, lazy=False).equals(out)


@pytest.mark.parametrize(("method", "kw", "match"), [
    ("idw", {"power": -2.0}, "power=-2.0 must be above 0"),
    ("idw", {"d_min": 0.0}, "d_min=0.0 must be above 0"),
    ("mohseni", {"air_window": 0}, "air_window=0 must be at least 1"),
    ("mohseni", {"min_obs": 2}, "min_obs=2 must be at least 4"),
    ("climatology", {"window": 2.7}, "window=2.7 must be a whole number"),
])
def test_baseline_settings_outside_their_range_are_refused(small_basin: xr.Dataset, method: str,
                                                           kw: dict, match: str) -> None:
    with pytest.raises(xmsgl.exceptions.ParameterError, match=match):
        fit_baseline(small_basin, method, **kw)


def test_fit_baseline_refuses_bad_arguments_as_parameter_errors(small_basin) -> None:
    # They were plain XmsglErrors, while fit() gives ParameterError for the same slips.
    from xmsgl.baselines import fit_baseline
    from xmsgl.exceptions import ParameterError

    with pytest.raises(ParameterError, match=r"settings \['epochs'\] are not known for baseline 'climatology'"):
        fit_baseline(small_basin, "climatology", epochs=3)
    with pytest.raises(ParameterError, match="'msgl' is not a baseline"):
        fit_baseline(small_basin, "msgl")


def test_a_baseline_refuses_check_graph_false(small_basin) -> None:
    # It predicts the reaches it was fitted on, by id: check_graph=False was ignored.
    import xmsgl
    from xmsgl.exceptions import ParameterError

    model = xmsgl.fit(small_basin, "climatology")
    with pytest.raises(ParameterError, match="check_graph=False would be ignored"):
        small_basin.msgl.downscale(model, check_graph=False)
    assert small_basin.msgl.downscale(model).sizes["reach"] == small_basin.sizes["reach"]


def test_a_short_record_warns_of_the_default_split() -> None:
    # fit warns of the 70/15/15 split of a record under three water years; the
    # baselines used the same split without a word.
    short = xmsgl.datasets.synthetic_basin(n_segments=5, start="2001-01-01", end="2002-06-30")
    with pytest.warns(xmsgl.ShortRecordWarning, match=r"0 whole water year\(s\).*the first 85% of the "
                      r"days \(2001-01-01 to 2002-04-09\)") as got:
        fit_baseline(short, "climatology")
    assert [w.filename for w in got] == [__file__]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_baseline(short, "climatology", train=("2001-01-01", "2001-12-31"))


def test_one_observation_does_not_make_a_climatology(small_basin: xr.Dataset) -> None:
    # A reach observed once (3 degC off) used to take that value for the 31 days of
    # the year around it, with jumps at their ends; with min_count (3) those days
    # keep its segment's climatology, as an unobserved reach's do.
    reach = int(np.flatnonzero(np.isnan(small_basin.reach_temp.values).all(axis=1))[0])
    day = int(np.flatnonzero(pd.DatetimeIndex(small_basin.time.values) == pd.Timestamp("2001-07-15"))[0])
    once = small_basin.copy(deep=True)
    once["reach_temp"].values[reach, day] = float(small_basin.reach_temp_true.values[reach, day]) + 3.0
    train = ("2000-10-01", "2002-09-30")
    plain = fit_baseline(small_basin, "climatology", train=train)
    one = fit_baseline(once, "climatology", train=train)
    # (The pooled climatology, which an unobserved segment falls back to, counts the
    # observation among thousands: 0.01 degC.)
    np.testing.assert_allclose(one.arrays["reach_clim"][reach], plain.arrays["reach_clim"][reach], atol=0.05)
    legacy = fit_baseline(once, "climatology", train=train, min_count=1)
    doy = 195  # 15 July, day of year 196, as the tables count from 0
    assert legacy.arrays["reach_clim"][reach, doy] == pytest.approx(
        small_basin.reach_temp_true.values[reach, day] + 3.0, abs=1e-4)
    assert one.config["fit"]["climatology_days"]["reach_doy_own"] < \
        legacy.config["fit"]["climatology_days"]["reach_doy_own"]


def test_mohseni_says_where_missing_air_leaves_it_without_a_value(small_basin: xr.Dataset) -> None:
    model = fit_baseline(small_basin, "mohseni", train=("2000-10-01", "2003-09-30"))
    gap = small_basin.copy(deep=True)
    gap["reach_air_temp"].values[4, 1100:1103] = np.nan   # 3 days (the others of their 5-day means are kept)
    reach = int(small_basin.reach.values[4])
    with pytest.warns(xmsgl.XmsglWarning, match=rf"mohseni predicts no value on 3 reach-days \(reach "
                                                rf"{reach} on 2003-10-06,.*'reach_air_temp' is missing"):
        out = model.predict(gap, time=TEST)
    assert int(out.isnull().sum()) == 3
    assert (model.arrays["params"][:, 0] >= 0).all()   # mu, the floor, at or above freezing


def test_downscale_refuses_window_options_a_baseline_ignores(gru_basin: xr.Dataset, gru_model,
                                                              small_basin: xr.Dataset, fitted: dict) -> None:
    # The GRU warms up and runs in its own windows: spinup=0 or chunk=30 gave the
    # default output without a word.
    from xmsgl.downscale import downscale

    for kw in ({"spinup": 0}, {"chunk": 30}):
        with pytest.raises(xmsgl.ParameterError, match=rf"\['{next(iter(kw))}=.*runs in the windows it "
                                                       r"was fitted with \(spinup 180, chunk 365"):
            downscale(gru_basin, gru_model, **kw)
    with pytest.raises(xmsgl.ParameterError, match=r"\['spinup=30'\].*predicts each day on its own"):
        downscale(small_basin, fitted["climatology"], spinup=30)
    out = downscale(gru_basin, gru_model, spinup=180, chunk=365)  # the defaults: as before
    assert out.dims == ("reach", "time")


@pytest.mark.parametrize("device", ["banana", 42, "cuda:9", None])
def test_downscale_checks_a_baseline_s_device_as_its_fit_does(small_basin: xr.Dataset, fitted: dict,
                                                               gru_basin: xr.Dataset, gru_model,
                                                               device: object) -> None:
    # A baseline runs on the CPU, but a bad device name was accepted without a word.
    from xmsgl.downscale import downscale

    with pytest.raises(xmsgl.ParameterError, match="device="):
        xmsgl.fit(small_basin, method="climatology", device=device)
    with pytest.raises(xmsgl.ParameterError, match="device="):
        downscale(small_basin, fitted["climatology"], device=device)
    with pytest.raises(xmsgl.ParameterError, match="device="):
        small_basin.msgl.downscale(fitted["climatology"], device=device)
    with pytest.raises(xmsgl.ParameterError, match="device="):
        downscale(gru_basin, gru_model, device=device)
    # The names of devices that exist here are taken, as before (the history lines
    # carry the time to the second, so the values and the other attributes are compared).
    a = downscale(small_basin, fitted["climatology"], device="cpu")
    b = downscale(small_basin, fitted["climatology"])
    xr.testing.assert_equal(a, b)
    assert {k: v for k, v in a.attrs.items() if k != "history"} == \
        {k: v for k, v in b.attrs.items() if k != "history"}


def test_baseline_outputs_name_the_held_out_days_the_seed_and_the_inputs(small_basin: xr.Dataset,
                                                                        tmp_path) -> None:
    # As a network's output does: what to score on (InSampleWarning points there), the
    # seed, and what the data were.
    days = pd.DatetimeIndex(small_basin.time.values)
    test = (str(days[-120].date()), str(days[-1].date()))
    ds = small_basin.assign_attrs(title="a basin", source="a model run")
    model = xmsgl.fit(ds, "climatology", test=test, seed=3)
    out = ds.msgl.downscale(model)
    assert out.attrs["xmsgl_test_periods"] == f"{test[0]}/{test[1]}"
    assert out.attrs["xmsgl_seed"] == 3
    assert (out.attrs["xmsgl_input_title"], out.attrs["xmsgl_input_source"]) == ("a basin", "a model run")
    back = xmsgl.load(model.save(tmp_path / "clim"))
    assert back.sha256 == model.sha256 and back.config["test"] == [list(test)]
    # The repr names the training days as the outputs do, the same after loading.
    assert repr(back) == repr(model) and f"train={out.attrs['xmsgl_train_periods']}>" in repr(model)
    # Without a period, the default split's test days are held out and named, as a
    # network's are (they went unnamed, and config had no "test" to score on).
    default = xmsgl.fit(ds, "idw")
    split = [list(p) for p in xmsgl.periods.split_periods(days)["test"]]
    assert default.config["test"] == split
    assert ds.msgl.downscale(default).attrs["xmsgl_test_periods"] == ",".join(f"{a}/{b}" for a, b in split)
    assert default.config["train"][-1][1] < split[0][0]
    # Given train= alone, no day is said to be held out.
    alone = xmsgl.fit(ds, "climatology", train=(str(days[0].date()), str(days[400].date())))
    assert "test" not in alone.config
    assert "xmsgl_test_periods" not in ds.msgl.downscale(alone).attrs


@pytest.mark.parametrize(("name", "value", "error", "says"), [
    # (at fit validate names them first, as missing-data codes)
    ("reach_air_temp", -9999.0, "UnitsError", "outside the plausible|missing-data code"),
    ("reach_air_temp", 200.0, "UnitsError", "outside the plausible|missing-data code"),
    ("reach_precip", -9999.0, "DataError", "standard deviations from its training mean"),
    ("reach_discharge", 1e7, "DataError", "standard deviations from its training mean"),
])
def test_the_gru_refuses_the_inputs_the_networks_refuse(gru_basin: xr.Dataset, gru_model, name: str,
                                                         value: float, error: str, says: str) -> None:
    # It checked NaN alone: one fill value or impossible temperature moved its
    # predictions by 1-9 degC without a word, where every network refuses them.
    bad = gru_basin.copy(deep=True)
    index = (2, 400) if bad[name].dims[0] == "reach" else (400, 2)
    bad[name].values[index] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xmsgl.XmsglWarning)
        with pytest.raises(getattr(xmsgl, error), match=says) as info:
            gru_model.predict(bad)
    assert "at reach 3 on 2001-11-05" in str(info.value) and "or leave the variable out" not in str(info.value)
    # At fit the same, on days outside the training period too.
    from xmsgl.model import fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xmsgl.XmsglWarning)
        with pytest.raises(getattr(xmsgl, error), match=says):
            fit(bad, "gru", epochs=1, window=180, stride=90, progress=False)


def test_gru_records_its_provenance_as_the_networks_do(gru_basin: xr.Dataset, gru_model,
                                                       half_year_msgl) -> None:
    """The threads, versions, device and data of a fit, and downscale's history line."""
    import torch

    for model in (gru_model, half_year_msgl):
        cfg = model.config
        assert cfg["torch_threads"] == torch.get_num_threads()
        assert cfg["versions"]["torch"] == torch.__version__ and cfg["device"] == "cpu"
        assert len(cfg["data"]["targets_sha256"]) == 64
    assert gru_model.config["data"]["targets_days"] == "training and validation"
    assert len(gru_model.weights_sha256) == 64 and gru_model.weights_sha256 != gru_model.sha256
    pred = gru_model.predict(gru_basin, time=("2003-01-01", "2003-01-31"))
    assert re.search(r"UTC: xmsgl \S+ downscale\(method='gru', scale='reach', time=2003-01-01/2003-01-31, "
                     rf"model sha256={gru_model.sha256[:16]}, device='cpu', spinup=180, chunk=365\)$",
                     pred.attrs["history"]), pred.attrs["history"]
    # Thinned observations are another data record, named by sparsify's.
    thin = gru_basin.msgl.sparsify(keep=0.5, seed=1)
    other = xmsgl.fit(thin, "gru", epochs=1, window=180, stride=90, batch_size=4, progress=False)
    assert other.config["data"]["targets_sha256"] != gru_model.config["data"]["targets_sha256"]
    assert "keep=0.5, seed=1" in other.config["data"]["sparsify"]


def test_gru_thread_option_holds_for_fit_gru_and_threads_are_not_the_models_identity(
        gru_basin: xr.Dataset, gru_model) -> None:
    from xmsgl.nn.gru import fit_gru
    from xmsgl.nn.weights import model_sha256

    with xmsgl.set_options(torch_threads=1):
        direct = fit_gru(gru_basin, epochs=1, window=180, stride=90, batch_size=4, progress=False)
    assert direct.config["torch_threads"] == 1
    cfg = dict(gru_model.config)
    assert model_sha256("w", {**cfg, "torch_threads": 7}) == model_sha256("w", cfg)
    # A list of periods is named as such in the history line, not as one span.
    pred = gru_model.predict(gru_basin, time=[("2001-01-01", "2001-01-10"), ("2002-05-01", "2002-05-03")])
    assert pred.sizes["time"] == 13
    assert "time=2001-01-01/2001-01-10, 2002-05-01/2002-05-03, model" in pred.attrs["history"]


def test_a_mohseni_curve_needs_observations_over_most_of_the_year() -> None:
    """A segment observed from May to September alone (102 coarse observations, more than
    min_obs) set the curve of its nine reaches: its lower plateau, fitted on summer water,
    was 15.8 degC, predicted all winter (about 5 degC true) without a word. A level's
    curve now needs observations in min_months (8) calendar months."""
    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2003-09-30", seed=1)
    test = ("2002-10-01", "2003-09-30")
    jan = slice("2003-01-01", "2003-01-31")
    old = fit_baseline(ds, "mohseni", min_months=1)  # the rule before the setting existed
    new = fit_baseline(ds, "mohseni")
    on_seg = (old.arrays["param_level"] == 1) & (ds.reach_seg.values == 1)
    assert on_seg.sum() == 9 and not ((new.arrays["param_level"] == 1) & (ds.reach_seg.values == 1)).any()
    assert new.config["fit"]["few_months"]["segments"] >= 1
    truth = ds.reach_temp_true.sel(time=jan).isel(reach=np.flatnonzero(on_seg))
    before = old.predict(ds, time=test).sel(time=jan).isel(reach=np.flatnonzero(on_seg))
    after = new.predict(ds, time=test).sel(time=jan).isel(reach=np.flatnonzero(on_seg))
    assert float(before.mean()) - float(truth.mean()) > 8  # 15.8 against 5.0 degC
    assert abs(float(after.mean()) - float(truth.mean())) < 3
    for bad, match in ((0, "at least 1"), (13, "at most 12")):
        with pytest.raises(xmsgl.ParameterError, match=f"min_months={bad} must be {match}"):
            fit_baseline(ds, "mohseni", min_months=bad)


def test_mohseni_refuses_the_climatology_settings_it_does_not_read(small_basin: xr.Dataset) -> None:
    # window and min_count changed the model's sha256 and not one prediction.
    for name in ("window", "min_count"):
        with pytest.raises(xmsgl.ParameterError, match=rf"\['{name}'\] shapes the day-of-year climatology, "
                                                 r"which baseline 'mohseni' does not read"):
            fit_baseline(small_basin, "mohseni", **{name: 5})
    # Said nowhere as one of its settings, and a setting for every method of a sweep goes
    # to those that read it (the sweep failed on mohseni).
    with pytest.raises(xmsgl.ParameterError, match=r"it takes the settings \['air_window', 'min_months', "
                                                   r"'min_obs'\]$"):
        xmsgl.fit(small_basin, method="mohseni", bogus=1)
    from xmsgl.evaluate import sparsity_sweep

    sw = sparsity_sweep(small_basin, ["climatology", "mohseni"], keep=[1.0], seeds=[0],
                        fit_kwargs={"min_count": 5})
    assert np.isfinite(sw.rmse.values).all()
    with pytest.raises(xmsgl.ParameterError, match="does not read"):
        sparsity_sweep(small_basin, ["climatology", "mohseni"], keep=[1.0], seeds=[0],
                       fit_kwargs={"mohseni": {"min_count": 5}})


def test_a_mohseni_folder_saved_before_min_months_loads_as_fitted(tmp_path, small_basin: xr.Dataset) -> None:
    import json

    model = fit_baseline(small_basin, "mohseni", min_months=1)
    folder = model.save(tmp_path / "moh")
    config = json.loads((folder / "config.json").read_text())
    del config["settings"]["min_months"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.warns(xmsgl.XmsglWarning):  # an edited config is said to be one
        again = load_baseline(folder)
    np.testing.assert_array_equal(again.predict(small_basin, time=TEST).values,
                                  model.predict(small_basin, time=TEST).values)


@pytest.mark.parametrize("method", ["climatology", "idw", "harmonic"])
def test_every_baseline_that_reads_a_one_season_climatology_warns(method: str) -> None:
    # idw and harmonic predict January from the same summer-only climatology, silently.
    import pandas as pd

    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2003-09-30", seed=1)
    summer = xr.DataArray(pd.DatetimeIndex(ds.time.values).month.isin([6, 7, 8]), dims="time",
                          coords={"time": ds.time})
    ds = ds.assign(reach_temp=ds.reach_temp.where(summer), seg_temp=ds.seg_temp.where(summer))
    with pytest.warns(xmsgl.FewObservationsWarning, match="interpolated between the nearest observed"):
        fit_baseline(ds, method)


def test_the_gru_refuses_what_is_not_a_dataset_and_checks_its_data(gru_model, gru_basin: xr.Dataset) -> None:
    # predict failed with an AttributeError on a DataArray, None or a path; check_data was
    # a module function only, where the docs call the method.
    for bad in (gru_basin.reach_air_temp, None, "basin.nc"):
        with pytest.raises(xmsgl.SchemaError, match="expected an xarray.Dataset"):
            gru_model.predict(bad)
    assert gru_model.check_data(gru_basin) == {"targets": True, "inputs": True}
    warmer = gru_basin.assign(reach_air_temp=gru_basin.reach_air_temp + 1.0)
    assert gru_model.check_data(warmer)["inputs"] is False


def test_mohseni_takes_its_recorded_settings_back(small_basin: xr.Dataset) -> None:
    # Its config records window and min_count at their defaults: given back to refit it,
    # they were refused; another value is still refused, in the singular for one.
    model = fit_baseline(small_basin, "mohseni")
    again = fit_baseline(small_basin, "mohseni", **model.config["settings"])
    assert again.sha256 == model.sha256
    with pytest.raises(xmsgl.ParameterError, match=r"setting \['window'\] shapes the day-of-year "
                                                   r"climatology, .* leave it out"):
        fit_baseline(small_basin, "mohseni", window=21, min_count=3)
