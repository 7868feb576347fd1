"""Tests of xmsgl.graph: distances, weights, cross-scale graph, ids, torch views."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, devices
from tests.strategies import random_river_dataset, river_datasets
from xmsgl.exceptions import (
    ParameterError,
    SchemaError,
    TopologyError,
    UnitConversionWarning,
    UnitsError,
    XmsglError,
)
from xmsgl.graph import RiverGraphs, build_graphs, flow_distances

M = {"units": "m"}
PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ----------------------------------------------------------------- hand-made networks


def chain() -> xr.Dataset:
    """Segments 1 -> 2 -> 3 (lengths 10, 20, 30 m), one reach each."""
    return xr.Dataset(
        {
            "seg_to": ("seg", [2, 3, 0]),
            "seg_length": ("seg", [10.0, 20.0, 30.0], M),
            "reach_to": ("reach", [12, 13, 0]),
            "reach_length": ("reach", [10.0, 20.0, 30.0], M),
            "reach_seg": ("reach", [1, 2, 3]),
        },
        coords={"seg": [1, 2, 3], "reach": [11, 12, 13]},
    )


def confluence() -> xr.Dataset:
    """Segments A=100 and B=200 join into C=300 (the outlet).

    Reaches (id: segment, downstream id, length): 1: A, 2, 100 m; 2: A, 4, 200 m
    (outlet of A); 3: B, 4, 300 m (outlet of B); 4: C, 5, 400 m; 5: C, outlet,
    500 m (outlet of C). Stored in a scrambled order on purpose.
    """
    reach = [4, 1, 5, 3, 2]
    to = {1: 2, 2: 4, 3: 4, 4: 5, 5: 0}
    length = {1: 100.0, 2: 200.0, 3: 300.0, 4: 400.0, 5: 500.0}
    seg_of = {1: 100, 2: 100, 3: 200, 4: 300, 5: 300}
    seg = [300, 100, 200]
    seg_to = {100: 300, 200: 300, 300: 0}
    seg_length = {100: 300.0, 200: 300.0, 300: 900.0}
    return xr.Dataset(
        {
            "seg_to": ("seg", [seg_to[s] for s in seg]),
            "seg_length": ("seg", [seg_length[s] for s in seg], M),
            "reach_to": ("reach", [to[r] for r in reach]),
            "reach_length": ("reach", [length[r] for r in reach], M),
            "reach_seg": ("reach", [seg_of[r] for r in reach]),
        },
        coords={"seg": seg, "reach": reach},
    )


def by_id(m: sp.spmatrix, row_ids: np.ndarray, col_ids: np.ndarray) -> dict[tuple[int, int], float]:
    """The stored entries of ``m`` keyed by (row id, column id)."""
    c = sp.coo_matrix(m)
    return {(int(row_ids[i]), int(col_ids[j])): float(v) for i, j, v in zip(c.row, c.col, c.data)}


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def msgl_rows(entries: dict[tuple[int, int], float], self_loops: bool) -> dict[tuple[int, int], float]:
    """The MSGL weighting written out entry by entry (reference for the tests)."""
    vals = [-d for (i, j), d in entries.items() if i != j or not self_loops]
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    a = {}
    for (i, j), d in entries.items():
        if self_loops and i == j:
            a[i, j] = 1.0
        else:
            a[i, j] = sigmoid((-d - mean) / std) if std > 0 else 0.5
    total: dict[int, float] = {}
    for (i, _), w in a.items():
        total[i] = total.get(i, 0.0) + w
    return {k: w / total[k[0]] for k, w in a.items()}


def test_chain_distances_by_hand() -> None:
    g = build_graphs(chain())
    np.testing.assert_array_equal(
        g.seg_distance.toarray(), [[0, 20, 50], [-20, 0, 30], [-50, -30, 0]]
    )
    np.testing.assert_array_equal(g.reach_distance.toarray(), g.seg_distance.toarray())
    assert g.seg_distance.nnz == 9  # the diagonal is stored too


def test_chain_msgl_weights_by_hand() -> None:
    g = build_graphs(chain())
    # Off-diagonal negated distances: -20, -50, -30, 20, 50, 30; mean 0, std sqrt(7600/6).
    std = math.sqrt(7600 / 6)
    a01, a02 = sigmoid(-20 / std), sigmoid(-50 / std)
    row0 = np.array([1.0, a01, a02]) / (1.0 + a01 + a02)
    np.testing.assert_allclose(g.coarse.toarray()[0], row0, rtol=1e-12)
    np.testing.assert_allclose(row0, [0.640968, 0.232733, 0.126298], atol=1e-6)
    a10, a12 = sigmoid(20 / std), sigmoid(-30 / std)
    np.testing.assert_allclose(
        g.coarse.toarray()[1], np.array([a10, 1.0, a12]) / (1.0 + a10 + a12), rtol=1e-12
    )


def test_chain_downstream_and_upstream_only() -> None:
    down = build_graphs(chain(), direction="downstream").coarse.toarray()
    # Entries: -20 (0->1), -50 (0->2), -30 (1->2): mean -100/3, std sqrt(4200/27).
    mean, std = -100 / 3, math.sqrt(4200 / 27)
    a01, a02, a12 = (sigmoid((v - mean) / std) for v in (-20, -50, -30))
    np.testing.assert_allclose(down[0], np.array([1, a01, a02]) / (1 + a01 + a02), rtol=1e-12)
    np.testing.assert_allclose(down[1], np.array([0, 1, a12]) / (1 + a12), rtol=1e-12)
    np.testing.assert_allclose(down[2], [0, 0, 1])
    up = build_graphs(chain(), direction="upstream").coarse.toarray()
    np.testing.assert_allclose(up[0], [1, 0, 0])
    assert np.all(np.triu(up, 1) == 0)


def test_chain_adjacency_by_hand() -> None:
    g = build_graphs(chain(), weighting="adjacency")
    np.testing.assert_allclose(
        g.coarse.toarray(), [[1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3], [0, 1 / 2, 1 / 2]]
    )
    np.testing.assert_allclose(g.cross.toarray(), g.coarse.toarray())
    np.testing.assert_allclose(
        build_graphs(chain(), weighting="adjacency", direction="downstream").coarse.toarray(),
        [[1 / 2, 1 / 2, 0], [0, 1 / 2, 1 / 2], [0, 0, 1]],
    )


def test_confluence_fine_distances_by_hand() -> None:
    ds = confluence()
    g = build_graphs(ds)
    got = by_id(g.reach_distance, g.reach_ids, g.reach_ids)
    down = {(1, 2): 200, (1, 4): 600, (1, 5): 1100, (2, 4): 400, (2, 5): 900,
            (3, 4): 400, (3, 5): 900, (4, 5): 500}
    want = {(r, r): 0.0 for r in range(1, 6)}
    for (i, j), d in down.items():
        want[i, j] = d
        want[j, i] = -d
    assert got == want  # (1, 3), (2, 3) and the like are not connected: no entry


def test_confluence_cross_by_hand() -> None:
    ds = confluence()
    g = build_graphs(ds)
    # Outlet reaches: A=100 -> 2, B=200 -> 3, C=300 -> 5.
    want = {(1, 100): 200, (1, 300): 1100, (2, 100): 0, (2, 300): 900,
            (3, 200): 0, (3, 300): 900, (4, 100): -400, (4, 200): -400, (4, 300): 500,
            (5, 100): -900, (5, 200): -900, (5, 300): 0}
    assert by_id(g.cross_distance, g.reach_ids, g.seg_ids) == want
    weights = by_id(g.cross, g.reach_ids, g.seg_ids)
    ref = msgl_rows({k: float(v) for k, v in want.items()}, self_loops=False)
    assert set(weights) == set(ref)
    for k in ref:
        assert weights[k] == pytest.approx(ref[k], rel=1e-12)
    # Reaches 2, 3 and 5 sit at their own segment's outlet (distance 0): positive weight.
    for r, s in ((2, 100), (3, 200), (5, 300)):
        assert weights[r, s] > 0
    # Segment distances: A and B each 900 m above C's outlet.
    assert by_id(g.seg_distance, g.seg_ids, g.seg_ids)[100, 300] == 900


def test_confluence_fine_weights_match_reference() -> None:
    g = build_graphs(confluence())
    dist = by_id(g.reach_distance, g.reach_ids, g.reach_ids)
    ref = msgl_rows(dist, self_loops=True)
    got = by_id(g.fine, g.reach_ids, g.reach_ids)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-12)


def test_confluence_adjacency_cross() -> None:
    g = build_graphs(confluence(), weighting="adjacency")
    w = by_id(g.cross, g.reach_ids, g.seg_ids)
    assert w[1, 100] == pytest.approx(0.5) and w[1, 300] == pytest.approx(0.5)
    assert {s for (r, s) in w if r == 4} == {100, 200, 300}
    assert w[4, 200] == pytest.approx(1 / 3)
    fine = by_id(g.fine, g.reach_ids, g.reach_ids)
    assert {j for (i, j) in fine if i == 4} == {2, 3, 4, 5}
    assert fine[4, 5] == pytest.approx(0.25)
    # Edge distances of the adjacency graphs are the one-hop distances.
    data = g.data
    e = data["reach", "flows", "reach"]
    pairs = {(int(g.reach_ids[t]), int(g.reach_ids[s])): float(d)
             for s, t, d in zip(*e.edge_index.tolist(), e.edge_distance.tolist())}
    assert pairs[4, 5] == 500 and pairs[5, 4] == -500 and pairs[4, 4] == 0


def test_zero_length_is_an_explicit_entry() -> None:
    ds = xr.Dataset(
        {
            "seg_to": ("seg", [0]),
            "seg_length": ("seg", [10.0], M),
            "reach_to": ("reach", [2, 0]),
            "reach_length": ("reach", [10.0, 0.0], M),
            "reach_seg": ("reach", [1, 1]),
        },
        coords={"seg": [1], "reach": [1, 2]},
    )
    g = build_graphs(ds)
    assert g.reach_distance.nnz == 4 and g.reach_distance.count_nonzero() == 0
    # Two entries, both 0: no spread, so sigmoid(0) = 1/2 each.
    np.testing.assert_allclose(g.fine.toarray(), [[2 / 3, 1 / 3], [1 / 3, 2 / 3]])
    assert g.cross_distance.nnz == 2
    np.testing.assert_allclose(g.cross.toarray(), [[1.0], [1.0]])


def test_flow_distances_refuses_what_it_cannot_walk() -> None:
    """The public flow_distances checks its stated preconditions: a cycle used to walk
    forever (or fail with an IndexError under a cut), a negative length gave wrong signs."""
    for to, length, match in (([1, 0, -1], [1.0, 1.0, 1.0], r"cycle \(nodes \[0, 1\]"),
                              ([1, 2, 0], [1.0, 1.0, 1.0], "cycle"),
                              ([1, 2, -1], [5.0, -10.0, 20.0], r"nodes \[1\] have lengths"),
                              ([1, 5, -1], [1.0, 1.0, 1.0], r"nodes \[1\] point to positions"),
                              ([1, -1], [1.0], "1 lengths for 2 nodes")):
        for cut in ({}, {"max_distance": 1.5}):
            with pytest.raises(TopologyError, match=match):
                flow_distances(np.array(to), np.array(length), **cut)
    # A long chain (the doubling must reach its head) and zero lengths are fine.
    n = 1000
    D, _ = flow_distances(np.append(np.arange(1, n), -1), np.zeros(n))
    assert D.nnz == n * n


def test_flow_distances_example_and_flags() -> None:
    D, flags = flow_distances(np.array([1, 2, -1]), np.array([5.0, 10.0, 20.0]))
    np.testing.assert_array_equal(D.toarray(), [[0, 10, 30], [-10, 0, 20], [-30, -20, 0]])
    rows = np.repeat(np.arange(3), np.diff(D.indptr))
    np.testing.assert_array_equal(flags[rows == D.indices], 0)
    np.testing.assert_array_equal(flags[D.indices > rows], 1)
    np.testing.assert_array_equal(flags[D.indices < rows], 2)


def test_cuts() -> None:
    g = build_graphs(chain(), max_hops=1)
    np.testing.assert_array_equal(
        g.seg_distance.toarray(), [[0, 20, 0], [-20, 0, 30], [0, -30, 0]]
    )
    assert g.seg_distance.nnz == 7
    g = build_graphs(chain(), max_distance=25.0)
    assert by_id(g.seg_distance, g.seg_ids, g.seg_ids) == {
        (1, 1): 0, (2, 2): 0, (3, 3): 0, (1, 2): 20, (2, 1): -20
    }
    assert g.options["max_distance"] == 25.0


def test_cut_keeps_own_segment() -> None:
    ds = random_river_dataset(3, 20, reaches_per_seg=(3, 6), window=1)
    g = build_graphs(ds, max_hops=1)
    own = np.asarray(g.cross.multiply(g.parent).sum(axis=1)).ravel()
    assert np.all(own > 0)
    np.testing.assert_allclose(g.cross.sum(axis=1).A1, 1.0)


def test_km_lengths_are_converted() -> None:
    ds = chain()
    ds["seg_length"] = ds["seg_length"] / 1000.0
    ds["seg_length"].attrs["units"] = "km"
    with pytest.warns(UnitConversionWarning, match="seg_length"):
        g = build_graphs(ds)
    np.testing.assert_allclose(g.seg_distance.toarray()[0], [0, 20, 50])
    ds["seg_length"].attrs["units"] = "furlong"
    with pytest.raises(UnitsError, match="furlong"):
        build_graphs(ds)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        # A ParameterError, as every bad argument, and a SchemaError as before.
        ({"weighting": "gaussian"}, ParameterError, r"weighting='gaussian'.*'msgl', 'adjacency'"),
        ({"weighting": "gaussian"}, SchemaError, r"weighting='gaussian'"),
        ({"direction": "sideways"}, ParameterError, r"direction='sideways'.*'updown'"),
        ({"max_hops": 0}, XmsglError, "max_hops"),
        ({"max_distance": -1.0}, XmsglError, "max_distance"),
        ({"max_distance": "far"}, XmsglError, "max_distance"),
        ({"max_distance": "5000"}, ParameterError, r"max_distance='5000' must be a number.*not a str"),
        ({"max_distance": True}, ParameterError, r"max_distance=True must be a number.*not a bool"),
        ({"max_distance": np.bool_(True)}, ParameterError, "max_distance"),
        ({"max_distance": float("nan")}, ParameterError, "max_distance"),
        ({"max_hops": True}, ParameterError, "max_hops=True must be an integer"),
        ({"max_hops": 2.5}, ParameterError, "max_hops=2.5 must be an integer"),
        ({"max_hops": 2.0}, ParameterError, "max_hops=2.0 must be an integer"),
        ({"max_hops": "2"}, ParameterError, "max_hops='2' must be an integer"),
    ],
)
def test_bad_options(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        build_graphs(chain(), **kwargs)


@pytest.mark.parametrize("kwargs", [{"max_distance": "5000"}, {"max_distance": True}, {"max_hops": 2.5}])
def test_flow_distances_refuses_bad_cuts(kwargs: dict) -> None:
    with pytest.raises(ParameterError, match=next(iter(kwargs))):
        flow_distances(np.array([1, 2, -1]), np.array([5.0, 10.0, 20.0]), **kwargs)


def test_cuts_given_as_numpy_scalars_are_stored_as_python_numbers(small_basin: xr.Dataset) -> None:
    g = build_graphs(small_basin, max_distance=np.float32(5000), max_hops=np.int64(3))
    assert g.options["max_distance"] == 5000.0 and type(g.options["max_distance"]) is float
    assert g.options["max_hops"] == 3 and type(g.options["max_hops"]) is int
    assert g.fingerprint == build_graphs(small_basin, max_distance=5000, max_hops=3).fingerprint
    with pytest.raises(ParameterError, match="max_distance='5000'"):
        small_basin.msgl.graphs(max_distance="5000")


def test_repr_and_matrix_names() -> None:
    g = build_graphs(confluence())
    text = repr(g)
    assert "weighting='msgl'" in text and "3 segments" in text and "5 reaches" in text
    assert text.count("1 outlet\n") == 2
    with pytest.raises(SchemaError, match="which='bogus'"):
        g.matrix("bogus")
    assert isinstance(g, RiverGraphs)


# ----------------------------------------------------------------- properties


def reference_distances(to: np.ndarray, length: np.ndarray) -> dict[tuple[int, int], tuple[float, int]]:
    """(i, j) -> (signed distance, 1 if j downstream of i, 2 if upstream, 0 self), by loops."""
    out: dict[tuple[int, int], tuple[float, int]] = {}
    for i in range(to.size):
        out[i, i] = (0.0, 0)
        j, d = to[i], 0.0
        while j >= 0:
            d += length[j]
            out[i, j] = (d, 1)
            out[j, i] = (-d, 2)
            j = to[j]
    return out


@PROPS
@given(river_datasets())
def test_distances_match_loops_and_are_antisymmetric(ds: xr.Dataset) -> None:
    g = build_graphs(ds)
    topo_to = {int(i): int(t) for i, t in zip(ds["reach"].values, ds["reach_to"].values)}
    pos = {int(r): k for k, r in enumerate(g.reach_ids)}
    to = np.array([pos.get(topo_to[int(r)], -1) for r in g.reach_ids])
    ref = reference_distances(to, ds["reach_length"].values.astype(float))
    got = sp.coo_matrix(g.reach_distance)
    assert {(int(i), int(j)) for i, j in zip(got.row, got.col)} == set(ref)
    for i, j, v in zip(got.row, got.col, got.data):
        assert v == pytest.approx(ref[int(i), int(j)][0], abs=1e-6)
    for D in (g.seg_distance, g.reach_distance):
        assert (D != D.T).nnz == 0 or abs(D + D.T).max() < 1e-9
        # Same structure both ways (explicit zeros included).
        S = D.copy()
        S.data[:] = 1.0
        assert (S - S.T).count_nonzero() == 0


@PROPS
@given(river_datasets(), st.sampled_from(["msgl", "adjacency"]),
       st.sampled_from(["updown", "downstream", "upstream"]))
def test_weights_are_row_stochastic(ds: xr.Dataset, weighting: str, direction: str) -> None:
    g = build_graphs(ds, weighting=weighting, direction=direction)
    for m in (g.coarse, g.fine, g.cross):
        assert np.all(np.isfinite(m.data)) and np.all(m.data > 0)
        np.testing.assert_allclose(m.sum(axis=1).A1, 1.0, rtol=1e-12)
    # Each node keeps its self-loop; each reach a positive weight to its own segment.
    assert np.all(g.coarse.diagonal() > 0) and np.all(g.fine.diagonal() > 0)
    assert np.all(np.asarray(g.cross.multiply(g.parent).sum(axis=1)).ravel() > 0)
    assert g.cross.getnnz(axis=1).min() >= 1
    np.testing.assert_array_equal(g.parent.sum(axis=1).A1, 1.0)


@PROPS
@given(river_datasets(), st.sampled_from(["downstream", "upstream"]))
def test_direction_keeps_one_side(ds: xr.Dataset, direction: str) -> None:
    g = build_graphs(ds, direction=direction)
    D = sp.coo_matrix(g.reach_distance)
    ref = reference_distances(
        np.array([{int(r): k for k, r in enumerate(g.reach_ids)}.get(int(t), -1)
                  for t in ds["reach_to"].values]),
        ds["reach_length"].values.astype(float),
    )
    W = g.fine.tocsr()
    wanted = 1 if direction == "downstream" else 2
    for i, j in zip(D.row, D.col):
        side = ref[int(i), int(j)][1]
        assert (W[i, j] > 0) == (side in (0, wanted))


@PROPS
@given(river_datasets())
def test_components_are_outlets(ds: xr.Dataset) -> None:
    g = build_graphs(ds)
    assert g.n_outlets_seg == int((ds["seg_to"].values == 0).sum())
    assert g.n_outlets_reach == int((ds["reach_to"].values == 0).sum())
    assert g.n_outlets_seg == g.n_outlets_reach
    # A reach's component is its segment's component (through the outlets).
    seg_comp_outlet = g.seg_ids[g.component_seg]
    reach_comp_outlet_seg = ds["reach_seg"].values[g.component_reach]
    seg_of_reach = g.parent.indices
    np.testing.assert_array_equal(reach_comp_outlet_seg, seg_comp_outlet[seg_of_reach])
    # Connected pairs share a component.
    D = sp.coo_matrix(g.reach_distance)
    np.testing.assert_array_equal(g.component_reach[D.row], g.component_reach[D.col])


def permuted(ds: xr.Dataset, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return ds.isel(seg=rng.permutation(ds.sizes["seg"]), reach=rng.permutation(ds.sizes["reach"]))


@PROPS
@given(river_datasets(), st.integers(0, 1000), st.sampled_from(["msgl", "adjacency"]))
def test_shuffled_order_gives_the_same_graph(ds: xr.Dataset, seed: int, weighting: str) -> None:
    a = build_graphs(ds, weighting=weighting)
    b = build_graphs(permuted(ds, seed), weighting=weighting)
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(b.seg_ids, permuted(ds, seed)["seg"].values)
    for name, rows, cols in (
        ("coarse", "seg_ids", "seg_ids"), ("fine", "reach_ids", "reach_ids"),
        ("cross", "reach_ids", "seg_ids"), ("parent", "reach_ids", "seg_ids"),
        ("seg_distance", "seg_ids", "seg_ids"), ("reach_distance", "reach_ids", "reach_ids"),
        ("cross_distance", "reach_ids", "seg_ids"),
    ):
        ea = by_id(getattr(a, name), getattr(a, rows), getattr(a, cols))
        eb = by_id(getattr(b, name), getattr(b, rows), getattr(b, cols))
        assert ea.keys() == eb.keys(), name
        for k in ea:
            assert ea[k] == pytest.approx(eb[k], rel=1e-9, abs=1e-12), (name, k)


def test_fingerprint_tracks_topology_and_options() -> None:
    ds = random_river_dataset(5, 8)
    base = build_graphs(ds).fingerprint
    assert len(base) == 64 and int(base, 16) >= 0
    assert build_graphs(ds, direction="downstream").fingerprint != base
    assert build_graphs(ds, max_hops=3).fingerprint != base
    longer = ds.copy(deep=True)
    longer["reach_length"][0] = longer["reach_length"][0] + 1.0
    assert build_graphs(longer).fingerprint != base
    # Below the 0.01 m rounding the fingerprint does not move.
    tiny = ds.copy(deep=True)
    tiny["reach_length"][0] = tiny["reach_length"][0] + 1e-6
    assert build_graphs(tiny).fingerprint == base


# ----------------------------------------------------------------- torch views


def test_torch_is_imported_only_on_demand() -> None:
    script = textwrap.dedent(
        """
        import sys
        import xarray as xr
        import xmsgl
        m = {"units": "m"}
        ds = xr.Dataset(
            {"seg_to": ("seg", [0]), "seg_length": ("seg", [1.0], m),
             "reach_to": ("reach", [0]), "reach_length": ("reach", [1.0], m),
             "reach_seg": ("reach", [1])},
            coords={"seg": [1], "reach": [1]})
        g = ds.msgl.graphs()
        repr(g)
        assert "torch" not in sys.modules, "torch imported by building graphs"
        g.data
        assert "torch" in sys.modules
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("which", ["coarse", "fine", "cross", "parent"])
@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_torch_sparse_matmul(device: str, which: str, layout: str) -> None:
    torch = pytest.importorskip("torch")
    g = build_graphs(random_river_dataset(7, 15, n_outlets=2))
    m = g.matrix(which)
    A = g.torch_sparse(which, device=device, layout=layout)
    assert A.shape == m.shape and A.dtype == torch.float32
    X = torch.randn(m.shape[1], 4, dtype=torch.float32)
    want = m @ X.numpy().astype(np.float64)
    got = (A @ X.to(device)).cpu().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Batched states (B, N, H), as the docstring shows.
    B, N, H = 3, m.shape[1], 2
    Xb = torch.randn(B, N, H)
    out = (A @ Xb.to(device).transpose(0, 1).reshape(N, -1)).reshape(-1, B, H).transpose(0, 1)
    ref = np.stack([m @ Xb[b].numpy().astype(np.float64) for b in range(B)])
    np.testing.assert_allclose(out.cpu().numpy(), ref, rtol=1e-5, atol=1e-6)


def test_torch_sparse_gradient_and_dtype() -> None:
    torch = pytest.importorskip("torch")
    g = build_graphs(confluence())
    A = g.torch_sparse("fine", dtype=torch.float64)
    assert A.dtype == torch.float64
    X = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    (A @ X).sum().backward()
    assert X.grad is not None
    np.testing.assert_allclose(X.grad.numpy(), np.repeat(g.fine.sum(axis=0).A1[:, None], 3, 1))
    with pytest.raises(SchemaError, match="layout"):
        g.torch_sparse("fine", layout="dense")


def test_heterodata_where_torch_deprecates_the_script_torch_geometric_calls() -> None:
    """torch deprecates torch.jit.script, which torch_geometric calls while it is
    imported (a DeprecationWarning in torch 2.13, a FutureWarning, shown to everyone,
    from 2.14): ``RiverGraphs.data`` stays usable where warnings are errors, and prints
    nothing of it. Run in a fresh interpreter with torch.jit.script made to warn as
    torch 2.14 does, before torch_geometric loads; other warnings stay errors."""
    pytest.importorskip("torch_geometric")
    script = textwrap.dedent(
        """
        import functools, sys, warnings
        import torch

        assert "torch_geometric" not in sys.modules
        original = torch.jit.script
        calls = []

        @functools.wraps(original)
        def script(*args, **kwargs):
            calls.append(1)
            warnings.warn("`torch.jit.script` is deprecated. Please switch to `torch.compile` "
                          "or `torch.export`.", FutureWarning, stacklevel=2)
            return original(*args, **kwargs)

        torch.jit.script = script
        from tests.test_graph import confluence
        from xmsgl.graph import build_graphs

        warnings.simplefilter("error")
        data = build_graphs(confluence()).data
        assert calls, "torch_geometric no longer calls torch.jit.script when imported"
        assert data["reach"].num_nodes == 5
        try:
            warnings.warn("`torch.jit.script` is deprecated elsewhere", FutureWarning)
        except FutureWarning:
            print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "FutureWarning" not in proc.stderr


def test_heterodata() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("torch_geometric")
    g = build_graphs(confluence())
    data = g.data
    assert data is g.data  # built once
    assert data["seg"].node_id.tolist() == [300, 100, 200]
    assert data["seg"].node_id.dtype == torch.int64
    assert data["reach"].num_nodes == 5 and data["seg"].num_nodes == 3
    assert set(data.edge_types) == {
        ("seg", "flows", "seg"), ("reach", "flows", "reach"),
        ("seg", "informs", "reach"), ("reach", "in", "seg"),
    }
    for key, m in ((("seg", "flows", "seg"), g.coarse), (("reach", "flows", "reach"), g.fine),
                   (("seg", "informs", "reach"), g.cross)):
        e = data[key]
        assert e.edge_weight.dtype == torch.float32
        src, dst = e.edge_index
        np.testing.assert_allclose(
            e.edge_weight.numpy(), np.asarray(m[dst.numpy().copy(), src.numpy().copy()]).ravel(), rtol=1e-6
        )
        # Aggregating weight * x[source] at each target is W @ x.
        x = torch.randn(m.shape[1], 2)
        agg = torch.zeros(m.shape[0], 2).index_add_(0, dst, e.edge_weight[:, None] * x[src])
        np.testing.assert_allclose(agg.numpy(), m @ x.numpy(), rtol=1e-5, atol=1e-6)
    cross = data["seg", "informs", "reach"]
    # Row 0 holds segments, row 1 reaches; the matching cross distance is stored.
    pairs = {(int(g.seg_ids[s]), int(g.reach_ids[r])): float(d)
             for s, r, d in zip(*cross.edge_index.tolist(), cross.edge_distance.tolist())}
    assert pairs[300, 1] == 1100 and pairs[100, 4] == -400
    parent = data["reach", "in", "seg"].edge_index
    assert [(int(g.reach_ids[r]), int(g.seg_ids[s])) for r, s in parent.T.tolist()] == [
        (4, 300), (1, 100), (5, 300), (3, 200), (2, 100)
    ]


def test_synthetic_basin(small_basin: xr.Dataset) -> None:
    g = small_basin.msgl.graphs()
    assert g.n_outlets_seg == int((small_basin["seg_to"].values == 0).sum())
    for m in (g.coarse, g.fine, g.cross):
        np.testing.assert_allclose(m.sum(axis=1).A1, 1.0, rtol=1e-12)
    assert np.all(np.asarray(g.cross.multiply(g.parent).sum(axis=1)).ravel() > 0)
    if "seg_outlet_reach" in small_basin:
        # The generator's own record of outlet reaches: distance 0 to their segment.
        outlet = {int(s): int(r) for s, r in zip(small_basin["seg"].values,
                                                 small_basin["seg_outlet_reach"].values)}
        dist = by_id(g.cross_distance, g.reach_ids, g.seg_ids)
        assert all(dist[r, s] == 0 for s, r in outlet.items())
    shuffled = build_graphs(permuted(small_basin, 0))
    assert shuffled.fingerprint == g.fingerprint


def test_accessor_forwards() -> None:
    import xmsgl  # noqa: F401  (registers ds.msgl)

    ds = confluence()
    assert ds.msgl.graphs(weighting="adjacency").fingerprint == build_graphs(
        ds, weighting="adjacency"
    ).fingerprint


@pytest.mark.parametrize("options", [
    {}, {"direction": "downstream", "max_hops": 3}, {"direction": "upstream", "max_distance": 4000.0},
    {"weighting": "adjacency"},
])
def test_weighted_build_weighs_with_the_given_statistics(options: dict) -> None:
    # Another network weighed with a model's statistics in one pass: the network's own
    # structure and distances, each standardized edge weighed by the formula with the
    # given mean and standard deviation (self loops 1), rows normalized.
    from scipy.special import expit

    from xmsgl.datasets import synthetic_basin
    from xmsgl.graph import _MIN_WEIGHT, build_graphs_weighted, weight_stats

    trained = synthetic_basin(n_segments=30, start="2001-01-01", end="2001-01-05", seed=3)
    other = synthetic_basin(n_segments=12, start="2001-01-01", end="2001-01-05", seed=4)
    stats = weight_stats(build_graphs(trained, **options))
    own = build_graphs(other, **options)
    want = {}
    for which in ("coarse", "fine", "cross"):
        m = own.matrix(which)
        if options.get("weighting") == "adjacency":
            want[which] = m.data
            continue
        rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
        entries = np.ones(m.nnz, dtype=bool) if which == "cross" else rows != m.indices
        mean, std = stats[which]
        w = np.ones(m.nnz)
        w[entries] = np.maximum(expit((-own.edge_distance(which)[entries] - mean) / float(std)),
                                _MIN_WEIGHT)
        want[which] = w / np.bincount(rows, weights=w, minlength=m.shape[0])[rows]
    got = build_graphs_weighted(other, stats, **options)
    for which in ("coarse", "fine", "cross"):
        a, b = got.matrix(which), own.matrix(which)
        assert (a.indptr == b.indptr).all() and (a.indices == b.indices).all()
        np.testing.assert_array_equal(a.data, want[which])
        np.testing.assert_array_equal(got.edge_distance(which), own.edge_distance(which))
        if options.get("weighting") != "adjacency":  # the statistics do change the weights
            assert not np.array_equal(a.data, own.matrix(which).data)
    assert got.fingerprint == own.fingerprint
    if options.get("weighting") != "adjacency":
        with pytest.raises(ParameterError, match=r"no entry for the graphs \['cross'\]"):
            build_graphs_weighted(other, {k: v for k, v in stats.items() if k != "cross"}, **options)
    # None: the network's own statistics, as build_graphs gives.
    np.testing.assert_array_equal(build_graphs_weighted(other, None, **options).fine.data, own.fine.data)


def test_graphs_too_large_for_memory_are_refused_before_they_are_built(
        small_basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without a cut every pair of reaches on one flow path is stored: on a deep network
    # the process was killed for memory with no word. The estimate is the exact count.
    import xmsgl.graph as graph
    from xmsgl.exceptions import XmsglWarning

    full = build_graphs(small_basin)
    need = graph.BYTES_PER_FINE_ENTRY * full.fine.nnz
    monkeypatch.setattr(graph, "LARGE_GRAPH_BYTES", need - 1)
    monkeypatch.setattr(graph, "_available_memory", lambda: need - 1)
    with pytest.raises(ParameterError, match=rf"hold {full.fine.nnz:,} fine entries, about .* GB while "
                       r"built, more than the .* GB of memory available; give a cut: max_hops"):
        build_graphs(small_basin)
    monkeypatch.setattr(graph, "_available_memory", lambda: 10 * need)
    with pytest.warns(XmsglWarning, match=rf"hold {full.fine.nnz:,} fine entries"):
        build_graphs(small_basin)
    # With max_hops the count is bounded, and it is the count stored.
    cut = build_graphs(small_basin, max_hops=2)
    monkeypatch.setattr(graph, "LARGE_GRAPH_BYTES", graph.BYTES_PER_FINE_ENTRY * cut.fine.nnz - 1)
    with pytest.warns(XmsglWarning, match=rf"at most 2 counted\) hold {cut.fine.nnz:,} fine entries"):
        build_graphs(small_basin, max_hops=2)
    with pytest.warns(XmsglWarning, match=r"at most 2 counted"):  # a distance beside it too
        build_graphs(small_basin, max_hops=2, max_distance=1e9)
    monkeypatch.setattr(graph, "LARGE_GRAPH_BYTES", graph.BYTES_PER_FINE_ENTRY * cut.fine.nnz)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_graphs(small_basin, max_hops=2)
        build_graphs(small_basin, max_distance=1e9)  # not estimated: the lengths decide


def test_available_memory_is_at_most_a_containers_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    import xmsgl.graph as graph

    files = {"/proc/meminfo": "MemTotal: 33554432 kB\nMemAvailable: 16777216 kB\n",
             "/sys/fs/cgroup/memory.max": "4294967296\n", "/sys/fs/cgroup/memory.current": "1073741824\n"}

    def fake_open(path: str, *args: object, **kwargs: object) -> io.StringIO:
        if path not in files:
            raise FileNotFoundError(path)
        return io.StringIO(files[path])

    monkeypatch.setattr(graph, "open", fake_open, raising=False)
    assert graph._available_memory() == 3 * 1024**3  # the limit less what the container uses
    # Page cache not in use is given back on demand: not counted as used.
    files["/sys/fs/cgroup/memory.stat"] = "anon 536870912\ninactive_file 536870912\n"
    assert graph._available_memory() == int(3.5 * 1024**3)
    files["/sys/fs/cgroup/memory.max"] = "max\n"  # no limit: the machine's
    assert graph._available_memory() == 16 * 1024**3
    del files["/sys/fs/cgroup/memory.max"]
    files["/sys/fs/cgroup/memory/memory.limit_in_bytes"] = str(2**63 - 4096)  # v1, unlimited
    files["/sys/fs/cgroup/memory/memory.usage_in_bytes"] = "0"
    assert graph._available_memory() == 16 * 1024**3
