"""VGGT's camera encoding and its conversion to LaVR cameras.

Pose encoding ``[..., 9]`` (type ``absT_quaR_FoV``)::

    [ t (3) | quaternion x, y, z, w (4, scalar LAST) | fov_h | fov_w ]   (radians)

where ``[R | t]`` with ``R = R(quaternion)`` is the **world-to-camera** (extrinsic) transform in
OpenCV axes, and the intrinsics are ``fx = (W/2)/tan(fov_w/2)``, ``fy = (H/2)/tan(fov_h/2)``,
principal point ``(W/2, H/2)`` for the ``H x W`` image the model saw. The world frame is the first
camera's frame (by the trained convention, not enforced).

LaVR itself uses camera-to-world poses and wxyz quaternions (``lavr_core.conventions``);
``pose_encoding_to_c2w`` and ``pose_encoding_to_trajectory`` convert.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..camera.transforms import invert_pose, matrix_to_quat, quat_to_matrix
from ..errors import InputError


def quat_xyzw_to_matrix(q: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` from VGGT quaternions ``[..., 4]`` (x, y, z, w; any norm > 0)."""
    return quat_to_matrix(q[..., [3, 0, 1, 2]])


def matrix_to_quat_xyzw(R: Tensor) -> Tensor:
    """VGGT quaternions ``[..., 4]`` (x, y, z, w) with ``w >= 0`` from rotation matrices ``[..., 3, 3]``."""
    return matrix_to_quat(R)[..., [1, 2, 3, 0]]


def _image_hw(image_size_hw) -> tuple[float, float]:
    H, W = (float(v) for v in (image_size_hw.tolist() if isinstance(image_size_hw, Tensor) else image_size_hw))
    if H <= 0 or W <= 0:
        raise InputError(f"Image size {H:g}x{W:g} (HxW) is not positive.", "Pass (height, width) in pixels.")
    return H, W


def pose_encoding_to_extri_intri(pose_enc: Tensor, image_size_hw, build_intrinsics: bool = True
                                 ) -> tuple[Tensor, Tensor | None]:
    """``pose_enc`` ``[..., 9]`` -> extrinsics ``[..., 3, 4]`` (world-to-camera, OpenCV) and
    intrinsics ``[..., 3, 3]`` in pixels of the ``(H, W)`` image (``None`` if not asked for)."""
    if pose_enc.shape[-1] != 9:
        raise InputError(f"A VGGT pose encoding has 9 values, got shape {tuple(pose_enc.shape)}.",
                         "Pass the model's pose_enc output ([B, S, 9]).")
    R = quat_xyzw_to_matrix(pose_enc[..., 3:7])
    extrinsics = torch.cat([R, pose_enc[..., :3, None]], dim=-1)
    if not build_intrinsics:
        return extrinsics, None
    H, W = _image_hw(image_size_hw)
    fy = (H / 2.0) / torch.tan(pose_enc[..., 7] / 2.0)
    fx = (W / 2.0) / torch.tan(pose_enc[..., 8] / 2.0)
    K = torch.zeros(*pose_enc.shape[:-1], 3, 3, dtype=pose_enc.dtype, device=pose_enc.device)
    K[..., 0, 0] = fx
    K[..., 1, 1] = fy
    K[..., 0, 2] = W / 2
    K[..., 1, 2] = H / 2
    K[..., 2, 2] = 1.0
    return extrinsics, K


def extri_intri_to_pose_encoding(extrinsics: Tensor, intrinsics: Tensor, image_size_hw) -> Tensor:
    """Inverse of ``pose_encoding_to_extri_intri``: ``[..., 3, 4]`` and ``[..., 3, 3]`` -> ``[..., 9]``
    float32. The quaternion comes back with ``w >= 0``; the principal point is not encoded."""
    H, W = _image_hw(image_size_hw)
    quat = matrix_to_quat_xyzw(extrinsics[..., :3, :3])
    fov_h = 2 * torch.atan((H / 2) / intrinsics[..., 1, 1])
    fov_w = 2 * torch.atan((W / 2) / intrinsics[..., 0, 0])
    return torch.cat([extrinsics[..., :3, 3], quat, fov_h[..., None], fov_w[..., None]], dim=-1).float()


def unproject_depth_map_to_point_map(depth: Tensor, extrinsics: Tensor, intrinsics: Tensor,
                                     pixel_offset: float = 0.0) -> Tensor:
    """World points ``[S, H, W, 3]`` from depth ``[S, H, W]`` or ``[S, H, W, 1]`` (z along the ray).

    ``extrinsics`` ``[S, 3, 4]`` world-to-camera and ``intrinsics`` ``[S, 3, 3]`` (zero skew).
    Pixel ``(u, v)`` sits at ``(u + pixel_offset, v + pixel_offset)``; VGGT's own utility (and its
    ``world_points`` head's training targets) use offset 0, i.e. integer pixel coordinates with the
    principal point at ``W/2``. Computed in float64, returned in ``depth``'s dtype.
    """
    if depth.ndim == 4 and depth.shape[-1] == 1:
        depth = depth[..., 0]
    if depth.ndim != 3:
        raise InputError(f"Depth maps have shape {tuple(depth.shape)}; expected [S, H, W] or [S, H, W, 1].",
                         "Pass one depth map per frame.")
    S, H, W = depth.shape
    d = depth.to(torch.float64)
    K = intrinsics.to(torch.float64)
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64, device=depth.device),
                          torch.arange(W, dtype=torch.float64, device=depth.device), indexing="ij")
    fx, fy = K[:, 0, 0, None, None], K[:, 1, 1, None, None]
    cx, cy = K[:, 0, 2, None, None], K[:, 1, 2, None, None]
    cam = torch.stack([(u + pixel_offset - cx) * d / fx, (v + pixel_offset - cy) * d / fy, d], dim=-1)
    w2c = torch.eye(4, dtype=torch.float64, device=depth.device).repeat(S, 1, 1)
    w2c[:, :3, :] = extrinsics.to(torch.float64)
    c2w = invert_pose(w2c)
    world = torch.einsum("sij,shwj->shwi", c2w[:, :3, :3], cam) + c2w[:, None, None, :3, 3]
    return world.to(depth.dtype)


def pose_encoding_to_c2w(pose_enc: Tensor, image_size_hw) -> tuple[Tensor, Tensor]:
    """LaVR cameras from a pose encoding: c2w ``[..., 4, 4]`` (OpenCV axes) and K ``[..., 3, 3]``,
    both float64."""
    extr, K = pose_encoding_to_extri_intri(pose_enc.to(torch.float64), image_size_hw)
    w2c = torch.zeros(*extr.shape[:-2], 4, 4, dtype=torch.float64, device=extr.device)
    w2c[..., :3, :] = extr
    w2c[..., 3, 3] = 1.0
    return invert_pose(w2c), K


def pose_encoding_to_trajectory(pose_enc: Tensor, image_size_hw, fps: float = 16.0, meta: dict | None = None):
    """A ``CameraTrajectory`` from one sequence's pose encoding ``[S, 9]`` (or ``[1, S, 9]``)."""
    from ..camera.trajectory import CameraTrajectory

    if pose_enc.ndim == 3:
        if pose_enc.shape[0] != 1:
            raise InputError(f"Pose encoding holds {pose_enc.shape[0]} sequences; a trajectory is one.",
                             "Pass pose_enc[b] for the sequence you want.")
        pose_enc = pose_enc[0]
    H, W = _image_hw(image_size_hw)
    c2w, K = pose_encoding_to_c2w(pose_enc.detach().cpu(), (H, W))
    return CameraTrajectory(c2w=c2w, K=K, width=int(W), height=int(H), fps=fps,
                            meta={"source": "vggt", **(meta or {})})
