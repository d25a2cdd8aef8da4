"""Tiny checkpoints in the official layouts, written into the test ComfyUI's model folders under the
released file names, so the example workflows run on CPU in seconds. Weights come from the official
golden fixtures in ../shared/reference (seeded, official key names)."""

from __future__ import annotations

import json
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"


def write_tiny_cut3r(models_dir: Path) -> Path:
    from safetensors.torch import load_file

    from lavr_core.checkpoint_io import strict_load
    from lavr_core.cut3r.conformance import fixture_config
    from lavr_core.cut3r.load import save_pth
    from lavr_core.cut3r.model import Cut3rModel

    fixture = REFERENCE / "cut3r" / "tiny"
    model = Cut3rModel(fixture_config(json.loads((fixture / "config.json").read_text()))).eval()
    strict_load(model, load_file(str(fixture / "weights.safetensors")), what="tiny CUT3R")
    out = models_dir / "cut3r" / "cut3r_512_dpt_4_64.pth"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_pth(model, out)
    return out


def write_all(models_dir: Path) -> list[Path]:
    if not REFERENCE.is_dir():
        raise FileNotFoundError(f"{REFERENCE} is missing: the tiny checkpoints are made from its golden fixtures.")
    return [write_tiny_cut3r(models_dir)]
