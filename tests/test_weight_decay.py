"""Decoupled weight decay of the networks (``fit(..., weight_decay=...)``)."""

from __future__ import annotations

import pytest
import xarray as xr

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from xmsgl.exceptions import ParameterError  # noqa: E402
from xmsgl.model import fit, load  # noqa: E402
from xmsgl.train import make_optimizer  # noqa: E402

PERIODS = {"train": ("2001-01-01", "2001-04-30"), "val": ("2001-05-01", "2001-06-30")}
FIT = {"epochs": 3, "window": 40, "stride": 40, "progress": False, "hidden": 6,
       "seed": 0, **PERIODS}


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 1))


def test_no_decay_is_plain_adam() -> None:
    opt = make_optimizer(_net(), 0.01)
    assert type(opt) is torch.optim.Adam
    assert type(make_optimizer(_net(), 0.01, 0.0)) is torch.optim.Adam


def test_decay_shrinks_the_matrices_only() -> None:
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    opt = make_optimizer(net, 0.1, 0.5)
    assert type(opt) is torch.optim.AdamW
    for p in net.parameters():
        p.grad = torch.zeros_like(p)  # Adam's own step is 0: what moves is the decay alone
    opt.step()
    for k, v in net.state_dict().items():
        if v.ndim >= 2:
            torch.testing.assert_close(v, before[k] * (1 - 0.1 * 0.5))
        else:
            assert torch.equal(v, before[k]), k  # biases and the norm's gain and shift


def test_zero_is_the_fit_without_it(half_year_basin: xr.Dataset) -> None:
    plain = fit(half_year_basin, method="msgl", **FIT)
    zero = fit(half_year_basin, method="msgl", weight_decay=0, **FIT)
    assert zero.config["history"] == plain.config["history"]
    assert "weight_decay" not in zero.config["hyperparameters"]
    for (k, a), b in zip(plain.net.state_dict().items(), zero.net.state_dict().values()):
        assert torch.equal(a, b), k


def test_decay_changes_the_fit_and_is_recorded(half_year_basin: xr.Dataset, tmp_path) -> None:
    plain = fit(half_year_basin, method="fine-only", **FIT)
    decayed = fit(half_year_basin, method="fine-only", weight_decay=0.5, **FIT)
    assert decayed.config["hyperparameters"]["weight_decay"] == 0.5
    assert decayed.config["history"]["main"]["loss"] != plain.config["history"]["main"]["loss"]
    decayed.save(tmp_path / "m")
    assert load(tmp_path / "m").config["hyperparameters"]["weight_decay"] == 0.5


def test_every_stage_decays(half_year_basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[float] = []
    original = make_optimizer

    def spy(net, lr, weight_decay=0.0):
        made.append(weight_decay)
        return original(net, lr, weight_decay)

    monkeypatch.setattr("xmsgl.train.make_optimizer", spy)
    fit(half_year_basin, method="async-msgl", pretrain_epochs=1, weight_decay=0.01, **FIT)
    assert made == [0.01, 0.01]  # stage A and the main stage


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.1", None, True])
def test_bad_values_are_refused(half_year_basin: xr.Dataset, bad: object) -> None:
    with pytest.raises(ParameterError, match="weight_decay"):
        fit(half_year_basin, method="fine-only", weight_decay=bad, **FIT)


def test_refused_where_it_would_not_apply(half_year_basin: xr.Dataset) -> None:
    with pytest.raises(ParameterError, match="subbasin_batch"):
        fit(half_year_basin, method="msgl", weight_decay=0.01, subbasin_batch=20, **FIT)
    with pytest.raises(ParameterError, match="weight_decay"):
        fit(half_year_basin, method="climatology", weight_decay=0.01)
    with pytest.raises(ParameterError, match="weight_decay"):
        fit(half_year_basin, method="gru", weight_decay=0.01, epochs=1, progress=False)
