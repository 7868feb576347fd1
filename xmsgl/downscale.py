"""Apply a fitted model: fine (or coarse) stream temperature as a labeled DataArray."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
import torch
import xarray as xr

from xmsgl.convention import (
    REACH,
    SEG,
    TIME,
    expect_dataset,
    input_attrs,
    only_read,
    output_coords,
    validate,
)
from xmsgl.exceptions import (
    ChoiceError,
    ColdStartWarning,
    DataError,
    InputRangeWarning,
    ParameterError,
    TimeError,
    TimeGapWarning,
    XmsglWarning,
    check_count,
    check_flag,
    plural,
    typed_arguments,
    warn_at_user,
)
from xmsgl.model import Downscaler, _rebuild, check_compatible, load, warn_partial_network
from xmsgl.periods import period_bounds, spans_text, warn_beyond_record
from xmsgl.train import inference_windows, predict, resolve_device, time_breaks, uses_thread_option

if TYPE_CHECKING:
    from xmsgl.baselines import BaselineModel

#: ``scale`` of :func:`downscale` for MSGL's cross-scale estimate on reaches.
CROSS = "cross"

__all__ = ["downscale"]


def _time_positions(time: pd.DatetimeIndex, sel: Any, done: str = "returned") -> tuple[int, int]:
    """Positions ``[i0, i1)`` of the days ``sel`` picks; a period reaching beyond the
    days warns that only those are ``done`` (returned, judged)."""
    if len(time) == 0:
        raise TimeError("the dataset's 'time' dimension is empty; downscaling needs daily inputs")
    if sel is None:
        return 0, len(time)
    start, end = period_bounds(sel, "time")
    # Counts of days before the bounds, not ``searchsorted``: that converts the bound
    # to the index's unit and refuses a day's last instant on an axis of seconds.
    i0 = 0 if start is None else int(np.count_nonzero(np.asarray(time < start)))
    i1 = len(time) if end is None else int(np.count_nonzero(np.asarray(time <= end)))
    if i1 <= i0:
        if 0 < i0 < len(time) and (start is None or end is None or pd.Timestamp(start) <= pd.Timestamp(end)):
            # Inside the record's span, between two of its days: a gap.
            raise TimeError(
                f"time={sel!r} selects no day of the dataset: it falls in a gap of its days, "
                f"between {time[i0 - 1].date()} and {time[i0].date()}; choose days the dataset has, "
                f"or fill the gap's inputs first (xmsgl.convention.fill_daily(ds), which leaves "
                f"the observations missing)")
        raise TimeError(
            f"time={sel!r} selects no day of the dataset ({time[0].date()} to {time[-1].date()})"
        )
    warn_beyond_record(time, sel, np.arange(i0, i1), done, bounds=[(start, end)])
    return i0, i1


class _Turns:
    """The in-memory runs of one model (:func:`on_device`): runs on the CPU go side by
    side (shared), a run on an accelerator goes alone (exclusive)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextlib.contextmanager
    def take(self, exclusive: bool) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive and (not exclusive or self._shared == 0))
            if exclusive:
                self._exclusive = True
            else:
                self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                if exclusive:
                    self._exclusive = False
                else:
                    self._shared -= 1
                self._cond.notify_all()


_TURNS: weakref.WeakKeyDictionary[torch.nn.Module, _Turns] = weakref.WeakKeyDictionary()
_TURNS_LOCK = threading.Lock()

_Net = TypeVar("_Net", bound=torch.nn.Module)


@contextlib.contextmanager
def model_turn(net: torch.nn.Module, dev: torch.device) -> Iterator[None]:
    """A turn among the in-memory runs of ``net`` in this process (:class:`_Turns`): a
    run on an accelerator, or of a model that keeps run state (:func:`keeps_run_state`),
    goes alone; the others go side by side. Not re-entrant: a thread holding a turn
    moves the model with :func:`_moved`, not :func:`on_device`."""
    with _TURNS_LOCK:
        turns = _TURNS.setdefault(net, _Turns())
    with turns.take(exclusive=dev.type != "cpu" or keeps_run_state(net)):
        yield


def keeps_run_state(net: torch.nn.Module) -> bool:
    """Whether a run of ``net`` sets state on the shared model before it runs: a dmsge
    backbone keeps the dataset's node geometry (and ``explain``'s record), so two runs
    of it at once, even on the CPU, would read each other's."""
    return getattr(net, "dmsge", None) is not None


@contextlib.contextmanager
def _moved(net: _Net, dev: torch.device) -> Iterator[_Net]:
    """``net`` on ``dev`` for a run and back on the CPU after it, inside a turn."""
    try:
        yield net.to(dev)
    finally:
        net.to("cpu")


@contextlib.contextmanager
def on_device(net: _Net, dev: torch.device) -> Iterator[_Net]:
    """``net`` moved to ``dev`` for a run, and back to the CPU, where models are kept,
    after it (the move back also drops a dmsge backbone's per-run graph copies). The
    module moved is the caller's model itself, so a run on an accelerator goes alone
    among the runs of that model in the process: another thread's move back to the CPU
    would pull the weights from under it. Runs on the CPU go side by side, and runs of
    other models are not held up; a dmsge model's run goes alone on the CPU too
    (:func:`keeps_run_state`; ``downscale`` and ``explain`` hold its turn from setting
    the geometry on, with :func:`model_turn` around :func:`_moved`)."""
    with model_turn(net, dev), _moved(net, dev) as moved:
        yield moved


def long_name(scale: str) -> str:
    """The ``long_name`` of ``downscale``'s result for ``scale``, in memory and lazily."""
    what = {REACH: "fine reaches, downscaled", SEG: "coarse segments, predicted",
            CROSS: "fine reaches from the coarse states alone (cross-scale estimate), "
                   "downscaled"}[scale]
    return f"daily mean stream water temperature of {what} by xmsgl"


def _time_gaps(time: pd.DatetimeIndex, i0: int, i1: int, spinup: int) -> np.ndarray:
    """The gaps of ``time`` (:func:`~xmsgl.train.time_breaks`), for the inference windows.

    Warns (:class:`~xmsgl.exceptions.TimeGapWarning`) when the days used, warm-up
    included, have gaps: the recurrence restarts after each one; and
    (:class:`~xmsgl.exceptions.ColdStartWarning`) when more than half of the days
    returned have fewer than ``spinup`` days of inputs before them.
    """
    breaks = time_breaks(time)
    used = breaks[(breaks > i0 - spinup) & (breaks < i1)]
    if used.size:
        # The days either side of each gap, and how many are missing between them (the
        # two dates read as the missing days themselves).
        shown = ", ".join(
            f"between {time[b - 1].date()} and {time[b].date()}: "
            f"{plural((time[b] - time[b - 1]).days - 1, 'day')} missing" for b in used[:3])
        more = f" and {used.size - 3} more" if used.size > 3 else ""
        warn_at_user(
            f"the days used have {used.size} gap{'s' if used.size > 1 else ''} in 'time' ({shown}"
            f"{more}): the recurrent state restarts after each with a fresh state, as at the "
            f"start of the record, so the first days after a gap have less than spinup={spinup} "
            "days of warm-up. To run through a gap, make the steps daily and fill the inputs "
            "(xmsgl.convention.fill_daily(ds, max_gap=...), which leaves the observations "
            "missing)",
            TimeGapWarning)
    spans = _short_spans(len(time), i0, i1, spinup, breaks)
    n_short = sum(z - a for a, z in spans)
    if 2 * n_short > i1 - i0:
        warn_at_user(
            f"{n_short} of the {i1 - i0} days returned ({_spans_text(time, spans)}) have fewer than "
            f"spinup={spinup} days of inputs before them: the recurrent state starts fresh "
            "at the dataset's first day (and after a gap) and warms up over them, so these are "
            "cold-start values (on the Delaware files a month downscaled alone was 3.9 degC "
            "off on its first day and 0.2 on its eleventh; docs/scripts/cold_start.py). "
            f"Give the dataset {spinup} days of inputs before the first day you want and "
            "select that day with time=, or leave the days listed in the result's "
            "xmsgl_short_warmup out",
            ColdStartWarning)
    return breaks


def short_warmup(times: pd.DatetimeIndex, i0: int, i1: int, spinup: int, breaks: np.ndarray) -> str:
    """The output days (positions ``i0`` to ``i1``) whose recurrent state had fewer
    than ``spinup`` days of warm-up, as ISO intervals ``"first/last"`` joined by
    ``", "``; ``""`` when there are none.

    The state starts fresh at the first day of the record and after each gap
    (``breaks``), so the days after those starts that are closer to them than
    ``spinup`` days are less warmed up than the rest of the output.
    """
    return _spans_text(times, _short_spans(len(times), i0, i1, spinup, breaks))


def _short_spans(n_times: int, i0: int, i1: int, spinup: int, breaks: np.ndarray
                 ) -> list[tuple[int, int]]:
    """Positions ``(a, z)`` (``z`` exclusive) of the days ``i0`` to ``i1`` that follow
    a fresh state (the first day, or a gap of ``breaks``) by fewer than ``spinup`` days."""
    starts = [0, *(int(b) for b in breaks), n_times]
    spans = [(max(b, i0), min(b + spinup, nxt, i1)) for b, nxt in zip(starts[:-1], starts[1:], strict=True)]
    return [(a, z) for a, z in spans if a < z]


def _spans_text(times: pd.DatetimeIndex, spans: list[tuple[int, int]]) -> str:
    """``spans`` of positions as ISO intervals ``"first/last"`` joined by ``", "``."""
    return ", ".join(f"{times[a].date()}/{times[z - 1].date()}" for a, z in spans)


def merge_spans(spans: list[Any]) -> list[tuple[str, str]]:
    """Date spans ``(first, last)`` (ISO dates, ends included) merged where they
    overlap or touch, in order.

    Examples
    --------
    >>> merge_spans([("2001-01-01", "2001-03-31"), ("2000-10-01", "2001-01-05"), ("2001-04-01", "2001-05-01")])
    [('2000-10-01', '2001-05-01')]
    """
    out: list[list[pd.Timestamp]] = []
    for a, b in sorted((pd.Timestamp(a), pd.Timestamp(b)) for a, b in spans):
        if out and a <= out[-1][1] + pd.Timedelta(days=1):
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(str(a.date()), str(b.date())) for a, b in out]


def output_attrs(model: Downscaler, scale: str, times: pd.DatetimeIndex, i0: int, i1: int,
                 spinup: int, breaks: np.ndarray, history: str,
                 inputs: Mapping[str, Any] | None = None, read_end: int | None = None) -> dict[str, Any]:
    """The attributes of a downscaled DataArray, in memory and lazy alike; ``inputs``
    (the input dataset's attributes) gives the :data:`xmsgl.convention.INPUT_ATTRS` it has;
    ``read_end``: where the run's inputs end (after the look-ahead, cut where they stop
    being finite), else where the record or a gap ends it."""
    attrs: dict[str, Any] = {
        "units": "degC",
        "long_name": long_name(scale),
        "cell_methods": "time: mean",
        "xmsgl_method": model.method,
        "xmsgl_model_sha256": model.sha256,
    }
    periods = model.config.get("periods", {})
    # Every day whose targets a stage of the fit read: training, and ASYNC-MSGL's
    # stage A (coarse targets carried to the reaches).
    train = merge_spans([*(periods.get("train") or []), *(periods.get("stage_a") or [])])
    if train:
        attrs["xmsgl_train_periods"] = spans_text(train)
    val = merge_spans(periods.get("val") or [])
    if val:  # its observations chose the checkpoint
        attrs["xmsgl_val_periods"] = spans_text(val)
    test = merge_spans(periods.get("test") or [])
    if test:  # held out of the fit: the days to score it on
        attrs["xmsgl_test_periods"] = spans_text(test)
    if isinstance(model.config.get("seed"), int):
        attrs["xmsgl_seed"] = int(model.config["seed"])
    short = short_warmup(times, i0, i1, spinup, breaks)
    if short:
        attrs["xmsgl_short_warmup"] = short
    cut = _short_lookahead(model, scale, times, i0, i1, breaks, read_end)
    if cut:
        attrs["xmsgl_short_lookahead"] = cut
    attrs.update(input_attrs(inputs or {}))
    attrs["history"] = history
    return attrs


def _short_lookahead(model: Downscaler, scale: str, times: pd.DatetimeIndex, i0: int, i1: int,
                     breaks: np.ndarray, read_end: int | None = None) -> str | None:
    """The last days returned whose look-ahead the record's end (or a gap after them,
    or ``read_end``: where the inputs stop being finite, known to the in-memory run
    only) may cut short, as an ISO interval, for a prediction through the cross-scale
    head's attention; ``None`` where there are none. The bound is the head's whole
    look-ahead: which of these days change once later days are in the input depends
    on where the attention spans fall on their calendar grid (by up to 0.7 degC on the
    last week of a month run at the end of the record). Warned of
    (:class:`~xmsgl.exceptions.XmsglWarning`) when they are more than half of the days
    returned, as a month appended each month is."""
    look = _lookahead(model, scale)
    if not look:
        return None
    end = lookahead_end(model, scale, times, i1, breaks) if read_end is None else read_end
    first = max(i0, end - look)
    if first >= i1:
        return None
    span = f"{times[first].date()}/{times[i1 - 1].date()}"
    if 2 * (i1 - first) > i1 - i0:
        warn_at_user(
            f"{i1 - first} of the {i1 - i0} days returned ({span}) have fewer than the "
            f"{look} days after them that this model's cross-scale attention may read (the "
            "record ends, has a gap or its inputs stop sooner): their values can change once "
            "later inputs are given (the last ones most), so a store appended period by period "
            "can keep values no later run gives; "
            f"ask for days that end {look} days before the inputs do, or run them again "
            "when later inputs come (named in xmsgl_short_lookahead)",
            XmsglWarning)
    return span


def _lookahead(model: Downscaler, scale: str) -> int:
    """Days after a day that the prediction of ``scale`` reads (the cross-scale head's
    attention; none for segments)."""
    return 0 if scale == SEG else model.net.lookahead(model.output if scale == REACH else "cross")


def lookahead_end(model: Downscaler, scale: str, times: pd.DatetimeIndex, i1: int,
                  breaks: np.ndarray) -> int:
    """Where the inputs of a run ending at ``i1`` (exclusive) need to end: up to the
    cross-scale head's look-ahead later (:meth:`CrossScaleHead.lookahead`) for a
    prediction that goes through its attention (:meth:`MSGLNet.reads_attention`),
    where the record goes on without a gap, so that the last kept days' attention
    spans are whole."""
    look = _lookahead(model, scale)
    if not look:
        return i1
    stop = int(np.min(breaks[breaks >= i1], initial=len(times)))
    return min(i1 + look, stop)


def _finite_end(ds: xr.Dataset, model: Downscaler, scale: str, i1: int, e1: int) -> int:
    """``e1`` brought back to the first day after ``i1`` on which an input the run
    reads is not finite: the look-ahead reads days after the requested ones where the
    record goes on, and a record whose forcings stop (NaN from some day on) still
    downscales the days before. (Days the run keeps or warms up on must be complete;
    the inputs' check names them.)"""
    if e1 <= i1:
        return e1
    spec = model.features
    names = spec.seg_vars if scale != REACH or model.output == "remap" else (
        spec.reach_vars + (spec.seg_vars if model.output != "fine_only" else []))
    ok = np.ones(e1 - i1, dtype=bool)
    for name in names:
        da = ds[name]
        if TIME in da.dims:
            vals = np.asarray(da.isel({TIME: slice(i1, e1)}).transpose(TIME, ...).values)
            ok &= np.isfinite(vals.reshape(e1 - i1, -1)).all(axis=1)
    return i1 + int(np.argmin(ok)) if not ok.all() else e1


def check_model_scale(model: Downscaler | BaselineModel, scale: str, lazy_args: list[str],
                      check_graph: bool = True) -> None:
    """Refuse what ``model`` cannot give, before any data is read: a scale it has no
    output for, and (for a baseline, which predicts in memory on the reaches it was
    fitted on) the block arguments ``lazy_args`` and ``check_graph=False``, which it
    would ignore."""
    from xmsgl.baselines import BaselineModel

    if scale == CROSS and (isinstance(model, BaselineModel) or model.output != "fine"):
        raise ParameterError(
            f"method {model.method!r} has no cross-scale estimate; scale='cross' needs a msgl "
            "or async-msgl model"
        )
    if isinstance(model, BaselineModel):
        if scale == SEG:
            raise ParameterError(
                f"baseline {model.method!r} predicts reaches only; use scale='reach', or a msgl, "
                "async-msgl or remap model for segments"
            )
        if lazy_args:
            raise ParameterError(
                f"method {model.method!r} computes its prediction in memory, from the inputs "
                f"at once (dask-backed ones included), so {lazy_args} would be ignored: "
                f"drop them, or use a network model for a lazy result"
            )
        if not check_graph:
            raise ParameterError(
                f"baseline {model.method!r} predicts the reaches it was fitted on, matched by id, "
                "and cannot run on another network: check_graph=False would be ignored; leave it "
                "out, or use a network model")
    elif scale == SEG and model.output == "fine_only":
        raise ParameterError(
            f"method {model.method!r} has no coarse prediction; use scale='reach', or a "
            "msgl, async-msgl or remap model"
        )


@typed_arguments
@uses_thread_option
def downscale(
    ds: xr.Dataset,
    model_or_path: Downscaler | BaselineModel | str | os.PathLike[str],
    *,
    scale: str = "reach",
    time: Any = None,
    device: str | torch.device = "auto",
    spinup: int = 180,
    chunk: int = 365,
    batch_size: int | None = None,
    check_graph: bool = True,
    lazy: bool | None = None,
    reach_chunk: int | None = None,
    time_block: int | None = None,
    halo: int | None = None,
    threads: int | None = 1,
) -> xr.DataArray:
    """Downscale stream temperature with a fitted model.

    Nodes are matched by id: the graphs and inputs are built from ``ds`` itself and
    the result follows ``ds``'s order, whatever order the model was fitted in.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention with the model's input variables (same names
        and units); targets are not needed.
    model_or_path : Downscaler, BaselineModel or path
        A fitted model or the folder of a saved one. A baseline
        (:class:`~xmsgl.baselines.BaselineModel`) gives
        ``model.predict(ds, time=time)``; the arguments of the networks
        (``device``, ``batch_size``, ...) do not apply to it (it runs on the CPU;
        they are checked all the same, as its fit checks ``device``), and ``spinup`` or
        ``chunk`` other than their defaults, which it would ignore, raise
        :class:`~xmsgl.exceptions.ParameterError` (the GRU runs in the windows it
        was fitted with).
    scale : {"reach", "seg", "cross"}, default "reach"
        ``"reach"`` for the fine prediction; ``"seg"`` for the coarse head's
        prediction (methods with a coarse task: msgl, async-msgl, remap);
        ``"cross"`` for the cross-scale estimate of msgl and async-msgl models
        (task 1, on reaches): what the coarse states carried to each reach say
        before the fine task refines it with the reach graph. Compare it with
        ``"reach"`` to see how much the fine scale changes. In memory only.
        ``"seg"`` and ``"cross"`` read the segment inputs only: the reach inputs
        may be absent, and only the coarse recurrence runs.
    time : (start, end) or slice, optional
        Days to return (ends included); default all. Up to ``spinup`` earlier days
        of ``ds`` warm the recurrent state up, and the period's windows of ``chunk``
        days start at its first day, so a run with ``time=`` can differ slightly from
        the same days sliced out of a run over the whole record, whose windows start
        elsewhere (by up to 1.2e-3 degC in a check on a 30-segment synthetic basin:
        the warm-up's effect). A period reaching before or past the
        days of ``ds`` returns the days it has, with an
        :class:`~xmsgl.exceptions.XmsglWarning` naming them. A gap in ``ds``'s days (a day that
        does not follow the one before) restarts the recurrence with a fresh state,
        as at the start of the record, with a
        :class:`~xmsgl.exceptions.TimeGapWarning`: no state is carried across it.
    device : str, default "auto"
        ``"auto"`` (cuda, then mps, then cpu) or a torch device.
    spinup, chunk : int, default 180, 365
        Each window of ``chunk`` output days starts ``spinup`` days earlier with a
        fresh state, as in training.
    batch_size : int, optional
        Windows run side by side; default by memory.
    check_graph : bool, default True
        Refuse a dataset whose river graph differs from the model's
        (:class:`~xmsgl.exceptions.ModelMismatchError`). ``False`` applies the
        model to another network, or to part of its own, on purpose (its weights are
        node-agnostic; the edges are weighed with the training network's distance
        statistics, ``config["graph"]["weight_stats"]``).
    lazy : bool, optional
        Default: lazy when an input variable the model reads is dask-backed. The lazy
        path (:func:`xmsgl.scale.downscale_lazy`) computes nothing during the call and
        returns a dask-backed DataArray made block by block of whole drainage
        components with :func:`xarray.map_blocks`; ``False`` loads the inputs and runs
        in memory. See ``docs/pangeo.md``. The baselines of
        :data:`xmsgl.baselines.BASELINES` and ``"gru"`` always run in memory (dask-backed
        inputs are computed during the call): ``lazy=True``, ``reach_chunk``,
        ``time_block`` and ``halo`` are refused for them.
    reach_chunk : int, optional
        Lazy path: core reaches per block (4,000 when None).
    time_block : int, optional
        Lazy path (``chunk`` when None): output days per time block, a multiple of ``chunk``; each block
        starts ``spinup`` days earlier, so blocks reproduce the in-memory windows.
    halo : int, optional
        Lazy path: segment hops of halo around a piece of a drainage component too
        large for one block (its predictions are dropped), grown on the side the
        model's graph reads. Default (:func:`xmsgl.scale.default_halo`): for a
        ``"downstream"`` graph, the whole path to the outlet (exact); otherwise the
        graph's reach in segments (``max_hops``, or what ``max_distance`` spans)
        plus :data:`xmsgl.scale.HALO_MARGIN`; without a cut, components are kept
        whole.
    threads : int or None, default 1
        Lazy path only: torch threads per worker process (process-wide); ``None``
        leaves torch's setting. In memory it is not read: the run uses
        ``xmsgl.set_options(torch_threads=...)``, else torch's own setting.

    Returns
    -------
    xarray.DataArray
        float32 on (``reach``, ``time``) (or (``seg``, ``time``)), ``units="degC"``,
        ``cell_methods="time: mean"``, with the coordinates of ``ds`` along those
        dimensions and a ``history`` line naming the time of the run, the days
        returned, xmsgl version, method, model hash and device. ``xmsgl_train_periods``
        gives the model's training days (``xmsgl_val_periods``, ``xmsgl_test_periods``
        its validation and held-out days, ``xmsgl_seed`` its seed), and
        ``xmsgl_short_warmup`` (only where
        there are such days) the days returned whose recurrent state had fewer than
        ``spinup`` days of warm-up (the first days of the record and after a gap,
        as ISO intervals ``"first/last"``): they are less reliable, by up to a few
        degC in the first weeks; start ``ds`` earlier, or leave them out.
        The values are not bounded (winter days can fall below 0 degC; clip them
        where that matters), and nodes whose static inputs lie beyond those of the
        observed nodes are extrapolations: :func:`xmsgl.coverage.coverage`
        (``ds.msgl.coverage(model)``) names them. Where a static input lies more
        than :data:`xmsgl.coverage.WARN_SD` (5) standard deviations beyond the
        observed nodes' range, downscale warns
        (:class:`~xmsgl.exceptions.ExtrapolationWarning`) with the count, the first
        ids and the farthest node.

    Raises
    ------
    ModelMismatchError
        A missing input variable, other units, or another river graph.
    DataError
        NaN in an input over the days used, or a value far beyond any the model
        learned from.
    UnitsError
        A temperature input outside its plausible range (a fill value such as -9999
        left in the data), named with the node and day.
    ParameterError
        An unknown ``scale``, a negative ``spinup``, a ``chunk`` or ``threads`` below
        1, a ``check_graph`` or ``lazy`` other than True or False (``lazy`` None too;
        a string such as ``"false"`` would read as True), or something other than a
        model or a model folder as ``model``.
    TimeError, PeriodError
        ``time`` selects no day of ``ds``, is reversed, or is more than one period.
    SchemaError, TopologyError
        ``ds`` is not a dataset in the convention (see :func:`xmsgl.validate`).

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2003-09-30")
    >>> model = ds.msgl.fit(method="remap", epochs=1, progress=False)  # doctest: +SKIP
    >>> ds.msgl.downscale(model).dims  # doctest: +SKIP
    ('reach', 'time')
    """
    import xmsgl
    from xmsgl.baselines import BaselineModel
    from xmsgl.coverage import dynamic_extrapolation, warn_static_extrapolation
    from xmsgl.graph import build_graphs_weighted
    from xmsgl.scale import block_options, downscale_lazy, is_lazy

    expect_dataset(ds)
    if scale not in (REACH, SEG, CROSS):
        raise ChoiceError(f"scale={scale!r} is not known; use 'reach', 'seg' or 'cross'")
    check_count("spinup", spinup, least=0)
    check_count("chunk", chunk)
    if batch_size is not None:
        check_count("batch_size", batch_size)
    if threads is not None:
        check_count("threads", threads)
    check_flag("check_graph", check_graph)
    check_flag("lazy", lazy, none=True)
    blocks = block_options(reach_chunk, time_block, halo)
    model = (model_or_path if isinstance(model_or_path, (Downscaler, BaselineModel))
             else load(model_or_path))
    check_model_scale(model, scale, sorted(["lazy", *blocks] if lazy is not None and lazy is not False
                                           else blocks), check_graph=bool(check_graph))
    if isinstance(model, BaselineModel):
        windows = [f"{k}={v}" for k, v, d in (("spinup", spinup, 180), ("chunk", chunk, 365)) if v != d]
        if windows:
            # The GRU warms up and runs in windows of its own (its config's spinup and
            # chunk); the other baselines have none. Either way these were ignored.
            raise ParameterError(
                f"{windows} shape a network's inference windows; baseline {model.method!r} "
                + ("runs in the windows it was fitted with (spinup "
                   f"{model.config.get('hyperparameters', {}).get('spinup', 180)}, chunk "
                   f"{model.config.get('hyperparameters', {}).get('chunk', 365)} days)"
                   if model.method == "gru" else "predicts each day on its own")
                + ", so they would be ignored: leave them out")
        # It runs on the CPU; a device is still checked as for the networks and as
        # a baseline's fit checks it (device="banana" was accepted without a word).
        resolve_device(device)
        # Its predict warns of a period reaching beyond the days, as for the networks.
        return model.predict(ds, time=time)
    inputs = model.features.seg_vars + model.features.reach_vars
    ds = validate(only_read(ds, inputs), check_values=False)
    if TIME not in ds.dims:
        raise DataError("the dataset has no 'time' dimension; downscaling needs daily inputs")
    asked_lazy = lazy
    if lazy is None:
        lazy = is_lazy(ds, inputs)
    if lazy and scale == CROSS:
        raise ParameterError("scale='cross' runs in memory only; pass lazy=False (or load the inputs)")
    if not lazy and blocks:
        why = ("lazy=False was given" if asked_lazy is False else
               "the inputs the model reads are in memory (not dask-backed)")
        raise ParameterError(
            f"{sorted(blocks)} shape the lazy run's blocks, but this run is in memory ({why}), so they "
            "would be ignored: pass lazy=True to run in blocks (it takes in-memory inputs too), "
            "or drop them")
    if lazy:
        from xmsgl.options import get_option
        from xmsgl.train import check_device_name

        # Its availability is judged where the blocks are computed; a name that is no
        # device is refused now, not once a cluster runs the graph.
        check_device_name(device)
        if str(device) == "auto" and get_option("device") != "auto":
            # The blocks resolve the device when they are computed, perhaps after a
            # set_options(device=...) block has ended or in worker processes that never
            # saw it: the device the option names now goes with them.
            device = get_option("device")

        return downscale_lazy(
            ds, model,
            model_path=model_or_path if isinstance(model_or_path, (str, os.PathLike)) else None,
            scale=scale, time=time, device=str(device), spinup=spinup, chunk=chunk,
            batch_size=batch_size, check_graph=check_graph, reach_chunk=reach_chunk,
            time_block=time_block, halo=halo, threads=threads)
    # Another network, or part of the model's own (check_graph=False): its edges
    # weighed as in training.
    graphs = build_graphs_weighted(ds, None if check_graph else model.config["graph"].get("weight_stats"),
                                   **model.config["graph"].get("options", {}))
    # The coarse prediction and the cross-scale estimate come from the coarse states
    # alone: they read segment inputs only.
    inputs_of = REACH if scale == REACH else SEG
    if check_graph:
        check_compatible(model, ds, graphs, inputs_of)
    else:
        check_compatible_vars_only(model, ds, inputs_of)
        warn_partial_network(model, graphs)
    times = pd.DatetimeIndex(ds[TIME].values)
    i0, i1 = _time_positions(times, time)
    breaks = _time_gaps(times, i0, i1, int(spinup))
    # The first window's warm-up: spinup days early, never across a gap.
    s0 = inference_windows(i0, i1, int(chunk), int(spinup), breaks)[0][0]
    e1 = _finite_end(ds, model, scale, i1, lookahead_end(model, scale, times, i1, breaks))
    dev = resolve_device(device)
    # A dmsge model's run sets the dataset's geometry on the shared model first: its
    # whole run goes alone among this model's runs (two threads on two networks read
    # each other's geometry, or failed); the cell's runs on the CPU go side by side.
    with model_turn(model.net, dev):
        data = _rebuild(model, ds, graphs, dev, slice(s0, e1), reach_inputs=scale == REACH)
        # Nodes far beyond what training saw, once the inputs are known to be usable (the
        # lazy path warns the same way).
        warn_static_extrapolation(ds, model, scale)
        # Inputs on the days run far beyond their training range (a change of units, a
        # missing-data code), found from the extremes the inputs' checks took.
        # The days run reach beyond those asked for (the warm-up, and what the
        # attention reads after them): coverage judges only the days it is given.
        first, last = times[s0].date(), times[e1 - 1].date()
        found = dynamic_extrapolation(
            [data.x_seg, data.x_reach], model,
            more=f"ds.msgl.coverage(model, time=('{first}', '{last}')) lists the nodes and days "
                 "beyond the range over the days run"
                 + (f", the {i0 - s0} days of warm-up before those asked for included"
                    if i0 > s0 else ""))
        if found:
            warn_at_user(found[0], InputRangeWarning)
        with _moved(model.net, dev) as net:
            # For segments only the coarse recurrence and head run.
            output = {REACH: model.output, SEG: "coarse", CROSS: "cross"}[scale]
            out = predict(net, data, i0 - s0, i1 - s0, output=output, device=dev, chunk=int(chunk),
                          spinup=int(spinup), batch_size=batch_size)
    tgt = model.config["targets"]
    key = "seg" if scale == SEG else "reach"  # the cross-scale estimate is on reaches
    values = out[key]  # float32 (T, N), predict's own: back to degC in place
    values *= np.float32(tgt["std"])
    values += np.float32(tgt["mean"])
    values = values.T
    dim = SEG if scale == SEG else REACH
    coords = output_coords(ds.isel({TIME: slice(i0, i1)}), dim)
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    history = (f"{now} UTC: xmsgl {xmsgl.__version__} downscale(method={model.method!r}, "
               f"scale={scale!r}, time={times[i0].date()}/{times[i1 - 1].date()}, model "
               f"sha256={model.sha256[:16]}, device={str(dev)!r}, spinup={int(spinup)}, "
               f"chunk={int(chunk)}, check_graph={bool(check_graph)})")
    return xr.DataArray(
        values,
        dims=(dim, TIME),
        coords=coords,
        name="reach_temp_cross" if scale == CROSS else f"{dim}_temp_pred",
        attrs=output_attrs(model, scale, times, i0, i1, int(spinup), breaks, history, ds.attrs,
                           read_end=e1),
    )


def check_compatible_vars_only(model: Downscaler, ds: xr.Dataset, scale: str) -> None:
    """Variable checks of :func:`xmsgl.model.check_compatible`, without the graph."""

    class _Same:
        """The model's own graph, as far as check_compatible reads it."""

        @staticmethod
        def fingerprint_of_version(version: int) -> tuple[str, dict[str, str]]:
            g = model.config["graph"]
            return g["fingerprint"], g.get("fingerprint_parts", {})

    check_compatible(model, ds, _Same(), scale)
