"""2D rotary position embedding of the VGGT aggregator.

A head of width D is split in two halves: the first half is rotated by the token's row (y), the
second by its column (x). Within a half of width D/2, feature ``i`` and feature ``i + D/4`` form a
rotation pair turned by ``pos * base**(-i / (D/4))``. Patch tokens sit at ``(row + 1, col + 1)``;
camera and register tokens sit at ``(0, 0)`` and so are not rotated at all.
"""

from __future__ import annotations

import torch
from torch import Tensor


class RoPE2D:
    """Applies the rotation to ``x`` ``[B, heads, N, D]`` given integer positions ``[B, N, 2]`` (y, x).

    Not an ``nn.Module``: it has no parameters and one instance is shared by every block. The
    cos/sin tables are computed in float32 (then cast), as the official code does, and cached per
    (width, largest position, device, dtype).
    """

    def __init__(self, base: float = 100.0):
        self.base = float(base)
        self._cache: dict[tuple, tuple[Tensor, Tensor]] = {}
        self._gathered: list[tuple] = []

    def tables(self, half_dim: int, length: int, device, dtype) -> tuple[Tensor, Tensor]:
        """cos and sin ``[length, half_dim]`` for positions ``0 .. length-1``."""
        key = (half_dim, length, str(device), dtype)
        hit = self._cache.get(key)
        if hit is None:
            exponents = torch.arange(0, half_dim, 2, device=device).float() / half_dim
            inv_freq = 1.0 / (self.base ** exponents)
            angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_freq[None]
            angles = torch.cat([angles, angles], dim=-1).to(dtype)
            hit = (angles.cos(), angles.sin())
            if len(self._cache) > 32:  # many image sizes in one session: keep memory bounded
                self._cache.clear()
            self._cache[key] = hit
        return hit

    def _tables_at(self, pos: Tensor, half: int, device, dtype) -> tuple[Tensor, ...]:
        """cos/sin gathered at the rows' and columns' positions, ``4 x [B, 1, N, half]``.

        Every block of a forward uses the same positions (q and k too): the gather is done once.
        The key is the positions' storage and layout, and the entry holds the tensor itself so that
        storage cannot be freed and reused by different positions while cached.
        """
        key = (pos.data_ptr(), tuple(pos.shape), tuple(pos.stride()), half, str(device), dtype)
        for entry in self._gathered:
            if entry[0] == key:
                return entry[2]
        p = pos.long()
        cos, sin = self.tables(half, int(p.max()) + 1, device, dtype)
        out = tuple(t[p[..., i]][:, None] for i in (0, 1) for t in (cos, sin))
        self._gathered = [(key, pos, out), *self._gathered[:1]]  # frame and global attention
        return out

    @staticmethod
    def _rotate_1d(x: Tensor, c: Tensor, s: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=-1)
        return x * c + torch.cat([-b, a], dim=-1) * s

    def __call__(self, x: Tensor, pos: Tensor) -> Tensor:
        if x.shape[-1] % 4:
            raise ValueError(f"RoPE2D needs a head width divisible by 4, got {x.shape[-1]}")
        half = x.shape[-1] // 2
        cy, sy, cx, sx = self._tables_at(pos, half, x.device, x.dtype)
        y_part, x_part = x.chunk(2, dim=-1)
        return torch.cat([self._rotate_1d(y_part, cy, sy), self._rotate_1d(x_part, cx, sx)], dim=-1)


def patch_positions(batch: int, grid_h: int, grid_w: int, num_special: int, device) -> Tensor:
    """Positions ``[batch, num_special + grid_h*grid_w, 2]`` (y, x) of one frame's token sequence.

    Special tokens (camera, registers) get (0, 0); patch ``(r, c)`` in row-major order gets
    ``(r + 1, c + 1)`` so that no patch shares the special tokens' un-rotated position.
    """
    ys, xs = torch.meshgrid(torch.arange(grid_h, device=device), torch.arange(grid_w, device=device), indexing="ij")
    grid = torch.stack([ys.reshape(-1), xs.reshape(-1)], dim=-1) + 1
    special = torch.zeros(num_special, 2, dtype=grid.dtype, device=device)
    return torch.cat([special, grid], dim=0)[None].expand(batch, -1, -1)
