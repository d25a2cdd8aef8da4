"""Reference conditioning of the Fused 4D grid: a fixed-view video (first row) and/or a freeze-time
sweep (first column) given as pixels, encoded into their grid cells.

Encoding follows ``layout``'s frame mapping: the fixed-view video (``4(T-1)+1`` frames) is encoded as
one video into row 0; the freeze-time sweep is one image per view, each encoded alone (the causal
VAE's first-frame latent), into column 0. Where both give cell ``(0, 0)`` the video's latent is kept
(it is the same frame: view 0 at time 0).

How the known cells enter the model (``ReferenceMode``):

* ``"add"`` (4Real-Video-V2): the reference's patch embedding is added to the noisy tokens of its
  cells. The embedding is the patchifier's linear map without a second bias, i.e. exactly
  ``patch_embedding(x + r) = patch_embedding(x) + W r``; it is therefore done in latent space by
  adding ``r`` to the model input at those cells, which works on any Wan DiT without a hook.
* ``"replace"``: only the noisy reference is shown (plain inpainting); the base model's prior.

In both modes the known cells follow the exact straight path ``(1 - sigma) r + sigma * noise``
(their velocity is set to ``noise - r``), so the model always sees them at the current noise level
and the sampler returns them exactly; training uses the same inputs (``lavr_core.train.fused4d``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from .layout import GridTokens, latent_times

REFERENCE_MODES = ("add", "replace")


@dataclass
class GridReference:
    """Known cells of a grid.

    Attributes:
        latents: ``[1, C, V*T, H, W]`` normalised VAE latents, view-major; zeros in unknown cells.
        known: ``[V, T]`` bool, True where a cell is given.
        mode: ``"add"`` or ``"replace"`` (module docstring).
    """

    latents: torch.Tensor
    known: torch.Tensor
    mode: str = "add"

    def __post_init__(self):
        if self.mode not in REFERENCE_MODES:
            raise InputError(f"Unknown reference mode {self.mode!r}.", f"Use one of {', '.join(REFERENCE_MODES)}.")
        if self.known.dtype != torch.bool or self.known.ndim != 2:
            raise InputError("The known-cell map must be a [views, times] bool tensor.",
                             "Build it with build_reference.")

    @property
    def count(self) -> int:
        return int(self.known.sum())

    def mask(self, grid: GridTokens) -> torch.Tensor:
        """``[1, 1, V*T, 1, 1]`` bool, for ``torch.where`` over latents."""
        return grid.cell_mask(self.known)

    def describe(self) -> str:
        v, t = self.known.shape
        parts = []
        if bool(self.known[0].all()) and t > 1:
            parts.append("row")
        if bool(self.known[:, 0].all()) and v > 1:
            parts.append("column")
        return "+".join(parts) or ("none" if self.count == 0 else f"{self.count} cells")


def _to_video(images: torch.Tensor, what: str) -> torch.Tensor:
    """IMAGE ``[N, H, W, 3]`` in [0, 1] -> ``[1, 3, N, H, W]`` in [-1, 1]."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"The {what} must be an IMAGE batch [frames, height, width, 3]; got {shape}.",
                         "Connect a video (Load Video / VHS) or images.")
    if images.shape[0] == 0:
        raise InputError(f"The {what} holds no frames.", "Connect a video with frames.")
    if not torch.isfinite(images).all():
        raise InputError(f"The {what} holds NaN or infinite values.", "Check the node that produced it.")
    h, w = images.shape[1:3]
    if h % 16 or w % 16:
        raise InputError(f"The {what} is {w}x{h}; the Wan VAE and DiT need sizes divisible by 16.",
                         f"Resize or crop it (e.g. to {16 * max(1, round(w / 16))}x{16 * max(1, round(h / 16))}).")
    return images.float().clamp(0, 1).mul(2).sub(1).permute(3, 0, 1, 2)[None]


def pick_views(num_frames: int, views: int) -> list[int]:
    """Indices of ``views`` frames spread evenly over a sweep of ``num_frames`` (first and last kept)."""
    if num_frames < views:
        raise InputError(f"The freeze-time reference has {num_frames} frames for {views} views.",
                         "Give at least one frame per view, or lower the number of views.")
    if views == 1:
        return [0]
    return [round(i * (num_frames - 1) / (views - 1)) for i in range(views)]


@torch.no_grad()
def encode_fixed_view(vae, video: torch.Tensor, frames: int) -> torch.Tensor:
    """The first ``frames`` frames of an IMAGE video -> ``[C, T, H/8, W/8]`` latents (one view row)."""
    latent_times(frames)
    if video.shape[0] < frames:
        raise InputError(f"The fixed-view reference has {video.shape[0]} frames; the grid needs {frames} per view.",
                         f"Lower frames to at most {4 * ((video.shape[0] - 1) // 4) + 1}, or use a longer video.")
    x = _to_video(video[:frames], "fixed-view reference video")
    return vae.encode(x.to(_vae_device(vae)))[0].float()


@torch.no_grad()
def encode_freeze_time(vae, images: torch.Tensor, views: int) -> torch.Tensor:
    """``views`` frames of a freeze-time sweep, each encoded alone -> ``[C, V, H/8, W/8]`` (column 0)."""
    x = _to_video(images, "freeze-time reference")
    idx = pick_views(x.shape[2], views)
    device = _vae_device(vae)
    return torch.cat([vae.encode(x[:, :, i:i + 1].to(device))[0].float() for i in idx], dim=1)


def _vae_device(vae) -> torch.device:
    p = next(vae.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def build_reference(grid: GridTokens, channels: int, fixed_view: torch.Tensor | None = None,
                    freeze_time: torch.Tensor | None = None, mode: str = "add") -> GridReference:
    """Place encoded references into their cells.

    Args:
        grid: the grid's token layout.
        channels: latent channels (16 for the Wan VAE).
        fixed_view: ``[C, T, H, W]`` latents of view 0's video (``encode_fixed_view``) or ``None``.
        freeze_time: ``[C, V, H, W]`` latents of the views at time 0 (``encode_freeze_time``) or ``None``.
    """
    latents = torch.zeros(1, channels, grid.views, grid.times, grid.height, grid.width)
    known = torch.zeros(grid.views, grid.times, dtype=torch.bool)
    if freeze_time is not None:
        _check_shape(freeze_time, (channels, grid.views, grid.height, grid.width), "freeze-time reference")
        latents[0, :, :, 0] = freeze_time.float().cpu()
        known[:, 0] = True
    if fixed_view is not None:
        _check_shape(fixed_view, (channels, grid.times, grid.height, grid.width), "fixed-view reference")
        latents[0, :, 0] = fixed_view.float().cpu()
        known[0] = True
    return GridReference(latents.reshape(1, channels, grid.frames, grid.height, grid.width), known, mode)


def _check_shape(t: torch.Tensor, want: tuple, what: str) -> None:
    if tuple(t.shape) != want:
        raise InputError(f"The {what} latents are {tuple(t.shape)}; the grid needs {want} "
                         "(channels, cells, height, width).",
                         "Give both references at the same size, and the sweep one frame per view.")
