"""Pinned behaviour of the networks (xmsgl.nn): the dmsge backbone's encoder, graph
layer and edge features, and the formulas of the MSGL heads, that no other test held."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from xmsgl.knn import NodeGeometry, euler_tour, outlet_distance  # noqa: E402
from xmsgl.nn.dmsge import DMSGEBackbone, EdgeLayer, _CausalTCN, edge_features  # noqa: E402
from xmsgl.nn.heads import CrossScaleHead, FineHead  # noqa: E402


def _geometry() -> NodeGeometry:
    # 0 -> 1 -> 2 (outlet) <- 3: nodes 0 and 3 lie on different flow paths.
    to = np.array([1, 2, -1, 2])
    tin, tout = euler_tour(to)
    return NodeGeometry(pos=np.array([[0.0, 0], [1, 0], [2, 0], [2, 1]]),
                        outlet_distance=outlet_distance(to, np.ones(4)), tin=tin, tout=tout,
                        group=np.zeros(4, dtype=np.int64), source="xy", length_scale=1.0)


def _dense_edge_layer(layer: EdgeLayer, h: torch.Tensor,
                      neighbours: list[tuple[torch.Tensor, torch.Tensor]], mean: bool) -> torch.Tensor:
    """EdgeLayer.forward written out: every message built, per window and graph."""
    b, n, t, hd = h.shape
    proj = layer.node(h)
    out = torch.zeros(b, n, t, hd, dtype=h.dtype)
    for g, (idx, feats) in enumerate(neighbours):
        k = idx.shape[-1]
        a = proj[..., 2 * g * hd: (2 * g + 1) * hd]
        nb = proj[..., (2 * g + 1) * hd: (2 * g + 2) * hd]
        idx = idx.expand(b, n, k)
        gathered = torch.stack([nb[w][idx[w]] for w in range(b)])  # (B, N, k, T, H)
        e = feats.expand(b, n, k, feats.shape[-1]) @ layer.edge.weight[g * hd: (g + 1) * hd].t()
        z = gathered + e.unsqueeze(3)
        out += (torch.relu(a.unsqueeze(2) + z).mean(2) if mean
                else torch.relu(a + z.max(2).values))
    return out


def test_causal_tcn_is_residual() -> None:
    # Guards the residual `x + ReLU(conv(...))` of the temporal encoder: with all
    # convolutions at zero it passes its input through unchanged.
    tcn = _CausalTCN(4)
    with torch.no_grad():
        for p in tcn.parameters():
            p.zero_()
    x = torch.randn(3, 4, 20)
    torch.testing.assert_close(tcn(x), x)


@pytest.mark.parametrize("mean", [False, True])
def test_edge_layer_matches_the_messages_written_out(mean: bool) -> None:
    # Guards EdgeLayer.forward: each graph's edge features go through its own rows
    # of the edge weight, and each window of a batch reads its own neighbours
    # (the row offsets b * N), against a dense reference on 2 windows x 2 graphs.
    gen = torch.Generator().manual_seed(0)
    b, n, t, hd, k = 2, 5, 3, 4, 2
    layer = EdgeLayer(hd, n_graphs=2).double()
    h = torch.randn(b, n, t, hd, dtype=torch.double, generator=gen)
    neighbours = [
        (torch.randint(0, n, (1, n, k), generator=gen),
         torch.randn(1, n, k, 3, dtype=torch.double, generator=gen)),
        (torch.randint(0, n, (b, n, k), generator=gen),
         torch.randn(b, n, k, 3, dtype=torch.double, generator=gen)),
    ]
    with torch.no_grad():
        got = layer(h, neighbours, mean)
        ref = _dense_edge_layer(layer, h, neighbours, mean)
    torch.testing.assert_close(got, ref)


def test_edge_features_sign_the_along_stream_distance_and_zero_it_across_paths() -> None:
    # Guards edge_features: s_ij = d_i - d_j (outlet distances) when j is downstream
    # OR upstream of i, and 0 for nodes on different flow paths.
    net = DMSGEBackbone(n_inputs=3, hidden=4, layers=1, k=2)
    net.set_geometry("reach", _geometry())
    st = net._state("reach")
    idx = torch.tensor([[1, 3], [0, 2], [3, 0], [2, 0]])
    f = edge_features(st, idx)
    assert f.shape == (4, 2, 3)
    log2 = math.log(2.0)
    s = f[..., 2]
    # 0 -> 1 downstream (+1), 0 and 3 on different paths (0), 1 -> 0 upstream (-1),
    # 1 -> 2 downstream (+1), 2 -> 3 upstream (-1), 2 -> 0 upstream (d 0 - 2).
    expected = torch.tensor([[log2, 0.0], [-log2, log2], [-log2, -math.log(3.0)], [log2, 0.0]])
    torch.testing.assert_close(s, expected)
    # The relative positions p_j - p_i, compressed the same way.
    torch.testing.assert_close(f[0, 0, :2], torch.tensor([log2, 0.0]))


def test_cross_head_adds_a_linear_skip_of_the_carried_states() -> None:
    # Guards `readout(z) + skip(h_cross)` in CrossScaleHead.forward: the carried
    # states reach the prediction without the attention.
    torch.manual_seed(0)
    head = CrossScaleHead(hidden=4, window=5)
    h = torch.randn(3, 12, 4)
    with torch.no_grad():
        z, y = head(h)
        ref = head.readout(z).squeeze(-1) + h @ head.skip.weight[0]
    torch.testing.assert_close(y, ref)


def test_fine_head_is_a_gelu_mlp_plus_a_linear_branch_without_bias() -> None:
    # Guards FineHead's formula y = w . GELU(W1 u + b1) + b + v . u, u = [h_cross, h_fine]:
    # the GELU, and no bias on the linear branch.
    torch.manual_seed(0)
    head = FineHead(hidden=4)
    hc, hf = torch.randn(3, 7, 4), torch.randn(3, 7, 4)
    u = torch.cat([hc, hf], dim=-1)
    with torch.no_grad():
        ref = (head.out(torch.nn.functional.gelu(head.first(u))).squeeze(-1)
               + (u @ head.linear.weight[0]))
        torch.testing.assert_close(head(hc, hf), ref)


def test_dynamic_neighbours_are_those_of_the_trailing_mean_embedding(tiny_basin) -> None:
    # Guards DMSGEBackbone.dynamic_blocks: a block starting on day s takes the kNN of
    # the embedding averaged over days s - D + 1 to s (those in the window); blocks
    # start where the date is a multiple of D, and windows are cut where any changes.
    from xmsgl.graph import build_graphs
    from xmsgl.knn import feature_knn, node_geometry
    from xmsgl.nn import SparseGraph

    torch.manual_seed(0)
    geom = node_geometry(tiny_basin, "reach")
    net = DMSGEBackbone(n_inputs=3, hidden=6, layers=1, k=3, graphs=["dynamic"], dynamic_days=7)
    net.set_geometry("reach", geom)
    x = torch.randn(20, geom.n, 2, 3) * torch.linspace(0.2, 3.0, 20).view(20, 1, 1, 1)
    net.record = {}
    with torch.no_grad():
        net(x, SparseGraph(build_graphs(tiny_basin).fine), "reach", day0=[3, 12])
    rec, net.record = net.record, None
    enc = rec["states"][0]  # (B, N, T, H): the encoder output the layer's graphs are built on
    pieces = rec["index"][0]
    starts = [[0, 4, 11, 18], [0, 2, 9, 16]]  # days whose date (3 + t, 12 + t) is a multiple of 7
    assert [(t0, t1) for t0, t1, _ in pieces] == [(0, 2), (2, 4), (4, 9), (9, 11), (11, 16),
                                                   (16, 18), (18, 20)]
    for t0, _, idx in pieces:
        for w in range(2):
            s = max(v for v in starts[w] if v <= t0)
            mean = enc[w: w + 1, :, max(0, s - 6): s + 1].mean(dim=2)
            assert torch.equal(idx[w], feature_knn(mean, 3, tie_keys=geom.ids)[0])
    # dynamic_days=None: one graph per window, the kNN of its mean over all days.
    net.options["dynamic_days"] = None
    net.record = {}
    with torch.no_grad():
        net(x, SparseGraph(build_graphs(tiny_basin).fine), "reach")
    rec, net.record = net.record, None
    ((t0, t1, idx),) = rec["index"][0]
    enc = rec["states"][0]
    assert (t0, t1) == (0, 20)
    assert torch.equal(idx, feature_knn(enc.mean(dim=2), 3, tie_keys=geom.ids))
    assert not torch.equal(idx, feature_knn(enc.amax(dim=2), 3, tie_keys=geom.ids))


@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_backbone_reduces_its_messages_as_asked(tiny_basin, reduce: str) -> None:
    # Guards `self.mean = reduce == "mean"`: reduce="max" takes the maximum over the
    # neighbours and "mean" the mean (one layer on the geometric graph, written out).
    from xmsgl.graph import build_graphs
    from xmsgl.knn import node_geometry
    from xmsgl.nn import SparseGraph

    torch.manual_seed(0)
    geom = node_geometry(tiny_basin, "reach")
    net = DMSGEBackbone(n_inputs=3, hidden=6, layers=1, k=3, graphs=["geo"], concat=False,
                        reduce=reduce)
    net.set_geometry("reach", geom)
    x = torch.randn(10, geom.n, 2, 3)
    net.record = {}
    with torch.no_grad():
        out = net(x, SparseGraph(build_graphs(tiny_basin).fine), "reach")
        rec, net.record = net.record, None
        st = net._state("reach")
        geo = st.geo.unsqueeze(0)
        ref = _dense_edge_layer(net.layers[0], rec["states"][0], [(geo, edge_features(st, geo))],
                                mean=reduce == "mean")
    torch.testing.assert_close(out, ref.permute(2, 1, 0, 3))


def test_river_neighbours_follow_the_graph_passed_not_the_last_one_cached() -> None:
    # Guards `hit[0] is adj` in DMSGEBackbone.hydro_index: the cache of a scale's
    # river neighbours is dropped when another river graph of that scale comes in.
    import scipy.sparse as sp

    net = DMSGEBackbone(n_inputs=3, hidden=4, layers=1, k=1)
    net.set_geometry("reach", _geometry())
    chain = sp.csr_matrix(np.array([[0, 1.0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 0, 0, 0]]))
    back = sp.csr_matrix(chain.T)
    from xmsgl.nn import SparseGraph

    idx1, _ = net.hydro_index(SparseGraph(chain), "reach")
    idx2, _ = net.hydro_index(SparseGraph(back), "reach")
    assert idx1[:, 0].tolist() == [1, 2, 3, 0]
    assert idx2[:, 0].tolist() == [3, 0, 1, 2]


def test_common_inputs_share_one_projection_on_both_scales() -> None:
    # Guards the column order [common, scale-specific] of MSGLNet._projection: a
    # variable found at both scales (first in the inputs) meets the same weights
    # on segments and on reaches.
    from xmsgl.nn import MSGLNet

    torch.manual_seed(0)
    net = MSGLNet(n_common=1, n_seg_extra=2, n_reach_extra=1, hidden=3)
    seg = torch.tensor([[1.5, 0.0, 0.0]])
    reach = torch.tensor([[1.5, 0.0]])
    with torch.no_grad():
        torch.testing.assert_close(net._project(seg, "seg"), net._project(reach, "reach"))
        extra = net._project(torch.tensor([[0.0, 1.0, 0.0]]), "seg") - net.gate_bias
        torch.testing.assert_close(extra[0], net.proj_seg.weight[:, 0])


@pytest.mark.parametrize("backbone", ["rgrn", "dmsge"])
def test_shared_parameters_are_all_but_the_heads(backbone: str) -> None:
    # Guards MSGLNet.shared_parameters (read by the task weighting of training):
    # the gate bias, input projections and cell or backbone, and nothing of the heads.
    from xmsgl.nn import MSGLNet

    net = MSGLNet(n_common=1, n_seg_extra=1, n_reach_extra=1, hidden=3, backbone=backbone,
                  backbone_options={"layers": 1, "k": 2} if backbone == "dmsge" else None)
    shared = {id(p) for p in net.shared_parameters()}
    heads = {id(p) for m in (net.coarse_head, net.cross_head, net.fine_head, net.fine_only_head)
             for p in m.parameters()}
    assert id(net.gate_bias) in shared
    assert not shared & heads
    assert shared | heads == {id(p) for p in net.parameters()}
