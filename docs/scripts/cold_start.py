"""A month of the Delaware files downscaled alone, against the same month in the record.

A 5-epoch MSGL model fitted on 1979 (validation 1980-01..06) downscales July 1980 from a
dataset that starts on 1980-07-01 (no warm-up: the recurrent state starts fresh on the
first day) and from the whole record with ``time=`` (180 days of warm-up). Prints, as
JSON lines, the mean absolute difference over the reaches on days 1, 6, 11, 21 and 31
of the month, the largest difference, and whether ``downscale`` warned
(``xmsgl.ColdStartWarning``).

Run: ``XMSGL_DATA_DIR=<folder of the mirror files> python docs/scripts/cold_start.py``
(under a minute on one core).
"""

from __future__ import annotations

import json
import warnings

from _drb_1979 import drb_and_model

from xmsgl.exceptions import ColdStartWarning, ExtrapolationWarning

MONTH = ("1980-07-01", "1980-07-31")


def main() -> None:
    ds, model = drb_and_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ExtrapolationWarning)  # the same static nodes both ways
        alone = ds.sel(time=slice(*MONTH)).msgl.downscale(model)
        warned_alone = any(issubclass(w.category, ColdStartWarning) for w in caught)
        caught.clear()
        warmed = ds.msgl.downscale(model, time=MONTH)
        warned_warmed = any(issubclass(w.category, ColdStartWarning) for w in caught)
    diff = abs(alone - warmed)
    by_day = diff.mean("reach").values
    print(json.dumps({"month": MONTH, "mean_abs_diff_degC_on_day": {
        str(d): round(float(by_day[d - 1]), 3) for d in (1, 6, 11, 21, 31)},
        "max_abs_diff_degC": round(float(diff.max()), 3), "warned_alone": warned_alone,
        "warned_with_warm_up": warned_warmed,
        "short_warmup_attr_alone": alone.attrs.get("xmsgl_short_warmup")}))


if __name__ == "__main__":
    main()
