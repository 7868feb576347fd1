"""A winter of air temperatures in degF, labelled degC, run through the baselines that read inputs.

On a 20-segment synthetic basin (water years 2001-2003, a fifth of the reaches gauged),
the per-reach GRU (10 epochs) and the ``mohseni`` baseline are fitted by their defaults;
then 1 January to 15 February 2003 is predicted from the dataset as it is and from a copy
whose ``reach_air_temp`` holds Fahrenheit values on those days, still labelled degC (a
month's file appended in the wrong units; a whole record in degF is refused by
validation, its summers being implausible air). Prints, as JSON lines, the mean and
largest change of the prediction and the ``InputRangeWarning`` each gave.

Run: ``python docs/scripts/baseline_input_range.py`` (under a minute on one core).
"""

from __future__ import annotations

import json
import warnings

import numpy as np

import xmsgl
from xmsgl.baselines import fit_baseline

DAYS = ("2003-01-01", "2003-02-15")


def main() -> None:
    ds = xmsgl.datasets.synthetic_basin(n_segments=20, start="2000-10-01", end="2003-09-30", seed=1,
                                        reach_obs_share=0.2)
    inside = (ds.time >= np.datetime64(DAYS[0])) & (ds.time <= np.datetime64(DAYS[1]))
    air = ds.reach_air_temp
    slip = ds.assign(reach_air_temp=air.where(~inside, air * 1.8 + 32.0).assign_attrs(air.attrs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xmsgl.ShortRecordWarning)
        models = [xmsgl.fit(ds, "gru", epochs=10, progress=False), fit_baseline(ds, "mohseni")]
    for model in models:
        good = model.predict(ds, time=DAYS)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            off = model.predict(slip, time=DAYS)
        said = [str(w.message) for w in caught if issubclass(w.category, xmsgl.InputRangeWarning)]
        change = off - good
        print(json.dumps({"method": model.method, "mean_change_degC": round(float(change.mean()), 2),
                          "largest_change_degC": round(float(change.max()), 2),
                          "input_range_warning": said[0] if said else None}))


if __name__ == "__main__":
    main()
