"""Non-neural baselines on hand-made networks, with values worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from xmsgl.baselines import _idw, _smooth_air, fit_baseline
from xmsgl.convention import topology_arrays

M = {"units": "m"}
C = {"units": "degC"}


def _chain(lengths: list[float], reach_temp: np.ndarray, seg_temp: np.ndarray | None = None) -> xr.Dataset:
    """One segment of three reaches in a line, 1 -> 2 -> 3 -> outlet."""
    n_time = reach_temp.shape[1]
    seg = np.full((1, n_time), np.nan) if seg_temp is None else seg_temp
    return xr.Dataset(
        {"seg_to": ("seg", [0]), "seg_length": ("seg", [float(sum(lengths))], M),
         "reach_to": ("reach", [2, 3, 0]), "reach_length": ("reach", lengths, M),
         "reach_seg": ("reach", [1, 1, 1]),
         "reach_temp": (("reach", "time"), reach_temp, C), "seg_temp": (("seg", "time"), seg, C)},
        coords={"seg": [1], "reach": [1, 2, 3],
                "time": pd.date_range("2000-01-01", periods=n_time)})


def _ends_observed(n_time: int = 20) -> np.ndarray:
    """Reach 1 at 10 degC and reach 3 at 20 degC every day, reach 2 never observed."""
    v = np.full((3, n_time), np.nan)
    v[0], v[2] = 10.0, 20.0
    return v


TRAIN = ("2000-01-01", "2000-01-20")


def test_smooth_air_is_nan_on_days_without_air_temperature() -> None:
    # Guards a missing day of air temperature giving NaN that day, while the days
    # around it average the days their window has.
    air = np.array([[1.0, 2.0, np.nan, 4.0, 5.0]])
    got = _smooth_air(air, 3)
    np.testing.assert_allclose(got, [[1.0, 1.5, np.nan, 3.0, 4.5]])


def test_idw_weighs_by_absolute_distance_up_and_down_stream() -> None:
    # Guards IDW using |distance|: a source 500 m upstream and one 500 m downstream
    # weigh the same, so the reach between them gets their mean.
    ds = _chain([500.0, 500.0, 500.0], _ends_observed())
    pred = fit_baseline(ds, "idw", train=TRAIN).predict(ds)
    np.testing.assert_allclose(pred.sel(reach=2).values, 15.0, rtol=1e-6)
    # And with the downstream source four times farther, 1/d^2 weights 16:1.
    ds = _chain([500.0, 125.0, 500.0], _ends_observed())
    pred = fit_baseline(ds, "idw", train=TRAIN).predict(ds)
    np.testing.assert_allclose(pred.sel(reach=2).values, (16 * 10.0 + 20.0) / 17, rtol=1e-6)


def test_idw_falls_back_to_the_segment_observation_without_a_source_on_the_path() -> None:
    # Guards the first fallback of IDW: on a day with no source on a reach's flow
    # path, the reach takes its segment's coarse observation that day (then, without
    # one, its climatology). Through predict the coarse observation is itself a source
    # at the segment's outlet reach, so this is checked on the interpolator itself.
    ds = _chain([500.0, 500.0, 500.0], np.full((3, 4), np.nan))
    topo = topology_arrays(ds)
    src = np.full((3, 4), np.nan)
    y_seg = np.array([[7.0, 8.0, np.nan, 9.0]])
    clim_r = np.full((3, 4), 3.0)
    clim_s = np.full((1, 4), 4.0)
    length = np.array([500.0, 500.0, 500.0])
    got = _idw(src, y_seg, topo, length, clim_r, clim_s, 2.0, 100.0)
    np.testing.assert_allclose(got, np.array([[7.0, 8.0, 3.0, 9.0]] * 3))


def test_harmonic_conductance_is_weighted_by_reach_length() -> None:
    # Guards the harmonic interpolator's conductance 1 / (mean length of the two
    # reaches): between a source through two short reaches (mean 100 m) and one
    # through a short and a long reach (mean 400 m), the nearer source weighs 4:1.
    ds = _chain([100.0, 100.0, 700.0], _ends_observed())
    pred = fit_baseline(ds, "harmonic", train=TRAIN).predict(ds)
    c12, c23 = 1.0 / 100.0, 1.0 / 400.0
    expected = (c12 * 10.0 + c23 * 20.0) / (c12 + c23)
    assert expected == pytest.approx(12.0)
    np.testing.assert_allclose(pred.sel(reach=2).values, expected, rtol=1e-6)


def test_climatology_of_an_unobserved_reach_is_its_segments() -> None:
    # Guards the climatology fallback: a reach without observations of its own takes
    # its segment's climatology (not the pooled one, 8.8 degC here).
    time = pd.date_range("2000-01-01", "2000-12-31")  # every day of the year
    n = len(time)
    reach = np.full((4, n), np.nan)
    reach[0], reach[1], reach[2] = 4.0, 6.0, 14.0  # reach 22 never observed
    seg = np.stack([np.full(n, 5.0), np.full(n, 15.0)])
    ds = xr.Dataset(
        {"seg_to": ("seg", [2, 0]), "seg_length": ("seg", [300.0, 300.0], M),
         "reach_to": ("reach", [12, 21, 22, 0]), "reach_length": ("reach", [150.0] * 4, M),
         "reach_seg": ("reach", [1, 1, 2, 2]),
         "reach_temp": (("reach", "time"), reach, C), "seg_temp": (("seg", "time"), seg, C)},
        coords={"seg": [1, 2], "reach": [11, 12, 21, 22], "time": time})
    model = fit_baseline(ds, "climatology", train=("2000-01-01", "2000-12-31"))
    pred = model.predict(ds)
    np.testing.assert_allclose(pred.sel(reach=22).values, 15.0, rtol=1e-6)
    np.testing.assert_allclose(pred.sel(reach=21).values, 14.0, rtol=1e-6)
    np.testing.assert_allclose(pred.sel(reach=11).values, 4.0, rtol=1e-6)
