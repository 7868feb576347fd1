"""Scale-out: blocks of the river network that follow hydrology, and lazy downscaling.

A continental network is many independent drainage basins. Water (and the model's
graph diffusion) never crosses from one basin to another, so the work splits where
the network splits:

* :func:`partition` groups whole drainage components (each outlet's basin, at the
  segment level so that every reach stays with its segment) into blocks of about
  ``reach_chunk`` reaches (next-fit bin packing in the dataset's order). A component larger
  than a block is cut into connected pieces of segments; each piece is run with a
  *halo*, the segments within ``halo`` hops of it on the side the model's graph
  reads (downstream, upstream or both), whose predictions are dropped.
* :func:`downscale_lazy` (what ``ds.msgl.downscale(model)`` runs on dask-backed
  inputs) reorders the inputs block by block with dask, cuts long records into time
  blocks that start ``spinup`` days early (the recurrent state is warmed up exactly
  as in an in-memory run), applies the model to each block with
  :func:`xarray.map_blocks` and puts the result back in the dataset's reach order.
  Nothing is computed during the call.

The model reaches each worker once: the block function receives the model folder
and its sha256, and each worker process loads it on first use and keeps it in a
module-level cache (:func:`cached_model`).

Accuracy. The recurrent cell adds a graph diffusion of its state every day, so
after a year of days the receptive field of a reach is every node its graph
reaches in any number of edges: its whole drainage component (``"updown"``), all
of it upstream (``"upstream"``), or its path to the outlet (``"downstream"``).
Whole components in a block are exact (up to float rounding), and so are pieces of
a ``"downstream"`` model, whose default halo is their whole path to the outlet;
otherwise a split component differs near the cut, by an amount that shrinks with
the halo depth at a rate set by the fitted model (:func:`halo_for_options`).
Time blocks reproduce the windows of the in-memory run when ``time_block`` is a
multiple of ``chunk``. A model with the dmsge backbone gets the whole network's
node geometry in every block; its river neighbours are exact in blocks with the
default halo, while its geometric and feature-space neighbours, searched over the
whole network, run as one block only (:class:`BlockDependenceError` otherwise). See
``docs/pangeo.md`` for measured differences.
"""

from __future__ import annotations

import collections
import datetime as _dt
import functools
import operator
import os
import re
import sys
import tempfile
import threading
import uuid
import warnings
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from xmsgl.convention import REACH, SEG, TIME, Topology, hops_to_outlet, output_coords, topology_arrays
from xmsgl.exceptions import (
    ChoiceError,
    DataError,
    InputRangeWarning,
    ModelMismatchError,
    ParameterError,
    UnitsError,
    XmsglError,
    XmsglWarning,
    check_count,
    check_flag,
    first_time,
    warn_at_user,
)
from xmsgl.graph import DIRECTIONS, build_graphs_weighted, weight_stats

if TYPE_CHECKING:
    import torch

    from xmsgl.graph import RiverGraphs
    from xmsgl.knn import NodeGeometry
    from xmsgl.model import Downscaler

__all__ = [
    "DEFAULT_HALO",
    "DEFAULT_REACH_CHUNK",
    "Block",
    "BlockDependenceError",
    "ChunkingError",
    "Partition",
    "cached_model",
    "cut_reach",
    "default_halo",
    "downscale_lazy",
    "halo_for_options",
    "hydro_order",
    "is_lazy",
    "partition",
    "subbasin_batches",
]

#: Reaches per block (core reaches; a split component's halo comes on top).
DEFAULT_REACH_CHUNK = 4_000
#: Depth of the halo around a piece of a split component, in segment hops, for
#: :func:`partition`. :func:`downscale_lazy` derives its default from the model's
#: graph (:func:`default_halo`).
DEFAULT_HALO = 12
#: Segment hops added to the graph's reach (:func:`cut_reach`) for the default halo
#: of an ``"updown"`` or ``"upstream"`` graph. The dependence on nodes beyond one
#: edge decays at a rate set by the fitted weights: 6 hops left single-block
#: differences of up to 0.36 degC, 12 kept every measured case within 0.02 degC
#: (docs/pangeo.md).
HALO_MARGIN = 12
#: Largest input chunk (bytes) a block may have to read whole.
MAX_INPUT_CHUNK_BYTES = 1 << 30
#: Most chunks one input variable may have (the task graph grows with them).
MAX_INPUT_CHUNKS = 200_000
#: Fewest days per time chunk of an input before the lazy path warns: each time block
#: (a year and its warm-up) then reads that many chunks per variable and block.
MIN_TIME_CHUNK_DAYS = 30

_SLOT = "xmsgl_slot"
_XTIME = "xmsgl_xtime"


class ChunkingError(ParameterError):
    """The dask chunks of the input cannot be downscaled block by block as they are."""


class BlockDependenceError(ParameterError):
    """The model's predictions for a block depend on nodes of other blocks.

    Raised by :func:`downscale_lazy` for a model whose dmsge backbone searches
    neighbours over the whole network (its ``"geo"`` or ``"dynamic"``
    neighbourhoods) when the network does not fit one block: blocks would give
    other answers than the in-memory run.
    """


# ----------------------------------------------------------------------- partition


@dataclass(frozen=True)
class Block:
    """One block of a :class:`Partition`: positions in the dataset's order.

    ``seg`` and ``reach`` list the block's core nodes first (``n_core_seg`` and
    ``n_core_reach`` of them), then its halo.
    """

    seg: np.ndarray
    n_core_seg: int
    reach: np.ndarray
    n_core_reach: int


@dataclass(frozen=True)
class Partition:
    """Blocks that cover every segment and reach exactly once as core nodes.

    Attributes
    ----------
    blocks : tuple of Block
    reach_chunk : int
        The target of core reaches per block.
    halo : int
        Halo depth in segment hops that split components get (0 where components are
        never split, ``halo=None``; the depth asked for, even when no component needed
        cutting: :attr:`n_split` says whether any was).
    n_components : int
        Independent drainage components (outlets) of the segment network.
    n_split : int
        Components larger than ``reach_chunk``, cut into pieces with halos.
    direction : str
        The side the halos grow on: ``"updown"`` (any branch), ``"downstream"`` or
        ``"upstream"``, that of the graph the blocks are made for.
    """

    blocks: tuple[Block, ...]
    reach_chunk: int
    halo: int
    n_components: int
    n_split: int
    direction: str = "updown"

    @property
    def reach_order(self) -> np.ndarray:
        """Reach positions block by block (core reaches only): a basin-grouped order."""
        return np.concatenate([b.reach[: b.n_core_reach] for b in self.blocks])

    @property
    def seg_order(self) -> np.ndarray:
        """Segment positions block by block (core segments only)."""
        return np.concatenate([b.seg[: b.n_core_seg] for b in self.blocks])

    @property
    def halo_share(self) -> float:
        """Extra reaches computed for halos, as a share of all reaches."""
        core = sum(b.n_core_reach for b in self.blocks)
        total = sum(b.reach.size for b in self.blocks)
        return (total - core) / max(core, 1)

    def __repr__(self) -> str:
        sizes = [b.n_core_reach for b in self.blocks]
        return (f"<xmsgl.scale.Partition {len(self.blocks)} blocks of {min(sizes)}-{max(sizes)} "
                f"reaches (target {self.reach_chunk}), {self.n_components} components, "
                f"{self.n_split} split with halo {self.halo}"
                + ("" if self.direction == "updown" else f" {self.direction}")
                + f" (+{self.halo_share:.1%} reaches)>")


def _cut_tree(to_idx: np.ndarray, weight: np.ndarray, nodes: np.ndarray, target: int,
              depth: np.ndarray) -> np.ndarray:
    """Cut one tree (``nodes``) into connected pieces of at most about ``target`` weight.

    Children are visited before parents; a parent keeps its lightest children while
    they fit and cuts the others off as pieces of their own. Returns the piece root
    of every node of ``nodes`` (same order).
    """
    order = nodes[np.argsort(-depth[nodes], kind="stable")]
    pending: dict[int, int] = {}
    children: dict[int, list[int]] = {}
    cut: set[int] = set()
    for i in order.tolist():
        kids = sorted(children.pop(i, []), key=lambda c: pending[c])
        acc = int(weight[i])
        for c in kids:
            if acc + pending[c] <= target:
                acc += pending[c]
            else:
                cut.add(c)
        pending[i] = acc
        parent = int(to_idx[i])
        if parent >= 0:
            children.setdefault(parent, []).append(i)
        else:
            cut.add(i)
    root = np.empty(nodes.size, dtype=np.int64)
    pos = {n: k for k, n in enumerate(nodes.tolist())}
    for i in order[::-1].tolist():  # parents before children
        parent = int(to_idx[i])
        root[pos[i]] = i if (i in cut or parent < 0) else root[pos[parent]]
    return root


def _upstream_neighbours(to_idx: np.ndarray) -> sp.csr_matrix:
    """Row ``i`` lists the nodes that drain directly into ``i``."""
    n = to_idx.size
    down = np.flatnonzero(to_idx >= 0)
    return sp.csr_matrix((np.ones(down.size, dtype=np.int8), (to_idx[down], down)), shape=(n, n))


def _grow_halo(core: np.ndarray, to_idx: np.ndarray, up: sp.csr_matrix, hops: int,
               direction: str) -> np.ndarray:
    """Nodes within ``hops`` hops of ``core`` on the side(s) ``direction`` reads.

    ``"downstream"`` follows the pointers, ``"upstream"`` their reverse, and
    ``"updown"`` both, along any branch. Breadth-first from the core, so the cost is
    that of the halo, not of the network; stops early once nothing new is found.
    """
    mask = np.zeros(to_idx.size, dtype=bool)
    mask[core] = True
    frontier = core
    for _ in range(hops):
        found = []
        if direction != "upstream":
            down = to_idx[frontier]
            found.append(down[down >= 0])
        if direction != "downstream":
            found.append(up[frontier].indices)
        new = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
        new = new[~mask[new]]
        if not new.size:
            break
        mask[new] = True
        frontier = new
    mask[core] = False
    return np.flatnonzero(mask)


#: :func:`partition`'s default: run whole a component one of whose blocks would hold all
#: of it. Tests of the halos on small basins, which a default halo covers, turn it off.
WHOLE_WHEN_HELD = True


def _pack(topo: Topology, comp: np.ndarray, comp_inv: np.ndarray, n_comp: int, weight: np.ndarray,
          big: np.ndarray, reach_chunk: int, halo: int,
          direction: str) -> tuple[list[Block], np.ndarray]:
    """The blocks of :func:`partition` with the components ``big`` cut into pieces; with,
    per component, the most of its reaches one block holds (core and halo)."""
    # Units to pack: whole small components, and pieces of the large ones.
    unit = comp.copy()  # unit label = a segment position (component outlet or piece root)
    if big.size:
        depth = hops_to_outlet(topo.seg_to_idx)
        for c in big.tolist():
            nodes = np.flatnonzero(comp_inv == c)
            unit[nodes] = _cut_tree(topo.seg_to_idx, weight, nodes, reach_chunk, depth)
    unit_ids, unit_inv = np.unique(unit, return_inverse=True)
    unit_size = np.bincount(unit_inv, weights=weight).astype(np.int64)
    # Next fit in the dataset's order: a store kept in basin order then gives blocks
    # that read a few contiguous input chunks and fill a few output chunks (packing by
    # size instead scatters every chunk over many blocks, which dask must then hold).
    first = np.full(unit_ids.size, topo.n_reach, dtype=np.int64)
    np.minimum.at(first, unit_inv[topo.reach_seg_idx], np.arange(topo.n_reach))
    free: list[int] = []
    unit_bin = np.empty(unit_ids.size, dtype=np.int64)
    for u in np.argsort(first, kind="stable").tolist():
        size = int(unit_size[u])
        if not free or free[-1] < size:
            free.append(max(reach_chunk, size))
        free[-1] -= size
        unit_bin[u] = len(free) - 1
    seg_bin = unit_bin[unit_inv]
    reach_by_seg = np.argsort(topo.reach_seg_idx, kind="stable")
    seg_start = np.concatenate([[0], np.cumsum(weight)])
    split_comp = np.zeros(n_comp, dtype=bool)
    split_comp[big] = True
    seg_split = split_comp[comp_inv]
    up = _upstream_neighbours(topo.seg_to_idx) if (halo and big.size) else None

    def reaches_of(segs: np.ndarray) -> np.ndarray:
        if segs.size == 0:
            return np.zeros(0, dtype=np.int64)
        parts = [reach_by_seg[seg_start[s]: seg_start[s + 1]] for s in segs.tolist()]
        return np.sort(np.concatenate(parts))

    blocks = []
    widest = np.zeros(n_comp, dtype=np.int64)
    seg_sorted = np.argsort(seg_bin, kind="stable")
    bounds = np.searchsorted(seg_bin[seg_sorted], np.arange(len(free) + 1))
    for b in range(len(free)):
        core = np.sort(seg_sorted[bounds[b]: bounds[b + 1]])
        halo_segs = np.zeros(0, dtype=np.int64)
        if up is not None and seg_split[core].any():
            halo_segs = _grow_halo(core, topo.seg_to_idx, up, halo, direction)
        core_r = reaches_of(core)
        blocks.append(Block(
            seg=np.concatenate([core, halo_segs]).astype(np.int64), n_core_seg=int(core.size),
            reach=np.concatenate([core_r, reaches_of(halo_segs)]).astype(np.int64),
            n_core_reach=int(core_r.size)))
        segs = blocks[-1].seg
        held = np.bincount(comp_inv[segs], weights=weight[segs], minlength=n_comp).astype(np.int64)
        np.maximum(widest, held, out=widest)
    return blocks, widest


def partition(
    ds_or_topology: xr.Dataset | Topology,
    reach_chunk: int = DEFAULT_REACH_CHUNK,
    halo: int | None = DEFAULT_HALO,
    direction: str = "updown",
    whole_when_held: bool | None = None,
) -> Partition:
    """Blocks of the river network that keep drainage components together.

    Whole components (each outlet's basin of segments with all their reaches) are
    packed into blocks of at most ``reach_chunk`` reaches (more where one segment
    alone holds more: a segment's reaches are never split), in the order in which
    they first appear in the dataset (next fit), so that a dataset stored in basin
    order gives blocks of contiguous reaches. A component with more reaches than that is cut into connected
    pieces of segments (a piece never splits a segment's reaches); each piece is
    packed like a component and carries a halo: the segments within ``halo`` hops
    of it along the network, with their reaches, on the side that the graph of
    ``direction`` reads from (a node of a ``"downstream"`` graph reads only nodes
    downstream of it, so its halo grows downstream only; ``"updown"`` grows both
    ways, along any branch). With ``whole_when_held``, a component one of whose
    blocks would hold all of it, halo included (a wide basin, whose halos reach
    every sibling branch through the outlet), is not cut: it runs whole, in a block
    of its own.

    Parameters
    ----------
    ds_or_topology : xarray.Dataset or Topology
        A dataset in the convention (only its topology is read) or its
        :class:`~xmsgl.convention.Topology`.
    reach_chunk : int, default 4,000
        Core reaches per block (a piece's halo comes on top).
    halo : int or None, default 12
        Halo depth in segment hops; 0 runs pieces on their own; ``None`` never
        splits a component (a block then holds one component larger than
        ``reach_chunk``).
    direction : {"updown", "downstream", "upstream"}, default "updown"
        The graph option ``direction`` of the model the blocks are for: the side
        the halo grows on.
    whole_when_held : bool, optional
        Run whole a component one of whose blocks would hold all of it (inference:
        exact, no larger, computed once); default :data:`WHOLE_WHEN_HELD` (True).
        Training by sub-basins keeps the pieces it was asked for (each a step).

    Returns
    -------
    Partition

    Raises
    ------
    ParameterError
        For a ``reach_chunk`` that is not a whole number of at least 1, a ``halo``
        that is not one of at least 0 (or None), or an unknown ``direction``.

    Examples
    --------
    >>> import xmsgl
    >>> from xmsgl.scale import partition
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=40, start="2001-01-01", end="2001-01-10")
    >>> p = partition(ds, reach_chunk=100)
    >>> sum(b.n_core_reach for b in p.blocks) == ds.sizes["reach"]
    True
    """
    if isinstance(reach_chunk, bool) or not isinstance(reach_chunk, Integral) or reach_chunk < 1:
        raise ParameterError(f"reach_chunk={reach_chunk!r} must be a whole number of reaches (an int) "
                             "of at least 1")
    if halo is not None and (isinstance(halo, bool) or not isinstance(halo, Integral) or halo < 0):
        raise ParameterError(f"halo={halo!r} must be a whole number of segment hops (an int) >= 0, "
                             "or None")
    if direction not in DIRECTIONS:
        raise ChoiceError(f"direction={direction!r} is not known; use one of {list(DIRECTIONS)}")
    reach_chunk = int(reach_chunk)
    split_ok = halo is not None
    halo = 0 if halo is None else int(halo)
    topo = ds_or_topology if isinstance(ds_or_topology, Topology) else topology_arrays(ds_or_topology)
    from xmsgl.graph import _components

    n_seg = topo.n_seg
    comp = _components(topo.seg_to_idx)
    weight = np.bincount(topo.reach_seg_idx, minlength=n_seg)
    comp_ids, comp_inv = np.unique(comp, return_inverse=True)
    comp_size = np.bincount(comp_inv, weights=weight).astype(np.int64)
    big = np.flatnonzero(comp_size > reach_chunk) if split_ok else np.zeros(0, dtype=np.int64)
    blocks, widest = _pack(topo, comp, comp_inv, comp_size.size, weight, big, reach_chunk, halo,
                           direction)
    # A component one of whose blocks holds all of it, halo included (a wide basin:
    # from one head segment, a hop down to the shared outlet and a hop up reach every
    # sibling), is run whole instead: exact, no larger than that block, and once (a
    # star of 10^5 reaches ran the whole network in each of its 26 blocks).
    if whole_when_held is None:
        whole_when_held = WHOLE_WHEN_HELD
    whole = big[widest[big] >= comp_size[big]] if whole_when_held else big[:0]
    if whole.size:
        big = np.setdiff1d(big, whole)
        blocks, _ = _pack(topo, comp, comp_inv, comp_size.size, weight, big, reach_chunk, halo,
                          direction)
    return Partition(tuple(blocks), reach_chunk, halo, int(comp_ids.size), int(big.size),
                     direction)


def default_halo(model: Downscaler, topo: Topology | None = None,
                 graphs: RiverGraphs | None = None) -> int | None:
    """The halo :func:`downscale_lazy` uses by default, from the model's graph options.

    See :func:`halo_for_options`; ``graphs`` (the network's graphs built with the
    model's options) makes the reach of a ``max_distance`` cut exact in any length
    units.
    """
    backbone = getattr(model.net, "dmsge", None)
    layers = None if backbone is None else int(backbone.options["layers"])
    return halo_for_options(model.config["graph"].get("options", {}) or {}, topo, graphs,
                            layers=layers)


def halo_for_options(opts: dict[str, Any], topo: Topology | None = None,
                     graphs: RiverGraphs | None = None, layers: int | None = None) -> int | None:
    """The default halo (segment hops) for a graph with options ``opts`` on ``topo``.

    * ``direction="downstream"``: a node reads only nodes downstream of it, so the
      nodes a piece's predictions depend on, over any number of days, are the
      segments on its path to the outlet. The default is the depth of the network
      (the most hops from a segment to its outlet), so that the halo, grown
      downstream only, is that whole path: the blocks are then exact (up to float
      rounding), at the price of one path per piece. This holds with or without a
      cut.
    * ``"updown"`` and ``"upstream"``: the recurrent cell spreads its state over
      one graph edge per day, so over a year the dependence reaches the whole
      drainage component (all of it for ``"updown"``, everything upstream for
      ``"upstream"``), fading with distance at a rate set by the fitted weights,
      which no graph option bounds. An edge spans at most :func:`cut_reach`
      segment hops; the default halo is that reach plus :data:`HALO_MARGIN` hops
      (measured, not a bound). A graph without a ``max_hops`` or ``max_distance``
      cut links every reach with its whole flow path, so no halo short of the whole
      component can be exact: ``None`` then, and components are never split.
    * ``layers`` (a model with the dmsge backbone and ``layers`` graph layers):
      the backbone has no recurrence over the graph, so a node depends on the
      nodes within ``layers`` edges of its hydrologic graph, plus one edge of the
      cross-scale graph: a halo of ``(layers + 1)`` times the reach is exact
      (``"updown"`` and ``"upstream"``; with a cut).

    Without ``topo`` a ``downstream`` graph, or a cut by distance alone, gives
    ``None`` too.
    """
    direction = opts.get("direction") or "updown"
    if direction == "downstream":
        if topo is None:
            return None
        return int(hops_to_outlet(topo.seg_to_idx).max()) if topo.n_seg else 0
    if opts.get("max_hops") is None and opts.get("max_distance") is None:
        return None
    if topo is None:
        if opts.get("max_hops") is None:
            return None
        reach = int(opts["max_hops"])
    else:
        reach = cut_reach(opts, topo, graphs)
    if layers is not None:
        return (int(layers) + 1) * reach
    return reach + HALO_MARGIN


def cut_reach(opts: dict[str, Any], topo: Topology, graphs: RiverGraphs | None = None) -> int:
    """Most segment hops that one edge of a graph cut by ``opts`` spans on ``topo``.

    An edge of the coarse graph spans at most ``max_hops`` segments; one of the
    fine or cross graphs joins reaches (or a reach and a segment) at most
    ``max_hops`` reaches apart, which is never more segments. A ``max_distance``
    cut spans as many segments as the stream's lengths allow: counted here over
    every pair the cut keeps, from ``graphs`` (exact) or from the lengths of
    ``topo`` taken as metres (lengths in km then overestimate the reach, which only
    makes the halo larger). Without any cut, the depth of the network.
    """
    depth = hops_to_outlet(topo.seg_to_idx)
    reach = int(depth.max()) if topo.n_seg else 0
    max_hops, max_distance = opts.get("max_hops"), opts.get("max_distance")
    if max_hops is not None:
        reach = min(reach, int(max_hops))
    if max_distance is None or reach == 0:
        return reach
    from xmsgl.graph import _csr_rows, _walk

    if graphs is not None:
        pairs = [(_csr_rows(graphs.seg_distance), graphs.seg_distance.indices, None),
                 (_csr_rows(graphs.reach_distance), graphs.reach_distance.indices,
                  topo.reach_seg_idx)]
    else:
        hops = None if max_hops is None else int(max_hops)
        s_src, s_dst, _ = _walk(topo.seg_to_idx, topo.seg_length.astype(np.float64),
                                float(max_distance), hops)
        r_src, r_dst, _ = _walk(topo.reach_to_idx, topo.reach_length.astype(np.float64),
                                float(max_distance), hops)
        pairs = [(s_src, s_dst, None), (r_src, r_dst, topo.reach_seg_idx)]
    spanned = 0
    for a, b, seg_of in pairs:
        if a.size:
            a, b = (a, b) if seg_of is None else (seg_of[a], seg_of[b])
            spanned = max(spanned, int(np.abs(depth[a] - depth[b]).max()))
    return min(reach, spanned)


def hydro_order(ds: xr.Dataset, reach_chunk: int = DEFAULT_REACH_CHUNK) -> dict[str, np.ndarray]:
    """Reach and segment ids in an order that keeps drainage components together.

    Stores written in this order (``ds.sel(reach=order["reach"], seg=order["seg"])``
    before ``to_zarr``) let every block of :func:`downscale_lazy` read a few
    contiguous chunks instead of gathering reaches from all over the store.

    Returns
    -------
    dict
        ``{"reach": ids, "seg": ids}``.
    """
    topo = topology_arrays(ds)
    p = partition(topo, reach_chunk=reach_chunk, halo=0)
    return {"reach": topo.reach_ids[p.reach_order], "seg": topo.seg_ids[p.seg_order]}


def subbasin_batches(
    ds_or_topology: xr.Dataset | Topology, max_reaches: int, halo: int | None = DEFAULT_HALO,
    direction: str = "updown",
) -> Partition:
    """Sub-basin batches for training on a sub-graph per step (see ``fit(subbasin_batch=...)``).

    The same blocks as :func:`partition` with ``reach_chunk=max_reaches``, the pieces
    asked for each a step, even where one block would hold a whole component (run
    whole, it would be one step where the caller asked for several).
    """
    return partition(ds_or_topology, reach_chunk=max_reaches, halo=halo, direction=direction,
                     whole_when_held=False)


# ------------------------------------------------------------------ sub-networks


def _in_dataset_order(block: Block) -> tuple[Block, np.ndarray, np.ndarray]:
    """``block`` with its core and halo nodes mixed in the dataset's order, and its core masks.

    A block then lists any two of its nodes in the order the whole network does, so
    that what is decided by position is decided alike: the dmsge backbone keeps the
    first of equally weighted river neighbours (two tributaries at the same
    distance, say), and kept the halo's instead of the network's when halo nodes
    came last. Returns the block (its ``n_core_*`` count, not the first nodes, are
    the core) and boolean masks of its core segments and reaches.
    """
    seg_order = np.argsort(block.seg, kind="stable")
    reach_order = np.argsort(block.reach, kind="stable")
    return (Block(seg=block.seg[seg_order], n_core_seg=block.n_core_seg,
                  reach=block.reach[reach_order], n_core_reach=block.n_core_reach),
            seg_order < block.n_core_seg, reach_order < block.n_core_reach)


def _sub_topology(topo: Topology, block: Block) -> dict[str, np.ndarray]:
    """Topology arrays of a block, with pointers that leave the block cut to outlets."""
    in_seg = np.zeros(topo.n_seg, dtype=bool)
    in_seg[block.seg] = True
    in_reach = np.zeros(topo.n_reach, dtype=bool)
    in_reach[block.reach] = True
    sto = topo.seg_to_idx[block.seg]
    seg_to = np.where((sto >= 0) & in_seg[np.maximum(sto, 0)], topo.seg_to[block.seg], 0)
    rto = topo.reach_to_idx[block.reach]
    reach_to = np.where((rto >= 0) & in_reach[np.maximum(rto, 0)], topo.reach_to[block.reach], 0)
    return {"seg_id": topo.seg_ids[block.seg], "seg_to": seg_to,
            "seg_length": topo.seg_length[block.seg],
            "reach_id": topo.reach_ids[block.reach], "reach_to": reach_to,
            "reach_length": topo.reach_length[block.reach],
            "reach_seg": topo.reach_seg[block.reach]}


# ------------------------------------------------------------- the dmsge backbone in blocks


def _backbone_scales(model: Downscaler, scale: str) -> tuple[str, ...]:
    """The scales a block sets a dmsge backbone's geometry for (those ``_rebuild`` sets)."""
    return tuple(s for s, used in ((SEG, model.output != "fine_only"),
                                   (REACH, scale != SEG and model.output != "remap")) if used)


def _network_geometry(model: Downscaler, ds: xr.Dataset, part: Partition, scale: str,
                      reach_chunk: int) -> dict[str, NodeGeometry]:
    """The whole network's node geometry for the blocks of a dmsge model (``{}`` for the cell).

    A block holds a subset of the nodes, so positions read from it would miss the
    dataset's coordinate variables, and outlet distances, the relations up- and
    downstream and the typical node spacing (the unit of the edge features) would
    be the block's, not the network's. Each block gets the network's instead.

    The ``"geo"`` and ``"dynamic"`` neighbourhoods are searched over all nodes of
    the network (in space, or in the embedding of every node), so no block short
    of the whole network reproduces them: with more than one block such a model
    is refused. The ``"hydro"`` neighbourhood follows the river graph, whose rows
    a block reproduces for its core nodes (and for ``layers + 1`` edges around them
    with the default halo, :func:`halo_for_options`).

    Raises
    ------
    BlockDependenceError
        The model reads ``"geo"`` or ``"dynamic"`` neighbours and the network is cut
        into several blocks.
    ModelMismatchError
        The coordinates the model's positions came from are missing.
    """
    backbone = getattr(model.net, "dmsge", None)
    if backbone is None:
        return {}
    wide = [g for g in backbone.graphs if g != "hydro"]
    if wide and len(part.blocks) > 1:
        n_reach = int(sum(b.n_core_reach for b in part.blocks))
        raise BlockDependenceError(
            f"the model's dmsge backbone reads the {wide} neighbourhoods "
            f"(backbone_options['graphs']={list(backbone.graphs)}), which are searched over the "
            f"whole network, but reach_chunk={reach_chunk} cuts its {n_reach} reaches into "
            f"{len(part.blocks)} blocks, whose neighbours would differ from the in-memory run's: "
            "downscale in memory with lazy=False (or load the inputs with ds.load()), or pass "
            f"reach_chunk={n_reach} (or more) to run the whole network as one block, which is exact"
        )
    from xmsgl.model import backbone_geometry

    return {s: backbone_geometry(backbone, ds, s) for s in _backbone_scales(model, scale)}


def _geometry_fields(geom: NodeGeometry) -> dict[str, np.ndarray]:
    """The per-node arrays of a geometry that travel with the blocks."""
    return {"x": geom.pos[:, 0], "y": geom.pos[:, 1], "od": geom.outlet_distance,
            "tin": np.asarray(geom.tin, dtype=np.int64),
            "tout": np.asarray(geom.tout, dtype=np.int64)}


def _block_geometry(block: xr.Dataset, info: dict[str, dict[str, Any]], seg_ok: np.ndarray
                    ) -> dict[str, NodeGeometry]:
    """The network's geometry restricted to a block's nodes (``info``: source, length scale).

    The depth-first times of the whole network still tell which nodes of the block
    lie on each other's flow paths, and its outlet distances their along-stream
    distances; groups (a reach's segment) are positions within the block.
    """
    from xmsgl.knn import NodeGeometry

    out = {}
    for sc, meta in info.items():
        sel = seg_ok if sc == SEG else slice(None)

        def col(field: str, sc: str = sc, sel: Any = sel) -> np.ndarray:
            return np.asarray(block[f"_g{sc}_{field}"].values)[sel]

        pos = np.stack([col("x"), col("y")], axis=1).astype(np.float64)
        if sc == SEG:
            group = np.arange(pos.shape[0], dtype=np.int64)
        else:
            seg_ids = pd.Index(np.asarray(block["_sid"].values)[seg_ok])
            group = seg_ids.get_indexer(np.asarray(block["_rseg"].values)).astype(np.int64)
        ids = (np.asarray(block["_sid"].values)[seg_ok] if sc == SEG
               else np.asarray(block["_rid"].values)).astype(np.int64)
        out[sc] = NodeGeometry(
            pos=pos, outlet_distance=col("od").astype(np.float64),
            tin=col("tin").astype(np.int64), tout=col("tout").astype(np.int64), group=group,
            source=str(meta["source"]), length_scale=float(meta["length_scale"]), ids=ids)
    return out


_THREAD = threading.local()


def _thread_model(model: Downscaler, key: tuple[str, ...]) -> Downscaler:
    """This thread's own copy of a dmsge model.

    The backbone keeps the geometry of the block it runs as state, so threads of
    one worker that run blocks at the same time must not share it. A thread keeps
    at most :data:`MODELS_KEPT` copies, the least recently used dropped first, as
    the process keeps its models (a worker's threads live as long as it does, and
    a copy on a GPU holds its memory there).
    """
    models = getattr(_THREAD, "models", None)
    if models is None:
        models = _THREAD.models = collections.OrderedDict()
    own = models.get(key)
    if own is None:
        import copy

        own = models[key] = copy.deepcopy(model)
        while len(models) > MODELS_KEPT:
            models.popitem(last=False)
    else:
        models.move_to_end(key)
    return own


# ------------------------------------------------------------------ the model on workers

#: Models a worker process keeps loaded, the most recently used last; beyond
#: :data:`MODELS_KEPT` the least recently used is dropped (a model's config holds its
#: network's ids: tens of MB at 10^6 reaches, in a worker that may serve many models).
_MODELS: collections.OrderedDict[tuple[str, str, str], Downscaler] = collections.OrderedDict()
_MODELS_LOCK = threading.Lock()
MODELS_KEPT = 4
_THREADS_SET: list[int] = []


def cached_model(path: str, sha256: str, device: Any = "cpu") -> Downscaler:
    """The model in folder ``path``, loaded once per process and device, checked by hash.

    Raises
    ------
    ModelMismatchError
        When the weights at ``path`` do not have the sha256 the graph was built with
        (the folder was replaced after the computation was set up).
    """
    key = (str(path), str(sha256), str(device))
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            _MODELS.move_to_end(key)
        else:
            from xmsgl.model import Downscaler

            model = Downscaler.load(path)
            if model.sha256 != sha256:
                raise ModelMismatchError(
                    f"the model at {str(path)!r} has sha256 {model.sha256[:12]}... (its weights and settings), but "
                    f"{sha256[:12]}... was expected; it changed after the computation was set up: "
                    "downscale again with the current model"
                )
            model.net.to(device)
            model.net.eval()
            _MODELS[key] = model
            while len(_MODELS) > MODELS_KEPT:
                _MODELS.popitem(last=False)
    return model


def _models_folder() -> Path:
    """This user's folder for models saved for workers: ``<tmp>/xmsgl-models-<uid>``.

    One folder per user, readable by that user only: on a machine shared by several
    users (an HPC login node) a folder common to all, created by whoever came first,
    could not be written by the others, and would let them replace a model's files.
    A folder of that name owned by someone else is not used.
    """
    tag = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    folder = Path(tempfile.gettempdir()) / f"xmsgl-models-{tag}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if hasattr(os, "getuid") and (folder.is_symlink() or folder.stat().st_uid != os.getuid()):
        raise ParameterError(
            f"{str(folder)!r} belongs to another user; pass model as a saved folder's path "
            f"(model.save(path), then downscale(path)) or set TMPDIR to a folder of your own"
        )
    return folder


def _model_location(model: Downscaler, path: str | os.PathLike[str] | None) -> str:
    """A folder the workers can load the model from (saved to the temp folder if needed)."""
    if path is not None:
        return str(Path(path).expanduser().resolve())
    folder = _models_folder() / model.sha256
    if not (folder / "config.json").is_file():
        model.save(folder)
    return str(folder)


class CallTag:
    """Names one lazy ``downscale`` call to its block tasks, so that a warning of its
    blocks is said once per call (:func:`warn_once`). It is not part of the tasks'
    identity: dask's keys for the same inputs and options stay the same."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex

    def __dask_tokenize__(self) -> str:
        return "xmsgl-call-tag"


#: Warnings said by block tasks: (call, text), the latest :data:`SAID_KEPT`.
_SAID: dict[tuple[str, str], None] = {}
_SAID_LOCK = threading.Lock()
SAID_KEPT = 1000


def warn_once(call: CallTag | None, text: str, category: type[Warning]) -> None:
    """Warn of ``text`` once per call in this process, or, when a dask.distributed
    worker in another process runs the task, send it to the client instead
    (:func:`_to_client`). A process's record of what was said is cleared by every
    ``catch_warnings`` that torch, pandas or xarray enter, so Python's once-per-text
    rule alone repeated a block's warning for every block."""
    if call is not None and not first_time(_SAID, _SAID_LOCK, (call.id, text), SAID_KEPT):
        return
    worker = _cluster_worker()
    # A worker in the client's own process (an "inproc://" address, as
    # Client(processes=False) makes) warns there already: sent on, the client said it a
    # second time.
    if worker is not None and not str(worker.address).startswith("inproc://"):
        _to_client(worker, text, category)
        return
    warnings.warn(text, category, stacklevel=3)


def _to_client(worker: Any, text: str, category: type[Warning]) -> None:
    """Send a warning from a worker to the clients of its scheduler, which say it.

    Python's ``warnings.warn`` on a worker prints only on the worker's stderr, where a
    user with ``filterwarnings("error")`` never sees it; :func:`distributed.warn` says
    it there and on the client, so on a ``LocalCluster``, whose workers print on the
    user's terminal, each worker process printed it once more. Only the event that
    :func:`distributed.warn` logs is sent (topic ``"warn"``, the message and category
    pickled, which the client's handler unpickles and passes to ``warnings.warn``); the
    scheduler keeps it too, so ``client.get_events("warn")`` lists what the workers
    said."""
    from pickle import dumps  # only written here: the client unpickles it

    worker.log_event("warn", {"message": dumps(text), "category": dumps(category)})


def _block_downscale(block: xr.Dataset, *, threads: int | None, **kwargs: Any) -> xr.DataArray:
    """:func:`_block_downscale_inner` with ``threads`` torch threads, restored afterwards.

    torch's thread count is process-wide: restoring it keeps a local (threaded)
    dask scheduler from changing the user's own setting for good.
    """
    from xmsgl.train import torch_threads

    try:
        with torch_threads(threads):
            return _block_downscale_inner(block, **kwargs)
    finally:
        _give_back_memory()


def _give_back_memory() -> None:
    """Return a finished block's working memory to the operating system.

    The recurrence's reusable buffers are dropped, and glibc is asked to return
    the free parts of its heaps (``malloc_trim``): after a block, freed arrays of
    a few to tens of megabytes otherwise stay in the process's heaps, and with
    several worker threads each holding its own heap the resident memory grows
    well beyond what one block needs. Without glibc (macOS, Windows, musl) only
    the buffers are dropped. (Keeping them while other blocks run measured 5%
    faster at 10^5 reaches, for 1.7 GB of peak memory instead of 1.3.)
    """
    from xmsgl.nn.rgrn import release_buffers

    release_buffers()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Any:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return getattr(libc, "malloc_trim", None)
    except OSError:
        return None


def _block_downscale_inner(
    block: xr.Dataset,
    *,
    model_path: str,
    model_sha256: str,
    graph_options: dict[str, Any],
    stats: dict[str, Any] | None,
    device: str,
    scale: str,
    spinup: int,
    chunk: int,
    batch_size: int | None,
    seg_vars: list[str],
    reach_vars: list[str],
    units: dict[str, str],
    geometry: dict[str, dict[str, Any]] | None = None,
    call: CallTag | None = None,
) -> xr.DataArray:
    """Apply the model to one (block of the network, time block) of the slot layout."""
    from xmsgl.coverage import WARN_DAYS_SHARE, dynamic_extrapolation
    from xmsgl.downscale import check_compatible_vars_only
    from xmsgl.model import _rebuild
    from xmsgl.train import DATE_COORD, predict, resolve_device

    dev = resolve_device(device)
    model = cached_model(model_path, model_sha256, str(dev))
    if getattr(model.net, "dmsge", None) is not None:
        model = _thread_model(model, (model_path, model_sha256, str(dev)))
    keep = np.asarray(block["_keep"].values, dtype=bool)
    n_in = int(keep.size)
    t_keep = int(np.argmax(keep)) if keep.any() else n_in
    t_end = t_keep + int(keep.sum())  # the kept days; those after are look-ahead
    rcore = np.asarray(block["_rcore"].values, dtype=bool)
    sid = np.asarray(block["_sid"].values)
    seg_ok = sid > 0
    score = np.asarray(block["_score"].values, dtype=bool)[seg_ok]
    n_core = int(score.sum()) if scale == SEG else int(rcore.sum())
    if n_core == 0 or t_keep >= t_end:
        return xr.DataArray(np.zeros((n_core, t_end - t_keep), dtype=np.float32),
                            dims=(_SLOT, _XTIME), name="prediction")
    # The look-ahead stops at the first day on which an input of the network is not
    # finite (forcings that end after the kept days), as in memory: ``_finite`` says it
    # per day. It is there wherever a block reads ahead; elsewhere no day follows the
    # kept ones (t_end == n_in) and nothing is read.
    n_in = t_end + _finite_days(block, ["_finite"], t_end, n_in)
    m = {"units": "m"}
    sub = xr.Dataset(
        {"seg_to": (SEG, np.asarray(block["_sto"].values)[seg_ok]),
         "seg_length": (SEG, np.asarray(block["_slen"].values)[seg_ok], m),
         "reach_to": (REACH, np.asarray(block["_rto"].values)),
         "reach_length": (REACH, np.asarray(block["_rlen"].values), m),
         "reach_seg": (REACH, np.asarray(block["_rseg"].values))},
        coords={SEG: sid[seg_ok], REACH: np.asarray(block["_rid"].values),
                TIME: np.arange(n_in)})
    days = (np.asarray(block["_day"].values, dtype=np.int64)[:n_in] if "_day" in block.variables
            else None)
    if days is not None:
        # The real dates beside the positions, for the messages about bad inputs.
        sub = sub.assign_coords({DATE_COORD: (TIME, days.astype("datetime64[D]"))})
    for name in seg_vars:
        da = block[name]
        vals = np.asarray(da.values)
        if _XTIME in da.dims:
            sub[name] = ((SEG, TIME), vals[seg_ok][:, :n_in], {"units": units[name]})
        else:
            sub[name] = (SEG, vals[seg_ok], {"units": units[name]})
    for name in reach_vars:
        da = block[name]
        dims = (REACH, TIME) if _XTIME in da.dims else (REACH,)
        vals = np.asarray(da.values)
        sub[name] = (dims, vals[:, :n_in] if _XTIME in da.dims else vals, {"units": units[name]})
    check_compatible_vars_only(model, sub, scale)
    graphs = build_graphs_weighted(sub, stats, **graph_options)
    # The coarse head reads segments only.
    geoms = _block_geometry(block, geometry or {}, seg_ok)
    try:
        data = _rebuild(model, sub, graphs, dev, slice(0, n_in), reach_inputs=scale != SEG,
                        geometry=geoms, days=days)
    except (DataError, UnitsError) as err:
        raise _in_one_block(err, int(sub.sizes[REACH]), days) from err
    found = dynamic_extrapolation([data.x_seg, data.x_reach], model)
    if found:
        # The same words for every block, said once per call, without the block's
        # counts: the in-memory run and coverage() give those.
        many = len(found[1]) > 1
        warn_once(call,
                  f"input{'s' if many else ''} {', '.join(map(repr, found[1]))} "
                  f"{'lie far beyond their training ranges' if many else 'lies far beyond its training range'}"
                  " in a block of a lazy downscale (said as the block is computed, once a call: more "
                  f"than a standard deviation beyond on over {WARN_DAYS_SHARE:.0%} of the block's "
                  "node-days, or negative where the units allow no negative value): check "
                  f"{'their' if many else 'its'} units and missing-data codes; "
                  "ds.msgl.coverage(model, time=...) over the days asked for and the warm-up "
                  "before them lists the nodes and days",
                  InputRangeWarning)
    output = "coarse" if scale == SEG else model.output
    out = predict(model.net, data, t_keep, t_end, output=output, device=dev, chunk=int(chunk),
                  spinup=int(spinup), batch_size=batch_size)
    tgt = model.config["targets"]
    vals = out["seg"][:, score] if scale == SEG else out["reach"][:, rcore]
    vals = (vals * np.float32(tgt["std"]) + np.float32(tgt["mean"])).astype(np.float32).T
    return xr.DataArray(vals, dims=(_SLOT, _XTIME), name="prediction")


def _in_one_block(err: XmsglError, n_reach: int, days: np.ndarray | None) -> XmsglError:
    """``err`` (bad input values found as a block of a lazy downscale was computed) of
    the same type, saying that its counts and places are that block's: the other
    blocks, not yet read, may hold more, which an in-memory run names all at once."""
    # Days since 1970-01-01 as dates: numpy's, which hold dates beyond 2262 too.
    span = (f", {np.datetime64(int(days[0]), 'D')} to {np.datetime64(int(days[-1]), 'D')} "
            "with its warm-up" if days is not None and len(days) else "")
    named = re.search(r"variable '([^']+)'", str(err))
    if "NaN or infinite" in str(err):  # counted: other blocks' are not
        tail = (", and other blocks may hold more; count them over the whole dataset"
                + (f" (int(ds[{named.group(1)!r}].isnull().sum()) for NaN)" if named else "")
                + ", or downscale in memory (ds.load() first, without lazy=True), which names "
                  "them all")
    else:  # a units or missing-data code question: the fix above holds for every block
        tail = ", and other blocks may hold more of them"
    return type(err)(f"{str(err).rstrip('. ')}. Found in one block of a lazy downscale "
                     f"({n_reach} reaches{span}): the values named above are that block's{tail}")


def _network_finite(inputs: list[Any], t_ranges: list[tuple[int, int, int]], ends: list[int]) -> Any:
    """Per day of the time blocks' inputs (each block's days ``s`` to its ``end``, one
    after the other), lazily: True on its warm-up and kept days, and on a look-ahead
    day whether every array of ``inputs`` (dask, (node, time)) is finite at every node;
    only the look-ahead days of the inputs are read."""
    import dask.array as dsa

    pieces = []
    for (s, _, b), e in zip(t_ranges, ends):
        block = [dsa.ones(b - s, dtype=bool, chunks=b - s)]
        if e > b:
            look = [dsa.isfinite(arr[:, b:e]).all(axis=0) for arr in inputs]
            block.append(functools.reduce(operator.and_, look) if look
                         else dsa.ones(e - b, dtype=bool, chunks=e - b))
        pieces.append(dsa.concatenate(block).rechunk(e - s))
    return dsa.concatenate(pieces)


def _finite_days(block: xr.Dataset, names: list[str], start: int, stop: int) -> int:
    """How many days from ``start`` on (up to ``stop``) every time-varying input of
    ``block`` is finite on (a boolean variable: true on)."""
    if stop <= start:
        return 0
    ok = np.ones(stop - start, dtype=bool)
    for name in names:
        da = block[name]
        if _XTIME in da.dims:
            vals = np.asarray(da.transpose(_XTIME, ...).values[start:stop])
            ok &= (vals if vals.dtype == bool else np.isfinite(vals)).reshape(stop - start, -1).all(axis=1)
    return int(np.argmin(ok)) if not ok.all() else stop - start


# ------------------------------------------------------------------ lazy downscaling


def _compact(index: np.ndarray) -> slice | np.ndarray:
    """A run of consecutive positions as a slice, any other index as int32 (or int64)."""
    if index.size and int(index[-1]) - int(index[0]) == index.size - 1 and (
            index.size < 2 or bool(np.all(np.diff(index) == 1))):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index.astype(np.int32 if index.size == 0 or int(index.max()) < 2**31 else np.int64)


def _ix(rows: slice | np.ndarray, cols: slice | np.ndarray) -> Any:
    if isinstance(rows, slice) or isinstance(cols, slice):
        return rows, cols
    return np.ix_(rows, cols)


def _gather_piece(n_rows: int, n_cols: int | None, parts: list[tuple[Any, ...]], dtype: Any,
                  *chunks: np.ndarray) -> np.ndarray:
    """An ``n_rows`` (x ``n_cols``) piece of an array, assembled from its chunks.

    ``parts[i]`` says which output rows (and columns) come from ``chunks[i]``, at
    which of that chunk's local rows (and columns); each is a slice or an index.
    """
    if n_cols is None:
        out = np.empty(n_rows, dtype=dtype)
        for (o_r, l_r), chunk in zip(parts, chunks):
            out[o_r] = np.asarray(chunk)[l_r]
        return out
    out = np.empty((n_rows, n_cols), dtype=dtype)
    for (o_r, o_c, l_r, l_c), chunk in zip(parts, chunks):
        out[_ix(o_r, o_c)] = np.asarray(chunk)[_ix(l_r, l_c)]
    return out


#: Input chunks kept in a process for the next block that reads them, at most
#: this many bytes (see :class:`_RecentChunks`); read at each chunk kept, so it can
#: be changed in the processes that run the blocks (0 keeps none).
RECENT_CHUNK_BYTES = 128 * 2**20


class _RecentChunks:
    """Input chunks read lately in this process, kept for their other readers.

    A chunk on the edge of two blocks is read by both (each block's input tasks
    read their chunks themselves, :func:`_reading_tasks`); neighbouring blocks
    usually run one after the other, so the second reader takes the chunk from
    here instead of reading it again from the store, and a reader that comes while
    another thread is reading the chunk waits for it. Each chunk is kept until all
    of its readers in the task graph have had it (then dropped), within
    :data:`RECENT_CHUNK_BYTES` (the least recently used dropped first). Entries
    belong to one graph (its ``scope``, drawn at random when the graph is built)
    and are never served to another, so a store rewritten between two calls is read
    again. Only local (threaded or synchronous) computes keep chunks: on the workers of
    a dask.distributed cluster each reader reads its own (:func:`_cluster_worker`),
    since a worker process would keep the chunks whose other readers ran in another
    process and serve them to the next compute of the same graph, read before the
    store was rewritten. What a process keeps after a local compute is at most the
    chunks whose other readers never ran (a partial compute, such as
    ``pred.isel(reach=...).compute()``), within the same bound, until newer chunks
    push them out; compute such a result again after rewriting its store in place,
    and the blocks that read those chunks get them as they were: call ``downscale``
    again instead.
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        from collections import OrderedDict

        self.max_bytes = max_bytes  # None: RECENT_CHUNK_BYTES at the time
        self.entries: OrderedDict[tuple[str, Any], list[Any]] = OrderedDict()  # [value, readers left, bytes]
        self.reading: dict[tuple[str, Any], threading.Event] = {}
        self.nbytes = 0
        self.lock = threading.Lock()

    def claim(self, scope: str, keys: list[Any]
              ) -> tuple[dict[Any, Any], dict[Any, threading.Event], list[Any]]:
        """What ``keys`` find: kept chunks (counted as read), chunks that another
        thread is reading (with the event it sets when done), and those the caller
        must read (and then :meth:`put` or :meth:`abandon`)."""
        got: dict[Any, Any] = {}
        waits: dict[Any, threading.Event] = {}
        mine: list[Any] = []
        with self.lock:
            for key in keys:
                full = (scope, key)
                found, value = self._hit(full)
                if found:
                    got[key] = value
                elif full in self.reading:
                    waits[key] = self.reading[full]
                else:
                    self.reading[full] = threading.Event()
                    mine.append(key)
        return got, waits, mine

    def take(self, scope: str, key: Any) -> tuple[bool, Any]:
        """``(True, chunk)`` if kept (counted as read), else ``(False, None)``."""
        with self.lock:
            return self._hit((scope, key))

    def put(self, scope: str, key: Any, value: Any, readers: int) -> None:
        """Keep the chunk the caller claimed and read, for ``readers`` more readers."""
        size = int(getattr(value, "nbytes", 0) or 0)
        limit = int(RECENT_CHUNK_BYTES if self.max_bytes is None else self.max_bytes)
        with self.lock:
            event = self.reading.pop((scope, key), None)
            if 0 < readers and 0 < size <= limit:
                self.entries[(scope, key)] = [value, readers, size]
                self.nbytes += size
            while self.nbytes > limit:
                _, (_, _, dropped) = self.entries.popitem(last=False)
                self.nbytes -= dropped
        if event is not None:
            event.set()

    def abandon(self, scope: str, keys: list[Any]) -> None:
        """Give up claims (the read failed): their waiters read for themselves."""
        with self.lock:
            events = [self.reading.pop((scope, k), None) for k in keys]
        for event in events:
            if event is not None:
                event.set()

    def _hit(self, full_key: tuple[str, Any]) -> tuple[bool, Any]:
        # Under the lock: a kept chunk, counted as read (dropped after its last reader).
        entry = self.entries.get(full_key)
        if entry is None:
            return False, None
        entry[1] -= 1
        if entry[1] <= 0:
            del self.entries[full_key]
            self.nbytes -= entry[2]
        else:
            self.entries.move_to_end(full_key)
        return True, entry[0]


_RECENT = _RecentChunks()


def _cluster_worker() -> Any:
    """The dask.distributed worker whose task this thread runs, or None."""
    distributed = sys.modules.get("distributed")  # imported in every worker process
    if distributed is None:
        return None
    try:
        return distributed.get_worker()
    except ValueError:  # not on one of its workers
        return None


class _ChunkReads:
    """The tasks that make some chunks of an input array, to run inside one task.

    ``graph`` is the part of the input's graph that makes the chunks ``keys``
    (with the opened store or whatever else they start from); ``readers`` says how
    many tasks of the graph ``scope`` read each chunk, so that a chunk read here is
    kept for the others (:class:`_RecentChunks`). A plain object (not a task or a
    collection), so the scheduler passes it on as it is.
    """

    __slots__ = ("graph", "keys", "readers", "scope")

    def __init__(self, graph: dict[Any, Any], keys: list[Any], scope: str,
                 readers: dict[Any, int]) -> None:
        self.graph = graph
        self.keys = keys
        self.scope = scope
        self.readers = readers

    def _make(self, keys: list[Any]) -> list[Any]:
        from dask.local import get_sync
        from dask.optimization import cull

        graph = self.graph if len(keys) == len(self.keys) else cull(self.graph, keys)[0]
        return list(get_sync(graph, keys))

    def read(self) -> list[Any]:
        if _cluster_worker() is not None:
            return self._make(self.keys)
        got, waits, mine = _RECENT.claim(self.scope, self.keys)
        # Own reads first, then the waits: a thread never waits while holding a
        # claim, so two readers cannot wait for each other.
        if mine:
            try:
                values = self._make(mine)
            except BaseException:
                _RECENT.abandon(self.scope, mine)
                raise
            for key, value in zip(mine, values, strict=True):
                got[key] = value
                _RECENT.put(self.scope, key, value, self.readers[key] - 1)
        for key, event in waits.items():
            event.wait()
            found, value = _RECENT.take(self.scope, key)
            # Not kept (above the bound, pushed out, or the other read failed).
            got[key] = value if found else self._make([key])[0]
        return [got[k] for k in self.keys]


def _read_piece(n_rows: int, n_cols: int | None, parts: list[tuple[Any, ...]], dtype: Any,
                reads: _ChunkReads) -> np.ndarray:
    """:func:`_gather_piece` on chunks read by the task itself."""
    return _gather_piece(n_rows, n_cols, parts, dtype, *reads.read())


#: Input chunks are read inside the tasks that use them when that reads each chunk at
#: most this many times on average; otherwise they are shared tasks.
MAX_READ_FACTOR = 3.0


def _reading_tasks(arr: Any, pieces: dict[Any, tuple[Any, ...]]) -> dict[Any, Any]:
    """Tasks of :func:`_gather` that run their input chunks' tasks themselves.

    Each carries its part of the input's graph, including the tasks that are not
    chunks (the opened store, say): left as tasks shared by every block, those
    made dask's ordering read blocks' inputs far ahead (at 10^5 reaches read from
    and written to zarr, 473 gathered pieces, 1.2 GB, were waiting at the peak).
    """
    import uuid
    from collections import Counter

    from dask.optimization import cull

    source = dict(arr.__dask_graph__())
    readers = Counter(k for p in pieces.values() for k in p[3])
    # A scope of its own: chunks kept for this graph's readers are never served to
    # another graph, even one of the same store (which may have been rewritten).
    scope = uuid.uuid4().hex
    dsk: dict[Any, Any] = {}
    for key, (n_r, n_c, parts, keys) in pieces.items():
        sub, _ = cull(source, keys)
        dsk[key] = (_read_piece, n_r, n_c, parts, arr.dtype,
                    _ChunkReads(sub, keys, scope, {k: readers[k] for k in keys}))
    return dsk


def _holds_futures(arr: Any) -> bool:
    """Whether the graph of ``arr`` holds futures of dask.distributed (a persisted array)."""
    def future(v: Any) -> bool:
        kind = type(getattr(v, "value", v))
        return kind.__name__ == "Future" and kind.__module__.startswith("distributed")

    return any(future(v) for v in arr.__dask_graph__().values())


def _gather(arr: Any, rows: np.ndarray, row_chunks: tuple[int, ...], cols: np.ndarray | None = None,
            col_chunks: tuple[int, ...] | None = None,
            read_factor: float | None = None) -> Any:
    """``arr[rows][:, cols]`` of a dask array, chunked by ``row_chunks`` x ``col_chunks``.

    Each output chunk is one task that reads exactly the input chunks it needs. The
    equivalent fancy indexing followed by a rechunk builds split and merge tasks
    that the local scheduler runs ahead of the blocks that consume them; at 3 x 10^5
    reaches it held half a gigabyte of such pieces at the peak. Runs of consecutive
    positions travel as slices, so the graph stays small.

    An input chunk that several output chunks need is a task they share, which the
    scheduler must hold until the last of them has run; dask's ordering runs such
    graphs out of order (at 10^6 reaches the local scheduler held a quarter of all
    input chunks at once). So when every chunk is needed by few output chunks (at
    most ``read_factor`` reads per chunk on average, default
    :data:`MAX_READ_FACTOR`), each output task runs the tasks of its input chunks
    itself (their part of the input's graph, run with dask's synchronous
    scheduler): a chunk on the edge of two blocks is then read twice, and nothing
    is held between tasks. ``read_factor=0`` always shares.
    """
    import dask.array as dsa
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    two_d = cols is not None
    # Named once the way of reading is known (below); keys are (name, *index).
    name = "xmsgl-gather"
    in_rows = np.concatenate([[0], np.cumsum(arr.chunks[0])])
    in_cols = np.concatenate([[0], np.cumsum(arr.chunks[1])]) if two_d else None
    row_starts = np.concatenate([[0], np.cumsum(row_chunks)])
    col_list: list[np.ndarray] = []
    if two_d:
        assert cols is not None and col_chunks is not None
        c_starts = np.concatenate([[0], np.cumsum(col_chunks)])
        col_list = [cols[c_starts[j]: c_starts[j + 1]] for j in range(len(col_chunks))]
    pieces: dict[Any, tuple[Any, ...]] = {}
    for i in range(len(row_chunks)):
        r = rows[row_starts[i]: row_starts[i + 1]]
        r_chunk = np.searchsorted(in_rows, r, side="right") - 1
        r_parts = []
        for ri in np.unique(r_chunk):
            o_r = np.flatnonzero(r_chunk == ri)
            r_parts.append((int(ri), _compact(o_r), _compact(r[o_r] - in_rows[ri])))
        if not two_d:
            parts: list[tuple[Any, ...]] = [(o_r, l_r) for _, o_r, l_r in r_parts]
            keys: list[tuple[Any, ...]] = [(arr.name, ri) for ri, _, _ in r_parts]
            pieces[(name, i)] = (int(r.size), None, parts, keys)
            continue
        assert in_cols is not None
        for j, c in enumerate(col_list):
            c_chunk = np.searchsorted(in_cols, c, side="right") - 1
            c_parts = []
            for ci in np.unique(c_chunk):
                o_c = np.flatnonzero(c_chunk == ci)
                c_parts.append((int(ci), _compact(o_c), _compact(c[o_c] - in_cols[ci])))
            parts = [(o_r, o_c, l_r, l_c) for _, o_r, l_r in r_parts for _, o_c, l_c in c_parts]
            keys = [(arr.name, ri, ci) for ri, _, _ in r_parts for ci, _, _ in c_parts]
            pieces[(name, i, j)] = (int(r.size), int(c.size), parts, keys)
    n_reads = sum(len(p[3]) for p in pieces.values())
    n_chunks = len({k for p in pieces.values() for k in p[3]})
    factor = MAX_READ_FACTOR if read_factor is None else float(read_factor)
    # Chunks persisted on a distributed cluster are futures the scheduler resolves: a
    # task cannot run them itself (a KeyError in the worker), so they are shared.
    read_in_tasks = n_reads <= factor * max(n_chunks, 1) and not _holds_futures(arr)
    # The way of reading is part of the keys: a persisted array has the keys of the one
    # it was made from, and a scheduler that still holds one way's tasks must not be
    # handed the other's under the same keys.
    name = "xmsgl-gather-" + tokenize(arr, rows, row_chunks, cols, col_chunks, read_in_tasks)
    pieces = {(name, *key[1:]): piece for key, piece in pieces.items()}
    if read_in_tasks:
        dsk = _reading_tasks(arr, pieces)
        dependencies: list[Any] = []
    else:
        dsk = {key: (_gather_piece, n_r, n_c, parts, arr.dtype, *keys)
               for key, (n_r, n_c, parts, keys) in pieces.items()}
        dependencies = [arr]
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=dependencies)
    chunks = (tuple(row_chunks), tuple(col_chunks)) if two_d else (tuple(row_chunks),)  # type: ignore[arg-type]
    return dsa.Array(graph, name, chunks=chunks, dtype=arr.dtype)


def _check_chunks(ds: xr.Dataset, names: list[str], reach_chunk: int) -> None:
    thin = {}  # variables chunked finely along time: name -> days per chunk
    for name in names:
        chunks = getattr(ds[name].data, "chunks", None)
        if chunks is not None and TIME in ds[name].dims:
            along = chunks[ds[name].dims.index(TIME)]
            if len(along) > 1 and max(along) < MIN_TIME_CHUNK_DAYS:
                thin[name] = max(along)
    if thin:
        days = min(thin.values())
        warn_at_user(
            f"input variables {sorted(thin)} are chunked by {days} day{'s' if days > 1 else ''} "
            f"along time: each block reads about {(365 + 180) // days} chunks of each per year "
            "of output, and the task graph (and the scheduler's work) grows with them; rechunk "
            "along time first, e.g. ds = ds.chunk({'time': 365}), or open the store with "
            "chunks={'time': 365}", XmsglWarning)
    for name in names:
        data = ds[name].data
        chunks = getattr(data, "chunks", None)
        if chunks is None:
            continue
        n_chunks = int(np.prod([len(c) for c in chunks]))
        biggest = int(np.prod([max(c) for c in chunks])) * ds[name].dtype.itemsize
        sizes = dict(zip(map(str, ds[name].dims), (max(c) for c in chunks)))
        per_dim = {REACH: reach_chunk, SEG: max(1, reach_chunk // 5), TIME: 365}
        hint = {str(d): per_dim.get(str(d), -1) for d in ds[name].dims}
        if biggest > MAX_INPUT_CHUNK_BYTES:
            raise ChunkingError(
                f"input variable {name!r} has dask chunks of up to {biggest / 1e9:.2f} GB "
                f"({sizes}); every block of the network reads whole input chunks, so each would "
                f"load that much: rechunk, e.g. ds = ds.chunk({hint}) or "
                f"xr.open_zarr(..., chunks={hint}), or store the data with smaller chunks"
            )
        if n_chunks > MAX_INPUT_CHUNKS:
            raise ChunkingError(
                f"input variable {name!r} has {n_chunks} dask chunks ({sizes} each at most); "
                f"that many tasks swamp the scheduler: rechunk to larger chunks, e.g. "
                f"ds = ds.chunk({hint})"
            )


def is_lazy(ds: xr.Dataset, names: list[str]) -> bool:
    """Whether any of the variables ``names`` of ``ds`` is dask-backed."""
    return any(getattr(ds[n].data, "chunks", None) is not None for n in names if n in ds)


def _as_dask(da_: xr.DataArray, dims: tuple[str, ...]) -> Any:
    import dask.array as dsa

    arr = da_.transpose(*dims).data
    if getattr(arr, "chunks", None) is None:
        arr = dsa.from_array(np.asarray(arr), chunks=-1)
    return arr


def block_options(reach_chunk: object, time_block: object, halo: object) -> list[str]:
    """Check the lazy run's block options as counts (30.9, True or "30" are refused, not
    rounded) and return the names of those given."""
    given = []
    for name, value, least in (("reach_chunk", reach_chunk, 1), ("time_block", time_block, 1),
                               ("halo", halo, 0)):
        if value is not None:
            check_count(name, value, least=least)
            given.append(name)
    return given


def downscale_lazy(
    ds: xr.Dataset,
    model: Downscaler,
    *,
    model_path: str | os.PathLike[str] | None = None,
    scale: str = REACH,
    time: Any = None,
    device: str | torch.device = "auto",
    spinup: int = 180,
    chunk: int = 365,
    batch_size: int | None = None,
    check_graph: bool = True,
    reach_chunk: int | None = None,
    time_block: int | None = None,
    halo: int | None = None,
    threads: int | None = 1,
) -> xr.DataArray:
    """Downscale lazily, block by block of the river network: the dask path of downscale.

    ``ds.msgl.downscale(model)`` calls this when an input variable is dask-backed;
    the arguments are those of :func:`xmsgl.downscale.downscale`. Only the
    one-dimensional topology is read during the call; the inputs on time are
    reordered into blocks of whole drainage components (:func:`partition`), cut into
    time blocks that start ``spinup`` days early, and mapped with
    :func:`xarray.map_blocks`. The result is a dask-backed DataArray in the
    dataset's reach (or segment) order, chunked by ``reach_chunk`` and
    ``time_block``.

    Parameters
    ----------
    ds : xarray.Dataset
        A validated dataset with dask-backed inputs.
    model : Downscaler
        The fitted model.
    model_path : str or path, optional
        Where the workers load the model from (with its sha256 checked). Default: the
        path ``downscale`` was given the model by, else (a model object) a copy saved
        in the temporary folder; on a cluster without a shared temporary folder save
        the model where every worker can read it and pass that path.
    scale, time, device, spinup, chunk, batch_size, check_graph
        As in :func:`xmsgl.downscale.downscale`. ``device="auto"`` is resolved on each
        worker (its GPU when it has one).
    reach_chunk : int, default 4,000
        Core reaches per block; memory per block grows with it (about 0.1 GB per
        1,000 reaches and year of a block, with hidden size 20).
    time_block : int, default ``chunk``
        Output days per time block, a multiple of ``chunk`` (so that blocks
        reproduce the in-memory run's windows).
    halo : int, optional
        Segment hops around a piece of a component too large for one block, on the
        side the model's graph reads (its ``direction``). Default
        :func:`default_halo`: for a ``"downstream"`` graph the whole path to the
        outlet (exact); otherwise the segment hops one edge of the graph spans
        (``max_hops``, or as many as ``max_distance`` spans) plus 12 (for the dmsge
        backbone, times ``layers + 1`` instead: exact), and with no ``max_hops`` or
        ``max_distance`` cut components are kept whole.
    threads : int or None, default 1
        torch threads while a block runs (``torch.set_num_threads`` is
        process-wide, so the previous setting is restored after each block);
        ``None`` leaves torch's setting.

    Returns
    -------
    xarray.DataArray
        Lazy, as the in-memory result otherwise.

    Raises
    ------
    ChunkingError
        Input chunks too large for one block to read, or too many of them; the
        message says how to rechunk.
    BlockDependenceError
        A model whose dmsge backbone searches neighbours over the whole network
        (its ``"geo"`` or ``"dynamic"`` neighbourhoods) and a network cut into
        several blocks: pass ``lazy=False`` to ``downscale`` or a ``reach_chunk`` of
        at least the number of reaches (one block, exact).
    ParameterError
        For a model that is not a network (a baseline), a ``time_block`` that is not a
        multiple of ``chunk``, a ``scale`` other
        than ``"reach"`` or ``"seg"``, or counts that are not whole numbers.
    """
    from xmsgl.model import Downscaler

    if not isinstance(model, Downscaler):
        # A baseline (xmsgl.load gives one too) predicts in memory, on its fitted reaches.
        what = f"baseline {model.method!r}" if hasattr(model, "method") else type(model).__name__
        raise ParameterError(
            f"downscale_lazy runs a network model (xmsgl.Downscaler), not {what}: downscale a "
            "baseline with ds.msgl.downscale(model), which computes it in memory")
    if scale not in (REACH, SEG):
        raise ParameterError(
            f"scale={scale!r}: the lazy path runs scale='reach' or 'seg'; the cross-scale "
            "estimate (scale='cross') runs in memory only (downscale(..., lazy=False))")
    check_count("spinup", spinup, least=0)
    check_count("chunk", chunk)
    check_flag("check_graph", check_graph)
    block_options(reach_chunk, time_block, halo)
    for name, value in (("batch_size", batch_size), ("threads", threads)):
        if value is not None:
            check_count(name, value)
    out = _downscale_lazy(ds, model, model_path=model_path, scale=scale, time=time,
                          device=str(device), spinup=spinup, chunk=chunk, batch_size=batch_size,
                          check_graph=check_graph, reach_chunk=reach_chunk,
                          time_block=time_block, halo=halo, threads=threads)
    # The set-up's whole-network distances and statistics are garbage now: hand their
    # heap back before the compute (0.3 GB at 10^6 reaches).
    _give_back_memory()
    return out


def _device_note(device: str) -> str:
    """How the history of a lazy run names its device, as the in-memory run does.

    ``"auto"`` is named by what :func:`xmsgl.train.resolve_device` picks where the
    graph is built, which is what a local scheduler's workers pick too; a worker on
    another machine resolves it itself, so the note says so. A named device is
    recorded as given: it is checked on the workers, which may have a GPU the
    machine building the graph lacks.
    """
    if str(device) != "auto":
        return f"device={str(device)!r}"
    from xmsgl.train import resolve_device

    return f"device={str(resolve_device('auto'))!r} (resolved from 'auto'; each worker resolves its own)"


def _downscale_lazy(
    ds: xr.Dataset,
    model: Downscaler,
    *,
    model_path: str | os.PathLike[str] | None,
    scale: str,
    time: Any,
    device: str,
    spinup: int,
    chunk: int,
    batch_size: int | None,
    check_graph: bool,
    reach_chunk: int | None,
    time_block: int | None,
    halo: int | None,
    threads: int | None,
) -> xr.DataArray:
    import dask.array as dsa

    import xmsgl
    from xmsgl.coverage import warn_static_extrapolation
    from xmsgl.downscale import (
        _time_gaps,
        _time_positions,
        check_compatible_vars_only,
        lookahead_end,
        output_attrs,
    )
    from xmsgl.graph import build_graphs
    from xmsgl.model import check_compatible, warn_partial_network
    from xmsgl.train import inference_windows

    reach_chunk = DEFAULT_REACH_CHUNK if reach_chunk is None else int(reach_chunk)
    chunk = int(chunk)
    time_block = chunk if time_block is None else int(time_block)
    if chunk < 1 or time_block < 1 or time_block % chunk:
        raise ParameterError(
            f"time_block={time_block!r} must be a positive multiple of chunk={chunk!r} so that "
            f"time blocks reproduce the windows of an in-memory run; use e.g. time_block={chunk}"
        )
    spec = model.features
    seg_vars = spec.seg_vars if model.output != "fine_only" else []
    reach_vars = spec.reach_vars if (model.output != "remap" and scale == REACH) else []
    if scale == SEG:
        seg_vars = spec.seg_vars
    names = seg_vars + reach_vars
    options = model.config["graph"].get("options", {})
    graphs = build_graphs(ds, **options)
    if check_graph:
        check_compatible(model, ds, graphs, scale)
    else:
        check_compatible_vars_only(model, ds, scale)
        warn_partial_network(model, graphs)
    _check_chunks(ds, names, reach_chunk)
    # Every block's edges weighed as in training: on the model's own network these are
    # the whole network's statistics; on another (check_graph=False) the training
    # network's, as in memory. Models saved without them take the whole network's.
    stats = model.config["graph"].get("weight_stats") or weight_stats(graphs)
    topo = topology_arrays(ds)
    default = default_halo(model, topo, graphs)
    halo_ = default if halo is None else int(halo)
    if halo is not None and default is None:
        # The graph links every reach to its whole flow path (no max_hops or
        # max_distance cut): any split changes the result (see docs/pangeo.md).
        warn_at_user(
            f"halo={halo_}: this model's graph has no max_hops or max_distance cut, so it links "
            "every reach to its whole flow path and no halo is exact; by default such models keep "
            "each drainage component whole (a block may then exceed reach_chunk). A component "
            "cut with this halo gives approximate values near the cuts; leave halo out for the "
            "in-memory result", XmsglWarning)
    part = partition(topo, reach_chunk=reach_chunk, halo=halo_,
                     direction=options.get("direction") or "updown")
    geometry = _network_geometry(model, ds, part, scale, reach_chunk)

    times = pd.DatetimeIndex(ds[TIME].values)
    i0, i1 = _time_positions(times, time)
    # Nodes far beyond what training saw, once the days asked for are known to exist:
    # static inputs are read (one value a node, as the topology is), nothing on time.
    warn_static_extrapolation(ds, model, scale)
    # Time blocks are laid out as the in-memory windows are, never across a gap.
    gaps = _time_gaps(times, i0, i1, int(spinup))
    t_ranges = inference_windows(i0, i1, time_block, int(spinup), gaps)
    # Each time block reads on past its last kept day as far as the cross-scale
    # head looks ahead (its attention is not causal), as the in-memory run does.
    ends = [lookahead_end(model, scale, times, b, gaps) for _, _, b in t_ranges]
    xtime_idx = np.concatenate([np.arange(s, e) for (s, _, _), e in zip(t_ranges, ends)])
    keep = np.concatenate([(np.arange(s, e) >= a) & (np.arange(s, e) < b)
                           for (s, a, b), e in zip(t_ranges, ends)])
    xtime_chunks = tuple(e - s for (s, _, _), e in zip(t_ranges, ends))
    out_t_chunks = tuple(b - a for _, a, b in t_ranges)

    # The slot layout: block after block, each block's reaches, and its segments
    # padded to as many slots (a segment always has at least one reach), core and
    # halo nodes together in the dataset's order.
    sorted_blocks = [_in_dataset_order(b) for b in part.blocks]
    slot_chunks = tuple(int(b.reach.size) for b in part.blocks)
    reach_index = np.concatenate([b.reach for b, _, _ in sorted_blocks])
    seg_index = np.concatenate([np.concatenate([b.seg, np.full(b.reach.size - b.seg.size, b.seg[0])])
                                for b, _, _ in sorted_blocks])
    meta: dict[str, list[np.ndarray]] = {k: [] for k in (
        "_rid", "_rto", "_rlen", "_rseg", "_rcore", "_sid", "_sto", "_slen", "_score")}
    for blk, seg_core, core_r in sorted_blocks:
        t = _sub_topology(topo, blk)
        pad = blk.reach.size - blk.seg.size
        core_s = np.concatenate([seg_core, np.zeros(pad, dtype=np.bool_)])
        for k, v in (("_rid", t["reach_id"]), ("_rto", t["reach_to"]), ("_rlen", t["reach_length"]),
                     ("_rseg", t["reach_seg"]), ("_rcore", core_r), ("_score", core_s)):
            meta[k].append(v)
        meta["_sid"].append(np.concatenate([t["seg_id"], np.zeros(pad, dtype=np.int64)]))
        meta["_sto"].append(np.concatenate([t["seg_to"], np.zeros(pad, dtype=np.int64)]))
        meta["_slen"].append(np.concatenate([t["seg_length"], np.zeros(pad)]))

    variables: dict[str, Any] = {
        k: ((_SLOT,), dsa.from_array(np.concatenate(v), chunks=(slot_chunks,)))
        for k, v in meta.items()}
    variables["_keep"] = ((_XTIME,), dsa.from_array(keep, chunks=(xtime_chunks,)))
    # The time-varying inputs as dask arrays on (node, time), made once for the
    # look-ahead's check and the blocks' gathers.
    on_time = {n: _as_dask(ds[n], (SEG if n in seg_vars else REACH, TIME))
               for n in names if TIME in ds[n].dims}
    if any(e > b for (_, _, b), e in zip(t_ranges, ends)):
        # The look-ahead stops where an input of any node stops being finite, as in
        # memory, not where one of the block's own does: a basin whose forcings end
        # early would otherwise change the others' values with the blocking.
        variables["_finite"] = ((_XTIME,), _network_finite(list(on_time.values()), t_ranges, ends))
    # Each input day's date (days since 1970-01-01): the heads' attention spans lie on
    # the calendar, as in memory.
    day_numbers = times.values.astype("datetime64[D]").astype(np.int64)
    variables["_day"] = ((_XTIME,), dsa.from_array(day_numbers[xtime_idx], chunks=(xtime_chunks,)))
    for sc, geom in geometry.items():
        index = seg_index if sc == SEG else reach_index
        for field, values in _geometry_fields(geom).items():
            variables[f"_g{sc}_{field}"] = ((_SLOT,), dsa.from_array(
                np.ascontiguousarray(values[index]), chunks=(slot_chunks,)))
    for name in names:
        dim = SEG if name in seg_vars else REACH
        index = seg_index if dim == SEG else reach_index
        if name in on_time:
            arr = _gather(on_time[name], index, slot_chunks, xtime_idx, xtime_chunks)
            variables[name] = ((_SLOT, _XTIME), arr)
        else:
            variables[name] = ((_SLOT,), _gather(_as_dask(ds[name], (dim,)), index, slot_chunks))
    slot_ds = xr.Dataset(variables)

    n_core = tuple(b.n_core_seg if scale == SEG else b.n_core_reach for b in part.blocks)
    template = xr.DataArray(
        dsa.empty((sum(n_core), sum(out_t_chunks)), dtype=np.float32,
                  chunks=(n_core, out_t_chunks)),
        dims=(_SLOT, _XTIME), name="prediction")
    path = _model_location(model, model_path)
    out = xr.map_blocks(
        _block_downscale, slot_ds, template=template,
        kwargs={"model_path": path, "model_sha256": model.sha256, "graph_options": dict(options),
                "stats": stats, "device": str(device), "threads": threads, "scale": scale,
                "spinup": int(spinup), "chunk": chunk, "batch_size": batch_size,
                "seg_vars": list(seg_vars), "reach_vars": list(reach_vars),
                "units": {n: spec.units[n] for n in names},
                "geometry": {sc: {"source": g.source, "length_scale": float(g.length_scale)}
                             for sc, g in geometry.items()},
                "call": CallTag()})
    dim = SEG if scale == SEG else REACH
    order = np.concatenate([b.seg[c] if scale == SEG else b.reach[r] for b, c, r in sorted_blocks])
    inverse = np.empty(order.size, dtype=np.int64)
    inverse[order] = np.arange(order.size)
    t_chunks = out_t_chunks
    if any(c != time_block for c in out_t_chunks[:-1]):
        # Gaps cut time blocks short; the result gets uniform chunks, as zarr needs.
        n_days = i1 - i0
        t_chunks = (time_block,) * (n_days // time_block) + (
            (n_days % time_block,) if n_days % time_block else ())
    arr = out.data[inverse].rechunk((reach_chunk if dim == REACH else max(1, reach_chunk // 5),
                                     t_chunks))
    coords = output_coords(ds.isel({TIME: slice(i0, i1)}), dim, chunks=arr.chunks)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    history = (f"{now} UTC: xmsgl {xmsgl.__version__} downscale(method={model.method!r}, "
               f"scale={scale!r}, time={times[i0].date()}/{times[i1 - 1].date()}, model "
               f"sha256={model.sha256[:16]}, {_device_note(device)}, "
               f"lazy: {len(part.blocks)} blocks x {len(t_ranges)} time blocks, "
               f"reach_chunk={reach_chunk}, "
               f"halo={halo_ if halo_ is not None else 'None (drainage components kept whole)'}, "
               f"time_block={time_block}, "
               f"spinup={int(spinup)}, chunk={chunk}, check_graph={bool(check_graph)})")
    return xr.DataArray(
        arr, dims=(dim, TIME), coords=coords, name=f"{dim}_temp_pred",
        attrs=output_attrs(model, scale, times, i0, i1, int(spinup), gaps, history, ds.attrs))



# ------------------------------------------------------------------ training by sub-basins


def subbasin_data(data: Any, topo: Topology, block: Block, graph_options: dict[str, Any],
                  stats: dict[str, Any] | None, device: Any) -> Any:
    """The :class:`~xmsgl.train.ModelData` of one block: its inputs and its sub-graphs."""
    from xmsgl.train import ModelData, cross_row_blocks, torch_graphs

    t = _sub_topology(topo, block)
    m = {"units": "m"}
    sub = xr.Dataset(
        {"seg_to": (SEG, t["seg_to"]), "seg_length": (SEG, t["seg_length"], m),
         "reach_to": (REACH, t["reach_to"]), "reach_length": (REACH, t["reach_length"], m),
         "reach_seg": (REACH, t["reach_seg"])},
        coords={SEG: t["seg_id"], REACH: t["reach_id"]})
    graphs = build_graphs_weighted(sub, stats, **graph_options)
    return ModelData(np.ascontiguousarray(data.x_seg[:, block.seg]),
                     np.ascontiguousarray(data.x_reach[:, block.reach]),
                     torch_graphs(graphs, device), cross_row_blocks(graphs, device, 10_000),
                     np.asarray(graphs.parent.tocsr().indices, dtype=np.int64),
                     graphs.cross.tocsr(), breaks=data.breaks, days=data.days)


def train_subbasins(
    net: Any, data: Any, targets: dict[str, np.ndarray], windows: list[tuple[int, int]], *,
    graphs: RiverGraphs, topo: Topology, max_reaches: int, halo: int | None,
    epochs: int, device: Any, rng: np.random.Generator, **kwargs: Any,
) -> dict[str, Any]:
    """Train on batches of sub-basins: each step runs the recurrence on one block only.

    The blocks are those of :func:`partition` with ``reach_chunk=max_reaches``
    (whole drainage components packed together; larger components cut into pieces
    with a halo whose targets are hidden, so the loss is taken on core nodes only).
    Every epoch visits the blocks in random order and runs one pass of
    :func:`xmsgl.train.train_tasks` over the training windows of each. With one
    block this is :func:`~xmsgl.train.train_tasks` itself. Memory per step is that of
    one block: full-graph backpropagation through a year does not fit beyond about
    10^4 reaches, a block of ``max_reaches`` does. Each pass starts a new Adam state
    and the validation score (``val``) is taken once per epoch on the whole network
    (and on the starting weights with ``score_start``, as in ``train_tasks``).
    """
    from xmsgl.train import (
        epoch_bar,
        epoch_loss_criterion,
        nothing_trained,
        score_starting_weights,
        show_epoch,
        train_tasks,
    )

    part = subbasin_batches(topo, max_reaches, halo, graphs.options.get("direction") or "updown")
    largest = max((blk.n_core_reach for blk in part.blocks), default=0)
    if halo is None and largest > max_reaches:
        # Without a cut the components stay whole: a step would hold the whole
        # component, not the block of max_reaches the caller sized memory for.
        raise ParameterError(
            f"subbasin_batch={max_reaches}: a drainage component of {largest} reaches cannot be "
            f"cut into blocks, since the graph options {dict(graphs.options)} do not limit the "
            f"graph's reach (a cut needs a halo); pass graph_options={{'max_hops': 8}} (or "
            f"'max_distance'), or subbasin_batch={largest} or more"
        )
    stats = weight_stats(graphs)
    val = kwargs.pop("val", None)
    score_start = bool(kwargs.pop("score_start", False))
    if len(part.blocks) == 1 and part.blocks[0].reach.size == topo.n_reach:
        return train_tasks(net, data, targets, windows, val=val, epochs=epochs, device=device,
                           rng=rng, score_start=score_start, **kwargs)
    opts = dict(graphs.options)
    blocks = []
    for blk in part.blocks:
        bdata = subbasin_data(data, topo, blk, opts, stats, device)
        btargets = {}
        for task, y in targets.items():
            idx, n_core = ((blk.seg, blk.n_core_seg) if y.shape[1] == topo.n_seg and
                           task == "coarse" else (blk.reach, blk.n_core_reach))
            yb = np.array(y[:, idx], dtype=np.float32)
            yb[:, n_core:] = np.nan  # halo nodes carry no loss
            btargets[task] = yb
        blocks.append((bdata, btargets))
    history: dict[str, Any] = {"loss": [], "val": [], "best_epoch": None, "task_weights": {},
                               "subbasin_blocks": len(blocks)}
    # One bar over the epochs; the passes over each block show none.
    show = bool(kwargs.get("progress", False))
    kwargs["progress"] = False
    best = np.inf
    import copy

    best_state = copy.deepcopy(net.state_dict())
    if score_start:
        best = score_starting_weights(net, val, history)
    # A block whose only observations are of tasks weighed 0 takes no step, as a
    # window of train_tasks does.
    weights = kwargs.get("task_weights") if kwargs.get("weighting") == "fixed" else None
    trained = 0
    bar = epoch_bar(epochs, str(kwargs.get("desc") or "fit"), show)
    for epoch in bar:
        losses: list[float] = []
        equal_sums: list[float] = []
        for k in rng.permutation(len(blocks)).tolist():
            bdata, btargets = blocks[k]
            if not any(np.isfinite(y).any() for t, y in btargets.items()
                       if weights is None or float(weights.get(t, 0.0)) > 0):
                continue
            trained += 1
            h = train_tasks(net, bdata, btargets, windows, val=None, epochs=1, device=device,
                            rng=rng, **kwargs)
            losses.extend(x for x in h["loss"] if np.isfinite(x))
            equal_sums.extend(x for x in h.get("loss_equal", []) if np.isfinite(x))
            history["task_weights"] = h["task_weights"]
        if not trained:
            raise nothing_trained(str(kwargs.get("stage") or kwargs.get("desc") or "fit"),
                                  list(targets), str(kwargs.get("weighting", "equal")), weights)
        score = val(net) if val is not None else None
        history["loss"].append(float(np.mean(losses)) if losses else float("nan"))
        if equal_sums:
            history.setdefault("loss_equal", []).append(float(np.mean(equal_sums)))
        history["val"].append(score)
        crit = score if score is not None else epoch_loss_criterion(
            history, str(kwargs.get("weighting", "equal")))
        if crit is not None and np.isfinite(crit) and crit < best:
            best = crit
            history["best_epoch"] = epoch + 1
            best_state = copy.deepcopy(net.state_dict())
        show_epoch(bar, history, score)
    net.load_state_dict(best_state)
    return history
