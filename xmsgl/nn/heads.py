"""Output heads of MSGL: coarse, cross-scale (temporal self-attention) and fine.

All heads are node-agnostic: they see one node's sequence at a time, laid out as
``(M, T, H)`` with ``M`` = nodes x windows, so a fitted model does not depend on the
order or the number of nodes.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["TemporalAttentionBlock", "CrossScaleHead", "FineResidualHead"]


def _blocks(x: torch.Tensor, window: int, offset: int) -> list[tuple[int, int]]:
    """Time spans of the attention blocks: ``[0, offset)`` then blocks of ``window``."""
    n_time = x.shape[1]
    spans: list[tuple[int, int]] = []
    if 0 < offset < n_time:
        spans.append((0, offset))
        start = offset
    else:
        start = 0
    n_full = (n_time - start) // window
    if n_full:
        spans.append((start, start + n_full * window))
    end = start + n_full * window
    if end < n_time:
        spans.append((end, n_time))
    return spans


def _attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention over (batch, days, H) as two batched products.

    The values of ``torch.nn.functional.scaled_dot_product_attention`` (to about
    1e-6), written out because on these short spans (30 days, 20 features) torch's
    fused CPU kernel is the slower of the two on the CPUs measured (docs/model.md,
    "Inference throughput"). The in-place scaling is safe under autograd: the
    product's backward does not need its output.
    """
    scores = torch.bmm(q, k.transpose(1, 2)).mul_(q.shape[-1] ** -0.5)
    return torch.bmm(torch.softmax(scores, dim=-1), v)


class TemporalAttentionBlock(nn.Module):
    """Self-attention over time within blocks of days, with residual and LayerNorm.

    Each day attends to every day of its block (non-causal: downscaling is a
    reconstruction of the past, so later days of the block may inform earlier
    ones). Attention is restricted to blocks of ``window`` days because full
    attention over a 365-day window costs 365 x 365 products per reach and
    dominates training time; consecutive blocks are offset by half a window so
    that information crosses block edges.

    Parameters
    ----------
    hidden : int
        Feature size ``H``.
    window : int
        Block length in days.
    offset : int
        Start of the first full block (``window // 2`` for the shifted block).

    Examples
    --------
    >>> import torch
    >>> blk = TemporalAttentionBlock(hidden=4, window=7, offset=3)
    >>> tuple(blk(torch.randn(5, 20, 4)).shape)
    (5, 20, 4)
    """

    def __init__(self, hidden: int, window: int = 30, offset: int = 0) -> None:
        super().__init__()
        self.window = int(window)
        self.offset = int(offset)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to ``x`` of shape (M, T, H)."""
        m, n_time, hdim = x.shape
        qkv = self.qkv(x)
        parts = []
        for t0, t1 in _blocks(x, self.window, self.offset):
            length = min(self.window, t1 - t0)
            chunk = qkv[:, t0:t1].reshape(m * ((t1 - t0) // length), length, 3 * hdim)
            q, k, v = chunk.split(hdim, dim=-1)
            parts.append(_attention(q, k, v).view(m, t1 - t0, hdim))
        att_all = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        return self.norm(x + self.out(att_all))


class CrossScaleHead(nn.Module):
    """Task 1: fine temperature from coarse states carried to reaches.

    Two temporal self-attention blocks (the second shifted by half a window) then a
    linear read-out, plus a linear read-out of the carried states themselves: the
    day-to-day signal does not have to pass through the attention, whose block
    averages otherwise show as steps early in training. Returns both the
    transformed states (fed, without gradient, to the fine head) and the prediction.

    Examples
    --------
    >>> import torch
    >>> head = CrossScaleHead(hidden=4, window=5)
    >>> z, y = head(torch.randn(3, 12, 4))
    >>> tuple(z.shape), tuple(y.shape)
    ((3, 12, 4), (3, 12))
    """

    def __init__(self, hidden: int, window: int = 30, n_blocks: int = 2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TemporalAttentionBlock(hidden, window, offset=(i % 2) * (window // 2))
            for i in range(n_blocks)
        )
        self.readout = nn.Linear(hidden, 1)
        self.skip = nn.Linear(hidden, 1, bias=False)

    def first_needed_day(self, first_output: int) -> int:
        """The first day of a sequence this head needs to give, from ``first_output``
        on, exactly what it gives on the whole sequence.

        Each block attends within spans of ``window`` days laid out from the start
        of the sequence, so a sequence cut at a multiple of ``window`` keeps every
        span after the cut; only the first span of a shifted block is shortened,
        and each block carries that error to the days of its spans. Inference
        uses this to skip the heads on spin-up days.

        Examples
        --------
        >>> CrossScaleHead(hidden=4, window=30).first_needed_day(180)
        150
        >>> CrossScaleHead(hidden=4, window=30).first_needed_day(40)
        0
        """
        blocks = [blk for blk in self.blocks if isinstance(blk, TemporalAttentionBlock)]
        windows = {blk.window for blk in blocks}
        if not blocks or first_output <= 0 or len(windows) != 1:
            return 0
        w = windows.pop()
        for cut in range(first_output // w * w, 0, -w):
            exact_from = cut
            for blk in blocks:
                # The spans of the whole sequence start at 0, then at offset + k * w;
                # those of the cut one at cut, then at cut + offset + k * w: the same
                # from cut + offset on. A day is exact when its span is one of those
                # and every day of the span was exact at the block's input.
                lo = max(exact_from, cut + blk.offset)
                exact_from = blk.offset + -(-(lo - blk.offset) // w) * w
            if exact_from <= first_output:
                return cut
        return 0

    def forward(self, h_cross: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = h_cross
        for blk in self.blocks:
            z = blk(z)
        return z, (self.readout(z) + self.skip(h_cross)).squeeze(-1)


class FineResidualHead(nn.Module):
    """Task 2: the prediction used, from cross-scale and fine states.

    ``y = y_cross + MLP([z_cross, h_fine])`` where ``z_cross`` and ``y_cross`` come
    from :class:`CrossScaleHead` with gradients stopped, so this task refines the
    cross-scale estimate with what the fine graph knows without pulling the
    cross-scale head towards itself. The last layer starts at zero: before fine
    training the fine prediction equals the cross-scale one.

    Examples
    --------
    >>> import torch
    >>> head = FineResidualHead(hidden=4)
    >>> y = head(torch.randn(3, 12, 4), torch.randn(3, 12), torch.randn(3, 12, 4))
    >>> tuple(y.shape)
    (3, 12)
    """

    def __init__(self, hidden: int, mlp_hidden: int | None = None) -> None:
        super().__init__()
        width = int(mlp_hidden or hidden)
        self.mlp = nn.Sequential(nn.Linear(2 * hidden, width), nn.ReLU(), nn.Linear(width, 1))
        last = self.mlp[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(
        self, z_cross: torch.Tensor, y_cross: torch.Tensor, h_fine: torch.Tensor
    ) -> torch.Tensor:
        feats = torch.cat([z_cross.detach(), h_fine], dim=-1)
        return y_cross.detach() + self.mlp(feats).squeeze(-1)
