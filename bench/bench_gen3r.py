"""Benchmark: seconds per sampling step and peak memory of our Gen3R sampler against the official
Gen3R code (JaceyHuang/Gen3R, diffusers-based ``WanTransformer3DModel`` with the camera control
adapter), same random weights, same inputs.

One sampling step is what both pipelines do once per timestep: the DiT with classifier-free
guidance, the guidance mix and diffusers' Euler flow-matching update (shift 2). The sides differ in
how they batch CFG, which is part of what is measured:

* ``ours``: ``lavr_core.wan.sampling.flow_sample`` on ``DiffusersFlowMatchScheduler`` driving
  ``Gen3RDiT`` with the velocity closure of ``lavr_core.gen3r.pipeline.generate`` (two batch-1 DiT
  calls a step: positive, then negative prompt; latents float32; camera-adapter features computed
  once per sampler run and reused, as ``generate`` does);
* ``official``: the denoising loop of ``Gen3RPipeline.__call__`` (``gen3r/pipeline/pipeline_gen3r.py``)
  around the official ``WanTransformer3DModel`` and diffusers' ``FlowMatchEulerDiscreteScheduler`` with
  ``gen3r.yaml``'s settings and ``set_timesteps(..., mu=1)``: one batch-2 DiT call a step
  (``[uncond, cond]``: latents, control latents, Plücker control and CLIP features concatenated twice,
  text as the list ``[negative, positive]``), latents in the weight dtype. The pipeline's ``__call__``
  needs the VAE, the geometry adapter, umT5, CLIP and VGGT, so its loop is restated here line for
  line around the official calls. Its ``torch.cuda.amp.autocast`` / ``torch.cuda.device`` context is
  kept on CUDA and left out on the CPU (``torch.cuda.device`` refuses a CPU device).

Each timed sampler run starts with our camera-feature cache empty, so a one-step run pays the
camera adapter once, as the official code does every step (in a 50-step run ours pays it once).

Weights: our ``Gen3RDiT`` (i2v, CLIP branch included, like the released model) built with
``torch.manual_seed(seed)`` and every parameter perturbed by ``noise * N(0, 1)``, saved once as
safetensors; both sides load that file key for key (strict; the official key layout is ours).
Inputs (noise, control latent + mask, Plücker control of a synthetic orbit, CLIP features, text
features) are drawn once and shared.

Before timing, both samplers run the same steps from the same noise and their latents are compared
(exit 1 when they disagree); that run is also each side's warm-up. Timing: both models in one
process, alternating which goes first; medians and best runs, wall and process CPU time. Peak memory:
each side in a fresh subprocess, one sampler run right after loading (CPU: resident-set high-water
mark minus the resident set after loading; CUDA: ``max_memory_allocated`` minus the allocation after
loading, and the absolute peak).

Usage::

    python bench/bench_gen3r.py                        # CPU "small": dim 256, 4 blocks, 256x256, 17 and 33 frames
    python bench/bench_gen3r.py --device cuda --full   # the 1.3B at 560x560, 49 frames, bf16
    python bench/bench_gen3r.py --official /path/to/Gen3R --json out.json

Exit status: 0 done, 1 the two samplers disagree, 2 the official tree is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _official_samplers as offs  # noqa: E402

offs.block_transformers()
offs.quiet_official_warnings()

import torch  # noqa: E402

CFG, SHIFT = 5.0, 2.0  # infer.py's guidance 5; gen3r.yaml's shift 2
#: ``gen3r/config/gen3r.yaml`` ``scheduler_kwargs``.
SCHEDULER_KWARGS = dict(num_train_timesteps=1000, shift=SHIFT, use_dynamic_shifting=False, base_shift=0.5,
                        max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)


# ----------------------------------------------------------------------------- configuration
def bench_config(args):
    """Our ``Gen3RDiTConfig``: the released 1.3B (``--full``) or a small one (dim 256, 2 heads of 128,
    4 blocks, umT5 width 256; i2v with the 1280-wide CLIP branch and the 24-channel camera adapter)."""
    from dataclasses import replace

    from lavr_core.gen3r.dit import GEN3R_DIT_1_3B, Gen3RDiTConfig

    if args.full:
        cfg = GEN3R_DIT_1_3B
    else:
        cfg = Gen3RDiTConfig(dim=256, in_dim=36, ffn_dim=1024, out_dim=16, num_heads=2, num_layers=4, text_dim=256,
                             freq_dim=256, has_image_input=True, add_control_adapter=True, in_dim_control_adapter=24,
                             name="bench-small")
    if args.layers:
        cfg = replace(cfg, num_layers=args.layers, name=f"{cfg.name}-{args.layers}blocks")
    return cfg


def official_kwargs(cfg) -> dict:
    """The official ``WanTransformer3DModel`` constructor arguments for our config."""
    return dict(model_type="i2v" if cfg.has_image_input else "t2v", patch_size=tuple(cfg.patch_size),
                text_len=cfg.text_len, in_dim=cfg.in_dim, dim=cfg.dim, ffn_dim=cfg.ffn_dim, freq_dim=cfg.freq_dim,
                text_dim=cfg.text_dim, out_dim=cfg.out_dim, num_heads=cfg.num_heads, num_layers=cfg.num_layers,
                window_size=(-1, -1), qk_norm=True, cross_attn_norm=True, eps=cfg.eps,
                add_control_adapter=cfg.add_control_adapter, in_dim_control_adapter=cfg.in_dim_control_adapter)


def dtype_of(args) -> torch.dtype:
    return torch.bfloat16 if args.dtype == "bf16" else torch.float32


# ----------------------------------------------------------------------------- weights and inputs
def make_weights(cfg, path: Path, seed: int, noise: float) -> None:
    from safetensors.torch import save_file

    from lavr_core.gen3r.dit import Gen3RDiT

    torch.manual_seed(seed)
    model = Gen3RDiT(cfg)
    offs.perturb_(model, seed + 1, noise)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path), metadata={"config": json.dumps(cfg.to_dict()), "seed": str(seed), "noise": str(noise)})


def orbit(num_frames: int, size: int):
    """A synthetic orbit: 40 degrees of yaw around a point 3 m ahead, square ``size`` pixels, fx = size."""
    from lavr_core.camera.trajectory import CameraTrajectory

    c2w = torch.eye(4, dtype=torch.float64).repeat(num_frames, 1, 1)
    for i in range(num_frames):
        a = math.radians(40.0) * i / max(1, num_frames - 1)
        c2w[i, :3, :3] = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]],
                                      dtype=torch.float64)
        c2w[i, :3, 3] = torch.tensor([-3.0 * math.sin(a), 0.0, 3.0 - 3.0 * math.cos(a)], dtype=torch.float64)
    K = torch.tensor([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]], dtype=torch.float64).repeat(num_frames, 1, 1)
    return CameraTrajectory(c2w=c2w, K=K, width=size, height=size)


def make_inputs(cfg, frames: int, size: int, path: Path, seed: int) -> None:
    """Everything one sampling step reads, as ``generate`` builds it (one control image at frame 0)."""
    from safetensors.torch import save_file

    from lavr_core.gen3r.dit import join_latents
    from lavr_core.gen3r.pipeline import camera_control, check_frames, control_mask

    check_frames(frames)
    f, lat = 1 + (frames - 1) // 4, size // 8
    g = torch.Generator().manual_seed(seed + 2)
    noise = torch.randn(1, cfg.out_dim, f, lat, 2 * lat, generator=g)
    appearance = torch.randn(1, cfg.out_dim, f, lat, lat, generator=g)
    y = torch.cat([join_latents(appearance, torch.zeros_like(appearance)), control_mask(1, frames, lat, lat)], 1)
    save_file({"noise": noise, "y": y.contiguous(),
               "y_camera": camera_control(orbit(frames, size), frames, size).float().contiguous(),
               "clip": torch.randn(1, cfg.image_tokens, cfg.image_dim, generator=g),
               "context_pos": torch.randn(1, 24, cfg.text_dim, generator=g),   # unpadded umT5 features
               "context_neg": torch.randn(1, 4, cfg.text_dim, generator=g)},   # "bad detailed"
              str(path))


def load_ours(cfg, weights: Path, device: str, dtype: torch.dtype):
    from safetensors.torch import load_file

    from lavr_core.gen3r.dit import dit_from_state_dict

    return dit_from_state_dict(load_file(str(weights)), cfg, dtype=dtype, device=device, what="bench weights")


def load_official(off, cfg, weights: Path, device: str, dtype: torch.dtype):
    """The official ``WanTransformer3DModel`` (built on the meta device, weights adopted key for key)."""
    from safetensors.torch import load_file

    with torch.device("meta"):
        model = off.transformer.WanTransformer3DModel(**official_kwargs(cfg))
    d = cfg.dim // cfg.num_heads
    rope = off.transformer.rope_params
    # ``freqs`` is a plain attribute (not a buffer) computed in __init__: rebuild it off the meta device.
    model.freqs = torch.cat([rope(1024, d - 4 * (d // 6)), rope(1024, 2 * (d // 6)), rope(1024, 2 * (d // 6))], dim=1)
    sd = {k: v.to(dtype) for k, v in load_file(str(weights)).items()}
    offs.load_strict(model, sd, "official WanTransformer3DModel")
    return model.to(device).eval()


def load_inputs(path: Path, device: str) -> dict:
    from safetensors.torch import load_file

    return {k: v.to(device) for k, v in load_file(str(path)).items()}


# ----------------------------------------------------------------------------- the two samplers
def ours_sampler(model, inp: dict, steps: int):
    """The sampling section of ``lavr_core.gen3r.pipeline.generate``."""
    from lavr_core.gen3r.pipeline import gen3r_settings
    from lavr_core.gen3r.schedule import DiffusersFlowMatchScheduler
    from lavr_core.wan.sampling import flow_sample

    settings = gen3r_settings(steps=steps, cfg=CFG, shift=SHIFT, seed=0)
    wd = model.dtype
    ctx_pos, ctx_neg = inp["context_pos"].to(wd), inp["context_neg"].to(wd)
    y_in, cam_in, clip_in = inp["y"].to(wd), inp["y_camera"].to(wd), inp["clip"].to(wd)

    def velocity(x, t, positive):
        return model(x, t, ctx_pos if positive else ctx_neg, y=y_in, clip_feature=clip_in, y_camera=cam_in)

    def run():
        model._camera_cache = None  # a fresh sampler run computes the camera features once (see module doc)
        with torch.inference_mode():
            return flow_sample(velocity, inp["noise"].float(), settings,
                               scheduler=DiffusersFlowMatchScheduler(shift=settings.shift))

    return run


def official_sampler(model, inp: dict, steps: int, dtype: torch.dtype):
    """The denoising loop of ``Gen3RPipeline.__call__`` (``weight_dtype`` = ``dtype``)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_KWARGS)
    dev = inp["noise"].device
    cuda = dev.type == "cuda"
    in_prompt_embeds = [inp["context_neg"][0].to(dtype), inp["context_pos"][0].to(dtype)]  # negative + positive
    control_camera_latents = inp["y_camera"].to(dtype)
    control_image_latents = inp["y"].to(dtype)
    clip_context = inp["clip"].to(dtype)
    _, _, f, h, w2 = inp["noise"].shape
    seq_len = math.ceil((w2 * h) / (model.config.patch_size[1] * model.config.patch_size[2]) * f)

    def run():
        with torch.no_grad():
            scheduler.set_timesteps(steps, device=dev, mu=1)  # retrieve_timesteps(..., mu=1)
            latents = inp["noise"].to(dtype)
            for t in scheduler.timesteps:
                latent_model_input = torch.cat([latents] * 2)
                control_camera_latents_input = torch.cat([control_camera_latents] * 2).to(dev, dtype)
                control_latents_input = torch.cat([control_image_latents] * 2).to(dev, dtype)
                clip_context_input = torch.cat([clip_context] * 2)
                timestep = t.expand(latent_model_input.shape[0])
                ctx = (torch.autocast("cuda", dtype=dtype) if cuda else contextlib.nullcontext())
                dev_ctx = torch.cuda.device(device=dev) if cuda else contextlib.nullcontext()
                with ctx, dev_ctx:
                    noise_pred = model(x=latent_model_input, context=in_prompt_embeds, t=timestep, seq_len=seq_len,
                                       y=control_latents_input, y_camera=control_camera_latents_input, full_ref=None,
                                       clip_fea=clip_context_input)
                noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                noise_pred = noise_pred_uncond + CFG * (noise_pred_text - noise_pred_uncond)
                latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            return latents

    return run


# ----------------------------------------------------------------------------- workers
def worker(args) -> dict:
    """One side in a fresh process: load, then the peak memory of one sampler run (no warm-up)."""
    offs.thread_settings(args.threads)
    cfg = bench_config(args)
    dev, dtype = args.device, dtype_of(args)
    if args.worker == "official":
        off = offs.import_gen3r(Path(args.official))
        model = load_official(off, cfg, Path(args.weights), dev, dtype)
    else:
        model = load_ours(cfg, Path(args.weights), dev, dtype)
    inp = load_inputs(Path(args.inputs), dev)
    run = official_sampler(model, inp, args.steps, dtype) if args.worker == "official" else ours_sampler(model, inp, args.steps)
    result = offs.measured_run(run, dev, args.steps)
    result.update({"impl": args.worker, "frames": args.frames})
    return result


def spawn(args, mode: str, frames: int, weights: Path, inputs: Path) -> dict:
    argv = ["--worker", mode, "--frames", str(frames), "--official", args.official, "--device", args.device,
            "--threads", str(args.threads), "--dtype", args.dtype, "--steps", str(args.steps),
            "--weights", str(weights), "--inputs", str(inputs), "--size", str(args.size)]
    argv += ["--full"] if args.full else []
    argv += ["--layers", str(args.layers)] if args.layers else []
    return offs.spawn_worker(Path(__file__).resolve(), argv, args.threads)


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", default=str(offs.DEFAULT_ROOT / "gen3r"),
                   help="official Gen3R checkout (default /tmp/official/gen3r)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--full", action="store_true", help="released 1.3B config at 560x560 (default: small CPU config)")
    p.add_argument("--layers", type=int, default=0, help="override the block count (smoke tests of --full)")
    p.add_argument("--size", type=int, help="square frame side in pixels, a multiple of 16 (default 256 small, 560 full)")
    p.add_argument("--frames", type=int, nargs="+", help="video frames (4k+1); default 17 33 (small), 49 (full)")
    p.add_argument("--steps", type=int, default=1, help="sampling steps per timed run (seconds are per step)")
    p.add_argument("--reps", type=int, default=3, help="timed runs per side (interleaved), after the agreement run")
    p.add_argument("--dtype", choices=["fp32", "bf16"], help="default fp32 on cpu, bf16 on cuda")
    p.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads (state it: the CPU is shared)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, help="weight perturbation (default 0.05 small, 0.005 full)")
    p.add_argument("--no-memory", action="store_true", help="skip the per-side memory subprocesses")
    p.add_argument("--check-only", action="store_true", help="only the agreement check (no timing, no memory)")
    p.add_argument("--profile", action="store_true", help="profile one run of each side")
    p.add_argument("--workdir", default="/tmp/lavr-bench-gen3r", help="weights/inputs files")
    p.add_argument("--json", help="write all results here")
    p.add_argument("--worker", choices=["ours", "official"], help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--inputs", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    args.size = args.size or (560 if args.full else 256)
    if args.size % 16:
        p.error("--size must be a multiple of 16")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available on this machine.", file=sys.stderr)
        return 2
    if args.worker is None or args.worker == "official":
        args.official = str(offs.require_tree("gen3r", args.official))
    if args.worker:
        args.frames = args.frames[0]
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return 0

    threads = offs.thread_settings(args.threads)
    cfg = bench_config(args)
    dtype = dtype_of(args)
    frames_list = args.frames or ([49] if args.full else [17, 33])
    noise = args.noise if args.noise is not None else (0.005 if args.full else 0.05)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    weights = work / f"weights-{cfg.name}-s{args.seed}-n{noise}.safetensors"
    if not weights.is_file():
        make_weights(cfg, weights, args.seed, noise)
    facts = {**offs.machine_facts(), **threads, "official_commit": offs.tree_revision(Path(args.official)),
             "device": args.device, "dtype": args.dtype, "config": cfg.to_dict(), "steps_per_run": args.steps,
             "reps": args.reps, "cfg": CFG, "shift": SHIFT, "size": args.size, "weight_noise": noise}
    print(f"# Gen3R sampler: ours vs official ({facts['official_commit'][:8]})")
    print(f"# {facts['cpu']} x{facts['cpus']}{' / ' + facts['gpu'] if 'gpu' in facts else ''}, torch {facts['torch']}, "
          f"threads {threads['torch_threads']} (OMP_NUM_THREADS={threads['OMP_NUM_THREADS']}), "
          f"load average {facts['load_average'][0]:.1f} at start")
    print(f"# {cfg.describe()} heads {cfg.num_heads}, {args.size}x{args.size} (latent appearance|geometry "
          f"{args.size // 8}x{args.size // 4}), {args.dtype}, CFG {CFG}, shift {SHIFT}, {args.steps} step(s) a run, "
          f"{args.reps} runs a side")

    off = offs.import_gen3r(Path(args.official))
    dev = args.device
    results = {"facts": facts, "cases": []}
    status = 0
    for frames in frames_list:
        inputs = work / f"inputs-{cfg.name}-{args.size}-f{frames}-s{args.seed}.safetensors"
        make_inputs(cfg, frames, args.size, inputs, args.seed)
        ours = load_ours(cfg, weights, dev, dtype)
        official = load_official(off, cfg, weights, dev, dtype)
        inp = load_inputs(inputs, dev)
        _, _, f, h, w2 = inp["noise"].shape
        case = {"frames": frames, "latent_frames": f, "tokens": f * (h // 2) * (w2 // 2)}

        run_ours = ours_sampler(ours, inp, args.steps)
        run_off = official_sampler(official, inp, args.steps, dtype)
        case["latents"] = offs.compare(run_ours(), run_off())
        tol = 2e-4 if dtype == torch.float32 else 3e-2  # relative to the largest value (fp32: float noise)
        case["agree"] = case["latents"]["rel"] <= tol and case["latents"]["finite"]
        case["tolerance_rel"] = tol
        if not case["agree"]:
            status = 1
        if args.check_only:
            print(f"{frames} frames: latents max|d| {case['latents']['max_abs']:.2e} (rel {case['latents']['rel']:.1e}) "
                  f"-> {'OK' if case['agree'] else 'FAIL'}")
            continue

        case.update(offs.interleaved_timing({"ours": run_ours, "official": run_off}, args.reps, dev, args.steps))
        if args.profile:
            offs.profile_run(run_ours, f"ours, {frames} frames")
            offs.profile_run(run_off, f"official, {frames} frames")
        del ours, official, inp, run_ours, run_off
        gc.collect()
        if dev == "cuda":
            torch.cuda.empty_cache()
        if not args.no_memory:
            case["memory"] = {name: spawn(args, name, frames, weights, inputs) for name in ("ours", "official")}
        results["cases"].append(case)
        print(f"\n## {frames} frames ({f} latent frames, {case['tokens']} tokens appearance+geometry)")
        print(f"agreement: latents after the step(s) max|d| {case['latents']['max_abs']:.2e} "
              f"(rel {case['latents']['rel']:.1e} of max {case['latents']['ref_max_abs']:.2f}) -> "
              f"{'OK' if case['agree'] else 'FAIL'} (tol rel {tol:.0e})")
        offs.print_table(case)

    results["load_average_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if status:
        print("\nDISAGREEMENT: ours and the official sampler differ beyond tolerance (see above).", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
