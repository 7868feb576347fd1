"""Draw the default synthetic network coloured by mean July water temperature.

Writes ``docs/figures/synthetic_network_summer.png``::

    python docs/scripts/make_network_figure.py [--seed 0] [--out PATH]

Each fine reach is drawn as a line from its midpoint to the midpoint of the reach it
drains into, with a width that grows with drainage area; outlets are marked. The
footer says when, where and with which seed the figure was made.
"""

from __future__ import annotations

import argparse
import pathlib
import platform
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402

import xmsgl  # noqa: E402
from xmsgl.convention import topology_arrays  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "figures" / "synthetic_network_summer.png"


def main(argv: list[str] | None = None) -> pathlib.Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    ds = xmsgl.datasets.synthetic_basin(seed=args.seed)
    topo = topology_arrays(ds)
    july = ds.reach_temp_true.sel(time=ds.time.dt.month == 7).mean("time").values
    x = ds.reach_x.values / 1000.0
    y = ds.reach_y.values / 1000.0
    to = topo.reach_to_idx
    down = to >= 0
    lines = np.stack([np.column_stack([x[down], y[down]]),
                      np.column_stack([x[to[down]], y[to[down]]])], axis=1)
    width = 0.4 + 0.6 * np.log10(ds.reach_area.values[down])

    fig, ax = plt.subplots(figsize=(10, 8.5))
    coll = LineCollection(list(lines), array=july[down], cmap="RdYlBu_r", linewidths=width,
                          capstyle="round")
    ax.add_collection(coll)
    outlet = ~down
    ax.scatter(x[outlet], y[outlet], s=70, marker="v", facecolor="black", edgecolor="white",
               zorder=3, label=f"outlet ({int(outlet.sum())} basins)")
    spring = ds.reach_is_spring.values == 1
    ax.scatter(x[spring], y[spring], s=3, color="navy", alpha=0.35, zorder=2, label="spring-fed reach")
    ax.autoscale()
    ax.set_aspect("equal")
    ax.set_xlabel("easting (km)")
    ax.set_ylabel("northing (km)")
    ax.legend(loc="upper right", fontsize=9)
    cbar = fig.colorbar(coll, ax=ax, shrink=0.75)
    cbar.set_label("mean July water temperature, reach_temp_true (degC)")
    july_years = np.unique(ds.time.dt.year.values[ds.time.dt.month.values == 7])
    years = f"{july_years[0]}-{july_years[-1]}"
    ax.set_title(f"Synthetic basin: {ds.sizes['seg']} segments, {ds.sizes['reach']} reaches, "
                 f"Julys of {years}")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.node()} ({platform.processor() or platform.machine()})"
    fig.text(0.01, 0.01,
             f"Made {stamp} on {machine} with xmsgl {xmsgl.__version__} by "
             f"docs/scripts/make_network_figure.py: synthetic_basin(seed={args.seed}), default size.",
             fontsize=7, color="0.3")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=130)
    plt.close(fig)
    return args.out


if __name__ == "__main__":
    print(main())
