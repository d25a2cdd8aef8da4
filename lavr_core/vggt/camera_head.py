"""Camera head: iteratively refined pose encodings from the aggregator's camera tokens.

Input: the last aggregator layer ``[B, S, P, 2C]``; only token 0 (the camera token) is read.
Output: one pose encoding ``[B, S, 9]`` per iteration (``T(3) | quaternion xyzw (4) | fov_h | fov_w``,
see ``lavr_core.vggt.camera``), each the running sum of the iterations' deltas, activated.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import CameraHeadConfig
from .layers import Block, Mlp

POSE_ENCODING_DIM = {"absT_quaR_FoV": 9}


def activate(x: Tensor, kind: str) -> Tensor:
    """Output activations shared by the heads: linear, relu, exp, inv_log = sign(x)*(e^|x| - 1)."""
    if kind == "linear":
        return x
    if kind == "relu":
        return F.relu(x)
    if kind == "exp":
        return torch.exp(x)
    if kind == "inv_log":
        return torch.sign(x) * torch.expm1(x.abs())
    raise ValueError(f"unknown activation {kind!r}")


class CameraHead(nn.Module):
    def __init__(self, dim_in: int, cfg: CameraHeadConfig):
        super().__init__()
        if cfg.pose_encoding_type not in POSE_ENCODING_DIM:
            raise ValueError(f"unsupported pose encoding {cfg.pose_encoding_type!r}")
        self.cfg = cfg
        self.target_dim = POSE_ENCODING_DIM[cfg.pose_encoding_type]
        self.trunk = nn.Sequential(*[Block(dim_in, cfg.num_heads, cfg.mlp_ratio, init_values=cfg.init_values)
                                     for _ in range(cfg.trunk_depth)])
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        # The first iteration starts from this learned "no estimate yet" encoding.
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, self.target_dim))
        self.embed_pose = nn.Linear(self.target_dim, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, self.target_dim)

    def _activate_pose(self, enc: Tensor) -> Tensor:
        c = self.cfg
        return torch.cat([activate(enc[..., :3], c.trans_act), activate(enc[..., 3:7], c.quat_act),
                          activate(enc[..., 7:], c.fl_act)], dim=-1)

    def forward(self, layers: list[Tensor | None], num_iterations: int = 4) -> list[Tensor]:
        """Pose encodings ``[B, S, 9]`` after each of ``num_iterations`` refinements (last is best)."""
        tokens = self.token_norm(layers[-1][:, :, 0])  # [B, S, 2C]
        B, S, _ = tokens.shape
        raw: Tensor | None = None
        results = []
        for _ in range(num_iterations):
            # Each step conditions on, and adds to, the previous estimate without backpropagating
            # through it (the official training detaches it the same way).
            prev = self.empty_pose_tokens.expand(B, S, -1) if raw is None else raw.detach()
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(prev)).chunk(3, dim=-1)
            x = gate * (self.adaln_norm(tokens) * (1 + scale) + shift) + tokens
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            raw = delta if raw is None else prev + delta
            results.append(self._activate_pose(raw))
        return results
