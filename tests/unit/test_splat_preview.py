"""Preview renders of Gaussians (lavr_core.gaussians.preview): sizes, ranges, grid order, errors."""

import pytest
import torch

from lavr_core.errors import InputError
from lavr_core.gaussians.preview import preview_size, render_preview, scale_intrinsics
from lavr_core.gaussians.types import GaussianSequence, Gaussians

pytestmark = pytest.mark.usefixtures("one_thread")
W, H = 40, 30
K = torch.tensor([[30.0, 0, W / 2], [0, 30.0, H / 2], [0, 0, 1]], dtype=torch.float64)


def blob(rgb, x=0.0, n=64, depth=2.0):
    """A flat disc of ``n`` opaque Gaussians of colour ``rgb`` at lateral offset ``x``, ``depth`` ahead."""
    a = torch.linspace(0, 6.28, n)
    means = torch.stack([x + 0.3 * torch.cos(a) * torch.linspace(0, 1, n), 0.3 * torch.sin(a) * torch.linspace(0, 1, n),
                         torch.full((n,), depth)], -1)
    return Gaussians.from_rgb(means, torch.full((n, 3), 0.08), torch.tensor([[1.0, 0, 0, 0]]).expand(n, 4),
                              torch.full((n,), 0.95), torch.tensor(rgb).expand(n, 3))


def cams(n, shift=0.0):
    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    c2w[:, 0, 3] = shift * torch.arange(n)
    return c2w, K.expand(n, 3, 3)


def test_preview_size_and_intrinsics_scale():
    assert preview_size(1920, 1080, 512) == (512, 288)
    assert preview_size(96, 64, 512) == (96, 64)       # never enlarged
    assert preview_size(300, 1000, 100) == (30, 100)
    Ks = scale_intrinsics(K, 0.5, 0.25)
    assert torch.allclose(Ks[0], K[0] * 0.5) and torch.allclose(Ks[1], K[1] * 0.25) and Ks[2, 2] == 1
    with pytest.raises(InputError):
        preview_size(10, 10, 0)


def test_static_preview_shape_range_and_content():
    c2w, Ks = cams(3, shift=0.2)
    img = render_preview(blob([0.9, 0.1, 0.1]), c2w, Ks, W, H)
    assert img.shape == (3, H, W, 3) and img.dtype == torch.float32 and img.device.type == "cpu"
    assert img.min() >= 0 and img.max() <= 1
    centre, corner = img[0, H // 2, W // 2], img[0, 0, 0]
    assert centre[0] > 0.6 and centre[1] < 0.3 and corner.abs().max() < 0.05     # red disc on black
    # The cameras move right, so the disc moves left in the image.
    cols = [(im[..., 0] > 0.3).nonzero()[:, 1].float().mean() for im in img]
    assert cols[0] > cols[1] > cols[2]


def test_preview_is_scaled_down_with_its_intrinsics():
    c2w, Ks = cams(1)
    full = render_preview(blob([0.2, 0.8, 0.2]), c2w, Ks, W, H)
    half = render_preview(blob([0.2, 0.8, 0.2]), c2w, Ks, W, H, max_side=W // 2)
    assert half.shape == (1, H // 2, W // 2, 3)
    down = torch.nn.functional.avg_pool2d(full[0].permute(2, 0, 1)[None], 2)[0].permute(1, 2, 0)
    assert (down - half[0]).abs().mean() < 0.05  # the same picture, smaller


def test_sequence_preview_is_view_major_and_shows_each_timestep():
    colours = ([0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9])
    seq = GaussianSequence.from_fps([blob(c) for c in colours], fps=10.0)
    V, T = 2, 3
    c2w = torch.eye(4, dtype=torch.float64).repeat(V, T, 1, 1)
    c2w[1, :, 0, 3] = 0.3                             # view 1 stands to the right
    img = render_preview(seq, c2w, K.expand(V, T, 3, 3), W, H, background=(1.0, 1.0, 1.0))
    assert img.shape == (V * T, H, W, 3)
    for v in range(V):
        for t in range(T):
            px = img[v * T + t, H // 2, W // 2 - 3 * v]   # view 1 sees the disc shifted left
            assert px.argmax() == t, (v, t, px)
    assert torch.allclose(img[0, 0, 0], torch.ones(3))    # the background colour fills empty pixels


def test_preview_errors():
    c2w, Ks = cams(2)
    seq = GaussianSequence.from_fps([blob([1, 0, 0]), blob([0, 1, 0])], fps=5.0)
    with pytest.raises(InputError, match="2 timesteps but the cameras cover 1"):
        render_preview(seq, c2w, Ks, W, H)
    with pytest.raises(InputError, match="expected"):
        render_preview(blob([1, 0, 0]), c2w, K, W, H)
    with pytest.raises(InputError, match="Gaussians"):
        render_preview(torch.zeros(3), c2w, Ks, W, H)
