"""The training-free Gaussian initialisation: Gaussians from VGGT's depth, cameras and the pixels,
with no Gaussian-head weights at all (what users get today, and where the trained head starts).

One Gaussian per input pixel ``(u, v)`` of every frame:

* **centre**: the pixel's depth ``d`` unprojected through its camera, at the pixel *centre*
  ``(u + 0.5, v + 0.5)`` (LaVR's pixel convention, ``lavr_core.conventions``), into the world frame
  of the cameras.
* **scale**: isotropic, ``scale_factor * d / f`` with ``f = sqrt(fx * fy)``: ``d / f`` is the
  pixel's footprint (the width one pixel covers at that depth), so neighbouring splats overlap the
  way neighbouring pixels touch, at any resolution and scene scale. The default 0.5 footprints is a
  standard deviation that covers the gap between pixel centres without blurring edges much.
* **opacity**: from VGGT's depth confidence ``c = 1 + exp(x) >= 1`` as ``1 - 1/c = sigmoid(x)``
  (the logistic of the confidence logit the head produced), clipped to ``[min_opacity,
  max_opacity]``: unsure pixels (sky, blur, edges) become faint instead of floating walls.
* **colour**: the pixel's RGB, as the SH DC term (degree 0).
* **rotation**: the identity quaternion ``(1, 0, 0, 0)`` (isotropic Gaussians need no other).

``PixelGaussians`` keeps these as per-pixel maps (``[..., H, W, k]``) so the Gaussian head can
refine them and training can render them; ``to_gaussians`` flattens one timestep into a
``Gaussians`` set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..camera.transforms import invert_pose
from ..errors import InputError
from ..gaussians.types import Gaussians, rgb_to_sh_dc
from ..vggt.camera import unproject_depth_map_to_point_map

#: Where on a pixel its Gaussian is unprojected: the pixel centre.
PIXEL_OFFSET = 0.5


@dataclass(frozen=True)
class InitConfig:
    """Knobs of the training-free initialisation (see the module docstring)."""

    scale_factor: float = 0.5
    min_opacity: float = 0.01
    max_opacity: float = 0.99

    def __post_init__(self):
        if not self.scale_factor > 0:
            raise InputError(f"The Gaussian scale factor must be positive, got {self.scale_factor}.",
                             "Use about 0.5-1 pixel footprints.")
        if not 0 < self.min_opacity <= self.max_opacity < 1:
            raise InputError(f"Opacity limits [{self.min_opacity}, {self.max_opacity}] must satisfy "
                             "0 < min <= max < 1.", "Use e.g. min 0.01, max 0.99.")


@dataclass
class PixelGaussians:
    """One Gaussian per pixel, as maps over a leading frame shape ``F`` (e.g. ``[B, V, T]``).

    Attributes (world frame of ``c2w``, scene units):
        means ``[*F, H, W, 3]``; scales ``[*F, H, W, 3]`` linear std; rotations ``[*F, H, W, 4]``
        wxyz, unit; opacities ``[*F, H, W]`` in (0, 1); rgb ``[*F, H, W, 3]`` (unclamped; the
        renderer clamps the colour at 0).
    """

    means: Tensor
    scales: Tensor
    rotations: Tensor
    opacities: Tensor
    rgb: Tensor

    def flatten(self, mask: Tensor | None = None, meta: dict | None = None) -> Gaussians:
        """All pixels' Gaussians as one ``Gaussians`` set (optionally only where ``mask [*F, H, W]``)."""
        m, s, r = self.means.reshape(-1, 3), self.scales.reshape(-1, 3), self.rotations.reshape(-1, 4)
        o, c = self.opacities.reshape(-1), self.rgb.reshape(-1, 3)
        if mask is not None:
            keep = mask.reshape(-1)
            if not keep.any():
                raise InputError("Every pixel was filtered out: no Gaussians are left.",
                                 "Lower the confidence threshold.")
            m, s, r, o, c = m[keep], s[keep], r[keep], o[keep], c[keep]
        return Gaussians(m, s, r, o, rgb_to_sh_dc(c)[:, None], dict(meta or {}))

    def index(self, idx) -> "PixelGaussians":
        """The maps of the frames ``idx`` selects on the leading axes (e.g. ``[b, :, t]``)."""
        return PixelGaussians(self.means[idx], self.scales[idx], self.rotations[idx], self.opacities[idx], self.rgb[idx])


def _check(depth: Tensor, conf: Tensor, images: Tensor, c2w: Tensor, K: Tensor) -> tuple[int, ...]:
    if depth.ndim < 3:
        raise InputError(f"Depth maps have shape {tuple(depth.shape)}; expected [..., H, W].", "Pass VGGT's depth.")
    lead, (H, W) = tuple(depth.shape[:-2]), tuple(depth.shape[-2:])
    want = {"depth confidence": (conf, (*lead, H, W)), "frames": (images, (*lead, H, W, 3)),
            "camera poses": (c2w, (*lead, 4, 4)), "intrinsics": (K, (*lead, 3, 3))}
    for name, (t, shape) in want.items():
        if tuple(t.shape) != shape:
            raise InputError(f"The {name} have shape {tuple(t.shape)}; expected {list(shape)} to match depth "
                             f"{tuple(depth.shape)}.", "Pass one map/camera per frame, frames channels-last.")
    return lead


def training_free(depth: Tensor, depth_conf: Tensor, images: Tensor, c2w: Tensor, K: Tensor,
                  config: InitConfig | None = None) -> PixelGaussians:
    """Per-pixel Gaussians from depth and cameras (module docstring).

    Args:
        depth: ``[*F, H, W]`` (or ``[*F, H, W, 1]``) z-depth along each camera's axis.
        depth_conf: ``[*F, H, W]`` VGGT confidence (``>= 1``).
        images: ``[*F, H, W, 3]`` RGB in [0, 1] (channels last) of the same size.
        c2w: ``[*F, 4, 4]`` camera-to-world (OpenCV); K: ``[*F, 3, 3]`` pixels of ``W x H``.
    """
    cfg = config or InitConfig()
    if depth.ndim >= 4 and depth.shape[-1] == 1 and depth.shape[-2] != 1:
        depth = depth[..., 0]
    lead = _check(depth, depth_conf, images, c2w, K)
    fx, fy = K[..., 0, 0], K[..., 1, 1]
    if not (torch.isfinite(fx).all() and torch.isfinite(fy).all() and (fx > 0).all() and (fy > 0).all()):
        raise InputError("A camera has a zero field of view or a non-finite focal length, so its pixels cannot be "
                         "unprojected (VGGT predicts this only with wrong or untrained weights).",
                         "Check that the VGGT checkpoint is the released one, or pass known cameras (c2w, K).")
    d = depth.detach()
    if not (torch.isfinite(d).all() and (d > 0).all()):
        raise InputError("Depth maps hold non-positive, NaN or infinite values.",
                         "Check the VGGT weights and the input frames (RGB in [0, 1]).")
    H, W = depth.shape[-2:]
    dt = depth.dtype
    flat = depth.reshape(-1, H, W)
    w2c = invert_pose(c2w.to(torch.float64)).reshape(-1, 4, 4)[:, :3, :]
    Kf = K.to(torch.float64).reshape(-1, 3, 3)
    means = unproject_depth_map_to_point_map(flat, w2c, Kf, pixel_offset=PIXEL_OFFSET).reshape(*lead, H, W, 3)
    f = (K[..., 0, 0] * K[..., 1, 1]).sqrt().to(dt)[..., None, None]          # [*F, 1, 1]
    scale = (cfg.scale_factor * depth / f)[..., None].expand(*depth.shape, 3)
    opacity = (1.0 - 1.0 / depth_conf.to(dt)).clamp(cfg.min_opacity, cfg.max_opacity)
    rot = torch.zeros(*depth.shape, 4, dtype=dt, device=depth.device)
    rot[..., 0] = 1.0
    return PixelGaussians(means.to(dt), scale, rot, opacity, images.to(dt))
