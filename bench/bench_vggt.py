"""Benchmark: our VGGT aggregator against the official one, same random weights, same frames.

Three ways to run the aggregator (DINOv2 patch embedding + alternating frame/global attention):

* ``official``: the official ``Aggregator.forward`` (keeps all ``depth`` layer outputs
  ``[B, S, P, 2C]``, which is what ``VGGT.forward`` hands its heads);
* ``ours-all``: ``lavr_core.vggt.aggregator.Aggregator(images)``, every layer kept (the same
  contract as the official call);
* ``ours``: the same with ``keep_layers`` = the layers the heads read (camera head: the last;
  depth/point DPT heads: their ``intermediate_layer_idx``), which is what our ``VGGT.forward`` runs.

Before timing, the official aggregator is loaded key for key (strictly) with our seeded random
weights and both run the same frames: every layer output is compared.

Each (variant, frame count) case runs in a fresh subprocess (build, one warm-up pass on the same
input, one timed pass); cases are interleaved over rounds and medians are reported, as the CPU is
shared. Memory: on CUDA ``max_memory_allocated`` above the allocation before the timed pass (the
official README's table measures the same call); on the CPU the peak resident set above the
resident set before the pass (``VmHWM`` reset through ``/proc/self/clear_refs``, glibc mmap
threshold pinned at 64 KiB so freed tensors leave the process). Both include the returned layer
outputs (``kept``), which dominate at these sizes.

Usage::

    python bench/bench_vggt.py                        # CPU, small config, 126x126, 1/10/50 frames
    python bench/bench_vggt.py --device cuda --full   # VGGT-1B aggregator, 518x518, 1/10/50/100 frames, bf16 autocast
    python bench/bench_vggt.py --official /path/to/vggt --json out.json

Exit status: 0 done, 1 the outputs disagree, 2 the official tree is missing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _official  # noqa: E402

MiB = 1024 * 1024
VARIANTS = ("ours", "ours-all", "official")


def bench_config(full: bool):
    """(VGGTConfig, frame side). Full: VGGT-1B at 518. Small: the same structure, 8 layers of 96."""
    from lavr_core.vggt.config import AggregatorConfig, DinoConfig, DPTConfig, VGGTConfig

    if full:
        return VGGTConfig.vggt_1b(enable_track=False), 518
    agg = AggregatorConfig(img_size=126, embed_dim=96, depth=8, num_heads=4, patch_embed="dino",
                           dino=DinoConfig(depth=4, num_heads=4))
    return VGGTConfig(aggregator=agg, dpt=DPTConfig(intermediate_layer_idx=(1, 3, 5, 7)), enable_track=False), 126


def heads_layers(cfg) -> list[int]:
    """Aggregator layers read by the camera, depth and point heads (what our VGGT.forward keeps)."""
    d = cfg.aggregator.depth
    return sorted({d - 1} | {i % d for i in cfg.dpt.intermediate_layer_idx})


def build(variant: str, cfg, device: str, off_ns=None):
    """Our aggregator with seeded perturbed weights, or the official one loaded with the same weights."""
    import torch

    from lavr_core.vggt.aggregator import Aggregator

    torch.manual_seed(0)
    ours = Aggregator(cfg.aggregator).eval()
    _official.perturb_weights(ours)
    if variant != "official":
        return ours.to(device)
    off = _official.build_vggt_aggregator(off_ns, cfg.aggregator)
    off.load_state_dict(ours.state_dict(), strict=True)
    return off.to(device).eval()


def make_images(S: int, side: int, seed: int = 100):
    """``[1, S, 3, side, side]`` RGB in [0, 1], 8-bit quantised smooth noise."""
    import torch

    g = torch.Generator().manual_seed(seed)
    small = torch.rand(S, 3, side // 14 + 2, side // 14 + 2, generator=g)
    img = torch.nn.functional.interpolate(small, size=(side, side), mode="bicubic", align_corners=False)
    return ((img.clamp(0, 1) * 255).round() / 255)[None]


def run(variant: str, model, images, keep):
    if variant == "official":
        return model(images)[0]
    return model(images, keep_layers=keep if variant == "ours" else None)[0]


def autocast_ctx(device: str, amp: str):
    import torch

    if amp == "none":
        return nullcontext()
    return torch.autocast(device_type=device, dtype=getattr(torch, amp))


def worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    cfg, side = bench_config(args.full)
    side = args.side or side
    dev = args.device
    off_ns = _official.import_vggt(Path(args.official)) if args.worker == "official" else None
    model = build(args.worker, cfg, dev, off_ns)
    keep = heads_layers(cfg)
    images = make_images(args.n, side).to(dev)

    def call():
        with torch.inference_mode(), autocast_ctx(dev, args.amp):
            return run(args.worker, model, images, keep)

    out = call()  # warm-up on the same input: allocator caches, kernel selection
    del out
    gc.collect()
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)
    if dev == "cuda":
        sync()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _official.reset_peak_rss()
    t0, c0 = time.perf_counter(), time.process_time()
    out = call()
    sync()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if dev == "cuda":
        peak, mem = torch.cuda.max_memory_allocated() - base, "cuda max_memory_allocated"
    else:
        peak, mem = _official.proc_status("VmHWM") - base, "VmHWM"
    kept = sum(_official.tensor_storages(out, {_official.storage_key(images)}).values())
    layers_kept = sum(t is not None for t in out)
    del out
    reps = 1
    if wall < args.min_time:  # short cases: best of a few passes (shared CPU)
        more = _official.timed_passes(call, sync, args.min_time - wall, 4)
        wall, cpu, reps = min(wall, more["seconds"]), min(cpu, more["cpu_seconds"]), 1 + more["reps"]
    return {"variant": args.worker, "frames": args.n, "seconds": wall, "cpu_seconds": cpu, "reps": reps,
            "peak": peak, "kept": kept, "memory": mem, "layers_kept": layers_kept}


def check_agreement(args, off_ns, S: int = 3) -> float:
    """Max |ours - official| over every layer output, for ``S`` frames (raises when over tolerance)."""
    import torch

    cfg, side = bench_config(args.full)
    side = args.side or side
    ours = build("ours", cfg, args.device)
    off = build("official", cfg, args.device, off_ns)
    images = make_images(S, side, seed=5).to(args.device)
    with torch.inference_mode(), autocast_ctx(args.device, args.amp):
        a = ours(images)[0]
        b = off(images)[0]
        keep = heads_layers(cfg)
        c = ours(images, keep_layers=keep)[0]
    worst = 0.0
    bad = []
    for i, (x, y, z) in enumerate(zip(a, b, c)):
        x, y = x.float(), y.float()
        d = float((x - y).abs().max())
        worst = max(worst, d)
        if not torch.isfinite(x).all() or d > args.atol + args.rtol * float(y.abs().max()):
            bad.append(f"layer {i}: max |diff| {d:.3g}")
        if (z is None) != (i not in keep) or (z is not None and not torch.equal(z, a[i])):
            bad.append(f"layer {i}: keep_layers changed the result")
    if bad:
        raise AssertionError("ours and the official aggregator disagree:\n  " + "\n  ".join(bad))
    return worst


REFERENCE = ROOT.parent / "shared" / "reference" / "vggt" / "tiny"


def check_golden(off_ns, ref: Path = REFERENCE) -> float | None:
    """The official aggregator as built here (the small-DINO rebuild included) against the reference
    golden's per-layer tokens: max |diff| (None: no golden here). Raises over 1e-5."""
    import torch
    from safetensors.torch import load_file

    from lavr_core.vggt.config import VGGTConfig

    if not (ref / "config.json").is_file():
        return None
    cfg = VGGTConfig.from_fixture_config(json.loads((ref / "config.json").read_text()))
    agg = _official.build_vggt_aggregator(off_ns, cfg.aggregator)
    weights = load_file(str(ref / "weights.safetensors"))
    agg.load_state_dict({k[len("aggregator."):]: v for k, v in weights.items() if k.startswith("aggregator.")},
                        strict=True)
    images = load_file(str(ref / "inputs.safetensors"))["images"][None]
    golden = load_file(str(ref / "debug_intermediates.safetensors"))
    with torch.no_grad():
        out = agg(images)[0]
    worst = max(float((t - golden[f"aggregated_tokens.{i}"]).abs().max()) for i, t in enumerate(out))
    if worst > 1e-5:
        raise AssertionError(f"the official aggregator as built here misses the reference golden by {worst:.3g}")
    return worst


def spawn(args, variant: str, n: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", variant, "--n", str(n),
           "--official", args.official, "--device", args.device, "--threads", str(args.threads),
           "--amp", args.amp, "--min-time", str(args.min_time)]
    cmd += (["--full"] if args.full else []) + (["--side", str(args.side)] if args.side else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **_official.MALLOC_ENV})
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"worker {variant} n={n} failed (status {proc.returncode}):\n{proc.stderr[-3000:]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", help="official VGGT checkout (default /tmp/official/vggt)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--full", action="store_true", help="the released VGGT-1B aggregator at 518x518")
    p.add_argument("--frames", type=int, nargs="+", help="default 1 10 50 (small), 1 10 50 100 (--full)")
    p.add_argument("--side", type=int, help="square frame side, a multiple of 14 (default 126 small, 518 full)")
    p.add_argument("--amp", choices=["none", "bfloat16", "float16"],
                   help="autocast dtype for both (default: bfloat16 on CUDA as the official README, none on CPU)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--min-time", type=float, default=2.0,
                   help="a case whose pass is shorter is repeated (best of up to 5 passes) within this many seconds")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--atol", type=float, default=1e-4)
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--skip-check", action="store_true", help="do not compare outputs first")
    p.add_argument("--check-only", action="store_true",
                   help="only check the official build against the reference golden and ours against it")
    p.add_argument("--json")
    p.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.official = str(_official.require_tree("vggt", args.official))
    if args.amp is None:
        args.amp = "bfloat16" if args.device == "cuda" else "none"
    if args.side is not None and args.side % 14:
        p.error("--side must be a multiple of 14")

    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return 0

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda was asked for but CUDA is not available here", file=sys.stderr)
        return 2
    if args.amp != "none" and (args.atol, args.rtol) == (1e-4, 1e-4):
        args.atol, args.rtol = 0.1, 0.05  # bf16/fp16 rounding differs between two correct implementations
    torch.set_num_threads(args.threads)
    frames = args.frames or ([1, 10, 50, 100] if args.full else [1, 10, 50])
    cfg, side = bench_config(args.full)
    side = args.side or side
    a = cfg.aggregator
    off_ns = _official.import_vggt(Path(args.official))
    dev_name = torch.cuda.get_device_name() if args.device == "cuda" else (platform.processor() or platform.machine())
    print(f"device: {args.device} ({dev_name}), torch {torch.__version__}, {args.threads} thread(s), "
          f"autocast {args.amp}")
    if args.device == "cpu" and hasattr(os, "getloadavg"):
        print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)")
    print(f"official: {args.official} @ {_official.tree_revision(Path(args.official))}")
    dino = {"dino": f"DINOv2 {a.embed_dim}x{a.dino.depth}"}.get(a.patch_embed, a.patch_embed)
    print(f"config: {'VGGT-1B' if args.full else 'small'} aggregator: {dino}, {a.depth} frame+global layers of "
          f"{a.embed_dim} ({a.num_heads} heads); frames {side}x{side}; 'ours' keeps layers {heads_layers(cfg)}")
    check = None
    if not args.skip_check or args.check_only:
        try:
            if args.device == "cpu":
                golden = check_golden(off_ns)
                if golden is not None:
                    print(f"official aggregator as built here vs the reference golden: max |diff| {golden:.2g}")
            check = check_agreement(args, off_ns)
        except AssertionError as e:
            print(str(e), file=sys.stderr)
            return 1
        print(f"outputs agree (3 frames, all {a.depth} layers): max |ours - official| {check:.2g}")
    if args.check_only:
        return 0

    runs = []
    t0 = time.perf_counter()
    for r in range(args.rounds):
        for j, n in enumerate(frames):
            order = list(args.variants) if (r + j) % 2 == 0 else list(reversed(args.variants))
            for v in order:
                res = spawn(args, v, n)
                res["round"] = r
                runs.append(res)
                print(f"  round {r + 1}/{args.rounds} {v:>8} {n:4d} frames: {res['seconds']:8.3f} s "
                      f"(cpu {res['cpu_seconds']:8.3f}, best of {res['reps']}), "
                      f"peak +{res['peak'] / MiB:8.1f} MiB (kept {res['kept'] / MiB:7.1f})", flush=True)
    print(f"total {time.perf_counter() - t0:.0f} s")

    def med(v, n, k):
        return statistics.median(x[k] for x in runs if x["variant"] == v and x["frames"] == n)

    mem = "peak alloc" if args.device == "cuda" else "peak RSS"
    vs = list(args.variants)
    table = []
    for n in frames:
        table.append({"frames": n, **{k: {v: med(v, n, k) for v in vs}
                                      for k in ("seconds", "cpu_seconds", "peak", "kept")}})
    print()
    print("Aggregator time, seconds (median over rounds of the best pass; cpu = process CPU time, which with one "
          "thread leaves out waiting for a core):")
    ratio_cols = [v for v in vs if v != "official"] if "official" in vs else []
    print("| frames | clock | " + " | ".join(vs) + "".join(f" | {v}/official" for v in ratio_cols) + " |")
    print("|---:|---|" + "---:|" * (len(vs) + len(ratio_cols)))
    for row in table:
        for clock, k in (("wall", "seconds"), ("cpu", "cpu_seconds")):
            cells = [f"{row[k][v]:.3f}" for v in vs] + [f"{row[k][v] / row[k]['official']:.2f}" for v in ratio_cols]
            print(f"| {row['frames']} | {clock} | " + " | ".join(cells) + " |")
    print()
    print(f"Memory, MiB above the state before the call ({mem}; kept = the layer outputs returned):")
    print("| frames | " + " | ".join(f"{v} peak | {v} kept" for v in vs)
          + "".join(f" | {v}/official peak" for v in ratio_cols) + " |")
    print("|---:|" + "---:|" * (2 * len(vs) + len(ratio_cols)))
    for row in table:
        cells = [f"{row['peak'][v] / MiB:.1f} | {row['kept'][v] / MiB:.1f}" for v in vs]
        cells += [f"{row['peak'][v] / row['peak']['official']:.2f}" if row["peak"]["official"] >= MiB else "-"
                  for v in ratio_cols]
        print(f"| {row['frames']} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "check": check, "runs": runs, "table": table},
                                              indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
