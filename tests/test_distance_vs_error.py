"""docs/scripts/distance_vs_error.py: its binning of nodes by distance beyond the observed ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "docs" / "scripts" / "distance_vs_error.py"
_spec = importlib.util.spec_from_file_location("distance_vs_error", _PATH)
assert _spec is not None and _spec.loader is not None
script = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(script)


def test_each_node_falls_in_one_bin_with_its_weighted_rmse() -> None:
    distance = np.array([0.0, 0.0, 0.5, 1.0, 1.5, 2.5, 2.7, 4.0, 5.0, 7.5])
    sq = np.array([1.0, 3.0, 4.0, 9.0, 16.0, 25.0, 36.0, 49.0, 64.0, 81.0])
    weight = np.array([1.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0])
    rows = script.bins(distance, sq, weight)
    assert [r["bin"] for r in rows] == ["0", "(0, 1]", "(1, 2]", "(2, 2.5]", "(2.5, 3]", "(3, 5]",
                                        "(5, inf]"]
    # Edges belong to the bin below them: 1.0 with (0, 1], 2.5 with (2, 2.5], 5.0 with (3, 5].
    assert [r["nodes"] for r in rows] == [2, 2, 1, 1, 1, 2, 1]
    assert sum(r["nodes"] for r in rows) == distance.size
    assert rows[0]["rmse"] == pytest.approx(np.sqrt((1 * 1 + 3 * 3) / 4))
    assert rows[1]["rmse"] == pytest.approx(np.sqrt((2 * 4 + 9) / 3))
    assert rows[5]["rmse"] == pytest.approx(np.sqrt((49 + 64) / 2))
    assert rows[6]["weight"] == 2.0 and rows[6]["rmse"] == pytest.approx(9.0)


def test_empty_bins_have_no_rmse_and_weights_default_to_one() -> None:
    rows = script.bins(np.array([0.0, 0.2]), np.array([4.0, 16.0]))
    assert rows[0]["rmse"] == pytest.approx(2.0) and rows[1]["rmse"] == pytest.approx(4.0)
    assert all(r["nodes"] == 0 and r["rmse"] is None for r in rows[2:])
