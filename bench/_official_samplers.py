"""Find and import the official ReCamMaster / Gen3R code for the sampler benchmarks, and the
measurement helpers those benchmarks share.

The official trees are never part of this repository. The benchmarks take ``--official DIR``
(default ``/tmp/official/<name>``); when the tree is missing they print how to get it and exit
with status 2. Any checkout of the upstream repository works::

    git clone https://github.com/KwaiVGI/ReCamMaster /tmp/official/recammaster
    git clone https://github.com/JaceyHuang/Gen3R /tmp/official/gen3r

Only the model and scheduler modules are imported, each from its file; the packages around them
(``diffsynth/__init__.py``, ``gen3r/models/__init__.py``) import every model the repositories
ship, with ``transformers`` and ``torchvision`` at top level, which this project never imports.
The shims, installed into ``sys.modules`` of the benchmark process only (nothing on disk changes):

ReCamMaster (``diffsynth``)
  * ``diffsynth``, ``diffsynth.models``, ``diffsynth.pipelines``, ``diffsynth.prompters``,
    ``diffsynth.schedulers``: empty packages pointing at the official folders, so
    ``diffsynth.models.wan_video_dit``, ``diffsynth.schedulers.flow_match`` and
    ``diffsynth.pipelines.wan_video_recammaster`` load from the official files without their
    package ``__init__``. ``diffsynth.models.ModelManager`` and ``diffsynth.prompters.WanPrompter``
    are placeholder classes that raise when instantiated: the pipeline module only names them
    (in ``WanVideoReCamMasterPipeline.__init__`` / ``from_model_manager``, never called here).
  * ``torchvision`` / ``torchvision.transforms``: stand-ins whose ``GaussianBlur`` (named by
    ``pipelines/base.py``) and every other attribute raise on use; the DiT path never uses them.
Both
  * ``transformers`` is blocked (``sys.modules["transformers"] = None``), so any import of it fails:
    diffusers' ``ModelMixin`` chain tries ``transformers.utils.quantization_config`` inside
    ``try/except ImportError`` and falls back; nothing else on the benchmarked path needs it.
Gen3R (``gen3r``)
  * ``diffusers.loaders.single_file_model``: an empty ``FromOriginalModelMixin`` (the transformer's
    third base class; it only adds ``from_single_file``). The real module imports
    ``transformers.AutoImageProcessor`` whenever transformers is installed, which pulls in torchvision.
  * ``gen3r.models``: an empty package pointing at the official folder (its ``__init__`` imports
    ``transformers``, the VAE, the CLIP and T5 encoders and VGGT), so
    ``gen3r.models.videoxfun_wan.wan_transformer3d`` loads from its file. It imports diffusers'
    ``ModelMixin``/``ConfigMixin`` (real, installed) and ``gen3r.dist`` (real; its optional
    ``xfuser``/``pai_fuser`` imports fail over to ``None`` as upstream intends).
Neither tree has flash-attention or SageAttention here, so both official models use
``F.scaled_dot_product_attention`` (as ours does through diffusers' dispatcher).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
import types
from pathlib import Path

import torch
from torch import nn

from _official import DEFAULT_ROOT, MALLOC_ENV, OfficialTreeMissing, find_tree, proc_status, require_tree, tree_revision  # noqa: E402,F401

#: The commits the reference data (shared/reference/*/README.md) was written against.
REFERENCE_COMMIT = {"recammaster": "39c0dc2e7b0469789216adedfd0d220325633866",
                    "gen3r": "1df25b63a8de618a0568924dc2e6dfb43e925039"}


# ------------------------------------------------------------------------------------ module shims
def _refuse(what: str):
    def fail(*args, **kwargs):
        raise RuntimeError(f"{what} is a benchmark stand-in (see bench/_official_samplers.py); it cannot run.")
    return fail


def _placeholder_class(name: str) -> type:
    return type(name, (), {"__init__": _refuse(name), "__lavr_shim__": True})


def _package(name: str, folder: Path | None = None, **attrs) -> types.ModuleType:
    """An empty package (its ``__init__`` is not run); submodules load from ``folder`` when given."""
    mod = types.ModuleType(name)
    mod.__path__ = [str(folder)] if folder is not None else []
    mod.__dict__.update(attrs)
    mod.__lavr_shim__ = True
    return mod


def _install(name: str, mod: types.ModuleType) -> None:
    existing = sys.modules.get(name)
    if existing is not None and not getattr(existing, "__lavr_shim__", False):
        raise RuntimeError(f"{name} is already imported for real; the benchmark's stand-in cannot replace it.")
    sys.modules[name] = mod
    if "." in name:
        parent, child = name.rsplit(".", 1)
        if parent in sys.modules:
            setattr(sys.modules[parent], child, mod)


def quiet_official_warnings() -> None:
    """Silence the official trees' import-time deprecation notices (``torch.cuda.amp.autocast``
    decorators) and their per-call notice that SDPA ignores ``k_lens`` (every sequence here is
    unpadded, so no mask is lost), so the tables stay readable."""
    import warnings

    warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.autocast.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r"Padding mask is disabled when using scaled_dot_product_attention")
    warnings.filterwarnings("ignore", message=r"CUDA is not available or torch_xla is imported")


def block_transformers() -> None:
    """Make ``import transformers`` fail in this process (unless it is already imported).

    diffusers' ``ModelMixin`` import chain tries ``from transformers.utils.quantization_config
    import ...`` inside ``try/except ImportError`` whenever transformers is installed; blocked, it
    takes its fallback and transformers (and torchvision behind it) is never imported."""
    sys.modules.setdefault("transformers", None)


def _torchvision_stand_in() -> None:
    """``torchvision`` and ``torchvision.transforms`` whose attributes raise on use (the installed
    torchvision is a broken CUDA build and is never imported)."""
    if "torchvision" in sys.modules and not getattr(sys.modules["torchvision"], "__lavr_shim__", False):
        return
    # diffusers probes for torchvision with importlib.util.find_spec when first imported; let it
    # probe the real installation (it does not import it), and give the stand-ins a spec anyway.
    import importlib.machinery

    block_transformers()
    import diffusers  # noqa: F401

    tv = _package("torchvision")
    tr = _package("torchvision.transforms", GaussianBlur=_placeholder_class("torchvision.transforms.GaussianBlur"))
    tr.__getattr__ = lambda attr: _placeholder_class(f"torchvision.transforms.{attr}")
    for m in (tv, tr):
        m.__spec__ = importlib.machinery.ModuleSpec(m.__name__, None, is_package=True)
    _install("torchvision", tv)
    _install("torchvision.transforms", tr)


def import_recammaster(root: Path) -> types.SimpleNamespace:
    """The official ReCamMaster modules: ``dit`` (``wan_video_dit``), ``pipeline``
    (``wan_video_recammaster``, for ``model_fn_wan_video``) and ``flow_match`` (the scheduler)."""
    import importlib

    root = Path(root).resolve()
    pkg = root / "diffsynth"
    loaded = sys.modules.get("diffsynth")
    if loaded is not None and Path(loaded.__path__[0]).resolve() != pkg:
        raise RuntimeError(f"diffsynth is already imported from {loaded.__path__[0]}, not {pkg}.")
    _torchvision_stand_in()
    _install("diffsynth", _package("diffsynth", pkg))
    _install("diffsynth.models", _package("diffsynth.models", pkg / "models",
                                          ModelManager=_placeholder_class("diffsynth.models.ModelManager")))
    _install("diffsynth.prompters", _package("diffsynth.prompters", pkg / "prompters",
                                             WanPrompter=_placeholder_class("diffsynth.prompters.WanPrompter")))
    _install("diffsynth.pipelines", _package("diffsynth.pipelines", pkg / "pipelines"))
    _install("diffsynth.schedulers", _package("diffsynth.schedulers", pkg / "schedulers"))
    return types.SimpleNamespace(
        dit=importlib.import_module("diffsynth.models.wan_video_dit"),
        pipeline=importlib.import_module("diffsynth.pipelines.wan_video_recammaster"),
        flow_match=importlib.import_module("diffsynth.schedulers.flow_match"),
        root=root)


def _single_file_stand_in() -> None:
    """``diffusers.loaders.single_file_model`` reduced to an empty ``FromOriginalModelMixin``: the real
    module imports ``transformers`` (and through it torchvision) whenever transformers is installed,
    and the mixin only adds the ``from_single_file`` class method, which the benchmark never calls."""
    name = "diffusers.loaders.single_file_model"
    if name in sys.modules:
        return
    import diffusers.loaders  # noqa: F401  (lazy package: nothing heavy is imported)

    mixin = type("FromOriginalModelMixin", (), {"from_single_file": classmethod(_refuse("from_single_file")),
                                                "__lavr_shim__": True})
    _install(name, _package(name, FromOriginalModelMixin=mixin))
    sys.modules[name].__path__ = None  # a module, not a package
    del sys.modules[name].__path__


def import_gen3r(root: Path) -> types.SimpleNamespace:
    """The official Gen3R transformer module (``gen3r.models.videoxfun_wan.wan_transformer3d``)."""
    import importlib

    root = Path(root).resolve()
    block_transformers()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    _install("gen3r.models", _package("gen3r.models", root / "gen3r" / "models"))
    _single_file_stand_in()
    import gen3r  # noqa: F401  (a namespace package in the official tree: no __init__.py)

    sys.modules["gen3r"].models = sys.modules["gen3r.models"]
    mod = importlib.import_module("gen3r.models.videoxfun_wan.wan_transformer3d")
    if not str(Path(mod.__file__).resolve()).startswith(str(root)):
        raise RuntimeError(f"gen3r was imported from {mod.__file__}, not from {root}.")
    return types.SimpleNamespace(transformer=mod, root=root)


# ------------------------------------------------------------------------------------ weights
def perturb_(model: nn.Module, seed: int, noise: float = 0.05) -> None:
    """The reference goldens' recipe: every parameter gets ``noise * N(0, 1)`` added (seeded), so no
    layer is at a trivial value (zero camera encoder, identity projector, zero biases)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * noise)


def load_strict(model: nn.Module, state_dict: dict, what: str) -> None:
    """``load_state_dict(strict=True)`` with ``assign`` (the model may be on the meta device), naming
    any missing / unexpected key."""
    ours, theirs = set(model.state_dict()), set(state_dict)
    if ours != theirs:
        raise RuntimeError(f"{what}: key sets differ; missing {sorted(ours - theirs)[:8]}, "
                           f"unexpected {sorted(theirs - ours)[:8]}")
    for k, v in model.state_dict().items():
        if tuple(v.shape) != tuple(state_dict[k].shape):
            raise RuntimeError(f"{what}: {k} is {tuple(v.shape)} in the model, {tuple(state_dict[k].shape)} in the weights")
    model.load_state_dict(state_dict, strict=True, assign=True)


# ------------------------------------------------------------------------------------ measurement
class PeakRSS:
    """Peak resident set growth over the moment ``start()`` is called.

    Resets the kernel's high-water mark (``VmHWM``, through ``/proc/self/clear_refs``) when the
    kernel allows it; otherwise falls back to ``ru_maxrss``, which cannot be reset, so the growth is
    then only seen when the run goes above every earlier peak (the post-load baseline is taken
    right after loading, which for these workers is the earlier peak)."""

    def start(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.method = "VmHWM (reset) - VmRSS before the step"
        except OSError:
            self.method = "ru_maxrss - VmRSS before the step"
        self.base = proc_status("VmRSS")

    def peak(self) -> int:
        if self.method.startswith("VmHWM"):
            hwm = proc_status("VmHWM")
        else:
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return max(0, hwm - self.base)


def thread_settings(threads: int) -> dict:
    """Pin torch's and OpenMP's thread counts (also exported for child processes); returns what was set."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
    return {"torch_threads": torch.get_num_threads(), "OMP_NUM_THREADS": threads}


def machine_facts() -> dict:
    import platform

    facts = {"torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
             "load_average": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            facts["cpu"] = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        facts["cpu"] = platform.processor()
    if torch.cuda.is_available():
        facts["gpu"] = torch.cuda.get_device_name(0)
    return facts


def timer(device: str):
    """``(now, sync)``: wall clock after synchronising the device (CUDA kernels run asynchronously)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def now():
        sync()
        return time.perf_counter()

    return now, sync


def measured_run(run, device: str, steps: int) -> dict:
    """Time one sampler run and measure its peak memory over the state right after loading.

    CPU: resident-set high-water mark (``PeakRSS``); CUDA: ``max_memory_allocated`` minus the allocation
    after loading, plus the absolute peak. Returns seconds and CPU seconds per step with the memory.
    """
    import gc

    now, sync = timer(device)
    gc.collect()
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        after_load = torch.cuda.memory_allocated()
    else:
        rss = PeakRSS()
        rss.start()
        after_load = rss.base
    t0, c0 = now(), time.process_time()
    out = run()
    wall, cpu = now() - t0, time.process_time() - c0
    if device == "cuda":
        peak_abs = torch.cuda.max_memory_allocated()
        result = {"peak": peak_abs - after_load, "peak_abs": peak_abs, "reserved": torch.cuda.max_memory_reserved(),
                  "memory": "cuda max_memory_allocated - allocated after load"}
    else:
        result = {"peak": rss.peak(), "peak_abs": None, "memory": rss.method.replace("before the step", "after load")}
    del out
    result.update({"seconds_per_step": wall / steps, "cpu_seconds_per_step": cpu / steps, "after_load": after_load})
    return result


def median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def interleaved_timing(runs: dict, reps: int, device: str, steps: int) -> dict:
    """Time ``runs`` (name -> zero-argument callable running ``steps`` sampling steps) ``reps`` times
    each, alternating which goes first, in this process. Returns per-step medians and best runs of the
    wall time and the process CPU time (with one thread the CPU time leaves out waiting for a core,
    the steadier number on a shared machine)."""
    import gc

    now, sync = timer(device)
    names = list(runs)
    wall = {k: [] for k in names}
    cpu = {k: [] for k in names}
    for r in range(reps):
        for name in (names if r % 2 == 0 else names[::-1]):
            gc.collect()
            t0, c0 = now(), time.process_time()
            out = runs[name]()
            sync()
            w, c = now() - t0, time.process_time() - c0
            del out
            wall[name].append(w / steps)
            cpu[name].append(c / steps)
    return {"seconds_per_step": {k: median(v) for k, v in wall.items()},
            "best_seconds_per_step": {k: min(v) for k, v in wall.items()},
            "cpu_seconds_per_step": {k: median(v) for k, v in cpu.items()},
            "all_seconds_per_step": wall, "all_cpu_seconds_per_step": cpu}


def compare(a: torch.Tensor, b: torch.Tensor) -> dict:
    """max |a - b|, relative to max |b|, and whether both are finite."""
    d = (a.float() - b.float()).abs()
    scale = b.float().abs().max().item()
    return {"max_abs": d.max().item(), "ref_max_abs": scale, "rel": d.max().item() / max(scale, 1e-30),
            "finite": bool(torch.isfinite(a).all() and torch.isfinite(b).all())}


def print_table(case: dict) -> None:
    """Markdown table of one case: seconds per step and peak memory per side, with ours/official ratios."""
    MiB = 1024 * 1024
    s, b, c = case["seconds_per_step"], case["best_seconds_per_step"], case["cpu_seconds_per_step"]
    mem = case.get("memory", {})
    print("| impl | wall s/step (median) | wall s/step (best) | CPU s/step (median) | peak MiB over loaded | abs peak MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in ("ours", "official"):
        m = mem.get(name, {})
        peak = f"{m['peak'] / MiB:.0f}" if m else "-"
        absp = f"{m['peak_abs'] / MiB:.0f}" if m.get("peak_abs") else "-"
        print(f"| {name} | {s[name]:.3f} | {b[name]:.3f} | {c[name]:.3f} | {peak} | {absp} |")
    ratio_mem = f"{mem['ours']['peak'] / max(mem['official']['peak'], 1):.2f}" if mem else "-"
    ratio_abs = (f"{mem['ours']['peak_abs'] / mem['official']['peak_abs']:.2f}"
                 if mem and mem["ours"].get("peak_abs") else "")
    print(f"| ours/official | {s['ours'] / s['official']:.2f} | {b['ours'] / b['official']:.2f} | "
          f"{c['ours'] / c['official']:.2f} | {ratio_mem} | {ratio_abs} |")


def profile_run(run, label: str, rows: int = 12) -> None:
    """Print the ops with the most self time in one call of ``run``."""
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.cuda.is_available()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts) as prof:
        run()
    print(f"\n--- profile: {label} (top {rows} ops by self time) ---")
    print(prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=rows))


def spawn_worker(script: Path, argv: list[str], threads: int) -> dict:
    """Run ``script argv`` in a fresh process (glibc set so freed memory leaves it) and return the
    JSON after its ``RESULT `` line."""
    import json

    env = {**os.environ, **MALLOC_ENV, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"worker {' '.join(argv[:4])} failed (status {proc.returncode}):\n{proc.stderr[-4000:]}")
