"""Sizes of a VGGT model: the released VGGT-1B, the tiny golden fixture, or anything in between.

Every field mirrors an argument of the official constructors (``facebookresearch/vggt``), so a
configuration here builds a module tree whose ``state_dict`` keys and shapes equal the official one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import CheckpointError

#: DINOv2 backbones the aggregator can embed patches with: (embed_dim, depth, num_heads).
DINO_PRESETS: dict[str, tuple[int, int, int]] = {
    "dinov2_vits14_reg": (384, 12, 6),
    "dinov2_vitb14_reg": (768, 12, 12),
    "dinov2_vitl14_reg": (1024, 24, 16),
    "dinov2_vitg2_reg": (1536, 40, 24),
}


@dataclass(frozen=True)
class DinoConfig:
    """The DINOv2-with-registers ViT that turns each frame into patch tokens.

    Its width is the aggregator's ``embed_dim``. LayerScale starts at ``init_values`` (1.0 in VGGT),
    norms use eps 1e-6, and there is no qk-norm and no RoPE. The positional embedding is resampled
    to each input's patch grid with bicubic interpolation (``interpolate_antialias``), directly by
    size when ``interpolate_offset`` is 0.
    """

    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    init_values: float = 1.0
    interpolate_antialias: bool = True
    interpolate_offset: float = 0.0


@dataclass(frozen=True)
class AggregatorConfig:
    """Alternating frame/global attention over DINO patch tokens plus camera and register tokens.

    ``patch_embed`` is a key of ``DINO_PRESETS`` (the preset fixes the backbone's depth and heads),
    ``"dino"`` (a DINOv2 backbone sized by ``dino``, as in the tiny golden) or ``"conv"`` (a bare
    patch conv, no backbone).
    """

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    qkv_bias: bool = True
    proj_bias: bool = True
    ffn_bias: bool = True
    patch_embed: str = "dinov2_vitl14_reg"
    aa_order: tuple[str, ...] = ("frame", "global")
    aa_block_size: int = 1
    qk_norm: bool = True
    rope_freq: float = 100.0
    init_values: float = 0.01
    dino: DinoConfig = field(default_factory=DinoConfig)

    @property
    def patch_start_idx(self) -> int:
        """Index of the first patch token in each frame's sequence (camera + registers before it)."""
        return 1 + self.num_register_tokens


@dataclass(frozen=True)
class CameraHeadConfig:
    trunk_depth: int = 4
    num_heads: int = 16
    mlp_ratio: float = 4.0
    init_values: float = 0.01
    trans_act: str = "linear"
    quat_act: str = "linear"
    fl_act: str = "relu"
    pose_encoding_type: str = "absT_quaR_FoV"


@dataclass(frozen=True)
class DPTConfig:
    """Sizes shared by the depth and point heads (the official constructor gives both the same)."""

    features: int = 256
    out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    intermediate_layer_idx: tuple[int, int, int, int] = (4, 11, 17, 23)
    pos_embed: bool = True
    down_ratio: int = 1


@dataclass(frozen=True)
class TrackHeadConfig:
    """The tracking head. Its DPT feature extractor keeps the official hard-coded sizes
    (``out_channels`` 256/512/1024/1024 at layers 4/11/17/23) unless given here."""

    features: int = 128
    iters: int = 4
    predict_conf: bool = True
    stride: int = 2
    corr_levels: int = 7
    corr_radius: int = 4
    hidden_size: int = 384
    depth: int = 6
    num_heads: int = 8
    num_virtual_tracks: int = 64
    max_scale: float = 518.0
    out_channels: tuple[int, int, int, int] = (256, 512, 1024, 1024)
    intermediate_layer_idx: tuple[int, int, int, int] = (4, 11, 17, 23)


@dataclass(frozen=True)
class VGGTConfig:
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    camera_head: CameraHeadConfig = field(default_factory=CameraHeadConfig)
    dpt: DPTConfig = field(default_factory=DPTConfig)
    track_head: TrackHeadConfig = field(default_factory=TrackHeadConfig)
    enable_camera: bool = True
    enable_point: bool = True
    enable_depth: bool = True
    enable_track: bool = True

    @property
    def embed_dim(self) -> int:
        return self.aggregator.embed_dim

    @classmethod
    def vggt_1b(cls, enable_track: bool = True) -> "VGGTConfig":
        """``VGGT()`` with its defaults: the architecture of ``facebook/VGGT-1B``."""
        return cls(enable_track=enable_track)

    @classmethod
    def tiny(cls, enable_track: bool = False) -> "VGGTConfig":
        """The tiny architecture of the reference golden (E=32, 4 layers): for tests and workflows."""
        return cls.from_fixture_config(_TINY_FIXTURE_CONFIG, enable_track=enable_track)

    @classmethod
    def from_fixture_config(cls, config: dict[str, Any], enable_track: bool = False) -> "VGGTConfig":
        """The configuration a reference fixture's ``config.json`` describes (kind ``vggt``).

        Fixtures carry no track head (the official one cannot be made tiny); pass
        ``enable_track=True`` to add one sized by ``TrackHeadConfig`` defaults scaled to the DPT.
        """
        try:
            a = dict(config["aggregator"])
            dino = dict(config.get("dino", {}))
            cam = dict(config.get("camera_head", {}))
            dpt = dict(config.get("dpt", {}))
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"The VGGT fixture configuration lacks {e}.",
                                  "Give the config.json of a kind 'vggt' fixture.") from None
        for k in ("ffn_layer",):
            if dino.get(k, "mlp") != "mlp":
                raise CheckpointError(f"DINO {k}={dino[k]!r} is not supported.", "Use the 'mlp' feed-forward.")
        dino_cfg = DinoConfig(
            depth=int(dino.get("depth", 24)), num_heads=int(dino.get("num_heads", 16)),
            mlp_ratio=float(dino.get("mlp_ratio", 4.0)), init_values=float(dino.get("init_values", 1.0)),
            interpolate_antialias=bool(dino.get("interpolate_antialias", True)),
            interpolate_offset=float(dino.get("interpolate_offset", 0.0)))
        agg = AggregatorConfig(
            img_size=int(a.get("img_size", 518)), patch_size=int(a.get("patch_size", 14)),
            embed_dim=int(a.get("embed_dim", 1024)), depth=int(a.get("depth", 24)),
            num_heads=int(a.get("num_heads", 16)), mlp_ratio=float(a.get("mlp_ratio", 4.0)),
            num_register_tokens=int(a.get("num_register_tokens", 4)), qkv_bias=bool(a.get("qkv_bias", True)),
            proj_bias=bool(a.get("proj_bias", True)), ffn_bias=bool(a.get("ffn_bias", True)),
            patch_embed="dino" if dino else str(a.get("patch_embed", "dinov2_vitl14_reg")),
            aa_order=tuple(a.get("aa_order", ("frame", "global"))), aa_block_size=int(a.get("aa_block_size", 1)),
            qk_norm=bool(a.get("qk_norm", True)), rope_freq=float(a.get("rope_freq", 100)),
            init_values=float(a.get("init_values", 0.01)), dino=dino_cfg)
        cam_cfg = CameraHeadConfig(**{k: cam[k] for k in cam if k in CameraHeadConfig.__dataclass_fields__})
        dpt_cfg = DPTConfig(
            features=int(dpt.get("features", 256)),
            out_channels=tuple(int(c) for c in dpt.get("out_channels", (256, 512, 1024, 1024))),
            intermediate_layer_idx=tuple(int(i) for i in dpt.get("intermediate_layer_idx", (4, 11, 17, 23))),
            pos_embed=bool(dpt.get("pos_embed", True)), down_ratio=int(dpt.get("down_ratio", 1)))
        track = TrackHeadConfig(out_channels=dpt_cfg.out_channels,
                                intermediate_layer_idx=dpt_cfg.intermediate_layer_idx)
        if dpt_cfg.features < 128:  # keep a tiny track head tiny too
            track = replace(track, features=16, hidden_size=32, depth=2, num_heads=2, num_virtual_tracks=4,
                            corr_levels=3, corr_radius=2)
        return cls(aggregator=agg, camera_head=cam_cfg, dpt=dpt_cfg, track_head=track, enable_track=enable_track)


def resolve_dino(cfg: AggregatorConfig) -> tuple[int, int, int]:
    """(embed_dim, depth, num_heads) of the DINO backbone an aggregator configuration asks for."""
    if cfg.patch_embed in DINO_PRESETS:
        dim, depth, heads = DINO_PRESETS[cfg.patch_embed]
        if dim != cfg.embed_dim:
            raise CheckpointError(f"{cfg.patch_embed} is {dim} wide but the aggregator is {cfg.embed_dim} wide.",
                                  "Pick the DINO preset whose width equals embed_dim, or patch_embed='dino'.")
        return dim, depth, heads
    if cfg.patch_embed == "dino":
        return cfg.embed_dim, cfg.dino.depth, cfg.dino.num_heads
    raise CheckpointError(f"Unknown VGGT patch embedding {cfg.patch_embed!r}.",
                          f"Use 'conv', 'dino' or one of {', '.join(DINO_PRESETS)}.")


# The reference tiny golden's sizes (../shared/reference/vggt/tiny/config.json), kept here so tests
# and workflows can build a tiny model in the official layout without the reference folder.
_TINY_FIXTURE_CONFIG: dict[str, Any] = {
    "aggregator": {"img_size": 56, "patch_size": 14, "embed_dim": 32, "depth": 4, "num_heads": 2,
                   "mlp_ratio": 4.0, "num_register_tokens": 4, "aa_order": ["frame", "global"],
                   "aa_block_size": 1, "qk_norm": True, "rope_freq": 100, "init_values": 0.01},
    "dino": {"depth": 2, "num_heads": 2, "mlp_ratio": 4, "init_values": 1.0, "interpolate_antialias": True,
             "interpolate_offset": 0.0},
    "camera_head": {"trunk_depth": 2, "num_heads": 2, "mlp_ratio": 4, "init_values": 0.01},
    "dpt": {"features": 8, "out_channels": [4, 8, 16, 16], "intermediate_layer_idx": [0, 1, 2, 3],
            "pos_embed": True, "down_ratio": 1},
}
