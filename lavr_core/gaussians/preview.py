"""Preview frames of Gaussians: renders from a grid of cameras, as a ComfyUI ``IMAGE`` ``[N, h, w, 3]``.

``render_preview(gaussians, c2w, K, width, height)`` renders

* a static ``Gaussians`` set from every camera of ``c2w`` (``[N, 4, 4]`` or ``[V, T, 4, 4]``), and
* a ``GaussianSequence`` frame ``v*T + t`` from camera ``(v, t)`` showing timestep ``t``
  (``sequence.at(t)``: the static part plus that timestep's set), i.e. in the view-major order the
  frames of a V x T grid travel in (``lavr_core.grid``).

The image is the camera's ``width x height`` frame, scaled down (intrinsics with it) so that its long
side is at most ``max_side`` pixels: previews stay cheap on the CPU for large inputs.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..errors import InputError
from .render import render
from .types import GaussianSequence, Gaussians

#: Default longest side of a preview frame, in pixels.
PREVIEW_MAX_SIDE = 512


def preview_size(width: int, height: int, max_side: int = PREVIEW_MAX_SIDE) -> tuple[int, int]:
    """``(w, h)`` of a ``width x height`` frame scaled down (aspect kept) to a long side of at most ``max_side``."""
    if not (isinstance(max_side, int) and max_side >= 1):
        raise InputError(f"The preview size limit {max_side!r} must be a positive number of pixels.", "Use e.g. 512.")
    s = min(1.0, max_side / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def scale_intrinsics(K: Tensor, sx: float, sy: float) -> Tensor:
    """Intrinsics ``[..., 3, 3]`` for the same camera on an image resized by ``(sx, sy)`` (corner origin)."""
    S = torch.diag(torch.tensor([sx, sy, 1.0], dtype=K.dtype, device=K.device))
    return S @ K


def _grid(c2w: Tensor, K: Tensor) -> tuple[Tensor, Tensor]:
    c2w, K = torch.as_tensor(c2w), torch.as_tensor(K)
    if c2w.ndim == 3:
        c2w = c2w[:, None]
    if K.ndim == 3:
        K = K[:, None]
    if c2w.ndim != 4 or c2w.shape[-2:] != (4, 4) or K.shape != (*c2w.shape[:2], 3, 3):
        raise InputError(f"Preview cameras have shapes {tuple(c2w.shape)} and {tuple(K.shape)}; expected "
                         "[N, 4, 4] / [N, 3, 3] or [V, T, 4, 4] / [V, T, 3, 3].",
                         "Give one camera-to-world pose and one K per preview frame.")
    return c2w, K


def render_preview(gaussians: Gaussians | GaussianSequence, c2w: Tensor, K: Tensor, width: int, height: int, *,
                   max_side: int = PREVIEW_MAX_SIDE, background=(0.0, 0.0, 0.0), device=None, backend: str = "auto",
                   step: Callable[[], None] | None = None) -> Tensor:
    """Render ``gaussians`` from every camera (module docstring); returns ``[N, h, w, 3]`` float32 in
    [0, 1] on the CPU. ``device`` is where rendering runs (default: the Gaussians' device); ``step``
    is called after each frame (progress, interrupt)."""
    c2w, K = _grid(c2w, K)
    V, T = c2w.shape[:2]
    if isinstance(gaussians, GaussianSequence):
        if len(gaussians) != T:
            raise InputError(f"The Gaussian sequence has {len(gaussians)} timesteps but the cameras cover {T}.",
                             "Give one camera per view and timestep ([V, T, 4, 4]).")
        sets = [gaussians.at(t) for t in range(T)]
    elif isinstance(gaussians, Gaussians):
        sets = [gaussians] * T
    else:
        raise InputError(f"Cannot preview a {type(gaussians).__name__}; expected Gaussians.",
                         "Connect a LAVR_GAUSSIANS output.")
    w, h = preview_size(int(width), int(height), max_side)
    Ks = scale_intrinsics(K.to(torch.float64), w / width, h / height)
    dev = torch.device(device) if device is not None else sets[0].device
    out = torch.empty(V * T, h, w, 3)
    for t in range(T):  # timestep outer: one set on the render device at a time
        g = sets[t].to(dev, torch.float32)
        for v in range(V):
            rgb, _, _ = render(g, c2w[v, t].to(torch.float32), Ks[v, t].to(torch.float32), w, h,
                               background=background, backend=backend)
            out[v * T + t] = rgb[0].clamp(0, 1).float().cpu()
            if step:
                step()
    return out
