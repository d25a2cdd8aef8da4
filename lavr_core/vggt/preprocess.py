"""VGGT's official input preparation (``vggt.utils.load_fn``), reproduced bit for bit.

``preprocess_images(images, mode)`` with ``mode``:

* ``"crop"`` (official default): width becomes 518, height ``round(h * 518 / w / 14) * 14``
  (Python's round: ties to even), PIL bicubic resize; a height above 518 is centre-cropped to 518
  starting at row ``(h - 518) // 2``.
* ``"pad"``: the long side becomes 518 and the short side ``round(... / 14) * 14``; the image is
  then padded with white (1.0) to 518 x 518, the odd pixel of an uneven padding at the bottom/right.

RGBA pictures are composited onto white first; anything else is converted to RGB. When the frames
end up with different sizes, each is padded with white (centred the same way) to the largest height
and width. The result is ``[N, 3, H, W]`` float32 RGB in [0, 1], exactly ``uint8 / 255``.

``preprocess_images_square`` is ``load_and_preprocess_images_square``: black padding to a centred
square, bicubic resize to ``target_size``, plus each frame's ``[x1, y1, x2, y2, width, height]``.

ComfyUI ``IMAGE`` tensors go through ``preprocess_comfy_images``, which quantises each frame to 8 bits
(``round(255 * x)``, exact for frames that came from an 8-bit file) so the resize is the official one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
from PIL import Image

from ..errors import InputError

TARGET_SIZE = 518
PATCH = 14
MODES = ("crop", "pad")

ImageLike = Union[Image.Image, str, Path, np.ndarray]


def _to_pil(item: ImageLike, index: int) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (str, Path)):
        p = Path(item)
        if not p.is_file():
            raise InputError(f"Image {index} ({p}) does not exist.", "Check the file path.")
        try:
            img = Image.open(p)
            img.load()
            return img
        except OSError as e:
            raise InputError(f"Image {index} ({p}) cannot be read as a picture ({e}).",
                             "Use PNG or JPEG files.") from None
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8 or item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (3, 4)):
            raise InputError(f"Image {index} is an array of shape {item.shape} and type {item.dtype}.",
                             "Pass uint8 [H, W], [H, W, 3] or [H, W, 4] arrays.")
        return Image.fromarray(item)
    raise InputError(f"Image {index} is a {type(item).__name__}.", "Pass PIL images, file paths or uint8 arrays.")


def _rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGBA":
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img)
    return img.convert("RGB")


def _to_tensor(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(255)


def _pad_white(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    dh, dw = height - t.shape[1], width - t.shape[2]
    if dh <= 0 and dw <= 0:
        return t
    top, left = dh // 2, dw // 2
    return torch.nn.functional.pad(t, (left, dw - left, top, dh - top), mode="constant", value=1.0)


def resized_size(width: int, height: int, mode: str, target: int = TARGET_SIZE) -> tuple[int, int]:
    """``(new_width, new_height)`` the official code resizes a ``width x height`` picture to."""
    if mode == "pad" and height > width:
        return round(width * (target / height) / PATCH) * PATCH, target
    return target, round(height * (target / width) / PATCH) * PATCH


def preprocess_images(images: Sequence[ImageLike], mode: str = "crop", target: int = TARGET_SIZE) -> torch.Tensor:
    """Frames ``[N, 3, H, W]`` in [0, 1] for VGGT from pictures (PIL images, paths or uint8 arrays).

    ``target`` is the official 518 unless a smaller or larger working size is wanted (a multiple of
    14); every step is the official one with that size in place of 518.
    """
    if mode not in MODES:
        raise InputError(f"Unknown VGGT preprocessing mode {mode!r}.", "Use 'crop' or 'pad'.")
    if len(images) == 0:
        raise InputError("No images were given to VGGT.", "Give at least one frame.")
    out = []
    for i, item in enumerate(images):
        img = _rgb(_to_pil(item, i))
        w, h = img.size
        nw, nh = resized_size(w, h, mode, target)
        if nw < PATCH or nh < PATCH:
            raise InputError(f"Image {i} ({w}x{h}) is too elongated: it would become {nw}x{nh} pixels.",
                             "Crop it to a less extreme aspect ratio first.")
        t = _to_tensor(img.resize((nw, nh), Image.Resampling.BICUBIC))
        if mode == "crop" and nh > target:
            top = (nh - target) // 2
            t = t[:, top:top + target]
        if mode == "pad":
            t = _pad_white(t, target, target)
        out.append(t)
    H = max(t.shape[1] for t in out)
    W = max(t.shape[2] for t in out)
    return torch.stack([_pad_white(t, H, W) for t in out])


def preprocess_images_square(images: Sequence[ImageLike], target_size: int = 1024
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """``([N, 3, target, target] in [0, 1], [N, 6] float32 [x1, y1, x2, y2, width, height])``: each
    picture padded with black to a centred square and resized; the box is where the original
    picture lies in the result, followed by its original size."""
    if len(images) == 0:
        raise InputError("No images were given to VGGT.", "Give at least one frame.")
    if int(target_size) < 1:
        raise InputError(f"Target size {target_size} is not positive.", "Use e.g. 518 or 1024.")
    frames, coords = [], []
    for i, item in enumerate(images):
        img = _rgb(_to_pil(item, i))
        w, h = img.size
        side = max(w, h)
        left, top = (side - w) // 2, (side - h) // 2
        s = target_size / side
        coords.append([left * s, top * s, (left + w) * s, (top + h) * s, w, h])
        square = Image.new("RGB", (side, side), (0, 0, 0))
        square.paste(img, (left, top))
        frames.append(_to_tensor(square.resize((target_size, target_size), Image.Resampling.BICUBIC)))
    return torch.stack(frames), torch.tensor(np.array(coords, dtype=np.float64)).float()


def comfy_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """ComfyUI ``IMAGE`` ``[T, H, W, 3]`` (or ``[T, H, W, 4]``) float in [0, 1] -> 8-bit PIL frames."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[-1] not in (3, 4):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"Frames have shape {shape}; expected a ComfyUI IMAGE [T, H, W, 3].",
                         "Connect an IMAGE output (frames along the first axis).")
    if images.shape[0] == 0:
        raise InputError("The IMAGE batch is empty.", "Give at least one frame.")
    x = images.detach().to("cpu", torch.float32)
    if not torch.isfinite(x).all():
        raise InputError("The frames hold NaN or infinity.", "Check the node that produced them.")
    arr = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return [Image.fromarray(a) for a in arr]


def preprocess_comfy_images(images: torch.Tensor, mode: str = "crop") -> torch.Tensor:
    """``preprocess_images`` for a ComfyUI ``IMAGE`` ``[T, H, W, 3]`` in [0, 1]; returns ``[T, 3, H', W']``."""
    return preprocess_images(comfy_to_pil(images), mode)
