"""xmsgl.coverage: nodes whose static inputs lie beyond those of the observed nodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

torch = pytest.importorskip("torch")

from tests.conftest import FAST_FIT  # noqa: E402
from xmsgl.exceptions import ParameterError, SchemaError  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _observed(ds: xr.Dataset, dim: str, model) -> np.ndarray:
    y = ds[f"{dim}_temp"].transpose("time", dim).values
    days = np.zeros(ds.sizes["time"], dtype=bool)
    for a, b in model.config["periods"]["train"]:
        days |= (ds["time"].values >= np.datetime64(a)) & (ds["time"].values <= np.datetime64(b))
    return np.isfinite(y[days]).any(axis=0)


def test_ranges_are_those_of_the_observed_nodes(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    # The fit records, for every static input, the range over the nodes with a
    # training observation at its scale, recomputed here from the dataset; the saved
    # model keeps it.
    spec = half_year_msgl.features
    statics = [n for n in spec.seg_vars + spec.reach_vars if spec.static[n]]
    assert statics and sorted(spec.observed_range) == sorted(statics)
    for name in statics:
        dim = "seg" if name.startswith("seg_") else "reach"
        seen = _observed(half_year_basin, dim, half_year_msgl)
        assert 0 < seen.sum() < half_year_basin.sizes[dim] or dim == "seg"
        vals = half_year_basin[name].values[seen]
        assert spec.observed_range[name] == [float(vals.min()), float(vals.max())]


def test_coverage_flags_what_lies_beyond(half_year_basin: xr.Dataset, half_year_msgl, tmp_path: Path) -> None:
    model = half_year_msgl
    spec = model.features
    lo, hi = spec.observed_range["reach_slope"]
    std = spec.std["reach_slope"]
    ds = half_year_basin.copy()
    slope = ds["reach_slope"].values.copy()
    # Reach 0 well beyond (3 sd above the largest observed slope), reach 1 just
    # inside the margin (0.5 sd above), every other reach inside the range.
    slope[:] = np.clip(slope, lo, hi)
    slope[0], slope[1] = hi + 3.0 * std, hi + 0.5 * std
    ds["reach_slope"] = ("reach", slope, ds["reach_slope"].attrs)
    for name in [n for n in spec.reach_vars if spec.static[n] and n != "reach_slope"]:
        a, b = spec.observed_range[name]
        ds[name] = ("reach", np.clip(ds[name].values, a, b), ds[name].attrs)
    cov = ds.msgl.coverage(model)
    flag = cov["reach_beyond_observed"].values
    assert flag[0] and not flag[1:].any()
    np.testing.assert_allclose(cov["reach_beyond_sd"].values[:2], [3.0, 0.5], rtol=1e-5)
    assert cov["reach_beyond_variable"].values[0] == "reach_slope"
    assert cov["reach_beyond_variable"].values[2] == ""
    np.testing.assert_array_equal(cov["reach"].values, ds["reach"].values)
    # A smaller margin takes reach 1 in too; a saved model gives the same.
    assert ds.msgl.coverage(model, margin=0.25)["reach_beyond_observed"].values[:2].all()
    model.save(tmp_path / "m")
    xr.testing.assert_equal(ds.msgl.coverage(tmp_path / "m").drop_attrs(), cov.drop_attrs())
    # Segments: the reaches of a segment beyond are flagged as such.
    seg_cov = cov["seg_beyond_observed"].values
    seg_of = {int(s): i for i, s in enumerate(ds["seg"].values)}
    want = np.array([seg_cov[seg_of[int(s)]] for s in ds["reach_seg"].values])
    np.testing.assert_array_equal(cov["reach_segment_beyond_observed"].values, want)


def test_coverage_refuses(half_year_basin: xr.Dataset, half_year_msgl) -> None:
    import xmsgl

    with pytest.raises(ParameterError, match="margin"):
        half_year_basin.msgl.coverage(half_year_msgl, margin=-1)
    with pytest.raises(SchemaError, match="reach_slope"):
        half_year_basin.drop_vars("reach_slope").msgl.coverage(half_year_msgl)
    baseline = xmsgl.fit(half_year_basin, "climatology")
    with pytest.raises(ParameterError, match="baseline"):
        half_year_basin.msgl.coverage(baseline)
    old = xmsgl.Downscaler.__new__(xmsgl.Downscaler)
    old.__dict__.update(half_year_msgl.__dict__)
    old.config = {**half_year_msgl.config,
                  "variables": {k: v for k, v in half_year_msgl.config["variables"].items()
                                if k != "observed_range"}}
    with pytest.raises(ParameterError, match="fit it again"):
        half_year_basin.msgl.coverage(old)


def test_fine_only_reads_reaches_only(half_year_basin: xr.Dataset) -> None:
    import xmsgl

    model = xmsgl.fit(half_year_basin, "fine-only", seed=0, **FAST_FIT)
    cov = half_year_basin.msgl.coverage(model)
    assert set(cov.data_vars) == {"reach_beyond_observed", "reach_beyond_sd", "reach_beyond_variable"}
    assert all(n.startswith("reach_") for n in model.features.observed_range)
