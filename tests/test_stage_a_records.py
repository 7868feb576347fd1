"""What ASYNC-MSGL's stage A records and says of its own days: the targets' hash, the
days it read, short runs and a checkpoint chosen without coarse validation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import xmsgl

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

FAST = {"method": "async-msgl", "epochs": 1, "pretrain_epochs": 1, "seed": 0, "hidden": 4,
        "window": 120, "stride": 120, "progress": False}


@pytest.fixture(scope="module")
def basin() -> xr.Dataset:
    ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2003-09-30", seed=0,
                                        reach_obs_share=0.3)
    ds["seg_tave_water"] = (ds["seg_temp_true"] + 0.5).astype("float32").assign_attrs(units="degC")
    return ds


def _fit(ds: xr.Dataset, **kw: object) -> tuple[xmsgl.Downscaler, list[str]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model = ds.msgl.fit(**{**FAST, **kw})
    return model, [str(w.message) for w in seen if issubclass(w.category, xmsgl.XmsglWarning)]


PERIODS = {"train": ("2001-10-01", "2002-09-30"), "val": ("2002-10-01", "2003-03-31"),
           "test": ("2003-04-01", "2003-09-30")}


@pytest.mark.parametrize("variable", ["seg_temp", "seg_tave_water"])
def test_the_targets_hash_follows_what_stage_a_learned_from(basin: xr.Dataset, variable: str) -> None:
    # Changed on stage A's days alone (before the training period), the coarse record
    # or the process model's values changed the weights but not targets_sha256.
    kw = {**PERIODS, "stage_a_variable": variable}
    a, _ = _fit(basin, **kw)
    early = basin["time"] < np.datetime64("2001-10-01")
    moved = basin.assign({variable: basin[variable].where(~early, basin[variable] + 4.0)})
    b, _ = _fit(moved, **kw)
    assert a.sha256 != b.sha256
    assert a.config["data"]["targets_sha256"] != b.config["data"]["targets_sha256"]
    assert variable in a.config["data"]["targets_days"]
    again, _ = _fit(basin, **kw)
    assert again.config["data"]["targets_sha256"] == a.config["data"]["targets_sha256"]
    # The other methods' records are as before: training and validation days only.
    msgl = basin.msgl.fit(**{**FAST, "method": "msgl", "pretrain_epochs": None, **PERIODS})
    assert msgl.config["data"]["targets_days"] == "training and validation"


def test_stage_a_in_short_runs_is_warned_of_as_training_is(basin: xr.Dataset) -> None:
    spans = [(f"2001-{m:02d}-01", f"2001-{m:02d}-05") for m in range(1, 11)]
    _, said = _fit(basin, **PERIODS, stage_a_period=spans)
    assert any("stage A's period given is 10 runs of consecutive days" in s for s in said), said
    _, said = _fit(basin, **PERIODS)
    assert not any("runs of consecutive days" in s for s in said), said


def test_coarse_only_stage_a_without_coarse_validation_says_so(basin: xr.Dataset) -> None:
    in_val = (basin["time"] >= np.datetime64("2002-10-01")) & (basin["time"] <= np.datetime64("2003-03-31"))
    ds = basin.assign(seg_temp=basin["seg_temp"].where(~in_val))
    model, said = _fit(ds, **PERIODS, stage_a_tasks=("coarse",))
    assert all(v is None for v in model.config["history"]["stage_a"]["val"])
    assert any("stage A of 'async-msgl', which trains the coarse task alone, keeps the epoch with "
               "the lowest training loss" in s for s in said), said
    # Scored on the fine observations through 'remap': nothing to say.
    _, said = _fit(ds, **PERIODS, stage_a_tasks=("coarse", "remap"))
    assert not any("which trains the coarse task alone" in s for s in said), said


def test_stage_a_records_the_days_it_read_targets_on(basin: xr.Dataset) -> None:
    # seg_temp ends before the last year: stage A's record, the warning and the
    # prediction's training periods named that year as read, and evaluate called
    # scores there in-sample.
    ds = basin.assign(seg_temp=basin["seg_temp"].where(basin["time"] < np.datetime64("2002-10-01")))
    model, said = _fit(ds, train=("2001-10-01", "2002-03-31"), val=("2002-04-01", "2002-09-30"))
    # Its days: every day outside validation (no test given), read up to the last
    # coarse value; the last year, after it, is not among them.
    assert [tuple(p) for p in model.config["stage_a"]["period"]] == [("2000-10-01", "2002-03-31")]
    assert any("outside the training period" in s and "2003" not in s for s in said), said
    pred = ds.msgl.downscale(model, time=("2002-10-01", "2003-09-30"))
    assert "2003" not in pred.attrs["xmsgl_train_periods"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", xmsgl.exceptions.InSampleWarning)
        ds.msgl.evaluate(pred.sel(time=slice("2002-10-01", None)))


def test_a_record_from_before_stage_a_was_hashed_checks_out_on_its_data(basin: xr.Dataset) -> None:
    # Records written before stage A's variable joined the targets' sha256 say so in
    # targets_days; check_data said their own data were "DIFFERENT".
    from xmsgl.convention import REACH, SEG, validate
    from xmsgl.model import _data_record, in_id_order, target_array
    from xmsgl.periods import period_mask

    model, _ = _fit(basin, **PERIODS)
    assert model.check_data(basin)["targets"] is True
    ds = in_id_order(validate(basin))
    time = ds.indexes["time"]
    days = np.zeros(len(time), bool)
    for key in ("train", "val"):
        days |= period_mask(time, [tuple(s) for s in model.config["periods"][key]], key)
    old = _data_record(ds, target_array(ds, "reach_temp", REACH), target_array(ds, "seg_temp", SEG),
                       days)
    assert old["targets_days"] == "training and validation"
    model.config["data"] = {**model.config["data"], **{k: old[k] for k in ("targets_sha256", "targets_days")}}
    assert model.check_data(basin)["targets"] is True


def test_the_data_record_covers_every_day_stage_a_could_read(basin: xr.Dataset) -> None:
    # The process model's record starts after stage A's first window: the forcings of
    # that window's earlier days (the warm-up of its first targets) and a value added
    # before the variable's first one both change a refit, and check_data said "the same".
    time = basin.indexes["time"]
    late = basin.assign(seg_tave_water=basin["seg_tave_water"].where(
        basin["time"] >= np.datetime64("2001-01-01")))
    kw = {**PERIODS, "stage_a_variable": "seg_tave_water", "stage_a_tasks": ("coarse", "remap")}
    model, _ = _fit(late, **kw)
    stage = model.config["stage_a"]
    assert [tuple(p) for p in stage["period"]] == [("2001-01-01", "2002-09-30")]
    assert [tuple(p) for p in stage["allowed"]] == [("2000-10-01", "2002-09-30")]
    assert tuple(stage["inputs"][0])[0] == "2000-10-01"  # the first window, warm-up included
    assert model.check_data(late) == {"targets": True, "inputs": True}
    day = int(time.get_loc(np.datetime64("2000-12-15")))
    forcing = late.copy(deep=True)
    forcing["seg_air_temp"].values[:, day] += 5.0
    assert model.check_data(forcing) == {"targets": True, "inputs": False}
    value = late.copy(deep=True)
    value["seg_tave_water"].values[0, int(time.get_loc(np.datetime64("2000-11-15")))] = 8.0
    assert model.check_data(value) == {"targets": False, "inputs": True}
    # Both do change a refit (what the record is for).
    for other in (forcing, value):
        refit, _ = _fit(other, **kw)
        assert refit.sha256 != model.sha256
    # Saved and loaded, the record reads the same.
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "m")
        assert xmsgl.load(Path(tmp) / "m").check_data(forcing)["inputs"] is False
        # Days that are no spans are refused at load, as the period's are.
        import json

        cfg_file = Path(tmp) / "m" / "config.json"
        cfg = json.loads(cfg_file.read_text())
        cfg["stage_a"]["inputs"] = 5
        cfg_file.write_text(json.dumps(cfg))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", xmsgl.XmsglWarning)  # the edited config is named
            with pytest.raises(xmsgl.DataError, match="stage_a entry"):
                xmsgl.load(Path(tmp) / "m")
