"""VGGT Gaussian Decode as one function: ComfyUI-style frames in, Gaussians, cameras and previews out.

``decode_frames(model, images, ...)`` runs a ``VGGT4D`` on a batch of frames ``[N, H, W, 3]`` in
[0, 1] (a ComfyUI ``IMAGE``) and returns a ``DecodeResult``:

* **Frame arrangement.** Without ``views`` the ``N`` frames are ``N`` views of one static scene (a
  ``1``-timestep grid): the result is one ``Gaussians`` set. With ``views = V`` the frames are a
  ``V x T`` view-major grid (``frame = v*T + t``, ``lavr_core.grid``): the result is a
  ``GaussianSequence`` with one set per timestep (all ``V`` views' pixels of that timestep).
  One frame works: VGGT runs on a single view (depth from one image, camera at the origin).
* **Preprocessing.** VGGT's official ``crop``/``pad`` preparation at ``resolution`` pixels (518,
  the trained size, is bit-exact with ``lavr_core.vggt.preprocess``; smaller sizes run the same
  steps with that target, for speed and tests). ``FrameMap`` records how model pixels relate to
  input pixels, so cameras, depth and renders come back in the *input* frame's pixels.
* **Gaussians.** VGGT4D's Gaussian head when the model has one, else the training-free Gaussians
  (``DecodeResult.source``). Pixels with depth confidence below ``min_confidence`` are dropped, and
  so is pad-mode padding (it is not part of the scene); a
  set larger than ``max_gaussians`` keeps a seeded uniform random subset whose scales grow by
  ``sqrt(N / max)`` so the surface stays covered (each kept splat stands in for ``N / max`` pixels).
* **Cameras.** One camera per view (timestep 0's; with camera-token replacement every timestep has
  the same), OpenCV camera-to-world with view 0 at the origin, intrinsics in input-frame pixels.
* **Previews.** Colourised depth per input frame at the input size, and the Gaussians rendered from
  every frame's predicted camera (``lavr_core.gaussians.preview``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..camera.trajectory import CameraTrajectory
from ..camera.transforms import invert_pose
from ..errors import InputError
from ..gaussians.types import GaussianSequence, Gaussians
from ..grid import GridLayout
from ..vggt.preprocess import MODES, PATCH, TARGET_SIZE, comfy_to_pil, preprocess_images, resized_size
from .model import VGGT4D, VGGT4DPrediction

#: Smallest preprocessing resolution: two 14-pixel patches along the long side.
MIN_RESOLUTION = 2 * PATCH
#: Seed of the uniform subset kept when a set exceeds ``max_gaussians`` (same input, same subset).
SUBSET_SEED = 0

Step = Callable[[], None]


@dataclass(frozen=True)
class FrameMap:
    """How a ``input_hw`` frame became a ``model_hw`` model input (the same for every frame of a batch).

    A point at input pixel coordinates ``(x, y)`` (from the top-left corner) lands at model pixel
    ``(x * sx + ox, y * sy + oy)`` with ``(sx, sy) = resized / input`` and ``(ox, oy)`` the padding
    (positive) or crop (negative) offset.
    """

    input_hw: tuple[int, int]
    resized_hw: tuple[int, int]
    model_hw: tuple[int, int]
    offset_yx: tuple[int, int]

    @classmethod
    def plan(cls, height: int, width: int, mode: str, resolution: int = TARGET_SIZE) -> "FrameMap":
        """The official preparation of a ``height x width`` frame (``lavr_core.vggt.preprocess``)."""
        rw, rh = resized_size(width, height, mode, resolution)
        if rw < PATCH or rh < PATCH:
            raise InputError(f"Frames of {width}x{height} are too elongated: they would become {rw}x{rh} pixels.",
                             "Crop them to a less extreme aspect ratio first.")
        if mode == "pad":
            H = W = resolution
            return cls((height, width), (rh, rw), (H, W), ((H - rh) // 2, (W - rw) // 2))
        H = min(rh, resolution)
        return cls((height, width), (rh, rw), (H, rw), (-((rh - H) // 2), 0))

    def input_to_model(self) -> Tensor:
        """``[3, 3]`` float64 matrix taking homogeneous input pixels to model pixels."""
        (h, w), (rh, rw), (oy, ox) = self.input_hw, self.resized_hw, self.offset_yx
        return torch.tensor([[rw / w, 0.0, ox], [0.0, rh / h, oy], [0.0, 0.0, 1.0]], dtype=torch.float64)

    def intrinsics_to_input(self, K: Tensor) -> Tensor:
        """Intrinsics ``[..., 3, 3]`` of the model frame -> the same cameras in input-frame pixels."""
        A_inv = torch.linalg.inv(self.input_to_model()).to(K.device)
        return A_inv @ K.to(torch.float64)

    def content_mask(self) -> Tensor:
        """``[H, W]`` bool: model pixels that show the input frame (False on pad-mode padding)."""
        H, W = self.model_hw
        (rh, rw), (oy, ox) = self.resized_hw, self.offset_yx
        ys, xs = torch.arange(H), torch.arange(W)
        return ((ys >= oy) & (ys < oy + rh))[:, None] & ((xs >= ox) & (xs < ox + rw))[None, :]

    def maps_to_input(self, maps: Tensor, out_hw: tuple[int, int] | None = None) -> tuple[Tensor, Tensor]:
        """Resample model-frame maps ``[N, H, W]`` to the input frame (or ``out_hw``, same field of view).

        Returns ``(maps [N, h, w], valid [N, h, w])``: bilinear inside the model frame; pixels the
        model never saw (cropped rows) are 0 and not valid.
        """
        h, w = out_hw or self.input_hw
        H, W = self.model_hw
        A = self.input_to_model()
        ys = (torch.arange(h, dtype=torch.float64) + 0.5) * self.input_hw[0] / h
        xs = (torch.arange(w, dtype=torch.float64) + 0.5) * self.input_hw[1] / w
        u = xs * A[0, 0] + A[0, 2]
        v = ys * A[1, 1] + A[1, 2]
        gy, gx = torch.meshgrid(2 * v / H - 1, 2 * u / W - 1, indexing="ij")
        grid = torch.stack([gx, gy], -1).to(maps.device, torch.float32)[None].expand(maps.shape[0], h, w, 2)
        out = F.grid_sample(maps[:, None].float(), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)[:, 0]
        inside = ((v >= 0) & (v <= H))[:, None] & ((u >= 0) & (u <= W))[None, :]
        inside = inside.to(maps.device).expand(maps.shape[0], h, w)
        return torch.where(inside, out, torch.zeros_like(out)), inside


def prepare_frames(images: Tensor, mode: str = "crop", resolution: int = TARGET_SIZE) -> tuple[Tensor, FrameMap]:
    """ComfyUI ``IMAGE`` ``[N, H, W, 3]`` -> VGGT input ``[N, 3, H', W']`` in [0, 1] and its ``FrameMap``.

    At ``resolution == 518`` this is ``preprocess_comfy_images`` (the official preparation); other
    resolutions apply the same steps (8-bit quantisation, PIL bicubic resize, crop or white padding)
    with that target size. ``resolution`` must be a multiple of 14.
    """
    if mode not in MODES:
        raise InputError(f"Unknown VGGT preprocessing mode {mode!r}.", "Use 'crop' or 'pad'.")
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < MIN_RESOLUTION \
            or resolution % PATCH:
        raise InputError(f"VGGT resolution {resolution!r} is not a multiple of {PATCH} of at least {MIN_RESOLUTION}.",
                         f"Use {TARGET_SIZE} (what VGGT was trained at) or another multiple of {PATCH}.")
    pil = comfy_to_pil(images)  # checks shape, emptiness and NaN with clear messages
    fmap = FrameMap.plan(images.shape[1], images.shape[2], mode, resolution)
    frames = preprocess_images(pil, mode, resolution)
    if tuple(frames.shape[-2:]) != fmap.model_hw:  # the plan and the official code must agree
        raise AssertionError(f"VGGT preprocessing gave {tuple(frames.shape[-2:])}, planned {fmap.model_hw}")
    return frames, fmap


def limit_gaussians(g: Gaussians, max_gaussians: int, seed: int = SUBSET_SEED) -> Gaussians:
    """At most ``max_gaussians`` of ``g``: a seeded uniform subset (kept in order) with scales grown by
    ``sqrt(N / max)``, so the kept splats still cover the surface the dropped ones did."""
    if isinstance(max_gaussians, bool) or not isinstance(max_gaussians, int) or max_gaussians < 1:
        raise InputError(f"max_gaussians must be a positive whole number, got {max_gaussians!r}.",
                         "Use e.g. 200000.")
    n = g.num
    if n <= max_gaussians:
        return g
    gen = torch.Generator().manual_seed(seed)
    keep = torch.randperm(n, generator=gen)[:max_gaussians].sort().values.to(g.device)
    sub = g.subset(keep)
    grow = math.sqrt(n / max_gaussians)
    meta = {**g.meta, "subsampled_from": n, "scale_growth": grow}
    return replace(sub, scales=sub.scales * grow, meta=meta)


@dataclass
class DecodeResult:
    """What ``decode_frames`` returns (module docstring).

    Attributes:
        gaussians: ``Gaussians`` (static scene) or ``GaussianSequence`` (grid), on the CPU.
        trajectory: one camera per view, input-frame pixels.
        c2w, K: ``[V, T, 4, 4]`` / ``[V, T, 3, 3]`` float64 every frame's camera (input pixels).
        depth: ``[N, h, w]`` depth at the input size, view-major; ``depth_valid`` where the model saw.
        depth_preview: ``[N, h, w, 3]`` colourised depth (IMAGE).
        render_preview: ``[N, h', w', 3]`` the Gaussians rendered from each frame's camera, or None.
        source: ``"gaussian_head"`` or ``"training_free"``.
        views, times: the grid; frame_map: how frames were prepared; prediction: the raw model output.
    """

    gaussians: Gaussians | GaussianSequence
    trajectory: CameraTrajectory
    c2w: Tensor
    K: Tensor
    depth: Tensor
    depth_valid: Tensor
    depth_preview: Tensor
    render_preview: Tensor | None
    source: str
    views: int
    times: int
    frame_map: FrameMap
    prediction: VGGT4DPrediction
    counts: list[int] = field(default_factory=list)

    def summary(self) -> str:
        H, W = self.frame_map.model_hw
        kind = "static scene" if isinstance(self.gaussians, Gaussians) else f"{self.times} timesteps"
        n = sum(self.counts)
        return (f"{self.views * self.times} frames as {self.views} views x {self.times} timesteps at {W}x{H}: "
                f"{kind}, {n} Gaussians; init: {self.source}")


def grid_shape(num_frames: int, views: int = 0, layout: GridLayout | None = None) -> tuple[int, int, bool]:
    """``(V, T, is_4d)`` for ``num_frames`` frames: from ``layout``, from ``views`` (``V x N/V``),
    or, with neither, ``N`` views of one static scene."""
    if isinstance(views, bool) or not isinstance(views, int) or views < 0:
        raise InputError(f"views must be 0 (automatic) or a positive whole number, got {views!r}.",
                         "Use 0 to treat every frame as a view of one static scene.")
    if layout is not None:
        if not isinstance(layout, GridLayout):
            raise InputError(f"The grid layout input is a {type(layout).__name__}, not a grid layout.",
                             "Connect the grid_layout output of the Fused 4D Sampler.")
        layout.check_frames(torch.empty(num_frames), "frames")
        if views and views != layout.views:
            raise InputError(f"views is {views} but the connected grid layout has {layout.views} views.",
                             "Set views to 0 to follow the layout, or disconnect the layout.")
        return layout.views, layout.times, True
    if views:
        if num_frames % views:
            raise InputError(f"{num_frames} frames do not split into {views} views of equal length.",
                             f"Give a multiple of {views} frames (view-major: all of view 0's timesteps first), "
                             "or set views to 0 for a static scene.")
        return views, num_frames // views, True
    return num_frames, 1, False


def first_view_cameras(pred: VGGT4DPrediction) -> tuple[Tensor, Tensor]:
    """Predicted cameras ``[B, V, T, 4, 4]`` (float64, model pixels K) re-expressed so that view 0 at
    timestep 0 is exactly the world origin. VGGT is trained to put it there but does not enforce it;
    one rigid move of every camera (and so of every Gaussian) makes it exact, as CUT3R's output is."""
    c2w, K = pred.cameras()
    ref = invert_pose(c2w[:, :1, :1])                   # [B, 1, 1, 4, 4]
    return ref @ c2w, K


def _gaussian_sets(pred: VGGT4DPrediction, c2w: Tensor, K: Tensor, fmap: FrameMap, min_confidence: float,
                   max_gaussians: int) -> list[Gaussians]:
    """One set per timestep from every view's pixels that show the input (not pad-mode padding) and
    have depth confidence >= ``min_confidence``, each limited to ``max_gaussians``."""
    pg = pred.pixel_gaussians(c2w=c2w, K=K)
    content = fmap.content_mask().to(pred.depth_conf.device)
    _, V, T = pred.grid
    out = []
    for t in range(T):
        mask = (pred.depth_conf[0, :, t] >= min_confidence) & content
        if not mask.any():
            best = float(pred.depth_conf[0, :, t][content.expand(V, -1, -1)].max())
            raise InputError(f"No pixel of timestep {t} has depth confidence >= {min_confidence:g} (the highest is "
                             f"{best:.3g}), so no Gaussians are left.", "Lower min_confidence (confidences start at 1).")
        meta = {"source": "vggt4d", "gaussians": pred.gaussian_source, "views": V, "timestep": t}
        g = pg.index((0, slice(None), t)).flatten(mask, meta)
        out.append(limit_gaussians(g.to("cpu"), max_gaussians))
    return out


def decode_steps(model: VGGT4D, num_frames: int, render: bool = True) -> int:
    """How many times ``decode_frames`` calls ``step`` (for a progress bar)."""
    return 2 * model.vggt.config.aggregator.depth + 2 + (num_frames if render else 0)


def _block_hooks(model: VGGT4D, step: Step | None):
    if step is None:
        return []
    agg = model.vggt.aggregator
    return [b.register_forward_hook(lambda *_: step()) for b in [*agg.frame_blocks, *agg.global_blocks]]


@torch.no_grad()
def decode_frames(model: VGGT4D, images: Tensor, *, views: int = 0, layout: GridLayout | None = None,
                  mode: str = "crop", resolution: int = TARGET_SIZE, min_confidence: float = 1.0,
                  max_gaussians: int = 200_000, fps: float = 16.0, autocast: torch.dtype | None = None,
                  render: bool = True, preview_max_side: int = 512, render_backend: str = "auto",
                  step: Step | None = None) -> DecodeResult:
    """Run VGGT4D on ComfyUI frames (module docstring). ``step`` is called ``decode_steps(...)`` times
    (after every aggregator block, the heads, the Gaussians and each preview frame); an exception it
    raises (ComfyUI's interrupt) stops the decode."""
    from ..gaussians.preview import render_preview
    from ..visualize import colorize_depth

    if not isinstance(model, VGGT4D):
        raise InputError(f"VGGT Gaussian Decode needs a VGGT4D model, got {type(model).__name__}.",
                         "Connect the output of Load VGGT.")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise InputError(f"fps {fps!r} must be a positive number.", "Use the clip's frame rate, e.g. 16.")
    if not (isinstance(min_confidence, (int, float)) and math.isfinite(min_confidence)):
        raise InputError(f"min_confidence {min_confidence!r} is not a number.", "Use e.g. 1.5 (confidences start at 1).")
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise InputError(f"Frames have shape {shape}; expected a ComfyUI IMAGE [N, H, W, 3].",
                         "Connect an IMAGE output (frames along the first axis).")
    N = images.shape[0]
    V, T, is_4d = grid_shape(N, views, layout)
    if layout is not None:
        fps = float(layout.fps)
    frames, fmap = prepare_frames(images, mode, resolution)
    dev = model.vggt.aggregator.camera_token.device
    grid = frames.to(dev).reshape(V, T, *frames.shape[1:])

    hooks = _block_hooks(model, step)
    try:
        pred = model(grid, with_points=False, autocast=autocast)
    finally:
        for h in hooks:
            h.remove()
    if step:
        step()

    c2w, K_model = first_view_cameras(pred)               # [1, V, T, ...] float64, model pixels
    frames_g = _gaussian_sets(pred, c2w, K_model, fmap, min_confidence, max_gaussians)
    seq = GaussianSequence.from_fps(frames_g, fps, meta={"source": "vggt4d", "gaussians": pred.gaussian_source,
                                                         "views": V, "times": T, "frame_hw": list(fmap.model_hw)})
    gaussians = seq if is_4d else seq.frames[0]
    if step:
        step()

    c2w, K = c2w[0].cpu(), fmap.intrinsics_to_input(K_model[0].cpu())
    h, w = fmap.input_hw
    trajectory = CameraTrajectory(c2w[:, 0], K[:, 0], width=w, height=h, fps=fps,
                                  meta={"source": "vggt", "views": V, "timestep": 0, "gaussians": pred.gaussian_source})

    depth_model = pred.depth[0, ..., 0].reshape(V * T, *fmap.model_hw).float().cpu()
    depth, valid = fmap.maps_to_input(depth_model)
    depth_preview = colorize_depth(depth, valid)

    rendered = None
    if render:
        rendered = render_preview(gaussians, c2w, K, w, h, max_side=preview_max_side, device=dev,
                                  backend=render_backend, step=step)
    return DecodeResult(gaussians=gaussians, trajectory=trajectory, c2w=c2w, K=K, depth=depth, depth_valid=valid,
                        depth_preview=depth_preview, render_preview=rendered, source=pred.gaussian_source,
                        views=V, times=T, frame_map=fmap, prediction=pred, counts=[g.num for g in frames_g])
