"""The demo job, in its quick mode."""

from __future__ import annotations

import math

import pytest
import xarray as xr

pytest.importorskip("torch")


def test_quick_demo_writes_table_netcdf_and_figure(tmp_path, capsys) -> None:
    from xmsgl.demo import run_demo

    res = run_demo(tmp_path / "demo", quick=True, progress=False, seed=0)
    printed = capsys.readouterr().out
    assert {r["method"] for r in res["table"]} == {"async-msgl", "fine-only", "remap"}
    for row in res["table"]:
        assert math.isfinite(row["rmse"]) and 0 < row["mae"] <= row["rmse"] < 15
        assert row["method"] in printed
    assert "RMSE" in printed and "MAE" in printed
    with xr.open_dataset(res["netcdf"]) as out:
        assert {"reach_temp_async_msgl", "reach_temp_fine_only", "reach_temp_remap",
                "reach_temp_true"} <= set(out.data_vars)
        assert out["reach_temp_async_msgl"].attrs["units"] == "degC"
        assert "xmsgl" in out.attrs["history"]
    assert res["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "demo").iterdir() if p.name.startswith(".")]
