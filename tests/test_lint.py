"""ruff and mypy run with the tests so that style and types cannot drift."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _tool(name: str) -> list[str]:
    exe = shutil.which(name, path=str(ROOT / ".venv" / "bin")) or shutil.which(name)
    if exe is None:
        pytest.skip(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return [exe]


def test_ruff() -> None:
    proc = subprocess.run(
        _tool("ruff") + ["check", "xmsgl", "tests", "benchmarks", "docs"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed; install the test extra: "
                                       "pip install -e '.[test]'")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "xmsgl"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


TYPED_USER_CODE = '''
from pathlib import Path

import torch
import xarray as xr
from dask.delayed import Delayed

import xmsgl
import xmsgl.io
from xmsgl.accessor import MsglAccessor
from xmsgl.baselines import BaselineModel


def run(ds: xr.Dataset, name: str) -> tuple[xmsgl.Downscaler, xr.DataArray, Path]:
    model = xmsgl.fit(ds, method="msgl", epochs=1)         # a network: a Downscaler
    base: BaselineModel = xmsgl.fit(ds, method="climatology")
    either = xmsgl.fit(ds, method=name)                     # a name from a config file
    either.save("m")
    pred = MsglAccessor(ds).downscale(model, device=torch.device("cpu"))
    xmsgl.scale.downscale_lazy(ds, model, device=torch.device("cpu"))
    xmsgl.robustness.robustness(ds, model, device=torch.device("cpu"))
    path: Path = xmsgl.io.to_netcdf_safe(xmsgl.convention.output_dataset(pred, ds), "out.nc")
    delayed: Delayed = xmsgl.io.to_zarr_safe(pred.to_dataset(), "out.zarr", compute=False)
    basin = xmsgl.datasets.synthetic_basin(n_segments=5)
    basin.msgl.validate()
    loaded = xmsgl.load(path)
    # What is wrong must stay an error: each ignore is needed (warn_unused_ignores).
    xmsgl.load(42)  # type: ignore[arg-type]
    xmsgl.datasets.synthetic_basin(n_segments="five")  # type: ignore[arg-type]
    bad: xmsgl.Downscaler = loaded  # type: ignore[assignment]
    wrong: xmsgl.Downscaler = either  # type: ignore[assignment]
    print(base, bad, wrong, delayed)
    return model, pred, path
'''


def test_typed_user_code_is_checked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The top-level names (xmsgl.fit, xmsgl.load, xmsgl.Downscaler, the submodules,
    # xmsgl.datasets.synthetic_basin) were Any to type checkers: mypy --strict passed
    # xmsgl.load(42), and correct code returning a prediction failed no-any-return.
    pytest.importorskip("mypy", reason="mypy is not installed; install the test extra: "
                                       "pip install -e '.[test]'")
    (tmp_path / "user.py").write_text(TYPED_USER_CODE)
    (tmp_path / "mypy.ini").write_text(
        f"[mypy]\nstrict = True\nwarn_unused_ignores = True\nmypy_path = {ROOT}\n"
        "[mypy-xmsgl.*]\nignore_errors = True\n"
        # torch's own sources are half of mypy's time here; xmsgl's signatures, which
        # this checks, stay typed, and each ignore above must still be needed.
        "[mypy-torch.*]\nfollow_imports = skip\n"
        "[mypy-scipy.*,tqdm.*,torch_geometric.*,pooch.*,intake.*]\nignore_missing_imports = True\n")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "user.py"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_conda_environment_asks_for_what_pyproject_does() -> None:
    # environment.yml lacked pyreadr, rdata, pyarrow and pandas-stubs and every lower
    # bound: `pip install -e .` then filled in from PyPI over the conda packages.
    import re

    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11 or later")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    conda_name = {"torch": "pytorch-cpu", "torch_geometric": "pytorch_geometric", "netcdf4": "netcdf4"}
    env = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.fullmatch(r"  - ([A-Za-z0-9_.\-]+)\s*(>=\s*[0-9.]+|=[0-9.]+)?\s*", line)
        if m:
            env[m.group(1)] = (m.group(2) or "").replace(" ", "")
    for req in wanted:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(>=\s*[0-9.]+)?", req)
        assert m is not None, req
        name = conda_name.get(m.group(1).lower(), m.group(1).lower())
        assert name in env, f"environment.yml lacks {name} ({req} in pyproject.toml)"
        assert env[name] == (m.group(3) or "").replace(" ", ""), (name, env[name], req)


def test_the_lowest_versions_file_pins_pyprojects_lower_bounds() -> None:
    # .ci/lowest.txt is what the lower bounds were checked with: one pin per bound.
    import re

    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11 or later")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in (ROOT / ".ci" / "lowest.txt").read_text().splitlines():
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([0-9.]+)", line.strip())
        if m:
            pins[m.group(1).lower()] = m.group(2)
    for req in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([0-9.]+)", req)
        if m is None:
            continue  # no lower bound (pandas-stubs, distributed)
        name, bound = m.group(1).lower(), m.group(3)
        if name in ("ruff", "mypy"):
            continue  # linters: the suite skips them where absent
        assert name in pins, f".ci/lowest.txt lacks {name} ({req} in pyproject.toml)"
        pinned = [int(p) for p in pins[name].split(".")]
        wanted = [int(p) for p in bound.split(".")]
        assert pinned[:len(wanted)] == wanted and all(p == 0 for p in pinned[len(wanted):]), \
            (name, pins[name], req)
