"""Safe checkpoint loading: no pickled code ever runs, broken files and wrong models give clear errors."""

from __future__ import annotations

import argparse
import os
import pickle

import pytest
import torch
from torch import nn

from lavr_core.checkpoint_io import (InertObject, cast_floating, find_state_dict, load_file_any, load_pickle_checkpoint,
                                     load_safetensors, strict_load, strip_prefix)
from lavr_core.errors import CheckpointError


class _Tiny(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.lin = nn.Linear(3, width)
        self.norm = nn.LayerNorm(width)


# ----------------------------------------------------------------------------- planted payloads

class _WritesMarker:
    """Pickles into ``os.system("touch <marker>")``: a classic malicious checkpoint payload."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _OpensMarker:
    """Pickles into ``builtins.open(marker, "w")`` (creates the file if called)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class _EvalMarker:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


class _PopenMarker:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import subprocess
        return (subprocess.Popen, (["touch", str(self.marker)],))


class _ConfigWithSideEffect:
    """A config class whose ``__setstate__`` would write a marker if the real class were used."""

    def __init__(self, marker):
        self.model = "ARCroco3DStereo(ARCroco3DStereoConfig(state_size=4))"
        self.marker = str(marker)

    def __setstate__(self, state):  # pragma: no cover - must never run during loading
        open(state["marker"], "w").close()
        self.__dict__.update(state)


@pytest.mark.parametrize("payload", [_WritesMarker, _OpensMarker, _EvalMarker, _PopenMarker])
@pytest.mark.parametrize("zip_format", [True, False])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload, zip_format):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pth"
    obj = {"model": _Tiny().state_dict(), "args": payload(marker)}
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError) as ei:
        load_pickle_checkpoint(path)
    assert "refuses" in str(ei.value) and "evil.pth" in str(ei.value)
    assert not marker.exists()


def test_raw_pickle_payload_in_pth_name_is_refused(tmp_path):
    """A plain pickle (not torch.save) carrying os.system."""
    marker = tmp_path / "PWNED"
    path = tmp_path / "plain.pth"
    path.write_bytes(pickle.dumps({"model": {}, "x": _WritesMarker(marker)}, protocol=2))
    with pytest.raises(CheckpointError):
        load_pickle_checkpoint(path)
    assert not marker.exists()


def test_unknown_classes_become_inert_data(tmp_path):
    marker = tmp_path / "SETSTATE_RAN"
    path = tmp_path / "cfg.pth"
    sd = _Tiny().state_dict()
    torch.save({"model": sd, "args": _ConfigWithSideEffect(marker)}, path)
    obj = load_pickle_checkpoint(path)
    assert not marker.exists()
    assert isinstance(obj["args"], InertObject)
    assert obj["args"].qualname.endswith("_ConfigWithSideEffect")
    assert obj["args"].model.startswith("ARCroco3DStereo(")
    assert torch.equal(obj["model"]["lin.weight"], sd["lin.weight"])


def test_namespace_args_load_with_weights_only(tmp_path):
    path = tmp_path / "ok.pth"
    sd = _Tiny().state_dict()
    torch.save({"model": sd, "args": argparse.Namespace(model="X(1)", lr=0.1), "epoch": 3}, path)
    obj = load_pickle_checkpoint(path)
    assert isinstance(obj["args"], argparse.Namespace) and obj["args"].model == "X(1)"
    assert find_state_dict(obj).keys() == sd.keys()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_dtypes_round_trip_and_load_into_fp32_model(tmp_path, dtype, suffix):
    torch.manual_seed(0)
    src = _Tiny()
    sd = cast_floating(src.state_dict(), dtype)
    path = tmp_path / f"w{suffix}"
    if suffix == ".pth":
        torch.save(sd, path)
    else:
        from safetensors.torch import save_file
        save_file(sd, str(path))
    loaded = find_state_dict(load_file_any(path))
    assert all(v.dtype == dtype for v in loaded.values())
    dst = _Tiny()
    strict_load(dst, loaded, what="tiny")
    assert dst.lin.weight.dtype == torch.float32
    assert torch.equal(dst.lin.weight, sd["lin.weight"].float())


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_file_names_the_file_and_what_to_do(tmp_path, suffix):
    path = tmp_path / f"cut{suffix}"
    sd = {"w": torch.randn(64, 64)}
    if suffix == ".pth":
        torch.save(sd, path)
    else:
        from safetensors.torch import save_file
        save_file(sd, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as ei:
        load_file_any(path)
    msg = str(ei.value)
    assert "cut" + suffix in msg and "download it again" in msg


def test_garbage_empty_and_missing_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_pickle_checkpoint(junk)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_safetensors(empty)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_file_any(tmp_path / "nope.pth")


def test_strict_load_lists_missing_unexpected_and_misshaped(tmp_path):
    model = _Tiny(width=4)
    wrong = _Tiny(width=5).state_dict()  # every tensor has the wrong width
    wrong["extra.bias"] = torch.zeros(2)
    del wrong["norm.bias"]
    before = model.lin.weight.clone()
    with pytest.raises(CheckpointError) as ei:
        strict_load(model, wrong, what="tiny model")
    msg = str(ei.value)
    assert "1 missing: norm.bias" in msg
    assert "1 unexpected: extra.bias" in msg
    assert "3 with the wrong shape" in msg and "lin.weight (file [5, 3] vs model [4, 3])" in msg
    assert torch.equal(model.lin.weight, before)  # nothing was loaded


def test_strict_load_caps_the_listing():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(20)])
    with pytest.raises(CheckpointError) as ei:
        strict_load(model, {}, what="big", max_listed=3)
    assert "40 missing" in str(ei.value) and "(37 more)" in str(ei.value)


def test_strict_load_rejects_nan_weights():
    model = _Tiny()
    sd = model.state_dict()
    sd["lin.weight"] = torch.full_like(sd["lin.weight"], float("nan"))
    with pytest.raises(CheckpointError, match="NaN"):
        strict_load(model, sd)


def test_strip_prefix_only_when_every_key_has_it():
    sd = {"module.model.a": 1, "module.model.b": 2}
    assert strip_prefix(sd) == {"a": 1, "b": 2}
    assert strip_prefix({"model.diffusion_model.x": 1}) == {"x": 1}
    mixed = {"model.a": 1, "head.b": 2}
    assert strip_prefix(mixed) == mixed


def test_find_state_dict_rejects_non_weights(tmp_path):
    with pytest.raises(CheckpointError, match="no state dict"):
        find_state_dict({"optimizer": {"lr": 0.1}}, path=tmp_path / "opt.pth")


def test_training_config_objects_load_as_inert_data_without_importing(tmp_path, monkeypatch):
    """An OmegaConf-like config (custom classes, an Enum, typing.Any, defaultdict) beside the weights."""
    import importlib
    import sys

    marker = tmp_path / "SETSTATE_RAN"
    (tmp_path / "fake_cfg_lib.py").write_text(
        "import enum, typing, collections\n"
        "class Mode(enum.Enum):\n    A = 1\n"
        "class Node:\n"
        "    def __init__(self, v):\n"
        "        self._val = v\n"
        "        self._meta = dict(ref_type=typing.Any, cache=collections.defaultdict(dict), mode=Mode.A)\n"
        "class DictConfig:\n"
        "    def __init__(self, d):\n        self._content = {k: Node(v) for k, v in d.items()}\n"
        "    def __getstate__(self):\n        return {'_content': self._content}\n"
        "    def __setstate__(self, s):\n"
        f"        open({str(marker)!r}, 'w').close()\n        self.__dict__.update(s)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    lib = importlib.import_module("fake_cfg_lib")
    path = tmp_path / "omega.pth"
    torch.save({"model": _Tiny().state_dict(), "args": lib.DictConfig({"model": "ARCroco3DStereo(x)"})}, path)
    del sys.modules["fake_cfg_lib"]

    obj = load_pickle_checkpoint(path)
    assert "fake_cfg_lib" not in sys.modules  # the file's classes were never imported ...
    assert not marker.exists()  # ... nor their code run
    node = obj["args"].state["_content"]["model"]
    assert isinstance(node, InertObject) and node.state["_val"] == "ARCroco3DStereo(x)"
    assert node.state["_meta"]["mode"].qualname == "fake_cfg_lib.Mode"
