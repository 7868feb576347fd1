"""Typed errors and warnings raised by xmsgl.

Every error is an :class:`XmsglError`, itself a :class:`ValueError`, so code that
already catches ``ValueError`` keeps working. Each message names the variable or
the first offending ids and says how to fix the problem.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = [
    "XmsglError",
    "SchemaError",
    "TopologyError",
    "UnitsError",
    "TimeError",
    "ModelMismatchError",
    "DataError",
    "DownloadError",
    "TrainingError",
    "ParameterError",
    "PeriodError",
    "ChoiceError",
    "XmsglWarning",
    "UnitConversionWarning",
    "TimeGapWarning",
    "ShortRecordWarning",
    "FewObservationsWarning",
    "ExtrapolationWarning",
    "InputRangeWarning",
    "ColdStartWarning",
    "InSampleWarning",
    "format_ids",
    "check_count",
    "check_flag",
]


class XmsglError(ValueError):
    """Base class of every error raised by xmsgl on bad input."""


class SchemaError(XmsglError):
    """A variable, dimension or coordinate is missing, misnamed or has the wrong shape."""


class TopologyError(XmsglError):
    """The river network is not a valid set of trees (cycles, dangling ids, ...)."""


class UnitsError(XmsglError):
    """Units are missing, unknown or implausible for the values they describe."""


class TimeError(XmsglError):
    """The time coordinate is not strictly increasing, duplicated or misaligned."""


class ModelMismatchError(XmsglError):
    """A fitted model is used on a dataset whose graph or variables differ."""


class DataError(XmsglError):
    """Values are unusable: NaN inputs, no observations, an empty selection, a bad file."""


class DownloadError(DataError):
    """A registered file could not be downloaded (network, server) or did not match its hash.

    The request was valid; the failure lies outside it, so the ``xmsgl`` command exits
    with status 1 for it (as for a full disk), not 2 (bad usage).
    """


class TrainingError(XmsglError):
    """Training cannot continue (for example a NaN or infinite loss)."""


class ParameterError(XmsglError):
    """A function argument is out of range or of the wrong kind."""


class ChoiceError(SchemaError, ParameterError):
    """An argument names a choice that does not exist (``method=``, ``weighting=``,
    ``device=``, ``scale=``, ``hot=``, ``join=``...): a :class:`ParameterError`, and a
    :class:`SchemaError` as the graphs' and metrics' choices were before."""


class PeriodError(TimeError, ParameterError):
    """A period or time selection argument (``train=``, ``time=``, ...) cannot be read."""


class XmsglWarning(UserWarning):
    """Base class of warnings issued by xmsgl."""


class UnitConversionWarning(XmsglWarning):
    """Values were converted to the convention's units (for example kelvin to degC)."""


class TimeGapWarning(XmsglWarning):
    """The days used have gaps: the recurrence restarts after each with a fresh state."""


class ColdStartWarning(XmsglWarning):
    """Most of the days returned have fewer than ``spinup`` days of inputs before them:
    the recurrent state starts fresh at the dataset's first day (and after a gap), so
    they are cold-start values. Give inputs for the warm-up before the first day wanted."""


class ExtrapolationWarning(XmsglWarning):
    """Nodes asked about have static inputs far beyond those of every node the model
    learned from: their predictions are extrapolations (see :func:`xmsgl.coverage.coverage`)."""


class InputRangeWarning(ExtrapolationWarning):
    """A time-varying input lies far beyond its training range on many of the days run,
    or below 0 in units never negative: a change of units (degF labelled degC), a
    missing-data code (-99.9), or days unlike the training's (a model fitted on winters
    run on a summer). See :func:`xmsgl.coverage.dynamic_extrapolation`."""


class InSampleWarning(XmsglWarning):
    """Scores are being taken on data the model was fitted on, or chose its checkpoint
    on, or (``idw``, ``harmonic``) copies: they are optimistic. Score held-out days
    (the model's ``xmsgl_test_periods``) or held-out observations instead."""


class FewObservationsWarning(XmsglWarning):
    """A method that learns the reaches from fine observations has very few of them,
    at very few reaches or on few days of the year, in its training period: compare
    it with ``remap`` on held-out data before trusting it."""


class ShortRecordWarning(XmsglWarning):
    """The record is too short for the default split by water year (fewer than three
    whole water years), so the default validation and test periods each cover part of
    one year."""


def check_count(name: str, value: object, least: int = 1) -> None:
    """Refuse anything but a whole number of at least ``least`` for the argument ``name``.

    Booleans and floats are refused too (``epochs=2.0`` or ``window=True`` are
    mistakes, not counts).

    Examples
    --------
    >>> check_count("epochs", 3)
    >>> check_count("spinup", -1, least=0)
    Traceback (most recent call last):
    ...
    xmsgl.exceptions.ParameterError: spinup=-1 must be an integer of at least 0
    """
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < least:
        kind = "a positive integer" if least == 1 else f"an integer of at least {least}"
        raise ParameterError(f"{name}={value!r} must be {kind}")


def check_flag(name: str, value: object, *, none: bool = False) -> None:
    """Refuse anything but True or False (and None, with ``none``) for the argument ``name``.

    A truth test would read the strings ``"false"`` and ``"no"`` as True, the
    opposite of what they say, and 0 or 1 are as likely a count given in the wrong
    place; numpy's booleans are taken.

    Examples
    --------
    >>> check_flag("check_graph", True)
    >>> check_flag("lazy", None, none=True)
    >>> check_flag("lazy", "false", none=True)
    Traceback (most recent call last):
    ...
    xmsgl.exceptions.ParameterError: lazy='false' must be True, False or None
    """
    import numpy as np

    if (value is None and none) or isinstance(value, (bool, np.bool_)):
        return
    raise ParameterError(f"{name}={value!r} must be {'True, False or None' if none else 'True or False'}")


def check_axes(ax: object) -> None:
    """Refuse anything but None or matplotlib Axes for a plotting function's ``ax``.

    Examples
    --------
    >>> check_axes(None)
    >>> check_axes(5)
    Traceback (most recent call last):
    ...
    xmsgl.exceptions.ParameterError: ax=5 must be matplotlib Axes (e.g. from plt.subplots()) or None for a new figure
    """
    if ax is None:
        return
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise ParameterError(f"ax={ax!r} must be matplotlib Axes (e.g. from plt.subplots()) or None "
                             "for a new figure")


#: xmsgl's own blocks that change Python's warning filters take turns: the filters are
#: process-wide, and two such blocks overlapping in two threads left one's filter
#: behind when the other ended.
_FILTERS_LOCK = threading.RLock()


@contextlib.contextmanager
def ignoring(category: type[Warning], message: str = "") -> Iterator[None]:
    """Ignore warnings of ``category`` whose text starts with the pattern ``message``
    inside the block, nothing else (the filters are process-wide: another thread's
    warnings of other kinds are shown meanwhile)."""
    with _FILTERS_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=message, category=category)
        yield


def did_you_mean(names: Iterable[str], known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the names among ``names`` close to one of ``known``
    (``difflib``'s match), or ``""``.

    Examples
    --------
    >>> did_you_mean(["spin_up"], ["spinup", "chunk", "time"])
    " (did you mean 'spinup'?)"
    >>> did_you_mean(["bogus"], ["spinup"])
    ''
    """
    import difflib

    known = list(known)
    pairs = [(n, difflib.get_close_matches(n, known, n=1, cutoff=0.75)) for n in names]
    hints = [f"{close[0]!r}" for _, close in pairs if close]
    return f" (did you mean {' or '.join(hints)}?)" if hints else ""


def check_keywords(func: Any, kwargs: Mapping[str, Any], where: str, given: Sequence[str] = ()) -> None:
    """Refuse keyword arguments ``func`` does not take, with a :class:`ParameterError`
    that names them and the closest of its own (Python's ``TypeError`` says less);
    ``given``: its arguments the caller passes itself.

    A function that takes ``**kwargs`` judges its own and is not checked.
    """
    import inspect

    params = inspect.signature(func).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    takes = [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
             and p.name not in given]
    unknown = sorted(k for k in kwargs if k not in takes)
    if unknown:
        raise ParameterError(
            f"{where}() got argument{'s' if len(unknown) > 1 else ''} {unknown} that it does not "
            f"take{did_you_mean(unknown, takes)}; it takes {sorted(takes)}")


def typed_arguments(func: _F) -> _F:
    """``func`` refusing arguments it does not take with a :class:`ParameterError` that
    names them and the closest of its own, as ``ds.msgl`` and :func:`xmsgl.fit` do
    (Python's ``TypeError``, ``got an unexpected keyword argument 'spin_up'``, says
    less); the arguments are bound before the call, which is otherwise unchanged."""
    import functools
    import inspect

    signature = inspect.signature(func)
    where = func.__qualname__.replace(".<locals>", "")

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as err:
            check_keywords(func, kwargs, where)
            raise ParameterError(f"{where}(): {err}") from None
        return func(*args, **kwargs)

    return cast(_F, checked)


def plural(n: int, word: str) -> str:
    """``n`` and ``word``, with an ``s`` unless ``n`` is 1.

    Examples
    --------
    >>> plural(1, "day"), plural(5, "day")
    ('1 day', '5 days')
    """
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_ids(ids: Iterable[object], limit: int = 5) -> str:
    """Render the first ``limit`` ids of ``ids`` for an error message.

    Examples
    --------
    >>> format_ids([3, 1, 2, 7, 9, 11, 12])
    '[3, 1, 2, 7, 9, ...] (7 in all)'
    """
    items = [i.item() if hasattr(i, "item") else i for i in ids]
    shown = ", ".join(repr(i) for i in items[:limit])
    if len(items) > limit:
        return f"[{shown}, ...] ({len(items)} in all)"
    return f"[{shown}]"


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_stacklevel() -> int:
    """The ``stacklevel`` with which a ``warnings.warn`` in the function calling this
    one names the first frame outside xmsgl: the user's line, however many of the
    package's wrappers and helpers lie between."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


#: What :func:`warn_at_user` said under Python's "default" action: (text, category,
#: file, line) of the user's code, the latest :data:`SHOWN_KEPT`.
_SHOWN: dict[tuple[str, type[Warning], str, int], None] = {}
_SHOWN_LOCK = threading.Lock()
SHOWN_KEPT = 10_000
#: True while an ``xmsgl`` command runs (set by :mod:`xmsgl.cli`): a command says
#: each of its own warnings, whatever a line said before in the process.
SAY_EACH: contextvars.ContextVar[bool] = contextvars.ContextVar("xmsgl_say_each", default=False)


def first_time(record: dict[Any, None], lock: threading.Lock, key: Any, kept: int) -> bool:
    """Whether ``key`` is new to ``record``, a bounded record shared by threads: a new key
    is added, and the oldest beyond the latest ``kept`` dropped."""
    with lock:
        if key in record:
            return False
        record[key] = None
        while len(record) > kept:
            del record[next(iter(record))]
        return True


def _filter_action(text: str, category: type[Warning], module: str, lineno: int) -> str:
    """The action Python's warning filters take for this warning (the first filter that
    matches, as ``warnings.warn_explicit`` looks for it, or the default action)."""
    for action, msg, cat, mod, line in list(warnings.filters):
        if ((msg is None or msg.match(text)) and issubclass(category, cat)
                and (mod is None or mod.match(module)) and (line == 0 or line == lineno)):
            return str(action)
    return str(getattr(warnings, "defaultaction", "default"))


def warn_at_user(message: str | Warning, category: type[Warning] | None = None) -> None:
    """``warnings.warn`` naming the user's line (:func:`user_stacklevel`), said once per
    line of the user's code and text where Python's filters say a warning once per
    line (the ``"default"`` action, Python's own for xmsgl's warnings).

    Python keeps that record per module and forgets it whenever a warning filter
    changes, which torch, pandas and xarray do through ``catch_warnings`` on many of
    their calls: a ``downscale`` in a loop (over years, or the members of an ensemble)
    repeated its warnings at every pass. Under any other action (``"always"``,
    ``"error"``, ``"ignore"``, ``"once"``, ``"module"``, as a user or pytest sets them)
    Python decides, as before, and so it does for a running ``xmsgl`` command
    (:data:`SAY_EACH`), whose warnings are its own output."""
    level = user_stacklevel()
    if isinstance(message, Warning):
        kind, text = type(message), str(message)
    else:
        kind, text = category or UserWarning, str(message)
    try:
        frame = sys._getframe(level - 1)
    except ValueError:  # every frame is xmsgl's (a thread it started)
        frame = None
    if frame is not None and not SAY_EACH.get():
        module = str(frame.f_globals.get("__name__", "<string>"))
        key = (text, kind, frame.f_code.co_filename, frame.f_lineno)
        if (_filter_action(text, kind, module, frame.f_lineno) == "default"
                and not first_time(_SHOWN, _SHOWN_LOCK, key, SHOWN_KEPT)):
            return
    if isinstance(message, Warning):
        warnings.warn(message, stacklevel=level)
    else:
        warnings.warn(message, kind, stacklevel=level)
