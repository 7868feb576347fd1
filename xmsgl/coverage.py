"""Where a model is asked about places unlike those it learned from.

A network model learns from the nodes that have observations in its training period;
every other node gets a prediction too, from its inputs through the same weights. A
node whose static inputs (area, slope, shade, groundwater share, ...) lie far beyond
those of every observed node is an extrapolation: nothing in training tested what the
network does there, and it can be far off (on the Delaware data, an unobserved segment
whose groundwater coefficient was 11 standard deviations above the mean was predicted
near 14 degC all year). :func:`coverage` says which nodes those are, and on how
many days a time-varying input (air temperature, discharge) lies beyond what the
observed nodes saw on the training days.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from xmsgl.convention import (
    REACH,
    SEG,
    TIME,
    expect_dataset,
    only_read,
    output_coords,
    same_units,
    topology_arrays,
    units_refusal,
    validate,
)
from xmsgl.exceptions import (
    DataError,
    ExtrapolationWarning,
    ModelMismatchError,
    ParameterError,
    SchemaError,
    format_ids,
    typed_arguments,
)

__all__ = ["coverage", "WARN_SD", "WARN_DAYS_SHARE", "WARN_WINDOW_DAYS", "static_extrapolation",
           "dynamic_extrapolation"]

#: Standard deviations beyond the observed nodes' range of a static input from which
#: :func:`xmsgl.downscale.downscale` warns (:class:`~xmsgl.exceptions.ExtrapolationWarning`).
#: Far beyond :func:`coverage`'s default margin of 1: the warning is for the nodes no
#: one should take on trust, coverage for a closer look.
WARN_SD = 5.0


def judges(model: Any) -> bool:
    """Whether :func:`coverage` judges ``model``: every network method's and the GRU's,
    which learn weights from their inputs, not the other baselines (climatology, idw
    and harmonic read no input variable; mohseni's curves read the air temperature,
    whose range its predictions warn of). The ``xmsgl coverage`` command asks this
    before it reads its data."""
    from xmsgl.baselines import BaselineModel
    from xmsgl.nn.gru import GRUModel

    return not isinstance(model, BaselineModel) or isinstance(model, GRUModel)


def not_judged(method: str) -> str:
    """Why :func:`coverage` does not judge the baseline ``method`` (:func:`judges`)."""
    if method == "mohseni":
        return ("mohseni's curves read the air temperature alone, and its predictions warn "
                "(InputRangeWarning) where that leaves the range they were fitted on "
                "(model.config['input_range'])")
    return f"{method} reads no input variable, only observations"


@typed_arguments
def coverage(ds: xr.Dataset, model: Any, *, margin: float = 1.0, time: Any = None) -> xr.Dataset:
    """Nodes of ``ds`` whose inputs lie beyond those of the observed nodes.

    For each input of a scale the model reads, the fit recorded the smallest and
    largest value over the nodes with at least one training observation at that
    scale (for an input on time, over those nodes' training days;
    ``model.features.observed_range``). A node of ``ds`` is *beyond* where one of its
    static inputs lies more than ``margin`` standard deviations (the model's
    standardization of that input) below that smallest or above that largest value;
    a day counts for a node where one of its time-varying inputs does.
    An input that was constant over the training days has a standard deviation of 1
    in its own units there. The observations are the ``seg_temp`` and ``reach_temp``
    of the training days; the targets of ASYNC-MSGL's stage A (``stage_a_variable``)
    are not counted, so segments that only stage A saw can be flagged (but for an
    ASYNC-MSGL fit without a segment observation on the training days, whose
    segments are judged against those stage A learned from, on its days). Inputs are
    read after :func:`xmsgl.validate`'s unit conversions, as ``fit`` and
    ``downscale`` read them.

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset to be downscaled (only the model's inputs are read; without the
        inputs on time, the static ones alone are judged).
    model : xmsgl.Downscaler, GRUModel or path
        A fitted network model (``msgl``, ``async-msgl``, ``fine-only``, ``remap``,
        ``direct``, ``progressive``), the per-reach GRU baseline (``gru``: its reaches
        alone), or the folder of a saved one.
    margin : float, default 1.0
        Standard deviations beyond the observed range before a node or day counts.
    time : slice or (start, end), optional
        The days to judge the time-varying inputs on (all of ``ds`` by default), as
        given to ``downscale``.

    Returns
    -------
    xarray.Dataset
        For each scale ``s`` the model reads (``seg``, ``reach``): ``s_beyond_observed``
        (bool), ``s_beyond_sd`` (how far beyond, in standard deviations: the largest
        over the inputs, 0 inside) and ``s_beyond_variable`` (that input's name, ``""``
        inside the range, flagged above ``margin``). With time-varying inputs,
        ``s_days_beyond_observed`` (days judged on which one lies beyond),
        ``s_days_beyond_sd`` (the largest distance over all days judged, 0 inside the
        range) and ``s_days_beyond_variable`` (the input beyond on the most days). When the
        model reads both scales, ``reach_segment_beyond_observed`` flags reaches whose
        segment is beyond: MSGL's reach predictions also read their segment's states.
        Attributes: ``xmsgl_margin_sd``, ``xmsgl_method``, ``xmsgl_model_sha256``,
        ``xmsgl_inputs_judged`` and ``xmsgl_inputs_not_judged`` (inputs the model
        reads that ``ds`` lacks, comma-separated) and,
        with time-varying inputs judged, ``xmsgl_days_judged`` and ``xmsgl_time_judged``
        (the first and last day).

    Raises
    ------
    ParameterError
        For a baseline model other than the GRU, a model saved before the ranges were
        recorded, or a ``margin`` that is not a number >= 0.
    SchemaError
        For an input held on other dimensions than the model reads it on. An
        input the model reads that ``ds`` lacks is not an error: the nodes are not
        judged on it, and it is named in ``xmsgl_inputs_not_judged`` (a dataset of
        the static attributes alone is judged on those).
    TimeError, PeriodError
        For ``time=`` that ``downscale`` refuses too.
    DataError
        For an input that is not finite, or that holds a fill value such as -9999 or
        values farther from the training inputs than any input can lie (``downscale``
        refuses them too).
    ModelMismatchError
        For an input in other units than the model was fitted with (``downscale``
        refuses it too).
    UnitsError
        For a temperature input outside the plausible -90..65 degC once converted (a
        fill value such as -9999, or degC labelled ``K``), in memory or dask-backed
        (``downscale`` refuses it too).

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2003-09-30")
    >>> model = ds.msgl.fit(epochs=1, progress=False)  # doctest: +SKIP
    >>> cov = ds.msgl.coverage(model)  # doctest: +SKIP
    >>> sorted(cov.data_vars)[:4]  # doctest: +SKIP
    ['reach_beyond_observed', 'reach_beyond_sd', 'reach_beyond_variable',
     'reach_days_beyond_observed']
    """
    from xmsgl.model import Downscaler, load
    from xmsgl.nn.gru import GRUModel
    from xmsgl.train import check_input_values

    expect_dataset(ds)
    if isinstance(margin, bool) or not isinstance(margin, (int, float, np.integer, np.floating)) or not (
            np.isfinite(margin) and margin >= 0):
        raise ParameterError(f"margin={margin!r} must be a number of standard deviations >= 0")
    if isinstance(model, (str, os.PathLike)):
        model = load(model)
    if not judges(model):
        raise ParameterError(
            f"coverage judges the models fitted by the network methods (msgl, async-msgl, "
            f"fine-only, remap, direct, progressive) and the GRU; {model.method!r} is a baseline: "
            f"{not_judged(str(model.method))}")
    if not isinstance(model, (Downscaler, GRUModel)):
        raise ParameterError(f"expected an xmsgl.Downscaler, the GRU or a saved model's folder, got "
                             f"{type(model).__name__}")
    spec = model.features
    if "observed_range" not in model.config["variables"]:
        raise ParameterError(
            "this model was saved before xmsgl recorded the range of its observed nodes' "
            "inputs; fit it again to judge coverage")
    # The GRU reads its reaches' inputs alone.
    reads = ({SEG: False, REACH: True} if isinstance(model, GRUModel) else
             {SEG: model.output != "fine_only", REACH: model.output != "remap"})
    judged = [n for dim, names in ((SEG, spec.seg_vars), (REACH, spec.reach_vars)) if reads[dim]
              for n in names if n in spec.observed_range]
    # The inputs as fit and downscale read them (units converted), the topology checked.
    ds = validate(only_read(ds, [n for n in judged if n in ds.variables]), check_values=False)
    for name in judged:
        # validate converts temperatures only: other inputs in other units than the
        # fit's would be measured in the wrong unit (downscale refuses them too).
        if name in ds.variables:
            units = str(ds[name].attrs.get("units", "1"))
            if not same_units(units, spec.units[name]):
                raise ModelMismatchError(units_refusal(name, units, spec.units[name]))
    if time is not None:
        import pandas as pd

        from xmsgl.downscale import _time_positions

        if TIME not in ds.dims:
            raise SchemaError("time= was given, but the dataset has no 'time' dimension: leave "
                              "time= out to judge its static inputs alone")
        # As downscale reads it.
        i0, i1 = _time_positions(pd.DatetimeIndex(ds[TIME].values), time, done="judged")
        ds = ds.isel({TIME: slice(i0, i1)})
    out = xr.Dataset()
    flags: dict[str, np.ndarray] = {}
    words = {SEG: "segments", REACH: "reaches"}
    sds = f"{float(margin):g} standard deviation{'' if f'{float(margin):g}' == '1' else 's'}"
    judged_all: list[str] = []
    absent: list[str] = []
    for dim, names in ((SEG, spec.seg_vars), (REACH, spec.reach_vars)):
        if not reads[dim] or dim not in ds.dims:
            continue
        n = ds.sizes[dim]
        worst, which = np.zeros(n), np.full(n, "", dtype=object)
        best_count, days_which = np.zeros(n, dtype=np.int64), np.full(n, "", dtype=object)
        days_worst, n_days_any = np.zeros(n), np.zeros(n, dtype=np.int64)
        judged_days: list[str] = []
        for name in names:
            if name not in spec.observed_range:
                continue
            static = spec.static[name]
            want = (dim,) if static else (dim, TIME)
            if name not in ds.variables:
                # A dataset of the attributes alone is judged on them, one that lacks an
                # attribute on the others: the caller is told what was not judged.
                absent.append(name)
                continue
            if set(map(str, ds[name].dims)) != set(want):
                raise SchemaError(
                    f"the model reads {name!r} on {want}; the dataset holds it on "
                    f"{tuple(map(str, ds[name].dims))}: give it as at fit time"
                    + (f" (a value per node: ds[{name!r}].isel(time=0) where it is constant, or "
                       "refit the model with it on time)" if static else
                       f" (on time: ds[{name!r}].broadcast_like(ds.time) for a constant, or refit "
                       "the model with it static)"))
            judged_all.append(name)
            if not static:
                judged_days.append(name)  # judged below, a block of days at a time
                continue
            v = np.asarray(ds[name].values, dtype=np.float64)
            _refuse_not_finite(~np.isfinite(v), name, ds, dim)
            # A fill value or mislabelled units, as downscale refuses them.
            check_input_values(name, v, True, spec, ds, dim, fitting=False)
            far = _sd_beyond(v, spec.observed_range[name], spec.std[name])
            more = far > worst
            worst[more], which[more] = far[more], name
        # Inputs on time a block of days and nodes at a time, all of them for each block
        # (a day counts once however many inputs lie beyond on it): what is held is one
        # block of one input, whatever the record's length, and a dask-backed input is
        # read in blocks of whole chunks, each chunk once.
        counts = {name: np.zeros(n, dtype=np.int64) for name in judged_days}
        # Nodes with a value that is not finite, over every block (refused after them).
        bad = {name: np.zeros(n, dtype=bool) for name in judged_days}
        # The first of them (day, then node position), over every block.
        first_bad: dict[str, tuple[int, int]] = {}
        times, node_blocks = _blocks(ds, judged_days, dim, n) if judged_days else ([], [])
        for block in times:
            for nodes in node_blocks:
                any_beyond = np.zeros((block.stop - block.start, nodes.stop - nodes.start), dtype=bool)
                for name in judged_days:
                    sel = ds[[name]].isel({TIME: block, dim: nodes})
                    v = np.asarray(sel[name].transpose(TIME, dim).values, dtype=np.float64)
                    finite = np.isfinite(v)
                    if not finite.all():
                        bad[name][nodes] |= ~finite.all(axis=0)
                        t, j = np.nonzero(~finite)  # in day order, then by node
                        here = (block.start + int(t[0]), nodes.start + int(j[0]))
                        first_bad[name] = min(first_bad.get(name, here), here)
                    elif v.size:
                        # A lazy input's values were not read by validate: a fill value
                        # or degC labelled K is refused here, as downscale refuses it.
                        check_input_values(name, v, False, spec, sel, dim, fitting=False)
                    far = _sd_beyond(v, spec.observed_range[name], spec.std[name])
                    beyond = far > margin
                    any_beyond |= beyond
                    counts[name][nodes] += beyond.sum(axis=0)
                    days_worst[nodes] = np.maximum(days_worst[nodes], far.max(axis=0, initial=0.0))
                n_days_any[nodes] += any_beyond.sum(axis=0)
        for name in judged_days:
            where = first_bad.get(name)
            _refuse_not_finite(bad[name], name, ds, dim, None if where is None else (
                f"{dim} {np.asarray(ds[dim].values)[where[1]].item()!r} on "
                f"{np.datetime_as_string(ds[TIME].values[where[0]], unit='D')}"))
        for name in judged_days:  # in the model's order: the first input wins a tie
            more = counts[name] > best_count
            best_count[more], days_which[more] = counts[name][more], name
        flag = worst > margin
        flags[dim] = flag
        # The dataset's coordinates along dim (ids' attributes, seg_id_nat, COMID), as
        # downscale's outputs carry them.
        coord = _node_coords(ds, dim)
        out[f"{dim}_beyond_observed"] = xr.DataArray(flag, dims=(dim,), coords=coord, attrs={
            "long_name": f"static input beyond those of the {words[dim]} with training observations",
            "description": f"true where a static input lies more than {sds} beyond its range over "
                           "the observed nodes"})
        out[f"{dim}_beyond_sd"] = xr.DataArray(worst.astype(np.float32), dims=(dim,), coords=coord, attrs={
            "long_name": "distance of the static inputs beyond the observed range (0 inside it), "
                         "in standard deviations of the training inputs",
            "units": "1"})
        out[f"{dim}_beyond_variable"] = xr.DataArray(which.astype(str), dims=(dim,), coords=coord, attrs={
            "long_name": "static input farthest beyond the observed range"})
        if judged_days:
            out[f"{dim}_days_beyond_observed"] = xr.DataArray(
                n_days_any.astype(np.int32), dims=(dim,), coords=coord, attrs={
                    "long_name": "days with a time-varying input beyond those of the observed "
                                 f"{words[dim]} on the training days",
                    "description": f"days judged on which an input on time lies more than {sds} "
                                   f"beyond its range over the observed nodes' training days "
                                   f"({', '.join(judged_days)})",
                    "units": "1"})
            out[f"{dim}_days_beyond_sd"] = xr.DataArray(
                days_worst.astype(np.float32), dims=(dim,), coords=coord,
                attrs={"long_name": "largest distance of a time-varying input beyond the observed "
                                    "range over the days judged (0 inside it), in standard "
                                    "deviations of the training inputs",
                       "units": "1"})
            out[f"{dim}_days_beyond_variable"] = xr.DataArray(
                days_which.astype(str), dims=(dim,), coords=coord,
                attrs={"long_name": "time-varying input beyond the observed range on the most days"})
    if SEG in flags and REACH in flags:
        # validate checked that every reach's segment is in the dataset.
        out["reach_segment_beyond_observed"] = xr.DataArray(
            flags[SEG][topology_arrays(ds).reach_seg_idx], dims=(REACH,), coords=_node_coords(ds, REACH),
            attrs={"long_name": "the reach's segment is beyond the observed segments"})
    from xmsgl.evaluate import _history

    out.attrs["history"] = _history(f"coverage(method={model.method!r}, model sha256="
                                    f"{model.sha256[:16]}, margin={float(margin):g}"
                                    + (f", time={time!r}" if time is not None else "") + ")")
    out.attrs.update({"xmsgl_margin_sd": float(margin), "xmsgl_method": model.method,
                      "xmsgl_model_sha256": model.sha256,
                      "xmsgl_inputs_judged": ", ".join(judged_all),
                      # Inputs the model reads that the dataset lacks.
                      "xmsgl_inputs_not_judged": ", ".join(absent)})
    if any(str(name).endswith("_days_beyond_observed") for name in out.data_vars):
        days = ds[TIME].values
        out.attrs["xmsgl_days_judged"] = int(days.size)
        if days.size:
            out.attrs["xmsgl_time_judged"] = (f"{np.datetime_as_string(days[0], unit='D')} to "
                                              f"{np.datetime_as_string(days[-1], unit='D')}")
    return out


#: Values of one input read at a time (a block of days of all nodes), 64 MB in float64.
_BLOCK_VALUES = 8_000_000


def _group(sizes: Sequence[int], limit: int) -> list[slice]:
    """Consecutive runs of the chunks ``sizes`` (along one dimension) of about ``limit``
    elements each, one chunk at least: slices that cut no chunk."""
    out: list[slice] = []
    start = size = 0
    for c in sizes:
        if size and size + c > limit:
            out.append(slice(start, start + size))
            start, size = start + size, 0
        size += int(c)
    if size:
        out.append(slice(start, start + size))
    return out


def _blocks(ds: xr.Dataset, names: list[str], dim: str, n: int) -> tuple[list[slice], list[slice]]:
    """Days and nodes of the blocks :func:`coverage` reads, about :data:`_BLOCK_VALUES`
    values each. In memory, or where one chunk alone holds more than four times that:
    days of every node. Dask-backed: runs of whole chunks, on the chunks' own
    boundaries (those of the first input; a subset's chunks are uneven), so that each
    chunk is read once: blocks of days of every node cut each stored chunk of a long
    record into several reads, about ``365 / days`` of them (twice at 30,000 reaches,
    46 times at a million)."""
    n_time = ds.sizes.get(TIME, 0)
    if n_time == 0:  # no day to read, lazy or not
        return [], [slice(0, n)]
    for name in names:
        chunks = getattr(ds[name].data, "chunks", None)
        if chunks is None:
            continue
        dims = list(map(str, ds[name].dims))
        along_t, along_n = chunks[dims.index(TIME)], chunks[dims.index(dim)]
        if max(along_t) * max(along_n) <= 4 * _BLOCK_VALUES:
            times = _group(along_t, max(1, _BLOCK_VALUES // max(n, 1)))
            longest = max(t.stop - t.start for t in times)
            return times, _group(along_n, max(1, _BLOCK_VALUES // longest))
        break
    step = max(1, int(_BLOCK_VALUES // max(n, 1)))
    return ([slice(t0, min(t0 + step, n_time)) for t0 in range(0, n_time, step)],
            [slice(0, n)])


def _refuse_not_finite(nodes: np.ndarray, name: str, ds: xr.Dataset, dim: str,
                       first: str | None = None) -> None:
    """Refuse input ``name`` where it is not finite at the ``nodes`` marked, naming them
    (and ``first``, the first node and day, for an input on time)."""
    if nodes.any():
        raise DataError(f"input {name!r} is not finite at {dim} ids "
                        f"{format_ids(np.asarray(ds[dim].values)[nodes])}"
                        + (f" (first: {first})" if first else "")
                        + "; downscale refuses it too: fill or mask those values first"
                        + (", or judge the days before them with time=" if first else ""))


def _node_coords(ds: xr.Dataset, dim: str) -> dict[str, xr.DataArray]:
    """The coordinates of ``ds`` an output on (``dim``,) carries: those on ``dim`` alone
    and the scalar ones."""
    return {k: c for k, c in output_coords(ds, dim).items() if TIME not in c.dims}


def _sd_beyond(values: np.ndarray, observed: Any, std: float) -> np.ndarray:
    """How far ``values`` lie beyond the range ``observed`` (smallest, largest), in
    standard deviations ``std``; 0 inside it."""
    lo, hi = observed
    return np.maximum(np.maximum(lo - values, values - hi) / std, 0.0)


def static_extrapolation(ds: xr.Dataset, model: Any, dims: tuple[str, ...], *,
                         margin: float = WARN_SD) -> str | None:
    """A sentence on the nodes of ``ds`` whose static inputs lie more than ``margin``
    standard deviations beyond the observed nodes' range (as :func:`coverage` judges
    them), or None when there are none.

    ``ds`` is the validated dataset ``downscale`` reads; the static inputs of the
    scales in ``dims`` are read (one value a node, as the topology is, even from a lazy
    dataset; nothing on time), and a model saved before the ranges were recorded is
    not judged.
    """
    spec = model.features
    ranges = getattr(spec, "observed_range", None)
    if not ranges:
        return None
    words = {SEG: ("segment", "segments"), REACH: ("reach", "reaches")}
    parts, worst = [], (0.0, "", "", None)
    for dim, names in ((SEG, spec.seg_vars), (REACH, spec.reach_vars)):
        if dim not in dims or dim not in ds.dims:
            continue
        far = np.zeros(ds.sizes[dim])
        which = np.full(ds.sizes[dim], "", dtype=object)
        for name in names:
            if not spec.static.get(name) or name not in ranges or name not in ds.variables:
                continue
            da = ds[name]
            if tuple(map(str, da.dims)) != (dim,):
                continue  # on another dimension too: downscale refuses it later
            d = _sd_beyond(np.asarray(da.values, dtype=np.float64), ranges[name], spec.std[name])
            d[~np.isfinite(d)] = 0.0
            more = d > far
            far[more], which[more] = d[more], name
        beyond = np.flatnonzero(far > margin)
        if beyond.size == 0:
            continue
        ids = np.asarray(ds[dim].values)
        k = int(beyond[np.argmax(far[beyond])])
        if far[k] > worst[0]:
            worst = (float(far[k]), words[dim][0], str(which[k]), ids[k].item())
        shown = ", ".join(str(i.item() if hasattr(i, "item") else i) for i in ids[beyond][:5])
        many = beyond.size > 1
        parts.append(f"{beyond.size} {words[dim][many]} ({'ids' if many else 'id'} {shown}"
                     f"{', ...' if beyond.size > 5 else ''})")
    if not parts:
        return None
    sd, kind, name, node = worst
    one = len(parts) == 1 and parts[0].startswith("1 ")
    sds = f"{margin:g} standard deviation{'' if f'{margin:g}' == '1' else 's'}"
    return (f"{' and '.join(parts)} {'has' if one else 'have'} a static input more than {sds} "
            f"beyond its range over the nodes with training observations (farthest: {kind} {node}, "
            f"{name!r}, {sd:.1f} standard deviations): "
            f"{'its prediction is an extrapolation' if one else 'their predictions are extrapolations'} "
            "the training never tested; ds.msgl.coverage(model) lists every node, input and day")


#: Share of the node-days :func:`xmsgl.downscale.downscale` reads on which a
#: time-varying input may lie more than one standard deviation (:func:`coverage`'s
#: default margin) beyond its training range before it warns
#: (:class:`~xmsgl.exceptions.InputRangeWarning`), over its worst :data:`WARN_WINDOW_DAYS`
#: consecutive days. Set by the Delaware files (``docs/scripts/dynamic_extrapolation.py``):
#: Fahrenheit air temperatures labelled degC put 13-38% of a winter's worst 30 days'
#: node-days there, a summer 8 degC warmer than any in training up to 1.7%, the record
#: itself 0.07%.
WARN_DAYS_SHARE = 0.05

#: Days over which that share is taken (the most of any run of this many days): a unit
#: mistake in one month of a long run (a monthly file appended in degF) is not diluted
#: by the other months.
WARN_WINDOW_DAYS = 30

#: Standard deviations beyond its training range at which any single value of a
#: time-varying input is named by :func:`xmsgl.downscale.downscale`
#: (:class:`~xmsgl.exceptions.InputRangeWarning`), however few such node-days there are:
#: a missing-data code such as 9999.9 W m-2 on five days of one reach (135 standard
#: deviations out) moved that reach's prediction by 5 degC without a word, while the
#: share rule above waits for 5% of the node-days.
FAR_SD = 25.0


def dynamic_extrapolation(inputs: Sequence[Any], model: Any, *, share: float = WARN_DAYS_SHARE,
                          more: str | None = None) -> tuple[str, list[str]] | None:
    """A sentence on the time-varying inputs that lie far beyond their training range on
    the days run, and their names, or None when there are none (what
    :func:`xmsgl.downscale.downscale` warns of, :class:`~xmsgl.exceptions.InputRangeWarning`).

    ``inputs`` are the :class:`xmsgl.train.InputDays` a downscale reads (other entries
    are skipped). An input is named where more than ``share`` of its node-days of some
    :data:`WARN_WINDOW_DAYS` consecutive days lie more than one standard deviation (the
    model's standardization of it) beyond the range it had at the nodes with training
    observations, or, in units of a quantity that is
    never negative (:data:`xmsgl.convention.NONNEGATIVE_UNITS`, or a radiation flux,
    :data:`xmsgl.convention.RADIATION_UNITS`) and never was in
    training, where any value lies below 0 by more than that: a change of units
    (Fahrenheit labelled degC) or a missing-data code (PRMS writes -99.9) that would be
    read as a real value; or where any value lies more than :data:`FAR_SD` standard
    deviations beyond that range (a missing-data code such as 9999.9 on a few days).
    The extremes the inputs found when they were checked rule
    most inputs out without another pass over their values. A model saved before the
    ranges were recorded is not judged. ``more`` ends the sentence (where to look
    further; :func:`input_range_sentence`'s default when None).
    """
    from xmsgl.train import InputDays

    spec = model.features
    ranges = getattr(spec, "observed_range", None)
    if not ranges:
        return None
    found = [(name, ext, (lambda x=x, j=j: x.raw(j)))
             for x in inputs if isinstance(x, InputDays)
             for j, (name, ext) in enumerate(zip(x.names, x.extremes, strict=True))]
    return input_range_sentence(found, ranges, spec.std, spec.units, share=share, more=more)


def _percent_over(frac: float, share: float) -> str:
    """``frac`` as a percentage with the digits that show it above ``share`` (5.2%, not
    the 5% that read as the threshold itself).

    >>> _percent_over(0.0524, 0.05), _percent_over(0.23, 0.05), _percent_over(0.05004, 0.05)
    ('5.2%', '23%', '5.004%')
    >>> _percent_over(0.05000000001, 0.05)
    '5.000000001%'
    """
    for digits in range(0, 16):
        text = f"{100 * frac:.{digits}f}"
        if float(text) > 100 * share:
            return f"{text}%"
    return f"{100 * frac!r}%"


def input_range_sentence(inputs: Sequence[tuple[str, tuple[float, float] | None, Callable[[], np.ndarray]]],
                         ranges: Mapping[str, Sequence[float]], std: Mapping[str, float],
                         units: Mapping[str, str], *, share: float = WARN_DAYS_SHARE,
                         more: str | None = None) -> tuple[str, list[str]] | None:
    """The judgement of :func:`dynamic_extrapolation`, for any model that records its
    inputs' training ranges (``ranges``) and scales (``std``): ``inputs`` are
    ``(name, (smallest, largest) or None, values)``, ``values()`` giving the (T, N)
    values of the days run, read only where the extremes leave a doubt; ``more`` ends
    the sentence (where to look further; by default, the ``coverage`` call that lists
    them)."""
    from xmsgl.convention import NONNEGATIVE_UNITS, RADIATION_UNITS

    if more is None:
        more = "ds.msgl.coverage(model, time=...) lists the nodes and days beyond the range"

    far_parts: list[str] = []
    neg_parts: list[str] = []
    odd_parts: list[str] = []
    names: list[str] = []
    for name, ext, raw in inputs:
        if ext is None or name not in ranges:
            continue
        lo, hi = (float(v) for v in ranges[name])
        sd = float(std[name])
        vmin, vmax = ext
        if vmin >= lo - sd and vmax <= hi + sd:
            continue
        unit = str(units.get(name, ""))
        vals = raw()
        never_negative = lo >= 0 and any(same_units(unit, k[0])
                                         for k in NONNEGATIVE_UNITS + RADIATION_UNITS)
        if never_negative and vmin < -sd:
            n_neg = int(np.count_nonzero(vals < -sd))
            neg_parts.append(f"{name!r} ({unit}; {n_neg} of {vals.size} node-days, lowest "
                             f"{vmin:g}, standard deviation {sd:.3g})")
            names.append(name)
            continue
        if vmin < lo - FAR_SD * sd or vmax > hi + FAR_SD * sd:
            far = (vals < lo - FAR_SD * sd) | (vals > hi + FAR_SD * sd)
            far_vals = vals[far]
            odd_parts.append(f"{name!r} ({unit}; {far_vals.size} of {vals.size} node-days, values "
                             f"such as {', '.join(f'{v:.6g}' for v in np.unique(far_vals)[:3])} against "
                             f"{lo:.4g}..{hi:.4g} in training, standard deviation {sd:.3g})")
            names.append(name)
            continue
        frac = _largest_window_share((vals < lo - sd) | (vals > hi + sd))
        if frac > share:
            far_parts.append(f"{name!r} ({unit}; {_percent_over(frac, share)} of the node-days, values "
                             f"{vmin:.4g}..{vmax:.4g} against {lo:.4g}..{hi:.4g} in training, "
                             f"standard deviation {sd:.3g})")
            names.append(name)
    if not names:
        return None
    text = []
    if far_parts:
        text.append(f"input{'s' if len(far_parts) > 1 else ''} {', '.join(far_parts)} "
                    f"{'lie' if len(far_parts) > 1 else 'lies'} more "
                    "than a standard deviation beyond the range of the nodes with training "
                    f"observations on over {share:.0%} of the node-days of {WARN_WINDOW_DAYS} "
                    "days read (the share given is the largest over such days): check the units "
                    "(degF labelled degC, for one) and that the days resemble the training's")
    if odd_parts:
        text.append(f"input{'s' if len(odd_parts) > 1 else ''} {', '.join(odd_parts)} "
                    f"{'have' if len(odd_parts) > 1 else 'has'} values more than {FAR_SD:g} "
                    "standard deviations beyond the range of the nodes with training observations: "
                    "look for a missing-data code (9999.9, say) or a change of units, which would "
                    "be read as real values; a real extreme (a flood) is an extrapolation the model "
                    "never saw")
    if neg_parts:
        text.append(f"input{'s' if len(neg_parts) > 1 else ''} {', '.join(neg_parts)}, never "
                    f"negative in training, {'are' if len(neg_parts) > 1 else 'is'} below 0 by more "
                    "than a standard deviation: a "
                    "missing-data code (PRMS writes -99.9) or another sign convention is read as "
                    "a real value; mask it (ds[name].where(ds[name] >= 0))")
    return "; ".join(text) + f". The predictions read the values as they are: {more}", names


def warn_input_range(inputs: Sequence[tuple[str, tuple[float, float] | None, Callable[[], np.ndarray]]],
                     ranges: Mapping[str, Sequence[float]], std: Mapping[str, float],
                     units: Mapping[str, str], *, more: str) -> None:
    """Warn (:class:`~xmsgl.exceptions.InputRangeWarning`) with
    :func:`input_range_sentence`'s sentence, if there is one: what the models that
    record their inputs' ranges outside ``model.features`` (the GRU, mohseni) say."""
    from xmsgl.exceptions import InputRangeWarning, warn_at_user

    said = input_range_sentence(inputs, ranges, std, units, more=more)
    if said:
        warn_at_user(said[0], InputRangeWarning)


def _largest_window_share(far: np.ndarray) -> float:
    """The largest share of True among the node-days of any :data:`WARN_WINDOW_DAYS`
    consecutive days of ``far`` (T, N) (all days when there are fewer)."""
    n_time, n_node = far.shape
    days = min(WARN_WINDOW_DAYS, n_time)
    if days == 0 or n_node == 0:
        return 0.0
    per_day = np.count_nonzero(far, axis=1)
    run = np.concatenate([[0], np.cumsum(per_day, dtype=np.int64)])
    return float((run[days:] - run[:-days]).max()) / (days * n_node)


def warn_static_extrapolation(ds: xr.Dataset, model: Any, scale: str) -> None:
    """Warn (:class:`~xmsgl.exceptions.ExtrapolationWarning`) with
    :func:`static_extrapolation`'s sentence, if there is one, for the nodes a
    downscale to ``scale`` reads: segments and reaches for MSGL's reach output,
    reaches for fine-only, segments for remap and the coarse or cross-scale outputs."""
    from xmsgl.exceptions import warn_at_user

    dims = ((SEG,) if scale != REACH or model.output == "remap" else
            (REACH,) if model.output == "fine_only" else (SEG, REACH))
    text = static_extrapolation(ds, model, dims)
    if text:
        warn_at_user(text, ExtrapolationWarning)
