"""Temperatures judged where their values are read: lazy datasets and baselines' predict.

``validate`` reads values only when they are in memory, and the baselines' ``predict``
validates without reading them; fitting and predicting read them anyway, and refuse
a fill value or a wrong unit label there instead of fitting or copying it.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xmsgl
from xmsgl.convention import check_loaded_temperature
from xmsgl.exceptions import UnitsError


@pytest.fixture(scope="module")
def basin() -> xr.Dataset:
    return xmsgl.datasets.synthetic_basin(n_segments=4, start="2012-10-01", end="2014-09-30", seed=1)


def _with_fill(ds: xr.Dataset, name: str = "reach_temp") -> xr.Dataset:
    out = ds.copy(deep=True)
    i, j = np.argwhere(np.isfinite(out[name].values))[3]
    out[name][i, j] = -9999.0
    return out


def _kelvin_labelled_degc(ds: xr.Dataset, name: str) -> xr.Dataset:
    return ds.assign({name: (ds[name] + 273.15).assign_attrs(ds[name].attrs)})


def test_the_check_itself() -> None:
    check_loaded_temperature("t", np.array([np.nan, -2.0, 31.0]), {}, water=True)
    check_loaded_temperature("t", np.array([]), {}, water=True)
    check_loaded_temperature("air", np.array([-60.0, 50.0]), {}, water=False)
    with pytest.raises(UnitsError, match=r"spans -9999.0\.\.3\.0 degC.*\(1 value outside it\).*"
                                         r"where\(ds\['t'\] >= -10\)"):
        check_loaded_temperature("t", np.array([-9999.0, 3.0]), {}, water=True)
    with pytest.raises(UnitsError, match="kelvin: if so, set ds\\['t'\\].attrs\\['units'\\] = 'K'"):
        check_loaded_temperature("t", np.array([280.0, 290.0]), {}, water=True)
    with pytest.raises(UnitsError, match="labelled 'K' become"):
        check_loaded_temperature("air", np.array([-263.0, -250.0]), {}, water=False)


@pytest.mark.parametrize("method", ["idw", "harmonic"])
def test_baseline_predict_refuses_a_fill_value_among_its_sources(basin: xr.Dataset, method: str) -> None:
    model = basin.msgl.fit(method=method)
    assert np.isfinite(basin.msgl.downscale(model).values).all()
    with pytest.raises(UnitsError, match="'reach_temp' spans -9999.0"):
        _with_fill(basin).msgl.downscale(model)
    with pytest.raises(UnitsError, match="'reach_temp' spans 27"):
        _kelvin_labelled_degc(basin, "reach_temp").msgl.downscale(model)


def test_mohseni_predict_refuses_kelvin_air_labelled_degc(basin: xr.Dataset) -> None:
    model = basin.msgl.fit(method="mohseni")
    with pytest.raises(UnitsError, match="temperature 'reach_air_temp' spans 2"):
        _kelvin_labelled_degc(basin, "reach_air_temp").msgl.downscale(model)


def test_mohseni_predict_names_degf_air_labelled_degc_first(basin: xr.Dataset) -> None:
    # Its first advice was to mask the values above 65 degC, which keeps the cool
    # days of a degF record and drops the warm ones.
    model = basin.msgl.fit(method="mohseni")
    air = basin["reach_air_temp"]
    degf = basin.assign(reach_air_temp=(air * 1.8 + 32).assign_attrs(air.attrs))
    with pytest.raises(UnitsError, match=r"spans .* degC, outside the plausible -90\.\.65 degC .*; its values "
                                         r"look like degF: if so, set ds\['reach_air_temp'\]\.attrs\['units'\] = "
                                         r"'degF'; if they are degC, mask the fill values among them"):
        degf.msgl.downscale(model)
    # Two fill values above the range are still fill values.
    filled = air.copy()
    filled[0, :2] = [99.0, 99.0]
    with pytest.raises(UnitsError, match=r"\(2 values outside it\); mask fill values"):
        check_loaded_temperature("reach_air_temp", filled.values, {}, water=False)


@pytest.mark.parametrize("method", ["climatology", "fine-only"])
def test_fit_on_a_lazy_dataset_refuses_a_fill_value_in_its_targets(basin: xr.Dataset, method: str,
                                                                   tmp_path) -> None:
    pytest.importorskip("dask")
    path = tmp_path / "fill.nc"
    _with_fill(basin).to_netcdf(path)
    kw = {"epochs": 1, "progress": False} if method == "fine-only" else {}
    with xr.open_dataset(path, chunks={}) as lazy:
        with pytest.raises(UnitsError, match="'reach_temp' spans -9999.0"):
            lazy.msgl.fit(method=method, **kw)
