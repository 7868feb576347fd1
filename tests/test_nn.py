"""Torch modules: the recurrent graph cell, the sparse product, the MSGL heads."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from tests.conftest import devices

torch = pytest.importorskip("torch")

from xmsgl.exceptions import ParameterError  # noqa: E402
from xmsgl.nn import (  # noqa: E402
    CrossScaleHead,
    FineHead,
    FineResidualHead,
    GraphRecurrent,
    MSGLNet,
    SparseGraph,
    TemporalAttentionBlock,
    graph_product,
)


def _chain(n: int) -> sp.csr_matrix:
    """Row-normalized adjacency of a chain with self-loops."""
    a = sp.eye(n, format="csr") + sp.eye(n, k=1, format="csr") + sp.eye(n, k=-1, format="csr")
    a = sp.csr_matrix(a)
    return sp.csr_matrix(a.multiply(1.0 / a.sum(axis=1)))


@pytest.mark.parametrize("device", devices())
def test_graph_product_matches_dense_with_gradient(device: str) -> None:
    m = sp.random(7, 5, density=0.4, format="csr", random_state=0, dtype=np.float32)
    g = SparseGraph(m, device)
    x = torch.randn(5, 3, 4, device=device, requires_grad=True)
    y = graph_product(g, x)
    dense = torch.from_numpy(m.toarray()).to(device)
    x2 = x.detach().clone().requires_grad_(True)
    y2 = (dense @ x2.reshape(5, -1)).reshape(7, 3, 4)
    torch.testing.assert_close(y, y2)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (y2 * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


@pytest.mark.parametrize("device", devices())
def test_sparse_graph_transpose_is_made_on_first_use_and_copies_the_matrix(device: str) -> None:
    m = sp.random(9, 6, density=0.4, format="csr", random_state=1, dtype=np.float64)
    m.indices = m.indices.astype(np.int32)
    m.indptr = m.indptr.astype(np.int32)
    m.has_sorted_indices = False  # as a matrix built column by column may be
    g = SparseGraph(m, device)
    assert g._adj_t is None  # inference never needs it
    moved = g.to(device)
    assert moved._adj_t is None
    expected = torch.from_numpy(m.T.toarray().astype(np.float32)).to(device)
    torch.testing.assert_close(moved.adj_t.to_dense(), expected)
    assert moved.adj_t is moved.adj_t  # made once, then kept
    assert moved.adj_t.crow_indices().dtype == torch.int32
    torch.testing.assert_close(g.adj.to_dense(), expected.T)
    # The tensors own their memory: changing the scipy matrix leaves the graph as it was.
    m.data[:] = 7.0
    m.indices[:] = 0
    torch.testing.assert_close(g.adj.to_dense(), expected.T)
    assert g._host is None  # no host matrix kept unless asked


@pytest.mark.parametrize("device", devices())
def test_sparse_graph_keeping_the_host_matrix_transposes_it(device: str) -> None:
    m = sp.random(9, 6, density=0.4, format="csr", random_state=2, dtype=np.float64)
    expected = torch.from_numpy(m.T.toarray().astype(np.float32)).to(device)
    g = SparseGraph(m, device, keep_host=True)
    assert g._host is not None
    moved = g.to(device)
    torch.testing.assert_close(g.adj_t.to_dense(), expected)
    torch.testing.assert_close(moved.adj_t.to_dense(), expected)
    assert g.adj_t.crow_indices().dtype == torch.int32


def test_the_recurrence_makes_the_transpose_for_backward_only() -> None:
    torch.manual_seed(0)
    cell = GraphRecurrent(hidden=4)
    x = torch.randn(5, 6, 1, 3)
    w, b = torch.randn(16, 3), torch.randn(16)
    g = SparseGraph(_chain(6))
    with torch.no_grad():
        cell.run_inputs(x, w, b, g)
        cell(torch.randn(5, 6, 1, 16), g)
    assert g._adj_t is None  # inference never builds it
    cell.run_inputs(x, w, b, g).sum().backward()
    assert g._adj_t is not None


@pytest.mark.parametrize("device", devices())
def test_rgrn_shapes_and_shared_weights_across_graphs(device: str) -> None:
    torch.manual_seed(0)
    cell = GraphRecurrent(hidden=6).to(device)
    for n in (4, 9):  # one set of weights runs on graphs of any size
        h = cell(torch.randn(11, n, 2, 24, device=device), SparseGraph(_chain(n), device))
        assert tuple(h.shape) == (11, n, 2, 6)
        assert torch.isfinite(h).all()


def test_rgrn_graph_diffusion_changes_states() -> None:
    torch.manual_seed(0)
    cell = GraphRecurrent(hidden=5)
    x = torch.randn(8, 6, 1, 20)
    h_graph = cell(x, SparseGraph(_chain(6)))
    h_eye = cell(x, SparseGraph(sp.eye(6, format="csr")))
    assert not torch.allclose(h_graph, h_eye)
    # Without neighbours, a node's states depend on its own inputs only.
    x2 = x.clone()
    x2[:, 3] += 1.0
    h2 = cell(x2, SparseGraph(sp.eye(6, format="csr")))
    torch.testing.assert_close(h2[:, :3], h_eye[:, :3])
    assert not torch.allclose(h2[:, 3], h_eye[:, 3])


def test_rgrn_refuses_an_adjacency_that_requires_grad() -> None:
    """The graph is an argument with no gradient: one that asks for a gradient is refused
    instead of silently getting none; without autograd, or detached, it runs."""
    torch.manual_seed(0)
    cell = GraphRecurrent(hidden=3)
    x = torch.randn(4, 5, 1, 12)
    adj = torch.tensor(_chain(5).toarray(), dtype=torch.float32, requires_grad=True)
    with pytest.raises(ParameterError, match="adjacency requires grad.*adj.detach"):
        cell(x, adj)
    with pytest.raises(ParameterError, match="adjacency requires grad"):
        cell.run_inputs(torch.randn(4, 5, 1, 2), torch.randn(12, 2), torch.zeros(12), adj)
    want = cell(x, adj.detach())
    with torch.no_grad():
        torch.testing.assert_close(cell(x, adj), want)


def test_rgrn_time_chunks_equal_one_pass() -> None:
    torch.manual_seed(1)
    net = MSGLNet(n_common=2, n_seg_extra=1, n_reach_extra=0, hidden=4, attn_window=5)
    x = torch.randn(23, 6, 2, 3)
    g = SparseGraph(_chain(6))
    with torch.no_grad():
        torch.testing.assert_close(net.hidden_states(x, g, "seg"), net.hidden_states(x, g, "seg", 5))
        # Blocks of days of any size with the state carried over, into a reused buffer.
        whole = net.hidden_states(x, g, "seg")
        buf = torch.empty(8, 6, 2, 4)
        state = None
        for t0, t1 in ((0, 1), (1, 8), (8, 15), (15, 23)):
            hs, state = net.hidden_states_from(x[t0:t1], g, "seg", state, out=buf[: t1 - t0])
            assert hs.data_ptr() == buf.data_ptr()
            torch.testing.assert_close(hs, whole[t0:t1])
    dyn = MSGLNet(n_common=2, n_seg_extra=1, n_reach_extra=0, hidden=4, attn_window=5,
                  backbone="dmsge")
    with pytest.raises(ParameterError, match="whole window"):
        dyn.hidden_states_from(x, g, "seg", None)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize(("n_batch", "n_in"), [(1, 4), (2, 4), (1, 0), (3, 1)])
def test_rgrn_run_inputs_matches_plain_equations(grad: bool, n_batch: int, n_in: int) -> None:
    # Windows side by side (the diffused block copied first), inputs of any width
    # (none included), with and without autograd, each window against the plain
    # equations on its own.
    torch.manual_seed(5)
    n, hdim, n_time = 6, 3, 11
    cell = GraphRecurrent(hidden=hdim).double()
    adj = torch.from_numpy(_chain(n).toarray())
    x = torch.randn(n_time, n, n_batch, n_in, dtype=torch.float64)
    w_x = torch.randn(4 * hdim, n_in, dtype=torch.float64, requires_grad=grad)
    b_x = torch.randn(4 * hdim, dtype=torch.float64)
    h0 = torch.randn(n, n_batch, hdim, dtype=torch.float64)
    c0 = torch.randn(n, n_batch, hdim, dtype=torch.float64)
    with torch.set_grad_enabled(grad):
        res = cell.run_inputs(x, w_x, b_x, adj, (h0, c0), return_state=True)
    assert isinstance(res, tuple)
    hs, (h_last, c_last) = res
    assert hs.requires_grad == grad
    with torch.no_grad():
        for b in range(n_batch):
            gates = (x[:, :, b] @ w_x.t() + b_x)
            ref = _autograd_rgrn(cell, gates, adj, h0[:, b], c0[:, b])
            torch.testing.assert_close(hs[:, :, b], ref)
            torch.testing.assert_close(h_last[:, b], ref[-1])
    assert torch.isfinite(c_last).all()
    if not grad:
        # Written into a given output without autograd.
        out = torch.full((n_time, n, n_batch, hdim), float("nan"), dtype=torch.float64)
        with torch.no_grad():
            got = cell.run_inputs(x, w_x, b_x, adj, (h0, c0), out=out)
        assert got.data_ptr() == out.data_ptr()
        torch.testing.assert_close(out, hs)


@pytest.mark.parametrize("n_batch", [1, 3])
def test_rgrn_inference_in_row_tiles_matches_one_pass(monkeypatch: pytest.MonkeyPatch,
                                                      n_batch: int) -> None:
    # Large graphs run an inference day in tiles of rows (uneven here: 7 rows a
    # tile). The states are those of one pass over all rows (sparse graph, float32;
    # the tiles' products may round differently) and of the equations (dense graph,
    # float64).
    from xmsgl.nn import rgrn

    torch.manual_seed(3)
    n, hdim, n_time, n_in = 40, 3, 9, 2
    x = torch.randn(n_time, n, n_batch, n_in)
    w_x, b_x = torch.randn(4 * hdim, n_in), torch.randn(4 * hdim)
    cell = GraphRecurrent(hidden=hdim)
    sparse, dense = SparseGraph(_chain(n)), torch.from_numpy(_chain(n).toarray())
    assert rgrn._row_tiles(n * n_batch, x) == [slice(None)]
    with torch.no_grad():
        whole = cell.run_inputs(x, w_x, b_x, sparse)
        monkeypatch.setattr(rgrn, "TILE_ROWS", 7)
        assert len(rgrn._row_tiles(n * n_batch, x)) == -(-n * n_batch // 7)
        tiled = cell.run_inputs(x, w_x, b_x, sparse)
        cell64 = cell.double()
        tiled64 = cell64.run_inputs(x.double(), w_x.double(), b_x.double(), dense)
    assert isinstance(whole, torch.Tensor) and isinstance(tiled, torch.Tensor)
    assert isinstance(tiled64, torch.Tensor)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)
    zeros = torch.zeros(n, hdim, dtype=torch.float64)
    for b in range(n_batch):
        gates = x[:, :, b].double() @ w_x.double().t() + b_x.double()
        torch.testing.assert_close(tiled64[:, :, b], _autograd_rgrn(cell64, gates, dense, zeros, zeros))


def test_rgrn_backward_reaches_early_inputs() -> None:
    cell = GraphRecurrent(hidden=4)
    x = torch.randn(30, 3, 1, 16, requires_grad=True)
    h = cell(x, SparseGraph(_chain(3)))
    h[-1].sum().backward()
    assert x.grad is not None and float(x.grad[0].abs().sum()) > 0


def test_attention_block_is_local_to_its_blocks() -> None:
    torch.manual_seed(0)
    blk = TemporalAttentionBlock(hidden=4, window=5, offset=0).eval()
    x = torch.randn(2, 17, 4)
    x2 = x.clone()
    x2[:, 12] += 3.0  # day 12 lies in the block [10, 15)
    y, y2 = blk(x), blk(x2)
    torch.testing.assert_close(y[:, :10], y2[:, :10])
    torch.testing.assert_close(y[:, 15:], y2[:, 15:])
    assert not torch.allclose(y[:, 10:15], y2[:, 10:15])


@pytest.mark.parametrize(("n_time", "offset"),
                         [(17, 0), (17, 2), (4, 0), (30, 2), (15, 0), (4, 2), (2, 2), (1, 2), (3, 0)])
def test_attention_block_matches_torch_attention(n_time: int, offset: int) -> None:
    # The block pads the sequence to whole spans, masks the padding, folds the output
    # projection into the values and adds the residual in the second batched
    # product; the block written plainly, with torch's own
    # scaled_dot_product_attention per span, must give the same values and
    # gradients (inputs and every parameter), at lengths on, off and below the
    # window and with a shifted first span.
    import torch.nn.functional as F

    torch.manual_seed(0)
    blk = TemporalAttentionBlock(hidden=4, window=5, offset=offset)
    for p in blk.parameters():  # away from LayerNorm's identity start
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(3, n_time, 4, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    qkv = blk.qkv(x_ref)
    starts = ([0] if 0 < offset < n_time else []) + list(range(offset if 0 < offset < n_time else 0,
                                                                n_time, 5))
    bounds = [*starts, n_time]
    parts = []
    for t0, t1 in zip(bounds[:-1], bounds[1:], strict=True):
        q, k, v = qkv[:, t0:t1].split(4, dim=-1)
        parts.append(F.scaled_dot_product_attention(q, k, v))
    ref = blk.norm(x_ref + blk.out(torch.cat(parts, dim=1)))
    out = blk(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    assert x.grad is not None and x_ref.grad is not None
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-4)


def _plain_attention(blk: TemporalAttentionBlock, x: torch.Tensor, starts: list[int]) -> torch.Tensor:
    """The block written plainly: torch's attention span by span, residual, LayerNorm."""
    import torch.nn.functional as F

    qkv = blk.qkv(x)
    bounds = [*starts, x.shape[1]]
    hdim = x.shape[-1]
    parts = []
    for t0, t1 in zip(bounds[:-1], bounds[1:], strict=True):
        q, k, v = qkv[:, t0:t1].split(hdim, dim=-1)
        parts.append(F.scaled_dot_product_attention(q, k, v))
    return blk.norm(x + blk.out(torch.cat(parts, dim=1)))


@pytest.mark.parametrize(("n_time", "offset"),
                         [(17, 0), (17, 2), (4, 0), (30, 2), (15, 0), (4, 2), (2, 2), (1, 2), (3, 0)])
@pytest.mark.parametrize("wide", [False, True])
def test_attention_block_without_autograd_matches_torch_attention(
    n_time: int, offset: int, wide: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without autograd on the CPU the block shifts all scores by their overall
    # maximum (one pass instead of a maximum per row). With scores spread wider
    # than SHARED_EXP_RANGE (weights scaled up) it must fall back to the softmax;
    # either way the values are those of attention span by span.
    from xmsgl.nn import heads

    taken: list[bool] = []
    shared_exp = heads._shared_exp

    def spy(*args: object, **kwargs: object) -> object:
        out = shared_exp(*args, **kwargs)  # type: ignore[arg-type]
        taken.append(out is not None)
        return out

    monkeypatch.setattr(heads, "_shared_exp", spy)
    torch.manual_seed(0)
    blk = TemporalAttentionBlock(hidden=4, window=5, offset=offset)
    for p in blk.parameters():
        torch.nn.init.normal_(p, std=3.0 if wide else 0.5)
    x = torch.randn(3, n_time, 4) * (4.0 if wide else 1.0)
    starts = ([0] if 0 < offset < n_time else []) + list(range(offset if 0 < offset < n_time else 0,
                                                                n_time, 5))
    with torch.no_grad():
        ref = _plain_attention(blk, x, starts)
        out = blk(x)
    torch.testing.assert_close(out, ref, atol=2e-5, rtol=1e-5)
    assert taken == [not wide]
    if wide:
        with torch.no_grad():
            scores = blk.qkv(x)[..., :4] @ blk.qkv(x)[..., 4:8].transpose(1, 2) / 2.0
        assert float(scores.max() - scores.min()) > heads.SHARED_EXP_RANGE


@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_attention_block_shared_shift_only_in_single_or_double_precision(
    dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xmsgl.nn import heads

    calls: list[int] = []
    shared_exp = heads._shared_exp

    def spy(*args: object) -> object:
        calls.append(1)
        return shared_exp(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(heads, "_shared_exp", spy)
    torch.manual_seed(0)
    blk = TemporalAttentionBlock(hidden=4, window=5, offset=2).to(getattr(torch, dtype))
    x = torch.randn(3, 12, 4, dtype=getattr(torch, dtype))
    with torch.no_grad():
        out = blk(x)
        ref = _plain_attention(blk, x, [0, 2, 7])
    assert calls == ([1] if dtype == "float64" else [])
    # bfloat16 keeps 8 bits: the two orders of operations differ by its rounding.
    tol = {"atol": 5e-2, "rtol": 5e-2} if dtype == "bfloat16" else {}
    torch.testing.assert_close(out, ref, **tol)


@pytest.mark.parametrize("shape", [(0, 10, 4), (3, 0, 4)])
def test_attention_block_takes_empty_sequences(shape: tuple[int, int, int]) -> None:
    blk = TemporalAttentionBlock(hidden=4, window=5, offset=2)
    with torch.no_grad():
        assert tuple(blk(torch.randn(*shape)).shape) == shape
    assert tuple(blk(torch.randn(*shape)).shape) == shape


def test_attention_block_without_autograd_propagates_nan() -> None:
    torch.manual_seed(0)
    blk = TemporalAttentionBlock(hidden=4, window=5, offset=0)
    x = torch.randn(2, 10, 4)
    x[1, 3, 0] = float("nan")
    with torch.no_grad():
        out = blk(x)
    # The NaN day spoils its own span of its own sequence and nothing else.
    assert bool(out[1, :5].isnan().all()) and not bool(out[1, 5:].isnan().any())
    assert not bool(out[0].isnan().any())


def test_attention_block_parameter_gradients_match_the_plain_block() -> None:
    import torch.nn.functional as F

    torch.manual_seed(1)
    blk = TemporalAttentionBlock(hidden=4, window=5, offset=2)
    for p in blk.parameters():
        torch.nn.init.normal_(p, std=0.5)
    x = torch.randn(3, 13, 4)
    grad = torch.randn(3, 13, 4)
    blk(x).backward(grad)
    got = {n: p.grad.clone() for n, p in blk.named_parameters() if p.grad is not None}
    blk.zero_grad()
    qkv = blk.qkv(x)
    parts = []
    for t0, t1 in ((0, 2), (2, 7), (7, 12), (12, 13)):
        q, k, v = qkv[:, t0:t1].split(4, dim=-1)
        parts.append(F.scaled_dot_product_attention(q, k, v))
    blk.norm(x + blk.out(torch.cat(parts, dim=1))).backward(grad)
    assert set(got) == {n for n, _ in blk.named_parameters()}
    for name, p in blk.named_parameters():
        assert p.grad is not None
        torch.testing.assert_close(got[name], p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_cross_head_shapes_for_lengths_off_the_window() -> None:
    head = CrossScaleHead(hidden=4, window=6)
    for n_time in (1, 5, 6, 13):
        z, y = head(torch.randn(3, n_time, 4))
        assert tuple(z.shape) == (3, n_time, 4) and tuple(y.shape) == (3, n_time)


@pytest.mark.parametrize("n_blocks", [1, 2, 3])
def test_cross_head_is_exact_after_its_first_needed_day(n_blocks: int) -> None:
    # Inference runs the heads from first_needed_day(first kept day): the kept days
    # must come out as from the whole sequence, and the day is the latest such.
    torch.manual_seed(0)
    head = CrossScaleHead(hidden=4, window=6, n_blocks=n_blocks).eval()
    x = torch.randn(3, 40, 4)
    z, y = head(x)
    skipped = 0
    for first in range(40):
        cut = head.first_needed_day(first)
        assert 0 <= cut <= first and cut % 6 == 0
        zc, yc = head(x[:, cut:])
        torch.testing.assert_close(yc[:, first - cut:], y[:, first:])
        torch.testing.assert_close(zc[:, first - cut:], z[:, first:])
        later = cut + 6
        if later <= first:
            _, yl = head(x[:, later:])
            assert not torch.allclose(yl[:, first - later:], y[:, first:])
        skipped += cut
    assert skipped > 0


def test_fine_head_starts_at_cross_prediction_and_stops_gradient() -> None:
    head = FineResidualHead(hidden=4)
    z = torch.randn(3, 8, 4, requires_grad=True)
    y_cross = torch.randn(3, 8, requires_grad=True)
    h_fine = torch.randn(3, 8, 4, requires_grad=True)
    y = head(z, y_cross, h_fine)
    torch.testing.assert_close(y, y_cross.detach())
    y.sum().backward()
    assert z.grad is None and y_cross.grad is None
    assert h_fine.grad is not None


def test_msgl_tasks_and_stop_gradient_of_fine_task() -> None:
    torch.manual_seed(0)
    net = MSGLNet(n_common=2, n_seg_extra=0, n_reach_extra=1, hidden=4, attn_window=5)
    graphs = {"coarse": SparseGraph(_chain(3)), "fine": SparseGraph(_chain(6)),
              "cross": SparseGraph(sp.csr_matrix(np.repeat(np.eye(3), 2, axis=0) * 1.0))}
    xs, xr = torch.randn(10, 3, 2, 2), torch.randn(10, 6, 2, 3)
    out = net(xs, xr, graphs, tasks=("coarse", "cross", "fine", "fine_only"))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "coarse": (10, 3, 2), "cross": (10, 6, 2), "fine": (10, 6, 2), "fine_only": (10, 6, 2)}
    net.zero_grad()
    xs.requires_grad_(True)
    out = net(xs, xr, graphs, tasks=("coarse", "cross", "fine", "fine_only"))
    out["fine"].sum().backward()
    # The fine task does not train the cross-scale head, and reaches the shared
    # cell through the fine graph only: the carried coarse states are stopped.
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in net.cross_head.parameters())
    assert xs.grad is None or float(xs.grad.abs().sum()) == 0
    assert net.fine_head.out.weight.grad is not None
    assert float(net.cell.recurrent.weight.grad.abs().sum()) > 0


def test_fine_head_reads_states_of_its_day_and_stops_gradient() -> None:
    torch.manual_seed(0)
    head = FineHead(hidden=4)
    h_cross = torch.randn(3, 8, 4, requires_grad=True)
    h_fine = torch.randn(3, 8, 4, requires_grad=True)
    y = head(h_cross, h_fine)
    # The same as the MLP and the linear branch written out on [h_cross, h_fine].
    u = torch.cat([h_cross, h_fine], dim=-1)
    ref = head.out(torch.nn.functional.gelu(head.first(u))).squeeze(-1) + head.linear(u).squeeze(-1)
    torch.testing.assert_close(y, ref)
    # A day's value depends on that day's states only.
    h2 = h_fine.detach().clone()
    h2[:, 5] += 1.0
    y2 = head(h_cross, h2)
    torch.testing.assert_close(y2[:, :5], y[:, :5])
    torch.testing.assert_close(y2[:, 6:], y[:, 6:])
    assert not torch.allclose(y2[:, 5], y[:, 5])
    y.sum().backward()
    assert h_cross.grad is None and h_fine.grad is not None


def test_residual_fine_head_is_kept_for_older_models() -> None:
    torch.manual_seed(0)
    net = MSGLNet(n_common=2, n_seg_extra=0, n_reach_extra=1, hidden=4, attn_window=5,
                  fine_head="residual")
    assert isinstance(net.fine_head, FineResidualHead)
    assert net.reads_attention("fine") and net.lookahead("fine") == 10
    assert not MSGLNet(2, 0, 1, hidden=4, attn_window=5).reads_attention("fine")
    assert MSGLNet(2, 0, 1, hidden=4, attn_window=5).lookahead("cross") == 10
    graphs = {"coarse": SparseGraph(_chain(3)), "fine": SparseGraph(_chain(6)),
              "cross": SparseGraph(sp.csr_matrix(np.repeat(np.eye(3), 2, axis=0) * 1.0))}
    out = net(torch.randn(10, 3, 2, 2), torch.randn(10, 6, 2, 3), graphs, tasks=("cross", "fine"))
    # Its MLP's last layer starts at zero: the fine prediction is the cross-scale one.
    torch.testing.assert_close(out["fine"], out["cross"])
    with pytest.raises(ParameterError, match="fine_head='mlp'"):
        MSGLNet(2, 0, 1, hidden=4, fine_head="mlp")


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("n_time", [0, 1])
def test_msgl_takes_windows_of_no_or_one_day(n_time: int, grad: bool) -> None:
    # A window of no days gives empty predictions of the documented shapes (the
    # cell and the heads take empty sequences), all reaches or some rows of them.
    torch.manual_seed(0)
    net = MSGLNet(n_common=2, n_seg_extra=0, n_reach_extra=1, hidden=4, attn_window=5)
    cross = sp.csr_matrix(np.repeat(np.eye(3), 2, axis=0) * 1.0)
    graphs = {"coarse": SparseGraph(_chain(3)), "fine": SparseGraph(_chain(6)),
              "cross": SparseGraph(cross)}
    xs, xr = torch.randn(n_time, 3, 2, 2), torch.randn(n_time, 6, 2, 3)
    tasks = ("coarse", "cross", "fine", "fine_only")
    rows = torch.tensor([4, 1])
    with torch.set_grad_enabled(grad):
        out = net(xs, xr, graphs, tasks=tasks)
        some = net(xs, xr, graphs, tasks=tasks[1:], rows=rows, cross=SparseGraph(cross[[4, 1]]))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "coarse": (n_time, 3, 2), "cross": (n_time, 6, 2), "fine": (n_time, 6, 2),
        "fine_only": (n_time, 6, 2)}
    for k, v in some.items():
        torch.testing.assert_close(v, out[k][:, [4, 1]])


@pytest.mark.gpu
def test_msgl_forward_on_cuda_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.manual_seed(0)
    net = MSGLNet(n_common=2, n_seg_extra=0, n_reach_extra=0, hidden=4, attn_window=5)
    graphs = {"coarse": SparseGraph(_chain(3)), "fine": SparseGraph(_chain(6)),
              "cross": SparseGraph(sp.csr_matrix(np.repeat(np.eye(3), 2, axis=0) * 1.0))}
    xs, xr = torch.randn(10, 3, 2, 2), torch.randn(10, 6, 2, 2)
    with torch.no_grad():
        cpu = net(xs, xr, graphs)
        gpu = net.cuda()(xs.cuda(), xr.cuda(), {k: g.to("cuda") for k, g in graphs.items()})
    for k in cpu:
        torch.testing.assert_close(cpu[k], gpu[k].cpu(), atol=1e-4, rtol=1e-4)


def _autograd_rgrn(cell: GraphRecurrent, gates_in: torch.Tensor, adj: torch.Tensor,
                   h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The RGrN equations written plainly, differentiated by autograd."""
    hdim = cell.hidden
    w, b = cell.recurrent.weight, cell.recurrent.bias
    out = []
    for t in range(gates_in.shape[0]):
        pre = h @ w.t() + b
        i, f, o, g = (pre[:, k * hdim:(k + 1) * hdim] + gates_in[t][:, k * hdim:(k + 1) * hdim]
                      for k in range(4))
        q = torch.tanh(pre[:, 4 * hdim:])
        c = torch.sigmoid(f) * (c + adj @ q) + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        out.append(h)
    return torch.stack(out)


class _PoisonedPool:
    """Hands out NaN-filled buffers: what reads memory before writing it shows."""

    def empty(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        return torch.full(shape, float("nan"), dtype=like.dtype, device=like.device)


@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("n_batch", [1, 3])
@pytest.mark.parametrize("projected", [False, True])
def test_rgrn_hand_written_backward_matches_autograd(
        monkeypatch: pytest.MonkeyPatch, projected: bool, n_batch: int, layout: str) -> None:
    # Every gradient of the hand-written backward (inputs, input projection, recurrent
    # weights and biases, initial states) against autograd on the plain equations,
    # one window and several side by side, on a dense and a sparse graph, with the
    # reused buffers full of NaN so that none is read before it is written.
    import xmsgl.nn.rgrn as rgrn

    monkeypatch.setattr(rgrn, "_POOL", _PoisonedPool())
    torch.manual_seed(3)
    n, hdim, n_in, n_time = 5, 3, 4, 9
    cell = GraphRecurrent(hidden=hdim).double()
    dense = torch.from_numpy(_chain(n).toarray())
    adj = dense if layout == "dense" else dense.to_sparse_csr()
    x = torch.randn(n_time, n, n_batch, n_in, dtype=torch.float64, requires_grad=True)
    w_x = torch.randn(4 * hdim, n_in, dtype=torch.float64, requires_grad=True)
    b_x = torch.randn(4 * hdim, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(n, n_batch, hdim, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(n, n_batch, hdim, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(n_time, n, n_batch, hdim, dtype=torch.float64)
    leaves = [x, w_x, b_x, h0, c0, cell.recurrent.weight, cell.recurrent.bias]

    def grads(hs: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.autograd.grad((hs * weights).sum(), leaves))

    if projected:
        res = cell.run_inputs(x, w_x, b_x, adj, (h0, c0))
    else:
        res = cell(x @ w_x.t() + b_x, adj, (h0, c0))
    assert isinstance(res, torch.Tensor)
    ref = torch.stack([_autograd_rgrn(cell, x[:, :, b] @ w_x.t() + b_x, dense, h0[:, b], c0[:, b])
                       for b in range(n_batch)], dim=2)
    torch.testing.assert_close(res, ref)
    for got, want in zip(grads(res), grads(ref)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("rows", [[3, 0, 4], [1, 1, 2]])
def test_select_rows_gradient_matches_index_select(
        monkeypatch: pytest.MonkeyPatch, rows: list[int]) -> None:
    # The gradient lands in a reused buffer (here full of NaN before it is zeroed);
    # a repeated row's gradients add up, as index_select's do.
    import xmsgl.nn.rgrn as rgrn

    monkeypatch.setattr(rgrn, "_POOL", _PoisonedPool())
    torch.manual_seed(0)
    x = torch.randn(4, 5, 2, 3, dtype=torch.float64, requires_grad=True)
    idx = torch.tensor(rows)
    w = torch.randn(4, len(rows), 2, 3, dtype=torch.float64)
    got = rgrn.select_rows(x, 1, idx)
    want = x.index_select(1, idx)
    torch.testing.assert_close(got, want)
    (g_got,) = torch.autograd.grad((got * w).sum(), x)
    (g_want,) = torch.autograd.grad((want * w).sum(), x)
    torch.testing.assert_close(g_got, g_want)
    with torch.no_grad():
        assert not rgrn.select_rows(x, 1, idx).requires_grad


def test_a_state_of_any_layout_is_taken_and_a_graph_of_another_dtype_is_refused() -> None:
    # The memory is made contiguous before the diffusion views it per node; a graph
    # whose dtype is not the cell's is a ParameterError, not torch's dtype message.
    import scipy.sparse as sp

    from xmsgl.exceptions import ParameterError
    from xmsgl.nn import GraphRecurrent, SparseGraph

    torch.manual_seed(0)
    n, b, hdim = 6, 3, 4
    cell = GraphRecurrent(hdim)
    graph = SparseGraph(sp.random(n, n, density=0.4, random_state=0, format="csr"))
    x = torch.randn(5, n, b, 4 * hdim)
    h0, c0 = torch.randn(hdim, n, b).permute(1, 2, 0), torch.randn(hdim, n, b).permute(1, 2, 0)
    assert not c0.is_contiguous()
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            got = cell(x, graph, state=(h0, c0))
            ref = cell(x, graph, state=(h0.contiguous(), c0.contiguous()))
        torch.testing.assert_close(got, ref)
    with pytest.raises(ParameterError, match="graph's weights are torch.float32 but the cell's are "
                                             "torch.float64"):
        cell.double()(x.double(), graph)


def test_sparse_tensors_built_in_one_thread_leave_another_threads_warnings_alone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Python's warning filters are process-wide. The graph products' construction
    # silenced every UserWarning while it ran, so in a threaded dask run a block
    # building its graphs swallowed what another block warned of at that moment (a
    # lazy downscale's InputRangeWarning, said once per call, was lost in 12 of 80 runs
    # with 16 threads). Only torch's notes on its sparse tensors are silenced now.
    import threading
    import warnings

    import xmsgl.nn.rgrn as rgrn
    from xmsgl.exceptions import InputRangeWarning

    inside, done = threading.Event(), threading.Event()
    real = rgrn._csr

    def held(m: sp.csr_matrix) -> torch.Tensor:
        inside.set()  # in the construction's filters until the main thread has warned
        assert done.wait(30)
        return real(m)

    monkeypatch.setattr(rgrn, "_csr", held)
    builder = threading.Thread(target=rgrn._to_torch_csr, args=(_chain(4), None))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        builder.start()
        assert inside.wait(30)
        warnings.warn("inputs beyond their training range", InputRangeWarning, stacklevel=1)
        warnings.warn("a note of the caller's", UserWarning, stacklevel=1)
        done.set()
        builder.join(30)
        with rgrn.quiet_sparse_notes():
            warnings.warn("Sparse CSR tensor support is in beta state. If you miss...", UserWarning,
                          stacklevel=1)
            warnings.warn("Sparse invariant checks are implicitly disabled. Memory errors...",
                          UserWarning, stacklevel=1)
    assert [str(w.message) for w in said] == ["inputs beyond their training range",
                                              "a note of the caller's"]
