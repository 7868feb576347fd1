"""Input values as data sets deliver them: tiny magnitudes, missing-data codes that no
attribute declares, temperatures in the wrong units. Each is learned from, or named
with a fix that works."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from tests.conftest import FAST_FIT

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

import xmsgl  # noqa: E402
from xmsgl.convention import check_loaded_temperature  # noqa: E402
from xmsgl.exceptions import DataError, InputRangeWarning, UnitsError, XmsglWarning  # noqa: E402


def _with_permeability(ds: xr.Dataset, scale: float = 1.0) -> xr.Dataset:
    rng = np.random.default_rng(0)
    out = ds.copy()
    for dim in ("seg", "reach"):
        out[f"{dim}_permeability"] = (dim, scale * 10 ** rng.uniform(-16, -12.5, ds.sizes[dim]),
                                      {"units": "m2"})
    return out


def test_an_input_of_tiny_magnitude_is_learned_from(half_year_basin: xr.Dataset) -> None:
    # A permeability of 1e-16..3e-13 m2 (std 7e-14) was taken for a constant: scaled by
    # 1 instead of its spread, so the model never saw it vary (and warned it was constant).
    ds = _with_permeability(half_year_basin)
    model = ds.msgl.fit(method="msgl", seed=0, **FAST_FIT)
    spec = model.features
    values = ds["reach_permeability"].values
    assert spec.std["reach_permeability"] == pytest.approx(values.std(), rel=1e-6)
    doubled = ds.assign(reach_permeability=ds["reach_permeability"] * 2)
    moved = abs(doubled.msgl.downscale(model) - ds.msgl.downscale(model)).max()
    assert float(moved) > 1e-3
    # One value repeated, with the rounding of a unit conversion, is still constant.
    flat = half_year_basin.assign(reach_const=("reach", np.full(ds.sizes["reach"], 1234.5678)
                                               * (1 + 1e-13 * np.arange(ds.sizes["reach"])),
                                               {"units": "m"}))
    with pytest.warns(XmsglWarning, match=r"inputs \['reach_const'\] take one value"):
        m = flat.msgl.fit(method="fine-only", seed=0, **FAST_FIT)
    assert m.features.std["reach_const"] == 1.0


def test_decimal_missing_codes_are_refused_where_they_lie_apart(half_year_basin: xr.Dataset) -> None:
    for code in (-99.0, -99.9):
        ds = half_year_basin.copy(deep=True)
        width = ds["reach_width"].astype(np.float32)
        width[3] = code
        ds["reach_width"] = width
        with pytest.raises(DataError, match=rf"'reach_width' holds 1 value of {code:g}"):
            ds.msgl.fit(method="msgl", seed=0, **FAST_FIT)


def test_codes_at_downscale_are_named_however_few(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    ds = half_year_basin.copy(deep=True)
    swrad = ds["reach_swrad"].copy(deep=True)
    # Five node-days of one reach, far below the 5% share rule (9999.9, a code of
    # FILL_VALUES, is refused outright).
    swrad[3, 100:105] = 5000.0
    ds["reach_swrad"] = swrad
    with pytest.warns(InputRangeWarning, match=r"'reach_swrad' \(W m-2; 5 of .* node-days, values "
                                               r"such as 5000 .*more than 25 standard deviations"):
        ds.msgl.downscale(half_year_msgl)
    # A negative incoming radiation is a code too, named as the validation reads it.
    swrad[3, 100:105] = -99.9
    ds["reach_swrad"] = swrad
    with pytest.warns(XmsglWarning, match="'reach_swrad' \\(W m-2\\) is negative at 5 of .*an incoming radiation flux"):
        ds.msgl.validate()


@pytest.mark.parametrize(("values", "fix"), [
    (np.array([12.0, 14.0, -99.9]), "ds['t'].where(ds['t'] >= -10)"),
    (np.array([12.0, 14.0, 99.9]), "ds['t'].where(ds['t'] <= 60)"),
    (np.array([-99.9, 14.0, 99.9]), "ds['t'].where((ds['t'] >= -10) & (ds['t'] <= 60))"),
])
def test_the_mask_a_temperature_message_gives_removes_what_it_names(values: np.ndarray, fix: str) -> None:
    # Every message offered .where(x > -9999), which keeps a -99.9 or a 99.9.
    with pytest.raises(UnitsError) as err:
        check_loaded_temperature("t", values, {}, water=True)
    assert fix in str(err.value)
    ds = xr.Dataset({"t": ("x", values)})  # noqa: F841 (read by the fix)
    masked = eval(fix)
    check_loaded_temperature("t", masked.values, {}, water=True)


def test_water_temperatures_in_degf_labelled_degc_are_named_as_degf() -> None:
    with pytest.raises(UnitsError, match="look like water temperatures in degF.*'degF'"):
        check_loaded_temperature("reach_temp", np.array([35.0, 60.0, 75.0]), {}, water=True)


def test_one_spike_among_warm_degc_water_is_not_named_degf() -> None:
    warm = np.r_[np.linspace(24.0, 30.0, 200), 99.0]
    with pytest.raises(UnitsError) as err:
        check_loaded_temperature("reach_temp", warm, {}, water=True)
    assert "degF" not in str(err.value) and "ds['reach_temp'].where(ds['reach_temp'] <= 60)" in str(err.value)


def test_a_code_in_a_converted_temperature_gets_no_degc_mask(half_year_basin: xr.Dataset) -> None:
    # The check runs on degC values, but a mask of degC bounds applied to the stored
    # degF array dropped 628 real temperatures beside 6 codes.
    ds = half_year_basin.copy()
    for s in ("reach", "seg"):
        f = (ds[f"{s}_air_temp"] * 1.8 + 32).astype("float32")
        f[{"time": 40}] = 9999.0
        ds[f"{s}_air_temp"] = f.assign_attrs(units="degF")
    with pytest.warns(xmsgl.UnitConversionWarning), \
            pytest.raises(UnitsError, match=r"mask fill values \(in ds\['\w+_air_temp'\] as stored, "
                                            r"in its own units"):
        ds.chunk({"time": 100}).msgl.fit(method="msgl", seed=0, **FAST_FIT)


@pytest.mark.parametrize(("attrs", "incoming"), [
    ({"standard_name": "surface_downwelling_shortwave_flux_in_air"}, True),
    ({"standard_name": "toa_incoming_shortwave_flux"}, True),
    ({"long_name": "Surface solar radiation downwards"}, True),
    ({"long_name": "daylight average incident shortwave radiation"}, True),
    ({"long_name": "Shortwave radiation"}, True),
    ({"standard_name": "surface_net_downward_shortwave_flux"}, False),
    ({"long_name": "Net radiation"}, False),
    ({"long_name": "net radiation", "standard_name": "surface_downwelling_shortwave_flux_in_air"}, False),
    ({"standard_name": "surface_upwelling_longwave_flux_in_air"}, False),
])
def test_negative_radiation_is_a_code_only_where_the_flux_is_incoming(
        tiny_basin: xr.Dataset, attrs: dict, incoming: bool) -> None:
    import warnings

    ds = tiny_basin.copy()
    flux = (ds["reach_swrad"] - 80.0).assign_attrs({"units": "W m-2", **attrs})
    ds["reach_flux"] = flux.drop_attrs().assign_attrs({"units": "W m-2", **attrs})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ds.msgl.validate()
    said = [w for w in seen if "'reach_flux' (W m-2) is negative" in str(w.message)]
    assert bool(said) == incoming


def _one_observation_set_to(ds: xr.Dataset, value: float) -> tuple[xr.Dataset, str, str]:
    da = ds["reach_temp"].transpose("reach", "time")
    v = da.values.copy()
    i, j = np.argwhere(np.isfinite(v))[10]
    v[i, j] = value
    where = f"reach {ds.reach.values[i].item()!r} on {str(ds.time.values[j])[:10]}"
    return ds.assign(reach_temp=(da.dims, v, da.attrs)), where, str(i)


@pytest.mark.parametrize("value", [59.0, -7.0])
def test_an_implausible_water_temperature_inside_the_units_tolerance_is_named(
        half_year_basin: xr.Dataset, value: float) -> None:
    # One observation of 59 degC (or -7) passed validation silently, since the range
    # that judges units reaches 60 (and -10), and a model trained on it as truth.
    ds, where, _ = _one_observation_set_to(half_year_basin, value)
    with pytest.warns(XmsglWarning, match=rf"'reach_temp' has values outside -5..45 degC.*1 value, at "
                                          rf"{where}.*mask them") as rec:
        ds.msgl.validate()
    fix = str(rec[0].message).split("mask them, ")[1].split("; a model")[0]
    exec(fix)  # the fix as written removes the value and the warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds.msgl.validate()
    ok, _, _ = _one_observation_set_to(half_year_basin, 44.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok.msgl.validate()


def test_an_implausible_converted_water_temperature_is_masked_in_degc(half_year_basin: xr.Dataset) -> None:
    ds, where, _ = _one_observation_set_to(half_year_basin, 47.0)
    ds["reach_temp"] = (ds["reach_temp"] * 1.8 + 32).assign_attrs(units="degF")
    with pytest.warns(xmsgl.UnitConversionWarning), \
            pytest.warns(XmsglWarning, match=rf"outside -5..45 degC.*{where}.*ds = ds.msgl.validate\(\); "
                                             r".*in degC as converted from 'degF'") as rec:
        ds.msgl.validate()
    fix = [str(r.message) for r in rec if "outside -5..45" in str(r.message)][0]
    space = {"ds": ds}
    with warnings.catch_warnings():  # its validate() warns again, before the mask
        warnings.simplefilter("ignore")
        exec(fix.split("mask them, ")[1].split(", in degC")[0], space)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        space["ds"].msgl.validate()
