"""Benchmark: seconds per sampling step and peak memory of our ReCamMaster sampler against the
official ReCamMaster code (KwaiVGI/ReCamMaster, DiffSynth's Wan), same random weights, same inputs.

One sampling step is what both pipelines do once per timestep: the DiT on ``cat([target, source],
frames)`` twice (CFG: positive and negative prompt, same source and cameras), the guidance mix on
the target half, and the Euler update. The two sides run:

* ``ours``: ``lavr_core.wan.sampling.flow_sample`` driving ``lavr_core.wan.rerender.camera_velocity``
  on ``ReCamMasterModel`` (exactly the sampling part of ``rerender``);
* ``official``: the loop body of ``WanVideoReCamMasterPipeline.__call__`` (``diffsynth/pipelines/
  wan_video_recammaster.py``), calling the official ``model_fn_wan_video`` on the official ``WanModel``
  with the per-block ``cam_encoder``/``projector`` attached as ``inference_recammaster.py`` does, and the
  official ``FlowMatchScheduler(shift=5, sigma_min=0, extra_one_step=True).step``. The pipeline's
  ``__call__`` itself needs the VAE, umT5 and a video file, so its denoising loop is restated here
  line for line around the official functions (latents in the model dtype, timestep cast to it).

Weights: our model built with ``torch.manual_seed(seed)`` and every parameter perturbed by
``noise * N(0, 1)`` (camera layers included, so the camera input matters), saved once as
safetensors; both sides load that file key for key (strict). Inputs (noise, source latents, padded
text contexts, a synthetic arc trajectory's ``cam_emb``) are drawn once and shared.

Before timing, both samplers run the same steps from the same noise and their latents are compared
(exit 1 when they disagree; with one step the latents are ``noise - v``, so this compares the CFG
velocity itself). That run is also each side's warm-up. Timing then runs both models in one process,
alternating which goes first; medians (and the best run) over the repetitions, wall and process
CPU time. Peak memory runs each side in a fresh subprocess, one sampler run right after loading: on
the CPU the resident-set high-water mark minus the resident set after loading; on CUDA
``max_memory_allocated`` minus the allocation after loading (plus the absolute peak, weights
included). One-time allocations of the first step (our cached RoPE table, library workspaces)
count, as they do for a user.

The official DiT broadcasts the camera over a hard-coded 30x52 token grid, so it only runs at
480x832; the CPU configuration keeps that size and shrinks width, depth and frames instead.

Usage::

    python bench/bench_recammaster.py                     # CPU "small": dim 256, 4 blocks, 480x832, 1 and 5 frames
    python bench/bench_recammaster.py --device cuda --full            # 1.3B, 480x832, 33 and 81 frames, bf16
    python bench/bench_recammaster.py --device cuda --full --offload  # + our rerender at 81 frames with offloading
    python bench/bench_recammaster.py --official /path/to/ReCamMaster --json out.json

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

MiB = 1024 * 1024
HEIGHT, WIDTH = 480, 832  # the only size the official DiT runs (hard-coded 30x52 camera broadcast)
CFG, SHIFT = 5.0, 5.0


# ----------------------------------------------------------------------------- configuration
def bench_config(args):
    """Our ``WanConfig`` for the run: the released ReCamMaster 1.3B (``--full``) or a small one
    (dim 256, 2 heads of 128 so RoPE splits 44/42/42 as released, 4 blocks, umT5 width 256)."""
    from dataclasses import replace

    from lavr_core.wan.config import RECAMMASTER_1_3B, WanConfig

    if args.full:
        cfg = RECAMMASTER_1_3B
    else:
        cfg = WanConfig(dim=256, in_dim=16, ffn_dim=1024, out_dim=16, num_heads=2, num_layers=4, text_dim=256,
                        freq_dim=256, camera=True, name="bench-small")
    if args.layers:
        cfg = replace(cfg, num_layers=args.layers, name=f"{cfg.name}-{args.layers}blocks")
    return cfg


def official_kwargs(cfg) -> dict:
    """The official ``WanModel`` constructor arguments for our config."""
    return dict(dim=cfg.dim, in_dim=cfg.in_dim, ffn_dim=cfg.ffn_dim, out_dim=cfg.out_dim, text_dim=cfg.text_dim,
                freq_dim=cfg.freq_dim, eps=cfg.eps, patch_size=tuple(cfg.patch_size), num_heads=cfg.num_heads,
                num_layers=cfg.num_layers, has_image_input=False)


def dtype_of(args) -> torch.dtype:
    return torch.bfloat16 if args.dtype == "bf16" else torch.float32


# ----------------------------------------------------------------------------- weights and inputs
def make_weights(cfg, path: Path, seed: int, noise: float) -> None:
    from safetensors.torch import save_file

    from lavr_core.wan.recammaster import ReCamMasterModel

    torch.manual_seed(seed)
    model = ReCamMasterModel(cfg)
    offs.perturb_(model, seed + 1, noise)
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path), metadata={"config": json.dumps(cfg.to_dict()), "seed": str(seed), "noise": str(noise)})


def arc_cam_emb(num_latent: int) -> torch.Tensor:
    """``[1, F, 12]``: relative c2w (OpenCV) of an arc to the left, 30 degrees and 2 m over the path,
    one per target latent frame, top 3x4 row-major (ReCamMaster's ``cam_emb`` layout)."""
    rows = []
    for j in range(num_latent):
        s = j / max(1, num_latent - 1)
        a = math.radians(30.0) * s
        rot = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
        t = torch.tensor([[-2.0 * s], [0.0], [0.5 * s]])
        rows.append(torch.cat([rot, t], 1).reshape(12))
    return torch.stack(rows)[None].float()


def make_inputs(cfg, frames: int, path: Path, seed: int) -> None:
    from safetensors.torch import save_file

    from lavr_core.wan.recammaster import latent_frame_count

    f = latent_frame_count(frames)
    g = torch.Generator().manual_seed(seed + 2)
    shape = (1, cfg.out_dim, f, HEIGHT // 8, WIDTH // 8)
    noise = torch.randn(shape, generator=g)
    source = torch.randn(shape, generator=g)

    def context(valid: int) -> torch.Tensor:
        c = torch.zeros(1, cfg.text_len, cfg.text_dim)  # Wan's prompter zero-pads umT5 features to 512
        c[:, :valid] = torch.randn(1, valid, cfg.text_dim, generator=g)
        return c

    save_file({"noise": noise, "source": source, "context_pos": context(24), "context_neg": context(120),
               "cam_emb": arc_cam_emb(f)}, str(path))


def load_ours(cfg, weights: Path, device: str, dtype: torch.dtype):
    from safetensors.torch import load_file

    from lavr_core.wan.loading import model_from_state_dict

    return model_from_state_dict(load_file(str(weights)), cfg, dtype=dtype, device=device,
                                 what="bench weights")


def load_official(off, cfg, weights: Path, device: str, dtype: torch.dtype):
    """The official ``WanModel`` with the camera layers attached as ``inference_recammaster.py`` does
    (built on the meta device, then the weights adopted key for key)."""
    from safetensors.torch import load_file

    with torch.device("meta"):
        model = off.dit.WanModel(**official_kwargs(cfg))
        for block in model.blocks:
            block.cam_encoder = torch.nn.Linear(12, cfg.dim)
            block.projector = torch.nn.Linear(cfg.dim, cfg.dim)
    # ``freqs`` is a plain attribute (not a buffer) computed in __init__: rebuild it off the meta device.
    model.freqs = off.dit.precompute_freqs_cis_3d(cfg.dim // cfg.num_heads)
    sd = {k: v.to(dtype) for k, v in load_file(str(weights)).items()}
    offs.load_strict(model, sd, "official WanModel")
    return model.to(device).eval()


def load_inputs(path: Path, device: str) -> dict:
    from safetensors.torch import load_file

    return {k: v.to(device) for k, v in load_file(str(path)).items()}


# ----------------------------------------------------------------------------- the two samplers
def ours_sampler(model, inp: dict, steps: int, dtype: torch.dtype):
    """Our sampling exactly as ``rerender`` runs it (latents float32, timestep rounded to the model
    dtype as ReCamMaster's pipeline does; the contexts in the model dtype as the sampler node gets them)."""
    from lavr_core.wan.rerender import camera_velocity
    from lavr_core.wan.sampling import SamplerSettings, flow_sample

    settings = SamplerSettings(steps=steps, cfg=CFG, shift=SHIFT, seed=0,
                               timestep_dtype=None if dtype == torch.float32 else dtype)
    velocity = camera_velocity(model, inp["source"].float(), inp["cam_emb"], inp["context_pos"].to(dtype),
                               inp["context_neg"].to(dtype))

    def run():
        with torch.inference_mode():
            return flow_sample(velocity, inp["noise"].float(), settings)

    return run


def official_sampler(off, model, inp: dict, steps: int, dtype: torch.dtype):
    """The denoising loop of ``WanVideoReCamMasterPipeline.__call__`` around the official functions
    (``torch_dtype`` = ``dtype``: latents, source, cam_emb, prompt embeddings and timestep in it)."""
    scheduler = off.flow_match.FlowMatchScheduler(shift=SHIFT, sigma_min=0.0, extra_one_step=True)
    model_fn = off.pipeline.model_fn_wan_video
    dev = inp["noise"].device
    source, cam = inp["source"].to(dtype), inp["cam_emb"].to(dtype)
    posi, nega = {"context": inp["context_pos"].to(dtype)}, {"context": inp["context_neg"].to(dtype)}

    def run():
        with torch.no_grad():
            scheduler.set_timesteps(steps, denoising_strength=1.0, shift=SHIFT)
            latents = inp["noise"].to(dtype)
            n = latents.shape[2]
            for i, timestep in enumerate(scheduler.timesteps):
                timestep = timestep.unsqueeze(0).to(dtype=dtype, device=dev)
                latents_input = torch.cat([latents, source], dim=2)
                pred_posi = model_fn(model, latents_input, timestep=timestep, cam_emb=cam, **posi, tea_cache=None)
                pred_nega = model_fn(model, latents_input, timestep=timestep, cam_emb=cam, **nega, tea_cache=None)
                pred = pred_nega + CFG * (pred_posi - pred_nega)
                latents = scheduler.step(pred[:, :, :n], scheduler.timesteps[i], latents_input[:, :, :n])
            return latents

    return run


# ----------------------------------------------------------------------------- workers
def worker(args) -> dict:
    """One side in a fresh process: load, then the peak memory of one sampler run (no warm-up)."""
    offs.thread_settings(args.threads)
    cfg = bench_config(args)
    dev, dtype = args.device, dtype_of(args)
    off = offs.import_recammaster(Path(args.official)) if args.worker == "official" else None
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model = (load_official(off, cfg, Path(args.weights), dev, dtype) if off is not None
             else load_ours(cfg, Path(args.weights), dev, dtype))
    inp = load_inputs(Path(args.inputs), dev)
    run = official_sampler(off, model, inp, args.steps, dtype) if off is not None else ours_sampler(model, inp, args.steps, dtype)
    result = offs.measured_run(run, dev, args.steps)
    result.update({"impl": args.worker, "frames": args.frames})
    return result


def offload_worker(args) -> dict:
    """Our whole ``rerender`` (VAE encode, ``steps`` sampling steps, VAE decode) with the DiT and the VAE
    kept on the CPU and brought to ``device`` one at a time (what the LaVR Sampler node does):
    the peak device memory of the run."""
    from lavr_core.camera.trajectory import CameraTrajectory
    from lavr_core.wan.bundle import VideoModel
    from lavr_core.wan.rerender import rerender
    from lavr_core.wan.sampling import SamplerSettings
    from lavr_core.wan.vae import WAN21_VAE, WanVAE

    offs.thread_settings(args.threads)
    cfg = bench_config(args)
    dev, dtype = torch.device(args.device), dtype_of(args)
    dit = load_ours(cfg, Path(args.weights), "cpu", dtype)
    torch.manual_seed(args.seed + 5)
    vae = WanVAE(WAN21_VAE).to(dtype).eval()
    model = VideoModel(dit=dit, vae=vae, variant="recammaster", config=cfg, dit_dtype=dtype, vae_dtype=dtype,
                       load_device=dev, offload_device=torch.device("cpu"))
    n = args.frames
    g = torch.Generator().manual_seed(args.seed + 6)
    images = torch.rand(n, HEIGHT, WIDTH, 3, generator=g)
    c2w = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    c2w[:, 0, 3] = torch.linspace(0, -2.0, n, dtype=torch.float64)
    K = torch.tensor([[500.0, 0, WIDTH / 2], [0, 500.0, HEIGHT / 2], [0, 0, 1]], dtype=torch.float64).repeat(n, 1, 1)
    traj = CameraTrajectory(c2w=c2w, K=K, width=WIDTH, height=HEIGHT)
    ctx = {k: torch.randn(1, v, cfg.text_dim, generator=g).to(dtype) for k, v in (("pos", 24), ("neg", 120))}
    moves = []

    @contextlib.contextmanager
    def place(part):
        module = model.part(part)
        module.to(dev)
        moves.append(part)
        try:
            yield module
        finally:
            module.to("cpu")
            if dev.type == "cuda":
                torch.cuda.empty_cache()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    now, _ = offs.timer(str(dev))
    t0 = now()
    res = rerender(model, images, traj, ctx["pos"], ctx["neg"], SamplerSettings(steps=args.steps, cfg=CFG, shift=SHIFT),
                   place=place)
    wall = now() - t0
    out = {"impl": "ours-offload", "frames": n, "steps": args.steps, "seconds": wall, "moves": moves,
           "output": list(res.images.shape), "finite": bool(torch.isfinite(res.images).all())}
    if dev.type == "cuda":
        out.update({"peak_abs": torch.cuda.max_memory_allocated(), "reserved": torch.cuda.max_memory_reserved(),
                    "memory": "cuda max_memory_allocated / max_memory_reserved over the whole rerender"})
    else:
        out.update({"peak_abs": offs.proc_status("VmHWM"), "memory": "VmHWM of the process (CPU run: a smoke test)"})
    return out


def spawn(args, mode: str, frames: int, weights: Path, inputs: Path | None, steps: int) -> dict:
    argv = ["--worker", mode, "--frames", str(frames), "--official", args.official, "--device", args.device,
            "--threads", str(args.threads), "--dtype", args.dtype, "--steps", str(steps), "--weights", str(weights),
            "--seed", str(args.seed)]
    argv += ["--inputs", str(inputs)] if inputs else []
    argv += ["--full"] if args.full else []
    argv += ["--layers", str(args.layers)] if args.layers else []
    return offs.spawn_worker(Path(__file__).resolve(), argv, args.threads)


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--official", default=str(offs.DEFAULT_ROOT / "recammaster"),
                   help="official ReCamMaster checkout (default /tmp/official/recammaster)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--full", action="store_true", help="released 1.3B config (default: the small CPU config)")
    p.add_argument("--layers", type=int, default=0, help="override the block count (smoke tests of --full)")
    p.add_argument("--frames", type=int, nargs="+", help="video frames (4k+1); default 1 5 (small), 33 81 (full)")
    p.add_argument("--steps", type=int, default=1, help="sampling steps per timed run (seconds are per step)")
    p.add_argument("--reps", type=int, default=3, help="timed runs per side (interleaved), after the agreement run")
    p.add_argument("--dtype", choices=["fp32", "bf16"], help="default fp32 on cpu, bf16 on cuda")
    p.add_argument("--threads", type=int, default=1, help="torch / OpenMP threads (state it: the CPU is shared)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, help="weight perturbation (default 0.05 small, 0.005 full)")
    p.add_argument("--offload", action="store_true", help="also measure our rerender with offloading (81 frames)")
    p.add_argument("--offload-frames", type=int, default=81)
    p.add_argument("--no-memory", action="store_true", help="skip the per-side memory subprocesses")
    p.add_argument("--check-only", action="store_true", help="only the agreement check (no timing, no memory)")
    p.add_argument("--profile", action="store_true", help="profile one step of each side")
    p.add_argument("--workdir", default="/tmp/lavr-bench-recammaster", help="weights/inputs files")
    p.add_argument("--json", help="write all results here")
    p.add_argument("--worker", choices=["ours", "official", "offload"], help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--inputs", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: CUDA is not available on this machine.", file=sys.stderr)
        return 2
    if args.worker is None or args.worker == "official":
        args.official = str(offs.require_tree("recammaster", args.official))
    if args.worker:
        args.frames = args.frames[0]
    if args.worker == "offload":
        print("RESULT " + json.dumps(offload_worker(args)), flush=True)
        return 0
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return 0

    threads = offs.thread_settings(args.threads)
    cfg = bench_config(args)
    dtype = dtype_of(args)
    frames_list = args.frames or ([33, 81] if args.full else [1, 5])
    noise = args.noise if args.noise is not None else (0.005 if args.full else 0.05)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    weights = work / f"weights-{cfg.name}-s{args.seed}-n{noise}.safetensors"
    if not weights.is_file():
        make_weights(cfg, weights, args.seed, noise)
    facts = {**offs.machine_facts(), **threads, "official_commit": offs.tree_revision(Path(args.official)),
             "device": args.device, "dtype": args.dtype, "config": cfg.to_dict(), "steps_per_run": args.steps,
             "reps": args.reps, "cfg": CFG, "shift": SHIFT, "size": [HEIGHT, WIDTH], "weight_noise": noise}
    print(f"# ReCamMaster sampler: ours vs official ({facts['official_commit'][:8]})")
    print(f"# {facts['cpu']} x{facts['cpus']}{' / ' + facts['gpu'] if 'gpu' in facts else ''}, torch {facts['torch']}, "
          f"threads {threads['torch_threads']} (OMP_NUM_THREADS={threads['OMP_NUM_THREADS']}), "
          f"load average {facts['load_average'][0]:.1f} at start")
    print(f"# DiT {cfg.describe()} heads {cfg.num_heads}, {HEIGHT}x{WIDTH}, {args.dtype}, "
          f"CFG {CFG} (2 DiT calls a step), {args.steps} step(s) a run, {args.reps} runs a side")

    off = offs.import_recammaster(Path(args.official))
    dev = args.device
    results = {"facts": facts, "cases": []}
    status = 0
    for frames in frames_list:
        inputs = work / f"inputs-{cfg.name}-f{frames}-s{args.seed}.safetensors"
        make_inputs(cfg, frames, inputs, args.seed)
        ours = load_ours(cfg, weights, dev, dtype)
        official = load_official(off, cfg, weights, dev, dtype)
        inp = load_inputs(inputs, dev)
        f_lat = inp["noise"].shape[2]
        tokens = 2 * f_lat * (HEIGHT // 16) * (WIDTH // 16)
        case = {"frames": frames, "latent_frames": f_lat, "tokens": tokens}

        # agreement first (also each side's warm-up): the same latents after the same steps
        run_ours = ours_sampler(ours, inp, args.steps, dtype)
        run_off = official_sampler(off, official, inp, args.steps, dtype)
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
            case["memory"] = {name: spawn(args, name, frames, weights, inputs, args.steps) for name in ("ours", "official")}
        results["cases"].append(case)
        print_case(case)

    if args.offload:
        res = spawn(args, "offload", args.offload_frames, weights, None, args.steps)
        results["offload"] = res
        gib = (res["peak_abs"] or 0) / 1024 ** 3
        head = (f"\nOffload: our rerender, {res['frames']} frames {HEIGHT}x{WIDTH}, {res['steps']} step(s), DiT and VAE "
                f"moved to {args.device} one at a time ({' -> '.join(res['moves'])}), {res['seconds']:.1f} s, output "
                f"{res['output']} finite={res['finite']}")
        if args.device == "cuda":
            reserved = res["reserved"] / 1024 ** 3
            print(f"{head}\npeak allocated {gib:.2f} GiB, peak reserved {reserved:.2f} GiB ({res['memory']}); "
                  f"under 24 GB (22.35 GiB): {max(gib, reserved) < 24e9 / 1024 ** 3}")
        else:
            print(f"{head}\nCPU smoke test of the offload path only (process peak RSS {gib:.2f} GiB); "
                  "the GPU figure needs --device cuda.")
    results["load_average_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if status:
        print("\nDISAGREEMENT: ours and the official sampler differ beyond tolerance (see above).", file=sys.stderr)
    return status


def print_case(case: dict) -> None:
    print(f"\n## {case['frames']} frames ({case['latent_frames']} latent frames, {case['tokens']} tokens target+source)")
    print(f"agreement: latents after the step(s) max|d| {case['latents']['max_abs']:.2e} "
          f"(rel {case['latents']['rel']:.1e} of max {case['latents']['ref_max_abs']:.2f}) -> "
          f"{'OK' if case['agree'] else 'FAIL'} (tol rel {case['tolerance_rel']:.0e})")
    offs.print_table(case)


if __name__ == "__main__":
    sys.exit(main())
