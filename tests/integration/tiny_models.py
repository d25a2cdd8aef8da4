"""Tiny checkpoints in the official layouts, written into the test ComfyUI's model folders under the
released file names, so the example workflows run on CPU in seconds. Weights come from the official
golden fixtures in ../shared/reference (seeded, official key names)."""

from __future__ import annotations

from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"


def write_tiny_cut3r(models_dir: Path) -> Path:
    from lavr_core.cut3r.conformance import fixture_model
    from lavr_core.cut3r.load import save_pth

    model = fixture_model(REFERENCE / "cut3r" / "tiny")
    out = models_dir / "cut3r" / "cut3r_512_dpt_4_64.pth"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_pth(model, out)
    return out


def write_all(models_dir: Path) -> list[Path]:
    if not REFERENCE.is_dir():
        raise FileNotFoundError(f"{REFERENCE} is missing: the tiny checkpoints are made from its golden fixtures.")
    return [write_tiny_cut3r(models_dir)]
