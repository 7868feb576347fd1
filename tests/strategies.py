"""Random river forests as topology-only xmsgl datasets, for tests and benchmarks.

:func:`random_river_dataset` draws a forest of coarse segments, splits every segment
into a small tree of fine reaches that drains through one outlet reach, and returns
an :class:`xarray.Dataset` in the xmsgl convention with only the dimensions ``seg``
and ``reach`` (no time). :func:`river_datasets` is the matching hypothesis strategy.

Examples
--------
>>> from tests.strategies import random_river_dataset
>>> ds = random_river_dataset(0, n_seg=5)
>>> sorted(ds.data_vars)
['reach_length', 'reach_seg', 'reach_to', 'seg_length', 'seg_to']
>>> ds.sizes["seg"]
5
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from hypothesis import strategies as st

__all__ = ["random_forest", "random_river_dataset", "river_datasets"]


def random_forest(
    rng: np.random.Generator,
    sizes: np.ndarray,
    window: int | None = None,
) -> np.ndarray:
    """Downstream pointers (positions, -1 at outlets) of one random tree per block.

    Nodes are laid out block after block, ``sizes[b]`` nodes in block ``b``; the
    first node of each block is its outlet and node ``k`` of a block drains to one
    of the ``window`` nodes before it in the same block (any earlier node when
    ``window`` is None). A small ``window`` makes long, deep trees; None makes
    bushy, shallow ones.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    n = int(sizes.sum())
    start = np.repeat(np.cumsum(sizes) - sizes, sizes)
    local = np.arange(n) - start
    span = local if window is None else np.minimum(local, window)
    # integers(0, 0) is invalid: the outlets draw from [0, 1) and are reset below.
    back = rng.integers(0, np.maximum(span, 1)) + 1
    to = np.where(local > 0, start + local - back, -1)
    return to.astype(np.int64)


def random_river_dataset(
    seed: int | np.random.Generator,
    n_seg: int,
    *,
    n_outlets: int = 1,
    reaches_per_seg: tuple[int, int] = (1, 6),
    window: int | None = None,
    zero_length_prob: float = 0.0,
    shuffle: bool = True,
) -> xr.Dataset:
    """A random multi-scale river network in the xmsgl convention (topology only).

    Parameters
    ----------
    seed : int or numpy.random.Generator
        Randomness.
    n_seg : int
        Number of coarse segments (>= ``n_outlets``).
    n_outlets : int, default 1
        Number of separate trees (outlets) at both scales.
    reaches_per_seg : (int, int), default (1, 6)
        Inclusive range of the number of reaches in a segment.
    window : int, optional
        Each node drains into one of the ``window`` nodes created before it in its
        tree (segments) or segment (reaches); small values make deep networks.
    zero_length_prob : float, default 0
        Share of reaches of length 0 (segment lengths are sums of reach lengths,
        so a segment of zero-length reaches has length 0 as well).
    shuffle : bool, default True
        Store segments and reaches in random order rather than in tree order.

    Returns
    -------
    xarray.Dataset
        Variables ``seg_to``, ``seg_length`` (m), ``reach_to``, ``reach_length`` (m)
        and ``reach_seg``; coordinates ``seg`` and ``reach`` of distinct positive ids.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if not 1 <= n_outlets <= n_seg:
        raise ValueError(f"n_outlets={n_outlets} must be between 1 and n_seg={n_seg}")
    # Segments per tree: at least one each, the rest spread at random.
    tree_sizes = 1 + np.bincount(rng.integers(0, n_outlets, n_seg - n_outlets), minlength=n_outlets)
    seg_to = random_forest(rng, tree_sizes, window)

    lo, hi = reaches_per_seg
    n_reach_of = rng.integers(lo, hi + 1, n_seg)
    reach_to = random_forest(rng, n_reach_of, window)
    first = np.cumsum(n_reach_of) - n_reach_of
    reach_seg = np.repeat(np.arange(n_seg), n_reach_of)
    # The outlet reach of each segment drains into some reach of the segment below.
    has_down = seg_to >= 0
    below = seg_to[has_down]
    reach_to[first[has_down]] = first[below] + rng.integers(0, n_reach_of[below])

    n_reach = int(n_reach_of.sum())
    reach_length = rng.uniform(50.0, 3000.0, n_reach).round(2)
    reach_length[rng.random(n_reach) < zero_length_prob] = 0.0
    seg_length = np.bincount(reach_seg, weights=reach_length, minlength=n_seg)

    seg_ids = rng.choice(10 * n_seg + 10, n_seg, replace=False).astype(np.int64) + 1
    reach_ids = rng.choice(10 * n_reach + 10, n_reach, replace=False).astype(np.int64) + 1
    seg_order = rng.permutation(n_seg) if shuffle else np.arange(n_seg)
    reach_order = rng.permutation(n_reach) if shuffle else np.arange(n_reach)

    def as_ids(to: np.ndarray, ids: np.ndarray) -> np.ndarray:
        return np.where(to >= 0, ids[np.maximum(to, 0)], 0)

    m = {"units": "m"}
    return xr.Dataset(
        {
            "seg_to": ("seg", as_ids(seg_to, seg_ids)[seg_order]),
            "seg_length": ("seg", seg_length[seg_order], m),
            "reach_to": ("reach", as_ids(reach_to, reach_ids)[reach_order]),
            "reach_length": ("reach", reach_length[reach_order], m),
            "reach_seg": ("reach", seg_ids[reach_seg][reach_order]),
        },
        coords={"seg": seg_ids[seg_order], "reach": reach_ids[reach_order]},
    )


@st.composite
def river_datasets(
    draw: st.DrawFn,
    max_seg: int = 12,
    max_reaches_per_seg: int = 5,
    zero_lengths: bool = True,
) -> xr.Dataset:
    """Hypothesis strategy of small random river forests (see :func:`random_river_dataset`)."""
    n_seg = draw(st.integers(1, max_seg))
    return random_river_dataset(
        draw(st.integers(0, 2**32 - 1)),
        n_seg,
        n_outlets=draw(st.integers(1, min(3, n_seg))),
        reaches_per_seg=(1, draw(st.integers(1, max_reaches_per_seg))),
        window=draw(st.one_of(st.none(), st.integers(1, 3))),
        zero_length_prob=draw(st.sampled_from([0.0, 0.3])) if zero_lengths else 0.0,
        shuffle=draw(st.booleans()),
    )
