"""Global options, settable for a block of code with :func:`set_options`."""

from __future__ import annotations

from typing import Any

from xmsgl.exceptions import ParameterError, XmsglError, check_count, did_you_mean

__all__ = ["OPTIONS", "set_options", "get_option"]

#: The most torch threads the option takes.
MAX_TORCH_THREADS = 4096

OPTIONS: dict[str, Any] = {
    # Show tqdm progress bars in long calls (fit and its stages, the GRU's fit, the demo,
    # the Delaware data's downloads, one bar over a cross-validation's or sweep's fits).
    "progress": True,
    # Torch device used when a call says device="auto".
    "device": "auto",
    # Threads torch may use in fit/downscale; None leaves torch's own setting.
    "torch_threads": None,
}


def get_option(name: str) -> Any:
    """Return the current value of option ``name``."""
    if not isinstance(name, str) or name not in OPTIONS:
        hint = did_you_mean([name], OPTIONS) if isinstance(name, str) else ""
        raise ParameterError(f"unknown option {name!r}{hint}; known options are {sorted(OPTIONS)}")
    return OPTIONS[name]


def progress_or_option(progress: Any) -> bool:
    """``progress`` as given, or the ``progress`` option where it is None (the default
    of every call that shows progress)."""
    return bool(OPTIONS["progress"]) if progress is None else bool(progress)


def _check(name: str, value: Any) -> None:
    """Refuse a value of option ``name`` that its later users cannot take."""
    if name == "device" and not (isinstance(value, str) and value == "auto"):
        # Only a named device needs torch; "auto" is decided when a call runs.
        from xmsgl.train import resolve_device

        try:
            resolve_device(value)
        except XmsglError as err:
            raise ParameterError(f"set_options(device={value!r}): {err}") from None
    elif name == "progress" and not isinstance(value, bool):
        # "no" is truthy and None falsy: neither says what was meant (fit refuses them too).
        import numpy as np

        if not isinstance(value, np.bool_):
            raise ParameterError(f"set_options(progress={value!r}): give True or False")
    elif name == "torch_threads" and value is not None:
        try:
            check_count("torch_threads", value)
        except ParameterError as err:
            raise ParameterError(f"set_options: {err}, or None to leave torch's setting") from None
        if value > MAX_TORCH_THREADS:
            # torch refuses counts beyond a C int with a bare ValueError, and each thread
            # takes memory: a count beyond any machine's cores is a mistake.
            raise ParameterError(f"set_options: torch_threads={value} is more than {MAX_TORCH_THREADS:,} "
                                 "threads; give at most the machine's cores, or None to leave torch's setting")


class set_options:
    """Set xmsgl options globally or, as a context manager, for a block of code.

    Parameters
    ----------
    progress : bool
        Show progress bars in long calls.
    device : str
        Default torch device for ``device="auto"`` (``"auto"``, ``"cpu"``, ``"cuda"``...).
    torch_threads : int or None
        Number of torch threads used by ``fit`` and ``downscale``: set for each call
        and restored after it (torch's count is process-wide). The blocks of the
        lazy path run with ``downscale``'s own ``threads`` instead. None leaves
        torch's setting.

    Raises
    ------
    ParameterError
        An unknown option name (with the closest known one), a ``device`` torch
        does not know or this machine does not have, a
        ``torch_threads`` that is not a positive integer (or None), or a
        ``progress`` that is not True or False. Values are checked before any is
        set, so a refused call changes no option.

    Notes
    -----
    The options are process-wide, not scoped to a thread: a block restores, when it
    ends, the values it found when it began, so blocks of several threads that
    overlap see each other's values and may leave one behind. Set options from one
    thread (before starting the others), or pass ``device=`` and ``progress=`` to
    the calls themselves.

    Examples
    --------
    >>> import xmsgl
    >>> with xmsgl.set_options(progress=False):
    ...     xmsgl.get_option("progress")
    False
    """

    def __init__(self, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(OPTIONS))
        if unknown:
            raise ParameterError(f"unknown options {unknown}{did_you_mean(unknown, OPTIONS)}; known "
                                 f"options are {sorted(OPTIONS)}")
        # Every value is checked before any is set: a bad one leaves all options as
        # they were, and is refused here rather than as a bare torch error in a
        # later fit or downscale.
        for name, value in kwargs.items():
            _check(name, value)
        self.old = {k: OPTIONS[k] for k in kwargs}
        OPTIONS.update(kwargs)

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        OPTIONS.update(self.old)


