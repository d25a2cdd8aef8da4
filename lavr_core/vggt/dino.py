"""Patch embeddings of the aggregator: the DINOv2 ViT with registers VGGT-1B uses, or a bare conv.

Both map normalised images ``[N, 3, H, W]`` (H, W multiples of the patch size) to patch tokens
``[N, (H/p)*(W/p), C]`` in row-major patch order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Block


class PatchEmbed(nn.Module):
    """One ``p x p`` stride-``p`` convolution per patch (``proj``)."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoV2(nn.Module):
    """DINOv2 ViT with register tokens, returning the final-norm patch tokens (``x_norm_patchtokens``).

    Sequence layout inside: ``[cls, registers..., patches...]``; the learned positional embedding
    covers cls + a square ``img_size/p`` grid and is resampled (bicubic, optionally antialiased) to
    the input's grid. Registers get no positional embedding. ``mask_token`` is unused at inference
    but is part of the checkpoint.
    """

    def __init__(self, img_size: int, patch_size: int, embed_dim: int, depth: int, num_heads: int,
                 mlp_ratio: float = 4.0, num_register_tokens: int = 4, init_values: float = 1.0,
                 interpolate_antialias: bool = True, interpolate_offset: float = 0.0):
        super().__init__()
        self.patch_size = patch_size
        self.num_register_tokens = num_register_tokens
        self.interpolate_antialias = interpolate_antialias
        self.interpolate_offset = interpolate_offset
        self.grid = img_size // patch_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid + 1, embed_dim))
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, embed_dim)) \
            if num_register_tokens else None
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, init_values=init_values, norm_eps=1e-6) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def resampled_pos_embed(self, grid_h: int, grid_w: int) -> Tensor:
        """Positional embedding ``[1, 1 + grid_h*grid_w, C]`` for a ``grid_h x grid_w`` patch grid."""
        pe = self.pos_embed
        if grid_h == grid_w == self.grid:
            return pe
        M, C = self.grid, pe.shape[-1]
        patch = pe[:, 1:].float().reshape(1, M, M, C).permute(0, 3, 1, 2)
        if self.interpolate_offset:
            kw = {"scale_factor": ((grid_h + self.interpolate_offset) / M, (grid_w + self.interpolate_offset) / M)}
        else:
            kw = {"size": (grid_h, grid_w)}
        patch = F.interpolate(patch, mode="bicubic", antialias=self.interpolate_antialias, **kw)
        patch = patch.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, C)
        return torch.cat([pe[:, :1].float(), patch], dim=1).to(pe.dtype)

    def forward(self, x: Tensor) -> Tensor:
        N, _, H, W = x.shape
        gh, gw = H // self.patch_size, W // self.patch_size
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(N, -1, -1), tokens], dim=1)
        tokens = tokens + self.resampled_pos_embed(gh, gw).to(tokens.dtype)
        r = self.num_register_tokens
        if r:
            tokens = torch.cat([tokens[:, :1], self.register_tokens.expand(N, -1, -1), tokens[:, 1:]], dim=1)
        for blk in self.blocks:
            tokens = blk(tokens)
        return self.norm(tokens)[:, 1 + r:]
