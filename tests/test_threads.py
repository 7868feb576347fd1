"""Calls made at the same time from several threads of one process (a web service, a
notebook's background work) give what each gives alone."""

from __future__ import annotations

import threading
import warnings
from typing import Any

import numpy as np
import pytest
import xarray as xr

from tests.conftest import FAST_FIT

torch = pytest.importorskip("torch")
torch.set_num_threads(1)

from xmsgl.model import fit  # noqa: E402
from xmsgl.nn.msgl import MSGLNet  # noqa: E402


def _weights(model: Any) -> list[np.ndarray]:
    return [t.detach().cpu().numpy().copy() for t in model.net.state_dict().values()]


def test_two_fits_building_at_once_each_give_their_seeds_model(
        half_year_basin: xr.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    # Fit A stops as it starts building its network; fit B then gets as far as building
    # its own. They drew from torch's one global generator: A built from B's seed.
    alone = {seed: _weights(fit(half_year_basin, method="msgl", seed=seed, **FAST_FIT))
             for seed in (7, 8)}
    a_building, b_building, a_done = threading.Event(), threading.Event(), threading.Event()
    build = MSGLNet.__init__

    def paused(self: MSGLNet, *args: Any, **kwargs: Any) -> None:
        if threading.current_thread().name == "A":
            a_building.set()
            b_building.wait(1.0)  # B cannot get here while A builds: the wait times out
        elif threading.current_thread().name == "B":
            b_building.set()
            a_done.wait(10.0)
        build(self, *args, **kwargs)

    monkeypatch.setattr(MSGLNet, "__init__", paused)
    got: dict[int, list[np.ndarray]] = {}

    def run(seed: int) -> None:
        try:
            got[seed] = _weights(fit(half_year_basin, method="msgl", seed=seed, **FAST_FIT))
        finally:
            if seed == 7:
                a_done.set()

    a = threading.Thread(target=run, args=(7,), name="A")
    a.start()
    assert a_building.wait(30.0)
    b = threading.Thread(target=run, args=(8,), name="B")
    b.start()
    a.join(60.0)
    b.join(60.0)
    for seed in (7, 8):
        assert all(np.array_equal(x, y) for x, y in zip(got[seed], alone[seed], strict=True)), seed


def test_dates_are_read_without_changing_the_warning_filters() -> None:
    # Python's warning filters are process-wide: a block that set them while reading a
    # date dropped 1,060 of 30,000 warnings another thread raised meanwhile.
    from xmsgl.periods import period_bounds

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the warning filters were changed")

    keep = warnings.catch_warnings
    warnings.catch_warnings = refused  # type: ignore[assignment,misc]
    try:  # (not monkeypatch: pytest's own hooks use catch_warnings around the test)
        start, end = period_bounds(("2001-02-01", "2001-05-31T00:00"))
    finally:
        warnings.catch_warnings = keep  # type: ignore[misc]
    assert start is not None and end is not None and (start.month, end.month) == (2, 5)
