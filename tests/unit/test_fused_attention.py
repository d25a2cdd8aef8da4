"""Fused view-time attention: flex / dense / naive agree, the mask isolates what it should, RoPE positions."""

import os
import warnings

import pytest
import torch
import torch.nn.functional as F

from lavr_core.attention import fused_view_time as fvt
from lavr_core.attention import (block_density, build_block_mask, fused_rope, fused_rope_positions,
                                 fused_view_time_attention, ideal_density, mask_density, view_time_mask,
                                 wan_attention_fn)
from lavr_core.errors import InputError
from lavr_core.wan.config import TINY
from lavr_core.wan.model import attention as wan_attention
from lavr_core.wan.model import rope_for_grid, rope_tables

# (views, times, tokens_per_frame): odd sizes, a frame longer than one 128-tile, degenerate grids.
ODD_SIZES = [(3, 5, 7), (1, 4, 9), (4, 1, 9), (2, 3, 130), (2, 2, 61)]
TOL = 1e-5


@pytest.fixture(autouse=True)
def _quiet_flex():
    # Eager flex on CPU warns (once) that it is the unfused reference path; that is what we test here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
        yield


def _qkv(layout, batch=2, heads=3, head_dim=16, seed=0, requires_grad=False):
    views, times, s = layout
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, heads, views * times * s, head_dim, generator=g).requires_grad_(requires_grad)
            for _ in range(3)]


def _decode(n, times, s):
    """(view, time) of every token index, by plain divmod (independent of the module's helpers)."""
    frame, _ = divmod(n, s)
    return divmod(frame, times)


# ----------------------------------------------------------------------------- exactness

@pytest.mark.parametrize("layout", ODD_SIZES)
def test_forward_flex_dense_naive_agree(layout):
    q, k, v = _qkv(layout)
    ref = fused_view_time_attention(q, k, v, *layout, backend="naive")
    for backend in ("flex", "dense", "auto"):
        out = fused_view_time_attention(q, k, v, *layout, backend=backend)
        assert out.shape == q.shape and out.dtype == q.dtype
        err = (out - ref).abs().max().item()
        assert err < TOL, f"{backend} differs from naive by {err:.2e} at {layout}"


def test_naive_reference_matches_explicit_loop():
    # The reference itself, against a per-query softmax over the keys chosen by divmod.
    layout = (2, 3, 5)
    q, k, v = _qkv(layout, batch=1, heads=1, head_dim=8)
    out = fused_view_time_attention(q, k, v, *layout, backend="naive")[0, 0].double()
    q64, k64, v64 = (x[0, 0].double() for x in (q, k, v))
    n = q64.shape[0]
    for i in range(n):
        vi, ti = _decode(i, layout[1], layout[2])
        seen = [_decode(j, layout[1], layout[2]) for j in range(n)]
        keys = [j for j, (vj, tj) in enumerate(seen) if vj == vi or tj == ti]
        w = torch.softmax(q64[i] @ k64[keys].T / 8 ** 0.5, dim=0)
        assert torch.allclose(out[i], w @ v64[keys], atol=1e-6)


@pytest.mark.parametrize("layout", [(3, 5, 7), (2, 3, 130), (1, 3, 11)])
def test_dense_gradients_match_naive(layout):
    grads = {}
    upstream = torch.randn(2, 3, layout[0] * layout[1] * layout[2], 16, generator=torch.Generator().manual_seed(5))
    for backend in ("dense", "naive"):
        q, k, v = _qkv(layout, requires_grad=True)
        (fused_view_time_attention(q, k, v, *layout, backend=backend) * upstream).sum().backward()
        grads[backend] = [x.grad for x in (q, k, v)]
    for name, gd, gn in zip("qkv", grads["dense"], grads["naive"]):
        assert gd.abs().max() > 1e-3  # a real gradient, not zeros on both sides
        assert (gd - gn).abs().max().item() < TOL, f"d{name} differs at {layout}"


def test_dense_query_chunks_are_exact(monkeypatch):
    # Large grids split the queries so the mask stays small; force that path on a small grid.
    layout = (3, 4, 10)
    monkeypatch.setattr(fvt, "_DENSE_MASK_MAX_ELEMENTS", 120 * 17)  # 17-query chunks: uneven last chunk
    q, k, v = _qkv(layout, requires_grad=True)
    out = fused_view_time_attention(q, k, v, *layout, backend="dense")
    out.square().sum().backward()
    dq = q.grad.clone()
    q.grad = None
    ref = fused_view_time_attention(q, k, v, *layout, backend="naive")
    ref.square().sum().backward()
    assert (out - ref).abs().max().item() < TOL
    assert (dq - q.grad).abs().max().item() < TOL


@pytest.mark.parametrize("layout", [(1, 6, 13), (5, 1, 13)])
def test_degenerate_grids_are_full_attention(layout):
    q, k, v = _qkv(layout)
    full = F.scaled_dot_product_attention(q, k, v)
    for backend in ("auto", "flex", "dense", "naive"):
        assert (fused_view_time_attention(q, k, v, *layout, backend=backend) - full).abs().max() < TOL


# ----------------------------------------------------------------------------- what a token sees

@pytest.mark.parametrize("backend", ["naive", "dense", "flex"])
def test_token_never_sees_other_view_and_other_time(backend):
    layout = views, times, s = (3, 4, 6)
    q, k, v = _qkv(layout, batch=1, heads=2)
    base = fused_view_time_attention(q, k, v, *layout, backend=backend)
    pv, pt = 1, 2  # perturb every key and value of frame (view 1, time 2)
    n = views * times * s
    hit = torch.tensor([_decode(j, times, s) == (pv, pt) for j in range(n)])
    k2, v2 = k.clone(), v.clone()
    k2[:, :, hit] += 5.0 * torch.randn_like(k2[:, :, hit])
    v2[:, :, hit] += 5.0 * torch.randn_like(v2[:, :, hit])
    out = fused_view_time_attention(q, k2, v2, *layout, backend=backend)
    change = (out - base).abs().amax(dim=(0, 1, 3))
    for i in range(n):
        qv, qt = _decode(i, times, s)
        if qv != pv and qt != pt:
            assert change[i] == 0, f"token {i} (view {qv}, time {qt}) saw frame ({pv}, {pt})"
        else:
            assert change[i] > 1e-3, f"token {i} (view {qv}, time {qt}) should see frame ({pv}, {pt})"


def test_mask_matches_definition():
    views, times, s = 3, 5, 7
    mask = view_time_mask(views, times, s)
    n = views * times * s
    for i in range(0, n, 13):
        vi, ti = _decode(i, times, s)
        expected = torch.tensor([_decode(j, times, s)[0] == vi or _decode(j, times, s)[1] == ti for j in range(n)])
        assert torch.equal(mask[i], expected)


# ----------------------------------------------------------------------------- block mask and density

@pytest.mark.parametrize("layout", [(3, 5, 7), (2, 3, 130), (4, 6, 104), (1, 4, 9), (2, 5, 128)])
def test_block_mask_from_counts_equals_create_block_mask(layout):
    made = build_block_mask(*layout, method="create")
    counted = build_block_mask(*layout, method="counts")
    assert torch.equal(made.to_dense(), counted.to_dense())
    for name in ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices"):
        a, b = getattr(made, name), getattr(counted, name)
        if name.endswith("indices"):  # only the first num entries of each row are meaningful
            nums = made.kv_num_blocks if name == "kv_indices" else made.full_kv_num_blocks
            for row in range(a.shape[-2]):
                m = int(nums[0, 0, row])
                assert torch.equal(a[0, 0, row, :m], b[0, 0, row, :m]), f"{name} row {row}"
        else:
            assert torch.equal(a, b), name


@pytest.mark.parametrize("layout", [(3, 5, 7), (2, 3, 130), (4, 3, 50)])
def test_block_tiles_cover_the_mask_exactly(layout):
    # Against the token mask, not create_block_mask: every kept pair lies in a computed tile, every
    # tile marked full holds only kept pairs, and every computed tile holds at least one.
    non_empty, full = fvt.block_counts(*layout)
    mask = view_time_mask(*layout)
    n, b = mask.shape[0], fvt.BLOCK_SIZE
    nb = non_empty.shape[0]
    padded = torch.zeros(nb * b, nb * b, dtype=torch.bool)
    padded[:n, :n] = mask
    tiles = padded.view(nb, b, nb, b)
    assert torch.equal(non_empty, tiles.any(dim=(1, 3)))
    assert torch.equal(full, tiles.all(dim=(1, 3)))


def test_densities():
    for views, times, s in [(3, 5, 7), (4, 6, 13), (2, 7, 3), (1, 5, 4)]:
        assert mask_density(views, times, s) == pytest.approx(ideal_density(views, times), abs=1e-12)
    assert ideal_density(8, 16) == pytest.approx(23 / 128)
    assert block_density(4, 6, 128) == pytest.approx(ideal_density(4, 6))  # frames aligned with tiles
    wan = block_density(8, 16, 30 * 52)  # the Wan-1.3B grid: tiles straddle frames, a few percent over
    assert ideal_density(8, 16) < wan < 1.05 * ideal_density(8, 16)


# ----------------------------------------------------------------------------- API and errors

def test_wan_attention_adapter_matches_wan_attention_on_one_view():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2 * 3 * 5, 4, 16, generator=g) for _ in range(3))  # [B, L, heads, head_dim]
    fused = wan_attention_fn(1, 6, 5)(q, k, v)
    assert fused.shape == (1, 30, 64)
    assert (fused - wan_attention(q, k, v)).abs().max() < TOL
    sparse = wan_attention_fn(2, 3, 5, backend="dense")(q, k, v)
    ref = fused_view_time_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), 2, 3, 5, backend="naive")
    assert (sparse - ref.transpose(1, 2).flatten(2)).abs().max() < TOL


def test_auto_trains_on_cpu_and_flex_refuses_grad():
    q, k, v = _qkv((2, 3, 5), requires_grad=True)
    fused_view_time_attention(q, k, v, 2, 3, 5).sum().backward()  # auto -> dense on CPU
    assert q.grad is not None and q.grad.abs().max() > 0
    with pytest.raises(InputError, match="backward"):
        fused_view_time_attention(q, k, v, 2, 3, 5, backend="flex")
    with torch.no_grad():
        fused_view_time_attention(q, k, v, 2, 3, 5, backend="flex")  # inference is fine


def test_bad_inputs_raise_input_errors():
    q, k, v = _qkv((2, 3, 5))
    with pytest.raises(InputError, match="tokens"):
        fused_view_time_attention(q, k, v, 2, 3, 6)
    with pytest.raises(InputError, match="backend"):
        fused_view_time_attention(q, k, v, 2, 3, 5, backend="sparse")
    with pytest.raises(InputError, match="shape"):
        fused_view_time_attention(q[0], k[0], v[0], 2, 3, 5)
    with pytest.raises(InputError, match="views"):
        fused_view_time_attention(q, k, v, 0, 3, 5)
    with pytest.raises(InputError, match="times"):
        fused_view_time_attention(q, k, v, 2, 3.0, 5)


# ----------------------------------------------------------------------------- compiled flex

@pytest.mark.skipif(os.environ.get("LAVR_SLOW_TESTS") != "1",
                    reason="compiles a CPU flex kernel (10-60 s); set LAVR_SLOW_TESTS=1")
@pytest.mark.parametrize("layout", [(3, 5, 7), (2, 3, 130)])
def test_compiled_flex_cpu_forward(layout):
    q, k, v = _qkv(layout)
    ref = fused_view_time_attention(q, k, v, *layout, backend="naive")
    out = fused_view_time_attention(q, k, v, *layout, backend="flex", compile=True)
    assert (out - ref).abs().max().item() < TOL


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("layout", [(3, 5, 7), (2, 3, 130)])
def test_compiled_flex_cuda_forward_and_backward(layout):
    q, k, v = (x.cuda().requires_grad_() for x in _qkv(layout))
    out = fused_view_time_attention(q, k, v, *layout, backend="flex")
    out.square().sum().backward()
    grads = [x.grad.clone() for x in (q, k, v)]
    for x in (q, k, v):
        x.grad = None
    ref = fused_view_time_attention(q, k, v, *layout, backend="naive")
    ref.square().sum().backward()
    assert (out - ref).abs().max().item() < TOL
    for g, x in zip(grads, (q, k, v)):
        assert (g - x.grad).abs().max().item() < 1e-4


# ----------------------------------------------------------------------------- RoPE positions

def test_fused_rope_positions_values():
    views, times, t_max, h, w = 3, 4, 7, 2, 5
    pos = fused_rope_positions(views, times, t_max, h, w)
    assert pos.shape == (views * times * h * w, 3) and pos.dtype == torch.int64
    for n in range(pos.shape[0]):
        frame, s = divmod(n, h * w)
        v, t = divmod(frame, times)
        row, col = divmod(s, w)
        assert pos[n].tolist() == [v * t_max + t, row, col]


def test_fused_rope_equals_wan_grid_rope_when_t_max_is_times():
    tables = rope_tables(TINY)
    views, times, h, w = 3, 4, 2, 5
    fused = fused_rope(tables, views, times, times, h, w)
    assert torch.equal(fused, rope_for_grid(tables, (views * times, h, w)))


def test_fused_rope_leaves_a_gap_between_views():
    tables = rope_tables(TINY)
    views, times, t_max, h, w = 2, 3, 10, 2, 2
    fused = fused_rope(tables, views, times, t_max, h, w)
    plain = rope_for_grid(tables, (views * t_max, h, w)).view(views, t_max, h * w, 1, -1)
    assert torch.equal(fused.view(views, times, h * w, 1, -1), plain[:, :times])
    # view 1, time 0 sits at frame position t_max, not at times: its rotation differs from frame 3's
    assert not torch.equal(fused.view(views, times, h * w, 1, -1)[1, 0],
                           rope_for_grid(tables, (times + 1, h, w)).view(times + 1, h * w, 1, -1)[times])


def test_fused_rope_errors():
    tables = rope_tables(TINY)
    with pytest.raises(InputError, match="T_max"):
        fused_rope_positions(2, 5, 4, 2, 2)
    with pytest.raises(InputError, match="frame position"):
        fused_rope(tables, 3, 2, TINY.rope_max_len // 2, 1, 1)
    with pytest.raises(InputError, match="positive"):
        fused_rope_positions(2, 0, 4, 2, 2)
