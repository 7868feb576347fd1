"""The learning rate over a stage's steps (``fit(..., lr_schedule=...)``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from xmsgl.exceptions import ParameterError  # noqa: E402
from xmsgl.model import fit, load  # noqa: E402
from xmsgl.train import lr_factor  # noqa: E402

PERIODS = {"train": ("2001-01-01", "2001-04-30"), "val": ("2001-05-01", "2001-06-30")}
FIT = {"epochs": 3, "window": 40, "stride": 40, "progress": False, "hidden": 6,
       "seed": 0, **PERIODS}


def test_factor_follows_half_a_cosine() -> None:
    assert lr_factor("cosine", 0.0) == 1.0
    assert lr_factor("cosine", 0.5) == pytest.approx(0.5)
    assert lr_factor("cosine", 1.0) == pytest.approx(0.0, abs=1e-15)
    steps = [lr_factor("cosine", p) for p in np.linspace(0, 1, 11)]
    assert all(a > b for a, b in zip(steps, steps[1:]))
    assert lr_factor("cosine", 0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert {lr_factor("constant", p) for p in (0.0, 0.3, 1.0)} == {1.0}


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The learning rate of every Adam step taken while the test runs."""
    rates: list[float] = []
    step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    return rates


def test_the_optimizer_takes_the_scheduled_rates(half_year_basin: xr.Dataset, seen: list[float]) -> None:
    fit(half_year_basin, method="fine-only", lr=0.01, lr_schedule="cosine", batch_size=1, **FIT)
    # Three 40-day windows in 120 training days, one a step: nine steps in all.
    assert len(seen) == 9
    expected = [0.01 * lr_factor("cosine", (e + j / 3) / 3) for e in range(3) for j in range(3)]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)
    seen.clear()
    fit(half_year_basin, method="fine-only", lr=0.01, batch_size=1, **FIT)
    assert seen == [0.01] * 9


def test_each_stage_runs_its_own_schedule(half_year_basin: xr.Dataset, seen: list[float]) -> None:
    fit(half_year_basin, method="async-msgl", pretrain_epochs=2, lr=0.01, lr_schedule="cosine",
        batch_size=1, **FIT)
    # Stage A (2 epochs) then stage B (3 epochs), each starting at the full rate.
    firsts = [i for i, v in enumerate(seen) if v == 0.01]
    assert len(firsts) == 2 and firsts[0] == 0
    assert all(a > b for a, b in zip(seen[: firsts[1]], seen[1: firsts[1]]))
    assert all(a > b for a, b in zip(seen[firsts[1]:], seen[firsts[1] + 1:]))


def test_a_schedule_changes_the_fit_and_is_recorded(half_year_basin: xr.Dataset, tmp_path) -> None:
    plain = fit(half_year_basin, method="msgl", **FIT)
    cosine = fit(half_year_basin, method="msgl", lr_schedule="cosine", **FIT)
    assert "lr_schedule" not in plain.config["hyperparameters"]
    assert cosine.config["hyperparameters"]["lr_schedule"] == "cosine"
    # The first epoch's first step runs at the full rate either way; later ones do not.
    assert cosine.config["history"]["main"]["loss"] != plain.config["history"]["main"]["loss"]
    cosine.save(tmp_path / "m")
    assert load(tmp_path / "m").config["hyperparameters"]["lr_schedule"] == "cosine"


@pytest.mark.parametrize("bad", ["Cosine", "linear", None, 1, True])
def test_unknown_schedule_is_refused(half_year_basin: xr.Dataset, bad: object) -> None:
    with pytest.raises(ParameterError, match="lr_schedule"):
        fit(half_year_basin, method="fine-only", lr_schedule=bad, **FIT)


def test_refused_where_it_would_not_apply(half_year_basin: xr.Dataset) -> None:
    with pytest.raises(ParameterError, match="subbasin_batch"):
        fit(half_year_basin, method="msgl", lr_schedule="cosine", subbasin_batch=20, **FIT)
    with pytest.raises(ParameterError, match="lr_schedule"):
        fit(half_year_basin, method="climatology", lr_schedule="cosine")
    with pytest.raises(ParameterError, match="lr_schedule"):
        fit(half_year_basin, method="gru", lr_schedule="cosine", epochs=1, progress=False)
