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


def test_a_decay_that_would_zero_the_weights_is_refused(half_year_basin: xr.Dataset) -> None:
    # AdamW multiplies the matrices by 1 - lr * weight_decay each step: at 1 or more they
    # are zeroed or flipped (1000 at lr 0.005 multiplied them by -4).
    with pytest.raises(ParameterError, match=r"lr \* weight_decay = 5 .*below 200"):
        fit(half_year_basin, method="fine-only", weight_decay=1000.0, lr=0.005, **FIT)
    with pytest.raises(ParameterError, match="weight_decay"):
        fit(half_year_basin, method="msgl", weight_decay=100.0, lr=0.01, **FIT)


def test_info_shows_the_settings_recorded_when_used(half_year_basin: xr.Dataset, tmp_path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # xmsgl info listed a fixed set of hyperparameters: a decayed, scheduled fit read as
    # a plain one.
    from xmsgl.cli import main

    fit(half_year_basin, method="fine-only", weight_decay=0.05, lr_schedule="cosine",
        clip_grad_norm=2.0, **FIT).save(tmp_path / "m")
    fit(half_year_basin, method="fine-only", **FIT).save(tmp_path / "plain")
    assert main(["info", str(tmp_path / "m")]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("hyperparameters: "))
    assert "lr_schedule cosine" in line and "weight_decay 0.05" in line
    assert "clip_grad_norm 2" in line
    assert main(["info", str(tmp_path / "plain")]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("hyperparameters: "))
    assert "weight_decay" not in line and "lr_schedule" not in line and "clip_grad_norm" not in line


def test_info_shows_the_task_weights_attention_and_batch_settings(half_year_basin: xr.Dataset, tmp_path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # A model with fixed weights and a shorter attention printed the defaults' line.
    from xmsgl.cli import main

    fit(half_year_basin, method="msgl", weighting="fixed", task_weights={"coarse": 1, "cross": 0.5, "fine": 2},
        attn_window=10, attn_blocks=1, batch_size=2, **FIT).save(tmp_path / "m")
    assert main(["info", str(tmp_path / "m")]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("hyperparameters: "))
    assert "weighting fixed" in line and "task_weights (coarse=1 cross=0.5 fine=2)" in line
    assert "attn_window 10" in line and "attn_blocks 1" in line and "batch_size 2" in line
    assert "pretrain_epochs" not in line  # msgl has no first stage
    fit(half_year_basin, method="direct", pretrain_epochs=1, **FIT).save(tmp_path / "d")
    assert main(["info", str(tmp_path / "d")]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("hyperparameters: "))
    assert "pretrain_epochs 1" in line
    assert "attn_window" not in line and "task_weights" not in line and "batch_size" not in line
