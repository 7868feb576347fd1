"""Output heads of MSGL: coarse, cross-scale (temporal self-attention) and fine.

All heads are node-agnostic: they see one node's sequence at a time, laid out as
``(M, T, H)`` with ``M`` = nodes x windows, so a fitted model does not depend on the
order or the number of nodes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmsgl.nn.rgrn import PARAM_DTYPE

__all__ = ["TemporalAttentionBlock", "CrossScaleHead", "FineHead", "FineResidualHead"]


def _padding(n_time: int, window: int, offset: int) -> tuple[int, int]:
    """Days added before and after a sequence so that its spans are whole windows.

    The spans are ``[0, offset)`` (when ``0 < offset < n_time``), then blocks of
    ``window`` days, the last one possibly shorter. With ``front`` days added
    before (so that the first span fills a window) and ``back`` after, every span
    is one window of the padded sequence.

    Examples
    --------
    >>> _padding(365, 30, 0), _padding(365, 30, 15), _padding(10, 30, 15)
    ((0, 25), (15, 10), (0, 20))
    """
    front = (window - offset) % window if 0 < offset < n_time else 0
    total = -(-(front + n_time) // window) * window
    return front, total - front - n_time


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
    window : int, default 30
        Block length in days.
    offset : int, default 0
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
        self.qkv = nn.Linear(hidden, 3 * hidden, dtype=PARAM_DTYPE)
        self.out = nn.Linear(hidden, hidden, dtype=PARAM_DTYPE)
        self.norm = nn.LayerNorm(hidden, dtype=PARAM_DTYPE)

    def _folded(self, hdim: int) -> torch.Tensor:
        """The projection ``(3H, H + 1)`` to ``[q / sqrt(H), k, v']``, bias last.

        Each row of attention weights sums to one, so ``out(P v) = P out(v)``: the
        output projection (weight and bias) moves into the values, and the scaling
        of the scores into the queries. The bias is the last column, for inputs
        with a column of ones.
        """
        w_q, w_k, w_v = self.qkv.weight.split(hdim, dim=0)
        b_q, b_k, b_v = self.qkv.bias.split(hdim, dim=0)
        scale = hdim**-0.5
        w_o, b_o = self.out.weight, self.out.bias
        weight = torch.cat([w_q * scale, w_k, w_o @ w_v], dim=0)
        bias = torch.cat([b_q * scale, b_k, torch.addmv(b_o, w_o, b_v)], dim=0)
        return torch.cat([weight, bias[:, None]], dim=1)

    def forward(self, x: torch.Tensor, phase: int = 0) -> torch.Tensor:
        """Apply the block to ``x`` of shape (M, T, H).

        ``phase`` places the spans on a grid that does not start with the
        sequence: day ``t`` of the sequence is day ``t + phase`` of the grid, whose
        spans start at ``offset`` and every ``window`` days (inference passes the
        date of the first day, so that a day's span is the same whatever window
        it is predicted in; training uses 0, spans laid out from the window's start).

        The sequence is padded so that every span is one window (a shorter first
        or last span gets days of zeros whose scores are set to -inf: they get no
        weight) and laid out as ``(M * spans, window, H)`` without a copy, with a
        column of ones for the biases (a product with a separate bias would first
        copy the bias into every row); the residual is added by the second batched
        product. The values are those of attention within each span, to rounding.
        """
        m, n_time, hdim = x.shape
        w = self.window
        front, back = _padding(n_time, w, (self.offset - int(phase)) % w)
        n_pad = front + n_time + back
        n_spans = n_pad // w
        xp = x.new_empty(m, n_pad, hdim + 1)
        xp[..., hdim] = 1.0
        if front:
            xp[:, :front, :hdim] = 0.0
        if back:
            xp[:, front + n_time :, :hdim] = 0.0
        xp[:, front : front + n_time, :hdim] = x
        # Without autograd on the CPU the values get a column of ones, which makes
        # the second product give each row's sum of weights too (see _shared_exp).
        shared = (x.device.type == "cpu" and not torch.is_grad_enabled()
                  and x.dtype in (torch.float32, torch.float64))
        weight = self._folded(hdim)
        if shared:
            ones = weight.new_zeros(1, hdim + 1)
            ones[0, hdim] = 1.0
            weight = torch.cat([weight, ones], dim=0)
        qkv = torch.matmul(xp, weight.t()).view(m * n_spans, w, weight.shape[0])
        q, k = qkv[..., :hdim], qkv[..., hdim : 2 * hdim]
        scores = torch.bmm(q, k.transpose(1, 2))
        residual = xp[..., :hdim].view(m * n_spans, w, hdim)
        out = _shared_exp(scores, qkv[..., 2 * hdim :], residual, m, front, back) if shared else None
        if out is None:
            # In place: the product's backward does not need its output.
            _mask_padding(scores, m, front, back, float("-inf"))
            out = torch.baddbmm(residual, torch.softmax(scores, dim=-1), qkv[..., 2 * hdim : 3 * hdim])
        out = self.norm(out.view(m, n_pad, hdim))
        return out[:, front : front + n_time] if front or back else out


def _mask_padding(scores: torch.Tensor, m: int, front: int, back: int, value: float) -> None:
    """Set, in place, the scores of the padded days (the first ``front`` of each
    sequence's first span, the last ``back`` of its last) to ``value``."""
    if not (front or back) or scores.numel() == 0:
        return
    w = scores.shape[-1]
    spans = scores.view(m, -1, w, w)
    if front:
        spans[:, 0, :, :front] = value
    if back:
        spans[:, -1, :, w - back :] = value


#: Widest range of a block's attention scores for which :func:`_shared_exp` takes
#: one shift for all rows: ``exp(-80)`` is still a normal float32 (the smallest is
#: about ``exp(-87.3)``), so no weight of any row underflows. Half-precision
#: inputs keep the softmax.
SHARED_EXP_RANGE = 80.0


def _shared_exp(
    scores: torch.Tensor, values: torch.Tensor, residual: torch.Tensor, m: int, front: int, back: int
) -> torch.Tensor | None:
    """``residual + softmax(scores) @ v`` with one shift for all rows, in place.

    ``values`` is ``[v, 1]`` (``(spans, w, H + 1)``). A softmax subtracts each
    row's maximum before ``exp``, and on rows of 30 scores finding those maxima
    takes as long as the rest of the softmax together. When all scores of the block
    lie within :data:`SHARED_EXP_RANGE`, their overall maximum serves every row:
    the weights are the same to rounding and none overflows or underflows. The
    padded days get weight 0 after the ``exp``; each row's sum comes out of the
    product as the last column and divides the rest on the way to the residual.
    Returns ``None`` (the caller takes the softmax) when the range is wider or not
    finite, or there are no scores. Scores is overwritten.
    """
    if scores.numel() == 0:  # no reaches or no days: nothing to shift by
        return None
    lo, hi = torch.aminmax(scores)
    spread = float(hi - lo)
    if not spread < SHARED_EXP_RANGE:  # also NaN and infinite scores
        return None
    scores.sub_(hi).exp_()
    _mask_padding(scores, m, front, back, 0.0)
    num = torch.bmm(scores, values)
    hdim = values.shape[-1] - 1
    return torch.addcdiv(residual, num[..., :hdim], num[..., hdim:])


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
        self.readout = nn.Linear(hidden, 1, dtype=PARAM_DTYPE)
        self.skip = nn.Linear(hidden, 1, bias=False, dtype=PARAM_DTYPE)

    def lookahead(self) -> int:
        """Days after a day that its output can depend on: the attention is not
        causal, and each block reaches to the end of its span (``window`` days per
        block at most)."""
        return sum(blk.window for blk in self.blocks if isinstance(blk, TemporalAttentionBlock))

    def span_period(self) -> int:
        """The period of the attention spans' grid (1 without attention blocks)."""
        windows = {blk.window for blk in self.blocks if isinstance(blk, TemporalAttentionBlock)}
        return windows.pop() if len(windows) == 1 else 1

    def first_needed_day(self, first_output: int, phase: int = 0) -> int:
        """The first day of a sequence this head needs to give, from ``first_output``
        on, exactly what it gives on the whole sequence (with the same ``phase``).

        Each block attends within spans of ``window`` days on a grid (see
        :meth:`TemporalAttentionBlock.forward`), so a sequence cut at a day of a
        block's grid keeps every span of that block after the cut; a span that
        straddles the cut is shortened, and each block carries that error to the
        days of its spans. Inference uses this to skip the heads on spin-up days.

        Examples
        --------
        >>> CrossScaleHead(hidden=4, window=30).first_needed_day(180)
        150
        >>> CrossScaleHead(hidden=4, window=30).first_needed_day(40)
        0
        >>> CrossScaleHead(hidden=4, window=30).first_needed_day(180, phase=7)
        143
        """
        blocks = [blk for blk in self.blocks if isinstance(blk, TemporalAttentionBlock)]
        windows = {blk.window for blk in blocks}
        if not blocks or first_output <= 0 or len(windows) != 1:
            return 0
        w = windows.pop()

        def on_grid(day: int, blk: TemporalAttentionBlock) -> int:
            # The first day >= ``day`` where a span of ``blk`` starts.
            start = (blk.offset - int(phase)) % w
            return start + -(-(day - start) // w) * w

        for cut in range(first_output, 0, -1):
            # The spans of the cut sequence are those of the whole one from the
            # first grid day at or after the cut on. A day is exact when its span
            # is one of those and every day of the span was exact at the input.
            exact_from = cut
            for blk in blocks:
                exact_from = on_grid(max(exact_from, on_grid(cut, blk)), blk)
            if exact_from <= first_output:
                return cut
        return 0

    def forward(self, h_cross: torch.Tensor, phase: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        z = h_cross
        for blk in self.blocks:
            z = blk(z, phase) if isinstance(blk, TemporalAttentionBlock) else blk(z)
        return z, (self.readout(z) + self.skip(h_cross)).squeeze(-1)


class FineHead(nn.Module):
    """Task 2: the prediction used, from the carried coarse states and the fine states.

    ``u = [h_cross, h_fine]`` (``2H`` features a reach-day): ``h_cross`` are the coarse
    states carried to the reach by the cross-scale matrix, the input of the
    cross-scale head, with gradients stopped, so that this task trains the shared
    cell through the fine graph only; ``h_fine`` the reach's own states. A small MLP
    with a linear branch on the same input gives ``y = w . GELU(W1 u + b1) + v . u +
    b``: the linear branch alone is a linear head on both states, which contains the
    fine-only baseline's head, and the MLP adds what the two scales say together.
    Neither the cross-scale head's attention nor its prediction is an input, so the
    prediction of a day depends on the states of that day only (MSGL's default,
    ``fine_head="concat"``; :class:`FineResidualHead` is the other choice).

    Examples
    --------
    >>> import torch
    >>> head = FineHead(hidden=4)
    >>> tuple(head(torch.randn(3, 12, 4), torch.randn(3, 12, 4)).shape)
    (3, 12)
    """

    def __init__(self, hidden: int, mlp_hidden: int | None = None) -> None:
        super().__init__()
        width = int(mlp_hidden or hidden)
        self.first = nn.Linear(2 * hidden, width, dtype=PARAM_DTYPE)
        self.out = nn.Linear(width, 1, dtype=PARAM_DTYPE)
        self.linear = nn.Linear(2 * hidden, 1, bias=False, dtype=PARAM_DTYPE)

    def parts(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first layer and the linear branch as ``(W + 1, H)`` weights on
        ``h_cross`` and on ``h_fine`` and a bias ``(W + 1,)``, the branch last."""
        hdim = self.first.in_features // 2
        weight = torch.cat([self.first.weight, self.linear.weight], dim=0)
        bias = torch.cat([self.first.bias, self.first.bias.new_zeros(1)])
        return weight[:, :hdim], weight[:, hdim:], bias

    def finish(self, pre: torch.Tensor) -> torch.Tensor:
        """The prediction ``(...)`` from ``pre = u @ [W1; v].T + [b1, 0]`` ``(..., W + 1)``."""
        width = self.first.out_features
        hidden = F.gelu(pre[..., :width])
        return F.linear(hidden, self.out.weight, self.out.bias).squeeze(-1) + pre[..., width]

    def forward(self, h_cross: torch.Tensor, h_fine: torch.Tensor) -> torch.Tensor:
        # The first layer and the linear branch as one product per input, the
        # branch in the last column: no concatenated copy of both. Inference takes
        # the product with h_cross on segments before carrying it (xmsgl.train.predict):
        # the carrying is linear too.
        w_cross, w_fine, bias = self.parts()
        pre = F.linear(h_fine, w_fine, bias)
        pre += F.linear(h_cross.detach(), w_cross)
        return self.finish(pre)


class FineResidualHead(nn.Module):
    """Task 2 as a residual on the cross-scale prediction (``fine_head="residual"``).

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
        self.mlp = nn.Sequential(nn.Linear(2 * hidden, width, dtype=PARAM_DTYPE), nn.ReLU(),
                                 nn.Linear(width, 1, dtype=PARAM_DTYPE))
        last = self.mlp[-1]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(
        self, z_cross: torch.Tensor, y_cross: torch.Tensor, h_fine: torch.Tensor
    ) -> torch.Tensor:
        # The first layer on [z_cross, h_fine] as two products into one sum: no
        # concatenated copy of both.
        first, _, last = self.mlp
        assert isinstance(first, nn.Linear) and isinstance(last, nn.Linear)
        hdim = z_cross.shape[-1]
        hidden = F.linear(h_fine, first.weight[:, hdim:], first.bias)
        hidden += F.linear(z_cross.detach(), first.weight[:, :hdim])
        hidden.relu_()
        return y_cross.detach() + F.linear(hidden, last.weight, last.bias).squeeze(-1)
