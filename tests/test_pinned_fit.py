"""fit's stages pinned: the periods of a split with only ``test`` given, the default
pretraining epochs, ASYNC-MSGL's stage-A pseudo-labels, progressive's pseudo-labels
on training days only, the checkpoint heads of each stage, and what the config
records (hyperparameters, the count of fine training observations)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import xarray as xr

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

import xmsgl.model as model_module  # noqa: E402
from xmsgl.exceptions import XmsglWarning  # noqa: E402
from xmsgl.model import fit  # noqa: E402

PERIODS = {"train": ("2001-01-01", "2001-04-30"), "val": ("2001-05-01", "2001-05-31"),
           "test": ("2001-06-01", "2001-06-30")}
TINY = {"epochs": 1, "window": 30, "stride": 30, "progress": False, "hidden": 4, "seed": 0}


def _spy_stages(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record the stage, targets and windows of every training-loop call of fit."""
    calls: list[dict[str, Any]] = []
    real = model_module.train_tasks

    def spy(net: Any, data: Any, targets: dict[str, np.ndarray], windows: Any, **kw: Any) -> Any:
        calls.append({"stage": kw["stage"], "windows": list(windows),
                      "targets": {k: np.array(v, copy=True) for k, v in targets.items()}})
        return real(net, data, targets, windows, **kw)

    monkeypatch.setattr(model_module, "train_tasks", spy)
    return calls


def _spy_outputs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the ``output`` of every prediction fit makes (its validation scores)."""
    outputs: list[str] = []
    real = model_module.predict

    def spy(*args: Any, **kwargs: Any) -> Any:
        outputs.append(kwargs["output"])
        return real(*args, **kwargs)

    monkeypatch.setattr(model_module, "predict", spy)
    return outputs


def _days(ds: xr.Dataset, start: str, end: str) -> np.ndarray:
    t = ds.time.values
    return (t >= np.datetime64(start)) & (t <= np.datetime64(end))


def test_a_test_period_given_alone_is_the_one_held_out(half_year_basin: xr.Dataset) -> None:
    # Guards the default split being used only when no period at all is given: a test
    # period given alone is held out as given, the other days train (no validation).
    with pytest.warns(XmsglWarning, match="no validation period"):
        m = fit(half_year_basin, method="fine-only", test=PERIODS["test"], **TINY)
    periods = {k: [list(p) for p in v] for k, v in m.config["periods"].items()}
    assert periods == {"train": [["2001-01-01", "2001-05-31"]], "val": [],
                       "test": [["2001-06-01", "2001-06-30"]]}


def test_pretraining_takes_half_the_epochs_by_default(half_year_basin: xr.Dataset) -> None:
    # Guards pretrain_epochs' default max(1, epochs // 2), run and recorded as such.
    m = fit(half_year_basin, method="direct", **{**TINY, "epochs": 3}, **PERIODS)
    assert len(m.history["pretrain_coarse"]["loss"]) == 1
    assert len(m.history["main"]["loss"]) == 3
    assert m.config["hyperparameters"]["pretrain_epochs"] == 1
    assert m.config["hyperparameters"]["epochs"] == 3


def test_progressive_stages_take_their_epochs_and_score_their_heads(
        half_year_basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the coarse pretraining scored by the coarse head, the pseudo-label stage
    # run for pretrain_epochs (not epochs) and scored by the fine-only head, and the
    # pseudo-labels made on training days only (none on validation or test days).
    outputs = _spy_outputs(monkeypatch)
    calls = _spy_stages(monkeypatch)
    m = fit(half_year_basin, method="progressive", pretrain_epochs=1, **{**TINY, "epochs": 2},
            **PERIODS)
    assert [c["stage"] for c in calls] == ["pretrain_coarse", "pseudo_labels", "main"]
    assert [len(m.history[s]["loss"]) for s in ("pretrain_coarse", "pseudo_labels", "main")] == [1, 1, 2]
    # coarse pretraining: one epoch scored on the coarse head; the pseudo-labels are
    # the "remap" predictions of the training range; the rest score the fine-only head.
    assert outputs == ["coarse", "remap", "fine_only", "fine_only", "fine_only", "fine_only"]
    pseudo = calls[1]["targets"]["fine_only"]
    train = _days(half_year_basin, *PERIODS["train"])
    assert np.isfinite(pseudo[train]).all()
    assert np.isnan(pseudo[~train]).all()


def test_direct_pretraining_is_scored_on_the_coarse_head(
        half_year_basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards direct's coarse pretraining choosing its checkpoint by the coarse head
    # (the fine-only head is untrained then).
    outputs = _spy_outputs(monkeypatch)
    fit(half_year_basin, method="direct", pretrain_epochs=2, **TINY, **PERIODS)
    assert outputs == ["coarse", "coarse", "fine_only"]


def test_stage_a_pseudo_labels_are_its_variable_carried_to_the_reaches(
        half_year_basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the pseudo-labels of stage A ("remap", "remap-fine") being
    # stage_a_variable on stage A's days, each reach taking its segment's value, not
    # the main stage's seg_temp.
    ds = half_year_basin.assign(seg_model=(half_year_basin.seg_temp + 3.0).assign_attrs(units="degC"))
    calls = _spy_stages(monkeypatch)
    fit(ds, method="async-msgl", stage_a_variable="seg_model", pretrain_epochs=1,
        stage_a_tasks=("coarse", "remap", "remap-fine"), **TINY, **PERIODS)
    a = calls[0]
    assert a["stage"] == "stage_a" and set(a["targets"]) == {"coarse", "cross", "fine"}
    coarse, cross = a["targets"]["coarse"], a["targets"]["cross"]
    np.testing.assert_array_equal(cross, a["targets"]["fine"])
    assert np.isfinite(cross).any()
    for t in range(coarse.shape[0]):
        finite = np.isfinite(cross[t])
        assert finite.any() == np.isfinite(coarse[t]).any()
        assert np.isin(cross[t][finite], coarse[t]).all(), t
    # Every segment's value reaches its reaches: the column set is the segments'.
    def columns(y: np.ndarray) -> set[tuple[float, ...]]:
        return {tuple(c) for c in np.nan_to_num(y, nan=-999.0).T}

    assert columns(cross) == columns(coarse)


def test_input_scaling_is_recorded_for_two_scale_methods_only(half_year_basin: xr.Dataset) -> None:
    # Guards hyperparameters["input_scaling"] written for the methods that read it
    # (both scales) and left out for remap and fine-only.
    for method, recorded in (("remap", False), ("fine-only", False), ("direct", True)):
        hp = fit(half_year_basin, method=method, **TINY, **PERIODS).config["hyperparameters"]
        assert ("input_scaling" in hp) is recorded, method


def test_fine_training_observations_are_counted_on_training_days(half_year_basin: xr.Dataset) -> None:
    # Guards config["n_fine_train_obs"] counting reach_temp on the training days only.
    m = fit(half_year_basin, method="fine-only", **TINY, **PERIODS)
    train = _days(half_year_basin, *PERIODS["train"])
    y = half_year_basin.reach_temp.transpose("time", "reach").values
    assert m.config["n_fine_train_obs"] == int(np.isfinite(y[train]).sum())
    assert m.config["n_fine_train_obs"] < int(np.isfinite(y).sum())


def _with_main_history(monkeypatch: pytest.MonkeyPatch, **fake: Any) -> None:
    """Train as usual, then give the main stage's history the entries ``fake``."""
    real = model_module.train_tasks

    def patched(*args: Any, **kw: Any) -> Any:
        history = real(*args, **kw)
        return {**history, **fake} if kw["stage"] == "main" else history

    monkeypatch.setattr(model_module, "train_tasks", patched)


def test_divergence_is_judged_on_the_best_epoch_score(half_year_basin: xr.Dataset,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards fit's divergence check reading the validation RMSE of the best epoch (the
    # weights kept), not of the last one: a later epoch that diverged is not kept.
    _with_main_history(monkeypatch, val=[1.0, 100.0], best_epoch=1)
    fit(half_year_basin, method="fine-only", **TINY, **PERIODS)
    _with_main_history(monkeypatch, val=[100.0, 1.0], best_epoch=1)
    with pytest.raises(model_module.TrainingError, match=r"RMSE of the fit is 100 degC \(epoch 1\)"):
        fit(half_year_basin, method="fine-only", **TINY, **PERIODS)


def test_the_seed_seeds_the_weights_and_the_window_order(half_year_basin: xr.Dataset,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards seed reaching both torch's generator (the initial weights) and numpy's
    # (the order of the windows): each differs between seeds and repeats for a seed.
    import copy

    seen: list[tuple[dict[str, Any], float]] = []
    real = model_module.train_tasks

    def spy(net: Any, *args: Any, **kw: Any) -> Any:
        seen.append(({k: v.clone() for k, v in net.state_dict().items()},
                     float(copy.deepcopy(kw["rng"]).random())))
        return real(net, *args, **kw)

    monkeypatch.setattr(model_module, "train_tasks", spy)
    for seed in (0, 1, 0):
        fit(half_year_basin, method="fine-only", **{**TINY, "seed": seed}, **PERIODS)
    (w0, r0), (w1, r1), (w0b, r0b) = seen
    assert r0 == r0b and r0 != r1
    assert all(torch.equal(w0[k], w0b[k]) for k in w0)
    assert not all(torch.equal(w0[k], w1[k]) for k in w0)


def test_a_stage_a_period_given_reads_beyond_train_without_a_warning(
        half_year_basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the "no test period" warning of stage A being for its default period only:
    # days beyond train given as stage_a_period are read as asked, without a word,
    # stage A's windows cover exactly those days, and they are recorded as its period.
    calls = _spy_stages(monkeypatch)
    m = fit(half_year_basin, method="async-msgl", train=("2001-01-01", "2001-04-30"),
            val=PERIODS["val"], stage_a_period=[("2001-03-01", "2001-04-30"), ("2001-06-01", "2001-06-30")],
            pretrain_epochs=1, **TINY)
    assert [list(p) for p in m.config["stage_a"]["period"]] == [["2001-03-01", "2001-04-30"],
                                                                 ["2001-06-01", "2001-06-30"]]
    stage_a = _days(half_year_basin, "2001-03-01", "2001-04-30") | _days(
        half_year_basin, "2001-06-01", "2001-06-30")
    a = calls[0]
    assert a["stage"] == "stage_a"
    covered = np.zeros_like(stage_a)
    for start, n in a["windows"]:
        covered[start:start + n] = True
    np.testing.assert_array_equal(covered, stage_a)
    assert np.isnan(a["targets"]["coarse"][~stage_a]).all()


def test_the_main_stage_trains_on_training_days_only(half_year_basin: xr.Dataset,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the main stage's targets being masked to the training days (validation
    # and test observations never trained on), and its windows lying in them.
    calls = _spy_stages(monkeypatch)
    fit(half_year_basin, method="msgl", **TINY, **PERIODS)
    (main,) = calls
    train = _days(half_year_basin, *PERIODS["train"])
    assert set(main["targets"]) == {"coarse", "cross", "fine"}
    for name, y in main["targets"].items():
        assert np.isnan(y[~train]).all(), name
        assert np.isfinite(y[train]).any(), name
    assert all(train[start:start + n].all() for start, n in main["windows"])


def test_repr_quotes_a_kept_starting_checkpoint(half_year_basin: xr.Dataset) -> None:
    # Guards the repr's best_epoch=0/N (the weights fine-tuning started from were kept),
    # left out only where no epoch was recorded.
    m = fit(half_year_basin, method="fine-only", **TINY, **PERIODS)
    m.config["history"]["main"] = {"loss": [1.0, 1.0], "val": [0.9, 0.8], "best_epoch": 0,
                                   "val_start": 0.5}
    assert " best_epoch=0/2 " in repr(m)
    m.config["history"]["main"] = {"loss": [1.0, 1.0], "val": [0.9, 0.8], "best_epoch": 2}
    assert " best_epoch=2/2 " in repr(m)
    m.config["history"]["main"] = {"loss": [], "val": [], "best_epoch": None}
    assert "best_epoch" not in repr(m)


def test_a_smaller_network_is_told_which_ids_it_lacks(half_year_basin: xr.Dataset) -> None:
    # Guards the graph check naming the model's ids missing from the dataset (and
    # none as extra) when the dataset holds part of the network.
    import xmsgl
    from xmsgl.exceptions import ModelMismatchError
    from xmsgl.graph import build_graphs

    m = fit(half_year_basin, method="fine-only", **TINY, **PERIODS)
    small = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-01-31", seed=3)
    g = build_graphs(small)
    model_reach = set(m.config["graph"]["reach_ids"])
    have = {int(i) for i in g.reach_ids}
    assert have < model_reach  # the part of the network this test is about
    missing = sorted(model_reach - have)
    with pytest.raises(ModelMismatchError) as err:
        model_module.check_compatible(m, small, g, "reach")
    text = str(err.value)
    assert f"reach ids {model_module.format_ids(missing)} of the model's graph are missing" in text
    assert "are not in the model's graph" not in text


def test_default_batch_size_fits_the_activation_budget() -> None:
    # Guards default_batch_size: at most 16 windows, as many as ~3 GB of saved
    # activations (30 float32 (N, H) tensors per node-day) allow, and at least 1.
    from xmsgl.train import default_batch_size

    assert default_batch_size(10, 30, 4) == 16
    assert default_batch_size(1000, 365, 20) == 3  # 0.876 GB a window
    assert default_batch_size(1000, 365, 20, budget_gb=0.5) == 1
    assert default_batch_size(10**6, 365, 20) == 1


def test_fine_heads_run_on_a_subset_of_max_head_reaches(half_year_basin: xr.Dataset,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the head-reach subsampling of train_tasks: where more reaches are observed
    # in a batch than max_head_reaches, each step runs the heads on that many distinct
    # reaches, in order; otherwise (or with None) on every observed reach.
    from xmsgl.model import _rebuild
    from xmsgl.train import make_windows, train_tasks

    m = fit(half_year_basin, method="fine-only", **TINY, **PERIODS)
    data = _rebuild(m, half_year_basin, half_year_basin.msgl.graphs(), torch.device("cpu"),
                    slice(None))
    n_time, n_reach = half_year_basin.sizes["time"], half_year_basin.sizes["reach"]
    dense = np.zeros((n_time, n_reach), dtype=np.float32)  # every reach observed
    net = m.net
    rows_seen: list[np.ndarray] = []
    real_forward = net.forward

    def forward(*args: Any, **kw: Any) -> Any:
        rows_seen.append(kw["rows"].numpy().copy())
        return real_forward(*args, **kw)

    monkeypatch.setattr(net, "forward", forward)
    windows = make_windows([(0, 120)], 30, 30)
    for most, expect in ((n_reach - 1, n_reach - 1), (None, n_reach), (n_reach, n_reach)):
        rows_seen.clear()
        train_tasks(net, data, {"fine_only": dense}, windows, val=None, epochs=1, device=torch.device("cpu"),
                    rng=np.random.default_rng(0), progress=False, max_head_reaches=most, batch_size=1)
        assert len(rows_seen) == len(windows)
        for rows in rows_seen:
            assert len(rows) == expect, most
            assert np.all(np.diff(rows) > 0) and rows.min() >= 0 and rows.max() < n_reach


def _msgl_data(ds: xr.Dataset) -> tuple[Any, Any]:
    """A tiny fitted msgl network and its inputs for ``ds``, for train_tasks."""
    from xmsgl.model import _rebuild

    m = fit(ds, method="msgl", **TINY, **PERIODS)
    return m.net, _rebuild(m, ds, ds.msgl.graphs(), torch.device("cpu"), slice(None))


def test_each_steps_heads_run_on_the_reaches_any_task_observes(
        half_year_basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the reaches the fine heads run on being those observed by any fine task
    # of the batch (the cross and fine targets may differ), not by the last one.
    from xmsgl.train import train_tasks

    net, data = _msgl_data(half_year_basin)
    n_time, n_seg = half_year_basin.sizes["time"], half_year_basin.sizes["seg"]
    n_reach = half_year_basin.sizes["reach"]
    cross = np.full((n_time, n_reach), np.nan, dtype=np.float32)
    fine = cross.copy()
    cross[:, 2] = 0.5
    fine[:, 5] = -0.5
    rows_seen: list[list[int]] = []
    real_forward = net.forward

    def forward(*args: Any, **kw: Any) -> Any:
        rows_seen.append(kw["rows"].tolist())
        return real_forward(*args, **kw)

    monkeypatch.setattr(net, "forward", forward)
    train_tasks(net, data, {"coarse": np.zeros((n_time, n_seg), np.float32), "cross": cross,
                            "fine": fine}, [(0, 30)], val=None, epochs=1, device=torch.device("cpu"),
                rng=np.random.default_rng(0), progress=False, weighting="equal")
    assert rows_seen == [[2, 5]]


def test_a_non_finite_loss_names_the_days_of_its_window(half_year_basin: xr.Dataset,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # Guards the TrainingError of a NaN loss naming the stage, task and the window's
    # first and last days (30 days from 2001-01-31 end on 2001-03-01).
    import pandas as pd

    from xmsgl.exceptions import TrainingError
    from xmsgl.train import train_tasks

    net, data = _msgl_data(half_year_basin)
    real_forward = net.forward

    def forward(*args: Any, **kw: Any) -> Any:
        return {k: v * float("nan") for k, v in real_forward(*args, **kw).items()}

    monkeypatch.setattr(net, "forward", forward)
    n_time, n_seg = half_year_basin.sizes["time"], half_year_basin.sizes["seg"]
    with pytest.raises(TrainingError, match=r"the loss of task 'coarse' became nan in epoch 1 of "
                       r"stage 'probe', on the window 2001-01-31 to 2001-03-01;"):
        train_tasks(net, data, {"coarse": np.zeros((n_time, n_seg), np.float32)}, [(30, 30)],
                    val=None, epochs=1, device=torch.device("cpu"), rng=np.random.default_rng(0),
                    progress=False, stage="probe", time=pd.DatetimeIndex(half_year_basin.time.values))


def test_default_window_and_stride_are_a_year_and_half_a_year(half_year_basin: xr.Dataset) -> None:
    # Guards fit's default window (365 days) and stride (min(182, window)), as recorded.
    tiny = {k: v for k, v in TINY.items() if k not in ("window", "stride")}
    hp = fit(half_year_basin, method="fine-only", **tiny, **PERIODS).config["hyperparameters"]
    assert (hp["window"], hp["stride"]) == (365, 182)
    hp = fit(half_year_basin, method="fine-only", window=100, **tiny, **PERIODS).config["hyperparameters"]
    assert (hp["window"], hp["stride"]) == (100, 100)


@pytest.mark.parametrize("val", [False, True])
def test_a_stage_whose_every_window_is_skipped_names_the_cause(half_year_basin: xr.Dataset,
                                                               val: bool) -> None:
    # Guards nothing_trained in train_tasks: no window holds an observation of a task
    # weighed above 0, so no step is taken; that is said as such (not as a fit that
    # diverged), and untrained weights are never returned, scored or not.
    from xmsgl.exceptions import TrainingError
    from xmsgl.train import train_tasks

    net, data = _msgl_data(half_year_basin)
    n_time, n_seg = half_year_basin.sizes["time"], half_year_basin.sizes["seg"]
    n_reach = half_year_basin.sizes["reach"]
    fine = np.full((n_time, n_reach), np.nan, np.float32)
    weights = {"coarse": 0.0, "cross": 1.0, "fine": 1.0}
    with pytest.raises(TrainingError, match=r"no training window of stage 'probe' holds an observation "
                       r"of a task weighed above 0 \(task_weights=\{'coarse': 0.0, 'cross': 1.0, "
                       r"'fine': 1.0\}\) \(tasks \['coarse', 'cross', 'fine'\]\), so nothing was "
                       r"trained; .* or weights above 0"):
        train_tasks(net, data, {"coarse": np.zeros((n_time, n_seg), np.float32), "cross": fine,
                                "fine": fine},
                    [(30, 30)], val=(lambda _: 0.5) if val else None, epochs=2,
                    device=torch.device("cpu"), rng=np.random.default_rng(0), progress=False,
                    stage="probe", weighting="fixed", task_weights=weights)


def test_a_subbasin_block_with_only_unweighted_observations_is_skipped() -> None:
    # Guards the skip test of xmsgl.scale.train_subbasins: a block whose only
    # observations are of tasks weighed 0 is left out, as train_tasks leaves out such
    # a window; the fit trains on the other block (it used to stop as "diverged").
    from xmsgl.convention import topology_arrays
    from xmsgl.datasets.synthetic import synthetic_basin
    from xmsgl.scale import partition

    ds = synthetic_basin(n_segments=6, start="2000-10-01", end="2001-06-30", seed=0, n_outlets=2,
                         reach_obs_share=0.5, seg_obs_share=1.0, reaches_per_segment=1.5,
                         tributaries_per_segment=0.3)
    part = partition(topology_arrays(ds), reach_chunk=8, halo=None)
    assert len(part.blocks) == 2
    second = part.blocks[1]
    # The second block keeps its segment observations only, and the coarse task weighs
    # 0 (the fine task, the method's prediction, may not).
    ds["reach_temp"] = ds.reach_temp.where(~ds.reach.isin(ds.reach.values[second.reach[:second.n_core_reach]]))
    model = fit(ds, method="msgl", subbasin_batch=8, weighting="fixed", seed=0,
                task_weights={"coarse": 0.0, "cross": 1.0, "fine": 1.0},
                train=("2000-10-01", "2001-02-27"), val=("2001-02-28", "2001-04-30"),
                test=("2001-05-01", "2001-06-30"), hidden=8, epochs=1, window=60, stride=30,
                progress=False)
    assert model.history["main"]["subbasin_blocks"] == 2
    assert model.history["main"]["best_epoch"] == 1


def test_epochs_without_validation_are_ranked_on_equally_weighted_losses_under_mgda() -> None:
    # Guards the criterion of a fit without validation under MGDA-UB: its weighted loss
    # sums each step's tasks with other weights, so epochs are ranked on the task
    # losses summed with equal weights; other weightings keep the training loss.
    from xmsgl.train import epoch_loss_criterion

    hist = {"loss": [0.9, 0.5], "loss_equal": [1.2, 1.4]}
    assert epoch_loss_criterion(hist, "mgda") == 1.4
    assert epoch_loss_criterion(hist, "equal") == 0.5
    assert epoch_loss_criterion({"loss": [0.7]}, "mgda") == 0.7  # no step with several tasks
    assert epoch_loss_criterion({"loss": []}, "equal") is None


def test_an_mgda_fit_without_validation_keeps_the_epoch_of_lowest_equal_sum(
        half_year_basin: xr.Dataset) -> None:
    from xmsgl.train import make_windows, train_tasks

    net, data = _msgl_data(half_year_basin)
    n_time, n_seg = half_year_basin.sizes["time"], half_year_basin.sizes["seg"]
    n_reach = half_year_basin.sizes["reach"]
    rng = np.random.default_rng(1)
    coarse = rng.normal(size=(n_time, n_seg)).astype(np.float32)
    fine = np.where(rng.random((n_time, n_reach)) < 0.2, rng.normal(size=(n_time, n_reach)),
                    np.nan).astype(np.float32)
    hist = train_tasks(net, data, {"coarse": coarse, "cross": fine, "fine": fine},
                       make_windows([(0, n_time)], 30, 30), val=None, epochs=4, lr=0.05,
                       device=torch.device("cpu"), rng=np.random.default_rng(0), progress=False,
                       weighting="mgda")
    assert len(hist["loss_equal"]) == len(hist["loss"]) == 4
    # Three tasks summed with weights 1 against a convex combination of them.
    assert all(e > w for e, w in zip(hist["loss_equal"], hist["loss"]))
    assert hist["best_epoch"] == int(np.argmin(hist["loss_equal"])) + 1


def test_subbasin_mgda_fit_without_validation_keeps_the_epoch_of_lowest_equal_sum() -> None:
    from xmsgl.datasets.synthetic import synthetic_basin
    from xmsgl.exceptions import XmsglWarning

    ds = synthetic_basin(n_segments=6, start="2000-10-01", end="2001-06-30", seed=0, n_outlets=2,
                         reach_obs_share=0.5, seg_obs_share=1.0, reaches_per_segment=1.5,
                         tributaries_per_segment=0.3)
    with pytest.warns(XmsglWarning, match="no validation period"):
        model = fit(ds, method="msgl", subbasin_batch=8, weighting="mgda", seed=4,
                    train=("2000-10-01", "2001-04-30"), test=("2001-05-01", "2001-06-30"),
                    hidden=8, epochs=4, window=60, stride=30, lr=0.1, progress=False)
    hist = model.history["main"]
    # A seed where the two rankings differ (epoch 2 has the lowest weighted loss).
    assert int(np.argmin(hist["loss"])) != int(np.argmin(hist["loss_equal"]))
    assert hist["subbasin_blocks"] == 2
    assert len(hist["loss_equal"]) == len(hist["loss"]) == 4
    assert hist["best_epoch"] == int(np.argmin(hist["loss_equal"])) + 1
