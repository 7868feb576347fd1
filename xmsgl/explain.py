"""Diagnostics of the dynamic multi-scale graph embedding backbone.

:func:`explain` (also ``model.explain(ds)``) runs a fitted ``backbone="dmsge"``
model on a dataset, one window, and returns an :class:`xarray.Dataset` with:

* **over-smoothing**: the Dirichlet energy of the embeddings after the encoder
  (depth 0) and after every graph layer, on the hydrologic, geometric and dynamic
  graphs, raw and normalized by the nodes' spread, for each layer's output
  and for the concatenation of all outputs up to that depth (what the read-out
  sees when ``concat=True``);
* **attribution**: for each layer and neighbourhood, how often each neighbour
  gives the largest message (the winner of the maximum, per day and hidden unit),
  summarized per reach as shares of upstream, downstream, same-branch-free
  ("other"), self (padding of the hydrologic graph) and parent-segment
  neighbours, the mean distance of the winners, the top neighbour, and a
  basin-wide histogram of winner distances.

:func:`plot_explain` draws one of those per-reach variables on the network map,
with a line from each reach to its top neighbour; :func:`plot_energy` draws the
energy against depth for one or several models.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from xmsgl.convention import REACH, TIME, validate
from xmsgl.evaluate import _history
from xmsgl.exceptions import (
    ChoiceError,
    DataError,
    ParameterError,
    SchemaError,
    TimeError,
    check_axes,
    check_count,
    check_flag,
    format_ids,
    typed_arguments,
)

if TYPE_CHECKING:
    import torch
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from xmsgl.model import Downscaler

__all__ = ["explain", "plot_energy", "plot_explain"]

_GRAPHS = ("hydro", "geo", "dynamic")


def _time_slice(time: pd.DatetimeIndex, sel: Any) -> slice:
    if sel is None:
        return slice(0, len(time))
    from xmsgl.periods import period_bounds, period_mask

    idx = np.flatnonzero(period_mask(time, [period_bounds(sel, "time")], "time"))
    if idx.size == 0:
        raise TimeError(f"time={sel!r} selects no day of the dataset ({time[0].date()} to "
                        f"{time[-1].date()}); give a period inside its days")
    if idx.size < 2:
        raise ParameterError(f"time={sel!r} selects 1 day of the dataset "
                             f"({time[0].date()} to {time[-1].date()}); give a longer period")
    return slice(int(idx[0]), int(idx[-1]) + 1)


@typed_arguments
def explain(model: Downscaler, ds: xr.Dataset, *, time: Any = None, spinup: int = 180,
            device: str | torch.device = "auto", n_bins: int = 8, check_graph: bool = True) -> xr.Dataset:
    """Dirichlet energy per layer and neighbour attribution of a dmsge model on ``ds``.

    Parameters
    ----------
    model : Downscaler, str or path
        Fitted with ``backbone="dmsge"`` and a method with a fine backbone (not
        ``"remap"``), or the folder it was saved to.
    ds : xarray.Dataset
        A dataset with the model's input variables.
    time : (start, end), optional
        The days to explain, as one window (default: all days of ``ds``; a year or
        two is typical). Every statistic covers all of these days and no other. A
        gap in the days is run through as if they followed each other: give a
        period without gaps.
    spinup : int, default 180
        Days before ``time``'s first day that are run first and left out of every
        statistic (the encoder reads the 30 days before a day, and each layer's
        dynamic graph the ``dynamic_days`` before its block), as ``downscale``'s
        warm-up; fewer where the dataset starts (or a gap ends) closer before it,
        none with the default ``time``. The result's ``spinup_days`` attribute says
        how many were run.
    device : str, default "auto"
        Torch device: ``"auto"`` takes cuda, then mps, then the CPU, as
        :func:`xmsgl.fit` and :func:`xmsgl.downscale.downscale` do. The model goes
        back to the CPU afterwards, and the statistics are returned as NumPy arrays.
    n_bins : int, default 8
        Bins of the winner-distance histogram: doubling widths from half the
        network's typical node spacing, the last one open.
    check_graph : bool, default True
        Refuse a dataset whose river graph differs from the model's.

    Returns
    -------
    xarray.Dataset
        Dimensions ``depth`` (0 = encoder, then each layer), ``layer`` (1..L),
        ``graph`` (``"hydro"``, ``"geo"``, ``"dynamic"``), ``reach`` and
        ``distance_bin``. Variables ``dirichlet_energy``,
        ``dirichlet_energy_normalized``, ``dirichlet_energy_concat``,
        ``dirichlet_energy_concat_normalized`` (depth, graph); ``share_upstream``,
        ``share_downstream``, ``share_other``, ``share_self``,
        ``share_parent_segment``, ``win_distance`` (m), ``top_neighbour`` (id),
        ``top_share`` (layer, graph, reach); ``basin_share_*`` (layer, graph);
        ``win_distance_hist`` (layer, graph, distance_bin). Coordinates
        ``reach_pos_x``/``reach_pos_y`` give the positions the backbone used, and
        ``bin_lower``/``bin_upper`` (distance_bin, m) the histogram's bin edges (the
        last bin's upper edge infinite).

    Raises
    ------
    ParameterError
        The model has no dmsge backbone on reaches, ``time`` selects too few days,
        ``spinup`` is not an integer of at least 0, or ``n_bins`` is not an integer
        from 2 to 64.
    ModelMismatchError
        The dataset does not fit the model (see :func:`xmsgl.model.check_compatible`).
    TimeError, PeriodError
        ``time`` selects no day of ``ds``, is reversed, or is not one period.
    SchemaError, TopologyError, DataError
        ``ds`` is not a dataset in the convention (see :func:`xmsgl.validate`), or
        an input holds NaN on the days run.

    Examples
    --------
    >>> model.explain(ds, time=("2003-10-01", "2004-09-30"))  # doctest: +SKIP
    """
    import torch

    from xmsgl.downscale import _moved, model_turn
    from xmsgl.graph import build_graphs
    from xmsgl.model import _rebuild, check_compatible
    from xmsgl.nn.dmsge import dirichlet_energy
    from xmsgl.train import resolve_device, without_autocast

    check_count("n_bins", n_bins, least=2)
    if n_bins > 64:
        # Bins double in width: beyond 64 their edges pass any distance a river has
        # (and 10**9 ran for minutes, then out of memory).
        raise ParameterError(f"n_bins={n_bins}: give at most 64 (the bins double in width)")
    check_count("spinup", spinup, least=0)
    check_flag("check_graph", check_graph)
    if isinstance(model, (str, os.PathLike)):
        from xmsgl.model import load

        model = load(model)  # type: ignore[assignment]
    from xmsgl.baselines import BaselineModel

    if not hasattr(model, "method"):
        raise ParameterError(f"explain() needs a network model fitted with backbone='dmsge' (an "
                             f"xmsgl.Downscaler, or the folder it was saved to), got "
                             f"{type(model).__name__}")
    net = getattr(model, "net", None)
    if net is None or isinstance(model, BaselineModel):  # the per-reach GRU has a net, no graph
        raise ParameterError(f"explain() needs a network model fitted with backbone='dmsge'; "
                             f"{type(model).__name__} (method {getattr(model, 'method', '?')!r}) "
                             "has no graph network to explain")
    backbone = getattr(net, "dmsge", None)
    if backbone is None:
        raise ParameterError("explain() needs a model fitted with backbone='dmsge'; this one uses "
                             f"backbone={getattr(net, 'backbone', 'rgrn')!r}: refit with "
                             "backbone='dmsge'")
    if model.output == "remap":
        raise ParameterError("method 'remap' runs no backbone on reaches; explain a model of "
                             "method 'msgl', 'async-msgl', 'fine-only', 'direct' or 'progressive'")
    n_bins = int(n_bins)
    ds = validate(ds)
    graphs = build_graphs(ds, **model.config["graph"].get("options", {}))
    if check_graph:
        check_compatible(model, ds, graphs, REACH)
    times = pd.DatetimeIndex(ds[TIME].values)
    tsel = _time_slice(times, time)
    s_time = f"{times[tsel.start].date()}/{times[tsel.stop - 1].date()}"
    _warn_gaps(times, tsel)
    # The warm-up: up to spinup days before, never across a gap.
    first = _run_start(times, tsel.start, int(spinup))
    warm = tsel.start - first
    dev = resolve_device(device)
    # The run sets the dataset's geometry and a record on the shared dmsge backbone:
    # it goes alone among this model's runs in the process (xmsgl.downscale.model_turn);
    # another thread's explain or downscale wrote into the record or cleared it.
    with model_turn(net, dev):
        data = _rebuild(model, ds, graphs, dev, slice(first, tsel.stop))
        # As downscale does: on the device for the run, then back on the CPU it is kept on.
        with _moved(net, dev) as net:
            x = torch.from_numpy(np.asarray(data.x_reach)).to(dev).unsqueeze(2)  # (T, N, 1, F)
            day0 = [data.epoch_day_at(0)]
            backbone.record = {"from_day": warm}
            try:
                with torch.inference_mode(), without_autocast():  # float32, as fitted
                    net.hidden_states(x, data.graphs["fine"], "reach", day0=day0)
                    rec = backbone.record
                    run_states = rec["states"]
                    # The statistics read the explained days only.
                    states = [s[:, :, warm:] for s in run_states]
                    # Dynamic graphs of each depth: those the next layer builds (and, for the
                    # last depth, those a further layer would build), block by block.
                    st = backbone._state("reach").to(dev)
                    # The energy table shows the dynamic graph even for a model that does not
                    # use it; its k may then exceed what the nodes (or candidates) allow.
                    k_dyn = max(1, min(backbone.k, states[0].shape[1] - 1,
                                       st.cand.shape[-1] if st.cand is not None else backbone.k))
                    dyn = [[(max(t0, warm) - warm, t1 - warm, idx)
                            for t0, t1, idx in backbone.dynamic_blocks(s, "reach", day0, k=k_dyn) if t1 > warm]
                           for s in run_states]
                    hydro, real = rec["hydro"].to(dev), rec["hydro_real"].to(dev)
                    geo = rec["geo"].to(dev)
                    depth = len(states)
                    energy = np.zeros((4, depth, len(_GRAPHS)))
                    for d in range(depth):
                        cat = torch.cat(states[: d + 1], dim=-1)
                        for g, (idx, mask) in enumerate(((hydro, real), (geo, None), (None, None))):
                            for col, h in ((0, states[d]), (2, cat)):
                                energy[col, d, g], energy[col + 1, d, g] = (
                                    dirichlet_energy(h, idx, mask) if idx is not None
                                    else _energy_by_blocks(h, dyn[d]))
            finally:
                backbone.record = None
        geom = backbone.geometry("reach")
    n = geom.n
    n_layers = len(rec["wins"])
    reach_ids = np.asarray(ds[REACH].values)
    cats = ("upstream", "downstream", "other", "self", "parent_segment")
    # Neighbourhoods the model does not use stay NaN (top_neighbour: -1, never an id).
    shares = {c: np.full((n_layers, len(_GRAPHS), n), np.nan) for c in cats}
    win_dist = np.full((n_layers, len(_GRAPHS), n), np.nan)
    top_id = np.full((n_layers, len(_GRAPHS), n), -1, dtype=np.int64)
    top_share = np.full((n_layers, len(_GRAPHS), n), np.nan)
    scale = float(geom.length_scale)
    edges = np.concatenate([[0.0], scale * 0.5 * 2.0 ** np.arange(n_bins - 1), [np.inf]])
    hist = np.full((n_layers, len(_GRAPHS), n_bins), np.nan)
    n_days = int(states[0].shape[2])
    n_hidden = int(states[0].shape[-1])
    for lay in range(n_layers):
        for g, gname in enumerate(_GRAPHS):
            if gname not in rec["wins"][lay]:
                continue
            if gname == "dynamic":
                # One (index, wins) per block of days, weighed by its days.
                pieces = [(idx[0].numpy(), w[0].numpy(), (t1 - t0) / max(n_days, 1))
                          for (t0, t1, idx), w in zip(rec["index"][lay], rec["wins"][lay][gname])]
            else:
                idx_s = (hydro if gname == "hydro" else geo).cpu().numpy()
                pieces = [(idx_s, rec["wins"][lay][gname][0].numpy(), 1.0)]  # (N, k), rows sum to 1
            k_g = pieces[0][0].shape[1]
            rows = np.tile(np.repeat(np.arange(n), k_g), len(pieces))
            j = np.concatenate([p[0].reshape(-1) for p in pieces])
            wf = np.concatenate([p[1].reshape(-1) * p[2] for p in pieces])
            is_self = j == rows
            down = (geom.tin[j] <= geom.tin[rows]) & (geom.tout[rows] <= geom.tout[j]) & ~is_self
            up = (geom.tin[rows] <= geom.tin[j]) & (geom.tout[j] <= geom.tout[rows]) & ~is_self
            other = ~(is_self | down | up)
            parent = (geom.group[j] == geom.group[rows]) & ~is_self
            for c, m in zip(cats, (up, down, other, is_self, parent)):
                shares[c][lay, g] = np.bincount(rows, weights=wf * m, minlength=n)
            dist = np.sqrt(((geom.pos[j] - geom.pos[rows]) ** 2).sum(axis=1))
            win_dist[lay, g] = np.bincount(rows, weights=wf * dist, minlength=n)
            top_j, top_share[lay, g] = _top_neighbour(rows, j, wf, n, reach_ids, n_days * n_hidden)
            top_id[lay, g] = reach_ids[top_j]
            b = np.clip(np.searchsorted(edges, dist, side="right") - 1, 0, n_bins - 1)
            hist[lay, g] = np.bincount(b, weights=wf, minlength=n_bins) / max(float(wf.sum()), 1e-12)
    lg = ("layer", "graph")
    lgr = ("layer", "graph", REACH)
    out = xr.Dataset(
        {
            "dirichlet_energy": (("depth", "graph"), energy[0], {
                "long_name": "Dirichlet energy of each depth's embedding", "units": "1"}),
            "dirichlet_energy_normalized": (("depth", "graph"), energy[1], {
                "long_name": "Dirichlet energy over the nodes' spread (about 1: neighbours no "
                             "closer than any two nodes)", "units": "1"}),
            "dirichlet_energy_concat": (("depth", "graph"), energy[2], {
                "long_name": "Dirichlet energy of the concatenated embeddings up to each depth",
                "units": "1"}),
            "dirichlet_energy_concat_normalized": (("depth", "graph"), energy[3], {
                "long_name": "normalized Dirichlet energy of the concatenated embeddings",
                "units": "1"}),
            **{f"share_{c}": (lgr, shares[c], {
                "long_name": f"share of max-winning messages from {c.replace('_', ' ')} neighbours",
                "units": "1"}) for c in cats},
            **{f"basin_share_{c}": (lg, shares[c].mean(axis=2), {
                "long_name": f"basin mean of share_{c}", "units": "1"}) for c in cats},
            "win_distance": (lgr, win_dist, {
                "long_name": "mean distance of the max-winning neighbours between the "
                             f"backbone's positions ({geom.source})",
                "units": "m"}),
            "top_neighbour": (lgr, top_id, {"long_name": "reach id of the most frequent winner "
                                                         "(-1 where the model does not use the graph)"}),
            "top_share": (lgr, top_share, {"long_name": "share of wins of the top neighbour",
                                           "units": "1"}),
            "win_distance_hist": (("layer", "graph", "distance_bin"), hist, {
                "long_name": "share of max-winning messages by neighbour distance", "units": "1"}),
        },
        coords={
            "depth": np.arange(depth), "layer": np.arange(1, n_layers + 1), "graph": list(_GRAPHS),
            REACH: reach_ids, "distance_bin": np.arange(n_bins),
            "bin_lower": ("distance_bin", edges[:-1], {"units": "m"}),
            "bin_upper": ("distance_bin", edges[1:], {"units": "m"}),
            "reach_pos_x": (REACH, geom.pos[:, 0], {"units": "m"}),
            "reach_pos_y": (REACH, geom.pos[:, 1], {"units": "m"}),
        },
        attrs={
            "method": model.method, "model_sha256": model.sha256,
            "period": f"{times[tsel.start].date()} to {times[tsel.stop - 1].date()}",
            "spinup_days": warm,
            "n_days": int(tsel.stop - tsel.start),
            "positions": geom.source, "k": backbone.k,
            "concat": int(backbone.concat), "reduce": backbone.options["reduce"],
            "graphs": " ".join(backbone.graphs),
            "history": _history(f"explain(time={s_time!r}, n_bins={n_bins}, spinup={int(spinup)}, "
                                f"device={str(dev)!r}, check_graph={bool(check_graph)})"),
        },
    )
    return out


def _warn_gaps(times: pd.DatetimeIndex, tsel: slice) -> None:
    """Warn, as downscale does, of missing days inside the explained ones: they are run
    through as if the days on either side followed each other."""
    from xmsgl.exceptions import TimeGapWarning, plural, warn_at_user

    days = times[tsel].normalize()
    jumps = np.flatnonzero(np.diff(days.values).astype("timedelta64[D]").astype(np.int64) > 1)
    if jumps.size:
        a, b = days[jumps[0]], days[jumps[0] + 1]
        warn_at_user(
            f"explain: {plural(jumps.size, 'gap')} in the days explained, the first between "
            f"{a.date()} and {b.date()} ({plural(int((b - a).days) - 1, 'day')} missing): the run goes "
            "through as if the days on either side followed each other; explain the days on each "
            "side of a gap separately (time=)", TimeGapWarning)


def _run_start(times: pd.DatetimeIndex, start: int, spinup: int) -> int:
    """The first day to run for days from ``start`` with up to ``spinup`` days of
    warm-up: not before the record, nor before the end of a gap
    (:func:`~xmsgl.train.time_breaks`) at or before ``start``."""
    from xmsgl.train import time_breaks

    breaks = time_breaks(times)
    before = breaks[breaks <= start]
    return max(0, start - spinup, int(before[-1]) if before.size else 0)


def _energy_by_blocks(h: Any, pieces: list[tuple[int, int, Any]]) -> tuple[float, float]:
    """Dirichlet energy of ``h`` (B, N, T, H) on graphs that change with the days:
    each piece ``(t0, t1, index)`` of :meth:`~xmsgl.nn.dmsge.DMSGEBackbone.dynamic_blocks`
    scored on its days, weighed by them; normalized by the spread over all days."""
    from xmsgl.nn.dmsge import dirichlet_energy

    n_days = max(int(h.shape[2]), 1)
    energy = sum(dirichlet_energy(h[:, :, t0:t1], idx)[0] * (t1 - t0) / n_days
                 for t0, t1, idx in pieces if t1 > t0)
    spread = float((h - h.mean(dim=1, keepdim=True)).pow(2).sum(dim=-1).mean())
    return float(energy), float(energy) / spread if spread > 0 else 0.0


def _top_neighbour(rows: np.ndarray, j: np.ndarray, w: np.ndarray, n: int, ids: np.ndarray,
                   grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the column with the largest summed weight (on a tie, the one of the
    smallest id in ``ids``, so that the dataset's row order does not choose) and that
    weight, from entries ``(rows, j, w)``.

    The weights are shares of wins, counts over ``grid`` (days x hidden units) kept in
    float32 and summed over blocks of days: they are ranked as the counts they are
    (``round(total * grid)``), so that equal counts tie and the smaller id wins, not
    whichever rounding left larger by 1e-9."""
    keys, inv = np.unique(rows.astype(np.int64) * n + j, return_inverse=True)
    total = np.bincount(inv.reshape(-1), weights=w, minlength=keys.size)
    r, c = keys // n, keys % n
    count = np.rint(total * grid)
    # Sorted by row, then by count (largest first), then by id: each row's first.
    order = np.lexsort((ids[c], -count, r))
    first = order[np.r_[True, r[order][1:] != r[order][:-1]]]
    top_j = np.zeros(n, dtype=np.int64)
    top_w = np.full(n, np.nan)
    top_j[r[first]] = c[first]
    top_w[r[first]] = total[first]
    return top_j, top_w


def _check_result(result: Any, what: str) -> None:
    need = ("dirichlet_energy", "reach_pos_x", "top_neighbour")
    if not isinstance(result, xr.Dataset) or any(n not in result for n in need):
        got = type(result).__name__ if not isinstance(result, xr.Dataset) else \
            f"a Dataset without {[n for n in need if n not in result]}"
        raise SchemaError(f"{what} needs a result of explain() (model.explain(ds)), got {got}")


def plot_explain(result: xr.Dataset, ds: xr.Dataset | None = None, *, variable: str = "share_upstream",
                 layer: int = -1, graph: str | None = None, arrows: bool = True,
                 ax: Axes | None = None) -> Figure:
    """Draw a per-reach variable of :func:`explain` on the network map.

    Reaches are dots at the positions the backbone used, coloured by ``variable``
    at ``layer`` (a position: -1 is the last layer) and ``graph``; with ``ds`` the
    river network (each reach joined to its downstream reach) is drawn beneath;
    with ``arrows`` a thin line joins each reach to its top neighbour.

    Parameters
    ----------
    result : xarray.Dataset
        A result of :func:`explain`.
    ds : xarray.Dataset, optional
        The dataset explained, to draw the river network beneath.
    variable : str, default "share_upstream"
        A per-reach variable of ``result`` (``share_*``, ``win_distance``,
        ``top_share``).
    layer : int, default -1
        Position of the layer (-1: the last).
    graph : {"hydro", "geo", "dynamic"}, optional
        The neighbourhood; default the last the model uses (its ``graphs``
        attribute).
    arrows : bool, default True
        Join each reach to its top neighbour.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; default a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    SchemaError
        ``result`` is not a result of :func:`explain`.
    ParameterError
        An unknown variable or graph, ``top_neighbour`` (ids: the arrows draw
        it), a layer position out of range, a model
        without graph layers (``layers=0``: nothing is attributed per reach), or an
        ``ax`` that is neither None nor matplotlib Axes.
    DataError
        ``ds`` lacks reaches of the result (it is not the dataset explained).
    """
    import matplotlib.pyplot as plt

    check_flag("arrows", arrows)
    _check_result(result, "plot_explain")
    if variable not in result or REACH not in result[variable].dims:
        raise ParameterError(f"variable={variable!r} is not a per-reach variable of the explain "
                             "result; use e.g. 'share_upstream', 'win_distance' or 'top_share'")
    if variable == "top_neighbour":
        # Ids are labels, not amounts: a colour scale over them says nothing.
        raise ParameterError("variable='top_neighbour' holds reach ids, which a colour scale cannot "
                             "show; each reach's top neighbour is the arrow drawn (arrows=True): "
                             "colour by 'top_share', its share of the wins, instead")
    used = str(result.attrs.get("graphs", " ".join(_GRAPHS))).split()
    if graph is None:
        graph = used[-1] if used else "dynamic"
    if graph not in _GRAPHS:
        raise ChoiceError(f"graph={graph!r} is not known; use one of {list(_GRAPHS)}")
    if graph not in used:
        raise ParameterError(f"graph={graph!r} is not a neighbourhood of the explained model, which "
                             f"uses {used}; draw one of those")
    n_layers = result.sizes.get("layer", 0)
    if n_layers == 0:
        raise ParameterError("the explained model has no graph layer (layers=0), so no neighbour "
                             "is attributed per reach; draw its encoder energy with plot_energy, or "
                             "explain a model with layers >= 1")
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) \
            or not -n_layers <= int(layer) < n_layers:
        raise ParameterError(f"layer={layer!r} must be a position among the {n_layers} layers "
                             f"(0 to {n_layers - 1}, or -1 for the last)")
    ids = result[REACH].values
    to = None
    if ds is not None:
        if not isinstance(ds, xr.Dataset) or REACH not in ds.dims or "reach_to" not in ds:
            raise SchemaError("ds must be the dataset explained, with 'reach_to' on 'reach', to draw "
                              "the network beneath; leave ds=None to draw the reaches only")
        missing = pd.Index(ids).difference(pd.Index(ds[REACH].values))
        if missing.size:
            raise DataError(f"ds lacks {missing.size} reaches of the explain result "
                            f"({format_ids(list(missing))}); pass the dataset explain() ran on, "
                            "or ds=None")
        to = ds["reach_to"].sel({REACH: ids}).values
    check_axes(ax)
    fig: Figure
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5))
    else:
        fig = ax.figure  # type: ignore[assignment]
    x = result["reach_pos_x"].values
    y = result["reach_pos_y"].values
    pos_of = {int(i): p for p, i in enumerate(ids)}
    if to is not None:
        for p, t in enumerate(to):
            q = pos_of.get(int(t))
            if q is not None:
                ax.plot([x[p], x[q]], [y[p], y[q]], color="0.75", lw=0.8, zorder=1)
    sel = result[variable].isel(layer=layer).sel(graph=graph).values
    if arrows:
        top = result["top_neighbour"].isel(layer=layer).sel(graph=graph).values
        for p, t in enumerate(top):
            q = pos_of.get(int(t)) if t >= 0 else None
            if q is not None and q != p:
                ax.plot([x[p], x[q]], [y[p], y[q]], color="tab:red", lw=0.5, alpha=0.6, zorder=2)
    sc = ax.scatter(x, y, c=sel, s=12, cmap="viridis", zorder=3)
    fig.colorbar(sc, ax=ax, label=variable)
    lay_no = int(result["layer"].values[layer])
    ax.set_title(f"{variable}, layer {lay_no}, {graph} graph")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    return fig


def plot_energy(results: xr.Dataset | Mapping[str, xr.Dataset] | Sequence[xr.Dataset], *, normalized: bool = True,
                ax: Axes | None = None) -> Figure:
    """Dirichlet energy against depth, one line per graph and result (e.g. with / without concat).

    Parameters
    ----------
    results : xarray.Dataset, mapping or sequence of them
        One result of :func:`explain`, ``{label: result}``, or a list of results
        (labelled by their position).
    normalized : bool, default True
        Draw the energy over the nodes' spread (``dirichlet_energy_normalized``,
        about 1 where neighbours are no closer than any two nodes) instead of the
        raw energy.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; default a new figure.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ParameterError, SchemaError
        ``results`` is not one of those, or holds something that is not an
        :func:`explain` result; ``ax`` is neither None nor matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    check_flag("normalized", normalized)
    items: dict[str, Any]
    if isinstance(results, xr.Dataset):
        items = {"": results}
    elif isinstance(results, Mapping):
        items = {str(k): v for k, v in results.items()}
    elif isinstance(results, (list, tuple)):
        items = {str(i): v for i, v in enumerate(results)}
    else:
        raise ParameterError(f"results must be an explain() result, a mapping {{label: result}} or a "
                             f"list of results, got {type(results).__name__}")
    if not items:
        raise ParameterError("results is empty; give at least one explain() result")
    for label, res in items.items():
        _check_result(res, f"plot_energy (result {label!r})" if label else "plot_energy")
    check_axes(ax)
    fig: Figure
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure  # type: ignore[assignment]
    var = "dirichlet_energy_normalized" if normalized else "dirichlet_energy"
    styles = ("-", "--", ":", "-.")
    for s, (label, res) in enumerate(items.items()):
        for g in _GRAPHS:
            ax.plot(res["depth"].values, res[var].sel(graph=g).values, styles[s % len(styles)],
                    marker="o", label=f"{label} {g}".strip())
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # depths are whole layers
    ax.set_xlabel("depth (0 = temporal encoder)")
    ax.set_ylabel(var.replace("_", " "))
    ax.set_title("Dirichlet energy of the embeddings by depth" + (" (normalized)" if normalized else ""))
    ax.legend(fontsize=8)
    return fig
