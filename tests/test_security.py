"""Security checks: no code execution from files, no unsafe archive extraction.

The package source is parsed (not grepped) and every call is inspected, so that
comments and docstrings that merely mention ``eval`` or ``pickle`` do not count,
while aliased imports (``import pickle as p``) still do. See docs/security.md for
the threat model.
"""

from __future__ import annotations

import ast
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT
from xmsgl.datasets._readers import extract_zip
from xmsgl.exceptions import DataError

# Modules whose loading functions can run code hidden in a file.
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve",
                  "marshal", "jsonpickle"}
# Names of pickle that only write: dask.distributed's events carry a warning pickled.
PICKLE_WRITERS = {"dumps"}
# Call names that run code from a string or unpack archives without path checks.
UNSAFE_CALLS = {"eval", "exec"}
UNSAFE_ATTRS = {"read_pickle", "unsafe_load", "full_load", "unpack_archive", "extractall",
                "extract", "Untar", "Unzip"}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}


def _dotted(node: ast.AST) -> str:
    """``torch.load`` for ``torch.load``, ``np.load`` for ``np.load``; '' otherwise."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def unsafe_uses(source: str, filename: str = "<source>") -> list[str]:
    """Unsafe constructs in Python ``source``, as ``file:line: what`` strings."""
    tree = ast.parse(source, filename)
    found: list[str] = []

    def flag(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in UNSAFE_MODULES | {"tarfile"}:
                    flag(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            writes = node.module == "pickle" and all(a.name in PICKLE_WRITERS and a.asname is None
                                                     for a in node.names)
            if (node.module or "").split(".")[0] in UNSAFE_MODULES | {"tarfile"} and not writes:
                flag(node, f"from {node.module} import ...")
            for alias in node.names:
                if alias.name in UNSAFE_CALLS | UNSAFE_ATTRS:
                    flag(node, f"import of {alias.name}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.rsplit(".", 1)[-1]
            if name in UNSAFE_CALLS or name in {f"builtins.{c}" for c in UNSAFE_CALLS}:
                flag(node, f"{name}(...) runs code from a string")
            elif last in UNSAFE_ATTRS:
                flag(node, f"{name}(...) loads code or unpacks an archive without checks")
            elif name == "torch.load" and not _is_true(_keyword(node, "weights_only")):
                flag(node, "torch.load(...) without weights_only=True")
            elif name in ("yaml.load", "yaml.load_all"):
                loader = _keyword(node, "Loader")
                if loader is None and len(node.args) > 1:
                    loader = node.args[1]
                if loader is None or _dotted(loader).rsplit(".", 1)[-1] not in SAFE_YAML_LOADERS:
                    flag(node, f"{name}(...) without a safe Loader")
            elif name in ("np.load", "numpy.load"):
                allow = _keyword(node, "allow_pickle")
                if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                    flag(node, f"{name}(..., allow_pickle=...) may unpickle objects")
    return found


def package_sources() -> list[Path]:
    return sorted((ROOT / "xmsgl").rglob("*.py"))


def test_checker_finds_unsafe_constructs() -> None:
    bad = """
import pickle as p
from joblib import load
import tarfile
import torch, yaml, numpy as np, pandas as pd
eval("1")
exec("x = 1")
torch.load("m.pt")
torch.load("m.pt", weights_only=False)
yaml.load(text)
yaml.load(text, Loader=yaml.FullLoader)
np.load("a.npy", allow_pickle=True)
pd.read_pickle("a.pkl")
zf.extractall("dest")
from pickle import dumps, loads
from pickle import dumps as d
"""
    # One finding on every line but the imports of torch, yaml, numpy and pandas.
    assert sorted(int(h.split(":")[1]) for h in unsafe_uses(bad)) == [2, 3, 4, *range(6, 17)]
    good = """
'''eval(...) and pickle in a docstring do not count'''
import torch, yaml, numpy as np
torch.load("m.pt", weights_only=True, map_location="cpu")
yaml.load(text, Loader=yaml.SafeLoader)
yaml.safe_load(text)
np.load("a.npy")
np.load("a.npy", allow_pickle=False)
model.eval()
from pickle import dumps
"""
    # ``model.eval()`` is torch's evaluation mode, not the builtin: it must not count;
    # pickle's writer alone, imported by its name, unpickles nothing.
    assert unsafe_uses(good) == []


def test_package_has_no_unsafe_constructs() -> None:
    sources = package_sources()
    assert len(sources) > 10
    found = [hit for path in sources
             for hit in unsafe_uses(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == [], "unsafe constructs in the package:\n" + "\n".join(found)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            # ZipInfo keeps a hostile name verbatim, as a crafted archive would.
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


@pytest.mark.parametrize("evil", ["../evil.txt", "sub/../../evil.txt", "/tmp/xmsgl_evil.txt",
                                  "\\evil.txt"])
def test_extraction_refuses_escaping_members(tmp_path: Path, evil: str) -> None:
    archive = _zip(tmp_path / "a.zip", {"good.csv": b"a,b\n1,2\n", evil: b"owned"})
    dest = tmp_path / "out" / "data"
    with pytest.raises(DataError, match="outside the folder"):
        extract_zip(archive, dest)
    # Nothing at all was written: neither the good member nor the evil one.
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.txt").exists()
    assert not Path("/tmp/xmsgl_evil.txt").exists()


def test_extraction_of_a_clean_archive(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", {"good.csv": b"a,b\n1,2\n", "sub/more.csv": b"c\n3\n"})
    out = extract_zip(archive, tmp_path / "data")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in out) == ["data/good.csv",
                                                                      "data/sub/more.csv"]
    assert (tmp_path / "data" / "sub" / "more.csv").read_bytes() == b"c\n3\n"


def test_extract_zip_changes_nothing_when_a_member_cannot_be_placed(tmp_path) -> None:
    # a.csv was replaced before b.csv, a folder, stopped the moves: half an update.
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.csv", "new-a")
        z.writestr("b.csv", "new-b")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "a.csv").write_text("old-a")
    (dest / "b.csv").mkdir()
    with pytest.raises(DataError, match=r"\['b.csv'\] would replace a folder.*nothing was changed"):
        extract_zip(archive, dest)
    assert (dest / "a.csv").read_text() == "old-a"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "dest"]
    # An encrypted member: a DataError, not zipfile's RuntimeError.
    raw = bytearray(archive.read_bytes())
    raw[raw.find(b"PK\x03\x04") + 6] |= 1
    raw[raw.find(b"PK\x01\x02") + 8] |= 1
    archive.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="encrypted"):
        extract_zip(archive, tmp_path / "other")
    assert not (tmp_path / "other").exists()
