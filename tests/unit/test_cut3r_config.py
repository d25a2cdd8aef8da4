"""The constructor string stored in CUT3R checkpoints is parsed, never evaluated."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lavr_core.cut3r.config import CUT3R_224_LINEAR, CUT3R_512_DPT, Cut3rConfig, config_from_kwargs, parse_constructor
from lavr_core.errors import CheckpointError

CUT3R = Path(__file__).resolve().parents[2].parent / "shared/reference/cut3r"
OFFICIAL_512 = ("ARCroco3DStereo(ARCroco3DStereoConfig(freeze='encoder', state_size=768, state_pe='2d', "
                "pos_embed='RoPE100', rgb_head=True, pose_head=True, patch_embed_cls='ManyAR_PatchEmbed', "
                "img_size=(512, 512), head_type='dpt', output_mode='pts3d+pose', depth_mode=('exp', -inf, inf), "
                "conf_mode=('exp', 1, inf), pose_mode=('exp', -inf, inf), enc_embed_dim=1024, enc_depth=24, "
                "enc_num_heads=16, dec_embed_dim=768, dec_depth=12, dec_num_heads=12, landscape_only=True))")


def test_official_512_string_gives_released_config():
    cfg = parse_constructor(OFFICIAL_512)
    assert cfg == CUT3R_512_DPT
    assert cfg.patch_embed_cls == "PatchEmbedDust3R" and cfg.landscape_only is False  # the loader's edits
    assert cfg.depth_mode == ("exp", -math.inf, math.inf) and cfg.conf_mode == ("exp", 1, math.inf)
    # defaults the string leaves out
    assert (cfg.patch_size, cfg.ray_enc_depth, cfg.local_mem_size, cfg.state_dec_num_heads) == (16, 2, 256, 16)


@pytest.mark.skipif(not CUT3R.is_dir(), reason=f"CUT3R reference data not found at {CUT3R}")
@pytest.mark.parametrize("name,expected", [("cut3r_512_dpt_state_dict.json", CUT3R_512_DPT),
                                           ("cut3r_224_linear_state_dict.json", CUT3R_224_LINEAR)])
def test_manifest_strings(name, expected):
    m = json.loads((CUT3R / name).read_text())
    assert parse_constructor(m["model_string_in_config"]) == expected
    assert parse_constructor(m["constructor_as_evaluated_by_load_model"]) == expected


def test_float_inf_spellings_and_unknown_arguments():
    cfg = parse_constructor("ARCroco3DStereo(ARCroco3DStereoConfig(output_mode='pts3d+pose', pose_head=True, "
                            "pos_embed='RoPE100', depth_mode=('exp', -float('inf'), float(\"inf\")), "
                            "conf_mode=['exp', 1, math.inf], new_flag=3))")
    assert cfg.depth_mode == ("exp", -math.inf, math.inf)
    assert cfg.conf_mode == ("exp", 1, math.inf)
    assert cfg.extra == {"new_flag": 3}


@pytest.mark.parametrize("payload", [
    "ARCroco3DStereo(ARCroco3DStereoConfig(state_size=__import__('os').system('touch /tmp/lavr_pwned')))",
    "ARCroco3DStereo(ARCroco3DStereoConfig(state_size=open('/tmp/lavr_pwned', 'w')))",
    "ARCroco3DStereo(ARCroco3DStereoConfig(state_size=(lambda: 1)()))",
    "ARCroco3DStereo(ARCroco3DStereoConfig(state_size=2**10))",
    "ARCroco3DStereo(ARCroco3DStereoConfig(**{'state_size': 4}))",
])
def test_code_in_the_string_is_rejected_not_run(payload, tmp_path):
    marker = Path("/tmp/lavr_pwned")
    existed = marker.exists()
    with pytest.raises(CheckpointError) as ei:
        parse_constructor(payload)
    assert "CUT3R" in str(ei.value) or "checkpoint" in str(ei.value)
    assert marker.exists() == existed


@pytest.mark.parametrize("text", ["", "Dust3R(AsymmetricCroCo3DStereo(pos_embed='RoPE100'))", "ARCroco3DStereo(",
                                  12, None])
def test_not_a_cut3r_constructor(text):
    with pytest.raises(CheckpointError):
        parse_constructor(text)


@pytest.mark.parametrize("change,match", [
    (dict(pos_embed="cosine"), "pos_embed"),
    (dict(output_mode="pts3d"), "output_mode"),
    (dict(pose_head=False), "pose_head"),
    (dict(head_type="dpt2"), "head_type"),
    (dict(state_pe="none"), "state_pe"),
    (dict(depth_mode=("exp", 0.0, math.inf)), "depth_mode"),
    (dict(enc_embed_dim=1000), "encoder"),
    (dict(img_size=(500, 512)), "img_size"),
])
def test_unsupported_configurations_are_clear_errors(change, match):
    from dataclasses import replace
    with pytest.raises(CheckpointError, match=match):
        replace(CUT3R_512_DPT, **change).validate()


def test_constructor_string_round_trips():
    for cfg in (CUT3R_512_DPT, CUT3R_224_LINEAR,
                config_from_kwargs(dict(CUT3R_512_DPT.to_dict(), dpt_feature_dim=8, dpt_layer_dims=(4, 8, 16, 16)))):
        assert parse_constructor(cfg.constructor_string()) == cfg
    assert Cut3rConfig().head_hooks == (0, 4, 6, 8) and CUT3R_512_DPT.head_hooks == (0, 6, 9, 12)
