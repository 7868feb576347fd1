"""The multi-scale network: one recurrent graph cell, two scales, four heads.

Inputs of the two scales differ (segments and reaches carry different variables),
so each scale has an input projection into the shared cell. Variables present at
both scales under the same name after their ``seg_``/``reach_`` prefix (air
temperature, radiation, discharge...) share one projection: the cell then sees
the same physical driver through the same weights on both graphs, which is what
lets coarse training (tasks 0 and 1, stage A of ASYNC-MSGL, the ``direct`` and
``progressive`` baselines) transfer to the fine graph. Variables found at only
one scale get a projection of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from xmsgl.exceptions import ChoiceError, ParameterError
from xmsgl.nn.dmsge import DMSGEBackbone
from xmsgl.nn.dmsge import backbone_options as dmsge_options
from xmsgl.nn.heads import CrossScaleHead, FineHead, FineResidualHead
from xmsgl.nn.rgrn import (
    PARAM_DTYPE,
    GraphRecurrent,
    SparseGraph,
    graph_product,
    reusable_empty,
    select_rows,
)

__all__ = ["BACKBONES", "FINE_HEADS", "MSGLNet", "TASKS"]

#: What :class:`MSGLNet` may turn inputs into hidden states with.
BACKBONES = ("rgrn", "dmsge")

#: The fine head (task 2): ``"concat"`` (:class:`~xmsgl.nn.heads.FineHead`, from the
#: carried coarse states and the fine states) or ``"residual"``
#: (:class:`~xmsgl.nn.heads.FineResidualHead`, a residual on the cross-scale
#: prediction, which models saved before the choice existed use).
FINE_HEADS = ("concat", "residual")

#: Task names: 0 coarse, 1 cross-scale, 2 fine (MSGL's prediction), and the
#: fine-only head of the single-scale baseline.
TASKS = ("coarse", "cross", "fine", "fine_only")


class MSGLNet(nn.Module):
    """Shared RGrN cell with the MSGL heads and the fine-only baseline head.

    Parameters
    ----------
    n_common : int
        Number of input variables present at both scales (first in the inputs).
    n_seg_extra, n_reach_extra : int
        Numbers of variables found only on segments / only on reaches (after the
        common ones in each scale's inputs).
    hidden : int, default 20
        Hidden size of the cell and the heads.
    attn_window : int, default 30
        Days per temporal attention block of the cross-scale head.
    attn_blocks : int, default 2
        Number of attention blocks.
    backbone : {"rgrn", "dmsge"}, default "rgrn"
        What turns inputs into hidden states: the recurrent graph cell, or the
        dynamic multi-scale graph embedding backbone (:mod:`xmsgl.nn.dmsge`, which
        needs each scale's geometry via ``net.dmsge.set_geometry``).
    backbone_options : dict, optional
        Options of the dmsge backbone (:data:`xmsgl.nn.dmsge.DEFAULTS`).
    fine_head : {"concat", "residual"}, default "concat"
        The head of task 2 (:data:`FINE_HEADS`).

    Examples
    --------
    >>> import torch
    >>> net = MSGLNet(n_common=2, n_seg_extra=1, n_reach_extra=0, hidden=4, attn_window=5)
    >>> graphs = {"coarse": torch.eye(3).to_sparse(), "fine": torch.eye(6).to_sparse(),
    ...           "cross": torch.ones(6, 3).div(3).to_sparse()}
    >>> out = net(torch.randn(10, 3, 2, 3), torch.randn(10, 6, 2, 2), graphs)
    >>> {k: tuple(v.shape) for k, v in out.items()}
    {'coarse': (10, 3, 2), 'cross': (10, 6, 2), 'fine': (10, 6, 2)}
    """

    def __init__(
        self,
        n_common: int,
        n_seg_extra: int,
        n_reach_extra: int,
        hidden: int = 20,
        attn_window: int = 30,
        attn_blocks: int = 2,
        backbone: str = "rgrn",
        backbone_options: dict[str, Any] | None = None,
        fine_head: str = "concat",
    ) -> None:
        super().__init__()
        if fine_head not in FINE_HEADS:
            raise ChoiceError(f"fine_head={fine_head!r} is not known; use one of {list(FINE_HEADS)}")
        self.fine_head_kind = fine_head
        self.hidden = int(hidden)
        self.n_common = int(n_common)
        gates = 4 * self.hidden
        self.gate_bias = nn.Parameter(torch.zeros(gates, dtype=PARAM_DTYPE))
        self.proj_common = nn.Linear(n_common, gates, bias=False, dtype=PARAM_DTYPE) if n_common else None
        self.proj_seg = nn.Linear(n_seg_extra, gates, bias=False, dtype=PARAM_DTYPE) if n_seg_extra else None
        self.proj_reach = nn.Linear(n_reach_extra, gates, bias=False, dtype=PARAM_DTYPE) if n_reach_extra else None
        self.cell = GraphRecurrent(self.hidden)
        self.coarse_head = nn.Linear(self.hidden, 1, dtype=PARAM_DTYPE)
        self.cross_head = CrossScaleHead(self.hidden, attn_window, attn_blocks)
        self.fine_head: FineHead | FineResidualHead = (
            FineHead(self.hidden) if fine_head == "concat" else FineResidualHead(self.hidden))
        self.fine_only_head = nn.Linear(self.hidden, 1, dtype=PARAM_DTYPE)
        if backbone not in BACKBONES:
            raise ChoiceError(f"backbone={backbone!r} is not known; use one of {list(BACKBONES)}")
        self.backbone = backbone
        # The dynamic backbone replaces the cell in hidden_states; it reads the same
        # projected inputs, so the shared projections keep their meaning.
        self.dmsge: DMSGEBackbone | None = (
            DMSGEBackbone(gates, self.hidden, **dmsge_options(backbone_options))
            if backbone == "dmsge" else None)

    def reads_attention(self, output: str) -> bool:
        """Whether the prediction ``output`` ("fine", "cross", ...) goes through the
        cross-scale head's attention: "cross" always, "fine" with the residual head.
        Only then does a day's value depend on other days of its window (inference
        then reads ahead and cuts the spin-up on the attention's grid)."""
        return output == "cross" or (output == "fine" and self.fine_head_kind == "residual")

    def lookahead(self, output: str) -> int:
        """Days after a day that the prediction ``output`` of that day may depend on."""
        return self.cross_head.lookahead() if self.reads_attention(output) else 0

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task goes through: input projections and the cell."""
        mods = [self.proj_common, self.proj_seg, self.proj_reach, self.cell]
        params = [self.gate_bias]
        for mod in mods:
            if mod is not None:
                params.extend(mod.parameters())
        if self.dmsge is not None:
            params.extend(self.dmsge.parameters())
        return params

    def _projection(self, scale: str, n_in: int) -> torch.Tensor:
        """The input projection (4H, F) of ``scale``: common and scale-specific weights
        side by side, as the columns of the inputs."""
        extra = self.proj_seg if scale == "seg" else self.proj_reach
        mats = [m.weight for m in (self.proj_common, extra) if m is not None]
        if not mats:
            return self.gate_bias.new_zeros(self.gate_bias.shape[0], n_in)
        return mats[0] if len(mats) == 1 else torch.cat(mats, dim=1)

    def _project(self, x: torch.Tensor, scale: str) -> torch.Tensor:
        # One matrix product with the bias for all days, nodes and windows.
        weight = self._projection(scale, x.shape[-1])
        n_gates = self.gate_bias.shape[0]
        if weight.shape[1] == 0:
            return self.gate_bias.expand(*x.shape[:-1], n_gates)
        out = torch.addmm(self.gate_bias, x.reshape(-1, x.shape[-1]), weight.t())
        return out.view(*x.shape[:-1], n_gates)

    def hidden_states(
        self, x: torch.Tensor, adj: SparseGraph | torch.Tensor, scale: str, time_chunk: int | None = None,
        day0: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Hidden states (T, N, B, H) of one scale for inputs (T, N, B, F).

        ``time_chunk`` runs the cell that many days at a time, carrying the states
        over (the same result); ``None`` runs all days in one call. The inputs'
        projection is part of each day's product, so at inference no buffer grows
        with the number of days but the states themselves.
        With ``backbone="dmsge"`` the dynamic backbone runs instead of the cell (on
        the whole window); ``day0``, each window's first date in days since
        1970-01-01, lays its feature-space graphs' blocks on the calendar (the cell
        does not read it).
        """
        if self.dmsge is not None:
            return self.dmsge(x, adj, scale, project=lambda v: self._project(v, scale), day0=day0)
        weight = self._projection(scale, x.shape[-1])
        if time_chunk is None or time_chunk >= x.shape[0]:
            out = self.cell.run_inputs(x, weight, self.gate_bias, adj)
            assert isinstance(out, torch.Tensor)
            return out
        parts = []
        state = None
        # Without autograd the chunks are written into one preallocated tensor: a
        # final concatenation would hold every state twice.
        out_all = None if torch.is_grad_enabled() else reusable_empty(
            (x.shape[0], x.shape[1], x.shape[2], self.hidden), x)
        for t0 in range(0, x.shape[0], time_chunk):
            res = self.cell.run_inputs(
                x[t0 : t0 + time_chunk], weight, self.gate_bias, adj, state, return_state=True,
                out=None if out_all is None else out_all[t0 : t0 + time_chunk],
            )
            assert isinstance(res, tuple)
            hs, state = res
            if out_all is None:
                parts.append(hs)
        return out_all if out_all is not None else torch.cat(parts, 0)

    def hidden_states_from(
        self, x: torch.Tensor, adj: SparseGraph | torch.Tensor, scale: str,
        state: tuple[torch.Tensor, torch.Tensor] | None, out: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Hidden states (T, N, B, H) of one scale for inputs (T, N, B, F) that follow
        the days whose last ``(h, c)`` is ``state`` (None: a fresh start), with the
        state after the last day: a run of consecutive blocks of days gives the
        states of :meth:`hidden_states` on all of them. Without autograd the states
        are written into ``out`` when given. Not for ``backbone="dmsge"``, which
        builds its graphs on a whole window.
        """
        if self.dmsge is not None:
            raise ParameterError("hidden_states_from runs the recurrent cell; the dmsge backbone "
                                 "takes a whole window (use hidden_states)")
        weight = self._projection(scale, x.shape[-1])
        res = self.cell.run_inputs(x, weight, self.gate_bias, adj, state, return_state=True, out=out)
        assert isinstance(res, tuple)
        return res

    def coarse_prediction(self, h_coarse: torch.Tensor) -> torch.Tensor:
        """Task 0: (T, S, B) from coarse states (T, S, B, H)."""
        return self.coarse_head(h_coarse).squeeze(-1)

    def fine_from_hidden(
        self, h_cross: torch.Tensor | None, h_fine: torch.Tensor | None, tasks: tuple[str, ...],
        phase: int = 0,
    ) -> dict[str, torch.Tensor]:
        """Fine heads on node sequences (M, T, H); returns (M, T) per task.

        ``phase``: where the sequences' first day lies on the grid of the
        cross-scale head's attention spans (:meth:`CrossScaleHead.forward`).
        """
        out: dict[str, torch.Tensor] = {}
        if h_cross is not None and ("cross" in tasks or (self.reads_attention("fine") and "fine" in tasks)):
            z, y_cross = self.cross_head(h_cross, phase)
            out["cross"] = y_cross
            if "fine" in tasks and h_fine is not None and isinstance(self.fine_head, FineResidualHead):
                out["fine"] = self.fine_head(z, y_cross, h_fine)
        if "fine" in tasks and h_cross is not None and h_fine is not None and isinstance(
                self.fine_head, FineHead):
            out["fine"] = self.fine_head(h_cross, h_fine)
        if "fine_only" in tasks and h_fine is not None:
            out["fine_only"] = self.fine_only_head(h_fine).squeeze(-1)
        return {k: v for k, v in out.items() if k in tasks}

    def forward(
        self,
        x_seg: torch.Tensor | None,
        x_reach: torch.Tensor | None,
        graphs: dict[str, SparseGraph | torch.Tensor],
        tasks: tuple[str, ...] = ("coarse", "cross", "fine"),
        rows: torch.Tensor | None = None,
        cross: SparseGraph | torch.Tensor | None = None,
        day0: Sequence[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Predictions of ``tasks`` for a batch of windows.

        Parameters
        ----------
        x_seg : torch.Tensor, (T, S, B, F_seg), or None
            Standardized segment inputs (needed by "coarse", "cross" and "fine").
        x_reach : torch.Tensor, (T, R, B, F_reach), or None
            Standardized reach inputs (needed by "fine" and "fine_only").
        graphs : dict
            Graphs "coarse" (S, S), "fine" (R, R), "cross" (R, S) as
            :class:`~xmsgl.nn.SparseGraph` (or sparse torch tensors).
        tasks : tuple of str, default ("coarse", "cross", "fine")
            Which of :data:`TASKS` to compute.
        rows : torch.Tensor of int64, optional
            Reaches for which the fine heads run (all by default). The recurrence
            always runs on the whole fine graph; the heads treat reaches one by one,
            so training can run them on the observed reaches only.
        cross : SparseGraph, optional
            The rows ``rows`` of the cross matrix (required with ``rows`` for the
            cross and fine tasks).
        day0 : sequence of int, optional
            The first date of each window in days since 1970-01-01 (read by the
            dmsge backbone only, see :meth:`hidden_states`).

        Returns
        -------
        dict
            ``"coarse"``: (T, S, B); the fine tasks: (T, R, B) (or (T, len(rows), B)),
            in standardized units.
        """
        out: dict[str, torch.Tensor] = {}
        need_coarse = any(t in tasks for t in ("coarse", "cross", "fine"))
        need_fine = any(t in tasks for t in ("fine", "fine_only"))
        h_cross = h_fine = None
        n_time = n_batch = n_out = 0
        if need_coarse:
            assert x_seg is not None
            h_c = self.hidden_states(x_seg, graphs["coarse"], "seg", day0=day0)
            n_time, _, n_batch, _ = h_c.shape
            if "coarse" in tasks:
                out["coarse"] = self.coarse_prediction(h_c)
            if "cross" in tasks or "fine" in tasks:
                cmat = graphs["cross"] if rows is None else cross
                assert cmat is not None, "pass the cross rows along with rows"
                hx = graph_product(cmat, h_c.permute(1, 0, 2, 3))  # (R, T, B, H)
                n_out = hx.shape[0]
                h_cross = hx.permute(0, 2, 1, 3).reshape(n_out * n_batch, n_time, self.hidden)
        if need_fine:
            assert x_reach is not None
            h_f = self.hidden_states(x_reach, graphs["fine"], "reach", day0=day0)
            n_time, _, n_batch, _ = h_f.shape
            if rows is not None:
                h_f = select_rows(h_f, 1, rows)
            n_out = h_f.shape[1]
            h_fine = h_f.permute(1, 2, 0, 3).reshape(n_out * n_batch, n_time, self.hidden)
        # Sizes spelled out: with no days (or windows) a -1 could be any size.
        for name, y in self.fine_from_hidden(h_cross, h_fine, tasks).items():
            out[name] = y.reshape(n_out, n_batch, n_time).permute(2, 0, 1)
        return out
