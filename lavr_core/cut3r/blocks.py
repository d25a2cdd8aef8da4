"""Transformer building blocks of CUT3R (pre-LayerNorm ViT blocks with 2-D RoPE).

Submodule names (``norm1``, ``attn.qkv``, ``cross_attn.projq``, ``norm_y``...) are those of the
official checkpoints, so state dicts load key for key. Token tensors are ``[B, N, C]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .rope import RopePositions, apply_rope

LN_EPS = 1e-6


def layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=LN_EPS)


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` (exact GELU)."""

    def __init__(self, dim: int, hidden: int, out: int | None = None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    """``[B, N, C]`` -> ``[B, n, N, C/n]``."""
    b, t, c = x.shape
    return x.view(b, t, n, c // n).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


class SelfAttention(nn.Module):
    """Multi-head self-attention; RoPE on q and k when positions are given.

    ``rope_in_half``: round q and k to float16 around RoPE, as the official *image encoder* does
    (its CroCo blocks cast to float16 before the RoPE kernel). Only the encoder sets it.
    """

    def __init__(self, dim: int, num_heads: int, rope_in_half: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.rope_in_half = rope_in_half
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, pos: RopePositions | None) -> torch.Tensor:
        b, t, c = x.shape
        h = self.num_heads
        q, k, v = self.qkv(x).view(b, t, 3, h, c // h).permute(2, 0, 3, 1, 4).unbind(0)
        if pos is not None:
            table = pos.table(c // h)
            q = apply_rope(q, table, self.rope_in_half)
            k = apply_rope(k, table, self.rope_in_half)
        return self.proj(_merge(F.scaled_dot_product_attention(q, k, v)))


class CrossAttention(nn.Module):
    """Queries from ``x``, keys and values from ``y``; RoPE by each side's positions."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.projq = nn.Linear(dim, dim)
        self.projk = nn.Linear(dim, dim)
        self.projv = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor, xpos: RopePositions | None,
                ypos: RopePositions | None) -> torch.Tensor:
        h = self.num_heads
        hd = x.shape[-1] // h
        q = _heads(self.projq(x), h)
        k = _heads(self.projk(y), h)
        v = _heads(self.projv(y), h)
        if xpos is not None:  # each side is rotated only when it has positions
            q = apply_rope(q, xpos.table(hd))
        if ypos is not None:
            k = apply_rope(k, ypos.table(hd))
        return self.proj(_merge(F.scaled_dot_product_attention(q, k, v)))


class EncoderBlock(nn.Module):
    """Pre-LN ViT block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, rope_in_half: bool = False):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = SelfAttention(dim, num_heads, rope_in_half)
        self.norm2 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, pos: RopePositions | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), pos)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """Self-attention, then cross-attention to another token stream ``y`` (normalised by ``norm_y``), then MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, norm_other: bool = True):
        super().__init__()
        self.norm1 = layer_norm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm2 = layer_norm(dim)
        self.norm3 = layer_norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.norm_y = layer_norm(dim) if norm_other else nn.Identity()

    def forward(self, x: torch.Tensor, y: torch.Tensor, xpos: RopePositions | None,
                ypos: RopePositions | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), xpos)
        y = self.norm_y(y)
        x = x + self.cross_attn(self.norm2(x), y, xpos, ypos)
        return x + self.mlp(self.norm3(x))


class ModulatedNorm(nn.Module):
    """adaLN: ``LN(x) * (1 + scale) + shift`` with ``(shift, scale)`` from ``Linear(SiLU(cond))``."""

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.norm = layer_norm(dim)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        shift, scale = self.mlp(cond).chunk(2, dim=-1)
        return self.norm(x) * (1 + scale[:, None]) + shift[:, None]


class ModulatedBlock(nn.Module):
    """ViT block whose two LayerNorms are modulated by a conditioning vector (the pose token)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = ModulatedNorm(dim, dim)
        self.attn = SelfAttention(dim, num_heads)
        self.norm2 = ModulatedNorm(dim, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, cond: torch.Tensor, pos: RopePositions | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x, cond), pos)
        return x + self.mlp(self.norm2(x, cond))


class PatchEmbed(nn.Module):
    """Non-overlapping ``p x p`` convolution; returns tokens ``[B, h*w, C]`` and positions ``[B, h*w, 2]``.

    Positions are ``(row, col)`` of each patch, row-major, starting at 0.
    """

    def __init__(self, in_chans: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
        x = self.proj(x)
        gh, gw = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), patch_positions(b, gh, gw, x.device)


def patch_positions(batch: int, rows: int, cols: int, device=None) -> torch.Tensor:
    """``[B, rows*cols, 2]`` int64 ``(row, col)`` grid, row-major."""
    yy, xx = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
    return torch.stack((yy, xx), -1).view(1, rows * cols, 2).expand(batch, -1, -1)
