"""The recurrent graph cell (RGrN) shared by the coarse and the fine river graphs.

The cell is an LSTM whose memory also receives, every day, a diffusion of a
transformed hidden state over the river graph (Jia et al. 2021)::

    q_t = tanh(h_{t-1} W_q + b_q)
    c_t = f_t * (c_{t-1} + A q_t) + i_t * g_t
    h_t = o_t * tanh(c_t)

The adjacency ``A`` is an argument of :meth:`GraphRecurrent.forward`, never a
parameter, so one set of weights runs on any graph. States are laid out as
``(N, B, H)``: ``B`` windows of the same network run side by side and a day of all
of them is one sparse product ``A @ X`` with ``X`` the ``(N, B*H)`` view of the
state, which costs no copy.
"""

from __future__ import annotations

import contextlib
import functools
import math
import mmap
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from xmsgl.exceptions import ParameterError, ignoring

#: The dtype of every network's parameters, given to each layer as it is made: a
#: caller's ``torch.set_default_dtype(torch.float64)`` changes neither what a seed
#: draws nor the dtype the inputs are given in.
PARAM_DTYPE = torch.float32

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = ["GraphRecurrent", "SparseGraph", "graph_product", "release_buffers"]


class _SparseProduct(torch.autograd.Function):
    """``A @ X`` whose backward multiplies by a precomputed ``A^T``.

    torch's own backward of a sparse product transposes (and for CSR re-sorts)
    ``A`` on every call: once per day and window in a recurrent loop.
    """

    @staticmethod
    def forward(ctx: Any, adj: torch.Tensor, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj_t = adj_t
        return torch.sparse.mm(adj, x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, torch.Tensor]:
        return None, None, torch.sparse.mm(ctx.adj_t, grad.contiguous())


class SparseGraph:
    """A sparse matrix with its transpose, for fast products in both directions.

    Parameters
    ----------
    matrix : scipy.sparse matrix
        The weights (rows are updated from columns).
    device : torch.device or str, optional
        Where to keep the tensors.
    keep_host : bool, default False
        Keep the host (scipy) matrix, from which the transpose (made on first use,
        for backward) is built, instead of reading the device's arrays back: on an
        accelerator each read-back synchronises. The matrix must not be changed
        afterwards.

    Examples
    --------
    >>> import scipy.sparse as sp, torch
    >>> g = SparseGraph(sp.identity(3, format="csr"))
    >>> g.shape
    (3, 3)
    """

    def __init__(self, matrix: Any, device: torch.device | str | None = None, *,
                 keep_host: bool = False) -> None:
        self.shape = (int(matrix.shape[0]), int(matrix.shape[1]))
        csr = matrix.tocsr()
        self.adj = _to_torch_csr(csr, device)
        # The transpose serves backward only: made on first use, so that inference
        # (a 10^5-reach graph holds some 9 million entries) never builds it. With
        # keep_host it is made from the host matrix instead of the device's arrays read
        # back (training builds a small cross matrix every step, and on an accelerator
        # each read-back synchronises). The caller hands the matrix over: not to be
        # changed afterwards.
        self._adj_t: torch.Tensor | None = None
        self._host = csr if keep_host else None

    @property
    def adj_t(self) -> torch.Tensor:
        """``A^T`` in the layout of :attr:`adj`, made on first use and kept."""
        if self._adj_t is None:
            m = self._host
            if m is None:
                crow, col, val = (t.cpu().numpy() for t in
                                  (self.adj.crow_indices(), self.adj.col_indices(), self.adj.values()))
                m = sp.csr_matrix((val, col, crow), shape=self.shape)
            self._adj_t = _to_torch_csr(m.T.tocsr(), self.adj.device)
        return self._adj_t

    def to(self, device: torch.device | str) -> SparseGraph:
        out = SparseGraph.__new__(SparseGraph)
        out.shape = self.shape
        out.adj = self.adj.to(device)
        out._adj_t = None if self._adj_t is None else self._adj_t.to(device)
        out._host = self._host
        return out


#: torch's notes on its sparse tensors (CSR support "in beta", invariant checks off):
#: the products used here are stable. Only these are silenced. Python's warning filters
#: are process-wide, so a broader filter entered by one thread of a threaded dask run
#: also swallowed what another thread warned of meanwhile (a lazy downscale's
#: InputRangeWarning was lost in 12 of 80 runs with 16 threads).
SPARSE_NOTES = r"Sparse (invariant checks are implicitly disabled|\w+ tensor support is in beta)"


@contextlib.contextmanager
def quiet_sparse_notes() -> Iterator[None]:
    """Silence torch's notes on its sparse tensors (:data:`SPARSE_NOTES`), nothing else."""
    with ignoring(UserWarning, SPARSE_NOTES):
        yield


def _to_torch_csr(m: Any, device: torch.device | str | None) -> torch.Tensor:
    m = m if m.has_sorted_indices else m.sorted_indices()  # _csr copies the arrays
    with quiet_sparse_notes():
        t = _csr(m)
    return t if device is None else t.to(device)


def _csr(m: Any) -> torch.Tensor:
    # 32-bit indices where they fit: the CPU sparse product (MKL) works on 32-bit
    # indices and otherwise converts all of them on every call.
    itype = np.int32 if max(m.nnz, *m.shape) < np.iinfo(np.int32).max else np.int64
    # Copies: the tensor never shares memory with the caller's matrix.
    return torch.sparse_csr_tensor(
        torch.from_numpy(np.array(m.indptr, dtype=itype)),
        torch.from_numpy(np.array(m.indices, dtype=itype)),
        torch.from_numpy(np.array(m.data, dtype=np.float32)),
        size=m.shape,
        check_invariants=False,
        device="cpu",  # moved where asked; not a caller's default device first
    )


def graph_product(graph: SparseGraph | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``A @ x`` for a sparse ``(N, M)`` graph and a dense ``(M, ...)`` tensor.

    Trailing dimensions are flattened into one so that all windows and hidden units
    share a single sparse product. ``graph`` is a :class:`SparseGraph` (fast
    backward) or a torch sparse tensor.

    Examples
    --------
    >>> import torch
    >>> a = torch.eye(3).to_sparse()
    >>> graph_product(a, torch.ones(3, 2, 4)).shape
    torch.Size([3, 2, 4])
    """
    tail = x.shape[1:]
    flat = x.reshape(x.shape[0], -1)
    if isinstance(graph, SparseGraph):
        if flat.requires_grad:
            out = _SparseProduct.apply(graph.adj, graph.adj_t, flat)
        else:
            out = torch.sparse.mm(graph.adj, flat)
        n_rows = graph.shape[0]
    else:
        out = torch.sparse.mm(graph, flat)
        n_rows = graph.shape[0]
    return out.reshape((n_rows, *tail))


def _transpose(adj: torch.Tensor) -> torch.Tensor:
    """``A^T`` of a torch sparse (or dense) matrix, in a layout ``sparse.mm`` takes."""
    if adj.layout == torch.sparse_coo:
        return adj.t().coalesce()
    if adj.layout == torch.sparse_csr:
        with quiet_sparse_notes():
            return adj.to_sparse_coo().t().coalesce().to_sparse_csr()
    return adj.t()


def _matmul(adj: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.sparse.mm(adj, x) if adj.layout != torch.strided else adj @ x


class _BlockPool:
    """Large CPU buffers of the recurrence, kept and reused from one call to the next.

    A recurrent step saves hundreds of megabytes of activations per window. Fresh
    memory of that size comes from the operating system zeroed page by page on
    first touch (about 0.7 s per GB here, a third of the cell's time), and the C
    allocator hands it back when it is freed, so every training step paid it
    again. Blocks are anonymous memory maps (``mmap``) viewed as tensors: a block is
    free again as soon as no tensor views it (its reference count drops back),
    whether autograd freed the saved activations or the caller dropped an output.
    """

    #: Smaller requests go to the ordinary allocator, which reuses them well.
    min_bytes = 1 << 22
    #: Blocks kept at most; the oldest unused ones are dropped beyond it. An MGDA-UB
    #: training step holds 13 at once (each scale's gates, states, the memory block
    #: and the days' ``[h_{t-1}, x_t, 1]`` from forward to backward, the gradients);
    #: fewer makes every step allocate (and the system zero) new ones.
    max_blocks = 16
    #: New blocks from this size on have their pages touched when made (see
    #: :meth:`_new_block`).
    fill_bytes = 1 << 26

    def __init__(self) -> None:
        self.blocks: list[mmap.mmap | bytearray] = []
        self.lock = threading.Lock()

    def empty(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """An uninitialized tensor of ``shape`` with the dtype and device of ``like``."""
        nbytes = math.prod(shape) * like.element_size()
        if like.device.type != "cpu" or nbytes < self.min_bytes:
            return like.new_empty(shape)
        with self.lock:
            view = self._reuse(nbytes, like.dtype, shape)
        if view is not None:
            return view
        # A new block is made outside the lock: filling a large one takes a while,
        # and other threads (dask's workers) go on taking and making theirs. The
        # view exists before the block joins the list, so no one else takes it.
        block = self._new_block(nbytes)
        view = self._view(block, like.dtype, shape)
        with self.lock:
            self.blocks.append(block)
            if len(self.blocks) > self.max_blocks:
                for i in range(len(self.blocks)):
                    if self._unused(i):
                        del self.blocks[i]
                        break
        return view

    def _reuse(self, nbytes: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor | None:
        # The smallest free block that holds the request without wasting more than a
        # third of it: blocks of a river network differ a little in size.
        best = None
        for i in range(len(self.blocks)):
            size = len(self.blocks[i])
            if nbytes <= size <= nbytes * 4 // 3 and self._unused(i) and (
                    best is None or size < len(self.blocks[best])):
                best = i
        if best is not None:
            block = self.blocks.pop(best)
            self.blocks.append(block)
            return self._view(block, dtype, shape)
        return None

    @classmethod
    def _new_block(cls, nbytes: int) -> mmap.mmap | bytearray:
        """Fresh memory of ``nbytes``: an anonymous memory map.

        A map costs nothing to create; its pages are zeroed by the system on first
        touch. From :attr:`fill_bytes` on they are touched here by one parallel fill
        (a ``bytearray`` zeroes itself on one thread: 2.9 GB, the states of one year
        of 10^5 reaches, took 1.5-8 s that way against 0.6-1.1 s); smaller maps are
        touched by the first operation that writes them. A ``bytearray`` is used
        only where no map can be made: it zeroes itself while holding Python's
        global lock, which stalled the other dask worker threads (a lazy run of 10^5
        reaches was about 9% slower with ``bytearray`` blocks under 64 MiB).
        """
        try:
            # Private: after a fork (multiprocessing's default start on Linux, data
            # loader workers) each process writes pages of its own. A shared map made
            # parent and child write the same pages, and each reused blocks the other
            # still read, since a block's use is known from this process's references.
            private = getattr(mmap, "MAP_PRIVATE", None)
            block: mmap.mmap | bytearray = (mmap.mmap(-1, nbytes) if private is None
                                            else mmap.mmap(-1, nbytes, flags=private))
        except (OSError, ValueError, OverflowError):
            return bytearray(nbytes)
        if nbytes >= cls.fill_bytes:
            torch.frombuffer(block, dtype=torch.uint8).zero_()
        return block

    def release(self) -> int:
        """Drop the free blocks (those no tensor views); returns the bytes dropped.

        Training keeps them from one step to the next; a dask worker that has
        finished a block of the network gives them back before the next one.
        """
        with self.lock:
            keep, dropped = [], 0
            for i in range(len(self.blocks)):
                if self._unused(i):
                    dropped += len(self.blocks[i])
                else:
                    keep.append(self.blocks[i])
            self.blocks = keep
        return dropped

    def _unused(self, i: int) -> bool:
        # Referenced by the list and by getrefcount's argument only: no tensor views it.
        return sys.getrefcount(self.blocks[i]) <= 2

    @staticmethod
    def _view(block: mmap.mmap | bytearray, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.frombuffer(block, dtype=dtype, count=math.prod(shape)).view(shape)


_POOL = _BlockPool()


def _tanh_scale(weight: torch.Tensor, hdim: int) -> torch.Tensor:
    """Per-gate factors 1 (sigmoid gates i, f, o) and 2 (tanh blocks g, q).

    ``tanh(x) = 2 sigmoid(2x) - 1``; with the tanh blocks' weights doubled (exact
    in floating point) all five blocks take one sigmoid over a contiguous row. (On
    an AMD EPYC torch's CPU sigmoid ran about three times faster than its tanh; on
    an Intel Xeon, torch 2.13, the two run at about the same speed.)
    """
    scale = weight.new_ones(5 * hdim)
    scale[3 * hdim :] = 2.0
    return scale


def _gate_inputs(x: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """What each day's recurrent product is added to, from projected inputs.

    ``x`` is ``(T, M, 4H)``, the inputs already projected to the gate blocks i, f, o,
    g; the result ``(T, M, 5H)``, in a reused buffer, adds the block q (no input),
    every block gets the recurrent bias, and the tanh blocks are doubled (see
    :func:`_tanh_scale`).
    """
    n_time, n_rows, _ = x.shape
    h5 = bias.shape[0]
    h4 = h5 // 5 * 4
    gates = _POOL.empty((n_time, n_rows, h5), x)
    bias_s = bias * scale
    torch.addcmul(bias_s[:h4], x, scale[:h4], out=gates[..., :h4])
    gates[..., h4:] = bias_s[h4:]
    return gates


def _diffuse_add(c: torch.Tensor, adj: torch.Tensor, q: torch.Tensor, out: torch.Tensor) -> None:
    """``out = c + A @ q`` for (N, K) views, in one product where the layout allows."""
    if adj.layout in (torch.sparse_csr, torch.strided):
        torch.addmm(c, adj, q, out=out)
    else:
        torch.add(c, _matmul(adj, q), out=out)


def _product_into(adj: torch.Tensor, x: torch.Tensor, out: torch.Tensor) -> None:
    """``out = A @ x``, written straight into a (possibly strided) view on CPU."""
    if adj.layout in (torch.sparse_csr, torch.strided) and adj.device.type == "cpu":
        # beta=0: what ``out`` held (uninitialized memory, NaN included) is ignored.
        torch.addmm(out, adj, x, beta=0, out=out)
    else:
        out.copy_(_matmul(adj, x))


def _gates(a: torch.Tensor, minus_one: torch.Tensor) -> None:
    """Pre-activations ``a`` (M, 5H) into the gates ``[i, f, o, g, q]``, in place."""
    h3 = a.shape[1] // 5 * 3
    a.sigmoid_()
    # tanh(x) = 2 sigmoid(2x) - 1 for the blocks g and q, in one pass.
    torch.add(minus_one, a[:, h3:], alpha=2.0, out=a[:, h3:])


def _update(
    a: torch.Tensor, c: torch.Tensor, m: torch.Tensor, tc: torch.Tensor, minus_one: torch.Tensor,
    h_out: torch.Tensor,
) -> torch.Tensor:
    """The memory ``c`` from the gates ``a`` and ``m = c_{t-1} + A q_t``, ``tc =
    tanh(c_t)`` and ``h_t`` into ``h_out``, all in place and row by row."""
    hdim = c.shape[1]
    h3 = 3 * hdim
    torch.mul(a[:, hdim : 2 * hdim], m, out=c)
    c.addcmul_(a[:, :hdim], a[:, h3 : h3 + hdim])
    # tanh(c) through the sigmoid, into the contiguous tc.
    torch.mul(c, 2.0, out=tc).sigmoid_()
    torch.add(minus_one, tc, alpha=2.0, out=tc)
    return torch.mul(a[:, 2 * hdim : h3], tc, out=h_out)


def _q_nodes(a: torch.Tensor, q: torch.Tensor | None, n_node: int) -> torch.Tensor:
    """The diffused block q of the gates as (nodes, windows x H): read in place from
    ``a`` when ``q`` is None, copied into ``q`` first otherwise (see :func:`_day_buffers`)."""
    h4 = a.shape[1] // 5 * 4
    if q is None:
        return a[:, h4:]
    q.copy_(a[:, h4:])
    return q.view(n_node, -1)


def _day(
    a: torch.Tensor, c: torch.Tensor, m: torch.Tensor, tc: torch.Tensor, q: torch.Tensor | None,
    adj: torch.Tensor, n_node: int, minus_one: torch.Tensor, h_out: torch.Tensor,
) -> torch.Tensor:
    """One day from the pre-activations ``a`` (M, 5H), in place; returns ``h_t``.

    ``a`` becomes the gates ``[i, f, o, g, q]``, ``c`` the new memory, ``m`` holds
    ``c_{t-1} + A q_t`` and ``tc`` ``tanh(c_t)``; ``h_t`` goes to ``h_out``. The
    diffused block q is read in place from ``a`` when ``q`` is None, and copied into
    ``q`` first otherwise (see :func:`_day_buffers`).
    """
    _gates(a, minus_one)
    _diffuse_add(c.view(n_node, -1), adj, _q_nodes(a, q, n_node), m.view(n_node, -1))
    return _update(a, c, m, tc, minus_one, h_out)


def _run_days(
    gates: torch.Tensor,
    weight: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    adj: torch.Tensor,
    n_node: int,
    save: bool,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
    """The recurrence over days on projected inputs, in place in ``gates``.

    ``gates`` is ``(T, M, 5H)`` from :func:`_gate_inputs`, with ``M`` = nodes x
    windows; ``h0``/``c0`` are ``(M, H)``. Each day's recurrent product is added to
    its row of ``gates`` in place, and the nonlinearities turn it into the gates
    ``[i, f, o, g, q]``. With ``save``, ``gates`` and a ``(T, 2, M, H)`` block with ``m
    = c_{t-1} + A q_t`` and ``tanh(c_t)`` (each day's contiguous, so that the sparse
    product writes ``m`` directly) are what the backward pass needs; nothing else is
    stored. The hidden states go to ``out`` (T, M, H) when given.
    """
    n_time, n_rows, _ = gates.shape
    hdim = h0.shape[1]
    w_t = (weight * _tanh_scale(weight, hdim)[:, None]).t()
    hs, c, q, minus_one = _day_buffers(gates, n_time, n_node, h0, c0, out)
    saved_mt = _POOL.empty((n_time, 2, n_rows, hdim), gates) if save else None
    m, tc = gates.new_empty(n_rows, hdim), gates.new_empty(n_rows, hdim)
    h = h0
    for t in range(n_time):
        if saved_mt is not None:
            m, tc = saved_mt[t, 0], saved_mt[t, 1]
        a = gates[t]
        a.addmm_(h, w_t)
        h = _day(a, c, m, tc, q, adj, n_node, minus_one, hs[t])
    return hs, c, None if saved_mt is None else (gates, saved_mt)


def _day_buffers(
    like: torch.Tensor, n_time: int, n_node: int, h0: torch.Tensor, c0: torch.Tensor,
    out: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """What every day loop of :func:`_day` needs: the states ``hs`` (T, M, H) (``out``
    when given), the memory ``c`` (a copy of ``c0``), the buffer for the diffused
    block q (None where it is read in place) and the constant -1."""
    n_rows, hdim = h0.shape
    hs = out if out is not None else _POOL.empty((n_time, n_rows, hdim), like)
    # With one window the diffused block q is read in place (rows of one node are
    # contiguous); with several, a node's rows are not, and q is copied first.
    # (On CPU only, where the sparse product reads a strided block without a copy.)
    in_place = n_rows == n_node and like.device.type == "cpu"
    q = None if in_place else like.new_empty(n_rows, hdim)
    # Contiguous whatever the layout of the state given: the memory is viewed as
    # (nodes, windows x H) by the diffusion.
    return hs, c0.clone(memory_format=torch.contiguous_format), q, like.new_full((), -1.0)


def _stacked_weight(
    weight: torch.Tensor, bias: torch.Tensor, w_x: torch.Tensor, b_x: torch.Tensor,
) -> torch.Tensor:
    """``(H + F + 1, 5H)``: the recurrent weights, the input projection and every bias
    stacked, so that ``[h_{t-1}, x_t, 1] @`` it is a day's pre-activations (the tanh
    blocks doubled, see :func:`_tanh_scale`; the block q takes no input)."""
    h5, hdim = weight.shape
    h4, n_feat = w_x.shape
    scale = _tanh_scale(weight, hdim)
    full = weight.new_zeros(h5, hdim + n_feat + 1)
    full[:, :hdim] = weight
    full[:h4, hdim : hdim + n_feat] = w_x
    full[:, -1] = bias
    full[:h4, -1] += b_x
    return (full * scale[:, None]).t()


def _run_days_inputs(
    x: torch.Tensor,
    w_x: torch.Tensor,
    b_x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    h0: torch.Tensor,
    c0: torch.Tensor,
    adj: torch.Tensor,
    n_node: int,
    save: bool,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """The recurrence over days on raw inputs ``x`` (T, M, F).

    A day's pre-activations are one product ``[h_{t-1}, x_t, 1] @ W`` with the
    recurrent weights, the input projection and the biases stacked in ``W`` (see
    :func:`_stacked_weight`): no projection of all days into a buffer first, which
    would be written once and read back from memory a day at a time. Training
    (``save``) keeps ``[h_{t-1}, x_t, 1]`` of every day, which is also what the
    backward pass multiplies the gradients by, with the gates and the ``(T, 2, M,
    H)`` block of :func:`_run_days`; inference reuses one day's buffers throughout.
    The hidden states go to ``out`` (T, M, H) when given.
    """
    n_time, n_rows, n_feat = x.shape
    hdim = h0.shape[1]
    width = hdim + n_feat + 1
    w_all = _stacked_weight(weight, bias, w_x, b_x)
    hs, c, q, minus_one = _day_buffers(x, n_time, n_node, h0, c0, out)
    if save:
        aug = _POOL.empty((n_time, n_rows, width), x)
        aug[:, :, hdim : hdim + n_feat] = x
        aug[:, :, -1] = 1.0
        aug[0, :, :hdim] = h0
        gates = _POOL.empty((n_time, n_rows, 5 * hdim), x)
        saved_mt = _POOL.empty((n_time, 2, n_rows, hdim), x)
        # The steps of :func:`_day` written out on every day's views, made in a few
        # calls (see _Recurrence.backward): the same operations in the same order.
        days_aug, days_gates, days_hs = aug.unbind(0), gates.unbind(0), hs.unbind(0)
        days_m, days_tc = saved_mt[:, 0].unbind(0), saved_mt[:, 1].unbind(0)
        h_prev = aug[..., :hdim].unbind(0)
        a_i, a_f, a_o, a_g = (gates[..., k * hdim : (k + 1) * hdim].unbind(0) for k in range(4))
        a_tanh, a_q = gates[..., 3 * hdim :].unbind(0), gates[..., 4 * hdim :].unbind(0)
        c_nodes = c.view(n_node, -1)
        for t in range(n_time):
            a = torch.mm(days_aug[t], w_all, out=days_gates[t])
            a.sigmoid_()
            torch.add(minus_one, a_tanh[t], alpha=2.0, out=a_tanh[t])
            m, tc = days_m[t], days_tc[t]
            q_t = a_q[t] if q is None else q.copy_(a_q[t]).view(n_node, -1)
            _diffuse_add(c_nodes, adj, q_t, m.view(n_node, -1))
            torch.mul(a_f[t], m, out=c)
            c.addcmul_(a_i[t], a_g[t])
            torch.mul(c, 2.0, out=tc).sigmoid_()
            torch.add(minus_one, tc, alpha=2.0, out=tc)
            h = torch.mul(a_o[t], tc, out=days_hs[t])
            if t + 1 < n_time:
                h_prev[t + 1].copy_(h)
        return hs, c, (gates, saved_mt, aug)
    # One day's buffers, reused from one call to the next where they are large: a
    # run over blocks of days (see xmsgl.train._fine_by_chunks) would otherwise have
    # the system zero fresh ones, page by page, every block.
    day_in = _POOL.empty((n_rows, width), x)
    day_in[:, :hdim] = h0
    day_in[:, -1] = 1.0
    a = _POOL.empty((n_rows, 5 * hdim), x)
    m, tc = _POOL.empty((n_rows, hdim), x), _POOL.empty((n_rows, hdim), x)
    # A large graph's day runs in tiles of rows: each tile's product, gates and state
    # update run while its rows are in cache; only the diffusion spans the graph.
    # Each tile's views of the day's buffers, taken once for all days.
    tiles = [(r, day_in[r], day_in[r, hdim : hdim + n_feat], day_in[r, :hdim], a[r], c[r], m[r],
              tc[r]) for r in _row_tiles(n_rows, x)]
    for t in range(n_time):
        for r, d_in, d_x, _, a_r, _, _, _ in tiles:
            d_x.copy_(x[t, r])
            torch.mm(d_in, w_all, out=a_r)
            _gates(a_r, minus_one)
        _diffuse_add(c.view(n_node, -1), adj, _q_nodes(a, q, n_node), m.view(n_node, -1))
        for r, _, _, d_h, a_r, c_r, m_r, tc_r in tiles:
            _update(a_r, c_r, m_r, tc_r, minus_one, d_h)
            hs[t, r] = d_h
    return hs, c, None


#: Rows per tile of an inference day on a graph of more than twice as many rows
#: (CPU): a tile's pre-activations (5H floats a row) then stay in a core's cache.
TILE_ROWS = 8192


def _row_tiles(n_rows: int, like: torch.Tensor) -> list[slice]:
    """Row slices of :data:`TILE_ROWS`, or one slice of all rows where one pass is
    best (small graphs, devices other than the CPU)."""
    if like.device.type != "cpu" or n_rows <= 2 * TILE_ROWS:
        return [slice(None)]
    return [slice(r0, min(r0 + TILE_ROWS, n_rows)) for r0 in range(0, n_rows, TILE_ROWS)]


class _Recurrence(torch.autograd.Function):
    """All days of the RGrN with a hand-written backward pass.

    Autograd would record about twenty small operations per day, each with its
    own output allocation and bookkeeping; here a day is about a dozen operations
    forward and twenty backward into reused buffers.

    With ``w_x`` given, ``x`` holds the raw inputs (T, M, F) and a day's
    pre-activations come from one product with the recurrent weights, the input
    projection and the biases stacked (:func:`_run_days_inputs`). In backward the
    gradients of the recurrent weights and bias and of the projection's weights
    and bias all come from one matrix product, ``dpre.T @ [h_prev, x, 1]`` over
    all days, with ``[h_prev, x, 1]`` kept from forward. (Left to autograd, the projection's weight gradient is a product
    with a million-row inner dimension and eleven columns that runs at a tenth of
    that speed, after a copy of the strided gate gradients, plus two separate
    reductions for the biases: together about 40% of a training step.) Without
    ``w_x``, ``x`` is already projected (T, M, 4H).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        w_x: torch.Tensor | None,
        b_x: torch.Tensor | None,
        weight: torch.Tensor,
        bias: torch.Tensor,
        h0: torch.Tensor,
        c0: torch.Tensor,
        adj: torch.Tensor,
        adj_t: torch.Tensor | None,
        n_node: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        projected = w_x is not None
        if w_x is not None:
            assert b_x is not None
            hs, c, saved = _run_days_inputs(x, w_x, b_x, weight, bias, h0, c0, adj, n_node, save=True)
            assert saved is not None
            # ``[h_{t-1}, x_t, 1]`` of every day (the last of ``saved``) stands for
            # ``h0``, ``hs`` and ``x`` in backward.
            ctx.save_for_backward(weight, *saved, w_x)
        else:
            gates = _gate_inputs(x, bias, _tanh_scale(weight, h0.shape[1]))
            hs, c, saved = _run_days(gates, weight, h0, c0, adj, n_node, save=True)
            del gates
            assert saved is not None
            ctx.save_for_backward(weight, *saved, h0, hs)
        ctx.projected = projected
        ctx.adj_t = adj_t if adj_t is not None else _transpose(adj)
        ctx.n_node = n_node
        return hs, c

    @staticmethod
    def backward(ctx: Any, grad_hs: torch.Tensor, grad_c: torch.Tensor) -> tuple[Any, ...]:
        if ctx.projected:
            weight, saved_a, saved_mt, aug, w_x = ctx.saved_tensors
        else:
            weight, saved_a, saved_mt, h0, hs = ctx.saved_tensors
        adj_t, n_node = ctx.adj_t, ctx.n_node
        n_time, n_rows, h5 = saved_a.shape
        hdim = h5 // 5
        h3, h4 = 3 * hdim, 4 * hdim
        # d(activation)/d(pre-activation) = alpha + a * (beta - a): a(1 - a) for the
        # sigmoid gates i, f, o and 1 - a^2 for the tanh blocks g, q.
        alpha = saved_a.new_zeros(h5)
        alpha[h3:] = 1.0
        beta = 1.0 - alpha
        dpre = _POOL.empty((n_time, n_rows, h5), saved_a)
        deriv = saved_a.new_empty(n_rows, h5)
        tmp = saved_a.new_empty(n_rows, hdim)
        dh = saved_a.new_zeros(n_rows, hdim)
        dc = grad_c.contiguous().clone()
        # Every day's views of every block, made in a few calls rather than a few
        # dozen indexing operations a day (their cost rivals the arithmetic's).
        days_a = saved_a.unbind(0)
        a_i, a_f, a_o, a_g = (saved_a[..., k * hdim : (k + 1) * hdim].unbind(0) for k in range(4))
        days_m, days_tc = saved_mt[:, 0].unbind(0), saved_mt[:, 1].unbind(0)
        days_d = dpre.unbind(0)
        d_i, d_f, d_o, d_g, d_q = (dpre[..., k * hdim : (k + 1) * hdim].unbind(0) for k in range(5))
        days_g = grad_hs.unbind(0)
        direct = n_rows == n_node  # one window: the product writes its block of d directly
        dc_nodes = dc.view(n_node, -1)
        for t in range(n_time - 1, -1, -1):
            a, tc = days_a[t], days_tc[t]
            torch.sub(beta, a, out=deriv)
            deriv.mul_(a).add_(alpha)
            dh.add_(days_g[t])
            torch.mul(dh, tc, out=d_o[t])
            torch.mul(dh, a_o[t], out=tmp)
            dc.add_(tmp)
            tmp.mul_(tc)
            dc.addcmul_(tmp, tc, value=-1.0)
            torch.mul(dc, a_g[t], out=d_i[t])
            torch.mul(dc, days_m[t], out=d_f[t])
            torch.mul(dc, a_i[t], out=d_g[t])
            dc.mul_(a_f[t])
            if direct:
                _product_into(adj_t, dc, d_q[t])
            else:
                d_q[t].copy_(_matmul(adj_t, dc_nodes).view(n_rows, hdim))
            d = days_d[t]
            d.mul_(deriv)
            torch.mm(d, weight, out=dh)
        # All weight and bias gradients in one product: [h_prev, x, 1] side by side.
        if ctx.projected:
            n_feat = aug.shape[-1] - hdim - 1
        else:
            n_feat = 0
            aug = _POOL.empty((n_time, n_rows, hdim + 1), saved_a)
            aug[0, :, :hdim] = h0
            if n_time > 1:
                aug[1:, :, :hdim] = hs[:-1]
            aug[:, :, -1] = 1.0
        prod = dpre.view(-1, h5).t() @ aug.view(-1, aug.shape[-1])
        del aug
        grad_w = prod[:, :hdim].contiguous()
        grad_b = prod[:, -1].contiguous()
        needs = ctx.needs_input_grad
        if not ctx.projected:
            return dpre[..., :h4], None, None, grad_w, grad_b, dh, dc, None, None, None
        grad_x = (dpre[..., :h4] @ w_x) if needs[0] else None
        grad_wx = prod[:h4, hdim : hdim + n_feat].contiguous() if needs[1] else None
        grad_bx = prod[:h4, -1].contiguous() if needs[2] else None
        return grad_x, grad_wx, grad_bx, grad_w, grad_b, dh, dc, None, None, None


class GraphRecurrent(nn.Module):
    """The RGrN recurrence, with no per-day projection operations.

    Parameters
    ----------
    hidden : int, default 20
        Number of hidden units ``H``.

    Notes
    -----
    :meth:`forward` takes inputs already projected to the four gate blocks (one
    large matrix product for all days instead of one per day);
    :meth:`run_inputs`, the models' path, takes the raw inputs and adds their
    projection to each day's recurrent product. With autograd on, all days run
    inside one :class:`torch.autograd.Function` with a hand-written backward pass
    (no per-day graph nodes, no slicing of tensors that require grad); without it,
    the same loop writes into reused buffers and saves nothing.

    Examples
    --------
    >>> import torch
    >>> cell = GraphRecurrent(hidden=4)
    >>> adj = torch.eye(5).to_sparse()
    >>> h = cell(torch.zeros(10, 5, 2, 16), adj)
    >>> tuple(h.shape)
    (10, 5, 2, 4)
    """

    def __init__(self, hidden: int = 20) -> None:
        super().__init__()
        self.hidden = int(hidden)
        # Recurrent weights for the gates i, f, o, g and for the diffused state q.
        self.recurrent = nn.Linear(self.hidden, 5 * self.hidden, dtype=PARAM_DTYPE)
        with torch.no_grad():
            # A forget-gate bias of 1 keeps memory through the first epochs.
            self.recurrent.bias.zero_()
            self.recurrent.bias[self.hidden : 2 * self.hidden] = 1.0

    def forward(
        self,
        gates_in: torch.Tensor,
        adj: SparseGraph | torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_state: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the recurrence over days.

        Parameters
        ----------
        gates_in : torch.Tensor, (T, N, B, 4H)
            Projected inputs for the gates i, f, o, g.
        adj : SparseGraph or sparse torch.Tensor, (N, N)
            Row-normalized graph weights.
        state : (h, c), optional
            Initial states, each (N, B, H); zeros when omitted.
        return_state : bool, default False
            Also return the final ``(h, c)``.

        Returns
        -------
        torch.Tensor, (T, N, B, H)
            Hidden states of every day.
        """
        return self._run(gates_in, None, None, adj, state, return_state)

    def run_inputs(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        adj: SparseGraph | torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        return_state: bool = False,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the recurrence on raw inputs, projecting them first.

        The same as ``forward(x @ weight.T + bias, adj, ...)`` but the projection is
        done inside the recurrence: each day's pre-activations are one product of
        ``[h_{t-1}, x_t, 1]`` with the stacked recurrent weights, projection and biases,
        and in training the gradients of all of them come from one product.

        Parameters
        ----------
        x : torch.Tensor, (T, N, B, F)
            Inputs.
        weight : torch.Tensor, (4H, F)
            Input projection to the gates i, f, o, g.
        bias : torch.Tensor, (4H,)
            Its bias.
        adj, state, return_state
            As in :meth:`forward`.
        out : torch.Tensor, (T, N, B, H), optional
            Without autograd, the hidden states are written into it (and it is
            returned); inference fills a larger result this way, chunk by chunk,
            without copies. Ignored when gradients are recorded.

        Notes
        -----
        ``x`` must be finite (``fit`` and ``downscale`` refuse other inputs first):
        unlike in :meth:`forward`, a NaN or infinite input meets the zero weights
        that keep the inputs out of the diffused block q, which turns it into NaN
        there, and the graph carries it to the node's neighbours the same day.

        Examples
        --------
        >>> import torch
        >>> cell = GraphRecurrent(hidden=4)
        >>> w, b = torch.randn(16, 3), torch.zeros(16)
        >>> x = torch.randn(10, 5, 2, 3)
        >>> a = cell.run_inputs(x, w, b, torch.eye(5).to_sparse())
        >>> bool(torch.allclose(a, cell(x @ w.T + b, torch.eye(5).to_sparse()), atol=1e-5))
        True
        """
        return self._run(x, weight, bias, adj, state, return_state, out)

    def _run(
        self,
        x: torch.Tensor,
        w_x: torch.Tensor | None,
        b_x: torch.Tensor | None,
        adj: SparseGraph | torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None,
        return_state: bool,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        n_time, n_node, n_batch, n_in = x.shape
        hdim = self.hidden
        n_rows = n_node * n_batch
        if state is None:
            h0 = x.new_zeros(n_rows, hdim)
            c0 = x.new_zeros(n_rows, hdim)
        else:
            h0, c0 = (s.reshape(n_rows, hdim) for s in state)
        if n_time == 0:
            hs = x.new_zeros(0, n_node, n_batch, hdim)
            last = (h0.view(n_node, n_batch, hdim), c0.view(n_node, n_batch, hdim))
            return (hs, last) if return_state else hs
        mat = adj.adj if isinstance(adj, SparseGraph) else adj
        if torch.is_grad_enabled() and mat.requires_grad:
            raise ParameterError(
                "the adjacency requires grad, but the recurrence takes the graph as an argument, "
                "not a parameter, and gives it no gradient; pass adj.detach(), or learn edge "
                "weights outside this cell")
        xf = x.reshape(n_time, n_rows, n_in)
        weight, bias = self.recurrent.weight, self.recurrent.bias
        if mat.dtype != weight.dtype:
            raise ParameterError(
                f"the graph's weights are {mat.dtype} but the cell's are {weight.dtype}; give a graph "
                f"of the cell's dtype (a SparseGraph is float32: keep the model in float32, or pass "
                f"a torch sparse tensor of {weight.dtype})")
        tracked = [t for t in (xf, w_x, b_x, weight, bias, h0, c0) if t is not None]
        if torch.is_grad_enabled() and any(t.requires_grad for t in tracked):
            # The transpose serves backward only: asked for (and made) here, not at inference.
            mat_t = adj.adj_t if isinstance(adj, SparseGraph) else None
            hs, c = _Recurrence.apply(xf.contiguous(), w_x, b_x, weight, bias, h0, c0, mat, mat_t, n_node)
        else:
            flat_out = None if out is None else out.view(n_time, n_rows, hdim)
            if w_x is not None:
                assert b_x is not None
                hs, c, _ = _run_days_inputs(xf, w_x, b_x, weight, bias, h0, c0, mat, n_node,
                                            save=False, out=flat_out)
            else:
                gates = _gate_inputs(xf.contiguous(), bias, _tanh_scale(weight, hdim))
                hs, c, _ = _run_days(gates, weight, h0, c0, mat, n_node, save=False, out=flat_out)
                del gates
        hs = hs.view(n_time, n_node, n_batch, hdim)
        if return_state:
            return hs, (hs[-1], c.view(n_node, n_batch, hdim))
        return hs


def reusable_empty(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialized CPU tensor of ``shape`` (dtype and device of ``like``) from the
    recurrence's reused buffers when it is large; a plain allocation otherwise."""
    return _POOL.empty(shape, like)


class _SelectRows(torch.autograd.Function):
    """``x.index_select(dim, rows)`` whose backward scatters into a reused buffer.

    Torch's own backward allocates a zeroed tensor of the full input for each call;
    for the fine states of one window (365 days x 3,288 reaches x 20) that is 96 MB
    of fresh memory the system zeroes page by page, 50-120 ms a training step here.
    The reused buffer is zeroed in place, at memory speed.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int, rows: torch.Tensor) -> torch.Tensor:
        ctx.dim, ctx.shape = dim, tuple(x.shape)
        ctx.save_for_backward(rows)
        return x.index_select(dim, rows)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (rows,) = ctx.saved_tensors
        full = _POOL.empty(ctx.shape, grad)
        full.zero_()
        full.index_add_(ctx.dim, rows, grad)
        return full, None, None


def select_rows(x: torch.Tensor, dim: int, rows: torch.Tensor) -> torch.Tensor:
    """``x.index_select(dim, rows)``; in training its gradient lands in a reused buffer."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x.index_select(dim, rows)
    out: torch.Tensor = _SelectRows.apply(x, dim, rows)
    return out


def release_buffers() -> int:
    """Drop the recurrence's free reusable buffers; returns the bytes dropped.

    ``fit`` drops them when it returns. An in-memory ``downscale`` keeps those of its
    largest call for the next one (a new block costs the system's zeroing of its
    pages, about 15% of a call); a long-lived process (a notebook kernel, a service)
    that is done downscaling calls this to give them back.

    Examples
    --------
    >>> from xmsgl.nn.rgrn import release_buffers
    >>> release_buffers() >= 0
    True
    """
    return _POOL.release()


def releases_buffers(func: _F) -> _F:
    """``func``, after which the recurrence's free buffers are dropped (a fit's hold a
    window's activations: hundreds of MB that no later call of the process reuses)."""
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        finally:
            release_buffers()
    return cast(_F, wrapper)
