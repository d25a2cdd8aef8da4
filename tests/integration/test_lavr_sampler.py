"""Load LaVR Video Model and the LaVR Sampler in the real ComfyUI: the re-render workflow end to end
(real LoadVideo, CLIPTextEncode, CreateVideo, SaveVideo) and the error JSON of bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stand_ins import STAND_INS, swap_stand_ins

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "workflows" / "lavr_rerender.json"
WAN_SOURCE = "https://huggingface.co/Comfy-Org/Wan_2.1_ComfyUI_repackaged"
TEST_TEXT_ENCODER = STAND_INS["CLIPLoader"]


def _errors(entry):
    return [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]


def _run_error(comfy, prompt) -> dict:
    status, body = comfy.post_prompt(prompt)
    assert status == 200, json.dumps(body)[:2000]
    entry = comfy.wait(body["prompt_id"], timeout=300)
    assert entry["status"]["status_str"] == "error", entry["status"]
    return _errors(entry)[0]


def _prompt(*, dit="wan2.1_t2v_1.3B_fp16.safetensors", cam="ReCamMaster-Wan2.1/step20000.ckpt", width=32,
            steps=2, seed=0, images=("2", 0), extra=None, trajectory=None) -> dict:
    p = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "lavr_example_walk.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": TEST_TEXT_ENCODER, "inputs": {"width": width, "seed": 0}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a walk past coloured boxes", "clip": ["3", 0]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, static", "clip": ["3", 0]}},
        "6": {"class_type": "LaVRLoadVideoModel",
              "inputs": {"dit_name": dit, "recammaster_ckpt": cam, "lavr_adapter": "none",
                         "vae_name": "wan_2.1_vae.safetensors", "weight_dtype": "auto", "vae_dtype": "auto",
                         "device": "cpu", "offload": "auto"}},
        "7": trajectory or {"class_type": "LaVRCameraTrajectoryBuilder",
                            "inputs": {"mode": "preset", "preset": "orbit_left", "amount": 0.0, "easing": "linear",
                                       "frames": 17, "fps": 16.0, "width": 64, "height": 64, "fov_deg": 60.0,
                                       "target_depth": 2.0, "source_mode": "follow", "editor_state": ""}},
        "8": {"class_type": "LaVRSampler",
              "inputs": {"video_model": ["6", 0], "images": list(images), "trajectory": ["7", 0],
                         "positive": ["4", 0], "negative": ["5", 0], "steps": steps, "cfg": 5.0, "shift": 5.0,
                         "seed": seed, "denoise": 1.0, "trajectory_fit": "resample"}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": f"lavr/sampler_{seed}"}},
    }
    p.update(extra or {})
    return p


def test_node_definitions(object_info):
    loader = object_info["LaVRLoadVideoModel"]
    assert loader["output"] == ["LAVR_VIDEO_MODEL"]
    assert loader["input_order"]["required"] == ["dit_name", "recammaster_ckpt", "lavr_adapter", "vae_name",
                                                 "weight_dtype", "vae_dtype", "device", "offload"]
    req = loader["input"]["required"]
    options = lambda spec: spec[1]["options"] if spec[0] == "COMBO" else spec[0]  # noqa: E731
    assert "wan2.1_t2v_1.3B_fp16.safetensors" in options(req["dit_name"])
    assert options(req["recammaster_ckpt"])[0] == "none"
    assert "ReCamMaster-Wan2.1/step20000.ckpt" in options(req["recammaster_ckpt"])
    sampler = object_info["LaVRSampler"]
    assert sampler["output"] == ["IMAGE", "LAVR_CAMERA_TRAJECTORY"]
    sreq = sampler["input"]["required"]
    assert sreq["positive"][0] == sreq["negative"][0] == "CONDITIONING"
    assert (sreq["steps"][1]["default"], sreq["cfg"][1]["default"], sreq["shift"][1]["default"]) == (50, 5.0, 5.0)
    assert sampler["input"]["optional"]["scene_latent"][0] == "LAVR_SCENE_LATENT"
    assert object_info[TEST_TEXT_ENCODER]["output"] == ["CLIP"]


def test_rerender_workflow_runs_in_comfyui(comfy, object_info):
    import av

    from lavr_core.camera.formats import read_trajectory

    wf = swap_stand_ins(json.loads(WORKFLOW.read_text()), set(object_info))
    assert not [n for n in wf["nodes"] if n["type"] == "CLIPLoader"]
    assert [n for n in wf["nodes"] if n["type"] == "CLIPTextEncode"]  # ComfyUI's own encoder still runs
    entry = comfy.run_workflow(wf, timeout=300)
    assert entry["status"]["status_str"] == "success", json.dumps(_errors(entry), indent=1)[:3000]
    files = comfy.output_files(entry)
    videos = [f for f in files if f.suffix == ".mp4"]
    assert len(videos) == 1 and videos[0].stat().st_size > 0
    with av.open(str(videos[0])) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        rate = c.streams.video[0].average_rate
    assert len(frames) == 17 and frames[0].shape == (64, 64, 3) and float(rate) == 16.0
    traj = read_trajectory([f for f in files if "rerender_camera" in f.name][0])
    assert traj.num_frames == 17 and (traj.width, traj.height) == (64, 64)
    text = entry["outputs"]["10"]["text"]
    assert "17 frames 64x64 (5 latent frames)" in text[0] and "recammaster" in text[0]
    assert any("scene latent is not used" in t for t in text)


def test_seed_changes_the_video(comfy):
    import numpy as np
    from PIL import Image

    def run(seed):
        entry = comfy.run_prompt(_prompt(seed=seed, steps=3), timeout=300)
        assert entry["status"]["status_str"] == "success", _errors(entry)
        return np.stack([np.asarray(Image.open(f)) for f in sorted(comfy.output_files(entry))])

    a, b = run(3), run(4)
    assert a.shape == (17, 64, 64, 3) and not np.array_equal(a, b)


def test_missing_dit_says_folder_and_source(comfy):
    err = _run_error(comfy, _prompt(dit="wan2.1_t2v_1.3B_bf16.safetensors"))
    assert err["node_type"] == "LaVRLoadVideoModel" and err["exception_type"].endswith("CheckpointError")
    msg = err["exception_message"]
    assert "wan2.1_t2v_1.3B_bf16.safetensors" in msg and "'diffusion_models' model folder" in msg
    assert str(comfy.base / "models") in msg and WAN_SOURCE in msg


def test_plain_wan_model_is_refused_by_the_sampler(comfy):
    err = _run_error(comfy, _prompt(cam="none"))
    assert err["node_type"] == "LaVRSampler" and err["exception_type"].endswith("InputError")
    assert "camera-controlled" in err["exception_message"] and "recammaster_ckpt" in err["exception_message"]


def test_wrong_width_conditioning_names_the_text_encoder(comfy):
    err = _run_error(comfy, _prompt(width=48))
    assert err["node_type"] == "LaVRSampler" and err["exception_type"].endswith("InputError")
    msg = err["exception_message"]
    assert "48 wide" in msg and "32-wide umT5" in msg and "CLIPLoader" in msg and "'wan'" in msg


def test_nan_trajectory_is_refused(comfy):
    lines = (REPO / "workflows" / "inputs" / "lavr_example_walk.txt").read_text().splitlines()[:18]
    row = lines[6].split()
    row[10] = "nan"
    lines[6] = " ".join(row)
    (comfy.base / "input" / "lavr_nan_path.txt").write_text("\n".join(lines) + "\n")
    load = {"class_type": "LaVRLoadCameraTrajectory",
            "inputs": {"file": "lavr_nan_path.txt", "format": "auto", "width": 64, "height": 64, "fps": 0.0,
                       "recammaster_camera": 1}}
    err = _run_error(comfy, _prompt(trajectory=load))
    # a trajectory is validated where it is made, so a NaN never reaches the sampler
    assert err["node_type"] == "LaVRLoadCameraTrajectory" and err["exception_type"].endswith("TrajectoryError")
    msg = err["exception_message"]
    assert "line 7" in msg and "'nan'" in msg and "finite" in msg


def test_too_short_video_says_how_many_frames(comfy):
    cut = {"9": {"class_type": "ImageFromBatch", "inputs": {"image": ["2", 0], "batch_index": 0, "length": 3}}}
    err = _run_error(comfy, _prompt(images=("9", 0), extra=cut))
    assert err["node_type"] == "LaVRSampler" and err["exception_type"].endswith("InputError")
    assert "3 frames" in err["exception_message"] and "at least 5" in err["exception_message"]


def test_odd_size_names_a_size_to_crop_to(comfy):
    crop = {"9": {"class_type": "ImageCrop", "inputs": {"image": ["2", 0], "width": 60, "height": 50, "x": 0, "y": 0}}}
    err = _run_error(comfy, _prompt(images=("9", 0), extra=crop))
    assert err["node_type"] == "LaVRSampler" and err["exception_type"].endswith("InputError")
    msg = err["exception_message"]
    assert "60x50" in msg and "multiples of 16" in msg and "48x48" in msg
