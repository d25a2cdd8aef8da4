#!/usr/bin/env bash
# Run every test: unit tests of lavr_core, a real ComfyUI server with this pack, and the real
# frontend in headless Chromium. Installs what is missing first (scripts/setup.sh), so it works on a
# fresh machine. Extra arguments go to pytest (e.g. `bash scripts/test.sh -k builder`).
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
bash "$HERE/scripts/setup.sh"
cd "$HERE"
exec .venv/bin/python -m pytest "$@"
