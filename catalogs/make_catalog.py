"""Write ``catalogs/xmsgl.yaml``, the intake 2 catalog of xmsgl's data sets.

Run from the repository root::

    python catalogs/make_catalog.py

The catalog is :func:`xmsgl.datasets.catalog` (``xmsgl/datasets/_catalog.py``), which
an installed package gives without this file. ``tests/test_catalog.py`` regenerates
the catalog and compares it with the file, and checks its metadata against the pooch
registry, so the catalog and the registry cannot drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CATALOG = HERE / "xmsgl.yaml"


def build_catalog() -> Any:
    """The catalog as an :class:`intake.readers.entry.Catalog`."""
    from xmsgl.datasets import catalog

    return catalog()


def main() -> int:
    sys.path.insert(0, str(HERE.parent))
    build_catalog().to_yaml_file(str(CATALOG))
    print(f"wrote {CATALOG}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
