"""xmsgl.io.append_zarr: a store grown along time, checked and undone on failure."""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.conftest import FAST_FIT
from xmsgl.convention import daily_time_bounds, output_dataset
from xmsgl.exceptions import (
    DataError,
    ModelMismatchError,
    ParameterError,
    TimeError,
    TimeGapWarning,
    UnitsError,
    XmsglWarning,
)
from xmsgl.io import append_zarr, to_zarr_safe

zarr = pytest.importorskip("zarr")


def open_group(store: Path, mode: str = "r") -> object:
    """The store's zarr group, its own metadata read (not consolidated) with zarr 3 or 2."""
    try:
        return zarr.open_group(str(store), mode=mode, use_consolidated=False)
    except TypeError:  # zarr 2 reads the arrays' own metadata with open_group
        return zarr.open_group(str(store), mode=mode)


def days(start: str, n: int, reaches: list[int] | None = None, value: float | None = None,
         units: str | None = "degC", model: str = "abc") -> xr.DataArray:
    """A downscale-like output: (reach, time) float32 with units and a model hash."""
    reaches = [11, 12, 13] if reaches is None else reaches
    time = pd.date_range(start, periods=n)
    # A value of its own on each reach-day: reach * 1000 + day of the year.
    values = (np.asarray(reaches, "float32")[:, None] * 1000 + time.day_of_year.values[None, :]
              if value is None else np.full((len(reaches), n), value)).astype("float32")
    return xr.DataArray(values, coords={"reach": reaches, "time": time}, dims=("reach", "time"),
                        name="reach_temp_pred",
                        attrs={**({"units": units} if units is not None else {}),
                               "xmsgl_model_sha256": model, "history": f"run {start}"})


def first_store(path: Path, piece: xr.DataArray, time_chunk: int = 4, **kw: object) -> Path:
    ds = daily_time_bounds(piece.to_dataset())
    ds.attrs = {"title": "t", "history": "written"}
    to_zarr_safe(ds.chunk({"time": time_chunk}), path, **kw)  # type: ignore[arg-type]
    return path


def test_appended_days_follow_the_store_with_bounds_chunks_and_attributes(tmp_path: Path) -> None:
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    # 10 days in chunks of 4 leave the last chunk half full; 7 more days continue it.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        append_zarr(days("2001-01-11", 7), store)
    out = xr.open_zarr(store)
    whole = days("2001-01-01", 17)
    np.testing.assert_array_equal(out.reach_temp_pred.values, whole.values)
    assert list(out.time.values) == list(whole.time.values)
    assert out.time_bnds.shape == (17, 2)
    assert pd.Timestamp(out.time_bnds.values[-1, 1]) == pd.Timestamp("2001-01-18")
    assert out.reach_temp_pred.encoding["chunks"][1] == 4
    # The store's global attributes stay, with a history line for the append.
    lines = out.attrs["history"].splitlines()
    assert out.attrs["title"] == "t" and lines[0] == "written"
    # The variable's own history gets the same line after the first piece's.
    assert out.reach_temp_pred.attrs["history"].splitlines() == ["run 2001-01-01", lines[-1]]
    assert "append_zarr: 2001-01-11 to 2001-01-17 (7 time steps); the piece: run 2001-01-11" in lines[1]
    # Consolidated metadata follow the new length.
    assert xr.open_zarr(store, consolidated=True).sizes["time"] == 17


def test_a_lazy_piece_appends_and_a_dataset_without_bounds_gets_none(tmp_path: Path) -> None:
    piece = days("2001-01-01", 5).to_dataset()
    to_zarr_safe(piece, tmp_path / "s.zarr")
    later = days("2001-01-06", 9).chunk({"time": 2})
    append_zarr(later, tmp_path / "s.zarr")
    out = xr.open_zarr(tmp_path / "s.zarr")
    assert "time_bnds" not in out and out.sizes["time"] == 14
    # Written from a DataArray, the store had its history on the variable: the global
    # history starts with it, then names the piece appended.
    first, added = out.attrs["history"].splitlines()
    assert first == "run 2001-01-01" and "the piece: run 2001-01-06" in added
    np.testing.assert_array_equal(out.reach_temp_pred.values, days("2001-01-01", 14).values)


@pytest.mark.parametrize("piece, error, match", [
    (days("2001-01-08", 5), DataError, r"starts on 2001-01-08, not after the store's last day "
     r"\(2001-01-10\): appending it would repeat days; append piece.sel\(time=slice\('2001-01-11', None\)\)"),
    (days("2000-12-01", 3), DataError, r"it holds no later day"),
    (days("2001-01-11", 3, reaches=[12, 11]), DataError,
     r"the piece's 'reach' labels are not the store's \(missing from the piece: \[13\]\); append "
     r"the store's 'reach' labels, each once"),
    (days("2001-01-11", 3, reaches=[11, 12, 99]), DataError,
     r"not in the store: \[99\]; missing from the piece: \[13\]"),
    (days("2001-01-11", 3, reaches=[11, 12, 12, 13]), DataError,
     r"\(repeated in the piece: \[12\]\); drop the repeats \(piece.isel\(reach=~piece.indexes\['reach'\]"
     r".duplicated\(\)\)\).*\(in Python, piece.sel\(reach=store\['reach'\]\)\)$"),
    (days("2001-01-11", 3, reaches=[11, 11, 12]), DataError,
     r"\(missing from the piece: \[13\]; repeated in the piece: \[11\]\).*as the store$"),
    (days("2001-01-11", 3).drop_vars("reach"), DataError,
     r"the piece has no 'reach' labels to match with the store's; give them"),
    (days("2001-01-11", 3, units="degF"), UnitsError,
     r"has units 'degF' in the piece and units 'degC' in the store .*; convert the piece"),
    (days("2001-01-11", 3, units=None), UnitsError,  # was said "in None"
     r"has no units attribute in the piece and units 'degC' in the store .*; give it the store's"),
    (days("2001-01-11", 3, model="other"), ModelMismatchError, r"same_model=False"),
    (days("2001-01-11", 3).rename("seg_temp_pred"), DataError,
     r"missing \['reach_temp_pred'\]; not in the store \['seg_temp_pred'\]"),
    (days("2001-01-11", 3).transpose(), DataError, r"transpose it"),
    (days("2001-01-11", 3).isel(time=[2, 1, 0]), DataError, r"increasing and without repeats"),
])
def test_a_piece_that_does_not_continue_the_store_is_refused_and_leaves_it_as_it_was(
        tmp_path: Path, piece: xr.DataArray, error: type, match: str) -> None:
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    before = xr.open_zarr(store).load()
    with pytest.raises(error, match=match):
        append_zarr(piece, store)
    xr.testing.assert_identical(xr.open_zarr(store).load(), before)


def test_a_piece_with_the_reaches_in_another_order_is_appended_in_the_stores(tmp_path: Path) -> None:
    # Nodes are matched by id: the same reaches in another order go where the store has them.
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    append_zarr(days("2001-01-11", 3, reaches=[13, 11, 12]).to_dataset(), store)
    out = xr.open_zarr(store)
    assert out.reach.values.tolist() == [11, 12, 13]
    np.testing.assert_array_equal(out.reach_temp_pred.values, days("2001-01-01", 13).values)


def test_a_piece_whose_static_variables_differ_from_the_stores_warns(tmp_path: Path) -> None:
    # The reaches' positions are not appended: a piece with others is said, the store
    # keeps its own. The same positions in another order of the reaches are the same.
    def placed(piece: xr.DataArray, x: dict[int, float], units: str = "m") -> xr.Dataset:
        ds = piece.to_dataset()
        ds["reach_x"] = ("reach", [x[r] for r in piece["reach"].values], {"units": units})
        ds["reach_order"] = ("reach", piece["reach"].values * 2)  # a whole number, the same in all
        return ds

    x = {11: 5.0, 12: np.nan, 13: 7.0}
    store = tmp_path / "s.zarr"
    to_zarr_safe(daily_time_bounds(placed(days("2001-01-01", 4), x)), store)
    with warnings.catch_warnings():
        warnings.simplefilter("error", XmsglWarning)
        append_zarr(placed(days("2001-01-05", 2, reaches=[13, 11, 12]), x), store)
    moved = {**x, 13: 8.0}
    with pytest.warns(XmsglWarning, match=r"the piece's 'reach_x' \(1 of 3 values\) differs from the one in "
                                          r"the store .*s\.zarr', which keeps its own"):
        append_zarr(placed(days("2001-01-07", 2), moved), store)
    with pytest.warns(XmsglWarning, match=r"'reach_x' \(0 of 3 values\) \(units 'km' against the store's 'm'\)"):
        append_zarr(placed(days("2001-01-09", 2), x, units="km"), store)
    out = xr.open_zarr(store)
    np.testing.assert_array_equal(out["reach_x"].values, [5.0, np.nan, 7.0])
    assert out.sizes["time"] == 10 and out["reach_x"].attrs["units"] == "m"


def test_static_variables_are_compared_as_the_store_holds_them(tmp_path: Path) -> None:
    # Positions stored as float32 come back rounded, and a missing name is missing on both
    # sides: the same values, nothing to say. A lazy piece is compared as it is.
    def placed(piece: xr.DataArray, x: list[float], names: list[str | None]) -> xr.Dataset:
        ds = piece.to_dataset()
        ds["reach_x"] = ("reach", np.array(x), {"units": "m"})
        ds["reach_name"] = ("reach", np.array(names, dtype=object))
        return ds

    x, names = [431_234.567891, 5.1, np.nan], ["a", None, "c"]
    store = tmp_path / "s.zarr"
    to_zarr_safe(daily_time_bounds(placed(days("2001-01-01", 4), x, names)), store,
                 encoding={"reach_x": {"dtype": "float32"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error", XmsglWarning)
        append_zarr(placed(days("2001-01-05", 2), x, names), store)
        append_zarr(placed(days("2001-01-07", 2), x, names).chunk({"reach": 2}), store)
    with pytest.warns(XmsglWarning, match=r"'reach_name' \(1 of 3 values\) differs"):
        append_zarr(placed(days("2001-01-09", 2), x, ["a", "b", "c"]), store)
    with pytest.warns(XmsglWarning, match=r"'reach_x' \(1 of 3 values\) differs"):
        append_zarr(placed(days("2001-01-11", 2), [431_234.567891, 5.1, 0.0], names).chunk(), store)
    assert xr.open_zarr(store).sizes["time"] == 12


def test_a_refused_piece_gets_the_error_alone(tmp_path: Path) -> None:
    def placed(piece: xr.DataArray) -> xr.Dataset:
        return piece.to_dataset().assign(reach_x=("reach", piece["reach"].values * 10.0, {"units": "m"}))

    store = tmp_path / "s.zarr"
    to_zarr_safe(daily_time_bounds(placed(days("2001-01-01", 4))), store)
    other = placed(days("2001-01-05", 2, reaches=[21, 22, 23]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", XmsglWarning)  # a warning here would fail the test
        with pytest.raises(DataError, match="labels are not the store's"):
            append_zarr(other, store)


def test_the_fix_for_repeated_reaches_appends_and_a_store_with_repeats_is_said(tmp_path: Path) -> None:
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    piece = days("2001-01-11", 3, reaches=[13, 12, 12, 11])
    with pytest.raises(DataError, match="drop the repeats"):
        append_zarr(piece, store)
    # The fixes the message gives, followed as written.
    piece = piece.isel(reach=~piece.indexes["reach"].duplicated())
    append_zarr(piece.sel(reach=xr.open_zarr(store)["reach"]), store)
    np.testing.assert_array_equal(xr.open_zarr(store).reach_temp_pred.values, days("2001-01-01", 13).values)
    twice = first_store(tmp_path / "t.zarr", days("2001-01-01", 10, reaches=[11, 11, 12]))
    with pytest.raises(DataError, match=r"the store '.*t.zarr''s own 'reach' labels repeat \(\[11\]\), so "
                                        r"the piece's cannot be matched to them; write the days to a new store"):
        append_zarr(days("2001-01-11", 3, reaches=[11, 12, 11]), twice)


def test_another_model_appends_when_asked(tmp_path: Path) -> None:
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    append_zarr(days("2001-01-11", 3, model="other"), store, same_model=False)
    assert xr.open_zarr(store).sizes["time"] == 13


def test_a_gap_warns_with_its_length(tmp_path: Path) -> None:
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    # Made an error, as the warning says, it stops the append before anything is written.
    with warnings.catch_warnings():
        warnings.simplefilter("error", TimeGapWarning)
        with pytest.raises(TimeGapWarning):
            append_zarr(days("2001-01-15", 3), store)
    assert xr.open_zarr(store).sizes["time"] == 10
    with pytest.warns(TimeGapWarning, match=r"leaves 4 time steps missing \(4 between 2001-01-10 and "
                                            r"2001-01-15\): the piece is appended all the same.* can "
                                            r"never be appended later.*simplefilter\('error'"):
        append_zarr(days("2001-01-15", 3), store)
    assert xr.open_zarr(store).sizes["time"] == 13


def test_units_spelled_otherwise_append_and_the_store_keeps_its_own(tmp_path: Path) -> None:
    # Refused as other units ("convert the piece") though they are the same.
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    for start, units in (("2001-01-11", "degree_Celsius"), ("2001-01-14", "celsius")):
        append_zarr(days(start, 3, units=units), store)
    got = xr.open_zarr(store)
    assert got.sizes["time"] == 16 and got["reach_temp_pred"].attrs["units"] == "degC"
    xr.testing.assert_equal(got["reach_temp_pred"].isel(time=slice(10, None)).load(),
                            days("2001-01-11", 6))


@pytest.mark.parametrize("dim", ["reach", None, 1, ""])
def test_appending_along_anything_but_time_is_refused(tmp_path: Path, dim: object) -> None:
    # dim="reach" failed deep in the day checks with a TypeError; None and 1 in zarr.
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    before = _tree(store)
    if dim == "reach":
        with pytest.raises(DataError, match=r"the store's 'reach' holds int64 labels, not times: "
                                            r"append_zarr appends time steps .*to_zarr\(region=...\)"):
            append_zarr(days("2001-01-11", 3, reaches=[14, 15]), store, dim="reach")
    else:
        with pytest.raises(ParameterError, match="dim must name the store's time dimension"):
            append_zarr(days("2001-01-11", 3), store, dim=dim)  # type: ignore[arg-type]
    assert _tree(store) == before


def test_bad_paths_and_objects_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="is not an existing zarr store; write the first piece"):
        append_zarr(days("2001-01-01", 3), tmp_path / "none.zarr")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ParameterError, match="is not an existing zarr store"):
        append_zarr(days("2001-01-01", 3), tmp_path / "folder")
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    with pytest.raises(ParameterError, match="has none; give it one"):
        append_zarr(days("2001-01-11", 3).rename(None), store)
    with pytest.raises(ParameterError, match="reads from it|were read from it"):
        append_zarr(xr.open_zarr(store), store)


def _failing_piece() -> xr.DataArray:
    """Seven days whose last chunk fails when computed, after the first ones are written."""
    piece = days("2001-01-11", 7).chunk({"time": (2, 4, 1)})

    def boom(block: np.ndarray) -> np.ndarray:
        raise RuntimeError("a chunk could not be read")

    bad = da.map_blocks(boom, piece.data[:, 6:], dtype="float32")
    return piece.copy(data=da.concatenate([piece.data[:, :6], bad], axis=1))


def test_a_failed_append_is_undone(tmp_path: Path) -> None:
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    before = xr.open_zarr(store).load()
    with pytest.raises(RuntimeError, match="could not be read"):
        append_zarr(_failing_piece(), store)
    after = xr.open_zarr(store)
    xr.testing.assert_identical(after.load(), before)  # the variables' history included
    assert "xmsgl_append_unfinished" not in after.time.attrs
    # and the store takes the same days again
    append_zarr(days("2001-01-11", 7), store)
    np.testing.assert_array_equal(xr.open_zarr(store).reach_temp_pred.values, days("2001-01-01", 17).values)


def test_an_append_whose_process_was_killed_is_cut_off_by_the_next(tmp_path: Path) -> None:
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    # As a killed append leaves it: the mark, then the days written, the attributes replaced.
    group = open_group(store, mode="r+")
    lengths = {"reach_temp_pred": [3, 10], "time": [10], "time_bnds": [10, 2]}
    group["time"].attrs["xmsgl_append_unfinished"] = json.dumps(
        {"lengths": lengths, "attrs": dict(group.attrs), "consolidated": True,
         "histories": {"reach_temp_pred": "run 2001-01-01"}})
    group["reach_temp_pred"].attrs["history"] = "run 2001-01-01\nthe killed append's line"
    killed = days("2001-01-11", 3, value=-99.0).to_dataset().pipe(daily_time_bounds)
    killed.attrs = {"history": "the killed piece's"}
    killed.to_zarr(store, append_dim="time", consolidated=False)
    assert open_group(store)["time"].shape == (13,)
    with pytest.warns(XmsglWarning, match=r"an earlier append to this store did not finish .* its 3 time "
                                          r"steps were cut off, leaving the store's 10"):
        append_zarr(days("2001-01-11", 7), store)
    out = xr.open_zarr(store, consolidated=True)  # consolidated again
    np.testing.assert_array_equal(out.reach_temp_pred.values, days("2001-01-01", 17).values)
    assert "xmsgl_append_unfinished" not in out.time.attrs
    assert out.attrs["history"].splitlines()[0] == "written" and out.attrs["title"] == "t"
    # The killed append's line left the variable's history with its days.
    told = out.reach_temp_pred.attrs["history"].splitlines()
    assert told[0] == "run 2001-01-01" and "killed" not in told[-1] and len(told) == 2


def test_a_second_append_at_once_is_refused(tmp_path: Path) -> None:
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    fd = os.open(store, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ParameterError, match=r"another append \(in this process or another\) is writing to this store"):
            append_zarr(days("2001-01-11", 3), store)
    finally:
        os.close(fd)
    append_zarr(days("2001-01-11", 3), store)


def test_without_fcntl_the_store_is_locked_through_a_file_in_it(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Windows has no fcntl: two appends at once ran there, repeating days in the store
    # or undoing one that had said it was done. msvcrt's byte locks stand in for it;
    # here a stand-in msvcrt whose locks are held by file (as Windows holds them).
    import sys
    import types

    held: set[int] = set()

    def locking(fd: int, mode: int, nbytes: int) -> None:
        key = os.fstat(fd).st_ino
        if mode == 1:  # LK_NBLCK
            if key in held:
                raise OSError(36, "Resource deadlock avoided")
            held.add(key)
        else:
            held.discard(key)

    fake = types.ModuleType("msvcrt")
    fake.locking, fake.LK_NBLCK, fake.LK_UNLCK = locking, 1, 0  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fcntl", None)  # import fcntl fails, as on Windows
    monkeypatch.setitem(sys.modules, "msvcrt", fake)
    import xmsgl.io as io_module

    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    with io_module._append_lock(store):  # another append in progress
        with pytest.raises(ParameterError, match=r"another append \(in this process or another\) is writing to this store"):
            append_zarr(days("2001-01-11", 3), store)
    append_zarr(days("2001-01-11", 3), store)
    assert held == set() and xr.open_zarr(store).sizes["time"] == 13


def test_a_file_system_that_refuses_locks_is_said_and_the_append_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Some network mounts answer flock with ENOLCK: every append was refused as "another
    # process is appending", which waiting never ends.
    import errno

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.warns(XmsglWarning, match="refused a lock .*No locks available.*without one"):
        append_zarr(days("2001-01-11", 3), store)
    assert xr.open_zarr(store).sizes["time"] == 13


def test_downscaled_years_appended_match_the_pieces(half_year_basin: xr.Dataset, tmp_path: Path) -> None:
    """The CLI-like output of downscale (global attributes, bounds) grows month by month."""
    from xmsgl.model import fit

    model = fit(half_year_basin, method="fine-only", seed=0, **FAST_FIT)
    pieces = [half_year_basin.msgl.downscale(model, time=t, spinup=30)
              for t in (("2001-03-01", "2001-03-31"), ("2001-04-01", "2001-05-15"))]
    store = tmp_path / "pred.zarr"
    to_zarr_safe(daily_time_bounds(pieces[0].to_dataset()).chunk({"time": 20}), store)
    append_zarr(pieces[1], store)
    out = xr.open_zarr(store)
    xr.testing.assert_equal(out.reach_temp_pred.load(), xr.concat(pieces, "time").drop_vars(
        [c for c in pieces[0].coords if "time" not in pieces[0][c].dims and c != "reach"]))
    assert out.reach_temp_pred.attrs["xmsgl_model_sha256"] == model.sha256


def test_an_append_killed_for_real_is_cut_off_by_the_next(tmp_path: Path) -> None:
    """SIGKILL in the middle of the write: the next append finds the days it left."""
    import signal
    import subprocess
    import sys
    import time

    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    flag = tmp_path / "writing"
    code = f"""
import time, dask, dask.array as da, numpy as np
from pathlib import Path
from tests.test_append import days
from xmsgl.io import append_zarr

def slow(block):
    if block.size:  # not dask's trial call on an empty block
        Path({str(flag)!r}).touch()
        time.sleep(60)
    return block

piece = days("2001-01-11", 9).chunk({{"time": 2}})
piece = piece.copy(data=da.concatenate([piece.data[:, :6], da.map_blocks(slow, piece.data[:, 6:], dtype='float32')], axis=1))
with dask.config.set(scheduler="synchronous"):
    append_zarr(piece, {str(store)!r})
"""
    child = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[1],
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        for _ in range(600):
            if flag.exists() or child.poll() is not None:
                break
            time.sleep(0.1)
        assert flag.exists(), "the child never reached its slow chunk"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    left = open_group(store)
    assert "xmsgl_append_unfinished" in left["time"].attrs and left["time"].shape[0] > 10
    with pytest.warns(XmsglWarning, match="did not finish"):
        append_zarr(days("2001-01-11", 9), store)
    out = xr.open_zarr(store, consolidated=True)
    np.testing.assert_array_equal(out.reach_temp_pred.values, days("2001-01-01", 19).values)
    assert out.attrs["title"] == "t"


def _noon(piece: xr.DataArray) -> xr.DataArray:
    return piece.assign_coords(time=piece.indexes["time"] + pd.Timedelta("12h"))


@pytest.mark.parametrize("make, error, match", [
    # Stamps the store's whole days cannot hold: xarray wrote them in hours, read as days.
    (lambda: _noon(days("2001-01-11", 3)), DataError, r"cannot be written exactly in the store .* units "
     r"'days since 2001-01-01.*\(e.g. 2001-01-11T12:00:00\)"),
    (lambda: days("2001-01-11", 3).convert_calendar("noleap"), DataError,
     r"calendar 'noleap' and the store .*'standard \(datetime64\)'; convert the piece"),
    (lambda: days("2001-01-11", 3).isel(time=slice(0, 0)), DataError, r"no 'time' step to append"),
    (lambda: days("2001-01-11", 3).assign_coords(doy=("time", [11, 12, 13])), DataError,
     r"not in the store \['doy'\]"),
])
def test_times_and_coordinates_the_store_cannot_take_are_refused(tmp_path: Path, make, error, match) -> None:
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    before = xr.open_zarr(store).load()
    with pytest.raises(error, match=match):
        append_zarr(make(), store)
    xr.testing.assert_identical(xr.open_zarr(store).load(), before)


def test_a_store_with_a_coordinate_along_time_needs_it_in_the_piece(tmp_path: Path) -> None:
    first = days("2001-01-01", 4).assign_coords(doy=("time", [1, 2, 3, 4]))
    to_zarr_safe(first.to_dataset(), tmp_path / "s.zarr")
    with pytest.raises(DataError, match=r"missing \['doy'\]"):
        append_zarr(days("2001-01-05", 2), tmp_path / "s.zarr")
    append_zarr(days("2001-01-05", 2).assign_coords(doy=("time", [5, 6])), tmp_path / "s.zarr")
    assert xr.open_zarr(tmp_path / "s.zarr").doy.values.tolist() == [1, 2, 3, 4, 5, 6]


def test_other_stores_bounds_shards_and_unlabelled_reaches(tmp_path: Path) -> None:
    # Bounds on ("time", "bnds"), as CDO writes them: the piece's are made on those names.
    d = days("2001-01-01", 10).to_dataset()
    d["time_bnds"] = (("time", "bnds"), np.stack([d.time.values, d.time.values + np.timedelta64(1, "D")], 1))
    d.time.attrs["bounds"] = "time_bnds"
    to_zarr_safe(d.chunk({"time": 4}), tmp_path / "cdo.zarr")
    append_zarr(days("2001-01-11", 3), tmp_path / "cdo.zarr")
    out = xr.open_zarr(tmp_path / "cdo.zarr")
    assert out.time_bnds.dims == ("time", "bnds") and pd.Timestamp(out.time_bnds.values[-1, 1]) == \
        pd.Timestamp("2001-01-14")
    # A sharded store (zarr format 3) is appended to shard by shard.
    sharded = daily_time_bounds(days("2001-01-01", 10).to_dataset())
    to_zarr_safe(sharded, tmp_path / "shard.zarr",
                 encoding={"reach_temp_pred": {"chunks": (1, 2), "shards": (3, 4)}})
    append_zarr(days("2001-01-11", 5), tmp_path / "shard.zarr")
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "shard.zarr").reach_temp_pred.values,
                                  days("2001-01-01", 15).values)
    # Reaches without labels: their number is compared.
    to_zarr_safe(days("2001-01-01", 3).drop_vars("reach").to_dataset(), tmp_path / "plain.zarr")
    with pytest.raises(DataError, match=r"has 4 'reach' in the piece and 3 in the store"):
        append_zarr(days("2001-01-04", 2, reaches=[1, 2, 3, 4]).drop_vars("reach"), tmp_path / "plain.zarr")


def test_gaps_warn_from_a_one_day_store_and_inside_the_piece(tmp_path: Path) -> None:
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 1))
    with pytest.warns(TimeGapWarning, match=r"leaves 29 time steps missing \(29 between 2001-01-01 and "
                                            r"2001-01-31\)"):
        append_zarr(days("2001-01-31", 2), store)
    inner = days("2001-02-02", 5).isel(time=[0, 1, 4])
    with pytest.warns(TimeGapWarning, match=r"leaves 2 time steps missing \(2 between 2001-02-03 and 2001-02-06\)"):
        append_zarr(inner, store)


def test_another_model_is_named_in_the_history(tmp_path: Path) -> None:
    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    append_zarr(days("2001-01-11", 3, model="f00d" * 16), store, same_model=False)
    assert "; reach_temp_pred by the model sha256=f00df00df00df00d" in xr.open_zarr(store).attrs["history"]
    bare = days("2001-01-01", 3)
    del bare.attrs["xmsgl_model_sha256"]
    to_zarr_safe(bare, tmp_path / "bare.zarr")
    with pytest.raises(ModelMismatchError, match=r"store .*'s by no model it names"):
        append_zarr(days("2001-01-04", 2), tmp_path / "bare.zarr")


def test_sigterm_undoes_an_append_as_ctrl_c_does(tmp_path: Path) -> None:
    import signal

    store = first_store(tmp_path / "s.zarr", days("2001-01-01", 10))
    before = xr.open_zarr(store).load()
    piece = days("2001-01-11", 7).chunk({"time": (2, 4, 1)})

    def term(block: np.ndarray) -> np.ndarray:
        if block.size:
            os.kill(os.getpid(), signal.SIGTERM)
        return block

    import dask

    lazy = piece.copy(data=da.concatenate([piece.data[:, :6], da.map_blocks(term, piece.data[:, 6:],
                                                                           dtype="float32")], axis=1))
    with dask.config.set(scheduler="synchronous"), pytest.raises(KeyboardInterrupt):
        append_zarr(lazy, store)
    xr.testing.assert_identical(xr.open_zarr(store).load(), before)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_days_beyond_2262_append_as_they_were_written(tmp_path: Path) -> None:
    # datetime64[s] stamps (docs/convention.md): xarray reads such a store back as
    # cftime by default, which was then refused as another calendar.
    if not hasattr(getattr(xr, "coders", None), "CFDatetimeCoder"):
        pytest.skip("this xarray decodes dates beyond 2262 as cftime only")

    def far(start: str, n: int) -> xr.DataArray:
        piece = days("2001-01-01", n)
        first = np.datetime64(start, "s")
        return piece.assign_coords(time=first + np.arange(n) * np.timedelta64(1, "D"))

    store = tmp_path / "s.zarr"
    ds = daily_time_bounds(far("2300-12-30", 3).to_dataset())
    ds.attrs = {"title": "t", "time_coverage_end": "2301-01-02"}
    to_zarr_safe(ds, store)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor xarray's note on the dates it cannot decode
        append_zarr(far("2301-01-02", 4), store)
    out = xr.open_zarr(store, decode_times=xr.coders.CFDatetimeCoder(time_unit="s"))
    assert [str(t)[:10] for t in out.time.values] == [
        "2300-12-30", "2300-12-31", "2301-01-01", "2301-01-02", "2301-01-03", "2301-01-04", "2301-01-05"]
    assert out.attrs["time_coverage_end"] == "2301-01-06T00:00:00"


def test_a_bare_dataarray_appended_moves_the_coverage_end(tmp_path: Path) -> None:
    # What downscale returns (no attributes of a file) is appended as the docs show.
    piece = days("2001-01-01", 5)
    store = tmp_path / "s.zarr"
    to_zarr_safe(output_dataset(piece, source="t"), store)
    assert xr.open_zarr(store).attrs["time_coverage_end"] == "2001-01-06T00:00:00"
    append_zarr(days("2001-01-06", 3), store)
    assert xr.open_zarr(store).attrs["time_coverage_end"] == "2001-01-09T00:00:00"
    # A store whose coverage was written as dates: both become instants.
    old = tmp_path / "old.zarr"
    to_zarr_safe(days("2001-01-01", 2).to_dataset().assign_attrs(
        time_coverage_start="2001-01-01", time_coverage_end="2001-01-03"), old)
    append_zarr(days("2001-01-03", 1), old)
    got = xr.open_zarr(old).attrs
    assert (got["time_coverage_start"], got["time_coverage_end"]) == ("2001-01-01T00:00:00", "2001-01-04T00:00:00")


def test_coverage_dates_have_four_digit_years() -> None:
    # ISO 8601 (ACDD): strftime wrote the year 100 as "100".
    piece = days("2001-01-01", 3)
    early = piece.assign_coords(time=np.datetime64("0100-10-01", "s") + np.arange(3) * np.timedelta64(1, "D"))
    out = output_dataset(early, source="t")
    assert (out.attrs["time_coverage_start"], out.attrs["time_coverage_end"]) == ("0100-10-01T00:00:00", "0100-10-04T00:00:00")


def test_cftime_days_beyond_2262_append_as_cftime(tmp_path: Path) -> None:
    # A piece of cftime dates is compared with the store's dates as cftime (reading
    # them in seconds, as for a datetime64 piece, refused it as another calendar).
    pytest.importorskip("cftime")
    t = xr.date_range("2300-01-01", periods=6, freq="D", calendar="standard", use_cftime=True)
    whole = days("2001-01-01", 6).assign_coords(time=t)
    store = tmp_path / "s.zarr"
    to_zarr_safe(daily_time_bounds(whole.isel(time=slice(0, 3)).to_dataset()), store)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Unable to decode time axis")  # xarray's, on reading
        append_zarr(whole.isel(time=slice(3, None)), store)
        out = xr.open_zarr(store)  # cftime, as xarray reads dates beyond 2262 by default
        assert [str(d)[:10] for d in out.time.values] == [str(d)[:10] for d in t.values]


def test_instants_compare_in_their_own_units() -> None:
    # Whole seconds and the rest of each: nanoseconds, where numpy promotes two units
    # to compare them, cannot hold a date beyond 2262.
    import cftime

    from xmsgl.io import _same_instants

    a = np.array(["2301-01-02", "2301-01-03T12:00:00.5", "NaT", "1700-03-01T00:00:00.25"],
                 dtype="datetime64[ms]")
    b = np.array(["2301-01-02", "2301-01-03T12:00:00.6", "NaT", "1700-03-01T00:00:00.25"],
                 dtype="datetime64[us]")
    assert _same_instants(a, a).tolist() == [True] * 4
    assert _same_instants(a, b).tolist() == [True, False, True, True]
    assert _same_instants(a, a.astype("datetime64[s]")).tolist() == [True, False, True, False]
    c = np.array([cftime.DatetimeProlepticGregorian(2301, 1, 2),
                  cftime.DatetimeGregorian(2301, 1, 3, 12, 0, 0, 500000)], dtype=object)
    assert _same_instants(a[:2], c).tolist() == [True, True]
    far = np.datetime64("2301-01-02", "s")
    # 2**64 ns earlier (in 1716): the same number once far is wrapped around in nanoseconds.
    alias = np.datetime64(int(far.astype(np.int64)) * 10**9 - 2**64, "ns")
    assert str(alias)[:4] == "1716"
    assert not _same_instants(np.array([far]), np.array([alias]))[0]


def _piece(time: object, value: float = 1.0) -> xr.Dataset:
    n = len(time)  # type: ignore[arg-type]
    return xr.DataArray(np.full((2, n), value), coords={"reach": [7, 8], "time": time},
                        dims=("reach", "time"), name="t", attrs={"units": "degC"}).to_dataset()


def _tree(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("calendar", ["noleap", "360_day"])
def test_a_cftime_piece_at_noon_is_refused_by_a_store_of_whole_days(tmp_path: Path, calendar: str) -> None:
    # It was not checked: xarray wrote its numbers in hours under the store's "days since",
    # and the two days read back in March and April.
    import datetime

    import cftime

    def stamps(day: int, n: int, hour: int = 0) -> xr.CFTimeIndex:
        t0 = cftime.datetime(2001, 1, day, hour, calendar=calendar)
        return xr.CFTimeIndex([t0 + datetime.timedelta(days=i) for i in range(n)])

    store = tmp_path / "s.zarr"
    to_zarr_safe(_piece(stamps(1, 3)), store)
    assert xr.open_zarr(store).time.encoding["units"].startswith("days since")
    before = _tree(store)
    with pytest.raises(DataError, match=r"cannot be written exactly .*2001-01-04T12:00:00"):
        append_zarr(_piece(stamps(4, 2, hour=12)), store)
    assert _tree(store) == before
    append_zarr(_piece(stamps(4, 2)), store)
    back = xr.open_zarr(store).time.values
    assert [t.isoformat()[:10] for t in back] == [f"2001-01-0{d}" for d in range(1, 6)]


def test_a_piece_later_on_the_stores_last_day_is_refused(tmp_path: Path) -> None:
    # Stamps at noon in hours (as output_dataset writes them): 18:00 of the last day was
    # appended, and the store held that day twice with the same bounds.
    noon = pd.date_range("2001-01-01 12:00", periods=3, freq="D")
    store = tmp_path / "s.zarr"
    to_zarr_safe(daily_time_bounds(_piece(noon)), store)
    with pytest.raises(DataError, match=r"starts on 2001-01-03T18:00:00, not after the store's last day"):
        append_zarr(_piece(pd.DatetimeIndex(["2001-01-03 18:00", "2001-01-04 12:00"])), store)
    append_zarr(_piece(pd.DatetimeIndex(["2001-01-04 12:00"])), store)
    assert xr.open_zarr(store).sizes["time"] == 4


@pytest.mark.parametrize(("dtype", "start", "piece_times"), [
    ("int32", "2038-01-16", pd.date_range("2038-01-19", periods=3)),
    ("float32", "2001-01-01", pd.date_range("2001-01-04 00:00:01", periods=2)),
])
def test_times_the_stores_number_type_cannot_hold_are_refused(tmp_path: Path, dtype: str, start: str,
                                                              piece_times: pd.DatetimeIndex) -> None:
    # int32 seconds wrapped past 2038-01-19 (read back in 1901), float32 rounded 00:00:01
    # to midnight: both were appended without a word.
    store = tmp_path / "s.zarr"
    to_zarr_safe(_piece(pd.date_range(start, periods=3)), store,
                 encoding={"time": {"units": "seconds since 1970-01-01", "dtype": dtype}})
    before = _tree(store)
    with pytest.raises(DataError, match=rf"cannot be held by the store .*time numbers \({dtype} in"):
        append_zarr(_piece(piece_times), store)
    assert _tree(store) == before


def test_a_gap_across_the_nanosecond_range_is_counted(tmp_path: Path) -> None:
    # A store of 1600 (in seconds) and a piece of 1700 in nanoseconds: pandas took both
    # to nanoseconds to subtract them and raised OutOfBoundsDatetime.
    if not hasattr(getattr(xr, "coders", None), "CFDatetimeCoder"):
        pytest.skip("this xarray decodes dates before 1678 as cftime only")
    first = np.datetime64("1600-01-01", "s") + np.arange(3) * np.timedelta64(1, "D")
    store = tmp_path / "s.zarr"
    to_zarr_safe(daily_time_bounds(_piece(first)), store)
    piece = _piece(pd.DatetimeIndex(["1700-01-04", "1700-01-05"]).as_unit("ns"))
    with pytest.warns(TimeGapWarning, match="between 1600-01-03 and 1700-01-04"):
        append_zarr(piece, store)
    out = xr.open_zarr(store, decode_times=xr.coders.CFDatetimeCoder(time_unit="s"))
    assert [str(t)[:10] for t in out.time.values][-2:] == ["1700-01-04", "1700-01-05"]


def test_a_pieces_own_time_bounds_are_checked(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    to_zarr_safe(daily_time_bounds(_piece(pd.date_range("2001-01-01", periods=3))), store)
    assert xr.open_zarr(store)["time_bnds"].dims == ("time", "nv")
    before = _tree(store)

    def with_bounds(lower: pd.DatetimeIndex, dim: str = "nv") -> xr.Dataset:
        piece = _piece(pd.date_range("2001-01-04", periods=2))
        piece["time_bnds"] = (("time", dim), np.stack([lower.values, (lower + pd.Timedelta("1D")).values], 1))
        piece.time.attrs["bounds"] = "time_bnds"
        return piece

    # Ten days off their stamps: appended as they were.
    with pytest.raises(DataError, match=r"do not hold their 'time' stamps at 2 of 2 steps"):
        append_zarr(with_bounds(pd.date_range("2000-12-25", periods=2)), store)
    # At noon in a store of whole days: a bare ValueError of xarray's.
    with pytest.raises(DataError, match=r"time bounds 'time_bnds' cannot be written exactly"):
        append_zarr(with_bounds(pd.date_range("2001-01-03 12:00", periods=2)), store)
    assert _tree(store) == before
    # On a second dimension of another name: a bare ValueError of xarray's.
    append_zarr(with_bounds(pd.date_range("2001-01-04", periods=2), dim="bnds"), store)
    out = xr.open_zarr(store)
    assert out["time_bnds"].dims == ("time", "nv")
    assert str(out["time_bnds"].values[-1, 1])[:10] == "2001-01-06"


def test_refusals_name_missing_labels_and_the_exact_stamp(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    to_zarr_safe(_piece(pd.date_range("2001-01-01", periods=3)), store,
                 encoding={"time": {"units": "seconds since 1970-01-01", "dtype": "int64"}})
    nat = pd.DatetimeIndex(["2001-01-04", "NaT", "2001-01-06"])
    # It was told to sort the piece, which keeps the NaT.
    with pytest.raises(DataError, match=r"holds 1 missing label\(s\) \(NaT\)"):
        append_zarr(_piece(nat), store)
    # The stamp a millisecond past midnight was shown as midnight.
    with pytest.raises(DataError, match=r"e\.g\. 2001-01-04T00:00:00\.001\)"):
        append_zarr(_piece(pd.DatetimeIndex(["2001-01-04 00:00:00.001"])), store)


def test_cftime_instants_compare_by_calendar_and_fields() -> None:
    import datetime

    import cftime

    from xmsgl.io import _same_instants

    noleap = np.array([cftime.datetime(2001, 3, 1, calendar="noleap")], dtype=object)
    standard = np.array([cftime.datetime(2001, 3, 1, calendar="standard")], dtype=object)
    day_30 = np.array([cftime.datetime(2001, 2, 30, calendar="360_day")], dtype=object)
    assert _same_instants(noleap, noleap).tolist() == [True]
    # Two calendars by their fields, as xarray writes a date of another calendar.
    assert _same_instants(noleap, standard).tolist() == [True]
    assert _same_instants(noleap, standard + datetime.timedelta(hours=1)).tolist() == [False]
    # 30 February is itself, and no datetime64 (it raised ValueError).
    assert _same_instants(day_30, day_30).tolist() == [True]
    assert _same_instants(day_30, np.array(["2001-03-02"], dtype="datetime64[s]")).tolist() == [False]
    # Missing values: NaN among objects (it raised AttributeError), NaT.
    assert _same_instants(np.array([np.nan], dtype=object), np.array(["NaT"], dtype="datetime64[s]")).tolist() == [True]


@pytest.mark.parametrize("calendar", [None, "noleap"])
def test_an_hourly_store_continues_within_its_last_day(tmp_path: Path, calendar: str | None) -> None:
    # Days are compared whole only for stores of daily steps or longer: 06:00-11:00
    # after 00:00-05:00 of the same day was refused as repeating it.
    def hours(start: str, n: int) -> object:
        if calendar is None:
            return pd.date_range(start, periods=n, freq="h")
        return xr.date_range(start, periods=n, freq="h", calendar=calendar, use_cftime=True)

    store = tmp_path / "s.zarr"
    to_zarr_safe(_piece(hours("2001-01-01 00:00", 6)), store)
    append_zarr(_piece(hours("2001-01-01 06:00", 6)), store)
    assert xr.open_zarr(store).sizes["time"] == 12
    with pytest.raises(DataError, match="not after the store's last day"):
        append_zarr(_piece(hours("2001-01-01 11:00", 2)), store)


@pytest.mark.filterwarnings("ignore:saving variable None with floating point data")
def test_bounds_of_another_kind_than_the_times_append(tmp_path: Path) -> None:
    import cftime

    # Bounds held as numbers (not decoded): a bare UFuncTypeError.
    store = tmp_path / "a.zarr"
    to_zarr_safe(daily_time_bounds(_piece(pd.date_range("2001-01-01", periods=3))), store)
    piece = _piece(pd.date_range("2001-01-04", periods=3))
    piece["time_bnds"] = (("time", "nv"), np.array([[3.0, 4.0], [4.0, 5.0], [5.0, 6.0]]))
    piece.time.attrs["bounds"] = "time_bnds"
    append_zarr(piece, store)
    assert str(xr.open_zarr(store).time_bnds.values[-1, 1])[:10] == "2001-01-07"
    # convert_calendar("noleap") leaves the bounds datetime64: a bare TypeError of cftime's.
    store = tmp_path / "b.zarr"
    first = xr.date_range("2001-01-01", periods=3, calendar="noleap", use_cftime=True)
    to_zarr_safe(daily_time_bounds(_piece(first)), store)
    converted = daily_time_bounds(_piece(pd.date_range("2001-01-04", periods=3))).convert_calendar(
        "noleap", dim="time")
    assert converted.time_bnds.dtype.kind == "M"
    append_zarr(converted, store)
    assert xr.open_zarr(store).time_bnds.values[-1, 1] == cftime.datetime(2001, 1, 7, calendar="noleap")
    # and convert_calendar("standard") leaves noleap bounds: refused as "other times of day".
    store = tmp_path / "c.zarr"
    to_zarr_safe(daily_time_bounds(_piece(pd.date_range("2001-01-01", periods=3))), store)
    noleap = xr.date_range("2001-01-04", periods=3, calendar="noleap", use_cftime=True)
    src = xr.Dataset(coords={"time": noleap})
    src["time_bnds"] = (("time", "nv"), np.array([[t, t + datetime.timedelta(days=1)] for t in noleap],
                                                 dtype=object))
    conv = src.convert_calendar("standard", dim="time")
    piece = _piece(conv.indexes["time"])
    piece["time_bnds"] = conv.time_bnds
    piece.time.attrs["bounds"] = "time_bnds"
    append_zarr(piece, store)
    assert str(xr.open_zarr(store).time_bnds.values[-1, 1])[:10] == "2001-01-07"


def test_zoned_stamps_are_refused_with_the_fix_and_transposed_bounds_appended(tmp_path: Path) -> None:
    store = tmp_path / "s.zarr"
    to_zarr_safe(daily_time_bounds(_piece(pd.date_range("2001-01-01", periods=3))), store)

    # A piece stamped in a time zone: on a store without bounds it was refused as holding
    # "other times of day" (its stamps taken to UTC), on one with bounds told to fix a ``ds``.
    plain = tmp_path / "plain.zarr"
    to_zarr_safe(_piece(pd.date_range("2001-01-01", periods=3)), plain)
    for where in (plain, store):
        piece = _piece(pd.date_range("2001-01-04", periods=2, tz="America/New_York"))
        with pytest.raises(TimeError, match=r"time zone America/New_York\); .*piece = piece\.assign_coords"
                                            r"\(time=piece\.indexes\['time'\]\.tz_localize\(None\)\)"):
            append_zarr(piece, where)
    # Bounds on (nv, time), under another name: zarr's bare ValueError about chunks.
    bounded = daily_time_bounds(_piece(pd.date_range("2001-01-04", periods=2)))
    bounded = bounded.rename({"time_bnds": "time_bounds"}).rename_dims({"nv": "bnds"})
    bounded.time.attrs["bounds"] = "time_bounds"
    bounded["time_bounds"] = bounded["time_bounds"].transpose("bnds", "time")
    kept = bounded.copy(deep=True)
    append_zarr(bounded, store)
    xr.testing.assert_identical(bounded, kept)  # the caller's piece as it was
    # The store's name for the bounds' second dimension used for something else: refused,
    # naming the piece's own bounds (it named the store's).
    clash = _piece(pd.date_range("2001-01-06", periods=1)).assign_coords(nv=[0, 1, 2])
    clash["time_bounds"] = (("time", "bnds"), np.array([["2001-01-06", "2001-01-07"]], "datetime64[ns]"))
    clash.time.attrs["bounds"] = "time_bounds"
    with pytest.raises(DataError, match=r"the piece's time bounds 'time_bounds' are on \('time', 'bnds'\).*rename it"):
        append_zarr(clash, store)
    piece = _piece(pd.date_range("2001-01-06", periods=1, tz="UTC"))
    piece = piece.assign_coords(time=piece.indexes["time"].tz_localize(None))
    append_zarr(piece, store)
    out = xr.open_zarr(store)
    assert [str(t)[:10] for t in out.time.values] == [f"2001-01-0{d}" for d in range(1, 7)]
    assert str(out.time_bnds.values[-1, 1])[:10] == "2001-01-07"
