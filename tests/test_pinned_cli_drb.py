"""Pinned: the `xmsgl fit` line quotes the best epoch's score, `xmsgl fetch-data`
counts the files it lists, and bandpass refuses an empty band."""

from __future__ import annotations

import pathlib

import pytest
import xarray as xr

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

import xmsgl  # noqa: E402
from xmsgl.cli import main  # noqa: E402
from xmsgl.exceptions import ParameterError  # noqa: E402
from xmsgl.robustness import bandpass  # noqa: E402


def test_fit_line_quotes_the_best_epochs_score_not_the_last(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Guards the printed validation RMSE being that of the epoch kept.
    ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-10-01", end="2003-09-30")
    path = tmp_path / "basin.nc"
    ds.to_netcdf(path)
    real = xmsgl.fit

    def fit(*args, **kwargs):
        model = real(*args, **kwargs)
        main_ = model.config["history"]["main"]
        main_.update(val=[0.5, 0.9], best_epoch=1, loss=main_["loss"][:2])
        return model

    monkeypatch.setattr(xmsgl, "fit", fit)
    assert main(["fit", str(path), str(tmp_path / "m.xmsgl"), "--method", "fine-only",
                 "--epochs", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "best epoch 1 of 2 with validation fine RMSE 0.500 degC" in out
    assert "still improving" not in out


def test_fetch_data_counts_the_files_it_lists(drb_raw_dir: pathlib.Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    # Guards the closing count: one line per file, then "<that many> files ready".
    assert main(["fetch-data", "--folder", str(drb_raw_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"{len(lines) - 1} files ready" and len(lines) > 1
    assert all(pathlib.Path(p).is_file() for p in lines[:-1])


@pytest.mark.parametrize("short,long", [(30, 30), (40, 30)])
def test_bandpass_refuses_a_band_without_width(small_basin: xr.Dataset, short: float,
                                               long: float) -> None:
    # Guards the refusal of short >= long (an equal pair once slipped through a mutant).
    with pytest.raises(ParameterError, match="must be shorter than long"):
        bandpass(small_basin, short, long)
