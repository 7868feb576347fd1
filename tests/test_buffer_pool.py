"""The recurrence's pool of large reusable CPU buffers."""

from __future__ import annotations

import mmap

import pytest
import torch

from xmsgl.nn.rgrn import _BlockPool


def _no_maps(*args: object, **kwargs: object) -> mmap.mmap:
    raise OSError("no anonymous maps here")


@pytest.mark.parametrize("mode", ["filled", "touched-on-write", "no-maps"])
def test_pool_reuses_free_blocks_and_never_hands_out_one_in_use(
        monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    # New blocks as memory maps filled when made (every size), maps touched by
    # their first write (every size), or bytearrays where no map can be made.
    import xmsgl.nn.rgrn as rgrn

    monkeypatch.setattr(_BlockPool, "fill_bytes", 0 if mode == "filled" else 1 << 40)
    if mode == "no-maps":
        monkeypatch.setattr(rgrn.mmap, "mmap", _no_maps)
    pool = _BlockPool()
    like = torch.zeros(1)
    shape = (3, pool.min_bytes // 4)  # three times the smallest pooled size
    a = pool.empty(shape, like)
    assert a.shape == shape and a.dtype == torch.float32
    a.fill_(1.5)
    b = pool.empty(shape, like)  # a is still in use: a new block
    assert a.data_ptr() != b.data_ptr() and len(pool.blocks) == 2
    kind = bytearray if mode == "no-maps" else mmap.mmap
    assert all(isinstance(blk, kind) for blk in pool.blocks)
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


def test_threads_never_share_a_block_in_use() -> None:
    # dask's worker threads take blocks at once; new blocks are made outside the
    # pool's lock, so two threads making one each must still get distinct memory.
    import threading
    import time

    pool = _BlockPool()
    like = torch.zeros(1)
    shape = (pool.min_bytes // 4 + 7,)
    errors: list[str] = []

    def work(k: int) -> None:
        for i in range(20):
            t = pool.empty(shape, like)
            t.fill_(float(k * 100 + i))
            time.sleep(0.001)  # let the other threads take and write theirs
            if not bool((t == float(k * 100 + i)).all()):
                errors.append(f"thread {k} step {i}: its block was written by another")
            del t

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    # A block is made only when every listed one is in use, and each thread holds
    # one at a time: never more blocks than threads.
    assert 1 <= len(pool.blocks) <= 4
    held = sum(len(b) for b in pool.blocks)
    assert pool.release() == held and pool.blocks == []


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_process_never_writes_the_parents_results() -> None:
    # Blocks are private maps: after a fork the child's runs of the recurrence write
    # pages of its own, never those of a result the parent keeps (shared maps did).
    import os

    import numpy as np
    import scipy.sparse as sp

    from xmsgl.nn import GraphRecurrent, SparseGraph

    torch.set_num_threads(1)
    torch.manual_seed(0)
    n, hdim, n_in, days = 500, 20, 3, 120  # states of 4.8 MB: pooled
    a = sp.eye(n, format="csr") + sp.eye(n, k=1, format="csr")
    graph = SparseGraph(sp.csr_matrix(a.multiply(1.0 / np.asarray(a.sum(axis=1)))))
    cell = GraphRecurrent(hdim)
    w, b = torch.randn(4 * hdim, n_in), torch.randn(4 * hdim)
    x1, x2 = torch.randn(days, n, 1, n_in), torch.randn(days, n, 1, n_in)
    with torch.no_grad():
        ref = cell.run_inputs(x1, w, b, graph).clone()  # its block is free again after this
        go_r, go_w = os.pipe()
        done_r, done_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child waits for the parent's result, then runs its own
            try:
                os.read(go_r, 1)
                cell.run_inputs(x2, w, b, graph)
            finally:
                os.write(done_w, b"x")
                os._exit(0)
        kept = cell.run_inputs(x1, w, b, graph)
        os.write(go_w, b"x")
        os.read(done_r, 1)
        os.waitpid(pid, 0)
    assert torch.equal(kept, ref)


def test_fit_gives_its_buffers_back() -> None:
    # A fit's blocks (a window's activations) stayed in the pool for the life of the
    # process: 286 MB after a fit of 283 reaches in a review, with no public release.
    import xmsgl
    import xmsgl.nn.rgrn as rgrn

    torch.set_num_threads(1)
    ds = xmsgl.datasets.synthetic_basin(n_segments=40, start="2001-01-01", end="2002-12-31", seed=1,
                                        reach_obs_share=0.3)
    made: list[int] = []
    real_new = rgrn._BlockPool._new_block

    def counted(nbytes: int) -> object:
        made.append(nbytes)
        return real_new(nbytes)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rgrn._BlockPool, "_new_block", staticmethod(counted))
        xmsgl.fit(ds, method="msgl", epochs=1, seed=0, progress=False, window=365)
    assert made, "the fit used no pooled block: the test no longer tests anything"
    assert rgrn._POOL.blocks == []
    assert rgrn.release_buffers() == 0
