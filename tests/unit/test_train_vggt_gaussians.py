"""Training the VGGT4D Gaussian head: data layout, procedural data, render-and-compare, checkpoints, CLI."""

import json
import math
import time

import pytest
import torch
from safetensors.torch import save_file

from lavr_core.camera.transforms import invert_pose
from lavr_core.errors import InputError
from lavr_core.train.__main__ import COMMANDS, main as train_main
from lavr_core.train.data_multiview import (MultiViewDataset, load_scene, procedural_cameras, procedural_scene,
                                            write_procedural_dataset, write_scene)
from lavr_core.train.vggt_gaussians import (STATE_FILE, WEIGHTS_FILE, TrainOptions, _focus_distance,
                                            depth_scale_for, perceptual_proxy, train)
from lavr_core.vggt import VGGT, VGGTConfig, extri_intri_to_pose_encoding
from lavr_core.vggt4d import VGGT4DPrediction, read_metadata

pytestmark = pytest.mark.usefixtures("one_thread")

SCENE = dict(views=3, height=28, width=42, num_blobs=16)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("procedural")
    write_procedural_dataset(root / "train", 3, seed=0, **SCENE)
    write_procedural_dataset(root / "val", 2, seed=100, **SCENE)
    return root


def tiny_vggt(seed=0):
    torch.manual_seed(seed)
    return VGGT(VGGTConfig.tiny()).eval()


# ------------------------------------------------------------------------------------------- data

def test_procedural_scene_round_trips_through_the_folder_layout(tmp_path):
    scene = procedural_scene(7, views=2, times=2, height=28, width=42, num_blobs=8)
    assert scene.images.shape == (2, 2, 3, 28, 42)
    assert (scene.images[:, 1] - scene.images[:, 0]).abs().max() > 0.05      # blobs move over time
    assert (scene.images[1, 0] - scene.images[0, 0]).abs().max() > 0.05      # views differ
    folder = write_scene(scene, tmp_path / "s")
    names = sorted(p.name for p in (folder / "images").iterdir())
    assert names == ["00000.png", "00001.png", "00002.png", "00003.png"]
    assert json.loads((folder / "scene.json").read_text())["times"] == 2
    back = load_scene(folder)
    assert back.images.shape == scene.images.shape
    assert (back.images - scene.images).abs().max() <= 0.5 / 255 + 1e-6      # 8-bit PNG quantisation
    torch.testing.assert_close(back.c2w, scene.c2w, atol=1e-12, rtol=0)
    torch.testing.assert_close(back.K, scene.K, atol=1e-12, rtol=0)


def test_loader_resizes_to_patch_multiples_and_scales_intrinsics(tmp_path):
    scene = procedural_scene(1, views=2, height=30, width=40, num_blobs=4)
    write_scene(scene, tmp_path / "s")
    back = load_scene(tmp_path / "s")
    assert back.image_hw == (28, 42)
    torch.testing.assert_close(back.K[0, 0], scene.K[0, 0] * torch.tensor([42 / 40, 1, 42 / 40], dtype=torch.float64))
    sized = load_scene(tmp_path / "s", image_size=(14, 28))
    assert sized.image_hw == (14, 28) and abs(float(sized.K[0, 1, 2]) - 7.0) < 1e-9
    with pytest.raises(InputError, match="multiple of 14"):
        load_scene(tmp_path / "s", image_size=(15, 28))


def test_loader_errors_are_clear(tmp_path):
    scene = procedural_scene(2, views=3, height=28, width=28, num_blobs=4)
    s = write_scene(scene, tmp_path / "a")
    (s / "scene.json").write_text(json.dumps({"views": 2, "times": 2}))
    with pytest.raises(InputError, match="4 pictures, but images/ holds 3"):
        load_scene(s)
    (s / "scene.json").unlink()
    (s / "cameras.lavr.json").unlink()
    with pytest.raises(InputError, match="no camera file"):
        load_scene(s)
    with pytest.raises(InputError, match="no scene folders"):
        MultiViewDataset(tmp_path / "a" / "images")
    with pytest.raises(InputError, match="does not exist"):
        MultiViewDataset(tmp_path / "nope")
    two = write_scene(procedural_scene(3, views=2, height=28, width=28, num_blobs=4), tmp_path / "b")
    (two / "images" / "00001.png").unlink()
    (two / "scene.json").unlink()
    with pytest.raises(InputError, match="2 cameras for 1 views"):
        load_scene(two)


# --------------------------------------------------------------------------------------- geometry

def test_depth_scale_from_cameras_and_focus():
    c2w, K = procedural_cameras(3, 42, 28, radius=3.5)
    rel = invert_pose(c2w[:1]) @ c2w
    assert abs(_focus_distance(rel) - 3.5) < 1e-6
    assert _focus_distance(rel[:1]) is None
    # VGGT's cameras = the true ones shrunk 4x: the camera alignment recovers the factor 4.
    small = rel.clone()
    small[:, :3, 3] /= 4
    w2c = invert_pose(small)[:, :3, :]
    pose_enc = extri_intri_to_pose_encoding(w2c, K, (28, 42))
    depth = torch.full((1, 3, 1, 28, 42, 1), 0.875)
    pred = VGGT4DPrediction(images=torch.zeros(1, 3, 1, 3, 28, 42), pose_enc=pose_enc[None, :, None],
                            depth=depth, depth_conf=torch.full((1, 3, 1, 28, 42), 2.0))
    s, how = depth_scale_for(pred, rel, "cameras")
    assert how == "cameras" and abs(s - 4) < 1e-4
    s, how = depth_scale_for(pred, rel, "focus")
    assert how == "focus" and abs(s - 4) < 1e-4          # median depth 0.875 * 4 = 3.5
    assert depth_scale_for(pred, rel, 2.5) == (2.5, "fixed")


def test_perceptual_proxy_sees_structure_mse_does_not():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 28, 28, 3, generator=g)
    noisy = (img + 0.1 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    assert perceptual_proxy(img, img) < 1e-6
    # the same mean squared error as a uniform offset, yet far worse structure
    offset = (img + (noisy - img).pow(2).mean().sqrt()).clamp(0, 1)
    assert perceptual_proxy(noisy, img) > 3 * perceptual_proxy(offset, img)


# --------------------------------------------------------------------------------------- training

def test_short_cpu_run_lowers_held_out_render_error(data, tmp_path):
    opts = TrainOptions(data=str(data / "train"), out=str(tmp_path / "run"), steps=60, lr=1e-2, context_views=2,
                        target_views=1, depth_scale="focus", val_data=str(data / "val"), log_every=20,
                        save_every=30, seed=0)
    lines = []
    t0 = time.perf_counter()
    res = train(opts, vggt=tiny_vggt(), log=lines.append)
    seconds = time.perf_counter() - t0
    before, after = res.val_before, res.val_after
    print(f"held-out MSE {before['mse']:.5f} -> {after['mse']:.5f}, PSNR {before['psnr']:.2f} -> "
          f"{after['psnr']:.2f} dB, D-SSIM {before['dssim']:.4f} -> {after['dssim']:.4f}, {seconds:.1f} s")
    assert res.steps == 60 and all(math.isfinite(x) for x in res.losses)
    assert after["mse"] < 0.97 * before["mse"], (before, after)
    assert after["dssim"] < before["dssim"]
    out = tmp_path / "run"
    meta = read_metadata(out / WEIGHTS_FILE)
    assert meta["info"]["step"] == 60 and meta["modules"] == ("gaussian_head",)
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["val_training_free"]["mse"] == before["mse"] and log[-1]["val"]["mse"] == after["mse"]
    assert any("held-out" in x for x in lines)

    # Resume: continues from step 60 with the saved optimizer state and the same weights.
    state = torch.load(out / STATE_FILE, weights_only=True)
    assert state["step"] == 60 and state["optimizer"]["state"]
    opts.steps, opts.resume, opts.val_data = 62, True, None
    res2 = train(opts, vggt=tiny_vggt(), log=lines.append)
    assert res2.steps == 62 and len(res2.losses) == 2
    assert read_metadata(out / WEIGHTS_FILE)["info"]["step"] == 62


def test_temporal_layers_train_on_multi_timestep_data(tmp_path):
    write_procedural_dataset(tmp_path / "d", 1, seed=5, views=3, times=2, height=28, width=28, num_blobs=8)
    opts = TrainOptions(data=str(tmp_path / "d"), out=str(tmp_path / "o"), steps=2, lr=1e-3, context_views=2,
                        target_views=1, depth_scale="focus", log_every=0, save_every=0)
    res = train(opts, vggt=tiny_vggt(), log=lambda s: None)
    assert res.steps == 2
    meta = read_metadata(tmp_path / "o" / WEIGHTS_FILE)
    assert meta["modules"] == ("gaussian_head", "temporal")
    from safetensors.torch import load_file

    sd = load_file(str(tmp_path / "o" / WEIGHTS_FILE))
    # the zero-initialised output projections moved: gradients reach the temporal layers
    assert sd["temporal.frame.0.proj.weight"].abs().max() > 0
    assert sd["temporal.global_.3.proj.weight"].abs().max() > 0


def test_cli_is_table_driven_and_runs(data, tmp_path, capsys):
    assert {"vggt-gaussians", "procedural-data"} <= set(COMMANDS)
    assert all(isinstance(m, str) and isinstance(h, str) for m, h in COMMANDS.values())
    with pytest.raises(SystemExit):
        train_main(["no-such-command"])
    assert train_main(["procedural-data", "--out", str(tmp_path / "p"), "--scenes", "1", "--views", "3",
                       "--height", "28", "--width", "28", "--blobs", "4"]) == 0
    assert (tmp_path / "p" / "scene_00000" / "cameras.lavr.json").is_file()
    vggt_file = tmp_path / "tiny_vggt.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_vggt().state_dict().items()}, str(vggt_file))
    rc = train_main(["vggt-gaussians", "--data", str(tmp_path / "p"), "--out", str(tmp_path / "o"), "--vggt",
                     str(vggt_file), "--steps", "1", "--target-views", "1", "--depth-scale", "focus",
                     "--threads", "1"])
    assert rc == 0 and (tmp_path / "o" / WEIGHTS_FILE).is_file()
    out = capsys.readouterr().out
    assert "done: 1 steps" in out and "step 1/1 loss" in out and "skipped" not in out
    # Geometry that puts every Gaussian behind the near plane: the step is skipped, not a crash.
    rc = train_main(["vggt-gaussians", "--data", str(tmp_path / "p"), "--out", str(tmp_path / "o3"), "--vggt",
                     str(vggt_file), "--steps", "1", "--depth-scale", "0.001", "--threads", "1"])
    assert rc == 0 and "skipped, no Gaussian is visible" in capsys.readouterr().out
    # a user error is reported, not a traceback
    rc = train_main(["vggt-gaussians", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o2"),
                     "--vggt", str(vggt_file)])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
