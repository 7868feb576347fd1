"""Time to build the Delaware River Basin mirror dataset.

Prints JSON lines (what, size, seconds, peak memory, ratio to the cached build)::

    XMSGL_DATA_DIR=/path/to/mirror python benchmarks/bench_drb.py

"cold" parses every file (no parsed-table cache); "cached" reuses the parquet
tables of the slow R files written by the cold run, the usual case after the
first build.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    from xmsgl.datasets.drb import open_drb

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        for label, kwargs in (("cold", {"cache": cache}), ("cached", {"cache": cache})):
            t = time.perf_counter()
            ds = open_drb(source="mirror", progress=False, **kwargs)
            seconds = time.perf_counter() - t
            results.append({
                "what": f"open_drb(source='mirror') {label}",
                "size": {k: int(v) for k, v in ds.sizes.items()},
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            })
    ref = results[-1]["seconds"]
    for r in results:
        r["ratio_to_cached"] = round(r["seconds"] / ref, 2)
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
