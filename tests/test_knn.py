"""Nearest neighbours without compiled extensions (xmsgl.knn)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import xarray as xr

from xmsgl.exceptions import ParameterError, SchemaError
from xmsgl.knn import (
    candidate_set,
    euler_tour,
    feature_knn,
    geometric_knn,
    knn_brute,
    knn_candidates,
    node_geometry,
    outlet_distance,
    signed_stream_distance,
    sparse_topk,
)

torch = pytest.importorskip("torch")


def _ref_knn(x: np.ndarray, k: int) -> np.ndarray:
    """Distances of the k nearest other points, by a full numpy sort."""
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    return np.sort(d, axis=1)[:, :k]


def _dist_of(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.sqrt(((x[idx] - x[:, None, :]) ** 2).sum(-1))


def test_low_level_searches_refuse_arrays_of_the_wrong_shape_or_kind() -> None:
    with pytest.raises(SchemaError, match=r"positions must be an \(N, d\) array.*shape \(3,\)"):
        geometric_knn(np.array([0.0, 1.0, 2.0]), 1)
    assert geometric_knn(np.array([[0.0, 0, 0], [1, 0, 0], [5, 0, 0]]), 1).ravel().tolist() == [1, 0, 1]
    with pytest.raises(SchemaError, match="floating-point tensor.*torch.int64"):
        knn_brute(torch.tensor([[0], [1], [5]]), 1)
    with pytest.raises(SchemaError, match=r"shape \(3,\)"):
        knn_brute(torch.tensor([0.0, 1.0, 5.0]), 1)
    with pytest.raises(SchemaError, match=r"to_idx \(3,\) and length \(2,\)"):
        outlet_distance(np.array([1, 2, -1]), np.array([5.0, 10.0]))


def test_identical_features_are_neighbours_in_id_order_whatever_the_row_order() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=gen) * 3 + 10
    x[[7, 12, 30, 33]] = x[5].clone()
    x[0] = x[5] + 0.01
    ids = np.arange(100, 140)
    for rows in range(4):
        perm = torch.randperm(40, generator=gen) if rows else torch.arange(40)
        keys = ids[perm.numpy()]
        idx = knn_brute(x[perm], 3, tie_keys=keys).numpy()
        at = {int(k): i for i, k in enumerate(keys)}
        assert keys[idx[at[100]]].tolist() == [105, 107, 112]
        assert keys[idx[at[105]]].tolist() == [107, 112, 130]


def test_knn_brute_matches_a_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 60, 5)).astype(np.float32)
    idx = knn_brute(torch.from_numpy(x), 7).numpy()
    assert idx.shape == (2, 60, 7)
    for b in range(2):
        assert not (idx[b] == np.arange(60)[:, None]).any()
        np.testing.assert_allclose(np.sort(_dist_of(x[b], idx[b]), axis=1), _ref_knn(x[b], 7),
                                   rtol=1e-4, atol=1e-5)


def test_candidate_search_equals_exact_search_when_candidates_are_everyone() -> None:
    rng = np.random.default_rng(1)
    n = 40
    x = torch.from_numpy(rng.normal(size=(3, n, 4)).astype(np.float32))
    cand = torch.tensor([[j for j in range(n) if j != i] for i in range(n)])
    valid = torch.ones_like(cand, dtype=torch.bool)
    got = knn_candidates(x, cand, valid, 5)
    want = knn_brute(x, 5)
    for b in range(3):
        xb = x[b].numpy()
        np.testing.assert_allclose(np.sort(_dist_of(xb, got[b].numpy()), 1),
                                   np.sort(_dist_of(xb, want[b].numpy()), 1), rtol=1e-5)


def test_feature_knn_uses_candidates_above_brute_max_and_respects_them() -> None:
    rng = np.random.default_rng(2)
    pos = rng.uniform(size=(200, 2))
    cand, valid = candidate_set(pos, np.arange(200) // 10, 12)
    x = torch.from_numpy(rng.normal(size=(1, 200, 3)).astype(np.float32))
    idx = feature_knn(x, 4, torch.from_numpy(cand), torch.from_numpy(valid), brute_max=100)[0].numpy()
    for i in range(200):
        allowed = set(cand[i][valid[i]].tolist())
        assert set(idx[i].tolist()) <= allowed
        assert len(set(idx[i].tolist())) == 4


def test_candidate_set_has_group_members_no_self_and_no_repeats() -> None:
    rng = np.random.default_rng(3)
    pos = rng.uniform(size=(120, 2))
    group = rng.integers(0, 15, size=120)
    cand, valid = candidate_set(pos, group, 8, max_group=64)
    for i in range(120):
        real = cand[i][valid[i]].tolist()
        assert i not in real
        assert len(real) == len(set(real))
        members = set(np.flatnonzero(group == group[i]).tolist()) - {i}
        assert members <= set(real)
        assert set(geometric_knn(pos, 8)[i].tolist()) <= set(real)


def test_candidate_set_caps_large_groups_to_nearest_members() -> None:
    pos = np.stack([np.arange(50.0), np.zeros(50)], axis=1)
    cand, valid = candidate_set(pos, np.zeros(50, dtype=int), 2, max_group=4)
    assert cand.shape == (50, 6)
    assert sorted(cand[10][valid[10]].tolist()) == [8, 9, 11, 12]


def test_k_larger_than_the_candidates_is_a_parameter_error() -> None:
    x = torch.randn(1, 5, 2)
    with pytest.raises(ParameterError, match="k=5 is larger than the 4"):
        knn_brute(x, 5)
    cand = torch.tensor([[1, 2], [0, 2], [0, 1], [0, 1], [0, 1]])
    valid = torch.tensor([[True, False]] + [[True, True]] * 4)
    with pytest.raises(ParameterError, match="candidate nodes"):
        knn_candidates(x, cand, valid, 2)
    with pytest.raises(ParameterError, match="lower k"):
        geometric_knn(np.zeros((3, 2)) + np.arange(3)[:, None], 3)
    with pytest.raises(ParameterError, match="positive integer"):
        knn_brute(x, 0)


def test_geometric_knn_matches_reference_and_handles_duplicates() -> None:
    rng = np.random.default_rng(4)
    pos = rng.uniform(size=(80, 2))
    idx = geometric_knn(pos, 6)
    np.testing.assert_allclose(np.sort(_dist_of(pos, idx), 1), _ref_knn(pos, 6), rtol=1e-9)
    dup = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [5.0, 5.0], [6.0, 6.0]])
    idx = geometric_knn(dup, 2)
    assert not (idx == np.arange(5)[:, None]).any()  # self is removed by index
    assert set(idx[0].tolist()) == {1, 2}
    with pytest.raises(SchemaError, match="shared by several nodes"):
        geometric_knn(dup, 2, duplicates="raise")
    with pytest.raises(SchemaError, match="NaN or infinite"):
        geometric_knn(np.array([[0.0, np.nan], [1.0, 1.0], [2.0, 2.0]]), 1)


def test_geometric_knn_breaks_ties_by_position_in_the_dataset() -> None:
    # Co-located and equidistant nodes: the documented order is (distance, position),
    # which cKDTree alone does not give (it returned [2, 3, 4, 0] for node 1 here).
    pos = np.array([[0.0, 0.0]] * 5 + [[10.0, 0.0]])
    assert geometric_knn(pos, 4).tolist() == [[1, 2, 3, 4], [0, 2, 3, 4], [0, 1, 3, 4],
                                              [0, 1, 2, 4], [0, 1, 2, 3], [0, 1, 2, 3]]
    # More co-located nodes than k + 1: node 4 used to miss node 0.
    assert geometric_knn(np.zeros((40, 2)), 3)[4].tolist() == [0, 1, 2]
    rng = np.random.default_rng(5)
    for _ in range(50):
        n = int(rng.integers(2, 30))
        grid = rng.integers(0, 4, size=(n, 2)).astype(float)
        k = int(rng.integers(1, n))
        d = ((grid[:, None] - grid[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        ref = np.array([np.lexsort((np.arange(n), d[i]))[:k] for i in range(n)])
        np.testing.assert_array_equal(geometric_knn(grid, k), ref)


def test_feature_knn_never_picks_the_node_itself_for_nan_features() -> None:
    # NaN distances rank after inf in topk: an inf self-distance made a node with NaN
    # features its own neighbour, and padding beat NaN candidates.
    x = torch.randn(1, 6, 2, generator=torch.Generator().manual_seed(0))
    x[0, 2] = float("nan")
    idx = knn_brute(x, 2)[0]
    assert not (idx == torch.arange(6)[:, None]).any()
    cand = torch.tensor([[1, 2, 0], [0, 2, 1], [0, 1, 2], [0, 1, 3], [0, 1, 4], [0, 1, 5]])
    valid = torch.tensor([[True, True, False]] * 6)
    x[0, 2] = 0.0
    x[0, 1] = float("nan")
    idx = knn_candidates(x, cand, valid, 2)[0]
    assert not (idx == torch.arange(6)[:, None]).any()
    assert idx[1].tolist() in ([0, 2], [2, 0])


def test_sparse_topk_takes_strongest_off_diagonal_entries_and_pads_with_self() -> None:
    m = sp.csr_matrix(np.array([[1.0, 0.2, 0.7, 0.1], [0.5, 1.0, 0.0, 0.0],
                                [0.0, 0.0, 1.0, 0.0], [0.3, 0.3, 0.3, 1.0]]))
    idx, real = sparse_topk(m.indptr, m.indices, m.data, 2)
    assert idx.tolist() == [[2, 1], [0, 1], [2, 2], [0, 1]]
    assert real.tolist() == [[True, True], [True, False], [False, False], [True, True]]


def test_stream_distances_agree_with_the_graph_module(small_basin: xr.Dataset) -> None:
    from xmsgl.convention import topology_arrays
    from xmsgl.graph import build_graphs

    topo = topology_arrays(small_basin)
    geom = node_geometry(small_basin, "reach")
    d = build_graphs(small_basin).reach_distance.tocoo()
    np.testing.assert_allclose(signed_stream_distance(geom, d.row, d.col), d.data, atol=1e-6)
    # Pairs without an entry (different branches) get 0.
    dense = build_graphs(small_basin).reach_distance.toarray() != 0
    i, j = np.nonzero(~dense)
    assert np.all(signed_stream_distance(geom, i, j) == 0)
    od = outlet_distance(topo.reach_to_idx, topo.reach_length)
    assert (od[topo.reach_to_idx < 0] == 0).all()
    tin, tout = euler_tour(topo.reach_to_idx)
    assert len(set(tin.tolist()) | set(tout.tolist())) == 2 * topo.n_reach


def test_node_geometry_sources_and_fallback(tiny_basin: xr.Dataset) -> None:
    assert node_geometry(tiny_basin, "reach").source == "xy"
    no_xy = tiny_basin.drop_vars(["reach_x", "reach_y"])
    geom = node_geometry(no_xy, "reach")
    assert geom.source == "outlet-distance"
    np.testing.assert_allclose(geom.pos[:, 0], geom.outlet_distance)
    with pytest.raises(SchemaError, match="reach_x and reach_y"):
        node_geometry(no_xy, "reach", coords="xy")
    lon = no_xy.assign(reach_lon=("reach", np.linspace(-75, -74, no_xy.sizes["reach"])),
                       reach_lat=("reach", np.full(no_xy.sizes["reach"], 41.0)))
    g = node_geometry(lon, "reach")
    assert g.source == "lonlat"
    assert 80e3 < g.pos[:, 0].max() - g.pos[:, 0].min() < 90e3  # 1 degree of longitude at 41 N
    # Across the 180th meridian, or in 0..360: the same local positions, up to a shift.
    n = no_xy.sizes["reach"]
    span = np.linspace(179.5, 180.5, n)
    for lons in (np.where(span > 180.0, span - 360.0, span), span):
        g2 = node_geometry(lon.assign(reach_lon=("reach", lons)), "reach")
        np.testing.assert_allclose(np.diff(g2.pos[:, 0]), np.diff(g.pos[:, 0]), rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(g2.pos[:, 1], g.pos[:, 1])
    bad = no_xy["reach"].values[[1]]
    for var, vals in (("reach_lat", np.where(np.arange(n) == 1, 4.6e6, 41.0)),
                      ("reach_lon", np.where(np.arange(n) == 1, 5.1e5, -75.0))):
        with pytest.raises(SchemaError, match=f"{var}.*outside.*{bad[0]}.*reach_x and reach_y"):
            node_geometry(lon.assign({var: ("reach", vals)}), "reach")
    with pytest.raises(ParameterError):
        node_geometry(tiny_basin, "reach", coords="polar")


def test_reaches_without_coordinates_are_named(tiny_basin: xr.Dataset) -> None:
    x = tiny_basin["reach_x"].values.copy()
    x[[2, 5]] = np.nan
    ds = tiny_basin.assign(reach_x=("reach", x, tiny_basin["reach_x"].attrs))
    bad = tiny_basin["reach"].values[[2, 5]]
    with pytest.raises(SchemaError, match=f"reach_x.*{bad[0]}.*{bad[1]}"):
        node_geometry(ds, "reach")


def test_feature_ties_go_to_the_smaller_id_whatever_the_row_order() -> None:
    # Equal embeddings (reaches given the same inputs) made the neighbours, and the
    # predictions, depend on the order of the rows.
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(9, 2)), dtype=torch.float32)
    x[2:7] = x[1]  # six identical embeddings
    ids = np.array([90, 10, 50, 20, 80, 30, 70, 40, 60])

    def neighbours(perm: np.ndarray) -> dict[int, set[int]]:
        idx = feature_knn(x[perm].unsqueeze(0), 2, tie_keys=ids[perm])[0].numpy()
        return {int(ids[perm][i]): {int(ids[perm][j]) for j in row} for i, row in enumerate(idx)}

    base = neighbours(np.arange(9))
    assert base[10] == {20, 30}  # the smallest ids among the equals
    for seed in range(5):
        assert neighbours(np.random.default_rng(seed).permutation(9)) == base


def test_candidates_do_not_depend_on_the_order_of_the_rows() -> None:
    pos = np.array([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [5.0, 5.0]])
    group = np.array([0, 1, 1, 2, 2, 2])
    ids = np.array([10, 14, 12, 11, 13, 15])

    def sets(perm: np.ndarray) -> dict[int, list[int]]:
        cand, valid = candidate_set(pos[perm], group[perm], 2, tie_keys=ids[perm])
        return {int(ids[perm][i]): [int(ids[perm][c]) for c, v in zip(row, ok) if v]
                for i, (row, ok) in enumerate(zip(cand, valid))}

    base = sets(np.arange(6))
    assert base[10][-2:] == [11, 12]  # four candidates at the same distance: the smallest ids
    for seed in range(5):
        assert sets(np.random.default_rng(seed).permutation(6)) == base


def test_feature_knn_needs_valid_with_candidates() -> None:
    x = torch.zeros(1, 3000, 2)
    cand = torch.zeros(3000, 4, dtype=torch.int64)
    with pytest.raises(ParameterError, match="pass valid"):
        feature_knn(x, 2, cand, None, brute_max=10)


def test_feature_searches_are_exact_under_an_offset_all_nodes_share() -> None:
    # |x_i|^2 + |x_j|^2 - 2 x_i.x_j in float32 lost the differences between nodes under
    # a common offset ten times their spread (93 of 100 rows wrong): the searches
    # centre the features first, and find the float64 neighbours.
    import torch

    from xmsgl.knn import knn_brute, knn_candidates

    gen = torch.Generator().manual_seed(0)
    base = torch.randn(2, 100, 8, generator=gen, dtype=torch.float64)
    for offset in (10.0, 100.0):
        x = (base * 0.01 + offset).float()
        d = torch.cdist(x.double(), x.double())
        d.diagonal(dim1=1, dim2=2).fill_(float("inf"))
        want = d.argsort(dim=2)[:, :, :3]
        assert torch.equal(knn_brute(x, 3), want)
        cand = torch.arange(100).repeat(100, 1)
        cand = cand[~torch.eye(100, dtype=torch.bool)].view(100, 99)
        got = knn_candidates(x, cand, torch.ones(100, 99, dtype=torch.bool), 3)
        assert torch.equal(got, want)


def test_outlet_walks_refuse_a_cycle_and_go_through_a_nan_length() -> None:
    from xmsgl.exceptions import TopologyError
    from xmsgl.knn import _roots, outlet_distance

    with pytest.raises(TopologyError, match=r"positions \[0, 1\] never reach an outlet"):
        outlet_distance(np.array([1, 0, -1]), np.ones(3))
    with pytest.raises(TopologyError, match="form a cycle"):
        _roots(np.array([1, 0, -1]))
    d = outlet_distance(np.array([1, 2, -1, 0]), np.array([1.0, np.nan, 1.0, 1.0]))
    assert d[2] == 0.0 and d[1] == 1.0 and np.isnan(d[0]) and np.isnan(d[3])
    assert _roots(np.array([1, 2, -1, 0])).tolist() == [2, 2, 2, 2]


def test_an_edge_layer_refuses_more_neighbours_than_a_byte_counts() -> None:
    import torch

    from xmsgl.exceptions import ParameterError
    from xmsgl.nn.dmsge import EdgeLayer

    layer = EdgeLayer(hidden=2, n_graphs=1)
    n, k = 300, 256
    idx = torch.randint(0, n, (1, n, k))
    with pytest.raises(ParameterError, match="256 neighbours per node.*at most 255"):
        layer(torch.randn(1, n, 3, 2), [(idx, torch.zeros(1, n, k, 3))])


def test_outlet_distances_and_roots_match_a_walk_node_by_node() -> None:
    # Level by level up from the outlets (each node once) gives what walking every
    # node down to its outlet gives, on forests in any row order and on a long chain.
    from xmsgl.knn import _roots, outlet_distance

    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 60, 300):
        to = np.array([-1 if i == 0 or rng.random() < 0.1 else rng.integers(0, i) for i in range(n)])
        perm = rng.permutation(n)
        inv = np.argsort(perm)
        to = np.where(to[perm] >= 0, inv[np.maximum(to[perm], 0)], -1)
        length = rng.uniform(0.5, 3.0, n)
        want_d, want_r = np.zeros(n), np.arange(n)
        for i in range(n):
            j = i
            while to[j] >= 0:
                want_d[i] += length[to[j]]
                j = to[j]
            want_r[i] = j
        np.testing.assert_allclose(outlet_distance(to, length), want_d)
        assert _roots(to).tolist() == want_r.tolist()
    chain = np.arange(1, 40_001)
    chain[-1] = -1
    d = outlet_distance(chain, np.ones(40_000))
    assert d[0] == 39_999.0 and d[-1] == 0.0 and (_roots(chain) == 39_999).all()


def test_geometric_neighbours_of_co_located_groups_are_ranked_by_key() -> None:
    # Nodes with k others at their very position take the smallest keys of their group
    # (ranked once per group; a ball per node grew with the square of the group), and
    # every node matches a brute-force ranking by (distance, key).
    from xmsgl.knn import geometric_knn

    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(3, 40))
        k = int(rng.integers(1, n))
        pos = rng.integers(0, int(rng.integers(1, 4)), size=(n, 2)).astype(float)
        keys = rng.permutation(n) * 10
        got = geometric_knn(pos, k, tie_keys=keys)
        for i in range(n):
            d2 = ((pos - pos[i]) ** 2).sum(axis=1)
            d2[i] = np.inf
            assert got[i].tolist() == np.lexsort((keys, d2))[:k].tolist()
    pos = np.zeros((3000, 2))
    pos[1500:] = [1.0, 0.0]
    got = geometric_knn(pos, 4)
    assert got[0].tolist() == [1, 2, 3, 4] and got[2].tolist() == [0, 1, 3, 4]
    assert got[2999].tolist() == [1500, 1501, 1502, 1503]


def test_brute_search_of_grid_ties_does_not_follow_the_row_order() -> None:
    # Embeddings on a lattice: distances equal in exact arithmetic round apart in float32.
    # The mean taken off them was summed in the caller's row order, so its rounding, and
    # with it the chosen neighbour, changed with a permutation of the rows (89 of 200 cases).
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(200):
        n = int(rng.integers(5, 60))
        x = rng.integers(0, 3, size=(n, 2)).astype(np.float32) * 0.1 + 7.3
        ids = np.arange(n) + 100
        perm = rng.permutation(n)
        a = ids[knn_brute(torch.tensor(x), 1, tie_keys=ids).numpy()]
        b = ids[perm][knn_brute(torch.tensor(x[perm]), 1, tie_keys=ids[perm]).numpy()][np.argsort(perm)]
        changed += not np.array_equal(a, b)
    assert changed == 0


def test_bad_inputs_of_the_searches_are_typed_errors() -> None:
    # A group of the wrong length failed inside numpy's lexsort, text positions and a
    # numpy array of features with bare ValueError and AttributeError; candidate_set's
    # refusals of m said k.
    pos = np.array([[0.0, 0], [1, 0], [5, 0]])
    for group in (np.array([0, 0]), np.array([0, 0, 1, 1]), np.array([0.5, 0, 1])):
        with pytest.raises(ParameterError, match=r"group has shape .* give one integer per node .* shape \(3,\)"):
            candidate_set(pos, group, 1)
    with pytest.raises(ParameterError, match=r"^m=0 must be a positive integer"):
        candidate_set(pos, np.array([0, 0, 1]), 0)
    with pytest.raises(ParameterError, match=r"^m=5 is larger than the 2 other nodes; lower m"):
        candidate_set(pos, np.array([0, 0, 1]), 5)
    with pytest.raises(SchemaError, match="positions must be numbers"):
        geometric_knn(np.array([["a", "b"], ["c", "d"]]), 1)
    with pytest.raises(SchemaError, match="got ndarray; convert it with torch.as_tensor"):
        feature_knn(np.zeros((1, 3, 2)), 1)  # type: ignore[arg-type]
