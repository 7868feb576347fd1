"""Pinned behaviour of validate and the atomic writers that no other test held:
the daily-step check, the length-scale warning both ways, the degC water range,
the id order of reaches, packed variables marked ignore, and a dangling link
refused before anything is written."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xmsgl
from tests.test_convention import hand_basin
from xmsgl.convention import in_id_order, validate
from xmsgl.exceptions import ParameterError, TimeError, UnitsError
from xmsgl.io import atomic_write, to_netcdf_safe, to_zarr_safe


def test_two_day_steps_are_not_daily() -> None:
    # Guards `typical > 1` in _check_time: steps every other day are refused too,
    # not only weekly ones.
    ds = hand_basin()
    every_other = ds.time.values[0] + np.arange(10) * np.timedelta64(2, "D")
    with pytest.raises(TimeError, match="typically 2 days apart"):
        validate(ds.assign_coords(time=every_other))


def test_segment_lengths_far_too_short_warn_too() -> None:
    # Guards the lower bound of LENGTH_RATIO_LIMIT: segments 1000 times shorter than
    # their reaches (km labelled 'm') warn, naming the reaches as the long ones.
    ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2001-01-01", end="2001-02-01")
    seg_km_as_m = ds.assign(seg_length=(ds.seg_length / 1000).assign_attrs(units="m"))
    with pytest.warns(xmsgl.XmsglWarning, match=r"'reach_length' looks [0-9.e+]+ times too long"):
        validate(seg_km_as_m)


def test_fahrenheit_water_labelled_degc_is_refused() -> None:
    # Guards the degC water range `vmax > hi + 15` (45 + 15 = 60 degC): water
    # temperatures up to 80 "degC" are Fahrenheit values, refused with the fix.
    ds = hand_basin()
    hot = ds.reach_temp.copy()
    hot[2, :5] = [50.0, 60.0, 70.0, 80.0, 75.0]
    with pytest.raises(UnitsError, match=r"labelled 'degC' but spans 50\.0\.\.80\.0.*look like degF: "
                                         r"set ds\['reach_temp'\]\.attrs\['units'\] = 'degF'"):
        validate(ds.assign(reach_temp=hot))
    hot[2, :5] = [20.0, 30.0, 40.0, 55.0, 35.0]  # within the tolerance: accepted, warned of
    with pytest.warns(xmsgl.XmsglWarning, match=r"'reach_temp' is labelled degC but 1 of its 5 values"):
        validate(ds.assign(reach_temp=hot))


def test_in_id_order_sorts_reaches_as_well_as_segments() -> None:
    # Guards the loop over (SEG, REACH) in in_id_order: shuffled reaches come back
    # in id order, their values with them.
    ds = hand_basin()
    shuffled = ds.isel(reach=[5, 0, 7, 2, 1, 6, 4, 3], seg=[2, 0, 1])
    out = in_id_order(shuffled)
    assert out.reach.values.tolist() == sorted(ds.reach.values.tolist())
    assert out.seg.values.tolist() == [1, 2, 3]
    xr.testing.assert_identical(out.reach_air_temp, ds.reach_air_temp)
    assert in_id_order(ds) is ds  # already in order: the same object


def test_a_packed_variable_marked_ignore_is_not_refused() -> None:
    # Guards the xmsgl_role == "ignore" exemption of validate's packed check: a
    # still-packed variable the user set aside does not stop validation.
    ds = hand_basin()
    packed = xr.DataArray(np.zeros(ds.sizes["reach"], dtype=np.int16), dims=("reach",),
                          attrs={"units": "1", "scale_factor": 0.01, "add_offset": 1.0})
    with pytest.raises(UnitsError, match="still packed"):
        validate(ds.assign(reach_qc=packed))
    ignored = ds.assign(reach_qc=packed.assign_attrs(xmsgl_role="ignore"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = validate(ignored)
    assert "reach_qc" in out.data_vars


@pytest.mark.parametrize("writer", [to_netcdf_safe, to_zarr_safe], ids=["netcdf", "zarr"])
def test_a_dangling_link_is_refused_before_a_delayed_write_is_made(tmp_path: Path, writer) -> None:
    # Guards lexists (not exists) in _prepare: the refusal comes at the call, not
    # only at the delayed commit after every chunk was written.
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "nowhere")
    ds = xr.Dataset({"a": ("x", np.arange(4.0))}).chunk({"x": 2})
    with pytest.raises(ParameterError, match="already exists"):
        writer(ds, link, compute=False)
    assert link.is_symlink() and sorted(os.listdir(tmp_path)) == ["out"]


def test_atomic_write_refuses_a_dangling_link_before_its_block_runs(tmp_path: Path) -> None:
    # Guards the same check for atomic_write: the block is never entered.
    link = tmp_path / "out.txt"
    link.symlink_to(tmp_path / "nowhere")
    ran = []
    with pytest.raises(ParameterError, match="already exists"):
        with atomic_write(link) as tmp:
            ran.append(tmp)
    assert ran == [] and sorted(os.listdir(tmp_path)) == ["out.txt"]
