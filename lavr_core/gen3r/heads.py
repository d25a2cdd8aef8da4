"""VGGT's camera, depth and point heads without the aggregator: how Gen3R turns decoded geometry
tokens into cameras, depth and points (``Gen3RPipeline.decode_latents``).

Gen3R never runs VGGT's 1 B-parameter aggregator at inference (the control geometry latents are
zeros); only the heads read the geometry adapter's decoded tokens. ``GeometryHeads`` holds just
those, under VGGT's key names (``camera_head.*``, ``depth_head.*``, ``point_head.*``), so they load
from the full ``facebook/VGGT-1B`` / Gen3R ``vggt/model.safetensors`` without reading the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, InputError
from ..vggt.camera import pose_encoding_to_extri_intri
from ..vggt.camera_head import CameraHead
from ..vggt.config import VGGTConfig
from ..vggt.dpt_head import DPTHead
from .geometry_adapter import as_aggregator_layers, vggt_token_groups

HEAD_PREFIXES = ("camera_head.", "depth_head.", "point_head.")


@dataclass
class GeometryPrediction:
    """Geometry of ``T`` frames of ``H x W`` pixels decoded from adapter tokens (batch 1 dropped).

    Attributes:
        pose_enc: ``[T, 9]`` VGGT pose encoding (last refinement).
        extrinsics: ``[T, 3, 4]`` world-to-camera (OpenCV); world = the first camera (by training).
        intrinsics: ``[T, 3, 3]`` pixels of the ``H x W`` frames.
        depth, depth_conf: ``[T, H, W]`` z-depth (scene units) and its confidence (>= 1).
        world_points, world_points_conf: ``[T, H, W, 3]`` / ``[T, H, W]`` from the point head.
    """

    pose_enc: Tensor
    extrinsics: Tensor
    intrinsics: Tensor
    depth: Tensor
    depth_conf: Tensor
    world_points: Tensor
    world_points_conf: Tensor


class GeometryHeads(nn.Module):
    """The three VGGT heads Gen3R decodes with, for a ``VGGTConfig`` (only its head/DPT sizes matter)."""

    def __init__(self, config: VGGTConfig):
        super().__init__()
        self.config = config
        e2 = 2 * config.embed_dim
        d = config.dpt
        kw = dict(patch_size=config.aggregator.patch_size, features=d.features, out_channels=d.out_channels,
                  intermediate_layer_idx=d.intermediate_layer_idx, pos_embed=d.pos_embed, down_ratio=d.down_ratio)
        self.camera_head = CameraHead(e2, config.camera_head)
        self.point_head = DPTHead(e2, output_dim=4, activation="inv_log", conf_activation="expp1", **kw)
        self.depth_head = DPTHead(e2, output_dim=2, activation="exp", conf_activation="expp1", **kw)
        depth = config.aggregator.depth
        if (depth - 1) not in tuple(i % depth for i in d.intermediate_layer_idx):
            raise CheckpointError("The VGGT camera head reads the last aggregator layer, which is not one of the "
                                  f"DPT layers {d.intermediate_layer_idx}; Gen3R's tokens cannot feed it.",
                                  "Use the VGGT-1B configuration.")

    @property
    def token_dim(self) -> int:
        """Channels of one token group (2 x the aggregator width: 2048 for VGGT-1B)."""
        return 2 * self.config.embed_dim

    @property
    def patch_size(self) -> int:
        return self.config.aggregator.patch_size

    @property
    def dtype(self) -> torch.dtype:
        return self.camera_head.embed_pose.weight.dtype

    def forward(self, tokens: Tensor, frames_chunk_size: int | None = 8) -> GeometryPrediction:
        """Adapter tokens ``[1, 5 * token_dim, T, h, w]`` -> geometry at ``(h * 14) x (w * 14)`` pixels."""
        if tokens.ndim != 5 or tokens.shape[0] != 1 or tokens.shape[1] != 5 * self.token_dim:
            raise InputError(f"Geometry tokens have shape {tuple(tokens.shape)}; these VGGT heads need "
                             f"[1, {5 * self.token_dim}, frames, h, w].",
                             "The geometry adapter and the VGGT weights do not belong together.")
        h, w = tokens.shape[-2:]
        hw = (h * self.patch_size, w * self.patch_size)
        groups = vggt_token_groups(tokens.to(self.dtype))
        cfg = self.config
        layers = as_aggregator_layers(groups, cfg.aggregator.depth, cfg.dpt.intermediate_layer_idx)
        pose_enc = self.camera_head(layers)[-1]
        extr, intr = pose_encoding_to_extri_intri(pose_enc, hw)
        psi = cfg.aggregator.patch_start_idx
        depth, depth_conf = self.depth_head(layers, hw, psi, frames_chunk_size)
        points, points_conf = self.point_head(layers, hw, psi, frames_chunk_size)
        return GeometryPrediction(pose_enc[0], extr[0], intr[0], depth[0, ..., 0], depth_conf[0], points[0],
                                  points_conf[0])


def _config_for_width(token_dim: int, what: str) -> VGGTConfig:
    for base in (VGGTConfig.vggt_1b(enable_track=False), VGGTConfig.tiny()):
        if 2 * base.embed_dim == token_dim:
            return replace(base, enable_track=False)
    raise CheckpointError(f"{what} has VGGT heads {token_dim} wide; only VGGT-1B (2048) and the tiny test size (64) "
                          "are known.", "Use the vggt/model.safetensors of JaceyH919/Gen3R or facebook/VGGT-1B.")


def heads_from_state_dict(state_dict: dict, *, dtype: torch.dtype = torch.float32,
                          device: str | torch.device = "cpu", what: str = "The VGGT file") -> GeometryHeads:
    """The heads from a VGGT state dict (the aggregator's and track head's tensors are ignored), strict."""
    from ..checkpoint_io import strict_load, strip_prefix

    sd = strip_prefix(state_dict)
    heads = {k: v for k, v in sd.items() if k.startswith(HEAD_PREFIXES)}
    missing = [p[:-1] for p in HEAD_PREFIXES if not any(k.startswith(p) for k in heads)]
    if missing:
        raise CheckpointError(f"{what} has no {', '.join(missing)} weights; Gen3R decodes geometry with VGGT's "
                              "camera, depth and point heads.",
                              "Use the vggt/model.safetensors of JaceyH919/Gen3R (or facebook/VGGT-1B's "
                              "model.safetensors).")
    norm = heads.get("camera_head.token_norm.weight")
    if norm is None:
        raise CheckpointError(f"{what} has a camera head without token_norm.weight.", "The file is damaged.")
    config = _config_for_width(int(norm.shape[0]), what)
    heads = {k: v.to(dtype) if v.is_floating_point() else v for k, v in heads.items()}
    with torch.device("meta"):
        module = GeometryHeads(config)
    strict_load(module, heads, what="VGGT heads (camera, depth, point)", assign=True)
    return module.to(device).eval()


def load_geometry_heads(path: str | Path, **kwargs) -> GeometryHeads:
    """The heads of a VGGT checkpoint; from ``.safetensors`` only the head tensors are read."""
    from ..checkpoint_io import find_state_dict, is_safetensors, load_file_any

    p = Path(path)
    if is_safetensors(p) and p.is_file() and p.stat().st_size > 0:
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(p), framework="pt") as f:
                sd = {k: f.get_tensor(k) for k in f.keys()
                      if k.split(".", 1)[-1].startswith(HEAD_PREFIXES) or k.startswith(HEAD_PREFIXES)}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise CheckpointError(f"Cannot read the VGGT file {p} as safetensors ({e}).",
                                  "The file is truncated or damaged: download it again.") from e
    else:
        sd = find_state_dict(load_file_any(p, what="VGGT"), path=p, what="VGGT")
    return heads_from_state_dict(sd, what=f"The file {p.name}", **kwargs)


__all__ = ["GeometryHeads", "GeometryPrediction", "heads_from_state_dict", "load_geometry_heads"]
