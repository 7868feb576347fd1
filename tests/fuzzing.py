"""Bookkeeping shared by the fuzz tests: guarded calls, a hang alarm, case counts.

:class:`FuzzCases` runs a call under an alarm, counts it as accepted or refused
(an :class:`~xmsgl.exceptions.XmsglError`) per property, lets any other exception
fail the property, and prints the counts at the end of the module.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from xmsgl.exceptions import XmsglError

__all__ = ["FuzzCases", "alarm"]


@contextlib.contextmanager
def alarm(seconds: int) -> Iterator[None]:
    """Raise TimeoutError in the main thread if the block runs longer than ``seconds``."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _timeout(signum: int, frame: Any) -> None:
        raise TimeoutError(f"call did not finish within {seconds} s: it hangs")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class FuzzCases:
    """Outcomes per property of one fuzz module.

    Parameters
    ----------
    budget, budget_variable : int, str
        Examples per property and the environment variable that sets it (printed).
    hang_seconds : int
        A call that runs longer hangs, and fails the property.
    """

    def __init__(self, budget: int, budget_variable: str, hang_seconds: int) -> None:
        self.budget = budget
        self.budget_variable = budget_variable
        self.hang_seconds = hang_seconds
        self.counts: collections.Counter[str] = collections.Counter()

    def guarded(self, prop: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; return its result, or None when it refused with an XmsglError.

        Any other exception propagates and fails the property: that is the point.
        """
        with alarm(self.hang_seconds), warnings.catch_warnings():
            # Unit conversions and numpy's cast warnings are not failures here; the
            # errors that come out are.
            warnings.simplefilter("ignore")
            try:
                out = fn()
            except XmsglError:
                self.counts[f"{prop}:refused"] += 1
                return None
        self.counts[f"{prop}:ok"] += 1
        return out

    def report(self, request: pytest.FixtureRequest) -> None:
        """Print the counts, shown in every run (not only with -s): they are part of the result."""
        lines = [f"fuzz budget: {self.budget} examples per property ({self.budget_variable})"]
        for prop in sorted({k.split(":")[0] for k in self.counts}):
            ok, refused = self.counts[f"{prop}:ok"], self.counts[f"{prop}:refused"]
            lines.append(f"fuzz {prop}: {ok + refused} cases ({ok} accepted, {refused} refused "
                         f"with a typed error)")
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            for line in lines:
                if reporter is not None:
                    reporter.write_line(line)
                else:  # pragma: no cover - pytest without its terminal
                    print(line)
