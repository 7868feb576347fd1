"""Lazy against in-memory downscaling of models with the dmsge backbone.

Prints one JSON line per case: the largest absolute difference (degC) between
``ds.chunk(...).msgl.downscale(model)`` (lazy, in blocks) and the in-memory run,
the blocks and halo the lazy run used, or the error it raised.

* ``one_block``: the whole network in one block, default neighbourhoods (hydro,
  geo, dynamic), with coordinates (``coords`` "auto" and "xy"), without them
  (the outlet-distance fallback), for fine-only and MSGL models;
* ``refused``: the same model cut into several blocks (the geo and dynamic
  neighbourhoods are searched over the whole network), which must raise;
* ``hydro_halo``: river neighbours only, a single-component basin cut into blocks of
  100 reaches, by halo depth (``None``: the default, (layers + 1) x max_hops).

Run: ``python benchmarks/bench_scale_dmsge.py`` (about a minute on one thread);
``--halos 0 none`` times the river-neighbour case at those halo depths only (``none``:
the default).
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from typing import Any

import numpy as np
from _provenance import provenance


def _print(record: dict[str, Any], ref: Any, lazy: Any) -> None:
    """``record`` with the blocks and difference of the lazy run ``lazy()``, or its error."""
    import xmsgl

    try:
        lazy_da = lazy()
        record["blocks"] = str(lazy_da.attrs["history"].split("lazy: ")[1].split(", time_")[0])
        record["max_abs_diff_degC"] = round(
            float(np.abs(lazy_da.compute().values - ref.values).max()), 7)
    except xmsgl.exceptions.XmsglError as err:
        record["error"] = f"{type(err).__name__}: {str(err)[:120]}"
    print(json.dumps({**record, **provenance()}), flush=True)


def _halo(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--halos", type=_halo, nargs="+", default=[0, 1, 2, 3, None],
                    help="halo depths of the hydro_halo cases (none: the default halo)")
    args = ap.parse_args()

    import torch

    import xmsgl

    torch.set_num_threads(1)
    # The example of the lazy path's former bug: two years, 56 reaches in one component.
    ds = xmsgl.datasets.synthetic_basin(n_segments=8, start="2000-10-01", end="2002-09-30",
                                        seed=0)
    period = ("2001-10-01", "2002-09-30")
    for coords in ("auto", "xy"):
        m = ds.msgl.sparsify(keep=0.2).msgl.fit(
            method="fine-only", epochs=3, progress=False, backbone="dmsge",
            backbone_options={"layers": 2, "k": 4, "coords": coords})
        _print({"what": "one_block", "basin": "8 segments", "method": "fine-only",
                "coords": coords}, ds.msgl.downscale(m, time=period),
               partial(ds.chunk({"reach": 10}).msgl.downscale, m, time=period))

    fast = {"epochs": 1, "window": 60, "stride": 60, "progress": False, "hidden": 8, "seed": 0}
    run = {"device": "cpu", "chunk": 100, "spinup": 40}
    three = xmsgl.datasets.synthetic_basin(n_segments=24, start="2001-01-01", end="2001-10-27",
                                           seed=3, reach_obs_share=0.3, n_outlets=3)
    no_xy = three.drop_vars(["reach_x", "reach_y", "seg_x", "seg_y"])
    for name, data in (("with x/y", three), ("without coordinates", no_xy)):
        for method in ("fine-only", "msgl"):
            m = data.msgl.fit(method=method, backbone="dmsge",
                              backbone_options={"layers": 2, "k": 3},
                              graph_options={"max_hops": 2}, **fast,
                              **({"attn_window": 10} if method == "msgl" else {}))
            chunked = data.chunk({"reach": 40, "seg": 10, "time": 120})
            for scale in ("reach", "seg") if method == "msgl" else ("reach",):
                _print({"what": "one_block", "basin": f"24 segments {name}", "method": method,
                        "scale": scale},
                       data.msgl.downscale(m, scale=scale, **run),
                       partial(chunked.msgl.downscale, m, scale=scale, reach_chunk=4000, **run))
            _print({"what": "refused", "basin": f"24 segments {name}", "method": method,
                    "reach_chunk": 40}, data.msgl.downscale(m, **run),
                   partial(chunked.msgl.downscale, m, reach_chunk=40, **run))

    one = xmsgl.datasets.synthetic_basin(n_segments=60, start="2001-01-01", end="2001-10-27",
                                         seed=0, n_outlets=1, reach_obs_share=0.3)
    for method, layers, hops, direction in (("fine-only", 3, 1, "updown"),
                                            ("fine-only", 2, 2, "upstream"),
                                            ("msgl", 2, 1, "updown")):
        m = one.msgl.fit(method=method, backbone="dmsge",
                         backbone_options={"layers": layers, "k": 3, "graphs": ["hydro"]},
                         graph_options={"max_hops": hops, "direction": direction}, **fast,
                         **({"attn_window": 10} if method == "msgl" else {}))
        ref = one.msgl.downscale(m, **run)
        for halo in args.halos:
            _print({"what": "hydro_halo", "basin": "60 segments, one component",
                    "method": method, "layers": layers, "max_hops": hops,
                    "direction": direction, "halo": halo}, ref,
                   partial(one.chunk({"reach": 100}).msgl.downscale, m, reach_chunk=100,
                           halo=halo, **run))


if __name__ == "__main__":
    main()
