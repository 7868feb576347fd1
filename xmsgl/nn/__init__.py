"""Torch modules of xmsgl: the recurrent graph cell and the MSGL heads.

Importing this package imports torch; the rest of xmsgl imports it only when a
model is fitted, loaded or applied.
"""

from __future__ import annotations

from xmsgl.nn.dmsge import DMSGEBackbone
from xmsgl.nn.heads import CrossScaleHead, FineHead, FineResidualHead, TemporalAttentionBlock
from xmsgl.nn.msgl import TASKS, MSGLNet
from xmsgl.nn.rgrn import GraphRecurrent, SparseGraph, graph_product

__all__ = [
    "TASKS",
    "CrossScaleHead",
    "DMSGEBackbone",
    "FineHead",
    "FineResidualHead",
    "GraphRecurrent",
    "MSGLNet",
    "SparseGraph",
    "TemporalAttentionBlock",
    "graph_product",
]
