"""CUT3R's pose memory (``pose_retriever``): a small learned memory that predicts each frame's pose token.

The memory is ``[B, M, 2D]``: every slot pairs a *key* half (an image summary projected to ``D``)
with a *value* half (a pose token). After each frame it is rewritten by cross-attending to the
single token ``[proj_q(image summary), output pose token]``; for the next frame the query
``[proj_q(image summary), masked_token]`` reads from it and the value half of the answer becomes
that frame's initial pose token. No positional embedding is used here.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import DecoderBlock


class PoseMemory(nn.Module):
    def __init__(self, size: int, key_dim: int, dim: int, num_heads: int, depth: int = 2, mlp_ratio: float = 4.0):
        super().__init__()
        self.dim = dim
        self.proj_q = nn.Linear(key_dim, dim)
        self.masked_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.mem = nn.Parameter(torch.zeros(1, size, 2 * dim))
        self.write_blocks = nn.ModuleList([DecoderBlock(2 * dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.read_blocks = nn.ModuleList([DecoderBlock(2 * dim, num_heads, mlp_ratio) for _ in range(depth)])

    def initial(self, batch: int) -> torch.Tensor:
        """The learned starting memory, ``[B, M, 2D]``."""
        return self.mem.expand(batch, -1, -1)

    def write(self, mem: torch.Tensor, image_summary: torch.Tensor, pose_token: torch.Tensor) -> torch.Tensor:
        """New memory after a frame. ``image_summary`` ``[B, 1, key_dim]``, ``pose_token`` ``[B, 1, D]``."""
        token = torch.cat((self.proj_q(image_summary), pose_token), dim=-1)
        for blk in self.write_blocks:
            mem = blk(mem, token, None, None)
        return mem

    def read(self, image_summary: torch.Tensor, mem: torch.Tensor) -> torch.Tensor:
        """Initial pose token ``[B, 1, D]`` for a frame summarised by ``image_summary``."""
        q = self.proj_q(image_summary)
        x = torch.cat((q, self.masked_token.expand(q.shape[0], -1, -1).to(q.dtype)), dim=-1)
        for blk in self.read_blocks:
            x = blk(x, mem, None, None)
        return x[..., -self.dim:]
