"""Pose algebra: axis conventions, c2w <-> w2c, quaternions (wxyz), intrinsics <-> field of view,
and normalisation of a path. Pure torch, float64 in and out unless the caller passes another dtype.

Shapes: poses ``[..., 4, 4]``, rotations ``[..., 3, 3]``, quaternions ``[..., 4]`` (w, x, y, z),
intrinsics ``[..., 3, 3]`` in pixels. Conventions: ``lavr_core.conventions``.
"""

from __future__ import annotations

import math

import torch

from ..conventions import AXIS_CONVENTIONS, ROTATION_TOLERANCE
from ..errors import TrajectoryError

# Camera-axis flip from OpenCV (x right, y down, z forward) to the y-up, z-backward cameras of
# OpenGL, Blender and three.js. All three share the camera axes; they differ only in world up,
# which is a world-frame choice the pose carries, not a camera convention.
_CV_TO_GL = (1.0, -1.0, -1.0, 1.0)


def _flip(dtype, device) -> torch.Tensor:
    return torch.diag(torch.tensor(_CV_TO_GL, dtype=dtype, device=device))


def convert_axes(c2w: torch.Tensor, src: str, dst: str) -> torch.Tensor:
    """Re-express camera-to-world poses ``[..., 4, 4]`` from one camera-axis convention in another.

    ``src``/``dst`` are in ``AXIS_CONVENTIONS``. Only the camera's own axes change; world
    coordinates of the camera centre are untouched.
    """
    for name in (src, dst):
        if name not in AXIS_CONVENTIONS:
            raise TrajectoryError(f"Unknown camera convention {name!r}.",
                                  f"Use one of {', '.join(AXIS_CONVENTIONS)}.")
    if (src == "opencv") == (dst == "opencv"):
        return c2w.clone()
    return c2w @ _flip(c2w.dtype, c2w.device)


def invert_pose(T: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms ``[..., 4, 4]`` (c2w <-> w2c) without a general matrix inverse."""
    R = T[..., :3, :3]
    t = T[..., :3, 3:]
    out = torch.zeros_like(T)
    Rt = R.transpose(-1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3:] = -Rt @ t
    out[..., 3, 3] = 1.0
    return out


c2w_to_w2c = invert_pose
w2c_to_c2w = invert_pose


def make_pose(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Stack rotations ``[..., 3, 3]`` and translations ``[..., 3]`` into 4x4 poses."""
    batch = torch.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    out = torch.zeros(*batch, 4, 4, dtype=R.dtype, device=R.device)
    out[..., :3, :3] = R
    out[..., :3, 3] = t
    out[..., 3, 3] = 1.0
    return out


# ----------------------------------------------------------------------------------- quaternions

def quat_normalize(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion with ``w >= 0`` (the canonical one of the pair ``q, -q``)."""
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` from quaternions ``[..., 4]`` (wxyz, any norm > 0)."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*q.shape[:-1], 3, 3)


def matrix_to_quat(R: torch.Tensor) -> torch.Tensor:
    """Quaternions ``[..., 4]`` (wxyz, ``w >= 0``) from rotation matrices ``[..., 3, 3]``.

    Branch-free: all four candidate solutions are computed and the numerically largest pivot wins,
    so the result is accurate to float precision for every rotation, including 180 degrees.
    """
    m = R
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    cands = torch.stack([
        torch.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                     m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                     m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0],
                     1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2], m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                     m[..., 1, 2] + m[..., 2, 1], 1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1),
    ], dim=-2)  # [..., 4 candidates, 4]
    pivots = torch.stack([1 + trace, 1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                          1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
                          1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    best = pivots.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    return quat_normalize(q)


def quat_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product ``a * b`` (wxyz); ``quat_to_matrix(a*b) = quat_to_matrix(a) @ quat_to_matrix(b)``."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    return q * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=q.dtype, device=q.device)


def axis_angle_to_matrix(axis: torch.Tensor, angle: torch.Tensor | float) -> torch.Tensor:
    """Rotation matrices for a rotation of ``angle`` radians about ``axis`` ``[..., 3]`` (right-hand rule)."""
    axis = axis / axis.norm(dim=-1, keepdim=True)
    angle = torch.as_tensor(angle, dtype=axis.dtype, device=axis.device)
    half = angle[..., None] / 2
    q = torch.cat([torch.cos(half), axis * torch.sin(half)], dim=-1)
    return quat_to_matrix(q)


# ------------------------------------------------------------------------------------ rigidity

def orthonormalize(R: torch.Tensor, tol: float = ROTATION_TOLERANCE, what: str = "rotation") -> torch.Tensor:
    """Nearest rotation (SVD) to each ``R`` ``[..., 3, 3]`` that is already within ``tol`` of one.

    Raises ``TrajectoryError`` naming the first offending index when a matrix holds NaN/inf, has a
    reflection (det < 0) or is further than ``tol`` from orthonormal (scale or shear).
    """
    if not torch.isfinite(R).all():
        bad = (~torch.isfinite(R)).flatten(-2).any(-1).nonzero()
        raise TrajectoryError(f"The {what} at index {bad[0].tolist()} holds NaN or infinity.",
                              "Fix or drop that frame upstream; a camera pose must be finite.")
    eye = torch.eye(3, dtype=R.dtype, device=R.device)
    err = (R.transpose(-1, -2) @ R - eye).abs().flatten(-2).amax(-1)
    det = torch.linalg.det(R)
    bad = (err > tol) | (det <= 0)
    if bad.any():
        i = bad.nonzero()[0].tolist()
        reason = "is a reflection (det < 0)" if det[tuple(i)] <= 0 else \
            f"is not a rotation (|R^T R - I| = {err[tuple(i)].item():.3g} > {tol:g}: scale or shear)"
        where = f" at index {i}" if i else ""  # an unbatched matrix has no index to name
        raise TrajectoryError(f"The {what}{where} {reason}.",
                              "Camera poses must be rigid: rotation plus translation, no scale. "
                              "Check the file's convention (c2w vs w2c, row vs column major).")
    U, _, Vh = torch.linalg.svd(R)
    return U @ Vh


# ---------------------------------------------------------------------------------- intrinsics

def intrinsics_from_fov(fov_deg: float, width: int, height: int, axis: str = "horizontal",
                        dtype=torch.float64) -> torch.Tensor:
    """Pinhole ``K`` [3, 3] in pixels, square pixels, principal point at the image centre.

    ``fov_deg`` is the full angle across the image ``width`` (axis="horizontal"), ``height``
    ("vertical") or the diagonal ("diagonal").
    """
    if not (0.0 < fov_deg < 180.0) or not math.isfinite(fov_deg):
        raise TrajectoryError(f"Field of view {fov_deg} degrees is out of range.",
                              "Use an angle strictly between 0 and 180 degrees.")
    span = {"horizontal": width, "vertical": height, "diagonal": math.hypot(width, height)}.get(axis)
    if span is None:
        raise TrajectoryError(f"Unknown field-of-view axis {axis!r}.", "Use horizontal, vertical or diagonal.")
    f = 0.5 * span / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=dtype)


def fov_from_intrinsics(K: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal and vertical full field of view in degrees from ``K`` ``[..., 3, 3]`` (centred principal point assumed)."""
    fovx = 2 * torch.rad2deg(torch.atan(width / (2 * K[..., 0, 0])))
    fovy = 2 * torch.rad2deg(torch.atan(height / (2 * K[..., 1, 1])))
    return fovx, fovy


def scale_intrinsics(K: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Intrinsics for the image resized by ``sx`` x ``sy`` (pixel-corner convention keeps this exact)."""
    S = torch.diag(torch.tensor([sx, sy, 1.0], dtype=K.dtype, device=K.device))
    return S @ K


def normalize_intrinsics(K: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``K`` in units of image size (fx/W, fy/H, cx/W, cy/H), as Plücker and many datasets use."""
    return scale_intrinsics(K, 1.0 / width, 1.0 / height)


# ------------------------------------------------------------------------------- normalisation

def normalize_to_first(c2w: torch.Tensor) -> torch.Tensor:
    """Express every pose ``[T, 4, 4]`` relative to the first: ``inv(c2w[0]) @ c2w[i]``.

    The first camera becomes the identity (origin, looking down +z), as ReCamMaster, CUT3R and the
    Wan camera models expect.
    """
    return invert_pose(c2w[:1]) @ c2w


def camera_centres_scale(c2w: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """A scalar size of the path: the largest ("max") or mean ("mean") camera distance from the first."""
    d = (c2w[..., :3, 3] - c2w[..., :1, :3, 3]).norm(dim=-1)
    return d.amax(-1) if mode == "max" else d.mean(-1)


def normalize_scale(c2w: torch.Tensor, scale: float | torch.Tensor | None = None,
                    mode: str = "max") -> tuple[torch.Tensor, torch.Tensor]:
    """Divide translations by ``scale`` (default: the path's own size, see ``camera_centres_scale``).

    Returns the scaled poses and the scale used, so depth or points can be divided by the same.
    A path that does not move (all centres equal) keeps scale 1.
    """
    if scale is None:
        scale = camera_centres_scale(c2w, mode)
        scale = torch.where(scale > 1e-12, scale, torch.ones_like(scale))
    scale = torch.as_tensor(scale, dtype=c2w.dtype, device=c2w.device)
    if not (torch.isfinite(scale).all() and (scale > 0).all()):
        raise TrajectoryError(f"Scene scale {scale.tolist()} is not a positive finite number.",
                              "Pass a scale > 0, or None to use the path's own size.")
    out = c2w.clone()
    # One scale per path: it divides every frame's translation of that path ([..., T, 3] / [..., 1, 1]).
    out[..., :3, 3] = c2w[..., :3, 3] / scale[..., None, None]
    return out, scale


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor | None = None) -> torch.Tensor:
    """OpenCV c2w ``[..., 4, 4]`` of cameras at ``eye`` looking at ``target`` ``[..., 3]``.

    ``up`` is the world direction that should appear *up* in the image (default -y, i.e. OpenCV's
    world up when the first camera is the identity). Raises if the view direction is parallel to up.
    """
    if up is None:
        up = torch.tensor([0.0, -1.0, 0.0], dtype=eye.dtype, device=eye.device)
    z = target - eye
    zn = z.norm(dim=-1, keepdim=True)
    if (zn < 1e-12).any():
        raise TrajectoryError("A look-at camera sits exactly on its target.",
                              "Move the keyframe position or its look-at point apart.")
    z = z / zn
    up = up.expand_as(z)
    x = torch.cross(-up, z, dim=-1)  # image +y points down, so right = down x forward = -up x forward
    xn = x.norm(dim=-1, keepdim=True)
    if (xn < 1e-9).any():
        raise TrajectoryError("A look-at camera looks straight up or down its up vector.",
                              "Tilt the target a little or give a keyframe an explicit rotation.")
    x = x / xn
    y = torch.cross(z, x, dim=-1)
    R = torch.stack([x, y, z], dim=-1)
    return make_pose(R, eye)
