"""Gen3R nodes in the real ComfyUI on the tiny Gen3R (tiny_gen3r.py): the shipped workflow, its
outputs, and the errors for bad input (image sizes, trajectory length, missing files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stand_ins import swap_stand_ins

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "workflows" / "gen3r_image_to_scene.json"
FROM_FOLDER = "(from the Gen3R folder)"
#: Shipped loaders of models too large for the tests -> test nodes of the same output type.
GEN3R_STAND_INS = {"CLIPVisionLoader": "LaVRTestTinyClipVision"}


def _errors(entry):
    return [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]


def _widget_defaults(info):
    order = info.get("input_order", {}).get("required", [])
    return [info["input"]["required"][n][1]["default"] for n in order
            if isinstance(info["input"]["required"][n][1], dict) and "default" in info["input"]["required"][n][1]]


def _test_workflow(object_info, frames=None, steps=None):
    wf = swap_stand_ins(json.loads(WORKFLOW.read_text()), set(object_info))
    for node in wf["nodes"]:
        if node["type"] in GEN3R_STAND_INS:
            node["type"] = GEN3R_STAND_INS[node["type"]]
            node["widgets_values"] = []
        if node["type"].startswith("LaVRTest"):  # stand-ins run with their own defaults
            node["widgets_values"] = _widget_defaults(object_info[node["type"]])
        if frames is not None and node["type"] == "LaVRGen3RSampler":
            node["widgets_values"][0] = frames
            node["widgets_values"][1] = steps
        if frames is not None and node["type"] == "LaVRCameraTrajectoryBuilder":
            node["widgets_values"][4] = frames
    return wf


def test_gen3r_nodes_defined(object_info):
    s = object_info["LaVRGen3RSampler"]
    req, opt = s["input"]["required"], s["input"]["optional"]
    assert req["frames"][1]["default"] == 49 and req["steps"][1]["default"] == 50
    assert req["cfg"][1]["default"] == 5.0 and req["shift"][1]["default"] == 2.0
    assert opt["clip_vision_output"][0] == "CLIP_VISION_OUTPUT" and opt["trajectory"][0] == "LAVR_CAMERA_TRAJECTORY"
    assert s["output"] == ["IMAGE", "IMAGE", "MASK", "LAVR_CAMERA_TRAJECTORY", "LAVR_POINT_CLOUD", "LAVR_GAUSSIANS"]
    assert "Gen3R" in object_info["LaVRLoadGen3R"]["input"]["required"]["gen3r_folder"][1]["options"]


def test_shipped_workflow_runs_and_writes_every_output(comfy, object_info):
    """The shipped workflow at 9 frames and 3 steps (test_comfy_api runs it as shipped: 49 frames, 50 steps)."""
    from lavr_core.camera.formats import read_trajectory
    from lavr_core.gaussians.io import read_gaussians
    from lavr_core.pointcloud import read_ply_points

    entry = comfy.run_workflow(_test_workflow(object_info, frames=9, steps=3), timeout=600)
    assert entry["status"]["status_str"] == "success", _errors(entry)
    files = comfy.output_files(entry)
    names = [f.name for f in files]
    videos = [f for f in files if f.suffix in (".mp4", ".webm", ".mov")]
    assert len(videos) == 2, names  # frames and depth preview
    cams = read_trajectory([f for f in files if "gen3r_cameras" in f.name][0])
    assert cams.num_frames == 9 and (cams.width, cams.height) == (112, 112)
    assert torch.allclose(cams.c2w[0], torch.eye(4, dtype=torch.float64), atol=5e-2)  # near the first camera
    cloud = read_ply_points([f for f in files if "gen3r_points" in f.name][0])
    assert 0 < len(cloud) <= 500000 and cloud.rgb is not None
    splat = read_gaussians([f for f in files if "gen3r_splat" in f.name][0])
    assert len(splat) > 0


def _prompt(*, frames=9, traj_frames=None, last=None, folder="Gen3R", vggt=FROM_FOLDER):
    p = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "lavr_gen3r_first.png"}},
        "2": {"class_type": "LaVRTestTinyWanTextEncoder", "inputs": {"width": 32, "seed": 0}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a small house on a green hill", "clip": ["2", 0]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "bad detailed", "clip": ["2", 0]}},
        "5": {"class_type": "LaVRLoadGen3R", "inputs": {"gen3r_folder": folder, "wan_vae": FROM_FOLDER, "vggt": vggt,
                                                         "dtype": "auto", "device": "cpu"}},
        "6": {"class_type": "LaVRTestTinyClipVision", "inputs": {}},
        "7": {"class_type": "CLIPVisionEncode",
              "inputs": {"clip_vision": ["6", 0], "image": ["1", 0], "crop": "center"}},
        "8": {"class_type": "LaVRGen3RSampler",
              "inputs": {"gen3r_model": ["5", 0], "positive": ["3", 0], "negative": ["4", 0], "image": ["1", 0],
                         "clip_vision_output": ["7", 0], "frames": frames, "steps": 2, "cfg": 5.0, "shift": 2.0,
                         "seed": 1, "max_points": 5000, "fps": 16.0, "offload": "auto"}},
        "9": {"class_type": "LaVRSavePointCloud", "inputs": {"point_cloud": ["8", 4], "filename_prefix": "lavr/g3e"}},
    }
    if traj_frames is not None:
        p["10"] = {"class_type": "LaVRCameraTrajectoryBuilder",
                   "inputs": {"mode": "preset", "preset": "orbit_left", "amount": 10.0, "easing": "linear",
                              "frames": traj_frames, "fps": 16.0, "width": 560, "height": 560, "fov_deg": 60.0,
                              "target_depth": 2.0, "source_mode": "follow", "editor_state": ""}}
        p["8"]["inputs"]["trajectory"] = ["10", 0]
    if last is not None:
        p["11"] = {"class_type": "LoadImage", "inputs": {"image": last}}
        p["8"]["inputs"]["last_image"] = ["11", 0]
    return p


def _run_error(comfy, prompt):
    status, body = comfy.post_prompt(prompt)
    assert status == 200, body
    entry = comfy.wait(body["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    return _errors(entry)[0]


def test_first_last_with_trajectory_runs(comfy):
    entry = comfy.run_prompt(_prompt(frames=5, traj_frames=5, last="lavr_gen3r_first.png"))
    assert entry["status"]["status_str"] == "success", _errors(entry)
    text = " ".join(entry["outputs"]["8"]["text"])
    assert "first-last" in text and "camera trajectory" in text


def test_images_of_different_sizes_are_refused(comfy):
    from PIL import Image

    Image.new("RGB", (64, 96), (10, 200, 30)).save(comfy.base / "input" / "lavr_gen3r_other_size.png")
    err = _run_error(comfy, _prompt(last="lavr_gen3r_other_size.png"))
    assert err["node_type"] == "LaVRGen3RSampler" and err["exception_type"].endswith("InputError")
    assert "same size" in err["exception_message"] and "320x240" in err["exception_message"]


def test_trajectory_length_mismatch_is_refused(comfy):
    err = _run_error(comfy, _prompt(frames=9, traj_frames=13))
    assert err["exception_type"].endswith("TrajectoryError")
    assert "13 frames" in err["exception_message"] and "9" in err["exception_message"]


def test_missing_files_say_where_they_go(comfy):
    err = _run_error(comfy, _prompt(folder="Gen3R-missing"))
    assert err["node_type"] == "LaVRLoadGen3R" and err["exception_type"].endswith("CheckpointError")
    msg = err["exception_message"]
    assert "JaceyH919/Gen3R" in msg and str(comfy.base / "models" / "gen3r") in msg
    err = _run_error(comfy, _prompt(vggt="model_missing.safetensors"))
    assert "model_missing.safetensors" in err["exception_message"] and "vggt" in err["exception_message"]
