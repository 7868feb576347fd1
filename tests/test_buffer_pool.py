"""The recurrence's pool of large reusable CPU buffers."""

from __future__ import annotations

import mmap

import pytest
import torch

from xmsgl.nn.rgrn import _BlockPool


@pytest.mark.parametrize("map_bytes", [0, 1 << 40])
def test_pool_reuses_free_blocks_and_never_hands_out_one_in_use(
        monkeypatch: pytest.MonkeyPatch, map_bytes: int) -> None:
    # New blocks as memory maps (every size) or bytearrays (every size).
    monkeypatch.setattr(_BlockPool, "map_bytes", map_bytes)
    pool = _BlockPool()
    like = torch.zeros(1)
    shape = (3, pool.min_bytes // 4)  # three times the smallest pooled size
    a = pool.empty(shape, like)
    assert a.shape == shape and a.dtype == torch.float32
    a.fill_(1.5)
    b = pool.empty(shape, like)  # a is still in use: a new block
    assert a.data_ptr() != b.data_ptr() and len(pool.blocks) == 2
    assert all(isinstance(blk, mmap.mmap if map_bytes == 0 else bytearray) for blk in pool.blocks)
    b.fill_(-2.0)
    assert float(a.min()) == float(a.max()) == 1.5
    ptr = a.data_ptr()
    del a
    c = pool.empty(shape, like)  # a's block is free again: reused
    assert c.data_ptr() == ptr and len(pool.blocks) == 2
    # A much smaller request does not take (and waste) a large free block.
    del c
    small = pool.empty((pool.min_bytes // 4,), like)
    assert small.data_ptr() != ptr and len(pool.blocks) == 3
    # Only blocks no tensor views are given back.
    freed = pool.release()
    assert freed == 3 * pool.min_bytes and len(pool.blocks) == 2
    assert float(b.max()) == -2.0 and float(small.abs().max()) == 0.0
    del b, small
    assert pool.release() == 4 * pool.min_bytes and pool.blocks == []


def test_small_requests_bypass_the_pool() -> None:
    pool = _BlockPool()
    t = pool.empty((10, 10), torch.zeros(1, dtype=torch.float64))
    assert t.dtype == torch.float64 and t.shape == (10, 10) and pool.blocks == []
