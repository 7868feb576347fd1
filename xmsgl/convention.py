"""The multi-scale river dataset convention and its validation.

An xmsgl dataset is an :class:`xarray.Dataset` that describes one river network at
two scales:

* dimension ``seg``: coarse segments (for example USGS National Hydrologic Model
  segments), coordinate ``seg`` holding positive integer ids;
* dimension ``reach``: fine reaches (for example NHDPlusV2 flowlines), coordinate
  ``reach`` holding positive integer ids;
* dimension ``time``: daily time steps, strictly increasing ``datetime64``; missing
  days are allowed (windows and inference restart after each gap).

Topology variables (required):

=================  ==========  ===================================================
name               dims        meaning
=================  ==========  ===================================================
``seg_to``         (seg,)      id of the downstream segment, ``OUTLET`` (0) at outlets
``seg_length``     (seg,)      segment length, units ``m`` (``km`` is converted)
``reach_to``       (reach,)    id of the downstream reach, ``OUTLET`` (0) at outlets
``reach_length``   (reach,)    reach length, units ``m`` (``km`` is converted)
``reach_seg``      (reach,)    id of the segment the reach belongs to
=================  ==========  ===================================================

Optional geometry: ``seg_x``/``seg_y`` and ``reach_x``/``reach_y`` (projected, m) or
``*_lon``/``*_lat`` (degrees), ``seg_elevation``/``reach_elevation`` (m).

Targets: ``seg_temp`` on (seg, time) and ``reach_temp`` on (reach, time), water
temperature in ``degC`` with NaN where unobserved. Variables whose name ends in
``_true`` (``reach_temp_true`` in the synthetic basin) are the full truth kept for
evaluation and are never used as inputs.

Every other floating-point variable on (seg, time), (reach, time), (seg,) or (reach,)
is an input (a forcing or a static attribute) and must carry a ``units`` attribute
(``"1"`` for dimensionless quantities); integer and boolean variables are flags or ids.
Variables on other dimensions are ignored. :func:`same_units` compares ``units``
attributes however they are spelled.
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xmsgl.exceptions import (
    DataError,
    ParameterError,
    SchemaError,
    TimeError,
    TimeGapWarning,
    TopologyError,
    UnitConversionWarning,
    UnitsError,
    XmsglWarning,
    check_count,
    check_flag,
    format_ids,
    plural,
    typed_arguments,
    warn_at_user,
)
from xmsgl.periods import mask_runs, mask_spans, spans_text

__all__ = [
    "SEG",
    "REACH",
    "TIME",
    "CF_CONVENTIONS",
    "OUTLET",
    "TOPOLOGY",
    "TARGETS",
    "GEOMETRY",
    "InputVariables",
    "fill_daily",
    "whole_time_chunks",
    "input_variables",
    "same_units",
    "validate",
    "to_convention",
    "topology_arrays",
    "Topology",
    "daily_time_bounds",
    "cf_coordinate_attrs",
    "output_dataset",
    "acdd_attrs",
    "ACDD_CONVENTIONS",
    "OUTPUT_CONVENTIONS",
    "CARRIED_ATTRS",
    "CREDIT_ATTRS",
]

SEG = "seg"
REACH = "reach"
TIME = "time"
#: The CF version xmsgl's files follow: 1.9 and later allow the 64-bit integers of
#: their ids and time stamps (CF-1.8 did not).
CF_CONVENTIONS = "CF-1.11"

#: Downstream id written at outlets, in ``seg_to`` and ``reach_to``. Ids are positive.
OUTLET = 0

TOPOLOGY: dict[str, tuple[str, ...]] = {
    "seg_to": (SEG,),
    "seg_length": (SEG,),
    "reach_to": (REACH,),
    "reach_length": (REACH,),
    "reach_seg": (REACH,),
}
POINTERS = ("seg_to", "reach_to", "reach_seg")
LENGTHS = ("seg_length", "reach_length")

TARGETS: dict[str, str] = {"seg_temp": SEG, "reach_temp": REACH}

GEOMETRY = tuple(
    f"{scale}_{c}" for scale in (SEG, REACH) for c in ("x", "y", "lon", "lat")
)

#: Largest length accepted in ``seg_length`` and ``reach_length`` (in the file's units:
#: m, or km converted later). Far longer than any river; larger values are mistakes.
MAX_LENGTH = 1e12

# Ids are stored as int64; larger unsigned or float ids cannot be represented.
_MAX_ID = np.iinfo(np.int64).max
# The largest float that converts to int64 without overflow (2**63 itself does not).
_MAX_ID_FLOAT = float(2**63 - 1024)

#: Plausible range of daily mean water temperature in degC, used to judge units.
PLAUSIBLE_WATER_TEMP = (-5.0, 45.0)

#: Range, in degC, that water temperatures (the targets ``seg_temp``, ``reach_temp``
#: and their ``*_true`` truth) must fall in once converted from kelvin or Fahrenheit.
#: Values outside it mean the label is wrong (degC values labelled ``K`` become
#: about -270 degC), so the conversion is refused rather than done.
CONVERTED_WATER_TEMP = (-5.0, 50.0)

#: The same range for every other temperature (air, dew point, soil, ...), wide enough
#: for the coldest and hottest air temperatures measured on Earth (-89 and 57 degC).
CONVERTED_OTHER_TEMP = (-90.0, 65.0)

# UDUNITS/CF and common spellings of the three temperature scales, matched after
# lower-casing and removing spaces, dots and underscores ("degrees_C" -> "degreesc").
_TEMP_PREFIX = r"(?:°|deg|degs|degree|degrees)?"
_TEMPERATURE_SCALES = (
    ("degC", re.compile(_TEMP_PREFIX + r"(?:c|celsius|centigrade)")),
    ("K", re.compile(_TEMP_PREFIX + r"(?:k|kelvins?)")),
    ("degF", re.compile(_TEMP_PREFIX + r"(?:f|fahrenheit)")),
)
#: Attributes of the input dataset that its outputs carry as ``xmsgl_input_*``: what the
#: data were, and what they approximate (the Delaware mirror's reach forcings are their
#: segment's), so that a file of predictions says what it was made from; every model's
#: output (networks, baselines, the GRU) gives them.
INPUT_ATTRS = ("title", "source", "approximations")

#: The metadata convention of the files xmsgl writes beside CF (Attribute Convention for
#: Data Discovery): their ``Conventions`` is ``"CF-1.11, ACDD-1.3"``.
ACDD_CONVENTIONS = "ACDD-1.3"
#: The ``Conventions`` of xmsgl's output files: both.
OUTPUT_CONVENTIONS = f"{CF_CONVENTIONS}, {ACDD_CONVENTIONS}"

#: Global attributes of the input that hold for what is made from it, carried as they
#: are to the file :func:`output_dataset` makes: the terms of use and what to cite.
CARRIED_ATTRS = ("license", "references", "acknowledgment", "acknowledgement", "project", "program")

#: Global attributes of the input that name who made it (ACDD's creator, contributor
#: and publisher, CF's institution) or identify it: not the maker or the identity of a
#: file made from it, so :func:`output_dataset` carries them as ``xmsgl_input_<name>``.
CREDIT_ATTRS = ("institution", "creator_name", "creator_email", "creator_url", "creator_type",
                "creator_institution", "contributor_name", "contributor_role", "publisher_name",
                "publisher_email", "publisher_url", "publisher_type", "publisher_institution",
                "id", "naming_authority", "doi")


def input_attrs(attrs: Mapping[str, Any]) -> dict[str, str | int]:
    """The input dataset's :data:`INPUT_ATTRS` as the ``xmsgl_input_*`` attributes of an output.

    Examples
    --------
    >>> input_attrs({"title": "Delaware", "history": "built"})
    {'xmsgl_input_title': 'Delaware'}

    Days whose inputs :func:`fill_daily` interpolated are named too: an output's values
    there come from forcings drawn as straight lines (their number an integer, as
    :func:`fill_daily` gives it).

    >>> input_attrs({"xmsgl_filled_days": 1, "xmsgl_filled_spans": "2004-02-29/2004-02-29"})
    {'xmsgl_input_filled_days': 1, 'xmsgl_input_filled_spans': '2004-02-29/2004-02-29'}
    """
    out: dict[str, str | int] = {f"xmsgl_input_{k}": str(attrs[k]) for k in INPUT_ATTRS if k in attrs}
    if "xmsgl_filled_days" in attrs:
        days = attrs["xmsgl_filled_days"]
        # A file's attribute reads back as a numpy number (or a one-element array); a
        # count that is no whole number is given as the text it was.
        value = np.asarray(days)
        whole = (value.size == 1 and value.dtype.kind in "iuf" and bool(np.isfinite(value).all())
                 and float(value.reshape(-1)[0]).is_integer())
        out["xmsgl_input_filled_days"] = int(value.reshape(-1)[0]) if whole else str(days)
    if "xmsgl_filled_spans" in attrs:
        out["xmsgl_input_filled_spans"] = str(attrs["xmsgl_filled_spans"])
    return out


_METRES = {"m", "meter", "meters", "metre", "metres"}
_KILOMETRES = {"km", "kilometer", "kilometers", "kilometre", "kilometres"}


#: The first statement of the time-aggregation advice: the data variables on 'time'.
_TIME_VARS = ("tv = [v for v in ds.data_vars if 'time' in ds[v].dims and v != "
              "ds.time.attrs.get('bounds')];")


def expect_dataset(ds: object) -> None:
    """Refuse anything but an :class:`xarray.Dataset` with a :class:`SchemaError` that
    says how to get one (a DataArray, such as ``downscale``'s output, has
    ``to_dataset()``)."""
    if isinstance(ds, xr.Dataset):
        # pint-xarray keeps units in the values (a pint Quantity), not in the attribute
        # every reader here takes them from; the stored values are looked at, never read.
        quantified = [str(name) for name, var in ds.variables.items()
                      if type(getattr(var, "_data", None)).__module__.split(".")[0] == "pint"]
        if quantified:
            raise UnitsError(f"variables {format_ids(quantified)} hold pint quantities (pint-xarray); "
                             "xmsgl reads units from each variable's 'units' attribute: pass "
                             "ds.pint.dequantify()")
        return
    if type(ds).__name__ == "DataTree":
        raise SchemaError(
            "expected an xarray.Dataset, got DataTree; merge its groups into one dataset (the "
            "segments' and reaches' variables side by side): xr.merge([node.to_dataset() for node "
            "in tree.subtree]), and read a netCDF file with groups with xr.open_datatree(path)")
    hint = ("; make one with da.to_dataset() (or pass the Dataset the array came from)"
            if isinstance(ds, xr.DataArray) else
            "; open the data with xarray.open_dataset or xarray.open_zarr")
    raise SchemaError(f"expected an xarray.Dataset, got {type(ds).__name__}{hint}")


def _nullable_kind(dtype: Any) -> str | None:
    """The numpy kind (``"i"``, ``"u"``, ``"f"``, ``"b"``) of a pandas nullable number
    dtype (``Int64``...), None for any other."""
    return getattr(getattr(dtype, "numpy_dtype", None), "kind", None)


def _missing_marker(marker: Any) -> bool:
    """Whether an outlet marker is "missing": NaN or pandas' ``<NA>``."""
    return marker is pd.NA or (isinstance(marker, (float, np.floating)) and bool(np.isnan(marker)))


def _extension_array(ds: xr.Dataset, name: Hashable) -> Any:
    """The pandas extension array (nullable ``Int64``, ``boolean``...) behind variable
    ``name``, or None for a numpy-backed one."""
    var = ds.variables[name]
    if isinstance(var.dtype, np.dtype):
        return None
    arr = ds.indexes[name].array if name in ds.indexes else ds[name].data
    return arr if hasattr(arr, "isna") and hasattr(arr, "to_numpy") else None


def _as_numpy(arr: Any) -> np.ndarray:
    """A pandas extension array as numpy values: whole numbers without a missing one
    stay integers (exactly: going through float64 rounds ids above 2**53), missing
    values become NaN."""
    missing = np.asarray(arr.isna(), dtype=bool)
    kind = _nullable_kind(arr.dtype)
    if kind in ("i", "u", "b") and not missing.any():
        return np.asarray(arr.to_numpy(dtype=arr.dtype.numpy_dtype))
    if kind in ("i", "u", "f"):
        return np.asarray(arr.to_numpy(dtype=np.float64, na_value=np.nan))
    return np.asarray(arr.to_numpy())


def numpy_backed(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with its pandas nullable numbers (an ``Int64`` column of a table read with
    ``dtype_backend='numpy_nullable'``, say) as numpy arrays, and numbers stored in the
    other byte order (``>i8`` on this machine, as some binary readers give them) in this
    machine's; ``ds`` itself when it has neither. Missing values become NaN; ids without
    one stay exact integers."""
    # Nullable numbers only: a timezone-aware time (another extension dtype) is
    # refused where time is checked, with its own fix.
    names = [name for name, var in ds.variables.items()
             if not isinstance(var.dtype, np.dtype) and _nullable_kind(var.dtype) in ("i", "u", "f", "b")]
    # pandas cannot index ids of the other byte order ("Big-endian buffer not supported").
    swapped = [name for name, var in ds.variables.items()
               if isinstance(var.dtype, np.dtype) and var.dtype.kind in "iufcb"
               and not var.dtype.isnative]
    if not (names or swapped):
        return ds
    out = ds.copy(deep=False)
    for name in [*names, *swapped]:
        var = ds.variables[name]
        if name in swapped:
            new = var.astype(var.dtype.newbyteorder("="))
        else:
            arr = _extension_array(ds, name)
            if arr is None:
                continue
            new = xr.Variable(var.dims, _as_numpy(arr), var.attrs, var.encoding)
        if name in ds.coords:
            out = out.assign_coords({name: new})
        else:
            out[name] = new
    return out


def _plain_units(units: object) -> str:
    """``units`` as text in ASCII where it spells a unit in Unicode: superscript exponents
    (``m³``, ``W m⁻²``, as pint's pretty format writes them), the minus sign ``−``, the
    middle dot ``·``, and ``℃`` / ``℉`` (``°C`` / ``°F``)."""
    text = unicodedata.normalize("NFKC", str(units).replace("º", "°"))
    return text.replace("\u2212", "-").replace("\u00b7", " ").replace("\u22c5", " ")


def _norm_units(units: object) -> str:
    return _plain_units(units).strip().lower()


def _temperature_scale(units: object) -> str | None:
    """``"degC"``, ``"K"`` or ``"degF"`` for a temperature spelling, else None."""
    u = re.sub(r"[\s_.]+", "", _norm_units(units))
    for scale, pattern in _TEMPERATURE_SCALES:
        if pattern.fullmatch(u):
            return scale
    return None


def is_temperature_units(units: object) -> bool:
    """Whether ``units`` names a temperature scale xmsgl understands.

    Examples
    --------
    >>> [is_temperature_units(u) for u in ("degC", "degrees_C", "degree_F", "K", "m")]
    [True, True, True, True, False]
    """
    return _temperature_scale(units) is not None


# Symbols and spelled-out names that mean the same unit. Symbols are matched exactly
# (``mW`` and ``MW`` differ); spelled-out names ignore case.
_UNIT_SYMBOLS = {
    "m": "m", "km": "km", "cm": "cm", "mm": "mm", "s": "s", "sec": "s", "min": "min",
    "h": "h", "hr": "h", "d": "d", "W": "W", "w": "W", "J": "J", "MJ": "MJ", "kg": "kg",
    "g": "g", "Pa": "Pa", "hPa": "hPa", "kPa": "kPa", "mbar": "hPa", "ft": "ft", "%": "%",
    "K": "K", "L": "L", "l": "L", "mL": "mL", "ml": "mL",
}
_UNIT_WORDS = {
    **{w: "m" for w in ("meter", "meters", "metre", "metres")},
    **{w: "km" for w in ("kilometer", "kilometers", "kilometre", "kilometres")},
    **{w: "mm" for w in ("millimeter", "millimeters", "millimetre", "millimetres")},
    **{w: "cm" for w in ("centimeter", "centimeters", "centimetre", "centimetres")},
    **{w: "s" for w in ("sec", "secs", "second", "seconds")},
    **{w: "min" for w in ("minute", "minutes")},
    **{w: "h" for w in ("hrs", "hour", "hours")},
    **{w: "d" for w in ("day", "days")},
    **{w: "W" for w in ("watt", "watts")},
    **{w: "J" for w in ("joule", "joules")},
    **{w: "MJ" for w in ("megajoule", "megajoules")},
    **{w: "kg" for w in ("kilogram", "kilograms")},
    **{w: "g" for w in ("gram", "grams")},
    **{w: "Pa" for w in ("pascal", "pascals")},
    **{w: "hPa" for w in ("hectopascal", "hectopascals", "millibar", "millibars")},
    **{w: "ft" for w in ("foot", "feet")},
    **{w: "L" for w in ("liter", "liters", "litre", "litres")},
    "percent": "%",
}
_DIMENSIONLESS = {"", "1", "-", "dimensionless", "unitless"}
_UNIT_TOKEN = re.compile(r"\s*([-+]?\d+(?:\.\d+)?|\*\*|[*/.^()]|%|°?[^\W\d]+)")


def _unit_symbol(token: str) -> str:
    if token in _UNIT_SYMBOLS:
        return _UNIT_SYMBOLS[token]
    if token.lower() in _UNIT_WORDS:
        return _UNIT_WORDS[token.lower()]
    scale = _temperature_scale(token) if len(token) > 1 else None
    # Unknown words are compared without case; short unknown symbols keep theirs.
    return scale or (token.lower() if len(token) > 2 else token)


def _parse_units(text: str) -> dict[str, float] | None:
    """``{symbol: exponent}`` of a unit string, or None where it cannot be parsed.

    Understands products by space, ``*`` or ``.``, division by ``/`` (left to right,
    as UDUNITS reads it), parentheses and exponents written ``m3``, ``m^3``, ``m**3``
    or ``s-1``.
    """
    text = _plain_units(text)
    if text.strip().lower() in _DIMENSIONLESS:
        return {}
    scale = _temperature_scale(text)
    if scale is not None:
        return {scale: 1.0}
    tokens: list[str] = []
    pos = 0
    while pos < len(text):
        m = _UNIT_TOKEN.match(text, pos)
        if m is None:
            if text[pos:].strip():
                return None
            break
        tokens.append(m.group(1))
        pos = m.end()

    def is_number(tok: str) -> bool:
        return bool(re.fullmatch(r"[-+]?\d+(?:\.\d+)?", tok))

    i = 0

    def factor() -> dict[str, float] | None:
        nonlocal i
        if i >= len(tokens):
            return None
        tok = tokens[i]
        if tok == "(":
            i += 1
            inner = product()
            if inner is None or i >= len(tokens) or tokens[i] != ")":
                return None
            i += 1
        elif is_number(tok):
            # Only a bare 1 (as in "1/s") is a unit; other numbers are scale factors.
            if float(tok) != 1.0:
                return None
            i += 1
            return {}
        elif tok in ("*", "**", ".", "/", "^", ")"):
            return None
        else:
            i += 1
            inner = {_unit_symbol(tok): 1.0}
        if i < len(tokens) and tokens[i] in ("^", "**"):
            i += 1
            if i >= len(tokens) or not is_number(tokens[i]):
                return None
        if i < len(tokens) and is_number(tokens[i]):
            power = float(tokens[i])
            i += 1
            inner = {k: v * power for k, v in inner.items()}
        return inner

    def product() -> dict[str, float] | None:
        nonlocal i
        out: dict[str, float] = {}
        sign = 1.0
        while True:
            f = factor()
            if f is None:
                return None
            for k, v in f.items():
                out[k] = out.get(k, 0.0) + sign * v
            if i >= len(tokens) or tokens[i] == ")":
                return out
            sign = -1.0 if tokens[i] == "/" else 1.0
            if tokens[i] in ("/", "*", "."):
                i += 1

    parsed = product()
    if parsed is None or i != len(tokens):
        return None
    return {k: v for k, v in parsed.items() if v != 0.0}


def same_units(a: str | None, b: str | None) -> bool:
    """Whether two ``units`` attributes name the same unit, however they are spelled.

    Temperature scales match in any of their UDUNITS/CF spellings (``degC``,
    ``degrees_C``, ``degree_Celsius``, ``celsius``, ``°C``; ``K``, ``degrees_K``,
    ``kelvin``; ``degF``, ``degree_F``, ``fahrenheit``). Compound units are compared
    symbol by symbol, with exponents written ``m3``, ``m^3``, ``m**3`` or ``s-1``,
    division written ``/``, and products written with spaces, ``*`` or ``.``, so that
    ``m3 s-1``, ``m^3/s`` and ``m**3 s**-1`` are equal, as are ``W m-2`` and ``W/m2``,
    or ``mm d-1``, ``mm/day`` and ``mm day-1``. ``"1"``, ``""`` and ``dimensionless``
    are the same. Strings that cannot be read this way are compared after trimming,
    collapsing spaces and lower-casing. A missing attribute (``None``) equals only
    another missing one.

    Units are not converted: ``km`` and ``m``, or ``degC`` and ``K``, differ.

    Parameters
    ----------
    a, b : str or None
        The two ``units`` attributes.

    Returns
    -------
    bool

    Examples
    --------
    >>> same_units("degC", "degrees_C"), same_units("celsius", "degree_Celsius")
    (True, True)
    >>> same_units("m3 s-1", "m^3/s"), same_units("m**3 s**-1", "m3/s")
    (True, True)
    >>> same_units("W m-2", "W/m2"), same_units("mm d-1", "mm/day")
    (True, True)
    >>> same_units("degC", "K"), same_units("m", "km"), same_units("mW", "MW")
    (False, False, False)
    """
    if a is None or b is None:
        return a is None and b is None
    pa, pb = _parse_units(str(a)), _parse_units(str(b))
    if pa is not None and pb is not None:
        return pa == pb
    return " ".join(str(a).split()).lower() == " ".join(str(b).split()).lower()


# Units that differ from others by a factor alone: (factor, base units) in SI base units.
_LINEAR_UNITS: dict[str, tuple[float, dict[str, float]]] = {
    "m": (1.0, {"m": 1.0}), "km": (1e3, {"m": 1.0}), "cm": (1e-2, {"m": 1.0}),
    "mm": (1e-3, {"m": 1.0}), "ft": (0.3048, {"m": 1.0}), "in": (0.0254, {"m": 1.0}),
    "mi": (1609.344, {"m": 1.0}), "ha": (1e4, {"m": 2.0}), "L": (1e-3, {"m": 3.0}),
    "mL": (1e-6, {"m": 3.0}),
    "s": (1.0, {"s": 1.0}), "min": (60.0, {"s": 1.0}),
    "h": (3600.0, {"s": 1.0}), "d": (86400.0, {"s": 1.0}), "kg": (1.0, {"kg": 1.0}),
    "g": (1e-3, {"kg": 1.0}), "J": (1.0, {"kg": 1.0, "m": 2.0, "s": -2.0}),
    "MJ": (1e6, {"kg": 1.0, "m": 2.0, "s": -2.0}), "W": (1.0, {"kg": 1.0, "m": 2.0, "s": -3.0}),
    "Pa": (1.0, {"kg": 1.0, "m": -1.0, "s": -2.0}), "hPa": (1e2, {"kg": 1.0, "m": -1.0, "s": -2.0}),
    "kPa": (1e3, {"kg": 1.0, "m": -1.0, "s": -2.0}), "%": (1e-2, {}),
}


def _in_base_units(text: str) -> tuple[float, dict[str, float]] | None:
    """``text`` as a factor times SI base units, or None (not parsed, a temperature,
    or a symbol without a known factor)."""
    parsed = _parse_units(text)
    if parsed is None:
        return None
    factor, base = 1.0, dict[str, float]()
    for symbol, power in parsed.items():
        if symbol not in _LINEAR_UNITS:
            return None
        f, dims = _LINEAR_UNITS[symbol]
        factor *= f ** power
        for d, p in dims.items():
            base[d] = base.get(d, 0.0) + p * power
    return factor, {d: p for d, p in base.items() if p != 0.0}


def units_factor(have: str, want: str) -> float | None:
    """The number that values in ``have`` are multiplied by to be in ``want``, where
    the two differ by a factor alone (``cm`` and ``m``, ``L s-1`` and ``m3 s-1``,
    ``m d-1`` and ``mm d-1``, ``%`` and ``1``); None otherwise (temperatures, which
    differ by an offset too, and units not known here).

    >>> units_factor("cm", "m"), units_factor("L s-1", "m3 s-1"), units_factor("%", "1")
    (0.01, 0.001, 0.01)
    >>> units_factor("m d-1", "mm/day"), units_factor("degF", "degC"), units_factor("m", "kg")
    (1000.0, None, None)
    """
    a, b = _in_base_units(have), _in_base_units(want)
    if a is None or b is None or a[1] != b[1]:
        return None
    return float(f"{a[0] / b[0]:.12g}")


def units_refusal(name: str, have: str, want: str, fitted: str = "the model",
                  refit: str = "refit the model") -> str:
    """Why the input ``name`` in units ``have`` cannot be read by what was ``fitted`` with
    it in ``want``, and the fix: the factor where there is one (:func:`units_factor`),
    else a plain "convert it"."""
    factor = units_factor(have, want)
    if factor is None:
        fix = "convert it"
    elif factor == 1.0:
        fix = f"it is the same unit: set ds[{name!r}].attrs['units'] = {want!r}"
    else:
        fix = (f"convert it (ds[{name!r}] = ds[{name!r}] * {factor:.12g}, then "
               f"ds[{name!r}].attrs['units'] = {want!r})")
    return (f"input variable {name!r} has units {have!r}; {fitted} was fitted with {want!r}: "
            f"{fix} or {refit}")


def is_truth(name: Hashable) -> bool:
    """Whether ``name`` is an evaluation-only truth variable (``*_true``)."""
    return str(name).endswith("_true")


def _is_lazy(da: xr.DataArray) -> bool:
    return da.chunks is not None


@dataclass(frozen=True)
class InputVariables:
    """Names of the input variables of a dataset, grouped by scale and kind."""

    seg_dynamic: tuple[str, ...]
    seg_static: tuple[str, ...]
    reach_dynamic: tuple[str, ...]
    reach_static: tuple[str, ...]

    def all(self) -> tuple[str, ...]:
        return self.seg_dynamic + self.seg_static + self.reach_dynamic + self.reach_static


# Units of integer variables that are flags, counts or ids rather than quantities.
_NON_PHYSICAL_UNITS = {
    "", "1", "-", "none", "dimensionless", "unitless", "count", "counts", "number", "flag",
    "flags", "bool", "boolean", "mask", "id", "ids", "index", "category", "class", "code",
}
_ID_SUFFIXES = ("_id", "_ids", "_idx", "_index", "_flag", "_mask", "_code")
_PACKING_ATTRS = ("scale_factor", "add_offset")


def _has_physical_units(name: str, da: xr.DataArray) -> bool:
    """Whether an integer or boolean variable looks like a quantity, not a flag or id."""
    units = da.attrs.get("units")
    if units is None or any(k in da.attrs for k in ("flag_values", "flag_meanings", "flag_masks")):
        return False
    u = " ".join(str(units).split()).lower()
    if u in _NON_PHYSICAL_UNITS or re.search(r"\b(flag|id|index|count)s?\b", u):
        return False
    return not name.lower().endswith(_ID_SUFFIXES)


def _refuse_unmasked(ds: xr.Dataset, names: Iterable[Hashable]) -> None:
    """Refuse variables whose declared fill values were not masked.

    Decoding moves ``_FillValue`` and ``missing_value`` from a variable's attributes
    to its encoding; still in the attributes, they mean the file was opened without
    masking (``mask_and_scale=False`` or ``decode_cf=False``), and a missing day reads
    as that number, which may lie among real values (-50 W m-2). Refused where the
    values are lazy (not read to check) or hold a declared fill value; an in-memory
    variable that holds none (NaN where missing, the attribute left in by hand) passes.
    """
    for key in names:
        da = ds[key]
        fills = {}
        for attr in ("_FillValue", "missing_value"):
            if attr not in da.attrs:
                continue
            vals = np.atleast_1d(np.asarray(da.attrs[attr]))
            if vals.dtype.kind in "iufb":
                vals = vals.astype(np.float64)
                vals = vals[np.isfinite(vals)]
                if vals.size:
                    fills[attr] = vals
        if not fills:
            continue
        declared = ", ".join(f"{a} = {format_ids(v.tolist()) if v.size > 1 else f'{v[0]:g}'}"
                             for a, v in fills.items())
        rounded_only = False
        if _is_lazy(da):
            found = "its values are not read here"
        else:
            values = np.asarray(da.values)
            declared_fills = np.concatenate(list(fills.values()))
            hit = np.isin(values, declared_fills)
            if values.dtype.kind == "f" and values.dtype != declared_fills.dtype:
                # A float32 variable with its fill declared as float64 (-99.9) holds the
                # fill rounded to float32, which equals no float64 value; xr.decode_cf
                # compares so too and leaves them in.
                with np.errstate(over="ignore"):
                    cast = np.isin(values, declared_fills.astype(values.dtype))
                rounded_only = bool((cast & ~hit).any())
                hit |= cast
            n = int(np.count_nonzero(hit))
            if not n:
                continue
            found = f"{n} value{'s' if n != 1 else ''} equal to it"
        fix = (f"the fill is declared as float64 and the values are {da.dtype}, so xr.decode_cf "
               f"would not mask them either: mask them with ds[{str(key)!r}] = ds[{str(key)!r}]"
               f".where(~ds[{str(key)!r}].isin(np.array({declared_fills.tolist()!r}, "
               f"dtype={str(da.dtype)!r}))) and drop the attribute" if rounded_only else
               "open the file with xr.open_dataset(...) and its default masking (not "
               "mask_and_scale=False or decode_cf=False), or decode it with ds = xr.decode_cf(ds)")
        raise DataError(
            f"variable {str(key)!r} was not masked: its attributes still declare {declared} "
            f"({found}), so missing values would be read as numbers; {fix}"
        )


def _refuse_packed(ds: xr.Dataset, names: Iterable[Hashable]) -> None:
    """Refuse variables that still carry CF packing attributes (not decoded)."""
    packed = [str(n) for n in names if any(a in ds[n].attrs for a in _PACKING_ATTRS)]
    if not packed:
        return
    which = (f"variable {packed[0]!r} is" if len(packed) == 1
             else f"variables {format_ids(packed)} are")
    raise UnitsError(
        f"{which} still packed: the attributes hold 'scale_factor' or 'add_offset', so the "
        f"values are the stored integers, not the physical quantity; open the file with "
        f"xr.open_dataset(..., mask_and_scale=True) (the default) or decode it with "
        f"ds = xr.decode_cf(ds)"
    )


#: Attribute ``validate`` puts on an integer temperature it converted to float degC:
#: the dtype it was stored as, so that it stays out of the inputs as the integer did.
STORED_AS = "xmsgl_stored_as"

#: Attribute giving a variable's part in a model, one of :data:`ROLES`: ``"ignore"``
#: leaves a variable out (and unconverted), ``"input"`` takes one that looks like
#: observed water temperature as an input without a warning.
ROLE = "xmsgl_role"
ROLES = ("ignore", "input")


def role(name: Hashable, da: xr.DataArray) -> str | None:
    """Variable ``name``'s :data:`ROLE` in lower case, or None where it has none.

    Any case and surrounding spaces are accepted (``"Ignore"``); another value
    (``"ignored"``, ``"skip"``) raises :class:`SchemaError`, since taking it for no
    role would use as an input the variable it was meant to leave out.
    """
    value = da.attrs.get(ROLE)
    if value is None:
        return None
    text = _scalar_attr(value)
    found = text.strip().lower() if isinstance(text, str) else None
    if found not in ROLES:
        raise SchemaError(
            f"variable {str(name)!r} has {ROLE}={value!r}, which xmsgl does not know; the roles "
            f"are 'ignore' (leave the variable out) and 'input' (use it as a model input): set "
            f"ds[{str(name)!r}].attrs[{ROLE!r}] = 'ignore', or delete the attribute"
        )
    return found


#: Coordinates that place nodes on a map, by name or ``standard_name``: never model
#: inputs, and no warning for them.
_PLACE_COORDS = {"x", "y", "lat", "lon", "latitude", "longitude", "projection_x_coordinate",
                 "projection_y_coordinate", "grid_latitude", "grid_longitude"}


def input_coords(ds: xr.Dataset, skip: Iterable[str] = ()) -> list[str]:
    """Coordinates of ``ds`` that would be model inputs as data variables.

    Coordinates are never inputs; a floating-point one on a node dimension (and
    maybe ``time``) with physical units, that is no index, geometry or map position
    and has no ``xmsgl_role`` of ``"ignore"``, looks like an input a file's
    ``coordinates`` attribute (or ``set_coords``) made a coordinate.
    """
    skip = set(skip) | set(TOPOLOGY) | set(TARGETS) | set(GEOMETRY)
    found = []
    for key, c in ds.coords.items():
        name = str(key)
        dims = set(map(str, c.dims))
        if (name in skip or key in ds.indexes or is_truth(name) or not dims
                or not {SEG, REACH} & dims or not dims <= {SEG, REACH, TIME}
                or not np.issubdtype(c.dtype, np.floating)):
            continue
        units = c.attrs.get("units")
        standard = str(c.attrs.get("standard_name", "")).lower()
        if (units is None or name.lower() in _PLACE_COORDS or standard in _PLACE_COORDS
                or str(c.attrs.get("axis", "")).upper() in ("X", "Y")
                or _norm_units(units).startswith("degree") and not is_temperature_units(units)
                or not _has_physical_units(name, c) or role(name, c) == "ignore"):
            continue
        found.append(name)
    return found


def _warn_input_like_coords(ds: xr.Dataset, skip: Iterable[str]) -> None:
    """Warn of the coordinates :func:`input_coords` finds, with the fixes."""
    names = input_coords(ds, skip)
    if not names:
        return
    which = (f"coordinate {names[0]!r} looks" if len(names) == 1
             else f"coordinates {format_ids(names)} look")
    warn_at_user(
        f"{which} like a model input (a float with units on the nodes), but coordinates are "
        f"not inputs (a file's 'coordinates' attribute or set_coords makes a variable one): "
        f"to use {'it' if len(names) == 1 else 'them'}, ds = ds.reset_coords({names!r}); to "
        f"silence this, set ds[{names[0]!r}].attrs['xmsgl_role'] = 'ignore'",
        XmsglWarning,
    )


def whole_time_chunks(da: xr.DataArray) -> xr.DataArray:
    """``da``, if dask-backed, in chunks that each hold its whole ``time`` axis, for a
    function that runs along that axis (interpolation in time, a zero-phase filter).

    Keeping the other dimensions' chunks would make a chunk of a long record many
    times the input's (a chunk of 10^4 reaches over forty years is 2.3 GB in float32
    where the input's were a year long): the other dimensions are cut instead, the one
    of the longest chunks first, so that a chunk holds no more than dask's
    ``array.chunk-size``, or than the input's largest chunk where that is larger (one
    node's whole record at least). Chunks are split at most, within the input's
    boundaries, never merged. A variable in memory or without ``time`` is returned as
    it is.
    """
    if da.chunks is None or TIME not in da.dims:
        return da
    import dask
    from dask.utils import parse_bytes

    sizes = da.chunksizes
    others = [d for d in da.dims if d != TIME]
    item = int(da.dtype.itemsize)
    largest = item * int(np.prod([max(sizes[d]) for d in da.dims]))
    limit = max(int(parse_bytes(dask.config.get("array.chunk-size"))), largest)
    cut: dict[Hashable, int] = {d: int(max(sizes[d])) for d in others}

    def chunk_bytes() -> int:
        return item * int(da.sizes[TIME]) * int(np.prod(list(cut.values())))

    # The other dimensions are cut in turn, the one of the longest chunks first, until
    # a chunk fits (a short one, ensemble members say, could not be cut far enough).
    while cut and chunk_bytes() > limit:
        dim = max(cut, key=lambda d: cut[d])
        if cut[dim] == 1:
            break  # one node's whole record is all there is to cut
        cut[dim] = max(1, cut[dim] * limit // chunk_bytes())

    def split(chunks: tuple[int, ...], most: int) -> tuple[int, ...]:
        # Each chunk of the input in near-equal pieces of at most ``most``: none merged
        # with its neighbours, so the input's boundaries stay (and chunks small enough
        # stay as they are).
        pieces: list[int] = []
        for c in chunks:
            n = max(1, -(-int(c) // most))
            pieces += [int(c) // n + (i < int(c) % n) for i in range(n)]
        return tuple(pieces)

    return da.chunk({TIME: -1, **{d: split(tuple(sizes[d]), cut[d]) for d in others}})


def fill_daily(ds: xr.Dataset, max_gap: int | None = None,
               exclude: Iterable[str] = ()) -> xr.Dataset:
    """Daily steps from the first day of ``ds`` to its last, the inputs of the added days
    interpolated linearly in time; observations, truth and every other variable stay
    missing (NaN; boolean flags False) there.

    A gap left in the days restarts the recurrent state (``TimeGapWarning``); filling
    its forcings lets a model run through it. Filling the whole dataset
    (``ds.resample(time='1D').interpolate('linear')``) would also draw straight lines
    through the observations, which a fit would then train on.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention; its days may have gaps. Every stamp must be at
        one time of day (as a daily record's are).
    max_gap : int, optional
        The longest gap (missing days in a row) to fill; the days of longer gaps are
        not added, so those gaps stay. Default: fill every gap, with a
        :class:`~xmsgl.exceptions.TimeGapWarning` naming those longer than
        :data:`LONG_FILL_DAYS` (30) days, whose forcings become straight lines.
    exclude : iterable of str, optional
        Inputs by the convention that are not to be filled, such as a process model's
        water temperature given to ASYNC-MSGL as ``stage_a_variable`` (a target there).

    Returns
    -------
    xarray.Dataset
        A copy on daily steps, with the attribute ``xmsgl_filled_days`` (the number of
        days added); each variable keeps its attributes and encoding (but an integer
        one without a ``_FillValue``, now float with NaN on the added days, loses its
        integer ``dtype``), and time bounds (named by ``time``'s ``bounds`` attribute,
        or a ``time_bnds`` / ``time_bounds`` of dates where that was lost) are made
        again for every day. Dask variables stay lazy (an interpolated one in the
        input's chunks, of its largest chunk length along time; in between, the
        interpolation reads chunks of the whole record cut along the other dimension,
        :func:`whole_time_chunks`). The added days are named in ``xmsgl_filled_spans``
        and a ``history`` line; ``downscale`` carries both counts to its outputs
        (``xmsgl_input_filled_days``, ``xmsgl_input_filled_spans``).

    Raises
    ------
    SchemaError
        ``ds`` is no Dataset.
    TimeError
        ``ds`` has no ``time`` dimension of dates, a step is NaT, its days are unsorted
        or repeated, its stamps lie at several times of day or carry a time zone, or
        lie outside their time bounds.
    ParameterError
        ``max_gap`` is not a whole number of at least 1, or ``exclude`` names no
        input, or is not names.

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=3, start="2001-01-01", end="2001-01-31")
    >>> gappy = ds.drop_sel(time=ds.time[10:15])
    >>> full = fill_daily(gappy)
    >>> full.sizes["time"], int(full.reach_temp.isel(time=slice(10, 15)).count())
    (31, 0)
    """
    if not isinstance(ds, xr.Dataset):
        raise SchemaError(f"fill_daily takes an xarray.Dataset in the convention, got "
                          f"{type(ds).__name__}; e.g. fill_daily(xr.open_dataset(path))")
    if max_gap is not None:
        check_count("max_gap", max_gap)
    if TIME not in ds.dims or TIME not in ds.coords:
        raise TimeError("the dataset has no 'time' dimension; there are no days to fill")
    _refuse_timezones(ds[TIME])
    if not np.issubdtype(ds[TIME].dtype, np.datetime64):
        calendar = getattr(ds[TIME].values.flat[0], "calendar", None) if ds.sizes[TIME] else None
        if calendar is not None:
            raise TimeError(cftime_message(calendar))
        raise TimeError(f"coordinate 'time' must hold dates (datetime64), got {ds[TIME].dtype}")
    t = pd.DatetimeIndex(ds[TIME].values)
    if t.hasnans:
        where = np.flatnonzero(np.asarray(t.isna()))
        raise TimeError(f"coordinate 'time' holds NaT (not-a-time) at positions "
                        f"{where[:5].tolist()}{' ...' if where.size > 5 else ''}; drop those steps "
                        "first: ds = ds.sel(time=ds.time.notnull())")
    if len(t) and not (t[1:] > t[:-1]).all():
        raise TimeError("the days of 'time' are unsorted or repeated; sort them "
                        "(ds.sortby('time')) and drop repeats first")
    offsets = np.unique(np.asarray(t - t.normalize()))
    if offsets.size > 1:
        # A grid at one time of day would leave the other stamps out (and their
        # observations with them). Stamps all after noon are most often local midnights
        # converted to UTC (two hours where the zone keeps summer time): rounded, they
        # fall on their own dates, where floor would put each on the day before.
        late = pd.Timedelta(offsets.min()) > pd.Timedelta(hours=12)
        raise TimeError(
            f"the stamps of 'time' lie at {offsets.size} times of day (e.g. "
            f"{', '.join(str(pd.Timedelta(o)) for o in offsets[:2])}); give each day one stamp "
            "at one time first: ds = ds.assign_coords(time=ds.time.dt."
            + ("round('D')) (every stamp is after noon: local midnights converted to UTC, "
               "which floor would put on the day before)" if late else "floor('D'))"))
    # Bounds that put a stamp on another day than its own are refused before they are
    # made again from the stamps (which would hide the shift).
    _check_time_bounds(ds, np.asarray(t.values))
    if len(t) < 2:
        out = ds.copy()
        out.attrs["xmsgl_filled_days"] = int(ds.attrs.get("xmsgl_filled_days", 0) or 0)
        return out
    daily = pd.date_range(t[0], t[-1], freq="D", unit=t.unit)  # beyond 2262 in seconds
    added = np.asarray(~daily.isin(t))
    if max_gap is not None:
        # Runs of added days longer than max_gap are not added.
        for a, b in mask_runs(added):
            if b - a > int(max_gap):
                added[a:b] = False
        daily = daily[added | np.asarray(daily.isin(t))]
        added = np.asarray(~daily.isin(t))
    bounds = time_bounds_name(ds)
    base = ds.drop_vars(bounds) if bounds is not None else ds
    flags = {str(n): False for n, v in base.data_vars.items()
             if TIME in v.dims and v.dtype == bool}
    full = (base.reindex({TIME: daily}, fill_value=flags) if flags
            else base.reindex({TIME: daily}))
    new_day = xr.DataArray(added, dims=TIME, coords={TIME: daily})
    # Interpolation is linear in time, on the days' numbers (days since 1970): xarray's
    # own conversion of a date axis to numbers overflows with numpy 2.5 beyond 2262
    # (CMIP extensions), in pandas' conversion between datetime64 units.
    day_numbers = daily.values.astype("datetime64[D]").astype(np.int64).astype(np.float64)
    # One name is a name, not its letters; a name that is no input is a mistake.
    skip: set[Any]
    try:
        skip = {exclude} if isinstance(exclude, str) else set(exclude)
    except TypeError:
        skip = {None}  # refused below
    if not all(isinstance(e, str) for e in skip):
        raise ParameterError(f"exclude must be a variable name or a list of them, got {exclude!r}; "
                             "e.g. exclude=['reach_discharge'] (an empty list fills every input)")
    inputs = input_variables(ds, warn=False).all()
    unknown = sorted(map(str, skip - set(inputs)))
    if unknown:
        raise ParameterError(f"exclude={exclude!r}: {unknown} {'is' if len(unknown) == 1 else 'are'} not "
                             f"among the inputs fill_daily fills ({sorted(inputs)}); check the names")
    for name in inputs:
        if name in skip or TIME not in full[name].dims:
            continue
        var = full[name]
        var = whole_time_chunks(var)  # interpolation runs along the whole axis
        # Only the added days are filled: a missing value of a day the dataset has
        # stays missing (validate names it).
        between = (var.assign_coords({TIME: day_numbers}).interpolate_na(TIME, method="linear")
                   .assign_coords({TIME: daily}))
        filled = var.where(~new_day, between)
        if ds[name].chunks is not None:
            # Back to the input's chunks (of its longest length along time): one chunk of
            # the whole record would make every later step hold it whole.
            back: dict[Hashable, Any] = dict(ds[name].chunksizes)
            back[TIME] = max(back[TIME])
            filled = filled.chunk(back)
        filled.attrs = ds[name].attrs
        full[name] = filled
    for key in full.data_vars:
        if key in ds.variables and not full[key].encoding:
            full[key].encoding = dict(ds[key].encoding)
        # An integer variable the added days made float (NaN on them): its integer
        # encoding without a _FillValue would write those days back as 0. (A float
        # packed as integers, with a scale_factor, keeps its packing.)
        enc = full[key].encoding
        if (key in ds.variables and ds[key].dtype.kind in "iu" and full[key].dtype.kind == "f"
                and np.dtype(enc.get("dtype", "f8")).kind in "iu"
                and "_FillValue" not in enc and "missing_value" not in enc):
            full[key].encoding = {k: v for k, v in enc.items()
                                  if k not in ("dtype", "scale_factor", "add_offset")}
    if bounds is not None:
        full[TIME].attrs = {k: v for k, v in full[TIME].attrs.items() if k != "bounds"}
        full = daily_time_bounds(full)
    # Which days were drawn, for downscale's outputs (xmsgl_input_filled_*) and history.
    spans = spans_text(mask_spans(daily, added))
    _warn_long_fills(daily, added, max_gap)
    # Filled again: the counts and spans add up with the earlier fill's.
    before_n = int(ds.attrs.get("xmsgl_filled_days", 0) or 0)
    before_spans = str(ds.attrs.get("xmsgl_filled_spans", ""))
    full.attrs["xmsgl_filled_days"] = before_n + int(added.sum())
    if spans:
        full.attrs["xmsgl_filled_spans"] = f"{before_spans}, {spans}" if before_spans else spans
        append_history(full, f"fill_daily: the inputs of {int(added.sum())} added days "
                             "interpolated linearly in time (xmsgl_filled_spans)")
    return full


def history_line(step: str) -> str:
    """The ``history`` line ``<now> UTC: xmsgl <step>`` (CF's: when, then what was done)."""
    now = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M:%S")
    return f"{now} UTC: xmsgl {step}"


def append_history(ds: xr.Dataset, step: str) -> None:
    """Add the line ``<now> UTC: xmsgl <step>`` to the ``history`` attribute of ``ds``."""
    line = history_line(step)
    prior = str(ds.attrs.get("history", "")).rstrip("\n")
    ds.attrs["history"] = f"{prior}\n{line}" if prior else line


#: Gaps longer than this many days that :func:`fill_daily` fills are warned of: a
#: straight line through a month of forcings has no weather in it.
LONG_FILL_DAYS = 30


def _warn_long_fills(daily: pd.DatetimeIndex, added: np.ndarray, max_gap: int | None) -> None:
    """Warn (:class:`~xmsgl.exceptions.TimeGapWarning`) of the gaps longer than
    :data:`LONG_FILL_DAYS` days that ``added`` (the days filled, on ``daily``) bridges."""
    runs = [(a, b) for a, b in mask_runs(added) if b - a > LONG_FILL_DAYS]
    if not runs:
        return
    a, b = max(runs, key=lambda r: r[1] - r[0])
    hint = ("give max_gap=" if max_gap is None else "lower max_gap to ") + f"{LONG_FILL_DAYS}"
    warn_at_user(
        f"fill_daily interpolated the inputs linearly through {len(runs)} gap"
        f"{'s' if len(runs) > 1 else ''} longer than {LONG_FILL_DAYS} days (the longest "
        f"{b - a} days, {daily[a].date()} to {daily[b - 1].date()}): forcings drawn as a "
        "straight line have no weather in them, and a model run through them predicts a "
        f"smooth line, not a temperature record; {hint} to fill the short gaps only and "
        "leave these as gaps, after which downscale starts afresh (TimeGapWarning), or "
        "leave their days out of what you score",
        TimeGapWarning)


def input_variables(
    ds: xr.Dataset, exclude: Iterable[str] = (), *, warn: bool = True
) -> InputVariables:
    """List the variables of ``ds`` that the convention treats as model inputs.

    Inputs are floating-point variables on (seg, time), (seg,), (reach, time) or
    (reach,) that are not topology, targets, geometry, truth (``*_true``), marked
    ``attrs["xmsgl_role"] = "ignore"`` or in ``exclude``.

    A variable whose name starts with a target's and ``_`` (``reach_temp_qc``,
    ``seg_temp_raw``) is taken as an input with an :class:`~xmsgl.exceptions.XmsglWarning`:
    observed water temperature fed as an input is copied by the model. Set its
    ``attrs["xmsgl_role"]`` to ``"ignore"`` to leave it out, or to ``"input"`` when it
    is meant as one (a process model's complete output), which silences the warning.

    Integer and boolean variables are flags or ids and are not inputs. One that
    carries physical units (anything but ``"1"``, counts, flags or ids) is probably a
    quantity stored as integers, such as an int16 air temperature: it is left out
    with an :class:`~xmsgl.exceptions.XmsglWarning` saying to cast it with
    ``.astype("float32")`` to use it.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention.
    exclude : iterable of str, optional
        Names to leave out.
    warn : bool, default True
        Warn about integer variables with physical units.

    Returns
    -------
    InputVariables

    Raises
    ------
    UnitsError
        A candidate variable is still CF-packed (``scale_factor`` or ``add_offset``
        in its attributes): decode it first.

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-01-01", end="2000-03-01")
    >>> "reach_air_temp" in xmsgl.convention.input_variables(ds).reach_dynamic
    True
    """
    check_flag("warn", warn)
    skip = set(TOPOLOGY) | set(TARGETS) | set(GEOMETRY) | set(exclude)
    groups: dict[tuple[str, ...], list[str]] = {
        (SEG, TIME): [], (SEG,): [], (REACH, TIME): [], (REACH,): []
    }
    candidates: list[tuple[str, xr.DataArray, tuple[str, ...]]] = []
    for key, da in ds.data_vars.items():
        name = str(key)
        if name in skip or is_truth(name) or role(name, da) == "ignore":
            continue
        dims = tuple(str(d) for d in da.dims)
        group = dims if dims in groups else tuple(reversed(dims))
        if group in groups:
            candidates.append((name, da, group))
        elif np.issubdtype(da.dtype, np.floating) and {SEG, REACH} & set(dims):
            # A forcing with one more dimension (an ensemble member, a depth) would
            # otherwise be left out without a word, and the model fitted without it.
            node = SEG if SEG in dims else REACH
            other = [d for d in dims if d not in (SEG, REACH, TIME)]
            dated = [d for d in other if TIME not in dims and d in ds.coords
                     and np.issubdtype(ds[d].dtype, np.datetime64)]
            if dated and TIME in ds.dims:
                # Another table of days beside the dataset's own: put it on 'time'.
                raise SchemaError(
                    f"variable {name!r} is on dimensions {dims}, and {dated[0]!r} holds dates "
                    f"of its own beside the dataset's 'time': put it on the dataset's days with "
                    f"ds[{name!r}] = ds[{name!r}].rename({{{dated[0]!r}: 'time'}})"
                    f".reindex(time=ds['time']) (NaN on days it lacks), or leave it out with "
                    f"ds.drop_vars({name!r}) or ds[{name!r}].attrs['xmsgl_role'] = 'ignore'"
                )
            if dated:
                # The days under another name ('date', 'day'): renaming is the fix, not
                # a reduction that would throw the series away.
                raise SchemaError(
                    f"variable {name!r} is on dimensions {dims}, and {dated[0]!r} holds dates: "
                    f"the days of the convention are the dimension 'time'; rename it with "
                    f"ds = ds.rename({{{dated[0]!r}: 'time'}})"
                )
            # Every variable on that dimension, not only the first met.
            alike = [str(k) for k, v in ds.data_vars.items()
                     if other and other[0] in v.dims and str(k) not in skip]
            raise SchemaError(
                f"variable {name!r} is on dimensions {dims}; model inputs are on ({node!r}, "
                f"'time') or ({node!r},)"
                + (f" ({plural(len(alike), 'variable')} on {other[0]!r}: {format_ids(alike)})"
                   f": select or reduce {format_ids(other)} (for example "
                   f"ds[{name!r}].isel({other[0]}=0) or .mean({other[0]!r})); for an ensemble, "
                   f"downscale each member in turn, e.g. xr.concat("
                   f"[ds.sel({other[0]}=k).msgl.downscale(model) for k in ds[{other[0]!r}].values], "
                   f"{other[0]!r})" if other else
                   ": split it into one variable per scale")
                + f", or leave it out with ds.drop_vars({name!r}) or "
                f"ds[{name!r}].attrs['xmsgl_role'] = 'ignore'"
            )
        elif (warn and dims == (TIME,) and np.issubdtype(da.dtype, np.floating)
              and _has_physical_units(name, da)):
            warn_at_user(
                f"variable {name!r} is on ('time',) only, so it is not a model input (inputs "
                f"are on seg or reach); to use it as one, give it to every node, for example "
                f"ds['reach_{name}'] = ds[{name!r}].broadcast_like(ds['reach']) "
                f"(or set ds[{name!r}].attrs['xmsgl_role'] = 'ignore' to silence this)",
                XmsglWarning,
            )
    _refuse_packed(ds, [name for name, _, _ in candidates])
    for name, da, group in candidates:
        stored = str(da.attrs.get(STORED_AS, da.dtype))
        if np.issubdtype(da.dtype, np.floating) and not np.issubdtype(np.dtype(stored), np.integer):
            groups[group].append(name)
            target = next((t for t in TARGETS if name.startswith(t + "_")), None)
            if warn and target is not None and role(name, da) != "input":
                warn_at_user(
                    f"variable {name!r} looks like a version of the target {target!r} (observed "
                    f"water temperature) and is taken as a model input: a model fed it learns "
                    f"to copy it, and scores nothing it was not given. Drop it, or set "
                    f"ds[{name!r}].attrs['xmsgl_role'] = 'ignore'; if it is meant as an input "
                    f"(a process model's output, complete on every day), set "
                    f"ds[{name!r}].attrs['xmsgl_role'] = 'input' to silence this",
                    XmsglWarning,
                )
        elif warn and (np.issubdtype(np.dtype(stored), np.integer)
                       or np.issubdtype(da.dtype, np.bool_)) and _has_physical_units(name, da):
            if STORED_AS in da.attrs:
                # validate made float degC of it; a cast keeps the mark that leaves it out.
                text = (f"variable {name!r} was stored as {stored} values, which validate "
                        f"converted to float degC and marked {STORED_AS!r}: integer variables "
                        f"are taken as flags or ids, so it is not a model input; to use it as "
                        f"one, drop the mark: del ds[{name!r}].attrs[{STORED_AS!r}]")
            else:
                text = (f"variable {name!r} has units {da.attrs['units']!r} but {stored} values, "
                        f"and integer and boolean variables are taken as flags or ids, so it is "
                        f"not a model input; to use it as one, cast it: ds[{name!r}] = "
                        f"ds[{name!r}].astype('float32')")
            warn_at_user(
                f"{text} (or set ds[{name!r}].attrs['xmsgl_role'] = 'ignore' to silence this)",
                XmsglWarning,
            )
    if warn:
        _warn_input_like_coords(ds, skip)
    return InputVariables(
        seg_dynamic=tuple(sorted(groups[(SEG, TIME)])),
        seg_static=tuple(sorted(groups[(SEG,)])),
        reach_dynamic=tuple(sorted(groups[(REACH, TIME)])),
        reach_static=tuple(sorted(groups[(REACH,)])),
    )


@dataclass(frozen=True)
class Topology:
    """In-memory topology arrays of a validated dataset (small: one value per node).

    Pointers are given both as ids (``*_to``) and as positions (``*_to_idx``, -1 at
    outlets) in the order of the dataset's ``seg`` and ``reach`` coordinates.
    """

    seg_ids: np.ndarray
    seg_to: np.ndarray
    seg_length: np.ndarray
    reach_ids: np.ndarray
    reach_to: np.ndarray
    reach_length: np.ndarray
    reach_seg: np.ndarray
    seg_to_idx: np.ndarray
    reach_to_idx: np.ndarray
    reach_seg_idx: np.ndarray
    seg_outlet_reach_idx: np.ndarray

    @property
    def n_seg(self) -> int:
        return int(self.seg_ids.size)

    @property
    def n_reach(self) -> int:
        return int(self.reach_ids.size)


def _ids(ds: xr.Dataset, dim: str) -> np.ndarray:
    if not ds.variables:
        # What xr.open_dataset gives of a netCDF file whose variables lie in groups.
        raise SchemaError(
            "the dataset holds no variable (a netCDF file or zarr store with groups opens "
            "its root group alone); read every group with xr.open_datatree(path) and merge "
            "them: xr.merge([node.to_dataset() for node in tree.subtree])")
    if dim not in ds.dims:
        raise SchemaError(
            f"dimension {dim!r} is missing (dims are {list(map(str, ds.dims))}); "
            f"rename yours with xmsgl.to_convention(ds, {dim}='<your name>')"
        )
    if dim not in ds.coords:
        raise SchemaError(
            f"dimension {dim!r} has no id coordinate; add one with "
            f"ds.assign_coords({dim}=<integer ids>)"
        )
    ids = np.asarray(ds[dim].values)
    if ids.size == 0:
        raise SchemaError(f"dimension {dim!r} is empty; the network needs at least one {dim}")
    if not np.issubdtype(ids.dtype, np.integer):
        pointers = "'seg_to' and 'reach_seg'" if dim == SEG else "'reach_to'"
        if np.issubdtype(ids.dtype, np.floating) and np.all(np.isfinite(ids)) and np.all(
            ids == np.round(ids)
        ):
            hint = f"convert them with ds.assign_coords({dim}=ds[{dim!r}].astype('int64'))"
        elif ids.dtype == object and all(isinstance(i, (int, np.integer)) and not isinstance(i, bool)
                                         for i in ids.tolist()):
            hint = (f"they are whole numbers held as Python objects: convert them with "
                    f"ds.assign_coords({dim}=ds[{dim!r}].astype('int64'))")
        elif _digit_strings(ids):
            hint = (f"they are numbers written as text (ids such as COMIDs read from a table): "
                    f"convert them with ds.assign_coords({dim}=ds[{dim!r}].astype('int64')), "
                    f"and {pointers} the same way (ds[name] = ds[name].astype('int64'))")
        else:
            hint = (
                f"map them to positive integers (the ids in {pointers} the same way) and keep "
                f"the original ids as a coordinate"
            )
        raise SchemaError(
            f"coordinate {dim!r} must hold integer ids, got dtype {ids.dtype}; {hint}"
        )
    if np.issubdtype(ids.dtype, np.unsignedinteger) and ids.max() > _MAX_ID:
        raise SchemaError(
            f"coordinate {dim!r} holds ids above the int64 range {format_ids(ids[ids > _MAX_ID])}; "
            f"xmsgl stores ids as int64: remap them to smaller positive integers"
        )
    bad = ids[ids <= OUTLET]
    if bad.size:
        raise SchemaError(
            f"coordinate {dim!r} holds ids <= {OUTLET} {format_ids(bad)}; ids must be "
            f"positive because {OUTLET} marks outlets; shift or remap them"
        )
    uniq, counts = np.unique(ids, return_counts=True)
    dup = uniq[counts > 1]
    if dup.size:
        raise TopologyError(
            f"coordinate {dim!r} has duplicate ids {format_ids(dup)}; each {dim} must "
            f"appear once: drop or merge the duplicates"
        )
    return ids.astype(np.int64)


def _digit_strings(values: np.ndarray) -> bool:
    """Whether ``values`` are text (str, or ASCII bytes) that all read as integers."""
    if values.dtype.kind not in "USO" or values.size == 0:
        return False
    for v in values.ravel():
        if isinstance(v, bytes):
            try:
                v = v.decode("ascii")
            except UnicodeDecodeError:
                return False
        if not isinstance(v, str) or not v.strip().lstrip("-").isdigit():
            return False
    return True


def _load_1d(ds: xr.Dataset, name: str, dim: str) -> np.ndarray:
    if name not in ds.variables:
        raise SchemaError(
            f"required variable {name!r} is missing; see the convention in "
            f"xmsgl.convention or map your name with xmsgl.to_convention(ds, names={{'<yours>': {name!r}}})"
        )
    da = ds[name]
    if da.dims != (dim,):
        hint = ""
        if set(map(str, da.dims)) == {dim, TIME}:
            # What xr.open_mfdataset does by default to variables without time.
            hint = (f"; a static variable repeated along 'time' is what xr.open_mfdataset makes "
                    f"by default: open the files with data_vars='minimal', coords='minimal', "
                    f"compat='override', or take one day (ds[{name!r}] = ds[{name!r}].isel(time=0, "
                    f"drop=True))")
        raise SchemaError(
            f"variable {name!r} must have dims ({dim!r},), got {tuple(map(str, da.dims))}{hint}"
        )
    _refuse_packed(ds, [name])
    # Topology is one value per node (megabytes even for a continent): loading it is
    # cheap, and it is the only thing validation reads from lazy datasets.
    return np.asarray(da.values)


_PLURAL = {"segment": "segments", "reach": "reaches"}


def _pointer_index(
    name: str,
    to: np.ndarray,
    ids: np.ndarray,
    what: str,
    owners: np.ndarray,
    allow_outlet: bool = True,
) -> np.ndarray:
    if np.issubdtype(to.dtype, np.unsignedinteger) and to.size and to.max() > _MAX_ID:
        raise TopologyError(
            f"variable {name!r} points to ids above the int64 range "
            f"{format_ids(np.unique(to[to > _MAX_ID]))} (from {format_ids(owners[to > _MAX_ID])}); "
            f"no {what} has such an id: fix these pointers"
        )
    # numpy compares unsigned with signed 64-bit integers as float64, which merges ids
    # from 2**53 on: both sides are looked up as int64 (the pointers are in range, above).
    if np.issubdtype(to.dtype, np.unsignedinteger):
        to = to.astype(np.int64)
    if np.issubdtype(ids.dtype, np.unsignedinteger) and (ids.size == 0 or ids.max() <= _MAX_ID):
        ids = ids.astype(np.int64)
    if not np.issubdtype(to.dtype, np.integer):
        if np.issubdtype(to.dtype, np.floating) and np.isnan(to).any():
            nan = np.isnan(to)
            whose = "reaches" if name.startswith("reach") else "segments"
            if not allow_outlet:
                # reach_seg: every reach belongs to a segment; there is no outlet value.
                raise SchemaError(
                    f"variable {name!r} holds NaN for {whose} {format_ids(owners[nan])}: "
                    f"every reach must name the {what} it lies in; give them one, or drop them (with "
                    f"everything that flows into them) from the dataset"
                )
            raise SchemaError(
                f"variable {name!r} holds NaN for {whose} {format_ids(owners[nan])}; write {OUTLET} "
                f"(xmsgl.OUTLET) at outlets and store integer ids, or convert with "
                f"xmsgl.to_convention(ds, outlet=np.nan) (a mapping such as "
                f"outlet={{{name!r}: np.nan, ...}} when the pointers mark outlets differently)"
            )
        if not (np.issubdtype(to.dtype, np.floating) and np.all(to == np.round(to))):
            if _digit_strings(to):
                fix = (f"they are numbers written as text: convert them with ds[{name!r}] = "
                       f"ds[{name!r}].astype('int64')" + (f", {OUTLET} at outlets" if allow_outlet else ""))
            elif np.issubdtype(to.dtype, np.floating):
                fix = (f"ids are whole numbers, and {format_ids(np.unique(to[to != np.round(to)]))} "
                       "are not: store the ids the coordinates hold")
            else:
                fix = ("store the ids of the coordinate as integers, with "
                       f"{OUTLET} (xmsgl.OUTLET) at outlets")
            raise SchemaError(f"variable {name!r} must hold integer ids, got dtype {to.dtype}; {fix}")
        # Casting an infinite or out-of-range float to int64 yields an arbitrary id
        # (and only a RuntimeWarning), so such pointers are refused by value here.
        huge = ~(np.abs(to) <= _MAX_ID_FLOAT)
        if huge.any():
            raise TopologyError(
                f"variable {name!r} points to infinite or out-of-range ids "
                f"{format_ids(np.unique(to[huge]))} (from {format_ids(owners[huge])}); "
                f"write {OUTLET} at outlets and existing ids elsewhere"
            )
        _refuse_inexact_float_ids(name, to, ids)
        to = to.astype(np.int64)
    order = np.argsort(ids)
    sorted_ids = ids[order]
    pos = np.searchsorted(sorted_ids, to)
    pos_clipped = np.minimum(pos, sorted_ids.size - 1)
    found = sorted_ids[pos_clipped] == to
    idx = np.where(found, order[pos_clipped], -1)
    outlet = to == OUTLET
    missing = ~found & ~(outlet & allow_outlet)
    if missing.any():
        absent = np.unique(to[missing])
        if allow_outlet and absent.size == 1 and absent[0] < OUTLET:
            # -1 (or another negative marker) where the convention writes 0: NHM and
            # NHDPlus tables often mark outlets so; no id can be negative.
            fix = (f"{int(absent[0])} looks like an outlet marker: convert it with "
                   f"xmsgl.to_convention(ds, outlet={int(absent[0])}) (or a mapping such as "
                   f"outlet={{{name!r}: {int(absent[0])}}} when the pointers mark outlets "
                   f"differently), or write {OUTLET} at outlets")
        elif allow_outlet:
            fix = f"write {OUTLET} at outlets or add the missing {_PLURAL.get(what, what + 's')}"
        else:
            fix = f"every reach must name an existing {what}"
        raise TopologyError(
            f"variable {name!r} points to {what} ids that are not in the network "
            f"{format_ids(absent)} (from {format_ids(owners[missing])}); " + fix
        )
    return idx.astype(np.int64)


def _refuse_inexact_float_ids(name: str, values: np.ndarray, ids: np.ndarray) -> None:
    """Refuse float pointers that name an id only through rounding.

    float32 holds every whole number only up to 2**24 (16,777,216) and float64 up to
    2**53: above, neighbouring ids round to one value, so a pointer stored as float
    may name another existing id (a reach would skip the next one down) without any
    error. A pointer whose value is exactly one id, and the image of no other, is read.
    """
    if values.dtype.kind != "f" or not values.size or ids.dtype.kind not in "iu":
        return
    limit = 2 ** (np.finfo(values.dtype).nmant + 1)
    if ids.dtype.kind == "u" and ids.size and ids.max() > np.iinfo(np.int64).max:
        return  # ids above the int64 range are refused as such by validate()
    big = (ids > limit) | (ids < -limit)
    if not big.any():
        return
    pointers = values[np.isfinite(values) & (values != OUTLET)]
    rounded = ids.astype(values.dtype)
    suspects = np.unique(pointers[np.isin(pointers, rounded[big])])
    if not suspects.size:
        return
    # How many ids round to each suspect value, and whether the one that does is it.
    order = np.argsort(rounded, kind="stable")
    ranked = rounded[order]
    first = np.searchsorted(ranked, suspects, side="left")
    count = np.searchsorted(ranked, suspects, side="right") - first
    named = ids[order[np.minimum(first, ranked.size - 1)]]
    # Whole floats below 2**63 (refused above otherwise) convert to int64 exactly.
    wrong = (count != 1) | (named != suspects.astype(np.float64).astype(np.int64))
    bad = [int(v) for v in suspects[wrong].astype(np.float64).astype(np.int64)]
    if bad:
        raise SchemaError(
            f"variable {name!r} holds ids as {values.dtype}, which holds whole numbers exactly only "
            f"up to {limit:,}: pointers {format_ids(bad)} may stand for several of the network's "
            "ids (neighbouring ids round to one value) or for none exactly; store the ids as "
            "int64 from the source (before any conversion to float), e.g. read the table with "
            "dtype={'tocomid': 'Int64'} and convert with xmsgl.to_convention(ds, outlet=...)"
        )


def _find_cycles(to_idx: np.ndarray) -> np.ndarray:
    """Positions of nodes that lie on a downstream cycle (empty for a forest).

    Pointer doubling, O(N log N) in a fixed number of numpy passes (peeling the
    headwaters took one Python step per level: 14 s on a chain of 10^6 reaches).
    """
    # Every node of a cycle is landed on, and only those.
    far = far_downstream(to_idx)
    return np.unique(far[far >= 0])


def far_downstream(to_idx: np.ndarray) -> np.ndarray:
    """Where each node is after at least N steps downstream (-1 absorbs at outlets), by
    pointer doubling: -1 for every node of a forest; a node on a cycle, for one on or
    draining into it."""
    n = to_idx.size
    nxt = np.asarray(to_idx, dtype=np.int64).copy()
    for _ in range(max(1, int(np.ceil(np.log2(max(n, 2))))) + 1):  # 2^k >= n steps
        nxt = np.where(nxt >= 0, nxt[np.maximum(nxt, 0)], -1)
    return nxt


def hops_to_outlet(to_idx: np.ndarray) -> np.ndarray:
    """Hops from each node of a forest (``to_idx``: downstream positions, -1 at
    outlets) to its outlet, by pointer doubling: O(N log depth) (a walk node by node
    down the stem was O(N x depth)).

    Examples
    --------
    >>> hops_to_outlet(np.array([1, 2, -1, 2])).tolist()
    [2, 1, 0, 1]

    Pointers that close a cycle are a :class:`~xmsgl.exceptions.TopologyError` (the
    doubling would never reach an outlet).
    """
    jump = np.asarray(to_idx, dtype=np.int64).copy()
    # hops[i]: from i to jump[i] (to its outlet once jump[i] is -1).
    hops = (jump >= 0).astype(np.int64)
    live = np.flatnonzero(jump >= 0)
    # In a forest every path ends within N hops, so within log2(N) + 1 doublings.
    rounds_left = int(np.ceil(np.log2(max(jump.size, 1)))) + 2
    while live.size:
        if rounds_left == 0:
            raise TopologyError(
                f"the pointers close a cycle (positions {format_ids(live)} never reach an outlet); "
                "check the data with ds.msgl.validate(), which names the ids")
        rounds_left -= 1
        ahead = jump[live]
        hops[live] += hops[ahead]  # hops of ahead: still those to its own jump
        jump[live] = jump[ahead]
        live = live[jump[live] >= 0]
    return hops


def _check_lengths(name: str, values: np.ndarray, ids: np.ndarray) -> np.ndarray:
    # Complex values are numbers too, but casting them to float silently drops the
    # imaginary part; booleans are flags, not lengths.
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise SchemaError(
            f"variable {name!r} must hold real numbers (lengths in m), got dtype {values.dtype}"
        )
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values) | (values < 0)
    if bad.any():
        raise TopologyError(
            f"variable {name!r} has negative, NaN or infinite lengths at ids "
            f"{format_ids(ids[bad])}; lengths must be finite and >= 0 (in m)"
        )
    # Along-stream distances are sums of lengths; values this large are a units or
    # fill-value mistake and would overflow those sums to infinity.
    huge = values > MAX_LENGTH
    if huge.any():
        raise TopologyError(
            f"variable {name!r} has implausible lengths above {MAX_LENGTH:.0e} at ids "
            f"{format_ids(ids[huge])}; check the units attribute (m or km) and fill values"
        )
    return values


def topology_arrays(ds: xr.Dataset) -> Topology:
    """Read and check the topology of ``ds``; return it as in-memory arrays.

    Raises :class:`~xmsgl.exceptions.SchemaError` or
    :class:`~xmsgl.exceptions.TopologyError` naming the first offending ids.
    Only the one-dimensional topology variables are read.
    """
    expect_dataset(ds)
    seg_ids = _ids(ds, SEG)
    reach_ids = _ids(ds, REACH)
    seg_to = _load_1d(ds, "seg_to", SEG)
    reach_to = _load_1d(ds, "reach_to", REACH)
    reach_seg = _load_1d(ds, "reach_seg", REACH)
    seg_length = _load_1d(ds, "seg_length", SEG)
    reach_length = _load_1d(ds, "reach_length", REACH)

    seg_to_idx = _pointer_index("seg_to", seg_to, seg_ids, "segment", seg_ids)
    reach_to_idx = _pointer_index("reach_to", reach_to, reach_ids, "reach", reach_ids)
    reach_seg_idx = _pointer_index(
        "reach_seg", reach_seg, seg_ids, "segment", reach_ids, allow_outlet=False
    )

    for name, to_idx, ids in (("seg_to", seg_to_idx, seg_ids), ("reach_to", reach_to_idx, reach_ids)):
        self_loop = to_idx == np.arange(ids.size)
        if self_loop.any():
            raise TopologyError(
                f"variable {name!r} makes ids {format_ids(ids[self_loop])} flow into "
                f"themselves; point them downstream or write {OUTLET} at outlets"
            )
        cyc = _find_cycles(to_idx)
        if cyc.size:
            raise TopologyError(
                f"variable {name!r} has a downstream cycle through ids "
                f"{format_ids(ids[cyc])}; a river network must be a set of trees: "
                f"break the cycle by fixing one of these downstream pointers"
            )

    seg_length = _check_lengths("seg_length", seg_length, seg_ids)
    reach_length = _check_lengths("reach_length", reach_length, reach_ids)

    n_seg = seg_ids.size
    counts = np.bincount(reach_seg_idx, minlength=n_seg)
    empty = counts == 0
    if empty.any():
        raise TopologyError(
            f"segments {format_ids(seg_ids[empty])} have no reaches (no 'reach_seg' names "
            f"them); every segment needs at least one reach: drop these segments or assign reaches"
        )

    # A reach may leave its segment only at the segment's outlet, and only into the
    # segment downstream (or out of the network where the segment is an outlet).
    to_seg_of_reach = np.where(reach_to_idx >= 0, reach_seg_idx[np.maximum(reach_to_idx, 0)], -1)
    leaves = to_seg_of_reach != reach_seg_idx
    n_out = np.bincount(reach_seg_idx[leaves], minlength=n_seg)
    multi = n_out > 1
    if multi.any():
        s = np.flatnonzero(multi)[0]
        culprits = reach_ids[leaves & (reach_seg_idx == s)]
        raise TopologyError(
            f"reaches {format_ids(culprits)} of segment {int(seg_ids[s])} each leave the segment; "
            f"a segment's reaches must drain to one outlet reach: fix 'reach_to' or 'reach_seg' "
            f"of all but the outlet reach"
        )
    none_out = n_out == 0
    if none_out.any():
        raise TopologyError(
            f"segments {format_ids(seg_ids[none_out])} have no outlet reach (their reaches never "
            f"leave the segment); fix 'reach_to' so one reach drains out of each segment"
        )
    wrong = leaves & (to_seg_of_reach != seg_to_idx[reach_seg_idx])
    if wrong.any():
        r = np.flatnonzero(wrong)
        raise TopologyError(
            f"reaches {format_ids(reach_ids[r])} leave segments "
            f"{format_ids(reach_seg[r])} into "
            + ", ".join(
                f"{'the outlet' if t < 0 else 'segment ' + repr(int(seg_ids[t]))}"
                for t in to_seg_of_reach[r][:3]
            )
            + f", but 'seg_to' says those segments drain to "
            f"{format_ids([OUTLET if t < 0 else seg_ids[t] for t in seg_to_idx[reach_seg_idx[r]]])}; "
            f"make 'reach_to' of each segment's outlet reach point into its downstream segment"
            + "".join(
                # The reach flowed into may be the one misplaced: a head reach of the
                # downstream segment given another segment in 'reach_seg'.
                f", or, if reach {reach_ids[reach_to_idx[i]].item()!r} lies in segment "
                f"{seg_ids[seg_to_idx[reach_seg_idx[i]]].item()!r}, correct its 'reach_seg' "
                f"(now {seg_ids[to_seg_of_reach[i]].item()!r})"
                for i in r[:3] if reach_to_idx[i] >= 0 and seg_to_idx[reach_seg_idx[i]] >= 0)
        )
    outlet_reach = np.full(n_seg, -1, dtype=np.int64)
    outlet_reach[reach_seg_idx[leaves]] = np.flatnonzero(leaves)

    return Topology(
        seg_ids=seg_ids,
        seg_to=np.where(seg_to_idx >= 0, seg_ids[np.maximum(seg_to_idx, 0)], OUTLET),
        seg_length=np.asarray(seg_length, dtype=np.float64),
        reach_ids=reach_ids,
        reach_to=np.where(reach_to_idx >= 0, reach_ids[np.maximum(reach_to_idx, 0)], OUTLET),
        reach_length=np.asarray(reach_length, dtype=np.float64),
        reach_seg=seg_ids[reach_seg_idx],
        seg_to_idx=seg_to_idx,
        reach_to_idx=reach_to_idx,
        reach_seg_idx=reach_seg_idx,
        seg_outlet_reach_idx=outlet_reach,
    )


def _refuse_timezones(time: xr.DataArray, owner: str = "ds") -> None:
    """Refuse timezone-aware stamps (pandas ``DatetimeTZDtype`` or tz-aware objects);
    ``owner`` is the name the advice gives the object that holds ``time``."""
    dtype = time.dtype
    name = str(time.name)
    if isinstance(dtype, pd.DatetimeTZDtype):
        tz = dtype.tz
        fix = f"{owner}.indexes[{name!r}]"
    elif getattr(dtype, "kind", None) == "O" and time.size:
        tz = getattr(time.values.flat[0], "tzinfo", None)
        if tz is None:
            return
        fix = f"pd.DatetimeIndex({owner}[{name!r}].values)"
    else:
        return
    value = f"{fix}.tz_localize(None)"
    keyword_ok = name.isidentifier() and not keyword.iskeyword(name)
    assign = f"{name}={value}" if keyword_ok else f"{{{name!r}: {value}}}"
    raise TimeError(
        f"coordinate {name!r} holds timezone-aware timestamps (time zone {tz}); xmsgl needs naive "
        f"datetime64 days: keep the local dates of daily values with "
        f"{owner} = {owner}.assign_coords({assign}) (a daily value's day is its "
        f"local date; converting to UTC with tz_convert(None) would put the local midnights "
        f"of a zone east of Greenwich on the evening before, and each value on the day before "
        f"its own)"
    )


def cftime_message(calendar: str) -> str:
    """What to do with cftime dates of ``calendar``, for the errors that refuse them.

    Examples
    --------
    >>> "align_on='date'" in cftime_message("360_day")
    True
    """
    cal = str(calendar).lower()
    align = ", align_on='date'" if cal == "360_day" else ""
    if cal == "360_day":
        days = ("Days the calendar lacks (the 31st of every month of 31 days) then become gaps: "
                "fill their inputs (the observations stay missing) with")
    elif cal in ("noleap", "365_day"):
        days = ("29 February of leap years, which the calendar lacks, then becomes a gap: fill its "
                "inputs (the observations stay missing) with")
    elif cal in ("all_leap", "366_day"):
        days = ("29 February of common years, which the calendar has, is dropped; fill the "
                "inputs of any gap (the observations stay missing) with")
    else:  # standard, gregorian, proleptic_gregorian, julian: cftime for the years alone
        days = "Fill the inputs of any gap (the observations stay missing) with"
    if cal in ("standard", "gregorian", "proleptic_gregorian"):
        # Dates outside 1678-2262 (datetime64[ns]), which convert_calendar('standard',
        # use_cftime=False) cannot take: reading them in seconds is the short way.
        return (
            f"coordinate 'time' holds cftime dates (calendar {calendar!r}), as xarray decodes "
            "dates outside 1678-2262 by default (and every date when opened with use_cftime=True, "
            "which dates within that range do not need): read them as datetime64[s] with "
            "xr.open_dataset(path, decode_times=xr.coders.CFDatetimeCoder(time_unit='s')) "
            "(xarray 2025.01 or later), or convert them: ds = ds.convert_calendar("
            "'proleptic_gregorian', use_cftime=True); ds = ds.assign_coords(time=ds.indexes["
            "'time'].to_datetimeindex(time_unit='s')) (within 1678-2262, ds = "
            "ds.convert_calendar('standard', use_cftime=False) is enough). "
            f"{days} ds = xmsgl.convention.fill_daily(ds)"
        )
    return (
        f"coordinate 'time' holds cftime dates (calendar {calendar!r}); convert them with "
        f"ds = ds.convert_calendar('standard'{align}, use_cftime=False), or, for dates outside "
        "1678-2262, which datetime64[ns] cannot hold (xarray decodes those as cftime whatever "
        "the calendar; with xarray 2025.01 or later): "
        f"ds = ds.convert_calendar('proleptic_gregorian'{align}, "
        "use_cftime=True); ds = ds.assign_coords(time=ds.indexes['time'].to_datetimeindex("
        f"time_unit='s')). {days} ds = xmsgl.convention.fill_daily(ds)"
    )


def _check_time(ds: xr.Dataset) -> None:
    if TIME not in ds.dims:
        return
    if TIME not in ds.coords:
        raise SchemaError("dimension 'time' has no coordinate; assign datetime64 values to it")
    _refuse_timezones(ds[TIME])
    t = ds[TIME].values
    calendar = getattr(t.flat[0], "calendar", None) if t.size else None
    if calendar is not None:
        raise TimeError(cftime_message(calendar))
    if not np.issubdtype(t.dtype, np.datetime64):
        raise TimeError(
            f"coordinate 'time' must be datetime64, got {t.dtype}; decode it with "
            f"xr.decode_cf(ds) or ds.assign_coords(time=pd.to_datetime(...))"
        )
    idx = pd.DatetimeIndex(t)
    if idx.hasnans:
        raise TimeError(
            f"coordinate 'time' holds NaT (not-a-time) at positions "
            f"{format_ids(np.flatnonzero(idx.isna()))}; drop those steps with "
            f"ds.sel(time=ds['time'].notnull()) or fix their dates"
        )
    dup = idx[idx.duplicated()]
    if len(dup):
        raise TimeError(
            f"coordinate 'time' has duplicated steps {format_ids([str(d.date()) for d in dup])}; "
            f"keep the first of each with ds.drop_duplicates('time'), or average the variables "
            f"on 'time' and keep the others as they are: {_TIME_VARS} ds = xr.merge(["
            f"ds.drop_dims('time'), ds[tv].groupby('time').mean()]) (a mean of the whole "
            f"dataset would spread the topology along 'time')"
        )
    if not idx.is_monotonic_increasing:
        pos = int(np.flatnonzero(np.diff(idx.asi8) < 0)[0])
        raise TimeError(
            f"coordinate 'time' is not increasing ({idx[pos].date()} is followed by "
            f"{idx[pos + 1].date()}); sort it with ds.sortby('time')"
        )
    if len(idx) > 1:
        step = np.diff(np.asarray(idx.values).astype("datetime64[D]").astype(np.int64))
        same = np.flatnonzero(step == 0)
        if same.size:
            raise TimeError(
                f"coordinate 'time' has several steps on {idx[same[0]].date()}; xmsgl works on "
                f"daily means: average the variables on 'time' by day and keep the others as they "
                f"are, {_TIME_VARS} ds = xr.merge([ds.drop_dims('time'), "
                "ds[tv].resample(time='1D').mean()]) (a resample of the whole dataset would spread "
                "the topology along 'time'). But if they are "
                "daily values stamped at local midnight and converted to UTC, do not average two "
                "days together: round the stamps back to their dates with "
                "ds.assign_coords(time=ds.time.dt.round('D'))"
            )
        typical = int(np.median(step))
        if typical > 1:
            raise TimeError(
                f"coordinate 'time' is not daily: its steps are typically {typical} days apart; "
                "xmsgl works on daily means: give daily inputs (for smooth forcings, "
                "xmsgl.convention.fill_daily(ds) interpolates the inputs of the days between and "
                "leaves the observations missing there)"
            )
    offsets = np.unique(np.asarray(idx - idx.normalize()))
    if (offsets.size and pd.Timedelta(offsets.min()) > pd.Timedelta(hours=12)
            and "bounds" not in ds[TIME].attrs):
        # Every value late in the day: most often local midnights converted to UTC
        # (each value then read as the day before its own; two hours where the zone
        # keeps summer time), or stamps at a day's end.
        def clock(offset: Any) -> str:  # seconds only where there are any
            sec = int(pd.Timedelta(offset).total_seconds())
            return f"{sec // 3600:02d}:{sec // 60 % 60:02d}" + (f":{sec % 60:02d}" if sec % 60 else "")

        hours = " and ".join(clock(o) for o in offsets[:2])
        warn_at_user(
            f"every stamp of 'time' is at {hours}{' or later' if offsets.size > 2 else ''}: a "
            "value's day is its stamp's date, so each is read as that date's, which is right for "
            "stamps late in their own day; if these are local midnights converted to UTC (each "
            "then the evening before its own date), round them to their dates first: "
            "ds = ds.assign_coords(time=ds.time.dt.round('D'))",
            XmsglWarning)
    _check_time_bounds(ds, t)


def cftime_as_datetime64(vals: Any) -> tuple[np.ndarray, np.ndarray]:
    """cftime dates as datetime64[us] of the same calendar fields (year, month, day, time
    of day: the labels a store or file on that calendar shows), anything else (NaN, None,
    text) as NaT; and, beside them, False where a cftime date's fields are no proleptic
    Gregorian date (30 February of 360_day; NaT too), True elsewhere."""
    vals = np.asarray(vals)
    out = np.full(vals.shape, np.datetime64("NaT", "us"), dtype="datetime64[us]")
    valid = np.ones(vals.shape, dtype=bool)
    for idx, v in np.ndenumerate(vals):
        if hasattr(v, "calendar") and hasattr(v, "year"):
            try:
                out[idx] = np.datetime64(f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:"
                                         f"{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}")
            except ValueError:
                valid[idx] = False
    return out, valid


def _bounds_named(time: xr.DataArray) -> Any:
    """What ``time`` names as its bounds: its ``bounds`` attribute, or the same key in its
    encoding, where ``decode_coords="all"`` puts it."""
    return time.attrs.get("bounds", time.encoding.get("bounds"))


def time_bounds_name(ds: xr.Dataset) -> str | None:
    """The variable of ``time``'s bounds: the one its ``bounds`` attribute names, or,
    where that attribute is gone (``assign_coords(time=...)`` drops it, as in the
    conversion of dates beyond 2262), a ``time_bnds`` or ``time_bounds`` of two values a
    day; None where there is none."""
    name = _bounds_named(ds[TIME])
    if isinstance(name, str):
        return name if name in ds.variables else None
    for name in ("time_bnds", "time_bounds"):
        if (name in ds.variables and ds[name].ndim == 2 and ds[name].dims[0] == TIME
                and ds[name].shape[1] == 2
                and (ds[name].dtype.kind == "M" or ds[name].dtype == object)):  # dates, not numbers
            return name
    return None


def _check_time_bounds(ds: xr.Dataset, t: np.ndarray) -> None:
    """Refuse stamps outside the CF bounds ``time`` names: the day of a value is read
    from its stamp, so a daily mean stamped at the end of its interval (00:00 of the
    next day, as some products write) would be taken for the next day's, silently."""
    name = time_bounds_name(ds)
    if name is None:
        return
    b = ds[name]
    if b.ndim != 2 or TIME not in b.dims or not t.size:
        return
    vals = np.asarray(b.transpose(TIME, ...).values)
    if vals.shape[1] != 2:
        return
    if vals.dtype == object:
        # cftime bounds beside datetime64 stamps: convert_calendar converts 'time' and
        # leaves its bounds as they were. Read them by their dates, as the stamps are.
        vals = cftime_as_datetime64(vals)[0]
    if not np.issubdtype(vals.dtype, np.datetime64):
        return
    lo, hi = vals[:, 0], vals[:, 1]
    # Only a stamp on another date than its interval's start misplaces a day; steps
    # without bounds (NaT: pieces joined or reindexed) say nothing.
    known = ~(np.isnat(lo) | np.isnat(hi))
    outside = known & ~((lo <= t) & (t < hi))
    outside &= t.astype("datetime64[D]") != lo.astype("datetime64[D]")
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise TimeError(
            f"coordinate 'time' lies outside its bounds {name!r} on {int(outside.sum())} step(s), "
            f"on another date than their interval's start (first: "
            f"{np.datetime_as_string(t[i], unit='s')} with bounds "
            f"{np.datetime_as_string(lo[i], unit='s')} to {np.datetime_as_string(hi[i], unit='s')}): "
            "xmsgl reads a value's day from its stamp, so a daily mean stamped at the end of its "
            "interval would be taken for the next day's. Stamp each value within its interval, "
            f"e.g. at its start: ds = ds.assign_coords(time=ds[{name!r}].transpose('time', ...)"
            ".values[:, 0])"
        )


def _convert_length(ds: xr.Dataset, name: str, notes: list[str]) -> xr.Dataset:
    units = ds[name].attrs.get("units")
    if units is None:
        raise UnitsError(
            f"variable {name!r} has no 'units' attribute; set ds[{name!r}].attrs['units'] = 'm'"
        )
    u = _norm_units(units)
    if u in _METRES:
        return ds
    if u in _KILOMETRES:
        da = ds[name] * 1000.0
        if not _is_lazy(da):
            # The bound on lengths holds in metres: 1e11 km passed it before conversion.
            dim = next(iter(map(str, da.dims)), None)
            _check_lengths(name, np.asarray(da.values),
                           np.asarray(ds[dim].values) if dim in ds.coords else np.arange(da.size))
        da.attrs = {**_range_attrs_converted(ds[name].attrs, lambda v: v * 1000.0, da.dtype), "units": "m",
                    "xmsgl_note": f"converted from {units!r} to 'm' by xmsgl"}
        notes.append(f"{name!r} converted from {units!r} to 'm'")
        return ds.assign({name: da})
    raise UnitsError(f"variable {name!r} has units {units!r}; lengths must be in 'm' or 'km'")


def _value_range(da: xr.DataArray) -> tuple[float, float]:
    """Smallest and largest value, ignoring NaN; (nan, nan) when there are none."""
    if da.size == 0:
        return np.nan, np.nan
    return float(da.min(skipna=True)), float(da.max(skipna=True))


def _places(mask: xr.DataArray, limit: int = 3) -> str:
    """How many entries of boolean ``mask`` are true and where the first ``limit`` lie,
    as ``"2 values, at reach 1 on 2015-06-28 and reach 4 on 2015-07-01"`` (node ids and
    days from the coordinates, in time order)."""
    dims = [str(d) for d in mask.dims]
    order = [d for d in (TIME,) if d in dims] + [d for d in dims if d != TIME]
    values = np.asarray(mask.transpose(*order).values)
    hits = np.argwhere(values)
    parts = []
    for idx in hits[:limit]:
        words = []
        for d, i in zip(order, idx, strict=True):
            label = mask[d].values[i] if d in mask.coords else i
            if d == TIME and np.issubdtype(np.asarray(label).dtype, np.datetime64):
                words.append(f"on {str(np.datetime_as_string(label, unit='D'))}")
            else:
                words.append(f"{d} {np.asarray(label).item()!r}")
        # "reach 1 on 2015-06-28": the node first, then the day.
        parts.append(" ".join(sorted(words, key=lambda w: w.startswith("on "))))
    n = len(hits)
    count = f"{n} value{'s' if n != 1 else ''}"
    if not any(parts):  # a variable without dimensions: nothing to place
        return count
    more = f" and {n - limit} more" if n > limit else ""
    at = "" if all(p.startswith("on ") for p in parts) else "at "
    return f"{count}, {at}{', '.join(parts)}{more}"


#: A water temperature labelled degC with more than :data:`WARM_SHARE` of its values
#: above this (degC) is warned of: stream water seldom passes 35 degC, and Fahrenheit
#: values of ordinary water (32-60 degF, inside what validation accepts as degC) labelled
#: degC look so.
WARM_DEGC = 40.0
WARM_SHARE = 0.05


def warn_fahrenheit_looking(what: str, da: xr.DataArray, *, unlabelled: bool = False) -> bool:
    """Warn (:class:`~xmsgl.exceptions.XmsglWarning`) of an in-memory water temperature
    ``da`` labelled degC (``unlabelled``: without units, taken to be degC) with more
    than :data:`WARM_SHARE` of its finite values above :data:`WARM_DEGC` (``what``
    names it in the message); whether it warned."""
    if _is_lazy(da) or da.dtype.kind != "f":
        return False
    vals = np.asarray(da.values)
    finite = np.isfinite(vals)
    n = int(finite.sum())
    if not n:
        return False
    warm = int(np.count_nonzero(vals[finite] > WARM_DEGC))
    if warm <= WARM_SHARE * n:
        return False
    label, taken, advice = (
        ("has no 'units' attribute and is taken to be in degC", "taken as", "set units='degC'")
        if unlabelled else ("is labelled degC", "labelled", "set units='degC', or label them 'degF'"))
    warn_at_user(
        f"{what} {label} but {warm} of its {n} values ({100 * warm / n:.0f}%) exceed "
        f"{WARM_DEGC:g} (up to {float(vals[finite].max()):.4g}): stream water seldom passes "
        f"35 degC, and water temperatures in degF {taken} degC look like this; convert them "
        f"((x - 32) / 1.8) and {advice}",
        XmsglWarning)
    return True


def warn_implausible_water(name: str, da: xr.DataArray, converted_from: str | None = None) -> bool:
    """Warn (:class:`~xmsgl.exceptions.XmsglWarning`) of the values of an in-memory
    water temperature ``da`` in degC that lie outside :data:`PLAUSIBLE_WATER_TEMP`
    (they pass validation, whose tolerance is wider so as to judge units, but a stream
    at 59 degC or -8 degC is a recording error far more often than a hot spring or
    a frozen sensor); ``converted_from``: the units ``da`` was converted from, so that
    the fix masks the converted values; whether it warned. A model reads such an
    observation as truth."""
    if _is_lazy(da) or da.dtype.kind != "f" or da.size == 0:
        return False
    lo, hi = PLAUSIBLE_WATER_TEMP
    outside = (da < lo) | (da > hi)
    if not bool(outside.any()):
        return False
    vals = np.asarray(da.values)
    inside = vals[np.isfinite(vals) & ~np.asarray(outside.values)]
    others = f"; its other values span {value_span(float(inside.min()), float(inside.max()))}" \
        if inside.size else ""
    v = f"ds[{name!r}]"
    vmin, vmax = _value_range(da)
    where = f"{v} = {mask_outside(v, lo, hi, vmin, vmax)}"
    if converted_from is not None:
        where = f"ds = ds.msgl.validate(); {where}, in degC as converted from {converted_from!r}"
    warn_at_user(
        f"water temperature {name!r} has values outside {lo:g}..{hi:g} degC, which liquid "
        f"stream water seldom leaves ({_places(outside)}{others}): unless they are real (a "
        f"hot spring), mask them, {where}; a model takes what it is given as truth",
        XmsglWarning)
    return True


def _refuse_infinite(name: str, da: xr.DataArray, vmin: float, vmax: float) -> None:
    """An infinite temperature (``vmin``/``vmax``: its range) is not a question of units
    or fill values: say what it is and how to mask it."""
    if not (np.isinf(vmin) or np.isinf(vmax)):
        return
    infinite = da.copy(data=np.isinf(np.asarray(da.values, dtype=np.float64)))
    raise DataError(
        f"temperature {name!r} holds infinite values ({_places(infinite)}); mask "
        f"them as missing, e.g. ds[{name!r}] = ds[{name!r}].where(np.isfinite(ds[{name!r}])), "
        "then fill them or leave them as the variable allows (inputs may not be NaN; "
        "observations may)"
    )


#: A temperature's smallest (or largest) value lying this many degrees Celsius away
#: from every other value of the variable is a missing-data code, not a temperature
#: (:func:`_isolated_codes`): a record of daily temperatures leaves no such gap.
CODE_GAP_DEGC = 30.0

#: Values a temperature needs before :func:`_isolated_codes` judges its ends: a
#: handful of static temperatures (a few reaches' means) may lie far apart.
CODE_MIN_VALUES = 100


def _isolated_codes(raw: xr.DataArray, scale: str, limit: int = 3) -> list[float]:
    """The values at either end of temperature ``raw`` (in ``scale``) that lie more than
    :data:`CODE_GAP_DEGC` from all its other values (up to ``limit`` of them, the
    outermost first): missing-data codes such as -99.9 or -9999 that no ``_FillValue``
    declared. Empty for fewer than :data:`CODE_MIN_VALUES` finite values.

    Examples
    --------
    >>> t = np.r_[np.linspace(-5.0, 30.0, 200), [-99.9, -99.9]]
    >>> _isolated_codes(xr.DataArray(t), "degC")
    [-99.9]
    >>> _isolated_codes(xr.DataArray(t[:200]), "degC")
    []
    """
    vals = np.asarray(raw.values).ravel()
    if vals.dtype.kind != "f":
        vals = vals.astype(np.float64)
    if np.count_nonzero(np.isfinite(vals)) < CODE_MIN_VALUES:
        return []
    gap = CODE_GAP_DEGC * (1.8 if scale == "degF" else 1.0)  # in the variable's degrees
    # Each end against the nearest value inside it, by reductions over the array as
    # it is (no sorted or filtered copy: validate runs this on whole records).
    low, high = float(np.nanmin(vals)), float(np.nanmax(vals))
    codes: list[float] = []
    while len(codes) < limit:
        found = False
        above = float(np.min(vals, where=vals > low, initial=np.inf))
        if np.isfinite(above) and above - low > gap:
            codes.append(low)
            low, found = above, True
        below = float(np.max(vals, where=vals < high, initial=-np.inf))
        if len(codes) < limit and np.isfinite(below) and below >= low and high - below > gap:
            codes.append(high)
            high, found = below, True
        if not found:
            break
    return codes


def _codes_message(what: str, name: str, raw: xr.DataArray, scale: str, codes: list[float],
                   why: str) -> str:
    """What :func:`_check_converted` says of missing-data ``codes`` in ``raw``."""
    hit = raw.isin(codes)
    rest = raw.where(~hit)
    rmin, rmax = _value_range(rest)
    shown = " and ".join(f"{c:g}" for c in codes)
    # Bounds halfway across the gaps, rounded: they keep every other value and drop
    # the codes whatever their float rounding (-99.9 in float32 is not -99.9).
    half = CODE_GAP_DEGC / 2 * (1.8 if scale == "degF" else 1.0)
    parts = []
    if any(c < rmin for c in codes):
        parts.append(f"ds[{name!r}] > {np.floor(rmin - half):g}")
    if any(c > rmax for c in codes):
        parts.append(f"ds[{name!r}] < {np.ceil(rmax + half):g}")
    keep = parts[0] if len(parts) == 1 else " & ".join(f"({p})" for p in parts)
    return (f"{what} {name!r} holds {shown} ({_places(hit)}), more than {CODE_GAP_DEGC:g} degC "
            f"from all its other values ({value_span(rmin, rmax)}){why}: a missing-data "
            f"code that was not masked (no _FillValue or missing_value attribute told xarray of "
            f"it), not a temperature; mask it, ds[{name!r}] = ds[{name!r}].where({keep}), then "
            "fill the gaps (for example .interpolate_na('time')) where the variable is an input "
            "(inputs may not be NaN; observations may)")


def _refuse_codes(what: str, name: str, raw: xr.DataArray, new: xr.DataArray, scale: str,
                  lo: float, hi: float, labelled: str = "") -> None:
    """Refuse temperature ``raw`` (in ``scale``; ``new``: in degC) whose missing-data
    codes (:func:`_isolated_codes`) are all that put it outside ``lo``..``hi`` degC,
    naming them (``labelled``: how the rest is plausible, for the message)."""
    codes = _isolated_codes(raw, scale)
    if not codes:
        return
    rest_min, rest_max = _value_range(new.where(~raw.isin(codes)))
    if lo <= rest_min and rest_max <= hi:
        raise UnitsError(_codes_message(
            what, name, raw, scale, codes,
            f", and without {'them' if len(codes) > 1 else 'it'} the variable is plausible "
            f"{labelled}" if labelled else ""))


def _check_converted(
    name: str, units: object, scale: str, raw: xr.DataArray, new: xr.DataArray, water: bool
) -> None:
    """Refuse a conversion to degC whose result is implausible for the quantity, and
    missing-data codes (:func:`_isolated_codes`) whatever the range."""
    lo, hi = CONVERTED_WATER_TEMP if water else CONVERTED_OTHER_TEMP
    vmin, vmax = _value_range(new)
    what = "water temperature" if water else "temperature"
    if np.isnan(vmin):
        return
    if lo <= vmin and vmax <= hi:
        # Inside the range, only a code of three digits can pass for a temperature:
        # -99 or -99.9 degF (-72.8 degC); an isolated 60 degC is a value to doubt,
        # not a missing-data code to mask.
        codes = [c for c in _isolated_codes(raw, scale) if abs(c) >= 99] if scale == "degF" else []
        if codes:
            raise UnitsError(_codes_message(what, name, raw, scale, codes, ""))
        return
    rmin, rmax = _value_range(raw)
    _refuse_infinite(name, raw, rmin, rmax)
    # A few codes put the range out: what else there is may be right as labelled, and
    # relabelling the whole variable (which its range alone might suggest) would
    # corrupt every value.
    _refuse_codes(what, name, raw, new, scale, lo, hi, f"as labelled {units!r}")
    to_celsius = {"degC": lambda v: v, "K": lambda v: v - 273.15,
                  "degF": lambda v: (v - 32.0) * (5.0 / 9.0)}
    fits = [u for u, f in to_celsius.items() if u != scale and lo <= f(rmin) and f(rmax) <= hi]
    if fits:
        looks = (f"its values ({value_span(rmin, rmax)}) look like they are already in "
                 f"{fits[0]}: set ds[{name!r}].attrs['units'] = {fits[0]!r}")
    else:
        looks = (f"its values ({value_span(rmin, rmax)}) fit no temperature scale: mask fill "
                 f"values such as -9999 (ds[{name!r}].where(ds[{name!r}] != -9999)) and set "
                 f"ds[{name!r}].attrs['units'] to the unit they are really in")
    spans = "it spans" if scale == "degC" else "converted to degC it spans"
    raise UnitsError(
        f"{what} {name!r} is labelled {units!r}, but {spans} "
        f"{value_span(vmin, vmax)}, outside the plausible {lo:g}..{hi:g} degC for "
        f"{'water' if water else 'air and other'} temperatures "
        f"({_places((new < lo) | (new > hi))}); {looks}"
    )


def in_id_order(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with its segments and reaches in increasing id order (``ds`` itself where
    they are already).

    Fits start from it: sums over nodes (the scalers, the graph weights' statistics),
    the graphs' entries and the ids a model records then follow the ids, not the order
    a file lists them in, so a shuffled file gives the same model to the last bit.

    Examples
    --------
    >>> ds = xr.Dataset(coords={"seg": [3, 1, 2], "reach": [10, 11]})
    >>> in_id_order(ds)["seg"].values.tolist()
    [1, 2, 3]
    """
    order = {}
    for dim in (SEG, REACH):
        if dim in ds.dims and dim in ds.coords:
            ids = np.asarray(ds[dim].values)
            if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
                order[dim] = np.argsort(ids, kind="stable")
    return ds.isel(order) if order else ds


def only_read(ds: xr.Dataset, inputs: Iterable[str]) -> xr.Dataset:
    """``ds`` with only the data variables a fitted model reads: the topology, the
    geometry and its ``inputs`` (coordinates are kept).

    Other variables (observations, an ensemble of forcings on one more dimension, a
    variable without units) are the dataset's business: a fitted model's inputs are
    fixed, so they are neither validated nor read.
    """
    keep = {*TOPOLOGY, *GEOMETRY, *inputs}
    if TIME in ds.coords and isinstance(ds[TIME].attrs.get("bounds"), str):
        keep.add(ds[TIME].attrs["bounds"])  # validate checks the stamps against them
    for name in inputs:
        # An input on one more dimension (an ensemble member): the model reads it on
        # its node and time alone, and cannot do without it (no advice to drop it).
        if name in ds.data_vars:
            other = [str(d) for d in ds[name].dims if d not in (SEG, REACH, TIME)]
            # Without its node dimension under the convention's name (a 'segment' not
            # renamed) the extra dimension is that node's: validate names the fix.
            if other and any(d in ds[name].dims for d in (SEG, REACH)):
                _refuse_days_elsewhere(ds, name, "input variable")
                on = "its node and 'time'" if TIME in ds[name].dims else "its node (a static input)"
                raise SchemaError(
                    f"input variable {name!r} is on dimensions {tuple(map(str, ds[name].dims))}; the "
                    f"model reads it on {on} only: select or reduce "
                    f"{format_ids(other)} first (for example ds[{name!r}].isel({other[0]}=0) or "
                    f".mean({other[0]!r})), or downscale each {other[0]} in turn "
                    f"(ds.isel({other[0]}=i))")
    drop = [v for v in ds.data_vars if str(v) not in keep]
    return ds.drop_vars(drop) if drop else ds


def _refuse_days_elsewhere(ds: xr.Dataset, name: str, kind: str) -> None:
    """Refuse the variable ``name`` (a ``kind``: "target", "input variable") whose days
    lie on a dimension of dates under another name than 'time': the day axis to rename,
    not an extra dimension to select."""
    names = [str(d) for d in ds[name].dims]
    if TIME in names:
        return
    days = next((d for d in names if d in ds.coords and np.issubdtype(ds[d].dtype, np.datetime64)),
                None)
    if days:
        raise SchemaError(
            f"{kind} {name!r} has its days on {days!r}; the convention names that dimension 'time': "
            f"ds = ds.rename({{{days!r}: 'time'}}), or xmsgl.to_convention(ds, time={days!r})")


def cf_coordinate_attrs(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the CF attributes of its coordinates where it lacks them: ``time``
    as the time axis (``standard_name``, ``long_name``, ``axis``), the ids of ``reach``
    and ``seg`` with a ``long_name``. Attributes already there are kept.

    Examples
    --------
    >>> import pandas as pd, xarray as xr
    >>> ds = xr.Dataset(coords={"time": pd.date_range("2001-01-01", periods=2), "reach": [7]})
    >>> cf_coordinate_attrs(ds)["time"].attrs["axis"], cf_coordinate_attrs(ds)["reach"].attrs["long_name"]
    ('T', 'reach id')
    """
    expect_dataset(ds)
    wanted = {TIME: {"standard_name": "time", "long_name": "time", "axis": "T"},
              REACH: {"long_name": "reach id"}, SEG: {"long_name": "segment id"}}
    out = ds.copy()
    for name, attrs in wanted.items():
        if name in out.coords:
            out[name].attrs = {**attrs, **out[name].attrs}
    return out


def day_text(day: Any, after: bool = False) -> str:
    """``day`` (a datetime64, a pandas or cftime date) as ISO 8601 text, ``YYYY-MM-DD``
    with four digits of year (``strftime`` gives ``100-10-01`` for the year 100), or the
    day after it with ``after`` (whose midnight ends a daily mean's day, as ACDD's
    ``time_coverage_end``, :func:`coverage_instant`).

    >>> import numpy as np
    >>> day_text(np.datetime64("0100-10-01")), day_text(np.datetime64("2300-12-31", "s"), after=True)
    ('0100-10-01', '2301-01-01')
    """
    import datetime

    if isinstance(day, np.datetime64):
        day = pd.Timestamp(day)
    if after:
        day = day + datetime.timedelta(days=1)
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}"


def coverage_instant(day: Any, end: bool = False) -> str:
    """ACDD's ``time_coverage_start`` (or, with ``end``, ``_end``) of daily values: the
    midnight that starts ``day`` (or ends it), as an ISO 8601 instant. The end of the
    last day is the next day's midnight; written as a date alone it would read as one
    day more than the data hold.

    >>> import numpy as np
    >>> coverage_instant(np.datetime64("2002-10-01")), coverage_instant(np.datetime64("2003-09-30"), end=True)
    ('2002-10-01T00:00:00', '2003-10-01T00:00:00')
    """
    return f"{day_text(day, after=end)}T00:00:00"


def stamp_text(stamp: pd.Timestamp) -> str:
    """A time stamp as a message shows it: its day (:func:`day_text`) at midnight, the
    whole stamp at another time of day.

    >>> stamp_text(pd.Timestamp("2001-05-03")), stamp_text(pd.Timestamp("2001-05-03 12:00"))
    ('2001-05-03', '2001-05-03 12:00:00')
    """
    return day_text(stamp) if stamp == stamp.normalize() else str(stamp)


def _degrees_axis(units: object) -> str | None:
    """``"lat"`` for CF's units of latitude (``degrees_north``, ``degree_N``...),
    ``"lon"`` for those of longitude, else None."""
    text = str(units).replace(" ", "").lower()
    for axis, word in (("lat", "north"), ("lon", "east")):
        if text in {f"{d}{sep}{w}" for d in ("degree", "degrees") for sep in ("_", "")
                    for w in (word, word[0])}:
            return axis
    return None


def _node_values(result: xr.Dataset, ds: xr.Dataset, name: str, dim: str) -> xr.DataArray | None:
    """``ds[name]``, a number per node along ``dim``, at ``result``'s nodes (by id), or
    None where ``ds`` has no such variable or lacks some of the nodes."""
    if name in result.variables or name not in ds.variables or ds[name].dims != (dim,):
        return None
    if ds[name].dtype.kind not in "iuf":
        return None
    loc = ds[name]
    if dim in result.indexes and dim in ds.indexes:
        if not result.indexes[dim].isin(ds.indexes[dim]).all():
            return None
        return loc.sel({dim: result.indexes[dim]})
    return loc if ds.sizes[dim] == result.sizes[dim] else None


def _node_locations(result: xr.Dataset, ds: xr.Dataset | None) -> xr.Dataset:
    """``result`` with ``ds``'s latitudes and longitudes of its nodes (``reach_lat``,
    ``seg_lon``...: in degrees north / east) as auxiliary coordinates, and their projected
    positions (``reach_x`` and ``reach_y``, ``seg_x`` and ``seg_y``: in a unit of length,
    or without units, which the convention reads as metres) as variables, taken by id,
    where ``result`` lacks them: the file then places each series on a map, or on the
    plane of ``ds``'s projection.

    The positions are variables, not coordinates, as they are in the convention's
    input: a prediction read from the file can then be put beside its input
    (``ds.assign(pred=out["reach_temp_pred"])``), which a variable that is a coordinate
    in one and not in the other refuses; ``out.set_coords(["reach_x", "reach_y"])``
    makes coordinates of them."""
    if ds is None:
        return result
    coords, variables = {}, {}
    for dim in (REACH, SEG):
        if dim not in result.dims:
            continue
        node = "reach" if dim == REACH else "segment"
        for axis, units in (("lat", "degrees_north"), ("lon", "degrees_east")):
            name = f"{dim}_{axis}"
            if name not in ds.variables or _degrees_axis(ds[name].attrs.get("units", "")) != axis:
                continue  # not in degrees north / east: no place on a map to be sure of
            loc = _node_values(result, ds, name, dim)
            if loc is None:
                continue
            standard = "latitude" if axis == "lat" else "longitude"
            coords[name] = (dim, np.asarray(loc.values),
                            {"long_name": f"{standard} of the {node}",
                             **loc.attrs, "units": units, "standard_name": standard})
        # x and y as a pair: one of them alone places nothing.
        pair = [(axis, _node_values(result, ds, f"{dim}_{axis}", dim)) for axis in ("x", "y")]
        found = [(axis, loc) for axis, loc in pair if loc is not None]
        if len(found) < 2:
            continue
        if any(str(loc.attrs.get("units", "")).strip() and units_factor(str(loc.attrs["units"]), "m") is None
               for _, loc in found):
            continue  # not a length: not a position to be sure of
        for axis, loc in found:
            variables[f"{dim}_{axis}"] = (dim, np.asarray(loc.values), {
                "long_name": f"{'easting' if axis == 'x' else 'northing'} of the {node}", **loc.attrs})
    if coords:
        result = result.assign_coords(coords)
    return result.assign(variables) if variables else result


def _geospatial_attrs(result: xr.Dataset) -> dict[str, Any]:
    """ACDD's ``geospatial_lat_min`` ... ``geospatial_lon_max`` from the coordinates of
    ``result`` in degrees north and east (by ``units`` or ``standard_name``)."""
    found: dict[str, list[float]] = {"lat": [], "lon": []}
    for coord in result.coords.values():
        units = str(coord.attrs.get("units", "")).strip().lower()
        axis = _degrees_axis(units)
        if axis is None and units in ("", "degree", "degrees"):
            # No units, or degrees without a direction: the standard name says which.
            axis = {"latitude": "lat", "longitude": "lon"}.get(str(coord.attrs.get("standard_name", "")))
        if axis is None or coord.ndim != 1 or coord.dtype.kind not in "iuf":
            continue
        vals = np.asarray(coord.values, dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if vals.size:
            found[axis] += [float(vals.min()), float(vals.max())]
    attrs: dict[str, Any] = {}
    for axis, units in (("lat", "degrees_north"), ("lon", "degrees_east")):
        if found[axis]:
            attrs[f"geospatial_{axis}_min"] = min(found[axis])
            attrs[f"geospatial_{axis}_max"] = max(found[axis])
            attrs[f"geospatial_{axis}_units"] = units
    return attrs


def acdd_attrs(result: xr.Dataset) -> dict[str, Any]:
    """What a catalog reads of a file of daily values (ACDD 1.3) and can be found from
    ``result`` itself: ``date_created`` (now, UTC), ``time_coverage_start`` and
    ``_end`` (instants, :func:`coverage_instant`), ``time_coverage_resolution``
    (``"P1D"``) and, where nodes have latitudes and longitudes as coordinates,
    ``geospatial_lat_min`` ... ``geospatial_lon_max``.

    Raises
    ------
    TimeError
        ``result``'s ``time`` carries a time zone.
    """
    import datetime

    attrs: dict[str, Any] = {"date_created": datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")}
    if TIME in result.coords and result[TIME].ndim == 1 and result.sizes[TIME]:
        # The first and last of the days there are (unsorted days, NaT at either end),
        # on any calendar (cftime dates too).
        _refuse_timezones(result[TIME])
        values = np.asarray(result[TIME].values)
        if values.dtype.kind == "M":
            days = list(values[~np.isnat(values)])
        elif values.dtype == object:
            days = [d for d in values if hasattr(d, "year") and hasattr(d, "calendar")]
        else:
            days = []
        try:
            first_day, last_day = (min(days), max(days)) if days else (None, None)
        except TypeError:  # cftime dates of several calendars: no coverage to give
            first_day = last_day = None
        if first_day is not None:
            attrs["time_coverage_start"] = coverage_instant(first_day)
            attrs["time_coverage_end"] = coverage_instant(last_day, end=True)
            attrs["time_coverage_resolution"] = "P1D"
    attrs.update(_geospatial_attrs(result))
    return attrs


@typed_arguments
def output_dataset(pred: xr.DataArray | xr.Dataset, ds: xr.Dataset | None = None, *,
                   source: str | None = None, attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """The file ``xmsgl downscale`` writes, from a prediction made in Python.

    ``pred`` is what ``ds.msgl.downscale`` returns (a Dataset of several such, the
    reach and segment predictions say, works too); ``ds`` the dataset it was
    downscaled from. The result carries, as the command's output does:

    * CF: ``Conventions`` (``"CF-1.11, ACDD-1.3"``), time bounds for daily means
      (:func:`daily_time_bounds`), ``time`` as the time axis and the ids' ``long_name``
      (:func:`cf_coordinate_attrs`), and ``ds``'s latitudes and longitudes of the nodes
      (``reach_lat``, ``reach_lon``, ``seg_lat``, ``seg_lon`` in degrees, taken by id)
      as auxiliary coordinates, and their projected positions (``reach_x`` and
      ``reach_y``, ``seg_x`` and ``seg_y``, in a unit of length or without units) as
      variables, as the input holds them (the prediction read from the file can then be
      put beside the input);
    * ``title``, ``summary`` and ``keywords``, and ``history``: ``ds``'s lines, then
      the prediction's;
    * ``source``: as given, else ``ds``'s file (when it was read from one) and the
      model's sha256;
    * ``ds``'s terms of use and what to cite (:data:`CARRIED_ATTRS`: ``license``,
      ``references``, ``acknowledgment``, ``project``...) as they are, and who made
      ``ds`` (:data:`CREDIT_ATTRS`: ``creator_name``, ``institution``...) as
      ``xmsgl_input_creator_name`` ...: they did not make this file. A ``license``
      carried from ``ds`` is its terms; give ``attrs={"license": ...}`` where the
      output is published under others;
    * what a catalog reads (ACDD, :func:`acdd_attrs`): ``date_created``,
      ``time_coverage_start`` and ``_end`` (instants: the midnights that start the
      first day and end the last, :func:`coverage_instant`),
      ``time_coverage_resolution``, ``geospatial_lat_min`` ... where the nodes have
      latitudes and longitudes, and ``ds``'s ``featureType`` where the output's nodes
      carry a ``cf_role``; else, for the predictions of one kind of node with
      latitudes and longitudes, CF's discrete sampling geometry
      (``featureType = "timeSeries"``, the ids' ``cf_role = "timeseries_id"``);
    * ``attrs``: global attributes of your own (``title``, ``summary``,
      ``creator_name``...), set last, over the ones above;
    * attributes netCDF cannot hold (lists, dicts, booleans, None) as JSON text.

    Nothing is computed: a dask-backed prediction stays lazy (the one-dimensional
    positions of the nodes are read, for the geospatial bounds). Write the result
    with :func:`xmsgl.io.to_netcdf_safe` or :func:`xmsgl.io.to_zarr_safe`.

    Raises
    ------
    ParameterError
        When ``pred`` is not a DataArray with a name or a Dataset, ``ds`` is not a
        Dataset, or ``attrs`` is not a mapping of names.
    TimeError
        Its ``time`` carries a time zone.

    Examples
    --------
    >>> import pandas as pd, xarray as xr
    >>> pred = xr.DataArray([[10.5, 11.0]], dims=("reach", "time"), name="reach_temp_pred",
    ...                     coords={"reach": [7], "time": pd.date_range("2001-06-01", periods=2)},
    ...                     attrs={"units": "degC", "long_name": "water temperature", "history": "made"})
    >>> out = output_dataset(pred, source="a test")
    >>> out.attrs["Conventions"], out.attrs["time_coverage_end"], out["time"].attrs["bounds"]
    ('CF-1.11, ACDD-1.3', '2001-06-03T00:00:00', 'time_bnds')
    """
    if attrs is not None and not (isinstance(attrs, Mapping) and all(isinstance(k, str) for k in attrs)):
        raise ParameterError(f"output_dataset: attrs must be a mapping of attribute names to values, "
                             f"got {type(attrs).__name__}; e.g. attrs={{'creator_name': 'A. Hydrologist'}}")
    if isinstance(pred, xr.DataArray):
        if pred.name is None:
            raise ParameterError("output_dataset: pred has no name; give it one with "
                                 "pred.rename('reach_temp_pred')")
        first = pred
        result = pred.to_dataset()
    elif isinstance(pred, xr.Dataset) and pred.data_vars:
        first = next(iter(pred.data_vars.values()))
        result = pred.copy()
    else:
        raise ParameterError("output_dataset: pred must be what ds.msgl.downscale returns (a "
                             f"named DataArray) or a Dataset of such, got {type(pred).__name__}")
    if ds is not None and not isinstance(ds, xr.Dataset):
        raise ParameterError(f"output_dataset: ds must be the Dataset pred was downscaled from, "
                             f"got {type(ds).__name__}")
    inputs: Mapping[Any, Any] = ds.attrs if ds is not None else {}
    # CF: a step appends its line to the history of what it read; one line per step.
    lines = [str(inputs.get("history", "")).rstrip("\n")]
    for var in result.data_vars.values():
        line = str(var.attrs.get("history", ""))
        if line and line not in lines:
            lines.append(line)
    if source is None:
        read_from = ds.encoding.get("source") if ds is not None else None
        model = f"the model of sha256 {first.attrs.get('xmsgl_model_sha256', 'unknown')}"
        source = f"{read_from} with {model}" if read_from else f"xmsgl, {model}"
    # Every prediction the file holds (the reaches' and the segments', say), once each.
    long_name = "; ".join(dict.fromkeys(str(v.attrs.get("long_name", name))
                                        for name, v in result.data_vars.items()))
    history = "\n".join(line for line in lines if line)
    out_attrs: dict[str, Any] = {"title": f"xmsgl downscale: {long_name}",
                                 "summary": _summary(result, long_name),
                                 "keywords": "stream temperature, water temperature, river network, "
                                             "downscaling, graph neural network",
                                 "Conventions": OUTPUT_CONVENTIONS,
                                 **({"history": history} if history else {}),
                                 "source": str(source)}
    result = _node_locations(result, ds)
    out_attrs.update(acdd_attrs(result))
    for key in CARRIED_ATTRS:
        if key in inputs:
            out_attrs[key] = inputs[key]
    for key in CREDIT_ATTRS:
        if key in inputs:
            out_attrs[f"xmsgl_input_{key}"] = inputs[key]
    # A discrete sampling geometry needs its instance variable (cf_role) in the file too.
    if inputs.get("featureType") and any(result[d].attrs.get("cf_role") for d in result.dims
                                         if d in result.coords):
        out_attrs["featureType"] = str(inputs["featureType"])
    nodes = [d for d in (REACH, SEG) if d in result.dims]
    node = nodes[0] if len(nodes) == 1 else None
    placed = node is not None and node in result.coords and all(
        f"{node}_{axis}" in result.coords and result[f"{node}_{axis}"].dims == (node,)
        and _degrees_axis(result[f"{node}_{axis}"].attrs.get("units", "")) == axis
        for axis in ("lat", "lon"))
    # CF's orthogonal layout of time series: every value on (node, time).
    series = placed and all(v.dims == (node, TIME) for v in result.data_vars.values()
                            if TIME in v.dims)
    if "featureType" not in out_attrs and node is not None and placed and series:
        # Time series at nodes placed on a map: CF's discrete sampling geometry, which
        # THREDDS and ERDDAP serve as station time series (one kind of node a file).
        out_attrs["featureType"] = "timeSeries"
        result[node].attrs = {**result[node].attrs, "cf_role": "timeseries_id"}
    out_attrs.update(attrs or {})
    result.attrs = out_attrs
    return json_safe_attrs(cf_coordinate_attrs(daily_time_bounds(result)))


def _summary(result: xr.Dataset, long_name: str) -> str:
    """ACDD's ``summary`` of an output: what it holds, where and how it was made."""
    nodes = [f"{result.sizes[d]:,} {'reaches' if d == REACH else 'segments'}"
             for d in (REACH, SEG) if d in result.dims]
    methods = sorted({str(v.attrs["xmsgl_method"]) for v in result.data_vars.values()
                      if "xmsgl_method" in v.attrs})
    return (f"{long_name[:1].upper()}{long_name[1:]}"
            + (f": {' and '.join(nodes)} of a river network" if nodes else "")
            + ", predicted with xmsgl's "
            + (f"{', '.join(methods)} model" if methods else "model")
            + " from the inputs and the model named in source and history.")


def json_safe_attrs(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the attributes netCDF cannot hold (lists, dicts, None, booleans) as
    JSON text, on the dataset and every variable. Numbers stay numbers, numpy's included
    (a netCDF reader gives ``valid_min`` as ``np.int32`` and ``actual_range`` as an
    array), as do 1-D numeric arrays. ``ds`` is changed in place and returned."""
    import json

    def keep(v: Any) -> bool:
        if isinstance(v, np.ndarray):
            return v.ndim == 1 and v.dtype.kind in "iuf"
        return isinstance(v, (str, int, float, np.integer, np.floating)) and not isinstance(v, bool)

    def text(v: Any) -> str:
        return json.dumps(v, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))

    def clean(attrs: dict[Any, Any]) -> dict[Any, Any]:
        return {k: (v if keep(v) else text(v)) for k, v in attrs.items()}

    ds.attrs = clean(ds.attrs)
    for v in ds.variables.values():
        v.attrs = clean(v.attrs)
    return ds


def daily_time_bounds(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with CF time bounds for daily means: ``time_bnds`` (time, nv) from the
    start of each value's day to the start of the next, named by ``time``'s
    ``bounds`` attribute.

    The outputs are daily means (``cell_methods = "time: mean"``); with the bounds, CF
    readers (CDO, NCO, cf-python) know each value covers its whole day rather than one
    instant. A stamp within the day (noon, as some records give daily values) gets the
    bounds of its day, as the periods read it. Time and bounds are encoded in the same
    units (days, or hours, minutes or seconds where the stamps need them, since the
    first day) and calendar. A dataset whose ``time`` already names its bounds (in its
    attributes, or its encoding as ``decode_coords="all"`` puts it), or without a
    one-dimensional ``time`` of ``datetime64`` values or cftime dates, is returned as it
    is; where ``time`` names bounds the dataset lacks, they are made. Timezone-aware
    stamps are a :class:`~xmsgl.exceptions.TimeError`.
    Files appended to along ``time`` need the bounds in every piece: apply this
    function to each.

    Examples
    --------
    >>> import pandas as pd, xarray as xr
    >>> ds = xr.Dataset(coords={"time": pd.date_range("2001-01-01", periods=2)})
    >>> str(daily_time_bounds(ds)["time_bnds"].values[0, 1])[:10]
    '2001-01-02'
    """
    expect_dataset(ds)
    if TIME not in ds.dims or TIME not in ds.coords or ds[TIME].ndim != 1:
        return ds
    named = _bounds_named(ds[TIME])
    if named is not None:
        if not isinstance(named, str) or named in ds.variables:
            return ds
        # A bounds attribute of a variable not there (a DataArray taken from a dataset
        # that had them): the file would name bounds it lacks, so they are made.
        ds = ds.copy()
        ds[TIME].attrs = {k: v for k, v in ds[TIME].attrs.items() if k != "bounds"}
        ds[TIME].encoding = {k: v for k, v in ds[TIME].encoding.items() if k != "bounds"}
    _refuse_timezones(ds[TIME])
    if isinstance(ds.indexes.get(TIME), xr.CFTimeIndex):
        return _cftime_daily_bounds(ds)
    if not np.issubdtype(ds[TIME].dtype, np.datetime64):
        return ds
    name = next(n for n in ("time_bnds", "time_bounds", *(f"time_bnds{i}" for i in range(1, 100)),
                            None) if n is None or n not in ds.variables)
    dim = next(d for d in ("nv", "bnds", *(f"nv{i}" for i in range(1, 100)), None)
               if d is None or ds.sizes.get(d, 2) == 2)
    if name is None or dim is None:
        return ds
    # In the stamps' own unit: a cast to nanoseconds wraps dates beyond 1678-2262
    # (2297 became 1713), which datetime64[s] axes, as of CMIP extensions, hold.
    stamps = ds[TIME].values
    day = stamps.astype("datetime64[D]").astype(stamps.dtype)
    bounds = np.stack([day, day + np.timedelta64(1, "D")], axis=1)
    out = ds.assign({name: ((TIME, dim), bounds)})
    out[TIME].attrs = {**ds[TIME].attrs, "bounds": name}
    known = ~np.isnat(stamps)
    if known.any():
        # CF wants the bounds in the units of the time they bound: one encoding for
        # both, whole numbers in the coarsest unit that holds every stamp exactly
        # (a step without a date, NaT, has none to hold).
        origin = day[known][0]
        offsets: Any = stamps[known] - origin  # the bounds are whole days
        steps: Any = (("days", "D"), ("hours", "h"), ("minutes", "m"), ("seconds", "s"),
                      ("milliseconds", "ms"), ("microseconds", "us"), ("nanoseconds", "ns"))
        unit = next((u for u, step in steps
                     if not (offsets % np.timedelta64(1, step)).astype(np.int64).any()), "nanoseconds")
        enc = {"units": f"{unit} since {np.datetime_as_string(origin, unit='s').replace('T', ' ')}",
               "calendar": ds[TIME].encoding.get("calendar", "proleptic_gregorian"),
               "dtype": "int64"}
        out[TIME].encoding = {k: v for k, v in ds[TIME].encoding.items()
                              if k not in ("units", "calendar", "dtype", "_FillValue", "bounds")} | enc
        out[name].encoding = dict(enc)
    return out


def _cftime_daily_bounds(ds: xr.Dataset) -> xr.Dataset:
    """:func:`daily_time_bounds` on a model calendar (cftime dates, e.g. ``noleap``, a
    prediction converted back to its climate model's calendar): each day from its start
    to the next day's, in whole days since the first, in that calendar."""
    import datetime

    index = ds.indexes[TIME]
    name = next((n for n in ("time_bnds", "time_bounds") if n not in ds.variables), None)
    dim = next((d for d in ("nv", "bnds") if ds.sizes.get(d, 2) == 2), None)
    if name is None or dim is None or not len(index):
        return ds
    starts = [t.replace(hour=0, minute=0, second=0, microsecond=0) for t in index]
    bounds = np.array([[a, a + datetime.timedelta(days=1)] for a in starts], dtype=object)
    out = ds.assign({name: ((TIME, dim), bounds)})
    out[TIME].attrs = {**ds[TIME].attrs, "bounds": name}
    exact = all(t == a for t, a in zip(index, starts))
    first = starts[0]
    enc = {"units": f"{'days' if exact else 'seconds'} since {first.strftime('%Y-%m-%d %H:%M:%S')}",
           "calendar": str(getattr(index, "calendar", "standard")), "dtype": "int64"}
    out[TIME].encoding = {k: v for k, v in ds[TIME].encoding.items()
                          if k not in ("units", "calendar", "dtype", "_FillValue", "bounds")} | enc
    out[name].encoding = dict(enc)
    return out


def output_coords(sub: xr.Dataset, dim: str, chunks: tuple[Any, Any] | None = None) -> dict[str, xr.DataArray]:
    """The coordinates of ``sub`` that an output on (``dim``, ``time``) carries.

    Those along ``dim`` and ``time`` only, and the scalar ones (a basin name, a model
    run label). Each loses the encoding it was read with (its zarr chunks, its netCDF
    compression), which describes the input file, not the output: a coordinate read in
    chunks of 9 reaches made writing the result by regions of its own chunks fail.
    ``chunks``, the output's (``dim`` chunks, ``time`` chunks), is given to a lazy
    coordinate, so that it is chunked like the values it labels.
    """
    out: dict[str, xr.DataArray] = {}
    kept = {str(n) for n, c in sub.coords.items() if set(map(str, c.dims)) <= {dim, TIME}}
    for name, c in sub.coords.items():
        if str(name) not in kept:
            continue
        c = c.copy(deep=False)
        c.encoding = {}
        # CF's bounds (and climatology) name a variable of the file; an output on
        # (dim, time) carries only the coordinates kept, so another would dangle.
        dangling = [k for k in ("bounds", "climatology") if k in c.attrs and str(c.attrs[k]) not in kept]
        if dangling:
            c.attrs = {k: v for k, v in c.attrs.items() if k not in dangling}
        if chunks is not None and c.chunks is not None:
            c = c.chunk({d: chunks[0] if str(d) == dim else chunks[1] for d in c.dims})
        out[str(name)] = c
    return out


def value_span(vmin: float, vmax: float) -> str:
    """``"-9.2..29.3"``: a range of values in messages, tenths where they are ordinary
    numbers, four significant digits where they are not (a fill value of 1e20)."""
    def one(v: float) -> str:
        return f"{v:.1f}" if abs(v) < 1e6 else f"{v:.4g}"
    return f"{one(vmin)}..{one(vmax)}"


def mask_outside(v: str, lo: float, hi: float, vmin: float, vmax: float, *,
                 inclusive: bool = True) -> str:
    """The expression that masks the values of the array written ``v`` (``ds['x']``,
    ``observed``) outside ``lo..hi`` on the side(s) its range ``vmin..vmax`` leaves, a
    fix a message can give as it is (``inclusive=False``: the bounds masked too)."""
    ge, le = (">=", "<=") if inclusive else (">", "<")
    if vmin < lo and vmax > hi:
        cond = f"({v} {ge} {lo:g}) & ({v} {le} {hi:g})"
    elif vmin < lo:
        cond = f"{v} {ge} {lo:g}"
    else:
        cond = f"{v} {le} {hi:g}"
    return f"{v}.where({cond})"


def stored_mask(name: str, lo: float, hi: float, vmin: float, vmax: float,
                attrs: Mapping[str, Any]) -> str:
    """:func:`mask_outside` of degC bounds where the variable is stored in degC; for one
    converted from other units (``xmsgl_note``), where degC bounds would mask the wrong
    values of the stored array, the same words without an expression."""
    if attrs.get("xmsgl_note"):
        return (f"in ds[{name!r}] as stored, in its own units: its degC bounds {lo:g}..{hi:g} "
                "do not apply there")
    return mask_outside(f"ds[{name!r}]", lo, hi, vmin, vmax)


def mislabel_hint(name: str, vmin: float, vmax: float, attrs: Mapping[str, Any], *,
                  water: bool = False) -> str:
    """What an implausible degC range says about the unit label, or ``""``.

    A converted variable (``xmsgl_note``) whose values were degC already; values
    near -273 degC (degC labelled ``K``); values above 200 (kelvin labelled degC);
    with ``water``, values that are water temperatures in degF (23..122).
    """
    note = attrs.get("xmsgl_note")
    if note:
        return (f"it was {str(note).removesuffix(' by xmsgl')}: if its values were already in "
                f"degC, set ds[{name!r}].attrs['units'] = 'degC'")
    if -300 < vmin < -200:
        return (f"values near -273 degC are what degC values labelled 'K' become: if so, set "
                f"ds[{name!r}].attrs['units'] = 'degC'")
    if 200 < vmax < 400:
        return f"values near 273-330 are kelvin: if so, set ds[{name!r}].attrs['units'] = 'K'"
    if water and 23.0 <= vmin and vmax <= 122.0:
        return (f"its values ({vmin:.4g}..{vmax:.4g}) look like water temperatures in degF: if "
                f"so, set ds[{name!r}].attrs['units'] = 'degF'")
    return ""


def _one_value(obs: np.ndarray) -> bool:
    """Whether finite observations hold one value, to float32 rounding (a spread of 1e-7
    or none must not decide what a model becomes)."""
    return float(obs.std()) <= 1e-6 * max(1.0, abs(float(obs.mean())))


def warn_constant_scale(name: str, y: np.ndarray, learner: str = "the model") -> None:
    """Warn (:class:`~xmsgl.exceptions.XmsglWarning`) where the training observations
    ``y`` of target ``name`` are two or more, all of one value: a stuck sensor or a
    filled constant, from which ``learner`` learns no variation."""
    obs = y[np.isfinite(y)]
    if obs.size > 1 and _one_value(obs):
        warn_at_user(
            f"the {obs.size} training observations of {name!r} are all {float(obs.mean()):.4g} "
            f"degC: {learner} learns no variation from them at that scale; check the observations "
            "(a stuck sensor or a filled constant)", XmsglWarning)


def warn_constant_observations(scales: Sequence[tuple[str, np.ndarray]], learner: str = "the model",
                               per_scale: Iterable[str] | None = None) -> bool:
    """Warn (:class:`~xmsgl.exceptions.XmsglWarning`) where the training observations of
    ``scales`` (name and values, NaN where unobserved) give ``learner`` no variation to
    learn from: one observation, or all of one value pooled over the scales (then True
    is returned); else where those of one scale of ``per_scale`` (default all) are (a
    stuck fine sensor beside varying segments)."""
    pooled = np.concatenate([y[np.isfinite(y)] for _, y in scales]) if scales else np.empty(0)
    if pooled.size == 0:
        return False
    if _one_value(pooled):
        mean = float(pooled.mean())
        warn_at_user(
            (f"the training period's one observation ({mean:.4g} degC) gives {learner} no "
             "variation to learn from: give a training period with more observations"
             if pooled.size == 1 else
             f"the {pooled.size} training observations are all {mean:.4g} degC: {learner} learns "
             "no variation from them; check the observations (a stuck sensor or a filled "
             "constant)"), XmsglWarning)
        return True
    judged = None if per_scale is None else set(per_scale)
    for name, y in scales:
        if judged is None or name in judged:
            warn_constant_scale(name, y, learner)
    return False


def degf_hint(name: str, vmin: float, vmax: float, outside: np.ndarray, bounds: tuple[float, float],
              attrs: Mapping[str, Any]) -> str:
    """The fix for degF values labelled degC, or ``""``: values past ``bounds`` (degC),
    of many values (``outside``, those past it; a fill value is one or two), all of them
    within it once read as degF."""
    lo, hi = bounds
    if (lo <= (vmin - 32.0) * 5.0 / 9.0 and (vmax - 32.0) * 5.0 / 9.0 <= hi
            and np.unique(outside).size >= 3):
        return (f"its values look like degF: if so, set ds[{name!r}].attrs['units'] = 'degF'; if "
                f"they are degC, mask the fill values among them "
                f"({stored_mask(name, lo, hi, vmin, vmax, attrs)})")
    return ""


def check_loaded_temperature(name: str, values: np.ndarray, attrs: Mapping[str, Any], *,
                             water: bool) -> None:
    """Refuse values in degC, once read into memory, that no temperature of the kind has.

    :func:`validate` judges values only when they are in memory; a dataset opened
    lazily (or predicted from with the value checks off) is judged here, where its
    values are read anyway: fitting reads its targets, the baselines read their
    observations and air temperatures. Water temperatures must lie in
    -10..60 degC (the tolerance ``validate`` gives degC water temperatures), others in
    :data:`CONVERTED_OTHER_TEMP`. A fill value such as -9999, or kelvin values
    labelled degC, would otherwise be fitted or propagated as temperatures.
    """
    finite = values[np.isfinite(values)] if values.size else values
    if finite.size == 0:
        return
    vmin, vmax = float(finite.min()), float(finite.max())
    lo, hi = ((PLAUSIBLE_WATER_TEMP[0] - 5, PLAUSIBLE_WATER_TEMP[1] + 15) if water
              else CONVERTED_OTHER_TEMP)
    if lo <= vmin and vmax <= hi:
        return
    n_out = int(((finite < lo) | (finite > hi)).sum())
    # degF is named where many values are past the range, not for one spike.
    why = mislabel_hint(name, vmin, vmax, attrs, water=water and n_out > 0.01 * finite.size) or (
        f"mask fill values ({stored_mask(name, lo, hi, vmin, vmax, attrs)}) or correct its "
        f"'units' attribute")
    # Masking what lies above the range would keep a degF record's cool days and drop
    # its warm ones: a degF air temperature is named as one first.
    if not water and n_out > 0.01 * finite.size:
        why = degf_hint(name, vmin, vmax, finite[(finite < lo) | (finite > hi)], (lo, hi), attrs) or why
    what = "water temperature" if water else "temperature"
    raise UnitsError(
        f"{what} {name!r} spans {value_span(vmin, vmax)} degC, outside the plausible "
        f"{lo:g}..{hi:g} degC for {'water' if water else 'air and other'} temperatures "
        f"({n_out} value{'s' if n_out != 1 else ''} outside it); {why}"
    )


def _temperature_to_celsius(
    ds: xr.Dataset, name: str, notes: list[str], *, water: bool, check_values: bool
) -> xr.Dataset:
    """Convert ``ds[name]`` to degC, judging the units by the values where cheap.

    ``water`` marks water temperatures (targets and truth), whose values are judged
    only with ``check_values``; other temperatures converted from K or degF are
    judged whenever they are in memory (the conversion reads every value anyway).
    Lazy values are never read.
    """
    da = ds[name]
    units = da.attrs.get("units")
    if not (np.issubdtype(da.dtype, np.integer) or np.issubdtype(da.dtype, np.floating)):
        raise SchemaError(
            f"temperature {name!r} must hold real numbers (NaN where unobserved), got dtype "
            f"{da.dtype}; convert it with ds[{name!r}] = ds[{name!r}].astype('float64')"
        )
    lazy = _is_lazy(da)
    # An empty variable has no values to judge (and min() of nothing fails).
    empty = da.size == 0
    judge_water = water and check_values
    lo, hi = PLAUSIBLE_WATER_TEMP
    if units is None:
        if not judge_water:
            raise UnitsError(
                f"variable {name!r} has no 'units' attribute; set "
                f"ds[{name!r}].attrs['units'] (for example 'degC', or '1' if dimensionless)"
            )
        if lazy:
            raise UnitsError(
                f"water temperature {name!r} has no 'units' attribute and its values are lazy "
                f"(not read to judge them); set ds[{name!r}].attrs['units'] = 'degC'"
            )
        vmin, vmax = _value_range(da)
        if np.isnan(vmin) or (lo <= vmin and vmax <= hi):
            notes.append(f"{name!r} had no units; its values ({value_span(vmin, vmax)}) are "
                         f"plausible in degC, which was assumed")
            new = da.copy(deep=False)
            new.attrs = {**da.attrs, "units": "degC"}
            return ds.assign({name: new})
        raise UnitsError(
            f"water temperature {name!r} has no 'units' attribute and values {value_span(vmin, vmax)} "
            f"that are implausible in degC; set ds[{name!r}].attrs['units'] to 'degC', 'K' or 'degF'"
        )
    scale = _temperature_scale(units)
    # CF 1.11: a temperature difference (units_metadata) takes the scale's factor alone.
    difference = _is_difference(da.attrs)
    if difference and water:
        raise UnitsError(
            f"water temperature {name!r} is declared a temperature difference "
            f"(units_metadata={da.attrs['units_metadata']!r}), but it is a temperature; set "
            f"ds[{name!r}].attrs['units_metadata'] = 'temperature: on_scale' or drop the attribute")
    if scale == "degC":
        if judge_water and not lazy and not empty:
            vmin, vmax = _value_range(da)
            _refuse_infinite(name, da, vmin, vmax)
            a, b = lo - 5, hi + 15
            if not np.isnan(vmin) and (vmin < a or vmax > b):
                # Codes alone outside the range are named as codes (as for the other
                # temperatures; an isolated value inside it is not taken for one).
                _refuse_codes("water temperature", name, da, da, "degC", a, b)
                to_celsius = {"K": lambda v: v - 273.15, "degF": lambda v: (v - 32.0) * (5.0 / 9.0)}
                fits = [u for u, f in to_celsius.items() if lo <= f(vmin) and f(vmax) <= hi]
                looks = (f"its values look like {fits[0]}: set ds[{name!r}].attrs['units'] = "
                         f"{fits[0]!r}" if fits else
                         f"they fit no temperature scale: mask fill values "
                         f"({mask_outside(f'ds[{name!r}]', a, b, vmin, vmax)}); if the values are kelvin or "
                         f"Fahrenheit set ds[{name!r}].attrs['units'] to 'K' or 'degF'")
                raise UnitsError(
                    f"water temperature {name!r} is labelled {units!r} but spans "
                    f"{value_span(vmin, vmax)}, outside the plausible {a:g}..{b:g} degC "
                    f"({_places((da < a) | (da > b))}); {looks}"
                )
            if not warn_fahrenheit_looking(f"water temperature {name!r}", da):
                warn_implausible_water(name, da)
        # Other temperatures in degC are judged like converted ones: a fill value such
        # as -9999 or kelvin values labelled degC would otherwise reach the model.
        if (not water and check_values and not lazy and not empty
                and role(name, da) != "ignore"):
            _check_converted(name, units, "degC", da, da, water=False)
        if units != "degC":
            new = da.copy(deep=False)
            new.attrs = {**da.attrs, "units": "degC"}
            return ds.assign({name: new})
        return ds
    if scale not in ("K", "degF"):
        raise UnitsError(
            f"temperature {name!r} has units {units!r}, which xmsgl does not know; "
            f"use 'degC', 'K' or 'degF'"
        )
    convert: Callable[[Any], Any]
    if scale == "K":
        convert = (lambda v: v * 1.0) if difference else (lambda v: v - 273.15)
    else:
        convert = (lambda v: v * (5.0 / 9.0)) if difference else (lambda v: (v - 32.0) * (5.0 / 9.0))
    new = convert(da)
    if np.issubdtype(da.dtype, np.floating):
        new = new.astype(da.dtype)
    # Targets and truth are judged whatever their role (docs/convention.md).
    ignored = not water and role(name, da) == "ignore"
    if not lazy and not empty and not ignored and not difference and (check_values or not water):
        _check_converted(name, units, scale, da, new, water)
        if water:
            warn_implausible_water(name, new, converted_from=str(units))
    what = "a temperature difference" if difference else "'degC'"
    new.attrs = {**_range_attrs_converted(da.attrs, convert, new.dtype), "units": "degC",
                 "xmsgl_note": f"converted from {units!r} to {what} by xmsgl"}
    notes.append(f"{name!r} converted from {units!r} to {what}")
    return ds.assign({name: new})


def _is_difference(attrs: Mapping[str, Any]) -> bool:
    """Whether CF's ``units_metadata`` declares a temperature difference."""
    meta = "".join(str(_scalar_attr(attrs.get("units_metadata", ""))).lower().split())
    return meta == "temperature:difference"


#: Attributes that hold values in the variable's units (CF; and ``actual_range`` of
#: common practice): converted with the values, or netCDF readers that mask outside
#: ``valid_*`` would hide the converted values.
RANGE_ATTRS = ("valid_min", "valid_max", "valid_range", "actual_range")


def _range_attrs_converted(attrs: Mapping[str, Any], convert: Callable[[Any], Any],
                           dtype: Any) -> dict[str, Any]:
    """``attrs`` with the :data:`RANGE_ATTRS` converted as the values are, by ``convert``,
    in the converted variable's float ``dtype`` (CF: the type of the data; netCDF4 ignores
    float64 bounds on float32 data) and rounded as its values are (dropped where they are
    no numbers)."""
    out = dict(attrs)
    kind = np.dtype(dtype) if np.issubdtype(np.dtype(dtype), np.floating) else np.dtype(np.float64)
    for key in RANGE_ATTRS:
        if key not in out:
            continue
        try:
            value = np.asarray(convert(np.asarray(out[key], dtype=kind))).astype(kind)
        except (TypeError, ValueError):
            del out[key]
            continue
        out[key] = value[()] if value.ndim == 0 else value
    return out


def _scalar_attr(value: Any) -> Any:
    """An attribute as a plain scalar: a one-element array (netCDF readers return some
    attributes so) or a numpy scalar by its item, bytes decoded; anything else as is."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    elif isinstance(value, np.generic):
        value = value.item()
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _units_as_text(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the ``units`` of the variables the convention may read (on ``seg``,
    ``reach`` and ``time``) as ``str``, in a shallow copy: bytes (as some HDF5 writers
    store attributes) decoded, a one-element array or numpy scalar by its item, a
    number by its text (``1`` is ``"1"``, dimensionless); another type (a list)
    raises :class:`UnitsError`, since no unit check could read it. Other variables (a
    grid mapping's scalar) are the dataset's business and are left as they are."""
    fixed: dict[Hashable, str] = {}
    for key, v in ds.variables.items():
        dims = set(map(str, v.dims))
        units = v.attrs.get("units")
        if units is None or isinstance(units, str) or not ({SEG, REACH} & dims) \
                or not dims <= {SEG, REACH, TIME}:
            continue
        plain = _scalar_attr(units)
        if isinstance(plain, (int, float)) and not isinstance(plain, bool):
            plain = f"{plain:g}"
        if isinstance(plain, str):
            fixed[key] = plain
            continue
        raise UnitsError(
            f"variable {str(key)!r} has units {units!r} of type {type(units).__name__}, not a "
            f"string, so no unit check can read them; set ds[{str(key)!r}].attrs['units'] to "
            f"the unit's name, for example 'degC'"
        )
    if not fixed:
        return ds
    out = ds.copy(deep=False)
    for key, units in fixed.items():
        out[key].attrs["units"] = units
    return out


@typed_arguments
def validate(ds: xr.Dataset, *, check_values: bool = True) -> xr.Dataset:
    """Check that ``ds`` follows the xmsgl convention and return a validated copy.

    The user's Dataset is never modified. The returned Dataset is a shallow copy in
    which temperatures in kelvin or Fahrenheit are converted to ``degC`` and lengths
    in km to m (each conversion issues an
    :class:`~xmsgl.exceptions.UnitConversionWarning` and is noted in the variable's
    ``xmsgl_note`` attribute). A conversion whose result is implausible (water
    temperatures outside :data:`CONVERTED_WATER_TEMP`, other temperatures outside
    :data:`CONVERTED_OTHER_TEMP`, in degC) is refused: the label is wrong, for example
    degC values labelled ``K``. Variables still packed (``scale_factor`` or
    ``add_offset`` in their attributes) are refused.

    Only the one-dimensional topology is read from dask-backed datasets; variables on
    ``time`` stay lazy, and their value-based unit checks are skipped.

    Parameters
    ----------
    ds : xarray.Dataset
        A dataset in the convention (see :mod:`xmsgl.convention`).
    check_values : bool, default True
        Read in-memory temperatures to judge whether their units are plausible: water
        temperatures (targets and truth) against :data:`PLAUSIBLE_WATER_TEMP`, other
        temperatures in degC against :data:`CONVERTED_OTHER_TEMP` (a fill value such as
        -9999, or kelvin values labelled degC). Other temperatures converted from K or
        degF are judged whenever they are in memory, since the conversion reads them
        anyway.

    Returns
    -------
    xarray.Dataset
        The validated (possibly unit-converted) dataset.

    Raises
    ------
    SchemaError, TopologyError, UnitsError, TimeError
        Naming the variable, the first offending ids and the fix.
    DataError
        An infinite value in a temperature whose values are read to judge its units
        (other inputs' NaN and infinite values are refused where a model reads them).

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=5, start="2000-01-01", end="2000-02-01")
    >>> ds.msgl.validate().sizes["seg"]
    5
    """
    expect_dataset(ds)
    check_flag("check_values", check_values)
    ds = _units_as_text(numpy_backed(ds))
    # Packed values (scale_factor/add_offset not applied) would pass every other check
    # with wrong numbers; refuse them for every variable the convention may use.
    used = [
        k for k, v in ds.data_vars.items()
        if {SEG, REACH} & set(map(str, v.dims)) and set(map(str, v.dims)) <= {SEG, REACH, TIME}
        and role(k, v) != "ignore"
    ]
    _refuse_packed(ds, used)
    # Once here, where every path in reads the data first, not at each listing of
    # the inputs: the check reads the values of a variable that declares a fill.
    _refuse_unmasked(ds, used)
    topology_arrays(ds)
    _check_time(ds)
    notes: list[str] = []
    out = ds.copy(deep=False)
    for name in LENGTHS:
        out = _convert_length(out, name, notes)
        _check_not_all_zero(out, name)
    _check_length_scales(out)

    for name, dim in TARGETS.items():
        if name in out.variables:
            dims = tuple(map(str, out[name].dims))
            if set(dims) != {dim, TIME}:
                other = [d for d in dims if d not in (dim, TIME)]
                _refuse_days_elsewhere(out, name, "target")
                raise SchemaError(
                    f"target {name!r} must have dims ({dim!r}, 'time'), got {dims}"
                    + (f": select one {other[0]!r} (for example ds[{name!r}] = "
                       f"ds[{name!r}].isel({other[0]}=0)), or fit one model per {other[0]!r}"
                       if other else f": give it on ({dim!r}, 'time')")
                )
    # Water temperatures (targets and truth) get value checks; any other variable
    # with temperature units is converted to degC.
    for key in list(out.data_vars):
        name = str(key)
        da = out[name]
        # The targets and their truth; another truth (an air temperature's) is
        # judged as any other temperature.
        water = name in TARGETS or (is_truth(name) and name.removesuffix("_true") in TARGETS)
        if water:
            if not check_values and da.attrs.get("units") is None:
                raise UnitsError(
                    f"water temperature {name!r} has no 'units'; set ds[{name!r}].attrs['units'] = 'degC'"
                )
            if name in TARGETS and np.issubdtype(da.dtype, np.integer):
                # An integer cannot be NaN: every node-day is read as an observation,
                # a "missing" marker (-1, 0, -9999 within range) as a temperature.
                warn_at_user(
                    f"target {name!r} is stored as {da.dtype}, which cannot mark a value "
                    f"missing: all {da.size} node-days are read as observations; if some are "
                    f"missing markers, mask them: ds[{name!r}] = ds[{name!r}].where("
                    f"ds[{name!r}] != <marker>) (or open the file with its _FillValue)",
                    XmsglWarning)
            out = _temperature_to_celsius(out, name, notes, water=True, check_values=check_values)
        elif ("units" in da.attrs and is_temperature_units(da.attrs["units"])
              and role(name, da) != "ignore"):
            # Not a variable marked to be ignored. An integer one is converted (a model
            # fitted with the float variable reads it by name) and marked with the
            # dtype it was stored as, which input_variables leaves out as it does the
            # integer (the conversion makes a float of it).
            out = _temperature_to_celsius(out, name, notes, water=False, check_values=check_values)
            if np.issubdtype(da.dtype, np.integer) and np.issubdtype(out[name].dtype, np.floating):
                out[name].attrs[STORED_AS] = str(da.dtype)

    missing = [v for v in input_variables(out, warn=False).all() if "units" not in out[v].attrs]
    if missing:
        raise UnitsError(
            f"input variables {format_ids(missing)} have no 'units' attribute; every physical "
            f"variable needs one: set ds[name].attrs['units'] (use '1' for dimensionless), or "
            f"mark a variable to be skipped with ds[name].attrs['xmsgl_role'] = 'ignore'"
        )
    if check_values:
        _check_flow_signs(out, input_variables(out, warn=False).all())
    for note in notes:
        warn_at_user(note, UnitConversionWarning)
    return out


#: Units of quantities that are never negative, with what such a quantity is and when,
#: if ever, it can be negative: an input in them with negative values is warned of.
NONNEGATIVE_UNITS = (
    ("m3 s-1", "a discharge", "is negative only where tides reverse the flow",
     "unless the flow does reverse"),
    ("ft3 s-1", "a discharge", "is negative only where tides reverse the flow",
     "unless the flow does reverse"),
    ("mm day-1", "a precipitation (or other depth of water a day)", "is never negative",
     "unless it is a net flux such as precipitation minus evaporation"),
    ("km2", "an area", "is never negative", "unless the sign means something in this data"),
    ("m2", "an area", "is never negative", "unless the sign means something in this data"),
    *((u, "an area", "is never negative", "unless the sign means something in this data")
      for u in ("ha", "hectare", "hectares", "acre", "acres")),
)

#: Units of a radiation flux: never negative where it is incoming (a net radiation is),
#: so :func:`validate` judges them only where ``standard_name`` says "downwelling" or
#: ``long_name`` "incoming", and a downscale where the training's values never were.
RADIATION_UNITS = tuple(
    (u, "an incoming radiation flux", "is never negative",
     "unless it is a net radiation (incoming minus outgoing)")
    for u in ("W m-2", "MJ m-2 day-1", "MJ m-2 d-1"))


def _is_incoming(attrs: Mapping[str, Any]) -> bool:
    """Whether a radiation flux's names say it is incoming (downwelling, downward,
    incident, or plain shortwave or solar radiation at the surface), and not net or
    outgoing."""
    text = f"{attrs.get('long_name', '')} {attrs.get('standard_name', '')}".lower()
    if re.search(r"\bnet\b|net_|-net\b|\bnet-|upwelling|upward|outgoing|reflected", text):
        return False  # a net or outgoing flux, whatever name arithmetic carried over
    return any(word in text for word in ("downwelling", "incoming", "downward", "incident",
                                         "shortwave", "solar"))


def _check_flow_signs(ds: xr.Dataset, names: Sequence[str]) -> None:
    """Warn of negative values in an input in units of a quantity that is never
    negative (:data:`NONNEGATIVE_UNITS`): a discharge, a precipitation, an area; and
    an incoming radiation (:data:`RADIATION_UNITS`, a variable whose ``standard_name``
    says "downwelling" or whose ``long_name`` says "incoming").

    Water flows backwards only where tides reverse it; a negative discharge is far
    more often a fill value or another sign convention, which the networks would
    read as a real, extreme flow (a review moved a reach's prediction by 8.6 degC
    with -1 m3 s-1). Lazy variables are not read."""
    for name in names:
        da = ds[name]
        units = da.attrs.get("units")
        if not isinstance(units, str) or _is_lazy(da):
            continue
        kinds = NONNEGATIVE_UNITS + (RADIATION_UNITS if _is_incoming(da.attrs) else ())
        kind = next((k for k in kinds if same_units(units, k[0])), None)
        if kind is None:
            continue
        vals = np.asarray(da.values)
        if not np.issubdtype(vals.dtype, np.number):
            continue
        # No temporary array unless something is negative (the check reads every value
        # of an in-memory dataset); round-off of a regridding or a unit conversion
        # (-1e-18) is no fill value.
        vmin = float(np.nanmin(vals, initial=np.inf))
        if not vmin < 0:
            continue
        neg = vals < -1e-6 * max(-vmin, float(np.nanmax(vals, initial=0.0)))
        if not neg.any():
            continue
        _, what, when, unless = kind
        dim = next((str(d) for d in da.dims if str(d) in (SEG, REACH)), None)
        where = ""
        if dim is not None:
            nodes = np.asarray(ds[dim].values)[neg.any(axis=tuple(
                i for i, d in enumerate(da.dims) if str(d) != dim))]
            where = f" at {dim} ids {format_ids(nodes)}"
        warn_at_user(XmsglWarning(
            f"input {name!r} ({units}) is negative at {int(neg.sum())} of {neg.size} values"
            f"{where} (lowest {float(np.nanmin(vals)):g}): {what} {when}; a fill "
            f"value or another sign convention is more likely, which the networks would read "
            f"as a real value: mask or correct it (ds[{name!r}].where(ds[{name!r}] >= 0)) {unless}"))


#: Factor by which a segment's length and the summed length of its reaches may differ
#: (as a median over segments) before :func:`validate` warns of a unit mistake.
LENGTH_RATIO_LIMIT = 30.0


def _check_not_all_zero(ds: xr.Dataset, name: str) -> None:
    """Refuse lengths that are 0 at every node of the dataset validated. One 0 is a
    zero-length node; all of them is a column that was never filled, and every distance,
    graph weight and inverse-distance weight would be the same. Judged on the whole
    network only: a block of a lazy run or a sub-basin batch may hold one small
    component whose lengths are all 0, which the whole network's validation accepted."""
    if name not in ds.variables:
        return
    values = np.asarray(ds[name].values)
    if values.size > 1 and values.dtype.kind in "iuf" and not np.any(values):
        raise TopologyError(
            f"variable {name!r} is 0 at all its {values.size} ids; the lengths (in m) make the "
            f"along-stream distances of the graphs and of the baselines' weights: give the "
            f"real lengths (0 only where a node has none)"
        )


def _check_length_scales(ds: xr.Dataset) -> None:
    """Warn when segment and reach lengths disagree by orders of magnitude.

    A segment is the chain of its reaches, so its length and the sum of its reaches'
    lengths agree within a small factor (the synthetic basin: 0.4-1; the Delaware
    files: 1). A median ratio beyond :data:`LENGTH_RATIO_LIMIT` either way means one
    of them is in other units than its label says (km labelled ``m``), which
    distances, the graphs and the baselines would then carry.
    """
    if not all(name in ds.variables for name in (*LENGTHS, "reach_seg")):
        return
    seg_len = np.asarray(ds["seg_length"].values, dtype=np.float64)
    reach_len = np.asarray(ds["reach_length"].values, dtype=np.float64)
    pos = pd.Index(np.asarray(ds[SEG].values)).get_indexer(np.asarray(ds["reach_seg"].values))
    ok = pos >= 0
    sums = np.bincount(pos[ok], weights=reach_len[ok], minlength=seg_len.size)
    both = (seg_len > 0) & (sums > 0)
    if not both.any():
        return
    ratio = float(np.median(seg_len[both] / sums[both]))
    if 1.0 / LENGTH_RATIO_LIMIT <= ratio <= LENGTH_RATIO_LIMIT:
        return
    units = {name: ds[name].attrs.get("units") for name in LENGTHS}
    longer, shorter = ("seg_length", "reach_length") if ratio > 1 else ("reach_length", "seg_length")
    factor = ratio if ratio > 1 else 1.0 / ratio
    warn_at_user(
        f"'seg_length' is {ratio:.3g} times the summed 'reach_length' of its reaches (median "
        f"over {int(both.sum())} segments), though a segment is the chain of its reaches: "
        f"{longer!r} looks {factor:.3g} times too long, or {shorter!r} too short, for its "
        f"units ({units}); a factor near 1000 is km labelled 'm' (or m labelled 'km'). Correct "
        f"the 'units' attribute: distances, graphs and the baselines use both",
        XmsglWarning)


def _whole_in_range(vals: np.ndarray) -> bool:
    """Whether float ``vals`` are all whole numbers that convert to int64 exactly."""
    vals = np.asarray(vals, dtype=np.float64)
    return bool(
        np.all(np.isfinite(vals))
        and np.all(np.abs(vals) <= _MAX_ID_FLOAT)
        and np.all(vals == np.round(vals))
    )


def _replace_outlet_int(name: str, vals: np.ndarray, outlet: Any) -> np.ndarray:
    """Replace the outlet marker in integer pointers by ``OUTLET``, exactly."""
    marker = outlet
    if marker is pd.NA:
        return _as_int64(vals)  # integer ids hold no <NA> (those were replaced already)
    if isinstance(marker, (float, np.floating)):
        if not np.isfinite(marker):
            return _as_int64(vals)  # NaN or inf never occurs in integer ids
        if marker != np.round(marker):
            return _as_int64(vals)  # 2.5 never occurs in integer ids either
        marker = int(marker)
    if isinstance(marker, (bool, np.bool_)) or not isinstance(marker, (int, np.integer)):
        raise SchemaError(
            f"outlet={outlet!r} cannot mark outlets in the integer ids of {name!r}; pass the "
            f"integer your data writes at outlets (for example outlet=-1)"
        )
    return _as_int64(np.where(vals == int(marker), OUTLET, vals))


def _as_int64(vals: np.ndarray) -> np.ndarray:
    # Unsigned ids above the int64 range stay unsigned so that validate() names them.
    if np.issubdtype(vals.dtype, np.unsignedinteger) and vals.size and vals.max() > _MAX_ID:
        return vals
    return vals.astype(np.int64)


@typed_arguments
def to_convention(
    ds: xr.Dataset,
    *,
    seg: str | None = None,
    reach: str | None = None,
    time: str | None = None,
    names: Mapping[str, str] | None = None,
    outlet: Any = None,
    keep_original: bool = True,
) -> xr.Dataset:
    """Map a dataset that uses other names onto the xmsgl convention.

    Real files name things their own way: the USGS National Hydrologic Model says
    ``seg_id_nat`` and ``to_seg``, NHDPlus says ``COMID`` and ``tocomid``. This call
    renames dimensions and variables, converts the outlet marker to ``OUTLET`` (0),
    and keeps each original dimension name as a coordinate (``seg_id_nat``,
    ``COMID``) so results can be joined back to the source.

    Parameters
    ----------
    ds : xarray.Dataset
        The dataset in its own names. It is not modified.
    seg, reach, time : str, optional
        The names of the coarse, fine and time dimensions in ``ds``.
    names : mapping, optional
        ``{your_name: convention_name}`` for variables, for example
        ``{"to_seg": "seg_to", "tocomid": "reach_to", "seg_id_nat_of_comid": "reach_seg"}``.
    outlet : scalar or mapping, optional
        The value your data writes at outlets in the downstream pointers (for example
        ``-1`` or ``np.nan``); it becomes ``OUTLET``. Where the two scales' files mark
        outlets differently, give ``{"seg_to": marker, "reach_to": marker}`` (in the
        convention's names; a pointer left out keeps its values).
    keep_original : bool, default True
        Keep the original dimension names as coordinates.

    Returns
    -------
    xarray.Dataset
        A new dataset in the convention (not yet validated: call ``.msgl.validate()``).

    Examples
    --------
    >>> import numpy as np, xarray as xr, xmsgl
    >>> raw = xr.Dataset(
    ...     {"to_seg": ("seg_id_nat", [2, -1]), "seg_len": ("seg_id_nat", [10.0, 20.0])},
    ...     coords={"seg_id_nat": [1, 2]},
    ... )
    >>> out = xmsgl.to_convention(raw, seg="seg_id_nat",
    ...                           names={"to_seg": "seg_to", "seg_len": "seg_length"}, outlet=-1)
    >>> out["seg_to"].values.tolist(), "seg_id_nat" in out.coords
    ([2, 0], True)
    """
    expect_dataset(ds)
    if names is not None and not isinstance(names, Mapping):
        raise SchemaError(
            f"names must be a mapping {{your_name: convention_name}}, got {type(names).__name__}"
        )
    check_flag("keep_original", keep_original)
    rename_dims: dict[str, str] = {}
    given = [(conv, yours) for conv, yours in ((SEG, seg), (REACH, reach), (TIME, time)) if yours is not None]
    twice = sorted({str(y) for _, y in given if [y2 for _, y2 in given].count(y) > 1})
    if twice:
        raise SchemaError(f"{twice} {'is' if len(twice) == 1 else 'are'} given for two of seg=, reach= and "
                          f"time= ({', '.join(f'{c}={y!r}' for c, y in given if y in twice)}); each names "
                          "its own dimension")
    for conv, yours in given:
        if yours == conv:
            continue
        if yours not in ds.dims:
            raise SchemaError(
                f"dimension {yours!r} (given for {conv!r}) is not in the dataset; its dims are "
                f"{list(map(str, ds.dims))}"
            )
        rename_dims[yours] = conv
    names = dict(names or {})
    for yours in names:
        if yours not in ds.variables:
            raise SchemaError(
                f"variable {yours!r} (given for {names[yours]!r}) is not in the dataset; its "
                f"variables are {list(map(str, ds.variables))}"
            )
    mapping = {**rename_dims, **names}
    # A new name already used by another variable or dimension would make xarray
    # refuse the rename (or merge two things into one); say which names collide.
    taken = set(map(str, ds.variables)) | set(map(str, ds.dims))
    clash = sorted(
        {str(new) for old, new in mapping.items() if str(new) in taken and new not in mapping}
    )
    targets = [str(v) for v in mapping.values()]
    clash += sorted({t for t in targets if targets.count(t) > 1} - set(clash))
    if clash:
        raise SchemaError(
            f"cannot rename to {clash}: the dataset already has variables or dimensions with "
            f"these names, or two names map to them; drop or rename the existing ones first "
            f"(ds.drop_vars / ds.rename)"
        )
    out = ds.rename(mapping)
    if keep_original:
        for yours, conv in rename_dims.items():
            if conv in (SEG, REACH) and conv in out.coords:
                out = out.assign_coords({yours: (conv, out[conv].values)})
    if isinstance(outlet, Mapping):
        unknown = sorted(str(k) for k in outlet if k not in ("seg_to", "reach_to"))
        if unknown:
            raise SchemaError(
                f"outlet has keys {unknown}; a mapping of outlet markers is keyed by the "
                "convention's pointer names, 'seg_to' and 'reach_to'"
            )
        markers = {str(k): v for k, v in outlet.items() if v is not None}
    else:
        markers = {} if outlet is None else {"seg_to": outlet, "reach_to": outlet}
    for name, marker in markers.items():
        arr = _extension_array(out, name) if name in out.variables else None
        if arr is not None and _missing_marker(marker) and _nullable_kind(arr.dtype) in ("i", "u"):
            # Nullable integer ids with <NA> at outlets: replaced exactly, not through
            # the float64 that numpy's view of them would give.
            var = out.variables[name]
            out[name] = xr.Variable(var.dims, np.asarray(arr.to_numpy(dtype=np.int64, na_value=OUTLET)),
                                    var.attrs, var.encoding)
    out = numpy_backed(out)
    for name, marker in markers.items():
        if name not in out.variables:
            continue
        vals = np.asarray(out[name].values)
        if np.issubdtype(vals.dtype, np.integer):
            # Integer ids are replaced as integers: going through float64 would
            # round ids above 2**53 to a neighbouring id.
            out[name] = (out[name].dims, _replace_outlet_int(name, vals, marker),
                         out[name].attrs)
            continue
        if vals.dtype.kind == "f":
            dim = SEG if name == "seg_to" else REACH
            ids = np.asarray(out[dim].values) if dim in out.coords else np.empty(0, np.int64)
            _refuse_inexact_float_ids(name, vals, ids)
        try:
            as_float = vals.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise SchemaError(
                f"variable {name!r} must hold numeric ids to convert the outlet marker "
                f"{marker!r}, got dtype {vals.dtype}; map its values to integer ids first"
            ) from err
        if _missing_marker(marker):
            mask = np.isnan(as_float)
        else:
            mask = vals == marker
        filled = np.where(mask, float(OUTLET), as_float)
        # Only exact integer ids become int64; anything else (a NaN that is not the
        # outlet marker, inf, 2.5) is kept as float so that validate() names it.
        if _whole_in_range(filled):
            out[name] = (out[name].dims, filled.astype(np.int64), out[name].attrs)
        else:
            out[name] = (out[name].dims, filled, out[name].attrs)
    for dim in (SEG, REACH):
        if dim in out.coords and np.issubdtype(out[dim].dtype, np.floating):
            vals = out[dim].values
            if _whole_in_range(vals):
                out = out.assign_coords({dim: vals.astype(np.int64)})
    if "reach_seg" in out.variables and np.issubdtype(out["reach_seg"].dtype, np.floating):
        vals = out["reach_seg"].values
        # Cast only whole ids: 1.5 is kept as float so that validate() names it
        # ('reach_seg' must hold integer ids) instead of silently becoming 1.
        if _whole_in_range(vals):
            out["reach_seg"] = (out["reach_seg"].dims, vals.astype(np.int64), out["reach_seg"].attrs)
    return out
