"""The Delaware River Basin (DRB) in the xmsgl convention, fetched through pooch.

The DRB is the basin of the multi-scale graph learning paper: 456 USGS National
Hydrologic Model (NHM) segments (``seg_id_nat``) and the 3,229 NHDPlusV2 flowlines
(``COMID``) that the USGS crosswalk places on them. :func:`open_drb` builds the
two-scale dataset from public files, each fetched by :data:`POOCH` and checked
against the sha256 in ``registry.txt``:

``source="mirror"`` (the default; works offline)
    Byte-identical public copies of USGS files pinned by commit on GitHub. They cover
    the whole network, its attributes and all observations, but forcings only for
    1979-1980 (NHM daily forcings of the hydrologic response units, HRUs).
``source="release"`` (needs internet)
    The USGS ScienceBase releases: PRMS-SNTemp inputs and outputs for every segment,
    1979-2022 (doi:10.5066/P9GD8I7A), and the Enhanced NHDPlusV2 flowline table
    (ENHD, doi:10.5066/P976XCVT) for the fine topology. Their hashes could not be
    computed offline, so they are not hash-checked.

Point the environment variable ``XMSGL_DATA_DIR`` at a folder holding the files
(laid out as the registry names them) to use it as the data folder, for example a
folder filled by ``xmsgl fetch-data`` on a machine with internet, or pass the folder
as ``folder=``. The variable is read at each call (see :func:`data_folder`), so it
may be set after ``import xmsgl``.

Every choice the builder makes (which network, how forcings reach segments without
HRUs, how reaches are ordered where no fine topology is known, how monitoring sites
are placed on reaches) is described in ``docs/data.md`` and recorded in the
dataset's attributes and in the ``source`` attribute of each variable and coordinate.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pooch
import xarray as xr

from xmsgl.convention import CF_CONVENTIONS, OUTLET
from xmsgl.datasets import _readers
from xmsgl.exceptions import (
    ChoiceError,
    DataError,
    DownloadError,
    ParameterError,
    PeriodError,
    SchemaError,
    check_flag,
    format_ids,
)
from xmsgl.io import give_new_file_mode, output_folder
from xmsgl.options import progress_or_option
from xmsgl.periods import period_bounds

__all__ = [
    "POOCH",
    "REGISTRY_FILE",
    "MIRROR_FILES",
    "RELEASE_FILES",
    "data_folder",
    "fetch",
    "fetch_data",
    "open_drb",
    "files_for",
]

REGISTRY_FILE = Path(__file__).with_name("registry.txt")


# Where a data folder came from; the error messages name the way to change it.
_Origin = Literal["folder", "POOCH.path", "XMSGL_DATA_DIR", "cache"]


class _DataPooch(pooch.Pooch):
    """A pooch whose folder is looked up at each use.

    ``pooch.create(env=...)`` reads the environment variable once, when the pooch is
    made, which is at ``import xmsgl``; a variable set afterwards (the usual order in
    a notebook) would be ignored. Here ``path`` follows ``XMSGL_DATA_DIR`` each time
    it is read, unless a folder is assigned to it (``None`` restores the lookup).
    """

    _assigned: Path | None = None

    @property  # type: ignore[override]
    def path(self) -> Path:
        return _resolve(None)[0]

    @path.setter
    def path(self, value: str | os.PathLike[str] | None) -> None:
        self._assigned = None if value is None else Path(value).expanduser()

    def fetch(self, fname: str, processor: Any = None, downloader: Any = None,
              progressbar: bool = False) -> str:
        """:func:`fetch` under pooch's own signature: a file already in the folder is
        hash-checked and refused (:class:`DataError`) if it differs, never downloaded
        over, and failures are :class:`DataError`. A ``processor`` is called as pooch
        calls it; ``downloader`` is refused (the downloads use the registry's URLs)."""
        if downloader is not None:
            raise ParameterError("xmsgl.datasets.drb.POOCH downloads with its own settings; "
                                 "call fetch without downloader=")
        path = str(_fetch(fname, _where(None), bool(progressbar)))
        return path if processor is None else processor(path, "fetch", self)


def _create_pooch() -> _DataPooch:
    store = _DataPooch(
        path=None,
        # Every entry carries its own URL (files live in several repositories and
        # releases), so the base URL is only pooch's fallback and is never used.
        base_url="https://raw.githubusercontent.com/",
        registry=None,
        retry_if_failed=3,
    )
    store.load_registry(REGISTRY_FILE)
    # pooch stores the literal "none" of files whose hash is unknown; None is what
    # makes pooch skip the check for them.
    registry: dict[str, Any] = store.registry
    for name, known in list(registry.items()):
        if known in ("none", "", None):
            registry[name] = None
    return store


#: The pooch that fetches and caches every file xmsgl reads for the DRB. Its ``path``
#: is :func:`data_folder` at the moment it is read.
POOCH: _DataPooch = _create_pooch()

_RELEASE_PREFIX = "sciencebase/"

#: Files read by ``open_drb(source="mirror")``.
MIRROR_FILES: tuple[str, ...] = tuple(n for n in POOCH.registry if not n.startswith(_RELEASE_PREFIX))

_F_XWALK = "drb-network-prep/GFv1_NHDv2_xwalk.csv"
_F_NETWORK = "drb-trends/network.rds"
_F_OBS = "drb-trends/obs_temp_drb.rds"
_F_SITE_OBS = "drb-trends/raw_drb_temp_data.rds"
_F_SITES = "drb-trends/crosswalk_site_reach.rds"
_F_SEG_ATTR = "drb-do-ml/seg_attr_drb.feather"
_F_SEG_PARAMS = "pywatershed_drb_2yr/parameters_dis_seg.nc"
_F_HRU_PARAMS = "pywatershed_drb_2yr/parameters_dis_hru.nc"
_F_CHANNEL = "pywatershed_drb_2yr/parameters_PRMSChannel.nc"
_F_TMAX = "pywatershed_drb_2yr/tmax.nc"
_F_TMIN = "pywatershed_drb_2yr/tmin.nc"
_F_PRCP = "pywatershed_drb_2yr/prcp.nc"
_F_ROUTELINK = ("t-route/conus_routeLink_subset.nc", "t-route/Pocono_TEST1/Route_Link.nc")
_F_NWIS = "preprocess_nwm_pgdl/nwis_comid.csv"
_F_SNTEMP = "sciencebase/P9GD8I7A/sntemp_inputs_outputs_drb.zip"
_F_ENHD = "sciencebase/P976XCVT/enhd_nhdplusatts.parquet"

#: ``*_tave_air`` is the mid-range of the day's extremes, as PRMS computes it, not a
#: mean over the day (which is why it has no cell method).
_TAVE_LONG_NAME = "mean of the daily maximum and minimum air temperature"

_SHARED = (_F_XWALK, _F_NETWORK, _F_OBS, _F_SITE_OBS, _F_SITES, _F_SEG_ATTR, _F_SEG_PARAMS, _F_NWIS)

#: Files read by ``open_drb(source="release")`` (release files plus the shared mirror
#: files, and the HRU parameters that give segments without HRUs their donors'
#: attributes).
RELEASE_FILES: tuple[str, ...] = (_F_SNTEMP, _F_ENHD, *_SHARED, _F_CHANNEL, _F_HRU_PARAMS)

Source = Literal["mirror", "release"]

#: Days covered by the mirror forcings (the NHM HRU forcings in pywatershed's test data).
MIRROR_PERIOD = ("1979-01-01", "1980-12-31")

# Topology provenance flags of ``reach_topology_source``.
_TOPO_FINE = 1
_TOPO_CHAIN = 2
# Site placement flags of ``site_mapping``.
_SITE_NWIS = 1
_SITE_DISTANCE = 2


# --------------------------------------------------------------------------------------
# fetching


def files_for(source: Source) -> tuple[str, ...]:
    """Registry names of the files that ``open_drb(source=...)`` reads.

    Examples
    --------
    >>> from xmsgl.datasets import drb
    >>> "drb-trends/obs_temp_drb.rds" in drb.files_for("mirror")
    True
    """
    if source == "mirror":
        return MIRROR_FILES
    if source == "release":
        return RELEASE_FILES
    raise ChoiceError(f"unknown source {source!r}; use 'mirror' (offline copies) or 'release' (USGS)")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _resolve(folder: str | os.PathLike[str] | None) -> tuple[Path, _Origin]:
    """The data folder (absolute, ``~`` expanded) and where it came from."""
    path: str | os.PathLike[str]
    origin: _Origin
    if folder is not None:
        path, origin = folder, "folder"
    elif POOCH._assigned is not None:
        path, origin = POOCH._assigned, "POOCH.path"
    elif os.environ.get("XMSGL_DATA_DIR"):
        path, origin = os.environ["XMSGL_DATA_DIR"], "XMSGL_DATA_DIR"
    else:
        path, origin = pooch.os_cache("xmsgl"), "cache"
    return Path(os.path.abspath(Path(path).expanduser())), origin


def data_folder(folder: str | os.PathLike[str] | None = None) -> Path:
    """The folder where the DRB files are looked for and downloaded to, now.

    The first of: ``folder`` when given; a folder assigned to ``POOCH.path``; the
    environment variable ``XMSGL_DATA_DIR`` (read at each call, so it may be set after
    ``import xmsgl``); xmsgl's user cache folder. :func:`fetch`, :func:`fetch_data`
    and :func:`open_drb` resolve their folder this way at each call.

    Examples
    --------
    >>> from xmsgl.datasets import drb
    >>> str(drb.data_folder("/data/drb"))
    '/data/drb'
    >>> drb.data_folder() == drb.POOCH.path  # XMSGL_DATA_DIR, or the user cache
    True
    """
    return _resolve(folder)[0]


@dataclass(frozen=True)
class _Where:
    """Where files are fetched to, and for whom: the error messages depend on both."""

    root: Path
    origin: _Origin
    #: The files that ``fetch_data`` was asked for (empty outside ``fetch_data``).
    batch: tuple[str, ...] = ()


def _where(folder: str | os.PathLike[str] | None, batch: tuple[str, ...] = ()) -> _Where:
    if folder is not None:
        output_folder(folder, "folder")
    root, origin = _resolve(folder)
    if origin != "folder":
        # The other origins name a folder as surely: a file there (or above it) is
        # told before anything is fetched, with the knob that chose it.
        blocked = next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), None)
        if blocked is not None:
            raise DataError(
                f"the data folder {str(root)!r} ({_ORIGIN_NOTE[origin]}) "
                + ("is a file" if blocked == root else f"lies below the file {str(blocked)!r}")
                + f", not a folder; {_FOLDER_FIX[origin]}")
    return _Where(root, origin, batch)


#: How to choose another data folder, by where the folder came from.
_FOLDER_FIX = {
    "folder": "give a writable folder as folder= (`xmsgl fetch-data --folder`)",
    "POOCH.path": "assign a writable folder to xmsgl.datasets.drb.POOCH.path",
    "XMSGL_DATA_DIR": "set XMSGL_DATA_DIR to a writable folder",
    "cache": "set XMSGL_DATA_DIR to a writable folder",
}


_ORIGIN_NOTE = {
    "folder": "given as folder=",
    "POOCH.path": "assigned to xmsgl.datasets.drb.POOCH.path",
    "XMSGL_DATA_DIR": "named by XMSGL_DATA_DIR",
    "cache": "xmsgl's user cache; XMSGL_DATA_DIR is not set",
}


def _missing_hint(name: str, where: _Where, existed: bool) -> str:
    """How to get ``name`` into the data folder when it cannot be downloaded here."""
    target = where.root / name
    note = "" if existed else "; that folder does not exist"
    if where.batch:
        # Called by fetch_data (`xmsgl fetch-data`): the user is already doing what a
        # generic hint would say, so say where the files were looked for instead.
        missing = [n for n in where.batch if not (where.root / n).is_file()]
        other = {
            "folder": "give folder= (`xmsgl fetch-data --folder`) a folder that holds them",
            "XMSGL_DATA_DIR": "point XMSGL_DATA_DIR at a folder that holds them",
        }.get(where.origin, "set XMSGL_DATA_DIR to a folder that holds them")
        return (
            f"the files were looked for in {str(where.root)!r} ({_ORIGIN_NOTE[where.origin]}{note}), "
            f"where {len(missing)} of the {len(where.batch)} files {'is' if len(missing) == 1 else 'are'} "
            f"missing; without internet "
            f"access, copy them there from a machine that has it, laid out as the registry names "
            f"them (this one as {str(target)!r}; each file's URL is in {str(REGISTRY_FILE)!r}), "
            f"or {other}"
        )
    if where.origin == "cache":
        return (
            f"the files were looked for in {str(where.root)!r} ({_ORIGIN_NOTE['cache']}); on a "
            f"machine with internet run `xmsgl fetch-data` (or xmsgl.datasets.drb.fetch({name!r})), "
            f"copy the folder here and set XMSGL_DATA_DIR to it (or pass it as folder=)"
        )
    knob = "folder=" if where.origin == "folder" else where.origin
    return (
        f"the files were looked for in {str(where.root)!r} ({_ORIGIN_NOTE[where.origin]}{note}), "
        f"where this one would be {str(target)!r}; if the files are in another folder, point "
        f"{knob} at it; otherwise run `xmsgl fetch-data` on a machine with internet and copy "
        f"its folder there"
    )


def fetch(name: str, *, folder: str | os.PathLike[str] | None = None,
          progress: bool | None = None) -> Path:
    """Return the local path of registry file ``name``, downloading it if needed.

    A file already in the data folder is hash-checked against the registry and
    refused if it differs: a pinned file never changes, so a different hash means a
    corrupt or foreign file, and silently replacing it would hide that. Downloads go
    to a temporary file that is moved into the folder only once its hash matches, so
    a failed or truncated download leaves nothing behind.

    Parameters
    ----------
    name : str
        A name from ``registry.txt``, for example ``"drb-trends/obs_temp_drb.rds"``.
    folder : path, optional
        The data folder. Default: :func:`data_folder` at the time of the call
        (``XMSGL_DATA_DIR`` when set, else xmsgl's user cache folder).
    progress : bool, optional
        Show a progress bar and pooch's log line while downloading; default the
        ``progress`` option (:func:`xmsgl.set_options`).

    Returns
    -------
    pathlib.Path
        The file in the data folder.

    Raises
    ------
    DataError
        When ``name`` is not registered, the file in the folder has the wrong hash,
        or the file is missing and cannot be downloaded (the message names the folder,
        the URL and how to get the file there).
    ParameterError
        When ``folder`` is a file or lies below one.
    """
    check_flag("progress", progress, none=True)
    progress = progress_or_option(progress)
    return _fetch(name, _where(folder), progress)


def _fetch(name: str, where: _Where, progress: bool) -> Path:
    registry: dict[str, Any] = POOCH.registry
    if name not in registry:
        raise DataError(
            f"{name!r} is not in the xmsgl data registry ({REGISTRY_FILE}); registered files "
            f"are {format_ids(sorted(registry), limit=4)}"
        )
    known = registry[name]
    url = POOCH.get_url(name)
    path = where.root / name
    if path.is_dir():
        # A download would fail to write there, and say the folder is not writable.
        raise DataError(
            f"{str(path)!r} is a folder where the data file {name!r} belongs; remove or rename "
            f"it, then fetch the file again (`xmsgl fetch-data`; source {url})"
        )
    if path.is_file():
        if known is None:
            return path
        actual = _sha256(path)
        if actual != known.split(":")[-1].lower():
            raise DataError(
                f"the file {name!r} at {str(path)!r} has sha256 {actual}, but the registry "
                f"expects {known}; it is corrupt or not the pinned version. Delete it and "
                f"fetch it again (`xmsgl fetch-data`; source {url}), or, where the folder is "
                f"not yours to change, point XMSGL_DATA_DIR at a folder that holds the "
                f"registered version"
            )
        return path
    # Folders are created for the file only: a failed fetch removes those it made.
    created = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
    try:
        return _download(name, url, known, where, where.root.is_dir(), progress)
    except BaseException:
        for folder in created:  # deepest first; one that holds anything else stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _warnings_only(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


@contextlib.contextmanager
def _pooch_log(progress: bool) -> Iterator[None]:
    """Without progress output, pooch's "Downloading file ..." line is left out too."""
    if progress:
        yield
        return
    # A filter rather than setLevel: pooch's logger is not registered with logging,
    # so a level change is cached by it and would outlive the call.
    logger = pooch.get_logger()
    logger.addFilter(_warnings_only)
    try:
        yield
    finally:
        logger.removeFilter(_warnings_only)


def _download(name: str, url: str, known: str | None, where: _Where, existed: bool,
              progress: bool) -> Path:
    """pooch's fetch of ``name`` into ``where``, with its failures as :class:`DataError`.

    A failed or corrupted download is a :class:`DownloadError`; a folder that cannot
    be written, a plain :class:`DataError`.
    """
    import requests  # pooch's own dependency; imported here to keep module import light

    # A pooch for this call only: POOCH's folder may change between calls, and two
    # threads fetching into different folders must not see each other's.
    store = pooch.Pooch(path=where.root, base_url=POOCH.base_url, registry=POOCH.registry,
                        retry_if_failed=POOCH.retry_if_failed)
    store.urls = POOCH.urls
    base = pooch.downloaders.choose_downloader(url, progressbar=progress)

    def download(url: str, output_file: Any, pup: Any) -> None:
        base(url, output_file, pup)
        # pooch's temporary file (mode 0600, its owner's alone) gets a new file's mode
        # before pooch moves it into place: a group sharing the folder reads it.
        if isinstance(output_file, (str, os.PathLike)):
            give_new_file_mode(output_file)

    try:
        with _pooch_log(progress):
            return Path(store.fetch(name, downloader=download, progressbar=progress))
    except requests.exceptions.RequestException as err:
        raise DownloadError(
            f"{name!r} is not in the data folder and could not be downloaded from {url} "
            f"({type(err).__name__}); {_missing_hint(name, where, existed)}"
        ) from err
    except ValueError as err:
        # pooch raises ValueError when a download's hash does not match; it has
        # already deleted the temporary file.
        raise DownloadError(
            f"the download of {name!r} from {url} does not match the registered sha256 "
            f"{known} and was discarded ({err}); try again later or report the changed file"
        ) from err
    except OSError as err:
        if err.errno == errno.ENOTDIR:
            # A file where the registry's layout needs a folder ('drb-trends' a file).
            raise DataError(
                f"could not write {name!r} into the data folder {str(where.root)!r} "
                f"({_ORIGIN_NOTE[where.origin]}): a file stands where a folder of its layout "
                f"belongs ({err}); move that file away, or {_FOLDER_FIX[where.origin]}") from err
        # pooch words a folder it cannot write as a PermissionError without an errno.
        denied = err.errno in (errno.EACCES, errno.EPERM, errno.EROFS) or (
            err.errno is None and isinstance(err, PermissionError))
        if not denied:
            # A full disk, a lost network drive...: the system failed a valid request
            # (the command exits 1 for an OSError), and another folder is not the fix.
            raise OSError(err.errno, f"could not write {name!r} into the data folder "
                                     f"{str(where.root)!r}: {err.strerror or err}") from err
        # The file is missing (else it would not be fetched) and cannot be downloaded
        # here: both are said, so that a folder that holds it is the first fix offered.
        raise DataError(
            f"{name!r} is missing from the data folder {str(where.root)!r}, which cannot be "
            f"written ({_ORIGIN_NOTE[where.origin]}; {type(err).__name__}: {err}), so it "
            f"cannot be downloaded ({url}) there; {_missing_hint(name, where, existed)}; or, "
            f"with internet access, {_FOLDER_FIX[where.origin]}"
        ) from err


def fetch_data(source: Source = "mirror", folder: str | os.PathLike[str] | None = None,
               *, progress: bool | None = None) -> list[Path]:
    """Download (or check) every file that ``open_drb(source=...)`` needs.

    This is what ``xmsgl fetch-data`` runs. Fetch on a machine with internet, copy the
    folder, and set ``XMSGL_DATA_DIR`` to it (or pass it as ``folder=``) to work
    offline.

    Parameters
    ----------
    source : {"mirror", "release"}, default "mirror"
        Which set of files.
    folder : path, optional
        Where to store them. Default: :func:`data_folder` at the time of the call
        (``XMSGL_DATA_DIR`` when set, else xmsgl's user cache folder).
    progress : bool, optional
        Show progress bars and pooch's log lines; default the ``progress`` option
        (:func:`xmsgl.set_options`).

    Returns
    -------
    list of pathlib.Path
        The local files, in registry order.

    Raises
    ------
    ParameterError
        When ``source`` is unknown, or ``folder`` is a file or lies below one.
    DataError
        When a file cannot be fetched (see :func:`fetch`); the message says where the
        files were looked for and how many are missing there.
    """
    check_flag("progress", progress, none=True)
    progress = progress_or_option(progress)
    names = files_for(source)
    where = _where(folder, batch=names)
    paths: list[Path] = []
    bad: list[tuple[str, DataError]] = []  # files here that fail their check
    download: DataError | None = None  # the first download that failed
    for name in names:
        here = (where.root / name).exists()
        if download is not None and not here:
            continue  # offline, most likely: the failed download's message counts these
        try:
            paths.append(_fetch(name, where, progress))
        except DataError as err:  # every file here is checked: all problems told at once
            if here:
                bad.append((name, err))
            else:
                download = err
    if download is None and not bad:
        return paths
    errors = [download] if download is not None else []
    errors += [err for _, err in bad]
    if len(errors) == 1:
        raise errors[0]
    others = [f"{n!r} ({'a folder' if (where.root / n).is_dir() else 'not the registered version'})"
              for n, err in bad if err is not errors[0]]
    raise DataError(
        f"{errors[0]} Also in {str(where.root)!r}, to delete and fetch again: {', '.join(others)}"
    ) from errors[0]


# --------------------------------------------------------------------------------------
# parsed-table cache


#: Fetches one registry file into the data folder an ``open_drb`` call resolved.
_Get = Callable[[str], Path]


def _default_cache_dir() -> Path:
    return Path(pooch.os_cache("xmsgl")) / "parsed"


def _parsed(name: str, parse: Callable[[Path], pd.DataFrame], cache_dir: Path | None,
            tag: str, get: _Get) -> pd.DataFrame:
    """Parse registry file ``name`` once and keep the result as parquet.

    R files take seconds to parse; their digested tables are tiny. The cache key is
    the registered sha256 (or size and mtime for unhashed files) plus ``tag``, which
    names the parser version, so a changed file or parser never reads a stale table.
    The cache lives apart from the data folder, which may be read-only and shared.
    """
    path = get(name)
    if cache_dir is None:
        return parse(path)
    known = POOCH.registry[name]
    stat = path.stat()
    key = known[:16] if known else f"{stat.st_size}-{int(stat.st_mtime)}"
    target = cache_dir / f"{name.replace('/', '__')}.{key}.{tag}.parquet"
    # Each entry records what it was parsed from: a table of another file (or an
    # older parser) put under this name is not trusted but rebuilt.
    label = f"{name}:{key}:{tag}"
    if target.is_file():
        with contextlib.suppress(Exception):  # an unreadable cache entry is rebuilt
            cached = pd.read_parquet(target)
            if cached.attrs.pop("xmsgl_parsed_from", None) == label:
                return cached
    frame = parse(path)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".tmp")
        os.close(fd)
        try:
            frame.attrs["xmsgl_parsed_from"] = label
            try:
                frame.to_parquet(tmp)
            finally:
                del frame.attrs["xmsgl_parsed_from"]
            give_new_file_mode(tmp)  # mkstemp's 0600: a group sharing the cache reads it
            os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    except (OSError, ImportError, ValueError):
        pass  # caching is an optimisation only
    return frame


# --------------------------------------------------------------------------------------
# parsers (each returns a small, typed table)


def _parse_xwalk(path: Path) -> pd.DataFrame:
    xw = _readers.read_csv(path, dtype={"PRMS_segid": str, "comid_seg": str, "comid_cat": str})
    need = {"PRMS_segid", "segidnat", "comid_down", "comid_seg"}
    _need_columns(xw, need, path)
    rows = []
    for sub, seg, down, lst in zip(xw["PRMS_segid"], xw["segidnat"], xw["comid_down"], xw["comid_seg"]):
        for c in str(lst).split(";"):
            rows.append((sub, int(seg), int(down), int(c)))
    return pd.DataFrame(rows, columns=["subseg_id", "seg_id_nat", "comid_down", "comid"])


def _parse_network(path: Path) -> pd.DataFrame:
    obj = _readers.read_rds_object(path)
    if not isinstance(obj, dict) or "edges" not in obj:
        raise DataError(f"{str(path)!r} does not hold the list(edges=, vertices=) of the NHM study network")
    edges = obj["edges"]
    _need_columns(edges, {"subseg_id", "to_subseg", "subseg_length"}, path)
    return pd.DataFrame({
        "subseg_id": edges["subseg_id"].astype(str).to_numpy(),
        "to_subseg": edges["to_subseg"].astype("string").fillna("").astype(str).to_numpy(),
        "subseg_length": edges["subseg_length"].astype(float).to_numpy(),
    })


def _parse_obs(path: Path) -> pd.DataFrame:
    obs = _readers.read_rds_frame(path)
    _need_columns(obs, {"subseg_id", "date", "mean_temp_c", "site_id", "in_time_holdout",
                        "in_space_holdout"}, path)
    return pd.DataFrame({
        "subseg_id": obs["subseg_id"].astype(str),
        "date": pd.to_datetime(obs["date"]).astype("datetime64[ns]"),
        "mean_temp_c": obs["mean_temp_c"].astype(float),
        "site_id": obs["site_id"].astype("string").fillna("").astype(str),
        "in_time_holdout": obs["in_time_holdout"].astype(bool),
        "in_space_holdout": obs["in_space_holdout"].astype(bool),
    })


def _parse_site_obs(path: Path) -> pd.DataFrame:
    raw = _readers.read_rds_frame(path)
    _need_columns(raw, {"site_id", "date", "mean_temp_degC"}, path)
    out = pd.DataFrame({
        "site_id": raw["site_id"].astype(str),
        "date": pd.to_datetime(raw["date"]).astype("datetime64[ns]"),
        "mean_temp_c": raw["mean_temp_degC"].astype(float),
    })
    return out[out["mean_temp_c"].notna()].reset_index(drop=True)


def _parse_sites(path: Path) -> pd.DataFrame:
    sites = _readers.read_rds_object(path)
    if not isinstance(sites, pd.DataFrame):
        raise DataError(f"{str(path)!r} does not hold the sf table of monitoring sites")
    _need_columns(sites, {"site_id", "subseg_id", "fish_dist_to_outlet_m", "bird_dist_to_subseg_m"}, path)
    out = pd.DataFrame({
        "site_id": sites["site_id"].astype(str).to_numpy(),
        "subseg_id": sites["subseg_id"].astype("string").fillna("").astype(str).to_numpy(),
        "fish_dist_to_outlet_m": sites["fish_dist_to_outlet_m"].astype(float).to_numpy(),
        "bird_dist_to_subseg_m": sites["bird_dist_to_subseg_m"].astype(float).to_numpy(),
    })
    # A site listed by several data providers appears once per provider with the
    # same match; keep one row per site.
    return out.drop_duplicates("site_id").reset_index(drop=True)


def _need_columns(frame: Any, need: Iterable[str], path: Path) -> None:
    cols = set(map(str, getattr(frame, "columns", [])))
    missing = sorted(set(need) - cols)
    if missing:
        raise SchemaError(
            f"file {str(path)!r} lacks column(s) {missing} (it has {sorted(cols)[:12]}); it is "
            f"not the registered version: delete it and fetch it again"
        )


# --------------------------------------------------------------------------------------
# coarse network


@dataclass
class _Coarse:
    seg_ids: np.ndarray          # sorted seg_id_nat
    seg_to: np.ndarray           # downstream seg_id_nat, OUTLET at outlets
    seg_length: np.ndarray       # m
    sub2seg: dict[str, int]      # subsegment id -> seg_id_nat
    sub_offset: dict[str, float]  # length of the segment below a subsegment's outlet, m
    entry_sub: dict[int, str]    # the downstream segment's subsegment a segment flows into


def _coarse_network(xw: pd.DataFrame, edges: pd.DataFrame) -> _Coarse:
    sub2seg = dict(zip(xw["subseg_id"], xw["seg_id_nat"].astype(int)))
    unknown = sorted(set(edges["subseg_id"]) - set(sub2seg))
    if unknown:
        raise DataError(
            f"{_F_NETWORK!r} names subsegments {format_ids(unknown)} that the crosswalk "
            f"{_F_XWALK!r} does not list; the two files are not the registered versions"
        )
    e = edges.assign(seg=edges["subseg_id"].map(sub2seg))
    to_seg = e["to_subseg"].map(lambda s: sub2seg.get(s, OUTLET) if s else OUTLET).astype(int)
    e = e.assign(to_seg=to_seg)
    leaving = e[e["to_seg"] != e["seg"]]
    per_seg = leaving.groupby("seg").size()
    if (per_seg != 1).any():
        bad = per_seg[per_seg != 1].index
        raise DataError(f"segments {format_ids(bad)} of {_F_NETWORK!r} have no single outlet subsegment")
    seg_to = leaving.set_index("seg")["to_seg"]
    seg_length = e.groupby("seg")["subseg_length"].sum()
    seg_ids = np.sort(seg_length.index.to_numpy().astype(np.int64))
    # Length of the part of the segment below each subsegment (non-zero only for the
    # upper piece of the three split segments): site distances are measured to the
    # subsegment's outlet and must be measured to the segment's.
    length = dict(zip(e["subseg_id"], e["subseg_length"]))
    nxt = dict(zip(e["subseg_id"], e["to_subseg"]))
    offset: dict[str, float] = {}
    for sub in e["subseg_id"]:
        total, cur = 0.0, nxt.get(sub, "")
        while cur and sub2seg.get(cur) == sub2seg[sub]:
            total += length[cur]
            cur = nxt.get(cur, "")
        offset[sub] = total
    return _Coarse(
        seg_ids=seg_ids,
        seg_to=seg_to.reindex(seg_ids).to_numpy().astype(np.int64),
        seg_length=seg_length.reindex(seg_ids).to_numpy().astype(np.float64),
        sub2seg=sub2seg,
        sub_offset=offset,
        entry_sub={int(g): str(t) for g, t in zip(leaving["seg"], leaving["to_subseg"])},
    )


def _upstream_map(seg_ids: np.ndarray, seg_to: np.ndarray) -> dict[int, list[int]]:
    up: dict[int, list[int]] = {int(s): [] for s in seg_ids}
    for s, t in zip(seg_ids, seg_to):
        if t != OUTLET:
            up[int(t)].append(int(s))
    return up


def _donors(seg_ids: np.ndarray, seg_to: np.ndarray, has_own: np.ndarray, rank: np.ndarray,
            fallback_to: np.ndarray) -> np.ndarray:
    """For each segment, the segment whose HRU values it takes.

    A segment with HRUs is its own donor. One without takes the nearest segment with
    HRUs upstream (fewest segments away; among equals the one with the highest
    ``rank``, the largest drainage, i.e. the main stem), else the first one
    downstream, as PRMS stream_temp does for segments with no HRU of their own.
    ``fallback_to`` (the NHM downstream pointers) is followed when the study network
    ends before a segment with HRUs is found.
    """
    pos = {int(s): i for i, s in enumerate(seg_ids)}
    up = _upstream_map(seg_ids, seg_to)
    donor = seg_ids.copy()
    for i, s in enumerate(seg_ids):
        if has_own[i]:
            continue
        found = None
        level = up[int(s)]
        seen = {int(s)}
        while level and found is None:
            cands = [u for u in level if has_own[pos[u]]]
            if cands:
                found = max(cands, key=lambda u: (rank[pos[u]], -u))
                break
            seen.update(level)
            level = [v for u in level for v in up[u] if v not in seen]
        for pointers in (seg_to, fallback_to):
            cur = int(pointers[i])
            steps = 0
            while found is None and cur != OUTLET and cur in pos and steps < len(seg_ids):
                if has_own[pos[cur]]:
                    found = cur
                cur = int(pointers[pos[cur]])
                steps += 1
        if found is None:
            raise DataError(f"segment {int(s)} has no HRU and no connected segment with one")
        donor[i] = found
    return donor


# --------------------------------------------------------------------------------------
# fine network


@dataclass
class _Fine:
    comid: np.ndarray            # reach ids, grouped by segment, upstream to downstream
    reach_seg: np.ndarray
    reach_to: np.ndarray
    reach_length: np.ndarray
    topo_source: np.ndarray      # _TOPO_FINE or _TOPO_CHAIN
    order: dict[int, list[int]]  # seg -> its reaches, upstream first


def _fine_network(xw: pd.DataFrame, coarse: _Coarse, fine: pd.DataFrame) -> _Fine:
    """Fine topology on the crosswalk's COMIDs.

    ``fine`` has columns ``comid, to, length_m, order_key`` for the COMIDs whose
    routing is known (RouteLink or ENHD). Inside a segment the known downstream links
    are kept; the pieces they leave (single COMIDs or short known runs) are joined
    into one chain, upstream first: the upper subsegment's pieces before the lower's,
    within a subsegment the piece holding its own downstream-end COMID last, else in
    ``order_key`` order; the chain ends at the segment's downstream-end COMID, which
    flows into the downstream segment (into the reach its known link names, else
    into the first reach of that segment's chain).
    """
    seg_of = dict(zip(xw["comid"], xw["seg_id_nat"]))
    sub_of = dict(zip(xw["comid"].astype(int), xw["subseg_id"]))
    down_of_seg: dict[int, int] = {}
    sub_outlets: set[int] = set()  # every subsegment's downstream-end COMID
    for sub, seg, down in zip(xw["subseg_id"], xw["seg_id_nat"], xw["comid_down"]):
        sub_outlets.add(int(down))
        # The segment's outlet COMID is the one of its most downstream subsegment.
        if coarse.sub_offset.get(sub, 0.0) == 0.0:
            down_of_seg[int(seg)] = int(down)
    known_to = dict(zip(fine["comid"].astype(int), fine["to"].astype(int)))
    known_len = dict(zip(fine["comid"].astype(int), fine["length_m"].astype(float)))
    key = dict(zip(fine["comid"].astype(int), fine["order_key"].astype(float)))
    seg_to = dict(zip(coarse.seg_ids.tolist(), coarse.seg_to.tolist()))
    seg_len = dict(zip(coarse.seg_ids.tolist(), coarse.seg_length.tolist()))
    members: dict[int, list[int]] = {}
    for c, s in seg_of.items():
        members.setdefault(int(s), []).append(int(c))

    order: dict[int, list[int]] = {}
    to: dict[int, int] = {}
    source: dict[int, int] = {}
    for s in coarse.seg_ids.tolist():
        comids = sorted(members.get(s, []), key=lambda c: (key.get(c, c), c))
        if not comids:
            raise DataError(f"segment {s} has no COMID in the crosswalk {_F_XWALK!r}")
        inside = set(comids)
        down = down_of_seg[s]
        # Known links that stay inside the segment, except out of the outlet COMID.
        link = {c: known_to[c] for c in comids
                if c != down and c in known_to and known_to[c] in inside and known_to[c] != c}
        # Drop links that would close a cycle (none in the registered files).
        for c in list(link):
            seen, cur = {c}, link.get(c)
            while cur is not None and cur in link:
                if cur in seen:
                    del link[c]
                    break
                seen.add(cur)
                cur = link.get(cur)
        # Pieces: each COMID belongs to the piece of the COMID its links end at.
        pieces: dict[int, list[int]] = {}
        for c in comids:
            pieces.setdefault(_sink(c, link), []).append(c)
        # Upper subsegments first (the length below them largest); within one, the piece
        # holding its own downstream-end COMID last; else by order key.
        ordered_sinks = sorted((p for p in pieces if p != down),
                               key=lambda p: (-coarse.sub_offset.get(sub_of.get(p, ""), 0.0),
                                              any(c in sub_outlets for c in pieces[p]),
                                              min((key.get(c, c), c) for c in pieces[p])))
        ordered_sinks.append(down)
        chain: list[int] = []
        for p in ordered_sinks:
            chain.extend(_topological(pieces[p], link, key))
        for a, b in zip(ordered_sinks[:-1], ordered_sinks[1:]):
            to[a] = _head(pieces[b], link, key)
        for c, t in link.items():
            to[c] = t
        order[s] = chain
        for c in chain:
            source[c] = _TOPO_FINE if c in link else _TOPO_CHAIN

    for s in order:
        down = down_of_seg[s]
        target_seg = seg_to[s]
        if target_seg == OUTLET:
            to[down] = OUTLET
            known = known_to.get(down)
            source[down] = (
                _TOPO_FINE if known is not None and seg_of.get(known) is None else _TOPO_CHAIN
            )
            continue
        known = known_to.get(down)
        if known is not None and seg_of.get(known) == target_seg:
            to[down] = known
            source[down] = _TOPO_FINE
        else:
            # Into the head of the subsegment the network file says the segment enters:
            # at a split segment, a tributary joining at the split point enters the lower
            # piece, beside (not above) the upper one.
            entry = coarse.entry_sub.get(s, "")
            heads = [c for c in order[target_seg] if sub_of.get(c) == entry]
            to[down] = heads[0] if heads else order[target_seg][0]
            source[down] = _TOPO_CHAIN

    comid = np.array([c for s in coarse.seg_ids.tolist() for c in order[s]], dtype=np.int64)
    reach_seg = np.array([seg_of[c] for c in comid], dtype=np.int64)
    # Lengths: the known fine length where there is one; the rest of the segment's
    # length is shared evenly by its other reaches (the whole length split evenly
    # when the known reaches already exceed it, as NHM and NHDPlus lines differ).
    where = {int(c): i for i, c in enumerate(comid)}
    length = np.empty(comid.size)
    for s, chain in order.items():
        known_lengths = [known_len[c] for c in chain if known_len.get(c, 0.0) > 0]
        n_unknown = len(chain) - len(known_lengths)
        rest = seg_len[s] - float(np.sum(known_lengths)) if known_lengths else seg_len[s]
        share = rest / n_unknown if n_unknown and rest > 0 else seg_len[s] / len(chain)
        for c in chain:
            length_c = known_len.get(c, 0.0)
            length[where[c]] = length_c if length_c > 0 else share
    return _Fine(
        comid=comid,
        reach_seg=reach_seg,
        reach_to=np.array([to[c] for c in comid], dtype=np.int64),
        reach_length=length,
        topo_source=np.array([source[c] for c in comid], dtype=np.int8),
        order=order,
    )


def _sink(c: int, link: dict[int, int]) -> int:
    """The COMID where the known links starting at ``c`` end (acyclic links)."""
    while c in link:
        c = link[c]
    return c


def _topological(nodes: list[int], link: dict[int, int], key: dict[int, float]) -> list[int]:
    """Nodes of one piece, upstream first (Kahn's order, ties by order key)."""
    node_set = set(nodes)
    indeg = {c: 0 for c in nodes}
    for c in nodes:
        t = link.get(c)
        if t in node_set:
            indeg[t] += 1
    ready = sorted((c for c in nodes if indeg[c] == 0), key=lambda c: (key.get(c, c), c))
    out: list[int] = []
    queue = deque(ready)
    while queue:
        c = queue.popleft()
        out.append(c)
        t = link.get(c)
        if t in node_set:
            indeg[t] -= 1
            if indeg[t] == 0:
                queue.append(t)
    return out


def _head(nodes: list[int], link: dict[int, int], key: dict[int, float]) -> int:
    """The most upstream reach of a piece (its first in topological order)."""
    return _topological(nodes, link, key)[0]


#: The slope NHDPlus (and RouteLink, which copies it, rounded to 0.001) gives where the
#: slope rounded to 0: a floor, not a measurement, read as unknown by :func:`open_drb`.
_ROUTELINK_SLOPE_FLOOR = 1e-5


def _routelink_table(get: _Get) -> pd.DataFrame:
    frames = []
    for name in _F_ROUTELINK:
        path = get(name)
        ds = _readers.open_netcdf(path, ["link", "to", "Length", "So", "alt", "TopWdth"])
        frames.append(pd.DataFrame({
            "comid": ds["link"].values.astype(np.int64),
            "to": ds["to"].values.astype(np.int64),
            "length_m": ds["Length"].values.astype(float),
            "slope": ds["So"].values.astype(float),
            "elevation_m": ds["alt"].values.astype(float),
            "width_m": ds["TopWdth"].values.astype(float),
            "file": name,
        }))
    rl = pd.concat(frames, ignore_index=True).drop_duplicates("comid")
    # NHDPlusV2 COMIDs mostly grow downstream along a flowpath (three in four known
    # links inside a segment do), so the COMID is the best offline order key.
    return rl.assign(order_key=rl["comid"].astype(float))


# --------------------------------------------------------------------------------------
# observations


def _coarse_obs(obs: pd.DataFrame, coarse: _Coarse, times: pd.DatetimeIndex
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame]:
    codes, subsegs = pd.factorize(obs["subseg_id"])
    unknown = sorted(set(subsegs) - set(coarse.sub2seg))
    if unknown:
        raise DataError(f"{_F_OBS!r} names subsegments {format_ids(unknown)} missing from {_F_XWALK!r}")
    seg_of_code = np.array([coarse.sub2seg[str(u)] for u in subsegs], dtype=np.int64)
    obs = obs.assign(seg=seg_of_code[codes])
    # The time holdout is a set of date ranges; carry it onto days with no
    # observation anywhere by the nearest earlier observed day.
    th = obs.groupby("date")["in_time_holdout"].any().sort_index()
    full = pd.date_range(th.index.min(), th.index.max(), freq="D")
    th = th.reindex(full).ffill().bfill().astype(bool)
    time_holdout = th.reindex(times).fillna(False).astype(bool).to_numpy()
    space = obs.groupby("seg")["in_space_holdout"].any().reindex(coarse.seg_ids).fillna(False)
    valid = obs[obs["mean_temp_c"].notna() & obs["date"].isin(times)]
    # Split segments report one daily mean per piece; the segment's value is their
    # mean (10 segment-days in the whole record, none in 1979-1980).
    daily = valid.groupby(["seg", "date"])["mean_temp_c"].mean()
    temp = np.full((coarse.seg_ids.size, times.size), np.nan, dtype=np.float32)
    si = np.searchsorted(coarse.seg_ids, daily.index.get_level_values(0).to_numpy())
    ti = times.get_indexer(daily.index.get_level_values(1))
    temp[si, ti] = daily.to_numpy()
    # Sites the USGS aggregation accepted for each segment (within its distance rule).
    pairs = obs.loc[obs["site_id"] != "", ["site_id", "seg"]].drop_duplicates()
    accepted = (pairs.assign(site_id=pairs["site_id"].str.split(","))
                .explode("site_id").assign(site_id=lambda d: d["site_id"].str.strip())
                .drop_duplicates())
    return temp, time_holdout, space.to_numpy().astype(bool), accepted


def _place_sites(site_obs: pd.DataFrame, sites: pd.DataFrame, accepted: pd.DataFrame,
                 nwis: pd.DataFrame, coarse: _Coarse, fine: _Fine) -> pd.DataFrame:
    """Put each monitoring site with observations on one reach of its matched segment.

    Only sites the USGS segment aggregation accepted are used, so fine and coarse
    observations come from the same sites. A site goes to the COMID of the NWIS table
    when that COMID lies in the site's segment; otherwise its along-stream distance to
    the segment outlet, as a fraction of the segment's length, is walked up the
    segment's reach chain from the outlet reach.
    """
    s = sites[sites["site_id"].isin(site_obs["site_id"].unique())]
    s = s.assign(seg=s["subseg_id"].map(coarse.sub2seg))
    s = s[s["seg"].notna()].astype({"seg": np.int64})
    s = s.merge(accepted, on=["site_id", "seg"], how="inner")
    nwis_map = dict(zip("USGS-" + nwis["nwis_site_code"].astype(str), nwis["comid"].astype(np.int64)))
    seg_len = dict(zip(coarse.seg_ids.tolist(), coarse.seg_length.tolist()))
    reach_len = dict(zip(fine.comid.tolist(), fine.reach_length.tolist()))
    rows = []
    for site, seg, sub, dist in zip(s["site_id"], s["seg"], s["subseg_id"], s["fish_dist_to_outlet_m"]):
        chain = fine.order[int(seg)]
        comid = nwis_map.get(site)
        if comid is not None and comid in set(chain):
            rows.append((site, int(seg), int(comid), _SITE_NWIS, float(dist)))
            continue
        d = float(dist) + coarse.sub_offset.get(sub, 0.0) if np.isfinite(dist) else 0.0
        frac = min(max(d / seg_len[int(seg)], 0.0), 1.0)
        lengths = np.array([reach_len[c] for c in chain[::-1]])
        target = frac * lengths.sum()
        i = int(np.searchsorted(np.cumsum(lengths), target, side="left"))
        rows.append((site, int(seg), int(chain[::-1][min(i, len(chain) - 1)]), _SITE_DISTANCE, float(dist)))
    return pd.DataFrame(rows, columns=["site_id", "seg", "comid", "how", "dist_m"])


def _fine_obs(site_obs: pd.DataFrame, placed: pd.DataFrame, comid: np.ndarray,
              times: pd.DatetimeIndex) -> np.ndarray:
    o = site_obs[site_obs["date"].isin(times)].merge(placed[["site_id", "comid"]], on="site_id")
    # Several sites on one reach on one day: their mean.
    daily = o.groupby(["comid", "date"])["mean_temp_c"].mean()
    temp = np.full((comid.size, times.size), np.nan, dtype=np.float32)
    pos = pd.Index(comid).get_indexer(daily.index.get_level_values(0))
    ti = times.get_indexer(daily.index.get_level_values(1))
    temp[pos, ti] = daily.to_numpy()
    return temp


# --------------------------------------------------------------------------------------
# forcings (mirror): HRU forcings area-weighted to segments


def _hru_donors(coarse: _Coarse, seg_params: xr.Dataset, get: _Get
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HRU area weights of the segments (rows of each segment's donor), the donors,
    which segments have HRUs of their own, and the HRU ids, from the PRMS parameters.

    Both sources read the segments' HRU attributes from ``seg_attr_drb.feather``,
    which has none for segments without HRUs: they take their donor's, as the
    mirror's forcings do.
    """
    channel = _readers.open_netcdf(get(_F_CHANNEL),
                                   ["nhm_id", "hru_segment", "nhm_seg"])
    hru = _readers.open_netcdf(get(_F_HRU_PARAMS), ["nhm_id", "hru_area"])
    nhm_ids = channel["nhm_id"].values.astype(np.int64)
    local_seg = channel["hru_segment"].values.astype(np.int64)
    channel_segs = channel["nhm_seg"].values.astype(np.int64)
    hru_seg = np.where(local_seg > 0, channel_segs[np.maximum(local_seg - 1, 0)], 0)
    area = pd.Series(hru["hru_area"].values, index=hru["nhm_id"].values.astype(np.int64)).reindex(nhm_ids)
    if area.isna().any():
        raise DataError(f"{_F_HRU_PARAMS!r} lacks hru_area for HRUs {format_ids(nhm_ids[area.isna()])}")
    n_seg = coarse.seg_ids.size
    seg_pos = np.searchsorted(coarse.seg_ids, hru_seg)
    on = hru_seg > 0
    weights = np.zeros((n_seg, nhm_ids.size))
    weights[seg_pos[on], np.flatnonzero(on)] = area.to_numpy()[on]
    has_own = weights.sum(axis=1) > 0
    weights[has_own] /= weights[has_own].sum(axis=1, keepdims=True)

    params = seg_params.set_coords("nhm_seg").swap_dims({"nsegment": "nhm_seg"})
    rank = params["seg_cum_area"].reindex(nhm_seg=coarse.seg_ids).values
    nhm_to = params["tosegment_nhm"].reindex(nhm_seg=coarse.seg_ids).values.astype(np.int64)
    donor = _donors(coarse.seg_ids, coarse.seg_to, has_own, rank, nhm_to)
    weights = weights[np.searchsorted(coarse.seg_ids, donor)]
    return weights, donor, has_own, nhm_ids


def _mirror_forcings(coarse: _Coarse, seg_params: xr.Dataset, times: pd.DatetimeIndex,
                     get: _Get) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    weights, donor, has_own, nhm_ids = _hru_donors(coarse, seg_params, get)
    out: dict[str, np.ndarray] = {}
    for name, var in ((_F_TMAX, "tmax"), (_F_TMIN, "tmin"), (_F_PRCP, "prcp")):
        ds = _readers.open_netcdf(get(name), [var])
        da = ds[var].sel(nhm_id=nhm_ids)
        missing = times.difference(pd.DatetimeIndex(da["time"].values))
        if len(missing):
            raise DataError(f"{name!r} has no values for {format_ids([str(d.date()) for d in missing])}")
        values = da.sel(time=times).values.astype(np.float64)  # (time, hru)
        # The raw NHM forcings, converted (degF -> degC, inch -> mm). PRMS would add
        # monthly per-HRU calibration offsets; they are left out because they make
        # tmax fall below tmin on some days and belong to PRMS's calibration, not to
        # the observed forcing.
        values = (values - 32.0) * (5.0 / 9.0) if var != "prcp" else values * 25.4
        out[var] = (weights @ values.T).astype(np.float32)  # (seg, time)
    return out, donor, has_own


# --------------------------------------------------------------------------------------
# the builder


#: CF standard names and cell methods of the forcings and of the latitude, for both
#: scales (a reach variable takes its segment variable's). Water temperature is given
#: none (``sea_water_temperature`` would be wrong for a river). The mean air
#: temperature is (tmax + tmin) / 2, not a mean over the day, so it has no cell method.
_CF_ATTRS: dict[str, dict[str, str]] = {
    "seg_tmax_air": {"standard_name": "air_temperature", "cell_methods": "time: maximum"},
    "seg_tmin_air": {"standard_name": "air_temperature", "cell_methods": "time: minimum"},
    "seg_tave_air": {"standard_name": "air_temperature"},
    "seg_swrad": {"standard_name": "surface_downwelling_shortwave_flux_in_air",
                  "cell_methods": "time: mean"},
    "seg_outflow": {"standard_name": "water_volume_transport_in_river_channel",
                    "cell_methods": "time: mean"},
    "seg_lat": {"standard_name": "latitude"},
}

#: The mirror's seg_prcp is all precipitation; the release's is rain alone and gets none.
_MIRROR_CF_ATTRS: dict[str, dict[str, str]] = {
    **_CF_ATTRS,
    "seg_prcp": {"standard_name": "lwe_precipitation_rate", "cell_methods": "time: mean"},
}


def _attrs(units: str | None, source: str, long_name: str, **extra: Any) -> dict[str, Any]:
    """A variable's attributes; ``units=None`` for ids and flags, which CF gives none."""
    out = {"long_name": long_name, "source": source, **extra}
    return out if units is None else {"units": units, **out}


def _yes_no(meaning: str) -> dict[str, Any]:
    """CF flag attributes of a true/false variable (written to netCDF as 0 and 1)."""
    return {"flag_values": np.array([0, 1], dtype=np.int8), "flag_meanings": f"not_{meaning} {meaning}"}


_SEG_ATTR_COLUMNS = {
    # column: (units, long name); HRU-area-weighted PRMS parameters per segment.
    "hru_elev": ("m", "mean elevation of the contributing HRUs"),
    "hru_slope": ("1", "mean land-surface slope of the contributing HRUs"),
    "covden_sum": ("1", "summer vegetation cover density"),
    "covden_win": ("1", "winter vegetation cover density"),
    "hru_percent_imperv": ("1", "impervious fraction of the contributing HRUs"),
    "soil_moist_max": ("inch", "maximum soil water holding capacity"),
    "gwflow_coef": ("day-1", "groundwater routing coefficient"),
    "hru_area": ("acre", "area of the contributing HRUs"),
}


def open_drb(
    source: Source = "mirror",
    start: str | np.datetime64 | pd.Timestamp | None = None,
    end: str | np.datetime64 | pd.Timestamp | None = None,
    *,
    folder: str | os.PathLike[str] | None = None,
    cache: bool | str | os.PathLike[str] = True,
    progress: bool | None = None,
) -> xr.Dataset:
    """The Delaware River Basin as a multi-scale dataset in the xmsgl convention.

    Dimensions: ``seg`` (the 456 NHM segments, ids ``seg_id_nat``), ``reach`` (the
    3,229 NHDPlusV2 flowlines on them, ids ``COMID``) and daily ``time``. Both id
    coordinates are kept under their real names too. Targets are daily mean water
    temperatures: ``seg_temp`` from the USGS segment observations and ``reach_temp``
    from the monitoring sites placed on reaches. See ``docs/data.md`` for every source
    and choice; ``ds.attrs["approximations"]`` lists what is approximate.

    Parameters
    ----------
    source : {"mirror", "release"}, default "mirror"
        ``"mirror"`` reads pinned public copies (offline once they are in the data
        folder), with forcings for 1979-1980 only. ``"release"`` reads the USGS
        releases (internet needed the first time) with forcings for 1979-2022.
    start, end : date-like, optional
        First and last day (inclusive). Default: the whole forcing period. A label
        names all its days (``end="1980-06"`` ends on 30 June).
    folder : path, optional
        The data folder holding the files (as ``fetch_data(folder=...)`` fills it);
        missing files are downloaded into it. Default: :func:`data_folder` at the time
        of the call (``XMSGL_DATA_DIR`` when set, else xmsgl's user cache folder).
    cache : bool or path, default True
        Keep parsed tables of the slow R files as parquet in xmsgl's cache folder (or
        in the folder given, ``~`` expanded), so later builds take a second or two.
    progress : bool, optional
        Show download progress bars and pooch's log lines; default the ``progress``
        option (:func:`xmsgl.set_options`).

    Returns
    -------
    xarray.Dataset
        A dataset that passes :func:`xmsgl.validate`.

    Raises
    ------
    DataError
        When a file is missing offline, corrupt or has the wrong hash, or the period
        lies outside the forcings.
    ParameterError
        When ``source`` is unknown, or ``folder`` or ``cache`` is not a usable folder
        (checked before any file is read).
    PeriodError
        When ``start`` or ``end`` is not a date, or the period ends before it starts
        (checked before any file is read).

    Examples
    --------
    >>> from xmsgl.datasets.drb import open_drb
    >>> ds = open_drb(start="1980-01-01", end="1980-12-31")  # doctest: +SKIP
    >>> ds.sizes["seg"], ds.sizes["reach"]  # doctest: +SKIP
    (456, 3229)
    """
    if source not in ("mirror", "release"):
        raise ChoiceError(f"unknown source {source!r}; use 'mirror' (offline copies) or 'release' (USGS)")
    first = _day(start, "start", last=False)
    last = _day(end, "end", last=True)
    if first is not None and last is not None and last < first:
        raise PeriodError(f"start={start!r}, end={end!r}: the period ends before it starts; give "
                          f"the first day as start and the last as end")
    if source == "mirror":
        _period(MIRROR_PERIOD, first, last)  # outside the forcings: said before any file is read
    check_flag("progress", progress, none=True)
    progress = progress_or_option(progress)
    cache_dir = _cache_dir(cache)
    # The folder is resolved once per call, so every file of one build comes from
    # the same folder even if XMSGL_DATA_DIR changes meanwhile.
    where = _where(folder)

    def get(name: str) -> Path:
        return _fetch(name, where, progress)

    def parsed(name: str, parse: Callable[[Path], pd.DataFrame]) -> pd.DataFrame:
        return _parsed(name, parse, cache_dir, "v1", get)

    xw = parsed(_F_XWALK, _parse_xwalk)
    coarse = _coarse_network(xw, parsed(_F_NETWORK, _parse_network))
    seg_params = _readers.open_netcdf(
        get(_F_SEG_PARAMS),
        ["nhm_seg", "tosegment_nhm", "seg_length", "seg_slope", "seg_width", "seg_depth",
         "seg_elev", "seg_lat", "seg_cum_area"])
    params = seg_params.set_coords("nhm_seg").swap_dims({"nsegment": "nhm_seg"})
    missing = np.setdiff1d(coarse.seg_ids, params["nhm_seg"].values)
    if missing.size:
        raise DataError(f"{_F_SEG_PARAMS!r} lacks segments {format_ids(missing)}")
    params = params.sel(nhm_seg=coarse.seg_ids)

    filled = (0, 0)
    if source == "mirror":
        times = _period(MIRROR_PERIOD, first, last)
        forcings, donor, has_own = _mirror_forcings(coarse, seg_params, times, get)
        fine_table = _routelink_table(get)
        fine_file = " and ".join(_F_ROUTELINK)
        fine_name = "NWM RouteLink"
    else:
        forcings, times, filled = _release_forcings(coarse, first, last, get)
        # The release's forcings cover every segment, but its HRU attributes do not:
        # segments without HRUs take their donor's, as in the mirror build (all-True
        # flags and the segments' own ids left 40 segments' attributes NaN).
        _, donor, has_own, _ = _hru_donors(coarse, seg_params, get)
        fine_table = _enhd_table(set(xw["comid"].astype(int)), get)
        fine_file = _F_ENHD
        fine_name = "ENHD"

    fine = _fine_network(xw, coarse, fine_table)
    obs = parsed(_F_OBS, _parse_obs)
    seg_temp, time_holdout, space_holdout, accepted = _coarse_obs(obs, coarse, times)
    site_obs = parsed(_F_SITE_OBS, _parse_site_obs)
    sites = parsed(_F_SITES, _parse_sites)
    nwis = _readers.read_csv(get(_F_NWIS), dtype={"nwis_site_code": str})
    placed = _place_sites(site_obs, sites, accepted, nwis, coarse, fine)
    reach_temp = _fine_obs(site_obs, placed, fine.comid, times)

    seg_attr = _readers.read_feather(get(_F_SEG_ATTR))
    _need_columns(seg_attr, {"seg_id_nat", *_SEG_ATTR_COLUMNS}, Path(_F_SEG_ATTR))
    seg_attr = seg_attr.set_index("seg_id_nat").reindex(donor)

    seg_pos_of_reach = np.searchsorted(coarse.seg_ids, fine.reach_seg)
    fine_props = fine_table.set_index("comid").reindex(fine.comid)

    # The NHDPlus floor, where the slope rounded to 0: not a measured slope, so the
    # parent segment's is used, as for no value.
    slope = (fine_props["slope"].to_numpy(dtype=float) if "slope" in fine_props
             else np.full(len(fine_props), np.nan))
    floored = np.isfinite(slope) & (slope > 0) & (slope <= _ROUTELINK_SLOPE_FLOOR * 1.5)
    n_floor = int(np.count_nonzero(floored))

    def per_reach(seg_values: np.ndarray, fine_col: str | None) -> np.ndarray:
        out = np.asarray(seg_values, dtype=np.float64)[seg_pos_of_reach]
        if fine_col is not None and fine_col in fine_props:
            known = fine_props[fine_col].to_numpy(dtype=float)
            ok = np.isfinite(known) & (known > 0 if fine_col != "elevation_m" else np.isfinite(known))
            if fine_col == "slope":
                ok &= ~floored
            out = np.where(ok, known, out)
        return out

    S, R, T = "seg", "reach", "time"
    fsrc = {"mirror": "pywatershed_drb_2yr/{v}.nc area-weighted by hru_area over hru_segment "
                      "(parameters_PRMSChannel.nc, parameters_dis_hru.nc)",
            "release": f"{_F_SNTEMP} (sntemp_inputs_outputs_drb.csv)"}[source]
    data: dict[str, Any] = {
        "seg_to": (S, coarse.seg_to, _attrs(
            None, f"{_F_NETWORK} (edges: to_subseg), subsegments joined by {_F_XWALK}",
            "downstream segment (seg_id_nat), 0 at outlets; USGS study network")),
        "seg_length": (S, coarse.seg_length, _attrs(
            "m", f"{_F_NETWORK} (edges: subseg_length summed per segment)", "segment length")),
        "seg_to_nhm": (S, params["tosegment_nhm"].values.astype(np.int64), _attrs(
            None, f"{_F_SEG_PARAMS} (tosegment_nhm)",
            "downstream segment in the full NHM (differs from seg_to only at 1791)")),
        "seg_slope": (S, params["seg_slope"].values.astype(np.float64), _attrs(
            "1", f"{_F_SEG_PARAMS} (seg_slope)", "segment slope")),
        "seg_width": (S, params["seg_width"].values.astype(np.float64), _attrs(
            "m", f"{_F_SEG_PARAMS} (seg_width)", "segment bankfull width")),
        "seg_depth": (S, params["seg_depth"].values.astype(np.float64), _attrs(
            "m", f"{_F_SEG_PARAMS} (seg_depth)", "segment bankfull depth")),
        "seg_elevation": (S, params["seg_elev"].values.astype(np.float64), _attrs(
            "m", f"{_F_SEG_PARAMS} (seg_elev)", "segment elevation at midpoint")),
        "seg_lat": (S, params["seg_lat"].values.astype(np.float64), _attrs(
            "degrees_north", f"{_F_SEG_PARAMS} (seg_lat)", "segment latitude")),
        "seg_forcing_donor": (S, donor.astype(np.int64), _attrs(
            None, "xmsgl: nearest connected segment with HRUs (upstream first), as PRMS",
            "segment whose HRU forcings and attributes this segment uses")),
        "seg_has_hru": (S, has_own, _attrs(None, f"{_F_CHANNEL} (hru_segment)",
                                           "segment has HRUs of its own", **_yes_no("has_hru"))),
        "seg_in_space_holdout": (S, space_holdout, _attrs(
            None, f"{_F_OBS} (in_space_holdout)", "segment is in the USGS spatial test set",
            **_yes_no("in_space_holdout"))),
        "in_time_holdout": (T, time_holdout, _attrs(
            None, f"{_F_OBS} (in_time_holdout)", "day is in the USGS temporal test set",
            **_yes_no("in_time_holdout"))),
        "seg_temp": ((S, T), seg_temp, _attrs(
            "degC", f"{_F_OBS} (mean_temp_c; subsegments joined by {_F_XWALK})",
            "observed water temperature: daily mean, or a single sample where the source has one")),
        "reach_to": (R, fine.reach_to, _attrs(
            None, f"{fine_file} (to) where known, else the crosswalk chain; see reach_topology_source",
            "downstream reach (COMID), 0 at outlets")),
        "reach_length": (R, fine.reach_length, _attrs(
            "m", f"{fine_file} (length) where known, else the rest of seg_length split evenly",
            "reach length")),
        "reach_seg": (R, fine.reach_seg, _attrs(None, f"{_F_XWALK} (comid_seg)",
                                                "segment (seg_id_nat) of the reach")),
        "reach_topology_source": (R, fine.topo_source, _attrs(
            None, "xmsgl", "provenance of reach_to (reach_length is RouteLink's or ENHD's wherever "
            "known, whatever this flag)",
            flag_values=np.array([_TOPO_FINE, _TOPO_CHAIN], dtype=np.int8),
            flag_meanings=f"{fine_name.lower().replace(' ', '_')} crosswalk_chain")),
        "reach_slope": (R, per_reach(params["seg_slope"].values, "slope"), _attrs(
            "1", f"{fine_file} (slope) where known and above its 1e-5 floor, else seg_slope of the "
            "parent segment",
            "reach slope")),
        "reach_width": (R, per_reach(params["seg_width"].values, "width_m"), _attrs(
            "m", f"{fine_file} (top width) where known, else seg_width of the parent segment",
            "reach channel width")),
        "reach_elevation": (R, per_reach(params["seg_elev"].values, "elevation_m"), _attrs(
            "m", f"{fine_file} (elevation) where known, else seg_elev of the parent segment",
            "reach elevation")),
        "reach_temp": ((R, T), reach_temp, _attrs(
            "degC", f"{_F_SITE_OBS} (mean_temp_degC) at sites placed by {_F_NWIS} or "
            f"{_F_SITES} (fish_dist_to_outlet_m); see site_*",
            "observed water temperature: daily mean, or a single sample where the source has one; "
            "mean over the sites on the reach")),
        "site_comid": ("site", placed["comid"].to_numpy(np.int64), _attrs(
            None, "xmsgl", "reach (COMID) the monitoring site is placed on")),
        "site_seg": ("site", placed["seg"].to_numpy(np.int64), _attrs(
            None, f"{_F_SITES} (subseg_id)", "segment (seg_id_nat) the site is matched to")),
        "site_mapping": ("site", placed["how"].to_numpy(np.int8), _attrs(
            None, "xmsgl", "how the site was placed on a reach",
            flag_values=np.array([_SITE_NWIS, _SITE_DISTANCE], dtype=np.int8),
            flag_meanings="nwis_comid along_stream_distance")),
        "site_dist_to_outlet": ("site", placed["dist_m"].to_numpy(np.float64), _attrs(
            "m", f"{_F_SITES} (fish_dist_to_outlet_m)",
            "along-stream distance from the site to its subsegment's outlet",
            xmsgl_role="ignore")),
    }
    names = {"tmax": ("seg_tmax_air", "daily maximum air temperature", "degC"),
             "tmin": ("seg_tmin_air", "daily minimum air temperature", "degC"),
             "prcp": ("seg_prcp", "daily precipitation", "mm day-1")}
    for key, values in forcings.items():
        if key in names:
            name, long_name, units = names[key]
            src = fsrc.format(v=key)
        else:
            name, long_name, units, src = values_meta(key)
        arr = values
        data[name] = ((S, T), arr, _attrs(units, src, long_name))
        data[name.replace("seg_", "reach_", 1)] = ((R, T), arr[seg_pos_of_reach], _attrs(
            units, f"{src}; the parent segment's value", f"{long_name} (parent segment)"))
    if "tmax" in forcings and "tmin" in forcings:
        tave = ((forcings["tmax"] + forcings["tmin"]) / 2.0).astype(np.float32)
        data["seg_tave_air"] = ((S, T), tave, _attrs("degC", f"(tmax + tmin) / 2 of {fsrc.format(v='tmax/tmin')}",
                                                     _TAVE_LONG_NAME))
        data["reach_tave_air"] = ((R, T), tave[seg_pos_of_reach], _attrs(
            "degC", "seg_tave_air of the parent segment", f"{_TAVE_LONG_NAME} (parent segment)"))
    for col, (units, long_name) in _SEG_ATTR_COLUMNS.items():
        data[f"seg_{col}"] = (S, seg_attr[col].to_numpy(np.float64), _attrs(
            units, f"{_F_SEG_ATTR} ({col}) of seg_forcing_donor",
            f"{long_name} (of seg_forcing_donor: the segment's own, or the nearest connected "
            "segment's with HRUs where seg_has_hru is 0)"))
    for name, cf in (_MIRROR_CF_ATTRS if source == "mirror" else _CF_ATTRS).items():
        for scale_name in (name, name.replace("seg_", "reach_", 1)):
            if scale_name in data:
                data[scale_name][2].update(cf)

    seg_src = f"{_F_NETWORK} (edges: subseg_id), joined to segments by {_F_XWALK} (segidnat)"
    reach_src = f"{_F_XWALK} (comid_seg)"
    time_src = {"mirror": f"the days of {_F_TMAX}, {_F_TMIN} and {_F_PRCP} (time) from start to end",
                "release": f"{_F_SNTEMP} (sntemp_inputs_outputs_drb.csv: date) from start to end"}[source]
    ds = xr.Dataset(
        data,
        coords={
            S: (S, coarse.seg_ids, {"long_name": "NHM segment id (GFv1 seg_id_nat)", "source": seg_src}),
            R: (R, fine.comid, {"long_name": "NHDPlusV2 flowline COMID", "source": reach_src}),
            T: (T, times.values.astype("datetime64[ns]"), {"long_name": "day", "source": time_src}),
            "seg_id_nat": (S, coarse.seg_ids, {"long_name": "NHM segment id (GFv1 seg_id_nat)",
                                               "source": seg_src}),
            "COMID": (R, fine.comid, {"long_name": "NHDPlusV2 flowline COMID", "source": reach_src}),
            "site_id": ("site", placed["site_id"].to_numpy(str), {
                "long_name": "monitoring site id",
                "source": f"{_F_SITES} (site_id): sites with values (daily means, or single samples) in {_F_SITE_OBS} that "
                          f"{_F_OBS} (site_id) accepts for their segment"}),
        },
    )
    n_fine = int((fine.topo_source == _TOPO_FINE).sum())
    ds.attrs = {
        "title": "Delaware River Basin: NHM segments and NHDPlusV2 reaches (xmsgl convention)",
        "source": f"xmsgl.datasets.drb.open_drb(source={source!r}); files in xmsgl/datasets/registry.txt",
        # What to cite: the files read, where they are published (carried to the files
        # made from this dataset by xmsgl.convention.output_dataset).
        "references": ("USGS ScienceBase data releases doi:10.5066/P9GD8I7A and doi:10.5066/P976XCVT; "
                       if source == "release" else "")
                      + "files read: " + ", ".join(POOCH.get_url(n) for n in files_for(source)),
        "xmsgl_source": source,
        "network": "USGS study network (network.rds), identical to the NHM tosegment except 1791, "
                   "an outlet here and flowing to 1793 in the NHM (kept as seg_to_nhm)",
        "approximations": "; ".join([
            f"reach_to of {fine.comid.size - n_fine} of {fine.comid.size} reaches is a chain inside "
            f"the segment in {'COMID order' if source == 'mirror' else 'ENHD hydroseq order'}, "
            f"not known {fine_name} routing (reach_topology_source = 2)",
            "reach_length of reaches without known routing is the rest of the segment length "
            "split evenly",
            "reach forcings are the parent segment's",
            "reach slope, width and elevation are the parent segment's where not known",
            f"{fine_name} slopes of 1e-5 are the NHDPlus floor (a slope that rounded to 0), not "
            f"measurements: the {n_floor} reaches that have one take the parent segment's slope",
            "sites without an NWIS COMID are placed by along-stream distance as a fraction of "
            "the segment length",
        ] + ([
            f"{int((~has_own).sum())} segments without HRUs take forcings and HRU attributes from "
            "their nearest connected segment (seg_forcing_donor)",
            "forcings are the raw NHM daily forcings (without PRMS's monthly calibration "
            "adjustments or rain/snow split)",
        ] if source == "mirror" else [
            f"{int((~has_own).sum())} segments without HRUs take HRU attributes from their "
            "nearest connected segment (seg_forcing_donor)",
        ] + ([
            f"seg_sntemp_temp: {filled[0]} segment-days on {filled[1]} segments that PRMS-SNTemp "
            "marks dry (-98.9 or -99.9) are interpolated in time"] if filled[0] else []))),
        "Conventions": CF_CONVENTIONS,
    }
    return ds



def values_meta(key: str) -> tuple[str, str, str, str]:
    """Name, long name, units and source of a release forcing column."""
    meta = _RELEASE_COLUMNS[key]
    return meta[0], meta[1], meta[2], f"{_F_SNTEMP} (sntemp_inputs_outputs_drb.csv: {key})"


def _cache_dir(cache: object) -> Path | None:
    """The parsed-table folder of ``open_drb(cache=...)``: default, none, or the path (``~`` expanded)."""
    if cache is True:
        return _default_cache_dir()
    if cache is False:
        return None
    if isinstance(cache, bytes) or not isinstance(cache, (str, os.PathLike)):
        raise ParameterError(f"cache={cache!r} must be True, False or a folder path")
    folder = Path(cache).expanduser()
    for above in (folder, *folder.parents):
        # A file on the way would make every table unwritable, which the cache's
        # writes skip without a word: refuse it before any file is read.
        if above.exists():
            if not above.is_dir():
                raise ParameterError(f"cache={str(cache)!r}: {str(above)!r} is a file, not a "
                                     "folder; give a folder (it is created when missing)")
            break
    return folder


def _day(value: Any, name: str, last: bool) -> pd.Timestamp | None:
    """The first (``last=False``) or last day named by ``start``/``end``: a date or a label."""
    if isinstance(value, (tuple, list, slice)):
        raise PeriodError(f"{name}={value!r}: give one date such as '1980-06-01' (or a label such "
                          f"as '1980' or '1980-06'), not a period")
    try:
        # As a (value, value) pair: period_bounds reads a lone value only as a string
        # label, and datetime64 / Timestamp / datetime are dates too (one day).
        lo, hi = period_bounds(None if value is None else (value, value), name)
    except PeriodError as err:
        if "time zone" in str(err):
            # Said of the date given, not of the pair it was read as.
            raise PeriodError(f"{name}={value!r} has a time zone, but the Delaware days have "
                              "none; give a naive date such as '1980-06-01'") from err
        raise PeriodError(f"{name}={value!r} is not a date; give a day such as '1980-06-01', or a "
                          f"label such as '1980-06' (all its days)") from err
    day = hi if last else lo
    return None if day is None else day.floor("D")


def _period(bounds: tuple[str, str], start: pd.Timestamp | None, end: pd.Timestamp | None,
            other: str = ", or use source='release' for 1979-2022") -> pd.DatetimeIndex:
    lo, hi = pd.Timestamp(bounds[0]), pd.Timestamp(bounds[1])
    s = start if start is not None else lo
    e = end if end is not None else hi
    # A reversed start/end pair is refused before; s > e here means a one-sided
    # period entirely outside the forcings.
    if s < lo or e > hi or s > e:
        # Name the bound given (a one-sided period reads reversed if quoted whole).
        given = ("start" if start is not None and (s < lo or s > hi) else
                 "end" if end is not None and (e < lo or e > hi) else None)
        what = (f"{given}={(s if given == 'start' else e).date()} is outside" if given else
                f"the period {s.date()}..{e.date()} is not inside")
        raise DataError(
            f"{what} the forcings of this source ({lo.date()}..{hi.date()}); choose start/end "
            f"inside them{other}"
        )
    return pd.date_range(s, e, freq="D")


# --------------------------------------------------------------------------------------
# release source (needs internet; not exercised offline)

_RELEASE_COLUMNS = {
    # column: (variable, long name, units, scale to units)
    "seg_tave_air": ("seg_tave_air", _TAVE_LONG_NAME, "degC"),
    "seg_rain": ("seg_prcp", "daily rain", "mm day-1"),
    "seginc_swrad": ("seg_swrad", "daily mean shortwave radiation", "W m-2"),
    "seg_outflow": ("seg_outflow", "PRMS-SNTemp simulated outflow", "m3 s-1"),
    "seg_tave_water": ("seg_sntemp_temp", "PRMS-SNTemp simulated water temperature (uncalibrated)", "degC"),
}


def _release_forcings(coarse: _Coarse, start: pd.Timestamp | None, end: pd.Timestamp | None,
                      get: _Get) -> tuple[dict[str, np.ndarray], pd.DatetimeIndex, tuple[int, int]]:
    """The release's segment forcings on the period, and the segment-days (and segments)
    of simulated water temperature filled where PRMS-SNTemp marks a segment dry."""
    # Read from the archive itself: nothing is extracted into the data folder (which
    # may be read-only and shared), and a replaced archive is what is read.
    archive = get(_F_SNTEMP)
    cols = ["seg_id_nat", "date", *_RELEASE_COLUMNS]
    table = _readers.read_zipped_csv(archive, "sntemp_inputs_outputs_drb.csv", usecols=cols,
                                     parse_dates=["date"])
    bounds = (str(table["date"].min().date()), str(table["date"].max().date()))
    times = _period(bounds, start, end, other="")
    table = table[table["date"].isin(times)]
    twice = table.duplicated(["seg_id_nat", "date"], keep=False)
    if twice.any():
        first = table[twice].iloc[0]
        raise DataError(
            f"{_F_SNTEMP!r} ({str(archive)!r}) holds {int(twice.sum())} rows for segment-days given "
            f"more than once (first: segment {int(first['seg_id_nat'])} on "
            f"{pd.Timestamp(first['date']).date()}); the release has one row a segment-day: the file "
            "is damaged or another one, so delete it and fetch it again (`xmsgl fetch-data`)"
        )
    out: dict[str, np.ndarray] = {}
    filled = (0, 0)
    for col in _RELEASE_COLUMNS:
        wide = table.pivot(index="seg_id_nat", columns="date", values=col)
        wide = wide.reindex(index=coarse.seg_ids, columns=times)
        values = wide.to_numpy(dtype=np.float64, copy=True)  # written into below
        if col == "seg_rain":
            values = values * 1000.0  # m/day -> mm/day
        if col == "seg_tave_water":
            # PRMS-SNTemp writes -98.9 / -99.9 where a segment is dry; those days are
            # filled along time so the input has no gaps.
            dry = values < -90
            values[dry] = np.nan
            values = pd.DataFrame(values).interpolate(axis=1, limit_direction="both").to_numpy()
            filled = (int(dry.sum()), int(dry.any(axis=1).sum()))
        if np.isnan(values).any():
            bad = coarse.seg_ids[np.isnan(values).any(axis=1)]
            raise DataError(f"{_F_SNTEMP!r} has gaps in {col!r} for segments {format_ids(bad)}")
        out[col] = values.astype(np.float32)
    return out, times, filled


def _enhd_table(comids: set[int], get: _Get) -> pd.DataFrame:
    path = get(_F_ENHD)
    enhd = _readers.read_parquet(path)
    enhd.columns = [str(c).lower() for c in enhd.columns]
    _need_columns(enhd, {"comid", "tocomid", "lengthkm", "hydroseq"}, path)
    enhd = enhd[enhd["comid"].astype(np.int64).isin(comids)]
    slope = enhd["slope"].astype(float) if "slope" in enhd else np.nan
    return pd.DataFrame({
        "comid": enhd["comid"].astype(np.int64),
        "to": enhd["tocomid"].fillna(0).astype(np.int64),
        "length_m": enhd["lengthkm"].astype(float) * 1000.0,
        "slope": slope,
        "elevation_m": np.nan,
        "width_m": np.nan,
        # Hydrologic sequence numbers decrease downstream, so ascending -hydroseq
        # lists reaches upstream first.
        "order_key": -enhd["hydroseq"].astype(float),
    }).reset_index(drop=True)
