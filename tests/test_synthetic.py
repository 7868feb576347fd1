"""The synthetic basin: convention, determinism, sizes, physics, laziness and errors."""

from __future__ import annotations

import json

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import xmsgl
from xmsgl.convention import input_variables, topology_arrays
from xmsgl.datasets import synthetic_basin
from xmsgl.exceptions import ParameterError, TimeError, XmsglError


@pytest.fixture(scope="module")
def medium() -> xr.Dataset:
    """150 segments (about 1,100 reaches) over two water years: enough for averages."""
    return synthetic_basin(n_segments=150, start="2004-10-01", end="2006-09-30", seed=2)


def _position(ds: xr.Dataset, ids: np.ndarray) -> np.ndarray:
    return np.searchsorted(ds["reach"].values, ids)


def test_small_basin_follows_the_convention(small_basin: xr.Dataset) -> None:
    out = xmsgl.validate(small_basin)
    assert dict(out.sizes) == {"seg": 20, "reach": small_basin.sizes["reach"], "time": 1461}
    for dim in ("seg", "reach"):
        ids = small_basin[dim].values
        assert ids.dtype == np.int64 and (ids > 0).all()
    for name, da in small_basin.data_vars.items():
        assert "long_name" in da.attrs, name
        if np.issubdtype(da.dtype, np.floating):
            assert "units" in da.attrs, name
    for name in ("seg_temp", "reach_temp", "seg_temp_true", "reach_temp_true", "reach_air_temp"):
        assert small_basin[name].attrs["units"] == "degC"
    inputs = input_variables(small_basin)
    assert set(inputs.reach_dynamic) == {"reach_air_temp", "reach_swrad", "reach_precip",
                                         "reach_discharge"}
    assert "reach_gw_share" in inputs.reach_static and "seg_shade" in inputs.seg_static
    assert "reach_is_tributary" not in inputs.all()  # integer flags are never inputs
    assert small_basin.attrs["Conventions"] == "CF-1.11"
    for scale in ("seg", "reach"):
        for key, standard_name in (("air_temp", "air_temperature"), ("precip", "lwe_precipitation_rate"),
                                   ("swrad", "surface_downwelling_shortwave_flux_in_air"),
                                   ("discharge", "water_volume_transport_in_river_channel")):
            attrs = small_basin[f"{scale}_{key}"].attrs
            assert (attrs["standard_name"], attrs["cell_methods"]) == (standard_name, "time: mean")


def test_tiny_basin_and_a_single_segment(tiny_basin: xr.Dataset) -> None:
    xmsgl.validate(tiny_basin)
    one = synthetic_basin(n_segments=1, start="2001-06-01", end="2001-06-10")
    xmsgl.validate(one)
    assert one.sizes["seg"] == 1 and int(one.seg_to.values[0]) == xmsgl.OUTLET


def test_attributes_record_the_call(tiny_basin: xr.Dataset) -> None:
    assert tiny_basin.attrs["seed"] == 3
    assert json.loads(tiny_basin.attrs["generator_parameters"])["n_segments"] == 6
    assert "xmsgl" in tiny_basin.attrs["history"] and "synthetic_basin(" in tiny_basin.attrs["history"]
    # Stamped as the later steps' lines are (downscale, evaluate): one format in a file.
    import re

    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: xmsgl ", tiny_basin.attrs["history"])


def test_same_seed_same_basin_other_seed_other_basin() -> None:
    kw = dict(n_segments=6, start="2001-01-01", end="2001-04-30")
    a = synthetic_basin(**kw, seed=3)
    b = synthetic_basin(**kw, seed=3)
    c = synthetic_basin(**kw, seed=4)
    xr.testing.assert_equal(a, b)
    assert a.sizes["reach"] != c.sizes["reach"] or not np.array_equal(
        a.reach_temp_true.values, c.reach_temp_true.values
    )


def test_default_size_is_delaware_like() -> None:
    # Built lazily so that the network is checked without the 12-year cube.
    ds = synthetic_basin(chunks=2000)
    assert ds.sizes["seg"] == 450
    assert 3000 <= ds.sizes["reach"] <= 4000
    assert 5 <= int((ds.seg_to == 0).sum()) <= 8
    assert str(ds.time.values[0])[:10] == "2007-10-01" and str(ds.time.values[-1])[:10] == "2019-09-30"
    assert 2000 < float(ds.seg_length.median()) < 10000  # segments are several km
    assert 600 < float(ds.reach_length.mean()) < 1400  # reaches are about 1 km
    assert isinstance(ds.reach_temp_true.data, dsa.Array)


def test_network_structure(medium: xr.Dataset) -> None:
    ds = medium
    topo = topology_arrays(ds)
    to = topo.reach_to_idx
    seg = topo.reach_seg_idx
    has_down = to >= 0
    # elevation falls downstream
    assert (ds.reach_elevation.values[to[has_down]] < ds.reach_elevation.values[has_down]).all()
    # upstream segments all feed one head reach of the downstream segment's main chain
    trib = ds.reach_is_tributary.values == 1
    outlets = topo.seg_outlet_reach_idx
    assert not trib[outlets].any()
    fed = to[outlets][to[outlets] >= 0]
    for s in np.unique(seg[fed]):
        heads = np.unique(fed[seg[fed] == s])
        assert heads.size == 1 and not trib[heads[0]]
        assert not ((to == heads[0]) & (seg == s) & ~trib).any()  # nothing of the chain above it
    # fine-only tributaries exist and stay inside their segment
    assert trib.mean() > 0.1
    assert (seg[to[trib & has_down]] == seg[trib & has_down]).all()
    assert int(ds.seg_outlet_reach.values[0]) == int(ds.reach.values[outlets[0]])


def test_water_is_warmer_in_summer_and_never_frozen(medium: xr.Dataset) -> None:
    t = medium.reach_temp_true
    month = medium.time.dt.month
    assert float(t.min()) >= 0.0
    assert float(t.max()) < 35.0
    july = t.sel(time=month == 7).mean("time")
    january = t.sel(time=month == 1).mean("time")
    assert (july > january + 2).all()
    assert float((july - january).median()) > 8  # spring-fed reaches have the smallest cycle
    # some winter days sit at the ice clip
    assert float((t.sel(time=month == 1) == 0).mean()) > 0.001


def test_groundwater_and_shade_cool_summer_water(medium: xr.Dataset) -> None:
    july = medium.time.dt.month == 7
    # Subtract the local air temperature so elevation does not decide the comparison.
    excess = (medium.reach_temp_true - medium.reach_air_temp).sel(time=july).mean("time").values
    gw = medium.reach_gw_share.values
    shade = medium.reach_shade.values
    assert excess[gw > 0.7].mean() < excess[gw < 0.3].mean() - 1.0
    assert excess[shade > 0.6].mean() < excess[shade < 0.3].mean() - 0.5
    # fine temperature varies inside a segment in summer
    tj = medium.reach_temp_true.sel(time=july).mean("time")
    spread = tj.groupby(medium.reach_seg.rename("segment")).std()
    assert float(spread.mean()) > 0.3


def test_coarse_truth_is_the_outlet_reach(small_basin: xr.Dataset) -> None:
    outlets = topology_arrays(small_basin).seg_outlet_reach_idx
    np.testing.assert_array_equal(small_basin.seg_temp_true.values,
                                  small_basin.reach_temp_true.values[outlets])
    np.testing.assert_array_equal(small_basin.seg_discharge.values,
                                  small_basin.reach_discharge.values[outlets])


def test_seg_forcings_are_length_weighted_reach_means(small_basin: xr.Dataset) -> None:
    ds = small_basin
    length = ds.reach_length.values
    seg_pos = topology_arrays(ds).reach_seg_idx
    for name in ("air_temp", "swrad", "precip"):
        reach = ds[f"reach_{name}"].values.astype(np.float64)
        expected = np.zeros((ds.sizes["seg"], ds.sizes["time"]))
        np.add.at(expected, seg_pos, reach * length[:, None])
        expected /= np.bincount(seg_pos, weights=length)[:, None]
        np.testing.assert_allclose(ds[f"seg_{name}"].values, expected, rtol=1e-5, atol=1e-4)
    for name in ("shade", "gw_share", "slope"):
        expected = np.bincount(seg_pos, weights=ds[f"reach_{name}"].values * length)
        expected /= np.bincount(seg_pos, weights=length)
        np.testing.assert_allclose(ds[f"seg_{name}"].values, expected, rtol=1e-10)


def test_discharge_accumulates_downstream(small_basin: xr.Dataset) -> None:
    to = topology_arrays(small_basin).reach_to_idx
    q = small_basin.reach_discharge.values
    has_down = to >= 0
    assert (q > 0).all()
    assert (q[to[has_down]] >= q[has_down] * (1 - 1e-6)).all()
    outlet_q = q[~has_down].sum(axis=0)
    assert outlet_q.max() > 3 * np.median(outlet_q)  # storms make peaks


def test_forcings_are_plausible(small_basin: xr.Dataset) -> None:
    ds = small_basin
    assert 2.0 < float(ds.reach_precip.mean()) < 4.5
    assert 0.2 < float((ds.reach_precip > 0).mean()) < 0.6
    assert float(ds.reach_swrad.min()) > 0 and float(ds.reach_swrad.max()) < 400
    month = ds.time.dt.month
    assert float(ds.reach_air_temp.sel(time=month == 7).mean()) > float(
        ds.reach_air_temp.sel(time=month == 1).mean()) + 15
    # wet days are cloudier
    wet = ds.reach_precip.values > 1
    assert ds.reach_swrad.values[wet].mean() < ds.reach_swrad.values[~wet].mean()


def test_observations_are_noisy_truth_with_gaps(small_basin: xr.Dataset) -> None:
    for scale in ("seg", "reach"):
        obs = small_basin[f"{scale}_temp"].values
        truth = small_basin[f"{scale}_temp_true"].values
        seen = ~np.isnan(obs)
        resid = (obs - truth)[seen]
        assert abs(resid.mean()) < 0.05
        assert 0.2 < resid.std() < 0.3
        sites = seen.any(axis=1)
        assert 0.3 < seen[sites].mean() < 0.95  # records have gaps
    n = small_basin.sizes["seg"]
    assert (~np.isnan(small_basin.seg_temp.values)).any(axis=1).sum() == round(0.6 * n)


def test_observation_shares_and_noise_follow_parameters() -> None:
    ds = synthetic_basin(n_segments=40, start="2002-01-01", end="2002-12-31", seed=7,
                         seg_obs_share=0.25, reach_obs_share=0.1, obs_noise=0.0)
    seg_sites = (~np.isnan(ds.seg_temp.values)).any(axis=1)
    reach_sites = (~np.isnan(ds.reach_temp.values)).any(axis=1)
    assert seg_sites.sum() == 10
    assert reach_sites.sum() == round(0.1 * ds.sizes["reach"])
    seen = ~np.isnan(ds.reach_temp.values)
    np.testing.assert_array_equal(ds.reach_temp.values[seen], ds.reach_temp_true.values[seen])
    none = synthetic_basin(n_segments=5, start="2002-01-01", end="2002-02-01",
                           seg_obs_share=0.0, reach_obs_share=0.0)
    assert bool(none.seg_temp.isnull().all()) and bool(none.reach_temp.isnull().all())


def test_lazy_equals_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    kw = dict(n_segments=30, start="2003-01-01", end="2003-12-31", seed=11, n_outlets=5)
    eager = synthetic_basin(**kw)
    lazy = synthetic_basin(**kw, chunks=40)
    assert isinstance(lazy.reach_temp_true.data, dsa.Array)
    assert len(lazy.reach_temp_true.data.chunks[0]) > 1
    xmsgl.validate(lazy)
    # Smaller row blocks inside each chunk must not change a value either.
    monkeypatch.setattr("xmsgl.datasets.synthetic.BLOCK_ROWS", 7)
    computed = lazy.compute(scheduler="synchronous")
    for name in eager.data_vars:
        np.testing.assert_array_equal(eager[name].values, computed[name].values, err_msg=str(name))


def test_basins_differing_only_in_chunks_compute_together() -> None:
    # Group g covers different reaches at different chunk sizes: the two graphs must
    # not share keys, or computing them together mixes their blocks.
    import dask

    kw = dict(n_segments=40, start="2001-01-01", end="2001-01-20", seed=0, n_outlets=6)
    eager = synthetic_basin(**kw)
    a, b = synthetic_basin(**kw, chunks=30), synthetic_basin(**kw, chunks=2000)
    assert len(a.reach_temp_true.data.chunks[0]) > 1
    assert len(b.reach_temp_true.data.chunks[0]) == 1
    keys_a = set(dict(a.reach_temp_true.data.__dask_graph__()))
    keys_b = set(dict(b.reach_temp_true.data.__dask_graph__()))
    assert not keys_a & keys_b
    ca, cb, sa, sb = dask.compute(a.reach_temp_true.data, b.reach_temp_true.data,
                                  a.seg_temp.data, b.seg_temp.data, scheduler="synchronous")
    for got in (ca, cb):
        np.testing.assert_array_equal(got, eager.reach_temp_true.values)
    for got in (sa, sb):
        np.testing.assert_array_equal(got, eager.seg_temp.values)


@pytest.mark.parametrize(
    ("kwargs", "error", "word"),
    [
        ({"n_segments": 0}, ParameterError, "n_segments"),
        ({"n_segments": 2.5}, ParameterError, "n_segments"),
        ({"n_segments": 5, "n_outlets": 6}, ParameterError, "n_outlets"),
        ({"seg_obs_share": 1.5}, ParameterError, "seg_obs_share"),
        ({"reach_obs_share": -0.1}, ParameterError, "reach_obs_share"),
        ({"obs_noise": -1.0}, ParameterError, "obs_noise"),
        ({"reach_length": 0.0}, ParameterError, "reach_length"),
        ({"chunks": 0}, ParameterError, "chunks"),
        ({"seed": -1}, ParameterError, "seed"),
        ({"start": "2005-01-01", "end": "2004-01-01"}, TimeError, "before"),
        ({"start": "not a date"}, TimeError, "start"),
        # A zone put the days on UTC instants and shifted the simulated day of year.
        ({"start": "2001-01-01T00:00+01:00"}, TimeError, "'start' carry a time zone"),
        # pandas read a number as nanoseconds since 1970 (a basin in 1970) and None or ""
        # as NaT (a bare AttributeError).
        ({"start": 2001, "end": 2003}, TimeError, r"'start' and 'end' must be dates .* got 2001, 2003"),
        ({"start": 20010101}, TimeError, "'start' must be dates"),
        ({"start": None}, TimeError, "'start' must be dates"),
        ({"end": None}, TimeError, "'end' must be dates"),
        ({"end": ""}, TimeError, "'end' must be dates"),
        ({"end": "NaT"}, TimeError, "must be dates"),
        # Headwaters lifted until validate refused their air (-95 degC at 1e5 m), by long
        # reaches or long chains of them.
        ({"reach_length": 1e6}, ParameterError, r"highest reaches lie up to \d+ m, where the mean air "
                                                r"temperature would be -\d+ degC .*shorter reach_length"),
        ({"n_segments": 10, "n_outlets": 1, "reach_length": 1e4, "reaches_per_segment": 60},
         ParameterError, "reaches_per_segment 60"),
    ],
)
def test_bad_parameters_raise_typed_errors(kwargs: dict, error: type, word: str) -> None:
    call = {"n_segments": 5, "start": "2001-01-01", "end": "2001-01-10", **kwargs}
    with pytest.raises(error, match=word) as info:
        synthetic_basin(**call)
    assert isinstance(info.value, XmsglError)


def test_times_within_one_day_make_that_day() -> None:
    # An end earlier in the same day was refused as "before" the start.
    ds = synthetic_basin(n_segments=2, start="2001-01-01T18:00", end="2001-01-01T06:00")
    assert ds.sizes["time"] == 1


def test_sensor_noise_is_bounded_to_what_validate_accepts() -> None:
    # A noise of 6 degC and more made readings that validate refused (UnitsError); up to
    # 100 was accepted.
    import xmsgl

    with pytest.raises(ParameterError, match="'obs_noise' must lie in"):
        xmsgl.datasets.synthetic_basin(n_segments=4, start="2001-01-01", end="2001-03-31", obs_noise=5.0)
    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2001-01-01", end="2001-03-31", obs_noise=2.0)
    xmsgl.validate(ds)
