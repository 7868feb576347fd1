"""How far the Delaware files' time-varying inputs lie beyond a model's training range.

The numbers behind :data:`xmsgl.coverage.WARN_DAYS_SHARE`: a 5-epoch MSGL model fitted
on 1979 (validation 1980-01..06), then, for each case, the share of node-days of each
time-varying input more than one standard deviation beyond its range at the nodes with
training observations, and whether ``downscale`` warns (``xmsgl.ExtrapolationWarning``).
Cases: the record as it is, a winter, that winter with air temperatures in degF
labelled degC, a summer 4 and 8 degC warmer, and a precipitation with PRMS's
missing-data code -99.9 on a fifth of the node-days of half a July.

Run: ``XMSGL_DATA_DIR=<folder of the mirror files> python docs/scripts/dynamic_extrapolation.py``
(about a minute on one core). Prints JSON lines.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import xarray as xr
from _drb_1979 import drb_and_model

import xmsgl
from xmsgl.exceptions import ExtrapolationWarning

AIR = ["seg_tave_air", "reach_tave_air", "seg_tmax_air", "reach_tmax_air", "seg_tmin_air",
       "reach_tmin_air"]


def shares(ds: xr.Dataset, model: xmsgl.Downscaler) -> dict[str, list[float]]:
    """Percent of node-days more than one standard deviation beyond the training range:
    over all days, and the largest over 30 consecutive days (what the warning judges)."""
    from xmsgl.coverage import _largest_window_share

    spec = model.features
    out = {}
    for name in spec.seg_vars + spec.reach_vars:
        if spec.static[name] or name not in ds:
            continue
        lo, hi = spec.observed_range[name]
        sd = spec.std[name]
        v = np.asarray(ds[name].transpose("time", ...).values, dtype=np.float64)
        far = (v < lo - sd) | (v > hi + sd)
        out[name] = [round(100 * float(far.mean()), 3), round(100 * _largest_window_share(far), 3)]
    return out


def main() -> None:
    ds, model = drb_and_model()
    winter = ds.sel(time=slice("1979-12-01", "1980-02-29"))
    summer = ds.sel(time=slice("1980-06-01", "1980-08-31"))
    fahrenheit = winter.assign({v: winter[v] * 9 / 5 + 32 for v in AIR})
    rain = ds.copy(deep=True)
    rng = np.random.default_rng(0)
    for v in ("seg_prcp", "reach_prcp"):
        a = rain[v].values.copy()
        block = a[:, 560:575]
        a[:, 560:575] = np.where(rng.random(block.shape) < 0.2, -99.9, block)
        rain[v] = (rain[v].dims, a, rain[v].attrs)
    cases = {
        "record": (ds, None),
        "winter": (winter, None),
        "winter_degF_labelled_degC": (fahrenheit, winter),
        "summer_plus_4C": (summer.assign({v: summer[v] + 4 for v in AIR}), None),
        "summer_plus_8C": (summer.assign({v: summer[v] + 8 for v in AIR}), None),
        "precip_code_minus_99.9": (rain, ds),
    }
    for case, (data, reference) in cases.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = data.msgl.downscale(model)
        # The warning on time-varying inputs (the one on static inputs names nodes first).
        said = [str(w.message) for w in caught if issubclass(w.category, ExtrapolationWarning)
                and str(w.message).startswith("input")]
        line = {"case": case, "percent_node_days_beyond_1sd_all_and_largest_30_days": shares(data, model),
                "warned": bool(said), "pred_max_degC": round(float(pred.max()), 2)}
        if reference is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ExtrapolationWarning)  # said above
                ref = reference.msgl.downscale(model, time=(str(data.time.values[0])[:10],
                                                            str(data.time.values[-1])[:10]))
            diff = pred - ref
            line["mean_shift_degC"] = round(float(diff.mean()), 2)
            line["max_abs_shift_degC"] = round(float(abs(diff).max()), 2)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
