"""The camera path value that flows between LaVR nodes."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..conventions import MAX_FRAMES
from ..errors import TrajectoryError
from .transforms import invert_pose, orthonormalize


def check_frame_count(n: int, what: str = "trajectory") -> int:
    """Frame counts are integers in 1 .. MAX_FRAMES; anything else gets an actionable error."""
    if isinstance(n, bool) or not isinstance(n, numbers.Real) or not math.isfinite(n) or int(n) != n:
        raise TrajectoryError(f"The {what} frame count {n!r} is not a whole number.", "Give an integer.")
    n = int(n)
    if n < 1 or n > MAX_FRAMES:
        raise TrajectoryError(f"The {what} has {n} frames; LaVR accepts 1 to {MAX_FRAMES}.",
                              "Lower the frame count or split the video into shorter clips.")
    return n


@dataclass(frozen=True)
class CameraTrajectory:
    """A camera path: one pinhole camera per frame.

    Attributes:
        c2w: ``[T, 4, 4]`` float64 camera-to-world poses, **OpenCV camera axes** (+x right, +y down,
            +z forward), right-handed world, translations in scene units (see ``conventions``).
            Rotation blocks are exactly orthonormal (re-orthonormalised on construction when within
            ``ROTATION_TOLERANCE``, rejected otherwise); the last row is ``[0, 0, 0, 1]``.
        K: ``[T, 3, 3]`` float64 intrinsics in **pixels** of a ``width`` x ``height`` image.
            Principal point measured from the image's top-left corner. Focal lengths > 0.
        width, height: image size in pixels the intrinsics refer to (> 0).
        fps: frames per second (> 0); frame ``i`` is at time ``i / fps``.
        meta: free-form provenance (``{"source": "re10k", "preset": "orbit_left", ...}``),
            JSON-serialisable. Not used for any computation.

    Construction validates everything and raises ``TrajectoryError`` saying what to fix: NaN or inf,
    non-rigid rotations, a non-affine last row, zero/negative focal lengths, 0 or > MAX_FRAMES frames.
    """

    c2w: torch.Tensor
    K: torch.Tensor
    width: int
    height: int
    fps: float = 16.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        c2w = torch.as_tensor(self.c2w).detach().to("cpu", torch.float64)
        K = torch.as_tensor(self.K).detach().to("cpu", torch.float64)
        if c2w.ndim == 2:
            c2w = c2w[None]
        if c2w.ndim != 3 or c2w.shape[-2:] not in ((4, 4), (3, 4)):
            raise TrajectoryError(f"Camera poses have shape {tuple(c2w.shape)}; expected [T, 4, 4] or [T, 3, 4].",
                                  "Pass one camera-to-world matrix per frame.")
        T = check_frame_count(c2w.shape[0])
        if c2w.shape[-2] == 3:
            c2w = torch.cat([c2w, torch.tensor([0, 0, 0, 1.0], dtype=c2w.dtype).expand(T, 1, 4)], dim=1)
        if not torch.isfinite(c2w).all():
            i = (~torch.isfinite(c2w)).flatten(1).any(1).nonzero()[0].item()
            raise TrajectoryError(f"Camera pose of frame {i} holds NaN or infinity.",
                                  "Fix or drop that frame upstream; every pose must be finite.")
        last = torch.tensor([0, 0, 0, 1.0], dtype=c2w.dtype)
        if (c2w[:, 3] - last).abs().amax() > 1e-6:
            i = ((c2w[:, 3] - last).abs().amax(-1) > 1e-6).nonzero()[0].item()
            raise TrajectoryError(f"Camera pose of frame {i} has last row {c2w[i, 3].tolist()}, not [0, 0, 0, 1].",
                                  "Poses must be rigid 4x4 transforms; a projective matrix is not a pose.")
        c2w = c2w.clone()
        c2w[:, 3] = last
        c2w[:, :3, :3] = orthonormalize(c2w[:, :3, :3], what="camera rotation of frame")

        if K.shape == (3, 3):
            K = K.expand(T, 3, 3)
        if K.shape != (T, 3, 3):
            raise TrajectoryError(f"Intrinsics have shape {tuple(K.shape)} for {T} poses.",
                                  "Pass one 3x3 K, or one per frame ([T, 3, 3]).")
        if not torch.isfinite(K).all():
            raise TrajectoryError("Camera intrinsics hold NaN or infinity.", "Give finite focal lengths and principal points.")
        if (K[:, 2] - torch.tensor([0, 0, 1.0], dtype=K.dtype)).abs().amax() > 1e-6:
            i = ((K[:, 2] - torch.tensor([0, 0, 1.0], dtype=K.dtype)).abs().amax(-1) > 1e-6).nonzero()[0].item()
            raise TrajectoryError(f"Intrinsics of frame {i} have last row {K[i, 2].tolist()}, not [0, 0, 1].",
                                  "Pass a 3x3 pinhole K in pixels (a 4x4 projection matrix is not K).")
        if (K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any():
            i = ((K[:, 0, 0] <= 0) | (K[:, 1, 1] <= 0)).nonzero()[0].item()
            raise TrajectoryError(f"Frame {i} has focal length fx={K[i, 0, 0].item():g}, fy={K[i, 1, 1].item():g}.",
                                  "Focal lengths must be positive (pixels); check the field of view.")
        for name in ("width", "height"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v) \
                    or int(v) != v or int(v) < 1:
                raise TrajectoryError(f"Image {name} {v!r} is not a positive whole number of pixels.",
                                      "Give the image size the intrinsics refer to.")
        if isinstance(self.fps, bool) or not (isinstance(self.fps, numbers.Real) and math.isfinite(self.fps)
                                               and self.fps > 0):
            raise TrajectoryError(f"Frame rate {self.fps!r} is not a positive number.", "Use e.g. 16 (Wan) or 30.")
        object.__setattr__(self, "c2w", c2w)
        object.__setattr__(self, "K", K.clone().contiguous())
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))
        object.__setattr__(self, "fps", float(self.fps))
        object.__setattr__(self, "meta", dict(self.meta))

    # ---------------------------------------------------------------- views
    @property
    def num_frames(self) -> int:
        return self.c2w.shape[0]

    def __len__(self) -> int:
        return self.num_frames

    @property
    def w2c(self) -> torch.Tensor:
        """``[T, 4, 4]`` world-to-camera (OpenCV) matrices."""
        return invert_pose(self.c2w)

    @property
    def centers(self) -> torch.Tensor:
        """``[T, 3]`` camera centres in world coordinates."""
        return self.c2w[:, :3, 3]

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def replace(self, **changes) -> "CameraTrajectory":
        return replace(self, **changes)

    def with_image_size(self, width: int, height: int) -> "CameraTrajectory":
        """The same cameras for an image resized to ``width`` x ``height`` (intrinsics scaled)."""
        S = torch.diag(torch.tensor([width / self.width, height / self.height, 1.0], dtype=torch.float64))
        return replace(self, K=S @ self.K, width=width, height=height)

    def relative_to_first(self) -> "CameraTrajectory":
        """Poses relative to frame 0 (frame 0 becomes the identity)."""
        return replace(self, c2w=invert_pose(self.c2w[:1]) @ self.c2w)

    def subset(self, index) -> "CameraTrajectory":
        """Frames picked by an index, slice or list (order kept as given)."""
        c2w, K = self.c2w[index], self.K[index]
        if c2w.ndim == 2:
            c2w, K = c2w[None], K[None]
        return replace(self, c2w=c2w, K=K)

    def allclose(self, other: "CameraTrajectory", atol: float = 1e-6) -> bool:
        return (self.num_frames == other.num_frames and self.width == other.width
                and self.height == other.height and abs(self.fps - other.fps) <= atol
                and torch.allclose(self.c2w, other.c2w, atol=atol, rtol=0)
                and torch.allclose(self.K, other.K, atol=atol * max(1.0, float(self.K.abs().max())), rtol=0))

    def summary(self) -> str:
        c = self.centers
        path = (c[1:] - c[:-1]).norm(dim=-1).sum().item() if self.num_frames > 1 else 0.0
        return (f"{self.num_frames} frames @ {self.fps:g} fps, {self.width}x{self.height}, "
                f"fx={self.K[0, 0, 0].item():.1f}px, path length {path:.3g} units")
