"""A per-reach GRU without a graph: the recurrent baseline of the evaluation.

Every reach is an independent sequence: its standardized inputs (the reach
variables of the dataset, dynamic forcings and static attributes repeated over
time, scaled as :func:`xmsgl.fit` scales them) feed a one-layer GRU whose weights
are shared by all reaches, and a linear head reads the water temperature off the
hidden state. No river graph, no coarse input and no coarse target is used: the
model learns only from the fine observations ``reach_temp`` of the training days,
so it shows what the graph and the coarse scale add.

Training follows the network methods of :func:`xmsgl.fit`: windows of ``window``
days every ``stride`` days inside the training period (:func:`xmsgl.train.make_windows`),
each (window, observed reach) pair is one sequence, the loss is the RMSE over the
observed reach-days of a batch (:func:`xmsgl.train.masked_rmse`), Adam, and the
weights of the epoch with the lowest validation RMSE (on the validation period's
``reach_temp``) are kept. On CPU equal seeds give equal models with the same
number of torch threads (``xmsgl.set_options(torch_threads=1)`` fixes it, for
:func:`fit_gru` as for :func:`xmsgl.fit`; the model's ``config["torch_threads"]``
records it).

A fitted :class:`GRUModel` is a :class:`~xmsgl.baselines.BaselineModel`, so
:func:`xmsgl.downscale.downscale`, the sweeps and the cross-validation take it
as they take the other baselines. It is saved as ``config.json`` + ``weights.pt``
(plain tensors, read back with ``torch.load(weights_only=True)`` and checked
against the sha256 recorded in ``config.json``).
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from xmsgl.baselines import BaselineModel
from xmsgl.convention import (
    REACH,
    SEG,
    TIME,
    expect_dataset,
    in_id_order,
    input_attrs,
    input_variables,
    only_read,
    output_coords,
    same_units,
    topology_arrays,
    units_refusal,
    validate,
    warn_constant_scale,
)
from xmsgl.exceptions import (
    DataError,
    ExtrapolationWarning,
    ModelMismatchError,
    ParameterError,
    SchemaError,
    TimeError,
    check_count,
    check_flag,
    warn_at_user,
)
from xmsgl.io import model_path, read_json_file, read_saved_folder, refuse_unknown_version
from xmsgl.nn.rgrn import PARAM_DTYPE
from xmsgl.nn.weights import (
    CONFIG,
    WeightsDigest,
    model_sha256,
    read_weights,
    save_network,
    warn_if_edited,
)
from xmsgl.train import full_precision, torch_seeded, trains, uses_thread_option

if TYPE_CHECKING:
    from xmsgl.train import FeatureSpec

__all__ = ["FORMAT", "ReachGRU", "GRUModel", "fit_gru", "load_gru"]

FORMAT = "xmsgl-gru"
FORMAT_VERSION = 1

_REFETCH = "save or fit the model again"


class ReachGRU(nn.Module):
    """One GRU layer and a linear head, applied to each reach's sequence alone.

    Parameters
    ----------
    n_inputs : int
        Input features per reach and day.
    hidden : int
        Hidden size.

    Examples
    --------
    >>> import torch
    >>> net = ReachGRU(3, 8)
    >>> net(torch.zeros(5, 10, 3)).shape
    torch.Size([5, 10])
    """

    def __init__(self, n_inputs: int, hidden: int) -> None:
        super().__init__()
        self.n_inputs = int(n_inputs)
        self.hidden = int(hidden)
        self.gru = nn.GRU(self.n_inputs, self.hidden, batch_first=True, dtype=PARAM_DTYPE)
        self.head = nn.Linear(self.hidden, 1, dtype=PARAM_DTYPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(sequences, days, features) -> (sequences, days) standardized temperature."""
        h, _ = self.gru(x)
        return self.head(h).squeeze(-1)


def _version() -> str:
    import xmsgl

    return str(xmsgl.__version__)


def _inputs(ds: xr.Dataset, names: list[str], mean: dict[str, float], std: dict[str, float]) -> np.ndarray:
    """Standardized float32 (reach, time, feature) inputs; NaN is a typed error."""
    n_time, n_reach = ds.sizes[TIME], ds.sizes[REACH]
    out = np.empty((n_reach, n_time, len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        da = ds[name]
        if TIME in da.dims:
            vals = np.asarray(da.transpose(REACH, TIME).values, dtype=np.float32)
        else:
            vals = np.asarray(da.values, dtype=np.float32)[:, None]
        bad = int(np.count_nonzero(~np.isfinite(vals)))
        if bad:
            raise DataError(
                f"input variable {name!r} has {bad} NaN or infinite values; fill them (for example "
                f"ds[{name!r}].interpolate_na('time')) or leave the variable out"
            )
        out[:, :, j] = (vals - mean[name]) / std[name]
    return out


def _check_inputs(ds: xr.Dataset, names: list[str], spec: Any, fitting: bool) -> None:
    """The networks' checks of the inputs read (:func:`xmsgl.train.check_input_values`):
    a degC input outside the plausible range, NaN or infinite values, far values and
    undeclared fill values are typed errors that say where, instead of moving the
    predictions without a word. ``spec``: the GRU's scalers
    (:class:`~xmsgl.train.FeatureSpec`); ``fitting``: whether leaving an input out is
    still a choice (at fit, not for a fitted model)."""
    from xmsgl.train import _input_values, check_input_values

    for name in names:
        vals, static = _input_values(ds, name, REACH)
        check_input_values(name, vals, static, spec, ds, REACH, fitting)


def _warn_input_range(x: np.ndarray, on_time: list[bool], names: list[str], var: dict[str, Any]) -> None:
    """Warn (:class:`~xmsgl.exceptions.InputRangeWarning`) of time-varying inputs of the
    days run (warm-up included) far beyond their training range, as ``downscale`` does
    for the networks (:func:`xmsgl.coverage.input_range_sentence`), from the standardized
    inputs ``x`` (reach, time, input) already made: no other read or copy of them. A
    model saved without the ranges is not judged."""
    from xmsgl.coverage import warn_input_range

    ranges = var.get("observed_range") or {}
    found = []
    for j, name in enumerate(names):
        if not on_time[j] or name not in ranges or x.shape[1] == 0:
            continue
        z = x[:, :, j]
        mean, std = float(var["mean"][name]), float(var["std"][name])
        ext = (float(z.min()) * std + mean, float(z.max()) * std + mean)
        found.append((name, ext, lambda z=z, mean=mean, std=std: z.T * std + mean))
    warn_input_range(found, ranges, var["std"], var["units"],
                     more="model.config['variables']['observed_range'] holds the ranges")


def _run(net: ReachGRU, x: np.ndarray, t0: int, t1: int, chunk: int, spinup: int,
         breaks: Sequence[int] | np.ndarray = (), batch: int = 4096) -> np.ndarray:
    """Standardized predictions (reach, t1 - t0): chunks of ``chunk`` days, each warmed up
    on up to ``spinup`` earlier days from a fresh state, as in training. ``breaks`` are
    the positions in ``x`` of days that do not follow the day before
    (:func:`xmsgl.train.time_breaks`): no chunk or warm-up crosses one, as in
    ``downscale``."""
    from xmsgl.train import inference_windows

    out = np.empty((x.shape[0], t1 - t0), dtype=np.float32)
    net.eval()
    with torch.inference_mode():
        for s, a, b in inference_windows(t0, t1, chunk, spinup, breaks):
            for r0 in range(0, x.shape[0], batch):
                seq = torch.from_numpy(np.ascontiguousarray(x[r0: r0 + batch, s:b]))
                out[r0: r0 + batch, a - t0: b - t0] = net(seq)[:, a - s:].numpy()
    return out


class GRUModel(BaselineModel):
    """A fitted per-reach GRU (``method="gru"``): network, scalers and reach ids.

    Made by :func:`fit_gru` (or ``xmsgl.fit(ds, "gru")``) and :func:`load_gru`
    (or :func:`xmsgl.load`); apply it with :meth:`predict` or
    :func:`xmsgl.downscale.downscale`, save it with :meth:`save`.

    Attributes
    ----------
    net : ReachGRU
        The trained network (on CPU).
    config : dict
        Settings, variables, scalers, periods, training history and ids.
    sha256 : str
        Hash of the weights, quoted in the ``history`` of predictions.

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2003-09-30")
    >>> model = xmsgl.fit(ds, "gru", epochs=1, progress=False)  # doctest: +SKIP
    >>> model.predict(ds).dims  # doctest: +SKIP
    ('reach', 'time')
    """

    def __init__(self, net: ReachGRU, config: dict[str, Any]) -> None:
        arrays = {"reach_ids": np.asarray(config["reach_ids"], dtype=np.int64),
                  "seg_ids": np.asarray(config["seg_ids"], dtype=np.int64)}
        super().__init__("gru", config, arrays)
        self.net = net
        self._weights = WeightsDigest()

    @property
    def weights_sha256(self) -> str:
        """sha256 of the weights alone, as for the networks' :class:`~xmsgl.Downscaler`."""
        return self._weights.of(self.net)

    @property
    def sha256(self) -> str:
        """sha256 of the model, its weights and its settings (taken again when the
        weights were changed since): an edited ``config.json`` (a target scaler, say)
        gives another one, as for the networks (:func:`xmsgl.nn.weights.model_sha256`)."""
        return model_sha256(self.weights_sha256, self.config)

    @property
    def features(self) -> FeatureSpec:
        """Its inputs, their scalers and their ranges over the reaches with training
        observations, as a network's ``features`` (what :func:`xmsgl.coverage.coverage`
        judges a dataset against)."""
        from xmsgl.train import FeatureSpec

        return FeatureSpec.from_dict(self.config["variables"])

    @property
    def reads(self) -> dict[str, str]:
        """The inputs :meth:`predict` reads (``config["variables"]``), each with its units."""
        v = self.config.get("variables") or {}
        units = v.get("units") or {}
        return {n: f"input, {units.get(n) or 'no units'}"
                for n in [*(v.get("seg_vars") or []), *(v.get("reach_vars") or [])]}

    def __repr__(self) -> str:
        return (f"<xmsgl.GRUModel hidden={self.net.hidden} n_reach={self.arrays['reach_ids'].size} "
                f"sha256={self.sha256[:12]}>")

    @full_precision
    def predict(self, ds: xr.Dataset, time: Any = None) -> xr.DataArray:
        """Predict fine water temperature on the days of ``ds``.

        Parameters
        ----------
        ds : xarray.Dataset
            A dataset on the fitted network with the model's reach input variables
            (same names and units, no NaN); targets are not read. It is validated
            first, as by the fit: temperatures in K or degF are converted to degC.
        time : (start, end) or slice, optional
            Days to return (ends included); default all. Each 365-day chunk starts
            from a fresh state warmed up on up to ``spinup`` (180) earlier days of ``ds``.

        Returns
        -------
        xarray.DataArray
            float32 on (reach, time) in degC with ``long_name``, ``xmsgl_method``,
            ``xmsgl_model_sha256`` and a ``history`` line.

        Raises
        ------
        SchemaError
            ``ds`` is not an xarray Dataset.
        ModelMismatchError
            Other reach or segment ids, a missing input variable or other units.
        DataError
            NaN in an input.
        TimeError
            ``time`` selects no day of ``ds``, or ``ds`` has no day.

        Warns
        -----
        XmsglWarning
            ``time`` reaches beyond the dataset's days: only those are returned.
        InputRangeWarning
            A time-varying input of the days run (the warm-up before the days returned
            included) lies far beyond its range at the reaches with training
            observations (``config["variables"]["observed_range"]``), as
            :func:`xmsgl.downscale.downscale` judges the networks' inputs.
        ExtrapolationWarning
            A reach's static input lies more than
            :data:`~xmsgl.coverage.WARN_SD` standard deviations beyond that range, as
            for the networks; ``ds.msgl.coverage(model)`` lists every reach.
        """
        from xmsgl.coverage import static_extrapolation
        from xmsgl.downscale import _time_gaps, short_warmup
        from xmsgl.periods import mask_spans, select_days, spans_text

        expect_dataset(ds)  # a DataArray or a path failed in only_read with an AttributeError

        # The model was fitted on the validated dataset (temperatures in K or degF
        # converted to degC), so the inputs are read from the validated copy too;
        # the raw ones would be refused, or scaled in the wrong units. Variables it
        # does not read (targets, truth, others) are left out rather than judged.
        ds = validate(only_read(ds, self.config["variables"]["reach_vars"]), check_values=False)
        topo = topology_arrays(ds)
        r_pos, _ = self._positions(ds, topo)
        if TIME not in ds.dims:
            raise SchemaError("the dataset has no 'time' dimension; the GRU predicts daily values")
        var = self.config["variables"]
        names = list(var["reach_vars"])
        missing = [v for v in names if v not in ds.data_vars]
        if missing:
            raise ModelMismatchError(f"input variables {missing} the GRU was fitted with are missing; "
                                     "add them (same names and units) or refit")
        static = var.get("static") or {}
        for v in names:
            if v in static and bool(static[v]) != (TIME not in ds[v].dims):
                raise ModelMismatchError(
                    f"input variable {v!r} is {'static' if TIME not in ds[v].dims else 'on time'} here but "
                    f"was {'static' if static[v] else 'on time'} when the GRU was fitted: give it as then "
                    "or refit")
            units = str(ds[v].attrs.get("units", "1"))
            # Spellings of one unit ("W m-2", "W/m2") are the same unit, as for the networks.
            if not same_units(units, var["units"][v]):
                raise ModelMismatchError(units_refusal(v, units, var["units"][v], fitted="the GRU",
                                                       refit="refit"))
        times = pd.DatetimeIndex(ds[TIME].values)
        if len(times) == 0:  # as downscale says for the networks
            raise TimeError("the dataset's 'time' dimension is empty; downscaling needs daily inputs")
        tmask = select_days(times, time)
        idx = np.flatnonzero(tmask)
        t0, t1 = int(idx[0]), int(idx[-1]) + 1
        hp = self.config["hyperparameters"]
        spinup = int(hp.get("spinup", 180))
        x0 = max(0, t0 - spinup)
        run_days = ds.isel({TIME: slice(x0, t1)})
        _check_inputs(run_days, names, self.features, fitting=False)
        x = _inputs(run_days, names, var["mean"], var["std"])
        _warn_input_range(x, [TIME in ds[n].dims for n in names], names, var)
        # Reaches whose static inputs lie far beyond the observed reaches', as
        # downscale warns for the networks.
        far = static_extrapolation(ds, self, (REACH,))
        if far:
            warn_at_user(far, ExtrapolationWarning)
        # A gap in the days restarts the state, with a TimeGapWarning, as downscale does.
        all_breaks = _time_gaps(times, t0, t1, spinup)
        short = short_warmup(times, t0, t1, spinup, all_breaks)
        breaks = all_breaks[(all_breaks > x0) & (all_breaks < t1)] - x0
        off = t0 - x0
        z = _run(self.net, x, off, off + t1 - t0, int(hp.get("chunk", 365)), spinup, breaks)
        tgt = self.config["targets"]
        values = (z * np.float32(tgt["std"]) + np.float32(tgt["mean"])).astype(np.float32)
        values = values[:, idx - t0]
        del r_pos  # the inputs are read in the dataset's own reach order
        coords = output_coords(ds.isel({TIME: idx}), REACH)
        train = self.config.get("train")
        val = (self.config.get("periods") or {}).get("val")
        test = (self.config.get("periods") or {}).get("test")
        now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return xr.DataArray(
            values, dims=(REACH, TIME), coords=coords, name="reach_temp_pred",
            attrs={
                "units": "degC",
                "long_name": "daily mean stream water temperature of fine reaches, per-reach GRU baseline",
                "cell_methods": "time: mean",
                "xmsgl_method": "gru",
                "xmsgl_model_sha256": self.sha256,
                **({"xmsgl_train_periods": spans_text(train)} if train else {}),
                **({"xmsgl_val_periods": spans_text(val)} if val else {}),
                **({"xmsgl_test_periods": spans_text(test)} if test else {}),
                **({"xmsgl_seed": int(self.config["seed"])}
                   if isinstance(self.config.get("seed"), int) else {}),
                # As downscale's networks: the days whose state had less than spinup days
                # of warm-up (from the first to the last day returned).
                **({"xmsgl_short_warmup": short} if short else {}),
                **input_attrs(ds.attrs),
                # As downscale's line for the networks: the days returned, the method,
                # the model, the device (the GRU runs on the CPU) and the windows.
                "history": f"{now} UTC: xmsgl {_version()} downscale(method='gru', scale='reach', "
                           f"time={spans_text(mask_spans(times, tmask))}, model "
                           f"sha256={self.sha256[:16]}, device='cpu', spinup={spinup}, "
                           f"chunk={int(hp.get('chunk', 365))})",
            },
        )

    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """Write the model to the folder ``path`` (``config.json`` + ``weights.pt``).

        Written under a temporary name and moved into place.
        An existing folder holding the same saved model (the same settings and weights)
        is written again; one holding another model is replaced with
        ``overwrite=True`` only (outputs cite a model by its sha256, which a replaced
        folder no longer has), else :class:`~xmsgl.exceptions.XmsglError`; any other
        existing file or folder raises it too.

        Returns
        -------
        pathlib.Path
            The folder written.
        """
        config = {**self.config, "format": FORMAT, "format_version": FORMAT_VERSION, "method": "gru"}
        path, self.config, digest = save_network(path, self.net, config, overwrite, what="baseline")
        self._weights.remember(self.net, digest)
        return path


def load_gru(path: str | os.PathLike[str]) -> GRUModel:
    """Read a model written by :meth:`GRUModel.save`.

    Raises
    ------
    DataError
        A missing or unreadable ``config.json`` or weights file, or weights that are
        not plain tensors.
    ModelMismatchError
        Weights whose sha256 differs from the one in ``config.json``, weights that do
        not fit the recorded architecture, or another format.

    Examples
    --------
    >>> import xmsgl
    >>> model = xmsgl.load("gru.xmsgl")  # doctest: +SKIP
    """
    # Read again where another process replaced the folder meanwhile.
    return read_saved_folder(model_path(path), _read_gru)


def _read_gru(path: Path) -> GRUModel:
    cfg_file = path / CONFIG
    config = read_json_file(cfg_file, "settings file", _REFETCH)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        got = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ModelMismatchError(f"{str(cfg_file)!r} holds format {got!r}, not {FORMAT!r}; load it "
                                 "with xmsgl.load")
    refuse_unknown_version(config, FORMAT, FORMAT_VERSION, cfg_file, _REFETCH)
    _check_gru_config(config, cfg_file)
    state, digest, wfile = read_weights(path, config, cfg_file, _REFETCH)
    try:
        hp = config["hyperparameters"]
        with torch_seeded():  # starting weights the saved ones replace
            net = ReachGRU(len(config["variables"]["reach_vars"]), int(hp["hidden"]))
        net.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ModelMismatchError(f"the weights in {str(wfile)!r} do not fit the architecture in "
                                 f"{str(cfg_file)!r} ({type(err).__name__}); {_REFETCH}") from err
    net.eval()
    model = GRUModel(net, config)
    model._weights.remember(net, digest)
    warn_if_edited(config, cfg_file, _REFETCH)
    return model


def _check_gru_config(config: dict[str, Any], cfg_file: Path) -> None:
    """Refuse a ``config.json`` whose entries :meth:`GRUModel.predict` reads are missing
    or of the wrong kind (:class:`DataError`), rather than fail later with Python's
    own error."""
    from xmsgl.model import SIZE_LIMITS
    from xmsgl.model import _number as number

    def whole(value: Any, least: int) -> bool:
        return not isinstance(value, bool) and isinstance(value, int) and value >= least

    problems: list[str] = []
    try:
        var, tgt, hp = config["variables"], config["targets"], config["hyperparameters"]
        names = var["reach_vars"]
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            problems.append("variables.reach_vars must be a list of input names")
            names = []
        for key in ("units", "mean", "std", "static"):
            if not isinstance(var.get(key), dict) or set(names) - set(var[key]):
                problems.append(f"variables.{key} must give every input of reach_vars")
        for n in names:
            m, s = var["mean"].get(n), var["std"].get(n)
            if not (number(m) and number(s) and s > 0):
                problems.append(f"input {n!r} has mean {m!r} and std {s!r} (finite numbers, std > 0)")
        if not (number(tgt.get("mean")) and number(tgt.get("std")) and tgt["std"] > 0):
            problems.append(f"targets has mean {tgt.get('mean')!r} and std {tgt.get('std')!r} (finite "
                            "numbers, std > 0)")
        for key, least in (("hidden", 1), ("spinup", 0), ("chunk", 1)):
            if (key in hp or key == "hidden") and not whole(hp.get(key), least):
                problems.append(f"hyperparameters.{key} is {hp.get(key)!r} (an integer of at least {least})")
        # As the networks' (SIZE_LIMITS): the network is built at this size before the
        # weights are found not to fit (hidden 16,000 took 3.2 GB).
        if whole(hp.get("hidden"), 1) and hp["hidden"] > SIZE_LIMITS["hidden"]:
            problems.append(f"hyperparameters.hidden is {hp['hidden']} (at most {SIZE_LIMITS['hidden']})")
        for key in ("reach_ids", "seg_ids"):
            ids = config[key]
            if not isinstance(ids, list) or not all(whole(i, -2**63) for i in ids):
                problems.append(f"{key} must be a list of integer ids")
        if config.get("method") != "gru":
            problems.append(f"method is {config.get('method')!r}, not 'gru'")
        # What predict reads through FeatureSpec: n_common (0: one scale) and the
        # observed ranges, [smallest, largest] finite numbers.
        if var.get("n_common") != 0 or isinstance(var.get("n_common"), bool) or var.get("seg_vars"):
            problems.append(f"variables.n_common is {var.get('n_common')!r} and variables.seg_vars "
                            f"{var.get('seg_vars')!r} (0 and none: the GRU reads reaches alone)")
        ranges = var.get("observed_range", {})
        if not isinstance(ranges, dict) or not all(
                isinstance(r, list) and len(r) == 2 and all(number(x) for x in r) and r[0] <= r[1]
                for r in ranges.values()):
            problems.append(f"variables.observed_range is {ranges!r} (inputs to [smallest, largest] "
                            "finite numbers)")
    except (KeyError, TypeError, AttributeError) as err:
        problems.append(f"an entry is missing or of the wrong kind ({type(err).__name__}: {err})")
    if problems:
        raise DataError(f"{str(cfg_file)!r} is not a GRU model's settings: {'; '.join(problems)}; "
                        f"{_REFETCH}")


def check_gru_settings(*, epochs: Any = 40, hidden: Any = 20, lr: Any = 5e-3,
                       window: Any = None, stride: Any = None, batch_size: Any = None,
                       clip_grad_norm: Any = None) -> tuple[int, int, float]:
    """Refuse what :func:`fit_gru` refuses of its settings, before any data is read.

    Returns the window, the stride and the learning rate as the fit uses them.

    Raises
    ------
    ParameterError
        A non-positive ``epochs``, ``hidden``, ``window``, ``stride``, ``batch_size``
        or ``lr``, a stride longer than the window, a bad ``clip_grad_norm``.
    """
    from xmsgl.train import check_clip_grad_norm, check_lr, resolve_stride

    window = 365 if window is None else window
    check_count("window", window)
    stride = resolve_stride(window, stride)
    for name, v in (("epochs", epochs), ("hidden", hidden)):
        check_count(name, v)
    from xmsgl.model import SIZE_LIMITS

    if int(hidden) > SIZE_LIMITS["hidden"]:  # load refuses a larger one (as damaged)
        raise ParameterError(f"hidden={int(hidden)} is beyond the largest a model may have "
                             f"({SIZE_LIMITS['hidden']}); give a smaller one")
    # The network methods' checks: a bool, a negative, zero or NaN value is refused.
    lr = check_lr(lr)
    if batch_size is not None:
        check_count("batch_size", batch_size)
    check_clip_grad_norm(clip_grad_norm)
    return int(window), int(stride), lr


@uses_thread_option
@trains
def fit_gru(
    ds: xr.Dataset,
    *,
    train: Any = None,
    val: Any = None,
    test: Any = None,
    epochs: int = 40,
    hidden: int = 20,
    lr: float = 5e-3,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    clip_grad_norm: float | None = None,
    progress: bool | None = None,
) -> GRUModel:
    """Fit the per-reach GRU on the fine observations of the training days.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention with reach input variables (for example
        ``reach_air_temp``) and ``reach_temp`` (reach, time) in degC, NaN where
        unobserved. Coarse variables and ``*_true`` variables are not read.
    train, val, test : (start, end) or list of (start, end), optional
        Periods as in :func:`xmsgl.fit` (default: water years split by
        :func:`xmsgl.train.split_periods`). Test-period targets are never read.
    epochs : int, default 40
        Passes over the training sequences; the weights of the epoch with the lowest
        validation RMSE are kept (with no validation observation, those of the lowest
        training loss, with an :class:`~xmsgl.exceptions.XmsglWarning`, as for the
        networks). ``config["history"]`` holds ``best_epoch`` (counted from 1),
        ``val`` and ``loss``, the training RMSE in degC (the networks' ``loss`` is
        on standardized targets).
    hidden : int, default 20
        Hidden size of the GRU.
    lr : float, default 5e-3
        Adam learning rate.
    window, stride : int, default 365 and min(182, window)
        Training windows (days) and the step between their starts.
    batch_size : int, optional
        Sequences (window x observed reach) per step; default 8.
    seed : int, default 0
        Seeds the weights and the order of the sequences (listed by reach id, so a
        seed gives the same model however the dataset's rows are ordered).
    clip_grad_norm : float, optional
        Gradient norm clipping (default none).
    progress : bool, optional
        Print one line per epoch; default the ``progress`` option.

    Returns
    -------
    GRUModel

    Raises
    ------
    DataError
        No fine observation in the training period, no reach input variable, NaN in
        an input.
    ParameterError
        A non-positive ``epochs``, ``hidden``, ``window``, ``stride`` or ``lr``.
    TimeError
        Overlapping or empty periods.

    Examples
    --------
    >>> import xmsgl
    >>> from xmsgl.nn.gru import fit_gru
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2003-09-30")
    >>> fit_gru(ds, epochs=1).method  # doctest: +SKIP
    'gru'
    """
    from xmsgl.model import (
        _data_record,
        _resolve_periods,
        _versions,
        check_seed,
        refuse_static_only,
        warn_few_fine_observations,
        warn_unobserved_test,
        warn_unobserved_validation,
    )
    from xmsgl.options import progress_or_option
    from xmsgl.train import (
        feature_spec,
        fit_scalers,
        make_windows,
        masked_rmse,
        observed_ranges,
        period_ranges,
        time_breaks,
    )

    window, stride, lr = check_gru_settings(epochs=epochs, hidden=hidden, lr=lr, window=window,
                                            stride=stride, batch_size=batch_size,
                                            clip_grad_norm=clip_grad_norm)
    check_seed(seed)
    check_flag("progress", progress, none=True)
    progress = progress_or_option(progress)
    ds = in_id_order(validate(ds))  # the same fit whatever the file's order
    if TIME not in ds.dims:
        raise SchemaError("the dataset has no 'time' dimension; the GRU trains on daily data")
    if "reach_temp" not in ds.data_vars:
        raise SchemaError("method 'gru' needs the target 'reach_temp' on ('reach', 'time') (NaN where "
                          "unobserved); add it")
    time = pd.DatetimeIndex(ds[TIME].values)
    periods, masks = _resolve_periods(time, train, val, test)
    spec = feature_spec(ds, input_variables(ds))
    names = list(spec.reach_vars)
    if not names:
        raise DataError("method 'gru' needs reach inputs (e.g. 'reach_air_temp'); none found")
    refuse_static_only(spec.static, {SEG: spec.seg_vars, REACH: names}, "gru")
    from xmsgl.train import FeatureSpec

    rspec = FeatureSpec([], names, 0, {v: spec.units[v] for v in names}, {v: spec.static[v] for v in names})
    fit_scalers(ds, rspec, masks["train"])
    _check_inputs(ds, names, rspec, fitting=True)
    x = _inputs(ds, names, rspec.mean, rspec.std)  # (R, T, F)
    y = np.asarray(ds["reach_temp"].transpose(REACH, TIME).values, dtype=np.float32)
    # What predict judges a dataset's inputs against, as the networks do: each input's
    # range over the reaches with a training observation, on the training days.
    rspec.observed_range = observed_ranges(ds, rspec, {REACH: y.T}, masks["train"])
    y_train = np.where(masks["train"][None, :], y, np.nan)
    obs = y_train[np.isfinite(y_train)]
    if obs.size == 0:
        raise DataError(f"no fine observations ('reach_temp') in the training period {periods['train']}; "
                        "method 'gru' learns from them only: give a training period with observations")
    warn_few_fine_observations(y_train[:, masks["train"]], 0, periods["train"], "gru", time[masks["train"]])
    warn_constant_scale("reach_temp", obs)
    y_mean, y_std = float(obs.mean()), float(obs.std()) or 1.0
    z_train = (y_train - y_mean) / y_std
    y_val = np.where(masks["val"][None, :], y, np.nan)
    val_rows = np.flatnonzero(np.isfinite(y_val).any(axis=1))
    val_ranges = period_ranges(time, masks["val"])
    breaks = time_breaks(time)  # the warm-up of a validation day does not cross a gap
    if masks["val"].any() and val_rows.size == 0:
        warn_unobserved_validation(periods["val"])
    if masks["test"].any() and not np.isfinite(y[:, masks["test"]]).any():
        warn_unobserved_test(periods["test"])

    wins = make_windows(period_ranges(time, masks["train"]), int(window), int(stride))
    # Reaches in the order of their ids, so that a seed draws the same batches however
    # the dataset's rows are ordered.
    by_id = np.argsort(np.asarray(ds[REACH].values), kind="stable")
    seqs = [(int(r), s, n) for s, n in wins for r in by_id if np.isfinite(z_train[r, s: s + n]).any()]
    bs = int(batch_size) if batch_size is not None else 8
    rng = np.random.default_rng(int(seed))
    with torch_seeded(int(seed)):  # CPU only: the GPUs' seeds are left alone
        net = ReachGRU(len(names), int(hidden))
    opt = torch.optim.Adam(net.parameters(), lr=float(lr))
    spinup = 180

    def val_rmse() -> float | None:
        if val_rows.size == 0:
            return None
        se, n = 0.0, 0
        for a, b in val_ranges:
            pred = _run(net, x[val_rows], a, b, 365, spinup, breaks)
            o = y_val[val_rows, a:b]
            ok = np.isfinite(o)
            se += float((((pred * y_std + y_mean) - o)[ok] ** 2).sum())
            n += int(ok.sum())
        return math.sqrt(se / n) if n else None

    history: dict[str, Any] = {"loss": [], "val": [], "best_epoch": None}
    best, best_state = math.inf, None
    for epoch in range(int(epochs)):
        net.train()
        order = rng.permutation(len(seqs))
        total, steps = 0.0, 0
        for j in range(0, len(order), bs):
            part = [seqs[i] for i in order[j: j + bs]]
            length = max(n for _, _, n in part)
            xb = np.zeros((len(part), length, len(names)), dtype=np.float32)
            yb = np.full((len(part), length), np.nan, dtype=np.float32)
            for k, (r, s, n) in enumerate(part):
                xb[k, :n] = x[r, s: s + n]
                yb[k, :n] = z_train[r, s: s + n]
            loss = masked_rmse(net(torch.from_numpy(xb)), torch.from_numpy(yb))
            if loss is None:
                continue
            if not torch.isfinite(loss):
                from xmsgl.exceptions import TrainingError

                raise TrainingError(f"the GRU loss became {float(loss)} in epoch {epoch}; lower lr "
                                    f"(now {lr}) or set clip_grad_norm")
            opt.zero_grad()
            loss.backward()
            if clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(net.parameters(), float(clip_grad_norm))
            opt.step()
            total += float(loss.detach()) * y_std
            steps += 1
        score = val_rmse()
        history["loss"].append(total / max(steps, 1))
        history["val"].append(score)
        # As the networks do: the validation RMSE, or without one the training loss.
        crit = score if score is not None else (history["loss"][-1] if steps else None)
        if crit is not None and math.isfinite(crit) and crit < best:
            best, best_state = crit, copy.deepcopy(net.state_dict())
            history["best_epoch"] = epoch + 1  # counted from 1, as the networks count
        if progress:
            # On stderr, with the networks' progress bars: stdout is the results'.
            print(f"gru epoch {epoch + 1}/{epochs}: train RMSE {history['loss'][-1]:.3f} degC, "
                  f"validation RMSE {score if score is None else round(score, 3)}", file=sys.stderr)
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    topo = topology_arrays(ds)
    config: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "method": "gru",
        "hyperparameters": {"hidden": int(hidden), "epochs": int(epochs), "lr": float(lr),
                            "window": int(window), "stride": int(stride), "batch_size": bs,
                            "clip_grad_norm": None if clip_grad_norm is None else float(clip_grad_norm),
                            "spinup": spinup, "chunk": 365},
        "variables": rspec.to_dict(),
        "targets": {"reach": "reach_temp", "units": "degC", "mean": y_mean, "std": y_std},
        "reach_ids": [int(i) for i in topo.reach_ids], "seg_ids": [int(i) for i in topo.seg_ids],
        "periods": periods, "train": periods["train"], "n_sequences": len(seqs),
        "n_fine_train_obs": int(obs.size), "seed": int(seed),
        # What identifies the observations learned from, as the networks record it.
        "data": _data_record(ds, y.T, None, masks["train"] | masks["val"], inputs=list(names)),
        "settings": {}, "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": "cpu", "torch_threads": int(torch.get_num_threads()), "versions": _versions(),
        "xmsgl": _version(), "torch": torch.__version__, "history": history,
    }
    return GRUModel(net, config)
