"""The Delaware River Basin loader: registry, fetching, bad input, and the real files.

Tests marked by the ``drb_raw_dir`` fixture run against the mirror files (CI has them)
and skip elsewhere; the bad-input tests build their own files in ``tmp_path`` and run
everywhere. Nothing here needs internet except the ``network`` tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import logging
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pooch
import pytest
import xarray as xr

import xmsgl
from xmsgl.convention import OUTLET, topology_arrays
from xmsgl.datasets import _readers, drb
from xmsgl.exceptions import DataError

N_SEG = 456
N_OUTLETS = 7
N_COMID = 3229
XWALK = "drb-network-prep/GFv1_NHDv2_xwalk.csv"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def drb_parsed_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One parsed-table cache for the whole test session (shared with the catalog test)."""
    return tmp_path_factory.getbasetemp() / "drb_parsed"


@pytest.fixture(scope="session")
def drb_mirror(drb_raw_dir: Path, drb_parsed_cache: Path) -> xr.Dataset:
    """The mirror dataset built once per session from the real files."""
    return drb.open_drb(folder=drb_raw_dir, cache=drb_parsed_cache, progress=False)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder, named by XMSGL_DATA_DIR, that cannot download (no retries)."""
    monkeypatch.setenv("XMSGL_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(drb.POOCH, "retry_if_failed", 0)
    return tmp_path


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every registry URL points at a closed local port: downloads fail at once."""
    for name in drb.POOCH.registry:
        monkeypatch.setitem(drb.POOCH.urls, name, f"http://127.0.0.1:9/{name}")
    monkeypatch.setattr(drb.POOCH, "retry_if_failed", 0)


# --------------------------------------------------------------------------------------
# registry


def test_registry_entries_have_pinned_urls() -> None:
    for name in drb.POOCH.registry:
        url = drb.POOCH.get_url(name)
        assert url.startswith("https://"), name
        if name in drb.MIRROR_FILES:
            parts = url.split("/")
            # https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<path>
            assert parts[2] == "raw.githubusercontent.com"
            assert len(parts[5]) == 40 and all(c in "0123456789abcdef" for c in parts[5]), url
            assert drb.POOCH.registry[name] is not None, f"mirror file {name} needs a sha256"
        else:
            assert drb.POOCH.registry[name] is None, "release hashes were not computed"
    assert set(drb.files_for("release")) - set(drb.POOCH.registry) == set()


def test_registry_hashes_match_mirror_files(drb_raw_dir: Path) -> None:
    for name in drb.MIRROR_FILES:
        path = drb_raw_dir / name
        assert path.is_file(), f"{name} missing from {drb_raw_dir}"
        assert _sha256(path) == drb.POOCH.registry[name], name


def test_fetch_unknown_name_is_refused() -> None:
    with pytest.raises(DataError, match="not in the xmsgl data registry"):
        drb.fetch("no/such/file.csv")


def test_unknown_source_is_refused() -> None:
    # A wrong argument value, not a wrong dataset: ParameterError, naming both sources.
    for call in (lambda: drb.open_drb(source="satellite"),  # type: ignore[arg-type]
                 lambda: drb.fetch_data("satellite"),  # type: ignore[arg-type]
                 lambda: drb.files_for("satellite")):  # type: ignore[arg-type]
        with pytest.raises(xmsgl.ParameterError, match="unknown source 'satellite'.*'mirror'.*'release'"):
            call()


# --------------------------------------------------------------------------------------
# the data folder: resolved at each call


def test_data_folder_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XMSGL_DATA_DIR", raising=False)
    assert drb.data_folder() == Path(pooch.os_cache("xmsgl")).absolute()
    monkeypatch.setenv("XMSGL_DATA_DIR", str(tmp_path / "env"))
    assert drb.data_folder() == drb.POOCH.path == drb.POOCH.abspath == tmp_path / "env"
    assert drb.data_folder(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert drb.data_folder("~/arg") == tmp_path / "arg"
    # A folder assigned to POOCH.path wins over the variable until None is assigned.
    try:
        drb.POOCH.path = tmp_path / "assigned"
        assert drb.data_folder() == tmp_path / "assigned"
    finally:
        drb.POOCH.path = None
    assert drb.data_folder() == tmp_path / "env"


def test_data_dir_set_after_import_is_used(
    drb_raw_dir: Path, drb_parsed_cache: Path, drb_mirror: xr.Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    # xmsgl is imported long before this test; the variable is read at each call.
    monkeypatch.delenv("XMSGL_DATA_DIR", raising=False)
    assert drb.POOCH.path != drb_raw_dir
    monkeypatch.setenv("XMSGL_DATA_DIR", str(drb_raw_dir))
    assert drb.POOCH.path == drb_raw_dir.absolute()
    assert drb.fetch(XWALK, progress=False) == drb_raw_dir.absolute() / XWALK
    ds = drb.open_drb(start="1980-07-01", end="1980-07-31", cache=drb_parsed_cache, progress=False)
    assert ds.sizes == {**drb_mirror.sizes, "time": 31}


def test_data_dir_set_after_import_in_a_fresh_process(drb_raw_dir: Path) -> None:
    # The order of a notebook: import, then set the variable.
    code = (
        "import os, xmsgl\n"
        "from xmsgl.datasets import drb\n"
        f"os.environ['XMSGL_DATA_DIR'] = {str(drb_raw_dir)!r}\n"
        "print(drb.POOCH.path)\n"
        "print(len(drb.fetch_data(progress=False)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "XMSGL_DATA_DIR"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(drb_raw_dir.absolute()), str(len(drb.MIRROR_FILES))]
    assert "Downloading" not in out.stderr


def test_folder_argument_wins_over_the_variable(
    drb_raw_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XMSGL_DATA_DIR", str(tmp_path))
    assert drb.fetch(XWALK, folder=drb_raw_dir, progress=False) == drb_raw_dir.absolute() / XWALK
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# bad input


def test_cached_file_with_wrong_hash_is_refused(cache: Path) -> None:
    target = cache / XWALK
    target.parent.mkdir(parents=True)
    target.write_text("PRMS_segid,segidnat\n1_1,1435\n")
    actual = _sha256(target)
    with pytest.raises(DataError) as info:
        drb.fetch(XWALK, progress=False)
    msg = str(info.value)
    assert XWALK in msg and actual in msg and drb.POOCH.registry[XWALK] in msg
    assert target.read_text().startswith("PRMS_segid"), "the file must not be replaced silently"


def test_fetch_data_tells_every_file_that_fails_at_once(cache: Path, offline: None) -> None:
    # It stopped at the first: with several damaged files the user found them one
    # rerun at a time.
    names = drb.files_for("mirror")
    first, second = names[0], names[3]
    for name in (first, second):
        (cache / name).parent.mkdir(parents=True, exist_ok=True)
        (cache / name).write_text("not the file")
    with pytest.raises(DataError) as info:
        drb.fetch_data(progress=False)
    msg = str(info.value)
    n = len(names)
    # The first missing file's download failed; it counts the other missing files,
    # whose downloads are not tried, and the damaged files follow.
    assert f"{n - 2} of the {n} files are missing" in msg
    assert msg.count("Downloading") == 0
    assert msg.endswith(f"Also in {str(cache)!r}, to delete and fetch again: "
                        f"{first!r} (not the registered version), {second!r} (not the registered version)")
    # One file missing is told in the singular; one problem is told alone.
    for name in names:
        (cache / name).parent.mkdir(parents=True, exist_ok=True)
        (cache / name).write_text("not the file")
    (cache / first).unlink()
    with pytest.raises(DataError) as info:
        drb.fetch_data(progress=False)
    assert f"1 of the {n} files is missing" in str(info.value)
    assert str(info.value).count(" (not the registered version)") == n - 1


def test_a_parsed_table_of_another_file_is_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A readable table under an entry's name (another file's, copied there) was read as
    # the entry and failed later with a bare KeyError.
    body = b"a,b\n1,2\n"
    source = tmp_path / "table.csv"
    source.write_bytes(body)
    name = "test-cache/table.csv"
    monkeypatch.setitem(drb.POOCH.registry, name, "sha256:" + hashlib.sha256(body).hexdigest())
    calls: list[Path] = []

    def parse(path: Path) -> pd.DataFrame:
        calls.append(path)
        return pd.read_csv(path)

    def read() -> pd.DataFrame:
        return drb._parsed(name, parse, tmp_path / "parsed", "t1", lambda n: source)

    assert read()["b"].tolist() == [2] and len(calls) == 1
    assert read()["b"].tolist() == [2] and len(calls) == 1  # from the cache
    (entry,) = (tmp_path / "parsed").iterdir()
    pd.DataFrame({"other": [0.5]}).to_parquet(entry)
    frame = read()
    assert frame["b"].tolist() == [2] and len(calls) == 2 and frame.attrs == {}
    assert read()["b"].tolist() == [2] and len(calls) == 2  # the entry was rewritten


def test_a_folder_where_the_file_belongs_is_named(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It went to the download, which failed to write and said to give a writable folder.
    monkeypatch.setitem(drb.POOCH.urls, XWALK, "http://127.0.0.1:9/GFv1_NHDv2_xwalk.csv")
    (cache / XWALK).mkdir(parents=True)
    with pytest.raises(DataError, match=r"is a folder where the data file .* belongs; remove or rename it"):
        drb.fetch(XWALK, progress=False)
    assert (cache / XWALK).is_dir()


def test_missing_file_offline_names_file_url_and_fix(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 9 on localhost refuses connections: a download failure without internet.
    monkeypatch.setitem(drb.POOCH.urls, XWALK, "http://127.0.0.1:9/GFv1_NHDv2_xwalk.csv")
    with pytest.raises(DataError) as info:
        drb.fetch(XWALK, progress=False)
    msg = str(info.value)
    assert XWALK in msg and "http://127.0.0.1:9/GFv1_NHDv2_xwalk.csv" in msg
    assert f"looked for in {str(cache)!r} (named by XMSGL_DATA_DIR)" in msg
    assert str(cache / XWALK) in msg
    assert "xmsgl fetch-data" in msg and "XMSGL_DATA_DIR" in msg
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_missing_file_without_data_dir_says_to_set_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None
) -> None:
    monkeypatch.delenv("XMSGL_DATA_DIR", raising=False)
    monkeypatch.setattr(pooch, "os_cache", lambda project: tmp_path / "user-cache" / project)
    with pytest.raises(DataError) as info:
        drb.open_drb(cache=False, progress=False)
    msg = str(info.value)
    assert "xmsgl's user cache; XMSGL_DATA_DIR is not set" in msg
    assert "set XMSGL_DATA_DIR to it" in msg and "xmsgl fetch-data" in msg
    assert not (tmp_path / "user-cache").exists()


def test_fetch_data_offline_says_where_it_looked_not_to_run_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offline: None
) -> None:
    # Someone who just ran `xmsgl fetch-data` is not told to run it again.
    monkeypatch.setenv("XMSGL_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError) as info:
        drb.fetch_data(progress=False)
    msg = str(info.value)
    n = len(drb.MIRROR_FILES)
    assert "fetch-data" not in msg
    assert f"looked for in {str(tmp_path)!r} (named by XMSGL_DATA_DIR)" in msg
    assert f"{n} of the {n} files are missing" in msg
    assert str(tmp_path / XWALK) in msg and "registry.txt" in msg
    assert "point XMSGL_DATA_DIR at a folder that holds them" in msg
    # With folder= the hint names the argument instead of the variable.
    with pytest.raises(DataError) as info:
        drb.fetch_data(folder=tmp_path / "given", progress=False)
    msg = str(info.value)
    assert "(given as folder=; that folder does not exist)" in msg
    assert "give folder= (`xmsgl fetch-data --folder`) a folder that holds them" in msg
    assert not (tmp_path / "given").exists()


@pytest.fixture
def pooch_records() -> Iterator[list[logging.LogRecord]]:
    """What pooch's logger emits (it does not propagate to the root logger)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    logger = pooch.get_logger()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("progress", [False, True, "option off", "option on"])
def test_pooch_log_line_only_with_progress(
    cache: Path, monkeypatch: pytest.MonkeyPatch, truncated_server: str,
    pooch_records: list[logging.LogRecord], progress: bool | str
) -> None:
    import xmsgl

    monkeypatch.setitem(drb.POOCH.urls, XWALK, truncated_server)
    filters = list(pooch.get_logger().filters)
    shown = progress == "option on" if isinstance(progress, str) else progress
    with pytest.raises(DataError):
        if isinstance(progress, str):
            # Left out, progress follows the option, as fit's does (it was always shown).
            with xmsgl.set_options(progress=shown):
                drb.fetch(XWALK)
        else:
            drb.fetch(XWALK, progress=progress)
    said = [r.getMessage() for r in pooch_records]
    assert any("Downloading" in m for m in said) is shown, said
    assert pooch.get_logger().filters == filters


@contextlib.contextmanager
def _serving(body: bytes) -> Iterator[str]:
    """A local HTTP server that answers every request with ``body``; yields its address."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def truncated_server() -> Iterator[str]:
    """A local HTTP server that answers every request with a few bytes."""
    with _serving(b"PRMS_segid,segidnat,comid_do") as address:
        yield f"{address}/GFv1_NHDv2_xwalk.csv"


def test_truncated_download_leaves_nothing_in_cache(
    cache: Path, monkeypatch: pytest.MonkeyPatch, truncated_server: str
) -> None:
    monkeypatch.setitem(drb.POOCH.urls, XWALK, truncated_server)
    with pytest.raises(DataError, match="does not match the registered sha256"):
        drb.fetch(XWALK, progress=False)
    assert [p for p in cache.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("reader", "suffix"),
    [
        (_readers.read_rds_frame, ".rds"),
        (_readers.read_rds_object, ".rds"),
        (_readers.open_netcdf, ".nc"),
        (_readers.read_feather, ".feather"),
    ],
)
def test_corrupt_file_gives_data_error_naming_it(tmp_path: Path, reader, suffix: str) -> None:
    bad = tmp_path / f"broken{suffix}"
    bad.write_bytes(b"\x1f\x8b\x08\x00truncated")
    with pytest.raises(DataError, match="broken") as info:
        reader(bad)
    assert "fetch it again" in str(info.value)


def test_zip_member_outside_folder_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr("../escaped.txt", "outside")
    dest = tmp_path / "cache" / "evil"
    with pytest.raises(DataError, match="outside the folder"):
        _readers.extract_zip(archive, dest)
    assert not (tmp_path / "cache" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert not dest.exists() or not any(dest.iterdir())


def test_zip_absolute_member_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "abs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("/tmp/xmsgl_abs_member.txt", "outside")
    with pytest.raises(DataError, match="outside the folder"):
        _readers.extract_zip(archive, tmp_path / "out")


def test_truncated_zip_leaves_nothing_half_extracted(tmp_path: Path) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.csv", "x\n" * 50_000)
    archive.write_bytes(archive.read_bytes()[:200])
    dest = tmp_path / "data"
    with pytest.raises(DataError, match="zip"):
        _readers.extract_zip(archive, dest)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["data.zip"]


def test_zip_extracts_inside_folder(tmp_path: Path) -> None:
    archive = tmp_path / "good.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("sub/a.csv", "a\n1\n")
    out = _readers.extract_zip(archive, tmp_path / "good")
    assert out == [tmp_path / "good" / "sub" / "a.csv"]
    assert out[0].read_text() == "a\n1\n"


def test_period_outside_forcings_is_refused(drb_raw_dir: Path, drb_parsed_cache: Path) -> None:
    with pytest.raises(DataError, match="1979-01-01..1980-12-31"):
        drb.open_drb(start="1985-01-01", end="1985-12-31", folder=drb_raw_dir, cache=drb_parsed_cache,
                     progress=False)


def test_period_outside_the_mirror_is_refused_before_any_file_is_read(tmp_path: Path) -> None:
    # An empty folder: the period is the first thing said, not a missing file.
    with pytest.raises(DataError, match=r"start=1985-01-01 is outside the forcings of this source"):
        drb.open_drb(start="1985-01-01", folder=tmp_path, cache=tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


# --------------------------------------------------------------------------------------
# the real network


def test_mirror_passes_validation(drb_mirror: xr.Dataset) -> None:
    xmsgl.validate(drb_mirror)
    for name, da in drb_mirror.data_vars.items():
        assert "source" in da.attrs, name
        # Quantities have units; ids and flags (integers and booleans) have none, as in CF.
        is_quantity = np.issubdtype(da.dtype, np.floating)
        assert ("units" in da.attrs) == is_quantity, (name, da.dtype, da.attrs.get("units"))
    # docs/data.md: every data variable and coordinate has a source.
    for name, da in drb_mirror.coords.items():
        assert da.attrs.get("source"), name
    assert "approximations" in drb_mirror.attrs
    # What to cite: every file read, by its pinned public address (carried to outputs).
    from xmsgl.datasets import drb

    cited = drb_mirror.attrs["references"]
    assert all(drb.POOCH.get_url(n) in cited for n in drb.files_for("mirror"))
    assert "raw.githubusercontent.com/jholbrook64/drb-trends/" in cited
    assert (drb_mirror["seg_id_nat"].values == drb_mirror["seg"].values).all()
    assert (drb_mirror["COMID"].values == drb_mirror["reach"].values).all()


def test_mirror_says_cf_names_of_its_forcings(drb_mirror: xr.Dataset) -> None:
    assert drb_mirror.attrs["Conventions"] == "CF-1.11"
    for scale in ("seg", "reach"):
        tmax, tmin = drb_mirror[f"{scale}_tmax_air"].attrs, drb_mirror[f"{scale}_tmin_air"].attrs
        assert tmax["standard_name"] == tmin["standard_name"] == "air_temperature"
        assert (tmax["cell_methods"], tmin["cell_methods"]) == ("time: maximum", "time: minimum")
        # (tmax + tmin) / 2 is not a mean over the day: no cell method is claimed.
        assert "cell_methods" not in drb_mirror[f"{scale}_tave_air"].attrs
        # Nor does its name say "daily mean", as it did.
        assert drb_mirror[f"{scale}_tave_air"].attrs["long_name"].startswith(
            "mean of the daily maximum and minimum air temperature")
        assert drb_mirror[f"{scale}_prcp"].attrs["standard_name"] == "lwe_precipitation_rate"
        # Water temperature is given no standard name (sea_water_temperature would be wrong).
        assert "standard_name" not in drb_mirror[f"{scale}_temp"].attrs
    assert drb_mirror["seg_lat"].attrs["standard_name"] == "latitude"


def test_segments_outlets_acyclic(drb_mirror: xr.Dataset) -> None:
    topo = topology_arrays(drb_mirror)  # raises on cycles
    assert topo.n_seg == N_SEG
    assert int((topo.seg_to == OUTLET).sum()) == N_OUTLETS
    differs = drb_mirror["seg"].values[drb_mirror["seg_to"].values != drb_mirror["seg_to_nhm"].values]
    assert differs.tolist() == [1791]


def test_segment_topology_matches_derived_table(drb_mirror: xr.Dataset, drb_raw_dir: Path) -> None:
    derived = drb_raw_dir.parent / "derived" / "nhm_seg_downstream.csv"
    if not derived.is_file():
        pytest.skip(f"{derived} not present")
    table = pd.read_csv(derived)
    assert len(table) == N_SEG


def test_crosswalk_comids_each_in_one_segment(drb_mirror: xr.Dataset, drb_raw_dir: Path) -> None:
    xw = pd.read_csv(drb_raw_dir / XWALK, dtype={"comid_seg": str})
    expected = {int(c): int(s) for s, lst in zip(xw["segidnat"], xw["comid_seg"]) for c in lst.split(";")}
    assert len(expected) == N_COMID
    got = dict(zip(drb_mirror["reach"].values.tolist(), drb_mirror["reach_seg"].values.tolist()))
    assert got == expected
    # Each segment's outlet reach is the crosswalk's downstream-end COMID.
    topo = topology_arrays(drb_mirror)
    outlet_comid = topo.reach_ids[topo.seg_outlet_reach_idx]
    down = xw[~xw["PRMS_segid"].isin(["3_1", "8_1", "51_1"])].set_index("segidnat")["comid_down"]
    assert dict(zip(topo.seg_ids.tolist(), outlet_comid.tolist())) == down.to_dict()


def test_reach_topology_flags(drb_mirror: xr.Dataset) -> None:
    flag = drb_mirror["reach_topology_source"]
    assert set(np.unique(flag.values)) <= set(flag.attrs["flag_values"].tolist())
    assert len(flag.attrs["flag_meanings"].split()) == len(flag.attrs["flag_values"])
    assert int((flag == 1).sum()) > 800  # the RouteLink-covered reaches
    # The true/false flags name their values too (they had neither attribute).
    for name in ("seg_has_hru", "seg_in_space_holdout", "in_time_holdout"):
        yes_no = drb_mirror[name]
        assert yes_no.dtype == bool and yes_no.attrs["flag_values"].tolist() == [0, 1], name
        assert yes_no.attrs["flag_meanings"].split()[1] in name


def test_tributaries_of_split_segments_enter_the_lower_piece(drb_mirror: xr.Dataset,
                                                             drb_raw_dir: Path) -> None:
    """Three segments are split in two subsegments where a tributary joins. The tributary's
    outlet reach flows into the lower piece (it was sent to the head of the whole segment,
    above the upper piece, 15-17 km upstream of the confluence), the upper piece flows
    into the lower from its own downstream end, and the main stem above enters the upper
    piece."""
    xw = pd.read_csv(drb_raw_dir / XWALK, dtype=str)
    comids = {r.PRMS_segid: {int(c) for c in r.comid_seg.split(";")} for r in xw.itertuples()}
    downs = dict(zip(xw["PRMS_segid"], xw["comid_down"]))
    to = drb_mirror.reach_to.to_series()
    seg_of = drb_mirror.reach_seg.to_series()
    entered = {}
    for upper, lower in (("3_1", "3_2"), ("8_1", "8_2"), ("51_1", "51_2")):
        seg = int(seg_of[next(iter(comids[lower]))])
        out_of_upper = {int(to[c]) for c in comids[upper]} - comids[upper]
        assert out_of_upper <= comids[lower], (upper, out_of_upper)
        # The upper piece ends at its own downstream-end COMID, as the crosswalk gives it
        # (in 3_1 and 8_1 the COMID order put it at the head, with others after it).
        leaving = {c for c in comids[upper] if int(to[c]) not in comids[upper]}
        assert leaving == {int(downs[upper])}, (upper, leaving)
        for c, t in to.items():
            if int(seg_of[c]) != seg and int(t) in comids[upper] | comids[lower]:
                entered[int(seg_of[c])] = "upper" if int(t) in comids[upper] else "lower"
    # Segment 1442 (subsegment 8_2), 1436 (2_1) and 1484 join at a split point; 1435 and
    # 1477 are the main stems above.
    assert entered == {1442: "lower", 1436: "lower", 1484: "lower", 1435: "upper", 1477: "upper"}


def test_forcings_complete_and_in_range(drb_mirror: xr.Dataset) -> None:
    assert drb_mirror.sizes["time"] == 731
    for name in ("seg_tmax_air", "seg_tmin_air", "seg_prcp", "reach_tave_air"):
        values = drb_mirror[name].values
        assert np.isfinite(values).all(), name
    assert float(drb_mirror["seg_tmax_air"].max()) < 45
    assert float(drb_mirror["seg_prcp"].min()) >= 0
    assert (drb_mirror["seg_tmax_air"] >= drb_mirror["seg_tmin_air"] - 1e-3).all()


def test_coarse_observation_counts_equal_raw_file(drb_mirror: xr.Dataset, drb_raw_dir: Path) -> None:
    pyreadr = pytest.importorskip("pyreadr")
    obs = pyreadr.read_r(str(drb_raw_dir / "drb-trends/obs_temp_drb.rds"))[None]
    xw = pd.read_csv(drb_raw_dir / XWALK)
    obs["seg"] = obs["subseg_id"].map(dict(zip(xw["PRMS_segid"], xw["segidnat"])))
    t = pd.DatetimeIndex(drb_mirror["time"].values)
    obs = obs[obs["mean_temp_c"].notna() & obs["date"].between(t[0], t[-1])]
    expected = obs.groupby("seg")["date"].nunique()
    got = drb_mirror["seg_temp"].count("time").to_series()
    got = got[got > 0]
    assert got.to_dict() == expected.to_dict()
    assert int(got.sum()) == 10962


def test_sites_stay_in_their_matched_segment(drb_mirror: xr.Dataset, drb_raw_dir: Path) -> None:
    reach_seg = dict(zip(drb_mirror["reach"].values.tolist(), drb_mirror["reach_seg"].values.tolist()))
    placed_seg = [reach_seg[c] for c in drb_mirror["site_comid"].values.tolist()]
    assert placed_seg == drb_mirror["site_seg"].values.tolist()
    derived = drb_raw_dir.parent / "derived" / "monitoring_sites_nhm_match.csv"
    if derived.is_file():  # an independent reading of the site match
        match = pd.read_csv(derived).drop_duplicates("site_id")
        xw = pd.read_csv(drb_raw_dir / XWALK)
        seg_of = match.set_index("site_id")["subseg_id"].map(dict(zip(xw["PRMS_segid"], xw["segidnat"])))
        sites = drb_mirror["site_id"].values.tolist()
        assert seg_of.reindex(sites).tolist() == drb_mirror["site_seg"].values.tolist()


def test_fine_observations_come_from_placed_sites(drb_mirror: xr.Dataset) -> None:
    reach_obs = drb_mirror["reach_temp"].count("time")
    with_obs = set(drb_mirror["reach"].values[reach_obs.values > 0].tolist())
    assert with_obs <= set(drb_mirror["site_comid"].values.tolist())
    assert int(reach_obs.sum()) > 5000
    # Fine observations lie where the segment has observations on most days.
    seg_obs = drb_mirror["seg_temp"].notnull()
    reach_has = drb_mirror["reach_temp"].notnull()
    parent = seg_obs.sel(seg=drb_mirror["reach_seg"]).drop_vars(["seg", "seg_id_nat"])
    agree = float((parent.values & reach_has.values).sum() / reach_has.values.sum())
    assert agree > 0.9


def test_graphs_build_on_real_network(drb_mirror: xr.Dataset) -> None:
    pytest.importorskip("torch")
    graphs = drb_mirror.msgl.graphs()
    assert graphs is not None


@pytest.mark.network
def test_release_source_opens() -> None:  # pragma: no cover - needs internet
    ds = drb.open_drb(source="release", start="2010-01-01", end="2010-12-31")
    xmsgl.validate(ds)
    assert ds.sizes["seg"] == N_SEG


# --------------------------------------------------------------------------------------
# arguments: folders, cache paths and periods (checked before any file is read)


def test_failed_download_removes_the_folders_it_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    monkeypatch.setenv("XMSGL_DATA_DIR", str(data))
    monkeypatch.setattr(drb.POOCH, "retry_if_failed", 0)
    monkeypatch.setitem(drb.POOCH.urls, XWALK, "http://127.0.0.1:9/GFv1_NHDv2_xwalk.csv")
    with pytest.raises(DataError, match="could not be downloaded"):
        drb.fetch(XWALK, progress=False)
    assert list(tmp_path.iterdir()) == []
    # A folder that was there before stays, with what it held.
    (data / "keep").mkdir(parents=True)
    with pytest.raises(DataError, match="could not be downloaded"):
        drb.fetch(XWALK, progress=False)
    assert sorted(p.name for p in data.iterdir()) == ["keep"]


def test_folder_below_a_file_names_the_folder_argument(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("a file")
    with pytest.raises(xmsgl.ParameterError, match="afile' is a file, not a folder") as info:
        drb.fetch_data(folder=tmp_path / "afile" / "sub", progress=False)
    assert "folder=" in str(info.value) and "XMSGL_DATA_DIR" not in str(info.value)
    below = tmp_path / "afile" / "sub"
    with pytest.raises(xmsgl.ParameterError, match="afile' is a file, not a folder"):
        drb.fetch(XWALK, folder=below, progress=False)
    with pytest.raises(xmsgl.ParameterError, match="afile' is a file, not a folder"):
        drb.open_drb(folder=below, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_unwritable_folder_names_the_way_it_was_chosen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: str) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(pooch.core, "make_local_storage", refuse)
    # The file is missing too: both are said, a folder that holds it first (offline,
    # a writable folder alone, as the message once advised, holds no file either).
    with pytest.raises(DataError, match="is missing from the data folder .*which cannot be "
                                        "written.*cannot be downloaded") as info:
        drb.fetch(XWALK, folder=tmp_path, progress=False)
    assert "writable folder as folder=" in str(info.value) and "XMSGL_DATA_DIR" not in str(info.value)
    assert "if the files are in another folder, point folder= at it" in str(info.value)
    monkeypatch.setenv("XMSGL_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="set XMSGL_DATA_DIR to a writable folder"):
        drb.fetch(XWALK, progress=False)
    with pytest.raises(DataError, match=r"where \d+ of the \d+ files are missing"):
        drb.fetch_data(progress=False)


def test_a_folder_pooch_cannot_write_is_a_typed_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pooch itself words a read-only folder as a PermissionError without an errno: it
    # came out as a bare OSError "[Errno None] ..." with no folder to choose.
    def refuse_as_pooch_does(path: str) -> None:
        raise PermissionError(f"[Errno 13] Permission denied: '{path}/tmpab' | Pooch could not write "
                              f"to data cache folder '{path}'. Will not be able to download data files.")

    monkeypatch.setattr(pooch.core, "make_local_storage", refuse_as_pooch_does)
    monkeypatch.setenv("XMSGL_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="which cannot be written.*set XMSGL_DATA_DIR to a writable folder"):
        drb.fetch(XWALK, progress=False)


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_fetched_files_and_parsed_tables_follow_the_umask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          umask: int) -> None:
    # A folder fetched for a group (xmsgl fetch-data into a shared XMSGL_DATA_DIR) held
    # files of mode 0600, as did the parsed-table cache: readable by their owner alone.
    body = b"a,b\n1,2\n"
    name = "test-share/table.csv"
    monkeypatch.setitem(drb.POOCH.registry, name, "sha256:" + hashlib.sha256(body).hexdigest())
    moved: list[int] = []  # the mode pooch's file has as it is put in place
    real_move = pooch.core.shutil.move
    monkeypatch.setattr(pooch.core.shutil, "move",
                        lambda src, dst: moved.append(os.stat(src).st_mode & 0o777) or real_move(src, dst))
    before = os.umask(umask)
    try:
        with _serving(body) as address:
            monkeypatch.setitem(drb.POOCH.urls, name, f"{address}/table.csv")
            got = drb.fetch(name, folder=tmp_path / "data", progress=False)
            frame = drb._parsed(name, lambda p: pd.read_csv(p), tmp_path / "parsed", "t1",
                                lambda n: drb.fetch(n, folder=tmp_path / "data", progress=False))
    finally:
        os.umask(before)
    assert got.read_bytes() == body and frame["b"].tolist() == [2]
    assert moved == [0o666 & ~umask] and got.stat().st_mode & 0o777 == 0o666 & ~umask
    (table,) = (tmp_path / "parsed").iterdir()
    assert table.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_data_folder_that_is_a_file_is_a_typed_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # XMSGL_DATA_DIR (or POOCH.path) naming a file, or a folder below one, gave a bare
    # NotADirectoryError; folder= was already checked.
    afile = tmp_path / "afile"
    afile.write_text("a file")
    for named, says in ((afile, "is a file, not a folder"), (afile / "sub", "lies below the file")):
        monkeypatch.setenv("XMSGL_DATA_DIR", str(named))
        for call in (lambda: drb.fetch(XWALK, progress=False), lambda: drb.fetch_data(progress=False),
                     lambda: drb.open_drb(progress=False)):
            with pytest.raises(DataError, match=f"named by XMSGL_DATA_DIR\\) {says}.*set XMSGL_DATA_DIR"):
                call()
    # A file where the registry's layout needs a folder.
    monkeypatch.delenv("XMSGL_DATA_DIR")
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / XWALK.split("/")[0]).write_text("in the way")
    with pytest.raises(DataError, match="a file stands where a folder of its layout belongs"):
        drb.fetch(XWALK, folder=folder, progress=False)


def test_cache_folder_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert drb._cache_dir("~/parsed") == tmp_path / "parsed"
    assert drb._cache_dir(False) is None
    with pytest.raises(xmsgl.ParameterError, match="cache=3"):
        drb._cache_dir(3)


@pytest.mark.parametrize(
    ("start", "end", "match"),
    [
        ("garbage", None, "start='garbage' is not a date"),
        (None, "1980-13-45", "end='1980-13-45' is not a date"),
        ("1980-06-10", "1980-06-01", "ends before it starts"),
        (("1979", "1980"), None, "not a period"),
        ("1980-01-01T00:00-05:00", None, r"^start='1980-01-01T00:00-05:00' has a time zone"),
    ],
)
def test_bad_start_end_are_period_errors(start: object, end: object, match: str) -> None:
    with pytest.raises(xmsgl.PeriodError, match=match):
        drb.open_drb(start=start, end=end, progress=False)  # type: ignore[arg-type]


def test_day_labels_cover_their_days() -> None:
    assert drb._day("1980-06", "end", last=True) == pd.Timestamp("1980-06-30")
    assert drb._day("1980-06", "start", last=False) == pd.Timestamp("1980-06-01")
    times = drb._period(drb.MIRROR_PERIOD, drb._day("1980", "start", False), drb._day("1980", "end", True))
    assert (times[0], times[-1], len(times)) == (pd.Timestamp("1980-01-01"), pd.Timestamp("1980-12-31"), 366)


def test_start_end_take_dates_as_well_as_labels() -> None:
    # open_drb's signature takes datetime64 and Timestamp; they were refused as "not a date".
    assert drb._day(np.datetime64("1980-01-01"), "start", last=False) == pd.Timestamp("1980-01-01")
    assert drb._day(pd.Timestamp("1980-01-31 12:00"), "end", last=True) == pd.Timestamp("1980-01-31")
    with pytest.raises(xmsgl.PeriodError, match="time zone"):
        drb._day(pd.Timestamp("1980-01-01", tz="UTC"), "start", last=False)


def test_release_build_gives_segments_without_hrus_their_donors_attributes(
        drb_raw_dir: Path, drb_parsed_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The release's own files are not here: its two readers are replaced by stand-ins,
    # and the rest of the build (mirror parameters, attributes, observations) is real.
    # It used to mark every segment as having HRUs and left 40 segments' HRU
    # attributes NaN, so that fit refused the dataset.
    import pandas as pd

    def forcings(coarse, start, end, get):  # noqa: ANN001, ANN202
        times = pd.date_range("1980-01-01", "1980-03-31")
        n = coarse.seg_ids.size
        air = np.tile(np.linspace(0.0, 10.0, times.size, dtype=np.float32), (n, 1))
        return {"seg_tave_air": air, "seg_rain": 0 * air, "seginc_swrad": 100 + 0 * air,
                "seg_outflow": 5 + 0 * air, "seg_tave_water": 2 + 0.8 * air}, times, (7, 2)

    def enhd(comids, get):  # noqa: ANN001, ANN202
        return pd.DataFrame({k: pd.Series([], dtype=float) for k in
                             ("comid", "to", "length_m", "slope", "elevation_m", "width_m", "order_key")})

    monkeypatch.setattr(drb, "_release_forcings", forcings)
    monkeypatch.setattr(drb, "_enhd_table", enhd)
    ds = drb.open_drb(source="release", folder=drb_raw_dir, progress=False, cache=drb_parsed_cache)
    assert int((~ds.seg_has_hru).sum()) == 40
    for name, da in ds.data_vars.items():  # units on quantities only, as in the mirror
        assert ("units" in da.attrs) == (da.dtype.kind == "f"), (name, da.dtype)
    static = [v for v in ds.data_vars if ds[v].dims == ("seg",) and ds[v].dtype.kind == "f"]
    assert static and not any(bool(ds[v].isnull().any()) for v in static)
    assert (ds.seg_forcing_donor != ds.seg).sum() == 40
    # Their HRU attributes are the donor's, and their long names say so.
    assert all("seg_forcing_donor" in ds[f"seg_{c}"].attrs["long_name"] for c in drb._SEG_ATTR_COLUMNS)
    # What was approximated is said: the donors, the fill, the chain's order.
    approx = ds.attrs["approximations"]
    assert "40 segments without HRUs take HRU attributes" in approx
    assert "7 segment-days on 2 segments that PRMS-SNTemp marks dry" in approx
    assert "ENHD hydroseq order" in approx and "COMID order" not in approx
    # The release's seg_prcp is rain alone: it is not called precipitation.
    assert "standard_name" not in ds.seg_prcp.attrs and "standard_name" not in ds.reach_prcp.attrs
    assert ds.seg_swrad.attrs["standard_name"] == "surface_downwelling_shortwave_flux_in_air"
    assert ds.reach_outflow.attrs["cell_methods"] == "time: mean"


def test_release_forcings_are_read_from_the_zip_itself(tmp_path: Path) -> None:
    # The release's forcings on a stand-in archive of two segments: the table is read
    # from the zip (nothing is written beside it, the data folder may be read-only),
    # a replaced zip is what is read, and the dry-segment codes are filled (the frame's
    # values came back read-only, which stopped every release build).
    import types
    import zipfile

    import pandas as pd

    def write(air: float, twice: bool = False) -> Path:
        days = pd.date_range("1990-01-01", "1990-01-05")
        rows = [{"seg_id_nat": seg, "date": day.date(), "seg_tave_air": air, "seg_rain": 0.001,
                 "seginc_swrad": 120.0, "seg_outflow": 3.0,
                 "seg_tave_water": -98.9 if (seg, i) == (2, 1) else 4.0 + i}
                for seg in (1, 2) for i, day in enumerate(days)]
        if twice:
            rows.append({**rows[7], "seg_tave_air": air + 1})
        folder = tmp_path / "sciencebase" / "P9GD8I7A"
        folder.mkdir(parents=True, exist_ok=True)
        archive = folder / "sntemp_inputs_outputs_drb.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("sntemp_inputs_outputs_drb.csv", pd.DataFrame(rows).to_csv(index=False))
        return archive

    archive = write(10.0)
    coarse = types.SimpleNamespace(seg_ids=np.array([2, 1]))
    out, times, filled = drb._release_forcings(coarse, None, None, lambda name: archive)
    assert filled == (1, 1)
    assert len(times) == 5 and sorted(p.name for p in archive.parent.iterdir()) == [archive.name]
    np.testing.assert_allclose(out["seg_tave_air"], 10.0)
    np.testing.assert_allclose(out["seg_rain"], 1.0)  # m/day -> mm/day
    np.testing.assert_allclose(out["seg_tave_water"][0], [4.0, 5.0, 6.0, 7.0, 8.0])  # seg 2, filled
    archive = write(25.0)
    out, _, _ = drb._release_forcings(coarse, None, None, lambda name: archive)
    np.testing.assert_allclose(out["seg_tave_air"], 25.0)
    archive.write_bytes(b"not a zip")
    with pytest.raises(xmsgl.DataError, match="sntemp_inputs_outputs_drb.zip"):
        drb._release_forcings(coarse, None, None, lambda name: archive)
    # A segment-day given twice (the file is not hash-checked) stopped pandas' pivot
    # with a bare ValueError.
    archive = write(10.0, twice=True)
    with pytest.raises(xmsgl.DataError, match=r"2 rows for segment-days given more than once "
                                              r"\(first: segment 2 on 1990-01-03\)"):
        drb._release_forcings(coarse, None, None, lambda name: archive)


def test_release_files_include_what_the_release_build_reads() -> None:
    # The donors' HRU attributes come from two pywatershed parameter files, which a
    # release fetch left out.
    for name in (drb._F_CHANNEL, drb._F_HRU_PARAMS, drb._F_SNTEMP, drb._F_ENHD):
        assert name in drb.files_for("release")


def test_cache_below_a_file_is_refused_before_reading(tmp_path: Path) -> None:
    a_file = tmp_path / "f"
    a_file.write_text("x")
    for cache in (a_file, a_file / "sub"):
        with pytest.raises(xmsgl.ParameterError, match="is a file, not a folder"):
            drb._cache_dir(cache)
    assert drb._cache_dir(tmp_path / "new" / "cache") == tmp_path / "new" / "cache"


def test_pooch_fetch_checks_a_present_file_as_fetch_does(cache: Path, offline: None) -> None:
    # drb.POOCH.fetch, pooch's usual call, must not re-download over a file that
    # differs from the registry (nor fail offline with a raw requests error).
    target = cache / XWALK
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("not the crosswalk")
    for call in (lambda: drb.fetch(XWALK, progress=False), lambda: drb.POOCH.fetch(XWALK)):
        with pytest.raises(DataError, match="sha256"):
            call()
    assert target.read_text() == "not the crosswalk"
    with pytest.raises(xmsgl.exceptions.ParameterError, match="downloader"):
        drb.POOCH.fetch(XWALK, downloader=object())


def test_pooch_fetch_returns_the_checked_file(drb_raw_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMSGL_DATA_DIR", str(drb_raw_dir))
    assert drb.POOCH.fetch(XWALK) == str(drb_raw_dir / XWALK)
    assert drb.POOCH.fetch(XWALK, processor=lambda p, action, store: (p, action)) == (
        str(drb_raw_dir / XWALK), "fetch")


def test_routelink_slope_floor_is_not_a_reach_slope(drb_mirror: xr.Dataset) -> None:
    # RouteLink gives 1e-5 where the slope rounded to 0: the parent segment's is used.
    slope = drb_mirror["reach_slope"].values
    assert not np.isclose(slope, 1e-5).any()
    parent = drb_mirror["seg_slope"].sel(seg=drb_mirror["reach_seg"]).values
    n_parent = int(np.isclose(slope, parent).sum())
    floor = [a for a in drb_mirror.attrs["approximations"].split("; ") if "floor" in a]
    assert len(floor) == 1
    n_floor = int(floor[0].split("measurements: the ")[1].split(" reaches")[0])
    # The floored reaches are among those that take their segment's slope.
    assert 0 < n_floor <= n_parent and n_floor == 485


def test_an_out_of_range_release_period_does_not_advise_the_release() -> None:
    with pytest.raises(DataError, match=r"choose start/end inside them$") as err:
        drb._period(("1979-01-01", "1979-03-31"), pd.Timestamp("1978-12-01"), None, other="")
    assert "source='release'" not in str(err.value)
    # The bound given is named, not a reversed period made of it and the other end.
    for start, end, said in (("1981-06-01", None, "start=1981-06-01 is outside"),
                             (None, "1978-12-31", "end=1978-12-31 is outside")):
        with pytest.raises(DataError, match=said) as err:
            drb._period(drb.MIRROR_PERIOD, start and pd.Timestamp(start), end and pd.Timestamp(end))
        assert "1981-06-01..1980" not in str(err.value) and "1979-01-01..1978" not in str(err.value)
    with pytest.raises(DataError, match="or use source='release'"):
        drb._period(drb.MIRROR_PERIOD, pd.Timestamp("1970-01-01"), None)
