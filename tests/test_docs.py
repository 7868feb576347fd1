"""Code in the docs runs: the worked examples are executed as written."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import warnings

import pytest

import xmsgl
from tests.conftest import ROOT


def _python_blocks(path: str) -> list[str]:
    text = (ROOT / path).read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_convention_worked_example_runs() -> None:
    blocks = _python_blocks("docs/convention.md")
    example = [b for b in blocks if "xr.Dataset(" in b]
    assert example, "docs/convention.md lost its worked example"
    namespace: dict[str, object] = {}
    exec(compile(example[0], "docs/convention.md", "exec"), namespace)
    graphs = namespace["graphs"]
    assert graphs.cross.shape == (8, 3)  # type: ignore[attr-defined]


def test_worked_example_errors_are_as_documented() -> None:
    import numpy as np

    import xmsgl

    blocks = _python_blocks("docs/convention.md")
    namespace: dict[str, object] = {}
    exec(compile([b for b in blocks if "xr.Dataset(" in b][0], "docs/convention.md", "exec"), namespace)
    ds = namespace["ds"]
    with pytest.raises(xmsgl.TopologyError, match=r"cycle through ids \[1, 3\]"):
        ds.assign(seg_to=("seg", np.array([3, 3, 1]))).msgl.validate()  # type: ignore[attr-defined]
    bad = ds.assign(reach_to=("reach", np.array([12, 31, 31, 31, 22, 32, 0, 32])))  # type: ignore[attr-defined]
    with pytest.raises(xmsgl.TopologyError, match=r"\[21, 22\].*segment 2"):
        bad.msgl.validate()


def test_readme_example_runs(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks("README.md")
    assert blocks, "README.md lost its example"
    namespace: dict[str, object] = {}
    with warnings.catch_warnings():
        # The example's fits learn from enough gauges (the tests ignore this warning).
        warnings.simplefilter("error", xmsgl.FewObservationsWarning)
        exec(compile(blocks[0], "README.md", "exec"), namespace)
    pred = namespace["pred"]
    assert pred.dims == ("reach", "time") and pred.attrs["units"] == "degC"  # type: ignore[attr-defined]
    assert (tmp_path / "my-model" / "config.json").exists()


def _modules() -> list[str]:
    import xmsgl

    # xmsgl.__main__ runs the command line when imported.
    return sorted(m.name for m in pkgutil.walk_packages(xmsgl.__path__, "xmsgl.")
                  if m.name != "xmsgl.__main__")


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name: str) -> None:
    # The Examples sections of the docstrings are run as written (those marked
    # "doctest: +SKIP" fit models and are left out).
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, report=True)
    assert result.failed == 0, f"{result.failed} docstring example(s) of {name} failed (output above)"
