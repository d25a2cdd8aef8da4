"""Benchmark: fused view-time attention (FlexAttention block mask) vs the same mask dense vs no mask.

Three ways to run one self-attention over a ``views x times`` grid of frames:

* ``fused``: ``fused_view_time_attention(backend="flex", compile=True)``, the block-sparse kernel
  (tiles with no same-view/same-time pair are skipped);
* ``dense``: ``backend="dense"``, the same mask as a boolean ``[N, N]`` for SDPA (all ``N^2`` pairs
  computed, masked ones discarded);
* ``full``: plain ``F.scaled_dot_product_attention`` with no mask (what Wan does per video);
* ``flex-eager`` (on request): flex without ``torch.compile``, torch's unfused reference path.

All three are measured in the same run, interleaved (round-robin repetitions, best and median
reported), so machine load hits them alike. The ideal speed-up of the mask is ``1 / density`` with
``density = (T + V - 1) / (T V)``; a tiled kernel can reach at most ``1 / block_density`` (tiles that
straddle frame boundaries are computed whole), both printed.

Peak memory is the extra memory one call needs above its inputs: on CUDA
``torch.cuda.max_memory_allocated``; on CPU the process's peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs``) with glibc's mmap threshold pinned at 64 KiB, so every large tensor is its
own mapping and freed memory really leaves the process (the script re-executes itself with that set).

With ``--block`` the unit timed is one whole Wan DiT block (``lavr_core.wan.model.WanBlock``: modulated
self-attention with RoPE, cross-attention to 512 text tokens, FFN; Wan-1.3B widths when heads x
head_dim = 1536) called through the hooks the Fused 4D sampler uses (``attn_fn`` per block, RoPE at
the fused (v*T + t, row, column) positions), so the speed-up includes everything attention does not
skip. Variants then are ``fused`` / ``dense`` (the fused mask) and ``full`` (Wan's own attention).

Usage::

    python bench/bench_fused_attention.py                 # --size cpu (default)
    python bench/bench_fused_attention.py --size cpu-tiny
    python bench/bench_fused_attention.py --size gpu [--backward]
    python bench/bench_fused_attention.py --views 4 --times 6 --h 15 --w 26 --heads 2 --json out.json
    python bench/bench_fused_attention.py --size gpu --block     # one Wan-1.3B block, fused vs full
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Sizes (views, times, token rows h, token columns w, heads, head_dim).
SIZES = {
    # Wan-1.3B at 480x832: 30x52 latent tokens per frame (after the 2x2 patch), 12 heads of 128.
    "gpu": (8, 16, 30, 52, 12, 128),
    # Half the Wan token grid per axis, so one frame (390 tokens) spans ~3 tiles of 128 and tiles
    # straddle frame boundaries as at the real size (~12 tiles a frame there); 2 heads of 128 keep a
    # CPU run near a minute: heads are independent, so the ratios do not depend on their number.
    "cpu": (4, 6, 15, 26, 2, 128),
    # The brief's first suggestion: frames of 104 tokens, smaller than a tile, so nearly every
    # computed tile needs the mask: the worst case for a tiled kernel (block density 0.68 vs 0.375).
    "cpu-tiny": (4, 6, 8, 13, 12, 128),
}
_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def _read_status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


class CpuPeak:
    """Peak extra resident memory of a block of code (bytes), from VmHWM after a reset."""

    def __enter__(self):
        gc.collect()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS
        self.base = _read_status("VmRSS")
        return self

    def __exit__(self, *exc):
        self.peak = _read_status("VmHWM") - self.base


class CudaPeak:
    def __init__(self, torch):
        self.torch = torch

    def __enter__(self):
        self.torch.cuda.synchronize()
        self.torch.cuda.reset_peak_memory_stats()
        self.base = self.torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc):
        self.torch.cuda.synchronize()
        self.peak = self.torch.cuda.max_memory_allocated() - self.base


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="cpu")
    for name in ("views", "times", "h", "w", "heads", "head-dim"):
        p.add_argument(f"--{name}", type=int, help="override the size preset")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per variant (after one warm-up)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="default: bfloat16 on CUDA, float32 on CPU")
    p.add_argument("--device", help="default: cuda for --size gpu, else cpu")
    p.add_argument("--backward", action="store_true", help="time forward+backward (flex only where it has one: CUDA)")
    p.add_argument("--variants", default="fused,dense,full",
                   help="comma list of fused, dense, full and flex-eager (uncompiled flex)")
    p.add_argument("--block", action="store_true",
                   help="time one whole Wan DiT block through the sampler's hooks instead of attention alone")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)

    device = args.device or ("cuda" if args.size == "gpu" else "cpu")
    if device == "cpu" and platform.system() == "Linux" and any(os.environ.get(k) != v for k, v in _MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **_MALLOC_ENV})

    import torch
    import torch.nn.functional as F

    from lavr_core.attention.fused_view_time import (block_density, build_block_mask, fused_view_time_attention,
                                                     ideal_density)

    warnings.filterwarnings("ignore", message=".*flex_attention called without torch.compile.*")
    views, times, h, w, heads, head_dim = SIZES[args.size]
    views, times, h, w, heads = (getattr(args, n) or d for n, d in
                                 zip(("views", "times", "h", "w", "heads"), (views, times, h, w, heads)))
    head_dim = args.head_dim or head_dim
    s = h * w
    n = views * times * s
    dtype = getattr(torch, args.dtype or ("bfloat16" if device == "cuda" else "float32"))
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - {"fused", "flex-eager", "dense", "full"}
    if unknown:
        p.error(f"unknown variants {sorted(unknown)}")
    if args.block and "flex-eager" in variants:
        p.error("--block runs fused, dense and full only")
    if args.backward and device == "cpu":
        for name in ("fused", "flex-eager"):
            if name in variants:
                print(f"note: FlexAttention has no CPU backward; '{name}' is left out of the backward run")
                variants.remove(name)

    g = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (torch.randn(1, heads, n, head_dim, generator=g).to(device=device, dtype=dtype)
               .requires_grad_(args.backward) for _ in range(3))
    upstream = torch.randn_like(q) if args.backward else None

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    block_call = _block_runner(torch, views, times, h, w, heads, head_dim, device, dtype, args.backward) \
        if args.block else None

    def call(name):
        if block_call is not None:
            return block_call(name)
        if name == "fused":
            out = fused_view_time_attention(q, k, v, views, times, s, backend="flex", compile=True)
        elif name == "flex-eager":  # torch's unfused reference path (what flex does on CPU uncompiled)
            out = fused_view_time_attention(q, k, v, views, times, s, backend="flex", compile=False)
        elif name == "dense":
            out = fused_view_time_attention(q, k, v, views, times, s, backend="dense")
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        if args.backward:
            out.backward(upstream)
            for x in (q, k, v):
                x.grad = None
        return out

    density, blocks = ideal_density(views, times), block_density(views, times, s)
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    print(f"device: {device} ({name}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, dtype {str(dtype).split('.')[-1]}, "
          f"{'forward+backward' if args.backward else 'forward'}"
          f"{' of one Wan block (attention + cross-attention + FFN)' if args.block else ' of attention alone'}")
    if device == "cpu" and hasattr(os, "getloadavg"):
        print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
              "(other processes share the cores: compare variants, not absolute times)")
    print(f"grid: {views} views x {times} times x {h}x{w} tokens = {n} tokens, {heads} heads x {head_dim}")
    print(f"density (T+V-1)/(TV) = {density:.4f} -> ideal speed-up {1 / density:.2f}x; "
          f"128-tile density {blocks:.4f} -> tiled ceiling {1 / blocks:.2f}x")

    grad_ctx = torch.enable_grad if args.backward else torch.no_grad
    results = {}
    with grad_ctx():
        t0 = time.perf_counter()
        build_block_mask(views, times, s, device=device)
        results["block_mask_build_s"] = time.perf_counter() - t0
        # Warm-up: compiles the flex kernel, builds and caches the masks.
        for name in variants:
            t0 = time.perf_counter()
            call(name)
            sync()
            results.setdefault("first_call_s", {})[name] = time.perf_counter() - t0
        wall = {name: [] for name in variants}
        cpu = {name: [] for name in variants}
        for _ in range(args.reps):
            for name in variants:
                sync()
                t0, c0 = time.perf_counter(), time.process_time()
                call(name)
                sync()
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        peak = {}
        for name in variants:
            with (CudaPeak(torch) if device == "cuda" else CpuPeak()) as meter:
                call(name)
            peak[name] = meter.peak

    best = {name: min(ts) for name, ts in wall.items()}
    print(f"\nblock mask build: {results['block_mask_build_s'] * 1e3:.1f} ms; first call (compile/warm-up): "
          + ", ".join(f"{k} {t:.1f} s" for k, t in results["first_call_s"].items()))
    best_cpu = {name: min(ts) for name, ts in cpu.items()}
    print(f"\n{'variant':8s} {'best ms':>9s} {'median ms':>10s} {'cpu ms':>9s} {'peak MiB':>9s} "
          f"{'vs full':>8s} {'vs dense':>9s} {'of ideal':>9s} {'cpu vs full':>12s}")
    for name in variants:
        vs_full = best["full"] / best[name] if "full" in best else float("nan")
        vs_dense = best["dense"] / best[name] if "dense" in best else float("nan")
        cpu_vs_full = best_cpu["full"] / best_cpu[name] if "full" in best_cpu else float("nan")
        of_ideal = f"{vs_full * density:9.2f}" if name == "fused" else f"{'-':>9s}"
        print(f"{name:8s} {best[name] * 1e3:9.1f} {statistics.median(wall[name]) * 1e3:10.1f} "
              f"{best_cpu[name] * 1e3:9.1f} {peak[name] / 2**20:9.1f} {vs_full:7.2f}x {vs_dense:8.2f}x "
              f"{of_ideal} {cpu_vs_full:11.2f}x")
    print("speed-ups from the best wall time; 'of ideal' = fused speed-up over full attention x density "
          "(the fraction of 1/density reached); 'cpu' = process CPU time, all threads")
    if device == "cpu" and hasattr(os, "getloadavg"):
        print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    if args.json:
        from lavr_core.fileio import atomic_write_text

        record = {"device": device, "unit": "wan_block" if args.block else "attention", "torch": torch.__version__,
                  "threads": torch.get_num_threads(),
                  "dtype": str(dtype), "backward": args.backward, "views": views, "times": times, "h": h, "w": w,
                  "heads": heads, "head_dim": head_dim, "tokens": n, "density": density, "block_density": blocks,
                  "wall_s": wall, "cpu_s": cpu, "peak_bytes": peak, **results}
        atomic_write_text(args.json, json.dumps(record, indent=2))
    return 0


def _block_runner(torch, views, times, h, w, heads, head_dim, device, dtype, backward):
    """``call(name)`` running one random Wan block on the fused grid with the named attention."""
    from lavr_core.attention import fused_rope_positions, fused_view_time_attention, wan_attention_fn
    from lavr_core.wan.config import WanConfig
    from lavr_core.wan.model import WanBlock, rope_for_positions, rope_tables

    dim = heads * head_dim
    config = WanConfig(dim=dim, in_dim=16, ffn_dim=8960 if dim == 1536 else 4 * dim, out_dim=16, num_heads=heads,
                       num_layers=1)
    torch.manual_seed(0)
    block = WanBlock(config).to(device=device, dtype=dtype).requires_grad_(backward)
    n = views * times * h * w
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(1, n, dim, generator=g).to(device=device, dtype=dtype).requires_grad_(backward)
    ctx = torch.randn(1, config.text_len, dim, generator=g).to(device=device, dtype=dtype)
    t_mod = torch.randn(1, 6, dim, generator=g).to(device=device) * 0.1
    pos = fused_rope_positions(views, times, times, h, w)
    rope = rope_for_positions(rope_tables(config), pos, device=device, dtype=torch.complex64)
    grid = (views * times, h, w)
    def fused(q, k, v):  # wan_attention_fn(..., "flex") with the kernel compiled on CPU too, as the attention runs
        out = fused_view_time_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), views, times, h * w,
                                        backend="flex", compile=True)
        return out.transpose(1, 2).flatten(2)

    fns = {"fused": fused, "dense": wan_attention_fn(views, times, h * w, "dense"), "full": None}

    def call(name):
        out = block(x, ctx, t_mod, rope, grid, attn_fn=fns[name])
        if backward:
            out.float().square().mean().backward()
            x.grad = None
            block.zero_grad(set_to_none=True)
        return out

    return call


if __name__ == "__main__":
    raise SystemExit(main())
