"""Re-render a video along a new camera path with ReCamMaster (optionally with a LaVR scene adapter).

Pipeline (``rerender``): source frames -> Wan VAE latents (encoded once, chunked and causal) ->
flow-matching sampling of the target latents with the source latents appended along frames ->
decoded target frames. The DiT and the VAE are used one after the other, each inside ``place(part)``
(the caller's context manager that puts it on the accelerator and back), so they never need the
accelerator at the same time.

Frame counts (``plan_frames``), documented for users in the sampler node:

* The Wan VAE takes ``4k + 1`` frames. A video of another length is **trimmed** to the longest
  ``4k + 1`` prefix (at most 3 frames dropped, said in the notes). Fewer than ``MIN_FRAMES`` (5)
  frames is an error. ReCamMaster was trained on 81 frames (21 latent frames); other lengths run
  but are outside its training.
* The target trajectory must give one camera per used frame. One with as many frames as the video
  before trimming is trimmed the same way; one with exactly the used count is taken as is; any
  other length is resampled in time (``trajectory_fit="resample"``, the default, keeps its first
  and last cameras) or refused (``"error"``).
* Height and width must be multiples of 16 (8x VAE, 2x2 patches): anything else is an error that
  says which size to resize or crop to.

Sampling follows ReCamMaster's inference: one timestep for the whole sequence, rounded to bf16;
the text context zero-padded to 512 tokens; CFG ``neg + cfg (pos - neg)`` with the same source
latents and cameras in both passes (skipped at ``cfg = 1``); only the target half of the prediction
steps, the source latents stay clean.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from ..camera.trajectory import CameraTrajectory
from ..errors import InputError, TrajectoryError
from .conditioning import text_context
from .recammaster import VAE_TEMPORAL_STRIDE, camera_embedding, concat_target_source, target_half
from .sampling import SamplerSettings, StepCallback, VelocityFn, flow_sample, initial_noise

#: Shortest source video the re-render accepts (frames): two latent frames.
MIN_FRAMES = 5
#: Height and width must be multiples of this (VAE 8x, patch 2x).
SIZE_MULTIPLE = 16
TRAJECTORY_FIT = ("resample", "error")

#: ``place(part)`` for ``part in ("dit", "vae")``: a context manager yielding the module on the
#: device it should run on (and putting it back afterwards).
Placer = Callable[[str], contextlib.AbstractContextManager]


@dataclass(frozen=True)
class FramePlan:
    """How a source video and a target trajectory are matched up.

    Attributes:
        input_frames: frames of the source video as given.
        num_frames: frames used (``4k + 1``, the first ones of the video).
        num_latent_frames: ``k + 1``.
        height / width: frame size in pixels (multiples of 16).
        trajectory: the target cameras used, ``num_frames`` of them, intrinsics for ``width x height``.
        notes: what was trimmed or resampled, for the user.
    """

    input_frames: int
    num_frames: int
    num_latent_frames: int
    height: int
    width: int
    trajectory: CameraTrajectory
    notes: tuple[str, ...] = ()

    @property
    def latent_hw(self) -> tuple[int, int]:
        return self.height // 8, self.width // 8


def used_frame_count(num_frames: int, stride: int = VAE_TEMPORAL_STRIDE) -> int:
    """The longest ``stride * k + 1`` count not above ``num_frames``."""
    return stride * ((num_frames - 1) // stride) + 1


def check_video(images, min_frames: int = MIN_FRAMES) -> torch.Tensor:
    """A ComfyUI IMAGE ``[T, H, W, 3]`` fit for re-rendering, or an ``InputError`` saying what to change."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] != 3:
        raise InputError(f"The source video must be an IMAGE batch [frames, height, width, 3]; got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}.",
                         "Connect Load Video -> Get Video Components (images), or a Load Image batch.")
    t, h, w = images.shape[:3]
    if t < min_frames:
        raise InputError(f"The source video has {t} frame{'s' if t != 1 else ''}; re-rendering needs at least "
                         f"{min_frames} (a 4k+1 count; ReCamMaster was trained on 81).",
                         "Load a longer clip (Load Video loads every frame; check any frame cap or batch slicing "
                         "in between).")
    if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
        def down(v):
            return max(SIZE_MULTIPLE, v // SIZE_MULTIPLE * SIZE_MULTIPLE)
        raise InputError(f"The source video is {w}x{h} pixels; the Wan VAE and DiT need both sides to be multiples "
                         f"of {SIZE_MULTIPLE}.",
                         f"Resize or crop the frames first, e.g. to {down(w)}x{down(h)} (ImageScale or ImageCrop), or "
                         "to 832x480 as ReCamMaster was trained.")
    if not torch.isfinite(images).all():
        raise InputError("The source video holds NaN or infinite values.", "Check the node that produced the frames.")
    return images


def plan_frames(images: torch.Tensor, trajectory: CameraTrajectory, *, trajectory_fit: str = "resample",
                min_frames: int = MIN_FRAMES) -> FramePlan:
    """Reconcile the video's and the trajectory's frame counts (see the module doc)."""
    if trajectory_fit not in TRAJECTORY_FIT:
        raise InputError(f"Unknown trajectory_fit {trajectory_fit!r}.", f"Use one of {', '.join(TRAJECTORY_FIT)}.")
    if not isinstance(trajectory, CameraTrajectory):
        raise TrajectoryError(f"The target trajectory is a {type(trajectory).__name__}, not a camera trajectory.",
                              "Connect the Camera Trajectory Builder or Load Camera Trajectory.")
    check_video(images, min_frames)
    t_in, h, w = (int(v) for v in images.shape[:3])
    n = used_frame_count(t_in)
    notes = []
    if n < t_in:
        notes.append(f"Used the first {n} of {t_in} frames (the Wan VAE takes 4k+1 frames).")
    t_traj = trajectory.num_frames
    if not torch.isfinite(trajectory.c2w).all():  # a trajectory is validated when made; this guards mutation
        raise TrajectoryError("The target trajectory holds NaN or infinite poses.",
                              "Rebuild it; every camera must be finite.")
    if t_traj == n:
        traj = trajectory
    elif t_traj == t_in:
        traj = trajectory.subset(slice(0, n))
        notes.append(f"Trimmed the trajectory to its first {n} cameras, like the video.")
    elif trajectory_fit == "resample":
        from ..camera.interpolate import resample_trajectory

        traj = resample_trajectory(trajectory, n, fps=trajectory.fps)
        notes.append(f"Resampled the trajectory from {t_traj} to {n} cameras (same path, first and last kept).")
    else:
        raise TrajectoryError(f"The target trajectory has {t_traj} cameras but the video has {t_in} frames "
                              f"({n} used).",
                              f"Set the trajectory's frame count to {n} (Camera Trajectory Builder: frames), or set "
                              "trajectory_fit to resample.")
    if (traj.width, traj.height) != (w, h):
        traj = traj.with_image_size(w, h)
    return FramePlan(input_frames=t_in, num_frames=n, num_latent_frames=(n - 1) // VAE_TEMPORAL_STRIDE + 1,
                     height=h, width=w, trajectory=traj, notes=tuple(notes))


def images_to_video(images: torch.Tensor, num_frames: int) -> torch.Tensor:
    """IMAGE ``[T, H, W, 3]`` in [0, 1] -> VAE input ``[1, 3, num_frames, H, W]`` in [-1, 1] (first frames)."""
    return images[:num_frames].float().permute(3, 0, 1, 2)[None].mul(2.0).sub(1.0)


def video_to_images(video: torch.Tensor) -> torch.Tensor:
    """VAE output ``[1, 3, T, H, W]`` in [-1, 1] -> IMAGE ``[T, H, W, 3]`` float32 in [0, 1] on the CPU."""
    return video[0].float().add(1.0).mul(0.5).clamp(0.0, 1.0).permute(1, 2, 3, 0).contiguous().cpu()


def camera_velocity(dit: nn.Module, source: torch.Tensor, cam_emb: torch.Tensor, context_pos: torch.Tensor,
                    context_neg: torch.Tensor, condition: dict | None = None) -> VelocityFn:
    """ReCamMaster's velocity for the target latents ``x [B, C, F, h, w]``: the DiT sees
    ``cat([x, source], dim=2)`` and only the target half of its prediction is returned."""
    frames = source.shape[2]
    condition = condition or {}

    def velocity(x: torch.Tensor, t: torch.Tensor, positive: bool) -> torch.Tensor:
        pred = dit(concat_target_source(x, source), t, context_pos if positive else context_neg,
                   cam_emb=cam_emb, **condition)
        return target_half(pred, frames)

    return velocity


@dataclass
class RerenderResult:
    """``images [N, H, W, 3]`` float32 CPU in [0, 1]; ``latents [1, 16, F, h, w]`` (CPU) of the target;
    ``plan`` with the trajectory used; ``notes`` for the user."""

    images: torch.Tensor
    latents: torch.Tensor
    plan: FramePlan
    notes: list[str] = field(default_factory=list)

    @property
    def trajectory(self) -> CameraTrajectory:
        return self.plan.trajectory


def _no_move(model) -> Placer:
    @contextlib.contextmanager
    def place(part: str):
        yield model.part(part)

    return place


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def rerender(model, images: torch.Tensor, trajectory: CameraTrajectory, positive, negative,
             settings: SamplerSettings = SamplerSettings(), *, scene=None, trajectory_fit: str = "resample",
             place: Placer | None = None, callback: StepCallback | None = None) -> RerenderResult:
    """Re-render ``images`` (the source video) along ``trajectory``.

    Args:
        model: a ``VideoModel`` of variant ``recammaster`` or ``lavr``.
        images: ComfyUI IMAGE ``[T, H, W, 3]`` in [0, 1].
        trajectory: target cameras (OpenCV c2w); only their poses relative to the first one matter.
        positive / negative: ComfyUI CONDITIONING (umT5 features ``[1, L, text_dim]``) or tensors.
        settings: steps, cfg, shift, seed, denoise. ``denoise < 1`` starts from the *source* latents
            re-noised to that level (the result stays closer to the source video).
        scene: ``lavr_core.scene.SceneLatent``; required by a LaVR adapter, unused otherwise.
        place: see ``Placer``; default: run where the modules are.
        callback: per-step ``(step, total, x, x0_estimate)``; raising in it stops sampling.
    """
    model.require("The LaVR Sampler", "recammaster", "lavr")
    plan = plan_frames(images, trajectory, trajectory_fit=trajectory_fit)
    notes = list(plan.notes)
    if model.variant == "lavr" and scene is None:
        raise InputError("The loaded LaVR adapter needs the scene latent of the source video.",
                         "Connect Encode Scene Latent's scene_latent output to the sampler's scene_latent input.")
    if model.variant == "lavr" and getattr(scene, "num_frames", plan.input_frames) != plan.input_frames:
        raise InputError(f"The scene latent was encoded from {scene.num_frames} frames but the source video has "
                         f"{plan.input_frames}.", "Encode the scene latent from the same video you re-render.")
    if model.variant != "lavr" and scene is not None:
        notes.append("The scene latent is not used: no LaVR adapter is loaded (ReCamMaster alone).")
    place = place or _no_move(model)
    config = model.config
    cam_emb = camera_embedding(plan.trajectory, num_latent_frames=plan.num_latent_frames)
    if not torch.isfinite(cam_emb).all():
        raise TrajectoryError("The target trajectory gives non-finite camera inputs.", "Rebuild the trajectory.")
    # Checked before any model runs: a wrong text encoder should not cost a VAE pass first.
    ctx_pos = text_context(positive, config.text_dim, text_len=config.text_len, what="positive")
    ctx_neg = text_context(negative, config.text_dim, text_len=config.text_len, what="negative")
    for ctx, what in ((ctx_pos, "positive"), (ctx_neg, "negative")):
        if ctx.shape[0] != 1:
            raise InputError(f"The {what} conditioning holds a batch of {ctx.shape[0]} prompts; one video is "
                             "re-rendered at a time.", "Connect a single CLIPTextEncode.")

    with place("vae") as vae, torch.inference_mode():
        dev = _device_of(vae)
        source = vae.encode(images_to_video(images, plan.num_frames).to(dev)).float()

    with place("dit") as dit, torch.inference_mode():
        dev = _device_of(dit)
        source = source.to(dev)
        ctx_pos, ctx_neg = ctx_pos.to(dev), ctx_neg.to(dev)
        condition = {}
        if model.variant == "lavr":
            condition = dit.condition_kwargs(scene, cam_emb, plan.num_latent_frames, plan.latent_hw)
            condition = {k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in condition.items()}
        velocity = camera_velocity(dit, source, cam_emb.to(dev), ctx_pos, ctx_neg, condition)
        noise = initial_noise(source.shape, settings.seed, device=dev)
        latents = flow_sample(velocity, noise, settings, init_latent=source, callback=callback)
    del source

    with place("vae") as vae, torch.inference_mode():
        out = vae.decode(latents.to(_device_of(vae)))
        frames = video_to_images(out)
    return RerenderResult(images=frames, latents=latents.float().cpu(), plan=plan, notes=notes)


__all__ = ["FramePlan", "MIN_FRAMES", "RerenderResult", "SIZE_MULTIPLE", "TRAJECTORY_FIT", "camera_velocity",
           "check_video", "images_to_video", "plan_frames", "rerender", "used_frame_count", "video_to_images"]
