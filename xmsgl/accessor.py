"""The ``ds.msgl`` accessor: thin methods that forward to xmsgl's functions.

The accessor holds no trained state: fitting returns an :class:`xmsgl.Downscaler`
that the user keeps, saves and passes back to :meth:`MsglAccessor.downscale`.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
from typing import TYPE_CHECKING, Any

import xarray as xr

from xmsgl.exceptions import ParameterError, check_keywords

if TYPE_CHECKING:
    from xmsgl.baselines import BaselineModel
    from xmsgl.graph import RiverGraphs
    from xmsgl.model import Downscaler

__all__ = ["MsglAccessor"]


class _Forward:
    """An accessor method calling ``xmsgl.<module>.<name>(ds, ...)``.

    Looked up, it imports that function (not before: importing xmsgl and building an
    accessor stay light) and wears its signature, less ``ds``, and its docstring, so that
    ``help(ds.msgl.downscale)`` and a notebook's signature pop-up show the arguments.
    Arguments the function does not take are a ``ParameterError`` naming the method
    (and, for a keyword, the closest the function takes; ``check=False``: ``fit``
    passes unknown keywords on to the baselines, which judge them).
    """

    def __init__(self, module: str, name: str, check: bool = True) -> None:
        self.module, self.name, self.check = module, name, check
        self._built: tuple[Any, Any] | None = None  # (function, method wearing it)

    def __set_name__(self, owner: type, attr: str) -> None:
        self.attr = attr

    def _method(self) -> Any:
        func = getattr(importlib.import_module(self.module), self.name)
        built = self._built
        if built is not None and built[0] is func:
            return built[1]  # the same object at every lookup: ds.msgl.fit == ds.msgl.fit
        module, name, where, check = self.module, self.name, f"ds.msgl.{self.attr}", self.check
        signature = inspect.signature(func)

        def method(accessor: MsglAccessor, *args: Any, **kwargs: Any) -> Any:
            if "ds" in kwargs:
                raise ParameterError(f"{where}() is called on its dataset (ds.msgl); leave ds= out")
            if check:
                check_keywords(func, kwargs, where, ("ds",))
            try:
                signature.bind(accessor._ds, *args, **kwargs)
            except TypeError as err:  # Python's count would include the dataset
                raise ParameterError(f"{where}(): {err}; it takes {_takes(signature)}") from None
            return func(accessor._ds, *args, **kwargs)

        # __wrapped__ gives inspect.signature the function's parameters; bound, the
        # first (ds) is the accessor's own and is dropped. The method keeps its own
        # name: pickle finds a bound method by it.
        functools.update_wrapper(method, func)
        method.__name__, method.__qualname__ = self.attr, f"MsglAccessor.{self.attr}"
        method.__module__ = __name__
        method.__doc__ = f"``{where}(...)`` is ``{module}.{name}(ds, ...)``:\n\n" + (func.__doc__ or "")
        self._built = (func, method)  # built again if the module's function is replaced
        return method

    def __get__(self, accessor: MsglAccessor | None, owner: type | None = None) -> Any:
        method = self._method()
        return method if accessor is None else types.MethodType(method, accessor)


def _takes(signature: inspect.Signature) -> str:
    """The arguments after the dataset, as a call reads them: ``(keep=0.01, *, ...)``."""
    params = [p.replace(annotation=p.empty) for p in list(signature.parameters.values())[1:]]
    return str(signature.replace(parameters=params, return_annotation=signature.empty))


@xr.register_dataset_accessor("msgl")
class MsglAccessor:
    """Multi-scale river methods on an :class:`xarray.Dataset` (``ds.msgl``).

    Each forwards to one of xmsgl's functions with the dataset as its first argument:
    ``validate`` (:func:`xmsgl.convention.validate`), ``to_convention``
    (:func:`xmsgl.convention.to_convention`), ``graphs``
    (:func:`xmsgl.graph.build_graphs`), ``fit`` (:func:`xmsgl.model.fit`: a network
    method gives a :class:`~xmsgl.Downscaler`, a baseline a
    :class:`~xmsgl.baselines.BaselineModel`, ``"gru"`` a :class:`~xmsgl.nn.gru.GRUModel`),
    ``downscale`` (:func:`xmsgl.downscale.downscale`, with a fitted model or a saved
    model's path), ``coverage`` (:func:`xmsgl.coverage.coverage`), ``sparsify``
    (:func:`xmsgl.sampling.sparsify`) and ``evaluate`` (below).
    """

    def __init__(self, ds: xr.Dataset) -> None:
        # Accessors are built for every object they are used on; never raise here.
        self._ds = ds

    if TYPE_CHECKING:  # what type checkers see; at run time the _Forward below
        def validate(self, **kwargs: Any) -> xr.Dataset: ...
        def to_convention(self, **kwargs: Any) -> xr.Dataset: ...
        def graphs(self, **kwargs: Any) -> RiverGraphs: ...
        def fit(self, method: str = "msgl", **kwargs: Any) -> Downscaler | BaselineModel: ...
        def downscale(self, model_or_path: Any, **kwargs: Any) -> xr.DataArray: ...
        def coverage(self, model: Any, **kwargs: Any) -> xr.Dataset: ...
        def sparsify(self, keep: float = 0.01, seed: int = 42, by: str = "observation",
                     period: Any = None, variable: str = "reach_temp") -> xr.Dataset: ...
    else:
        validate = _Forward("xmsgl.convention", "validate")
        to_convention = _Forward("xmsgl.convention", "to_convention")
        graphs = _Forward("xmsgl.graph", "build_graphs")
        fit = _Forward("xmsgl.model", "fit", check=False)
        downscale = _Forward("xmsgl.downscale", "downscale")
        coverage = _Forward("xmsgl.coverage", "coverage")
        sparsify = _Forward("xmsgl.sampling", "sparsify")

    def evaluate(
        self, prediction: xr.DataArray, observed: xr.DataArray | None = None, **kwargs: Any
    ) -> xr.Dataset:
        """Score ``prediction`` against this dataset; see :func:`xmsgl.evaluate.evaluate`.

        ``observed`` defaults to the full truth ``reach_temp_true`` when the dataset
        has it (the synthetic basin), else to the observations ``reach_temp``; for a
        prediction on segments (``scale="seg"``), ``seg_temp_true``, else ``seg_temp``.
        Scored against the observations (by default, or ``reach_temp`` / ``seg_temp``
        passed as ``observed``), a prediction whose model was fitted on some
        of the scored observations (its ``xmsgl_train_periods``) or chose its checkpoint
        on them (its ``xmsgl_val_periods``), or one of the
        ``"idw"`` and ``"harmonic"`` baselines, which reproduce the observations they
        are given, gets an :class:`~xmsgl.exceptions.InSampleWarning`: such scores are
        in-sample. Scored against the truth (``reach_temp_true`` / ``seg_temp_true``), it
        warns the same way when some of the pairs scored inside those periods are
        node-days where the dataset has observations (``reach_temp`` / ``seg_temp``),
        with their count and share: there the truth is what the model was fitted on, up
        to the observations' noise.
        """
        from xmsgl.evaluate import evaluate

        check_keywords(evaluate, kwargs, "ds.msgl.evaluate")
        if observed is None:
            # A segment prediction (scale="seg") is scored against the segments'.
            scale = "seg" if "seg" in getattr(prediction, "dims", ()) else "reach"
            names = (f"{scale}_temp_true", f"{scale}_temp")
            for name in names:
                if name in self._ds:
                    observed = self._ds[name]
                    break
            else:
                from xmsgl.exceptions import SchemaError

                raise SchemaError(
                    f"the dataset has neither {names[0]!r} nor {names[1]!r} to score "
                    "against; pass observed=<DataArray>"
                )
        # Scored first: its checks (duplicated labels, calendars, units) are the typed errors
        # a bad pair gets, before the in-sample judgement reads the pair's dates.
        result = evaluate(prediction, observed, **kwargs)
        scored = getattr(observed, "name", None)
        if scored in ("reach_temp", "seg_temp"):
            # Observations, by default or passed by hand: in-sample where the model read them.
            _warn_in_sample(prediction, observed)
        elif scored in ("reach_temp_true", "seg_temp_true") and str(scored)[:-5] in self._ds:
            # The truth is in-sample too at the node-days whose observations the model read.
            copied = None
            if (scored == "reach_temp_true"
                    and getattr(prediction, "attrs", {}).get("xmsgl_method") in ("idw", "harmonic")):
                from xmsgl.baselines import coarse_copies

                copied = coarse_copies(self._ds)
            _warn_in_sample(prediction, observed, read=self._ds[str(scored)[:-5]], copied=copied)
        return result


def _paired(observed: xr.DataArray, prediction: xr.DataArray) -> xr.DataArray:
    """Where ``observed`` has a value and ``prediction`` one beside it (by coordinate).

    A dask-backed prediction is not computed for this (``evaluate`` stays lazy on it):
    it is taken to have a value wherever it has coordinates.
    """
    there = observed.notnull()
    if prediction.chunks is None:
        return there & prediction.notnull()
    for dim in prediction.dims:
        if dim in there.dims and dim in there.indexes and dim in prediction.indexes:
            there = there.sel({dim: there.indexes[dim].isin(prediction.indexes[dim])})
    return there


def _share(n: int, total: int) -> str:
    """``n`` of ``total`` as a percentage, two significant figures below 10%, so that
    a small share is not printed as zero, and never 0% or 100% unless it is.

    Examples
    --------
    >>> _share(87, 211845), _share(1, 3), _share(3, 3), _share(999, 1000), _share(1, 10**7)
    ('0.041%', '33%', '100%', '99.9%', '0.00001%')
    >>> _share(99_999, 100_000)
    '99.999%'
    """
    import numpy as np

    share = 100 * n / max(total, 1)
    text = (f"{share:.0f}" if share >= 10 else
            np.format_float_positional(share, precision=2, unique=True, fractional=False, trim="-"))
    digits = 3
    while n < total and text == "100" and digits < 17:  # 99.9%, 99.99%...: not all of them
        text = np.format_float_positional(share, precision=digits, unique=True, fractional=False,
                                          trim="-")
        digits += 1
    return f"{text}%"


def _counts(*sums: xr.DataArray) -> list[int]:
    """The integer sums ``sums``, those on dask computed in one pass."""
    lazy = [i for i, a in enumerate(sums) if a.chunks is not None]
    out = [int(a) if a.chunks is None else 0 for a in sums]
    if lazy:
        import dask

        for i, value in zip(lazy, dask.compute(*(sums[i] for i in lazy))):
            out[i] = int(value)
    return out


def _warn_in_sample(prediction: xr.DataArray, observed: xr.DataArray,
                    read: xr.DataArray | None = None, copied: xr.DataArray | None = None) -> None:
    """Warn when ``prediction`` is scored on observations it was fitted on or given.

    ``read``: the observations behind a truth ``observed`` (``reach_temp`` behind
    ``reach_temp_true``): the pairs scored at their node-days inside the model's
    periods are in-sample, the others are not. ``copied``: the node-days where an
    ``idw`` or ``harmonic`` prediction returns a coarse observation
    (:func:`xmsgl.baselines.coarse_copies`), in-sample too.
    """
    import pandas as pd

    from xmsgl.exceptions import InSampleWarning, warn_at_user

    if not isinstance(prediction, xr.DataArray) or not isinstance(observed, xr.DataArray):
        return  # refused by evaluate, with the fix
    method = prediction.attrs.get("xmsgl_method")
    if method in ("idw", "harmonic") and read is None:
        warn_at_user(
            f"scoring the {method!r} baseline against {observed.name!r}: {method} reproduces the "
            "observations of the dataset it predicted from, so where they are the same these "
            "scores are zero error by construction; predict from a dataset with the scored "
            "observations masked, or pass observed= held-out values",
            InSampleWarning)
        return
    if method in ("idw", "harmonic") and read is not None:
        # Against the truth: at every node-day where the dataset has an observation the
        # baseline returned that observation, on any day (it has no held-out period).
        pairs = _paired(observed, prediction)
        seen = read.notnull() if copied is None else read.notnull() | copied
        n, n_pairs = _counts((pairs & seen).sum(), pairs.sum())
        if n:
            what = (f"({read.name!r})" if copied is None else
                    f"({read.name!r}, and 'seg_temp' at each segment's outlet reach)")
            warn_at_user(
                f"scoring the {method!r} baseline against {observed.name!r}: {n} of the {n_pairs} "
                f"pairs scored ({_share(n, n_pairs)}) are node-days where this dataset has "
                f"observations {what}, which {method} returns as its prediction if it "
                "predicted from this dataset: there its error is the observations' noise alone and "
                "the scores are in-sample, on any day. Score the nodes without observations, or "
                "predict from a dataset with the scored observations masked",
                InSampleWarning)
        return
    if "time" not in prediction.dims or "time" not in observed.dims:
        return
    from xmsgl.exceptions import XmsglError
    from xmsgl.periods import period_mask

    labels = prediction["time"].values  # as the pair has them, to select by
    index = prediction.indexes.get("time")
    try:
        # The periods are dates; a model calendar's (cftime) are read as such where they
        # exist in the standard one (360_day's 30 February is in no period).
        times = (pd.DatetimeIndex(pd.to_datetime(
                    [f"{t.year:04d}-{t.month:02d}-{t.day:02d}" for t in index], errors="coerce"))
                 if isinstance(index, xr.CFTimeIndex) else pd.DatetimeIndex(labels))
    except (TypeError, ValueError):
        return  # not dates: nothing to judge
    # ASYNC-MSGL's training periods include its stage A's days, on which it learned
    # from the segments' coarse values (carried to their reaches), not from reach_temp.
    stage_a = (" (or, on days of ASYNC-MSGL's stage A alone, learned from through their "
               "segments' coarse values, which often come from the same gauges)"
               if method == "async-msgl" else "")
    found: list[tuple[str, str, str, str, int]] = []  # (attr, what, why, periods, days inside)
    sums: list[xr.DataArray] = []  # the pairs each counts, computed together below
    for attr, what, why in (
            ("xmsgl_train_periods", "training periods", "at the sites it was fitted on those scores "
                                                        "are in-sample"),
            ("xmsgl_val_periods", "validation periods", "at the sites that chose its checkpoint "
                                                        "those scores are optimistic")):
        periods = prediction.attrs.get(attr)
        if not periods:
            continue
        try:
            # "a/b, c/d", as xmsgl.downscale.output_attrs writes it.
            inside = period_mask(times, [tuple(p.strip().split("/")) for p in str(periods).split(",")],
                                 attr)
        except (XmsglError, ValueError, TypeError):
            continue  # an attribute written by someone else: nothing to judge
        if not inside.any():
            continue
        seen = observed.sel(time=observed["time"].isin(labels[inside]))
        # The pairs scored there: an observation with a prediction beside it (by id);
        # against a truth, those at node-days with an observation.
        pairs = _paired(seen, prediction.sel(time=labels[inside]))
        if read is not None:
            pairs = pairs & read.sel(time=read["time"].isin(labels[inside])).notnull()
        found.append((attr, what, why, str(periods), int(inside.sum())))
        sums.append(pairs.sum())
    if not found:
        return
    # Against a truth, every pair scored too, for the share; one pass over a dask-backed
    # pair for all the counts (each count was a compute of its own).
    *counts, total = _counts(*sums, _paired(observed, prediction).sum())
    for (attr, what, why, periods, days), n in zip(found, counts):
        if not n:
            continue
        if read is not None:
            fitted, verdict = (("was fitted on", "in-sample") if attr == "xmsgl_train_periods"
                               else ("chose its checkpoint on", "optimistic"))
            if attr == "xmsgl_train_periods" and stage_a:
                fitted += stage_a
            warn_at_user(
                f"scoring against {observed.name!r} on {days} days inside the "
                f"model's {what} ({periods}): {n} of the {total} pairs scored "
                f"({_share(n, total)}) are node-days where this dataset has observations "
                f"({read.name!r}), which the model {fitted} if it was fitted on this dataset: "
                "there the truth is what it was shown, up to the observations' noise, and the "
                f"scores are {verdict}. Score a held-out period, e.g. "
                "ds.msgl.evaluate(pred.sel(time=slice(start, end))), or the nodes without "
                "observations",
                InSampleWarning)
        else:
            warn_at_user(
                f"scoring against {observed.name!r} on {days} days inside the model's "
                f"{what} ({periods}): {n} of the {total} pairs scored ({_share(n, total)}) lie "
                f"there, and {why}"
                f"{stage_a if attr == 'xmsgl_train_periods' else ''} (sites held "
                "out of the fit are not, if their segments' coarse observations, often from the "
                "same gauges, were held out too). Score a held-out period, e.g. "
                "ds.msgl.evaluate(pred.sel(time=slice(start, end))), or pass as observed= "
                "observations held out of the fit",
                InSampleWarning)
