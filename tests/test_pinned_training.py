"""Training internals pinned: MGDA-UB's Gram matrix, the mean task weights of a
stage, and the target scaler's training-period-only statistics."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

import xmsgl.train  # noqa: E402
from xmsgl.model import fit  # noqa: E402

PERIODS = {"train": ("2001-01-01", "2001-04-30"), "val": ("2001-05-01", "2001-05-31"),
           "test": ("2001-06-01", "2001-06-30")}
TINY = {"epochs": 1, "window": 30, "stride": 30, "progress": False, "hidden": 4, "seed": 0}


def test_mgda_gram_matrix_is_of_normalized_gradients(half_year_basin: xr.Dataset,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards MGDA-UB's Gram matrix being built from L2-normalized task gradients
    # (its diagonal is 1 for every task with a gradient on the shared parameters).
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    real = xmsgl.train.mgda_weights

    def spy(norms: np.ndarray, gram: np.ndarray) -> np.ndarray:
        seen.append((np.array(norms, dtype=float), np.array(gram, dtype=float)))
        return real(norms, gram)

    monkeypatch.setattr(xmsgl.train, "mgda_weights", spy)
    fit(half_year_basin, method="msgl", weighting="mgda", **TINY, **PERIODS)
    assert seen
    live_steps = 0
    for norms, gram in seen:
        live = norms > 0
        live_steps += int(live.sum() > 1)
        np.testing.assert_allclose(np.diag(gram)[live], 1.0, rtol=1e-5)
        assert np.all(np.abs(gram[np.ix_(live, live)]) <= 1.0 + 1e-5)  # cosines
    assert live_steps > 0


def test_task_weights_are_averaged_over_the_steps_taken(half_year_basin: xr.Dataset) -> None:
    # Guards history["task_weights"] being the mean over steps taken, not over the
    # planned batches: with the coarse task weighed 0, a window without fine
    # observations (none before April here) is skipped, and the steps taken all
    # weigh cross 1 and fine 2.
    ds = half_year_basin.assign(
        reach_temp=half_year_basin.reach_temp.where(half_year_basin.time >= np.datetime64("2001-04-01")))
    m = fit(ds, method="msgl", weighting="fixed",
            task_weights={"coarse": 0.0, "cross": 1.0, "fine": 2.0},
            batch_size=1, **TINY, **PERIODS)
    w = m.history["main"]["task_weights"]
    assert w["cross"] == pytest.approx(1.0)
    assert w["fine"] == pytest.approx(2.0)
    assert w["coarse"] == 0.0


def test_target_scaler_uses_training_period_observations_only(half_year_basin: xr.Dataset) -> None:
    # Guards the target standardization: its mean and std come from the finite
    # reach_temp and seg_temp of the training period alone, so test-period
    # targets cannot leak into the fitted model.
    ds = half_year_basin
    m = fit(ds, method="msgl", **TINY, **PERIODS)
    late = ds.time >= np.datetime64(PERIODS["val"][0])
    shifted = ds.assign(reach_temp=ds.reach_temp + 10 * late, seg_temp=ds.seg_temp + 10 * late)
    m2 = fit(shifted, method="msgl", **TINY, **PERIODS)
    assert m2.config["targets"]["mean"] == m.config["targets"]["mean"]
    assert m2.config["targets"]["std"] == m.config["targets"]["std"]
    train = ds.sel(time=slice(*PERIODS["train"]))
    pooled = np.concatenate([train.reach_temp.values.ravel(), train.seg_temp.values.ravel()])
    pooled = pooled[np.isfinite(pooled)]
    assert m.config["targets"]["mean"] == pytest.approx(float(pooled.mean()), rel=1e-6)
    assert m.config["targets"]["std"] == pytest.approx(float(pooled.std()), rel=1e-6)
