"""Colour maps for previews (depth, confidence) as ComfyUI IMAGE tensors."""

from __future__ import annotations

import torch

# Nine stops approximating the Turbo colour map (dark blue -> cyan -> yellow -> dark red): perceptually
# even enough for previews, and readable where plain jet bands.
_TURBO = torch.tensor([
    [0.190, 0.072, 0.232], [0.276, 0.421, 0.891], [0.158, 0.736, 0.923], [0.197, 0.949, 0.595],
    [0.644, 0.990, 0.234], [0.933, 0.812, 0.227], [0.984, 0.502, 0.138], [0.804, 0.196, 0.048],
    [0.480, 0.016, 0.011],
])


def colormap(values: torch.Tensor) -> torch.Tensor:
    """``[...]`` values in [0, 1] -> ``[..., 3]`` RGB in [0, 1] (Turbo)."""
    v = values.clamp(0, 1) * (len(_TURBO) - 1)
    lo = v.floor().long().clamp(max=len(_TURBO) - 2)
    w = (v - lo)[..., None]
    table = _TURBO.to(values.device)
    return table[lo] * (1 - w) + table[lo + 1] * w


def colorize_depth(depth: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Depth ``[T, H, W]`` -> IMAGE ``[T, H, W, 3]``: near is red, far is blue.

    Inverse depth is normalised by its 2nd-98th percentile over the whole clip (not per frame), so
    colours mean the same distance in every frame and a few outliers do not wash the preview out.
    """
    d = depth.float()
    ok = torch.isfinite(d) & (d > 0)
    if valid is not None:
        ok &= valid
    inv = torch.where(ok, 1.0 / d.clamp_min(1e-8), torch.zeros_like(d))
    sample = inv[ok]
    if sample.numel() == 0:
        return torch.zeros(*d.shape, 3)
    if sample.numel() > 1_000_000:
        sample = sample[torch.randperm(sample.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
    lo, hi = torch.quantile(sample, torch.tensor([0.02, 0.98]))
    t = (inv - lo) / (hi - lo).clamp_min(1e-8)
    img = colormap(t)  # high inverse depth (near) lands on the red end
    return torch.where(ok[..., None], img, torch.zeros_like(img))
