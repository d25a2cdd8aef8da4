"""LaVR adapter weights: one ``.safetensors`` file beside ReCamMaster (ComfyUI ``models/lavr/``).

Format ``lavr_adapter`` version 1. The file never holds the whole DiT: the base stays ReCamMaster's
released ``step20000.ckpt``, which loads strictly into ``ReCamMasterModel`` (and into ``LavrModel``'s
base, whose keys are ReCamMaster's: the adapter lives under its own ``adapter.`` prefix).

Tensor keys (float32 as trained unless saved otherwise; shapes for the defaults hidden = 512,
D = 768, 2 query layers, C = 16, DiT width 1536 with 30 blocks):

==============================================  =================================================
``adapter.state_norm.{weight,bias}``            ``[D]``: LayerNorm of the CUT3R state tokens
``adapter.state_mlp.0.{weight,bias}``           ``[hidden, D]``, ``[hidden]``
``adapter.state_mlp.2.{weight,bias}``           ``[hidden, hidden]``, ``[hidden]``
``adapter.query_embed``                         ``[hidden]``: the learned query
``adapter.query_pos.{0,2}.{weight,bias}``       ``[hidden, 4 * pos_freqs]`` then ``[hidden, hidden]``
``adapter.layers.{i}.norm{1,2,3}.{weight,bias}``  ``[hidden]``
``adapter.layers.{i}.{self_attn,cross_attn}.{q,k,v,o}.{weight,bias}``  ``[hidden, hidden]``, ``[hidden]``
``adapter.layers.{i}.ffn.{0,2}.{weight,bias}``  ``[ffn_mult*hidden, hidden]`` / ``[hidden, ffn_mult*hidden]``
``adapter.out_norm.{weight,bias}``              ``[hidden]``
``adapter.out_proj.{weight,bias}``              ``[C * query_stride**2, hidden]``: to latent channels
``adapter.{source,target}_pose.{0,2}.{weight,bias}``  ``[hidden, 12]`` then ``[hidden, hidden]``
``adapter.{source,target}_out.{j}.{weight,bias}``  ``[dim, hidden]``, ``[dim]`` for DiT block j
``base.<ReCamMaster key>``                      optional: a DiT tensor LaVR retrained (e.g.
                                                ``base.blocks.3.self_attn.q.weight``,
                                                ``base.blocks.3.cam_encoder.weight``), replacing
                                                ReCamMaster's at load time, in the LaVR model only
==============================================  =================================================

Header metadata (``__metadata__``, strings):

====================  ==========================================================================
``format``            ``"lavr_adapter"``
``format_version``    ``"1"``
``config``            ``LavrAdapterConfig.to_json()`` (sizes, query grid policy, frame policy)
``base_model``        what it was trained on, e.g. ``"Wan2.1 T2V 1.3B (dim 1536, 30 blocks, ...)"``
``info``              JSON, free-form provenance (trainer, steps, data)
====================  ==========================================================================

Loading is strict: every adapter tensor of the config must be there with its shape and nothing
else may be (``CheckpointError`` naming missing / unexpected keys), ``base.*`` keys must name base
tensors of the same shape, and the config must fit the DiT.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from ..checkpoint_io import load_safetensors, safetensors_metadata, strict_load
from ..errors import CheckpointError
from ..fileio import atomic_writer
from .adapter import LavrAdapter
from .config import LavrAdapterConfig
from .model import LavrModel

FORMAT = "lavr_adapter"
FORMAT_VERSION = 1
ADAPTER_PREFIX = "adapter."
BASE_PREFIX = "base."
_WHAT = "LaVR adapter weights"
_HINT = "Select the LaVR adapter file (models/lavr/*.safetensors) written by `python -m lavr_core.train lavr-adapter`."


def adapter_tensors(model: LavrModel, base_keys: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """The tensors ``save_adapter`` writes: the adapter under ``adapter.`` and ``base_keys`` under ``base.``."""
    if model.adapter is None:
        raise CheckpointError("This LaVR model has no adapter: nothing to save.", "Attach one with attach_adapter first.")
    out = {ADAPTER_PREFIX + k: v.detach() for k, v in model.adapter.state_dict().items()}
    base = model.base_state_dict()
    missing = [k for k in base_keys if k not in base]
    if missing:
        raise CheckpointError(f"Base tensors {missing[:3]} are not in the model.", "Name keys of the ReCamMaster DiT.")
    out.update({BASE_PREFIX + k: base[k].detach() for k in base_keys})
    return out


def save_adapter(model: LavrModel, path: str | Path, config: LavrAdapterConfig | None = None, *,
                 base_keys: Iterable[str] = (), info: dict[str, Any] | None = None,
                 dtype: torch.dtype | None = None) -> Path:
    """Write ``model``'s adapter (and the base tensors ``base_keys`` that training changed) atomically.

    ``config`` defaults to the adapter's own and must equal it; ``dtype`` casts floating tensors.
    """
    from safetensors.torch import save

    if model.adapter is not None and config is not None and config != model.adapter.config:
        raise CheckpointError("The config given to save_adapter differs from the adapter's.",
                              "Pass the adapter's own config (model.adapter.config) or none.")
    tensors = adapter_tensors(model, list(base_keys))
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).cpu().contiguous()
               for k, v in tensors.items()}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "config": model.adapter.config.to_json(),
            "base_model": model.config.describe(), "info": json.dumps(info or {})}
    p = Path(path)
    with atomic_writer(p, "wb") as f:
        f.write(save(tensors, metadata=meta))
    return p


def read_adapter(path: str | Path) -> tuple[LavrAdapterConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """``(config, tensors, metadata)`` of a LaVR adapter file, checked to be one (``CheckpointError`` if not)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"The {_WHAT} file {p} does not exist.", _HINT)
    if p.suffix.lower() not in (".safetensors", ".sft"):
        raise CheckpointError(f"{p.name} is not a .safetensors file; {_WHAT} are saved as .safetensors.", _HINT)
    try:
        raw = safetensors_metadata(p)
    except Exception as e:  # noqa: BLE001 - any header parse failure means a damaged or foreign file
        raise CheckpointError(f"Cannot read {p.name} as safetensors ({e}).",
                              "The file is damaged or not a weights file: save or download it again.") from e
    if raw.get("format") != FORMAT:
        what = f"its format is {raw['format']!r}" if "format" in raw else "it has no LaVR format tag"
        raise CheckpointError(f"{p.name} is not a LaVR adapter file ({what}).",
                              "ReCamMaster's own checkpoint goes in the video model loader; " + _HINT)
    if raw.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(f"{p.name} is {FORMAT} version {raw.get('format_version')!r}; this LaVR reads "
                              f"version {FORMAT_VERSION}.", "Update ComfyUI-LaVR, or re-export the adapter.")
    if "config" not in raw:
        raise CheckpointError(f"{p.name} has no adapter config in its metadata.", "Re-save it with save_adapter.")
    config = LavrAdapterConfig.from_json(raw["config"])
    try:
        info = json.loads(raw.get("info", "{}"))
    except ValueError:
        info = {}
    tensors = load_safetensors(p, what=_WHAT)
    return config, tensors, {"base_model": raw.get("base_model"), "info": info}


def split_tensors(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(adapter state dict, base overrides)`` from ``adapter.*`` / ``base.*`` keys; anything else is an error."""
    adapter = {k[len(ADAPTER_PREFIX):]: v for k, v in tensors.items() if k.startswith(ADAPTER_PREFIX)}
    base = {k[len(BASE_PREFIX):]: v for k, v in tensors.items() if k.startswith(BASE_PREFIX)}
    stray = [k for k in tensors if not k.startswith((ADAPTER_PREFIX, BASE_PREFIX))]
    if stray:
        raise CheckpointError(f"The {_WHAT} hold {len(stray)} unexpected tensors outside 'adapter.' / 'base.' "
                              f"(e.g. {', '.join(stray[:3])}).",
                              "This looks like a whole-model checkpoint; " + _HINT)
    return adapter, base


def build_adapter(config: LavrAdapterConfig, state_dict: Mapping[str, torch.Tensor] | None = None, *,
                  device=None, dtype: torch.dtype | None = None) -> LavrAdapter:
    """A ``LavrAdapter``: freshly initialised (zero outputs), or loaded strictly from ``state_dict``
    (keys without the ``adapter.`` prefix)."""
    if state_dict is None:
        adapter = LavrAdapter(config)
    else:
        with torch.device("meta"):
            adapter = LavrAdapter(config)
        strict_load(adapter, {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()},
                    what="LaVR adapter", assign=True,
                    hint="The adapter tensors do not match its config: the file is damaged or was edited; "
                         "save or download it again.")
    return adapter.to(device=device, dtype=dtype)


def attach_adapter(model, source=None, *, config: LavrAdapterConfig | None = None,
                   dtype: torch.dtype | None = None) -> LavrModel:
    """A ``LavrModel`` on ``model``'s weights (shared, not copied; ``model`` is left unchanged) with an adapter.

    ``source``: a weights file path (layout above), a state dict with ``adapter.*`` (and optional
    ``base.*``) keys (``config`` then required), a ``LavrAdapterConfig`` or ``None`` with ``config``
    (a fresh, zero-output adapter for training), or a ``LavrAdapter``. The adapter goes to the
    model's device, in ``dtype`` (default: the model's).
    """
    from ..wan.recammaster import ReCamMasterModel

    if not isinstance(model, ReCamMasterModel):
        raise CheckpointError(f"The LaVR adapter attaches to a ReCamMaster model, not a {type(model).__name__}.",
                              "Load ReCamMaster's step20000.ckpt as the video model.")
    device = model.patch_embedding.weight.device
    dtype = dtype or model.patch_embedding.weight.dtype
    overrides: dict[str, torch.Tensor] = {}
    if isinstance(source, LavrAdapter):
        adapter = source.to(device=device, dtype=dtype)
    elif isinstance(source, LavrAdapterConfig) or source is None:
        cfg = source if source is not None else config
        if cfg is None:
            raise CheckpointError("attach_adapter needs adapter weights or a config for a fresh adapter.",
                                  "Pass a weights file, or LavrAdapterConfig.for_model(model.config, ...).")
        cfg.check_model(model.config)
        adapter = build_adapter(cfg, device=device, dtype=dtype)
    else:
        if isinstance(source, (str, Path)):
            cfg, tensors, _ = read_adapter(source)
            if config is not None and config != cfg:
                raise CheckpointError(f"{Path(source).name} holds an adapter of another config than the one given.",
                                      "Drop the config argument: the file's own is used.")
        elif isinstance(source, Mapping):
            if config is None:
                raise CheckpointError("A LaVR adapter state dict needs its config.", "Pass config=LavrAdapterConfig(...).")
            cfg, tensors = config, dict(source)
        else:
            raise CheckpointError(f"Cannot load a LaVR adapter from a {type(source).__name__}.",
                                  "Pass a .safetensors path, a state dict, a config or a LavrAdapter.")
        cfg.check_model(model.config)
        sd, overrides = split_tensors(tensors)
        adapter = build_adapter(cfg, sd, device=device, dtype=dtype)
    base = model
    return LavrModel.from_base(base, adapter, overrides)
