"""Train the VGGT4D Gaussian head (and temporal layers) by render-and-compare on posed multi-view data.

``python -m lavr_core.train vggt-gaussians --vggt VGGT.safetensors --data DIR --out DIR [options]``

Each step takes one scene (``data_multiview`` layout), splits its views at random into ``context``
views (fed to the model, which turns their pixels into Gaussians) and held-out ``target`` views,
renders the Gaussians at the target cameras with LaVR's differentiable renderer and compares:

    loss = MSE(render, target) + perceptual_weight * D-SSIM(render, target)

D-SSIM is ``(1 - SSIM) / 2`` (kornia, Gaussian window ``ssim_window``): a differentiable proxy for
perceptual similarity that needs no pretrained network (LPIPS weights are not available offline),
sensitive to local structure and contrast the way MSE is not (3DGS trains with the same term).
On typical renders D-SSIM is 20-30x larger than MSE, so the default weight 0.05 makes the two
terms comparable instead of letting structure override colour accuracy.

Geometry: the scene's own cameras (re-expressed relative to context view 0, VGGT's world frame)
place and render the Gaussians; VGGT's depth is brought into the scene's units by ``depth_scale``:

* ``cameras`` (default): least-squares scale between VGGT's predicted context camera centres and the
  scene's (needs two or more context views with a baseline);
* ``focus``: for inward-looking captures: the median depth of context view 0 is set to the distance
  from that camera to the point nearest to all context cameras' optical axes;
* ``none`` or a number: a fixed factor.

(A mode that cannot be used on a sample falls back to the next of cameras -> focus -> 1, and the
log says so.) VGGT stays frozen (eval mode, no gradients); the Gaussian head and, for multi-timestep
data or ``--temporal``, the temporal layers train with Adam. On CUDA the model runs under bf16
autocast (``--no-bf16`` to turn off); rendering and the loss stay float32.

Outputs in ``--out`` (all written atomically): ``vggt4d_weights.safetensors`` (our weights layout,
``lavr_core.vggt4d.weights``), ``train_state.pt`` (optimizer, step, sampler state; read back with
``weights_only=True``), ``train_log.jsonl`` and ``train_options.json``. ``--resume`` continues from
them. With ``--val-data`` (or ``--val-scenes N`` held out of ``--data``) the held-out render error
of the training-free start and of the trained head is measured and logged.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from ..camera.transforms import invert_pose
from ..errors import CheckpointError, InputError
from .common import parse_size, pick_device, read_log, read_state, save_state, write_log, write_options
from ..vggt4d.init_free import InitConfig
from ..vggt4d.model import VGGT4D, VGGT4DConfig, VGGT4DPrediction
from ..vggt4d.weights import load_weights, save_weights
from .data_multiview import MultiViewDataset, MultiViewScene

WEIGHTS_FILE = "vggt4d_weights.safetensors"
STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.jsonl"
OPTIONS_FILE = "train_options.json"
DEPTH_SCALE_MODES = ("cameras", "focus", "none")


@dataclass
class TrainOptions:
    """Everything a training run needs (the CLI flags, one for one)."""

    data: str
    out: str
    vggt: str | None = None
    weights: str | None = None          # start from these head/temporal weights
    steps: int = 2000
    lr: float = 1e-4
    context_views: int = 2
    target_views: int = 2
    perceptual_weight: float = 0.05
    ssim_window: int = 7
    depth_scale: str = "cameras"
    temporal: bool | None = None         # None: train temporal layers when the data has T > 1
    background: float = 0.5
    grad_clip: float = 1.0
    val_data: str | None = None
    val_scenes: int = 0
    val_every: int = 0                   # 0: only before and after
    save_every: int = 200
    log_every: int = 10
    resume: bool = False
    seed: int = 0
    device: str = "auto"
    bf16: bool = True
    image_size: tuple[int, int] | None = None
    init_scale_factor: float = InitConfig.scale_factor
    threads: int = 0                     # CPU threads for torch (0: torch's default)


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    val_before: dict[str, float] | None = None
    val_after: dict[str, float] | None = None
    weights_path: Path | None = None
    seconds: float = 0.0


# ------------------------------------------------------------------------------------- geometry

def _focus_distance(c2w: torch.Tensor) -> float | None:
    """Depth along camera 0's axis of the point nearest to all optical axes of ``c2w [C, 4, 4]``."""
    if c2w.shape[0] < 2:
        return None
    o, d = c2w[:, :3, 3], c2w[:, :3, 2]
    P = torch.eye(3, dtype=c2w.dtype) - d[:, :, None] * d[:, None, :]       # projectors off each axis
    A, b = P.sum(0), (P @ o[:, :, None]).sum(0)[:, 0]
    ev = torch.linalg.eigvalsh(A)
    if ev[0] < 1e-3 * ev[-1]:                                              # (nearly) parallel axes
        return None
    x = torch.linalg.solve(A, b)
    dist = float((x - o[0]) @ d[0])
    return dist if dist > 0 else None


def depth_scale_for(pred: VGGT4DPrediction, c2w_ctx: torch.Tensor, mode: str | float) -> tuple[float, str]:
    """Factor taking VGGT's depth (sample 0) into the units of ``c2w_ctx [C, 4, 4]`` (relative to
    context view 0); returns ``(scale, mode actually used)``."""
    if not isinstance(mode, str):
        return float(mode), "fixed"
    if mode == "none":
        return 1.0, "none"
    c2w_ctx = c2w_ctx.detach().cpu().double()
    if mode == "cameras" and c2w_ctx.shape[0] >= 2:
        pc2w, _ = pred.cameras()
        p = pc2w[0, :, 0, :3, 3].detach().cpu().double()
        p = p - p[:1]
        g = c2w_ctx[:, :3, 3] - c2w_ctx[:1, :3, 3]
        den = float((p * p).sum())
        s = float((g * p).sum()) / den if den > 1e-12 else float("nan")
        if math.isfinite(s) and s > 0:
            return s, "cameras"
    dist = _focus_distance(c2w_ctx)
    if dist is not None:
        med = float(pred.depth[0, 0, 0].detach().median())
        if med > 0:
            return dist / med, "focus"
    return 1.0, "none"


def parse_depth_scale(value: str) -> str | float:
    if value in DEPTH_SCALE_MODES:
        return value
    try:
        v = float(value)
    except ValueError:
        raise InputError(f"--depth-scale {value!r} is neither a mode nor a number.",
                         f"Use one of {', '.join(DEPTH_SCALE_MODES)} or a positive number.") from None
    if not (v > 0 and math.isfinite(v)):
        raise InputError(f"--depth-scale {v} is not a positive number.", "Give a factor > 0.")
    return v


# ----------------------------------------------------------------------------------------- loss

def perceptual_proxy(render: torch.Tensor, target: torch.Tensor, window: int = 7) -> torch.Tensor:
    """D-SSIM ``(1 - SSIM) / 2`` of ``[N, H, W, 3]`` images (the window shrinks to fit tiny images)."""
    from kornia.losses import ssim_loss

    w = max(3, min(window, min(render.shape[1:3]) // 2 * 2 - 1))
    return ssim_loss(render.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2), window_size=w)


def render_loss(render: torch.Tensor, target: torch.Tensor, perceptual_weight: float, window: int):
    mse = F.mse_loss(render, target)
    dssim = perceptual_proxy(render, target, window) if perceptual_weight > 0 else render.new_zeros(())
    return mse + perceptual_weight * dssim, mse.detach(), dssim.detach()


def sample_loss(model: VGGT4D, scene: MultiViewScene, ctx: Sequence[int], tgt: Sequence[int], opts: TrainOptions,
                device: torch.device, times: Sequence[int] | None = None, use_head: bool = True,
                autocast: torch.dtype | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """Render-and-compare loss of one scene: Gaussians from views ``ctx``, compared at views ``tgt``
    for timesteps ``times`` (default all). Returns ``(loss, metrics)``; ``loss`` is differentiable."""
    from ..gaussians.render import render

    ctx, tgt = list(ctx), list(tgt)
    V, T, _, H, W = scene.images.shape
    times = list(range(T)) if times is None else list(times)
    c2w = (invert_pose(scene.c2w[ctx[0]]) @ scene.c2w).to(device)         # context view 0 at the origin
    K = scene.K.to(device)
    images = scene.images.to(device)
    pred = model(images[ctx], with_points=False, use_gaussian_head=use_head, autocast=autocast)
    scale, how = depth_scale_for(pred, c2w[ctx], parse_depth_scale(str(opts.depth_scale)))
    C = len(ctx)
    pg = pred.pixel_gaussians(c2w=c2w[ctx][None, :, None].expand(1, C, T, 4, 4),
                              K=K[ctx][None, :, None].expand(1, C, T, 3, 3), depth_scale=scale, use_head=use_head)
    total, mses, dssims = 0.0, [], []
    for t in times:
        g = pg.index((0, slice(None), t)).flatten()
        rgb, _, _ = render(g, c2w[tgt].float(), K[tgt].float(), W, H, background=float(opts.background))
        target = images[tgt, t].permute(0, 2, 3, 1).float()
        loss, mse, dssim = render_loss(rgb, target, opts.perceptual_weight, opts.ssim_window)
        total = total + loss
        mses.append(float(mse))
        dssims.append(float(dssim))
    n = len(times)
    return total / n, {"mse": sum(mses) / n, "dssim": sum(dssims) / n, "depth_scale": scale, "depth_scale_mode": how}


def evaluate(model: VGGT4D, dataset: MultiViewDataset, opts: TrainOptions, device: torch.device,
             use_head: bool = True) -> dict[str, float]:
    """Held-out render error over ``dataset``: the first ``context_views`` views of each scene are the
    context, the next ``target_views`` the targets, every timestep. ``use_head=False`` measures the
    training-free start. Returns mean ``mse``, ``psnr`` (of the mean MSE) and ``dssim``."""
    was = model.training
    model.eval()
    mses, dssims = [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            s = dataset[i]
            ctx, tgt = _split(s.views, opts, None)
            _, m = sample_loss(model, s, ctx, tgt, opts, device, use_head=use_head)
            mses.append(m["mse"])
            dssims.append(m["dssim"])
    model.train(was)
    mse = sum(mses) / len(mses)
    return {"mse": mse, "psnr": -10 * math.log10(max(mse, 1e-12)), "dssim": sum(dssims) / len(dssims)}


def _split(views: int, opts: TrainOptions, gen: torch.Generator | None) -> tuple[list[int], list[int]]:
    c = min(opts.context_views, views - 1)
    if c < 1:
        raise InputError(f"A scene has {views} view(s); training needs at least 2 (context + held-out target).",
                         "Give scenes with several views, or lower --context-views.")
    order = list(range(views)) if gen is None else torch.randperm(views, generator=gen).tolist()
    return order[:c], order[c:c + max(1, opts.target_views)]


# ------------------------------------------------------------------------------------- training

def _load_vggt(opts: TrainOptions, device: torch.device):
    from ..vggt import load_vggt

    if not opts.vggt:
        raise InputError("No VGGT checkpoint given.", "Pass --vggt PATH (facebook/VGGT-1B model.safetensors or model.pt).")
    return load_vggt(opts.vggt, device=device)


def _save(model: VGGT4D, opt: torch.optim.Optimizer, gen: torch.Generator, step: int, out: Path,
          opts: TrainOptions) -> Path:
    w = save_weights(model, out / WEIGHTS_FILE, info={"step": step, "trainer": "lavr_core.train vggt-gaussians",
                                                       "data": str(opts.data), "vggt": str(opts.vggt)})
    save_state(out / STATE_FILE, step, opt, gen)
    return w


def _resume(model: VGGT4D, opt: torch.optim.Optimizer, gen: torch.Generator, out: Path) -> int:
    wpath, spath = out / WEIGHTS_FILE, out / STATE_FILE
    if not (wpath.is_file() and spath.is_file()):
        raise CheckpointError(f"Cannot resume: {out} lacks {WEIGHTS_FILE} or {STATE_FILE}.",
                              "Point --out at a folder a previous run wrote, or drop --resume.")
    meta = load_weights(model, wpath)
    state = read_state(spath)
    step = int(state["step"])
    try:
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
    except (KeyError, ValueError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{spath} is not a usable training state ({e}).",
                              "Delete it to restart the optimizer from the saved weights, or train afresh.") from e
    if int(meta["info"].get("step", step)) != step:
        raise CheckpointError(f"{wpath.name} is from step {meta['info'].get('step')} but {STATE_FILE} from step {step}.",
                              "A save was interrupted: delete both files to restart, or restore a matching pair.")
    return step


def train(opts: TrainOptions, vggt=None, log: Callable[[str], None] = print) -> TrainResult:
    """Run training as ``opts`` says (``vggt``: an already built VGGT instead of ``opts.vggt``)."""
    t_start = time.perf_counter()
    device = pick_device(opts.device)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    data = MultiViewDataset(opts.data, opts.image_size)
    train_idx = list(range(len(data)))
    val = None
    if opts.val_data:
        val = MultiViewDataset(opts.val_data, opts.image_size)
    elif opts.val_scenes:
        if opts.val_scenes >= len(data):
            raise InputError(f"--val-scenes {opts.val_scenes} leaves no training scenes out of {len(data)}.",
                             "Hold out fewer scenes or give --val-data.")
        val = MultiViewDataset(opts.data, opts.image_size)
        val.scenes = val.scenes[-opts.val_scenes:]
        train_idx = train_idx[:-opts.val_scenes]
    temporal = opts.temporal
    if temporal is None:
        temporal = any(data[i].times > 1 for i in train_idx)
    vggt = vggt if vggt is not None else _load_vggt(opts, device)
    model = VGGT4D(vggt.to(device), VGGT4DConfig(gaussian_head=True, temporal=temporal,
                                                 init=InitConfig(scale_factor=opts.init_scale_factor))).to(device)
    if opts.weights:
        load_weights(model, opts.weights)
    params = model.trainable_parameters()
    opt = torch.optim.Adam(params, lr=opts.lr)
    gen = torch.Generator().manual_seed(opts.seed)
    step = _resume(model, opt, gen, out) if opts.resume else 0
    write_options(out / OPTIONS_FILE, opts)
    autocast = torch.bfloat16 if (device.type == "cuda" and opts.bf16) else None
    rows = read_log(out / LOG_FILE) if opts.resume else []
    result = TrainResult(steps=step)
    if val is not None and step == 0:
        result.val_before = evaluate(model, val, opts, device, use_head=False)
        rows.append({"step": 0, "val_training_free": result.val_before})
        log(f"held-out render error, training-free start: mse {result.val_before['mse']:.5f} "
            f"psnr {result.val_before['psnr']:.2f} dB")
    model.train()
    while step < opts.steps:
        i = train_idx[int(torch.randint(len(train_idx), (1,), generator=gen))]
        scene = data[i]
        ctx, tgt = _split(scene.views, opts, gen)
        t_pick = [int(torch.randint(scene.times, (1,), generator=gen))]  # one timestep per step bounds the cost
        loss, m = sample_loss(model, scene, ctx, tgt, opts, device, times=t_pick, autocast=autocast)
        opt.zero_grad(set_to_none=True)
        if not loss.requires_grad:
            # No Gaussian landed in any target view (geometry far off, e.g. a wrong --depth-scale):
            # nothing to learn from this sample. Count the step so a hopeless setup still ends.
            step += 1
            log(f"step {step}: skipped, no Gaussian is visible in the target views of {scene.name} "
                f"(check --depth-scale; used {m['depth_scale_mode']} {m['depth_scale']:.3g})")
            continue
        loss.backward()
        if opts.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, opts.grad_clip)
        opt.step()
        step += 1
        result.losses.append(float(loss.detach()))
        if opts.log_every and (step % opts.log_every == 0 or step == opts.steps):
            rows.append({"step": step, "loss": float(loss.detach()), **m})
            log(f"step {step}/{opts.steps} loss {float(loss.detach()):.5f} mse {m['mse']:.5f} dssim {m['dssim']:.4f} "
                f"({m['depth_scale_mode']} depth scale {m['depth_scale']:.3g})")
        if val is not None and opts.val_every and step % opts.val_every == 0 and step < opts.steps:
            v = evaluate(model, val, opts, device)
            rows.append({"step": step, "val": v})
            log(f"step {step}: held-out mse {v['mse']:.5f} psnr {v['psnr']:.2f} dB")
        if opts.save_every and step % opts.save_every == 0:
            _save(model, opt, gen, step, out, opts)
            write_log(out / LOG_FILE, rows)
    result.weights_path = _save(model, opt, gen, step, out, opts)
    result.steps = step
    if val is not None:
        result.val_after = evaluate(model, val, opts, device)
        rows.append({"step": step, "val": result.val_after})
        log(f"held-out render error after {step} steps: mse {result.val_after['mse']:.5f} "
            f"psnr {result.val_after['psnr']:.2f} dB")
    write_log(out / LOG_FILE, rows)
    result.seconds = time.perf_counter() - t_start
    return result


# ------------------------------------------------------------------------------------------ CLI

def add_arguments(ap: argparse.ArgumentParser) -> None:
    d = TrainOptions(data="", out="")
    ap.add_argument("--data", required=True, help="folder of scene folders (lavr_core.train.data_multiview layout)")
    ap.add_argument("--out", required=True, help="output folder: weights, training state, log")
    ap.add_argument("--vggt", required=True, help="VGGT checkpoint (facebook/VGGT-1B model.safetensors / model.pt)")
    ap.add_argument("--weights", help="start from these Gaussian-head/temporal weights (our safetensors layout)")
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--context-views", type=int, default=d.context_views)
    ap.add_argument("--target-views", type=int, default=d.target_views)
    ap.add_argument("--perceptual-weight", type=float, default=d.perceptual_weight, help="weight of D-SSIM")
    ap.add_argument("--ssim-window", type=int, default=d.ssim_window)
    ap.add_argument("--depth-scale", default=d.depth_scale, help="cameras | focus | none | a number")
    ap.add_argument("--temporal", action=argparse.BooleanOptionalAction, default=None,
                    help="train temporal layers (default: when the data has several timesteps)")
    ap.add_argument("--background", type=float, default=d.background, help="grey level behind the splats")
    ap.add_argument("--grad-clip", type=float, default=d.grad_clip)
    ap.add_argument("--val-data", help="held-out scenes to measure render error on")
    ap.add_argument("--val-scenes", type=int, default=0, help="hold out the last N scenes of --data instead")
    ap.add_argument("--val-every", type=int, default=0)
    ap.add_argument("--save-every", type=int, default=d.save_every)
    ap.add_argument("--log-every", type=int, default=d.log_every)
    ap.add_argument("--resume", action="store_true", help="continue from the state in --out")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast on CUDA")
    ap.add_argument("--image-size", type=parse_size, help="train at HxW (multiples of 14; default: each scene's own)")
    ap.add_argument("--init-scale-factor", type=float, default=d.init_scale_factor,
                    help="training-free Gaussian size in pixel footprints")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads (0: torch default; 1 is fastest on a busy machine)")


def main(args: argparse.Namespace) -> int:
    opts = TrainOptions(**{k: getattr(args, k) for k in TrainOptions.__dataclass_fields__ if hasattr(args, k)})
    parse_depth_scale(str(opts.depth_scale))
    res = train(opts)
    print(f"done: {res.steps} steps in {res.seconds:.1f} s; weights {res.weights_path}")
    return 0
