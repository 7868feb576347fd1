"""The intake 2 catalog: generated from the code, consistent with the pooch registry."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import xarray as xr

import xmsgl
from xmsgl.datasets import drb

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "catalogs" / "xmsgl.yaml"

intake = pytest.importorskip("intake")


def _make_catalog_module():
    spec = importlib.util.spec_from_file_location("make_catalog", ROOT / "catalogs" / "make_catalog.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def catalog():
    return intake.from_yaml_file(str(CATALOG))


def test_catalog_file_is_what_the_script_writes(tmp_path: Path) -> None:
    out = tmp_path / "xmsgl.yaml"
    _make_catalog_module().build_catalog().to_yaml_file(str(out))
    assert out.read_text() == CATALOG.read_text(), (
        "catalogs/xmsgl.yaml is stale: run `python catalogs/make_catalog.py`"
    )


NAMES = ["drb_mirror", "drb_release", "synthetic_basin"]


def test_catalog_is_intake_version_2(catalog) -> None:
    assert "version: 2" in CATALOG.read_text()
    assert set(catalog.entries) == set(NAMES)


def test_catalog_lists_its_entries(catalog) -> None:
    # intake 2 lists a catalog by its aliases; without them list(cat) is [].
    assert sorted(catalog) == NAMES and len(catalog) == 3
    assert f"named datasets: {NAMES}" in repr(catalog)
    for name in NAMES:
        assert name in catalog
        by_attribute, by_key = getattr(catalog, name), catalog[name]
        assert type(by_attribute) is type(by_key)
        assert by_attribute.kwargs == by_key.kwargs
    assert catalog.drb_mirror.kwargs["source"] == "mirror"


@pytest.mark.parametrize(("entry", "source"), [("drb_mirror", "mirror"), ("drb_release", "release")])
def test_catalog_files_match_registry(catalog, entry: str, source: str) -> None:
    files = catalog.entries[entry].metadata["files"]
    assert [f["name"] for f in files] == list(drb.files_for(source))
    for f in files:
        assert f["sha256"] == drb.POOCH.registry[f["name"]]
        assert f["url"] == drb.POOCH.get_url(f["name"])
    assert catalog.entries[entry].kwargs["source"] == source


def test_synthetic_entry_opens_through_intake(catalog) -> None:
    ds = catalog["synthetic_basin"].read()
    assert isinstance(ds, xr.Dataset)
    xmsgl.validate(ds)
    assert catalog.entries["synthetic_basin"].metadata["files"] == []


def test_drb_mirror_entry_opens_through_intake(
    catalog, drb_raw_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Share the parsed-table cache of tests/test_drb.py. The data folder is set after
    # import, as in a notebook: the entry resolves it when it is read, as open_drb does.
    parsed = tmp_path_factory.getbasetemp() / "drb_parsed"
    monkeypatch.setattr(drb, "_default_cache_dir", lambda: parsed)
    monkeypatch.delenv("XMSGL_DATA_DIR", raising=False)
    reader = catalog.drb_mirror
    monkeypatch.setenv("XMSGL_DATA_DIR", str(drb_raw_dir))
    ds = reader.read()
    xmsgl.validate(ds)
    assert ds.sizes["seg"] == 456 and ds.sizes["reach"] == 3229
    assert ds.attrs["xmsgl_source"] == "mirror"


def test_import_xmsgl_does_not_import_intake() -> None:
    import subprocess

    code = "import sys, xmsgl; print('intake' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "False"


@pytest.mark.network
def test_drb_release_entry_opens_through_intake(catalog) -> None:  # pragma: no cover
    ds = catalog["drb_release"].read(start="2010-01-01", end="2010-12-31")
    xmsgl.validate(ds)


def test_an_installed_package_gives_the_catalog_without_the_file(tmp_path: Path) -> None:
    # Installed from a wheel, xmsgl had no catalogs/ folder: the catalog the docs
    # open from it could not be reached.
    import subprocess

    cat = xmsgl.datasets.catalog()
    assert sorted(cat) == NAMES
    out = tmp_path / "again.yaml"
    cat.to_yaml_file(str(out))
    assert out.read_text() == CATALOG.read_text()
    # From another folder, without the repository on the path but the package.
    code = ("import xmsgl; cat = xmsgl.datasets.catalog(); ds = cat['synthetic_basin'].read(); "
            "print(sorted(cat), ds.sizes['seg'])")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"{NAMES} 20"
