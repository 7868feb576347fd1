"""Pinned: what the ``ds.msgl`` accessor forwards (defaults and keywords), its
in-sample warnings for a validation period alone and for the harmonic baseline,
``set_options``'s numpy booleans, the demo's scores and periods, ``xmsgl downscale``'s
refusal of ``--reach-chunk 0`` and the test days ``xmsgl evaluate --robustness`` hides."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl
from xmsgl.exceptions import XmsglWarning


@pytest.fixture(scope="module")
def obs_basin() -> xr.Dataset:
    """A small basin scored against its observations (its truth left out)."""
    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2000-10-01", end="2001-09-30", seed=3,
                                        reach_obs_share=0.5)
    return ds.drop_vars(["reach_temp_true", "seg_temp_true"])


def _prediction(ds: xr.Dataset, **attrs: str) -> xr.DataArray:
    pred = ds["reach_temp"].fillna(10.0).rename("reach_temp_pred")
    pred.attrs = {"units": "degC", **attrs}
    return pred


def test_accessor_forwards_its_defaults_and_keywords(obs_basin: xr.Dataset,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the accessor's forwarding: the method default "msgl", the dataset, the model
    # and every keyword reach the functions unchanged.
    import xmsgl.coverage
    import xmsgl.downscale
    import xmsgl.model

    seen: dict[str, tuple] = {}
    import inspect

    default = inspect.signature(obs_basin.msgl.fit).parameters["method"].default

    def recorder(name: str):
        def call(*args, **kwargs):
            seen[name] = (args, kwargs)
            return name
        return call

    monkeypatch.setattr(xmsgl.model, "fit", recorder("fit"))
    monkeypatch.setattr(xmsgl.downscale, "downscale", recorder("downscale"))
    monkeypatch.setattr(xmsgl.coverage, "coverage", recorder("coverage"))
    ds = obs_basin
    assert ds.msgl.fit(epochs=3) == "fit"
    # The accessor's fit is the function's, default included (it wears its signature).
    assert seen["fit"][0][0] is ds and seen["fit"][1] == {"epochs": 3}
    assert default == "msgl"
    ds.msgl.fit("gru", epochs=2)
    assert seen["fit"] == ((ds, "gru"), {"epochs": 2})
    ds.msgl.downscale("m.xmsgl", scale="seg", time=("2001-01-01", "2001-01-31"))
    assert seen["downscale"] == ((ds, "m.xmsgl"), {"scale": "seg", "time": ("2001-01-01", "2001-01-31")})
    ds.msgl.coverage("m.xmsgl", margin=0.5)
    assert seen["coverage"] == ((ds, "m.xmsgl"), {"margin": 0.5})


def test_accessor_sparsify_default_is_the_functions(obs_basin: xr.Dataset) -> None:
    # Guards the accessor's keep default: one per cent of the observations, as sparsify's.
    from xmsgl.sampling import sparsify

    n = int(obs_basin["reach_temp"].notnull().sum())
    kept = obs_basin.msgl.sparsify()
    assert int(kept["reach_temp"].notnull().sum()) == max(1, round(0.01 * n))
    xr.testing.assert_identical(kept, sparsify(obs_basin))


def test_accessor_warns_for_a_validation_period_alone(obs_basin: xr.Dataset) -> None:
    # Guards the in-sample check going on to the validation periods when the training
    # periods lie outside the scored days (it must not stop at the first attribute).
    pred = _prediction(obs_basin, xmsgl_train_periods="1990-10-01/1991-09-30",
                       xmsgl_val_periods="2000-10-01/2001-09-30")
    with pytest.warns(XmsglWarning, match="inside the model's validation periods"):
        obs_basin.msgl.evaluate(pred)


@pytest.mark.parametrize("method", ["async-msgl", "msgl"])
def test_the_in_sample_warning_names_asyncs_stage_a(obs_basin: xr.Dataset, method: str) -> None:
    # ASYNC-MSGL's training periods include stage A's days, on which it learned from the
    # segments' coarse values, not from reach_temp: the warning says so, for it alone.
    t = obs_basin["time"].values
    span = f"{str(t[0])[:10]}/{str(t[-1])[:10]}"
    pred = _prediction(obs_basin, xmsgl_method=method, xmsgl_train_periods=span)
    truth = obs_basin.assign(reach_temp_true=obs_basin["reach_temp"].fillna(12.0))
    for scored in ({}, {"observed": truth["reach_temp_true"]}):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            truth.msgl.evaluate(pred, **scored)
        said = " ".join(str(w.message) for w in seen if issubclass(w.category, XmsglWarning))
        assert "inside the model's training periods" in said
        assert ("ASYNC-MSGL's stage A alone" in said) == (method == "async-msgl")


def test_accessor_warns_for_the_harmonic_baseline(obs_basin: xr.Dataset) -> None:
    # Guards the harmonic baseline among those that reproduce the observations given.
    pred = _prediction(obs_basin, xmsgl_method="harmonic")
    with pytest.warns(XmsglWarning, match="'harmonic' baseline"):
        obs_basin.msgl.evaluate(pred)
    # A prediction with no periods and another method is scored in silence.
    with warnings.catch_warnings():
        warnings.simplefilter("error", XmsglWarning)
        obs_basin.msgl.evaluate(_prediction(obs_basin, xmsgl_method="msgl"))


def test_set_options_takes_numpy_booleans() -> None:
    # Guards progress=np.bool_ (what a comparison of arrays gives) being a boolean.
    with xmsgl.set_options(progress=np.bool_(False)):
        assert not xmsgl.get_option("progress")
    with pytest.raises(xmsgl.ParameterError, match="give True or False"):
        xmsgl.set_options(progress=1)


def test_demo_metrics_score_every_reach_and_the_unobserved_apart() -> None:
    # Guards the demo table's MAE and RMSE over all reach-days, and its RMSE of the
    # unobserved reaches over theirs alone (NaN days left out of both).
    from xmsgl.demo import _metrics

    truth = xr.DataArray(np.zeros((2, 3)), dims=("reach", "time"))
    pred = xr.DataArray(np.array([[1.0, -1.0, np.nan], [3.0, 3.0, 3.0]]), dims=("reach", "time"))
    m = _metrics(pred, truth, np.array([False, True]))
    assert m["mae"] == pytest.approx(11.0 / 5)
    assert m["rmse"] == pytest.approx(np.sqrt(29.0 / 5))
    assert m["rmse_unobserved"] == pytest.approx(3.0)


def test_demo_periods_go_to_the_fit_unchanged() -> None:
    # Guards periods_kw keeping each period under its own name.
    from xmsgl.demo import periods_kw

    periods = {"train": [("2000-10-01", "2001-09-30")], "val": [("2001-10-01", "2002-09-30")],
               "test": [("2002-10-01", "2003-09-30")], "other": None}
    assert periods_kw(periods) == {"train": periods["train"], "val": periods["val"],
                                   "test": periods["test"]}


# --------------------------------------------------------------------------------------
# the command line


def test_downscale_refuses_a_reach_chunk_of_zero(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    # Guards `--reach-chunk < 1`: zero reaches per block is refused before anything is read.
    from xmsgl.cli import main

    assert main(["downscale", str(tmp_path / "m.xmsgl"), str(tmp_path / "d.nc"), str(tmp_path / "o.nc"),
                 "--reach-chunk", "0"]) == 2
    assert "--reach-chunk 0: give at least 1" in capsys.readouterr().err


class _FitReached(Exception):
    """Raised by the stand-in fit of the robustness step: the data it got is recorded."""


def test_evaluate_robustness_fit_sees_no_test_day_observation(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the robustness step hiding the test days' coarse observations as well as the
    # fine ones from the model it fits (it is scored on those days).
    import xmsgl.evaluate
    import xmsgl.model
    from xmsgl.cli import main

    got: dict[str, object] = {}
    real_sweep = xmsgl.evaluate.sparsity_sweep

    def sweep(ds, *args, **kwargs):
        got["ds"] = ds
        got["sweep"] = out = real_sweep(ds, *args, **kwargs)
        return out

    def fit(ds, method, **kwargs):
        got["hidden"] = ds
        raise _FitReached

    monkeypatch.setattr(xmsgl.evaluate, "sparsity_sweep", sweep)
    monkeypatch.setattr(xmsgl.model, "fit", fit)
    with pytest.raises(_FitReached):
        main(["evaluate", "--methods", "climatology", "--keep", "1.0", "--seeds", "0", "--n-segments", "5",
              "--end", "2003-09-30", "--robustness", "climatology", "--out", str(tmp_path / "r.nc")])
    test = [tuple(p) for p in json.loads(got["sweep"].attrs["test_period"])]
    ds, hidden = got["ds"], got["hidden"]
    days = pd.DatetimeIndex(ds["time"].values)
    on_test = np.zeros(days.size, dtype=bool)
    for a, b in test:
        on_test |= (days >= a) & (days <= b)
    for name in ("seg_temp", "reach_temp"):
        assert int(ds[name].isel(time=on_test).notnull().sum()) > 0  # there was something to hide
        assert int(hidden[name].isel(time=on_test).notnull().sum()) == 0, name
        xr.testing.assert_equal(hidden[name].isel(time=~on_test), ds[name].isel(time=~on_test))
