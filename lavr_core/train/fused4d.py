"""Fine-tune a Wan DiT's self-attention (or a LoRA on it) for the Fused 4D grid.

``python -m lavr_core.train fused4d --dit wan2.1_t2v_1.3B.safetensors --vae wan_2.1_vae.safetensors
--out fused4d_lora.safetensors [--lora-rank 16] [options]``

What is trained: only ``blocks.N.self_attn.*`` (q, k, v, o and the q/k RMS norms) or, with
``--lora-rank``, low-rank updates of q, k, v, o. No parameter is added to the model: the fused
attention and the (v*T_max + t, row, column) RoPE positions change how the existing layers are
used, as in 4Real-Video-V2.

Data (``data_homography``): each training grid is one ordinary video seen through V random
homographies (synchronized fake views), or, with probability ``--static-fraction``, one image
duplicated over time and warped (a static scene). Clips are folders of frame images (``--videos``,
one sub-folder per clip) or, without it, procedural clips. Every view row is encoded by the Wan VAE
as its own video (``lavr_core.fused4d.layout``); the grids are encoded once before training.

Loss: rectified flow on the packed grid, as the sampler runs it (``lavr_core.fused4d.reference``):
``x_sigma = (1 - sigma) x0 + sigma * noise`` with ``sigma`` uniform then shifted by ``--shift``;
the reference cells (row 0 and/or column 0, ``--reference``) are known, in ``add`` mode their clean
latents are added to the input; the model predicts ``noise - x0`` and the mean squared error is
taken over the generated cells only. The held-out loss is measured on ``--val-grids`` grids with
fixed noise, sigma and reference choice, before training and after; the output file's metadata
records both.

Output: one ``.safetensors`` (written atomically) that the Fused 4D Sampler node loads: the
self-attention tensors (fine-tune) or ``lora_A``/``lora_B``/``alpha`` per projection (LoRA).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import InputError
from ..fileio import atomic_writer
from .common import pick_device
from ..fused4d.layout import GridTokens, latent_times
from ..fused4d.reference import REFERENCE_MODES
from ..fused4d.weights import FORMAT, attach_lora, lora_state_dict, self_attention_state_dict
from ..wan.scheduler import shift_sigmas
from .data_homography import HomographyGrids

REFERENCE_CHOICES = ("row", "column", "both", "random")


@dataclass
class Fused4DTrainOptions:
    out: str
    dit: str | None = None
    vae: str | None = None
    tiny: bool = False
    context: str | None = None
    lora_rank: int = 0
    lora_alpha: float | None = None
    views: int = 4
    frames: int = 9
    height: int = 256
    width: int = 256
    t_max: int | None = None
    steps: int = 1000
    lr: float = 1e-5
    train_grids: int = 64
    val_grids: int = 8
    videos: str | None = None
    static_fraction: float = 0.25
    strength: float = 0.15
    reference: str = "random"
    reference_mode: str = "add"
    attention: str = "auto"
    shift: float = 5.0
    seed: int = 0
    device: str = "auto"
    gradient_checkpointing: bool = False
    log_every: int = 10

    def __post_init__(self):
        latent_times(self.frames)
        if self.reference not in REFERENCE_CHOICES:
            raise InputError(f"Unknown reference {self.reference!r}.", f"Use one of {', '.join(REFERENCE_CHOICES)}.")
        if self.reference_mode not in REFERENCE_MODES:
            raise InputError(f"Unknown reference mode {self.reference_mode!r}.", f"Use {', '.join(REFERENCE_MODES)}.")
        if self.views < 2:
            raise InputError("Training the fused grid needs at least 2 views.", "Use --views 2 or more.")
        if self.height % 16 or self.width % 16:
            raise InputError(f"Size {self.width}x{self.height} is not divisible by 16.", "Use e.g. 256x256.")
        if not self.tiny and not (self.dit and self.vae):
            raise InputError("Training needs --dit and --vae (or --tiny for a random tiny smoke run).",
                             "Give the Wan2.1 T2V DiT and the Wan VAE files.")
        if self.steps < 0 or self.train_grids < 1 or self.val_grids < 1:
            raise InputError("steps must be >= 0 and train/val grids >= 1.", "Check --steps/--train-grids/--val-grids.")


@dataclass
class Fused4DTrainResult:
    val_loss_before: float
    val_loss_after: float
    steps: int
    trainable: int
    out: Path


# ----------------------------------------------------------------------------- models and data

def tiny_models(seed: int = 0):
    """Random tiny Wan T2V DiT (``TINY`` without camera layers) and a matching 4-channel VAE (smoke runs)."""
    from ..wan.config import TINY
    from ..wan.model import WanModel
    from ..wan.vae import WanVAE, WanVAEConfig

    torch.manual_seed(seed)
    dit = WanModel(TINY.with_camera(False))
    vae = WanVAE(WanVAEConfig(dim=8, z_dim=TINY.in_dim, latents_mean=(0.0,) * TINY.in_dim,
                              latents_std=(1.0,) * TINY.in_dim, name="tiny"))
    return dit.eval(), vae.eval()


def _load_models(opts: Fused4DTrainOptions, device: torch.device):
    if opts.tiny:
        dit, vae = tiny_models(opts.seed)
    else:
        from ..wan.loading import load_wan_model
        from ..wan.vae import load_wan_vae

        dit = load_wan_model(opts.dit, dtype=torch.float32)
        vae = load_wan_vae(opts.vae, dtype=torch.float32)
    if dit.config.has_image_input:
        raise InputError("The Fused 4D fine-tune runs a text-to-video Wan DiT.", "Give Wan2.1-T2V-1.3B.")
    return dit.to(device), vae.to(device)


def _load_context(opts: Fused4DTrainOptions, dit, device) -> torch.Tensor:
    from ..wan.conditioning import empty_context, text_context

    if opts.context is None:
        return empty_context(1, dit.config.text_dim, dit.config.text_len, device=device)
    from ..checkpoint_io import load_safetensors

    sd = load_safetensors(opts.context, what="text context")
    if "context" not in sd:
        raise InputError(f"{opts.context} has no 'context' tensor.", "Save umT5 features [tokens, 4096] as 'context'.")
    return text_context(sd["context"], dit.config.text_dim, text_len=dit.config.text_len, device=device)


@torch.no_grad()
def encode_grid(vae, grid_px: torch.Tensor, device) -> torch.Tensor:
    """``[V, F, 3, H, W]`` in [0, 1] -> packed latents ``[C, V*T, H/8, W/8]`` (each view its own video)."""
    rows = [vae.encode(row.permute(1, 0, 2, 3)[None].mul(2).sub(1).to(device))[0] for row in grid_px]
    return torch.cat(rows, dim=1).float()


def reference_cells(views: int, times: int, choice: str, generator: torch.Generator | None) -> torch.Tensor:
    """``[V, T]`` bool known cells: row 0, column 0 or both (``random``: one of the three)."""
    if choice == "random":
        choice = ("row", "column", "both")[int(torch.randint(3, (1,), generator=generator))]
    known = torch.zeros(views, times, dtype=torch.bool)
    if choice in ("row", "both"):
        known[0] = True
    if choice in ("column", "both"):
        known[:, 0] = True
    return known


def flow_loss(dit, grid: GridTokens, x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor,
              known: torch.Tensor, context: torch.Tensor, mode: str, attn_fn, positions) -> torch.Tensor:
    """Rectified-flow MSE over the generated cells of a batch of packed grids ``[B, C, V*T, H, W]``.

    ``sigma [B]``, ``known [B, V, T]``. The known cells get the same input the sampler gives them.
    """
    s = sigma.view(-1, 1, 1, 1, 1).to(x0)
    x_t = (1 - s) * x0 + s * noise
    cell = known.reshape(known.shape[0], 1, grid.frames, 1, 1).to(x0.device)
    if mode == "add":
        x_t = x_t + x0 * cell
    pred = dit(x_t, sigma.to(x0) * 1000, context.expand(x0.shape[0], -1, -1),
               rope_positions=positions, self_attn_fn=attn_fn).float()
    err = (pred - (noise - x0)).square() * (~cell)
    return err.sum() / ((~cell).sum() * x0.shape[1] * x0.shape[3] * x0.shape[4]).clamp(min=1)


# ----------------------------------------------------------------------------- training

def _trainable(dit, opts: Fused4DTrainOptions) -> list[torch.nn.Parameter]:
    for p in dit.parameters():
        p.requires_grad_(False)
    if opts.lora_rank > 0:
        return attach_lora(dit, opts.lora_rank, opts.lora_alpha)
    params = [p for block in dit.blocks for p in block.self_attn.parameters()]
    for p in params:
        p.requires_grad_(True)
    return params


def train(opts: Fused4DTrainOptions, models=None, log: Callable[[str], None] = print) -> Fused4DTrainResult:
    """Run the fine-tune; ``models`` = ``(dit, vae)`` overrides loading (tests)."""
    device = pick_device(opts.device)
    dit, vae = models if models is not None else _load_models(opts, device)
    dit.to(device)
    vae.to(device)
    gen = torch.Generator().manual_seed(opts.seed)
    folders = None
    if opts.videos:
        root = Path(opts.videos)
        folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        if not folders:
            raise InputError(f"{root} has no clip folders.", "Put one folder of frame images per clip in --videos.")
    source = HomographyGrids(opts.views, opts.frames, opts.height, opts.width, folders,
                             opts.static_fraction, opts.strength)
    t0 = time.time()
    train_set = [encode_grid(vae, source.sample(gen), device) for _ in range(opts.train_grids)]
    val_set = [encode_grid(vae, source.sample(gen), device) for _ in range(opts.val_grids)]
    log(f"encoded {len(train_set)} training and {len(val_set)} held-out grids in {time.time() - t0:.1f}s")
    c, _, h, w = train_set[0].shape
    grid = GridTokens(opts.views, latent_times(opts.frames), h, w, tuple(dit.config.patch_size), opts.t_max)
    positions = grid.rope_positions()
    attn_fn = grid.attention_fn(opts.attention)
    context = _load_context(opts, dit, device)
    # Fixed held-out draws: the same noise, sigma and references before and after training.
    val_gen = torch.Generator().manual_seed(opts.seed + 1)
    val_draws = [(torch.randn(1, c, grid.frames, h, w, generator=val_gen),
                  shift_sigmas(torch.rand(1, generator=val_gen), opts.shift).clamp(1e-3, 1.0),
                  reference_cells(grid.views, grid.times, opts.reference, val_gen)[None]) for _ in val_set]

    def evaluate() -> float:
        dit.eval()
        with torch.no_grad():
            losses = [flow_loss(dit, grid, x0[None], n.to(device), s, k, context, opts.reference_mode,
                                attn_fn, positions).item() for x0, (n, s, k) in zip(val_set, val_draws)]
        return sum(losses) / len(losses)

    params = _trainable(dit, opts)
    dit.gradient_checkpointing = opts.gradient_checkpointing
    before = evaluate()
    log(json.dumps({"step": 0, "val_loss": before}))
    opt = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)
    for step in range(1, opts.steps + 1):
        dit.train()
        x0 = train_set[int(torch.randint(len(train_set), (1,), generator=gen))][None]
        noise = torch.randn(x0.shape, generator=gen).to(device)
        sigma = shift_sigmas(torch.rand(1, generator=gen), opts.shift).clamp(1e-3, 1.0)
        known = reference_cells(grid.views, grid.times, opts.reference, gen)[None]
        loss = flow_loss(dit, grid, x0, noise, sigma, known, context, opts.reference_mode, attn_fn, positions)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if not math.isfinite(loss.item()):
            raise InputError(f"The loss became {loss.item()} at step {step}.", "Lower --lr.")
        if step % opts.log_every == 0 or step == opts.steps:
            log(json.dumps({"step": step, "loss": round(loss.item(), 6)}))
    after = evaluate()
    log(json.dumps({"step": opts.steps, "val_loss": after, "val_loss_before": before}))
    sd = lora_state_dict(dit) if opts.lora_rank > 0 else self_attention_state_dict(dit)
    meta = {"format": FORMAT, "kind": "lora" if opts.lora_rank > 0 else "self_attention",
            "base": dit.config.name if dit.config.name != "custom" else dit.config.describe(),
            "val_loss_before": f"{before:.6g}", "val_loss_after": f"{after:.6g}",
            "options": json.dumps({k: v for k, v in asdict(opts).items() if k != "out"}, default=str)}
    out = Path(opts.out)
    if out.suffix != ".safetensors":
        out = out.with_suffix(".safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save

    with atomic_writer(out, "wb") as f:
        f.write(save(sd, metadata=meta))
    log(f"wrote {out} ({len(sd)} tensors)")
    return Fused4DTrainResult(before, after, opts.steps, sum(p.numel() for p in params), out)


# ----------------------------------------------------------------------------- CLI

def add_arguments(ap: argparse.ArgumentParser) -> None:
    d = Fused4DTrainOptions(out="", tiny=True)  # defaults only
    ap.add_argument("--out", required=True, help="output .safetensors (fine-tune or LoRA)")
    ap.add_argument("--dit", help="Wan2.1 T2V DiT file (ComfyUI models/diffusion_models)")
    ap.add_argument("--vae", help="Wan2.1 VAE file (wan_2.1_vae.safetensors)")
    ap.add_argument("--tiny", action="store_true", help="random tiny DiT + VAE (CPU smoke run; no files)")
    ap.add_argument("--context", help="safetensors with 'context' umT5 features [tokens, 4096]; default: empty prompt")
    ap.add_argument("--lora-rank", type=int, default=0,
                    help="train a LoRA of this rank on q/k/v/o (0: full self-attention)")
    ap.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (default: the rank)")
    ap.add_argument("--views", type=int, default=d.views)
    ap.add_argument("--frames", type=int, default=d.frames, help="video frames per view (4k+1)")
    ap.add_argument("--height", type=int, default=d.height)
    ap.add_argument("--width", type=int, default=d.width)
    ap.add_argument("--t-max", type=int, default=None, help="RoPE frame positions per view (default: latent frames)")
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--train-grids", type=int, default=d.train_grids)
    ap.add_argument("--val-grids", type=int, default=d.val_grids)
    ap.add_argument("--videos", help="folder of clip folders (frame images); default: procedural clips")
    ap.add_argument("--static-fraction", type=float, default=d.static_fraction,
                    help="share of static scenes (one image duplicated over time)")
    ap.add_argument("--strength", type=float, default=d.strength, help="homography corner displacement")
    ap.add_argument("--reference", choices=REFERENCE_CHOICES, default=d.reference)
    ap.add_argument("--reference-mode", choices=REFERENCE_MODES, default=d.reference_mode)
    ap.add_argument("--attention", default=d.attention,
                    help="fused attention backend (auto: flex on CUDA, dense on CPU)")
    ap.add_argument("--shift", type=float, default=d.shift, help="sigma shift of the training noise levels")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--device", default=d.device)
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--log-every", type=int, default=d.log_every)


def main(args: argparse.Namespace) -> int:
    fields = Fused4DTrainOptions.__dataclass_fields__
    opts = Fused4DTrainOptions(**{k: v for k, v in vars(args).items() if k in fields})
    res = train(opts)
    print(json.dumps({"val_loss_before": res.val_loss_before, "val_loss_after": res.val_loss_after,
                      "trainable_parameters": res.trainable, "out": str(res.out)}))
    return 0
