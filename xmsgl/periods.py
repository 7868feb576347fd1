"""Periods and time selections given as arguments (``train=``, ``time=``, ``period=``).

One reading for every function that takes them, the way xarray reads labels:

* ``None``: everything (or, for a period of ``fit``, the default);
* a label such as ``"2001"`` or ``"2001-06"``: the whole year or month it names;
* ``(start, end)`` or ``slice(start, end)``: from ``start`` to ``end``, both
  included; a partial label as the end includes all of it (``("2001", "2002")``
  is January 2001 to December 2002), and ``None`` leaves that side open;
* a list of those (where several periods are accepted). A list of exactly two
  single days, such as ``["2001-01-01", "2001-12-31"]``, is two days by this rule;
  since it is nearly always meant as the period between them, it warns
  (``XmsglWarning``) and names the tuple to give instead.

Dates may be strings, ``datetime``, ``numpy.datetime64`` or ``pandas.Timestamp``.
A date or an instant stands for its whole day (a ``datetime64`` of month or year
resolution for its whole month or year), as a string label does, and so does a
string with a time of day (``"2002-10-01T12"`` is all of 1 October 2002): the days of a
dataset may be stamped at any hour (Daymet's at noon), and ``(date(2001, 6, 1),
date(2001, 6, 30))`` keeps both ends' values whatever their hour. Time-zone-aware
dates are refused, since the datasets' days are time-zone naive,
and so are strings with a zone or UTC offset (``"2012-10-01T00:00Z"``,
``"2014-01-01T00:00+01:00"``), and strings that put the year last (``"01/02/2016"``,
``"1.3.2016"``), which are read day-first in some places and month-first in others.

Examples
--------
>>> import pandas as pd
>>> t = pd.date_range("2000-12-30", "2002-01-02")
>>> int(period_mask(t, "2001").sum()), int(period_mask(t, ("2001-02", "2001-03")).sum())
(365, 59)
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Any

import numpy as np
import pandas as pd

from xmsgl.exceptions import PeriodError, TimeError, XmsglWarning, ignoring, warn_at_user

__all__ = ["WHOLE_WATER_YEAR_DAYS", "bounds_mask", "period_bounds", "period_list", "period_mask",
           "period_days", "select_days", "spans_text", "split_periods", "validation_at_end", "validation_beside",
           "warn_beyond_record", "water_years", "whole_water_years", "year_last_refusal"]

_HINT = ("give a label such as '2001', a pair (start, end) such as ('2001-01-01', '2001-12-31'), "
         "or a list of pairs")

Bound = pd.Timestamp | None

# A zone or UTC offset after a time of day: "...T00:00Z", "... 12:00 +01:00",
# "...T12-05", "... UTC". Only after a time, so the '-' of "2001-03" is never one.
_ZONE = re.compile(r"[T ]\d{1,2}(?::\d{2}(?::\d{2}(?:[.,]\d+)?)?)?\s*"
                   r"(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)\s*$", re.IGNORECASE)


#: Labels of a year, a month or a quarter ("2001", "2001-03", "2001Q1").
_PLAIN = re.compile(r"^\s*\d{4}(?:-\d{1,2}|[Qq][1-4])?\s*$")


#: A date whose year comes last ("01/02/2016", "1.3.2016"): day-first in some places,
#: month-first in others, and pandas reads it month-first where it can.
_YEAR_LAST = re.compile(r"^\s*(\d{1,2})\s*([./-])\s*(\d{1,2})\s*\2\s*(\d{4}|\d{2})\b")


def year_last_refusal(text: str, said: str) -> PeriodError | None:
    """The refusal of a date string that puts its year last (its two readings named), or
    None; ``said`` is how the caller names the argument (``"train=('1.3.2016', None)"``,
    ``"--start '1.3.2016'"``). A :class:`PeriodError` is a :class:`TimeError` too."""
    m = _YEAR_LAST.match(text)
    if m is None:
        return None
    a, b, year = int(m.group(1)), int(m.group(3)), m.group(4)
    readings = []
    for day, month in ((a, b), (b, a)):
        iso = f"{year}-{month:02d}-{day:02d}" if len(year) == 4 else None
        if iso is not None and iso not in readings:
            try:
                _dt.date.fromisoformat(iso)
            except ValueError:
                continue
            readings.append(iso)
    which = (f" ({' or '.join(repr(r) for r in readings)})" if readings else "")
    return PeriodError(
        f"{said}: {text!r} puts the year last, which is read day-first in some places "
        f"and month-first in others; give the date as 'YYYY-MM-DD'{which}"
    )


def _has_zone(text: str) -> bool:
    """Whether the date string ``text`` carries a time zone or a UTC offset."""
    if _ZONE.search(text):
        return True
    if _PLAIN.match(text):
        return False  # a year, a month or a quarter: no time of day, so no zone
    try:
        # ISO 8601, the usual form, without touching the (process-wide) warning filters.
        return _dt.datetime.fromisoformat(text.strip()).tzinfo is not None
    except ValueError:
        pass
    try:
        # pandas warns about formats it guesses, and of forms it will stop reading.
        with ignoring(UserWarning), ignoring(DeprecationWarning):
            parsed = pd.Timestamp(text)
    except (ValueError, TypeError, OverflowError):
        return False
    return parsed is not pd.NaT and parsed.tz is not None


def _refuse_zone(value: Any, name: str, given: Any) -> PeriodError:
    return PeriodError(
        f"{name}={given!r}: {value!r} has a time zone, but the dataset's days have none; "
        "give naive dates (e.g. Timestamp(...).tz_convert(None) for UTC, or the string "
        "without its offset or zone)"
    )


def _stamp(value: Any, end: bool, name: str, given: Any) -> Bound:
    """One side of a period: ``None``, or the first (last) instant of a label."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    if not isinstance(value, (str, _dt.date, np.datetime64)):
        raise PeriodError(f"{name}={given!r}: {value!r} ({type(value).__name__}) is not a date; "
                          f"{_HINT}")
    # A string is a label, read at its own resolution ("2001" is the whole year).
    # pd.Period drops a zone or offset without a word, so those are refused first.
    if isinstance(value, str):
        if _has_zone(value):
            raise _refuse_zone(value, name, given)
        refusal = year_last_refusal(value, f"{name}={given!r}")
        if refusal is not None:
            raise refusal
    try:
        parsed = pd.Period(value) if isinstance(value, str) else pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as err:
        raise PeriodError(f"{name}={given!r}: {value!r} is not a date; {_HINT}") from err
    if parsed is pd.NaT:
        raise PeriodError(f"{name}={given!r}: {value!r} is not a date; {_HINT}")
    if isinstance(parsed, pd.Period):
        first = parsed.asfreq("D", how="start")
        if first == parsed.asfreq("D", how="end"):
            # "2002-10-01T12" names an hour; like an instant, it stands for its day.
            parsed = first
        return _edge(parsed, end)
    if parsed.tz is not None:
        raise _refuse_zone(value, name, given)
    # The days of a dataset are daily steps, stamped at any hour (Daymet's at noon):
    # a date, or an instant, stands for its whole day, as a string label does, so
    # that an end of date(2002, 7, 31) keeps the values stamped 2002-07-31 12:00.
    unit = np.datetime_data(value.dtype)[0] if isinstance(value, np.datetime64) else "D"
    label = pd.Period(parsed, freq=unit if unit in ("Y", "M") else "D")
    return _edge(label, end)


def _edge(period: pd.Period, end: bool) -> pd.Timestamp:
    """The first (or with ``end`` the last) instant of ``period``; beyond 1677-2262,
    where pandas before 3.0 gives these in nanoseconds only and overflows, to the
    microsecond (the last one of the day: a stamp at 23:59:59.5 is the day's)."""
    try:
        return period.end_time if end else period.start_time
    except pd.errors.OutOfBoundsDatetime:
        day = period.asfreq("D", how="end" if end else "start").ordinal  # days since 1970
        stamp = np.datetime64(day, "D").astype("datetime64[us]")
        return pd.Timestamp(stamp + np.timedelta64(86_399_999_999, "us") if end else stamp)


def _pair(item: Any, name: str, given: Any) -> tuple[Bound, Bound]:
    if isinstance(item, slice):
        if item.step is not None:
            raise PeriodError(f"{name}={given!r}: a period has no step; {_HINT}")
        item = (item.start, item.stop)
    if isinstance(item, (str, bytes, _dt.date, np.datetime64)):
        # One label or date alone: all of it (a date, datetime64 or Timestamp its day).
        return _stamp(item, False, name, given), _stamp(item, True, name, given)
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        raise PeriodError(f"{name}={given!r}: {item!r} is not a (start, end) pair; {_HINT}")
    lo, hi = _stamp(item[0], False, name, given), _stamp(item[1], True, name, given)
    if lo is not None and hi is not None and hi < lo:
        raise PeriodError(f"{name}={given!r}: {item!r} ends before it starts; give (start, end)")
    return lo, hi


def _short_repr(value: Any) -> str:
    """``repr(value)``, or where it runs over lines (an index, an array), what it is."""
    text = repr(value)
    if len(text) <= 80 and "\n" not in text:
        return text
    size = f" of {len(value)} values" if hasattr(value, "__len__") else ""
    return f"<{type(value).__name__}{size}>"


def _index_fix(value: Any, name: str) -> str:
    """For dates given as an index or array of days: the pair that spans them."""
    try:
        values = np.asarray(value)
        if values.dtype.kind != "M":
            return ""
        days = pd.DatetimeIndex(values.ravel())
    except (TypeError, ValueError):
        return ""
    if len(days) == 0 or days.hasnans:
        return ""
    return (f" (for the days from {days.min().date()} to {days.max().date()}: "
            f"{name}=('{days.min().date()}', '{days.max().date()}'))")


def period_list(period: Any, name: str = "period") -> list[tuple[Bound, Bound]]:
    """The ``(start, end)`` bounds (``None`` where open) of a period argument.

    Examples
    --------
    >>> [(str(a), str(b.date())) for a, b in period_list(("2001-01", "2001-12-31"), "train")]
    [('2001-01-01 00:00:00', '2001-12-31')]
    >>> period_list("2001x", "train")
    Traceback (most recent call last):
    ...
    xmsgl.exceptions.PeriodError: train='2001x': '2001x' is not a date; give a label such as '2001', a pair (start, end) such as ('2001-01-01', '2001-12-31'), or a list of pairs
    """
    if period is None:
        return []
    if isinstance(period, (str, bytes, slice, _dt.date, np.datetime64)):
        return [_pair(period, name, period)]
    if isinstance(period, tuple) and not any(isinstance(p, (tuple, list, slice)) for p in period):
        # A tuple of dates is one (start, end) pair; periods go in a list.
        return [_pair(period, name, period)]
    if not isinstance(period, (list, tuple)):
        raise PeriodError(f"{name}={_short_repr(period)} is not understood; {_HINT}"
                          + _index_fix(period, name))
    out = [_pair(item, name, period) for item in period]
    if (isinstance(period, list) and len(out) == 2 and out[0] != out[1]
            and not any(isinstance(p, (tuple, list, slice)) for p in period)
            and all(_one_day(b) for b in out)):
        # ["2012-10-01", "2014-09-30"] is two days by the rule above, but almost
        # always meant as the period between them.
        warn_at_user(
            f"{name}={period!r} is read as a list of two single days; for the period from the "
            f"first to the second give a tuple: {name}={tuple(period)!r}",
            XmsglWarning,
        )
    return out


def _one_day(bounds: tuple[Bound, Bound]) -> bool:
    lo, hi = bounds
    return lo is not None and hi is not None and hi - lo < pd.Timedelta(days=1)


def period_bounds(sel: Any, name: str = "time") -> tuple[Bound, Bound]:
    """The bounds of one period (a label, a pair or a slice); ``(None, None)`` for ``None``."""
    if sel is None:
        return None, None
    if isinstance(sel, list) or (isinstance(sel, tuple) and len(sel) == 2 and any(
            isinstance(v, (tuple, list, slice)) for v in sel)):
        raise PeriodError(f"{name}={sel!r}: give one period here, not a list of them")
    try:
        return _pair(sel, name, sel)
    except PeriodError as err:
        # One period is asked for here: the advice offers no list.
        raise PeriodError(str(err).replace(", or a list of pairs", "")) from None


def spans_text(spans: Any) -> str:
    """Date spans ``(first, last)`` as ISO 8601 intervals ``"first/last"`` joined by
    ``", "``: how outputs record periods (``xmsgl_train_periods``, ``scored_days``...).

    Examples
    --------
    >>> spans_text([("2001-10-01", "2002-09-30"), ("2003-10-01", "2004-09-30")])
    '2001-10-01/2002-09-30, 2003-10-01/2004-09-30'
    """
    return ", ".join(f"{a}/{b}" for a, b in spans)


def mask_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs ``[a, b)`` of the true entries of the 1-d boolean ``mask``.

    Examples
    --------
    >>> mask_runs(np.array([1, 1, 0, 0, 1, 0], dtype=bool))
    [(0, 2), (4, 5)]
    """
    edges = np.diff(np.concatenate([[0], np.asarray(mask).astype(np.int8), [0]]))
    return [(int(a), int(b)) for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1))]


def mask_spans(time: pd.DatetimeIndex, mask: np.ndarray) -> list[tuple[str, str]]:
    """Contiguous runs of ``mask`` as (first, last) date strings (ends included).

    Examples
    --------
    >>> t = pd.date_range("2001-01-01", periods=6)
    >>> mask_spans(t, np.array([1, 1, 0, 0, 1, 0], dtype=bool))
    [('2001-01-01', '2001-01-02'), ('2001-01-05', '2001-01-05')]
    """
    return [(str(time[a].date()), str(time[b - 1].date())) for a, b in mask_runs(mask)]


def period_mask(time: pd.DatetimeIndex, period: Any, name: str = "period") -> np.ndarray:
    """Boolean mask of the days of ``time`` inside ``period`` (ends included)."""
    return bounds_mask(time, period_list(period, name))


def bounds_mask(time: pd.DatetimeIndex, bounds: list[tuple[Bound, Bound]]) -> np.ndarray:
    """Boolean mask of the days of ``time`` inside any of ``bounds`` (ends included)."""
    mask = np.zeros(len(time), dtype=bool)
    for lo, hi in bounds:
        inside = np.ones(len(time), dtype=bool)
        if lo is not None:
            inside &= np.asarray(time >= lo)
        if hi is not None:
            inside &= np.asarray(time <= hi)
        mask |= inside
    return mask


def warn_beyond_record(time: pd.DatetimeIndex, sel: Any, kept: np.ndarray, done: str = "returned",
                       name: str = "time", bounds: list[tuple[Bound, Bound]] | None = None) -> None:
    """Warn (:class:`~xmsgl.exceptions.XmsglWarning`) when the period(s) ``sel`` reach
    before the first or past the last day of ``time``: only the days ``kept``
    (positions in ``time``, at least one) are ``done``, the others have no inputs.
    ``bounds``: ``sel`` as :func:`period_list` reads it, where the caller has them."""
    if bounds is None:
        bounds = period_list(sel, name)
    early = any(lo is not None and lo.normalize() < time[0].normalize() for lo, _ in bounds)
    late = any(hi is not None and hi.normalize() > time[-1].normalize() for _, hi in bounds)
    if not (early or late):
        return
    n = int(kept.size)
    warn_at_user(
        f"{name}={sel!r} reaches {'before' if early else 'past'}"
        f"{' and past' if early and late else ''} the dataset's days ({time[0].date()} to "
        f"{time[-1].date()}): only the {n} day{'' if n == 1 else 's'} from "
        f"{time[int(kept[0])].date()} to {time[int(kept[-1])].date()} {'is' if n == 1 else 'are'} {done}; give inputs "
        "for the other days to have them",
        XmsglWarning)


def period_days(time: pd.DatetimeIndex, sel: Any, done: str, name: str) -> np.ndarray:
    """Mask of the days of ``time`` inside ``sel`` (a period or a list of them), which
    warns (:func:`warn_beyond_record`) where ``sel`` reaches beyond the days and picks
    some of them; picking none is left to the caller to say."""
    bounds = period_list(sel, name)  # read once: its warnings are said once
    mask = bounds_mask(time, bounds)
    if mask.any():
        warn_beyond_record(time, sel, np.flatnonzero(mask), done, name, bounds=bounds)
    return mask


def select_days(time: pd.DatetimeIndex, sel: Any, done: str = "returned", name: str = "time"
                ) -> np.ndarray:
    """Mask of the days of ``time`` that ``sel`` (a period or a list of them; ``None``:
    all) picks. No day picked is a :class:`~xmsgl.exceptions.TimeError`; a period
    reaching beyond the days warns (:func:`warn_beyond_record`)."""
    if sel is None:
        return np.ones(len(time), dtype=bool)
    mask = period_days(time, sel, done, name)
    if not mask.any():
        span = f" ({time[0].date()} to {time[-1].date()})" if len(time) else " (it has none)"
        raise TimeError(f"{name}={sel!r} selects no day of the dataset{span}")
    return mask


#: Days from first to last, and days held, that make a water year of the record whole
#: enough to count in :func:`split_periods` (a complete one spans 364 or 365 and holds
#: 365 or 366).
WHOLE_WATER_YEAR_DAYS = 330


def water_years(time: Any) -> np.ndarray:
    """The water year (1 October - 30 September, named by the year it ends) of each day.

    Examples
    --------
    >>> import pandas as pd
    >>> water_years(pd.DatetimeIndex(["2000-09-30", "2000-10-01"])).tolist()
    [2000, 2001]
    """
    if isinstance(time, pd.DatetimeIndex):  # timezone-aware ones too: their local dates
        t = time
    else:
        values = np.asarray(time)
        first = values.flat[0] if values.size else None
        if values.dtype == object and getattr(first, "calendar", None) is not None:
            # cftime dates (a model calendar): their year and month are those of the date.
            years = np.array([d.year for d in values.ravel()], dtype=np.int64)
            months = np.array([d.month for d in values.ravel()], dtype=np.int64)
            return (years + (months >= 10)).reshape(values.shape)
        if values.ndim != 1 or values.dtype.kind in "USiufb" or isinstance(first, (str, bytes)):
            raise TimeError(
                f"water years need dates, got {type(time).__name__} of {values.dtype} with "
                f"shape {values.shape}; convert them first, e.g. pd.to_datetime(values) or "
                "ds['time']")
        try:
            t = pd.DatetimeIndex(values)  # datetime64, or Timestamps and dates as objects
        except (TypeError, ValueError) as err:
            raise TimeError(f"water years need dates, got {type(time).__name__} holding "
                            f"{type(first).__name__}; convert them first, e.g. "
                            "pd.to_datetime(values)") from err
    if t.hasnans:
        where = np.flatnonzero(np.asarray(t.isna()))
        raise TimeError(
            f"water years need dates, got {where.size} missing (NaT) of {len(t)} at positions "
            f"{where[:5].tolist()}{' ...' if where.size > 5 else ''}; drop or fill them first, "
            "e.g. ds.sel(time=ds.time.notnull())")
    return np.asarray(t.year + (t.month >= 10).astype(int), dtype=np.int64)


def whole_water_years(time: pd.DatetimeIndex) -> np.ndarray:
    """The water years whose days in ``time`` span at least
    :data:`WHOLE_WATER_YEAR_DAYS` days and number at least as many, in order (a year
    of two days 364 days apart, which a gap allows, is not whole).

    Examples
    --------
    >>> import pandas as pd
    >>> whole_water_years(pd.date_range("2000-08-01", "2002-12-31")).tolist()
    [2001, 2002]
    """
    time = pd.DatetimeIndex(time)
    wy = water_years(time)
    years, held = np.unique(wy, return_counts=True)
    # In the days' own unit: nanoseconds cannot hold a date beyond 2262 (the
    # conversion wrapped around, which left the differences right by chance).
    days = np.asarray(time.values)
    first = np.array([days[wy == y][0] for y in years], dtype=days.dtype)
    last = np.array([days[wy == y][-1] for y in years], dtype=days.dtype)
    return years[((last - first) >= np.timedelta64(WHOLE_WATER_YEAR_DAYS, "D"))
                 & (held >= WHOLE_WATER_YEAR_DAYS)]


def validation_at_end(time: pd.DatetimeIndex) -> list[tuple[str, str]]:
    """A validation period for a fit with no test days (held-out sites are scored on
    every day instead): the last ``max(1, round(n / 12))`` whole water years of the
    record (``n`` of them), as :func:`split_periods` counts them, leaving at least one
    whole water year for training; with fewer than two, the last 15% of the days, as
    :func:`split_periods` counts a short record's (:func:`_short_validation`).

    Examples
    --------
    >>> import pandas as pd
    >>> validation_at_end(pd.date_range("2000-10-01", "2004-12-31"))
    [('2003-10-01', '2004-09-30')]
    >>> validation_at_end(pd.date_range("2000-10-01", "2001-09-30"))
    [('2001-08-07', '2001-09-30')]
    """
    time = pd.DatetimeIndex(time)
    wy = water_years(time)
    whole = whole_water_years(time)
    n_val = min(max(1, round(whole.size / 12)), whole.size - 1)
    if n_val < 1:
        return _short_validation(time, np.zeros(len(time), dtype=bool))
    return _year_spans(time, wy, [int(y) for y in whole[-n_val:]])


def _short_validation(time: pd.DatetimeIndex, test: np.ndarray) -> list[tuple[str, str]]:
    """Validation days of a record too short for whole water years (``test``: a mask of
    its test days): as many as :func:`split_periods` gives a short record (15% of the
    days), just before the first test day (at the end of the record without test days),
    or where fewer than twice as many are free there, just after the last; at least as
    many days are left to train on. Empty where neither side has room."""
    n_val = len(time) * 17 // 20 - len(time) * 7 // 10
    free = np.flatnonzero(~test)
    if n_val < 1 or free.size < 2 * n_val:
        return []
    marked = np.flatnonzero(test)
    before = free if marked.size == 0 else free[free < marked[0]]
    after = free[free > marked[-1]] if marked.size else free[:0]
    if before.size >= 2 * n_val:
        chosen = before[-n_val:]
    elif after.size >= 2 * n_val:
        chosen = after[:n_val]
    else:
        return []
    mask = np.zeros(len(time), dtype=bool)
    mask[chosen] = True
    return mask_spans(time, mask)


def _year_spans(time: pd.DatetimeIndex, wy: np.ndarray, chosen: list[int]) -> list[tuple[str, str]]:
    """The days of the water years ``chosen`` as (start, end) spans, one per run of
    consecutive years."""
    spans: list[tuple[str, str]] = []
    for y in sorted(chosen):
        days = time[wy == y]
        if spans and y - 1 in chosen:
            spans[-1] = (spans[-1][0], str(days[-1].date()))
        else:
            spans.append((str(days[0].date()), str(days[-1].date())))
    return spans


def validation_beside(time: pd.DatetimeIndex, test: np.ndarray) -> list[tuple[str, str]]:
    """A validation period for a given test period (a mask of ``time``), by the rule
    of :func:`split_periods`: the ``max(1, round(n / 12))`` whole water years of the
    record (``n`` of them) that hold no test day and come just before the first test
    day, or where none does, just after the last, or where the test days hold both
    ends of the record, just before the last test block (the free years between the
    blocks, the latest first); empty when no whole water year is free of test days.
    A water year that is not whole between the years chosen (and holds no test day)
    validates too, as in :func:`split_periods`. At least one free whole water year is
    left for training: with one free year there is no validation period. A record of
    fewer than three whole water years, which :func:`split_periods` splits 70/15/15
    by days, validates on days the same way when no whole year is free: the 15% of
    its days (:func:`_short_validation`) just before the first test day, or where
    fewer than twice as many are free there, just after the last.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> t = pd.date_range("2000-10-01", "2005-09-30")
    >>> validation_beside(t, np.asarray(t >= "2003-10-01") & np.asarray(t <= "2004-09-30"))
    [('2002-10-01', '2003-09-30')]
    >>> validation_beside(t, np.asarray(t <= "2001-09-30"))
    [('2001-10-01', '2002-09-30')]
    >>> validation_beside(t, np.asarray(t >= "2001-10-01"))  # one free year: training's
    []
    >>> validation_beside(t, np.asarray((t <= "2001-09-30") | (t >= "2004-10-01")))
    [('2003-10-01', '2004-09-30')]
    >>> t = pd.date_range("1979-01-01", "1980-12-31")  # one whole water year
    >>> validation_beside(t, np.asarray(t >= "1980-09-01"))
    [('1980-05-14', '1980-08-31')]
    """
    time = pd.DatetimeIndex(time)
    test = np.asarray(test, dtype=bool)
    if not test.any():
        return []
    wy = water_years(time)
    whole = whole_water_years(time)
    free = [y for y in whole if not test[wy == y].any()]
    n_val = min(max(1, round(whole.size / 12)), len(free) - 1)
    if n_val < 1:
        return _short_validation(time, test) if whole.size < 3 else []
    first, last = time[test][0], time[test][-1]
    before = [y for y in free if time[wy == y][-1] < first]
    after = [y for y in free if time[wy == y][0] > last]
    chosen = before[-n_val:] if before else after[:n_val]
    if not chosen:
        # Test days at both ends: the free years lie between test blocks; take those
        # just before the last block (folds of a cross-validation by water year that
        # held out the first and the last year went unvalidated).
        chosen = [y for y in free if time[wy == y][-1] < last][-n_val:]
    if chosen:
        # As split_periods: a water year that is not whole between validation years
        # (and holds no test day) validates too.
        chosen = sorted({*chosen, *(y for y in np.unique(wy) if min(chosen) < y < max(chosen)
                                    and not test[wy == y].any())})
    return _year_spans(time, wy, chosen)


def split_periods(time: pd.DatetimeIndex) -> dict[str, list[tuple[str, str]]]:
    """Default train/validation/test periods, by water year (1 October - 30 September).

    Only whole water years count (their days span at least
    :data:`WHOLE_WATER_YEAR_DAYS` and number as many): with ``n >= 3`` of them, the last
    ``max(1, round(n / 6))`` whole years and any days after them are the test period,
    the ``max(1, round(n / 12))`` whole years before them validation, everything
    earlier (a partial first year included) training. With fewer than three whole
    water years, the days are split 70/15/15 in time order instead. Water years that
    are not whole count with the period around them: before or between validation
    years, training or validation; after the last validation year and before the
    test, training (the training period is then two spans).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.date_range("2000-10-01", "2012-09-30")
    >>> split_periods(t)["test"]
    [('2010-10-01', '2012-09-30')]
    >>> split_periods(pd.date_range("2012-10-01", "2015-10-01"))["test"]
    [('2014-10-01', '2015-10-01')]
    >>> t = pd.date_range("2000-10-01", "2010-09-30")  # winters missing from 2003 to 2009
    >>> holed = t[~(t.month.isin([12, 1]) & (t > "2002-10-01") & (t < "2009-10-01"))]
    >>> split_periods(holed)
    {'train': [('2000-10-01', '2001-09-30'), ('2002-10-01', '2009-09-30')], \
'val': [('2001-10-01', '2002-09-30')], 'test': [('2009-10-01', '2010-09-30')]}
    """
    wy = water_years(time)
    whole = whole_water_years(time)
    n = whole.size

    def span(mask: np.ndarray) -> list[tuple[str, str]]:
        days = time[mask]
        return [(str(days[0].date()), str(days[-1].date()))]

    if n >= 3:
        n_test = max(1, round(n / 6))
        n_val = max(1, round(n / 12))
        test_from = whole[n - n_test]
        val = (wy >= whole[n - n_test - n_val]) & (wy <= whole[n - n_test - 1])
        test = wy >= test_from
        return {
            "train": mask_spans(time, ~val & ~test),
            "val": span(val),
            "test": span(test),
        }
    if len(time) < 10:
        raise TimeError(f"the dataset has {len(time)} days; xmsgl needs at least 10 to train")
    # Integer arithmetic: int(90 * 0.70) is 62 (0.7 * 90 = 62.999...).
    i1 = len(time) * 7 // 10
    i2 = len(time) * 17 // 20
    idx = np.arange(len(time))
    return {"train": span(idx < i1), "val": span((idx >= i1) & (idx < i2)), "test": span(idx >= i2)}
