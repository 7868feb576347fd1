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

import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["GraphRecurrent", "SparseGraph", "graph_product"]


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

    Examples
    --------
    >>> import scipy.sparse as sp, torch
    >>> g = SparseGraph(sp.identity(3, format="csr"))
    >>> g.shape
    (3, 3)
    """

    def __init__(self, matrix: Any, device: torch.device | str | None = None) -> None:
        self.shape = (int(matrix.shape[0]), int(matrix.shape[1]))
        self.adj = _to_torch_csr(matrix.tocsr(), device)
        self.adj_t = _to_torch_csr(matrix.T.tocsr(), device)

    def to(self, device: torch.device | str) -> SparseGraph:
        out = SparseGraph.__new__(SparseGraph)
        out.shape = self.shape
        out.adj = self.adj.to(device)
        out.adj_t = self.adj_t.to(device)
        return out


def _to_torch_csr(m: Any, device: torch.device | str | None) -> torch.Tensor:
    m = m.copy()
    m.sort_indices()
    with warnings.catch_warnings():
        # torch calls its CSR support "beta"; the products used here are stable.
        warnings.simplefilter("ignore", UserWarning)
        t = _csr(m)
    return t if device is None else t.to(device)


def _csr(m: Any) -> torch.Tensor:
    return torch.sparse_csr_tensor(
        torch.from_numpy(np.asarray(m.indptr, dtype=np.int64)),
        torch.from_numpy(np.asarray(m.indices, dtype=np.int64)),
        torch.from_numpy(np.asarray(m.data, dtype=np.float32)),
        size=m.shape,
        check_invariants=False,
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


class GraphRecurrent(nn.Module):
    """The RGrN recurrence, with its input projection hoisted out of the time loop.

    Parameters
    ----------
    hidden : int
        Number of hidden units ``H``.

    Notes
    -----
    :meth:`forward` takes inputs already projected to the four gate blocks (by
    the caller's input projection, see :class:`xmsgl.nn.MSGLNet`): one large matrix
    product for all days instead of one per day. The days are walked with
    :meth:`torch.Tensor.unbind` and the states gathered in a Python list that is
    stacked once; indexing a tensor that requires grad day by day would make the
    backward pass quadratic in the window length.

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
        self.recurrent = nn.Linear(self.hidden, 5 * self.hidden)
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
        return_state : bool
            Also return the final ``(h, c)``.

        Returns
        -------
        torch.Tensor, (T, N, B, H)
            Hidden states of every day.
        """
        n_time, n_node, n_batch, _ = gates_in.shape
        hdim = self.hidden
        if state is None:
            h = gates_in.new_zeros(n_node, n_batch, hdim)
            c = gates_in.new_zeros(n_node, n_batch, hdim)
        else:
            h, c = state
        # Gates and the diffused state get separate products so that no slice of a
        # tensor that requires grad is taken per day (slice backward fills a zero
        # tensor of the full size every day); split/chunk backward just concatenates.
        w_gates, w_q = self.recurrent.weight.t().split([4 * hdim, hdim], dim=1)
        b_gates, b_q = self.recurrent.bias.split([4 * hdim, hdim])
        outs: list[torch.Tensor] = []
        for x_t in gates_in.unbind(0):
            h2 = h.reshape(-1, hdim)
            gates = torch.addmm(b_gates, h2, w_gates).reshape(n_node, n_batch, 4 * hdim) + x_t
            q_t = torch.tanh(torch.addmm(b_q, h2, w_q)).reshape(n_node, n_batch, hdim)
            sig, g_lin = gates.split([3 * hdim, hdim], dim=-1)
            i_t, f_t, o_t = torch.sigmoid(sig).chunk(3, dim=-1)
            c = f_t * (c + graph_product(adj, q_t)) + i_t * torch.tanh(g_lin)
            h = o_t * torch.tanh(c)
            outs.append(h)
        hs = torch.stack(outs, 0) if outs else gates_in.new_zeros(0, n_node, n_batch, hdim)
        if return_state:
            return hs, (h, c)
        return hs
