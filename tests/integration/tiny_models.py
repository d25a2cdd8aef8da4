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
    """Write every tiny checkpoint: CUT3R here, plus ``write(models_dir) -> list[Path]`` of each
    ``tiny_*.py`` module beside this file (one per model family, so they can grow independently)."""
    import importlib

    if not REFERENCE.is_dir():
        raise FileNotFoundError(f"{REFERENCE} is missing: the tiny checkpoints are made from its golden fixtures.")
    written = [write_tiny_cut3r(models_dir)]
    for path in sorted(Path(__file__).resolve().parent.glob("tiny_*.py")):
        if path.stem == "tiny_models":
            continue
        written += list(importlib.import_module(path.stem).write(models_dir))
    return written
