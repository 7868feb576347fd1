"""Networks as real tables deliver them: ids stored as floats or as pandas' nullable
integers, outlets marked -1, pointers that close a cycle."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xmsgl
from xmsgl.convention import hops_to_outlet, topology_arrays
from xmsgl.exceptions import SchemaError, TopologyError


def _chain(ids: list[int], to: list[int], dtype: type) -> xr.Dataset:
    """One segment of three reaches, a -> b -> c -> outlet, with ``reach_to`` as ``dtype``."""
    return xr.Dataset(
        {"seg_to": ("seg", [0]), "seg_length": ("seg", [3000.0], {"units": "m"}),
         "reach_to": ("reach", np.array(to, dtype=dtype)),
         "reach_length": ("reach", [1000.0] * 3, {"units": "m"}), "reach_seg": ("reach", [1, 1, 1])},
        coords={"seg": [1], "reach": ids})


@pytest.mark.parametrize(("dtype", "base"), [(np.float32, 2**24), (np.float64, 2**53)])
def test_float_pointers_that_cannot_hold_the_ids_are_refused(dtype: type, base: int) -> None:
    # b = base + 1 is stored as base, an existing id: reach a skipped b without a word.
    a, b, c = base + 4, base + 1, base
    ds = _chain([a, b, c], [b, c, 0], dtype)
    for call in (topology_arrays, lambda d: d.msgl.validate(), lambda d: d.msgl.graphs()):
        with pytest.raises(SchemaError, match=rf"holds ids as {np.dtype(dtype).name}.*exactly only "
                                              rf"up to {base:,}: pointers \[{base}\] may stand for "
                                              r"several.*store the ids as int64"):
            call(ds)
    # Float pointers to ids the float holds exactly are read as before, large ids
    # included where every pointer is exactly one id.
    small = _chain([3, 2, 1], [2, 1, 0], dtype)
    assert topology_arrays(small).reach_to.tolist() == [2, 1, 0]
    even = _chain([base + 8, base + 4, base + 2], [base + 4, base + 2, 0], dtype)
    assert topology_arrays(even).reach_to.tolist() == [base + 4, base + 2, 0]
    # to_convention, which turns float pointers into integers, refuses them too.
    with pytest.raises(SchemaError, match="exactly only up to"):
        xmsgl.to_convention(ds.assign(reach_to=ds["reach_to"].where(ds["reach_to"] > 0)), outlet=np.nan)


def test_nullable_integer_columns_are_read_as_integers() -> None:
    # Tables read with dtype_backend='numpy_nullable' keep pandas' Int64 in xarray;
    # np.issubdtype raised a bare TypeError on it.
    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2001-01-01", end="2001-03-31", seed=1,
                                        reach_obs_share=0.3)
    nullable = ds.copy()
    nullable["reach_seg"] = ("reach", pd.array(ds["reach_seg"].values, dtype="Int64"))
    nullable["reach_flag"] = ("reach", pd.array(np.arange(ds.sizes["reach"]) % 2, dtype="Int64"))
    nullable = nullable.assign_coords(reach=pd.Index(pd.array(ds["reach"].values, dtype="Int64")))
    out = nullable.msgl.validate()
    assert out["reach_seg"].dtype == np.int64 and out["reach"].dtype == np.int64
    assert xmsgl.to_convention(nullable)["reach"].dtype == np.int64
    # Outlets as <NA>: replaced exactly, ids above 2**53 included (float64 rounds them).
    big = 2**60
    table = ds.assign_coords(reach=ds["reach"].values + big)
    to = ds["reach_to"].values
    table["reach_to"] = ("reach", pd.array([None if t == 0 else int(t) + big for t in to], dtype="Int64"))
    conv = xmsgl.to_convention(table, outlet=np.nan)
    assert conv["reach_to"].dtype == np.int64
    assert conv["reach_to"].values.tolist() == [0 if t == 0 else int(t) + big for t in to]
    conv.msgl.validate()


def test_ids_and_values_of_the_other_byte_order_are_read_as_native(half_year_basin, half_year_msgl) -> None:
    # Big-endian ids (as some binary readers give them) stopped validate and downscale
    # with pandas' bare ValueError "Big-endian buffer not supported".
    ds = half_year_basin
    swapped = ds.assign_coords(reach=ds["reach"].values.astype(">i8"), seg=ds["seg"].values.astype(">u4"))
    swapped["reach_to"] = swapped["reach_to"].astype(">i8")
    swapped["reach_air_temp"] = swapped["reach_air_temp"].astype(">f8")
    out = swapped.msgl.validate()
    assert out["reach"].dtype.isnative and out["seg"].dtype.isnative and out["reach_to"].dtype.isnative
    assert out["reach_air_temp"].dtype.isnative
    np.testing.assert_array_equal(out["reach"].values, ds["reach"].values)
    for data in (swapped, swapped.chunk({"reach": 20})):
        np.testing.assert_array_equal(data.msgl.downscale(half_year_msgl).values,
                                      ds.msgl.downscale(half_year_msgl).values)


def test_an_outlet_marked_minus_one_gets_the_conversion_that_reads_it() -> None:
    ds = xmsgl.datasets.synthetic_basin(n_segments=4, start="2001-01-01", end="2001-01-31", seed=1)
    marked = ds.assign(seg_to=ds["seg_to"].where(ds["seg_to"] != 0, -1))
    with pytest.raises(TopologyError, match=r"-1 looks like an outlet marker: convert it with "
                                            r"xmsgl.to_convention\(ds, outlet=-1\)"):
        marked.msgl.validate()
    xmsgl.to_convention(marked, outlet=-1).msgl.validate()
    # reach_seg has no outlets: its fix does not mention them.
    text = ds.assign(reach_seg=ds["reach_seg"].astype(str))
    with pytest.raises(SchemaError, match=r"astype\('int64'\)$"):
        text.msgl.validate()
    objects = ds.assign_coords(reach=np.array(ds["reach"].values.tolist(), dtype=object))
    with pytest.raises(SchemaError, match="whole numbers held as Python objects"):
        objects.msgl.validate()


def test_hops_to_outlet_refuses_a_cycle_instead_of_running_forever() -> None:
    with pytest.raises(TopologyError, match="close a cycle"):
        hops_to_outlet(np.array([1, 0, -1]))
    chain = np.arange(1, 1001)
    chain[-1] = -1
    assert hops_to_outlet(chain)[0] == 999
