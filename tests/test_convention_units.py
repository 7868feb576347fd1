"""Units, dtypes, packing and time zones in the dataset convention."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl
from xmsgl.convention import input_variables, is_temperature_units, same_units, validate
from xmsgl.exceptions import (
    DataError,
    SchemaError,
    TimeError,
    TopologyError,
    UnitConversionWarning,
    UnitsError,
    XmsglWarning,
)


def basin() -> xr.Dataset:
    return xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-01-01", end="2000-03-01")


def relabel(ds: xr.Dataset, name: str, units: str, values: object = None) -> xr.Dataset:
    """A copy of ``ds`` in which ``name`` has ``units`` (and new values, if given)."""
    out = ds.copy()
    da = out[name] if values is None else out[name].copy(data=np.asarray(values))
    out[name] = da.assign_attrs(units=units)
    return out


# ------------------------------------------------------- implausible conversions


@pytest.mark.parametrize("name", ["reach_temp", "seg_temp", "reach_air_temp", "seg_air_temp"])
def test_degc_values_labelled_kelvin_are_refused(name: str) -> None:
    ds = relabel(basin(), name, "K")
    with pytest.raises(UnitsError, match=rf"{name!r} is labelled 'K'.*already in degC") as info:
        validate(ds)
    assert f"ds[{name!r}].attrs['units'] = 'degC'" in str(info.value)


def test_degc_water_labelled_fahrenheit_is_refused() -> None:
    ds = basin()
    with pytest.raises(UnitsError, match=r"water temperature 'reach_temp' is labelled 'degF'"):
        validate(relabel(ds, "reach_temp", "degF"))


def test_bounds_follow_the_role_of_the_variable() -> None:
    ds = basin()
    hot_k = np.full(ds.seg_air_temp.shape, 55.0 + 273.15, dtype=np.float32)
    # 55 degC is a (very) hot day for air ...
    with pytest.warns(UnitConversionWarning, match="'seg_air_temp' converted from 'K'"):
        out = validate(relabel(ds, "seg_air_temp", "K", hot_k))
    np.testing.assert_allclose(out.seg_air_temp.values, 55.0, atol=1e-3)
    # ... but no river is that warm.
    with pytest.raises(UnitsError, match=r"'seg_temp' is labelled 'K'.*-5..50 degC for water"):
        validate(relabel(ds, "seg_temp", "K", hot_k))


def test_only_the_targets_truth_is_judged_as_water() -> None:
    ds = basin()
    cold = np.full(ds.reach_air_temp.shape, -23.0, dtype=np.float32)
    truth_of_air = ds.assign(reach_air_temp_true=(ds.reach_air_temp.dims, cold, {"units": "degC"}))
    validate(truth_of_air)  # a winter's day of air, not an implausible river
    frozen = ds.assign(reach_temp_true=(ds.reach_air_temp.dims, cold, {"units": "degC"}))
    with pytest.raises(UnitsError, match="reach_temp_true"):
        validate(frozen)


def test_true_conversions_pass_and_nan_is_ignored() -> None:
    ds = basin()
    k = relabel(ds, "reach_temp", "K", ds.reach_temp.values + 273.15)
    k = relabel(k, "reach_air_temp", "degF", ds.reach_air_temp.values * 9 / 5 + 32)
    assert np.isnan(k.reach_temp.values).any()
    with pytest.warns(UnitConversionWarning):
        out = validate(k)
    np.testing.assert_allclose(out.reach_temp.values, ds.reach_temp.values, atol=1e-3)
    np.testing.assert_allclose(out.reach_air_temp.values, ds.reach_air_temp.values, atol=1e-3)
    # All unobserved: nothing to judge, converted as labelled.
    empty = relabel(ds, "reach_temp", "K", np.full(ds.reach_temp.shape, np.nan, np.float32))
    with pytest.warns(UnitConversionWarning):
        validate(empty)


def test_water_targets_are_judged_whatever_their_role() -> None:
    # Marked xmsgl_role="ignore", degC water labelled K passed as -273..-245 degC (the
    # same values labelled degC and ignored were refused).
    ds = basin()
    ds["reach_temp"].attrs.update(units="K", xmsgl_role="ignore")
    with pytest.raises(UnitsError, match=r"'reach_temp' is labelled 'K'"):
        validate(ds)


def test_a_declared_temperature_difference_takes_the_factor_alone() -> None:
    # CF 1.11's units_metadata: a diurnal range of 18..54 degF is 10..30 degC, not
    # -7.8..12.2 (as an on-scale temperature) nor a refusal.
    ds = basin()
    rng = np.linspace(18.0, 54.0, ds.reach_air_temp.size).reshape(ds.reach_air_temp.shape)
    attrs = {"units": "degF", "units_metadata": "Temperature:\tdifference"}  # CF's words, any spacing
    ds = ds.assign(reach_air_range=(ds.reach_air_temp.dims, rng, attrs))
    with pytest.warns(UnitConversionWarning, match="'reach_air_range' converted from 'degF' to a "
                                                   "temperature difference"):
        out = validate(ds)
    np.testing.assert_allclose(out.reach_air_range.values, rng * 5 / 9)
    assert out.reach_air_range.attrs["units"] == "degC"
    in_k = ds.assign(reach_air_range=ds.reach_air_range.assign_attrs(units="K") * 5 / 9)
    in_k["reach_air_range"].attrs.update(units="K", units_metadata="temperature: difference")
    with pytest.warns(UnitConversionWarning):
        np.testing.assert_allclose(validate(in_k).reach_air_range.values, rng * 5 / 9)
    # A water temperature is no difference.
    for units in ("degF", "degC"):
        water = basin()
        water["reach_temp"].attrs.update(units=units, units_metadata="temperature: difference")
        with pytest.raises(UnitsError, match="'reach_temp' is declared a temperature difference"):
            validate(water)


def test_range_attributes_are_converted_with_the_values() -> None:
    # valid_min/valid_max/actual_range stayed in kelvin beside degC values: netCDF4's
    # auto-masking then hid every value of the written file.
    ds = basin()
    air = relabel(ds, "reach_air_temp", "K", ds.reach_air_temp.values + 273.15)
    air["reach_air_temp"].attrs.update(valid_min=200.0, valid_max=340.0, actual_range=[240.0, 310.0],
                                       valid_range=np.array([200.0, 340.0]))
    air["seg_length"] = (air.seg_length / 1000.0).assign_attrs(units="km", valid_range=[0.0, 50.0])
    with pytest.warns(UnitConversionWarning):
        out = validate(air)
    got = out.reach_air_temp.attrs
    assert got["valid_min"] == pytest.approx(-73.15) and got["valid_max"] == pytest.approx(66.85)
    np.testing.assert_allclose(got["actual_range"], [-33.15, 36.85], rtol=1e-6)
    np.testing.assert_allclose(got["valid_range"], [-73.15, 66.85], rtol=1e-6)
    # In the data's type (CF; netCDF4 ignores float64 bounds on float32 data), rounded as
    # the values are: the converted extremes stay inside the converted bounds.
    dtype = out.reach_air_temp.dtype
    assert all(np.asarray(got[k]).dtype == dtype for k in ("valid_min", "valid_max", "valid_range"))
    lo_k = np.float32(np.nanmin(air.reach_air_temp.values))
    edge = relabel(ds, "reach_air_temp", "K", air.reach_air_temp.values)
    edge["reach_air_temp"].attrs.update(valid_min=lo_k)
    with pytest.warns(UnitConversionWarning):
        conv = validate(edge).reach_air_temp
    assert float(np.nanmin(conv.values)) >= conv.attrs["valid_min"]
    np.testing.assert_array_equal(out.seg_length.attrs["valid_range"], [0.0, 50000.0])


def test_fill_values_are_named_in_the_message() -> None:
    ds = basin()
    vals = ds.seg_air_temp.values + 273.15
    vals[0, 0] = -9999.0
    bad = relabel(ds, "seg_air_temp", "K", vals)
    with pytest.raises(UnitsError, match=r"'seg_air_temp' holds -9999 \(1 value, at seg 1 on .*"
                                         r"plausible as labelled 'K'") as info:
        validate(bad)
    # The mask advised, run as written, leaves the kelvin values and drops the code.
    advice = re.search(r"ds\['seg_air_temp'\] = (.*?), then fill", str(info.value))
    assert advice, str(info.value)
    masked = eval(advice.group(1), {"ds": bad})
    assert int(masked.isnull().sum()) == 1 and float(masked.min()) > 200


@pytest.mark.parametrize("units", ["degC", "degF", "K"])
@pytest.mark.parametrize("code", [-99.9, -99.0, -9999.0, 999.0])
def test_a_missing_data_code_is_never_taken_for_another_scale(units: str, code: float) -> None:
    # A -99.9 among air temperatures in degC was read as "the values fit degF"; the
    # relabel advised then turned every value into a wrong one. A -99 among degF
    # values, -72.8 degC converted, was accepted without a word.
    ds = basin()
    to = {"degC": lambda v: v, "degF": lambda v: v * 1.8 + 32.0, "K": lambda v: v + 273.15}[units]
    vals = to(ds.seg_air_temp.values.astype(np.float64)).astype(np.float32)
    vals[1, 3:6] = code
    bad = relabel(ds, "seg_air_temp", units, vals)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitConversionWarning)
        with pytest.raises(UnitsError, match=r"holds .* \(3 values, at seg .*missing-data code") as info:
            validate(bad)
        said = str(info.value)
        assert "attrs['units'] =" not in said
        masked = eval(re.search(r"ds\['seg_air_temp'\] = (.*?), then fill", said).group(1), {"ds": bad})
        assert int(masked.isnull().sum()) == 3
        validate(bad.assign(seg_air_temp=masked.interpolate_na("time")))


@pytest.mark.parametrize("units, offset", [("degC", 0.0), ("K", 273.15)])
@pytest.mark.parametrize("name", ["seg_air_temp", "reach_temp"])
def test_infinite_temperatures_are_named_not_taken_for_units(name: str, units: str,
                                                             offset: float) -> None:
    """An infinite value is not a question of units or fill values: the error says what it
    is, and the masking it advises clears it (a fill-value mask did not)."""
    ds = basin()
    vals = ds[name].values + offset
    vals[1, 3] = np.inf
    vals[2, 5] = -np.inf
    bad = relabel(ds, name, units, vals)
    node = name.split("_")[0]
    ids, days = bad[node].values, bad["time"].dt.strftime("%Y-%m-%d").values
    with pytest.raises(DataError, match=rf"'{name}' holds infinite values \(2 values, at {node} {ids[1]} on "
                                        rf"{days[3]}, {node} {ids[2]} on {days[5]}\).*np.isfinite"):
        validate(bad)
    masked = bad.assign({name: bad[name].where(np.isfinite(bad[name]))})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitConversionWarning)  # K converted to degC
        out = validate(masked)[name].values
    assert np.isnan(out[1, 3]) and np.isnan(out[2, 5])
    assert np.isnan(out).sum() == np.isnan(ds[name].values).sum() + np.isfinite(
        ds[name].values[[1, 2], [3, 5]]).sum()


def test_inputs_are_judged_even_without_check_values() -> None:
    ds = relabel(basin(), "seg_air_temp", "K")
    with pytest.raises(UnitsError, match="'seg_air_temp'"):
        validate(ds, check_values=False)
    # Targets are not read with check_values=False (as before).
    with pytest.warns(UnitConversionWarning):
        validate(relabel(basin(), "seg_temp", "K"), check_values=False)


def _explode(block: np.ndarray) -> np.ndarray:
    raise AssertionError("a time-dimensioned array was computed")


def test_judging_conversions_stays_lazy() -> None:
    ds = relabel(basin(), "reach_air_temp", "K").chunk({"time": 20})
    for v in ds.data_vars:
        if "time" in ds[v].dims:
            ds[v].data = ds[v].data.map_blocks(_explode, dtype=ds[v].dtype)
    with pytest.warns(UnitConversionWarning, match="reach_air_temp"):
        out = validate(ds)
    assert out.reach_air_temp.chunks is not None


# ------------------------------------------------------------ spellings


@pytest.mark.parametrize(
    ("units", "to_units"),
    [
        ("degree_C", lambda c: c), ("degrees_C", lambda c: c), ("deg_C", lambda c: c),
        ("degreeC", lambda c: c), ("Celsius", lambda c: c), ("°C", lambda c: c),
        ("degree_F", lambda c: c * 9 / 5 + 32), ("degrees_F", lambda c: c * 9 / 5 + 32),
        ("Fahrenheit", lambda c: c * 9 / 5 + 32), ("degrees_K", lambda c: c + 273.15),
        ("kelvin", lambda c: c + 273.15),
    ],
)
def test_cf_udunits_temperature_spellings(units: str, to_units: object) -> None:
    ds = basin()
    assert is_temperature_units(units)
    bad = relabel(ds, "reach_temp", units, to_units(ds.reach_temp.values))  # type: ignore[operator]
    bad = relabel(bad, "seg_air_temp", units, to_units(ds.seg_air_temp.values))  # type: ignore[operator]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitConversionWarning)
        out = validate(bad)
    for name in ("reach_temp", "seg_air_temp"):
        assert out[name].attrs["units"] == "degC"
        np.testing.assert_allclose(out[name].values, ds[name].values, atol=1e-3)


def test_unknown_temperature_units_are_still_refused() -> None:
    ds = relabel(basin(), "reach_temp", "degrees_R")
    with pytest.raises(UnitsError, match=r"'reach_temp' has units 'degrees_R'"):
        validate(ds)


@pytest.mark.parametrize(
    "group",
    [
        ["degC", "degrees_C", "degree_C", "celsius", "degree_Celsius", "deg_C", "°C", "\u2103", "ºC"],
        ["K", "kelvin", "degrees_K"],
        ["degF", "degree_F", "degrees_F", "Fahrenheit", "\u2109"],
        # Unicode exponents, minus sign and middle dot, as pint's pretty format writes them.
        ["m3 s-1", "m^3/s", "m3/s", "m**3 s**-1", "m^3 s^-1", "m3.s-1", "m³/s", "m³·s⁻¹"],
        ["W m-2", "W/m2", "W m^-2", "W/m^2", "watt m-2", "W/m²", "W m⁻²", "W m\u22122", "W\u22c5m⁻²"],
        ["mm d-1", "mm/day", "mm day-1", "mm/d", "mm days-1"],
        ["kg m-2 s-1", "kg/(m2 s)", "kg/m2/s"],
        ["1", "", "dimensionless"],
        ["L s-1", "l s-1", "l/s", "litre s-1", "Liters/s"],
        ["mL", "ml"],
    ],
)
def test_same_units_within_a_group(group: list[str]) -> None:
    for a in group:
        for b in group:
            assert same_units(a, b), (a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [("degC", "K"), ("degC", "degF"), ("m", "km"), ("m3 s-1", "m3 s-2"), ("W m-2", "W"),
     ("mm d-1", "mm s-1"), ("mW", "MW"), ("1", "%"), ("degC", None), ("m²", "m³"),
     ("W m⁻²", "W m²"), ("\u2103", "\u2109")],
)
def test_same_units_tells_different_units_apart(a: str, b: str | None) -> None:
    assert not same_units(a, b)
    assert not same_units(b, a)


@pytest.mark.parametrize(("have", "want", "factor"), [
    ("cm", "m", 0.01), ("km2", "m2", 1e6), ("L s-1", "m3 s-1", 1e-3), ("ml", "L", 1e-3),
    ("ft3/s", "m3 s-1", 0.028316846592), ("m d-1", "mm/day", 1000.0), ("in/day", "mm d-1", 25.4),
    ("MJ m-2 d-1", "W m-2", 11.5740740741), ("%", "1", 0.01), ("hPa", "kPa", 0.1),
    ("J m-2 s-1", "W m-2", 1.0), ("degC", "K", None), ("degF d-1", "degC d-1", None),
    ("m", "kg", None), ("kg m-2 s-1", "mm d-1", None), ("mW", "W", None),
])
def test_units_that_differ_by_a_factor_alone_give_it(have: str, want: str, factor: float | None) -> None:
    from xmsgl.convention import units_factor

    assert units_factor(have, want) == factor


def test_same_units_falls_back_to_normalized_strings() -> None:
    assert same_units("  Parts Per  Million ", "parts per million")
    assert same_units("10^3 m", "10^3  m")
    assert not same_units("10^3 m", "m")
    assert same_units(None, None)


# ------------------------------------------------ integer and packed variables


def test_integer_variable_with_physical_units_warns() -> None:
    ds = basin()
    ds["reach_air_temp"] = ds.reach_air_temp.round().astype(np.int16)
    with pytest.warns(XmsglWarning, match=r"'reach_air_temp' has units 'degC' but int16") as rec:
        iv = input_variables(ds)
    assert "reach_air_temp" not in iv.all()
    assert ".astype('float32')" in str(rec[0].message)
    ds["reach_air_temp"] = ds.reach_air_temp.astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "reach_air_temp" in input_variables(ds).reach_dynamic


@pytest.mark.parametrize(
    ("name", "attrs"),
    [
        ("reach_class", {"units": "1"}),
        ("reach_class", {}),
        ("reach_class", {"units": "count"}),
        ("reach_class", {"units": "degC", "flag_values": [0, 1], "flag_meanings": "a b"}),
        ("reach_gage_id", {"units": "m"}),
        ("reach_class", {"units": "degC", "xmsgl_role": "ignore"}),
    ],
)
def test_flags_and_ids_do_not_warn(name: str, attrs: dict) -> None:
    ds = basin()
    ds[name] = ("reach", np.arange(ds.sizes["reach"], dtype=np.int32), attrs)
    ds["seg_flag"] = ("seg", np.ones(ds.sizes["seg"], dtype=bool), {"units": "flag"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        iv = input_variables(ds)
        validate(ds)
    assert name not in iv.all() and "seg_flag" not in iv.all()


def _packed(ds: xr.Dataset, name: str) -> xr.Dataset:
    out = ds.copy()
    da = out[name]
    stored = np.round((da.fillna(-327.68) - 10.0) / 0.01).astype(np.int16)
    out[name] = stored.assign_attrs({**da.attrs, "scale_factor": 0.01, "add_offset": 10.0})
    return out


@pytest.mark.parametrize("name", ["reach_air_temp", "reach_temp", "reach_length", "seg_area"])
def test_packed_variables_are_refused(name: str) -> None:
    ds = _packed(basin(), name)
    with pytest.raises(UnitsError, match=rf"variable {name!r} is still packed") as info:
        validate(ds)
    assert "mask_and_scale=True" in str(info.value) and "xr.decode_cf" in str(info.value)


def test_packed_input_is_refused_by_input_variables_too() -> None:
    ds = _packed(basin(), "seg_air_temp")
    with pytest.raises(UnitsError, match=r"'seg_air_temp' is still packed"):
        input_variables(ds)
    ignored = ds.copy()
    ignored["seg_air_temp"].attrs["xmsgl_role"] = "ignore"
    assert "seg_air_temp" not in input_variables(ignored).all()


def test_packed_netcdf_opened_without_decoding(tmp_path: object) -> None:
    ds = basin()
    path = f"{tmp_path}/packed.nc"
    encoding = {"reach_air_temp": {"dtype": "int16", "scale_factor": 0.01, "add_offset": 10.0,
                                   "_FillValue": -32768}}
    ds.to_netcdf(path, encoding=encoding)
    with xr.open_dataset(path, mask_and_scale=False) as raw:
        with pytest.raises(UnitsError, match=r"'reach_air_temp' is still packed"):
            validate(raw)
        decoded = xr.decode_cf(raw)
        out = validate(decoded)
        np.testing.assert_allclose(out.reach_air_temp.values, ds.reach_air_temp.values, atol=0.01)


# ------------------------------------------------------------- messages


def test_string_ids_message_reads_as_a_fix() -> None:
    ds = basin()
    ds = ds.assign_coords(seg=[f"s{i}" for i in ds.seg.values])
    with pytest.raises(SchemaError) as info:
        validate(ds)
    msg = str(info.value)
    assert "coordinate 'seg' must hold integer ids" in msg
    assert "map them to positive integers" in msg and "'seg_to' and 'reach_seg'" in msg
    assert "fix with map" not in msg


@pytest.mark.parametrize(("name", "what"), [("reach_to", "reaches"), ("seg_to", "segments")])
def test_dangling_pointer_message_plural(name: str, what: str) -> None:
    ds = basin().copy(deep=True)
    ds[name].values[0] = 987654
    with pytest.raises(TopologyError, match=rf"{name!r}.*987654.*add the missing {what}$"):
        validate(ds)


def test_nan_hint_fits_static_and_dynamic_inputs() -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from xmsgl.train import FeatureSpec, input_array

    ds = basin().copy(deep=True)
    ds["reach_shade"].values[2] = np.nan
    ds["reach_air_temp"].values[1, 3] = np.nan
    names = ["reach_shade", "reach_air_temp"]
    spec = FeatureSpec(seg_vars=[], reach_vars=names, n_common=0, units={}, static={},
                       mean=dict.fromkeys(names, 0.0), std=dict.fromkeys(names, 1.0))
    with pytest.raises(DataError) as info:
        input_array(ds, ["reach_shade"], "reach", spec)
    msg = str(info.value)
    assert "'reach_shade'" in msg and "interpolate_na" not in msg
    assert "ds['reach_shade'].fillna(ds['reach_shade'].median())" in msg
    with pytest.raises(DataError, match=r"'reach_air_temp'.*interpolate_na\('time'\)"):
        input_array(ds, ["reach_air_temp"], "reach", spec)
    # The static hint works as written.
    ds["reach_shade"] = ds["reach_shade"].fillna(ds["reach_shade"].median())
    assert np.isfinite(input_array(ds, ["reach_shade"], "reach", spec)).all()


# ------------------------------------------------------------- time zones


def test_timezone_aware_time_is_refused_with_a_fix() -> None:
    ds = basin()
    aware = pd.DatetimeIndex(ds.time.values).tz_localize("America/New_York")
    tz = ds.assign_coords(time=aware)
    with pytest.raises(TimeError, match=r"timezone-aware.*America/New_York") as info:
        validate(tz)
    assert "got object" not in str(info.value)
    assert "ds.indexes['time'].tz_localize(None)" in str(info.value)
    fixed = tz.assign_coords(time=tz.indexes["time"].tz_localize(None))
    assert (validate(fixed).time.values == ds.time.values).all()
    utc = tz.assign_coords(time=tz.indexes["time"].tz_convert(None))
    validate(utc)


def test_timezone_aware_objects_are_refused_with_a_fix() -> None:
    ds = basin()
    stamps = np.array(list(pd.DatetimeIndex(ds.time.values).tz_localize("UTC")), dtype=object)
    tz = ds.assign_coords(time=stamps)
    with pytest.raises(TimeError, match=r"timezone-aware.*UTC") as info:
        validate(tz)
    assert "pd.DatetimeIndex(ds['time'].values).tz_localize(None)" in str(info.value)
    fixed = tz.assign_coords(time=pd.DatetimeIndex(tz["time"].values).tz_localize(None))
    validate(fixed)


def test_the_time_zone_advice_runs_for_any_coordinate_name() -> None:
    from xmsgl.convention import _refuse_timezones

    zoned = pd.date_range("2001-01-01", periods=2, tz="UTC")
    # A keyword ("class") gave assign_coords(class=...), a SyntaxError.
    for name in ("class", "valid time", "t"):
        piece = xr.Dataset(coords={name: zoned})
        with pytest.raises(TimeError) as info:
            _refuse_timezones(piece[name], owner="piece")
        fix = re.search(r"keep the local dates of daily values with (piece = .*?) \(a daily", str(info.value))
        assert fix is not None, str(info.value)
        scope = {"piece": piece, "pd": pd}
        exec(fix.group(1), scope)  # the advice as given
        assert scope["piece"].indexes[name].tz is None


def test_local_midnight_in_utc_is_rounded_not_averaged() -> None:
    # London midnights across the switch to summer time: Sunday 00:00 UTC is followed
    # by Sunday 23:00 UTC (Monday's local midnight), two stamps on one UTC day.
    local = pd.date_range("2001-03-20", "2001-04-05", freq="D", tz="Europe/London")
    utc = local.tz_convert(None)
    ds = xr.Dataset(
        {"seg_to": ("seg", [0]), "seg_length": ("seg", [1000.0], {"units": "m"}),
         "reach_to": ("reach", [0]), "reach_length": ("reach", [1000.0], {"units": "m"}),
         "reach_seg": ("reach", [1]),
         "seg_air_temp": (("seg", "time"), np.full((1, utc.size), 5.0), {"units": "degC"})},
        coords={"seg": [1], "reach": [1], "time": utc},
    )
    with pytest.raises(TimeError, match=r"several steps on 2001-03-25.*dt\.round\('D'\)"):
        validate(ds)
    fixed = validate(ds.assign_coords(time=ds.time.dt.round("D")))
    assert (fixed.time.values == local.tz_localize(None).values).all()


def test_input_array_standardizes_every_layout_in_place_of_its_column() -> None:
    # Variables on (time, reach), on (reach, time) and static ones, each standardized
    # with its own mean and deviation, land in their column of (time, reach, var);
    # the data set is left as it was.
    pytest.importorskip("torch")
    from xmsgl.train import FeatureSpec, input_array

    rng = np.random.default_rng(0)
    a = rng.normal(5.0, 2.0, size=(7, 4)).astype(np.float32)
    b = rng.normal(-3.0, 0.5, size=(4, 7)).astype(np.float32)
    c = rng.normal(10.0, 4.0, size=4).astype(np.float32)
    ds = xr.Dataset({"reach_a": (("time", "reach"), a.copy()),
                     "reach_b": (("reach", "time"), b.copy()),
                     "reach_c": (("reach",), c.copy())})
    names = ["reach_b", "reach_c", "reach_a"]
    mean = {"reach_a": 5.0, "reach_b": -3.0, "reach_c": 10.0}
    std = {"reach_a": 2.0, "reach_b": 0.5, "reach_c": 4.0}
    spec = FeatureSpec(seg_vars=[], reach_vars=names, n_common=0, units={}, static={},
                       mean=mean, std=std)
    out = input_array(ds, names, "reach", spec)
    assert out.shape == (7, 4, 3) and out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out[..., 0], ((b - np.float32(-3.0)) / np.float32(0.5)).T)
    np.testing.assert_array_equal(out[..., 1], np.broadcast_to((c - np.float32(10.0)) / np.float32(4.0),
                                                               (7, 4)))
    np.testing.assert_array_equal(out[..., 2], (a - np.float32(5.0)) / np.float32(2.0))
    np.testing.assert_array_equal(input_array(ds, names, "reach", spec, slice(2, 5)), out[2:5])
    # Inference's view of the planes: the same values, each variable's (T, N) contiguous.
    planes = input_array(ds, names, "reach", spec, contiguous=False)
    assert planes.shape == out.shape and not planes.flags["C_CONTIGUOUS"]
    assert planes[..., 2].flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(planes, out)
    np.testing.assert_array_equal(ds["reach_a"].values, a)
    np.testing.assert_array_equal(ds["reach_b"].values, b)
    np.testing.assert_array_equal(ds["reach_c"].values, c)


def test_input_days_are_input_array_a_block_at_a_time() -> None:
    # Inference's inputs, standardized a block of days at a time: every block is the
    # same days of input_array to the last bit, for float64 and float32 variables, on
    # (time, reach) and (reach, time), and static ones; earlier blocks stay valid
    # while later ones are made (their buffer is not reused while viewed), and the
    # data set is left as it was.
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from xmsgl.train import FeatureSpec, InputDays, input_array

    rng = np.random.default_rng(1)
    # Blocks of 7 days and more are over 4 MB: the recurrence's reused buffers.
    n_time, n_reach = 40, 60_000
    a = rng.normal(5.0, 2.0, size=(n_time, n_reach))  # float64, as netCDF often gives
    b = rng.normal(-3.0, 0.5, size=(n_reach, n_time)).astype(np.float32)
    c = rng.normal(10.0, 4.0, size=n_reach)
    d = rng.normal(1.0, 3.0, size=(n_time, n_reach)).astype(np.float32)
    ds = xr.Dataset({"reach_a": (("time", "reach"), a.copy()),
                     "reach_b": (("reach", "time"), b.copy()),
                     "reach_c": (("reach",), c.copy()),
                     "reach_d": (("time", "reach"), d.copy())})
    names = ["reach_b", "reach_c", "reach_a", "reach_d"]
    spec = FeatureSpec(seg_vars=[], reach_vars=names, n_common=0, units={}, static={},
                       mean={"reach_a": 5.1, "reach_b": -3.0, "reach_c": 10.3, "reach_d": 0.7},
                       std={"reach_a": 2.2, "reach_b": 0.45, "reach_c": 4.1, "reach_d": 2.9})
    ref = input_array(ds, names, "reach", spec)
    days = InputDays(ds, names, "reach", spec)
    assert days.shape == ref.shape and len(days) == n_time and days.dtype == np.float32
    blocks = [(0, 7), (7, 14), (14, 40), (3, 5), (39, 40)]
    got = [days[t0:t1] for t0, t1 in blocks]
    for (t0, t1), block in zip(blocks, got, strict=True):
        assert block.shape == (t1 - t0, n_reach, 4) and block.dtype == np.float32
        np.testing.assert_array_equal(block, ref[t0:t1])
    np.testing.assert_array_equal(np.asarray(days), ref)
    np.testing.assert_array_equal(days[5:9:2], ref[5:9:2])
    part = InputDays(ds, names, "reach", spec, slice(10, 30))
    np.testing.assert_array_equal(part[0:20], ref[10:30])
    # Reversed reaches and days (negative strides, which torch cannot view).
    rev = ds.isel(reach=slice(None, None, -1), time=slice(None, None, -1))
    np.testing.assert_array_equal(InputDays(rev, names, "reach", spec)[0:n_time],
                                  input_array(rev, names, "reach", spec))
    np.testing.assert_array_equal(ds["reach_a"].values, a)
    np.testing.assert_array_equal(ds["reach_b"].values, b)
    np.testing.assert_array_equal(ds["reach_c"].values, c)
    np.testing.assert_array_equal(ds["reach_d"].values, d)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -9999.0])
@pytest.mark.parametrize("name", ["reach_a", "reach_c"])
def test_input_days_refuse_what_input_array_refuses(bad: float, name: str) -> None:
    # The checks run on construction, before any work, with input_array's message, but for
    # its last clause: a fitted model cannot leave the input out, as a new fit may.
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from xmsgl.train import FeatureSpec, InputDays, input_array

    ds = xr.Dataset({"reach_a": (("time", "reach"), np.ones((6, 5))),
                     "reach_c": (("reach",), np.ones(5, dtype=np.float32))})
    ds[name].values[(1, 2) if name == "reach_a" else 3] = bad
    names = ["reach_a", "reach_c"]
    spec = FeatureSpec(seg_vars=[], reach_vars=names, n_common=0, units={}, static={},
                       mean=dict.fromkeys(names, 1.0), std=dict.fromkeys(names, 0.5))
    with pytest.raises(DataError) as ref:
        input_array(ds, names, "reach", spec)
    with pytest.raises(DataError) as got:
        InputDays(ds, names, "reach", spec)
    fit_advice = f"; to fit a model without it, leave it out with ds.drop_vars({name!r})"
    if not np.isfinite(bad):
        assert str(ref.value).endswith(fit_advice)
        assert str(got.value) == str(ref.value).replace(
            fit_advice, "; the model was fitted with it, so it cannot be left out")
    else:
        assert str(got.value) == str(ref.value)
    assert repr(name) in str(got.value)
    assert ("NaN or infinite" in str(got.value)) == (not np.isfinite(bad))


# ------------------------------------------------ inputs already labelled degC


@pytest.mark.parametrize(("bad", "says"), [(-9999.0, "holds -9999 .*missing-data code"),
                                            (300.0, "is labelled 'degC', but it spans.*already in K")])
def test_degc_inputs_out_of_range_are_refused(bad: float, says: str) -> None:
    # A fill value or kelvin values in an input labelled degC used to reach the model.
    ds = basin()
    vals = ds.reach_air_temp.values.copy()
    if bad > 0:
        vals = vals + 273.15  # kelvin values labelled degC
    else:
        vals[2, 3] = bad
    with pytest.raises(UnitsError, match=rf"'reach_air_temp' {says}"):
        validate(relabel(ds, "reach_air_temp", "degC", vals))
    # Marked to be ignored, or lazy (judged later, block by block): not read here.
    ignored = relabel(ds, "reach_air_temp", "degC", vals)
    ignored["reach_air_temp"].attrs["xmsgl_role"] = "ignore"
    validate(ignored)
    validate(relabel(ds, "reach_air_temp", "degC", vals).chunk({"time": 20}))


@pytest.mark.parametrize("bad", [-9999.0, -263.0, 70.0])
def test_input_arrays_refuse_implausible_degc_inputs(bad: float) -> None:
    # The same bounds apply where the model reads its inputs: lazy blocks and
    # datasets that were never validated pass through here.
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from xmsgl.train import FeatureSpec, InputDays, input_array

    names = ["reach_air_temp", "reach_q"]
    ds = xr.Dataset({"reach_air_temp": (("time", "reach"), np.full((6, 5), 12.0)),
                     "reach_q": (("time", "reach"), np.full((6, 5), -500.0))})
    spec = FeatureSpec(seg_vars=[], reach_vars=names, n_common=0,
                       units={"reach_air_temp": "degC", "reach_q": "m3 s-1"}, static={},
                       mean={"reach_air_temp": 10.0, "reach_q": 0.0},
                       std={"reach_air_temp": 1e4, "reach_q": 1e4})
    input_array(ds, names, "reach", spec)  # -500 is no temperature: not judged
    InputDays(ds, names, "reach", spec)
    ds["reach_air_temp"].values[4, 1] = bad
    for make in (input_array, InputDays):
        with pytest.raises(UnitsError, match=r"input temperature 'reach_air_temp' spans") as info:
            make(ds, names, "reach", spec)
        assert ("labelled 'K'" in str(info.value)) == (bad == -263.0)
        assert "degF" not in str(info.value)  # one value past the range: a code, or a spike


@pytest.mark.parametrize("codes", [[], [99.0], [99.0, 99.9]])
def test_fahrenheit_air_labelled_degc_is_named_where_the_model_reads_it(codes: list[float]) -> None:
    # The fix offered first was to mask the values above 65 degC: half a summer of
    # Fahrenheit readings dropped as fill values.
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from xmsgl.train import FeatureSpec, input_array

    spec = FeatureSpec(seg_vars=[], reach_vars=["reach_air_temp"], n_common=0,
                       units={"reach_air_temp": "degC"}, static={}, mean={"reach_air_temp": 10.0},
                       std={"reach_air_temp": 1e4})
    celsius = np.linspace(-5.0, 30.0, 60).reshape(12, 5)
    degf = xr.Dataset({"reach_air_temp": (("time", "reach"), celsius * 1.8 + 32.0)})
    coded = xr.Dataset({"reach_air_temp": (("time", "reach"), celsius.copy())})
    coded["reach_air_temp"].values.flat[:len(codes)] = codes
    for ds, named in ((degf, True), (coded, False)):
        if ds is coded and not codes:
            continue
        with pytest.raises(UnitsError) as info:
            input_array(ds, ["reach_air_temp"], "reach", spec)
        said = str(info.value)
        assert ("its values look like degF: if so, set ds['reach_air_temp'].attrs['units'] = 'degF'"
                in said) == named, said
        assert "ds['reach_air_temp'].where(ds['reach_air_temp'] <= 65)" in said


# --------------------------------------------------- inputs on other dimensions


def test_input_on_extra_dimension_is_refused_not_dropped() -> None:
    # An ensemble of forcings was left out without a word and the model fitted
    # without its air temperature.
    ds = basin()
    ens = ds.assign(reach_air_temp=xr.concat([ds.reach_air_temp, ds.reach_air_temp + 1], "member"))
    with pytest.raises(SchemaError, match=r"'reach_air_temp' is on dimensions \('member', 'reach', 'time'\)"
                                          r".*isel\(member=0\)"):
        input_variables(ens)
    with pytest.raises(SchemaError, match="'reach_air_temp'"):
        validate(ens)
    ens["reach_air_temp"].attrs["xmsgl_role"] = "ignore"
    assert "reach_air_temp" not in input_variables(ens).all()


def test_time_only_variable_warns_that_it_is_not_an_input() -> None:
    ds = basin()
    basin_air = ds.seg_air_temp.mean("seg").assign_attrs(units="degC")
    with pytest.warns(XmsglWarning, match=r"'basin_air_temp' is on \('time',\) only.*broadcast_like"):
        assert "basin_air_temp" not in input_variables(ds.assign(basin_air_temp=basin_air)).all()
    # No units (a count, an index) or a dimensionless flag: not a forgotten forcing.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        input_variables(ds.assign(day_index=basin_air.assign_attrs(units="1")))
        bare = basin_air.copy()
        bare.attrs = {}
        input_variables(ds.assign(day_index=bare))


def test_integer_and_ignored_temperatures_are_not_converted_into_inputs() -> None:
    # An int16 air temperature in K became float64 degC in validate's copy, which fit
    # then read as an input; in degC it was left out, with a warning. An ignored one
    # was converted too (18 K read as -255 degC).

    import xmsgl
    from xmsgl.convention import input_variables

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2001-01-01", end="2001-03-31")
    d = ds.assign(reach_air_k=(ds.reach_air_temp + 273.15).round().astype("int16"),
                  reach_air_x=ds.reach_air_temp + 273.15)
    d.reach_air_k.attrs = {"units": "K"}
    d.reach_air_x.attrs = {"units": "K", "xmsgl_role": "ignore"}
    with pytest.warns(xmsgl.UnitConversionWarning, match="'reach_air_k' converted"):
        out = xmsgl.validate(d)
    # Converted (a model fitted with a float one reads it by name), and marked.
    assert out.reach_air_k.attrs["units"] == "degC" and out.reach_air_k.attrs["xmsgl_stored_as"] == "int16"
    np.testing.assert_array_equal(out.reach_air_x.values, d.reach_air_x.values)
    assert out.reach_air_x.attrs["units"] == "K"
    with pytest.warns(xmsgl.XmsglWarning, match=r"'reach_air_k' was stored as int16 values, which "
                                                 r"validate converted to float degC.*del ds\['reach_air_k'\]"
                                                 r"\.attrs\['xmsgl_stored_as'\]"):
        names = input_variables(out).all()
    assert "reach_air_k" not in names and "reach_air_x" not in names
    # The fix the warning gives takes it in (a cast kept the mark, and left it out).
    del out.reach_air_k.attrs["xmsgl_stored_as"]
    assert "reach_air_k" in input_variables(out).reach_dynamic
    with pytest.warns(xmsgl.XmsglWarning, match=r"'reach_air_k' has units 'K' but int16 values.*astype"):
        input_variables(d)


def test_lengths_in_km_are_bounded_in_metres() -> None:
    import xmsgl
    from xmsgl.exceptions import TopologyError

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2001-01-01", end="2001-01-31")
    km = ds.assign(seg_length=(ds.seg_length / 1000.0).assign_attrs(units="km"))
    km["seg_length"].values[1] = 1e11   # passed as 1e11 km, became 1e14 m
    with pytest.raises(TopologyError, match="seg_length.*implausible lengths above"):
        xmsgl.validate(km)


def test_an_isolated_water_temperature_inside_the_range_is_not_called_a_code() -> None:
    # As for air temperatures, only values that put the range out are named as
    # missing-data codes; a water record with one value far from the others but
    # inside the plausible range was refused as "a missing-data code".
    ds = basin()
    vals = np.full(ds.reach_temp.shape, np.nan, np.float32)
    vals[:, :40] = np.linspace(2.0, 18.0, 40, dtype=np.float32)
    vals[0, 50] = 55.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xmsgl.XmsglWarning)
        validate(relabel(ds, "reach_temp", "degC", vals))
    vals[0, 50] = -99.9  # outside it: named as a code
    with pytest.raises(UnitsError, match="holds -99.9 .*missing-data code"):
        validate(relabel(ds, "reach_temp", "degC", vals))


class _Quantity(np.lib.mixins.NDArrayOperatorsMixin):
    """Stands for a pint Quantity (pint is not a dependency): a duck array of pint's module."""

    __module__ = "pint.facets.plain.quantity"

    def __init__(self, values: np.ndarray) -> None:
        self.magnitude = np.asarray(values)
        self.shape, self.dtype, self.ndim = self.magnitude.shape, self.magnitude.dtype, self.magnitude.ndim

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        return np.asarray(self.magnitude, dtype=dtype)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):  # type: ignore[no-untyped-def]
        plain = [x.magnitude if isinstance(x, _Quantity) else x for x in inputs]
        return _Quantity(getattr(ufunc, method)(*plain, **kwargs))

    def __array_function__(self, func, types, args, kwargs):  # type: ignore[no-untyped-def]
        plain = [x.magnitude if isinstance(x, _Quantity) else x for x in args]
        return func(*plain, **kwargs)

    def __getitem__(self, key: object) -> _Quantity:
        return _Quantity(self.magnitude[key])


def test_a_pint_quantified_dataset_is_told_to_dequantify() -> None:
    # pint-xarray moves the units out of the attribute into the values: readers here
    # said the attribute was missing and to set it.
    ds = basin()
    quantified = ds.copy()
    for name in ("seg_length", "reach_air_temp"):
        var = ds[name].variable
        quantified[name] = xr.Variable(var.dims, _Quantity(var.values),
                                       {k: v for k, v in var.attrs.items() if k != "units"})
    assert type(quantified["seg_length"].variable._data) is _Quantity  # kept as xarray keeps pint's
    for call in (validate, lambda d: d.msgl.graphs()):
        with pytest.raises(UnitsError, match=r"\['seg_length', 'reach_air_temp'\] hold pint quantities"
                                             r".*ds\.pint\.dequantify\(\)"):
            call(quantified)


def test_groups_of_a_datatree_or_a_grouped_file_are_told_how_to_merge(tmp_path) -> None:
    ds = basin()
    fine = ds[[v for v in ds.data_vars if "reach" in ds[v].dims]]
    coarse = ds[[v for v in ds.data_vars if "reach" not in ds[v].dims]]
    if not hasattr(xr, "DataTree"):
        pytest.skip("this xarray has no DataTree")
    tree = xr.DataTree.from_dict({"/coarse": coarse, "/fine": fine})
    with pytest.raises(SchemaError, match=r"got DataTree; merge its groups.*xr\.merge"):
        validate(tree)  # type: ignore[arg-type]
    tree.to_netcdf(tmp_path / "grouped.nc")
    with xr.open_dataset(tmp_path / "grouped.nc") as root:  # the root group alone: empty
        with pytest.raises(SchemaError, match=r"holds no variable.*xr\.open_datatree\(path\)"):
            validate(root)
    with xr.open_datatree(tmp_path / "grouped.nc") as read:
        merged = xr.merge([node.to_dataset() for node in read.subtree])
        validate(merged)  # what the message says works
