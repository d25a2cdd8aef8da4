"""Run a real ComfyUI with this pack: start/stop a server, convert UI workflows, queue them, wait.

Standard library only (the tests and the demo both use it). Library use::

    with ComfyServer(root=".comfy") as srv:
        result = srv.run_workflow("workflows/camera_trajectory_editor.json")

Command line (the README's demo)::

    python scripts/comfy_harness.py run workflows/camera_trajectory_editor.json [--root .comfy] [--port 8188]
    python scripts/comfy_harness.py serve [--port 8188]      # start and keep running (Ctrl-C stops)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK_NAME = "ComfyUI-LaVR"
#: Frontend-only nodes that never reach the server.
UI_ONLY_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    """A ComfyUI process on loopback with this pack linked into ``<root>/base/custom_nodes``."""

    def __init__(self, root: str | os.PathLike = REPO / ".comfy", port: int | None = None,
                 python: str | None = None, extra_args: tuple[str, ...] = ()):
        self.root = Path(root).resolve()
        self.base = self.root / "base"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.python = python or sys.executable
        self.extra_args = tuple(extra_args)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.root / f"server-{self.port}.log"

    # ------------------------------------------------------------------ lifecycle
    def prepare(self) -> None:
        for d in ("custom_nodes", "input", "output", "user", "temp", "models"):
            (self.base / d).mkdir(parents=True, exist_ok=True)
        link = self.base / "custom_nodes" / PACK_NAME
        if link.is_symlink() or link.exists():
            if link.resolve() != REPO:
                link.unlink() if link.is_symlink() else shutil.rmtree(link)
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)

    def start(self, timeout: float = 180.0) -> "ComfyServer":
        self.prepare()
        cmd = [self.python, str(REPO / "scripts" / "run_comfy.py"), "--cpu", "--listen", "127.0.0.1",
               "--port", str(self.port), "--base-directory", str(self.base), "--disable-auto-launch",
               "--disable-api-nodes", "--database-url", f"sqlite:///{self.base / 'user' / 'comfyui.db'}",
               *self.extra_args]
        log = open(self.log_path, "w")
        # One torch thread unless the caller says otherwise: on small shared machines (CI has 2 cores,
        # shared with the test process) torch's default thread pool oversubscribes and is ~20x slower.
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=str(self.root),
                                     start_new_session=True, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}; log:\n{self.log_tail()}")
            try:
                self.get("/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout}s; log:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no log>"

    # ------------------------------------------------------------------ HTTP
    def get(self, path: str, timeout: float = 30):
        with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
            body = r.read()
            return json.loads(body) if r.headers.get_content_type() == "application/json" else body

    def post_prompt(self, prompt: dict, client_id: str | None = None) -> tuple[int, dict]:
        """POST /prompt; returns (HTTP status, JSON body) for both accepted and rejected prompts."""
        data = json.dumps({"prompt": prompt, "client_id": client_id or uuid.uuid4().hex}).encode()
        req = urllib.request.Request(self.url + "/prompt", data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body)
            except json.JSONDecodeError:
                return e.code, {"raw": body.decode(errors="replace")}

    def wait(self, prompt_id: str, timeout: float = 600) -> dict:
        """The /history entry of a prompt once it finished (success or error)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            hist = self.get(f"/history/{prompt_id}")
            entry = hist.get(prompt_id)
            if entry and entry.get("status", {}).get("status_str") in ("success", "error"):
                return entry
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self.log_tail()}")
            time.sleep(0.25)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout}s")

    def object_info(self) -> dict:
        return self.get("/object_info")

    def run_prompt(self, prompt: dict, timeout: float = 600) -> dict:
        status, body = self.post_prompt(prompt)
        if status != 200:
            raise RuntimeError(f"prompt rejected (HTTP {status}): {json.dumps(body, indent=1)[:4000]}")
        return self.wait(body["prompt_id"], timeout)

    def run_workflow(self, workflow: str | os.PathLike | dict, timeout: float = 600) -> dict:
        wf = workflow if isinstance(workflow, dict) else json.loads(Path(workflow).read_text())
        return self.run_prompt(ui_to_api(wf, self.object_info()), timeout)

    def output_files(self, entry: dict) -> list[Path]:
        """Every file an executed prompt reports in its outputs (images, LaVR files), as paths."""
        files = []
        for node_out in entry.get("outputs", {}).values():
            for key, items in node_out.items():
                for it in items if isinstance(items, list) else []:
                    if isinstance(it, dict) and "filename" in it and it.get("type", "output") == "output":
                        files.append(self.base / "output" / it.get("subfolder", "") / it["filename"])
        return files


# ---------------------------------------------------------------------- UI -> API conversion

def _input_spec(info: dict, name: str):
    for group in ("required", "optional"):
        spec = info["input"].get(group, {}).get(name)
        if spec is not None:
            return spec
    return None


def _is_widget(spec) -> bool:
    kind = spec[0]
    if isinstance(kind, list):
        return True
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return kind in WIDGET_TYPES and not opts.get("forceInput")


def _has_control_value(name: str, spec) -> bool:
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return spec[0] in ("INT", "FLOAT") and (opts.get("control_after_generate") or name in ("seed", "noise_seed"))


def ui_to_api(workflow: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow (what the frontend saves) into an API prompt, as graphToPrompt does.

    Widget values are matched to the node's widget inputs in ``input_order``; links become
    ``[source_node_id, output_index]``; Reroute nodes are followed; muted (mode 2) and bypassed
    (mode 4) nodes are left out (a bypassed node's inputs are not re-routed: keep shared workflows free of them).
    """
    nodes = {str(n["id"]): n for n in workflow["nodes"]}
    links = {}
    for link in workflow.get("links", []):
        if isinstance(link, dict):
            lid, src, slot, dst, dslot = link["id"], link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"]
        else:
            lid, src, slot, dst, dslot = link[:5]
        links[lid] = (str(src), slot)

    def resolve(link_id):
        src, slot = links[link_id]
        while nodes[src]["type"] == "Reroute":
            up = nodes[src]["inputs"][0].get("link")
            if up is None:
                return None
            src, slot = links[up]
        return [src, slot]

    prompt = {}
    for nid, node in nodes.items():
        ctype = node["type"]
        if ctype in UI_ONLY_NODES or node.get("mode", 0) in (2, 4):
            continue
        info = object_info.get(ctype)
        if info is None:
            raise KeyError(f"node type {ctype} (node {nid}) is not installed on the server")
        linked = {i["name"]: i.get("link") for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values", []) or [])
        if isinstance(node.get("widgets_values"), dict):
            raise ValueError(f"node {nid}: dict widgets_values are not supported")
        inputs, vi = {}, 0
        order = info.get("input_order", {})
        for name in [*order.get("required", []), *order.get("optional", [])]:
            spec = _input_spec(info, name)
            widget = _is_widget(spec)
            if name in linked:
                src = resolve(linked[name])
                if src is not None:
                    inputs[name] = src
                if widget:  # a widget turned into a socket keeps its slot in widgets_values
                    vi += 1 + int(_has_control_value(name, spec))
                continue
            if widget and vi < len(values):
                inputs[name] = values[vi]
                vi += 1 + int(_has_control_value(name, spec))
        prompt[nid] = {"class_type": ctype, "inputs": inputs, "_meta": {"title": node.get("title", ctype)}}
    # drop links to nodes that were left out
    for entry in prompt.values():
        for k, v in list(entry["inputs"].items()):
            if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and v[0] not in prompt:
                del entry["inputs"][k]
    return prompt


# ---------------------------------------------------------------------- command line

def _main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="start ComfyUI, run workflows headless, print their outputs, stop")
    run.add_argument("workflows", nargs="+")
    serve = sub.add_parser("serve", help="start ComfyUI with this pack and keep it running")
    for p in (run, serve):
        p.add_argument("--root", default=str(REPO / ".comfy"), help="folder for ComfyUI's base directory")
        p.add_argument("--port", type=int, default=None)
    args = ap.parse_args(argv)
    srv = ComfyServer(args.root, args.port or (8188 if args.cmd == "serve" else None))
    if args.cmd == "serve":
        srv.start()
        print(f"ComfyUI with ComfyUI-LaVR at {srv.url}  (log: {srv.log_path}); Ctrl-C stops it")
        try:
            srv.proc.wait()
        except KeyboardInterrupt:
            srv.stop()
        return 0
    rc = 0
    with srv:
        print(f"ComfyUI ready at {srv.url}; base directory {srv.base}")
        for wf in args.workflows:
            t0 = time.time()
            entry = srv.run_workflow(wf)
            status = entry["status"]["status_str"]
            print(f"{wf}: {status} in {time.time() - t0:.1f}s")
            if status != "success":
                rc = 1
                for kind, msg in entry["status"].get("messages", []):
                    if kind == "execution_error":
                        print(f"  {msg['node_type']} (node {msg['node_id']}): {msg['exception_message'].strip()}")
            for f in srv.output_files(entry):
                print(f"  wrote {f}")
    return rc


if __name__ == "__main__":
    sys.exit(_main())
