"""What a fitted model says about its inputs: the fix it offers must be one that works.

A fitted model needs every input it was fitted with, so at downscale time the advice
to leave a variable out (right when fitting) is wrong; these messages once gave it.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from xmsgl.exceptions import DataError, SchemaError  # noqa: E402


def _members(da: xr.DataArray) -> xr.DataArray:
    return xr.concat([da, da + 0.5], "member")


def test_an_input_on_a_member_dimension_gets_advice_that_works(half_year_basin: xr.Dataset,
                                                               half_year_msgl) -> None:
    ds = half_year_basin.copy()
    ds["reach_air_temp"] = _members(ds["reach_air_temp"])
    for call in (lambda d: d.msgl.downscale(half_year_msgl), lambda d: d.msgl.coverage(half_year_msgl)):
        with pytest.raises(SchemaError) as err:
            call(ds)
        text = str(err.value)
        assert "'reach_air_temp'" in text and "isel(member=0)" in text and ".mean('member')" in text
        assert "drop_vars" not in text and "xmsgl_role" not in text
    # The first fix offered, then the second: each gives the model's own inputs back.
    fixed = ds.copy()
    fixed["reach_air_temp"] = ds["reach_air_temp"].isel(member=0)
    expect = half_year_basin.msgl.downscale(half_year_msgl)
    xr.testing.assert_equal(fixed.msgl.downscale(half_year_msgl), expect)  # history: its own time
    assert ds.isel(member=1).msgl.downscale(half_year_msgl).shape == expect.shape
    assert "reads it on its node and 'time' only" in text
    # A static input is read on its node alone, as the message says.
    static = half_year_basin.assign(reach_width=_members(half_year_basin["reach_width"]))
    with pytest.raises(SchemaError, match=r"'reach_width' .*reads it on its node \(a static input\) only"):
        static.msgl.downscale(half_year_msgl)


def test_nan_in_an_input_at_downscale_is_not_advised_away(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    ds = half_year_basin.copy()
    values = ds["reach_air_temp"].values.copy()
    values[2, :5] = np.nan
    ds["reach_air_temp"] = (ds["reach_air_temp"].dims, values, ds["reach_air_temp"].attrs)
    with pytest.raises(DataError) as err:
        ds.msgl.downscale(half_year_msgl)
    text = str(err.value)
    assert "'reach_air_temp' has 5 NaN" in text and "interpolate_na('time')" in text
    assert "drop_vars" not in text and "fitted with it, so it cannot be left out" in text
    # When fitting, leaving it out is a fix, and is still offered.
    with pytest.raises(DataError, match=r"to fit a model without it, leave it out with "
                                        r"ds.drop_vars\('reach_air_temp'\)"):
        ds.msgl.fit(method="fine-only", epochs=1, window=30, stride=30, progress=False)


def test_a_target_on_a_member_dimension_names_the_fix(half_year_basin: xr.Dataset) -> None:
    ds = half_year_basin.copy()
    ds["reach_temp"] = _members(ds["reach_temp"])
    with pytest.raises(SchemaError, match=r"target 'reach_temp' must have dims \('reach', 'time'\), got "
                                          r"\('member', 'reach', 'time'\): select one 'member' \(for "
                                          r"example ds\['reach_temp'\] = ds\['reach_temp'\].isel\(member=0\)\)"):
        ds.msgl.validate()
    ds["reach_temp"] = ds["reach_temp"].isel(member=0)
    ds.msgl.validate()


@pytest.mark.parametrize("method", ["msgl", "fine-only", "async-msgl"])
def test_fit_on_a_dataset_without_time_is_a_schema_error(half_year_basin: xr.Dataset, method: str) -> None:
    # The topology and static inputs alone (before the forcings are merged) validate;
    # fit then failed with xarray's KeyError for 'time'.
    static = half_year_basin.drop_dims("time")
    static.msgl.validate()
    with pytest.raises(SchemaError, match="no 'time' dimension.*merge them"):
        static.msgl.fit(method=method, epochs=1, progress=False)
