"""The scene latent: what Encode Scene Latent hands to the LaVR sampler and the camera builder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .camera.trajectory import CameraTrajectory
from .errors import InputError


@dataclass
class SceneLatent:
    """CUT3R's reading of a source video, frame by frame.

    Attributes:
        state_tokens: ``[K, S, D]`` float CPU tensor: CUT3R's persistent state after frames
            ``state_frames`` (every k-th frame, k = ``state_every``); S = 768 state tokens of width
            D = 768 for the released models. This is what the LaVR adapter compresses.
        state_frames: the frame indices (into the source video) of ``state_tokens``.
        pose_tokens: ``[T, D]`` the per-frame pose tokens.
        trajectory: the recovered source cameras: OpenCV c2w, world = first camera, CUT3R's scene
            scale (unitless), intrinsics in pixels of the **input** frames.
        depth: ``[T, h, w]`` z-depth on the model's input grid (see ``model_size``), scene units.
        pts3d_world: ``[T, h, w, 3]`` world points; ``conf_world``: ``[T, h, w]`` confidences (>= 1).
        colors: ``[T, h, w, 3]`` uint8 input pixels on the same grid, or None.
        input_size: ``(W, H)`` of the source frames; model_size: ``(w, h)`` of the model grid.
        meta: checkpoint name, options used.
    """

    state_tokens: torch.Tensor | None
    state_frames: list[int]
    pose_tokens: torch.Tensor
    trajectory: CameraTrajectory
    depth: torch.Tensor
    pts3d_world: torch.Tensor
    conf_world: torch.Tensor
    colors: torch.Tensor | None
    input_size: tuple[int, int]
    model_size: tuple[int, int]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_cut3r(cls, seq, fps: float, meta: dict | None = None) -> "SceneLatent":
        """From a ``lavr_core.cut3r.Cut3rSequence``, re-expressed so that the first camera is exactly
        the world origin (CUT3R predicts frame 0's pose too, close to but not exactly the identity)."""
        from .camera.transforms import invert_pose

        to_first = invert_pose(seq.c2w[:1].double())[0]
        R, t = to_first[:3, :3].float(), to_first[:3, 3].float()
        pts = seq.pts3d_world.float() @ R.T + t
        traj = seq.trajectory(fps=fps, in_input_frames=True)
        traj = traj.replace(c2w=to_first @ traj.c2w)
        return cls(state_tokens=seq.state_tokens, state_frames=list(seq.state_frames), pose_tokens=seq.pose_tokens,
                   trajectory=traj, depth=seq.depth, pts3d_world=pts, conf_world=seq.conf_world, colors=seq.colors,
                   input_size=tuple(seq.crop.input_size), model_size=(seq.image_size[1], seq.image_size[0]),
                   meta=dict(meta or {}))

    def point_cloud(self, min_conf: float = 1.0, max_points: int | None = None):
        """Confident world points, coloured by the input pixels, as a ``PointCloud``."""
        from .pointcloud import PointCloud

        keep = self.conf_world >= min_conf
        rgb = None if self.colors is None else self.colors[keep].float() / 255
        cloud = PointCloud(self.pts3d_world[keep], rgb, self.conf_world[keep], meta={"source": "cut3r"})
        return cloud.subsample(max_points) if max_points is not None else cloud

    @property
    def num_frames(self) -> int:
        return self.pose_tokens.shape[0]

    def states_every(self, k: int) -> tuple[torch.Tensor, list[int]]:
        """State tokens of every k-th source frame (k a multiple of the stored step)."""
        if self.state_tokens is None:
            raise InputError("This scene latent was encoded without state tokens (state_every = 0).",
                             "Encode the video again with state_every >= 1.")
        step = self.state_frames[1] - self.state_frames[0] if len(self.state_frames) > 1 else 1
        if k % step:
            raise InputError(f"State tokens were kept every {step} frames; every {k} frames cannot be taken from them.",
                             f"Encode with state_every = {k} or a divisor of it.")
        idx = [i for i, f in enumerate(self.state_frames) if f % k == 0]
        return self.state_tokens[idx], [self.state_frames[i] for i in idx]
