"""Pinned behaviour of the evaluation helpers that no other test held: where
subbasins cuts a network whose reach counts meet the target exactly, and which
coarse variables cross-validation hides."""

from __future__ import annotations

from tests.test_convention import hand_basin
from xmsgl.evaluate import _coarse_targets, subbasins


def test_subbasins_cut_where_the_reaches_reach_the_target_exactly() -> None:
    # Guards `acc >= target` in subbasins: 8 reaches in 4 groups is a target of 2,
    # which segment 1's two reaches meet, so it is a sub-basin of its own.
    labels = subbasins(hand_basin(), 4)
    assert labels.reach.values.tolist() == [11, 12, 21, 22, 23, 31, 32, 33]
    assert labels.values.tolist() == [1, 1, 2, 2, 2, 3, 3, 3]
    # One group: the whole basin above its outlet.
    assert set(subbasins(hand_basin(), 1).values.tolist()) == {3}


def test_coarse_targets_take_a_stage_a_variable_on_segments_and_time_only() -> None:
    # Guards the dims check of _coarse_targets: a stage_a_variable on (seg, time) is
    # hidden with seg_temp; one on reaches, or absent from ds, is not a coarse target.
    ds = hand_basin()
    ds["seg_temp_long"] = ds["seg_temp"].copy()
    ds["reach_temp_long"] = ds["reach_temp"].copy()
    ds["seg_temp_mean"] = ds["seg_temp"].mean("time")
    assert _coarse_targets(ds, {"stage_a_variable": "seg_temp_long"}) == ["seg_temp", "seg_temp_long"]
    assert _coarse_targets(ds, {"stage_a_variable": "reach_temp_long"}) == ["seg_temp"]
    assert _coarse_targets(ds, {"stage_a_variable": "seg_temp_mean"}) == ["seg_temp"]
    assert _coarse_targets(ds, {"stage_a_variable": "nothing"}) == ["seg_temp"]
    assert _coarse_targets(ds, None) == ["seg_temp"]
