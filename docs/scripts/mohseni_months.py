"""How many calendar months a ``mohseni`` curve's observations must span (``min_months``).

On six synthetic basins the ``mohseni`` baseline is fitted on every water year but the
last, whose fine and coarse observations are hidden, with ``min_months`` of 1 (any
observations: the rule before the setting existed), 5 to 10 and 12, and scored against
``reach_temp_true`` at every reach over that last year. The basins: the one of
``docs/results.md`` (8 segments, water years 2001-2005, 30% of reaches gauged, seed 1)
and the same with seeds 4 and 5; 20 segments over water years 2001-2004 with 10% of
reaches gauged, seeds 1-3. Prints, as JSON lines, the RMSE for each setting and, for
the default, the reaches on each level of parameters and the reaches and segments whose
``min_obs`` observations fell in too few months.

Run: ``python docs/scripts/mohseni_months.py`` (about ten seconds on one core; the numbers
do not depend on the machine).
"""

from __future__ import annotations

import json
import warnings

import numpy as np

import xmsgl
from xmsgl.baselines import fit_baseline

SETTINGS = (1, 5, 6, 7, 8, 9, 10, 12)
BASINS = (
    *({"n_segments": 8, "start": "2000-10-01", "end": "2005-09-30", "seed": s, "reach_obs_share": 0.3}
      for s in (1, 4, 5)),
    *({"n_segments": 20, "start": "2000-10-01", "end": "2004-09-30", "seed": s, "reach_obs_share": 0.1}
      for s in (1, 2, 3)),
)


def main() -> None:
    for basin in BASINS:
        ds = xmsgl.datasets.synthetic_basin(**basin)
        end = np.datetime64(basin["end"])
        test_start = np.datetime64(f"{int(basin['end'][:4]) - 1}-10-01")
        test = (str(test_start), str(end))
        train = [(basin["start"], str(test_start - np.timedelta64(1, "D")))]
        before = ds.time < test_start
        hidden = ds.assign(reach_temp=ds.reach_temp.where(before), seg_temp=ds.seg_temp.where(before))
        truth = ds.reach_temp_true.sel(time=slice(*test)).transpose("reach", "time").values
        rmse = {}
        for months in SETTINGS:
            with warnings.catch_warnings():
                # The warnings of a basin's own data (few observations...) are the same
                # for every setting, and not what is measured here.
                warnings.simplefilter("ignore", xmsgl.XmsglWarning)
                model = fit_baseline(hidden, "mohseni", train=train, min_months=months)
                pred = model.predict(hidden, time=test).transpose("reach", "time").values
            rmse[months] = round(float(np.sqrt(np.nanmean((pred - truth) ** 2))), 3)
            if months == 8:
                default = model.config["fit"]
        print(json.dumps({"basin": basin, "test": test, "rmse_degC_by_min_months": rmse,
                          "default_param_levels": default["param_levels"],
                          "default_few_months": default["few_months"]}))


if __name__ == "__main__":
    main()
