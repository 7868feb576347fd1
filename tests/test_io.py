"""Tests of xmsgl.io: atomic writes, no accidental overwrite, no half files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from tests.conftest import ROOT
from xmsgl.exceptions import ParameterError, XmsglError
from xmsgl.io import atomic_write, to_netcdf_safe, to_zarr_safe


def small() -> xr.Dataset:
    return xr.Dataset({"reach_temp": (("reach", "time"), np.arange(6.0).reshape(2, 3),
                                      {"units": "degC"})},
                      coords={"reach": [1, 2], "time": np.arange(3)})


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_write_renames_into_place(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and not tmp.exists() and not target.exists()
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert leftovers(target.parent) == []


def test_atomic_write_refuses_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(ParameterError, match=r"out\.txt.*overwrite=True"):
        with atomic_write(target) as tmp:
            tmp.write_text("new")
    assert target.read_text() == "old"
    with atomic_write(target, overwrite=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert leftovers(tmp_path) == []


def test_failure_inside_the_block_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="writer broke"):
        with atomic_write(target, overwrite=True) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer broke")
    assert target.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_nothing_written_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(XmsglError, match="nothing was written"):
        with atomic_write(tmp_path / "out.txt"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_folder_is_replaced_whole(tmp_path: Path) -> None:
    target = tmp_path / "store"
    target.mkdir()
    (target / "old_chunk").write_text("old")
    with atomic_write(target, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "new_chunk").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new_chunk"]
    assert leftovers(tmp_path) == []
    with pytest.raises(ParameterError, match="is a folder"):
        with atomic_write(target, overwrite=True) as tmp:
            tmp.write_text("a file")
    assert (target / "new_chunk").read_text() == "new"


def test_to_netcdf_safe(tmp_path: Path) -> None:
    target = tmp_path / "out.nc"
    ds = small()
    assert to_netcdf_safe(ds, target) == target
    xr.testing.assert_identical(xr.load_dataset(target), ds)
    with pytest.raises(ParameterError, match="already exists"):
        to_netcdf_safe(ds * 2, target)
    xr.testing.assert_identical(xr.load_dataset(target), ds)
    to_netcdf_safe(ds["reach_temp"] + 1, target, overwrite=True)
    assert float(xr.load_dataset(target)["reach_temp"].sum()) == float(ds["reach_temp"].sum()) + 6
    with pytest.raises(ParameterError, match="Dataset or DataArray"):
        to_netcdf_safe({"a": 1}, tmp_path / "x.nc")  # type: ignore[arg-type]
    assert leftovers(tmp_path) == []


def test_to_netcdf_safe_never_overwrites_its_source(tmp_path: Path) -> None:
    source = tmp_path / "in.nc"
    small().to_netcdf(source)
    before = source.read_bytes()
    with xr.open_dataset(source) as opened:
        for obj in (opened, opened["reach_temp"], opened + 1):
            with pytest.raises(ParameterError, match="were read from it"):
                to_netcdf_safe(obj, source, overwrite=True)
        # The same file through another spelling of the path.
        with pytest.raises(ParameterError, match="were read from it"):
            to_netcdf_safe(opened, tmp_path / "." / "in.nc", overwrite=True)
    assert source.read_bytes() == before


def test_to_zarr_safe(tmp_path: Path) -> None:
    target = tmp_path / "out.zarr"
    ds = small()
    to_zarr_safe(ds, target)
    xr.testing.assert_identical(xr.open_zarr(target).load(), ds)
    with pytest.raises(ParameterError, match="already exists"):
        to_zarr_safe(ds * 2, target)
    to_zarr_safe(ds * 2, target, overwrite=True)
    xr.testing.assert_identical(xr.open_zarr(target).load()["reach_temp"], ds["reach_temp"] * 2)
    with xr.open_zarr(target) as opened:
        with pytest.raises(ParameterError, match="were read from it"):
            to_zarr_safe(opened, target, overwrite=True)
    for kw in ({"mode": "a"}, {"append_dim": "time"}, {"region": "auto"}):
        with pytest.raises(ParameterError, match="whole new store"):
            to_zarr_safe(ds, tmp_path / "other.zarr", **kw)
    assert leftovers(tmp_path) == []


def chunked() -> xr.Dataset:
    time = np.arange(300)
    return xr.Dataset({"reach_temp": (("reach", "time"), np.arange(600.0).reshape(2, 300),
                                      {"units": "degC"})},
                      coords={"reach": [1, 2], "time": time}).chunk({"time": 100})


@pytest.mark.parametrize("writer", [to_zarr_safe, to_netcdf_safe], ids=["zarr", "netcdf"])
def test_delayed_write_renames_only_after_compute(tmp_path: Path, writer) -> None:
    from dask.delayed import Delayed

    ds = chunked()
    target = tmp_path / "c.out"
    kw = {"consolidated": False} if writer is to_zarr_safe else {}
    later = writer(ds, target, compute=False, **kw)
    assert isinstance(later, Delayed)
    assert not target.exists()  # nothing at the target before the values are written
    assert later.compute() == target
    opened = xr.open_zarr(target, consolidated=False) if writer is to_zarr_safe else xr.open_dataset(target)
    with opened:
        np.testing.assert_array_equal(opened["reach_temp"].values, ds["reach_temp"].values)
    assert leftovers(tmp_path) == []


def test_delayed_write_checks_the_target_again_when_computed(tmp_path: Path) -> None:
    target = tmp_path / "c.zarr"
    later = to_zarr_safe(chunked(), target, compute=False, consolidated=False)
    target.mkdir()  # someone else wrote there meanwhile
    (target / "theirs").write_text("keep")
    with pytest.raises(ParameterError, match="overwrite=True"):
        later.compute()
    assert (target / "theirs").read_text() == "keep"
    assert leftovers(tmp_path) == []


def test_compute_must_be_a_bool(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="compute='no'"):
        to_netcdf_safe(small(), tmp_path / "x.nc", compute="no")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_home_folder_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert to_netcdf_safe(small(), "~/x.nc") == home / "x.nc"
    assert to_zarr_safe(small(), "~/x.zarr", consolidated=False) == home / "x.zarr"
    with atomic_write("~/sub/x.txt") as tmp:
        tmp.write_text("done")
    assert (home / "sub" / "x.txt").read_text() == "done"
    xr.testing.assert_identical(xr.load_dataset(home / "x.nc"), small())
    # The source check sees the same file through "~".
    with xr.open_dataset(home / "x.nc") as opened:
        with pytest.raises(ParameterError, match="were read from it"):
            to_netcdf_safe(opened, "~/x.nc", overwrite=True)
    assert list(work.iterdir()) == []  # no literal "~" folder
    assert leftovers(home) == []


def test_path_below_a_file_or_not_a_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ParameterError, match="is a file, not a folder"):
        to_netcdf_safe(small(), tmp_path / "afile" / "x.nc")
    with pytest.raises(ParameterError, match="is a file, not a folder"):
        to_zarr_safe(small(), tmp_path / "afile" / "sub" / "x.zarr")
    with pytest.raises(ParameterError, match="not a file path"):
        to_netcdf_safe(small(), None)  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


WRITER = textwrap.dedent(
    """
    import sys, time
    from xmsgl.io import atomic_write

    with atomic_write(sys.argv[1], overwrite=True) as tmp:
        with open(tmp, "wb") as f:
            for i in range(100000):
                f.write(b"x" * 65536)
                if i == 8:
                    f.flush()
                    print("started", flush=True)
                    time.sleep(60)  # killed here, halfway through the file
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_killed_writer_leaves_previous_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "result.nc"
    target.write_bytes(b"previous result")
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        partial = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(partial) == 1 and partial[0].stat().st_size > 0  # the writer is midway
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"previous result"
    # Only the hidden temporary file is left behind, never a half file at the target.
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["result.nc"]
