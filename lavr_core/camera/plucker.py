"""Plücker ray embeddings: one 6-vector per output cell describing the camera ray through it.

The camera-conditioned video models LaVR wraps (Gen3R, the Wan-Fun Control-Camera models, CameraCtrl,
Wonderland) all feed the DiT a per-pixel ray map ``[o x d, d]``: ``o`` is the camera centre in world
coordinates, ``d`` the unit direction of the ray through the pixel centre, ``o x d`` its moment.
The map is computed on the grid the model wants (often the video's pixel grid, sometimes a latent
grid), so the trajectory's intrinsics are rescaled from its own ``width`` x ``height`` to that grid.

Conventions (``lavr_core.conventions``): OpenCV camera axes, c2w poses, ``K`` in pixels with the
principal point measured from the image corner, so pixel ``(row i, col j)`` has its centre at
``(j + 0.5, i + 0.5)``. Output layout is channels-first ``[..., 6, out_h, out_w]``.
"""

from __future__ import annotations

import math
import numbers

import torch

from ..errors import InputError, TrajectoryError

#: Channel layouts callers can ask for. ``"o_cross_d,d"`` is what Gen3R, CameraCtrl and Wan-Fun use.
PLUCKER_ORDERS = ("o_cross_d,d", "d,o_cross_d", "o,d")

# Work in float64 (moments of far-away cameras lose digits in float32) but bound the size of the
# temporaries: this many float64 output values per chunk of frames (~64 MiB).
_CHUNK_VALUES = 1 << 23


def _positive_int(v, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) or int(v) != v or int(v) < 1:
        raise InputError(f"Ray grid {name} {v!r} is not a positive whole number.",
                         "Give the output size in cells (pixels or latent cells), e.g. 60 x 104.")
    return int(v)


def _ray_matrices(c2w: torch.Tensor, K: torch.Tensor, sx: float, sy: float, pixel_center: float,
                  order: str) -> torch.Tensor:
    """Per-camera linear maps ``[n, 6, 3]`` from grid coordinates to the 6 channels, before normalisation.

    For the homogeneous cell coordinate ``p = (j, i, 1)`` the (unnormalised) world direction is
    ``M p`` with ``M = R K'^-1 S`` (``S`` shifts by ``pixel_center``) and its moment is
    ``[o]_x M p``; both are linear in ``p``, so each camera reduces to a ``[6, 3]`` matrix ``A`` and
    the whole map is one matrix product ``A @ [j; i; 1]``.
    """
    Ks = K.clone()
    Ks[..., 0, :] = K[..., 0, :] * sx
    Ks[..., 1, :] = K[..., 1, :] * sy
    shift = torch.eye(3, dtype=K.dtype, device=K.device)
    shift[0, 2] = shift[1, 2] = pixel_center
    M = c2w[..., :3, :3] @ torch.linalg.solve(Ks, shift.expand_as(Ks))
    o = c2w[..., :3, 3]
    if order == "o,d":
        # Origin channels are constant per frame: a zero linear part plus the centre as offset.
        first = torch.zeros_like(M)
        first[..., :, 2] = o
    else:
        ox, oy, oz = o.unbind(-1)
        zero = torch.zeros_like(ox)
        skew = torch.stack([zero, -oz, oy, oz, zero, -ox, -oy, ox, zero], -1).reshape(*o.shape[:-1], 3, 3)
        first = skew @ M
    A = torch.cat([M, first], -2) if order == "d,o_cross_d" else torch.cat([first, M], -2)
    return A


def plucker_embedding(c2w: torch.Tensor, K: torch.Tensor, width: int, height: int, out_h: int, out_w: int,
                      *, pixel_center: float = 0.5, normalize_dirs: bool = True,
                      order: str = "o_cross_d,d", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Plücker ray map for each camera.

    Args:
        c2w: ``[..., 4, 4]`` (or ``[..., 3, 4]``) OpenCV camera-to-world poses.
        K: ``[..., 3, 3]`` intrinsics in pixels of a ``width`` x ``height`` image; broadcast against
            ``c2w``'s batch shape.
        width, height: the image size ``K`` refers to.
        out_h, out_w: the grid the rays are computed for. It spans the whole ``width`` x ``height``
            image (``K`` is scaled by ``out_w / width``, ``out_h / height``; different aspect ratios
            stretch, so crop ``K`` first if the video is cropped).
        pixel_center: where in a cell its ray passes, in cells: 0.5 = the cell centre (Gen3R,
            CameraCtrl, Wan-Fun, and the convention ``K`` follows); 0.0 = its top-left corner.
        normalize_dirs: unit directions (all the models above); ``False`` keeps ``K^-1 p`` rotated to
            the world, i.e. camera-space ``z = 1``.
        order: channel layout, one of ``PLUCKER_ORDERS``: ``"o_cross_d,d"`` = ``[o x d, d]``,
            ``"d,o_cross_d"`` = ``[d, o x d]``, ``"o,d"`` = raw ``[origin, direction]``.
        dtype: output dtype (computed in float64 regardless).

    Returns:
        ``[..., 6, out_h, out_w]`` on ``c2w``'s device: for the ray through cell ``(i, j)`` (row,
        column) with centre ``o`` and direction ``d`` in world coordinates, the channels above.

    Raises:
        TrajectoryError: wrong shapes, NaN/inf, zero or negative focal lengths.
        InputError: a bad grid size, ``pixel_center`` or ``order``.
    """
    if order not in PLUCKER_ORDERS:
        raise InputError(f"Unknown Plücker channel order {order!r}.", f"Use one of {', '.join(PLUCKER_ORDERS)}.")
    out_h, out_w = _positive_int(out_h, "height"), _positive_int(out_w, "width")
    width, height = _positive_int(width, "source width"), _positive_int(height, "source height")
    if isinstance(pixel_center, bool) or not isinstance(pixel_center, numbers.Real) \
            or not 0.0 <= float(pixel_center) <= 1.0:
        raise InputError(f"pixel_center {pixel_center!r} is outside [0, 1].",
                         "Use 0.5 for ray through cell centres (the usual choice) or 0.0 for corners.")
    c2w = torch.as_tensor(c2w)
    K = torch.as_tensor(K, device=c2w.device)
    if c2w.ndim < 2 or tuple(c2w.shape[-2:]) not in ((4, 4), (3, 4)):
        raise TrajectoryError(f"Poses have shape {tuple(c2w.shape)}; expected [..., 4, 4] or [..., 3, 4].",
                              "Pass camera-to-world matrices.")
    if K.ndim < 2 or tuple(K.shape[-2:]) != (3, 3):
        raise TrajectoryError(f"Intrinsics have shape {tuple(K.shape)}; expected [..., 3, 3].",
                              "Pass 3x3 pinhole matrices in pixels.")
    try:
        batch = torch.broadcast_shapes(c2w.shape[:-2], K.shape[:-2])
    except RuntimeError:
        raise TrajectoryError(f"Poses {tuple(c2w.shape)} and intrinsics {tuple(K.shape)} do not match.",
                              "Give one K, or one per pose.") from None
    c2w = c2w.to(torch.float64)
    K = K.to(torch.float64)
    if not (torch.isfinite(c2w).all() and torch.isfinite(K).all()):
        raise TrajectoryError("Poses or intrinsics hold NaN or infinity.", "Fix the trajectory upstream.")
    if (K[..., 0, 0] <= 0).any() or (K[..., 1, 1] <= 0).any():
        raise TrajectoryError("A camera has a zero or negative focal length.", "Focal lengths must be positive pixels.")
    c2w = c2w.expand(*batch, *c2w.shape[-2:]).reshape(-1, *c2w.shape[-2:])
    K = K.expand(*batch, 3, 3).reshape(-1, 3, 3)
    A = _ray_matrices(c2w, K, out_w / width, out_h / height, float(pixel_center), order)

    dev = c2w.device
    grid = torch.stack(torch.meshgrid(torch.arange(out_w, dtype=torch.float64, device=dev),
                                      torch.arange(out_h, dtype=torch.float64, device=dev), indexing="xy"))
    grid = torch.cat([grid.reshape(2, -1), torch.ones(1, out_h * out_w, dtype=torch.float64, device=dev)])
    d0 = 0 if order == "d,o_cross_d" else 3
    n = A.shape[0]
    out = torch.empty(n, 6, out_h * out_w, dtype=dtype, device=dev)
    step = max(1, _CHUNK_VALUES // (6 * out_h * out_w))
    for s in range(0, n, step):
        rays = A[s:s + step] @ grid  # [n, 6, out_h * out_w]
        if normalize_dirs:
            dx, dy, dz = rays[:, d0], rays[:, d0 + 1], rays[:, d0 + 2]
            inv_norm = torch.addcmul(torch.addcmul(dx * dx, dy, dy), dz, dz).rsqrt_()[:, None]
            if order == "o,d":
                rays[:, 3:] *= inv_norm  # origins are points: not scaled by the direction's length
            else:
                rays *= inv_norm  # the moment o x d scales with d
        out[s:s + step] = rays
    return out.reshape(*batch, 6, out_h, out_w)


def plucker_for_trajectory(traj, out_h: int, out_w: int, relative_to_first: bool = True,
                           **kwargs) -> torch.Tensor:
    """``[T, 6, out_h, out_w]`` Plücker map of a ``CameraTrajectory`` on an ``out_h`` x ``out_w`` grid.

    ``relative_to_first`` expresses the poses in frame 0's camera (frame 0 = identity), as Gen3R,
    CameraCtrl and Wan-Fun do before computing rays. Other keyword arguments go to
    ``plucker_embedding`` (``pixel_center``, ``normalize_dirs``, ``order``, ``dtype``).
    """
    if relative_to_first:
        traj = traj.relative_to_first()
    return plucker_embedding(traj.c2w, traj.K, traj.width, traj.height, out_h, out_w, **kwargs)


def pack_plucker_frames(plucker: torch.Tensor, frames_per_latent: int = 4) -> torch.Tensor:
    """Fold a Plücker video into the temporal layout of Wan's 4x-compressed latents.

    ``plucker`` ``[T, C, H, W]`` or ``[B, T, C, H, W]`` with ``T = 1 + k * frames_per_latent``.
    Frame 0 is repeated ``frames_per_latent`` times (Wan's VAE keeps the first frame alone), then
    each group of ``frames_per_latent`` frames is stacked into channels, channel index
    ``c * frames_per_latent + j`` for channel ``c`` of the group's ``j``-th frame, as the Wan-Fun
    Control-Camera and Gen3R pipelines do. Returns ``[B, C * frames_per_latent, 1 + k, H, W]``.
    (Gen3R then duplicates the result along width for its appearance | geometry latent; that is its
    own step.)
    """
    x = plucker[None] if plucker.ndim == 4 else plucker
    if x.ndim != 5:
        raise InputError(f"Plücker video has shape {tuple(plucker.shape)}; expected [T, C, H, W] or [B, T, C, H, W].",
                         "Pass the output of plucker_embedding / plucker_for_trajectory.")
    B, T, C, H, W = x.shape
    g = int(frames_per_latent)
    if g < 1 or (T - 1) % g:
        raise InputError(f"{T} frames do not fold into latents of {g} frames (need 1 + {g}k frames).",
                         f"Resample the trajectory to e.g. {1 + g * max(1, round((T - 1) / g))} frames.")
    x = torch.cat([x[:, :1].expand(B, g, C, H, W), x[:, 1:]], 1)
    x = x.reshape(B, x.shape[1] // g, g, C, H, W).transpose(2, 3)
    return x.reshape(B, -1, C * g, H, W).transpose(1, 2)
