"""Command line: ``python -m lavr_core.conformance DIR [DIR...]`` / ``--manifest FILE [FILE...]``."""

from __future__ import annotations

import argparse
import sys

from . import ATOL, RTOL, ConformanceError, check_fixture, check_manifest


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lavr_core.conformance",
                                 description="Check our models against the official goldens and manifests.")
    ap.add_argument("fixtures", nargs="*", help="fixture folders (config.json, weights/inputs/outputs.safetensors)")
    ap.add_argument("--manifest", action="append", default=[], metavar="FILE",
                    help="state-dict manifest JSON of a released checkpoint (repeatable)")
    ap.add_argument("--atol", type=float, default=ATOL)
    ap.add_argument("--rtol", type=float, default=RTOL)
    args = ap.parse_args(argv)
    if not args.fixtures and not args.manifest:
        ap.error("give at least one fixture folder or --manifest FILE")
    failed = 0
    for d in args.fixtures:
        try:
            reports = check_fixture(d, args.atol, args.rtol)
        except ConformanceError as e:
            print(f"ERROR {d}: {e}")
            failed += 1
            continue
        bad = [r for r in reports if not r.ok]
        width = max(len(r.name) for r in reports)
        print(f"fixture {d}: {len(reports)} outputs, atol={args.atol:g} rtol={args.rtol:g}")
        for r in reports:
            print(f"  {'ok  ' if r.ok else 'FAIL'} {r.name:<{width}} shape={list(r.shape)} max_abs_err={r.max_abs_err:.3e}")
        print(f"{'PASS' if not bad else 'FAIL'} {d}: worst max_abs_err="
              f"{max(r.max_abs_err for r in reports):.3e}, {len(bad)} outside tolerance")
        failed += bool(bad)
    for m in args.manifest:
        try:
            rep = check_manifest(m)
        except ConformanceError as e:
            print(f"ERROR {m}: {e}")
            failed += 1
            continue
        print(f"{'PASS' if rep.ok else 'FAIL'} manifest {m}: {rep.num_entries} entries, "
              f"{len(rep.missing)} missing, {len(rep.unexpected)} unexpected, {len(rep.mismatched)} shape mismatches")
        for k in rep.missing[:20]:
            print(f"  missing    {k}")
        for k in rep.unexpected[:20]:
            print(f"  unexpected {k}")
        for k, a, b in rep.mismatched[:20]:
            print(f"  shape      {k}: ours {list(a)} vs manifest {list(b)}")
        failed += not rep.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
