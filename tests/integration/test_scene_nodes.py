"""CUT3R nodes in the real ComfyUI: the scene-latent workflow's outputs and the loaders' errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def _errors(entry):
    return [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]


def test_scene_latent_workflow_outputs(comfy):
    from lavr_core.camera.formats import read_trajectory
    from lavr_core.pointcloud import read_ply_points

    wf = json.loads((REPO / "workflows" / "cut3r_scene_latent.json").read_text())
    wf["nodes"][2]["widgets_values"][4] = 12.0  # new fps: the encoder runs again instead of coming from cache
    entry = comfy.run_workflow(wf)
    assert entry["status"]["status_str"] == "success", _errors(entry)
    files = comfy.output_files(entry)
    src = read_trajectory([f for f in files if "scene_source" in f.name][0])
    assert src.num_frames == 8 and (src.width, src.height) == (96, 64) and src.fps == 12.0
    assert torch.allclose(src.c2w[0], torch.eye(4, dtype=torch.float64), atol=1e-5)  # world = first camera
    cloud = read_ply_points([f for f in files if f.suffix == ".ply"][0])
    assert 0 < len(cloud) <= 50000 and cloud.rgb is not None
    depth_pngs = [f for f in files if "scene_depth" in f.name]
    assert len(depth_pngs) == 8  # one preview per input frame, at the input size
    from PIL import Image
    assert Image.open(depth_pngs[0]).size == (96, 64)
    orbit = read_trajectory([f for f in files if "scene_orbit" in f.name][0])
    assert torch.allclose(orbit.c2w[0], src.c2w[0], atol=1e-6)  # first_camera mode starts at the source's camera


def _load_prompt(ckpt):
    return {"1": {"class_type": "LaVRLoadCUT3R", "inputs": {"ckpt_name": ckpt, "dtype": "auto", "device": "cpu"}},
            "2": {"class_type": "LoadImage", "inputs": {"image": "lavr_example_clip.png"}},
            "3": {"class_type": "LaVREncodeSceneLatent",
                  "inputs": {"cut3r_model": ["1", 0], "images": ["2", 0], "state_every": 4, "world_points": "head",
                             "min_confidence": 1.0, "max_points": 1000, "fps": 16.0}},
            "4": {"class_type": "LaVRSavePointCloud", "inputs": {"point_cloud": ["3", 3], "filename_prefix": "lavr/e"}}}


def test_missing_checkpoint_says_where_to_put_it(comfy):
    status, body = comfy.post_prompt(_load_prompt("cut3r_224_linear_4.pth"))
    if status == 400:  # ComfyUI versions that check V3 combo values reject it up front
        assert body["node_errors"]["1"]["errors"][0]["type"] == "value_not_in_list"
        return
    err = _errors(comfy.wait(body["prompt_id"]))[0]  # 0.3.75 does not check V3 combos: the loader explains
    assert err["exception_type"].endswith("CheckpointError")
    msg = err["exception_message"]
    assert "cut3r_224_linear_4.pth" in msg and str(comfy.base / "models" / "cut3r") in msg and "CUT3R" in msg


def test_wrong_model_file_names_the_keys(comfy):
    from safetensors.torch import save_file

    bad = comfy.base / "models" / "cut3r" / "not_cut3r.safetensors"
    save_file({"blocks.0.attn.qkv.weight": torch.zeros(4, 4)}, str(bad))
    try:
        status, body = comfy.post_prompt(_load_prompt("not_cut3r.safetensors"))
        assert status == 200, body
        entry = comfy.wait(body["prompt_id"])
        err = _errors(entry)[0]
        assert err["node_type"] == "LaVRLoadCUT3R" and err["exception_type"].endswith("CheckpointError")
        assert "CUT3R" in err["exception_message"]
    finally:
        bad.unlink()


def test_truncated_checkpoint_says_download_again(comfy):
    good = comfy.base / "models" / "cut3r" / "cut3r_512_dpt_4_64.pth"
    cut = comfy.base / "models" / "cut3r" / "cut3r_truncated.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    try:
        status, body = comfy.post_prompt(_load_prompt("cut3r_truncated.pth"))
        entry = comfy.wait(body["prompt_id"])
        err = _errors(entry)[0]
        assert err["exception_type"].endswith("CheckpointError")
        assert "cut3r_truncated.pth" in err["exception_message"]
    finally:
        cut.unlink()


def test_wrong_model_kind_connected(comfy):
    prompt = _load_prompt("cut3r_512_dpt_4_64.pth")
    prompt["3"]["inputs"]["cut3r_model"] = ["2", 0]  # an IMAGE where the model goes
    status, body = comfy.post_prompt(prompt)
    assert status == 400
    assert body["node_errors"]["3"]["errors"][0]["type"] == "return_type_mismatch"
