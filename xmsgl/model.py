"""Fitting and the fitted model: :func:`fit` and :class:`Downscaler`.

A fit returns an explicit :class:`Downscaler` that the user keeps, saves with
:meth:`Downscaler.save` and reloads with :func:`load`; nothing trained is kept on
the ``ds.msgl`` accessor.

Methods
-------
``"msgl"``
    The three tasks (coarse, cross-scale, fine) trained jointly on the coarse
    targets ``seg_temp`` and the sparse fine targets ``reach_temp``.
``"async-msgl"``
    Stage A on coarse information that need not be aligned in time with the fine
    data, then stage B = ``"msgl"``. Stage A trains the coarse task on
    ``stage_a_variable`` (default ``seg_temp``; a process-model output such as
    ``seg_tave_water`` works too) and, with ``"remap"`` in ``stage_a_tasks``, the
    cross-scale task on that variable carried to each reach from its segment
    (pseudo-labels; ``"remap-fine"`` adds the fine task). Stage A reads days of ``stage_a_period``, by default every day
    outside the validation and test periods; it never reads test-period targets. Its
    checkpoint is the epoch whose validation score is best on what it trains: the
    fine prediction with ``"remap-fine"``, else the cross-scale estimate with
    ``"remap"``, else the coarse head.
``"fine-only"``
    The same cell on the fine graph with a linear head, trained on ``reach_temp``.
``"remap"``
    The coarse model (task 0); each reach inherits its segment's prediction.
``"direct"``
    Pretrain the cell on the coarse task, then fine-tune as ``"fine-only"``.
``"progressive"``
    Pretrain on the coarse task, train the fine-only model on the coarse
    predictions remapped to reaches (pseudo-labels), then fine-tune on ``reach_temp``.

The non-neural baselines of :mod:`xmsgl.baselines` (``"climatology"``,
``"mohseni"``, ``"idw"``, ``"harmonic"``) are fitted through :func:`fit` too; they
return a :class:`~xmsgl.baselines.BaselineModel`, which :func:`load` and
:func:`xmsgl.downscale.downscale` accept as well. ``"gru"`` fits the per-reach GRU
without a graph of :mod:`xmsgl.nn.gru` (a ``BaselineModel`` too, with torch weights).
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import datetime as _dt
import hashlib
import inspect
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
import pandas as pd
import torch
import xarray as xr

from xmsgl.convention import (
    REACH,
    SEG,
    TIME,
    in_id_order,
    input_variables,
    is_temperature_units,
    is_truth,
    same_units,
    units_refusal,
    validate,
    warn_constant_observations,
)
from xmsgl.exceptions import (
    ChoiceError,
    DataError,
    FewObservationsWarning,
    ModelMismatchError,
    ParameterError,
    SchemaError,
    ShortRecordWarning,
    TimeError,
    TimeGapWarning,
    TrainingError,
    UnitsError,
    XmsglWarning,
    check_count,
    did_you_mean,
    format_ids,
    typed_arguments,
    warn_at_user,
)
from xmsgl.io import model_path, read_saved_folder, refuse_unknown_version
from xmsgl.methods import FIT_METHODS, METHODS  # importable without torch
from xmsgl.nn import MSGLNet
from xmsgl.nn.dmsge import LEGACY_DYNAMIC_DAYS
from xmsgl.nn.dmsge import backbone_options as dmsge_options
from xmsgl.nn.msgl import BACKBONES, FINE_HEADS
from xmsgl.nn.rgrn import releases_buffers
from xmsgl.nn.weights import (
    CONFIG,
    WeightsDigest,
    model_sha256,
    read_weights,
    save_network,
    warn_if_edited,
)
from xmsgl.periods import (
    bounds_mask,
    mask_spans,
    period_days,
    period_list,
    period_mask,
    warn_beyond_record,
    whole_water_years,
)
from xmsgl.train import (
    INPUT_SCALINGS,
    FeatureSpec,
    InputDays,
    ModelData,
    check_clip_grad_norm,
    check_device_name,
    check_ema_decay,
    check_input_scaling,
    check_lr,
    check_lr_schedule,
    check_weight_decay,
    check_weighting,
    cross_row_blocks,
    epoch_days,
    feature_spec,
    fit_scalers,
    input_array,
    make_windows,
    observed_ranges,
    period_ranges,
    predict,
    resolve_device,
    resolve_stride,
    split_periods,
    target_array,
    time_breaks,
    torch_graphs,
    torch_seeded,
    train_tasks,
    trains,
    uses_thread_option,
)

if TYPE_CHECKING:
    from xmsgl.baselines import BaselineModel
    from xmsgl.nn.gru import GRUModel

__all__ = ["METHODS", "Downscaler", "check_data", "fit", "load"]

#: The largest sizes a network may have (a window of 100 years, an attention span of
#: 10): ``fit`` refuses larger ones, and ``load`` a model folder that holds them,
#: which keeps ``downscale`` from asking for terabytes.
SIZE_LIMITS = {"hidden": 4096, "attn_window": 3660, "attn_blocks": 64, "window": 36600}

#: Which head gives the fine prediction of each method.
_OUTPUT = {"msgl": "fine", "async-msgl": "fine", "fine-only": "fine_only", "remap": "remap",
           "direct": "fine_only", "progressive": "fine_only"}

FORMAT = "xmsgl-model"
#: 2 since 2026-11-28. Version 1 folders of earlier xmsgl are read as they were;
#: earlier readers refuse version 2 with "upgrade xmsgl" instead of misreading
#: what they do not know (a dmsge backbone's ``backbone_positions`` in km, read as
#: m, moved predictions by 5-6.5 degC; the graph fingerprint's second version was
#: reported as "the dataset's river graph differs").
FORMAT_VERSION = 2

_REFETCH = "save or fetch the model again"


def _versions() -> dict[str, str]:
    """The versions a fit ran with: xmsgl and what computes its numbers (scipy builds
    the graphs, pandas reads the dates), and Python."""
    import platform

    import scipy

    import xmsgl

    return {"xmsgl": xmsgl.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "xarray": xr.__version__, "scipy": scipy.__version__, "pandas": pd.__version__,
            "python": platform.python_version()}


class Downscaler:
    """A fitted downscaling model: network, scalers, variables and graph identity.

    Made by :func:`fit` (``ds.msgl.fit(...)``) or :func:`load`. Apply it with
    ``ds.msgl.downscale(model)``; save it with :meth:`save`.

    Attributes
    ----------
    method : str
        One of :data:`METHODS`.
    config : dict
        Everything needed to rebuild and check the model (written to ``config.json``).
    history : dict
        Training losses and validation scores per stage and epoch.
    sha256 : str
        The model's identity: hash of its weights and settings together, quoted in
        the ``history`` and ``xmsgl_model_sha256`` of downscaled outputs.
    weights_sha256 : str
        Hash of the weights alone, as recorded in ``config.json``.

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2003-09-30")
    >>> model = ds.msgl.fit(method="remap", epochs=1, progress=False)  # doctest: +SKIP
    >>> model.save("model.xmsgl")  # doctest: +SKIP
    >>> xmsgl.load("model.xmsgl").method  # doctest: +SKIP
    'remap'
    """

    def __init__(self, net: MSGLNet, config: dict[str, Any]) -> None:
        self.net = net
        self.config = config
        self._weights = WeightsDigest()

    # ------------------------------------------------------------------ properties
    @property
    def method(self) -> str:
        """The method fitted, one of :data:`METHODS`."""
        return str(self.config["method"])

    @property
    def output(self) -> str:
        """What the network predicts reaches from: ``"fine"`` (MSGL and ASYNC-MSGL: the
        fine head on both scales' states), ``"fine_only"`` (fine-only, direct,
        progressive: the fine states alone) or ``"remap"`` (each reach takes its
        segment's coarse prediction)."""
        return _OUTPUT[self.method]

    @property
    def features(self) -> FeatureSpec:
        """The input variables per scale, their units, which are static and their
        scalers (read from ``config.json``)."""
        return FeatureSpec.from_dict(self.config["variables"])

    @property
    def history(self) -> dict[str, Any]:
        """Training losses and validation scores per stage and epoch (a copy: editing it
        leaves the model, its config and its sha256 as they are)."""
        return copy.deepcopy(self.config.get("history", {}))

    @property
    def weights_sha256(self) -> str:
        """sha256 of the weights alone (as recorded in ``config.json``); taken again
        when the weights were changed since (the outputs' provenance, and the copy the
        lazy path's workers load, follow the weights in use)."""
        return self._weights.of(self.net)

    @property
    def sha256(self) -> str:
        """The model's identity: sha256 of its weights and its settings together.

        Recorded with every output (``xmsgl_model_sha256``); an edited
        ``config.json`` gives another one, the time of the fit (``created``) does
        not enter it: two fits with the same seed on a CPU have the same sha256.
        """
        return model_sha256(self.weights_sha256, self.config)

    def __repr__(self) -> str:
        g = self.config["graph"]
        hp = self.config["hyperparameters"]
        main = self.history.get("main") or {}
        best, n_epochs = main.get("best_epoch"), len(main.get("val") or [])
        # Which epoch was kept, of how many: best == n means the score still fell at the end.
        kept = f" best_epoch={best}/{n_epochs}" if isinstance(best, int) and n_epochs else ""
        return (f"<xmsgl.Downscaler method={self.method!r} hidden={hp['hidden']} "
                f"n_seg={g['n_seg']} n_reach={g['n_reach']}{kept} sha256={self.sha256[:12]}>")

    # --------------------------------------------------------------------- explain
    def explain(self, ds: xr.Dataset, **kwargs: Any) -> xr.Dataset:
        """Over-smoothing and neighbour attribution of a ``backbone="dmsge"`` model on ``ds``.

        See :func:`xmsgl.explain.explain` for the arguments and the returned Dataset
        (Dirichlet energy per layer and graph; which neighbours win the maximum,
        their distances and their upstream / downstream / parent-segment shares).
        """
        from xmsgl.explain import explain

        return explain(self, ds, **kwargs)

    # -------------------------------------------------------------------- save/load
    def check_data(self, ds: xr.Dataset) -> dict[str, bool | None]:
        """Whether ``ds`` holds the data this model was fitted on: see :func:`check_data`."""
        return check_data(self, ds)

    def save(self, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
        """Write the model to the folder ``path`` (``config.json`` + ``weights.pt``).

        The folder is written under a temporary name next to ``path`` and moved into
        place with :func:`os.replace`, so a reader never sees a half-written model.
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
        path, self.config, digest = save_network(path, self.net, self.config, overwrite)
        self._weights.remember(self.net, digest)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Downscaler:
        """Read a model written by :meth:`save`; see :func:`load`."""
        # Read again where another process replaced the folder meanwhile.
        return read_saved_folder(model_path(path), cls._read)

    @classmethod
    def _read(cls, path: Path) -> Downscaler:
        cfg_file, config = _read_config(path)
        if config.get("format") != FORMAT:
            other = {"xmsgl-baseline": "a baseline", "xmsgl-gru": "the per-reach GRU"}.get(
                str(config.get("format")))
            if other:
                # Another of this xmsgl's model formats: the right loader is the fix.
                raise ModelMismatchError(
                    f"{str(cfg_file)!r} holds {other} (format {config.get('format')!r}), not a "
                    f"network Downscaler: load it with xmsgl.load({str(path)!r})")
            fmt = config.get("format")
            if not (isinstance(fmt, str) and fmt.startswith("xmsgl")):
                # Another program's settings: no upgrade of xmsgl reads them.
                has = ("it has no format entry" if "format" not in config
                       else f"its format entry is {fmt!r}")
                raise DataError(
                    f"{str(cfg_file)!r} is not the settings of an xmsgl model ({has}, where xmsgl "
                    f"writes {FORMAT!r}): give the folder a model was saved to (model.save(path) "
                    "writes one)")
            raise ModelMismatchError(
                f"{str(cfg_file)!r} has format {config.get('format')!r} version "
                f"{config.get('format_version')!r}; this xmsgl reads {FORMAT!r} up to version "
                f"{FORMAT_VERSION}: upgrade xmsgl or refit the model"
            )
        refuse_unknown_version(config, FORMAT, FORMAT_VERSION, cfg_file, _REFETCH)
        for key in ("method", "hyperparameters", "variables", "targets", "graph"):
            if key not in config:
                raise DataError(f"{str(cfg_file)!r} lacks the entry {key!r}; the model folder is "
                                f"incomplete: {_REFETCH}")
        _check_settings(config, cfg_file)
        state, digest, wfile = read_weights(path, config, cfg_file, _REFETCH)
        _check_sizes(config, state, cfg_file, wfile)
        try:
            net = _build_net(config)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise DataError(
                f"{str(cfg_file)!r} does not describe a network ({type(err).__name__}: {err}); "
                f"{_REFETCH}"
            ) from err
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            detail = " ".join(line.strip() for line in str(err).splitlines()[:2])
            raise ModelMismatchError(
                f"the weights in {str(wfile)!r} do not fit the architecture described in "
                f"{str(cfg_file)!r} ({detail} ...); the config was edited or the files come from "
                f"different models: {_REFETCH}"
            ) from err
        model = cls(net, config)
        model._weights.remember(net, digest)
        _warn_before_calendar_spans(config, cfg_file)
        warn_if_edited(config, cfg_file, _REFETCH)
        return model


#: When the cross-scale head's attention spans were put on the calendar (inference
#: reads each window's days by date since then): models whose cross-scale head is read
#: by their fine head (msgl and async-msgl with the residual fine head, the only one
#: before 2026-11-23 18:10) saved before it predict otherwise now.
CALENDAR_SPANS = "2026-11-23T01:44:48Z"


def _warn_before_calendar_spans(config: dict[str, Any], cfg_file: Path) -> None:
    created = config.get("created")
    if (config.get("method") not in ("msgl", "async-msgl")
            or "fine_head" in config.get("hyperparameters", {}) or not isinstance(created, str)):
        return
    try:
        when = pd.Timestamp(created)
        when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
    except (ValueError, TypeError):
        return  # a date no xmsgl wrote: nothing to judge it by
    if when < pd.Timestamp(CALENDAR_SPANS):
        warn_at_user(
            f"{str(cfg_file)!r} was saved on {created}, before the cross-scale head's attention "
            f"spans were put on the calendar ({CALENDAR_SPANS}): its fine predictions now differ "
            "from those of the xmsgl that saved it (by up to 1.7 degC on small test models; "
            "fine-only, remap, direct and progressive models are unchanged); refit it to use it "
            "with this xmsgl", XmsglWarning)


def _number(value: object) -> bool:
    """Whether ``value`` is a finite int or float (an int too large for a float is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _iso_date(value: object) -> bool:
    """Whether ``value`` is a date as ``config.json`` writes one (``"2001-10-01"``)."""
    if not isinstance(value, str):
        return False
    try:
        pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return False
    return value != ""


def _check_sizes(config: dict[str, Any], state: dict[str, Any], cfg_file: Path, wfile: Path) -> None:
    """Refuse a hidden size or a number of attention blocks in ``config`` that the
    weights ``state`` (read, their sha256 checked) do not have, before the network is
    built: a ``config.json`` edited to the largest sizes allowed made a folder of 38 KB
    take 10 GB of memory before the weights were found not to fit."""
    hp = config["hyperparameters"]
    got: dict[str, int] = {}
    recurrent = state.get("cell.recurrent.weight")
    if recurrent is not None and recurrent.ndim == 2:
        got["hidden"] = int(recurrent.shape[1])
    blocks = {k.split(".")[2] for k in state if k.startswith("cross_head.blocks.")}
    if blocks:
        got["attn_blocks"] = len(blocks)
    differ = {k: (hp.get(k), v) for k, v in got.items() if hp.get(k) != v}
    if differ:
        raise ModelMismatchError(
            f"the weights in {str(wfile)!r} do not fit the architecture described in {str(cfg_file)!r} ("
            + ", ".join(f"{k} {a!r} there, {b} in the weights" for k, (a, b) in differ.items())
            + f"); the config was edited or the files come from different models: {_REFETCH}")


def _check_settings(config: dict[str, Any], cfg_file: Path) -> None:
    """Refuse a ``config.json`` whose method, targets or variables cannot be right."""
    where = str(cfg_file)

    def bad(what: str) -> DataError:
        return DataError(f"{where!r}: {what}; the model folder was edited or damaged: {_REFETCH}")

    if config["method"] not in METHODS:
        raise bad(f"method {config['method']!r} is not one of {list(METHODS)}")
    # The weights of several methods have one shape: a method edited into another
    # would read them as that method's head and output, without a word.
    method = config["method"]
    if "output" in config and config["output"] != _OUTPUT[method]:
        raise bad(f"method {method!r} predicts with its {_OUTPUT[method]!r} output, but the "
                  f"config records the {config['output']!r} output of another method")
    if "stage_a" in config and (config["stage_a"] is not None) != (method == "async-msgl"):
        raise bad(f"method {method!r} " + ("has an ASYNC-MSGL stage A, but the config records none"
                                           if method == "async-msgl" else
                                           "has no stage A, but the config records ASYNC-MSGL's"))
    for key in ("history", "periods"):
        if key in config and not isinstance(config[key], dict):
            raise bad(f"the {key} entry is a {type(config[key]).__name__}, not a dict")
    def spans_ok(spans: object) -> bool:
        return isinstance(spans, list) and all(
            isinstance(p, list) and len(p) == 2 and all(_iso_date(d) for d in p) for p in spans)

    for key, spans in config.get("periods", {}).items():
        if spans is not None and not spans_ok(spans):
            raise bad(f"the period {key!r} is {spans!r}, not a list of [first, last] ISO dates")
    def score(v: object) -> bool:
        # NaN and infinity included: an epoch whose validation overflowed is recorded so.
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    # What repr, xmsgl info and xmsgl fit read of the training record.
    for stage, hist in config.get("history", {}).items():
        if not isinstance(hist, dict):
            raise bad(f"the history of stage {stage!r} is a {type(hist).__name__}, not a dict")
        scores = hist.get("val", [])
        best = hist.get("best_epoch")
        if not (isinstance(scores, list) and all(score(v) for v in scores)
                and (best is None or (isinstance(best, int) and not isinstance(best, bool)
                                      and 0 <= best <= len(scores)))
                and score(hist.get("val_start"))):
            raise bad(f"the history of stage {stage!r} holds val {scores!r}, best_epoch {best!r} "
                      f"and val_start {hist.get('val_start')!r}: not the scores of a fit")
    stage_a = config.get("stage_a")
    if stage_a is not None and not (
            isinstance(stage_a, dict)
            and all(stage_a.get(k) is None or spans_ok(stage_a[k]) for k in ("period", "allowed", "inputs"))
            and isinstance(stage_a.get("tasks", []), list)
            and all(isinstance(t, str) for t in stage_a.get("tasks", []))):
        raise bad(f"the stage_a entry {stage_a!r} is not a dict of a period and task names")
    for key in ("versions", "data"):
        if key in config and not isinstance(config[key], dict):
            raise bad(f"the {key} entry is a {type(config[key]).__name__}, not a dict")
    t = config["targets"]
    if isinstance(t, dict) and t.get("units", "degC") != "degC":
        raise bad(f"the targets' units are {t.get('units')!r}; a model predicts degC")
    # Water temperatures in degC: a mean or spread beyond 1000 degC scales the
    # predictions out of any range (1e308 made them infinite).
    if not (isinstance(t, dict) and _number(t.get("mean")) and _number(t.get("std"))
            and abs(float(t["mean"])) <= 1e3 and 0 < float(t["std"]) <= 1e3):
        raise bad(f"the target scaler {t!r} needs a 'mean' within +-1000 and a 'std' in (0, 1000] degC")
    v = config["variables"]
    ranges = v.get("observed_range", {}) if isinstance(v, dict) else {}
    if not isinstance(ranges, dict) or not all(
            isinstance(r, list) and len(r) == 2 and all(_number(x) and math.isfinite(x) for x in r)
            and r[0] <= r[1] for r in ranges.values()):
        raise bad(f"the observed_range entry {ranges!r} must map inputs to [smallest, largest] "
                  "finite numbers")
    try:
        spec = FeatureSpec.from_dict(v)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as err:
        raise bad(f"the variables entry cannot be read ({type(err).__name__}: {err})") from err
    names = spec.seg_vars + spec.reach_vars
    if not all(isinstance(n, str) for n in names):
        raise bad(f"the variables {spec.seg_vars!r} / {spec.reach_vars!r} must be lists of input names")
    if len(set(names)) != len(names):
        raise bad(f"the variables {spec.seg_vars} / {spec.reach_vars} name an input twice")
    if not 0 <= spec.n_common <= min(
            len(spec.seg_vars), len(spec.reach_vars)):
        raise bad(f"the variables {spec.seg_vars} / {spec.reach_vars} with n_common={spec.n_common} "
                  "do not describe the model's inputs")
    lacking = [n for n in names if n not in spec.mean or n not in spec.std or n not in spec.units
               or n not in spec.static]
    odd = [n for n in names if n in spec.std and not (math.isfinite(spec.std[n]) and spec.std[n] > 0
                                                       and math.isfinite(spec.mean.get(n, 0.0)))]
    if lacking or odd:
        raise bad(f"the input scalers lack or hold unusable values for {lacking + odd}")
    not_flags = [n for n in names if not isinstance(spec.static[n], bool)]
    if not_flags:
        raise bad(f"the 'static' entries of {not_flags} must be true or false")
    not_inputs = [n for n in spec.observed_range if n not in names]
    if not_inputs:
        raise bad(f"the observed_range entry names {not_inputs}, which are not inputs of the model")
    # What downscale reads later (sizes of the heads' blocks and attention spans, the
    # graph's identity) is checked here too: a damaged entry would otherwise load and
    # fail at the first downscale with a bare KeyError or ZeroDivisionError.
    hp = config["hyperparameters"]
    sizes = ("hidden", "attn_window", "attn_blocks", "window")
    if not isinstance(hp, dict):
        raise bad(f"the hyperparameters entry is a {type(hp).__name__}, not a dict")
    wrong = {k: hp.get(k) for k in sizes if isinstance(hp.get(k), bool)
             or not isinstance(hp.get(k), int) or hp[k] <= 0}
    if wrong:
        raise bad(f"the hyperparameters {wrong} must be positive integers")
    # Bounds fit refuses to pass, which keep downscale from asking for terabytes.
    huge = {k: hp[k] for k, most in SIZE_LIMITS.items() if hp[k] > most}
    if huge:
        raise bad(f"the hyperparameters {huge} exceed what a fit gives ({SIZE_LIMITS})")
    ls = hp.get("backbone_length_scales")
    if ls is not None and not (isinstance(ls, dict) and all(
            k in ("seg", "reach") and _number(x) and x > 0 for k, x in ls.items())):
        raise bad(f"the backbone_length_scales {ls!r} must map 'seg'/'reach' to positive numbers")
    pos = hp.get("backbone_positions")
    if pos is not None and not (isinstance(pos, dict) and all(
            k in ("seg", "reach") and x in ("xy", "lonlat", "outlet-distance")
            for k, x in pos.items())):
        raise bad(f"the backbone_positions {pos!r} must map 'seg'/'reach' to 'xy', 'lonlat' or "
                  "'outlet-distance'")
    if hp.get("fine_head", "residual") not in FINE_HEADS:
        raise bad(f"the fine_head {hp.get('fine_head')!r} is not one of {list(FINE_HEADS)}")
    if hp.get("input_scaling", "per-scale") not in INPUT_SCALINGS:
        raise bad(f"the input_scaling {hp.get('input_scaling')!r} is not one of "
                  f"{list(INPUT_SCALINGS)}")
    g = config["graph"]
    if not (isinstance(g, dict) and isinstance(g.get("fingerprint"), str)
            and all(_number(g.get(k)) for k in ("n_seg", "n_reach"))
            and all(isinstance(g.get(k), list) and all(isinstance(i, int) for i in g[k])
                    for k in ("seg_ids", "reach_ids"))
            and isinstance(g.get("options", {}), dict)
            and isinstance(g.get("fingerprint_parts", {}), dict)
            and type(g.get("fingerprint_version", 1)) is int and g.get("fingerprint_version", 1) in (1, 2)
            and all(isinstance(v, str) for v in g.get("fingerprint_parts", {}).values())):
        raise bad("the graph entry needs a 'fingerprint', 'n_seg', 'n_reach', the integer "
                  "'seg_ids' and 'reach_ids', a dict of 'options' and, if any, a dict of "
                  "'fingerprint_parts' (strings) and a 'fingerprint_version' (1 or 2)")
    if (g["n_seg"], g["n_reach"]) != (len(g["seg_ids"]), len(g["reach_ids"])):
        # What repr and xmsgl info print as the network's size.
        raise bad(f"the graph entry counts {g['n_seg']} segments and {g['n_reach']} reaches, but "
                  f"lists {len(g['seg_ids'])} and {len(g['reach_ids'])} ids")
    ws = g.get("weight_stats")
    if ws is not None and not (
            isinstance(ws, dict) and set(ws) == {"coarse", "fine", "cross"}
            and all(isinstance(v, list) and len(v) == 2 and all(_number(x) for x in v) and v[1] >= 0
                    for v in ws.values())):
        raise bad("the graph entry's 'weight_stats' needs, for 'coarse', 'fine' and 'cross', "
                  "a [mean, std] pair of numbers with std >= 0")
    try:
        _check_graph_options(g.get("options", {}))
    except (ParameterError, SchemaError) as err:
        raise bad(f"the graph entry's options cannot build the graphs: {err}") from None
    dr = g.get("drainage")
    if dr is not None and not (
            isinstance(dr, dict) and set(dr) <= {"seg", "reach"}
            and all(isinstance(v, list) and all(
                isinstance(p, list) and len(p) == 2 and all(
                    isinstance(x, int) and not isinstance(x, bool) for x in p) and p[1] > 0
                for p in v) for v in dr.values())):
        raise bad("the graph entry's 'drainage' needs, for 'seg' and 'reach', a list of "
                  "[outlet id, node count] pairs of integers")


def drainage_counts(graphs: Any) -> dict[str, list[list[int]]]:
    """Each outlet's id and the number of nodes that drain to it (itself included), at
    each scale: what :func:`partial_network` compares a network with."""
    out = {}
    for dim, comp, ids in ((SEG, graphs.component_seg, graphs.seg_ids),
                           (REACH, graphs.component_reach, graphs.reach_ids)):
        outlets, counts = np.unique(np.asarray(comp), return_counts=True)
        out[dim] = [[int(ids[o]), int(n)] for o, n in zip(outlets, counts, strict=True)]
    return out


def partial_network(model: Downscaler, graphs: Any) -> str | None:
    """A sentence on how the network of ``graphs``, where it is part of the model's
    own, cuts the model's drainage basins, or None.

    Judged at a scale where every id of the network is one of the model's: nodes that
    drain to an outlet here but did not in the model's network (what lay downstream
    of them is missing), and outlets whose basin holds fewer nodes than it did (part of
    what lies upstream is missing). The graphs link each node to its whole flow path,
    so on such a part the predictions differ from those of the model's network, where
    a part made of whole drainage basins gives the same values. Models saved before
    the counts were kept are not judged.
    """
    g = model.config["graph"]
    saved = g.get("drainage")
    if not isinstance(saved, dict):
        return None
    parts = []
    for dim, word, words, comp, ids in (
            (SEG, "segment", "segments", graphs.component_seg, graphs.seg_ids),
            (REACH, "reach", "reaches", graphs.component_reach, graphs.reach_ids)):
        if dim not in saved:
            continue
        ids = np.asarray(ids, dtype=np.int64)
        known = np.asarray(g[f"{dim}_ids"], dtype=np.int64)
        if ids.size == known.size or not np.isin(ids, known).all():
            continue  # the whole network (or other nodes too): not a part of the model's
        basins = {int(o): int(n) for o, n in saved[dim]}
        outlets, counts = np.unique(np.asarray(comp), return_counts=True)
        out_ids = ids[outlets]
        below = [int(i) for i in out_ids if int(i) not in basins]
        short = [(int(i), int(n), basins[int(i)]) for i, n in zip(out_ids, counts, strict=True)
                 if int(i) in basins and n < basins[int(i)]]
        if not (below or short):
            continue
        text = []
        if below:
            text.append(f"{word} ids {format_ids(below)} drain to an outlet here but not in the "
                        "model's network (what lies downstream of them is missing)")
        if short:
            shown = ", ".join(f"{i} ({n} of {m})" for i, n, m in short[:5])
            text.append(f"the basins of outlet {word} ids {shown}{', ...' if len(short) > 5 else ''} "
                        f"hold fewer {words} than in the model's network (part of what lies "
                        "upstream is missing)")
        parts.append("; ".join(text))
        break  # the segments say it; the reaches only where the segments are whole
    if not parts:
        return None
    return ("the dataset's network, every id of it one of the model's (ids alone are "
            "compared: a network whose ids the model's reuses for other nodes reads the same), "
            "cuts its drainage basins: "
            + parts[0] + ". With check_graph=False the graphs are built on this part, and each "
            "node's graph reads its whole flow path, so these predictions differ from those of "
            "the model's network (by 0.7-3.5 degC, as a median over reaches, on cut-outs of the "
            "Delaware network); include whole drainage basins, or downscale the model's network "
            "and select the nodes afterwards")


def warn_partial_network(model: Downscaler, graphs: Any) -> None:
    """Warn (:class:`~xmsgl.exceptions.XmsglWarning`) with :func:`partial_network`'s
    sentence, if there is one: what ``downscale(check_graph=False)`` says, in memory
    and lazily."""
    cut = partial_network(model, graphs)
    if cut:
        warn_at_user(cut, XmsglWarning)


def _read_config(path: Path) -> tuple[Path, dict[str, Any]]:
    cfg_file = path / CONFIG
    try:
        found = cfg_file.is_file()
    except PermissionError as err:
        raise DataError(f"{str(path)!r} cannot be read ({err}); check the folder's permissions") from err
    if not found:
        if not os.path.lexists(path):
            from xmsgl.io import missing_hint

            raise DataError(f"{str(path)!r} does not exist; give the folder a model was saved to "
                            f"(model.save(path)){missing_hint(path)}")
        if os.path.isfile(path):
            raise DataError(f"{str(path)!r} is a file, not an xmsgl model folder; give the folder "
                            "a model was saved to (model.save(path) writes one)")
        if os.path.isdir(cfg_file):
            raise DataError(f"{str(cfg_file)!r} is a folder, not the model's settings file; the "
                            f"folder was edited or damaged: {_REFETCH}")
        if os.path.lexists(cfg_file):
            # A FIFO, a device, a dangling link: said as what it is, as for the weights.
            from xmsgl.io import regular_file

            regular_file(cfg_file, "settings file", _REFETCH)
        if os.path.islink(path) and not os.path.exists(path):
            raise DataError(f"{str(path)!r} is a link to {os.readlink(path)!r}, which does not exist "
                            "(or a loop of links); give the folder a model was saved to")
        raise DataError(f"{str(path)!r} is not an xmsgl model folder (no {CONFIG}); give the "
                        "folder a model was saved to (model.save(path) writes one)")
    from xmsgl.io import read_json_file

    config = read_json_file(cfg_file, "settings file", _REFETCH)
    if not isinstance(config, dict):
        raise DataError(f"{str(cfg_file)!r} holds a {type(config).__name__}, not the model's "
                        f"settings; {_REFETCH}")
    return cfg_file, config


@typed_arguments
def load(path: str | os.PathLike[str]) -> Downscaler | BaselineModel:
    """Load a model saved with :meth:`Downscaler.save` or :meth:`BaselineModel.save`.

    The ``format`` in the folder's ``config.json`` decides: a neural model gives a
    :class:`Downscaler`, a baseline (``"xmsgl-baseline"``) a
    :class:`~xmsgl.baselines.BaselineModel` (read by
    :func:`~xmsgl.baselines.load_baseline`), the per-reach GRU (``"xmsgl-gru"``) a
    :class:`~xmsgl.nn.gru.GRUModel`. Neural weights are read with
    ``torch.load(weights_only=True)`` and checked against the sha256 recorded in
    ``config.json``: a stale or modified weights file raises
    :class:`~xmsgl.exceptions.ModelMismatchError` instead of loading.

    Parameters
    ----------
    path : str or path
        The model folder (``config.json`` and the weights).

    Raises
    ------
    DataError
        A missing, unreadable or incomplete ``config.json`` or weights file, or a
        ``config.json`` that is not an xmsgl model's (no xmsgl ``format``).
    ModelMismatchError
        Weights that do not match their hash or the architecture in ``config.json``,
        or an xmsgl format this xmsgl does not read (a later version's).

    Examples
    --------
    >>> import xmsgl
    >>> model = xmsgl.load("model.xmsgl")  # doctest: +SKIP
    """
    path = model_path(path)
    _, config = _read_config(path)
    from xmsgl.baselines import FORMAT as BASELINE_FORMAT

    if config.get("format") == BASELINE_FORMAT:
        from xmsgl.baselines import load_baseline

        return load_baseline(path)
    from xmsgl.nn.gru import FORMAT as GRU_FORMAT

    if config.get("format") == GRU_FORMAT:
        from xmsgl.nn.gru import load_gru

        return load_gru(path)
    return Downscaler.load(path)


def _new_net(config: dict[str, Any], n_common: int, backbone_opts: Any) -> MSGLNet:
    """The network a config describes, with fresh starting weights."""
    hp = config["hyperparameters"]
    v = config["variables"]
    return MSGLNet(
        n_common=n_common,
        n_seg_extra=len(v["seg_vars"]) - n_common,
        n_reach_extra=len(v["reach_vars"]) - n_common,
        hidden=int(hp["hidden"]),
        attn_window=int(hp["attn_window"]),
        attn_blocks=int(hp["attn_blocks"]),
        backbone=str(hp.get("backbone", "rgrn")),
        backbone_options=backbone_opts,
        # Models saved before the choice existed have the residual head.
        fine_head=str(hp.get("fine_head", "residual")),
    )


def _build_net(config: dict[str, Any]) -> MSGLNet:
    hp = config["hyperparameters"]
    v = config["variables"]
    n_common = int(v["n_common"])
    backbone_opts = hp.get("backbone_options")
    if backbone_opts is not None and "dynamic_days" not in backbone_opts:
        # Saved before the option existed: one feature-space graph per window, as fitted.
        backbone_opts = {**backbone_opts, "dynamic_days": LEGACY_DYNAMIC_DAYS}
    with torch_seeded():  # starting weights the saved ones replace
        net = _new_net(config, n_common, backbone_opts)
    if net.dmsge is not None:
        # The training network's edge length scales (models saved before they were
        # kept take each network's own), and the kind of positions it was fitted
        # with (models saved before it was kept resolve their coords option).
        net.dmsge.length_scales = {str(k): float(x)
                                   for k, x in (hp.get("backbone_length_scales") or {}).items()}
        net.dmsge.positions = {str(k): str(x)
                               for k, x in (hp.get("backbone_positions") or {}).items()}
        net.dmsge.saved_without_positions = "backbone_positions" not in hp
    return net


def _set_backbone_geometry(net: MSGLNet, ds: xr.Dataset, scales: tuple[str, ...],
                           geometry: dict[str, Any] | None = None) -> None:
    """Give a dmsge backbone the node geometry of ``ds`` for ``scales`` (no-op for the cell).

    ``geometry`` (scale to :class:`~xmsgl.knn.NodeGeometry`) replaces the one read
    from ``ds``: a block of the lazy path passes the whole network's.
    """
    backbone = getattr(net, "dmsge", None)
    if backbone is None:
        return

    for scale in scales:
        geom = (geometry or {}).get(scale)
        backbone.set_geometry(scale, geom if geom is not None else
                              backbone_geometry(backbone, ds, scale))


def backbone_geometry(backbone: Any, ds: xr.Dataset, scale: str) -> Any:
    """The :class:`~xmsgl.knn.NodeGeometry` of ``ds``'s ``scale`` nodes for a dmsge backbone.

    A fitted backbone reads positions of the kind it was fitted with (``"xy"``,
    ``"lonlat"`` or ``"outlet-distance"``, kept in its ``positions``): with
    ``coords="auto"`` a dataset without the training data's coordinates would
    otherwise fall back to other positions, and every neighbourhood and edge
    feature would change without a word. Models saved before the kind was kept,
    and a fit in progress, resolve ``coords`` as given.

    Raises
    ------
    ModelMismatchError
        The dataset lacks the coordinate variables the model's positions came from.
    """
    from xmsgl.knn import node_geometry, position_vars

    fitted = getattr(backbone, "positions", {}).get(scale)
    if fitted is None:
        # Models saved before the kind was kept read x/y as metres whatever their
        # units, and their length scales were taken so: they go on reading them so.
        legacy = bool(getattr(backbone, "saved_without_positions", False))
        geom = node_geometry(ds, scale, backbone.options["coords"], read_units=not legacy)
        if legacy and geom.source == "lonlat":
            _warn_torn_lonlat(ds, scale)
        return geom
    names = list(position_vars(scale, fitted))
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise ModelMismatchError(
            f"the model's dmsge backbone was fitted with {scale} positions from {names} "
            f"({fitted!r}), and the dataset lacks {missing}: its neighbourhoods and edge "
            f"features would come from other positions and its predictions would change; add "
            f"{names} (units m or km for x/y, degrees for lon/lat) or refit the model"
        )
    return node_geometry(ds, scale, fitted, fitted=True)


def _warn_torn_lonlat(ds: xr.Dataset, scale: str) -> None:
    """Warn when a model saved before its positions' kind was kept reads longitudes
    that cross the 180th meridian (or Greenwich, given in 0..360).

    Until 2026-11-26 longitudes were projected as they are, which tore such a
    network 360 degrees apart, and a model fitted then learned its neighbourhoods
    on the torn positions; since then they are taken relative to their circular
    mean. Saved models of both kinds read alike, so the folder cannot say which
    positions it was fitted on: applied to such a network, one kind moved by 4-6
    degC (a synthetic network across the meridian).
    """
    from xmsgl.knn import relative_longitude

    lon = np.asarray(ds[f"{scale}_lon"].values, dtype=np.float64)
    rel = relative_longitude(lon)
    if abs(float(np.ptp(lon)) - float(np.ptp(rel))) <= 1.0:
        return
    warn_at_user(
        f"the model's dmsge backbone was saved without the kind of its positions, and "
        f"{scale}_lon spans {float(np.ptp(lon)):.1f} degrees as given but "
        f"{float(np.ptp(rel)):.1f} around the globe (the network crosses the 180th meridian, "
        "or Greenwich in 0..360): xmsgl before 2026-11-26 read such longitudes as a network "
        "torn 360 degrees apart, later as whole, and this model's folder cannot say which "
        "it was fitted on; its predictions here may be several degC off: refit it",
        XmsglWarning)


# ----------------------------------------------------------------------------- fit

#: A validation RMSE above this many degC means the fit diverged (water temperatures
#: span about 0-35 degC; predicting their mean scores about 7): ``fit`` raises
#: :class:`~xmsgl.exceptions.TrainingError` rather than return such a model.
DIVERGED_RMSE = 50.0



def _span_text(spans: list[tuple[str, str]]) -> str:
    return ", ".join(f"{a} to {b}" for a, b in spans)


def _days_text(time: pd.DatetimeIndex, mask: np.ndarray, most: int = 3) -> str:
    """The first ``most`` runs of the days ``mask`` marks, as ``"a to b, c to d, ..."``."""
    spans = [(str(time[a].date()), str(time[b - 1].date())) for a, b in period_ranges(time, mask)]
    return _span_text(spans[:most]) + (", ..." if len(spans) > most else "")


#: Runs of consecutive training days shorter than this (or than the window) are scraps.
SCRAP_DAYS = 30


def _warn_scraps(time: pd.DatetimeIndex, ranges: list[tuple[int, int]], window: int,
                 what: str = "the training period") -> None:
    """Warn when gaps in ``time`` leave most training days in runs shorter than
    :data:`SCRAP_DAYS`: windows never cross a gap, so the recurrence would learn from
    short windows that each start from a fresh state. ``what``: the days' name in the
    messages (ASYNC-MSGL's stage A has its own)."""
    given = "the training periods given" if what == "the training period" else f"{what} given"
    runs = np.array([b - a for a, b in ranges], dtype=np.int64)
    least = min(SCRAP_DAYS, window)
    short = runs < least
    if not (runs.size and runs[short].sum() * 2 > runs.sum()):
        return
    # Runs are parted by gaps in the days (one run ending where the next begins, the
    # days between them missing) or by the training periods given (days between them).
    gaps = any(a == b and time[a] - time[b - 1] > pd.Timedelta(days=1)
               for (_, b), (a, _) in zip(ranges[:-1], ranges[1:], strict=True))
    if runs.size == 1:
        warn_at_user(
            f"{what} holds {int(runs[0])} consecutive days, fewer than {least}: the "
            "recurrence learns from windows that short, each starting from a fresh state; give a "
            f"longer {what.split(' ', 1)[1] if what.startswith('the ') else what}",
            XmsglWarning)
    elif gaps:
        warn_at_user(
            f"gaps in 'time' cut {what} into {runs.size} runs of consecutive "
            f"days, and {int(runs[short].sum())} of its {int(runs.sum())} days lie in runs "
            f"shorter than {least} days: windows never cross a gap, so the "
            "recurrence learns from short windows that each start from a fresh state; fill "
            "the inputs of short gaps first (xmsgl.convention.fill_daily(ds, max_gap=...)) "
            "or fit on a part of the record without them",
            TimeGapWarning)
    else:
        warn_at_user(
            f"{given} {'are' if given.endswith('s given') else 'is'} {runs.size} runs of "
            f"consecutive days, and "
            f"{int(runs[short].sum())} of their {int(runs.sum())} days lie in runs shorter than "
            f"{least} days: windows never cross from one period to the next, so the recurrence "
            "learns from short windows that each start from a fresh state; give longer periods",
            XmsglWarning)


#: Set (:func:`scored_days_hidden`) while a fit is given data whose scored days'
#: observations were hidden on purpose, by the evaluation sweeps and robustness runs.
_SCORED_DAYS_HIDDEN: contextvars.ContextVar[bool] = contextvars.ContextVar("scored_days_hidden",
                                                                            default=False)


@contextlib.contextmanager
def scored_days_hidden() -> Iterator[None]:
    """Within the block (this thread or task only), a fit does not warn that its test
    period holds no fine observation: the caller hid them to score the fit there."""
    token = _SCORED_DAYS_HIDDEN.set(True)
    try:
        yield
    finally:
        _SCORED_DAYS_HIDDEN.reset(token)


def warn_unobserved_test(test: Any) -> None:
    """Warn that the test period ``test`` holds no fine observation: it is held out of
    training all the same, and no observation there can score the model."""
    if _SCORED_DAYS_HIDDEN.get():
        return
    warn_at_user(
        f"the test period {test} holds no fine observation ('reach_temp' is all NaN there): "
        "it is held out of training (its coarse observations too), yet no fine observation "
        "there can score the model; give test= (start, end) on days with fine observations",
        XmsglWarning)


def warn_unobserved_validation(val: Any) -> None:
    """Warn that the validation period ``val`` holds no fine observation, so the
    checkpoint is chosen by training loss (every network method, and the GRU)."""
    warn_at_user(
        f"the validation period {val} holds no fine observation ('reach_temp' is "
        "all NaN there): the checkpoint kept is the one with the lowest training loss, and "
        "nothing held out judges it; give val= days with observations",
        XmsglWarning)


#: Fewer fine training observations than this, or fewer observed reaches than
#: :data:`FEW_FINE_REACHES`, and fit warns. On a 20-segment synthetic basin (139
#: reaches, 15 epochs; benchmarks/bench_small_data.py) the remap baseline, which
#: reads no fine observation, scored 2.55-2.56 degC; msgl and fine-only 2.63 and
#: 3.41 on 10 observations, 2.61 and 2.62 on 30, 3.30 and 4.22 on 721 at one reach.
#: The bounds are a choice these runs inform, not a measured edge.
FEW_FINE_OBSERVATIONS = 30
FEW_FINE_REACHES = 5
#: A stretch of the year longer than this (days, across the new year) without a
#: fine training observation, and fit warns that those days extrapolate. 458
#: observations at 25 reaches, all in the training period's last 20 days, gave
#: msgl 7.33 degC against remap's 2.66 (benchmarks/bench_small_data.py); the
#: bound, half a year, is a choice: summer loggers (June to September) pass it,
#: monthly or fortnightly samples do not.
FEW_FINE_SEASON_GAP = 182


def _longest_unobserved(days: pd.DatetimeIndex) -> tuple[int, int, int]:
    """The longest run of days of the year without one of ``days``, across the new
    year: ``(length, first, last)`` as days of a 365-day year (a leap year's days
    from 1 March on taken one back, so dates keep their day)."""
    doy = np.asarray(days.day_of_year) - (np.asarray(days.is_leap_year) & (np.asarray(days.month) > 2))
    doy = np.unique(doy)
    nxt = np.append(doy[1:], doy[0] + 365)
    gaps = nxt - doy - 1
    i = int(np.argmax(gaps))
    return int(gaps[i]), int(doy[i] % 365 + 1), int((nxt[i] - 2) % 365 + 1)


def _day_text(doy: int) -> str:
    """A day of a 365-day year as day and month."""
    return (pd.Timestamp("2001-01-01") + pd.Timedelta(days=doy - 1)).strftime("%d %b")


def warn_few_fine_observations(y_train: np.ndarray, reach_axis: int, period: Any, method: str,
                               days: pd.DatetimeIndex | None = None) -> None:
    """Warn when a method that learns the reaches has too few fine observations.

    Parameters
    ----------
    y_train : numpy.ndarray, 2-D
        The training period's fine observations, NaN where none.
    reach_axis : int
        The axis of ``y_train`` along reaches (0 or 1); the other is time.
    period : object
        The training period as the message shows it.
    method : str
        The method fitted.
    days : pandas.DatetimeIndex, optional
        The dates along the time axis; without them the seasons are not judged.

    Warns
    -----
    FewObservationsWarning
        Fewer than :data:`FEW_FINE_OBSERVATIONS` observations or
        :data:`FEW_FINE_REACHES` observed reaches; or else more than
        :data:`FEW_FINE_SEASON_GAP` days of the year without an observation.
    """
    ok = np.isfinite(y_train)
    n_obs = int(ok.sum())
    n_reach = int(ok.any(axis=1 - reach_axis).sum())
    if n_obs >= FEW_FINE_OBSERVATIONS and n_reach >= FEW_FINE_REACHES:
        if days is None:
            return
        gap, first, last = _longest_unobserved(days[ok.any(axis=reach_axis)])
        if gap <= FEW_FINE_SEASON_GAP:
            return
        warn_at_user(
            f"method {method!r} learns the reaches from fine observations that leave {gap} days "
            f"of the year without one ({_day_text(first)} to {_day_text(last)}, in the training "
            f"period {period}): its predictions for those days extrapolate what the reaches did "
            "in other seasons; score them on held-out days of those seasons, or give a training "
            "period whose observations cover them", FewObservationsWarning)
        return
    warn_at_user(
        f"method {method!r} learns the reaches from {n_obs} fine observation"
        f"{'' if n_obs == 1 else 's'} at {n_reach} reach{'' if n_reach == 1 else 'es'} in the "
        f"training period {period}: below {FEW_FINE_OBSERVATIONS} observations or "
        f"{FEW_FINE_REACHES} reaches such fits were often worse than method='remap', which "
        "reads none; compare the two on held-out data (xmsgl.evaluate.cross_validate), or "
        "give a training period with more observed reaches",
        FewObservationsWarning)


def _resolve_periods(
    time: pd.DatetimeIndex, train: Any, val: Any, test: Any, *, selects_checkpoint: bool = True
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if train is None and val is None and test is None:
        periods: dict[str, Any] = dict(split_periods(time))
        n_whole = whole_water_years(time).size
        if n_whole < 3:
            warn_at_user(
                f"the record holds {n_whole} whole water year(s) ({time[0].date()} to "
                f"{time[-1].date()}), too few for the default split by water year: its days are "
                f"split 70/15/15 in time order, so validation ({_span_text(periods['val'])}) and "
                f"test ({_span_text(periods['test'])}) each cover part of one year and leave "
                "the other seasons unscored; give train=, val= and test= (start, end) to choose "
                "them, or use a record of three water years or more",
                ShortRecordWarning)
    else:
        periods = {"train": train, "val": val, "test": test}
    bounds = {k: period_list(v, k) for k, v in periods.items()}  # read once: warned once
    masks = {k: bounds_mask(time, b) for k, b in bounds.items()}
    if periods["train"] is None:
        masks["train"] = ~(masks["val"] | masks["test"])
    for a, b in (("train", "test"), ("train", "val"), ("val", "test")):
        both = masks[a] & masks[b]
        if both.any():
            raise TimeError(
                f"the {a} and {b} periods overlap on {int(both.sum())} days (from "
                f"{time[both][0].date()}); give disjoint periods"
            )
    if not masks["train"].any():
        if periods["train"] is None:
            given = [f"{what} {periods[k]!r}" for k, what in (("val", "validation"), ("test", "test"))
                     if periods[k] is not None]
            several = len(given) > 1
            raise TimeError(f"the {' and '.join(given)} period{'s cover' if several else ' covers'} "
                            f"every day of the dataset ({time[0].date()} to {time[-1].date()}), "
                            f"which leaves none to train on; shorten {'them' if several else 'it'} "
                            "or give train= (start, end)")
        raise TimeError(f"the training period {periods['train']!r} holds no day of the dataset "
                        f"({time[0].date()} to {time[-1].date()})")
    for k, what in (("val", "validation"), ("test", "test")):
        if periods[k] is not None and not masks[k].any():
            raise TimeError(f"the {what} period {periods[k]!r} holds no day of the dataset "
                            f"({time[0].date()} to {time[-1].date()}); give dates inside it, "
                            f"or leave {k}= out")
    for k, done in (("train", "trained on"), ("val", "validated on"), ("test", "held out for testing")):
        if periods[k] is not None:
            # The periods a fit records are the days it had; say so where they were cut.
            warn_beyond_record(time, periods[k], np.flatnonzero(masks[k]), done, k, bounds=bounds[k])
    if selects_checkpoint and not masks["val"].any():
        warn_at_user(
            "no validation period: the checkpoint kept is the one with the lowest training "
            "loss, and nothing held out judges it; give val=(start, end) (days not in train) "
            "to choose it on held-out days",
            XmsglWarning)
    out = {}
    for k, m in masks.items():
        r = period_ranges(time, m)
        out[k] = [(str(time[a].date()), str(time[b - 1].date())) for a, b in r]
    return out, masks


def check_seed(seed: object) -> None:
    """Refuse a seed that numpy and torch cannot both take (a whole number in [0, 2**63))."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**63:
        raise ParameterError(f"seed={seed!r} must be a whole number from 0 to 2**63 - 1 (for example "
                             "0); the same seed gives the same model on CPU")


def _check_graph_options(graph_options: object) -> None:
    if graph_options is None:
        return
    from xmsgl.graph import _check_options, build_graphs

    if not isinstance(graph_options, dict):
        raise ParameterError(f"graph_options={graph_options!r} must be a dict of options of "
                             "xmsgl.graph.build_graphs, e.g. {'max_hops': 8}")
    params = inspect.signature(build_graphs).parameters
    known = [p for p in params if p != "ds"]
    unknown = sorted(str(k) for k in graph_options if k not in known)
    if unknown:
        raise ParameterError(f"graph_options {unknown} are not options of the graphs; use {known}")
    # The values too, before any training (and when a saved model is loaded).
    _check_options(**{**{p: params[p].default for p in known}, **graph_options})


def _need(ds: xr.Dataset, name: str, dim: str, method: str) -> None:
    if name not in ds.data_vars:
        from xmsgl.convention import is_temperature_units

        # Water temperatures under another name: the variables that could be it (not the
        # air's, nor a synthetic basin's truth).
        like = [str(v) for v, da in ds.data_vars.items()
                if set(da.dims) == {dim, TIME} and is_temperature_units(da.attrs.get("units"))
                and not str(v).endswith("_true")
                and not any(w in str(v).lower() for w in ("air", "tmax", "tmin", "dew"))]
        hint = (f"; the dataset has {like} on ({dim!r}, 'time') in units of temperature: if "
                f"{'it' if len(like) == 1 else 'one'} is the observed water temperature, rename it "
                f"(ds.rename({{{like[0]!r}: {name!r}}})); otherwise add the target" if like else
                "; add it")
        raise SchemaError(
            f"method {method!r} needs the target {name!r} on ({dim!r}, 'time') (NaN where "
            f"unobserved){hint} or choose another method"
        )


#: The scales whose inputs a method's prediction reads: ``"fine-only"``, ``"direct"``,
#: ``"progressive"`` (and the per-reach GRU) run the cell on the reaches alone, ``"remap"``
#: on the segments, MSGL's fine head reads both (the segments' states carried to their
#: reaches).
_PREDICTION_READS = {"msgl": (SEG, REACH), "async-msgl": (SEG, REACH), "fine-only": (REACH,),
                     "remap": (SEG,), "direct": (REACH,), "progressive": (REACH,),
                     "gru": (REACH,)}


def refuse_static_only(static: Mapping[str, bool], names: Mapping[str, Sequence[str]],
                       method: str) -> None:
    """Refuse a fit whose prediction reads no time-varying input, and warn of a coarse
    task that reads none.

    ``names`` maps a scale (``"seg"``, ``"reach"``) to its input variables, ``static``
    each of them to whether it lacks ``time``. A network fed static attributes alone
    predicts the same temperature at a node every day (a fine-only fit without reach
    forcings, two epochs on two water years of a 4-segment synthetic basin: a standard
    deviation over the days of at most 0.05 degC at any reach, the truth's 5.2 on
    average), so a method whose prediction reads only such inputs is refused (DataError);
    MSGL, whose fine head reads the segments' states too, needs forcings at one scale
    at least. A method that also trains a coarse task on static segment inputs alone is
    warned of (XmsglWarning): that task cannot follow the days, so what it carries to
    the reaches is a map of the segments, not their weather.
    """
    dynamic = {s: [v for v in names.get(s, ()) if not static[v]] for s in (SEG, REACH)}
    reads = _PREDICTION_READS[method]
    if not any(dynamic[s] for s in reads):
        on = " or ".join(f"({s!r}, 'time')" for s in reads)
        given = [v for s in reads for v in names.get(s, ())]
        hint = ""
        if reads == (REACH,) and dynamic[SEG]:
            hint = (f", or use method='msgl', whose fine head reads the segments' forcings "
                    f"({format_ids(dynamic[SEG])}) carried to their reaches")
        raise DataError(
            f"method {method!r} would predict the same temperature every day at each "
            f"{'segment' if reads == (SEG,) else 'reach'}: its inputs {format_ids(given)} are all "
            f"static, none on {on}; add daily forcings on {on}, such as "
            f"{' or '.join(repr(f'{s}_air_temp') for s in reads)}{hint}")
    if method not in ("remap", "fine-only", "gru") and names.get(SEG) and not dynamic[SEG]:
        warn_at_user(
            f"method {method!r} trains a coarse task on 'seg_temp' with static segment inputs "
            f"alone ({format_ids(names[SEG])}, none on ('seg', 'time')): it cannot follow the "
            f"days, and what it gives the reaches is a map of the segments, not their weather; "
            f"add daily forcings on ('seg', 'time'), such as 'seg_air_temp', or use "
            f"method='fine-only'",
            XmsglWarning,
        )


def _masked(y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = y.copy()
    out[~mask] = np.nan
    return out


_BaselineName = Literal["climatology", "mohseni", "idw", "harmonic", "gru"]
_NetworkName = Literal["msgl", "async-msgl", "fine-only", "remap", "direct", "progressive"]

#: Arguments of :func:`fit` that a baseline uses (the others belong to the networks).
_BASELINE_ARGS = ("ds", "method", "train", "val", "test", "window", "seed", "device", "progress",
                  "options")


@overload
def fit(  # type: ignore[overload-overlap]
    ds: xr.Dataset, method: _BaselineName, **kwargs: Any
) -> BaselineModel: ...


@overload
def fit(ds: xr.Dataset, method: _NetworkName = "msgl", **kwargs: Any) -> Downscaler: ...


@overload
def fit(ds: xr.Dataset, method: str, **kwargs: Any) -> Downscaler | BaselineModel: ...


@uses_thread_option
@releases_buffers
@trains
def fit(
    ds: xr.Dataset,
    method: str = "msgl",
    *,
    train: Any = None,
    val: Any = None,
    test: Any = None,
    epochs: int = 40,
    pretrain_epochs: int | None = None,
    hidden: int = 20,
    lr: float = 5e-3,
    weighting: str = "mgda",
    task_weights: dict[str, float] | None = None,
    window: int | None = None,
    stride: int | None = None,
    batch_size: int | None = None,
    attn_window: int = 30,
    attn_blocks: int = 2,
    stage_a_period: Any = None,
    stage_a_tasks: tuple[str, ...] = ("coarse", "remap", "remap-fine"),
    stage_a_variable: str = "seg_temp",
    graph_options: dict[str, Any] | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: bool | None = None,
    clip_grad_norm: float | None = None,
    backbone: str = "rgrn",
    backbone_options: dict[str, Any] | None = None,
    subbasin_batch: int | None = None,
    fine_head: str = "concat",
    input_scaling: str = "per-scale",
    ema_decay: float | None = None,
    lr_schedule: str = "constant",
    weight_decay: float = 0.0,
    **options: Any,
) -> Downscaler | BaselineModel:
    """Fit a downscaling model to a dataset in the xmsgl convention.

    Parameters
    ----------
    ds : xarray.Dataset
        Inputs (forcings, static attributes) and targets ``seg_temp`` (seg, time)
        and ``reach_temp`` (reach, time) in degC, NaN where unobserved. Inputs must
        be complete (no NaN) over the dataset's time span. ``*_true`` variables are
        never read.
    method : str, default "msgl"
        One of ``"msgl"``, ``"async-msgl"``, ``"fine-only"``, ``"remap"``,
        ``"direct"``, ``"progressive"`` (see :mod:`xmsgl.model`), or a baseline of
        :data:`xmsgl.baselines.BASELINES` (``"climatology"``, ``"mohseni"``,
        ``"idw"``, ``"harmonic"``), fitted by :func:`xmsgl.baselines.fit_baseline`
        with ``train`` (default: every day outside ``val`` and ``test`` when either
        is given, else :func:`xmsgl.baselines.default_train_period`), ``seed``,
        ``window`` and ``options``; a baseline takes none of the network arguments.
        ``"gru"`` fits the per-reach GRU baseline (:mod:`xmsgl.nn.gru`, a
        ``GRUModel``), which takes the network arguments of training (``epochs``,
        ``hidden``, ``lr``, ``window``, ``stride``, ``batch_size``,
        ``clip_grad_norm``, ``device``) but no graph or task settings.
    train, val, test : (start, end) or list of (start, end), optional
        Periods by date (ends included). When none is given, water years are
        split by :func:`xmsgl.train.split_periods` (last sixth test, the twelfth
        before it validation). When ``train`` is omitted it is every day outside
        ``val`` and ``test``. Test-period targets never affect the fit (they are
        only checked, with the whole record, for impossible values). A ``val`` or
        ``test`` given that holds no day of the dataset raises
        :class:`~xmsgl.exceptions.TimeError`; a network fitted with no validation
        days keeps the epoch with the lowest training loss and warns
        (:class:`~xmsgl.exceptions.XmsglWarning`).
    epochs : int, default 40
        Epochs of the main stage; the weights of the epoch with the best
        validation fine RMSE are kept (for ``progressive``, and ASYNC-MSGL with
        ``"remap-fine"`` in ``stage_a_tasks``, the weights the stage starts from
        compete too, and are kept when no epoch scores lower: ``best_epoch`` 0).
    pretrain_epochs : int, optional
        Epochs of each pretraining stage (ASYNC stage A, ``direct``,
        ``progressive``); default ``max(1, epochs // 2)``.
    hidden : int, default 20
        Hidden size.
    lr : float, default 5e-3
        Adam learning rate.
    weighting : {"mgda", "equal", "fixed"}, default "mgda"
        Task weighting of multi-task stages (MGDA-UB min-norm weights, equal, or
        ``task_weights``); msgl and async-msgl only (the other methods train one
        task a stage and refuse it).
    task_weights : dict, optional
        ``{"coarse": w0, "cross": w1, "fine": w2}`` for ``weighting="fixed"``. A
        window whose tasks present all weigh 0 takes no step. ``"fine"`` must weigh
        more than 0: the fine head is the prediction.
    window : int, optional
        Training window length in days (default 365); for a baseline, the days of
        its climatology window (default 31).
    stride : int, optional
        The step between training window starts, in days: 182 by default, or the
        window when it is shorter (a stride longer than the window would leave the
        days between windows untrained, and is refused).
    batch_size : int, optional
        Windows per step; by default as many as fit in about 3 GB of activations
        (8 for ``"gru"``).
    attn_window, attn_blocks : int, default 30, 2
        Temporal attention blocks of the cross-scale head (msgl and async-msgl only;
        the other methods have no such head and refuse them).
    stage_a_period : (start, end) or list, optional
        Days ASYNC-MSGL's stage A may read; default every day outside val and test,
        days outside ``train`` included (the longer coarse record stage A is for: a
        gap left in ``train`` is read too). With no ``test`` given nothing is held
        out of stage A but the validation days, and fit warns when it reads days
        outside ``train``. A period given here may overlap the validation days (not
        the test days, a ``TimeError``), with a warning: stage A then trains on the
        days that choose its checkpoint. The days read are part of the ``xmsgl_train_periods`` of the
        model's predictions.
    stage_a_tasks : tuple of str, default ("coarse", "remap", "remap-fine")
        ``"coarse"``: the coarse task on ``stage_a_variable``; ``"remap"``: the
        cross-scale task on ``stage_a_variable`` carried to each reach from its
        segment (pseudo-labels); ``"remap-fine"``: the fine task on the same
        pseudo-labels too (this runs the fine graph in stage A). Give
        ``("coarse", "remap")`` for a faster stage A that leaves the fine head
        to stage B. A set: their order and repeats change nothing (the config
        records them in this order).
    stage_a_variable : str, default "seg_temp"
        The coarse (seg, time) variable of stage A, in degC, NaN where it has no
        value. It is stage A's target, never one of the model's inputs.
    graph_options : dict, optional
        Keyword arguments of :func:`xmsgl.graph.build_graphs`.
    device : str, default "auto"
        ``"auto"`` (cuda, then mps, then cpu) or a torch device. The non-neural
        baselines run on the CPU with numpy; they check the device as the networks do.
    seed : int, default 0
        Seeds weights and window order; on CPU equal seeds give equal models with
        the same number of torch threads (the order of sums changes with it).
    progress : bool, optional
        Progress bars (tqdm); default the ``progress`` option.
    clip_grad_norm : float, optional
        Rescale the gradients before each optimizer step so that their joint L2
        norm is at most this value (:func:`torch.nn.utils.clip_grad_norm_`);
        default no clipping. Recorded in ``config["hyperparameters"]``.
    backbone : {"rgrn", "dmsge"}, default "rgrn"
        What turns inputs into hidden states at both scales: the recurrent graph
        cell, or the dynamic multi-scale graph embedding backbone
        (:mod:`xmsgl.nn.dmsge`, ``docs/dmsge.md``). Recorded in
        ``config["hyperparameters"]`` (for ``"dmsge"`` only).
    backbone_options : dict, optional
        Options of the ``"dmsge"`` backbone: ``layers`` (3), ``k`` (8), ``concat``
        (True), ``reduce`` (``"max"`` or ``"mean"``), ``encoder`` (``"tcn"`` or
        ``"gru"``), ``candidates`` (32), ``brute_max`` (2048), ``coords``
        (``"auto"``), ``graphs`` (all three, e.g. ``["hydro", "geo"]``); see
        :data:`xmsgl.nn.dmsge.DEFAULTS`.
    subbasin_batch : int, optional
        Train on batches of sub-basins of at most this many reaches: each step runs
        the recurrence on one block of whole drainage components (or a piece of a
        larger one with a halo that carries no loss), so memory per step is that of
        the block, not of the network (:func:`xmsgl.scale.train_subbasins`). Cutting
        a component needs a graph limited in reach (``graph_options`` with
        ``max_hops`` or ``max_distance``); without one, a component larger than the
        batch is refused (:class:`~xmsgl.exceptions.ParameterError`). Default
        ``None``: the whole graph at every step.
    fine_head : {"concat", "residual"}, default "concat"
        The head of task 2, MSGL's prediction: ``"concat"`` reads the coarse
        states carried to each reach (gradients stopped) and the reach's own
        states through a small MLP with a linear branch
        (:class:`xmsgl.nn.FineHead`); ``"residual"`` adds an MLP of the attention
        output and the reach's states to the cross-scale prediction
        (:class:`xmsgl.nn.FineResidualHead`). Recorded in
        ``config["hyperparameters"]``.
    input_scaling : {"per-scale", "pooled"}, default "per-scale"
        How a driver found at both scales (``seg_X`` and ``reach_X``, fed through
        the shared input projection) is standardized: ``"per-scale"``, each
        variable by its own training values, so a driver enters as its relation to
        its own scale's range; ``"pooled"``, one mean and standard deviation over
        its segment and reach values together, so that the same value enters the
        shared cell as the same score at either scale (pairs in different units
        are scaled apart, with a warning). Read by ``"msgl"``, ``"async-msgl"``,
        ``"direct"`` and ``"progressive"`` (the one-scale methods scale their own
        inputs) and recorded in ``config["hyperparameters"]``.
    ema_decay : float, optional
        Keep an exponential moving average of the weights, updated after every
        optimizer step with this decay (0.95: each step's weights count for 5%), and
        validate and keep the averaged weights (the checkpoint of the best epoch is
        an average). Averaging damps the step-to-step noise that the early-stopping
        choice on very sparse validation data follows: with 1% of the fine
        observations kept, 0.95 lowered the test RMSE of MSGL by 0.031 degC and that
        of fine-only by 0.011 over three seeds, with one-year windows every 365 days
        (``docs/benchmarks.md``; not measured at the default stride; measured before
        the average left out the starting weights, which at those hundreds of steps
        weighed ``0.95**k`` of it). The average is of the weights after each step
        (corrected as Adam corrects its moments); over a few steps, such as one step
        an epoch on a small basin, it still spans most of the fit. Default
        ``None``: no average. Each stage (stage A, pretraining) keeps its own
        average. Not with ``subbasin_batch``. Recorded in
        ``config["hyperparameters"]`` when set.
    lr_schedule : {"constant", "cosine"}, default "constant"
        The learning rate over each stage's steps: ``lr`` throughout, or lowered
        from ``lr`` towards 0 along half a cosine (:func:`xmsgl.train.lr_factor`).
        Each stage (stage A, pretraining, the main stage) runs its own schedule.
        Recorded in ``config["hyperparameters"]`` when not constant.
    weight_decay : float, default 0
        Decoupled weight decay (AdamW, Loshchilov and Hutter 2019) of every weight
        matrix (and convolution kernel): each step shrinks it by ``lr * weight_decay``
        of itself besides the gradient step; biases, gains and other one-dimensional
        parameters are not shrunk. 0 trains with plain Adam, as the method does;
        ``lr * weight_decay`` must stay below 1. Not with ``subbasin_batch``.
        Recorded in ``config["hyperparameters"]`` when above 0.
    **options
        Settings of a baseline (``air_window``, ``min_obs``, ``min_months``, ``power``, ``d_min``;
        see :func:`xmsgl.baselines.fit_baseline`). Refused for the networks.

    Returns
    -------
    Downscaler or BaselineModel
        A :class:`~xmsgl.baselines.BaselineModel` for a baseline method.

    Raises
    ------
    DataError
        No fine observations in the training period, NaN in an input (naming the
        variable and the count), no input on time at the scale(s) the prediction
        reads (static attributes alone would give the same temperature every day).
    SchemaError, TimeError
        A missing target, overlapping or empty periods.
    ParameterError
        An unknown method, an argument the method does not take, or a bad value.
    TrainingError
        A task loss became NaN or infinite (naming the epoch, stage, task and windows).

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2003-09-30")
    >>> model = ds.msgl.sparsify(keep=0.05).msgl.fit(
    ...     method="msgl", epochs=2, progress=False)  # doctest: +SKIP
    >>> model.method  # doctest: +SKIP
    'msgl'
    """
    args = dict(locals())
    from xmsgl.baselines import BASELINES

    check_seed(seed)
    seed = int(seed)  # a numpy integer too (torch's generators take Python ints only)
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise ParameterError(f"progress={progress!r} must be True, False or None (the "
                             "'progress' option)")

    if method in BASELINES:
        return _fit_baseline(args)
    if method == "gru":
        return _fit_gru(args)
    if method not in METHODS:
        known = list(FIT_METHODS)
        hint = did_you_mean([method], known) if isinstance(method, str) else ""
        raise ChoiceError(f"method={method!r} is not known{hint}; use one of {known}")
    if options:
        raise ParameterError(
            f"fit() got arguments {sorted(options)} that method {method!r} does not take"
            f"{did_you_mean(sorted(options), _FIT_DEFAULTS)}; check their spelling (the baselines "
            f"{list(BASELINES)} take settings such as 'air_window')"
        )
    _check_method_args(method, args)
    check_clip_grad_norm(clip_grad_norm)
    check_ema_decay(ema_decay)
    check_lr_schedule(lr_schedule)
    check_weight_decay(weight_decay)
    if weight_decay and subbasin_batch is not None:
        raise ParameterError("weight_decay is not available with subbasin_batch (each block of "
                             "sub-basins is a separate run of the training loop): drop one of them")
    if lr_schedule != "constant" and subbasin_batch is not None:
        raise ParameterError(f"lr_schedule={lr_schedule!r} is not available with subbasin_batch "
                             "(each block of sub-basins is a separate run of the training loop): "
                             "drop one of them")
    if ema_decay is not None and subbasin_batch is not None:
        raise ParameterError("ema_decay is not available with subbasin_batch (each block of "
                             "sub-basins is a separate run of the training loop): drop one of them")
    if backbone not in BACKBONES:
        raise ChoiceError(f"backbone={backbone!r} is not known; use one of {list(BACKBONES)}")
    if fine_head not in FINE_HEADS:
        raise ChoiceError(f"fine_head={fine_head!r} is not known; use one of {list(FINE_HEADS)}")
    check_input_scaling(input_scaling)
    if backbone != "dmsge" and backbone_options is not None and backbone_options != {}:
        raise ParameterError(f"backbone_options are options of backbone='dmsge'; drop them or "
                             f"pass backbone='dmsge' (got backbone={backbone!r})")
    dmsge_opts = dmsge_options(backbone_options) if backbone == "dmsge" else None
    from xmsgl.graph import FINGERPRINT_VERSION, build_graphs, weight_stats
    from xmsgl.options import progress_or_option

    check_weighting(weighting, task_weights)
    if weighting == "fixed" and isinstance(task_weights, dict) and float(task_weights["fine"]) == 0:
        # The fine head is the method's prediction and its validation score picks the
        # checkpoint: at weight 0 it keeps its random initial weights (its inputs, the
        # shared cell's states, still move), and the checkpoint follows noise.
        raise ParameterError(
            f"task_weights gives the task 'fine' weight 0, but the fine head gives the prediction "
            f"of {method!r} (and its validation score chooses the checkpoint): it would keep its "
            "random initial weights. Give 'fine' a weight > 0 (e.g. {'coarse': 1, 'cross': 1, "
            "'fine': 0.1}); to train on coarse data alone use method='remap'")
    if batch_size is not None:
        check_count("batch_size", batch_size)
    if subbasin_batch is not None:
        check_count("subbasin_batch", subbasin_batch)
        if backbone != "rgrn":
            raise ParameterError(
                f"subbasin_batch trains the recurrent cell (backbone='rgrn') on sub-basins; "
                f"backbone={backbone!r} builds its neighbourhoods over the whole network, so "
                "drop subbasin_batch (and fit in memory) or use backbone='rgrn'"
            )
    _check_graph_options(graph_options)
    window = 365 if window is None else window
    check_count("window", window)
    stride = resolve_stride(window, stride)
    for name, val_ in (("epochs", epochs), ("hidden", hidden),
                       ("attn_window", attn_window), ("attn_blocks", attn_blocks)):
        check_count(name, val_)
    huge = {k: v for k, v in (("hidden", hidden), ("attn_window", attn_window),
                              ("attn_blocks", attn_blocks), ("window", window))
            if int(v) > SIZE_LIMITS[k]}
    if huge:
        # load refuses a saved model beyond them (as damaged): refuse to fit one.
        raise ParameterError(f"{', '.join(f'{k}={int(v)}' for k, v in huge.items())} beyond the "
                             f"largest sizes a model may have ({SIZE_LIMITS}); give smaller ones")
    if pretrain_epochs is not None:
        check_count("pretrain_epochs", pretrain_epochs)
    check_weight_decay(weight_decay, check_lr(lr))
    if isinstance(stage_a_tasks, str):
        # One task named on its own, e.g. stage_a_tasks="remap", not its letters.
        stage_a_tasks = (stage_a_tasks,)
    try:
        # None or a number here would otherwise fail as a bare TypeError below.
        stage_a_tasks = tuple(stage_a_tasks)
        bad_a = sorted(map(str, set(stage_a_tasks) - {"coarse", "remap", "remap-fine"}))
    except TypeError:
        stage_a_tasks, bad_a = (), []
    if not stage_a_tasks:
        raise ParameterError(f"stage_a_tasks={args['stage_a_tasks']!r} names no task of ASYNC-MSGL's "
                             "stage A; give one or more of 'coarse', 'remap' and 'remap-fine', for "
                             "example ('coarse', 'remap')")
    if bad_a:
        raise ChoiceError(f"stage_a_tasks {bad_a} are not known; use 'coarse', 'remap' and/or 'remap-fine'")
    # A set of tasks: the same model whatever their order or repeats, so one record of
    # it (and one sha256).
    stage_a_tasks = tuple(t for t in ("coarse", "remap", "remap-fine") if t in stage_a_tasks)
    progress = progress_or_option(progress)
    dev = resolve_device(device)
    pre_epochs = max(1, epochs // 2) if pretrain_epochs is None else int(pretrain_epochs)

    if ds is _ARGUMENTS_ONLY:
        return None  # type: ignore[return-value]  # check_fit_args: the arguments are sound
    # Ids in increasing order: the same model whatever order the file lists them in.
    ds = in_id_order(validate(ds))
    if TIME not in ds.dims:
        raise SchemaError("the dataset has no 'time' dimension; fit trains on daily forcings and "
                          "observations on (node, time): merge them into it (xr.merge) first")
    time = pd.DatetimeIndex(ds[TIME].values)
    periods, masks = _resolve_periods(time, train, val, test)
    output = _OUTPUT[method]
    uses_seg = method != "fine-only"
    uses_reach = method != "remap"
    scales = tuple(s for s, used in ((SEG, uses_seg), (REACH, uses_reach)) if used)
    if uses_seg:
        _need(ds, "seg_temp", SEG, method)
    _need(ds, "reach_temp", REACH, method)  # also validation for "remap"

    graph_options = dict(graph_options or {})
    graphs = build_graphs(ds, **graph_options)
    # Stage A's variable is a target, not an input: a longer coarse record has NaN
    # where unobserved (refused as an input), and a complete one fed as an input
    # would make stage A learn to copy it.
    spec = feature_spec(ds, input_variables(
        ds, exclude=(stage_a_variable,) if method == "async-msgl" else ()))
    if uses_seg and not spec.seg_vars:
        raise DataError(f"method {method!r} needs segment inputs (e.g. 'seg_air_temp'); none found")
    if uses_reach and not spec.reach_vars:
        raise DataError(f"method {method!r} needs reach inputs (e.g. 'reach_air_temp'); none found")
    refuse_static_only(spec.static, {SEG: spec.seg_vars, REACH: spec.reach_vars}, method)
    fit_scalers(ds, spec, masks["train"], input_scaling, scales)

    y_reach = target_array(ds, "reach_temp", REACH)
    y_seg = target_array(ds, "seg_temp", SEG) if uses_seg else None
    n_fine_train = int(np.isfinite(y_reach[masks["train"]]).sum())
    if uses_reach and n_fine_train == 0:
        raise DataError(
            "no fine observations ('reach_temp' is all NaN) in the training period "
            f"{periods['train']}; give a training period with observations or use method='remap'"
        )
    if uses_reach:
        warn_few_fine_observations(y_reach[masks["train"]], 1, periods["train"], method,
                                   time[masks["train"]])
    if masks["val"].any() and not np.isfinite(y_reach[masks["val"]]).any():
        warn_unobserved_validation(periods["val"])
    if masks["test"].any() and not np.isfinite(y_reach[masks["test"]]).any():
        warn_unobserved_test(periods["test"])
    seg_unseen = y_seg is not None and not np.isfinite(y_seg[masks["train"]]).any()
    if seg_unseen:
        if method != "async-msgl":
            raise DataError(
                f"no coarse observations ('seg_temp' is all NaN) in the training period "
                f"{periods['train']}; method {method!r} trains on them: give segment temperatures "
                "(observed or from a process model), use method='async-msgl' with a coarse record "
                "outside it (stage_a_period, stage_a_variable), or method='fine-only'"
            )
        # ASYNC-MSGL's case: a coarse record that is not aligned with the fine one.
        # Stage A learns from it (and refuses a stage_a_variable without a value in
        # its period); stage B trains the tasks it has observations for.
        if "coarse" not in stage_a_tasks:
            # Nothing would train the coarse head: scale="seg" would return its
            # initial weights.
            raise ParameterError(
                f"no coarse observations ('seg_temp' is all NaN) in the training period "
                f"{periods['train']}, and stage_a_tasks={tuple(stage_a_tasks)!r} leaves out "
                "'coarse': nothing would train the coarse head; add 'coarse' to stage_a_tasks "
                "(the default has it) or give seg_temp on the training days")
        warn_at_user(
            f"no coarse observations ('seg_temp' is all NaN) in the training period "
            f"{periods['train']}: stage A of 'async-msgl' learns from {stage_a_variable!r} on "
            "its own days, and stage B fine-tunes on the fine observations without the coarse "
            "task; give seg_temp on the training days (observed or from a process model) for "
            "the coarse task to go on in stage B", XmsglWarning)
    # What stage A learned from (ASYNC-MSGL), for the record of the fit's data.
    stage_a_record: tuple[str, np.ndarray] | None = None
    stage_a_days: dict[str, list[tuple[str, str]]] = {}  # and its days (see below)
    # What xmsgl.coverage compares a dataset's inputs with.
    spec.observed_range = observed_ranges(
        ds, spec, {s: y for s, y in ((SEG, y_seg), (REACH, y_reach)) if s in scales}, masks["train"])
    obs_train = [("reach_temp", y_reach[masks["train"]])]
    if y_seg is not None:
        obs_train.append(("seg_temp", y_seg[masks["train"]]))
    pooled = np.concatenate([o[np.isfinite(o)] for _, o in obs_train])
    if pooled.size == 0:
        raise DataError("no coarse or fine observations in the training period; nothing to learn from")
    y_mean = float(pooled.mean())
    y_std = float(pooled.std())
    # Constant observations (a stuck sensor, a filled constant): whether float32 rounding
    # left a spread of 1e-7 or none decided what the model became.
    if warn_constant_observations(obs_train, per_scale=["seg_temp", "reach_temp"] if uses_reach
                                  else ["seg_temp"]):
        y_std = 1.0

    def std(y: np.ndarray) -> np.ndarray:
        return (y - y_mean) / y_std

    x_seg = input_array(ds, spec.seg_vars, SEG, spec) if spec.seg_vars else np.zeros(
        (len(time), graphs.n_seg, 0), np.float32)
    x_reach = input_array(ds, spec.reach_vars, REACH, spec) if spec.reach_vars else np.zeros(
        (len(time), graphs.n_reach, 0), np.float32)
    hidden_ = int(hidden)
    data = ModelData(x_seg, x_reach, torch_graphs(graphs, dev),
                     cross_row_blocks(graphs, dev, max(1, int(2e7 // (window * hidden_ * 4)))),
                     np.asarray(graphs.parent.tocsr().indices, dtype=np.int64), graphs.cross.tocsr(),
                     breaks=time_breaks(time), days=epoch_days(time))

    # The weights are made on the CPU, from the seed, in a block of their own (see
    # torch_seeded); nothing is drawn on a GPU, so the GPUs are never seeded.
    # (torch.manual_seed would also queue the seed for GPUs that have not started,
    # which a CPU fit then handed to the caller's later GPU work.)
    rng = np.random.default_rng(seed)
    hp = {"hidden": hidden_, "attn_window": int(attn_window), "attn_blocks": int(attn_blocks),
          "epochs": int(epochs), "pretrain_epochs": pre_epochs, "lr": float(lr),
          "weighting": weighting, "task_weights": task_weights, "window": int(window),
          "stride": int(stride), "batch_size": batch_size,
          "clip_grad_norm": None if clip_grad_norm is None else float(clip_grad_norm),
          "fine_head": fine_head}
    if uses_seg and uses_reach:
        hp["input_scaling"] = input_scaling
    if ema_decay is not None:
        # Recorded only when used: configs without it read as before.
        hp["ema_decay"] = float(ema_decay)
    if lr_schedule != "constant":
        hp["lr_schedule"] = lr_schedule
    if weight_decay:
        hp["weight_decay"] = float(weight_decay)
    if subbasin_batch is not None:
        # Training on sub-basins changes what each step sees; recorded only when used.
        hp["subbasin_batch"] = int(subbasin_batch)
    if backbone != "rgrn":
        # Only non-default backbones are recorded: configs of the cell stay as they were.
        hp["backbone"] = backbone
        hp["backbone_options"] = dmsge_opts
    with torch_seeded(seed):
        net = MSGLNet(spec.n_common, len(spec.seg_vars) - spec.n_common,
                      len(spec.reach_vars) - spec.n_common, hidden_, int(attn_window),
                      int(attn_blocks), backbone=backbone, backbone_options=dmsge_opts,
                      fine_head=fine_head)
    net = net.to(dev)
    _set_backbone_geometry(net, ds, scales)
    if net.dmsge is not None:
        # Edge features are in units of the training network's median nearest-node
        # distance, kept so that another network (or part of this one) uses the same.
        net.dmsge.length_scales = {s: float(net.dmsge.geometry(s).length_scale) or 1.0
                                   for s in scales}
        hp["backbone_length_scales"] = dict(net.dmsge.length_scales)
        # Which positions the neighbourhoods came from: another dataset must give the same.
        net.dmsge.positions = {s: str(net.dmsge.geometry(s).source) for s in scales}
        hp["backbone_positions"] = dict(net.dmsge.positions)

    val_ranges = period_ranges(time, masks["val"])
    ys_std_reach = std(y_reach)
    ys_std_seg = std(y_seg) if y_seg is not None else None

    def val_score(which: str, target: np.ndarray | None) -> Any:
        def score(model_net: MSGLNet) -> float | None:
            if target is None or not val_ranges:
                return None
            se, n = 0.0, 0
            key = "seg" if which == "coarse" else "reach"
            for a, b in val_ranges:
                obs = target[a:b]
                rows = None
                if key == "reach":
                    # The heads act reach by reach: score only the observed ones.
                    rows = np.flatnonzero(np.isfinite(obs).any(axis=0))
                    if rows.size == 0:
                        continue
                    obs = obs[:, rows]
                pred = predict(model_net, data, a, b, output=which, device=dev, rows=rows)[key]
                ok = np.isfinite(obs)
                # In float64: a diverged network's float32 errors overflow when squared.
                err = pred[ok].astype(np.float64) - obs[ok]
                se += float((err * err).sum())
                n += int(ok.sum())
            # Validation reads the same sparse variable as training (no denser truth).
            return float(np.sqrt(se / n)) * y_std if n else None
        return score

    fine_val = val_score(output, ys_std_reach)
    coarse_val = val_score("coarse", ys_std_seg)
    train_ranges = period_ranges(time, masks["train"])
    _warn_scraps(time, train_ranges, int(window))
    windows = make_windows(train_ranges, int(window), int(stride))
    train_reach = _masked(ys_std_reach, masks["train"])
    train_seg = _masked(ys_std_seg, masks["train"]) if ys_std_seg is not None else None
    history: dict[str, Any] = {}

    def run(stage: str, targets: dict[str, np.ndarray], wins: list[tuple[int, int]], score: Any,
            n_epochs: int, score_start: bool = False) -> None:
        if subbasin_batch is not None:
            from xmsgl.convention import topology_arrays
            from xmsgl.scale import halo_for_options, train_subbasins

            topo = topology_arrays(ds)
            halo = halo_for_options(graph_options or {}, topo)
            history[stage] = train_subbasins(
                net, data, targets, wins, graphs=graphs, topo=topo,
                max_reaches=int(subbasin_batch), halo=halo, epochs=n_epochs, device=dev,
                rng=rng, val=score, lr=float(lr), weighting=weighting, task_weights=task_weights,
                batch_size=batch_size, progress=progress, desc=f"{method} {stage}",
                clip_grad_norm=clip_grad_norm, stage=stage, time=time, score_start=score_start)
            return
        history[stage] = train_tasks(
            net, data, targets, wins, val=score, epochs=n_epochs, lr=float(lr), weighting=weighting,
            task_weights=task_weights, batch_size=batch_size, device=dev, rng=rng,
            progress=bool(progress), desc=f"{method} {stage}", clip_grad_norm=clip_grad_norm,
            stage=stage, time=time, ema_decay=ema_decay, lr_schedule=lr_schedule,
            score_start=score_start, weight_decay=float(weight_decay))

    reach_seg_idx = data.reach_seg_idx
    if method in ("msgl", "async-msgl"):
        assert train_seg is not None
        if method == "async-msgl":
            check_stage_a_variable(ds, stage_a_variable)
            mask_a = (~(masks["val"] | masks["test"]) if stage_a_period is None
                      else period_days(time, stage_a_period, "read by stage A", "stage_a_period"))
            if (mask_a & masks["test"]).any():
                raise TimeError(
                    f"stage_a_period {stage_a_period!r} overlaps the test period "
                    f"{periods['test']}; stage A must never see test-period data"
                )
            seen_val = mask_a & masks["val"]
            if stage_a_period is not None and seen_val.any():
                warn_at_user(
                    f"stage_a_period {stage_a_period!r} overlaps the validation period on "
                    f"{int(seen_val.sum())} days ({_days_text(time, seen_val)}): stage A trains on "
                    f"{stage_a_variable!r} on days whose fine observations choose the "
                    "checkpoint, so the validation scores in the model's history are not out "
                    "of sample. Leave stage_a_period out (every day outside val and test) or "
                    "end it before the validation period", XmsglWarning)
            raw_a = _masked(target_array(ds, stage_a_variable, SEG), mask_a)
            if (stage_a_variable != "seg_temp" and np.isfinite(raw_a).any()
                    and float(np.nanmin(raw_a)) < STAGE_A_COLDEST):
                # Streams stay near 0 degC under ice; values this cold are air. (The
                # observed seg_temp, which MSGL trains on too, is judged as a target.)
                raise ParameterError(
                    f"stage_a_variable={stage_a_variable!r} goes down to "
                    f"{float(np.nanmin(raw_a)):.1f} degC on stage A's days, colder than any "
                    f"stream (below {STAGE_A_COLDEST:g} degC): it looks like an air temperature; "
                    "stage A learns coarse water temperature, so give an observed or modelled one "
                    "(such as PRMS-SNTemp's 'seg_tave_water'), or mask the values that are not "
                    "water temperatures")
            ya = _masked(std(raw_a), mask_a)
            if not np.isfinite(ya).any():
                # Stage A would otherwise run its epochs without a single loss.
                days = f"{int(mask_a.sum())} days" if mask_a.any() else "no day of the dataset"
                where = ("every day outside the validation and test periods"
                         if stage_a_period is None else repr(stage_a_period))
                raise DataError(
                    f"stage_a_variable {stage_a_variable!r} has no value in stage A's period, "
                    f"{where} ({days}); give a stage_a_period where it has values, or another "
                    "stage_a_variable"
                )
            targets_a: dict[str, np.ndarray] = {}
            if "coarse" in stage_a_tasks:
                targets_a["coarse"] = ya
            pseudo = ya[:, reach_seg_idx]
            if "remap" in stage_a_tasks:
                targets_a["cross"] = pseudo
            if "remap-fine" in stage_a_tasks:
                targets_a["fine"] = pseudo
            if not targets_a:
                raise ParameterError("stage_a_tasks is empty; give 'coarse' and/or 'remap'")
            if seg_unseen:
                # No segment observed on the training days: the segments' inputs are
                # judged (coverage, downscale's warnings) against those of the
                # segments stage A learned from, on its days.
                spec.observed_range.update(observed_ranges(ds, spec, {SEG: raw_a}, mask_a))
            ranges_a = period_ranges(time, mask_a)
            _warn_scraps(time, ranges_a, int(window), "stage A's period")
            wins_a = make_windows(ranges_a, int(window), int(stride))
            # The days whose targets stage A read: each run of its days from the first
            # to the last with a value (days before or after them only warm the state
            # up or are not read), for the record and the warnings of what it saw.
            valued = np.isfinite(raw_a).any(axis=1)
            read_a = np.zeros_like(mask_a)
            for a, b in ranges_a:
                at = a + np.flatnonzero(valued[a:b])
                if at.size:
                    read_a[at[0]:at[-1] + 1] = True
            beyond = read_a & ~masks["train"]
            if test is None and stage_a_period is None and beyond.any():
                warn_at_user(
                    f"no test period was given, so stage A also reads {stage_a_variable!r} on "
                    f"{int(beyond.sum())} days outside the training period "
                    f"({_days_text(time, beyond)}); scores on "
                    "those days are not out of sample. Give test= (the days to keep out of every "
                    "stage) or stage_a_period=", XmsglWarning)
            # Stage A's checkpoint is judged on what it trains: the fine head when
            # "remap-fine" trains it, else the cross-scale estimate ("remap"), else the
            # coarse head. The fine head left untrained would score its initial weights.
            score_a = (fine_val if "remap-fine" in stage_a_tasks
                       else val_score("cross", ys_std_reach) if "remap" in stage_a_tasks
                       else coarse_val)
            if (score_a is coarse_val and masks["val"].any()
                    and (y_seg is None or not np.isfinite(y_seg[masks["val"]]).any())):
                # As for direct's coarse pretraining: nothing held out chooses the epoch.
                warn_at_user(
                    f"the validation period {periods['val']} holds no coarse observation "
                    "('seg_temp' is all NaN there): stage A of 'async-msgl', which trains the "
                    "coarse task alone, keeps the epoch with the lowest training loss; give "
                    "val= days with coarse observations, or add 'remap' to stage_a_tasks (its "
                    "cross-scale estimate is scored on the fine observations)", XmsglWarning)
            run("stage_a", targets_a, wins_a, score_a, pre_epochs)
            periods["stage_a"] = [(str(time[a].date()), str(time[b - 1].date()))
                                  for a, b in period_ranges(time, read_a)]
            stage_a_record = (stage_a_variable, raw_a)
            # For the data record: the days stage A could read its variable on (a value
            # added on one of them changes a refit), and the days of the windows that
            # carry a loss, whose forcings the gradients run through (warm-up included).
            used_a = np.zeros_like(mask_a)
            for s0, n_days in wins_a:
                if any(np.isfinite(t[s0:s0 + n_days]).any() for t in targets_a.values()):
                    used_a[s0:s0 + n_days] = True
            stage_a_days = {"allowed": mask_spans(time, mask_a), "inputs": mask_spans(time, used_a)}
        # ASYNC-MSGL fine-tunes: where stage A trained the fine head ("remap-fine"), the
        # weights it left compete for the checkpoint. Otherwise the head scored is the
        # one stage A never trained, whose starting score says nothing of stage A.
        run("main", {"coarse": train_seg, "cross": train_reach, "fine": train_reach},
            windows, fine_val, int(epochs),
            score_start=method == "async-msgl" and "remap-fine" in stage_a_tasks)
    elif method == "fine-only":
        run("main", {"fine_only": train_reach}, windows, fine_val, int(epochs))
    elif method == "remap":
        assert train_seg is not None
        run("main", {"coarse": train_seg}, windows, fine_val, int(epochs))
    elif method in ("direct", "progressive"):
        assert train_seg is not None
        if masks["val"].any() and y_seg is not None and not np.isfinite(y_seg[masks["val"]]).any():
            # As for the fine stages: say that nothing held out chooses the checkpoint.
            warn_at_user(
                f"the validation period {periods['val']} holds no coarse observation "
                f"('seg_temp' is all NaN there): the coarse pretraining of {method!r} keeps "
                "the epoch with the lowest training loss; give val= days with coarse "
                "observations", XmsglWarning)
        run("pretrain_coarse", {"coarse": train_seg}, windows, coarse_val, pre_epochs)
        if method == "progressive":
            pseudo = np.full_like(train_reach, np.nan)
            for a, b in train_ranges:
                pseudo[a:b] = predict(net, data, a, b, output="remap", device=dev)["reach"]
            run("pseudo_labels", {"fine_only": pseudo}, windows, fine_val, pre_epochs)
        # Fine-tuning after the pseudo-labels of "progressive", which trained the head
        # scored: the weights it starts from compete for the checkpoint. After the
        # coarse pretraining of "direct" that head is untrained: not scored.
        run("main", {"fine_only": train_reach}, windows, fine_val, int(epochs),
            score_start=method == "progressive")

    main = history.get("main", {})
    best_epoch = main.get("best_epoch")
    best_val = (main.get("val_start") if best_epoch == 0
                else main.get("val", [])[best_epoch - 1] if best_epoch else None)
    if best_val is not None and best_val > DIVERGED_RMSE:
        raise TrainingError(
            f"the best validation RMSE of the fit is {best_val:.3g} degC ("
            f"{'the weights fine-tuning started from' if best_epoch == 0 else f'epoch {best_epoch}'}), far "
            f"beyond any water temperature's spread: the fit diverged; lower lr (now {lr}), set "
            "clip_grad_norm (e.g. 1.0), or check the inputs for extreme values"
        )

    config: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": method,
        "output": output,
        "hyperparameters": hp,
        # Recorded for every network method, read by some only: fine-only records
        # weighting "mgda" but trains one task with weight 1 (xmsgl info leaves these out).
        "hyperparameters_not_read": sorted(k for k in hp if not reads_setting(method, k)),
        "variables": spec.to_dict(),
        "targets": {"seg": "seg_temp", "reach": "reach_temp", "units": "degC",
                    "mean": y_mean, "std": y_std},
        "graph": {"fingerprint": graphs.fingerprint, "fingerprint_parts": graphs.fingerprint_parts,
                  "fingerprint_version": FINGERPRINT_VERSION,
                  "options": graph_options, "weight_stats": weight_stats(graphs),
                  "n_seg": graphs.n_seg, "n_reach": graphs.n_reach,
                  "seg_ids": sorted(int(i) for i in graphs.seg_ids),
                  "reach_ids": sorted(int(i) for i in graphs.reach_ids),
                  "drainage": drainage_counts(graphs)},
        "periods": periods,
        "stage_a": ({"period": periods.get("stage_a"), "tasks": list(stage_a_tasks),
                     "variable": stage_a_variable, **stage_a_days} if method == "async-msgl" else None),
        "n_fine_train_obs": n_fine_train,
        "data": _data_record(ds, y_reach, y_seg, masks["train"] | masks["val"], stage_a_record,
                             inputs=[*spec.seg_vars, *spec.reach_vars],
                             input_days=(masks["train"] | masks["val"]
                                         | period_mask(time, stage_a_days.get("inputs") or [],
                                                       "stage_a"))),
        "seed": int(seed),
        # One device, one spelling ("cpu:0" is "cpu", "cuda" the GPU's number): the
        # same fit, the same sha256.
        "device": _device_record(dev),
        # Equal seeds give equal weights on the CPU with the same number of threads.
        "torch_threads": int(torch.get_num_threads()),
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "history": history,
    }
    net.eval()
    return Downscaler(net.cpu() if dev.type != "cpu" else net, _plain(config))


def _device_record(dev: torch.device) -> str:
    """The device a fit ran on as its config records it: ``"cpu"``, ``"mps"``, or
    ``"cuda:N"`` with the GPU's number (the current one for a bare ``"cuda"``)."""
    if dev.type == "cuda":
        return f"cuda:{dev.index if dev.index is not None else torch.cuda.current_device()}"
    return dev.type if dev.type in ("cpu", "mps") else str(dev)


def _data_record(ds: xr.Dataset, y_reach: np.ndarray, y_seg: np.ndarray | None,
                 days: np.ndarray, stage_a: tuple[str, np.ndarray] | None = None,
                 inputs: Sequence[str] = (), input_days: np.ndarray | None = None,
                 days_text: str = "training and validation") -> dict[str, Any]:
    """What identifies the data a fit learned from: a sha256 of the targets (degC, in
    id order, NaN where unobserved; ``y_reach`` and ``y_seg`` on (time, node)) on the
    ``days`` (``days_text`` says which: a baseline has no validation), and, for
    ASYNC-MSGL, of ``stage_a`` (its variable's name and its values on stage A's days,
    NaN elsewhere); a sha256 of the ``inputs`` (forcings on ``input_days``, the days
    the fit read, and static attributes); the record of the thinning that made the
    targets (``sparsify``) and the dataset's ``history``. Two models can be told apart
    by their data without refitting, and :func:`check_data` tells whether a dataset
    is the one a model learned from."""
    h = hashlib.sha256()
    parts = [y[days] for y in (y_reach, y_seg) if y is not None]
    if stage_a is not None:
        h.update(f"stage A: {stage_a[0]}".encode())
        parts.append(stage_a[1])
    for y in parts:
        h.update(_float_bytes(y))
    record = {"targets_sha256": h.hexdigest(),
              "targets_days": days_text + (
                  f", and {stage_a[0]!r} on stage A's days" if stage_a is not None else "")}
    if inputs:
        record["inputs_sha256"] = _inputs_sha256(ds, inputs, days if input_days is None else input_days)
        record["inputs_days"] = f"the days the fit read ({days_text.replace(' and', ',')}" + (
            ", stage A)" if stage_a is not None else ")")
    return {**record, "sparsify": str(ds["reach_temp"].attrs.get("xmsgl_sparsify", "")),
            "history": str(ds.attrs.get("history", ""))}


def _float_bytes(values: Any) -> bytes:
    """``values`` as float32 bytes with one NaN pattern, whatever the file's: a hash of
    them follows the values."""
    part = np.asarray(values, dtype=np.float32)
    return np.where(np.isfinite(part), part, np.float32(np.nan)).tobytes()


def _inputs_sha256(ds: xr.Dataset, names: Sequence[str], days: np.ndarray) -> str:
    """sha256 of the input variables ``names`` of a validated ``ds`` (in the convention's
    units, in id order): each one's name and its float32 values, bit for bit, on (time,
    node) on ``days`` or on its node alone for a static one. The same temperatures
    stored in kelvin or degF, converted by :func:`~xmsgl.convention.validate`, differ
    in their last bits and hash differently."""
    h = hashlib.sha256()
    for name in names:
        da = ds[name]
        if TIME in da.dims:
            da = da.isel({TIME: np.flatnonzero(days)}).transpose(TIME, ...)
        h.update(f"{name}:{tuple(map(str, da.dims))}".encode())
        h.update(_float_bytes(da.values))
    return h.hexdigest()


def check_data(model: Downscaler | GRUModel | BaselineModel | str | os.PathLike[str],
               ds: xr.Dataset) -> dict[str, bool | None]:
    """Whether ``ds`` holds the data ``model`` was fitted on, without refitting.

    The targets (and ASYNC-MSGL's stage A variable) on the days the fit learned from,
    and the inputs on the days it read, are hashed as ``fit`` hashed them (with the
    periods and variables its ``config.json`` records) and compared with the sha256s
    in ``model.config["data"]``. Observations on other days (the test period's) and
    variables the model does not read may differ. Values are compared bit for bit
    after :func:`~xmsgl.convention.validate`'s unit conversions: the same temperatures
    stored in kelvin or degF come back in float32 with other last bits (about 1e-5
    degC) and read as different.

    Returns
    -------
    dict
        ``{"targets": bool, "inputs": bool or None}``: ``None`` for a model fitted
        before the inputs were recorded, and for the baselines that read no input
        (all but ``"mohseni"``, whose record holds ``reach_air_temp`` on its training days).

    Raises
    ------
    ParameterError
        ``model`` is not a fitted model (a network, the GRU or a baseline), or records
        no data sha256 (fitted before they were recorded).
    SchemaError, DataError
        As :func:`fit` for a dataset without the variables the model reads.

    Examples
    --------
    >>> import xmsgl
    >>> from xmsgl.model import check_data
    >>> check_data(model, ds)  # doctest: +SKIP
    {'targets': True, 'inputs': True}
    """
    from xmsgl.baselines import _FIT_INPUTS, BASELINES, BaselineModel

    if isinstance(model, (str, os.PathLike)):  # a saved folder, as downscale takes one
        model = load(model)
    if not isinstance(model, (Downscaler, BaselineModel)):  # the GRU is a BaselineModel
        raise ParameterError(f"check_data reads the record of a fitted model (xmsgl.Downscaler, the "
                             f"GRU or a baseline) or of its saved folder, not of {type(model).__name__}")
    record = model.config.get("data") or {}
    if "targets_sha256" not in record:
        raise ParameterError("this model records no sha256 of its data (fitted by an xmsgl from "
                             "before they were recorded): refit it to compare data")
    ds = in_id_order(validate(ds))
    time = pd.DatetimeIndex(ds[TIME].values)

    def require(names: Sequence[str]) -> None:
        missing = [n for n in names if n not in ds.data_vars]
        if missing:
            raise SchemaError(
                f"the dataset lacks {missing}, which the {model.method} model's fit read and its "
                f"data record hashes; compare a dataset that holds them (the one the model was "
                f"fitted on)")

    if model.method in BASELINES:
        # A light baseline (the GRU records its periods as fit does): its training days,
        # the observations of both scales where the dataset has them (as its fit read
        # them) and the inputs its fit read.
        spans = model.config.get("train") or []
        train = period_mask(time, [tuple(s) for s in spans], "train") if spans else np.zeros(len(time), bool)
        y_seg_b = target_array(ds, "seg_temp", SEG) if "seg_temp" in ds.data_vars else None
        names_b = list(_FIT_INPUTS.get(model.method, ())) if "inputs_sha256" in record else []
        require(["reach_temp", *names_b])
        got = _data_record(ds, target_array(ds, "reach_temp", REACH), y_seg_b, train,
                           inputs=names_b, days_text="training")
        return {"targets": got["targets_sha256"] == record["targets_sha256"],
                "inputs": got["inputs_sha256"] == record["inputs_sha256"] if names_b else None}
    periods = model.config.get("periods", {})

    def mask(key: str) -> np.ndarray:
        spans = periods.get(key) or []
        return period_mask(time, [tuple(s) for s in spans], key) if spans else np.zeros(len(time), bool)

    days = mask("train") | mask("val")
    variables = model.config["variables"]
    names = [*variables["seg_vars"], *variables["reach_vars"]] if "inputs_sha256" in record else []
    reads_seg = model.method not in ("fine-only", "gru")
    require(["reach_temp", *(["seg_temp"] if reads_seg else []), *names])
    y_reach = target_array(ds, "reach_temp", REACH)
    y_seg = target_array(ds, "seg_temp", SEG) if reads_seg else None
    stage = model.config.get("stage_a")
    stage_a = None
    read_a = mask("stage_a")

    def stage_days(key: str) -> np.ndarray:
        # Recorded since 2026-11-30; before, the days its variable had values on.
        spans = (stage or {}).get(key)
        return read_a if spans is None else period_mask(time, [tuple(s) for s in spans], key)

    # Records written before stage A's variable was hashed say so in targets_days: the
    # targets are then hashed as they were (without it), not reported as different.
    hashed_a = "stage A" in str(record.get("targets_days", ""))
    if stage and periods.get("stage_a") and hashed_a:
        require([str(stage["variable"])])
        stage_a = (str(stage["variable"]),
                   _masked(target_array(ds, str(stage["variable"]), SEG), stage_days("allowed")))
    got = _data_record(ds, y_reach, y_seg, days, stage_a, inputs=names,
                       input_days=days | stage_days("inputs"))
    return {"targets": got["targets_sha256"] == record["targets_sha256"],
            "inputs": got["inputs_sha256"] == record["inputs_sha256"] if names else None}


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python numbers and lists, recursively.

    Arguments such as ``batch_size=np.int64(2)`` or ``task_weights`` of numpy floats
    are accepted by ``fit``; the config keeps them as JSON can write them, so that the
    model's hash, ``save`` and the history line of ``downscale`` work.
    """
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _fit_baseline(args: dict[str, Any]) -> BaselineModel:
    """Fit the baseline ``args["method"]`` from the arguments of :func:`fit`."""
    from xmsgl.baselines import _DEFAULTS, fit_baseline, taken_settings

    method = args["method"]
    takes = sorted(taken_settings(method))
    unused = [k for k, default in _FIT_DEFAULTS.items()
              if k not in _BASELINE_ARGS and args[k] != default]
    if unused:
        raise ParameterError(
            f"{unused} are arguments of the neural methods; baseline {method!r} does not take "
            f"them: drop them (it takes train, val, test, seed and {takes})"
        )
    # Fitted with numpy on the CPU; a device is still checked as the networks check it
    # (device="banana" was accepted without a word).
    resolve_device(args["device"])
    options = dict(args["options"])
    unknown = sorted(set(options) - set(_DEFAULTS[method]))
    if unknown:
        raise ParameterError(f"fit() got arguments {unknown} that baseline {method!r} does not "
                             f"take{did_you_mean(unknown, [*takes, *_BASELINE_ARGS])}; "
                             f"it takes the settings {takes}")
    if args["window"] is not None:
        options["window"] = args["window"]
    train = args["train"]
    if args["val"] is not None or args["test"] is not None:
        ds = args["ds"]
        if not isinstance(ds, xr.Dataset) or TIME not in ds.coords:
            raise SchemaError("the dataset needs a 'time' coordinate to select the training period")
        periods, _ = _resolve_periods(pd.DatetimeIndex(ds[TIME].values), train, args["val"],
                                      args["test"], selects_checkpoint=False)
        train = periods["train"]
    model = fit_baseline(args["ds"], method, train=train, seed=args["seed"], **options)
    if args["test"] is not None and periods.get("test"):
        # The days held out, which its outputs name (xmsgl_test_periods) as a network's do.
        model.config["test"] = [list(map(str, p)) for p in periods["test"]]
    return model


#: Arguments of :func:`fit` that only some network methods read, with the methods
#: that read them; any other method refuses a value other than the default.
_METHOD_ONLY_ARGS: dict[str, tuple[str, ...]] = {
    "stage_a_period": ("async-msgl",),
    "stage_a_tasks": ("async-msgl",),
    "stage_a_variable": ("async-msgl",),
    "pretrain_epochs": ("async-msgl", "direct", "progressive"),
    "fine_head": ("msgl", "async-msgl"),
    "input_scaling": ("msgl", "async-msgl", "direct", "progressive"),
    # The other methods train one task a stage, with weight 1.
    "task_weights": ("msgl", "async-msgl"),
    "weighting": ("msgl", "async-msgl"),
    # The cross-scale head (task 1) is MSGL's alone.
    "attn_window": ("msgl", "async-msgl"),
    "attn_blocks": ("msgl", "async-msgl"),
}


#: The keyword arguments of :func:`fit` and their defaults, read once (a caller that
#: wraps ``fit`` does not change what a method reads).
_FIT_DEFAULTS: dict[str, Any] = {name: p.default for name, p in inspect.signature(fit).parameters.items()}


def check_stage_a_variable(ds: xr.Dataset, name: Any) -> None:
    """Refuse an ASYNC-MSGL ``stage_a_variable`` that is not a (seg, time) water
    temperature of ``ds`` that fit may read (:func:`fit` and the sweeps, before their
    first fit)."""
    if not isinstance(name, str) or name not in ds.data_vars or tuple(ds[name].dims) not in (
            (SEG, TIME), (TIME, SEG)):
        raise SchemaError(f"stage_a_variable={name!r} must be a (seg, time) variable of the "
                          "dataset, in degC")
    if is_truth(name):
        raise ParameterError(f"stage_a_variable={name!r} is evaluation-only truth (*_true), which "
                             "fit never reads; give an observed or modelled coarse water temperature")
    a_units = ds[name].attrs.get("units")
    if not (isinstance(a_units, str) and is_temperature_units(a_units)):
        raise UnitsError(f"stage_a_variable={name!r} has units {a_units!r}: stage A learns coarse "
                         "water temperature, so it must be a temperature (degC, K or degF), "
                         "observed or a process model's (such as 'seg_tave_water')")


#: The coldest value (degC) an ASYNC-MSGL ``stage_a_variable`` other than ``seg_temp``
#: may hold on stage A's days: water under ice stays near 0, so colder values are taken
#: for an air temperature given by mistake (which would also leave the model's inputs).
STAGE_A_COLDEST = -5.0


#: Given as ``ds``, :func:`fit` stops after checking its arguments (:func:`check_fit_args`).
_ARGUMENTS_ONLY: Any = object()


def check_fit_args(method: str, kwargs: Mapping[str, Any]) -> None:
    """Run the checks :func:`fit` makes of its arguments before it reads any data, for
    the network ``method`` (or ``"gru"``) and the keyword arguments ``kwargs`` (no ``seed``).

    Sweeps and cross-validation call it for every method before their first fit, so
    that ``epochs=0`` or an unknown ``stage_a_tasks`` entry for one method is refused
    at once, not after the other methods' fits (each of them minutes to hours).

    Raises
    ------
    ParameterError
        What ``fit`` would refuse, with its message.
    """
    fit(_ARGUMENTS_ONLY, method=method, **kwargs)


def reads_setting(method: str, name: str) -> bool:
    """Whether the network ``method`` reads setting ``name``: not where the setting is
    one of :data:`_METHOD_ONLY_ARGS` that other methods alone read."""
    return method in _METHOD_ONLY_ARGS.get(name, (method,))


def method_reads(method: str, name: str) -> bool:
    """Whether ``fit(method=method)`` reads keyword argument ``name`` (a network method
    or ``"gru"``): a sweep gives a setting meant for every method only to those that
    read it."""
    if method == "gru":
        return name in _GRU_ARGS
    return name in _FIT_DEFAULTS and reads_setting(method, name)


def _check_method_args(method: str, args: dict[str, Any]) -> None:
    """Refuse arguments given a value that ``method`` would not read.

    ``fit(method="msgl", stage_a_period=...)`` would otherwise train without stage A
    and record nothing of it, leaving the caller to believe it ran.
    """
    unused = [name for name, methods in _METHOD_ONLY_ARGS.items()
              if method not in methods and not _same(args[name], _FIT_DEFAULTS[name])]
    if unused:
        where = "; ".join(f"{name} is read by {list(_METHOD_ONLY_ARGS[name])}" for name in unused)
        raise ParameterError(f"method {method!r} does not read {unused}: drop them or choose a "
                             f"method that does ({where})")


def _same(value: Any, default: Any) -> bool:
    """Whether an argument equals its default (a list of stage A tasks equals the tuple)."""
    if isinstance(value, list) and isinstance(default, tuple):
        value = tuple(value)
    try:
        return bool(value == default)
    except (TypeError, ValueError):  # arrays and other values without a plain equality
        return False


#: Arguments of :func:`fit` that the per-reach GRU (``method="gru"``) uses.
_GRU_ARGS = ("ds", "method", "train", "val", "test", "epochs", "hidden", "lr", "window", "stride",
             "batch_size", "seed", "progress", "clip_grad_norm", "device", "options")


def _fit_gru(args: dict[str, Any]) -> BaselineModel:
    """Fit the per-reach GRU (:func:`xmsgl.nn.gru.fit_gru`) from the arguments of :func:`fit`."""
    from xmsgl.nn.gru import check_gru_settings, fit_gru

    unused = [k for k, default in _FIT_DEFAULTS.items()
              if k not in _GRU_ARGS and args[k] != default]
    if args["options"]:
        unused += sorted(args["options"])
    if unused:
        hint = did_you_mean(sorted(args["options"]), _GRU_ARGS)
        raise ParameterError(
            f"{unused} are not arguments of method 'gru' (a per-reach GRU without a graph){hint}: "
            "drop them; it takes "
            + ", ".join(k for k in _GRU_ARGS if k not in ("ds", "method", "options", "device"))
            + " and device ('auto' or 'cpu': it trains on the CPU)"
        )
    dev = check_device_name(args["device"])  # a name that is no device is refused as such
    if dev is not None and dev.type != "cpu":
        raise ParameterError(f"device={args['device']!r}: method 'gru' trains on the CPU only; "
                             "use device='auto' or 'cpu'")
    check_gru_settings(epochs=args["epochs"], hidden=args["hidden"], lr=args["lr"],
                       window=args["window"], stride=args["stride"],
                       batch_size=args["batch_size"], clip_grad_norm=args["clip_grad_norm"])
    if args["ds"] is _ARGUMENTS_ONLY:
        return None  # type: ignore[return-value]  # check_fit_args: the arguments only
    return fit_gru(args["ds"], train=args["train"], val=args["val"], test=args["test"],
                   epochs=args["epochs"], hidden=args["hidden"], lr=args["lr"], window=args["window"],
                   stride=args["stride"], batch_size=args["batch_size"], seed=args["seed"],
                   clip_grad_norm=args["clip_grad_norm"], progress=args["progress"])


def check_compatible(model: Downscaler, ds: xr.Dataset, graphs: Any, scale: str) -> None:
    """Raise :class:`ModelMismatchError` saying how ``ds`` differs from what ``model`` was fitted on."""
    spec = model.features
    need = spec.seg_vars + (spec.reach_vars if scale == REACH and model.output != "remap" else [])
    if model.output == "fine_only":
        need = spec.reach_vars
    missing = [v for v in need if v not in ds.data_vars]
    coords = [v for v in missing if v in ds.coords]
    if coords:
        raise ModelMismatchError(
            f"input variables {format_ids(coords)} the model was fitted with are coordinates "
            f"of the dataset, and coordinates are not inputs (a file's 'coordinates' attribute "
            f"or set_coords makes a variable one): make them data variables with "
            f"ds = ds.reset_coords({coords!r})"
        )
    if missing:
        raise ModelMismatchError(
            f"input variables {format_ids(missing)} the model was fitted with are missing from "
            "the dataset; add them (same names and units) or refit the model"
        )
    for v in need:
        units = str(ds[v].attrs.get("units", "1"))
        if not same_units(units, spec.units[v]):
            raise ModelMismatchError(units_refusal(v, units, spec.units[v]))
        static = TIME not in ds[v].dims
        if static != spec.static[v]:
            raise ModelMismatchError(
                f"input variable {v!r} is {'static' if static else 'on time'} here but was "
                f"{'static' if spec.static[v] else 'on time'} at fit time: "
                + (f"give it once per node (ds[{v!r}] = ds[{v!r}].isel(time=0, drop=True) "
                   "where it does not change in time)" if not static else
                   f"give it on every day (ds[{v!r}] = ds[{v!r}].expand_dims(time=ds['time'], axis=-1) "
                   "where it does not change in time)")
                + " or refit the model with it as it is here"
            )
    g = model.config["graph"]
    # Models saved before the version was recorded have version 1.
    version = int(g.get("fingerprint_version", 1))
    here, here_parts = graphs.fingerprint_of_version(version)
    if here != g["fingerprint"]:
        diffs = []
        for dim, ids in ((SEG, graphs.seg_ids), (REACH, graphs.reach_ids)):
            have = set(int(i) for i in ids)
            want = set(g[f"{dim}_ids"])
            if have - want:
                diffs.append(f"{dim} ids {format_ids(sorted(have - want))} are not in the model's graph")
            if want - have:
                diffs.append(f"{dim} ids {format_ids(sorted(want - have))} of the model's graph are missing")
        if diffs:
            # The model keeps the fingerprint of its network, not its pointers: with other
            # ids, whether the nodes both have are linked alike cannot be told.
            diffs.append("the nodes whose ids both have are not compared (their pointers, "
                         "parents and lengths may differ too)")
        else:
            diffs.append(_same_ids_differ(graphs, g, here_parts))
        raise ModelMismatchError(
            "the dataset's river graph differs from the one the model was fitted on: "
            + "; ".join(diffs)
            + f" (fingerprint {here[:12]}... vs {g['fingerprint'][:12]}...); "
            "downscale the network the model was fitted on, refit, or pass check_graph=False "
            "to apply the model to another network on purpose"
        )


def _same_ids_differ(graphs: Any, saved: dict[str, Any], have: dict[str, str]) -> str:
    """What differs between two networks with the same ids, from the parts of their
    fingerprints (``have``: this network's, in the saved model's version; models saved
    before the parts were kept say less)."""
    from xmsgl.graph import FINGERPRINT_PARTS

    want = saved.get("fingerprint_parts")
    if not isinstance(want, dict) or not have:
        return "the ids match but downstream pointers, parents, lengths or graph options differ"
    differ = [k for k in FINGERPRINT_PARTS if have.get(k) != want.get(k)]
    words = []
    for k in differ:
        if k == "options":
            words.append(f"the graph options ({graphs.options!r} here, "
                         f"{saved.get('options')!r} in the model)")
        else:
            words.append(FINGERPRINT_PARTS[k])
    if not words:
        return "the ids match but downstream pointers, parents, lengths or graph options differ"
    return "the ids match; what differs: " + "; ".join(words)


def _rebuild(model: Downscaler, ds: xr.Dataset, graphs: Any, dev: torch.device,
             time_index: slice, reach_inputs: bool = True,
             geometry: dict[str, Any] | None = None, days: np.ndarray | None = None) -> ModelData:
    """The model's inputs and graphs for ``ds``; ``reach_inputs=False`` leaves the reach
    inputs empty (for outputs that the coarse states alone give); ``geometry`` as in
    :func:`_set_backbone_geometry`."""
    spec = model.features
    n_time = len(range(*time_index.indices(ds.sizes[TIME])))
    # The inputs standardized a block of days at a time, when the recurrence asks.
    x_seg: np.ndarray | InputDays = (
        InputDays(ds, spec.seg_vars, SEG, spec, time_index) if spec.seg_vars
        and model.output != "fine_only" else np.zeros((n_time, graphs.n_seg, 0), np.float32))
    use_reach = reach_inputs and model.output != "remap"
    x_reach: np.ndarray | InputDays = (
        InputDays(ds, spec.reach_vars, REACH, spec, time_index) if spec.reach_vars and use_reach
        else np.zeros((n_time, graphs.n_reach, 0), np.float32))
    window = int(model.config["hyperparameters"]["window"])
    # Reaches per block of the fine heads: about 1 MB of a year's states on the CPU
    # (34 reaches at hidden size 20), whose attention buffers then stay in the caches;
    # 2.5 MB (85) elsewhere, where fewer, larger kernels suit a GPU (docs/pangeo.md,
    # "Smaller blocks for the heads on the CPU").
    budget = 1.0e6 if dev.type == "cpu" else 2.5e6
    rows = max(1, int(budget // (max(window, 365) * model.net.hidden * 4)))
    _set_backbone_geometry(model.net, ds, tuple(
        s for s, used in ((SEG, model.output != "fine_only"), (REACH, use_reach)) if used),
        geometry)
    times = ds[TIME].values[time_index]
    return ModelData(x_seg, x_reach, torch_graphs(graphs, dev), cross_row_blocks(graphs, dev, rows),
                     np.asarray(graphs.parent.tocsr().indices, dtype=np.int64), graphs.cross.tocsr(),
                     breaks=time_breaks(times), days=epoch_days(times) if days is None else days)
