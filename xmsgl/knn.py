"""Nearest neighbours for graph models, without compiled extensions.

Three kinds of neighbourhood feed the dynamic multi-scale graph embedding backbone
(:mod:`xmsgl.nn.dmsge`):

* **hydrologic**: the ``k`` strongest entries of each row of a sparse river
  adjacency (:func:`sparse_topk`);
* **geometric**: the ``k`` nearest nodes in space, from :class:`scipy.spatial.cKDTree`
  (:func:`geometric_knn`), computed once per network;
* **feature**: the ``k`` nearest nodes in an embedding space, recomputed for every
  window (:func:`feature_knn`). Small graphs use an exact search with
  :func:`torch.cdist` and a stable :func:`torch.sort` (equal distances by node id;
  O(N^2 (d + log N))); large ones search a fixed
  candidate set per node (its parent segment's reaches and its ``M`` nearest
  geometric neighbours, :func:`candidate_set`), which costs O(N M d).

Every neighbourhood is a fixed-``k`` index tensor of shape (N, k) or (B, N, k), so
messages are gathered with ``index_select`` rather than scattered.

Node positions come from :func:`node_geometry`: ``*_x``/``*_y`` (m) or
``*_lon``/``*_lat`` (degrees, projected locally), or, when a scale has neither and
``coords="auto"``, a documented fallback built from the river topology (the
along-stream distance to the outlet and the outlet's position in the forest).

torch is imported inside the functions that need it, so importing this module
stays light.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from xmsgl.exceptions import (
    ChoiceError,
    ParameterError,
    SchemaError,
    TopologyError,
    UnitsError,
    check_flag,
    format_ids,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "NodeGeometry",
    "candidate_set",
    "euler_tour",
    "feature_knn",
    "geometric_knn",
    "knn_brute",
    "knn_candidates",
    "node_geometry",
    "outlet_distance",
    "signed_stream_distance",
    "sparse_topk",
]

#: Ways :func:`node_geometry` may find positions.
COORDS = ("auto", "xy", "lonlat", "outlet-distance")

_EARTH_RADIUS = 6_371_000.0


# ----------------------------------------------------------------------- geometry


@dataclass
class NodeGeometry:
    """Positions and river structure of the nodes of one scale.

    Attributes
    ----------
    pos : numpy.ndarray, (N, 2) float64
        Positions in m.
    outlet_distance : numpy.ndarray, (N,) float64
        Along-stream distance to the outlet: the summed lengths of the nodes after
        the node, down to and including the outlet (0 at outlets).
    tin, tout : numpy.ndarray, (N,) int64
        Entry and exit times of a depth-first walk of the forest rooted at its
        outlets: ``j`` is downstream of ``i`` exactly when
        ``tin[j] <= tin[i] and tout[i] <= tout[j]``.
    group : numpy.ndarray, (N,) int64
        The parent segment's position for reaches; each segment's own position.
    source : str
        Where ``pos`` came from: ``"xy"``, ``"lonlat"`` or ``"outlet-distance"``.
    length_scale : float
        The median distance (m) of each node to its nearest other node, over the
        nodes that have no other node at their own position (co-located nodes,
        common with outlet-distance positions, would make it 0); 1 when every
        node shares its position. Relative positions and along-stream distances
        are expressed in this unit.
    """

    pos: np.ndarray
    outlet_distance: np.ndarray
    tin: np.ndarray
    tout: np.ndarray
    group: np.ndarray
    source: str
    length_scale: float
    #: The nodes' ids, when known: they break ties between equally strong neighbours.
    ids: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Number of nodes."""
        return int(self.pos.shape[0])


def outlet_distance(to_idx: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Along-stream distance from each node to its outlet (summed lengths after it).

    Raises
    ------
    SchemaError
        ``to_idx`` and ``length`` are not one value per node each.
    TopologyError
        Some nodes never reach an outlet (their downstream links form a cycle).

    Examples
    --------
    >>> import numpy as np
    >>> outlet_distance(np.array([1, 2, -1]), np.array([5.0, 10.0, 20.0])).tolist()
    [30.0, 20.0, 0.0]
    """
    to_idx = np.asarray(to_idx, dtype=np.int64)
    length = np.asarray(length, dtype=np.float64)
    if to_idx.ndim != 1 or length.shape != to_idx.shape:
        raise SchemaError(f"to_idx {to_idx.shape} and length {length.shape} must be one value per "
                          "node each, in the same order")
    out = np.zeros(to_idx.size)
    # Level by level up from the outlets, each node once: a node's downstream node is
    # done before it (a NaN length gives NaN upstream of it, nothing more).
    for level in _levels_up(to_idx)[1:]:
        down = to_idx[level]
        out[level] = out[down] + length[down]
    return out


def _levels_up(to_idx: np.ndarray) -> list[np.ndarray]:
    """The nodes by their hops from their outlet: outlets first, then the nodes that
    drain into them, and so on (each node once; O(N) in all).

    Raises
    ------
    TopologyError
        Some nodes never reach an outlet.
    """
    from xmsgl.scale import _upstream_neighbours

    n = to_idx.size
    up = _upstream_neighbours(to_idx)  # row i: the nodes draining into i
    ptr, upstream = up.indptr.astype(np.int64), up.indices.astype(np.int64)
    levels = [np.flatnonzero(to_idx < 0)]
    seen = levels[0].size
    while True:
        front = levels[-1]
        counts = ptr[front + 1] - ptr[front]
        if not counts.sum():
            break
        starts = np.repeat(ptr[front], counts)
        offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        levels.append(upstream[starts + offsets])
        seen += levels[-1].size
    if seen < n:
        reached = np.zeros(n, dtype=bool)
        reached[np.concatenate(levels)] = True
        raise TopologyError(
            f"nodes at positions {format_ids(np.flatnonzero(~reached))} never reach an outlet: "
            "their downstream links form a cycle; fix the network's to-links")
    return levels


def euler_tour(to_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry and exit times of a depth-first walk of a forest rooted at its outlets.

    ``j`` is on the downstream path of ``i`` (or ``i`` itself) exactly when
    ``tin[j] <= tin[i]`` and ``tout[i] <= tout[j]``.

    Examples
    --------
    >>> import numpy as np
    >>> tin, tout = euler_tour(np.array([2, 2, -1]))
    >>> bool(tin[2] <= tin[0] and tout[0] <= tout[2])
    True
    """
    to_idx = np.asarray(to_idx, dtype=np.int64)
    n = to_idx.size
    children: list[list[int]] = [[] for _ in range(n)]
    for i, j in enumerate(to_idx.tolist()):
        if j >= 0:
            children[j].append(i)
    tin = np.zeros(n, dtype=np.int64)
    tout = np.zeros(n, dtype=np.int64)
    clock = 0
    for root in np.flatnonzero(to_idx < 0).tolist():
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                tout[node] = clock
                clock += 1
                continue
            tin[node] = clock
            clock += 1
            stack.append((node, True))
            stack.extend((c, False) for c in children[node])
    return tin, tout


def signed_stream_distance(geom: NodeGeometry, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Signed along-stream distance ``D[i, j]`` (m) of :mod:`xmsgl.graph`, 0 where undefined.

    Positive when ``j`` is downstream of ``i``, negative when upstream, and 0 for
    pairs on different branches or trees (and for ``i == j``).
    """
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    down = (geom.tin[j] <= geom.tin[i]) & (geom.tout[i] <= geom.tout[j])
    up = (geom.tin[i] <= geom.tin[j]) & (geom.tout[j] <= geom.tout[i])
    d = geom.outlet_distance[i] - geom.outlet_distance[j]
    return np.where(down | up, d, 0.0)


#: The variables that give each kind of node position (``{}`` is the scale).
POSITION_VARS = {"xy": ("{}_x", "{}_y"), "lonlat": ("{}_lon", "{}_lat")}


def position_vars(scale: str, source: str) -> tuple[str, ...]:
    """The variables of ``scale`` nodes that positions of kind ``source`` come from
    (none for ``"outlet-distance"``)."""
    return tuple(n.format(scale) for n in POSITION_VARS.get(source, ()))


def _coord_vars(ds: xr.Dataset, scale: str) -> dict[str, tuple[str, ...]]:
    found = {source: position_vars(scale, source) for source in POSITION_VARS}
    return {source: names for source, names in found.items()
            if all(n in ds.variables for n in names)}


def _read_coords(ds: xr.Dataset, scale: str, names: tuple[str, ...], ids: np.ndarray,
                 read_units: bool = True, fitted: bool = False) -> np.ndarray:
    cols = []
    for name in names:
        da = ds[name]
        if tuple(str(d) for d in da.dims) != (scale,):
            raise SchemaError(f"coordinate variable {name!r} must be on ({scale!r},), got dims "
                              f"{tuple(map(str, da.dims))}")
        try:
            vals = np.asarray(da.values, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise SchemaError(f"coordinate variable {name!r} is not numeric ({da.dtype}); give "
                              "positions as numbers") from err
        bad = ~np.isfinite(vals)
        if bad.any():
            # A fitted model's neighbourhoods come from these positions: no other will do.
            fix = (f"fill them: the model was fitted on positions from {list(names)} and "
                   "reads no other (or refit it with coords='outlet-distance')" if fitted else
                   f"fill them, drop the variables {list(names)} to use the along-stream "
                   "fallback (coords='auto'), or pass coords='outlet-distance'")
            raise SchemaError(
                f"coordinate variable {name!r} is missing (NaN or infinite) at {scale} ids "
                f"{format_ids(ids[bad])}; {fix}"
            )
        if read_units and names[0].endswith(("_x", "_y")):
            vals = vals * _xy_factor(ds, name)
        cols.append(vals)
    return np.stack(cols, axis=1)


def _xy_factor(ds: xr.Dataset, name: str) -> float:
    """Factor that turns the projected coordinate ``ds[name]`` into metres.

    No ``units`` is read as metres, as the convention says; ``km`` is converted;
    anything else (``degrees_east``, ``ft``) is refused, since positions in another
    unit would be read as metres and change the neighbourhoods without a word.
    """
    from xmsgl.convention import _KILOMETRES, _METRES, _norm_units, _scalar_attr

    units = _scalar_attr(ds[name].attrs.get("units"))
    if units is None:
        return 1.0
    u = _norm_units(units)
    if u in _METRES:
        return 1.0
    if u in _KILOMETRES:
        return 1000.0
    hint = (f"; longitudes and latitudes go in {name.rsplit('_', 1)[0]}_lon and "
            f"{name.rsplit('_', 1)[0]}_lat" if u.startswith("deg") else "")
    raise UnitsError(f"coordinate variable {name!r} has units {units!r}; projected positions "
                     f"(x, y) must be in 'm' or 'km'{hint}")


def node_geometry(ds: xr.Dataset, scale: str, coords: str = "auto", *,
                  read_units: bool = True, fitted: bool = False) -> NodeGeometry:
    """Positions, outlet distances and river structure of the ``scale`` nodes of ``ds``.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the xmsgl convention.
    scale : {"seg", "reach"}
        Which nodes.
    coords : {"auto", "xy", "lonlat", "outlet-distance"}, default "auto"
        ``"xy"``: ``{scale}_x``/``{scale}_y`` in m (their ``units``: ``m``, or
        ``km``, converted; none is read as m). ``"lonlat"``:
        ``{scale}_lon``/``{scale}_lat`` in degrees, projected to m with a local
        equirectangular projection around their mean latitude, longitudes taken
        relative to their circular mean (a network across the 180th meridian, or
        given in 0..360, stays whole; latitudes beyond 90 and longitudes beyond 360
        degrees are a ``SchemaError``). ``"outlet-distance"``
        (the fallback): position ``(d, o)`` with ``d`` the along-stream distance to
        the outlet and ``o`` a per-tree offset (the tree's rank times ``2 max(d) +
        max(length) + 1``), so that different trees never mix and nodes at
        equal distance from the outlet of one tree are neighbours. ``"auto"`` takes
        the first available of x/y, lon/lat, then the fallback.
    read_units : bool, default True
        Read the ``units`` of x/y (``False``: every value is taken as m, as models
        saved before 2026-11-28 read them).
    fitted : bool, default False
        The positions are those a fitted model reads: a missing value's message
        offers no other kind of position.

    Returns
    -------
    NodeGeometry

    Raises
    ------
    SchemaError
        The requested coordinates are missing, not on ``(scale,)``, or missing at
        some nodes (the message names the ids).
    UnitsError
        ``{scale}_x``/``{scale}_y`` have units other than m or km.
    ParameterError
        An unknown ``scale`` or ``coords``.

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-01-01", end="2000-01-10")
    >>> node_geometry(ds, "reach").source
    'xy'
    """
    from xmsgl.convention import REACH, SEG, topology_arrays

    check_flag("read_units", read_units)
    if scale not in (SEG, REACH):
        raise ChoiceError(f"scale={scale!r} is not known; use 'seg' or 'reach'")
    if coords not in COORDS:
        raise ChoiceError(f"coords={coords!r} is not known; use one of {list(COORDS)}")
    topo = topology_arrays(ds)
    if scale == SEG:
        to_idx, length, ids = topo.seg_to_idx, topo.seg_length, topo.seg_ids
        group = np.arange(topo.n_seg, dtype=np.int64)
    else:
        to_idx, length, ids = topo.reach_to_idx, topo.reach_length, topo.reach_ids
        group = np.asarray(topo.reach_seg_idx, dtype=np.int64)
    dist = outlet_distance(to_idx, length)
    tin, tout = euler_tour(to_idx)
    available = _coord_vars(ds, scale)
    source = coords
    if coords == "auto":
        source = next((s for s in ("xy", "lonlat") if s in available), "outlet-distance")
    if source in ("xy", "lonlat"):
        if source not in available:
            a, b = ("x", "y") if source == "xy" else ("lon", "lat")
            raise SchemaError(
                f"coords={coords!r} needs the variables {scale}_{a!s} and {scale}_{b!s} on "
                f"({scale!r},); add them, or pass coords='auto' to fall back to positions from "
                "the along-stream distance to the outlet"
            )
        pos = _read_coords(ds, scale, available[source], ids, read_units, fitted)
        if source == "lonlat":
            pos = _project_lonlat(pos, scale, ids)
    else:
        root = _roots(to_idx)
        # Trees are stacked in the order of their outlets' ids, not of the dataset's
        # rows: positions (and so neighbours) must not depend on how rows are ordered.
        _, tree = np.unique(np.asarray(ids)[root], return_inverse=True)
        span = 2.0 * float(dist.max()) + float(np.max(length, initial=1.0)) + 1.0
        pos = np.stack([dist, tree.astype(np.float64) * span], axis=1)
    return NodeGeometry(pos=pos, outlet_distance=dist, tin=tin, tout=tout, group=group,
                        source=source, length_scale=_length_scale(pos),
                        ids=np.asarray(ids, dtype=np.int64))


def relative_longitude(lon: np.ndarray) -> np.ndarray:
    """Longitudes (degrees) relative to their circular mean, in -180..180: a network
    across the 180th meridian, or given in 0..360, stays whole."""
    rad = np.deg2rad(lon)
    centre = np.rad2deg(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean()))
    return np.asarray((lon - centre + 180.0) % 360.0 - 180.0)


def _project_lonlat(lonlat: np.ndarray, scale: str, ids: np.ndarray) -> np.ndarray:
    """Degrees to metres, projected locally (equirectangular about the mean latitude).

    Longitudes are taken relative to their circular mean, so that a network across
    the 180th meridian (179.9 and -179.9 are 22 km apart at 0 N, not 40,000) or given
    in 0..360 is not torn in two. Values that cannot be degrees are refused.
    """
    lon, lat = lonlat[:, 0], lonlat[:, 1]
    for name, vals, bound in ((f"{scale}_lat", lat, 90.0), (f"{scale}_lon", lon, 360.0)):
        bad = np.abs(vals) > bound
        if bad.any():
            raise SchemaError(
                f"coordinate variable {name!r} is outside -{bound:g}..{bound:g} degrees at {scale} "
                f"ids {format_ids(ids[bad])}; projected positions in m belong in {scale}_x and "
                f"{scale}_y (coords='xy')"
            )
    rel = relative_longitude(lon)
    lat0 = np.deg2rad(lat.mean())
    return np.stack([np.deg2rad(rel) * np.cos(lat0) * _EARTH_RADIUS,
                     np.deg2rad(lat) * _EARTH_RADIUS], axis=1)


def _roots(to_idx: np.ndarray) -> np.ndarray:
    """The outlet each node drains to (itself for outlets)."""
    to_idx = np.asarray(to_idx, dtype=np.int64)
    root = np.arange(to_idx.size, dtype=np.int64)
    for level in _levels_up(to_idx)[1:]:
        root[level] = root[to_idx[level]]
    return root


def _length_scale(pos: np.ndarray) -> float:
    if pos.shape[0] < 2:
        return 1.0
    from scipy.spatial import cKDTree

    d, _ = cKDTree(pos).query(pos, k=2)
    pos_d = d[:, 1][d[:, 1] > 0]
    return float(np.median(pos_d)) if pos_d.size else 1.0


# ------------------------------------------------------------------ static graphs


def _check_k(k: int, available: int, what: str, fix: str, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or int(k) < 1:
        raise ParameterError(f"{name}={k!r} must be a positive integer")
    if available < 1:
        raise ParameterError(f"{name}={k}: there are no {what} (fewer than two nodes); give at least "
                             "two nodes")
    if int(k) > available:
        raise ParameterError(f"{name}={k} is larger than the {available} {what}; {fix}")
    return int(k)


def _positions(pos: Any) -> np.ndarray:
    """Positions as a float64 (N, d) array, or a :class:`SchemaError` (text, objects,
    another shape)."""
    try:
        out = np.asarray(pos, dtype=np.float64)
    except (TypeError, ValueError) as err:
        kind = getattr(pos, "dtype", type(pos).__name__)
        raise SchemaError(f"positions must be numbers, an (N, d) array of coordinates; got {kind} "
                          f"({str(err).splitlines()[0][:80]})") from None
    if out.ndim != 2:
        raise SchemaError(f"positions must be an (N, d) array, one row per node; got shape {out.shape}")
    return out


def _check_features(x: Any) -> None:
    """Refuse features that are not a floating-point torch tensor of (N, d) or (B, N, d)."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise SchemaError(f"features must be a floating-point tensor of (N, d) or (B, N, d), got "
                          f"{type(x).__name__}; convert it with torch.as_tensor")
    if x.dim() not in (2, 3) or not x.is_floating_point():
        raise SchemaError(f"features must be a floating-point tensor of (N, d) or (B, N, d), got "
                          f"{x.dtype} of shape {tuple(x.shape)}")


def _one_key_per_node(tie_keys: np.ndarray, n: int) -> np.ndarray:
    keys = np.asarray(tie_keys)
    if keys.shape != (n,):
        raise ParameterError(f"tie_keys has shape {keys.shape}; give one key per node, shape ({n},)")
    return keys


def geometric_knn(pos: np.ndarray, k: int, *, duplicates: str = "allow",
                  tie_keys: np.ndarray | None = None) -> np.ndarray:
    """The ``k`` nearest other nodes of every node in space, with :class:`scipy.spatial.cKDTree`.

    Parameters
    ----------
    pos : numpy.ndarray, (N, d)
        Finite positions (x and y in the package: d = 2).
    k : int
        Neighbours per node, at most ``N - 1``.
    duplicates : {"allow", "raise"}, default "allow"
        Nodes at identical positions. ``"allow"`` (the documented fallback): the
        node itself is removed by index, not by distance, so co-located nodes are
        each other's nearest neighbours (at relative position 0), ties broken by
        ``tie_keys``. ``"raise"``: :class:`SchemaError` naming them.
    tie_keys : numpy.ndarray, optional
        One sortable key per node (node ids), which ranks equidistant neighbours so
        that the result does not depend on the nodes' order; by default the node's
        position in the dataset.

    Returns
    -------
    numpy.ndarray, (N, k) int64
        Neighbour positions, nearest first; never the node itself.

    Raises
    ------
    ParameterError
        ``k`` is not in ``1 .. N - 1``, an unknown ``duplicates``, or ``tie_keys``
        not one per node.
    SchemaError
        Positions that are not a (N, d) array, non-finite positions, or duplicates
        with ``duplicates="raise"``.

    Examples
    --------
    >>> import numpy as np
    >>> geometric_knn(np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]]), 1).ravel().tolist()
    [1, 0, 1]
    """
    from scipy.spatial import cKDTree

    pos = _positions(pos)
    n = pos.shape[0]
    if duplicates not in ("allow", "raise"):
        raise ChoiceError(f"duplicates={duplicates!r} is not known; use 'allow' or 'raise'")
    k = _check_k(k, n - 1, "other nodes", "lower k")
    bad = ~np.isfinite(pos).all(axis=1)
    if bad.any():
        raise SchemaError(f"positions of nodes {format_ids(np.flatnonzero(bad))} (by position) are "
                          "NaN or infinite; give every node finite coordinates")
    if duplicates == "raise":
        _, first, counts = np.unique(pos, axis=0, return_index=True, return_counts=True)
        if (counts > 1).any():
            raise SchemaError(
                f"{int((counts > 1).sum())} positions are shared by several nodes (first at node "
                f"positions {format_ids(np.sort(first[counts > 1]))}); move them apart or use "
                "duplicates='allow'"
            )
    keys = np.arange(n) if tie_keys is None else _one_key_per_node(tie_keys, n)
    tree = cKDTree(pos)
    n_query = min(k + 2, n)  # one past the k + 1 needed: is the k-th place tied?
    dist, idx = tree.query(pos, k=n_query)
    dist = np.asarray(dist, dtype=np.float64).reshape(n, n_query)
    idx = np.asarray(idx, dtype=np.int64).reshape(n, n_query)
    # cKDTree returns equidistant nodes (co-located ones above all) in no set order,
    # and may leave the node itself out of its k + 1 nearest among co-located nodes.
    # Where the node itself is among its k + 1 nearest and the next node is farther
    # than the (k + 1)-th, the k others are the right set: rank them by (distance,
    # position). Elsewhere a tie crosses the k-th place: take every node within the
    # (k + 1)-th distance (a hair more, for rounding) and rank those, so that ties are
    # broken by position in the dataset as documented.
    own = np.arange(n)[:, None]
    has_self = (idx[:, : k + 1] == own).any(axis=1)
    sure = has_self if n_query == k + 1 else has_self & (dist[:, k + 1] > dist[:, k] * (1.0 + 1e-9))
    out = np.empty((n, k), dtype=np.int64)
    rows = np.flatnonzero(sure)
    if rows.size:
        cand = idx[rows, : k + 1]
        d = np.where(cand == rows[:, None], np.inf, dist[rows, : k + 1])
        order = np.lexsort((keys[cand], d), axis=-1)[:, :k]
        out[rows] = np.take_along_axis(cand, order, axis=1)
    rest = np.flatnonzero(~sure)
    # Nodes with k others at their very position: those are their neighbours, the
    # smallest keys of the group first, so each group is ranked once (a ball per node
    # made the work and memory grow with the square of the group's size).
    stacked = rest[dist[rest, k] == 0.0]
    if stacked.size:
        _, group = np.unique(pos, axis=0, return_inverse=True)
        group = group.reshape(-1)
        by_group = np.lexsort((keys, group))  # each group's nodes, smallest key first
        first = np.searchsorted(group[by_group], np.arange(group.max() + 1))
        for i in stacked:
            start = first[group[i]]
            ranked = by_group[start: start + k + 1]
            out[i] = ranked[ranked != i][:k]
        rest = rest[dist[rest, k] > 0.0]
    # The others a few hundred at a time, so that the balls' lists stay small.
    for c0 in range(0, rest.size, 512):
        part = rest[c0: c0 + 512]
        balls = tree.query_ball_point(pos[part], dist[part, k] * (1.0 + 1e-9))
        for i, ball in zip(part, balls):
            near = np.asarray(ball, dtype=np.int64)
            near = near[near != i]
            d2 = ((pos[near] - pos[i]) ** 2).sum(axis=1)
            out[i] = near[np.lexsort((keys[near], d2))[:k]]
    return out


def sparse_topk(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, k: int,
                tie_keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest off-diagonal entries of each row of a CSR matrix, padded with the row itself.

    Parameters
    ----------
    indptr, indices, data : numpy.ndarray
        A square CSR matrix (rows are updated from columns).
    k : int
        Neighbours per row (may exceed the number of nodes: rows are padded).
    tie_keys : numpy.ndarray, optional
        One sortable key per column (node ids): weights equal to 12 decimals are
        ranked by it, so that the neighbours chosen do not depend on the order of
        the nodes (river weights tie often: two tributaries of one junction). By
        default the column position.

    Returns
    -------
    index : numpy.ndarray, (N, k) int64
        Column positions, largest weight first; rows with fewer than ``k``
        off-diagonal entries are padded with their own position.
    real : numpy.ndarray, (N, k) bool
        False at the padding.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> m = sp.csr_matrix(np.array([[1.0, 0.5, 0.2], [0.3, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    >>> idx, real = sparse_topk(m.indptr, m.indices, m.data, 2)
    >>> idx.tolist(), real.tolist()
    ([[1, 2], [0, 1], [2, 2]], [[True, True], [True, False], [False, False]])
    """
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    data = np.asarray(data, dtype=np.float64)
    n = indptr.size - 1
    # Short rows are padded, so k may exceed the nodes (a small block of the lazy path).
    k = _check_k(k, np.iinfo(np.int64).max, "nodes", "lower k")
    rows = np.repeat(np.arange(n), np.diff(indptr))
    off = indices != rows
    rows, cols, vals = rows[off], indices[off], data[off]
    # Sort by row, then by decreasing weight (ties, to 12 decimals, by key), then keep
    # the first k. Rounding makes weights that differ only by summation order tie.
    keys = cols if tie_keys is None else np.asarray(tie_keys)[cols]
    order = np.lexsort((keys, -np.round(vals, 12), rows))
    rows, cols = rows[order], cols[order]
    start = np.searchsorted(rows, np.arange(n))
    rank = np.arange(rows.size) - start[rows]
    keep = rank < k
    index = np.repeat(np.arange(n)[:, None], k, axis=1)
    real = np.zeros((n, k), dtype=bool)
    index[rows[keep], rank[keep]] = cols[keep]
    real[rows[keep], rank[keep]] = True
    return index, real


def candidate_set(pos: np.ndarray, group: np.ndarray, m: int, *, max_group: int = 32,
                  tie_keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-width candidate neighbours: the node's group (parent segment) and its ``m`` nearest nodes.

    Parameters
    ----------
    pos : numpy.ndarray, (N, 2)
        Positions.
    group : numpy.ndarray, (N,) int
        Group of each node (the parent segment of a reach).
    m : int
        Geometric candidates per node (at most ``N - 1``).
    max_group : int, default 32
        At most this many members of the node's group (the nearest ones) are kept.
    tie_keys : numpy.ndarray, optional
        A key per node (its id) that orders the group members and breaks distance
        ties, so that each node's candidates, in order, do not depend on the order of
        the rows. Default: the row positions.

    Returns
    -------
    candidates : numpy.ndarray, (N, G + m) int64
        Candidate positions; never the node itself where ``valid``.
    valid : numpy.ndarray, (N, G + m) bool
        False at padding and at repeated candidates.

    Examples
    --------
    >>> import numpy as np
    >>> pos = np.array([[0.0, 0], [2, 0], [3, 0], [9, 0]])
    >>> cand, valid = candidate_set(pos, np.array([0, 0, 1, 1]), 1)
    >>> [sorted(set(c[v].tolist())) for c, v in zip(cand, valid)]
    [[1], [0, 2], [1, 3], [2]]
    """
    pos = _positions(pos)
    n = pos.shape[0]
    group = np.asarray(group)
    if group.shape != (n,) or group.dtype.kind not in "iu":
        raise ParameterError(f"group has shape {group.shape} and dtype {group.dtype}; give one integer "
                             f"per node (its parent segment's position), shape ({n},)")
    group = group.astype(np.int64)
    m = _check_k(m, n - 1, "other nodes", "lower m, the number of geometric candidates", name="m")
    keys = np.arange(n) if tie_keys is None else _one_key_per_node(tie_keys, n)
    geo = geometric_knn(pos, m, tie_keys=keys)
    order = np.lexsort((keys, group))  # by group, then by key
    g_sorted = group[order]
    starts = np.searchsorted(g_sorted, g_sorted, side="left")
    sizes = np.searchsorted(g_sorted, g_sorted, side="right") - starts
    width = int(min(max(int(sizes.max(initial=1)) - 1, 0), max_group))
    members = np.full((n, width), -1, dtype=np.int64)
    if width:
        big = np.flatnonzero(sizes - 1 > width)
        small = np.flatnonzero(sizes - 1 <= width)
        # Groups that fit: every other member, in key order (self removed).
        node = order[small]
        span = np.arange(width + 1)
        cols = starts[small][:, None] + span[None, :]
        ok = span[None, :] < sizes[small][:, None]
        mem = np.where(ok, order[np.minimum(cols, n - 1)], -1)
        mem = np.where(mem == node[:, None], -1, mem)
        srt = np.argsort(mem < 0, axis=1, kind="stable")  # padding last
        members[node] = np.take_along_axis(mem, srt, axis=1)[:, :width]
        for p in big.tolist():
            one = int(order[p])
            grp = order[starts[p]: starts[p] + sizes[p]]
            grp = grp[grp != one]
            d = ((pos[grp] - pos[one]) ** 2).sum(axis=1)
            members[one] = grp[np.argsort(d, kind="stable")[:width]]
    cand = np.concatenate([members, geo], axis=1)
    valid = cand >= 0
    if width:
        repeated = (geo[:, :, None] == members[:, None, :]).any(axis=2)
        valid[:, width:] &= ~repeated
    cand = np.where(valid, cand, np.arange(n)[:, None])
    return cand, valid


# ------------------------------------------------------------------- feature kNN


def _centred(x: torch.Tensor) -> torch.Tensor:
    """``x`` (B, N, d) less its mean over the nodes (NaN features left out of it).

    Distances are the same; the searches compute them as ``|x_i|^2 + |x_j|^2 -
    2 x_i.x_j`` (torch's ``cdist`` above 25 nodes), which in float32 loses the
    differences between nodes under an offset they all share (an offset of 10 times
    their spread put 93 of 100 nodes' neighbours wrong)."""
    import torch

    return x - torch.nan_to_num(torch.nanmean(x, dim=1, keepdim=True))


def knn_brute(x: torch.Tensor, k: int, tie_keys: np.ndarray | None = None) -> torch.Tensor:
    """Exact ``k`` nearest other nodes in feature space: ``cdist`` and a stable sort
    (equal computed distances by node id: nodes with identical features are taken
    in id order; distances equal only in exact arithmetic may round apart in
    float32, above 25 nodes most of all, and then go by the rounding).

    Parameters
    ----------
    x : torch.Tensor, (B, N, d) or (N, d)
        Features.
    k : int
        Neighbours, at most ``N - 1``.
    tie_keys : numpy.ndarray, optional
        A key per node (its id): equal computed distances go to the smaller key, so
        that the neighbours do not depend on the order of the rows. Default: the
        positions.

    Returns
    -------
    torch.Tensor of int64, (B, N, k) or (N, k)
        Nearest first; never the node itself.

    Raises
    ------
    SchemaError
        Features that are not a floating-point tensor of (N, d) or (B, N, d).
    ParameterError
        ``k`` is not in ``1 .. N - 1``.

    Examples
    --------
    >>> import torch
    >>> knn_brute(torch.tensor([[0.0], [1.0], [5.0]]), 1).ravel().tolist()
    [1, 0, 1]
    """
    import torch

    _check_features(x)
    squeeze = x.dim() == 2
    xb = x.unsqueeze(0) if squeeze else x
    n = xb.shape[1]
    k = _check_k(k, n - 1, "other nodes", "lower k")
    order = inverse = None
    if tie_keys is not None:
        # Searched in key order, so that equal distances go to the smaller key; centred
        # in that order too (the mean's rounding followed the caller's row order, which
        # then chose between distances equal in exact arithmetic).
        order = torch.from_numpy(np.argsort(_one_key_per_node(tie_keys, n), kind="stable")).to(xb.device)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(n, device=xb.device)
        xb = xb.index_select(1, order)
    xb = _centred(xb)
    d = torch.cdist(xb, xb)
    # Rank the node itself after everything, NaN distances (NaN features) included:
    # topk puts NaN after inf, so an inf diagonal would let a node whose distances
    # are all NaN pick itself.
    d = d.masked_fill(torch.isnan(d), float("inf"))
    d.diagonal(dim1=1, dim2=2).fill_(float("nan"))
    # A stable sort breaks ties by column: in key order when the columns are.
    idx = torch.sort(d, dim=2, stable=True).indices[:, :, :k]
    if order is not None:
        idx = order[idx][:, inverse]  # back to the caller's positions and rows
    return idx[0] if squeeze else idx


def knn_candidates(x: torch.Tensor, candidates: torch.Tensor, valid: torch.Tensor, k: int
                   ) -> torch.Tensor:
    """``k`` nearest nodes in feature space among fixed candidates: O(N M d).

    Parameters
    ----------
    x : torch.Tensor, (B, N, d)
        Features.
    candidates : torch.Tensor of int64, (N, M)
        Candidate positions per node (from :func:`candidate_set`).
    valid : torch.Tensor of bool, (N, M)
        Which candidates are real.
    k : int
        Neighbours, at most the smallest number of valid candidates of a node.

    Returns
    -------
    torch.Tensor of int64, (B, N, k)
        Nearest first.

    Raises
    ------
    ParameterError
        ``k`` exceeds the valid candidates of some node.
    """
    import torch

    n, m = candidates.shape
    fewest = int(valid.sum(dim=1).min()) if n else 0
    k = _check_k(k, fewest, "candidate nodes of the node with the fewest",
                 "lower k or raise the number of geometric candidates")
    b = x.shape[0]
    x = _centred(x)
    flat = candidates.reshape(-1)
    xc = x.index_select(1, flat).view(b, n, m, -1)
    # ||x_j||^2 - 2 x_i.x_j ranks candidates like ||x_i - x_j||^2 (||x_i||^2 is common to
    # the row) without building the (B, N, M, d) differences.
    sq = x.pow(2).sum(dim=2)
    d = sq.index_select(1, flat).view(b, n, m) - 2.0 * torch.einsum("bnmd,bnd->bnm", xc, x)
    # Padding ranks after every real candidate, NaN distances (NaN features) included:
    # topk puts NaN after inf, so NaN marks the padding and inf the NaN distances.
    d = d.masked_fill(torch.isnan(d), float("inf")).masked_fill(~valid.unsqueeze(0), float("nan"))
    # Ties go to the earlier candidate column (candidate_set orders them by key).
    pick = torch.sort(d, dim=2, stable=True).indices[:, :, :k]
    return candidates.unsqueeze(0).expand(b, n, m).gather(2, pick)


def feature_knn(x: torch.Tensor, k: int, candidates: torch.Tensor | None = None,
                valid: torch.Tensor | None = None, *, brute_max: int = 2048,
                tie_keys: np.ndarray | None = None) -> torch.Tensor:
    """Feature-space kNN: exact for ``N <= brute_max`` or without candidates, else over candidates.

    Parameters
    ----------
    x : torch.Tensor, (B, N, d)
        Features (for example each node's embedding averaged over a window).
    k : int
        Neighbours per node.
    candidates, valid : torch.Tensor, (N, M), optional
        Candidate sets of :func:`candidate_set`.
    brute_max : int, default 2048
        Largest graph searched exhaustively when candidates are given.
    tie_keys : numpy.ndarray, optional
        A key per node (its id) that breaks ties in the exhaustive search; over
        candidates, ties go to the earlier candidate (see :func:`candidate_set`).

    Returns
    -------
    torch.Tensor of int64, (B, N, k)

    Examples
    --------
    >>> import torch
    >>> feature_knn(torch.randn(2, 10, 3), 4).shape
    torch.Size([2, 10, 4])
    """
    _check_features(x)
    if candidates is None or x.shape[1] <= brute_max:
        return knn_brute(x, k, tie_keys)
    if valid is None:
        raise ParameterError("feature_knn: pass valid (which candidates are real) along with candidates")
    return knn_candidates(x, candidates, valid, k)
