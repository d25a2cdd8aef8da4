"""Tiny Wan2.1 video models in the layouts users download, under the released file names:

* ``diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors``: a T2V DiT in the original Wan key layout
  (fp16, no prefix, like Comfy-Org's repackaged file). Width 128 with one 128-wide head (the released
  head width, so the loader infers the heads as it does for real files), 2 blocks, text width 32
  (the test text encoder's, see custom_nodes/lavr_test_nodes), 16 latent channels.
* ``diffusion_models/ReCamMaster-Wan2.1/step20000.ckpt``: ``torch.save`` of the whole DiT state dict
  with ReCamMaster's per-block ``cam_encoder`` / ``projector`` (bf16 base, fp32 camera layers, as the
  official training saves it), read back with ``weights_only=True``.
* ``vae/wan_2.1_vae.safetensors``: the Wan2.1 VAE design at width 8 with one residual block a stage
  (original keys, bf16).

Weights are seeded, so every run writes the same files. 17 frames of 64x64 become 5 x 8 x 8 latents
and the example workflow runs in seconds on a CPU.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

DIT_FILE = "wan2.1_t2v_1.3B_fp16.safetensors"
RECAMMASTER_FILE = "ReCamMaster-Wan2.1/step20000.ckpt"
VAE_FILE = "wan_2.1_vae.safetensors"
TEXT_DIM = 32


def dit_config(camera: bool = False):
    from lavr_core.wan.config import WanConfig

    return WanConfig(dim=128, in_dim=16, ffn_dim=256, out_dim=16, num_heads=1, num_layers=2, text_dim=TEXT_DIM,
                     freq_dim=32, camera=camera, name="tiny-t2v")


def vae_config():
    from lavr_core.wan.vae import WAN21_VAE

    return replace(WAN21_VAE, dim=8, num_res_blocks=1, name="tiny-vae")


def _seeded(module: torch.nn.Module, seed: int, std: float = 0.05) -> dict[str, torch.Tensor]:
    """Every tensor of ``module``'s state dict redrawn from one seeded generator (sorted by name)."""
    g = torch.Generator().manual_seed(seed)
    sd = module.state_dict()
    out = {}
    for k in sorted(sd):
        v = sd[k]
        if k.endswith(("norm_q.weight", "norm_k.weight", "gamma", "norm3.weight")):
            out[k] = 1.0 + std * torch.randn(v.shape, generator=g)  # norms near one, as trained ones are
        else:
            out[k] = std * torch.randn(v.shape, generator=g)
    return out


def dit_state_dicts(seed: int = 0) -> tuple[dict, dict]:
    """(plain T2V state dict, ReCamMaster state dict with the same base weights + camera layers)."""
    from lavr_core.wan.recammaster import ReCamMasterModel

    with torch.device("meta"):
        cam_model = ReCamMasterModel(dit_config(camera=True))
    full = _seeded(cam_model.to_empty(device="cpu"), seed)
    base = {k: v for k, v in full.items() if ".cam_encoder." not in k and ".projector." not in k}
    for k, v in full.items():  # camera layers: identity projector plus a small learned part, so they matter
        if k.endswith("projector.weight"):
            full[k] = torch.eye(v.shape[0]) + v
        elif k.endswith("cam_encoder.weight"):
            full[k] = 4.0 * v
    return base, full


def vae_state_dict(seed: int = 1) -> dict:
    from lavr_core.wan.vae import WanVAE

    with torch.device("meta"):
        vae = WanVAE(vae_config())
    return _seeded(vae.to_empty(device="cpu"), seed, std=0.1)


def write(models_dir: Path) -> list[Path]:
    from safetensors.torch import save_file

    base, full = dit_state_dicts()
    dit = Path(models_dir) / "diffusion_models" / DIT_FILE
    cam = Path(models_dir) / "diffusion_models" / RECAMMASTER_FILE
    vae = Path(models_dir) / "vae" / VAE_FILE
    for p in (dit, cam, vae):
        p.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.float16).contiguous() for k, v in base.items()}, str(dit))
    cam_sd = {k: (v.float() if (".cam_encoder." in k or ".projector." in k) else v.to(torch.bfloat16))
              for k, v in full.items()}
    torch.save(cam_sd, cam)
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in vae_state_dict().items()}, str(vae))
    return [dit, cam, vae]
