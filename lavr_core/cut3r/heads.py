"""CUT3R prediction heads: camera pose, points in the view's own frame, points in the world frame, colour.

Both heads take the four decoder outputs ``[enc, dec_a, dec_b, dec_last]`` of one frame, where only
``dec_last`` still starts with the pose token, and return a dict (official key names):

* ``pts3d_in_self_view`` ``[B, H, W, 3]`` and ``conf_self`` ``[B, H, W]``;
* ``rgb`` ``[B, H, W, 3]`` in [-1, 1] (when the model has a colour head);
* ``camera_pose`` ``[B, 7]`` = ``tx, ty, tz, qw, qx, qy, qz``, camera-to-world (OpenCV camera axes);
* ``pts3d_in_other_view`` ``[B, H, W, 3]`` (world = first frame's camera) and ``conf`` ``[B, H, W]``.

The world points come from the same image tokens after two blocks modulated by the pose token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Mlp, ModulatedBlock
from .config import Cut3rConfig
from .dpt import DPTAdapter
from .rope import RopePositions


# ------------------------------------------------------------------------------ output activations

def points_activation(xyz: torch.Tensor, mode: tuple, positive_z: bool = False) -> torch.Tensor:
    """Raw ``[..., 3]`` -> points. ``exp``: direction times ``expm1(|xyz|)``; ``positive_z`` flips to z >= 0 first."""
    kind = mode[0]
    if kind == "linear":
        return xyz
    if positive_z:
        xyz = xyz * torch.sign(xyz[..., -1:])
    d = xyz.norm(dim=-1, keepdim=True)
    unit = xyz / d.clip(min=1e-8)
    if kind == "square":
        return unit * d.square()
    return unit * torch.expm1(d)


def confidence_activation(x: torch.Tensor, mode: tuple) -> torch.Tensor:
    """``exp``: ``vmin + exp(x)`` (clipped at ``vmax - vmin``); ``sigmoid``: squashed into ``[vmin, vmax]``."""
    kind, vmin, vmax = mode
    if kind == "sigmoid":
        return (vmax - vmin) * torch.sigmoid(x) + vmin
    return vmin + x.exp().clip(max=vmax - vmin)


def rgb_activation(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Sigmoid squeezed into ``[eps, 1-eps]``, then mapped to ``[-1, 1]``."""
    return (torch.sigmoid(x) * (1 - 2 * eps) + eps - 0.5) * 2


def pose_activation(raw: torch.Tensor, mode: tuple) -> torch.Tensor:
    """``[B, 7]`` raw -> translation scaled like the points, unit quaternion with ``w >= 0``."""
    t, q = raw[..., :3], raw[..., 3:7]
    d = t.norm(dim=-1, keepdim=True)
    if mode[0] == "square":
        scale = d.square() / d.clip(min=1e-8)
    else:
        scale = torch.expm1(d) / d.clip(min=1e-8)
    q = F.normalize(q, p=2, dim=-1)
    q = torch.where(q[..., :1] < 0, -q, q)
    return torch.cat((t * scale, q), dim=-1)


def _dense(out: torch.Tensor, depth_mode, conf_mode, positive_z=False):
    """``[B, 4, H, W]`` -> points ``[B, H, W, 3]``, confidence ``[B, H, W]``."""
    # contiguous: the activations' norm on the strided NHWC view is ~20x slower on CPU
    fmap = out.permute(0, 2, 3, 1).contiguous()
    return points_activation(fmap[..., :3], depth_mode, positive_z), confidence_activation(fmap[..., 3], conf_mode)


# ---------------------------------------------------------------------------------------- heads

class PoseDecoder(nn.Module):
    """MLP ``D -> 4D -> 7`` on the pose token."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = Mlp(dim, 4 * dim, 7)

    def forward(self, token: torch.Tensor) -> torch.Tensor:
        return self.mlp(token)


class _HeadBase(nn.Module):
    def __init__(self, cfg: Cut3rConfig):
        super().__init__()
        d = cfg.dec_embed_dim
        self.depth_mode, self.conf_mode, self.pose_mode = cfg.depth_mode, cfg.conf_mode, cfg.pose_mode
        self.has_rgb = cfg.rgb_head
        self.pose_head = PoseDecoder(d)
        self.final_transform = nn.ModuleList([ModulatedBlock(d, cfg.dec_num_heads, 4.0) for _ in range(2)])

    def _pose_and_cross(self, last: torch.Tensor, pos: RopePositions | None):
        pose_token, tokens = last[:, 0], last[:, 1:]
        raw_pose = self.pose_head(pose_token)
        cross = tokens
        for blk in self.final_transform:
            cross = blk(cross, pose_token, pos)
        return tokens, cross, pose_activation(raw_pose, self.pose_mode)


class DPTHead(_HeadBase):
    """The 512 model's head: three DPT adapters (self points, world points, colour) and the pose MLP."""

    def __init__(self, cfg: Cut3rConfig):
        super().__init__(cfg)
        dims = (cfg.enc_embed_dim, cfg.dec_embed_dim, cfg.dec_embed_dim, cfg.dec_embed_dim)
        kw = dict(dim_tokens=dims, feature_dim=cfg.dpt_feature_dim, layer_dims=cfg.dpt_layer_dims,
                  patch_size=cfg.patch_size)
        self.dpt_self = DPTAdapter(4, **kw)
        self.dpt_cross = DPTAdapter(4, **kw)
        if cfg.rgb_head:
            self.dpt_rgb = DPTAdapter(3, **kw)

    def forward(self, feats: list[torch.Tensor], image_size: tuple[int, int],
                pos: RopePositions | None) -> dict[str, torch.Tensor]:
        tokens, cross, pose = self._pose_and_cross(feats[-1], pos)
        plain = list(feats[:-1]) + [tokens]
        out = {}
        out["pts3d_in_self_view"], out["conf_self"] = _dense(self.dpt_self(plain, image_size),
                                                             self.depth_mode, self.conf_mode)
        if self.has_rgb:
            out["rgb"] = rgb_activation(self.dpt_rgb(plain, image_size).permute(0, 2, 3, 1))
        out["camera_pose"] = pose
        out["pts3d_in_other_view"], out["conf"] = _dense(self.dpt_cross(list(feats[:-1]) + [cross], image_size),
                                                         self.depth_mode, self.conf_mode)
        return out


class LinearHead(_HeadBase):
    """The 224 model's head: per-token MLPs to ``p x p`` pixels each (pixel shuffle)."""

    def __init__(self, cfg: Cut3rConfig):
        super().__init__(cfg)
        d, p = cfg.dec_embed_dim, cfg.patch_size
        self.patch_size = p
        self.proj = Mlp(d, 4 * d, 4 * p * p)
        if cfg.rgb_head:
            self.rgb_proj = Mlp(d, 4 * d, 3 * p * p)
        self.cross_proj = Mlp(d, 4 * d, 4 * p * p)

    def _unpatch(self, feat: torch.Tensor, image_size) -> torch.Tensor:
        b, _, c = feat.shape
        p = self.patch_size
        grid = feat.transpose(1, 2).reshape(b, c, image_size[0] // p, image_size[1] // p)
        return F.pixel_shuffle(grid, p)

    def forward(self, feats: list[torch.Tensor], image_size: tuple[int, int],
                pos: RopePositions | None) -> dict[str, torch.Tensor]:
        tokens, cross, pose = self._pose_and_cross(feats[-1], pos)
        out = {}
        out["pts3d_in_self_view"], out["conf_self"] = _dense(self._unpatch(self.proj(tokens), image_size),
                                                             self.depth_mode, self.conf_mode, positive_z=True)
        if self.has_rgb:
            out["rgb"] = rgb_activation(self._unpatch(self.rgb_proj(tokens), image_size).permute(0, 2, 3, 1))
        out["camera_pose"] = pose
        out["pts3d_in_other_view"], out["conf"] = _dense(self._unpatch(self.cross_proj(cross), image_size),
                                                         self.depth_mode, self.conf_mode)
        return out


def build_head(cfg: Cut3rConfig) -> nn.Module:
    return DPTHead(cfg) if cfg.head_type == "dpt" else LinearHead(cfg)
