"""The dynamic multi-scale graph embedding backbone (DMSGE).

An alternative to the recurrent graph cell (:mod:`xmsgl.nn.rgrn`) with the same
contract: inputs ``(T, N, B, F)`` of one scale in, hidden states ``(T, N, B, H)``
out, so every head of :class:`~xmsgl.nn.MSGLNet` works on it unchanged.

1. A per-node **temporal encoder** with weights shared by all nodes: a causal
   temporal convolution (dilations 1, 2, 4, 8, kernel 3: 31 days of receptive
   field, residual) or a GRU over the window.
2. ``L`` **graph layers**. Layer ``l`` aggregates over three neighbourhoods of
   ``k`` nodes each:

   * ``hydro``: the ``k`` strongest entries of each row of the river adjacency the
     cell would use (padded with the node itself where a row has fewer);
   * ``geo``: the ``k`` nearest nodes in space (:func:`xmsgl.knn.geometric_knn`);
   * ``dynamic``: the ``k`` nearest nodes in the current embedding space
     (:func:`xmsgl.knn.feature_knn`), kept for a block of ``dynamic_days`` days
     (20 by default) and built from the embedding averaged over the
     ``dynamic_days`` days that end with the block's first day: a day's graph
     reads no later day (:meth:`DMSGEBackbone.dynamic_blocks`). Blocks lie on the
     calendar (their first days are multiples of ``dynamic_days`` days since
     1970-01-01 when the caller gives each window's first date), so a day's graph
     does not depend on where its window starts once the window holds enough days
     before it.

   The message of neighbour ``j`` to node ``i`` is an EdgeConv function of
   ``[h_i, h_j - h_i, p_j - p_i, s_ij]`` (``p`` the position, ``s`` the signed
   along-stream distance of :mod:`xmsgl.graph`, 0 for pairs on different flow
   paths; both in units of the network's typical node spacing, compressed by
   ``sign(v) log(1 + |v|)``)::

       m_ij = ReLU(Phi h_i + Theta (h_j - h_i) + Psi [p_j - p_i, s_ij] + b)

   reduced by the maximum (or the mean) over the ``k`` neighbours and summed over
   the three neighbourhoods. Because ReLU is monotone, the maximum is taken before
   the ReLU and the ``(k, T)`` message tensor never needs to be kept for backward:
   the neighbours are visited one at a time, keeping the running maximum and the
   winning neighbour (one byte) per entry.
3. With ``concat=True`` the encoder output and every layer's output are
   concatenated and mapped back to ``H`` by a linear read-out (the hierarchical
   representation); with ``concat=False`` the last layer's output is used.

The backbone needs each scale's node geometry (:meth:`DMSGEBackbone.set_geometry`,
done by :func:`xmsgl.fit` and when a model is applied).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from xmsgl.exceptions import ChoiceError, ParameterError
from xmsgl.knn import NodeGeometry, candidate_set, feature_knn, geometric_knn, sparse_topk
from xmsgl.nn.rgrn import PARAM_DTYPE, SparseGraph

__all__ = ["DEFAULTS", "GRAPHS", "DMSGEBackbone", "backbone_options", "dirichlet_energy"]

#: Most graph layers ``backbone_options`` accepts.
MAX_LAYERS = 64

#: Most neighbours per neighbourhood: the max aggregation keeps each entry's winning
#: neighbour in one byte.
MAX_K = 255

#: Neighbourhoods of every graph layer, in order.
GRAPHS = ("hydro", "geo", "dynamic")

#: Options of the backbone and their defaults (``backbone_options`` of :func:`xmsgl.fit`).
DEFAULTS: dict[str, Any] = {
    "layers": 3,          # graph layers L
    "k": 8,               # neighbours per neighbourhood
    "concat": True,       # concatenate the outputs of all layers before the heads
    "reduce": "max",      # "max" or "mean" over the k neighbours
    "encoder": "tcn",     # "tcn" (causal temporal convolution) or "gru"
    "candidates": 32,     # geometric candidates per node of the large-graph dynamic search
    "brute_max": 2048,    # graphs up to this many nodes get the exact dynamic search
    "coords": "auto",     # positions: "auto", "xy", "lonlat" or "outlet-distance"
    "graphs": list(GRAPHS),  # neighbourhoods used (e.g. ["hydro", "geo"]: static graphs only)
    # days a feature-space graph is kept for, built from the embedding of the days up
    # to its first; None: one graph per window from all its days (not causal)
    "dynamic_days": 20,
}

#: ``dynamic_days`` of models saved before the option existed: one feature-space
#: graph per window, from the embedding averaged over all of the window's days.
LEGACY_DYNAMIC_DAYS = None

# Bytes of one chunk of gathered messages (B, N, k, days, H) in float32.
_CHUNK_BYTES = 64e6


def backbone_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Check ``options`` of the DMSGE backbone and fill in the defaults of :data:`DEFAULTS`.

    Raises
    ------
    ParameterError
        An unknown option or a value out of range, naming it and the allowed values.

    Examples
    --------
    >>> backbone_options({"layers": 2})["k"]
    8
    """
    opts = dict(DEFAULTS)
    if options is not None and not isinstance(options, Mapping):
        raise ParameterError(f"backbone_options={options!r} must be a dict of options, for example "
                             "{'layers': 2, 'k': 8}")
    given = dict(options or {})
    unknown = sorted(set(given) - set(DEFAULTS), key=repr)  # names of any type
    if unknown:
        raise ParameterError(f"backbone_options {unknown} are not known; the dmsge backbone takes "
                             f"{sorted(DEFAULTS)}")
    opts.update(given)
    for name in ("layers", "k", "candidates", "brute_max"):
        v = opts[name]
        low = 0 if name == "layers" else 1
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < low:
            raise ParameterError(f"backbone_options[{name!r}]={v!r} must be an integer >= {low}")
        opts[name] = int(v)
    if opts["k"] > MAX_K:
        # The winning neighbour of each entry is kept in one byte (max aggregation).
        raise ParameterError(f"backbone_options['k']={opts['k']} is more than {MAX_K}, the most "
                             "neighbours a layer keeps track of; use fewer")
    if opts["layers"] > MAX_LAYERS:
        # Each layer holds its own activations for every node and day: a million of
        # them filled the machine's memory before any error.
        raise ParameterError(f"backbone_options['layers']={opts['layers']} is more than {MAX_LAYERS}; "
                             "graph layers over-smooth long before that: use a few")
    dd = opts["dynamic_days"]
    if dd is not None:
        if isinstance(dd, bool) or not isinstance(dd, (int, np.integer)) or int(dd) < 1:
            raise ParameterError(
                f"backbone_options['dynamic_days']={dd!r} must be an integer >= 1 (the days each "
                "feature-space graph is kept for, 20 by default) or None (one graph per window "
                "from all of its days, which reads days after the one predicted)")
        opts["dynamic_days"] = int(dd)
    if not isinstance(opts["concat"], (bool, np.bool_)):
        raise ParameterError(f"backbone_options['concat']={opts['concat']!r} must be True or False")
    opts["concat"] = bool(opts["concat"])
    choices = {"reduce": ("max", "mean"), "encoder": ("tcn", "gru"),
               "coords": ("auto", "xy", "lonlat", "outlet-distance")}
    for name, allowed in choices.items():
        if opts[name] not in allowed:
            raise ChoiceError(f"backbone_options[{name!r}]={opts[name]!r} is not known; use one "
                                 f"of {list(allowed)}")
    graphs = opts["graphs"]
    if isinstance(graphs, str) or not isinstance(graphs, (list, tuple)) or not graphs or \
            any(g not in GRAPHS for g in graphs) or len(set(graphs)) != len(graphs):
        raise ParameterError(f"backbone_options['graphs']={graphs!r} must be a non-empty list of "
                             f"distinct names from {list(GRAPHS)}")
    opts["graphs"] = [g for g in GRAPHS if g in graphs]
    if "dynamic" in opts["graphs"] and opts["candidates"] < opts["k"]:
        # Only the dynamic search reads the candidates. Two limits on k, named together
        # so that fixing one does not run into the other.
        raise ParameterError(
            f"backbone_options['k']={opts['k']} is larger than backbone_options['candidates']="
            f"{opts['candidates']}, the candidates per node among which the dynamic search of "
            f"graphs above brute_max={opts['brute_max']} nodes picks its k neighbours; k is also "
            "limited by the network: at most the number of nodes of the smallest graph used "
            f"minus 1. Lower k to at most {opts['candidates']}, or, on a network whose every "
            f"graph has more than {opts['k']} nodes, set candidates to at least {opts['k']}"
        )
    return opts


# ------------------------------------------------------------------------ encoder


class _CausalTCN(nn.Module):
    """Residual causal dilated convolutions over days, shared by all nodes."""

    def __init__(self, hidden: int, kernel: int = 3, dilations: tuple[int, ...] = (1, 2, 4, 8)):
        super().__init__()
        self.kernel = kernel
        self.dilations = dilations
        self.convs = nn.ModuleList(nn.Conv1d(hidden, hidden, kernel, dilation=d, dtype=PARAM_DTYPE) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (M, H, T) -> (M, H, T)
        for conv, d in zip(self.convs, self.dilations):
            x = x + F.relu(conv(F.pad(x, ((self.kernel - 1) * d, 0))))
        return x


class _GRUEncoder(nn.Module):
    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(hidden, hidden, batch_first=True, dtype=PARAM_DTYPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (M, H, T) -> (M, H, T)
        out, _ = self.gru(x.transpose(1, 2))
        return out.transpose(1, 2)


# --------------------------------------------------------------------- graph layer


def _edge_reduce_forward(a: torch.Tensor, nb: torch.Tensor, idx: torch.Tensor, e: torch.Tensor,
                         mean: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``ReLU(a_i + max_k(nb_j + e_ij))`` or ``mean_k ReLU(a_i + nb_j + e_ij)``, neighbour by neighbour.

    ``a``: (B, N, T, H) node terms; ``nb``: (B*N, T, H) neighbour terms; ``idx``:
    (B*N, k) neighbour rows of ``nb``; ``e``: (B, N, k, H) edge terms. Walking the
    ``k`` neighbours one at a time keeps every temporary at (B, N, T, H): the
    (B, N, k, T, H) message tensor is never built. Returns the output and, for the
    maximum, the winning neighbour of every entry (uint8).
    """
    b, n, t, h = a.shape
    k = idx.shape[1]
    if mean:
        acc = torch.zeros_like(a)
        for j in range(k):
            z = nb.index_select(0, idx[:, j]).view(b, n, t, h).add_(e[:, :, j].unsqueeze(2)).add_(a)
            acc.add_(z.clamp_(min=0))
        return acc.div_(k), None
    best = nb.index_select(0, idx[:, 0]).view(b, n, t, h).add_(e[:, :, 0].unsqueeze(2))
    arg = torch.zeros(best.shape, dtype=torch.uint8, device=a.device)
    for j in range(1, k):
        cand = nb.index_select(0, idx[:, j]).view(b, n, t, h).add_(e[:, :, j].unsqueeze(2))
        # The last neighbour to beat the running maximum wins: a running maximum of
        # j * (cand > best) finds it without masked writes (slow on CPU).
        torch.maximum(arg, (cand > best).to(torch.uint8).mul_(j), out=arg)
        torch.maximum(best, cand, out=best)
    return best.add_(a).clamp_(min=0), arg


class _EdgeReduce(torch.autograd.Function):
    """Autograd of :func:`_edge_reduce_forward` that keeps (B, N, T, H) tensors only."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, nb: torch.Tensor, idx: torch.Tensor, e: torch.Tensor,
                mean: bool) -> torch.Tensor:
        out, arg = _edge_reduce_forward(a, nb, idx, e, mean)
        ctx.mean = mean
        if mean:
            ctx.save_for_backward(a, nb, idx, e)
        else:
            ctx.save_for_backward(out, arg, idx)
            ctx.shapes = (a.shape, nb.shape, e.shape)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        grad = grad.contiguous()
        if ctx.mean:
            a, nb, idx, e = ctx.saved_tensors
            b, n, t, h = a.shape
            k = idx.shape[1]
            grad_a = torch.zeros_like(a)
            grad_nb = torch.zeros_like(nb)
            grad_e = torch.empty_like(e)
            for j in range(k):
                z = nb.index_select(0, idx[:, j]).view(b, n, t, h).add_(e[:, :, j].unsqueeze(2)).add_(a)
                gj = grad.div(k).mul_(z > 0)
                grad_a.add_(gj)
                grad_nb.index_add_(0, idx[:, j], gj.view(b * n, t, h))
                grad_e[:, :, j] = gj.sum(dim=2)
            return grad_a, grad_nb, None, grad_e, None
        out, arg, idx = ctx.saved_tensors
        a_shape, nb_shape, e_shape = ctx.shapes
        b, n, t, h = a_shape
        gm = grad * (out > 0)
        grad_nb = gm.new_zeros(nb_shape)
        grad_e = gm.new_empty(e_shape)
        for j in range(idx.shape[1]):
            gj = gm * (arg == j).to(gm.dtype)
            grad_nb.index_add_(0, idx[:, j], gj.view(b * n, t, h))
            grad_e[:, :, j] = gj.sum(dim=2)
        return gm, grad_nb, None, grad_e, None


def _largest_message(nb: torch.Tensor, rows: torch.Tensor, e: torch.Tensor,
                     shape: tuple[int, int, int, int]) -> torch.Tensor:
    """Which of the ``k`` neighbours sends the largest ``nb_j + e_j`` per entry (the first
    on a tie), as one byte an entry: the neighbours are visited one at a time, never
    stacked (k times the states)."""
    best = arg = None
    for j in range(rows.shape[1]):
        z = nb.index_select(0, rows[:, j]).view(shape) + e[:, :, j].unsqueeze(2)
        if best is None or arg is None:
            best, arg = z, torch.zeros(shape, dtype=torch.uint8, device=z.device)
            continue
        more = z > best
        best = torch.where(more, z, best)
        arg.masked_fill_(more, j)
    assert arg is not None
    return arg


class EdgeLayer(nn.Module):
    """One graph layer: EdgeConv messages over several neighbourhoods, summed.

    Parameters
    ----------
    hidden : int
        Embedding size in and out.
    n_graphs : int, default 3
        Neighbourhoods aggregated (each with weights of its own).
    n_edge : int, default 3
        Edge features (relative position x, y and signed along-stream distance).
    """

    def __init__(self, hidden: int, n_graphs: int = 3, n_edge: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.n_graphs = n_graphs
        # Phi h_i + Theta (h_j - h_i) = (Phi - Theta) h_i + Theta h_j: one node
        # projection gives both terms of every neighbourhood.
        self.node = nn.Linear(hidden, 2 * n_graphs * hidden, dtype=PARAM_DTYPE)
        self.edge = nn.Linear(n_edge, n_graphs * hidden, bias=False, dtype=PARAM_DTYPE)

    def forward(self, h: torch.Tensor, neighbours: list[tuple[torch.Tensor, torch.Tensor]],
                mean: bool = False, wins: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``h``: (B, N, T, H); ``neighbours``: per graph, (index (B, N, k), edge features (B, N, k, 3)).

        With ``wins`` (a list), appends per graph how often each of the ``k``
        neighbours gives the largest message, as (B, N, k) shares of days x units.
        """
        b, n, t, hd = h.shape
        # split, not slicing: the backward of one split is one concatenation, that of
        # each slice a zero tensor of the whole projection.
        proj = self.node(h).split(hd, dim=-1)
        out = None
        offsets = (torch.arange(b, device=h.device) * n).view(b, 1, 1)
        for g, (idx, feats) in enumerate(neighbours):
            k = idx.shape[-1]
            if k > MAX_K:
                raise ParameterError(f"{k} neighbours per node: the layer keeps the winning "
                                     f"neighbour in one byte, so at most {MAX_K}")
            a = proj[2 * g]
            nb = proj[2 * g + 1].reshape(b * n, t, hd)
            w = self.edge.weight[g * hd: (g + 1) * hd]
            e = (feats @ w.t()).expand(b, n, k, hd)  # (B, N, k, H)
            rows = (idx.expand(b, n, k) + offsets).reshape(b * n, k)
            if wins is not None:
                agg, arg = _edge_reduce_forward(a.contiguous(), nb, rows, e.contiguous(), mean)
                if arg is None:  # mean: the neighbour with the largest message still "wins"
                    arg = _largest_message(nb, rows, e, (b, n, t, hd))
                count = torch.zeros(b, n, k, dtype=h.dtype, device=h.device)
                flat = arg.reshape(b, n, -1).long()
                count.scatter_add_(2, flat, torch.ones_like(flat, dtype=count.dtype))
                wins.append(count / float(t * hd))
            else:
                res = _EdgeReduce.apply(a.contiguous(), nb, rows, e.contiguous(), mean)
                assert isinstance(res, torch.Tensor)
                agg = res
            out = agg if out is None else out + agg
        assert out is not None
        return out


# ----------------------------------------------------------------------- backbone


@dataclass
class _ScaleState:
    """Static neighbourhoods and geometry of one scale, as CPU tensors."""

    n: int
    pos: torch.Tensor  # (N, 2) in units of the length scale
    odist: torch.Tensor  # (N,) outlet distance in the same unit
    tin: torch.Tensor
    tout: torch.Tensor
    geo: torch.Tensor  # (N, k)
    cand: torch.Tensor | None  # (N, M)
    cand_valid: torch.Tensor | None
    geometry: NodeGeometry
    on_device: dict[str, _ScaleState] = field(default_factory=dict)

    def to(self, device: torch.device) -> _ScaleState:
        key = str(device)
        if key == "cpu":
            return self
        if key not in self.on_device:
            self.on_device[key] = _ScaleState(
                self.n, self.pos.to(device), self.odist.to(device), self.tin.to(device),
                self.tout.to(device), self.geo.to(device),
                None if self.cand is None else self.cand.to(device),
                None if self.cand_valid is None else self.cand_valid.to(device), self.geometry)
        return self.on_device[key]


def _compress(v: torch.Tensor) -> torch.Tensor:
    return torch.sign(v) * torch.log1p(v.abs())


def edge_features(st: _ScaleState, idx: torch.Tensor) -> torch.Tensor:
    """``[p_j - p_i, s_ij]`` of neighbours ``idx`` ((N, k) or (B, N, k)), compressed: (..., k, 3)."""
    n = st.n
    i = torch.arange(n, device=idx.device).view(n, 1)
    rel = st.pos[idx] - st.pos[i]
    tin_i, tout_i, tin_j, tout_j = st.tin[i], st.tout[i], st.tin[idx], st.tout[idx]
    related = ((tin_j <= tin_i) & (tout_i <= tout_j)) | ((tin_i <= tin_j) & (tout_j <= tout_i))
    s = torch.where(related, st.odist[i] - st.odist[idx], torch.zeros((), dtype=st.odist.dtype, device=idx.device))
    return _compress(torch.cat([rel, s.unsqueeze(-1)], dim=-1))


def dirichlet_energy(h: torch.Tensor, idx: torch.Tensor, real: torch.Tensor | None = None
                     ) -> tuple[float, float]:
    """Dirichlet energy of embeddings ``h`` (B, N, T, H) on a kNN graph ``idx`` ((N, k) or (B, N, k)).

    ``E = 1 / (2 |edges| T) sum_t sum_(i, j) ||h_i(t) - h_j(t)||^2`` over the real
    (directed: node ``i`` to each of its ``k`` neighbours) edges, and the same divided
    by the nodes' spread ``S = mean_t mean_i ||h_i(t) - mean_j h_j(t)||^2``: 0 when
    neighbours are equal, about 1 when they are no closer than any two nodes
    (``E(i, j) = S`` on average for unrelated nodes), below 1 where the graph joins
    similar nodes. Dividing by the mean squared norm instead let an offset shared by
    every node (ReLU outputs are non-negative) pull the ratio towards 0 with depth,
    graph or not.

    Returns
    -------
    (float, float)
        The energy and the normalized energy.
    """
    b, n, t, hd = h.shape
    k = idx.shape[-1]
    idx = idx.expand(b, n, k)
    mask = torch.ones(b, n, k, dtype=torch.bool, device=h.device) if real is None else \
        real.expand(b, n, k)
    flat = h.reshape(b * n, t, hd)
    gidx = (idx + (torch.arange(b, device=h.device) * n).view(b, 1, 1)).reshape(-1)
    total = 0.0
    step = max(1, int(_CHUNK_BYTES // max(1, b * n * k * hd * 4)))
    for t0 in range(0, t, step):
        hj = flat[:, t0: t0 + step].index_select(0, gidx).view(b, n, k, -1, hd)
        hi = h[:, :, t0: t0 + step].unsqueeze(2)
        d2 = (hj - hi).pow(2).sum(dim=-1).sum(dim=-1)  # (B, N, k)
        total += float((d2 * mask).sum())
    n_edges = float(mask.sum()) * t
    energy = 0.5 * total / max(n_edges, 1.0)
    spread = float((h - h.mean(dim=1, keepdim=True)).pow(2).sum(dim=-1).mean())
    return energy, energy / spread if spread > 0 else 0.0


class DMSGEBackbone(nn.Module):
    """Temporal encoder and dynamic multi-scale graph layers; see the module docstring.

    Parameters
    ----------
    n_inputs : int
        Features per node and day of the projected inputs.
    hidden : int
        Embedding size ``H`` (and of the output).
    layers, k, concat, reduce, encoder, candidates, brute_max, coords, graphs, dynamic_days
        See :data:`DEFAULTS` (``coords`` is used by whoever builds the geometry;
        ``graphs`` names the neighbourhoods, all three by default; ``dynamic_days``:
        see :meth:`dynamic_blocks`).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp, torch
    >>> from xmsgl.knn import NodeGeometry, euler_tour, outlet_distance
    >>> net = DMSGEBackbone(n_inputs=3, hidden=4, layers=2, k=2)
    >>> to = np.array([1, 2, -1, 2])
    >>> tin, tout = euler_tour(to)
    >>> geom = NodeGeometry(pos=np.array([[0.0, 0], [1, 0], [2, 0], [2, 1]]),
    ...                     outlet_distance=outlet_distance(to, np.ones(4)), tin=tin, tout=tout,
    ...                     group=np.zeros(4, dtype=np.int64), source="xy", length_scale=1.0)
    >>> net.set_geometry("reach", geom)
    >>> adj = sp.csr_matrix(np.array([[1, .5, 0, 0], [.5, 1, .5, 0], [0, .5, 1, .5], [0, 0, .5, 1]]))
    >>> out = net(torch.randn(10, 4, 2, 3), SparseGraph(adj), "reach")
    >>> tuple(out.shape)
    (10, 4, 2, 4)
    """

    def __init__(self, n_inputs: int, hidden: int, layers: int = 3, k: int = 8, concat: bool = True,
                 reduce: str = "max", encoder: str = "tcn", candidates: int = 32,
                 brute_max: int = 2048, coords: str = "auto",
                 graphs: list[str] | tuple[str, ...] = GRAPHS,
                 dynamic_days: int | None = DEFAULTS["dynamic_days"]) -> None:
        super().__init__()
        opts = backbone_options({"layers": layers, "k": k, "concat": concat, "reduce": reduce,
                                 "encoder": encoder, "candidates": candidates,
                                 "brute_max": brute_max, "coords": coords, "graphs": list(graphs),
                                 "dynamic_days": dynamic_days})
        self.graphs = tuple(opts["graphs"])
        self.options = opts
        self.hidden = int(hidden)
        self.k = opts["k"]
        self.concat = opts["concat"]
        self.mean = opts["reduce"] == "mean"
        self.inp = nn.Linear(n_inputs, self.hidden, dtype=PARAM_DTYPE)
        self.encoder: nn.Module = (_CausalTCN(self.hidden) if opts["encoder"] == "tcn"
                                   else _GRUEncoder(self.hidden))
        self.layers = nn.ModuleList(EdgeLayer(self.hidden, len(self.graphs))
                                    for _ in range(opts["layers"]))
        self.readout = (nn.Linear(self.hidden * (opts["layers"] + 1), self.hidden, dtype=PARAM_DTYPE)
                        if self.concat else None)
        self._scales: dict[str, _ScaleState] = {}
        #: Length scale of each scale's edge features, fixed by the fit (the training
        #: network's median nearest-node distance); a scale absent here takes the
        #: geometry's own.
        self.length_scales: dict[str, float] = {}
        #: The kind of positions (``"xy"``, ``"lonlat"``, ``"outlet-distance"``) each
        #: scale was fitted with; empty until a fit sets it.
        self.positions: dict[str, str] = {}
        #: A model saved before ``positions`` were kept: x/y are read as m whatever
        #: their units, as when it was fitted.
        self.saved_without_positions = False
        self._hydro: dict[str, tuple[Any, torch.Tensor, torch.Tensor]] = {}
        #: Set to a dict to record embeddings, neighbourhoods and max-winners of the next
        #: call; its ``"from_day"`` (default 0) leaves the wins of earlier days out.
        self.record: dict[str, Any] | None = None

    # ----------------------------------------------------------------- geometry

    def __getstate__(self) -> dict[str, Any]:
        """Copied or pickled without the last river graph used (a cache rebuilt on the
        next call): its sparse CSR tensors cannot be deep-copied, which made
        ``copy.deepcopy`` of a fitted model fail."""
        state = dict(self.__dict__)
        state["_hydro"] = {}
        return state

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> DMSGEBackbone:
        """Moving the module (``.to``, ``.cpu``, ``.cuda``) also drops the caches that are
        not parameters or buffers: the geometry's copies on other devices and the last
        river graph used. A model put back on the CPU then holds no GPU memory, and
        pickles or copies without CUDA; they are rebuilt where next needed."""
        out = super()._apply(fn, *args, **kwargs)
        for state in self._scales.values():
            state.on_device.clear()
        self._hydro.clear()
        return out
    def set_geometry(self, scale: str, geometry: NodeGeometry) -> None:
        """Give the backbone the node geometry of ``scale`` (static neighbourhoods are built here).

        Raises
        ------
        ParameterError
            ``k`` is not below the number of nodes of the scale (with the ``"geo"``
            or ``"dynamic"`` neighbourhoods, which search ``k`` other nodes).
        """
        n = geometry.n
        # The hydrologic neighbourhood pads short rows with the node itself; the
        # geometric and feature searches need k other nodes.
        searched = "geo" in self.graphs or "dynamic" in self.graphs
        if searched and self.k > n - 1:
            raise ParameterError(
                f"backbone_options['k']={self.k} needs more than {self.k} nodes, but the {scale!r} "
                f"graph has {n}; k is at most the number of nodes of each graph minus 1: lower k "
                f"to at most {max(n - 1, 1)}"
            )
        # Without "geo" only the diagnostics read the geometric neighbours, so a graph
        # too small for k of them (a block of the lazy path) gets fewer.
        k_geo = self.k if searched else min(self.k, n - 1)
        geo = (geometric_knn(geometry.pos, k_geo, tie_keys=geometry.ids) if k_geo >= 1
               else np.zeros((n, 0), dtype=np.int64))
        cand = cand_valid = None
        if "dynamic" in self.graphs and n > self.options["brute_max"]:
            m = min(self.options["candidates"], n - 1)
            c, v = candidate_set(geometry.pos, geometry.group, m, tie_keys=geometry.ids)
            cand, cand_valid = torch.from_numpy(c), torch.from_numpy(v)
        scale_len = float(self.length_scales.get(scale) or geometry.length_scale) or 1.0
        self._scales[scale] = _ScaleState(
            # Centred before float32: only differences of positions enter the messages,
            # and float32 absolute positions (a UTM northing near 4.55e6 m) rounded them
            # by 1e-3 of a node spacing, so a translated network predicted otherwise.
            n=n, pos=torch.from_numpy((geometry.pos - geometry.pos.mean(axis=0)) / scale_len).float(),
            odist=torch.from_numpy(geometry.outlet_distance / scale_len).float(),
            tin=torch.from_numpy(np.asarray(geometry.tin, dtype=np.int64)),
            tout=torch.from_numpy(np.asarray(geometry.tout, dtype=np.int64)),
            geo=torch.from_numpy(geo), cand=cand, cand_valid=cand_valid, geometry=geometry)
        self._hydro.pop(scale, None)

    def geometry(self, scale: str) -> NodeGeometry:
        """The geometry given with :meth:`set_geometry`."""
        return self._state(scale).geometry

    def _state(self, scale: str) -> _ScaleState:
        if scale not in self._scales:
            raise ParameterError(
                f"the dmsge backbone has no node geometry for scale {scale!r}; call "
                f"set_geometry({scale!r}, xmsgl.knn.node_geometry(ds, {scale!r})) first (xmsgl.fit "
                "and downscaling do this)"
            )
        return self._scales[scale]

    def hydro_index(self, adj: SparseGraph | torch.Tensor, scale: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``k`` strongest neighbours of each row of ``adj`` (padded with self) and the real mask."""
        hit = self._hydro.get(scale)
        if hit is not None and hit[0] is adj:
            return hit[1], hit[2]
        t = adj.adj if isinstance(adj, SparseGraph) else adj
        if t.layout == torch.sparse_coo:
            t = t.coalesce().to_sparse_csr()
        elif t.layout != torch.sparse_csr:
            t = t.to_sparse_csr()
        # Equal river weights are ranked by node id, never by the dataset's row order.
        geom = self._scales[scale].geometry if scale in self._scales else None
        tie = geom.ids if geom is not None and geom.n == t.shape[0] else None
        idx, real = sparse_topk(t.crow_indices().cpu().numpy(), t.col_indices().cpu().numpy(),
                                t.values().detach().cpu().numpy(), self.k, tie_keys=tie)
        out = (torch.from_numpy(idx), torch.from_numpy(real))
        self._hydro[scale] = (adj, *out)
        return out

    # ------------------------------------------------------------------ forward
    def dynamic_blocks(self, h: torch.Tensor, scale: str, day0: Sequence[int] | None = None,
                       k: int | None = None) -> list[tuple[int, int, torch.Tensor]]:
        """The feature-space neighbourhoods of embeddings ``h`` (B, N, T, H), day by day.

        Returns pieces ``(t0, t1, index)``: days ``[t0, t1)`` of every window take
        the neighbours ``index`` (B, N, k). With ``dynamic_days`` D, a window's graph
        changes on its first day and on every day whose date is a multiple of D days
        since 1970-01-01 (``day0``: each window's first date in those days; without
        it, every D days from the window's start); the graph of a block starting on
        day ``s`` is the kNN of the embedding averaged over days ``s - D + 1`` to
        ``s`` (those in the window), so no day's graph reads a later day. Windows
        whose blocks start on other days are cut where any of them changes. With
        ``dynamic_days=None``: one piece, the kNN of the mean over all days. ``k``
        replaces the backbone's number of neighbours.
        """
        b, n, t, _ = h.shape
        st = self._state(scale).to(h.device)
        days = self.options.get("dynamic_days", LEGACY_DYNAMIC_DAYS)

        def knn(summary: torch.Tensor) -> torch.Tensor:
            return feature_knn(summary, self.k if k is None else k, st.cand, st.cand_valid,
                               brute_max=self.options["brute_max"], tie_keys=st.geometry.ids)

        with torch.no_grad():
            h = h.detach()
            if days is None or t == 0:
                return [(0, t, knn(h.mean(dim=2)))]
            starts = self._calendar_starts(b, t, day0)
            cuts = sorted(set().union(*starts))
            graphs: dict[tuple[int, int], torch.Tensor] = {}
            pieces = []
            for u0, u1 in zip(cuts, [*cuts[1:], t]):
                rows = []
                for w in range(b):
                    s = max(v for v in starts[w] if v <= u0)
                    if (w, s) not in graphs:
                        graphs[(w, s)] = knn(h[w: w + 1, :, max(0, s - days + 1): s + 1].mean(dim=2))[0]
                    rows.append(graphs[(w, s)])
                pieces.append((u0, u1, torch.stack(rows)))
            return pieces

    #: Devices whose layers run all windows' calendar blocks as one batch
    #: (:meth:`_layer_by_blocks`); elsewhere the windows are cut into pieces where any
    #: of them changes graph. The two give the same states; on a GPU the pieces
    #: cost a kernel launch each (250,045 operations against 3,461 for a forward and
    #: backward of 7 windows of 365 days, 3 layers: benchmarks/bench_small_data.py),
    #: while on the CPU, which spends its time computing, the batch's padding and
    #: copies made a fit of a 30-segment basin about 5% slower (5.0-5.2 s against
    #: 4.6-4.9, one thread).
    blocks_on: tuple[str, ...] = ("cuda", "mps")

    def _calendar_starts(self, b: int, t: int, day0: Sequence[int] | None) -> list[list[int]]:
        """The first day of each calendar block of each of ``b`` windows of ``t`` days
        (see :meth:`dynamic_blocks`): the window's first day and every day whose date
        is a multiple of ``dynamic_days`` days since 1970-01-01."""
        days = int(self.options["dynamic_days"])
        if day0 is not None and len(day0) != b:
            raise ParameterError(f"day0 gives {len(day0)} first dates for {b} windows")
        phase = [0] * b if day0 is None else [int(d) % days for d in day0]
        return [sorted({0, *range((-p) % days, t, days)}) for p in phase]

    def _block_layout(self, b: int, t: int, day0: Sequence[int] | None, device: torch.device
                      ) -> tuple[list[tuple[int, int, int]], torch.Tensor, torch.Tensor]:
        """The calendar blocks of each of ``b`` windows of ``t`` days, ``(window, t0,
        t1)``, as :meth:`dynamic_blocks` lays them (one per window and block rather
        than per piece of the windows cut where any of them changes); the rows of the
        ``(B*T, ...)`` day-major states each block reads, padded to the longest block
        by repeating its last day, ``(P, L)``; and for each window's day, its place
        in the blocks' ``(P*L, ...)`` output."""
        spans = [(w, s, e) for w, starts in enumerate(self._calendar_starts(b, t, day0))
                 for s, e in zip(starts, [*starts[1:], t])]
        width = max(e - s for _, s, e in spans)
        rows = np.array([[w * t + min(s + d, e - 1) for d in range(width)] for w, s, e in spans])
        back = np.empty(b * t, dtype=np.int64)
        for p, (w, s, e) in enumerate(spans):
            back[w * t + s: w * t + e] = np.arange(p * width, p * width + e - s)
        return spans, torch.from_numpy(rows).to(device), torch.from_numpy(back).to(device)

    def _block_graphs(self, h: torch.Tensor, scale: str, spans: list[tuple[int, int, int]]) -> torch.Tensor:
        """The feature-space neighbours (P, N, k) of each block of ``spans``: those of
        :meth:`dynamic_blocks`, searched for every block in a few batched calls."""
        days = int(self.options["dynamic_days"])
        st = self._state(scale).to(h.device)
        with torch.no_grad():
            hd = h.detach()
            x = torch.stack([hd[w, :, max(0, s - days + 1): s + 1].mean(dim=1) for w, s, _ in spans])
            # Batches whose exhaustive distance matrices (N x N each) stay near 256 MB.
            n = x.shape[1]
            cols = min(n, self.options["brute_max"]) if st.cand is not None else n
            per = max(1, (1 << 28) // (4 * n * cols))
            return torch.cat([feature_knn(x[i: i + per], self.k, st.cand, st.cand_valid,
                                          brute_max=self.options["brute_max"], tie_keys=st.geometry.ids)
                              for i in range(0, x.shape[0], per)])

    def _layer_by_blocks(self, layer: nn.Module, h: torch.Tensor, scale: str,
                         layout: tuple[list[tuple[int, int, int]], torch.Tensor, torch.Tensor],
                         static: list[tuple[torch.Tensor, torch.Tensor]], st: _ScaleState) -> torch.Tensor:
        """One layer over every window's calendar blocks at once.

        Each block (``layout``, from :meth:`_block_layout`) becomes a batch entry of
        its own, padded to the longest block by repeating its last day, and takes its
        own feature-space neighbours; the layer mixes no days, so the padding changes
        nothing and is dropped. Cutting the windows where any of them changes graph
        instead ran the layer once per piece: windows every 182 days against blocks
        of 20 give each batch a different phase, and 7 windows of 365 days ran it 129
        times a layer (250,045 operations forward and backward against 3,461 this
        way), a kernel launch each on a GPU.
        """
        spans, rows, back = layout
        b, n, t, hd = h.shape
        width = rows.shape[1]
        seq = h.transpose(1, 2).reshape(b * t, n, hd)  # (B*T, N, H), day-major
        hb = seq.index_select(0, rows.reshape(-1)).view(len(spans), width, n, hd).transpose(1, 2)
        dyn = self._block_graphs(h, scale, spans)
        out = layer(hb, [*static, (dyn, edge_features(st, dyn))], self.mean, None)  # (P, N, L, H)
        flat = out.transpose(1, 2).reshape(len(spans) * width, n, out.shape[-1])
        return flat.index_select(0, back).view(b, t, n, out.shape[-1]).transpose(1, 2)

    def forward(self, x: torch.Tensor, adj: SparseGraph | torch.Tensor, scale: str,
                project: Callable[[torch.Tensor], torch.Tensor] | None = None,
                day0: Sequence[int] | None = None) -> torch.Tensor:
        """Hidden states (T, N, B, H) for inputs ``x`` (T, N, B, F) of ``scale``.

        ``project`` maps inputs to the ``n_inputs`` features (the shared input
        projections of :class:`~xmsgl.nn.MSGLNet`); it is applied a chunk of days
        at a time. ``day0``: the first date of each of the ``B`` windows, in days
        since 1970-01-01, which lays the feature-space graphs' blocks on the
        calendar (:meth:`dynamic_blocks`).
        """
        n_time, n, b, _ = x.shape
        st = self._state(scale)
        if st.n != n:
            raise ParameterError(f"the {scale!r} inputs have {n} nodes but the geometry given to "
                                 f"the dmsge backbone has {st.n}; set the geometry of this network")
        if n_time == 0:  # no day: no state (as the recurrent cell gives)
            return x.new_zeros(0, n, b, self.hidden)
        dev = x.device
        st = st.to(dev)
        hydro, hydro_real = (t.to(dev) for t in self.hydro_index(adj, scale))
        step = 64
        feats = []
        for t0 in range(0, n_time, step):
            xc = x[t0: t0 + step]
            feats.append(self.inp(project(xc) if project is not None else xc))
        z = torch.cat(feats, 0) if len(feats) > 1 else feats[0]  # (T, N, B, H)
        z = z.permute(2, 1, 3, 0).reshape(b * n, self.hidden, n_time)
        h = self.encoder(z).view(b, n, self.hidden, n_time).transpose(2, 3)  # (B, N, T, H)
        states = [h]
        static = []
        if "hydro" in self.graphs:
            static.append((hydro.unsqueeze(0), edge_features(st, hydro).unsqueeze(0)))
        if "geo" in self.graphs:
            static.append((st.geo.unsqueeze(0), edge_features(st, st.geo).unsqueeze(0)))
        rec = self.record
        if rec is not None:
            rec.update({"scale": scale, "index": [], "wins": [], "states": states,
                        "hydro": hydro.cpu(), "hydro_real": hydro_real.cpu(), "geo": st.geo.cpu()})
        blocked = ("dynamic" in self.graphs and rec is None and dev.type in self.blocks_on
                   and self.options.get("dynamic_days", LEGACY_DYNAMIC_DAYS) is not None)
        layout = self._block_layout(b, n_time, day0, dev) if blocked else None
        for layer in self.layers:
            if layout is not None:
                h = self._layer_by_blocks(layer, h, scale, layout, static, st)
                states.append(h)
                continue
            pieces: list[tuple[int, int, torch.Tensor | None]] = [(0, n_time, None)]
            if "dynamic" in self.graphs:
                pieces = list(self.dynamic_blocks(h, scale, day0))
            if rec is not None and 0 < rec.get("from_day", 0) < n_time:
                # Recorded from that day on: a piece across it is cut there (a layer mixes
                # no days, so the two halves give what the whole did).
                cut = int(rec["from_day"])
                pieces = [q for t0, t1, g in pieces
                          for q in (((t0, cut, g), (cut, t1, g)) if t0 < cut < t1 else ((t0, t1, g),))]
            outs = []
            piece_wins: list[list[torch.Tensor]] = []
            for t0, t1, dyn in pieces:
                neighbours = list(static)
                if dyn is not None:
                    neighbours.append((dyn, edge_features(st, dyn)))
                wins: list[torch.Tensor] | None = [] if rec is not None else None
                outs.append(layer(h[:, :, t0:t1], neighbours, self.mean, wins))
                if wins is not None:
                    piece_wins.append(wins)
            h = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
            states.append(h)
            if rec is not None:
                self._record_layer(rec, pieces, piece_wins, n_time)
        if self.readout is not None:
            h = self.readout(torch.cat(states, dim=-1))
        if rec is not None:
            rec["states"] = [s.detach() for s in states]
        return h.permute(2, 1, 0, 3).contiguous()

    def _record_layer(self, rec: dict[str, Any], pieces: list[tuple[int, int, torch.Tensor | None]],
                      piece_wins: list[list[torch.Tensor]], n_time: int) -> None:
        """What :attr:`record` keeps of one layer: its feature-space pieces and how often
        each neighbour won. A static neighbourhood's wins (B, N, k) are averaged over
        the pieces by their days; the dynamic one's stay one per piece, aligned with
        ``rec["index"]``'s ``(t0, t1, index)``. With ``rec["from_day"]`` (a spin-up),
        only the pieces from that day on count, their days counted from it."""
        first = int(rec.get("from_day", 0))
        kept = [i for i, (t0, _, _) in enumerate(pieces) if t0 >= first]
        n_kept = max(n_time - first, 1)
        wins: dict[str, Any] = {}
        for g, name in enumerate(self.graphs):
            per_piece = [piece_wins[i][g].cpu() for i in kept]
            if name == "dynamic":
                wins[name] = per_piece
            else:
                wins[name] = sum(w * ((pieces[i][1] - pieces[i][0]) / n_kept)
                                 for w, i in zip(per_piece, kept))
        rec["wins"].append(wins)
        rec["index"].append(None if "dynamic" not in self.graphs else
                            [(t0 - first, t1 - first, idx.cpu())
                             for t0, t1, idx in (pieces[i] for i in kept) if idx is not None])
