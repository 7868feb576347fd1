"""Bad arguments of the evaluation tools are typed errors that say what to give instead."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl
from xmsgl.evaluate import cross_validate, plot_sparsity, sparsity_sweep, variance_decomposition
from xmsgl.explain import plot_energy, plot_explain


@pytest.fixture(scope="module")
def basin() -> xr.Dataset:
    return xmsgl.datasets.synthetic_basin(n_segments=6, start="2000-10-01", end="2002-09-30", seed=4,
                                          reach_obs_share=0.3)


def _constant(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> dict[str, float]:
    return {"rmse": 1.0 + 0.1 * seed + 0.01 * int(test_ds.attrs["fold"])}


def test_sweep_takes_a_single_method_and_share(basin: xr.Dataset) -> None:
    sw = sparsity_sweep(basin, "idw", keep=0.5, seeds=[0])
    assert sw.method.values.tolist() == ["idw"] and sw.keep.values.tolist() == [0.5]
    assert np.isfinite(sw.rmse.values).all()


def test_sweep_gives_shared_fit_kwargs_to_every_method_beside_their_own(
        basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """{'idw': {...}, 'window': 21}: both methods get the window, idw its own power too,
    and its own window wins (a method key used to make the shared keys vanish, the
    methods running on defaults)."""
    import xmsgl.baselines as baselines

    seen: dict[str, dict] = {}
    fit_baseline = baselines.fit_baseline

    def spy(ds: xr.Dataset, method: str, **kw: object) -> object:
        seen[method] = {k: v for k, v in kw.items() if k not in ("train", "seed")}
        return fit_baseline(ds, method, **kw)

    monkeypatch.setattr(baselines, "fit_baseline", spy)
    sparsity_sweep(basin, ["climatology", "idw"], keep=[1.0], seeds=[0],
                   fit_kwargs={"idw": {"power": 3.0}, "window": 21})
    assert seen == {"climatology": {"window": 21}, "idw": {"power": 3.0, "window": 21}}
    sparsity_sweep(basin, ["climatology", "idw"], keep=[1.0], seeds=[0],
                   fit_kwargs={"idw": {"window": 15}, "window": 21})
    assert seen == {"climatology": {"window": 21}, "idw": {"window": 15}}
    with pytest.raises(xmsgl.ParameterError, match=r"settings for \['msgl'\].*not among"):
        sparsity_sweep(basin, ["idw"], keep=[1.0], seeds=[0], fit_kwargs={"msgl": {"epochs": 1}})


def test_sweep_refuses_an_argument_one_method_does_not_read_before_any_fit(
        basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    import xmsgl.sampling

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the sweep started before the arguments were checked")

    monkeypatch.setattr(xmsgl.sampling, "sparsify", never)
    # A method's own setting it does not read: said before msgl's fits, not after them.
    with pytest.raises(xmsgl.ParameterError, match=r"fit_kwargs\['fine-only'\] has settings "
                                                   r"\['weighting'\] that method 'fine-only' does not read"):
        sparsity_sweep(basin, ["msgl", "fine-only"], keep=[0.5], seeds=[0],
                       fit_kwargs={"epochs": 1, "fine-only": {"weighting": "equal"}})
    with pytest.raises(xmsgl.ParameterError, match=r"fit_kwargs\['idw'\] has settings \['epochs'\].*"
                                                   r"it takes \['window', 'min_count', 'power', 'd_min'\]"):
        sparsity_sweep(basin, ["msgl", "idw"], keep=[0.5], seeds=[0], fit_kwargs={"idw": {"epochs": 1}})
    # A setting for every method that none of them reads.
    with pytest.raises(xmsgl.ParameterError, match=r"settings \['power', 'pretrain_epochs'\] are read "
                                                   r"by none of the methods \['msgl', 'climatology'\]"):
        sparsity_sweep(basin, ["msgl", "climatology"], keep=[0.5], seeds=[0],
                       fit_kwargs={"epochs": 1, "pretrain_epochs": 2, "power": 3.0})


def test_sweep_gives_a_shared_setting_to_the_methods_that_read_it(
        basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """epochs and weighting go to msgl, not to fine-only (weighting) nor to climatology
    (either): a sweep of networks against baselines with a shared epochs used to stop at
    the first baseline, after the networks before it had been fitted."""
    import xmsgl.baselines as baselines
    import xmsgl.model

    seen: dict[str, dict] = {}
    fit, fit_baseline = xmsgl.model.fit, baselines.fit_baseline

    def spy_fit(ds: xr.Dataset, method: str, **kw: object) -> object:
        seen[method] = {k: v for k, v in kw.items() if k in ("epochs", "weighting", "min_count")}
        return fit(ds, method=method, **kw)

    def spy_baseline(ds: xr.Dataset, method: str, **kw: object) -> object:
        seen[method] = {k: v for k, v in kw.items() if k not in ("train", "seed")}
        return fit_baseline(ds, method, **kw)

    monkeypatch.setattr(xmsgl.model, "fit", spy_fit)
    monkeypatch.setattr(baselines, "fit_baseline", spy_baseline)
    sw = sparsity_sweep(basin, ["msgl", "fine-only", "climatology"], keep=[1.0], seeds=[0],
                        fit_kwargs={"epochs": 1, "weighting": "equal", "min_count": 2, "hidden": 4})
    assert seen == {"msgl": {"epochs": 1, "weighting": "equal"}, "fine-only": {"epochs": 1},
                    "climatology": {"min_count": 2}}
    assert np.isfinite(sw.rmse.values).all()
    assert json.loads(sw.attrs["fit_kwargs"])["climatology"] == {"min_count": 2}


@pytest.mark.parametrize("kwargs, match", [
    ({"methods": ["idw", "idw"]}, "repeats \\['idw'\\]"),
    ({"keep": [0.5, 0.5]}, "repeats \\[0.5\\]"),
    ({"keep": "0.5"}, "keep='0.5'"),
    ({"keep": [1.5]}, "in \\[0, 1\\]"),
    ({"keep": [True]}, "keep="),
    ({"methods": []}, "methods is empty"),
    ({"methods": [3]}, "method names"),
    ({"seeds": 2.5}, "seeds=2.5"),
    ({"seeds": [0, -1]}, "seeds="),
])
def test_sweep_refuses_bad_lists(basin: xr.Dataset, kwargs: dict, match: str) -> None:
    args = {"methods": "climatology", "keep": [1.0], "seeds": [0], **kwargs}
    with pytest.raises(xmsgl.ParameterError, match=match):
        sparsity_sweep(basin, **args)


def test_a_sweep_whose_test_period_covers_the_record_says_so(basin: xr.Dataset) -> None:
    # It was refused by sparsify, which named its own period=[] (nothing left to thin).
    whole = ("2000-10-01", "2002-09-30")
    with pytest.raises(xmsgl.DataError, match=r"test=\('2000-10-01', '2002-09-30'\) covers every day "
                       r"of the dataset \(2000-10-01 to 2002-09-30\), which leaves none to train on"):
        sparsity_sweep(basin, "climatology", keep=[1.0], seeds=[0], test=whole)


def test_a_sweep_whose_test_period_has_no_observation_names_it_and_the_fix(basin: xr.Dataset) -> None:
    # It said "the test period holds no 'reach_temp' value; nothing to score" alone.
    blank = basin.drop_vars(["reach_temp_true", "seg_temp_true"])
    blank["reach_temp"] = blank["reach_temp"].where(blank["time"] < np.datetime64("2002-04-01"))
    with pytest.raises(xmsgl.DataError, match=r"the test period \(2002-04-01 to 2002-09-30\) holds no "
                       r"'reach_temp' value; nothing to score: give test=\(start, end\) on days with "
                       r"observations \('reach_temp' has values from 2000-10-\d\d to 2002-03-\d\d\)$"):
        sparsity_sweep(blank, "climatology", keep=[1.0], seeds=[0], test=("2002-04-01", "2002-09-30"))
    from xmsgl.cli import _cli_words

    with pytest.raises(xmsgl.DataError) as err:
        sparsity_sweep(blank, "climatology", keep=[1.0], seeds=[0], test=("2002-04-01", "2002-09-30"))
    assert "give --test START END on days with observations" in _cli_words(str(err.value), "evaluate")


@pytest.mark.parametrize("kwargs, match", [
    ({"folds": 2.0}, "folds=2.0"),
    ({"folds": 1}, "folds=1"),
    ({"repeats": 0}, "repeats=0"),
    ({"repeats": 1.5}, "repeats=1.5"),
    ({"blocking": "segment"}, "blocking='segment'"),
])
def test_cross_validate_refuses_bad_counts(basin: xr.Dataset, kwargs: dict, match: str) -> None:
    args = {"folds": 2, "repeats": 1, "seeds": 2, "blocking": "water_year", **kwargs}
    with pytest.raises(xmsgl.ParameterError, match=match):
        cross_validate(basin, "fake", trainer=_constant, **args)


def test_reach_blocking_without_observations_says_what_is_needed(basin: xr.Dataset) -> None:
    empty = basin.assign(reach_temp=basin.reach_temp * np.nan)
    with pytest.raises(xmsgl.DataError, match="needs observations to hold out") as err:
        cross_validate(empty, "fake", folds=2, repeats=1, seeds=2, blocking="reach", trainer=_constant)
    assert "folds <= 0" not in str(err.value)


def test_cross_validate_refuses_an_unknown_method_before_judging_the_data(basin: xr.Dataset) -> None:
    # Without fine observations a fold's data check used to fail first and blame the data.
    empty = basin.assign(reach_temp=basin.reach_temp * np.nan)
    for ds in (basin, empty):
        with pytest.raises(xmsgl.ParameterError, match="method='nonsense' is not known"):
            cross_validate(ds, "nonsense", folds=2, repeats=1, seeds=2, blocking="subbasin")


@pytest.mark.parametrize("kwargs, match", [
    ({"ci": 1.5}, "ci=1.5"),
    ({"ci": 0.0}, "ci=0.0"),
    ({"ci": "95%"}, "ci='95%'"),
    ({"n_boot": 0}, "n_boot=0"),
    ({"n_boot": -5}, "n_boot=-5"),
    ({"n_boot": 2.5}, "n_boot=2.5"),
])
def test_variance_decomposition_refuses_bad_bootstrap(kwargs: dict, match: str) -> None:
    y = xr.DataArray(np.random.default_rng(0).normal(size=(6, 3)), dims=("partition", "seed"))
    with pytest.raises(xmsgl.ParameterError, match=match):
        variance_decomposition(y, **kwargs)


def test_plot_sparsity_needs_a_sweep_result(basin: xr.Dataset) -> None:
    cv = cross_validate(basin, "fake", folds=2, repeats=1, seeds=2, blocking="water_year",
                        trainer=_constant)
    with pytest.raises(xmsgl.SchemaError, match="needs the result of sparsity_sweep"):
        plot_sparsity(cv)


def test_plot_sparsity_draws_a_share_of_zero() -> None:
    """keep=0 (no fine observation, often the worst point) used to fall off the log axis."""
    pytest.importorskip("matplotlib")
    res = xr.Dataset({"rmse": (("method", "keep", "seed"), np.array([[[3.0], [1.5], [1.0]]]),
                               {"units": "degC"})},
                     coords={"method": ["idw"], "keep": [0.0, 0.1, 1.0], "seed": [0]})
    ax = plot_sparsity(res).axes[0]
    assert ax.get_xscale() == "symlog"
    lo, hi = ax.get_xlim()
    assert lo <= 0.0 < 1.0 <= hi
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [0.0, 0.1, 1.0])
    assert plot_sparsity(res.isel(keep=[1, 2])).axes[0].get_xscale() == "log"


def test_plot_sparsity_band_is_the_seeds_sample_deviation() -> None:
    pytest.importorskip("matplotlib")
    res = xr.Dataset({"rmse": (("method", "keep", "seed"), np.array([[[1.0, 3.0], [2.0, 2.0]]]),
                               {"units": "degC"})},
                     coords={"method": ["idw"], "keep": [0.1, 1.0], "seed": [0, 1]})
    band = plot_sparsity(res).axes[0].collections[0].get_paths()[0].vertices
    # Mean 2 at keep 0.1, sample sd sqrt(2) (ddof=0 would give 1): the band spans 2 +- 1.414.
    assert band[:, 1].min() == pytest.approx(2 - 2 ** 0.5) and band[:, 1].max() == pytest.approx(2 + 2 ** 0.5)


def test_explain_refuses_bad_bins(basin: xr.Dataset) -> None:
    pytest.importorskip("torch")
    from xmsgl.explain import explain

    for bad in ("x", 2.7, True, 1):
        with pytest.raises(xmsgl.ParameterError, match="n_bins="):
            explain(object(), basin, n_bins=bad)  # type: ignore[arg-type]


def _fake_explain(basin: xr.Dataset, layers: int = 2) -> xr.Dataset:
    """A Dataset shaped like an explain() result (the plots read nothing else)."""
    ids = basin.reach.values
    n = ids.size
    graphs = ["hydro", "geo", "dynamic"]
    return xr.Dataset(
        {
            "dirichlet_energy": (("depth", "graph"), np.ones((layers + 1, 3))),
            "dirichlet_energy_normalized": (("depth", "graph"), np.ones((layers + 1, 3))),
            "share_upstream": (("layer", "graph", "reach"), np.full((layers, 3, n), 0.5)),
            "top_neighbour": (("layer", "graph", "reach"),
                              np.broadcast_to(np.roll(ids, 1), (layers, 3, n)).copy()),
        },
        coords={"depth": np.arange(layers + 1), "layer": np.arange(1, layers + 1), "graph": graphs,
                "reach": ids, "reach_pos_x": ("reach", basin.reach_x.values),
                "reach_pos_y": ("reach", basin.reach_y.values)},
    )


def test_explain_plots_refuse_what_they_cannot_draw(basin: xr.Dataset) -> None:
    import matplotlib.pyplot as plt

    ex = _fake_explain(basin)
    plt.close(plot_explain(ex, basin))
    other = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-01-10", seed=9)
    with pytest.raises(xmsgl.DataError, match="pass the dataset explain\\(\\) ran on"):
        plot_explain(ex, other)
    with pytest.raises(xmsgl.ParameterError, match="layers=0"):
        plot_explain(_fake_explain(basin, layers=0))
    with pytest.raises(xmsgl.ParameterError, match="layer=5"):
        plot_explain(ex, layer=5)
    with pytest.raises(xmsgl.ParameterError, match="'top_neighbour' holds reach ids, .* colour by 'top_share'"):
        plot_explain(ex, variable="top_neighbour")
    with pytest.raises(xmsgl.SchemaError, match="needs a result of explain"):
        plot_explain(basin)
    fig = plot_energy([ex, ex])
    assert len(fig.axes[0].get_lines()) == 6
    # Depths are whole layers: no tick at 0.5 or 1.5; and the figure says what it shows.
    fig.canvas.draw()
    ticks = [t for t in fig.axes[0].get_xticks() if fig.axes[0].get_xlim()[0] <= t <= fig.axes[0].get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert fig.axes[0].get_title() == "Dirichlet energy of the embeddings by depth (normalized)"
    plt.close(fig)
    with pytest.raises(xmsgl.SchemaError, match="result '0'"):
        plot_energy([basin])
    with pytest.raises(xmsgl.ParameterError, match="results must be"):
        plot_energy("ex")  # type: ignore[arg-type]
    plt.close("all")


def test_empty_holdouts_are_refused_before_any_training(basin: xr.Dataset) -> None:
    from xmsgl.evaluate import cv_partitions

    # Observations only in the first fold's sub-basins, and no truth: the second fold
    # has nothing to score, which must be known before the first fold is trained.
    first = cv_partitions(basin, folds=2, repeats=1, blocking="subbasin")[0]
    obs = basin.drop_vars([v for v in basin.data_vars if str(v).endswith("_true")])
    obs = obs.assign(reach_temp=obs.reach_temp.where(xr.DataArray(first.reaches, dims="reach")))
    calls: list[int] = []

    def trainer(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> float:
        calls.append(seed)
        return 1.0

    with pytest.raises(xmsgl.DataError, match="fold 1 .*has no 'reach_temp' value; the holdout is empty"):
        cross_validate(obs, "fake", folds=2, repeats=1, seeds=2, blocking="subbasin", trainer=trainer)
    assert calls == []


def test_evaluation_arguments_are_checked_before_work(basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    import xmsgl.evaluate as ev
    from xmsgl.metrics import hot_mask

    # An unknown score is refused before the default trainer fits anything.
    calls = []
    monkeypatch.setattr(ev, "default_trainer", lambda *a, **k: calls.append(1) or _constant)
    with pytest.raises(xmsgl.ParameterError, match="score='RMSE'"):
        cross_validate(basin, "climatology", folds=2, repeats=1, seeds=1, score="RMSE")
    assert calls == []
    truth = basin.reach_temp_true
    with pytest.raises(xmsgl.ParameterError, match="hot='bogus'"):
        xmsgl.evaluate.evaluate(truth, truth, hot="bogus")  # refused even without by='hot'
    days = truth.assign_coords(time=np.arange(truth.sizes["time"]))
    with pytest.raises(xmsgl.exceptions.SchemaError, match="by='season' needs dates"):
        xmsgl.evaluate.evaluate(days, days, by="season")
    with pytest.raises(xmsgl.ParameterError, match="quantile=1.5"):
        hot_mask(truth, quantile=1.5)


def test_decomposition_refuses_a_sweep(basin: xr.Dataset) -> None:
    scores = xr.DataArray(np.arange(12.0).reshape(2, 3, 2), dims=("method", "keep", "seed"), name="rmse")
    with pytest.raises(xmsgl.exceptions.SchemaError, match=r"select one value of \['method', 'keep'\]"):
        variance_decomposition(scores, n_boot=10)


def test_a_sweep_on_a_short_record_says_what_it_scores(basin: xr.Dataset) -> None:
    # Two water years: the default test period is the last 15% of the days (a summer),
    # and with baselines alone no fit said so.
    with pytest.warns(xmsgl.ShortRecordWarning, match=r"holds 2 whole water year\(s\).*scores the last "
                                                      r"15% of its days \(2002-06-13 to 2002-09-30\)"):
        sw = sparsity_sweep(basin, ["climatology"], keep=[1.0], seeds=[0])
    assert json.loads(sw.attrs["test_period"]) == [["2002-06-13", "2002-09-30"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sparsity_sweep(basin, ["climatology"], keep=[1.0], seeds=[0], test=("2002-04-01", "2002-09-30"))


def test_a_short_record_is_said_once_by_a_sweep_and_still_by_cross_validation(basin: xr.Dataset) -> None:
    fit = {"epochs": 1, "window": 60, "stride": 60, "hidden": 4}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        sparsity_sweep(basin, ["fine-only", "climatology"], keep=[1.0], seeds=[0],
                       fit_kwargs={"fine-only": fit})
    short = [w for w in seen if issubclass(w.category, xmsgl.ShortRecordWarning)]
    assert len(short) == 1 and "the sweep scores" in str(short[0].message)
    # Cross-validation by sub-basin fits on every day but the last whole water year,
    # its validation period: no short-record warning on two water years ...
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cv = cross_validate(basin, "fine-only", folds=2, repeats=1, seeds=[0], fit_kwargs=fit)
    assert not any(issubclass(w.category, xmsgl.ShortRecordWarning) for w in seen)
    assert set(cv.val_period.values.ravel()) == {'[["2001-10-01", "2002-09-30"]]'}
    # ... and on less than two, it validates on the last 15% of the days, as fit's split
    # of a short record counts them, and trains on all the others (fit split the record
    # itself, and left its last 15% of days, its test days, unread).
    short_basin = basin.isel(time=slice(0, 550))
    cv = cross_validate(short_basin, "fine-only", folds=2, repeats=1, seeds=[0], fit_kwargs=fit)
    last = [str(d)[:10] for d in short_basin.time.values[[550 - 82, -1]]]
    assert set(cv.val_period.values.ravel()) == {f'[["{last[0]}", "{last[1]}"]]'}


FAST = {"epochs": 1, "window": 60, "stride": 60, "hidden": 4}


@pytest.fixture()
def fits(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The keyword arguments of every fit the default trainer runs."""
    import xmsgl.model

    seen: list[dict] = []
    real = xmsgl.model.fit

    def spy(ds, method="msgl", **kw):
        if ds is not xmsgl.model._ARGUMENTS_ONLY:
            seen.append({"method": method, **kw})
        return real(ds, method=method, **kw)

    monkeypatch.setattr(xmsgl.model, "fit", spy)
    return seen


@pytest.fixture(scope="module")
def three_years() -> xr.Dataset:
    return xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2003-09-30", seed=4,
                                          reach_obs_share=0.3)


def test_a_sweep_on_a_short_record_given_its_test_days_validates_beside_them(
        basin: xr.Dataset, fits: list[dict]) -> None:
    # On two years (the Delaware files' length) with --test, no whole water year was free
    # beside the test: the networks fitted without validation, with a warning whose
    # advice (a longer record) could not be followed.
    end = str(basin.time.values[-1])[:10]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="no validation period")
        sparsity_sweep(basin, ["fine-only"], keep=[1.0], seeds=[0], fit_kwargs={"fine-only": FAST},
                       test=("2002-06-01", end))
    n = basin.sizes["time"]
    n_val = n * 17 // 20 - n * 7 // 10
    days = [str(d)[:10] for d in basin.time.values]
    first_test = days.index("2002-06-01")
    assert [f["val"] for f in fits] == [[(days[first_test - n_val], days[first_test - 1])]]


def test_a_sweep_given_a_validation_period_still_hides_its_scored_days_from_the_fit(
        three_years: xr.Dataset, fits: list[dict]) -> None:
    # With val= and no test=, fit used to train on every other day, the scored year
    # included (ASYNC-MSGL's stage A read a longer coarse record there).
    sw = sparsity_sweep(three_years, ["fine-only"], keep=[1.0], seeds=[0],
                        fit_kwargs={**FAST, "val": ("2001-10-01", "2002-09-30")})
    scored = [tuple(p) for p in json.loads(sw.attrs["test_period"])]
    assert scored == [("2002-10-01", "2003-09-30")]
    assert [f["test"] for f in fits] == [scored]
    # Without a period of its own, fit splits the record by itself: the same days.
    fits.clear()
    sparsity_sweep(three_years, ["fine-only"], keep=[1.0], seeds=[0], fit_kwargs=FAST)
    assert "test" not in fits[0] and "val" not in fits[0]
    # No fit_kwargs at all: fit's defaults (remap's coarse network is small enough here).
    fits.clear()
    sw = sparsity_sweep(three_years, ["remap"], keep=[1.0], seeds=[0])
    assert np.isfinite(sw.rmse).all() and fits[0]["method"] == "remap"
    assert json.loads(sw.attrs["fit_kwargs"]) == {"remap": {}}  # fit's defaults, recorded


def test_sweeps_refuse_a_bad_setting_or_method_before_the_first_fit(
        three_years: xr.Dataset, fits: list[dict]) -> None:
    cases = [
        ({"fine-only": {**FAST, "epochs": 0}}, ["msgl", "fine-only"], xmsgl.ParameterError, "epochs"),
        ({"async-msgl": {**FAST, "stage_a_tasks": ("coarse", "bogus")}}, ["msgl", "async-msgl"],
         xmsgl.ParameterError, "bogus"),
        ({"async-msgl": {**FAST, "stage_a_variable": "seg_nope"}}, ["msgl", "async-msgl"],
         xmsgl.SchemaError, "seg_nope"),
        (FAST, ["msgl", "fine_only"], xmsgl.ParameterError, r"methods \['fine_only'\] are not known"),
        ({**FAST, "seed": 3}, ["msgl"], xmsgl.ParameterError, r"sets \['seed'\].*seeds="),
        ({"msgl": {**FAST, "method": "remap"}}, ["msgl"], xmsgl.ParameterError, "methods="),
        ({**FAST, "test": ("2002-10-01", "2003-09-30")}, ["msgl"], xmsgl.ParameterError, "test="),
        ({"direct": {"weighting": "equal"}}, ["msgl", "direct"], xmsgl.ParameterError,
         r"weighting is read by \['msgl'"),
        # The per-reach GRU's values too, not only its names.
        ({"gru": {"epochs": 0}}, ["msgl", "gru"], xmsgl.ParameterError, "epochs"),
        ({"gru": {"window": 100, "stride": 200}}, ["msgl", "gru"], xmsgl.ParameterError, "stride"),
        ({"gru": {"lr": -1.0}}, ["msgl", "gru"], xmsgl.ParameterError, "lr"),
    ]
    for kwargs, methods, error, match in cases:
        with pytest.raises(error, match=match):
            sparsity_sweep(three_years, methods, keep=[1.0], seeds=[0], fit_kwargs=kwargs)
    with pytest.raises(xmsgl.ParameterError, match="must be a mapping"):
        sparsity_sweep(three_years, ["msgl"], keep=[1.0], seeds=[0], fit_kwargs=[("epochs", 1)])
    # Cross-validation of the GRU: refused before the first fold's fit.
    with pytest.raises(xmsgl.ParameterError, match="hidden"):
        cross_validate(three_years, "gru", folds=2, repeats=1, fit_kwargs={"hidden": 0})
    assert fits == []


def test_a_share_that_leaves_no_training_observation_is_refused_before_the_first_fit(
        three_years: xr.Dataset, fits: list[dict]) -> None:
    with pytest.raises(xmsgl.DataError, match=r"keep=0, seed=0 leaves no fine observation.*"
                                              r"\['msgl'\]"):
        sparsity_sweep(three_years, ["climatology", "msgl"], keep=[1.0, 0.0], seeds=[0],
                       fit_kwargs={"msgl": FAST})
    assert fits == []


def test_cross_validation_checks_every_fold_and_records_what_it_did(
        three_years: xr.Dataset, fits: list[dict]) -> None:
    from xmsgl.evaluate import cv_partitions

    with pytest.raises(xmsgl.ParameterError, match=r"sets \['seed'\].*seed= for the folds"):
        cross_validate(three_years, "msgl", folds=2, repeats=1, seeds=1, fit_kwargs={**FAST, "seed": 3})
    with pytest.raises(xmsgl.ParameterError, match="takes its settings flat"):
        cross_validate(three_years, "msgl", folds=2, repeats=1, seeds=1, fit_kwargs={"msgl": FAST})
    with pytest.raises(xmsgl.ParameterError, match="epochs"):
        cross_validate(three_years, "msgl", folds=2, repeats=1, seeds=1, fit_kwargs={"epochs": 0})
    # Observations in one sub-basin only: the fold holding it out has none to train on.
    parts = cv_partitions(three_years, folds=2, repeats=1, blocking="subbasin")
    inside = xr.DataArray(parts[1].reaches, dims="reach", coords={"reach": three_years.reach})
    one = three_years.assign(reach_temp=three_years.reach_temp.where(inside))
    with pytest.raises(xmsgl.DataError, match=r"fold 1 of repetition 0 \(held-out blocks .*no fine "
                                              r"observation.*before any fit"):
        cross_validate(one, "fine-only", folds=2, repeats=1, seeds=1, fit_kwargs=FAST)
    # A fixed validation year that a fold holds out is named with the fold, before any fit.
    with pytest.raises(xmsgl.TimeError, match=r"fold \d of repetition 0 .*overlap"):
        cross_validate(three_years, "fine-only", folds=3, repeats=1, seeds=1, blocking="water_year",
                       fit_kwargs={**FAST, "val": ("2001-10-01", "2002-09-30")})
    assert fits == []
    cv = cross_validate(three_years, "fine-only", folds=2, repeats=1, seeds=1, fit_kwargs=FAST)
    assert json.loads(cv.attrs["fit_kwargs"]) == FAST and cv.attrs["trainer"] == "default"
    held = [json.loads(str(v)) for v in cv.held_out_blocks.values.ravel()]
    assert sorted(g for h in held for g in h) == sorted(g for p in parts for g in p.groups)
    # Held-out sites are fitted on every day but the last water year, which validates.
    assert [f["val"] for f in fits] == [[("2002-10-01", "2003-09-30")]] * 2
    assert set(cv.val_period.values.ravel()) == {'[["2002-10-01", "2003-09-30"]]'}


def test_cross_validation_records_periods_given_as_dates_and_scores_baselines_without_gauges(
        three_years: xr.Dataset) -> None:
    import pandas as pd

    from xmsgl.evaluate import cv_partitions

    # Timestamps as fit takes them: recorded as text, not lost at the end of the run.
    val = (pd.Timestamp("2002-10-01"), pd.Timestamp("2003-09-30"))
    cv = cross_validate(three_years, "fine-only", folds=2, repeats=1, seeds=1,
                        fit_kwargs={**FAST, "val": val})
    assert set(cv.val_period.values.ravel()) == {'[["2002-10-01", "2003-09-30"]]'}
    # A baseline fits and scores a fold whose held-out blocks hold every gauge.
    parts = cv_partitions(three_years, folds=2, repeats=1, blocking="subbasin")
    inside = xr.DataArray(parts[1].reaches, dims="reach", coords={"reach": three_years.reach})
    one = three_years.assign(reach_temp=three_years.reach_temp.where(inside))
    clim = cross_validate(one, "climatology", folds=2, repeats=1, seeds=1, mask_coarse=False)
    assert np.isfinite(clim.rmse).all() and "val_period" not in clim


def test_a_sweep_names_its_test_days_when_a_fit_period_covers_them(three_years: xr.Dataset) -> None:
    with pytest.raises(xmsgl.TimeError, match=r"overlap.*the sweep scores 2002-10-01/2003-09-30"):
        sparsity_sweep(three_years, ["fine-only"], keep=[1.0], seeds=[0],
                       fit_kwargs={**FAST, "train": ("2000-10-01", "2003-09-30")})


def test_fold_warnings_are_named_but_filtered_and_raised_as_any_warning() -> None:
    # Three water years in two folds: the fold that holds out two leaves one year, no
    # year to validate on, and fit says so. (On two water years the folds now validate
    # on days beside the test, as fit's split of a short record does.)
    basin = xmsgl.datasets.synthetic_basin(n_segments=3, start="2000-10-01", end="2003-09-30", seed=0,
                                           reach_obs_share=0.3)
    run = dict(folds=2, repeats=1, seeds=[0], blocking="water_year", fit_kwargs=FAST)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        cross_validate(basin, "fine-only", **run)
    said = [str(w.message) for w in seen if str(w.message).startswith("no validation period")]
    assert said and all(s.endswith("of repetition 0; said once per cross-validation)") for s in said)
    # Under Python's default filters a text is shown once, not once per fold and seed.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        cross_validate(basin, "fine-only", **{**run, "seeds": [0, 1]})
    assert len([w for w in seen if str(w.message).startswith("no validation period")]) == 1
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", message="no validation period")
        cross_validate(basin, "fine-only", **run)
    assert not [w for w in seen if "no validation period" in str(w.message)]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="no validation period")
        with pytest.raises(xmsgl.XmsglWarning, match="no validation period"):
            cross_validate(basin, "fine-only", **run)


def test_a_test_period_beyond_the_record_is_said_to_be_cut(basin: xr.Dataset) -> None:
    # A sweep asked for years past the record scored its last months without a word.
    end = str(basin.time.values[-1])[:10]
    start = str(basin.time.values[-40])[:10]
    with pytest.warns(xmsgl.XmsglWarning, match=rf"reaches past the dataset's days .*only the 40 days "
                      rf"from {start} to {end} are scored"):
        sw = sparsity_sweep(basin, ["climatology"], keep=[1.0], seeds=[0], test=(start, "2030-12-31"))
    assert json.loads(sw.attrs["test_period"]) == [[start, end]]


def test_a_sweep_says_each_warning_once_naming_the_first_cell(basin: xr.Dataset) -> None:
    # Under Python's default filters a sweep said the same conversion for every
    # (method, share, seed): twelve times here.
    kelvin = basin.assign(reach_air_temp=(basin.reach_air_temp + 273.15).assign_attrs(units="K"))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        sparsity_sweep(kelvin, ["climatology", "idw"], keep=[1.0, 0.5, 0.2], seeds=[0, 1])
    said = [str(w.message) for w in seen if issubclass(w.category, xmsgl.UnitConversionWarning)]
    assert said == ["'reach_air_temp' converted from 'K' to 'degC' (climatology, keep=1, seed=0; "
                    "said once per sweep)"]


def test_cross_validation_and_sweeps_show_one_bar_over_their_fits(basin: xr.Dataset,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # The fits' own bars are off; with the progress option on there was nothing at all.
    with xmsgl.set_options(progress=True):
        cross_validate(basin, "climatology", folds=2, repeats=1, seeds=1, blocking="water_year")
        sparsity_sweep(basin, ["climatology", "idw"], keep=[1.0, 0.5], seeds=[0])
    err = capsys.readouterr().err
    assert "cross-validation climatology" in err and "/2 [" in err
    assert "sparsity sweep" in err and "/4 [" in err
    with xmsgl.set_options(progress=False):
        cross_validate(basin, "climatology", folds=2, repeats=1, seeds=1, blocking="water_year")
        sparsity_sweep(basin, ["climatology", "idw"], keep=[1.0, 0.5], seeds=[0])
    assert capsys.readouterr().err == ""


def test_arguments_that_were_taken_silently_are_refused() -> None:
    # An audit of the error messages: each of these was accepted and did something else.
    import xmsgl.convention as C
    import xmsgl.evaluate as E

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2001-01-01", end="2001-03-31", seed=1)
    gappy = ds.isel(time=[0, 1, 2, 5, 6])
    # One name is a name, not its letters (it filled the variable it was told to skip).
    filled = C.fill_daily(gappy, exclude="reach_air_temp")
    assert bool(filled["reach_air_temp"].isel(time=3).isnull().all())
    with pytest.raises(xmsgl.ParameterError, match=r"\['reach_air_tmp'\] is not among the inputs"):
        C.fill_daily(gappy, exclude=["reach_air_tmp"])
    # A trainer that cannot be used: the default fit ran in its place, or a bare TypeError.
    with pytest.raises(xmsgl.ParameterError, match="trainer=5 is not callable"):
        E.sparsity_sweep(ds, "climatology", keep=[1.0], seeds=[0], trainer=5)
    with pytest.raises(xmsgl.ParameterError, match=r"\['climatolgy'\].*did you mean 'climatology'"):
        E.sparsity_sweep(ds, "climatology", keep=[1.0], seeds=[0], trainer={"climatolgy": lambda *a: 0})
    with pytest.raises(xmsgl.ParameterError, match="trainer=5 is not callable"):
        E.cross_validate(ds, "climatology", folds=2, repeats=1, seeds=1, trainer=5)
    # Counts that ran out of memory listing their draws.
    with pytest.raises(xmsgl.ParameterError, match="seeds=1000000000 is more than 10,000"):
        E.cross_validate(ds, "climatology", folds=2, repeats=1, seeds=10**9)
    with pytest.raises(xmsgl.ParameterError, match="repeats=1000000000 is more than 10,000"):
        E.cross_validate(ds, "climatology", folds=2, repeats=10**9, seeds=1)
    # seg= and reach= naming one dimension: seg= was dropped without a word.
    renamed = ds.rename(seg="nseg", reach="comid")
    with pytest.raises(xmsgl.SchemaError, match=r"\['comid'\] is given for two of seg=, reach="):
        C.to_convention(renamed, seg="comid", reach="comid")
    # Bins that double in width: 10**9 of them ran for minutes, then out of memory.
    from xmsgl.explain import explain

    with pytest.raises(xmsgl.ParameterError, match="n_bins=100: give at most 64"):
        explain("no-model-read-before-the-check", ds, n_bins=100)  # type: ignore[arg-type]


def test_arguments_of_the_wrong_type_are_typed_errors_that_name_them() -> None:
    # An audit of the error messages: each of these raised Python's own TypeError,
    # ValueError, AttributeError or IndexError, or an xarray AlignmentError.
    import matplotlib

    matplotlib.use("Agg")
    import xmsgl.convention as C
    import xmsgl.evaluate as E
    import xmsgl.knn as K
    import xmsgl.metrics as M
    import xmsgl.robustness as R
    import xmsgl.scale as S

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2001-01-01", end="2001-03-31", seed=1)
    obs, pred = ds["reach_temp"], ds["reach_temp_true"]
    P = xmsgl.ParameterError
    with pytest.raises(P, match="by=5 must be None, 'season', 'hot' or a list of them"):
        E.evaluate(pred, obs, by=5)  # type: ignore[arg-type]
    with pytest.raises(P, match="dims=5 must be a dimension name or a list of them"):
        M.rmse(pred, obs, dims=5)  # type: ignore[arg-type]
    for chunk in (None, "10", 2.5):
        with pytest.raises(P, match=f"reach_chunk={chunk!r} must be a whole number of reaches"):
            S.partition(ds, reach_chunk=chunk)  # type: ignore[arg-type]
    with pytest.raises(P, match="halo='1' must be a whole number of segment hops"):
        S.partition(ds, 5, halo="1")  # type: ignore[arg-type]
    with pytest.raises(xmsgl.SchemaError, match="fill_daily takes an xarray.Dataset"):
        C.fill_daily(None)  # type: ignore[arg-type]
    gappy = ds.isel(time=[0, 1, 4])
    with pytest.raises(xmsgl.TimeError, match="timezone-aware"):
        C.fill_daily(gappy.assign_coords(time=gappy.indexes["time"].tz_localize("UTC")))
    with pytest.raises(P, match="variables=5 must be a variable name or a list of them"):
        R.lowpass(ds, 30, variables=5)  # type: ignore[arg-type]
    with pytest.raises(P, match="period='30' must be a period in days"):
        R.lowpass(ds, "30", variables="reach_air_temp")  # type: ignore[arg-type]
    with pytest.raises(P, match="checks=5 must be a list of check names"):
        R.robustness(ds, "no-model-read-before-the-check", 5)  # type: ignore[arg-type]
    with pytest.raises(xmsgl.SchemaError, match="observed must be an xarray.DataArray"):
        M.hot_mask(obs.values)  # type: ignore[arg-type]
    # skill pairs by position: a timezone, or labels that differ, are refused in its words.
    with pytest.raises(xmsgl.TimeError, match="timezone-aware"):
        M.skill(pred.assign_coords(time=pred.indexes["time"].tz_localize("UTC")), obs)
    with pytest.raises(xmsgl.DataError, match="differ along 'time'.*skill does not align them.*align_pair"):
        M.skill(pred.isel(time=slice(1, None)), obs.isel(time=slice(None, -1)))
    # A dimension of one side only (an ensemble's members) is broadcast, as before.
    members = xr.concat([pred, pred + 1.0], "member")
    assert M.skill(members, obs, dims=["reach", "time"])["rmse"].sizes["member"] == 2
    by_default = M.skill(members, obs)["rmse"]  # pooled over the shared dimensions
    assert by_default.dims == ("member",)
    assert float(by_default[0]) == pytest.approx(float(M.rmse(pred, obs)))
    assert M.skill(obs, members)["rmse"].dims == ("member",)
    with pytest.raises(xmsgl.SchemaError, match=r"dims \['member'\] are not dimensions of observed"):
        M.skill(members, obs, dims=["member", "time"])
    pos = np.random.default_rng(0).random((5, 2))
    with pytest.raises(P, match=r"tie_keys has shape \(3,\); give one key per node, shape \(5,\)"):
        K.geometric_knn(pos, 2, tie_keys=np.arange(3))
    with pytest.raises(P, match="there are no other nodes"):
        K.geometric_knn(np.zeros((0, 2)), 2)
    with pytest.raises(xmsgl.TimeError, match="water years need dates, got str"):
        E.water_year("2001")  # type: ignore[arg-type]
    # A missing date is named, not read as the smallest integer.
    with pytest.raises(xmsgl.TimeError, match=r"1 missing \(NaT\) of 3 at positions \[1\]"):
        E.water_year(np.array(["2001-01-01", "NaT", "2001-11-01"], dtype="datetime64[ns]"))
    with pytest.raises(xmsgl.TimeError, match="missing"):
        E.water_year(pd.DatetimeIndex(["2001-01-01", None]))
    sw = xr.Dataset({"rmse": (("method", "keep", "seed"), np.ones((1, 2, 1)))},
                    coords={"method": ["idw"], "keep": [1.0, 0.5], "seed": [0]})
    with pytest.raises(P, match="ax=5 must be matplotlib Axes"):
        plot_sparsity(sw, ax=5)
    with pytest.raises(xmsgl.SchemaError, match="metric='rmes' is not a variable.*did you mean 'rmse'"):
        plot_sparsity(sw, metric="rmes")
    with pytest.raises(xmsgl.DataError, match=r"hold infinite values at \(repeat=1, seed=0\); the"):
        variance_decomposition(xr.DataArray([[1.0, 2.0], [np.inf, 3.0]], dims=("repeat", "seed")))
    # Cells named by the scores' labels: it said "(partition, seed) [[3, 0], [3, 1]]",
    # positions in its own stacking of repeat and fold.
    cv = xr.DataArray(np.ones((2, 2, 2)), dims=("repeat", "fold", "seed"), name="rmse",
                      coords={"repeat": [0, 1], "fold": [0, 1], "seed": [7, 8]})
    cv[1, 1, :] = np.nan
    with pytest.raises(xmsgl.DataError, match=r"^scores 'rmse' hold NaN at \(repeat=1, fold=1, seed=7\), "
                                              r"\(repeat=1, fold=1, seed=8\); the design"):
        variance_decomposition(cv)
    with pytest.raises(P, match="n_boot"):  # a misspelt keyword, named with the closest
        variance_decomposition(cv.fillna(1.0), nboot=10)
    years = xr.DataArray(np.ones((3, 1)), dims=("partition", "seed"),
                         coords={"partition": ["2001", "2002", "2003"], "seed": [0]})
    years[2, 0] = np.nan
    with pytest.raises(xmsgl.DataError, match=r"NaN at \(partition='2003', seed=0\);"):
        variance_decomposition(years)


@pytest.mark.parametrize(("values", "what"), [
    (True, "booleans"), (np.datetime64("2001-01-01", "ns"), "dates"), ("a", "text"),
    (1 + 0j, "complex numbers"), (None, "Python objects")])
def test_metrics_refuse_values_that_are_not_temperatures(values: object, what: str) -> None:
    # They were scored: True as 1 degC, a date as its nanoseconds since 1970.
    obs = xr.DataArray([10.0, 11.0, 12.0], dims="time",
                       coords={"time": np.array(["2001-01-01", "2001-01-02", "2001-01-03"],
                                                dtype="datetime64[ns]")})
    pred = obs.copy(data=np.full(3, values, dtype=object if values is None else None))
    for func in (xmsgl.metrics.rmse, xmsgl.metrics.skill):
        with pytest.raises(xmsgl.SchemaError, match=f"prediction holds {what}"):
            func(pred, obs)


def test_time_labels_of_text_against_dates_are_named_as_such() -> None:
    # It was a numpy DTypePromotionError from inside xarray's alignment.
    obs = xr.DataArray([10.0, 11.0], dims="time",
                       coords={"time": np.array(["2001-01-01", "2001-01-02"], dtype="datetime64[ns]")})
    pred = obs.assign_coords(time=["2001-01-01", "2001-01-02"])
    with pytest.raises(xmsgl.TimeError, match=r"dates on one side and <U10 values on the other "
                                              r"\(prediction\).*pd.to_datetime"):
        xmsgl.metrics.rmse(pred, obs)


def test_a_basin_too_large_is_refused_before_it_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    import xmsgl.datasets.synthetic as syn

    with pytest.raises(xmsgl.ParameterError, match="'n_segments' must be at most 1,000,000"):
        syn.synthetic_basin(n_segments=10**12, start="2001-01-01", end="2001-01-02")
    # A machine of 1 MB: an in-memory basin that cannot fit is refused, a lazy one is built.
    monkeypatch.setattr(syn, "_physical_memory", lambda: 10**6)
    with pytest.raises(xmsgl.ParameterError, match="more than this machine's 0 GB; pass chunks=5000"):
        syn.synthetic_basin(n_segments=20, start="2001-01-01", end="2001-12-31")
    lazy = syn.synthetic_basin(n_segments=20, start="2001-01-01", end="2001-12-31", chunks=50)
    assert lazy["reach_temp"].chunks is not None
    # What the build holds at its peak counts, not its variables alone (measured 2.1-2.4
    # times them): a machine between the two refuses the basin.
    variables = sum(v.nbytes for n, v in lazy.data_vars.items() if "time" in v.dims)
    monkeypatch.setattr(syn, "_physical_memory", lambda: int(1.5 * variables))
    with pytest.raises(xmsgl.ParameterError, match="in memory while it is built, more than this machine's"):
        syn.synthetic_basin(n_segments=20, start="2001-01-01", end="2001-12-31")


def test_a_trainer_is_given_no_truth_and_agreeing_seeds_keep_their_unclipped_estimate(
        basin: xr.Dataset) -> None:
    # The truth at held-out cells is the scoring target: a trainer could read it.
    seen: list[list[str]] = []

    def record(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> float:
        seen.append(sorted(str(n) for n in train_ds.data_vars if str(n).endswith("_true")))
        return 1.0 + 0.1 * int(test_ds.attrs.get("fold", 0))

    assert "reach_temp_true" in basin
    cross_validate(basin, "climatology", folds=2, repeats=1, seeds=1, blocking="reach", trainer=record)
    sparsity_sweep(basin, "idw", keep=[0.5], seeds=[0], trainer=record)
    assert len(seen) == 3 and seen == [[], [], []]
    # Scores equal across seeds: (MSB - MSW) / K with MSW = 0, not NaN (NaN is for one seed).
    y = np.array([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [4.0, 4.0, 4.0]])
    res = variance_decomposition(xr.DataArray(y, dims=("partition", "seed")), n_boot=50)
    assert res.attrs["sigma2_partition_unclipped"] == pytest.approx(float(res["sigma2_partition"][0]))
    assert res.attrs["sigma2_partition_unclipped"] == pytest.approx(np.var(y[:, 0], ddof=1))


def test_the_default_sweep_test_days_are_fit_split_test_days_at_noon_too() -> None:
    # The last training day stamped at noon was scored (its end compared as midnight),
    # and read by the fit of the default split.
    from xmsgl.evaluate import _sweep_test_days
    from xmsgl.periods import period_mask, split_periods

    for hour in (0, 12):
        t = pd.date_range("2000-10-01", "2003-09-30") + pd.Timedelta(hours=hour)
        test = period_mask(t, split_periods(t)["test"], "test")
        assert np.array_equal(_sweep_test_days(t, None), test)
        assert int(test.sum()) == 365
