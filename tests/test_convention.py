"""The dataset convention: validation, typed errors naming ids, name mapping, laziness."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl
from xmsgl.convention import input_variables, topology_arrays, validate
from xmsgl.exceptions import (
    SchemaError,
    TimeError,
    TopologyError,
    UnitConversionWarning,
    UnitsError,
    XmsglError,
)
from xmsgl.graph import build_graphs


def hand_basin(n_time: int = 10) -> xr.Dataset:
    """Three segments (1 and 2 join into 3), eight reaches, one tributary reach (23)."""
    seg = np.array([1, 2, 3])
    reach = np.array([11, 12, 21, 22, 23, 31, 32, 33])
    reach_to = np.array([12, 31, 22, 31, 22, 32, 0, 32])
    reach_seg = np.array([1, 1, 2, 2, 2, 3, 3, 3])
    time = pd.date_range("2001-06-01", periods=n_time, freq="D")
    rng = np.random.default_rng(0)
    air = 15 + rng.normal(size=(reach.size, n_time))
    temp = np.full((reach.size, n_time), np.nan)
    temp[2, :5] = 14.0
    ds = xr.Dataset(
        {
            "seg_to": ("seg", np.array([3, 3, 0])),
            "seg_length": ("seg", np.array([2000.0, 3000.0, 2500.0]), {"units": "m"}),
            "reach_to": ("reach", reach_to),
            "reach_length": ("reach", np.full(reach.size, 1000.0), {"units": "m"}),
            "reach_seg": ("reach", reach_seg),
            "reach_air_temp": (("reach", "time"), air, {"units": "degC"}),
            "seg_air_temp": (("seg", "time"), air[[1, 3, 6]], {"units": "degC"}),
            "reach_shade": ("reach", rng.uniform(size=reach.size), {"units": "1"}),
            "reach_temp": (("reach", "time"), temp, {"units": "degC"}),
            "seg_temp": (("seg", "time"), np.full((3, n_time), 16.0), {"units": "degC"}),
        },
        coords={"seg": seg, "reach": reach, "time": time},
    )
    return ds


def test_valid_basin_passes_and_is_not_modified() -> None:
    ds = hand_basin()
    before = ds.copy(deep=True)
    out = validate(ds)
    xr.testing.assert_identical(ds, before)
    assert out.sizes == ds.sizes
    topo = topology_arrays(ds)
    assert topo.seg_outlet_reach_idx.tolist() == [1, 3, 6]
    assert topo.reach_to_idx.tolist() == [1, 5, 3, 5, 3, 6, -1, 6]


def test_input_variables_groups() -> None:
    iv = input_variables(hand_basin())
    assert iv.reach_dynamic == ("reach_air_temp",)
    assert iv.seg_dynamic == ("seg_air_temp",)
    assert iv.reach_static == ("reach_shade",)
    assert iv.seg_static == ()


def _with(ds: xr.Dataset, name: str, values: object) -> xr.Dataset:
    out = ds.copy(deep=True)
    out[name] = (out[name].dims, np.asarray(values), out[name].attrs)
    return out


@pytest.mark.parametrize(
    ("name", "values", "error", "ids"),
    [
        # downstream cycle between segments 1 and 3
        ("seg_to", [3, 3, 1], TopologyError, ["1", "3"]),
        # self-loop
        ("seg_to", [3, 2, 0], TopologyError, ["2"]),
        # downstream id not in the network
        ("seg_to", [3, 99, 0], TopologyError, ["99", "2"]),
        ("reach_to", [12, 31, 22, 31, 22, 32, 0, 777], TopologyError, ["777", "33"]),
        # reach cycle inside segment 3
        ("reach_to", [12, 31, 22, 31, 22, 32, 33, 32], TopologyError, ["32", "33"]),
        # a reach whose segment does not exist
        ("reach_seg", [1, 1, 2, 2, 2, 3, 3, 5], TopologyError, ["5", "33"]),
        # negative and NaN lengths
        ("seg_length", [2000.0, -1.0, 2500.0], TopologyError, ["2"]),
        ("reach_length", [1.0, 1.0, np.nan, 1.0, 1.0, 1.0, 1.0, 1.0], TopologyError, ["21"]),
        # reach 21 leaves segment 2 in the middle (two reaches leave the segment)
        ("reach_to", [12, 31, 31, 31, 22, 32, 0, 32], TopologyError, ["21", "22"]),
        # segment 1's outlet reach drains into segment 2, but seg_to says 3
        ("reach_to", [12, 21, 22, 31, 22, 32, 0, 32], TopologyError, ["12"]),
    ],
)
def test_topology_errors_name_ids(name: str, values: list, error: type, ids: list[str]) -> None:
    ds = _with(hand_basin(), name, values)
    with pytest.raises(error) as info:
        validate(ds)
    msg = str(info.value)
    assert name.split("_")[0] in msg or name in msg
    for i in ids:
        assert i in msg, (i, msg)


def test_segment_without_reaches() -> None:
    ds = _with(hand_basin(), "reach_seg", [1, 1, 1, 1, 1, 3, 3, 3])
    ds = _with(ds, "reach_to", [12, 31, 22, 31, 22, 32, 0, 32])
    with pytest.raises(TopologyError, match=r"\[2\].*no reaches"):
        validate(ds)


def test_duplicate_ids() -> None:
    ds = hand_basin().assign_coords(reach=[11, 12, 21, 22, 22, 31, 32, 33])
    with pytest.raises(TopologyError, match=r"duplicate ids \[22\]"):
        validate(ds)


def test_non_integer_and_nonpositive_ids() -> None:
    ds = hand_basin().assign_coords(seg=[1.5, 2.0, 3.0])
    with pytest.raises(SchemaError, match="'seg' must hold integer ids"):
        validate(ds)
    ds = hand_basin().assign_coords(seg=[0, 2, 3])
    with pytest.raises(SchemaError, match=r"ids <= 0 \[0\]"):
        validate(ds)


def test_ids_written_as_text_get_advice_that_works() -> None:
    """NHDPlus COMIDs read from a table as text: both the coordinate's and the pointer's
    messages give a conversion, and following them gives a valid dataset."""
    ds = hand_basin()
    text = ds.assign_coords(reach=ds.reach.astype(str).astype(object))
    text["reach_to"] = text.reach_to.astype(str)
    with pytest.raises(SchemaError, match=r"'reach' must hold integer ids.*numbers written as "
                                          r"text.*astype\('int64'\).*'reach_to' the same way"):
        validate(text)
    fixed = text.assign_coords(reach=text["reach"].astype("int64"))
    with pytest.raises(SchemaError, match=r"'reach_to' must hold integer ids.*numbers written "
                                          r"as text.*astype\('int64'\)"):
        validate(fixed)
    fixed["reach_to"] = fixed["reach_to"].astype("int64")
    xr.testing.assert_identical(validate(fixed), validate(ds))
    # Text that is not a number gets the mapping advice instead, fractional pointers the ids.
    with pytest.raises(SchemaError, match="map them to positive integers"):
        validate(ds.assign_coords(reach=[f"r{i}" for i in ds.reach.values]))
    with pytest.raises(SchemaError, match=r"\[1.5\] are not"):
        validate(ds.assign(reach_to=ds.reach_to.where(ds.reach != ds.reach[0], 1.5)))


def test_missing_variable_and_dimension() -> None:
    with pytest.raises(SchemaError, match="'reach_length' is missing"):
        validate(hand_basin().drop_vars("reach_length"))
    with pytest.raises(SchemaError, match="dimension 'seg' is missing"):
        validate(hand_basin().rename({"seg": "segment"}))
    assert issubclass(SchemaError, ValueError) and issubclass(SchemaError, XmsglError)


def test_time_aggregation_advice_gives_a_valid_dataset() -> None:
    """The advice for duplicated or sub-daily steps, run as written, validates: a mean of
    the whole dataset would spread the topology along 'time' and fail on it."""
    import xarray as xr

    ds = hand_basin()
    dup = xr.concat([ds.isel(time=slice(0, 4)), ds.isel(time=[3]), ds.isel(time=slice(4, None))],
                    dim="time", data_vars="minimal", coords="minimal", compat="override")
    half = ds.assign_coords(time=ds.time + np.timedelta64(12, "h"))
    hourly = xr.concat([ds, half], dim="time", data_vars="minimal", coords="minimal",
                       compat="override").sortby("time")
    for bad, agg in ((dup, "groupby('time')"), (hourly, "resample(time='1D')")):
        with pytest.raises(TimeError) as err:
            validate(bad)
        msg = str(err.value)
        code = msg[msg.index("tv = "): msg.index("]) (a ") + 2]
        assert agg in code and "drop_dims('time')" in code
        scope = {"ds": bad, "xr": xr}
        exec(code.replace("; ", "\n"), scope)
        fixed = validate(scope["ds"])
        assert fixed.sizes["time"] == ds.sizes["time"] and fixed.seg_to.dims == ("seg",)
    assert validate(dup.drop_duplicates("time")).sizes["time"] == ds.sizes["time"]


def test_time_errors() -> None:
    ds = hand_basin()
    t = ds.time.values.copy()
    t[3] = t[2]
    with pytest.raises(TimeError, match="duplicated"):
        validate(ds.assign_coords(time=t))
    t = ds.time.values[[0, 1, 3, 2, 4, 5, 6, 7, 8, 9]]
    with pytest.raises(TimeError, match="not increasing.*sortby"):
        validate(ds.assign_coords(time=t))
    hourly = ds.time.values[0] + np.arange(10) * np.timedelta64(1, "h")
    with pytest.raises(TimeError, match="several steps on 2001-06-01.*resample"):
        validate(ds.assign_coords(time=hourly))
    weekly = ds.time.values[0] + np.arange(10) * np.timedelta64(7, "D")
    with pytest.raises(TimeError, match="typically 7 days apart"):
        validate(ds.assign_coords(time=weekly))
    cftime = pytest.importorskip("cftime")
    noleap = [cftime.DatetimeNoLeap(2001, 6, d) for d in range(1, 11)]
    with pytest.raises(TimeError, match="cftime dates \\(calendar 'noleap'\\).*convert_calendar"):
        validate(ds.assign_coords(time=noleap))
    # Missing days in a daily record are fine.
    gappy = ds.time.values + np.where(np.arange(10) >= 5, np.timedelta64(3, "D"), np.timedelta64(0, "D"))
    validate(ds.assign_coords(time=gappy))


def test_kelvin_and_fahrenheit_converted_with_note() -> None:
    ds = hand_basin()
    k = ds.copy()
    k["reach_temp"] = ds.reach_temp + 273.15
    k["reach_temp"].attrs["units"] = "K"
    with pytest.warns(UnitConversionWarning, match="'reach_temp' converted from 'K'"):
        out = validate(k)
    np.testing.assert_allclose(out.reach_temp.values, ds.reach_temp.values, atol=1e-9)
    assert out.reach_temp.attrs["units"] == "degC"
    assert "converted" in out.reach_temp.attrs["xmsgl_note"]
    assert k.reach_temp.attrs["units"] == "K"  # the input is untouched

    f = ds.copy()
    f["seg_air_temp"] = ds.seg_air_temp * 9 / 5 + 32
    f["seg_air_temp"].attrs["units"] = "degF"
    with pytest.warns(UnitConversionWarning, match="seg_air_temp"):
        out = validate(f)
    np.testing.assert_allclose(out.seg_air_temp.values, ds.seg_air_temp.values, atol=1e-9)


def test_units_missing_or_implausible() -> None:
    ds = hand_basin()
    bad = ds.copy()
    bad["reach_temp"] = (ds.reach_temp + 273.15).assign_attrs({})  # kelvin values, no units
    bad["reach_temp"].attrs = {}
    with pytest.raises(UnitsError, match="'reach_temp' has no 'units'.*implausible"):
        validate(bad)
    bad = ds.copy()
    bad["reach_temp"] = (ds.reach_temp + 273.15).assign_attrs(units="degC")
    with pytest.raises(UnitsError, match="labelled 'degC' but spans"):
        validate(bad)
    plausible = ds.copy()
    plausible["reach_temp"] = ds.reach_temp.copy()
    plausible["reach_temp"].attrs = {}
    with pytest.warns(UnitConversionWarning, match="assumed"):
        out = validate(plausible)
    assert out.reach_temp.attrs["units"] == "degC"
    nounits = ds.copy()
    nounits["reach_shade"] = ds.reach_shade.copy()
    nounits["reach_shade"].attrs = {}
    with pytest.raises(UnitsError, match=r"\['reach_shade'\].*'1' for dimensionless"):
        validate(nounits)


def test_km_lengths_converted() -> None:
    ds = hand_basin()
    ds["seg_length"] = (ds.seg_length / 1000).assign_attrs(units="km")
    with pytest.warns(UnitConversionWarning, match="seg_length"):
        out = validate(ds)
    assert out.seg_length.values.tolist() == [2000.0, 3000.0, 2500.0]
    assert out.seg_length.attrs["units"] == "m"
    assert out.seg_length.attrs["xmsgl_note"] == "converted from 'km' to 'm' by xmsgl"


def test_to_convention_maps_usgs_names() -> None:
    ds = hand_basin()
    raw = ds.rename(
        {"seg": "seg_id_nat", "reach": "COMID", "seg_to": "to_seg", "reach_to": "tocomid",
         "reach_seg": "seg_of_comid"}
    )
    raw["to_seg"] = raw.to_seg.where(raw.to_seg != 0, -1)
    out = xmsgl.to_convention(
        raw, seg="seg_id_nat", reach="COMID",
        names={"to_seg": "seg_to", "tocomid": "reach_to", "seg_of_comid": "reach_seg"},
        outlet=-1,
    )
    assert out.seg_to.values.tolist() == [3, 3, 0]
    assert out.seg_id_nat.values.tolist() == [1, 2, 3]
    assert "COMID" in out.coords
    validate(out)
    with pytest.raises(SchemaError, match="'segid' .* not in the dataset"):
        xmsgl.to_convention(raw, seg="segid")


def test_to_convention_nan_outlet() -> None:
    ds = hand_basin()
    ds["seg_to"] = ("seg", np.array([3.0, 3.0, np.nan]))
    with pytest.raises(SchemaError, match="NaN"):
        validate(ds)
    out = xmsgl.to_convention(ds, outlet=np.nan)
    assert out.seg_to.dtype == np.int64 and out.seg_to.values.tolist() == [3, 3, 0]
    # Any NaN scalar marks the outlets (a float32 one, read from a float32 file, too).
    for nan in (float("nan"), np.float32("nan"), np.float64("nan")):
        out = xmsgl.to_convention(ds, outlet=nan)
        assert out.seg_to.dtype == np.int64 and out.seg_to.values.tolist() == [3, 3, 0]


def test_to_convention_outlet_markers_per_scale() -> None:
    # NHM segments marking outlets with NaN, NHDPlus reaches with -1: one marker each.
    ds = hand_basin()
    reach_to = ds.reach_to.values.copy()
    outlets = reach_to == 0
    ds["seg_to"] = ("seg", np.array([3.0, 3.0, np.nan]))
    ds["reach_to"] = ("reach", np.where(outlets, -1, reach_to))
    out = xmsgl.to_convention(ds, outlet={"seg_to": np.nan, "reach_to": -1})
    assert out.seg_to.values.tolist() == [3, 3, 0]
    assert out.reach_to.values.tolist() == reach_to.tolist()
    validate(out)
    # One scalar marks both pointers, as before: -1 leaves the NaN for validate to name.
    with pytest.raises(SchemaError, match="NaN"):
        validate(xmsgl.to_convention(ds, outlet=-1))
    # A pointer left out of the mapping keeps its values.
    assert (xmsgl.to_convention(ds, outlet={"seg_to": np.nan}).reach_to.values == -1).sum() == outlets.sum()
    with pytest.raises(SchemaError, match=r"outlet has keys \['to_seg'\].*'seg_to' and 'reach_to'"):
        xmsgl.to_convention(ds, outlet={"to_seg": np.nan})


def test_to_convention_keeps_fractional_reach_seg_for_validate() -> None:
    # A fractional segment id is a mistake: it must not be truncated to a valid id.
    ds = hand_basin()
    ds["reach_seg"] = ("reach", np.array([1.0, 1.5, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0]))
    with pytest.raises(SchemaError, match="'reach_seg' must hold integer ids"):
        validate(ds)
    out = xmsgl.to_convention(ds)
    assert out.reach_seg.values.tolist()[:2] == [1.0, 1.5]
    with pytest.raises(SchemaError, match="'reach_seg' must hold integer ids"):
        validate(out)
    # Whole float ids are still converted to int64.
    ds["reach_seg"] = ("reach", ds.reach_seg.values.round())
    out = xmsgl.to_convention(ds)
    assert out.reach_seg.dtype == np.int64
    assert out.reach_seg.values.tolist() == [1, 2, 2, 2, 2, 3, 3, 3]


def test_to_convention_outlet_keeps_large_integer_ids_exact() -> None:
    big = 2**53 + 1  # not representable in float64
    raw = xr.Dataset(
        {"to_seg": ("seg", np.array([big, -1], dtype=np.int64))},
        coords={"seg": np.array([1, big], dtype=np.int64)},
    )
    out = xmsgl.to_convention(raw, names={"to_seg": "seg_to"}, outlet=-1)
    assert out.seg_to.dtype == np.int64
    assert out.seg_to.values.tolist() == [big, 0]
    # A whole float marker works on integer ids too; NaN changes nothing there.
    assert xmsgl.to_convention(raw, names={"to_seg": "seg_to"}, outlet=-1.0).seg_to.values.tolist() == [big, 0]
    out = xmsgl.to_convention(raw, names={"to_seg": "seg_to"}, outlet=np.nan)
    assert out.seg_to.values.tolist() == [big, -1]
    raw32 = raw.assign(to_seg=raw.to_seg.astype(np.int32).where(raw.to_seg < 10, 2))
    out = xmsgl.to_convention(raw32, names={"to_seg": "seg_to"}, outlet=-1)
    assert out.seg_to.dtype == np.int64 and out.seg_to.values.tolist() == [2, 0]
    with pytest.raises(SchemaError, match="outlet='-1'.*'seg_to'.*outlet=-1"):
        xmsgl.to_convention(raw, names={"to_seg": "seg_to"}, outlet="-1")


def test_unsigned_pointers_to_large_ids_find_them() -> None:
    # numpy compares uint64 with int64 as float64, where ids from 2**53 on merge.
    ds = hand_basin()
    shift = np.int64(2**62)
    ds = ds.assign_coords(seg=ds.seg.values + shift)
    ds["seg_to"] = ("seg", np.array([3 + shift, 3 + shift, 0], dtype=np.uint64))
    ds["reach_seg"] = ("reach", (ds.reach_seg.values + shift).astype(np.uint64))
    topo = topology_arrays(ds)
    assert topo.seg_to_idx.tolist() == [2, 2, -1]
    assert topo.reach_seg_idx.tolist() == [0, 0, 1, 1, 1, 2, 2, 2]
    # And the same ids the other way round: unsigned coordinates, signed pointers.
    flipped = ds.assign_coords(seg=ds.seg.values.astype(np.uint64))
    flipped["seg_to"] = ("seg", np.array([3 + shift, 3 + shift, 0], dtype=np.int64))
    assert topology_arrays(flipped).seg_to_idx.tolist() == [2, 2, -1]


@pytest.mark.parametrize("units", [b"m", np.array(["m"]), np.array([b"km"]), np.str_("metres")])
def test_graphs_read_length_units_as_validate_reads_them(units) -> None:
    ds = hand_basin()
    ds["seg_length"].attrs["units"] = units
    ds["reach_length"].attrs["units"] = units
    km = "k" in str(units)
    if km:
        ds["seg_length"] = ds["seg_length"] / 1000.0
        ds["reach_length"] = ds["reach_length"] / 1000.0
        ds["seg_length"].attrs["units"] = units
        ds["reach_length"].attrs["units"] = units
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xmsgl.exceptions.UnitConversionWarning)
        validate(ds)
        got = ds.msgl.graphs()
    want = hand_basin().msgl.graphs()
    assert got.fingerprint == want.fingerprint


def _explode(block: np.ndarray) -> np.ndarray:
    raise AssertionError("a time-dimensioned array was computed")


def test_validate_and_graphs_stay_lazy() -> None:
    # Every (time) cube is a dask array whose blocks raise when computed, so any
    # computation of forcings or targets fails the test; the 1-D topology is loaded.
    ds = hand_basin(n_time=40).chunk({"time": 10})
    for v in ds.data_vars:
        if "time" in ds[v].dims:
            ds[v].data = ds[v].data.map_blocks(_explode, dtype=ds[v].dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ds.msgl.validate()
        ds.msgl.graphs()
    assert all(out[v].chunks is not None for v in ds.data_vars if "time" in ds[v].dims)
    with pytest.raises(AssertionError, match="computed"):
        ds.reach_air_temp.mean().compute()


def test_lazy_target_without_units_is_an_error() -> None:
    ds = hand_basin(n_time=20)
    ds["reach_temp"].attrs = {}
    with pytest.raises(UnitsError, match="lazy"):
        ds.chunk({"time": 5}).msgl.validate()


def test_accessor_never_raises_on_construction() -> None:
    acc = xr.Dataset().msgl
    with pytest.raises(SchemaError):
        acc.validate()


def test_import_does_not_import_torch() -> None:
    code = (
        "import sys, xmsgl\n"
        "ds = xmsgl.datasets.synthetic_basin(n_segments=4, start='2001-01-01', end='2001-02-01')\n"
        "ds.msgl.validate()\n"
        "assert 'torch' not in sys.modules, 'torch imported too early'\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_topology_repeated_along_time_says_how_open_mfdataset_avoids_it() -> None:
    ds = hand_basin()
    days = pd.date_range("2001-01-01", periods=3)
    repeated = ds.assign(seg_to=ds.seg_to.expand_dims(time=days))
    with pytest.raises(SchemaError, match="must have dims .*open_mfdataset makes by default: open the files with data_vars='minimal'"):
        validate(repeated)


def test_a_target_lookalike_input_warns_unless_marked() -> None:
    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-02-01")
    qc = ds.assign(reach_temp_qc=ds.reach_air_temp.assign_attrs(units="degC"))
    with pytest.warns(xmsgl.XmsglWarning, match="'reach_temp_qc' looks like a version of the target 'reach_temp'"):
        found = input_variables(qc)
    assert "reach_temp_qc" in found.reach_dynamic
    for role, taken in (("ignore", False), ("input", True)):
        qc["reach_temp_qc"].attrs["xmsgl_role"] = role
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert ("reach_temp_qc" in input_variables(qc).reach_dynamic) is taken


def test_segment_and_reach_lengths_in_different_units_warn() -> None:
    ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2001-01-01", end="2001-02-01")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate(ds)  # consistent lengths: nothing to say
    km_as_m = ds.assign(reach_length=(ds.reach_length / 1000).assign_attrs(units="m"))
    with pytest.warns(xmsgl.XmsglWarning, match=r"'seg_length' is \d+ times the summed 'reach_length' .* km labelled 'm'"):
        validate(km_as_m)


@pytest.mark.parametrize("name", ["seg_length", "reach_length"])
def test_lengths_that_are_0_everywhere_are_refused(name: str) -> None:
    # They passed without a word (the ratio of the two scales' lengths was not
    # defined), and the inverse-distance baseline's predictions moved by degrees.
    ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2001-01-01", end="2001-02-01")
    n = ds.sizes[name.split("_")[0]]
    with pytest.raises(TopologyError, match=rf"variable '{name}' is 0 at all its {n} ids; .* give the "
                                            r"real lengths \(0 only where a node has none\)"):
        validate(ds.assign({name: ds[name] * 0}))
    with pytest.raises(TopologyError, match=f"'{name}' is 0 at all"):
        ds.assign({name: ds[name] * 0}).msgl.fit(method="idw")
    # The whole network is judged, not a part of it: a component's graphs (a block of a
    # lazy run, a sub-basin batch) are built though its own lengths are all 0.
    build_graphs(ds.assign({name: ds[name] * 0}))
    # One zero-length node is a node of no length, and is taken.
    one = ds[name].copy()
    one[0] = 0.0
    validate(ds.assign({name: one}))


def test_nan_in_reach_seg_names_the_reaches_and_no_outlet_fix() -> None:
    ds = hand_basin()
    ds["reach_seg"] = ds["reach_seg"].astype(float)
    ds["reach_seg"][[2, 4]] = np.nan
    with pytest.raises(SchemaError, match=r"'reach_seg' holds NaN for reaches \[21, 23\]: every "
                                          r"reach must name the segment it lies in") as err:
        validate(ds)
    assert "OUTLET" not in str(err.value) and "to_convention" not in str(err.value)
    # Pointers along the stream keep their outlet advice.
    ds = hand_basin()
    ds["reach_to"] = ds["reach_to"].astype(float)
    ds["reach_to"][6] = np.nan
    with pytest.raises(SchemaError, match=r"'reach_to' holds NaN for reaches \[32\]; write 0"):
        validate(ds)


@pytest.mark.parametrize("calendar", ["360_day", "noleap", "all_leap", "standard"])
def test_cftime_advice_runs_on_its_calendar(calendar: str, tmp_path) -> None:
    pytest.importorskip("cftime")
    ds = hand_basin(n_time=40)
    cf = ds.convert_calendar(calendar, use_cftime=True, align_on="year" if calendar == "360_day" else None)
    with pytest.raises(TimeError) as err:
        validate(cf)
    text = str(err.value)
    if calendar == "standard":  # cftime only for dates outside 1678-2262: said first
        near = text.split("(within 1678-2262, ds = ")[1].split(" is enough")[0]
        # These dates are within it: read as cftime because asked (use_cftime=True).
        assert "and every date when opened with use_cftime=True" in text
    else:
        near = text.split("convert them with ds = ")[1].split(", or, for dates")[0]
    fixed = eval(near, {"ds": cf})  # the advice, as printed, runs
    assert np.issubdtype(fixed.time.dtype, np.datetime64)
    if not hasattr(getattr(xr, "coders", None), "CFDatetimeCoder"):
        return  # the second advice needs xarray 2025.01 or later
    # Dates beyond 2262 (CMIP extensions): the first advice fails there (xarray's
    # ValueError); the second, as printed, runs, and the filled result validates.
    far = cf.assign_coords(time=xr.date_range("2297-10-01", periods=cf.sizes["time"], calendar=calendar,
                                              use_cftime=True))
    if calendar == "standard":
        steps = text.split("or convert them: ")[1].split(" (within")[0]
        # And the first advice: read the file's dates in seconds.
        path = tmp_path / "far.nc"
        far.to_netcdf(path)
        opened = text.split("read them as datetime64[s] with ")[1].split(" (xarray 2025")[0]
        with eval(opened, {"xr": xr, "path": path}) as read:
            assert np.issubdtype(read.time.dtype, np.datetime64)
            assert str(read.time.values[0])[:10] == "2297-10-01"
    else:
        steps = text.split("with xarray 2025.01 or later): ")[1]
        steps = steps.split(")). ")[0] + "))"
    env = {"ds": far}
    for step in steps.split("; "):
        exec(step, env)
    import xmsgl

    filled = eval(text.rsplit("ds = ", 1)[1], {**env, "xmsgl": xmsgl})
    assert str(filled.time.values[0])[:10] == "2297-10-01"
    validate(filled)
    from xmsgl.sampling import sparsify

    with pytest.raises(TimeError, match="holds cftime dates"):
        sparsify(cf, keep=0.5)


def test_days_under_another_name_are_told_to_be_renamed() -> None:
    ds = hand_basin().drop_vars(["reach_temp", "seg_temp"]).rename(time="date")
    with pytest.raises(SchemaError, match=r"'date' holds dates.*ds\.rename\(\{'date': 'time'\}\)"):
        input_variables(ds)


def test_negative_discharge_is_named() -> None:
    # A fill value or another sign convention in a discharge: a warning naming the
    # variable and the reaches; lazy variables are not read, and no other units warn.
    import xmsgl
    from xmsgl.exceptions import XmsglWarning

    ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2001-01-01", end="2001-02-28", seed=2)
    q = ds["reach_discharge"].values.copy()
    q[3, 5] = -1.0
    q[7, :2] = -9999.0
    bad = ds.assign(reach_discharge=(ds["reach_discharge"].dims, q, ds["reach_discharge"].attrs))
    ids = ds["reach"].values[[3, 7]]
    with pytest.warns(XmsglWarning, match=rf"'reach_discharge' \(m3 s-1\) is negative at 3 of .*"
                                          rf"reach ids .*{ids[0]}.*{ids[1]}.*lowest -9999"):
        xmsgl.validate(bad)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xmsgl.validate(bad.chunk({"time": 10}))
        xmsgl.validate(bad, check_values=False)
        # Not a quantity that is never negative: no warning.
        cold = ds.assign(reach_elevation=ds["reach_elevation"] * 0 - 1.0)
        xmsgl.validate(cold)


def test_stamps_outside_their_own_time_bounds_are_refused() -> None:
    # A daily mean stamped at 00:00 of the next day (bounds [D, D+1]) was taken for day
    # D+1: every period, water year and output bound shifted by a day, silently.
    import pandas as pd

    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-01-20", seed=0)
    t0 = ds.time.values
    end = ds.assign_coords(time=t0 + np.timedelta64(1, "D"))
    end["time_bnds"] = (("time", "nv"), np.stack([t0, t0 + np.timedelta64(1, "D")], axis=1))
    end.time.attrs["bounds"] = "time_bnds"
    with pytest.raises(TimeError, match=r"lies outside its bounds 'time_bnds' on 20 step\(s\), on another "
                                        r"date than their interval's start \(first: "
                                        r"2001-01-02T00:00:00 with bounds 2001-01-01T00:00:00 to "
                                        r"2001-01-02T00:00:00\).*assign_coords\(time=ds\['time_bnds'\]"):
        validate(end)
    # The fix the message gives, bounds written by daily_time_bounds, noon stamps: accepted.
    validate(end.assign_coords(time=end["time_bnds"].values[:, 0]))
    validate(xmsgl.convention.daily_time_bounds(ds))
    noon = ds.assign_coords(time=pd.DatetimeIndex(t0) + pd.Timedelta(hours=12))
    validate(xmsgl.convention.daily_time_bounds(noon))
    # A model's inputs keep the bounds, so downscale checks them too.
    assert "time_bnds" in xmsgl.convention.only_read(end, ["reach_air_temp"])
    # Bounds stored as (nv, time): the printed fix runs there too.
    flipped = end.assign(time_bnds=end["time_bnds"].transpose())
    with pytest.raises(TimeError) as err:
        validate(flipped)
    validate(eval(str(err.value).rsplit("ds = ", 1)[1], {"ds": flipped}))
    # Steps without bounds (pieces with and without them joined) are not judged.
    joined = xr.concat([xmsgl.convention.daily_time_bounds(ds.isel(time=slice(0, 10))),
                        ds.isel(time=slice(10, None))], "time", data_vars="minimal",
                       coords="minimal", compat="override")
    assert np.isnat(joined["time_bnds"].values[-1]).all()
    validate(joined)
    # Hourly values with hourly bounds, averaged to days as the message for several steps a
    # day advises (the bounds left out of the average): accepted.
    tv = [v for v in ds.data_vars if "time" in ds[v].dims]
    hourly = ds[tv].resample(time="1h").interpolate("linear")
    th = hourly.time.values
    hourly["time_bnds"] = (("time", "nv"), np.stack([th, th + np.timedelta64(1, "h")], axis=1))
    hourly.time.attrs["bounds"] = "time_bnds"
    full = xr.merge([ds.drop_dims("time"), hourly])
    with pytest.raises(TimeError, match="several steps on") as err:
        validate(full)
    advice = str(err.value).split("are, ")[1].split(" (a resample")[0]
    env = {"ds": full, "xr": xr}
    exec(advice, env)
    validate(env["ds"])


def test_daily_time_bounds_with_a_step_without_a_date() -> None:
    # NaT among the stamps raised a bare StopIteration choosing the encoding's unit.
    import pandas as pd

    from xmsgl.convention import daily_time_bounds

    ds = xr.Dataset({"v": ("time", [1.0, 2.0, 3.0])},
                    coords={"time": pd.to_datetime(["2001-01-01", "NaT", "2001-01-03"])})
    out = daily_time_bounds(ds)
    assert out["time"].encoding["units"] == "days since 2001-01-01 00:00:00"
    assert np.isnat(out["time_bnds"].values[1]).all()


@pytest.mark.skipif(not hasattr(getattr(xr, "coders", None), "CFDatetimeCoder"),
                    reason="needs xarray 2025.01 or later (xr.coders.CFDatetimeCoder)")
def test_daily_time_bounds_beyond_2262_in_seconds(tmp_path) -> None:
    # A cast to nanoseconds wrapped 2297 into 1713: the written file read back as NaT.
    import pandas as pd

    from xmsgl.convention import daily_time_bounds

    t = pd.date_range("2297-10-01", periods=3, freq="D", unit="s")
    out = daily_time_bounds(xr.Dataset({"v": ("time", [1.0, 2.0, 3.0])}, coords={"time": t}))
    assert str(out["time_bnds"].values[0, 0])[:10] == "2297-10-01"
    assert out["time"].encoding["units"] == "days since 2297-10-01 00:00:00"
    out.to_netcdf(tmp_path / "f.nc")
    with xr.open_dataset(tmp_path / "f.nc", decode_times=xr.coders.CFDatetimeCoder(time_unit="s")) as back:
        assert str(back["time"].values[2])[:10] == "2297-10-03"
        assert str(back["time_bnds"].values[2, 1])[:10] == "2297-10-04"
    # Stamps at a millisecond within the day keep their unit and get their day's bounds.
    t = pd.date_range("2001-01-01T00:00:00.5", periods=2, freq="D", unit="ms")
    out = daily_time_bounds(xr.Dataset(coords={"time": t}))
    assert out["time"].encoding["units"].startswith("milliseconds since 2001-01-01")
    assert str(out["time_bnds"].values[1, 0]) == "2001-01-02T00:00:00.000"


def test_daily_time_bounds() -> None:
    import pandas as pd

    from xmsgl.convention import daily_time_bounds

    ds = xr.Dataset({"v": ("time", [1.0, 2.0, 3.0])},
                    coords={"time": pd.date_range("2001-12-31", periods=3)})
    out = daily_time_bounds(ds)
    assert out["time"].attrs["bounds"] == "time_bnds"
    assert out["time_bnds"].dims == ("time", "nv")
    assert str(out["time_bnds"].values[0, 1])[:10] == "2002-01-01"
    assert "bounds" not in ds["time"].attrs  # the input is left as it was
    # Bounds already named, a variable of that name, or no dates: nothing to add twice.
    assert daily_time_bounds(out) is out
    taken = ds.assign(time_bnds=("time", [0, 0, 0]))
    assert daily_time_bounds(taken)["time"].attrs["bounds"] == "time_bounds"
    assert daily_time_bounds(ds.drop_vars("time")).identical(ds.drop_vars("time"))
    assert daily_time_bounds(ds.isel(time=0)).identical(ds.isel(time=0))  # a scalar time
    # Another dimension called nv, of another length: the bounds take a free name.
    assert daily_time_bounds(ds.assign(x=("nv", np.arange(5.0))))["time_bnds"].dims == ("time", "bnds")


@pytest.mark.parametrize("hours", [0, 12])
def test_daily_time_bounds_are_the_stamps_days_in_the_units_of_time(tmp_path, hours: int) -> None:
    import warnings

    import netCDF4
    import pandas as pd

    from xmsgl.convention import daily_time_bounds

    t = pd.date_range("2001-01-01", periods=3) + pd.Timedelta(hours=hours)
    out = daily_time_bounds(xr.Dataset({"v": ("time", [1.0, 2.0, 3.0])}, coords={"time": t}))
    for path in (tmp_path / "b.nc", tmp_path / "b.zarr"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # xarray warns of times it cannot write faithfully
            if path.suffix == ".nc":
                out.to_netcdf(path)
                back = xr.load_dataset(path)
            else:
                out.to_zarr(path, consolidated=False)
                back = xr.open_zarr(path, consolidated=False).load()
        np.testing.assert_array_equal(back["time"].values, t.values)
        # A noon stamp's value is the mean of its day: the bounds are the day's.
        np.testing.assert_array_equal(back["time_bnds"].values[:, 0], t.floor("D").values)
        np.testing.assert_array_equal(back["time_bnds"].values[:, 1], t.floor("D").values + np.timedelta64(1, "D"))
    with netCDF4.Dataset(tmp_path / "b.nc") as raw:
        units = raw["time"].units
        assert units.startswith("hours since" if hours else "days since")
        assert raw["time"].dtype == np.int64 and not hasattr(raw["time"], "_FillValue")
        assert raw["time_bnds"].dtype == np.int64
        assert getattr(raw["time_bnds"], "units", units) == units


def test_a_node_dimension_under_another_name_is_named_by_every_reader() -> None:
    # coverage and downscale took 'segment' for an ensemble dimension and advised to
    # reduce over it ("downscale each segment in turn").
    import xmsgl
    from xmsgl.convention import only_read

    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-01-10", seed=0)
    renamed = ds.rename(seg="segment")
    with pytest.raises(SchemaError, match=r"dimension 'seg' is missing .*to_convention\(ds, seg="):
        validate(only_read(renamed, ["seg_air_temp", "reach_air_temp"]))
    with pytest.raises(SchemaError, match=r"'reach_air_temp' is on dimensions .*'member'"):
        only_read(ds.expand_dims(member=2), ["reach_air_temp"])


@pytest.mark.parametrize(("name", "units", "what"), [
    ("reach_precip", "mm day-1", "a precipitation"), ("reach_precip", "mm/d", "a precipitation"),
    ("reach_area", "km2", "an area"), ("reach_area", "acre", "an area")])
def test_negative_precipitation_and_areas_are_named(name: str, units: str, what: str) -> None:
    import warnings

    import xmsgl
    from xmsgl.exceptions import XmsglWarning

    ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2001-01-01", end="2001-02-28", seed=2)
    vals = ds[name].values.copy()
    vals[2] = -1.0  # a reach's value (all its days for a variable on time)
    bad = ds.assign({name: (ds[name].dims, vals, {**ds[name].attrs, "units": units})})
    with pytest.warns(XmsglWarning, match=rf"'{name}' \({units}\) is negative at .*reach ids "
                                          rf".*{ds['reach'].values[2]}.*: {what}.* is never negative"):
        xmsgl.validate(bad)
    # Lengths in m are not judged (an elevation below sea level), nor unknown units.
    low = ds.assign(reach_elevation=ds["reach_elevation"] - 1e4, reach_area=ds["reach_area"].assign_attrs(
        units="furlong2") * -1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xmsgl.validate(low)


@pytest.mark.parametrize(("role", "taken"), [("Ignore", False), (" IGNORE ", False), ("Input", True),
                                             (b"ignore", False)])
def test_a_role_in_any_case_is_read(role: object, taken: bool) -> None:
    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-02-01")
    ds["reach_swrad"].attrs["xmsgl_role"] = role
    assert ("reach_swrad" in input_variables(validate(ds)).reach_dynamic) is taken


@pytest.mark.parametrize("role", ["ignored", "skip", 1])
def test_an_unknown_role_is_refused_not_taken_for_none(role: object) -> None:
    # Read as no role, a misspelled "ignore" would feed the model the variable it hid.
    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-02-01")
    ds["reach_swrad"].attrs["xmsgl_role"] = role
    with pytest.raises(SchemaError, match=rf"'reach_swrad' has xmsgl_role={role!r}, which xmsgl does "
                                          r"not know.*'ignore'.*'input'"):
        validate(ds)
    with pytest.raises(SchemaError, match="'reach_swrad' has xmsgl_role"):
        input_variables(ds)


def test_bytes_units_are_read_as_text_and_checked() -> None:
    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-02-01")
    as_bytes = ds.assign(reach_air_temp=(ds.reach_air_temp + 273.15).assign_attrs(units=np.bytes_(b"K")))
    with pytest.warns(UnitConversionWarning, match="'reach_air_temp' converted from 'K'"):
        out = validate(as_bytes)
    assert out.reach_air_temp.attrs["units"] == "degC"
    assert as_bytes.reach_air_temp.attrs["units"] == np.bytes_(b"K")  # the user's dataset is kept
    # Kelvin values labelled degC in bytes meet the same range check as in text.
    kelvin = ds.assign(reach_air_temp=(ds.reach_air_temp + 273.15).assign_attrs(units=b"degC"))
    with pytest.raises(UnitsError, match="'reach_air_temp' is labelled 'degC'.*already in K"):
        validate(kelvin)


@pytest.mark.parametrize("units", [["degC"], ["K", "degC"]])
def test_units_that_are_not_text_are_refused(units: object) -> None:
    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-02-01")
    bad = ds.assign(reach_air_temp=ds.reach_air_temp.assign_attrs(units=units))
    with pytest.raises(UnitsError, match=r"'reach_air_temp' has units .* of type \w+, not a string"):
        validate(bad)


def test_units_and_roles_stored_as_scalars_are_read() -> None:
    # netCDF readers return some attributes as numbers or one-element arrays: a
    # dimensionless 1, a 0-d string. A variable the convention does not read (a grid
    # mapping's scalar) keeps whatever it has.
    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-02-01")
    odd = ds.assign(reach_air_temp=ds.reach_air_temp.assign_attrs(units=np.array("degC")),
                    reach_shade=ds.reach_shade.assign_attrs(units=np.int32(1)),
                    crs=xr.DataArray(0, attrs={"units": ["m"]}))
    odd["reach_swrad"].attrs["xmsgl_role"] = np.array("ignore")
    out = validate(odd)
    assert out.reach_air_temp.attrs["units"] == "degC" and out.reach_shade.attrs["units"] == "1"
    assert "reach_swrad" not in input_variables(out).all()


def test_a_coordinate_that_looks_like_an_input_warns() -> None:
    # A producer's 'coordinates' attribute (or set_coords) makes an input a coordinate,
    # and coordinates are not inputs: the model would be fitted without it.
    ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-02-01")
    moved = ds.set_coords(["reach_elevation", "seg_swrad"])
    with pytest.warns(xmsgl.XmsglWarning, match=r"coordinates \['reach_elevation', 'seg_swrad'\] look "
                                                 r"like a model input.*reset_coords"):
        found = input_variables(moved)
    assert "reach_elevation" not in found.all()
    # Map positions and coordinates marked "ignore" are no inputs, and nothing is said.
    placed = ds.assign_coords(
        lat=("reach", np.zeros(ds.sizes["reach"]), {"units": "degrees_north"}),
        x=("reach", np.zeros(ds.sizes["reach"]), {"units": "m"}),
        easting=("reach", np.zeros(ds.sizes["reach"]), {"units": "m", "standard_name": "projection_x_coordinate"}),
        reach_order=("reach", np.ones(ds.sizes["reach"]), {"units": "1"}),
        reach_flag=("reach", np.zeros(ds.sizes["reach"]), {"units": "m", "xmsgl_role": "ignore"}),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert input_variables(placed) == input_variables(ds)


def test_downscale_names_an_input_found_among_the_coordinates(half_year_basin: xr.Dataset,
                                                               half_year_msgl: object) -> None:
    moved = half_year_basin.set_coords("reach_elevation")
    with pytest.raises(xmsgl.ModelMismatchError, match=r"\['reach_elevation'\] the model was fitted "
                                                       r"with are coordinates.*reset_coords"):
        moved.msgl.downscale(half_year_msgl)


def test_places_of_values_out_of_range_read_well_on_any_dimensions() -> None:
    from xmsgl.convention import _places

    time = pd.date_range("2001-01-01", periods=4)
    on_time = xr.DataArray([False, True, False, False], dims="time", coords={"time": time})
    assert _places(on_time) == "1 value, on 2001-01-02"
    assert _places(xr.DataArray(True)) == "1 value"
    on_nodes = xr.DataArray([[False, True], [True, True]], dims=("reach", "time"),
                            coords={"reach": [7, 9], "time": time[:2]})
    assert _places(on_nodes, limit=2) == "3 values, at reach 9 on 2001-01-01, reach 7 on 2001-01-02 and 1 more"


def test_dates_of_its_own_beside_time_get_advice_that_works() -> None:
    # A second table on its own 'date' axis beside 'time': renaming the dataset's
    # dimension, as advised, failed (the name 'time' is taken).
    ds = hand_basin()
    dates = ds["time"].values[2:7]
    ds["reach_shade_spot"] = xr.DataArray(
        np.full((ds.sizes["reach"], 5), 0.3), dims=("reach", "date"), coords={"date": dates})
    with pytest.raises(SchemaError, match=r"'date' holds dates of its own") as info:
        input_variables(ds)
    said = str(info.value)
    assert "ds.rename" not in said
    first = re.search(r"(ds\['reach_shade_spot'\] = .*?\)) \(NaN", said)
    assert first, said
    fixed = ds.copy()
    exec(first.group(1), {"ds": fixed})
    assert fixed["reach_shade_spot"].dims == ("reach", "time")
    np.testing.assert_array_equal(fixed["reach_shade_spot"].sel(time=dates).values, 0.3)
    assert "reach_shade_spot" in str(input_variables(fixed))
    kept = re.search(r"or leave it out with (ds\.drop_vars\(.*?\))", said)
    assert kept
    input_variables(eval(kept.group(1), {"ds": ds}))


def test_a_head_reach_in_the_wrong_segment_is_named_beside_the_reach_flowing_into_it() -> None:
    # Reach 31, the head of segment 3 where segments 1 and 2 join, given segment 1: the
    # error named reach 22 of segment 2 and advised changing its 'reach_to', which then
    # validated a wrong network (segment 2 bypassing reach 31).
    ds = hand_basin()
    bad = ds.assign(reach_seg=ds.reach_seg.where(ds.reach != 31, 1))
    with pytest.raises(TopologyError, match=r"reaches \[22\] leave segments \[2\] into segment 1.*"
                                            r"or, if reach 31 lies in segment 3, correct its "
                                            r"'reach_seg' \(now 1\)"):
        validate(bad)
    fixed = bad.assign(reach_seg=bad.reach_seg.where(bad.reach != 31, 3))
    xr.testing.assert_identical(validate(fixed), validate(ds))


def test_hops_and_cycles_by_pointer_doubling_match_a_walk() -> None:
    # Both took one Python step per level of the network (14 s for validate on a chain
    # of 10^6 reaches); checked here against a plain walk on random forests.
    from xmsgl.convention import _find_cycles, hops_to_outlet

    rng = np.random.default_rng(3)
    for _ in range(100):
        n = int(rng.integers(1, 120))
        order = rng.permutation(n)
        to = np.full(n, -1)
        for k in range(1, n):
            if rng.random() < 0.9:
                to[order[k]] = order[rng.integers(0, k)]
        hops = np.zeros(n, dtype=np.int64)
        for i in range(n):
            j = i
            while to[j] >= 0:
                j, hops[i] = to[j], hops[i] + 1
        assert hops_to_outlet(to).tolist() == hops.tolist()
        assert _find_cycles(to).size == 0
        # A pointer turned back upstream closes a cycle: its nodes, and only those.
        deep = int(np.argmax(hops))
        if hops[deep] >= 2:
            ring = [deep]
            while to[ring[-1]] >= 0:
                ring.append(int(to[ring[-1]]))
            top = ring[int(rng.integers(1, len(ring)))]
            closed = to.copy()
            closed[top] = deep
            assert sorted(_find_cycles(closed).tolist()) == sorted(ring[:ring.index(top) + 1])
    chain = np.append(np.arange(1, 200_000), -1)
    assert hops_to_outlet(chain)[0] == 199_999 and _find_cycles(chain).size == 0
