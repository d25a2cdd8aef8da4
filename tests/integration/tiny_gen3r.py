"""A tiny Gen3R in the release's folder layout (``models/gen3r/Gen3R/{transformer,geo_adapter,wan_vae,vggt}``),
random weights, so the Gen3R nodes and workflow run on CPU in seconds.

Sizes: VGGT heads of the tiny VGGT (tokens 64 wide), a geometry adapter decoding to an 8 x 8 token
grid (112 x 112 video, the ``token_grid`` key of ``geo_adapter/config.json``), a Wan2.1 VAE of base
width 4, and a 2-block DiT 64 wide with ``text_dim`` 32 (the test umT5) and, for the workflow, the
i2v CLIP branch (1280-wide features, as ``clip_vision_h`` gives). The camera head's last layer is
scaled so its random cameras have a sane field of view (a random head can predict FoV <= 0).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

FOLDER = "Gen3R"
TOKEN_GRID = (8, 8)
TEXT_DIM = 32


def tiny_parts(seed: int = 0, image_dim: int | None = 1280, camera: bool = True):
    """``(dit, adapter, vae, vggt)`` random tiny modules (``vggt`` is a full tiny ``VGGT``)."""
    from dataclasses import asdict, replace

    from lavr_core.gen3r.dit import Gen3RDiT, Gen3RDiTConfig
    from lavr_core.gen3r.files import _GridAdapterConfig
    from lavr_core.gen3r.geometry_adapter import GeometryAdapter, GeometryAdapterConfig
    from lavr_core.vggt import VGGT, VGGTConfig
    from lavr_core.wan.vae import WAN21_VAE, WanVAE

    torch.manual_seed(seed)
    vggt = VGGT(VGGTConfig.tiny())
    with torch.no_grad():
        fc2 = vggt.camera_head.pose_branch.fc2
        fc2.weight.mul_(0.01)
        fc2.bias.zero_()
        fc2.bias[6] = 0.25   # quaternion w: a near-identity rotation after 4 refinements
        fc2.bias[7:9] = 0.25  # FoV ~ 1 rad after 4 refinements
    token_dim = 2 * vggt.config.embed_dim
    base = GeometryAdapterConfig(latent_channels=16, hidden_dim=4, input_dim=5 * token_dim,
                                 output_dim=5 * token_dim, resample_scale=10)
    adapter = GeometryAdapter(_GridAdapterConfig(**asdict(base), token_grid=TOKEN_GRID))
    vae = WanVAE(replace(WAN21_VAE, dim=4, name="tiny-wan-vae"))
    dit = Gen3RDiT(Gen3RDiTConfig(dim=64, in_dim=36, ffn_dim=128, out_dim=16, num_heads=2, num_layers=2,
                                  text_dim=TEXT_DIM, freq_dim=32, has_image_input=image_dim is not None,
                                  image_dim=image_dim or 1280, add_control_adapter=camera,
                                  in_dim_control_adapter=24, name="tiny-gen3r"))
    return dit.eval(), adapter.eval(), vae.eval(), vggt.eval()


def tiny_models(seed: int = 0, image_dim: int | None = None, camera: bool = True):
    """``Gen3RModels`` for unit tests (heads taken from the tiny VGGT, key for key)."""
    from lavr_core.gen3r.heads import heads_from_state_dict
    from lavr_core.gen3r.pipeline import Gen3RModels

    dit, adapter, vae, vggt = tiny_parts(seed, image_dim, camera)
    return Gen3RModels(dit, adapter, vae, heads_from_state_dict(vggt.state_dict()))


def write_folder(root: Path, seed: int = 0, image_dim: int | None = 1280) -> list[Path]:
    """The tiny model as a Gen3R pipeline folder at ``root``."""
    from safetensors.torch import save_file

    dit, adapter, vae, vggt = tiny_parts(seed, image_dim)
    c = dit.config
    out = []
    files = {
        "transformer": (dit.state_dict(), {"model_type": "i2v" if c.has_image_input else "t2v", "dim": c.dim,
                                           "num_heads": c.num_heads, "num_layers": c.num_layers,
                                           "text_len": c.text_len}),
        # the official GeometryAdapter wraps the VAE as ``model``; keep that prefix like the release
        "geo_adapter": ({f"model.{k}": v for k, v in adapter.model.state_dict().items()},
                        {"latent_channels": 16, "token_grid": list(TOKEN_GRID)}),
        "wan_vae": ({f"model.{k}": v for k, v in vae.state_dict().items()}, None),
    }
    for sub, (sd, cfg) in files.items():
        d = root / sub
        d.mkdir(parents=True, exist_ok=True)
        path = d / "diffusion_pytorch_model.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        out.append(path)
        if cfg is not None:
            (d / "config.json").write_text(json.dumps(cfg, indent=1))
            out.append(d / "config.json")
    (root / "vggt").mkdir(parents=True, exist_ok=True)
    vpath = root / "vggt" / "model.safetensors"
    save_file({k: v.contiguous() for k, v in vggt.state_dict().items()}, str(vpath))
    out.append(vpath)
    return out


def write(models_dir: Path) -> list[Path]:
    return write_folder(Path(models_dir) / "gen3r" / FOLDER)
