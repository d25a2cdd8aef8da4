"""The pack inside a real ComfyUI: node definitions, workflows through /prompt, error shapes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy_harness import ui_to_api
from stand_ins import swap_stand_ins

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))
LAVR_NODES = {"LaVRCameraTrajectoryBuilder", "LaVRLoadCameraTrajectory", "LaVRSaveCameraTrajectory",
              "LaVRLoadPointCloud", "LaVRSavePointCloud", "LaVRLoadCUT3R", "LaVREncodeSceneLatent",
              "LaVRLoadVGGT", "LaVRVGGTGaussianDecode", "LaVRSaveSplat", "LaVRLoadSplat",
              "LaVRLoadVideoModel", "LaVRSampler", "LaVRFused4DSampler", "LaVRLoadGen3R", "LaVRGen3RSampler"}


def test_pack_loaded_without_errors(comfy):
    log = comfy.log_path.read_text(errors="replace")
    assert "ComfyUI-LaVR" in log
    bad = [ln for ln in log.splitlines() if "IMPORT FAILED" in ln and "LaVR" in ln]
    assert not bad, bad


def test_every_node_has_category_tooltips_and_aliases(object_info):
    ours = {k: v for k, v in object_info.items() if k.startswith("LaVR")}
    assert LAVR_NODES <= set(ours), sorted(LAVR_NODES - set(ours))
    for name, info in ours.items():
        assert info["category"].startswith("LaVR/"), (name, info["category"])
        assert info["description"], name
        assert info.get("search_aliases"), f"{name} has no search_aliases"
        for group in ("required", "optional"):
            for inp, spec in info["input"].get(group, {}).items():
                opts = spec[1] if len(spec) > 1 else {}
                assert opts.get("tooltip"), f"{name}.{inp} has no tooltip"


def test_builder_definition(object_info):
    info = object_info["LaVRCameraTrajectoryBuilder"]
    req = info["input"]["required"]
    assert info["input_order"]["required"][:2] == ["mode", "preset"]
    presets = req["preset"][1]["options"] if req["preset"][0] == "COMBO" else req["preset"][0]
    for p in ("orbit_left", "dolly_in", "zoom_in", "spiral", "bullet_time"):
        assert p in presets
    assert sum(p.startswith("recammaster_") for p in presets) == 10
    assert req["frames"][1]["min"] == 1 and req["frames"][1]["max"] == 2048
    assert info["output"] == ["LAVR_CAMERA_TRAJECTORY", "IMAGE"]
    assert info["input"]["optional"]["source_trajectory"][0] == "LAVR_CAMERA_TRAJECTORY"


def test_model_folders_registered(comfy):
    # folder listing endpoint of ComfyUI: /models lists registered folder names
    folders = comfy.get("/models")
    for name in ("cut3r", "vggt", "lavr", "gen3r"):
        assert name in folders, folders


@pytest.mark.parametrize("wf_path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_runs(comfy, object_info, wf_path):
    wf = swap_stand_ins(json.loads(wf_path.read_text()), set(object_info))
    entry = comfy.run_workflow(wf, timeout=900)
    msgs = [m for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert entry["status"]["status_str"] == "success", json.dumps(msgs, indent=1)[:3000]
    files = comfy.output_files(entry)
    assert files, "the workflow wrote no files"
    for f in files:
        assert f.exists() and f.stat().st_size > 0, f


def test_camera_workflow_outputs_are_right(comfy):
    from lavr_core.camera.formats import read_trajectory

    wf = json.loads((REPO / "workflows" / "camera_trajectory_editor.json").read_text())
    wf["nodes"][0]["widgets_values"][5] = 15.0  # a new fps: ComfyUI must run the builder again, not reuse its cache
    entry = comfy.run_workflow(wf)
    assert entry["status"]["status_str"] == "success"
    files = comfy.output_files(entry)
    exact = [f for f in files if f.name.endswith(".json") and "nerfstudio" not in str(f)]
    traj = read_trajectory(exact[0])
    assert traj.num_frames == 49 and (traj.width, traj.height) == (832, 480) and traj.fps == 15.0
    # orbit_left 30 deg around a point 2 units ahead: the last camera still looks at it, 30 deg away
    import torch
    target = torch.tensor([0, 0, 2.0], dtype=torch.float64)
    c = traj.c2w[:, :3, 3]
    assert torch.allclose((c - target).norm(dim=-1), torch.full((49,), 2.0, dtype=torch.float64), atol=1e-6)
    v0, v1 = c[0] - target, c[-1] - target
    ang = torch.rad2deg(torch.arccos((v0 @ v1) / (v0.norm() * v1.norm())))
    assert abs(ang.item() - 30.0) < 1e-4
    ns = [f for f in files if "nerfstudio" in str(f)][0]
    back = read_trajectory(ns)
    assert torch.allclose(back.c2w, traj.c2w, atol=1e-6)
    editor = entry["outputs"]["1"]["lavr_editor"][0]
    assert len(editor["target"]["c2w"]) == 49


def _base_prompt(**builder_overrides):
    inputs = {"mode": "preset", "preset": "dolly_in", "amount": 1.0, "easing": "linear", "frames": 9, "fps": 16.0,
              "width": 832, "height": 480, "fov_deg": 60.0, "target_depth": 2.0, "source_mode": "follow",
              "editor_state": ""}
    inputs.update(builder_overrides)
    return {"1": {"class_type": "LaVRCameraTrajectoryBuilder", "inputs": inputs},
            "2": {"class_type": "LaVRSaveCameraTrajectory",
                  "inputs": {"trajectory": ["1", 0], "format": "lavr_trajectory", "filename_prefix": "lavr/test"}}}


def _node_error_types(body, node="1"):
    return [e["type"] for e in body["node_errors"][node]["errors"]]


def test_bad_frame_count_rejected_before_running(comfy):
    status, body = comfy.post_prompt(_base_prompt(frames=5000))
    assert status == 400 and body["error"]["type"] == "prompt_outputs_failed_validation"
    assert "value_bigger_than_max" in _node_error_types(body)
    status, body = comfy.post_prompt(_base_prompt(frames=0))
    assert status == 400 and "value_smaller_than_min" in _node_error_types(body)


def test_malformed_editor_state_rejected_with_message(comfy):
    status, body = comfy.post_prompt(_base_prompt(editor_state="{not json"))
    assert status == 400
    err = body["node_errors"]["1"]["errors"][0]
    assert err["type"] == "custom_validation_failed"
    assert "editor_state" in err["details"] and "JSON" in err["details"]


def test_keyframes_mode_needs_two_keyframes(comfy):
    state = json.dumps({"version": 1, "mode": "keyframes", "keyframes": [
        {"frame": 0, "position": [0, 0, 0], "look_at": [0, 0, 1]}]})
    status, body = comfy.post_prompt(_base_prompt(mode="keyframes", editor_state=state))
    if status == 400:  # rejected at validation: also acceptable, but it must say why
        assert "keyframe" in json.dumps(body).lower()
        return
    entry = comfy.wait(body["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    err = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"][0]
    assert err["node_type"] == "LaVRCameraTrajectoryBuilder"
    assert "keyframe" in err["exception_message"].lower()


def test_filename_prefix_cannot_escape_output(comfy):
    prompt = _base_prompt()
    prompt["2"]["inputs"]["filename_prefix"] = "../../escaped"
    status, body = comfy.post_prompt(prompt)
    assert status == 200
    entry = comfy.wait(body["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    err = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"][0]
    assert "outside" in err["exception_message"] and err["exception_type"].endswith("InputError")
    assert not list((comfy.base).glob("escaped*")) and not list(comfy.root.glob("escaped*"))


def test_missing_link_and_unknown_node_shapes(comfy):
    prompt = _base_prompt()
    del prompt["2"]["inputs"]["trajectory"]
    status, body = comfy.post_prompt(prompt)
    assert status == 400 and "required_input_missing" in _node_error_types(body, "2")
    status, body = comfy.post_prompt({"1": {"class_type": "LaVRNoSuchNode", "inputs": {}}})
    assert status == 400 and body["error"]["type"] == "invalid_prompt"


def test_ui_to_api_matches_widget_order(object_info):
    wf = json.loads((REPO / "workflows" / "camera_trajectory_editor.json").read_text())
    prompt = ui_to_api(wf, object_info)
    b = prompt["1"]["inputs"]
    assert b["mode"] == "preset" and b["frames"] == 49 and b["preset"] == "orbit_left"
    assert json.loads(b["editor_state"])["version"] == 1
    assert prompt["2"]["inputs"]["trajectory"] == ["1", 0]
