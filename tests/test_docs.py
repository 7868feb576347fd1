"""Code in the docs runs: the worked examples are executed as written."""

from __future__ import annotations

import re

import pytest

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
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    pred = namespace["pred"]
    assert pred.dims == ("reach", "time") and pred.attrs["units"] == "degC"  # type: ignore[attr-defined]
    assert (tmp_path / "my-model" / "config.json").exists()
