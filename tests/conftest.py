"""Shared fixtures: small synthetic basins built in milliseconds, device lists."""

from __future__ import annotations

import os
import pathlib

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_RAW = ROOT.parent / "shared" / "data" / "drb" / "raw"


def pytest_configure(config: pytest.Config) -> None:
    # Shared two-core machines stall when torch spreads over every core.
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass
    # The calls that name no device (device="auto") run on the CPU, on every machine:
    # many tests assert values equal to the bit from run to run, which holds on the CPU
    # only (a GPU's sums differ by a rounding between calls). The GPU's own tests are
    # marked gpu (pytest -m gpu) or parametrized over devices(); XMSGL_TEST_DEVICE=auto
    # runs the whole default run where "auto" picks (bit-equality tests then fail on a GPU).
    device = os.environ.get("XMSGL_TEST_DEVICE", "cpu")
    if device != "auto":
        try:
            import xmsgl

            xmsgl.set_options(device=device)
        except ImportError:  # pragma: no cover - no torch: nothing runs on a device
            pass


@pytest.fixture(autouse=True)
def _gpu_tests_pick_their_device(request: pytest.FixtureRequest):
    """A test marked gpu sees device="auto" as a user would (the GPU, where there is one)."""
    if request.node.get_closest_marker("gpu") is None:
        yield
        return
    import xmsgl

    with xmsgl.set_options(device="auto"):
        yield


@pytest.fixture(scope="session")
def drb_raw_dir() -> pathlib.Path:
    """The folder of Delaware River Basin mirror files, or skip when it is absent."""
    env = os.environ.get("XMSGL_DATA_DIR")
    path = pathlib.Path(env) if env else SHARED_RAW
    if not path.is_dir():
        pytest.skip(
            f"Delaware River Basin mirror files not found at {path}; set XMSGL_DATA_DIR to a "
            "folder holding them (see docs/data.md)"
        )
    return path


@pytest.fixture(scope="session")
def small_basin():
    """A 20-segment synthetic basin over four water years (built once per session)."""
    import xmsgl

    return xmsgl.datasets.synthetic_basin(
        n_segments=20, start="2000-10-01", end="2004-09-30", seed=1
    )


@pytest.fixture(scope="session")
def half_year_basin():
    """Six segments over half a year, with fine observations at 30% of reaches."""
    import xmsgl

    return xmsgl.datasets.synthetic_basin(
        n_segments=6, start="2001-01-01", end="2001-06-30", seed=3, reach_obs_share=0.3
    )


#: Settings of the quick fits the tests make: short windows, one epoch.
FAST_FIT = {"epochs": 1, "window": 30, "stride": 30, "progress": False}


def as_saved_before_digests(config: dict) -> dict:
    """``config`` (a saved model's ``config.json``, changed in place) as folders saved
    before the digests of their settings were recorded hold it: the tests that write
    an older folder's config by editing a new one drop them, since a load names the
    entries edited since a save that recorded them."""
    config.pop("settings_sha256", None)
    if isinstance(config.get("weights"), dict):
        config["weights"].pop("settings_sha256", None)
    return config


#: Fits of the scale-out tests: windows of 60 days, so that their 300-day basin
#: spans several windows and time blocks.
SCALE_FIT = {**FAST_FIT, "window": 60, "stride": 60}
#: Inference windows of those tests (100 days with 40 of spin-up), on any device.
SCALE_WINDOWS = {"chunk": 100, "spinup": 40}
#: The same on the CPU, where lazy and in-memory runs are compared.
SCALE_RUN = {"device": "cpu", **SCALE_WINDOWS}


@pytest.fixture(scope="session")
def scale_basin():
    """24 segments in 3 drainage components over 300 days (built once per session)."""
    import xmsgl

    return xmsgl.datasets.synthetic_basin(n_segments=24, start="2001-01-01", end="2001-10-27",
                                          seed=3, reach_obs_share=0.3, n_outlets=3)


@pytest.fixture(scope="session")
def half_year_msgl(half_year_basin):
    """An msgl model fitted with :data:`FAST_FIT` on ``half_year_basin`` (seed 0), once."""
    from xmsgl.model import fit

    return fit(half_year_basin, method="msgl", seed=0, **FAST_FIT)


@pytest.fixture
def tiny_basin():
    """A 6-segment basin over four months, for fast unit tests."""
    import xmsgl

    return xmsgl.datasets.synthetic_basin(
        n_segments=6, start="2001-01-01", end="2001-04-30", seed=3
    )


def devices() -> list[str]:
    """Torch devices available here: always cpu, plus cuda when present."""
    out = ["cpu"]
    try:
        import torch

        if torch.cuda.is_available():
            out.append("cuda")
    except ImportError:  # pragma: no cover
        pass
    return out


@pytest.fixture
def split_as_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut components into pieces as the blocks ask, even where a default halo covers a
    small test basin whole (which xmsgl.scale would run whole instead): the tests of
    halos and of stitching blocks need the pieces."""
    import xmsgl.scale

    monkeypatch.setattr(xmsgl.scale, "WHOLE_WHEN_HELD", False)
