"""Metric conventions and graph options/fingerprints, pinned value by value."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import xarray as xr

from xmsgl.graph import build_graphs
from xmsgl.metrics import hot_mask, skill

M = {"units": "m"}


def _series(values: list[float]) -> xr.DataArray:
    return xr.DataArray(np.array(values, dtype=float), dims="time", attrs={"units": "degC"})


def test_kge_of_a_constant_prediction_uses_r_0() -> None:
    # Guards the convention that a prediction without spread has r = 0 (KGE finite
    # and poor) rather than NaN.
    obs = [2.0, 2.0, 4.0, 4.0]
    got = float(skill(_series([5.0] * 4), _series(obs)).kge)
    r, alpha, beta = 0.0, 0.0, 5.0 / np.mean(obs)
    expected = 1.0 - math.sqrt((r - 1) ** 2 + (alpha - 1) ** 2 + (beta - 1) ** 2)
    assert math.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-12)


def test_nse_and_kge_skip_pairs_with_a_nan_prediction() -> None:
    # Guards the centered sums using valid pairs only: an extra pair whose prediction
    # is NaN (its observation far off the others) changes nothing.
    base = skill(_series([1.0, 2.0, 3.0, 4.0]), _series([2.0, 2.0, 4.0, 4.0]))
    more = skill(_series([1.0, 2.0, 3.0, 4.0, np.nan]), _series([2.0, 2.0, 4.0, 4.0, 30.0]))
    for name in ("rmse", "mae", "bias", "nse", "kge", "n"):
        assert float(more[name]) == float(base[name]), name
    assert float(base.nse) == 0.5


def test_hot_mask_counts_ties_at_the_threshold() -> None:
    # Guards "at or above the quantile": days equal to the threshold are hot.
    obs = xr.DataArray([[1.0, 2.0, 5.0, 5.0, 5.0]], dims=("reach", "time"))
    hot = hot_mask(obs, quantile=0.5)  # median 5.0
    assert hot.values.tolist() == [[False, False, True, True, True]]
    pooled = hot_mask(xr.DataArray(np.arange(20.0), dims="time"), per=None, quantile=1.0)
    assert int(pooled.sum()) == 1 and bool(pooled[-1])


def _line(reach_seg: list[int], reach_to: list[int] | None = None,
          seg_to: list[int] | None = None) -> xr.Dataset:
    """Two segments, four reaches, ids 11, 12, 21, 22."""
    return xr.Dataset(
        {"seg_to": ("seg", seg_to or [2, 0]), "seg_length": ("seg", [300.0, 300.0], M),
         "reach_to": ("reach", reach_to or [12, 21, 22, 0]),
         "reach_length": ("reach", [150.0] * 4, M),
         "reach_seg": ("reach", reach_seg)},
        coords={"seg": [1, 2], "reach": [11, 12, 21, 22]})


def test_fingerprint_tracks_reach_seg() -> None:
    # Guards reach_seg being part of the fingerprint: the same pointers and lengths
    # with a reach moved to the other segment are another network.
    a = build_graphs(_line([1, 1, 2, 2]))
    b = build_graphs(_line([1, 1, 1, 2]))
    assert (a.cross != b.cross).nnz > 0  # really another cross graph
    assert a.fingerprint != b.fingerprint
    differ = {k for k in a.fingerprint_parts if a.fingerprint_parts[k] != b.fingerprint_parts[k]}
    assert differ == {"reach_seg"}


def test_fingerprint_parts_track_seg_to() -> None:
    # Guards seg_to being part of the fingerprint. The convention fixes seg_to by
    # reach_to and reach_seg (each segment's outlet reach points into the segment
    # downstream), so seg_to cannot change alone: here the segments swap order,
    # with reach_to following, and the seg_to part must tell it.
    a = build_graphs(_line([1, 1, 2, 2]))
    b = build_graphs(_line([1, 1, 2, 2], reach_to=[12, 0, 22, 11], seg_to=[0, 1]))
    assert a.fingerprint != b.fingerprint
    assert "seg_to" in a.fingerprint_parts
    assert a.fingerprint_parts["seg_to"] != b.fingerprint_parts["seg_to"]
    assert a.fingerprint_parts["reach_seg"] == b.fingerprint_parts["reach_seg"]


def test_fingerprint_is_a_sha256_hex_digest() -> None:
    # Guards the fingerprint's format (tests/test_graph.py only checks it parses as hex):
    # 64 lowercase hex digits, parts 16, stable for the same network.
    g = build_graphs(_line([1, 1, 2, 2]))
    assert re.fullmatch(r"[0-9a-f]{64}", g.fingerprint)
    assert set(g.fingerprint_parts) == {"seg", "seg_to", "seg_length", "reach", "reach_to",
                                        "reach_seg", "reach_length", "options"}
    assert all(re.fullmatch(r"[0-9a-f]{16}", v) for v in g.fingerprint_parts.values())
    assert build_graphs(_line([1, 1, 2, 2])).fingerprint == g.fingerprint


def test_max_distance_keeps_an_edge_at_exactly_that_distance() -> None:
    # Guards the cut being inclusive: pairs at exactly max_distance stay.
    ds = xr.Dataset(
        {"seg_to": ("seg", [0, 1]), "seg_length": ("seg", [300.0, 200.0], M),
         "reach_to": ("reach", [12, 0, 21, 11]),
         "reach_length": ("reach", [100.0, 200.0, 150.0, 50.0], M),
         "reach_seg": ("reach", [1, 1, 2, 2])},
        coords={"seg": [1, 2], "reach": [11, 12, 22, 21]})
    g = build_graphs(ds, max_distance=200.0)
    d = g.reach_distance.toarray()
    # 11 -> 12 is 200 m (kept, both ways); 22 -> 12 is 350 m and 21 -> 12 300 m (cut).
    assert d[0, 1] == 200.0 and d[1, 0] == -200.0
    assert g.fine[0, 1] > 0 and g.fine[1, 0] > 0
    assert d[2, 1] == 0.0 and d[3, 1] == 0.0 and g.fine[2, 1] == 0.0
    # Segment 2 -> 1 is 300 m: a cut at 300 keeps it, one just below does not.
    assert build_graphs(ds, max_distance=300.0).coarse[1, 0] > 0
    assert build_graphs(ds, max_distance=299.0).coarse[1, 0] == 0
