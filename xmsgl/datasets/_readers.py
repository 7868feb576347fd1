"""Readers for the file formats of the Delaware River Basin sources.

Each reader takes a local path, returns plain pandas or xarray objects, and turns
any failure to parse into a :class:`~xmsgl.exceptions.DataError` that names the file
and says how to recover (usually: delete the file and fetch it again). Optional
dependencies (``pyreadr``, ``rdata``, ``pyarrow``) are imported inside the reader
that needs them, with an install hint when they are missing.

A CSV file inside a zip archive is read in place by :func:`read_zipped_csv`; zip
archives are extracted by :func:`extract_zip`, which refuses members that would land
outside the destination folder and never leaves a half-extracted folder behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from xmsgl.exceptions import DataError, ignoring

__all__ = [
    "read_rds_frame",
    "read_rds_object",
    "read_feather",
    "read_csv",
    "read_parquet",
    "open_netcdf",
    "extract_zip",
    "read_zipped_csv",
]


def _refetch_hint(path: Path) -> str:
    return (
        f"the file may be truncated or corrupt: delete {str(path)!r} and fetch it again "
        f"with `xmsgl fetch-data` (or xmsgl.datasets.drb.fetch)"
    )


@contextlib.contextmanager
def _reading(path: Path, what: str) -> Iterator[None]:
    """Turn any parser failure into a DataError naming the file."""
    if not path.is_file():
        raise DataError(f"{what} file {str(path)!r} does not exist; fetch it with `xmsgl fetch-data`")
    try:
        yield
    except DataError:
        raise
    except ImportError:
        raise
    except Exception as err:  # parsers raise many unrelated types on bad bytes
        raise DataError(
            f"could not read {what} file {str(path)!r} ({type(err).__name__}: {err}); "
            + _refetch_hint(path)
        ) from err


def _require(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(
            f"reading this file needs the optional dependency {module!r}; install it with "
            f"`pip install {extra}`"
        ) from err


def read_rds_frame(path: Path) -> pd.DataFrame:
    """Read an R ``.rds`` file holding a plain data.frame (with ``pyreadr``).

    Parameters
    ----------
    path : pathlib.Path
        The ``.rds`` file.

    Returns
    -------
    pandas.DataFrame
    """
    pyreadr = _require("pyreadr", "pyreadr")
    with _reading(path, "R data"):
        result = pyreadr.read_r(str(path))
        frame = result[None]
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"R data file {str(path)!r} does not hold a data.frame")
    return frame


def read_rds_object(path: Path) -> Any:
    """Read an R ``.rds`` file holding a list or an ``sf`` table (with ``rdata``).

    ``pyreadr`` cannot read ``sf`` objects or lists of data.frames; ``rdata`` can,
    and converts them to dicts and data frames. Geometry columns come back as raw R
    objects and are not used by xmsgl. rdata warns about every R class it has no
    Python constructor for (``sf``, ``sfc``, ``units``...); those warnings are
    expected and silenced here.

    Parameters
    ----------
    path : pathlib.Path
        The ``.rds`` file.

    Returns
    -------
    object
        A :class:`pandas.DataFrame` for a table, a dict for a list.
    """
    rdata = _require("rdata", "rdata")
    with _reading(path, "R data"), ignoring(Warning):
        return rdata.read_rds(str(path))


def read_feather(path: Path) -> pd.DataFrame:
    """Read an Arrow feather file (needs ``pyarrow``)."""
    _require("pyarrow", "pyarrow")
    with _reading(path, "feather"):
        return pd.read_feather(path)


def read_parquet(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a parquet file (needs ``pyarrow``), optionally only some columns."""
    _require("pyarrow", "pyarrow")
    with _reading(path, "parquet"):
        return pd.read_parquet(path, columns=columns)


def read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    """Read a CSV file with :func:`pandas.read_csv`."""
    with _reading(path, "CSV"):
        return pd.read_csv(path, **kwargs)


def read_zipped_csv(archive: Path, member: str, **kwargs: Any) -> pd.DataFrame:
    """Read the CSV file ``member`` of the zip ``archive`` with :func:`pandas.read_csv`,
    straight from the archive (nothing is extracted to disk).

    Raises
    ------
    DataError
        When the archive is not a readable zip, lacks ``member``, or the CSV cannot be
        parsed; naming the archive and how to fetch it again.
    """
    with _reading(archive, "zip"):
        with zipfile.ZipFile(archive) as zf:
            names = [i.filename for i in zf.infolist() if not i.is_dir()]
            if member not in names:
                raise DataError(f"zip archive {str(archive)!r} has no member {member!r}; it holds "
                                f"{names[:10]}: " + _refetch_hint(archive))
            with zf.open(member) as src:
                return pd.read_csv(src, **kwargs)


def open_netcdf(path: Path, variables: list[str] | None = None) -> xr.Dataset:
    """Open a netCDF file and load it (or only ``variables``) into memory.

    The files here are a few MB; loading only what is used skips decoding large
    character variables (RouteLink's gage ids) that xmsgl never reads.
    """
    with _reading(path, "netCDF"), xr.open_dataset(path, engine="netcdf4") as ds:
        if variables is not None:
            missing = sorted(set(variables) - set(map(str, ds.variables)))
            if missing:
                raise DataError(
                    f"netCDF file {str(path)!r} lacks variable(s) {missing}; it is not the "
                    f"registered version: delete it and fetch it again"
                )
            ds = ds[variables]
        return ds.load()


def _safe_member_path(dest: Path, name: str, archive: Path) -> Path:
    # Zip member names are untrusted: an absolute name or one with '..' could write
    # anywhere on disk ("zip slip"), so each is resolved and must stay under dest.
    target = (dest / name).resolve()
    root = dest.resolve()
    if name.startswith(("/", "\\")) or (target != root and root not in target.parents):
        raise DataError(
            f"zip archive {str(archive)!r} holds member {name!r} that would be written "
            f"outside the folder {str(dest)!r}; the archive was refused and nothing was "
            f"extracted. Delete it and fetch it again from its registered URL"
        )
    return target


def extract_zip(archive: Path, dest: Path, members: list[str] | None = None) -> list[Path]:
    """Extract ``archive`` into the folder ``dest`` safely and atomically.

    Every member name is checked before anything is written: a member that would land
    outside ``dest`` (absolute names, ``..``) makes the whole archive be refused. The
    members are first extracted into a temporary folder next to ``dest`` and moved in
    place only when all of them were read without error, so a truncated or corrupt
    archive never leaves a half-extracted folder behind.

    Parameters
    ----------
    archive : pathlib.Path
        The zip file.
    dest : pathlib.Path
        The folder to extract into (created when missing; it must not exist yet or be
        empty of the archive's members, which are replaced).
    members : list of str, optional
        Extract only these members (default: all files).

    Returns
    -------
    list of pathlib.Path
        The extracted files.

    Raises
    ------
    DataError
        When the archive is not a valid zip file, is truncated, misses a requested
        member or holds a member that would escape ``dest``.
    """
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(
            f"{str(archive)!r} is not a readable zip archive ({err}); " + _refetch_hint(archive)
        ) from err
    with zf:
        names = [i.filename for i in zf.infolist() if not i.is_dir()]
        wanted = names if members is None else list(members)
        missing = sorted(set(wanted) - set(names))
        if missing:
            raise DataError(
                f"zip archive {str(archive)!r} has no member(s) {missing}; it holds {names[:10]}"
            )
        for name in wanted:
            _safe_member_path(dest, name, archive)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
        try:
            out: list[Path] = []
            for name in wanted:
                target = _safe_member_path(tmp, name, archive)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(name) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                out.append(Path(name))
            # Every destination is judged before any member moves: one that cannot be
            # replaced by a file (a folder, or a file where a folder must be) would
            # otherwise stop the moves halfway, with the earlier members replaced.
            blocked = [str(rel) for rel in out
                       if (dest / rel).is_dir()
                       or any((dest / p).exists() and not (dest / p).is_dir() for p in rel.parents
                              if str(p) != ".")]
            if blocked:
                raise DataError(
                    f"cannot extract zip archive {str(archive)!r} into {str(dest)!r}: "
                    f"{blocked[:5]} would replace a folder or need one where a file is; "
                    "nothing was changed: move them aside or extract elsewhere")
            dest.mkdir(parents=True, exist_ok=True)
            for rel in out:
                final = dest / rel
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / rel, final)
        except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile, RuntimeError,
                NotImplementedError) as err:
            # RuntimeError: an encrypted member; NotImplementedError: a compression
            # method zipfile cannot read.
            raise DataError(
                f"could not extract zip archive {str(archive)!r} ({type(err).__name__}: {err}); "
                + _refetch_hint(archive)
            ) from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return [dest / rel for rel in out]
