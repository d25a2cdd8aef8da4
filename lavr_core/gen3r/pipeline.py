"""Gen3R inference: one image (or a first and a last image), an optional camera path and a text
context -> an RGB video with its depth, points and cameras (``Gen3RPipeline.__call__`` +
``decode_latents`` of JaceyHuang/Gen3R, written for LaVR).

Steps (the official ones, in order):

1. **Control frames.** Each image is resized so its short side is the model's size (560) and
   centre-cropped to a square. The control video holds them at frame 0 (and frame ``T - 1``), black
   (``-1``) elsewhere; the Wan VAE encodes it and a *sample* of its posterior is the appearance half
   of the control latent; the geometry half is zeros. Four mask channels mark the control frames
   on the appearance half only (``control_mask``): ``y = [latent (16) | mask (4)]``.
2. **Camera.** A trajectory becomes Plücker rays at the video's pixels, relative to its first
   camera, packed 4 frames per latent frame and duplicated along width (``camera.py``); without a
   trajectory ("free": the model chooses the motion) the rays are **zeros**, which the camera
   adapter still reads, as in ``infer.py``.
3. **Sampling.** Noise ``[1, 16, f, h, 2w]`` (appearance | geometry) goes through the shared
   rectified-flow loop (``lavr_core.wan.sampling.flow_sample``) on diffusers' Euler schedule
   (``schedule.py``, shift 2), classifier-free guidance ``neg + cfg (pos - neg)``, the negative
   branch seeing the negative prompt with the same control, camera and CLIP features.
4. **Decoding.** The appearance half through the Wan VAE gives the frames; the geometry half through
   the geometry adapter gives VGGT tokens, which VGGT's camera, depth and point heads read
   (``heads.py``). Points are the depth unprojected through the predicted cameras, with Gen3R's
   ``min_max_depth_mask`` (depth above its 0.1th percentile and below min(98th percentile, 50)).

Offloading: the DiT, the VAE, the adapter and the heads are brought to the run device by a
``ModelPlacer`` one at a time unless a byte budget says they fit together; whatever was moved goes
back to the offload device when ``generate`` returns or fails.

Precision: latents stay float32 between steps (the official pipeline keeps them bf16), the heads
run in float32; timesteps reach the float64 time embedding unrounded, as in Gen3R.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import CheckpointError, InputError, TrajectoryError
from ..wan.sampling import SamplerSettings, flow_sample, initial_noise
from .camera import control_camera_from_trajectory
from .dit import Gen3RDiT, join_latents, split_latents
from .geometry_adapter import GeometryAdapter
from .heads import GeometryHeads, GeometryPrediction
from .schedule import GEN3R_CFG, GEN3R_SHIFT, GEN3R_STEPS, DiffusersFlowMatchScheduler

#: Gen3R's video length (``infer.py``); any ``4k + 1`` works mechanically.
GEN3R_FRAMES = 49
#: Mask channels of the control latent (one per video frame folded into a latent frame).
MASK_CHANNELS = 4
#: Wan VAE spatial factor: latent cells per pixel.
VAE_SCALE = 8

#: ``on_progress(done, total)`` after each unit of work (sampling steps and decode stages); raise in
#: it to stop (ComfyUI's interrupt does).
ProgressFn = Callable[[int, int], None]


def gen3r_settings(steps: int = GEN3R_STEPS, cfg: float = GEN3R_CFG, shift: float = GEN3R_SHIFT,
                   seed: int = 0) -> SamplerSettings:
    """``SamplerSettings`` with Gen3R's defaults (50 steps, guidance 5, shift 2, unrounded timesteps)."""
    return SamplerSettings(steps=steps, cfg=cfg, shift=shift, seed=seed, timestep_dtype=None)


# ----------------------------------------------------------------------------- models

def module_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


class Gen3RModels(nn.Module):
    """The four networks Gen3R samples and decodes with, checked to belong together.

    ``dit`` (``Gen3RDiT``), ``adapter`` (``GeometryAdapter``), ``vae`` (``WanVAE``), ``heads``
    (``GeometryHeads``). The video is square, ``size`` pixels: the adapter decodes to a fixed VGGT
    token grid (40 x 40 released), i.e. ``14 * grid`` pixels (560), which the Wan latent must match.
    """

    def __init__(self, dit: Gen3RDiT, adapter: GeometryAdapter, vae, heads: GeometryHeads):
        super().__init__()
        self.dit, self.adapter, self.vae, self.heads = dit, adapter, vae, heads
        z = vae.config.z_dim
        c = dit.config
        if adapter.config.latent_channels != z or c.out_dim != z:
            raise CheckpointError(f"The Wan VAE has {z} latent channels, the geometry adapter "
                                  f"{adapter.config.latent_channels} and the DiT predicts {c.out_dim}.",
                                  "Load the DiT, adapter and VAE of one Gen3R release.")
        if c.in_dim != 2 * z + MASK_CHANNELS:
            raise CheckpointError(f"The DiT takes {c.in_dim} input channels; Gen3R feeds {2 * z + MASK_CHANNELS} "
                                  f"(latent {z} + control latent {z} + mask {MASK_CHANNELS}).",
                                  "Load the transformer of JaceyH919/Gen3R.")
        if adapter.config.output_dim != 5 * heads.token_dim:
            raise CheckpointError(f"The geometry adapter decodes {adapter.config.output_dim}-channel tokens; these "
                                  f"VGGT heads read 5 x {heads.token_dim} = {5 * heads.token_dim}.",
                                  "Use the VGGT weights Gen3R was trained with (VGGT-1B).")
        gh, gw = adapter.config.vae_config().stem_out_size
        if gh != gw:
            raise CheckpointError(f"The geometry adapter decodes a {gh}x{gw} token grid; Gen3R's video is square.",
                                  "Use the released geometry adapter.")
        size = gh * heads.patch_size
        if size % (2 * VAE_SCALE):
            raise CheckpointError(f"The geometry grid {gh}x{gw} means {size}-pixel frames, which the Wan latent "
                                  f"(/{VAE_SCALE}, patches of 2) cannot match.", "Use the released geometry adapter.")
        self.size = size

    @property
    def needs_clip(self) -> bool:
        return bool(self.dit.config.has_image_input)

    def parts(self) -> dict[str, nn.Module]:
        return {"dit": self.dit, "vae": self.vae, "adapter": self.adapter, "heads": self.heads}


class ModelPlacer:
    """Moves the pipeline's networks to the run device on use.

    With ``budget_bytes=None`` only the network in use is on the run device (the others are sent
    back first); with a budget, networks stay resident while their bytes fit in it, the least
    recently used going back first. ``before_load(bytes)`` runs before a network moves (ComfyUI
    frees its own idle models there). ``history`` records ``("load"|"offload", name)``.
    """

    def __init__(self, device="cpu", offload_device="cpu", budget_bytes: int | None = None,
                 before_load: Callable[[int], None] | None = None):
        self.device = torch.device(device)
        self.offload_device = torch.device(offload_device)
        self.budget = budget_bytes
        self.before_load = before_load
        self.resident: dict[str, nn.Module] = {}
        self.history: list[tuple[str, str]] = []
        self.max_resident = 0

    def _offload(self, name: str) -> None:
        self.resident.pop(name).to(self.offload_device)
        self.history.append(("offload", name))

    @contextlib.contextmanager
    def use(self, name: str, module: nn.Module):
        if name in self.resident:
            self.resident[name] = self.resident.pop(name)  # most recently used last
        else:
            need = module_bytes(module)
            for other in list(self.resident):
                used = sum(module_bytes(m) for m in self.resident.values())
                if self.budget is None or used + need > self.budget:
                    self._offload(other)
            if self.before_load is not None:
                self.before_load(need)
            module.to(self.device)
            self.resident[name] = module
            self.history.append(("load", name))
            self.max_resident = max(self.max_resident, len(self.resident))
        yield module

    def release(self) -> None:
        for name in list(self.resident):
            self._offload(name)


# ----------------------------------------------------------------------------- inputs

def check_images(images: Tensor, last: Tensor | None = None) -> Tensor:
    """ComfyUI IMAGE(s) -> ``[N, H, W, 3]`` float in [0, 1] with N = 1 (first) or 2 (first, last)."""
    def one(img, what):
        if not isinstance(img, Tensor) or img.ndim not in (3, 4) or img.shape[-1] not in (3, 4):
            raise InputError(f"The {what} has shape {tuple(getattr(img, 'shape', ()))}; expected an IMAGE "
                             "[1, H, W, 3].", "Connect a Load Image node.")
        img = img[None] if img.ndim == 3 else img
        if img.shape[0] != 1:
            raise InputError(f"The {what} holds {img.shape[0]} frames; Gen3R starts from one image (plus, "
                             "optionally, a last image).", "Pick one frame (ImageFromBatch) for each input.")
        if img.shape[1] < 2 or img.shape[2] < 2:
            raise InputError(f"The {what} is {img.shape[2]}x{img.shape[1]} pixels.", "Use a real picture.")
        img = img[..., :3].float()
        if not torch.isfinite(img).all():
            raise InputError(f"The {what} holds NaN or infinite values.", "Check the node that produced it.")
        return img.clamp(0, 1)

    first = one(images, "image")
    if last is None:
        return first
    end = one(last, "last image")
    if end.shape[1:3] != first.shape[1:3]:
        raise InputError(f"The first image is {first.shape[2]}x{first.shape[1]} and the last image "
                         f"{end.shape[2]}x{end.shape[1]} pixels; they must be the same size.",
                         "Resize or crop one of them (e.g. ImageScale) to the other's size.")
    return torch.cat([first, end.to(first.device)], 0)


def square_crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """``(resized_h, resized_w, top, left)``: the short side scaled to ``size``, then a centred square."""
    s = size / min(height, width)
    rh, rw = round(height * s), round(width * s)
    return rh, rw, max(0, (rh - size) // 2), max(0, (rw - size) // 2)


def control_images(images: Tensor, size: int) -> Tensor:
    """``[N, H, W, 3]`` -> ``[N, 3, size, size]`` in [0, 1]: resized (bilinear, antialiased) and centre-cropped."""
    x = images.permute(0, 3, 1, 2)
    rh, rw, top, left = square_crop_box(x.shape[2], x.shape[3], size)
    if (rh, rw) != tuple(x.shape[2:]):
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)
    return x[:, :, top:top + size, left:left + size].clamp(0, 1)


def control_index(num_views: int, num_frames: int) -> list[int]:
    """The video frames the control images sit at: 0, or 0 and the last."""
    return [0] if num_views == 1 else [0, num_frames - 1]


def control_video(images: Tensor, num_frames: int) -> Tensor:
    """``[N, 3, S, S]`` in [0, 1] -> ``[1, 3, T, S, S]`` in [-1, 1]: the images at their frames, black elsewhere."""
    n, c, h, w = images.shape
    video = torch.zeros(num_frames, c, h, w, dtype=images.dtype, device=images.device)
    video[control_index(n, num_frames)] = images
    return (video * 2 - 1).clamp(-1, 1).permute(1, 0, 2, 3)[None]


def control_mask(num_views: int, num_frames: int, lat_h: int, lat_w: int) -> Tensor:
    """``[1, 4, f, lat_h, 2 lat_w]``: 1 on the appearance half of the control frames, 0 elsewhere.

    Per video frame first (``[T, h, 2w]``), then Wan's temporal fold: frame 0 four times, and four
    frames per latent frame on the channels (channel ``j`` of latent frame ``k`` is video frame
    ``4k + j - 3``, frame 0 for ``k = 0``).
    """
    m = torch.zeros(num_frames, lat_h, 2 * lat_w)
    m[control_index(num_views, num_frames), :, :lat_w] = 1.0
    m = torch.cat([m[:1].expand(MASK_CHANNELS, -1, -1), m[1:]], 0)
    return m.reshape(-1, MASK_CHANNELS, lat_h, 2 * lat_w).transpose(0, 1)[None]


def square_trajectory(trajectory, size: int):
    """The trajectory's cameras for its images resized and centre-cropped to ``size`` x ``size``,
    the crop the control images get (the principal point moves with the crop)."""
    rh, rw, top, left = square_crop_box(trajectory.height, trajectory.width, size)
    S = torch.tensor([[rw / trajectory.width, 0, -left], [0, rh / trajectory.height, -top], [0, 0, 1.0]],
                     dtype=torch.float64)
    return trajectory.replace(K=S @ trajectory.K, width=size, height=size)


def camera_control(trajectory, num_frames: int, size: int) -> Tensor:
    """Plücker control ``[1, 24, f, size, 2 size]``; zeros without a trajectory ("free")."""
    f = 1 + (num_frames - 1) // 4
    if trajectory is None:
        return torch.zeros(1, 6 * 4, f, size, 2 * size)
    if trajectory.num_frames != num_frames:
        raise TrajectoryError(f"The camera trajectory has {trajectory.num_frames} frames; the video has {num_frames}.",
                              f"Build the trajectory with {num_frames} frames (Camera Trajectory Builder 'frames'), "
                              "or set the sampler's frames to match it.")
    return control_camera_from_trajectory(square_trajectory(trajectory, size), size, size)


def check_frames(num_frames: int) -> int:
    if int(num_frames) != num_frames or num_frames < 5 or (num_frames - 1) % 4:
        raise InputError(f"Gen3R generates 4k+1 frames (at least 5); got {num_frames}.",
                         "Use 49 (Gen3R's length) or another 4k+1 such as 9, 25, 81.")
    return int(num_frames)


def check_context(context: Tensor, text_dim: int, what: str) -> Tensor:
    if not isinstance(context, Tensor) or context.ndim != 3 or context.shape[0] != 1 or context.shape[2] != text_dim:
        raise InputError(f"The {what} text context has shape {tuple(getattr(context, 'shape', ()))}; this DiT takes "
                         f"[1, tokens, {text_dim}].",
                         "Encode the prompt with CLIPTextEncode on Wan's umT5-XXL (CLIPLoader type 'wan').")
    return context


def check_clip(clip_feature: Tensor | None, dit: Gen3RDiT) -> Tensor | None:
    c = dit.config
    if not c.has_image_input:
        return None  # a text-only DiT has no image branch to feed
    if clip_feature is None:
        raise InputError("This Gen3R DiT has a CLIP image branch and needs the first image's CLIP vision features.",
                         "Connect CLIPVisionLoader (clip_vision_h.safetensors) -> CLIPVisionEncode (the first image, "
                         "crop center) to the sampler's clip_vision_output.")
    if clip_feature.ndim == 2:
        clip_feature = clip_feature[None]
    if clip_feature.ndim != 3 or clip_feature.shape[-1] != c.image_dim:
        raise InputError(f"The CLIP vision features have shape {tuple(clip_feature.shape)}; this DiT takes "
                         f"[1, {c.image_tokens}, {c.image_dim}] (ViT-H/14 penultimate layer).",
                         "Use clip_vision_h.safetensors (the CLIP Wan2.1 I2V uses) in CLIPVisionLoader.")
    return clip_feature[:1]


# ----------------------------------------------------------------------------- result

@dataclass
class Gen3RResult:
    """What ``generate`` returns (CPU tensors; ``T`` frames of ``S x S`` pixels).

    Attributes:
        frames: ``[T, S, S, 3]`` RGB in [0, 1].
        geometry: the VGGT heads' outputs (``heads.GeometryPrediction``), float32.
        c2w: ``[T, 4, 4]`` float64 camera-to-world (OpenCV), world = the first predicted camera.
        K: ``[T, 3, 3]`` float64 intrinsics in pixels of ``S x S``.
        points: ``[T, S, S, 3]`` depth unprojected through the cameras (Gen3R's ``pcds``).
        point_mask: ``[T, S, S]`` bool: Gen3R's min/max depth mask.
        latents: the sampled ``[1, 16, f, h, 2w]`` latents (appearance | geometry).
        control: the control images ``[N, 3, S, S]`` in [0, 1] as the model saw them.
    """

    frames: Tensor
    geometry: GeometryPrediction
    c2w: Tensor
    K: Tensor
    points: Tensor
    point_mask: Tensor
    latents: Tensor
    control: Tensor
    meta: dict = field(default_factory=dict)

    @property
    def depth(self) -> Tensor:
        return self.geometry.depth

    def trajectory(self, fps: float = 16.0):
        from ..camera.trajectory import CameraTrajectory

        s = self.frames.shape[1]
        return CameraTrajectory(c2w=self.c2w, K=self.K, width=s, height=s, fps=fps,
                                meta={"source": "gen3r", **self.meta})

    def point_cloud(self, max_points: int = 500_000, seed: int = 0):
        from ..pointcloud import PointCloud

        m = self.point_mask
        if not m.any():
            raise InputError("No pixel passed Gen3R's depth mask, so the point cloud is empty.",
                             "The geometry decoded badly: check that the VGGT and adapter weights are the "
                             "released ones.")
        cloud = PointCloud(self.points[m], self.frames[m], self.geometry.depth_conf[m],
                           meta={"source": "gen3r", **self.meta})
        return cloud.subsample(max_points, seed)

    def gaussians(self, max_gaussians: int = 500_000, seed: int = 0):
        """One isotropic Gaussian per masked pixel (``vggt4d.init_free.training_free``), subsampled."""
        from ..vggt4d.init_free import training_free

        g = training_free(self.geometry.depth, self.geometry.depth_conf, self.frames, self.c2w, self.K)
        gs = g.flatten(self.point_mask, meta={"source": "gen3r", **self.meta})
        if len(gs) > max_gaussians:
            gen = torch.Generator().manual_seed(seed)
            gs = gs.subset(torch.randperm(len(gs), generator=gen)[:max_gaussians].sort().values)
        return gs


def depth_mask(depth: Tensor) -> Tensor:
    """Gen3R's ``min_max_depth_mask`` per frame: ``max(1e-8, p0.1) < d < min(p98, 50)``."""
    flat = depth.reshape(depth.shape[0], -1).float()
    lo = torch.quantile(flat, 0.001, dim=1).clamp_min(1e-8)
    hi = torch.quantile(flat, 0.98, dim=1).clamp_max(50.0)
    return (depth > lo[:, None, None]) & (depth < hi[:, None, None])


def cameras_from_extrinsics(extrinsics: Tensor) -> Tensor:
    from ..camera.transforms import invert_pose

    w2c = torch.eye(4, dtype=torch.float64).repeat(extrinsics.shape[0], 1, 1)
    w2c[:, :3] = extrinsics.to(torch.float64)
    return invert_pose(w2c)


# ----------------------------------------------------------------------------- pipeline

def generate(models: Gen3RModels, images: Tensor, context: Tensor, *, negative_context: Tensor | None = None,
             trajectory=None, clip_feature: Tensor | None = None, num_frames: int = GEN3R_FRAMES,
             settings: SamplerSettings | None = None, placer: ModelPlacer | None = None,
             on_progress: ProgressFn | None = None) -> Gen3RResult:
    """Run Gen3R (module docstring).

    Args:
        images: ``[1, H, W, 3]`` (first image) or ``[2, H, W, 3]`` (first and last), RGB in [0, 1]
            (``check_images``).
        context / negative_context: umT5 features ``[1, L, text_dim]``; a missing negative is the
            empty (all-padding) prompt.
        trajectory: a ``CameraTrajectory`` of ``num_frames`` cameras, or ``None`` ("free").
        clip_feature: ``[1, 257, 1280]`` CLIP features of the first image; required when the DiT has
            the image branch (the released one does), ignored otherwise.
        settings: ``gen3r_settings(...)`` by default.
        placer: where the networks run (default: all on the CPU).
    """
    settings = settings or gen3r_settings()
    placer = placer or ModelPlacer()
    num_frames = check_frames(num_frames)
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[0] not in (1, 2) or images.shape[-1] != 3:
        raise InputError(f"Control images have shape {tuple(getattr(images, 'shape', ()))}; expected "
                         "[1 or 2, H, W, 3].",
                         "Give the first image, or the first and the last image.")
    dit, c = models.dit, models.dit.config
    context = check_context(context, c.text_dim, "positive")
    if negative_context is None:
        negative_context = torch.zeros(1, 1, c.text_dim)
    negative_context = check_context(negative_context, c.text_dim, "negative")
    clip = check_clip(clip_feature, dit)
    if trajectory is not None and not c.add_control_adapter:
        raise InputError("This DiT has no camera adapter, but a camera trajectory was given.",
                         "Load the Gen3R (Control-Camera) transformer, or disconnect the trajectory.")
    S = models.size
    lat = S // VAE_SCALE
    f = 1 + (num_frames - 1) // 4
    n_views = images.shape[0]
    control = control_images(images.float().cpu(), S)
    cam = camera_control(trajectory, num_frames, S) if c.add_control_adapter else None
    total = settings.steps + 4
    done = [0]

    def tick(n: int = 1):
        done[0] += n
        if on_progress is not None:
            on_progress(min(done[0], total), total)

    try:
        with torch.inference_mode():
            dev = placer.device
            with placer.use("vae", models.vae) as vae:
                dist = vae.encode_distribution(control_video(control, num_frames).to(dev))
                eps = initial_noise(dist.mean.shape, settings.seed + 1, device=dev, dtype=dist.mean.dtype)
                app = (dist.mean + dist.std * eps).float()
            mask = control_mask(n_views, num_frames, lat, lat).to(dev)
            y = torch.cat([join_latents(app, torch.zeros_like(app)), mask], 1)
            tick()

            with placer.use("dit", dit):
                wd = dit.dtype
                ctx_pos, ctx_neg = context.to(dev, wd), negative_context.to(dev, wd)
                y_in = y.to(wd)
                cam_in = None if cam is None else cam.to(dev, wd)
                clip_in = None if clip is None else clip.to(dev, wd)

                def velocity(x: Tensor, t: Tensor, positive: bool) -> Tensor:
                    return dit(x, t, ctx_pos if positive else ctx_neg, y=y_in, clip_feature=clip_in, y_camera=cam_in)

                noise = initial_noise((1, c.out_dim, f, lat, 2 * lat), settings.seed, device=dev)
                latents = flow_sample(velocity, noise, settings,
                                      scheduler=DiffusersFlowMatchScheduler(shift=settings.shift),
                                      callback=lambda i, n, x, x0: tick())
            app_lat, geo_lat = split_latents(latents)

            with placer.use("vae", models.vae) as vae:
                frames = (vae.decode(app_lat).float() / 2 + 0.5).clamp(0, 1)[0].permute(1, 2, 3, 0).cpu()
            tick()
            with placer.use("adapter", models.adapter) as adapter:
                tokens = adapter.decode(geo_lat)
            tick()
            with placer.use("heads", models.heads) as heads:
                geo = heads(tokens)
            tick()
    finally:
        placer.release()

    # clone: outside inference mode, so callers may change the results in place
    frames, latents = frames.clone(), latents.float().cpu().clone()
    geo = GeometryPrediction(*(t.detach().float().cpu().clone() for t in (
        geo.pose_enc, geo.extrinsics, geo.intrinsics, geo.depth, geo.depth_conf, geo.world_points,
        geo.world_points_conf)))
    if geo.depth.shape[1:] != frames.shape[1:3] or geo.depth.shape[0] != frames.shape[0]:
        raise CheckpointError(f"The geometry decodes to {tuple(geo.depth.shape)} but the video is "
                              f"{tuple(frames.shape)}.",
                              "The geometry adapter and the Wan VAE do not belong together.")
    from ..vggt.camera import unproject_depth_map_to_point_map

    points = unproject_depth_map_to_point_map(geo.depth, geo.extrinsics, geo.intrinsics)
    meta = {"views": n_views, "frames": num_frames, "steps": settings.steps, "cfg": settings.cfg,
            "shift": settings.shift, "seed": settings.seed,
            "camera": "trajectory" if trajectory is not None else "free"}
    return Gen3RResult(frames=frames, geometry=geo, c2w=cameras_from_extrinsics(geo.extrinsics),
                       K=geo.intrinsics.to(torch.float64), points=points, point_mask=depth_mask(geo.depth),
                       latents=latents, control=control, meta=meta)


__all__ = ["GEN3R_FRAMES", "Gen3RModels", "Gen3RResult", "ModelPlacer", "camera_control", "check_images",
           "control_images", "control_mask", "control_video", "depth_mask", "gen3r_settings", "generate",
           "square_trajectory"]
