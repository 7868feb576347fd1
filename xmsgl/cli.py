"""The ``xmsgl`` command.

Sub-commands:

``xmsgl demo``
    The whole job on the built-in synthetic basin: build it, fit ASYNC-MSGL and two
    baselines on 1% of the fine observations, downscale the test period, print scores
    against the synthetic truth, write netCDF and a figure.
``xmsgl fetch-data``
    Download (or check) the Delaware River Basin files for offline use.
``xmsgl info [MODEL]``
    Versions of xmsgl and its main dependencies, and the torch devices seen; with
    ``MODEL``, what a saved model is: method, network, periods, the fit's best epoch
    and validation score, inputs with their units, settings.
``xmsgl evaluate``
    A sparsity sweep of several methods (optionally a cross-validation and
    robustness checks) on the synthetic basin or a dataset file; writes one
    netCDF file and prints a table of test RMSE.
``xmsgl fit DATA MODEL``
    Fit a method (``--method``, default msgl) on a netCDF file or zarr store in the
    xmsgl convention and save the model folder ``MODEL``.
``xmsgl downscale MODEL DATA OUT``
    Downscale ``DATA`` with a saved model and write the prediction to ``OUT``: a
    zarr store when ``OUT`` ends in ``.zarr``, a netCDF file when it ends in ``.nc``
    (or another netCDF suffix); any other name is refused. ``DATA`` is read lazily
    (dask, the file's own chunks): a zarr store chunked along ``reach`` streams
    through block by block. With ``--append``, the days are added to the end of the
    existing store ``OUT`` (:func:`xmsgl.io.append_zarr`).
``xmsgl coverage MODEL DATA``
    Which nodes of ``DATA`` have inputs beyond those of the nodes the model was
    trained on (``ds.msgl.coverage``): prints the counts and the farthest nodes,
    and with ``--out`` writes the flags to a netCDF file.
``xmsgl score PRED OBS``
    The errors of a prediction file (``xmsgl downscale``'s) against the observations
    of another (``reach_temp``, or ``--obs-var``), at the reaches and days asked
    (``--reach``, ``--time``; held-out gauges and days): pooled RMSE, MAE, bias, NSE,
    KGE and pairs, the per-reach RMSE's median and worst; ``--out`` writes them.

Options are checked before any work starts: for ``xmsgl evaluate`` that includes
what only the data can tell (the cross-validation's held-out sets, the variables
each method needs), checked once the basin is built or the ``--data`` file read and
before the first fit (a cross-validation that cannot have as many distinct
repetitions as asked is reported then, as an ``xmsgl: warning: ...`` line). Errors
are printed as one line,
``xmsgl: error: ...``: exit status 2 for bad usage (an option, an input file or an
output path that cannot be used; every :class:`~xmsgl.exceptions.XmsglError`), 1 for
a failure outside the request while working (an ``OSError`` such as a full disk, or a
:class:`~xmsgl.exceptions.DownloadError`: the network or a server failed, or a
download did not match its registered hash). Output
files are never replaced unless ``--overwrite`` is given, and never the ``--data``
file.
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import io
import os
import re
import shlex
import sys
import threading
import unicodedata
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from xmsgl import _starting
from xmsgl.exceptions import (
    _FILTERS_LOCK,
    SAY_EACH,
    ChoiceError,
    DataError,
    DownloadError,
    ModelMismatchError,
    ParameterError,
    SchemaError,
    TimeError,
    XmsglError,
    XmsglWarning,
    format_ids,
    ignoring,
)
from xmsgl.io import (
    NETCDF_SUFFIXES,
    _refuse_inside_saved,
    _refuse_model_folder,
    output_folder,
    output_path,
    refuse_unwritable,
    refuse_unwritable_store,
)

__all__ = ["main"]


def _device(name: str) -> str:
    """``--device`` checked before any work: a known name of a device this machine has."""
    from xmsgl.train import resolve_device

    try:
        return str(resolve_device(name))
    except XmsglError as err:
        raise ParameterError(f"--device {name}: {err}") from None


def _demo(args: argparse.Namespace) -> int:
    from xmsgl.demo import check_outdir, run_demo

    if args.seed < 0:
        raise ParameterError(f"--seed {args.seed}: give an integer of at least 0")
    outdir = check_outdir(args.outdir, args.overwrite, "--outdir", "--overwrite")
    with _reader_may_leave():
        run_demo(outdir=outdir, quick=args.quick, progress=not args.no_progress, seed=args.seed,
                 overwrite=args.overwrite, device=_device(args.device))
    return 0


class _ToReaderWhileThere(io.TextIOBase):
    """stdout while its reader is there; after a broken pipe the lines go nowhere and the
    command goes on (the demo prints as it works and writes its files at the end)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._gone = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not self._gone:
            try:
                self._stream.write(text)
            except BrokenPipeError:
                self._left()
        return len(text)

    def flush(self) -> None:
        if not self._gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._left()

    def _left(self) -> None:
        self._gone = True
        _quiet_stdout()  # nor does the flush at exit fail


@contextlib.contextmanager
def _reader_may_leave() -> Iterator[None]:
    """Within the block, a reader of stdout that leaves (``xmsgl demo | head -1``) does
    not stop the command: the demo stopped at its second line, before writing its
    outputs, and other commands exited 1 with their files written."""
    with contextlib.redirect_stdout(_ToReaderWhileThere(sys.stdout)):
        yield


def _fetch_data(args: argparse.Namespace) -> int:
    from xmsgl.datasets.drb import fetch_data

    folder = None if args.folder is None else output_folder(args.folder, "--folder")
    paths = fetch_data(source=args.source, folder=folder, progress=not args.no_progress)
    for p in paths:
        print(p)
    print(f"{len(paths)} files ready")
    return 0


def _printable(line: str) -> str:
    """``line`` with the characters a terminal would act on shown escaped (``\\x1b``,
    ``\\n``): a model folder's config.json, which anyone may have written, is printed
    by ``xmsgl info``, and an escape sequence in it could erase or forge a line."""
    # Controls, separators and the bidirectional overrides only: a file name's
    # undecodable bytes (surrogates, which the stream writes back as the bytes they
    # were) and the joiners of Persian or emoji text stay as they are.
    return "".join(c.encode("unicode_escape").decode()
                   if unicodedata.category(c) in _ESCAPED or c in _BIDI_CONTROLS else c
                   for c in line)


#: Unicode categories :func:`_printable` escapes: controls, line and paragraph separators.
_ESCAPED = ("Cc", "Zl", "Zp")
#: The format characters that reorder what follows them on a terminal.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                           "\u2066\u2067\u2068\u2069")


def _info(args: argparse.Namespace) -> int:
    import importlib.metadata as md

    import xmsgl

    if args.model is not None:
        # Both read before anything is printed: a --data that cannot be read is refused
        # alone, not after the model's description.
        lines = list(_model_lines(args.model))
        if args.data is not None:
            lines += list(_data_lines(args))
        for line in lines:
            print(_printable(line))
        return 0
    if args.data is not None:
        raise ParameterError("--data compares a dataset with a saved model's record: give MODEL too")
    print(f"xmsgl {xmsgl.__version__}")
    for pkg in ("numpy", "xarray", "dask", "torch", "torch_geometric", "pooch", "intake"):
        try:
            print(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            print(f"{pkg} not installed")
    print(f"python {sys.version.split()[0]} ({sys.platform})")
    try:
        import torch
    except ImportError:
        return 0
    from xmsgl.datasets.drb import _ORIGIN_NOTE, _resolve
    from xmsgl.train import resolve_device

    print(f"torch threads: {torch.get_num_threads()}")
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        print(f"cuda available: True ({len(names)} device(s): {', '.join(names)}; "
              f"CUDA {torch.version.cuda})")
    else:
        build = f"torch built with CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only torch build"
        print(f"cuda available: False ({build})")
    mps = getattr(torch.backends, "mps", None)
    print(f"mps available: {bool(mps is not None and mps.is_available())}")
    print(f"device='auto' uses: {resolve_device('auto')}")
    # Resolved as every data call resolves it (POOCH.path, XMSGL_DATA_DIR, the cache).
    folder, origin = _resolve(None)
    print(f"data folder: {folder} ({'XMSGL_DATA_DIR' if origin == 'XMSGL_DATA_DIR' else _ORIGIN_NOTE[origin]})")
    return 0


def _load_model(value: str) -> Any:
    """The model saved in the folder ``MODEL`` (``value`` as typed), or a
    ParameterError naming MODEL when nothing is there."""
    import xmsgl
    from xmsgl.io import missing_hint, model_path

    if not value:  # an unset shell variable; Path("") would be the current folder
        raise ParameterError("MODEL '' is empty; give a folder written by xmsgl fit")
    folder = model_path(value, "MODEL")
    if os.path.islink(folder) and not folder.exists():
        raise ParameterError(f"MODEL {value!r} is a symbolic link to {os.readlink(folder)!r}, which "
                             "does not exist; give a folder written by xmsgl fit")
    if not os.path.lexists(folder):
        raise ParameterError(f"MODEL {value!r} does not exist; give a folder written by xmsgl fit "
                             f"(or model.save in Python){missing_hint(folder)}")
    return xmsgl.load(folder)


def _model_lines(value: str) -> list[str]:
    """What ``xmsgl info MODEL`` prints: what was fitted, on which network and days,
    how the fit went and what it reads."""
    from xmsgl.baselines import BaselineModel
    from xmsgl.periods import spans_text

    model = _load_model(value)
    cfg = model.config

    def periods(spans: Any) -> str:
        return spans_text(spans).replace("/", " to ") if spans else "none"

    def fit_line(history: dict[str, Any], n_obs: Any, fine: bool = True) -> str:
        best, val = history.get("best_epoch"), history.get("val") or []
        fit = (f"{n_obs} fine training observations" if fine else
               "trained on the segments' observations only (remap)")
        start = history.get("val_start")
        if best == 0 and start is not None:
            fit += (f"; the weights the last stage started from kept (validation fine RMSE "
                    f"{start:.3f} degC): none of its {len(val)} epochs scored lower")
        elif isinstance(best, int) and 1 <= best <= len(val):
            score = val[best - 1]
            if score is not None:
                fit += f"; best epoch {best} of {len(val)}, validation fine RMSE {score:.3f} degC"
                if best == len(val) and len(val) > 1:
                    fit += " (the last epoch: the validation score was still improving)"
            else:
                fit += (f"; epoch {best} of {len(val)} kept, chosen on the training loss (no "
                        "validation observations)")
        return f"fit: {fit}"

    def text(v: Any) -> str:
        if isinstance(v, dict):  # task_weights
            return "(" + " ".join(f"{k}={w}" for k, w in v.items()) + ")"
        return "none" if v is None else str(v)

    def input_lines(v: dict[str, Any], reads: dict[str, bool]) -> list[str]:
        units, static = v.get("units") or {}, v.get("static") or {}
        return [f"{dim} inputs: " + ", ".join(
                    f"{n} ({units.get(n) or 'no units'}{', static' if static.get(n) else ''})" for n in names)
                for dim, names in (("segment", v.get("seg_vars") or []), ("reach", v.get("reach_vars") or []))
                if names and reads[dim]]

    def record_lines() -> list[str]:
        """What identifies the data it learned from (``--data DATA`` compares), the
        thinning, and the versions it was fitted with."""
        data, out = cfg.get("data"), []
        data = data if isinstance(data, dict) else {}
        if data.get("targets_sha256"):
            out.append(f"targets sha256 {data['targets_sha256']} ({data.get('targets_days', '?')})")
        if data.get("inputs_sha256"):
            out.append(f"inputs sha256 {data['inputs_sha256']} ({data.get('inputs_days', '?')})")
        if data.get("sparsify"):
            out.append(f"observations thinned: sparsify({data['sparsify']})")
        if cfg.get("versions"):
            out.append("versions: " + ", ".join(f"{k} {v}" for k, v in cfg["versions"].items()))
        return out

    # Equal seeds give equal weights on the CPU with the same number of threads.
    threads = (f" with {cfg['torch_threads']} torch thread{'s' if cfg['torch_threads'] != 1 else ''}"
               if isinstance(cfg.get("torch_threads"), int) else "")
    if isinstance(model, BaselineModel):
        settings = ", ".join(f"{k} {v}" for k, v in (cfg.get("settings") or {}).items())
        fit = cfg.get("fit") if isinstance(cfg.get("fit"), dict) else {}
        counts = ", ".join(f"{k} {v}" for k, v in fit.items() if isinstance(v, (int, float)))
        lines = [f"{value}: the {model.method} baseline, xmsgl {cfg.get('xmsgl', '?')}, "
                 f"created {cfg.get('created', '?')}{' on cpu' + threads if threads else ''}, "
                 f"seed {cfg.get('seed', '?')}",
                 f"sha256 {model.sha256}",
                 f"network: {len(model.arrays.get('reach_ids', ())) or '?'} reaches"]
        # The light baselines keep their periods as entries of their own.
        spans = cfg.get("periods") or {k: cfg[k] for k in ("train", "test") if cfg.get(k)}
        lines += [f"{k}: {periods(spans.get(k))}" for k in ("train", "val", "test") if k in spans]
        if cfg.get("history"):  # the per-reach GRU trains in epochs
            lines.append(fit_line(cfg["history"], cfg.get("n_fine_train_obs", "?")))
        if isinstance(cfg.get("variables"), dict):  # the GRU records what it reads
            lines += input_lines(cfg["variables"], {"segment": True, "reach": True})
        else:
            lines.append("reads: " + ("; ".join(f"{n} ({why})" for n, why in model.reads.items())
                                      or "no variable (the days of year alone)"))
        hp = cfg.get("hyperparameters") or {}
        if hp:
            lines.append("hyperparameters: " + ", ".join(f"{k} {text(v)}" for k, v in hp.items()))
        if settings or counts:
            lines.append(f"settings: {settings or 'none'}" + (f"; {counts}" if counts else ""))
        return lines + record_lines()
    from xmsgl.graph import FINGERPRINT_VERSION

    g, hp, v = cfg["graph"], cfg["hyperparameters"], cfg["variables"]
    per = cfg.get("periods") or {}
    output = {"fine": "the fine head's prediction", "fine_only": "the fine cell alone",
              "remap": "the coarse prediction taken by each reach"}.get(model.output, model.output)
    options = g.get("options") or {}
    lines = [f"{value}: {cfg['method']} ({output}), xmsgl "
             f"{cfg.get('versions', {}).get('xmsgl', '?')}, created {cfg.get('created', '?')} on "
             f"{cfg.get('device', '?')}{threads}, seed {cfg.get('seed', '?')}",
             f"sha256 {model.sha256}",
             f"network: {g['n_seg']} segments, {g['n_reach']} reaches (graph fingerprint "
             f"{g['fingerprint']}"
             + ("" if g.get("fingerprint_version", 1) == FINGERPRINT_VERSION else
                f", of the version {g.get('fingerprint_version', 1)} kind, which graphs of this "
                "xmsgl no longer give")
             + "); graphs: "
             + (", ".join(f"{k} {text(o)}" for k, o in options.items()) or "fit's defaults"),
             *(f"{k}: {periods(per.get(k))}" for k in ("train", "val", "test")),
             ]
    stage_a = cfg.get("stage_a")
    if stage_a:
        lines.append(f"stage A: {periods(stage_a.get('period'))}; tasks "
                     f"{', '.join(stage_a.get('tasks') or [])}"
                     + (f"; targets {stage_a['variable']}" if stage_a.get("variable") else ""))
    lines.append(fit_line((cfg.get("history") or {}).get("main") or {}, cfg.get("n_fine_train_obs", "?"),
                          fine=cfg["method"] != "remap"))
    # The inputs the model reads (as coverage judges them): the fine cell alone reads no
    # segment input, remap no reach input, though both record the dataset's.
    lines += input_lines(v, {"segment": model.output != "fine_only", "reach": model.output != "remap"})
    from xmsgl.model import reads_setting

    # Not the settings the method does not read (fine-only records weighting "mgda").
    keys = [k for k in ("hidden", "epochs", "pretrain_epochs", "lr", "weighting", "window", "stride",
                        "fine_head", "input_scaling", "attn_window", "attn_blocks")
            if reads_setting(cfg["method"], k)]
    # Settings recorded only when used (off by default): task_weights with weighting
    # "fixed", batch_size when given (None: as many windows as fit in memory).
    keys += [k for k in ("task_weights", "batch_size", "lr_schedule", "weight_decay", "ema_decay",
                         "clip_grad_norm", "subbasin_batch")
             if hp.get(k) is not None]
    lines.append("hyperparameters: " + ", ".join(f"{k} {text(hp[k])}" for k in keys if k in hp))
    if hp.get("backbone", "rgrn") != "rgrn":
        opts = hp.get("backbone_options") or {}
        if hp["backbone"] == "dmsge" and opts and "dynamic_days" not in opts:
            opts = {**opts, "dynamic_days": None}  # saved before the option: as it loads
        lines.append(f"backbone: {hp['backbone']}"
                     + (" (" + ", ".join(f"{k} {text(o)}" for k, o in opts.items()) + ")" if opts else ""))
    return lines + record_lines()


def _data_lines(args: argparse.Namespace) -> list[str]:
    """``xmsgl info MODEL --data DATA``: whether DATA holds what MODEL learned from."""
    from xmsgl.baselines import BASELINES
    from xmsgl.model import check_data

    model = _load_model(args.model)
    ds = _read_dataset(args.data, "--data", lazy=False, check=False)
    try:
        got = check_data(model, ds)
    except XmsglError as err:
        raise type(err)(f"--data {args.data!r}: {err}") from err
    said = {True: "the same", False: "DIFFERENT", None: "not recorded (a model fitted before inputs were)"}
    inputs = (f"the {model.method} baseline's fit reads no input variable, observations alone"
              if got["inputs"] is None and model.method in BASELINES else
              f"inputs on the days it read {said[got['inputs']]}")
    return [f"data {args.data}: targets on the days the fit learned from {said[got['targets']]}; {inputs}"]


def _source(args: argparse.Namespace) -> str:
    """The ``source`` attribute of an output of DATA and MODEL: absolute paths, which
    still name the files once the output is moved."""
    return f"{_absolute(args.data)} with the model {_absolute(args.model)}"


def _absolute(path: str) -> str:
    """``path`` as read: ``~`` expanded (a quoted one reaches the command as typed),
    then absolute."""
    return os.path.abspath(os.path.expanduser(path))


def _merge_steps(out: Any, steps: dict[str, Any]) -> Any:
    """``out`` with the variables of each further step merged in: every step's history
    line kept, in order, and its other attributes prefixed by its name (``cv_method``),
    since they describe that step, not the whole file."""
    import xarray as xr

    attrs = dict(out.attrs)
    lines = [str(attrs.pop("history", ""))]
    parts = []
    for prefix, step in steps.items():
        lines.append(str(step.attrs.get("history", "")))
        for key, value in step.attrs.items():
            if key != "history":
                attrs.setdefault(f"{prefix}_{key}", value)
        part = step.copy(deep=False)
        part.attrs = {}
        parts.append(part)
    merged = xr.merge([out, *parts], combine_attrs="override")
    merged.attrs = {**attrs, "history": "\n".join(line for line in lines if line)}
    return merged


def _open_zarr(path: Path, lazy: bool, **options: Any) -> Any:
    """A zarr store, with its consolidated metadata where it has them (a store written
    without them is read without, and without xarray's warning that it fell back):
    dask-backed in the store's chunks (``lazy``), or loaded without dask (a load that
    computed with dask inside open_far_dates' turn of the warning filters waited, on a
    shared scheduler of one thread, behind another command's blocks waiting for the
    turn: a deadlock)."""
    import xarray as xr

    kw: dict[str, Any] = {"chunks": {} if lazy else None, **options}
    try:
        ds = xr.open_zarr(path, consolidated=True, **kw)
    except (ValueError, KeyError):
        ds = xr.open_zarr(path, consolidated=False, **kw)
    return ds if lazy else ds.load()


#: The Python API's keyword advice, in the command's words (regex, replacement).
_CLI_WORDS = (
    # Settings given with --set are JSON: a pair in a list, a dict with double quotes.
    (r"\bgive a tuple: (\w+)=\('([^']*)', '([^']*)'\)",
     r"""give one pair in a list: --set \1='[["\2", "\3"]]'"""),
    (r"\bGive 'fine' a weight > 0 \(e\.g\. (\{[^}]*\})\)",
     lambda m: "Give 'fine' a weight > 0 (e.g. --set task_weights='" + m[1].replace("'", '"') + "')"),
    (r"\bweighting='fixed' needs task_weights, a dict such as (\{[^}]*\})",
     lambda m: "--set weighting=fixed needs --set task_weights='" + m[1].replace("'", '"')
     + "' (a weight for each task)"),
    (r"\bscale='(reach|seg|cross)'", r"--scale \1"),
    (r"\bpass check_graph=False\b", "pass --other-network"),
    (r"\bds\.msgl\.coverage\(model, time=\('([^']*)', '([^']*)'\)\)",
     r"xmsgl coverage MODEL DATA --time \1 \2"),
    (r"\bds\.msgl\.coverage\(model, time=\.\.\.\)", "xmsgl coverage MODEL DATA --time START END"),
    # The command prints the three farthest nodes; its --out file holds every one.
    (r"\bds\.msgl\.coverage\(model\) lists every node, input and day",
     "xmsgl coverage MODEL DATA --out FILE.nc lists every node, input and day"),
    (r"\bds\.msgl\.coverage\(model\)", "xmsgl coverage MODEL DATA"),
    (r"\(xmsgl\.evaluate\.cross_validate\)", "(xmsgl evaluate --cv METHOD)"),
    (r"\bblocking='(\w+)' or '(\w+)'", r"--blocking \1 or \2"),
    (r"\bblocking='(\w+)'", r"--blocking \1"),
    (r"\b(repeats|folds)=(\d+)", r"--\1 \2"),
    (r"\bcheck_graph=False\b", "--other-network"),
    (r"\btrain=, val= and test= \(start, end\)", "--train, --val and --test START END"),
    (r"\btrain=, val= and test=", "--train, --val and --test"),
    (r"\b(train|val|test)=\(start, end\)", r"--\1 START END"),
    (r"\b(train|val|test)= \(start, end\)", r"--\1 START END"),
    (r"(?<![(.])(?<!, )\b(train|val|test|time)=\('([^']*)', '([^']*)'\)", r"--\1 \2 \3"),
    (r"(?<![(.])(?<!, )\b(train|val|test|time)=(?=[('\"])", r"--\1 "),
    (r"(?<![(.])(?<!, )\bmethod='([a-z-]+)'", r"--method \1"),
    (r"\bleave (train|val|test)= out\b", r"leave --\1 out"),
    (r"(?<![(.])(?<!, )\boverwrite=True\b", "--overwrite"),
    (r"\bgive a cut: max_hops \(e\.g\. 8\) or max_distance \(m\), to graphs\(\), or to fit\(\),",
     "give a cut: xmsgl fit --max-hops (e.g. 8) or --max-distance (m),"),
    (r"\bmax_(hops|distance)=(\S+) must be", r"--max-\1 \2 must be"),
    (r", or None for no cut\b", ", or leave it out for no cut"),
    (r"\(time=\)", "(--time)"),
    (r"\bselect that day with time=,", "select that day with --time,"),
    (r"(?<![(.])(?<!, )\bspinup=(\d+)\b", r"--spinup \1"),
    (r"\bmodel\.config\['variables'\]\['observed_range'\] holds the ranges",
     "xmsgl coverage MODEL DATA names the nodes and days beyond them"),
    # Python reads PYTHONWARNINGS before xmsgl can be imported: only builtin categories.
    (r"warnings\.simplefilter\('error', xmsgl\.\w+\)",
     "PYTHONWARNINGS=error::UserWarning, which makes every xmsgl warning (every UserWarning) an "
     "error"),
    (r"\(train=, val=, test=\)", "(--train, --val, --test)"),
    (r"\(model\.config\['input_range'\]\)", "(input_range in the model's config.json)"),
    (r"\(model\.save\(path\) writes one\)", "(xmsgl fit writes one; model.save in Python)"),
    (r"\(model\.save\(path\)\)", "(written by xmsgl fit; model.save in Python)"),
    (r"\bthe (training|validation|test) period \('([^']*)', '([^']*)'\)",
     lambda m: f"--{ {'training': 'train', 'validation': 'val'}.get(m[1], m[1])} {m[2]} {m[3]}"),
    (r"; give a label such as '2001', a pair \(start, end\) such as \('2001-01-01', '2001-12-31'\)"
     r"(, or a list of pairs)?", "; give a date such as 2001-01-01, or a year such as 2001"),
    # The command reads DATA as it is stored: the fix is to store it otherwise.
    (r"rechunk along time first, e\.g\. ds = ds\.chunk\(\{'time': 365\}\), or open the store "
     r"with chunks=\{'time': 365\}",
     "store DATA in chunks of a year along time (in Python: ds.chunk({'time': 365}).to_zarr(...))"),
    (r"rechunk, e\.g\. ds = ds\.chunk\((\{[^}]*\})\) or xr\.open_zarr\(\.\.\., chunks=\{[^}]*\}\), "
     r"or store the data with smaller chunks",
     r"store DATA in smaller chunks (in Python: ds.chunk(\1).to_zarr(...))"),
    (r"rechunk to larger chunks, e\.g\. ds = ds\.chunk\((\{[^}]*\})\)",
     r"store DATA in larger chunks (in Python: ds.chunk(\1).to_zarr(...))"),
    # The command reads DATA lazily, block by block: the count and the in-memory run
    # that names every bad value are Python's.
    (r"; count them over the whole dataset(?: \((int\(ds\[[^\]]*\]\.isnull\(\)\.sum\(\)\))"
     r" for NaN\))?, or downscale in memory \(ds\.load\(\) first, without lazy=True\), which "
     r"names them all",
     lambda m: "; count them over the whole of DATA (in Python: " + (f"{m[1]} for NaN, or " if m[1] else "")
     + "ds.load().msgl.downscale(model), which names them all)"),
)


#: ``xmsgl evaluate`` chooses the test period alone (``--test``): the sweep trains every
#: method on the other days, and the networks validate on the water year(s) before it.
_EVALUATE_WORDS = (
    (r"\bgive train=, val= and test= \(start, end\) to choose them",
     "give --test START END to choose the test period"),
    (r"\bgive train=\(start, end\) to choose them", "give --test START END to choose the test period"),
    # It has no --val: the validation years follow from the folds and the record.
    (r"\bgive val=\(start, end\) \(days not in train\) to choose it on held-out days",
     "give a record with more whole water years, which leaves one to validate on (with "
     "--cv, fewer --folds do too)"),
    (r" or use method='remap'", ""),
    # Its record is --start/--end of the synthetic basin or the file of --data.
    (r"\bgive train=\(start, end\) or a longer record",
     "give a longer record (--start and --end, or the file of --data)"),
    # It compares the methods of --methods: remap is one to add there.
    (r"\bworse than method='remap'", "worse than remap (add it to --methods)"),
    (r"\bgive test=\(start, end\) on days with observations",
     "give --test START END on days with observations"),
)

#: fetch-data's own words: its data folder is --folder (the Python API's folder=).
_FETCH_WORDS = (
    (r"\(given as folder=", "(given as --folder"),
    (r"\bgive folder= \(`xmsgl fetch-data --folder`\)", "give --folder"),
    (r"\bas folder= \(`xmsgl fetch-data --folder`\)", "as --folder"),
    (r"\bpoint folder= at it", "point --folder at it"),
    (r"\(or pass it as folder=\)", "(or give it as --folder)"),
)


def _cli_words(message: str, command: str = "") -> str:
    """A message of the Python API with its keyword advice in the words of the
    command (``command``: words of its own first, for ``"evaluate"``)."""
    import re

    own: tuple[tuple[str, Any], ...] = {"evaluate": _EVALUATE_WORDS,
                                          "fetch-data": _FETCH_WORDS}.get(command, ())
    for pattern, words in (*own, *_CLI_WORDS):
        message = re.sub(pattern, words, message)
    return message


def _open_any(path: Path, lazy: bool, **kw: Any) -> Any:
    """A zarr store (a folder) or a netCDF file, lazily or loaded."""
    import xarray as xr

    if path.is_dir():
        return _open_zarr(path, lazy, **kw)
    if path.exists():
        # Reading a FIFO waits for a writer without end, and a device is read without end.
        from xmsgl.io import regular_file

        regular_file(path, "data file", "give a netCDF file or a zarr store (a folder)")
    # netCDF-C and HDF5 are not thread-safe, and xarray locks their data reads only:
    # commands in several threads opening files at once crashed the process.
    with _NETCDF_OPEN_LOCK:
        if not lazy:
            return xr.open_dataset(path, **kw).load()
        with xr.open_dataset(path, **kw) as plain:
            chunks = _netcdf_chunks(plain)
        # A variable stored in other chunks than the one the sizes follow is read in
        # whole stored chunks all the same.
        with ignoring(Warning, ".*separate the stored chunks"):
            return xr.open_dataset(path, chunks=chunks, **kw)


#: One netCDF file opened at a time by the commands of this process (see _open_any).
_NETCDF_OPEN_LOCK = threading.Lock()


#: Dask chunks the command reads a netCDF file in, along each dimension, before they
#: are rounded up to whole stored chunks: a year of days, and blocks of nodes of some
#: 15 MB per float32 variable a year (a contiguous file, one chunk per variable, was
#: read whole, and refused above a gigabyte).
_NETCDF_CHUNKS = {"time": 365, "reach": 10_000, "seg": 10_000}

#: Most values of one dask chunk of a netCDF variable on (node, time): 256 MB of float32.
_NETCDF_CHUNK_VALUES = 64_000_000


def _netcdf_chunks(ds: Any) -> dict[str, int]:
    """Dask chunks for reading the netCDF dataset ``ds`` (opened without dask): per
    dimension of :data:`_NETCDF_CHUNKS`, the target rounded up to a whole number of the
    largest chunk a data variable is stored in along it (the target itself where every
    one is stored contiguous), so that a block reads whole stored chunks and each only
    once. Where a node dimension's stored chunks span more nodes than the target (a
    file with an unlimited ``time`` stores each day of every node as a chunk), days
    are taken fewer, in whole stored chunks still, to keep a chunk within
    :data:`_NETCDF_CHUNK_VALUES`. Coordinates are not looked at: they are read whole."""
    stored: dict[str, int] = {}
    out: dict[str, int] = {}
    for dim, target in _NETCDF_CHUNKS.items():
        if dim not in ds.dims:
            continue
        stored[dim] = 0
        for var in ds.data_vars.values():
            sizes = var.encoding.get("chunksizes")
            if sizes and dim in var.dims:
                stored[dim] = max(stored[dim], int(sizes[var.dims.index(dim)]))
        size = -(-target // stored[dim]) * stored[dim] if stored[dim] else target
        out[dim] = min(size, int(ds.sizes[dim]))
    if "time" in out:
        step = max(1, stored["time"])
        for dim in ("reach", "seg"):
            if dim in out and out[dim] * out["time"] > _NETCDF_CHUNK_VALUES:
                days = (_NETCDF_CHUNK_VALUES // out[dim]) // step * step
                out["time"] = max(step, min(out["time"], days))
    return out


def _read_dataset(value: str, option: str = "--data", lazy: bool = False,
                  check: bool = True) -> Any:
    """A netCDF file or zarr store, validated against the convention (``check``): in
    memory, or with ``lazy`` dask-backed (a zarr store in its own chunks, a netCDF file
    in whole stored chunks of about a year by 10,000 nodes: :func:`_netcdf_chunks`). Without ``check``
    the caller validates what it reads (``downscale`` checks only the model's inputs)."""

    import xmsgl
    from xmsgl.io import open_far_dates

    if not value:  # an unset shell variable; Path("") would be the current folder
        raise ParameterError(f"{option} '' is empty; give a netCDF file or a zarr store")
    path = Path(value).expanduser()
    if not path.exists():
        from xmsgl.io import missing_hint

        raise ParameterError(f"{option} {value!r} does not exist; give a netCDF file or a zarr "
                             f"store{missing_hint(path)}")
    try:
        ds = open_far_dates(_open_any, path, lazy)
    except XmsglError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        # Readers answer a file that is not netCDF or zarr with many kinds of error
        # (no engine, group not found, HDF errors...): all mean the same to the user.
        detail = " ".join(str(err).split()).split(". ")[0][:200]
        raise DataError(f"{option} {value!r} cannot be read as a netCDF file or a zarr store "
                        f"({type(err).__name__}: {detail}); give a dataset in the xmsgl convention "
                        f"(see docs/convention.md)") from err
    if not check:
        return ds
    try:
        return xmsgl.validate(ds)
    except XmsglError as err:
        raise type(err)(f"{option} {value!r} is not in the xmsgl convention: {err}") from err


def _standard_calendar(ds: Any, option: str = "--convert-calendar") -> Any:
    """``ds`` on the standard calendar when its dates are cftime (a climate model's
    ``noleap`` or ``360_day``), the inputs of the days that calendar lacks filled by
    linear interpolation (:func:`xmsgl.convention.fill_daily`; observations stay
    missing there); ``ds`` itself when its dates are datetime64 already. Dates beyond
    what datetime64[ns] holds become datetime64[s], as a standard calendar's are read."""
    import pandas as pd
    import xarray as xr

    from xmsgl.convention import append_history, fill_daily

    index = ds.indexes.get("time") if "time" in ds.dims else None
    if not isinstance(index, xr.CFTimeIndex):
        return ds
    calendar = index.calendar
    align = {"align_on": "date"} if calendar == "360_day" else {}
    try:
        with ignoring(Warning):  # xarray's notes on dropped or added days
            try:
                out = ds.convert_calendar("standard", use_cftime=False, **align)
            except ValueError:  # beyond 1678-2262: whole dates, in seconds
                out = ds.convert_calendar("proleptic_gregorian", use_cftime=True, **align)
                out = out.assign_coords(time=pd.DatetimeIndex(
                    out.indexes["time"].to_datetimeindex(time_unit="s")))
    except (ValueError, TypeError, OverflowError) as err:
        raise TimeError(f"{option}: the dates of calendar {calendar!r} could not be converted to the "
                        f"standard calendar ({type(err).__name__}: {err}); convert them in Python "
                        "(ds.convert_calendar) and pass the file written") from err
    append_history(out, f"{option}: time converted from calendar {calendar!r} to 'standard'"
                        f"{' (align_on=date)' if align else ''}")
    # The days the calendar lacks, as fill_daily's own history line and attributes say.
    return fill_daily(out)


def _calendar_hint(err: Exception) -> str:
    """``err``'s message, with the option that converts cftime dates where it refuses them."""
    text = str(err)
    if "holds cftime dates" in text:
        text += "; from the shell, --convert-calendar does both"
    return text


def _open_data(value: str) -> Any:
    """The ``--data`` file of ``xmsgl evaluate`` in memory, validated against the convention."""
    ds = _read_dataset(value)
    if "reach_temp" not in ds.data_vars:
        raise SchemaError(f"--data {value!r} has no 'reach_temp' (reach, time): the sweep thins and "
                          f"scores fine observations; add them, or leave out --data for the "
                          f"synthetic basin")
    return ds


@contextlib.contextmanager
def _warnings_as_lines(command: str = "") -> Iterator[None]:
    """Print xmsgl's warnings as ``xmsgl: warning: ...`` lines while a command runs, in
    the words of ``command`` (:func:`_cli_words`), each text once (a command that
    validates its file and then fits on it would say a validation warning twice)."""
    printer = _Printer(command)
    # In the filters' turn (exceptions.ignoring): the end of another thread's block
    # silencing a note meanwhile would put back the hook it found, over the command's.
    with _FILTERS_LOCK, _SHOWING_LOCK:
        if not _SHOWING["printers"]:
            _SHOWING["original"] = warnings.showwarning
            warnings.showwarning = _show_warning
        _SHOWING["printers"].append(printer)
    token = _PRINTER.set(printer)
    try:
        yield
    finally:
        try:
            _PRINTER.reset(token)
        except ValueError:  # left from another context than the one it was entered in
            _PRINTER.set(None)
        with _FILTERS_LOCK, _SHOWING_LOCK:
            _SHOWING["printers"].remove(printer)
            if not _SHOWING["printers"]:
                if warnings.showwarning is _show_warning:  # not replaced by another since
                    warnings.showwarning = _SHOWING["original"]
                _SHOWING["original"] = None


class _Printer:
    """A command's printer of xmsgl warnings (:func:`_warnings_as_lines`): each text once,
    in the command's words."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.said: set[str] = set()
        self.lock = threading.Lock()  # dask's threads warn too

    def __call__(self, message: str) -> None:
        text = _cli_words(message, self.command)
        with self.lock:
            new = text not in self.said
            self.said.add(text)
        if new:
            _warn(text)


#: The commands printing xmsgl's warnings as lines (main may run in several threads at
#: once): Python's ``warnings.showwarning`` is one for the process, so the first command
#: puts :func:`_show_warning` in its place and the last puts the original back (each
#: saving and restoring it in turn left one command's printer in place for good).
_SHOWING: dict[str, Any] = {"printers": [], "original": None}
_SHOWING_LOCK = threading.Lock()
#: The printer of the command running in this context: its thread, and the threads of
#: dask's local schedulers, which carry the context of the compute that started them.
_PRINTER: contextvars.ContextVar[_Printer | None] = contextvars.ContextVar("xmsgl_cli_printer",
                                                                           default=None)


def _cluster_thread(name: str) -> bool:
    """Whether a thread of this name is dask.distributed's: a worker's task threads
    (``Dask-Default-Threads-PID-N`` after the worker's name, ``Dask-Actor-Threads``), or
    the client's event loop, which warns again what a worker process warned."""
    return bool(re.search(r"(^|-)Dask-\w+-Threads", name)) or name == "IO loop"


def _show_warning(message: Any, category: Any, filename: Any, lineno: Any, file: Any = None,
                  line: Any = None) -> None:
    """An xmsgl warning to the printer of the command running in this context (in a
    thread of dask.distributed, which carries no context, the latest command's);
    others, and an xmsgl warning of a thread no command started, as Python shows them."""
    printer = _PRINTER.get()
    with _SHOWING_LOCK:
        if printer is None and _SHOWING["printers"] and _cluster_thread(threading.current_thread().name):
            printer = _SHOWING["printers"][-1]
        original = _SHOWING["original"] or warnings._showwarning_orig  # type: ignore[attr-defined]
    if printer is not None and issubclass(category, XmsglWarning):
        printer(str(message))
    else:
        original(message, category, filename, lineno, file, line)


def _period(option: str, value: Sequence[str] | None) -> tuple[str, str] | None:
    if value is None:
        return None
    _check_dates(value[0], value[1], option)
    return (value[0], value[1])


def _new_output(value: str, option: str, overwrite: bool, sources: Sequence[tuple[str, str]],
                out: Path | None = None) -> Path:
    """An output path that may be written: absent, or replaced with ``overwrite``, and
    never one of the ``sources`` (``(what, path)`` of the inputs), inside one, or a
    folder (a zarr store) that holds one: replacing it would delete that input."""
    out = output_path(value, option) if out is None else out
    for what, src in sources:
        if not src:  # refused by the command as it reads it ("'' is empty")
            continue
        data = Path(src).expanduser().resolve()
        same = out.exists() and data.exists() and os.path.samefile(out, data)  # hard links too
        if same or out.resolve() == data or data in out.resolve().parents:
            raise ParameterError(f"{option} {value!r} would write over the {what} {src!r}, even "
                                 f"with --overwrite; choose another {option}")
        if out.resolve() in data.parents:
            raise ParameterError(f"{option} {value!r} holds the {what} {src!r}: replacing it "
                                 f"would delete that input, even with --overwrite; choose another "
                                 f"{option}, or move the {what} out of it")
    # Not inside a zarr store or a saved model: refused by the writers too, but only
    # once the work is done.
    try:
        _refuse_inside_saved(out)
    except ParameterError as err:
        raise ParameterError(f"{option} {err}") from None
    # After the inputs: --overwrite, the advice below, cannot help an output that is one.
    if os.path.lexists(out) and not overwrite:
        raise ParameterError(f"{option} {value!r} already exists; pass --overwrite to replace it, "
                             f"or choose another {option}")
    refuse_unwritable(out, value, option)
    return out


def _names_a_folder(value: str) -> bool:
    """Whether an output path as typed names a folder: an existing one, or a path
    ending in a separator, ``.`` or ``..``."""
    from xmsgl.io import names_a_folder

    return names_a_folder(value) or Path(value).expanduser().is_dir()


def _one_netcdf_file(value: str, command: str, example: str) -> None:
    """Refuse an ``--out`` of ``command`` that names a folder or a zarr store, or a file
    whose suffix is not one of :data:`NETCDF_SUFFIXES`: it writes one netCDF file."""
    if _names_a_folder(value) or Path(value).suffix.lower() not in NETCDF_SUFFIXES:
        raise ParameterError(f"--out {value!r}: {command} writes one netCDF file; give a file "
                             f"name ending in .nc, such as {example}")


#: fit's arguments that have options of their own in ``xmsgl fit``.
_FIT_OPTIONS = {"method": "--method", "seed": "--seed", "epochs": "--epochs", "train": "--train",
                "val": "--val", "test": "--test", "device": "--device", "progress": "--no-progress",
                "graph_options": "--max-hops/--max-distance", "max_hops": "--max-hops",
                "max_distance": "--max-distance", "ds": "DATA"}

#: fit's arguments whose values are names or dates: "2001" stays a label, not a number.
_TEXT_SETTINGS = frozenset({"stage_a_period", "stage_a_variable", "fine_head", "backbone", "weighting",
                            "input_scaling", "lr_schedule"})


def _settings(given: list[str]) -> dict[str, Any]:
    """``--set NAME=VALUE`` as fit's keyword arguments. VALUE is a number where it
    reads as one (8, 0.001, .001, 1e-3; not NaN or infinity), else JSON (null, true,
    [1, 2], {"a": 1}), else text (equal); for the arguments that take names or dates
    (:data:`_TEXT_SETTINGS`) text unless it is a JSON list or object."""
    import json
    import math

    def value(name: str, text: str) -> Any:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        if name in _TEXT_SETTINGS:
            return parsed if isinstance(parsed, (list, dict)) else text
        if parsed is text and "," in text:
            # a,b: a list meant, read as one name (fit said "['a,b'] are not known").
            items = ", ".join(json.dumps(p.strip()) for p in text.split(","))
            raise ParameterError(f"--set {name}={text}: a list is written in JSON, e.g. "
                                 f"--set {name}='[{items}]'")
        for kind in (int, float):
            try:
                number = kind(text)
            except ValueError:
                continue
            if not math.isfinite(number):
                raise ParameterError(f"--set {name}={text}: give a finite number")
            return number
        return parsed

    out: dict[str, Any] = {}
    for item in given:
        name, sep, text = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name.isidentifier():
            raise ParameterError(f"--set {item!r}: give NAME=VALUE, for example --set hidden=8")
        if name in _FIT_OPTIONS:
            # Not the text given: the command's words would rewrite "train=(" in it.
            raise ParameterError(f"--set {name}=...: {name} has its own option, {_FIT_OPTIONS[name]}")
        if name in out:
            raise ParameterError(f"--set {name}= is given twice; give it once")
        out[name] = value(name, text.strip())
    return out


def _fit(args: argparse.Namespace) -> int:
    import time as _time

    import xmsgl
    from xmsgl.io import model_path

    periods = {k: _period(f"--{k}", getattr(args, k)) for k in ("train", "val", "test")}
    if args.epochs is not None and args.epochs < 1:
        raise ParameterError(f"--epochs {args.epochs}: give at least 1")
    if args.seed < 0:
        raise ParameterError(f"--seed {args.seed}: give an integer of at least 0")
    from xmsgl.methods import BASELINES, FIT_METHODS

    known = list(FIT_METHODS)
    if args.method not in known:
        from xmsgl.exceptions import did_you_mean

        raise ChoiceError(f"--method {args.method!r} is not known{did_you_mean([args.method], known)}; "
                          f"use one of {known}")
    if args.epochs is not None and args.method in BASELINES:
        raise ParameterError(f"--epochs: the baseline {args.method!r} has no epochs; leave it out")
    settings = _settings(args.settings)
    cuts = {k: v for k, v in (("max_hops", args.max_hops), ("max_distance", args.max_distance))
            if v is not None}
    if cuts and (args.method in BASELINES or args.method == "gru"):
        raise ParameterError(f"--{next(iter(cuts)).replace('_', '-')}: {args.method!r} builds no "
                             "river graph; leave it out")
    # Before the fit, in the order that gives advice that works: MODEL is not the input
    # (overwrite=True checks that alone), nor a folder other than a saved model, which
    # --overwrite never replaces; then whether it exists.
    out = _new_output(args.model, "MODEL", True, [("input", args.data)])
    _refuse_model_folder(model_path(out), "model")
    out = _new_output(args.model, "MODEL", args.overwrite, [("input", args.data)], out)
    device = _device(args.device)
    ds = _read_dataset(args.data, "DATA")
    kwargs: dict[str, Any] = {k: v for k, v in periods.items() if v is not None}
    if args.method not in BASELINES:
        # "auto" goes on as such: the GRU, which trains on the CPU only, takes it,
        # and refused the GPU it resolves to on a machine with one.
        kwargs.update(device=args.device if args.device == "auto" else device,
                      progress=not args.no_progress)
        if args.epochs is not None:
            kwargs["epochs"] = args.epochs
        if cuts:
            kwargs["graph_options"] = cuts
    kwargs.update(settings)
    t0 = _time.time()
    model = xmsgl.fit(ds, args.method, seed=args.seed, **kwargs)
    seconds = _time.time() - t0
    if os.path.lexists(out) and not args.overwrite:  # made while the model trained
        raise ParameterError(f"MODEL {args.model!r} appeared while the model was fitted; pass "
                             f"--overwrite to replace it, or choose another MODEL")
    # Replaces a saved model folder only; anything else there is refused.
    path = model.save(out, overwrite=True)  # --overwrite was checked above
    history = getattr(model, "history", None) or getattr(model, "config", {}).get("history") or {}
    # The network methods keep one history per stage; the GRU's is its only stage.
    main = history.get("main") or (history if "best_epoch" in history else {})
    best = main.get("best_epoch")
    val = main.get("val") or []
    score = ""
    # best_epoch counts from 1; 0 is the weights a fine-tuning stage started from.
    if best == 0 and main.get("val_start") is not None:
        score = (f", the starting weights of the fine-tuning kept (validation fine RMSE "
                 f"{main['val_start']:.3f} degC): none of its {len(val)} epochs scored lower")
    elif isinstance(best, int) and 1 <= best <= len(val) and val[best - 1] is not None:
        score = f", best epoch {best} of {len(val)} with validation fine RMSE {val[best - 1]:.3f} degC"
        if best == len(val) > 1:
            score += " (still improving at the last epoch: more --epochs may help)"
    print(f"fitted {args.method} on {args.data} in {seconds:.0f} s{score}")
    print(f"wrote {path} (sha256 {model.sha256[:12]})")
    return 0


def _attributes(items: list[str]) -> dict[str, str]:
    """``--attr KEY=VALUE`` options as global attributes, refused unless each is a name
    netCDF takes (a letter or ``_``, then letters, digits, ``_``, ``.``, ``-``), ``=``
    and its value."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", key):
            raise ParameterError(f"--attr {item!r}: give KEY=VALUE, KEY a name of letters, digits "
                                 "and _ (e.g. --attr creator_name='A. Hydrologist')")
        if key in _WRITTEN_FROM_THE_RUN:
            raise ParameterError(f"--attr {key}: xmsgl writes {key} of OUT from the run "
                                 f"({_WRITTEN_FROM_THE_RUN[key]}), and a value given would make the "
                                 "file misstate it; leave it out (a note of your own goes in "
                                 "--attr comment='...')")
        out[key] = value
    return out


#: The global attributes of OUT that state facts of the run: --attr cannot set them.
_WRITTEN_FROM_THE_RUN = {
    "history": "the command, xmsgl's version and the model's sha256",
    "Conventions": "the conventions it follows",
    "date_created": "when it was written",
    "date_modified": "when it was appended to",
    "time_coverage_start": "its first day; choose the days with --time",
    "time_coverage_end": "its last day; choose the days with --time",
    "time_coverage_resolution": "its time step",
    "time_coverage_duration": "the span of its days",
}


def _downscale(args: argparse.Namespace) -> int:
    from xmsgl.convention import output_dataset
    from xmsgl.io import append_zarr, compressed_encoding, to_netcdf_safe, to_zarr_safe

    time = _period("--time", args.time)
    if args.reach_chunk is not None and args.reach_chunk < 1:
        raise ParameterError(f"--reach-chunk {args.reach_chunk}: give at least 1")
    for option, value, least in (("--spinup", args.spinup, 0), ("--chunk", args.chunk, 1)):
        if value is not None and value < least:
            raise ParameterError(f"{option} {value}: give at least {least}")
    # As the history line of a run in Python records them, to run it again from here.
    run = {k: v for k, v in (("spinup", args.spinup), ("chunk", args.chunk)) if v is not None}
    # Whether OUT names a folder, from the text as typed ("pred/", "pred/."), before
    # whether it exists: --overwrite would not help.
    zarr = Path(args.out).suffix.lower() == ".zarr"
    if not zarr and _names_a_folder(args.out):
        raise ParameterError(f"OUT {args.out!r} names a folder; give a netCDF file name, or a zarr store "
                             f"name ending in .zarr")
    if not zarr and Path(args.out).suffix.lower() not in NETCDF_SUFFIXES:
        raise ParameterError(f"OUT {args.out!r}: downscale writes a netCDF file or a zarr store, "
                             "whatever the name says; give a name ending in .nc (netCDF; or "
                             f"{', '.join(sorted(set(NETCDF_SUFFIXES) - {'.nc'}))}) or .zarr")
    if args.zarr_format is not None and not zarr:
        raise ParameterError(f"--zarr-format {args.zarr_format} applies to a zarr store; OUT {args.out!r} "
                             "is a netCDF file: leave --zarr-format out, or name OUT ending in .zarr")
    attrs = _attributes(args.attr)
    if attrs and args.append:
        raise ParameterError("--attr sets the attributes of a new OUT; a store appended to keeps its "
                             "own: leave --attr out with --append")
    if args.append:
        out = _append_output(args, zarr)
    else:
        out = _new_output(args.out, "OUT", args.overwrite, [("input", args.data), ("input", args.model)])
    device = _device(args.device)
    model = _load_model(args.model)
    # What the model cannot give is said before DATA is read, and blamed on MODEL.
    from xmsgl.downscale import check_model_scale

    try:
        check_model_scale(model, args.scale, ["--reach-chunk"] if args.reach_chunk is not None else [],
                          check_graph=not args.other_network)
    except XmsglError as err:
        raise type(err)(f"MODEL {args.model!r}: {err}") from err
    from xmsgl.baselines import BaselineModel

    windows = [o for o, v in (("--spinup", args.spinup), ("--chunk", args.chunk)) if v is not None]
    if windows and isinstance(model, BaselineModel):
        raise ParameterError(f"{'/'.join(windows)}: MODEL {args.model!r} is the baseline "
                             f"{model.method!r}, which has no network's warm-up or windows to "
                             "set (the GRU runs in those it was fitted with); leave them out")
    # The cross-scale estimate runs in memory only; the rest streams from the file.
    lazy = args.scale != "cross"
    if not lazy and args.reach_chunk is not None:
        raise ParameterError("--reach-chunk: --scale cross runs in memory, not in blocks; leave "
                             "--reach-chunk out")
    # Validated by downscale, as the Python call: only the variables the model reads
    # (observations, or an ensemble on one more dimension, are left as they are).
    ds = _read_dataset(args.data, "DATA", lazy=lazy, check=False)
    if args.convert_calendar:
        ds = _standard_calendar(ds)
    if args.threads is not None:
        run["threads"] = args.threads  # the lazy run's blocks (the option: in memory)
    try:
        pred = ds.msgl.downscale(model, scale=args.scale, time=time, device=device,
                                 check_graph=not args.other_network,
                                 reach_chunk=args.reach_chunk, **run)
    except XmsglError as err:
        raise type(err)(f"DATA {args.data!r}: {_calendar_hint(err)}") from err  # main() words it for the CLI
    # The input's history goes on, this step appended; CF and catalog attributes.
    result = output_dataset(pred, ds, source=_source(args), attrs=attrs or None)
    try:
        # DATA is read lazily, block by block, while the result is written: a chunk
        # it cannot decode fails here, not when it was opened.
        if args.append:
            try:
                append_zarr(result, out)
            except DataError as err:  # in the command's words
                text = re.sub(r"append piece\.sel\(time=slice\('([^']+)', None\)\)",
                              r"start --time at \1", str(err))
                raise type(err)(f"OUT {args.out!r}: {text}") from err
            except ModelMismatchError as err:
                raise ModelMismatchError(f"OUT {args.out!r}: {err}".replace(
                    "pass same_model=False", "in Python append_zarr(..., same_model=False)")) from err
        elif zarr:
            # A store that later runs grow with --append keeps its first chunks: a
            # year of days a chunk, not the first run's few (a daily run's one).
            if result.sizes["time"] < 365:
                result = result.chunk({"time": -1})
                for var in result.variables.values():
                    if "time" in var.dims and var.ndim > 1:
                        var.encoding["chunks"] = tuple(
                            365 if d == "time" else c[0] for d, c in zip(var.dims, var.chunks or ()))
            to_zarr_safe(result, out, overwrite=args.overwrite,
                         **({} if args.zarr_format is None else {"zarr_format": args.zarr_format}))
        else:
            to_netcdf_safe(result, out, overwrite=args.overwrite,
                           encoding={str(pred.name): compressed_encoding(pred)})
    except XmsglError:
        raise
    except (ValueError, KeyError, RuntimeError) as err:
        detail = " ".join(str(err).split()).split(". ")[0][:200]
        raise DataError(f"DATA {args.data!r} could not be read while OUT was computed and "
                        f"written ({type(err).__name__}: {detail}); nothing was written. Check "
                        "the file (a damaged chunk?) or read it into memory in Python to "
                        "find where") from err
    dims = " x ".join(f"{pred.sizes[d]} {d}" for d in pred.dims)
    print(f"{'appended to' if args.append else 'wrote'} {out} ({pred.name}: {dims}, "
          f"{pred.attrs.get('units', '')}; {model.method} on {device})")
    return 0


def _append_output(args: argparse.Namespace, zarr: bool) -> Path:
    """The existing zarr store ``--append`` grows; refused before any work where it cannot."""
    if not zarr:
        raise ParameterError(f"--append grows a zarr store along time; OUT {args.out!r} is not one: "
                             "name a store ending in .zarr")
    for option, given in (("--overwrite", args.overwrite), ("--zarr-format", args.zarr_format is not None)):
        if given:
            raise ParameterError(f"--append adds to the store OUT as it is; leave {option} out")
    out = output_path(args.out, "OUT")
    if os.path.lexists(out) and not out.is_dir():
        raise ParameterError(f"--append: OUT {args.out!r} is a file, not a zarr store; name the store "
                             "to grow")
    if not out.is_dir():
        raise ParameterError(f"--append: OUT {args.out!r} does not exist; write its first days without "
                             "--append")
    for what, src in (("input", args.data), ("input", args.model)):
        data = Path(src).expanduser().resolve() if src else None
        if data is not None and (out.resolve() == data or out.resolve() in data.parents):
            raise ParameterError(f"--append: OUT {args.out!r} is or holds the {what} {src!r}; "
                                 "choose another OUT")
    try:
        refuse_unwritable_store(out)
    except ParameterError as err:
        raise ParameterError(f"--append: OUT {err}") from None
    return out


def _check_evaluate(args: argparse.Namespace) -> Path:
    """Refuse unusable options before any work; return the ``--out`` path."""
    from xmsgl.methods import BASELINES, FIT_METHODS

    known = list(FIT_METHODS)
    methods = list(_EVALUATE_METHODS) if args.methods is None else args.methods
    for option, names in (("--methods", methods), ("--cv", [args.cv] if args.cv else []),
                          ("--robustness", [args.robustness] if args.robustness else [])):
        unknown = [m for m in names if m not in known]
        if unknown:
            raise ChoiceError(f"{option}: unknown method(s) {unknown}; use one of {known}")
    if len(set(methods)) != len(methods):
        raise ParameterError(f"--methods {args.methods} names a method twice; give each once")
    bad_keep = [k for k in args.keep if not 0 < k <= 1]
    if bad_keep:
        raise ParameterError(f"--keep {bad_keep}: shares must be in (0, 1]")
    # The sweep refuses repeats and negative seeds too, but only after the basin is
    # built or the --data file read: refuse them here, before any work.
    if len(set(args.keep)) != len(args.keep):
        raise ParameterError(f"--keep {args.keep} names a share twice; give each once")
    if len(set(args.seeds)) != len(args.seeds):
        raise ParameterError(f"--seeds {args.seeds}: give distinct seeds")
    if any(s < 0 for s in args.seeds):
        raise ParameterError(f"--seeds {args.seeds}: seeds must be integers of at least 0")
    if args.epochs is not None:
        if args.epochs < 1:
            raise ParameterError(f"--epochs {args.epochs}: give at least 1")
        asked = {*methods, *(m for m in (args.cv, args.robustness) if m)}
        if asked and asked <= set(BASELINES):
            raise ParameterError(f"--epochs: the methods asked for ({sorted(asked)}) are baselines, "
                                 "which have no epochs; leave --epochs out")
    else:
        args.epochs = 10
    args.test = _period("--test", args.test)
    args.device = _device(args.device)
    given_cv = [name for name in (*_CV_DEFAULTS, "cv_seeds", "keep_coarse")
                if getattr(args, name) is not None]
    if given_cv and not args.cv:
        options = " ".join("--" + name.replace("_", "-") for name in given_cv)
        raise ParameterError(f"{options}: these set the cross-validation of --cv METHOD, which is "
                             f"not asked for; add --cv METHOD, or leave them out")
    if args.cv:
        for name, value in _CV_DEFAULTS.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        if args.folds < 2:
            raise ParameterError(f"--folds {args.folds}: cross-validation needs at least 2 folds")
        if args.keep_coarse and args.blocking == "water_year":
            raise ParameterError("--keep-coarse keeps the coarse observations of held-out sites; "
                                 "--blocking water_year holds out days, whose coarse observations "
                                 "are always hidden: leave it out")
        if args.repeats < 1:
            raise ParameterError(f"--repeats {args.repeats}: give at least 1")
        # The baselines ignore the seed: one seed per fold is all they need.
        seeded = args.cv not in BASELINES
        if args.cv_seeds is None:
            args.cv_seeds = 2 if seeded else 1
        if args.cv_seeds < 1:
            raise ParameterError(f"--cv-seeds {args.cv_seeds}: give at least 1")
        if seeded and args.cv_seeds < 2:
            raise ParameterError(f"--cv-seeds {args.cv_seeds}: {args.cv} depends on its training seed, and "
                                 f"the variance decomposition separates seeds from data partitions: give "
                                 f"at least 2 seeds per fold (1 is enough only for the baselines "
                                 f"{list(BASELINES)}, which ignore the seed)")
    given = [name for name in _SYNTHETIC if getattr(args, name) is not None]
    if args.data is not None and given:
        options = " ".join("--" + name.replace("_", "-") for name in given)
        raise ParameterError(f"{options}: these build the synthetic basin and do not apply to --data "
                             f"{args.data!r}, whose own network and days are used; leave them out, or "
                             f"select the days in the file first (ds.sel(time=slice(start, end)))")
    if args.data is None:
        for name, value in _SYNTHETIC.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        if args.n_segments < 1:
            raise ParameterError(f"--n-segments {args.n_segments}: give at least 1")
        if not 0 < args.reach_obs_share <= 1:
            raise ParameterError(f"--reach-obs-share {args.reach_obs_share}: give a share in (0, 1]")
        if args.basin_seed < 0:
            raise ParameterError(f"--basin-seed {args.basin_seed}: give an integer of at least 0")
        _check_dates(args.start, args.end)
    out = output_path(args.out, "--out")
    _one_netcdf_file(args.out, "evaluate", "results.nc")
    return _new_output(args.out, "--out", args.overwrite,
                       [] if args.data is None else [("--data input", args.data)], out)


#: The cross-validation of ``xmsgl evaluate --cv`` when its options are not given.
_CV_DEFAULTS: dict[str, Any] = {"folds": 3, "repeats": 2, "blocking": "subbasin"}

#: The synthetic basin of ``xmsgl evaluate`` when no --data is given.
_SYNTHETIC: dict[str, Any] = {"n_segments": 10, "start": "2000-10-01", "end": "2005-09-30",
                              "basin_seed": 1, "reach_obs_share": 0.1}


def _check_dates(start: str, end: str, option: str | None = None) -> None:
    """``--start`` and ``--end`` of the synthetic basin (or the two dates of
    ``option``): dates without a time zone, in order. The two dates of an option are
    read as the library reads a period: an end that is a partial label ("2016")
    includes all of it."""
    import pandas as pd

    from xmsgl.periods import period_bounds

    stamps = []
    names = (f"{option} START", f"{option} END") if option else ("--start", "--end")
    from xmsgl.periods import year_last_refusal

    for side, (option_name, value) in enumerate(zip(names, (start, end))):
        refusal = year_last_refusal(value, f"{option_name} {value!r}") if isinstance(value, str) else None
        if refusal is not None:
            raise refusal
        try:
            stamp: Any = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            stamp = pd.NaT
        if stamp is pd.NaT:  # pd.Timestamp("") is NaT, not an error
            raise TimeError(f"{option_name} {value!r} is not a date; give one such as 2000-10-01")
        if stamp.tz is not None:
            raise TimeError(f"{option_name} {value!r} has a time zone; dates are the dataset's "
                            f"own days: give it without one, such as {stamp.date()}")
        if option:  # the first (START) or last (END) instant of the label
            stamp = period_bounds(value, option_name)[side]
        stamps.append(stamp)
    if stamps[1] < stamps[0]:
        raise TimeError(f"{names[1]} {end} is before {names[0]} {start}; swap them or move the "
                        f"end later")


#: Below this many distinct held-out sets, ``xmsgl evaluate --cv`` says under its line
#: that the bootstrap intervals are a rough guide (docs/evaluation.md: nominal 95%
#: intervals of the partition variance covered it in 68% of simulated draws with 6
#: partitions, 89% with 30).
FEW_PARTITIONS = 30

#: The methods of ``xmsgl evaluate`` without --methods (mohseni only for data that have
#: ``reach_air_temp``, see :func:`_default_methods`).
_EVALUATE_METHODS = ("climatology", "mohseni", "msgl")

#: What the sweep's table cannot show of a method, printed under it and kept in the
#: file's ``sweep_note`` attribute.
_SWEEP_NOTES = {
    "idw": "idw reads only the observations of the day it predicts, and the scored days' "
           "observations are hidden from every method, so it predicts each scored day from its "
           "climatology and its row repeats climatology's; idw is meant for filling gaps on days "
           "with observations",
    "harmonic": "harmonic's boundary reaches have no observation on a scored day (they are "
                "hidden from every method), so it interpolates between their climatologies: at "
                "a gauged reach, its own climatology, and its row comes close to climatology's",
}

#: What the robustness table of a method cannot show, printed under it.
_ROBUSTNESS_NOTES = {
    "idw": "idw reads only the observations of the day it predicts, and the scored days' "
           "observations are hidden from it (they are what it is scored on), so it predicts every "
           "scored day from its climatology: no check can change it, and the zeros say nothing about "
           "its robustness",
    "climatology": "climatology predicts each reach from its training observations by day of "
                   "year and reads no input when it predicts, so no check can change it: the "
                   "zeros say nothing about its robustness",
}


def _few_sets_note(n_sets: int) -> str:
    """What ``xmsgl evaluate --cv`` says of intervals from fewer than
    :data:`FEW_PARTITIONS` distinct held-out sets."""
    return (f"intervals from {n_sets} held-out sets are a rough guide, narrower than they should "
            "be" + (" (with 2, the partition variance's upper bound is its estimate)"
                    if n_sets == 2 else "")
            + "; a few tens of sets need more --folds and --repeats, and more blocks (gauged "
              "reaches, water years) where these are too few to draw new sets from")


def _robustness_notes(method: str, rob: Any) -> list[str]:
    """What the robustness table of ``method`` (``rob``, its ``rob_d_rmse`` on ``check``)
    cannot show: the method's own note, else the checks that changed nothing (exactly 0
    at every level) and those whose changes print as 0.000."""
    import numpy as np

    if method in _ROBUSTNESS_NOTES:
        return [_ROBUSTNESS_NOTES[method]]
    zero, small = [], []
    for check in rob["check"].values:
        d = np.asarray(rob["rob_d_rmse"].sel(check=check).values, dtype=float)
        d = d[np.isfinite(d)]
        # Unchanged: the RMSE, MAE and bias of every level equal the unperturbed ones.
        same = [np.asarray(rob[v].sel(check=check).values, dtype=float)
                for v in ("rob_d_mae", "rob_d_bias") if v in rob]
        if d.size and (d == 0).all() and all((x[np.isfinite(x)] == 0).all() for x in same):
            zero.append(str(check))
        elif d.size and (np.abs(d) < 0.0005).all():
            small.append(str(check))
    notes = []
    if zero:
        notes.append(f"{', '.join(zero)} left every scored prediction of {method} as it was "
                     f"(exactly 0 at every level): nothing {'they change' if len(zero) > 1 else 'it changes'} "
                     f"reaches {method}'s predictions, and the zeros say nothing about its robustness")
    if small:
        notes.append(f"{', '.join(small)} changed the RMSE of {method} by less than 0.0005 degC at "
                     "every level (printed as +0.000 or -0.000)")
    return notes


def _evaluate_data(args: argparse.Namespace) -> tuple[Any, str]:
    """The dataset of ``xmsgl evaluate`` and a description of it."""
    import xmsgl

    if args.data is not None:
        return _open_data(args.data), _absolute(args.data)
    ds = xmsgl.datasets.synthetic_basin(n_segments=args.n_segments, start=args.start, end=args.end,
                                        seed=args.basin_seed, reach_obs_share=args.reach_obs_share)
    source = (f"synthetic_basin(n_segments={args.n_segments}, start={args.start!r}, "
              f"end={args.end!r}, seed={args.basin_seed}, reach_obs_share={args.reach_obs_share})")
    return ds, source


def _check_evaluate_data(args: argparse.Namespace, ds: Any) -> list[str]:
    """Refuse what only the data can tell is unusable, before the first fit.

    Returns the texts of the warnings raised (the cross-validation's dropped
    repetitions), which the command prints at once.
    """
    from xmsgl.baselines import _mohseni_air
    from xmsgl.evaluate import _cv_plan

    used = [("--methods", m) for m in args.methods]
    used += [(option, m) for option, m in (("--cv", args.cv), ("--robustness", args.robustness)) if m]
    for option, method in used:
        if method == "mohseni":
            try:
                _mohseni_air(ds)
            except XmsglError as err:
                where = f"--data {args.data!r}" if args.data is not None else "the synthetic basin"
                raise type(err)(f"{option} mohseni cannot run on {where}: {err}") from None
    if args.robustness:
        _check_robustness_data(args, ds)
    notes: list[str] = []
    if args.cv:
        from xmsgl.evaluate import _taking_notes

        # The plan's notes (repetitions dropped) are taken here, to be said first, in this
        # thread alone (catching warnings would change the process's filters and hook).
        try:
            with _taking_notes(notes):
                _cv_plan(ds, folds=args.folds, repeats=args.repeats, blocking=args.blocking, seed=0,
                         use_truth=True)
        except XmsglError as err:
            raise type(err)(f"--cv {args.cv} --blocking {args.blocking} --folds {args.folds}: "
                            f"{err}") from None
    return notes


def _default_methods(ds: Any) -> tuple[list[str], str | None]:
    """``_EVALUATE_METHODS``, less mohseni for data without ``reach_air_temp``, which it
    reads, and the warning that says so (None when nothing is left out)."""
    from xmsgl.baselines import _mohseni_air

    try:
        _mohseni_air(ds)
    except XmsglError as err:
        return ([m for m in _EVALUATE_METHODS if m != "mohseni"],
                f"mohseni is left out of the default methods: {err}; give --methods to choose "
                "the methods")
    return list(_EVALUATE_METHODS), None


def _check_robustness_data(args: argparse.Namespace, ds: Any) -> None:
    """The default robustness checks against the dataset and the test period the sweep
    will take, before the sweep (which the checks would otherwise refuse after it)."""
    import numpy as np
    import pandas as pd

    from xmsgl.evaluate import _sweep_test_days
    from xmsgl.robustness import _check_levels_on, _levels

    time = pd.DatetimeIndex(ds["time"].values)
    test_days = _sweep_test_days(time, args.test)
    if not test_days.any():
        return  # the sweep names an empty test period itself
    try:
        _check_levels_on(ds, _levels(None), time, int(np.flatnonzero(test_days)[0]))
    except XmsglError as err:
        raise type(err)(
            f"--robustness {args.robustness} runs the default checks (xmsgl.robustness."
            f"DEFAULT_CHECKS), which this data cannot take: {err}. Choose --test with more days "
            "before it, or call xmsgl.robustness.robustness with checks of your own") from None


def _evaluate(args: argparse.Namespace) -> int:
    import xmsgl

    out_path = _check_evaluate(args)
    # Scoped, so that calling main() in a process leaves its options as they were.
    with xmsgl.set_options(progress=False, device=args.device):
        ds, source = _evaluate_data(args)
        left_out = None
        if args.methods is None:
            args.methods, left_out = _default_methods(ds)
        notes = _check_evaluate_data(args, ds)
        if left_out:  # said once the data are known to run (not before their refusal)
            _warn(left_out)
        for note in notes:
            _warn(f"--cv {args.cv} --blocking {args.blocking} --folds {args.folds} --repeats "
                  f"{args.repeats}: {_cli_words(note, 'evaluate')}")
        return _run_evaluate(args, out_path, ds, source, notes)


def _run_evaluate(args: argparse.Namespace, out_path: Path, ds: Any, source: str,
                  notes: Sequence[str]) -> int:
    import json
    import time as _time

    import numpy as np

    from xmsgl.baselines import BASELINES
    from xmsgl.evaluate import cross_validate, sparsity_sweep, variance_decomposition
    from xmsgl.io import to_netcdf_safe

    neural = {"epochs": args.epochs}
    fit_kwargs = {m: ({} if m in BASELINES else neural) for m in args.methods}
    t0 = _time.time()
    sweep = sparsity_sweep(ds, args.methods, keep=args.keep, seeds=args.seeds, by=args.by,
                           fit_kwargs=fit_kwargs, test=args.test)
    out = sweep
    parts = [f"sweep {_time.time() - t0:.0f} s"]
    rob_notes: list[str] = []
    if args.cv:
        t1 = _time.time()
        from xmsgl.evaluate import _taking_notes

        with _taking_notes([]):  # the plan's notes, said before the sweep, dropped
            cv = cross_validate(ds, args.cv, folds=args.folds, repeats=args.repeats,
                                seeds=args.cv_seeds, blocking=args.blocking,
                                fit_kwargs=None if args.cv in BASELINES else neural,
                                mask_coarse=not args.keep_coarse)
        vd = variance_decomposition(cv, n_boot=200)
        vd_attrs = dict(vd.attrs)
        n_sets = int(vd_attrs["n_partitions"])
        cv = cv.rename({"repeat": "cv_repeat", "fold": "cv_fold", "seed": "cv_seed",
                        "held_out_id": "cv_held_out_id"})
        cv = cv.rename({v: f"cv_{v}" for v in cv.data_vars})
        vd = vd.rename({v: f"vd_{v}" for v in vd.data_vars})
        out = _merge_steps(out, {"cv": cv, "vd": vd})
        if n_sets < FEW_PARTITIONS:
            out.attrs["cv_note"] = _few_sets_note(n_sets)
        out.attrs["cv"] = (f"{args.cv} {args.blocking} folds={args.folds} repeats={args.repeats} "
                           f"({cv.sizes['cv_repeat']} distinct) seeds={args.cv_seeds}"
                           + (" coarse observations of held-out sites kept" if args.keep_coarse
                              else ""))
        parts.append(f"cross-validation {_time.time() - t1:.0f} s")
    if args.robustness:
        from xmsgl.evaluate import _mask_obs
        from xmsgl.model import fit, scored_days_hidden
        from xmsgl.periods import mask_spans
        from xmsgl.robustness import robustness

        t2 = _time.time()
        test = [tuple(p) for p in json.loads(sweep.attrs["test_period"])]
        time = ds["time"].to_index()
        from xmsgl.periods import period_mask

        # Read as every period is: whole days, so noon stamps on the last day count
        # (comparing with the date strings left the last day out).
        test_days = period_mask(time, test, "test")
        hidden = _mask_obs(ds, "reach_temp", "reach", np.ones((ds.sizes["reach"], 1), bool) & test_days)
        hidden = _mask_obs(hidden, "seg_temp", "seg", np.ones((ds.sizes["seg"], 1), bool) & test_days)
        kw = {} if args.robustness in BASELINES else {**neural, "progress": False}
        if args.robustness in BASELINES:
            kw["train"] = mask_spans(time, ~test_days)
        elif args.test is not None:
            from xmsgl.periods import validation_beside

            # The validation year(s) fit's own split keeps; with test= alone fit
            # would validate on nothing.
            kw["test"] = test
            val = validation_beside(time, test_days)
            if val:
                kw["val"] = val
        # Without --test the sweep's test period is fit's own split's, which the network
        # takes as the sweep's networks do, with its validation days (on a record of fewer
        # than three water years there is no whole year beside the test to validate on).
        with scored_days_hidden():  # hidden on purpose, scored below
            model = fit(hidden, args.robustness, **kw)
        # Scored against the test days' own observations (or the truth), which the
        # fit and every perturbed copy never see.
        rob = robustness(ds, model, n_draws=2, time=(test[0][0], test[-1][1]), hide_scored=True)
        rob = rob.rename({v: f"rob_{v}" for v in rob.data_vars})
        rob = rob.rename({"setting": "rob_setting"})
        out = _merge_steps(out, {"rob": rob})
        # The method is the step's own attribute, rob_method (robustness records it).
        rob_notes = _robustness_notes(args.robustness, rob)
        if rob_notes:
            out.attrs["robustness_note"] = "; ".join(rob_notes)
        parts.append(f"robustness {_time.time() - t2:.0f} s")
    sweep_notes = [_SWEEP_NOTES[m] for m in args.methods if m in _SWEEP_NOTES]
    if args.by == "reach" and "seg_temp" in ds.data_vars and ds["seg_temp"].notnull().any():
        # --keep-coarse and its hiding are cross-validation's; the sweep keeps seg_temp.
        sweep_notes.append(
            "--by reach thins the reaches' observations (reach_temp) only: the segments' "
            "(seg_temp) are kept whole, and where they come from the same gauges (the Delaware "
            "files' seg_temp is the mean of its segment's reach observations) a reach thinned "
            "out still informs the fits through them, so a smaller share can cost little; "
            "--cv hides them with the held-out reaches")
    if sweep_notes:
        out.attrs["sweep_note"] = "; ".join(sweep_notes)
    out.attrs["data"] = source
    out.attrs["command"] = "xmsgl " + shlex.join(args.argv)  # quoted: it can be run again
    import xmsgl
    from xmsgl.convention import OUTPUT_CONVENTIONS, acdd_attrs, json_safe_attrs

    out.attrs.update({"title": "xmsgl evaluate: test scores of downscaling methods",
                      "summary": "Test-period errors and skill scores (RMSE, MAE and bias in degC; NSE, "
                                 "KGE) of stream temperature downscaling methods against the fine-scale observations or truth, by "
                                 "share of fine training observations kept and seed, from the data "
                                 "and the command named in the attributes data and command.",
                      "keywords": "stream temperature, downscaling, evaluation, sparsity",
                      "Conventions": OUTPUT_CONVENTIONS,
                      "source": f"xmsgl {xmsgl.__version__} evaluate", **acdd_attrs(out)})
    # CF: coordinate variables hold no missing values (xarray gives floats a NaN fill).
    fill = {str(c): {"_FillValue": None} for c in out.coords if out[c].dtype.kind == "f"}
    to_netcdf_safe(json_safe_attrs(out), out_path, overwrite=args.overwrite, encoding=fill)
    mean = sweep["rmse"].mean("seed")
    keep = [float(k) for k in sweep["keep"].values]
    width = max(len("method"), *(len(m) for m in args.methods)) + 2
    print(f"test RMSE (degC) against {sweep.attrs['target']}, mean over seeds {list(args.seeds)}")
    print("method".ljust(width) + "".join(f"keep {k:<8g}" for k in keep))
    for m in args.methods:
        vals = mean.sel({"method": m}).values
        print(m.ljust(width) + "".join(f"{v:<13.3f}" for v in vals))
    for note in sweep_notes:
        print(f"note: {note}")
    if args.cv:
        icc = [float(out["vd_icc"].sel(stat=s)) for s in ("estimate", "low", "high")]
        part = [float(out["vd_sigma2_partition"].sel(stat=s)) for s in ("estimate", "low", "high")]
        if np.isfinite(icc[0]):
            share = f"icc {icc[0]:.2f} [{icc[1]:.2f}, {icc[2]:.2f}]"
        elif args.cv in BASELINES:
            share = f"icc n/a ({args.cv} ignores the training seed: there is no seed variance)"
        else:
            share = "icc n/a (the scores do not change with the training seed)"
        # The mean over the distinct held-out sets, as the variance decomposition takes it (a
        # set drawn in two repetitions counts once), not over every fold.
        print(f"cross-validation {args.cv}: mean RMSE {float(out['vd_mean'].sel(stat='estimate')):.3f} "
              f"degC over {n_sets} distinct held-out sets, partition variance {part[0]:.4f} "
              f"[{part[1]:.4f}, {part[2]:.4f}] (degC)2, {share}")
        if n_sets < FEW_PARTITIONS:
            print(f"cross-validation {args.cv}: note: {_few_sets_note(n_sets)}")
    if args.robustness:
        print(f"robustness {args.robustness}: change of test RMSE (degC) against the unperturbed "
              f"{float(out['rob_base_rmse']):.3f} (positive: the perturbed run is worse)")
        for c in out["check"].values:
            row = out["rob_d_rmse"].sel(check=c)
            labels = out["rob_setting"].sel(check=c).values
            cells = [f"{lab}: {v:+.3f}" for lab, v in zip(labels, row.values) if np.isfinite(v)]
            print(f"robustness {args.robustness} {c}: " + "; ".join(cells))
        for note in rob_notes:
            print(f"robustness {args.robustness}: note: {note}")
    print(f"wrote {args.out} ({', '.join(parts)})")
    return 0


_DEVICE_HELP = "auto (cuda, then mps, then cpu), cpu, cuda, cuda:1... (default: %(default)s)"

#: Help of --convert-calendar (downscale, coverage).
_CALENDAR_HELP = (
    "DATA on a climate model's calendar (cftime: noleap, 360_day, ...): convert its days to the "
    "standard calendar and interpolate the inputs of the days that calendar lacks (29 February, "
    "the 31st) between its first and last day, as the history line then says (a day lacking at "
    "either end, the 31 December after a 360_day year, stays missing: convert a record that holds "
    "the days on both sides); DATA on the standard calendar is read as it is")


def build_parser() -> argparse.ArgumentParser:
    from xmsgl import __version__

    parser = argparse.ArgumentParser(
        prog="xmsgl",
        description="Downscale stream water temperature from coarse segments to fine reaches.",
    )
    parser.add_argument("--version", action="version", version=f"xmsgl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="run the whole job on the built-in synthetic basin",
        description="Build the Delaware-sized synthetic basin, keep 1% of its fine "
                    "observations (on every day: validation is as sparse as training), fit "
                    "ASYNC-MSGL and the fine-only and remap baselines, "
                    "downscale the test water year and print RMSE and MAE at all reaches "
                    "against the synthetic truth (and RMSE at the reaches without a kept "
                    "training or validation observation), with ASYNC-MSGL's coverage; then write "
                    "OUTDIR/downscaled.nc "
                    "(the predictions, the truth, the flags) and OUTDIR/demo.png (the network "
                    "on a summer day, a time series at an unobserved reach). One to four minutes "
                    "on two CPU cores, as fast as they are; --quick takes seconds.")
    demo.add_argument("--outdir", default="xmsgl-demo", help="folder for outputs (default: %(default)s)")
    demo.add_argument("--overwrite", action="store_true",
                      help="replace downscaled.nc and demo.png when --outdir already holds them")
    demo.add_argument("--quick", action="store_true", help="a small basin and few epochs (seconds)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true",
                      help="hide progress bars and the timed step lines (the results are printed)")
    demo.add_argument("--device", default="auto", help=_DEVICE_HELP)
    _threads_option(demo)
    demo.set_defaults(func=_demo)

    fetch = sub.add_parser(
        "fetch-data", help="pre-fetch the Delaware River Basin files",
        description="Download the Delaware River Basin sample files (or find them already "
                    "there), check each against its recorded sha256 and list them. Run it "
                    "where there is internet, then copy the folder and point XMSGL_DATA_DIR "
                    "at it to work offline; open_drb() reads the files from there.")
    fetch.add_argument("--source", default="mirror", choices=["mirror", "release"],
                       help="which files: public mirrors (default) or the full USGS releases")
    fetch.add_argument("--folder", default=None,
                       help="data folder (default: $XMSGL_DATA_DIR, else xmsgl's user cache folder)")
    fetch.add_argument("--no-progress", action="store_true",
                       help="no progress bars or download log lines")
    fetch.set_defaults(func=_fetch_data)

    info = sub.add_parser("info", help="print versions and devices, or describe a saved model",
                          description="Without MODEL: the versions of xmsgl and its main "
                                      "dependencies, the torch devices and the data folder. With "
                                      "MODEL: what the saved model is (method, network, periods, "
                                      "the fit's best epoch and score, inputs, settings).")
    info.add_argument("model", metavar="MODEL", nargs="?", default=None,
                      help="a model folder written by xmsgl fit or model.save")
    info.add_argument("--data", metavar="DATA", default=None,
                      help="a netCDF file or zarr store: say whether it holds the targets and "
                           "inputs MODEL learned from (their sha256s, as fit recorded them)")
    info.set_defaults(func=_info)

    ev = sub.add_parser(
        "evaluate", help="sparsity sweep (and cross-validation, robustness) written to netCDF",
        description="Fit methods on thinned observations of the synthetic basin (or --data), score "
                    "them on the test water years at every reach and write the results to netCDF.")
    ev.add_argument("--methods", nargs="+", default=None,
                    help="methods of xmsgl.fit and baselines (default: "
                         f"{' '.join(_EVALUATE_METHODS)}, without mohseni for data that have no "
                         "reach_air_temp)")
    ev.add_argument("--keep", nargs="+", type=float, default=[1.0, 0.2, 0.05],
                    help="shares of the fine observations kept, each in (0, 1] (default: %(default)s)")
    ev.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (default: %(default)s)")
    ev.add_argument("--by", default="observation", choices=["observation", "reach"],
                    help="thin reach-days or whole reaches (default: %(default)s)")
    ev.add_argument("--epochs", type=int, default=None, help="epochs of the neural methods (default: 10)")
    ev.add_argument("--data", default=None, help="a netCDF file or zarr store in the xmsgl convention "
                    "(default: the synthetic basin)")
    # The synthetic basin's options default to None, so that one given with --data
    # (which they do not apply to) can be told from its default and refused.
    ev.add_argument("--n-segments", type=int, default=None,
                    help=f"synthetic basin size (default: {_SYNTHETIC['n_segments']})")
    ev.add_argument("--start", default=None, help=f"synthetic basin start (default: {_SYNTHETIC['start']})")
    ev.add_argument("--end", default=None, help=f"synthetic basin end (default: {_SYNTHETIC['end']})")
    ev.add_argument("--basin-seed", type=int, default=None,
                    help=f"synthetic basin seed (default: {_SYNTHETIC['basin_seed']})")
    ev.add_argument("--reach-obs-share", type=float, default=None,
                    help=f"share of synthetic reaches with a gauge (default: {_SYNTHETIC['reach_obs_share']})")
    ev.add_argument("--test", nargs=2, metavar=("START", "END"), default=None,
                    help="test period of the sweep and of --robustness, ends included (default: "
                         "the last water year(s), by fit's split, or on a record of fewer than "
                         "three water years its last 15%% of days); every method trains on the "
                         "other days, and the networks validate on the water year(s) before it "
                         "(by default, on fit's validation days)")
    ev.add_argument("--cv", default=None, metavar="METHOD", help="also cross-validate this method")
    ev.add_argument("--folds", type=int, default=None,
                    help=f"cross-validation folds (default: {_CV_DEFAULTS['folds']})")
    ev.add_argument("--repeats", type=int, default=None,
                    help=f"cross-validation repeats (default: {_CV_DEFAULTS['repeats']})")
    ev.add_argument("--cv-seeds", type=int, default=None,
                    help="training seeds per fold (default: 2, or 1 for the baselines, which ignore "
                         "the seed)")
    ev.add_argument("--blocking", default=None, choices=["subbasin", "reach", "water_year"],
                    help=f"cross-validation blocks (default: {_CV_DEFAULTS['blocking']})")
    ev.add_argument("--keep-coarse", action="store_const", const=True, default=None,
                    help="with --cv, keep the coarse observations (seg_temp) of the segments of held-out "
                         "reaches (default: hidden, since coarse gauges are often the fine ones; "
                         "keep them for coarse data not taken at the fine sites, such as a "
                         "process model's output)")
    ev.add_argument("--robustness", default=None, metavar="METHOD",
                    help="also run the robustness checks on this method (fitted on the training "
                         "years; the test years' observations are hidden)")
    ev.add_argument("--device", default="auto", help="where the networks run: " + _DEVICE_HELP)
    ev.add_argument("--out", default="xmsgl-evaluation.nc", help="netCDF file (default: %(default)s)")
    ev.add_argument("--no-progress", action="store_true",
                    help="accepted as by the other commands; evaluate shows no progress bars")
    _threads_option(ev)
    ev.add_argument("--overwrite", action="store_true",
                    help="replace an existing --out file (never the --data file)")
    ev.set_defaults(func=_evaluate)

    from xmsgl.methods import BASELINES, METHODS

    ft = sub.add_parser(
        "fit", help="fit a model on a dataset file and save it",
        description="Fit a method of xmsgl.fit on a netCDF file or zarr store in the xmsgl convention "
                    "(docs/convention.md) and save the model folder MODEL. Without --train, --val "
                    "and --test the water years are split by fit's rule (docs/model.md).")
    ft.add_argument("data", metavar="DATA", help="netCDF file or zarr store in the xmsgl convention")
    ft.add_argument("model", metavar="MODEL", help="model folder to write")
    ft.add_argument("--method", default="msgl",
                    help=f"{', '.join(METHODS)}, a baseline ({', '.join(BASELINES)}) or gru, "
                         "the per-reach GRU (default: %(default)s)")
    ft.add_argument("--epochs", type=int, default=None, help="epochs of the main stage (default: fit's, 40)")
    ft.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    for k, what in (("train", "training"), ("val", "validation"), ("test", "test")):
        ft.add_argument(f"--{k}", nargs=2, metavar=("START", "END"), default=None,
                        help=f"{what} period, ends included")
    ft.add_argument("--max-hops", type=int, default=None, metavar="N",
                    help="graph cut: leave out pairs of nodes more than N hops apart along the stream "
                         "(fit's graph_options; needed on deep networks, and to cut components in "
                         "lazy runs)")
    ft.add_argument("--max-distance", type=float, default=None, metavar="M",
                    help="graph cut: leave out pairs of nodes more than M metres apart along the stream")
    ft.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", dest="settings",
                    help="any other argument of xmsgl.fit, repeatable: --set hidden=8 --set lr=0.001 "
                         "--set weighting=equal (VALUE a number where it reads as one, else JSON "
                         "such as null or [1, 2, 1], else text; names and dates stay text), so that "
                         "the hyperparameters a model's config.json records can be given again")
    ft.add_argument("--device", default="auto", help=_DEVICE_HELP)
    ft.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _threads_option(ft)
    ft.add_argument("--overwrite", action="store_true", help="replace an existing model folder MODEL")
    ft.set_defaults(func=_fit)

    dn = sub.add_parser(
        "downscale", help="downscale a dataset file with a saved model",
        description="Downscale DATA (netCDF or zarr, read lazily) with the model folder MODEL and write "
                    "the prediction to OUT: a zarr store if OUT ends in .zarr, a netCDF file if it "
                    "ends in .nc (or .nc4, .cdf, .netcdf); any other name is refused. Written "
                    "under a temporary name and renamed when complete.")
    dn.add_argument("model", metavar="MODEL", help="model folder written by xmsgl fit or model.save")
    dn.add_argument("data", metavar="DATA", help="netCDF file or zarr store in the xmsgl convention (read "
                    "lazily, except for --scale cross)")
    dn.add_argument("out", metavar="OUT", help="netCDF file ending in .nc, or zarr store ending in .zarr")
    dn.add_argument("--scale", default="reach", choices=["reach", "seg", "cross"],
                    help="reach (the fine prediction), seg (the coarse head) or cross (the cross-scale "
                         "estimate) (default: %(default)s)")
    dn.add_argument("--time", nargs=2, metavar=("START", "END"), default=None,
                    help="days to return, ends included (default: all)")
    dn.add_argument("--reach-chunk", type=int, default=None,
                    help="reaches per block of the lazy run (default: downscale's)")
    dn.add_argument("--spinup", type=int, default=None, metavar="DAYS",
                    help="days run before --time to warm the state up (default: downscale's, 180)")
    dn.add_argument("--chunk", type=int, default=None, metavar="DAYS",
                    help="days run at a time (default: downscale's, 365)")
    dn.add_argument("--other-network", action="store_true",
                    help="apply the model to a network other than the one it was fitted on "
                         "(check_graph=False)")
    dn.add_argument("--device", default="auto", help=_DEVICE_HELP)
    dn.add_argument("--overwrite", action="store_true", help="replace an existing OUT (never DATA or MODEL)")
    dn.add_argument("--zarr-format", type=int, choices=[2, 3], default=None,
                    help="zarr format of a .zarr OUT: 2 for readers with zarr-python 2, 3 (default: "
                         "the installed zarr's)")
    dn.add_argument("--append", action="store_true",
                    help="add the days downscaled to the end of the existing zarr store OUT, checked "
                         "to follow its last day with its reaches, variables, units and model, and "
                         "undone if the write fails (xmsgl.io.append_zarr)")
    dn.add_argument("--convert-calendar", action="store_true", help=_CALENDAR_HELP)
    dn.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE",
                    help="a global attribute of OUT, set over xmsgl's own (creator_name, license, "
                         "summary...), but for those stating facts of the run (history, Conventions, "
                         "date_created, time_coverage_*); repeat for several; not with --append (a "
                         "store keeps its own)")
    dn.add_argument("--no-progress", action="store_true",
                    help="accepted as by fit and demo; downscale shows no progress bars")
    _threads_option(dn, lazy=True)
    dn.set_defaults(func=_downscale)

    cv = sub.add_parser(
        "coverage", help="nodes whose inputs lie beyond those the model was trained on",
        description="Judge DATA against the range of each input over the nodes with training "
                    "observations that the model folder MODEL recorded (ds.msgl.coverage): print "
                    "how many segments and reaches lie beyond it, and the farthest; with --out, "
                    "write the flags and distances to a netCDF file.")
    cv.add_argument("model", metavar="MODEL", help="model folder written by xmsgl fit or model.save")
    cv.add_argument("data", metavar="DATA", help="netCDF file or zarr store in the xmsgl convention")
    cv.add_argument("--time", nargs=2, metavar=("START", "END"), default=None,
                    help="days to judge the time-varying inputs on, ends included (default: all)")
    cv.add_argument("--margin", type=float, default=1.0, metavar="SD",
                    help="standard deviations beyond the observed range before a node or day "
                         "counts (default: %(default)s)")
    cv.add_argument("--out", default=None, help="netCDF file to write the flags, distances and inputs "
                                                 "beyond to (default: none)")
    cv.add_argument("--overwrite", action="store_true", help="replace an existing --out (never DATA or MODEL)")
    cv.add_argument("--convert-calendar", action="store_true", help=_CALENDAR_HELP)
    cv.add_argument("--no-progress", action="store_true",
                    help="accepted as by fit and demo; coverage shows no progress bars")
    cv.set_defaults(func=_coverage)

    sc = sub.add_parser(
        "score", help="errors of a prediction file against observations",
        description="Score the prediction in PRED (written by xmsgl downscale, or any netCDF file "
                    "or zarr store with a (reach, time) temperature) against the observations in "
                    "OBS (reach_temp by default) with xmsgl.evaluate.evaluate: print RMSE, MAE and "
                    "bias (degC), NSE, KGE and the pairs, pooled over the reaches and days both "
                    "hold (or those of --reach and --time: held-out gauges and days), and the "
                    "per-reach RMSE's median and worst; with --out, write the per-reach and "
                    "pooled scores to a netCDF file.")
    sc.add_argument("pred", metavar="PRED", help="netCDF file or zarr store holding the prediction")
    sc.add_argument("obs", metavar="OBS", help="netCDF file or zarr store holding the observations")
    sc.add_argument("--var", default=None,
                    help="the prediction variable (default: PRED's one (reach, time) variable "
                         "other than observations and truths)")
    sc.add_argument("--obs-var", default="reach_temp", help="the observations (default: %(default)s)")
    sc.add_argument("--time", nargs=2, metavar=("START", "END"), default=None,
                    help="days to score, ends included (default: every day both hold)")
    sc.add_argument("--reach", nargs="+", type=int, default=None, metavar="ID",
                    help="reach ids to score (default: every reach both hold)")
    sc.add_argument("--out", default=None, help="netCDF file to write the scores to (default: none)")
    sc.add_argument("--overwrite", action="store_true", help="replace an existing --out (never PRED or OBS)")
    sc.set_defaults(func=_score)
    return parser


def _coverage(args: argparse.Namespace) -> int:
    import numpy as np

    from xmsgl.convention import (
        OUTPUT_CONVENTIONS,
        acdd_attrs,
        cf_coordinate_attrs,
        coverage_instant,
        json_safe_attrs,
    )
    from xmsgl.coverage import coverage, judges, not_judged
    from xmsgl.io import to_netcdf_safe

    time = _period("--time", args.time)
    if not (np.isfinite(args.margin) and args.margin >= 0):
        raise ParameterError(f"--margin {args.margin:g}: give a number of standard deviations >= 0")
    out = _optional_out(args, "coverage", "coverage.nc", [args.data, args.model])
    model = _load_model(args.model)
    # What only the model can tell, before DATA is read.
    if not judges(model):
        raise ParameterError(
            f"MODEL {args.model!r} is the {model.method} baseline ({not_judged(model.method)}); "
            "coverage judges the network methods' models and the GRU's: fit "
            "one with xmsgl fit --method msgl (or async-msgl, fine-only, remap, direct, "
            "progressive, gru)")
    if "observed_range" not in model.config["variables"]:
        raise ParameterError(
            f"MODEL {args.model!r} was saved before xmsgl recorded the range of its observed "
            "nodes' inputs; fit it again with xmsgl fit to judge coverage")
    # Lazily: coverage validates what it reads and reads its inputs a block of
    # days at a time.
    ds = _read_dataset(args.data, "DATA", lazy=True, check=False)
    if args.convert_calendar:
        ds = _standard_calendar(ds)
    if time is not None and "time" not in ds.dims:
        raise ParameterError(f"--time was given, but DATA {args.data!r} has no 'time' "
                             "dimension (its static inputs are judged without it); leave "
                             "--time out")
    try:
        cov = coverage(ds, model, margin=args.margin, time=time)
    except XmsglError as err:
        raise type(err)(f"DATA {args.data!r}: {_calendar_hint(err)}") from err
    for line in _coverage_lines(cov, args.margin):
        print(line)
    if out is not None:
        result = cov.copy()
        for name, da in result.data_vars.items():
            if da.dtype == bool:  # netCDF has no booleans: 0 / 1 flags, as CF describes them
                result[name] = da.astype(np.int8).assign_attrs(
                    da.attrs, flag_values=np.array([0, 1], dtype=np.int8),
                    flag_meanings="inside beyond")
        # The input's history goes on with this step, as downscale's does.
        prior = str(ds.attrs.get("history", "")).rstrip("\n")
        step = str(cov.attrs.get("history", ""))
        result.attrs.update({"title": "xmsgl coverage: nodes with inputs beyond those of the "
                                      "observed nodes",
                             "summary": "For each node of a river network, whether its inputs lie "
                                        "beyond those of the nodes a downscaling model was trained "
                                        "on, and by how many standard deviations, from the model "
                                        "and the data named in source.",
                             "keywords": "stream temperature, downscaling, extrapolation, coverage",
                             "Conventions": OUTPUT_CONVENTIONS,
                             "history": f"{prior}\n{step}" if prior else step,
                             "source": _source(args), **acdd_attrs(result)})
        judged = re.fullmatch(r"(\S+) to (\S+)", str(cov.attrs.get("xmsgl_time_judged", "")))
        if judged:
            # ACDD: the days whose time-varying inputs were judged.
            with contextlib.suppress(ValueError):
                result.attrs.update(time_coverage_start=coverage_instant(np.datetime64(judged[1])),
                                    time_coverage_end=coverage_instant(np.datetime64(judged[2]), end=True))
        try:
            to_netcdf_safe(json_safe_attrs(cf_coordinate_attrs(result)), out, overwrite=args.overwrite)
        except OSError as err:
            raise OSError(err.errno, f"--out {args.out!r} cannot be written "
                                     f"({err.strerror or err}); nothing was written") from err
        print(f"wrote {out}")
    return 0


def _optional_out(args: argparse.Namespace, command: str, example: str, inputs: list[str]) -> Any:
    """The checked ``--out`` netCDF file of ``command`` (never one of ``inputs``), or None
    when none is given; ``--overwrite`` without ``--out`` is refused."""
    if args.overwrite and args.out is None:
        raise ParameterError("--overwrite replaces the file of --out, which is not given; add --out "
                             "FILE.nc, or leave --overwrite out")
    if args.out is None:
        return None
    _one_netcdf_file(args.out, command, example)
    return _new_output(args.out, "--out", args.overwrite, [("input", v) for v in inputs])


def _score(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from xmsgl.convention import OUTPUT_CONVENTIONS, acdd_attrs, json_safe_attrs
    from xmsgl.evaluate import evaluate
    from xmsgl.io import to_netcdf_safe
    from xmsgl.periods import period_days

    time = _period("--time", args.time)
    out = _optional_out(args, "score", "scores.nc", [args.pred, args.obs])
    pred_ds = _read_dataset(args.pred, "PRED", check=False)
    obs_ds = _read_dataset(args.obs, "OBS", check=False)
    var = args.var or _prediction_variable(pred_ds, args.pred)
    if var not in pred_ds.data_vars:
        raise SchemaError(f"PRED {args.pred!r} has no variable {var!r}; it has "
                          f"{sorted(map(str, pred_ds.data_vars))}: name one with --var")
    if args.obs_var not in obs_ds.data_vars:
        raise SchemaError(f"OBS {args.obs!r} has no variable {args.obs_var!r}; it has "
                          f"{sorted(map(str, obs_ds.data_vars))}: name the observations with --obs-var")
    pred, obs = pred_ds[var], obs_ds[args.obs_var]
    reaches = list(dict.fromkeys(args.reach or []))  # an id given twice is scored once
    if reaches:
        for what, da, value in (("PRED", pred, args.pred), ("OBS", obs, args.obs)):
            if "reach" not in da.dims:
                raise SchemaError(f"--reach: {what} {value!r}'s {da.name!r} has no 'reach' dimension")
            held = pd.Index(np.asarray(da["reach"].values))
            if held.has_duplicates:
                raise DataError(f"--reach: {what} {value!r} lists reaches more than once "
                                f"({format_ids(held[held.duplicated()].unique().tolist())}); give a "
                                "file with each reach once")
            missing = sorted(set(reaches) - set(held.tolist()))
            if missing:
                raise DataError(f"--reach: {what} {value!r} has no reach {format_ids(missing)}; give "
                                "reaches both files hold")
        pred, obs = pred.sel(reach=reaches), obs.sel(reach=reaches)
    if time is not None:
        for what, value in (("PRED", args.pred), ("OBS", args.obs)):
            da = pred if what == "PRED" else obs
            if "time" not in da.dims:
                raise SchemaError(f"--time: {what} {value!r}'s {da.name!r} has no 'time' dimension")
            if not isinstance(da["time"].to_index(), pd.DatetimeIndex):
                calendar = da["time"].dt.calendar if hasattr(da["time"], "dt") else "another"
                raise TimeError(f"--time: {what} {value!r} has dates on the {calendar!r} calendar; "
                                "score files on the standard calendar (xmsgl downscale "
                                "--convert-calendar writes one)")
        days = period_days(pred["time"].to_index(), time, "scored", "time")
        if not days.any():
            raise TimeError(f"--time {args.time[0]} {args.time[1]} holds no day of PRED {args.pred!r}")
        pred = pred.isel(time=np.flatnonzero(days))
    pooled = evaluate(pred, obs)
    per_reach = evaluate(pred, obs, dims="time") if "reach" in pred.dims else None
    nodes = "segment" if "seg" in pred.dims else "reach"
    chosen = [f"reaches {format_ids(reaches)}" if reaches else f"every {nodes} both hold",
              f"days {args.time[0]} to {args.time[1]}" if time is not None else "every day both hold"]
    span = str(pooled.attrs.get("scored_period", "")).replace("/", " to ")
    print(f"{var} of {args.pred} against {args.obs_var} of {args.obs} ({', '.join(chosen)}"
          f"{f'; pairs from {span}' if span else ''}):")
    print(f"RMSE {float(pooled.rmse):.3f} degC, MAE {float(pooled.mae):.3f} degC, bias "
          f"{float(pooled.bias):+.3f} degC, NSE {float(pooled.nse):.3f}, KGE {float(pooled.kge):.3f}, "
          f"{int(pooled.n)} pairs")
    if per_reach is not None:
        scored = per_reach.where(per_reach.n > 0, drop=True)
        if scored.sizes.get("reach", 0) > 1:
            worst = int(np.nanargmax(scored.rmse.values))
            print(f"{scored.sizes['reach']} reaches scored; per-reach RMSE median "
                  f"{float(scored.rmse.median()):.3f} degC, worst {float(scored.rmse.max()):.3f} at reach "
                  f"{scored.reach.values[worst]}")
    if out is not None:
        result = (per_reach if per_reach is not None else pooled).assign({
            f"pooled_{k}": pooled[k].assign_attrs(
                long_name=f"{pooled[k].attrs.get('long_name', k)}, pooled over the reaches and days scored")
            for k in ("rmse", "mae", "bias", "nse", "kge", "n")})
        result.attrs.update({"title": "xmsgl score: errors of a prediction against observations",
                             "summary": "Per-reach and pooled RMSE, MAE, bias (degC), NSE and KGE of "
                                        "a stream temperature prediction against observations, from "
                                        "the files named in source.",
                             "keywords": "stream temperature, downscaling, evaluation",
                             "Conventions": OUTPUT_CONVENTIONS,
                             "source": f"{_absolute(args.pred)} ({var}) against {_absolute(args.obs)} "
                                       f"({args.obs_var})",
                             "command": "xmsgl " + shlex.join(args.argv),
                             **acdd_attrs(result)})
        to_netcdf_safe(json_safe_attrs(result), out, overwrite=args.overwrite)
        print(f"wrote {args.out}")
    return 0


def _prediction_variable(ds: Any, value: str) -> str:
    """The one (reach, time) variable of PRED other than a truth, else a typed error."""
    found = [str(n) for n, da in ds.data_vars.items() if set(da.dims) == {"reach", "time"}
             and not str(n).endswith("_true") and str(n) != "reach_temp"]
    if len(found) != 1:
        raise SchemaError(f"PRED {value!r} holds {len(found)} (reach, time) variables other than "
                          f"observations and truths ({found}); name the prediction with --var")
    return found[0]


def _coverage_lines(cov: Any, margin: float) -> list[str]:
    """What :func:`_coverage` prints: per scale, the nodes beyond and the farthest ones."""
    import numpy as np

    words = {"seg": ("segment", "segments"), "reach": ("reach", "reaches")}
    shown = f"{margin:g}"
    sds = f"{shown} standard deviation{'' if shown == '1' else 's'}"

    def count(k: int, n: int) -> str:
        return f"{k} of {n} {'has' if k == 1 else 'have'}"

    def days(k: int) -> str:
        return f"{k} day{'' if k == 1 else 's'}"

    lines = []
    for dim in ("seg", "reach"):
        if f"{dim}_beyond_observed" not in cov:
            continue
        one, many = words[dim]
        ids = cov[dim].values
        n = ids.size
        flag = cov[f"{dim}_beyond_observed"].values
        sd = cov[f"{dim}_beyond_sd"].values
        var = cov[f"{dim}_beyond_variable"].values
        line = (f"{many}: {count(int(flag.sum()), n)} a static input more than {sds} beyond "
                f"those of the observed {many}")
        top = [i for i in np.argsort(-sd, kind="stable")[:3] if flag[i]]
        if top:
            line += "; farthest: " + ", ".join(f"{one} {ids[i]} ({var[i]}, {sd[i]:.1f} sd)" for i in top)
        lines.append(line)
        days_name = f"{dim}_days_beyond_observed"
        if days_name in cov:
            beyond = cov[days_name].values
            most = [i for i in np.argsort(-beyond, kind="stable")[:3] if beyond[i] > 0]
            span = cov.attrs.get("xmsgl_time_judged")
            judged = (f" (of {days(int(cov.attrs['xmsgl_days_judged']))} judged"
                      + (f", {span})" if span else ")")
                      if "xmsgl_days_judged" in cov.attrs else "")
            line = (f"{many}: {count(int((beyond > 0).sum()), n)} days{judged} on which a "
                    f"time-varying input lies more than {sds} beyond its range over the observed "
                    f"{many}' training days")
            if most:
                dvar = cov[f"{dim}_days_beyond_variable"].values
                line += "; most: " + ", ".join(f"{one} {ids[i]} ({days(int(beyond[i]))}, {dvar[i]})"
                                               for i in most)
            lines.append(line)
    if "reach_segment_beyond_observed" in cov:
        k = int(cov["reach_segment_beyond_observed"].values.sum())
        lines.append(f"reaches: {k} of {cov.sizes['reach']} {'lies' if k == 1 else 'lie'} in a "
                     "segment beyond the observed ones (MSGL's reach predictions also read their "
                     "segment's states)")
    lines.append(f"inputs judged: {cov.attrs.get('xmsgl_inputs_judged') or 'none'}")
    if cov.attrs.get("xmsgl_inputs_not_judged"):
        lines.append(f"not judged (the model reads them, DATA lacks them): "
                     f"{cov.attrs['xmsgl_inputs_not_judged']}")
    return lines


def _error(message: object) -> None:
    print("xmsgl: error: " + " ".join(str(message).split()), file=sys.stderr)


#: One line at a time on stderr: a lazy downscale's blocks warn from dask's threads, and
#: print's text and newline, written apart, were glued to another thread's line.
_STDERR_LOCK = threading.Lock()


def _warn(message: object) -> None:
    line = "xmsgl: warning: " + " ".join(str(message).split()) + "\n"
    with _STDERR_LOCK:
        sys.stderr.write(line)
        sys.stderr.flush()


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit cannot fail on a closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor
        pass


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[dict[str, bool]]:
    """While a command runs, SIGTERM stops it as Ctrl-C does (a ``KeyboardInterrupt``),
    so that a write in progress removes its temporary entry: SLURM's ``scancel``, a hub
    culling a server and a pod eviction send SIGTERM, which otherwise kills the process
    on the spot. Yields a dict whose ``"term"`` says whether SIGTERM came; the handler
    before is put back after (only the main thread can set one)."""
    import signal
    import threading

    stopped = {"term": False}
    if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread():
        yield stopped
        return

    def handler(signum: int, frame: Any) -> None:
        stopped["term"] = True
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield stopped
    finally:
        signal.signal(signal.SIGTERM, old)


def _temporary_words(err: OSError) -> str:
    """``err`` as printed, with what its file name means where that is a write's
    temporary name (removed as the write failed): the output itself is as it was."""
    from xmsgl.io import temporary_of

    found = temporary_of(str(err.filename or ""))
    # Only where the write removed it (not a leftover of a killed run, named by the error).
    if found is None or os.path.lexists(found[0]):
        return str(err)
    # A name cut to fit the file system's limit (xmsgl.io) is not the output's own.
    name = repr(found[1]) if len(found[1].encode()) < 200 else "the output"
    return (f"{err}; writing {name} failed under that temporary name, now removed: "
            f"{name} is as it was before the command")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xmsgl`` command: 0 on success, 2 for bad input (an xmsgl
    error), 1 for a failure of the system or a download, 130 / 143 when stopped by
    Ctrl-C / SIGTERM. Usage argparse refuses (a missing argument, an unknown option) and
    ``--help`` raise :class:`SystemExit` with 2 and 0, as argparse does."""
    try:
        # Until here Ctrl-C was answered by the hook the import of xmsgl put in place.
        _starting.disarm()
        # The options' help reads xmsgl's version, which imports xmsgl and xarray (a
        # second or so), in which Ctrl-C is answered as in a command, not with the
        # import's traceback.
        parser = build_parser()
    except KeyboardInterrupt:
        _error(_starting.MESSAGE)
        return 130
    args, extra = parser.parse_known_args(argv)
    if extra:
        # Unknown options are the subcommand's: its usage and an "xmsgl SUB: error:" line,
        # not the top-level usage that argparse gives them (exits with 2).
        subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        subs.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    with _escaped_streams():
        return _run(args)


#: Commands running (main may run in several threads at once) and the streams made to
#: escape by the first of them, with their own ``errors`` to restore after the last.
_ESCAPING: dict[str, Any] = {"users": 0, "streams": []}
_ESCAPING_LOCK = threading.Lock()


@contextlib.contextmanager
def _escaped_streams() -> Iterator[None]:
    """stdout and stderr write what their encoding cannot (a path with an accent under
    ``PYTHONIOENCODING=ascii``) as backslash escapes: the command printed its last line
    only after its work, and failed on such a path with a traceback. Only streams that
    refuse such characters (``errors="strict"``) change: under a C locale Python writes
    a file name's undecodable bytes back as they were (``surrogateescape``)."""
    with _ESCAPING_LOCK:
        if _ESCAPING["users"] == 0:
            _ESCAPING["streams"] = [s for s in (sys.stdout, sys.stderr)
                                    if isinstance(s, io.TextIOWrapper) and s.errors == "strict"]
            for stream in _ESCAPING["streams"]:
                with contextlib.suppress(ValueError, OSError):
                    stream.reconfigure(errors="backslashreplace")
        _ESCAPING["users"] += 1
    try:
        yield
    finally:
        with _ESCAPING_LOCK:
            _ESCAPING["users"] -= 1
            if _ESCAPING["users"] == 0:
                for stream in _ESCAPING["streams"]:
                    # reconfigure flushes: closed meanwhile, or a reader gone (a broken pipe).
                    with contextlib.suppress(ValueError, OSError):
                        stream.reconfigure(errors="strict")


@contextlib.contextmanager
def _thread_option(args: argparse.Namespace) -> Iterator[None]:
    """The command run with ``--threads`` as xmsgl's ``torch_threads`` option (checked
    first: a count of at least 1)."""
    threads = getattr(args, "threads", None)
    if threads is None:
        yield
        return
    from xmsgl.options import MAX_TORCH_THREADS, OPTIONS

    if not 1 <= threads <= MAX_TORCH_THREADS:
        raise ParameterError(f"--threads {threads}: give at least 1 and at most {MAX_TORCH_THREADS:,} "
                             "(the machine's cores, or fewer)")
    token = object()
    # Commands may run at once in one process: the option is the latest running
    # command's, and the value before the first comes back when the last ends,
    # whichever order they end in (set_options blocks would restore each other's).
    with _THREADS_LOCK:
        if not _THREADS_RUNNING:
            _THREADS_BEFORE[0] = OPTIONS["torch_threads"]
        _THREADS_RUNNING.append((token, threads))
        OPTIONS["torch_threads"] = threads
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_RUNNING[:] = [(t, n) for t, n in _THREADS_RUNNING if t is not token]
            OPTIONS["torch_threads"] = _THREADS_RUNNING[-1][1] if _THREADS_RUNNING else _THREADS_BEFORE[0]


#: The ``--threads`` of the commands running in this process, in the order they began,
#: and the option's value before the first of them (see :func:`_thread_option`).
_THREADS_RUNNING: list[tuple[object, int]] = []
_THREADS_BEFORE: list[Any] = [None]
_THREADS_LOCK = threading.Lock()


def _threads_option(p: argparse.ArgumentParser, lazy: bool = False) -> None:
    """``--threads N``: torch's thread count for the command's fits and downscaling
    (``xmsgl.set_options(torch_threads=N)``; with ``lazy``, also each block's)."""
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads for the " + ("run (in memory; each block of the lazy run, "
                                                   "default 1, beside dask's own threads)"
                                                   if lazy else "fits and downscaling")
                   + " (default: torch's, the machine's cores); equal seeds give equal "
                     "models with equal threads")


def _run(args: argparse.Namespace) -> int:
    """The command ``args`` names, its failures as one line and an exit code; each of
    its warnings said (:data:`xmsgl.exceptions.SAY_EACH`), though an earlier command of
    this process said the same from the same line."""
    stopped: dict[str, bool] = {}
    say_each = SAY_EACH.set(True)
    try:
        # A reader of stdout that leaves (`xmsgl info | head -1`) stops no command: its
        # files are written and it exits 0, as when the reader stays.
        # xmsgl's warnings as "xmsgl: warning:" lines in the command's words, each once.
        with _terminate_as_interrupt() as stopped, _reader_may_leave(), \
                _warnings_as_lines(getattr(args, "command", "")), _thread_option(args):
            code = int(args.func(args))
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        # Ctrl-C, or SIGTERM (a batch system's cancel): the writes clean up after
        # themselves as they fail, so a line says so instead of a traceback.
        signal_name = "SIGTERM" if stopped.get("term") else "Ctrl-C"
        how = ("the store was cut back to the days it held before" if getattr(args, "append", False)
               else "each is written under a temporary name and renamed only when complete")
        _error(f"stopped by {signal_name}; no output was left half-written ({how})")
        return 143 if stopped.get("term") else 130
    except BrokenPipeError:
        # The reader stopped reading (`xmsgl info | head -1`): nothing left to say.
        _quiet_stdout()
        return 1
    except DownloadError as err:
        # A valid request that the network or a server failed: not bad usage.
        _error(_cli_words(str(err), getattr(args, "command", "")))
        return 1
    except XmsglError as err:
        _error(_cli_words(str(err), getattr(args, "command", "")))
        return 2
    except XmsglWarning as err:
        # Raised where the warning filters make warnings errors (python -W error,
        # PYTHONWARNINGS=error): the input's problem, said as an error is.
        _error(f"{_cli_words(str(err), getattr(args, 'command', ''))} ({type(err).__name__}, "
               "an error under the warning filters in force)")
        return 2
    except OSError as err:
        # The system failed under a valid command (disk full, permission denied...).
        _error(_temporary_words(err))
        return 1
    finally:
        SAY_EACH.reset(say_each)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
