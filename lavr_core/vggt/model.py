"""VGGT: cameras, depth, point maps and tracks from a set of frames in one forward pass.

Inputs are RGB frames in [0, 1], ``[S, 3, H, W]`` or ``[B, S, 3, H, W]`` with H and W multiples of
14 (``lavr_core.vggt.preprocess`` produces them from pictures the official way). Frame 0 is the
reference: the world frame is its camera frame.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import InputError
from .aggregator import Aggregator, LayerHook
from .camera import pose_encoding_to_extri_intri
from .camera_head import CameraHead
from .config import VGGTConfig
from .dpt_head import DPTHead
from .track_head import TrackHead


@dataclass
class VGGTPrediction:
    """What ``VGGT.forward`` returns, for ``B`` sequences of ``S`` frames of ``H x W`` pixels.

    Attributes:
        pose_enc: ``[B, S, 9]`` camera encoding after the last refinement (``lavr_core.vggt.camera``).
        pose_enc_list: the encoding after each refinement iteration (4 by default).
        depth: ``[B, S, H, W, 1]`` depth along each camera's z axis, in the scene's unknown scale.
        depth_conf: ``[B, S, H, W]`` confidence (>= 1; larger is surer).
        world_points: ``[B, S, H, W, 3]`` per-pixel points in the first camera's frame.
        world_points_conf: ``[B, S, H, W]``.
        images: the ``[B, S, 3, H, W]`` input.
        track, vis, conf: with query points only: ``[B, S, N, 2]`` pixel positions of the N queries in
            every frame (last iteration), visibility and confidence ``[B, S, N]`` in (0, 1).
        track_list: tracks after each iteration.
        aggregated_tokens: the aggregator layers, only when asked for (``return_tokens=True``).
        Heads that are disabled leave their fields ``None``.
    """

    pose_enc: Tensor | None = None
    pose_enc_list: list[Tensor] = field(default_factory=list)
    depth: Tensor | None = None
    depth_conf: Tensor | None = None
    world_points: Tensor | None = None
    world_points_conf: Tensor | None = None
    images: Tensor | None = None
    track: Tensor | None = None
    track_list: list[Tensor] = field(default_factory=list)
    vis: Tensor | None = None
    conf: Tensor | None = None
    aggregated_tokens: list[Tensor | None] | None = None
    patch_start_idx: int = 0

    @property
    def image_hw(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])

    def extrinsics_intrinsics(self) -> tuple[Tensor, Tensor]:
        """World-to-camera ``[B, S, 3, 4]`` (OpenCV) and intrinsics ``[B, S, 3, 3]`` in pixels."""
        return pose_encoding_to_extri_intri(self.pose_enc, self.image_hw)

    def as_dict(self) -> dict:
        """The official ``predictions`` dict: same keys, tensors and list layout; absent ones omitted."""
        out = {}
        for k in ("pose_enc", "pose_enc_list", "depth", "depth_conf", "world_points", "world_points_conf",
                  "track", "vis", "conf", "images"):
            v = getattr(self, k)
            if v is not None and not (isinstance(v, list) and not v):
                out[k] = v
        return out


def check_images(images: Tensor, patch_size: int = 14) -> Tensor:
    """Validate model input and return it as ``[B, S, 3, H, W]``; raises ``InputError`` saying why not."""
    if not isinstance(images, Tensor):
        raise InputError(f"VGGT takes a tensor of frames, got {type(images).__name__}.",
                         "Pass [S, 3, H, W] or [B, S, 3, H, W] RGB in [0, 1] (see lavr_core.vggt.preprocess).")
    if images.ndim == 4:
        images = images[None]
    if images.ndim != 5 or images.shape[2] != 3:
        hint = " It looks channels-last (ComfyUI IMAGE); preprocess it first." if images.shape[-1] == 3 else ""
        raise InputError(f"VGGT frames have shape {tuple(images.shape)}; expected [S, 3, H, W] or "
                         f"[B, S, 3, H, W].{hint}", "Use lavr_core.vggt.preprocess to prepare frames.")
    H, W = images.shape[-2:]
    if H % patch_size or W % patch_size or H == 0 or W == 0:
        raise InputError(f"Frame size {H}x{W} is not a multiple of VGGT's {patch_size}-pixel patches.",
                         "Resize or crop to multiples of 14, e.g. with lavr_core.vggt.preprocess (518 px wide).")
    if not images.is_floating_point():
        raise InputError(f"VGGT frames are {images.dtype}; expected floats in [0, 1].",
                         "Divide 8-bit pixels by 255.")
    lo, hi = torch.aminmax(images.detach())
    lo, hi = float(lo), float(hi)
    if not (lo == lo and hi == hi) or abs(lo) == float("inf") or abs(hi) == float("inf"):
        raise InputError("VGGT frames hold NaN or infinity.", "Check the frames upstream.")
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(f"VGGT frames range over [{lo:.3g}, {hi:.3g}]; the model expects RGB in [0, 1] and "
                         "normalises internally.", "Pass unnormalised RGB in [0, 1] (divide 8-bit values by 255).")
    return images


class VGGT(nn.Module):
    """The VGGT model. Submodules and parameter names equal the official ``VGGT``'s, so the
    released ``facebook/VGGT-1B`` checkpoint loads with a strict key-for-key match."""

    def __init__(self, config: VGGTConfig | None = None):
        super().__init__()
        cfg = config or VGGTConfig()
        self.config = cfg
        E2 = 2 * cfg.embed_dim
        p = cfg.aggregator.patch_size
        d = cfg.dpt
        self.aggregator = Aggregator(cfg.aggregator)
        self.camera_head = CameraHead(E2, cfg.camera_head) if cfg.enable_camera else None
        dpt_kw = dict(patch_size=p, features=d.features, out_channels=d.out_channels,
                      intermediate_layer_idx=d.intermediate_layer_idx, pos_embed=d.pos_embed, down_ratio=d.down_ratio)
        self.point_head = DPTHead(E2, output_dim=4, activation="inv_log", conf_activation="expp1",
                                  **dpt_kw) if cfg.enable_point else None
        self.depth_head = DPTHead(E2, output_dim=2, activation="exp", conf_activation="expp1",
                                  **dpt_kw) if cfg.enable_depth else None
        self.track_head = TrackHead(E2, p, cfg.track_head) if cfg.enable_track else None

    def needed_layers(self, with_track: bool = False) -> set[int]:
        """Aggregator layers the enabled heads read (the rest need not be kept)."""
        depth = self.config.aggregator.depth
        need: set[int] = set()
        if self.camera_head is not None:
            need.add(depth - 1)
        for head in (self.point_head, self.depth_head):
            if head is not None:
                need.update(i % depth for i in head.intermediate_layer_idx)
        if with_track and self.track_head is not None:
            need.update(i % depth for i in self.track_head.feature_extractor.intermediate_layer_idx)
        return need

    def forward(self, images: Tensor, query_points: Tensor | None = None, hooks: Sequence[LayerHook] = (),
                return_tokens: bool = False, frames_chunk_size: int | None = 8,
                aggregator_autocast: torch.dtype | None = None) -> VGGTPrediction:
        """Predict cameras, depth, points (and tracks when ``query_points`` ``[N, 2]`` or ``[B, N, 2]``
        pixel positions in frame 0 are given).

        ``hooks`` go to the aggregator (see ``lavr_core.vggt.aggregator.LayerHook``).
        ``return_tokens`` keeps every aggregator layer in the result (memory: 24 x ``[B,S,P,2C]``).
        ``aggregator_autocast`` (e.g. ``torch.bfloat16`` on CUDA) runs the aggregator under autocast;
        the heads always run in float32, as the official model does.
        """
        images = check_images(images, self.config.aggregator.patch_size)
        B, S, _, H, W = images.shape
        if query_points is not None:
            if self.track_head is None:
                raise InputError("Query points were given but this VGGT has no tracking head.",
                                 "Load a checkpoint with the track head, or drop query_points.")
            if query_points.ndim == 2:
                query_points = query_points[None]
            if query_points.ndim != 3 or query_points.shape[-1] != 2 or query_points.shape[0] not in (1, B):
                raise InputError(f"Query points have shape {tuple(query_points.shape)}; expected [N, 2] or "
                                 f"[{B}, N, 2] pixel (x, y) positions in frame 0.", "Reshape the query points.")
            query_points = query_points.to(images.device, torch.float32).expand(B, -1, -1)
        keep = None if return_tokens else self.needed_layers(with_track=query_points is not None)
        ctx = (torch.autocast(device_type=images.device.type, dtype=aggregator_autocast)
               if aggregator_autocast is not None else nullcontext())
        with ctx:
            layers, psi = self.aggregator(images.to(self.aggregator.camera_token.dtype), keep_layers=keep, hooks=hooks)
        head_dtype = next((p.dtype for h in (self.camera_head, self.depth_head, self.point_head, self.track_head)
                           if h is not None for p in h.parameters()), torch.float32)
        layers = [None if t is None else t.to(head_dtype) for t in layers]
        pred = VGGTPrediction(images=images, patch_start_idx=psi, aggregated_tokens=layers if return_tokens else None)
        no_autocast = torch.autocast(device_type=images.device.type, enabled=False)
        with no_autocast:
            if self.camera_head is not None:
                pred.pose_enc_list = self.camera_head(layers)
                pred.pose_enc = pred.pose_enc_list[-1]
            if self.depth_head is not None:
                pred.depth, pred.depth_conf = self.depth_head(layers, (H, W), psi, frames_chunk_size)
            if self.point_head is not None:
                pred.world_points, pred.world_points_conf = self.point_head(layers, (H, W), psi, frames_chunk_size)
            if query_points is not None:
                pred.track_list, pred.vis, pred.conf = self.track_head(layers, (H, W), psi, query_points)
                pred.track = pred.track_list[-1]
        return pred
