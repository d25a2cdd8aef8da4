"""Training the LaVR adapter: multi-camera data layout, procedural scenes, the training loop, resume, CLI."""

import json
import math

import numpy as np
import pytest
import torch

from lavr_core.camera.trajectory import CameraTrajectory
from lavr_core.errors import InputError
from lavr_core.lavr import attach_adapter, read_adapter
from lavr_core.train.__main__ import COMMANDS, main as train_main
from lavr_core.train.data_multicam import (BACK_PALETTE, _environment, _render, _yaw, MultiCamDataset,
                                           load_multicam_scene, procedural_multicam_scene, read_scene_tokens,
                                           write_multicam_scene, write_procedural_multicam)
from lavr_core.train.lavr_adapter import (STATE_FILE, WEIGHTS_FILE, Pair, Sample, TrainOptions, TrainingData,
                                          adapter_config, batch_loss, calibrate_latents, prepare_video,
                                          target_cam_emb, tiny_random_base, tiny_random_vae, train,
                                          write_latents_caches)
from lavr_core.wan.scheduler import FlowMatchScheduler

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(height=32, width=32, frames=5, cameras=3, state_tokens=12, state_dim=32)


def _opts(root, out, **kw):
    base = dict(data=str(root), out=str(out), hidden=32, adapter_layers=1, adapter_heads=2, context_tokens=4,
                train="all", device="cpu", save_every=0, log_every=0, lr=3e-3)
    return TrainOptions(**{**base, **kw})


# ------------------------------------------------------------------------------------------- data

def test_procedural_source_never_sees_what_the_targets_see():
    """The fairness of the learning test rests on this: the source camera's pixels do not depend on
    the back half of the environment at all (bit-identical), while the targets' do."""
    env = _environment(3, front_blobs=4, back_blobs=3)
    other = dict(env, back_base=1 - env["back_base"], back_cols=1 - env["back_cols"])
    K = torch.tensor([[27.7, 0, 16], [0, 27.7, 16], [0, 0, 1]], dtype=torch.float64)
    for yaw in (-10.0, 0.0, 10.0):                                    # the source's pan
        assert torch.equal(_render(env, _yaw(yaw), K, 32, 32), _render(other, _yaw(yaw), K, 32, 32))
    for yaw in (110.0, 150.0, -170.0):                                # where targets look
        assert (_render(env, _yaw(yaw), K, 32, 32) - _render(other, _yaw(yaw), K, 32, 32)).abs().max() > 0.2


def test_procedural_scene_round_trips_through_the_folder_layout(tmp_path):
    scene = procedural_multicam_scene(4, **SMALL)
    assert set(scene.videos) == {"cam00", "cam01", "cam02"} and scene.videos["cam00"].shape == (5, 3, 32, 32)
    folder = write_multicam_scene(scene, tmp_path / "s")
    assert json.loads((folder / "cameras.json").read_text())["format"] == "lavr_multicam"
    back = load_multicam_scene(folder)
    assert back.cameras == ["cam00", "cam01", "cam02"]
    for cam in back.cameras:
        assert (back.video(cam) - scene.videos[cam]).abs().max() <= 0.5 / 255 + 1e-6
        torch.testing.assert_close(back.c2w[cam], scene.c2w[cam], rtol=0, atol=1e-12)
        assert back.K[cam].shape == (5, 3, 3)
    tokens = read_scene_tokens(back.scene_tokens_path("cam00"))
    assert torch.equal(tokens.state_tokens, scene.state_tokens) and tokens.state_frames == [0, 1, 2, 3, 4]
    torch.testing.assert_close(tokens.source_c2w[0], torch.eye(4, dtype=torch.float64))
    assert not back.scene_tokens_path("cam01").exists()
    # the synthetic scene latent differs between scenes and carries the hidden backdrop
    assert (procedural_multicam_scene(5, **SMALL).state_tokens - scene.state_tokens).abs().max() > 0.1


def test_back_palette_gives_consecutive_scenes_different_hidden_colours():
    for seed in range(6):
        env = _environment(seed, 4, 0, back_palette=4)
        assert torch.equal(env["back_base"], torch.tensor(BACK_PALETTE[seed % 4]))
        # the rest of the environment is the one without a palette
        assert torch.equal(env["front_cols"], _environment(seed, 4, 0)["front_cols"])
    a, b = (procedural_multicam_scene(s, back_palette=4, back_blobs=0, **SMALL) for s in (8, 9))
    assert (a.videos["cam01"] - b.videos["cam01"]).abs().mean() > 0.1
    with pytest.raises(InputError, match="back_palette"):
        _environment(0, 4, 0, back_palette=len(BACK_PALETTE) + 1)


def test_png_folders_and_multicamvideo_cameras(tmp_path):
    from PIL import Image

    from lavr_core.camera.formats.recammaster import write_recammaster

    scene = procedural_multicam_scene(1, **SMALL)
    s = tmp_path / "mcv"
    trajs = {}
    for cam, video in scene.videos.items():
        name = f"cam{int(cam[3:]) + 1:02d}"
        (s / "videos" / name).mkdir(parents=True)
        for i, frame in enumerate(video):
            Image.fromarray((frame.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(s / "videos" / name / f"{i:04d}.png")
        trajs[name] = CameraTrajectory(c2w=scene.c2w[cam], K=scene.K, width=32, height=32)
    write_recammaster(trajs, s / "cameras" / "camera_extrinsics.json")
    back = load_multicam_scene(s)
    assert back.cameras == ["cam01", "cam02", "cam03"]
    rel = torch.linalg.inv(back.c2w["cam01"][0]) @ back.c2w["cam02"]
    torch.testing.assert_close(rel, torch.linalg.inv(scene.c2w["cam00"][0]) @ scene.c2w["cam01"], rtol=0, atol=1e-5)
    assert back.video("cam02").shape == (5, 3, 32, 32)


def test_loader_errors_are_clear(tmp_path):
    s = write_multicam_scene(procedural_multicam_scene(2, **SMALL), tmp_path / "a")
    cams = json.loads((s / "cameras.json").read_text())
    del cams["cameras"]["cam02"]
    (s / "cameras.json").write_text(json.dumps(cams))
    with pytest.raises(InputError, match="no camera 'cam02'"):
        load_multicam_scene(s)
    (s / "cameras.json").write_text(json.dumps({**cams, "format": "other"}))
    with pytest.raises(InputError, match="'other'"):
        load_multicam_scene(s)
    (s / "cameras.json").unlink()
    with pytest.raises(InputError, match="has no cameras.json"):
        load_multicam_scene(s)
    one = tmp_path / "one" / "videos"
    one.mkdir(parents=True)
    np.savez(one / "cam00.npz", frames=np.zeros((5, 32, 32, 3), np.uint8))
    with pytest.raises(InputError, match="needs two"):
        load_multicam_scene(one.parent)
    np.savez(one / "cam01.npz", frames=np.zeros((5, 32, 32), np.uint8))
    from lavr_core.train.data_multicam import read_video

    with pytest.raises(InputError, match=r"uint8 \[T, H, W, 3\]"):
        read_video(one / "cam01.npz")
    with pytest.raises(InputError, match="does not exist"):
        MultiCamDataset(tmp_path / "nope")
    with pytest.raises(InputError, match="no scene folders"):
        MultiCamDataset(tmp_path / "a" / "videos")
    with pytest.raises(InputError, match="4k\\+1"):
        prepare_video(torch.zeros(6, 3, 32, 32), 6, None)
    with pytest.raises(InputError, match="multiples of 16"):
        prepare_video(torch.zeros(5, 3, 24, 32), None, None)
    assert prepare_video(torch.rand(7, 3, 30, 50), None, (16, 32)).shape == (5, 3, 16, 32)


def test_target_cameras_follow_recammasters_training_convention():
    src = torch.eye(4, dtype=torch.float64).repeat(9, 1, 1)
    src[:, 0, 3] = 2.0                                                 # source sits at x = 2
    tgt = torch.eye(4, dtype=torch.float64).repeat(9, 1, 1)
    tgt[:, :3, :3] = _yaw(30.0)
    tgt[:, 0, 3] = torch.arange(9, dtype=torch.float64)
    emb = target_cam_emb(src, tgt, 3)
    assert emb.shape == (1, 3, 12)
    rel = emb[0].view(3, 3, 4)
    torch.testing.assert_close(rel[:, 0, 3], torch.tensor([-2.0, 2.0, 6.0]))   # frames 0, 4, 8 minus x = 2
    torch.testing.assert_close(rel[1, :, :3].double(), _yaw(30.0), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def cached_data(tmp_path_factory):
    """Procedural scenes with their VAE latents cached once (a calibrated tiny random VAE)."""
    root = tmp_path_factory.mktemp("multicam")
    kw = dict(SMALL, back_blobs=0, target_heading=(150.0, 180.0), back_palette=4)
    write_procedural_multicam(root / "train", 24, seed=0, **kw)
    write_procedural_multicam(root / "val", 6, seed=1000, **kw)
    ds = MultiCamDataset(root / "train")
    vae = calibrate_latents(tiny_random_vae(0), [prepare_video(ds[i].video(c), None, None).permute(1, 0, 2, 3)[None] * 2 - 1
                                                 for i in range(4) for c in ds[i].cameras])
    for split in ("train", "val"):
        data = TrainingData(MultiCamDataset(root / split), vae, _opts(root / split, root), 32, 4)
        assert len(write_latents_caches(data)) == len(data) * 3
    return root, vae


def test_resume_continues_exactly(cached_data, tmp_path):
    root, vae = cached_data
    straight = train(_opts(root / "train", tmp_path / "a", steps=6), base=tiny_random_base(0), vae=vae, log=lambda s: None)
    train(_opts(root / "train", tmp_path / "b", steps=3), base=tiny_random_base(0), vae=vae, log=lambda s: None)
    state = torch.load(tmp_path / "b" / STATE_FILE, weights_only=True)
    assert state["step"] == 3 and state["optimizer"]["state"]
    resumed = train(_opts(root / "train", tmp_path / "b", steps=6, resume=True), base=tiny_random_base(0), vae=vae,
                    log=lambda s: None)
    assert resumed.steps == 6 and resumed.losses == straight.losses[3:]
    _, a, meta = read_adapter(tmp_path / "a" / WEIGHTS_FILE)
    _, b, _ = read_adapter(tmp_path / "b" / WEIGHTS_FILE)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert meta["info"]["step"] == 6
    assert any(k.startswith("base.blocks.0.self_attn.") for k in a)      # retrained DiT layers are saved too
    with pytest.raises(Exception, match="lacks"):
        train(_opts(root / "train", tmp_path / "c", steps=2, resume=True), base=tiny_random_base(0), vae=vae)


def test_a_batch_is_the_mean_of_its_pairs(cached_data):
    """Batching pairs of different scenes (their own timesteps, noise, scene frames and pose
    features) gives the mean of the pairs' losses computed one by one."""
    root, vae = cached_data
    data = TrainingData(MultiCamDataset(root / "val"), vae, _opts(root / "val", root), 32, 4)
    base = tiny_random_base(0)
    first = data.data[0]
    model = attach_adapter(base, adapter_config(_opts(root, root), base, data.scene_tokens(first, "cam00")))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.adapter.parameters():  # outputs away from zero, so the scene frames matter
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    sched = FlowMatchScheduler(shift=5.0)
    sched.set_timesteps(1000, training=True)
    for with_scene in (True, False):
        samples = [Sample(Pair(data.data[i], "cam00", tgt), t, torch.randn(1, 4, 2, 4, 4, generator=g),
                          data.scene_tokens(data.data[i], "cam00") if with_scene else None)
                   for i, tgt, t in ((0, "cam01", 10), (1, "cam02", 400), (2, "cam01", 900))]
        cpu = torch.device("cpu")
        one_by_one = torch.stack([batch_loss(model, data, [s], sched, cpu) for s in samples]).mean()
        torch.testing.assert_close(batch_loss(model, data, samples, sched, cpu), one_by_one, rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="mixes"):
        batch_loss(model, data, [samples[0], Sample(samples[1].pair, 5, samples[1].noise, data.scene_tokens(first, "cam00"))],
                   sched, torch.device("cpu"))


def test_brief_training_learns_to_use_the_scene_content(cached_data, tmp_path):
    """A tiny ReCamMaster (random init) + adapter, trained briefly on CPU, uses the scene latent's
    *content*: held-out loss with the right scene latent is far below that with another held-out
    scene's latent ("shuffled") and with the adapter's output layers zeroed (ReCamMaster's start).

    Setting. The targets look at the back half of the environment, which the source camera never
    shows (``test_procedural_source_never_sees_what_the_targets_see``); only the scene latent
    describes it. The hidden backdrop is one of 4 colours (``back_palette=4``, scene seed mod 4, so
    the shuffled control, the next held-out scene, always has another hidden colour). Held-out
    flow-matching loss (12 pairs of 6 unseen scenes, fixed noise) is measured at high-noise
    schedule indices 0-100, where the target's content cannot be read from its noisy latent.

    Measured on this machine (2 shared cores, 1 thread, two runs at a time; seed 0 unless
    said; loss scene / shuffled / zeroed / none):

    ===========================================  ==================================  ======
    run                                           held-out loss                       time
    ===========================================  ==================================  ======
    1 pair/step, 300 steps, lr 3e-3, 4 colours    0.880 / 0.906 / 1.004 / 1.003        15 s
    1 pair/step, 600 steps, lr 1e-3, 4 colours    0.355 / 0.725 / 0.807 / 1.309        30 s
      same, seeds 3 and 4                         scene = shuffled (0.623, 0.657/0.670)
    8 pairs/step, 300 steps, lr 1e-3, random      0.892 / 0.921 / 1.096 / 1.204        31 s
    8 pairs/step, 300 steps, lr 1e-3, 4 colours   0.264 / 0.669 / 1.110 / 1.192   39 s (16 alone)
      (this test); seeds 1-5, scene / shuffled    .256/.795 .266/.562 .717/.793 .360/.798 .205/.737
    ===========================================  ==================================  ======

    What it took, each found by measurement:

    * No state slot may be the same in every scene. With zero padding slots in the synthetic
      scene latent the adapter could attend to them alone and emit scene-independent frames
      (scene = shuffled exactly, frames differing ~1e-3 between scenes), a dead end for training.
    * A small palette of hidden colours. Through the random tiny VAE the target latents are a
      strongly nonlinear function of a continuous colour (from the true colour a linear fit
      explains 14 % of the held-out latents' variance, nearest neighbour 69 %), which 24 training
      scenes cannot pin down; with 4 colours the test is about the plumbing, not sample size.
    * Several scenes per step (``batch_size=8``) and lr 1e-3: with one pair per step the part of
      the target only the scene explains is buried under that sample's flow-matching noise and
      most seeds learn scene-independent frames only; batched, 5 of 6 seeds use the content.
    * Not needed: a first stage training the DiT as plain ReCamMaster (the released checkpoint's
      role); a DiT trained without the adapter's frames learns to ignore them, and it was no help.
    """
    root, vae = cached_data
    opts = _opts(root / "train", tmp_path, steps=300, batch_size=8, lr=1e-3, val_data=str(root / "val"),
                 weighting="uniform", val_timesteps=(0, 20, 50, 100))
    res = train(opts, base=tiny_random_base(0), vae=vae, log=lambda s: None)
    val = {m: v["mse"] for m, v in res.val.items()}
    print({m: round(v, 4) for m, v in val.items()}, f"{res.steps} steps x 8 pairs, {res.seconds:.1f} s")
    assert all(math.isfinite(v) for v in res.losses)
    assert val["scene"] < val["shuffled"] - 0.2           # the scene's content, not just the adapter's frames
    assert val["scene"] < val["zeroed"] - 0.3
    assert val["shuffled"] < val["zeroed"] + 0.05         # a wrong scene is no better than none


def test_cli_smoke(tmp_path, capsys):
    assert "lavr-adapter" in COMMANDS and "multicam-data" in COMMANDS
    data = tmp_path / "data"
    assert train_main(["multicam-data", "--out", str(data), "--scenes", "2", "--cameras", "2", "--height", "32",
                       "--width", "32", "--state-tokens", "12"]) == 0
    out = tmp_path / "out"
    rc = train_main(["lavr-adapter", "--data", str(data), "--out", str(out), "--base", "tiny-random", "--vae", "tiny-random",
                     "--steps", "2", "--hidden", "32", "--adapter-heads", "2", "--adapter-layers", "1",
                     "--context-tokens", "4", "--val-scenes", "1", "--val-timesteps", "0,500", "--device", "cpu",
                     "--train", "none", "--batch-size", "2"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "done: 2 steps" in text and "held-out mse (scene)" in text
    cfg, tensors, meta = read_adapter(out / WEIGHTS_FILE)
    assert cfg.state_tokens == 12 and not any(k.startswith("base.") for k in tensors)
    model = attach_adapter(tiny_random_base(0), out / WEIGHTS_FILE)
    assert model.adapter.config == cfg
    assert (out / "train_log.jsonl").is_file() and json.loads((out / "train_options.json").read_text())["steps"] == 2
    assert train_main(["lavr-adapter", "--data", str(data), "--out", str(out), "--base", "tiny-random", "--vae",
                       "tiny-random", "--steps", "1", "--train", "nothing_matches", "--device", "cpu"]) == 2
