"""Frame-by-frame CUT3R inference with flat device memory: the "scene latent" encoder.

The official demo encodes every frame at once and keeps every output on the GPU, so its memory
grows with the video. Here frames go to the device one at a time, only the recurrent state
(state tokens ``[B, S, D]``, pose memory ``[B, M, 2D]`` and their initial copies) stays there, and
each frame's results move to the CPU before the next frame starts. Peak device memory is the model
plus one frame's activations, whatever the video length.

Use :func:`encode_video` for a whole clip, or :class:`Cut3rStreamer` to feed frames as they come.
A ``callback(frame_result, index, total)`` runs after every frame (progress bars); an exception it
raises (e.g. ComfyUI's interrupt) stops the run between frames and propagates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from ..errors import InputError
from .geometry import estimate_focal, intrinsics_from_focal, pose_to_c2w, transform_points
from .model import Cut3rModel, Cut3rState
from .preprocess import CropInfo, normalize, plan_crop, resize_and_crop, to_uint8


@dataclass(frozen=True)
class StreamOptions:
    """What to keep per frame.

    ``state_every``: keep the state tokens after every k-th frame (frames 0, k, 2k, ...; 0 keeps
    none). LaVR conditions on a subsampled set, so this saves CPU memory on long clips.
    ``state_dtype``: dtype the kept state tokens are stored in (float32, or half to save memory).
    ``world_points``: ``"head"`` uses the model's world-frame point head (``pts3d_in_other_view``
    with its confidence ``conf``); ``"pose"`` maps the self-view points by the predicted pose, with
    the self-view confidence, as the official demo does by default.
    ``keep_self_points`` / ``keep_rgb``: also keep the camera-frame points / the colour head output.
    ``keep_colors``: keep the model-input pixels (uint8) as point colours.
    ``focal_iterations``: Weiszfeld steps of the focal estimate.
    """

    state_every: int = 1
    state_dtype: torch.dtype = torch.float32
    world_points: str = "head"
    keep_self_points: bool = True
    keep_rgb: bool = False
    keep_colors: bool = True
    focal_iterations: int = 10

    def __post_init__(self):
        if int(self.state_every) < 0:
            raise InputError(f"state_every={self.state_every} must be 0 (keep none) or a positive frame step.",
                             "Give 1 to keep the state of every frame, k to keep every k-th.")
        if self.world_points not in ("head", "pose"):
            raise InputError(f"world_points={self.world_points!r} is not 'head' or 'pose'.",
                             "Choose 'head' (the model's world points) or 'pose' (self points moved by the pose).")


@dataclass
class Cut3rFrame:
    """One frame's results on the CPU (float32 unless noted), all at the model-input size ``h x w``.

    ``state_tokens``: ``[S, D]`` state after this frame (``None`` when not kept);
    ``pose_token``: ``[D]`` the frame's final pose token; ``camera_pose``: ``[7]`` ``t, q(wxyz)``;
    ``c2w``: ``[4, 4]`` camera-to-world, OpenCV axes, world = first camera; ``K``: ``[3, 3]``
    intrinsics (pixels, principal point at the centre, focal fitted to the self-view points);
    ``pts3d_world``: ``[h, w, 3]``; ``conf_world``: ``[h, w]`` (>= 1); ``depth``: ``[h, w]`` (z of the
    self-view points); ``pts3d_self`` ``[h, w, 3]`` / ``conf_self`` ``[h, w]`` when kept;
    ``rgb``: ``[h, w, 3]`` in [0, 1] when kept (the model's colour head);
    ``colors``: ``[h, w, 3]`` uint8, the model-input pixels (point colours), when kept.
    """

    index: int
    camera_pose: torch.Tensor
    c2w: torch.Tensor
    K: torch.Tensor
    pts3d_world: torch.Tensor
    conf_world: torch.Tensor
    depth: torch.Tensor
    pose_token: torch.Tensor
    state_tokens: torch.Tensor | None = None
    pts3d_self: torch.Tensor | None = None
    conf_self: torch.Tensor | None = None
    rgb: torch.Tensor | None = None
    colors: torch.Tensor | None = None


@dataclass
class Cut3rSequence:
    """All frames' results stacked on the CPU (see :class:`Cut3rFrame` for each field).

    ``state_tokens`` ``[K, S, D]`` for the frames in ``state_frames`` (``[0, k, 2k, ...]``);
    per-frame tensors have a leading ``T``. ``crop`` is set when the frames were prepared here.
    """

    camera_pose: torch.Tensor
    c2w: torch.Tensor
    K: torch.Tensor
    pts3d_world: torch.Tensor
    conf_world: torch.Tensor
    depth: torch.Tensor
    pose_tokens: torch.Tensor
    state_tokens: torch.Tensor | None
    state_frames: list[int]
    pts3d_self: torch.Tensor | None = None
    conf_self: torch.Tensor | None = None
    rgb: torch.Tensor | None = None
    colors: torch.Tensor | None = None
    crop: CropInfo | None = None
    meta: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.c2w.shape[0]

    @property
    def image_size(self) -> tuple[int, int]:
        """``(h, w)`` of the model input."""
        return tuple(self.depth.shape[-2:])

    def point_cloud(self, min_conf: float = 1.0, frame_stride: int = 1, pixel_stride: int = 1,
                    max_points: int | None = None):
        """World points of every ``frame_stride``-th frame as a :class:`~lavr_core.pointcloud.PointCloud`.

        Keeps pixels (every ``pixel_stride``-th row and column) whose world confidence is at least
        ``min_conf`` (CUT3R confidences start at 1), coloured by the input pixels when kept.
        """
        from ..pointcloud import PointCloud

        fs, ps = max(1, int(frame_stride)), max(1, int(pixel_stride))
        xyz = self.pts3d_world[::fs, ::ps, ::ps]
        conf = self.conf_world[::fs, ::ps, ::ps]
        keep = conf >= min_conf
        rgb = None if self.colors is None else self.colors[::fs, ::ps, ::ps][keep].float() / 255
        cloud = PointCloud(xyz=xyz[keep], rgb=rgb, conf=conf[keep],
                           meta={"source": "cut3r", "min_conf": float(min_conf), "frame_stride": fs})
        return cloud.subsample(max_points) if max_points is not None and len(cloud) > max_points else cloud

    def trajectory(self, fps: float = 16.0, in_input_frames: bool = True):
        """The recovered cameras as a :class:`~lavr_core.camera.trajectory.CameraTrajectory`.

        ``in_input_frames``: intrinsics in pixels of the input frames (needs ``crop``), else of the
        model input. Translations are in CUT3R's (unknown) scene scale; world = first camera.
        """
        from ..camera.trajectory import CameraTrajectory

        h, w = self.image_size
        K = self.K
        if in_input_frames and self.crop is not None:
            K = self.crop.intrinsics_to_input(K)
            w, h = self.crop.input_size
        return CameraTrajectory(c2w=self.c2w.double(), K=K.double(), width=w, height=h, fps=fps,
                                meta={"source": "cut3r", "world_points": self.meta.get("world_points")})


class _Stack:
    """Collects per-frame CPU tensors into one preallocated tensor when the frame count is known."""

    def __init__(self, total: int | None):
        self.total = total
        self.items: list[torch.Tensor] = []
        self.buf: torch.Tensor | None = None
        self.n = 0

    def add(self, t: torch.Tensor) -> None:
        if self.total is None:
            self.items.append(t)
        else:
            if self.buf is None:
                self.buf = torch.empty((self.total, *t.shape), dtype=t.dtype)
            self.buf[self.n] = t
        self.n += 1

    def result(self) -> torch.Tensor | None:
        if self.total is None:
            return torch.stack(self.items) if self.items else None
        return None if self.buf is None else self.buf[: self.n]


class Cut3rStreamer:
    """Incremental encoder: ``push(image)`` per frame, then ``finish()``.

    ``image``: ``[3, h, w]`` or ``[1, 3, h, w]`` float in [-1, 1] (from :mod:`.preprocess`), any device;
    all frames must have the same size. Batch size is 1 (one video).
    """

    def __init__(self, model: Cut3rModel, options: StreamOptions | None = None, *,
                 total: int | None = None, callback: Callable[[Cut3rFrame, int, int | None], None] | None = None):
        self.model = model
        self.opt = options or StreamOptions()
        self.total = total
        self.callback = callback
        self.state: Cut3rState | None = None
        self.index = 0
        self.size: tuple[int, int] | None = None
        self._stacks = {k: _Stack(total) for k in ("camera_pose", "c2w", "K", "pts3d_world", "conf_world",
                                                  "depth", "pose_tokens", "pts3d_self", "conf_self", "rgb",
                                                  "colors")}
        k = int(self.opt.state_every)
        n_states = None if total is None or k == 0 else (total + k - 1) // k
        self._states = _Stack(n_states if k else None)
        self.state_frames: list[int] = []

    @torch.inference_mode()
    def push(self, image: torch.Tensor) -> Cut3rFrame:
        m = self.model
        if image.ndim == 3:
            image = image[None]
        if image.ndim != 4 or image.shape[:2] != (1, 3):
            raise InputError(f"A CUT3R frame must be [1, 3, h, w]; got {tuple(image.shape)}.",
                             "Prepare frames with lavr_core.cut3r.preprocess.prepare_frames.")
        size = (int(image.shape[-2]), int(image.shape[-1]))
        if self.size is None:
            self.size = size
        elif size != self.size:
            raise InputError(f"Frame {self.index} is {size[1]}x{size[0]} but the first frame was "
                             f"{self.size[1]}x{self.size[0]}.", "Give frames that all have the same size.")
        if self.total is not None and self.index >= self.total:
            raise InputError(f"More frames were pushed than the {self.total} announced.", "Pass the right total.")
        if self.state is None:
            self.state = m.init_state(1)
        image = image.to(device=m.device, non_blocking=True)
        res = m.step(self.state, image)
        self.state = res.state
        frame = self._collect(res.outputs, res.pose_token, image)
        if self.callback is not None:
            self.callback(frame, self.index - 1, self.total)
        return frame

    def _collect(self, out: dict[str, torch.Tensor], pose_token: torch.Tensor, image: torch.Tensor) -> Cut3rFrame:
        opt = self.opt
        i = self.index
        h, w = self.size
        pts_self = out["pts3d_in_self_view"].float()
        cam = out["camera_pose"].float()
        c2w = pose_to_c2w(cam)
        if opt.world_points == "pose":
            pts_world, conf_world = transform_points(c2w, pts_self), out["conf_self"].float()
        else:
            pts_world, conf_world = out["pts3d_in_other_view"].float(), out["conf"].float()
        focal = estimate_focal(pts_self, opt.focal_iterations)
        K = intrinsics_from_focal(focal, h, w)

        def cpu(t):  # always a compact copy: a CPU view would pin the whole output tensor
            return t[0].detach().to("cpu", torch.float32, copy=True)

        fr = Cut3rFrame(index=i, camera_pose=cpu(cam), c2w=cpu(c2w), K=cpu(K), pts3d_world=cpu(pts_world),
                        conf_world=cpu(conf_world), depth=cpu(pts_self[..., 2]), pose_token=cpu(pose_token[:, 0]))
        if opt.keep_self_points:
            fr.pts3d_self, fr.conf_self = cpu(pts_self), cpu(out["conf_self"])
        if opt.keep_rgb and "rgb" in out:
            fr.rgb = (cpu(out["rgb"]) + 1) / 2
        if opt.keep_colors:
            fr.colors = ((image[0].float() + 1) * 127.5).round().clamp(0, 255).to("cpu", torch.uint8).permute(1, 2, 0)
        k = int(opt.state_every)
        if k and i % k == 0:
            fr.state_tokens = self.state.tokens[0].detach().to("cpu", opt.state_dtype, copy=True)
            self._states.add(fr.state_tokens)
            self.state_frames.append(i)
        for name, val in (("camera_pose", fr.camera_pose), ("c2w", fr.c2w), ("K", fr.K),
                          ("pts3d_world", fr.pts3d_world), ("conf_world", fr.conf_world), ("depth", fr.depth),
                          ("pose_tokens", fr.pose_token), ("pts3d_self", fr.pts3d_self),
                          ("conf_self", fr.conf_self), ("rgb", fr.rgb), ("colors", fr.colors)):
            if val is not None:
                self._stacks[name].add(val)
        self.index += 1
        return fr

    def finish(self, crop: CropInfo | None = None) -> Cut3rSequence:
        if self.index == 0:
            raise InputError("No frames were encoded.", "Give at least one frame.")
        r = {k: s.result() for k, s in self._stacks.items()}
        return Cut3rSequence(camera_pose=r["camera_pose"], c2w=r["c2w"], K=r["K"], pts3d_world=r["pts3d_world"],
                             conf_world=r["conf_world"], depth=r["depth"], pose_tokens=r["pose_tokens"],
                             state_tokens=self._states.result(), state_frames=list(self.state_frames),
                             pts3d_self=r["pts3d_self"], conf_self=r["conf_self"], rgb=r["rgb"],
                             colors=r["colors"], crop=crop,
                             meta={"world_points": self.opt.world_points, "state_every": int(self.opt.state_every)})


def encode_frames(model: Cut3rModel, images: torch.Tensor | Iterable[torch.Tensor], options: StreamOptions | None = None,
                  *, callback: Callable[[Cut3rFrame, int, int | None], None] | None = None,
                  crop: CropInfo | None = None, total: int | None = None) -> Cut3rSequence:
    """Encode prepared frames (``[T, 3, h, w]`` in [-1, 1], or an iterable of ``[1, 3, h, w]``), one at a time.

    The frames may stay on the CPU; each is moved to the model's device only while it is processed.
    ``total`` (the frame count of an iterable) lets results be stacked without a second copy.
    """
    if isinstance(images, torch.Tensor):
        total = images.shape[0]
    if total == 0:
        raise InputError("The video has no frames.", "Connect a video with at least one frame.")
    streamer = Cut3rStreamer(model, options, total=total, callback=callback)
    for img in images:
        streamer.push(img)
    return streamer.finish(crop)


def encode_video(model: Cut3rModel, frames: torch.Tensor, options: StreamOptions | None = None, *,
                 size: int | None = None,
                 callback: Callable[[Cut3rFrame, int, int | None], None] | None = None) -> Cut3rSequence:
    """A ComfyUI IMAGE ``[T, H, W, 3]`` (float in [0, 1]) -> :class:`Cut3rSequence`.

    Frames are resized and cropped as the official code does for the model (``size`` 512 for the
    DPT model, 224 for the linear one; by default from the model's head), one at a time as they are
    encoded. ``crop`` in the result maps outputs back to the input frames
    (:meth:`CropInfo.map_to_input`, :meth:`CropInfo.intrinsics_to_input`).
    """
    if size is None:
        size = 512 if model.cfg.head_type == "dpt" else 224
    u8 = to_uint8(frames)
    if u8.shape[0] == 0:
        raise InputError("The video has no frames.", "Connect a video with at least one frame.")
    crop = plan_crop(u8.shape[2], u8.shape[1], size)
    prepared = (normalize(resize_and_crop(f, crop))[None] for f in u8)
    return encode_frames(model, prepared, options, callback=callback, crop=crop, total=u8.shape[0])
