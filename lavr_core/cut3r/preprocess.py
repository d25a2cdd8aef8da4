"""CUT3R input preparation, reproducing the official ``load_images`` resize and crop exactly.

* ``size=512``: the long side is resized to 512 (each side ``round(side * 512 / long)``; LANCZOS when
  shrinking, BICUBIC otherwise), then the image is centre-cropped so both sides are multiples of 16;
  a square result is cropped further to 4:3 (512 x 384).
* ``size=224``: the long side is resized to ``round(224 * long / short)`` (so the short side becomes
  about 224), then centre-cropped to a square.

Pixels go through 8-bit RGB (the official code reads image files) and are scaled to [-1, 1].
:class:`CropInfo` records the geometry so that outputs and intrinsics can be mapped back onto the
input frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputError

SUPPORTED_SIZES = (224, 512)
#: Smallest input side we accept: below this the 512 pipeline would produce a < 16 pixel crop.
MIN_SIDE = 16
#: Largest input side (pixels): larger frames are almost certainly a mistake (and slow to resample).
MAX_SIDE = 16384


@dataclass(frozen=True)
class CropInfo:
    """How an input frame became the model's input.

    ``input_size`` ``(W1, H1)``: the frame given; ``resized_size`` ``(W, H)``: after resizing;
    ``box`` ``(left, top, right, bottom)``: the crop in resized pixels; the model input is
    ``box`` wide/high: ``(right-left) x (bottom-top)``.
    """

    input_size: tuple[int, int]
    resized_size: tuple[int, int]
    box: tuple[int, int, int, int]

    @property
    def output_size(self) -> tuple[int, int]:
        """``(W, H)`` of the model input (and of its dense outputs)."""
        left, top, right, bottom = self.box
        return right - left, bottom - top

    @property
    def scale(self) -> tuple[float, float]:
        """Input pixels per resized pixel, ``(sx, sy)``."""
        return self.input_size[0] / self.resized_size[0], self.input_size[1] / self.resized_size[1]

    def intrinsics_to_input(self, K: torch.Tensor) -> torch.Tensor:
        """Intrinsics ``[..., 3, 3]`` in model-input pixels -> the same camera in input-frame pixels.

        Pixel coordinates follow ``lavr_core.conventions`` (corner origin), so a crop shifts the
        principal point by the crop offset and a resize scales every row by the resize factor.
        """
        sx, sy = self.scale
        K = K.clone()
        K[..., 0, 2] = K[..., 0, 2] + self.box[0]
        K[..., 1, 2] = K[..., 1, 2] + self.box[1]
        K[..., 0, :] = K[..., 0, :] * sx
        K[..., 1, :] = K[..., 1, :] * sy
        return K

    def map_to_input(self, x: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
        """Resample a dense output ``[T, C, h, w]`` (model-input grid) onto the input frames ``[T, C, H1, W1]``.

        The parts of the input frame that the crop cut away have no prediction: they get the value
        of the nearest predicted pixel (edge extension), so depth previews have no holes. Use
        :meth:`valid_mask` to tell them apart.
        """
        w1, h1 = self.input_size
        sx, sy = self.scale
        left, top, _, _ = self.box
        ow, oh = self.output_size
        # centre of input pixel j in crop pixels: (j + 0.5) / s - left - 0.5 ; normalise to [-1, 1]
        xs = ((torch.arange(w1, dtype=torch.float64) + 0.5) / sx - left) / ow * 2 - 1
        ys = ((torch.arange(h1, dtype=torch.float64) + 0.5) / sy - top) / oh * 2 - 1
        gy, gx = torch.meshgrid(ys.clamp(-1, 1), xs.clamp(-1, 1), indexing="ij")
        grid = torch.stack((gx, gy), -1).to(x.dtype if x.is_floating_point() else torch.float32)
        grid = grid[None].expand(x.shape[0], -1, -1, -1).to(x.device)
        src = x if x.is_floating_point() else x.float()
        kw = {} if mode == "nearest" else {"align_corners": False}
        return F.grid_sample(src, grid, mode=mode, padding_mode="border", **kw)

    def valid_mask(self) -> torch.Tensor:
        """``[H1, W1]`` bool: True where the input pixel lies inside the crop (has a prediction)."""
        w1, h1 = self.input_size
        sx, sy = self.scale
        left, top, right, bottom = self.box
        xs = (torch.arange(w1) + 0.5) / sx
        ys = (torch.arange(h1) + 0.5) / sy
        return ((ys >= top) & (ys <= bottom))[:, None] & ((xs >= left) & (xs <= right))[None, :]


def plan_crop(width: int, height: int, size: int) -> CropInfo:
    """The official resize/crop geometry for a ``width x height`` frame at ``size`` 512 or 224."""
    if size not in SUPPORTED_SIZES:
        raise InputError(f"CUT3R input size {size} is not supported.", "Use 512 (DPT model) or 224 (linear model).")
    if min(width, height) < MIN_SIDE:
        raise InputError(f"The frames are {width}x{height} pixels; CUT3R needs at least {MIN_SIDE} pixels per side.",
                         "Use larger frames.")
    if max(width, height) > MAX_SIDE:
        raise InputError(f"The frames are {width}x{height} pixels, larger than {MAX_SIDE} per side.",
                         "Downscale the video first.")
    long_target = round(size * max(width / height, height / width)) if size == 224 else size
    s = max(width, height)
    rw, rh = (int(round(x * long_target / s)) for x in (width, height))
    cx, cy = rw // 2, rh // 2
    if size == 224:
        half = min(cx, cy)
        box = (cx - half, cy - half, cx + half, cy + half)
    else:
        halfw, halfh = ((2 * cx) // 16) * 8, ((2 * cy) // 16) * 8
        if rw == rh:
            halfh = 3 * halfw / 4
        box = tuple(int(round(v)) for v in (cx - halfw, cy - halfh, cx + halfw, cy + halfh))
    info = CropInfo((width, height), (rw, rh), box)
    ow, oh = info.output_size
    if ow < 16 or oh < 16:
        raise InputError(f"A {width}x{height} frame would give a {ow}x{oh} CUT3R input.",
                         "Use frames closer to 4:3 or 16:9; extreme panoramas or strips cannot be processed.")
    return info


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """ComfyUI IMAGE ``[T, H, W, C]`` float in [0, 1] -> ``uint8`` RGB (rounded; alpha dropped, grey tripled)."""
    if not isinstance(frames, torch.Tensor):
        frames = torch.as_tensor(np.asarray(frames))
    if frames.dtype == torch.uint8:
        u8 = frames
    else:
        f = frames.detach().float()
        if not bool(torch.isfinite(f).all()):
            raise InputError("The video frames contain NaN or infinite values.", "Check the node that made them.")
        u8 = (f.clamp(0, 1) * 255).round().to(torch.uint8)
    if u8.ndim == 3:
        u8 = u8[None]
    if u8.ndim != 4:
        raise InputError(f"Expected video frames [T, H, W, 3]; got a tensor of shape {tuple(frames.shape)}.",
                         "Connect an IMAGE (a batch of frames).")
    c = u8.shape[-1]
    if c == 1:
        u8 = u8.expand(*u8.shape[:-1], 3)
    elif c == 4:
        u8 = u8[..., :3]
    elif c != 3:
        raise InputError(f"The frames have {c} channels; expected RGB.", "Connect an RGB IMAGE.")
    return u8.cpu().numpy()


def resize_and_crop(frame_u8: np.ndarray, info: CropInfo) -> np.ndarray:
    """One ``[H, W, 3]`` uint8 frame -> the cropped model-input ``uint8`` frame (PIL resampling, as official)."""
    img = Image.fromarray(np.ascontiguousarray(frame_u8), "RGB")
    w1, h1 = img.size
    if (w1, h1) != info.input_size:
        raise InputError(f"A frame is {w1}x{h1} but the video's first frame is "
                         f"{info.input_size[0]}x{info.input_size[1]}.", "Give frames that all have the same size.")
    rw, rh = info.resized_size
    filt = Image.LANCZOS if max(w1, h1) > max(rw, rh) else Image.BICUBIC
    img = img.resize((rw, rh), filt)
    return np.asarray(img.crop(info.box))


def normalize(u8: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``[..., H, W, 3]`` uint8 -> ``[..., 3, H, W]`` float32 in [-1, 1] (``(u/255 - 0.5) / 0.5``)."""
    t = (u8 if isinstance(u8, torch.Tensor) else torch.from_numpy(np.array(u8))).float().div(255)
    return ((t - 0.5) / 0.5).movedim(-1, -3).contiguous()


@dataclass
class PreparedFrames:
    """Model inputs for a video: ``images`` ``[T, 3, h, w]`` float32 in [-1, 1] (CPU) and the geometry."""

    images: torch.Tensor
    crop: CropInfo

    @property
    def true_shape(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])


def prepare_frame(frame: torch.Tensor | np.ndarray, size: int, crop: CropInfo | None = None) -> tuple[torch.Tensor, CropInfo]:
    """One frame (``[H, W, 3]`` float in [0, 1] or uint8) -> ``([1, 3, h, w]`` in [-1, 1], CropInfo)."""
    u8 = to_uint8(torch.as_tensor(np.asarray(frame)) if not isinstance(frame, torch.Tensor) else frame)[0]
    if crop is None:
        crop = plan_crop(u8.shape[1], u8.shape[0], size)
    return normalize(resize_and_crop(u8, crop))[None], crop


def prepare_frames(frames: torch.Tensor, size: int) -> PreparedFrames:
    """A ComfyUI IMAGE ``[T, H, W, 3]`` -> :class:`PreparedFrames` (all frames must share one size)."""
    u8 = to_uint8(frames)
    if u8.shape[0] == 0:
        raise InputError("The video has no frames.", "Connect a video with at least one frame.")
    crop = plan_crop(u8.shape[2], u8.shape[1], size)
    return PreparedFrames(torch.stack([normalize(resize_and_crop(f, crop)) for f in u8]), crop)
