"""Fitting, training machinery, and saving/loading of Downscaler models."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl

torch = pytest.importorskip("torch")

from xmsgl.exceptions import DataError, ModelMismatchError, ParameterError, SchemaError, TimeError, XmsglError  # noqa: E402
from xmsgl.model import METHODS, Downscaler, fit, load  # noqa: E402
from xmsgl.train import (  # noqa: E402
    make_windows,
    masked_rmse,
    min_norm_weights,
    period_ranges,
    split_periods,
)

FAST = {"epochs": 2, "window": 30, "stride": 30, "progress": False}


@pytest.fixture(scope="module")
def basin(half_year_basin: xr.Dataset) -> xr.Dataset:
    return half_year_basin


@pytest.fixture(scope="module")
def model(basin: xr.Dataset) -> Downscaler:
    return fit(basin, method="msgl", seed=0, **FAST)


# ------------------------------------------------------------------ training pieces


def test_make_windows_cover_ranges_and_never_straddle_gaps() -> None:
    wins = make_windows([(0, 100), (130, 150)], length=40, stride=25)
    assert wins == [(0, 40), (25, 40), (50, 40), (60, 40), (130, 20)]
    for s, n in wins:
        assert (s + n <= 100) or (s >= 130 and s + n <= 150)


def test_period_ranges_split_at_gaps_in_time() -> None:
    t = pd.DatetimeIndex(list(pd.date_range("2000-01-01", periods=5)) +
                         list(pd.date_range("2000-02-01", periods=3)))
    assert period_ranges(t, np.ones(8, bool)) == [(0, 5), (5, 8)]


def test_split_periods_by_water_year() -> None:
    p = split_periods(pd.date_range("2000-10-01", "2012-09-30"))
    assert p["test"] == [("2010-10-01", "2012-09-30")]
    assert p["val"] == [("2009-10-01", "2010-09-30")]
    assert p["train"] == [("2000-10-01", "2009-09-30")]
    # Partial water years do not count as years: a day past the last whole year
    # joins the test period (it used to be the whole test period), a partial first
    # year joins training.
    p = split_periods(pd.date_range("2012-10-01", "2015-10-01"))
    assert p["test"] == [("2014-10-01", "2015-10-01")]
    assert p["val"] == [("2013-10-01", "2014-09-30")]
    assert p["train"] == [("2012-10-01", "2013-09-30")]
    p = split_periods(pd.date_range("2001-03-01", "2008-09-30"))
    assert p["train"] == [("2001-03-01", "2006-09-30")]
    assert p["test"] == [("2007-10-01", "2008-09-30")]
    # Water years that are not whole between the validation year and the test train:
    # with 45 winter days missing from each of seven years, validation took eight of ten.
    t = pd.date_range("2000-10-01", "2010-09-30")
    holed = t[~((t.month == 12) | ((t.month == 1) & (t.day <= 14))) | (t < "2002-10-01") | (t > "2009-09-30")]
    p = split_periods(holed)
    assert p["val"] == [("2001-10-01", "2002-09-30")] and p["test"] == [("2009-10-01", "2010-09-30")]
    assert p["train"] == [("2000-10-01", "2001-09-30"), ("2002-10-01", "2009-09-30")]
    # Between two validation years, such a year is validation (31 whole years: 3 of them).
    t = pd.date_range("1980-10-01", "2012-09-30")
    holed = t[~(((t.month == 12) & (t.year == 2004)) | ((t.month == 1) & (t.year == 2005)))]
    p = split_periods(holed)
    assert p["val"] == [("2003-10-01", "2007-09-30")] and p["test"] == [("2007-10-01", "2012-09-30")]
    assert p["train"] == [("1980-10-01", "2003-09-30")]
    # Fewer than three whole water years (a record from January to December of the
    # next year has one): 70/15/15 in time order.
    t = pd.date_range("1979-01-01", "1980-12-31")
    p = split_periods(t)
    assert p["train"] == [(str(t[0].date()), str(t[int(len(t) * 0.7) - 1].date()))]


def test_short_record_default_split_warns(basin: xr.Dataset) -> None:
    # Under three whole water years the default split is 70/15/15 in time order:
    # validation and test then cover part of one year each, which fit says.
    import warnings

    from xmsgl.exceptions import ShortRecordWarning
    from xmsgl.model import _resolve_periods

    t = pd.date_range("2012-10-01", "2014-10-01")
    with pytest.warns(ShortRecordWarning, match=r"2 whole water year\(s\).*validation \(2014-02-24 to "
                      r"2014-06-13\) and test \(2014-06-14 to 2014-10-01\)"):
        _resolve_periods(t, None, None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ShortRecordWarning)
        _resolve_periods(pd.date_range("2011-10-01", "2014-09-30"), None, None, None)
        _resolve_periods(t, ("2012-10-01", "2013-09-30"), ("2013-10-01", "2014-03-31"), None)
    with pytest.warns(ShortRecordWarning, match="0 whole water year"):
        fit(basin, method="fine-only", **{**FAST, "epochs": 1})


def test_masked_rmse_ignores_nan_and_is_none_without_obs() -> None:
    pred = torch.tensor([1.0, 2.0, 3.0])
    assert masked_rmse(pred, torch.tensor([float("nan")] * 3)) is None
    val = masked_rmse(pred, torch.tensor([1.0, float("nan"), 5.0]))
    assert val is not None and abs(float(val) - np.sqrt(2.0)) < 1e-4


def test_min_norm_weights_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    grid = np.linspace(0, 1, 101)
    for i in range(12):
        g = rng.normal(size=(3, 6 if i < 6 else 2))
        if i % 3 == 1:
            g[1] = g[0] * 1.7  # parallel gradients
        if i % 4 == 2:
            g[2] = g[0] + 0.05 * g[1]  # nearly the same direction: the optimum on an edge
        gram = g @ g.T
        alpha = min_norm_weights(gram)
        assert alpha.min() >= 0 and abs(alpha.sum() - 1) < 1e-9
        best = min(np.linalg.norm(a * g[0] + b * g[1] + (1 - a - b) * g[2])
                   for a in grid for b in grid if a + b <= 1 + 1e-12)
        assert np.linalg.norm(alpha @ g) <= best + 1e-9
    # Frank-Wolfe stopped at 50 steps left 0.07 on the third vector here, whose
    # optimum is the middle of the first edge.
    gram = np.array([[1, .892, .926], [.892, 1, .968], [.926, .968, 1]])
    np.testing.assert_allclose(min_norm_weights(gram), [0.5, 0.5, 0.0], atol=1e-12)
    # Identical unit vectors tie everywhere on the simplex: the even point (all the weight
    # went to the first task, whose head alone then trained on that step).
    np.testing.assert_allclose(min_norm_weights(np.ones((2, 2))), [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(min_norm_weights(np.ones((3, 3))), [1 / 3] * 3, atol=1e-12)
    # Two identical and one apart: the even split of the tied pair where it is optimal.
    g = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0]])
    np.testing.assert_allclose(min_norm_weights(g @ g.T), [0.25, 0.25, 0.5], atol=1e-12)
    # The same in float32, whose rounding leaves the least norm about 1e-17 from 0: the
    # tie is still found (a relative tolerance alone missed it in 9 of 500 draws).
    import torch

    rng = np.random.default_rng(3)
    for _ in range(200):
        u = rng.standard_normal(50)
        m = torch.tensor(np.stack([u, u, -u]), dtype=torch.float32)
        m = m / (m.norm(dim=1, keepdim=True) + 1e-12)  # as train_tasks normalizes them
        np.testing.assert_allclose(min_norm_weights((m @ m.t()).double().numpy()), [0.25, 0.25, 0.5],
                                   atol=1e-6)


def test_mgda_weights_leave_out_tasks_without_shared_gradient() -> None:
    from xmsgl.train import mgda_weights

    # A zero gradient used to be the min-norm point alone and take all the weight,
    # so the other tasks' gradients never reached the shared cell.
    gram = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(mgda_weights(np.array([2.0, 1.0, 0.0]), gram), [1 / 3, 1 / 3, 1 / 3])
    gram = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(mgda_weights(np.array([2.0, 1.0, 0.0]), gram).sum(), 1.0)
    np.testing.assert_allclose(mgda_weights(np.zeros(3), np.zeros((3, 3))), [1 / 3] * 3)
    gram = np.array([[1.0, -1.0], [-1.0, 1.0]])
    np.testing.assert_allclose(mgda_weights(np.array([1.0, 3.0]), gram), [0.5, 0.5])


def test_windows_without_fine_obs_still_train_coarse_task(basin: xr.Dataset) -> None:
    ds = basin.assign(reach_temp=basin.reach_temp.where(basin.time >= np.datetime64("2001-04-01")))
    m = fit(ds, method="msgl", seed=0, train=("2001-01-01", "2001-05-15"), val=("2001-05-16", "2001-06-30"),
            test=None, **{**FAST, "epochs": 1, "batch_size": 1, "weighting": "equal"})
    hist = m.history["main"]
    assert np.isfinite(hist["loss"]).all()
    # One window per step: the coarse task trains in every step, the fine tasks only
    # in the windows that hold a fine observation (none before April).
    w = hist["task_weights"]
    assert w["coarse"] == pytest.approx(1.0)
    assert 0 < w["fine"] < w["coarse"]


# ------------------------------------------------------------------------- fitting


def test_fit_returns_downscaler_with_config(model: Downscaler, basin: xr.Dataset) -> None:
    assert isinstance(model, xmsgl.Downscaler)
    cfg = model.config
    assert cfg["method"] == "msgl" and cfg["seed"] == 0
    assert cfg["graph"]["fingerprint"] == basin.msgl.graphs().fingerprint
    assert "reach_air_temp" in cfg["variables"]["reach_vars"]
    assert cfg["variables"]["units"]["reach_air_temp"] == basin.reach_air_temp.attrs["units"]
    assert set(cfg["versions"]) >= {"xmsgl", "torch", "numpy", "xarray", "scipy", "pandas", "python"}
    assert cfg["hyperparameters"]["hidden"] == 20 and cfg["hyperparameters"]["lr"] == 5e-3
    assert len(cfg["history"]["main"]["loss"]) == 2
    assert not hasattr(basin.msgl, "model")  # nothing trained lives on the accessor


def test_the_config_names_the_hyperparameters_a_method_does_not_read(
        basin: xr.Dataset, model: Downscaler, tmp_path) -> None:
    # Every network method records the same hyperparameters; the fine-only cell trains
    # one task with weight 1 and no cross-scale head, though it records weighting "mgda".
    assert model.config["hyperparameters_not_read"] == ["pretrain_epochs"]
    fine = fit(basin, method="fine-only", seed=0, **{**FAST, "epochs": 1})
    assert fine.config["hyperparameters"]["weighting"] == "mgda"
    assert fine.config["hyperparameters_not_read"] == ["attn_blocks", "attn_window", "fine_head",
                                                       "pretrain_epochs", "task_weights", "weighting"]
    assert set(fine.config["hyperparameters_not_read"]) <= set(fine.config["hyperparameters"])
    back = xmsgl.load(fine.save(tmp_path / "fine"))
    assert back.config["hyperparameters_not_read"] == fine.config["hyperparameters_not_read"]


def test_fit_is_reproducible_on_cpu(basin: xr.Dataset, model: Downscaler) -> None:
    # Equal to the bit on the CPU; on a GPU, see tests/test_gpu.py.
    first = fit(basin, method="msgl", seed=0, device="cpu", **FAST)
    again = fit(basin, method="msgl", seed=0, device="cpu", **FAST)
    for (k, a), b in zip(first.net.state_dict().items(), again.net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    # The same model has the same identity, whenever it was fitted.
    later = Downscaler(again.net, {**again.config, "created": "2100-01-01T00:00:00Z"})
    assert later.sha256 == first.sha256
    other = fit(basin, method="msgl", seed=1, **FAST)
    assert other.sha256 != model.sha256


@pytest.mark.parametrize("method", ["msgl", "gru", "idw"])
def test_a_shuffled_file_gives_the_same_model(basin: xr.Dataset, model: Downscaler, method: str) -> None:
    # Ids are matched by value: the order a file lists segments and reaches in once
    # moved the scalers and the graph statistics in their last digits, and a fit with
    # them (weights 8e-5 apart after one epoch).
    rng = np.random.default_rng(3)
    shuffled = basin.isel(reach=rng.permutation(basin.sizes["reach"]), seg=rng.permutation(basin.sizes["seg"]))
    kw = {"seed": 0, **({"epochs": 1, "progress": False} if method == "gru" else
                        FAST if method == "msgl" else {})}
    first = model if method == "msgl" else fit(basin, method=method, **kw)
    again = fit(shuffled, method=method, **kw)
    assert again.sha256 == first.sha256
    assert fit(basin.transpose("time", ...), method=method, **kw).sha256 == first.sha256
    # Predictions follow the ids; the shuffled run sums in another order (float32 ulps).
    a = basin.msgl.downscale(first)
    b = shuffled.msgl.downscale(again)
    assert b.reach.values.tolist() == shuffled.reach.values.tolist()
    np.testing.assert_allclose(b.sel(reach=a.reach).values, a.values, rtol=0, atol=1e-5)


def test_a_file_laid_out_time_first_gives_the_same_model() -> None:
    # The scalers summed a (time, node) file's values in another order: three standard
    # deviations of this basin differed in their last bits, and with them the sha256.
    from xmsgl.datasets import synthetic_basin

    ds = synthetic_basin(n_segments=10, start="2000-10-01", end="2002-03-31", seed=3,
                         reach_obs_share=0.3, n_outlets=2)
    model = fit(ds, method="msgl", seed=0, **FAST)
    again = fit(ds.transpose("time", ...), method="msgl", seed=0, **FAST)
    assert again.config["variables"]["std"] == model.config["variables"]["std"]
    assert again.sha256 == model.sha256


def test_training_improves_on_the_untrained_model(basin: xr.Dataset) -> None:
    from xmsgl.downscale import downscale

    trained = fit(basin, method="msgl", seed=0, **{**FAST, "epochs": 6, "weighting": "equal"})
    untrained = Downscaler(type(trained.net)(**_net_args(trained)), trained.config)
    truth = basin.reach_temp_true
    rmse = {k: float(np.sqrt(((downscale(basin, m) - truth) ** 2).mean()))
            for k, m in (("trained", trained), ("untrained", untrained))}
    clim = truth.mean("time")
    rmse["climatology"] = float(np.sqrt(((clim - truth) ** 2).mean()))
    assert rmse["trained"] < rmse["untrained"]
    assert rmse["trained"] < rmse["climatology"], rmse


def _net_args(m: Downscaler) -> dict[str, int]:
    v = m.config["variables"]
    hp = m.config["hyperparameters"]
    return {"n_common": v["n_common"], "n_seg_extra": len(v["seg_vars"]) - v["n_common"],
            "n_reach_extra": len(v["reach_vars"]) - v["n_common"], "hidden": hp["hidden"],
            "attn_window": hp["attn_window"], "attn_blocks": hp["attn_blocks"]}


@pytest.mark.parametrize("method", [m for m in METHODS if m != "msgl"])
def test_every_method_fits_and_predicts(basin: xr.Dataset, method: str) -> None:
    first_stage = {"pretrain_epochs": 1} if method in ("async-msgl", "direct", "progressive") else {}
    m = fit(basin, method=method, seed=0, **{**FAST, "epochs": 1, **first_stage})
    out = basin.msgl.downscale(m)
    assert out.dims == ("reach", "time") and bool(np.isfinite(out).all())
    assert m.method == method


def test_async_stage_a_never_reads_test_period(basin: xr.Dataset) -> None:
    with pytest.raises(TimeError, match="test period"):
        fit(basin, method="async-msgl", val=("2001-05-16", "2001-05-31"), test=("2001-06-01", "2001-06-30"),
            stage_a_period=("2001-01-01", "2001-06-30"), **FAST)
    m = fit(basin, method="async-msgl", val=("2001-05-16", "2001-05-31"), test=("2001-06-01", "2001-06-30"),
            **{**FAST, "epochs": 1})
    (a0, a1), = m.config["stage_a"]["period"]
    assert pd.Timestamp(a1) < pd.Timestamp("2001-06-01")
    assert "stage_a" in m.history and "main" in m.history
    # The default stage A trains all three heads on its pseudo-labels.
    assert m.config["stage_a"]["tasks"] == ["coarse", "remap", "remap-fine"]


@pytest.mark.parametrize("tasks, scored", [(("coarse", "remap"), "cross"),
                                           (("coarse", "remap", "remap-fine"), "fine"),
                                           (("coarse",), "coarse")])
def test_stage_a_checkpoint_is_judged_on_what_it_trains(basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch,
                                                        tasks: tuple[str, ...], scored: str) -> None:
    # Without "remap-fine" stage A trains the coarse and cross-scale heads only; it
    # used to keep the epoch whose untrained fine head scored best.
    import xmsgl.model as model_module

    outputs: list[str] = []
    real = model_module.predict

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        outputs.append(kwargs["output"])
        return real(*args, **kwargs)

    monkeypatch.setattr(model_module, "predict", spy)
    m = fit(basin, method="async-msgl", val=("2001-05-16", "2001-05-31"), test=("2001-06-01", "2001-06-30"),
            stage_a_tasks=tasks, pretrain_epochs=2, **{**FAST, "epochs": 1})
    # One validation range: two stage-A epochs, then the main stage's starting weights
    # (which compete for its checkpoint where stage A trained the fine head) and its
    # one epoch.
    assert outputs == [scored, scored, *(["fine"] if "remap-fine" in tasks else []), "fine"]
    assert m.history["stage_a"]["best_epoch"] in (1, 2)


def test_stage_a_tasks_are_a_set(basin: xr.Dataset) -> None:
    # Their order and repeats gave the same weights under three sha256s.
    run = {"method": "async-msgl", "val": ("2001-05-16", "2001-05-31"), "test": ("2001-06-01", "2001-06-30"),
           "pretrain_epochs": 1, **{**FAST, "epochs": 1}}
    a = fit(basin, stage_a_tasks=("coarse", "remap"), **run)
    b = fit(basin, stage_a_tasks=["remap", "coarse", "remap"], **run)
    assert a.sha256 == b.sha256 and a.config["stage_a"]["tasks"] == ["coarse", "remap"]


def test_stage_a_without_a_test_period_says_what_it_reads(basin: xr.Dataset) -> None:
    # Given train and val but no test, stage A's default period holds every other
    # day: fit says so, and the predictions count those days as training days.
    with pytest.warns(xmsgl.XmsglWarning, match=r"no test period was given, so stage A also reads "
                      r"'seg_temp' on 30 days outside the training period \(2001-06-01 to 2001-06-30\)"):
        m = fit(basin, method="async-msgl", train=("2001-01-01", "2001-05-15"),
                val=("2001-05-16", "2001-05-31"), **{**FAST, "epochs": 1})
    pred = basin.msgl.downscale(m)
    assert pred.attrs["xmsgl_train_periods"] == "2001-01-01/2001-05-15, 2001-06-01/2001-06-30"
    with pytest.warns(xmsgl.XmsglWarning, match="in-sample"):
        basin.drop_vars("reach_temp_true").msgl.evaluate(pred.sel(time=slice("2001-06-01", "2001-06-30")))
    # msgl reads no day outside train: no warning, and its training days only.
    m = fit(basin, method="msgl", train=("2001-01-01", "2001-05-15"), val=("2001-05-16", "2001-05-31"),
            **{**FAST, "epochs": 1})
    assert basin.msgl.downscale(m).attrs["xmsgl_train_periods"] == "2001-01-01/2001-05-15"


def test_stage_a_variable_is_a_target_not_an_input(basin: xr.Dataset) -> None:
    # A longer coarse record (NaN where unobserved) is stage A's target: it used to be
    # taken as an input too, which refused its NaN (and would let stage A copy it).
    record = basin.seg_temp.where(basin.time < np.datetime64("2001-04-01"))
    ds = basin.assign(seg_temp_record=record.assign_attrs(units="degC"))
    m = fit(ds, method="async-msgl", seed=0, stage_a_variable="seg_temp_record",
            **{**FAST, "epochs": 1})
    assert "seg_temp_record" not in m.config["variables"]["seg_vars"]
    assert m.config["stage_a"]["variable"] == "seg_temp_record"
    assert np.isfinite(m.history["stage_a"]["loss"]).all()
    # The model does not need the record to downscale.
    assert bool(np.isfinite(basin.msgl.downscale(m)).all())
    # Other methods still read such a variable as an input, with a warning that it
    # looks like observed water temperature.
    with pytest.warns(xmsgl.XmsglWarning, match="looks like a version of the target 'seg_temp'"):
        assert "seg_temp_record" in xmsgl.convention.input_variables(ds).all()


def test_stage_a_period_over_validation_days_warns(basin: xr.Dataset) -> None:
    # Allowed (coarse targets only), but the fine validation score that picks the
    # checkpoint then judges days stage A trained on: said, with the days.
    with pytest.warns(xmsgl.XmsglWarning, match=r"overlaps the validation period on 6 days "
                      r"\(2001-05-16 to 2001-05-21\)"):
        m = fit(basin, method="async-msgl", val=("2001-05-16", "2001-05-31"),
                test=("2001-06-01", "2001-06-30"), stage_a_period=("2001-01-01", "2001-05-21"),
                **{**FAST, "epochs": 1})
    assert m.config["stage_a"]["period"][-1][1] == "2001-05-21"


def test_stage_a_without_targets_is_refused(basin: xr.Dataset) -> None:
    record = basin.seg_temp.where(basin.time < np.datetime64("2001-03-01"))
    ds = basin.assign(seg_temp_record=record.assign_attrs(units="degC"))
    # Stage A used to run its epochs without a single loss.
    with pytest.raises(DataError, match="stage_a_variable 'seg_temp_record' has no value"):
        fit(ds, method="async-msgl", stage_a_variable="seg_temp_record",
            stage_a_period=("2001-03-05", "2001-04-30"), val=("2001-05-16", "2001-05-31"),
            test=("2001-06-01", "2001-06-30"), **FAST)
    with pytest.raises(DataError, match="no day of the dataset"):
        fit(basin, method="async-msgl", stage_a_period=("1990", "1991"), **FAST)
    for tasks in (None, ()):
        with pytest.raises(ParameterError, match="stage_a_tasks"):
            fit(basin, method="async-msgl", stage_a_tasks=tasks, **FAST)  # type: ignore[arg-type]


def test_fit_errors_name_the_problem(basin: xr.Dataset) -> None:
    with pytest.raises(XmsglError, match="method="):
        fit(basin, method="magic", **FAST)
    bad = basin.copy()
    air = bad.reach_air_temp.values.copy()
    air[0, :3] = np.nan
    bad["reach_air_temp"] = (bad.reach_air_temp.dims, air, bad.reach_air_temp.attrs)
    with pytest.raises(DataError, match=r"'reach_air_temp' has 3 NaN") as got:
        fit(bad, method="msgl", **FAST)
    # The message says where: the first reach and day, in the dataset's own ids.
    first = f"reach {int(bad.reach.values[0])} on {str(bad.time.values[0])[:10]}"
    assert f"(at {first}, " in str(got.value)
    assert "to fit a model without it" in str(got.value)
    none = basin.assign(reach_temp=basin.reach_temp * np.nan)
    with pytest.raises(DataError, match="no fine observations"):
        fit(none, method="msgl", **FAST)
    with pytest.raises(TimeError, match="overlap"):
        fit(basin, method="msgl", train=("2001-01-01", "2001-05-01"), test=("2001-04-01", "2001-06-30"), **FAST)
    # A target under another name: the water temperatures it could be are named, not
    # the air's nor the truth's.
    renamed = basin.rename(reach_temp="wtemp")
    with pytest.raises(SchemaError, match=r"needs the target 'reach_temp' .*the dataset has \['wtemp'\] "
                                          r"on \('reach', 'time'\) in units of temperature: if it is the "
                                          r"observed water temperature, rename it \(ds\.rename\(\{'wtemp': "
                                          r"'reach_temp'\}\)\); otherwise add the target or choose"):
        fit(renamed, method="msgl", **FAST)
    with pytest.raises(SchemaError, match=r"needs the target 'seg_temp' .*\(NaN where unobserved\); add "
                                          "it or choose another method$"):
        fit(basin.drop_vars("seg_temp"), method="msgl", **FAST)


def _without_forcings(ds: xr.Dataset, scale: str) -> xr.Dataset:
    """``ds`` without the inputs on (``scale``, time): its static attributes remain."""
    return ds.drop_vars([v for v, da in ds.data_vars.items() if da.dims == (scale, "time")
                         and not str(v).startswith(f"{scale}_temp")])


@pytest.mark.parametrize(("scale", "method", "on"), [
    ("reach", "fine-only", r"\('reach', 'time'\)"), ("reach", "direct", r"\('reach', 'time'\)"),
    ("reach", "progressive", r"\('reach', 'time'\)"), ("reach", "gru", r"\('reach', 'time'\)"),
    ("seg", "remap", r"\('seg', 'time'\)"),
    ("both", "msgl", r"\('seg', 'time'\) or \('reach', 'time'\)"),
])
def test_fit_refuses_a_prediction_that_reads_only_static_inputs(
        basin: xr.Dataset, scale: str, method: str, on: str) -> None:
    # Static attributes alone make the same temperature every day at a node: refused,
    # with the scale's missing forcings named (a fine-only fit without reach forcings
    # was fitted, and its prediction's standard deviation over two water years was at
    # most 0.05 degC at any reach).
    ds = _without_forcings(_without_forcings(basin, "seg"), "reach") if scale == "both" else \
        _without_forcings(basin, scale)
    with pytest.raises(DataError, match=rf"method '{method}' would predict the same temperature "
                                        rf"every day at each {'segment' if scale == 'seg' else 'reach'}"
                                        rf": its inputs \[.*\](?: \(\d+ in all\))? are all static, none on {on}; add daily "
                                        rf"forcings on {on}") as got:
        fit(ds, method=method, **FAST)
    # Where the segments have forcings, MSGL is the way to use them.
    assert ("or use method='msgl', whose fine head reads the segments' forcings "
            "(['seg_air_temp'," in str(got.value)) == (scale == "reach")


def test_msgl_fits_without_reach_forcings_and_warns_without_segment_ones(basin: xr.Dataset) -> None:
    # MSGL's fine head reads the segments' states carried to their reaches, so reach
    # attributes and segment forcings are enough: the prediction follows the days.
    model = fit(_without_forcings(basin, "reach"), method="msgl", seed=0, **FAST)
    assert not any(model.config["variables"]["static"][v] is False
                   for v in model.config["variables"]["reach_vars"])
    pred = _without_forcings(basin, "reach").msgl.downscale(model)
    # (At every reach its day-to-day spread is 0.30-0.48 degC after these two short
    # epochs; with the segments' forcings dropped too it was 0.01-0.09.)
    assert float(pred.std("time").min()) > 0.2
    # A coarse task on static segment inputs alone cannot follow the days: warned of.
    with pytest.warns(xmsgl.exceptions.XmsglWarning,
                      match=r"method 'msgl' trains a coarse task on 'seg_temp' with static segment "
                            r"inputs alone \(\['seg_area', .*none on \('seg', 'time'\)\): it cannot "
                            r"follow the days"):
        fit(_without_forcings(basin, "seg"), method="msgl", **FAST)


def test_empty_or_missing_validation_period(basin: xr.Dataset) -> None:
    # A validation or test period outside the record used to leave fit without
    # held-out days and say nothing.
    for k in ("val", "test"):
        with pytest.raises(TimeError, match=f"{'validation' if k == 'val' else 'test'} period .* holds no day"):
            fit(basin, method="fine-only", train=("2001-01-01", "2001-04-30"),
                **{k: ("2030-01-01", "2030-12-31")}, **FAST)
    with pytest.warns(xmsgl.exceptions.XmsglWarning, match="no validation period"):
        m = fit(basin, method="fine-only", train=("2001-01-01", "2001-04-30"), **{**FAST, "epochs": 1})
    assert m.config["periods"]["val"] == [] and m.history["main"]["val"] == [None]
    # A validation period without fine observations is no better, and said so.
    unobserved = basin.assign(reach_temp=basin.reach_temp.where(basin.time < np.datetime64("2001-05-01")))
    with pytest.warns(xmsgl.exceptions.XmsglWarning, match="validation period .* holds no fine observation"):
        m = fit(unobserved, method="fine-only", train=("2001-01-01", "2001-04-30"),
                val=("2001-05-01", "2001-06-30"), **{**FAST, "epochs": 1})
    assert m.history["main"]["val"] == [None]
    # Baselines choose no checkpoint: no warning for them.
    fit(basin, method="climatology", test=("2001-06-01", "2001-06-30"))


# ----------------------------------------------------------------------- save/load


def test_save_load_round_trip(tmp_path, model: Downscaler, basin: xr.Dataset) -> None:
    path = model.save(tmp_path / "m.xmsgl")
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["weights"]["sha256"] == model.weights_sha256 != model.sha256
    assert {"hyperparameters", "variables", "targets", "graph", "seed", "versions"} <= set(cfg)
    back = xmsgl.load(path)
    assert back.sha256 == model.sha256 and back.method == "msgl"
    a = basin.msgl.downscale(model, device="cpu")
    b = basin.msgl.downscale(path, device="cpu")
    np.testing.assert_array_equal(a.values, b.values)
    # The output says what it was made from: the input's title and source, lazily too.
    assert a.attrs["xmsgl_input_title"] == basin.attrs["title"]
    assert a.attrs["xmsgl_input_source"] == basin.attrs["source"]
    lazy = basin.chunk({"reach": 60}).msgl.downscale(model, device="cpu", lazy=True)
    assert lazy.attrs["xmsgl_input_title"] == basin.attrs["title"]
    bare = basin.copy()
    bare.attrs = {}
    assert not [k for k in bare.msgl.downscale(model, device="cpu").attrs if "input" in k]
    # Saving again over a model replaces it atomically; no temporary folder is left.
    model.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.xmsgl"]


def test_numpy_typed_arguments_give_a_model_that_saves(tmp_path, basin: xr.Dataset) -> None:
    # Numbers as numpy scalars are accepted by fit; the model must then hash, save,
    # load and downscale like any other.
    m = fit(basin, method="msgl", seed=0, **{**FAST, "epochs": 1}, batch_size=np.int64(2),
            weighting="fixed", task_weights={"coarse": np.float32(1), "cross": 1, "fine": np.float64(2)},
            graph_options={"max_hops": np.int64(4)})
    assert isinstance(m.config["hyperparameters"]["batch_size"], int)
    m.save(tmp_path / "np-model")
    back = load(tmp_path / "np-model")
    assert back.sha256 == m.sha256
    assert back.config["graph"]["options"] == {"max_hops": 4}
    pred = basin.msgl.downscale(back)
    assert m.sha256[:12] in pred.attrs["history"]


def test_stage_a_task_named_alone(basin: xr.Dataset) -> None:
    m = fit(basin, method="async-msgl", seed=0, stage_a_tasks="remap", **{**FAST, "epochs": 1})
    assert m.config["stage_a"]["tasks"] == ["remap"]
    with pytest.raises(ParameterError, match=r"stage_a_tasks \['remapp'\]"):
        fit(basin, method="async-msgl", stage_a_tasks="remapp", **FAST)


def test_lengths_stored_as_float32_are_the_same_network(basin: xr.Dataset, model: Downscaler, tmp_path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A netCDF or zarr round trip may store the lengths as float32: the graph is the
    same one (about 1 reach in 500 used to round to another 0.01 m and the model refused
    the dataset); models saved with the first fingerprint version are still compared
    with it."""
    import copy

    from xmsgl.convention import topology_arrays
    from xmsgl.graph import FINGERPRINT_VERSION, _fingerprint, build_graphs

    # Lengths just off a 0.01 m rounding edge, which float32 storage moves across.
    n = basin.sizes["reach"]
    edge = basin.assign(reach_length=basin.reach_length.copy(data=1239.034996786908 + np.arange(n)))
    narrow = edge.assign(reach_length=edge.reach_length.astype("float32"))
    fitted = fit(edge, method="msgl", seed=0, **FAST)
    assert fitted.config["graph"]["fingerprint_version"] == FINGERPRINT_VERSION == 2
    np.testing.assert_allclose(narrow.msgl.downscale(fitted).values,
                               edge.msgl.downscale(fitted).values, atol=1e-4)
    topo = topology_arrays(xmsgl.validate(edge))
    narrow_topo = topology_arrays(xmsgl.validate(narrow))
    options = fitted.config["graph"]["options"]
    assert _fingerprint(topo, options, version=1) != _fingerprint(narrow_topo, options, version=1)
    # A model saved with version 1 (no version recorded) is judged by version 1.
    old = copy.deepcopy(fitted)
    g = old.config["graph"]
    del g["fingerprint_version"]
    g["fingerprint"], g["fingerprint_parts"] = build_graphs(
        xmsgl.validate(edge), **options).fingerprint_of_version(1)
    edge.msgl.downscale(old)
    with pytest.raises(ModelMismatchError, match="reach lengths"):
        narrow.msgl.downscale(old)
    # xmsgl info says which kind of fingerprint it prints (this xmsgl's graphs give another).
    from xmsgl.cli import main

    capsys.readouterr()
    assert main(["info", str(old.save(tmp_path / "v1"))]) == 0
    assert (f"(graph fingerprint {g['fingerprint']}, of the version 1 kind, which graphs of this xmsgl "
            "no longer give)") in capsys.readouterr().out
    assert main(["info", str(fitted.save(tmp_path / "v2"))]) == 0
    assert f"(graph fingerprint {fitted.config['graph']['fingerprint']}); graphs" in capsys.readouterr().out


def test_stale_or_foreign_files_are_refused(tmp_path, model: Downscaler) -> None:
    path = model.save(tmp_path / "m")
    other = Downscaler(model.net, model.config)
    state = {k: v + 1 for k, v in model.net.state_dict().items()}
    torch.save(state, path / "weights.pt")
    with pytest.raises(ModelMismatchError, match="stale or were modified"):
        load(path)
    assert other.method == "msgl"
    (tmp_path / "plain").write_text("x")
    with pytest.raises(XmsglError, match="not an xmsgl model folder"):
        model.save(tmp_path / "plain")
    with pytest.raises(DataError, match="'.*nowhere' does not exist"):
        load(tmp_path / "nowhere")
    # A data file given where the model folder goes (an easy slip on the command line).
    with pytest.raises(DataError, match="'.*plain' is a file, not an xmsgl model folder; give the folder"):
        load(tmp_path / "plain")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no config.json"):
        load(tmp_path / "empty")


# ------------------------------------------------------------------------ baselines


def test_baselines_fit_downscale_save_and_load(tmp_path, tiny_basin: xr.Dataset) -> None:
    from xmsgl.baselines import BaselineModel

    model = tiny_basin.msgl.fit(method="climatology")
    assert isinstance(model, BaselineModel) and model.method == "climatology"
    out = tiny_basin.msgl.downscale(model)
    assert "xmsgl_sources" not in out.attrs
    # An interpolation says that it read the observations of the days it predicts.
    idw = tiny_basin.msgl.downscale(tiny_basin.msgl.fit(method="idw"))
    assert idw.attrs["xmsgl_sources"].startswith("reach_temp and seg_temp of the dataset on every day")
    assert out.dims == ("reach", "time") and out.attrs["units"] == "degC"
    assert out.sizes == {"reach": tiny_basin.sizes["reach"], "time": tiny_basin.sizes["time"]}
    assert bool(np.isfinite(out).all())
    part = tiny_basin.msgl.downscale(model, time=(str(tiny_basin.time[5].values)[:10], None))
    np.testing.assert_array_equal(part.values, out.values[:, 5:])
    with pytest.raises(ParameterError, match="scale='reach'"):
        tiny_basin.msgl.downscale(model, scale="seg")

    path = model.save(tmp_path / "clim")
    back = xmsgl.load(path)
    assert isinstance(back, BaselineModel) and back.method == "climatology"
    # The network loader names the loader that reads it, and no upgrade.
    with pytest.raises(ModelMismatchError, match=r"holds a baseline .*load it with xmsgl.load") as err:
        Downscaler.load(path)
    assert "upgrade" not in str(err.value)
    np.testing.assert_array_equal(tiny_basin.msgl.downscale(path).values, out.values)


def test_baseline_fit_refuses_network_arguments(tiny_basin: xr.Dataset) -> None:
    with pytest.raises(ParameterError, match="'epochs'"):
        fit(tiny_basin, method="climatology", epochs=3)
    with pytest.raises(ParameterError, match="'power'"):
        fit(tiny_basin, method="climatology", power=3.0)
    with pytest.raises(ParameterError, match="'air_window'"):
        fit(tiny_basin, method="msgl", air_window=3)
    with pytest.raises(ParameterError, match="climatology"):
        fit(tiny_basin, method="magic")


def test_fit_is_a_top_level_function() -> None:
    # The documentation writes xmsgl.fit(ds, method, ...), as it writes xmsgl.load(path).
    assert xmsgl.fit is fit and xmsgl.load is xmsgl.model.load
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        xmsgl.fitt  # noqa: B018


def _scripted_fine_tuning(basin: xr.Dataset, scores: list[float], **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """train_tasks on a fitted fine-only network, judged by ``scores`` in turn; returns the
    network's starting weights and the history."""
    import torch

    from xmsgl.convention import REACH
    from xmsgl.model import _rebuild
    from xmsgl.train import make_windows, target_array, train_tasks

    m = fit(basin, method="fine-only", seed=0, **FAST)
    net = m.net
    start = {k: v.clone() for k, v in net.state_dict().items()}
    graphs = basin.msgl.graphs()
    data = _rebuild(m, basin, graphs, torch.device("cpu"), slice(None))
    y = target_array(basin, "reach_temp", REACH)
    y = (y - np.nanmean(y)) / np.nanstd(y)
    queue = list(scores)
    hist = train_tasks(net, data, {"fine_only": y.astype(np.float32)},
                       make_windows([(0, basin.sizes["time"])], 30, 30), val=lambda _: queue.pop(0),
                       epochs=len(scores) - int(kwargs.get("score_start", False)), lr=0.05, device=torch.device("cpu"),
                       rng=np.random.default_rng(0), progress=False, **kwargs)
    return start, {"hist": hist, "net": net}


def test_fine_tuning_keeps_its_starting_weights_when_no_epoch_scores_lower(basin: xr.Dataset) -> None:
    start, out = _scripted_fine_tuning(basin, [0.5, 0.9, 0.7], score_start=True)
    assert out["hist"]["best_epoch"] == 0 and out["hist"]["val_start"] == 0.5
    assert out["hist"]["val"] == [0.9, 0.7]
    for k, v in out["net"].state_dict().items():
        assert torch_equal(v, start[k]), k
    # An epoch that scores lower than the start is kept, as before.
    start, out = _scripted_fine_tuning(basin, [0.5, 0.9, 0.4], score_start=True)
    assert out["hist"]["best_epoch"] == 2
    assert not all(torch_equal(v, start[k]) for k, v in out["net"].state_dict().items())
    # Without score_start the starting weights are not scored.
    start, out = _scripted_fine_tuning(basin, [0.9, 0.7], score_start=False)
    assert out["hist"]["best_epoch"] == 2 and "val_start" not in out["hist"]


def torch_equal(a: Any, b: Any) -> bool:
    import torch

    return bool(torch.equal(a, b))


@pytest.mark.parametrize("method", ["progressive", "async-msgl"])
def test_fine_tuning_methods_score_the_weights_they_start_from(basin: xr.Dataset, method: str) -> None:
    # ASYNC-MSGL's default stage A trains the fine head ("remap-fine").
    m = fit(basin, method=method, seed=0, pretrain_epochs=2, **{**FAST, "epochs": 2})
    main = m.history["main"]
    start = main["val_start"]
    assert start is not None and np.isfinite(start)
    # The stage before trained the head the main stage scores (pseudo-labels, stage A's
    # fine head), and the main stage starts from its checkpoint: the same score.
    prev = m.history["pseudo_labels" if method == "progressive" else "stage_a"]
    assert start == pytest.approx(prev["val"][prev["best_epoch"] - 1], rel=1e-6)
    kept = start if main["best_epoch"] == 0 else main["val"][main["best_epoch"] - 1]
    assert kept == min([start, *main["val"]])


@pytest.mark.parametrize("method, kw", [("msgl", {}), ("direct", {"pretrain_epochs": 1}),
                                        ("async-msgl", {"pretrain_epochs": 1,
                                                        "stage_a_tasks": ("coarse", "remap")})])
def test_a_stage_whose_scored_head_is_untrained_does_not_score_its_start(
        basin: xr.Dataset, method: str, kw: dict[str, Any]) -> None:
    # direct's coarse pretraining and ASYNC-MSGL's stage A without "remap-fine" leave the head the
    # main stage is scored by untrained: its random weights won the checkpoint of small
    # fits, which then returned a model that was never fine-tuned.
    main = fit(basin, method=method, seed=0, **FAST, **kw).history["main"]
    assert "val_start" not in main and main["best_epoch"] >= 1


@pytest.mark.parametrize("seed", [np.int64(2), np.int32(2), np.uint8(2)])
def test_a_numpy_integer_seed_fits_as_the_same_int(basin: xr.Dataset, seed: Any) -> None:
    # for seed in np.arange(3): torch's generator refused the numpy integer (TypeError).
    assert fit(basin, method="fine-only", seed=seed, **FAST).sha256 == \
        fit(basin, method="fine-only", seed=2, **FAST).sha256


@pytest.mark.parametrize("arg", [{"window": 40_000, "stride": 182}, {"attn_window": 4000},
                                 {"hidden": 5000}, {"attn_blocks": 65}])
def test_fit_refuses_sizes_that_load_would_refuse(basin: xr.Dataset, arg: dict[str, int]) -> None:
    # Such a model was fitted and saved, then refused by load as "edited or damaged".
    name = next(iter(arg))
    with pytest.raises(ParameterError, match=rf"{name}={arg[name]} beyond the largest sizes"):
        fit(basin, method="msgl", **{**FAST, **arg})


def test_async_stage_a_trains_on_no_test_day(basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards what stage A reads, not only the period its config records: no target
    # of a test day and no window reaching one.
    import xmsgl.model as model_mod

    seen: list[tuple[str, dict[str, np.ndarray], list[tuple[int, int]]]] = []
    real = model_mod.train_tasks

    def spy(net: Any, data: Any, targets: dict[str, np.ndarray], wins: list[tuple[int, int]],
            **kw: Any) -> Any:
        seen.append((kw.get("stage"), targets, list(wins)))
        return real(net, data, targets, wins, **kw)

    monkeypatch.setattr(model_mod, "train_tasks", spy)
    fit(basin, method="async-msgl", val=("2001-05-16", "2001-05-31"), test=("2001-06-01", "2001-06-30"),
        **{**FAST, "epochs": 1})
    time = pd.DatetimeIndex(basin.time.values)
    first_test = int(np.searchsorted(time, pd.Timestamp("2001-06-01")))
    stage_a = [(t, w) for s, t, w in seen if s == "stage_a"]
    assert stage_a
    for targets, wins in stage_a:
        assert all(s + n <= first_test for s, n in wins)
        for y in targets.values():
            assert not np.isfinite(y[first_test:]).any()


def test_an_input_static_here_but_on_time_at_fit_is_refused(basin: xr.Dataset, model: Downscaler) -> None:
    name = next(v for v in model.features.seg_vars if model.features.static[v] is False)
    flat = basin.assign({name: basin[name].isel(time=0, drop=True)})
    with pytest.raises(ModelMismatchError, match=f"{name}.*static here but was on time.*give it on "
                                                  r"every day \(ds\[.*expand_dims\(time=ds\['time'\], axis=-1\)"):
        flat.msgl.downscale(model)
    # The fix the message gives is one the model takes.
    fixed = flat.assign({name: flat[name].expand_dims(time=flat["time"], axis=-1)})
    assert fixed.msgl.downscale(model).dims == ("reach", "time")
    static = next((v for v in model.features.seg_vars if model.features.static[v]), None)
    if static is not None:
        daily = basin.assign({static: basin[static].expand_dims(time=basin["time"], axis=-1)})
        with pytest.raises(ModelMismatchError, match=rf"{static}.*on time here but was static.*"
                                                      r"isel\(time=0, drop=True\)"):
            daily.msgl.downscale(model)


def test_sparsify_by_reach_keeps_at_least_one_reach(basin: xr.Dataset) -> None:
    observed = int(basin.reach_temp.notnull().any("time").sum())
    assert 0 < observed < 50  # 1% of them rounds to none
    kept = basin.msgl.sparsify(keep=0.01, by="reach", seed=0)
    assert int(kept.reach_temp.notnull().any("time").sum()) == 1


def test_another_seed_gives_other_weights(basin: xr.Dataset, model: Downscaler) -> None:
    import torch

    other = fit(basin, method=model.method, seed=1, **FAST)
    same = fit(basin, method=model.method, seed=0, **FAST)
    a, b, c = (m.net.state_dict() for m in (model, other, same))
    assert any(not torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_fits_and_downscales_alike_whatever_the_callers_torch_modes(half_year_basin, half_year_msgl,
                                                                      tmp_path) -> None:
    # A caller's float64 default dtype made the layers float64 (fit refused its own graph,
    # downscale failed in torch), and a fit inside no_grad or inference_mode failed in
    # backward. Each gives the model of the float32 default with autograd on, and the
    # caller's settings are as they were.
    from tests.conftest import FAST_FIT

    expected = half_year_basin.msgl.downscale(half_year_msgl).values
    gru = fit(half_year_basin, method="gru", seed=0, epochs=1, progress=False)
    gru_expected = half_year_basin.msgl.downscale(gru).values
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = fit(half_year_basin, method="msgl", seed=0, **FAST_FIT)
        assert torch.get_default_dtype() == torch.float64
        assert model.sha256 == half_year_msgl.sha256
        np.testing.assert_array_equal(half_year_basin.msgl.downscale(half_year_msgl).values, expected)
        model.save(tmp_path / "m")
        np.testing.assert_array_equal(half_year_basin.msgl.downscale(load(tmp_path / "m")).values, expected)
        assert all(p.dtype == torch.float32 for p in load(tmp_path / "m").net.parameters())
        again = fit(half_year_basin, method="gru", seed=0, epochs=1, progress=False)
        np.testing.assert_array_equal(half_year_basin.msgl.downscale(again).values, gru_expected)
    finally:
        torch.set_default_dtype(before)
    for mode in (torch.no_grad, torch.inference_mode):
        with mode():
            model = fit(half_year_basin, method="msgl", seed=0, **FAST_FIT)
            assert not torch.is_grad_enabled()
            again = fit(half_year_basin, method="gru", seed=0, epochs=1, progress=False)
        assert model.sha256 == half_year_msgl.sha256
        np.testing.assert_array_equal(half_year_basin.msgl.downscale(again).values, gru_expected)
    # Nor does autocast to half precision (the sparse product failed in bfloat16, and the
    # GRU's prediction too): fits and predictions run in float32 as without it.
    import dask

    scales = {scale: half_year_basin.msgl.downscale(half_year_msgl, scale=scale).values
              for scale in ("seg", "cross")}
    lazy = half_year_basin.msgl.downscale(half_year_msgl, scale="seg", lazy=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model = fit(half_year_basin, method="msgl", seed=0, **FAST_FIT)
        np.testing.assert_array_equal(half_year_basin.msgl.downscale(model).values, expected)
        for scale, values in scales.items():  # the coarse head moved, the cross one failed
            np.testing.assert_array_equal(half_year_basin.msgl.downscale(model, scale=scale).values, values)
        with dask.config.set(scheduler="synchronous"):  # the blocks run in this thread
            np.testing.assert_array_equal(lazy.compute().values, scales["seg"])
        again = fit(half_year_basin, method="gru", seed=0, epochs=1, progress=False)
        np.testing.assert_array_equal(half_year_basin.msgl.downscale(again).values, gru_expected)
        try:
            assert torch.is_autocast_enabled("cpu")
        except TypeError:  # torch before 2.4
            assert torch.is_autocast_cpu_enabled()
    assert model.sha256 == half_year_msgl.sha256
    # Nor does a default device of the caller's ("meta" holds no values: the graphs and
    # the weights were made there, and fit failed to copy out of them).
    torch.set_default_device("meta")
    try:
        model = fit(half_year_basin, method="msgl", seed=0, **FAST_FIT)
        np.testing.assert_array_equal(half_year_basin.msgl.downscale(model).values, expected)
    finally:
        torch.set_default_device(None)
    assert model.sha256 == half_year_msgl.sha256


def test_validation_beside_follows_the_default_split() -> None:
    # A water year that is not whole between validation years validates in both rules
    # (validation_beside trained on it).
    from xmsgl.periods import validation_beside

    t = pd.date_range("1980-10-01", "2012-09-30")
    holed = t[~(((t.month == 12) & (t.year == 2004)) | ((t.month == 1) & (t.year == 2005)))]
    split = split_periods(holed)
    test = np.asarray(holed >= split["test"][0][0])
    assert validation_beside(holed, test) == split["val"] == [("2003-10-01", "2007-09-30")]


def test_min_norm_ties_at_the_scale_of_the_smallest_vector() -> None:
    # A tolerance at the largest vector's scale took a vertex (norm2 1e-8) for a tie with
    # the optimum (norm2 about 0) where the lengths differ by 1e7.
    g = np.array([[1e-4, 0.0], [-1e3, 0.0]])
    alpha = min_norm_weights(g @ g.T)
    assert float(np.linalg.norm(alpha @ g)) ** 2 < 1e-15


def _edited(folder: Any, **changes: Any) -> None:
    """Edit the saved folder's config.json in place (entries set, or removed with None)."""
    cfg_file = folder / "config.json"
    cfg = json.loads(cfg_file.read_text())
    for key, value in changes.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    cfg_file.write_text(json.dumps(cfg))


def test_damaged_or_foreign_settings_are_refused_by_name(model: Downscaler, tmp_path) -> None:
    # A data record that is no dict loaded with a warning and then ended `xmsgl info` in
    # an AttributeError; network sizes that disagree with the ids were printed as the
    # network's; another program's config.json was told to "upgrade xmsgl".
    import shutil

    from xmsgl.cli import main

    saved = model.save(tmp_path / "m")
    cases = {"data": ([1], "the data entry is a list, not a dict"),
             "graph": ({**model.config["graph"], "n_reach": model.config["graph"]["n_reach"] + 3},
                       "counts .* reaches, but lists"),
             # (xmsgl info printed "of the version True kind")
             "graph_version": ({**model.config["graph"], "fingerprint_version": True},
                               "the graph entry needs .* 'fingerprint_version' \\(1 or 2\\)")}
    for key, (value, words) in cases.items():
        broken = tmp_path / f"broken_{key}"
        shutil.copytree(saved, broken)
        _edited(broken, **{key.split("_")[0]: value})
        with pytest.raises(DataError, match=words):
            load(broken)
        assert main(["info", str(broken)]) == 2
    foreign = tmp_path / "project"
    foreign.mkdir()
    (foreign / "config.json").write_text(json.dumps({"name": "my project"}))
    with pytest.raises(DataError, match=r"is not the settings of an xmsgl model \(it has no format entry") as info:
        load(foreign)
    assert "upgrade" not in str(info.value)
    later = tmp_path / "later"
    shutil.copytree(saved, later)
    _edited(later, format="xmsgl-model-v9")
    with pytest.raises(ModelMismatchError, match="upgrade xmsgl"):
        load(later)
    # A baseline's record of its fit, likewise.
    from xmsgl.baselines import fit_baseline

    small = xmsgl.datasets.synthetic_basin(n_segments=3, start="2000-10-01", end="2002-09-30", seed=0)
    clim = fit_baseline(small, "climatology").save(tmp_path / "clim")
    _edited(clim, fit=[1])
    with pytest.raises(DataError, match="fit entry is a list, not a dict"):
        load(clim)
    assert main(["info", str(clim)]) == 2
    odd = tmp_path / "odd"
    (odd / "config.json").mkdir(parents=True)
    with pytest.raises(DataError, match="is a folder, not the model's settings file"):
        load(odd)


def test_a_save_into_a_folder_that_cannot_be_written_is_refused_first(model: Downscaler, tmp_path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # A read-only folder gave a bare PermissionError naming a hidden temporary folder.
    import xmsgl.io as xio

    monkeypatch.setattr(xio, "_unwritable", lambda folder: "Read-only file system")
    with pytest.raises(ParameterError, match=r"path '.*ro/m' cannot be written \(Read-only file system"):
        model.save(tmp_path / "ro" / "m")
    assert not (tmp_path / "ro").exists()
    # A file above the path is named as such, as the other writers name it.
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ParameterError, match="'.*afile' is a file, not a folder"):
        model.save(tmp_path / "afile" / "sub" / "m")


def test_two_saves_of_one_model_at_once_both_succeed(model: Downscaler, tmp_path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # The save whose rename came second was told its write "was not kept", though the
    # folder held the very model it saved; another model there is still an error.
    import errno

    import xmsgl.io as xio

    path = model.save(tmp_path / "m")
    cause: list[BaseException] = [OSError(errno.ENOTEMPTY, "Directory not empty")]

    def other_writer_first(old: Any, tmp: Any, final: Any, *args: Any, **kwargs: Any) -> Any:
        # The rename found the other writer's folder in place.
        xio._discard(tmp, kwargs.get("made") or [])
        raise xio._lost_race(final) from cause[0]

    monkeypatch.setattr(xio, "_commit", other_writer_first)
    assert model.save(path) == path and load(path).sha256 == model.sha256
    # Not for another failure (an interruption, a refused check), nor for a folder that
    # holds the same settings without their weights.
    cause[0] = KeyboardInterrupt()
    with pytest.raises(XmsglError, match="was taken while this write was under way"):
        model.save(path)
    cause[0] = OSError(errno.ENOTEMPTY, "Directory not empty")
    (path / "weights.pt").rename(tmp_path / "weights.pt")
    with pytest.raises(XmsglError, match="was taken while this write was under way"):
        model.save(path, overwrite=True)
    (tmp_path / "weights.pt").rename(path / "weights.pt")
    _edited(path, seed=12345)  # now another model's settings
    with pytest.raises(XmsglError, match="was taken while this write was under way"):
        model.save(path, overwrite=True)


def _folder_files(tag: str) -> dict[str, bytes]:
    """The files of a saved model's folder, ``tag`` in its settings and as its weights."""
    return {"config.json": json.dumps({"format": "xmsgl-model", "tag": tag}).encode(),
            "weights.pt": tag.encode()}


def _put_folder(path: Any, tag: str) -> None:
    """Write :func:`_folder_files` into the new folder ``path``."""
    path.mkdir()
    for name, data in _folder_files(tag).items():
        (path / name).write_bytes(data)


@pytest.mark.parametrize("swap", [True, False])
@pytest.mark.parametrize("as_errors", [False, True])
def test_ctrl_c_while_another_save_lands_stays_an_interruption(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                               swap: bool, as_errors: bool) -> None:
    # A Ctrl-C while the old folder was out of the path (swapped with the new one in one
    # step, or moved aside where that cannot be done), with another save of the same
    # model landing meanwhile, became "written by another writer" or "the check ...
    # failed" (XmsglErrors: the command line's exit 2, not 130), and for a moment a
    # success. The old folder, not yet checked, is kept and named, never deleted.
    import os
    import warnings

    import xmsgl.io as xio

    final = tmp_path / "m"
    _put_folder(final, "M")
    real_refuse = xio._refuse_model_folder

    def other_save_then_ctrl_c(f: Any, what: str, found: Any = None) -> None:
        real_refuse(f, what, found)
        if found is not None:  # the check of the old folder, out of the path
            if swap:
                os.rename(final, tmp_path / "gone")  # the other writer's swap ...
            _put_folder(final, "M")  # ... puts its (same) model there
            raise KeyboardInterrupt

    if not swap:
        monkeypatch.setattr(xio, "_RENAMEAT2", [None])  # no one-step swap here
    monkeypatch.setattr(xio, "_refuse_model_folder", other_save_then_ctrl_c)
    # With warnings as errors (python -W error), the interruption still comes out, the
    # words on its notes (Python 3.11 and later).
    with warnings.catch_warnings(record=True) as said, pytest.raises(KeyboardInterrupt) as stopped:
        warnings.simplefilter("error" if as_errors else "always")
        xio.write_model_folder(final, _folder_files("M"), same=lambda cfg: cfg.get("tag") == "M")
    assert json.loads((final / "config.json").read_text())["tag"] == "M"
    kept = [p for p in tmp_path.iterdir() if p.name.endswith(".old")]
    assert len(kept) == 1 and (kept[0] / "weights.pt").read_bytes() == b"M"
    told = [str(w.message) for w in said] + list(getattr(stopped.value, "__notes__", []))
    assert any(str(kept[0]) in text for text in told) or (as_errors and not hasattr(stopped.value, "add_note"))


def test_a_saved_folder_counts_whole_only_with_its_files_alone(tmp_path) -> None:
    import xmsgl.io as xio

    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("config.json", "weights.pt"):
        (folder / name).write_text("x")
    cfg = {"format": "xmsgl-model"}
    assert xio._complete_saved_folder(folder, cfg)
    (folder / "extra").mkdir()
    assert not xio._complete_saved_folder(folder, cfg)
    (folder / "extra").rmdir()
    (folder / "weights.pt").unlink()
    assert not xio._complete_saved_folder(folder, cfg)
    # A link to nothing above an output path is named (a bare FileExistsError came out).
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(ParameterError, match="'.*dangling' is a symbolic link to '.*nowhere', which does not exist"):
        xio.output_path(tmp_path / "dangling" / "m")


@pytest.mark.parametrize("swap_available", [True, False])
def test_an_old_link_put_back_never_replaces_what_a_user_wrote_meanwhile(
        tmp_path, monkeypatch: pytest.MonkeyPatch, swap_available: bool) -> None:
    # Where an old entry (a link to a saved folder) was moved aside, a file the user
    # wrote at the path meanwhile was renamed over when the link was put back: deleted
    # unseen, and with the same model's settings the save even reported success.
    import xmsgl.io as xio

    target = tmp_path / "target"
    _put_folder(target, "OLD")
    final = tmp_path / "m"
    final.symlink_to(target)
    real_refuse = xio._refuse_model_folder

    def user_writes_meanwhile(f: Any, what: str, found: Any = None) -> None:
        real_refuse(f, what, found)
        if found is not None:  # the old link is aside
            final.write_text("USER DATA")

    # The one-step swap is never used here (the move-aside branch); the put-back tries
    # renameat2's no-replace where there is one, a link and unlink where not.
    monkeypatch.setattr(xio, "_exchange", lambda a, b: False)
    if not swap_available:
        monkeypatch.setattr(xio, "_RENAMEAT2", [None])
    monkeypatch.setattr(xio, "_refuse_model_folder", user_writes_meanwhile)
    with pytest.raises(XmsglError, match="was taken while this write was under way"):
        xio.write_model_folder(final, _folder_files("NEW"), same=lambda cfg: True)
    assert not final.is_symlink() and final.read_text() == "USER DATA"
    assert (target / "weights.pt").read_text() == "OLD"


def test_an_old_entry_that_cannot_be_put_back_is_kept_not_deleted(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Where the put-back failed for another reason than a taken path (no hard links on
    # the file system, a link another user owns), the old entry was deleted as if
    # another writer had taken the path, or said to be replaced by one.
    import errno
    import os

    import xmsgl.io as xio

    target = tmp_path / "target"
    _put_folder(target, "OLD")
    link = tmp_path / "link"
    link.symlink_to(target)
    # Without renameat2 and without hard links, the link goes back by a rename.
    monkeypatch.setattr(xio, "_RENAMEAT2", [None])
    real_link = os.link

    def no_hard_links(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_hard_links)
    back = tmp_path / "back"
    xio._put_back(link, back)
    assert back.is_symlink() and os.readlink(back) == str(target) and not os.path.lexists(link)
    # A file the user wrote at the path, even just as the link went back (after a look
    # at the path found it free), stays: the link is made again, never renamed over it.
    taken = tmp_path / "taken"
    taken.write_text("USER DATA")
    real_lexists = os.path.lexists
    monkeypatch.setattr(os.path, "lexists", lambda p: False if str(p) == str(taken) else real_lexists(p))
    with pytest.raises(FileExistsError):
        xio._put_back(back, taken)
    monkeypatch.setattr(os.path, "lexists", real_lexists)
    assert taken.read_text() == "USER DATA" and back.is_symlink()
    monkeypatch.setattr(os, "link", real_link)
    # And where it cannot go back at all, it is kept under its hidden name and named.
    final = tmp_path / "m"
    final.symlink_to(target)
    real_refuse = xio._refuse_model_folder

    def user_writes_meanwhile(f: Any, what: str, found: Any = None) -> None:
        real_refuse(f, what, found)
        if found is not None:
            final.write_text("USER DATA")

    def cannot(old: Any, to: Any) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(xio, "_exchange", lambda a, b: False)
    monkeypatch.setattr(xio, "_refuse_model_folder", user_writes_meanwhile)
    monkeypatch.setattr(xio, "_put_back", cannot)
    with pytest.raises(XmsglError, match=r"could not be put back \(Operation not permitted\): it is kept at") as err:
        xio.write_model_folder(final, _folder_files("NEW"), same=lambda cfg: True)
    kept = [p for p in tmp_path.iterdir() if p.name.endswith(".old")]
    assert len(kept) == 1 and kept[0].is_symlink() and str(kept[0]) in str(err.value)
    assert final.read_text() == "USER DATA" and (target / "weights.pt").read_text() == "OLD"
