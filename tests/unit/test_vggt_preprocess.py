"""VGGT preprocessing against the official golden (exact uint8 results, by sha256 and samples)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lavr_core.errors import InputError
from lavr_core.vggt.preprocess import (preprocess_comfy_images, preprocess_images, preprocess_images_square,
                                       resized_size)

REF = Path(__file__).resolve().parents[2].parent / "shared/reference"
PRE = REF / "vggt" / "preprocess"


@pytest.fixture(scope="module")
def golden():
    if not (PRE / "preprocess.json").is_file():
        pytest.skip(f"VGGT reference data not present at {PRE}")
    from safetensors.torch import load_file
    return json.loads((PRE / "preprocess.json").read_text()), load_file(str(PRE / "preprocess_samples.safetensors"))


def _picture(width, height, channels):
    """The golden's input formula (preprocess.json "input_formula")."""
    y, x = np.meshgrid(np.arange(height, dtype=np.int64), np.arange(width, dtype=np.int64), indexing="ij")
    chans = [(3 * x * x + 7 * y + x * y + 50 * c + (x // 5) * (y // 3)) % 256 for c in range(3)]
    if channels == 4:
        chans.append((x + 2 * y) % 256)
    return np.stack(chans, -1).astype(np.uint8)


@pytest.fixture(scope="module")
def pictures(golden):
    spec, _ = golden
    out = {}
    for name, info in spec["inputs"].items():
        arr = _picture(info["width"], info["height"], info["channels"])
        assert hashlib.sha256(arr.tobytes()).hexdigest() == info["sha256_uint8_HWC"]
        out[name] = Image.fromarray(arr)
    return out


def _check(x, case, golden):
    spec, samples = golden
    info = spec["cases"][case]
    assert list(x.shape) == info["shape"] and x.dtype == torch.float32
    u = (x * 255).round()
    assert (u - x * 255).abs().max() < 1e-3  # exactly uint8 / 255
    u8 = u.to(torch.uint8).contiguous()
    assert int(u8.to(torch.int64).sum()) == info["sum"], case
    assert hashlib.sha256(u8.numpy().tobytes()).hexdigest() == info["sha256_uint8_NCHW"], case
    H, W = x.shape[-2:]
    assert torch.equal(u8[:, :, 0], samples[f"{case}.row_first"])
    assert torch.equal(u8[:, :, H // 2], samples[f"{case}.row_mid"])
    assert torch.equal(u8[:, :, :, W // 2], samples[f"{case}.col_mid"])


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_single_images_exact(mode, golden, pictures):
    for name, img in pictures.items():
        _check(preprocess_images([img], mode=mode), f"{mode}.single.{name}", golden)


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_mixed_batch_exact(mode, golden, pictures):
    order = golden[0]["image_order_in_batch"]
    _check(preprocess_images([pictures[n] for n in order], mode=mode), f"{mode}.batch", golden)


def test_square_exact(golden, pictures):
    order = golden[0]["image_order_in_batch"]
    x, coords = preprocess_images_square([pictures[n] for n in order], target_size=112)
    _check(x, "square112.batch", golden)
    torch.testing.assert_close(coords, golden[1]["square112.original_coords"], atol=1e-4, rtol=0)


def test_paths_arrays_and_comfy_images_agree(golden, pictures, tmp_path):
    img = pictures["land_300x200"]
    path = tmp_path / "land.png"
    img.save(path)
    ref = preprocess_images([img])
    assert torch.equal(preprocess_images([path]), ref)
    assert torch.equal(preprocess_images([np.asarray(img)]), ref)
    comfy = torch.from_numpy(np.asarray(img).copy()).float().div(255)[None]  # [1, H, W, 3]
    assert torch.equal(preprocess_comfy_images(comfy), ref)
    _check(preprocess_comfy_images(comfy, mode="pad"), "pad.single.land_300x200", golden)


def test_resized_size_rounds_half_to_even():
    # 200x300 in crop mode: 300*518/200/14 = 55.5 -> 56 (even), so 784 rows before the crop.
    assert resized_size(200, 300, "crop") == (518, 784)
    assert resized_size(200, 300, "pad") == (350, 518)
    assert resized_size(300, 200, "pad") == (518, 350)


def test_bad_input_is_a_clear_error(tmp_path):
    img = Image.new("RGB", (40, 30))
    with pytest.raises(InputError, match="mode"):
        preprocess_images([img], mode="stretch")
    with pytest.raises(InputError, match="No images"):
        preprocess_images([])
    with pytest.raises(InputError, match="does not exist"):
        preprocess_images([tmp_path / "missing.png"])
    with pytest.raises(InputError, match="elongated"):
        preprocess_images([Image.new("RGB", (4000, 10))])
    with pytest.raises(InputError, match="IMAGE"):
        preprocess_comfy_images(torch.zeros(3, 8, 8))
    with pytest.raises(InputError, match="NaN"):
        preprocess_comfy_images(torch.full((1, 8, 8, 3), float("nan")))
    with pytest.raises(InputError, match="uint8"):
        preprocess_images([np.zeros((8, 8, 3), dtype=np.float32)])
