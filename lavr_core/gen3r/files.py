"""Where the released Gen3R weights are and how they load.

The release (``https://huggingface.co/JaceyH919/Gen3R``, fetched by the official README with
``git clone https://huggingface.co/JaceyH919/Gen3R ./checkpoints``) is a diffusers pipeline folder
written by ``Gen3RPipeline.save_pretrained``. LaVR expects that folder, unchanged, inside
ComfyUI's ``models/gen3r/`` (e.g. ``models/gen3r/Gen3R/``) and reads four of its sub-folders::

    Gen3R/
      transformer/   diffusion_pytorch_model.safetensors (or -00001-of-0000N shards; .bin accepted)
                     config.json (optional: num_heads, text_len are read when present)
      geo_adapter/   diffusion_pytorch_model.safetensors (.bin accepted), config.json (optional)
      wan_vae/       diffusion_pytorch_model.safetensors (.bin accepted): the Wan2.1 VAE
      vggt/          model.safetensors (model.pt / pytorch_model.bin accepted): VGGT-1B; only its
                     camera, depth and point heads are read

Not read: ``text_encoder/`` and ``tokenizer/`` (umT5-XXL: ComfyUI's ``CLIPLoader`` type ``wan``
with ``umt5_xxl_fp16`` / ``fp8`` encodes the prompt), ``clip_image_encoder/`` (open-CLIP ViT-H/14:
ComfyUI's ``CLIPVisionLoader`` with ``clip_vision_h.safetensors``), ``scheduler/`` (see
``schedule.py``). The Wan VAE and VGGT may instead come from ComfyUI's ``models/vae``
(``wan_2.1_vae.safetensors``) and ``models/vggt`` (VGGT-1B ``model.safetensors``): they are the
same networks (Gen3R trains neither).

Assumptions, because the released ``config.json`` files were not seen (no network when this was
written): the file names are diffusers' defaults for ``save_pretrained`` and
``PyTorchModelHubMixin`` (VGGT); every architecture is read from tensor shapes, never from a
config, except the DiT's head count and text length (the released width 1536 implies 12 heads and
512 tokens when no config says otherwise). A ``geo_adapter/config.json`` key ``token_grid``
``[h, w]`` (a LaVR extension, absent from the release) gives the adapter's decoded token grid for
small test models; the release decodes to 40 x 40 VGGT tokens, i.e. 560 x 560 video.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError
from .dit import Gen3RDiT, dit_from_state_dict, infer_gen3r_config
from .geometry_adapter import GeometryAdapter, GeometryAdapterConfig, adapter_from_state_dict
from .heads import GeometryHeads, load_geometry_heads

GEN3R_SOURCE = "https://huggingface.co/JaceyH919/Gen3R (git clone it into ComfyUI/models/gen3r/)"

#: Sub-folder -> (what it is, file names tried in order; the first pattern may match shards).
COMPONENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "transformer": ("the Gen3R DiT", ("diffusion_pytorch_model*.safetensors", "diffusion_pytorch_model*.bin")),
    "geo_adapter": ("the geometry adapter", ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")),
    "wan_vae": ("the Wan2.1 VAE", ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")),
    "vggt": ("VGGT (camera/depth/point heads)", ("model.safetensors", "model.pt", "pytorch_model.bin")),
}
#: Released geometry-adapter token grid (VGGT patches of 560 x 560 frames).
RELEASED_TOKEN_GRID = (40, 40)


@dataclass(frozen=True)
class Gen3RFiles:
    """The files one Gen3R model loads from (see the module docstring for the layout)."""

    transformer: tuple[Path, ...]
    geo_adapter: Path
    wan_vae: Path
    vggt: Path
    transformer_config: Path | None = None
    geo_adapter_config: Path | None = None


def is_gen3r_folder(path: str | Path) -> bool:
    """Whether ``path`` looks like a Gen3R pipeline folder (it has a ``transformer/`` and a ``geo_adapter/``)."""
    p = Path(path)
    return (p / "transformer").is_dir() and (p / "geo_adapter").is_dir()


def _find(folder: Path, sub: str) -> list[Path]:
    what, patterns = COMPONENTS[sub]
    d = folder / sub
    for pattern in patterns:
        found = sorted(f for f in d.glob(pattern) if f.is_file() and not f.name.endswith(".index.json"))
        if found:
            return found
    raise CheckpointError(f"The Gen3R folder {folder} has no {sub}/{patterns[0].replace('*', '')} ({what}).",
                          f"Put the complete {sub}/ folder of {GEN3R_SOURCE} there, keeping its layout "
                          f"({folder}/{sub}/{patterns[0].replace('*', '')}).")


def find_gen3r_files(folder: str | Path, *, wan_vae: str | Path | None = None,
                     vggt: str | Path | None = None) -> Gen3RFiles:
    """The files of a Gen3R pipeline folder; ``wan_vae`` / ``vggt`` override its ``wan_vae/`` / ``vggt/``.

    Raises ``CheckpointError`` naming the missing file and the path it belongs at.
    """
    root = Path(folder)
    if not root.is_dir():
        raise CheckpointError(f"The Gen3R folder {root} does not exist.",
                              f"Download {GEN3R_SOURCE}; the folder must hold transformer/, geo_adapter/, "
                              "wan_vae/ and vggt/.")
    extra = {}
    for name, path in (("wan_vae", wan_vae), ("vggt", vggt)):
        if path is not None:
            p = Path(path)
            if not p.is_file():
                raise CheckpointError(f"The {COMPONENTS[name][0]} file {p} does not exist.",
                                      "Pick an existing file, or use the one in the Gen3R folder.")
            extra[name] = p
        else:
            extra[name] = _find(root, name)[0]
    tcfg, acfg = root / "transformer" / "config.json", root / "geo_adapter" / "config.json"
    return Gen3RFiles(transformer=tuple(_find(root, "transformer")), geo_adapter=_find(root, "geo_adapter")[0],
                      transformer_config=tcfg if tcfg.is_file() else None,
                      geo_adapter_config=acfg if acfg.is_file() else None, **extra)


def _read_json(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"Cannot read {path} as JSON ({e}).", "Restore the file from the Gen3R download.") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object.", "Restore the file from the Gen3R download.")
    return data


def _state_dict(paths, what: str) -> dict:
    from ..checkpoint_io import find_state_dict, load_file_any

    sd: dict = {}
    for p in paths:
        sd.update(find_state_dict(load_file_any(p, what=what), path=p, what=what))
    return sd


def load_dit(files: Gen3RFiles, *, dtype: torch.dtype | None = None, device="cpu") -> Gen3RDiT:
    """The DiT: architecture from the tensors, heads and text length from ``config.json`` when given."""
    from dataclasses import replace

    cfg = _read_json(files.transformer_config)
    sd = _state_dict(files.transformer, "Gen3R DiT")
    name = files.transformer[0].parent.name + "/" + files.transformer[0].name
    heads = cfg.get("num_heads")
    from ..checkpoint_io import strip_prefix

    sd = strip_prefix(sd, ("model.diffusion_model.", "diffusion_model.", "transformer."))
    found = infer_gen3r_config(sd, num_heads=int(heads) if heads else None, what=f"The file {name}")
    if "text_len" in cfg:
        found = replace(found, text_len=int(cfg["text_len"]))
    return dit_from_state_dict(sd, found, dtype=dtype, device=device, what=f"The file {name}")


@dataclass(frozen=True)
class _GridAdapterConfig(GeometryAdapterConfig):
    """A geometry adapter whose decoder ends on another token grid than the released 40 x 40."""

    token_grid: tuple[int, int] = RELEASED_TOKEN_GRID

    def vae_config(self):
        from dataclasses import replace

        return replace(super().vae_config(), stem_out_size=tuple(self.token_grid))


def load_adapter(files: Gen3RFiles, *, dtype: torch.dtype | None = None, device="cpu") -> GeometryAdapter:
    cfg = _read_json(files.geo_adapter_config)
    what = f"The file {files.geo_adapter.parent.name}/{files.geo_adapter.name}"
    adapter = adapter_from_state_dict(_state_dict([files.geo_adapter], "Gen3R geometry adapter"), None,
                                      dtype=dtype, what=what)
    grid = tuple(int(v) for v in cfg.get("token_grid", RELEASED_TOKEN_GRID))
    if len(grid) != 2 or min(grid) < 1:
        raise CheckpointError(f"{files.geo_adapter_config} has token_grid {cfg.get('token_grid')!r}.",
                              "Give [height, width] in VGGT patches, or remove the key (40 x 40).")
    if grid != RELEASED_TOKEN_GRID:  # same tensors, a decoder that resizes to another grid
        with torch.device("meta"):
            resized = GeometryAdapter(_GridAdapterConfig(**asdict(adapter.config), token_grid=grid))
        resized.model.load_state_dict(adapter.model.state_dict(), strict=True, assign=True)
        adapter = resized
    return adapter.to(device).eval()


def load_vae(files: Gen3RFiles, *, dtype: torch.dtype | None = None, device="cpu"):
    """The Wan2.1 VAE (its base width is read from the file, so reduced test VAEs load too)."""
    from dataclasses import replace

    from ..wan.vae import WAN21_VAE, vae_from_state_dict, vae_state_dict

    sd = vae_state_dict(_state_dict([files.wan_vae], "Wan VAE"))
    what = f"The file {files.wan_vae.name}"
    first = sd.get("encoder.conv1.weight")
    config = WAN21_VAE
    if first is not None and first.shape[0] != WAN21_VAE.dim:
        config = replace(WAN21_VAE, dim=int(first.shape[0]), name=f"wan2.1-vae-dim{int(first.shape[0])}")
    return vae_from_state_dict(sd, config, dtype=dtype, device=device, what=what)


def load_heads(files: Gen3RFiles, *, device="cpu") -> GeometryHeads:
    """VGGT's heads in float32 (VGGT's own head precision)."""
    return load_geometry_heads(files.vggt, dtype=torch.float32, device=device)


def load_gen3r(files: Gen3RFiles, *, dtype: torch.dtype | None = None, device="cpu"):
    """All four parts as ``pipeline.Gen3RModels`` (checked to belong together)."""
    from .pipeline import Gen3RModels

    return Gen3RModels(dit=load_dit(files, dtype=dtype, device=device),
                       adapter=load_adapter(files, dtype=dtype, device=device),
                       vae=load_vae(files, dtype=dtype, device=device), heads=load_heads(files, device=device))


__all__ = ["COMPONENTS", "GEN3R_SOURCE", "Gen3RFiles", "RELEASED_TOKEN_GRID", "find_gen3r_files", "is_gen3r_folder",
           "load_adapter", "load_dit", "load_gen3r", "load_heads", "load_vae"]
