"""Undeclared fill values (-9999 and kin) in inputs other than temperatures.

A fill value among the training days sets the mean and standard deviation that would
judge it: one -9999 among N precipitation values scores only about sqrt(N) standard
deviations, never the 1000 that refuse far values, so it used to train the model.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr

import xmsgl
from xmsgl.exceptions import DataError, XmsglWarning
from xmsgl.train import FILL_VALUES, refuse_fill_values

torch.set_num_threads(1)

PERIODS = {"train": ("2000-10-01", "2001-09-30"), "val": ("2001-10-01", "2002-03-31"),
           "test": ("2002-04-01", "2002-09-30")}
FIT = {"method": "msgl", "epochs": 1, "seed": 0, "window": 120, "stride": 120, "progress": False,
       "hidden": 4, **PERIODS}


@pytest.fixture(scope="module")
def basin() -> xr.Dataset:
    return xmsgl.datasets.synthetic_basin(n_segments=6, start="2000-10-01", end="2002-09-30", seed=0)


@pytest.fixture(scope="module")
def model(basin: xr.Dataset) -> Any:
    return basin.msgl.fit(**FIT)


def _negative_warned(name: str) -> Any:
    """validate's warning of a negative precipitation or area, which comes first."""
    if name.endswith("_precip"):
        return pytest.warns(XmsglWarning, match=rf"'{name}' .* is negative .*is never negative")
    import contextlib

    return contextlib.nullcontext()


def _set(ds: xr.Dataset, name: str, index: Any, value: float) -> xr.Dataset:
    out = ds.copy(deep=True)
    out[name].values[index] = value
    return out


@pytest.mark.parametrize(("name", "index", "where"), [
    ("seg_precip", (1, 100), r"seg \d+ on 2001-01-09"),
    ("reach_precip", (2, 40), r"reach \d+ on 2000-11-10"),
    ("reach_width", (3,), r"reach \d+\)"),
])
def test_fit_refuses_one_fill_value_among_the_training_days(basin: xr.Dataset, name: str,
                                                             index: Any, where: str) -> None:
    bad = _set(basin, name, index, -9999.0)
    with _negative_warned(name), pytest.raises(
            DataError, match=rf"{name!r} holds 1 value of -9999 \(at {where}.*beyond its "
                             rf"other training values.*!= -9999"):
        bad.msgl.fit(**FIT)


def test_a_999_in_shortwave_radiation_is_refused(basin: xr.Dataset) -> None:
    # 999 W m-2, a code some station files write, lies inside 10 training standard
    # deviations of a daily radiation and was read as a sunny day.
    bad = _set(basin, "reach_swrad", (2, 40), 999.0)
    with pytest.raises(DataError, match=r"'reach_swrad' holds 1 value of 999 \(at reach \d+ on 2000-11-10"):
        bad.msgl.fit(**FIT)


def test_a_real_999_far_beyond_training_is_not_taken_for_a_fill_value(basin: xr.Dataset, model: Any) -> None:
    # In whole metres an elevation of 999 m, where training saw 35-262 m, is an
    # extrapolation to warn of, not a missing-data code to mask (998 and 1000 passed).
    high = basin.copy(deep=True)
    values = high["reach_elevation"].values
    assert values.max() < 400
    values[3] = 999.0
    with pytest.warns(xmsgl.ExtrapolationWarning, match="reach_elevation"):
        high.msgl.downscale(model)


def test_a_999_in_a_forcing_at_downscale_is_refused(basin: xr.Dataset, model: Any) -> None:
    # One day of 999 W m-2 at every reach moved predictions by up to 0.87 degC unsaid.
    bad = basin.copy(deep=True)
    bad["reach_swrad"][{"time": 200}] = 999.0
    if float(abs(999.0 - model.features.mean["reach_swrad"]) / model.features.std["reach_swrad"]) <= 10:
        pytest.skip("999 lies within 10 training standard deviations on this basin")
    with pytest.raises(DataError, match=r"'reach_swrad' holds \d+ values? of 999"):
        bad.msgl.downscale(model)


def test_fit_refuses_many_fill_values(basin: xr.Dataset) -> None:
    # 5% of the days: the standard deviation they make would score them about 4.
    bad = basin.copy(deep=True)
    vals = bad["reach_precip"].values
    vals[np.random.default_rng(0).random(vals.shape) < 0.05] = -999.0
    with _negative_warned("reach_precip"), pytest.raises(
            DataError, match=r"'reach_precip' holds \d+ values of -999 \(at .* and \d+ more\)"):
        bad.msgl.fit(**FIT)


def test_a_fill_value_outside_the_training_days_is_refused_too(basin: xr.Dataset) -> None:
    # On a test day it is no training value, and the clean standard deviation finds it.
    bad = _set(basin, "reach_precip", (2, 600), -9999.0)
    with _negative_warned("reach_precip"), pytest.raises(
            DataError, match=r"'reach_precip' has 1 value \(-9999\) more than 1000 .*\(at reach 3 on 2002-05-24\)"):
        bad.msgl.fit(**FIT)


@pytest.mark.parametrize(("name", "index", "fix"), [
    ("reach_width", (5,), "from related values"),
    ("reach_precip", (2, slice(40, 45)), r"interpolate_na\('time'\)"),
])
def test_downscale_refuses_fill_values_nearer_than_1000_deviations(
        basin: xr.Dataset, model: Any, name: str, index: Any, fix: str) -> None:
    bad = _set(basin, name, index, -999.0)
    # downscale validates without reading values (no sign warning): the check of the
    # inputs as they are read finds them.
    with pytest.raises(
            DataError, match=rf"{name!r} holds \d+ values? of -999 .*more than 10 standard "
                             rf"deviations from its training mean.*{fix}"):
        bad.msgl.downscale(model)


def test_the_same_numbers_as_real_values_are_kept(basin: xr.Dataset) -> None:
    # Elevations reach -999 m nowhere on land, but a value in line with the others is
    # not judged by its digits: only one far beyond them is.
    ds = basin.copy(deep=True)
    vals = np.asarray(ds["reach_width"].values, dtype=np.float64)
    vals = vals * 1000.0   # widths of 0.6-12 km: 9999 is then among them
    vals[0] = 9999.0
    refuse_fill_values(ds.assign(reach_width=("reach", vals, ds["reach_width"].attrs)),
                       "reach_width", vals, np.ones(ds.sizes["time"], bool))
    with pytest.raises(DataError, match="its only values"):
        only = np.full(4, -9999.0)
        refuse_fill_values(xr.Dataset({"x": ("reach", only, {"units": "m"})}), "x", only, np.ones(1, bool))


def test_temperatures_keep_their_own_check(basin: xr.Dataset) -> None:
    bad = _set(basin, "reach_air_temp", (0, 10), -9999.0)
    with pytest.raises(xmsgl.UnitsError):
        bad.msgl.fit(**FIT)


def test_every_fill_value_is_matched_as_files_store_it() -> None:
    # The whole codes are exact in float32; the decimal ones (PRMS's -99.9) are matched
    # in float32, as files store them, from float32 and float64 data alike.
    assert all(float(np.float32(v)) == v for v in FILL_VALUES if v == round(v))
    codes = np.asarray(FILL_VALUES, dtype=np.float32)
    for dtype in (np.float32, np.float64):
        stored = np.asarray(FILL_VALUES, dtype=dtype)
        assert np.isin(stored.astype(np.float32), codes).all()


@pytest.mark.parametrize("value", [1e20, 9.96921e36, -1e30, 3.4e38])
def test_fit_refuses_huge_fill_values(basin: xr.Dataset, value: float) -> None:
    # CMIP's missing_value, netCDF's default float fill: three among a year of
    # radiation set its standard deviation to 1e17, and the model learned nothing from it.
    bad = basin.copy(deep=True)
    bad["reach_swrad"].values[3, 5:8] = value
    # An incoming radiation below 0 is named as such first (validate warns of it).
    negative = pytest.warns(XmsglWarning, match="is negative") if value < 0 else contextlib.nullcontext()
    with negative, pytest.raises(DataError, match=r"'reach_swrad' holds 3 values of .*beyond its other "
                                                  r"training values.*where\(abs\(ds\['reach_swrad'\]\) < 1e\+15\)"):
        bad.msgl.fit(**FIT)


def test_huge_values_in_line_with_the_others_are_kept() -> None:
    # Not the magnitude alone but the distance from the other values makes a fill value
    # (a variable of nothing but such values is refused, as one of -9999 only is).
    vals = np.array([1e14, 5e14, 9e14, 1.2e15])
    ds = xr.Dataset({"x": ("reach", vals, {"units": "m2"})})
    refuse_fill_values(ds, "x", vals, np.ones(1, bool))
    many = np.concatenate([np.linspace(0.0, 1.0, 50), [1e20, -1e20, 5e30, 7e36]])
    with pytest.raises(DataError,
                       match=r"4 values of -1e\+20 and 1e\+20 and 5e\+30 \(and 1 other value\)"):
        refuse_fill_values(xr.Dataset({"x": ("reach", many, {"units": "m2"})}), "x", many,
                           np.ones(1, bool))


@pytest.mark.parametrize("kwargs", [{"mask_and_scale": False}, {"decode_cf": False},
                                    {"mask_and_scale": False, "chunks": {}}])
def test_a_declared_fill_value_left_unmasked_is_refused(basin: xr.Dataset, tmp_path: Any,
                                                        kwargs: dict[str, Any]) -> None:
    # -50 W m-2 lies among real radiation values, so no check of the values finds it.
    ds = basin.copy(deep=True)
    ds["reach_swrad"].values[3, 5:40] = np.nan
    ds["reach_swrad"].encoding["_FillValue"] = -50.0
    ds.to_netcdf(tmp_path / "fill.nc")
    with xr.open_dataset(tmp_path / "fill.nc", **kwargs) as raw:
        found = "its values are not read here" if "chunks" in kwargs else "35 values equal to it"
        with pytest.raises(DataError, match=rf"'reach_swrad' was not masked: its attributes still "
                                            rf"declare _FillValue = -50 \({found}\).*decode_cf"):
            raw.msgl.validate()
    with xr.open_dataset(tmp_path / "fill.nc") as decoded:
        assert int(decoded.msgl.validate()["reach_swrad"].isnull().sum()) == 35


def test_a_fill_attribute_on_masked_values_passes(basin: xr.Dataset) -> None:
    ds = basin.copy(deep=True)
    ds["reach_swrad"].values[3, 5:40] = np.nan
    ds["reach_swrad"].attrs["missing_value"] = -50.0
    ds.msgl.validate()
    ds["reach_swrad"].values[3, 5] = -50.0
    with pytest.raises(DataError, match="missing_value = -50 \\(1 value equal to it\\)"):
        ds.msgl.validate()


def test_a_float64_fill_on_float32_values_is_found_and_the_mask_advised_works(basin: xr.Dataset) -> None:
    # -99.9 in float32 equals no float64 number; xr.decode_cf compares so too and keeps
    # it (xarray 2026.9; 2025.11 masked it, and then decode_cf is the advice).
    ds = basin.copy(deep=True)
    ds["reach_swrad"] = ds["reach_swrad"].astype("float32")
    ds["reach_swrad"].values[2, 10:14] = np.float32(-99.9)
    ds["reach_swrad"].attrs["missing_value"] = -99.9
    if int(xr.decode_cf(ds)["reach_swrad"].isnull().sum()) == 4:
        with pytest.raises(DataError, match=r"missing_value = -99.9 \(4 values equal to it\).*decode_cf"):
            ds.msgl.validate()
        assert int(xr.decode_cf(ds).msgl.validate()["reach_swrad"].isnull().sum()) == 4
    else:
        with pytest.raises(DataError, match=r"missing_value = -99.9 \(4 values equal to it\).*declared as "
                                            r"float64 and the values are float32") as err:
            ds.msgl.validate()
        advised = re.search(r"ds\['reach_swrad'\] = (.*) and drop", str(err.value))
        assert advised is not None
        ds["reach_swrad"] = eval(advised.group(1), {"ds": ds, "np": np})
        assert int(ds.msgl.validate()["reach_swrad"].isnull().sum()) == 4
    # A float64 variable with the same fill is still compared exactly.
    exact = basin.copy(deep=True)
    exact["reach_swrad"] = exact["reach_swrad"].astype("float64")
    exact["reach_swrad"].values[2, 10] = -99.9
    exact["reach_swrad"].attrs["missing_value"] = -99.9
    with pytest.raises(DataError, match=r"\(1 value equal to it\).*decode_cf\(ds\)"):
        exact.msgl.validate()


@pytest.mark.parametrize("lazy", [False, True])
def test_a_fill_value_in_a_temperature_at_downscale_is_a_units_error_that_says_where(
        basin: xr.Dataset, model: Any, lazy: bool) -> None:
    # The check of the standard scores ran first, and its DataError named no place.
    bad = _set(basin, "reach_air_temp", (2, 400), -9999.0)
    if lazy:
        bad = bad.chunk({"time": 100})
    with pytest.raises(xmsgl.UnitsError, match=r"'reach_air_temp' spans -9999.0\.\..* \(1 value, at "
                                               r"reach 3 on 2001-11-05\)"):
        bad.msgl.downscale(model).load()


def test_far_values_of_another_input_are_located(basin: xr.Dataset, model: Any) -> None:
    bad = _set(basin, "reach_precip", (4, slice(500, 502)), 5e7)
    with pytest.raises(DataError, match=r"'reach_precip' has 2 values \(5e\+07\) more than 1000 .*"
                                        r"\(at reach 5 on 2002-02-13, reach 5 on 2002-02-14\)"):
        bad.msgl.downscale(model)
    # validate names the first places of a temperature outside its plausible range too.
    hot = _set(basin, "seg_air_temp", (1, 30), 1e20)
    with pytest.raises(xmsgl.UnitsError, match=r"holds 1e\+20 \(1 value, at seg 2 on 2000-10-31\)"):
        hot.msgl.validate()


def test_the_mask_advised_leaves_no_fill_value_found(basin: xr.Dataset) -> None:
    # It used to name both values and mask one: the next fit refused the other.
    bad = basin.copy(deep=True)
    bad["reach_swrad"].values[3, 5] = 1e20
    bad["reach_swrad"].values[3, 9] = -9999.0
    with pytest.raises(DataError) as info:
        bad.msgl.fit(**FIT)
    advice = re.search(r"ds\['reach_swrad'\] = (ds\['reach_swrad'\]\.where\(.*\)), then", str(info.value))
    assert advice, str(info.value)
    masked = eval(advice.group(1), {"ds": bad})  # the advice, run as written
    assert int(masked.isnull().sum()) == 2
    bad["reach_swrad"] = masked.interpolate_na("time")
    bad.msgl.fit(**FIT)


def test_a_value_on_the_plausible_bound_is_no_fill_value(basin: xr.Dataset) -> None:
    # 65 degC lies inside the range; extremes rebuilt from float32 scores put it past.
    for k in range(6):
        ok = basin.copy(deep=True)
        ok["reach_air_temp"].values[k, 10 + k] = 65.0
        ok.msgl.fit(**FIT)


def test_the_fill_value_advice_at_downscale_does_not_say_to_leave_the_input_out(
        basin: xr.Dataset, model: Any) -> None:
    # A fitted model needs every input it was fitted with: leaving it out, as the
    # message advised at downscale as at fit, was refused with a ModelMismatchError.
    bad = _set(basin, "reach_swrad", (3, 9), 9999.0)
    with pytest.raises(DataError, match=r"standard deviations from its training mean") as info:
        bad.msgl.downscale(model)
    said = str(info.value)
    assert "cannot be left out" in said and "or leave the variable out" not in said
    with pytest.raises(xmsgl.ModelMismatchError):
        bad.drop_vars("reach_swrad").msgl.downscale(model)
    # At fit, leaving it out is a choice still open.
    with pytest.raises(DataError, match="or leave the variable out"):
        bad.msgl.fit(**FIT)
