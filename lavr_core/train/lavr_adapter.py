"""Train the LaVR scene-latent adapter (and the ReCamMaster layers LaVR retrains) on multi-camera videos.

``python -m lavr_core.train lavr-adapter --data DIR --out DIR --base step20000.ckpt --vae wan_2.1_vae.safetensors
[--cut3r cut3r_512_dpt_4_64.pth] [options]``

Each step takes ``--batch-size`` pairs (default 1), each drawn independently: a scene
(``data_multicam`` layout), a source camera that has a scene latent (cached in ``scene_latents/``,
or computed with ``--cut3r``) and another camera of the scene as the target, with its own timestep
and noise; all pairs go through the DiT as one batch, for one ReCamMaster flow-matching step with
LaVR's conditioning:

* both videos go through the frozen Wan VAE (posterior mean; latents cached in memory, or read
  from ``latents/<cam>.safetensors``), giving ``x_src``, ``x_tgt`` ``[1, C, F, h, w]``;
* a training timestep index ``i`` is drawn uniformly from the 1000-step schedule (shift 5), noise
  ``n`` is added to the target only: ``x_t = (1 - s_i) x_tgt + s_i n``; the source stays clean;
* the target cameras are ``inv(source c2w_0) @ target c2w_{4j}`` (ReCamMaster's training
  convention), the source poses come from the scene latent (CUT3R's, world = its first camera);
* ``loss = w_i * MSE(v_target_half, n - x_tgt)`` with ReCamMaster's training weights ``w_i``,
  averaged over the batch.

Why a batch helps the scene branch: the part of the target that only the scene latent can explain
differs from scene to scene, and with one pair per step its gradient is buried under the
flow-matching noise of that one sample; several scenes per step give the adapter a contrast to
learn from (``tests/unit/test_train_lavr_adapter.py``: in brief CPU runs with one pair per step
the adapter mostly learned scene-independent frames; with 8, it used the scene's content).

Trained: the adapter, plus every DiT parameter whose name contains one of ``--train`` (default
``cam_encoder,projector,self_attn``, as ReCamMaster trains; ``none`` = adapter only); everything
else (the rest of the DiT, the VAE, the text) is frozen (``all`` trains the whole DiT: only sensible
for a model trained from scratch, as in the tests). The text context is the scene's
``context.safetensors``, else ``--context FILE`` (key ``context``: umT5 features of e.g. the empty
prompt), else zeros (``--context-tokens`` rows). On CUDA the DiT runs under bf16 autocast
(``--no-bf16`` turns it off); parameters and optimizer state stay float32.

Outputs in ``--out`` (atomic): ``lavr_adapter.safetensors`` (``lavr_core.lavr.weights`` layout, with
the retrained DiT tensors under ``base.``), ``train_state.pt`` (step, optimizer, sampler state;
read back with ``weights_only=True``), ``train_log.jsonl``, ``train_options.json``. ``--resume``
continues from them exactly (same data order, noise and optimizer state). With ``--val-scenes N``
(or ``--val-data``) the held-out flow-matching loss is measured at fixed timesteps and noise
(``--val-timesteps``) in four modes (``EVAL_MODES``): with the scene latent, without any, with the
adapter's output layers zeroed, and with another held-out scene's latent ("shuffled": the control
that shows whether the model uses the scene's *content* rather than merely the adapter's frames).
``--no-scene`` trains the same layers without the scene latent (the ablation baseline);
``--weighting uniform`` drops ReCamMaster's timestep weights (which are ~0 at pure noise, where
the scene matters most). ``--cache-latents`` writes every video's VAE latents into its scene
folder first (delete those caches when changing the VAE, the frame count or the size).

``--base tiny-random`` / ``--vae tiny-random`` build small random models (for smoke tests only).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import CheckpointError, InputError
from ..fileio import atomic_writer
from .common import parse_size, pick_device, read_log, read_state, save_state, write_log, write_options
from ..lavr import LavrAdapterConfig, LavrModel, SceneTokens, attach_adapter, read_adapter, save_adapter
from ..lavr.model import FEATURES_KW, LATENTS_KW
from ..wan.model import pad_context
from ..wan.recammaster import VAE_TEMPORAL_STRIDE
from ..wan.scheduler import FlowMatchScheduler
from .data_multicam import MultiCamDataset, MultiCamScene, read_scene_tokens

WEIGHTS_FILE = "lavr_adapter.safetensors"
STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.jsonl"
OPTIONS_FILE = "train_options.json"
DEFAULT_TRAIN = "cam_encoder,projector,self_attn"
TINY_RANDOM = "tiny-random"


@dataclass
class TrainOptions:
    """Everything a training run needs (the CLI flags, one for one)."""

    data: str
    out: str
    base: str | None = None              # ReCamMaster step20000.ckpt (or "tiny-random")
    vae: str | None = None               # Wan2.1 VAE (or "tiny-random")
    cut3r: str | None = None             # CUT3R checkpoint for sources without a cached scene latent
    weights: str | None = None           # start from these LaVR adapter weights
    steps: int = 2000
    lr: float = 1e-4
    train: str = DEFAULT_TRAIN
    hidden: int = 512
    adapter_layers: int = 2
    adapter_heads: int = 8
    query_stride: int = 1
    adapter_frames: int = 0
    state_every: int = 4
    frames: int | None = None            # video frames used (4k+1; default: the largest 4k+1 available)
    size: tuple[int, int] | None = None  # train at HxW (multiples of 16); default: the videos' own
    context: str | None = None
    context_tokens: int | None = None    # rows of the zero context (default: the DiT's text_len)
    no_scene: bool = False
    weighting: str = "recammaster"       # loss weight per timestep: ReCamMaster's bump, or "uniform"
    cache_latents: bool = False          # write latents/<cam>.safetensors for every video before training
    grad_clip: float = 1.0
    batch_size: int = 1                  # pairs per step (each its own scene, timestep and noise)
    val_data: str | None = None
    val_scenes: int = 0
    val_timesteps: tuple[int, ...] = (100, 300, 500, 700, 900)
    save_every: int = 500
    log_every: int = 10
    resume: bool = False
    seed: int = 0
    device: str = "auto"
    bf16: bool = True
    gradient_checkpointing: bool = False
    threads: int = 0


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)
    val: dict[str, dict] | None = None              # evaluation mode (EVAL_MODES) -> held-out loss
    weights_path: Path | None = None
    seconds: float = 0.0


# ------------------------------------------------------------------------------------------ data

def prepare_video(frames: torch.Tensor, num_frames: int | None, size: tuple[int, int] | None) -> torch.Tensor:
    """``[T, 3, H, W]`` in [0, 1] -> ``[T', 3, H', W']`` in [0, 1]: the first ``num_frames`` frames (default:
    the most that fit 4k+1), resized to cover ``size`` and centre-cropped (ReCamMaster's preparation)."""
    T = frames.shape[0]
    n = num_frames if num_frames is not None else 1 + VAE_TEMPORAL_STRIDE * ((T - 1) // VAE_TEMPORAL_STRIDE)
    if n < 1 or (n - 1) % VAE_TEMPORAL_STRIDE or n > T:
        raise InputError(f"Cannot take {n} frames from a {T}-frame video for the Wan VAE (4k+1 frames).",
                         "Pass --frames 4k+1 no larger than the videos (e.g. 81).")
    frames = frames[:n]
    H, W = frames.shape[-2:]
    if size is not None:
        h, w = size
        s = max(h / H, w / W)
        rh, rw = max(h, round(H * s)), max(w, round(W * s))
        frames = F.interpolate(frames, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)
        top, left = (rh - h) // 2, (rw - w) // 2
        frames = frames[..., top:top + h, left:left + w].clamp(0, 1)
    if frames.shape[-2] % 16 or frames.shape[-1] % 16:
        raise InputError(f"Videos of {frames.shape[-1]}x{frames.shape[-2]} do not fit the DiT (multiples of 16 pixels).",
                         "Pass --size HxW (e.g. 480x832).")
    return frames


def target_cam_emb(source_c2w: torch.Tensor, target_c2w: torch.Tensor, num_latent_frames: int) -> torch.Tensor:
    """``[1, F, 12]``: ``inv(source c2w_0) @ target c2w_{4j}`` (ReCamMaster's training convention)."""
    from ..lavr.adapter import relative_pose_12

    idx = [min(VAE_TEMPORAL_STRIDE * j, target_c2w.shape[0] - 1) for j in range(num_latent_frames)]
    return relative_pose_12(target_c2w[idx], reference=source_c2w[0])[None]


class TrainingData:
    """A dataset plus what is computed once per video: VAE latents, scene tokens, text context."""

    def __init__(self, dataset: MultiCamDataset, vae, opts: TrainOptions, text_dim: int, text_len: int,
                 cut3r=None, device: torch.device | str = "cpu"):
        self.data, self.vae, self.opts, self.cut3r, self.device = dataset, vae, opts, cut3r, torch.device(device)
        self._latents: dict[tuple[str, str], torch.Tensor] = {}
        self._tokens: dict[tuple[str, str], SceneTokens] = {}
        self.default_context = self._default_context(text_dim, text_len)

    def __len__(self) -> int:
        return len(self.data)

    def _default_context(self, text_dim: int, text_len: int) -> torch.Tensor:
        if self.opts.context:
            return _read_context(Path(self.opts.context), text_dim)
        return torch.zeros(1, self.opts.context_tokens or text_len, text_dim)

    def context(self, scene: MultiCamScene) -> torch.Tensor:
        p = scene.context_path()
        return _read_context(p, self.default_context.shape[-1]) if p.is_file() else self.default_context

    def sources(self, scene: MultiCamScene) -> list[str]:
        cams = scene.cameras if self.cut3r is not None else [c for c in scene.cameras if scene.scene_tokens_path(c).is_file()]
        if not cams:
            raise InputError(f"Scene {scene.folder} has no camera with a scene latent (scene_latents/<cam>.safetensors).",
                             "Precompute the scene latents, or pass --cut3r to compute them.")
        return cams

    def video(self, scene: MultiCamScene, cam: str) -> torch.Tensor:
        return prepare_video(scene.video(cam), self.opts.frames, self.opts.size)

    @torch.no_grad()
    def latents(self, scene: MultiCamScene, cam: str) -> torch.Tensor:
        """``[1, C, F, h, w]`` float32 CPU latents of a camera's video (frozen VAE, posterior mean)."""
        key = (str(scene.folder), cam)
        if key not in self._latents:
            z = self._cached_latents(scene, cam)
            if z is None:
                video = self.video(scene, cam) * 2 - 1
                vae_dev = next(self.vae.parameters()).device
                z = self.vae.encode(video.permute(1, 0, 2, 3)[None].to(vae_dev, self.vae.dtype)).float().cpu()
            self._latents[key] = z
        return self._latents[key]

    def _cached_latents(self, scene: MultiCamScene, cam: str) -> torch.Tensor | None:
        p = scene.latents_path(cam)
        if not p.is_file():
            return None
        from ..checkpoint_io import load_safetensors

        z = load_safetensors(p, what="VAE latents cache").get("latents")
        T = scene.c2w[cam].shape[0]
        n = self.opts.frames or 1 + VAE_TEMPORAL_STRIDE * ((T - 1) // VAE_TEMPORAL_STRIDE)
        if z is None or z.ndim != 4 or z.shape[1] != 1 + (n - 1) // VAE_TEMPORAL_STRIDE:
            return None  # another frame count than this run's: encode afresh
        if self.opts.size is not None and tuple(z.shape[-2:]) != (self.opts.size[0] // 8, self.opts.size[1] // 8):
            return None
        return z[None].float()

    def scene_tokens(self, scene: MultiCamScene, cam: str) -> SceneTokens:
        key = (str(scene.folder), cam)
        if key not in self._tokens:
            p = scene.scene_tokens_path(cam)
            if p.is_file():
                self._tokens[key] = read_scene_tokens(p)
            else:
                self._tokens[key] = self._encode_scene(scene, cam)
        return self._tokens[key]

    def _encode_scene(self, scene: MultiCamScene, cam: str) -> SceneTokens:
        from ..cut3r.streaming import StreamOptions, encode_video
        from ..scene import SceneLatent

        if self.cut3r is None:
            raise InputError(f"Camera {cam} of {scene.folder} has no cached scene latent.", "Pass --cut3r PATH.")
        frames = self.video(scene, cam).permute(0, 2, 3, 1)
        seq = encode_video(self.cut3r, frames, StreamOptions(state_every=self.opts.state_every, keep_self_points=False,
                                                             keep_colors=False))
        return SceneTokens.from_scene(SceneLatent.from_cut3r(seq, fps=16.0))


def write_latents_caches(data: TrainingData, indices: list[int] | None = None) -> list[Path]:
    """Encode every camera video of the scenes ``indices`` (default all) once with the frozen VAE and
    write ``latents/<cam>.safetensors`` (atomically), so later runs skip the VAE."""
    from safetensors.torch import save

    written = []
    for i in (range(len(data)) if indices is None else indices):
        scene = data.data[i]
        for cam in scene.cameras:
            z = data.latents(scene, cam)[0].contiguous()
            p = scene.latents_path(cam)
            with atomic_writer(p, "wb") as f:
                f.write(save({"latents": z}, metadata={"format": "lavr_vae_latents", "version": "1"}))
            written.append(p)
    return written


def _read_context(path: Path, text_dim: int) -> torch.Tensor:
    from ..checkpoint_io import load_safetensors

    t = load_safetensors(path, what="text context").get("context")
    if t is None:
        raise InputError(f"{path} has no 'context' tensor.", "Save the umT5 features under the key 'context'.")
    t = t.float()
    t = t[None] if t.ndim == 2 else t
    if t.ndim != 3 or t.shape[0] != 1 or t.shape[-1] != text_dim:
        raise InputError(f"{path} holds a context of shape {tuple(t.shape)}; the DiT needs [tokens, {text_dim}].",
                         "Encode the caption with Wan's umT5-XXL.")
    return t


# ------------------------------------------------------------------------------------------ loss

@dataclass
class Pair:
    scene: MultiCamScene
    source: str
    target: str


@dataclass
class Sample:
    """One element of a training batch: a pair, its schedule index, its noise ``[1, C, F, h, w]`` and
    the scene latent to condition on (None: plain ReCamMaster)."""

    pair: Pair
    step_index: int
    noise: torch.Tensor
    scene: SceneTokens | None


def batch_loss(model: LavrModel, data: TrainingData, samples: list[Sample], sched: FlowMatchScheduler,
               device: torch.device, weighted: bool = True, autocast: torch.dtype | None = None) -> torch.Tensor:
    """The mean (weighted) flow-matching loss of ``samples``, run through the DiT as one batch.
    Every sample must have a scene latent, or none must (a batch is conditioned one way)."""
    return sample_losses(model, data, samples, sched, device, weighted, autocast).mean()


def sample_losses(model: LavrModel, data: TrainingData, samples: list[Sample], sched: FlowMatchScheduler,
                  device: torch.device, weighted: bool = True, autocast: torch.dtype | None = None) -> torch.Tensor:
    """``[len(samples)]``: each sample's (weighted) flow-matching MSE, from one batched forward."""
    if not samples:
        raise InputError("A training batch needs at least one pair.", "Pass --batch-size >= 1.")
    if len({s.scene is None for s in samples}) > 1:
        raise InputError("A batch mixes pairs with and without a scene latent.", "Condition every pair the same way.")
    xs, ts, cams, ctxs, targets, weights, lat, feat = [], [], [], [], [], [], [], []
    for s in samples:
        src = data.latents(s.pair.scene, s.pair.source).to(device)
        tgt = data.latents(s.pair.scene, s.pair.target).to(device)
        if src.shape != tgt.shape:
            raise InputError(f"Cameras {s.pair.source} and {s.pair.target} of {s.pair.scene.folder} give latents "
                             f"{tuple(src.shape)} and {tuple(tgt.shape)}.",
                             "Give every camera of a scene the same video size and length.")
        if targets and tgt.shape != targets[0].shape:
            raise InputError(f"Scenes of one batch give latents of different sizes ({tuple(tgt.shape)} and "
                             f"{tuple(targets[0].shape)}).", "Pass --size HxW and --frames N, or --batch-size 1.")
        noise = s.noise.to(device)
        Fn, hw = src.shape[2], tuple(src.shape[-2:])
        cam = target_cam_emb(s.pair.scene.c2w[s.pair.source], s.pair.scene.c2w[s.pair.target], Fn).to(device)
        xs.append(torch.cat([sched.add_noise(tgt, noise, s.step_index), src], dim=2))
        ts.append(sched.timesteps[s.step_index].reshape(1))
        cams.append(cam)
        ctxs.append(data.context(s.pair.scene))
        targets.append(FlowMatchScheduler.training_target(tgt, noise))
        weights.append(sched.training_weight(s.step_index) if weighted else 1.0)
        if s.scene is not None:
            with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
                kw = model.condition_kwargs(s.scene, cam, Fn, hw)
            lat.append(kw[LATENTS_KW])
            feat.append(kw[FEATURES_KW])
    if len({tuple(c.shape) for c in ctxs}) > 1:  # captions of different lengths: Wan's own zero padding
        ctxs = [pad_context(c, model.config.text_len) for c in ctxs]
    kw = {LATENTS_KW: torch.cat(lat), FEATURES_KW: torch.cat(feat, dim=1)} if lat else {}
    Fn = targets[0].shape[2]
    with torch.autocast(device.type, dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        v = model(torch.cat(xs), torch.cat(ts).to(device), torch.cat(ctxs).to(device), torch.cat(cams), **kw)[:, :, :Fn]
    per = (v.float() - torch.cat(targets)).pow(2).flatten(1).mean(1)
    return per * torch.tensor(weights, device=per.device)


def _check_weighting(name: str) -> bool:
    if name not in ("recammaster", "uniform"):
        raise InputError(f"--weighting {name!r} is not 'recammaster' or 'uniform'.", "Use one of the two.")
    return name == "recammaster"


def held_out_pairs(data: TrainingData, indices: list[int]) -> list[Pair]:
    out = []
    for i in indices:
        s = data.data[i]
        for src in data.sources(s):
            out += [Pair(s, src, tgt) for tgt in s.cameras if tgt != src]
    return out


#: How ``evaluate`` conditions: the source's own scene latent, none (plain ReCamMaster), the adapter
#: with its output layers zeroed (ReCamMaster's start), or the scene latent of another held-out scene.
EVAL_MODES = ("scene", "none", "zeroed", "shuffled")


@torch.no_grad()
def evaluate(model: LavrModel, data: TrainingData, indices: list[int], opts: TrainOptions, device: torch.device,
             mode: str = "scene", autocast: torch.dtype | None = None) -> dict:
    """Mean unweighted flow-matching MSE over every held-out pair at ``opts.val_timesteps`` (schedule
    indices; 0 = pure noise), with noise fixed per (pair, timestep): the same numbers for every model
    and mode, so they compare. ``mode``: one of ``EVAL_MODES``."""
    import copy

    if mode not in EVAL_MODES:
        raise InputError(f"Unknown evaluation mode {mode!r}.", f"Use one of {', '.join(EVAL_MODES)}.")
    sched = FlowMatchScheduler(shift=5.0)
    sched.set_timesteps(1000, training=True)
    pairs = held_out_pairs(data, indices)
    if mode == "shuffled" and len({str(p.scene.folder) for p in pairs}) < 2:
        raise InputError("Shuffled scene latents need at least two held-out scenes.", "Hold out more scenes.")
    was, adapter = model.training, model.adapter
    model.eval()
    if mode == "zeroed" and adapter is not None:
        model.adapter = copy.deepcopy(adapter)
        model.adapter.reset_outputs()
    by_t: dict[int, list[float]] = {int(t): [] for t in opts.val_timesteps}
    try:
        for k, pair in enumerate(pairs):
            shape = data.latents(pair.scene, pair.target).shape
            scene = None
            if mode in ("scene", "zeroed"):
                scene = data.scene_tokens(pair.scene, pair.source)
            elif mode == "shuffled":  # the next pair from another scene
                other = next(p for p in pairs[k + 1:] + pairs[:k] if p.scene.folder != pair.scene.folder)
                scene = data.scene_tokens(other.scene, other.source)
            samples = [Sample(pair, t, torch.randn(shape, generator=torch.Generator().manual_seed(
                opts.seed * 1_000_003 + k * 1009 + t)), scene) for t in by_t]
            for t, v in zip(by_t, sample_losses(model, data, samples, sched, device, False, autocast).tolist()):
                by_t[t].append(v)
    finally:
        model.adapter = adapter
        model.train(was)
    means = {t: sum(v) / len(v) for t, v in by_t.items()}
    return {"mse": sum(means.values()) / len(means), "pairs": len(pairs),
            "by_timestep": {str(t): m for t, m in means.items()}}


# ------------------------------------------------------------------------------------- building

def tiny_random_base(seed: int = 0):
    """A small random ReCamMaster (``wan.config.TINY``, camera layers at ReCamMaster's start), for smoke tests."""
    from ..wan.config import TINY
    from ..wan.recammaster import ReCamMasterModel

    torch.manual_seed(seed)
    model = ReCamMasterModel(TINY)
    model.reset_camera_layers()
    return model


def tiny_random_vae(seed: int = 0, z_dim: int = 4):
    """A small random Wan-shaped VAE (width 8, ``z_dim`` channels), for smoke tests. Every weight gets
    ``0.05 N(0, 1)`` on top of the default init: at the default init alone the latents hardly depend
    on the picture. Use ``calibrate_latents`` to give its latents unit scale on some data."""
    from ..wan.vae import WanVAE, WanVAEConfig

    torch.manual_seed(seed)
    vae = WanVAE(WanVAEConfig(dim=8, z_dim=z_dim, latents_mean=(0.0,) * z_dim, latents_std=(1.0,) * z_dim, name="tiny"))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return vae


@torch.no_grad()
def calibrate_latents(vae, videos: list[torch.Tensor]):
    """Set ``vae``'s per-channel latent mean / std (as Wan's ``latents_mean`` / ``latents_std``) to those
    of ``videos`` (each ``[1, 3, T, H, W]`` in [-1, 1]), so that its normalised latents have unit scale."""
    from dataclasses import replace

    mu = torch.cat([vae.encode_raw(v.to(next(vae.parameters()).device, vae.dtype)).chunk(2, dim=1)[0].float().cpu()
                    .transpose(0, 1).flatten(1) for v in videos], dim=1)
    vae.config = replace(vae.config, latents_mean=tuple(mu.mean(1).tolist()),
                         latents_std=tuple(mu.std(1).clamp_min(1e-6).tolist()))
    return vae


def _load_base(opts: TrainOptions, device: torch.device):
    if not opts.base:
        raise InputError("No ReCamMaster checkpoint given.", "Pass --base step20000.ckpt (KwaiVGI/ReCamMaster-Wan2.1).")
    if opts.base == TINY_RANDOM:
        return tiny_random_base(opts.seed).to(device)
    from ..wan.loading import load_wan_model

    return load_wan_model(opts.base, "recammaster-wan2.1-t2v-1.3b", dtype=torch.float32, device=device,
                          allow_missing_camera=True)


def _load_vae(opts: TrainOptions, device: torch.device, z_dim: int, dataset: MultiCamDataset):
    if not opts.vae:
        raise InputError("No Wan VAE given.", "Pass --vae wan_2.1_vae.safetensors (ComfyUI models/vae).")
    if opts.vae == TINY_RANDOM:
        vae = tiny_random_vae(opts.seed, z_dim).to(device).eval()
        scene = dataset[0]
        return calibrate_latents(vae, [prepare_video(scene.video(c), opts.frames, opts.size).permute(1, 0, 2, 3)[None] * 2 - 1
                                       for c in scene.cameras])
    from ..wan.vae import load_wan_vae

    return load_wan_vae(opts.vae, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32).to(device).eval()


def adapter_config(opts: TrainOptions, base, state_tokens: SceneTokens) -> LavrAdapterConfig:
    S, D = state_tokens.state_tokens.shape[1:]
    return LavrAdapterConfig.for_model(base.config, state_dim=int(D), state_tokens=int(S), hidden=opts.hidden,
                                       num_heads=opts.adapter_heads, num_layers=opts.adapter_layers,
                                       query_stride=opts.query_stride, frames=opts.adapter_frames)


def trainable(model: LavrModel, patterns: str) -> tuple[list[torch.nn.Parameter], list[str]]:
    """Freeze the model but the adapter and the base parameters whose names contain a pattern;
    returns ``(parameters to train, their base keys)``."""
    pats = [p.strip() for p in patterns.split(",") if p.strip() and p.strip() != "none"]
    params, base_keys = [], []
    for name, p in model.named_parameters():
        on = name.startswith("adapter.") or "all" in pats or any(pt in name for pt in pats)
        p.requires_grad_(on)
        if on:
            params.append(p)
            if not name.startswith("adapter."):
                base_keys.append(name)
    if pats and not base_keys:
        raise InputError(f"--train {patterns!r} matches no DiT parameter.", f"Use e.g. {DEFAULT_TRAIN!r} or 'none'.")
    return params, base_keys


# ---------------------------------------------------------------------------------- checkpoints

def _save(model: LavrModel, base_keys: list[str], opt: torch.optim.Optimizer, gen: torch.Generator, step: int,
          out: Path, opts: TrainOptions) -> Path:
    w = save_adapter(model, out / WEIGHTS_FILE, base_keys=base_keys,
                     info={"step": step, "trainer": "lavr_core.train lavr-adapter", "data": str(opts.data),
                           "base": str(opts.base), "no_scene": opts.no_scene, "train": opts.train})
    save_state(out / STATE_FILE, step, opt, gen)
    return w


def _read_state(out: Path) -> dict:
    spath = out / STATE_FILE
    if not ((out / WEIGHTS_FILE).is_file() and spath.is_file()):
        raise CheckpointError(f"Cannot resume: {out} lacks {WEIGHTS_FILE} or {STATE_FILE}.",
                              "Point --out at a folder a previous run wrote, or drop --resume.")
    state = read_state(spath)
    _, _, meta = read_adapter(out / WEIGHTS_FILE)
    if int(meta["info"].get("step", -1)) != int(state["step"]):
        raise CheckpointError(f"{WEIGHTS_FILE} is from step {meta['info'].get('step')} but {STATE_FILE} from step "
                              f"{state['step']}.", "A save was interrupted: delete both files to restart, or restore a matching pair.")
    return state


# ------------------------------------------------------------------------------------- training

def train(opts: TrainOptions, base=None, vae=None, cut3r=None, log: Callable[[str], None] = print) -> TrainResult:
    """Run training as ``opts`` says (``base`` / ``vae`` / ``cut3r``: already built models instead of files)."""
    t_start = time.perf_counter()
    device = pick_device(opts.device)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    base = base if base is not None else _load_base(opts, device)
    base = base.to(device)
    dataset = MultiCamDataset(opts.data)
    vae = vae if vae is not None else _load_vae(opts, device, base.config.in_dim, dataset)
    vae.requires_grad_(False)
    if cut3r is None and opts.cut3r:
        from ..cut3r import load_cut3r

        cut3r = load_cut3r(opts.cut3r, device=device)
    train_idx = list(range(len(dataset)))
    data = TrainingData(dataset, vae, opts, base.config.text_dim, base.config.text_len, cut3r, device)
    val, val_idx = None, []
    if opts.val_data:
        val = TrainingData(MultiCamDataset(opts.val_data), vae, opts, base.config.text_dim, base.config.text_len,
                           cut3r, device)
        val_idx = list(range(len(val)))
    elif opts.val_scenes:
        if opts.val_scenes >= len(dataset):
            raise InputError(f"--val-scenes {opts.val_scenes} leaves no training scenes out of {len(dataset)}.",
                             "Hold out fewer scenes or give --val-data.")
        val, val_idx = data, train_idx[-opts.val_scenes:]
        train_idx = train_idx[:-opts.val_scenes]

    state = _read_state(out) if opts.resume else None
    if state is not None:
        model = attach_adapter(base, out / WEIGHTS_FILE, dtype=torch.float32)
    elif opts.weights:
        model = attach_adapter(base, opts.weights, dtype=torch.float32)
    else:
        first = dataset[train_idx[0]]
        cfg = adapter_config(opts, base, data.scene_tokens(first, data.sources(first)[0]))
        model = attach_adapter(base, cfg, dtype=torch.float32)
    model.gradient_checkpointing = opts.gradient_checkpointing
    params, base_keys = trainable(model, opts.train)
    opt = torch.optim.AdamW(params, lr=opts.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(opts.seed)
    step = 0
    if state is not None:
        try:
            opt.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"The optimizer state in {out / STATE_FILE} does not fit this run ({e}).",
                                  "Resume with the same --train and adapter options as the first run.") from e
        gen.set_state(state["generator"])
        step = int(state["step"])
    if opts.cache_latents:
        n = len(write_latents_caches(data))
        log(f"wrote {n} VAE latent caches (latents/<cam>.safetensors in the scene folders)")
    write_options(out / OPTIONS_FILE, opts)
    autocast = torch.bfloat16 if (device.type == "cuda" and opts.bf16) else None
    sched = FlowMatchScheduler(shift=5.0)
    sched.set_timesteps(1000, training=True)
    rows = read_log(out / LOG_FILE) if opts.resume else []
    result = TrainResult(steps=step)
    use_scene = not opts.no_scene
    weighted = _check_weighting(opts.weighting)
    model.train()
    if opts.batch_size < 1:
        raise InputError(f"--batch-size {opts.batch_size} must be at least 1.", "Pass --batch-size 1 or more.")
    while step < opts.steps:
        samples = []
        for _ in range(opts.batch_size):
            scene = dataset[train_idx[int(torch.randint(len(train_idx), (1,), generator=gen))]]
            sources = data.sources(scene)
            src = sources[int(torch.randint(len(sources), (1,), generator=gen))]
            targets = [c for c in scene.cameras if c != src]
            tgt = targets[int(torch.randint(len(targets), (1,), generator=gen))]
            idx = int(torch.randint(len(sched.timesteps), (1,), generator=gen))
            noise = torch.randn(data.latents(scene, tgt).shape, generator=gen)
            samples.append(Sample(Pair(scene, src, tgt), idx, noise, data.scene_tokens(scene, src) if use_scene else None))
        loss = batch_loss(model, data, samples, sched, device, weighted=weighted, autocast=autocast)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if opts.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, opts.grad_clip)
        opt.step()
        step += 1
        result.losses.append(float(loss.detach()))
        if opts.log_every and (step % opts.log_every == 0 or step == opts.steps):
            rows.append({"step": step, "loss": result.losses[-1]})
            log(f"step {step}/{opts.steps} loss {result.losses[-1]:.5f}")
        if opts.save_every and step % opts.save_every == 0 and step < opts.steps:
            _save(model, base_keys, opt, gen, step, out, opts)
            write_log(out / LOG_FILE, rows)
    result.weights_path = _save(model, base_keys, opt, gen, step, out, opts)
    result.steps = step
    if val is not None:
        modes = ["none"] if opts.no_scene else (["scene", "zeroed", "none"] + (["shuffled"] if len(val_idx) > 1 else []))
        result.val = {m: evaluate(model, val, val_idx, opts, device, m, autocast) for m in modes}
        rows.append({"step": step, "val": result.val})
        log(f"held-out flow-matching mse after {step} steps: "
            + ", ".join(f"{m} {v['mse']:.5f}" for m, v in result.val.items()))
    write_log(out / LOG_FILE, rows)
    result.seconds = time.perf_counter() - t_start
    return result


# ------------------------------------------------------------------------------------------ CLI

def add_arguments(ap: argparse.ArgumentParser) -> None:
    d = TrainOptions(data="", out="")
    ap.add_argument("--data", required=True, help="folder of scene folders (lavr_core.train.data_multicam layout)")
    ap.add_argument("--out", required=True, help="output folder: adapter weights, training state, log")
    ap.add_argument("--base", required=True, help="ReCamMaster step20000.ckpt (or 'tiny-random' for smoke tests)")
    ap.add_argument("--vae", required=True, help="Wan2.1 VAE, e.g. wan_2.1_vae.safetensors (or 'tiny-random')")
    ap.add_argument("--cut3r", help="CUT3R checkpoint, to compute scene latents missing from scene_latents/")
    ap.add_argument("--weights", help="start from these LaVR adapter weights")
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--train", default=d.train, help="DiT parameters to train besides the adapter: name substrings, "
                    "comma-separated, 'all' or 'none'")
    ap.add_argument("--hidden", type=int, default=d.hidden, help="adapter width")
    ap.add_argument("--adapter-layers", type=int, default=d.adapter_layers)
    ap.add_argument("--adapter-heads", type=int, default=d.adapter_heads)
    ap.add_argument("--query-stride", type=int, default=d.query_stride, help="one query per NxN latent cells")
    ap.add_argument("--adapter-frames", type=int, default=d.adapter_frames,
                    help="adapter latent frames (0: one per target latent frame)")
    ap.add_argument("--state-every", type=int, default=d.state_every, help="CUT3R state snapshots every k frames")
    ap.add_argument("--frames", type=int, help="video frames to use (4k+1; default: as many as fit)")
    ap.add_argument("--size", type=parse_size, help="train at HxW (multiples of 16; default: the videos' size)")
    ap.add_argument("--context", help="safetensors with 'context' [tokens, text_dim]: umT5 features used when a "
                    "scene has no context.safetensors")
    ap.add_argument("--context-tokens", type=int, help="rows of the zero context (default: the DiT's 512)")
    ap.add_argument("--no-scene", action="store_true", help="ablation: train without the scene latent")
    ap.add_argument("--cache-latents", action="store_true",
                    help="first write every video's VAE latents to latents/<cam>.safetensors in its scene folder")
    ap.add_argument("--weighting", default=d.weighting, help="loss weight per timestep: 'recammaster' (its "
                    "training weights, ~0 at pure noise) or 'uniform'")
    ap.add_argument("--grad-clip", type=float, default=d.grad_clip)
    ap.add_argument("--batch-size", type=int, default=d.batch_size,
                    help="pairs per step (each its own scene, timestep, noise), run as one batch")
    ap.add_argument("--val-data", help="held-out scenes")
    ap.add_argument("--val-scenes", type=int, default=0, help="hold out the last N scenes of --data instead")
    ap.add_argument("--val-timesteps", type=lambda s: tuple(int(v) for v in s.split(",")), default=d.val_timesteps,
                    help="schedule indices (0 = pure noise .. 999) the held-out loss is measured at, comma-separated")
    ap.add_argument("--save-every", type=int, default=d.save_every)
    ap.add_argument("--log-every", type=int, default=d.log_every)
    ap.add_argument("--resume", action="store_true", help="continue from the state in --out")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N")
    ap.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True, help="bf16 autocast on CUDA")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="recompute DiT blocks in the backward pass")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")


def main(args: argparse.Namespace) -> int:
    opts = TrainOptions(**{k: getattr(args, k) for k in TrainOptions.__dataclass_fields__ if hasattr(args, k)})
    res = train(opts)
    print(f"done: {res.steps} steps in {res.seconds:.1f} s; weights {res.weights_path}")
    for mode, v in (res.val or {}).items():
        print(f"held-out mse ({mode}): {v['mse']:.5f}")
    return 0
