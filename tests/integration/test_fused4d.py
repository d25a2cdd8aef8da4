"""Fused 4D Sampler in the real ComfyUI: the shipped workflow (video -> Fused 4D -> VGGT Gaussian
Decode -> Save Splat), the grid it outputs, attention weights, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from comfy_harness import ui_to_api
from stand_ins import swap_stand_ins

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "workflows" / "fused4d_splat.json"
SAMPLER = "7"


def _options(spec):
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


def _errors(entry):
    return [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]


def _prompt(object_info, **sampler):
    prompt = ui_to_api(swap_stand_ins(json.loads(WORKFLOW.read_text()), set(object_info)), object_info)
    for node in prompt.values():  # the stand-in text encoder's widgets get their defaults
        if node["class_type"] == "LaVRTestTinyWanTextEncoder":
            node["inputs"].setdefault("width", 32)
            node["inputs"].setdefault("seed", 0)
    prompt[SAMPLER]["inputs"].update(sampler)
    return prompt


def _grid_only(prompt, prefix):
    """The prompt up to the sampler, its frames saved as PNGs (no VGGT)."""
    keep = {k: v for k, v in prompt.items() if v["class_type"] not in
            ("LaVRLoadVGGT", "LaVRVGGTGaussianDecode", "LaVRSaveSplat", "CreateVideo", "SaveVideo")}
    keep["90"] = {"class_type": "SaveImage", "inputs": {"images": [SAMPLER, 0], "filename_prefix": prefix}}
    return keep


def _images(comfy, entry, node="90"):
    from PIL import Image

    files = [comfy.base / "output" / e["subfolder"] / e["filename"] for e in entry["outputs"][node]["images"]]
    return np.stack([np.asarray(Image.open(f).convert("RGB"), dtype=np.float32) / 255 for f in files])


def test_definition(object_info):
    info = object_info["LaVRFused4DSampler"]
    assert info["output"] == ["IMAGE", "LAVR_GRID_LAYOUT"] and info["output_name"] == ["images", "grid_layout"]
    assert info["category"] == "LaVR/Video"
    opt = info["input"]["optional"]
    assert opt["fixed_view_video"][0] == "IMAGE" and opt["freeze_time_video"][0] == "IMAGE"
    assert opt["view_cameras"][0] == "LAVR_CAMERA_TRAJECTORY"
    weights = _options(info["input"]["required"]["attention_weights"])
    assert weights[0] == "none" and "fused4d_tiny_lora.safetensors" in weights


def test_workflow_writes_a_4d_splat_sequence(comfy, object_info):
    prompt = _prompt(object_info, seed=11)
    entry = comfy.run_prompt(prompt, timeout=900)
    assert entry["status"]["status_str"] == "success", _errors(entry)
    text = " ".join(entry["outputs"][SAMPLER]["text"])
    assert "3 views x 9 frames (3 latent)" in text and "64x64" in text and "reference row" in text
    files = sorted(set(comfy.output_files(entry)))
    splats = [f for f in files if "fused4d_splat" in f.name]
    # one Gaussian file per timestep (9 frames per view) plus the sequence manifest
    assert len([f for f in splats if f.suffix == ".ply"]) == 9, [f.name for f in files]
    assert any(f.suffix == ".json" for f in splats)
    assert any("fused4d_views" in f.name for f in files)


def test_grid_keeps_the_reference_row_and_weights_change_the_rest(comfy, object_info):
    base = _grid_only(_prompt(object_info, views=2, frames=5, steps=4, cfg=1.0, reference_mode="replace"), "lavr/f4a")
    tuned = _grid_only(_prompt(object_info, views=2, frames=5, steps=4, cfg=1.0, reference_mode="replace",
                               attention_weights="fused4d_tiny_lora.safetensors"), "lavr/f4b")
    a = comfy.run_prompt(base, timeout=600)
    b = comfy.run_prompt(tuned, timeout=600)
    for entry in (a, b):
        assert entry["status"]["status_str"] == "success", _errors(entry)
    ia, ib = _images(comfy, a), _images(comfy, b)
    assert ia.shape == (2 * 5, 64, 64, 3)
    # row 0 is the reference (same in both), the generated view differs with the LoRA
    assert np.abs(ia[:5] - ib[:5]).max() <= 1 / 255 + 1e-6
    assert np.abs(ia[5:] - ib[5:]).max() > 0.02


@pytest.mark.parametrize("change, message", [
    (dict(frames=8), "4k+1"),
    (dict(frames=33), "needs 33 per view"),  # the example clip has 17 frames
    (dict(attention="sparse"), "Unknown attention"),
])
def test_bad_settings_are_explained(comfy, object_info, change, message):
    prompt = _grid_only(_prompt(object_info, steps=1, **change), "lavr/f4err")
    status, body = comfy.post_prompt(prompt)
    assert status == 200, body
    entry = comfy.wait(body["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    assert message in _errors(entry)[0]["exception_message"]


def test_camera_model_is_refused(comfy, object_info):
    prompt = _grid_only(_prompt(object_info, steps=1), "lavr/f4cam")
    loader = next(k for k, v in prompt.items() if v["class_type"] == "LaVRLoadVideoModel")
    prompt[loader]["inputs"]["recammaster_ckpt"] = "ReCamMaster-Wan2.1/step20000.ckpt"
    status, body = comfy.post_prompt(prompt)
    entry = comfy.wait(body["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    assert "plain Wan2.1 text-to-video" in _errors(entry)[0]["exception_message"]
