"""Start a server (tsconsole or TorchServe) in a private workdir, load a model through the management API,
stop it by PID. Both get the same generated config.properties on a free block of 127.0.0.1 ports."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.workloads import Config


@dataclass(frozen=True)
class Kind:
    name: str
    argv: tuple[str, ...]  # the command before the common flags
    properties: dict[str, str] = field(default_factory=dict)  # extra config.properties keys
    env: dict[str, str] = field(default_factory=dict)
    stop_tree: bool = False  # SIGTERM every process (TorchServe) or only the root (tsconsole stops its workers)


COMMON_FLAGS = ("--foreground", "--ncs", "--disable-token-auth")


def tsconsole_kind(name: str = "tsconsole", **properties: str) -> Kind:
    return Kind(name, (sys.executable, "-m", "tsconsole", "serve"), properties)


def torchserve_kind(executable: str) -> Kind:
    """TorchServe from its own venv: its bin folder leads PATH, and nothing of our venv leaks in."""
    path = Path(executable).resolve()
    if not os.access(path, os.X_OK):
        raise SystemExit(f"--torchserve {executable}: not an executable file")
    missing = subprocess.run([str(path.parent / "python"), "-c", "import yaml, captum, PIL"], capture_output=True)
    if missing.returncode:
        raise SystemExit(
            f"TorchServe's venv lacks a package its workers need: {missing.stderr.decode()[-200:]}"
            f"(pip install torchserve==0.12.0 torch-model-archiver torch torchvision pyyaml captum)"
        )
    env = {"PATH": f"{path.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return Kind("torchserve", (str(path), "--start"), env=env, stop_tree=True)


def free_block(start: int, size: int = 8) -> int:
    """The first run of `size` free 127.0.0.1 ports from `start` on."""
    for base in range(start, 60000, size):
        try:
            for port in range(base, base + size):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free block of ports")


def http(method: str, url: str, body: bytes | None = None, ctype: str = "", timeout: float = 600) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": ctype} if ctype else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, urllib.error.URLError) as exc:
        return 0, str(exc).encode()


class Server:
    def __init__(self, kind: Kind, workdir: Path, model_store: Path, port_base: int) -> None:
        self.kind, self.workdir = kind, workdir
        workdir.mkdir(parents=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="tsb-"))  # short: AF_UNIX socket paths live there
        base = free_block(port_base)
        self.inference, self.management = f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 1}"
        self.metrics = f"http://127.0.0.1:{base + 2}"
        props = {
            "inference_address": self.inference,
            "management_address": self.management,
            "metrics_address": self.metrics,
            "grpc_inference_address": "127.0.0.1",
            "grpc_management_address": "127.0.0.1",
            "grpc_inference_port": str(base + 3),
            "grpc_management_port": str(base + 4),
            "initial_worker_port": str(base + 5),
            "model_store": str(model_store),
            "enable_model_api": "true",
            "disable_token_authorization": "true",
            **kind.properties,
        }
        self.config = workdir / "config.properties"
        self.config.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.model_store = model_store
        self.proc: subprocess.Popen[bytes] | None = None
        self.timings: dict[str, float] = {}

    def start(self, timeout: float = 180) -> None:
        argv = [*self.kind.argv, *COMMON_FLAGS, "--ts-config", str(self.config), "--model-store", str(self.model_store)]
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        env |= {"TMPDIR": str(self.tmp), "LOG_LOCATION": str(self.workdir / "logs")}
        env |= {"METRICS_LOCATION": str(self.workdir / "logs"), "TSCONSOLE_PID_FILE": str(self.tmp / "ts.pid")}
        env |= self.kind.env
        with open(self.workdir / "server.log", "wb") as log:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(
                argv, cwd=self.workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        while http("GET", f"{self.inference}/ping", timeout=2)[0] != 200:
            if self.proc.poll() is not None or time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"{self.kind.name} did not answer /ping: {self.log_tail()}")
            time.sleep(0.05)
        self.timings["start_to_ping_s"] = round(time.perf_counter() - t0, 3)

    def register(self, model: str, config: Config, timeout: float = 600) -> None:
        query = (
            f"url={model}.mar&model_name={model}&initial_workers={config.workers}&batch_size={config.batch_size}"
            f"&max_batch_delay={config.max_batch_delay}&synchronous=true"
        )
        t0 = time.perf_counter()
        status, body = http("POST", f"{self.management}/models?{query}", timeout=timeout)
        if status != 200:
            raise RuntimeError(f"register {model}: HTTP {status} {body[:300]!r}")
        while True:
            status, body = http("GET", f"{self.management}/models/{model}", timeout=10)
            workers = json.loads(body)[0].get("workers", []) if status == 200 else []
            if len(workers) >= config.workers and all(w.get("status") == "READY" for w in workers):
                break
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"{model}: workers not READY after {timeout} s: {body[:300]!r}")
            time.sleep(0.05)
        self.timings["register_to_ready_s"] = round(time.perf_counter() - t0, 3)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join((self.workdir / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 20) -> None:
        """SIGTERM by PID (see Kind.stop_tree), SIGKILL to whatever is still there after `grace` seconds."""
        if self.proc is None:
            return
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for proc in procs if self.kind.stop_tree else procs[:1]:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGTERM)
        _, alive = psutil.wait_procs(procs, timeout=grace)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
        self.proc.wait(timeout=5)
        self.timings["killed_after_grace"] = len(alive)
        shutil.rmtree(self.tmp, ignore_errors=True)
