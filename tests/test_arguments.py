"""Arguments of fit, downscale, sparsify, save and load: read one way, refused clearly."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.conftest import FAST_FIT

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from xmsgl.downscale import downscale  # noqa: E402
from xmsgl.exceptions import (  # noqa: E402
    DataError,
    ModelMismatchError,
    ParameterError,
    PeriodError,
    TimeError,
    XmsglError,
    XmsglWarning,
)
from xmsgl.model import Downscaler, fit, load  # noqa: E402
from xmsgl.periods import period_bounds, period_list, period_mask  # noqa: E402
from xmsgl.train import check_weighting  # noqa: E402

FAST = FAST_FIT
DAYS = pd.date_range("2000-12-30", "2002-01-02")


@pytest.fixture(scope="module")
def basin(half_year_basin: xr.Dataset) -> xr.Dataset:
    return half_year_basin


@pytest.fixture(scope="module")
def model(half_year_msgl: Downscaler) -> Downscaler:
    return half_year_msgl


# ------------------------------------------------------------------------ periods


@pytest.mark.parametrize("period, first, last", [
    ("2001", "2001-01-01", "2001-12-31"),
    ("2001-02", "2001-02-01", "2001-02-28"),
    (("2001-02", "2001-03"), "2001-02-01", "2001-03-31"),
    (("2001-02-03", "2001-02-05"), "2001-02-03", "2001-02-05"),
    (slice(None, "2000-12-31"), "2000-12-30", "2000-12-31"),
    ((pd.Timestamp("2001-12-31"), None), "2001-12-31", "2002-01-02"),
    ((np.datetime64("2001-05-01"), "2001-05-01"), "2001-05-01", "2001-05-01"),
])
def test_periods_read_like_xarray_labels(period, first, last) -> None:
    days = DAYS[period_mask(DAYS, period, "train")]
    assert (str(days[0].date()), str(days[-1].date())) == (first, last)
    assert len(days) == (pd.Timestamp(last) - pd.Timestamp(first)).days + 1


def test_period_edges_beyond_2262_where_pandas_overflows() -> None:
    # pandas before 3.0 gives a period's start and end in nanoseconds only: beyond 2262
    # they overflowed; they are then taken to the microsecond.
    from xmsgl.periods import _edge

    class Far:
        """A period whose edges overflow, as pandas 2's do beyond 2262."""

        def __init__(self, period: pd.Period) -> None:
            self.period = period

        @property
        def start_time(self) -> pd.Timestamp:
            raise pd.errors.OutOfBoundsDatetime("as pandas 2")

        end_time = start_time

        def asfreq(self, *args: object, **kwargs: object) -> pd.Period:
            return self.period.asfreq(*args, **kwargs)

    month = Far(pd.Period("2300-02", freq="M"))
    assert _edge(month, False) == pd.Timestamp(np.datetime64("2300-02-01T00:00:00", "us"))
    assert _edge(month, True) == pd.Timestamp(np.datetime64("2300-02-28T23:59:59.999999", "us"))
    # The stamps of a day, to the last part of its last second, are the day's.
    t = pd.DatetimeIndex(np.array(["2300-02-28T23:59:59.500", "2300-03-01"], "datetime64[ms]"))
    assert list(t <= _edge(month, True)) == [True, False]


def test_list_of_periods_and_open_bounds() -> None:
    mask = period_mask(DAYS, [("2001-01-01", "2001-01-02"), "2001-03"], "train")
    assert mask.sum() == 2 + 31
    assert period_bounds(None) == (None, None)
    assert period_list(None) == []


@pytest.mark.parametrize("bad, match", [
    ("2001x", "'2001x' is not a date"),
    (("2001-01-01", "not a day"), "'not a day' is not a date"),
    (("2001-03-01", "2001-02-01"), "ends before it starts"),
    ((pd.Timestamp("2001-01-01", tz="UTC"), "2001-02-01"), "has a time zone"),
    (("2001", "2002", "2003"), "not a \\(start, end\\) pair"),
    (2001, "is not understood"),
    (slice("2001", "2002", 2), "no step"),
    # Days as an index: its whole repr (a dozen lines) was the message; now what it
    # is, and the pair that spans them.
    (pd.date_range("2001-01-01", periods=100), r"^train=<DatetimeIndex of 100 values> is not understood; "
     r".*\(for the days from 2001-01-01 to 2001-04-10: train=\('2001-01-01', '2001-04-10'\)\)$"),
    (pd.date_range("2001-01-01", periods=100).values, r"train=<ndarray of 100 values> is not understood"),
])
def test_bad_periods_name_the_argument(bad, match) -> None:
    with pytest.raises(PeriodError, match=match) as info:
        period_mask(DAYS, bad, "train")
    assert "train=" in str(info.value)
    # Both a time error and a parameter error, for callers that catch either.
    assert isinstance(info.value, TimeError) and isinstance(info.value, ParameterError)


@pytest.mark.parametrize("text, readings", [
    ("1.3.2016", "('2016-03-01' or '2016-01-03')"),
    ("01/02/2016", "('2016-02-01' or '2016-01-02')"),
    ("29/02/2016", "('2016-02-29')"),  # one reading only, refused all the same
    ("5-6-2016 12:00", "('2016-06-05' or '2016-05-06')"),
])
def test_dates_that_put_the_year_last_are_refused(text: str, readings: str) -> None:
    # "1.3.2016" was read as 3 January and "01/02/2016" as 2 January, without a word,
    # while "29/02/2016" was read day-first.
    with pytest.raises(PeriodError, match=re.escape(f"{text!r} puts the year last, which is read day-first "
                                                    f"in some places and month-first in others; give the date "
                                                    f"as 'YYYY-MM-DD' {readings}")):
        period_mask(DAYS, (text, None), "test")
    # The year first is one reading, and taken.
    assert period_mask(DAYS, "2001/03/01").sum() == 1
    # The synthetic basin's dates and the command's --start read them alike.
    from xmsgl.datasets import synthetic_basin

    with pytest.raises(TimeError, match=re.escape(f"start={text!r}: {text!r} puts the year last")):
        synthetic_basin(n_segments=3, start=text, end="2030-12-31")
    from xmsgl.cli import _check_dates

    with pytest.raises(TimeError, match=re.escape(f"--start {text!r}: {text!r} puts the year last")):
        _check_dates(text, "2030-12-31")


def test_two_single_days_in_a_list_warn_of_the_tuple() -> None:
    # A list holds periods, so ["2001-01-01", "2001-03-31"] is two days; that is
    # rarely what was meant, and the warning names the tuple that gives the period.
    with pytest.warns(XmsglWarning, match=r"train=\('2001-01-01', '2001-03-31'\)"):
        mask = period_mask(DAYS, ["2001-01-01", "2001-03-31"], "train")
    assert mask.sum() == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert period_mask(DAYS, ("2001-01-01", "2001-03-31"), "train").sum() == 90
        assert period_mask(DAYS, ["2001-01", "2001-03"], "train").sum() == 31 + 31
        assert period_mask(DAYS, [("2001-01-01", "2001-01-01"), ("2001-02-01", "2001-02-01")]).sum() == 2
        assert period_mask(DAYS, ["2001-01-01", "2001-01-01"], "train").sum() == 1


def test_one_period_only_where_one_is_meant() -> None:
    with pytest.raises(PeriodError, match="one period"):
        period_bounds([("2001-01-01", "2001-01-31")], "time")


def test_fit_reads_label_periods(basin: xr.Dataset) -> None:
    m = fit(basin, method="fine-only", train=("2001-01", "2001-04"), val="2001-05", test="2001-06",
            seed=0, **FAST)
    assert m.config["periods"]["train"] == [("2001-01-01", "2001-04-30")]
    assert m.config["periods"]["val"] == [("2001-05-01", "2001-05-31")]
    json.dumps(m.config)  # what is recorded is plain dates


def test_downscale_time_label_and_bad_time(model: Downscaler, basin: xr.Dataset) -> None:
    # On the CPU, where repeated runs are equal to the bit (a GPU's sums are not).
    out = basin.msgl.downscale(model, time="2001-03", device="cpu")
    assert out.sizes["time"] == 31 and str(out.time[0].values)[:10] == "2001-03-01"
    same = basin.msgl.downscale(model, time=("2001-03-01", "2001-03-31"), device="cpu")
    np.testing.assert_array_equal(out.values, same.values)
    for bad in (("foo", "bar"), ("2001-03-01", "2001-03-31", "2001-04-01"),
                (pd.Timestamp("2001-03-01", tz="UTC"), pd.Timestamp("2001-03-31", tz="UTC"))):
        with pytest.raises(PeriodError, match="time="):
            basin.msgl.downscale(model, time=bad)


@pytest.mark.parametrize("method", ["msgl", "climatology", "gru"])
def test_downscale_takes_a_list_of_periods_where_the_model_predicts_day_by_day(
        model: Downscaler, basin: xr.Dataset, method: str) -> None:
    # The networks run whole windows of days and take one period; the baselines and
    # the GRU take a list too, through downscale as through their predict.
    fitted = (model if method == "msgl" else basin.msgl.fit(method="gru", epochs=1, progress=False)
              if method == "gru" else basin.msgl.fit(method=method))
    two = [("2001-03-01", "2001-03-02"), ("2001-05-01", "2001-05-01")]
    if method == "msgl":
        with pytest.raises(PeriodError, match=r"time=\[.*\]: give one period here, not a list of them"):
            basin.msgl.downscale(fitted, time=two)
    else:
        out = basin.msgl.downscale(fitted, time=two)
        assert [str(d)[:10] for d in out.time.values] == ["2001-03-01", "2001-03-02", "2001-05-01"]
    assert basin.msgl.downscale(fitted, time=("2001-03-01", "2001-03-02")).sizes["time"] == 2


def test_accessor_names_the_model_as_the_function_does(model: Downscaler, basin: xr.Dataset) -> None:
    # ds.msgl.downscale(model_or_path=...) is xmsgl.downscale(ds, model_or_path=...).
    by_name = basin.msgl.downscale(model_or_path=model, time="2001-03", device="cpu")
    by_function = downscale(basin, model_or_path=model, time="2001-03", device="cpu")
    np.testing.assert_array_equal(by_name.values, by_function.values)


def test_sparsify_takes_label_periods(basin: xr.Dataset) -> None:
    # Observations of the period are thinned (here all dropped), the others kept.
    thinned = basin.msgl.sparsify(keep=0.0, period="2001-02")
    obs = thinned.reach_temp.notnull().any("reach")
    assert not obs.sel(time="2001-02").any()
    assert obs.sel(time="2001-03").all() and obs.sel(time="2001-01-31")


# ------------------------------------------------------------------------ task weights


@pytest.mark.parametrize("weights, match", [
    ({"Coarse": 1, "Cross": 1, "Fine": 1}, "unknown task"),
    ({"coarse": 1, "cross": 1}, "no weight for \\['fine'\\]"),
    ({"coarse": 1, "cross": -1, "fine": 1}, ">= 0"),
    ({"coarse": 1, "cross": float("nan"), "fine": 1}, ">= 0"),
    ({"coarse": 0, "cross": 0, "fine": 0}, "all 0"),
    ({"coarse": "1", "cross": 1, "fine": 1}, ">= 0"),
    (None, "needs task_weights"),
    ([1, 1, 1], "needs task_weights"),
])
def test_fixed_weights_are_checked(weights, match) -> None:
    with pytest.raises(ParameterError, match=match):
        check_weighting("fixed", weights)


def test_weights_without_fixed_and_unknown_weighting() -> None:
    with pytest.raises(ParameterError, match="weighting='fixed' only"):
        check_weighting("mgda", {"coarse": 1, "cross": 1, "fine": 1})
    with pytest.raises(ParameterError, match="not known"):
        check_weighting("balanced", None)
    check_weighting("equal", None)


@pytest.mark.parametrize("method", ["msgl", "async-msgl"])
def test_a_fine_weight_of_0_is_refused_where_the_fine_head_is_the_prediction(
        basin: xr.Dataset, method: str) -> None:
    # It was accepted: the fine head, which downscale returns and whose validation
    # score chooses the checkpoint, kept its random initial weights.
    with pytest.raises(ParameterError, match=rf"gives the task 'fine' weight 0, but the fine head gives the "
                                             rf"prediction of '{method}' \(.*random initial weights"):
        fit(basin, method=method, weighting="fixed", task_weights={"coarse": 1, "cross": 1, "fine": 0},
            **FAST)
    from xmsgl.model import check_fit_args

    with pytest.raises(ParameterError, match="'fine' weight 0"):
        check_fit_args(method, {"weighting": "fixed", "task_weights": {"coarse": 1, "cross": 1, "fine": 0.0}})


def test_fit_refuses_misspelled_weights_before_training(basin: xr.Dataset) -> None:
    with pytest.raises(ParameterError, match="unknown task"):
        fit(basin, method="msgl", weighting="fixed", task_weights={"Coarse": 1, "Cross": 1,
                                                                   "Fine": 1}, **FAST)


def test_fixed_weights_train_every_weighted_task(basin: xr.Dataset) -> None:
    m = fit(basin, method="msgl", weighting="fixed", seed=0,
            task_weights={"coarse": 0.2, "cross": 0.3, "fine": 0.5}, **FAST)
    hist = m.config["history"]["main"]
    assert hist["loss"][0] > 0
    assert hist["task_weights"] == pytest.approx({"coarse": 0.2, "cross": 0.3, "fine": 0.5})
    # Methods that train one task a stage read no task weights: they are refused
    # (test_task_weights_are_refused_where_one_task_trains_at_a_time).


def test_a_window_whose_tasks_all_weigh_zero_takes_no_step(basin: xr.Dataset,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    # Fine observations only in the second half: the first half's windows hold coarse
    # targets alone, which weigh 0. Adam stepped on them with zero gradients, moving the
    # weights on momentum alone.
    half = basin.time.values[basin.sizes["time"] // 2]
    late = basin.assign(reach_temp=basin.reach_temp.where(basin.time >= half))
    zero_steps = []
    step = torch.optim.Adam.step

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        zero_steps.append(not grads or all(float(g.abs().sum()) == 0.0 for g in grads))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    fit(late, method="msgl", weighting="fixed", seed=0, task_weights={"coarse": 0, "cross": 1, "fine": 1},
        batch_size=1, **{**FAST, "epochs": 2})
    assert zero_steps and not any(zero_steps)


# ------------------------------------------------------------------------ other arguments


@pytest.mark.parametrize("kwargs, match", [
    ({"seed": -1}, "seed=-1"),
    ({"seed": None}, "seed=None"),
    ({"seed": 1.5}, "seed=1.5"),
    # A whole number >= 0, as it said, but beyond what numpy and torch take together.
    ({"seed": 2**63}, r"seed=9223372036854775808 must be a whole number from 0 to 2\*\*63 - 1"),
    ({"graph_options": {"bogus": 1}}, "'bogus'"),
    ({"graph_options": [("max_hops", 3)]}, "must be a dict"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"subbasin_batch": 0}, "subbasin_batch=0"),
    ({"device": None}, "not a device name"),
    ({"fine_head": "mlp"}, "fine_head='mlp' is not known"),
])
def test_fit_refuses_bad_arguments(basin: xr.Dataset, kwargs, match) -> None:
    with pytest.raises(ParameterError, match=match):
        fit(basin, method="msgl", **{**FAST, **kwargs})


@pytest.mark.parametrize("method, kwargs, names", [
    ("msgl", {"stage_a_period": ("2001-01-01", "2001-03-31")}, "['stage_a_period']"),
    ("msgl", {"stage_a_tasks": ("coarse",), "pretrain_epochs": 2},
     "['stage_a_tasks', 'pretrain_epochs']"),
    ("fine-only", {"stage_a_variable": "seg_tave_water"}, "['stage_a_variable']"),
    ("remap", {"pretrain_epochs": 1}, "['pretrain_epochs']"),
    ("fine-only", {"fine_head": "residual"}, "['fine_head']"),
    ("direct", {"fine_head": "concat_"}, "['fine_head']"),
])
def test_fit_refuses_arguments_the_method_does_not_read(basin: xr.Dataset, method, kwargs,
                                                         names) -> None:
    # Silently ignored, msgl with a stage A period would look like ASYNC-MSGL.
    with pytest.raises(ParameterError, match=rf"method '{method}' does not read {re.escape(names)}"):
        fit(basin, method=method, **{**FAST, **kwargs})


def test_arguments_at_their_defaults_are_accepted_by_every_method(basin: xr.Dataset) -> None:
    m = fit(basin, method="fine-only", seed=0, stage_a_tasks=["coarse", "remap", "remap-fine"],
            stage_a_variable="seg_temp", fine_head="concat", pretrain_epochs=None, **FAST)
    assert m.method == "fine-only"


@pytest.mark.parametrize("progress", ["no", 0, 1.0])
def test_progress_is_a_bool(basin: xr.Dataset, progress) -> None:
    # progress="no" would otherwise turn the bars on.
    with pytest.raises(ParameterError, match="progress="):
        fit(basin, method="msgl", **{**FAST, "progress": progress})
    with pytest.raises(ParameterError, match="progress="):
        fit(basin, method="climatology", progress=progress)


def test_unavailable_devices_are_typed_errors(basin: xr.Dataset) -> None:
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(XmsglError, match="MPS"):
        fit(basin, method="msgl", device="mps", **FAST)
    if not torch.cuda.is_available():
        with pytest.raises(XmsglError, match="CUDA"):
            fit(basin, method="msgl", device="cuda:3", **FAST)
        # A torch.device is checked like a name (it reached torch's own AssertionError).
        with pytest.raises(XmsglError, match="CUDA"):
            fit(basin, method="msgl", device=torch.device("cuda"), **FAST)
    with pytest.raises(XmsglError, match="MPS"):
        fit(basin, method="msgl", device=torch.device("mps"), **FAST)


def test_mps_without_sparse_products_falls_back_to_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch builds that do not run sparse CSR products on MPS: 'auto' passes over MPS
    with one warning, an explicit 'mps' is a typed error that says why; an MPS that runs
    them is picked."""
    import xmsgl
    from xmsgl import train

    mps = getattr(torch.backends, "mps", None)
    if mps is None:
        pytest.skip("this torch build has no torch.backends.mps")
    # What "auto" picks, not the CPU the test run sets for it (tests/conftest.py).
    monkeypatch.setitem(xmsgl.options.OPTIONS, "device", "auto")
    monkeypatch.setattr(mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train, "_MPS_WARNED", [])
    problem = "NotImplementedError: Could not run 'new_compressed_tensor' from the 'mps:0' device."
    monkeypatch.setattr(train, "_mps_sparse_problem", lambda device="mps": problem)
    with pytest.warns(XmsglWarning, match="MPS.*sparse CSR.*new_compressed_tensor.*on the CPU"):
        assert train.resolve_device("auto") == torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert train.resolve_device("auto") == torch.device("cpu")  # said once
    for device in ("mps", torch.device("mps")):
        with pytest.raises(XmsglError, match="device=.*mps.*sparse CSR.*new_compressed_tensor.*'cpu'"):
            train.resolve_device(device)
    monkeypatch.setattr(train, "_mps_sparse_problem", lambda device="mps": None)
    assert train.resolve_device("auto") == torch.device("mps")
    assert train.resolve_device("mps") == torch.device("mps")


def test_the_mps_probe_answers_without_raising() -> None:
    """On a machine without MPS the probe reports the failure as a reason, never raises;
    with MPS it gives None or a reason."""
    from xmsgl.train import _mps_sparse_problem

    # Where the products run (the CPU), the probe finds the values it expects.
    assert _mps_sparse_problem("cpu") is None
    _mps_sparse_problem.cache_clear()
    got = _mps_sparse_problem()
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        assert isinstance(got, str) and got
    else:
        assert got is None or isinstance(got, str)


def test_a_device_xmsgl_does_not_run_on_leaves_the_model_usable(model: Downscaler, basin: xr.Dataset) -> None:
    # "meta" holds no values: moving the model there used to fail deep in torch and
    # leave its weights on meta, so that neither downscale nor save worked again.
    before = basin.msgl.downscale(model)
    for dev in ("meta", torch.device("meta"), "xla"):
        with pytest.raises(ParameterError, match="xmsgl runs on 'cpu', 'cuda'"):
            basin.msgl.downscale(model, device=dev)
        with pytest.raises(ParameterError, match="xmsgl runs on 'cpu', 'cuda'"):
            fit(basin, method="fine-only", device=dev, **FAST)
    xr.testing.assert_identical(basin.msgl.downscale(model).drop_attrs(), before.drop_attrs())


def test_no_coarse_observations_is_refused(basin: xr.Dataset) -> None:
    empty = basin.assign(seg_temp=basin.seg_temp * np.nan)
    for method in ("msgl", "remap"):
        with pytest.raises(DataError, match="'seg_temp' is all NaN"):
            fit(empty, method=method, **FAST)
    # fine-only never reads it.
    fit(empty, method="fine-only", seed=0, **FAST)


@pytest.mark.parametrize("bad", [None, 123, {}, b"model"])
def test_downscale_needs_a_model_or_a_path(basin: xr.Dataset, bad) -> None:
    with pytest.raises(ParameterError, match="not a path to a model folder"):
        basin.msgl.downscale(bad)


def _flag_calls(model: Downscaler, basin: xr.Dataset) -> dict:
    """A call per True/False argument of the public functions, given the value ``v``."""
    import xmsgl
    from xmsgl.convention import input_variables, to_convention
    from xmsgl.datasets.drb import fetch
    from xmsgl.demo import run_demo
    from xmsgl.evaluate import cross_validate, evaluate, sparsity_sweep
    from xmsgl.explain import explain
    from xmsgl.scale import downscale_lazy

    obs = basin["reach_temp"]
    return {
        "check_graph": lambda v: basin.msgl.downscale(model, check_graph=v),
        "lazy": lambda v: basin.msgl.downscale(model, lazy=v),
        "explain check_graph": lambda v: explain(model, basin, check_graph=v),
        "lazy check_graph": lambda v: downscale_lazy(basin, model, check_graph=v),
        "check_empty": lambda v: evaluate(obs, obs, check_empty=v),
        "cross_validate use_truth": lambda v: cross_validate(basin, "idw", use_truth=v),
        "sparsity_sweep use_truth": lambda v: sparsity_sweep(basin, "idw", use_truth=v),
        "keep_original": lambda v: to_convention(basin, keep_original=v),
        "quick": lambda v: run_demo("never-written", quick=v),
        "demo overwrite": lambda v: run_demo("never-written", overwrite=v),
        "open_drb progress": lambda v: xmsgl.datasets.open_drb(progress=v),
        "fetch_data progress": lambda v: xmsgl.datasets.fetch_data(progress=v),
        "fetch progress": lambda v: fetch("not-a-registry-file", progress=v),
        "check_values": lambda v: xmsgl.validate(basin, check_values=v),
        "warn": lambda v: input_variables(basin, warn=v),
    }


@pytest.mark.parametrize("name", ["check_graph", "lazy", "explain check_graph", "lazy check_graph",
                                  "check_empty", "cross_validate use_truth", "sparsity_sweep use_truth",
                                  "keep_original", "quick", "demo overwrite", "open_drb progress",
                                  "fetch_data progress", "fetch progress", "check_values", "warn"])
@pytest.mark.parametrize("bad", ["false", "no", 0, 1, None])
def test_true_false_arguments_refuse_anything_else(model: Downscaler, basin: xr.Dataset, tmp_path,
                                                     monkeypatch: pytest.MonkeyPatch, name: str, bad) -> None:
    """A truth test reads "false" as True: each such argument is refused by name before
    any work, and None only where it means "decide for me"."""
    if bad is None and name in ("lazy", "check_empty", "open_drb progress", "fetch_data progress",
                                "fetch progress"):
        return  # None is their default: judged from the inputs, or the progress option
    monkeypatch.chdir(tmp_path)
    arg = name.split()[-1]
    with pytest.raises(ParameterError, match=rf"^{arg}={re.escape(repr(bad))} must be True(, False or None| or False)$"):
        _flag_calls(model, basin)[name](bad)
    assert not (tmp_path / "never-written").exists()


def test_numpy_booleans_are_true_or_false(model: Downscaler, basin: xr.Dataset) -> None:
    plain = basin.msgl.downscale(model, check_graph=True, lazy=False)
    xr.testing.assert_identical(basin.msgl.downscale(model, check_graph=np.True_, lazy=np.False_)
                                .drop_attrs(), plain.drop_attrs())


@pytest.mark.parametrize("threads", [0, -1, 1.5])
def test_lazy_threads_are_checked_at_the_call(model: Downscaler, basin: xr.Dataset, threads) -> None:
    with pytest.raises(ParameterError, match="threads="):
        basin.chunk({"time": 60}).msgl.downscale(model, threads=threads)


def test_save_and_load_expand_home(model: Downscaler, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = model.save("~/models/m.xmsgl")
    assert folder == tmp_path / "models" / "m.xmsgl" and folder.is_dir()
    assert load("~/models/m.xmsgl").sha256 == model.sha256


# ------------------------------------------------------------------------ model files


def _edit(folder, change) -> None:
    cfg_file = folder / "config.json"
    cfg = json.loads(cfg_file.read_text())
    change(cfg)
    cfg_file.write_text(json.dumps(cfg))


def test_model_hash_covers_its_settings(model: Downscaler, tmp_path) -> None:
    folder = model.save(tmp_path / "m.xmsgl")
    assert load(folder).sha256 == model.sha256
    assert model.weights_sha256 == json.loads((folder / "config.json").read_text())["weights"]["sha256"]
    _edit(folder, lambda c: c["targets"].update(mean=c["targets"]["mean"] + 1.0))
    with pytest.warns(XmsglWarning, match=r"edited after the model was saved \(changed \['targets'\]\)"):
        edited = load(folder)
    assert edited.weights_sha256 == model.weights_sha256
    assert edited.sha256 != model.sha256


@pytest.mark.parametrize("change, match", [
    (lambda c: c.update(method="bogus"), "method 'bogus'"),
    (lambda c: c["targets"].update(mean="12"), "target scaler"),
    (lambda c: c["targets"].update(std=0.0), "target scaler"),
    (lambda c: c["variables"].update(n_common=99), "n_common=99"),
    (lambda c: c["variables"]["mean"].pop(c["variables"]["reach_vars"][0]), "input scalers"),
    (lambda c: c["variables"].update(seg_vars=c["variables"]["seg_vars"][1:]), "seg_vars|n_common|do not"),
    (lambda c: c["variables"]["reach_vars"].append(c["variables"]["reach_vars"][-1]), "name an input twice"),
    (lambda c: c["targets"].update(units="K"), "targets' units are 'K'"),
    (lambda c: c["periods"].update(train="2001-01-01/2001-05-06"), "period 'train'"),
    (lambda c: c["periods"].update(val=[["2001-05-07", "someday"]]), "period 'val'"),
    (lambda c: c["graph"].update(weight_stats={"fine": [0.0, 1.0]}), "weight_stats"),
    (lambda c: c["graph"]["drainage"]["seg"].append([1, "2"]), "drainage"),
    (lambda c: c["graph"].update(drainage={"segs": []}), "drainage"),
])
def test_edited_settings_are_refused_at_load(model: Downscaler, tmp_path, change, match) -> None:
    folder = model.save(tmp_path / "m.xmsgl")
    _edit(folder, change)
    with pytest.raises(XmsglError, match=match):
        load(folder)


# ------------------------------------------------------------------------ sparsify, evaluate


@pytest.mark.parametrize("by", ["observation", "reach"])
def test_sparsify_does_not_depend_on_row_order(basin: xr.Dataset, by: str) -> None:
    a = basin.msgl.sparsify(keep=0.2, seed=1, by=by)
    perm = np.random.default_rng(5).permutation(basin.sizes["reach"])
    b = basin.isel(reach=perm).msgl.sparsify(keep=0.2, seed=1, by=by).sortby("reach")
    xr.testing.assert_identical(a.reach_temp.notnull(), b.reach_temp.notnull())
    assert 0 < int(a.reach_temp.notnull().sum()) < int(basin.reach_temp.notnull().sum())


def test_sparsify_keeps_dask_input_lazy(basin: xr.Dataset) -> None:
    lazy = basin.chunk({"time": 50}).msgl.sparsify(keep=0.2, seed=1)
    assert lazy.reach_temp.chunks is not None
    xr.testing.assert_identical(lazy.reach_temp.compute(),
                                basin.msgl.sparsify(keep=0.2, seed=1).reach_temp)


def test_evaluate_warns_when_ids_do_not_match(basin: xr.Dataset) -> None:
    truth = basin.reach_temp_true
    shifted = truth.assign_coords(reach=truth.reach + 1)
    with pytest.warns(XmsglWarning, match="1 of the prediction's .* 'reach' labels are not in"):
        basin.msgl.evaluate(shifted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        basin.msgl.evaluate(truth)


def test_equivalent_unit_spellings_match_the_model(model: Downscaler, basin: xr.Dataset) -> None:
    respelled = basin.copy()
    for name in ("seg_air_temp", "reach_air_temp"):
        respelled[name] = basin[name].assign_attrs(units="degrees_C")
    xr.testing.assert_identical(respelled.msgl.downscale(model, device="cpu").drop_attrs(),
                                basin.msgl.downscale(model, device="cpu").drop_attrs())
    wrong = basin.copy()
    wrong["seg_air_temp"] = basin["seg_air_temp"].assign_attrs(units="W m-2")
    with pytest.raises(ModelMismatchError, match="'seg_air_temp' has units 'W m-2'"):
        wrong.msgl.downscale(model)


def test_subbasin_batches_are_for_the_cell(basin: xr.Dataset) -> None:
    with pytest.raises(ParameterError, match="subbasin_batch trains the recurrent cell"):
        fit(basin, method="fine-only", backbone="dmsge", subbasin_batch=50, **FAST)


# ------------------------------------------------------------------------ options


@pytest.mark.parametrize("options, match", [
    ({"device": "gpu"}, "set_options\\(device='gpu'\\).*not a torch device"),
    ({"device": None}, "set_options\\(device=None\\).*not a device name"),
    ({"progress": False, "torch_threads": -1}, "torch_threads=-1"),
    ({"torch_threads": "two"}, "torch_threads='two'"),
    # torch refused it later with a bare ValueError ("Overflow when unpacking long").
    ({"torch_threads": 99999999999}, "torch_threads=99999999999 is more than 4,096 threads"),
    # Accepted and misread: "no" showed the bars, None hid them.
    ({"progress": "no"}, "set_options\\(progress='no'\\): give True or False"),
    ({"progress": None}, "set_options\\(progress=None\\)"),
])
def test_set_options_refuses_bad_values_and_changes_nothing(basin: xr.Dataset, options, match) -> None:
    import xmsgl

    before = dict(xmsgl.options.OPTIONS)
    # Refused when set (they used to surface as bare torch errors in a later fit).
    with pytest.raises(ParameterError, match=match):
        xmsgl.set_options(**options)
    assert xmsgl.options.OPTIONS == before
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="no CUDA device"):
            xmsgl.set_options(device="cuda:7")
    with xmsgl.set_options(device="cpu", torch_threads=1):
        assert fit(basin, method="fine-only", seed=0, **FAST).config["device"] == "cpu"
    assert xmsgl.options.OPTIONS == before


@pytest.mark.parametrize("name", ["no_such_option", ["device"], None])
def test_get_option_refuses_what_is_no_option_name(name) -> None:
    import xmsgl

    with pytest.raises(XmsglError, match="unknown option .*known options are"):
        xmsgl.get_option(name)


def test_torch_threads_option_holds_inside_fit_and_downscale_only(basin: xr.Dataset,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import xmsgl.downscale
    import xmsgl.model

    seen: list[int] = []

    def spy(real):  # type: ignore[no-untyped-def]
        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            seen.append(torch.get_num_threads())
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(xmsgl.model, "train_tasks", spy(xmsgl.model.train_tasks))
    monkeypatch.setattr(xmsgl.downscale, "predict", spy(xmsgl.downscale.predict))
    before = torch.get_num_threads()
    want = 2 if before != 2 else 1
    with xmsgl.set_options(torch_threads=want):
        model = fit(basin, method="fine-only", seed=0, **FAST_FIT)
        assert torch.get_num_threads() == before
        basin.msgl.downscale(model)
    assert seen and set(seen) == {want}
    assert torch.get_num_threads() == before


def test_a_diverged_fit_is_an_error_not_a_model(basin: xr.Dataset) -> None:
    # lr=1e6 gave a validation RMSE of 1e13 degC and a model predicting 1e14 degC;
    # lr=1e30 overflowed every validation score, and the untrained weights came back.
    from xmsgl.exceptions import TrainingError

    for lr in (1e6, 1e30):
        with pytest.raises(TrainingError, match=r"lower lr \(now"):
            fit(basin, method="fine-only", seed=0, **{**FAST, "epochs": 2}, lr=lr,
                val=("2001-05-01", "2001-06-30"))


def test_stage_a_refuses_what_it_cannot_learn(basin: xr.Dataset) -> None:
    from xmsgl.exceptions import UnitsError

    # Fixed weights of 0 for both of stage A's tasks trained nothing, and said nothing.
    with pytest.raises(ParameterError, match="weight 0 to every task of stage 'stage_a'"):
        fit(basin, method="async-msgl", weighting="fixed", seed=0, **FAST,
            stage_a_tasks=("coarse", "remap"), task_weights={"coarse": 0, "cross": 0, "fine": 1})
    speed = basin.assign(seg_speed=basin.seg_temp.assign_attrs(units="m s-1"))
    with pytest.raises(UnitsError, match="stage_a_variable='seg_speed' has units 'm s-1'"):
        fit(speed, method="async-msgl", stage_a_variable="seg_speed", seed=0, **FAST)
    with pytest.raises(ParameterError, match="evaluation-only truth"):
        fit(basin, method="async-msgl", stage_a_variable="seg_temp_true", seed=0, **FAST)


def test_numpy_numbers_are_numbers(basin: xr.Dataset) -> None:
    m = fit(basin, method="fine-only", seed=0, **FAST, clip_grad_norm=np.float32(1.0),
            ema_decay=np.float32(0.9))
    assert m.config["hyperparameters"]["clip_grad_norm"] == 1.0
    assert m.config["hyperparameters"]["ema_decay"] == pytest.approx(0.9)


def test_a_stride_longer_than_the_window_is_refused(basin: xr.Dataset) -> None:
    # Windows of 60 days every 200 left days 60-199 untrained, without a word.
    with pytest.raises(ParameterError, match="stride=200 is longer than window=60"):
        fit(basin, method="fine-only", **{**FAST, "window": 60, "stride": 200})
    m = fit(basin, method="fine-only", seed=0, **{**FAST, "window": 60, "stride": None})
    assert m.config["hyperparameters"]["stride"] == 60  # min(182, window)


def test_the_typed_method_names_are_fits_methods() -> None:
    # fit's overloads name the methods for type checkers; they must be fit's own.
    import typing

    from xmsgl.baselines import BASELINES
    from xmsgl.model import METHODS, _BaselineName, _NetworkName

    assert typing.get_args(_NetworkName) == METHODS
    assert typing.get_args(_BaselineName) == (*BASELINES, "gru")


def test_one_device_spelled_two_ways_gives_one_model(basin: xr.Dataset) -> None:
    # "cpu:0" was recorded as written, and the same weights had another sha256.
    a = fit(basin, method="fine-only", seed=0, device="cpu", **FAST)
    b = fit(basin, method="fine-only", seed=0, device=torch.device("cpu", 0), **FAST)
    assert b.config["device"] == "cpu" and b.sha256 == a.sha256
    # The GRU trains on any spelling of the CPU, and a name that is no device is said so.
    gru = fit(basin, method="gru", seed=0, device="cpu:0", epochs=1, progress=False)
    assert gru.config["device"] == "cpu"
    with pytest.raises(ParameterError, match="'banana' is not a torch device"):
        fit(basin, method="gru", device="banana", epochs=1, progress=False)
    with pytest.raises(ParameterError, match="method 'gru' trains on the CPU only"):
        fit(basin, method="gru", device="cuda:0", epochs=1, progress=False)


def test_fit_leaves_the_callers_random_stream_alone(basin: xr.Dataset) -> None:
    # fit seeds torch for its own reproducibility; the caller's stream used to be reset.
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(basin, method="fine-only", seed=0, **FAST)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(("kw", "match"), [
    ({"clip_grad_norm": -1.0}, "clip_grad_norm=-1.0"), ({"clip_grad_norm": 0}, "clip_grad_norm=0"),
    ({"clip_grad_norm": True}, "clip_grad_norm=True"), ({"lr": True}, "lr=True"),
    ({"batch_size": 2.7}, "batch_size=2.7"), ({"batch_size": True}, "batch_size=True"),
])
def test_the_gru_checks_its_arguments_as_the_networks_do(basin: xr.Dataset, kw: dict, match: str) -> None:
    # A negative clip_grad_norm turned every gradient around (training climbed the loss).
    with pytest.raises(ParameterError, match=re.escape(match)):
        fit(basin, method="gru", epochs=1, window=30, stride=30, progress=False, **kw)


def test_a_component_that_cannot_be_cut_is_refused(basin: xr.Dataset) -> None:
    # Without a distance-limited graph the blocks keep whole components: a batch
    # smaller than the component did nothing (the same weights as without it).
    n = basin.sizes["reach"]
    with pytest.raises(ParameterError, match=r"subbasin_batch=5: a drainage component of \d+ "
                                             r"reaches cannot be cut.*max_hops"):
        fit(basin, method="fine-only", subbasin_batch=5, **FAST)
    fit(basin, method="fine-only", subbasin_batch=n, **FAST)  # one block: allowed


@pytest.mark.parametrize("method", ["fine-only", "remap", "direct", "progressive"])
def test_task_weights_are_refused_where_one_task_trains_at_a_time(basin: xr.Dataset, method: str) -> None:
    with pytest.raises(ParameterError, match=r"does not read \['task_weights', 'weighting'\]"):
        fit(basin, method=method, weighting="fixed",
            task_weights={"coarse": 1.0, "cross": 1.0, "fine": 0.0}, **FAST)
    # The weighting and the cross-scale head's settings are MSGL's too: they changed
    # nothing (attn_blocks only the random draws of an unused head) and were recorded.
    for name, value in (("weighting", "equal"), ("attn_window", 3), ("attn_blocks", 5)):
        with pytest.raises(ParameterError, match=rf"does not read \['{name}'\].*{name} is read by "
                                                 r"\['msgl', 'async-msgl'\]"):
            fit(basin, method=method, **{name: value}, **FAST)


def test_a_baseline_checks_its_device(basin: xr.Dataset) -> None:
    # device="banana" was accepted, and not used, by the non-neural baselines.
    with pytest.raises(ParameterError, match="device='banana' is not a torch device"):
        fit(basin, method="climatology", device="banana")
    assert fit(basin, method="climatology", device="cpu").method == "climatology"


def test_fit_warnings_name_the_callers_line(basin: xr.Dataset) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(basin, method="fine-only", val=None, train=("2001-01-01", "2001-05-31"),
            test=("2001-06-01", "2001-06-30"), **FAST)
    assert caught, "a fit without validation days warns"
    assert {w.filename for w in caught} == {__file__}


@pytest.mark.skipif(torch.version.cuda is not None and not torch.cuda.is_available(),
                    reason="torch's CUDA build without a GPU driver: the simulated start of CUDA "
                           "meets the real runtime (tests/test_gpu.py checks this on a GPU)")
def test_a_fit_that_starts_cuda_seeds_no_gpu(basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    # CUDA started inside a fit takes the seeds the caller queued for it, as it would
    # have after the call: the fit draws nothing on a GPU. It reseeded every GPU with the
    # CPU's seed, which replaced a seed given by torch.cuda.manual_seed. (Simulated
    # here; tests/test_gpu.py checks it on a GPU.)
    torch.manual_seed(123)
    started = iter([False])
    seeded: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: next(started, True))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.cuda, "manual_seed_all", seeded.append)
    monkeypatch.setattr(torch.cuda, "manual_seed", seeded.append)
    fit(basin, method="fine-only", seed=0, device="cpu", **FAST)
    assert seeded == []


def test_a_cpu_fit_leaves_the_seed_queued_for_the_gpus_alone(
        basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.manual_seed queues its seed for GPUs that have not started: a CPU fit (or
    the GRU) seeded that way handed its own seed to the caller's later GPU work. The
    fit now seeds the CPU generator only, and is as reproducible as before."""
    seeded: list[int] = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", seeded.append)
    torch.manual_seed(123)
    seeded.clear()
    a = fit(basin, method="fine-only", seed=0, device="cpu", **FAST)
    fit(basin, method="gru", seed=0, epochs=1, window=120, stride=120, progress=False)
    assert seeded == [] and torch.initial_seed() == 123
    b = fit(basin, method="fine-only", seed=0, device="cpu", **FAST)
    assert a.sha256 == b.sha256


def test_a_dataset_given_for_the_model_is_named_by_its_type() -> None:
    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-02-28")
    # The whole repr of the Dataset (1,700 characters) used to bury the point.
    with pytest.raises(ParameterError, match=r"^a Dataset is not a path to a model folder; give a str"):
        ds.msgl.downscale(ds)
    with pytest.raises(ParameterError, match=r"^None is not a path"):
        ds.msgl.downscale(None)


def test_evaluating_a_model_says_to_downscale_it_first() -> None:
    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-04-30")
    model = ds.msgl.fit(method="climatology")
    with pytest.raises(xmsgl.SchemaError, match=r"got BaselineModel and DataArray; a fitted model is not "
                                                r"a prediction: downscale it first, "
                                                r"ds\.msgl\.evaluate\(ds\.msgl\.downscale\(model\)\)"):
        ds.msgl.evaluate(model)
    with pytest.raises(xmsgl.SchemaError, match=r"got Dataset and DataArray; pick a variable"):
        ds.msgl.evaluate(ds)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is there")
def test_a_cuda_device_torch_does_not_see_is_a_parameter_error() -> None:
    from xmsgl.train import resolve_device

    for device in ("cuda", "cuda:3"):
        with pytest.raises(ParameterError, match=rf"device='{device}' was asked for but torch sees"):
            resolve_device(device)


def test_a_misspelled_keyword_is_a_parameter_error_that_names_the_right_one(model: Downscaler) -> None:
    import xmsgl
    from xmsgl.datasets import synthetic_basin

    ds = synthetic_basin(n_segments=4, start="2001-01-01", end="2001-03-31", seed=1)
    cases = [
        (lambda: ds.msgl.downscale(model, spin_up=10), r"ds.msgl.downscale\(\) got argument \['spin_up'\] "
         r"that it does not take \(did you mean 'spinup'\?\); it takes \[.*'spinup'"),
        (lambda: ds.msgl.coverage(model, margn=1), r"\['margn'\].*did you mean 'margin'"),
        (lambda: ds.msgl.graphs(max_hop=3), r"\['max_hop'\].*did you mean 'max_hops'"),
        (lambda: ds.msgl.sparsify(0.1, sed=3), r"\['sed'\].*did you mean 'seed'"),
        # The accessor's own arguments are among those named (keep was left out).
        (lambda: ds.msgl.sparsify(kep=0.1), r"\['kep'\].*did you mean 'keep'\?\); it takes \['by', 'keep'"),
        (lambda: ds.msgl.fit(method="fine_only"), r"method='fine_only' is not known \(did you mean 'fine-only'"),
        (lambda: xmsgl.set_options(progres=False), r"unknown options \['progres'\] \(did you mean 'progress'"),
        (lambda: ds.msgl.validate(check=False), r"\['check'\] that it does not take; it takes \['check_values'\]"),
        (lambda: ds.msgl.fit(epoch=1), r"fit\(\) got arguments \['epoch'\].*did you mean 'epochs'"),
        (lambda: ds.msgl.fit("idw", pwer=3), r"\['pwer'\].*did you mean 'power'"),
        # A baseline is pointed to its own settings, not to the networks' it refuses.
        (lambda: ds.msgl.fit("climatology", epoch=1), r"\['epoch'\] that baseline 'climatology' does "
         r"not take; it takes"),
        (lambda: ds.msgl.fit("gru", hiden=3), r"\['hiden'\] are not arguments of method 'gru'.*"
         r"did you mean 'hidden'.*clip_grad_norm and device \('auto' or 'cpu': it trains on the CPU\)$"),
        # Refused before the in-sample warning of a call that is refused anyway.
        (lambda: ds.msgl.evaluate(ds.reach_temp, bi="season"), r"\['bi'\] that it does not take; it takes \['by'"),
    ]
    for call, match in cases:
        with pytest.raises(ParameterError, match=match):
            call()


def test_accessor_methods_show_the_arguments_of_the_functions_they_call() -> None:
    """help(ds.msgl.downscale) and a notebook's pop-up list the function's arguments."""
    import inspect
    import pydoc

    from xmsgl.convention import to_convention, validate
    from xmsgl.coverage import coverage
    from xmsgl.datasets import synthetic_basin
    from xmsgl.graph import build_graphs
    from xmsgl.sampling import sparsify

    ds = synthetic_basin(n_segments=4, start="2001-01-01", end="2001-02-28", seed=1)
    for name, func in [("validate", validate), ("to_convention", to_convention),
                       ("graphs", build_graphs), ("fit", fit), ("downscale", downscale),
                       ("coverage", coverage), ("sparsify", sparsify)]:
        params = list(inspect.signature(func).parameters.values())
        assert params[0].name == "ds"
        method = getattr(ds.msgl, name)
        assert list(inspect.signature(method).parameters.values()) == params[1:], name
        assert func.__doc__ and func.__doc__ in (method.__doc__ or ""), name
    text = pydoc.render_doc(ds.msgl.downscale, renderer=pydoc.plaintext)
    assert "reach_chunk" in text and "ds.msgl.downscale(...)" in text
    # Positional arguments reach the function as they did (sparsify's keep).
    kept = ds.msgl.sparsify(0.5, 3)
    assert kept.reach_temp.count() < ds.reach_temp.count()


def test_accessor_methods_pickle_compare_and_refuse_bad_positions() -> None:
    """A bound method is pickled by its name (ProcessPool workers), two lookups are equal,
    and a call Python would refuse is a ParameterError counting the user's arguments."""
    import pickle

    from xmsgl.datasets import synthetic_basin

    ds = synthetic_basin(n_segments=4, start="2001-01-01", end="2001-02-28", seed=1)
    for name in ("validate", "to_convention", "graphs", "fit", "downscale", "coverage", "sparsify"):
        method = getattr(ds.msgl, name)
        assert method == getattr(ds.msgl, name) and method.__name__ == name
        assert pickle.loads(pickle.dumps(method)).__name__ == name
    assert type(pickle.loads(pickle.dumps(ds.msgl.graphs))()).__name__ == "RiverGraphs"
    with pytest.raises(ParameterError, match=r"ds.msgl.coverage\(\): too many positional arguments; "
                                             r"it takes \(model, \*, margin=1.0, time=None\)"):
        ds.msgl.coverage("m", 2.0)
    with pytest.raises(ParameterError, match=r"ds.msgl.validate\(\): too many positional arguments"):
        ds.msgl.validate(False)
    with pytest.raises(ParameterError, match=r"ds.msgl.fit\(\) is called on its dataset .* leave ds= out"):
        ds.msgl.fit(ds=ds)


def test_every_named_choice_that_does_not_exist_is_a_choice_error(basin: xr.Dataset, model: Downscaler) -> None:
    # Only the graphs' and metrics' choices were ChoiceError; fit's weighting="gaussian"
    # (the documented example) and the rest were a plain ParameterError.
    import xmsgl.evaluate
    import xmsgl.robustness
    from xmsgl.exceptions import ChoiceError
    from xmsgl.sampling import sparsify

    cases = [
        lambda: fit(basin, method="gnn", **FAST_FIT),
        lambda: fit(basin, method="msgl", weighting="gaussian", **FAST_FIT),
        lambda: fit(basin, method="msgl", fine_head="mlp", **FAST_FIT),
        lambda: fit(basin, method="msgl", backbone="gat", **FAST_FIT),
        lambda: fit(basin, method="msgl", input_scaling="minmax", **FAST_FIT),
        lambda: fit(basin, method="msgl", lr_schedule="step", **FAST_FIT),
        lambda: fit(basin, method="msgl", device="tpu", **FAST_FIT),
        lambda: downscale(basin, model, scale="segment"),
        lambda: sparsify(basin, keep=0.5, by="segment"),
        lambda: basin.msgl.graphs(weighting="gaussian"),
        lambda: fit(basin, method="async-msgl", stage_a_tasks=["bogus"], **FAST_FIT),
        lambda: xmsgl.datasets.open_drb(source="bogus"),
        lambda: xmsgl.evaluate.cross_validate(basin, "msgl", score="bogus"),
        lambda: xmsgl.robustness.robustness(basin, model, checks={"bogus": [1]}),
    ]
    for case in cases:
        with pytest.raises(ChoiceError) as err:
            case()
        assert isinstance(err.value, ParameterError)


def test_module_functions_refuse_unknown_arguments_as_the_accessor_does(basin: xr.Dataset) -> None:
    # The accessor and fit named a misspelled argument with a ParameterError and a
    # suggestion; the module functions raised Python's bare TypeError.
    import xmsgl
    from xmsgl.coverage import coverage
    from xmsgl.evaluate import evaluate
    from xmsgl.robustness import lag
    from xmsgl.sampling import sparsify

    calls = [
        (lambda: downscale(basin, "m", spin_up=10), r"downscale\(\) got argument \['spin_up'\] .*"
                                                    r"did you mean 'spinup'"),
        (lambda: coverage(basin, "m", tim=None), r"coverage\(\) got argument \['tim'\]"),
        (lambda: sparsify(basin, kep=0.1), r"sparsify\(\) got argument \['kep'\] .*did you mean 'keep'"),
        (lambda: xmsgl.validate(basin, check_value=False), r"did you mean 'check_values'"),
        (lambda: evaluate(basin.reach_temp, basin.reach_temp, dim="time"), r"did you mean 'dims'"),
        (lambda: lag(basin, day=1), r"lag\(\) got argument \['day'\] .*did you mean 'days'"),
        (lambda: xmsgl.load("m", devise="cpu"), r"load\(\) got argument \['devise'\]"),
        (lambda: downscale(basin), r"downscale\(\): missing a required argument: 'model_or_path'"),
    ]
    for call, says in calls:
        with pytest.raises(ParameterError, match=says):
            call()
    # The signature stays the function's own (help and pop-ups).
    import inspect

    assert "spinup" in inspect.signature(downscale).parameters


def test_a_home_folder_that_does_not_exist_is_named(basin: xr.Dataset) -> None:
    # ~user of no user: Python's RuntimeError "Could not determine home directory".
    import xmsgl

    for call in (lambda: basin.msgl.downscale("~nosuchuser_xmsgl/m"),
                 lambda: xmsgl.load("~nosuchuser_xmsgl/m"),
                 lambda: xmsgl.io.to_netcdf_safe(basin, "~nosuchuser_xmsgl/x.nc")):
        with pytest.raises(ParameterError, match=r"starts with '~nosuchuser_xmsgl', but there is no "
                                                 r"such home folder here; give the full path"):
            call()
