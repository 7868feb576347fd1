"""The ``xmsgl`` command."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from xmsgl.cli import build_parser, main


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("demo", "fetch-data", "info"):
        assert cmd in out


def test_info_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    assert "xmsgl" in capsys.readouterr().out


def test_parser_defaults() -> None:
    args = build_parser().parse_args(["demo"])
    assert args.outdir == "xmsgl-demo" and not args.quick


def test_console_script_installed() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xmsgl.cli", "info"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_evaluate_writes_netcdf_and_prints_a_table(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import xarray as xr

    out = tmp_path / "res.nc"
    argv = ["evaluate", "--methods", "climatology", "idw", "--keep", "1.0", "0.1", "--seeds", "0", "1",
            "--n-segments", "5", "--end", "2003-09-30", "--cv", "climatology", "--folds", "2",
            "--repeats", "2", "--robustness", "idw", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "climatology" in text and "keep 0.1" in text and "robustness idw lag" in text
    with xr.open_dataset(out) as res:
        assert dict(res.rmse.sizes) == {"method": 2, "keep": 2, "seed": 2}
        assert dict(res.cv_rmse.sizes) == {"cv_repeat": 2, "cv_fold": 2, "cv_seed": 2}
        assert "vd_icc" in res and res.rob_d_rmse.dims == ("check", "level")
        assert res.attrs["command"].startswith("xmsgl evaluate --methods")
        assert "synthetic_basin(n_segments=5" in res.attrs["data"]
        assert np.isfinite(res.rmse.values).all()
    # An existing file is kept unless --overwrite is given.
    assert main(argv[:-2] + ["--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_evaluate_reads_a_data_file(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import xmsgl

    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2000-10-01", end="2003-09-30", seed=2)
    ds.to_netcdf(tmp_path / "basin.nc")
    assert main(["evaluate", "--methods", "climatology", "--keep", "0.5", "--data", str(tmp_path / "basin.nc"),
                 "--out", str(tmp_path / "r.nc")]) == 0
    import xarray as xr

    with xr.open_dataset(tmp_path / "r.nc") as res:
        assert "basin.nc" in res.attrs["data"] and res.rmse.shape == (1, 1, 1)
    assert main(["evaluate", "--data", str(tmp_path / "missing.nc"), "--out", str(tmp_path / "x.nc")]) == 2
    assert "does not exist" in capsys.readouterr().err
