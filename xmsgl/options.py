"""Global options, settable for a block of code with :func:`set_options`."""

from __future__ import annotations

from typing import Any

from xmsgl.exceptions import XmsglError

__all__ = ["OPTIONS", "set_options", "get_option"]

OPTIONS: dict[str, Any] = {
    # Show tqdm progress bars in long calls (fit, downscale, demo).
    "progress": True,
    # Torch device used when a call says device="auto".
    "device": "auto",
    # Threads torch may use in fit/downscale; None leaves torch's own setting.
    "torch_threads": None,
}


def get_option(name: str) -> Any:
    """Return the current value of option ``name``."""
    if name not in OPTIONS:
        raise XmsglError(f"unknown option {name!r}; known options are {sorted(OPTIONS)}")
    return OPTIONS[name]


class set_options:
    """Set xmsgl options globally or, as a context manager, for a block of code.

    Parameters
    ----------
    progress : bool
        Show progress bars in long calls.
    device : str
        Default torch device for ``device="auto"`` (``"auto"``, ``"cpu"``, ``"cuda"``...).
    torch_threads : int or None
        Number of torch threads used by fit and downscale.

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
            raise XmsglError(f"unknown options {unknown}; known options are {sorted(OPTIONS)}")
        self.old = {k: OPTIONS[k] for k in kwargs}
        OPTIONS.update(kwargs)

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        OPTIONS.update(self.old)


