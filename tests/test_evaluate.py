"""Cross-validation, the variance decomposition and sparsity sweeps."""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pytest
import xarray as xr

import xmsgl
from xmsgl.evaluate import (
    cross_validate,
    cv_partitions,
    plot_sparsity,
    sparsity_sweep,
    subbasins,
    variance_decomposition,
)
from xmsgl.exceptions import DataError, ParameterError


def _fake_trainer(sigma_p: float, sigma_s: float, mu: float = 2.0):
    """score = mu + a_partition + e_seed with known variances.

    Both are drawn from the held-out blocks (and the seed): the same held-out set
    is the same training data, so it gets the same score, as a real fit would.
    """

    def trainer(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> dict[str, float]:
        held = sorted(json.loads(test_ds.attrs["groups"]))
        a = np.random.default_rng([7, *held]).normal(0.0, sigma_p) if sigma_p else 0.0
        e = np.random.default_rng([8, seed, *held]).normal(0.0, sigma_s)
        return {"rmse": mu + a + e}

    return trainer


@pytest.fixture(scope="module")
def gauged_month() -> xr.Dataset:
    """68 reaches, every one gauged, over 31 days: many blocks for blocking="reach"."""
    return xmsgl.datasets.synthetic_basin(n_segments=8, start="2001-01-01", end="2001-01-31", seed=2,
                                          reach_obs_share=1.0)


@pytest.fixture(scope="module")
def five_years() -> xr.Dataset:
    """The network of small_basin over five water years."""
    return xmsgl.datasets.synthetic_basin(n_segments=20, start="2000-10-01", end="2005-09-30", seed=1,
                                          reach_obs_share=0.3)


def _partition(parts: list, repeat: int) -> frozenset:
    return frozenset(frozenset(p.groups) for p in parts if p.repeat == repeat)


@pytest.mark.parametrize("blocking", ["water_year", "subbasin"])
def test_partitions_hold_out_each_block_once(small_basin: xr.Dataset, blocking: str) -> None:
    parts = cv_partitions(small_basin, folds=3, repeats=2, blocking=blocking)
    assert [(p.repeat, p.fold) for p in parts] == [(r, f) for r in range(2) for f in range(3)]
    for r in range(2):
        cells = [p.reaches[:, None] & p.days[None, :] for p in parts if p.repeat == r]
        total = np.sum(cells, axis=0)
        assert total.max() == 1 and total.min() == 1  # disjoint and covering
    assert parts[0].groups != parts[3].groups or parts[1].groups != parts[4].groups


@pytest.mark.parametrize(("kwargs", "n_distinct"), [
    ({"folds": 5, "repeats": 2, "blocking": "water_year"}, 1),  # 5 blocks in 5 folds: one way
    ({"folds": 3, "repeats": 5, "blocking": "subbasin"}, 3),    # 4 sub-basins in 3 folds
])
def test_repeats_never_repeat_a_partition(five_years: xr.Dataset, kwargs: dict, n_distinct: int) -> None:
    with pytest.warns(xmsgl.XmsglWarning, match=f"only {n_distinct} distinct partitions? exists?.*"
                      f"ask for repeats={n_distinct}"):
        parts = cv_partitions(five_years, **kwargs)
    assert len(parts) == n_distinct * kwargs["folds"]
    assert sorted({p.repeat for p in parts}) == list(range(n_distinct))
    assert len({_partition(parts, r) for r in range(n_distinct)}) == n_distinct


def test_a_repeated_deal_is_drawn_again_and_new_deals_stay_as_they_were(five_years: xr.Dataset) -> None:
    from xmsgl.evaluate import _assign

    # 5 water years in 2 folds can be dealt 10 ways: 6 repeats need a few redraws.
    parts = cv_partitions(five_years, folds=2, repeats=6, blocking="water_year", seed=3)
    assert len({_partition(parts, r) for r in range(6)}) == 6
    # Repeats whose first deal was new are the deals seeded by (seed, repeat), as before.
    years, days = np.unique(xmsgl.evaluate.water_year(five_years.time.values), return_counts=True)
    first = [_assign(years, days.astype(float), 2, np.random.default_rng([3, r])) for r in range(6)]
    plain = [frozenset(frozenset(years[f == k].tolist()) for k in range(2)) for f in first]
    assert len(set(plain)) < 6  # this seed does deal copies
    assert _partition(parts, 0) == plain[0]
    for r in range(1, 6):
        if plain[r] not in plain[:r]:
            assert _partition(parts, r) == plain[r]


def test_subbasins_are_connected_upstream_areas(small_basin: xr.Dataset) -> None:
    label = subbasins(small_basin, 6).values
    to = small_basin.reach_to.values
    pos = {int(r): i for i, r in enumerate(small_basin.reach.values)}
    for g in np.unique(label):
        members = np.flatnonzero(label == g)
        # A connected upstream area drains out through exactly one reach.
        leaving = [i for i in members if to[i] == 0 or label[pos[int(to[i])]] != g]
        assert len(leaving) == 1, g
    assert 4 <= np.unique(label).size <= 9


def test_too_many_folds_is_an_error(small_basin: xr.Dataset) -> None:
    with pytest.raises(xmsgl.DataError, match="finds 3 observed reaches but folds=5"):
        cross_validate(small_basin, "climatology", folds=5, blocking="reach")
    with pytest.raises(xmsgl.DataError, match="finds 4 water years"):
        cv_partitions(small_basin, folds=5, blocking="water_year")


def test_trainer_sees_masked_data_and_scores_truth(small_basin: xr.Dataset) -> None:
    seen: list[tuple[int, int, int]] = []

    def trainer(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> xr.DataArray:
        held = test_ds["target"].notnull()
        assert int(held.sum()) > 0
        # No held-out observation reaches the trainer; the target is the truth.
        assert not bool((train_ds.reach_temp.notnull() & held).any())
        held_reaches = np.asarray(json.loads(test_ds.attrs["groups"]))
        assert set(held_reaches) <= set(small_basin.reach.values.tolist())
        seen.append((test_ds.attrs["repeat"], test_ds.attrs["fold"], seed))
        return small_basin.reach_temp_true + 0.5

    before = small_basin.copy(deep=True)
    cv = cross_validate(small_basin, "x", folds=3, repeats=1, seeds=[4, 9], blocking="reach",
                        trainer=trainer)
    xr.testing.assert_identical(before, small_basin)
    assert len(seen) == 6
    assert dict(cv.rmse.sizes) == {"repeat": 1, "fold": 3, "seed": 2}
    assert cv.seed.values.tolist() == [4, 9]
    np.testing.assert_allclose(cv.rmse.values, 0.5, atol=1e-5)
    np.testing.assert_array_equal(cv.n.values, 1461)  # one held-out reach, every day
    # Every partition trains its seed replicates with seeds of its own (nested in the
    # partitions, as variance_decomposition reads them); the same seed in every fold
    # made the design crossed.
    from xmsgl.evaluate import training_seed

    want = [(0, f, training_seed(s, 0, f)) for f in range(3) for s in (4, 9)]
    assert sorted(seen) == sorted(want)
    assert len({seed for *_, seed in seen}) == 6
    np.testing.assert_array_equal(cv.train_seed.sel(seed=9).values[0], [training_seed(9, 0, f) for f in range(3)])
    assert cv.attrs["target"] == "reach_temp_true" and cv.rmse.attrs["units"] == "degC"


@pytest.mark.parametrize("blocking", ["reach", "subbasin"])
def test_spatial_blocking_hides_the_held_out_sites_coarse_observations(small_basin: xr.Dataset,
                                                                       blocking: str) -> None:
    # Coarse gauges are often the fine ones (the Delaware seg_temp is the mean of its
    # reaches' observations): a held-out reach's segment kept its seg_temp by default.
    kept: dict[bool, list[bool]] = {True: [], False: []}

    def trainer(mask: bool) -> Any:
        def train(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> float:
            held = np.asarray(test_ds["target"].notnull().any("time"))
            segs = np.unique(small_basin.reach_seg.values[held])
            if bool(small_basin.seg_temp.sel(seg=segs).notnull().any()):
                kept[mask].append(bool(train_ds.seg_temp.sel(seg=segs).notnull().any()))
            # The other segments keep theirs.
            others = ~small_basin.seg.isin(segs)
            xr.testing.assert_equal(train_ds.seg_temp.where(others), small_basin.seg_temp.where(others))
            return 1.0
        return train

    cv = cross_validate(small_basin, "x", folds=2, repeats=1, seeds=1, blocking=blocking,
                        trainer=trainer(True), score="score")
    assert cv.attrs["mask_coarse"] == 1 and "mask_coarse=True" in cv.attrs["history"]
    cv = cross_validate(small_basin, "x", folds=2, repeats=1, seeds=1, blocking=blocking,
                        trainer=trainer(False), score="score", mask_coarse=False)
    assert cv.attrs["mask_coarse"] == 0
    assert kept[True] and not any(kept[True])
    assert kept[False] and all(kept[False])


@pytest.mark.parametrize("blocking", ["reach", "subbasin", "water_year"])
def test_a_stage_a_record_is_hidden_with_the_coarse_observations(small_basin: xr.Dataset,
                                                                  blocking: str) -> None:
    # ASYNC-MSGL's stage A read a longer coarse record named by stage_a_variable at
    # the held-out sites' segments: held out at one scale, kept in stage A.
    ds = small_basin.assign(seg_long=small_basin.seg_temp_true)
    seen: dict[str, list[bool]] = {"held": [], "other": []}

    def trainer(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> float:
        held = test_ds["target"].notnull()
        if blocking == "water_year":
            days = held.any("reach")
            seen["held"].append(bool(train_ds.seg_long.isel(time=days.values).notnull().any()))
            seen["other"].append(bool(train_ds.seg_long.isel(time=~days.values).notnull().all()))
        else:
            segs = np.unique(ds.reach_seg.values[np.asarray(held.any("time"))])
            seen["held"].append(bool(train_ds.seg_long.sel(seg=segs).notnull().any()))
            seen["other"].append(bool(train_ds.seg_long.drop_sel(seg=segs).notnull().all()))
        return 1.0

    cross_validate(ds, "x", folds=2, repeats=1, seeds=1, blocking=blocking, trainer=trainer,
                   score="score", fit_kwargs={"stage_a_variable": "seg_long"})
    assert seen["held"] and not any(seen["held"]) and all(seen["other"])
    seen = {"held": [], "other": []}
    cross_validate(ds, "x", folds=2, repeats=1, seeds=1, blocking=blocking, trainer=trainer,
                   score="score")
    assert seen["held"] and all(seen["held"])  # not named: not a target, left alone
    if blocking != "water_year":
        seen = {"held": [], "other": []}
        cross_validate(ds, "x", folds=2, repeats=1, seeds=1, blocking=blocking, trainer=trainer,
                       score="score", fit_kwargs={"stage_a_variable": "seg_long"}, mask_coarse=False)
        assert seen["held"] and all(seen["held"])


def test_mask_coarse_names_the_variables_to_hide(small_basin: xr.Dataset) -> None:
    # A process model's output given as stage_a_variable exists at every segment when
    # downscaling: ["seg_temp"] hides the observations and keeps it.
    ds = small_basin.assign(seg_long=small_basin.seg_temp_true)
    seen: list[tuple[bool, bool]] = []

    def trainer(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> float:
        segs = np.unique(ds.reach_seg.values[np.asarray(test_ds["target"].notnull().any("time"))])
        seen.append((bool(train_ds.seg_temp.sel(seg=segs).notnull().any()),
                     bool(train_ds.seg_long.sel(seg=segs).notnull().all())))
        return 1.0

    kw = {"folds": 2, "repeats": 1, "seeds": 1, "blocking": "reach", "trainer": trainer,
          "score": "score", "fit_kwargs": {"stage_a_variable": "seg_long"}}
    cv = cross_validate(ds, "x", mask_coarse=["seg_temp"], **kw)
    assert seen and all(s == (False, True) for s in seen)
    assert cv.attrs["mask_coarse"] == 1 and cv.attrs["mask_coarse_variables"] == "seg_temp"
    assert "mask_coarse=['seg_temp']" in cv.attrs["history"]
    assert cross_validate(ds, "x", **kw).attrs["mask_coarse_variables"] == "seg_temp, seg_long"
    off = cross_validate(ds, "x", mask_coarse=False, **kw)
    assert off.attrs["mask_coarse"] == 0 and off.attrs["mask_coarse_variables"] == ""
    for bad in (["nope"], ["reach_temp"], 3, [None]):
        with pytest.raises(ParameterError, match="mask_coarse"):
            cross_validate(ds, "x", mask_coarse=bad, **kw)


@pytest.mark.parametrize("blocking", ["reach", "subbasin"])
def test_data_without_coarse_observations_cross_validate(small_basin: xr.Dataset, blocking: str) -> None:
    # mask_coarse=True read seg_temp whether or not the dataset had it (KeyError).
    cv = cross_validate(small_basin.drop_vars("seg_temp"), "climatology", folds=2, repeats=1,
                        seeds=1, blocking=blocking)
    assert np.isfinite(cv.rmse.values).all()
    assert cv.attrs["mask_coarse"] == 0 and cv.attrs["mask_coarse_variables"] == ""


def test_water_year_blocking_checks_the_names_it_ignores(small_basin: xr.Dataset) -> None:
    with pytest.raises(ParameterError, match="mask_coarse"):
        cross_validate(small_basin, "climatology", folds=2, repeats=1, seeds=1,
                       blocking="water_year", mask_coarse=["nope"])
    with pytest.raises(ParameterError, match="True, False or a list"):
        cross_validate(small_basin, "climatology", folds=2, repeats=1, seeds=1,
                       blocking="reach", mask_coarse=1)


def test_a_stage_a_record_hidden_in_full_is_named(small_basin: xr.Dataset) -> None:
    # The explanation named seg_temp only; a stage-A record that lay wholly in the
    # held-out sites' segments left the fit's error unexplained.
    gauged = small_basin.reach_temp.notnull().any("time")
    seg = int(np.unique(small_basin.reach_seg.where(gauged, drop=True).values)[0])
    ds = small_basin.assign(seg_long=small_basin.seg_temp_true.where(small_basin.seg == seg))

    def trainer(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> float:
        if not bool(train_ds.seg_long.notnull().any()):
            raise DataError("stage_a_variable 'seg_long' has no value in stage A's period")
        return 1.0

    with pytest.raises(DataError, match=r"hid every value of \['seg_long'\].*mask_coarse=\['seg_temp'\]"):
        cross_validate(ds, "x", folds=2, repeats=1, seeds=1, blocking="reach", trainer=trainer,
                       score="score", fit_kwargs={"stage_a_variable": "seg_long"})


def test_folds_left_without_coarse_observations_say_why(small_basin: xr.Dataset) -> None:
    # Where every coarse observation lies in the segments of held-out reaches, a method
    # that needs them failed with "no coarse observations", naming neither cause nor fix.
    gauged = small_basin.reach_temp.notnull().any("time")
    segs = np.unique(small_basin.reach_seg.where(gauged, drop=True).values)
    with_obs = [s for s in segs if bool(small_basin.seg_temp.sel(seg=s).notnull().any())]
    one = small_basin.assign(seg_temp=small_basin.seg_temp.where(small_basin.seg == with_obs[0]))

    def trainer(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> float:
        if not bool(train_ds.seg_temp.notnull().any()):
            raise DataError("no coarse observations ('seg_temp' is all NaN)")
        return 1.0

    with pytest.raises(DataError, match=r"no coarse observations .*mask_coarse=True hid every coarse "
                                        r"observation.*pass mask_coarse=False \(xmsgl evaluate --keep-coarse\)"):
        cross_validate(one, "x", folds=2, repeats=1, seeds=1, blocking="reach", trainer=trainer,
                       score="score")
    cv = cross_validate(one, "x", folds=2, repeats=1, seeds=1, blocking="reach", trainer=trainer,
                        score="score", mask_coarse=False)
    assert (cv.score == 1.0).all()


def test_water_year_blocking_hides_coarse_targets(small_basin: xr.Dataset) -> None:
    def trainer(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> float:
        days = test_ds["target"].notnull().any("reach")
        assert not bool(train_ds.seg_temp.where(days).notnull().any())
        assert json.loads(test_ds.attrs["test_period"])
        return 1.0

    cv = cross_validate(small_basin, "x", folds=2, repeats=1, seeds=2, blocking="water_year",
                        trainer=trainer, score="score")
    assert cv.attrs["score"] == "score" and (cv.score == 1.0).all()
    # A number is the score `score` names: the default, "rmse", used to be refused
    # ("not among the trainer's scores ['score']").
    cv = cross_validate(small_basin, "x", folds=2, repeats=1, seeds=2, blocking="water_year",
                        trainer=trainer)
    assert cv.attrs["score"] == "rmse" and (cv.rmse == 1.0).all()


def test_a_negative_partition_estimate_is_set_to_zero_and_kept() -> None:
    # Partition means all alike, seeds apart: (MSB - MSW) / K < 0, set to 0 in the
    # table (which then biases it upwards) and kept as it was in an attribute.
    y = np.array([[[1.0, 2.0], [2.0, 1.0], [1.1, 1.9], [1.9, 1.1]]])  # (repeat, fold, seed)
    scores = xr.DataArray(y, dims=("repeat", "fold", "seed"), name="rmse", attrs={"units": "degC"})
    vd = variance_decomposition(scores, n_boot=50)
    msw = ((y - 1.5) ** 2).sum() / (4 * 1)
    assert float(vd.msw.sel(stat="estimate")) == pytest.approx(msw)
    assert float(vd.msb.sel(stat="estimate")) == pytest.approx(0.0, abs=1e-12)
    assert float(vd.sigma2_partition.sel(stat="estimate")) == 0.0
    assert vd.attrs["sigma2_partition_unclipped"] == pytest.approx(-msw / 2)
    # Positive, it is the estimate itself.
    y2 = y + np.array([0.0, 1.0, 2.0, 3.0])[None, :, None]
    vd2 = variance_decomposition(xr.DataArray(y2, dims=("repeat", "fold", "seed"), name="rmse"), n_boot=50)
    assert vd2.attrs["sigma2_partition_unclipped"] == pytest.approx(
        float(vd2.sigma2_partition.sel(stat="estimate")))


def test_variance_decomposition_recovers_known_variances(gauged_month: xr.Dataset) -> None:
    cv = cross_validate(gauged_month, "fake", folds=2, repeats=40, seeds=6, blocking="reach",
                        trainer=_fake_trainer(sigma_p=1.0, sigma_s=0.5))
    vd = variance_decomposition(cv, n_boot=400)
    est = vd.sel(stat="estimate")
    assert vd.attrs["n_partitions"] == 80 and vd.attrs["n_seeds"] == 6
    assert vd.attrs["n_duplicates_dropped"] == 0 and vd.attrs["seed_component"] == "estimated"
    assert float(est.sigma2_seed) == pytest.approx(0.25, rel=0.2)
    assert float(est.sigma2_partition) == pytest.approx(1.0, abs=0.45)
    assert float(est.icc) == pytest.approx(0.8, abs=0.1)
    lo, hi = float(vd.sigma2_partition.sel(stat="low")), float(vd.sigma2_partition.sel(stat="high"))
    assert lo < 1.0 < hi
    assert vd.sigma2_seed.attrs["units"] == "(degC)2" and "share training data" in vd.attrs["caveat"]


def test_decomposition_does_not_depend_on_dimension_order_and_reads_units() -> None:
    rng = np.random.default_rng(1)
    y = xr.DataArray(rng.normal(2.0, 1.0, (3, 4, 2)), dims=("repeat", "fold", "seed"), name="score",
                     attrs={"units": "degC"})
    a = variance_decomposition(y, n_boot=300, seed=5)
    b = variance_decomposition(y.transpose("seed", "fold", "repeat"), n_boot=300, seed=5)
    xr.testing.assert_allclose(a.drop_attrs(), b.drop_attrs())  # intervals included
    # Units from the scores' own attribute, not from a name it may not have.
    assert a["mean"].attrs["units"] == "degC" and a.sigma2_seed.attrs["units"] == "(degC)2"
    # Each result says what it is (they had units alone).
    assert a["sigma2_partition"].attrs["long_name"] == "variance of score between partitions (held-out sets)"
    assert all(a[v].attrs.get("long_name") for v in a.data_vars)
    assert variance_decomposition(y.drop_attrs().rename(None), n_boot=10)["mean"].attrs["units"] == "1"


def test_no_partition_effect_gives_zero_partition_variance(gauged_month: xr.Dataset) -> None:
    cv = cross_validate(gauged_month, "fake", folds=2, repeats=40, seeds=6, blocking="reach",
                        trainer=_fake_trainer(sigma_p=0.0, sigma_s=0.5))
    est = variance_decomposition(cv, n_boot=10).sel(stat="estimate")
    assert float(est.sigma2_partition) < 0.02
    assert float(est.sigma2_seed) == pytest.approx(0.25, rel=0.2)
    assert float(est.icc) < 0.1


def test_cross_validation_copies_count_once(five_years: xr.Dataset) -> None:
    # Three water years in three folds: the only partition, asked for twice.
    three = five_years.sel(time=slice("2000-10-01", "2003-09-30"))
    with pytest.warns(xmsgl.XmsglWarning, match="only 1 distinct partition exists"):
        cv = cross_validate(three, "fake", folds=3, repeats=2, seeds=3, blocking="water_year",
                            trainer=_fake_trainer(sigma_p=1.0, sigma_s=0.5))
    assert dict(cv.rmse.sizes) == {"repeat": 1, "fold": 3, "seed": 3}
    assert cv.attrs["repeats_dropped"] == 1 and cv.held_out_id.values.tolist() == [[0, 1, 2]]
    # Distinct repeats may still share a held-out set (5 years in 3 folds: a year held
    # out alone twice): it is the same training data, counted once.
    cv = cross_validate(five_years, "fake", folds=3, repeats=4, seeds=3, blocking="water_year",
                        trainer=_fake_trainer(sigma_p=1.0, sigma_s=0.5))
    ids = cv.held_out_id.values.ravel()
    n_unique = np.unique(ids).size
    assert n_unique < ids.size
    vd = variance_decomposition(cv, n_boot=50)
    assert vd.attrs["n_partitions"] == n_unique and vd.attrs["n_duplicates_dropped"] == ids.size - n_unique
    _, first = np.unique(ids, return_index=True)
    once = cv.rmse.stack(partition=("repeat", "fold")).drop_vars(["partition", "repeat", "fold",
                                                                  "held_out_id"])
    once = once.isel(partition=np.sort(first)).transpose("partition", "seed")
    expect = variance_decomposition(once, n_boot=50)
    for name in ("mean", "sigma2_partition", "sigma2_seed", "icc"):
        np.testing.assert_allclose(vd[name].values, expect[name].values)
    # The DataArray keeps the coordinate, and with it the same answer.
    np.testing.assert_allclose(variance_decomposition(cv.rmse, n_boot=50).icc.values, vd.icc.values)


def test_water_year_folds_of_a_network_leave_a_year_to_train_on() -> None:
    # Three water years in two folds: a fold holds out two, and the validation year
    # fit's rule takes used to be the last one left, so fit stopped mid-run with "the
    # training period None holds no day". With one free year there is no validation.
    import torch

    torch.set_num_threads(1)
    three = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2003-09-30",
                                           seed=1, reach_obs_share=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xmsgl.XmsglWarning)  # no validation observation
        cv = cross_validate(three, "remap", folds=2, repeats=1, seeds=2, blocking="water_year",
                            fit_kwargs={"epochs": 1, "window": 120, "stride": 120})
    assert np.isfinite(cv.rmse.values).all() and cv.rmse.size == 4


def test_decomposition_of_a_method_that_ignores_the_seed(small_basin: xr.Dataset) -> None:
    # One seed: no seed component to estimate; the partition variance is that of the scores.
    cv = cross_validate(small_basin, "climatology", folds=2, repeats=2, seeds=1, blocking="water_year")
    vd = variance_decomposition(cv, n_boot=50)
    y = cv.rmse.values.ravel()
    assert float(vd.sigma2_partition.sel(stat="estimate")) == pytest.approx(np.var(y, ddof=1))
    for name in ("sigma2_seed", "msw", "icc"):
        assert np.isnan(vd[name].values).all(), name
    assert vd.attrs["seed_component"].startswith("not estimated: one seed")
    # Several seeds of a method that ignores them: seed variance 0, and no share to report.
    cv = cross_validate(small_basin, "climatology", folds=2, repeats=2, seeds=2, blocking="water_year")
    vd = variance_decomposition(cv, n_boot=50)
    assert (vd.sigma2_seed.values == 0).all() and np.isnan(vd.icc.values).all()
    assert float(vd.sigma2_partition.sel(stat="estimate")) == pytest.approx(np.var(y, ddof=1))
    assert vd.attrs["seed_component"].startswith("not applicable")


def test_variance_decomposition_refuses_two_layouts_and_scores_that_are_not_numbers() -> None:
    both = xr.DataArray(np.ones((2, 2, 3)), dims=("repeat", "partition", "seed"))
    with pytest.raises(xmsgl.SchemaError, match="either on \\('repeat', 'fold'\\) or on 'partition', not both"):
        variance_decomposition(both)
    text = xr.DataArray(np.array([["a", "b"], ["c", "d"]]), dims=("partition", "seed"))
    with pytest.raises(xmsgl.SchemaError, match="hold <U1 values, not numbers"):
        variance_decomposition(text)


def test_variance_decomposition_errors() -> None:
    y = xr.DataArray(np.ones((1, 3)), dims=("partition", "seed"))
    with pytest.raises(xmsgl.DataError, match="at least 2 partitions"):
        variance_decomposition(y)
    # Copies of one held-out set are one partition.
    y = xr.DataArray(np.ones((2, 3)), dims=("partition", "seed"), coords={"held_out_id": ("partition", [4, 4])})
    with pytest.raises(xmsgl.DataError, match="got 1 distinct ones \\(1 repeated held-out set left out\\)"):
        variance_decomposition(y)
    y = xr.DataArray(np.array([[1.0, np.nan], [1.0, 2.0]]), dims=("partition", "seed"))
    with pytest.raises(xmsgl.DataError, match="NaN"):
        variance_decomposition(y)
    # Scores of one selected (repeat, fold): only a seed dimension is left.
    cv = xr.Dataset(
        {"rmse": (("repeat", "fold", "seed"), np.arange(12.0).reshape(2, 2, 3))},
        attrs={"score": "rmse"},
    )
    with pytest.raises(xmsgl.DataError, match="at least 2 partitions.*'seed' alone"):
        variance_decomposition(cv.rmse.sel(repeat=0, fold=0))
    with pytest.raises(xmsgl.DataError, match="at least 2 partitions"):
        variance_decomposition(cv.isel(repeat=0, fold=0))


def test_cross_validate_a_baseline(small_basin: xr.Dataset) -> None:
    cv = cross_validate(small_basin, "idw", folds=3, repeats=1, seeds=2, blocking="subbasin")
    assert set(cv.data_vars) >= {"rmse", "mae", "bias", "nse", "kge", "n", "n_test_reaches"}
    assert np.isfinite(cv.rmse.values).all() and (cv.rmse.values < 4).all()
    # Baselines are deterministic: the seed changes nothing.
    np.testing.assert_allclose(cv.rmse.isel(seed=0).values, cv.rmse.isel(seed=1).values)
    assert int(cv.n_test_reaches.sum()) == small_basin.sizes["reach"]
    assert (cv.n_test_reaches.attrs, cv.n_test_days.attrs) == (
        {"long_name": "reaches held out", "units": "1"}, {"long_name": "days held out", "units": "1"})
    assert cv["n"].dtype == np.int64 and (cv["n"].values > 0).all()  # counts of pairs
    # The default trainer's settings are recorded even when none were given.
    assert json.loads(cv.attrs["fit_kwargs"]) == {} and cv.attrs["trainer"] == "default"


def test_sparsity_sweep_and_plot(small_basin: xr.Dataset) -> None:
    sw = sparsity_sweep(small_basin, ["climatology", "harmonic"], keep=[1.0, 0.05], seeds=[0, 1])
    assert dict(sw.rmse.sizes) == {"method": 2, "keep": 2, "seed": 2}
    assert np.isfinite(sw.rmse.values).all() and np.isfinite(sw.mae.values).all()
    assert sw["n"].dtype == np.int64  # a count, as metrics.skill gives it
    n = sw.n_train_obs.values
    assert sw.n_train_obs.attrs["units"] == "1" and sw.n_train_obs.attrs["long_name"]
    assert (n[1] < n[0]).all() and n[1, 0] == pytest.approx(0.05 * n[0, 0], rel=0.05)
    assert json.loads(sw.attrs["test_period"]) == [["2003-10-01", "2004-09-30"]]
    fig = plot_sparsity(sw)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.get_lines()) == 2
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_sparsity_sweep_with_trainer_per_method(small_basin: xr.Dataset) -> None:
    calls: list[int] = []

    def trainer(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> xr.DataArray:
        calls.append(int(train_ds.reach_temp.notnull().sum()))
        assert not bool(train_ds.reach_temp.sel(time=slice("2003-10-01", None)).notnull().any())
        return test_ds["target"].fillna(0.0)

    sw = sparsity_sweep(small_basin, ["perfect"], keep=[0.2], seeds=[3], by="reach",
                        trainer={"perfect": trainer})
    assert len(calls) == 1 and sw.rmse.item() == 0.0


def test_miniature_sweep_msgl_beats_climatology() -> None:
    """The CI miniature of docs/results.md: shapes, and MSGL below climatology at every reach.

    Checked by hand on this basin (seed 0) over training seeds 0-3: MSGL / climatology
    test RMSE 0.75, 0.90, 0.72, 0.73; on basin seed 3: 0.73, 0.93, 0.80, 0.74.
    """
    pytest.importorskip("torch")
    ds = xmsgl.datasets.synthetic_basin(n_segments=6, start="2000-10-01", end="2004-09-30", seed=0,
                                        reach_obs_share=0.3)
    neural = {"epochs": 8, "batch_size": 2, "window": 120, "stride": 60, "lr": 0.01, "hidden": 10}
    sw = sparsity_sweep(ds, ["climatology", "msgl"], keep=[1.0], seeds=[0], fit_kwargs={"msgl": neural})
    assert dict(sw.rmse.sizes) == {"method": 2, "keep": 1, "seed": 1}
    assert sw.attrs["target"] == "reach_temp_true"
    # Every reach on every test day is scored, gauged or not.
    assert int(sw.n.sel({"method": "msgl"}).item()) == ds.sizes["reach"] * 366
    clim = float(sw.rmse.sel({"method": "climatology"}).item())
    msgl = float(sw.rmse.sel({"method": "msgl"}).item())
    assert np.isfinite(msgl) and msgl < clim, (msgl, clim)


def test_headline_example_of_the_docs_hides_the_test_year() -> None:
    import re

    from tests.conftest import ROOT

    text = (ROOT / "docs" / "evaluation.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    namespace: dict[str, object] = {}
    exec(compile(block.replace("print(", "str("), "docs/evaluation.md", "exec"), namespace)
    ds, pred = namespace["ds"], namespace["pred"]
    assert isinstance(ds, xr.Dataset) and isinstance(pred, xr.DataArray)
    # Gauged reaches do not copy their own test observations.
    from xmsgl.evaluate import evaluate

    assert float(evaluate(pred, ds.reach_temp).rmse) > 0.5


def test_one_block_is_refused_without_suggesting_one_fold(small_basin: xr.Dataset) -> None:
    # "use folds <= 1" would point at a value cross_validate refuses itself.
    observed = np.flatnonzero(np.isfinite(small_basin.reach_temp.values).any(axis=1))
    keep = xr.zeros_like(small_basin.reach, dtype=bool)
    keep[observed[0]] = True
    one = small_basin.assign(reach_temp=small_basin.reach_temp.where(keep))
    with pytest.raises(xmsgl.DataError, match="finds 1 observed reaches but folds=2") as info:
        cross_validate(one, "climatology", folds=2, repeats=1, blocking="reach")
    assert "at least 2 folds" in str(info.value) and "folds <= 1" not in str(info.value)


def test_accessor_warns_when_scores_are_in_sample(small_basin: xr.Dataset) -> None:
    # Without a truth, ds.msgl.evaluate scores against the observations: on the
    # training days those are what the model was fitted on, and idw copies them.
    obs_only = small_basin.drop_vars("reach_temp_true")
    times = obs_only.indexes["time"]
    train = (str(times[0].date()), "2003-09-30")
    clim = obs_only.msgl.fit(method="climatology", train=train)
    pred = obs_only.msgl.downscale(clim)
    assert pred.attrs["xmsgl_train_periods"] == f"{train[0]}/{train[1]}"
    with pytest.warns(xmsgl.XmsglWarning, match="days inside the model's training periods .* in-sample"):
        obs_only.msgl.evaluate(pred)
    # The count is of the pairs scored there, not of every observation of those days.
    gauged = obs_only.reach_temp.sel(time=slice(*train)).notnull().any("time")
    part = pred.sel(reach=obs_only.reach[gauged.values][:3])
    scored = obs_only.reach_temp.sel(reach=part.reach, time=slice(*train)).notnull().sum()
    with pytest.warns(xmsgl.XmsglWarning, match=rf": {int(scored)} of the \d+ pairs scored \([0-9.]+%\) lie there.*"
                      r"or pass as observed= observations held out of the fit$"):
        obs_only.msgl.evaluate(part)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        held_out = obs_only.msgl.evaluate(pred.sel(time=slice("2003-10-01", None)))
        # Against the truth on held-out days, or at reaches never observed: nothing to say.
        small_basin.msgl.evaluate(pred.sel(time=slice("2003-10-01", None)))
        never = small_basin.reach_temp.isnull().all("time")
        small_basin.msgl.evaluate(pred.sel(reach=small_basin.reach[never.values]))
    assert int(held_out["n"]) > 0
    # Against the truth on the training days, the pairs at observed reach-days are
    # in-sample: their count and share are said (two significant figures).
    from xmsgl.accessor import _share
    inside = small_basin.sel(time=slice(*train))
    n_in = int((inside.reach_temp.notnull() & inside.reach_temp_true.notnull()).sum())
    total = int(small_basin.reach_temp_true.notnull().sum())
    with pytest.warns(xmsgl.InSampleWarning, match=rf"'reach_temp_true' on \d+ days inside the "
                      rf"model's training periods .*: {n_in} of the {total} pairs scored "
                      rf"\({_share(n_in, total)}\) are node-days where this dataset has observations"):
        small_basin.msgl.evaluate(pred)
    idw = obs_only.msgl.fit(method="idw")
    with pytest.warns(xmsgl.XmsglWarning, match="'idw' baseline .* zero error by construction"):
        obs_only.msgl.evaluate(obs_only.msgl.downscale(idw))
    # Against the truth, on days outside its training periods too: at the observed
    # node-days idw returned the observation itself, and at each segment's outlet reach
    # the segment's coarse observation on the days without a fine one (those went
    # uncounted: 3.3% said where 7.3% were in-sample on a smaller basin).
    idw_pred = small_basin.msgl.downscale(small_basin.msgl.fit(method="idw"))
    later = small_basin.sel(time=slice("2003-10-01", None))
    late = idw_pred.sel(time=slice("2003-10-01", None))
    seen = later.reach_temp
    coarse = xr.full_like(seen, np.nan).transpose("reach", "time")
    coarse.loc[{"reach": later.seg_outlet_reach.values}] = later.seg_temp.transpose("seg", "time").values
    copied = coarse.notnull() & seen.isnull()
    assert int(copied.sum()) > 0
    n_obs = int(((seen.notnull() | copied) & later.reach_temp_true.notnull()).sum())
    assert float(np.abs(late - seen).max()) == 0.0
    assert float(np.abs(late - coarse.astype(np.float32)).where(copied).max()) == 0.0
    # Scored against a dataset without a topology, the outlet reaches are unknown: the
    # observed reach-days alone are counted (it failed with a SchemaError).
    bare = later[["reach_temp", "reach_temp_true", "seg_temp"]]
    n_reach_obs = int((seen.notnull() & later.reach_temp_true.notnull()).sum())
    with pytest.warns(xmsgl.InSampleWarning, match=rf": {n_reach_obs} of the \d+ pairs scored .*"
                                                   r"observations \('reach_temp'\), which idw"):
        bare.msgl.evaluate(late)
    with pytest.warns(xmsgl.InSampleWarning, match=rf"'idw' baseline against 'reach_temp_true': {n_obs} of "
                      r"the \d+ pairs scored .* in-sample, on any day"):
        small_basin.msgl.evaluate(late)
    # A network's validation observations chose its checkpoint: scored on them, it is
    # optimistic, and said so.
    val = pred.copy()
    del val.attrs["xmsgl_train_periods"]
    val.attrs["xmsgl_val_periods"] = "2003-10-01/2004-09-30"
    with pytest.warns(xmsgl.XmsglWarning, match="validation periods .* chose its checkpoint"):
        obs_only.msgl.evaluate(val)
    # Observations passed by hand are as in-sample as the default ones (they went unsaid).
    with pytest.warns(xmsgl.XmsglWarning, match="days inside the model's training periods .* in-sample"):
        small_basin.msgl.evaluate(pred, observed=small_basin.reach_temp)
    with pytest.warns(xmsgl.InSampleWarning, match="are node-days where this dataset has observations"):
        small_basin.msgl.evaluate(pred, observed=small_basin.reach_temp_true)
    # A truth with another name is not judged (nothing says what was observed of it).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small_basin.msgl.evaluate(pred, observed=small_basin.reach_temp_true.rename("truth"))


def test_accessor_evaluate_gives_evaluates_typed_errors_before_judging_the_dates(small_basin: xr.Dataset) -> None:
    # The in-sample check read the prediction's dates before evaluate's checks ran: a
    # bad pair got pandas' errors instead of evaluate's typed ones.
    clim = small_basin.msgl.fit(method="climatology", train=("2000-10-01", "2003-09-30"))
    pred = small_basin.msgl.downscale(clim)
    twice = xr.concat([pred.isel(time=slice(0, 10)), pred.isel(time=slice(5, 15))], "time")
    with pytest.raises(xmsgl.TimeError, match="prediction has duplicated 'time' labels"):
        small_basin.msgl.evaluate(twice)
    noleap = pred.convert_calendar("noleap")
    with pytest.raises(xmsgl.DataError, match="share no 'time' label"):
        small_basin.msgl.evaluate(noleap)
    # Both on a model calendar: scored, and judged on the dates the periods name.
    on_noleap = small_basin.convert_calendar("noleap")
    with pytest.warns(xmsgl.InSampleWarning, match=r"on 1095 days inside the model's training periods"):
        scores = on_noleap.msgl.evaluate(noleap)
    assert int(scores["n"]) > 0
    # 360_day: its 29 and 30 February (six in three years) lie in no period; the others do.
    days360 = pred.convert_calendar("360_day", align_on="year")
    with pytest.warns(xmsgl.InSampleWarning, match=r"on 1074 days inside the model's training periods"):
        small_basin.convert_calendar("360_day", align_on="year").msgl.evaluate(days360)


def test_the_in_sample_check_reads_a_dask_backed_dataset_once(small_basin: xr.Dataset) -> None:
    # Each count (training, validation, all pairs) was a compute of its own: three passes
    # over a zarr-backed truth before the scores.
    dask = pytest.importorskip("dask")
    from dask.callbacks import Callback

    clim = small_basin.msgl.fit(method="climatology", train=("2000-10-01", "2002-09-30"))
    pred = small_basin.msgl.downscale(clim).assign_attrs(xmsgl_val_periods="2002-10-01/2003-09-30")
    lazy = small_basin.chunk({"reach": 20, "time": 365})
    starts = []

    class Count(Callback):
        def _start(self, dsk: object) -> None:
            starts.append(1)

    with Count(), pytest.warns(xmsgl.InSampleWarning) as said:
        scores = lazy.msgl.evaluate(pred)
    assert len(starts) == 1 and isinstance(scores["rmse"].data, dask.array.Array)
    # The counts are those of the in-memory dataset.
    with pytest.warns(xmsgl.InSampleWarning) as eager:
        small_basin.msgl.evaluate(pred)
    assert [str(w.message) for w in said] == [str(w.message) for w in eager] and len(said) == 2


def test_the_in_sample_check_leaves_a_dask_backed_prediction_uncomputed(small_basin: xr.Dataset) -> None:
    # ds.msgl.evaluate stays lazy on a dask-backed prediction; its in-sample check
    # computed the prediction (against the observations), a second run of the whole
    # downscale before the scores' own.
    pytest.importorskip("dask")
    clim = small_basin.msgl.fit(method="climatology", train=("2000-10-01", "2003-09-30"))
    pred = small_basin.msgl.downscale(clim)
    template = pred.chunk({"reach": 50})

    def never(block: xr.DataArray) -> xr.DataArray:
        raise AssertionError("the prediction was computed")

    lazy = template.map_blocks(never, template=template)
    for ds in (small_basin, small_basin.drop_vars("reach_temp_true")):
        with pytest.warns(xmsgl.InSampleWarning, match=r"on 1095 days inside the model's training periods"):
            scores = ds.msgl.evaluate(lazy)
        assert scores["rmse"].chunks is not None
    # Taken as complete, the lazy prediction gives the counts of the in-memory one (it
    # has no NaN).
    with pytest.warns(xmsgl.InSampleWarning) as lazy_said:
        small_basin.msgl.evaluate(lazy)
    with pytest.warns(xmsgl.InSampleWarning) as said:
        small_basin.msgl.evaluate(pred)
    assert [str(w.message) for w in lazy_said] == [str(w.message) for w in said]


def test_scores_and_predictions_say_what_made_them(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    pred = half_year_basin.msgl.downscale(half_year_msgl)
    periods = half_year_msgl.config["periods"]
    assert pred.attrs["xmsgl_seed"] == half_year_msgl.config["seed"] == 0
    assert pred.attrs["xmsgl_test_periods"] == ",".join(f"{a}/{b}" for a, b in periods["test"])
    # Scored on every day, against the truth at observed reach-days too: said, for the
    # training days (in-sample) and the validation days (optimistic).
    with pytest.warns(xmsgl.InSampleWarning, match="'reach_temp_true' on .* periods") as said:
        scores = half_year_basin.msgl.evaluate(pred)
    assert sorted(str(w.message).split("scores are ")[1].split(".")[0] for w in said) == [
        "in-sample", "optimistic"]
    assert scores.attrs["xmsgl_model_sha256"] == half_year_msgl.sha256
    assert scores.attrs["xmsgl_method"] == "msgl"


def test_bad_trainer_results_and_scores_are_typed_errors(small_basin: xr.Dataset) -> None:
    from xmsgl.evaluate import variance_decomposition

    for bad in (None, "bad"):
        with pytest.raises(xmsgl.ParameterError, match="the trainer returned"):
            cross_validate(small_basin, "x", folds=2, repeats=1, seeds=1, blocking="water_year",
                           trainer=lambda a, b, s, bad=bad: bad)
    with pytest.raises(xmsgl.ParameterError, match="scores must be the xarray Dataset"):
        variance_decomposition(np.ones((3, 2)))  # type: ignore[arg-type]
    with pytest.raises(xmsgl.ParameterError, match="n_boot=1000000000"):
        variance_decomposition(xr.DataArray(np.ones((3, 2)), dims=("partition", "seed")), n_boot=10**9)


def test_reach_blocking_deals_the_same_folds_whatever_the_row_order(small_basin: xr.Dataset) -> None:
    from xmsgl.evaluate import cv_partitions

    rng = np.random.default_rng(0)
    shuffled = small_basin.isel(reach=rng.permutation(small_basin.sizes["reach"]))
    a = cv_partitions(small_basin, folds=2, repeats=2, blocking="reach", seed=3)
    b = cv_partitions(shuffled, folds=2, repeats=2, blocking="reach", seed=3)
    assert [sorted(h.groups) for h in a] == [sorted(h.groups) for h in b]


def test_accessor_scores_a_segment_prediction_against_the_segments(small_basin: xr.Dataset) -> None:
    obs_only = small_basin.drop_vars(["reach_temp_true", "seg_temp_true"])
    model = xmsgl.fit(obs_only, method="remap", epochs=1, window=120, stride=120, progress=False,
                      train=("2000-10-01", "2003-09-30"), val=("2003-10-01", "2004-09-30"))
    seg = obs_only.msgl.downscale(model, scale="seg")
    with pytest.warns(xmsgl.XmsglWarning) as said:
        scores = obs_only.msgl.evaluate(seg)
    # The training years, then the validation year (which chose the checkpoint).
    assert [w.message.args[0].split(" days inside the model's ")[1][:18] for w in said] == [
        "training periods (", "validation periods"]
    assert int(scores["n"]) > 0
    # Against seg_temp_true, with the pairs at observed segment-days of the training and
    # validation years said to be in-sample.
    with pytest.warns(xmsgl.InSampleWarning, match="'seg_temp_true' .* where this dataset has "
                                                   r"observations \('seg_temp'\)") as said:
        assert int(small_basin.msgl.evaluate(seg)["n"]) == seg.size
    assert len(said) == 2


def test_a_given_test_period_keeps_a_validation_year(five_years: xr.Dataset) -> None:
    # With test= alone, fit trained on every other day and validated on none: a
    # sweep or a water-year cross-validation given a test period lost the networks'
    # validation (and their checkpoint choice) without a word.
    from xmsgl.evaluate import default_trainer

    trainer = default_trainer("fine-only", {"epochs": 1, "window": 60, "stride": 60})
    for test, val in (([("2003-10-01", "2004-09-30")], "2002-10-01/2003-09-30"),
                      ([("2000-10-01", "2001-09-30")], "2001-10-01/2002-09-30")):
        test_ds = xr.Dataset(attrs={"test_period": json.dumps(test)})
        pred = trainer(five_years, test_ds, 0)
        train = pred.attrs["xmsgl_train_periods"]
        assert val.split("/")[0] not in train and test[0][0] not in train, train


def test_a_shared_window_is_refused_for_a_mix_of_networks_and_baselines(small_basin: xr.Dataset) -> None:
    # window is the networks' training window but the baselines' climatology window:
    # shared, it turned the climatology into an annual mean without a word.
    with pytest.raises(xmsgl.ParameterError, match="climatology window of the baselines"):
        sparsity_sweep(small_basin, ["climatology", "msgl"], keep=[1.0], seeds=[0], fit_kwargs={"window": 365})


def test_variance_decomposition_of_no_seed_is_a_data_error() -> None:
    from xmsgl.exceptions import DataError

    scores = xr.DataArray(np.zeros((2, 3, 0)), dims=("repeat", "fold", "seed"), name="rmse")
    with pytest.raises(DataError, match=r"\['seed'\] of the scores are empty"):
        variance_decomposition(scores)


def test_a_model_records_the_observations_it_learned_from(half_year_basin: xr.Dataset) -> None:
    import pandas as pd

    from tests.conftest import FAST_FIT

    a = half_year_basin.msgl.sparsify(keep=0.5, seed=1)
    b = half_year_basin.msgl.sparsify(keep=0.5, seed=2)
    ma = a.msgl.fit(method="fine-only", seed=0, **FAST_FIT)
    mb = b.msgl.fit(method="fine-only", seed=0, **FAST_FIT)
    assert ma.config["data"]["sparsify"] == a.reach_temp.attrs["xmsgl_sparsify"]
    assert ma.config["data"]["targets_sha256"] != mb.config["data"]["targets_sha256"]
    # The same observations give the same record, and a test-day observation is no part
    # of it (the fit never reads one).
    again = a.msgl.fit(method="fine-only", seed=1, **FAST_FIT)
    assert again.config["data"]["targets_sha256"] == ma.config["data"]["targets_sha256"]
    # The same data built again (another time in its history line) give the same model.
    rebuilt = a.assign_attrs(history="2031-01-01T00:00:00Z built again")
    same = rebuilt.msgl.fit(method="fine-only", seed=0, **FAST_FIT)
    assert same.config["data"]["history"] != ma.config["data"]["history"]
    assert same.sha256 == ma.sha256
    test = ma.config["periods"]["test"][0]
    moved = a.assign(reach_temp=a.reach_temp.where(
        ~a.time.to_index().isin(pd.date_range(*test)), a.reach_temp + 1.0))
    assert (moved.msgl.fit(method="fine-only", seed=0, **FAST_FIT).config["data"]["targets_sha256"]
            == ma.config["data"]["targets_sha256"])


def test_the_scored_runs_use_the_device_the_fit_was_given(five_years: xr.Dataset, monkeypatch) -> None:
    # fit got fit_kwargs' device but the scored run took downscale's default
    # ("auto"): device="cpu" on a machine with a GPU was ignored for the scores.
    import xmsgl.downscale as dsc
    from xmsgl.evaluate import default_trainer

    asked: list[str] = []
    real = dsc.resolve_device
    monkeypatch.setattr(dsc, "resolve_device", lambda device="auto": asked.append(str(device)) or real(device))
    trainer = default_trainer("fine-only", {"epochs": 1, "window": 60, "stride": 60, "device": "cpu"})
    pred = trainer(five_years, xr.Dataset(attrs={"test_period": json.dumps([("2003-10-01", "2004-09-30")])}), 0)
    assert asked and set(asked) == {"cpu"}, asked
    assert pred.sizes["reach"] == five_years.sizes["reach"]


def test_few_observations_are_said_once_per_cross_validation_and_not_by_sweeps() -> None:
    # Each fold's counts made a new text, so every fold and seed said it again; a
    # sweep, which thins the observations on purpose, said it for every cell.
    import warnings

    fast = {"epochs": 1, "hidden": 4, "window": 60, "stride": 60, "progress": False}
    basin = xmsgl.datasets.synthetic_basin(n_segments=6, start="2000-10-01", end="2004-09-30", seed=3,
                                           reach_obs_share=0.5)
    gauged = basin.reach.values[basin.reach_temp.notnull().any("time").values][:4]
    four = basin.assign(reach_temp=basin.reach_temp.where(basin.reach.isin(gauged)))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", xmsgl.FewObservationsWarning)
        cross_validate(four, "fine-only", folds=2, blocking="water_year", seeds=[0, 1], fit_kwargs=fast)
    few = [str(w.message) for w in said if w.category is xmsgl.FewObservationsWarning]
    assert len(few) == 1 and few[0].endswith("other folds may have as few, and are not named"), few
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always", xmsgl.FewObservationsWarning)
        sparsity_sweep(four, ["fine-only"], keep=[0.05], seeds=[0], fit_kwargs=fast)
    assert not [w for w in said if w.category is xmsgl.FewObservationsWarning]
