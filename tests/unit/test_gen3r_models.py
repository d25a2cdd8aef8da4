"""Gen3R model pieces: VGGT token packing, side-by-side RoPE, camera control, loading and bad input."""

import json
import warnings
from pathlib import Path

import pytest
import torch

from lavr_core.camera import CameraTrajectory
from lavr_core.errors import CheckpointError, InputError
from lavr_core.gen3r import (GEN3R_DIT_1_3B, GEN3R_GEOMETRY_ADAPTER, GeometryAdapter, Gen3RDiT, Gen3RDiTConfig,
                             adapter_from_state_dict, as_aggregator_layers, control_camera_from_trajectory,
                             dit_from_state_dict, join_latents, load_gen3r_dit, load_geometry_adapter, split_latents,
                             tokens_from_vggt, vggt_token_groups)
from lavr_core.gen3r.dit import rope_for_side_by_side_grid
from lavr_core.gen3r.geometry_adapter import GeometryAdapterConfig
from lavr_core.wan.model import rope_for_grid, rope_tables

GEN3R = Path(__file__).resolve().parents[2].parent / "shared/reference" / "gen3r"
needs_ref = pytest.mark.skipif(not GEN3R.is_dir(), reason=f"Gen3R reference data not present at {GEN3R}")

TINY_DIT = Gen3RDiTConfig(dim=64, in_dim=12, ffn_dim=128, out_dim=4, num_heads=2, num_layers=2, text_dim=32,
                          freq_dim=32, text_len=8, add_control_adapter=True, in_dim_control_adapter=2, name="t")


def _aggregator_layers(B=1, F=2, h=3, w=4, C=6, depth=8, special=5):
    """Fake aggregator outputs whose every value says (layer, frame, token, channel)."""
    layers = []
    for i in range(depth):
        t = torch.arange(B * F * (special + h * w) * C, dtype=torch.float32).reshape(B, F, special + h * w, C)
        layers.append(t + 1000.0 * i)
    return layers


def test_tokens_from_vggt_layout_and_back():
    h, w, C = 3, 4, 6
    layers = _aggregator_layers(h=h, w=w, C=C)
    idx = (1, 3, 5, 7)
    tokens = tokens_from_vggt(layers, 5, (h, w), layer_idx=idx)
    assert tokens.shape == (1, 5 * C, 2, h, w)
    for g, i in enumerate(idx):  # group g = patch tokens of layer idx[g], row-major over the grid
        torch.testing.assert_close(tokens[:, g * C:(g + 1) * C].permute(0, 2, 3, 4, 1).reshape(1, 2, h * w, C),
                                   layers[i][:, :, 5:])
    cam = tokens[:, 4 * C:]  # the last layer's camera token (index 0) everywhere on the grid
    torch.testing.assert_close(cam, layers[-1][:, :, 0][..., None, None].permute(0, 2, 1, 3, 4).expand_as(cam))
    groups = vggt_token_groups(tokens)
    assert len(groups) == 4 and groups[0].shape == (1, 2, 5 + h * w, C)
    for g, i in enumerate(idx):
        torch.testing.assert_close(groups[g][:, :, 5:], layers[i][:, :, 5:])
        # the special tokens are the spatial mean of the camera group: here the camera token itself
        torch.testing.assert_close(groups[g][:, :, :5], layers[-1][:, :, :1].expand(1, 2, 5, C))
    full = as_aggregator_layers(groups, depth=8, layer_idx=idx)
    assert full[7] is groups[3] and full[0] is None and len(full) == 8
    layers[3] = None
    with pytest.raises(InputError, match="layer 3"):
        tokens_from_vggt(layers, 5, (h, w), layer_idx=idx)
    with pytest.raises(InputError, match="grid"):
        tokens_from_vggt(_aggregator_layers(h=h, w=w, C=C), 5, (4, 4), layer_idx=idx)


def test_side_by_side_rope_shares_positions():
    tables = rope_tables(TINY_DIT)
    f, h, w = 2, 3, 8
    rope = rope_for_side_by_side_grid(tables, (f, h, w)).reshape(f, h, w, -1)
    plain_half = rope_for_grid(tables, (f, h, w // 2)).reshape(f, h, w // 2, -1)
    torch.testing.assert_close(rope[:, :, : w // 2], plain_half)  # left half: Wan's own positions
    torch.testing.assert_close(rope[:, :, w // 2:], plain_half)   # right half: the same positions again
    plain = rope_for_grid(tables, (f, h, w)).reshape(f, h, w, -1)
    assert not torch.allclose(rope[:, :, w // 2:], plain[:, :, w // 2:])
    with pytest.raises(InputError, match="two halves"):
        rope_for_side_by_side_grid(tables, (f, h, 7))


def test_dit_geometry_twin_equivariance():
    """Swapping the appearance and geometry halves of every input swaps the output halves: the two
    halves see each other only through attention, with shared positions. (Without the camera: its
    adapter's 3x3 convolutions run across the seam, as in the official model.)"""
    torch.manual_seed(0)
    model = Gen3RDiT(TINY_DIT).eval()
    x, y, ctx = torch.randn(1, 4, 2, 4, 8), torch.randn(1, 8, 2, 4, 8), torch.randn(1, 5, 32)

    def swap(t):
        a, b = t.chunk(2, dim=-1)
        return torch.cat([b, a], dim=-1)

    with torch.no_grad():
        out = model(x, torch.tensor([500.0]), ctx, y=y)
        out_swapped = model(swap(x), torch.tensor([500.0]), ctx, y=swap(y))
        model.rope_layout = "plain"
        out_plain = model(swap(x), torch.tensor([500.0]), ctx, y=swap(y))
    torch.testing.assert_close(out_swapped, swap(out), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out_plain, swap(out), atol=1e-3)


def test_dit_bad_inputs():
    model = Gen3RDiT(TINY_DIT).eval()
    x, y, ctx, t = torch.randn(1, 4, 2, 4, 8), torch.randn(1, 8, 2, 4, 8), torch.randn(1, 5, 32), torch.tensor([1.0])
    with pytest.raises(InputError, match="camera control"):
        model(x, t, ctx, y=y, y_camera=torch.randn(1, 2, 2, 32, 32))  # not duplicated along width
    with pytest.raises(InputError, match="12"):
        model(x, t, ctx, y=y[:, :7])
    with pytest.raises(InputError, match="do not match"):
        model(x, t, ctx, y=y[:, :, :1])
    with pytest.raises(InputError, match="tokens"):
        model(x, t, torch.randn(1, 9, 32), y=y)  # longer than text_len
    no_cam = Gen3RDiT(Gen3RDiTConfig.from_wan(TINY_DIT, add_control_adapter=False))
    assert not hasattr(no_cam, "control_adapter")
    with pytest.raises(InputError, match="no camera adapter"):
        no_cam(x, t, ctx, y=y, y_camera=torch.randn(1, 2, 2, 32, 64))


def test_join_split_latents():
    a, g = torch.randn(1, 16, 2, 3, 4), torch.randn(1, 16, 2, 3, 4)
    both = join_latents(a, g)
    assert both.shape == (1, 16, 2, 3, 8)
    a2, g2 = split_latents(both)
    assert torch.equal(a2, a) and torch.equal(g2, g)
    with pytest.raises(InputError, match="differ"):
        join_latents(a, g[..., :3])
    with pytest.raises(InputError, match="odd"):
        split_latents(both[..., :7])


def test_released_sizes_on_meta():
    """The released configurations wire up at 560x560, 49 frames: 13x70x70 latents per half,
    camera control at 560x1120, geometry tokens back at 40x40."""
    with torch.device("meta"):
        adapter = GeometryAdapter(GEN3R_GEOMETRY_ADAPTER)
        latent = adapter.encode(torch.empty(1, 10240, 49, 40, 40)).mean
        assert latent.shape == (1, 16, 13, 70, 70)
        assert adapter.decode(latent).shape == (1, 10240, 49, 40, 40)
        dit = Gen3RDiT(GEN3R_DIT_1_3B)
        out = dit(torch.empty(1, 16, 13, 70, 140), torch.tensor([999.0]), torch.empty(1, 30, 4096),
                  y=torch.empty(1, 20, 13, 70, 140), clip_feature=torch.empty(1, 257, 1280),
                  y_camera=torch.empty(1, 24, 13, 560, 1120))
    assert out.shape == (1, 16, 13, 70, 140)


@needs_ref
def test_camera_control_from_trajectory_matches_golden():
    from safetensors.torch import load_file

    d = GEN3R / "tiny_plucker"
    cfg = json.loads((d / "config.json").read_text())
    inp, out = load_file(str(d / "inputs.safetensors")), load_file(str(d / "outputs.safetensors"))
    h, w = cfg["args"]["h"], cfg["args"]["w"]
    control = control_camera_from_trajectory(CameraTrajectory(inp["c2ws"], inp["K"], w, h), h, w)
    torch.testing.assert_close(control, out["control_camera_latents"], rtol=0, atol=1e-5)
    # The same path at twice the size (K rescaled) gives the 2x ray grid.
    assert control_camera_from_trajectory(CameraTrajectory(inp["c2ws"], inp["K"], w, h), 2 * h, 2 * w).shape == \
        (1, 24, 2, 2 * h, 4 * w)


@needs_ref
def test_adapter_loading_formats_and_errors():
    from safetensors.torch import load_file

    sd = load_file(str(GEN3R / "tiny" / "weights.safetensors"))
    config = GeometryAdapterConfig(latent_channels=16, hidden_dim=8, input_dim=20, output_dim=20, resample_scale=5)
    reference = adapter_from_state_dict(sd, config)
    # The training script's save format: no "model." prefix, plus mean/std (ignored like upstream).
    bare = {k[len("model."):]: v for k, v in sd.items()}
    bare["mean"] = torch.tensor([0.14257538] + [0.0] * 15)
    bare["std"] = torch.ones(16)
    with pytest.warns(UserWarning, match="hard-coded"):
        loaded = adapter_from_state_dict(bare)  # config inferred from shapes
    assert loaded.config == config
    tokens = torch.randn(1, 20, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(tokens).mean, reference.encode(tokens).mean, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="expected"):
        adapter_from_state_dict(sd, GEN3R_GEOMETRY_ADAPTER)
    with pytest.raises(CheckpointError, match="not a Gen3R geometry adapter"):
        adapter_from_state_dict(load_file(str(GEN3R / "tiny_dit" / "weights.safetensors")))
    with pytest.raises(CheckpointError, match="missing"):
        adapter_from_state_dict({k: v for k, v in sd.items() if "middle.1" not in k})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapter_from_state_dict(sd, config)  # no mean/std in the file: no warning
    assert load_geometry_adapter(GEN3R / "tiny" / "weights.safetensors", config=None).config == config


@needs_ref
def test_dit_loading_formats_and_errors(tmp_path):
    from safetensors.torch import load_file

    sd = load_file(str(GEN3R / "tiny_dit" / "weights.safetensors"))
    expected = Gen3RDiTConfig.from_wan(TINY_DIT, name="fixture")
    prefixed = {f"model.diffusion_model.{k}": v for k, v in sd.items()}
    model = dit_from_state_dict(prefixed, expected, dtype=torch.float32)
    assert model.config.text_len == 8 and model.config.in_dim_control_adapter == 2
    with pytest.raises(CheckpointError, match="in_dim 12 \\(need 36\\)"):
        dit_from_state_dict(sd, Gen3RDiTConfig.from_wan(TINY_DIT, in_dim=36))
    with pytest.raises(CheckpointError, match="missing"):
        dit_from_state_dict({k: v for k, v in sd.items() if k != "control_adapter.conv.bias"}, expected)
    with pytest.raises(CheckpointError, match="not a Wan/Gen3R DiT"):
        dit_from_state_dict(load_file(str(GEN3R / "tiny" / "weights.safetensors")), expected)
    from safetensors.torch import save_file
    keys = sorted(sd)
    for i, part in enumerate((keys[::2], keys[1::2])):  # diffusers-style shards
        save_file({k: sd[k] for k in part}, str(tmp_path / f"diffusion_pytorch_model-0000{i + 1}-of-00002.safetensors"))
    sharded = load_gen3r_dit(tmp_path, expected)
    assert all(torch.equal(v, sd[k]) for k, v in sharded.state_dict().items())
    with pytest.raises(CheckpointError, match="diffusion_pytorch_model"):
        load_gen3r_dit(GEN3R / "tiny", expected)  # a folder without DiT files
    with pytest.raises(CheckpointError, match="JaceyH919/Gen3R"):
        load_gen3r_dit(GEN3R / "tiny_dit" / "weights.safetensors")  # the released 1.3B is expected
