"""The loaded video model: a Wan2.1 DiT (plain, ReCamMaster, or with a LaVR adapter) and its VAE.

``VideoModel`` is the value of the ComfyUI type ``LAVR_VIDEO_MODEL``: what "Load LaVR Video Model"
hands to the LaVR Sampler and the Fused 4D Sampler. ``load_video_model`` builds it from the single
files ComfyUI users have:

* the Wan2.1 T2V DiT (``models/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors``, original Wan
  keys, with or without ``model.diffusion_model.``, fp32/fp16/bf16/fp8);
* optionally ReCamMaster's ``step20000.ckpt`` (``torch.save`` of the whole fine-tuned DiT; a file
  with only some tensors, e.g. the camera layers and self-attention, is applied on top of the base);
* optionally a LaVR adapter file (``models/lavr/``), attached by ``lavr_core.lavr.attach_adapter``;
* the Wan2.1 VAE (``models/vae/wan_2.1_vae.safetensors``, original keys).

Nothing here imports ComfyUI; devices and dtypes are chosen by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..errors import CheckpointError, InputError
from .config import WanConfig, infer_config
from .vae import WAN21_VAE, WanVAE, WanVAEConfig

#: What the DiT of a ``VideoModel`` is: plain Wan2.1 text-to-video, ReCamMaster (camera layers,
#: target|source frames), or ReCamMaster plus a LaVR scene adapter.
VARIANTS = ("wan_t2v", "recammaster", "lavr")

#: Where users get the files (named in "not found" errors).
WAN_SOURCE = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged (split_files/diffusion_models/)"
VAE_SOURCE = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged (split_files/vae/)"
RECAMMASTER_SOURCE = "https://huggingface.co/KwaiVGI/ReCamMaster-Wan2.1 (step20000.ckpt)"
#: Names the loader suggests when a folder is empty.
WAN_DIT_FILE = "wan2.1_t2v_1.3B_fp16.safetensors"
WAN_VAE_FILE = "wan_2.1_vae.safetensors"
RECAMMASTER_FILE = "ReCamMaster-Wan2.1/step20000.ckpt"

#: Tensors without which a DiT file cannot stand alone (a partial fine-tune lacks them).
_STANDALONE_KEYS = ("patch_embedding.weight", "text_embedding.0.weight", "time_embedding.0.weight",
                    "blocks.0.ffn.0.weight", "head.head.weight")


@dataclass
class VideoModel:
    """A Wan2.1 video DiT and the Wan VAE, kept on ``offload_device`` until a sampler needs them.

    Attributes:
        dit: ``WanModel`` (variant ``wan_t2v``), ``ReCamMasterModel`` (``recammaster``) or the
            adapter-wrapped model ``lavr_core.lavr.attach_adapter`` returns (``lavr``). Eval mode.
            ``forward(x, timestep, context, cam_emb=None, **condition)``: for the camera variants
            ``x = cat([noisy_target, source], dim=2)`` ``[B, 16, 2F, H/8, W/8]``.
        vae: the Wan2.1 VAE (video ``[B, 3, 4k+1, H, W]`` in [-1, 1] <-> latents ``[B, 16, k+1, H/8, W/8]``).
        variant: one of ``VARIANTS``.
        config: the DiT's ``WanConfig`` (``text_dim`` is the CONDITIONING width it needs).
        dit_dtype / vae_dtype: the weights' dtypes.
        load_device: where the parts run; offload_device: where they wait (equal = kept loaded).
        paths: role -> file: ``"dit"``, ``"vae"`` and, when used, ``"recammaster"``, ``"adapter"``.
        notes: what the loader did that a user may want to know (e.g. "base file not read").
    """

    dit: nn.Module
    vae: WanVAE
    variant: str
    config: WanConfig
    dit_dtype: torch.dtype
    vae_dtype: torch.dtype
    load_device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    offload_device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    paths: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown video model variant {self.variant!r}; one of {VARIANTS}")

    # ---------------------------------------------------------------- facts
    @property
    def text_dim(self) -> int:
        """Width of the text features the DiT takes (umT5-XXL: 4096)."""
        return self.config.text_dim

    @property
    def latent_channels(self) -> int:
        return self.vae.config.z_dim

    @property
    def has_camera(self) -> bool:
        return self.variant in ("recammaster", "lavr")

    @property
    def files(self) -> dict[str, str]:
        """Role -> file name (for messages and the node's summary)."""
        return {k: Path(v).name for k, v in self.paths.items()}

    def require(self, node: str, *variants: str) -> None:
        """Raise an ``InputError`` naming the loader setting that fixes it when the variant is not one of ``variants``."""
        if self.variant in variants:
            return
        if "recammaster" in variants or "lavr" in variants:
            raise InputError(f"{node} needs a camera-controlled video model (ReCamMaster), but the connected one "
                             f"is plain {self.config.describe()}.",
                             "In Load LaVR Video Model, pick ReCamMaster's step20000.ckpt as recammaster_ckpt "
                             f"({RECAMMASTER_SOURCE}).")
        raise InputError(f"{node} needs plain Wan2.1 text-to-video, but the connected model is {self.variant}.",
                         "In Load LaVR Video Model, set recammaster_ckpt and lavr_adapter to none.")

    def part(self, part: str) -> nn.Module:
        if part == "dit":
            return self.dit
        if part == "vae":
            return self.vae
        raise ValueError(f"unknown part {part!r}: 'dit' or 'vae'")

    def handle(self, part: str):
        """A ``lavr_core.models.ModelHandle`` of the DiT or the VAE (for ``model_on_device``)."""
        from ..models import ModelHandle

        module = self.part(part)
        dtype = self.dit_dtype if part == "dit" else self.vae_dtype
        return ModelHandle(f"wan_{part}", module, path=Path(self.paths.get(part, "")), dtype=dtype,
                           load_device=self.load_device, offload_device=self.offload_device,
                           info={"variant": self.variant})

    def describe(self) -> str:
        extra = {"wan_t2v": "", "recammaster": " + ReCamMaster camera layers", "lavr": " + ReCamMaster + LaVR adapter"}
        base = replace(self.config, camera=False).describe()
        return (f"{base}{extra[self.variant]} ({self.dit_dtype}), VAE {self.vae.config.name} ({self.vae_dtype}); "
                f"runs on {self.load_device}")


# ----------------------------------------------------------------------------- VAE

def infer_vae_config(state_dict: dict, what: str = "The VAE file") -> WanVAEConfig:
    """The Wan2.1-architecture ``WanVAEConfig`` of a VAE state dict (original keys): the released
    one (width 96, 2 residual blocks a stage) or a narrower/shallower model of the same design."""
    first = state_dict.get("encoder.conv1.weight")
    if first is None:
        return WAN21_VAE  # vae_from_state_dict names what is wrong
    dim = int(first.shape[0])
    stage0 = [k for k in state_dict if k.startswith("encoder.downsamples.") and k.endswith(".resample.1.weight")]
    if not stage0:
        raise CheckpointError(f"{what} has no encoder down-sampling layers; it is not a Wan2.1 VAE.",
                              f"Pick {WAN_VAE_FILE} ({VAE_SOURCE}).")
    num_res = min(int(k.split(".")[2]) for k in stage0)
    if (dim, num_res) == (WAN21_VAE.dim, WAN21_VAE.num_res_blocks):
        return WAN21_VAE
    return replace(WAN21_VAE, dim=dim, num_res_blocks=num_res, name=f"wan2.1-vae-dim{dim}")


def load_video_vae(path: str | Path, *, dtype: torch.dtype | None = None,
                   device: str | torch.device = "cpu") -> WanVAE:
    """The Wan2.1 VAE from ComfyUI's ``models/vae`` file (or the official ``Wan2.1_VAE.pth``)."""
    from ..checkpoint_io import find_state_dict, load_file_any
    from .vae import vae_from_state_dict, vae_state_dict

    p = Path(path)
    sd = vae_state_dict(find_state_dict(load_file_any(p, what="Wan VAE"), path=p, what="Wan VAE"))
    what = f"The VAE file {p.name}"
    return vae_from_state_dict(sd, infer_vae_config(sd, what), dtype=dtype, device=device, what=what)


# ----------------------------------------------------------------------------- DiT

def _read(path: Path) -> dict:
    from .loading import read_state_dict

    return read_state_dict(path)


def _check_dit(sd: dict, path: Path) -> WanConfig:
    """The config of a DiT state dict, or a ``CheckpointError`` saying what the file is instead."""
    from .loading import _describe_foreign

    try:
        config = infer_config(sd, what=f"the file {path.name}")
    except CheckpointError as e:
        foreign = _describe_foreign(list(sd))
        if foreign is None:
            raise
        raise CheckpointError(f"The file {path.name} is {foreign}, not a Wan2.1 diffusion model.",
                              f"Pick a Wan2.1 T2V DiT from models/diffusion_models, e.g. {WAN_DIT_FILE} "
                              f"({WAN_SOURCE}).") from e
    if config.has_image_input:
        raise CheckpointError(f"The file {path.name} is an image-to-video Wan model; the video samplers use "
                              "text-to-video.", f"Pick {WAN_DIT_FILE} ({WAN_SOURCE}).")
    return config


def _camera_state(path: Path) -> dict:
    sd = _read(path)
    if "blocks.0.cam_encoder.weight" not in sd:
        raise CheckpointError(f"The file {path.name} has no camera layers (blocks.N.cam_encoder); it is not a "
                              "ReCamMaster checkpoint.",
                              f"Pick ReCamMaster's step20000.ckpt ({RECAMMASTER_SOURCE}) or set recammaster_ckpt to none.")
    return sd


def load_dit(dit_path: str | Path, recammaster_path: str | Path | None = None, *, camera_layers: bool = False,
             dtype: torch.dtype | None = None, device: str | torch.device = "cpu") -> tuple[nn.Module, list[str]]:
    """The DiT and notes. With ``recammaster_path``, a ``ReCamMasterModel`` (a complete checkpoint is
    used alone and the base file is not read; a partial one is applied over the base). Without it,
    plain ``WanModel``, or with ``camera_layers`` ReCamMaster's start (zero camera encoder, identity
    projector: numerically plain Wan) for an adapter to sit on.
    """
    from .loading import model_from_state_dict

    dit_path = Path(dit_path)
    notes: list[str] = []
    if recammaster_path is not None:
        rp = Path(recammaster_path)
        cam = _camera_state(rp)
        if all(k in cam for k in _STANDALONE_KEYS):
            _check_dit(cam, rp)
            sd, what = cam, f"The file {rp.name}"
            notes.append(f"{rp.name} holds the whole DiT; the base weights of {dit_path.name} were not needed.")
        else:
            base = _read(dit_path)
            _check_dit(base, dit_path)
            foreign = sorted(k for k in cam if k not in base and ".cam_encoder." not in k and ".projector." not in k)
            if foreign:
                raise CheckpointError(f"{rp.name} has tensors that are not in a Wan2.1 DiT: {', '.join(foreign[:5])}.",
                                      f"Pick ReCamMaster's step20000.ckpt ({RECAMMASTER_SOURCE}).")
            sd = {**base, **cam}
            what = f"{dit_path.name} + {rp.name}"
            notes.append(f"{rp.name} has {len(cam)} tensors; the rest come from {dit_path.name}.")
        model = model_from_state_dict(sd, None, dtype=dtype, device=device, what=what)
    else:
        sd = _read(dit_path)
        what = f"The file {dit_path.name}"
        found = _check_dit(sd, dit_path)
        if found.camera:
            raise CheckpointError(f"{dit_path.name} is a ReCamMaster checkpoint (Wan2.1 + camera layers), not the "
                                  "base Wan2.1 model.",
                                  f"Pick {WAN_DIT_FILE} as dit_name and select this file as recammaster_ckpt.")
        expected = found.with_camera(True) if camera_layers else None
        model = model_from_state_dict(sd, expected, dtype=dtype, device=device, what=what,
                                      allow_missing_camera=camera_layers)
        if camera_layers:
            notes.append("No ReCamMaster checkpoint: camera layers start as ReCamMaster's initialisation (no effect).")
    return model, notes


def load_video_model(dit_path: str | Path, vae_path: str | Path, *, recammaster_path: str | Path | None = None,
                     adapter_path: str | Path | None = None, dit_dtype: torch.dtype | None = None,
                     vae_dtype: torch.dtype | None = None, load_device: str | torch.device = "cpu",
                     offload_device: str | torch.device = "cpu") -> VideoModel:
    """Load the DiT (+ ReCamMaster, + LaVR adapter) and the VAE onto ``offload_device``.

    ``dit_dtype`` defaults to the file's (bf16 for fp8 files); ``vae_dtype`` to the VAE file's.
    """
    load_device, offload_device = torch.device(load_device), torch.device(offload_device)
    dit, notes = load_dit(dit_path, recammaster_path, camera_layers=adapter_path is not None, dtype=dit_dtype,
                          device=offload_device)
    config = dit.config
    variant = "recammaster" if config.camera else "wan_t2v"
    if adapter_path is not None:
        try:
            from ..lavr import attach_adapter  # lazy: only adapter users need it
        except ImportError as e:
            raise CheckpointError(f"A LaVR adapter was selected, but this install has no LaVR adapter code "
                                  f"(lavr_core.lavr: {e}).", "Update ComfyUI-LaVR, or set lavr_adapter to none.") from e
        dit = attach_adapter(dit, adapter_path).eval()
        variant = "lavr"
    vae = load_video_vae(vae_path, dtype=vae_dtype, device=offload_device)
    if config.in_dim != vae.config.z_dim or config.out_dim != vae.config.z_dim:
        raise CheckpointError(f"The DiT takes {config.in_dim}-channel latents but the VAE makes {vae.config.z_dim}.",
                              f"Use the Wan2.1 VAE ({WAN_VAE_FILE}) with Wan2.1 models (Wan2.2's VAE is different).")
    paths: dict[str, Any] = {"dit": Path(dit_path), "vae": Path(vae_path)}
    if recammaster_path is not None:
        paths["recammaster"] = Path(recammaster_path)
    if adapter_path is not None:
        paths["adapter"] = Path(adapter_path)
    return VideoModel(dit=dit, vae=vae, variant=variant, config=config,
                      dit_dtype=next(dit.parameters()).dtype, vae_dtype=vae.dtype, load_device=load_device,
                      offload_device=offload_device, paths=paths, notes=notes)


__all__ = ["RECAMMASTER_FILE", "RECAMMASTER_SOURCE", "VAE_SOURCE", "VARIANTS", "VideoModel", "WAN_DIT_FILE",
           "WAN_SOURCE", "WAN_VAE_FILE", "infer_vae_config", "load_dit", "load_video_model", "load_video_vae"]
