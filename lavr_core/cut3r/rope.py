"""2-D rotary position embedding ("RoPE100") as CUT3R/CroCo use it.

A head of width ``D`` is split in two halves; the first half is rotated by the token's row ``y``,
the second by its column ``x``. Inside a half of width ``2Q`` (``Q = D/4``) channel ``i`` pairs with
channel ``i+Q`` and the pair turns by the angle ``p * base**(-i/Q)``::

    u' = u cos(a) - v sin(a)
    v' = v cos(a) + u sin(a)

Angles are computed straight from the position, so negative positions work: CUT3R puts its pose
token at ``(-1, -1)`` (the pure-torch fallback in the official repo looks angles up in a table and
cannot do that; its CUDA kernel, which we follow, can).

The tables depend only on the positions, so they are computed once per frame (:class:`RopeTable`)
and shared by every block and head instead of being rebuilt in each attention call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RopeTable:
    """Cosines and sines for a set of token positions.

    ``cos_y, sin_y, cos_x, sin_x``: ``[B, 1, N, Q]`` float32 (broadcast over heads);
    ``half()``: the same four rounded to float16, for the official image encoder, which casts q and
    k to float16 around RoPE; built lazily.
    """

    cos_y: torch.Tensor
    sin_y: torch.Tensor
    cos_x: torch.Tensor
    sin_x: torch.Tensor
    _half: tuple | None = None

    @property
    def num_tokens(self) -> int:
        return self.cos_y.shape[-2]

    def half(self) -> tuple[torch.Tensor, ...]:
        if self._half is None:
            # float32 cosines rounded to float16; the rotation itself then runs in float16
            # (checked bit-exact against the official encoder output of the tiny golden)
            self._half = tuple(c.half() for c in (self.cos_y, self.sin_y, self.cos_x, self.sin_x))
        return self._half


def inverse_frequencies(head_dim: int, base: float, device=None) -> torch.Tensor:
    """``base**(-i/Q)`` for ``i < Q = head_dim/4``, float32 (computed as the official code does)."""
    if head_dim % 4:
        raise ValueError(f"RoPE2D needs a head width divisible by 4, got {head_dim}")
    half = head_dim // 2
    return 1.0 / (base ** (torch.arange(0, half, 2, device=device).float() / half))


def rope_table(positions: torch.Tensor, head_dim: int, base: float) -> RopeTable:
    """Table for ``positions`` ``[B, N, 2]`` (integer ``(y, x)``)."""
    inv = inverse_frequencies(head_dim, base, positions.device)
    pos = positions.float()
    ay = pos[..., 0, None] * inv  # [B, N, Q]
    ax = pos[..., 1, None] * inv
    ay, ax = ay[:, None], ax[:, None]
    return RopeTable(ay.cos(), ay.sin(), ax.cos(), ax.sin())


def apply_rope(t: torch.Tensor, table: RopeTable, half_precision: bool = False) -> torch.Tensor:
    """Rotate ``t`` ``[B, heads, N, D]``; returns a new tensor of ``t``'s dtype.

    ``half_precision`` reproduces the official image encoder, which rounds q and k to float16,
    applies RoPE in float16 and converts back.
    """
    dtype = t.dtype
    if half_precision:
        t = t.half()
        cy, sy, cx, sx = table.half()
    else:  # like the official code, rotate in float32 whatever the model's dtype
        t = t.float()
        cy, sy, cx, sx = table.cos_y, table.sin_y, table.cos_x, table.sin_x
    q = t.shape[-1] // 4
    uy, vy, ux, vx = t.split(q, dim=-1)
    out = torch.cat((uy * cy - vy * sy, vy * cy + uy * sy, ux * cx - vx * sx, vx * cx + ux * sx), dim=-1)
    return out.to(dtype)


class RopePositions:
    """Token positions plus their RoPE tables, built once per head width and reused.

    ``positions``: ``[B, N, 2]`` integer ``(y, x)``. Pass one of these (or ``None`` for no RoPE) to
    every attention that rotates by these positions.
    """

    def __init__(self, positions: torch.Tensor, base: float):
        self.positions = positions
        self.base = float(base)
        self._tables: dict[int, RopeTable] = {}

    def table(self, head_dim: int) -> RopeTable:
        t = self._tables.get(head_dim)
        if t is None:
            t = self._tables[head_dim] = rope_table(self.positions, head_dim, self.base)
        return t

    def __len__(self) -> int:
        return self.positions.shape[1]
