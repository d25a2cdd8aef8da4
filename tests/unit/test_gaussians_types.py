import sys
import types

import pytest
import torch

from lavr_core.camera.transforms import quat_to_matrix
from lavr_core.errors import InputError
from lavr_core.gaussians import (SH_C0, GaussianSequence, Gaussians, comfy_splat_type, from_comfy_splat,
                                 rgb_to_sh_dc, to_comfy_splat)


def make(n=50, deg=1, seed=0, **over):
    g = torch.Generator().manual_seed(seed)
    kw = dict(means=torch.randn(n, 3, generator=g), scales=torch.rand(n, 3, generator=g) * 0.1 + 0.01,
              rotations=torch.randn(n, 4, generator=g), opacities=torch.rand(n, generator=g),
              sh=torch.randn(n, (deg + 1) ** 2, 3, generator=g) * 0.3)
    kw.update(over)
    return Gaussians(**kw)


def test_valid_set_is_normalised_and_keeps_storage_conventions():
    q = torch.tensor([[0.0, 0.0, 0.0, -2.0], [-1.0, 0.0, 0.0, 0.0]])
    g = Gaussians(torch.zeros(2, 3), torch.ones(2, 3), q, torch.tensor([[0.5], [1.0]]), torch.zeros(2, 3))
    assert torch.allclose(g.rotations.norm(dim=-1), torch.ones(2))
    assert (g.rotations[:, 0] >= 0).all()
    # q and -q are one rotation: normalisation must not change it
    assert torch.allclose(quat_to_matrix(g.rotations), quat_to_matrix(q), atol=1e-6)
    assert g.opacities.shape == (2,) and g.sh.shape == (2, 1, 3) and g.sh_degree == 0


@pytest.mark.parametrize("over, match", [
    (dict(means=torch.zeros(0, 3), scales=torch.zeros(0, 3), rotations=torch.zeros(0, 4),
          opacities=torch.zeros(0), sh=torch.zeros(0, 1, 3)), "empty"),
    (dict(means=torch.zeros(50, 2)), r"\[N, 3\]"),
    (dict(scales=torch.ones(49, 3)), "same count"),
    (dict(sh=torch.zeros(50, 5, 3)), r"\(degree\+1\)\^2"),
    (dict(opacities=torch.full((50,), 1.5)), "logits"),
    (dict(scales=-torch.ones(50, 3)), "log-scales"),
    (dict(rotations=torch.zeros(50, 4)), "zero quaternions"),
])
def test_bad_sets_get_clear_errors(over, match):
    with pytest.raises(InputError, match=match):
        make(**over)


@pytest.mark.parametrize("field", ["means", "scales", "rotations", "opacities", "sh"])
def test_nan_in_any_attribute_is_refused_with_a_count(field):
    g = make()
    bad = getattr(g, field).clone()
    bad.view(bad.shape[0], -1)[3, 0] = float("nan")
    bad.view(bad.shape[0], -1)[7, 0] = float("inf")
    with pytest.raises(InputError, match=f"2 of 50 Gaussians have NaN or infinite {field}"):
        make(**{field: bad})


def test_from_rgb_and_colour_convention():
    rgb = torch.tensor([[0.0, 0.5, 1.0], [0.2, 0.4, 0.6]])
    g = Gaussians.from_rgb(torch.zeros(2, 3), torch.ones(2, 3), torch.tensor([[1.0, 0, 0, 0]] * 2), torch.ones(2), rgb,
                           sh_degree=2)
    assert g.sh.shape == (2, 9, 3) and torch.all(g.sh[:, 1:] == 0)
    assert torch.allclose(0.5 + SH_C0 * g.sh[:, 0], rgb, atol=1e-6)
    assert torch.allclose(g.rgb, rgb, atol=1e-6)
    assert torch.allclose(rgb_to_sh_dc(rgb), g.sh[:, 0])


def test_subset_cat_to_and_sh_padding():
    a, b = make(30, deg=0, seed=1), make(20, deg=2, seed=2)
    mask = torch.zeros(30, dtype=torch.bool)
    mask[::3] = True
    s = a.subset(mask)
    assert s.num == 10 and torch.equal(s.means, a.means[::3])
    assert torch.equal(a.subset([4, 2]).means, a.means[[4, 2]])
    assert a.subset(slice(5, 9)).num == 4
    with pytest.raises(InputError, match="outside"):
        a.subset([30])
    with pytest.raises(InputError, match="mask"):
        a.subset(torch.ones(3, dtype=torch.bool))
    c = Gaussians.cat([a, b])
    assert c.num == 50 and c.sh_degree == 2
    assert torch.equal(c.sh[:30, 0], a.sh[:, 0]) and torch.all(c.sh[:30, 1:] == 0)
    assert torch.equal(c.sh[30:], b.sh)
    d = c.to(dtype=torch.float64)
    assert d.means.dtype == torch.float64 and torch.allclose(d.means.float(), c.means)
    assert b.with_sh_degree(1).sh.shape == (20, 4, 3)


def test_gaussians_stay_differentiable():
    means = torch.randn(5, 3, requires_grad=True)
    raw_q = torch.randn(5, 4, requires_grad=True)
    g = make(5, means=means, rotations=raw_q)
    (g.means.sum() + g.rotations.sum()).backward()
    assert means.grad is not None and torch.all(means.grad == 1)
    assert raw_q.grad is not None and torch.isfinite(raw_q.grad).all() and raw_q.grad.abs().sum() > 0


def test_sequence_validation_and_static_part():
    frames = [make(10, seed=i) for i in range(3)]
    static = make(4, deg=0, seed=9)
    seq = GaussianSequence.from_fps(frames, fps=10, static=static)
    assert torch.allclose(seq.times, torch.tensor([0.0, 0.1, 0.2], dtype=torch.float64))
    at1 = seq.at(1)
    assert at1.num == 14 and torch.equal(at1.means[:4], static.means) and torch.equal(at1.means[4:], frames[1].means)
    with pytest.raises(InputError, match="increasing"):
        GaussianSequence(tuple(frames), [0.0, 0.2, 0.1])
    with pytest.raises(InputError, match="3 times for 2"):
        GaussianSequence(tuple(frames[:2]), [0.0, 0.1, 0.2])
    with pytest.raises(InputError, match="at least one"):
        GaussianSequence((), [])
    with pytest.raises(InputError, match="outside"):
        seq.at(3)


class StandInSplat:
    """Stand-in for ComfyUI's core ``SPLAT`` (``comfy_api/latest/_util/geometry_types.py`` in ComfyUI
    releases newer than the 0.3.75 installed here): the same constructor and fields, nothing else."""

    def __init__(self, positions, scales, rotations, opacities, sh, counts=None):
        self.positions, self.scales, self.rotations = positions, scales, rotations
        self.opacities, self.sh, self.counts = opacities, sh, counts


def test_comfy_type_detection_is_lazy_and_absent_here(monkeypatch):
    assert comfy_splat_type() is None  # ComfyUI 0.3.75 has no core splat type
    with pytest.raises(InputError, match="no core Gaussian-splat"):
        to_comfy_splat(make())
    mod = types.ModuleType("comfy_api.latest._util.geometry_types")
    mod.SPLAT = StandInSplat
    for name in ("comfy_api", "comfy_api.latest", "comfy_api.latest._util"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "comfy_api.latest._util.geometry_types", mod)
    assert comfy_splat_type() is StandInSplat
    assert isinstance(to_comfy_splat(make()), StandInSplat)


def test_comfy_round_trip_single_and_uneven_batch():
    a, b = make(12, deg=0, seed=3), make(7, deg=1, seed=4)
    s = to_comfy_splat(a, StandInSplat)
    assert s.positions.shape == (1, 12, 3) and s.opacities.shape == (1, 12, 1) and s.sh.shape == (1, 12, 1, 3)
    assert s.counts is None
    (back,) = from_comfy_splat(s)
    for f in ("means", "scales", "rotations", "opacities", "sh"):
        assert torch.allclose(getattr(back, f), getattr(a, f), atol=1e-6, rtol=0)  # quaternions re-normalise
    s2 = to_comfy_splat([a, b], StandInSplat)
    assert s2.positions.shape == (2, 12, 3) and s2.sh.shape == (2, 12, 4, 3)
    assert s2.counts.tolist() == [12, 7] and torch.all(s2.positions[1, 7:] == 0)
    a2, b2 = from_comfy_splat(s2)
    assert a2.num == 12 and b2.num == 7
    assert torch.equal(b2.means, b.means) and torch.equal(b2.sh, b.sh)
    assert torch.equal(a2.sh[:, 0], a.sh[:, 0]) and torch.all(a2.sh[:, 1:] == 0)
    with pytest.raises(InputError, match="not a ComfyUI splat"):
        from_comfy_splat(object())
    bad = StandInSplat(s2.positions, s2.scales, s2.rotations, s2.opacities, s2.sh, torch.tensor([12, 13]))
    with pytest.raises(InputError, match="counts"):
        from_comfy_splat(bad)
