"""Benchmark: exporting Gaussians to .ply / .splat / .spz against writing the same bytes raw.

For each format the script writes ``N`` random Gaussians (default 1 000 000) with the real writer
(``lavr_core.gaussians.write_*``: array packing, quantisation, compression, atomic temp-file +
fsync + rename) and, in the same run, writes a ready-made buffer of exactly the file's size with
``lavr_core.fileio.atomic_write_bytes`` (same temp-file + fsync + rename, no encoding work). The
ratio ``export / raw`` is the cost of encoding on top of the unavoidable disk write. Repetitions are
interleaved round-robin so machine load hits every variant alike; best and median are reported.
Reading the file back is timed too.

Usage::

    python bench/bench_splat_export.py                      # 1M Gaussians, SH degree 0, 3 repetitions
    python bench/bench_splat_export.py --n 200000 --sh-degree 3 --reps 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lavr_core.fileio import atomic_write_bytes  # noqa: E402
from lavr_core.gaussians import (Gaussians, read_ply, read_splat, read_spz, write_ply, write_splat,  # noqa: E402
                                 write_spz)

FORMATS = {
    "ply": (lambda g, p: write_ply(g, p), read_ply),
    "splat": (lambda g, p: write_splat(g, p), read_splat),
    "spz-v2": (lambda g, p: write_spz(g, p, version=2), read_spz),
    "spz-v3": (lambda g, p: write_spz(g, p, version=3), read_spz),
}


def random_gaussians(n: int, sh_degree: int, seed: int = 0) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    k = (sh_degree + 1) ** 2
    return Gaussians(torch.randn(n, 3, generator=g) * 5, torch.rand(n, 3, generator=g) * 0.2 + 1e-3,
                     torch.randn(n, 4, generator=g), torch.rand(n, generator=g),
                     torch.randn(n, k, 3, generator=g) * 0.3)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--sh-degree", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--dir", type=Path, default=ROOT / "bench" / "out", help="scratch folder (files are deleted)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    fmts = args.formats.split(",")
    args.dir.mkdir(parents=True, exist_ok=True)
    g = random_gaussians(args.n, args.sh_degree)
    times = {f: {"export": [], "raw": [], "read": []} for f in fmts}
    sizes = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        warm = random_gaussians(1000, args.sh_degree, seed=1)  # first-call costs stay out of the numbers
        for f in fmts:
            FORMATS[f][1](FORMATS[f][0](warm, tmp / f"warm.{f.split('-')[0]}"))
        for _ in range(args.reps):
            for f in fmts:
                writer, reader = FORMATS[f]
                path = tmp / f"g.{f.split('-')[0]}"
                times[f]["export"].append(timed(lambda: writer(g, path)))
                sizes[f] = path.stat().st_size
                times[f]["read"].append(timed(lambda: reader(path)))
                buf = os.urandom(sizes[f])
                times[f]["raw"].append(timed(lambda: atomic_write_bytes(tmp / "raw.bin", buf)))
                path.unlink()
                (tmp / "raw.bin").unlink()
    rows = {}
    print(f"{args.n} Gaussians, SH degree {args.sh_degree}, {args.reps} reps, torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'format':8} {'MB':>8} {'export s':>10} {'raw s':>8} {'ratio':>7} {'read s':>8}   (best / median)")
    for f in fmts:
        t = times[f]
        best = {k: min(v) for k, v in t.items()}
        med = {k: statistics.median(v) for k, v in t.items()}
        rows[f] = {"bytes": sizes[f], "best": best, "median": med, "ratio_best": best["export"] / best["raw"],
                   "ratio_median": med["export"] / med["raw"]}
        print(f"{f:8} {sizes[f] / 1e6:8.1f} {best['export']:5.2f}/{med['export']:<5.2f}"
              f" {best['raw']:4.2f}/{med['raw']:<4.2f} {rows[f]['ratio_best']:5.1f}x"
              f" {best['read']:5.2f}/{med['read']:<5.2f}")
    result = {"n": args.n, "sh_degree": args.sh_degree, "reps": args.reps, "rows": rows,
              "torch": torch.__version__, "cpus": os.cpu_count()}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
