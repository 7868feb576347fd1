"""Time to build the Delaware River Basin mirror dataset.

Prints JSON lines (what, size, seconds, peak memory, ratio to the cached build)::

    XMSGL_DATA_DIR=/path/to/mirror python benchmarks/bench_drb.py

"cold" parses every file (no parsed-table cache); "cached" reuses the parquet
tables of the slow R files written by the cold run, the usual case after the
first build. Each build runs in a process of its own, so that its peak memory
(``peak_rss_mib``, the process's maximum RSS) is its own.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import tempfile
import time

from _provenance import provenance


def _one(label: str, cache: str) -> None:
    from pathlib import Path

    from xmsgl.datasets.drb import open_drb

    t = time.perf_counter()
    ds = open_drb(source="mirror", progress=False, cache=Path(cache))
    seconds = time.perf_counter() - t
    print(json.dumps({
        "what": f"open_drb(source='mirror') {label}",
        "size": {k: int(v) for k, v in ds.sizes.items()},
        "seconds": round(seconds, 2),
        # ru_maxrss is in KiB on Linux.
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": platform.machine(), "date": time.strftime("%Y-%m-%d %H:%M"), **provenance(),
    }), flush=True)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        _one(sys.argv[2], sys.argv[3])
        return 0
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label in ("cold", "cached"):
            out = subprocess.run([sys.executable, __file__, "--one", label, tmp], check=True,
                                 stdout=subprocess.PIPE, text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    ref = results[-1]["seconds"]
    for r in results:
        r["ratio_to_cached"] = round(r["seconds"] / ref, 2)
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
