"""xmsgl's warnings keep Python's once-per-line rule though libraries reset its record."""

from __future__ import annotations

import warnings

import pytest

import xmsgl.exceptions as exc
from xmsgl.exceptions import XmsglWarning, warn_at_user


def _reset() -> None:
    """Change the filters, as torch, pandas and xarray do on many calls: Python then
    forgets what each line said."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)


def test_once_per_line_under_pythons_default_action() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        for _ in range(3):
            warn_at_user("said once here", XmsglWarning)
            _reset()
        warn_at_user("said once here", XmsglWarning)  # another line
        for _ in range(2):
            warn_at_user("another text", XmsglWarning)
            _reset()
    assert [str(w.message) for w in seen] == ["said once here", "said once here", "another text"]
    assert all(w.filename == __file__ for w in seen)
    # Python's own warnings.warn, the same way, repeats: its record was reset.
    with warnings.catch_warnings(record=True) as plain:
        warnings.simplefilter("default")
        for _ in range(3):
            warnings.warn("plain", XmsglWarning, stacklevel=1)
            _reset()
    assert len(plain) == 3


def test_other_actions_are_pythons() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(2):
            warn_at_user("every time", XmsglWarning)
    assert len(seen) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):  # raised at each pass, not only the first
            with pytest.raises(XmsglWarning, match="an error"):
                warn_at_user("an error", XmsglWarning)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", message="not this")
        warnings.filterwarnings("always", message="this one")
        for _ in range(2):
            warn_at_user("not this", XmsglWarning)
            warn_at_user("this one too", XmsglWarning)
    assert [str(w.message) for w in seen] == ["this one too", "this one too"]


def test_a_warning_instance_and_a_bounded_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exc, "_SHOWN", {})
    monkeypatch.setattr(exc, "SHOWN_KEPT", 2)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        for text in ("a", "b", "c", "a"):  # "a" forgotten when "c" came: said again
            warn_at_user(XmsglWarning(text))
            _reset()
    assert [(w.category, str(w.message)) for w in seen] == [(XmsglWarning, t) for t in "abca"]
    assert len(exc._SHOWN) == 2
