"""Output heads of MSGL: coarse, cross-scale (temporal self-attention) and fine.

All heads are node-agnostic: they see one node's sequence at a time, laid out as
``(M, T, H)`` with ``M`` = nodes x windows, so a fitted model does not depend on the
order or the number of nodes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


_CENTERING: dict[tuple[int, torch.dtype, str], torch.Tensor] = {}


def _centering(hdim: int, like: torch.Tensor) -> torch.Tensor:
    """``I - 1/H``: multiplied on the right, it subtracts each row's mean."""
    key = (hdim, like.dtype, str(like.device))
    if key not in _CENTERING:
        _CENTERING[key] = torch.eye(hdim, dtype=like.dtype, device=like.device) - 1.0 / hdim
    return _CENTERING[key]


def _residual_layer_norm(x: torch.Tensor, att: torch.Tensor, out: nn.Linear, norm: nn.LayerNorm
                         ) -> torch.Tensor:
    """``norm(x + out(att))`` in fewer passes over memory (inference on CPU).

    With hidden sizes of about 20, CPU LayerNorm works row by row and the residual
    sum is one more pass over the block. Here centring is folded into the matrix
    products: with ``C = I - 1/H``, ``(x + att W^T + b) C = x C + att (W^T C) + b C``,
    two products that write the centred sum directly; the variance comes from one
    pass of row norms. The result equals ``norm(x + out(att))`` up to rounding
    (``tests/test_nn.py``).
    """
    m, n_time, hdim = x.shape
    center = _centering(hdim, x)
    centred = torch.addmm(out.bias @ center, att.reshape(-1, hdim), out.weight.t() @ center)
    centred.addmm_(x.reshape(-1, hdim), center)
    # Row norms in one pass (no squared copy): var = |centred|^2 / H.
    inv_std = torch.linalg.vector_norm(centred, dim=1, keepdim=True)
    inv_std.square_().mul_(1.0 / hdim).add_(norm.eps).rsqrt_()
    return torch.addcmul(norm.bias, centred.mul_(inv_std), norm.weight).view(m, n_time, hdim)


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
        spans = _blocks(x, self.window, self.offset)
        att_all = None if len(spans) == 1 else x.new_empty(m, n_time, hdim)
        for t0, t1 in spans:
            length = min(self.window, t1 - t0)
            chunk = qkv[:, t0:t1].reshape(m, (t1 - t0) // length, length, 3 * hdim)
            q, k, v = chunk.split(hdim, dim=-1)
            att = F.scaled_dot_product_attention(q, k, v).reshape(m, t1 - t0, hdim)
            if att_all is None:
                att_all = att
            else:
                att_all[:, t0:t1] = att
        assert att_all is not None
        if torch.is_grad_enabled() or x.device.type != "cpu":
            return self.norm(x + self.out(att_all))
        return _residual_layer_norm(x, att_all, self.out, self.norm)


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
        if torch.is_grad_enabled():
            feats = torch.cat([z_cross.detach(), h_fine], dim=-1)
            return y_cross.detach() + self.mlp(feats).squeeze(-1)
        # Inference: the first layer as two products (no concatenated copy).
        first, act_fn, last = self.mlp
        assert isinstance(first, nn.Linear) and isinstance(act_fn, nn.ReLU) and isinstance(last, nn.Linear)
        hdim = z_cross.shape[-1]
        act = torch.addmm(first.bias, z_cross.reshape(-1, hdim), first.weight[:, :hdim].t())
        act.addmm_(h_fine.reshape(-1, h_fine.shape[-1]), first.weight[:, hdim:].t()).clamp_min_(0.0)
        return torch.addmm(last.bias, act, last.weight.t()).view(y_cross.shape).add_(y_cross)
