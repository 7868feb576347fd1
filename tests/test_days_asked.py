"""Days asked for beyond the record, and days scored inside the fit's periods, are said
alike by every model type: networks, baselines and the GRU, ``downscale``, ``predict``
and ``robustness``."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl
from xmsgl.baselines import fit_baseline
from xmsgl.periods import select_days, warn_beyond_record


@pytest.fixture(scope="module")
def basin() -> xr.Dataset:
    return xmsgl.datasets.synthetic_basin(n_segments=6, start="2000-10-01", end="2002-09-30", seed=2,
                                          reach_obs_share=0.2)


def test_select_days_warns_beyond_and_refuses_none() -> None:
    t = pd.date_range("2001-01-01", "2001-12-31")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select_days(t, None).all()
        assert select_days(t, ("2001-03-01", "2001-03-31")).sum() == 31
    with pytest.warns(xmsgl.XmsglWarning, match=r"reaches past the dataset's days .* only the 31 days "
                                                r"from 2001-12-01 to 2001-12-31 are returned"):
        assert select_days(t, ("2001-12-01", "2002-02-28")).sum() == 31
    with pytest.warns(xmsgl.XmsglWarning, match="reaches before and past .* are scored"):
        select_days(t, [("2000-12-01", "2001-01-05"), ("2001-12-30", "2002-01-05")], done="scored")
    with pytest.raises(xmsgl.TimeError, match=r"time=\('2003', '2004'\) selects no day .*2001-01-01 "
                                              "to 2001-12-31"):
        select_days(t, ("2003", "2004"))
    # A label of the last year whole is inside, and so is a date at noon on the last day.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select_days(t, "2001").all()
        warn_beyond_record(t, ("2001-06-01", "2001-12-31T12:00"), np.arange(151, 365))


@pytest.mark.parametrize("method", ["climatology", "harmonic"])
def test_baselines_say_days_beyond_the_record(basin: xr.Dataset, method: str) -> None:
    model = fit_baseline(basin, method)
    with pytest.warns(xmsgl.XmsglWarning, match="only the 30 days from 2002-09-01 to 2002-09-30 "
                                                "are returned"):
        out = model.predict(basin, time=("2002-09-01", "2003-08-31"))
    assert out.sizes["time"] == 30
    with pytest.raises(xmsgl.TimeError, match="selects no day"):
        model.predict(basin, time=("2004", "2005"))


def test_the_gru_says_days_beyond_the_record(basin: xr.Dataset) -> None:
    pytest.importorskip("torch")
    model = xmsgl.fit(basin, "gru", epochs=1, window=120, stride=120, progress=False)
    with pytest.warns(xmsgl.XmsglWarning, match="reaches before the dataset's days .* only the 31 "
                                                "days from 2000-10-01 to 2000-10-31"):
        out = model.predict(basin, time=("2000-01-01", "2000-10-31"))
    assert out.sizes["time"] == 31


def test_fit_says_which_of_its_periods_reach_beyond_the_record(basin: xr.Dataset) -> None:
    """A period cut to the record is said, each by its name, with the days the fit had."""
    pytest.importorskip("torch")
    with pytest.warns(xmsgl.XmsglWarning) as caught:
        model = xmsgl.fit(basin, "fine-only", epochs=1, progress=False,
                          train=("1999-10-01", "2001-09-30"), val=("2001-10-01", "2002-03-31"),
                          test=("2002-04-01", "2003-09-30"))
    said = [str(w.message) for w in caught if "the dataset's days" in str(w.message)]
    assert len(said) == 2, said
    assert re.match(r"train=\('1999-10-01', '2001-09-30'\) reaches before the dataset's days "
                    r"\(2000-10-01 to 2002-09-30\): only the 365 days from 2000-10-01 to 2001-09-30 "
                    "are trained on", said[0])
    assert re.match(r"test=.* reaches past .*: only the 183 days from 2002-04-01 to 2002-09-30 "
                    "are held out for testing", said[1])
    assert model.config["periods"]["test"] == [("2002-04-01", "2002-09-30")]
    # Periods inside the record: nothing to say about them.
    with warnings.catch_warnings(record=True) as inside:
        warnings.simplefilter("always")
        xmsgl.fit(basin, "fine-only", epochs=1, progress=False, train=("2000-10-01", "2001-09-30"),
                  val=("2001-10-01", "2002-03-31"), test=("2002-04-01", "2002-09-30"))
    assert not [w for w in inside if "the dataset's days" in str(w.message)]


def test_a_baselines_and_stage_as_periods_beyond_the_record_are_said(basin: xr.Dataset) -> None:
    with pytest.warns(xmsgl.XmsglWarning, match=r"train=\('2000-01-01', '2001-09-30'\) reaches before "
                                                r".*only the 365 days .* are trained on"):
        model = fit_baseline(basin, "climatology", train=("2000-01-01", "2001-09-30"))
    assert model.config["train"] == [("2000-10-01", "2001-09-30")]
    pytest.importorskip("torch")
    with pytest.warns(xmsgl.XmsglWarning, match=r"stage_a_period=\('2000-01-01', '2001-03-31'\) "
                                                r"reaches before .* only the 182 days from 2000-10-01 "
                                                "to 2001-03-31 are read by stage A"):
        xmsgl.fit(basin, "async-msgl", epochs=1, pretrain_epochs=1, progress=False,
                  train=("2000-10-01", "2001-09-30"), val=("2001-10-01", "2002-03-31"),
                  test=("2002-04-01", "2002-09-30"), stage_a_period=("2000-01-01", "2001-03-31"))


def test_robustness_warns_of_days_given_inside_the_fit(basin: xr.Dataset) -> None:
    from xmsgl.robustness import robustness

    model = fit_baseline(basin, "climatology", train=("2000-10-01", "2001-09-30"))
    with pytest.warns(xmsgl.InSampleWarning, match=r"30 of the 61 days scored lie inside the periods "
                                                   r"the model's fit read \(2000-10-01/2001-09-30\)"):
        robustness(basin, model, {"lag": [1]}, time=("2001-09-01", "2001-10-31"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # held-out days, inside the record: nothing to say
        robustness(basin, model, {"lag": [1]}, time=("2001-10-01", "2001-10-31"))
    with pytest.warns(xmsgl.XmsglWarning, match="reaches past .* are scored"):
        robustness(basin, model, {"lag": [1]}, time=("2002-09-01", "2002-12-31"))


def test_in_sample_warnings_are_one_class() -> None:
    assert issubclass(xmsgl.InSampleWarning, xmsgl.XmsglWarning)
    assert xmsgl.InSampleWarning is xmsgl.exceptions.InSampleWarning


def _fahrenheit_labelled_celsius(ds: xr.Dataset, name: str, period: tuple[str, str]) -> xr.Dataset:
    """``ds`` with ``name`` in degF on the days of ``period``, still labelled degC (a
    winter's file appended in the wrong units; a whole record in degF has summers
    beyond any air temperature, which validation refuses)."""
    inside = (ds.time >= np.datetime64(period[0])) & (ds.time <= np.datetime64(period[1]))
    return ds.assign({name: ds[name].where(~inside, ds[name] * 1.8 + 32.0).assign_attrs(ds[name].attrs)})


def test_the_gru_and_mohseni_judge_their_inputs_range(basin: xr.Dataset) -> None:
    """The baselines that read inputs warn, as the networks do, of a degF air temperature
    labelled degC; the record itself is silent."""
    pytest.importorskip("torch")
    winter = ("2001-12-01", "2002-02-28")
    bad = _fahrenheit_labelled_celsius(basin, "reach_air_temp", winter)
    gru = xmsgl.fit(basin, "gru", epochs=1, window=120, stride=120, progress=False)
    mohseni = fit_baseline(basin, "mohseni")
    # The ranges they judge against, recorded at fit: over the gauged reaches' training days.
    lo, hi = gru.config["variables"]["observed_range"]["reach_air_temp"]
    assert lo < 0 < 20 < hi < 40
    assert mohseni.config["input_range"]["reach_air_temp"]["range"][1] > 20
    for model in (gru, mohseni):
        with warnings.catch_warnings():
            warnings.simplefilter("error", xmsgl.InputRangeWarning)
            good = model.predict(basin, time=winter)
        with pytest.warns(xmsgl.InputRangeWarning, match=r"'reach_air_temp' \(degC; \d+% of the node-days"):
            off = model.predict(bad, time=winter)
        # The values read as they are: the warning is all that tells them apart.
        assert float(abs(off - good).mean()) > 1.0


def test_the_mohseni_range_is_part_of_its_identity(basin: xr.Dataset, tmp_path) -> None:
    # Counted like every other entry, so that another xmsgl version, which counts them
    # all, reads the same sha256 from the same folder; a refit gives the same one.
    a = fit_baseline(basin, "mohseni")
    assert fit_baseline(basin, "mohseni").sha256 == a.sha256
    assert xmsgl.load(a.save(tmp_path / "m")).sha256 == a.sha256
    b = fit_baseline(basin, "mohseni")
    b.config["input_range"] = {}
    assert b.sha256 != a.sha256


def test_fahrenheit_water_of_a_cool_season_labelled_degc_is_warned_of() -> None:
    """Water temperatures in degF labelled degC pass the degC range check in a cool season
    (32-60 degF): validation, and so fit, warns of them; a fill value in the targets is
    refused with where it lies and how to mask it."""
    ds = xmsgl.datasets.synthetic_basin(n_segments=6, start="2000-12-01", end="2001-03-31", seed=2,
                                        reach_obs_share=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xmsgl.validate(ds)  # the record as it is: silent
    f = ds.assign(reach_temp=(ds.reach_temp * 1.8 + 32.0).assign_attrs(ds.reach_temp.attrs))
    assert float(f.reach_temp.max()) < 60  # inside the range a degC label accepts
    with pytest.warns(xmsgl.XmsglWarning, match=r"water temperature 'reach_temp' is labelled degC but \d+ "
                                                r"of its \d+ values \(\d+%\) exceed 40.*degF"):
        xmsgl.validate(f)
    fill = ds.reach_temp.copy()
    r, t = np.argwhere(np.isfinite(fill.values))[3]
    fill[r, t] = -9999.0
    rid, day = int(ds.reach.values[r]), str(ds.time.values[t])[:10]
    with pytest.raises(xmsgl.UnitsError, match=rf"holds -9999 \(1 value, at reach {rid} on {day}\).*"
                                               r"missing-data code.*mask it") as info:
        xmsgl.validate(ds.assign(reach_temp=fill))
    # The mask advised, run as written, drops the code alone.
    advice = re.search(r"ds\['reach_temp'\] = (.*?), then fill", str(info.value))
    assert advice
    masked = eval(advice.group(1), {"ds": ds.assign(reach_temp=fill)})
    assert int(masked.notnull().sum()) == int(fill.notnull().sum()) - 1


def test_a_list_of_two_days_is_said_once(basin: xr.Dataset) -> None:
    model = fit_baseline(basin, "climatology")
    with pytest.warns(xmsgl.XmsglWarning) as said:
        model.predict(basin, time=["2001-01-01", "2001-03-01"])
    assert sum("list of two single days" in str(w.message) for w in said) == 1
