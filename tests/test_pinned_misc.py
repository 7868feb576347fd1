"""Pinned behaviour of coverage, the k-nearest-neighbour helpers, explain and the
synthetic generator's checks that no other test held."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import xmsgl
from xmsgl.coverage import _sd_beyond
from xmsgl.exceptions import ParameterError, TimeError


def test_sd_beyond_counts_both_sides_of_the_observed_range() -> None:
    # Guards the `lo - values` side of coverage._sd_beyond: a value below the
    # observed range is as far beyond it as one above.
    far = _sd_beyond(np.array([-1.0, 0.0, 0.5, 1.0, 3.0]), (0.0, 1.0), 2.0)
    np.testing.assert_allclose(far, [0.5, 0.0, 0.0, 0.0, 1.0])


def test_explain_time_slice_keeps_both_ends() -> None:
    # Guards `idx[-1] + 1` in explain._time_slice: the period's last day is explained.
    pytest.importorskip("torch")
    from xmsgl.explain import _time_slice

    time = pd.date_range("2001-01-01", periods=10)
    assert _time_slice(time, ("2001-01-03", "2001-01-05")) == slice(2, 5)
    assert _time_slice(time, None) == slice(0, 10)
    with pytest.raises(ParameterError, match="selects 1 day of the dataset .*give a longer period"):
        _time_slice(time, ("2001-01-10", "2001-01-20"))
    # A period outside the days: a longer one would not help (it used to say so).
    with pytest.raises(TimeError, match=r"selects no day of the dataset \(2001-01-01 to 2001-01-10\); "
                                        r"give a period inside its days"):
        _time_slice(time, ("2010-01-01", "2010-02-01"))


def test_synthetic_basin_refuses_an_end_one_day_before_its_start() -> None:
    # Guards `t1 < t0` in the synthetic generator's time axis: no tolerance of a day.
    with pytest.raises(TimeError, match=r"'end' \(2001-01-01\) is before 'start' \(2001-01-02\)"):
        xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-02", end="2001-01-01")
    one_day = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-01-01")
    assert one_day.sizes["time"] == 1


def test_synthetic_basin_refuses_dates_beyond_nanosecond_stamps() -> None:
    # 2300 wrapped around to 1715 (summer water for a January) without a word.
    with pytest.raises(TimeError, match=r"start='2300-01-01' and end='2300-03-01' lie outside the days "
                                        r"datetime64\[ns\] holds \(1677-09-22 to 2262-04-11\)"):
        xmsgl.datasets.synthetic_basin(n_segments=2, start="2300-01-01", end="2300-03-01")
    with pytest.raises(TimeError, match=r"^end='2262-04-12' lies outside"):
        xmsgl.datasets.synthetic_basin(n_segments=2, start="2262-04-01", end="2262-04-12")
    edge = xmsgl.datasets.synthetic_basin(n_segments=2, start="2262-04-01", end="2262-04-11")
    assert str(edge.time.values[-1])[:10] == "2262-04-11" and edge.indexes["time"].is_monotonic_increasing
