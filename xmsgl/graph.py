"""River topology to coarse, fine and cross-scale graphs.

A dataset in the xmsgl convention describes one river network twice: as coarse
segments (dimension ``seg``) and as the fine reaches inside them (dimension
``reach``). :func:`build_graphs` turns the downstream pointers and lengths of both
into the sparse matrices a multi-scale graph model propagates over:

* ``coarse`` (n_seg x n_seg) and ``fine`` (n_reach x n_reach): row-normalized edge
  weights along the stream, from the signed along-stream distances
  ``seg_distance`` and ``reach_distance``;
* ``cross`` (n_reach x n_seg): how much each reach listens to each coarse segment
  it is hydrologically connected with, from ``cross_distance``;
* ``parent`` (n_reach x n_seg): the one-hot map of each reach to its segment.

Everything is built with numpy and scipy; torch is imported only when a graph is
asked for as torch tensors (:meth:`RiverGraphs.torch_sparse`) or as a
:class:`torch_geometric.data.HeteroData` (:attr:`RiverGraphs.data`).

Sign convention
---------------
For nodes ``i`` and ``j`` on one flow path, ``D[i, j] = +d`` when ``j`` is
downstream of ``i`` and ``D[i, j] = -d`` when ``j`` is upstream of ``i``, where
``d`` is the outlet-to-outlet distance: the summed lengths of the nodes after
``i`` up to and including ``j`` (walking downstream from the upstream one of the
two). Hence ``D[j, i] == -D[i, j]``. Pairs not on one flow path (different
branches or different trees) have no entry. The diagonal is stored explicitly as 0,
and so are off-diagonal distances of 0 (zero-length nodes): the sparsity structure,
not the value, says which pairs are connected.

See ``docs/graphs.md`` for the formulas of the weightings and benchmark figures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import xarray as xr
from scipy.special import expit

from xmsgl.convention import (
    _KILOMETRES,
    _METRES,
    Topology,
    _norm_units,
    _scalar_attr,
    expect_dataset,
    far_downstream,
    hops_to_outlet,
    topology_arrays,
)
from xmsgl.exceptions import (
    ChoiceError,
    ParameterError,
    TopologyError,
    UnitConversionWarning,
    UnitsError,
    XmsglWarning,
    format_ids,
    ignoring,
    plural,
    typed_arguments,
    warn_at_user,
)

if TYPE_CHECKING:
    import torch
    from torch_geometric.data import HeteroData

__all__ = ["WEIGHTINGS", "DIRECTIONS", "RiverGraphs", "build_graphs", "flow_distances"]

#: Edge weightings understood by :func:`build_graphs`.
WEIGHTINGS = ("msgl", "adjacency")
#: Which neighbours an edge may connect to, for :func:`build_graphs`.
DIRECTIONS = ("updown", "downstream", "upstream")

# Flags kept alongside every distance entry: the value alone cannot tell an
# upstream from a downstream neighbour when the distance between them is 0.
_SELF, _DOWN, _UP = 0, 1, 2

# The smallest weight a connected pair keeps. A sigmoid of a very negative
# standardized distance underflows in float32, which would silently drop an edge
# (and could leave a reach without its own segment) once weights reach torch.
_MIN_WEIGHT = 1e-30


# --------------------------------------------------------------------------- helpers


def _length_factor(ds: xr.Dataset, name: str) -> float:
    """Factor that turns ``ds[name]`` into metres (lengths may be stored in km)."""
    units = ds[name].attrs.get("units")
    if units is None:
        raise UnitsError(
            f"variable {name!r} has no 'units' attribute; set ds[{name!r}].attrs['units'] = 'm'"
        )
    # Read as validate reads it: bytes (some HDF5 writers) or a one-element array as text.
    units = _scalar_attr(units)
    u = _norm_units(units)
    if u in _METRES:
        return 1.0
    if u in _KILOMETRES:
        warn_at_user(
            f"{name!r} converted from {units!r} to 'm' to build the graphs",
            UnitConversionWarning,
        )
        return 1000.0
    raise UnitsError(f"variable {name!r} has units {units!r}; lengths must be in 'm' or 'km'")


def _walk(
    to_idx: np.ndarray,
    length: np.ndarray,
    max_distance: float | None,
    max_hops: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (upstream, downstream, distance) pairs on one flow path.

    Every step advances all still-walking nodes one hop downstream at once, so the
    cost is O(N x depth) numpy work and memory is proportional to the pairs found.
    """
    src_parts: list[np.ndarray] = []
    dst_parts: list[np.ndarray] = []
    dist_parts: list[np.ndarray] = []
    start = np.flatnonzero(to_idx >= 0)
    cur = to_idx[start]
    acc = length[cur].astype(np.float64)
    hop = 1
    while start.size and (max_hops is None or hop <= max_hops):
        if max_distance is not None:
            # Lengths are >= 0, so the distance only grows along the walk: a node
            # past the cut is done for good.
            keep = acc <= max_distance
            start, cur, acc = start[keep], cur[keep], acc[keep]
            if not start.size:
                break
        src_parts.append(start)
        dst_parts.append(cur)
        dist_parts.append(acc)
        nxt = to_idx[cur]
        go = nxt >= 0
        start, cur = start[go], nxt[go]
        acc = acc[go] + length[cur]
        hop += 1
    if not src_parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros(0, dtype=np.float64)
    return np.concatenate(src_parts), np.concatenate(dst_parts), np.concatenate(dist_parts)


def _sorted_csr(
    rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]
) -> tuple[sp.csr_matrix, np.ndarray]:
    """CSR structure of unique (row, col) pairs and the permutation into CSR order.

    The permutation is carried through scipy's conversion as exact integer positions
    (its data), so several value arrays can share one structure without sorting twice.
    The pairs must be unique: scipy sums the data of repeated ones.
    """
    # 32-bit rows, columns and positions where they fit: scipy stores the indices so
    # anyway, and the sort moves half the bytes (a 10^5-reach network has 8.6 million
    # entries).
    small = max(rows.size, *shape) < np.iinfo(np.int32).max
    itype = np.int32 if small else np.int64
    pos = np.arange(rows.size, dtype=itype)
    m = sp.coo_matrix((pos, (rows.astype(itype, copy=False), cols.astype(itype, copy=False))),
                      shape=shape).tocsr()
    return m, m.data


def _with_data(structure: sp.csr_matrix, data: np.ndarray) -> sp.csr_matrix:
    # Building from (data, indices, indptr) keeps explicit zeros, unlike arithmetic.
    return sp.csr_matrix(
        (data, structure.indices.copy(), structure.indptr.copy()), shape=structure.shape
    )


def _mask_csr(m: sp.csr_matrix, keep: np.ndarray, data: np.ndarray) -> sp.csr_matrix:
    """Keep the entries of ``m`` where ``keep`` is true, with values ``data[keep]``."""
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    indptr = np.zeros(m.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows[keep], minlength=m.shape[0]), out=indptr[1:])
    return sp.csr_matrix((data[keep], m.indices[keep], indptr), shape=m.shape)


def _csr_rows(m: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))


def _standardized_sigmoid(values: np.ndarray, stats: Any = None) -> np.ndarray:
    """sigmoid((v - mean) / std) over all given entries, with their own mean and std
    (ddof=0), or the ``(mean, std)`` of ``stats`` (another network's)."""
    if values.size == 0:
        return values.astype(np.float64)
    mean, std = (values.mean(), float(values.std())) if stats is None else (stats[0], float(stats[1]))
    # A single entry, or all entries alike, carries no spread: every edge is average.
    if not std > 0:
        return np.maximum(expit(np.zeros_like(values, dtype=np.float64)), _MIN_WEIGHT)
    z = np.subtract(values, mean, dtype=np.float64)  # one new array, the rest in place
    z /= std
    expit(z, out=z)
    return np.maximum(z, _MIN_WEIGHT, out=z)


def _row_normalize(rows: np.ndarray, w: np.ndarray, n_rows: int) -> np.ndarray:
    total = np.bincount(rows, weights=w, minlength=n_rows)
    return w / total[rows]


def _row_normalize_csr(indptr: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`_row_normalize` of every entry of a CSR matrix, the same values: the sums
    by ``bincount`` (``np.add.reduceat`` adds in another order, different in the last
    bits), each spread over its row's run by ``repeat`` instead of a gather."""
    counts = np.diff(indptr)
    total = np.bincount(np.repeat(np.arange(counts.size), counts), weights=w, minlength=counts.size)
    return w / np.repeat(total, counts)


def _components(to_idx: np.ndarray) -> np.ndarray:
    """Position of the outlet each node drains to (pointer doubling, O(N log depth))."""
    label = np.where(to_idx >= 0, to_idx, np.arange(to_idx.size))
    while True:
        nxt = label[label]
        if np.array_equal(nxt, label):
            return label.astype(np.int64)
        label = nxt


def flow_distances(
    to_idx: np.ndarray,
    length: np.ndarray,
    *,
    max_distance: float | None = None,
    max_hops: int | None = None,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Signed along-stream distances of a river forest, as a sparse matrix.

    Parameters
    ----------
    to_idx : numpy.ndarray of int
        Position of each node's downstream node, -1 at outlets (a forest: no cycles).
    length : numpy.ndarray of float
        Length of each node in m (>= 0).
    max_distance : float, optional
        Drop pairs farther apart than this many metres.
    max_hops : int, optional
        Drop pairs more than this many hops apart.

    Returns
    -------
    distance : scipy.sparse.csr_matrix
        ``D[i, j] = +d`` if ``j`` is downstream of ``i``, ``-d`` if upstream, with
        ``d`` the summed lengths of the nodes after the upstream one up to and
        including the downstream one. The diagonal and zero distances are explicit.
    flags : numpy.ndarray of int8
        For each stored entry in CSR order: 0 on the diagonal, 1 where ``j`` is
        downstream of ``i`` and 2 where ``j`` is upstream of ``i``.

    Raises
    ------
    ParameterError
        For a ``max_distance`` that is not a finite number >= 0 or a ``max_hops``
        that is not an integer >= 1.

    Examples
    --------
    >>> import numpy as np
    >>> from xmsgl.graph import flow_distances
    >>> D, flags = flow_distances(np.array([1, 2, -1]), np.array([5.0, 10.0, 20.0]))
    >>> D.toarray()
    array([[  0.,  10.,  30.],
           [-10.,   0.,  20.],
           [-30., -20.,   0.]])
    """
    max_distance, max_hops = _check_limits(max_distance, max_hops)
    to_idx = np.asarray(to_idx, dtype=np.int64)
    length = np.asarray(length, dtype=np.float64)
    n = int(to_idx.size)
    _check_forest(to_idx, length)
    src, dst, dist = _walk(to_idx, length, max_distance, max_hops)
    diag = np.arange(n, dtype=np.int64)
    rows = np.concatenate([diag, src, dst])
    cols = np.concatenate([diag, dst, src])
    vals = np.concatenate([np.zeros(n), dist, -dist])
    flag = np.concatenate([
        np.full(n, _SELF, dtype=np.int8),
        np.full(src.size, _DOWN, dtype=np.int8),
        np.full(src.size, _UP, dtype=np.int8),
    ])
    structure, perm = _sorted_csr(rows, cols, (n, n))
    # The structure is this matrix's own: no copy of its indices.
    distance = sp.csr_matrix((vals[perm], structure.indices, structure.indptr), shape=(n, n))
    return distance, flag[perm]


def _check_forest(to_idx: np.ndarray, length: np.ndarray) -> None:
    """Refuse what :func:`flow_distances` cannot walk: pointers out of range, a cycle
    (the walk would never end), lengths not finite and >= 0 (the distances' signs and
    the max_distance cut rely on them). ``build_graphs`` gets these from
    :func:`~xmsgl.convention.topology_arrays`, which checks them on the ids."""
    n = to_idx.size
    if length.shape != to_idx.shape:
        raise TopologyError(f"{length.size} lengths for {n} nodes; give one length per node")
    bad = np.flatnonzero((to_idx < -1) | (to_idx >= n))
    if bad.size:
        raise TopologyError(f"nodes {format_ids(bad)} point to positions outside 0..{n - 1} "
                            "(-1 marks an outlet)")
    neg = np.flatnonzero(~np.isfinite(length) | (length < 0))
    if neg.size:
        raise TopologyError(f"nodes {format_ids(neg)} have lengths that are not finite and >= 0")
    # A node on, or draining into, a cycle never reaches an outlet. O(n log n).
    stuck = np.flatnonzero(far_downstream(to_idx) >= 0)
    if stuck.size:
        raise TopologyError(f"the pointers close a cycle (nodes {format_ids(stuck)} never reach "
                            "an outlet); a river network drains to outlets")


def _check_limits(
    max_distance: float | None, max_hops: int | None
) -> tuple[float | None, int | None]:
    """The cuts as a float distance in m and an int hop count, or None; refuses the rest.

    The converted values are what the walk must use: a str or a bool would otherwise
    reach the numpy comparisons (``"5000"`` fails there, ``True`` acts as 1 m).
    """
    distance: float | None = None
    if max_distance is not None:
        if isinstance(max_distance, (bool, np.bool_)) or not isinstance(max_distance, numbers.Real):
            raise ParameterError(
                f"max_distance={max_distance!r} must be a number: a finite distance >= 0 in m "
                f"(e.g. 5000.0, not a {type(max_distance).__name__}), or None for no cut"
            )
        distance = float(max_distance)
        if not (np.isfinite(distance) and distance >= 0):
            raise ParameterError(
                f"max_distance={max_distance!r} must be a finite distance >= 0 in m, or None "
                f"for no cut"
            )
    hops: int | None = None
    if max_hops is not None:
        if (
            isinstance(max_hops, (bool, np.bool_))
            or not isinstance(max_hops, (int, np.integer))
            or max_hops < 1
        ):
            raise ParameterError(
                f"max_hops={max_hops!r} must be an integer >= 1 (e.g. 3), or None for no cut"
            )
        hops = int(max_hops)
    return distance, hops


def _check_options(
    weighting: str, direction: str, max_distance: float | None, max_hops: int | None
) -> tuple[float | None, int | None]:
    if weighting not in WEIGHTINGS:
        raise ChoiceError(
            f"weighting={weighting!r} is not known; use one of {list(WEIGHTINGS)}"
        )
    if direction not in DIRECTIONS:
        raise ChoiceError(
            f"direction={direction!r} is not known; use one of {list(DIRECTIONS)}"
        )
    return _check_limits(max_distance, max_hops)


def _direction_keep(flags: np.ndarray, direction: str) -> np.ndarray:
    if direction == "updown":
        return np.ones(flags.size, dtype=bool)
    wanted = _DOWN if direction == "downstream" else _UP
    return (flags == _SELF) | (flags == wanted)


def _square_weights(
    distance: sp.csr_matrix,
    flags: np.ndarray,
    to_idx: np.ndarray,
    length: np.ndarray,
    weighting: str,
    direction: str,
    stats: Any = None,
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Row-normalized weights and the signed distance of each kept edge (CSR order);
    ``stats`` as in :func:`_standardized_sigmoid`."""
    n = distance.shape[0]
    if weighting == "adjacency":
        # Direct neighbours only; built from the pointers rather than from the
        # distances, which a small max_distance may have cut.
        down = np.flatnonzero(to_idx >= 0)
        rows_parts, cols_parts, d_parts = [np.arange(n)], [np.arange(n)], [np.zeros(n)]
        if direction in ("updown", "downstream"):
            rows_parts.append(down)
            cols_parts.append(to_idx[down])
            d_parts.append(length[to_idx[down]])
        if direction in ("updown", "upstream"):
            rows_parts.append(to_idx[down])
            cols_parts.append(down)
            d_parts.append(-length[to_idx[down]])
        structure, perm = _sorted_csr(
            np.concatenate(rows_parts), np.concatenate(cols_parts), (n, n)
        )
        w = _row_normalize(_csr_rows(structure), np.ones(structure.nnz), n)
        return _with_data(structure, w), np.concatenate(d_parts)[perm]
    self_loop = flags == _SELF
    if direction == "updown":
        # Every entry is kept: no masks, and the structure is the distances' own.
        # Negated as in MSGL / river-dl: a large downstream distance means a small weight.
        if stats is not None:
            # Given statistics weigh each entry alone: all at once, the loops set after.
            w = _standardized_sigmoid(-distance.data, stats)
            w[self_loop] = 1.0
        else:
            w = np.ones(flags.size, dtype=np.float64)
            off = ~self_loop
            w[off] = _standardized_sigmoid(-distance.data[off], stats)
        return _with_data(distance, _row_normalize_csr(distance.indptr, w)), distance.data.copy()
    rows_all = _csr_rows(distance)
    keep = _direction_keep(flags, direction)
    off = keep & ~self_loop
    w = np.zeros(flags.size, dtype=np.float64)
    w[off] = _standardized_sigmoid(-distance.data[off], stats)
    w[self_loop] = 1.0
    w[keep] = _row_normalize(rows_all[keep], w[keep], n)
    return _mask_csr(distance, keep, w), distance.data[keep]


def _own_outlet_distance(topo: Topology, length: np.ndarray) -> np.ndarray:
    """Along-stream distance from each reach to its own segment's outlet reach."""
    is_outlet = np.zeros(topo.n_reach, dtype=bool)
    is_outlet[topo.seg_outlet_reach_idx] = True
    cur = np.arange(topo.n_reach)
    acc = np.zeros(topo.n_reach)
    todo = np.flatnonzero(~is_outlet)
    # Within a segment every reach drains to the segment's outlet reach (checked by
    # the convention), so this walk ends after at most the segment's depth.
    while todo.size:
        nxt = topo.reach_to_idx[cur[todo]]
        cur[todo] = nxt
        acc[todo] += length[nxt]
        todo = todo[~is_outlet[nxt]]
    return acc


def _cross(
    topo: Topology,
    reach_distance: sp.csr_matrix,
    reach_flags: np.ndarray,
    reach_length: np.ndarray,
    seg_weights: sp.csr_matrix,
    seg_edge_distance: np.ndarray,
    weighting: str,
    direction: str,
    stats: Any = None,
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """Cross distances (reach x seg), cross weights and each weight's distance;
    ``stats`` as in :func:`_standardized_sigmoid`."""
    n_reach, n_seg = topo.n_reach, topo.n_seg
    seg_of_outlet = np.full(n_reach, -1, dtype=np.int64)
    seg_of_outlet[topo.seg_outlet_reach_idx] = np.arange(n_seg)

    # Connected (reach r, segment s) pairs come from the fine distances to the
    # outlet reach of s. The own segment is added separately so that no cut by
    # max_distance or max_hops can drop it.
    # Only entries whose column is an outlet reach matter (about one in seven).
    at = np.flatnonzero(seg_of_outlet[reach_distance.indices] >= 0)
    rows_d = np.searchsorted(reach_distance.indptr, at, side="right") - 1
    target_seg = seg_of_outlet[reach_distance.indices[at]]
    other = (reach_flags[at] != _SELF) & (target_seg != topo.reach_seg_idx[rows_d])
    at = at[other]
    rows = np.concatenate([np.arange(n_reach), rows_d[other]])
    cols = np.concatenate([topo.reach_seg_idx, target_seg[other]])
    vals = np.concatenate([_own_outlet_distance(topo, reach_length), reach_distance.data[at]])
    flags = np.concatenate([np.full(n_reach, _SELF, dtype=np.int8), reach_flags[at]])
    structure, perm = _sorted_csr(rows, cols, (n_reach, n_seg))
    cross_distance = _with_data(structure, vals[perm])
    flags = flags[perm]
    if weighting == "adjacency":
        # A reach listens to its own segment and to that segment's direct neighbours
        # in the chosen direction: row r of the cross graph is row seg(r) of the
        # coarse adjacency (already row-normalized), i.e. parent @ coarse.
        s = topo.reach_seg_idx
        counts = np.diff(seg_weights.indptr)[s]
        indptr = np.zeros(n_reach + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        pos = (np.arange(indptr[-1]) - np.repeat(indptr[:-1], counts)
               + np.repeat(seg_weights.indptr[s], counts))
        weights = sp.csr_matrix(
            (seg_weights.data[pos], seg_weights.indices[pos], indptr), shape=(n_reach, n_seg)
        )
        return cross_distance, weights, seg_edge_distance[pos]

    # Here "self" marks the own segment: it is kept whatever the direction.
    if direction == "updown":
        w = _row_normalize_csr(structure.indptr, _standardized_sigmoid(-cross_distance.data, stats))
        return cross_distance, _with_data(cross_distance, w), cross_distance.data.copy()
    keep = _direction_keep(flags, direction)
    w = np.zeros(flags.size)
    w[keep] = _standardized_sigmoid(-cross_distance.data[keep], stats)
    w[keep] = _row_normalize(_csr_rows(structure)[keep], w[keep], n_reach)
    return cross_distance, _mask_csr(cross_distance, keep, w), cross_distance.data[keep]


#: The fingerprint models are saved with now. Version 1 rounded the float64 lengths to
#: 0.01 m, so that the same lengths stored as float32 (a netCDF or zarr round trip)
#: fell on the other side of a rounding edge for about 1 reach in 500; version 2 rounds
#: their float32 values. Models saved with version 1 are still compared with it.
FINGERPRINT_VERSION = 2


def _length_key(length: np.ndarray, version: int) -> np.ndarray:
    """Lengths (m) as the fingerprint compares them: to 0.01 m, from their float32 value
    (version 2: float32 storage cannot change it) or their float64 value (version 1)."""
    if version >= 2:
        length = np.asarray(length, dtype=np.float64).astype(np.float32).astype(np.float64)
    return np.round(length * 100.0)


def _fingerprint(topo: Topology, options: dict[str, Any],
                 version: int = FINGERPRINT_VERSION) -> tuple[str, dict[str, str]]:
    """The graphs' fingerprint, and one for each part of it (the first 16 hex digits
    of each part's sha256) so that two networks with the same ids can be told apart
    by what differs: pointers, parents, lengths or options."""
    h = hashlib.sha256()
    h.update(b"xmsgl-graphs-v%d" % version)
    parts: dict[str, str] = {}

    def add(label: str, arr: np.ndarray) -> None:
        data = np.ascontiguousarray(arr).astype("<i8").tobytes()
        h.update(label.encode())
        h.update(data)
        parts[label] = hashlib.sha256(data).hexdigest()[:16]

    so = np.argsort(topo.seg_ids)
    ro = np.argsort(topo.reach_ids)
    add("seg", topo.seg_ids[so])
    add("seg_to", topo.seg_to[so])
    add("seg_length", _length_key(topo.seg_length[so], version))
    add("reach", topo.reach_ids[ro])
    add("reach_to", topo.reach_to[ro])
    add("reach_seg", topo.reach_seg[ro])
    add("reach_length", _length_key(topo.reach_length[ro], version))
    opts = json.dumps(options, sort_keys=True).encode()
    h.update(opts)
    parts["options"] = hashlib.sha256(opts).hexdigest()[:16]
    return h.hexdigest(), parts


#: What each part of a graph fingerprint covers, in the words of a mismatch error.
FINGERPRINT_PARTS = {
    "seg_to": "the segments' downstream pointers (seg_to)",
    "seg_length": "the segment lengths (seg_length, compared to 0.01 m)",
    "reach_to": "the reaches' downstream pointers (reach_to)",
    "reach_seg": "the segment each reach lies in (reach_seg)",
    "reach_length": "the reach lengths (reach_length, compared to 0.01 m)",
    "options": "the graph options",
}


# --------------------------------------------------------------------------- public


class RiverGraphs:
    """The coarse, fine and cross-scale graphs of one river network.

    Made by :func:`build_graphs` (or ``ds.msgl.graphs()``). All matrices are
    :class:`scipy.sparse.csr_matrix` in the dataset's order of ``seg`` and
    ``reach``; weights are row-normalized so that ``W @ X`` averages the states
    ``X`` of each node's neighbours.

    Attributes
    ----------
    seg_ids, reach_ids : numpy.ndarray of int64
        Node ids in the dataset's order (rows and columns of the matrices).
    coarse : scipy.sparse.csr_matrix, (n_seg, n_seg)
        Segment-to-segment weights, self-loops included.
    fine : scipy.sparse.csr_matrix, (n_reach, n_reach)
        Reach-to-reach weights, self-loops included.
    cross : scipy.sparse.csr_matrix, (n_reach, n_seg)
        Weight of segment ``s`` in the update of reach ``r``; every row sums to 1
        and holds a positive weight for the reach's own segment.
    parent : scipy.sparse.csr_matrix, (n_reach, n_seg)
        One-hot map of each reach to its segment.
    seg_distance, reach_distance : scipy.sparse.csr_matrix
        Signed along-stream distances in m (see the module's sign convention).
    cross_distance : scipy.sparse.csr_matrix, (n_reach, n_seg)
        Signed fine-network distance from reach ``r`` to the outlet reach of segment
        ``s``, for every segment whose outlet reach is on the flow path of ``r``.
    weighting : str
        ``"msgl"`` or ``"adjacency"``.
    options : dict
        The options the graphs were built with.
    n_outlets_seg, n_outlets_reach : int
        Number of outlets, equal to the number of trees in each forest.
    component_seg, component_reach : numpy.ndarray of int64
        For each node, the position of the outlet it drains to.
    fingerprint : str
        sha256 of the topology (sorted ids, pointers, parents, lengths as float32
        rounded to 0.01 m) and the options: equal for any ordering of the same network,
        and for its lengths stored as float32 or float64.
    fingerprint_parts : dict of str
        A short hash of each part of the fingerprint (``"seg_to"``, ``"seg_length"``,
        ``"reach_to"``, ``"reach_seg"``, ``"reach_length"``, ``"options"``, and the
        ids as ``"seg"`` and ``"reach"``), saved with models to say what differs.
    """

    def __init__(
        self,
        *,
        seg_ids: np.ndarray,
        reach_ids: np.ndarray,
        coarse: sp.csr_matrix,
        fine: sp.csr_matrix,
        cross: sp.csr_matrix,
        parent: sp.csr_matrix,
        seg_distance: sp.csr_matrix,
        reach_distance: sp.csr_matrix,
        cross_distance: sp.csr_matrix,
        edge_distance: dict[str, np.ndarray],
        options: dict[str, Any],
        component_seg: np.ndarray,
        component_reach: np.ndarray,
        fingerprint: str,
        fingerprint_parts: dict[str, str] | None = None,
        older_fingerprints: dict[int, tuple[str, dict[str, str]]] | None = None,
    ) -> None:
        self.seg_ids = seg_ids
        self.reach_ids = reach_ids
        self.coarse = coarse
        self.fine = fine
        self.cross = cross
        self.parent = parent
        self.seg_distance = seg_distance
        self.reach_distance = reach_distance
        self.cross_distance = cross_distance
        self._edge_distance = edge_distance
        self.options = dict(options)
        self.weighting: str = options["weighting"]
        self.component_seg = component_seg
        self.component_reach = component_reach
        self.n_outlets_seg = int(np.unique(component_seg).size)
        self.n_outlets_reach = int(np.unique(component_reach).size)
        self.fingerprint = fingerprint
        self.fingerprint_parts = dict(fingerprint_parts or {})
        self._older = dict(older_fingerprints or {})
        self._data: HeteroData | None = None

    def fingerprint_of_version(self, version: int) -> tuple[str, dict[str, str]]:
        """The fingerprint and its parts as version ``version`` computes them (what a
        model saved with that version compares against)."""
        if version == FINGERPRINT_VERSION or version not in self._older:
            return self.fingerprint, self.fingerprint_parts
        return self._older[version]

    @property
    def n_seg(self) -> int:
        """Number of coarse segments."""
        return int(self.seg_ids.size)

    @property
    def n_reach(self) -> int:
        """Number of fine reaches."""
        return int(self.reach_ids.size)

    def matrix(self, which: str) -> sp.csr_matrix:
        """The scipy matrix named ``which``: "coarse", "fine", "cross" or "parent"."""
        names = ("coarse", "fine", "cross", "parent")
        if which not in names:
            raise ChoiceError(f"which={which!r} is not a graph; use one of {list(names)}")
        m: sp.csr_matrix = getattr(self, which)
        return m

    def edge_distance(self, which: str) -> np.ndarray:
        """Signed distance (m) of each stored weight of ``which``, in CSR order.

        Zero for self-loops and for the parent map.
        """
        m = self.matrix(which)
        if which == "parent":
            return np.zeros(m.nnz)
        return self._edge_distance[which]

    def torch_sparse(
        self,
        which: str,
        device: Any = None,
        dtype: torch.dtype | None = None,
        layout: str = "csr",
    ) -> torch.Tensor:
        """One of the graphs as a torch sparse tensor, for ``A @ X``.

        Parameters
        ----------
        which : {"coarse", "fine", "cross", "parent"}
            The matrix to convert.
        device : torch.device or str, optional
            Where to put the tensor (default: cpu).
        dtype : torch.dtype, optional
            Value type (torch.float32 when None).
        layout : {"csr", "coo"}, default "csr"
            Sparse layout. COO suits code that needs ``torch.sparse.mm`` autograd with
            respect to the matrix itself; both multiply a dense (N, H) matrix.

        Returns
        -------
        torch.Tensor
            A sparse (rows, cols) tensor. For batched states ``X`` of shape
            (B, N, H) use ``(A @ X.transpose(0, 1).reshape(N, -1)).reshape(-1, B, H)``
            and transpose back, or :func:`torch.sparse.mm` per batch.

        Examples
        --------
        >>> import numpy as np, torch, xarray as xr
        >>> from xmsgl.graph import build_graphs
        >>> ds = xr.Dataset(
        ...     {"seg_to": ("seg", [2, 0]), "seg_length": ("seg", [1.0, 1.0], {"units": "m"}),
        ...      "reach_to": ("reach", [20, 0]), "reach_length": ("reach", [1.0, 1.0], {"units": "m"}),
        ...      "reach_seg": ("reach", [1, 2])},
        ...     coords={"seg": [1, 2], "reach": [10, 20]})
        >>> A = build_graphs(ds).torch_sparse("fine")
        >>> (A @ torch.ones(2, 3)).sum(dim=1)
        tensor([3., 3.])
        """
        import torch

        from xmsgl.nn.rgrn import quiet_sparse_notes

        m = self.matrix(which)
        dt = torch.float32 if dtype is None else dtype
        if layout == "csr":
            with quiet_sparse_notes():  # torch's notes on its beta CSR support
                t = torch.sparse_csr_tensor(
                    torch.from_numpy(m.indptr.astype(np.int64)),
                    torch.from_numpy(m.indices.astype(np.int64)),
                    torch.from_numpy(np.asarray(m.data)).to(dt),
                    size=m.shape,
                    check_invariants=False,
                    device="cpu",
                )
        elif layout == "coo":
            idx = np.vstack([_csr_rows(m), m.indices.astype(np.int64)])
            t = torch.sparse_coo_tensor(
                torch.from_numpy(idx), torch.from_numpy(np.asarray(m.data)).to(dt),
                size=m.shape, is_coalesced=True, check_invariants=False, device="cpu",
            )
        else:
            raise ChoiceError(f"layout={layout!r} is not known; use 'csr' or 'coo'")
        return t if device is None else t.to(device)

    @property
    def data(self) -> HeteroData:
        """The graphs as a :class:`torch_geometric.data.HeteroData`.

        Built on first access and cached: every access returns the same object, so
        ``.clone()`` it before changing it in place (``HeteroData.to`` moves in place).

        Node types ``seg`` and ``reach`` hold ``node_id`` (int64) and ``num_nodes``.
        Edge types follow PyG's message direction, ``edge_index[0]`` = the source
        whose state is read and ``edge_index[1]`` = the target that is updated, with
        ``edge_weight`` (float32) the matching entry ``W[target, source]``:

        * ``("seg", "flows", "seg")`` and ``("reach", "flows", "reach")``: the
          coarse and fine weights, with ``edge_distance`` (float32, m) =
          ``D[target, source]``;
        * ``("seg", "informs", "reach")``: the cross weights (row 0 = segment,
          row 1 = reach) with ``edge_distance``;
        * ``("reach", "in", "seg")``: the parent map (row 0 = reach, row 1 = its
          segment), ``edge_weight`` 1.
        """
        if self._data is not None:
            return self._data
        try:
            import torch

            # torch_geometric calls torch.jit.script while it is imported, which torch
            # deprecates: a DeprecationWarning in torch 2.13, a FutureWarning (shown to
            # everyone) from 2.14. A note about torch_geometric's own code that a
            # user can do nothing about, and an error here where warnings are errors
            # (python -W error, pytest's filterwarnings = error). Only that note is
            # silenced.
            with ignoring(Warning, r"`torch\.jit\.script` is deprecated"):
                from torch_geometric.data import HeteroData
        except ImportError as err:  # pragma: no cover - both are dependencies
            raise ImportError(
                "RiverGraphs.data needs torch and torch_geometric: pip install torch torch_geometric"
            ) from err

        out = HeteroData()
        out["seg"].node_id = torch.from_numpy(self.seg_ids.astype(np.int64))
        out["seg"].num_nodes = self.n_seg
        out["reach"].node_id = torch.from_numpy(self.reach_ids.astype(np.int64))
        out["reach"].num_nodes = self.n_reach
        for key, which in (
            (("seg", "flows", "seg"), "coarse"),
            (("reach", "flows", "reach"), "fine"),
            (("seg", "informs", "reach"), "cross"),
        ):
            m = self.matrix(which)
            target = _csr_rows(m)
            source = m.indices.astype(np.int64)
            out[key].edge_index = torch.from_numpy(np.vstack([source, target]))
            out[key].edge_weight = torch.from_numpy(np.asarray(m.data, dtype=np.float32))
            out[key].edge_distance = torch.from_numpy(
                np.asarray(self.edge_distance(which), dtype=np.float32)
            )
        p = self.parent
        out["reach", "in", "seg"].edge_index = torch.from_numpy(
            np.vstack([_csr_rows(p), p.indices.astype(np.int64)])
        )
        out["reach", "in", "seg"].edge_weight = torch.ones(p.nnz, dtype=torch.float32, device="cpu")
        self._data = out
        return out

    def __repr__(self) -> str:
        o = self.options
        cut = []
        if o.get("max_distance") is not None:
            cut.append(f"max_distance={o['max_distance']!r} m")
        if o.get("max_hops") is not None:
            cut.append(f"max_hops={o['max_hops']!r}")
        lines = [
            f"<xmsgl.RiverGraphs weighting={self.weighting!r} direction={o['direction']!r}"
            + (" " + " ".join(cut) if cut else "") + ">",
            f"  coarse: {self.n_seg} segments, {self.coarse.nnz} weighted edges "
            f"(self-loops included), {plural(self.n_outlets_seg, 'outlet')}",
            f"  fine:   {self.n_reach} reaches, {self.fine.nnz} weighted edges "
            f"(self-loops included), {plural(self.n_outlets_reach, 'outlet')}",
            f"  cross:  {self.n_reach} reaches x {self.n_seg} segments, {self.cross.nnz} edges",
            f"  distances stored: seg {self.seg_distance.nnz}, reach {self.reach_distance.nnz}, "
            f"cross {self.cross_distance.nnz}",
            f"  fingerprint: {self.fingerprint[:16]}",
        ]
        return "\n".join(lines)


@typed_arguments
def build_graphs(
    ds: xr.Dataset,
    *,
    weighting: str = "msgl",
    direction: str = "updown",
    max_distance: float | None = None,
    max_hops: int | None = None,
) -> RiverGraphs:
    """Build the coarse, fine and cross-scale graphs of a river dataset.

    Only the topology variables (``seg_to``, ``seg_length``, ``reach_to``,
    ``reach_length``, ``reach_seg``) are read; they are validated first.

    Distances. For each scale the signed along-stream distance ``D`` (module
    docstring) is found by walking every node downstream one hop at a time, all
    nodes at once: O(N x depth) time and memory proportional to the number of
    connected pairs, never N x N. Segments use ``seg_length`` and the segment
    pointers, reaches ``reach_length`` and the reach pointers.

    Weighting ``"msgl"`` (the MSGL / river-dl formula). Take the explicit
    off-diagonal entries ``D[i, j]`` allowed by ``direction``; ``v = -D[i, j]``;
    ``z = (v - mean(v)) / std(v)`` over those entries (zero distances count, the
    standard deviation has ddof=0, and ``z = 0`` if it is 0);
    ``a[i, j] = sigmoid(z)``; ``a[i, i] = 1``; ``W[i, j] = a[i, j] / sum_k a[i, k]``.
    With ``"updown"`` upstream neighbours (``D < 0``) get larger weights than
    downstream ones at the same distance, nearer downstream nodes more than far
    ones, and *farther* upstream nodes more than nearer ones (``v = -D`` grows with
    the distance upstream); the cross-scale matrix weighs a reach's upstream
    segments the same way, so its own segment need not weigh most.

    Weighting ``"adjacency"``. ``a[i, j] = 1`` for the direct downstream and/or
    upstream neighbours (by ``direction``) and ``a[i, i] = 1``, then row-normalized.

    Cross-scale graph (n_reach x n_seg). ``cross_distance[r, s]`` is the signed
    fine distance from reach ``r`` to the outlet reach of segment ``s``, for every
    segment whose outlet reach is on the flow path of ``r`` (up- or downstream),
    matched through ``reach_seg`` ids, never by file order. With ``"msgl"`` the
    entries allowed by ``direction`` (the reach's own segment is always kept) are
    weighted as above: negate, standardize over those entries, sigmoid,
    row-normalize (no self-loop: the matrix is rectangular). A reach at its own
    segment's outlet has distance 0 and a positive weight to that segment; every
    reach reaches its own segment, so no row is empty. With ``"adjacency"`` each
    reach is tied with weight 1 to its own segment and to that segment's direct
    neighbours in the coarse adjacency (by ``direction``), then row-normalized.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the xmsgl convention; only topology is needed (no ``time``).
    weighting : {"msgl", "adjacency"}, default "msgl"
        The edge weighting, see above.
    direction : {"updown", "downstream", "upstream"}, default "updown"
        Which neighbours ``j`` of ``i`` get an edge: both, only those downstream of
        ``i``, or only those upstream.
    max_distance : float, optional
        Cut the distance walk at this along-stream distance (m): pairs farther apart
        are left out of the distances and weights. Use it, or ``max_hops``, on large
        networks with long main stems, where the number of connected pairs grows
        with N x depth. The statistics of the ``"msgl"`` weighting are then taken
        over the kept pairs. The cross graph always keeps each reach's own segment.
    max_hops : int, optional
        Cut the walk after this many hops (counted at each scale in its own nodes).

    Returns
    -------
    RiverGraphs

    Raises
    ------
    SchemaError
        For an unknown ``weighting`` or ``direction``, or a dataset off the convention.
    ParameterError
        For a ``max_distance`` that is not a finite number >= 0 (a str or a bool
        included), or a ``max_hops`` that is not an integer >= 1.
    TopologyError
        For invalid topology (cycles, dangling ids, ...).
    UnitsError
        For lengths without units or in units other than m or km.

    Examples
    --------
    Two segments of two reaches each, in a line (ids need not be in flow order):

    >>> import xarray as xr
    >>> from xmsgl.graph import build_graphs
    >>> m = {"units": "m"}
    >>> ds = xr.Dataset(
    ...     {"seg_to": ("seg", [0, 1]), "seg_length": ("seg", [300.0, 200.0], m),
    ...      "reach_to": ("reach", [12, 0, 21, 11]),
    ...      "reach_length": ("reach", [100.0, 200.0, 150.0, 50.0], m),
    ...      "reach_seg": ("reach", [1, 1, 2, 2])},
    ...     coords={"seg": [1, 2], "reach": [11, 12, 22, 21]})
    >>> g = build_graphs(ds)
    >>> g.reach_distance.toarray()
    array([[   0.,  200., -150., -100.],
           [-200.,    0., -350., -300.],
           [ 150.,  350.,    0.,   50.],
           [ 100.,  300.,  -50.,    0.]])
    >>> g.fine.sum(axis=1).A1.round(12).tolist()
    [1.0, 1.0, 1.0, 1.0]
    >>> g.cross_distance.toarray()
    array([[ 200., -100.],
           [   0., -300.],
           [ 350.,   50.],
           [ 300.,    0.]])
    >>> g.n_outlets_seg, g.n_outlets_reach
    (1, 1)
    """
    return _build(ds, None, weighting=weighting, direction=direction, max_distance=max_distance,
                  max_hops=max_hops)


def build_graphs_weighted(ds: xr.Dataset, stats: dict[str, Any] | None, **options: Any) -> RiverGraphs:
    """:func:`build_graphs` with the ``"msgl"`` weights standardized by ``stats``
    (:func:`weight_stats` of another network; ``None``: the network's own): the same
    graphs as ``build_graphs``, with every ``"msgl"`` edge weighed by the standardization
    of ``stats`` instead of the network's own."""
    if stats is not None and options.get("weighting", "msgl") != "msgl":
        stats = None  # the statistics standardize the "msgl" weighting only
    missing = [] if stats is None else [k for k in ("coarse", "fine", "cross") if k not in stats]
    if missing:
        raise ParameterError(f"stats has no entry for the graphs {missing}; give the mean and "
                             "standard deviation of all three, as weight_stats returns them")
    return _build(ds, stats, **options)


#: Bytes the graphs take while built, per entry of the fine graph (distances, flags,
#: weights, the cross graph and the coarse graph with them), measured on chains and
#: random trees of 2,000-20,000 reaches without a cut (59-63 bytes).
BYTES_PER_FINE_ENTRY = 64

#: Graphs expected to take more than this are warned of (with the cuts that keep them small).
LARGE_GRAPH_BYTES = 2 * 1024**3


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux's MemAvailable), else the machine's
    physical memory, else None where neither can be read; at most a container's limit
    (cgroup v2 ``memory.max``, v1 ``memory.limit_in_bytes``) less what it uses."""
    free: int | None = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
        except (AttributeError, ValueError, OSError):
            return None
    for folder, limit, used, cache in (
            ("/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
            ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes",
             "total_inactive_file")):
        try:
            with open(f"{folder}/{limit}") as f:
                cap = f.read().strip()
            with open(f"{folder}/{used}") as f:
                taken = int(f.read().strip())
        except (OSError, ValueError):
            continue
        # Page cache not in use counts as used, and is given back on demand (as a
        # kubelet counts a container's working set).
        try:
            with open(f"{folder}/memory.stat") as f:
                stat = dict(line.split()[:2] for line in f if len(line.split()) >= 2)
            taken -= min(int(stat.get(cache, 0)), taken)
        except (OSError, ValueError):
            pass
        if cap.isdigit():  # "max" (v2) is no limit; v1 writes a huge number instead
            free = min(free, max(int(cap) - taken, 0))
        break
    return free


def _check_graph_size(topo: Topology, max_distance: float | None, max_hops: int | None) -> None:
    """Refuse, before anything is allocated, graphs that cannot fit in memory, and warn
    of large ones: without a cut every pair of reaches on one flow path is stored, about
    N x (mean hops to the outlet) of them, which on a deep network (a random tree of
    10^5 reaches, 2,063 hops on average) took 21 GB before the kernel killed the
    process. ``max_distance`` alone is not estimated (the pairs it keeps depend on the
    lengths); ``max_hops`` bounds the count, with or without it."""
    if (max_distance is not None and max_hops is None) or not topo.n_reach:
        return
    hops = hops_to_outlet(topo.reach_to_idx)
    mean_hops = float(hops.mean())  # of the network, before the cut
    if max_hops is not None:
        hops = np.minimum(hops, max_hops)
    entries = topo.n_reach + 2 * int(hops.sum())
    need = BYTES_PER_FINE_ENTRY * entries
    if need <= LARGE_GRAPH_BYTES:
        return
    free = _available_memory()
    what = (f"the graphs of {topo.n_reach} reaches ({mean_hops:.0f} hops to the outlet on "
            f"average{f', at most {max_hops} counted' if max_hops is not None else ''}) hold "
            f"{entries:,} fine entries, about {need / 1e9:.1f} GB while built")
    cut = ("give a cut: max_hops (e.g. 8) or max_distance (m), to graphs(), or to fit(), whose "
           "model builds its graphs with its own cut wherever it runs")
    if free is not None and need > free:
        raise ParameterError(f"{what}, more than the {free / 1e9:.1f} GB of memory available; {cut}")
    warn_at_user(f"{what}{f' of the {free / 1e9:.1f} GB available' if free else ''}; to keep them "
                 f"small, {cut}", XmsglWarning)


def _build(
    ds: xr.Dataset,
    stats: dict[str, Any] | None,
    *,
    weighting: str = "msgl",
    direction: str = "updown",
    max_distance: float | None = None,
    max_hops: int | None = None,
) -> RiverGraphs:
    max_distance, max_hops = _check_options(weighting, direction, max_distance, max_hops)
    expect_dataset(ds)
    topo = topology_arrays(ds)
    _check_graph_size(topo, max_distance, max_hops)
    seg_length = topo.seg_length * _length_factor(ds, "seg_length")
    reach_length = topo.reach_length * _length_factor(ds, "reach_length")
    options: dict[str, Any] = {
        "weighting": weighting,
        "direction": direction,
        "max_distance": max_distance,
        "max_hops": max_hops,
    }

    seg_distance, seg_flags = flow_distances(
        topo.seg_to_idx, seg_length, max_distance=max_distance, max_hops=max_hops
    )
    reach_distance, reach_flags = flow_distances(
        topo.reach_to_idx, reach_length, max_distance=max_distance, max_hops=max_hops
    )
    st = stats or {}
    coarse, coarse_d = _square_weights(
        seg_distance, seg_flags, topo.seg_to_idx, seg_length, weighting, direction, st.get("coarse")
    )
    fine, fine_d = _square_weights(
        reach_distance, reach_flags, topo.reach_to_idx, reach_length, weighting, direction,
        st.get("fine")
    )
    cross_distance, cross, cross_d = _cross(
        topo, reach_distance, reach_flags, reach_length, coarse, coarse_d, weighting, direction,
        st.get("cross")
    )
    parent = sp.csr_matrix(
        (np.ones(topo.n_reach), topo.reach_seg_idx, np.arange(topo.n_reach + 1)),
        shape=(topo.n_reach, topo.n_seg),
    )
    length_scaled = dataclasses.replace(topo, seg_length=seg_length, reach_length=reach_length)
    fingerprint, parts = _fingerprint(length_scaled, options)
    older = {v: _fingerprint(length_scaled, options, version=v) for v in range(1, FINGERPRINT_VERSION)}
    return RiverGraphs(
        seg_ids=topo.seg_ids,
        reach_ids=topo.reach_ids,
        coarse=coarse,
        fine=fine,
        cross=cross,
        parent=parent,
        seg_distance=seg_distance,
        reach_distance=reach_distance,
        cross_distance=cross_distance,
        edge_distance={"coarse": coarse_d, "fine": fine_d, "cross": cross_d},
        options=options,
        component_seg=_components(topo.seg_to_idx),
        component_reach=_components(topo.reach_to_idx),
        fingerprint=fingerprint,
        fingerprint_parts=parts,
        older_fingerprints=older,
    )


def _standardized_entries(graphs: RiverGraphs, which: str) -> np.ndarray:
    """The entries of ``graphs.matrix(which)`` whose negated distance the ``"msgl"``
    weighting standardizes: all of the cross graph's, the others' off-diagonal ones."""
    m = graphs.matrix(which)
    return np.ones(m.nnz, dtype=bool) if which == "cross" else _csr_rows(m) != m.indices


def weight_stats(graphs: RiverGraphs) -> dict[str, list[float]] | None:
    """Mean and standard deviation of the negated distances that the ``"msgl"``
    weighting standardizes, for the ``"coarse"``, ``"fine"`` and ``"cross"`` graphs
    (``None`` for another weighting).

    A fitted model keeps those of its own network (``config["graph"]["weight_stats"]``),
    so that applied to another network, or to a part of its own, it weighs a given
    distance as in training (:func:`build_graphs_weighted`): a reach's prediction then does not
    depend on which other basins the dataset holds. The lazy path's blocks are weighted
    the same way.
    """
    if graphs.weighting != "msgl":
        return None
    out = {}
    for which in ("coarse", "fine", "cross"):
        v = -graphs.edge_distance(which)[_standardized_entries(graphs, which)]
        out[which] = [float(v.mean()) if v.size else 0.0, float(v.std()) if v.size else 0.0]
    return out
