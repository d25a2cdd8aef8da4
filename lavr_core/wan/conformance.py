"""Conformance runner for the Wan2.1 / ReCamMaster DiT (plug-in of ``lavr_core.conformance``).

Fixture ``recammaster_dit`` (``reference/recammaster/tiny``): the official WanModel + camera layers at a
tiny size; we load its weights key for key and reproduce ``output`` (the velocity over the
concatenated target|source sequence) and the intermediate ``time_embedding``, ``t_mod`` and
``context_embedded``. Manifests: any state-dict manifest in the original Wan key layout with an
official-style ``config`` dict (ReCamMaster's ``recammaster_dit_state_dict.json``, plain Wan2.1).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .config import WanConfig

KINDS = ("recammaster_dit",)

# Every tensor name a Wan2.1 DiT (T2V or I2V) with ReCamMaster's camera layers can have. A manifest
# with any other name (Gen3R's control adapter, VACE blocks ...) belongs to another runner.
_WAN_KEY = re.compile(
    r"^(?:patch_embedding\.(?:weight|bias)"
    r"|(?:text|time)_embedding\.[02]\.(?:weight|bias)"
    r"|time_projection\.1\.(?:weight|bias)"
    r"|head\.(?:head\.weight|head\.bias|modulation)"
    r"|img_emb\.proj\.[0134]\.(?:weight|bias)"
    r"|blocks\.\d+\.(?:modulation"
    r"|(?:self_attn|cross_attn)\.(?:[qkvo]\.(?:weight|bias)|norm_[qk]\.weight)"
    r"|cross_attn\.(?:[kv]_img\.(?:weight|bias)|norm_k_img\.weight)"
    r"|norm3\.(?:weight|bias)|ffn\.[02]\.(?:weight|bias)"
    r"|(?:cam_encoder|projector)\.(?:weight|bias)))$")


def _load_fixture_model(fixture_dir: Path, config: dict):
    from safetensors.torch import load_file

    from .loading import model_from_state_dict

    weights = fixture_dir / "weights.safetensors"
    if not weights.is_file():  # the fixture's config.json calls it state_dict.safetensors
        weights = fixture_dir / "state_dict.safetensors"
    cfg = WanConfig.from_dict(config["model"], camera=True, name=config.get("name", "fixture"))
    return model_from_state_dict(load_file(str(weights)), cfg, dtype=torch.float32,
                                 what=f"The fixture weights {weights.name}")


@torch.no_grad()
def run_fixture(fixture_dir: Path, config: dict) -> dict[str, torch.Tensor]:
    """Our outputs for a ``recammaster_dit`` fixture, named as in its ``outputs.safetensors``."""
    from safetensors.torch import load_file

    from .recammaster import concat_target_source

    fixture_dir = Path(fixture_dir)
    model = _load_fixture_model(fixture_dir, config)
    inp = {k: v.clone() for k, v in load_file(str(fixture_dir / "inputs.safetensors")).items()}
    x = concat_target_source(inp["noisy_target_latents"], inp["source_latents"])
    out = model(x, inp["timestep"], inp["context"], cam_emb=inp["cam_emb"])
    t, t_mod = model.embed_time(inp["timestep"])
    return {"output": out, "time_embedding": t, "t_mod": t_mod,
            "context_embedded": model.embed_text(inp["context"])}


def _entries(manifest: dict) -> dict[str, tuple[int, ...]]:
    from ..conformance import manifest_entries

    return manifest_entries(manifest)


def manifest_matches(manifest: dict, path: Path) -> bool:
    cfg = manifest.get("config")
    if not isinstance(cfg, dict) or not {"dim", "in_dim", "num_heads", "num_layers"} <= set(cfg):
        return False
    try:
        names = list(_entries(manifest))
    except (KeyError, TypeError, IndexError):
        return False
    return "patch_embedding.weight" in names and all(_WAN_KEY.match(k) for k in names)


def build_meta_state_dict(manifest: dict) -> dict[str, tuple[int, ...]]:
    """Names and shapes of our model built on the meta device from the manifest's ``config`` dict
    (shapes are not read from the manifest; only the presence of camera layers is)."""
    from .loading import build_model

    camera = any(".cam_encoder." in k for k in _entries(manifest))
    config = WanConfig.from_dict(manifest["config"], camera=camera)
    with torch.device("meta"):
        model = build_model(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
