"""Configuration of a Wan2.1 video DiT, its released presets, and inference from a state dict.

The field names follow the original Wan code (``dim``, ``in_dim``, ``ffn_dim`` ...), so a config
reads like the ``config.json`` of the official repositories. Nothing here builds a module.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace

from ..errors import CheckpointError

#: Wan's attention heads are 128 wide in every released model; used when a file does not say.
WAN_HEAD_DIM = 128


@dataclass(frozen=True)
class WanConfig:
    """Shapes and options of a Wan2.1 DiT (original Wan / DiffSynth / ComfyUI key layout).

    Attributes:
        dim: hidden width (1536 for 1.3B, 5120 for 14B).
        in_dim / out_dim: latent channels in and out (16 for T2V; I2V feeds 16 + 20 = 36 in).
        ffn_dim: hidden width of the feed-forward network.
        text_dim: width of the text-encoder features (umT5-XXL: 4096).
        freq_dim: width of the sinusoidal timestep embedding.
        num_heads / num_layers: attention heads and transformer blocks.
        patch_size: (frames, height, width) of the Conv3d patch embedding, in latent cells.
        eps: epsilon of every LayerNorm and RMSNorm.
        has_image_input: the I2V branch (CLIP image tokens through ``img_emb``, ``k_img``/``v_img``).
        image_dim: width of the CLIP image features (ViT-H/14 penultimate layer: 1280).
        image_tokens: CLIP tokens per image (257: 256 patches + CLS).
        text_len: umT5 context length the released models were trained with (prompts are zero-padded
            to it; see ``model.pad_context``).
        camera: ReCamMaster's per-block ``cam_encoder`` / ``projector`` layers are present.
        cam_dim: input width of ``cam_encoder`` (a 3x4 relative pose flattened: 12).
        rope_theta / rope_max_len: RoPE base and table length (positions per axis).
    """

    dim: int
    in_dim: int
    ffn_dim: int
    out_dim: int
    num_heads: int
    num_layers: int
    text_dim: int = 4096
    freq_dim: int = 256
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    has_image_input: bool = False
    image_dim: int = 1280
    image_tokens: int = 257
    text_len: int = 512
    camera: bool = False
    cam_dim: int = 12
    rope_theta: float = 10000.0
    rope_max_len: int = 1024
    name: str = field(default="custom", compare=False)

    def __post_init__(self):
        object.__setattr__(self, "patch_size", tuple(int(p) for p in self.patch_size))
        if len(self.patch_size) != 3 or min(self.patch_size) < 1:
            raise ValueError(f"patch_size must be three positive ints, got {self.patch_size}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} is not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head width {self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def rope_dims(self) -> tuple[int, int, int]:
        """Real widths of the (frame, height, width) RoPE sections of one head: 44/42/42 at 128.

        Height and width get ``head_dim // 3`` rounded down to even (complex pairs); frames get the
        rest, as the official ``precompute_freqs_cis_3d`` does.
        """
        d = self.head_dim
        hw = 2 * (d // 6)
        return d - 2 * hw, hw, hw

    @property
    def model_type(self) -> str:
        return "i2v" if self.has_image_input else "t2v"

    def with_camera(self, camera: bool = True) -> "WanConfig":
        return replace(self, camera=camera)

    def describe(self) -> str:
        """Human name for messages: 'Wan2.1 T2V 1.3B (dim 1536, 30 blocks)'."""
        size = {1536: "1.3B", 5120: "14B"}.get(self.dim, f"dim {self.dim}")
        kind = "I2V" if self.has_image_input else "T2V"
        cam = " + ReCamMaster camera layers" if self.camera else ""
        return f"Wan2.1 {kind} {size} (dim {self.dim}, {self.num_layers} blocks, in_dim {self.in_dim}){cam}"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> "WanConfig":
        """From an official-style config dict (unknown keys such as ``model_type`` are ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known}
        if "model_type" in d and "has_image_input" not in d:
            kw["has_image_input"] = d["model_type"] in ("i2v", "flf2v")
        kw.update(overrides)
        return cls(**kw)


WAN21_T2V_1_3B = WanConfig(dim=1536, in_dim=16, ffn_dim=8960, out_dim=16, num_heads=12, num_layers=30,
                           name="wan2.1-t2v-1.3b")
WAN21_T2V_14B = WanConfig(dim=5120, in_dim=16, ffn_dim=13824, out_dim=16, num_heads=40, num_layers=40,
                          name="wan2.1-t2v-14b")
WAN21_I2V_14B = WanConfig(dim=5120, in_dim=36, ffn_dim=13824, out_dim=16, num_heads=40, num_layers=40,
                          has_image_input=True, name="wan2.1-i2v-14b")
#: ReCamMaster (KwaiVGI/ReCamMaster-Wan2.1 ``step20000.ckpt``): Wan2.1-T2V-1.3B + camera layers.
RECAMMASTER_1_3B = replace(WAN21_T2V_1_3B, camera=True, name="recammaster-wan2.1-t2v-1.3b")
#: The public tiny golden of ``reference/recammaster/tiny`` (random weights, CPU tests).
TINY = WanConfig(dim=64, in_dim=4, ffn_dim=128, out_dim=4, num_heads=2, num_layers=2, text_dim=32,
                 freq_dim=32, camera=True, name="tiny")

PRESETS = {c.name: c for c in (WAN21_T2V_1_3B, WAN21_T2V_14B, WAN21_I2V_14B, RECAMMASTER_1_3B, TINY)}

#: Heads of the released widths (head width 128 everywhere, kept explicit for the odd ones).
_HEADS_BY_DIM = {1536: 12, 3072: 24, 5120: 40}

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.")


def _shape(sd: dict, key: str) -> tuple[int, ...]:
    v = sd[key]
    return tuple(v.shape) if hasattr(v, "shape") else tuple(v)


def infer_config(state_dict: dict, num_heads: int | None = None, eps: float = 1e-6,
                 what: str = "the checkpoint") -> WanConfig:
    """The ``WanConfig`` whose state dict has these names and shapes (original Wan layout, no prefix).

    ``state_dict`` maps names to tensors or to shapes. Heads cannot be read from shapes (the q/k norms
    span all heads), so ``num_heads`` defaults to the released value for the width, else ``dim // 128``.
    Raises ``CheckpointError`` naming what is missing when this is not a Wan DiT in the original layout.
    """
    required = ("patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight",
                "blocks.0.ffn.0.weight", "head.head.weight")
    missing = [k for k in required if k not in state_dict]
    if missing:
        raise CheckpointError(f"{what[:1].upper()}{what[1:]} is not a Wan2.1 diffusion model in the original key layout "
                              f"(no {', '.join(missing[:3])}).",
                              "Give a Wan2.1 DiT file from ComfyUI's models/diffusion_models "
                              "(e.g. wan2.1_t2v_1.3B_fp16.safetensors) or ReCamMaster's step20000.ckpt.")
    dim, in_dim, *patch = _shape(state_dict, "patch_embedding.weight")
    text_dim = _shape(state_dict, "text_embedding.0.weight")[1]
    freq_dim = _shape(state_dict, "time_embedding.0.weight")[1]
    ffn_dim = _shape(state_dict, "blocks.0.ffn.0.weight")[0]
    head_out = _shape(state_dict, "head.head.weight")[0]
    if head_out % math.prod(patch):
        raise CheckpointError(f"{what[:1].upper()}{what[1:]} has a head of {head_out} outputs, not a multiple of the patch "
                              f"volume {math.prod(patch)}.", "The file is damaged or not a Wan DiT.")
    layers = 1 + max(int(m.group(1)) for k in state_dict if (m := _BLOCK_RE.match(k)))
    if num_heads is None:
        num_heads = _HEADS_BY_DIM.get(dim) or (dim // WAN_HEAD_DIM if dim % WAN_HEAD_DIM == 0 else None)
        if num_heads is None:
            raise CheckpointError(f"Cannot tell the number of attention heads of {what} (width {dim}).",
                                  "Pass num_heads explicitly (it is in the model's config.json).")
    has_image = "img_emb.proj.1.weight" in state_dict or "blocks.0.cross_attn.k_img.weight" in state_dict
    kw = {}
    if has_image and "img_emb.proj.1.weight" in state_dict:
        kw["image_dim"] = _shape(state_dict, "img_emb.proj.1.weight")[1]
    camera = "blocks.0.cam_encoder.weight" in state_dict
    if camera:
        kw["cam_dim"] = _shape(state_dict, "blocks.0.cam_encoder.weight")[1]
    config = WanConfig(dim=dim, in_dim=in_dim, ffn_dim=ffn_dim, out_dim=head_out // math.prod(patch),
                       num_heads=num_heads, num_layers=layers, text_dim=text_dim, freq_dim=freq_dim,
                       patch_size=tuple(patch), eps=eps, has_image_input=has_image, camera=camera, **kw)
    return next((p for p in PRESETS.values() if p == config), config)  # a released one keeps its name
