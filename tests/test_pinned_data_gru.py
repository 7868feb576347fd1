"""Pinned: the Delaware readers' observation helpers (a split segment's mean, several
sites on a reach, the time holdout carried forward, a site on a reach junction), a
one-day Delaware period, the synthetic generator's storm runoff on freezing days, and
the per-reach GRU's refusal of another format and its validation RMSE, best epoch and
checkpoint period.

The helpers are fed tables of a few rows, and the period check is stopped before any
file is read, so these run everywhere without the mirror files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xmsgl.datasets import drb
from xmsgl.exceptions import PeriodError


def _coarse(seg_ids=(10, 20), lengths=(300.0, 300.0)) -> drb._Coarse:
    """Two segments; segment 10 is split in the subsegments '10a' and '10b'."""
    return drb._Coarse(
        seg_ids=np.asarray(seg_ids, dtype=np.int64), seg_to=np.array([20, 0], dtype=np.int64),
        seg_length=np.asarray(lengths, dtype=float),
        sub2seg={"10a": 10, "10b": 10, "20": 20}, sub_offset={}, entry_sub={})


def _obs(rows) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["subseg_id", "date", "mean_temp_c", "site_id",
                                        "in_time_holdout", "in_space_holdout"])
    return frame.assign(date=pd.to_datetime(frame["date"]))


def test_split_segment_day_is_the_mean_of_its_pieces() -> None:
    # Guards the coarse value of a split segment being its pieces' mean (not one of them,
    # nor their maximum).
    times = pd.date_range("1980-07-01", "1980-07-02")
    obs = _obs([("10a", "1980-07-01", 10.0, "", False, False),
                ("10b", "1980-07-01", 14.0, "", False, False),
                ("20", "1980-07-02", 15.0, "", False, False)])
    temp, _, _, _ = drb._coarse_obs(obs, _coarse(), times)
    np.testing.assert_array_equal(temp, np.array([[12.0, np.nan], [np.nan, 15.0]], dtype=np.float32))


def test_time_holdout_carries_the_nearest_earlier_observed_day() -> None:
    # Guards the holdout of days without observations: taken from the day before (ffill
    # first), the earliest days only from the first observed day.
    times = pd.date_range("1980-07-01", "1980-07-06")
    obs = _obs([("20", "1980-07-02", 15.0, "", False, False),
                ("20", "1980-07-04", 15.0, "", True, False),
                ("20", "1980-07-06", 15.0, "", False, False)])
    _, holdout, _, _ = drb._coarse_obs(obs, _coarse(), times)
    # 07-01 lies before the first observed day (not held out); 07-03 follows 07-02
    # (not held out), 07-05 follows 07-04 (held out).
    np.testing.assert_array_equal(holdout, [False, False, False, True, True, False])


def test_several_sites_on_one_reach_give_their_mean() -> None:
    # Guards the fine value of a reach-day with two sites being their mean, not the first.
    times = pd.date_range("1980-07-01", "1980-07-01")
    site_obs = pd.DataFrame({"site_id": ["a", "b", "c"],
                             "date": pd.to_datetime(["1980-07-01"] * 3),
                             "mean_temp_c": [10.0, 13.0, 20.0]})
    placed = pd.DataFrame({"site_id": ["a", "b", "c"], "comid": [101, 101, 102]})
    temp = drb._fine_obs(site_obs, placed, np.array([100, 101, 102]), times)
    np.testing.assert_array_equal(temp[:, 0], np.array([np.nan, 11.5, 20.0], dtype=np.float32))


def test_site_on_a_reach_junction_goes_to_the_downstream_reach() -> None:
    # Guards the distance walk's tie rule (searchsorted side="left"): a site exactly
    # one reach length above the outlet lies on the outlet reach, not the one above.
    coarse = _coarse(seg_ids=(20,), lengths=(300.0,))
    fine = drb._Fine(comid=np.array([1, 2, 3]), reach_seg=np.array([20, 20, 20]),
                     reach_to=np.array([2, 3, 0]), reach_length=np.array([100.0, 100.0, 100.0]),
                     topo_source=np.ones(3, dtype=np.int8), order={20: [1, 2, 3]})
    sites = pd.DataFrame({"site_id": ["s0", "s1", "s2"], "subseg_id": ["20"] * 3,
                          "fish_dist_to_outlet_m": [100.0, 150.0, 200.0]})
    site_obs = pd.DataFrame({"site_id": ["s0", "s1", "s2"]})
    accepted = pd.DataFrame({"site_id": ["s0", "s1", "s2"], "seg": [20, 20, 20]})
    nwis = pd.DataFrame({"nwis_site_code": pd.Series([], dtype=str),
                         "comid": pd.Series([], dtype=np.int64)})
    placed = drb._place_sites(site_obs, sites, accepted, nwis, coarse, fine)
    assert dict(zip(placed["site_id"], placed["comid"])) == {"s0": 3, "s1": 2, "s2": 2}
    assert (placed["how"] == drb._SITE_DISTANCE).all()


class _PastThePeriodChecks(Exception):
    """Raised where open_drb goes on to read files: the period was accepted."""


def test_one_day_period_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards start == end being one day, not a period that ends before it starts (the
    # build is stopped where it would read the files).
    def stop(cache: object) -> None:
        raise _PastThePeriodChecks

    monkeypatch.setattr(drb, "_cache_dir", stop)
    with pytest.raises(_PastThePeriodChecks):
        drb.open_drb(start="1980-07-01", end="1980-07-01", progress=False)
    with pytest.raises(PeriodError, match="ends before it starts"):
        drb.open_drb(start="1980-07-02", end="1980-07-01", progress=False)


def test_synthetic_storm_runoff_on_freezing_days_is_not_below_zero() -> None:
    # Guards np.maximum(air, 0) in the generator's storm runoff: rain on a freezing day
    # enters at 0 degC, not at the air temperature. In this mild three-segment winter
    # (seed 0) no reach-day then reaches the ice floor; runoff at the sub-zero air
    # temperature froze 3 % of them.
    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2000-12-01", end="2001-02-28", seed=0)
    assert float((ds["reach_air_temp"] < 0).mean()) > 0.1  # there are freezing days
    temp = ds["reach_temp_true"].values
    assert float((temp <= 0).mean()) < 0.005


# --------------------------------------------------------------------------------------
# the per-reach GRU

TRAIN, VAL, TEST = ("2000-10-01", "2001-09-30"), ("2001-10-01", "2002-03-31"), ("2002-04-01", "2002-09-30")


@pytest.fixture(scope="module")
def gru_basin() -> xr.Dataset:
    import xmsgl

    return xmsgl.datasets.synthetic_basin(n_segments=3, start="2000-10-01", end="2002-09-30", seed=2,
                                          reach_obs_share=0.3)


@pytest.fixture(scope="module")
def gru_model(gru_basin: xr.Dataset):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from xmsgl.nn.gru import fit_gru

    return fit_gru(gru_basin, train=TRAIN, val=VAL, test=TEST, epochs=2, hidden=3, window=90,
                   batch_size=32, progress=False)


def test_gru_learns_from_the_training_days_observations_only(gru_basin: xr.Dataset, gru_model) -> None:
    # Guards the targets of the validation and test days being masked out of training
    # (their count and the target scaler are the training days' alone).
    obs = gru_basin["reach_temp"].sel(time=slice(*TRAIN)).values
    obs = obs[np.isfinite(obs)]
    assert gru_model.config["n_fine_train_obs"] == obs.size
    assert gru_model.config["targets"]["mean"] == pytest.approx(float(obs.mean()), rel=1e-6)


def test_gru_validation_rmse_is_that_of_its_predictions_on_the_validation_days(
        gru_basin: xr.Dataset, gru_model) -> None:
    # Guards the recorded validation RMSE: in degC (the target mean added back), on the
    # validation period (not the test period), for the epoch kept, which is the lowest.
    hist = gru_model.config["history"]
    assert hist["best_epoch"] == int(np.nanargmin(np.array(hist["val"], dtype=float))) + 1
    pred = gru_model.predict(gru_basin, time=VAL)
    obs = gru_basin["reach_temp"].sel(time=pred["time"])
    err = (pred - obs).values
    rmse = math.sqrt(float(np.nanmean(err ** 2)))
    assert hist["val"][hist["best_epoch"] - 1] == pytest.approx(rmse, rel=1e-4)


def test_gru_prediction_names_its_validation_period(gru_basin: xr.Dataset, gru_model) -> None:
    # Guards xmsgl_val_periods on GRU predictions (the accessor's in-sample warning reads it).
    pred = gru_model.predict(gru_basin, time=TEST)
    assert pred.attrs["xmsgl_val_periods"] == "/".join(VAL)
    assert pred.attrs["xmsgl_train_periods"] == "/".join(TRAIN)


def test_gru_warns_when_the_validation_period_has_no_observation(gru_basin: xr.Dataset) -> None:
    # Guards the warning that the checkpoint is chosen by training loss.
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from xmsgl.exceptions import XmsglWarning
    from xmsgl.nn.gru import fit_gru

    ds = gru_basin.copy()
    val_days = (ds["time"] >= np.datetime64(VAL[0])) & (ds["time"] <= np.datetime64(VAL[1]))
    ds["reach_temp"] = ds["reach_temp"].where(~val_days)
    with pytest.warns(XmsglWarning, match="holds no fine observation"):
        model = fit_gru(ds, train=TRAIN, val=VAL, test=TEST, epochs=1, hidden=2, window=90,
                        batch_size=64, progress=False)
    assert model.config["history"]["val"] == [None]


def test_load_gru_refuses_another_format(gru_model, tmp_path: Path) -> None:
    # Guards load_gru's format check: a folder of another method is not read as a GRU.
    from xmsgl.exceptions import ModelMismatchError
    from xmsgl.nn.gru import load_gru

    path = gru_model.save(tmp_path / "gru.xmsgl")
    cfg = path / "config.json"
    config = json.loads(cfg.read_text(encoding="utf-8"))
    config["format"] = "xmsgl-model"
    cfg.write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelMismatchError, match="holds format 'xmsgl-model', not 'xmsgl-gru'"):
        load_gru(path)


def test_loading_a_gru_leaves_the_callers_random_stream_alone(gru_model, tmp_path: Path) -> None:
    import torch

    import xmsgl

    path = gru_model.save(tmp_path / "gru.xmsgl")
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    assert xmsgl.load(path).weights_sha256 == gru_model.weights_sha256
    assert torch.equal(torch.rand(3), expected)


def test_check_data_reads_the_grus_record(gru_basin: xr.Dataset, gru_model) -> None:
    from xmsgl.model import check_data

    assert check_data(gru_model, gru_basin) == {"targets": True, "inputs": True}
    changed = gru_basin.copy(deep=True)
    changed["reach_air_temp"].values[0, 10] += 0.5  # a training day's forcing
    assert check_data(gru_model, changed) == {"targets": True, "inputs": False}
    observed = tuple(int(i) for i in np.argwhere(np.isfinite(gru_basin["reach_temp"].values[:, :300]))[0])
    changed = gru_basin.copy(deep=True)
    changed["reach_temp"].values[observed] += 0.5
    assert check_data(gru_model, changed) == {"targets": False, "inputs": True}


def test_gru_output_lists_its_days_short_of_warm_up(gru_basin: xr.Dataset, gru_model) -> None:
    import warnings

    from xmsgl.exceptions import ColdStartWarning

    # The first month of the record: every day short of the 180-day warm-up, as the
    # warning says and the output lists; a month a year in: none.
    with pytest.warns(ColdStartWarning, match="xmsgl_short_warmup"):
        first = gru_model.predict(gru_basin, time=("2000-10-01", "2000-10-31"))
    assert first.attrs["xmsgl_short_warmup"] == "2000-10-01/2000-10-31"
    with warnings.catch_warnings():
        warnings.simplefilter("error", ColdStartWarning)
        later = gru_model.predict(gru_basin, time=("2001-10-01", "2001-10-31"))
    assert "xmsgl_short_warmup" not in later.attrs


def test_gru_refuses_an_input_static_here_that_was_on_time_at_fit(gru_basin: xr.Dataset, gru_model) -> None:
    from xmsgl.exceptions import ModelMismatchError

    static = gru_basin.assign(reach_air_temp=gru_basin["reach_air_temp"].isel(time=0, drop=True))
    with pytest.raises(ModelMismatchError, match="'reach_air_temp' is static here but was on time"):
        gru_model.predict(static)


def test_gru_refuses_inputs_in_other_units_with_the_factor(gru_basin: xr.Dataset, gru_model) -> None:
    from xmsgl.exceptions import ModelMismatchError

    name = next(v for v in gru_model.config["variables"]["units"]
                if gru_model.config["variables"]["units"][v] == "W m-2")
    daily = gru_basin.assign({name: (gru_basin[name] * 0.0864).assign_attrs(units="MJ m-2 d-1")})
    with pytest.raises(ModelMismatchError, match=rf"'{name}' has units 'MJ m-2 d-1'; the GRU was fitted with "
                                                 rf"'W m-2': convert it \(ds\['{name}'\] = ds\['{name}'\] \* "
                                                 r"11.5740740741, then"):
        gru_model.predict(daily)
    same = gru_basin.assign({name: gru_basin[name].assign_attrs(units="J m-2 s-1")})
    with pytest.raises(ModelMismatchError, match=rf"it is the same unit: set ds\['{name}'\].attrs\['units'\] "
                                                 r"= 'W m-2' or refit"):
        gru_model.predict(same)


def test_gru_sha256_covers_its_settings(gru_basin: xr.Dataset, gru_model, tmp_path: Path) -> None:
    import xmsgl

    folder = gru_model.save(tmp_path / "gru")
    assert xmsgl.load(folder).sha256 == gru_model.sha256
    cfg = json.loads((folder / "config.json").read_text())
    cfg["targets"]["mean"] += 8.0  # what predict adds back: the predictions move by 8 degC
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.warns(xmsgl.XmsglWarning, match=r"edited after the model was saved \(changed \['targets'\]\)"):
        edited = xmsgl.load(folder)
    assert edited.sha256 != gru_model.sha256
    assert edited.predict(gru_basin).attrs["xmsgl_model_sha256"] == edited.sha256


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.pop("reach_ids"), "KeyError"),
    (lambda c: c.pop("targets"), "KeyError"),
    (lambda c: c["hyperparameters"].update(chunk=0), "hyperparameters.chunk is 0"),
    (lambda c: c["variables"].pop("units"), "variables.units must give every input"),
    (lambda c: c["variables"]["std"].update(reach_air_temp=0.0), "'reach_air_temp' has mean .* std 0.0"),
    (lambda c: c["targets"].update(std="abc"), "targets has mean .* std 'abc'"),
])
def test_gru_settings_that_predict_cannot_use_are_refused_at_load(gru_model, tmp_path: Path, edit,
                                                                   match: str) -> None:
    import xmsgl
    from xmsgl.exceptions import DataError

    folder = gru_model.save(tmp_path / "gru")
    cfg = json.loads((folder / "config.json").read_text())
    edit(cfg)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match=f"is not a GRU model's settings: .*{match}"):
        xmsgl.load(folder)


@pytest.mark.parametrize("kwargs, match", [({"seed": "3"}, "seed='3'"), ({"seed": True}, "seed=True"),
                                           ({"progress": "no"}, "progress='no'")])
def test_gru_and_baseline_fits_check_seed_and_progress(gru_basin: xr.Dataset, kwargs, match: str) -> None:
    from xmsgl.baselines import fit_baseline
    from xmsgl.exceptions import ParameterError
    from xmsgl.nn.gru import fit_gru

    with pytest.raises(ParameterError, match=match):
        fit_gru(gru_basin, train=TRAIN, epochs=1, **kwargs)
    if "seed" in kwargs:
        with pytest.raises(ParameterError, match=match):
            fit_baseline(gru_basin, "idw", **kwargs)


def test_gru_outputs_name_the_held_out_days_the_seed_and_the_inputs(gru_basin: xr.Dataset, gru_model) -> None:
    out = gru_model.predict(gru_basin.assign_attrs(title="a basin"))
    assert out.attrs["xmsgl_test_periods"] == f"{TEST[0]}/{TEST[1]}"
    assert out.attrs["xmsgl_seed"] == 0 and out.attrs["xmsgl_input_title"] == "a basin"
