"""Fused 4D training: homography-augmented data and a tiny self-attention fine-tune / LoRA run on CPU."""

import pytest
import torch

from lavr_core.errors import InputError
from lavr_core.train.data_homography import (HomographyGrids, homography_from_corners, procedural_video,
                                             random_homography, static_scene, synchronized_views, warp)


def test_homography_from_corners_maps_the_points():
    src = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    dst = src * 0.8 + torch.tensor([[0.1, 0.0], [0.0, 0.05], [-0.1, 0.1], [0.02, -0.03]], dtype=torch.float64)
    h = homography_from_corners(src, dst)
    p = torch.cat([src, torch.ones(4, 1, dtype=torch.float64)], 1) @ h.T
    torch.testing.assert_close(p[:, :2] / p[:, 2:], dst)
    assert torch.allclose(homography_from_corners(src, src), torch.eye(3, dtype=torch.float64))
    with pytest.raises(InputError):
        random_homography(0.6)


def test_warp_follows_the_homography():
    # a pure shift by 2 pixels (normalised: 2 * 2/(W-1)) moves a bright column by 2 pixels
    img = torch.zeros(1, 3, 9, 9)
    img[..., 4] = 1.0
    shift = torch.eye(3, dtype=torch.float64)
    shift[0, 2] = 2 * 2 / 8
    out = warp(img, shift)
    assert out[0, 0, 4].argmax() == 6 and out[0, 0, 4, 6] > 0.99
    # the identity leaves frames alone
    torch.testing.assert_close(warp(img, torch.eye(3, dtype=torch.float64)), img)


def test_synchronized_and_static_grids():
    g = torch.Generator().manual_seed(0)
    video = procedural_video(5, 32, 32, g)
    assert video.shape == (5, 3, 32, 32) and 0 <= video.min() and video.max() <= 1
    assert (video[1:] - video[:-1]).abs().max() > 0.05  # it moves
    grid = synchronized_views(video, 3, 0.15, g)
    assert grid.shape == (3, 5, 3, 32, 32) and torch.equal(grid[0], video)
    assert (grid[1] - grid[0]).abs().mean() > 0.01 and (grid[2] - grid[1]).abs().mean() > 0.01
    # every frame of a view is warped by that view's one homography: re-warping frame-by-frame agrees
    static = static_scene(video[0], 3, 5, 0.15, g)
    assert torch.allclose(static[:, 1:], static[:, :1].expand(-1, 4, -1, -1, -1))  # still over time
    assert (static[1, 0] - static[0, 0]).abs().mean() > 0.01  # different across views
    src = HomographyGrids(2, 5, 32, 32, static_fraction=1.0)
    s = src.sample(torch.Generator().manual_seed(1))
    assert s.shape == (2, 5, 3, 32, 32) and torch.equal(s[:, 0], s[:, 4])


def test_tiny_training_lowers_held_out_loss_and_writes_loadable_weights(tmp_path, one_thread):
    from lavr_core.fused4d.weights import apply_self_attention, read_self_attention_file, resolve_updates
    from lavr_core.train.fused4d import Fused4DTrainOptions, tiny_models, train

    logs = []
    for rank in (0, 4):
        dit, vae = tiny_models(0)
        opts = Fused4DTrainOptions(out=str(tmp_path / f"w{rank}.safetensors"), tiny=True, lora_rank=rank, views=2,
                                   frames=5, height=32, width=32, steps=25, lr=3e-3, train_grids=3, val_grids=3,
                                   reference="random", attention="dense", seed=0, device="cpu")
        res = train(opts, models=(dit, vae), log=logs.append)
        assert res.val_loss_after < 0.97 * res.val_loss_before, (rank, res)
        sd = read_self_attention_file(res.out)
        assert sd and all(".self_attn." in k for k in sd)
        fresh, _ = tiny_models(0)
        x, t, ctx = torch.randn(1, 4, 2, 4, 4), torch.tensor([500.0]), torch.zeros(1, 512, 32)
        with torch.no_grad():
            base = fresh(x, t, ctx)
            with apply_self_attention(fresh, resolve_updates(fresh, sd)):
                tuned = fresh(x, t, ctx)
        assert (tuned - base).abs().max() > 1e-4
    assert any('"val_loss"' in line for line in logs)


def test_cli_is_registered_and_refuses_missing_models(capsys):
    from lavr_core.train.__main__ import COMMANDS, main

    assert "fused4d" in COMMANDS
    assert main(["fused4d", "--out", "/tmp/never.safetensors"]) == 2
    assert "--dit and --vae" in capsys.readouterr().err
