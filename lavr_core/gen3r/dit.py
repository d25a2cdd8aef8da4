"""Gen3R's DiT: Wan2.1-Fun-V1.1-1.3B Control-Camera, fine-tuned on appearance|geometry latents.

What it adds to the shared Wan DiT (``lavr_core.wan.model.WanModel``, original key layout):

* ``control_adapter`` (VideoX-Fun ``SimpleAdapter``): a Plücker ray video ``[B, 24, F, 8h, 8w]``
  (6 channels x 4 frames per latent frame, see ``camera.py``) is pixel-unshuffled by 8, reduced by a
  stride-2 2x2 conv to the patch grid and refined by one residual block; the result is **added to
  the patch embeddings**.
* Inputs: the noisy latent ``x`` (16 channels) is concatenated on channels with the control latent
  ``y`` (16 + 4 mask = 20 channels) whenever ``y`` is given (36 = ``in_dim``), for the i2v and t2v
  variants alike; the text context is zero-padded to ``text_len`` inside the forward.
* The latent is the Wan-VAE (appearance) latent and the geometry-adapter latent side by side along
  **width** (``join_latents``); the RoPE width positions restart for the right half
  (``rope_apply_concatenated`` in the official code), so a token and its geometry twin share their
  (frame, row, column) position.

The released model is the i2v variant (CLIP image tokens through ``img_emb``); its blocks, head and
embeddings are Wan's own and are not duplicated here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError, InputError
from ..wan.config import WanConfig, infer_config
from ..wan.model import Grid, WanModel, pad_context, rope_tables

#: Pixel-unshuffle factor of the camera adapter: the Plücker video is at 8x the latent resolution.
CAMERA_UNSHUFFLE = 8


@dataclass(frozen=True)
class Gen3RDiTConfig(WanConfig):
    """A ``WanConfig`` plus VideoX-Fun's camera control adapter.

    Attributes:
        add_control_adapter: the ``control_adapter`` layers exist (Control-Camera models).
        in_dim_control_adapter: Plücker channels per latent frame (6 x 4 = 24).
    """

    add_control_adapter: bool = True
    in_dim_control_adapter: int = 24

    def describe(self) -> str:
        cam = f", camera adapter ({self.in_dim_control_adapter} ch)" if self.add_control_adapter else ""
        return f"Gen3R DiT ({super().describe()}{cam})"

    @classmethod
    def from_wan(cls, base: WanConfig, **overrides) -> "Gen3RDiTConfig":
        kw = {f.name: getattr(base, f.name) for f in fields(base) if f.name in cls.__dataclass_fields__}
        kw.update(overrides)
        return cls(**kw)


#: The released Gen3R DiT (``JaceyH919/Gen3R`` transformer): Wan2.1-Fun-V1.1-1.3B-Control-Camera, i2v,
#: with ``in_dim`` 36 (x 16 + control latent 16 + mask 4).
GEN3R_DIT_1_3B = Gen3RDiTConfig(dim=1536, in_dim=36, ffn_dim=8960, out_dim=16, num_heads=12, num_layers=30,
                                has_image_input=True, add_control_adapter=True, in_dim_control_adapter=24,
                                name="gen3r-dit-1.3b")


class _AdapterResidual(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class CameraAdapter(nn.Module):
    """Plücker video ``[B, C, F, H, W]`` -> features ``[B, dim, F, H/16, W/16]`` (key ``control_adapter.*``).

    Per frame: pixel-unshuffle by 8 (``C*64`` channels), a 2x2 stride-2 convolution (no padding) to
    ``dim``, and one residual block (3x3 conv, ReLU, 3x3 conv, plus the input).
    """

    def __init__(self, in_dim: int, dim: int, num_residual_blocks: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_dim * CAMERA_UNSHUFFLE ** 2, dim, kernel_size=2, stride=2)
        self.residual_blocks = nn.Sequential(*[_AdapterResidual(dim) for _ in range(num_residual_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * f, c, h, w)
        y = self.residual_blocks(self.conv(F.pixel_unshuffle(frames, CAMERA_UNSHUFFLE)))
        return y.unflatten(0, (b, f)).transpose(1, 2)


def rope_for_side_by_side_grid(tables, grid: Grid, device=None, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    """RoPE rotations ``[f*h*w, 1, head_dim/2]`` for a grid whose width holds two halves side by side.

    Column positions run ``0 .. w/2-1`` for the left half and again ``0 .. w/2-1`` for the right half
    (Gen3R's ``rope_apply_concatenated``); frame and row positions are the usual ones.
    """
    f, h, w = grid
    if w % 2:
        raise InputError(f"The side-by-side latent grid is {w} tokens wide, which does not split into two halves.",
                         "Appearance and geometry latents must have the same width.")
    half = w // 2
    tf, th, tw = tables
    for n, t, axis in ((f, tf, "frames"), (h, th, "rows"), (half, tw, "columns")):
        if n > t.shape[0]:
            raise InputError(f"The latent grid has {n} token {axis}; the RoPE table covers {t.shape[0]}.",
                             "Use fewer frames or a smaller resolution.")
    cols = torch.cat([tw[:half], tw[:half]], dim=0)
    rot = torch.cat([tf[:f].view(f, 1, 1, -1).expand(f, h, w, -1),
                     th[:h].view(1, h, 1, -1).expand(f, h, w, -1),
                     cols.view(1, 1, w, -1).expand(f, h, w, -1)], dim=-1)
    return rot.reshape(f * h * w, 1, -1).to(device=device, dtype=dtype)


def _version_of(t: torch.Tensor) -> int:
    """In-place modification counter; inference-mode tensors have none (-1)."""
    try:
        return t._version
    except RuntimeError:
        return -1


class Gen3RDiT(WanModel):
    """The Gen3R DiT. ``forward(x, timestep, context, y=..., clip_feature=..., y_camera=...)``.

    ``rope_layout`` chooses the width positions: ``"side_by_side"`` (default: Gen3R's latent is always
    appearance | geometry), ``"plain"`` (Wan's), or ``"official"`` (the official rule: side by side
    exactly when the token grid is not square, which for a 2:1-tall video would pick the plain one).
    """

    def __init__(self, config: Gen3RDiTConfig):
        if not isinstance(config, Gen3RDiTConfig):
            config = Gen3RDiTConfig.from_wan(config)
        super().__init__(config)
        if config.add_control_adapter:
            self.control_adapter = CameraAdapter(config.in_dim_control_adapter, config.dim)
        self.rope_layout = "side_by_side"
        self._side_rope_cache = None
        self._camera_cache = None

    def _side_by_side(self, grid: Grid) -> bool:
        if self.rope_layout == "official":
            return grid[1] != grid[2]
        if self.rope_layout not in ("side_by_side", "plain"):
            raise ValueError(f"unknown rope_layout {self.rope_layout!r}")
        return self.rope_layout == "side_by_side"

    def rope(self, grid: Grid, device) -> torch.Tensor:
        if not self._side_by_side(grid):
            return super().rope(grid, device)
        key = (tuple(grid), torch.device(device), self.rope_dtype)
        if self._side_rope_cache is None or self._side_rope_cache[0] != key:
            if self._rope_tables is None:
                self._rope_tables = rope_tables(self.config)
            self._side_rope_cache = (key, rope_for_side_by_side_grid(self._rope_tables, grid, device, self.rope_dtype))
        return self._side_rope_cache[1]

    def condition_tokens(self, tokens: torch.Tensor, grid: Grid, y_camera: torch.Tensor) -> torch.Tensor:
        f, h, w = grid
        pt, ph, pw = self.config.patch_size
        need = (f, h * ph * CAMERA_UNSHUFFLE, w * pw * CAMERA_UNSHUFFLE)
        c = self.config.in_dim_control_adapter
        if y_camera.ndim != 5 or y_camera.shape[1] != c or tuple(y_camera.shape[2:]) != need:
            raise InputError(f"The camera control has shape {tuple(y_camera.shape)}; for this latent it must be "
                             f"[batch, {c}, {need[0]}, {need[1]}, {need[2]}] (Plücker rays at the video's pixel "
                             "size, duplicated along width for appearance | geometry).",
                             "Build it with lavr_core.gen3r.camera.control_camera_latents from the video-rate "
                             "trajectory (4k+1 frames, one per video frame).")
        return tokens + self._camera_features(y_camera, tokens.dtype)

    def _camera_features(self, y_camera: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        # The camera control is the same tensor at every sampling step (and for both CFG branches),
        # and the adapter works on full-resolution ray maps: at inference its output is computed once.
        # The cache holds the tensor itself (so its memory cannot be reused by another) and the
        # versions of it and of the adapter's weights, so an in-place change or a new load re-runs it.
        if torch.is_grad_enabled():
            self._camera_cache = None
            return self.control_adapter(y_camera.to(dtype)).flatten(2).transpose(1, 2)
        versions = (_version_of(y_camera), dtype, *(_version_of(p) for p in self.control_adapter.parameters()))
        cached = self._camera_cache
        if cached is None or cached[0] is not y_camera or cached[1] != versions:
            feats = self.control_adapter(y_camera.to(dtype)).flatten(2).transpose(1, 2)
            self._camera_cache = cached = (y_camera, versions, feats)
        return cached[2]

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor, *,
                y: torch.Tensor | None = None, clip_feature: torch.Tensor | None = None,
                y_camera: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity ``[B, out_dim, F, H, W]`` for the side-by-side latent.

        Args:
            x: noisy latents ``[B, 16, F, H, 2W]`` (appearance | geometry, ``join_latents``).
            timestep: ``[B]`` or ``[1]`` in 0..1000.
            context: umT5 features ``[B, Lc, text_dim]``, zero-padded here to ``text_len``.
            y: control latents + mask ``[B, 20, F, H, 2W]`` (``in_dim - 16`` channels).
            clip_feature: i2v only: CLIP image features ``[B, 257, 1280]``.
            y_camera: Plücker control ``[B, 24, F, 8H, 16W]`` or ``None`` (no camera, e.g. "free").
        """
        c = self.config
        if y is not None and x.shape[1] + y.shape[1] != c.in_dim:
            raise InputError(f"Latents ({x.shape[1]} channels) and control latents ({y.shape[1]}) give "
                             f"{x.shape[1] + y.shape[1]} channels; this DiT takes {c.in_dim}.",
                             "Build the control latents as 16 VAE channels + 4 mask channels.")
        if y is not None and (y.shape[0], *y.shape[2:]) != (x.shape[0], *x.shape[2:]):
            raise InputError(f"Control latents {tuple(y.shape)} do not match the latents {tuple(x.shape)}.",
                             "Encode the control frames at the video's size and frame count.")
        if y_camera is not None and not c.add_control_adapter:
            raise InputError("This DiT has no camera adapter, but a camera control was given.",
                             "Load the Gen3R (Control-Camera) weights, or leave the camera out.")
        context = pad_context(context, c.text_len)
        if not c.has_image_input and y is not None:
            x, y = torch.cat([x, y.to(x.dtype)], dim=1), None
        return super().forward(x, timestep, context, clip_feature=clip_feature, y=y, token_cond=y_camera)


# ----------------------------------------------------------------------------- latents

def join_latents(appearance: torch.Tensor, geometry: torch.Tensor) -> torch.Tensor:
    """``[B, C, F, H, W]`` x2 -> ``[B, C, F, H, 2W]``: appearance on the left, geometry on the right."""
    if appearance.shape != geometry.shape:
        raise InputError(f"Appearance latents {tuple(appearance.shape)} and geometry latents "
                         f"{tuple(geometry.shape)} differ in shape.",
                         "Both must come from the same frames (Wan VAE and geometry adapter at 560x560).")
    return torch.cat([appearance, geometry.to(appearance.dtype)], dim=-1)


def split_latents(latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of ``join_latents``: ``(appearance, geometry)``."""
    if latents.shape[-1] % 2:
        raise InputError(f"Side-by-side latents are {latents.shape[-1]} wide, an odd number.",
                         "Pass Gen3R's appearance | geometry latents.")
    return latents.chunk(2, dim=-1)


# ----------------------------------------------------------------------------- loading

#: Config fields a state dict's shapes decide (the others, e.g. ``text_len``, come from the model's config).
_SHAPE_FIELDS = ("dim", "in_dim", "ffn_dim", "out_dim", "num_layers", "text_dim", "freq_dim", "patch_size",
                 "has_image_input", "image_dim", "add_control_adapter", "in_dim_control_adapter")


def _noun(what: str) -> str:
    return what[4:] if what.lower().startswith("the ") else what


def infer_gen3r_config(state_dict: dict, num_heads: int | None = None,
                       what: str = "The Gen3R DiT file") -> Gen3RDiTConfig:
    """The config whose state dict has these names and shapes (original Wan layout + ``control_adapter``).

    Heads are not visible in shapes: ``num_heads`` defaults to the released value for the width."""
    base = infer_config({k: v for k, v in state_dict.items() if not k.startswith("control_adapter.")},
                        num_heads=num_heads, what=_noun(what))
    conv = state_dict.get("control_adapter.conv.weight")
    if conv is None:
        return Gen3RDiTConfig.from_wan(base, add_control_adapter=False)
    shape = tuple(conv.shape)
    if shape[1] % CAMERA_UNSHUFFLE ** 2:
        raise CheckpointError(f"{what} has a camera adapter of {shape[1]} input channels, not a multiple of "
                              f"{CAMERA_UNSHUFFLE ** 2}.", "The file is damaged or not a Wan-Fun Control-Camera model.")
    config = Gen3RDiTConfig.from_wan(base, add_control_adapter=True,
                                     in_dim_control_adapter=shape[1] // CAMERA_UNSHUFFLE ** 2)
    return GEN3R_DIT_1_3B if config == GEN3R_DIT_1_3B else config


def dit_from_state_dict(state_dict: dict, expected: Gen3RDiTConfig | None = None, *, dtype: torch.dtype | None = None,
                        device: str | torch.device = "cpu", what: str = "The Gen3R DiT file") -> Gen3RDiT:
    """Build the DiT a state dict describes and adopt its tensors key for key (strict), in eval mode.

    ``expected`` (e.g. ``GEN3R_DIT_1_3B``) makes a file of another model a ``CheckpointError`` that says
    so; the model then uses ``expected`` (its heads, ``text_len`` ... which shapes cannot tell).
    """
    from ..checkpoint_io import strict_load, strip_prefix

    sd = strip_prefix(state_dict, ("model.diffusion_model.", "diffusion_model.", "transformer."))
    if "patch_embedding.weight" not in sd:
        raise CheckpointError(f"{what} is not a Wan/Gen3R DiT in the original key layout (no patch_embedding.weight).",
                              "Pick the transformer of JaceyH919/Gen3R (diffusion_pytorch_model.safetensors).")
    heads = None
    if expected is not None:  # another width is an error below anyway: heads only need to divide it
        heads = expected.num_heads if sd["patch_embedding.weight"].shape[0] == expected.dim else 1
    found = infer_gen3r_config(sd, num_heads=heads, what=what)
    config = found
    if expected is not None:
        diffs = [f"{n} {getattr(found, n)} (need {getattr(expected, n)})" for n in _SHAPE_FIELDS
                 if getattr(found, n) != getattr(expected, n) and (n != "image_dim" or found.has_image_input)]
        if diffs:
            hint = ("Pick the transformer of JaceyH919/Gen3R (diffusion_pytorch_model.safetensors)."
                    if expected == GEN3R_DIT_1_3B else "Pick the DiT file that matches this model.")
            raise CheckpointError(f"{what} holds {found.describe()}, not {expected.describe()}: {', '.join(diffs)}.",
                                  hint)
        config = expected
    ref = sd["patch_embedding.weight"]
    dtype = dtype or (ref.dtype if ref.is_floating_point() else torch.bfloat16)
    sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    with torch.device("meta"):
        model = Gen3RDiT(config)
    strict_load(model, sd, what=config.describe(), assign=True)
    return model.to(device).eval()


def load_gen3r_dit(path: str | Path, expected: Gen3RDiTConfig | None = GEN3R_DIT_1_3B, **kwargs) -> Gen3RDiT:
    """The DiT from one ``.safetensors`` file, or diffusers' transformer folder (``diffusion_pytorch_model*``
    shards are merged)."""
    from ..checkpoint_io import find_state_dict, load_file_any

    p = Path(path)
    files = [p]
    if p.is_dir():  # diffusers' transformer folder: one file or numbered shards
        files = sorted(p.glob("diffusion_pytorch_model*.safetensors"))
        if not files:
            raise CheckpointError(f"The folder {p} holds no diffusion_pytorch_model*.safetensors.",
                                  "Point to Gen3R's transformer folder or its diffusion_pytorch_model.safetensors.")
    sd: dict = {}
    for f in files:
        sd.update(find_state_dict(load_file_any(f, what="Gen3R DiT"), path=f, what="Gen3R DiT"))
    return dit_from_state_dict(sd, expected, what=f"The file {p.name}", **kwargs)
