"""How a V x T grid of latent frames becomes one Wan token sequence, and how it maps to video frames.

Grid cell ``(v, t)`` is one **latent frame**: view ``v`` (grid row, a fixed viewpoint) at latent time
``t`` (grid column). The ``V*T`` cells are stacked **view-major** along Wan's frame axis,
``frame = v * T + t``, so the latents are ``[B, C, V*T, H, W]`` and, after Wan's ``(1, 2, 2)``
patchify, token ``n = (v*T + t) * h*w + s`` in the [v, t, s] order of
``lavr_core.attention.fused_view_time_attention``. Every self-attention then keeps only the pairs
with the same view or the same time, and RoPE puts cell ``(v, t)`` at frame position
``v * T_max + t`` (``lavr_core.attention.fused_rope_positions``).

Latent frames <-> video frames (Wan VAE, causal, 4x in time). **Each view row is its own video**:
its ``T`` latent frames are the encoding of ``F = 4 (T - 1) + 1`` video frames, and decode back to
``F`` frames. Column ``t = 0`` is special: the causal VAE encodes a video's first frame on its own,
so latent ``(v, 0)`` is exactly the image latent of view ``v``'s frame 0. A freeze-time reference
(one image per view at time 0) is therefore encoded image by image, and lands in column 0
consistent with the rows. The output IMAGE is ``V`` videos of ``F`` frames, view-major, and
``GridLayout.times = F`` (output frames per view), not ``T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..attention import fused_rope_positions, ideal_density, wan_attention_fn
from ..errors import InputError

#: Wan VAE: ``4k+1`` video frames <-> ``k+1`` latent frames.
TEMPORAL_STRIDE = 4


def latent_times(frames: int, stride: int = TEMPORAL_STRIDE) -> int:
    """Latent frames of one view row of ``frames`` video frames (``4k+1 -> k+1``)."""
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1 or (frames - 1) % stride:
        lo = stride * ((max(int(frames), 2) - 1) // stride) + 1
        raise InputError(f"{frames!r} frames per view do not fit the Wan VAE, which needs {stride}k+1 frames.",
                         f"Use e.g. {lo} or {lo + stride} frames per view.")
    return (frames - 1) // stride + 1


def video_frames(times: int, stride: int = TEMPORAL_STRIDE) -> int:
    """Video frames of one view row of ``times`` latent frames."""
    return stride * (times - 1) + 1


@dataclass(frozen=True)
class GridTokens:
    """The token layout of a ``views x times`` latent grid for a Wan DiT.

    Attributes:
        views: V >= 1, grid rows (fixed viewpoints).
        times: T >= 1, latent frames per view (grid columns).
        height / width: latent cells per frame (pixels / 8); multiples of the patch size.
        patch: Wan's (frames, height, width) patch size; the frame patch must be 1 (one cell = one
            latent frame = one token frame).
        t_max: RoPE frame positions reserved per view (``>= times``); ``None`` = ``times``, which gives
            the positions of a plain ``V*T``-frame video.
    """

    views: int
    times: int
    height: int
    width: int
    patch: tuple[int, int, int] = (1, 2, 2)
    t_max: int | None = None

    def __post_init__(self):
        for name in ("views", "times", "height", "width"):
            n = getattr(self, name)
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise InputError(f"The 4D grid needs a positive whole number for {name}, got {n!r}.",
                                 "Give views, frames and a size of at least one latent patch.")
        if self.patch[0] != 1:
            raise InputError(f"This DiT patches {self.patch[0]} latent frames together; the fused grid needs one "
                             "latent frame per token frame.", "Use a Wan2.1 DiT (patch size 1x2x2).")
        if self.height % self.patch[1] or self.width % self.patch[2]:
            raise InputError(f"A {self.width}x{self.height} latent is not a multiple of the patch size "
                             f"{self.patch[2]}x{self.patch[1]}.", "Use frame sizes divisible by 16 pixels.")
        if self.t_max is not None and self.t_max < self.times:
            raise InputError(f"T_max = {self.t_max} is less than the {self.times} latent frames per view: views "
                             "would overlap on the RoPE frame axis.",
                             "Set T_max to at least the latent frames per view.")

    @property
    def frames(self) -> int:
        """Latent frames of the whole sequence (``V*T``)."""
        return self.views * self.times

    @property
    def token_grid(self) -> tuple[int, int]:
        return self.height // self.patch[1], self.width // self.patch[2]

    @property
    def tokens_per_frame(self) -> int:
        h, w = self.token_grid
        return h * w

    @property
    def num_tokens(self) -> int:
        return self.frames * self.tokens_per_frame

    @property
    def density(self) -> float:
        """Fraction of (query, key) pairs the fused mask keeps."""
        return ideal_density(self.views, self.times)

    @property
    def video_frames(self) -> int:
        """Video frames per view after decoding (``4(T-1)+1``)."""
        return video_frames(self.times)

    def rope_positions(self) -> torch.Tensor:
        """``[N, 3]`` int64 (frame ``v*T_max + t``, row, column) positions in token order."""
        h, w = self.token_grid
        return fused_rope_positions(self.views, self.times, self.t_max or self.times, h, w)

    def attention_fn(self, backend: str = "auto"):
        """The self-attention function for ``WanModel.forward(self_attn_fn=...)``."""
        return wan_attention_fn(self.views, self.times, self.tokens_per_frame, backend)

    def pack(self, rows: torch.Tensor) -> torch.Tensor:
        """Per-view latents ``[V, C, T, H, W]`` (or ``[B, V, C, T, H, W]``) -> ``[B, C, V*T, H, W]`` view-major."""
        if rows.ndim == 5:
            rows = rows[None]
        b, v, c, t, hh, ww = rows.shape
        if (v, t, hh, ww) != (self.views, self.times, self.height, self.width):
            raise InputError(f"Latent rows {tuple(rows.shape)} do not match the grid {self.views} views x "
                             f"{self.times} times at {self.width}x{self.height}.", "Encode every view at one size.")
        return rows.permute(0, 2, 1, 3, 4, 5).reshape(b, c, v * t, hh, ww)

    def unpack(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, C, V*T, H, W]`` -> ``[B, V, C, T, H, W]``."""
        b, c, f, hh, ww = latents.shape
        if f != self.frames:
            raise InputError(f"The latents hold {f} frames; the grid has {self.views} x {self.times} = {self.frames}.",
                             "Pass the sequence this grid packed.")
        return latents.reshape(b, c, self.views, self.times, hh, ww).permute(0, 2, 1, 3, 4, 5)

    def cell_mask(self, cells: torch.Tensor) -> torch.Tensor:
        """A ``[V, T]`` boolean map of cells -> ``[1, 1, V*T, 1, 1]`` for broadcasting over latents."""
        if tuple(cells.shape) != (self.views, self.times):
            raise InputError(f"A cell map of shape {tuple(cells.shape)} is not {self.views} x {self.times}.",
                             "Give one entry per (view, latent time) cell.")
        return cells.reshape(1, 1, self.frames, 1, 1)
