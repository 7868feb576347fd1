"""Code in the docs runs: the worked examples are executed as written."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
import warnings

import pytest
import xarray as xr

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
        # The example's fits learn from enough gauges, and run on days like their
        # training's (the tests ignore these warnings).
        warnings.simplefilter("error", xmsgl.FewObservationsWarning)
        warnings.simplefilter("error", xmsgl.InputRangeWarning)
        exec(compile(blocks[0], "README.md", "exec"), namespace)
    pred = namespace["pred"]
    assert pred.dims == ("reach", "time") and pred.attrs["units"] == "degC"  # type: ignore[attr-defined]
    assert (tmp_path / "my-model" / "config.json").exists()
    with xr.open_dataset(tmp_path / "stream-temp.nc") as written:
        assert written.attrs["Conventions"].startswith("CF-") and written["time"].attrs["bounds"] == "time_bnds"


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


def _run_block(path: str, block: str, swaps: dict[str, str] | None = None) -> dict[str, object]:
    """Run one python block of ``path``, with each text of ``swaps`` (which must be in
    the block) replaced: epochs and basin sizes cut down to a test's budget."""
    for old, new in (swaps or {}).items():
        assert old in block, f"{path}: the example no longer holds {old!r}; update this test"
        block = block.replace(old, new)
    namespace: dict[str, object] = {}
    exec(compile(block, path, "exec"), namespace)
    return namespace


def test_model_page_example_runs(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    blocks = [b for b in _python_blocks("docs/model.md") if "msgl.fit(" in b]
    assert blocks, "docs/model.md lost its 'Using it' example"
    ns = _run_block("docs/model.md", blocks[0], {"epochs=40": "epochs=1"})
    fine, coarse, cross = ns["fine"], ns["coarse"], ns["cross"]
    assert fine.dims == ("reach", "time") and fine.dtype == "float32"  # type: ignore[attr-defined]
    assert str(fine.time.values[0])[:10] == "2018-10-01"  # type: ignore[attr-defined]
    assert coarse.dims == ("seg", "time") and cross.dims == ("reach", "time")  # type: ignore[attr-defined]
    assert all(a.attrs["units"] == "degC" for a in (fine, coarse, cross))  # type: ignore[attr-defined]
    assert (tmp_path / "drb.xmsgl" / "config.json").exists()


def test_dmsge_page_example_runs() -> None:
    blocks = [b for b in _python_blocks("docs/dmsge.md") if "backbone=\"dmsge\"" in b]
    assert blocks, "docs/dmsge.md lost its example"
    ns = _run_block("docs/dmsge.md", blocks[0], {"epochs=6": "epochs=1"})
    assert ns["fine"].dims == ("reach", "time")  # type: ignore[attr-defined]
    assert "dirichlet_energy" in ns["ex"]  # type: ignore[operator]


def test_synthetic_page_example_runs() -> None:
    blocks = _python_blocks("docs/synthetic.md")
    assert blocks, "docs/synthetic.md lost its example"
    # The default basin (WY 2008-2019) cut to a year, the 10^5-reach one to 100 segments:
    # what is checked is that the calls are as documented, not their size.
    ns = _run_block("docs/synthetic.md", blocks[0], {
        "synthetic_basin()": 'synthetic_basin(start="2018-10-01")',
        "n_segments=14_000, chunks=5_000": 'n_segments=100, chunks=500, start="2018-10-01"'})
    assert ns["ds"].sizes["seg"] == 450  # type: ignore[attr-defined]
    assert ns["small"].sizes["seg"] == 20  # type: ignore[attr-defined]
    assert ns["big"].reach_air_temp.chunks is not None  # type: ignore[attr-defined]


def test_graphs_page_examples_run() -> None:
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testfile(str(ROOT / "docs" / "graphs.md"), module_relative=False,
                              optionflags=flags, report=True)
    assert result.attempted > 0 and result.failed == 0


def test_data_page_examples_run(drb_raw_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("XMSGL_DATA_DIR", str(drb_raw_dir))
    monkeypatch.chdir(ROOT)  # the intake example names catalogs/ from the repository root
    blocks = _python_blocks("docs/data.md")
    assert len(blocks) == 3, "docs/data.md's examples changed; update this test"
    ns = _run_block("docs/data.md", blocks[0])
    assert ns["graphs"].n_reach == ns["ds"].sizes["reach"]  # type: ignore[attr-defined]
    # The second example sets the variable the tests already set: to the same folder.
    ns = _run_block("docs/data.md", blocks[1], {'"/path/to/drb-data"': repr(str(drb_raw_dir))})
    assert ns["ds"].sizes["reach"] > 0  # type: ignore[attr-defined]
    pytest.importorskip("intake")
    ns = _run_block("docs/data.md", blocks[2])
    assert ns["ds"].sizes["reach"] > 0  # type: ignore[attr-defined]
