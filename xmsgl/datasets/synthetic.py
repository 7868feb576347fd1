"""A physically based synthetic river basin at two scales.

:func:`synthetic_basin` draws a random dendritic network of coarse segments, splits
every segment into a chain of fine reaches with fine-only tributaries, and runs a
daily heat budget over the fine network. The coarse view (segment forcings and the
coarse water temperature) is derived from the fine one, so a downscaling model can
be scored against the full fine truth (``reach_temp_true``).

The equations and parameter values are written out in ``docs/synthetic.md``. In
short, for every reach and day:

* air temperature = annual cycle + regional synoptic anomaly (a few smooth spatial
  modes with daily coefficients) + lapse rate x elevation + local noise;
* shortwave radiation = clear-sky radiation at the reach's latitude, dimmed by cloud
  that follows the same latent weather field as precipitation;
* discharge = sum over the upstream network of local inflow, the local inflow being
  groundwater (steady, seasonal) plus storm runoff (precipitation through a fast and
  a slow linear reservoir);
* water temperature = inflows mixed by discharge at the head of the reach, then
  relaxed toward an equilibrium temperature over the travel time through the reach
  (exchange coefficient over heat capacity of the water column); the equilibrium
  temperature carries the thermal inertia of the water column and streambed as a
  first-order filter along time; ice caps it below at 0 degC.

Everything is drawn per drainage component (an independent tree draining to its own
outlet) from sub-seeds of ``seed``, and the regional weather from ``seed`` and the
coordinates alone, so a basin can be generated chunk by chunk with dask and gives
exactly the values of an in-memory run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from numbers import Integral, Real
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xmsgl.convention import CF_CONVENTIONS, OUTLET
from xmsgl.exceptions import ParameterError, TimeError

__all__ = ["synthetic_basin"]

# --- physical constants and parameters (docs/synthetic.md explains each) ---
RHO_CP = 4.18e6  # volumetric heat capacity of water, J m-3 K-1
EXCHANGE_K = 35.0  # linearised surface heat exchange coefficient, W m-2 K-1
ALBEDO = 0.10  # share of shortwave reflected by the water surface
EQUILIBRIUM_OFFSET = -1.5  # K: net longwave and evaporative loss lower Te below air temp
BED_DEPTH = 0.25  # m of streambed/hyporheic water that shares the water column's heat
LAPSE_RATE = -6.5e-3  # K m-1
NORTH_GRADIENT = -6.0e-6  # K m-1, colder to the north
AIR_MEAN = 12.5  # degC at sea level and northing Y_OFFSET
AIR_AMPLITUDE = 11.0  # K, half the annual range of daily mean air temperature
AIR_PEAK_DOY = 201  # warmest day of year
SYNOPTIC_SD = 2.8  # K, mean standard deviation of regional anomalies
SYNOPTIC_SD_SEASONAL = 0.8  # K, larger in winter
SYNOPTIC_AR = 0.75  # day-to-day autocorrelation of synoptic anomalies
LOCAL_AIR_SD = 0.5  # K, reach-scale noise of daily air temperature
PRECIP_MEAN = 3.2  # mm d-1
WET_THRESHOLD = 0.3  # latent weather value above which it rains (about 38 % wet days)
PRECIP_SHAPE = 1.5  # rain amount grows as (latent excess) ** 1.5
PRECIP_AR = 0.35
PRECIP_LOCAL = 0.39  # weight of reach-scale noise in the latent weather field
CLEAR_SKY_TRANSMISSION = 0.75
CLOUD_DIMMING = 0.72
CLOUD_SLOPE, CLOUD_AT_ZERO = 0.4, 0.58  # cloud = clip(0.58 + 0.4 * latent, 0.05, 1)
RUNOFF = 0.018  # mean specific runoff, m3 s-1 km-2 (about 570 mm a-1)
BASEFLOW_SEASONAL = 0.35  # relative amplitude of the baseflow cycle, peak in March
FAST_RECESSION_DAYS = 2.0
SLOW_RECESSION_DAYS = 20.0
FAST_SHARE = 0.6
GW_OFFSET = 0.5  # K: groundwater slightly warmer than mean annual air temperature
GW_AMPLITUDE = 1.5  # K
GW_LAG_DAYS = 60
WIDTH_COEF, WIDTH_EXP = 5.0, 0.5  # W = a Qm^b (downstream hydraulic geometry)
DEPTH_COEF, DEPTH_EXP = 0.35, 0.4  # D = c Qm^f
WIDTH_STATION_EXP = 0.2  # at-a-station width change with discharge
SINUOSITY = 1.25
X_OFFSET, Y_OFFSET = 500_000.0, 4_550_000.0  # m, a UTM-like frame near 41 degN
METRES_PER_DEGREE = 111_195.0
SEGMENTS_PER_OUTLET = 75  # default component size
#: The most segments a basin may have: about 7 million reaches, more than the
#: 2.7 million flowlines of NHDPlus over the conterminous United States.
MAX_SEGMENTS = 1_000_000
TIP_BIAS = 0.5  # probability that a new segment extends the newest tip (longer main stems)
YEAR = 365.25

# Every random draw comes from np.random.default_rng([seed, tag, ...]); tags: 1 network
# of component c, 2 reach-scale weather noise of c, 3 observations of c, 4 smooth
# static fields, 5 choice of sensor sites, 6 component sizes, 7 and 8 regional weather
# modes, 9 springs of c. Per-component streams make a chunk independent of the others.


@dataclass
class _Network:
    """Topology and static attributes; one value per node, always in memory.

    Reach pointers are positions (-1 at outlets). ``comp_reach`` and ``comp_seg``
    hold the start of every component's block of reaches and segments, plus the end.
    """

    seg_to: np.ndarray
    seg_x: np.ndarray
    seg_y: np.ndarray
    seg_outlet_reach: np.ndarray
    reach_to: np.ndarray
    reach_seg: np.ndarray
    reach_length: np.ndarray
    reach_x: np.ndarray
    reach_y: np.ndarray
    reach_local_area: np.ndarray
    reach_area: np.ndarray
    reach_slope: np.ndarray
    reach_elevation: np.ndarray
    reach_width: np.ndarray
    reach_depth: np.ndarray
    reach_mean_q: np.ndarray
    reach_shade: np.ndarray
    reach_gw_share: np.ndarray
    reach_inertia: np.ndarray
    reach_level: np.ndarray
    reach_is_tributary: np.ndarray
    reach_is_spring: np.ndarray
    seg_observed: np.ndarray
    reach_observed: np.ndarray
    comp_reach: np.ndarray
    comp_seg: np.ndarray

    def part(self, c0: int, c1: int) -> _Network:
        """The components ``c0:c1`` with pointers relative to their first reach/segment."""
        r0, r1 = int(self.comp_reach[c0]), int(self.comp_reach[c1])
        s0, s1 = int(self.comp_seg[c0]), int(self.comp_seg[c1])
        out: dict[str, np.ndarray] = {}
        for f in fields(self):
            a = getattr(self, f.name)
            if f.name.startswith("comp_"):
                out[f.name] = a[c0:c1 + 1] - a[c0]
            elif f.name.startswith("seg_"):
                out[f.name] = a[s0:s1]
            else:
                out[f.name] = a[r0:r1]
        out["seg_to"] = np.where(out["seg_to"] >= 0, out["seg_to"] - s0, -1)
        out["reach_to"] = np.where(out["reach_to"] >= 0, out["reach_to"] - r0, -1)
        out["reach_seg"] = out["reach_seg"] - s0
        out["seg_outlet_reach"] = out["seg_outlet_reach"] - r0
        return _Network(**out)


@dataclass(frozen=True)
class _Params:
    seed: int
    reaches_per_segment: float
    tributaries_per_segment: float
    reach_length: float
    obs_noise: float


# ----------------------------------------------------------------------------- checks


def _check_int(name: str, value: object, low: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ParameterError(f"{name!r} must be an integer, got {value!r} ({type(value).__name__}); {fix}")
    if int(value) < low:
        raise ParameterError(f"{name!r} must be >= {low}, got {value!r}; {fix}")
    return int(value)


def _check_real(name: str, value: object, low: float, high: float, fix: str,
                low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not np.isfinite(float(value)):
        raise ParameterError(f"{name!r} must be a finite number, got {value!r}; {fix}")
    v = float(value)
    if v < low or v > high or (low_open and v == low):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}]"
        raise ParameterError(f"{name!r} must lie in {interval}, got {value!r}; {fix}")
    return v


def _physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the system does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


#: The peak memory of an in-memory build over the size of its dynamic variables: the
#: simulation's working arrays (float64 on reach x day) come on top of them. Measured
#: 2.4 (the default basin: 0.39 GB of variables, 1.05 GB peak RSS with 0.12 GB
#: before) and 2.1 (900 segments: 0.77 and 1.76 GB).
_PEAK_OVER_VARIABLES = 2.5


def _check_fits_in_memory(n_reach: int, n_seg: int, n_time: int) -> None:
    """Refuse an in-memory basin whose build would exceed this machine's memory,
    before the simulation fills it (it would run for minutes and then be killed)."""
    need = (n_reach + n_seg) * n_time * (len(_DYNAMIC) + 2) * 4 * _PEAK_OVER_VARIABLES
    have = _physical_memory()
    if have is not None and need > have:
        raise ParameterError(
            f"a basin of {n_reach:,} reaches and {n_seg:,} segments over {n_time:,} days needs "
            f"about {need / 1e9:,.0f} GB in memory while it is built, more than this machine's "
            f"{have / 1e9:,.0f} GB; "
            "pass chunks=5000 for a lazy (dask-backed) basin, or ask for fewer segments or days"
        )


#: The coldest mean annual air temperature (degC) a reach of the basin may have: the
#: lapse rate cools the air with elevation, which grows with slope times path length.
COLDEST_CLIMATE = -25.0


def _climate(net: _Network) -> np.ndarray:
    """Each reach's mean annual air temperature (degC): sea level's, cooled with
    elevation and to the north."""
    return AIR_MEAN + LAPSE_RATE * net.reach_elevation + NORTH_GRADIENT * (net.reach_y - Y_OFFSET)


def _check_climate(net: _Network, p: _Params) -> None:
    """Refuse a network whose highest reaches lie where no stream flows: their air
    would be colder than :data:`COLDEST_CLIMATE` on average (and, day by day, beyond
    what ``validate`` accepts of an air temperature)."""
    climate = _climate(net)
    i = int(np.argmin(climate))
    if climate[i] < COLDEST_CLIMATE:
        raise ParameterError(
            f"the basin's highest reaches lie up to {float(net.reach_elevation[i]):.0f} m, where the "
            f"mean air temperature would be {float(climate[i]):.0f} degC (below {COLDEST_CLIMATE:g}): "
            f"no stream flows there. Elevation grows with reach_length ({p.reach_length:g} m) times "
            f"the reaches on the way down (reaches_per_segment {p.reaches_per_segment:g}, and the "
            "segments per outlet): give a shorter reach_length, fewer reaches_per_segment or more "
            "n_outlets"
        )


def _time_axis(start: Any, end: Any) -> pd.DatetimeIndex:
    import numbers

    # pandas reads a number as nanoseconds since 1970 (start=2001 is 1970-01-01) and
    # None or "" as NaT: neither is a date.
    odd = [(name, v) for name, v in (("start", start), ("end", end))
           if v is None or isinstance(v, (bool, numbers.Number)) or (isinstance(v, str) and not v.strip())]
    if odd:
        raise TimeError(
            f"{' and '.join(f'{n!r}' for n, _ in odd)} must be dates such as '2007-10-01', got "
            f"{', '.join(repr(v) for _, v in odd)}; a year is '2001' or '2001-01-01', as a string"
        )
    from xmsgl.periods import year_last_refusal

    for name, v in (("start", start), ("end", end)):
        refusal = year_last_refusal(v, f"{name}={v!r}") if isinstance(v, str) else None
        if refusal is not None:  # read month-first by pandas, without a word
            raise refusal
    try:
        t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    except (ValueError, TypeError) as err:
        raise TimeError(
            f"'start'/'end' must be dates such as '2007-10-01', got {start!r} and {end!r}: {err}"
        ) from err
    if pd.isna(t0) or pd.isna(t1):
        raise TimeError(f"'start'/'end' must be dates such as '2007-10-01', got {start!r} and {end!r}")
    zoned = [name for name, t in (("start", t0), ("end", t1)) if t.tz is not None]
    if zoned:
        # A zone would put the days on UTC instants (2001-06-30T22:00 for a Berlin
        # 2001-07-01) and shift the simulated day of year: the basin's days are plain dates.
        raise TimeError(f"{' and '.join(repr(n) for n in zoned)} carry a time zone ({start!r}, "
                        f"{end!r}); give plain dates such as '2007-10-01'")
    if t1.normalize() < t0.normalize():
        raise TimeError(
            f"'end' ({t1.date()}) is before 'start' ({t0.date()}); swap them or move 'end' later"
        )
    # The basin's days are datetime64[ns], as xarray decodes them: a date outside that
    # range (1677-09-22 to 2262-04-11) wrapped around to another century without a word.
    first, last = pd.Timestamp.min.ceil("D"), pd.Timestamp.max.floor("D")
    outside = [f"{name}={v!r}" for name, v, t in (("start", start, t0), ("end", end, t1))
               if not first <= t.normalize() <= last]
    if outside:
        raise TimeError(
            f"{' and '.join(outside)} {'lie' if len(outside) > 1 else 'lies'} outside the days "
            f"datetime64[ns] holds ({first.date()} to "
            f"{last.date()}), the basin's time axis; give dates inside them"
        )
    return pd.date_range(t0.normalize(), t1.normalize(), freq="D")


# --------------------------------------------------------------------------- topology


def _random_tree(rng: np.random.Generator, m: int) -> np.ndarray:
    """Downstream pointer of a random binary tree; node 0 is the outlet, parents come first."""
    parent = np.full(m, -1, dtype=np.int64)
    nchild = np.zeros(m, dtype=np.int64)
    free = [0]
    u = rng.random((m, 2))
    for i in range(1, m):
        # Extending the newest tip half of the time gives long main stems, as in real
        # basins; attaching anywhere else gives the side branches.
        k = len(free) - 1 if u[i, 0] < TIP_BIAS else int(u[i, 1] * len(free))
        p = free[k]
        parent[i] = p
        nchild[p] += 1
        if nchild[p] == 2:
            free[k] = free[-1]
            free.pop()
        free.append(i)
    return parent


def _layout(rng: np.random.Generator, parent: np.ndarray, straight: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outlet point, head point and upstream direction of every segment.

    Each segment gets an angular wedge shared among its upstream branches in
    proportion to their number of headwaters, which keeps branches apart.
    """
    m = parent.size
    children: list[list[int]] = [[] for _ in range(m)]
    for i in range(1, m):
        children[int(parent[i])].append(i)
    leaves = np.array([1.0 if not children[i] else 0.0 for i in range(m)])
    for i in range(m - 1, 0, -1):
        leaves[parent[i]] += leaves[i]
    lo = np.empty(m)
    hi = np.empty(m)
    theta = np.empty(m)
    out = np.zeros((m, 2))
    head = np.zeros((m, 2))
    lo[0], hi[0] = np.pi / 2 - 1.1, np.pi / 2 + 1.1
    jitter = rng.uniform(-1.0, 1.0, m)
    for i in range(m):
        mid = 0.5 * (lo[i] + hi[i])
        th = mid + 0.3 * jitter[i] * (hi[i] - lo[i])
        if i:
            p = int(parent[i])
            out[i] = head[p]
            th = float(np.clip(th, theta[p] - 1.2, theta[p] + 1.2))
        theta[i] = th
        head[i] = out[i] + straight[i] * np.array([np.cos(th), np.sin(th)])
        cursor = lo[i]
        for ch in children[i]:
            w = (hi[i] - lo[i]) * leaves[ch] / leaves[i]
            lo[ch], hi[ch] = cursor, cursor + w
            cursor += w
    return out, head, theta


def _component(rng: np.random.Generator, m: int, p: _Params) -> dict[str, np.ndarray]:
    """Segments and reaches of one drainage component in local coordinates."""
    parent = _random_tree(rng, m)
    n_chain = 1 + rng.poisson(max(p.reaches_per_segment - 1.0, 0.0), m)
    n_trib = rng.poisson(p.tributaries_per_segment, m)
    nt = int(n_trib.sum())
    trib_len = 1 + (rng.random(nt) < 0.4).astype(np.int64)
    trib_seg = np.repeat(np.arange(m), n_trib)
    trib_join = (rng.random(nt) * n_chain[trib_seg]).astype(np.int64)
    trib_kind = rng.random(nt)  # < 0.3 spring-fed, 0.3-0.6 shaded, else ordinary
    trib_side = np.where(rng.random(nt) < 0.5, -1.0, 1.0)
    trib_angle = rng.uniform(0.8, 1.4, nt)

    n_chain_total = int(n_chain.sum())
    trib_reaches = np.bincount(trib_seg, weights=trib_len, minlength=m).astype(np.int64)
    block = n_chain + trib_reaches
    block_start = np.concatenate([[0], np.cumsum(block)[:-1]])
    n = int(block.sum())

    # chain reaches, head (k = 0) to outlet (k = n_chain - 1)
    c_seg = np.repeat(np.arange(m), n_chain)
    c_k = np.arange(n_chain_total) - np.repeat(np.cumsum(n_chain) - n_chain, n_chain)
    c_idx = block_start[c_seg] + c_k
    # tributary reaches, upstream-most first, after their segment's chain
    t_of = np.repeat(np.arange(nt), trib_len)
    t_pos = np.arange(t_of.size) - np.repeat(np.cumsum(trib_len) - trib_len, trib_len)
    trib_offset = np.cumsum(trib_len) - trib_len  # first reach of each trib among all trib reaches
    trib_offset_in_seg = trib_offset - (np.cumsum(trib_reaches) - trib_reaches)[trib_seg]
    t_seg = trib_seg[t_of]
    t_idx = block_start[t_seg] + n_chain[t_seg] + trib_offset_in_seg[t_of] + t_pos

    seg = np.empty(n, dtype=np.int64)
    to = np.empty(n, dtype=np.int64)
    is_trib = np.zeros(n, dtype=np.int8)
    seg[c_idx] = c_seg
    seg[t_idx] = t_seg
    is_trib[t_idx] = 1
    last = c_k == n_chain[c_seg] - 1
    down_seg = parent[c_seg]
    to[c_idx] = np.where(~last, c_idx + 1, np.where(down_seg >= 0, block_start[np.maximum(down_seg, 0)], -1))
    t_last = t_pos == trib_len[t_of] - 1
    to[t_idx] = np.where(~t_last, t_idx + 1, block_start[t_seg] + trib_join[t_of])

    length = p.reach_length * rng.lognormal(-0.5 * 0.35**2, 0.35, n)
    length = np.clip(length, 0.15 * p.reach_length, 4.0 * p.reach_length)
    hill_width = rng.lognormal(np.log(3.0), 0.4, n)  # km2 of land per km of channel
    local_area = hill_width * length / 1000.0

    seg_len = np.bincount(seg[c_idx], weights=length[c_idx], minlength=m)
    straight = seg_len / SINUOSITY
    out, head, theta = _layout(rng, parent, straight)

    # chain reach midpoints along the segment, with a gentle meander
    cum = np.cumsum(length[c_idx])
    seg_cum0 = np.concatenate([[0.0], np.cumsum(seg_len)[:-1]])
    before = cum - length[c_idx] - seg_cum0[c_seg]
    f_mid = (before + 0.5 * length[c_idx]) / seg_len[c_seg]
    bends = rng.uniform(0.5, 2.0, m)
    phase = rng.uniform(0, 2 * np.pi, m)
    perp = np.stack([-np.sin(theta), np.cos(theta)], axis=1)
    xy = np.empty((n, 2))
    wig = 0.06 * straight[c_seg] * np.sin(2 * np.pi * bends[c_seg] * f_mid + phase[c_seg])
    xy[c_idx] = head[c_seg] + f_mid[:, None] * (out[c_seg] - head[c_seg]) + wig[:, None] * perp[c_seg]
    # tributaries leave the chain at the upstream end of the reach they join
    if nt:
        chain_start = np.cumsum(n_chain) - n_chain
        f_join = before[chain_start[trib_seg] + trib_join] / seg_len[trib_seg]
        junction = head[trib_seg] + f_join[:, None] * (out[trib_seg] - head[trib_seg])
        ang = theta[trib_seg] + trib_side * trib_angle
        direction = np.stack([np.cos(ang), np.sin(ang)], axis=1)
        # distance from the junction to each reach midpoint, the downstream-most first
        lt = length[t_idx]
        for_trib_total = np.bincount(t_of, weights=lt, minlength=nt)
        cum_t = np.cumsum(lt) - np.repeat(np.cumsum(for_trib_total) - for_trib_total, trib_len)
        rev_cum = for_trib_total[t_of] - cum_t + 0.5 * lt
        xy[t_idx] = junction[t_of] + (rev_cum / SINUOSITY)[:, None] * direction[t_of]

    kind = np.zeros(n)
    kind[t_idx] = trib_kind[t_of]
    return {
        "seg_to": parent, "seg_out": out, "seg_len": seg_len,
        "reach_to": to, "reach_seg": seg, "reach_length": length, "reach_xy": xy,
        "reach_local_area": local_area, "reach_is_tributary": is_trib,
        "trib_kind": np.where(is_trib == 1, kind, 1.0),
        "slope_noise": rng.lognormal(0.0, 0.4, n), "width_noise": rng.lognormal(0.0, 0.15, n),
        "base_elevation": np.array([rng.uniform(2.0, 40.0)]),
        "spring_density": np.array([rng.random()]),
    }


def _expit(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _levels(to: np.ndarray) -> np.ndarray:
    """Longest path from a headwater to each node (0 at headwaters), by frontier sweeps."""
    n = to.size
    indeg = np.bincount(to[to >= 0], minlength=n)
    level = np.zeros(n, dtype=np.int64)
    frontier = np.flatnonzero(indeg == 0)
    lev = 0
    while frontier.size:
        level[frontier] = lev
        t = to[frontier]
        t = t[t >= 0]
        np.subtract.at(indeg, t, 1)
        frontier = np.unique(t[indeg[t] == 0])
        lev += 1
    return level


def _rff_field(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, scale: float,
               n_features: int = 48) -> np.ndarray:
    """A smooth random field of unit variance with correlation length ``scale`` (m)."""
    omega = rng.normal(0.0, 1.0 / scale, (n_features, 2))
    phase = rng.uniform(0.0, 2 * np.pi, n_features)
    out = np.zeros(x.size)
    for k in range(n_features):
        out += np.cos(omega[k, 0] * x + omega[k, 1] * y + phase[k])
    return out * np.sqrt(2.0 / n_features)


def _component_sizes(rng: np.random.Generator, n_segments: int, n_outlets: int) -> np.ndarray:
    w = rng.lognormal(0.0, 0.6, n_outlets)
    extra = rng.multinomial(n_segments - n_outlets, w / w.sum())
    return 1 + extra


def _build_network(n_segments: int, n_outlets: int, p: _Params,
                   seg_obs_share: float, reach_obs_share: float) -> _Network:
    sizes = _component_sizes(np.random.default_rng([p.seed, 6]), n_segments, n_outlets)
    comps = [_component(np.random.default_rng([p.seed, 1, c]), int(m), p) for c, m in enumerate(sizes)]

    # Place components on shelves, left to right, so their basins do not overlap.
    boxes = []
    for c in comps:
        pts = np.vstack([c["reach_xy"], c["seg_out"]])
        boxes.append((pts.min(axis=0), pts.max(axis=0)))
    gap = 3.0 * p.reach_length
    packed = sum(float(np.prod(b[1] - b[0] + gap)) for b in boxes)
    row_width = max(np.sqrt(packed) * 1.3, max(float(b[1][0] - b[0][0]) for b in boxes))
    offsets = []
    cx = cy = row_h = 0.0
    for b0, b1 in boxes:
        w, h = b1 - b0
        if cx > 0 and cx + w > row_width:
            cx, cy, row_h = 0.0, cy + row_h + gap, 0.0
        offsets.append(np.array([X_OFFSET + cx - b0[0], Y_OFFSET + cy - b0[1]]))
        cx += w + gap
        row_h = max(row_h, float(h))

    r_start = np.concatenate([[0], np.cumsum([c["reach_to"].size for c in comps])])
    s_start = np.concatenate([[0], np.cumsum(sizes)])

    def cat(key: str, shift: np.ndarray | None = None) -> np.ndarray:
        parts = []
        for i, c in enumerate(comps):
            a = c[key]
            if shift is not None:
                a = np.where(a >= 0, a + shift[i], -1)
            parts.append(a)
        return np.concatenate(parts)

    seg_to = cat("seg_to", s_start)
    reach_to = cat("reach_to", r_start)
    reach_seg = np.concatenate([c["reach_seg"] + s_start[i] for i, c in enumerate(comps)])
    reach_xy = np.concatenate([c["reach_xy"] + offsets[i] for i, c in enumerate(comps)])
    seg_xy = np.concatenate([c["seg_out"] + offsets[i] for i, c in enumerate(comps)])
    length = cat("reach_length")
    local_area = cat("reach_local_area")
    is_trib = cat("reach_is_tributary").astype(np.int8)
    trib_kind = cat("trib_kind")
    n = reach_to.size
    n_seg = seg_to.size

    # Drainage area accumulates headwaters first; elevation is integrated from the
    # outlets upstream with a slope that falls with drainage area (concave profiles).
    level = _levels(reach_to)
    order = np.argsort(level, kind="stable")
    bounds = np.searchsorted(level[order], np.arange(level.max() + 2))
    area = local_area.copy()
    for lv in range(level.max() + 1):
        rows = order[bounds[lv]:bounds[lv + 1]]
        rows = rows[reach_to[rows] >= 0]
        np.add.at(area, reach_to[rows], area[rows])
    slope = np.clip(0.03 * area ** -0.35 * cat("slope_noise"), 2e-4, 0.08)
    base = np.repeat(np.concatenate([c["base_elevation"] for c in comps]), np.diff(r_start))
    z_down = np.empty(n)
    for lv in range(level.max(), -1, -1):
        rows = order[bounds[lv]:bounds[lv + 1]]
        t = reach_to[rows]
        tt = np.maximum(t, 0)
        z_down[rows] = np.where(t >= 0, z_down[tt] + slope[tt] * length[tt], base[rows])
    elevation = z_down + 0.5 * slope * length

    mean_q = RUNOFF * area
    width = WIDTH_COEF * mean_q ** WIDTH_EXP * cat("width_noise")
    depth = DEPTH_COEF * mean_q ** DEPTH_EXP

    # Spatially autocorrelated riparian canopy and geology, with spring hot spots.
    rng_f = np.random.default_rng([p.seed, 4])
    x, y = reach_xy[:, 0], reach_xy[:, 1]
    canopy = _expit(0.7 + 1.0 * _rff_field(rng_f, x, y, 8_000.0))
    geology = _rff_field(rng_f, x, y, 15_000.0)
    spring = np.zeros(n)
    for i, c in enumerate(comps):
        r0, r1 = r_start[i], r_start[i + 1]
        lo, hi = boxes[i][0] + offsets[i], boxes[i][1] + offsets[i]
        rng_s = np.random.default_rng([p.seed, 9, i])
        km2 = float(np.prod(hi - lo + 1.0)) / 1e6
        n_spr = rng_s.poisson(km2 / 150.0 * (0.5 + float(c["spring_density"][0])))
        if n_spr:
            pts = rng_s.uniform(lo, hi, (n_spr, 2))
            d2 = ((reach_xy[r0:r1, None, :] - pts[None]) ** 2).sum(axis=2)
            spring[r0:r1] = np.exp(-d2 / (2 * 1200.0**2)).sum(axis=1)
    spring_trib = trib_kind < 0.3
    shaded_trib = (trib_kind >= 0.3) & (trib_kind < 0.6)
    canopy = np.where(shaded_trib, np.maximum(canopy, 0.92), canopy)
    shade = np.clip(canopy / (1.0 + (width / 12.0) ** 1.3), 0.0, 0.95)
    gw_share = np.clip(_expit(-0.2 + 0.9 * geology + 3.0 * spring + 2.5 * spring_trib), 0.05, 0.97)
    is_spring = ((spring > 0.5) | spring_trib).astype(np.int8)
    tau_days = RHO_CP * (depth + BED_DEPTH) / EXCHANGE_K / 86_400.0
    inertia = np.exp(-1.0 / tau_days)

    # The outlet reach of a segment is the one reach that leaves it.
    leaves = np.where(reach_to >= 0, reach_seg[np.maximum(reach_to, 0)], -1) != reach_seg
    seg_outlet = np.empty(n_seg, dtype=np.int64)
    seg_outlet[reach_seg[leaves]] = np.flatnonzero(leaves)

    rng_o = np.random.default_rng([p.seed, 5])
    seg_obs = np.zeros(n_seg, dtype=bool)
    seg_obs[rng_o.permutation(n_seg)[: int(round(seg_obs_share * n_seg))]] = True
    reach_obs = np.zeros(n, dtype=bool)
    reach_obs[rng_o.permutation(n)[: int(round(reach_obs_share * n))]] = True

    return _Network(
        seg_to=seg_to, seg_x=seg_xy[:, 0], seg_y=seg_xy[:, 1], seg_outlet_reach=seg_outlet,
        reach_to=reach_to, reach_seg=reach_seg, reach_length=length, reach_x=x, reach_y=y,
        reach_local_area=local_area, reach_area=area, reach_slope=slope, reach_elevation=elevation,
        reach_width=width, reach_depth=depth, reach_mean_q=mean_q, reach_shade=shade,
        reach_gw_share=gw_share, reach_inertia=inertia, reach_level=level,
        reach_is_tributary=is_trib, reach_is_spring=is_spring,
        seg_observed=seg_obs, reach_observed=reach_obs,
        comp_reach=r_start.astype(np.int64), comp_seg=s_start.astype(np.int64),
    )


# ---------------------------------------------------------------------------- weather


def _ar1(rng: np.random.Generator, n_series: int, n_time: int, phi: float) -> np.ndarray:
    """Unit-variance AR(1) series, started from their stationary distribution."""
    eps = rng.standard_normal((n_series, n_time))
    out = np.empty_like(eps)
    prev = rng.standard_normal(n_series)
    scale = np.sqrt(1.0 - phi**2)
    for t in range(n_time):
        prev = phi * prev + scale * eps[:, t]
        out[:, t] = prev
    return out


def _modes(seed: int, tag: int, n_time: int, wavelengths: tuple[float, float], phi: float,
           w0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Regional weather: smooth spatial modes and their daily coefficients.

    Depends on the seed and the time axis only, never on which reaches are asked
    for, so every chunk of a lazy basin sees the same weather.
    """
    rng = np.random.default_rng([seed, tag])
    k = 6
    lam = rng.uniform(*wavelengths, k - 1)
    ang = rng.uniform(0, 2 * np.pi, k - 1)
    omega = np.stack([np.cos(ang), np.sin(ang)], axis=1) * (2 * np.pi / lam)[:, None]
    phase = rng.uniform(0, 2 * np.pi, k - 1)
    weights = np.concatenate([[w0], np.full(k - 1, np.sqrt((1 - w0**2) / (k - 1)))])
    coef = _ar1(rng, k, n_time, phi)
    return omega, phase, weights, coef


def _mode_sum(x: np.ndarray, y: np.ndarray, modes: tuple[np.ndarray, ...]) -> np.ndarray:
    omega, phase, weights, coef = modes
    out = np.multiply.outer(np.full(x.size, weights[0]), coef[0])
    tmp = np.empty_like(out)
    for m in range(omega.shape[0]):
        f = weights[m + 1] * np.sqrt(2.0) * np.cos(omega[m, 0] * x + omega[m, 1] * y + phase[m])
        np.multiply(f[:, None], coef[m + 1][None, :], out=tmp)
        out += tmp
    return out


def _precip_scale() -> float:
    """Factor that makes the mean of ``(Z - z0)_+ ** shape`` for standard normal Z equal 1."""
    z = np.linspace(WET_THRESHOLD, 9.0, 20_001)
    dens = np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi)
    f = (z - WET_THRESHOLD) ** PRECIP_SHAPE * dens
    return 1.0 / float(np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(z)))


def _toa_radiation(lat_deg: np.ndarray, doy: np.ndarray) -> np.ndarray:
    """Daily mean top-of-atmosphere shortwave radiation (W m-2) on (reach, day)."""
    phi = np.deg2rad(lat_deg)[:, None]
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (284 + doy) / 365.0)[None, :]
    ecc = (1 + 0.033 * np.cos(2 * np.pi * doy / 365.0))[None, :]
    h0 = np.arccos(np.clip(-np.tan(phi) * np.tan(decl), -1.0, 1.0))
    return 1361.0 / np.pi * ecc * (h0 * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(h0))


def _iir_rows(x: np.ndarray, phi: np.ndarray | float, init: np.ndarray) -> np.ndarray:
    """First-order low-pass filter along time: ``y[t] = phi y[t-1] + (1 - phi) x[t]``.

    ``phi`` may differ per row (a scalar or one value per row); ``init`` is
    ``y[-1]``. A loop over days vectorised over rows: with thousands of rows per
    day it costs about as much as a compiled filter.
    """
    y = np.empty_like(x)
    a = np.asarray(phi, dtype=np.float64)
    b = 1.0 - a
    prev = np.asarray(init, dtype=np.float64)
    for t in range(x.shape[1]):
        prev = a * prev + b * x[:, t]
        y[:, t] = prev
    return y


def _storm_runoff(rain: np.ndarray) -> np.ndarray:
    """Storm runoff relative to its mean: rain through a fast and a slow linear reservoir.

    Both reservoirs start from the long-term mean so the first weeks are no drought.
    """
    mean = PRECIP_MEAN * 0.75
    k_fast, k_slow = np.exp(-1.0 / FAST_RECESSION_DAYS), np.exp(-1.0 / SLOW_RECESSION_DAYS)
    fast = np.full(rain.shape[0], mean)
    slow = fast.copy()
    out = np.empty_like(rain)
    for t in range(rain.shape[1]):
        r = rain[:, t]
        fast = k_fast * fast + (1.0 - k_fast) * r
        slow = k_slow * slow + (1.0 - k_slow) * r
        out[:, t] = (FAST_SHARE * fast + (1.0 - FAST_SHARE) * slow) / mean
    return out


def _triangular(rng: np.random.Generator, out: np.ndarray) -> None:
    """Fill ``out`` with zero-mean unit-variance triangular noise (cheaper than normal)."""
    n_rows = out.shape[0]
    for i in range(0, n_rows, 256):
        u = rng.random((min(256, n_rows - i), out.shape[1]), dtype=np.float32)
        u += rng.random(u.shape, dtype=np.float32)
        u -= 1.0
        out[i:i + u.shape[0]] = u
    out *= np.sqrt(6.0)


def _gaps(rng: np.random.Generator, doy: np.ndarray) -> np.ndarray:
    """Days a sensor reports: late starts, early ends, seasonal deployments, outages."""
    n_time = doy.size
    ok = np.ones(n_time, dtype=bool)
    u = rng.random(3)
    if u[0] < 0.5:
        ok[: int(rng.integers(0, max(1, int(0.6 * n_time))))] = False
    if u[1] < 0.25:
        ok[int(rng.integers(int(0.6 * n_time), n_time)) if n_time > 1 else n_time:] = False
    if u[2] < 0.35:
        on, off = int(rng.integers(80, 121)), int(rng.integers(290, 331))
        ok &= (doy >= on) & (doy <= off)
    n_out = int(rng.poisson(1.2 * n_time / YEAR))
    starts = rng.integers(0, n_time, n_out)
    lengths = 7 + rng.exponential(21.0, n_out).astype(np.int64)
    for s, ln in zip(starts, lengths):
        ok[s:s + ln] = False
    ok &= rng.random(n_time) >= 0.01
    if not ok.any():
        s = int(rng.integers(0, max(1, n_time - 30)))
        ok[s:s + 30] = True
    return ok


def _row_blocks(starts: np.ndarray, n: int, size: int) -> list[tuple[int, int]]:
    """Cut ``0:n`` at some of ``starts`` into runs of about ``size`` rows."""
    blocks = []
    b0 = 0
    for s in list(starts[1:]) + [n]:
        if s - b0 >= size or s == n:
            if s > b0:
                blocks.append((b0, int(s)))
            b0 = int(s)
    return blocks


# Rows handled at once: (rows x 12 years) float64 temporaries stay near 20 MB, small
# enough for the allocator to reuse them instead of asking the system for fresh pages.
BLOCK_ROWS = 512


def _simulate(net: _Network, comp_ids: np.ndarray, seed: int, time_ns: np.ndarray,
              obs_noise: float) -> dict[str, np.ndarray]:
    """Forcings, heat budget and observations of whole components, on (node, time)."""
    times = pd.DatetimeIndex(time_ns)
    doy = np.asarray(times.day_of_year, dtype=np.float64)
    n_time = doy.size
    n = net.reach_to.size
    n_seg = net.seg_to.size
    if np.any(np.diff(net.reach_seg) < 0):  # pragma: no cover - the builder groups them
        raise AssertionError("reaches must come grouped by segment")
    seg_starts = np.searchsorted(net.reach_seg, np.arange(n_seg))
    seg_weight = net.reach_length / np.bincount(net.reach_seg, weights=net.reach_length,
                                                minlength=n_seg)[net.reach_seg]

    # Reach-scale noise, drawn per component from its own stream.
    air_noise = np.empty((n, n_time), dtype=np.float32)
    wet_noise = np.empty((n, n_time), dtype=np.float32)
    for i, c in enumerate(comp_ids):
        rng = np.random.default_rng([seed, 2, int(c)])
        r0, r1 = net.comp_reach[i], net.comp_reach[i + 1]
        _triangular(rng, air_noise[r0:r1])
        _triangular(rng, wet_noise[r0:r1])

    season = np.cos(2 * np.pi * (doy - AIR_PEAK_DOY) / YEAR)
    syn_sd = SYNOPTIC_SD + SYNOPTIC_SD_SEASONAL * np.cos(2 * np.pi * (doy - 15) / YEAR)
    air_modes = _modes(seed, 7, n_time, (300e3, 1500e3), SYNOPTIC_AR, 0.8)
    wet_modes = _modes(seed, 8, n_time, (150e3, 800e3), PRECIP_AR, 0.7)
    efficiency = 0.75 + 0.25 * np.cos(2 * np.pi * (doy - 45) / YEAR)
    days, day_index = np.unique(doy, return_inverse=True)
    day_index = day_index.ravel()
    climate = _climate(net)
    precip_scale = PRECIP_MEAN * _precip_scale()

    out: dict[str, np.ndarray] = {}
    for name in ("air_temp", "swrad", "precip"):
        out[f"reach_{name}"] = np.empty((n, n_time), dtype=np.float32)
        out[f"seg_{name}"] = np.empty((n_seg, n_time), dtype=np.float32)
    storm = np.empty((n, n_time))
    equil = np.empty((n, n_time))

    # Weather, storm runoff and equilibrium temperature: independent per reach, so
    # done in blocks of whole segments; the segment means are taken block by block.
    for r0, r1 in _row_blocks(seg_starts, n, BLOCK_ROWS):
        rows = slice(r0, r1)
        s0, s1 = int(net.reach_seg[r0]), int(net.reach_seg[r1 - 1]) + 1
        local_starts = seg_starts[s0:s1] - r0
        x, y = net.reach_x[rows], net.reach_y[rows]

        def store(name: str, a: np.ndarray, rows: slice = rows, segs: slice = slice(s0, s1),
                  starts: np.ndarray = local_starts) -> None:
            out[f"reach_{name}"][rows] = a
            out[f"seg_{name}"][segs] = np.add.reduceat(a * seg_weight[rows, None], starts, axis=0)

        air = _mode_sum(x, y, air_modes)
        air *= syn_sd[None, :]
        air += climate[rows, None]
        air += AIR_AMPLITUDE * season[None, :]
        air += LOCAL_AIR_SD * air_noise[rows]
        store("air_temp", air)

        # Latent weather field: rain where it is high, cloud grows with it.
        wet = _mode_sum(x, y, wet_modes)
        wet *= np.sqrt(1.0 - PRECIP_LOCAL**2)
        wet += PRECIP_LOCAL * wet_noise[rows]
        excess = np.maximum(wet - WET_THRESHOLD, 0.0)
        precip = precip_scale * excess * np.sqrt(excess)
        store("precip", precip)
        # Storm runoff: precipitation, less in the growing season, through two reservoirs.
        precip *= efficiency[None, :]
        storm[rows] = _storm_runoff(precip)

        cloud = wet
        cloud *= CLOUD_SLOPE
        cloud += CLOUD_AT_ZERO
        np.clip(cloud, 0.05, 1.0, out=cloud)
        lat = y / METRES_PER_DEGREE
        swrad = np.take(CLEAR_SKY_TRANSMISSION * _toa_radiation(lat, days), day_index, axis=1)
        cloud *= -CLOUD_DIMMING
        cloud += 1.0
        swrad *= cloud
        store("swrad", swrad)

        # Equilibrium temperature, with the water column's and bed's thermal inertia.
        swrad *= (1 - ALBEDO) * (1 - net.reach_shade[rows, None]) / EXCHANGE_K
        swrad += air
        swrad += EQUILIBRIUM_OFFSET
        equil[rows] = _iir_rows(swrad, net.reach_inertia[rows], swrad[:, 0])
    del air_noise, wet_noise

    baseflow = 1.0 + BASEFLOW_SEASONAL * np.cos(2 * np.pi * (doy - 80) / YEAR)
    gw_cycle = GW_AMPLITUDE * np.cos(2 * np.pi * (doy - AIR_PEAK_DOY - GW_LAG_DAYS) / YEAR)
    gw_temp_mean = climate + GW_OFFSET
    g = net.reach_gw_share
    q_gw_static = RUNOFF * net.reach_local_area * g
    q_sf_static = RUNOFF * net.reach_local_area * (1 - g)
    air32 = out["reach_air_temp"]

    # Upstream reaches grouped by the level of, then the position of, the reach they
    # feed: at each level the groups line up with that level's reaches, in order.
    to, level = net.reach_to, net.reach_level
    feeders = np.flatnonzero(to >= 0)
    feeders = feeders[np.lexsort((feeders, to[feeders], level[to[feeders]]))]
    feed_bounds = np.searchsorted(level[to[feeders]], np.arange(level.max() + 2))
    discharge = np.empty((n, n_time))
    heat = np.empty((n, n_time))
    temp = np.empty((n, n_time))
    order = np.argsort(level, kind="stable")
    bounds = np.searchsorted(level[order], np.arange(level.max() + 2))
    for lv in range(level.max() + 1):
        level_rows = order[bounds[lv]:bounds[lv + 1]]
        level_feeders = feeders[feed_bounds[lv]:feed_bounds[lv + 1]]
        into_all = to[level_feeders]
        for b0 in range(0, level_rows.size, BLOCK_ROWS):
            sel = level_rows[b0:b0 + BLOCK_ROWS]
            q_gw = q_gw_static[sel, None] * baseflow[None, :]
            q_sf = q_sf_static[sel, None] * storm[sel]
            h = q_gw * groundwater_temperature(gw_temp_mean[sel], gw_cycle)
            h += q_sf * np.maximum(air32[sel], 0.0)
            q = q_gw
            q += q_sf
            del q_sf
            if lv:
                f0, f1 = np.searchsorted(into_all, [sel[0], sel[-1] + 1])
                up = level_feeders[f0:f1]
                into = into_all[f0:f1]
                starts = np.flatnonzero(np.concatenate([[True], into[1:] != into[:-1]]))
                q += np.add.reduceat(discharge[up], starts, axis=0)
                h += np.add.reduceat(heat[up], starts, axis=0)
            t_in = h
            t_in /= q
            # exchange over the travel time: K/(rho cp D) * L/u = K W L / (rho cp Q)
            ratio = np.clip(q / net.reach_mean_q[sel, None], 0.02, 50.0)
            decay = ratio ** WIDTH_STATION_EXP
            decay *= -EXCHANGE_K * net.reach_width[sel, None] * net.reach_length[sel, None] / RHO_CP
            decay /= q
            np.exp(decay, out=decay)
            eq = equil[sel]
            t_in -= eq
            t_in *= decay
            t_in += eq
            t_out = np.maximum(t_in, 0.0, out=t_in)
            discharge[sel] = q
            temp[sel] = t_out
            t_out *= q
            heat[sel] = t_out
    del heat, equil, storm

    out["seg_discharge"] = discharge[net.seg_outlet_reach].astype(np.float32)
    out["reach_discharge"] = discharge.astype(np.float32)
    del discharge
    seg_true = temp[net.seg_outlet_reach]
    out["seg_temp_true"] = seg_true.astype(np.float32)
    out["reach_temp_true"] = temp.astype(np.float32)

    # Observations: per component stream, sites in order, gaps then noise per site.
    seg_obs = np.full((n_seg, n_time), np.nan, dtype=np.float32)
    reach_obs = np.full((n, n_time), np.nan, dtype=np.float32)
    for i, c in enumerate(comp_ids):
        rng = np.random.default_rng([seed, 3, int(c)])
        for target, truth, observed, lo, hi in (
            (seg_obs, seg_true, net.seg_observed, net.comp_seg[i], net.comp_seg[i + 1]),
            (reach_obs, temp, net.reach_observed, net.comp_reach[i], net.comp_reach[i + 1]),
        ):
            for site in np.flatnonzero(observed[lo:hi]) + lo:
                ok = _gaps(rng, doy)
                noisy = truth[site] + obs_noise * rng.standard_normal(n_time)
                target[site, ok] = noisy[ok]
    out["seg_temp"] = seg_obs
    out["reach_temp"] = reach_obs
    return out


# ----------------------------------------------------------------------------- output

#: Forcings: long name, units and CF standard name (all daily means; water temperature
#: is given none, as ``sea_water_temperature`` would be wrong for a river).
_DYNAMIC: dict[str, tuple[str, str, str]] = {
    "air_temp": ("daily mean air temperature", "degC", "air_temperature"),
    "swrad": ("daily mean incoming shortwave radiation", "W m-2",
              "surface_downwelling_shortwave_flux_in_air"),
    "precip": ("precipitation", "mm d-1", "lwe_precipitation_rate"),
    "discharge": ("discharge", "m3 s-1", "water_volume_transport_in_river_channel"),
}


def _version() -> str:
    try:
        return version("xmsgl")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _group_components(comp_reach: np.ndarray, chunks: int) -> list[tuple[int, int]]:
    """Consecutive runs of whole components with about ``chunks`` reaches each."""
    sizes = np.diff(comp_reach)
    groups = []
    c0, acc = 0, 0
    for c, s in enumerate(sizes):
        if acc and acc + s > chunks:
            groups.append((c0, c))
            c0, acc = c, 0
        acc += int(s)
    groups.append((c0, sizes.size))
    return groups


def _pick(result: dict[str, np.ndarray], name: str) -> np.ndarray:
    return result[name]


def groundwater_temperature(mean: np.ndarray, cycle: np.ndarray) -> np.ndarray:
    """Groundwater temperature (reach, day) from each reach's mean (near its mean
    annual air) and the seasonal ``cycle`` of the days, never below 0 degC: it is
    liquid where the mean air of a high reach is not (a basin of 8 km reaches rises
    to 2,350 m, about -10 degC a year, and fed its streams groundwater below 0).

    >>> groundwater_temperature(np.array([-10.0, 9.0]), np.array([-1.5, 1.5])).tolist()
    [[0.0, 0.0], [7.5, 10.5]]
    """
    return np.maximum(mean[:, None] + cycle[None, :], 0.0)


def synthetic_basin(
    n_segments: int = 450,
    start: str | pd.Timestamp = "2007-10-01",
    end: str | pd.Timestamp = "2019-09-30",
    seed: int = 0,
    *,
    n_outlets: int | None = None,
    reaches_per_segment: float = 5.0,
    tributaries_per_segment: float = 1.6,
    reach_length: float = 1000.0,
    seg_obs_share: float = 0.6,
    reach_obs_share: float = 0.02,
    obs_noise: float = 0.25,
    chunks: int | None = None,
) -> xr.Dataset:
    """Generate a synthetic two-scale river basin with a physically based temperature.

    A random dendritic network of coarse segments drains to ``n_outlets`` outlets.
    Each segment is a chain of fine reaches (about ``reach_length`` long) plus
    fine-only tributaries that join inside the segment and that the coarse network
    cannot see; some are spring-fed or shaded, so fine temperature varies within a
    segment. Daily weather, discharge and water temperature come from a heat budget
    over the fine network (see ``docs/synthetic.md``); the coarse forcings are
    length-weighted means of each segment's reaches and the coarse truth is the
    temperature of the segment's outlet reach. Observations are the truth plus sensor
    noise at a share of sites, with the gaps of real records.

    The defaults resemble the Delaware River Basin: about 450 segments in 6 drainage
    basins, about 3,300 reaches, water years 2008-2019.

    Parameters
    ----------
    n_segments : int, default 450
        Number of coarse segments.
    start, end : str or pandas.Timestamp, default "2007-10-01", "2019-09-30"
        First and last day (inclusive) of the daily time axis.
    seed : int, default 0
        Seed of every random draw; the same seed gives the same dataset.
    n_outlets : int, optional
        Number of independent drainage basins. Default: one per 75 segments
        (at least 1).
    reaches_per_segment : float, default 5.0
        Mean number of reaches in a segment's main chain (at least 1 each).
    tributaries_per_segment : float, default 1.6
        Mean number of fine-only tributaries per segment (each 1 or 2 reaches).
    reach_length : float, default 1000.0
        Mean reach length in m. The air cools with elevation, which grows with slope
        times path length: a basin whose highest reaches would average below -25 degC
        (:data:`COLDEST_CLIMATE`) is refused with a :class:`ParameterError`.
    seg_obs_share, reach_obs_share : float, default 0.6 and 0.02
        Share of segments and of reaches that carry a temperature sensor.
    obs_noise : float, default 0.25
        Standard deviation of sensor noise in degC, at most 2 (beyond that the noisy
        readings leave the range that :func:`xmsgl.validate` accepts). From about 1.5
        degC a few readings may fall below -5 degC, and validate warns of them.
    chunks : int, optional
        Return dask-backed (node, time) variables built about ``chunks`` reaches at a
        time (whole drainage basins per chunk). The topology and static attributes are
        always in memory. Values are identical to those of an in-memory run. A chunk
        makes every variable at once, so compute the variables you need together
        (``ds.compute()`` or ``dask.compute``): computed one by one, or read by a lazy
        ``downscale`` (whose blocks read each variable on its own, ``docs/pangeo.md``),
        each chunk is simulated once per variable read. ``chunks=5000`` keeps a 12-year
        chunk near 1.5 GB.

    Returns
    -------
    xarray.Dataset
        A dataset in the xmsgl convention (see :mod:`xmsgl.convention`), with
        dimensions ``time``, ``seg`` and ``reach`` and these variables:

        * topology and geometry: ``seg_to``, ``seg_length``, ``reach_to``,
          ``reach_length``, ``reach_seg``, ``seg_x``/``seg_y`` (the segment's outlet
          point), ``reach_x``/``reach_y`` (the reach's midpoint), ``seg_elevation``,
          ``reach_elevation``;
        * static inputs: ``reach_slope``, ``reach_width``, ``reach_depth``,
          ``reach_shade``, ``reach_gw_share``, ``reach_area`` and the ``seg_*``
          length-weighted means (``seg_area`` is the drainage area at the outlet);
        * forcings on (node, time): ``*_air_temp``, ``*_swrad``, ``*_precip``,
          ``*_discharge`` (``seg_discharge`` is the outflow of the segment);
        * targets ``seg_temp`` and ``reach_temp`` (NaN where unobserved) and the
          truth ``seg_temp_true`` and ``reach_temp_true``;
        * diagnostic integer flags ``reach_is_tributary``, ``reach_is_spring`` and
          ``seg_outlet_reach`` (id of the segment's outlet reach), not model inputs.

    Raises
    ------
    xmsgl.ParameterError
        For a parameter out of range, naming it and its valid range (at most
        :data:`MAX_SEGMENTS` segments); for an in-memory basin (``chunks=None``)
        larger than this machine's memory.
    xmsgl.TimeError
        When ``end`` is before ``start`` or either is not a date.

    Examples
    --------
    >>> import xmsgl
    >>> ds = xmsgl.datasets.synthetic_basin(n_segments=20, start="2001-01-01", end="2001-12-31")
    >>> ds.sizes["seg"], ds.sizes["time"]
    (20, 365)
    >>> bool((ds.reach_temp_true >= 0).all())
    True
    >>> lazy = xmsgl.datasets.synthetic_basin(n_segments=20, start="2001-01-01",
    ...                                       end="2001-12-31", chunks=50)
    >>> bool((lazy.reach_temp_true.compute() == ds.reach_temp_true).all())
    True
    """
    n_segments = _check_int("n_segments", n_segments, 1, "ask for at least one segment")
    if n_segments > MAX_SEGMENTS:
        raise ParameterError(f"'n_segments' must be at most {MAX_SEGMENTS:,} (about 7 million "
                             f"reaches), got {n_segments:,}; ask for fewer segments")
    seed = _check_int("seed", seed, 0, "use a non-negative integer seed")
    if n_outlets is None:
        n_outlets = max(1, int(round(n_segments / SEGMENTS_PER_OUTLET)))
    n_outlets = _check_int("n_outlets", n_outlets, 1, "ask for at least one outlet")
    if n_outlets > n_segments:
        raise ParameterError(
            f"'n_outlets' ({n_outlets}) exceeds 'n_segments' ({n_segments}); every basin needs "
            f"a segment: lower 'n_outlets' or raise 'n_segments'"
        )
    p = _Params(
        seed=seed,
        reaches_per_segment=_check_real("reaches_per_segment", reaches_per_segment, 1.0, 1e3,
                                        "use a mean chain length of at least 1 reach"),
        tributaries_per_segment=_check_real("tributaries_per_segment", tributaries_per_segment,
                                            0.0, 1e3, "use 0 for no fine-only tributaries"),
        reach_length=_check_real("reach_length", reach_length, 0.0, 1e6,
                                 "give the mean reach length in m, e.g. 1000.0", low_open=True),
        obs_noise=_check_real("obs_noise", obs_noise, 0.0, 2.0,
                              "give the sensor noise standard deviation in degC, e.g. 0.25 "
                              "(stream thermistors read within 0.1-0.5 degC; a noise of 5 degC "
                              "made readings that validate refuses)"),
    )
    seg_obs_share = _check_real("seg_obs_share", seg_obs_share, 0.0, 1.0,
                                "give a share between 0 and 1, e.g. 0.6")
    reach_obs_share = _check_real("reach_obs_share", reach_obs_share, 0.0, 1.0,
                                  "give a share between 0 and 1, e.g. 0.02")
    if chunks is not None:
        chunks = _check_int("chunks", chunks, 1, "give the number of reaches per chunk, e.g. 5000")
    times = _time_axis(start, end)
    time_ns = times.values.astype("datetime64[ns]")

    net = _build_network(n_segments, n_outlets, p, seg_obs_share, reach_obs_share)
    _check_climate(net, p)
    n_reach, n_seg, n_time = net.reach_to.size, net.seg_to.size, times.size
    if chunks is None:
        _check_fits_in_memory(n_reach, n_seg, n_time)
    n_comp = net.comp_reach.size - 1

    dyn_names = [f"{s}_{v}" for s in ("seg", "reach") for v in
                 (*_DYNAMIC, "temp_true", "temp")]
    dynamic: dict[str, Any]
    if chunks is None:
        dynamic = _simulate(net, np.arange(n_comp), seed, time_ns, p.obs_noise)
    else:
        import dask
        import dask.array as dsa

        parts: dict[str, list[Any]] = {name: [] for name in dyn_names}
        # Everything the values depend on. Group g covers different components at
        # different chunk sizes, so the chunking and each group's component range
        # are part of the keys too: basins that differ only in `chunks` must not
        # share keys, or computing them together mixes their blocks.
        token = dask.base.tokenize(n_segments, n_outlets, p, seg_obs_share, reach_obs_share,
                                   time_ns[0], n_time, chunks)
        for c0, c1 in _group_components(net.comp_reach, chunks):
            sub = net.part(c0, c1)
            res = dask.delayed(_simulate, pure=True)(
                sub, np.arange(c0, c1), seed, time_ns, p.obs_noise,
                dask_key_name=f"synthetic-basin-{token}-{c0}-{c1}",
            )
            for name in dyn_names:
                rows = sub.seg_to.size if name.startswith("seg_") else sub.reach_to.size
                piece = dask.delayed(_pick, pure=True)(
                    res, name, dask_key_name=f"{name}-{token}-{c0}-{c1}")
                parts[name].append(dsa.from_delayed(piece, (rows, n_time), dtype=np.float32))
        dynamic = {name: dsa.concatenate(v, axis=0) for name, v in parts.items()}

    seg_ids = np.arange(1, n_seg + 1, dtype=np.int64)
    reach_ids = np.arange(1, n_reach + 1, dtype=np.int64)
    seg_to_id = np.where(net.seg_to >= 0, net.seg_to + 1, OUTLET).astype(np.int64)
    reach_to_id = np.where(net.reach_to >= 0, net.reach_to + 1, OUTLET).astype(np.int64)
    seg_length = np.bincount(net.reach_seg, weights=net.reach_length * (net.reach_is_tributary == 0),
                             minlength=n_seg)
    # Segment statics are length-weighted means of all the segment's reaches.
    lw = net.reach_length / np.bincount(net.reach_seg, weights=net.reach_length, minlength=n_seg)[net.reach_seg]

    def seg_mean(a: np.ndarray) -> np.ndarray:
        return np.bincount(net.reach_seg, weights=a * lw, minlength=n_seg)

    S, R, T = ("seg",), ("reach",), ("time",)
    data: dict[str, tuple[tuple[str, ...], Any, dict[str, str]]] = {
        "seg_to": (S, seg_to_id, {"long_name": f"id of the downstream segment ({OUTLET} at outlets)"}),
        "seg_length": (S, seg_length, {"long_name": "length of the segment's main chain", "units": "m"}),
        "reach_to": (R, reach_to_id, {"long_name": f"id of the downstream reach ({OUTLET} at outlets)"}),
        "reach_length": (R, net.reach_length, {"long_name": "reach length", "units": "m"}),
        "reach_seg": (R, (net.reach_seg + 1).astype(np.int64), {"long_name": "id of the reach's segment"}),
        "seg_x": (S, net.seg_x, {"long_name": "easting of the segment's outlet point", "units": "m"}),
        "seg_y": (S, net.seg_y, {"long_name": "northing of the segment's outlet point", "units": "m"}),
        "reach_x": (R, net.reach_x, {"long_name": "easting of the reach midpoint", "units": "m"}),
        "reach_y": (R, net.reach_y, {"long_name": "northing of the reach midpoint", "units": "m"}),
        "reach_elevation": (R, net.reach_elevation, {"long_name": "elevation of the reach midpoint", "units": "m"}),
        "seg_elevation": (S, seg_mean(net.reach_elevation),
                          {"long_name": "length-weighted mean elevation of the segment's reaches", "units": "m"}),
    }
    statics = {
        "slope": ("channel slope", "1"),
        "width": ("channel width at mean discharge", "m"),
        "depth": ("channel depth at mean discharge", "m"),
        "shade": ("share of shortwave radiation blocked by riparian canopy", "1"),
        "gw_share": ("groundwater share of local inflow", "1"),
    }
    for key, (long_name, units) in statics.items():
        a = getattr(net, f"reach_{key}")
        data[f"reach_{key}"] = (R, a, {"long_name": long_name, "units": units})
        data[f"seg_{key}"] = (S, seg_mean(a), {"long_name": f"length-weighted mean {long_name}",
                                               "units": units})
    data["reach_area"] = (R, net.reach_area, {"long_name": "drainage area at the reach outlet", "units": "km2"})
    data["seg_area"] = (S, net.reach_area[net.seg_outlet_reach],
                        {"long_name": "drainage area at the segment outlet", "units": "km2"})
    for key, (long_name, units, standard_name) in _DYNAMIC.items():
        where = "at the segment outlet" if key == "discharge" else "length-weighted over the segment"
        cf = {"standard_name": standard_name, "cell_methods": "time: mean"}
        data[f"reach_{key}"] = (R + T, dynamic[f"reach_{key}"], {"long_name": long_name, "units": units, **cf})
        data[f"seg_{key}"] = (S + T, dynamic[f"seg_{key}"], {"long_name": f"{long_name}, {where}",
                                                             "units": units, **cf})
    data["seg_temp"] = (S + T, dynamic["seg_temp"],
                        {"long_name": "observed water temperature at the segment outlet", "units": "degC"})
    data["reach_temp"] = (R + T, dynamic["reach_temp"],
                          {"long_name": "observed water temperature of the reach", "units": "degC"})
    data["seg_temp_true"] = (S + T, dynamic["seg_temp_true"],
                             {"long_name": "true water temperature at the segment outlet", "units": "degC"})
    data["reach_temp_true"] = (R + T, dynamic["reach_temp_true"],
                               {"long_name": "true water temperature at the reach outlet", "units": "degC"})
    data["reach_is_tributary"] = (R, net.reach_is_tributary, {
        "long_name": "1 for fine-only tributary reaches, 0 on the segment's main chain", "units": "1"})
    data["reach_is_spring"] = (R, net.reach_is_spring, {
        "long_name": "1 for spring-fed reaches", "units": "1"})
    data["seg_outlet_reach"] = (S, (net.seg_outlet_reach + 1).astype(np.int64), {
        "long_name": "id of the segment's outlet reach"})

    params = {
        "n_segments": n_segments, "start": str(times[0].date()), "end": str(times[-1].date()),
        "seed": seed, "n_outlets": n_outlets, "reaches_per_segment": p.reaches_per_segment,
        "tributaries_per_segment": p.tributaries_per_segment, "reach_length": p.reach_length,
        "seg_obs_share": seg_obs_share, "reach_obs_share": reach_obs_share,
        "obs_noise": p.obs_noise, "chunks": chunks,
    }
    call = ", ".join(f"{k}={v!r}" for k, v in params.items())
    # As every later step's line (downscale, evaluate) stamps itself.
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC:")
    attrs = {
        "title": "xmsgl synthetic river basin",
        "Conventions": CF_CONVENTIONS,
        "source": "xmsgl.datasets.synthetic_basin (physically based heat budget, see docs/synthetic.md)",
        "generator_parameters": json.dumps(params),
        "seed": seed,
        "history": f"{stamp} xmsgl {_version()} xmsgl.datasets.synthetic_basin({call})",
    }
    return xr.Dataset(
        data,
        coords={"time": time_ns, "seg": seg_ids, "reach": reach_ids},
        attrs=attrs,
    )
