"""``python -m lavr_core.train <command> [options]``: LaVR's training commands.

Dispatch is table-driven: ``COMMANDS`` maps a command name to ``(module, one-line help)``; the module
provides ``add_arguments(parser)`` and ``main(args) -> int``, and is imported only when its command
runs (so one command's heavy imports never slow down or break another). Adding a command is adding
a row.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import LavrError

COMMANDS: dict[str, tuple[str, str]] = {
    "vggt-gaussians": ("lavr_core.train.vggt_gaussians",
                       "train the VGGT4D Gaussian head (and temporal layers) on posed multi-view frames"),
    "procedural-data": ("lavr_core.train.data_multiview",
                        "write procedural multi-view scenes (random Gaussian blobs) in the training layout"),
    "lavr-adapter": ("lavr_core.train.lavr_adapter",
                     "train the LaVR scene-latent adapter (and ReCamMaster's camera / self-attention layers)"),
    "multicam-data": ("lavr_core.train.data_multicam",
                      "write procedural multi-camera videos with scene latents in the lavr-adapter layout"),
    "fused4d": ("lavr_core.train.fused4d",
                "fine-tune a Wan DiT's self-attention (or a LoRA) for the Fused 4D grid on homography-warped videos"),
}


def build_parser(commands: dict[str, tuple[str, str]] | None = None) -> argparse.ArgumentParser:
    commands = COMMANDS if commands is None else commands
    ap = argparse.ArgumentParser(prog="python -m lavr_core.train", description="LaVR training commands.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        # Arguments come from the command's module; importing it here only costs its imports.
        importlib.import_module(module).add_arguments(p)
    return ap


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Build only the chosen command's parser when one is named, so a broken optional command
    # (missing dependency) cannot stop the others from running.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    table = {chosen: COMMANDS[chosen]} if chosen in COMMANDS else COMMANDS
    args = build_parser(table).parse_args(argv)
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except LavrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
