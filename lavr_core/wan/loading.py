"""Wan2.1 DiT weights from the single files users already have.

Accepted: ComfyUI ``models/diffusion_models`` files (original Wan keys, with or without the
``model.diffusion_model.`` prefix of full checkpoints), the official Wan ``.safetensors``,
ReCamMaster's ``step20000.ckpt`` (read with ``weights_only=True``), in fp32, fp16, bf16 or fp8
(``float8_e4m3fn`` / ``e5m2``, including ComfyUI's ``scaled_fp8`` files, de-quantised on load).
A file of the wrong model (14B for 1.3B, I2V for T2V, a VAE, a text encoder, a LoRA, the diffusers
layout) gets a ``CheckpointError`` that names it and says which file to use instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..errors import CheckpointError
from .config import PRESETS, WanConfig, infer_config
from .model import WanModel

#: Prefixes of the DiT inside full checkpoints (ComfyUI's save format, LDM-style files).
PREFIXES = ("model.diffusion_model.", "diffusion_model.")

_FP8 = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
             if hasattr(torch, n))


def build_model(config: WanConfig) -> WanModel:
    """The module class for a config: ``ReCamMasterModel`` when it has camera layers, else ``WanModel``.

    Built on the current default device (use ``with torch.device("meta"):`` to skip the init)."""
    if config.camera:
        from .recammaster import ReCamMasterModel
        return ReCamMasterModel(config)
    return WanModel(config)


def strip_prefix(state_dict: dict) -> dict:
    """Drop a ``model.diffusion_model.`` / ``diffusion_model.`` prefix; other sub-models in a full
    checkpoint (VAE, text encoder) are left out."""
    for prefix in PREFIXES:
        inner = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if inner:
            return inner
    return dict(state_dict)


def dequantize(state_dict: dict, dtype: torch.dtype | None = None) -> dict:
    """fp8 tensors -> ``dtype`` (default bfloat16), applying ComfyUI's per-tensor ``*.scale_weight``
    of ``scaled_fp8`` files; the scale/marker entries themselves are removed."""
    out = {}
    for k, v in state_dict.items():
        if k == "scaled_fp8" or k.endswith(".scale_input") or k.endswith(".scale_weight"):
            continue
        if isinstance(v, torch.Tensor) and v.dtype in _FP8:
            w = v.to(torch.float32)
            scale = state_dict.get(k[: -len("weight")] + "scale_weight") if k.endswith("weight") else None
            if scale is not None:
                w = w * scale.to(torch.float32)
            v = w.to(dtype or torch.bfloat16)
        out[k] = v
    return out


def _describe_foreign(keys: list[str]) -> str | None:
    """What a non-Wan-DiT file most likely is, for the error message (None when unknown)."""
    joined = "\n".join(keys[:5000])
    checks = (
        (r"(^|\n)(blocks\.\d+\.attn1\.to_q|condition_embedder\.)", "a Wan DiT in diffusers' layout "
         "(transformer/diffusion_pytorch_model.safetensors)"),
        (r"lora_(up|down|A|B)\b|\.lora\.", "a LoRA"),
        (r"(^|\n)vace_blocks\.", "a Wan VACE model"),
        (r"(^|\n)(encoder|decoder)\.(conv1|middle|head|downsamples|upsamples)", "the Wan VAE"),
        (r"(^|\n)(shared\.weight|encoder\.block\.\d+\.|token_embedding|blocks\.\d+\.attn\.q\.weight)",
         "a text encoder (umT5)"),
        (r"(^|\n)(visual\.|vision_model\.|log_scale)", "a CLIP vision model"),
    )
    for pattern, what in checks:
        if re.search(pattern, joined):
            return what
    return None


def _diffusion_hint(expected: WanConfig | None) -> str:
    if expected is not None and expected.camera:
        return ("Select ReCamMaster's step20000.ckpt (from KwaiVGI/ReCamMaster-Wan2.1, a fine-tune of "
                "Wan2.1-T2V-1.3B) in models/diffusion_models.")
    return "Put a Wan2.1 DiT (e.g. wan2.1_t2v_1.3B_fp16.safetensors) in models/diffusion_models and pick it."


def check_expected(found: WanConfig, expected: WanConfig | None, what: str,
                   allow_missing_camera: bool = False) -> None:
    """Raise a ``CheckpointError`` that names the model a file holds when it is not the expected one."""
    if expected is None:
        return
    hint = _diffusion_hint(expected)
    if found.has_image_input != expected.has_image_input:
        if found.has_image_input:
            raise CheckpointError(f"{what} is an image-to-video (I2V) Wan model; {expected.describe()} is needed.",
                                  hint)
        raise CheckpointError(f"{what} is a text-to-video Wan model; an image-to-video model is needed.",
                              "Pick the Wan2.1 I2V file.")
    if (found.dim, found.num_layers) != (expected.dim, expected.num_layers):
        raise CheckpointError(f"{what} holds {found.describe()}, but {expected.describe()} is needed.", hint)
    diffs = [f"{n} {getattr(found, n)} (need {getattr(expected, n)})"
             for n in ("in_dim", "out_dim", "ffn_dim", "text_dim", "freq_dim", "patch_size", "cam_dim")
             if getattr(found, n) != getattr(expected, n) and (n != "cam_dim" or found.camera)]
    if found.has_image_input and found.image_dim != expected.image_dim:
        diffs.append(f"image_dim {found.image_dim} (need {expected.image_dim})")
    if diffs:
        raise CheckpointError(f"{what} is a Wan variant this node does not run: {', '.join(diffs)}.", hint)
    if expected.camera and not found.camera and not allow_missing_camera:
        raise CheckpointError(f"{what} is plain Wan2.1 without ReCamMaster's camera layers.",
                              "Load ReCamMaster's step20000.ckpt (KwaiVGI/ReCamMaster-Wan2.1) instead.")
    if found.camera and not expected.camera:
        raise CheckpointError(f"{what} is a ReCamMaster checkpoint (Wan2.1 + camera layers); a plain "
                              f"{expected.describe()} is needed here.", "Load it with the ReCamMaster/LaVR loader.")


def _resolve(expected: WanConfig | str | None) -> WanConfig | None:
    if expected is None or isinstance(expected, WanConfig):
        return expected
    if expected not in PRESETS:
        raise ValueError(f"unknown Wan preset {expected!r}; known: {', '.join(PRESETS)}")
    return PRESETS[expected]


def read_state_dict(path: str | Path) -> dict:
    """The DiT tensors of a file, prefix removed and fp8 de-quantised (original dtypes otherwise)."""
    from ..checkpoint_io import find_state_dict, load_file_any  # lazy: keeps `import lavr_core.wan` light

    what = "Wan diffusion model"
    return dequantize(strip_prefix(find_state_dict(load_file_any(path, what=what), path=path, what=what)))


def _default_dtype(sd: dict) -> torch.dtype:
    ref = sd.get("blocks.0.self_attn.q.weight")
    if isinstance(ref, torch.Tensor) and ref.is_floating_point():
        return ref.dtype
    return torch.bfloat16


def model_from_state_dict(state_dict: dict, expected: WanConfig | str | None = None, *,
                          dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
                          num_heads: int | None = None, allow_missing_camera: bool = False,
                          what: str = "The checkpoint") -> WanModel:
    """Build the model a state dict describes and load it key for key (strict), in eval mode.

    The model is built on the meta device and adopts the tensors (``assign``): no random init and no
    second copy; tensors already in ``dtype`` are shared with ``state_dict``, not copied.

    Args:
        state_dict: original Wan names (see ``read_state_dict`` for files).
        expected: a ``WanConfig`` or preset name (``"recammaster-wan2.1-t2v-1.3b"``); a file of another
            model raises ``CheckpointError``. ``None`` accepts any Wan2.1 DiT.
        dtype: parameter dtype (default: the file's, bf16 for fp8 files). Mixed-dtype files (bf16 base +
            fp32 camera layers) are cast to one dtype, as ReCamMaster's inference does.
        num_heads: heads when the width is not a released one (see ``infer_config``).
        allow_missing_camera: with an ``expected`` camera config, accept plain Wan weights and
            initialise the camera layers to ReCamMaster's start (zero encoder, identity projector).
    """
    expected = _resolve(expected)
    keys = list(state_dict)
    try:
        pe = state_dict.get("patch_embedding.weight")
        if num_heads is None and expected is not None and pe is not None and pe.shape[0] == expected.dim:
            num_heads = expected.num_heads  # same width: trust the expected model's heads
        found = infer_config(state_dict, num_heads=num_heads, eps=expected.eps if expected else 1e-6,
                             what=what)
    except CheckpointError as e:
        foreign = _describe_foreign(keys)
        if foreign is None:
            raise
        raise CheckpointError(f"{what} is {foreign}, not a Wan2.1 diffusion model in the original key layout.",
                              _diffusion_hint(expected)) from e
    check_expected(found, expected, what, allow_missing_camera)
    config = expected if expected is not None else found  # equal but for names and untestable options
    dtype = dtype or _default_dtype(state_dict)
    sd = {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
          for k, v in state_dict.items()}
    if config.camera and not found.camera:
        sd.update(initial_camera_state(config, dtype))
    from ..checkpoint_io import strict_load  # lazy, see read_state_dict

    with torch.device("meta"):
        model = build_model(config)
    strict_load(model, sd, what=config.describe(), assign=True)
    return model.to(device).eval()


def initial_camera_state(config: WanConfig, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """ReCamMaster's starting camera layers for every block: ``cam_encoder = 0``, ``projector = I``."""
    out = {}
    for i in range(config.num_layers):
        out[f"blocks.{i}.cam_encoder.weight"] = torch.zeros(config.dim, config.cam_dim, dtype=dtype)
        out[f"blocks.{i}.cam_encoder.bias"] = torch.zeros(config.dim, dtype=dtype)
        out[f"blocks.{i}.projector.weight"] = torch.eye(config.dim, dtype=dtype)
        out[f"blocks.{i}.projector.bias"] = torch.zeros(config.dim, dtype=dtype)
    return out


def load_wan_model(path: str | Path, expected: WanConfig | str | None = None, **kwargs) -> WanModel:
    """``model_from_state_dict(read_state_dict(path), expected, **kwargs)`` with the file named in errors."""
    p = Path(path)
    return model_from_state_dict(read_state_dict(p), expected, what=f"The file {p.name}", **kwargs)
