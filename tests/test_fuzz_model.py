"""Fuzz tests of ``fit`` and ``downscale`` themselves.

Each example draws a small random river forest with three water years of daily
forcings and sparse observations, breaks it in zero to three ways (NaN, infinite,
huge or constant inputs, inputs of the wrong type or unit, targets without any
fine observation or only in the test period, unsorted, duplicated, gapped or empty
time axes, and every topology mutation of :mod:`tests.test_fuzz`), draws fitting
arguments (sometimes invalid ones) and calls the public entry points.

The properties:

* only :class:`~xmsgl.exceptions.XmsglError` subclasses come out, and no call
  hangs (an alarm fails it after ``HANG_SECONDS``);
* whenever ``fit`` accepts a dataset, downscaling that dataset gives a finite
  value for every reach and day (its inputs were complete, or ``fit`` would have
  refused it);
* whenever ``downscale`` accepts a (possibly broken) dataset with a fitted model,
  every returned value is finite and the result has the dataset's reaches.

The budget is ``XMSGL_FUZZ_MODEL_EXAMPLES`` examples per property (12 by default:
each fit takes about a second here). For a longer manual run::

    XMSGL_FUZZ_MODEL_EXAMPLES=300 python -m pytest tests/test_fuzz_model.py -s

The number of cases run, accepted and refused, is printed at the end of the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xmsgl
from tests.fuzzing import FuzzCases
from tests.strategies import random_river_dataset, river_datasets
from tests.test_fuzz import MUTATIONS as TOPOLOGY_MUTATIONS
from tests.test_fuzz import mutate as mutate_topology

N_EXAMPLES = int(os.environ.get("XMSGL_FUZZ_MODEL_EXAMPLES", "20"))
HANG_SECONDS = 120
FUZZ = settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.function_scoped_fixture],
)
N_DAYS = 3 * 365 + 1
START = "2000-10-01"
INPUTS = ("seg_air_temp", "reach_air_temp", "reach_shade")
#: Small, fast networks: every fit below takes about a second on one thread.
FAST = {"epochs": 1, "hidden": 4, "window": 60, "stride": 60,
        "attn_window": 5, "progress": False}

#: Outcomes per property, printed at the end of the module.
CASES = FuzzCases(N_EXAMPLES, "XMSGL_FUZZ_MODEL_EXAMPLES", HANG_SECONDS)
_guarded = CASES.guarded


@pytest.fixture(scope="module", autouse=True)
def _report_cases(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    CASES.report(request)


def with_time(topo: xr.Dataset, seed: int, days: int = N_DAYS, fine_share: float = 0.05) -> xr.Dataset:
    """``topo`` with daily forcings, a static input and sparse observations (degC)."""
    rng = np.random.default_rng(seed)
    time = pd.date_range(START, periods=days)
    ds = topo.assign_coords(time=time)
    doy = time.day_of_year.to_numpy()
    season = 10.0 - 10.0 * np.cos(2 * np.pi * (doy - 20) / 365.25)
    ns, nr = ds.sizes["seg"], ds.sizes["reach"]
    seg_air = (season[None] + rng.normal(0, 2, (ns, days))).astype(np.float32)
    reach_air = (season[None] + rng.normal(0, 2, (nr, days))).astype(np.float32)
    shade = rng.uniform(0, 1, nr)
    seg_obs = rng.random((ns, days)) < 0.8
    reach_obs = rng.random((nr, days)) < fine_share
    reach_obs[rng.integers(0, nr), rng.integers(0, 365)] = True  # at least one in the first year
    deg = {"units": "degC"}
    ds["seg_air_temp"] = (("seg", "time"), seg_air, deg)
    ds["reach_air_temp"] = (("reach", "time"), reach_air, deg)
    ds["reach_shade"] = (("reach",), shade, {"units": "1"})
    ds["seg_temp"] = (("seg", "time"), np.where(seg_obs, 0.8 * seg_air + 2, np.nan).astype(np.float32),
                      deg)
    water = 0.8 * reach_air + 2 - 2 * shade[:, None]
    ds["reach_temp"] = (("reach", "time"), np.where(reach_obs, water, np.nan).astype(np.float32), deg)
    return ds


DATA_MUTATIONS = ("nan_input", "inf_input", "huge_input", "constant_input", "no_fine_obs",
                  "fine_obs_only_late", "string_input", "int_input", "kelvin_input", "unitless_input",
                  "unsorted_time", "duplicate_time", "gap_time", "empty_time", "short_time",
                  "nat_time", "drop_input", "transpose", "extra_dim", "topology")


def mutate_data(draw: st.DrawFn, ds: xr.Dataset, op: str) -> xr.Dataset:
    """``ds`` broken in the way ``op`` names (some operations leave it valid)."""
    n_time = ds.sizes.get("time", 0)
    if op == "topology":
        return mutate_topology(draw, ds, draw(st.sampled_from(TOPOLOGY_MUTATIONS)))
    if op in ("nan_input", "inf_input", "huge_input", "constant_input", "string_input",
              "int_input", "kelvin_input", "unitless_input", "drop_input", "transpose", "extra_dim"):
        name = draw(st.sampled_from(INPUTS))
        if (name not in ds.variables or ds[name].size == 0 or ds[name].dtype.kind != "f"
                or "member" in ds[name].dims):
            return ds
        out = ds.copy()
        da = ds[name].copy(deep=True)
        flat = da.values.reshape(-1)
        i = draw(st.integers(0, flat.size - 1))
        if op in ("nan_input", "inf_input", "huge_input"):
            flat[i] = {"nan_input": np.nan, "inf_input": -np.inf, "huge_input": 3e38}[op]
            out[name] = da
        elif op == "constant_input":
            out[name] = da.copy(data=np.full(da.shape, 7.0, dtype=da.dtype))
        elif op == "string_input":
            out[name] = da.astype(str)
        elif op == "int_input":
            out[name] = da.fillna(0).astype(np.int64)
        elif op == "kelvin_input":
            out[name] = (da + 273.15).assign_attrs(units="K")
        elif op == "unitless_input":
            out[name] = da.assign_attrs(units=draw(st.sampled_from(["", "bananas", "degC/day"])))
        elif op == "drop_input":
            out = out.drop_vars(name)
        elif op == "transpose":
            out[name] = da.transpose(*reversed(da.dims))
        else:
            out[name] = da.expand_dims(member=2)
        return out
    if op in ("no_fine_obs", "fine_obs_only_late"):
        if "reach_temp" not in ds.variables or n_time == 0:
            return ds
        out = ds.copy()
        vals = ds["reach_temp"].values.copy()
        if op == "no_fine_obs":
            vals[:] = np.nan
        else:
            vals[:, : max(0, n_time - 200)] = np.nan
        out["reach_temp"] = ds["reach_temp"].copy(data=vals)
        return out
    if n_time == 0:
        return ds
    time = pd.DatetimeIndex(ds["time"].values)
    if op == "unsorted_time":
        i, j = draw(st.integers(0, n_time - 1)), draw(st.integers(0, n_time - 1))
        order = np.arange(n_time)
        order[[i, j]] = order[[j, i]]
        return ds.isel(time=order)
    if op == "duplicate_time":
        values = time.to_numpy().copy()
        i = draw(st.integers(1, n_time - 1)) if n_time > 1 else 0
        values[i] = values[i - 1] if i else values[i]
        return ds.assign_coords(time=values)
    if op == "gap_time":
        i = draw(st.integers(1, max(1, n_time - 2)))
        return ds.isel(time=np.r_[0:i, min(n_time, i + 30):n_time])
    if op == "empty_time":
        return ds.isel(time=slice(0, 0))
    if op == "short_time":
        return ds.isel(time=slice(0, draw(st.integers(1, 40))))
    # nat_time
    values = time.to_numpy().copy()
    values[draw(st.integers(0, n_time - 1))] = np.datetime64("NaT", "ns")
    return ds.assign_coords(time=values)


@st.composite
def timed_datasets(draw: st.DrawFn, max_ops: int = 3) -> tuple[xr.Dataset, list[str]]:
    topo = draw(river_datasets(max_seg=5, max_reaches_per_seg=3))
    ds = with_time(topo, draw(st.integers(0, 2**31 - 1)))
    ops = draw(st.lists(st.sampled_from(DATA_MUTATIONS), min_size=0, max_size=max_ops))
    for op in ops:
        ds = mutate_data(draw, ds, op)
    return ds, ops


#: Valid fitting arguments; at most one of them is then replaced by an invalid value.
good_fit_arguments = st.fixed_dictionaries({
    "method": st.sampled_from(["msgl", "msgl", "async-msgl", "fine-only", "remap", "direct",
                               "progressive", "climatology", "idw"]),
    "weighting": st.sampled_from(["mgda", "equal"]),
})
BAD_FIT_ARGUMENTS = {"method": ["nope", ""], "weighting": ["sometimes"], "epochs": [0, -1, 2.5, True],
                     "hidden": [0, "20"], "lr": [float("nan"), -1.0, float("inf"), "fast"],
                     "window": [5000, 1, 0], "stride": [0, None]}


@st.composite
def fit_arguments(draw: st.DrawFn) -> dict[str, Any]:
    args = draw(good_fit_arguments)
    if draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(sorted(BAD_FIT_ARGUMENTS)))
        args[name] = draw(st.sampled_from(BAD_FIT_ARGUMENTS[name]))
    return args


def _fit(ds: xr.Dataset, args: dict[str, Any]) -> Any:
    method = args["method"]
    if method in ("climatology", "idw", "nope", ""):
        return ds.msgl.fit(method=method)
    kwargs = {**FAST, **args}
    kwargs.pop("method")
    if method in ("async-msgl", "direct", "progressive"):
        kwargs["pretrain_epochs"] = 1  # the methods with a first stage
    if method not in ("msgl", "async-msgl"):
        # The task weighting and the cross-scale head are MSGL's: others refuse them.
        kwargs.pop("attn_window")
        if kwargs["weighting"] in ("mgda", "equal"):
            kwargs.pop("weighting")
    return ds.msgl.fit(method=method, **kwargs)


def _assert_finite_where_complete(out: xr.DataArray, ds: xr.Dataset) -> None:
    """Every returned value is finite (downscale refuses incomplete inputs)."""
    assert out.dims == ("reach", "time")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out["reach"].values, ds["reach"].values)
    bad = ~np.isfinite(out.values)
    assert not bad.any(), (f"{int(bad.sum())} non-finite outputs at reaches "
                           f"{out['reach'].values[bad.any(axis=1)][:5].tolist()}")


@given(case=timed_datasets(), args=fit_arguments())
@FUZZ
def test_fit_only_raises_typed_errors_and_its_models_give_finite_output(
    case: tuple[xr.Dataset, list[str]], args: dict[str, Any]
) -> None:
    ds, _ops = case
    model = _guarded("fit", lambda: _fit(ds, args))
    if model is None:
        return
    out = _guarded("downscale after fit", lambda: ds.msgl.downscale(model))
    assert out is not None, "a dataset that fit accepted was refused by downscale"
    _assert_finite_where_complete(out, ds)


@pytest.fixture(scope="module")
def fitted() -> tuple[xr.Dataset, Any]:
    ds = with_time(random_river_dataset(3, n_seg=4, n_outlets=2), seed=3)
    return ds, ds.msgl.fit(method="msgl", **FAST)


good_downscale_arguments = st.fixed_dictionaries({
    "scale": st.sampled_from(["reach", "reach", "seg"]),
    # The drawn networks differ from the fitted one: mostly apply the model anyway.
    "check_graph": st.sampled_from([False, False, False, True]),
    "time": st.sampled_from([None, None, ("2002-01-01", "2002-03-01"), slice("2003-09-01", None)]),
    "spinup": st.sampled_from([180, 0, 30]),
    "chunk": st.sampled_from([365, 100]),
})
BAD_DOWNSCALE_ARGUMENTS = {"scale": ["both", None], "time": [("1990-01-01", "1990-02-01"),
                                                             ("2002-05-01", "2002-01-01")],
                           "spinup": [-5, 2.5], "chunk": [0, "365"], "batch_size": [0, -1]}


@st.composite
def downscale_arguments(draw: st.DrawFn) -> dict[str, Any]:
    args = draw(good_downscale_arguments)
    if draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(sorted(BAD_DOWNSCALE_ARGUMENTS)))
        args[name] = draw(st.sampled_from(BAD_DOWNSCALE_ARGUMENTS[name]))
    return args


@given(case=timed_datasets(max_ops=2), args=downscale_arguments())
@FUZZ
def test_downscale_only_raises_typed_errors_and_never_returns_nan(
    fitted: tuple[xr.Dataset, Any], case: tuple[xr.Dataset, list[str]], args: dict[str, Any]
) -> None:
    _, model = fitted
    ds, _ops = case
    out = _guarded("downscale", lambda: ds.msgl.downscale(model, **args))
    if out is None:
        return
    if args["scale"] == "seg":
        assert out.dims == ("seg", "time")
        assert np.isfinite(out.values).all()
        return
    _assert_finite_where_complete(out, ds)


def test_downscale_of_the_fitted_dataset_itself_is_finite(fitted: tuple[xr.Dataset, Any]) -> None:
    ds, model = fitted
    out = ds.msgl.downscale(model)
    _assert_finite_where_complete(out, ds)
    # And a model fitted on one network applies to another when asked to.
    other = with_time(random_river_dataset(11, n_seg=6), seed=11)
    _assert_finite_where_complete(other.msgl.downscale(model, check_graph=False), other)


# ------------------------------------------------- regressions the fuzzing found


@pytest.mark.parametrize("kwargs, word", [({"lr": float("nan")}, "lr="), ({"epochs": 2.5}, "epochs="),
                                          ({"hidden": True}, "hidden="), ({"stride": 0}, "stride=")])
def test_fit_refuses_bad_numbers_with_parameter_errors(
    fitted: tuple[xr.Dataset, Any], kwargs: dict[str, Any], word: str
) -> None:
    from xmsgl.exceptions import ParameterError

    ds, _ = fitted
    with pytest.raises(ParameterError, match=word):
        ds.msgl.fit(method="msgl", **{**FAST, **kwargs})


@pytest.mark.parametrize("kwargs", [{"chunk": 0}, {"spinup": -1}, {"batch_size": 0}])
def test_downscale_refuses_bad_counts(fitted: tuple[xr.Dataset, Any], kwargs: dict[str, Any]) -> None:
    from xmsgl.exceptions import ParameterError

    ds, model = fitted
    with pytest.raises(ParameterError, match=next(iter(kwargs))):
        ds.msgl.downscale(model, **kwargs)


def test_downscale_refuses_fill_values_and_extra_dimensions(fitted: tuple[xr.Dataset, Any]) -> None:
    from xmsgl.exceptions import DataError, SchemaError, UnitsError

    ds, model = fitted
    bad = ds.copy()
    air = ds["reach_air_temp"].values.copy()
    air[0, :3] = -9999.0
    bad["reach_air_temp"] = ds["reach_air_temp"].copy(data=air)
    # A temperature is judged by its plausible range first (the documented UnitsError).
    with pytest.raises(UnitsError, match=r"'reach_air_temp' spans -9999.0\.\..*\(3 values, at reach"):
        bad.msgl.downscale(model)
    bad = ds.copy()
    shade = ds["reach_shade"].values.copy()
    shade[:3] = -9999.0
    bad["reach_shade"] = ds["reach_shade"].copy(data=shade)
    with pytest.raises(DataError, match=r"'reach_shade' has 3 values \(-9999\) more than .*\(at reach"):
        bad.msgl.downscale(model)
    bad = ds.copy()
    bad["seg_air_temp"] = ds["seg_air_temp"].expand_dims(member=2)
    with pytest.raises(SchemaError, match=r"'seg_air_temp' is on dimensions \('member'"):
        bad.msgl.downscale(model)


def test_baselines_refuse_unusable_time_axes() -> None:
    from xmsgl.exceptions import TimeError

    ds = with_time(random_river_dataset(5, n_seg=3), seed=5)
    with pytest.raises(TimeError, match="too few"):
        ds.isel(time=slice(0, 1)).msgl.fit(method="climatology")
    model = ds.msgl.fit(method="climatology")
    times = ds["time"].values.copy()
    times[4] = np.datetime64("NaT", "ns")
    with pytest.raises(TimeError, match="NaT"):
        ds.assign_coords(time=times).msgl.downscale(model)


def test_the_gru_refuses_an_empty_time_axis_as_the_networks_do() -> None:
    # It failed with a bare IndexError.
    from xmsgl.exceptions import TimeError

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2012-10-01", end="2013-03-31", seed=0,
                                        reach_obs_share=0.5)
    model = ds.msgl.fit(method="gru", epochs=1, progress=False, seed=0)
    for time in (None, ("2012-11-01", "2012-12-01")):
        with pytest.raises(TimeError, match="'time' dimension is empty"):
            ds.isel(time=slice(0, 0)).msgl.downscale(model, time=time)


@pytest.mark.parametrize("time", [None, ("2002-01-01", "2002-03-01")])
def test_downscale_refuses_an_empty_time_axis(fitted: tuple[xr.Dataset, Any], time: Any) -> None:
    from xmsgl.exceptions import TimeError

    ds, model = fitted
    with pytest.raises(TimeError, match="'time' dimension is empty"):
        ds.isel(time=slice(0, 0)).msgl.downscale(model, time=time)
