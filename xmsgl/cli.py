"""The ``xmsgl`` command.

Sub-commands:

``xmsgl demo``
    The whole job on the built-in synthetic basin: build it, fit ASYNC-MSGL and two
    baselines on 1% of the fine observations, downscale the test period, print scores
    against the synthetic truth, write netCDF and a figure.
``xmsgl fetch-data``
    Download (or check) the Delaware River Basin files for offline use.
``xmsgl info``
    Versions of xmsgl and its main dependencies, and the torch devices seen.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xmsgl.exceptions import XmsglError

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from xmsgl.demo import run_demo

    run_demo(outdir=args.outdir, quick=args.quick, progress=not args.no_progress, seed=args.seed)
    return 0


def _fetch_data(args: argparse.Namespace) -> int:
    from xmsgl.datasets.drb import fetch_data

    paths = fetch_data(source=args.source, folder=args.folder)
    for p in paths:
        print(p)
    print(f"{len(paths)} files ready")
    return 0


def _info(args: argparse.Namespace) -> int:
    import importlib.metadata as md

    import xmsgl

    print(f"xmsgl {xmsgl.__version__}")
    for pkg in ("numpy", "xarray", "dask", "torch", "torch_geometric", "pooch", "intake"):
        try:
            print(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            print(f"{pkg} not installed")
    try:
        import torch

        print("cuda available:", torch.cuda.is_available())
    except ImportError:
        pass
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xmsgl",
        description="Downscale stream water temperature from coarse segments to fine reaches.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole job on the built-in synthetic basin")
    demo.add_argument("--outdir", default="xmsgl-demo", help="folder for outputs (default: %(default)s)")
    demo.add_argument("--quick", action="store_true", help="a small basin and few epochs (seconds)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.set_defaults(func=_demo)

    fetch = sub.add_parser("fetch-data", help="pre-fetch the Delaware River Basin files")
    fetch.add_argument("--source", default="mirror", choices=["mirror", "release"],
                       help="which files: public mirrors (default) or the full USGS releases")
    fetch.add_argument("--folder", default=None,
                       help="cache folder (default: $XMSGL_DATA_DIR or the user cache)")
    fetch.set_defaults(func=_fetch_data)

    info = sub.add_parser("info", help="print versions and devices")
    info.set_defaults(func=_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xmsgl`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except XmsglError as err:
        print(f"xmsgl: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
