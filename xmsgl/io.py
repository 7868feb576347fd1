"""Writing outputs without losing data.

Downscaled temperatures are often written next to the files they were computed
from, sometimes with the same name. These helpers make the two ways of losing data
impossible by default:

* **No accidental overwrite.** An existing file or store is replaced only with
  ``overwrite=True``, and the file a dataset was read from is never replaced (its
  values may still be read lazily from it while the new file is written).
* **No half file.** Everything is written to a temporary name in the destination
  folder and renamed into place with :func:`os.replace` only once the writer has
  finished. A crash, an exception or a killed process leaves the previous file
  intact, and at most a hidden ``.<name>.<random>.tmp`` entry behind (with, for a
  delayed write, ``compute=False``, its ``.tmp.pending`` marker), which can be
  deleted. A folder (a zarr store, a saved model) replacing an existing one is
  swapped with it in one atomic step on Linux (``renameat2`` with
  ``RENAME_EXCHANGE``); where the system or the file system cannot, the old one is
  renamed aside first, and a process killed between the two renames leaves the old
  one at a hidden ``.<name>.<random>.old`` and nothing at the path; reading the path
  then fails with a message that names that entry (:func:`left_aside`).

A symbolic link at the output path counts as an existing entry, even when what it
points to does not exist. With ``overwrite=True`` the link itself is replaced by the
new file or store; what it pointed to is left untouched (writing through the link
would replace data kept elsewhere, in a folder the caller never named).

Renames are atomic within one file system, which is why the temporary name lives in
the destination folder rather than in ``/tmp``. Every path argument may start with
``~`` (the user's home folder).

Delayed writes (``compute=False``) keep both promises: the returned
:class:`dask.delayed.Delayed` writes to the temporary name and renames it into place
as its last step, so the output appears only once its values are all written. Until
it is computed (or if its computation fails) the output does not exist and only the
hidden temporary entry does; a delayed write that is dropped without being computed
leaves that entry and its marker behind, to be deleted by hand. Computed a second
time, it fails before any of its work runs.

Examples
--------
>>> import os, tempfile, xarray as xr
>>> from xmsgl.io import atomic_write
>>> folder = tempfile.mkdtemp()
>>> target = os.path.join(folder, "out.txt")
>>> with atomic_write(target) as tmp:
...     _ = tmp.write_text("done")
>>> open(target).read()
'done'
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import re
import secrets
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import xarray as xr

from xmsgl.exceptions import (
    DataError,
    ModelMismatchError,
    ParameterError,
    XmsglError,
    XmsglWarning,
    check_flag,
    did_you_mean,
    ignoring,
    typed_arguments,
    warn_at_user,
)

if TYPE_CHECKING:
    from dask.delayed import Delayed

__all__ = ["append_zarr", "atomic_write", "compressed_encoding", "output_folder", "output_path", "to_netcdf_safe",
           "to_zarr_safe", "write_model_folder"]

PathLike = str | os.PathLike[str]
_T = TypeVar("_T")


def _remove(path: Path) -> None:
    """Remove a file or a folder tree if it exists; never raise."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:  # best effort: a leftover temporary entry is harmless
        pass


#: After a failed write, how long the temporary entry must stay gone before it is
#: taken as removed, and how long to keep removing it at most (seconds).
_SETTLE_S, _SETTLE_LIMIT_S = 1.0, 60.0


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM off while a failed write's temporary entry is removed: a
    second Ctrl-C used to stop the removal half-way and leave the entry behind. Where
    signals cannot be set (a thread other than the main one), nothing changes."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [n for n in ("SIGINT", "SIGTERM") if hasattr(signal, n)]
    old = {n: signal.signal(getattr(signal, n), signal.SIG_IGN) for n in names}
    try:
        yield
    finally:
        for n, handler in old.items():
            signal.signal(getattr(signal, n), handler)


def _discard(tmp: Path, made: list[Path]) -> None:
    """Remove a failed write's temporary entry and the folders ``made`` for it, with
    Ctrl-C and SIGTERM held off until done (:func:`_uninterrupted`)."""
    with _uninterrupted():
        _remove(tmp)
        _remove_empty(made)  # the folders this write made for nothing


def _is_dask(obj: Any) -> bool:
    """Whether any variable of ``obj`` (a Dataset or DataArray) is dask-backed."""
    if isinstance(obj, xr.DataArray):
        return obj.chunks is not None
    return any(v.chunks is not None for v in obj.variables.values())


def _compute_waited(write: Callable[[bool], Any], lazy: bool) -> Any:
    """Run ``write(compute)`` now; a dask-backed one, where the threaded scheduler is in
    use with its own pool, on a pool of the write's own, passed to this compute alone.

    When one task of a dask-backed write fails, the threaded scheduler raises at once
    while its other threads finish the tasks they hold, which then write their chunks
    into the temporary entry: a block of inference can take seconds, so the entry came
    back after its removal. The pool's tasks are waited for (at most
    :data:`_SETTLE_LIMIT_S`; a second Ctrl-C stops the wait) before the caller removes
    it. dask's configuration is not touched: other computes of the process, and the
    write's own tasks if they compute something, run as they would have. Another
    scheduler, or a pool set in dask's configuration, is used as it is.
    """
    if not lazy:
        return write(True)
    import dask
    import dask.threaded
    from dask.base import get_scheduler

    if get_scheduler() not in (None, dask.threaded.get) or dask.config.get("pool", None) is not None:
        return write(True)
    from concurrent.futures import ThreadPoolExecutor, wait

    from dask.system import CPU_COUNT

    # dask's own pool class carries context variables into its threads, as its default does.
    base: Any = getattr(dask.threaded, "ContextAwareThreadPoolExecutor", ThreadPoolExecutor)

    class Pool(base):  # type: ignore[misc, valid-type]
        """A thread pool that keeps the futures of what it runs until they are done (a
        done future holds its task's result: keeping them all held every chunk computed,
        4.9 GB against 0.3 for a 1.6 GB store whose chunks feed two variables)."""

        def __init__(self, workers: int) -> None:
            super().__init__(workers)
            self._lock = threading.Lock()
            self._pending: set[Any] = set()

        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            future = super().submit(fn, *args, **kwargs)
            with self._lock:
                self._pending.add(future)
            future.add_done_callback(self._done)
            return future

        def _done(self, future: Any) -> None:
            with self._lock:
                self._pending.discard(future)

        def pending(self) -> list[Any]:
            with self._lock:
                return list(self._pending)

    pool = Pool(int(dask.config.get("num_workers", None) or CPU_COUNT))
    try:
        return write(False).compute(scheduler="threads", pool=pool)
    except BaseException:
        pending = pool.pending()
        for future in pending:
            future.cancel()  # those not started
        try:
            wait(pending, timeout=_SETTLE_LIMIT_S)
        except KeyboardInterrupt:  # a second Ctrl-C: remove what is there now
            pass
        raise
    finally:
        pool.shutdown(wait=False)


def _remove_settled(path: Path) -> None:
    """Remove ``path`` and keep removing it until it stays gone for :data:`_SETTLE_S`.

    When one chunk of a dask-backed write fails, the threaded scheduler raises at
    once while its other threads go on writing their chunks, which recreate the
    temporary store's folders after a first removal. Best effort, bounded by
    :data:`_SETTLE_LIMIT_S`.
    """
    _remove(path)
    start = quiet = time.monotonic()
    while time.monotonic() - quiet < _SETTLE_S and time.monotonic() - start < _SETTLE_LIMIT_S:
        time.sleep(0.05)
        if os.path.lexists(path):
            _remove(path)
            quiet = time.monotonic()


def _refuse_existing(path: Path) -> None:
    raise ParameterError(
        f"{str(path)!r} already exists and was not replaced; pass overwrite=True to replace "
        f"it, or write to another path"
    )


def _named(name: str, text: str) -> str:
    """How a message names an argument: ``name='x'``, or ``--option 'x'`` for a command option."""
    return f"{name} {text!r}" if name.startswith("-") else f"{name}={text!r}"


#: A URL's scheme (``s3://``, ``gs://``, ``https://``, ``file://``), also as
#: :class:`pathlib.Path` writes it (``s3:/bucket``), or an fsspec chain
#: (``simplecache::s3://``): not a local path. (A one-letter scheme is a drive.)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/|^[A-Za-z][A-Za-z0-9+.-]*::")


def output_path(path: object, name: str = "path") -> Path:
    """The output path ``path`` (argument ``name``) as a :class:`~pathlib.Path`, ``~`` expanded.

    Anything that is not a str or :class:`os.PathLike` naming a text path is refused,
    and so is a path below an existing file (``afile/x.nc``) or a symbolic link to
    nothing, which no folder can be created for.

    Examples
    --------
    >>> output_path("~/out.nc") == Path.home() / "out.nc"
    True
    >>> output_path(None)
    Traceback (most recent call last):
    ...
    xmsgl.exceptions.ParameterError: path=None is not a file path; give a str or pathlib.Path
    """
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else None
    if not isinstance(text, str):
        raise ParameterError(f"{name}={path!r} is not a file path; give a str or pathlib.Path")
    if not text:
        raise ParameterError(f"{name}='' is empty; give a file path")
    if "\0" in text:
        raise ParameterError(f"{name}={text!r} holds a NUL character, which no file name can")
    if _URL.match(text):
        raise ParameterError(
            f"{_named(name, text)} is a URL; xmsgl writes to local paths only (the write-then-"
            f"rename that keeps a file whole needs a file system): write to a local path and "
            f"copy it, or write the object store with xarray itself (ds.to_zarr(url, ...)), "
            f"which is not atomic"
        )
    final = expand_home(Path(text), name or "the path")
    for folder in final.parents:
        if folder.exists():
            if not folder.is_dir():
                raise ParameterError(
                    f"{_named(name, text)} cannot be written: {str(folder)!r} is a file, not a "
                    f"folder; choose another {name}"
                )
            break
        if folder.is_symlink():
            # A link to nothing: no folder can be made in its place (FileExistsError).
            raise ParameterError(
                f"{_named(name, text)} cannot be written: {str(folder)!r} is a symbolic link to "
                f"{os.readlink(folder)!r}, which does not exist; create that folder or choose "
                f"another {name}")
    return final


def names_a_folder(text: str) -> bool:
    """Whether a path as typed can only name a folder: it ends in a separator, ``.``
    or ``..`` (``"pred/"``, ``"pred/."``, ``"."``). Whether it exists is not looked at.

    Examples
    --------
    >>> [names_a_folder(t) for t in ("pred.nc", "pred/", "pred/.", "..")]
    [False, True, True, True]
    """
    seps = "/" + os.sep
    return text.endswith(tuple(seps)) or os.path.basename(text.rstrip(seps)) in ("", ".", "..")


def output_folder(path: object, name: str = "folder") -> Path:
    """:func:`output_path` for a folder: a new one, or an existing one that is not a file."""
    final = output_path(path, name)
    if os.path.lexists(final) and not final.exists():
        # A link to nothing: creating the folder there would fail with a bare OSError.
        raise ParameterError(f"{_named(name, os.fspath(final))} is a symbolic link to "
                             f"{os.readlink(final)!r}, which does not exist; choose another {name} "
                             "or remove the link")
    if final.exists() and not final.is_dir():
        raise ParameterError(f"{_named(name, os.fspath(final))} is a file, not a folder; "
                             f"choose another {name}")
    # The folder itself, and any above it: not a store or a saved model to write into.
    _refuse_inside_saved(final, itself=True)
    return final


def _fsync(path: Path) -> None:
    # Without this, a power loss shortly after the rename can leave the new name
    # pointing at an empty file on some file systems.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def model_path(path: object, what: str = "model") -> Path:
    """``path`` as a :class:`~pathlib.Path` with ``~`` expanded; anything else is refused.

    Examples
    --------
    >>> model_path(None)
    Traceback (most recent call last):
    ...
    xmsgl.exceptions.ParameterError: None is not a path to a model folder; give a str or pathlib.Path (or a fitted model object)
    """
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        # A short repr names a value (None, 3); a long one (a Dataset given where the
        # model belongs) would bury the point, so its type is named instead.
        shown = repr(path)
        shown = shown if len(shown) <= 80 and "\n" not in shown else f"a {type(path).__name__}"
        raise ParameterError(f"{shown} is not a path to a {what} folder; give a str or "
                             f"pathlib.Path (or a fitted {what} object)")
    if "\0" in str(os.fspath(path)):
        raise ParameterError(f"{path!r} holds a NUL character, which no folder name can")
    if not str(os.fspath(path)):
        # Path("") is the current folder: an unset variable would load whatever is here.
        raise ParameterError(f"{path!r} is empty; give the path to a {what} folder")
    return expand_home(Path(os.fspath(path)), "the path")


def expand_home(path: Path, what: str) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded, or a :class:`ParameterError`
    naming it where there is no such home folder (Python's ``RuntimeError`` said only
    "Could not determine home directory")."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise ParameterError(f"{what} {str(path)!r} starts with {path.parts[0]!r}, but there is no "
                             "such home folder here; give the full path") from None


#: What each saved-folder format of xmsgl holds: its ``config.json`` ``"format"``
#: and the names of the files written next to it (by :mod:`xmsgl.nn.weights` for
#: models and the GRU baseline, by :meth:`xmsgl.baselines.BaselineModel.save`).
#: A folder is replaced by a new save only when it matches one of these exactly.
_SAVED_FOLDERS: dict[str, frozenset[str]] = {
    "xmsgl-model": frozenset({"config.json", "weights.pt"}),
    "xmsgl-gru": frozenset({"config.json", "weights.pt"}),
    "xmsgl-baseline": frozenset({"config.json", "arrays.npz"}),
}


def _not_a_model_folder(folder: Path) -> str | None:
    """Why the existing ``folder`` may not be replaced by a saved model, or None if it may.

    It may when its ``config.json`` is JSON with a ``"format"`` that xmsgl writes and
    it holds no other entry than the files of that format: a folder that merely has a
    ``config.json`` (a project, a data folder) is never deleted by a save.
    """
    if not folder.is_dir():
        # Gone since it was seen (another writer moved it): nothing left to protect.
        if not os.path.lexists(folder):
            return None
        if not folder.is_dir():  # not one that came back meanwhile either
            return "it is not a folder"
    try:
        config = json.loads((folder / "config.json").read_bytes())
    except FileNotFoundError:
        if not os.path.lexists(folder):
            return None
        return "it has no config.json"
    except (OSError, ValueError) as err:
        return f"its config.json cannot be read as JSON ({type(err).__name__})"
    kind = config.get("format") if isinstance(config, dict) else None
    if not isinstance(kind, str) or kind not in _SAVED_FOLDERS:
        return f"its config.json has format {kind!r}, not one of {sorted(_SAVED_FOLDERS)}"
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return None  # moved away meanwhile
    except OSError as err:
        return f"its content cannot be listed ({type(err).__name__})"
    foreign = sorted(e.name for e in entries
                     if e.name not in _SAVED_FOLDERS[kind] or (e.is_dir() and not e.is_symlink()))
    if foreign:
        shown = ", ".join(repr(n) for n in foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        return f"it also holds {shown}, which a saved {kind!r} folder never holds"
    return None


def _complete_saved_folder(folder: Path, config: dict[str, Any]) -> bool:
    """Whether ``folder`` holds every file of its saved format and nothing else."""
    names = _SAVED_FOLDERS.get(str(config.get("format")))
    try:
        entries = list(folder.iterdir())
        return (names is not None and all(e.is_file() and not e.is_symlink() for e in entries)
                and {e.name for e in entries} == set(names))
    except OSError:
        return False


def _refuse_model_folder(final: Path, what: str, found: Path | None = None) -> None:
    """Raise unless ``final`` is free or an xmsgl saved folder that a save may replace.

    ``found`` is where the existing entry is now, when it was moved aside from ``final``.
    """
    entry = final if found is None else found
    if not os.path.lexists(entry):
        return
    reason: str | None
    if entry.is_symlink() and not entry.exists():
        reason = f"it is a symbolic link to {os.readlink(entry)!r}, which does not exist"
    else:
        reason = _not_a_model_folder(entry)
    if reason is not None:
        raise ParameterError(f"{str(final)!r} exists and is not an xmsgl {what} folder ({reason}); "
                             "choose another path or remove it")


def _saved_config(folder: Path) -> dict[str, Any] | None:
    """The ``config.json`` of a saved folder (which holds the sha256 of the weights or
    arrays beside it), or None where it cannot be read as a JSON object."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def _refuse_another_model(final: Path, folder: Path, what: str,
                          same: Callable[[dict[str, Any]], bool] | None) -> None:
    """Refuse to replace, without ``overwrite``, the saved folder ``folder`` (at
    ``final``, or moved aside from it) unless it holds the same model, ``same`` of its
    ``config.json`` being true."""
    old = _saved_config(folder)
    if old is not None and same is not None and same(old):
        return
    said = "" if old is None else f" (method {old.get('method')!r}, created {old.get('created', '?')})"
    # Named by what is there, not by what is being saved.
    there = {"xmsgl-model": "model", "xmsgl-gru": "baseline",
             "xmsgl-baseline": "baseline"}.get(str((old or {}).get("format")), what)
    raise ParameterError(
        f"{str(final)!r} holds another saved {there}{said}, which outputs may cite by its "
        f"sha256; pass overwrite=True to replace it, or save to another folder")


def write_model_folder(path: PathLike, files: dict[str, bytes], what: str = "model",
                       overwrite: bool = True,
                       same: Callable[[dict[str, Any]], bool] | None = None) -> Path:
    """Write a saved-model folder (file name -> contents) in one atomic move.

    An existing xmsgl folder at ``path`` is replaced: one whose ``config.json`` names
    a format xmsgl writes (``"xmsgl-model"``, ``"xmsgl-gru"``, ``"xmsgl-baseline"``)
    and that holds nothing but the files of that format (``config.json`` with
    ``weights.pt``, or with ``arrays.npz`` for a baseline). Through a symbolic link
    to one, the link is replaced and the folder it points to is left as it was. Any
    other existing path (a folder that merely holds a ``config.json``, a model folder
    with a file of the user's added, a dangling link) raises
    :class:`~xmsgl.exceptions.ParameterError` naming ``what`` (``"model"``,
    ``"baseline"``...), and nothing is deleted. The check is made again on the old
    folder once it is moved aside, just before it is deleted, and when that fails
    the old folder is moved back as it was. Every file is flushed to disk before the
    folder is renamed into place, so a reader never sees half a folder and a save
    killed midway leaves the previous one intact. With ``overwrite=False`` (a bool,
    as every ``overwrite`` of xmsgl) an existing folder is replaced only when it holds
    the same saved model, ``same(config)`` of its ``config.json`` being true (never
    without ``same``); another one raises :class:`~xmsgl.exceptions.ParameterError`.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "m"
    >>> sorted(p.name for p in write_model_folder(folder, {"config.json": b"{}"}).iterdir())
    ['config.json']
    """
    overwrite = _check_overwrite(overwrite)
    final = model_path(path)
    _refuse_model_folder(final, what)
    if not overwrite and os.path.lexists(final):
        _refuse_another_model(final, final, what, same)
    # A folder that cannot be written, found before anything is made (the temporary
    # folder's PermissionError named a hidden path); a file above the path is named
    # as such first (output_path).
    refuse_unwritable(output_path(final), str(path), "path")
    # The same checks, on the old folder after it is moved aside: another process
    # may have put something at the path while the new folder was being written
    # (two saves to one path at once: the second finds the first's model there).
    def replaceable(old: Path) -> None:
        _refuse_model_folder(final, what, found=old)
        if not overwrite:
            _refuse_another_model(final, old, what, same)

    made = _missing_folders(output_path(final))
    tmp = _prepare(output_path(final), overwrite=True)
    try:
        tmp.mkdir()
        for name, data in files.items():
            with open(tmp / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
    except BaseException:
        _discard(tmp, made)
        raise
    try:
        return _commit(None, tmp, final, True, check_old=replaceable, made=made)
    except _LostRace as err:
        # Another save's rename put its folder there first: when that is the same model,
        # whole (two processes saving one model), it is what this save was to leave.
        # Not for any other failure (an interruption, a refused overwrite).
        cause = err.__cause__
        collided = isinstance(cause, OSError) and cause.errno in _TAKEN
        there = _saved_config(final) if collided else None
        if (there is not None and same is not None and same(there)
                and _complete_saved_folder(final, there)):
            return final
        raise


@contextlib.contextmanager
def atomic_write(path: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Write ``path`` all at once: yield a temporary path, rename it into place on success.

    The temporary path is in the same folder as ``path`` and does not exist yet:
    the block creates it (a file, or a folder such as a zarr store). When the block
    finishes, the temporary entry replaces ``path`` with :func:`os.replace`; when it
    raises, or the process dies, ``path`` is left exactly as it was. A symbolic link
    at ``path`` is an existing entry (even when it points nowhere): with ``overwrite``
    the link itself is replaced, and what it points to is left untouched.

    Parameters
    ----------
    path : str or os.PathLike
        The final file or folder. Its parent folder is created when missing.
    overwrite : bool, default False
        Replace ``path`` when it already exists (a symbolic link: the link, not
        what it points to). Without it an existing ``path``, a dangling link
        included, makes the call fail before anything is written.

    Yields
    ------
    pathlib.Path
        The temporary path to write to.

    Raises
    ------
    ParameterError
        When ``path`` exists (or is a symbolic link) and ``overwrite`` is False, or
        when it is a folder and the new entry is a file (or the reverse; a link may
        be replaced by either).
    XmsglError
        When the block wrote nothing at the temporary path.

    Examples
    --------
    >>> import os, tempfile
    >>> from xmsgl.io import atomic_write
    >>> target = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> with atomic_write(target) as tmp:
    ...     _ = tmp.write_text("one")
    >>> with atomic_write(target, overwrite=True) as tmp:
    ...     _ = tmp.write_text("two")
    >>> open(target).read()
    'two'
    """
    final = output_path(path)
    made = _missing_folders(final)
    tmp = _prepare(final, _check_overwrite(overwrite))
    try:
        yield tmp
    except BaseException:
        _discard(tmp, made)
        raise
    _commit(None, tmp, final, overwrite, made=made)


def _missing_folders(final: Path) -> list[Path]:
    """The folders above ``final`` that do not exist yet, deepest first: those a write
    creates, and removes again (when still empty) if it fails."""
    missing = []
    for folder in final.parents:
        if os.path.lexists(folder):
            break
        missing.append(folder)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) that are empty; leave any other alone."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (another writer's file), or already gone
            return


def _prepare(final: Path, overwrite: bool) -> Path:
    """Check ``final`` can be written, create its folder, and return a temporary name."""
    _refuse_inside_saved(final)  # every writer: not into a zarr store or a saved model
    # lexists, not exists: a dangling symbolic link is an entry the rename would
    # replace, so it is refused like any other (the CLI's --out check does the same).
    if os.path.lexists(final) and not overwrite:
        _refuse_existing(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.parent / _hidden_name(final, "tmp")


#: Longest file name most file systems take, in bytes.
_NAME_MAX = 255


def _hidden_name(final: Path, kind: str) -> str:
    """A hidden name beside ``final``: ``.<name>.<random>.<kind>``, with the name cut
    (to whole characters) so that it and a ``.pending`` marker stay within
    :data:`_NAME_MAX` bytes: a target name near the limit could not be written."""
    suffix = f".{secrets.token_hex(6)}.{kind}"
    room = _NAME_MAX - len(".pending") - len(suffix.encode()) - 1
    name = final.name.encode()[:room].decode(errors="ignore")  # a cut character dropped
    return f".{name}{suffix}"


#: :func:`_hidden_name`'s temporary names (``.<name>.<12 hex digits>.tmp``) in a path.
_TEMPORARY = re.compile(r"(?:^|/)\.(?P<name>[^/]+)\.[0-9a-f]{12}\.tmp(?:/|$)")


def temporary_of(path: str) -> tuple[str, str] | None:
    """``(entry, name)`` where ``path`` is, or lies inside, the temporary entry a write
    makes beside its output (``entry`` that entry's path, ``name`` the output's name, cut
    where :func:`_hidden_name` cut it); None for any other path.

    >>> temporary_of("/data/.out.zarr.0123456789ab.tmp/t/c/0")
    ('/data/.out.zarr.0123456789ab.tmp', 'out.zarr')
    """
    found = _TEMPORARY.search(path)
    if found is None:
        return None
    return path[:found.end()].rstrip("/"), found["name"]


def left_aside(final: Path) -> Path | None:
    """The entry a replacing write moved aside from ``final`` and was stopped before
    putting its own in place (a process killed between the two renames where a folder
    cannot be swapped in one step): the newest ``.<name>.<random>.old`` beside it, or
    None. Where nothing is at ``final``, a message that it does not exist names this
    entry, so that what was there can be moved back.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     (Path(d) / ".store.zarr.0123456789ab.old").mkdir()
    ...     left_aside(Path(d) / "store.zarr").name
    '.store.zarr.0123456789ab.old'
    """
    cut = _hidden_name(final, "old")[: -len(".0123456789ab.old")]
    found = []
    try:
        with os.scandir(final.parent) as entries:
            for entry in entries:
                rest = entry.name[len(cut):]
                if (entry.name.startswith(cut) and len(rest) == 17 and rest.endswith(".old")
                        and rest[0] == "." and all(c in "0123456789abcdef" for c in rest[1:13])):
                    found.append(Path(entry.path))
    except OSError:
        return None
    if not found:
        return None

    def mtime(p: Path) -> float:
        try:
            return p.lstat().st_mtime
        except OSError:
            return 0.0

    return max(found, key=mtime)


def missing_hint(final: Path) -> str:
    """``"; ..."``, naming what an interrupted write left aside from ``final``
    (:func:`left_aside`), to add to a message that ``final`` does not exist; or ``""``."""
    aside = left_aside(final)
    if aside is None:
        return ""
    return (f"; a write replacing it was stopped before it finished and left what was there at "
            f"{str(aside)!r}: move that back to {str(final)!r} (or write anew)")


#: What a rename fails with when another writer has just put an entry at the path.
_TAKEN = frozenset({errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR})


def _renameat2() -> Callable[..., int] | None:
    """glibc's ``renameat2`` (Linux 3.15, glibc 2.28), or None where there is none."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func  # type: ignore[no-any-return]


_AT_FDCWD, _RENAME_NOREPLACE, _RENAME_EXCHANGE = -100, 1, 2
_RENAMEAT2: list[Callable[..., int] | None] = []


def _renameat2_once() -> Callable[..., int] | None:
    """:func:`_renameat2`, looked up at the first call and kept in :data:`_RENAMEAT2`."""
    if not _RENAMEAT2:
        _RENAMEAT2.append(_renameat2())
    return _RENAMEAT2[0]


def refuse_unwritable(out: Path, value: str, option: str) -> None:
    """Refuse, before any work, an output whose folder cannot be written: the writers
    put a temporary entry beside it (in the nearest folder that exists, the others
    made on the way), and found this only once a fit or a sweep was done. A probe
    file is made there and removed at once: permissions alone do not tell (a
    read-only file system, a root user). ``value`` and ``option`` name the output as
    the user gave it (``--out``, ``outdir``)."""
    folder = out.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    failed = _unwritable(folder)
    if failed is not None:
        raise ParameterError(f"{option} {value!r} cannot be written ({failed} in {str(folder)!r}); "
                             f"nothing was done: choose another {option}")


#: The start of xarray's warning on dates beyond 1678-2262 it reads as cftime.
FAR_DATES_NOTE = "Unable to decode time axis into full numpy"


def far_standard_dates(ds: Any) -> bool:
    """Whether ``time`` holds cftime dates of a standard calendar, as xarray decodes dates
    beyond 1678-2262 (where a time unit of seconds, in recent xarray, gives datetime64)."""
    if "time" not in ds.coords or ds["time"].dtype != object or not ds["time"].size:
        return False
    calendar = str(getattr(ds["time"].values.flat[0], "calendar", "")).lower()
    return (calendar in ("standard", "gregorian", "proleptic_gregorian")
            and hasattr(getattr(xr, "coders", None), "CFDatetimeCoder"))


def open_far_dates(opener: Callable[..., xr.Dataset], *args: Any, **options: Any) -> xr.Dataset:
    """``opener(*args, **options)`` (``xr.open_zarr``, say), with a standard calendar's
    dates beyond 1678-2262 as datetime64[s] rather than cftime: in seconds they are
    plain dates, as the API takes them and as a piece of datetime64 dates is written."""
    # Such dates are read again below, in seconds (where they stay cftime, before 1582
    # say, xarray says so again at every read).
    with ignoring(Warning, FAR_DATES_NOTE):
        ds = opener(*args, **options)
        if far_standard_dates(ds):
            ds.close()
            ds = opener(*args, decode_times=xr.coders.CFDatetimeCoder(time_unit="s"), **options)
    return ds


def refuse_unwritable_store(final: Path, dim: str = "time") -> None:
    """Refuse to append to the zarr store ``final`` along ``dim`` where a file cannot
    be made where the append writes: the store's folder (its metadata) and the folders
    of its arrays along ``dim`` (their metadata and chunks; a format 3 array's chunks
    are under ``c``). A store another user owns failed with a bare PermissionError once
    the piece was computed. Arrays without ``dim`` (static ones) are not written, and
    may be another's."""
    names: list[str] = []
    with contextlib.suppress(OSError, ValueError, KeyError):  # unreadable: append_zarr says so
        with xr.open_zarr(final, consolidated=False, decode_times=False) as store:
            names = [str(v) for v in store.variables if dim in store[v].dims]
    folders = [final]
    for name in names:
        folders += [p for p in (final / name, final / name / "c") if p.is_dir() and not p.is_symlink()]
    for folder in folders:
        failed = _unwritable(folder)
        if failed is not None:
            raise ParameterError(f"{str(final)!r} cannot be written ({failed} in {str(folder)!r}); nothing "
                                 "was appended: append as a user who may write the store, or to a copy of it")


def _unwritable(folder: Path) -> str | None:
    """Why a file cannot be made in ``folder`` (a probe, removed at once), or None."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".xmsgl-probe-")
    except OSError as err:
        return str(err.strerror or err)
    os.close(fd)
    os.unlink(probe)
    return None


def give_new_file_mode(path: PathLike) -> None:
    """Give the file ``path``, made through a temporary file (which ``tempfile`` creates
    with mode 0600, readable by its owner alone), the mode a new file gets in its
    folder: that of a probe file made there with 0666 (the umask, and a default ACL,
    applied by the system), so that a group sharing the folder can read it. The umask
    itself is never changed (other threads would make files under the wrong one).
    Never raises: where no probe can be made, or the file is another user's, it keeps
    its mode."""
    folder = Path(path).parent
    probe = folder / f".xmsgl-mode-{secrets.token_hex(6)}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except OSError:
        return
    try:
        mode = os.fstat(fd).st_mode & 0o777
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)
    with contextlib.suppress(OSError):
        os.chmod(path, mode)


def read_saved_folder(path: Path, read: Callable[[Path], _T]) -> _T:
    """``read(path)``, run again where it failed because another process replaced the
    saved folder at ``path`` while it read (a save with ``overwrite=True``): the
    ``config.json`` of one save and the weights of the next do not match, or a file
    was deleted with the old folder. The folder's entry is compared before and after
    the read; a failure where it is the same, or a third failure, is raised as it is."""
    for attempt in range(3):
        before = _identity(path)
        try:
            return read(path)
        except XmsglError:
            if attempt == 2 or before is None or _identity(path) == before:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _identity(path: Path) -> tuple[int, int] | None:
    """The entry at ``path`` (device and inode, the link itself), or None."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _exchange(a: Path, b: Path) -> bool:
    """Swap the entries at ``a`` and ``b`` in one atomic step; False where the system or
    the file system cannot (the caller then renames twice), an OSError for any other
    failure."""
    import ctypes

    func = _renameat2_once()
    if func is None:
        return False
    if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOENT):
        return False  # not supported here, or b vanished meanwhile: rename as before
    raise OSError(err, os.strerror(err), str(b))


def _put_back(old: Path, final: Path) -> None:
    """Move ``old`` back to ``final`` without replacing anything there: an OSError
    (``EEXIST``) where the path was taken meanwhile, by another writer or by the user
    (whose file a plain rename of a link or a file would have deleted unseen)."""
    import ctypes

    func = _renameat2_once()
    if func is not None:
        if func(_AT_FDCWD, os.fsencode(old), _AT_FDCWD, os.fsencode(final), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise OSError(err, os.strerror(err), str(final))
    if old.is_dir() and not old.is_symlink():
        # A folder is renamed over nothing but an empty folder; that one is looked for.
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, "taken meanwhile", str(final))
        os.rename(old, final)
        return
    try:
        os.link(old, final, follow_symlinks=False)  # EEXIST where the path is taken
    except OSError as err:
        if err.errno == errno.EEXIST or not old.is_symlink():
            raise
        # No hard links here (a FUSE mount, a link another user owns under
        # fs.protected_hardlinks): the link is made again, which fails where the path
        # is taken (a rename would replace what is there).
        os.symlink(os.readlink(old), final)
        os.unlink(old)
        return
    os.unlink(old)


def _warn_kept(exc: BaseException, text: str) -> None:
    """Say ``text`` (where an old entry is kept) as an XmsglWarning while ``exc``, an
    interruption, goes on; where warnings are errors (``-W error``), as a note on
    ``exc`` instead (on stderr before Python 3.11), so that the interruption stays
    what it was."""
    try:
        warn_at_user(text, XmsglWarning)
    except Warning:
        note = getattr(exc, "add_note", None)  # Python 3.11 and later
        if note is not None:
            note(text)
        else:
            import sys

            print(f"xmsgl: {text}", file=sys.stderr)


def _remove_replaced(old: Path, final: Path) -> None:
    """Delete ``old``, what was at ``final`` before the new entry took its place,
    with a warning naming it where it cannot be deleted."""
    _remove(old)
    if os.path.lexists(old):
        warn_at_user(
            f"the new {str(final)!r} is in place, but what was there before could not "
            f"be deleted (permissions?) and is kept at {str(old)!r}; delete it yourself",
            XmsglWarning)


class _LostRace(XmsglError):
    """A write that another writer's, at the same path, replaced first."""


def _lost_race(final: Path) -> XmsglError:
    """The error of a write that another writer's, at the same path, replaced first."""
    return _LostRace(f"{str(final)!r} was taken while this write was under way (by another "
                      f"process writing there, or by hand); what is there now is kept and this "
                      f"write was not: write again, replacing it, if this one should win")


def _in_use(final: Path, exc: OSError) -> XmsglError:
    """The error of a rename the system refused at ``final``: on Windows, a file that is
    open (a dataset read with xarray keeps its file open until closed) cannot be
    replaced; elsewhere, a folder that cannot be written."""
    return XmsglError(f"{str(final)!r} could not be replaced ({exc.strerror or exc}); nothing was changed "
                      "there: close what holds it open (ds.close() for a dataset read from it, on "
                      "Windows) or check the folder's permissions, then write again")


def _commit(_written: object, tmp: Path, final: Path, overwrite: bool,
            check_old: Callable[[Path], None] | None = None, pending: Path | None = None,
            made: list[Path] | None = None) -> Path:
    """Move the finished temporary entry ``tmp`` to ``final``; remove ``tmp`` on failure,
    and the folders ``made`` for it (deepest first) when they are still empty.

    ``_written`` is the result of the write (unused): taking it makes a delayed
    commit depend on a delayed write, so the rename runs only after it.
    ``check_old``, when given, is called with an existing folder (or link) once it
    is out of the path (swapped with the new one, or moved aside before it is put in
    place) and before it is deleted; when it raises, the old entry is put back
    unchanged and nothing is deleted. ``pending`` is the marker of a
    delayed write (:func:`_write`): the commit takes it, so that computing the same
    delayed write again (a notebook cell run twice) fails instead of putting the
    chunks it wrote again, without the store's metadata, in place of the store.
    """
    keep_tmp = False  # tmp holds the old entry, which nothing may delete
    try:
        if pending is not None:
            try:
                os.unlink(pending)
            except FileNotFoundError:
                raise XmsglError(
                    f"this delayed write to {str(final)!r} was already computed once, and a "
                    f"delayed write runs only once: what this second run wrote was discarded "
                    f"and {str(final)!r} was left as it was; call the writer again (compute=False "
                    f"gives a new delayed write) to write it anew"
                ) from None
        if not os.path.lexists(tmp):
            raise XmsglError(
                f"nothing was written to the temporary path {str(tmp)!r}; write the output "
                f"there (not to {str(final)!r}) inside the `with atomic_write(...)` block"
            )
        # Checked again: another process may have created the target meanwhile.
        exists, link = os.path.lexists(final), final.is_symlink()
        if exists and not overwrite:
            _refuse_existing(final)
        # A link is replaced itself, never what it points to, so the kind of its
        # target does not matter: nothing of it is lost.
        final_is_dir = final.is_dir()
        if exists and not os.path.lexists(final):
            exists = False  # moved away by another writer since: nothing to replace
        if exists and not link and tmp.is_dir() != final_is_dir:
            raise ParameterError(
                f"cannot replace {str(final)!r} by a {'folder' if tmp.is_dir() else 'file'}: "
                f"it is a {'folder' if final_is_dir else 'file'}; remove it first or write "
                f"elsewhere"
            )
        if tmp.is_file():
            _fsync(tmp)
        if exists and tmp.is_dir() and _exchange(tmp, final):
            # Swapped in one step: the path held the old entry and now holds the new
            # one, with no moment without either; the old one is now at tmp.
            keep_tmp = True
            ours = _identity(final)
            try:
                if check_old is not None:
                    check_old(tmp)
            except BaseException as exc:
                # Swapped back only while the path still holds this write's entry (not
                # one another writer put there meanwhile); else, or where the swap back
                # fails, the old entry is kept under a hidden name, never deleted.
                back = False
                if _identity(final) == ours:
                    try:
                        back = _exchange(tmp, final)
                    except OSError:
                        back = False
                if back:
                    keep_tmp = False  # tmp holds this write's entry again: discarded
                    raise
                kept = final.parent / _hidden_name(final, "old")
                try:
                    os.replace(tmp, kept)
                except OSError:
                    kept = tmp
                if not isinstance(exc, Exception):
                    # Ctrl-C (or an exit) stays what it was; where the old entry is, said.
                    _warn_kept(exc, f"interrupted while {str(final)!r} was being replaced: what "
                                    f"was there is kept at {str(kept)!r}; move it back by hand")
                    raise
                raise XmsglError(
                    f"the check of what was at {str(final)!r} failed after the new entry took its "
                    f"place, and it could not be put back: what was there is kept at "
                    f"{str(kept)!r}; move it back by hand") from exc
            keep_tmp = False
            _remove_replaced(tmp, final)
        elif exists and tmp.is_dir():
            # Where the two cannot be swapped in one step (not Linux, or a file system
            # without it): os.replace cannot put a folder over a non-empty one, nor
            # over a link (Linux refuses to rename a folder over a non-folder), so the
            # old store or link is moved aside first, and deleted only once the new
            # one is in place. A process killed between the two renames leaves the
            # path empty and the old entry at a hidden .<name>.<random>.old.
            # _remove unlinks a link without following it, so its target survives.
            old = final.parent / _hidden_name(final, "old")
            try:
                os.replace(final, old)
                moved = True
            except FileNotFoundError:
                moved = False  # another writer moved it away meanwhile: nothing to keep
            except PermissionError as exc:
                raise _in_use(final, exc) from exc
            checked = check_old is None or not moved
            try:
                if not checked:
                    check_old(old)  # type: ignore[misc]
                    checked = True
                os.replace(tmp, final)
            except BaseException as exc:
                if moved:
                    try:
                        _put_back(old, final)
                    except OSError as back_err:
                        # Taken meanwhile by another writer: theirs stays and this write
                        # is dropped; the entry both replaced goes only where it passed
                        # the check (this write would have deleted it). Else (not
                        # checked, or not put back for another reason: a file system
                        # without hard links, say) it is kept under its hidden name.
                        taken = back_err.errno in _TAKEN and os.path.lexists(final)
                        if checked and taken:
                            _remove(old)
                            if not isinstance(exc, Exception):
                                raise exc from None  # Ctrl-C (or an exit) stays what it was
                            raise _lost_race(final) from exc
                        why = ("another entry took the path meanwhile" if taken
                               else f"{back_err.strerror or back_err}")
                        if not isinstance(exc, Exception):
                            _warn_kept(exc, f"interrupted while {str(final)!r} was being replaced: "
                                            f"what was there could not be put back ({why}) and is "
                                            f"kept at {str(old)!r}; move it back by hand")
                            raise exc from None
                        raise XmsglError(
                            (f"the check of what was at {str(final)!r} failed" if not checked else
                             f"{str(final)!r} could not be written ({exc})")
                            + f", and what was there could not be put back ({why}): it is kept at "
                            f"{str(old)!r}; move it back by hand") from exc
                if isinstance(exc, OSError) and exc.errno in _TAKEN:
                    raise _lost_race(final) from exc
                raise
            if moved:
                _remove_replaced(old, final)
        else:
            # A file (over nothing, a file or a link) is one atomic rename.
            try:
                os.replace(tmp, final)
            except PermissionError as exc:
                raise _in_use(final, exc) from exc
            except OSError as exc:
                if exc.errno in _TAKEN:
                    raise _lost_race(final) from exc
                raise
        _fsync(final.parent)
    except BaseException:
        if not keep_tmp:
            _discard(tmp, made or [])
        raise
    return final


def _write(write: Callable[[Path, bool, bool], Any], final: Path, overwrite: bool, compute: bool,
           check_old: Callable[[Path], None] | None = None, lazy: bool = False) -> Any:
    """Run ``write(tmp, compute, guard)`` and commit; with ``compute=False`` return a
    delayed commit (its chunks guarded: :func:`_guard_chunks`). ``lazy``: the data are
    dask-backed (:func:`_compute_waited`)."""
    made = _missing_folders(final)
    tmp = _prepare(final, overwrite)
    # A marker beside the temporary entry, which the commit of a delayed write takes:
    # a second compute of the same delayed write finds it gone (see _commit). On the
    # file system, so that it holds across the processes of a distributed scheduler.
    pending = _pending_marker(tmp)
    try:
        if not compute:
            pending.touch()
            result = write(tmp, False, True)
        else:
            result = _compute_waited(lambda now: write(tmp, now, False), lazy)
    except BaseException:
        with _uninterrupted():
            _remove_settled(tmp)
            pending.unlink(missing_ok=True)
            _remove_empty(made)  # the folders this write made for nothing
        raise
    if compute:
        return _commit(result, tmp, final, overwrite, check_old, made=made)
    import dask

    # The write's Delayed is an argument, so dask runs it first, and the rename only
    # once every chunk is written. pure=False: two writes never share a key.
    return dask.delayed(_commit, pure=False)(result, tmp, final, overwrite, check_old, pending, made)


def _pending_marker(tmp: Path) -> Path:
    """The marker of a delayed write to the temporary entry ``tmp`` (:func:`_write`)."""
    return tmp.with_name(tmp.name + ".pending")


def _check_pending(pending: str, final: str) -> bool:
    """Whether the delayed write to ``final`` is still pending (its marker exists);
    raises when it was computed once already."""
    if not os.path.exists(pending):
        raise XmsglError(
            f"this delayed write to {final!r} was already computed once, and a delayed write "
            f"runs only once: nothing was written and {final!r} was left as it was; call the "
            f"writer again (compute=False gives a new delayed write) to write it anew"
        )
    return True


def _guard_chunks(obj: xr.Dataset | xr.DataArray, pending: Path, final: Path) -> xr.Dataset | xr.DataArray:
    """``obj`` with its dask graph made to wait for a check of the delayed write's
    ``pending`` marker.

    A delayed write computed a second time then fails before any of its work runs: a
    lazy downscale's inference included (it used to run in full, and a zarr store be
    written to a temporary folder, before the rename found the write already done), and
    xarray's delayed netCDF write, which reopens the file it wrote when computed again
    (by then renamed: a bare ``KeyError``, and a new temporary file left behind).

    Every task of a graph depends, through its ancestors, on tasks that depend on
    nothing; those alone are made to take the check first (:func:`_gated_graph`), and
    every key stays as it was. (``dask.graph_manipulation.bind`` renames every key
    instead, and lost the dependencies of rechunked and fancy-indexed arrays, every
    lazy downscale's output among them.)"""
    import dask
    import dask.array as dask_array
    from dask.base import is_dask_collection

    if not is_dask_collection(obj):
        return obj
    check = dask.delayed(_check_pending, pure=False)(str(pending), str(final))
    check_graph = dict(check.__dask_graph__())
    check_key = check.key
    # A shallow copy has variables of its own (sharing the values): the caller's
    # object keeps its graphs.
    out = obj.copy(deep=False)
    variables = ([out.variable, *(out.coords[k].variable for k in out.coords)]
                 if isinstance(out, xr.DataArray) else list(out.variables.values()))
    for var in variables:
        data = var.data
        if not is_dask_collection(data):
            continue
        graph = _gated_graph(dict(data.__dask_graph__()), check_key)
        graph.update(check_graph)
        var.data = dask_array.Array(graph, data.name, data.chunks, meta=data._meta)
    return out


def _after_check(_check: Any, value: Any) -> Any:
    """The value of a root task, once the delayed write's check has passed."""
    return value


def _gated_graph(graph: dict[Any, Any], check_key: Any) -> dict[Any, Any]:
    """``graph`` with each task that depends on no other now depending on ``check_key``
    (its value computed as before, after the check); the keys are unchanged."""
    from dask.core import get_dependencies

    out = dict(graph)
    spec: Any
    try:
        from dask import _task_spec as spec
    except ImportError:  # dask before 2024.12: tasks are tuples
        spec = None
    for key, task in graph.items():
        if get_dependencies(graph, key):
            continue
        if spec is not None and isinstance(task, spec.GraphNode):
            out[key] = spec.Task(key, _after_check, spec.TaskRef(check_key), task)
        else:
            out[key] = (_after_check, check_key, task)
    return out


def _backend_path(array: Any) -> Any:
    """The file or store an xarray backend array reads, or None when it cannot be told.

    ``array`` is what xarray puts in a lazy variable or in a dask graph: indexing
    adapters around a backend array (zarr's wrapper holds the zarr array, whose store
    has a ``root`` folder; the netCDF wrappers hold their data store, which knows its
    file name).
    """
    for _ in range(16):  # unwrap the indexing adapters (a few levels deep)
        inner = getattr(array, "array", None)
        if inner is None or inner is array:
            break
        array = inner
    zarr_array = getattr(array, "_array", None)
    store = getattr(zarr_array, "store", None)
    for name in ("root", "path"):  # zarr 3's LocalStore; zarr 2's DirectoryStore
        found = getattr(store, name, None)
        if isinstance(found, (str, os.PathLike)) and not str(found).startswith(("memory:", "<")):
            return found
    datastore = getattr(array, "datastore", None)
    filename = getattr(datastore, "_filename", None)
    if isinstance(filename, (str, os.PathLike)):
        return filename
    args = getattr(getattr(datastore, "_manager", None), "_args", None)
    if isinstance(args, tuple) and args and isinstance(args[0], (str, os.PathLike)):
        return args[0]
    return None


def _key_name(key: Any) -> str:
    return str(key[0] if isinstance(key, tuple) and key else key)


def _task_args(task: Any) -> list[Any]:
    """The arguments of a task, old style ``(func, *args)`` or dask's ``Task``."""
    args = task[1:] if isinstance(task, tuple) else getattr(task, "args", ())
    return [getattr(a, "value", a) for a in args]  # dask's DataNode wraps a constant


def _by_name(graph: Any) -> dict[str, dict[Any, Any]]:
    """The tasks of a plain graph grouped by the name of their keys, as layers."""
    layers: dict[str, dict[Any, Any]] = {}
    for key, value in graph.items():
        layers.setdefault(_key_name(key), {})[key] = value
    return layers


def _graph_paths(layers: Any, depth: int = 0) -> list[Any]:
    """Files read by the backend arrays of a dask graph, given as ``{name: tasks}``.

    xarray keeps each backend array in a layer of its own (``original-...``), or
    with ``inline_array=True`` in the tasks of the ``open_dataset-...`` layer.
    xmsgl's lazy downscaling folds the input's reading tasks into its own gather
    tasks (``xmsgl-gather-...``), each carrying the part of the input's graph it
    runs (an object with a ``graph`` mapping): those parts are searched the same way.
    """
    found: list[Any] = []
    for name, tasks in layers.items():
        name = _key_name(name)
        if name.startswith("original-"):
            found += [_backend_path(getattr(v, "value", v)) for v in tasks.values()]
        elif name.startswith("open_dataset-"):
            # Every chunk of one opened variable reads the same array: the first tells.
            first = next(iter(tasks.values()), None)
            found += [_backend_path(a) for a in _task_args(first)]
        elif name.startswith("xmsgl-gather-") and depth < 4:
            for task in tasks.values():
                for arg in _task_args(task):
                    sub = getattr(arg, "graph", None)
                    if isinstance(sub, dict):
                        found += _graph_paths(_by_name(sub), depth + 1)
    return found


def _scan_tasks(graph: Any, per_layer: int = 8, budget: int = 20_000) -> list[Any]:
    """Backend arrays anywhere in the first tasks of every layer of a dask graph.

    The layer names :func:`_graph_paths` knows are gone after ``dask.optimize`` (the
    reading tasks fused into others) or ``chunk(inline_array=True)``: the arrays are
    then arguments, at some depth, of other tasks. Every chunk of a layer reads the
    same files, so a few tasks of each tell."""
    found: list[Any] = []
    seen: set[int] = set()
    stack: list[tuple[Any, int]] = []
    layers = getattr(graph, "layers", None)
    groups = layers.values() if layers is not None else _by_name(graph).values()
    for tasks in groups:
        for i, task in enumerate(tasks.values()):
            if i >= per_layer:
                break
            stack.append((task, 0))
    while stack and budget > 0:
        item, depth = stack.pop()
        budget -= 1
        if item is None or isinstance(item, (str, bytes, int, float, bool)) \
                or type(item).__name__ == "ndarray" or id(item) in seen or depth > 12:
            continue
        seen.add(id(item))
        if any(hasattr(item, a) for a in ("datastore", "_array")) or (
                hasattr(item, "array") and not isinstance(item, (tuple, list, dict))):
            path = _backend_path(item)
            if path is not None:
                found.append(path)
                continue
        if isinstance(item, (tuple, list)):
            stack += [(x, depth + 1) for x in item]
        elif isinstance(item, dict):
            stack += [(x, depth + 1) for x in item.values()]
        else:
            for attr in ("args", "kwargs", "value", "graph", "dsk"):
                inner = getattr(item, attr, None)
                if inner is not None and not callable(inner):
                    stack.append((inner, depth + 1))
            # A functools.partial's keyword arguments.
            keywords = getattr(getattr(item, "func", None), "keywords", None)
            if keywords:
                stack.append((keywords, depth + 1))
    return found


def _lazy_sources(obj: xr.Dataset | xr.DataArray, variables: list[xr.Variable]) -> list[Any]:
    """Files ``obj`` still reads: its variables' own backend arrays, or its dask graph's.

    Results computed from a dataset (a downscaled DataArray, ``ds["a"] * 2``) keep
    no ``source`` in their encoding, but until they are computed they read the
    input (:func:`_graph_paths`). The graph of the whole object is searched once,
    not once per variable (the variables of one computation share it). Best effort:
    an unknown structure tells nothing.
    """
    try:
        found = [_backend_path(v._data) for v in variables if not hasattr(v._data, "__dask_graph__")]
        graph = obj.__dask_graph__()
        if graph is not None:
            layers = getattr(graph, "layers", None)
            found += _graph_paths(layers if layers is not None else _by_name(graph))
            # Layers renamed or fused (dask.optimize, inline_array=True): search the tasks.
            try:
                found += _scan_tasks(graph)
            except Exception:  # noqa: BLE001 - best effort, as the layers' search
                pass
        return found
    except Exception:  # noqa: BLE001 - a layout this xarray or dask version does not have
        return []


def _sources(obj: xr.Dataset | xr.DataArray) -> list[Path]:
    """Files ``obj`` (or any of its variables) was read from or still reads lazily."""
    found: list[Any] = [obj.encoding.get("source")]
    variables = list(obj.variables.values()) if isinstance(obj, xr.Dataset) else [
        obj.variable, *obj.coords.variables.values()]
    found += [v.encoding.get("source") for v in variables]
    found += _lazy_sources(obj, variables)
    return [Path(os.fspath(s)) for s in dict.fromkeys(found) if isinstance(s, (str, os.PathLike))]


def _same_path(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _inside(inner: Path, outer: Path) -> bool:
    """Whether ``inner`` lies inside the folder ``outer`` (links resolved)."""
    try:
        return outer.resolve() in inner.resolve().parents
    except (OSError, RuntimeError):
        return False


def _refuse_source(obj: xr.Dataset | xr.DataArray, path: Path) -> None:
    for source in _sources(obj):
        if _same_path(source, path):
            raise ParameterError(
                f"refusing to write over {str(path)!r}: the data being written were read from "
                f"it (and may still be read from it lazily). Write to another path, close the "
                f"input, then move the new file over the old one yourself"
            )
        inner, outer = (source, path) if _inside(source, path) else (path, source)
        if _inside(inner, outer):
            raise ParameterError(
                f"refusing to write {str(path)!r}: the data being written were read from "
                f"{str(source)!r}, and {str(inner)!r} lies inside {str(outer)!r}, so the write "
                f"would change or delete its own input. Write to a path outside it"
            )


#: Entries at the top of a zarr store (format 3, and format 2 with its consolidated
#: metadata); a folder with none of them is not a store.
_ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray", ".zmetadata")


def _refuse_non_store(final: Path, found: Path | None = None) -> None:
    """Raise unless the existing folder at ``final`` (now at ``found``) is a zarr store.

    ``overwrite=True`` replaces a store; a folder of anything else (a project, a data
    folder, given as the output path by mistake) is never deleted by a write.
    """
    entry = final if found is None else found
    if not os.path.lexists(entry) or entry.is_symlink() or not entry.is_dir():
        return  # nothing there, a link (replaced itself) or a file (refused by _commit)
    if not any(os.path.lexists(entry / name) for name in _ZARR_MARKERS):
        raise ParameterError(
            f"{str(final)!r} is a folder but not a zarr store (it has none of "
            f"{list(_ZARR_MARKERS)}), so overwrite=True does not replace it: that would "
            f"delete everything in it. Give the path of a new store inside it, or remove "
            f"the folder yourself"
        )


def _check_compute(compute: object) -> bool:
    check_flag("compute", compute)
    return bool(compute)


def _check_overwrite(overwrite: object) -> bool:
    """``overwrite`` as a bool; anything else is refused ("no" or "false" are truthy
    strings, which would replace the file they meant to keep)."""
    check_flag("overwrite", overwrite)
    return bool(overwrite)


def _refuse_inside_saved(final: Path, itself: bool = False) -> None:
    """Refuse a path inside an existing zarr store (one of its arrays or groups) or a
    saved xmsgl folder (a model).

    What is written inside a store replaces part of it or is an entry its readers do
    not know (zarr warns on every read); inside a model folder it makes the folder no
    longer one a save may replace (it holds only its own files). With ``itself``, the
    folder ``final`` is checked too (an output folder to write files into)."""
    for folder in [final, *final.parents] if itself else final.parents:
        if not folder.is_dir():
            continue
        # "'x' is a zarr store" or "'x/y' lies inside the zarr store 'x'".
        inside = "" if folder == final else f" {str(folder)!r}"
        verb = "is a" if folder == final else "lies inside the"
        if any(os.path.lexists(folder / m) for m in _ZARR_MARKERS):
            raise ParameterError(
                f"{str(final)!r} {verb} zarr store{inside}: what is written there replaces part "
                "of the store or is an entry its readers do not know; write to a path outside it")
        if os.path.lexists(folder / "config.json") and _not_a_model_folder(folder) is None:
            raise ParameterError(
                f"{str(final)!r} {verb} saved xmsgl folder{inside}, which holds only its own "
                "files (a later save would refuse to replace it); write to a path outside it")


def compressed_encoding(da: xr.DataArray, level: int = 4) -> dict[str, Any]:
    """A netCDF-4 encoding for a (node, time) output: zlib at ``level`` with the byte
    shuffle, in chunks of the array's own dask chunks (or up to 1000 nodes by 365 days
    in memory), so that a reader of one reach or one year reads little. Downscaled
    temperatures take about half the space they take uncompressed.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> compressed_encoding(xr.DataArray(np.zeros((3000, 730), "float32"), dims=("reach", "time")))
    {'zlib': True, 'complevel': 4, 'shuffle': True, 'chunksizes': (1000, 365)}
    """
    if da.chunks:
        sizes = tuple(int(c[0]) for c in da.chunks)
    else:
        sizes = tuple(min(int(n), 365 if str(d) == "time" else 1000) for d, n in da.sizes.items())
    return {"zlib": True, "complevel": int(level), "shuffle": True,
            "chunksizes": tuple(max(1, s) for s in sizes)}


#: The suffixes of netCDF file names (``.h5`` and others are written as given).
NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")

#: Suffixes that name formats neither writer writes: a netCDF file or zarr store under
#: such a name is misread or not read by what reads it.
_OTHER_FORMATS = {".csv": "comma-separated text (pandas' to_csv)",
                  ".parquet": "a Parquet table (pandas' to_parquet)",
                  ".json": "JSON text", ".txt": "plain text", ".png": "an image"}


def _refuse_other_format(path: PathLike, writes: str) -> None:
    """Refuse a file name whose suffix names another format than the one written
    (``writes``: "netCDF" or "zarr"); xarray takes a ``.zarr`` name for a zarr store."""
    text = os.fspath(path)
    suffix = Path(text).suffix.lower()
    if writes == "netCDF":
        other = {**_OTHER_FORMATS, ".zarr": "a zarr store (xmsgl.io.to_zarr_safe writes one)"}
        fix, writer = "give a name ending in .nc", "to_netcdf_safe writes a netCDF file"
    else:
        other = {**_OTHER_FORMATS, **{s: "a netCDF file (xmsgl.io.to_netcdf_safe writes one)"
                                      for s in NETCDF_SUFFIXES}}
        fix, writer = "give a name ending in .zarr", "to_zarr_safe writes a zarr store (a folder)"
    if suffix in other:
        raise ParameterError(f"path={text!r} ends in {suffix!r}, the name of {other[suffix]}, but "
                             f"{writer}; {fix}")


@overload
def to_netcdf_safe(obj: xr.Dataset | xr.DataArray, path: PathLike, overwrite: bool = False, *,
                   compute: Literal[True] = True, **kwargs: Any) -> Path: ...


@overload
def to_netcdf_safe(obj: xr.Dataset | xr.DataArray, path: PathLike, overwrite: bool = False, *,
                   compute: Literal[False], **kwargs: Any) -> Delayed: ...


@overload
def to_netcdf_safe(obj: xr.Dataset | xr.DataArray, path: PathLike, overwrite: bool = False, *,
                   compute: bool, **kwargs: Any) -> Path | Delayed: ...


def to_netcdf_safe(
    obj: xr.Dataset | xr.DataArray, path: PathLike, overwrite: bool = False, *,
    compute: bool = True, **kwargs: Any
) -> Path | Delayed:
    """Write ``obj`` to the netCDF file ``path`` atomically, never over its own source.

    Parameters
    ----------
    obj : xarray.Dataset or xarray.DataArray
        What to write (for example the output of downscaling).
    path : str or os.PathLike
        The netCDF file to create, on a local file system (a URL such as
        ``s3://...`` is refused: write with xarray itself there, not atomically).
    overwrite : bool, default False
        Replace an existing file at ``path``; a symbolic link there is replaced
        itself, not the file it points to. The file ``obj`` was read from (or still
        reads lazily, as a result computed from it does until it is computed) is
        never replaced, even then.
    compute : bool, default True
        Write now. With ``False``, return a :class:`dask.delayed.Delayed` instead:
        computing it writes the values (chunk by chunk, with dask) to the temporary
        file and then renames it to ``path``; nothing appears at ``path`` before.
        It runs once (a second compute fails). A compute that fails before the
        rename (an error in a chunk, Ctrl-C) leaves ``path`` as it was, and the
        hidden temporary file beside it with its ``.tmp.pending`` marker: computing
        the same Delayed again finishes the write; delete both to give it up.
    **kwargs
        Passed to :meth:`xarray.Dataset.to_netcdf` (``engine``, ``encoding``...).
        ``mode`` other than ``"w"`` is refused: adding to an existing file cannot be
        made atomic.

    Returns
    -------
    pathlib.Path or dask.delayed.Delayed
        ``path`` (``~`` expanded), or with ``compute=False`` a Delayed whose result
        is ``path``.

    Raises
    ------
    ParameterError
        When ``path`` exists (a dangling link included) and ``overwrite`` is False
        (checked again when a delayed write is computed), ``path`` is ``obj``'s
        source, lies below a file or, as typed, names a folder (``"pred/"``), ends in
        the suffix of another format (``.zarr``, ``.csv``, ``.parquet``, ``.json``,
        ``.txt``, ``.png``), or ``mode="a"`` is asked for.

    Examples
    --------
    >>> import os, tempfile, xarray as xr
    >>> from xmsgl.io import to_netcdf_safe
    >>> target = os.path.join(tempfile.mkdtemp(), "t.nc")
    >>> _ = to_netcdf_safe(xr.Dataset({"a": ("x", [1.0, 2.0])}), target)
    >>> xr.load_dataset(target)["a"].values.tolist()
    [1.0, 2.0]
    """
    if not isinstance(obj, (xr.Dataset, xr.DataArray)):
        raise ParameterError(
            f"to_netcdf_safe writes an xarray Dataset or DataArray, got {type(obj).__name__}"
        )
    _check_writer_kwargs(kwargs, "to_netcdf")
    if kwargs.get("mode", "w") != "w":
        # The file is written anew under a temporary name and renamed: mode="a" would
        # not add to the existing file but replace it, with what it held lost.
        raise ParameterError(
            f"to_netcdf_safe writes a whole new file and cannot honour mode={kwargs['mode']!r}; "
            "call obj.to_netcdf(path, mode='a') directly to add variables or groups to an "
            "existing file"
        )
    compute = _check_compute(compute)
    overwrite = _check_overwrite(overwrite)
    final = output_path(path)
    text = os.fspath(path)  # a str: output_path refuses anything else
    if isinstance(text, str) and names_a_folder(text):
        raise ParameterError(f"path={text!r} names a folder; give a netCDF file name such as "
                             f"{str(final / 'out.nc')!r}")
    _refuse_other_format(text, "netCDF")
    _refuse_source(obj, final)
    # A delayed write's chunks check its marker first (see _guard_chunks).
    return _write(lambda tmp, now, guard: (_guard_chunks(obj, _pending_marker(tmp), final) if guard
                                           else obj).to_netcdf(tmp, compute=now, **kwargs),
                  final, overwrite, compute, lazy=_is_dask(obj))


def _check_writer_kwargs(kwargs: dict[str, Any], method: str) -> None:
    """Refuse keywords xarray's ``Dataset.<method>`` does not take, as every other
    function of xmsgl does, before any work (xarray's TypeError came once the write
    began, with no hint: ``replace=True`` for ``overwrite=True``)."""
    import inspect

    params = inspect.signature(getattr(xr.Dataset, method)).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # a method that takes any keyword (wrapped, or a future xarray's)
    known = [name for name in params if name not in ("self", "path", "store", "compute")]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        writer = f"{method}_safe"
        raise ParameterError(
            f"{writer} got {unknown}, which neither it nor xarray's Dataset.{method} takes"
            f"{did_you_mean(unknown, [*known, 'overwrite'])}; it takes overwrite, compute and "
            f"xarray's keywords ({', '.join(known)})")


def _as_dataset(obj: object, writer: str) -> xr.Dataset:
    """``obj`` as the Dataset ``writer`` writes: a DataArray as the variable of its name."""
    if isinstance(obj, xr.DataArray):
        if obj.name is None:
            raise ParameterError(f"{writer} writes a DataArray as the variable of its name, and "
                                 "this one has none; give it one with da.rename('name')")
        return obj.to_dataset()
    if not isinstance(obj, xr.Dataset):
        raise ParameterError(f"{writer} writes an xarray Dataset or DataArray, got {type(obj).__name__}")
    return obj


@overload
def to_zarr_safe(ds: xr.Dataset | xr.DataArray, path: PathLike, overwrite: bool = False, *,
                 compute: Literal[True] = True, **kwargs: Any) -> Path: ...


@overload
def to_zarr_safe(ds: xr.Dataset | xr.DataArray, path: PathLike, overwrite: bool = False, *,
                 compute: Literal[False], **kwargs: Any) -> Delayed: ...


@overload
def to_zarr_safe(ds: xr.Dataset | xr.DataArray, path: PathLike, overwrite: bool = False, *,
                 compute: bool, **kwargs: Any) -> Path | Delayed: ...


def to_zarr_safe(ds: xr.Dataset | xr.DataArray, path: PathLike, overwrite: bool = False, *,
                 compute: bool = True, **kwargs: Any) -> Path | Delayed:
    """Write ``ds`` to the zarr store ``path`` atomically, never over its own source.

    The store is written to a temporary folder next to ``path`` and renamed into
    place when complete. Appending (``append_dim``), writing a ``region`` or any
    ``mode`` other than a fresh store cannot be made atomic and is refused: append
    with :func:`append_zarr` (checked, and undone if it fails), or use
    :meth:`xarray.Dataset.to_zarr` directly (``docs/pangeo.md`` shows the
    region-by-region recipe).

    Parameters
    ----------
    ds : xarray.Dataset or xarray.DataArray
        What to write; a DataArray is written as the variable of its name (the
        output of ``downscale``, ``reach_temp_pred``, as it is).
    path : str or os.PathLike
        The zarr store (a folder) to create, on a local file system (a URL such as
        ``s3://...`` is refused: write with xarray itself there, not atomically).
    overwrite : bool, default False
        Replace an existing store at ``path``; a symbolic link there is replaced
        itself, not the store it points to. The store ``ds`` was read from (or still
        reads lazily) is never replaced, even then, nor is a folder that is not a zarr
        store (one without ``zarr.json``, ``.zgroup``, ``.zarray`` or ``.zmetadata``).
    compute : bool, default True
        Write now. With ``False``, return a :class:`dask.delayed.Delayed` instead:
        computing it writes the chunks to the temporary store and then renames it
        to ``path``; nothing appears at ``path`` before. It runs once: computing it
        again raises :class:`~xmsgl.exceptions.XmsglError` and leaves ``path`` as the
        first run wrote it. A compute that fails before the rename (an error in a
        chunk, Ctrl-C) leaves ``path`` as it was, and the hidden temporary store
        beside it with its ``.tmp.pending`` marker: computing the same Delayed again
        finishes the write; delete both to give it up.
    **kwargs
        Passed to :meth:`xarray.Dataset.to_zarr` (``encoding``, ``consolidated``...).

    Returns
    -------
    pathlib.Path or dask.delayed.Delayed
        ``path`` (``~`` expanded), or with ``compute=False`` a Delayed whose result
        is ``path``.

    Raises
    ------
    ParameterError
        When ``path`` exists (a dangling link included) and ``overwrite`` is False
        (checked again when a delayed write is computed), ``path`` is a folder but not
        a zarr store, ``path`` is ``ds``'s source, lies inside it or holds it, lies
        below a file or ends in a netCDF file's suffix (``.nc``, ``.nc4``, ``.netcdf``,
        ``.cdf``), or an appending or region write is asked for.

    Examples
    --------
    >>> import os, tempfile, xarray as xr
    >>> from xmsgl.io import to_zarr_safe
    >>> target = os.path.join(tempfile.mkdtemp(), "t.zarr")
    >>> ds = xr.Dataset({"a": ("x", [1.0, 2.0, 3.0, 4.0])}).chunk({"x": 2})
    >>> later = to_zarr_safe(ds, target, compute=False, consolidated=False)
    >>> os.path.exists(target)
    False
    >>> str(later.compute()) == target
    True
    >>> xr.open_zarr(target, consolidated=False)["a"].values.tolist()
    [1.0, 2.0, 3.0, 4.0]
    """
    ds = _as_dataset(ds, "to_zarr_safe")
    _check_writer_kwargs(kwargs, "to_zarr")
    if kwargs.get("mode") == "w" and kwargs.get("append_dim") is None and kwargs.get("region") is None:
        raise ParameterError(
            "to_zarr_safe takes no mode: it always writes a whole new store, and mode='w' (replace "
            "what is there) is overwrite=True here, which replaces the store only once the new one "
            "is complete"
        )
    partial = sorted(k for k in ("mode", "append_dim", "region") if kwargs.get(k) not in (None, "w-"))
    if partial:
        raise ParameterError(
            f"to_zarr_safe writes a whole new store and cannot honour {partial}; append along "
            f"time with xmsgl.io.append_zarr(ds, path), or call ds.to_zarr(...) directly to "
            f"update an existing store"
        )
    kwargs.pop("mode", None)
    compute = _check_compute(compute)
    overwrite = _check_overwrite(overwrite)
    final = output_path(path)
    _refuse_other_format(final, "zarr")
    _refuse_source(ds, final)
    if overwrite:
        _refuse_non_store(final)
    # Checked again on the old folder once it is moved aside: something else may have
    # been put at the path while the store was written.
    def write(tmp: Path, now: bool, guard: bool) -> Any:
        with warnings.catch_warnings():
            # zarr-python 3 notes, at every consolidated write, that consolidated metadata
            # are not in the format 3 specification: xarray and zarr read them, and they
            # spare a cloud reader one request per variable, so they are kept, quietly.
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            # Any: to_zarr's overloads need compute as a literal.
            target: Any = _guard_chunks(ds, _pending_marker(tmp), final) if guard else ds
            return target.to_zarr(tmp, mode="w-", compute=now, **kwargs)

    return _write(write, final, overwrite, compute,
                  check_old=lambda old: _refuse_non_store(final, found=old), lazy=_is_dask(ds))


#: Set on the appended dimension's coordinate array while an append writes: the
#: lengths of the store's arrays before it, to undo an append a killed process left.
_UNFINISHED = "xmsgl_append_unfinished"


@typed_arguments
def append_zarr(piece: xr.Dataset | xr.DataArray, path: PathLike, *, dim: str = "time",
                same_model: bool = True) -> Path:
    """Append ``piece`` to the existing zarr store ``path`` along ``dim``, checked, and
    undone if the write fails.

    ``to_zarr(append_dim="time")`` writes whatever it is given: days the store already
    has, a piece whose reaches are in another order, one without the store's time
    bounds, or in chunks that do not continue the store's (refused half-way). This
    function checks the piece against the store first and then appends it:

    * the piece has the store's variables along ``dim`` (its time bounds are added
      where the store has them, :func:`xmsgl.convention.daily_time_bounds`), in the
      same units (however spelled: ``degree_Celsius`` is ``degC``; the store keeps its
      own spelling), on the same coordinates of the other dimensions (the same reach ids;
      a piece that holds them in another order is put in the store's);
    * it starts after the store's last day (a piece that repeats or goes back is
      refused); a gap of missing days gets a :class:`~xmsgl.exceptions.TimeGapWarning`;
    * with ``same_model`` (the default), each variable was computed by the model that
      wrote the store's (``xmsgl_model_sha256``): the store's variable attributes are
      the first piece's and would misname a later model's days;
    * the piece is rechunked to continue the store's chunks.

    The store's global attributes are kept (``to_zarr`` replaces them with the
    piece's), with a line added to ``history`` naming the days appended and the
    piece's own ``history``; a store with ACDD's attributes gets ``time_coverage_end``
    moved to the end of the days it now holds and ``date_modified`` set (where it has
    a ``date_created``). Should the write fail (an error, Ctrl-C), the store's
    arrays are cut back to their lengths before it and its attributes restored. A
    process killed while writing leaves the days it wrote and a mark on the ``dim``
    coordinate (``xmsgl_append_unfinished``); the next ``append_zarr`` on the store
    cuts them off first, with a warning. One append at a time: a second process
    appending to the same store meanwhile is refused.

    Parameters
    ----------
    piece : xarray.Dataset or xarray.DataArray
        What to append (a DataArray, e.g. ``downscale``'s output, as the variable of its
        name). Variables without ``dim`` (the reaches' ids and positions, say) are not
        written: the store keeps its own, and an ``XmsglWarning`` names those of the
        piece that differ from them.
    path : str or os.PathLike
        An existing zarr store on a local file system; write the first piece with
        :func:`to_zarr_safe`.
    dim : str, default "time"
        The store's time dimension (datetime64 or cftime labels): pieces add time
        steps. Other dimensions (``reach``, say) are refused.
    same_model : bool, default True
        Refuse a piece whose variables name another model than the store's.

    Returns
    -------
    pathlib.Path
        ``path``, ``~`` expanded.

    Raises
    ------
    ParameterError
        ``path`` is not an existing zarr store, ``piece`` reads from it, another
        process (or thread) is appending to it, or ``dim`` is not a name.
    DataError
        The piece's variables, dimensions or coordinates are not the store's, ``dim``
        does not hold times, its days do not follow the store's, a label is missing (NaT), or its times (or
        time bounds) are ones the store's time encoding (units, calendar, number
        type) cannot hold exactly.
    TimeError
        The piece's times carry a time zone.
    UnitsError
        A variable's units differ.
    ModelMismatchError
        With ``same_model``, another model computed the piece.

    Examples
    --------
    >>> import os, tempfile, pandas as pd, xarray as xr
    >>> from xmsgl.io import append_zarr, to_zarr_safe
    >>> def days(start, n):
    ...     time = pd.date_range(start, periods=n)
    ...     return xr.DataArray([[1.0] * n], coords={"reach": [7], "time": time},
    ...                         dims=("reach", "time"), name="t", attrs={"units": "degC"})
    >>> store = os.path.join(tempfile.mkdtemp(), "t.zarr")
    >>> _ = to_zarr_safe(days("2001-01-01", 3), store, consolidated=False)
    >>> _ = append_zarr(days("2001-01-04", 2), store)
    >>> xr.open_zarr(store, consolidated=False).sizes["time"]
    5
    >>> append_zarr(days("2001-01-05", 2), store)
    Traceback (most recent call last):
    ...
    xmsgl.exceptions.DataError: the piece starts on 2001-01-05, not after the store's last day (2001-01-05): appending it would repeat days; append piece.sel(time=slice('2001-01-06', None))
    """
    import zarr

    if not isinstance(dim, str) or not dim:
        raise ParameterError(f"dim must name the store's time dimension ('time' by default), not "
                             f"{dim!r}")
    final = output_path(path)
    if not final.is_dir() or not any(os.path.lexists(final / m) for m in _ZARR_MARKERS):
        raise ParameterError(f"{str(final)!r} is not an existing zarr store; write the first piece "
                             "with xmsgl.io.to_zarr_safe(piece, path), then append the others")
    piece = _as_dataset(piece, "append_zarr")
    _refuse_source(piece, final)
    refuse_unwritable_store(final, dim)
    with _append_lock(final):
        try:
            group = zarr.open_group(str(final), mode="r+", use_consolidated=False)
        except TypeError:  # zarr 2 reads the arrays' own metadata with open_group
            group = zarr.open_group(str(final), mode="r+")
        consolidated = (final / ".zmetadata").exists() or _v3_consolidated(final)
        consolidated = _undo_unfinished(group, dim, final, consolidated)
        # The store's dates as the piece's: datetime64 where it can, else cftime.
        store = (open_far_dates(xr.open_zarr, final, consolidated=False) if piece[dim].dtype.kind == "M"
                 else xr.open_zarr(final, consolidated=False))
        piece, first, last, note = _checked_piece(piece, store, dim, same_model, final)
        lengths = {str(v): list(getattr(group[str(v)], "shape", ())) for v in store.variables
                   if dim in store[v].dims}
        attrs = dict(group.attrs)
        new_attrs = {**attrs, "history": _appended_history(piece, store, attrs, dim,
                                                           f"{first} to {last}", note)}
        if "date_created" in attrs:
            # ACDD: when the store last changed, beside when it was made.
            new_attrs["date_modified"] = datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        if "time_coverage_end" in attrs and dim == "time" and piece[dim].dtype.kind in "MO":
            # ACDD: the end of the days now held (a bare DataArray appended has none of its own).
            from xmsgl.convention import coverage_instant

            new_attrs["time_coverage_end"] = coverage_instant(piece[dim].values[-1], end=True)
            start = attrs.get("time_coverage_start")
            if isinstance(start, str) and re.fullmatch(r"-?\d{4,}-\d\d-\d\d", start):
                # A store written with the start as a date alone: both as instants.
                new_attrs["time_coverage_start"] = f"{start}T00:00:00"
        # The variables' own history (the first piece's) gets the same line.
        histories = {str(v): str(group[str(v)].attrs["history"]) for v in store.data_vars
                     if dim in store[v].dims and isinstance(group[str(v)].attrs.get("history"), str)}
        # What undoes this append should its process be killed: xarray's write replaces
        # the global attributes and drops the consolidated metadata first.
        group[dim].attrs[_UNFINISHED] = json.dumps(
            {"lengths": lengths, "attrs": attrs, "consolidated": consolidated, "histories": histories})
        try:
            with _term_as_interrupt(), warnings.catch_warnings():
                # xarray reads the store's dates at its own resolution to check the piece's.
                warnings.filterwarnings("ignore", message=FAR_DATES_NOTE)
                piece.to_zarr(final, append_dim=dim, consolidated=False)
            group.attrs.put(new_attrs)
            line = str(new_attrs["history"]).splitlines()[-1]
            for name, told in histories.items():
                group[name].attrs["history"] = f"{told}\n{line}"
            del group[dim].attrs[_UNFINISHED]
        except BaseException:
            with _uninterrupted():
                _cut_back(group, lengths, attrs, dim, histories)
                if consolidated:
                    _consolidate(final)
            raise
        if consolidated:
            _consolidate(final)
    return final


def _appended_history(piece: xr.Dataset, store: xr.Dataset, attrs: dict[str, Any], dim: str,
                      span: str, note: str) -> str:
    """The store's global ``history`` with a line for appending ``piece`` (its days, and
    the last line of its own history: the run that computed it)."""

    from xmsgl import __version__

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    told = [line for line in (str(piece.attrs.get("history", "")).strip().splitlines()
                              or [str(v.attrs.get("history", "")).strip()
                                  for v in piece.data_vars.values()]) if line]
    line = (f"{now} UTC: xmsgl {__version__} append_zarr: {span} ({piece.sizes[dim]} {dim} "
            f"steps){note}" + (f"; the piece: {told[-1]}" if told else ""))
    # A store written from a DataArray has its history on the variable alone: the
    # global one then starts with it, so that it names the first piece too.
    before = attrs.get("history") or next(
        (str(store[v].attrs["history"]) for v in sorted(map(str, store.data_vars))
         if dim in store[v].dims and store[v].attrs.get("history")), "")
    return f"{before}\n{line}" if before else line


@contextlib.contextmanager
def _term_as_interrupt() -> Iterator[None]:
    """SIGTERM (a batch system's time limit) stops the block as Ctrl-C does, so that a
    write is undone; where a handler of the caller's is set, or off the main thread,
    nothing changes."""
    import signal

    if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _append_lock(final: Path) -> Iterator[None]:
    """Hold an exclusive lock on the store: POSIX ``flock`` on its folder; on Windows
    ``msvcrt.locking`` on a file beside it (``.<store>.xmsgl-append.lock``; one in the
    store would be an entry zarr warns of), as a folder cannot be opened there. A file system that refuses locks (some network mounts) is said, and
    the append goes on without one."""
    try:
        import fcntl
    except ImportError:
        with _windows_append_lock(final):
            yield
        return
    fd = os.open(final, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _appending_elsewhere(final) from err
            warn_at_user(f"{str(final)!r}: the file system refused a lock ({err.strerror or err}); "
                         "appending without one: make sure no other process appends to this "
                         "store at the same time", XmsglWarning)
        yield
    finally:
        os.close(fd)  # releases the lock


def _appending_elsewhere(final: Path) -> ParameterError:
    return ParameterError(f"{str(final)!r}: another append (in this process or another) is writing to this store; wait until "
                          "it is done")


@contextlib.contextmanager
def _windows_append_lock(final: Path) -> Iterator[None]:
    """The lock of :func:`_append_lock` where there is no ``fcntl``: the first byte of a
    lock file beside the store, locked with ``msvcrt`` (released when the file is closed,
    or the process dies); no lock where neither exists."""
    try:
        import msvcrt
    except ImportError:
        yield
        return
    with open(final.parent / f".{final.name}.xmsgl-append.lock", "a+b") as f:
        f.seek(0)
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError as err:
            raise _appending_elsewhere(final) from err
        try:
            yield
        finally:
            f.seek(0)
            with contextlib.suppress(OSError):
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined]


def _consolidate(final: Path) -> None:
    """Consolidate the metadata of a store that had them (zarr 3 warns that format 3
    does not specify them: the store's writer chose them)."""
    import zarr

    with ignoring(Warning, "Consolidated metadata is currently not part"):
        zarr.consolidate_metadata(str(final))


def _v3_consolidated(final: Path) -> bool:
    try:
        meta = json.loads((final / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("consolidated_metadata") is not None


def _cut_back(group: Any, lengths: dict[str, list[int]], attrs: dict[str, Any], dim: str,
              histories: dict[str, str]) -> None:
    """Resize the store's arrays to ``lengths`` (dropping the chunks beyond) and restore
    its global attributes ``attrs`` and its variables' ``histories``; the unfinished
    mark goes last."""
    for name, shape in lengths.items():
        if name in group and list(group[name].shape) != shape:
            group[name].resize(tuple(shape))
    group.attrs.put(attrs)
    for name, told in histories.items():
        if name in group:
            group[name].attrs["history"] = told
    if _UNFINISHED in group[dim].attrs:
        del group[dim].attrs[_UNFINISHED]


def _undo_unfinished(group: Any, dim: str, final: Path, consolidated: bool) -> bool:
    """Cut back the days an append killed half-way wrote, and restore the store's
    attributes, with a warning; return whether the store has consolidated metadata."""
    if dim not in group or _UNFINISHED not in group[dim].attrs:
        return consolidated
    mark = json.loads(group[dim].attrs[_UNFINISHED])
    lengths = mark["lengths"]
    before = group[dim].shape[0]
    with _uninterrupted():
        _cut_back(group, lengths, mark["attrs"], dim, mark.get("histories") or {})
        if consolidated or mark["consolidated"]:
            _consolidate(final)
    warn_at_user(f"{str(final)!r}: an earlier append to this store did not finish (its process "
                 f"stopped while writing); its {before - lengths[dim][0]} {dim} steps were cut off, "
                 f"leaving the store's {lengths[dim][0]}; append them again",
                 XmsglWarning)
    return consolidated or bool(mark["consolidated"])


def _along(ds: xr.Dataset, dim: str) -> set[str]:
    """The variables of ``ds`` along ``dim`` (data and coordinates), less ``dim`` itself."""
    return {str(v) for v in ds.variables if dim in ds[v].dims and v != dim}


def _checked_piece(piece: xr.Dataset, store: xr.Dataset, dim: str, same_model: bool,
                   final: Path) -> tuple[xr.Dataset, str, str, str]:
    """``piece`` as it is appended to ``store`` (its variables along ``dim``, the store's
    time bounds added, chunks continuing the store's), its first and last labels and
    what the history line adds about its model; refused where it does not continue
    the store."""
    import numpy as np
    import pandas as pd

    name = repr(str(final))
    for where, ds in (("the store", store), ("the piece", piece)):
        if dim not in ds.dims or dim not in ds.indexes:
            raise DataError(f"{where} has no coordinate {dim!r} to append along (the store {name} "
                            f"has {sorted(map(str, store.dims))}, the piece {sorted(map(str, piece.dims))})")
        if not isinstance(ds.indexes[dim], (pd.DatetimeIndex, xr.CFTimeIndex)):
            raise DataError(
                f"{where}'s {dim!r} holds {ds.indexes[dim].dtype} labels, not times: append_zarr "
                f"appends time steps (dim is the store's time dimension, 'time' by default). To "
                f"gather pieces of other {dim!r} labels (regions of a basin, say) write them to one "
                "store with xarray's to_zarr(region=...), or keep one store each")
    if not piece.sizes[dim]:
        raise DataError(f"the piece has no {dim!r} step to append")
    from xmsgl.convention import _refuse_timezones

    _refuse_timezones(piece[dim], owner="piece")
    _check_calendars(piece.indexes[dim], store.indexes[dim], name)
    bounds: str | None = store[dim].encoding.get("bounds", store[dim].attrs.get("bounds"))
    piece = _with_bounds(piece, store, dim, bounds, name)
    wanted, given = _along(store, dim), _along(piece, dim)
    if given != wanted:
        missing, extra = sorted(wanted - given), sorted(given - wanted)
        raise DataError(f"the piece's variables along {dim!r} are not the store's: "
                        + "; ".join(s for s in (f"missing {missing}" if missing else "",
                                                f"not in the store {extra}" if extra else "") if s)
                        + f". Append pieces with the variables (and coordinates along {dim!r}) of the "
                        f"store {name}")
    labels = piece.indexes[dim]
    n_missing = int(np.asarray(labels.isna()).sum())
    if n_missing:
        raise DataError(f"the piece's {dim!r} holds {n_missing} missing label(s) (NaT); drop them "
                        f"(piece.sel({dim}=piece[{dim!r}].notnull())) or give them their times")
    if not labels.is_monotonic_increasing or not labels.is_unique:
        raise DataError(f"the piece's {dim!r} must be increasing and without repeats; sort it "
                        f"(piece.sortby({dim!r})) and drop repeated labels")
    _check_days(piece, store, dim, bounds, name)
    piece = _in_store_order(piece, store, dim)
    note = ""
    for v in sorted(wanted - ({bounds} if bounds else set())):
        note = _check_variable(v, piece, store, dim, same_model, name) or note
    # After the checks that refuse the piece: a refused piece gets the error alone.
    _warn_other_statics(piece, store, dim, name)
    out = piece.drop_vars([v for v in piece.variables if dim not in piece[v].dims])
    length = store.sizes[dim]
    for key in list(out.variables):
        out[key].encoding = {}  # the store's encoding applies
        enc = store[key].encoding if key in store.variables else {}
        # A sharded store is written shard by shard: pieces line up with its shards.
        zchunks = enc.get("shards") or enc.get("chunks")
        if not zchunks or key == dim:
            continue
        chunks: dict[Any, Any] = {}
        for d, size in zip(out[key].dims, zchunks):
            if d == dim:
                head = size - length % size if length % size else size
                n = out.sizes[dim]
                chunks[d] = tuple([min(head, n)] + [size] * ((max(n - head, 0)) // size)
                                  + ([(n - head) % size] if n > head and (n - head) % size else []))
            else:
                chunks[d] = size
        out[key] = out[key].chunk(chunks)
    return out, _text(labels[0]), _text(labels[-1]), note


def _warn_other_statics(piece: xr.Dataset, store: xr.Dataset, dim: str, name: str) -> None:
    """Warn where a variable without ``dim`` (the reaches' positions, say) that the piece
    and the store both hold differs between them: the store keeps its own, which then
    no longer describe the days appended. The piece's values are taken in the dtype the
    store holds them in (a float32 store keeps float64 positions rounded), missing values
    (NaN, NaT, None, and in text the "" zarr stores None as) on both sides count as equal,
    and dask-backed numbers (the store's, a lazy piece's) are compared chunk by chunk,
    never loaded whole; text (names, ids) is compared in memory."""
    import numpy as np
    import pandas as pd

    differ = []
    for v in sorted(set(map(str, piece.variables)) & set(map(str, store.variables))):
        a, b = piece[v].variable, store[v].variable
        if dim in a.dims or v in piece.dims or a.dims != b.dims or a.shape != b.shape:
            continue
        units = (str(a.attrs.get("units", "")), str(b.attrs.get("units", "")))
        if a.dtype.kind == "f" and b.dtype.kind == "f" and b.dtype.itemsize < a.dtype.itemsize:
            a = a.astype(b.dtype)
        try:
            if a.dtype.kind in "OSUT" and b.dtype.kind in "OSUT":
                # Text (names, ids: small) in memory, as some dask versions do not fill or
                # find None in object chunks; zarr writes a missing value (None) as "".
                x, y = (np.asarray(v.values, dtype=object) for v in (a, b))
                x[pd.isnull(x)], y[pd.isnull(y)] = "", ""
                off_count = int(np.count_nonzero(x != y))
            else:
                off = (a != b) & ~(a.isnull() & b.isnull())
                off_count = int(off.sum().values)
        except (TypeError, ValueError):  # kinds that do not compare (dates and numbers): all differ
            off_count = a.size
        if off_count or units[0] != units[1]:
            what = f"{v!r} ({off_count} of {a.size} value{'' if a.size == 1 else 's'})"
            if units[0] != units[1]:
                what += f" (units {units[0] or 'none'!r} against the store's {units[1] or 'none'!r})"
            differ.append(what)
    if differ:
        one = len(differ) == 1
        warn_at_user(f"the piece's {'; '.join(differ)} differ{'s' if one else ''} from "
                     f"the {'one' if one else 'ones'} in the store {name}, which keeps its own (variables without {dim!r} are "
                     "not appended): append pieces downscaled from the input the store was "
                     "written from, or write the piece to a store of its own",
                     XmsglWarning)


def _calendar(index: Any) -> str:
    return str(getattr(index, "calendar", None) or "standard (datetime64)")


def _check_calendars(mine: Any, theirs: Any, name: str) -> None:
    """Refuse a piece whose time axis is on another calendar than the store's."""

    if type(mine) is not type(theirs) or _calendar(mine) != _calendar(theirs):
        raise DataError(f"the piece's time is on the calendar {_calendar(mine)!r} and the store "
                        f"{name}'s on {_calendar(theirs)!r}; convert the piece "
                        "(piece.convert_calendar(...)) to the store's")


def _with_bounds(piece: xr.Dataset, store: xr.Dataset, dim: str, bounds: str | None,
                 name: str) -> xr.Dataset:
    """``piece`` with the store's time bounds where the store has them (on the store's
    dimension names), without any where it has none."""

    own = piece[dim].encoding.get("bounds", piece[dim].attrs.get("bounds"))
    if bounds is None:
        # The store has none: the piece's own (by name) would be a variable it lacks.
        return piece if own is None or own not in piece.variables else piece.drop_vars(own)
    given = bounds  # the piece's own name for them, for the advice
    if bounds not in piece.variables:
        from xmsgl.convention import daily_time_bounds

        piece = daily_time_bounds(piece)
        made = piece[dim].attrs.get("bounds")
        if made is None or made not in piece.variables:
            raise DataError(f"the store {name} has time bounds {bounds!r} and the piece has none; "
                            "add them under that name")
        if made != bounds:
            given = made
            piece = piece.rename({made: bounds})
            piece[dim].attrs["bounds"] = bounds
    there, here = store[bounds].dims, piece[bounds].dims
    if len(here) == len(there) == 2 and here[0] != dim and here[1] == dim and there[0] == dim:
        # (nv, time): the same bounds, laid out the other way (zarr refused their chunks).
        piece = piece.assign({bounds: piece[bounds].transpose(dim, here[0])})
        here = piece[bounds].dims
    # On the store's name for the bounds' second dimension ("nv", "bnds"...), whoever made them.
    if here != there and len(here) == len(there) == 2 and here[0] == there[0] == dim:
        if here[1] in piece.dims and there[1] in piece.dims:
            raise DataError(f"the piece's time bounds {given!r} are on {here!r} and the store {name}'s "
                            f"on {there!r}, a dimension the piece has for something else; rename it")
        piece = piece.rename_dims({here[1]: there[1]})
    return piece


def _check_days(piece: xr.Dataset, store: xr.Dataset, dim: str, bounds: str | None,
                name: str) -> None:
    """Refuse days that repeat or precede the store's, or that its time encoding cannot
    hold; warn of missing days (they can never be appended later)."""
    import numpy as np

    from xmsgl.exceptions import DataError, TimeGapWarning

    labels, ends = piece.indexes[dim], store.indexes[dim]
    # Steps in milliseconds of numpy's datetime64 where the axes are datetime64: pandas
    # takes a store's last stamp and a piece's of other resolutions to nanoseconds to
    # subtract them, which cannot hold a date outside 1678-2262.
    if len(ends) > 1:
        a, b = _as_steps(ends[-2:])
        step = b - a
    elif bounds is not None:
        step = _bounds_step(store, bounds)
    elif len(labels) > 1:
        a, b = _as_steps(labels[:2])
        step = b - a
    else:
        step = None
    if isinstance(step, np.timedelta64):
        step = step.astype("timedelta64[ms]")
    if len(ends):
        # A store of daily (or longer) steps by day, whatever the time of day: a piece
        # stamped later on the store's last day would hold that day twice. A store of
        # shorter steps (hourly, say) by its stamps.
        first, last = labels[0], ends[-1]
        if step is not None and step >= (np.timedelta64(1, "D") if isinstance(step, np.timedelta64)
                                         else datetime.timedelta(days=1)):
            days, last_day = _day_numbers(labels), _day_numbers(ends[-1:])[0]
            repeats, later = days[0] <= last_day, labels[days > last_day]
        else:
            repeats, later = first <= last, labels[labels > last]
        if repeats:
            fix = (f"append piece.sel({dim}=slice({_text(later[0])!r}, None))" if len(later)
                   else "it holds no later day")
            raise DataError(f"the piece starts on {_text(first)}, not after the store's last day "
                            f"({_text(last)}): appending it would repeat days; {fix}")
    _check_encodable(piece, store, dim, name)
    if bounds is not None and bounds in piece.variables:
        _check_bounds(piece, store, dim, bounds, name)
    if not step or not len(ends):
        return
    stamps = [ends[-1], *labels]
    at = [*_as_steps(ends[-1:]), *_as_steps(labels)]
    gaps = [(a, b, int((tb - ta) / step) - 1)
            for a, b, ta, tb in zip(stamps[:-1], stamps[1:], at[:-1], at[1:])]
    gaps = [g for g in gaps if g[2] > 0]
    if gaps:
        said = "; ".join(f"{n} between {_text(a)} and {_text(b)}" for a, b, n in gaps[:3])
        total = sum(n for _, _, n in gaps)
        warn_at_user(
            f"appending to the store {name} leaves {total} {dim} steps missing ({said}"
            f"{'; ...' if len(gaps) > 3 else ''}): the piece is appended all the same, and once it "
            "is written those steps precede the store's last day, so they can never be appended "
            "later; to have them, write the whole period to a new store (or make this warning an "
            "error, warnings.simplefilter('error', xmsgl.TimeGapWarning), to stop before writing)",
            TimeGapWarning)


def _bounds_step(store: xr.Dataset, bounds: str) -> Any:
    """The length of the store's last time step, from its bounds."""
    last = store[bounds].isel({store[bounds].dims[0]: -1}).values
    return last[-1] - last[0] if len(last) == 2 else None


def _as_steps(index: Any) -> list[Any]:
    """The labels of a time index as values to subtract: datetime64[ms] for datetime64
    labels (any date of a store; pandas would take two resolutions to nanoseconds),
    the cftime dates as they are."""
    import numpy as np

    values = np.asarray(getattr(index, "values", index))
    if np.issubdtype(values.dtype, np.datetime64):
        return list(values.astype("datetime64[ms]"))
    return list(values)


def _day_numbers(index: Any) -> Any:
    """year * 10000 + month * 100 + day of each label: increasing with the day on any
    calendar, equal within a day."""
    import numpy as np

    values = np.asarray(getattr(index, "values", index)).ravel()
    if np.issubdtype(values.dtype, np.datetime64):
        import pandas as pd

        t = pd.DatetimeIndex(values.astype("datetime64[s]"))
        return np.asarray(t.year * 10000 + t.month * 100 + t.day, dtype=np.int64)
    return np.array([d.year * 10000 + d.month * 100 + d.day for d in values], dtype=np.int64)


def _check_bounds(piece: xr.Dataset, store: xr.Dataset, dim: str, bounds: str, name: str) -> None:
    """Refuse time bounds of the piece's own that the store cannot hold exactly or that do
    not hold their time stamps."""
    import numpy as np

    _check_encodable(piece, store, dim, name, var=bounds)
    pairs = piece[bounds].transpose(dim, ...).values
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        return
    stamps = np.asarray(piece[dim].values)
    held = _holds(pairs[:, 0], stamps, pairs[:, 1])
    if held is None:  # bounds as numbers (not decoded): nothing to compare them with
        return
    bad = np.flatnonzero(~held)
    if len(bad):
        k = bad[0]
        raise DataError(
            f"the piece's time bounds {bounds!r} do not hold their {dim!r} stamps at {len(bad)} of "
            f"{len(stamps)} steps (e.g. {_text(stamps[k])} with bounds {_text(pairs[k, 0])} to "
            f"{_text(pairs[k, 1])}); give each step the bounds of its own day (drop the bounds "
            "and append_zarr adds them)")


def _holds(lower: Any, stamps: Any, upper: Any) -> Any:
    """Elementwise ``lower <= stamps <= upper`` for times of any kind: cftime dates of one
    calendar as they are, other mixtures (bounds left in datetime64 by a conversion of
    the calendar of the times, say) by their calendar fields; None where one of them is
    not times (numbers)."""
    import numpy as np

    from xmsgl.convention import cftime_as_datetime64

    arrays = [np.asarray(a).ravel() for a in (lower, stamps, upper)]
    if all(a.dtype == object for a in arrays):
        calendars = {getattr(x, "calendar", None) for a in arrays for x in a if not _missing(x)}
        if len(calendars) == 1:
            return np.array([not any(_missing(v) for v in trio) and trio[0] <= trio[1] <= trio[2]
                             for trio in zip(*arrays)], dtype=bool)
    conv = []
    for a in arrays:
        if np.issubdtype(a.dtype, np.datetime64):
            conv.append(a.astype("datetime64[us]"))
        elif a.dtype == object:
            conv.append(cftime_as_datetime64(a)[0])
        else:
            return None
    lo, t, hi = conv
    return (lo <= t) & (t <= hi)


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and x != x)


def _same_instants(a: Any, b: Any) -> Any:
    """Elementwise: do ``a`` and ``b`` (datetime64 of any units, or cftime dates) name the
    same times?

    Two datetime64 arrays are compared as whole seconds and the remainders within them,
    each in its own unit: converting both to nanoseconds, as numpy promotes them,
    overflows beyond 2262 (numpy 2.5 raises; earlier releases wrap around silently, so
    that instants 2**64 ns apart compare equal). Two cftime dates of one calendar are
    compared as such; dates of two calendars, or a cftime date and a datetime64, by
    their calendar fields (year, month, day, time of day), which is what a store shows
    for both (xarray writes a date of another calendar by its fields). Missing values
    (NaT, None, NaN) are the same as each other.
    """
    import numpy as np

    from xmsgl.convention import cftime_as_datetime64

    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == object and b.dtype == object:
        same = []
        for x, y in zip(a.ravel(), b.ravel()):
            if _missing(x) or _missing(y):
                same.append(_missing(x) and _missing(y))
                continue
            if getattr(x, "calendar", None) == getattr(y, "calendar", None):
                same.append(bool(x == y))
            else:  # two calendars (bounds a conversion left on another): by their fields
                (fx, fy), valid = cftime_as_datetime64(np.array([x, y], dtype=object))
                same.append(bool(valid.all() and fx == fy))
        return np.array(same, dtype=bool).reshape(a.shape)
    if a.dtype == object or b.dtype == object:
        obj, other = (a, b) if a.dtype == object else (b, a)
        conv, valid = cftime_as_datetime64(obj)
        return valid & _same_instants(conv, other)

    def parts(x: Any) -> tuple[Any, Any]:
        whole = x.astype("datetime64[s]")
        rest = (x - whole.astype(x.dtype)).astype("timedelta64[ns]")  # below a second each
        return whole, rest

    (wa, ra), (wb, rb) = parts(a), parts(b)
    nat = np.isnat(wa) & np.isnat(wb)
    return nat | ((wa == wb) & (ra == rb))


def _check_encodable(piece: xr.Dataset, store: xr.Dataset, dim: str, name: str,
                     var: str | None = None) -> None:
    """Refuse times the store's encoding cannot hold exactly (a stamp at noon in whole
    ``days since``, a day beyond the range of its number type): xarray would write them
    in other units, or cast them, and they would read back as other times. ``var`` (by
    default ``dim``) names the variable of times checked: the time bounds too."""
    import numpy as np
    from xarray.coding.times import decode_cf_datetime, encode_cf_datetime

    var = var or dim
    enc = dict(store[dim].encoding)
    enc.update({k: v for k, v in store[var].encoding.items() if k in ("units", "calendar", "dtype")})
    units, calendar, dtype = enc.get("units"), enc.get("calendar"), enc.get("dtype")
    values = np.asarray(piece[var].values).ravel()
    cftime = values.dtype == object
    if not units or not (cftime or np.issubdtype(values.dtype, np.datetime64)):
        return
    what = "times" if var == dim else f"time bounds {var!r}"

    def refused(err: Exception) -> DataError:
        return DataError(f"the piece's {what} cannot be written in the store {name}'s units "
                         f"{units!r} ({err})")

    with ignoring(Warning):
        try:
            numbers, _, _ = encode_cf_datetime(values, units, calendar, dtype=dtype)
        except (ValueError, TypeError, OverflowError) as err:
            raise refused(err) from err
        numbers = np.asarray(numbers)
        if dtype is not None and np.dtype(dtype) != numbers.dtype:
            # As the store holds them: xarray casts them to its type (an int32 of
            # seconds wraps around after 2038-01-19, a float32 rounds).
            stored = numbers.astype(dtype)
            with np.errstate(invalid="ignore"):
                kept = stored.astype(numbers.dtype) == numbers
            if numbers.dtype.kind == "f":
                kept |= np.isnan(numbers)
            if not np.all(kept):
                odd = values[~kept][0]
                raise DataError(
                    f"the piece's {what} cannot be held by the store {name}'s time numbers "
                    f"({np.dtype(dtype)} in {units!r}; e.g. {_text(odd)} is {numbers[~kept][0]}, "
                    f"stored as {stored[~kept][0]}): they would read back as other times. Write "
                    "the whole period to a new store whose time encoding holds them "
                    f"(encoding={{{dim!r}: {{'dtype': 'int64'}}}} or 'float64')")
            numbers = stored
        # Read back as the store reads them: in its own units (xarray writes the piece in
        # others where its numbers would not be exact); a datetime64 piece in its own
        # unit (a date beyond 2262 comes back as datetime64 then, not as cftime), a cftime
        # piece as cftime dates.
        try:
            if cftime:
                back = decode_cf_datetime(numbers, units, calendar, use_cftime=True)
            else:
                unit: Any = np.datetime_data(values.dtype)[0]
                back = decode_cf_datetime(numbers, units, calendar,
                                          time_unit=unit if unit in ("s", "ms", "us", "ns") else "s")
        except (ValueError, TypeError, OverflowError) as err:
            raise refused(err) from err
    same = _same_instants(values, back)
    if not same.all():
        odd = values[~same][0]
        raise DataError(
            f"the piece's {what} cannot be written exactly in the store {name}'s units {units!r} "
            f"(e.g. {_text(odd, exact=True)}): the store holds other times of day or steps. Give "
            "the piece the store's time stamps (e.g. piece.assign_coords(time="
            "piece.indexes['time'].normalize()) for days stamped at midnight)")


def _in_store_order(piece: xr.Dataset, store: xr.Dataset, dim: str) -> xr.Dataset:
    """``piece`` with its labels of the other dimensions in the store's order where it
    holds the same ones in another (nodes are matched by id, never by position);
    anything else is left for :func:`_check_variable` to refuse."""
    for d in store.indexes:
        if d == dim or d not in piece.indexes:
            continue
        ours, theirs = piece.indexes[d], store.indexes[d]
        if (not ours.equals(theirs) and len(ours) == len(theirs) and ours.is_unique
                and theirs.is_unique and ours.isin(theirs).all()):
            piece = piece.sel({d: theirs})
    return piece


def _labels_differ(piece: xr.Dataset, store: xr.Dataset, d: Hashable, name: str) -> str:
    """How the piece's labels along ``d`` differ from the store's, and the fix."""
    from xmsgl.exceptions import format_ids

    theirs = store.indexes[d]
    if not theirs.is_unique:
        return (f"the store {name}'s own {d!r} labels repeat "
                f"({format_ids(sorted(set(theirs[theirs.duplicated()])))}), so the piece's cannot "
                f"be matched to them; write the days to a new store")
    ours = piece.indexes.get(d)
    if ours is None:
        return (f"the piece has no {d!r} labels to match with the store's; give them (e.g. "
                f"piece.assign_coords({d}=ids), the ids of its {d!r} positions)")
    known, have = set(theirs), set(ours)
    odd = [i for i in ours if i not in known]
    lack = [i for i in theirs if i not in have]
    twice = sorted(set(ours[ours.duplicated()]))
    said = "; ".join(t for t in (f"not in the store: {format_ids(odd)}" if odd else "",
                                  f"missing from the piece: {format_ids(lack)}" if lack else "",
                                  f"repeated in the piece: {format_ids(twice)}" if twice else "")
                     if t)
    fix = (f"; drop the repeats (piece.isel({d}=~piece.indexes[{d!r}].duplicated()))"
           if twice else "")
    return (f"the piece's {d!r} labels are not the store's ({said}){fix}; append the store's "
            f"{d!r} labels, each once: compute the piece for the same {d!r} labels as the store"
            + ("" if lack else f" (in Python, piece.sel({d}=store[{d!r}]))"))


def _check_variable(v: str, piece: xr.Dataset, store: xr.Dataset, dim: str, same_model: bool,
                    name: str) -> str:
    """Refuse ``v`` where its dimensions, labels, sizes, units or model are not the
    store's; return what the history line says of another model, if any."""
    from xmsgl.exceptions import DataError, ModelMismatchError, UnitsError

    mine, theirs = piece[v], store[v]
    if mine.dims != theirs.dims:
        raise DataError(f"{v!r} is on {mine.dims} in the piece and on {theirs.dims} in the store "
                        f"{name}; transpose it (piece[{v!r}].transpose(*{theirs.dims}))")
    for d in mine.dims:
        if d == dim:
            continue
        if d not in store.indexes:
            if piece.sizes[d] != store.sizes[d]:
                raise DataError(f"{v!r} has {piece.sizes[d]} {d!r} in the piece and {store.sizes[d]} in "
                                f"the store {name}")
            continue
        if d not in piece.indexes or not piece.indexes[d].equals(store.indexes[d]):
            raise DataError(f"{v!r}: " + _labels_differ(piece, store, d, name))
    from xmsgl.convention import same_units

    units = (mine.attrs.get("units"), theirs.attrs.get("units"))
    if not same_units(*units):
        said = [f"units {u!r}" if u is not None else "no units attribute" for u in units]
        fix = ("give it the store's units attribute" if units[0] is None
               else "convert the piece to the store's units")
        raise UnitsError(f"{v!r} has {said[0]} in the piece and {said[1]} in the store {name}; {fix}")
    ours, stores = mine.attrs.get("xmsgl_model_sha256"), theirs.attrs.get("xmsgl_model_sha256")
    if ours == stores:
        return ""
    named = f"by the model {str(stores)[:16]}" if stores else "by no model it names (xmsgl_model_sha256)"
    if same_model:
        raise ModelMismatchError(
            f"{v!r} was computed by the model {str(ours)[:16]} and the store {name}'s {named}: the "
            "store's attributes describe its values alone. Write another store, or pass "
            "same_model=False (the history line then names the piece's model)")
    return f"; {v} by the model sha256={str(ours)[:16]}" if ours else f"; {v} by no model it names"


def _text(label: Any, exact: bool = False) -> str:
    """A label for a message: a day as ``2001-01-05``, a time within it with its hour
    (to the second, or with ``exact`` to its own precision)."""
    import numpy as np
    import pandas as pd

    if isinstance(label, np.datetime64):
        if np.isnat(label):
            return "NaT"
        if exact:  # to its last non-zero digit
            text = np.datetime_as_string(label)
            return text.rstrip("0").rstrip(".") if "." in text else text
        day = label.astype("datetime64[D]")
        return str(day) if day == label else np.datetime_as_string(label, unit="s")
    if isinstance(label, pd.Timestamp):
        return str(label.date()) if label == label.normalize() else label.isoformat()
    if exact and hasattr(label, "isoformat"):
        return label.isoformat()
    return str(label)


def refuse_unknown_version(config: dict[str, Any], fmt: str, newest: int, cfg_file: Path,
                           refetch: str) -> None:
    """Refuse a folder whose ``format_version`` is not an integer from 1 to ``newest``
    (never read as some older version): a newer one is a :class:`ModelMismatchError`
    (upgrade xmsgl), anything else (missing, ``True``, ``"1"``, ``1.0``, 0) a
    :class:`DataError` (the folder is damaged, and no upgrade reads it)."""
    version = config.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool):
        if 1 <= version <= newest:
            return
        if version > newest:
            raise ModelMismatchError(
                f"{str(cfg_file)!r} has format {fmt!r} version {version}; this xmsgl reads {fmt!r} "
                f"up to version {newest}: upgrade xmsgl or refit the model")
    raise DataError(
        f"{str(cfg_file)!r} has format {fmt!r} but no 'format_version' of 1 to {newest} (found "
        f"{version!r}): the model folder is damaged; {refetch}")


def settings_digests(settings: dict[str, Any]) -> dict[str, str]:
    """A short sha256 (16 hex digits) of each top-level entry of a saved model's
    settings (as its sha256 reads them: through JSON already), in a canonical JSON
    form: saved beside them so that a load can name the entries of ``config.json``
    edited since (:func:`warn_edited_settings`)."""
    import hashlib

    return {str(k): hashlib.sha256(json.dumps(v, sort_keys=True, separators=(",", ":")).encode())
            .hexdigest()[:16] for k, v in settings.items()}


def warn_edited_settings(recorded: object, settings: dict[str, Any], cfg_file: Path, refetch: str) -> None:
    """Warn (:class:`~xmsgl.exceptions.XmsglWarning`) when the settings read from
    ``cfg_file`` differ from the digests ``recorded`` when it was saved (see
    :func:`settings_digests`), naming the entries changed, added or removed. A folder
    saved before the digests were recorded (``recorded`` None) is not judged; digests
    that are not a mapping of texts (edited too) count every entry as added.

    An edited entry (a target's mean, an input's scaler, the periods) changes what the
    model predicts or what its outputs say of it while the weights still match: loaded
    silently, it would pass for the model as fitted."""
    if recorded is None:
        return
    now = settings_digests(settings)
    if not (isinstance(recorded, dict) and all(isinstance(v, str) for v in recorded.values())):
        recorded = {}  # damaged: every entry reads as added
    changed = sorted(k for k in now.keys() & recorded.keys() if now[k] != recorded[k])
    added = sorted(now.keys() - recorded.keys())
    removed = sorted(recorded.keys() - now.keys())
    if not (changed or added or removed):
        return
    parts = [f"{what} {names}" for what, names in
             (("changed", changed), ("added", added), ("removed", removed)) if names]
    warn_at_user(
        f"{str(cfg_file)!r} was edited after the model was saved ({'; '.join(parts)}): the model "
        f"is used with its settings as they are now, which can change its predictions and "
        f"what its outputs say of it (their model sha256 is of the settings as read, not as "
        f"fitted); to use it as fitted, restore {cfg_file.name} as saved, or {refetch}",
        XmsglWarning)


#: The largest ``config.json`` a model folder may hold (bytes): a network's, with the
#: ids and drainage of a million reaches, takes a few tens of MB.
MAX_CONFIG_BYTES = 256 * 2**20


def regular_file(path: Path, what: str, refetch: str) -> Path:
    """``path`` if it is a regular file (a link to one too), else a
    :class:`~xmsgl.exceptions.DataError` saying what it is: opening a FIFO blocks
    until something writes to it, and a device can be read without end."""
    import stat

    try:
        mode = path.stat().st_mode
    except (OSError, RuntimeError, ValueError) as err:  # missing, a dangling link, a loop of links, a NUL
        raise DataError(f"the {what} {str(path)!r} is missing or cannot be reached ({type(err).__name__}); "
                        f"{refetch}") from err
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise DataError(f"the {what} {str(path)!r} is {kind}, not a file; {refetch}")
    return path


def read_json_file(path: Path, what: str, refetch: str) -> Any:
    """The JSON held by the regular file ``path`` (UTF-8), or a
    :class:`~xmsgl.exceptions.DataError` naming ``what`` for a file that is none (a
    FIFO, a folder), too large (:data:`MAX_CONFIG_BYTES`), or not JSON that Python
    reads: damaged, nested too deep for Python's parser, or a number with more digits
    than Python converts."""
    regular_file(path, what, refetch)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise DataError(f"the {what} {str(path)!r} holds {size:,} bytes, more than a model's "
                            f"settings take ({MAX_CONFIG_BYTES:,}); {refetch}")
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except PermissionError as err:
        raise DataError(f"the {what} {str(path)!r} cannot be read ({err}); check its permissions") from err
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        # ValueError: JSONDecodeError, and integers beyond Python's digit limit.
        detail = str(err).splitlines()[0][:200] if str(err) else ""
        raise DataError(f"the {what} {str(path)!r} cannot be read as JSON ({type(err).__name__}: {detail}); "
                        f"the model folder is damaged: {refetch}") from err
