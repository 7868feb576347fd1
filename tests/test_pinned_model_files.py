"""Pinned checks of a saved model's ``config.json`` that load makes: each edit below
leaves the file well-formed JSON but describes no model a fit writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import xarray as xr

import xmsgl

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from tests.conftest import FAST_FIT  # noqa: E402
from xmsgl.exceptions import DataError, ModelMismatchError  # noqa: E402
from xmsgl.model import Downscaler, fit, load  # noqa: E402


@pytest.fixture(scope="module")
def model() -> Downscaler:
    basin: xr.Dataset = xmsgl.datasets.synthetic_basin(
        n_segments=4, start="2001-01-01", end="2001-04-30", seed=5, reach_obs_share=0.3)
    return fit(basin, method="msgl", seed=0, **FAST_FIT)


def _edited(tmp_path: Path, model: Downscaler, edit) -> Path:
    path = model.save(tmp_path / "model.xmsgl")
    cfg = json.loads((path / "config.json").read_text())
    edit(cfg)
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def test_a_newer_format_version_asks_for_an_upgrade(tmp_path: Path, model: Downscaler) -> None:
    # Guards `not newer` in Downscaler.load: a model of a later xmsgl is a mismatch
    # to upgrade for, not a damaged folder.
    path = _edited(tmp_path, model, lambda c: c.update(format_version=c["format_version"] + 1))
    with pytest.raises(ModelMismatchError, match="upgrade xmsgl"):
        load(path)


@pytest.mark.parametrize(("what", "edit", "match"), [
    # The target scaler's std must be positive (0 would divide by zero).
    ("std 0", lambda c: c["targets"].update(std=0.0), "target scaler"),
    # An observed range is [smallest, largest].
    ("reversed range", lambda c: c["variables"]["observed_range"].update(
        {k: v[::-1] for k, v in c["variables"]["observed_range"].items() if v[0] < v[1]}),
     "observed_range"),
    # Graph fingerprints come in versions 1 and 2 only.
    ("fingerprint v3", lambda c: c["graph"].update(fingerprint_version=3), "fingerprint_version"),
    # The best epoch is one of the epochs recorded (or 0, the starting weights).
    ("best epoch", lambda c: c["history"]["main"].update(
        best_epoch=len(c["history"]["main"]["val"]) + 1), "best_epoch"),
    # The spread of the graph weights is a standard deviation: not negative.
    ("weight stats", lambda c: c["graph"]["weight_stats"].update(fine=[0.5, -1.0]), "weight_stats"),
])
def test_impossible_settings_are_refused_as_damage(tmp_path: Path, model: Downscaler, what: str,
                                                    edit, match: str) -> None:
    # Guards the checks of model._check_settings, one per edit.
    path = _edited(tmp_path, model, edit)
    with pytest.raises(DataError, match=match):
        load(path)
