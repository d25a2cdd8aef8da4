"""VGGT and splat nodes in the real ComfyUI: the example workflow's files, 4D sequences, Load Splat, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / "workflows" / "vggt_gaussians.json"


def _errors(entry):
    return [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]


def _error_of(comfy, prompt):
    status, body = comfy.post_prompt(prompt)
    assert status == 200, body
    entry = comfy.wait(body["prompt_id"])
    assert entry["status"]["status_str"] == "error"
    return _errors(entry)[0]


def _prompt(*, ckpt="model.safetensors", weights="none", views=0, resolution=42, fmt="ply", prefix="lavr/t_splat",
            min_confidence=1.0, max_gaussians=5000, fps=16.0, layout=None):
    p = {"1": {"class_type": "LaVRLoadVGGT",
               "inputs": {"ckpt_name": ckpt, "gaussian_weights": weights, "dtype": "auto", "device": "cpu"}},
         "2": {"class_type": "LoadImage", "inputs": {"image": "lavr_example_clip.png"}},
         "3": {"class_type": "LaVRVGGTGaussianDecode",
               "inputs": {"vggt_model": ["1", 0], "images": ["2", 0], "views": views, "preprocess": "crop",
                          "resolution": resolution, "min_confidence": min_confidence, "max_gaussians": max_gaussians,
                          "fps": fps}},
         "4": {"class_type": "LaVRSaveSplat", "inputs": {"gaussians": ["3", 0], "format": fmt, "filename_prefix": prefix}}}
    if layout is not None:
        p["5"] = {"class_type": "LaVRTestGridLayout", "inputs": dict(zip(("views", "times", "fps"), layout))}
        p["3"]["inputs"]["grid_layout"] = ["5", 0]
    return p


def _options(spec):
    return spec[1]["options"] if spec[0] == "COMBO" else spec[0]


def _files(comfy, entries):
    return [comfy.base / "output" / e["subfolder"] / e["filename"] for e in entries]


def test_definitions(object_info):
    dec = object_info["LaVRVGGTGaussianDecode"]
    assert dec["output"] == ["LAVR_GAUSSIANS", "LAVR_CAMERA_TRAJECTORY", "IMAGE", "IMAGE"]
    assert dec["output_name"] == ["gaussians", "cameras", "depth_preview", "render_preview"]
    assert dec["input"]["optional"]["grid_layout"][0] == "LAVR_GRID_LAYOUT"
    assert dec["input_order"]["required"] == ["vggt_model", "images", "views", "preprocess", "resolution",
                                              "min_confidence", "max_gaussians", "fps"]
    load = object_info["LaVRLoadVGGT"]["input"]["required"]
    assert _options(load["ckpt_name"]) == ["model.safetensors"]
    assert _options(load["gaussian_weights"]) == ["none", "vggt4d_tiny.safetensors"]  # only lavr_vggt4d files
    assert object_info["LaVRSaveSplat"]["output_node"] is True
    assert _options(object_info["LaVRSaveSplat"]["input"]["required"]["format"]) == ["ply", "splat", "spz"]
    # a plain point cloud is not offered as a splat
    assert "lavr_example_scene.ply" not in _options(object_info["LaVRLoadSplat"]["input"]["required"]["file"])


def test_workflow_writes_splat_cameras_and_previews(comfy):
    from plyfile import PlyData
    from PIL import Image

    from lavr_core.camera.formats import read_trajectory
    from lavr_core.gaussians import read_gaussians

    wf = json.loads(WORKFLOW.read_text())
    wf["nodes"][2]["widgets_values"][5] = 12.0  # new fps: the decode runs again instead of coming from cache
    entry = comfy.run_workflow(wf, timeout=900)
    assert entry["status"]["status_str"] == "success", _errors(entry)
    out = entry["outputs"]
    splat = out["4"]["lavr_splat"]
    assert len(splat) == 1 and splat[0]["type"] == "output" and splat[0]["format"] == "ply"
    assert splat[0]["manifest"] is False and out["4"]["lavr_files"][0]["filename"] == splat[0]["filename"]
    path = _files(comfy, splat)[0]
    g = read_gaussians(path)
    assert g.num == splat[0]["gaussians"] and 0 < g.num <= 30000
    assert g.meta.get("source") != "comfy_splat"
    ply = PlyData.read(str(path))
    names = [p.name for p in ply["vertex"].properties]
    assert ply["vertex"].count == g.num and {"x", "f_dc_0", "opacity", "scale_0", "rot_0"} <= set(names)
    assert "training_free" in " ".join(out["3"]["text"])

    files = comfy.output_files(entry)
    cams = read_trajectory([f for f in files if "vggt_cameras" in f.name][0])
    assert cams.num_frames == 8 and (cams.width, cams.height) == (96, 64) and cams.fps == 12.0
    assert torch.allclose(cams.c2w[0], torch.eye(4, dtype=torch.float64), atol=1e-4)  # view 0 = world
    for kind in ("vggt_depth", "vggt_render"):
        pngs = sorted(f for f in files if kind in f.name)
        assert len(pngs) == 8, kind  # one per input frame, at the input size
        img = torch.from_numpy(np.asarray(Image.open(pngs[0]).convert("RGB"), dtype=np.float32))
        assert Image.open(pngs[0]).size == (96, 64) and img.std() > 10, kind  # not blank


def test_grid_with_head_weights_writes_a_sequence_and_manifest(comfy):
    from lavr_core.gaussians import read_gaussians, read_sequence

    prompt = _prompt(weights="vggt4d_tiny.safetensors", views=2, fmt="spz", prefix="lavr/t_seq")
    entry = comfy.run_prompt(prompt)
    assert entry["status"]["status_str"] == "success", _errors(entry)
    ui = entry["outputs"]["4"]
    entries = ui["lavr_splat"]
    assert entries[0]["manifest"] is True and entries[0]["filename"].endswith(".json")
    assert [e["manifest"] for e in entries[1:]] == [False] * 4 and all(e["format"] == "spz" for e in entries)
    assert entries[0]["gaussians"] == sum(e["gaussians"] for e in entries[1:])
    assert [e["filename"] for e in ui["lavr_files"]] == [e["filename"] for e in entries]
    paths = _files(comfy, entries)
    seq = read_sequence(paths[0])
    assert len(seq) == 4 and torch.allclose(seq.times, torch.arange(4, dtype=torch.float64) / 16.0)
    for p, e, g in zip(paths[1:], entries[1:], seq.frames):
        assert read_gaussians(p).num == e["gaussians"] == g.num
    assert "gaussian_head" in " ".join(entry["outputs"]["3"]["text"])
    manifest = json.loads(paths[0].read_text())
    assert manifest["meta"]["gaussians"] == "gaussian_head" and manifest["meta"]["views"] == 2


def test_grid_layout_drives_the_grid_and_a_mismatch_is_refused(comfy):
    from lavr_core.gaussians import read_sequence

    entry = comfy.run_prompt(_prompt(layout=(4, 2, 8.0), prefix="lavr/t_layout"))
    assert entry["status"]["status_str"] == "success", _errors(entry)
    seq = read_sequence(_files(comfy, entry["outputs"]["4"]["lavr_splat"][:1])[0])
    assert len(seq) == 2 and seq.times.tolist() == [0.0, 1 / 8.0]  # the layout's fps wins
    err = _error_of(comfy, _prompt(layout=(3, 3, 8.0)))
    assert err["node_type"] == "LaVRVGGTGaussianDecode" and err["exception_type"].endswith("InputError")
    assert "8 frames" in err["exception_message"] and "3 views x 3 timesteps" in err["exception_message"]


def test_missing_checkpoint_says_where_to_put_it(comfy):
    status, body = comfy.post_prompt(_prompt(ckpt="model.pt"))
    if status == 400:  # ComfyUI versions that check V3 combo values reject it up front
        assert body["node_errors"]["1"]["errors"][0]["type"] == "value_not_in_list"
        return
    err = comfy.wait(body["prompt_id"])
    err = _errors(err)[0]
    assert err["node_type"] == "LaVRLoadVGGT" and err["exception_type"].endswith("CheckpointError")
    msg = err["exception_message"]
    assert "model.pt" in msg and "huggingface.co/facebook/VGGT-1B" in msg and str(comfy.base / "models" / "vggt") in msg


def test_prefix_with_dotdot_is_refused(comfy):
    err = _error_of(comfy, _prompt(prefix="../../escaped", resolution=28))
    assert err["node_type"] == "LaVRSaveSplat" and err["exception_type"].endswith("InputError")
    assert "outside" in err["exception_message"]
    assert not list(comfy.base.glob("escaped*")) and not list(comfy.root.glob("escaped*"))


def test_unsupported_format_and_file_are_refused(comfy):
    err = _error_of(comfy, _prompt(fmt="obj", resolution=28))
    assert err["node_type"] == "LaVRSaveSplat" and "obj" in err["exception_message"]
    err = _error_of(comfy, {"1": {"class_type": "LaVRLoadSplat", "inputs": {"file": "lavr_example_walk.txt"}},
                            "2": {"class_type": "LaVRSaveSplat", "inputs": {"gaussians": ["1", 0], "format": "ply",
                                                                            "filename_prefix": "lavr/x"}}})
    assert err["node_type"] == "LaVRLoadSplat" and ".ply, .splat or .spz" in err["exception_message"]


def test_wrong_links_are_refused_before_running(comfy):
    prompt = _prompt()
    prompt["4"]["inputs"]["gaussians"] = ["2", 0]  # an IMAGE where Gaussians go
    status, body = comfy.post_prompt(prompt)
    assert status == 400 and body["node_errors"]["4"]["errors"][0]["type"] == "return_type_mismatch"
    prompt = _prompt()
    prompt["1"] = {"class_type": "LaVRLoadCUT3R", "inputs": {"ckpt_name": "cut3r_512_dpt_4_64.pth", "dtype": "auto",
                                                             "device": "cpu"}}
    status, body = comfy.post_prompt(prompt)
    assert status == 400 and body["node_errors"]["3"]["errors"][0]["type"] == "return_type_mismatch"


def test_load_splat_round_trips_static_and_sequence(comfy):
    from lavr_core.gaussians import read_gaussians

    entry = comfy.run_prompt(_prompt(views=4, prefix="lavr/t_rt", resolution=28))
    assert entry["status"]["status_str"] == "success", _errors(entry)
    paths = _files(comfy, entry["outputs"]["4"]["lavr_splat"])
    dest = comfy.base / "input" / "splats"
    dest.mkdir(exist_ok=True)
    for p in paths:
        shutil.copy(p, dest / p.name)
    first = read_gaussians(paths[1])
    for name, expect in ((f"splats/{paths[1].name}", 1), (f"splats/{paths[0].name}", 2)):
        prompt = {"1": {"class_type": "LaVRLoadSplat", "inputs": {"file": name}},
                  "2": {"class_type": "LaVRSaveSplat", "inputs": {"gaussians": ["1", 0], "format": "ply",
                                                                  "filename_prefix": "lavr/t_back"}}}
        entry = comfy.run_prompt(prompt)
        assert entry["status"]["status_str"] == "success", _errors(entry)
        back = entry["outputs"]["2"]["lavr_splat"]
        assert len(back) == (1 if expect == 1 else 1 + 2)
        g = read_gaussians(_files(comfy, back)[-1 if expect == 1 else 1])
        assert g.num == first.num and torch.allclose(g.means, first.means)


@pytest.mark.parametrize("kind,words", [("nan", "NaN"), ("empty", "empty")])
def test_broken_gaussians_are_not_saved(comfy, kind, words):
    before = set((comfy.base / "output").rglob("*"))
    err = _error_of(comfy, {"1": {"class_type": "LaVRTestBrokenGaussians", "inputs": {"kind": kind}},
                            "2": {"class_type": "LaVRSaveSplat", "inputs": {"gaussians": ["1", 0], "format": "ply",
                                                                            "filename_prefix": "lavr/t_broken"}}})
    assert err["node_type"] == "LaVRSaveSplat" and err["exception_type"].endswith("InputError")
    assert words in err["exception_message"]
    assert set((comfy.base / "output").rglob("*")) == before  # nothing written, not even a temporary file


def test_wrong_files_in_the_model_folders_get_checkpoint_errors(comfy):
    from safetensors.torch import save_file

    bad = comfy.base / "models" / "vggt" / "not_vggt.safetensors"
    save_file({"blocks.0.attn.qkv.weight": torch.zeros(4, 4)}, str(bad))
    try:
        err = _error_of(comfy, _prompt(ckpt="not_vggt.safetensors"))
        assert err["node_type"] == "LaVRLoadVGGT" and err["exception_type"].endswith("CheckpointError")
        assert "not a VGGT checkpoint" in err["exception_message"]
    finally:
        bad.unlink()
    # The VGGT checkpoint offered as Gaussian-head weights: refused with a pointer to the right slot.
    shutil.copy(comfy.base / "models" / "vggt" / "model.safetensors", comfy.base / "models" / "lavr" / "vggt_copy.safetensors")
    try:
        err = _error_of(comfy, _prompt(weights="vggt_copy.safetensors"))
        assert err["exception_type"].endswith("CheckpointError") and "VGGT-4D weights" in err["exception_message"]
    finally:
        (comfy.base / "models" / "lavr" / "vggt_copy.safetensors").unlink()
