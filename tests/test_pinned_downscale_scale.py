"""Pinned behaviour of downscale's and the lazy path's helpers that no other test
held: the training days an output records (ASYNC-MSGL's stage A among them), where
the look-ahead stops before inputs that end, and the lazy blocks' halo."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

pytest.importorskip("torch")


def _model(periods: dict, seg_vars=("seg_air_temp",), output: str = "fine") -> SimpleNamespace:
    # A network whose prediction reads no attention (no look-ahead to name).
    return SimpleNamespace(method="async-msgl", sha256="0" * 64, output=output,
                           config={"periods": periods},
                           features=SimpleNamespace(seg_vars=list(seg_vars), reach_vars=[]),
                           net=SimpleNamespace(lookahead=lambda output: 0))


def test_output_attrs_record_stage_a_days_as_training_days() -> None:
    # Guards output_attrs merging periods["stage_a"] into xmsgl_train_periods: the
    # days ASYNC-MSGL's stage A learnt from are training days of the model too.
    from xmsgl.downscale import output_attrs

    times = pd.date_range("2001-01-01", periods=30)
    model = _model({"train": [("2001-01-01", "2001-06-30")],
                    "stage_a": [("1995-01-01", "1999-12-31"), ("2001-07-01", "2001-08-31")],
                    "val": [("2002-01-01", "2002-03-31")]})
    attrs = output_attrs(model, "reach", times, 0, 30, 0, np.array([], dtype=np.int64), "h")
    assert attrs["xmsgl_train_periods"] == "1995-01-01/1999-12-31, 2001-01-01/2001-08-31"
    assert attrs["xmsgl_val_periods"] == "2002-01-01/2002-03-31"
    assert "xmsgl_short_warmup" not in attrs and attrs["history"] == "h"


def test_finite_end_stops_at_the_first_day_an_input_is_not_finite() -> None:
    # Guards `i1 + argmin(ok)` in _finite_end: the look-ahead ends on the day before
    # the first non-finite input, not one day into it.
    from xmsgl.downscale import _finite_end

    air = np.ones((2, 12))
    air[1, 7:] = np.nan  # one segment's forcing stops on day 7
    ds = xr.Dataset({"seg_air_temp": (("seg", "time"), air)},
                    coords={"seg": [1, 2], "time": pd.date_range("2001-01-01", periods=12)})
    model = _model({})
    assert _finite_end(ds, model, "seg", 5, 10) == 7
    assert _finite_end(ds, model, "seg", 5, 7) == 7  # finite up to e1: unchanged
    assert _finite_end(ds, model, "seg", 7, 10) == 7  # not finite from i1 on: no look-ahead
    assert _finite_end(ds, model, "seg", 5, 5) == 5


def test_lookahead_end_never_reads_across_a_gap_that_starts_at_the_end() -> None:
    # Guards `breaks >= i1` in lookahead_end: a gap right after the last kept day
    # (a break at i1) leaves no day to look ahead to; a later gap cuts it short.
    from xmsgl.downscale import lookahead_end

    times = pd.date_range("2001-01-01", periods=30)
    model = SimpleNamespace(output="fine", net=SimpleNamespace(lookahead=lambda output: 5))
    assert lookahead_end(model, "reach", times, 10, np.array([10])) == 10
    assert lookahead_end(model, "reach", times, 10, np.array([12])) == 12
    assert lookahead_end(model, "reach", times, 10, np.array([4, 20])) == 15
    assert lookahead_end(model, "reach", times, 28, np.array([], dtype=np.int64)) == 30
    assert lookahead_end(model, "seg", times, 10, np.array([20])) == 10  # no attention


def test_finite_days_of_a_lazy_block_stop_before_the_first_non_finite_day() -> None:
    # Guards `argmin(ok)` in scale._finite_days: a block's look-ahead keeps the
    # finite days after its kept ones, and not the first day an input lacks.
    from xmsgl.scale import _SLOT, _XTIME, _finite_days

    air = np.ones((3, 12), dtype=np.float32)
    air[2, 9:] = np.nan
    block = xr.Dataset({"seg_air_temp": ((_SLOT, _XTIME), air),
                        "seg_area": ((_SLOT,), np.ones(3))})
    names = ["seg_air_temp", "seg_area"]
    assert _finite_days(block, names, 5, 12) == 4  # days 5-8
    assert _finite_days(block, names, 5, 9) == 4  # all finite up to stop
    assert _finite_days(block, names, 9, 12) == 0
    assert _finite_days(block, names, 12, 12) == 0
