"""An exponential moving average of the weights (``fit(..., ema_decay=...)``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from xmsgl.exceptions import ParameterError  # noqa: E402
from xmsgl.model import fit, load  # noqa: E402
from xmsgl.train import WeightAverage  # noqa: E402

PERIODS = {"train": ("2001-01-01", "2001-04-30"), "val": ("2001-05-01", "2001-06-30")}
FIT = {"epochs": 3, "window": 40, "stride": 40, "progress": False, "hidden": 6,
       "seed": 0, **PERIODS}


@pytest.fixture(scope="module")
def fits(half_year_basin: xr.Dataset) -> dict[str, object]:
    return {str(d): fit(half_year_basin, method="msgl", ema_decay=d, **FIT)
            for d in (None, 0.8, 1e-9)}


def _val_rmse(ds: xr.Dataset, model) -> float:
    pred = ds.msgl.downscale(model, time=PERIODS["val"])
    obs = ds.reach_temp.sel(time=slice(*PERIODS["val"])).transpose(*pred.dims).values
    ok = np.isfinite(obs)
    return float(np.sqrt(np.mean((pred.values[ok] - obs[ok]) ** 2)))


def test_average_follows_its_formula_and_copies_counters() -> None:
    torch.manual_seed(0)
    net = torch.nn.BatchNorm1d(3)  # float weights and an integer counter
    avg = WeightAverage(net, 0.75)
    seen = []
    for step in range(4):
        with torch.no_grad():
            net.weight.add_(torch.randn(3))
            net.num_batches_tracked += 1
        avg.update(net)
        seen.append(net.weight.detach().clone())
        # Each step's weights by 0.75**(k-j) * 0.25, divided by 1 - 0.75**k: the
        # starting weights count for nothing (the first step replaces them).
        k = len(seen)
        expected = sum(0.75 ** (k - 1 - j) * 0.25 * w for j, w in enumerate(seen)) / (1 - 0.75 ** k)
        torch.testing.assert_close(avg.state["weight"], expected)
        assert int(avg.state["num_batches_tracked"]) == step + 1
    live = net.weight.detach().clone()
    kept = avg.swap_in(net)
    torch.testing.assert_close(net.weight.detach(), expected)
    torch.testing.assert_close(kept["weight"], live)
    # The module's weights and the average are separate tensors.
    with torch.no_grad():
        net.weight.add_(1.0)
    torch.testing.assert_close(avg.state["weight"], expected)


def test_the_starting_weights_do_not_count_in_the_average() -> None:
    # With several windows a step (a small basin: one step an epoch), the plain
    # average kept 0.95**k of the untrained weights: 66% after 8 epochs.
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    avg = WeightAverage(net, 0.95)
    with torch.no_grad():
        net.weight.fill_(3.0)
        net.bias.fill_(-1.0)
    avg.update(net)
    torch.testing.assert_close(avg.state["weight"], torch.full((2, 4), 3.0))
    for _ in range(7):
        avg.update(net)
    torch.testing.assert_close(avg.state["bias"], torch.full((2,), -1.0))


def test_training_goes_on_from_the_weights_it_trains(fits: dict[str, object]) -> None:
    # The average is validated and kept, but each step starts from the last step's
    # weights: the training losses are those of a fit without an average, exactly.
    plain, averaged = fits["None"], fits["0.8"]
    assert averaged.config["history"]["main"]["loss"] == plain.config["history"]["main"]["loss"]
    assert averaged.config["history"]["main"]["val"] != plain.config["history"]["main"]["val"]


def test_the_validated_weights_are_the_ones_returned(half_year_basin: xr.Dataset,
                                                     fits: dict[str, object]) -> None:
    for key in ("None", "0.8"):
        model = fits[key]
        hist = model.config["history"]["main"]
        best = hist["val"][hist["best_epoch"] - 1]
        assert best == min(v for v in hist["val"] if v is not None)
        assert best == pytest.approx(_val_rmse(half_year_basin, model), rel=1e-4)
    plain = half_year_basin.msgl.downscale(fits["None"]).values
    assert np.abs(half_year_basin.msgl.downscale(fits["0.8"]).values - plain).max() > 1e-3
    # A decay near 0 averages nothing in: the same model to float32 rounding.
    near = half_year_basin.msgl.downscale(fits["1e-09"]).values
    np.testing.assert_allclose(near, plain, rtol=0, atol=1e-4)


def test_recorded_and_saved(fits: dict[str, object], tmp_path) -> None:
    assert "ema_decay" not in fits["None"].config["hyperparameters"]
    model = fits["0.8"]
    assert model.config["hyperparameters"]["ema_decay"] == 0.8
    model.save(tmp_path / "m")
    assert load(tmp_path / "m").config["hyperparameters"]["ema_decay"] == 0.8


def test_each_stage_of_async_msgl_averages(half_year_basin: xr.Dataset) -> None:
    a = fit(half_year_basin, method="async-msgl", pretrain_epochs=2, ema_decay=0.8, **FIT)
    b = fit(half_year_basin, method="async-msgl", pretrain_epochs=2, **FIT)
    assert set(a.config["history"]) == set(b.config["history"]) and len(a.config["history"]) == 2
    for stage in a.config["history"]:
        assert a.config["history"][stage]["val"] != b.config["history"][stage]["val"]


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.5, 1.5, True, "0.9", math.nan, math.inf])
def test_bad_decay_is_refused(half_year_basin: xr.Dataset, bad: object) -> None:
    with pytest.raises(ParameterError, match="ema_decay"):
        fit(half_year_basin, method="fine-only", ema_decay=bad, **FIT)


def test_refused_where_it_would_not_apply(half_year_basin: xr.Dataset) -> None:
    with pytest.raises(ParameterError, match="subbasin_batch"):
        fit(half_year_basin, method="msgl", ema_decay=0.9, subbasin_batch=20, **FIT)
    with pytest.raises(ParameterError, match="ema_decay"):
        fit(half_year_basin, method="climatology", ema_decay=0.9)
    with pytest.raises(ParameterError, match="ema_decay"):
        fit(half_year_basin, method="gru", ema_decay=0.9, epochs=1, progress=False)
