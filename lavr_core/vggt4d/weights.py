"""LaVR's own weights file for the 4D parts of VGGT4D: the Gaussian head and the temporal layers.

Format ``lavr_vggt4d`` version 1: one ``.safetensors`` file (no pickles, nothing executable).

Tensor keys (float32 unless saved otherwise; names are the ``VGGT4D`` module paths):

* ``gaussian_head.dpt.*``: the head's DPT trunk, same sub-keys as a VGGT depth head
  (``projects.{0..3}``, ``resize_layers.{0,1,3}``, ``scratch.layer{1..4}_rn``,
  ``scratch.refinenet{1..4}.*``, ``scratch.output_conv1``, ``norm``);
* ``gaussian_head.out.0.{weight,bias}`` (3x3 conv features -> 32) and ``gaussian_head.out.2.*``
  (1x1 conv 32 -> 14, channel table in ``gaussian_head.py``);
* ``temporal.frame.{i}.*`` and ``temporal.global_.{i}.*`` for ``i`` in ``0 .. depth-1``, each
  ``norm``, ``qkv``, ``q_norm``, ``k_norm``, ``proj`` (``weight``, ``bias``).

A file holds the Gaussian head, the temporal layers, or both, and nothing else: never VGGT's own
weights, which come from the released checkpoint.

Header metadata (``__metadata__``, strings):

==========================  ======================================================================
``format``                  ``"lavr_vggt4d"``
``format_version``          ``"1"``
``modules``                 ``"gaussian_head,temporal"`` (the parts present, comma-separated)
``embed_dim``               aggregator width E of the VGGT it was trained on (``"1024"`` for VGGT-1B)
``aggregator_depth``        number of frame/global block pairs (``"24"``)
``patch_size``              ``"14"``
``gaussian_head``           JSON ``{"features", "out_channels", "intermediate_layer_idx", "pos_embed",
                            "channels": 14}`` (present with the head)
``temporal``                JSON ``{"num_heads"}`` (present with the temporal layers)
``replace_camera_tokens``   ``"true"``/``"false"``: how the model was trained
``init``                    JSON of the ``InitConfig`` the head was trained on top of
``info``                    JSON, free-form provenance (training steps, data, base checkpoint)
==========================  ======================================================================

Loading is strict: the format, version and VGGT size must match and every tensor must be there
with its shape, or a ``CheckpointError`` says what is wrong and what to do.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..checkpoint_io import load_safetensors, safetensors_metadata, strict_load
from ..errors import CheckpointError
from ..fileio import atomic_writer
from ..vggt.model import VGGT
from .init_free import InitConfig
from .model import VGGT4D, VGGT4DConfig

FORMAT = "lavr_vggt4d"
FORMAT_VERSION = 1
MODULES = ("gaussian_head", "temporal")
_WHAT = "VGGT-4D weights (Gaussian head / temporal layers)"


def _module_state(model: VGGT4D, name: str) -> dict[str, torch.Tensor]:
    mod = getattr(model, name)
    return {f"{name}.{k}": v.detach().contiguous() for k, v in mod.state_dict().items()}


def weights_metadata(model: VGGT4D, info: dict[str, Any] | None = None) -> dict[str, str]:
    """The header metadata ``save_weights`` writes for ``model`` (table in the module docstring)."""
    vcfg = model.vggt.config
    mods = [m for m in MODULES if getattr(model, m) is not None]
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "modules": ",".join(mods),
            "embed_dim": str(vcfg.embed_dim), "aggregator_depth": str(vcfg.aggregator.depth),
            "patch_size": str(vcfg.aggregator.patch_size),
            "replace_camera_tokens": json.dumps(bool(model.config.replace_camera_tokens)),
            "init": json.dumps(asdict(model.config.init)), "info": json.dumps(info or {})}
    if model.gaussian_head is not None:
        d = vcfg.dpt
        meta["gaussian_head"] = json.dumps({"features": d.features, "out_channels": list(d.out_channels),
                                            "intermediate_layer_idx": list(d.intermediate_layer_idx),
                                            "pos_embed": d.pos_embed, "channels": 14})
    if model.temporal is not None:
        meta["temporal"] = json.dumps({"num_heads": model.temporal.num_heads})
    return meta


def save_weights(model: VGGT4D, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s Gaussian head and temporal layers (those it has) to ``path``, atomically."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for m in MODULES:
        if getattr(model, m) is not None:
            tensors.update({k: v.cpu() for k, v in _module_state(model, m).items()})
    if not tensors:
        raise CheckpointError("This VGGT4D has neither a Gaussian head nor temporal layers: nothing to save.",
                              "Build it with VGGT4DConfig(gaussian_head=True and/or temporal=True).")
    data = save(tensors, metadata=weights_metadata(model, info))
    path = Path(path)
    with atomic_writer(path, "wb") as f:
        f.write(data)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checked, parsed metadata of a weights file (``CheckpointError`` if it is not one of ours)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"The {_WHAT} file {p} does not exist.",
                              "Check the path, or run without head weights to use the training-free Gaussians.")
    if p.suffix.lower() not in (".safetensors", ".sft"):
        raise CheckpointError(f"{p.name} is not a .safetensors file; {_WHAT} are saved as .safetensors.",
                              "Select the file `python -m lavr_core.train vggt-gaussians` wrote (e.g. vggt4d_weights.safetensors).")
    try:
        raw = safetensors_metadata(p)
    except Exception as e:  # noqa: BLE001 - any parse failure of the header means a damaged or foreign file
        raise CheckpointError(f"Cannot read {p.name} as safetensors ({e}).",
                              "The file is damaged or not a weights file: save or download it again.") from e
    if raw.get("format") != FORMAT:
        what = f"its format is {raw['format']!r}" if "format" in raw else "it has no LaVR format tag"
        hint = ("This looks like a VGGT checkpoint: load it as the VGGT model, and give Gaussian-head weights here."
                if not raw.get("format") else f"Give a file with format {FORMAT!r}.")
        raise CheckpointError(f"{p.name} is not a LaVR VGGT-4D weights file ({what}).", hint)
    try:
        version = int(raw.get("format_version", "?"))
    except ValueError:
        version = -1
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{p.name} is {FORMAT} version {raw.get('format_version')!r}; this LaVR reads version "
                              f"{FORMAT_VERSION}.", "Update ComfyUI-LaVR, or re-export the weights with this version.")
    try:
        meta: dict[str, Any] = {
            "modules": tuple(m for m in raw["modules"].split(",") if m),
            "embed_dim": int(raw["embed_dim"]), "aggregator_depth": int(raw["aggregator_depth"]),
            "patch_size": int(raw["patch_size"]),
            "replace_camera_tokens": json.loads(raw.get("replace_camera_tokens", "true")),
            "init": json.loads(raw.get("init", "{}")), "info": json.loads(raw.get("info", "{}")),
            "gaussian_head": json.loads(raw["gaussian_head"]) if "gaussian_head" in raw else None,
            "temporal": json.loads(raw["temporal"]) if "temporal" in raw else None,
        }
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"The metadata of {p.name} is incomplete or malformed ({e!r}).",
                              "Re-save the weights with lavr_core.vggt4d.weights.save_weights.") from e
    unknown = [m for m in meta["modules"] if m not in MODULES]
    if unknown or not meta["modules"]:
        raise CheckpointError(f"{p.name} lists modules {list(meta['modules'])}; known are {list(MODULES)}.",
                              "Re-save the weights with this version of LaVR.")
    return meta


def config_from_metadata(meta: dict[str, Any]) -> VGGT4DConfig:
    """The ``VGGT4DConfig`` a weights file was saved from."""
    init = InitConfig(**{k: v for k, v in meta["init"].items() if k in InitConfig.__dataclass_fields__})
    return VGGT4DConfig(gaussian_head="gaussian_head" in meta["modules"], temporal="temporal" in meta["modules"],
                        temporal_num_heads=(meta["temporal"] or {}).get("num_heads"),
                        replace_camera_tokens=bool(meta["replace_camera_tokens"]), init=init)


def _check_fits(meta: dict[str, Any], vggt: VGGT, name: str) -> None:
    v = vggt.config
    ours = {"embed_dim": v.embed_dim, "aggregator_depth": v.aggregator.depth, "patch_size": v.aggregator.patch_size}
    bad = [f"{k} {meta[k]} (file) vs {ours[k]} (VGGT)" for k in ours if meta[k] != ours[k]]
    gh = meta.get("gaussian_head")
    if gh is not None:
        d = v.dpt
        if gh.get("features") != d.features or list(gh.get("out_channels", ())) != list(d.out_channels) \
                or list(gh.get("intermediate_layer_idx", ())) != list(d.intermediate_layer_idx):
            bad.append(f"Gaussian head DPT sizes {gh} vs the VGGT's {d}")
    if bad:
        raise CheckpointError(f"{name} was trained for a different VGGT: {'; '.join(bad)}.",
                              "Use the VGGT checkpoint these weights were trained with (VGGT-1B for released "
                              "LaVR weights), or train weights for this one.")


def load_weights(model: VGGT4D, path: str | Path) -> dict[str, Any]:
    """Load a weights file into ``model`` strictly; returns the file's metadata.

    The file must hold exactly the parts ``model`` has (``CheckpointError`` otherwise); build the model
    with ``config_from_metadata(read_metadata(path))`` or use ``load_vggt4d`` to match it.
    """
    p = Path(path)
    meta = read_metadata(p)
    _check_fits(meta, model.vggt, p.name)
    have = tuple(m for m in MODULES if getattr(model, m) is not None)
    if set(have) != set(meta["modules"]):
        raise CheckpointError(f"{p.name} holds {list(meta['modules'])} but the model has {list(have)}.",
                              "Build the model from the file (lavr_core.vggt4d.load_vggt4d) so the parts match.")
    sd = load_safetensors(p, what=_WHAT)
    stray = [k for k in sd if not any(k.startswith(f"{m}.") for m in have)]
    if stray:
        raise CheckpointError(f"{p.name} holds {len(stray)} tensors outside {list(have)} (e.g. {stray[:3]}).",
                              "The file is not a clean LaVR VGGT-4D weights file; re-save it with save_weights.")
    # One container with the parts under their own names, so error messages list the file's keys.
    parts = torch.nn.ModuleDict({m: getattr(model, m) for m in have})
    strict_load(parts, sd, what=f"VGGT4D {' and '.join(have)} ({p.name})",
                hint="The file does not match this model's size: use weights trained for this VGGT.")
    return meta


def load_vggt4d(vggt: VGGT, weights: str | Path | None = None, config: VGGT4DConfig | None = None) -> VGGT4D:
    """A ``VGGT4D`` around ``vggt`` with the parts and weights of ``weights`` (strict), or, without a
    file, the untrained model of ``config`` (default: no Gaussian head, no temporal layers: plain
    VGGT with the training-free Gaussians)."""
    if weights is None:
        cfg = config or VGGT4DConfig(gaussian_head=False, temporal=False)
        return VGGT4D(vggt, cfg)
    meta = read_metadata(weights)
    _check_fits(meta, vggt, Path(weights).name)
    cfg = config_from_metadata(meta)
    model = VGGT4D(vggt, cfg)
    dev = vggt.aggregator.camera_token.device
    load_weights(model, weights)
    return model.to(dev)
