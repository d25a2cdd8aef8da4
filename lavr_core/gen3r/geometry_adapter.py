"""Gen3R's geometry adapter: VGGT tokens <-> a 16-channel latent on the Wan latent grid.

The adapter (``gen3r/models/geometry_adapter``) is a Wan2.1-style causal video VAE
(``lavr_core.wan.vae``) with other widths and 2-D token stems: the encoder takes, per frame, the
patch tokens of VGGT aggregator layers 4, 11, 17, 23 and the last layer's camera token broadcast over
the 40x40 patch grid (5 x 2048 = 10240 channels), upsamples them x1.75 to 70x70 (the Wan latent grid
of 560x560 video) and compresses time 4x; the decoder maps latents back to 10240-channel tokens on a
40x40 grid, from which the VGGT heads read depth, points and cameras.

State dict: ``model.`` + the inner VAE's names (``model.encoder.init_block.resample.1.weight`` ...).
The training script's own save format drops the ``model.`` prefix and adds ``mean`` / ``std``; both
load. The latent normalisation is the 16 hard-coded values below (the official class ignores any in
the file, and so do we, with a warning when they differ).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn as nn

from ..errors import CheckpointError, InputError
from ..wan.vae import LatentDistribution, WanVAE, WanVAEConfig

#: Latent statistics hard-coded in ``GeometryAdapter.__init__`` ("for 49 frames").
GEOMETRY_LATENTS_MEAN = (0.14257538, 0.18577661, 0.14208488, 0.06298031, 0.09738383, -0.06001362,
                         -0.04728968, -0.12326089, -0.04308648, -0.10522724, 0.08278389, -0.00270301,
                         -0.09203526, 0.03170688, 0.11458898, 0.10679868)
GEOMETRY_LATENTS_STD = (0.56929547, 0.61451489, 0.68560797, 0.78598368, 0.51151282, 0.75570852,
                        0.80284864, 0.63438177, 0.82458758, 0.59266430, 0.75781488, 0.70593017,
                        0.70382243, 0.57837099, 0.73155540, 0.71971470)

#: VGGT aggregator layers whose patch tokens the adapter encodes (= the DPT heads' layers).
VGGT_LAYERS = (4, 11, 17, 23)
#: Width of one VGGT aggregator output (frame-attention | global-attention, 2 x 1024).
VGGT_TOKEN_DIM = 2048
#: Special tokens per frame in VGGT (camera + 4 registers).
VGGT_SPECIAL_TOKENS = 5


@dataclass(frozen=True)
class GeometryAdapterConfig:
    """The official constructor arguments of ``GeometryAdapter`` (released: 16, 128, 10240, 10240, 10).

    ``latent_channels`` must be 16: the latent statistics are 16 hard-coded values.
    """

    latent_channels: int = 16
    hidden_dim: int = 128
    input_dim: int = 10240
    output_dim: int = 10240
    resample_scale: int = 10

    def __post_init__(self):
        if self.latent_channels != len(GEOMETRY_LATENTS_MEAN):
            raise ValueError("Gen3R's geometry adapter has 16 latent channels (its statistics are hard-coded)")

    @classmethod
    def from_dict(cls, d: dict) -> "GeometryAdapterConfig":
        known = cls.__dataclass_fields__
        return cls(**{k: int(v) for k, v in d.items() if k in known})

    def vae_config(self) -> WanVAEConfig:
        """The adapter as an instance of the Wan VAE architecture (``_geometry_adapter`` in the official code)."""
        return WanVAEConfig(dim=self.hidden_dim, z_dim=self.latent_channels, dim_mult=(4, 2, 1, 1), num_res_blocks=2,
                            attn_scales=(), temporal_downsample=(False, True, True), in_channels=self.input_dim,
                            out_channels=self.output_dim, encoder_in_mult=4, spatial_resample=False, token_stems=True,
                            stem_reduction=self.resample_scale, stem_upscale=1.75, stem_out_size=(40, 40),
                            latents_mean=GEOMETRY_LATENTS_MEAN, latents_std=GEOMETRY_LATENTS_STD, clamp_output=False,
                            name="gen3r-geometry-adapter")


#: The released adapter (``train_geo_adapter_pl.py`` / ``train_dit.py``).
GEN3R_GEOMETRY_ADAPTER = GeometryAdapterConfig()


class GeometryAdapter(nn.Module):
    """VGGT tokens ``[B, 10240, T, 40, 40]`` <-> geometry latents ``[B, 16, 1 + (T-1)//4, 70, 70]``.

    ``T = 1 + 4k`` frames; the latent is normalised with the adapter's own statistics (it lives
    beside the Wan-VAE latent of the same frames, which it was trained to resemble).
    """

    def __init__(self, config: GeometryAdapterConfig = GEN3R_GEOMETRY_ADAPTER):
        super().__init__()
        self.config = config
        self.model = WanVAE(config.vae_config())

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    def encode_raw(self, tokens: torch.Tensor) -> torch.Tensor:
        """``cat([normalised mean, log-variance], 1)`` ``[B, 32, T', h', w']`` (the official ``_encode``)."""
        mean, logvar = self.model.encode_moments(tokens)
        return torch.cat([mean, logvar], dim=1)

    def encode(self, tokens: torch.Tensor) -> LatentDistribution:
        """The posterior over geometry latents (``.mean``, ``.logvar`` clamped, ``.sample(generator)``)."""
        return self.model.encode_distribution(tokens)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Geometry latents ``[B, 16, T', h', w']`` -> tokens ``[B, 10240, 1 + 4(T'-1), 40, 40]``."""
        return self.model.decode(latents)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(tokens).mean)


# ----------------------------------------------------------------------------- VGGT tokens

def tokens_from_vggt(layers: Sequence[torch.Tensor | None], patch_start_idx: int, grid_hw: tuple[int, int],
                     layer_idx: Sequence[int] = VGGT_LAYERS) -> torch.Tensor:
    """The adapter's input from VGGT aggregator outputs (Gen3R ``batch_encode_latents``).

    Args:
        layers: the aggregator's per-layer outputs ``[B, F, P, 2048]`` (``P = patch_start_idx + h*w``);
            entries other than ``layer_idx`` and the last may be ``None``.
        patch_start_idx: special tokens before the patches (5 for VGGT).
        grid_hw: the patch grid ``(h, w)`` (40 x 40 at 560 x 560).
        layer_idx: which layers' patch tokens to use (in this channel order).

    Returns:
        ``[B, 5*2048, F, h, w]``: the four layers' patch tokens, then the last layer's camera token
        (index 0) repeated over the grid.
    """
    h, w = grid_hw
    picked = []
    for i in layer_idx:
        t = layers[i] if -len(layers) <= i < len(layers) else None
        if t is None:
            raise InputError(f"VGGT layer {i} was not kept; the geometry adapter needs layers {tuple(layer_idx)} "
                             "and the last one.", "Run the aggregator with keep_layers including them (or all).")
        picked.append(t)
    last = layers[-1]
    if last is None:
        raise InputError("The last VGGT layer was not kept; its camera token is part of the geometry tokens.",
                         "Run the aggregator with keep_layers including the last layer.")
    B, F, P, C = last.shape
    if P != patch_start_idx + h * w:
        raise InputError(f"VGGT tokens have {P} tokens per frame; a {h}x{w} grid with {patch_start_idx} special "
                         f"tokens needs {patch_start_idx + h * w}.", "Pass the grid the images were patchified to.")
    groups = [t[:, :, patch_start_idx:].reshape(B, F, h, w, C) for t in picked]
    groups.append(last[:, :, :1].reshape(B, F, 1, 1, C).expand(B, F, h, w, C))
    return torch.cat(groups, dim=-1).permute(0, 4, 1, 2, 3)


def vggt_token_groups(tokens: torch.Tensor, num_layers: int = len(VGGT_LAYERS),
                      special_tokens: int = VGGT_SPECIAL_TOKENS) -> list[torch.Tensor]:
    """Decoded adapter tokens -> VGGT head inputs (Gen3R ``convert_to_token_list``).

    ``tokens [B, (num_layers + 1) * C, F, h, w]`` are split into ``num_layers + 1`` groups of ``C``
    channels; the last group's spatial mean stands in for the camera and register tokens
    (``special_tokens`` copies), prepended to each of the first ``num_layers`` groups. Returns
    ``num_layers`` tensors ``[B, F, special_tokens + h*w, C]`` in layer order (4, 11, 17, 23). Place
    them at those indices (``as_aggregator_layers``) for heads that index a full layer list.
    """
    if tokens.ndim != 5 or tokens.shape[1] % (num_layers + 1):
        raise InputError(f"Adapter tokens have shape {tuple(tokens.shape)}; expected [B, {num_layers + 1}*C, F, h, w].",
                         "Pass the geometry adapter's decoded output.")
    x = tokens.permute(0, 2, 3, 4, 1)  # [B, F, h, w, 5C]
    B, F, h, w, D = x.shape
    C = D // (num_layers + 1)
    special = x[..., num_layers * C:].mean(dim=(2, 3)).unsqueeze(2).expand(B, F, special_tokens, C)
    return [torch.cat([special, x[..., i * C:(i + 1) * C].reshape(B, F, h * w, C)], dim=2) for i in range(num_layers)]


def as_aggregator_layers(groups: Sequence[torch.Tensor], depth: int = 24,
                         layer_idx: Sequence[int] = VGGT_LAYERS) -> list[torch.Tensor | None]:
    """A ``depth``-long layer list with ``groups`` at ``layer_idx`` and ``None`` elsewhere (the last
    index must be in ``layer_idx``: the camera head reads the last layer)."""
    if len(groups) != len(layer_idx):
        raise ValueError(f"{len(groups)} token groups for {len(layer_idx)} layer indices")
    out: list[torch.Tensor | None] = [None] * depth
    for i, g in zip(layer_idx, groups):
        out[i] = g
    return out


# ----------------------------------------------------------------------------- loading

def infer_adapter_config(state_dict: dict, what: str = "The geometry adapter file") -> GeometryAdapterConfig:
    """Constructor arguments from the shapes of a (prefix-free) adapter state dict."""
    try:
        stem = state_dict["encoder.init_block.resample.1.weight"]
        out = state_dict["decoder.out_block.resample.2.weight"]
        first = state_dict["encoder.conv1.weight"]
        z = state_dict["conv2.weight"]
    except KeyError as e:
        raise CheckpointError(f"{what} is not a Gen3R geometry adapter (no {e.args[0]}).",
                              "Pick the geo_adapter weights of JaceyH919/Gen3R.") from None
    input_dim, reduced = stem.shape[1], stem.shape[0]
    if reduced == 0 or input_dim % reduced or first.shape[0] % 4:
        raise CheckpointError(f"{what} has unexpected stem shapes {list(stem.shape)} / {list(first.shape)}.",
                              "The file is damaged or not a Gen3R geometry adapter.")
    return GeometryAdapterConfig(latent_channels=z.shape[0], hidden_dim=first.shape[0] // 4, input_dim=input_dim,
                                 output_dim=out.shape[0], resample_scale=input_dim // reduced)


def adapter_from_state_dict(state_dict: dict, config: GeometryAdapterConfig | None = None, *,
                            dtype: torch.dtype | None = None, device: str | torch.device = "cpu",
                            what: str = "The geometry adapter file") -> GeometryAdapter:
    """Build the adapter a state dict describes and adopt its tensors key for key (strict), in eval mode.

    Accepts ``model.``-prefixed keys (``GeometryAdapter.state_dict()``) and the prefix-free training
    save with its extra ``mean`` / ``std`` entries. ``config`` (e.g. ``GEN3R_GEOMETRY_ADAPTER``) is
    checked against the file when given.
    """
    from ..checkpoint_io import strict_load

    sd = dict(state_dict)
    extra = {k: sd.pop(k) for k in ("mean", "std", "model.mean", "model.std") if k in sd}
    if sd and all(k.startswith("model.") for k in sd):
        sd = {k[len("model."):]: v for k, v in sd.items()}
    for name, ref in (("mean", GEOMETRY_LATENTS_MEAN), ("std", GEOMETRY_LATENTS_STD)):
        v = extra.get(name, extra.get(f"model.{name}"))
        if v is not None and (v.numel() != len(ref)
                              or not torch.allclose(v.float().flatten(), torch.tensor(ref), atol=1e-5)):
            warnings.warn(f"{what} stores latent {name} values that differ from Gen3R's hard-coded ones; "
                          "like the official code, the hard-coded values are used.", stacklevel=2)
    found = infer_adapter_config(sd, what)
    if config is not None and found != config:
        raise CheckpointError(f"{what} holds a geometry adapter {found}, not the expected {config}.",
                              "Pick the geo_adapter weights that belong to this Gen3R release.")
    first = sd["encoder.conv1.weight"]
    dtype = dtype or (first.dtype if first.is_floating_point() else torch.float32)
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    with torch.device("meta"):
        adapter = GeometryAdapter(found)
    strict_load(adapter.model, sd, what="Gen3R geometry adapter", assign=True)
    return adapter.to(device).eval()


def load_geometry_adapter(path: str | Path, config: GeometryAdapterConfig | None = GEN3R_GEOMETRY_ADAPTER,
                          **kwargs) -> GeometryAdapter:
    """The adapter from a ``.safetensors`` (or safely unpickled) file."""
    from ..checkpoint_io import find_state_dict, load_file_any

    p = Path(path)
    sd = find_state_dict(load_file_any(p, what="Gen3R geometry adapter"), path=p, what="Gen3R geometry adapter")
    return adapter_from_state_dict(sd, config, what=f"The file {p.name}", **kwargs)
