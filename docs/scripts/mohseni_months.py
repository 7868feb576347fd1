"""How many calendar months a ``mohseni`` curve's observations must span (``min_months``).

On 20-segment synthetic basins (water years 2001-2004, seeds 1-3; the last water year
is the test period, the others train) the ``mohseni`` baseline is fitted with
``min_months`` of 1 (any observations: the rule before the setting existed), 6, 9 (the
default) and 12, and scored against ``reach_temp_true`` at every reach over the test
year. Prints, as JSON lines, the RMSE, the reaches on each level of parameters and the
reaches and segments whose ``min_obs`` observations fell in too few months.

Run: ``python docs/scripts/mohseni_months.py`` (about a minute on one core; the numbers
do not depend on the machine).
"""

from __future__ import annotations

import json
import warnings

import numpy as np

import xmsgl
from xmsgl.baselines import fit_baseline

TEST = ("2003-10-01", "2004-09-30")


def main() -> None:
    for seed in (1, 2, 3):
        ds = xmsgl.datasets.synthetic_basin(n_segments=20, start="2000-10-01", end="2004-09-30",
                                            seed=seed)
        truth = ds.reach_temp_true.sel(time=slice(*TEST)).transpose("reach", "time").values
        for months in (1, 6, 9, 12):
            with warnings.catch_warnings():
                # The warnings of a basin's own data (few observations...) are the same
                # for every setting, and not what is measured here.
                warnings.simplefilter("ignore", xmsgl.XmsglWarning)
                model = fit_baseline(ds, "mohseni", train=[("2000-10-01", "2003-09-30")],
                                     min_months=months)
                pred = model.predict(ds, time=TEST).transpose("reach", "time").values
            rmse = float(np.sqrt(np.nanmean((pred - truth) ** 2)))
            print(json.dumps({"seed": seed, "min_months": months, "rmse_degC": round(rmse, 3),
                              "param_levels": model.config["fit"]["param_levels"],
                              "few_months": model.config["fit"]["few_months"]}))


if __name__ == "__main__":
    main()
