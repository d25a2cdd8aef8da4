"""Our safetensors layout for the Gaussian head and temporal layers: round trip and clear errors."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from lavr_core.checkpoint_io import safetensors_metadata
from lavr_core.errors import CheckpointError
from lavr_core.vggt import VGGT, VGGTConfig
from lavr_core.vggt4d import (FORMAT, FORMAT_VERSION, InitConfig, VGGT4D, VGGT4DConfig, load_vggt4d, load_weights,
                              read_metadata, save_weights)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vggt():
    torch.manual_seed(0)
    return VGGT(VGGTConfig.tiny()).eval()


def _trained(vggt, seed=1, **cfg):
    """A VGGT4D whose head and temporal weights are all non-trivial (as after training)."""
    torch.manual_seed(seed)
    model = VGGT4D(vggt, VGGT4DConfig(init=InitConfig(scale_factor=0.7), **cfg))
    with torch.no_grad():
        for p in model.trainable_parameters():
            p.normal_(0, 0.1)
    return model


def test_round_trip_is_exact_and_layout_is_documented(vggt, tmp_path):
    model = _trained(vggt)
    path = save_weights(model, tmp_path / "w.safetensors", info={"step": 7})
    sd = load_file(str(path))
    assert sd and all(k.startswith(("gaussian_head.", "temporal.")) for k in sd)
    assert "gaussian_head.out.2.weight" in sd and sd["gaussian_head.out.2.weight"].shape[0] == 14
    assert "temporal.frame.0.proj.weight" in sd and "temporal.global_.3.qkv.weight" in sd
    assert not any(k.startswith("vggt.") for k in sd)              # never VGGT's own weights
    meta = read_metadata(path)
    assert meta["modules"] == ("gaussian_head", "temporal") and meta["embed_dim"] == 32
    assert meta["info"] == {"step": 7} and meta["init"]["scale_factor"] == 0.7

    loaded = load_vggt4d(vggt, path)
    assert loaded.config.init.scale_factor == 0.7 and loaded.temporal.num_heads == 2
    want = {k: v for k, v in model.state_dict().items() if not k.startswith("vggt.")}
    got = {k: v for k, v in loaded.state_dict().items() if not k.startswith("vggt.")}
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    # and the loaded model computes the same thing
    x = torch.rand(2, 2, 3, 28, 42, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).gaussian_raw, model(x).gaussian_raw, atol=0, rtol=0)


def test_head_only_file_and_no_file(vggt, tmp_path):
    model = _trained(vggt, temporal=False)
    path = save_weights(model, tmp_path / "head.safetensors")
    assert read_metadata(path)["modules"] == ("gaussian_head",)
    loaded = load_vggt4d(vggt, path)
    assert loaded.temporal is None and loaded.gaussian_head is not None
    plain = load_vggt4d(vggt)                                       # no weights: training-free only
    assert plain.gaussian_head is None and plain.temporal is None


def _expect(path, model, match):
    with pytest.raises(CheckpointError, match=match) as e:
        load_weights(model, path)
    assert e.value.hint  # every error says what to do


def test_wrong_files_give_clear_errors(vggt, tmp_path):
    model = _trained(vggt)
    good = save_weights(model, tmp_path / "good.safetensors")

    # a VGGT checkpoint (no LaVR metadata) instead of head weights
    save_file({k: v.contiguous() for k, v in vggt.state_dict().items()}, str(tmp_path / "vggt.safetensors"))
    _expect(tmp_path / "vggt.safetensors", model, "not a LaVR VGGT-4D weights file")
    # not safetensors at all / damaged / missing
    (tmp_path / "w.pt").write_bytes(b"\x80\x04junk")
    _expect(tmp_path / "w.pt", model, "not a .safetensors file")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    _expect(tmp_path / "bad.safetensors", model, "Cannot read")
    _expect(tmp_path / "missing.safetensors", model, "does not exist")

    sd = load_file(str(good))
    meta = safetensors_metadata(good)
    # a newer format version
    save_file(sd, str(tmp_path / "v2.safetensors"), metadata={**meta, "format_version": "2"})
    _expect(tmp_path / "v2.safetensors", model, "version")
    # a missing tensor
    partial = {k: v for k, v in sd.items() if k != "temporal.frame.1.qkv.weight"}
    save_file(partial, str(tmp_path / "partial.safetensors"), metadata=meta)
    _expect(tmp_path / "partial.safetensors", model, r"1 missing: temporal\.frame\.1\.qkv\.weight")
    # a stray tensor
    save_file({**sd, "vggt.aggregator.camera_token": torch.zeros(1)}, str(tmp_path / "stray.safetensors"),
              metadata=meta)
    _expect(tmp_path / "stray.safetensors", model, "outside")
    # trained for a different VGGT size
    save_file(sd, str(tmp_path / "big.safetensors"), metadata={**meta, "embed_dim": "1024"})
    _expect(tmp_path / "big.safetensors", model, "different VGGT")
    # parts that do not match the model
    _expect(good, VGGT4D(vggt, VGGT4DConfig(temporal=False)), "holds")
    # NaN weights
    nan = dict(sd)
    nan["gaussian_head.out.2.bias"] = torch.full_like(nan["gaussian_head.out.2.bias"], float("nan"))
    save_file(nan, str(tmp_path / "nan.safetensors"), metadata=meta)
    _expect(tmp_path / "nan.safetensors", model, "NaN")
    assert meta["format"] == FORMAT and meta["format_version"] == str(FORMAT_VERSION)


def test_nothing_to_save(vggt, tmp_path):
    with pytest.raises(CheckpointError, match="nothing to save"):
        save_weights(VGGT4D(vggt, VGGT4DConfig(gaussian_head=False, temporal=False)), tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()
