"""VGGT4D: VGGT extended to a grid of V views x T timesteps, predicting Gaussians per timestep.

The 4D reconstruction model of 4Real-Video-V2 built on our VGGT (which stays frozen):

* **Grid order.** Frames come as ``[V, T, 3, H, W]`` or ``[B, V, T, 3, H, W]`` (RGB in [0, 1]): view
  ``v`` is a fixed camera, ``t`` a timestep; a flat list of ``V*T`` frames is **view-major**
  (``frame = v * T + t``, each view's whole clip, then the next view's), the layout of the Fused 4D
  Sampler (``lavr_core.attention.fused_view_time``). Every output keeps the ``[B, V, T, ...]`` order.
* **Per-timestep VGGT.** Each timestep's ``V`` views form one VGGT sequence (view 0 is the reference
  camera, the world frame is view 0's camera frame); the timesteps ride on the aggregator's batch axis.
* **Temporal attention** (``temporal.py``) after every frame and global block ties the timesteps
  together; freshly built it is exactly the identity.
* **Camera-token replacement** (``replace_camera_tokens``): after the aggregator every timestep uses
  timestep 0's camera tokens, so each view gets one camera for the whole clip.
* **Gaussian head** (``gaussian_head.py``) refines the training-free Gaussians
  (``init_free.py``); without head weights the training-free ones are used as they are.

So with fresh temporal layers, depth and points at timestep ``t`` equal plain VGGT run on the ``V``
frames of timestep ``t``, and cameras equal plain VGGT's on timestep 0 (on timestep ``t`` when camera
tokens are not replaced).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..gaussians.types import GaussianSequence, Gaussians
from ..vggt.camera import pose_encoding_to_c2w, pose_encoding_to_trajectory
from ..vggt.model import VGGT, check_images
from .gaussian_head import GaussianHead, apply_head
from .init_free import InitConfig, PixelGaussians, training_free
from .temporal import TemporalLayers, replace_camera_tokens

GAUSSIAN_HEAD = "gaussian_head"
TRAINING_FREE = "training_free"


@dataclass(frozen=True)
class VGGT4DConfig:
    """Which parts the 4D model has (the VGGT's own sizes come from its ``VGGTConfig``).

    ``temporal_num_heads``: heads of each temporal attention layer (default: the aggregator's).
    ``init``: the training-free initialisation the Gaussian head refines.
    """

    gaussian_head: bool = True
    temporal: bool = True
    temporal_num_heads: int | None = None
    replace_camera_tokens: bool = True
    init: InitConfig = field(default_factory=InitConfig)


def frames_to_grid(frames: Tensor, views: int, times: int) -> Tensor:
    """``[V*T, 3, H, W]`` view-major frames (``frame = v*T + t``) -> ``[V, T, 3, H, W]``."""
    for name, n in (("views", views), ("times", times)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"The grid needs a positive whole number of {name}, got {n!r}.", "Give views and times >= 1.")
    if frames.ndim != 4 or frames.shape[0] != views * times:
        raise InputError(f"{frames.shape[0] if frames.ndim else 0} frames do not form a {views} views x {times} "
                         f"timesteps grid (frames of shape {tuple(frames.shape)}).",
                         f"Give exactly views*times = {views * times} frames, view-major (all of view 0's timesteps first).")
    return frames.reshape(views, times, *frames.shape[1:])


def _to_bvt(x: Tensor, B: int, T: int) -> Tensor:
    """``[B*T, V, ...]`` (aggregator order) -> ``[B, V, T, ...]``."""
    return x.reshape(B, T, *x.shape[1:]).transpose(1, 2)


@dataclass
class VGGT4DPrediction:
    """What ``VGGT4D.forward`` returns for ``B`` samples of ``V x T`` frames of ``H x W`` pixels.

    Attributes (all ``[B, V, T, ...]``, view-major as the input):
        images: ``[B, V, T, 3, H, W]`` the input in [0, 1].
        pose_enc: ``[B, V, T, 9]`` VGGT camera encoding (``lavr_core.vggt.camera``).
        depth: ``[B, V, T, H, W, 1]``; depth_conf: ``[B, V, T, H, W]``.
        world_points / world_points_conf: ``[B, V, T, H, W, 3]`` / ``[B, V, T, H, W]`` or None.
        gaussian_raw: ``[B, V, T, H, W, 14]`` Gaussian-head output, or None (no head: training-free).
        init: the training-free configuration used to build Gaussians.
    """

    images: Tensor
    pose_enc: Tensor
    depth: Tensor
    depth_conf: Tensor
    world_points: Tensor | None = None
    world_points_conf: Tensor | None = None
    gaussian_raw: Tensor | None = None
    init: InitConfig = field(default_factory=InitConfig)

    @property
    def grid(self) -> tuple[int, int, int]:
        """``(B, V, T)``."""
        B, V, T = self.images.shape[:3]
        return B, V, T

    @property
    def image_hw(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])

    @property
    def gaussian_source(self) -> str:
        """``"gaussian_head"`` or ``"training_free"``: which one ``pixel_gaussians`` uses."""
        return TRAINING_FREE if self.gaussian_raw is None else GAUSSIAN_HEAD

    def cameras(self) -> tuple[Tensor, Tensor]:
        """Predicted c2w ``[B, V, T, 4, 4]`` (OpenCV, view 0 of each timestep at the origin) and K
        ``[B, V, T, 3, 3]`` in pixels, float64."""
        return pose_encoding_to_c2w(self.pose_enc, self.image_hw)

    def trajectory(self, b: int = 0, t: int = 0, fps: float = 16.0):
        """The ``V`` view cameras at timestep ``t`` as a ``CameraTrajectory`` (one frame per view)."""
        return pose_encoding_to_trajectory(self.pose_enc[b, :, t], self.image_hw, fps=fps,
                                           meta={"views": self.grid[1], "timestep": t})

    def pixel_gaussians(self, c2w: Tensor | None = None, K: Tensor | None = None, depth_scale: Tensor | float = 1.0,
                        use_head: bool = True) -> PixelGaussians:
        """Per-pixel Gaussians ``[B, V, T, H, W, ...]`` (differentiable in the head output).

        ``c2w``/``K`` ``[B, V, T, 4/3, 4/3]`` default to the predicted cameras; pass known cameras
        (and ``depth_scale``, a number or ``[B]``, to bring VGGT's depth into their units) to place
        Gaussians in a posed scene. ``use_head=False`` gives the training-free Gaussians even when the
        head ran.
        """
        if c2w is None or K is None:
            pc2w, pK = self.cameras()
            c2w = pc2w if c2w is None else c2w
            K = pK if K is None else K
        dt = torch.promote_types(self.depth.dtype, torch.float32)   # Gaussians in float32 even from a half VGGT
        c2w, K = c2w.to(self.depth.device, dt), K.to(self.depth.device, dt)
        s = torch.as_tensor(depth_scale, dtype=dt, device=self.depth.device)
        depth = self.depth[..., 0].to(dt) * (s.reshape(-1, 1, 1, 1, 1) if s.ndim else s)   # [B, V, T, H, W]
        rgb = self.images.to(dt).movedim(-3, -1)
        base = training_free(depth, self.depth_conf.to(dt), rgb, c2w, K, self.init)
        if self.gaussian_raw is None or not use_head:
            return base
        return apply_head(self.gaussian_raw, base, depth, c2w)

    def gaussians(self, b: int = 0, fps: float = 16.0, min_confidence: float | None = None,
                  use_head: bool = True) -> GaussianSequence:
        """Sample ``b``'s Gaussians: one set per timestep (all ``V`` views' pixels), detached.

        ``min_confidence`` drops pixels whose VGGT depth confidence is below it (VGGT's confidences
        start at 1; 1.5-3 removes sky and blur with the released weights).
        """
        with torch.no_grad():
            pg = self.pixel_gaussians(use_head=use_head)
        _, V, T = self.grid
        source = self.gaussian_source if use_head else TRAINING_FREE
        frames = []
        for t in range(T):
            mask = None if min_confidence is None else self.depth_conf[b, :, t] >= min_confidence
            meta = {"source": "vggt4d", "gaussians": source, "views": V, "timestep": t}
            frames.append(pg.index((b, slice(None), t)).flatten(mask, meta))
        return GaussianSequence.from_fps(frames, fps, meta={"source": "vggt4d", "gaussians": source,
                                                            "views": V, "times": T})

    def static_gaussians(self, b: int = 0, min_confidence: float | None = None, use_head: bool = True) -> Gaussians:
        """All timesteps' Gaussians of sample ``b`` as one set (for ``T == 1``: the scene)."""
        seq = self.gaussians(b, min_confidence=min_confidence, use_head=use_head)
        return seq.frames[0] if len(seq) == 1 else Gaussians.cat(seq.frames)


class VGGT4D(nn.Module):
    """A frozen VGGT plus temporal layers and a Gaussian head (module docstring).

    ``vggt`` is put in eval mode with ``requires_grad=False``; only ``temporal`` and
    ``gaussian_head`` are trainable (and saved by ``lavr_core.vggt4d.weights``).
    """

    def __init__(self, vggt: VGGT, config: VGGT4DConfig | None = None):
        super().__init__()
        cfg = config or VGGT4DConfig()
        self.config = cfg
        vcfg = vggt.config
        if vggt.camera_head is None or vggt.depth_head is None:
            raise InputError("VGGT4D needs a VGGT with its camera and depth heads.",
                             "Load the full VGGT-1B checkpoint (with camera_head and depth_head weights).")
        self.vggt = vggt.eval().requires_grad_(False)
        E, a, d = vcfg.embed_dim, vcfg.aggregator, vcfg.dpt
        self.gaussian_head = GaussianHead(2 * E, patch_size=a.patch_size, features=d.features,
                                          out_channels=d.out_channels, intermediate_layer_idx=d.intermediate_layer_idx,
                                          pos_embed=d.pos_embed) if cfg.gaussian_head else None
        self.temporal = TemporalLayers(E, a.depth, cfg.temporal_num_heads or a.num_heads) if cfg.temporal else None
        dev = vggt.aggregator.camera_token.device
        if dev.type != "meta":  # the new parts live where the VGGT does (they stay float32)
            for m in (self.gaussian_head, self.temporal):
                if m is not None:
                    m.to(dev)

    def train(self, mode: bool = True) -> "VGGT4D":
        super().train(mode)
        self.vggt.eval()  # frozen: never in training mode
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for m in (self.gaussian_head, self.temporal) if m is not None for p in m.parameters()]

    def _needed_layers(self, with_points: bool) -> set[int]:
        depth = self.vggt.config.aggregator.depth
        need = {depth - 1}
        heads = [self.vggt.depth_head] + ([self.vggt.point_head] if with_points and self.vggt.point_head else [])
        heads += [self.gaussian_head] if self.gaussian_head is not None else []
        for h in heads:
            need.update(i % depth for i in h.intermediate_layer_idx)
        return need

    def forward(self, images: Tensor, *, with_points: bool = True, use_gaussian_head: bool = True,
                frames_chunk_size: int | None = 8, autocast: torch.dtype | None = None) -> VGGT4DPrediction:
        """Run the grid ``[V, T, 3, H, W]`` or ``[B, V, T, 3, H, W]`` (RGB in [0, 1], H and W multiples
        of 14; use ``frames_to_grid`` for a flat view-major list).

        ``autocast`` (e.g. ``torch.bfloat16`` on CUDA) runs the aggregator, temporal layers and
        Gaussian head under autocast; VGGT's camera and depth heads run in float32 as officially.
        Gradients flow only into the temporal layers and the Gaussian head; the aggregator and VGGT's
        heads run without autograd unless trainable temporal layers need their gradients.
        """
        if not isinstance(images, Tensor) or images.ndim not in (5, 6):
            raise InputError(f"VGGT4D takes a grid of frames [V, T, 3, H, W] or [B, V, T, 3, H, W], got "
                             f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}.",
                             "Use frames_to_grid(frames, views, times) for a flat, view-major list of frames.")
        if images.ndim == 5:
            images = images[None]
        B, V, T = images.shape[:3]
        p = self.vggt.config.aggregator.patch_size
        flat = check_images(images.transpose(1, 2).reshape(B * T, V, *images.shape[3:]), p)
        H, W = flat.shape[-2:]
        dev = flat.device
        keep = self._needed_layers(with_points)
        hooks = [self.temporal.hook(B, T)] if self.temporal is not None else []
        token_grad = torch.is_grad_enabled() and self.temporal is not None and any(
            q.requires_grad for q in self.temporal.parameters())
        ctx = torch.autocast(device_type=dev.type, dtype=autocast) if autocast is not None else nullcontext()
        agg = self.vggt.aggregator
        with torch.set_grad_enabled(token_grad), ctx:
            layers, psi = agg(flat.to(agg.camera_token.dtype), keep_layers=keep, hooks=hooks)
        head_dtype = next(self.vggt.depth_head.parameters()).dtype
        layers = [None if t is None else t.to(head_dtype) for t in layers]
        if self.config.replace_camera_tokens:
            layers = replace_camera_tokens(layers, B, T)
        with torch.autocast(device_type=dev.type, enabled=False), torch.set_grad_enabled(token_grad):
            pose_enc = self.vggt.camera_head(layers)[-1]
            depth, depth_conf = self.vggt.depth_head(layers, (H, W), psi, frames_chunk_size)
            points = conf = None
            if with_points and self.vggt.point_head is not None:
                points, conf = self.vggt.point_head(layers, (H, W), psi, frames_chunk_size)
        raw = None
        if self.gaussian_head is not None and use_gaussian_head:
            gdt = next(self.gaussian_head.parameters()).dtype
            with ctx:
                raw = self.gaussian_head([None if t is None else t.to(gdt) for t in layers], (H, W), psi,
                                         frames_chunk_size).float()
        return VGGT4DPrediction(
            images=images, pose_enc=_to_bvt(pose_enc, B, T), depth=_to_bvt(depth, B, T),
            depth_conf=_to_bvt(depth_conf, B, T),
            world_points=None if points is None else _to_bvt(points, B, T),
            world_points_conf=None if conf is None else _to_bvt(conf, B, T),
            gaussian_raw=None if raw is None else _to_bvt(raw, B, T), init=self.config.init)

    @torch.no_grad()
    def decode(self, images: Tensor, fps: float = 16.0, min_confidence: float | None = None,
               autocast: torch.dtype | None = None) -> tuple[GaussianSequence, VGGT4DPrediction]:
        """Inference in one call: Gaussians per timestep of sample 0 and the full prediction (cameras
        via ``.trajectory()``, depth, ``.gaussian_source`` saying head or training-free)."""
        pred = self(images, autocast=autocast)
        return pred.gaussians(0, fps=fps, min_confidence=min_confidence), pred

    def with_init(self, init: InitConfig) -> "VGGT4D":
        """Use another training-free configuration from now on (returns self)."""
        self.config = replace(self.config, init=init)
        return self
