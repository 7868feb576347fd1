"""Time and memory of :func:`xmsgl.datasets.synthetic_basin`.

Run from the repository root::

    python benchmarks/bench_synthetic.py            # default basin and a lazy 10^5-reach basin
    python benchmarks/bench_synthetic.py --quick    # the same over 2 years instead of 12

Prints one JSON line per measurement. Each line has ``what``, ``size`` (seg, reach
and time counts), ``seconds`` (wall clock) and ``peak_mem_mb``. ``peak_mem_mb`` is
the peak resident memory of a fresh Python process that made only that measurement,
so interpreter and libraries are included; ``base_mem_mb`` is that process's
resident memory after its imports. The chunk line also has ``ratio``: its
reach-days per second divided by those of the in-memory default basin timed in the
same run. Then come ``machine`` and ``date``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import resource
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

from _provenance import provenance

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

LARGE_SEGMENTS = 14_000  # about 10^5 reaches at 7.2 reaches per segment
LARGE_CHUNKS = 5_000


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux and bytes on macOS
    scale = 1024.0 if sys.platform != "darwin" else 1024.0**2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _period(quick: bool) -> dict[str, str]:
    return {"start": "2017-10-01" if quick else "2007-10-01", "end": "2019-09-30"}


def _size(ds: Any) -> dict[str, int]:
    return {k: int(v) for k, v in ds.sizes.items()}


def run_case(case: str, quick: bool) -> dict[str, Any]:
    import dask

    import xmsgl

    base = _rss_mb()
    period = _period(quick)
    if case == "default":
        t0 = time.perf_counter()
        ds = xmsgl.datasets.synthetic_basin(**period)
        seconds = time.perf_counter() - t0
        return {"what": "synthetic_basin default size, in memory", "size": _size(ds),
                "seconds": round(seconds, 2), "peak_mem_mb": round(_rss_mb()), "base_mem_mb": round(base)}
    if case == "large_build":
        t0 = time.perf_counter()
        ds = xmsgl.datasets.synthetic_basin(LARGE_SEGMENTS, chunks=LARGE_CHUNKS, **period)
        xmsgl.validate(ds)
        seconds = time.perf_counter() - t0
        return {"what": f"synthetic_basin lazy build + validate (chunks={LARGE_CHUNKS})", "size": _size(ds),
                "n_chunks": len(ds.reach_temp_true.data.chunks[0]),
                "seconds": round(seconds, 2), "peak_mem_mb": round(_rss_mb()), "base_mem_mb": round(base)}
    if case == "large_chunk":
        ds = xmsgl.datasets.synthetic_basin(LARGE_SEGMENTS, chunks=LARGE_CHUNKS, **period)
        n_reach = ds.reach_temp_true.data.chunks[0][0]
        n_seg = ds.seg_temp_true.data.chunks[0][0]
        first = ds.isel(reach=slice(0, n_reach), seg=slice(0, n_seg))
        names = [n for n in first.data_vars if "time" in first[n].dims]
        t0 = time.perf_counter()
        dask.compute(*[first[n].data for n in names], scheduler="synchronous")
        seconds = time.perf_counter() - t0
        return {"what": "synthetic_basin compute one chunk, all (node, time) variables",
                "size": {"seg": int(n_seg), "reach": int(n_reach), "time": ds.sizes["time"]},
                "seconds": round(seconds, 2), "peak_mem_mb": round(_rss_mb()), "base_mem_mb": round(base)}
    raise SystemExit(f"unknown case {case!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 years instead of 12")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.quick)))
        return
    results = {}
    for case in ("default", "large_build", "large_chunk"):
        cmd = [sys.executable, __file__, "--case", case] + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        results[case] = json.loads(proc.stdout.strip().splitlines()[-1])
    ref = results["default"]
    ref_rate = ref["size"]["reach"] * ref["size"]["time"] / ref["seconds"]
    chunk = results["large_chunk"]
    chunk["ratio"] = round(chunk["size"]["reach"] * chunk["size"]["time"] / chunk["seconds"] / ref_rate, 3)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    machine = f"{platform.node()} {platform.processor() or platform.machine()}"
    for res in results.values():
        print(json.dumps({**res, "machine": machine, "date": stamp, **provenance()}))


if __name__ == "__main__":
    main()
