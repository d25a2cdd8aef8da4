"""Official CUT3R resize/crop, checked byte for byte against the preprocessing golden."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lavr_core.cut3r.preprocess import (CropInfo, normalize, plan_crop, prepare_frame, prepare_frames, resize_and_crop,
                                        to_uint8)
from lavr_core.errors import InputError

pytestmark = pytest.mark.usefixtures("one_thread")

PRE = Path(__file__).resolve().parents[2].parent / "shared/reference/cut3r/preprocess"


def _pattern(w, h):
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    return np.stack([(3 * x * x + 7 * y + x * y + 50 * c + (x // 5) * (y // 3)) % 256 for c in range(3)],
                    -1).astype(np.uint8)


@pytest.mark.skipif(not PRE.is_dir(), reason=f"CUT3R preprocessing golden not found at {PRE}")
def test_matches_official_load_images_bit_for_bit():
    from safetensors.torch import load_file

    spec = json.loads((PRE / "preprocess.json").read_text())
    samples = load_file(str(PRE / "preprocess_samples.safetensors"))
    checked = 0
    for name, inp in spec["inputs"].items():
        img = _pattern(inp["width"], inp["height"])
        assert hashlib.sha256(img.tobytes()).hexdigest() == inp["sha256_uint8_HWC"]
        for size in (512, 224):
            case = spec["cases"][f"size{size}.{name}"]
            info = plan_crop(inp["width"], inp["height"], size)
            u8 = resize_and_crop(img, info)
            nchw = np.ascontiguousarray(u8.transpose(2, 0, 1)[None])
            assert list(nchw.shape) == case["shape"]
            assert [[info.output_size[1], info.output_size[0]]] == case["true_shape"]
            assert hashlib.sha256(nchw.tobytes()).hexdigest() == case["sha256_uint8_NCHW"], (size, name)
            h, w = nchw.shape[-2:]
            t = torch.from_numpy(nchw)
            assert torch.equal(t[:, :, 0], samples[f"size{size}.{name}.row_first"])
            assert torch.equal(t[:, :, h // 2], samples[f"size{size}.{name}.row_mid"])
            assert torch.equal(t[:, :, :, w // 2], samples[f"size{size}.{name}.col_mid"])
            # float input in [0, 1] (as ComfyUI gives it) reaches the same model input
            x, _ = prepare_frame(torch.from_numpy(img).float() / 255, size)
            assert torch.equal(x, normalize(u8)[None])
            checked += 1
    assert checked == 8


def test_model_input_range_and_layout():
    frames = torch.rand(2, 60, 80, 3)
    p = prepare_frames(frames, 512)
    assert p.images.shape == (2, 3, 384, 512) and p.true_shape == (384, 512)
    assert p.images.min() >= -1 and p.images.max() <= 1
    u8 = np.full((60, 80, 3), 255, np.uint8)
    assert torch.equal(normalize(u8), torch.ones(3, 60, 80))


@pytest.mark.parametrize("w,h,size,out", [(1920, 1080, 512, (512, 288)), (1080, 1920, 512, (288, 512)),
                                          (640, 480, 512, (512, 384)), (1280, 720, 224, (224, 224)),
                                          (100, 100, 512, (512, 384))])
def test_common_geometries(w, h, size, out):
    assert plan_crop(w, h, size).output_size == out


def test_intrinsics_map_back_to_the_input_frame():
    info = plan_crop(300, 200, 512)  # 512x341 resize, crop rows 2..338
    K = torch.tensor([[400.0, 0, 256], [0, 400, 168], [0, 0, 1]])
    Kin = info.intrinsics_to_input(K)
    # a 3D point projects to the same place before and after mapping the pixel back by hand
    X = torch.tensor([0.3, -0.2, 2.0])
    u, v, _ = (K @ X) / X[2]
    ui, vi, _ = (Kin @ X) / X[2]
    sx, sy = info.scale
    assert torch.allclose(torch.stack([ui, vi]), torch.stack([(u + info.box[0]) * sx, (v + info.box[1]) * sy]))


def test_map_to_input_resamples_dense_outputs():
    info = plan_crop(300, 200, 512)
    ow, oh = info.output_size
    # a map equal to the resized-image x coordinate of each pixel centre
    xs = torch.arange(ow, dtype=torch.float32) + 0.5 + info.box[0]
    m = xs.expand(oh, ow)[None, None]
    back = info.map_to_input(m)
    assert back.shape == (1, 1, 200, 300)
    expect = (torch.arange(300) + 0.5) / info.scale[0]
    assert torch.allclose(back[0, 0, 100], expect, atol=1e-3)
    mask = info.valid_mask()
    assert mask.shape == (200, 300) and mask[100].all() and not mask[0].all()


@pytest.mark.parametrize("frames,match", [
    (torch.zeros(0, 64, 64, 3), "no frames"),
    (torch.zeros(2, 8, 64, 3), "at least"),
    (torch.zeros(1, 64, 64, 2), "channels"),
    (torch.full((1, 64, 64, 3), float("nan")), "NaN"),
    (torch.zeros(64, 3), "shape"),
])
def test_bad_inputs_are_clear_errors(frames, match):
    with pytest.raises(InputError, match=match):
        prepare_frames(frames, 512)


def test_other_bad_inputs():
    with pytest.raises(InputError, match="not supported"):
        plan_crop(64, 64, 384)
    with pytest.raises(InputError, match="20000x64"):
        plan_crop(20000, 64, 512)
    with pytest.raises(InputError, match="same size"):
        resize_and_crop(np.zeros((40, 40, 3), np.uint8), plan_crop(64, 48, 512))
    with pytest.raises(InputError, match="strips"):
        plan_crop(2000, 20, 512)  # resizes to 512x5
    # grey and RGBA frames are accepted
    assert to_uint8(torch.rand(1, 20, 20, 1)).shape == (1, 20, 20, 3)
    assert to_uint8(torch.rand(1, 20, 20, 4)).shape == (1, 20, 20, 3)
    assert isinstance(plan_crop(64, 48, 512), CropInfo)
