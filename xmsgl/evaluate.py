"""Evaluation: metrics as Datasets, repeated cross-validation, sparsity sweeps.

* :func:`evaluate` scores a prediction against observations (or the truth of a
  synthetic basin): RMSE, MAE, bias, NSE and KGE with the count of pairs behind
  each value, pooled or per reach, by season and for the hottest 10% of days.
  It stays lazy on dask input.
* :func:`cross_validate` runs repeated, blocked K-fold cross-validation over
  several training seeds, and :func:`variance_decomposition` splits the spread of
  the test score into a data-partition part and a training-seed part.
* :func:`sparsity_sweep` fits methods on thinned observations and scores them on
  the test period; :func:`plot_sparsity` draws the curves.

The formulas and design choices are in ``docs/evaluation.md``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import threading
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from xmsgl.convention import REACH, SEG, TIME, hops_to_outlet, is_truth, topology_arrays
from xmsgl.exceptions import (
    ChoiceError,
    DataError,
    ExtrapolationWarning,
    FewObservationsWarning,
    ParameterError,
    SchemaError,
    ShortRecordWarning,
    TimeError,
    XmsglError,
    XmsglWarning,
    check_axes,
    check_count,
    check_flag,
    did_you_mean,
    format_ids,
    ignoring,
    typed_arguments,
    warn_at_user,
)
from xmsgl.metrics import (
    _LONG_NAMES,
    METRICS,
    SEASONS,
    UNITS,
    align_pair,
    bias,
    hot_mask,
    kge,
    mae,
    nse,
    rmse,
    skill,
)
from xmsgl.periods import (
    bounds_mask,
    mask_spans,
    period_list,
    period_mask,
    spans_text,
    validation_at_end,
    validation_beside,
    warn_beyond_record,
    water_years,
    whole_water_years,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "METRICS",
    "BLOCKINGS",
    "REDRAWS",
    "evaluate",
    "rmse",
    "mae",
    "bias",
    "nse",
    "kge",
    "water_year",
    "subbasins",
    "cv_partitions",
    "cross_validate",
    "training_seed",
    "variance_decomposition",
    "sparsity_sweep",
    "plot_sparsity",
]

#: Blockings understood by :func:`cross_validate`.
BLOCKINGS = ("subbasin", "reach", "water_year")

#: Label of the hottest-days subset in :func:`evaluate`'s ``subset`` dimension.
HOT = "hot10"

_BY = ("season", "hot")


def _version() -> str:
    import xmsgl

    return str(xmsgl.__version__)


def _history(call: str) -> str:
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return f"{now} UTC: xmsgl {_version()} {call}"


# ----------------------------------------------------------------------------- evaluate


def _as_by(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    if isinstance(by, str):
        items = [by]
    elif isinstance(by, Iterable):
        items = list(by)
    else:
        raise ParameterError(f"by={by!r} must be None, 'season', 'hot' or a list of them")
    bad = [b for b in items if not isinstance(b, str) or b not in _BY]
    if bad:
        hint = did_you_mean([b for b in bad if isinstance(b, str)], _BY)
        raise ChoiceError(f"by={bad!r} is not known{hint}; use None, 'season', 'hot' or a list of "
                             "them")
    return items


@typed_arguments
def evaluate(
    prediction: xr.DataArray,
    observed: xr.DataArray,
    *,
    dims: str | Sequence[Hashable] | None = None,
    by: str | Sequence[str] | None = None,
    join: str = "inner",
    hot: str | None = "reach",
    time_dim: Hashable = TIME,
    check_empty: bool | None = None,
) -> xr.Dataset:
    """Score a prediction against observations: RMSE, MAE, bias, NSE, KGE and ``n``.

    Parameters
    ----------
    prediction, observed : xarray.DataArray
        Predicted and observed (or true) water temperature in degC on the same
        dimensions, for example (reach, time); NaN marks a missing value. Only pairs
        where neither is NaN count (an infinite value counts, and makes the scores
        infinite).
    dims : str or sequence of str, optional
        Dimensions to pool over. Default: all (one pooled value per subset).
        ``dims="time"`` gives one value per reach.
    by : {"season", "hot"} or a list of them, optional
        Add a ``subset`` dimension: ``"all"`` first, then ``"DJF"``, ``"MAM"``,
        ``"JJA"``, ``"SON"`` (meteorological seasons of ``time_dim``) for
        ``"season"``, and ``"hot10"`` for ``"hot"``: the pairs whose *observed*
        value is in the top decile (see ``hot``).
    join : {"inner", "exact"}, default "inner"
        How to align labels that differ: keep the shared labels (``"inner"``), or
        raise :class:`~xmsgl.exceptions.DataError` naming the mismatch (``"exact"``).
    hot : {"reach", None}, default "reach"
        ``"reach"``: each reach's threshold is the 90th percentile of its own
        observed values (over the scored time span), so each reach contributes its
        own warmest tenth of observed days. ``None``: one pooled threshold, the
        90th percentile of all observed values, so the subset concentrates on the
        warmest reaches.
    time_dim : str, default "time"
        Name of the time dimension (for seasons and hot days).
    check_empty : bool, optional
        Raise :class:`~xmsgl.exceptions.DataError` when the whole selection has no
        pair at all. Default: True for in-memory input; False for dask input, where
        it would force a compute. A subset without pairs (a season a gauge never
        saw) is not an error on either path: its values are NaN with ``n == 0``.

    Returns
    -------
    xarray.Dataset
        One variable per metric (``rmse``, ``mae``, ``bias`` in degC; ``nse``,
        ``kge`` with units ``"1"``) and ``n``, the number of pairs behind each
        value, on the dimensions not pooled over (plus ``subset``). A ``history``
        attribute records the call, and ``scored_period`` (in memory) the first and
        last day with a pair, ``"YYYY-MM-DD/YYYY-MM-DD"``: only the days both sides
        share are scored. Values where ``n == 0`` are NaN (for example
        reaches without observations when scoring per reach, or an empty season);
        ``n`` is int64 on in-memory and dask input alike.

    Raises
    ------
    DataError
        No shared label along a dimension, labels differ with ``join="exact"``, no
        pair at all, or integer values holding fill values (see
        :func:`xmsgl.metrics.align_pair`).
    SchemaError, UnitsError, TimeError
        Different dimensions, a coordinate on one side only, different units (or
        units on one side only with values implausible for degC), repeated labels.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from xmsgl.evaluate import evaluate
    >>> t = pd.date_range("2001-01-01", periods=365)
    >>> o = xr.DataArray(10 + 8 * np.sin(np.arange(365) / 58.0), dims="time",
    ...                  coords={"time": t}, attrs={"units": "degC"})
    >>> out = evaluate(o + 1.0, o, by="season")
    >>> out["subset"].values.tolist()
    ['all', 'DJF', 'MAM', 'JJA', 'SON']
    >>> round(float(out.rmse.sel(subset="all")), 6), int(out.n.sel(subset="all"))
    (1.0, 365)
    """
    check_flag("check_empty", check_empty, none=True)
    subsets = _as_by(by)
    p, o = align_pair(prediction, observed, join=join)
    lazy = p.chunks is not None or o.chunks is not None
    if check_empty is None:
        check_empty = not lazy
    if subsets and time_dim not in p.dims:
        raise SchemaError(
            f"by={by!r} needs a {str(time_dim)!r} dimension; the data has {tuple(map(str, p.dims))}"
        )
    if hot not in (None, "reach"):
        raise ChoiceError(f"hot={hot!r} is not known; use 'reach' or None")
    labels: list[str] = ["all"]
    masks: list[xr.DataArray | None] = [None]
    if "season" in subsets:
        try:  # numpy dates, or cftime ones (a model calendar such as noleap)
            season = p[time_dim].dt.season
        except (TypeError, AttributeError) as err:
            raise SchemaError(
                f"by='season' needs dates on {str(time_dim)!r}, which holds "
                f"{p[time_dim].dtype}; convert it (pd.to_datetime) or leave 'season' out") from err
        for s in SEASONS:
            labels.append(s)
            masks.append(season == s)
    if "hot" in subsets:
        per = hot if hot is None else next((d for d in o.dims if d != time_dim), None)
        labels.append(HOT)
        # The threshold is taken over the observations that are scored (those with a
        # prediction): a day the prediction leaves out must not move it.
        masks.append(hot_mask(o.where(p.notnull()), per=per, time_dim=time_dim))
    parts = []
    for label, mask in zip(labels, masks):
        om = o if mask is None else o.where(mask)
        res = skill(p, om, dims)
        # Only the whole selection must hold a pair: a season without observations
        # (a summer-only gauge in DJF) is a legitimate empty subset, NaN with n = 0.
        if check_empty and label == "all" and int(res["n"].sum()) == 0:
            n_o, n_p = int(np.isfinite(o.values).sum()), int(np.isfinite(p.values).sum())
            fix = ("score a period or reaches that hold observations (masked observations, "
                   "such as a held-out test period, cannot be scored)")
            if n_p == 0:
                # Nothing to do with the observations: the prediction is what is empty.
                why = "prediction holds no finite value at the labels both share"
                fix = ("check the prediction: the days or reaches selected from it, or the inputs "
                       "it was downscaled from")
            elif n_o == 0:
                why = "observed holds no finite value at the labels both share"
            else:
                why = (f"{n_o} observed and {n_p} predicted values at the shared labels, but "
                       "never both at the same reach and day")
            raise DataError(f"no finite prediction-observation pair: the selection is empty ({why}); {fix}")
        parts.append(res)
    out = parts[0] if not subsets else xr.concat(parts, dim=pd.Index(labels, name="subset"),
                                                 coords="minimal", compat="override")
    for name in (*METRICS, "n"):
        out[name].attrs.setdefault("units", UNITS[name])
        out[name].attrs.setdefault("long_name", _LONG_NAMES[name])
    # What was scored: the model behind the prediction, so that a saved score names it.
    for key in ("xmsgl_method", "xmsgl_model_sha256"):
        if key in prediction.attrs:
            out.attrs[key] = prediction.attrs[key]
    out.attrs["history"] = _history(
        f"evaluate(dims={dims!r}, by={by!r}, join={join!r}, hot={hot!r})"
    )
    if not lazy and time_dim in p.dims and time_dim in p.coords:
        # The days scored (the first and last with a pair): the labels both share,
        # which may be fewer than the prediction's (observations of part of its days).
        paired = (p.notnull() & o.notnull()).any([d for d in p.dims if d != time_dim]).values
        if paired.any():
            days = p[time_dim].values[paired]  # in the prediction's order: first and last by date
            out.attrs["scored_period"] = f"{str(min(days))[:10]}/{str(max(days))[:10]}"
    if "hot" in subsets:  # the rule of the hot10 subset, where there is one
        node = next((str(d) for d in o.dims if d != time_dim), "reach")
        out.attrs["hot_rule"] = (
            f"observed value >= 90th percentile of the {node}'s own observed values" if hot == "reach"
            else "observed value >= 90th percentile of all observed values"
        )
    return out


# ----------------------------------------------------------------------------- partitions


def water_year(time: pd.DatetimeIndex | xr.DataArray | np.ndarray) -> np.ndarray:
    """Water year (1 October - 30 September, named by the year it ends in) of each day.

    Examples
    --------
    >>> import pandas as pd
    >>> water_year(pd.to_datetime(["2000-09-30", "2000-10-01"])).tolist()
    [2000, 2001]
    """
    return water_years(time)


def subbasins(ds: xr.Dataset, n_groups: int) -> xr.DataArray:
    """Cut the network into about ``n_groups`` spatially contiguous sub-basins.

    The coarse network is walked from the headwaters down; the reaches upstream of
    a segment accumulate until they reach ``n_reach / n_groups``, where the network
    is cut: the segment and everything above it that is not already cut off form
    one sub-basin (a connected upstream area). Whatever remains above an outlet is a
    sub-basin too. Every reach belongs to the sub-basin of its segment, so sub-basins
    are connected along the fine network as well.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention (only its topology is read).
    n_groups : int
        Wanted number of sub-basins (the result may differ by a few).

    Returns
    -------
    xarray.DataArray
        int64 on ``reach``: the id of the segment at the bottom of each reach's
        sub-basin.

    Examples
    --------
    >>> import numpy as np, xmsgl
    >>> from xmsgl.evaluate import subbasins
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=20, start="2001-01-01", end="2001-01-10")
    >>> int(np.unique(subbasins(ds, 4)).size) >= 3
    True
    """
    topo = topology_arrays(ds)
    check_count("n_groups", n_groups)
    size = np.bincount(topo.reach_seg_idx, minlength=topo.n_seg).astype(np.float64)
    target = topo.n_reach / float(n_groups)
    depth = hops_to_outlet(topo.seg_to_idx)
    acc = size.copy()
    root = topo.seg_to_idx < 0
    for s in np.argsort(-depth, kind="stable"):
        if acc[s] >= target:
            root[s] = True
        elif topo.seg_to_idx[s] >= 0:
            acc[topo.seg_to_idx[s]] += acc[s]
    label = np.arange(topo.n_seg)
    for s in np.argsort(depth, kind="stable"):
        if not root[s]:
            label[s] = label[topo.seg_to_idx[s]]
    return xr.DataArray(topo.seg_ids[label][topo.reach_seg_idx], dims=(REACH,),
                        coords={REACH: topo.reach_ids}, name="subbasin",
                        attrs={"long_name": "id of the segment at the bottom of the reach's sub-basin"})


class Holdout:
    """One held-out set of a cross-validation: (repeat, fold), reaches and days.

    The held-out cells are ``reaches x days``; ``groups`` are the labels of the
    held-out blocks (reach ids, sub-basin ids or water years).
    """

    def __init__(self, repeat: int, fold: int, reaches: np.ndarray, days: np.ndarray,
                 groups: list[int]) -> None:
        self.repeat = repeat
        self.fold = fold
        self.reaches = reaches
        self.days = days
        self.groups = groups

    def __repr__(self) -> str:
        return (f"<Holdout repeat={self.repeat} fold={self.fold} reaches={int(self.reaches.sum())} "
                f"days={int(self.days.sum())} groups={format_ids(self.groups)}>")


def _assign(groups: np.ndarray, sizes: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold of each group: random order, each to the currently smallest fold."""
    fold_of = np.empty(groups.size, dtype=np.int64)
    load = np.zeros(folds)
    for g in rng.permutation(groups.size):
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += sizes[g]
    return fold_of


#: Where more blocks come from, by blocking (for the messages of :func:`cv_partitions`).
_MORE_BLOCKS = {"water_year": "a longer record", "reach": "more gauged reaches",
                "subbasin": "a larger network"}

#: Further draws :func:`cv_partitions` makes for a repetition whose partition
#: repeats an earlier one, before it gives up on that repetition.
REDRAWS = 100

#: States :func:`_n_deals` visits at most before it stops counting.
_DEAL_STATES = 20_000


def _n_deals(sizes: np.ndarray, folds: int) -> int | None:
    """How many distinct partitions :func:`_assign` can deal, or None when too many to count.

    The fold a block goes to depends only on the loads so far, so the partitions
    are the leaves of a walk over "which block comes next"; the walk stops (None)
    after :data:`_DEAL_STATES` states. Sizes are whole numbers, so the float sums
    are exact and the ties fall as in :func:`_assign`.
    """
    n = int(sizes.size)
    size = [float(v) for v in sizes]
    start: tuple[tuple[int, ...], ...] = tuple(() for _ in range(folds))
    stack, visited, leaves = [start], {start}, set()
    while stack:
        state = stack.pop()
        placed = {b for fold in state for b in fold}
        if len(placed) == n:
            leaves.add(frozenset(state))
            continue
        loads = [sum(size[b] for b in fold) for fold in state]
        f = loads.index(min(loads))  # the first fold with the least load, as np.argmin
        for b in range(n):
            if b in placed:
                continue
            new = (*state[:f], tuple(sorted((*state[f], b))), *state[f + 1:])
            if new not in visited:
                if len(visited) >= _DEAL_STATES:
                    return None
                visited.add(new)
                stack.append(new)
    return len(leaves)


#: Where, in this thread, :func:`cv_partitions` puts its note on dropped repetitions
#: instead of warning (``notes``, a list; see :func:`_taking_notes`).
_NOTES_TAKEN = threading.local()


@contextlib.contextmanager
def _taking_notes(notes: list[str]) -> Iterator[list[str]]:
    """Inside the block, :func:`cv_partitions` in this thread appends its note on
    dropped repetitions to ``notes`` instead of warning (the command line says it
    first, and drops it when the sweep meets it again)."""
    _NOTES_TAKEN.notes = notes
    try:
        yield notes
    finally:
        _NOTES_TAKEN.notes = None


def cv_partitions(
    ds: xr.Dataset,
    *,
    folds: int = 5,
    repeats: int = 2,
    blocking: str = "subbasin",
    seed: int = 0,
) -> list[Holdout]:
    """The held-out sets of a repeated, blocked K-fold cross-validation.

    Blocks are observed reaches (``"reach"``: reaches with any ``reach_temp``
    value), sub-basins (``"subbasin"``: :func:`subbasins` with ``2 * folds``
    wanted groups, more if needed) or water years (``"water_year"``). In every
    repetition the blocks are shuffled (seeded by ``(seed, repeat)``) and dealt to
    the fold with the fewest reaches (days for water years) so far, so folds are
    balanced. Each block is held out exactly once per repetition.

    Every repetition is a distinct partition. A deal whose held-out sets (in any
    fold order) equal those of an earlier repetition is not a new draw: it is
    drawn again, seeded by ``(seed, repeat, 1)``, ``(seed, repeat, 2)``... up to
    :data:`REDRAWS` times. Few blocks allow few partitions (5 water years in 5
    folds allow one); when no new one is found, or every possible one is taken
    already, the repetition is dropped with an
    :class:`~xmsgl.exceptions.XmsglWarning` that says how many distinct
    partitions there are, and the later ones are numbered on. Repetitions whose
    first deal is new are exactly as they always were.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention (``reach_temp`` for ``blocking="reach"``).
    folds : int, default 5
        Folds per repetition, at least 2.
    repeats : int, default 2
        Repetitions wanted; fewer come back when the blocks allow fewer distinct
        partitions.
    blocking : {"subbasin", "reach", "water_year"}, default "subbasin"
        What is held out together.
    seed : int, default 0
        Seed of the deals.

    Returns
    -------
    list of Holdout
        ``folds`` held-out sets per distinct repetition, repetition-major, the
        repetitions numbered ``0, 1, ...``.

    Raises
    ------
    DataError
        Fewer blocks than folds (the message says how many there are).

    Warns
    -----
    XmsglWarning
        Fewer distinct partitions than ``repeats``: the copies are dropped.

    Examples
    --------
    >>> import xmsgl
    >>> from xmsgl.evaluate import cv_partitions
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=10, start="2000-10-01", end="2004-09-30")
    >>> parts = cv_partitions(ds, folds=2, repeats=2, blocking="water_year")
    >>> len(parts), sorted(int(p.days.sum()) for p in parts[:2])
    (4, [730, 731])
    >>> held = [frozenset(frozenset(p.groups) for p in parts[r * 2:r * 2 + 2]) for r in (0, 1)]
    >>> held[0] != held[1]  # the repetitions are distinct partitions
    True
    """
    if blocking not in BLOCKINGS:
        raise ChoiceError(f"blocking={blocking!r} is not known; use one of {list(BLOCKINGS)}")
    check_count("folds", folds, least=2)
    check_count("repeats", repeats)
    if repeats > MAX_DRAWS:
        raise ParameterError(f"repeats={repeats} is more than {MAX_DRAWS:,} partitions; give fewer")
    check_count("seed", seed, least=0)
    folds, repeats = int(folds), int(repeats)
    topo = topology_arrays(ds)
    if TIME not in ds.dims:
        raise SchemaError("the dataset has no 'time' dimension")
    n_time = ds.sizes[TIME]
    if blocking == "water_year":
        label = water_year(ds[TIME].values)
        groups, sizes = np.unique(label, return_counts=True)
        what = "water years"
    elif blocking == "reach":
        if "reach_temp" not in ds.data_vars:
            raise SchemaError("blocking='reach' holds out observed reaches; 'reach_temp' is missing")
        obs = np.isfinite(np.asarray(ds["reach_temp"].transpose(REACH, TIME).values)).any(axis=1)
        label = topo.reach_ids
        # In id order, as np.unique gives the other blockings' groups: the folds dealt
        # for a seed must not depend on the order of the dataset's rows.
        groups = np.sort(topo.reach_ids[obs])
        sizes = np.ones(groups.size, dtype=np.int64)
        what = "observed reaches"
    else:
        want = 2 * folds
        while True:
            label = np.asarray(subbasins(ds, want).values)
            groups, sizes = np.unique(label, return_counts=True)
            if groups.size >= folds or want >= topo.n_seg:
                break
            want *= 2
        what = "sub-basins"
    if groups.size == 0:
        raise DataError(
            f"blocking={blocking!r} holds out {what}, but the dataset has none ('reach_temp' holds no "
            "observation): cross-validation needs observations to hold out; add them, or use "
            "blocking='subbasin' or 'water_year' when the dataset has 'reach_temp_true' to score against"
        )
    if groups.size < folds:
        raise DataError(
            f"blocking={blocking!r} finds {groups.size} {what} but folds={folds}; every fold needs a "
            + (f"held-out block: use folds <= {groups.size} or another blocking" if groups.size >= 2
               else f"held-out block, and cross-validation needs at least 2 folds: use another "
                    f"blocking, or a dataset with more {what}")
        )
    size = sizes.astype(np.float64)
    deals: list[np.ndarray] = []
    seen: set[frozenset[frozenset[int]]] = set()
    n_deals: int | None = None
    counted = False
    for r in range(repeats):
        for attempt in range(REDRAWS + 1):
            if n_deals is not None and len(seen) >= n_deals:
                break  # every possible partition is taken: drawing again cannot help
            rng = np.random.default_rng([seed, r] if attempt == 0 else [seed, r, attempt])
            fold_of = _assign(groups, size, folds, rng)
            key = frozenset(frozenset(int(g) for g in groups[fold_of == f]) for f in range(folds))
            if key not in seen:
                seen.add(key)
                deals.append(fold_of)
                break
            if not counted:  # only when a copy turns up: counting can take a moment
                n_deals, counted = _n_deals(size, folds), True
    if len(deals) < repeats:
        others = [b for b in BLOCKINGS if b != blocking]
        how = (f"only {n_deals} distinct partition{' exists' if n_deals == 1 else 's exist'}"
               if n_deals is not None else
               f"only {len(deals)} distinct partitions were found ({REDRAWS} further draws per "
               "repetition)")
        note = (
            f"cv_partitions: blocking={blocking!r} deals {groups.size} {what} into folds={folds}, and "
            f"{how}: of repeats={repeats}, {repeats - len(deals)} would repeat an earlier partition "
            f"and {'are' if repeats - len(deals) > 1 else 'is'} dropped (a copy is no new draw and would "
            f"narrow the variance decomposition's intervals); {len(deals)} "
            f"remain{'s' if len(deals) == 1 else ''}. For more, give more "
            f"blocks ({_MORE_BLOCKS[blocking]}, or blocking={others[0]!r} or {others[1]!r}) or "
            f"another number of folds, or ask for repeats={len(deals)}")
        taken = getattr(_NOTES_TAKEN, "notes", None)
        if taken is not None:
            taken.append(note)
        else:
            warn_at_user(note, XmsglWarning)
    out: list[Holdout] = []
    for r, fold_of in enumerate(deals):
        for f in range(folds):
            held = groups[fold_of == f]
            if blocking == "water_year":
                reaches = np.ones(topo.n_reach, dtype=bool)
                days = np.isin(label, held)
            else:
                reaches = np.isin(label, held)
                days = np.ones(n_time, dtype=bool)
            out.append(Holdout(r, f, reaches, days, [int(g) for g in held]))
    return out


def _without_truth(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` without its ``*_true`` variables: what a trainer is given holds no truth,
    which at held-out cells is the very target it is scored on."""
    truth = [name for name in ds.data_vars if is_truth(str(name))]
    return ds.drop_vars(truth) if truth else ds


def _mask_obs(ds: xr.Dataset, name: str, dim: str, cells: np.ndarray) -> xr.Dataset:
    """A shallow copy of ``ds`` whose ``name`` is NaN on the (node, time) ``cells``."""
    if name not in ds.data_vars:
        return ds
    da = ds[name].transpose(dim, TIME)
    vals = np.array(da.values, copy=True)
    vals[cells] = np.nan
    new = da.copy(data=vals).transpose(*ds[name].dims)
    return ds.assign({name: new})


def _is_coarse_series(ds: xr.Dataset, name: Any) -> bool:
    """Whether ``name`` is a (seg, time) variable of ``ds``."""
    return isinstance(name, str) and name in ds.data_vars and set(ds[name].dims) == {SEG, TIME}


def _coarse_targets(ds: xr.Dataset, fit_kwargs: Mapping[str, Any] | None) -> list[str]:
    """The coarse variables a fit learns from, which cross-validation hides with the
    held-out data: ``seg_temp``, and ASYNC-MSGL's ``stage_a_variable`` when the fit
    arguments name another (seg, time) variable of ``ds`` (a longer coarse record taken
    at the same gauges would otherwise carry the held-out sites' data into stage A)."""
    names = ["seg_temp"] if "seg_temp" in ds.data_vars else []
    other = (fit_kwargs or {}).get("stage_a_variable")
    if other != "seg_temp" and _is_coarse_series(ds, other):
        names.append(str(other))
    return names


def _masked_coarse(ds: xr.Dataset, fit_kwargs: Mapping[str, Any] | None, mask_coarse: Any) -> list[str]:
    """The coarse variables ``cross_validate`` hides at the held-out sites' segments:
    :func:`_coarse_targets` for ``True``, none for ``False``, or the names given."""
    if isinstance(mask_coarse, (bool, np.bool_)):
        return _coarse_targets(ds, fit_kwargs) if mask_coarse else []
    names = [mask_coarse] if isinstance(mask_coarse, str) else mask_coarse
    try:
        names = list(names)
    except TypeError:
        raise ParameterError(
            f"mask_coarse={mask_coarse!r} must be True, False or a list of the names of the "
            "coarse variables to hide, such as ['seg_temp']") from None
    bad = [n for n in names if not _is_coarse_series(ds, n)]
    if bad:
        raise ParameterError(
            f"mask_coarse={mask_coarse!r}: {bad} are not (seg, time) variables of the dataset; "
            "give True (hide seg_temp and a stage_a_variable of fit_kwargs), False, or the names "
            "of the coarse variables to hide, such as ['seg_temp']"
        )
    return list(dict.fromkeys(names))


# ----------------------------------------------------------------------------- trainers

#: A trainer: ``(train_ds, test_ds, seed)`` -> a score, a mapping of scores, or a
#: prediction DataArray (reach, time) that is scored against ``test_ds["target"]``.
Trainer = Callable[[xr.Dataset, xr.Dataset, int], Any]


def _fit_periods(kw: Mapping[str, Any], time: pd.DatetimeIndex,
                 attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The periods the default trainer gives :func:`xmsgl.fit` (``train``, ``val``,
    ``test``), from the fit arguments ``kw`` and a held-out set's attributes ``attrs``.

    * Test days (``test_period``, JSON) are passed as ``test=`` unless ``kw`` has a
      ``test``; when ``kw`` has neither ``train`` nor ``val`` the validation period
      is :func:`~xmsgl.periods.validation_beside` (fit's own rule). A sweep whose test
      days are fit's default split (``default_split``) lets fit split by itself
      when ``kw`` names no period: the same days.
    * Held-out sites (spatial blocking: no test days) are scored on every day, so
      the network trains on every day but the validation years of
      :func:`~xmsgl.periods.validation_at_end`, as the baselines train on every day;
      not on fit's default split, which would leave its test years unread.
    """
    out: dict[str, Any] = {}
    named = {"train", "val", "test"} & set(kw)
    period = attrs.get("test_period")
    if period:
        if "test" in kw or (attrs.get("default_split") and not named):
            return out
        out["test"] = [tuple(p) for p in json.loads(period)]
        if not {"train", "val"} & set(kw):
            # With test= alone, fit would train on every other day and validate on
            # none: keep the validation year(s) fit's own split would keep.
            val = validation_beside(time, period_mask(time, out["test"], "test"))
            if val:
                out["val"] = val
    elif attrs.get("blocking") in ("subbasin", "reach") and not named:
        val = validation_at_end(time)
        if val:
            out["val"] = val
    return out


def default_trainer(method: str, fit_kwargs: Mapping[str, Any] | None = None) -> Trainer:
    """The trainer :func:`cross_validate` and :func:`sparsity_sweep` use by default.

    Baselines (:data:`xmsgl.baselines.BASELINES`) are fitted with
    :func:`xmsgl.baselines.fit_baseline` on every day of ``train_ds`` (its held-out
    observations are already masked) and predict on ``train_ds``. Other methods are
    fitted with :func:`xmsgl.fit` and applied with :func:`xmsgl.downscale.downscale`;
    when ``test_ds`` carries a ``test_period`` attribute it is passed as ``test=``
    so that those days are never read, with, unless ``fit_kwargs`` set ``train`` or
    ``val``, the validation period of :func:`xmsgl.periods.validation_beside` (the
    whole water year(s) just before the test period, as fit's own split keeps, just
    after it where it starts the record, or just before its last block where test
    days hold both ends of the record, with any water year that is not whole between
    them; on a
    record with no whole water year free of test days beside the one left for
    training there is none, and the fit warns that its checkpoint is chosen on the
    training loss). Held-out sites (``"subbasin"`` and ``"reach"`` blocking), scored
    on every day, are fitted on every day but the last whole water year(s)
    (:func:`xmsgl.periods.validation_at_end`), the validation period, as the
    baselines are fitted on every day. ``fit_kwargs`` go to the fit call; their
    ``device`` is also the one the scored run of a network is made on.

    Returns
    -------
    callable
        ``(train_ds, test_ds, seed) -> prediction`` (reach, time) DataArray.

    Examples
    --------
    >>> from xmsgl.evaluate import default_trainer
    >>> callable(default_trainer("climatology"))
    True
    """
    from xmsgl.baselines import BASELINES, fit_baseline

    kwargs = dict(fit_kwargs or {})

    def train(train_ds: xr.Dataset, test_ds: xr.Dataset, seed: int) -> xr.DataArray:
        if method in BASELINES:
            kw = dict(kwargs)
            if "train" not in kw:
                t = pd.DatetimeIndex(train_ds[TIME].values)
                kw["train"] = (str(t[0].date()), str(t[-1].date()))
            return fit_baseline(train_ds, method, seed=seed, **kw).predict(train_ds)
        from xmsgl.downscale import downscale
        from xmsgl.model import fit, scored_days_hidden

        kw = dict(kwargs)
        kw.update(_fit_periods(kw, pd.DatetimeIndex(train_ds[TIME].values), test_ds.attrs))
        kw.setdefault("progress", False)
        # The scored days' observations are hidden from the fit on purpose: that its
        # test period holds none is how the sweep works, not a mistake to warn of.
        with scored_days_hidden():
            model = fit(train_ds, method=method, seed=seed, **kw)
        with warnings.catch_warnings():
            # Held-out sites unlike the fitted ones are what the scores measure; a
            # warning for every fold and seed would bury the rest.
            warnings.simplefilter("ignore", ExtrapolationWarning)
            # On the device the fit was given: "cpu" on a machine with a GPU, or a
            # GPU other than the first, holds for the scored runs too.
            return downscale(train_ds, model, device=kw.get("device", "auto"))

    return train


def _training_days(method: str, kw: Mapping[str, Any], time: pd.DatetimeIndex,
                   attrs: Mapping[str, Any]) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """The days the default trainer fits ``method`` on (a mask of ``time``), before
    the held-out observations are masked, and its validation spans (dates as text):
    a baseline every day (or its ``train``) and none, a network fit's periods as
    :func:`_fit_periods` sets them (fit's own split where it sets none)."""
    from xmsgl.baselines import BASELINES
    from xmsgl.model import _resolve_periods

    if method in BASELINES:
        return (period_mask(time, kw["train"], "train") if "train" in kw
                else np.ones(time.size, dtype=bool)), []
    kw = {**kw, **_fit_periods(kw, time, attrs)}
    with ignoring(Warning):  # the fit says it, once it runs
        periods, masks = _resolve_periods(time, kw.get("train"), kw.get("val"), kw.get("test"))
    return np.asarray(masks["train"]), [tuple(p) for p in periods["val"]]


def _check_fit_kwargs(fit_kwargs: Any, caller: str, nested: bool) -> None:
    """Refuse ``fit_kwargs`` that are not a mapping, or that set what ``caller``
    (``"sparsity_sweep"`` or ``"cross_validate"``) gives each fit itself: the seed,
    the method, the data and the test days; in the flat form or, where ``nested``,
    in a method's own entry."""
    if fit_kwargs is None:
        return
    if not isinstance(fit_kwargs, Mapping):
        raise ParameterError(f"fit_kwargs={fit_kwargs!r} must be a mapping of keyword arguments of "
                             "xmsgl.fit, e.g. {'epochs': 20}")
    sweep = caller == "sparsity_sweep"
    hints = {"seed": f"{caller}'s seeds=" + ("" if sweep else " (and seed= for the folds)"),
             "method": f"{caller}'s " + ("methods=" if sweep else "method="),
             "ds": f"{caller}'s ds",
             "test": ("sparsity_sweep's test=" if sweep
                      else "the held-out blocks (blocking='water_year' holds out years)")}
    entries = [("fit_kwargs", fit_kwargs)]
    if nested:
        entries += [(f"fit_kwargs[{k!r}]", v) for k, v in fit_kwargs.items() if isinstance(v, Mapping)]
    for where, entry in entries:
        taken = [k for k in hints if k in entry]
        if taken:
            raise ParameterError(
                f"{where} sets {taken}, which {caller} gives each fit itself; drop "
                f"{'them' if len(taken) > 1 else 'it'} and use "
                + ", ".join(hints[k] for k in taken))


def _score(result: Any, test_ds: xr.Dataset, name: str = "score") -> dict[str, float]:
    """The scores of a trainer's result; a plain number is the score called ``name``."""
    if isinstance(result, xr.DataArray):
        res = evaluate(result, test_ds["target"])
        return {k: float(res[k]) for k in (*METRICS, "n")}
    try:
        if isinstance(result, Mapping):
            return {str(k): float(v) for k, v in result.items()}
        return {name: float(result)}
    except (TypeError, ValueError):
        raise ParameterError(
            f"the trainer returned {result!r}; it must return a number, a mapping of numbers or a "
            "prediction DataArray on (reach, time)"
        ) from None


def _target(ds: xr.Dataset, use_truth: bool) -> tuple[xr.DataArray, str]:
    if use_truth and "reach_temp_true" in ds.data_vars:
        return ds["reach_temp_true"].transpose(REACH, TIME), "reach_temp_true"
    if "reach_temp" not in ds.data_vars:
        raise SchemaError("scoring needs 'reach_temp' (or 'reach_temp_true') on (reach, time)")
    return ds["reach_temp"].transpose(REACH, TIME), "reach_temp"


#: The most seeds or repeats a sweep or cross-validation takes (each is a fit):
#: beyond it, a mistyped count ran out of memory listing them.
MAX_DRAWS = 10_000


def _check_trainer(trainer: Any, methods: Sequence[str]) -> None:
    """Refuse a ``trainer`` that is neither callable nor a mapping of method names to
    callables (or to fit keywords): one such was left out without a word, and the
    default fit ran instead."""
    if trainer is None or callable(trainer):
        return
    if not isinstance(trainer, Mapping):
        raise ParameterError(f"trainer={trainer!r} is not callable; give a function trainer(train_ds, "
                             "test_ds, seed) as xmsgl.evaluate.default_trainer(method) returns, or a "
                             "dict of them by method")
    unknown = sorted(str(k) for k in trainer if k not in methods)
    if unknown:
        raise ParameterError(f"trainer names {unknown}, which {'is' if len(unknown) == 1 else 'are'} not "
                             f"among the methods {list(methods)}{did_you_mean(unknown, methods)}")
    bad = sorted(str(k) for k, t in trainer.items() if not callable(t) and not isinstance(t, Mapping))
    if bad:
        raise ParameterError(f"trainer for {bad} is not callable; give a function per method")


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        check_count("seeds", seeds)
        if seeds > MAX_DRAWS:
            raise ParameterError(f"seeds={seeds} is more than {MAX_DRAWS:,} fits; give fewer")
        return list(range(int(seeds)))
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, np.ndarray)):
        raise ParameterError(f"seeds={seeds!r} must be a positive count or a list of seeds")
    out = list(seeds)
    for s in out:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or int(s) < 0:
            raise ParameterError(f"seeds={seeds!r} must be integers of at least 0; {s!r} is not")
    if not out or len(set(out)) != len(out):
        raise ParameterError(f"seeds={seeds!r} must be distinct integers (at least one)")
    return [int(s) for s in out]


def _sweep_test_days(time: pd.DatetimeIndex, test: Any) -> np.ndarray:
    """The days :func:`sparsity_sweep` scores: those of ``test``, or by default the
    days outside the training period of fit's split
    (:func:`xmsgl.baselines.default_train_period`)."""
    from xmsgl.baselines import default_train_period

    if test is not None:
        # A period reaching beyond the days warns: the scores would read as the
        # period's, being of part of it only.
        bounds = period_list(test, "test")  # read once: its warnings are said once
        mask = bounds_mask(time, bounds)
        if mask.any():
            warn_beyond_record(time, test, np.flatnonzero(mask), "scored", "test", bounds=bounds)
        return mask
    # Whole days, as every period is read: with the end as a date string compared to the
    # stamps, the last training day stamped at noon was scored (and read by the fit).
    return ~period_mask(time, default_train_period(time), "train")


def _warn_short_sweep(time: pd.DatetimeIndex, test_days: np.ndarray) -> bool:
    """Warn, once for a whole sweep, that a record of fewer than three water years
    leaves the default test period part of one year; whether it warned. Said by the
    sweep whatever the methods: baselines take an explicit training period, so no fit
    would say it."""
    n_whole = whole_water_years(time).size
    if n_whole >= 3:
        return False
    days = time[test_days]
    warn_at_user(
        f"the record holds {n_whole} whole water year(s) ({time[0].date()} to "
        f"{time[-1].date()}), too few for the default test period by water year: the "
        f"sweep scores the last 15% of its days ({days[0].date()} to {days[-1].date()}), "
        "part of one year, and leaves the other seasons unscored; give test=(start, end) "
        "to choose the test period, or use a record of three water years or more",
        ShortRecordWarning)
    return True


def _results_dataset(rows: dict[tuple[int, ...], dict[str, float]], dims: dict[str, list[Any]]) -> xr.Dataset:
    names = sorted({k for r in rows.values() for k in r}, key=lambda k: (k not in METRICS, k))
    shape = tuple(len(v) for v in dims.values())
    out = xr.Dataset(coords={k: v for k, v in dims.items()})
    for name in names:
        arr = np.full(shape, np.nan)
        for idx, r in rows.items():
            arr[idx] = r.get(name, np.nan)
        if name == "n" and np.isfinite(arr).all():
            arr = arr.astype(np.int64)  # a count, as metrics.skill gives it (NaN only where a cell is missing)
        out[name] = (tuple(dims), arr, {"units": UNITS.get(name, "1"),
                                        **({"long_name": _LONG_NAMES[name]} if name in _LONG_NAMES else {})})
    return out


# ----------------------------------------------------------------------------- cross-validation


def training_seed(seed: int, repeat: int, fold: int) -> int:
    """The seed :func:`cross_validate` trains replicate ``seed`` of partition
    (``repeat``, ``fold``) with: drawn from the three (``numpy.random.SeedSequence``),
    so that every partition has seeds of its own.

    :func:`variance_decomposition` reads the seeds as nested in the partitions. With
    the same seeds in every fold they would be crossed (seed ``s`` giving the same
    initial weights everywhere), and the nested estimate of the partition variance
    would lack the share of the seed effects (their variance divided by the number of
    seeds; in the simulation of ``docs/scripts/vd_simulation.py`` it came out at 0.0058
    for a true 0.01, and at 0 in a third of the draws).

    >>> training_seed(0, 0, 0) == training_seed(0, 0, 0) != training_seed(0, 0, 1)
    True
    """
    state = np.random.SeedSequence([int(seed), int(repeat), int(fold)]).generate_state(1, np.uint32)
    return int(state[0] >> 1)  # below 2**31: a seed every generator takes


def _cv_plan(ds: xr.Dataset, *, folds: int, repeats: int, blocking: str, seed: int,
             use_truth: bool) -> tuple[list[Holdout], xr.DataArray, str]:
    """The held-out sets of :func:`cross_validate` and its target, every one checked
    for a target value before anything is trained."""
    parts = cv_partitions(ds, folds=folds, repeats=repeats, blocking=blocking, seed=seed)
    target_all, target_name = _target(ds, use_truth)
    finite = np.isfinite(np.asarray(target_all.values))
    for h in parts:
        if not finite[np.ix_(h.reaches, h.days)].any():
            raise DataError(
                f"held-out set of repeat {h.repeat}, fold {h.fold} (blocks {format_ids(h.groups)}) has "
                f"no {target_name!r} value; the holdout is empty: use fewer folds or another blocking"
            )
    return parts, target_all, target_name


def _cells_bar(total: int, desc: str) -> Any:
    """One progress bar over the fits of a cross-validation or sweep (tqdm.auto; shown
    with the ``progress`` option): the fits' own bars are off, and without it a
    default cross-validation showed nothing for hours."""
    from tqdm.auto import tqdm

    from xmsgl.options import progress_or_option

    return tqdm(total=int(total), desc=desc, disable=not progress_or_option(None), leave=False,
                unit="fit")


class _CellWarnings:
    """While one cell of a cross-validation or a sweep is fitted, xmsgl's warnings are
    shown with the cell named at their end (``note``), each text once per call
    (``said``; the fits' own ``catch_warnings`` reset Python's record of what was shown,
    so every fold, share and seed would say it again). Only what is shown changes, and
    only for :class:`XmsglWarning`: filters (by message too, matched at its start),
    ``"error"`` and ``catch_warnings(record=True)`` work as for any warning."""

    def __init__(self, note: str, said: set[tuple[type, str]]) -> None:
        self.note = note
        self.said = said

    @classmethod
    def fold(cls, h: Holdout, said: set[tuple[type, str]]) -> _CellWarnings:
        return cls(f" (fold {h.fold} of repetition {h.repeat}; said once per cross-validation)", said)

    def __enter__(self) -> None:
        # The hook alone is swapped and put back: catch_warnings would also reset the
        # record of warnings already shown, and each fold and seed would say them again.
        self._before = before = warnings.showwarning
        # CPython's default display, and the one catch_warnings(record=True) swaps in:
        # calling it keeps what the caller set up (a record, a file).
        plain = getattr(warnings, "_showwarning_orig", None)
        impl = getattr(warnings, "_showwarnmsg_impl", None)
        note, said = self.note, self.said

        def show(message: Any, category: type[Warning], filename: str, lineno: int,
                 file: Any = None, line: str | None = None) -> None:
            if issubclass(category, XmsglWarning):
                # Each fold's counts differ: the first fold's stands for the others.
                key = "" if issubclass(category, FewObservationsWarning) else str(message)
                if (category, key) in said:
                    return
                said.add((category, key))
                more = ("; other folds may have as few, and are not named"
                        if issubclass(category, FewObservationsWarning) else "")
                message = category(f"{message}{note}{more}")
            if before is plain and impl is not None:
                impl(warnings.WarningMessage(message, category, filename, lineno, file, line))
            else:
                before(message, category, filename, lineno, file, line)

        warnings.showwarning = show

    def __exit__(self, *exc: Any) -> None:
        warnings.showwarning = self._before


def _cv_training_checked(ds: xr.Dataset, parts: list[Holdout], method: str,
                         kwargs: Mapping[str, Any], blocking: str) -> dict[tuple[int, int], Any]:
    """Check, before any fit, that every fold leaves the default trainer's fit of
    ``method`` a fine observation on its training days, and that its periods agree;
    return each fold's validation period (networks; ``{}`` for baselines)."""
    from xmsgl.baselines import BASELINES

    time = pd.DatetimeIndex(ds[TIME].values)
    observed = np.isfinite(np.asarray(ds["reach_temp"].transpose(REACH, TIME).values))
    vals: dict[tuple[int, int], Any] = {}
    for h in parts:
        where = (f"fold {h.fold} of repetition {h.repeat} (held-out blocks "
                 f"{format_ids(h.groups)})")
        attrs = {"blocking": blocking,
                 "test_period": json.dumps(mask_spans(time, h.days)) if blocking == "water_year" else ""}
        try:
            days, val = _training_days(method, kwargs, time, attrs)
        except XmsglError as err:
            raise type(err)(f"{where}: {err}") from err
        if method in BASELINES:
            continue  # fitted on every day; they score without fine observations too
        vals[(h.repeat, h.fold)] = val
        if method == "remap":
            continue
        left = observed & ~(h.reaches[:, None] & h.days[None, :])
        if not left[:, days].any():
            raise DataError(
                f"{where} leaves no fine observation ('reach_temp') on the days {method!r} trains "
                "on: every observed reach lies in its held-out blocks, or on held-out or "
                "validation days; use fewer folds, another blocking or a record with more "
                "observed sites (checked before any fit)")
    return vals


@typed_arguments
def cross_validate(
    ds: xr.Dataset,
    method: str,
    folds: int = 5,
    repeats: int = 2,
    seeds: int | Sequence[int] = 3,
    blocking: str = "subbasin",
    fit_kwargs: Mapping[str, Any] | None = None,
    score: str = "rmse",
    trainer: Trainer | None = None,
    *,
    seed: int = 0,
    use_truth: bool = True,
    mask_coarse: bool | Sequence[str] = True,
) -> xr.Dataset:
    """Repeated, blocked K-fold cross-validation over several training seeds.

    For each repetition ``r`` and fold ``f`` (:func:`cv_partitions`) the held-out
    observations are masked (``reach_temp``, and for ``"water_year"`` blocking also
    ``seg_temp`` on the held-out days; with ``mask_coarse=True``, the default, also
    ``seg_temp`` of the segments of held-out sub-basins or reaches; the same for a
    ``stage_a_variable`` that ``fit_kwargs`` name), a model is trained with
    every seed, and its prediction is scored on the held-out set: every reach of
    the held-out blocks on every held-out day, against ``reach_temp_true`` where the
    dataset has it (observed or not: what downscaling is for), else against the
    held-out observations.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention with ``reach_temp``. It is not modified.
    method : str
        A method of :func:`xmsgl.fit` or a baseline of
        :data:`xmsgl.baselines.BASELINES` (used by the default trainer).
    folds, repeats : int, default 5, 2
        Folds per repetition and repetitions (new random block-to-fold deals).
        Every repetition is a distinct partition: when the blocks allow fewer
        than ``repeats``, the copies are dropped with an
        :class:`~xmsgl.exceptions.XmsglWarning` (see :func:`cv_partitions`) and
        the result has fewer repetitions.
    seeds : int or sequence of int, default 3
        Seed replicates (a count means ``0 .. seeds - 1``). Each partition trains
        replicate ``s`` with a seed of its own, :func:`training_seed` of ``s``, the
        repetition and the fold (the ``train_seed`` variable of the result), so
        that seed effects are nested in partitions as
        :func:`variance_decomposition` assumes.
    blocking : {"subbasin", "reach", "water_year"}, default "subbasin"
        What is held out together (see :func:`cv_partitions`).
    fit_kwargs : mapping, optional
        Keyword arguments of the fit call of the default trainer (their ``device``
        is also where a network's scored run is made).
    score : str, default "rmse"
        The score :func:`variance_decomposition` reads by default (stored in the
        ``score`` attribute).
    trainer : callable, optional
        ``trainer(train_ds, test_ds, seed)`` replacing the default (``seed`` is
        the cell's :func:`training_seed`)
        (:func:`default_trainer`). ``train_ds`` is ``ds`` with the held-out
        observations masked and without its ``*_true`` variables (the truth at
        held-out cells is the target itself); ``test_ds`` holds ``target`` (reach, time), NaN
        outside the held-out set, and attributes ``repeat``, ``fold``,
        ``blocking``, ``groups`` and ``test_period`` (JSON). It returns a number
        (stored as ``score``), a mapping of named scores, or a prediction
        DataArray, which is scored with :func:`evaluate` (all metrics and ``n``).
    seed : int, default 0
        Seed of the block-to-fold deals.
    use_truth : bool, default True
        Score against ``reach_temp_true`` when present.
    mask_coarse : bool or sequence of str, default True
        With the spatial blockings, also hide the coarse observations (``seg_temp``)
        of the segments the held-out reaches lie in. A site held out is then held
        out at both scales: coarse gauges are often the fine ones (on the Delaware
        data ``seg_temp`` is the mean of the segment's reach observations, the same
        measurements), and a held-out reach whose segment keeps them is scored on
        data its model was fitted on. ``True`` also hides there a
        ``stage_a_variable`` other than ``seg_temp`` that ``fit_kwargs`` name
        (ASYNC-MSGL's longer coarse record, say), as ``"water_year"`` blocking does
        on the held-out days. A list names the (seg, time) variables to hide
        instead: ``["seg_temp"]`` keeps a process model's output given as
        ``stage_a_variable``, which exists at every segment. ``False`` hides none,
        for coarse data that do not come from the fine sites. The result's
        ``mask_coarse_variables`` attribute names those hidden. With
        ``"water_year"`` blocking the coarse targets are hidden on the held-out
        days whatever ``mask_coarse`` says (its names are still checked).

    Returns
    -------
    xarray.Dataset
        Scores on (``repeat``, ``fold``, ``seed``), plus ``train_seed`` on the same
        dimensions, ``n_test_reaches`` and ``n_test_days`` on (``repeat``, ``fold``)
        and the coordinate
        ``held_out_id`` (repeat, fold): equal numbers mark the same held-out
        blocks (and so the same training data), which
        :func:`variance_decomposition` counts once; ``held_out_blocks`` (JSON list
        of the blocks held out) and, for a network fitted by the default trainer,
        ``val_period`` (JSON list of the validation spans) on (``repeat``, ``fold``).
        Attributes ``method``, ``blocking``, ``score``, ``target``,
        ``repeats_dropped`` (repetitions that would have repeated a partition),
        ``mask_coarse`` (1 where the held-out sites' coarse observations were
        hidden), ``seed``, ``use_truth``, ``trainer``, ``fit_kwargs`` (JSON, with the
        default trainer: the settings its fits were given, ``{}`` for none) and
        ``history``.

    Raises
    ------
    DataError
        Fewer blocks than folds, a held-out set without any target value, or a fold
        that leaves the default trainer's fit no fine observation on its training
        days (all before anything is trained).
    ParameterError
        ``fit_kwargs`` that are not a mapping, that set ``seed``, ``method`` or
        ``test``, that hold per-method entries, or that fit refuses (before any fit).

    Warns
    -----
    XmsglWarning
        Fewer distinct partitions than ``repeats``.

    Examples
    --------
    >>> import xmsgl
    >>> from xmsgl.evaluate import cross_validate, variance_decomposition
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=10, start="2000-10-01", end="2003-09-30")
    >>> cv = cross_validate(ds, "climatology", folds=3, repeats=1, seeds=2, blocking="water_year")
    >>> dict(cv.rmse.sizes)
    {'repeat': 1, 'fold': 3, 'seed': 2}
    """
    seed_list = _seeds(seeds)
    check_flag("use_truth", use_truth)
    if trainer is None and score not in (*METRICS, "n"):
        # The default trainer's scores are known now: refuse before any fit runs.
        raise ChoiceError(f"score={score!r} is not among the scores {[*METRICS, 'n']}")
    _check_fit_kwargs(fit_kwargs, "cross_validate", nested=False)
    if trainer is not None and not callable(trainer):
        raise ParameterError(f"trainer={trainer!r} is not callable; give a function trainer(train_ds, "
                             "test_ds, seed) as xmsgl.evaluate.default_trainer(method) returns")
    kwargs = dict(fit_kwargs or {})
    if trainer is None:
        from xmsgl.methods import FIT_METHODS
        from xmsgl.methods import METHODS as NETWORKS
        from xmsgl.model import check_fit_args, check_stage_a_variable

        known = set(FIT_METHODS)
        if method not in known:
            # Refused now: a fold's data check would otherwise fail first and blame the data.
            raise ChoiceError(f"method={method!r} is not known; use one of {sorted(known)} (or "
                                 "give a trainer)")
        nested = [k for k, v in kwargs.items() if k in known and isinstance(v, Mapping)]
        if nested:
            raise ParameterError(
                f"fit_kwargs has entries for methods {nested}: cross_validate fits one method and "
                f"takes its settings flat, e.g. fit_kwargs={dict(kwargs[nested[0]])!r}")
        if method in (*NETWORKS, "gru"):
            # What fit refuses of its arguments is refused before the first fold's fits.
            check_fit_args(method, kwargs)
            if method == "async-msgl" and "stage_a_variable" in kwargs:
                check_stage_a_variable(ds, kwargs["stage_a_variable"])
    parts, target_all, target_name = _cv_plan(ds, folds=folds, repeats=repeats, blocking=blocking,
                                              seed=seed, use_truth=use_truth)
    train_fn = trainer if trainer is not None else default_trainer(method, fit_kwargs)
    target_vals = np.asarray(target_all.values)
    time = pd.DatetimeIndex(ds[TIME].values)
    topo = topology_arrays(ds)
    val_periods = _cv_training_checked(ds, parts, method, kwargs, blocking) if trainer is None else {}
    n_rep = parts[-1].repeat + 1
    rows: dict[tuple[int, ...], dict[str, float]] = {}
    n_reaches = np.zeros((n_rep, folds), dtype=np.int64)
    n_days = np.zeros((n_rep, folds), dtype=np.int64)
    held_id = np.zeros((n_rep, folds), dtype=np.int64)
    train_seeds = np.zeros((n_rep, folds, len(seed_list)), dtype=np.int64)
    ids: dict[frozenset[int], int] = {}
    coarse_vars = _coarse_targets(ds, fit_kwargs)
    # Checked with every blocking; "water_year" hides the coarse targets on the held-out
    # days whatever it says.
    checked = _masked_coarse(ds, fit_kwargs, mask_coarse)
    hidden_vars = [] if blocking == "water_year" else checked
    had_values = {n for n in hidden_vars if bool(ds[n].notnull().any())}
    said: set[tuple[type, str]] = set()
    with _cells_bar(len(parts) * len(seed_list), f"cross-validation {method}") as bar:
        for h in parts:
            held_id[h.repeat, h.fold] = ids.setdefault(frozenset(h.groups), len(ids))
            cells = h.reaches[:, None] & h.days[None, :]
            train_ds = _mask_obs(_without_truth(ds), "reach_temp", REACH, cells)
            if blocking == "water_year":
                for name in coarse_vars:
                    train_ds = _mask_obs(train_ds, name, SEG,
                                         np.ones(topo.n_seg, dtype=bool)[:, None] & h.days[None, :])
            elif hidden_vars:
                segs = np.zeros(topo.n_seg, dtype=bool)
                segs[topo.reach_seg_idx[h.reaches]] = True
                for name in hidden_vars:
                    train_ds = _mask_obs(train_ds, name, SEG, segs[:, None] & h.days[None, :])
            tvals = np.where(cells, target_vals, np.nan)
            test_ds = xr.Dataset(
                {"target": target_all.copy(data=tvals)},
                attrs={"repeat": h.repeat, "fold": h.fold, "blocking": blocking,
                       "groups": json.dumps(h.groups),
                       "test_period": json.dumps(mask_spans(time, h.days)) if blocking == "water_year" else ""},
            )
            n_reaches[h.repeat, h.fold] = int(h.reaches.sum())
            n_days[h.repeat, h.fold] = int(h.days.sum())
            for k, s in enumerate(seed_list):
                train_seeds[h.repeat, h.fold, k] = cell_seed = training_seed(s, h.repeat, h.fold)
                try:
                    with _CellWarnings.fold(h, said):
                        pred = train_fn(train_ds, test_ds, cell_seed)
                except DataError as err:
                    # Where mask_coarse hid every value a coarse variable had, a method that
                    # needs them fails: say why.
                    emptied = [n for n in hidden_vars
                               if n in had_values and not bool(train_ds[n].notnull().any())]
                    if not emptied:
                        raise
                    what = ("every coarse observation" if emptied == ["seg_temp"]
                            else f"every value of {emptied}")
                    raise type(err)(
                        f"{err} (fold {h.fold} of repetition {h.repeat}: mask_coarse={mask_coarse!r} "
                        f"hid {what}, since all of them lie in the segments of its held-out reaches; "
                        "pass mask_coarse=False (xmsgl evaluate --keep-coarse) where the coarse data "
                        "are not taken at the fine sites, or the names of the variables to hide "
                        "(mask_coarse=['seg_temp'] keeps a process model's output), or use a method "
                        "that does without them)") from err
                rows[(h.repeat, h.fold, k)] = _score(pred, test_ds, score)
                bar.update()
    out = _results_dataset(rows, {"repeat": list(range(n_rep)), "fold": list(range(folds)),
                                  "seed": seed_list})
    if score not in out.data_vars:
        raise ChoiceError(f"score={score!r} is not among the trainer's scores {sorted(str(v) for v in out.data_vars)}")
    out["train_seed"] = (("repeat", "fold", "seed"), train_seeds, {
        "long_name": "seed the model was trained with (training_seed of seed, repeat and fold)"})
    out["n_test_reaches"] = (("repeat", "fold"), n_reaches, {
        "long_name": "reaches held out", "units": "1"})
    out["n_test_days"] = (("repeat", "fold"), n_days, {
        "long_name": "days held out", "units": "1"})
    out = out.assign_coords(held_out_id=(("repeat", "fold"), held_id, {
        "long_name": "number of the held-out set; equal numbers hold out the same blocks"}))
    groups = np.empty((n_rep, folds), dtype=object)
    for h in parts:
        groups[h.repeat, h.fold] = json.dumps([int(g) for g in h.groups])
    out["held_out_blocks"] = (("repeat", "fold"), groups.astype(str), {
        "long_name": f"blocks held out (JSON list; {blocking} numbers of cv_partitions)"})
    if val_periods:
        vals = np.empty((n_rep, folds), dtype=object)
        for (r, f), v in val_periods.items():
            vals[r, f] = json.dumps(v)
        out["val_period"] = (("repeat", "fold"), vals.astype(str), {
            "long_name": "validation period of the fits (JSON list of [start, end]; [] for none)"})
    out.attrs.update({
        "method": method, "blocking": blocking, "score": score, "target": target_name,
        "repeats_dropped": int(repeats) - n_rep,
        # Whether the held-out sites' coarse observations were hidden (0/1: netCDF has no
        # bool), and which variables.
        "mask_coarse": int(bool(hidden_vars) or blocking == "water_year"),
        "mask_coarse_variables": ", ".join(coarse_vars if blocking == "water_year" else hidden_vars),
        "seed": int(seed), "use_truth": int(bool(use_truth)),
        "trainer": "default" if trainer is None else getattr(trainer, "__qualname__", repr(trainer)),
        "history": _history(f"cross_validate(method={method!r}, folds={folds}, repeats={repeats}, "
                            f"seeds={seed_list}, blocking={blocking!r}, seed={seed}, "
                            f"mask_coarse={mask_coarse!r})"),
    })
    if trainer is None:
        # What the default trainer's fits were given ("{}": fit's defaults).
        out.attrs["fit_kwargs"] = json.dumps(kwargs, default=repr)
    return out


def _anova(y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Nested one-way random-effects ANOVA on (..., partitions, seeds)."""
    p, k = y.shape[-2], y.shape[-1]
    part_mean = y.mean(axis=-1)
    grand = part_mean.mean(axis=-1)
    msb = k * ((part_mean - grand[..., None]) ** 2).sum(axis=-1) / (p - 1)
    if k > 1:
        msw = ((y - part_mean[..., None]) ** 2).sum(axis=(-2, -1)) / (p * (k - 1))
        s2_part = np.maximum(0.0, (msb - msw) / k)
    else:
        # One seed per partition: the seed variance cannot be told apart from the
        # partition's, so all of the spread is given to the partition.
        msw = np.full_like(msb, np.nan)
        s2_part = msb
    s2_seed = msw
    total = s2_part + s2_seed
    with np.errstate(invalid="ignore", divide="ignore"):
        icc = np.where(total > 0, s2_part / np.where(total > 0, total, 1.0), np.nan)
    return grand, s2_part, s2_seed, icc, msb, msw


#: ``seed_component`` attribute of :func:`variance_decomposition`, by case.
_SEED_COMPONENT = {
    "estimated": "estimated",
    "constant": "not applicable: the scores do not change with the seed (a method that ignores it, "
                "such as the baselines), so sigma2_seed is 0 by construction and icc is NaN: the "
                "split carries no information; sigma2_partition is the variance of the partition scores",
    "one seed": "not estimated: one seed per partition, so sigma2_seed, msw and icc are NaN and "
                "sigma2_partition is the variance of the partition scores, which holds any seed "
                "variance too (none for a method that ignores the seed, such as the baselines)",
}


#: What each result of :func:`variance_decomposition` is (``{}``: the score's name).
_VD_LONG_NAMES = {
    "mean": "mean of {} over partitions and seeds",
    "sigma2_partition": "variance of {} between partitions (held-out sets)",
    "sigma2_seed": "variance of {} between seeds within a partition",
    "icc": "share of the variance of {} between partitions (intraclass correlation)",
    "msb": "mean square of {} between partitions",
    "msw": "mean square of {} within partitions (between seeds)",
}


def _label(value: Any) -> str:
    """A coordinate label as a message names it: numbers as they are, text quoted."""
    value = value.item() if isinstance(value, np.generic) else value
    return repr(value) if isinstance(value, str) else str(value)


@typed_arguments
def variance_decomposition(
    scores: xr.Dataset | xr.DataArray,
    variable: str | None = None,
    *,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
) -> xr.Dataset:
    """Split the variance of a test score into a data-partition and a seed part.

    The scores ``y[p, k]`` of partitions ``p = (repeat, fold)`` (``P`` of them) and
    seeds ``k`` (``K`` per partition) follow the nested random-effects model
    ``y = mu + a_p + e_pk`` with ``var(a) = sigma2_partition`` and
    ``var(e) = sigma2_seed``. With ``MSW = sum (y_pk - ybar_p)^2 / (P (K - 1))``
    and ``MSB = K sum (ybar_p - ybar)^2 / (P - 1)``:
    ``sigma2_seed = MSW`` and ``sigma2_partition = max(0, (MSB - MSW) / K)``;
    ``icc = sigma2_partition / (sigma2_partition + sigma2_seed)``.

    Only distinct partitions count: when the scores carry the coordinate
    ``held_out_id`` (as :func:`cross_validate`'s do), a (repeat, fold) that holds
    out the same blocks as an earlier one (the same training and test data again,
    not a new draw) is left out, so copies do not narrow the intervals.

    Methods that ignore the seed (the baselines) have no seed component: with
    one seed (``K = 1``) ``sigma2_seed``, ``msw`` and ``icc`` are NaN and
    ``sigma2_partition`` is the variance of the partition scores (which would also
    hold any seed variance of a method that has one); with several seeds whose
    scores never differ, ``sigma2_seed`` is 0 and ``icc`` is NaN rather than a
    meaningless 1. The attribute ``seed_component`` says which case applies.

    Intervals are percentile bootstrap intervals over partitions: ``n_boot`` times,
    ``P`` partitions are drawn with replacement (each with all its seeds) and the
    estimates recomputed. The partitions are taken in (repeat, fold) order whatever
    the order of the dimensions, so the same scores give the same intervals. With few
    partitions the intervals are too narrow (with ``P = 2`` a variance's upper bound
    is its estimate; in a simulation from the model, nominal 95% intervals covered the
    partition variance in 68-80% of draws with 6-10 partitions,
    ``docs/scripts/vd_simulation.py``): read them as a rough
    guide, narrower than they should be.

    Caveat: folds of one repetition share most of their training data and the
    repetitions reuse the same observations, so partition effects are not
    independent draws; the estimates and intervals are approximate, in a direction
    that is not known. The seeds are read as nested in the partitions, as
    :func:`cross_validate` trains them (:func:`training_seed`).

    Parameters
    ----------
    scores : xarray.Dataset or xarray.DataArray
        The output of :func:`cross_validate` (or one of its variables), or any
        array on (repeat, fold, seed) (or (partition, seed)).
    variable : str, optional
        The score to decompose; default the ``score`` attribute (``"rmse"``).
    n_boot : int, default 1000
        Bootstrap resamples (a positive integer, at most 1,000,000).
    ci : float, default 0.95
        Coverage of the intervals, strictly between 0 and 1.
    seed : int, default 0
        Seed of the bootstrap.

    Returns
    -------
    xarray.Dataset
        Variables ``mean``, ``sigma2_partition``, ``sigma2_seed``, ``icc``, ``msb``
        and ``msw`` on dimension ``stat`` = ``["estimate", "low", "high"]``;
        attributes ``n_partitions`` (distinct ones), ``n_duplicates_dropped``,
        ``n_seeds``, ``seed_component``, ``sigma2_partition_unclipped`` (``(MSB -
        MSW) / K`` before it is set to 0 where negative: with few partitions that
        happens often, and the clipped estimate is then biased upwards; NaN with one
        seed) and the caveat.

    Raises
    ------
    DataError
        Fewer than two distinct partitions (scores on ``seed`` alone included), no
        seed, or a missing (NaN) score.
    ParameterError
        ``n_boot`` not a positive integer, ``ci`` not strictly between 0 and 1.

    Notes
    -----
    Read the overall mean as ``vd["mean"]``: ``vd.mean`` is the Dataset method.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> y = 2 + rng.normal(0, 1.0, (200, 1)) + rng.normal(0, 0.5, (200, 4))
    >>> vd = variance_decomposition(xr.DataArray(y, dims=("partition", "seed")), n_boot=200)
    >>> 0.2 < float(vd.sigma2_seed.sel(stat="estimate")) < 0.3
    True
    >>> same = xr.DataArray(np.repeat(y[:, :1], 3, axis=1), dims=("partition", "seed"))
    >>> vd = variance_decomposition(same, n_boot=200)  # a method that ignores the seed
    >>> float(vd.sigma2_seed.sel(stat="estimate")), bool(np.isnan(vd.icc).all())
    (0.0, True)
    """
    check_count("n_boot", n_boot)
    if int(n_boot) > 1_000_000:
        raise ParameterError(f"n_boot={n_boot} is more than 1,000,000 bootstrap draws; 1,000-10,000 "
                             "give stable intervals")
    if not isinstance(scores, (xr.Dataset, xr.DataArray)):
        raise ParameterError(f"scores must be the xarray Dataset of cross_validate (or a DataArray on "
                             f"'seed' and 'partition'/'repeat', 'fold'), got {type(scores).__name__}")
    if isinstance(ci, bool) or not isinstance(ci, (float, int, np.floating, np.integer)) \
            or not 0.0 < float(ci) < 1.0:
        raise ParameterError(f"ci={ci!r} must be the coverage of the intervals, strictly between 0 and "
                             "1 (e.g. 0.95)")
    check_count("seed", seed, least=0)
    ci = float(ci)
    if isinstance(scores, xr.Dataset):
        name = variable or str(scores.attrs.get("score", "rmse"))
        if name not in scores.data_vars:
            raise SchemaError(f"variable {name!r} is not in the scores {sorted(str(v) for v in scores.data_vars)}")
        da = scores[name]
    else:
        da = scores
        name = str(da.name) if da.name is not None else "score"
    if "seed" not in da.dims:
        raise SchemaError(f"the scores need a 'seed' dimension; they have {tuple(map(str, da.dims))}")
    # In a fixed order: the bootstrap draws partitions by position, so scores on
    # (seed, fold, repeat) must stack as those on (repeat, fold, seed) do.
    part_dims = sorted((d for d in da.dims if d != "seed"),
                       key=lambda d: ("repeat", "fold", "partition").index(d)
                       if d in ("repeat", "fold", "partition") else 3)
    other = [str(d) for d in part_dims if d not in ("repeat", "fold", "partition")]
    if other:
        # A sparsity sweep's (method, keep) cells are fixed settings, not random
        # partitions of the data: their spread is not a partition variance.
        raise SchemaError(
            f"the scores {name!r} are on {tuple(map(str, da.dims))}; the decomposition reads "
            f"partitions on ('repeat', 'fold') or 'partition', and seeds on 'seed': select one "
            f"value of {other} first (e.g. scores.sel({other[0]}=...)), or pass cross_validate's "
            "result")
    if "partition" in part_dims and len(part_dims) > 1:
        raise SchemaError(
            f"the scores {name!r} are on {tuple(map(str, da.dims))}: partitions are given either on "
            "('repeat', 'fold') or on 'partition', not both; stack them into one 'partition' "
            "dimension first, or pass cross_validate's result")
    if da.dtype.kind not in "iuf":
        raise SchemaError(f"the scores {name!r} hold {da.dtype} values, not numbers; pass the "
                          "scores themselves (e.g. cross_validate(...)['rmse'])")
    if not part_dims:
        raise DataError(f"the decomposition needs at least 2 partitions, got scores {name!r} on 'seed' "
                        "alone (no partition dimension); pass scores on (repeat, fold, seed) or "
                        "(partition, seed), not one selected fold")
    empty = [d for d in (*part_dims, "seed") if da.sizes[d] == 0]
    if empty:
        raise DataError(f"the decomposition needs at least 2 partitions and 1 seed; dimension(s) "
                        f"{empty} of the scores are empty; raise folds/repeats or seeds")
    stacked = da.stack(partition=part_dims) if len(part_dims) > 1 else da.rename({part_dims[0]: "partition"})
    y = np.asarray(stacked.transpose("partition", "seed").values, dtype=np.float64)
    n_dup = 0
    rows = np.arange(y.shape[0])  # each row's partition in ``stacked``, to name it
    if "held_out_id" in stacked.coords and stacked["held_out_id"].dims == ("partition",):
        _, first = np.unique(np.asarray(stacked["held_out_id"].values), return_index=True)
        n_dup = y.shape[0] - first.size
        rows = np.sort(first)
        y = y[rows]
    p, k = y.shape
    if p < 2 or k < 1:
        dropped = (f" distinct ones ({n_dup} repeated held-out set{'s' if n_dup > 1 else ''} left out)"
                   if n_dup else "")
        raise DataError(f"the decomposition needs at least 2 partitions and 1 seed, got {p}{dropped} and "
                        f"{k}; raise folds/repeats or seeds")
    if not np.isfinite(y).all():
        cells = np.argwhere(~np.isfinite(y))
        labels = stacked["partition"].values
        seeds = stacked["seed"].values

        def cell(i: int, j: int) -> str:
            # By the scores' own labels (repeat and fold, or partition), not positions.
            at = labels[rows[i]]
            parts = (zip(part_dims, at) if len(part_dims) > 1 else [(part_dims[0], at)])
            return "(" + ", ".join(f"{d}={_label(v)}" for d, v in (*parts, ("seed", seeds[j]))) + ")"

        shown = ", ".join(cell(int(i), int(j)) for i, j in cells[:3])
        more = f" and {len(cells) - 3} more" if len(cells) > 3 else ""
        what = "NaN" if np.isnan(y).any() else "infinite values"
        if np.isnan(y).any() and np.isinf(y).any():
            what = "NaN and infinite values"
        raise DataError(f"scores {name!r} hold {what} at {shown}{more}; the design must be "
                        "complete and finite: rerun the failed (or diverged) fits or drop those "
                        "partitions")
    est = _anova(y)
    # Compared on the scores themselves: their means can differ from them in the last bit.
    case = "one seed" if k == 1 else "constant" if (y == y[:, :1]).all() else "estimated"
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, p, size=(int(n_boot), p))
    boot = _anova(y[idx])
    lo_q, hi_q = (1 - ci) / 2, 1 - (1 - ci) / 2
    bounds = [(np.nanquantile(b, lo_q), np.nanquantile(b, hi_q)) if np.isfinite(b).any()
              else (np.nan, np.nan) for b in boot]
    names = ("mean", "sigma2_partition", "sigma2_seed", "icc", "msb", "msw")
    units = str(da.attrs.get("units") or UNITS.get(name, "1"))
    sq = f"({units})2" if units != "1" else "1"
    unit_of = {"mean": units, "sigma2_partition": sq, "sigma2_seed": sq, "icc": "1", "msb": sq, "msw": sq}
    out = xr.Dataset(coords={"stat": ["estimate", "low", "high"]})
    for n_, e, (lo, hi) in zip(names, est, bounds):
        row = np.array([float(e), float(lo), float(hi)])
        if n_ == "icc" and case != "estimated":
            row[:] = np.nan  # no seed component to compare the partition's with
        elif n_ in ("sigma2_seed", "msw") and case == "constant":
            row[:] = 0.0
        out[n_] = ("stat", row, {"units": unit_of[n_], "long_name": _VD_LONG_NAMES[n_].format(name)})
    # Seeds that all agree have no within-partition spread: MSW is 0 (to rounding).
    unclipped = (float((est[4] - est[5]) / k) if case == "estimated" else
                 float(est[4] / k) if case == "constant" else float("nan"))
    out.attrs.update({
        "score": name, "n_partitions": p, "n_duplicates_dropped": n_dup, "n_seeds": k,
        "sigma2_partition_unclipped": unclipped,
        "n_boot": int(n_boot), "ci": ci, "seed_component": _SEED_COMPONENT[case],
        "caveat": "folds of one repetition share training data, so partition effects are not "
                  "independent; estimates and intervals are approximate",
        "history": _history(f"variance_decomposition(variable={name!r}, n_boot={n_boot}, ci={ci})"),
    })
    return out


# ----------------------------------------------------------------------------- sparsity


@typed_arguments
def sparsity_sweep(
    ds: xr.Dataset,
    methods: str | Sequence[str],
    keep: Sequence[float] = (1.0, 0.2, 0.05, 0.01, 0.005),
    seeds: int | Sequence[int] = (0, 1, 2),
    by: str = "observation",
    fit_kwargs: Mapping[str, Any] | Mapping[str, Mapping[str, Any]] | None = None,
    trainer: Trainer | Mapping[str, Trainer] | None = None,
    *,
    test: Any = None,
    use_truth: bool = True,
) -> xr.Dataset:
    """Fit methods on thinned training observations and score them on the test period.

    For each share ``keep`` and seed ``s`` the fine observations of the training
    days are thinned with :func:`xmsgl.sampling.sparsify` (``keep``, ``seed=s``,
    ``by``); the test period's observations (fine and coarse) are masked; each
    method is trained with seed ``s`` and scored at every reach on the test days
    against ``reach_temp_true`` when present, else the test period's observations.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention with ``reach_temp``. It is not modified.
    methods : str or sequence of str
        Methods of :func:`xmsgl.fit` and/or baselines (a single name is one
        method); each at most once.
    keep : float or sequence of float, default (1.0, 0.2, 0.05, 0.01, 0.005)
        Shares of the observations (or observed reaches) kept, in [0, 1] (a single
        number is one share); each at most once.
    seeds : int or sequence of int, default (0, 1, 2)
        Seeds of both the thinning and the training; an int is a count, seeds
        ``0 .. seeds - 1`` (``seeds=[2]`` for seed 2 alone).
    by : {"observation", "reach"}, default "observation"
        Thin reach-days, or whole reaches.
    fit_kwargs : mapping, optional
        Fit keyword arguments: ``{method: {...}}`` entries for one method, every other
        key for every method that reads it (a method's own entry wins over them), e.g.
        ``{"epochs": 20, "msgl": {"weighting": "equal"}}`` (``epochs`` goes to the
        networks, not to a baseline). ``window`` (the networks' training window, the
        baselines' climatology window) given to every method of a mix of both is
        refused, and so are a key no method reads, a method's own key that it does not
        read and an entry for a method not in ``methods``, all before the first fit.
        A ``device`` is also where the networks' scored runs are made. The fits'
        :class:`~xmsgl.FewObservationsWarning` is not shown: thinning is what the
        sweep measures (``n_train_obs`` counts each cell's observations).
    trainer : callable or mapping, optional
        A trainer (see :func:`cross_validate`) for every method or per method. Its
        ``train_ds`` holds the thinned observations and no ``*_true`` variables.
    test : (start, end) or list, optional
        Test days; default the last water years, as in :func:`xmsgl.fit` (then the
        default trainer lets ``fit`` pick the same split itself, unless ``fit_kwargs``
        name ``train`` or ``val``: the test days are then passed as ``test=``).
    use_truth : bool, default True
        Score against ``reach_temp_true`` when present.

    Returns
    -------
    xarray.Dataset
        ``rmse``, ``mae``, ``bias``, ``nse``, ``kge`` and ``n`` on (``method``,
        ``keep``, ``seed``), with ``n_train_obs`` (keep, seed): the fine
        observations left outside the test period (the networks' training and
        validation days; the baselines train on both). Attribute ``fit_kwargs``
        (JSON, when a method is fitted by the default trainer): what each such
        method was given, ``{}`` for fit's defaults.

    Raises
    ------
    ParameterError
        Methods or shares that are not names or numbers in [0, 1], repeated ones,
        bad seeds, unknown methods, ``fit_kwargs`` that set ``seed``, ``method`` or
        ``test`` or that a network's fit refuses; all before the first fit.
    DataError
        A share and seed that leave a network no fine observation on its training
        days (before the first fit), or a test period without a target value.

    Notes
    -----
    Only ``reach_temp`` is thinned. Where the coarse observations come from the same
    gauges (the Delaware files' ``seg_temp`` is the mean of its segment's reach
    observations), a gauge thinned out still informs the fits through ``seg_temp``.

    Examples
    --------
    >>> import xmsgl
    >>> from xmsgl.evaluate import sparsity_sweep
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=10, start="2000-10-01", end="2003-09-30")
    >>> sw = sparsity_sweep(ds, ["climatology", "idw"], keep=[1.0, 0.1], seeds=[0, 1])
    >>> dict(sw.rmse.sizes)
    {'method': 2, 'keep': 2, 'seed': 2}
    """
    from xmsgl.sampling import sparsify

    check_flag("use_truth", use_truth)
    method_list = _unique_list("methods", methods, str, "method names such as 'idw'")
    keep_list = [float(k) for k in _unique_list("keep", keep, _NUMBER, "shares in [0, 1]")]
    bad = [k for k in keep_list if not 0.0 <= k <= 1.0]
    if bad:
        raise ParameterError(f"keep={keep!r} holds {format_ids(bad)}; shares kept must be in [0, 1]")
    seed_list = _seeds(seeds)
    time = pd.DatetimeIndex(ds[TIME].values)
    test_days = _sweep_test_days(time, test)
    said_short = test is None and _warn_short_sweep(time, test_days)
    # The scored days always go to the trainer: a fit given val= or train= with no
    # test= would train on every other day, the scored ones included (ASYNC-MSGL's
    # stage A read a longer coarse record there).
    test_attr = json.dumps(mask_spans(time, test_days))
    if not test_days.any():
        raise DataError(f"the test period {test!r} holds no day of the dataset")
    if test_days.all():
        raise DataError(
            f"test={test!r} covers every day of the dataset ({time[0].date()} to "
            f"{time[-1].date()}), which leaves none to train on; give test=(start, end) covering "
            "part of the record")
    train_ranges = mask_spans(time, ~test_days)
    target_all, target_name = _target(ds, use_truth)
    tvals = np.where(test_days[None, :], np.asarray(target_all.values), np.nan)
    if not np.isfinite(tvals).any():
        period = spans_text(mask_spans(time, test_days)).replace("/", " to ")
        seen = np.isfinite(np.asarray(target_all.values)).any(axis=0)
        where = (f"{target_name!r} has values from {time[seen][0].date()} to {time[seen][-1].date()}"
                 if seen.any() else f"the dataset holds no {target_name!r} value at all")
        raise DataError(f"the test period ({period}) holds no {target_name!r} value; nothing to "
                        f"score: give test=(start, end) on days with observations ({where})")
    test_ds = xr.Dataset({"target": target_all.copy(data=tvals)},
                         attrs={"test_period": test_attr, "blocking": "time",
                                "default_split": int(test is None)})
    topo = topology_arrays(ds)

    def per_method(obj: Any, m: str) -> Any:
        if isinstance(obj, Mapping) and m in obj and (
                isinstance(obj[m], Mapping) or callable(obj[m])):
            return obj[m]
        if isinstance(obj, Mapping) and any(k in method_list for k in obj):
            return None
        return obj

    from xmsgl.baselines import BASELINES, baseline_settings
    from xmsgl.methods import FIT_METHODS
    from xmsgl.methods import METHODS as NETWORKS
    from xmsgl.model import _METHOD_ONLY_ARGS, check_fit_args, check_stage_a_variable, method_reads

    _check_fit_kwargs(fit_kwargs, "sparsity_sweep", nested=True)
    _check_trainer(trainer, method_list)
    known = set(FIT_METHODS)
    unknown = [m for m in method_list if m not in known and not callable(
        per_method(trainer, m) if trainer is not None else None)]
    if unknown:
        raise ChoiceError(f"methods {unknown} are not known; use {sorted(known)} (or give a "
                             "trainer for them)")

    # fit_kwargs: keys naming a method (with a mapping) are that method's; the others go
    # to every method, under its own (they used to be dropped as soon as one method key
    # was given, so that method ran with its defaults).
    own: dict[str, Mapping[str, Any]] = {}
    common: dict[str, Any] = {}
    if isinstance(fit_kwargs, Mapping):
        names = set(FIT_METHODS)
        own = {str(k): v for k, v in fit_kwargs.items() if k in names and isinstance(v, Mapping)}
        common = {str(k): v for k, v in fit_kwargs.items() if str(k) not in own}
        stray = sorted(k for k in own if k not in method_list)
        if stray:
            raise ParameterError(f"fit_kwargs has settings for {stray}, which are not among the "
                                 f"methods {method_list}; add them to methods or leave them out")

    def reads(m: str, name: str) -> bool:
        return name in baseline_settings(m) if m in BASELINES else method_reads(m, name)

    # A setting for every method goes to those that read it (epochs to the networks,
    # not to a climatology); one that no method reads, or a method's own setting it
    # does not read, is refused here, before the first fit.
    unread = sorted(k for k in common if not any(reads(m, k) for m in method_list))
    if unread:
        raise ParameterError(f"fit_kwargs settings {unread} are read by none of the methods "
                             f"{method_list}; drop them")
    for m, settings in own.items():
        wrong = sorted(str(k) for k in settings if not reads(m, str(k)))
        if wrong:
            if m in BASELINES:
                takes = f"it takes {list(baseline_settings(m)[2:])}"
            else:
                takes = "; ".join(f"{k} is read by {list(_METHOD_ONLY_ARGS[k])}" for k in wrong
                                  if k in _METHOD_ONLY_ARGS) or "it takes the keyword arguments of xmsgl.fit"
            raise ParameterError(f"fit_kwargs[{m!r}] has settings {wrong} that method {m!r} does "
                                 f"not read ({takes})")

    def kwargs_for(m: str) -> dict[str, Any]:
        if not isinstance(fit_kwargs, Mapping):
            return {}  # None: _check_fit_kwargs refused anything else
        return {**{k: v for k, v in common.items() if reads(m, k)}, **own.get(m, {})}

    shared = "window" in common
    kinds = {m in BASELINES for m in method_list}
    if shared and len(kinds) == 2:
        raise ParameterError(
            f"fit_kwargs={fit_kwargs!r} is given to every method, and window means the training "
            f"window of the networks but the climatology window of the baselines "
            f"{[m for m in method_list if m in BASELINES]}; give it per method, e.g. "
            f"fit_kwargs={{'msgl': {{'window': ...}}}}")
    trainers: dict[str, Trainer] = {}
    defaults: list[str] = []
    for m in method_list:
        t = per_method(trainer, m) if trainer is not None else None
        trainers[m] = t if callable(t) else default_trainer(m, kwargs_for(m))
        if not callable(t):
            defaults.append(m)
            if m in (*NETWORKS, "gru"):
                # What fit refuses of its arguments (a setting the method does not
                # read, epochs=0, an unknown stage A task) is refused before the
                # first fit, not after the other methods' fits.
                check_fit_args(m, kwargs_for(m))
                if m == "async-msgl" and "stage_a_variable" in kwargs_for(m):
                    check_stage_a_variable(ds, kwargs_for(m)["stage_a_variable"])

    def thinned(k: float, s: int) -> xr.Dataset:
        thin = sparsify(_without_truth(ds), keep=k, seed=s, by=by, period=train_ranges)
        hide = np.ones(topo.n_reach, dtype=bool)[:, None] & test_days[None, :]
        thin = _mask_obs(thin, "reach_temp", REACH, hide)
        return _mask_obs(thin, "seg_temp", SEG,
                         np.ones(topo.n_seg, dtype=bool)[:, None] & test_days[None, :])

    # Every (keep, seed) must leave the methods fitted by the default trainer a fine
    # observation on the days they train on, checked before the first fit: a small
    # share may keep only validation days, and a sweep that failed there lost the
    # fits before it.
    needy = [m for m in defaults if m not in BASELINES and m != "remap"]
    if needy:
        train_days = {}
        for m in needy:
            try:
                train_days[m] = _training_days(m, kwargs_for(m), time, test_ds.attrs)[0]
            except TimeError as err:
                raise TimeError(
                    f"{err} (fit_kwargs for {m!r}: the sweep scores "
                    f"{spans_text(mask_spans(time, test_days))}, its test= or by default the last "
                    "water years, which a fit's train= or val= must leave out)") from err
        for k in keep_list:
            for s in seed_list:
                observed = np.isfinite(thinned(k, s)["reach_temp"].transpose(REACH, TIME).values)
                left = {m: int(observed[:, d].sum()) for m, d in train_days.items()}
                short = [m for m, n in left.items() if n == 0]
                if short:
                    raise DataError(
                        f"keep={k:g}, seed={s} leaves no fine observation ('reach_temp') on the "
                        f"days {short} train on ({int(observed.sum())} kept outside the test "
                        "period, on validation days only or none); raise the smallest share of "
                        "keep or drop it, before any fit has run")

    rows: dict[tuple[int, ...], dict[str, float]] = {}
    n_obs = np.zeros((len(keep_list), len(seed_list)), dtype=np.int64)
    said: set[tuple[type, str]] = set()  # each warning's text once per sweep, not per cell
    with _cells_bar(len(keep_list) * len(seed_list) * len(method_list), "sparsity sweep") as bar:
        for i, k in enumerate(keep_list):
            for j, s in enumerate(seed_list):
                thin = thinned(k, s)
                n_obs[i, j] = int(thin["reach_temp"].notnull().sum())
                for mi, m in enumerate(method_list):
                    with warnings.catch_warnings():
                        if said_short:
                            # Said once above: the fits would say it again, each of them.
                            warnings.simplefilter("ignore", ShortRecordWarning)
                        # Thinning is what the sweep measures (n_train_obs counts each cell).
                        warnings.simplefilter("ignore", FewObservationsWarning)
                        with _CellWarnings(f" ({m}, keep={k:g}, seed={s}; said once per sweep)", said):
                            rows[(mi, i, j)] = _score(trainers[m](thin, test_ds, s), test_ds)
                    bar.update()
    out = _results_dataset(rows, {"method": method_list, "keep": keep_list, "seed": seed_list})
    out["n_train_obs"] = (("keep", "seed"), n_obs, {
        "long_name": "fine training observations kept", "units": "1"})
    if defaults:
        # What each method fitted by the default trainer was given, where a shared
        # setting went to some of them only (a trainer of one's own reads none; {}
        # is fit's defaults).
        out.attrs["fit_kwargs"] = json.dumps({m: kwargs_for(m) for m in defaults}, default=repr)
    out.attrs.update({
        "by": by, "target": target_name, "test_period": json.dumps(mask_spans(time, test_days)),
        "history": _history(f"sparsity_sweep(methods={method_list!r}, keep={keep_list!r}, "
                            f"seeds={seed_list!r}, by={by!r})"),
    })
    return out


_NUMBER = (int, float, np.integer, np.floating)


def _unique_list(name: str, value: Any, kind: Any, what: str) -> list[Any]:
    """``value`` as a list of distinct items of ``kind`` (a single item is a one-item list)."""
    if isinstance(value, kind) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ParameterError(f"{name}={value!r} must be one of, or a list of, {what}")
    else:
        items = list(value)
    if not items:
        raise ParameterError(f"{name} is empty; give at least one of {what}")
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, kind)]
    if bad:
        raise ParameterError(f"{name}={value!r} holds {format_ids(bad)}; give {what}")
    seen = [v for i, v in enumerate(items) if v in items[:i]]
    if seen:
        raise ParameterError(f"{name}={value!r} repeats {format_ids(seen)}; give each once")
    return items


def plot_sparsity(result: xr.Dataset, ax: Any = None, metric: str = "rmse") -> Figure:
    """Plot a score against the share of observations kept (log x; symlog when a share is
    0, so that its point is drawn), the mean over seeds with a band of +- the seeds'
    sample standard deviation (``ddof=1``; no band with one seed).

    Parameters
    ----------
    result : xarray.Dataset
        The output of :func:`sparsity_sweep`.
    ax : matplotlib.axes.Axes, optional
        Where to draw; default a new figure.
    metric : str, default "rmse"
        The variable to plot.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ParameterError
        ``result`` is no Dataset, or ``ax`` is neither None nor matplotlib Axes.
    SchemaError
        ``metric`` is no variable of ``result``, or ``result`` is not on (method,
        keep, seed).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from xmsgl.evaluate import plot_sparsity
    >>> res = xr.Dataset({"rmse": (("method", "keep", "seed"), np.ones((1, 2, 2)), {"units": "degC"})},
    ...                  coords={"method": ["idw"], "keep": [1.0, 0.1], "seed": [0, 1]})
    >>> fig = plot_sparsity(res)
    >>> fig.axes[0].get_xscale()
    'log'
    """
    import matplotlib.pyplot as plt

    if not isinstance(result, xr.Dataset):
        raise ParameterError(f"result must be the Dataset of sparsity_sweep(), got {type(result).__name__}")
    check_axes(ax)
    if not isinstance(metric, str) or metric not in result.data_vars:
        known = sorted(str(v) for v in result.data_vars)
        hint = did_you_mean([metric], known) if isinstance(metric, str) else ""
        raise SchemaError(f"metric={metric!r} is not a variable of the sweep result{hint}; use one of "
                          f"{known}")
    need = {"method", "keep", "seed"}
    if not need <= set(result[metric].dims) or not need <= set(result.coords):
        raise SchemaError(
            f"plot_sparsity needs the result of sparsity_sweep(), on (method, keep, seed); "
            f"{metric!r} is on {tuple(map(str, result[metric].dims))} (a cross_validate() result goes to "
            "variance_decomposition instead)"
        )
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
    else:
        fig = ax.figure
    da = result[metric]
    keep = np.asarray(result["keep"].values, dtype=float)
    order = np.argsort(keep)
    for m in result["method"].values:
        vals = da.sel({"method": m})  # not sel(method=...): that is the matching mode
        mean = np.asarray(vals.mean("seed").values)[order]
        # The seeds' sample standard deviation: with 2-3 seeds the population one
        # (ddof=0) would draw the band a fifth to a third too narrow.
        std = (np.asarray(vals.std("seed", ddof=1).values)[order] if vals.sizes["seed"] > 1
               else np.zeros(order.size))
        line, = ax.plot(keep[order], mean, marker="o", label=str(m))
        ax.fill_between(keep[order], mean - std, mean + std, color=line.get_color(), alpha=0.2)
    positive = keep[keep > 0]
    if positive.size < keep.size:
        # A share of 0 (no fine observation) has no place on a log axis: linear up to
        # the smallest other share, so that its point is drawn too.
        ax.set_xscale("symlog", linthresh=float(positive.min()) if positive.size else 1.0)
    else:
        ax.set_xscale("log")
    ax.set_xlabel("share of fine observations kept")
    ax.set_ylabel(f"test {metric.upper()} ({da.attrs.get('units', '')})")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return fig
