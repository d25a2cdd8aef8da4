"""Camera quantities derived from CUT3R outputs: pose matrices and intrinsics from point maps."""

from __future__ import annotations

import math

import torch

from ..camera.transforms import make_pose, quat_to_matrix


def pose_to_c2w(camera_pose: torch.Tensor) -> torch.Tensor:
    """``[..., 7]`` ``(tx, ty, tz, qw, qx, qy, qz)`` -> camera-to-world ``[..., 4, 4]`` (OpenCV camera axes)."""
    return make_pose(quat_to_matrix(camera_pose[..., 3:7]), camera_pose[..., :3])


def pixel_centres(height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """``[H, W, 2]`` ``(u, v)`` of pixel centres, corner origin (``u = x + 0.5``), as in ``conventions``."""
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype) + 0.5,
                          torch.arange(width, device=device, dtype=dtype) + 0.5, indexing="ij")
    return torch.stack((u, v), -1)


def estimate_focal(pts3d: torch.Tensor, iterations: int = 10) -> torch.Tensor:
    """Focal length ``[T]`` (pixels, fx = fy) that best reprojects camera-frame points ``[T, H, W, 3]``.

    The principal point is the image centre. Robust fit as in the official demo: a least-squares
    start, then ``iterations`` Weiszfeld reweightings (an L1 fit of the reprojection error), which
    copes with the few points that have bad depth. Points with z <= 0, non-finite coordinates or rays
    more than ~79 degrees off the axis are ignored.
    """
    t, h, w, _ = pts3d.shape
    p = pts3d.reshape(t, -1, 3).double()
    pix = (pixel_centres(h, w, pts3d.device, torch.float64) - torch.tensor([w / 2, h / 2], dtype=torch.float64,
                                                                        device=pts3d.device)).reshape(1, -1, 2)
    z = p[..., 2:3]
    ok = (z[..., 0] > 1e-8) & torch.isfinite(p).all(-1)
    xy = torch.where(ok[..., None], p[..., :2] / z.clamp(min=1e-8), torch.zeros_like(p[..., :2]))
    # a ray more than ~79 degrees off axis cannot be a pixel of any sane camera: such points (nearly
    # zero depth) would otherwise dominate the fit
    ok = ok & (xy.abs() <= 5).all(-1)
    xy = xy * ok[..., None]
    okf = ok.double()
    dot_xp = (xy * pix).sum(-1) * okf
    dot_xx = xy.square().sum(-1) * okf
    focal = dot_xp.sum(1) / dot_xx.sum(1).clamp(min=1e-12)
    for _ in range(iterations):
        dist = (pix - focal.view(-1, 1, 1) * xy).norm(dim=-1)
        wgt = dist.clamp(min=1e-8).reciprocal() * okf
        focal = (wgt * dot_xp).sum(1) / (wgt * dot_xx).sum(1).clamp(min=1e-12)
    # a degenerate map (all points invalid) falls back to a 60 degree field of view
    fallback = max(h, w) / (2 * math.tan(math.radians(30)))
    focal = torch.where(torch.isfinite(focal) & (focal > 0), focal, torch.full_like(focal, fallback))
    return focal.to(pts3d.dtype)


def intrinsics_from_focal(focal: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[T, 3, 3]`` pinhole intrinsics with ``fx = fy = focal`` and the principal point at the centre."""
    K = torch.zeros(*focal.shape, 3, 3, dtype=focal.dtype, device=focal.device)
    K[..., 0, 0] = focal
    K[..., 1, 1] = focal
    K[..., 0, 2] = width / 2
    K[..., 1, 2] = height / 2
    K[..., 2, 2] = 1
    return K


def transform_points(c2w: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    """Apply ``[..., 4, 4]`` poses to points ``[..., H, W, 3]``."""
    R, t = c2w[..., :3, :3], c2w[..., :3, 3]
    return torch.einsum("...ij,...hwj->...hwi", R, pts) + t[..., None, None, :]
