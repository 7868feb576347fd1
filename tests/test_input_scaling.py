"""How inputs are standardized: one scaler per driver shared by both scales, or one per variable."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.conftest import FAST_FIT, as_saved_before_digests

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from xmsgl.convention import REACH, SEG, input_variables  # noqa: E402
from xmsgl.exceptions import DataError, ParameterError, XmsglWarning  # noqa: E402
from xmsgl.model import Downscaler, fit, load  # noqa: E402
from xmsgl.train import feature_spec, fit_scalers  # noqa: E402


@pytest.fixture(scope="module")
def basin(half_year_basin: xr.Dataset) -> xr.Dataset:
    return half_year_basin


def _spec(ds: xr.Dataset, scaling: str, scales: tuple[str, ...] = (SEG, REACH),
          train_days: int = 100):
    spec = feature_spec(ds, input_variables(ds))
    mask = np.zeros(ds.sizes["time"], bool)
    mask[:train_days] = True
    fit_scalers(ds, spec, mask, scaling, scales)
    return spec, mask


def _values(ds: xr.Dataset, name: str, mask: np.ndarray) -> np.ndarray:
    da = ds[name]
    if "time" in da.dims:
        da = da.isel(time=np.flatnonzero(mask))
    return np.asarray(da.values, np.float64).ravel()


def test_pooled_drivers_share_one_scaler_over_both_scales(basin: xr.Dataset) -> None:
    spec, mask = _spec(basin, "pooled")
    pairs = list(zip(spec.seg_vars[:spec.n_common], spec.reach_vars[:spec.n_common]))
    assert ("seg_air_temp", "reach_air_temp") in pairs and ("seg_shade", "reach_shade") in pairs
    for seg_name, reach_name in pairs:
        both = np.concatenate([_values(basin, seg_name, mask), _values(basin, reach_name, mask)])
        # Count-weighted: the reaches, more numerous, weigh more than the segments.
        assert spec.mean[seg_name] == spec.mean[reach_name] == pytest.approx(both.mean(), rel=1e-12)
        assert spec.std[seg_name] == spec.std[reach_name] == pytest.approx(both.std(), rel=1e-12)
    # The same value is the same score at both scales.
    assert ((1.5 - spec.mean["seg_shade"]) / spec.std["seg_shade"]
            == (1.5 - spec.mean["reach_shade"]) / spec.std["reach_shade"])
    # Variables found at one scale keep their own scaler.
    for name in spec.seg_vars[spec.n_common:] + spec.reach_vars[spec.n_common:]:
        vals = _values(basin, name, mask)
        assert spec.mean[name] == pytest.approx(vals.mean(), rel=1e-12)
    # Only training days are read: a change after them changes nothing.
    later = basin.copy(deep=True)
    later["seg_air_temp"][dict(time=slice(100, None))] += 50.0
    assert _spec(later, "pooled")[0].mean == spec.mean


def test_per_scale_gives_each_variable_its_own_scaler(basin: xr.Dataset) -> None:
    spec, mask = _spec(basin, "per-scale")
    for name in spec.seg_vars + spec.reach_vars:
        vals = _values(basin, name, mask)
        assert spec.mean[name] == pytest.approx(vals.mean(), rel=1e-12)
        assert spec.std[name] == pytest.approx(vals.std(), rel=1e-12)
    assert spec.std["seg_shade"] != pytest.approx(spec.std["reach_shade"], rel=1e-3)


@pytest.mark.parametrize("scales", [(REACH,), (SEG,)])
def test_one_scale_pools_nothing(basin: xr.Dataset, scales) -> None:
    # fine-only and remap train on one scale: pooling is per-scale for them.
    assert _spec(basin, "pooled", scales)[0].std == _spec(basin, "per-scale")[0].std


def test_a_constant_driver_gets_a_unit_scale(basin: xr.Dataset) -> None:
    flat = basin.assign(seg_shade=basin.seg_shade * 0 + 0.4, reach_shade=basin.reach_shade * 0 + 0.4)
    with pytest.warns(XmsglWarning, match=r"\['seg_shade', 'reach_shade'\] take one value"):
        spec, _ = _spec(flat, "pooled")
    assert spec.std["seg_shade"] == spec.std["reach_shade"] == 1.0
    assert spec.mean["reach_shade"] == pytest.approx(0.4)


def test_drivers_in_different_units_are_scaled_apart(basin: xr.Dataset) -> None:
    # Pooling km2 with m2 would give one of them scores near a constant.
    odd = basin.copy()
    odd["reach_area"] = basin.reach_area * 1e6
    odd["reach_area"].attrs = {**basin.reach_area.attrs, "units": "m2"}
    with pytest.warns(XmsglWarning, match=r"'seg_area' \(km2\) and 'reach_area' \(m2\)"):
        spec, mask = _spec(odd, "pooled")
    for name in ("seg_area", "reach_area"):
        assert spec.mean[name] == pytest.approx(_values(odd, name, mask).mean(), rel=1e-12)
    assert spec.std["seg_shade"] == spec.std["reach_shade"]
    # The same units spelled two ways pool.
    spelled = basin.copy()
    spelled["reach_area"] = basin.reach_area.assign_attrs(units="km^2")
    with warnings.catch_warnings():
        warnings.simplefilter("error", XmsglWarning)
        pooled = _spec(spelled, "pooled")[0].std
    assert pooled["reach_area"] == pooled["seg_area"] == _spec(basin, "pooled")[0].std["reach_area"]


def test_unknown_scaling_is_refused(basin: xr.Dataset) -> None:
    with pytest.raises(ParameterError, match="input_scaling='global'"):
        _spec(basin, "global")


def test_fit_records_and_applies_the_scaling(basin: xr.Dataset, half_year_msgl: Downscaler) -> None:
    per = half_year_msgl  # the default
    assert per.config["hyperparameters"]["input_scaling"] == "per-scale"
    assert per.features.std["seg_shade"] != per.features.std["reach_shade"]
    pooled = fit(basin, method="msgl", seed=0, input_scaling="pooled", **FAST_FIT)
    assert pooled.config["hyperparameters"]["input_scaling"] == "pooled"
    assert pooled.features.std["seg_shade"] == pooled.features.std["reach_shade"]
    # The scalers reach the network: the two models downscale differently.
    a = basin.msgl.downscale(pooled).values
    b = basin.msgl.downscale(per).values
    assert not np.allclose(a, b)
    # One-scale methods record nothing and scale their own inputs.
    fine = fit(basin, method="fine-only", seed=0, **FAST_FIT)
    assert "input_scaling" not in fine.config["hyperparameters"]
    assert fine.features.std["reach_shade"] == per.features.std["reach_shade"]


@pytest.mark.parametrize("kwargs", [{"input_scaling": "global"}, {"input_scaling": None}])
def test_fit_refuses_an_unknown_scaling(basin: xr.Dataset, kwargs) -> None:
    with pytest.raises(ParameterError, match="input_scaling="):
        fit(basin, method="msgl", **{**FAST_FIT, **kwargs})


@pytest.mark.parametrize("method", ["fine-only", "remap", "climatology"])
def test_one_scale_methods_refuse_a_scaling(basin: xr.Dataset, method) -> None:
    with pytest.raises(ParameterError, match="input_scaling"):
        fit(basin, method=method, input_scaling="pooled",
            **(FAST_FIT if method != "climatology" else {}))


def test_saved_scaling_is_checked_at_load(half_year_msgl: Downscaler, basin: xr.Dataset,
                                          tmp_path: Path) -> None:
    path = half_year_msgl.save(tmp_path / "m.xmsgl")
    cfg = json.loads((path / "config.json").read_text())
    # A model saved before the option was recorded loads as it was: its scalers are saved.
    cfg["hyperparameters"].pop("input_scaling")
    (path / "config.json").write_text(json.dumps(as_saved_before_digests(cfg)))
    xr.testing.assert_equal(basin.msgl.downscale(load(path)).drop_attrs(),
                            basin.msgl.downscale(half_year_msgl).drop_attrs())
    cfg["hyperparameters"]["input_scaling"] = "global"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DataError, match="input_scaling"):
        load(path)
