"""Soak test: hundreds of training steps and fifty downscale calls in one process.

Memory that grows with every step or call (tensors kept alive by a history, graphs
rebuilt and cached per call, autograd graphs held by a reference) shows up only in
long runs. This script fits a model on a small synthetic basin for at least
``--steps`` optimizer steps, then calls ``downscale`` ``--calls`` times, and prints
JSON lines with the resident memory (RSS) after a warm-up, during and after the
soak, and its growth in percent. The issue's bar is a growth under 10%.

Run: ``python benchmarks/soak.py`` (``--quick`` for a short check). Exit status 1
when the growth exceeds ``--max-growth``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
from typing import Any

import torch
from _provenance import provenance
from torch.optim.optimizer import register_optimizer_step_post_hook

import xmsgl
from xmsgl.downscale import downscale
from xmsgl.model import fit


def rss_mb() -> float:
    """Current resident memory of this process in MB (not the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:  # not Linux: fall back to the peak, which can only overstate growth
        import resource

        scale = 1e6 if sys.platform == "darwin" else 1e3
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def settled_rss_mb() -> float:
    gc.collect()
    return rss_mb()


def emit(**row: Any) -> None:
    print(json.dumps({**row, **provenance()}), flush=True)


class StepCounter:
    """Counts optimizer steps of every torch optimizer while installed."""

    def __init__(self) -> None:
        self.steps = 0
        self._handle = register_optimizer_step_post_hook(self._hook)

    def _hook(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.steps += 1

    def close(self) -> None:
        self._handle.remove()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300, help="least number of training steps")
    ap.add_argument("--calls", type=int, default=50, help="downscale calls")
    ap.add_argument("--segments", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-growth", type=float, default=10.0, help="allowed RSS growth in %%")
    ap.add_argument("--quick", action="store_true", help="60 steps and 10 calls")
    args = ap.parse_args()
    if args.quick:
        args.steps, args.calls = 60, 10
    torch.set_num_threads(args.threads)
    env = {"python": platform.python_version(), "torch": torch.__version__,
           "xmsgl": xmsgl.__version__, "machine": platform.machine(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    ds = xmsgl.datasets.synthetic_basin(
        n_segments=args.segments, start="2001-01-01", end="2001-12-31", seed=7, reach_obs_share=0.3
    )
    opts = {"method": "msgl", "window": 30, "stride": 30, "batch_size": 1, "attn_window": 10,
            "progress": False, "seed": 0}

    # Warm-up: imports, allocator pools and caches reach their steady size here.
    counter = StepCounter()
    model = fit(ds, epochs=1, **opts)
    steps_per_epoch = max(1, counter.steps)
    for _ in range(3):
        downscale(ds, model)
    before = settled_rss_mb()
    emit(what="soak_warmup", steps=counter.steps, rss_mb=round(before, 1), **env)

    epochs = math.ceil(args.steps / steps_per_epoch)
    counter.steps = 0
    t0 = time.perf_counter()
    model = fit(ds, epochs=epochs, **opts)
    train_s = time.perf_counter() - t0
    after_train = settled_rss_mb()
    trained_steps = counter.steps
    counter.close()
    emit(what="soak_train", epochs=epochs, steps=trained_steps, seconds=round(train_s, 2),
         rss_mb=round(after_train, 1))

    t0 = time.perf_counter()
    for i in range(1, args.calls + 1):
        out = downscale(ds, model)
        if not bool(out.notnull().all()):
            emit(what="soak_error", call=i, error="downscale returned NaN for complete inputs")
            return 1
        if i % 10 == 0 or i == args.calls:
            emit(what="soak_downscale", calls=i, rss_mb=round(settled_rss_mb(), 1))
    calls_s = time.perf_counter() - t0
    after = settled_rss_mb()
    growth = 100.0 * (after - before) / before
    emit(what="soak_result", steps=trained_steps,
         downscale_calls=args.calls, rss_before_mb=round(before, 1), rss_after_mb=round(after, 1),
         growth_pct=round(growth, 2), max_growth_pct=args.max_growth,
         train_seconds=round(train_s, 2), downscale_seconds=round(calls_s, 2),
         ok=growth < args.max_growth)
    return 0 if growth < args.max_growth else 1


if __name__ == "__main__":
    sys.exit(main())
