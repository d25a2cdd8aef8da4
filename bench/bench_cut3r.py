"""Benchmark: our streaming CUT3R against the official code, same random weights, same frames.

* ours: ``lavr_core.cut3r.encode_frames`` (the ``Cut3rStreamer``: one frame at a time on the
  device, each frame's results moved off it before the next; default ``StreamOptions``, so it also
  computes c2w, focal/intrinsics, depth and colours per frame);
* official: ``dust3r.inference.inference(views, model, device)``, called as the official
  ``demo.py`` calls it (views built like its ``prepare_input``, all frames in one call: it encodes
  every frame in one batch and keeps every output and every state on the device). The demo times
  only this call; the official worker also times the demo's in-memory post-processing (poses to
  c2w, Weiszfeld focal, depth, colours: ``official+post``), the same work our streamer includes.

Both get the same prepared frames (``[T, 3, H, W]`` in [-1, 1]); image loading and resizing are not
timed for either. Before any timing: (1) on the CPU, the official code with the runtime shims of
``_official.py`` is checked against the reference golden (``shared/reference/cut3r/tiny``);
(2) ours, built with seeded random weights (perturbed like the goldens), and the official model,
loaded with the same state dict key for key (strictly), run the same frames and every output and
every state is compared.

Each (implementation, frame count) case runs in a fresh subprocess: build the model, a warm-up pass
on 2 frames, then a timed pass that also measures memory; a case shorter than ``--min-time`` is run
again (best of up to 5 passes). Cases are interleaved (rounds; the order of the two implementations
alternates) and the table reports medians over rounds, as the CPU is shared. Two clocks: wall time,
and process CPU time (with one thread it leaves out the time spent waiting for a core).

Memory, per case:
* CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before the timed pass;
* CPU: peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) above the resident
  set before the timed pass, with glibc's mmap threshold pinned at 64 KiB so large tensors are
  separate mappings that really leave the process when freed. On the CPU the device *is* the host,
  so this includes the results each implementation keeps (ours: its CPU copies; official: its
  outputs and per-frame states). ``kept`` is the size of those results (distinct tensor storages
  reachable from what the call returns, the input frames left out) and ``work = peak - kept`` is
  the memory the computation itself needed: the CPU counterpart of the device memory that the
  streaming design keeps flat.

Usage::

    python bench/bench_cut3r.py                       # CPU, small config, 64x64, 16/64/256 frames, ~3-5 min
    python bench/bench_cut3r.py --frames 16 64 --rounds 2 --hw 128x128
    python bench/bench_cut3r.py --check-only          # shims vs golden, ours vs official; no timing
    python bench/bench_cut3r.py --device cuda --full  # released 512 DPT config, 512x288 frames (needs a GPU)
    python bench/bench_cut3r.py --official /path/to/CUT3R --json out.json

Exit status: 0 done, 1 the outputs disagree, 2 the official tree (or CUDA, when asked for) is missing.
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
import warnings
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _official  # noqa: E402

MiB = 1024 * 1024


# ------------------------------------------------------------------------------------------ setup
def small_config():
    """A CUT3R with the released model's structure (DPT heads, pose head, RoPE100) at a CPU size."""
    from lavr_core.cut3r import CUT3R_512_DPT

    return replace(CUT3R_512_DPT, img_size=(128, 128), enc_embed_dim=128, enc_depth=4, enc_num_heads=4,
                   dec_embed_dim=64, dec_depth=4, dec_num_heads=4, state_dec_num_heads=4, state_size=64,
                   local_mem_size=32, ray_enc_depth=1, dpt_feature_dim=32, dpt_layer_dims=(16, 32, 64, 64))


def bench_config(full: bool):
    from lavr_core.cut3r import CUT3R_512_DPT

    return CUT3R_512_DPT if full else small_config()


def build_models(impl: str, cfg, device: str, off_ns=None):
    """(ours, official) for the impls asked: ``impl`` in ours / official / both."""
    import torch

    from lavr_core.cut3r import Cut3rModel

    torch.manual_seed(0)
    ours = Cut3rModel(cfg).eval()
    _official.perturb_weights(ours)
    official = None
    if impl in ("official", "both"):
        official = _official.build_cut3r(off_ns, cfg)
        sd = ours.state_dict()
        # the official class overrides load_state_dict with a lenient fallback; call the strict base one
        torch.nn.Module.load_state_dict(official, sd, strict=True)
        official = official.to(device).eval()
    if impl == "official":
        ours = None
    else:
        ours = ours.to(device).eval()
    return ours, official


def make_frames(T: int, H: int, W: int, seed: int = 100):
    """``[T, 3, H, W]`` in [-1, 1]: a smooth random scene panned across the frames (so consecutive
    frames overlap like a video), quantised to 8 bits as real frames are."""
    import torch

    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, H // 8 + 2, (W + T * 2) // 8 + 2, generator=g)
    big = torch.nn.functional.interpolate(base, size=(H, W + T * 2), mode="bicubic", align_corners=False)
    frames = torch.stack([big[0, :, :, 2 * t: 2 * t + W] for t in range(T)]).clamp(0, 1)
    return (frames * 255).round() / 255 * 2 - 1


# ------------------------------------------------------------------------------------------ running
def run_ours(model, frames):
    from lavr_core.cut3r import StreamOptions, encode_frames

    return encode_frames(model, frames, StreamOptions())


def run_official(off_ns, model, frames, device):
    return off_ns.inference(_official.cut3r_views(frames), model, device, verbose=False)


def worker(args) -> dict:
    """One (impl, frames) case in this process; returns the measurements."""
    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(args.threads)
    device = args.device
    cfg = bench_config(args.full)
    H, W = args.hw
    off_ns = _official.import_cut3r(Path(args.official)) if args.worker == "official" else None
    ours, official = build_models(args.worker, cfg, device, off_ns)
    frames = make_frames(args.n, H, W)
    warm = make_frames(2, H, W, seed=7)

    def call(fr):
        with torch.inference_mode() if args.worker == "ours" else torch.no_grad():
            if args.worker == "ours":
                return run_ours(ours, fr)
            return run_official(off_ns, official, fr, device)

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def timed_pass(memory: bool):
        """One pass; times (wall, cpu) of the call, and for the official code of the call plus the
        demo's post-processing; with ``memory``, the peak above the state before the call."""
        if memory:
            if device == "cuda":
                sync()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            else:
                base = _official.reset_peak_rss()
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        out = call(frames)  # ours moves each frame to the device itself; official's inference() moves its views
        sync()
        t1, c1 = time.perf_counter(), time.process_time()
        peak = None
        if memory:
            peak = (torch.cuda.max_memory_allocated() if device == "cuda" else _official.proc_status("VmHWM")) - base
        if args.worker == "official":
            _official.cut3r_demo_postprocess(off_ns, out[0])  # inference() returns (result, states)
            sync()
        t2, c2 = time.perf_counter(), time.process_time()
        return out, peak, {"seconds": t1 - t0, "cpu_seconds": c1 - c0, "post_seconds": t2 - t0,
                           "post_cpu_seconds": c2 - c0}

    call(warm)
    gc.collect()
    out, peak, best = timed_pass(memory=True)
    seen = _official.tensor_storages(out, {_official.storage_key(frames)})  # the input frames are no result
    if device == "cuda":
        kept = sum(v for (_, d), v in seen.items() if d.startswith("cuda"))
        kept_host = sum(v for (_, d), v in seen.items() if d == "cpu")
        rss_kind = "cuda max_memory_allocated"
    else:
        kept, kept_host, rss_kind = sum(seen.values()), 0, "VmHWM"
    del out
    reps, total = 1, best["seconds"]
    while total < args.min_time and reps < 5:  # short cases: best of a few passes (shared CPU)
        out, _, t = timed_pass(memory=False)
        del out
        best = {k: min(best[k], t[k]) for k in best}
        reps, total = reps + 1, total + t["seconds"]
    n = args.n
    return {"impl": args.worker, "frames": n, **best, "fps": n / best["seconds"], "cpu_fps": n / best["cpu_seconds"],
            "post_fps": n / best["post_seconds"], "post_cpu_fps": n / best["post_cpu_seconds"], "reps": reps,
            "peak": peak, "kept": kept, "kept_host": kept_host, "work": peak - kept, "memory": rss_kind}


# ------------------------------------------------------------------------------------------ check
def check_agreement(args, off_ns, n: int = 4) -> dict:
    """Run both on ``n`` frames with the same weights; max |diff| per output (raises if they disagree)."""
    import torch

    cfg = bench_config(args.full)
    ours, official = build_models("both", cfg, args.device, off_ns)
    H, W = args.hw
    frames = make_frames(n, H, W, seed=5)
    with torch.inference_mode():
        seq = run_ours(ours, frames)
    with torch.no_grad():
        res, state_args = run_official(off_ns, official, frames.to(args.device), args.device)
    pred = res["pred"]
    pairs = {
        "pts3d_in_self_view": (seq.pts3d_self, "pts3d_in_self_view"),
        "conf_self": (seq.conf_self, "conf_self"),
        "pts3d_in_other_view": (seq.pts3d_world, "pts3d_in_other_view"),
        "conf": (seq.conf_world, "conf"),
        "camera_pose": (seq.camera_pose, "camera_pose"),
    }
    report = {}
    bad = []
    for name, (a, key) in pairs.items():
        b = torch.cat([p[key] for p in pred]).float().cpu()
        a = a.float().cpu()
        if a.shape != b.shape:
            bad.append(f"{name}: shapes {tuple(a.shape)} vs {tuple(b.shape)}")
            continue
        diff = (a - b).abs()
        scale = b.abs()
        report[name] = float(diff.max())
        tol = args.atol + args.rtol * scale
        if not torch.isfinite(a).all() or not torch.isfinite(b).all() or (diff > tol).any():
            bad.append(f"{name}: max |diff| {float(diff.max()):.3g} (worst excess "
                       f"{float((diff - tol).max()):.3g})")
    # the state after every frame: official keeps (state_feat, pos, init, mem, init_mem) per frame
    st_off = torch.cat([s[0] for s in state_args[1:]]).float().cpu()
    st_ours = seq.state_tokens.float().cpu()
    report["state_tokens"] = float((st_off - st_ours).abs().max())
    if report["state_tokens"] > args.atol + args.rtol * float(st_off.abs().max()):
        bad.append(f"state_tokens: max |diff| {report['state_tokens']:.3g}")
    if bad:
        raise AssertionError("ours and the official code disagree:\n  " + "\n  ".join(bad))
    return report


REFERENCE = ROOT.parent / "shared" / "reference" / "cut3r" / "tiny"


def check_golden(off_ns, ref: Path = REFERENCE, tol: float = 1e-3) -> float | None:
    """The official code, as imported here (with the shims), against the reference golden that was
    made from the same commit: max |diff| over every output of every frame (None: no golden here).
    This checks the shims, the RoPE port above all (the golden used a float16 port, the kernel
    formula here rotates in float32, so the two differ at float16 rounding, ~1e-4)."""
    import torch
    from safetensors.torch import load_file

    from lavr_core.cut3r.conformance import fixture_config

    if not (ref / "config.json").is_file():
        return None
    config = json.loads((ref / "config.json").read_text())
    model = _official.build_cut3r(off_ns, fixture_config(config))
    torch.nn.Module.load_state_dict(model, load_file(str(ref / "weights.safetensors")), strict=True)
    inputs, golden = load_file(str(ref / "inputs.safetensors")), load_file(str(ref / "outputs.safetensors"))
    n = int(config["num_frames"])
    frames = torch.cat([inputs[f"view{i}.img"] for i in range(n)])
    with torch.no_grad():
        res, _ = run_official(off_ns, model, frames, "cpu")
    worst = 0.0
    for i, pred in enumerate(res["pred"]):
        for k, v in pred.items():
            if f"view{i}.{k}" in golden:
                worst = max(worst, float((v.float() - golden[f"view{i}.{k}"]).abs().max()))
    if worst > tol:
        raise AssertionError(f"the official code with the shims misses the reference golden by {worst:.3g}")
    return worst


# ------------------------------------------------------------------------------------------ driver
def spawn(args, impl: str, n: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", impl, "--n", str(n),
           "--official", str(args.official), "--device", args.device, "--threads", str(args.threads),
           "--hw", f"{args.hw[0]}x{args.hw[1]}", "--min-time", str(args.min_time)] + (["--full"] if args.full else [])
    env = {**os.environ, **_official.MALLOC_ENV}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"worker {impl} n={n} failed (status {proc.returncode}):\n{proc.stderr[-3000:]}")


def _hw(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", help="official CUT3R checkout (default /tmp/official/cut3r)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--full", action="store_true", help="the released 512 DPT config (default: a small CPU config)")
    p.add_argument("--frames", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--hw", type=_hw, help="frame size HxW (default 64x64 small, 288x512 with --full)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per case (median reported)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads in every worker")
    p.add_argument("--min-time", type=float, default=2.0,
                   help="a case whose pass is shorter is repeated (best of up to 5 passes) within this many seconds")
    p.add_argument("--atol", type=float, default=2e-3, help="agreement check: absolute tolerance")
    p.add_argument("--rtol", type=float, default=2e-3, help="agreement check: relative tolerance")
    p.add_argument("--skip-check", action="store_true", help="do not compare outputs first")
    p.add_argument("--check-only", action="store_true",
                   help="only check the shims against the reference golden and ours against the official code")
    p.add_argument("--json", help="also write all measurements to this JSON file")
    p.add_argument("--worker", choices=["ours", "official"], help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.official = str(_official.require_tree("cut3r", args.official))
    if args.hw is None:
        args.hw = (288, 512) if args.full else (64, 64)

    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return 0

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda was asked for but CUDA is not available here", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    cfg = bench_config(args.full)
    off_ns = _official.import_cut3r(Path(args.official))
    rope = "CUDA kernel" if off_ns.rope_is_cuda else "kernel-formula PyTorch port (shim)"
    dev_name = torch.cuda.get_device_name() if args.device == "cuda" else (platform.processor() or platform.machine())
    H, W = args.hw
    print(f"device: {args.device} ({dev_name}), torch {torch.__version__}, {args.threads} thread(s), float32")
    if args.device == "cpu" and hasattr(os, "getloadavg"):
        print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine)")
    print(f"official: {args.official} @ {_official.tree_revision(Path(args.official))}; official RoPE: {rope}")
    print(f"config: {'released cut3r_512_dpt' if args.full else 'small'} enc {cfg.enc_embed_dim}x{cfg.enc_depth} "
          f"dec {cfg.dec_embed_dim}x{cfg.dec_depth} state {cfg.state_size} mem {cfg.local_mem_size} "
          f"dpt {cfg.dpt_feature_dim}; frames {W}x{H} (WxH)")
    check = None
    if not args.skip_check or args.check_only:
        try:
            if args.device == "cpu":
                golden = check_golden(off_ns)
                if golden is not None:
                    print(f"official code + shims vs the reference golden ({REFERENCE}): max |diff| {golden:.2g}")
            check = check_agreement(args, off_ns)
        except AssertionError as e:
            print(str(e), file=sys.stderr)
            return 1
        print("outputs agree (4 frames); max |ours - official|: "
              + ", ".join(f"{k} {v:.2g}" for k, v in check.items()))
    if args.check_only:
        return 0
    del off_ns

    runs: list[dict] = []
    t_start = time.perf_counter()
    for r in range(args.rounds):
        for n in args.frames:
            order = ("ours", "official") if (r + args.frames.index(n)) % 2 == 0 else ("official", "ours")
            for impl in order:
                res = spawn(args, impl, n)
                res["round"] = r
                runs.append(res)
                print(f"  round {r + 1}/{args.rounds} {impl:>8} {n:4d} frames: {res['fps']:7.2f} frames/s "
                      f"(cpu {res['cpu_fps']:7.2f}; with post {res['post_cpu_fps']:7.2f}; best of {res['reps']}), "
                      f"peak +{res['peak'] / MiB:7.1f} MiB (kept {res['kept'] / MiB:6.1f})", flush=True)
    print(f"total {time.perf_counter() - t_start:.0f} s")

    def med(impl, n, key):
        return statistics.median(x[key] for x in runs if x["impl"] == impl and x["frames"] == n)

    mem_name = "peak alloc" if args.device == "cuda" else "peak RSS"
    print()
    print("Speed, frames/s (median over rounds of the best pass). 'official' is inference() alone, as the demo "
          "times it; 'official+post' adds the demo's in-memory post-processing (c2w, focal, depth, colours), "
          "which our streamer does per frame. cpu = frames per second of process CPU time (with one thread it "
          "leaves out waiting for a core on a shared machine).")
    print("| frames | clock | ours | official | official+post | ours/official | ours/(official+post) |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    table = []
    for n in args.frames:
        row = {k: {impl: med(impl, n, k) for impl in ("ours", "official")}
               for k in ("fps", "cpu_fps", "post_fps", "post_cpu_fps", "peak", "kept", "work")}
        row["frames"] = n
        table.append(row)
        for clock, k, kp in (("wall", "fps", "post_fps"), ("cpu", "cpu_fps", "post_cpu_fps")):
            o, f, fp = row[k]["ours"], row[k]["official"], row[kp]["official"]
            print(f"| {n} | {clock} | {o:.2f} | {f:.2f} | {fp:.2f} | {o / f:.2f} | {o / fp:.2f} |")
    print()
    print("Memory (MiB above the state before the pass; kept = results the call returns; work = peak - kept):")
    print(f"| frames | ours {mem_name} | official {mem_name} | ours/official | ours kept | official kept | "
          f"ours work | official work |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in table:
        pk, kp, wk = row["peak"], row["kept"], row["work"]
        print(f"| {row['frames']} | {pk['ours'] / MiB:.1f} | {pk['official'] / MiB:.1f} | "
              f"{pk['ours'] / max(pk['official'], 1):.2f} | {kp['ours'] / MiB:.1f} | {kp['official'] / MiB:.1f} | "
              f"{wk['ours'] / MiB:.1f} | {wk['official'] / MiB:.1f} |")
    lo, hi = table[0], table[-1]
    print()
    print(f"ours {mem_name} {lo['frames']} -> {hi['frames']} frames: {lo['peak']['ours'] / MiB:.1f} -> "
          f"{hi['peak']['ours'] / MiB:.1f} MiB (work {lo['work']['ours'] / MiB:.1f} -> "
          f"{hi['work']['ours'] / MiB:.1f}); "
          f"official {lo['peak']['official'] / MiB:.1f} -> {hi['peak']['official'] / MiB:.1f} MiB "
          f"(work {lo['work']['official'] / MiB:.1f} -> {hi['work']['official'] / MiB:.1f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items()}, "check": check,
                                               "runs": runs, "table": table}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
