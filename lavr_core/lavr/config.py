"""Shapes and policies of the LaVR scene-latent adapter (``LavrAdapterConfig``), JSON round-trip.

Nothing here builds a module. The sizes of the DiT the adapter feeds (``model_dim``,
``model_layers``, ``latent_channels``) are part of the config because the adapter has one output
layer per DiT block; ``LavrAdapterConfig.for_model`` reads them from a ``WanConfig``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace

from ..errors import CheckpointError, InputError

#: Version of the config JSON (and of the weights layout in ``weights.py``).
CONFIG_VERSION = 1


@dataclass(frozen=True)
class LavrAdapterConfig:
    """The LaVR adapter: CUT3R state tokens -> latent frames, and pose features for every DiT block.

    Scene input:
        state_dim: width D of CUT3R's state tokens (768 for the released CUT3R). Checked against
            the scene latent.
        state_tokens: tokens per state snapshot S (768 for the released CUT3R). Checked against the
            scene latent: an adapter trained on one CUT3R does not fit another's state.

    Query transformer (one set of queries per adapter latent frame, attending to that frame's
    state snapshot):
        hidden: width of the adapter (state MLP, queries, pose MLPs' trunk).
        num_heads / num_layers / ffn_mult: its attention heads, layers (self-attention over the
            queries, cross-attention to the state tokens, feed-forward) and FFN width multiplier.
        query_stride: query grid policy. The grid follows the *target's latent grid* H x W (so it
            follows the resolution): one query per ``query_stride x query_stride`` block of latent
            cells; each query is projected to ``latent_channels * query_stride**2`` numbers and
            unshuffled into its block. 1 (default) = one query per latent cell. H and W must be
            multiples of it. Queries are a learned vector plus an MLP of Fourier features of the
            cell centre in normalised [-1, 1] coordinates, so any H x W works.
        pos_freqs: Fourier frequencies per axis for the query positions.
        frames: number of adapter latent frames. 0 (default) = one per target latent frame F, so
            the DiT sequence is ``[target F | source F | adapter F]``; N > 0 = N frames, evenly
            spaced over the video. Adapter frame j of ``n`` uses the kept state snapshot nearest to
            source frame ``round(j * (T - 1) / (n - 1))`` (T source video frames); with CUT3R's
            ``state_every = 4`` (or 1, 2) and ``T = 4k + 1`` that is exactly frame ``4j``, the
            first video frame of target latent frame j.

    Outputs:
        latent_channels: channels of the DiT's latents (16: the Wan2.1 VAE's z_dim).
        pose_dim: numbers per camera pose (12: a relative c2w 3x4 flattened row-major, as
            ReCamMaster's ``cam_emb``).
        model_dim / model_layers: width and block count of the DiT (1536 / 30 for ReCamMaster).
    """

    state_dim: int = 768
    state_tokens: int = 768
    hidden: int = 512
    num_heads: int = 8
    num_layers: int = 2
    ffn_mult: int = 4
    query_stride: int = 1
    pos_freqs: int = 16
    frames: int = 0
    latent_channels: int = 16
    pose_dim: int = 12
    model_dim: int = 1536
    model_layers: int = 30

    def __post_init__(self):
        positive = ("state_dim", "state_tokens", "hidden", "num_heads", "num_layers", "ffn_mult", "query_stride",
                    "pos_freqs", "latent_channels", "pose_dim", "model_dim", "model_layers")
        bad = [f"{n}={getattr(self, n)!r}" for n in positive
               if not isinstance(getattr(self, n), int) or getattr(self, n) < 1]
        if not isinstance(self.frames, int) or self.frames < 0:
            bad.append(f"frames={self.frames!r}")
        if bad:
            raise InputError(f"LaVR adapter config has invalid values: {', '.join(bad)}.",
                             "Sizes are positive whole numbers; frames is 0 (one per target latent frame) or N > 0.")
        if self.hidden % self.num_heads or (self.hidden // self.num_heads) % 2:
            raise InputError(f"LaVR adapter hidden size {self.hidden} does not split into {self.num_heads} heads of even width.",
                             "Pick hidden a multiple of 2 * num_heads (e.g. 512 with 8 heads).")

    @classmethod
    def for_model(cls, wan_config, state_dim: int = 768, state_tokens: int = 768, **kw) -> "LavrAdapterConfig":
        """The config for a DiT of ``wan_config`` (width, blocks, latent channels read from it)."""
        return cls(state_dim=state_dim, state_tokens=state_tokens, latent_channels=wan_config.in_dim,
                   pose_dim=wan_config.cam_dim, model_dim=wan_config.dim, model_layers=wan_config.num_layers, **kw)

    def replace(self, **kw) -> "LavrAdapterConfig":
        return replace(self, **kw)

    def to_dict(self) -> dict:
        return {"version": CONFIG_VERSION, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "LavrAdapterConfig":
        if not isinstance(d, dict):
            raise CheckpointError(f"The LaVR adapter config is a {type(d).__name__}, not a JSON object.",
                                  "Re-save the adapter with lavr_core.lavr.save_adapter.")
        version = d.get("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise CheckpointError(f"The LaVR adapter config is version {version!r}; this LaVR reads version {CONFIG_VERSION}.",
                                  "Update ComfyUI-LaVR, or re-export the adapter with this version.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known - {"version"})
        if unknown:
            raise CheckpointError(f"The LaVR adapter config has unknown fields {unknown}.",
                                  "The file was written by a newer LaVR: update ComfyUI-LaVR.")
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> "LavrAdapterConfig":
        try:
            d = json.loads(text)
        except ValueError as e:
            raise CheckpointError(f"The LaVR adapter config is not valid JSON ({e}).",
                                  "The file is damaged: save or download it again.") from e
        return cls.from_dict(d)

    def check_model(self, wan_config) -> None:
        """``CheckpointError`` unless this adapter fits a DiT of ``wan_config``."""
        ours = {"model_dim": self.model_dim, "model_layers": self.model_layers, "latent_channels": self.latent_channels,
                "pose_dim": self.pose_dim}
        theirs = {"model_dim": wan_config.dim, "model_layers": wan_config.num_layers,
                  "latent_channels": wan_config.in_dim, "pose_dim": wan_config.cam_dim}
        bad = [f"{k} {ours[k]} (adapter) vs {theirs[k]} (model)" for k in ours if ours[k] != theirs[k]]
        if bad:
            raise CheckpointError(f"The LaVR adapter was made for another video model: {'; '.join(bad)}.",
                                  "Use LaVR adapter weights trained on this model (ReCamMaster Wan2.1-T2V-1.3B for "
                                  "the released ones).")

    def check_scene(self, state_tokens: int, state_dim: int) -> None:
        """``InputError`` unless the scene latent's state tokens ``[.., S, D]`` fit this adapter."""
        if (state_tokens, state_dim) != (self.state_tokens, self.state_dim):
            raise InputError(f"The scene latent's state has {state_tokens} tokens of width {state_dim}; this LaVR "
                             f"adapter was trained on {self.state_tokens} tokens of width {self.state_dim}.",
                             "Encode the scene latent with the CUT3R model the adapter was trained with "
                             "(the released CUT3R 512 DPT checkpoint).")
