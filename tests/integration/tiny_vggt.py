"""A tiny VGGT in the official checkpoint layout (``models/vggt/model.safetensors``) and tiny
Gaussian-head + temporal weights in LaVR's layout (``models/lavr/vggt4d_tiny.safetensors``).

The VGGT weights are the reference golden's (``shared/reference/vggt/tiny``: official key names,
seeded random values) with one change: its camera head predicts a zero field of view for frame 0
(a ReLU at 0), which no real checkpoint does and which makes pixels impossible to unproject. The
FoV rows of the last pose layer are damped and their bias set so every frame gets a FoV near
1.2 rad (about 70 degrees). Everything else is bit for bit the golden.

The LaVR weights hold a Gaussian head whose output layer is moved off its zero init (so the
``gaussian_head`` path really changes the Gaussians) and temporal layers with non-zero output
projections (so a V x T grid really differs from per-timestep VGGT).
"""

from __future__ import annotations

from pathlib import Path

import torch

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "vggt" / "tiny"
VGGT_FILE = "model.safetensors"
LAVR_FILE = "vggt4d_tiny.safetensors"
#: Bias of the two FoV outputs of the camera head's last layer (summed over its 4 refinements).
FOV_BIAS = 0.3
FOV_WEIGHT_SCALE = 0.1


def build_vggt():
    """The tiny VGGT (eval mode, float32) with the golden weights and sane fields of view."""
    from safetensors.torch import load_file

    from lavr_core.vggt import VGGT, VGGTConfig

    model = VGGT(VGGTConfig.tiny()).eval()
    model.load_state_dict(load_file(str(REFERENCE / "weights.safetensors")), strict=True)
    fc2 = model.camera_head.pose_branch.fc2
    with torch.no_grad():
        fc2.weight[7:9] *= FOV_WEIGHT_SCALE
        fc2.bias[7:9] = FOV_BIAS
    return model


def build_vggt4d(vggt=None, seed: int = 0):
    """A tiny VGGT4D with a Gaussian head and temporal layers, both moved off their zero init."""
    from lavr_core.vggt4d import VGGT4D, VGGT4DConfig

    torch.manual_seed(seed)
    model = VGGT4D(vggt if vggt is not None else build_vggt(), VGGT4DConfig()).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        out = model.gaussian_head.out[2]
        out.weight.copy_(0.02 * torch.randn(out.weight.shape, generator=g))
        out.bias.copy_(0.02 * torch.randn(out.bias.shape, generator=g))
        for layer in [*model.temporal.frame, *model.temporal.global_]:
            layer.proj.weight.copy_(0.02 * torch.randn(layer.proj.weight.shape, generator=g))
    return model


def write(models_dir: Path) -> list[Path]:
    from safetensors.torch import save_file

    from lavr_core.vggt4d import save_weights

    models_dir = Path(models_dir)
    vggt = build_vggt()
    vpath = models_dir / "vggt" / VGGT_FILE
    vpath.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in vggt.state_dict().items()}, str(vpath))
    lpath = models_dir / "lavr" / LAVR_FILE
    lpath.parent.mkdir(parents=True, exist_ok=True)
    save_weights(build_vggt4d(vggt), lpath, info={"note": "tiny random test weights, not trained"})
    return [vpath, lpath]
