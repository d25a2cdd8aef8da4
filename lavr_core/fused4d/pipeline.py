"""The Fused 4D sampler: a V x T grid of latent frames denoised jointly by a Wan DiT whose
self-attention is the fused view-time attention, decoded to V synchronized videos.

Steps (``generate``): encode the references into their cells (``reference``), sample the whole grid
with the shared rectified-flow loop (``lavr_core.wan.sampling.flow_sample``: seeded CPU noise,
Wan's shifted schedule, optional CFG, timestep rounding) where every model call gets the fused
attention and the (v*T_max + t, row, column) RoPE positions through ``WanModel.forward``'s hooks,
then decode every view row as its own video (``layout``'s frame mapping). No new parameters: the
base Wan T2V weights run as they are; a self-attention fine-tune or LoRA is applied around the run
(``weights.apply_self_attention``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..attention import BACKENDS
from ..camera.trajectory import CameraTrajectory
from ..errors import InputError
from ..grid import GridLayout
from ..wan.sampling import SamplerSettings, StepCallback, flow_sample, initial_noise
from .layout import GridTokens, latent_times
from .reference import REFERENCE_MODES, GridReference

#: ``"full"`` runs Wan's own unmasked attention over the grid (for comparison; O(N^2) in V*T).
ATTENTION_CHOICES = tuple(BACKENDS) + ("full",)


@dataclass(frozen=True)
class Fused4DSettings:
    """Grid and attention settings (sampling settings are ``SamplerSettings``).

    Attributes:
        views: V, viewpoints (grid rows), >= 1.
        frames: video frames per view, ``4k+1`` (latent frames per view ``T = k+1``).
        t_max: RoPE frame positions per view (``None``: ``T``, as a plain V*T-frame video).
        attention: fused-attention backend (``auto``/``flex``/``dense``/``naive``) or ``full``.
        reference_mode: ``"add"`` (paper) or ``"replace"``; see ``reference``.
        fps: frame rate written into the output layout.
    """

    views: int
    frames: int
    t_max: int | None = None
    attention: str = "auto"
    reference_mode: str = "add"
    fps: float = 16.0

    def __post_init__(self):
        if isinstance(self.views, bool) or not isinstance(self.views, int) or self.views < 1:
            raise InputError(f"views={self.views!r} must be a whole number >= 1.", "Use e.g. 4 or 8 views.")
        latent_times(self.frames)
        if self.attention not in ATTENTION_CHOICES:
            raise InputError(f"Unknown attention {self.attention!r}.", f"Use one of {', '.join(ATTENTION_CHOICES)}.")
        if self.reference_mode not in REFERENCE_MODES:
            raise InputError(f"Unknown reference mode {self.reference_mode!r}.",
                             f"Use one of {', '.join(REFERENCE_MODES)}.")
        if not (self.fps > 0):
            raise InputError(f"fps={self.fps!r} must be positive.", "Use the reference video's frame rate.")

    @property
    def times(self) -> int:
        return latent_times(self.frames)


def check_video_dit(dit) -> None:
    """Refuse DiTs the grid cannot run: I2V (needs per-frame image conditioning), other patch sizes."""
    config = getattr(dit, "config", None)
    if config is None or not hasattr(dit, "patchify"):
        raise InputError("The Fused 4D sampler needs a Wan2.1 DiT.", "Load a Wan2.1 T2V model with Load Video Model.")
    if config.has_image_input or config.in_dim != config.out_dim:
        raise InputError(f"{config.describe()} takes image conditioning channels; the Fused 4D sampler runs a "
                         "text-to-video Wan DiT.", "Load Wan2.1-T2V-1.3B (or ReCamMaster, its fine-tune).")


def grid_tokens(dit, settings: Fused4DSettings, height: int, width: int) -> GridTokens:
    """The token layout for ``height x width`` latent frames (pixels / 8)."""
    return GridTokens(settings.views, settings.times, height, width, tuple(dit.config.patch_size), settings.t_max)


def velocity_function(dit, grid: GridTokens, context: torch.Tensor, negative: torch.Tensor | None,
                      noise: torch.Tensor, reference: GridReference | None, attention: str = "auto"):
    """``velocity_fn(x, t, positive)`` for ``flow_sample`` over the packed grid ``[1, C, V*T, H, W]``.

    Known cells get the exact velocity ``noise - reference`` (so they stay on their straight path);
    in ``"add"`` mode the clean reference is added to the model input at those cells.
    """
    positions = grid.rope_positions()
    attn_fn = None if attention == "full" else grid.attention_fn(attention)
    if reference is not None and reference.count:
        ref = reference.latents.to(noise)
        known = reference.mask(grid).to(noise.device)
        exact = noise - ref
        addend = ref * known if reference.mode == "add" else None
    else:
        known = None

    def velocity(x: torch.Tensor, t: torch.Tensor, positive: bool) -> torch.Tensor:
        ctx = context if positive else negative
        x_in = x if known is None or addend is None else x + addend
        v = dit(x_in, t, ctx, rope_positions=positions, self_attn_fn=attn_fn).float()
        return v if known is None else torch.where(known, exact, v)

    return velocity


@torch.no_grad()
def sample_grid(dit, grid: GridTokens, context: torch.Tensor, settings: SamplerSettings, *,
                negative: torch.Tensor | None = None, reference: GridReference | None = None,
                attention: str = "auto", channels: int | None = None,
                callback: StepCallback | None = None) -> torch.Tensor:
    """Denoise the whole grid; returns clean latents ``[1, C, V*T, H, W]`` (float32, on the DiT's device).

    ``context`` / ``negative``: padded umT5 features ``[1, text_len, text_dim]``; ``negative`` is needed
    when ``settings.cfg > 1`` (an all-zero context stands for "no negative prompt").
    """
    if settings.denoise < 1.0:
        raise InputError("The Fused 4D sampler generates from noise (denoise 1.0).", "Set denoise to 1.0.")
    if settings.cfg != 1.0 and negative is None:
        raise InputError("CFG above 1 needs a negative conditioning.", "Connect a negative prompt or set cfg to 1.")
    device = next(dit.parameters()).device
    dtype = next(dit.parameters()).dtype
    context = context.to(device=device, dtype=dtype)
    negative = None if negative is None else negative.to(device=device, dtype=dtype)
    c = channels or dit.config.out_dim
    shape = (1, c, grid.frames, grid.height, grid.width)
    noise = initial_noise(shape, settings.seed, device=device)
    if reference is not None and tuple(reference.latents.shape) != shape:
        raise InputError(f"The reference latents {tuple(reference.latents.shape)} do not fit the grid {shape}.",
                         "Build the reference for this grid (same views, frames and size).")
    fn = velocity_function(dit, grid, context, negative, noise, reference, attention)
    out = flow_sample(fn, noise, settings, callback=callback)
    if reference is not None and reference.count:
        # The known cells already end at the reference (exact straight path); this removes rounding.
        out = torch.where(reference.mask(grid).to(device), reference.latents.to(out), out)
    return out


@torch.no_grad()
def decode_grid(vae, grid: GridTokens, latents: torch.Tensor,
                on_view: Callable[[int], None] | None = None) -> torch.Tensor:
    """Packed latents -> IMAGE ``[V*F, H*8, W*8, 3]`` in [0, 1], view-major (each row decoded as a video)."""
    rows = grid.unpack(latents)[0]
    device = next(vae.parameters()).device
    views = []
    for v in range(grid.views):
        video = vae.decode(rows[v][None].to(device))[0]  # [3, F, H, W] in [-1, 1]
        views.append(video.float().permute(1, 2, 3, 0).add(1).mul(0.5).clamp(0, 1).cpu())
        if on_view is not None:
            on_view(v)
    return torch.cat(views, dim=0)


@dataclass
class Fused4DResult:
    """What ``generate`` returns: frames ``[V*F, H, W, 3]``, their ``GridLayout`` and the latents."""

    images: torch.Tensor
    layout: GridLayout
    latents: torch.Tensor
    info: dict = field(default_factory=dict)


def view_cameras_for(trajectory: CameraTrajectory | None, views: int, sweep_frames: int | None,
                     width: int, height: int) -> CameraTrajectory | None:
    """One camera per view from a trajectory of ``views`` poses, or of one pose per freeze-time frame
    (then the same evenly spread frames the sweep reference uses)."""
    if trajectory is None:
        return None
    from .reference import pick_views

    n = len(trajectory)
    if n == views:
        cams = trajectory
    elif sweep_frames is not None and n == sweep_frames:
        cams = trajectory.subset(pick_views(n, views))
    else:
        raise InputError(f"The view trajectory has {n} cameras for {views} views"
                         + (f" (and {sweep_frames} freeze-time frames)." if sweep_frames else "."),
                         "Give one camera per view, or one per frame of the freeze-time reference.")
    if (cams.width, cams.height) != (width, height):
        cams = cams.with_image_size(width, height)
    return cams


def generate(dit, vae, context: torch.Tensor, settings: Fused4DSettings, sampler: SamplerSettings, *,
             negative: torch.Tensor | None = None, fixed_view: torch.Tensor | None = None,
             freeze_time: torch.Tensor | None = None, size: tuple[int, int] | None = None,
             view_trajectory: CameraTrajectory | None = None, callback: StepCallback | None = None,
             on_view: Callable[[int], None] | None = None, place=None, weights: dict | None = None) -> Fused4DResult:
    """References (IMAGE, optional) + prompt -> the V x T grid as IMAGE frames and a ``GridLayout``.

    Args:
        dit / vae: a Wan2.1 T2V DiT and the Wan VAE, on their run device.
        context / negative: padded umT5 features (``lavr_core.wan.conditioning.text_context``).
        fixed_view: IMAGE ``[>=F, H, W, 3]``: view 0's video (grid row 0); its first ``F`` frames are used.
        freeze_time: IMAGE ``[>=V, H, W, 3]``: a sweep over the views at time 0 (grid column 0); ``V``
            evenly spread frames are used.
        size: ``(height, width)`` in pixels when no reference gives it.
        view_trajectory: cameras of the views (``V`` poses, or one per freeze-time frame), recorded
            in the layout for VGGT Gaussian Decode.
        place: ``place(part)`` for ``part in ("dit", "vae")``, a context manager yielding that module on
            its run device (ComfyUI moves one at a time); default: use ``dit``/``vae`` where they are.
        weights: self-attention updates (``weights.resolve_updates``) applied while the DiT samples.
    """
    from .weights import apply_self_attention
    from .reference import build_reference, encode_fixed_view, encode_freeze_time

    check_video_dit(dit)
    if place is None:
        parts = {"dit": dit, "vae": vae}

        @contextlib.contextmanager
        def place(part):
            yield parts[part]
    refs = [r for r in (fixed_view, freeze_time) if r is not None]
    if refs:
        hw = {tuple(r.shape[1:3]) for r in refs}
        if len(hw) != 1:
            raise InputError(f"The references have different sizes {sorted(hw)}.",
                             "Resize both references to one size (divisible by 16).")
        height, width = hw.pop()
    elif size is not None:
        height, width = size
    else:
        raise InputError("No reference and no size given.", "Connect a reference video or set the size.")
    scale = 8  # Wan2.1 VAE: 8x spatial
    if height % 16 or width % 16:
        raise InputError(f"Size {width}x{height} is not divisible by 16.", "Use e.g. 832x480 or a multiple of 16.")
    grid = grid_tokens(dit, settings, height // scale, width // scale)
    latent_channels = dit.config.out_dim
    ref = None
    if refs:
        with place("vae") as vae_run:
            row = encode_fixed_view(vae_run, fixed_view, settings.frames) if fixed_view is not None else None
            col = encode_freeze_time(vae_run, freeze_time, settings.views) if freeze_time is not None else None
        ref = build_reference(grid, latent_channels, row, col, settings.reference_mode)
    with place("dit") as dit_run, apply_self_attention(dit_run, weights or {}):
        latents = sample_grid(dit_run, grid, context, sampler, negative=negative, reference=ref,
                              attention=settings.attention, callback=callback).cpu()
    with place("vae") as vae_run:
        images = decode_grid(vae_run, grid, latents, on_view)
    cams = view_cameras_for(view_trajectory, settings.views,
                            None if freeze_time is None else int(freeze_time.shape[0]), width, height)
    meta = {"source": "fused4d", "reference": ref.describe() if ref is not None else "none",
            "reference_mode": settings.reference_mode, "latent_times": grid.times,
            "t_max": grid.t_max or grid.times, "attention": settings.attention,
            "density": round(grid.density, 6)}
    layout = GridLayout(views=settings.views, times=grid.video_frames, fps=float(settings.fps),
                        view_cameras=cams, meta=meta)
    return Fused4DResult(images, layout, latents, dict(meta, tokens=grid.num_tokens))
