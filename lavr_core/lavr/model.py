"""``LavrModel``: ReCamMaster plus the LaVR scene-latent branch.

Sequence. ReCamMaster's DiT input is ``x = cat([noisy_target, source], dim=2)`` ``[B, C, 2F, H, W]``.
With scene conditioning, ``forward`` appends the adapter's latent frames ``[B, C, F_a, H, W]``
(``LavrAdapter.scene_frames``) after the source, runs the DiT on ``[target F | source F | adapter F_a]``
and returns the first ``2F`` frames, so the output has the shape of ``x`` exactly as ReCamMaster's.
RoPE: the frame positions simply continue, so target frames sit at 0..F-1, source at F..2F-1
(as in ReCamMaster) and adapter frames at 2F..2F+F_a-1; height/width positions are shared.

Cameras. ReCamMaster's own camera layers (``cam_encoder`` tiled over target and source frames)
are unchanged and do not touch the adapter frames. On top, every block adds LaVR's per-frame pose
features to its self-attention input: target frames get the target-pose branch, source frames the
source-pose branch (CUT3R's poses of the source latent frames), adapter frames the source-pose
branch at the frame its state snapshot was taken. All poses are ``inv(first source camera) @ c2w``
as 12 numbers; CUT3R's world already is its first camera. Source poses are in CUT3R's scene units.

Equality with ReCamMaster. Without an adapter (``adapter is None``), or without a scene latent
(``condition_kwargs`` returns ``{}``), ``forward`` *is* ``ReCamMasterModel.forward``: bit-identical on
the same weights. A freshly initialised adapter adds exactly zero pose features and all-zero latent
frames, but those frames are extra tokens that self-attention attends to, so its output is close to
ReCamMaster's, not bit-identical (no attention mask can be expressed through the DiT's hooks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError, InputError, TrajectoryError
from ..wan.model import Grid, WanModel
from ..wan.recammaster import ReCamMasterBlock, ReCamMasterModel
from .adapter import LavrAdapter, frame_indices, relative_pose_12, snapshot_indices

#: Keyword arguments ``condition_kwargs`` returns and ``forward`` takes.
LATENTS_KW = "lavr_latents"
FEATURES_KW = "lavr_features"


@dataclass
class SceneTokens:
    """What the adapter reads of a scene latent.

    Attributes:
        state_tokens: ``[K, S, D]`` CUT3R state after the frames ``state_frames``.
        state_frames: source-video frame index of each snapshot (ascending).
        source_c2w: ``[T, 4, 4]`` source cameras, OpenCV camera-to-world, world = first camera
            (CUT3R's scene units), one per source video frame.
    """

    state_tokens: torch.Tensor
    state_frames: list[int]
    source_c2w: torch.Tensor

    def __post_init__(self):
        if self.state_tokens is None or self.state_tokens.ndim != 3 or self.state_tokens.shape[0] == 0:
            shape = None if self.state_tokens is None else tuple(self.state_tokens.shape)
            raise InputError(f"The scene latent's state tokens have shape {shape}; expected [snapshots, tokens, width].",
                             "Encode the scene latent with state_every >= 1 (every k-th frame's CUT3R state).")
        if len(self.state_frames) != self.state_tokens.shape[0]:
            raise InputError(f"The scene latent has {self.state_tokens.shape[0]} state snapshots but "
                             f"{len(self.state_frames)} snapshot frame indices.", "Encode the scene latent again.")
        if self.source_c2w.ndim != 3 or self.source_c2w.shape[-2:] != (4, 4):
            raise TrajectoryError(f"Source poses have shape {tuple(self.source_c2w.shape)}; expected [T, 4, 4].",
                                  "Give one camera-to-world matrix per source frame.")
        if max(self.state_frames) >= self.num_frames:
            raise InputError(f"A state snapshot is at frame {max(self.state_frames)} but the source has "
                             f"{self.num_frames} poses.", "Encode the scene latent again from the same video.")
        if not torch.isfinite(self.state_tokens).all():
            raise InputError("The scene latent's state tokens hold NaN or infinity.",
                             "Encode the scene latent again (check the source video and the CUT3R weights).")

    @property
    def num_frames(self) -> int:
        return self.source_c2w.shape[0]

    @classmethod
    def from_scene(cls, scene) -> "SceneTokens":
        """From a ``lavr_core.scene.SceneLatent`` (or a ``SceneTokens``, returned as is)."""
        if isinstance(scene, SceneTokens):
            return scene
        if getattr(scene, "state_tokens", None) is None:
            raise InputError("This scene latent was encoded without state tokens (state_every = 0).",
                             "Encode the video again with state_every >= 1 (4 matches the video model's latent frames).")
        return cls(scene.state_tokens, list(scene.state_frames), scene.trajectory.c2w)


class LavrBlockCond(NamedTuple):
    """What ``LavrModel.forward`` hands every block: ReCamMaster's ``cam_emb [B, F, 12]`` (or None),
    the number of target + source frames ``2F`` it is tiled over, and the per-block pose features
    ``[num_layers, B, 2F + F_a, dim]``."""

    cam_emb: torch.Tensor | None
    main_frames: int
    features: torch.Tensor


class LavrBlock(ReCamMasterBlock):
    """ReCamMaster block that also adds LaVR's per-frame features. Adds no parameters of its own
    (the pose output layers live in the adapter), so the DiT's keys stay ReCamMaster's."""

    lavr_index: int = 0

    def condition_attention_input(self, h: torch.Tensor, grid: Grid, cond) -> torch.Tensor:
        if not isinstance(cond, LavrBlockCond):
            return super().condition_attention_input(h, grid, cond)
        f, hh, ww = grid
        feat = cond.features[self.lavr_index]
        if cond.cam_emb is not None:
            cam = self.cam_encoder(cond.cam_emb.to(self.cam_encoder.weight.dtype))
            cam = cam.repeat(1, cond.main_frames // cam.shape[1], 1)
            # ReCamMaster's camera covers target and source frames only; adapter frames get none.
            feat = F.pad(cam, (0, 0, 0, f - cond.main_frames)) + feat.to(cam.dtype)
        b, _, d = h.shape
        return (h.view(b, f, hh * ww, d) + feat.to(h.dtype)[:, :, None]).view(b, f * hh * ww, d)


def _check_cam_emb(cam_emb: torch.Tensor | None, frames: int, cam_dim: int) -> torch.Tensor | None:
    if cam_emb is None:
        return None
    if cam_emb.ndim == 2:
        cam_emb = cam_emb[None]
    if cam_emb.ndim != 3 or cam_emb.shape[-1] != cam_dim or cam_emb.shape[1] != frames:
        raise InputError(f"cam_emb has shape {tuple(cam_emb.shape)}; LaVR needs [batch, {frames} target latent frames, "
                         f"{cam_dim}].", "Build it with lavr_core.wan.recammaster.camera_embedding(trajectory) for a "
                         "trajectory as long as the source video.")
    if not torch.isfinite(cam_emb).all():
        raise TrajectoryError("The camera embedding holds NaN or infinity.",
                              "Fix the target trajectory; every pose must be finite.")
    return cam_emb


class LavrModel(ReCamMasterModel):
    """ReCamMaster with an optional ``adapter`` (``LavrAdapter`` or None; module docstring)."""

    block_class = LavrBlock

    def __init__(self, config, adapter: LavrAdapter | None = None):
        super().__init__(config)
        for i, block in enumerate(self.blocks):
            block.lavr_index = i
        self.register_module("adapter", None)
        if adapter is not None:
            self.set_adapter(adapter)

    def set_adapter(self, adapter: LavrAdapter | None) -> None:
        if adapter is not None:
            adapter.config.check_model(self.config)
        self.adapter = adapter

    @classmethod
    def from_base(cls, base: ReCamMasterModel, adapter: LavrAdapter | None = None,
                  overrides: dict[str, torch.Tensor] | None = None) -> "LavrModel":
        """A ``LavrModel`` sharing ``base``'s parameters (no copy; ``base`` itself is left as it was).

        ``overrides`` (base key -> tensor) replace single tensors by new parameters in the new model
        only (LaVR's retrained layers); keys and shapes must exist in the base.
        """
        if not isinstance(base, ReCamMasterModel):
            raise CheckpointError(f"The LaVR adapter attaches to a ReCamMaster model, not a {type(base).__name__}.",
                                  "Load ReCamMaster's step20000.ckpt as the video model.")
        with torch.device("meta"):
            model = cls(base.config)
        sd = {k: v for k, v in base.state_dict(keep_vars=True).items() if not k.startswith("adapter.")}
        flags = {k: v.requires_grad for k, v in sd.items()}
        for k, v in (overrides or {}).items():
            if k not in sd:
                raise CheckpointError(f"The LaVR weights replace base tensor {k!r}, which ReCamMaster does not have.",
                                      "Use LaVR weights made for this video model.")
            if tuple(v.shape) != tuple(sd[k].shape):
                raise CheckpointError(f"The LaVR weights' base tensor {k!r} is {list(v.shape)}; the model's is "
                                      f"{list(sd[k].shape)}.", "Use LaVR weights made for this video model.")
            sd[k] = nn.Parameter(v.detach().to(sd[k].device, sd[k].dtype).clone(), requires_grad=flags[k])
        model.load_state_dict(sd, strict=True, assign=True)
        for k, p in model.state_dict(keep_vars=True).items():  # assign=True re-flags shared parameters
            if k in flags and isinstance(p, nn.Parameter):
                p.requires_grad_(flags[k])
        model.rope_dtype = base.rope_dtype
        model.gradient_checkpointing = base.gradient_checkpointing
        model._rope_tables = base._rope_tables
        model.train(base.training)
        if adapter is not None:
            model.set_adapter(adapter)
        return model

    # ------------------------------------------------------------------------------- conditioning
    def condition_kwargs(self, scene, target_cam_emb: torch.Tensor | None, num_latent_frames: int,
                         latent_hw: tuple[int, int]) -> dict:
        """Keyword arguments for ``forward`` from a scene latent; ``{}`` without adapter or scene.

        Args:
            scene: ``lavr_core.scene.SceneLatent`` (or ``SceneTokens``) of the source video.
            target_cam_emb: ``[1, F, 12]`` target cameras (``camera_embedding``), or None.
            num_latent_frames: F, the target's (= source's) latent frame count.
            latent_hw: ``(H, W)`` of the latent grid.

        Returns ``{"lavr_latents": [1, C, F_a, H, W], "lavr_features": [layers, 1, 2F + F_a, dim]}``,
        computed once per video (differentiable when grad is on, for training).
        """
        if self.adapter is None or scene is None:
            return {}
        tokens = SceneTokens.from_scene(scene)
        a = self.adapter
        F_ = int(num_latent_frames)
        if F_ < 1:
            raise InputError(f"num_latent_frames={num_latent_frames} must be at least 1.", "Pass the target's latent frames.")
        n = a.config.frames or F_
        T = tokens.num_frames
        snaps = snapshot_indices(tokens.state_frames, T, n)
        unique = sorted(set(snaps))
        dev = a.out_proj.weight.device
        frames = a.scene_frames(tokens.state_tokens[unique].to(dev), latent_hw)      # [C, U, H, W]
        latents = frames[:, [unique.index(i) for i in snaps]][None]                  # [1, C, n, H, W]
        c2w = tokens.source_c2w.double()
        src_frames = frame_indices(T, F_)
        snap_frames = [tokens.state_frames[i] for i in snaps]
        source_pose = relative_pose_12(c2w[src_frames + snap_frames], reference=c2w[0])[None].to(dev)
        target = _check_cam_emb(target_cam_emb, F_, self.config.cam_dim)
        target = None if target is None else target.to(dev)
        features = a.pose_features(source_pose, target)
        if target is None:
            features = F.pad(features, (0, 0, F_, 0))
        return {LATENTS_KW: latents, FEATURES_KW: features}

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                cam_emb: torch.Tensor | None = None, *, lavr_latents: torch.Tensor | None = None,
                lavr_features: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Velocity ``[B, C, 2F, H, W]`` for ``x = cat([noisy_target, source], dim=2)`` (ReCamMaster's
        input), conditioned on the scene when ``condition_kwargs``' output is passed."""
        if lavr_latents is None and lavr_features is None:
            return super().forward(x, timestep, context, cam_emb, **kwargs)
        if lavr_latents is None or lavr_features is None:
            raise InputError("LaVR conditioning needs both lavr_latents and lavr_features.",
                             "Pass everything LavrModel.condition_kwargs returned.")
        if x.ndim != 5 or x.shape[2] % 2:
            raise InputError(f"The latents have shape {tuple(x.shape)}; LaVR needs [batch, channels, 2F, height, "
                             "width] (target frames, then the source's).", "Concatenate target and source latents "
                             "with concat_target_source.")
        B, C, F2, H, W = x.shape
        n = lavr_latents.shape[2]
        if lavr_latents.ndim != 5 or lavr_latents.shape[0] not in (1, B) or tuple(lavr_latents.shape[3:]) != (H, W) \
                or lavr_latents.shape[1] != C:
            raise InputError(f"The LaVR scene frames have shape {tuple(lavr_latents.shape)}; the latents are {tuple(x.shape)}.",
                             "Compute the conditioning with condition_kwargs for this video's size.")
        if lavr_features.ndim != 4 or lavr_features.shape[0] != self.config.num_layers \
                or lavr_features.shape[1] not in (1, B) or lavr_features.shape[2] != F2 + n:
            raise InputError(f"The LaVR pose features have shape {tuple(lavr_features.shape)}; expected "
                             f"[{self.config.num_layers}, batch, {F2 + n}, {self.config.dim}].",
                             "Compute the conditioning with condition_kwargs for this video's frame count.")
        cam_emb = _check_cam_emb(cam_emb, F2 // 2, self.config.cam_dim)
        xx = torch.cat([x, lavr_latents.to(x.dtype).expand(B, -1, -1, -1, -1)], dim=2)
        out = WanModel.forward(self, xx, timestep, context, block_cond=LavrBlockCond(cam_emb, F2, lavr_features),
                               **kwargs)
        return out[:, :, :F2]

    def base_state_dict(self) -> dict[str, torch.Tensor]:
        """The ReCamMaster part of the state dict (ReCamMaster's own key names, no adapter)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("adapter.")}
