"""What a dmsge model's predictions read: later days, the period asked, the chunks.

Fits MSGL with the dmsge backbone (one epoch, default options, seed 0) on a
12-segment synthetic basin (water years 2001-2003), with the calendar blocks of
``dynamic_days=20`` (the default), with ``dynamic_days=None`` (one graph per window
from all its days, the graph of models saved before the option), and with the
default blocks and the residual fine head (which reads the cross-scale attention),
and prints as JSON lines, per setting, the largest change of the downscaled
temperature (degC):

* before June 2002 and before May 2002 when the air temperature is raised by 10
  degC from 2002-06-01 on;
* on the days of June 2002 when ``downscale`` is asked for that month alone;
* anywhere when ``downscale`` runs windows of ``chunk=30`` instead of 365.

Run: ``python docs/scripts/dmsge_causality.py`` (under a minute on two cores);
docs/dmsge.md quotes its output.
"""

from __future__ import annotations

import json

import numpy as np
import torch

import xmsgl


def main() -> None:
    torch.set_num_threads(1)
    ds = xmsgl.datasets.synthetic_basin(n_segments=12, start="2000-10-01", end="2003-09-30", seed=1,
                                        reach_obs_share=0.3)
    air = [v for v in ds.data_vars if "air_temp" in str(v)]
    warm = ds.copy()
    for v in air:
        warm[v] = ds[v].where(ds.time < np.datetime64("2002-06-01"), ds[v] + 10.0)
    before = {"june": slice(None, "2002-05-31"), "may": slice(None, "2002-04-30")}
    for days, head in ((20, "concat"), (None, "concat"), (20, "residual")):
        model = ds.msgl.fit(method="msgl", epochs=1, progress=False, backbone="dmsge",
                            backbone_options={"dynamic_days": days}, fine_head=head, seed=0)
        whole = ds.msgl.downscale(model)
        hot = warm.msgl.downscale(model)
        month = ds.msgl.downscale(model, time=("2002-06-01", "2002-06-30"))
        chunked = ds.msgl.downscale(model, chunk=30)
        print(json.dumps({
            "dynamic_days": days, "fine_head": head,
            **{f"air_plus_10_from_june_2002_change_before_{m}": float(
                abs(hot.sel(time=b) - whole.sel(time=b)).max()) for m, b in before.items()},
            "june_2002_alone_change": float(abs(month - whole.sel(time=month.time)).max()),
            "chunk_30_change": float(abs(chunked - whole).max()),
        }), flush=True)


if __name__ == "__main__":
    main()
